from django.db import migrations


def sync_roles(apps, schema_editor):
    from approvals.roles import sync_role_groups

    sync_role_groups(apps)


class Migration(migrations.Migration):
    """Every role reads outcomes and callback events, as it reads everything else."""

    dependencies = [
        ("feedback", "0003_callback_events"),
        ("approvals", "0008_agent_callback_secret"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
