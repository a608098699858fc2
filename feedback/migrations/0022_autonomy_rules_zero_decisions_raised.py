"""Rules stored before 0020 with "at least 0 decisions" to widen or narrow are raised to 1, and
the change recorded in their history: the review never judged a record of no decisions, so 1
decides what 0 did, and the rules' form, which now asks for at least 1, saves again without
the policy owner first mending a value they did not choose to change."""

from django.db import migrations

from audit.backfills import record_backfilled


def raise_zero(apps, schema_editor):
    rules = apps.get_model("feedback", "AutonomyRules")._base_manager
    for field in ("widen_min_decisions", "narrow_min_decisions"):
        rules.filter(**{field: 0}).update(**{field: 1})
    record_backfilled(
        apps,
        "feedback",
        "AutonomyRules",
        ["widen_min_decisions", "narrow_min_decisions"],
        "at least 0 decisions raised to at least 1 on upgrade: the review never judged a "
        "record of no decisions, so 1 decides what 0 did",
    )


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0021_bounded_integers"),
    ]

    operations = [migrations.RunPython(raise_zero, migrations.RunPython.noop, elidable=True)]
