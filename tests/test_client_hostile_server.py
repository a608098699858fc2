"""Reproductions (attack2): the Python client against a hostile server. Each test states what
SPEC/README lead one to expect; they FAIL on main as of ce9a73b.

A raw asyncio-free socket server in a thread answers every request the way the test says:
a body trickled a byte every few seconds, a body that never ends, or JSON the client does not
expect."""

import asyncio
import socket
import threading
import time

import pytest
from hitl_client import (
    NO_RETRIES,
    AsyncClient,
    BadResponse,
    Client,
    ConnectionFailed,
    HitlError,
    ResponseTooLarge,
    ValidationFailed,
    WaitTimedOut,
)

from tests.conftest import free_port

PROPOSAL = (
    b'{"id": 1, "status": "pending_review", "action_type": "bid_adjustment", "account": "demo",'
    b' "payload": {}, "verdict": {"outcome": "review", "reasons": []}, "decisions": [],'
    b' "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}'
)


class Hostile:
    def __init__(self, answer) -> None:
        self.answer = answer
        self.port = free_port()
        self.sent = 0
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.listener.settimeout(0.2)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        try:
            self.answer(self, conn)
        except OSError:
            pass  # the client hung up
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def trickle(server: Hostile, conn: socket.socket) -> None:
    """Headers at once, then the body a byte every 2 s: each read is well within the
    client's 30 s read timeout, the whole never ends."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 999999\r\n\r\n"
    )
    while not server.stop.is_set():
        conn.sendall(b" ")
        time.sleep(2)


def endless(server: Hostile, conn: socket.socket) -> None:
    """A chunked body that never ends, as fast as the client reads it."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b" " * (1 << 20)
    while not server.stop.is_set() and server.sent < (256 << 20):
        conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        server.sent += len(chunk)
    conn.sendall(b"0\r\n\r\n")


def fixed(status: bytes, body: bytes):
    def answer(server: Hostile, conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, len(body), body)
        )

    return answer


def in_thread(function, limit: float):
    """Run ``function`` in a daemon thread; (finished, result or exception)."""
    box: list = []

    def run() -> None:
        try:
            box.append(function())
        except BaseException as error:
            box.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    return (not thread.is_alive()), (box[0] if box else None)


def test_wait_with_a_timeout_is_not_held_past_it_by_a_trickled_body():
    """SPEC: wait(id, timeout=…) raises WaitTimedOut after timeout seconds. A server that
    trickles its answer held it for ever (each byte resets httpx's read timeout); the client's
    README promises it ends no later than the wait's timeout plus one request's."""
    server = Hostile(trickle)
    try:
        client = Client(f"http://127.0.0.1:{server.port}", "hitl_key", timeout=4)
        finished, _ = in_thread(lambda: client.wait(1, timeout=3), limit=3 + 4 + 3)
        assert finished, "Client.wait(timeout=3) with a 4 s request timeout still blocked at 10 s"
    finally:
        server.close()


def test_an_endless_body_is_not_read_into_memory_without_bound():
    """The client reads a whole answer into memory, however large: a hostile or broken
    server streaming an endless body takes the agent's memory (12 GiB in a minute here).
    Expected: a bound on an answer's size, then a typed error."""
    server = Hostile(endless)
    try:
        client = Client(f"http://127.0.0.1:{server.port}", "hitl_key")
        finished, outcome = in_thread(lambda: client.get(1), limit=120)
        assert finished
        assert server.sent < (64 << 20), f"the client read {server.sent >> 20} MiB of one answer"
        assert isinstance(outcome, HitlError), repr(outcome)
    finally:
        server.close()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (b"200 OK", b"[1, 2, 3]"),  # JSON, not an object: AttributeError
        (b"200 OK", b'{"id": "x"}'),  # an object missing what a proposal has
        (b"400 Bad Request", b"[" * 100_000 + b"]" * 100_000),  # RecursionError
    ],
    ids=["list", "partial-object", "deep-nesting"],
)
def test_garbage_answers_raise_the_clients_typed_errors(status, body):
    """SPEC: refusals raise typed errors. A garbled answer escapes as AttributeError,
    KeyError or RecursionError, which an agent's `except HitlError` (and hitl-mcp's tools,
    which catch HitlError) does not catch."""
    server = Hostile(fixed(status, body))
    try:
        client = Client(f"http://127.0.0.1:{server.port}", "hitl_key")
        with pytest.raises(HitlError):
            client.get(1)
    finally:
        server.close()


# The fixes, beyond the reproductions above: both clients, each bound, the typed errors.


