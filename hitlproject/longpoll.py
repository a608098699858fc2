"""Long polls (``?wait=SECONDS``) served without holding a thread or a database connection
while they wait.

A view that can wait is an ordinary DRF view: authentication, throttling, the agent's
isolation, validation and the first read happen there, as for any request, and when it has
to wait it says so by returning its answer with a ``LongPoll`` attached (``long_poll``).
``LongPollView.as_view()`` puts an async view in front of it: a request without ``wait`` is
passed to the DRF view as Django would pass it; one with ``wait`` runs the DRF view in a
small pool of threads of its own (``READERS``), whose database connections go back as soon as
each read is done (an agent's reads take turns there, ``LONG_POLL_READS_PER_AGENT`` at a
time, so that its many waits do not queue ahead of other agents'), then waits on the event
loop for a wake-up (hitlproject.wakeups) or the time, re-reading in that pool after each
wake-up, and answers with the latest read.

Under a server that is not ASGI (the test client, WSGI) the same view works, re-reading
every ``POLL_SECONDS`` instead of listening.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from asgiref.sync import SyncToAsync, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, close_old_connections
from django.http import JsonResponse
from rest_framework import serializers
from rest_framework.views import APIView

from hitlproject import wakeups
from hitlproject.api import api_exception_handler, as_api_exception
from hitlproject.errors import Busy
from hitlproject.inflight import (
    ARRIVED_KEY,
    SCOPE_KEY,
    TOO_MANY_WAITS_RETRY_AFTER,
    Place,
    agent_of,
    too_many_waits,
)
from hitlproject.once import made_once
from hitlproject.schema import docstring_for_code_readers
from hitlproject.validation import PlainWholeNumber

LONGEST_WAIT = 60
# Re-read this often when no wake-ups can be had (no ASGI server, a subscription lost).
POLL_SECONDS = 1.0


class WaitSeconds(PlainWholeNumber):
    """Whole seconds in plain ASCII digits."""

    default_error_messages = {
        "plain": "Give the seconds as a whole number in plain digits (0-9), such as 30.",
    }


def wait_field() -> serializers.IntegerField:
    return WaitSeconds(
        min_value=1,
        max_value=LONGEST_WAIT,
        required=False,
        help_text=(
            "Long poll: hold the answer up to this many seconds (1 to 60) until there is "
            "something new, then answer at once; at the end of the time, answer as things are."
        ),
    )


@dataclass
class LongPoll:
    """What a view that has to wait leaves for the wait: on what ``topic``, how long, how to
    read again (in a thread: returns whether the wait is over, and the answer's data), whose
    wait it is (``agent``), and ``key``: what the answer depends on besides the time (the
    agent, the resource, what it waits past), so that waits with the same key woken together
    share one read."""

    topic: str
    seconds: float
    reread: Callable[[], tuple[bool, Any]]
    agent: int
    key: Hashable


class RereadFailed(Exception):
    """A re-read after a wake-up failed (no database connection in time, the database gone):
    ``response`` is the refusal the API gives for it (hitlproject.api), as a request
    without ``wait`` would have been answered."""

    def __init__(self, status_code: int, data: Any, headers: dict[str, str]) -> None:
        super().__init__(status_code, data)
        self.status_code, self.data, self.headers = status_code, data, headers


def _reread_or_refusal(reread: Callable[[], tuple[bool, Any]]) -> tuple[bool, Any]:
    """``reread()``; its database error as the API's refusal, told in the thread that had the
    connection (whether it had one at all is part of telling). A re-read only reads: whatever
    the database said, nothing was written, and the wait may be asked again."""
    try:
        return reread()
    except Exception as error:
        refusal = as_api_exception(error)
        if refusal is error and isinstance(error, DatabaseError):
            refusal = as_api_exception(
                Busy(
                    "The database could not be read just now (too many requests at once, or "
                    "the database is unreachable); nothing was recorded. Ask again shortly."
                )
            )
        response = api_exception_handler(refusal, {})
        if response is None:
            raise
        raise RereadFailed(response.status_code, response.data, dict(response.items())) from error


class _SharedRead:
    """A re-read waits with the same key may join until it starts (one that started may have
    read before their wake-up came)."""

    def __init__(self) -> None:
        self.started = False
        self.task: asyncio.Future | None = None


_shared_reads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _SharedRead]]
_shared_reads = weakref.WeakKeyDictionary()


class _Turns:
    """Each agent's reads in the readers' pool, at most ``LONG_POLL_READS_PER_AGENT`` at a
    time: waits that cannot share a read (an agent's hundred waits on its feedback feed, each
    at an address of its own) queue behind one another, not ahead of other agents' reads."""

    def __init__(self) -> None:
        self._by_agent: dict[Hashable, tuple[asyncio.Semaphore, list[int]]] = {}

    @asynccontextmanager
    async def turn(self, agent: Hashable) -> AsyncIterator[None]:
        if agent not in self._by_agent:
            semaphore = asyncio.Semaphore(settings.LONG_POLL_READS_PER_AGENT)
            self._by_agent[agent] = (semaphore, [0])
        semaphore, users = self._by_agent[agent]
        users[0] += 1
        try:
            async with semaphore:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._by_agent[agent]


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turns]
_turns = weakref.WeakKeyDictionary()


