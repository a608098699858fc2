"""Bounds on one exchange with the server, whatever the server does: a deadline on the whole
of it (connecting, sending, the status line and headers, the body), and a cap on the body's
size while it is read.

httpx's timeouts are per operation: a server that sends a byte every few seconds never trips
a read timeout, and a body that never ends is read into memory until memory runs out. The
platform bounds its own outbound requests the same way (``hitlproject/outbound.py``):

- asyncio: the whole exchange runs under ``asyncio.timeout`` (the client does this);
- blocking: every socket operation's timeout is cut to what is left of the exchange's
  deadline (a network backend wrapped around httpcore's, reading the deadline from a context
  variable the client sets per attempt), so the last read ends at the deadline, not a read
  timeout after it. Name resolution inside ``connect`` is the one step a socket timeout does
  not bound (the standard library's resolver).

The body is streamed, counted and checked against the deadline chunk by chunk, so a body
larger than the cap is cut off there (``ResponseTooLarge``) and a deadline also holds with a
transport given by the caller (where the socket-level bound cannot be installed).
"""

from __future__ import annotations

import time
import typing
from collections.abc import AsyncIterator, Iterable, Iterator
from contextvars import ContextVar

import httpcore
import httpx

from hitl_client.errors import ResponseTooLarge

DEFAULT_MAX_RESPONSE_BYTES = 16 << 20  # 16 MiB: the largest page the API sends is far smaller

#: The monotonic time by which the current attempt must be over, in this thread or task.
DEADLINE: ContextVar[float | None] = ContextVar("hitl_client_deadline", default=None)


def _cut(timeout: float | None, expired: type[Exception]) -> float | None:
    deadline = DEADLINE.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise expired("the request's deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _cut(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _cut(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: typing.Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._stream.start_tls(
                ssl_context, server_hostname, _cut(timeout, httpcore.ConnectTimeout)
            )
        )

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._backend.connect_tcp(
                host, port, _cut(timeout, httpcore.ConnectTimeout), local_address, socket_options
            )
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self._backend.connect_unix_socket(
                path, _cut(timeout, httpcore.ConnectTimeout), socket_options
            )
        )

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def bounded_transport() -> httpx.HTTPTransport:
    """httpx's own transport, its sockets' timeouts cut to the current deadline. httpx does
    not take a network backend, so it is set on the pool httpx made (checked: when a later
    httpx moves it, the body's chunk-by-chunk deadline still holds)."""
    transport = httpx.HTTPTransport()
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
    return transport


def _too_large(response: httpx.Response, limit: int) -> ResponseTooLarge:
    return ResponseTooLarge(
        f"The answer to {response.request.method} {response.request.url.path} is larger than "
        f"{limit} bytes (max_response_bytes); reading stopped there.",
        status_code=response.status_code,
    )


def _check_length(response: httpx.Response, limit: int) -> None:
    try:
        declared = int(response.headers.get("Content-Length", "0"))
    except ValueError:
        return
    if declared > limit:
        raise _too_large(response, limit)


def _late(deadline: float) -> bool:
    return time.monotonic() >= deadline


def read_body(response: httpx.Response, limit: int, deadline: float) -> bytes:
    """The (decoded) body, at most ``limit`` bytes, read before ``deadline``."""
    _check_length(response, limit)
    chunks: list[bytes] = []
    size = 0
    body: Iterator[bytes] = response.iter_bytes()
    for chunk in body:
        size += len(chunk)
        if size > limit:
            raise _too_large(response, limit)
        if _late(deadline):
            raise httpx.ReadTimeout("the request's deadline passed", request=response.request)
        chunks.append(chunk)
    return b"".join(chunks)


async def aread_body(response: httpx.Response, limit: int) -> bytes:
    """``read_body`` for the async client, whose deadline is an ``asyncio.timeout``."""
    _check_length(response, limit)
    chunks: list[bytes] = []
    size = 0
    body: AsyncIterator[bytes] = response.aiter_bytes()
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            raise _too_large(response, limit)
        chunks.append(chunk)
    return b"".join(chunks)
