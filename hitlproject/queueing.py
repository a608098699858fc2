"""Sending Celery tasks once the transaction that made their work commits."""

from collections.abc import Sequence
from functools import partial

from celery import Task
from django.db import transaction


def enqueue_after_commit(task: Task, *ids: int) -> None:
    """Send ``task`` for each id once the surrounding transaction commits, over one broker
    connection.

    Unlike ``delay_on_commit``, a broker that cannot be reached at that moment does not turn an
    already-committed request into an error: it is logged, and the stall sweepers send the
    tasks again within a minute or two.
    """
    transaction.on_commit(partial(send_each, task, ids), robust=True)


def send_each(task: Task, arguments: Sequence[object]) -> None:
    """Send ``task`` once for each of ``arguments``, over one broker connection."""
    with task.app.producer_or_acquire() as producer:
        for argument in arguments:
            task.apply_async((argument,), producer=producer)
