from django.db import migrations


def sync_roles(apps, schema_editor):
    from approvals.roles import sync_role_groups

    sync_role_groups(apps)


class Migration(migrations.Migration):
    """The roles hold no permission of a history model ("Can view historical policy"): no
    admin shows those models, and nothing asks for one."""

    dependencies = [
        ("approvals", "0033_auditors_read_people_and_roles"),
        ("access", "0004_people_and_roles_first_records"),
        ("feedback", "0017_callback_event_attempts_never_reset"),
        ("ledger", "0008_history_user_kept"),
        ("notifications", "0012_history_user_kept"),
        ("policies", "0017_history_user_kept"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
