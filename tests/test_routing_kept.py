"""A web process keeps the routing (the active routes, whom each tells, how each person is
reached) between submissions, under the rules' version token; a change made anywhere (another
process, the console, a raw write) is in force for the very next proposal that waits: the
database changes the token in the transaction that makes the change."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, update_last_login
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals.roles import AUDITORS, OPERATORS
from notifications.models import Notification, ReachedBy, Route
from policies.rules_version_triggers import unwatch
from tests.conftest import reallocation
from tests.test_rules_in_force_kept import in_another_process

User = get_user_model()


def told_of_next(optimizer) -> set[tuple[str, str]]:
    """(username, channel) of everyone told about the next reallocation, which waits."""
    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    assert answer.status_code == 201, answer.content
    assert answer.json()["status"] == "pending_review"
    return {
        (n.recipient.username, n.channel)
        for n in Notification.objects.filter(proposal_id=answer.json()["id"])
    }


@pytest.fixture
def world(transactional_db, demo_world) -> dict:
    return demo_world


def test_a_person_added_to_the_route_in_another_process_is_told_of_the_next(world, optimizer):
    assert told_of_next(optimizer) == {("operator", "email")}

    in_another_process(
        "from django.contrib.auth import get_user_model\n"
        "from notifications.models import Route\n"
        "Route.objects.get(name='Demo: everything waiting, to the operators')"
        ".users.add(get_user_model().objects.get(username='auditor'))\n"
    )

    assert told_of_next(optimizer) == {("operator", "email"), ("auditor", "email")}


def test_the_people_their_groups_and_their_channels_as_they_are_now(world, optimizer, settings):
    settings.SLACK_BOT_TOKEN = "xoxb-test"
    assert told_of_next(optimizer) == {("operator", "email")}

    auditor = User.objects.get(username="auditor")
    auditor.groups.add(Group.objects.get(name=OPERATORS))  # joins the route's group
    assert told_of_next(optimizer) == {("operator", "email"), ("auditor", "email")}

    ReachedBy.objects.create(user=auditor, email=False, slack=True)  # chooses Slack
    assert told_of_next(optimizer) == {("operator", "email"), ("auditor", "slack")}

    operator = User.objects.filter(username="operator")
    operator.update(is_active=False)  # a raw write
    assert told_of_next(optimizer) == {("auditor", "slack")}
    operator.update(is_active=True)
    assert told_of_next(optimizer) == {("operator", "email"), ("auditor", "slack")}
    operator.update(email="")  # no address to write to
    assert told_of_next(optimizer) == {("auditor", "slack")}

    auditor.groups.set([Group.objects.get(name=AUDITORS)])  # leaves it
    assert told_of_next(optimizer) == set()

    Route.objects.update(is_active=False)
    operator.update(email="operator@example.com")
    assert told_of_next(optimizer) == set()


def test_a_trigger_lost_with_a_rebuilt_table_is_back_after_the_next_migrate(world, optimizer):
    """SQLite drops a table's triggers when a migration rebuilds the table to alter it: the
    triggers are installed again after every ``migrate``."""
    assert told_of_next(optimizer) == {("operator", "email")}
    unwatch(connection, {User.groups.through._meta.db_table: ()})

    in_another_process(  # as after an upgrade
        "from django.core.management import call_command\ncall_command('migrate', verbosity=0)\n"
    )

    User.objects.get(username="auditor").groups.add(Group.objects.get(name=OPERATORS))
    assert told_of_next(optimizer) == {("operator", "email"), ("auditor", "email")}


def test_while_nothing_changes_a_submission_does_not_read_the_routes_again(world, optimizer):
    told_of_next(optimizer)
    update_last_login(None, user=User.objects.get(username="operator"))  # as a login does

    with CaptureQueriesContext(connection) as statements:
        assert told_of_next(optimizer) == {("operator", "email")}

    # The policy that routes it is held as its proposal is written (``FOR KEY SHARE``, so
    # that it is not deleted under it): that statement reads none of its rules.
    read = " ".join(
        statement["sql"]
        for statement in statements.captured_queries
        if not statement["sql"].endswith("FOR KEY SHARE")
    )
    assert 'FROM "notifications_route"' not in read
    assert 'FROM "notifications_reachedby"' not in read
    assert 'FROM "policies_policy"' not in read
    assert 'INSERT INTO "notifications_notification"' in read
