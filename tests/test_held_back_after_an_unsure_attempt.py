"""A kill switch that holds an approved proposal back after an attempt was sent to its channel
and got no answer that says whether the channel carried it out (a timeout, a 503, a lost
connection) sends it back to a person, and every record says so: not "before it ran" (its
reason, its history, its agent's feedback and callback, the switch's release), which said the
action never ran when the channel may have carried it out. One held while queued, before any
attempt went, still reads "before it ran"."""

import html
import re
import threading

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from hitl_client import Proposal as ClientProposal
from hitl_client._tools import sent_back_told

from approvals.models import Proposal, ProposalStatus
from approvals.selectors import left_by_kill_switch
from approvals.services.decisions import proposal_approve
from executors import webhook
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from feedback.models import CallbackEvent, Feedback, FeedbackKind
from hitlproject.vocabulary import NO_SURE_ANSWER
from ledger.models import Account
from notifications.kill_switches import switch_message
from notifications.models import Notification, NotificationKind
from policies.models import KillSwitch
from policies.receivers import HELD_BACK_NOW
from tests.conftest import HANG_UP, Receiver, bid_adjustment
from tests.factories import evaluated

OUTAGE = "Tracking outage: nothing runs unseen."
FINDING = f"the kill switch on account demo is engaged: {OUTAGE}"
BEFORE_IT_RAN = f"Held back before executing: {FINDING} A person must approve it again."


# What the attempt's failure and its Retry say of a 503 (``unsure_answers_said``): the hold
# names the same answer. It read "Attempt 1 was sent to the channel and got no answer that
# says whether the channel carried it out", beside an attempt whose error reads "the endpoint
# answered HTTP 503".
ANSWERED_503 = (
    "Attempt 1 was answered HTTP 503, which does not say whether the channel carried it out"
)
# How it was recorded before: such reasons stay so recorded, and are read as such.
STORED_BEFORE = f"Attempt 1 was sent to the channel and {NO_SURE_ANSWER}"
# One said apart in every count and record of what the switch did.
AFTER_UNSURE = "after an attempt sent to the channel got no sure answer"


def after_attempt_1(unsure: str = ANSWERED_503, each: str = "it") -> str:
    return (
        f"Held back before its next attempt: {FINDING} {unsure}: {each} may have been carried "
        "out there. A person must approve it again."
    )


def engage() -> KillSwitch:
    return KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=OUTAGE
    )


def next_attempt_due(proposal: Proposal) -> None:
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())


def keys(endpoint: Receiver) -> list[str]:
    return [request["headers"]["Idempotency-Key"] for request in endpoint.received]


def page_text(client, proposal: Proposal) -> str:
    client.force_login(get_user_model().objects.get(username="operator"))
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert page.status_code == 200
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))


def told_the_agent(proposal: Proposal) -> tuple[list, list]:
    feedback = [
        (
            f.kind,
            f.get_kind_display(),
            f.note,
            f.history.earliest("history_id").history_change_reason,
        )
        for f in Feedback.objects.filter(proposal=proposal, kind=FeedbackKind.SENT_BACK)
    ]
    events = [
        (e.type, e.get_type_display(), e.body["reason"])
        for e in CallbackEvent.objects.filter(proposal=proposal, type="proposal.sent_back")
    ]
    return feedback, events


def test_a_503_then_a_switch_before_the_retry_says_the_attempt_may_have_run(
    channel, callback_endpoint, client, optimizer
):
    """Attempt 1 got a 503 (the channel may have carried it out); a switch engaged before the
    retry sends it back to a person. Every record said "Held back before executing", the
    agent's feedback "Sent back to a person before it ran"."""
    callback_endpoint(200)
    endpoint = channel(503, 200)
    proposal = evaluated(bid_adjustment("2.12"))  # the policy engine lets it run
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    switch = engage()
    next_attempt_due(proposal)

    held = proposal_execute(proposal_id=proposal.pk)

    said = after_attempt_1()
    assert held.status == ProposalStatus.PENDING_REVIEW
    assert held.verdict_reasons[0] == said
    assert held.history.latest("history_id").history_change_reason == said
    assert held.executions.get().error == "the endpoint answered HTTP 503"
    note = f"feedback for its agent: sent back to a person {AFTER_UNSURE}"
    assert told_the_agent(held) == (
        [("sent_back", "Sent back to a person", said, note)],
        [("proposal.sent_back", "Sent back to a person", said)],
    )
    text = page_text(client, held)
    assert said in text and "before executing" not in text
    # The switch's release counts it as held back after such an attempt, not before it ran.
    assert left_by_kill_switch(switch).sent_said() == (
        f"While it was engaged, it sent 1 proposal to a person (1 held back {AFTER_UNSURE})."
    )
    # The agent's adapters say so too, not "before it ran".
    answer = optimizer.get(f"/api/v1/proposals/{held.pk}/")
    assert answer.json()["execution"]["carried_out"] == "unknown"
    told = sent_back_told(ClientProposal.from_api(answer.json()))
    assert told == f"It was approved to run, then sent back to a person: {said}"

    # Approved again, it resends the same request, key and all: nothing ran twice.
    proposal_approve(
        proposal_id=held.pk, reviewer=get_user_model().objects.get(username="operator")
    )
    assert proposal_execute(proposal_id=held.pk).status == ProposalStatus.EXECUTED
    assert keys(endpoint) == [f"hitl-proposal-{held.pk}-1"] * 2


