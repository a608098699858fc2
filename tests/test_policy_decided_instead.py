"""A policy for every agent does not decide where a more specific live policy matches (an
agent's own policy on an account, the copy an autonomy recommendation makes): the engine picks
the more specific one. Its owner set a hard ceiling of 50% on "Bid adjustments" ("No bid move
above 50%, ever"); the save said only "Hard ceiling: — → 50%", while a +75% bid by optimizer on
demo went to a person under "Bid adjustments: optimizer on demo", which has none. The policy's
page, the message after such a save, and the policy list now name the policies that decide
instead, for which part of its scope, and say plainly where its hard ceiling does not hold."""

import html
import re
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from approvals.models import Agent, AgentKind
from executors.runner import proposal_execute
from ledger.models import Account
from policies.models import Policy
from policies.services import policies_deciding_instead
from tests.conftest import bid_adjustment
from tests.factories import evaluated
from tests.test_policy_change_waiting_to_run import approved, ran
from tests.test_policy_tuning import form_data


@pytest.fixture
def owner(login) -> Client:
    return login("policy-owner")


def bids() -> Policy:
    return Policy.objects.get(name="Bid adjustments")


def copy_for_optimizer_on_demo(**values) -> Policy:
    """The agent's own policy on demo, as an approved autonomy recommendation makes it: a copy
    of "Bid adjustments" naming the agent and the account."""
    source = bids()
    return Policy.objects.create(
        name="Bid adjustments: optimizer on demo",
        action_type="bid_adjustment",
        agent=Agent.objects.get(name="optimizer"),
        account=Account.objects.get(external_id="demo"),
        auto_execute_max_magnitude=Decimal("0.225"),
        description=f"Made from “{source.name}” by proposal #1.",
        **values,
    )


def text_of(answer) -> str:
    """The page's words, each element apart, as a reader sees them."""
    words = re.sub(r"<[^>]+>", " ", answer.content.decode())
    return re.sub(r"\s+", " ", html.unescape(words)).replace(" ,", ",")


def messages_of(answer) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", str(m))) for m in answer.context["messages"]]


def set_hard_ceiling(owner: Client, percent: str):
    change = reverse("admin:policies_policy_change", args=[bids().pk])
    data = form_data(
        owner,
        change,
        block_above_magnitude=percent,
        change_reason="No bid move above 50%, ever",
    )
    return owner.post(change, data, follow=True)


def test_a_hard_ceiling_saved_says_where_a_more_specific_policy_decides_without_one(owner):
    copy = copy_for_optimizer_on_demo()

    saved = set_hard_ceiling(owner, "50")

    said = " ".join(messages_of(saved))
    assert "Hard ceiling: — → 50%" in said
    assert (
        f"For agent “optimizer” on account “demo”, “Bid adjustments: optimizer on demo” "
        f"(#{copy.pk}, priority 0) decides instead, as the more specific policy, for what is "
        "proposed there from now on: this change does not hold for it. This policy's hard "
        "ceiling of 50% does not hold there, and that policy has none: a change above 50% "
        "proposed there is not blocked."
    ) in said
    assert "to have it hold there too, make it on each of them as well" in said
    assert f'href="{reverse("admin:policies_policy_change", args=[copy.pk])}"' in str(
        list(saved.context["messages"])
    )
    # What is said is what happens: a +75% bid there is the copy's to decide, not blocked.
    routed = evaluated(bid_adjustment("3.50"))
    assert routed.verdict_policy == copy
    assert routed.status == "pending_review"

    # The policy's page says it too, before the next change.
    page = text_of(owner.get(reverse("admin:policies_policy_change", args=[bids().pk])))
    assert (
        "Where another policy decides instead: For agent “optimizer” on account “demo”, "
        f"“Bid adjustments: optimizer on demo” (#{copy.pk}, priority 0) decides instead, as the "
        "more specific policy, for what is proposed there from now on: none of this policy's "
        "settings hold for it. This policy's hard ceiling of 50% does not hold there, and that "
        "policy has none: a change above 50% proposed there is not blocked."
    ) in page


def test_a_more_specific_policy_with_a_lower_hard_ceiling_is_said_to_block_there(owner):
    copy = copy_for_optimizer_on_demo(block_above_magnitude=Decimal("0.4"))

    said = " ".join(messages_of(set_hard_ceiling(owner, "50")))

    assert f"(#{copy.pk}, priority 0) decides instead" in said
    assert "That policy's own hard ceiling, 40%, blocks there." in said
    assert "not blocked" not in said


def test_a_more_specific_policy_with_a_higher_hard_ceiling_lets_a_change_between_pass(owner):
    copy_for_optimizer_on_demo(block_above_magnitude=Decimal("0.8"))

    said = " ".join(messages_of(set_hard_ceiling(owner, "50")))

    assert (
        "This policy's hard ceiling of 50% does not hold there, and that policy's is 80%: a "
        "change between the two proposed there is not blocked."
    ) in said


