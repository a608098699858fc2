from django.db import migrations


def sync_roles(apps, schema_editor):
    from approvals.roles import sync_role_groups

    sync_role_groups(apps)


class Migration(migrations.Migration):
    """Policy owners now also edit guardrails: kill switches, brand guidelines, budget caps
    and strategy locks."""

    dependencies = [
        ("approvals", "0004_guardrails"),
        ("policies", "0002_guardrails"),
        ("ledger", "0002_guardrails"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
