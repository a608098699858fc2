"""The test suite's PostgreSQL backend: Django's own, but a test database is emptied between
transactional tests by DELETE, not TRUNCATE.

A transactional test ends with a flush of every table. PostgreSQL's TRUNCATE gives each of the
76 tables and their indexes new files: 0.3 to 2.5 s a flush here, for tables holding a few
rows, which made it the largest part of the suite's time. Deleting those rows takes 30 ms.
The tables are first locked as TRUNCATE locks them (ACCESS EXCLUSIVE, in the same order);
Django's foreign keys are checked at commit, so the order of the deletes does not matter. A
flush that resets sequences or cascades to tables outside the list is Django's own.

The flush never waits for a lock while holding others (``NOWAIT``): a worker task still in a
transaction when the test ends (one the test never waited for, or one that began after the
teardown found the worker idle) holds a table's lock, and may ask for another; had the flush
waited for the first while holding the second, each waited for the other, PostgreSQL ended
one of the two, and when it was the flush the test's rows were left for the next test to
read. Now a table held by someone else ends the attempt at once, rolled back whole (the task
waiting on it goes on); the flush waits, holding nothing, until no other session of the test
database holds a lock, and tries again. A transaction that holds one for a minute fails the
flush, naming what it runs.
"""

import time

from django.db import OperationalError
from django.db.backends.postgresql import base, operations
from psycopg import errors

# How long a flush waits for other sessions' transactions to end, in all.
FLUSH_PATIENCE = 60

# The sessions of this database, other than this one, that hold a lock on a table, and what
# each runs.
LOCK_HOLDERS = """
    SELECT DISTINCT a.pid, a.state, left(a.query, 200)
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.granted AND l.relation IS NOT NULL AND l.pid <> pg_backend_pid()
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if not tables or reset_sequences or allow_cascade:
            return super().sql_flush(
                style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        names = [style.SQL_FIELD(self.quote_name(table)) for table in tables]
        return [
            "SET CONSTRAINTS ALL DEFERRED;",
            f"LOCK TABLE {', '.join(names)} IN ACCESS EXCLUSIVE MODE NOWAIT;",
            *(f"{style.SQL_KEYWORD('DELETE FROM')} {name};" for name in names),
        ]

    def execute_sql_flush(self, sql_list):
        deadline = time.monotonic() + FLUSH_PATIENCE
        while True:
            try:
                return super().execute_sql_flush(sql_list)
            except OperationalError as error:
                if not isinstance(error.__cause__, errors.LockNotAvailable):
                    raise
                holders = self.lock_holders_gone(deadline)
                if holders:
                    raise OperationalError(
                        f"The test database was not emptied: after {FLUSH_PATIENCE} s, other "
                        f"sessions still hold its tables: {holders}"
                    ) from error

    def lock_holders_gone(self, deadline: float) -> list[tuple]:
        """Wait, holding nothing, until no other session holds a lock on a table of this
        database, or ``deadline`` passes; those that still do then."""
        with self.connection.cursor() as cursor:
            while True:
                cursor.execute(LOCK_HOLDERS)
                holders = cursor.fetchall()
                if not holders or time.monotonic() > deadline:
                    return holders
                time.sleep(0.01)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