def test_a_hanging_endpoint_and_a_switch_engaged_meanwhile_say_the_attempt_may_have_run(
    channel, settings, monkeypatch, client
):
    """The walk: the endpoint hangs; a kill switch is engaged while the request waits there;
    the attempt times out and the proposal goes back to a person. It read "Held back before
    executing", while the same page said an attempt may have carried it out."""
    settings.OUTBOUND_DEADLINE = 1
    answer = threading.Event()  # never set: the endpoint answers after 2 s, past the deadline
    endpoint = Receiver(200, hold=answer)
    Account.objects.filter(external_id="demo").update(execution_endpoint=endpoint.url)
    sent = webhook.send_signed

    def engaged_while_it_hangs(*args, **kwargs):
        engage()  # by a policy owner, while the request is at the endpoint
        return sent(*args, **kwargs)

    monkeypatch.setattr(webhook, "send_signed", engaged_while_it_hangs)
    try:
        proposal = evaluated(bid_adjustment("2.12"))
        held = proposal_execute(proposal_id=proposal.pk)
    finally:
        answer.set()
        endpoint.close()

    assert held.status == ProposalStatus.PENDING_REVIEW
    attempt = held.executions.get()
    assert (attempt.error, attempt.unanswered) == (
        "the endpoint timed out: no answer within 1 s",
        True,
    )
    said = after_attempt_1(f"Attempt 1 {NO_SURE_ANSWER}")  # a timeout: no answer at all
    assert held.verdict_reasons[0] == said
    assert keys(endpoint) == [f"hitl-proposal-{held.pk}-1"]
    assert said in page_text(client, held)


def test_two_attempts_without_an_answer_are_both_named(channel, client):
    """A connection lost, then a 503: both may have been carried out."""
    channel(HANG_UP, 503, 200)
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    next_attempt_due(proposal)
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    engage()
    next_attempt_due(proposal)

    held = proposal_execute(proposal_id=proposal.pk)

    assert held.verdict_reasons[0] == after_attempt_1(
        "Attempt 2 was answered HTTP 503 and attempt 1 got no answer: none says whether the "
        "channel carried it out",
        "each",
    )


def test_a_429_then_a_switch_still_reads_before_it_ran(channel):
    """The channel answered that attempt 1 was not carried out (429): held before it ran."""
    channel(429, 200)
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    switch = engage()
    next_attempt_due(proposal)

    held = proposal_execute(proposal_id=proposal.pk)

    assert held.verdict_reasons[0] == BEFORE_IT_RAN
    assert told_the_agent(held)[0][0][:3] == ("sent_back", "Sent back to a person", BEFORE_IT_RAN)
    assert left_by_kill_switch(switch).sent_said() == (
        "While it was engaged, it sent 1 proposal to a person (1 held back before it ran)."
    )


def test_one_held_while_queued_reads_before_it_ran(demo_world):
    proposal = evaluated(bid_adjustment("2.12"))
    switch = engage()

    held = proposal_execute(proposal_id=proposal.pk)

    assert held.verdict_reasons[0] == BEFORE_IT_RAN
    assert not held.executions.exists()
    assert told_the_agent(held)[0][0][:3] == ("sent_back", "Sent back to a person", BEFORE_IT_RAN)
    assert left_by_kill_switch(switch).sent_said() == (
        "While it was engaged, it sent 1 proposal to a person (1 held back before it ran)."
    )


