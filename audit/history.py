"""Writing many rows at once, with the history ``save()`` would have recorded for each.

django-simple-history's bulk writers send no signals, so the acting actor is passed to them
here rather than found by the receiver that stamps single saves.
"""

import functools
import json
import operator
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from django.db import (
    NotSupportedError,
    connection,
    connections,
    models,
    router,
    transaction,
)
from django.db.models.fields import AutoFieldMixin
from django.utils import timezone
from simple_history.utils import get_change_reason_from_object, get_history_manager_for_model

from audit.actors import Actor

# Up to this many rows go in one INSERT (a round trip); more in a COPY (two, and one more to
# number them if their ids are wanted), which takes many rows at a fraction of the cost (a
# thousand proposals bound into one INSERT cost a quarter of a second more than copied).
COPY_FROM = 50


@functools.cache
def history_manager(model: type[models.Model]):
    """``model``'s history manager, made once: simple-history makes a new manager class at
    every ``Model.history`` (with ``inspect.getmembers``), which costs more than a one-row
    insert."""
    return get_history_manager_for_model(model)


def create_with_history(
    model: type[models.Model],
    objs: Sequence[models.Model],
    *,
    actor: Actor,
    at: datetime | None = None,
) -> list[models.Model]:
    """Insert ``objs`` (their ids set, as ``bulk_create`` sets them) and a "created" history
    record of each, by ``actor``, dated ``at`` (when what they record was done), or now."""
    if not connection.features.can_return_rows_from_bulk_insert:
        # The history records name the rows by their ids.
        raise NotSupportedError("create_with_history needs ids back from bulk inserts.")
    objs = list(objs)
    written = rows_insert(model, objs, ids=True)
    history_insert(
        history_manager(model),
        objs,
        actor=actor,
        date=at or timezone.now(),
        update=False,
        written=written,
    )
    return objs


class Written(NamedTuple):
    """What ``rows_insert`` wrote: each object, in order, its row's database values, in the
    order of ``columns`` (attribute names), and the attributes they were read from."""

    columns: dict[str, int]
    objs: list[models.Model]
    rows: list[list[Any]]
    attributes: list[Sequence[Any]]


def rows_insert(
    model: type[models.Model], objs: Iterable[models.Model], *, ids: bool = False
) -> Written:
    """Insert ``objs`` as ``bulk_create`` would (each field's ``pre_save`` and database value),
    with their ids set on them if ``ids``: a few rows in one ``INSERT`` with the values bound
    by hand (``RETURNING`` the ids, if wanted), on SQLite as many as its limit on a statement's
    parameters takes; on PostgreSQL more than a few in one ``COPY`` (their ids, if wanted,
    taken from the table's sequence first, in one statement). The ORM's ``bulk_create``
    spends most of its time preparing every value through its field and quoting it into an
    array, which a batch of a thousand proposals and their history pays for several times
    over, and a single submission's four inserts on the embedded default (about a tenth of
    its web process's time)."""
    objs = list(objs)
    if not objs:
        return Written({}, [], [], [])
    using = router.db_for_write(model)
    db = connections[using]
    postgresql = db.vendor == "postgresql"
    opts = model._meta
    pk = opts.pk
    generated = isinstance(pk, AutoFieldMixin)
    unnumbered = [obj for obj in objs if obj.pk is None] if generated else []
    all_unnumbered = len(unnumbered) == len(objs)
    copy = postgresql and len(objs) > COPY_FROM
    returning = ids and all_unnumbered and not copy
    mixed = unnumbered and not returning and (ids or not all_unnumbered)
    if db.vendor not in ("postgresql", "sqlite") or (mixed and not postgresql):
        model._default_manager.using(using).bulk_create(objs)
        return Written({}, objs, [[] for _ in objs], [[] for _ in objs])
    if mixed:
        _ids_allocate(db, model, unnumbered)  # before a COPY, or to number them all alike
        unnumbered = []
    fields = [field for field in opts.concrete_fields if not unnumbered or field is not pk]
    texts: dict[int, tuple[Any, str]] = {}  # JSON values written once each (history repeats them)
    values = [_database_value(field, db.vendor) for field in fields]
    rows = [[value(obj, db, texts) for value in values] for obj in objs]
    _rows_write(db, model, fields, rows, copy=copy, numbered=objs if returning else None)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using
    names = [field.attname for field in fields]
    read = operator.attrgetter(*names)  # every attribute at once (one name: the value)
    return Written(
        {name: i for i, name in enumerate(names)},
        objs,
        rows,
        [read(obj) for obj in objs] if len(names) > 1 else [(read(obj),) for obj in objs],
    )


