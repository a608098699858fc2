"""The proposal lifecycle: one transition function, exactly-once execution, re-checks, expiry."""

import html
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from approvals.models import Execution, Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_retry
from approvals.services.expiry import proposals_expire_overdue
from approvals.services.lifecycle import InvalidTransition, proposal_transition
from approvals.services.proposals import proposal_evaluate
from audit.actors import Actor
from executors.runner import proposal_execute
from feedback.models import Feedback
from ledger.models import Campaign
from policies.models import Policy
from tests.conftest import bid_adjustment, reallocation
from tests.factories import evaluated, submitted


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def budget(external_id: str) -> Decimal:
    return Campaign.objects.get(external_id=external_id).daily_budget


def test_an_illegal_transition_is_refused_and_changes_nothing(demo_world):
    proposal = submitted()  # a 28% reallocation: waiting for a person
    with pytest.raises(InvalidTransition, match="cannot become executed"):
        proposal_transition(
            proposal_id=proposal.pk, to_status=ProposalStatus.EXECUTED, actor=Actor.system("test")
        )
    assert Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.PENDING_REVIEW


def test_evaluating_twice_routes_once(demo_world):
    proposal = evaluated()

    again = proposal_evaluate(proposal_id=proposal.pk)
    assert again.status == ProposalStatus.PENDING_REVIEW
    assert again.review_round == 1


def test_an_approved_action_executes_exactly_once(demo_world):
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal.status == ProposalStatus.APPROVED
    first = proposal_execute(proposal_id=proposal.pk)
    redelivered = proposal_execute(proposal_id=proposal.pk)
    assert first.status == redelivered.status == ProposalStatus.EXECUTED
    assert Execution.objects.filter(proposal=proposal).count() == 1
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.12")
    # The campaign's own history says which proposal moved it.
    change = Campaign.history.filter(external_id="brand-search").latest("history_date")
    assert change.history_change_reason == f"proposal #{proposal.pk}: {proposal.summary}"


def test_an_approved_reallocation_runs_on_moved_figures_its_approval_still_covers(operator):
    # SPEC: a move of an amount keeps its meaning; it is re-assessed, re-routed only if its
    # verdict changes. A person approved moving 280.00 (28%, above the 10% ceiling); the
    # source's budget moved to 900.00 (31.1%): still a decision for a person, which it had.
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("900.00"))

    result = proposal_execute(proposal_id=proposal.pk)

    assert result.status == ProposalStatus.EXECUTED
    assert (budget("brand-search"), budget("generic-search")) == (
        Decimal("620.00"),
        Decimal("780.00"),
    )
    # Re-assessed on the figures it ran on, and the history says so.
    result.refresh_from_db()
    assert result.magnitude == Decimal("0.311111")
    assert result.target_snapshot["brand-search"] == {"daily_budget": "900.00"}
    reassessed = Proposal.history.filter(id=proposal.pk, status="approved").latest("history_id")
    assert reassessed.history_change_reason.startswith(
        "Re-assessed before executing: brand-search's daily budget is 900.00, was 1000.00"
    )


def test_an_approved_reallocation_the_moved_figures_would_now_block_fails_saying_so(
    operator, login
):
    """A person approved moving 280.00 (28%); the policy's hard ceiling is 30%, and the
    source's budget falls to 900.00 before it runs (31.1%). It fails, and its failure says it
    in the words its re-assessment is said in elsewhere, with the figures it read."""
    Policy.objects.filter(action_type="budget_reallocation").update(
        block_above_magnitude=Decimal("0.30")
    )
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("900.00"))

    failed = proposal_execute(proposal_id=proposal.pk)

    assert failed.status == ProposalStatus.FAILED
    said = (
        "Re-assessed before executing: brand-search's daily budget is 900.00, was 1000.00. It "
        "would now be blocked: 31.1% of brand-search's daily budget is above the 30.0% hard "
        "ceiling of policy “Budget reallocations”."
    )
    assert failed.executions.get().error == said
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert said in html.unescape(page.content.decode())
    assert budget("brand-search") == Decimal("900.00")


