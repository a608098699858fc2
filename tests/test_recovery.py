"""Nothing lost: a proposal whose task never reached the broker is picked up again."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from approvals.services.proposals import proposal_evaluate
from approvals.services.recovery import proposals_requeue_stalled
from ledger.models import Campaign
from notifications.tasks import deliver_notifications
from policies.models import CountedMove
from tests.conftest import bid_adjustment, reallocation, wait_until
from tests.factories import submitted

pytestmark = [
    pytest.mark.worker,
    pytest.mark.usefixtures("celery_worker"),
    pytest.mark.django_db(transaction=True),
]


def lose_tasks_sent_on_commit(monkeypatch) -> None:
    """As if the broker were unreachable at commit: the write stands, the task never leaves."""
    monkeypatch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)


def status_is(proposal_id: int, status: str):
    return lambda: Proposal.objects.get(pk=proposal_id).status == status


def test_an_auto_approved_submission_whose_execution_was_lost_is_executed(demo_world, monkeypatch):
    with monkeypatch.context() as patch:
        lose_tasks_sent_on_commit(patch)
        proposal = submitted(bid_adjustment("2.12"))
    assert Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.APPROVED

    assert proposals_requeue_stalled(stalled_after=timedelta(0)) == {
        "submitted": 0,
        "approved": 1,
        "executing": 0,
    }

    wait_until(status_is(proposal.pk, ProposalStatus.EXECUTED))
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.12")


def test_a_proposal_an_earlier_release_left_submitted_is_evaluated_and_executed(
    demo_world, monkeypatch
):
    with monkeypatch.context() as patch:
        lose_tasks_sent_on_commit(patch)
        proposal = submitted(bid_adjustment("2.12"))
    # As an earlier release left it: written, its evaluation not yet done.
    Proposal.objects.filter(pk=proposal.pk).update(status=ProposalStatus.SUBMITTED)
    CountedMove.objects.filter(proposal_id=proposal.pk).delete()
    assert proposals_requeue_stalled(stalled_after=timedelta(0))["submitted"] == 1

    wait_until(status_is(proposal.pk, ProposalStatus.EXECUTED))
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.12")


def test_an_approval_whose_execution_was_lost_is_executed_once(demo_world, monkeypatch):
    operator = get_user_model().objects.get(username="operator")
    with monkeypatch.context() as patch:
        lose_tasks_sent_on_commit(patch)
        proposal = proposal_evaluate(proposal_id=submitted(reallocation("280.00")).pk)
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.APPROVED

    proposals_requeue_stalled(stalled_after=timedelta(0))
    proposals_requeue_stalled(stalled_after=timedelta(0))  # sent twice: still one effect

    wait_until(status_is(proposal.pk, ProposalStatus.EXECUTED))
    assert Proposal.objects.get(pk=proposal.pk).executions.count() == 1
    assert Campaign.objects.get(external_id="brand-search").daily_budget == Decimal("720.00")
    # The operator's message about it was lost with the tasks; the next delivery task takes
    # it (else the test's end waited 15 s on a message nothing would send).
    deliver_notifications.delay([])
