"""Whether a task that takes along whatever work is due is already on its way: sent and not yet
started, so that a writer with more of that work need not send another.

A task that starts takes what is due at that moment, so what a writer committed before it
found the task on its way is that task's to take: each writer that finds it so saves a send,
and the worker a task that would find its work taken (under a burst of submissions, nine
delivery tasks in ten found their messages sent by another). The task says it has started
(``started``) before it reads what is due; a writer asks (``send_now``) after its commit.

Shared by every process of the platform, as the broker is, and named by its queue (several
platforms may share a Redis or a data directory): with Redis, one key set if absent with an
expiry of ``stale_after`` (one round trip); on the embedded default, a file under the data
directory created if absent, older than ``stale_after`` counted as absent. Whatever cannot be
asked is answered "send", since a task too many costs a read, and one too few leaves work
waiting; a send that fails forgets its mark.

What it cannot do: a task lost on its way (a worker killed as it took it) leaves the work of
the writers that relied on it to whoever comes next: the next writer once the mark is stale,
whose task takes along everything due, or the sweep of what is overdue.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from django.conf import settings

from hitlproject.celery import app
from hitlproject.windows import data_folder, redis_client

logger = logging.getLogger(__name__)

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")


def send_now(name: str, *, stale_after: float) -> bool:
    """Whether to send the task ``name``: True, and it is marked on its way, unless one sent
    earlier is on its way (marked less than ``stale_after`` seconds ago). A caller that then
    fails to send it says so (``started``), so that the next writer sends."""
    _checked(name)
    try:
        if settings.REDIS_URL:
            return bool(redis_client().set(_key(name), "1", nx=True, px=int(stale_after * 1000)))
        return _file_mark(_mark_file(name), stale_after)
    except Exception as error:  # not knowing, send: a task too many finds nothing to do
        logger.warning("Could not tell whether %s is on its way (%s: %s); sending it.",
                       name, type(error).__name__, error)  # fmt: skip
        return True


def started(name: str) -> None:
    """The task ``name`` has started (or was not sent after all): work committed from now on
    needs another sent."""
    _checked(name)
    try:
        if settings.REDIS_URL:
            redis_client().delete(_key(name))
        else:
            _mark_file(name).unlink(missing_ok=True)
    except Exception as error:  # the mark ages out: writers send again after stale_after
        logger.warning("Could not clear %s's mark (%s: %s).", name, type(error).__name__, error)


def _key(name: str) -> str:
    """The mark of ``name`` sent to this platform's queues (a Redis key, a file's name)."""
    return f"hitl:on-its-way:{app.conf.task_default_queue}:{name}"


def _mark_file(name: str) -> Path:
    return data_folder("on-its-way") / _key(name).replace(os.sep, "_")


def _checked(name: str) -> None:
    if not NAME.fullmatch(name):
        raise ValueError(f"Not a task's mark: {name!r}")


def _file_mark(path: Path, stale_after: float) -> bool:
    for _ in range(2):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return True
        except FileExistsError:
            try:
                if time.time() - path.stat().st_mtime <= stale_after:
                    return False
            except FileNotFoundError:  # the task started meanwhile: mark it afresh
                continue
            path.unlink(missing_ok=True)  # a lost task's: mark it afresh
    return True
