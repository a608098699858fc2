"""Recording, in each object's history, the values a migration wrote into live rows without a
record (a column filled in from other data), so that the history says what each row holds and
verification, which compares every live row with its last record, finds them as recorded.

Only the fields the migration filled are taken from the live row: the rest of the new record
is the last one's, so that a row altered otherwise before the upgrade still shows.

And the first record of each row already there when a model's history begins
(``record_first``), as the row is then: its history starts from what the platform held."""

from typing import Any

from django.utils import timezone

BATCH = 1000


def record_backfilled(
    apps,
    app_label: str,
    model_name: str,
    fields: list[str],
    why: str,
    *,
    only: dict[str, Any] | None = None,
) -> int:
    """For each ``model_name`` row whose ``fields`` differ from its last history record, a
    record of it by the system ("migration"), giving ``why``. Returns how many. ``only``:
    a filter of the rows the migration filled, where it filled few of many (the others'
    history is not read)."""
    live = apps.get_model(app_label, model_name)
    history = apps.get_model(app_label, f"Historical{model_name}")
    attnames = [live._meta.get_field(name).attname for name in fields]
    now, written, after = timezone.now(), 0, None
    while True:
        rows = live._base_manager.filter(**(only or {})).order_by("pk")
        if after is not None:
            rows = rows.filter(pk__gt=after)
        batch = {row["pk"]: row for row in rows.values("pk", *attnames)[:BATCH]}
        if not batch:
            return written
        after = max(batch)
        latest = {}
        records = history.objects.filter(id__in=list(batch)).order_by("id", "history_id")
        for record in records:
            latest[record.id] = record
        new = []
        for pk, record in latest.items():
            row = batch[pk]
            if record.history_type == "-" or all(
                getattr(record, name) == row[name] for name in attnames
            ):
                continue
            for name in attnames:
                setattr(record, name, row[name])
            record.history_id = None
            record.history_date = now
            record.history_type = "~"
            record.history_change_reason = why
            record.history_actor_kind, record.history_actor = "system", "migration"
            record.history_user_id = None
            if hasattr(record, "history_agent_id"):
                record.history_agent_id = None
            new.append(record)
        history.objects.bulk_create(new)
        written += len(new)


def record_first(apps, app_label: str, model_name: str, why: str) -> int:
    """For each ``model_name`` row with no history record yet, a first one, "created", by the
    system ("migration"), of the row as it is, giving ``why``. Returns how many."""
    live = apps.get_model(app_label, model_name)
    history = apps.get_model(app_label, f"Historical{model_name}")
    kept = [
        field.attname
        for field in history._meta.concrete_fields
        if not field.attname.startswith("history_") and field.attname != "id"
    ]
    now, written, after = timezone.now(), 0, None
    while True:
        rows = live._base_manager.order_by("pk")
        if after is not None:
            rows = rows.filter(pk__gt=after)
        batch = list(rows.values("pk", *kept)[:BATCH])
        if not batch:
            return written
        after = batch[-1]["pk"]
        recorded = set(
            history.objects.filter(id__in=[row["pk"] for row in batch]).values_list("id", flat=True)
        )
        new = [
            history(
                id=row["pk"],
                **{name: row[name] for name in kept},
                history_date=now,
                history_type="+",
                history_change_reason=why,
                history_actor_kind="system",
                history_actor="migration",
            )
            for row in batch
            if row["pk"] not in recorded
        ]
        history.objects.bulk_create(new)
        written += len(new)
