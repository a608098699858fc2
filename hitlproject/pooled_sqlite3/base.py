"""Django's SQLite backend for the embedded default: connections kept for the next request or
task, and writers queued for SQLite's one write lock, the web server's first.

Connections. Django opens a connection per request (CONN_MAX_AGE 0: the web server runs each
request in a thread of its own, which a connection kept per thread would not outlive) and per
Celery task. A new SQLite connection costs about 3 ms before its first query returns, most of
it reading the schema, every time; one that has already run a query answers the next in
microseconds. So a connection that Django closes goes back to a small pool in its process, and
the next connection Django opens takes it from there. A connection goes back only when it is
idle (no transaction open, not closed from inside an atomic block). One opened by another
process (the parent of a forked worker) is never reused: SQLite connections must not cross a
fork. Foreign keys are enforced again on one taken from the pool, in case whoever had it turned
them off (Django does, to load fixtures).

Write turns. Every transaction is IMMEDIATE (hitlproject.settings): it takes SQLite's write
lock at BEGIN. A connection that finds it taken sleeps and retries (SQLite's busy handler,
backing off to 100 ms a try), so a newcomer often gets in before one that has waited long, and
waits grow to seconds. Instead, before BEGIN a writer takes its turn: first among the threads
of its process (a lock), then among processes, by an exclusive flock on a file beside the
database, tried every millisecond. The web server's writers go first: while one of them waits
(it holds a shared flock on a second file), the worker's writers hold back, so an agent's
request never waits behind a queue of background tasks; the worker catches up whenever the web
server pauses. SQLite's lock still guarantees one writer at a time (and makes anything outside
this scheme, such as a management command, wait as before); the turns only order the waiting,
and are let go with the transaction however it ends. A turn not had within the connection's
timeout is "database is locked", as SQLite would say.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from django.db import OperationalError
from django.db.backends.sqlite3 import base
from django.utils.asyncio import async_unsafe

IDLE_CONNECTIONS_KEPT = 8
RETRY_SECONDS = 0.001


def writes_give_way() -> None:
    """This process's writers let the web server's go first (the Celery worker calls it)."""
    _Turns.background = True


@dataclass
class _Turns:
    """One database's write turns in this process: the threads' lock, and the files that
    order the processes."""

    background = False  # whether this process is the worker (class-wide)

    threads: threading.Lock = field(default_factory=threading.Lock)
    turn_file: int = -1  # flocked exclusively by the writer whose turn it is
    waiting_file: int = -1  # flocked shared by the web server's writers while they wait

    @classmethod
    def beside(cls, database: str) -> _Turns:
        def opened(suffix: str) -> int:
            return os.open(f"{database}-{suffix}", os.O_RDWR | os.O_CREAT, 0o600)

        return cls(turn_file=opened("write-turn"), waiting_file=opened("writer-waiting"))

    def take(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if not self.threads.acquire(timeout=timeout):
            raise OperationalError("database is locked")
        try:
            if self.background:
                self._take_after_the_web_server(deadline)
            else:
                fcntl.flock(self.waiting_file, fcntl.LOCK_SH)
                try:
                    _flock_by(self.turn_file, deadline)
                finally:
                    fcntl.flock(self.waiting_file, fcntl.LOCK_UN)
        except BaseException:
            self.threads.release()
            raise

    def _take_after_the_web_server(self, deadline: float) -> None:
        while True:
            _flock_by(self.waiting_file, deadline)  # no web server writer is waiting
            fcntl.flock(self.waiting_file, fcntl.LOCK_UN)
            try:
                fcntl.flock(self.turn_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                _pause_until(deadline)

    def give_up(self) -> None:
        fcntl.flock(self.turn_file, fcntl.LOCK_UN)
        self.threads.release()


def _flock_by(fd: int, deadline: float) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            _pause_until(deadline)


def _pause_until(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise OperationalError("database is locked")
    time.sleep(RETRY_SECONDS)


class _PerProcess:
    """Idle connections and write turns, per database file; forgotten in a forked child."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.idle: dict[str, list[sqlite3.Connection]] = {}
        self.turns: dict[str, _Turns] = {}

    def _current(self) -> None:
        if self.pid != os.getpid():  # forked: what is here belongs to the parent
            self.pid, self.idle, self.turns = os.getpid(), {}, {}

    def take(self, database: str) -> sqlite3.Connection | None:
        with self.lock:
            self._current()
            connections = self.idle.get(database)
            return connections.pop() if connections else None

    def give_back(self, database: str, connection: sqlite3.Connection) -> bool:
        with self.lock:
            self._current()
            connections = self.idle.setdefault(database, [])
            if len(connections) >= IDLE_CONNECTIONS_KEPT:
                return False
            connections.append(connection)
            return True

    def write_turns(self, database: str) -> _Turns:
        with self.lock:
            self._current()
            if database not in self.turns:
                self.turns[database] = _Turns.beside(database)
            return self.turns[database]


_process = _PerProcess()


class _Connection(sqlite3.Connection):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.opened_by = os.getpid()


class DatabaseWrapper(base.DatabaseWrapper):
    _turns: _Turns | None = None  # while this connection's transaction has the write turn

    def get_connection_params(self):
        return {**super().get_connection_params(), "factory": _Connection}

    @async_unsafe
    def get_new_connection(self, conn_params):
        kept = _process.take(conn_params["database"])
        if kept is None:
            return super().get_new_connection(conn_params)
        kept.execute("PRAGMA foreign_keys = ON")
        return kept

    def _close(self):
        self._end_write_turn()
        connection = self.connection
        if (
            connection is None
            or self.in_atomic_block
            or connection.in_transaction
            or connection.opened_by != os.getpid()
            or self.is_in_memory_db()
            or not _process.give_back(self.settings_dict["NAME"], connection)
        ):
            return super()._close()
        return None

    def _start_transaction_under_autocommit(self):
        if (
            self.transaction_mode not in ("IMMEDIATE", "EXCLUSIVE")
            or self._turns is not None
            or self.is_in_memory_db()
        ):
            return super()._start_transaction_under_autocommit()
        turns = _process.write_turns(self.settings_dict["NAME"])
        turns.take(timeout=self.settings_dict["OPTIONS"].get("timeout", 5))
        self._turns = turns
        try:
            return super()._start_transaction_under_autocommit()
        except BaseException:
            self._end_write_turn()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._end_write_turn()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._end_write_turn()

    def _end_write_turn(self) -> None:
        turns, self._turns = self._turns, None
        if turns is not None:
            turns.give_up()
