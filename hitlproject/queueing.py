"""Sending Celery tasks once the transaction that made their work commits."""

from collections.abc import Callable, Sequence

from celery import Task
from django.db import transaction


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


def enqueue_after_commit(task: Task, *ids: int) -> None:
    """Send ``task`` for each id once the surrounding transaction commits, over one broker
    connection.

    Unlike ``delay_on_commit``, a broker that cannot be reached at that moment does not turn an
    already-committed request into an error: it is logged, and the stall sweepers send the
    tasks again within a minute or two.
    """
    after_commit(send_each, task, ids)


def send_each(task: Task, arguments: Sequence[object]) -> None:
    """Send ``task`` once for each of ``arguments``, over one broker connection."""
    with task.app.producer_or_acquire() as producer:
        for argument in arguments:
            task.apply_async((argument,), producer=producer)
