"""Writing many rows at once, with the history ``save()`` would have recorded for each.

django-simple-history's bulk writers send no signals, so the acting actor is passed to them
here rather than found by the receiver that stamps single saves.
"""

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import NotSupportedError, connection, models, transaction
from simple_history.utils import (
    bulk_create_with_history,
    get_change_reason_from_object,
    get_history_manager_for_model,
)

from audit.actors import Actor


def create_with_history(
    model: type[models.Model], objs: Sequence[models.Model], *, actor: Actor
) -> list[models.Model]:
    """Insert ``objs`` (their ids set, as ``bulk_create`` sets them) and a "created" history
    record of each, by ``actor``."""
    if not connection.features.can_return_rows_from_bulk_insert:
        # simple-history would look the new rows up by their values instead.
        raise NotSupportedError("create_with_history needs ids back from bulk inserts.")
    return bulk_create_with_history(
        objs, model, default_user=actor.user, custom_historical_attrs=actor.history_stamp()
    )


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
    names = [field.attname for field in model.tracked_fields]
    records = []
    for obj in objs:
        user = getattr(obj, "_history_user", actor.user or model.get_default_history_user(obj))
        record = model(
            history_date=getattr(obj, "_history_date", date),
            history_user=user,
            history_change_reason=get_change_reason_from_object(obj) or "",
            history_type="~" if update else "+",
            **{name: getattr(obj, name) for name in names},
            **stamp,
        )
        if hasattr(model, "history_relation"):
            record.history_relation_id = obj.pk
        records.append(record)
    return records


def update_with_history(
    model: type[models.Model],
    changes: Sequence[tuple[models.Model, Mapping[str, Any]]],
    *,
    actor: Actor,
    records: Sequence[models.Model] | None = None,
) -> None:
    """Write each object's changed fields, already set on it, and nothing else: one UPDATE
    for all the objects changed alike, so a set of rows moved the same way takes one
    statement, and one (a ``CASE`` on the id) for objects whose same fields took different
    values. Then, in one INSERT, a "changed" history record of each, by ``actor``, with the
    object's ``_change_reason``; or ``records``, where an object went through several states
    in the transaction: each a copy of an object as it was after one of them, with its
    ``_change_reason`` and ``_history_date``, in the order they happened."""
    by_fields: dict[tuple[str, ...], list[tuple[models.Model, Mapping[str, Any]]]] = {}
    for obj, fields in changes:
        by_fields.setdefault(tuple(sorted(fields)), []).append((obj, fields))
    with transaction.atomic(savepoint=False):
        for names, group in by_fields.items():
            alike: dict[str, tuple[Mapping[str, Any], list]] = {}
            for obj, fields in group:
                key = json.dumps(fields, sort_keys=True, cls=DjangoJSONEncoder)
                alike.setdefault(key, (fields, []))[1].append(obj.pk)
            if len(alike) == 1 or not names:
                for fields, pks in alike.values():
                    model._default_manager.filter(pk__in=pks).update(**fields)
            else:
                model._default_manager.bulk_update([obj for obj, _ in group], list(names))
        get_history_manager_for_model(model).bulk_history_create(
            [obj for obj, _ in changes] if records is None else records,
            update=True,
            default_user=actor.user,
            custom_historical_attrs=actor.history_stamp(),
        )
