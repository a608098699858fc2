"""The rules' version token (policies.models.RulesVersion) covers the notification routes too:
the database changes it at every write to the routes, whom they name, the people (their
address, whether they are active, their groups) and how each chose to be reached, so a
process may keep the routing it read under the token (notifications.selectors.routing)."""

from django.conf import settings
from django.db import migrations

from policies.rules_version_triggers import unwatch, watch


def watched(apps) -> dict[str, tuple[str, ...]]:
    """The tables, and of the people only the columns that change whom a message reaches (a
    login, which writes ``last_login``, does not). Written out here as this migration's state
    has them; ``policies.rules_version_triggers.watched_by_installer`` is what ``migrate`` keeps."""
    route = apps.get_model("notifications", "Route")
    user = apps.get_model(settings.AUTH_USER_MODEL)
    return {
        route._meta.db_table: (),
        route.users.through._meta.db_table: (),
        route.groups.through._meta.db_table: (),
        apps.get_model("notifications", "ReachedBy")._meta.db_table: (),
        user._meta.db_table: ("is_active", "email"),
        user.groups.through._meta.db_table: (),
    }


def install_triggers(apps, schema_editor):
    watch(schema_editor.connection, watched(apps))


def remove_triggers(apps, schema_editor):
    unwatch(schema_editor.connection, watched(apps))


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0006_notification_update_about"),
        ("policies", "0010_rules_version_sqlite_triggers"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(install_triggers, remove_triggers)]
