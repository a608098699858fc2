"""A message saying a proposal waits is sent only while it does: a proposal that stops waiting
(superseded, decided, withdrawn) after its message was taken to be sent, and before it goes, is
not announced; one that stops waiting while its message goes out has the message's record say
so, and a Slack message is then updated to say what became of it, as one sent before it
stopped waiting is."""

import html
import re
from contextlib import contextmanager

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from notifications import services
from notifications.models import Notification, NotificationKind, NotificationStatus, ReachedBy
from notifications.services import notifications_deliver
from tests.conftest import wait_until
from tests.test_notifications_slack import headline
from tests.test_notifications_sweep import reasons, told_by_smtp, waiting_message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]
__all__ = ["told_by_smtp"]  # a fixture, used by name
OPERATOR = "operator@example.com"


@contextmanager
def withdrawn(optimizer, message: Notification, monkeypatch, *, when: str):
    """The proposal withdrawn by its agent at a moment of sending its message: ``before`` it
    goes (once it was taken to be sent), or ``while`` it goes (once it went)."""
    proposal_id = message.proposal_id

    def withdraw() -> None:
        answer = optimizer.post(f"/api/v1/proposals/{proposal_id}/withdraw/")
        assert answer.status_code == 200, answer.content

    # Withdrawn once the messages are made (before the send), or once the message went.
    name = "proposal_messages" if when == "before" else "_send_one"
    step = getattr(services, name)

    def then_withdrawn(*args, **kwargs):
        done = step(*args, **kwargs)
        withdraw()
        return done

    monkeypatch.setattr(services, name, then_withdrawn)
    yield
    monkeypatch.undo()


def test_a_proposal_withdrawn_before_its_email_goes_is_not_announced(
    optimizer, told_by_smtp, monkeypatch
):
    message = waiting_message(optimizer)

    with withdrawn(optimizer, message, monkeypatch, when="before"):
        notifications_deliver(notification_ids=[message.pk])

    assert told_by_smtp.to(OPERATOR) == []
    message.refresh_from_db()
    assert message.status == NotificationStatus.NOT_SENT
    assert reasons(message)[-1] == (
        "Not sent to operator by email: the proposal is withdrawn and no longer waits for this "
        "review"
    )


def test_an_email_that_went_as_its_proposal_was_withdrawn_says_so_in_its_record(
    optimizer, told_by_smtp, monkeypatch, login
):
    message = waiting_message(optimizer)

    with withdrawn(optimizer, message, monkeypatch, when="while"):
        notifications_deliver(notification_ids=[message.pk])

    assert len(told_by_smtp.to(OPERATOR)) == 1
    message.refresh_from_db()
    assert message.status == NotificationStatus.SENT
    assert reasons(message)[-1].endswith(
        "; the proposal became withdrawn as it went, which an email cannot take back."
    )
    # The proposal's page, where it lists who was told, says so beside "Sent".
    page = login("auditor").get(
        reverse("admin:approvals_proposal_change", args=[message.proposal_id])
    )
    told = re.sub(r"\s+", " ", page.text.split('id="proposal-told"')[1].split("</table>")[0])
    assert (
        "; the proposal became withdrawn as it went, which an email cannot take back</td>"
        in html.unescape(told)
    )


def test_a_slack_message_that_went_as_its_proposal_was_withdrawn_is_updated_to_say_so(
    optimizer, slack, monkeypatch
):
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.update_or_create(user=operator, defaults={"slack": True, "email": False})
    message = waiting_message(optimizer)

    with withdrawn(optimizer, message, monkeypatch, when="while"):
        notifications_deliver(notification_ids=[message.pk])

    [posted] = slack.sent("chat.postMessage")
    assert posted["blocks"] and headline(posted["blocks"]) != "No longer waits"
    message.refresh_from_db()
    assert message.status == NotificationStatus.SENT
    assert reasons(message)[-1].endswith(
        "; the proposal became withdrawn as it went, and the message is updated to say so."
    )
    # The update, recorded with the attempt, is sent by the worker: the message no longer
    # offers its buttons.
    update = Notification.objects.get(updates=message)
    assert update.kind == NotificationKind.UPDATE
    [call] = wait_until(
        lambda: slack.sent("chat.update", channel=message.slack_channel, ts=message.slack_ts),
        timeout=15,
    )
    assert headline(call["blocks"]) == "No longer waits"
    assert not [b for b in call["blocks"] if b["type"] == "actions"]
