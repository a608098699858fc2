"""Reproductions (attack2): the Python client against a hostile server. Each test states what
SPEC/README lead one to expect; they FAIL on main as of ce9a73b.

A raw asyncio-free socket server in a thread answers every request the way the test says:
a body trickled a byte every few seconds, a body that never ends, or JSON the client does not
expect."""

import socket
import threading
import time

import pytest
from hitl_client import Client, HitlError

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
    trickles its answer holds it for ever (each byte resets httpx's read timeout)."""
    server = Hostile(trickle)
    try:
        client = Client(f"http://127.0.0.1:{server.port}", "hitl_key")
        finished, _ = in_thread(lambda: client.wait(1, timeout=3), limit=40)
        assert finished, "Client.wait(timeout=3) still blocked after 40 s"
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
