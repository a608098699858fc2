"""The suite's own PostgreSQL backend (``tests.postgresql_emptied_by_delete``): a flush that
PostgreSQL ends in a deadlock with a worker's transaction is run again, so the test's rows are
gone for the next test, and the worker's transaction ends as it would have."""

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


def test_a_flush_ended_by_a_deadlock_with_a_worker_runs_again_and_empties_the_tables():
    Group.objects.create(name="Flushed")
    Session.objects.create(session_key="k" * 32, session_data="", expire_date=timezone.now())
    first, last = Group._meta.db_table, Session._meta.db_table
    granted = Group.permissions.through._meta.db_table
    flush = connection.ops.sql_flush(no_style(), [first, granted, last])
    worker_read_last = threading.Event()
    worker_ended = []

    def worker():
        # A task's transaction: it read one table, the flush locks the other, and the task
        # asks for the flush's table while the flush waits for the task's.
        params = connection.get_connection_params()
        with psycopg.connect(**params, autocommit=False) as other:
            other.execute("SET deadlock_timeout = '30s'")
            other.execute(f'SELECT count(*) FROM "{last}"')
            worker_read_last.set()
            wait_until(lambda: waiting_for_a_lock(other), timeout=10, interval=0.02)
            other.execute(f'SELECT count(*) FROM "{first}"')
            other.commit()
            worker_ended.append(True)

    thread = threading.Thread(target=worker)
    thread.start()
    worker_read_last.wait(10)
    connection.ops.execute_sql_flush(flush)
    thread.join(15)

    assert worker_ended == [True]
    assert not Group.objects.exists()
    assert not Session.objects.exists()


def waiting_for_a_lock(other) -> bool:
    return bool(
        other.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        ).fetchone()[0]
    )