# Fields whose attribute is already what the database takes (psycopg dumps it): the ORM's
# conversions (``to_python``, ``get_prep_value``) give the same value back, at a few
# microseconds a field, which a thousand rows of forty fields feel.
_AS_IS = (models.CharField, models.TextField, models.IntegerField, models.BooleanField)


@functools.cache
def _database_value(field: models.Field, vendor: str) -> Callable[[models.Model, Any, dict], Any]:
    """How to read ``field``'s database value off an object about to be inserted, as
    ``bulk_create`` does (``pre_save``, then ``get_db_prep_save``), for ``COPY``'s text
    format and SQLite's driver: ``read(obj, db, texts)``, where ``texts`` keeps the JSON text
    of values already written, by their id. Made once for each field and database."""
    if _stamps(field):  # auto_now and the like
        return lambda obj, db, texts: field.get_db_prep_save(field.pre_save(obj, True), db)
    return _attribute_value(field, vendor)


@functools.cache
def _attribute_value(field: models.Field, vendor: str) -> Callable[[models.Model, Any, dict], Any]:
    """How to read ``field``'s database value off an object as its attribute has it (no
    ``pre_save``), as ``_database_value`` says. Made once for each field and database."""
    attname = field.attname
    target = field.target_field if field.is_relation else field
    if type(target) is models.JSONField:
        encoder = target.encoder

        def as_json(obj: models.Model, db: Any, texts: dict) -> str | None:
            value = getattr(obj, attname)
            if value is None:  # SQL NULL, as JSONField.get_db_prep_save has it
                return None
            if not isinstance(value, dict | list):  # a lazy text, an expression: as Django has it
                return field.get_db_prep_save(value, db)
            kept = texts.get(id(value))
            if kept is None or kept[0] is not value:
                kept = texts[id(value)] = (value, json.dumps(value, cls=encoder))
            return kept[1]

        return as_json
    if type(target) is models.DateTimeField and vendor == "postgresql":

        def as_datetime(obj: models.Model, db: Any, texts: dict) -> Any:
            value = getattr(obj, attname)
            if value is None or (type(value) is datetime and value.tzinfo is not None):
                return value
            return field.get_db_prep_save(value, db)

        return as_datetime
    if type(target) is models.DecimalField:

        def as_decimal(obj: models.Model, db: Any, texts: dict) -> Any:
            value = getattr(obj, attname)
            return (
                value
                if value is None or type(value) is Decimal
                else field.get_db_prep_save(value, db)
            )

        return as_decimal
    overridden = type(target).get_db_prep_save is not models.Field.get_db_prep_save
    if isinstance(target, _AS_IS) and not overridden:
        plain = (
            bool
            if isinstance(target, models.BooleanField)
            else int
            if isinstance(target, models.IntegerField)
            else str
        )

        def as_is(obj: models.Model, db: Any, texts: dict) -> Any:
            value = getattr(obj, attname)
            if value is None or type(value) is plain:
                return value
            return field.get_db_prep_save(value, db)

        return as_is
    return lambda obj, db, texts: field.get_db_prep_save(getattr(obj, attname), db)


