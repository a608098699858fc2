"""On SQLite, 0008's triggers give the rules' version token a new value however the write that
fires them was made (policies.rules_version_triggers: an ``INSERT OR IGNORE`` left it as it
was). PostgreSQL's are unchanged."""

from django.db import migrations

from policies.rules_version_triggers import unwatch, watch

# 0008's tables.
WATCHED = ["policies_policy", "policies_historicalpolicy", "policies_killswitch", "ledger_account"]


def sqlite_triggers_again(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        unwatch(schema_editor, WATCHED)
        watch(schema_editor, WATCHED)


class Migration(migrations.Migration):
    dependencies = [("policies", "0009_policy_decide_within")]

    # Backwards, the triggers stay as this made them: they do what 0008's did, and more.
    operations = [migrations.RunPython(sqlite_triggers_again, migrations.RunPython.noop)]
