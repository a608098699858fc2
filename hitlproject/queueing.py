"""Sending Celery tasks once the transaction that made their work commits."""

from collections.abc import Sequence
from functools import partial

from celery import Task
from django.db import OperationalError, transaction

from hitlproject.celery import app

# The tasks that carry on with work a transaction committed: a database out of reach for a
# moment (a lock timeout, a lost connection) is tried again, with backoff.
TRANSIENT = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 8,
}


def enqueue_after_commit(task: Task | str, *ids: int) -> None:
    """Send ``task`` for each id once the surrounding transaction commits, over one broker
    connection.

    Unlike ``delay_on_commit``, a broker that cannot be reached at that moment does not turn an
    already-committed request into an error: it is logged, and the stall sweepers send the
    tasks again within a minute or two.
    """
    transaction.on_commit(partial(send_each, task, ids), robust=True)


def send_each(task: Task | str, arguments: Sequence[object]) -> None:
    """Send ``task`` once for each of ``arguments``, over one broker connection. ``task`` may
    be a task's name: an app sends so the tasks of an app above it, which it does not import
    (routed by name, as every task is: ``hitlproject.celery.route_task``)."""
    if isinstance(task, str):
        send = partial(app.send_task, task)
        producing = app.producer_or_acquire()
    else:
        send = task.apply_async
        producing = task.app.producer_or_acquire()
    with producing as producer:
        for argument in arguments:
            send((argument,), producer=producer)
