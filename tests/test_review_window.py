"""The review window is kept when deciding, not only by the once-a-minute sweep: a decision or
a withdrawal after it is refused (409, saying the proposal expired), and the proposal expires
there and then, with its expiry feedback, exactly as the sweep would have expired it."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from hitl_client._tools import outcome_report
from hitl_client.models import Proposal as ClientProposal

from approvals.models import Decision, Proposal, ProposalStatus
from approvals.selectors import how_review_ended
from approvals.services.decisions import (
    payload_seen,
    proposal_approve,
    proposal_reject,
    proposals_approve,
    proposals_reject,
)
from approvals.services.expiry import proposals_expire_overdue
from approvals.services.proposals import proposal_withdraw_for_agent
from feedback.models import Feedback
from hitlproject.errors import Conflict
from ledger.models import Campaign
from policies.models import Policy
from tests.conftest import reallocation
from tests.factories import evaluated

EXPIRED = r"review window closed at .* UTC: it has expired and can no longer be"


def overdue(amount: str = "280.00") -> Proposal:
    """A reallocation waiting for review whose window closed a second ago, before the sweep
    came round."""
    proposal = evaluated(reallocation(amount))
    Proposal.objects.filter(pk=proposal.pk).update(
        review_expires_at=timezone.now() - timedelta(seconds=1)
    )
    return proposal


def expired_as_the_sweep_expires(proposal: Proposal) -> None:
    proposal = Proposal.objects.get(pk=proposal.pk)
    assert proposal.status == ProposalStatus.EXPIRED
    record = proposal.history.latest("history_date")
    assert (record.history_actor_kind, record.history_actor) == ("system", "expiry")
    assert record.history_change_reason == "the review window closed without a decision"
    closed = f"{proposal.review_expires_at:%Y-%m-%d %H:%M:%S} UTC"
    # The agent is told when the window closed, not only "expired".
    assert list(Feedback.objects.filter(proposal=proposal).values_list("kind", "note")) == [
        ("expired", f"Nobody decided it in time: its review window closed at {closed}.")
    ]
    assert not Decision.objects.filter(proposal=proposal).exists()
    assert proposals_expire_overdue() == 0  # nothing left for the sweep: it expired once
    assert Campaign.objects.get(external_id="brand-search").daily_budget == 1000


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def test_an_approval_after_the_window_is_refused_and_the_proposal_expires(operator):
    proposal = overdue()
    with pytest.raises(Conflict, match=EXPIRED + " approved") as refused:
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert refused.value.status_code == 409
    expired_as_the_sweep_expires(proposal)


def test_a_rejection_after_the_window_is_refused_and_the_proposal_expires(operator):
    proposal = overdue()
    with pytest.raises(Conflict, match=EXPIRED + " rejected"):
        proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="other")
    expired_as_the_sweep_expires(proposal)


def test_an_edit_after_the_window_is_refused_and_the_proposal_expires(operator):
    proposal = overdue()
    smaller = proposal.payload | {"amount": "200.00"}
    with pytest.raises(Conflict, match=EXPIRED + " edited and approved"):
        proposal_approve(proposal_id=proposal.pk, reviewer=operator, edited_payload=smaller)
    expired_as_the_sweep_expires(proposal)
    assert Proposal.objects.get(pk=proposal.pk).payload == proposal.payload


@pytest.mark.parametrize("decide", [proposals_approve, proposals_reject])
def test_in_bulk_the_late_ones_expire_among_the_refusals_and_the_others_go_through(
    operator, decide
):
    on_time = [evaluated(reallocation("150.00")), evaluated(reallocation("160.00"))]
    late = overdue("170.00")
    options = {"reason_code": "other"} if decide is proposals_reject else {}

    decided = decide(proposal_ids=[p.pk for p in [*on_time, late]], reviewer=operator, **options)

    assert sorted(p.pk for p in decided.proposals) == sorted(p.pk for p in on_time)
    [refusal] = decided.refused
    assert refusal.status_code == 409
    assert f"Proposal #{late.pk}'s review window closed" in refusal.message
    expired_as_the_sweep_expires(late)
    done = "approved" if decide is proposals_approve else "rejected"
    assert {Proposal.objects.get(pk=p.pk).status for p in on_time} == {done}


def test_the_console_says_its_window_closed_and_offers_no_decision(login):
    opened = Proposal.objects.get(pk=overdue("170.00").pk)
    client = login("operator")
    page = client.get(reverse("admin:approvals_proposal_change", args=[opened.pk]))
    assert 'id="approve-form"' not in page.text
    assert 'id="withdraw-form"' not in page.text
    # Opened, it is shown as it is: still waiting in the record, its window closed, about to
    # be expired by the sweep; the read expired nothing.
    closed = f"{opened.review_expires_at:%Y-%m-%d %H:%M:%S} UTC"
    said = page.text.split('id="review-window-closed">')[1].split("</span>")[0]
    assert said == (
        f"· its review window closed at {closed}: nobody can decide it any more, and the "
        "expiry sweep (every 10 seconds) is about to expire it"
    )
    assert Proposal.objects.get(pk=opened.pk).status == ProposalStatus.PENDING_REVIEW
    assert proposals_expire_overdue() == 1
    expired_as_the_sweep_expires(opened)

    # One approved from a page opened before its window closed is refused, and expires.
    proposal = overdue()
    response = client.post(
        reverse("admin:approvals_proposal_approve", args=[proposal.pk]),
        {"seen": payload_seen(proposal.payload)},  # as that page showed it
        follow=True,
    )

    expired_as_the_sweep_expires(proposal)
    # Its status line says when its window closed, undecided, not "Expired" alone.
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    closed = f"{Proposal.objects.get(pk=proposal.pk).review_expires_at:%Y-%m-%d %H:%M:%S} UTC"
    status_line = page.text.split('id="review-ended">')[1].split("</span>")[0]
    assert status_line == f"· Nobody decided it in time: its review window closed at {closed}."
    # The refusal says the same time as the status line, to the second (it said the minute).
    assert f"closed at {closed}: it has expired and can no longer be approved" in response.text


def test_an_operator_withdrawing_after_the_window_finds_it_expired(operator):
    proposal = overdue()
    with pytest.raises(Conflict, match=EXPIRED + " withdrawn"):
        proposal_withdraw_for_agent(proposal_id=proposal.pk, reviewer=operator)
    expired_as_the_sweep_expires(proposal)


def test_an_agent_withdrawing_after_the_window_gets_409_and_the_proposal_expires(optimizer):
    proposal = overdue()
    response = optimizer.post(f"/api/v1/proposals/{proposal.pk}/withdraw/")
    assert response.status_code == 409, response.content
    expired_as_the_sweep_expires(proposal)
    closed = f"{Proposal.objects.get(pk=proposal.pk).review_expires_at:%Y-%m-%d %H:%M:%S} UTC"
    assert f"closed at {closed}: it has expired and can no longer be withdrawn" in response.text
    assert optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()["status"] == "expired"


def test_within_the_window_a_decision_goes_through(operator):
    proposal = evaluated(reallocation("280.00"))
    Proposal.objects.filter(pk=proposal.pk).update(
        review_expires_at=timezone.now() + timedelta(minutes=1)
    )
    assert proposal_approve(proposal_id=proposal.pk, reviewer=operator).status == "approved"


def test_one_that_expires_with_one_of_two_approvals_says_so_in_its_history(operators, optimizer):
    """The history of a proposal one of two people approved before its window closed says so,
    and so do the framework adapters to their model, not that nobody decided."""
    first, _ = operators
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=first)
    Proposal.objects.filter(pk=proposal.pk).update(
        review_expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert proposals_expire_overdue() == 1

    record = Proposal.objects.get(pk=proposal.pk).history.latest("history_date")
    assert record.status == ProposalStatus.EXPIRED
    assert record.history_change_reason == (
        "the review window closed before enough people approved it: 1 of 2 approvals"
    )
    closed = f"{Proposal.objects.get(pk=proposal.pk).review_expires_at:%Y-%m-%d %H:%M:%S} UTC"
    # The agent's feedback says how many of the approvals it had, not who gave them; the
    # console names them.
    assert Feedback.objects.get(proposal=proposal).note == (
        "It had 1 of the 2 approvals its policy asks for when its review window closed at "
        f"{closed}: it was not approved."
    )
    assert how_review_ended(Proposal.objects.get(pk=proposal.pk)) == (
        f"It had 1 of the 2 approvals its policy asks for ({first.get_username()}) when its "
        f"review window closed at {closed}: it was not approved."
    )
    answer = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
    told = outcome_report(ClientProposal.from_api(answer))
    assert told["message"] == (
        "It expired before enough people approved it (its policy asks for 2). It was not executed."
    )


def test_an_agent_listing_its_proposals_past_a_window_reads_them_as_they_are(optimizer):
    """Its list expired those past their window there and then: a read that wrote. It lists
    them as they are, waiting with their window closed (``review_expires_at`` past), until
    the sweep expires them; then ``?status=expired`` finds them."""
    late, waiting = overdue("170.00"), evaluated(reallocation("150.00"))

    pending = optimizer.get("/api/v1/proposals/?status=pending_review").json()

    assert sorted(p["id"] for p in pending["results"]) == sorted([late.pk, waiting.pk])
    assert Proposal.objects.get(pk=late.pk).status == ProposalStatus.PENDING_REVIEW
    assert not Feedback.objects.filter(proposal=late).exists()
    assert proposals_expire_overdue() == 1
    expired = optimizer.get("/api/v1/proposals/?status=expired").json()
    assert [(p["id"], p["status"]) for p in expired["results"]] == [(late.pk, "expired")]
    expired_as_the_sweep_expires(late)


def test_the_review_queue_says_a_proposal_past_its_window_is_no_longer_decided(login):
    """Listed as it is (the read expires nothing), with its window closed said beside its
    approvals; the sweep expires it, and it is listed as expired."""
    late, waiting = overdue("170.00"), evaluated(reallocation("150.00"))
    client = login("operator")

    queue = client.get(reverse("admin:approvals_proposal_changelist"))

    assert {row.pk for row in queue.context["cl"].result_list} == {late.pk, waiting.pk}
    closed = f"{Proposal.objects.get(pk=late.pk).review_expires_at:%Y-%m-%d %H:%M:%S} UTC"
    assert (
        f'<span class="review-window-closed">review window closed {closed}: nobody can '
        "decide it any more; expiring</span>"
    ) in queue.text
    assert queue.text.count('class="review-window-closed"') == 1
    assert proposals_expire_overdue() == 1
    expired_as_the_sweep_expires(late)
    shown = client.get(reverse("admin:approvals_proposal_changelist") + "?status=expired")
    assert [row.pk for row in shown.context["cl"].result_list] == [late.pk]
