"""The triggers that change the rules' version token (policies.models.RulesVersion) at every
write to a table the rules in force, or what is kept with them (the agents' keys, the
routing), are read from: installed by migrations (policies' 0008, 0010 and 0011, approvals'
0024 and 0025, notifications' 0007), and again after every ``migrate`` (``PoliciesConfig.ready``),
since SQLite drops a table's triggers with the table when a migration rebuilds it to alter a
column, and a lost trigger would leave every process keeping what it read, unseen.

On SQLite the trigger's body makes the row if it is missing, then gives it a new token: an
``INSERT OR REPLACE`` would not do, since SQLite applies the conflict clause of the statement
that fired the trigger (Django adds to a many-to-many relation with ``INSERT OR IGNORE``) to
the trigger's own statements, and the token then stayed as it was. On PostgreSQL one function,
made by 0008, does the same (``ON CONFLICT DO UPDATE``, which nothing overrides)."""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings
from django.db import transaction

# Tables whose every write changes the token, and those where only some columns' updates do.
Watched = Mapping[str, tuple[str, ...]]  # table: the columns whose update counts (all if empty)

SQLITE_EVENTS = ("insert", "update", "delete")
SQLITE_BODY = (
    "INSERT INTO policies_rulesversion (id, token) SELECT 1, '' "
    "WHERE NOT EXISTS (SELECT 1 FROM policies_rulesversion WHERE id = 1); "
    "UPDATE policies_rulesversion SET token = lower(hex(randomblob(16))) WHERE id = 1;"
)
# What the rules in force are read from (0008): the policies, their history (their versions),
# the kill switches, the accounts they name; and the brand guidelines (0011).
RULES = (
    "policies_policy",
    "policies_historicalpolicy",
    "policies_killswitch",
    "ledger_account",
    "policies_brandguidelines",
)


def watched_by_installer(apps) -> dict[tuple[str, str], Watched]:
    """Every table the token covers, as ``apps`` (a migration's, or the project's) has them, by
    the migration that installed its triggers (and whose undoing removes them): the rules'
    (``RULES``); the agents, their API keys and the accounts each may act on; the notification
    routes, whom they name and how each person chose to be reached; of the people, their
    groups, and whether they are active and their address (a login, which writes
    ``last_login``, changes nothing told)."""
    agent = apps.get_model("approvals", "Agent")
    route = apps.get_model("notifications", "Route")
    user = apps.get_model(settings.AUTH_USER_MODEL)
    return {
        ("policies", "0008_rules_version"): dict.fromkeys(RULES[:4], ()),
        ("policies", "0011_rules_version_brand_guidelines"): dict.fromkeys(RULES[4:], ()),
        # The agents and their keys, which a process keeps as it found them.
        ("approvals", "0024_rules_version_agents_and_keys"): {
            agent._meta.db_table: (),
            apps.get_model("approvals", "AgentAPIKey")._meta.db_table: (),
        },
        # The accounts each agent may act on, kept with its key.
        ("approvals", "0025_rules_version_agents_accounts"): {
            agent.accounts.through._meta.db_table: (),
        },
        ("notifications", "0007_routing_in_rules_version"): {
            route._meta.db_table: (),
            route.users.through._meta.db_table: (),
            route.groups.through._meta.db_table: (),
            apps.get_model("notifications", "ReachedBy")._meta.db_table: (),
            user._meta.db_table: ("is_active", "email"),
            user.groups.through._meta.db_table: (),
        },
    }


def watch(connection, tables: Watched) -> None:
    """Install the triggers on ``tables``, replacing any of the same name."""
    with connection.cursor() as cursor:
        for table, columns in tables.items():
            quoted = ", ".join(connection.ops.quote_name(column) for column in columns)
            of = f" OF {quoted}" if columns else ""
            if connection.vendor == "postgresql":
                cursor.execute(
                    f'CREATE OR REPLACE TRIGGER "{table}_rules_changed" '
                    f'AFTER INSERT OR UPDATE{of} OR DELETE OR TRUNCATE ON "{table}" '
                    "FOR EACH STATEMENT EXECUTE FUNCTION policies_rules_changed()"
                )
            elif connection.vendor == "sqlite":
                for event in SQLITE_EVENTS:
                    name = f"{table}_rules_changed_{event}"
                    cursor.execute(f'DROP TRIGGER IF EXISTS "{name}"')
                    cursor.execute(
                        f'CREATE TRIGGER "{name}" AFTER {event.upper()}'
                        f'{of if event == "update" else ""} ON "{table}" '
                        f"BEGIN {SQLITE_BODY} END"
                    )
            else:
                raise NotImplementedError(f"No triggers for {connection.vendor}")


def unwatch(connection, tables: Watched) -> None:
    with connection.cursor() as cursor:
        for table in tables:
            if connection.vendor == "postgresql":
                cursor.execute(f'DROP TRIGGER IF EXISTS "{table}_rules_changed" ON "{table}"')
            elif connection.vendor == "sqlite":
                for event in SQLITE_EVENTS:
                    cursor.execute(f'DROP TRIGGER IF EXISTS "{table}_rules_changed_{event}"')


def watch_again(*, using: str, **kwargs) -> None:
    """After ``migrate`` and ``flush`` (post_migrate): the triggers as they should be on every
    table whose installing migration is applied, whatever a migration rebuilt. Not on those of
    a migration undone: a trigger put back there would outlive the function or the token's
    table when a later step undoes ``policies`` 0008. The tables are the installed models'
    (the signal's ``apps`` is empty when there was nothing to migrate)."""
    from django.apps import apps
    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder

    connection = connections[using]
    applied = MigrationRecorder(connection).applied_migrations()
    existing = set(connection.introspection.table_names())
    if ("policies", "0008_rules_version") in applied:
        tables = {
            table: of
            for installer, watched in watched_by_installer(apps).items()
            if installer in applied
            for table, of in watched.items()
            if table in existing
        }
        with transaction.atomic(using=using):
            watch(connection, tables)
            # What was written while a rebuilt table had no trigger, and a row a flush emptied:
            # a new token, so that no process keeps what it read before.
            token_renew(connection)


def token_renew(connection) -> None:
    """Give the token a new value (making its row if it is missing), as the triggers do."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "INSERT INTO policies_rulesversion (id, token) "
                "VALUES (1, replace(gen_random_uuid()::text, '-', '')) "
                "ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token"
            )
        else:
            for statement in SQLITE_BODY.split(";"):
                if statement.strip():
                    cursor.execute(statement)