def test_a_save_that_changes_no_routing_setting_says_nothing_of_them(owner):
    copy_for_optimizer_on_demo()
    change = reverse("admin:policies_policy_change", args=[bids().pk])

    data = form_data(owner, change, description="Reviewed.", change_reason="Notes.")

    saved = owner.post(change, data, follow=True)

    assert "What changed: Description" in " ".join(messages_of(saved))
    assert not any("decides instead" in message for message in messages_of(saved))
    # Its page still says so, for the next change.
    assert "decides instead, as the more specific policy," in text_of(owner.get(change))


def test_a_policy_of_an_agent_kind_is_told_an_account_s_policy_decides_its_agents_there(owner):
    """Not only a narrower copy: a policy naming an account outranks one naming an agent
    kind, for that kind's agents on the account."""
    optimization = Policy.objects.create(
        name="Optimization agents' bids",
        action_type="bid_adjustment",
        agent_kind=AgentKind.OPTIMIZATION,
        priority=5,
    )
    # Neither overlaps it: another action type; an agent of another kind than the policy's.
    Policy.objects.create(
        name="Budget changes: optimizer",
        action_type="budget_change",
        agent=Agent.objects.get(name="optimizer"),
    )
    Policy.objects.create(
        name="Copywriter's bids",
        action_type="bid_adjustment",
        agent=Agent.objects.get(name="copywriter"),
    )
    on_demo = Policy.objects.create(
        name="Bids on demo",
        action_type="bid_adjustment",
        account=Account.objects.get(external_id="demo"),
    )

    page = text_of(owner.get(reverse("admin:policies_policy_change", args=[optimization.pk])))

    assert (
        f"For optimization agents on account “demo”, “Bids on demo” (#{on_demo.pk}, priority "
        "0) decides instead, as the more specific policy" in page
    )
    assert "Copywriter's bids" not in page and "Budget changes: optimizer" not in page
    assert [each.policy for each in policies_deciding_instead(optimization)] == [on_demo]
    assert evaluated(bid_adjustment("2.12")).verdict_policy == on_demo


def test_the_policy_list_marks_a_live_policy_that_does_not_decide_all_of_its_scope(owner):
    copy = copy_for_optimizer_on_demo()

    listed = html.unescape(owner.get(reverse("admin:policies_policy_changelist")).text)

    row = next(row for row in listed.split("<tr") if ">Bid adjustments</a></th>" in row)
    assert "Live, but not everywhere in its scope; deciding instead: " in row
    assert (
        f'<a href="{reverse("admin:policies_policy_change", args=[copy.pk])}">“Bid adjustments: '
        "optimizer on demo”</a> (agent “optimizer” on account “demo”)"
    ) in row
    copy_row = next(row for row in listed.split("<tr") if ">Bid adjustments: optimizer" in row)
    assert 'class="field-state">Live</td>' in copy_row


def test_what_the_policy_routed_there_before_the_copy_is_said_to_stay_its_own(owner):
    """Three bids of about +6% by optimizer on demo, approved under "Bid adjustments" before the
    narrower copy existed, queued. The save lowering its hard ceiling to 5% said they fail at
    their next attempt, and, of the same agent and account, that the copy decides instead and
    that "this change does not hold there": they did fail. The copy decides what is proposed
    there from now on; what this policy routed there already stays its own, and is said so."""
    queued = [
        approved(evaluated(bid_adjustment(bid, campaign)))
        for bid, campaign in (
            ("2.12", "brand-search"),
            ("1.59", "generic-search"),
            ("0.85", "display-retarget"),
        )
    ]
    assert {ran(proposal).status for proposal in queued} == {"approved"}
    copy = copy_for_optimizer_on_demo()
    change = reverse("admin:policies_policy_change", args=[bids().pk])

    saved = owner.post(
        change,
        form_data(
            owner,
            change,
            auto_execute_max_magnitude="4",
            block_above_magnitude="5",
            change_reason="Nothing above 5%.",
        ),
        follow=True,
    )

    said = " ".join(messages_of(saved))
    ids = [f"#{proposal.pk}" for proposal in queued]
    named = f"{ids[0]}, {ids[1]} and {ids[2]}"
    assert f"{named}. Each fails at its next attempt rather than run." in said
    assert (
        f"“Bid adjustments: optimizer on demo” (#{copy.pk}, priority 0) decides instead, as the "
        "more specific policy, for what is proposed there from now on: this change does not "
        "hold for it."
    ) in said
    assert (
        "What this policy routed there before, still waiting for a person or approved and not "
        f"yet carried out ({named}), stays this policy's: this change holds for it."
    ) in said
    page = text_of(owner.get(change))
    assert f"({named}), stays this policy's: this policy's settings hold for it." in page
    # As said: each fails at its next attempt.
    for proposal in queued:
        assert proposal_execute(proposal_id=proposal.pk).status == "failed"
    # Carried out (failed), none is this policy's there any more: nothing more said of them.
    assert "stays this policy's" not in text_of(owner.get(change))
