"""Who was told is in the audit record: every message of the outbox (to whom, on which
channel, of what kind, sent when or why not) and every deadline (due, reminded, escalated,
ended) is in the auditor's export and sealed by the audit chain, and the proposal's history
says it was reminded as it says it was escalated."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.actors import Actor
from audit.chain import chain_seal, chain_verify
from audit.history import insert_with_history, update_with_history
from hitlproject.formats import console_time
from notifications.models import DecisionDeadline, Notification, Route
from tests.conftest import BID_RAISES, bid_adjustment, reallocation, wait_until
from tests.test_notifications_deadlines import (
    DEMO_ROUTE,
    backup_member,
    decide_within,
    sweep_until,
)


def exported(auditor) -> list[dict]:
    # From yesterday: a test running across midnight keeps what it recorded before it.
    today = timezone.localdate()
    period = {
        "since": str(today - timedelta(days=1)),
        "until": str(today + timedelta(days=1)),
        "format": "jsonl",
    }
    answer = auditor.get("/admin/audit/export/", period)
    assert answer.status_code == 200
    return [json.loads(line) for line in b"".join(answer.streaming_content).splitlines()]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_who_was_told_reminded_and_escalated_is_in_the_export_and_the_chain(
    optimizer, mailbox, login
):
    decide_within(seconds=4)
    backup = backup_member()
    # The route names a person who may not read proposals: no message goes, and it says why.
    silent = get_user_model().objects.create_user("silent", email="silent@example.com")
    Route.objects.get(name=DEMO_ROUTE).users.add(silent)
    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    assert answer.status_code == 201, answer.content
    proposal_id = answer.json()["id"]
    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)
    wait_until(lambda: mailbox.to("operator@example.com"), timeout=15)
    sweep_until(deadline.remind_at + timedelta(seconds=0.2))
    sweep_until(deadline.due_at + timedelta(seconds=0.2))
    wait_until(lambda: mailbox.to("backup@example.com"), timeout=15)
    wait_until(lambda: not Notification.objects.filter(status="pending").exists())

    records = exported(login("auditor"))

    told = [r for r in records if r["model"] == "notifications.notification"]
    outcomes = {
        (r["fields"]["recipient_id"], r["fields"]["kind"], r["fields"]["status"], r["reason"])
        for r in told
        if r["change"] == "changed"
    }
    operator = get_user_model().objects.get(username="operator")
    sent = {(who, kind) for who, kind, status, _ in outcomes if status == "sent"}
    assert {(operator.pk, "waiting"), (operator.pk, "reminder"), (backup.pk, "escalation")} <= sent
    assert any(reason.startswith("Sent to operator by email") for *_, reason in outcomes), outcomes
    assert (
        silent.pk,
        "waiting",
        "not_sent",
        "Not sent to silent by email: silent may not see proposals in the console",
    ) in outcomes
    created = [r for r in told if r["change"] == "created"]
    assert {r["fields"]["kind"] for r in created} == {"waiting", "reminder", "escalation"}
    assert all(r["fields"]["channel"] == "email" for r in created)
    # Each "sent" record says when.
    assert all(r["fields"]["sent_at"] for r in told if r["fields"]["status"] == "sent")

    deadline_records = [
        r
        for r in records
        if r["model"] == "notifications.decisiondeadline" and r["object_id"] == deadline.pk
    ]
    assert [r["change"] for r in deadline_records] == ["created", "changed", "changed"]
    created, reminded, escalated = deadline_records
    assert created["fields"]["due_at"] and created["actor"] == "notifications"
    assert reminded["changed"] == ["reminded_at"]
    assert reminded["actor"] == "deadlines"
    assert set(escalated["changed"]) == {"escalated_at", "escalated_to_id"}
    assert escalated["reason"].startswith("Overdue: no decision within 4 seconds")

    proposal_history = [
        r["reason"]
        for r in records
        if r["model"] == "approvals.proposal" and r["object_id"] == proposal_id
    ]
    assert any(
        reason.startswith("Half the time to decide is gone") and "reminded operator" in reason
        for reason in proposal_history
    ), proposal_history

    assert chain_seal() > 0
    verified = chain_verify()
    assert verified.broken is None and verified.unsealed == 0
    from audit.models import ChainLink

    sealed = set(ChainLink.objects.values_list("table", flat=True))
    assert {
        "notifications.historicalnotification",
        "notifications.historicaldecisiondeadline",
    } <= sealed


@pytest.mark.django_db
def test_recording_who_is_told_costs_a_submission_no_statement_more(optimizer):
    """The outbox's rows and the deadline's each go in with their history in one statement,
    as they went in alone before they had history."""
    if connection.vendor != "postgresql":
        pytest.skip("one statement for a row and its history is PostgreSQL's data-changing WITH")
    decide_within(seconds=600)
    with CaptureQueriesContext(connection) as queries:
        answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    assert answer.json()["status"] == "pending_review"
    written = [
        query["sql"]
        for query in queries
        if "notifications_" in query["sql"] and not query["sql"].startswith("SELECT")
    ]
    assert len(written) == 2, written  # the deadline, and the message to the operator
    assert all(sql.startswith("WITH made AS (INSERT INTO") for sql in written), written
    assert Notification.history.filter(proposal_id=answer.json()["id"]).count() == 1
    assert DecisionDeadline.history.filter(proposal_id=answer.json()["id"]).count() == 1


@pytest.mark.django_db
def test_a_deadline_started_twice_for_a_round_is_one_row_with_one_record(optimizer):
    """Starting a round's deadline again (two paths racing to it) leaves the first as it was,
    with its one record; a deadline for another round in the same write goes in, recorded by
    the notifications' actor, with the reason given. On either database."""
    decide_within(seconds=600)
    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    assert answer.json()["status"] == "pending_review"
    first = DecisionDeadline.objects.get(proposal_id=answer.json()["id"])
    now = timezone.now()

    def deadline(review_round: int) -> DecisionDeadline:
        return DecisionDeadline(
            proposal_id=first.proposal_id,
            review_round=review_round,
            started_at=now,
            remind_at=now + timedelta(minutes=1),
            due_at=now + timedelta(minutes=2),
        )

    ids = insert_with_history(
        DecisionDeadline,
        [deadline(first.review_round), deadline(first.review_round + 1)],
        actor=Actor.system("notifications"),
        reason="Started again",
        ignore_conflicts=True,
    )

    assert DecisionDeadline.objects.get(pk=first.pk).due_at == first.due_at
    [second] = DecisionDeadline.objects.exclude(pk=first.pk)
    assert ids == [second.pk]
    assert second.review_round == first.review_round + 1
    records = DecisionDeadline.history.filter(proposal_id=first.proposal_id).order_by("history_id")
    assert [(r.id, r.history_type) for r in records] == [(first.pk, "+"), (second.pk, "+")]
    assert records.last().history_change_reason == "Started again"
    assert records.last().history_actor == "notifications"


