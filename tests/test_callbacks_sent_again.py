"""A callback event an operator sends again ("Deliver again") keeps counting its attempts: its
count and its log agree, so a request of it under way counts against its agent's limit and a
sender that stopped mid-send is noticed (the attempt said to have maybe reached the agent);
the attempts allowed are counted from the sending again, which its log notes; and its page
says how many attempts were made, and how many since it was sent again."""

import importlib
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone

from approvals.models import Agent
from approvals.services.decisions import proposal_reject
from feedback.callbacks import (
    DELIVER_CALLBACK_EVENT,
    callback_event_deliver,
    callback_events_redeliver,
)
from feedback.models import CallbackEvent
from hitlproject.vocabulary import INTERRUPTED
from tests.conftest import BID_RAISES, bid_adjustment, wait_until, workers_idle
from tests.conftest import log_time_said as said
from tests.factories import evaluated

# The tests whose events the worker sends take it; the others send theirs here, by the
# settings they set, which the worker (its own process) would not read, and a worker taking
# their events' tasks would race them for each attempt.
pytestmark = pytest.mark.django_db(transaction=True)


def given_up_event() -> CallbackEvent:
    """The optimizer's event of a rejection, sent by the worker and given up on (its endpoint
    refused it with the first of its statuses)."""
    campaign, bid = next(iter(BID_RAISES.items()))
    proposal = evaluated(bid_adjustment(bid, campaign))  # waits for a person
    operator = get_user_model().objects.get(username="operator")
    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="other")
    return wait_until(lambda: CallbackEvent.objects.filter(status="failed").first())


def another_event() -> CallbackEvent:
    """Another event of the optimizer's, due now, not yet sent."""
    agent = Agent.objects.get(name="optimizer")
    proposal = evaluated(agent="optimizer")
    return CallbackEvent.objects.create(
        agent=agent, proposal=proposal, type="proposal.approved", url=agent.callback_url, body={}
    )


def sent_again(login, event: CallbackEvent):
    return login("operator").post(
        reverse("admin:feedback_callbackevent_changelist"),
        {"action": "deliver_again", "_selected_action": [event.pk]},
        follow=True,
    )


@pytest.mark.usefixtures("celery_worker")
def test_an_event_sent_again_counts_against_its_agents_limit_while_its_request_is_under_way(
    callback_endpoint, login, settings
):
    """Its count of attempts went back to 0 beside its log of one: its request under way was
    not counted, and another event of its agent's went beyond the limit."""
    settings.CALLBACK_REQUESTS_PER_AGENT = 1
    receiver = callback_endpoint(410, 200)
    event = given_up_event()
    other = another_event()
    taken = []

    def while_it_is_under_way():
        receiver.while_later_requests.pop(2)
        taken.append(callback_event_deliver(event_id=other.pk))

    receiver.while_later_requests[2] = while_it_is_under_way

    assert "Sending 1 event again." in sent_again(login, event).text

    wait_until(lambda: CallbackEvent.objects.get(pk=event.pk).status == "delivered")
    assert taken == [None]  # its turn comes once the event sent again is answered
    wait_until(lambda: CallbackEvent.objects.get(pk=other.pk).status == "delivered")
    assert [request["headers"]["X-HITL-Delivery"] for request in receiver.received] == [
        str(event.event_id),
        str(event.event_id),
        str(other.event_id),
    ]


@pytest.mark.usefixtures("celery_worker")
def test_a_sender_that_stopped_mid_send_after_an_event_was_sent_again_is_noticed(
    callback_endpoint, login
):
    """The worker sending it again outlives its lease (as one that stopped does); the next
    sender did not notice (its count of 1 matched its log of 1) and its log said nothing of
    an attempt that may have reached the agent."""
    receiver = callback_endpoint(410, 200)
    event = given_up_event()

    def while_it_is_under_way():
        receiver.while_later_requests.pop(2)
        CallbackEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
        callback_event_deliver(event_id=event.pk)  # its lease has run out: taken again

    receiver.while_later_requests[2] = while_it_is_under_way
    sent_again(login, event)

    wait_until(lambda: len(receiver.received) == 3)
    event = wait_until(lambda: CallbackEvent.objects.filter(status="delivered").first())
    assert event.attempts == 3
    assert [entry["result"] for entry in event.log] == [
        "HTTP 410",
        "sent again by operator; up to 8 more attempts",
        INTERRUPTED,
        "HTTP 200",
    ]
    page = login("operator").get(reverse("admin:feedback_callbackevent_change", args=[event.pk]))
    assert (
        f"Attempt 2, {said(event.log[2]['at'])}: interrupted: its sender stopped before "
        "recording whether it went, so it may have; to be sent again"
    ) in page.text


