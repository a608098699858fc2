"""Each person and each group already there when their history began gets its first record,
"created", by the system ("migration"), with the groups and permissions they had then: the
history of who has which role starts from what the platform held, and verification, which
compares each live row with its last record, finds every one recorded."""

from django.db import migrations
from django.utils import timezone

BATCH = 1000
WHY = "recorded as it was when the platform began keeping the history of people and roles"


def first_records(apps, live_label: str, historical: str, relations: dict[str, str]) -> None:
    live = apps.get_model(*live_label.split("."))
    history = apps.get_model("access", historical)
    kept = [
        f.attname
        for f in history._meta.concrete_fields
        if not f.attname.startswith("history_") and f.attname != "id"
    ]
    now, after = timezone.now(), None
    while True:
        rows = live._base_manager.order_by("pk")
        if after is not None:
            rows = rows.filter(pk__gt=after)
        batch = list(rows[:BATCH])
        if not batch:
            return
        after = batch[-1].pk
        recorded = set(
            history.objects.filter(id__in=[row.pk for row in batch]).values_list("id", flat=True)
        )
        new = [
            history(
                id=row.pk,
                **{name: getattr(row, name) for name in kept},
                history_date=now,
                history_type="+",
                history_change_reason=WHY,
                history_actor_kind="system",
                history_actor="migration",
            )
            for row in batch
            if row.pk not in recorded
        ]
        history.objects.bulk_create(new)
        # The records' ids, read back (SQLite's bulk insert does not give them).
        records = dict(
            history.objects.filter(
                id__in=[record.id for record in new], history_date=now, history_type="+"
            ).values_list("id", "history_id")
        )
        for name, column in relations.items():
            through = live._meta.get_field(name).remote_field.through
            m2m_history = apps.get_model("access", f"{historical}_{name}")
            owner = f"{live._meta.model_name}_id"
            m2m_history.objects.bulk_create(
                m2m_history(
                    history_id=records[row[owner]],
                    id=row["id"],
                    **{owner: row[owner], column: row[column]},
                )
                for row in through.objects.filter(**{f"{owner}__in": list(records)})
                .order_by("id")
                .values("id", owner, column)
            )


def record(apps, schema_editor):
    first_records(
        apps, "auth.Group", "HistoricalGroup", {"permissions": "permission_id"}
    )
    first_records(
        apps,
        "auth.User",
        "HistoricalUser",
        {"groups": "group_id", "user_permissions": "permission_id"},
    )


class Migration(migrations.Migration):
    # After the migrations that set the role groups' permissions (``sync_role_groups``): the
    # first record of each group holds the permissions it has.
    dependencies = [
        ("access", "0003_people_and_roles_history"),
        ("approvals", "0033_auditors_read_people_and_roles"),
    ]

    operations = [migrations.RunPython(record, migrations.RunPython.noop, elidable=True)]