@pytest.mark.django_db
def test_messages_recorded_together_each_keep_what_became_of_them(optimizer):
    """What became of a chunk's messages is written in one go: those that went alike in one
    UPDATE, the others each in their own. Each row, and the history record of it, says what
    became of that message and of no other."""
    for campaign, new_bid in BID_RAISES.items():
        answer = optimizer.post(
            "/api/v1/proposals/", bid_adjustment(new_bid, campaign), format="json"
        )
        assert answer.json()["status"] == "pending_review"
    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    assert answer.json()["status"] == "pending_review"
    notifications = list(Notification.objects.order_by("pk"))
    assert len(notifications) == 4
    sent_at = timezone.now()
    outcomes = [  # status, sent at, log, Slack's ts
        ("sent", sent_at, [{"at": "t1", "result": "accepted"}], ""),
        ("sent", sent_at, [{"at": "t1", "result": "accepted"}], ""),
        ("failed", None, [{"at": "t2", "result": "550 No such user"}], ""),
        ("sent", sent_at, [{"at": "t3", "result": "posted"}], "1700000000.000100"),
    ]
    for notification, (status, when, log, ts) in zip(notifications, outcomes, strict=True):
        notification.status, notification.sent_at, notification.log = status, when, log
        notification.slack_ts = ts
        notification._change_reason = f"{status}: {log[0]['result']}"
    update_with_history(
        Notification,
        [
            (n, {"status": n.status, "sent_at": n.sent_at, "log": n.log, "slack_ts": n.slack_ts})
            for n in notifications
        ],
        actor=Actor.system("notifications"),
    )

    for notification, (status, when, log, ts) in zip(notifications, outcomes, strict=True):
        row = Notification.objects.get(pk=notification.pk)
        assert (row.status, row.sent_at, row.log, row.slack_ts) == (status, when, log, ts)
        assert row.kind == notification.kind and row.attempts == notification.attempts
        record = Notification.history.filter(id=notification.pk).latest("history_id")
        assert record.history_type == "~"
        assert (record.status, record.sent_at, record.log, record.slack_ts) == (
            status,
            when,
            log,
            ts,
        )
        assert record.history_change_reason == f"{status}: {log[0]['result']}"


@pytest.mark.django_db
def test_a_held_message_s_version_says_when_it_was_due_as_it_stood_then(optimizer, login):
    """A message held for a digest read "was due to go by …" on the page of its version
    written while it waited, once the page was read after that time: each version is read
    at its own time, as a callback event's are (``shown_as_of``)."""
    route = Route.objects.get(name=DEMO_ROUTE)
    route.delivery, route.digest_minutes = "digest", 1
    route.save()
    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    assert answer.status_code == 201, answer.content
    held = Notification.objects.get(proposal_id=answer.json()["id"], status="held")
    # Its record written while it waited, read once that time has passed: it was held at
    # 10:00 to go by 10:01, and the page is read at 10:02.
    now = timezone.now()
    due = now - timedelta(minutes=1)
    Notification.objects.filter(pk=held.pk).update(next_attempt_at=due)
    [version] = Notification.history.filter(id=held.pk)
    Notification.history.filter(history_id=version.history_id).update(
        history_date=now - timedelta(minutes=2), next_attempt_at=due
    )
    auditor = login("auditor")
    url = f"/admin/notifications/notification/{held.pk}/history/{version.history_id}/"
    page = " ".join(auditor.get(url).content.decode().split())
    assert f"; due to go by {console_time(due)}" in page
    assert "was due to go" not in page
    # The message itself, read now, is past due, and says so.
    listed = " ".join(auditor.get("/admin/notifications/notification/").content.decode().split())
    assert f"; was due to go by {console_time(due)}" in listed
