from django.db import migrations

import hitlproject.signing


def new_execution_secrets(apps, schema_editor):
    """Until now any console user could read an execution secret through a changelist lookup
    (?execution_secret__startswith=), and whoever holds it can sign requests to the channel;
    one read that way must stop verifying. Each account gets a new one, which an administrator
    reads on the account's page and gives the channel's endpoint. The field is kept out of
    history, and a migration's models write none."""
    Account = apps.get_model("ledger", "Account")
    for account in Account.objects.all():
        account.execution_secret = hitlproject.signing.new_secret()
        account.save(update_fields=["execution_secret"])


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0004_outbound_destination_checked"),
    ]

    operations = [migrations.RunPython(new_execution_secrets, migrations.RunPython.noop)]
