"""The values earlier migrations filled into live rows without a history record (a decision's
summary, 0015; a proposal's approvals this round, 0018, and when it was approved, 0021) are
recorded, so that each history ends with what its row holds: verification compares each live
row with its last record and names a row that differs."""

from django.db import migrations

from audit.backfills import record_backfilled


def record(apps, schema_editor):
    record_backfilled(
        apps,
        "approvals",
        "Proposal",
        ["approvals_this_round", "approved_at"],
        "approvals this round and when it was approved, filled in on upgrade from its "
        "decisions and history",
    )
    record_backfilled(
        apps,
        "approvals",
        "Decision",
        ["summary"],
        "its summary, filled in on upgrade from its proposal's history",
    )


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0028_execution_unanswered"),
    ]

    operations = [migrations.RunPython(record, migrations.RunPython.noop, elidable=True)]