def _stamps(field: models.Field) -> bool:
    """Whether ``field`` sets its value as the row is saved (``pre_save``): a date or time
    with ``auto_now`` or ``auto_now_add``, or a field with a ``pre_save`` of its own. Every
    date and time field has one, which without those options only reads the attribute."""
    if type(field).pre_save in (models.DateField.pre_save, models.DateTimeField.pre_save):
        return field.auto_now or field.auto_now_add
    return type(field).pre_save is not models.Field.pre_save


def _ids_allocate(db: Any, model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Set ids from ``model``'s sequence on ``objs``, in order, with one statement."""
    if not objs:
        return
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)::regclass) FROM generate_series(1, %s)",
            [model._meta.db_table, model._meta.pk.column, len(objs)],
        )
        allocated = sorted(row[0] for row in cursor.fetchall())
    for obj, pk in zip(objs, allocated, strict=True):
        obj.pk = pk


def rows_numbered(model: type[models.Model], objs: Sequence[models.Model]) -> bool:
    """Give ``objs``, about to be inserted (``rows_insert``), their ids from ``model``'s own
    numbering first, in order, with one statement, where a caller must name one before it
    is written (what is written with another names it). In the caller's transaction, which
    on SQLite holds the database's one write lock from its start (``IMMEDIATE``): no other
    writer takes an id meanwhile. False, and none set, on another database."""
    objs = [obj for obj in objs if obj.pk is None]
    if not objs:
        return True
    db = connections[router.db_for_write(model)]
    if db.vendor == "postgresql":
        _ids_allocate(db, model, objs)
        return True
    if db.vendor != "sqlite" or not db.in_atomic_block:
        return False
    table, column = model._meta.db_table, model._meta.pk.column
    with db.cursor() as cursor:
        # AUTOINCREMENT never reuses an id (``sqlite_sequence`` keeps the highest ever given).
        cursor.execute(
            f"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = %s), 0), "
            f'coalesce((SELECT max("{column}") FROM "{table}"), 0))',
            [table],
        )
        (last,) = cursor.fetchone()
    for number, obj in enumerate(objs, start=last + 1):
        obj.pk = number
    return True


def history_records(
    history: models.Manager,
    objs: Sequence[models.Model],
    *,
    actor: Actor,
    date: datetime,
    update: bool,
) -> list[models.Model]:
    """The historical records of ``objs`` by ``actor`` ("created", or "changed" if ``update``),
    as django-simple-history's ``bulk_history_create`` makes them, made but not inserted:
    records by different actors then go to the database in one INSERT (``bulk_create`` on
    ``history.model``)."""
    model = history.model
    stamp = actor.history_stamp()
    tracked = {field.attname for field in model.tracked_fields}
    # Made from their values in the order of the table's columns, as a row read from the
    # database is (``Model.__init__`` with keywords costs more than the insert it is for).
    fields = model._meta.concrete_fields
    defaults = [field.get_default() if field.has_default() else None for field in fields]
    relation = any(field.attname == "history_relation_id" for field in fields)
    records = []
    for obj in objs:
        user = getattr(obj, "_history_user", actor.user or model.get_default_history_user(obj))
        own = {
            "history_date": getattr(obj, "_history_date", date),
            "history_user_id": user.pk if user is not None else None,
            "history_change_reason": get_change_reason_from_object(obj) or "",
            "history_type": "~" if update else "+",
            **stamp,
        }
        if relation:
            own["history_relation_id"] = obj.pk
        records.append(
            model(
                *[
                    getattr(obj, field.attname) if field.attname in tracked
                    else own.get(field.attname, default)
                    for field, default in zip(fields, defaults, strict=True)
                ]
            )
        )  # fmt: skip
    return records


def history_insert(
    history: models.Manager,
    objs: Sequence[models.Model],
    *,
    actor: Actor,
    date: datetime,
    update: bool,
    written: Written | None = None,
) -> None:
    """Insert the historical records ``history_records`` would make of ``objs``, as
    ``rows_insert`` would write them, without making them (``history_rows``)."""
    if not objs:
        return
    if connections[router.db_for_write(history.model)].vendor not in ("postgresql", "sqlite"):
        rows_insert(
            history.model, history_records(history, objs, actor=actor, date=date, update=update)
        )
        return
    history_rows_write(
        history,
        history_rows(history, objs, actor=actor, date=date, update=update, written=written),
    )