async def _read_in_turn(agent: Hashable, function: Callable[..., Any], *args: Any) -> Any:
    turns = _turns.setdefault(asyncio.get_running_loop(), _Turns())
    async with turns.turn(agent):
        return await _read(function, *args)


async def _reread(
    poll: LongPoll, counted: Callable[[], Any] = nullcontext, *, turn: Hashable | None = None
) -> tuple[bool, Any]:
    """``poll.reread()`` in the readers' pool, or the result of one for the same key queued
    and not started yet: a thousand waits on one proposal woken at once make one read, not a
    thousand queued ahead of other agents' reads. The read takes its turn among its agent's
    (``turn``: whose it is, by default ``poll.agent``), and counts in the API's requests
    under way while it runs (``counted``: hitlproject.inflight), never refused."""
    reads = _shared_reads.setdefault(asyncio.get_running_loop(), {})
    shared = reads.get(poll.key)
    if shared is None or shared.started:
        shared = reads[poll.key] = _SharedRead()

        def run() -> tuple[bool, Any]:
            shared.started = True
            with counted():
                return _reread_or_refusal(poll.reread)

        def forget(_: asyncio.Future, key: Hashable = poll.key, read: _SharedRead = shared) -> None:
            if reads.get(key) is read:
                del reads[key]

        whose = poll.agent if turn is None else turn
        shared.task = asyncio.ensure_future(_read_in_turn(whose, run))
        shared.task.add_done_callback(forget)
    # One waiter's request ending (the client gone) does not cancel the others' read.
    return await asyncio.shield(shared.task)


