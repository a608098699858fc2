from django.db import migrations


def sync_roles(apps, schema_editor):
    from approvals.roles import sync_role_groups

    sync_role_groups(apps)


class Migration(migrations.Migration):
    """Auditors now read people and groups (the roles): who has which role, since when and given
    by whom."""

    dependencies = [
        ("approvals", "0032_idempotency_answer_as_sent"),
        # Every model of the apps roles read, as it is now: the role groups get their
        # permissions whole.
        ("feedback", "0017_callback_event_attempts_never_reset"),
        ("ledger", "0008_history_user_kept"),
        ("notifications", "0012_history_user_kept"),
        ("policies", "0017_history_user_kept"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
