"""Whether an agent was told of what became of its proposal, when, where, and whether its
endpoint accepted it, is in the callback event's history, sealed in the audit chain as the
rest of the history is: the event made with the decision, each attempt to deliver it as it
goes out and as it ends, an operator sending it again. An event's row altered in the database
past its history is named by verification, and the events already there when the history
began are recorded as they were."""

import html
import importlib
import re
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone

from approvals.models import Agent
from approvals.services.decisions import proposal_reject
from audit.chain import chain_seal, chain_verify
from audit.models import ChainLink
from feedback import callbacks
from feedback.callbacks import LEASE, callback_event_deliver
from feedback.models import CallbackEvent
from hitlproject.celery import app
from hitlproject.outbound import Sent
from tests.conftest import BID_RAISES, bid_adjustment
from tests.factories import evaluated

pytestmark = pytest.mark.django_db(transaction=True)

HISTORY = "feedback.historicalcallbackevent"


@pytest.fixture
def sent_here(monkeypatch):
    """The test sends its events itself: none is handed to the session's worker, after the
    commit or as a retry, which would race it for each attempt."""
    monkeypatch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
    monkeypatch.setattr(app, "send_task", lambda *args, **kwargs: None)


def rejected() -> CallbackEvent:
    """A proposal of the optimizer's that waited for a person, rejected by the operator, and
    the event its rejection made for the agent."""
    campaign, bid = next(iter(BID_RAISES.items()))
    proposal = evaluated(bid_adjustment(bid, campaign))
    operator = get_user_model().objects.get(username="operator")
    proposal_reject(
        proposal_id=proposal.pk, reviewer=operator, reason_code="too_aggressive", note="Slower."
    )
    [event] = CallbackEvent.objects.filter(proposal=proposal)
    return event


def due_now(event: CallbackEvent) -> None:
    """Its retry's time come (as the sweep makes an overdue event due: no record)."""
    CallbackEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())


def records(event: CallbackEvent) -> list:
    return list(CallbackEvent.history.filter(id=event.pk).order_by("history_id"))


def test_the_agent_told_and_each_attempt_are_recorded_and_sealed(
    callback_endpoint, sent_here, login
):
    """Its endpoint refuses the rejection at first (503), then accepts it: the event's history
    says it was made, each attempt as it went out and where, and what the endpoint answered;
    the chain seals every record, and holds."""
    endpoint = callback_endpoint(503, 200)
    event = rejected()
    callback_event_deliver(event_id=event.pk)
    due_now(event)
    callback_event_deliver(event_id=event.pk)
    assert [request["headers"]["X-HITL-Event"] for request in endpoint.received] == [
        "proposal.rejected",
        "proposal.rejected",
    ]

    said = [
        (r.history_type, r.history_actor, r.status, r.attempts, r.history_change_reason)
        for r in records(event)
    ]
    assert said[:2] == [
        ("+", "callbacks", "pending", 0, "Made, to be sent to its agent's callback URL"),
        ("~", "callbacks", "pending", 1, f"Attempt 1 under way: sent to {endpoint.url}"),
    ]
    assert said[2][:4] == ("~", "callbacks", "pending", 1)
    assert re.fullmatch(r"Attempt 1, .* UTC: HTTP 503; to be retried at .* UTC", said[2][4])
    assert said[3] == (
        "~",
        "callbacks",
        "pending",
        2,
        f"Attempt 2 under way: sent to {endpoint.url}",
    )
    assert said[4][:4] == ("~", "callbacks", "delivered", 2)
    assert re.fullmatch(r"Attempt 2, .* UTC: HTTP 200; delivered", said[4][4])
    last = records(event)[-1]
    event.refresh_from_db()
    assert (last.log, last.delivered_at) == (event.log, event.delivered_at)

    chain_seal()
    assert ChainLink.objects.filter(table=HISTORY).count() == 5
    found = chain_verify()
    assert found.holds, found.verdict()

    # The auditor reads it on the event's History page: who, and what each did.
    page = login("auditor").get(reverse("admin:feedback_callbackevent_history", args=[event.pk]))
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())
    assert "the callbacks to agents (system)" in text
    assert f"Attempt 2 under way: sent to {endpoint.url}" in text
    assert "HTTP 200; delivered" in text