@pytest.mark.usefixtures("celery_worker")
def test_an_events_page_says_its_attempts_and_those_since_an_operator_sent_it_again(
    callback_endpoint, login
):
    """It said "Attempts: 1" beside a log of two attempts."""
    callback_endpoint(410, 200)
    event = given_up_event()

    sent_again(login, event)

    event = wait_until(lambda: CallbackEvent.objects.filter(status="delivered").first())
    first, again, second = event.log
    page = login("operator").get(reverse("admin:feedback_callbackevent_change", args=[event.pk]))
    assert '<div class="readonly">2 (1 since an operator sent it again)</div>' in page.text
    assert (
        f"Attempt 1, {said(first['at'])}: HTTP 410; given up: trying again would not change "
        f"this answer<br>"
        f"{said(again['at'])}: sent again by operator; up to 8 more attempts<br>"
        f"Attempt 2, {said(second['at'])}: HTTP 200; delivered"
    ) in page.text


def test_the_attempts_allowed_are_counted_afresh_from_a_sending_again(
    callback_endpoint, login, settings
):
    # Sent here, at 2 attempts allowed, not by the session's worker (which allows 8): the
    # tasks sent for it (a retry's, the sending again's) find it not due, and are waited out.
    settings.CALLBACK_MAX_ATTEMPTS = 2
    settings.CALLBACK_RETRY_SECONDS = 3600
    callback_endpoint(200).close()  # each connection is refused: retried until given up
    event = another_event()
    for _ in range(2):
        CallbackEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
        callback_event_deliver(event_id=event.pk)
    operator = get_user_model().objects.get(username="operator")
    with transaction.atomic():
        callback_events_redeliver(
            events=[CallbackEvent.objects.get(pk=event.pk)], operator=operator
        )
        CallbackEvent.objects.filter(pk=event.pk).update(
            next_attempt_at=timezone.now() + timedelta(hours=1)
        )
    wait_until(lambda: workers_idle(DELIVER_CALLBACK_EVENT, within=60), timeout=90)

    tried = []
    for _ in range(2):
        CallbackEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
        tried.append(callback_event_deliver(event_id=event.pk).status)

    event.refresh_from_db()
    assert tried == ["pending", "failed"]
    assert event.attempts == 4
    assert event.log[-1]["given_up"] == "all 2 attempts allowed since it was sent again were made"
    page = login("operator").get(reverse("admin:feedback_callbackevent_change", args=[event.pk]))
    assert '<div class="readonly">4 (2 since an operator sent it again)</div>' in page.text
    assert "Attempt 4, " in page.text and "Attempt 5" not in page.text


