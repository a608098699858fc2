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
"""

from django.db.backends.postgresql import base, operations


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


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