def test_an_event_s_history_reads_its_log_in_words_and_no_change_nobody_can_see(
    callback_endpoint, sent_here, login
):
    """Refused twice (503), then accepted: the event's History page showed its log as the
    JSON stored ('[{"at": "2026-12-06T15:04:09.138243+00:00", …}]'), and "Next attempt at:
    15:05:39 UTC → 15:05:39 UTC" where attempt 2's lease was rewritten as its retry in the
    same second. The log reads as the event's own page says it, line by line, and each time
    says what it is: the lease of an attempt under way, the retry after one not accepted."""
    callback_endpoint(503, 503, 200)
    event = rejected()
    for _ in range(3):
        callback_event_deliver(event_id=event.pk)
        due_now(event)

    page = login("auditor").get(reverse("admin:feedback_callbackevent_history", args=[event.pk]))

    changes = [
        tuple(html.unescape(re.sub(r"<br>", " | ", part)).strip() for part in change)
        for change in re.findall(
            r"<li>\s*<strong>([^<]*):</strong>(.*?)&nbsp;&rarr;&nbsp;&nbsp;(.*?)\s*</li>",
            page.text,
            re.S,
        )
    ]
    assert changes
    assert '"at"' not in page.text and "retry_at" not in page.text
    assert all(old != new for _, old, new in changes), changes
    logs = [new for field, _, new in changes if field == "Log"]
    assert re.fullmatch(
        r"Attempt 1, \S+ \S+ UTC: HTTP 503; retried at \S+ \S+ UTC \| "
        r"Attempt 2, \S+ \S+ UTC: HTTP 503; to be retried at \S+ \S+ UTC",
        logs[1],
    ), logs
    retried = [
        (old, new)
        for field, old, new in changes
        if field == "Next attempt at" and "attempt 3, as attempt 2" in new
    ]
    assert len(retried) == 1
    old, new = retried[0]
    assert re.fullmatch(
        r"\S+ \S+ UTC, the lease of attempt 2, under way \(taken again then if it has not "
        r"ended\)",
        old,
    )
    assert re.fullmatch(r"\S+ \S+ UTC: attempt 3, as attempt 2 was not accepted", new)
    records_page = login("auditor").get(
        reverse(
            "admin:feedback_callbackevent_simple_history", args=[event.pk, records(event)[1].pk]
        )
    )
    assert "the lease of attempt 1, under way" in html.unescape(records_page.text)


def test_an_event_given_up_on_and_sent_again_by_an_operator_says_who_sent_it(
    callback_endpoint, sent_here, login
):
    endpoint = callback_endpoint(410, 200)
    event = rejected()
    callback_event_deliver(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == "failed"
    answer = login("operator").post(
        reverse("admin:feedback_callbackevent_changelist"),
        {"action": "deliver_again", "_selected_action": [event.pk]},
        follow=True,
    )
    assert "Sending 1 event again." in answer.text
    callback_event_deliver(event_id=event.pk)
    assert len(endpoint.received) == 2

    said = [(r.history_actor_kind, r.history_actor, r.status) for r in records(event)]
    assert said == [
        ("system", "callbacks", "pending"),
        ("system", "callbacks", "pending"),
        ("system", "callbacks", "failed"),
        ("user", "operator", "pending"),
        ("system", "callbacks", "pending"),
        ("system", "callbacks", "delivered"),
    ]
    given_up, again = records(event)[2:4]
    assert given_up.history_change_reason.endswith(
        "HTTP 410; given up: trying again would not change this answer"
    )
    assert again.history_change_reason.endswith("sent again by operator; up to 8 more attempts")
    chain_seal()
    found = chain_verify()
    assert found.holds, found.verdict()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite runs one writing transaction at a time"
)
def test_a_sender_past_its_lease_leaves_the_next_attempt_as_it_is_while_that_is_being_taken(
    callback_endpoint, sent_here, monkeypatch
):
    """A sender outlives its lease (its endpoint took its time); the next sender is taking
    the event when the first one's answer comes, its row held until it has counted its own
    attempt. The first one's end is not recorded over it: the event stays pending, on its
    second attempt, with no record saying it was delivered. (Its condition was checked on the
    row as it was before the next sender took it: the event read "delivered" on its first
    attempt, with the second one's request still to go.)"""
    callback_endpoint(200)
    event = rejected()
    took, answered = threading.Event(), threading.Event()

    def next_sender_takes_it() -> None:
        try:
            with transaction.atomic():
                taken = CallbackEvent.objects.select_for_update().get(pk=event.pk)
                took.set()
                answered.wait(5)
                time.sleep(0.5)  # the first sender's end of attempt waits for this row
                CallbackEvent.objects.filter(pk=event.pk).update(
                    attempts=taken.attempts + 1, next_attempt_at=timezone.now() + LEASE
                )
        finally:
            connection.close()

    def answered_late(*args, **kwargs) -> Sent:
        threading.Thread(target=next_sender_takes_it).start()
        took.wait(5)
        answered.set()
        return Sent(delivered=True, retry=False, result="HTTP 200")

    monkeypatch.setattr(callbacks, "send_signed", answered_late)
    callback_event_deliver(event_id=event.pk)

    event.refresh_from_db()
    assert (event.status, event.attempts, event.delivered_at) == ("pending", 2, None)
    assert event.attempts_said == []
    assert [r.status for r in records(event)] == ["pending", "pending"]
    assert event.next_attempt_at > timezone.now() + LEASE - timedelta(seconds=10)


