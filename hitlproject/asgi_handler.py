"""Django's ASGI handler, with a synchronous view's request taken through the middleware in one
trip to a thread kept for the next request (the web server's, hitlproject.asgi, and the
benchmarks', bench.asgi).

Django runs the middleware as the views need them: asynchronously, because the long polls
(hitlproject.longpoll) are async views that must not hold a thread while they wait. Each
synchronous middleware in an async chain then runs in the request's thread by a trip of its
own from the event loop, and back, once on the way in and once on the way out: more than a
dozen trips for an agent's submission. And Django starts a thread for each request and ends it
with the request, so whatever a thread keeps (a payload's serializer, Python's and the CPU's
caches) is made again every time.

Here a request whose view is synchronous (everything but the long polls) goes through the same
middleware, loaded as a synchronous chain, in one trip, on a thread kept from an earlier
request (``KEPT_THREADS`` of them wait between requests); a request for an async view goes
through the async chain, on a thread of its own, as before. Either way the middleware, their
order and what they do are the same (a path that resolves to no view goes the synchronous way,
as the static files and the 404s do). Measured by ``bin/bench peer``: see docs/performance.md.

And a request's body is read whole, and bounded, before Django has it (hitlproject.asgi_body):
Django's handler reads the whole body into a file before any view is reached (so before a key
is checked or a size refused); a body said to be larger than any view takes is refused at once
with a 413, unread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import django
from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.urls import get_resolver

from hitlproject.asgi_body import ReadAlready, body_read

KEPT_THREADS = 8
VIEW_IS_ASYNC = "hitl.view_is_async"  # in the request's scope


class Handler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.synchronous = BaseHandler()
        self.synchronous.load_middleware(is_async=False)
        self.threads = _KeptThreads(KEPT_THREADS)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        if VIEW_IS_ASYNC not in scope:  # unless the bound in front resolved it
            scope[VIEW_IS_ASYNC] = view_is_async(scope)
        if scope[VIEW_IS_ASYNC]:
            return await super().__call__(scope, receive, send)
        with self.threads.one() as thread:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        read = await body_read(scope, receive, send)  # unless the bound read it already
        if read is None:  # answered (413), or the client went away while sending it
            return None
        scope, receive = read
        return await super().handle(scope, receive, send)

    async def read_body(self, receive):
        if isinstance(receive, ReadAlready):  # always, read by body_read
            return receive.body
        return await super().read_body(receive)

    async def get_response_async(self, request):
        if request.scope.get(VIEW_IS_ASYNC, True):
            return await super().get_response_async(request)
        return await sync_to_async(self.synchronous.get_response)(request)


def view_is_async(scope) -> bool:
    """Whether the path names an async view, as the URLconf resolves the request's
    ``path_info`` (the path after the script's prefix, as ``ASGIRequest`` makes it)."""
    prefix = get_script_prefix(scope)
    path = scope["path"].removeprefix(prefix) if prefix else scope["path"]
    try:
        return iscoroutinefunction(get_resolver().resolve(path).func)
    except Exception:  # a 404, or an error that Django's handling of the request reports
        return False


class _KeptThreads:
    """Single-thread executors lent to one request at a time and kept for the next; beyond
    ``kept`` idle ones, a returned one is let go."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self.idle: list[ThreadPoolExecutor] = []
        self.lock = threading.Lock()

    @contextmanager
    def one(self) -> Iterator[ThreadPoolExecutor]:
        with self.lock:
            executor = self.idle.pop() if self.idle else None
        if executor is None:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        try:
            yield executor
        finally:
            with self.lock:
                kept = len(self.idle) < self.kept and not executor._shutdown
                if kept:
                    self.idle.append(executor)
            if not kept:
                executor.shutdown(wait=False)


def handler() -> Handler:
    """As ``django.core.asgi.get_asgi_application``, with the handler above."""
    django.setup(set_prefix=False)
    return Handler()
