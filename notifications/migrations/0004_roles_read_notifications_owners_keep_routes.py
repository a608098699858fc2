from django.db import migrations


def sync_roles(apps, schema_editor):
    from approvals.roles import sync_role_groups

    sync_role_groups(apps)


class Migration(migrations.Migration):
    """Every role reads routes, the outbox, deadlines and claims; policy owners add and change
    routes; nobody but its owner reads a person's channels."""

    dependencies = [
        ("notifications", "0003_slack_requests_seen"),
        ("approvals", "0022_proposal_verdict_held_by"),
        ("feedback", "0009_feedback_kind_execution_failed"),
        ("policies", "0009_policy_decide_within"),
        ("ledger", "0005_rotate_execution_secrets"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