@pytest.mark.parametrize("waits", [True, False])
def test_a_switch_released_since_reads_engaged_then_and_keeps_the_attempt(channel, client, waits):
    channel(503, 200)
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    switch = engage()
    next_attempt_due(proposal)
    held = proposal_execute(proposal_id=proposal.pk)
    switch.engaged = False
    switch.save()
    if not waits:
        proposal_approve(
            proposal_id=held.pk, reviewer=get_user_model().objects.get(username="operator")
        )
        assert proposal_execute(proposal_id=held.pk).status == ProposalStatus.EXECUTED

    text = page_text(client, held)

    must = "must" if waits else "had to"
    assert (
        "Held back before its next attempt: the kill switch on account demo was engaged then"
    ) in text
    assert (
        f"{ANSWERED_503}: it may have been carried out there. A person {must} approve it again."
    ) in text


def test_a_reason_recorded_before_keeps_its_attempt_once_the_switch_is_released(channel, client):
    """A reason held back and recorded the old way ("Attempt 1 was sent to the channel and
    got no answer that says …") still reads as recorded, its switch said released since."""
    channel(503, 200)
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    switch = engage()
    next_attempt_due(proposal)
    held = proposal_execute(proposal_id=proposal.pk)
    recorded = after_attempt_1(STORED_BEFORE)
    Proposal.objects.filter(pk=held.pk).update(
        verdict_reasons=[recorded, *held.verdict_reasons[1:]]
    )
    switch.engaged = False
    switch.save()

    text = page_text(client, held)

    assert (
        "Held back before its next attempt: the kill switch on account demo was engaged then"
    ) in text
    assert (
        f"{STORED_BEFORE}: it may have been carried out there. A person must approve it again."
    ) in text


def test_the_engaged_switchs_message_counts_apart_those_held_after_an_unsure_attempt(channel):
    """Engaged over a bid between two attempts (attempt 1 answered 503) and another approved
    and queued: its message said "it has held back 2 approved proposals before they ran",
    though one may have run."""
    channel(503, 200)
    between = evaluated(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=between.pk).status == ProposalStatus.EXECUTING
    queued = evaluated(bid_adjustment("0.84", campaign="display-retarget"))
    assert queued.status == ProposalStatus.APPROVED

    switch = engage()  # its save holds both back

    assert set(getattr(switch, HELD_BACK_NOW).held) == {between.pk, queued.pk}
    assert getattr(switch, HELD_BACK_NOW).after_attempts == [between.pk]
    message = switch_message(
        Notification(kill_switch=switch, kind=NotificationKind.SWITCH_ENGAGED, about="")
    )
    said = " ".join(" ".join(message.paragraphs).split())
    assert (
        "it has held back 2 approved proposals (listed below), 1 before it ran and 1 "
        f"{AFTER_UNSURE}: each went back to a person, to approve again"
    ) in said, said
    assert "before they ran" not in said


@pytest.mark.parametrize(
    "typed",
    [
        "Tracking outage. Attempt 2 was answered by a stale pixel, per the vendor.",
        # The platform's own words, quoted by the policy owner.
        f"Vendor outage. Attempt 1 {NO_SURE_ANSWER}: it may have been carried out there.",
    ],
)
def test_a_switch_reason_that_speaks_of_attempts_is_read_whole_once_released(
    channel, client, typed
):
    """A policy owner's reason is free text, and may itself say "Attempt 2 was answered …".
    Once the switch was released, the proposal's page split it there: "…engaged then:
    Tracking outage. Released since: no kill switch covers it now. Attempt 2 was answered by
    a stale pixel, per the vendor. Attempt 1 was answered HTTP 503, …", the owner's words
    read as the platform's, cut by its own. The attempts the hold names are its last
    sentence only, and the owner's reason is said whole."""
    channel(503, 200)
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=typed
    )
    next_attempt_due(proposal)
    held = proposal_execute(proposal_id=proposal.pk)
    assert held.verdict_reasons[0] == (
        f"Held back before its next attempt: the kill switch on account demo is engaged: "
        f"{typed} {ANSWERED_503}: it may have been carried out there. A person must approve "
        "it again."
    )
    switch.engaged = False
    switch.save()

    assert (
        "Held back before its next attempt: the kill switch on account demo was engaged then: "
        f"{typed} Released since. {ANSWERED_503}: it may have been carried out there. A person "
        "must approve it again."
    ) in page_text(client, held)