def trickled_headers(server: Hostile, conn: socket.socket) -> None:
    """Even the status line a byte at a time: no single read ever waits long."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 10_000:
        if server.stop.is_set():
            return
        conn.sendall(bytes([byte]))
        time.sleep(0.5)


def huge_declared(server: Hostile, conn: socket.socket) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % (1 << 40)
    )
    conn.sendall(b" " * 65536)
    server.stop.wait(30)


def run_async(coroutine_function, limit: float):
    return in_thread(lambda: asyncio.run(coroutine_function()), limit)


@pytest.mark.parametrize("answer", [trickle, trickled_headers], ids=["body", "headers"])
def test_a_trickled_answer_ends_at_the_requests_deadline_as_a_connection_failure(answer):
    """timeout= bounds the whole request: a server trickling its headers or its body gets
    ConnectionFailed (a HitlError) once it has passed, in both clients."""
    server = Hostile(answer)
    url = f"http://127.0.0.1:{server.port}"
    try:
        client = Client(url, "hitl_key", timeout=1, retry=NO_RETRIES)
        finished, outcome = in_thread(lambda: client.get(1), limit=30)
        assert finished and isinstance(outcome, ConnectionFailed), repr(outcome)

        async def get():
            async with AsyncClient(url, "hitl_key", timeout=1, retry=NO_RETRIES) as hitl:
                return await hitl.get(1)

        finished, outcome = run_async(get, limit=30)
        assert finished and isinstance(outcome, ConnectionFailed), repr(outcome)
    finally:
        server.close()


def trickle_after_first_answer(server: Hostile, conn: socket.socket) -> None:
    """The first read answered (pending review), every later one (the long polls) trickled."""
    server.sent += 1
    if server.sent == 1:
        fixed(b"200 OK", PROPOSAL)(server, conn)
    else:
        trickle(server, conn)


def wait_against(url: str, kind: str, timeout: float):
    """(finished, outcome) of ``wait(1, timeout=…)`` with the sync or the async client."""
    if kind == "sync":
        client = Client(url, "hitl_key", timeout=1)
        return in_thread(lambda: client.wait(1, timeout=timeout), limit=30)

    async def wait():
        async with AsyncClient(url, "hitl_key", timeout=1) as hitl:
            return await hitl.wait(1, timeout=timeout)

    return run_async(wait, limit=30)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_wait_against_a_server_trickling_its_long_polls_raises_wait_timed_out(kind):
    """wait(timeout=…) ends at its timeout plus one request's at the latest, however the
    retries would otherwise go on: WaitTimedOut with the proposal as last seen; and
    ConnectionFailed when the proposal could never be read at all."""
    server = Hostile(trickle_after_first_answer)
    try:
        finished, outcome = wait_against(f"http://127.0.0.1:{server.port}", kind, 2)
        assert finished and isinstance(outcome, WaitTimedOut), repr(outcome)
        assert outcome.proposal.status == "pending_review"
    finally:
        server.close()
    server = Hostile(trickle)
    try:
        finished, outcome = wait_against(f"http://127.0.0.1:{server.port}", kind, 1)
        assert finished and isinstance(outcome, ConnectionFailed), repr(outcome)
    finally:
        server.close()


def test_an_answer_larger_than_the_cap_is_cut_off_as_response_too_large():
    """max_response_bytes caps an answer (streamed or declared), in both clients; it is a
    BadResponse and so a HitlError."""
    server = Hostile(endless)
    declared = Hostile(huge_declared)
    try:
        client = Client(f"http://127.0.0.1:{server.port}", "k", max_response_bytes=1 << 20)
        finished, outcome = in_thread(lambda: client.get(1), limit=60)
        assert finished and isinstance(outcome, ResponseTooLarge), repr(outcome)
        assert isinstance(outcome, BadResponse) and outcome.status_code == 200
        assert server.sent < (32 << 20)

        async def get():
            async with AsyncClient(f"http://127.0.0.1:{declared.port}", "k") as hitl:
                return await hitl.get(1)

        finished, outcome = run_async(get, limit=60)
        assert finished and isinstance(outcome, ResponseTooLarge), repr(outcome)
    finally:
        server.close()
        declared.close()


def test_a_garbled_answer_is_a_bad_response_with_an_excerpt_and_without_the_api_key():
    """A 200 that is not the API's JSON (an HTML error page from a proxy echoing the request,
    say): BadResponse with the status and the start of the body, the key blanked out."""
    secret = "hitl_secret_key_123"
    body = b"<html>upstream said: Authorization: Bearer " + secret.encode() + b"</html>"
    server = Hostile(fixed(b"200 OK", body))
    try:
        client = Client(f"http://127.0.0.1:{server.port}", secret)
        with pytest.raises(BadResponse) as caught:
            client.get(1)
        assert caught.value.status_code == 200
        assert caught.value.excerpt.startswith("<html>upstream said")
        assert secret not in caught.value.excerpt and secret not in str(caught.value)
    finally:
        server.close()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (b"200 OK", b"[1, 2, 3]", BadResponse),
        (b"200 OK", b'{"id": "x"}', BadResponse),
        (b"400 Bad Request", b"[" * 100_000 + b"]" * 100_000, ValidationFailed),
    ],
    ids=["list", "partial-object", "deep-nesting"],
)
def test_the_async_client_types_garbled_answers_too(status, body, expected):
    server = Hostile(fixed(status, body))
    try:

        async def get():
            async with AsyncClient(f"http://127.0.0.1:{server.port}", "k") as hitl:
                return await hitl.get(1)

        finished, outcome = run_async(get, limit=30)
        assert finished and isinstance(outcome, expected), repr(outcome)
    finally:
        server.close()


def test_other_operations_type_a_wrongly_shaped_page():
    """Lists, scorecards and feedback pages read through the same checks."""
    server = Hostile(fixed(b"200 OK", b'{"results": 5}'))
    try:
        client = Client(f"http://127.0.0.1:{server.port}", "k")
        with pytest.raises(BadResponse):
            list(client.proposals())
        with pytest.raises(BadResponse):
            list(client.feedback())
        with pytest.raises(BadResponse):
            client.campaigns()
    finally:
        server.close()
