"""The test suite's PostgreSQL backend: Django's own, but a test database is emptied between
transactional tests by DELETE, not TRUNCATE.

A transactional test ends with a flush of every table. PostgreSQL's TRUNCATE gives each of the
76 tables and their indexes new files: 0.3 to 2.5 s a flush here, for tables holding a few
rows, which made it the largest part of the suite's time. Deleting those rows takes 30 ms.
The tables are first locked as TRUNCATE locks them (ACCESS EXCLUSIVE, in the same order), so
a flush still waits for a worker's transaction to end, as the suite's teardown expects
(``tests.conftest.worker_settled``); Django's foreign keys are checked at commit, so the order
of the deletes does not matter. A flush that resets sequences or cascades to tables outside
the list is Django's own.

A worker task that read one of the tables before the flush locked it, and then waits on
another the flush holds, is a deadlock: PostgreSQL ends one of the two. The flush sets a long
``deadlock_timeout`` so that the worker's side is ended (``tests.conftest``), but a task that
began waiting before the flush began is checked first, and the flush is ended instead. The
flush is then run again: its transaction rolled back whole, and the task, no longer waiting,
ends.
"""

from django.db import OperationalError
from django.db.backends.postgresql import base, operations
from psycopg import errors

FLUSH_ATTEMPTS = 3


class DatabaseOperations(operations.DatabaseOperations):
    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if not tables or reset_sequences or allow_cascade:
            return super().sql_flush(
                style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        names = [style.SQL_FIELD(self.quote_name(table)) for table in tables]
        return [
            "SET CONSTRAINTS ALL DEFERRED;",
            f"LOCK TABLE {', '.join(names)} IN ACCESS EXCLUSIVE MODE;",
            *(f"{style.SQL_KEYWORD('DELETE FROM')} {name};" for name in names),
        ]

    def execute_sql_flush(self, sql_list):
        for attempt in range(1, FLUSH_ATTEMPTS + 1):
            try:
                return super().execute_sql_flush(sql_list)
            except OperationalError as error:
                deadlock = isinstance(error.__cause__, errors.DeadlockDetected)
                if not deadlock or attempt == FLUSH_ATTEMPTS:
                    raise


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
