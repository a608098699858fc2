"""People and roles are audited: who was made an operator, when and by whom, in the history of
people (kept without a password hash), sealed into the audit chain, in the export, and read by
the auditor, who changes nothing."""

import html
import io
import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.management.commands import changepassword
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.test import Client
from django.utils import timezone

from access.selectors import memberships
from approvals import roles
from approvals.roles import AUDITORS, OPERATORS, ROLE_EXTRA_PERMISSIONS
from audit.chain import chain_seal, chain_verify
from tests.conftest import posted_from_page
from tests.test_audit_export import URL as EXPORT_URL
from tests.test_audit_export import period


@pytest.fixture
def admin_client(demo_world) -> Client:
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "x")
    client = Client()
    client.force_login(admin)
    return client


def change_form(user) -> dict:
    """What the console's form for ``user`` sends back unchanged."""
    joined = timezone.localtime(user.date_joined)
    return {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on" if user.is_active else "",
        "is_staff": "on" if user.is_staff else "",
        "is_superuser": "on" if user.is_superuser else "",
        "groups": [str(pk) for pk in user.groups.values_list("pk", flat=True)],
        "user_permissions": [],
        "date_joined_0": f"{joined:%Y-%m-%d}",
        "date_joined_1": f"{joined:%H:%M:%S}",
        "initial-date_joined_0": f"{joined:%Y-%m-%d}",
        "initial-date_joined_1": f"{joined:%H:%M:%S}",
    }


def made_operator(admin_client):
    """A new person, made an operator by the administrator in the console."""
    person = get_user_model().objects.create_user("newcomer", "new@example.com", "pw")
    operators = Group.objects.get(name=OPERATORS)
    form = change_form(person) | {
        "is_staff": "on",
        "groups": [str(operators.pk)],
        "change_reason": "joins the night shift",
    }
    answer = posted_from_page(admin_client, f"/admin/auth/user/{person.pk}/change/", form)
    assert answer.status_code == 302, answer.content.decode()[:3000]
    assert list(person.groups.all()) == [operators]
    return person, operators


def page_text(client, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))


def test_making_someone_an_operator_in_the_console_records_who_did_it_and_when(admin_client):
    person, operators = made_operator(admin_client)
    records = list(get_user_model().history.filter(id=person.pk).order_by("history_id"))
    assert [r.history_type for r in records] == ["+", "~"]  # one record of the save, not two
    made = records[-1]
    assert (made.history_actor_kind, made.history_actor) == ("user", "admin")
    assert made.history_change_reason == "joins the night shift"
    assert made.history_user.username == "admin"
    assert [g.group_id for g in made.groups.all()] == [operators.pk]
    assert made.is_staff and not records[0].is_staff
    # No secret is recorded: the history has no password hash, nor the last login.
    fields = {f.name for f in type(made)._meta.fields}
    assert "password" not in fields and "last_login" not in fields


def test_a_person_made_by_a_command_is_recorded_as_made_by_the_platform(db):
    call_command("createsuperuser", username="root", email="root@example.com", interactive=False)
    record = get_user_model().history.get(username="root")
    assert (record.history_actor_kind, record.history_actor) == ("system", "createsuperuser")


def test_a_login_writes_no_record_of_the_person(demo_world):
    operator = get_user_model().objects.get(username="operator")
    before = get_user_model().history.filter(id=operator.pk).count()
    for _ in range(3):
        Client().force_login(operator)
    operator.refresh_from_db()
    assert operator.last_login is not None
    assert get_user_model().history.filter(id=operator.pk).count() == before


def test_a_person_added_to_a_group_from_the_group_s_side_is_recorded(demo_world):
    operators = Group.objects.get(name=OPERATORS)
    auditor = get_user_model().objects.get(username="auditor")
    operators.user_set.add(auditor)
    record = get_user_model().history.filter(id=auditor.pk).latest("history_id")
    assert operators.pk in set(record.groups.values_list("group_id", flat=True))
    operators.user_set.clear()
    record = get_user_model().history.filter(id=auditor.pk).latest("history_id")
    assert operators.pk not in set(record.groups.values_list("group_id", flat=True))
    assert chain_verify().holds


