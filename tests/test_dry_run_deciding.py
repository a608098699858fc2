"""A policy's dry run is first shown for an agent and an account this policy decides for, as
a submission is matched to its policy: once an autonomy recommendation gave optimizer its own
bid ceiling on demo, the general bid policy's dry run was still tried for optimizer, the last
to propose a bid, so that its verdict was the other policy's and a ceiling typed into it was
never read."""

import html

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from approvals.models import Agent
from approvals.services.decisions import proposal_approve
from approvals.services.proposals import proposal_evaluate
from executors.runner import proposal_execute
from feedback.autonomy import AutonomyRules, autonomy_recommendations_propose
from policies.models import Policy
from tests.conftest import bid_adjustment, reallocation
from tests.factories import evaluated
from tests.test_autonomy import record

GENERAL = "Bid adjustments"
EARNED = "Bid adjustments: optimizer on demo"


def dry_run_url(policy: Policy) -> str:
    return reverse("admin:policies_policy_dry_run", args=[policy.pk])


def said(page, element: str) -> str:
    """A paragraph of the page, by its id, as a person reads it."""
    text = page.content.decode()
    start = text.index(f'id="{element}">') + len(f'id="{element}">')
    return html.unescape(text[start : text.index("</p>", start)])


@pytest.fixture
def earned(demo_world) -> Policy:
    """optimizer's own bid ceiling on demo, as a policy owner's approval of an autonomy
    recommendation makes it; optimizer has proposed bids (its record), copywriter none."""
    rules = AutonomyRules.current()
    rules.widen_min_decisions = rules.narrow_min_decisions = 10
    rules.save()
    record(*["approve"] * 10)
    [recommendation] = autonomy_recommendations_propose()
    proposal_evaluate(proposal_id=recommendation.pk)
    owner = get_user_model().objects.get(username="policy-owner")
    proposal_approve(proposal_id=recommendation.pk, reviewer=owner)
    proposal_execute(proposal_id=recommendation.pk)
    return Policy.objects.get(name=EARNED)


def test_the_general_policys_dry_run_is_tried_for_an_agent_it_decides(earned, login):
    owner = login("policy-owner")
    general = Policy.objects.get(name=GENERAL, is_draft=False)
    page = owner.get(dry_run_url(general))
    form = page.context["form"]
    assert form["agent"].initial.name == "copywriter"
    assert form["account"].initial.external_id == "demo"
    assert said(page, "dry-run-agent") == (
        "No agent that proposed a bid adjustment lately is one this policy decides for: "
        f"policy “{EARNED}” decides for “optimizer” on “demo”. It is tried for agent "
        "“copywriter” on account “demo”, the only agent and account this policy decides for."
    )
    assert said(page, "dry-run-decides").startswith(
        "Of the active agents that may propose a bid adjustment, each on the accounts it acts "
        "on, this policy decides for “copywriter” on “demo”: choose one of those below"
    )

    # As the page opens it, with a ceiling typed: this policy's verdict, the ceiling tried.
    data = {
        "agent": form["agent"].initial.pk,
        "account": form["account"].initial.pk,
        "payload": form["payload"].value(),
        "try_auto_execute_ceiling": "50",
    }
    verdict = owner.post(dry_run_url(general), data)
    assert verdict.context["verdict"].policy_name == GENERAL
    assert verdict.context["verdict"].outcome == "auto_approve"
    assert said(verdict, "dry-run-tried") == (
        "Tried, for this run only: an auto-execute ceiling of 50%."
    )

    # The earned policy's own dry run is tried for optimizer, the last to propose one.
    page = owner.get(dry_run_url(earned))
    assert page.context["form"]["agent"].initial.name == "optimizer"
    assert said(page, "dry-run-agent").startswith(
        "It is tried for agent “optimizer” on account “demo”, the last to propose a bid "
        "adjustment that this policy decides ("
    )


def test_a_draft_is_tried_for_whom_its_live_policy_decides(earned, login):
    owner = login("policy-owner")
    general = Policy.objects.get(name=GENERAL, is_draft=False)
    for live, agent in [(general, "copywriter"), (earned, "optimizer")]:
        draft = Policy.objects.create(
            name=f"{live.name} (draft)",
            action_type=live.action_type,
            agent=live.agent,
            account=live.account,
            auto_execute_max_magnitude=live.auto_execute_max_magnitude,
            is_draft=True,
            draft_of=live,
        )
        page = owner.get(dry_run_url(draft))
        assert page.context["form"]["agent"].initial.name == agent, live.name
        assert f"this policy decides for “{agent}” on “demo”:" in said(page, "dry-run-decides")


def test_a_later_proposer_another_policy_decides_is_passed_over_saying_so(demo_world, login):
    """copywriter proposed a reallocation; optimizer, with its own policy, proposed later."""
    optimizer = Agent.objects.get(name="optimizer")
    general = Policy.objects.get(name="Budget reallocations", is_draft=False)
    Policy.objects.create(
        name="Reallocations: optimizer",
        action_type="budget_reallocation",
        agent=optimizer,
        auto_execute_max_magnitude=general.auto_execute_max_magnitude,
    )
    evaluated(reallocation("280.00"), agent="copywriter")
    evaluated(reallocation("290.00"))
    page = login("policy-owner").get(dry_run_url(general))
    assert page.context["form"]["agent"].initial.name == "copywriter"
    text = said(page, "dry-run-agent")
    assert text.startswith(
        "It is tried for agent “copywriter” on account “demo”, the last to propose a budget "
        "reallocation that this policy decides ("
    ), text
    assert text.endswith(
        "A later one is decided by another policy: policy “Reallocations: optimizer” decides "
        "for “optimizer” on “demo”."
    ), text


def test_a_policy_that_decides_for_no_agent_says_so(demo_world, login):
    """optimizer's own policy, under one for optimizer on demo, its one account."""
    optimizer = Agent.objects.get(name="optimizer")
    own = Policy.objects.create(
        name="Bids: optimizer", action_type="bid_adjustment", agent=optimizer
    )
    Policy.objects.create(
        name="Bids: optimizer on demo",
        action_type="bid_adjustment",
        agent=optimizer,
        account=optimizer.accounts.get(),
    )
    evaluated(bid_adjustment("2.12"))
    page = login("policy-owner").get(dry_run_url(own))
    assert said(page, "dry-run-decides") == (
        "Of the active agents that may propose a bid adjustment, this policy decides for "
        "none, on any account it acts on: a more specific policy decides for each, so the "
        "verdict is never this policy's and a ceiling typed is not used."
    )
    assert said(page, "dry-run-agent") == (
        "It is tried for agent “optimizer” on account “demo”, the last to propose a bid "
        "adjustment; policy “Bids: optimizer on demo” decides it, not this policy, and its "
        "verdict is the one shown."
    )
