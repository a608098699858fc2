"""A message saying a proposal waits is sent only while it does: a proposal that stops waiting
(superseded, decided, withdrawn) after its message was taken to be sent, and before it goes, is
not announced; one that stops waiting while its message goes out has the message's record say
so, and a Slack message is then updated to say what became of it, as one sent before it
stopped waiting is."""

import html
import re
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from approvals.models import Proposal
from approvals.services import lifecycle
from notifications import services
from notifications.models import Notification, NotificationKind, NotificationStatus, ReachedBy
from notifications.services import notifications_deliver
from tests.conftest import bid_adjustment, reallocation, wait_until
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


def batch_with_an_item_behind_another(optimizer) -> list[dict]:
    """A batch: a bid raise that runs by itself, a second raise of the same bid behind it
    (it waits, and is superseded once the first executes), and a reallocation that waits for
    a person in its own right."""
    answer = optimizer.post(
        "/api/v1/proposals/batch/",
        [bid_adjustment("2.10"), bid_adjustment("2.12"), reallocation("280.00")],
        format="json",
    )
    assert answer.status_code == 200, answer.content
    items = [item["proposal"] for item in answer.json()]
    assert [item["status"] for item in items] == ["approved", "pending_review", "pending_review"]
    assert any("is superseded once that one executes" in r for r in items[1]["verdict"]["reasons"])
    return items


def test_a_batch_item_superseded_once_the_item_ahead_executes_is_never_announced(
    optimizer, mailbox, monkeypatch
):
    monkeypatch.setattr(services, "TOLD_AFTER_THE_ONE_AHEAD", timedelta(seconds=2))
    ahead, behind, own = batch_with_an_item_behind_another(optimizer)

    wait_until(lambda: Proposal.objects.get(pk=behind["id"]).status == "superseded")
    [told] = wait_until(lambda: mailbox.to(OPERATOR), timeout=15)
    assert f"#{own['id']}" in told["Subject"]  # the one that needs a person, at once
    message = Notification.objects.get(proposal_id=behind["id"])
    wait_until(lambda: Notification.objects.get(pk=message.pk).status != "pending", timeout=15)
    message.refresh_from_db()
    assert message.status == NotificationStatus.NOT_SENT
    assert reasons(message) == [
        "To be sent in 2 s, if it still waits (it is superseded once the proposal approved "
        "ahead of it executes): Waits for a decision",
        "Not sent to operator by email: the proposal is superseded and no longer waits for "
        "this review",
    ]
    assert [m["Subject"] for m in mailbox.to(OPERATOR)] == [told["Subject"]]
    assert Proposal.objects.get(pk=ahead["id"]).status == "executed"


def test_a_batch_item_still_waiting_when_the_item_ahead_has_not_executed_is_announced_later(
    optimizer, mailbox, monkeypatch
):
    monkeypatch.setattr(services, "TOLD_AFTER_THE_ONE_AHEAD", timedelta(seconds=2))
    # The item ahead is approved, but its execution is never sent.
    monkeypatch.setattr(lifecycle, "enqueue_executions_after_commit", lambda ids: None)
    ahead, behind, own = batch_with_an_item_behind_another(optimizer)

    told = wait_until(lambda: len(mailbox.to(OPERATOR)) == 2 and mailbox.to(OPERATOR), timeout=20)
    subjects = " ".join(message["Subject"] for message in told)
    assert f"#{behind['id']}" in subjects and f"#{own['id']}" in subjects
    assert Proposal.objects.get(pk=ahead["id"]).status == "approved"
    assert Proposal.objects.get(pk=behind["id"]).status == "pending_review"
