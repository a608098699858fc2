"""The embedded default's database (SQLite through hitlproject.pooled_sqlite3): writers from
several processes and threads each get their turn, one at a time, and a connection kept for
the next request comes back as a new one would."""

import multiprocessing
import threading

import pytest
from django.db import connection, connections, transaction

from hitlproject.pooled_sqlite3.base import writes_give_way
from tests.spawned import django_ready

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="the embedded default")

PROCESSES, THREADS, TRANSACTIONS = 3, 4, 25


def count_up(background: bool, failures) -> None:
    """In a process of its own: threads adding one to the counter, each in its own
    transaction, reading it and writing it back (a lost turn would lose an addition)."""
    django_ready()
    if background:
        writes_give_way()  # as the worker does

    def add() -> None:
        try:
            for _ in range(TRANSACTIONS):
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute("SELECT value FROM test_turns_counter")
                    (value,) = cursor.fetchone()
                    cursor.execute("UPDATE test_turns_counter SET value = %s", [value + 1])
                connection.close()  # back to the pool, as at the end of a request
        except Exception as error:
            failures.put(repr(error))

    threads = [threading.Thread(target=add) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.django_db(transaction=True)
def test_writers_in_several_processes_and_threads_each_get_their_turn(monkeypatch):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE test_turns_counter (value integer NOT NULL)")
        cursor.execute("INSERT INTO test_turns_counter (value) VALUES (0)")
    # Spawned, never forked (tests.spawned says why): each sets Django up on the test database.
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{connection.settings_dict['NAME']}")
    connections.close_all()
    spawn = multiprocessing.get_context("spawn")
    failures = spawn.Queue()
    processes = [
        spawn.Process(target=count_up, args=(number == 0, failures)) for number in range(PROCESSES)
    ]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
        assert [process.exitcode for process in processes] == [0] * PROCESSES
        assert failures.empty(), failures.get()
        with connection.cursor() as cursor:
            cursor.execute("SELECT value FROM test_turns_counter")
            assert cursor.fetchone()[0] == PROCESSES * THREADS * TRANSACTIONS
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE test_turns_counter")


@pytest.mark.django_db(transaction=True)
def test_a_kept_connection_enforces_foreign_keys_again():
    connection.ensure_connection()
    kept = connection.connection
    connection.disable_constraint_checking()  # as loading fixtures does
    connection.close()

    connection.ensure_connection()
    assert connection.connection is kept  # the same connection, taken from the pool
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA foreign_keys")
        assert cursor.fetchone()[0] == 1