def test_the_chain_seals_people_and_roles_and_names_tampering_with_them(admin_client):
    person, operators = made_operator(admin_client)
    chain_seal()
    assert chain_verify().holds
    made = get_user_model().history.filter(id=person.pk).latest("history_id")
    # A record of who was made an operator rewritten: membership moved to another group.
    auditors = Group.objects.get(name="auditors")
    made.groups.update(group_id=auditors.pk)
    found = chain_verify()
    assert not found.holds
    assert f"access.historicaluser record {made.history_id}" in str(found.broken)
    assert "altered after it was sealed" in str(found.broken)
    made.groups.update(group_id=operators.pk)
    assert chain_verify().holds
    # A person put in a group in the database, past the history.
    auditor = get_user_model().objects.get(username="auditor")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO auth_user_groups (user_id, group_id) VALUES (%s, %s)",
            [auditor.pk, operators.pk],
        )
    found = chain_verify()
    assert not found.holds
    assert f"the live row of user #{auditor.pk} differs" in found.broken.what
    assert "groups is “auditors, operators”, recorded “auditors”" in found.broken.what


def test_the_export_holds_who_was_made_an_operator(admin_client, login):
    person, operators = made_operator(admin_client)
    response = login("auditor").get(EXPORT_URL, {**period(), "format": "jsonl"})
    assert response.status_code == 200
    records = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    mine = [r for r in records if r["model"] == "auth.user" and r["object_id"] == person.pk]
    assert mine[-1]["actor"] == "admin" and mine[-1]["user"] == "admin"
    assert mine[-1]["fields"]["groups"] == [operators.pk]
    assert "groups" in mine[-1]["changed"] and "is_staff" in mine[-1]["changed"]
    assert all("password" not in r["fields"] for r in records if r["model"] == "auth.user")
    assert any(r["model"] == "auth.group" for r in records)


