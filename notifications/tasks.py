"""Celery tasks of the notifications: thin, named, safe to run twice."""

from celery import shared_task
from django.db import OperationalError

from hitlproject.on_its_way import started
from notifications.deadlines import deadlines_sweep
from notifications.digests import notifications_send_digests
from notifications.services import (
    DELIVER_NOTIFICATIONS,
    DELIVERY_ON_ITS_WAY,
    FOLLOW_MOVES_AHEAD,
    REDRAW_SLACK_MESSAGES,
    notifications_deliver,
    notifications_resend_due,
    slack_messages_follow_moves_ahead,
    slack_messages_redrawn_for_people,
    slack_messages_redrawn_for_proposals,
)


@shared_task(
    name=DELIVER_NOTIFICATIONS,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=8,
)
def deliver_notifications(notification_ids: list[int]) -> None:
    # Before it reads what is due: what is committed from now on needs a task of its own.
    started(DELIVERY_ON_ITS_WAY)
    notifications_deliver(notification_ids=notification_ids, others_due=True)


# One notification to a message, as an earlier release sent them (still queued from before
# an upgrade).
@shared_task(
    name="notifications.deliver_notification",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=8,
)
def deliver_notification(notification_id: int) -> None:
    notifications_deliver(notification_ids=[notification_id], others_due=True)


@shared_task(name="notifications.resend_due_notifications")
def resend_due_notifications() -> int:
    return notifications_resend_due()


@shared_task(name="notifications.sweep_deadlines")
def sweep_deadlines() -> None:
    deadlines_sweep()


@shared_task(name="notifications.send_due_digests")
def send_due_digests() -> None:
    notifications_send_digests()


@shared_task(
    name=REDRAW_SLACK_MESSAGES,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=8,
)
def redraw_slack_messages(
    user_ids: list[int], about: str, proposal_ids: list[int] | None = None
) -> None:
    # Records the updates (the outbox); the delivery task sends them. ``user_ids``: these
    # people's messages (a change to what they may do); ``proposal_ids``: every message of
    # these proposals (their agent stopped or started again).
    if user_ids:
        slack_messages_redrawn_for_people(user_ids=user_ids, about=about)
    if proposal_ids:
        slack_messages_redrawn_for_proposals(proposal_ids=proposal_ids, about=about)


@shared_task(
    name=FOLLOW_MOVES_AHEAD,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=8,
)
def follow_moves_ahead(moved: list[list]) -> None:
    # Records the updates of the messages whose approval the moves changed (the outbox); the
    # delivery task sends them. ``moved``: [proposal id, the status it moved to], each.
    slack_messages_follow_moves_ahead(moved=moved)
