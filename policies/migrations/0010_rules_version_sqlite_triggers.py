"""On SQLite, 0008's triggers give the rules' version token a new value however the write that
fires them was made (policies.rules_version_triggers: an ``INSERT OR IGNORE`` left it as it
was). PostgreSQL's are unchanged."""

from django.db import migrations

# 0008's tables.
RULES = ["policies_policy", "policies_historicalpolicy", "policies_killswitch", "ledger_account"]


def sqlite_triggers_again(apps, schema_editor):
    from policies.rules_version_triggers import watch

    if schema_editor.connection.vendor == "sqlite":
        watch(schema_editor.connection, dict.fromkeys(RULES, ()))


class Migration(migrations.Migration):
    dependencies = [("policies", "0009_policy_decide_within")]

    # Backwards, the triggers stay as this made them: they do what 0008's did, and more.
    operations = [migrations.RunPython(sqlite_triggers_again, migrations.RunPython.noop)]
