"""A callback event's page says what happened to it: each attempt, when, what the agent's
endpoint did and what was decided (retried at a time, given up and why), in words, not the
log's JSON; its title and its status say the same thing."""

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from approvals.models import Agent, Decision, Proposal
from approvals.services.decisions import proposal_approve, proposal_reject
from feedback.callbacks import callback_event_deliver
from feedback.models import CallbackEvent
from hitlproject.formats import console_time
from tests.conftest import BID_RAISES, HANG_UP, bid_adjustment, reallocation, wait_until
from tests.conftest import log_time_said as said
from tests.factories import evaluated

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.usefixtures("celery_worker")
def test_an_events_page_says_each_attempt_what_the_endpoint_did_and_what_came_of_it(
    callback_endpoint, login
):
    """Its log was the JSON stored ([{"at": "2026-…T19:14:57.696629+00:00", "result": …}]),
    and its title said "(failed)" beside a status of "Gave up", and "proposal.rejected" above
    a type of "Rejected"."""
    callback_endpoint(503, 503, 410)
    campaign, bid = next(iter(BID_RAISES.items()))
    proposal = evaluated(bid_adjustment(bid, campaign))  # waits for a person
    operator = get_user_model().objects.get(username="operator")

    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="other")

    event = wait_until(lambda: CallbackEvent.objects.filter(status="failed").first())
    first, second, third = event.log
    page = login("operator").get(reverse("admin:feedback_callbackevent_change", args=[event.pk]))

    assert page.status_code == 200
    text = page.text
    assert (
        f"Attempt 1, {said(first['at'])}: HTTP 503; retried at {said(first['retry_at'])}<br>"
        f"Attempt 2, {said(second['at'])}: HTTP 503; retried at {said(second['retry_at'])}<br>"
        f"Attempt 3, {said(third['at'])}: HTTP 410; given up: trying again would not change "
        "this answer"
    ) in text
    assert "retry_at" not in text and "&quot;result&quot;" not in text  # no JSON
    # Its title says its kind as its "Type" field does, not the wire's "proposal.rejected".
    assert f"“Rejected” on #{proposal.pk}: given up</h2>" in text
    assert '<div class="readonly">Rejected</div>' in text  # its type
    assert '<div class="readonly">Given up</div>' in text  # its status
    assert "(failed)" not in text and "Gave up" not in text


def approved_event(proposal: Proposal, url: str) -> CallbackEvent:
    """An "Approved" event of the optimizer's ``proposal``, for ``url``, not yet sent."""
    return CallbackEvent.objects.create(
        agent=Agent.objects.get(name="optimizer"),
        proposal=proposal,
        type="proposal.approved",
        url=url,
        body={"proposal": {"id": proposal.pk}},
    )


def test_an_event_waiting_after_attempts_that_may_have_arrived_does_not_call_them_failed(
    callback_endpoint, login
):
    """Its endpoint read the request and hung up before answering: the attempt may have
    arrived (its log says so), and the status read "1 attempt failed so far". It says what is
    known: none was accepted."""
    receiver = callback_endpoint(HANG_UP, 200)
    proposal = evaluated(agent="optimizer")
    event = approved_event(proposal, receiver.url)

    callback_event_deliver(event_id=event.pk)
    event = CallbackEvent.objects.get(pk=event.pk)
    page = login("operator").get(reverse("admin:feedback_callbackevent_change", args=[event.pk]))

    assert len(receiver.received) == 1  # it reached the endpoint
    due = console_time(event.next_attempt_at)
    assert "it may have arrived" in event.log[0]["result"]
    assert (
        f'<div class="readonly">Waiting to be tried again at {due}; 1 attempt so far, not '
        "accepted</div>"
    ) in page.text
    assert "failed so far" not in page.text


def test_an_event_whose_endpoint_refuses_every_connection_says_so_until_its_attempts_are_spent(
    callback_endpoint, login, settings
):
    """Said "could not connect: All connection attempts failed" (anyio's words, whatever the
    failure), and nothing of when it was tried again or why it stopped."""
    settings.CALLBACK_MAX_ATTEMPTS = 2
    receiver = callback_endpoint(200)
    receiver.close()  # nothing listens there any more: each connection is refused
    proposal = evaluated(agent="optimizer")
    event = approved_event(proposal, receiver.url)

    callback_event_deliver(event_id=event.pk)
    pending = CallbackEvent.objects.get(pk=event.pk)
    waiting = login("operator").get(reverse("admin:feedback_callbackevent_change", args=[event.pk]))
    listed = login("operator").get(reverse("admin:feedback_callbackevent_changelist"))
    CallbackEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
    callback_event_deliver(event_id=event.pk)
    event = CallbackEvent.objects.get(pk=event.pk)
    page = login("operator").get(reverse("admin:feedback_callbackevent_change", args=[event.pk]))

    first, second = event.log
    # Between its attempts it waits, and says so, with when and how many failed: it read
    # "Being delivered" the minutes it waited.
    due = console_time(pending.next_attempt_at)
    assert f"“Approved” on #{proposal.pk}: waiting to be tried again at {due}; 1 attempt " in (
        waiting.text
    )
    assert (
        f'<div class="readonly">Waiting to be tried again at {due}; 1 attempt so far, not '
        "accepted</div>"
    ) in waiting.text
    assert "being delivered" not in waiting.text.lower()
    assert (
        f">Waiting to be tried again at {due}; 1 attempt so far, not accepted</td>" in listed.text
    )
    assert (
        f"Attempt 1, {said(first['at'])}: could not connect: connection refused; to be retried "
        f"at {said(pending.log[0]['retry_at'])}"
    ) in waiting.text
    assert event.status == "failed"
    assert (
        f"Attempt 1, {said(first['at'])}: could not connect: connection refused; retried at "
        f"{said(first['retry_at'])}<br>"
        f"Attempt 2, {said(second['at'])}: could not connect: connection refused; given up: "
        "all 2 attempts allowed were made"
    ) in page.text


