"""A bound on the agent API's requests in flight in one web process, kept in front of Django.

Each request the event loop hands to Django gets a thread and, once there, waits up to
``HITL_DATABASE_POOL_TIMEOUT_SECONDS`` for a pooled connection: one agent's burst of thousands
would queue thousands of threads, and everyone's requests would wait behind them and then be
refused anyway. Requests under ``/api/`` beyond the bound are answered at once, 503 ``busy``
with Retry-After in the API's error format, before Django (no thread, no connection).

Two bounds: ``HITL_API_MAX_IN_FLIGHT`` for the process, and ``HITL_API_MAX_IN_FLIGHT_PER_AGENT``
for the requests carrying one API key (counted by its hash, before the key is
checked: an agent's burst fills its own share, not the others'). A long poll gives its place
back while it waits (hitlproject.longpoll: it holds nothing then) and counts again, without
being refused, while it re-reads. A request takes its place once its body is read whole
(hitlproject.asgi_body), not while it is still being sent.

A long poll (``?wait=`` on an async view, hitlproject.longpoll) holds a place in a bound of its
own until it is waiting: its reads take turns on the long polls' few readers, holding no thread
of the request's and no connection while they queue, so the threads' bound is not theirs.
Beyond ``HITL_LONG_POLL_MAX_WAITS_PER_AGENT`` from one API key the answer is the 429
``too_many_waits`` the agent was promised, at once (one agent's burst of 150 waits was told
503 ``busy`` from its 41st, the most requests the process takes from a key); beyond
``HITL_LONG_POLL_MAX_PENDING`` from all agents together, the server's own limit, 503 ``busy``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl

from hitlproject.asgi_body import body_read, send_json
from hitlproject.asgi_handler import VIEW_IS_ASYNC, view_is_async

SCOPE_KEY = "hitl.in_flight"
# When the request arrived (its headers read), in the event loop's time: a long poll's time
# counts from then, not from whenever its first read got its turn (hitlproject.longpoll).
ARRIVED_KEY = "hitl.arrived"
RETRY_AFTER = 1
REFUSAL = json.dumps(
    {
        "detail": (
            "This server has as many of this agent's requests (or of all agents' requests) "
            "under way as it takes at once; nothing was done. Send it again shortly."
        ),
        "code": "busy",
    }
).encode()
TOO_MANY_WAITS_RETRY_AFTER = 5


def too_many_waits(limit: int) -> dict[str, str]:
    """The body of the 429 for a wait beyond the agent's share (hitlproject.longpoll)."""
    return {
        "detail": (
            f"This agent already has {limit} long polls (?wait=) waiting on this server, the "
            "most it may; wait for one of them to be answered, or ask again without wait, or "
            "after Retry-After seconds."
        ),
        "code": "too_many_waits",
    }


class InFlight:
    """How many API requests are under way in this process, in all and per agent."""

    def __init__(self, limit: int, per_agent: int) -> None:
        self.limit = limit
        self.per_agent = per_agent
        self._lock = threading.Lock()
        self._total = 0
        self._by_agent: Counter[str] = Counter()

    def take(self, agent: str, *, refusable: bool = True) -> bool:
        with self._lock:
            if refusable and (self._total >= self.limit or self._by_agent[agent] >= self.per_agent):
                return False
            self._total += 1
            self._by_agent[agent] += 1
            return True

    def full_for(self, agent: str) -> bool:
        """Whether ``agent`` has its share (a refusal's reason: its share, or the total)."""
        with self._lock:
            return self._by_agent[agent] >= self.per_agent

    def give_back(self, agent: str) -> None:
        with self._lock:
            self._total -= 1
            self._by_agent[agent] -= 1
            if self._by_agent[agent] <= 0:
                del self._by_agent[agent]

    @contextmanager
    def counted(self, agent: str) -> Iterator[None]:
        """Counted while the block runs, never refused (a long poll's re-read)."""
        self.take(agent, refusable=False)
        try:
            yield
        finally:
            self.give_back(agent)


class Place:
    """A request's place in its bound (``held_in``), left in its ASGI scope (``SCOPE_KEY``)
    so that a long poll can give it back while it waits and count its reads in the requests
    under way (``reads_in``)."""

    def __init__(self, held_in: InFlight, agent: str, reads_in: InFlight | None = None) -> None:
        self.held_in = held_in
        self.reads_in = reads_in or held_in
        self.agent = agent
        self.held = True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self.held_in.give_back(self.agent)

    def counted(self):
        return self.reads_in.counted(self.agent)


def agent_of(scope: dict) -> str:
    """Whose request it is, as far as can be told without the database: the key its
    Authorization header carries, hashed (the key itself is not kept). Read as the API reads
    it (approvals.authentication): "Bearer KEY", "bearer KEY" and "Bearer   KEY" are one
    agent's, which counted as the header was written had a share of the bound each."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            parts = value.split()
            if len(parts) == 2 and parts[0].lower() == b"bearer":
                value = parts[1]
            return hashlib.sha256(value).hexdigest()
    return ""


def is_long_poll(scope: dict) -> bool:
    """Whether the request is a long poll, as hitlproject.longpoll tells one: ``wait`` in the
    query, to an async view (the long polls are the only ones). Resolved once: the handler
    keeps what is found in the scope (``VIEW_IS_ASYNC``)."""
    query = scope.get("query_string", b"").decode("latin-1")
    if not any(name == "wait" for name, _ in parse_qsl(query, keep_blank_values=True)):
        return False
    scope[VIEW_IS_ASYNC] = view_is_async(scope)
    return scope[VIEW_IS_ASYNC]


class InFlightGuard:
    """ASGI middleware: the bound around ``app``'s requests under ``/api/``, and the long
    polls' until they wait (``waits``; ``None``: they take their place among the others)."""

    def __init__(
        self, app: Any, *, limit: int, per_agent: int, waits: tuple[int, int] | None = None
    ) -> None:
        self.app = app
        self.in_flight = InFlight(limit, per_agent)
        self.waits = InFlight(*waits) if waits is not None else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/api/"):
            await self.app(scope, receive, send)
            return
        scope = {**scope, ARRIVED_KEY: asyncio.get_running_loop().time()}
        # A place is taken once the request's body is in: a client sending its body slowly,
        # or never finishing it, holds a connection, not a place. Sixty such requests, with
        # no key or any, filled the process's bound and every agent was answered 503 busy
        # for as long as they stayed connected.
        read = await body_read(scope, receive, send)
        if read is None:  # answered (413), or the client went away while sending it
            return
        scope, receive = read
        agent = agent_of(scope)
        bound = self.in_flight
        if self.waits is not None and is_long_poll(scope):
            bound = self.waits
        if not bound.take(agent):
            if bound is self.waits and bound.full_for(agent):
                await refuse_wait(send, bound.per_agent)
            else:
                await refuse(send)
            return
        place = Place(bound, agent, reads_in=self.in_flight)

        async def send_then_give_back(message: dict) -> None:
            # Answered once the body is sent whole: Django's cleanup after it (closing the
            # request in a thread) must not count against the agent's next request.
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                place.give_back()

        try:
            await self.app({**scope, SCOPE_KEY: place}, receive, send_then_give_back)
        finally:
            place.give_back()


async def refuse(send: Any) -> None:
    await send_json(send, 503, REFUSAL, (b"retry-after", str(RETRY_AFTER).encode()))


async def refuse_wait(send: Any, limit: int) -> None:
    body = json.dumps(too_many_waits(limit)).encode()
    await send_json(send, 429, body, (b"retry-after", str(TOO_MANY_WAITS_RETRY_AFTER).encode()))
