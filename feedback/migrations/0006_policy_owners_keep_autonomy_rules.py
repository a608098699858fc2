from django.db import migrations


def sync_roles(apps, schema_editor):
    from approvals.roles import sync_role_groups

    sync_role_groups(apps)


class Migration(migrations.Migration):
    """Policy owners keep the autonomy rules; every role reads them."""

    dependencies = [
        ("feedback", "0005_autonomy_rules"),
        ("approvals", "0009_agent_is_platform"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
