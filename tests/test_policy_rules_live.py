"""Each policy rule and guardrail in force on the live path, through the platform's services."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from hitl_client._tools import outcome_report
from hitl_client.models import Proposal as ClientProposal

from approvals.models import Agent, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_reject
from executors.runner import proposal_execute
from hitlproject.errors import DomainError, NotAllowed
from ledger.models import Account, Campaign
from policies.models import BrandGuidelines, KillSwitch, Policy
from tests.conftest import bid_adjustment, creative, creative_batch, reallocation
from tests.factories import evaluated


def test_the_verdict_names_the_policy_and_its_version(demo_world):
    proposal = evaluated(reallocation("280.00"))
    policy = Policy.objects.get(action_type="budget_reallocation")
    assert proposal.verdict_policy == policy
    assert proposal.verdict_policy_version == policy.history.latest("history_date").history_id


def test_an_agent_scoped_policy_overrides_the_default(demo_world):
    Policy.objects.create(
        name="Optimizer may move more",
        action_type="budget_reallocation",
        agent=Agent.objects.get(name="optimizer"),
        auto_execute_max_magnitude=Decimal("0.30"),
    )
    assert evaluated(reallocation("280.00")).status == ProposalStatus.APPROVED
    assert (
        evaluated(reallocation("280.00"), agent="copywriter").status
        == ProposalStatus.PENDING_REVIEW
    )


def test_drafts_decide_nothing_live(demo_world):
    Policy.objects.create(
        name="Looser draft",
        action_type="budget_reallocation",
        is_draft=True,
        account=Account.objects.get(external_id="demo"),
        auto_execute_max_magnitude=Decimal("0.50"),
    )
    assert evaluated(reallocation("280.00")).status == ProposalStatus.PENDING_REVIEW


def test_cumulative_ceiling_catches_small_bid_moves_that_add_up(demo_world):
    # Three +9% bid raises on brand-search: each alone is within the 15% ceiling, but
    # together they compound to +29.5%, over the seeded 25% per campaign per 24 hours.
    outcomes = []
    for new_bid in ("2.18", "2.38", "2.59"):
        proposal = evaluated(bid_adjustment(new_bid))
        outcomes.append(proposal.status)
        if proposal.status == ProposalStatus.APPROVED:
            proposal_execute(proposal_id=proposal.pk)
    assert outcomes == ["approved", "approved", "pending_review"]
    assert "brand-search's bid would move +29.5% within 1 day" in proposal.verdict_reasons[0]


def test_approved_but_not_yet_executed_moves_count_too(demo_world):
    first = evaluated(bid_adjustment("2.28"))  # +14%, approved, not executed yet
    assert first.status == ProposalStatus.APPROVED
    second = evaluated(bid_adjustment("2.28"))  # another +14% of the ledger's 2.00
    assert second.status == ProposalStatus.PENDING_REVIEW


def test_two_person_rule_refuses_a_second_approval_by_the_same_reviewer(operators):
    Policy.objects.filter(action_type="budget_reallocation").update(
        more_approvals_above_magnitude=Decimal("0.20")
    )
    operator, second = operators
    proposal = evaluated(reallocation("280.00"))
    assert proposal.required_approvals == 2
    assert proposal_approve(proposal_id=proposal.pk, reviewer=operator).status == "pending_review"
    with pytest.raises(NotAllowed, match="already decided"):
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert proposal_approve(proposal_id=proposal.pk, reviewer=second).status == "approved"


def test_a_small_move_needs_one_approval_under_the_two_person_threshold(operators):
    Policy.objects.filter(action_type="budget_reallocation").update(
        more_approvals_above_magnitude=Decimal("0.50")
    )
    proposal = evaluated(reallocation("280.00"))
    assert proposal.required_approvals == 1


@pytest.mark.parametrize("scope", ["global", "account", "channel"])
def test_a_kill_switch_routes_an_otherwise_automatic_action_to_a_human(demo_world, scope):
    account = Account.objects.get(external_id="demo")
    switch = KillSwitch.objects.create(
        scope=scope,
        account=account if scope == "account" else None,
        channel="google_ads" if scope == "channel" else "",
        reason="Tracking outage; nothing runs unseen.",
    )
    held = evaluated(bid_adjustment("2.12"))
    assert held.status == ProposalStatus.PENDING_REVIEW
    assert "is engaged: Tracking outage; nothing runs unseen." in held.verdict_reasons[0]

    switch.engaged = False
    switch.save()
    assert evaluated(bid_adjustment("1.60", campaign="generic-search")).status == "approved"


def test_a_kill_switch_elsewhere_does_not_hold_this_account(demo_world):
    other = Account.objects.create(external_id="acme", name="Acme", channel="meta", currency="EUR")
    KillSwitch.objects.create(scope="account", account=other, reason="Acme only.")
    KillSwitch.objects.create(scope="channel", channel="meta", reason="Meta only.")
    assert evaluated(bid_adjustment("2.12")).status == ProposalStatus.APPROVED


def test_a_banned_term_in_a_creative_is_quoted_in_the_reasons(demo_world):
    proposal = evaluated(
        creative_batch(
            creative(),
            creative(body="Guaranteed results in a week, or your money back."),
        )
    )
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    assert (
        "The body of creative 2 uses the banned term “guaranteed”: "
        "“«Guaranteed» results in a week, or your mo…”"
    ) in proposal.verdict_reasons
    assert proposal.guardrail_findings["review"] == [proposal.verdict_reasons[0]]


def test_banned_patterns_and_missing_disclaimers_are_found(demo_world):
    BrandGuidelines.objects.filter(account__external_id="demo").update(
        banned_patterns=r"\d+% off", required_disclaimers="Terms apply."
    )
    proposal = evaluated(creative_batch(creative(headline="Now 50% off everything")))
    reasons = proposal.verdict_reasons
    assert any(
        "headline of creative 1 uses the banned pattern" in r and "«50% off»" in r for r in reasons
    )
    assert "The body of creative 1 lacks the required disclaimer “Terms apply.”" in reasons


def test_a_clean_creative_still_waits_for_a_human_by_policy(demo_world):
    proposal = evaluated(creative_batch(creative()))
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    assert proposal.verdict_reasons == [
        "Policy “Creative batches” sends every creative batch to a human."
    ]


def test_a_strategy_lock_blocks_an_agents_strategy_change(demo_world):
    Campaign.objects.filter(external_id="brand-search").update(strategy_locked=True)
    change = bid_adjustment(action_type="strategy_change") | {
        "payload": {"campaign": "brand-search", "changes": {"bidding_strategy": "target_cpa"}}
    }
    proposal = evaluated(change)
    assert proposal.status == ProposalStatus.BLOCKED
    assert proposal.verdict_reasons == [
        "brand-search's strategy is locked; agents may not change it."
    ]


def test_a_campaign_budget_cap_blocks_a_move_above_it(demo_world, optimizer):
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=Decimal("550"))
    proposal = evaluated(reallocation("60.00"))
    assert proposal.status == ProposalStatus.BLOCKED
    assert proposal.verdict_reasons == [
        "generic-search's daily budget would be 560.00 USD, above its cap of 550.00 USD."
    ]
    # The framework adapters tell their model what blocked it: a cap, not a policy.
    answer = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
    told = outcome_report(ClientProposal.from_api(answer))
    assert told["message"] == (
        "It was blocked. It was not executed. generic-search's daily budget would be 560.00 "
        "USD, above its cap of 550.00 USD."
    )


def test_an_account_budget_cap_counts_every_active_campaign(demo_world):
    Account.objects.filter(external_id="demo").update(max_total_daily_budget=Decimal("1850"))
    raise_budget = bid_adjustment(action_type="budget_change") | {
        "payload": {"campaign": "display-retarget", "new_daily_budget": "330.00"}
    }
    proposal = evaluated(raise_budget)  # 1000 + 500 + 330 = 1830: within
    assert proposal.status == ProposalStatus.APPROVED
    too_much = raise_budget | {
        "payload": {"campaign": "display-retarget", "new_daily_budget": "360"}
    }
    blocked = evaluated(too_much)  # 1860 > 1850
    assert blocked.status == ProposalStatus.BLOCKED
    assert blocked.verdict_reasons == [
        "Account demo's active campaigns would spend 1,860.00 USD a day, above its cap of "
        "1,850.00 USD."
    ]


def test_a_hard_ceiling_blocks_outright(demo_world):
    Policy.objects.filter(action_type="budget_reallocation").update(
        block_above_magnitude=Decimal("0.50")
    )
    proposal = evaluated(reallocation("600.00"))
    assert proposal.status == ProposalStatus.BLOCKED
    assert (
        "60.0% of brand-search's daily budget is above the 50.0% hard ceiling"
        in (proposal.verdict_reasons[0])
    )


def test_each_policy_sets_its_own_review_window(demo_world):
    Policy.objects.filter(action_type="budget_reallocation").update(
        review_window=timedelta(hours=4)
    )
    proposal = evaluated(reallocation("280.00"))
    assert abs(proposal.review_expires_at - proposal.evaluated_at - timedelta(hours=4)) < timedelta(
        seconds=1
    )


def test_engaging_a_kill_switch_is_on_the_record_with_who_did_it(login):
    client = login("policy-owner")
    response = client.post(
        reverse("admin:policies_killswitch_add"),
        {
            "scope": "global",
            "engaged": "on",
            "reason": "Conversion tracking is down.",
            "change_reason": "Stop everything until tracking is back.",
        },
    )
    assert response.status_code == 302
    switch = KillSwitch.objects.get()
    record = switch.history.get()
    assert (record.history_actor_kind, record.history_actor) == ("user", "policy-owner")
    assert evaluated(bid_adjustment("2.12")).status == ProposalStatus.PENDING_REVIEW

    operator = login("operator")
    refused = operator.post(
        reverse("admin:policies_killswitch_change", args=[switch.pk]),
        {"scope": "global", "reason": "released by an operator"},
    )
    assert refused.status_code == 403
    assert KillSwitch.objects.get().engaged


def test_a_cap_set_while_a_proposal_waits_refuses_its_approval(operators):
    operator, _ = operators
    proposal = evaluated(reallocation("280.00"))
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=Decimal("600"))
    with pytest.raises(
        DomainError, match=r"refuses proposal #[0-9]+ now: generic-search's daily budget would be"
    ):
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert Campaign.objects.get(external_id="generic-search").daily_budget == Decimal("500.00")


def test_a_lock_set_after_approval_refuses_the_execution(operators):
    operator, _ = operators
    change = bid_adjustment(action_type="strategy_change") | {
        "payload": {"campaign": "brand-search", "changes": {"bidding_strategy": "maximize_clicks"}}
    }
    proposal = evaluated(change)
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    Campaign.objects.filter(external_id="brand-search").update(strategy_locked=True)

    result = proposal_execute(proposal_id=proposal.pk)

    assert result.status == ProposalStatus.FAILED
    assert result.executions.get().error == (
        "A guardrail refuses it now: brand-search's strategy is locked; agents may not change it."
    )
    assert Campaign.objects.get(external_id="brand-search").bidding_strategy == "manual_cpc"


def test_an_agents_rejections_raise_the_risk_of_its_next_proposal(operators):
    operator, _ = operators
    before = evaluated(reallocation("280.00"))
    assert before.risk == 25 + 42 + 5  # type, 2.8 x the ceiling, no record yet
    for _ in range(10):
        proposal = evaluated(reallocation("150.00"))
        proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="wrong_signal")
    proposal_reject(proposal_id=before.pk, reviewer=operator, reason_code="wrong_signal")
    after = evaluated(reallocation("280.00"))
    assert after.risk == 25 + 42 + 15  # every one of its 11 decisions a rejection