def test_an_events_row_altered_past_its_history_is_named_by_verification(
    callback_endpoint, sent_here
):
    """Delivered, sealed; then its row rewritten in the database, as someone hiding that the
    agent was told (given up, no attempt), or its sealed record altered: verification names
    each, where it said the chain held (it sealed no callback event)."""
    callback_endpoint(200)
    event = rejected()
    callback_event_deliver(event_id=event.pk)
    chain_seal()
    assert chain_verify().holds
    table = CallbackEvent._meta.db_table

    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET status = 'failed' WHERE id = %s", [event.pk])
    found = chain_verify()
    assert not found.holds
    last = records(event)[-1]
    assert found.broken.what == (
        f"the live row of callback event #{event.pk} differs from its last recorded version "
        f"(record {last.history_id}): status is “failed”, recorded “delivered”"
    )

    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = 'delivered', attempts = 0 WHERE id = %s", [event.pk]
        )
    found = chain_verify()
    assert not found.holds
    assert "attempts is “0”, recorded “1”" in found.broken.what

    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET attempts = 1 WHERE id = %s", [event.pk])
    assert chain_verify().holds
    CallbackEvent.history.filter(history_id=last.history_id).update(status="failed")
    found = chain_verify()
    assert not found.holds
    assert str(found.broken).startswith("link #")
    assert f"{HISTORY} record {last.history_id}" in str(found.broken)
    assert f"(in the history of callback event #{event.pk})" in str(found.broken)
    assert "was altered after it was sealed" in str(found.broken)


def test_events_there_before_their_history_began_get_a_first_record(demo_world):
    """An upgrade over events already made, one delivered after two attempts, one given up
    on: each gets a first record, as it was, by an upgrade of the platform; one already
    recorded gets none more; the chain seals them and holds."""
    agent = Agent.objects.get(name="optimizer")
    at = timezone.now().isoformat()
    delivered_log = [
        {"at": at, "result": "HTTP 503", "retry_at": at},
        {"at": at, "result": "HTTP 200"},
    ]
    before = CallbackEvent.objects.bulk_create(  # no history: as written before it was kept
        [
            CallbackEvent(
                agent=agent,
                proposal=evaluated(agent="optimizer"),
                type="proposal.approved",
                url="https://agent.example/hook",
                body={"id": "a"},
                status="delivered",
                attempts=2,
                log=delivered_log,
                delivered_at=timezone.now(),
            ),
            CallbackEvent(
                agent=agent,
                proposal=evaluated(agent="optimizer"),
                type="proposal.rejected",
                url="https://agent.example/hook",
                body={"id": "b"},
                status="failed",
                attempts=1,
                log=[{"at": at, "result": "HTTP 410", "given_up": "…"}],
            ),
        ]
    )
    recorded = CallbackEvent.objects.create(
        agent=agent,
        proposal=evaluated(agent="optimizer"),
        type="proposal.expired",
        url="https://agent.example/hook",
        body={},
    )
    assert all(not records(event) for event in before)

    migration = importlib.import_module("feedback.migrations.0018_callback_event_history")
    state = MigrationExecutor(connection).loader.project_state(
        ("feedback", "0018_callback_event_history")
    )
    migration.first_records(state.apps, None)

    for event in before:
        event.refresh_from_db()
        [first] = records(event)
        assert (first.history_type, first.history_actor_kind, first.history_actor) == (
            "+",
            "system",
            "migration",
        )
        assert first.history_change_reason == (
            "recorded as it was when the platform began keeping the history of callback events"
        )
        assert (first.status, first.attempts, first.log, first.url, first.proposal_id) == (
            event.status,
            event.attempts,
            event.log,
            event.url,
            event.proposal_id,
        )
    assert len(records(recorded)) == 1
    chain_seal()
    found = chain_verify()
    assert found.holds, found.verdict()
