"""The suite's own PostgreSQL backend (``tests.postgresql_emptied_by_delete``): a flush that
finds a table held by a worker's transaction never waits for it while holding another, so
neither is ended as a deadlock, whichever of the two PostgreSQL's deadlock check would have
ended; the worker's transaction ends as it would have, and the flush then empties the tables
for the next test."""

import threading

import psycopg
import pytest
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.core.management.color import no_style
from django.db import connection
from django.utils import timezone

from tests.conftest import wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the PostgreSQL backend's"),
]


@pytest.mark.parametrize(
    ("flush_patience", "worker_patience"),
    [
        ("30s", "1s"),  # as the teardown had it: the worker's transaction would be ended
        ("1s", "30s"),  # the flush would be ended, and the test's rows left
    ],
)
def test_a_flush_and_a_worker_reading_its_tables_end_no_transaction(
    flush_patience, worker_patience
):
    Group.objects.create(name="Flushed")
    Session.objects.create(session_key="k" * 32, session_data="", expire_date=timezone.now())
    first, last = Group._meta.db_table, Session._meta.db_table
    granted = Group.permissions.through._meta.db_table
    flush = connection.ops.sql_flush(no_style(), [first, granted, last])
    worker_read_last = threading.Event()
    flush_pid = []
    worker_ended = []

    def worker():
        # A task's transaction: it read the flush's last table, and once the flush has asked
        # for it, the task reads the flush's first.
        params = connection.get_connection_params()
        try:
            with psycopg.connect(**params, autocommit=False) as other:
                other.execute(f"SET deadlock_timeout = '{worker_patience}'")
                other.execute(f'SELECT count(*) FROM "{last}"')
                worker_read_last.set()
                wait_until(lambda: flush_found_it_held(other, flush_pid), timeout=10, interval=0.02)
                other.execute(f'SELECT count(*) FROM "{first}"')
                other.commit()
                worker_ended.append("committed")
        except psycopg.Error as error:
            worker_ended.append(type(error).__name__)

    with connection.cursor() as cursor:
        cursor.execute(f"SET deadlock_timeout = '{flush_patience}'")
    flush_pid.append(connection.connection.info.backend_pid)
    thread = threading.Thread(target=worker)
    thread.start()
    try:
        worker_read_last.wait(10)
        with CountedDeadlocks() as deadlocks:
            connection.ops.execute_sql_flush(flush)
    finally:
        thread.join(15)
        with connection.cursor() as cursor:
            cursor.execute("RESET deadlock_timeout")

    assert worker_ended == ["committed"]
    assert deadlocks.count == 0
    assert not Group.objects.exists()
    assert not Session.objects.exists()


def flush_found_it_held(other, flush_pid: list[int]) -> bool:
    """Whether the flush has asked for the table the worker holds: it waits for it, or, not
    waiting for a lock while holding others, it looks for who holds it."""
    other.execute("SELECT pg_stat_clear_snapshot()")  # read anew in its transaction
    row = other.execute(
        "SELECT wait_event_type = 'Lock' OR query LIKE '%%pg_locks%%' "
        "FROM pg_stat_activity WHERE pid = %s",
        flush_pid,
    ).fetchone()
    return bool(row and row[0])


class CountedDeadlocks:
    """The deadlocks PostgreSQL detected on this database meanwhile (``pg_stat_database``,
    its statistics flushed first): one the flush survived by running again is counted too."""

    def _read(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_force_next_flush()")
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            )
            return cursor.fetchone()[0]

    def __enter__(self):
        self.before = self._read()
        return self

    def __exit__(self, *exc):
        self.count = self._read() - self.before
