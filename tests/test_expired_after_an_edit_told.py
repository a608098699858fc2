"""A proposal a reviewer edited that then expired, as its agent is told it. Under a two-person
rule one operator approved a bid raise as proposed (2.00 → 2.60), a second edited it to 2.40
with a note and approved it, which started a new round; the window closed one approval short.
The agent's ``proposal.expired`` callback read "2.00 → 2.40", a value it never proposed, as
its proposal's summary, and neither it nor the ``expired`` feedback said a person had edited
it, nor why: the agent learnt of it only by reading the proposal."""

import html
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal
from approvals.services.expiry import proposals_expire_overdue
from feedback.models import CallbackEvent, Feedback
from tests.conftest import bid_adjustment, wait_until
from tests.test_ended_after_an_edit_told import (
    EDIT_DIFF,
    EDITED,
    NOTE,
    PROPOSED,
    edit_said,
    edited_by_the_second_of_two,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

EDIT_SAID = edit_said("expired")


def expire(proposal_id: int) -> None:
    Proposal.objects.filter(pk=proposal_id).update(
        review_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert proposals_expire_overdue() == 1


def expired_event(endpoint) -> dict:
    wait_until(lambda: CallbackEvent.objects.filter(status="delivered").exists())
    [event] = [e for e in endpoint.events() if e["type"] == "proposal.expired"]
    return event


def test_an_agent_is_told_the_edit_a_reviewer_made_before_its_proposal_expired(
    callback_endpoint, operators, optimizer, login
):
    endpoint = callback_endpoint(200)
    proposal_id = edited_by_the_second_of_two(operators, optimizer)

    expire(proposal_id)

    closed = f"{Proposal.objects.get(pk=proposal_id).review_expires_at:%Y-%m-%d %H:%M:%S} UTC"
    # Its feed: the edit field by field, as an approved_with_edits record gives it, and in
    # words, what it proposed, what expired, and the editor's note.
    [feedback] = optimizer.get("/api/v1/feedback/").json()["results"]
    assert (feedback["kind"], feedback["diff"]) == ("expired", EDIT_DIFF)
    assert feedback["note"] == (
        "It had 1 of the 2 approvals its policy asks for when its review window closed at "
        f"{closed}: it was not approved.\n{EDIT_SAID}"
    )
    # Its callback: its own proposal beside what it ended as, the edit and the note.
    event = expired_event(endpoint)
    assert event["proposal"]["proposed_summary"] == PROPOSED
    assert event["proposal"]["summary"] == EDITED
    assert event["edits"] == EDIT_DIFF
    assert event["reason"] == (
        f"the review window closed before enough people approved it: 1 of 2 approvals\n{EDIT_SAID}"
    )
    # Its page and its history say the same: what the agent proposed, the edit and its note,
    # and, among what its agent was told, the edit.
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal_id]))
    text = html.unescape(page.text)
    assert f"#{proposal_id} · {PROPOSED}" in text
    assert f'<p id="summary-now"><strong>As edited:</strong> {EDITED}</p>' in text
    assert NOTE in text
    history = login("auditor").get(reverse("admin:approvals_proposal_history", args=[proposal_id]))
    told = html.unescape(history.text)
    assert "A reviewer edited it (new_bid: 2.60 → 2.40): " + NOTE in told
    # Not "Expired unreviewed", of a proposal two people approved and one edited.
    assert "Feedback to optimizer (agent): Expired: its review window closed first" in told
    # Why it expired, in one set of words: its history's, its feedback's history's (it read
    # "before enough people decided it"), and its agent's record's legend on its page (it
    # read "nobody decided it in time").
    why = "the review window closed before enough people approved it: 1 of 2 approvals"
    assert why in told
    feedback_id = Feedback.objects.get(proposal_id=proposal_id).pk
    feedback_history = login("auditor").get(
        reverse("admin:feedback_feedback_history", args=[feedback_id])
    )
    assert f"feedback for its agent: expired: {why}" in html.unescape(feedback_history.text)
    assert "decided it" not in html.unescape(feedback_history.text)
    assert "before enough people approved it; never ran" in text
    assert "nobody decided it in time" not in text


def test_an_unedited_proposal_that_expired_is_told_as_it_proposed_it(callback_endpoint, optimizer):
    endpoint = callback_endpoint(200)
    proposal_id = optimizer.post(
        "/api/v1/proposals/", bid_adjustment("2.60"), format="json"
    ).json()["id"]

    expire(proposal_id)

    [feedback] = optimizer.get("/api/v1/feedback/").json()["results"]
    assert feedback["diff"] == {}
    assert feedback["note"].startswith("Nobody decided it in time")
    assert "\n" not in feedback["note"]
    event = expired_event(endpoint)
    assert event["proposal"]["summary"] == event["proposal"]["proposed_summary"] == PROPOSED
    assert event["edits"] == {}
    assert event["reason"] == "the review window closed without a decision"