def test_the_auditor_reads_who_has_which_role_since_when_and_changes_nothing(admin_client, login):
    person, operators = made_operator(admin_client)
    auditor = login("auditor")
    group_page = page_text(auditor, f"/admin/auth/group/{operators.pk}/change/")
    assert "newcomer: since " in group_page
    assert "given by admin (person)" in group_page
    person_page = page_text(auditor, f"/admin/auth/user/{person.pk}/change/")
    assert "operators: since" in person_page
    assert "pbkdf2" not in person_page and "algorithm" not in person_page.lower()
    history = page_text(auditor, f"/admin/auth/user/{person.pk}/history/")
    assert "admin (person)" in history
    # Read, never changed.
    form = change_form(person) | {"is_superuser": "on"}
    assert auditor.post(f"/admin/auth/user/{person.pk}/change/", form).status_code == 403
    assert (
        auditor.post(f"/admin/auth/group/{operators.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    person.refresh_from_db()
    assert not person.is_superuser
    assert Group.objects.filter(pk=operators.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_people_and_groups_there_before_their_history_began_get_a_first_record(demo_world):
    """A platform upgraded with its people already there: each person and group gets a first
    record, with the groups and permissions they had, and verification finds them as
    recorded; the auditor reads that they held the role before the history began."""
    executor = MigrationExecutor(connection)
    executor.migrate([("access", "0002_history_user_kept")])
    executor = MigrationExecutor(connection)
    # Every app at its latest again: going back unapplied the later migrations of other
    # apps that depend on access's (approvals 0034, and with it 0035's columns).
    executor.migrate(executor.loader.graph.leaf_nodes())
    operator = get_user_model().objects.get(username="operator")
    (first,) = get_user_model().history.filter(id=operator.pk)
    assert (first.history_type, first.history_actor) == ("+", "migration")
    assert [g.group_id for g in first.groups.all()] == [Group.objects.get(name=OPERATORS).pk]
    group = Group.objects.get(name=OPERATORS)
    (recorded,) = Group.history.filter(id=group.pk)
    assert set(recorded.permissions.values_list("permission_id", flat=True)) == set(
        group.permissions.values_list("pk", flat=True)
    )
    chain_seal()
    assert chain_verify().holds
    (membership,) = memberships(users=[operator])
    assert membership.before_history


def test_a_group_deleted_leaves_each_member_recorded_without_it(admin_client):
    person, operators = made_operator(admin_client)
    spare = Group.objects.create(name="spare")
    person.groups.add(spare)
    answer = admin_client.post(
        f"/admin/auth/group/{spare.pk}/delete/", {"post": "yes", "change_reason": "unused"}
    )
    assert answer.status_code == 302
    record = get_user_model().history.filter(id=person.pk).latest("history_id")
    assert [g.group_id for g in record.groups.all()] == [operators.pk]
    assert (record.history_actor_kind, record.history_actor) == ("user", "admin")
    assert record.history_change_reason == (
        f"Groups: group #{spare.pk} “spare” taken off, as it was deleted "
        "(the reason given: “unused”)."
    )
    deleted = Group.history.filter(id=spare.pk).latest("history_id")
    assert deleted.history_type == "-"
    chain_seal()
    assert chain_verify().holds


def test_a_person_or_a_group_changed_in_the_console_says_why(admin_client):
    """As a policy's or a route's form does: no reason, no change; the reason in the history;
    a save that changes nothing writes no record."""
    operator = get_user_model().objects.get(username="operator")
    auditors = Group.objects.get(name="auditors")
    url = f"/admin/auth/user/{operator.pk}/change/"
    before = get_user_model().history.filter(id=operator.pk).count()
    groups = [*change_form(operator)["groups"], str(auditors.pk)]
    refused = posted_from_page(admin_client, url, change_form(operator) | {"groups": groups})
    assert refused.status_code == 200 and "Why this change" in refused.text
    assert "This field is required." in refused.text
    assert auditors not in operator.groups.all()
    answer = posted_from_page(
        admin_client,
        url,
        change_form(operator) | {"groups": groups, "change_reason": "covers audits"},
    )
    assert answer.status_code == 302
    record = get_user_model().history.filter(id=operator.pk).latest("history_id")
    assert record.history_change_reason == "covers audits"
    assert auditors.pk in set(record.groups.values_list("group_id", flat=True))
    history = page_text(admin_client, f"/admin/auth/user/{operator.pk}/history/")
    assert "covers audits" in history
    # Sent back as it is: nothing changed, nothing recorded, and the page says so.
    operator.refresh_from_db()
    count = get_user_model().history.filter(id=operator.pk).count()
    same = posted_from_page(
        admin_client, url, change_form(operator) | {"change_reason": "again"}, follow=True
    )
    assert "Nothing was changed" in same.text
    assert get_user_model().history.filter(id=operator.pk).count() == count == before + 1

    group_url = f"/admin/auth/group/{auditors.pk}/change/"
    permissions = [str(pk) for pk in auditors.permissions.values_list("pk", flat=True)][1:]
    refused = posted_from_page(
        admin_client, group_url, {"name": "auditors", "permissions": permissions}
    )
    assert refused.status_code == 200 and "This field is required." in refused.text
    assert auditors.permissions.count() == len(permissions) + 1
    answer = posted_from_page(
        admin_client,
        group_url,
        {"name": "auditors", "permissions": permissions, "change_reason": "one fewer"},
    )
    assert answer.status_code == 302
    recorded = Group.history.filter(id=auditors.pk).latest("history_id")
    assert recorded.history_change_reason == "one fewer"
    assert recorded.permissions.count() == len(permissions)
    chain_seal()
    assert chain_verify().holds


def test_when_someone_joined_and_last_logged_in_are_not_a_form_s_to_rewrite(admin_client):
    """A form sent back without the last login emptied it, unrecorded (the history keeps
    none); one with the joining time to the second recorded "Date joined" as changed."""
    operator = get_user_model().objects.get(username="operator")
    Client().force_login(operator)
    operator.refresh_from_db()
    joined, last_login = operator.date_joined, operator.last_login
    assert last_login is not None
    answer = posted_from_page(
        admin_client,
        f"/admin/auth/user/{operator.pk}/change/",
        change_form(operator) | {"first_name": "Ada", "change_reason": "her name"},
    )
    assert answer.status_code == 302
    operator.refresh_from_db()
    assert (operator.first_name, operator.date_joined, operator.last_login) == (
        "Ada",
        joined,
        last_login,
    )
    history = page_text(admin_client, f"/admin/auth/user/{operator.pk}/history/")
    assert "First name: — → Ada" in history
    # Only the record of their creation says when they joined; no save "changed" it.
    assert not re.search(r"Date joined: \d{4}-\d\d-\d\d [\d:]+ UTC →", history)


def test_a_password_changed_is_recorded_as_changed_never_its_hash(admin_client, monkeypatch):
    """The history keeps no hash: its record of a password changed says so in words, by
    whoever changed it, and not as a change in which nothing changed."""
    operator = get_user_model().objects.get(username="operator")
    answer = admin_client.post(
        f"/admin/auth/user/{operator.pk}/password/",
        {"password1": "A-new-pass-4821", "password2": "A-new-pass-4821", "usable_password": "true"},
    )
    assert answer.status_code == 302
    record = get_user_model().history.filter(id=operator.pk).latest("history_id")
    assert record.history_change_reason == (
        "Password changed (the password itself is never recorded)."
    )
    assert (record.history_actor_kind, record.history_actor) == ("user", "admin")
    history = page_text(admin_client, f"/admin/auth/user/{operator.pk}/history/")
    assert "admin (person) Password changed (the password itself is never recorded)." in history
    assert "pbkdf2" not in history and "A-new-pass" not in history
    # The next record of the person does not say it again.
    operator.refresh_from_db()
    operator.groups.clear()
    record = get_user_model().history.filter(id=operator.pk).latest("history_id")
    assert record.history_change_reason is None
    # By the command, as the command.
    monkeypatch.setattr(changepassword.Command, "_get_pass", lambda self, prompt="": "Zz-4821-x")
    call_command("changepassword", "operator", stdout=io.StringIO())
    record = get_user_model().history.filter(id=operator.pk).latest("history_id")
    assert (record.history_actor_kind, record.history_actor) == ("system", "changepassword")
    assert record.history_change_reason.startswith("Password changed")
    # A login that upgrades the hash writes no record.
    count = get_user_model().history.filter(id=operator.pk).count()
    operator.refresh_from_db()
    operator.save(update_fields=["password"])
    assert get_user_model().history.filter(id=operator.pk).count() == count


def test_an_id_past_the_column_chosen_in_a_form_is_refused_not_a_server_error(admin_client):
    operator = get_user_model().objects.get(username="operator")
    huge = "99999999999999999999"
    answer = posted_from_page(
        admin_client,
        f"/admin/auth/user/{operator.pk}/change/",
        change_form(operator) | {"groups": [huge], "change_reason": "x"},
    )
    assert answer.status_code == 200
    assert f"“{huge}” is not a valid value." in html.unescape(answer.text)
    operators = Group.objects.get(name=OPERATORS)
    answer = posted_from_page(
        admin_client,
        f"/admin/auth/group/{operators.pk}/change/",
        {"name": "operators", "permissions": [huge], "change_reason": "x"},
    )
    assert answer.status_code == 200
    assert list(operator.groups.all()) == [operators]


def test_a_migration_that_changes_a_role_records_it_in_the_group_s_history(demo_world, monkeypatch):
    """``sync_role_groups`` in a later migration, a role given one more permission: the
    group's history records it, by an upgrade of the platform, and verification finds the
    group as recorded (a migration's models write no history of their own)."""
    state = MigrationLoader(connection).project_state().apps
    extras = {**ROLE_EXTRA_PERMISSIONS, AUDITORS: [*ROLE_EXTRA_PERMISSIONS[AUDITORS]]}
    extras[AUDITORS].append(("audit", "view_chainverification"))
    monkeypatch.setattr(roles, "ROLE_EXTRA_PERMISSIONS", extras)
    auditors = Group.objects.get(name=AUDITORS)
    before = Group.history.filter(id=auditors.pk).count()
    others = {g.pk: Group.history.filter(id=g.pk).count() for g in Group.objects.all()}
    roles.sync_role_groups(state)
    assert auditors.permissions.filter(codename="view_chainverification").exists()
    record = Group.history.filter(id=auditors.pk).latest("history_id")
    assert Group.history.filter(id=auditors.pk).count() == before + 1
    assert (record.history_type, record.history_actor) == ("~", "migration")
    assert record.history_change_reason == "Permissions set to what the auditors role grants."
    assert set(record.permissions.values_list("permission_id", flat=True)) == set(
        auditors.permissions.values_list("pk", flat=True)
    )
    # The groups it left as they were have no new record.
    for group in Group.objects.exclude(pk=auditors.pk):
        assert Group.history.filter(id=group.pk).count() == others[group.pk]
    chain_seal()
    assert chain_verify().holds
    history = page_text(_admin(), f"/admin/auth/group/{auditors.pk}/history/")
    assert "an upgrade of the platform (system)" in history
    assert "Can view chain verification" in history


def test_seed_demo_syncing_the_roles_again_writes_one_record_of_a_changed_role(
    demo_world, monkeypatch
):
    extras = {**ROLE_EXTRA_PERMISSIONS, AUDITORS: [*ROLE_EXTRA_PERMISSIONS[AUDITORS]]}
    extras[AUDITORS].append(("audit", "view_chainverification"))
    monkeypatch.setattr(roles, "ROLE_EXTRA_PERMISSIONS", extras)
    auditors = Group.objects.get(name=AUDITORS)
    before = Group.history.filter(id=auditors.pk).count()
    total = Group.history.count()
    roles.sync_role_groups()
    assert Group.history.count() == total + 1
    record = Group.history.filter(id=auditors.pk).latest("history_id")
    assert Group.history.filter(id=auditors.pk).count() == before + 1
    assert record.permissions.filter(permission__codename="view_chainverification").exists()
    assert record.history_change_reason == "Permissions set to what the auditors role grants."
    roles.sync_role_groups()  # again: nothing changes, nothing recorded
    assert Group.history.count() == total + 1


def _admin() -> Client:
    admin = get_user_model().objects.create_superuser("root2", "root2@example.com", "x")
    client = Client()
    client.force_login(admin)
    return client


def test_a_permission_taken_off_a_group_in_the_database_is_named_by_verification(demo_world):
    """A group of sixty permissions, one taken off past the history: verification names it,
    not two lists cut short alike ("permissions is “Approvals | …”, recorded “Approvals | …”")."""
    auditors = Group.objects.get(name="auditors")
    chain_seal()
    assert chain_verify().holds
    taken = auditors.permissions.get(codename="view_user")
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM auth_group_permissions WHERE group_id = %s AND permission_id = %s",
            [auditors.pk, taken.pk],
        )
    found = chain_verify()
    assert not found.holds
    assert f"the live row of group #{auditors.pk} differs" in found.broken.what
    assert f"permissions lacks “{taken}”, which its record holds" in found.broken.what


def test_seeding_the_demo_again_records_no_change_of_its_people(demo_world):
    """``bin/start`` seeds the demo at every start: the people it keeps as they were get no
    record (each start read as a change of nothing by the seed_demo command), and one whose
    password it must issue anew is recorded as such, by that command."""
    people = get_user_model().history.count()
    call_command("seed_demo", stdout=io.StringIO())
    assert get_user_model().history.count() == people
    operator = get_user_model().objects.get(username="operator")
    operator.set_password("changed-elsewhere-4821")
    operator.save()
    call_command("seed_demo", stdout=io.StringIO())
    record = get_user_model().history.filter(id=operator.pk).latest("history_id")
    assert (record.history_actor, record.history_change_reason) == (
        "seed_demo",
        "Set back as the demo has it: staff, in the operators role. "
        "Password changed (the password itself is never recorded).",
    )


def test_seed_demo_records_each_person_it_makes_once_saying_why(db):
    """Every change to a person says why, as a policy's does: the demo's people were made
    with no reason, and given their group in a second record with none either."""
    call_command("seed_demo", stdout=io.StringIO())

    for username, role in (
        ("operator", "operators"),
        ("policy-owner", "policy owners"),
        ("auditor", "auditors"),
    ):
        person = get_user_model().objects.get(username=username)
        [record] = get_user_model().history.filter(id=person.pk)
        assert (record.history_type, record.history_actor) == ("+", "seed_demo")
        assert record.history_change_reason == f"Made for the demo, in the {role} role."
        assert [row.group.name for row in record.groups.all()] == [role]
        assert (record.is_staff, record.email) == (True, f"{username}@example.com")
    assert chain_verify().holds
