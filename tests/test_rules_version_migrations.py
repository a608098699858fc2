"""The migrations that install the rules' version token's triggers can be undone, in one step or
in several, and done again: after every ``migrate`` the triggers are put back only where the
migration that installs them is applied (``policies.rules_version_triggers.watch_again``)."""

import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from django.conf import settings

from tests.conftest import REPO, database_url

# Undone in two steps: the agents' triggers (approvals 0024), then the token itself (policies
# 0008, which drops its table and, on PostgreSQL, the function every trigger calls). Then an
# agent is written, as the code of that state would, and everything is migrated again.
UNDONE_IN_TWO_STEPS = """
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

call_command("migrate", verbosity=0)
call_command("migrate", "approvals", "0023", verbosity=0)
call_command("migrate", "policies", "0007", verbosity=0)

loader = MigrationExecutor(connection).loader
then = loader.project_state(list(loader.applied_migrations)).apps
then.get_model("approvals", "Agent").objects.create(name="written-while-undone", kind="research")

call_command("migrate", verbosity=0)

from approvals.models import Agent
from policies.models import RulesVersion

def token():
    return RulesVersion.objects.get().token

before = token()
Agent.objects.filter(name="written-while-undone").update(is_active=False)
assert token() != before, "deactivating an agent left the token as it was"
before = token()
Agent.objects.get(name="written-while-undone").api_keys.create(prefix="p", digest="d")
assert token() != before, "issuing a key left the token as it was"
print("ok")
"""


@pytest.fixture
def empty_database(tmp_path):
    """A database of its own, on the same engine as the tests'."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        yield f"sqlite:///{tmp_path / 'undone.sqlite3'}"
        return
    name = f"hitl_undone_{uuid.uuid4().hex[:8]}"
    server = database_url({**db, "NAME": "postgres"})
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url({**db, "NAME": name})
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_the_token_undone_in_two_steps_leaves_agents_writable_and_comes_back(empty_database):
    env = {
        **os.environ,
        "DATABASE_URL": empty_database,
        "DJANGO_SETTINGS_MODULE": "hitlproject.settings",
    }
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + UNDONE_IN_TWO_STEPS],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
