"""The rules' version token, changed by the database at every write to what the rules in
force are read from (policies.models.RulesVersion)."""

from django.db import migrations, models

# Written to, every write changes the rules in force; ``ledger_account`` for the names a
# kill switch's reason gives.
WATCHED = ["policies_policy", "policies_historicalpolicy", "policies_killswitch", "ledger_account"]

POSTGRESQL_FUNCTION = """
CREATE FUNCTION policies_rules_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO policies_rulesversion (id, token)
    VALUES (1, replace(gen_random_uuid()::text, '-', ''))
    ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token;
    RETURN NULL;
END
$$
"""


def install_triggers(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(POSTGRESQL_FUNCTION)
            for table in WATCHED:
                cursor.execute(
                    f"CREATE TRIGGER {table}_rules_changed "
                    f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION policies_rules_changed()"
                )
            cursor.execute(
                "INSERT INTO policies_rulesversion (id, token) "
                "VALUES (1, replace(gen_random_uuid()::text, '-', ''))"
            )
        elif connection.vendor == "sqlite":
            for table in WATCHED:
                for event in ("INSERT", "UPDATE", "DELETE"):
                    cursor.execute(
                        f"CREATE TRIGGER {table}_rules_changed_{event.lower()} "
                        f"AFTER {event} ON {table} BEGIN "
                        "INSERT OR REPLACE INTO policies_rulesversion (id, token) "
                        "VALUES (1, lower(hex(randomblob(16)))); END"
                    )
            cursor.execute(
                "INSERT INTO policies_rulesversion (id, token) "
                "VALUES (1, lower(hex(randomblob(16))))"
            )
        else:
            raise NotImplementedError(f"No triggers for {connection.vendor}")


def remove_triggers(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in WATCHED:
                cursor.execute(f"DROP TRIGGER IF EXISTS {table}_rules_changed ON {table}")
            cursor.execute("DROP FUNCTION IF EXISTS policies_rules_changed()")
        elif connection.vendor == "sqlite":
            for table in WATCHED:
                for event in ("insert", "update", "delete"):
                    cursor.execute(f"DROP TRIGGER IF EXISTS {table}_rules_changed_{event}")


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0005_rotate_execution_secrets"),
        ("policies", "0007_counted_moves_executed"),
    ]

    operations = [
        migrations.CreateModel(
            name="RulesVersion",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("token", models.CharField(max_length=32)),
            ],
        ),
        migrations.RunPython(install_triggers, remove_triggers),
    ]
