"""Celery tasks of the feedback loop: thin, named, safe to run twice."""

from celery import shared_task
from django.db import OperationalError

from feedback.autonomy import autonomy_recommendations_propose
from feedback.callbacks import (
    DELIVER_CALLBACK_EVENT,
    callback_event_deliver,
    callback_events_resend_due,
)


@shared_task(
    name=DELIVER_CALLBACK_EVENT,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=8,
)
def deliver_callback_event(event_id: int) -> None:
    callback_event_deliver(event_id=event_id)


@shared_task(name="feedback.resend_due_callback_events")
def resend_due_callback_events() -> int:
    return callback_events_resend_due()


@shared_task(name="feedback.recommend_autonomy_changes")
def recommend_autonomy_changes() -> list[int]:
    return [proposal.pk for proposal in autonomy_recommendations_propose()]
