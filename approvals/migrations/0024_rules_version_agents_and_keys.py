"""The rules' version token (policies.models.RulesVersion) covers the agents and their API keys
too: the database changes it at every write to them (a key issued or revoked, an agent
deactivated), so a process may keep the keys it found under the token
(``approvals.services.agents.agent_authenticate``) and still refuse a key revoked anywhere at
the very next request."""

from django.db import migrations

from policies.rules_version_triggers import unwatch, watch

# Written out as this migration has them; what every ``migrate`` keeps is
# policies.rules_version_triggers.watched_by_installer.
AGENTS_AND_KEYS = {"approvals_agent": (), "approvals_agentapikey": ()}


def install_triggers(apps, schema_editor):
    watch(schema_editor.connection, AGENTS_AND_KEYS)


def remove_triggers(apps, schema_editor):
    unwatch(schema_editor.connection, AGENTS_AND_KEYS)


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0023_execution_lease_moved_and_channel_answers"),
        ("policies", "0011_rules_version_brand_guidelines"),
    ]

    operations = [migrations.RunPython(install_triggers, remove_triggers)]
