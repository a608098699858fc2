from django.db import migrations

import hitlproject.signing


def new_callback_secrets(apps, schema_editor):
    """Until now any console user could read a callback secret through a changelist lookup
    (?callback_secret__startswith=); one read that way must stop verifying. Each agent gets a
    new one, which its owner reads on the agent's page (an administrator's) and gives the
    agent. The field is kept out of history, and a migration's models write none."""
    Agent = apps.get_model("approvals", "Agent")
    for agent in Agent.objects.all():
        agent.callback_secret = hitlproject.signing.new_secret()
        agent.save(update_fields=["callback_secret"])


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0011_outbound_destination_checked"),
    ]

    operations = [migrations.RunPython(new_callback_secrets, migrations.RunPython.noop)]
