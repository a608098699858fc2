"""The reminder time migration 0002 filled into each decision deadline without a history record
is recorded, so that each history ends with what its row holds: verification compares each
live row with its last record and names a row that differs."""

from django.db import migrations

from audit.backfills import record_backfilled


def record(apps, schema_editor):
    record_backfilled(
        apps,
        "notifications",
        "DecisionDeadline",
        ["remind_at"],
        "its reminder time, filled in on upgrade halfway to its deadline",
    )


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0010_notification_kind_failed"),
    ]

    operations = [migrations.RunPython(record, migrations.RunPython.noop, elidable=True)]
