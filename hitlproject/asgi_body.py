"""A request's body read whole, and bounded, before the application is given the request.

Read by the API's bound on requests in flight (hitlproject.inflight) before a request takes a
place in it, and otherwise by the web server's handler (hitlproject.asgi_handler) before
Django: a body said to be larger than any view takes (``DATA_UPLOAD_MAX_MEMORY_SIZE``, a
batch's limit) is refused at once with a 413, unread; one sent in chunks, without a length, is
read up to that limit (a 413 past it) and then given its length, which Django's request reads
the body by (it would otherwise read none of it). A body that stops arriving, nothing more of
it for ``REQUEST_BODY_IDLE_SECONDS``, is answered 408 and its connection closed: the web
server waits on a body for as long as its client keeps the connection open, so a client that
sent part of one and no more held a connection, and up to 16 MiB on disk, for good. A body
that cannot be kept (past 64 KiB, no temporary file to be had: the process's open files at
their limit, or the disk full) is answered 503 ``busy`` with Retry-After, nothing done.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Any

from django.conf import settings

from hitlproject.vocabulary import how_many

BODY_IN_MEMORY = 64 * 1024  # a proposal (at most 256 KiB) mostly fits; a batch spills
NO_ROOM_RETRY_AFTER = 1


class ReadAlready:
    """The connection's ``receive``, its body already read (into ``body``): what it says
    next is its disconnect, which Django listens for while the view runs."""

    def __init__(self, body, receive) -> None:
        self.body, self.receive = body, receive

    async def __call__(self):
        return await self.receive()


async def body_read(scope: dict, receive: Any, send: Any) -> tuple[dict, ReadAlready] | None:
    """The request's scope (with the body's length) and a ``receive`` holding its body, read
    whole; None if it was answered instead (413) or the client went away while sending it."""
    if isinstance(receive, ReadAlready):
        return scope, receive
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    length = dict(scope["headers"]).get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        await too_large(send, limit)
        return None
    # Read into a file that goes to disk past 64 KiB (the request closes it), counted: every
    # connection sending a body holds one, before any key is checked, so memory is what
    # must not grow with them (Django's 2.5 MiB a body would, for a few hundred of them).
    body = tempfile.SpooledTemporaryFile(max_size=BODY_IN_MEMORY, mode="w+b")  # noqa: SIM115
    idle = settings.REQUEST_BODY_IDLE_SECONDS
    while True:
        try:
            message = await asyncio.wait_for(receive(), idle)
        except TimeoutError:
            body.close()
            await stopped_arriving(send, idle)
            return None
        if message["type"] == "http.disconnect":
            body.close()
            return None
        try:
            body.write(message.get("body", b""))
        except OSError:
            # Past 64 KiB the body goes to a temporary file, one per connection sending a
            # body: with none to be had (EMFILE under many slow bodies, ENOSPC), the request
            # was answered a 500, and the traceback logged, for every such request.
            body.close()
            await no_room(send)
            return None
        if body.tell() > limit:
            body.close()
            await too_large(send, limit)
            return None
        if not message.get("more_body", False):
            break
    if length is None:
        scope = {
            **scope,
            "headers": [*scope["headers"], (b"content-length", str(body.tell()).encode())],
        }
    body.seek(0)
    return scope, ReadAlready(body, receive)


async def too_large(send: Any, limit: int) -> None:
    """A 413 in the API's error shape, the body left unread."""
    body = {"detail": f"Request body larger than {limit} bytes.", "code": "payload_too_large"}
    await send_json(send, 413, json.dumps(body).encode(), (b"connection", b"close"))


async def stopped_arriving(send: Any, idle: float) -> None:
    """A 408 in the API's error shape: the body stopped arriving, and the connection closes."""
    body = {
        "detail": (
            "The request's body stopped arriving: nothing more of it came for "
            f"{how_many(idle, 'second')}. Nothing was done; send it again."
        ),
        "code": "request_timeout",
    }
    await send_json(send, 408, json.dumps(body).encode(), (b"connection", b"close"))


async def no_room(send: Any) -> None:
    """A 503 ``busy`` in the API's error shape: the body could not be kept, nothing was done."""
    body = {
        "detail": (
            "This server cannot hold the request's body right now (it has no room for it); "
            "nothing was done. Send it again shortly."
        ),
        "code": "busy",
    }
    await send_json(
        send,
        503,
        json.dumps(body).encode(),
        (b"retry-after", str(NO_ROOM_RETRY_AFTER).encode()),
        (b"connection", b"close"),
    )


async def send_json(send: Any, status: int, body: bytes, *headers: tuple[bytes, bytes]) -> None:
    """Answer with ``body`` (JSON) and ``status``, before the request reaches Django."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
