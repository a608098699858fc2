"""Hits counted in fixed time windows, shared by every process of the platform (the agent API's
rate limit).

With Redis, one round trip a hit (INCR and EXPIRE in one MULTI) through a client built once per
process: its connection pool is thread-safe and outlives requests, where Django's cache builds a
client for every call and a pool for every request. On the embedded default, a small file per
name under the data directory, counted under an exclusive lock (flock), so that the web
server's processes and threads never lose a hit.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import redis
from django.conf import settings

from hitlproject.once import made_once

NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,99}")
# "<window> <count>", padded to one length so that each write replaces the last in place.
RECORD = "{window:>20} {count:>20}"


@dataclass(frozen=True)
class Hit:
    count: int  # hits in this window so far, this one included
    seconds_left: float  # until the window ends


def window_hit(*, name: str, period: int, now: float) -> Hit:
    """Count one hit for ``name`` in the current window of ``period`` seconds."""
    if not NAME.fullmatch(name):
        raise ValueError(f"Not a window counter's name: {name!r}")
    window = int(now // period)
    if settings.REDIS_URL:
        key = f"hitl:window:{name}:{window}"
        # The window's key outlives it by a second, whenever its last hit came.
        count, _ = redis_client().pipeline().incr(key).expire(key, period + 1).execute()
    else:
        count = _file_hit(data_folder("windows") / name, window)
    return Hit(count=count, seconds_left=(window + 1) * period - now)


def window_counts_clear(*, name: str) -> None:
    """Start ``name``'s count afresh (an operator lifting a limit, or a test)."""
    if settings.REDIS_URL:
        client = redis_client()
        keys = list(client.scan_iter(match=f"hitl:window:{name}:*"))
        if keys:
            client.delete(*keys)
    else:
        (data_folder("windows") / name).unlink(missing_ok=True)


@made_once
def redis_client() -> redis.Redis:
    """This process's client for what the platform asks Redis directly, made by one thread
    (``made_once``: a second one made by a first request racing another would close its pool
    under it once replaced). redis-py's pool hands each thread a connection of its own, and
    starts afresh in a forked child. Bounded waits: a
    Redis that stops answering costs a request two seconds and a 503 (hitlproject.api), not a
    thread held for as long as the operating system keeps trying."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


def data_folder(name: str) -> Path:
    """A folder of the data directory, made on first use, for what the platform's processes
    share on the embedded default (these counters, ``hitlproject.on_its_way``'s marks)."""
    return _made(Path(settings.DATA_DIR) / name)


@functools.cache
def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _file_hit(path: Path, window: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed
        stored = os.pread(fd, 64, 0).split()
        count = int(stored[1]) + 1 if stored and int(stored[0]) == window else 1
        os.pwrite(fd, RECORD.format(window=window, count=count).encode(), 0)
        return count
    finally:
        os.close(fd)