def history_rows(
    history: models.Manager,
    objs: Sequence[models.Model],
    *,
    actor: Actor,
    date: datetime,
    update: bool,
    written: Written | None = None,
) -> list[list[Any]]:
    """The database values (``_history_fields``) of the historical records
    ``history_records`` would make of ``objs`` (on PostgreSQL or SQLite), each read off its
    object as ``rows_insert`` would read the record's. Where ``written`` (``rows_insert``'s
    answer for rows just inserted) holds the very value an object has, for the object of the
    same id, it is taken as written: a record of a row just inserted costs no conversion and
    no JSON dumped again (a new proposal's two records were a fifth of a batch's request). A
    value set anew since is read afresh; one changed in place (a dict's key) is not, as
    ``rows_insert`` takes a JSON value it has met once as it was then."""
    model = history.model
    db = connections[router.db_for_write(model)]
    plan = _history_plan(model, db.vendor)
    stamp = actor.history_stamp()
    by_id = (
        {
            obj.pk: (row, attributes)
            for obj, row, attributes in zip(
                written.objs, written.rows, written.attributes, strict=True
            )
        }
        if written
        else {}
    )
    # Where each tracked value sits in a row ``rows_insert`` wrote (None: not written there).
    at_written = [written.columns.get(name) if written else None for name in plan.tracked_names]
    own = _Own()
    texts: dict[int, tuple[Any, str]] = {}
    # The user of the records whose objects name none: the actor's, else the one the
    # model's ``get_user`` finds (audit.models.history_user: the current actor's or the
    # request's, read from the thread, not from the object), found once.
    default_user: Any = _UNSET
    rows = []
    for obj in objs:
        user = getattr(obj, "_history_user", _UNSET)
        if user is _UNSET:
            if default_user is _UNSET:
                default_user = actor.user or model.get_default_history_user(obj)
            user = default_user
        own.__dict__.update(
            plan.defaults,
            history_date=getattr(obj, "_history_date", date),
            history_user_id=user.pk if user is not None else None,
            history_change_reason=get_change_reason_from_object(obj) or "",
            history_type="~" if update else "+",
            history_relation_id=obj.pk,
            **stamp,
        )
        written_row, was = by_id.get(obj.pk, (None, None))
        values = plan.tracked_values(obj)
        if was is None:
            tracked = [read(obj, db, texts) for read in plan.tracked_readers]
        else:
            tracked = [
                written_row[at] if at is not None and value is was[at] else read(obj, db, texts)
                for value, read, at in zip(values, plan.tracked_readers, at_written, strict=True)
            ]
        tracked += [read(own, db, texts) for read in plan.own_readers]
        rows.append(plan.in_column_order(tracked))
    return rows


class _HistoryPlan(NamedTuple):
    """How ``history_rows`` reads a historical model's columns (``_history_fields``): the
    tracked fields' names, a reader of their values off an object at once, and each one's
    database value; the record's own fields' readers and defaults; and the order that puts
    the tracked values, then the own ones, back in the columns' order."""

    tracked_names: list[str]
    tracked_values: Callable[[Any], tuple[Any, ...]]
    tracked_readers: list[Callable[[models.Model, Any, dict], Any]]
    own_readers: list[Callable[[models.Model, Any, dict], Any]]
    defaults: dict[str, Any]
    in_column_order: Callable[[list[Any]], list[Any]]


