"""What a process makes once and its threads share (a Redis client and its connection pool),
made by one thread.

``functools.cache`` does not lock: the web server's first requests, each in a thread of its
own, all miss it at once, each makes its own client, and each stores it over the last. A
client replaced so is collected at once, and a redis-py client that made its own pool closes
that pool as it goes: under the thread still using it, whose request then failed with a
socket closed under it ("Bad file descriptor", "I/O operation on closed file"), a 500.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import update_wrapper
from typing import Generic, TypeVar

T = TypeVar("T")


class MadeOnce(Generic[T]):
    """``factory()``, made the first time it is asked for, by one thread; every thread gets
    that one. ``cache_clear()`` forgets it (a test that changes the settings it is made from)."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._made: list[T] = []  # empty until made: the factory may return None
        update_wrapper(self, factory)

    def __call__(self) -> T:
        made = self._made
        if made:
            return made[0]
        with self._lock:
            if not self._made:
                self._made = [self._factory()]
            return self._made[0]

    def cache_clear(self) -> None:
        with self._lock:
            self._made = []


def made_once(factory: Callable[[], T]) -> MadeOnce[T]:
    """Decorate a function of no arguments whose result a process keeps and its threads share."""
    return MadeOnce(factory)
