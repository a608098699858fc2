"""What the sweep of overdue messages does after a crash: a message whose sender stopped between
sending it and recording what became of it (a worker killed) is sent again as soon as its
lease has run out, and its record says that the first attempt was interrupted and may have
reached the person, rather than showing only the second send; a sender that outlives its
lease records nothing over that; a message whose task never came is sent once it has been due
for a lease."""

from datetime import timedelta

import pytest
from django.utils import timezone

from hitlproject.vocabulary import INTERRUPTED
from notifications import services
from notifications.models import Delivery, Notification, NotificationStatus, Route
from notifications.services import notifications_deliver, notifications_resend_due
from notifications.tasks import deliver_notifications
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
    """The operator's message about a proposal that waits, due now, its task not yet sent (a
    stand-in: the demo's route is set to hold messages for a digest, and the one held is then
    made due, as a route that tells at once leaves it, without sending its task)."""
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


def died_sending(message: Notification, monkeypatch) -> None:
    """A sender takes the message, sends it, and dies before recording what became of it."""

    def killed(outcomes, **kwargs):
        raise WorkerKilled

    with monkeypatch.context() as crash:
        crash.setattr(services, "_attempts_record", killed)
        with pytest.raises(WorkerKilled):
            notifications_deliver(notification_ids=[message.pk])


def lease_ran_out(message: Notification) -> None:
    """The lease its dead sender took has run out: written so, not slept for. A lease of a
    second, slept for, ran out under load before the test had checked that it still stood
    (the sweep then found it at once); and a delivery task left over from an earlier test,
    running meanwhile, would take the message along during the sleep, before the sweep."""
    Notification.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def said_twice(message: Notification, mailbox) -> None:
    """The operator has the message twice, and its record says both: the first attempt
    interrupted (it may have reached them), then the second sent."""
    assert len(mailbox.to(OPERATOR)) == 2
    message.refresh_from_db()
    assert (message.status, message.attempts) == (NotificationStatus.SENT, 2)
    first, second = (entry["result"] for entry in message.log)
    assert first == INTERRUPTED
    assert second.startswith("accepted by the mail server")
    *_, interrupted, sent = reasons(message)
    assert interrupted == (
        "Attempt 1 to reach operator by email interrupted: its sender stopped before recording "
        "whether it went, so it may have reached them; to be sent again."
    )
    assert sent == f"Sent to operator by email: {second}"


def test_a_message_its_worker_died_sending_is_sent_again_once_its_lease_runs_out_saying_so(
    optimizer, told_by_smtp, monkeypatch
):
    message = waiting_message(optimizer)
    died_sending(message, monkeypatch)
    assert len(told_by_smtp.to(OPERATOR)) == 1  # it went; nothing says so yet
    message.refresh_from_db()
    assert (message.status, message.attempts, message.log) == (NotificationStatus.PENDING, 1, [])

    assert notifications_resend_due() == 0  # its lease still stands
    lease_ran_out(message)
    assert notifications_resend_due() == 1  # the worker takes it

    wait_until(lambda: Notification.objects.get(pk=message.pk).status == NotificationStatus.SENT)
    said_twice(message, told_by_smtp)
    assert notifications_resend_due() == 0  # nothing more to send


def test_a_task_taking_due_messages_along_takes_one_whose_sender_died_and_says_so(
    optimizer, told_by_smtp, monkeypatch
):
    """Before the sweep comes, a task taking along the messages due (as every writer's task
    does) takes the one whose lease ran out: it records the attempt interrupted first."""
    message = waiting_message(optimizer)
    died_sending(message, monkeypatch)
    lease_ran_out(message)

    notifications_deliver(notification_ids=[], others_due=True)

    said_twice(message, told_by_smtp)


def test_a_sender_that_outlives_its_lease_records_nothing_over_the_next_one(
    optimizer, told_by_smtp, monkeypatch
):
    """The sender is stalled between sending and recording until its lease has run out and
    another sender has taken the message (recording the first attempt interrupted): what the
    stalled one then records would undo that; it records nothing, and the other's send is the
    one recorded."""
    message = waiting_message(optimizer)
    monkeypatch.setattr(services, "LEASE", timedelta(seconds=1))
    record = services._attempts_record

    def stalled(outcomes, **kwargs):
        # Its lease run out: written so, not slept for (a delivery task left over from an
        # earlier test, running meanwhile, would take the message along before the sweep).
        Notification.objects.filter(pk=message.pk).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1.1)
        )
        assert notifications_resend_due() == 1
        wait_until(lambda: Notification.objects.get(pk=message.pk).attempts == 2)  # taken
        return record(outcomes, **kwargs)

    monkeypatch.setattr(services, "_attempts_record", stalled)
    assert notifications_deliver(notification_ids=[message.pk]) == []

    wait_until(lambda: Notification.objects.get(pk=message.pk).status == NotificationStatus.SENT)
    said_twice(message, told_by_smtp)
    assert [reason for reason in reasons(message) if reason.startswith("Sent to")] == [
        reasons(message)[-1]
    ]


def test_a_lease_given_back_late_leaves_the_next_senders_lease_alone(optimizer):
    """A sender out of time gives back what it did not send, unless its lease ran out and
    another sender took the message meanwhile: that one's lease and attempt stand."""
    message = waiting_message(optimizer)
    first_lease = timezone.now() - timedelta(seconds=1)
    services._lease([message], until=first_lease)
    other = Notification.objects.get(pk=message.pk)
    services._lease([other], until=timezone.now() + timedelta(minutes=2))

    assert services._lease_give_back([message], leased_until=first_lease) == []

    row = Notification.objects.get(pk=message.pk)
    assert (row.attempts, row.next_attempt_at) == (2, other.next_attempt_at)
    assert services._lease_give_back([other], leased_until=other.next_attempt_at) == [other.pk]
    assert Notification.objects.get(pk=message.pk).attempts == 1
    # Given back, it is due, and no task was sent for it: the next delivery task takes it
    # (else the test's end waited 15 s on a message nothing would send).
    deliver_notifications.delay([])


def test_a_message_whose_task_never_came_is_sent_once_due_for_a_lease(
    optimizer, told_by_smtp, monkeypatch
):
    """Nothing was attempted (its task was lost with a broker): nothing was interrupted, and
    the sweep sends it once it has been due for a lease, not before, since its task may yet
    come."""
    message = waiting_message(optimizer)
    monkeypatch.setattr(services, "LEASE", timedelta(seconds=1))
    assert notifications_resend_due() == 0

    # Due for longer than a lease: written so, not slept for (a delivery task left over from
    # an earlier test, running meanwhile, takes every message due along with its own).
    Notification.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1.1)
    )
    assert notifications_resend_due() == 1

    wait_until(lambda: Notification.objects.get(pk=message.pk).status == NotificationStatus.SENT)
    message.refresh_from_db()
    assert len(told_by_smtp.to(OPERATOR)) == 1
    assert message.attempts == 1 and len(message.log) == 1
    assert not [reason for reason in reasons(message) if "interrupted" in reason]
