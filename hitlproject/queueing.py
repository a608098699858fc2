"""Sending Celery tasks once the transaction that made their work commits."""

from collections.abc import Callable, Sequence
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


def after_commit(func: Callable[..., object], *args: object) -> None:
    """Call ``func(*args)`` once the surrounding transaction commits (at once outside one).
    If it raises, the error is logged and the request or task that committed goes on: what
    committed is done, and whatever the call was for is retried by its sweeper.

    Not ``on_commit(partial(func, *args), robust=True)``: Django (5.2) logs a failed callback
    by its ``__qualname__``, which a ``partial`` lacks, so the logging raised AttributeError out
    of the commit (Django ticket #36487), and an agent whose proposal was recorded was
    answered 500."""

    def call() -> None:
        func(*args)

    call.__qualname__ = getattr(func, "__qualname__", repr(func))
    transaction.on_commit(call, robust=True)


def enqueue_after_commit(task: Task | str, *arguments: object) -> None:
    """Send ``task`` once for each of ``arguments`` (an id, or a list of them) once the
    surrounding transaction commits, over one broker connection.

    Unlike ``delay_on_commit``, a broker that cannot be reached at that moment does not turn an
    already-committed request into an error: it is logged, and the stall sweepers send the
    tasks again within a minute or two.
    """
    after_commit(send_each, task, arguments)


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


def chunked(ids: Sequence[int], most: int) -> list[list[int]]:
    """``ids`` in as few lists as hold at most ``most`` each, alike in size (250 by 100: 84,
    84 and 82), so the workers that share them finish together."""
    lists = -(-len(ids) // most)
    size = -(-len(ids) // lists) if lists else 0
    return [list(ids[start : start + size]) for start in range(0, len(ids), size or 1)]
