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
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hitlproject.asgi_body import body_read, send_json

SCOPE_KEY = "hitl.in_flight"
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
    """A request's place in the bound, left in its ASGI scope (``SCOPE_KEY``) so that a long
    poll can give it back while it waits and count its re-reads."""

    def __init__(self, in_flight: InFlight, agent: str) -> None:
        self.in_flight = in_flight
        self.agent = agent
        self.held = True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self.in_flight.give_back(self.agent)

    def counted(self):
        return self.in_flight.counted(self.agent)


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


class InFlightGuard:
    """ASGI middleware: the bound around ``app``'s requests under ``/api/``."""

    def __init__(self, app: Any, *, limit: int, per_agent: int) -> None:
        self.app = app
        self.in_flight = InFlight(limit, per_agent)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith("/api/"):
            await self.app(scope, receive, send)
            return
        # A place is taken once the request's body is in: a client sending its body slowly,
        # or never finishing it, holds a connection, not a place. Sixty such requests, with
        # no key or any, filled the process's bound and every agent was answered 503 busy
        # for as long as they stayed connected.
        read = await body_read(scope, receive, send)
        if read is None:  # answered (413), or the client went away while sending it
            return
        scope, receive = read
        agent = agent_of(scope)
        if not self.in_flight.take(agent):
            await refuse(send)
            return
        place = Place(self.in_flight, agent)

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