def test_an_action_the_moved_ledger_no_longer_allows_fails_instead_of_overdrawing(operator):
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("200.00"))

    failed = proposal_execute(proposal_id=proposal.pk)
    assert failed.status == ProposalStatus.FAILED
    assert "Exceeds brand-search's daily budget of 200.00" in failed.executions.get().error
    assert budget("brand-search") == Decimal("200.00")


def test_a_failed_execution_is_recorded_and_can_be_retried(operator):
    proposal = evaluated(bid_adjustment("2.12"))
    # A payload that passed validation but cannot be applied (as a bug in an executor would).
    broken = {"campaign": "brand-search", "new_bid": "not-a-number"}
    Proposal.objects.filter(pk=proposal.pk).update(payload=broken)

    failed = proposal_execute(proposal_id=proposal.pk)
    assert failed.status == ProposalStatus.FAILED
    attempt = Execution.objects.get(proposal=proposal)
    assert attempt.status == "failed" and "InvalidOperation" in attempt.error
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.00")

    Proposal.objects.filter(pk=proposal.pk).update(payload=proposal.payload)
    proposal_retry(proposal_id=proposal.pk, reviewer=operator)
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED
    assert list(proposal.executions.values_list("attempt", "status")) == [
        (1, "failed"),
        (2, "succeeded"),
    ]


def test_overdue_proposals_expire_and_never_execute(demo_world):
    overdue, fresh = evaluated(reallocation("200.00")), evaluated(reallocation("300.00"))
    Proposal.objects.filter(pk=overdue.pk).update(
        review_expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert proposals_expire_overdue() == 1

    assert Proposal.objects.get(pk=overdue.pk).status == ProposalStatus.EXPIRED
    assert Proposal.objects.get(pk=fresh.pk).status == ProposalStatus.PENDING_REVIEW
    assert Feedback.objects.get(proposal=overdue).kind == "expired"
    assert proposal_execute(proposal_id=overdue.pk).status == ProposalStatus.EXPIRED
    assert budget("brand-search") == Decimal("1000.00")


def test_an_agent_reading_a_proposal_past_its_window_reads_it_as_it_is(optimizer):
    """Read past its window, a proposal was expired there and then by the read. It reads as
    it is, waiting, with the time its window closed, writing nothing; the sweep expires it
    (and no late act lets it run), and the agent then reads it expired."""
    overdue, fresh = evaluated(reallocation("200.00")), evaluated(reallocation("300.00"))
    Proposal.objects.filter(pk=overdue.pk).update(
        review_expires_at=timezone.now() - timedelta(seconds=1)
    )

    read = optimizer.get(f"/api/v1/proposals/{overdue.pk}/").json()
    waited = optimizer.get(f"/api/v1/proposals/{fresh.pk}/").json()

    assert read["status"] == "pending_review"
    assert read["review_expires_at"] < timezone.now().isoformat()
    assert not Feedback.objects.filter(proposal=overdue).exists()
    assert waited["status"] == "pending_review"
    assert proposals_expire_overdue() == 1
    assert optimizer.get(f"/api/v1/proposals/{overdue.pk}/").json()["status"] == "expired"
    assert Feedback.objects.get(proposal=overdue).kind == "expired"
    assert proposal_execute(proposal_id=overdue.pk).status == ProposalStatus.EXPIRED


def test_review_window_comes_from_the_policy(demo_world):
    proposal = evaluated()
    window = proposal.review_expires_at - proposal.evaluated_at
    assert abs(window - timedelta(hours=72)) < timedelta(seconds=1)


def test_every_step_records_who_took_it(operator):
    proposal = evaluated()
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    proposal_execute(proposal_id=proposal.pk)
    history = Proposal.history.filter(id=proposal.pk).order_by("history_date")
    assert [(h.status, h.history_actor_kind, h.history_actor) for h in history] == [
        ("submitted", "agent", "optimizer"),
        ("pending_review", "system", "policy-engine"),
        ("approved", "user", "operator"),
        ("executing", "system", "executor"),
        ("executed", "system", "executor"),
    ]
    assert history.get(status="pending_review").history_change_reason.startswith(
        "28.0% of brand-search's daily budget exceeds"
    )
