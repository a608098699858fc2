"""One agent's slow or hanging callback receiver does not hold up another agent's events: at
most ``CALLBACK_REQUESTS_PER_AGENT`` requests to one agent are under way at once; an event
beyond them waits its turn without holding a worker, and another agent's event goes at once.
An attempt whose sender stopped before recording it is in the event's log, not missing."""

import threading
import time

import pytest
from django.db import connection

from approvals.models import Agent
from feedback.callbacks import callback_event_deliver
from feedback.models import CallbackEvent
from hitlproject.vocabulary import INTERRUPTED
from tests.conftest import Receiver, wait_until
from tests.factories import evaluated

pytestmark = pytest.mark.django_db(transaction=True)


def event_for(agent: str, url: str) -> CallbackEvent:
    """An event due now on ``agent``'s callback URL, as a move of its proposal records it
    (each attempt goes where the agent is reached then: its callback URL is ``url``)."""
    Agent.objects.filter(name=agent).update(callback_url=url)
    proposal = evaluated(agent=agent)
    return CallbackEvent.objects.create(
        agent=Agent.objects.get(name=agent),
        proposal=proposal,
        type="approved",
        url=url,
        body={"proposal": {"id": proposal.pk}},
    )


def delivered(event_id: int) -> None:
    """A worker's thread delivering an event, its database connection closed after."""
    try:
        callback_event_deliver(event_id=event_id)
    finally:
        connection.close()


def test_a_slow_receiver_holds_no_more_than_its_share_and_others_go_at_once(demo_world, settings):
    settings.CALLBACK_REQUESTS_PER_AGENT = 2
    answer = threading.Event()
    slow, quick = Receiver(200, hold=answer), Receiver(200)
    try:
        waiting = [event_for("optimizer", slow.url) for _ in range(3)]
        other = event_for("copywriter", quick.url)
        senders = [threading.Thread(target=delivered, args=(event.pk,)) for event in waiting[:2]]
        for sender in senders:
            sender.start()
        wait_until(lambda: len(slow.received) == 2)  # two requests under way, held

        started = time.monotonic()
        third = callback_event_deliver(event_id=waiting[2].pk)
        others = callback_event_deliver(event_id=other.pk)
        took = time.monotonic() - started
        answer.set()
        for sender in senders:
            sender.join()
    finally:
        slow.close()
        quick.close()

    assert third is None  # its turn comes later: not sent, not counted as an attempt
    waiting[2].refresh_from_db()
    assert (waiting[2].attempts, waiting[2].status, len(slow.received)) == (0, "pending", 2)
    assert others.status == "delivered" and len(quick.received) == 1
    assert took < 2, "the other agent's event waited for the slow receiver"
    assert [e.status for e in CallbackEvent.objects.filter(pk__in=[w.pk for w in waiting[:2]])] == [
        "delivered",
        "delivered",
    ]


def test_an_attempt_whose_sender_stopped_is_logged_as_interrupted_when_sent_again(demo_world):
    receiver = Receiver(200)
    try:
        event = event_for("optimizer", receiver.url)
        # Its first sender took it and stopped before recording (its lease has run out).
        CallbackEvent.objects.filter(pk=event.pk).update(attempts=1)

        sent = callback_event_deliver(event_id=event.pk)
    finally:
        receiver.close()

    assert sent.status == "delivered" and sent.attempts == 2
    assert [entry["result"] for entry in sent.log] == [INTERRUPTED, "HTTP 200"]