def test_events_sent_again_before_read_and_are_delivered_as_what_happened(callback_endpoint, login):
    """Migration feedback 0017: an event sent again by the code before (its count put back
    to 0, its log kept) is counted whole, its log notes the sending again as the console's log
    of acts recorded it, and an attempt whose sender stopped since is noticed."""
    receiver = callback_endpoint(200)
    operator = get_user_model().objects.get(username="operator")
    at = [timezone.now() - timedelta(minutes=minutes) for minutes in (30, 20, 10)]
    given_up = {"at": at[0].isoformat(), "result": "HTTP 410", "given_up": "trying again…"}
    again = {"at": at[2].isoformat(), "result": "HTTP 503", "given_up": "all 8 attempts…"}
    # Sent again and given up on again; its sending again in the console's log.
    twice = another_event()
    CallbackEvent.objects.filter(pk=twice.pk).update(
        status="failed", attempts=1, log=[given_up, again]
    )
    LogEntry.objects.create(
        user=operator,
        content_type=ContentType.objects.get_for_model(CallbackEvent),
        object_id=str(twice.pk),
        object_repr=str(twice),
        action_flag=CHANGE,
        change_message="Sent again",
        action_time=at[1],
    )
    # Sent again (when and by whom unrecorded), and its sender stopped during its attempt.
    stopped = another_event()
    CallbackEvent.objects.filter(pk=stopped.pk).update(
        status="pending", attempts=1, log=[given_up], next_attempt_at=at[2]
    )

    migration = importlib.import_module(
        "feedback.migrations.0017_callback_event_attempts_never_reset"
    )
    state = MigrationExecutor(connection).loader.project_state(
        ("feedback", "0017_callback_event_attempts_never_reset")
    )
    migration.attempts_never_reset(state.apps, None)

    twice.refresh_from_db()
    assert twice.attempts == 2
    page = login("operator").get(reverse("admin:feedback_callbackevent_change", args=[twice.pk]))
    assert '<div class="readonly">2 (1 since an operator sent it again)</div>' in page.text
    assert (
        f"Attempt 1, {said(given_up['at'])}: HTTP 410; given up: trying again…<br>"
        f"{said(at[1].isoformat())}: sent again by operator<br>"
        f"Attempt 2, {said(again['at'])}: HTTP 503; given up: all 8 attempts…"
    ) in page.text

    delivered = callback_event_deliver(event_id=stopped.pk)
    assert (delivered.status, delivered.attempts, len(receiver.received)) == ("delivered", 3, 1)
    assert [entry["result"] for entry in delivered.log] == [
        "HTTP 410",
        "sent again by an operator (when and by whom was not recorded)",
        INTERRUPTED,
        "HTTP 200",
    ]


def given_up_here(endpoint) -> CallbackEvent:
    """An event of the optimizer's given up on, sent here (its endpoint answers 410 first)."""
    endpoint(410)
    event = another_event()
    callback_event_deliver(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == "failed"
    return event


def test_an_event_whose_agent_was_deactivated_is_not_said_to_be_sent_again(
    callback_endpoint, login
):
    """ "Deliver again" on an event whose agent was deactivated since said "Sending 1 event
    again." and noted "sent again by operator; up to 8 more attempts" in its log, then its
    sender found the agent deactivated and gave it up unsent. It is not sent again, and the
    operator is told why; its log is as it was."""
    event = given_up_here(callback_endpoint)
    log = list(event.log)
    Agent.objects.filter(name="optimizer").update(is_active=False)

    page = sent_again(login, event)

    said = [str(message) for message in page.context["messages"]]
    assert said == [f"Event #{event.pk} was not sent again: its agent optimizer is deactivated."]
    event.refresh_from_db()
    assert (event.status, event.log) == ("failed", log)
    assert not LogEntry.objects.filter(object_id=str(event.pk), action_flag=CHANGE).exists()


@pytest.mark.usefixtures("celery_worker")
def test_deliver_again_pressed_in_two_tabs_sends_once_and_says_so(callback_endpoint, login):
    """Pressed a second time, from a list loaded before the first went (another tab), it
    said "Sending 0 events again." and nothing of the event selected; it is named, with
    why it was left as it is."""
    receiver = callback_endpoint(410, 200)
    event = given_up_here(endpoint=lambda *_: receiver)
    first = sent_again(login, event)
    assert [str(m) for m in first.context["messages"]] == ["Sending 1 event again."]
    wait_until(lambda: CallbackEvent.objects.filter(pk=event.pk, status="delivered").exists())

    second = sent_again(login, event)

    said = [str(message) for message in second.context["messages"]]
    assert said == [f"Event #{event.pk} was not sent again: it was delivered."]
    event.refresh_from_db()
    assert [entry.get("note") for entry in event.log] == [None, "sent_again", None]
    assert (
        LogEntry.objects.filter(
            object_id=str(event.pk),
            content_type=ContentType.objects.get_for_model(CallbackEvent),
            action_flag=CHANGE,
        ).count()
        == 1
    )
