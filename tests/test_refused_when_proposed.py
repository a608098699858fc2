"""A reallocation submitted while a move approved before it would leave too little waits for a
person. Its page, the queue, a single or bulk approval, its Slack message and the record of
its re-assessment said it "can no longer be applied as proposed", but nothing changed since it
was proposed: it could not be applied then either. Now they say it "cannot be applied as
proposed"; one that could be applied when it was proposed still "can no longer" be."""

import html
import re

import pytest
from django.urls import reverse

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import bulk_approval_plan, proposal_approve
from executors.runner import proposal_execute
from hitlproject.errors import Conflict
from notifications.models import Notification
from tests.conftest import wait_until
from tests.factories import evaluated
from tests.test_notifications_slack import context_texts
from tests.test_reallocation_no_longer_fits import queue_marks, retarget_move
from tests.test_reallocation_under_way_at_submission import (
    approved_move,
    left_after,
    reallocations_run_alone_up_to,
)

URL = "/api/v1/proposals/"
THEN = (
    "Approving it would not carry it out: its execution would refuse it. It can be edited, "
    "rejected or withdrawn."
)


def page_note(client, pk: int) -> str:
    page = client.get(reverse("admin:approvals_proposal_change", args=[pk])).text
    [note] = re.findall(r'<p class="errornote" id="no-longer-applies">(.*?)</p>', page)
    return html.unescape(note)


@pytest.mark.django_db
def test_a_move_held_at_submission_cannot_be_applied_it_is_not_no_longer(
    optimizer, operators, login
):
    operator, colleague = operators
    reallocations_run_alone_up_to("0.60")
    first = approved_move(operator)  # #1: 200.00 out of display-retarget's 300.00
    held = optimizer.post(URL, retarget_move("150.00"), format="json").json()
    assert held["status"] == "pending_review"
    refused = f"Proposal #{held['id']} cannot be applied as proposed: {left_after(first.pk)} {THEN}"
    client = login("operator")

    # Its page, the queue, an approval alone and one with others say it alike.
    assert page_note(client, held["id"]) == refused
    said, _ = queue_marks(client)
    assert said[held["id"]].endswith(f"Cannot be applied as proposed: {left_after(first.pk)}")
    with pytest.raises(Conflict) as single:
        proposal_approve(proposal_id=held["id"], reviewer=colleague)
    assert single.value.message == refused
    plan = bulk_approval_plan(reviewer=colleague, proposal_ids=[held["id"]])
    assert plan.refusals[held["id"]].message == refused

    # Once #1 has run, the ledger's own figure refuses it: still not "no longer", on its page
    # nor in the record of its re-assessment.
    assert proposal_execute(proposal_id=first.pk).status == ProposalStatus.EXECUTED
    assert page_note(client, held["id"]) == (
        f"Proposal #{held['id']} cannot be applied as proposed: amount: Exceeds "
        f"display-retarget's daily budget of 100.00. {THEN}"
    )
    reasons = Proposal.objects.get(pk=held["id"]).verdict_reasons
    assert reasons[0].startswith("Re-assessed after "), reasons
    assert reasons[0].endswith(
        " It cannot be applied as proposed: amount: Exceeds display-retarget's daily budget "
        "of 100.00."
    ), reasons[0]
    assert not any("no longer" in reason for reason in reasons), reasons


@pytest.mark.django_db
def test_a_move_that_fitted_when_proposed_can_no_longer_be_applied(optimizer, operators, login):
    """Proposed before #1 was approved, it could be applied then: it "can no longer" be, on
    its page and in the record of its re-assessment once #1 has run."""
    operator, _ = operators
    waiting = evaluated(retarget_move("150.00"))
    first = approved_move(operator)
    client = login("operator")

    assert page_note(client, waiting.pk) == (
        f"Proposal #{waiting.pk} can no longer be applied as proposed: {left_after(first.pk)} "
        f"{THEN}"
    )
    assert proposal_execute(proposal_id=first.pk).status == ProposalStatus.EXECUTED
    reasons = Proposal.objects.get(pk=waiting.pk).verdict_reasons
    assert reasons[0].endswith(
        " It can no longer be applied as proposed: amount: Exceeds display-retarget's daily "
        "budget of 100.00."
    ), reasons[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_its_slack_message_says_it_cannot_be_applied(optimizer, on_slack, channel, operators):
    """Told on Slack as it waits, it offers no Approve and says why, in its page's words."""
    channel(503, retry_after="600")  # #1's webhook asks to come back later: it stays executing
    operator, _ = operators
    first = approved_move(operator)
    wait_until(lambda: Proposal.objects.get(pk=first.pk).executions.exists(), timeout=15)
    reallocations_run_alone_up_to("0.60")
    held = optimizer.post(URL, retarget_move("150.00"), format="json").json()
    assert held["status"] == "pending_review"

    sent = wait_until(
        lambda: Notification.objects.filter(
            proposal_id=held["id"], kind="waiting", status="sent"
        ).first(),
        timeout=15,
    )
    blocks = on_slack.messages[(sent.slack_channel, sent.slack_ts)]["blocks"]
    texts = context_texts(blocks)
    assert (
        f"Proposal #{held['id']} cannot be applied as proposed: {left_after(first.pk)} {THEN}"
        in texts
    ), texts
    assert "no longer" not in texts