@functools.cache
def _history_plan(model: type[models.Model], vendor: str) -> _HistoryPlan:
    fields = _history_fields(model)
    tracked = {field.attname for field in model.tracked_fields}
    tracked_fields = [field for field in fields if field.attname in tracked]
    own_fields = [field for field in fields if field.attname not in tracked]
    names = [field.attname for field in tracked_fields]
    getter = operator.attrgetter(*names)
    position = {id(field): i for i, field in enumerate(tracked_fields + own_fields)}
    order = [position[id(field)] for field in fields]
    pick = operator.itemgetter(*order)
    return _HistoryPlan(
        tracked_names=names,
        tracked_values=getter if len(names) > 1 else lambda obj: (getter(obj),),
        tracked_readers=[_attribute_value(field, vendor) for field in tracked_fields],
        own_readers=[_attribute_value(field, vendor) for field in own_fields],
        defaults={
            field.attname: field.get_default() if field.has_default() else None
            for field in own_fields
        },
        in_column_order=(lambda row: list(pick(row))) if len(order) > 1 else list,
    )


_UNSET = object()


def history_rows_write(history: models.Manager, rows: list[list[Any]]) -> None:
    """Write ``history_rows``' rows, in one statement."""
    if rows:
        model = history.model
        db = connections[router.db_for_write(model)]
        copy = db.vendor == "postgresql" and len(rows) > COPY_FROM
        _rows_write(db, model, _history_fields(model), rows, copy=copy)


@functools.cache
def _history_fields(model: type[models.Model]) -> list[models.Field]:
    """A historical model's columns as its records are written: all but the id the database
    gives each."""
    pk = model._meta.pk
    return [
        field
        for field in model._meta.concrete_fields
        if not (field is pk and isinstance(pk, AutoFieldMixin))
    ]


def _rows_write(
    db: Any,
    model: type[models.Model],
    fields: Sequence[models.Field],
    rows: list[list[Any]],
    *,
    copy: bool,
    numbered: Sequence[models.Model] | None = None,
) -> None:
    """Write ``rows`` (each the database values of ``fields``) to ``model``'s table: in
    INSERTs (on SQLite as many rows to one as its limit on parameters takes), ``RETURNING``
    the ids the database gave them, set on ``numbered``'s objects in order, if given; or,
    with ``copy`` (PostgreSQL), in one ``COPY``."""
    quote = db.ops.quote_name
    pk = model._meta.pk
    table = f"{quote(model._meta.db_table)} ({', '.join(quote(field.column) for field in fields)})"
    with db.cursor() as cursor:
        if not copy:
            placeholders = f"({', '.join(['%s'] * len(fields))})"
            size = len(rows) if db.vendor == "postgresql" else db.ops.bulk_batch_size(fields, rows)
            for start in range(0, len(rows), size):
                batch = rows[start : start + size]
                cursor.execute(
                    f"INSERT INTO {table} VALUES {', '.join([placeholders] * len(batch))}"
                    + (f" RETURNING {quote(pk.column)}" if numbered is not None else ""),
                    [value for row in batch for value in row],
                )
                if numbered is not None:  # in the order of the rows, as bulk_create relies on
                    numbers = cursor.fetchall()
                    for obj, (number,) in zip(numbered[start : start + size], numbers, strict=True):
                        obj.pk = number
        else:
            started = time.monotonic()
            sql = f"COPY {table} FROM STDIN"
            with cursor.cursor.copy(sql) as copy_in:
                for row in rows:
                    copy_in.write_row(row)
            if db.queries_logged:  # as the cursor logs a statement (bin/bench counts them)
                db.queries_log.append(
                    {
                        "sql": f"{sql} ({len(rows)} rows)",
                        "time": f"{time.monotonic() - started:.3f}",
                    }
                )


class _Own:
    """A historical record's own values (when, by whom, why), read as an object's are."""


