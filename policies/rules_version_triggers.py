"""The triggers that change the rules' version token (policies.models.RulesVersion) at every
write to a table the rules in force are read from; installed by migrations (policies' 0008 and
0010, notifications' 0007).

On SQLite the trigger's body makes the row if it is missing, then gives it a new token: an
``INSERT OR REPLACE`` would not do, since SQLite applies the conflict clause of the statement
that fired the trigger (Django adds to a many-to-many relation with ``INSERT OR IGNORE``) to
the trigger's own statements, and the token then stayed as it was. On PostgreSQL one function,
made by 0008, does the same (``ON CONFLICT DO UPDATE``, which nothing overrides)."""

SQLITE_EVENTS = ("insert", "update", "delete")
SQLITE_BODY = (
    "INSERT INTO policies_rulesversion (id, token) SELECT 1, '' "
    "WHERE NOT EXISTS (SELECT 1 FROM policies_rulesversion WHERE id = 1); "
    "UPDATE policies_rulesversion SET token = lower(hex(randomblob(16))) WHERE id = 1;"
)


def watch(schema_editor, tables: list[str]) -> None:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        for table in tables:
            if connection.vendor == "postgresql":
                cursor.execute(
                    f'CREATE TRIGGER "{table}_rules_changed" '
                    f'AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "{table}" '
                    "FOR EACH STATEMENT EXECUTE FUNCTION policies_rules_changed()"
                )
            elif connection.vendor == "sqlite":
                for event in SQLITE_EVENTS:
                    cursor.execute(
                        f'CREATE TRIGGER "{table}_rules_changed_{event}" '
                        f'AFTER {event.upper()} ON "{table}" BEGIN {SQLITE_BODY} END'
                    )
            else:
                raise NotImplementedError(f"No triggers for {connection.vendor}")


def unwatch(schema_editor, tables: list[str]) -> None:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        for table in tables:
            if connection.vendor == "postgresql":
                cursor.execute(f'DROP TRIGGER IF EXISTS "{table}_rules_changed" ON "{table}"')
            elif connection.vendor == "sqlite":
                for event in SQLITE_EVENTS:
                    cursor.execute(f'DROP TRIGGER IF EXISTS "{table}_rules_changed_{event}"')
