"""Recording, in each object's history, the values a migration wrote into live rows without a
record (a column filled in from other data), so that the history says what each row holds and
verification, which compares every live row with its last record, finds them as recorded.

Only the fields the migration filled are taken from the live row: the rest of the new record
is the last one's, so that a row altered otherwise before the upgrade still shows."""

from django.utils import timezone

BATCH = 1000


def record_backfilled(apps, app_label: str, model_name: str, fields: list[str], why: str) -> int:
    """For each ``model_name`` row whose ``fields`` differ from its last history record, a
    record of it by the system ("migration"), giving ``why``. Returns how many."""
    live = apps.get_model(app_label, model_name)
    history = apps.get_model(app_label, f"Historical{model_name}")
    attnames = [live._meta.get_field(name).attname for name in fields]
    now, written, after = timezone.now(), 0, None
    while True:
        rows = live._base_manager.order_by("pk")
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