def update_with_history(
    model: type[models.Model],
    changes: Sequence[tuple[models.Model, Mapping[str, Any]]],
    *,
    actor: Actor,
    records: Sequence[models.Model] | None = None,
    at: datetime | None = None,
) -> None:
    """Write each object's changed fields, already set on it, and nothing else
    (``rows_update``): one UPDATE for all the objects changed alike, so a set of rows moved
    the same way takes one statement. Then, in one INSERT, a "changed" history record of
    each, by ``actor``, with the object's ``_change_reason``; or ``records``, where an object
    went through several states in the transaction: each a copy of an object as it was after
    one of them, with its ``_change_reason`` and ``_history_date``, in the order they
    happened. The records are dated ``at`` (when the change was made), or now."""
    by_fields: dict[tuple[str, ...], list[models.Model]] = {}
    for obj, fields in changes:
        by_fields.setdefault(tuple(sorted(fields)), []).append(obj)
    with transaction.atomic(savepoint=False):
        for names, objs in by_fields.items():
            if names:
                rows_update(model, objs, names)
        history_insert(
            history_manager(model),
            [obj for obj, _ in changes] if records is None else records,
            actor=actor,
            date=at or timezone.now(),
            update=True,
        )


def update_alike_with_history(
    model: type[models.Model],
    objs: Sequence[models.Model],
    names: Sequence[str],
    *,
    actor: Actor,
    date: datetime | None = None,
) -> None:
    """What ``update_with_history`` writes of objects whose fields ``names`` are set alike
    (the same values on each) and whose ``_change_reason`` is the same: on PostgreSQL, the
    rows and their "changed" records in one statement, the records copied from the rows as
    written (as ``update_with_history_where`` does), so that however many there are, the
    statement is one and no record is made in Python. An object that names a user or date
    of its own for its record, or a set of one, goes through ``update_with_history``."""
    objs = list(objs)
    if not objs:
        return
    db = connections[router.db_for_write(model)]
    reasons = {get_change_reason_from_object(obj) or "" for obj in objs}
    own = any(hasattr(obj, "_history_user") or hasattr(obj, "_history_date") for obj in objs)
    if db.vendor != "postgresql" or len(objs) == 1 or len(reasons) > 1 or own:
        update_with_history(model, [(obj, dict.fromkeys(names)) for obj in objs], actor=actor)
        return
    first = objs[0]
    opts = model._meta
    quote = db.ops.quote_name
    table = quote(opts.db_table)
    fields = [opts.get_field(name) for name in names]
    row = [_attribute_value(field, db.vendor)(first, db, {}) for field in fields]
    source = (
        f"UPDATE {table} SET "
        + ", ".join(f"{quote(field.column)} = %s" for field in fields)
        + f" WHERE {table}.{quote(opts.pk.column)} = ANY(%s) RETURNING {table}.*"
    )
    # The user ``history_rows`` would name: the actor's, else the one the model finds.
    user = actor.user or history_manager(model).model.get_default_history_user(first)
    sql, history_params = _history_sql(
        model,
        source,
        actor=actor,
        date=date or timezone.now(),
        history_type="~",
        reason=reasons.pop(),
        user_id=user.pk if user is not None else None,
    )
    with db.cursor() as cursor:
        cursor.execute(sql, [*row, [obj.pk for obj in objs], *history_params])


def rows_update(
    model: type[models.Model], objs: Sequence[models.Model], names: Sequence[str]
) -> None:
    """Write the fields ``names``, as set on each of ``objs``, to their rows, with the values
    bound by hand (as ``rows_insert`` does, and as neither ``QuerySet.update`` nor
    ``bulk_update`` would: a notification's six fields changed on twenty rows cost
    ``bulk_update`` a ``CASE`` of twenty ``WHEN``s per field, 2 ms in building alone). The
    objects whose fields took the same values take one UPDATE of their ids; each of the rest
    an UPDATE of its own, sent together (``executemany``). Nothing is stamped: an
    ``auto_now`` field is written as set, as ``update()`` leaves it."""
    if not objs:
        return
    db = connections[router.db_for_write(model)]
    if db.vendor not in ("postgresql", "sqlite"):
        model._default_manager.using(db.alias).bulk_update(objs, list(names))
        return
    opts = model._meta
    fields = [opts.get_field(name) for name in names]
    values = [_attribute_value(field, db.vendor) for field in fields]
    texts: dict[int, tuple[Any, str]] = {}
    alike: dict[tuple, list[Any]] = {}
    for obj in objs:
        alike.setdefault(tuple(value(obj, db, texts) for value in values), []).append(obj.pk)
    quote = db.ops.quote_name
    update = (
        f"UPDATE {quote(opts.db_table)} SET "
        + ", ".join(f"{quote(field.column)} = %s" for field in fields)
        + f" WHERE {quote(opts.pk.column)}"
    )
    each = [[*row, pks[0]] for row, pks in alike.items() if len(pks) == 1]
    size = db.ops.bulk_batch_size([opts.pk], objs) if db.vendor == "sqlite" else len(objs)
    with db.cursor() as cursor:
        for row, pks in alike.items():
            for start in range(0, len(pks), size) if len(pks) > 1 else ():
                chunk = pks[start : start + size]
                cursor.execute(f"{update} IN ({', '.join(['%s'] * len(chunk))})", [*row, *chunk])
        if each:
            cursor.executemany(f"{update} = %s", each)


