"""Rows held until a transaction ends with a lock lighter than ``select_for_update``'s, which
Django's ORM does not take: ``FOR SHARE`` (nobody changes them meanwhile; others may share
it) or ``FOR KEY SHARE`` (nobody deletes them, or changes their key; the lock a foreign key's
check at commit takes)."""

from collections.abc import Iterable
from typing import Literal, TypeVar

from django.core.exceptions import EmptyResultSet
from django.db import connection, models

ROW_LOCKS = ("SHARE", "KEY SHARE")

M = TypeVar("M", bound=models.Model)


def rows_held(
    model: type[models.Model], ids: Iterable[int], *, lock: Literal["SHARE", "KEY SHARE"]
) -> set[int]:
    """Hold the rows of ``model`` with these ids until the surrounding transaction ends, in
    id order (``FOR <lock>``), and return the ids of those found: one deleted before it was
    held is not. On SQLite a transaction holds the database's one write lock from its start
    (``IMMEDIATE``): nothing changes meanwhile, there is nothing to take, and the ids are
    returned as given."""
    if lock not in ROW_LOCKS:
        raise ValueError(f"A row lock is one of {ROW_LOCKS}, not {lock!r}.")
    ids = sorted(set(ids))
    if not ids or connection.vendor != "postgresql":
        return set(ids)
    table, key = map(connection.ops.quote_name, (model._meta.db_table, model._meta.pk.column))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {key} FROM {table} WHERE {key} = ANY(%s) ORDER BY {key} FOR {lock}", [ids]
        )
        return {row[0] for row in cursor.fetchall()}


def rows_read_held(rows: models.QuerySet[M], *, lock: Literal["SHARE", "KEY SHARE"]) -> list[M]:
    """The rows of ``rows`` (ordered, as it orders them: by id, for locks taken in one
    order), read in one statement that holds them until the surrounding transaction ends
    (``FOR <lock>``), each as it is once held: one a transaction holding it changed is read
    as it committed it. On SQLite, read (nothing to take: see ``rows_held``)."""
    if lock not in ROW_LOCKS:
        raise ValueError(f"A row lock is one of {ROW_LOCKS}, not {lock!r}.")
    if connection.vendor != "postgresql":
        return list(rows)
    try:
        sql, params = rows.query.sql_with_params()
    except EmptyResultSet:  # asked for none (an empty ``IN``)
        return []
    return list(rows.model.objects.raw(f"{sql} FOR {lock}", params))
