"""Two operators decide the same proposal at the same moment: one wins, the other is told."""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from approvals.models import Decision, Proposal
from approvals.services.decisions import (
    proposal_approve,
    proposal_reject,
    proposals_approve,
    proposals_reject,
)
from hitlproject.errors import DomainError
from tests.conftest import BID_RAISES, bid_adjustment, reallocation, wait_until
from tests.factories import evaluated

# Committed for real, so the winning approval's execution task is sent: the session's worker
# runs it, and each test waits for it to finish before the database is emptied for the next.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def race(*decisions):
    """Run the decisions at once, each on its own connection; return what each one got."""
    start = threading.Barrier(len(decisions))
    outcomes: list = [None] * len(decisions)

    def run(index, decide):
        try:
            start.wait()
            outcomes[index] = decide()
        except DomainError as error:
            outcomes[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, d)) for i, d in enumerate(decisions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.parametrize("attempt", range(5))
def test_an_approval_and_a_rejection_at_once_cannot_both_win(demo_world, attempt):
    users = get_user_model().objects
    operator = users.get(username="operator")
    colleague = users.create_user(f"colleague-{attempt}", is_staff=True)
    colleague.groups.set(operator.groups.all())
    proposal = evaluated(reallocation("280.00"))

    outcomes = race(
        lambda: proposal_approve(proposal_id=proposal.pk, reviewer=operator).status,
        lambda: (
            proposal_reject(
                proposal_id=proposal.pk, reviewer=colleague, reason_code="too_aggressive"
            ).status
        ),
    )

    winners = [o for o in outcomes if isinstance(o, str)]
    losers = [o for o in outcomes if isinstance(o, DomainError)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    won = winners[0]
    assert won in ("approved", "rejected")
    # What the winner left (an approval may already have been executed by the worker).
    final = Proposal.objects.get(pk=proposal.pk).status
    assert final == won or (won, final) == ("approved", "executed")
    # The loser says what it found once it had the row: the winner's status, or, after an
    # approval, "executed" if the worker ran it first on a busy machine.
    found = (won, "executed") if won == "approved" else (won,)
    assert str(losers[0]).startswith(
        tuple(f"Proposal #{proposal.pk} is {status}; it cannot become" for status in found)
    )
    assert Decision.objects.filter(proposal=proposal).count() == 1
    if won == "approved":
        wait_until(lambda: Proposal.objects.get(pk=proposal.pk).status == "executed")


def test_two_operators_deciding_the_same_proposals_in_bulk_decide_each_once(operators):
    operator, colleague = operators
    ids = [evaluated(bid_adjustment(bid, campaign)).pk for campaign, bid in BID_RAISES.items()]

    approving, rejecting = race(
        lambda: proposals_approve(proposal_ids=ids, reviewer=operator),
        lambda: proposals_reject(
            proposal_ids=list(reversed(ids)), reviewer=colleague, reason_code="too_aggressive"
        ),
    )

    approved = {proposal.pk for proposal in approving.proposals}
    rejected = {proposal.pk for proposal in rejecting.proposals}
    assert approved | rejected == set(ids) and not approved & rejected
    assert len(approving.refused) + len(rejecting.refused) == len(ids)
    assert Decision.objects.filter(proposal__in=ids).count() == len(ids)
    assert set(Proposal.objects.filter(pk__in=rejected).values_list("status", flat=True)) <= {
        "rejected"
    }
    wait_until(
        lambda: (
            set(Proposal.objects.filter(pk__in=approved).values_list("status", flat=True))
            <= {"executed"}
        )
    )