def _history_sql(
    model: type[models.Model],
    source: str,
    *,
    actor: Actor,
    date: datetime,
    history_type: str,
    reason: str,
    user_id: Any = _UNSET,
) -> tuple[str, list]:
    """``source`` (an INSERT or UPDATE of ``model``'s table ``RETURNING`` its rows) and a
    historical record of each row it returns, in one statement: PostgreSQL runs a data-changing
    ``WITH`` once, and the records are copied from the rows as they were written."""
    history = history_manager(model)
    historical = history.model
    tracked = {field.attname for field in historical.tracked_fields}
    own = {
        "history_date": date,
        "history_change_reason": reason,
        "history_type": history_type,
        "history_user_id": (actor.user.pk if actor.user is not None else None)
        if user_id is _UNSET
        else user_id,
        **actor.history_stamp(),
    }
    quote = connection.ops.quote_name
    columns, values, params = [], [], []
    for field in historical._meta.concrete_fields:
        if field.attname == "history_id":
            continue
        columns.append(quote(field.column))
        if field.attname in tracked:
            values.append(f"made.{quote(model._meta.get_field(field.name).column)}")
        else:
            values.append("%s")
            params.append(own.get(field.attname, field.get_default()))
    sql = (
        f"WITH made AS ({source}) "
        f"INSERT INTO {quote(historical._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM made RETURNING {quote(model._meta.pk.column)}"
    )
    return sql, params


def insert_with_history(
    model: type[models.Model],
    objs: Sequence[models.Model],
    *,
    actor: Actor,
    reason: str = "",
    ignore_conflicts: bool = False,
) -> list[int]:
    """Insert ``objs`` (numbered by the database) and a "created" record of each, by
    ``actor``: on PostgreSQL in the one statement the rows alone took (a data-changing
    ``WITH``), so that a path that already wrote them pays nothing more for their history.
    Rows that ``ignore_conflicts`` leaves out get no record. Returns the ids inserted, in no
    particular order."""
    objs = list(objs)
    if not objs:
        return []
    date = timezone.now()
    db = connections[router.db_for_write(model)]
    if db.vendor != "postgresql":
        for obj in objs:
            obj._change_reason = reason
        written = None
        if ignore_conflicts:
            objs = _inserted_unless_conflicting(db, model, objs)
        else:
            written = rows_insert(model, objs, ids=True)
        history_insert(
            history_manager(model), objs, actor=actor, date=date, update=False, written=written
        )
        return [obj.pk for obj in objs]
    opts = model._meta
    fields = [field for field in opts.concrete_fields if field is not opts.pk]
    texts: dict[int, tuple[Any, str]] = {}
    readers = [_database_value(field, db.vendor) for field in fields]
    quote = db.ops.quote_name
    total = []
    for start in range(0, len(objs), INSERT_WITH_HISTORY_ROWS):
        chunk = objs[start : start + INSERT_WITH_HISTORY_ROWS]
        row = f"({', '.join(['%s'] * len(fields))})"
        source = (
            f"INSERT INTO {quote(opts.db_table)} "
            f"({', '.join(quote(field.column) for field in fields)}) "
            f"VALUES {', '.join([row] * len(chunk))}"
            + (" ON CONFLICT DO NOTHING" if ignore_conflicts else "")
            + " RETURNING *"
        )
        sql, params = _history_sql(
            model, source, actor=actor, date=date, history_type="+", reason=reason
        )
        with db.cursor() as cursor:
            cursor.execute(
                sql, [read(obj, db, texts) for obj in chunk for read in readers] + params
            )
            total += [pk for (pk,) in cursor.fetchall()]
    return total


