"""What the sweep of overdue messages does after a crash: a message whose sender stopped between
sending it and recording what became of it (a worker killed) is sent again as soon as its
lease has run out, and its record says that the first attempt was interrupted and may have
reached the person, rather than showing only the second send; a sender that outlives its
lease records nothing over that; a message whose task never came is sent once it has been due
for a lease."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications import services
from notifications.models import Delivery, Notification, NotificationStatus, Route
from notifications.services import notifications_deliver, notifications_resend_due
from tests.conftest import reallocation, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]
OPERATOR = "operator@example.com"


class WorkerKilled(Exception):
    """Where the worker died: after its chunk went out, before what became of it was recorded."""


@pytest.fixture
def told_by_smtp(settings, mailbox):
    """This process sends as the worker does: to the tests' SMTP server."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", mailbox.port
    return mailbox


def waiting_message(optimizer) -> Notification:
    """The operator's message about a proposal that waits, due now, its task not yet sent (the
    demo's route held for a digest, then released as a route that tells at once leaves it)."""
    route = Route.objects.get(name="Demo: everything waiting, to the operators")
    route.delivery, route.digest_minutes = Delivery.DIGEST, 1
    route.save()
    answer = optimizer.post("/api/v1/proposals/", reallocation("150.00"), format="json")
    assert answer.status_code == 201, answer.content
    Notification.objects.filter(status=NotificationStatus.HELD).update(
        status=NotificationStatus.PENDING, next_attempt_at=timezone.now()
    )
    return Notification.objects.get(proposal_id=answer.json()["id"])


def reasons(notification: Notification) -> list[str]:
    return list(
        notification.history.order_by("history_id").values_list("history_change_reason", flat=True)
    )


def test_a_message_its_worker_died_sending_is_sent_again_once_its_lease_runs_out_saying_so(
    optimizer, told_by_smtp, monkeypatch
):
    message = waiting_message(optimizer)
    monkeypatch.setattr(services, "LEASE", timedelta(seconds=1))

    def killed(outcomes, **kwargs):
        raise WorkerKilled

    with monkeypatch.context() as crash:
        crash.setattr(services, "_attempts_record", killed)
        with pytest.raises(WorkerKilled):
            notifications_deliver(notification_ids=[message.pk])
    assert len(told_by_smtp.to(OPERATOR)) == 1  # it went; nothing says so yet
    message.refresh_from_db()
    assert (message.status, message.attempts, message.log) == (NotificationStatus.PENDING, 1, [])

    assert notifications_resend_due() == 0  # its lease still stands
    time.sleep(1.1)
    assert notifications_resend_due() == 1

    message.refresh_from_db()
    assert [entry["result"] for entry in message.log] == [services.INTERRUPTED]
    assert reasons(message)[-1] == (
        "Attempt 1 to reach operator by email interrupted: its sender stopped before recording "
        "whether it went, so it may have reached them; sending again."
    )
    # The worker sends it again: the operator has it twice, and the record says both.
    wait_until(lambda: len(told_by_smtp.to(OPERATOR)) == 2, timeout=15)
    wait_until(lambda: Notification.objects.get(pk=message.pk).status == NotificationStatus.SENT)
    message.refresh_from_db()
    assert message.attempts == 2 and len(message.log) == 2
    assert message.log[1]["result"].startswith("accepted by the mail server")
    *_, interrupted, sent = reasons(message)
    assert interrupted.startswith("Attempt 1 to reach operator by email interrupted")
    assert sent == f"Sent to operator by email: {message.log[1]['result']}"
    assert notifications_resend_due() == 0  # nothing more to send


def test_a_sender_that_outlives_its_lease_records_nothing_over_the_sweep(
    optimizer, told_by_smtp, monkeypatch
):
    """The sender is stalled between sending and recording until its lease has run out and
    the sweep has said the attempt was interrupted: what it then records would undo that;
    it records nothing, and the worker's send after the sweep's is the one recorded."""
    message = waiting_message(optimizer)
    monkeypatch.setattr(services, "LEASE", timedelta(seconds=1))
    record = services._attempts_record

    def stalled(outcomes, **kwargs):
        time.sleep(1.1)
        assert notifications_resend_due() == 1
        return record(outcomes, **kwargs)

    monkeypatch.setattr(services, "_attempts_record", stalled)
    assert notifications_deliver(notification_ids=[message.pk]) == []

    wait_until(lambda: Notification.objects.get(pk=message.pk).status == NotificationStatus.SENT)
    message.refresh_from_db()
    assert len(told_by_smtp.to(OPERATOR)) == 2
    assert message.attempts == 2
    assert message.log[0]["result"] == services.INTERRUPTED
    sent = [reason for reason in reasons(message) if reason.startswith("Sent to")]
    assert len(sent) == 1 and len(message.log) == 2


def test_a_message_whose_task_never_came_is_sent_once_due_for_a_lease(
    optimizer, told_by_smtp, monkeypatch
):
    """Nothing was attempted (its task was lost with a broker): nothing was interrupted, and
    the sweep sends it once it has been due for a lease, not before, since its task may yet
    come."""
    message = waiting_message(optimizer)
    monkeypatch.setattr(services, "LEASE", timedelta(seconds=1))
    assert notifications_resend_due() == 0

    time.sleep(1.1)
    assert notifications_resend_due() == 1

    wait_until(lambda: Notification.objects.get(pk=message.pk).status == NotificationStatus.SENT)
    message.refresh_from_db()
    assert len(told_by_smtp.to(OPERATOR)) == 1
    assert message.attempts == 1 and len(message.log) == 1
    assert not [reason for reason in reasons(message) if "interrupted" in reason]
