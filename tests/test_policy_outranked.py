"""A live policy that another live policy outranks on every proposal it would match (the same
action type and scope at a higher priority) decides nothing, and the console says so: on the
list's *state* column, on its page, and in the message after the save that made it so. It
read "Live" and "no: it decides live" while every proposal went to the other."""

import html
import re

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from approvals.models import Agent
from policies.admin import outranked_by_annotated
from policies.drafts import replaced_policy
from policies.models import Policy
from tests.conftest import bid_adjustment
from tests.factories import evaluated
from tests.test_policy_tuning import form_data


@pytest.fixture
def owner(login) -> Client:
    return login("policy-owner")


def bids() -> Policy:
    return Policy.objects.get(name="Bid adjustments")


def stricter(**values) -> dict:
    return {
        "name": "Bid adjustments strict",
        "action_type": "bid_adjustment",
        "is_active": "on",
        "priority": "1",
        "auto_execute_max_magnitude": "5",
        "change_reason": "Stricter bids for now.",
        **values,
    }


def text_of(answer) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", answer.content.decode()))


def test_a_policy_outranked_on_its_whole_scope_is_said_to_decide_nothing(owner):
    url = reverse("admin:policies_policy_add")

    added = owner.post(url, form_data(owner, url, **stricter()), follow=True)

    strict = Policy.objects.get(name="Bid adjustments strict")
    said = text_of(added)
    assert (
        f"It outranks “Bid adjustments” (#{bids().pk}), which has its action type and scope at "
        "priority 0: that policy decides nothing while this one is live." in said
    )
    # What is said is what happens: the proposal goes to the stricter policy.
    assert evaluated(bid_adjustment("2.12")).verdict_policy == strict

    listed = owner.get(reverse("admin:policies_policy_changelist")).content.decode()
    rows = html.unescape(listed).split("<tr>")
    old_row = next(row for row in rows if ">Bid adjustments</a></th>" in row)
    assert "Outranked by <a href" in old_row
    assert f"“Bid adjustments strict”</a> (#{strict.pk}): decides nothing" in old_row
    new_row = next(row for row in rows if ">Bid adjustments strict</a></th>" in row)
    assert 'class="field-state">Live</td>' in new_row

    page = text_of(owner.get(reverse("admin:policies_policy_change", args=[bids().pk])))
    assert "no: it decides live" not in page
    assert (
        f"it decides nothing: “Bid adjustments strict” (#{strict.pk}) has its action type and "
        "scope at a higher priority (1) and wins every proposal this one would match" in page
    )


def test_switched_off_the_outranking_policy_gives_the_other_its_proposals_back(owner):
    strict = Policy.objects.create(
        name="Bid adjustments strict", action_type="bid_adjustment", priority=1
    )
    change = reverse("admin:policies_policy_change", args=[strict.pk])
    data = form_data(owner, change, change_reason="Back to the usual.")
    data.pop("is_active")

    switched_off = owner.post(change, data, follow=True)

    assert "outranks" not in text_of(switched_off)
    listed = owner.get(reverse("admin:policies_policy_changelist")).content.decode()
    assert "Outranked by" not in listed
    assert evaluated(bid_adjustment("2.12")).verdict_policy == bids()


def test_a_policy_saved_below_another_of_its_scope_is_told_it_decides_nothing(owner):
    strict = Policy.objects.create(
        name="Bid adjustments strict", action_type="bid_adjustment", priority=1
    )
    change = reverse("admin:policies_policy_change", args=[bids().pk])

    saved = owner.post(
        change,
        form_data(owner, change, description="Reviewed.", change_reason="Noted."),
        follow=True,
    )

    assert (
        f"“Bid adjustments strict” (#{strict.pk}) outranks it, with its action type and scope "
        "at priority 1: this policy decides nothing while that one is live." in text_of(saved)
    )


def outranked_as_listed() -> dict[str, str | None]:
    return {
        policy.name: policy.outranked_by_name
        for policy in outranked_by_annotated(Policy.objects.filter(action_type="bid_adjustment"))
    }


def test_a_policy_for_any_agent_and_one_naming_an_agent_are_of_two_scopes_to_every_rule(
    demo_world,
):
    """Outranking (a policy's page and the list), a priority two policies may not share, and
    the policy a draft takes the place of, all read "the same scope" by one rule: a policy for
    any agent and one naming an agent, at the same priority, are of two scopes to all three."""
    agent = Agent.objects.order_by("pk").first()
    any_agent = bids()
    named = Policy.objects.create(
        name="Bid adjustments, one agent",
        action_type="bid_adjustment",
        agent=agent,
        priority=any_agent.priority,
    )

    named.clean()  # not "already covers this action type and scope"
    assert any_agent.outranked_by() is None and named.outranked_by() is None
    assert any_agent.outranks() == [] and named.outranks() == []
    assert outranked_as_listed() == {"Bid adjustments": None, "Bid adjustments, one agent": None}
    draft = {"action_type": "bid_adjustment", "priority": any_agent.priority, "is_draft": True}
    assert replaced_policy(Policy(agent=agent, **draft)) == named
    assert replaced_policy(Policy(**draft)) == any_agent

    # Another for any agent is of the first one's scope, to all three alike.
    other = Policy(name="Bid adjustments too", action_type="bid_adjustment", priority=0)
    with pytest.raises(ValidationError, match="already covers this action type and scope"):
        other.clean()
    other.save()
    assert other.outranked_by() == any_agent and any_agent.outranks() == [other]
    assert named.outranks() == [] and named.outranked_by() is None
    assert outranked_as_listed()["Bid adjustments too"] == "Bid adjustments"
    assert outranked_as_listed()["Bid adjustments, one agent"] is None
