"""What a kill switch's messages say is what happened: the console's answer to its save does
not say "to approve again before it runs" of a proposal held after an attempt that may have
carried it out; a switch is named with its number wherever two on one scope would read
alike; a proposal's messages say a switch moved away was moved, not released; a move's
email says what it sent since it was moved, or that it sent nothing."""

import html

from django.utils import timezone
from django.utils.html import strip_tags

from approvals.models import ProposalStatus
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from ledger.models import Account
from tests.conftest import bid_adjustment
from tests.factories import evaluated

OUTAGE = "Tracking outage: nothing runs unseen."
AFTER_UNSURE = "after an attempt sent to the channel got no sure answer"


def as_read(messages) -> list[str]:
    return [" ".join(html.unescape(strip_tags(str(message))).split()) for message in messages]


def engaged_in_the_console(owner) -> list[str]:
    saved = owner.post(
        "/admin/policies/killswitch/add/",
        {
            "scope": "account",
            "account": Account.objects.get(external_id="demo").pk,
            "engaged": "on",
            "reason": OUTAGE,
            "change_reason": "Incident 9.",
        },
        follow=True,
    )
    assert saved.status_code == 200
    return as_read(saved.context["messages"])


def test_the_save_counts_apart_those_held_after_an_unsure_attempt(channel, login):
    """One bid between two attempts (attempt 1 answered 503: it may have run) and one
    approved and queued: the save said of both "to approve again before it runs"."""
    channel(503, 200)
    between = evaluated(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=between.pk).status == ProposalStatus.EXECUTING
    ExecutionRound.objects.filter(proposal=between).update(lease_until=timezone.now())
    queued = evaluated(bid_adjustment("0.84", campaign="display-retarget"))
    assert queued.status == ProposalStatus.APPROVED

    said = engaged_in_the_console(login("policy-owner"))

    assert any(
        message.startswith(
            "Kill switch on account demo held back 2 approved proposals (1 not yet carried "
            f"out, 1 {AFTER_UNSURE}): each is back with a person, to approve again: the 1 not "
            "yet carried out before it runs, the 1 held after such an attempt before its next "
            "attempt, as it may have been carried out there."
        )
        for message in said
    ), said
    assert not any("before it runs." in message for message in said), said
