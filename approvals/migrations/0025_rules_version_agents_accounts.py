"""The rules' version token (policies.models.RulesVersion) covers which accounts each agent may
act on too: the database changes it at every write to that link, so a process may keep an
agent's accounts with its key (``approvals.services.agents.agent_authenticate``) and still
refuse, at the very next submission, an account taken from the agent anywhere."""

from django.db import migrations

from policies.rules_version_triggers import unwatch, watch

# Written out as this migration has it; what every ``migrate`` keeps is
# policies.rules_version_triggers.watched_by_installer.
AGENTS_ACCOUNTS = {"approvals_agent_accounts": ()}


def install_triggers(apps, schema_editor):
    watch(schema_editor.connection, AGENTS_ACCOUNTS)


def remove_triggers(apps, schema_editor):
    unwatch(schema_editor.connection, AGENTS_ACCOUNTS)


class Migration(migrations.Migration):
    dependencies = [("approvals", "0024_rules_version_agents_and_keys")]

    operations = [migrations.RunPython(install_triggers, remove_triggers)]