def test_an_event_whose_log_holds_a_time_without_its_zone_still_opens(demo_world, login):
    """A log holding a time without its zone (written by hand, or by another tool) made the
    page a server error: such a time cannot be said in UTC nor compared with now. It reads
    as an attempt whose time is not known."""
    proposal = evaluated(agent="optimizer")
    event = CallbackEvent.objects.create(
        agent=Agent.objects.get(name="optimizer"),
        proposal=proposal,
        type="proposal.approved",
        url="https://agent.example/hook",
        body={"proposal": {"id": proposal.pk}},
        status="pending",
        attempts=1,
        log=[{"at": "2026-12-05T10:00:00", "result": "HTTP 503", "retry_at": "2026-12-05T10:01"}],
    )

    page = login("operator").get(reverse("admin:feedback_callbackevent_change", args=[event.pk]))

    assert page.status_code == 200
    assert "Attempt 1: HTTP 503; retried" in page.text


def test_an_approved_events_page_says_whether_a_person_or_its_policy_approved(demo_world, login):
    """Its type read "Approved" alone, of a proposal its policy let run without anyone as of
    one a person approved; the agent's payload is as it was."""
    Agent.objects.filter(name="optimizer").update(callback_url="http://127.0.0.1:9/hook")
    let_run = evaluated(reallocation("50.00"))
    waited = evaluated(reallocation("280.00"))
    operator = get_user_model().objects.get(username="operator")
    proposal_approve(proposal_id=waited.pk, reviewer=operator)
    client = login("operator")

    def type_said(proposal) -> str:
        event = CallbackEvent.objects.get(proposal=proposal, type="proposal.approved")
        page = client.get(reverse("admin:feedback_callbackevent_change", args=[event.pk]))
        assert event.body["type"] == "proposal.approved"  # what the agent is sent: unchanged
        said = re.search(r'<label>Type:</label>\s*<div class="readonly">(.*?)</div>', page.text)
        return html.unescape(said.group(1))

    assert let_run.status in ("approved", "executing", "executed")
    let_run_at = Proposal.history.filter(id=let_run.pk, status="approved").get().history_date
    assert type_said(let_run) == (
        f"Approved: Policy “Budget reallocations” version 1 let it run without a person at "
        f"{console_time(let_run_at)}"
    )
    approval = Decision.objects.get(proposal=waited)
    assert type_said(waited) == (
        f"Approved: operator approved it at {console_time(approval.created_at)}"
    )


def test_an_events_history_says_each_record_as_it_was_at_its_own_time(callback_endpoint, login):
    """The record of a failed attempt, written at 12:04:05 with its retry due at 12:04:35,
    read "waiting to be tried again since 12:04:35" once that time had passed: the time the
    page was read, not the record's. Its row, its page's title, status and log say it as it
    was then: to be tried again at 12:04:35."""
    receiver = callback_endpoint(200)
    receiver.close()  # each connection is refused: the attempt fails and is to be retried
    proposal = evaluated(agent="optimizer")
    event = approved_event(proposal, receiver.url)
    callback_event_deliver(event_id=event.pk)
    # The attempt's record as if written 90 seconds ago, its retry due 30 seconds after it:
    # due a minute ago, now.
    written = timezone.now() - timezone.timedelta(seconds=90)
    due_at = written + timezone.timedelta(seconds=30)
    record = CallbackEvent.history.filter(id=event.pk).latest("history_id")
    retry_at = due_at.isoformat()
    log = [{**record.log[0], "at": written.isoformat(), "retry_at": retry_at}]
    CallbackEvent.history.filter(history_id=record.history_id).update(
        history_date=written, next_attempt_at=due_at, log=log
    )
    CallbackEvent.objects.filter(pk=event.pk).update(next_attempt_at=due_at, log=log)
    client = login("auditor")

    listed = client.get(reverse("admin:feedback_callbackevent_history", args=[event.pk]))
    version = client.get(
        reverse("admin:feedback_callbackevent_simple_history", args=[event.pk, record.history_id])
    )
    now = client.get(reverse("admin:feedback_callbackevent_change", args=[event.pk]))

    due = console_time(due_at)
    then = f"waiting to be tried again at {due}; 1 attempt so far, not accepted"
    table = re.search(r'<table id="change-history".*?</table>', listed.text, re.S).group(0)
    row = html.unescape(re.sub(r"\s+", " ", table))
    assert f"“Approved” on #{proposal.pk}: {then}" in row
    assert "waiting to be tried again since" not in row
    assert f"“Approved” on #{proposal.pk}: {then}" in html.unescape(version.text)
    assert f'<div class="readonly">{then[:1].upper()}{then[1:]}</div>' in version.text
    assert f"to be retried at {said(retry_at)}" in version.text
    # The event as it is now has waited since then.
    assert f"Waiting to be tried again since {due}" in now.text
