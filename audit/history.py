"""Writing many rows at once, with the history ``save()`` would have recorded for each.

django-simple-history's bulk writers send no signals, so the acting actor is passed to them
here rather than found by the receiver that stamps single saves.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import NotSupportedError, connection, models, transaction
from simple_history.utils import bulk_create_with_history, get_history_manager_for_model

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


def update_with_history(
    model: type[models.Model],
    changes: Sequence[tuple[models.Model, Mapping[str, Any]]],
    *,
    actor: Actor,
) -> None:
    """Write each object's changed fields, already set on it: one UPDATE for all the objects
    changed alike, so a set of rows moved the same way takes one statement. Then a "changed"
    history record of each, by ``actor``, with the object's ``_change_reason``."""
    alike: dict[str, tuple[Mapping[str, Any], list]] = {}
    for obj, fields in changes:
        key = json.dumps(fields, sort_keys=True, cls=DjangoJSONEncoder)
        alike.setdefault(key, (fields, []))[1].append(obj.pk)
    with transaction.atomic(savepoint=False):
        for fields, pks in alike.values():
            model._default_manager.filter(pk__in=pks).update(**fields)
        get_history_manager_for_model(model).bulk_history_create(
            [obj for obj, _ in changes],
            update=True,
            default_user=actor.user,
            custom_historical_attrs=actor.history_stamp(),
        )