class _Waits:
    """How many long polls each agent has waiting in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_agent: Counter[int] = Counter()

    def take(self, agent: int) -> bool:
        with self._lock:
            if self._by_agent[agent] >= settings.LONG_POLL_MAX_WAITS_PER_AGENT:
                return False
            self._by_agent[agent] += 1
            return True

    def give_back(self, agent: int) -> None:
        with self._lock:
            self._by_agent[agent] -= 1
            if self._by_agent[agent] <= 0:
                del self._by_agent[agent]


_waits = _Waits()


def _refused(response: Any, failure: RereadFailed) -> Any:
    """The wait's answer when its re-read failed: the refusal, the read's data left out (it
    may be out of date; the agent asks again after Retry-After)."""
    response.status_code = failure.status_code
    response.data = failure.data
    for header in ("Retry-After", "WWW-Authenticate"):
        if header in failure.headers:
            response[header] = failure.headers[header]
    return response


def _too_many_waits(response: Any) -> Any:
    """The answer to a wait beyond the agent's share: 429, the read's data left out."""
    response.status_code = 429
    response.data = too_many_waits(settings.LONG_POLL_MAX_WAITS_PER_AGENT)
    response["Retry-After"] = str(TOO_MANY_WAITS_RETRY_AFTER)
    return response


TOO_MANY_WAITS_DESCRIPTION = (
    "Too many requests from this agent (wait as Retry-After says); with wait, also when the "
    "agent already has as many long polls waiting as it may (HITL_LONG_POLL_MAX_WAITS_PER_AGENT"
    ", 100 by default, per web process): code too_many_waits."
)


@made_once
def _readers() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=settings.LONG_POLL_READERS, thread_name_prefix="longpoll")


def _and_let_go(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, then the thread's database connection back to the pool."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return run


async def _read(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await sync_to_async(_and_let_go(function), thread_sensitive=False, executor=_readers())(
        *args, **kwargs
    )


@docstring_for_code_readers
class LongPollView(APIView):
    """A DRF view whose GET may attach a ``LongPoll`` to its answer (``long_poll``)."""

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., Any]:
        view = super().as_view(**initkwargs)

        async def long_polling_view(request, *args: Any, **kwargs: Any):
            if "wait" not in request.GET:
                return await sync_to_async(view)(request, *args, **kwargs)
            if not isinstance(request, ASGIRequest):
                return await _polled(view, request, *args, **kwargs)
            return await _waited(view, request, *args, **kwargs)

        markcoroutinefunction(long_polling_view)
        # What DRF's as_view exposes, for the schema generator and the CSRF check.
        long_polling_view.cls = view.cls
        long_polling_view.initkwargs = view.initkwargs
        long_polling_view.csrf_exempt = True
        return long_polling_view


# A long poll whose first read has not begun this long after its time is up (all of its
# agent's, or all agents', reads ahead of it) is not read: it is answered 503 busy. Its agent
# is answered within about the seconds it asked, however many reads are queued.
TOO_LATE_TO_START_SECONDS = 0.5


def _seconds_asked(request) -> float:
    """The seconds ``?wait=`` asks for, as far as they can be told before the view reads
    them (it refuses what is not 1 to 60 in plain digits): the most, otherwise."""
    asked = request.GET.get("wait", "")
    if asked.isascii() and asked.isdigit():
        return min(int(asked), LONGEST_WAIT)
    return LONGEST_WAIT


def _too_late_to_start() -> JsonResponse:
    response = JsonResponse(
        {
            "detail": (
                "This server had too many requests under way to begin reading what this long "
                "poll asks for within the seconds it asked to wait; nothing was done. Ask "
                "again after Retry-After seconds."
            ),
            "code": Busy.code,
        },
        status=Busy.status_code,
    )
    response["Retry-After"] = str(Busy.retry_after)
    return response


def _arrived(request) -> float:
    """When the request arrived, in the event loop's time: as the bound in front of Django
    noted it (hitlproject.inflight), or now. A wait's time counts from then: an agent that
    asks to wait 10 s is answered within about 10 s of asking, however long its first read
    waited for its turn (seconds more, under 270 waits at once)."""
    loop = asyncio.get_running_loop()
    scope = getattr(request, "scope", None) or {}
    return scope.get(ARRIVED_KEY, loop.time())


async def _waited(view: Callable[..., Any], request, *args: Any, **kwargs: Any):
    arrived = _arrived(request)
    dispatcher = await wakeups.dispatcher()
    position = dispatcher.position  # before the first read: no later wake-up is missed
    # Whose turn a read takes, known before the view authenticates: the credentials sent.
    whose = agent_of(request.scope)
    place: Place | None = request.scope.get(SCOPE_KEY)
    counted = place.counted if place is not None else nullcontext
    _let_the_requests_thread_go()  # idle while its read waits for its turn, and after
    loop = asyncio.get_running_loop()
    # By the clock the readers' threads read (the loop's may be read only on the loop).
    left_to_start = arrived + _seconds_asked(request) + TOO_LATE_TO_START_SECONDS - loop.time()
    latest_start = time.monotonic() + left_to_start

    def first_read() -> Any:
        if time.monotonic() > latest_start:  # its turn came too late to answer in time
            return None
        with counted():
            return view(request, *args, **kwargs)

    response = await _read_in_turn(whose, first_read)
    if response is None:
        return _too_late_to_start()
    poll: LongPoll | None = getattr(response, "long_poll", None)
    if poll is None:
        return response
    if not _waits.take(poll.agent):
        return _too_many_waits(response)
    if place is not None:
        place.give_back()  # waiting holds no thread and no connection
    try:
        deadline = arrived + poll.seconds
        transport = wakeups.transport()
        backstop = transport.backstop
        # Until the time is up, or the server stops (it answers as things are, at once).
        while (left := deadline - loop.time()) > 0 and not dispatcher.stopping:
            listening = dispatcher.connected and transport.hears_changes
            if dispatcher.connected:
                woken = await dispatcher.wait(poll.topic, position, min(left, backstop or left))
            else:
                await dispatcher.pause(min(left, POLL_SECONDS))
                woken = False
            if listening and not woken and loop.time() >= deadline:
                # The time is up and no change came since the last read: that read is the
                # answer, as things are. (Read again, the reads of waits timing out together
                # queued behind one another: under 270 waits, answers came seconds late.)
                break
            # Woken, or re-reading as a backstop, or unable to hear of changes: read again.
            position = dispatcher.position
            try:
                over, response.data = await _reread(poll, counted, turn=whose)
            except RereadFailed as failure:
                return _refused(response, failure)
            if over:
                break
    finally:
        _waits.give_back(poll.agent)
    return response


def _let_the_requests_thread_go() -> None:
    """Django's ASGI handler gives each request a thread of its own for its synchronous parts
    (request_started's receivers, closing the response), kept until the request ends: a
    waiting request would keep an idle thread for the whole wait. Let it go now; asgiref makes
    another for the request if it needs one again. (asgiref's internals: if they change, this
    does nothing, and a wait keeps an idle thread, as before.)"""
    context = getattr(SyncToAsync, "thread_sensitive_context", None)
    executors = getattr(SyncToAsync, "context_to_thread_executor", None)
    current = context.get(None) if context is not None else None
    if current is None or executors is None or getattr(current, "_executor", None) is not None:
        return  # a thread lent by its owner (hitlproject.asgi_handler) is the owner's to keep
    executor = executors.pop(current, None)
    if executor is not None:
        executor.shutdown(wait=False)


async def _polled(view: Callable[..., Any], request, *args: Any, **kwargs: Any):
    arrived = _arrived(request)
    response = await sync_to_async(view)(request, *args, **kwargs)
    poll: LongPoll | None = getattr(response, "long_poll", None)
    if poll is None:
        return response
    if not _waits.take(poll.agent):
        return _too_many_waits(response)
    try:
        loop = asyncio.get_running_loop()
        deadline = arrived + poll.seconds
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(left, POLL_SECONDS))
            try:
                over, response.data = await sync_to_async(_reread_or_refusal)(poll.reread)
            except RereadFailed as failure:
                return _refused(response, failure)
            if over:
                break
    finally:
        _waits.give_back(poll.agent)
    return response
