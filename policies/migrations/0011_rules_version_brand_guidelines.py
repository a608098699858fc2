"""The rules' version token (policies.models.RulesVersion) covers the brand guidelines too: the
database changes it at every write to them, so a process may keep the guidelines it read under
the token (``policies.services.EvaluationContext.read``), as it keeps the rules."""

from django.db import migrations

from policies.rules_version_triggers import unwatch, watch

# Written out as this migration has it; what every ``migrate`` keeps is
# policies.rules_version_triggers.watched_by_installer.
BRAND_GUIDELINES = {"policies_brandguidelines": ()}


def install_triggers(apps, schema_editor):
    watch(schema_editor.connection, BRAND_GUIDELINES)


def remove_triggers(apps, schema_editor):
    unwatch(schema_editor.connection, BRAND_GUIDELINES)


class Migration(migrations.Migration):
    dependencies = [("policies", "0010_rules_version_sqlite_triggers")]

    operations = [migrations.RunPython(install_triggers, remove_triggers)]