def _inserted_unless_conflicting(
    db: Any, model: type[models.Model], objs: Sequence[models.Model]
) -> list[models.Model]:
    """Insert each of ``objs`` that conflicts with no row, numbered by the database (SQLite:
    an ``INSERT`` of its own each, whose ``RETURNING`` says whether it went in, since of a
    multi-row insert SQLite would not say which rows it left out). Returns those inserted."""
    opts = model._meta
    fields = [field for field in opts.concrete_fields if field is not opts.pk]
    readers = [_database_value(field, db.vendor) for field in fields]
    quote = db.ops.quote_name
    sql = (
        f"INSERT INTO {quote(opts.db_table)} "
        f"({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT DO NOTHING RETURNING {quote(opts.pk.column)}"
    )
    inserted = []
    with db.cursor() as cursor:
        for obj in objs:
            cursor.execute(sql, [read(obj, db, {}) for read in readers])
            row = cursor.fetchone()
            if row is not None:
                obj.pk = row[0]
                obj._state.adding, obj._state.db = False, db.alias
                inserted.append(obj)
    return inserted


# Rows in one statement of ``insert_with_history``: well within PostgreSQL's 65,535 bound
# parameters for a table of a few dozen columns.
INSERT_WITH_HISTORY_ROWS = 1000


def update_with_history_where(
    queryset: models.QuerySet, values: Mapping[str, Any], *, actor: Actor, reason: str = ""
) -> list[int]:
    """Set ``values`` on the rows of ``queryset`` and write a "changed" record of each, by
    ``actor``: on PostgreSQL in one statement, as the update alone took. Returns the ids of
    the rows changed (none: nothing was written). A row changed by another transaction while
    this one waited for it is updated only if it still matches ``queryset`` (a conditional
    update, as a callback's end of attempt under its lease, holds under concurrency)."""
    model = queryset.model
    date = timezone.now()
    db = connections[queryset.db]
    if db.vendor != "postgresql":
        with transaction.atomic(using=db.alias, savepoint=False):
            ids = list(queryset.select_for_update().values_list("pk", flat=True))
            if not ids:
                return []
            model._default_manager.filter(pk__in=ids).update(**values)
            objs = list(model._default_manager.filter(pk__in=ids))
            for obj in objs:
                obj._change_reason = reason
            history_insert(history_manager(model), objs, actor=actor, date=date, update=True)
        return ids
    opts = model._meta
    quote = db.ops.quote_name
    table = quote(opts.db_table)
    assignments, params = [], []
    for name, value in values.items():
        field = opts.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, db))
    # The rows chosen locked by the subquery: PostgreSQL then reads each again, once the
    # transaction that held it has ended, and leaves out one that no longer matches. Without
    # the lock, the subquery's conditions are not checked again: a row another transaction
    # changed meanwhile was overwritten, and recorded, as though it still matched.
    with transaction.atomic(using=db.alias, savepoint=False):
        chosen = queryset.select_for_update(of=("self",)).values("pk")
        where, where_params = chosen.query.sql_with_params()
        source = (
            f"UPDATE {table} SET {', '.join(assignments)} "
            f"WHERE {table}.{quote(opts.pk.column)} IN ({where}) RETURNING {table}.*"
        )
        sql, history_params = _history_sql(
            model, source, actor=actor, date=date, history_type="~", reason=reason
        )
        with db.cursor() as cursor:
            cursor.execute(sql, [*params, *where_params, *history_params])
            return [pk for (pk,) in cursor.fetchall()]
