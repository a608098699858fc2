"""The benchmarks' load generator: an asyncio HTTP/1.1 client, one kept-alive connection per
simulated client, each POSTing its next body as soon as the previous answer is in.

Stdlib only and light (raw streams, no HTTP library), so that on a small machine it takes as
little CPU as it can from the servers it measures, and the same for each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from bench.common import percentile


@dataclass
class LoadResult:
    sent: int = 0
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    ok_statuses: tuple[int, ...] = (200, 201)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_examples) < 3:
            self.error_examples.append(what[:300])

    def summary(self) -> dict:
        ok = len(self.latencies) - self.errors
        return {
            "requests": self.sent,
            "ok": ok,
            "errors": self.errors,
            "error_examples": self.error_examples,
            "seconds": round(self.wall, 2),
            "creates_per_second": round(ok / self.wall, 1) if self.wall else 0.0,
            "p50_ms": round(percentile(self.latencies, 0.50) * 1000, 1) if self.latencies else None,
            "p99_ms": round(percentile(self.latencies, 0.99) * 1000, 1) if self.latencies else None,
            "max_ms": round(max(self.latencies) * 1000, 1) if self.latencies else None,
        }


class Connection:
    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(
        self, method: str, path: str, body: bytes, headers: dict
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head += [f"Content-Length: {len(body)}", "", ""]
        self.writer.write("\r\n".join(head).encode("latin-1") + body)
        return await asyncio.wait_for(self._response(), self.timeout)

    async def _response(self) -> tuple[int, bytes]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            body = b"".join(chunks)
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body


async def _run(
    *,
    host: str,
    port: int,
    path: str,
    bodies: list[bytes],
    headers: dict | list[dict],
    clients: int,
    seconds: float | None,
    timeout: float,
    ok_statuses: tuple[int, ...],
) -> LoadResult:
    result = LoadResult(ok_statuses=ok_statuses)
    cursor = iter(range(len(bodies)))
    started = time.perf_counter()
    deadline = started + seconds if seconds else None

    async def client() -> None:
        connection = Connection(host, port, timeout)
        try:
            while deadline is None or time.perf_counter() < deadline:
                index = next(cursor, None)
                if index is None:
                    return
                request_headers = headers[index] if isinstance(headers, list) else headers
                result.sent += 1
                sent = time.perf_counter()
                try:
                    status, body = await connection.request(
                        "POST", path, bodies[index], request_headers
                    )
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as error:
                    result.latencies.append(time.perf_counter() - sent)
                    result.error(f"{type(error).__name__}: {error}")
                    await connection.close()
                    continue
                result.latencies.append(time.perf_counter() - sent)
                if status not in ok_statuses:
                    result.error(f"HTTP {status}: {body[:200].decode(errors='replace')}")
        finally:
            await connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    result.wall = time.perf_counter() - started
    return result


def post_load(
    *,
    port: int,
    path: str,
    bodies: list[bytes],
    headers: dict | list[dict],
    clients: int,
    seconds: float | None = None,
    host: str = "127.0.0.1",
    timeout: float = 60.0,
    ok_statuses: tuple[int, ...] = (200, 201),
) -> dict:
    """POST ``bodies`` in order from ``clients`` concurrent clients, until every body is sent
    or ``seconds`` have passed; ``headers`` is one dict for every request or one per body.
    Returns creates/s (answers with an ``ok_statuses`` status), p50, p99 and errors."""
    return asyncio.run(
        _run(
            host=host,
            port=port,
            path=path,
            bodies=bodies,
            headers=headers,
            clients=clients,
            seconds=seconds,
            timeout=timeout,
            ok_statuses=ok_statuses,
        )
    ).summary()
