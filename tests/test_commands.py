"""The commands a user or a script relies on: seed_demo and create_agent."""

import io
import json
import os
import stat
import subprocess
import sys
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from approvals.models import Agent, AgentAPIKey
from approvals.services.agents import agent_key_revoke
from audit.actors import Actor
from ledger.models import Account, Campaign
from notifications.models import Route
from policies.models import BrandGuidelines, Policy
from tests.conftest import REPO, database_url


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_seed_demo_builds_the_reference_world_and_running_it_again_changes_nothing_else():
    run("seed_demo", "--json")
    counts = (Campaign.objects.count(), Policy.objects.count(), Agent.objects.count())
    second = json.loads(run("seed_demo", "--json"))

    assert (Campaign.objects.count(), Policy.objects.count(), Agent.objects.count()) == counts
    assert {c.external_id: (c.daily_budget, c.bid) for c in Campaign.objects.all()} == {
        "brand-search": (Decimal("1000.00"), Decimal("2.00")),
        "generic-search": (Decimal("500.00"), Decimal("1.50")),
        "display-retarget": (Decimal("300.00"), Decimal("0.80")),
    }
    assert set(second["users"]) == {"operator", "policy-owner", "auditor"}
    assert set(second["agents"]) == {"optimizer", "copywriter"}
    users = get_user_model().objects
    for role, group in [("operator", "operators"), ("auditor", "auditors")]:
        user = users.get(username=second["users"][role]["username"])
        assert user.check_password(second["users"][role]["password"])
        assert list(user.groups.values_list("name", flat=True)) == [group]


def api_status(raw_key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client.get("/api/v1/campaigns/").status_code


def console_login_status(login: dict) -> int:
    """Log in on the console's own login page; 302 on to the queue means in."""
    answer = Client().post(
        "/admin/login/",
        {"username": login["username"], "password": login["password"], "next": "/admin/"},
    )
    return answer.status_code


@pytest.mark.django_db
def test_seed_demo_run_again_prints_the_same_credentials_and_they_keep_working(
    demo_credentials_file,
):
    first = json.loads(run("seed_demo", "--json"))
    second = json.loads(run("seed_demo", "--json"))  # as the next start does
    assert second == first

    for raw_key in first["agents"].values():
        assert api_status(raw_key) == 200
    for login in first["users"].values():
        assert console_login_status(login) == 302
    assert stat.S_IMODE(demo_credentials_file.stat().st_mode) == 0o600  # the owner's alone
    out = run("seed_demo")  # a person reads the same ones
    assert first["agents"]["optimizer"] in out and first["users"]["auditor"]["password"] in out


@pytest.mark.django_db
def test_seed_demo_replaces_only_what_no_longer_works():
    first = json.loads(run("seed_demo", "--json"))
    optimizer = Agent.objects.get(name="optimizer")
    agent_key_revoke(key=optimizer.api_keys.get(), actor=Actor.system("test"))
    operator = get_user_model().objects.get(username="operator")
    operator.set_password("changed-by-someone-else")
    operator.save()

    second = json.loads(run("seed_demo", "--json"))

    assert second["agents"]["copywriter"] == first["agents"]["copywriter"]
    assert second["users"]["auditor"] == first["users"]["auditor"]
    assert second["agents"]["optimizer"] != first["agents"]["optimizer"]
    assert second["users"]["operator"]["password"] != first["users"]["operator"]["password"]
    assert api_status(second["agents"]["optimizer"]) == 200
    assert console_login_status(second["users"]["operator"]) == 302
    assert api_status(first["agents"]["optimizer"]) == 401  # revoked stays revoked


@pytest.mark.django_db
def test_seed_demo_without_its_kept_file_issues_new_credentials_and_revokes_the_old(
    demo_credentials_file,
):
    first = json.loads(run("seed_demo", "--json"))
    demo_credentials_file.unlink()
    second = json.loads(run("seed_demo", "--json"))

    assert api_status(first["agents"]["optimizer"]) == 401
    assert api_status(second["agents"]["optimizer"]) == 200
    assert json.loads(run("seed_demo", "--json")) == second


@pytest.mark.django_db
def test_seed_demo_prints_logins_and_keys_for_a_person():
    out = run("seed_demo")
    assert "operator" in out and "optimizer" in out and "hitl_" in out


@pytest.mark.django_db(transaction=True)
def test_seed_demo_prints_the_console_where_the_web_server_listens(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "HITL_DATA_DIR": str(tmp_path),
        "PORT": "8123",
        "HITL_BIND": "127.0.0.1",
    }
    out = subprocess.run(
        [sys.executable, "manage.py", "seed_demo"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "Console logins (http://127.0.0.1:8123/admin/):" in out
    assert (tmp_path / "demo-credentials.json").exists()


@pytest.mark.parametrize(
    "bind, url",
    [
        ("0.0.0.0", "http://127.0.0.1:9000/admin/"),
        ("::", "http://[::1]:9000/admin/"),
        ("::1", "http://[::1]:9000/admin/"),
        ("192.0.2.7", "http://192.0.2.7:9000/admin/"),
    ],
)
@pytest.mark.django_db
def test_seed_demo_names_an_address_a_browser_can_open(settings, bind, url):
    settings.WEB_BIND, settings.WEB_PORT = bind, "9000"
    assert f"Console logins ({url}):" in run("seed_demo")


def test_create_agent_prints_the_key_alone_on_its_last_line(demo_world):
    out = run("create_agent", "researcher", "--kind", "research", "--account", "demo")
    key = out.strip().splitlines()[-1]
    assert key.startswith("hitl_") and " " not in key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/campaigns/").status_code == 200
    agent = Agent.objects.get(name="researcher")
    assert (agent.kind, list(agent.accounts.values_list("external_id", flat=True))) == (
        "research",
        ["demo"],
    )


def test_create_agent_with_a_callback_url_tells_the_secret_its_receiver_checks(
    demo_world, settings
):
    """An agent developer who gives ``--callback-url`` must check each event's signature
    (``hitl_client.verify_callback(secret, …)``); the secret was on the agent's page in the
    console alone, which only a superuser opens (none of seed_demo's logins may): the
    command that made the agent said nothing of it."""
    settings.OUTBOUND_ALLOW_PRIVATE = True  # a receiver on this machine, as in development
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "create_agent", "scout", "--kind", "research", "--account", "demo",
        "--callback-url", "http://127.0.0.1:9000/hitl", stdout=out, stderr=err,
    )  # fmt: skip

    agent = Agent.objects.get(name="scout")
    assert agent.callback_secret and f": {agent.callback_secret}\n" in err.getvalue()
    assert "verify_callback" in err.getvalue()
    assert agent.callback_secret not in out.getvalue()  # stdout: the key alone, for scripts
    assert out.getvalue().strip().startswith("hitl_")

    quiet = io.StringIO()  # without a callback URL there is no secret to hand anyone
    call_command(
        "create_agent", "quiet", "--kind", "research", "--account", "demo",
        stdout=io.StringIO(), stderr=quiet,
    )  # fmt: skip
    assert "secret" not in quiet.getvalue()


@pytest.mark.parametrize(
    "args, message",
    [
        (["x", "--kind", "research", "--account", "nope"], "No such account: nope"),
        (["optimizer", "--kind", "research", "--account", "demo"], "already exists"),
        (["bad name!", "--kind", "research", "--account", "demo"], "slug"),
    ],
)
def test_create_agent_refuses_bad_arguments_with_a_message(demo_world, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_agent", *args)
    assert Agent.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_after_seed_demo_a_migrate_in_the_same_process_still_runs_the_post_migrate_work(
    demo_world,
):
    """Seeding gives the role groups their permissions through Django's create_permissions,
    which needs each app's models module; it used to take them from every installed app for
    the rest of the process, so a migrate there afterwards ran no post-migrate handler (the
    content types, the permissions, the rules' version triggers)."""
    from policies.rules_version_triggers import unwatch

    unwatch(connection, {"auth_user_groups": ()})  # as a rebuilt table loses its triggers

    call_command("migrate", verbosity=0)

    token = "SELECT token FROM policies_rulesversion WHERE id = 1"
    with connection.cursor() as cursor:
        cursor.execute(token)
        before = cursor.fetchone()
        get_user_model().objects.get(username="auditor").groups.clear()
        cursor.execute(token)
        assert cursor.fetchone() != before  # the triggers are back


@pytest.mark.django_db
def test_seed_demo_says_why_it_made_each_record_of_the_demo_world(login):
    """Each record the seed makes says why in its history, as its people's do: a policy's
    version 1, the account, its campaigns, brand guidelines, routes, agents and their keys
    read as made with no reason given, and a route and an agent each in two records, the
    second (of its groups, of its accounts) with no reason either."""
    seeded = {
        Account: Account.objects.filter(external_id="demo"),
        Campaign: Campaign.objects.all(),
        Policy: Policy.objects.all(),
        BrandGuidelines: BrandGuidelines.objects.all(),
        Route: Route.objects.filter(name__startswith="Demo: "),
        Agent: Agent.objects.filter(name__in=["optimizer", "copywriter"]),
        AgentAPIKey: AgentAPIKey.objects.filter(agent__name__in=["optimizer", "copywriter"]),
    }
    for model, records in seeded.items():
        assert records.exists(), model
        for record in records:
            [made] = model.history.filter(id=record.pk)  # one record: made, saying why
            assert made.history_type == "+", record
            assert made.history_actor == "seed_demo", record
            assert made.history_change_reason.startswith(
                ("Made for the demo", "Issued for the demo.")
            ), (record, made.history_change_reason)

    bids = Policy.objects.get(action_type="bid_adjustment")
    history = login("auditor").get(reverse("admin:policies_policy_history", args=[bids.pk]))
    assert (
        "Made for the demo, one of its default policies: a bid adjustment auto-executes up to "
        "15%, and a campaign&#x27;s moves up to 25% within 1 day in all."
    ) in history.text
    creatives = Policy.objects.get(action_type="creative_deployment")
    [made] = creatives.history.all()
    assert made.history_change_reason == (
        "Made for the demo, one of its default policies: every creative deployment goes to "
        "a person."
    )
    [made] = Agent.history.filter(name="copywriter")
    assert made.history_change_reason == (
        "Made for the demo, its production agent, acting on account demo."
    )
    assert [row.account.external_id for row in made.accounts.all()] == ["demo"]  # made with it


@pytest.mark.django_db
def test_seed_demo_says_where_the_operators_emails_go(settings, tmp_path):
    """Without a mail server (EMAIL_HOST), the operators' emails are files on this machine:
    the start says where, rather than leaving whoever tries the demo to watch an inbox that
    nothing reaches; with one, it names the server."""
    settings.EMAIL_HOST = ""
    settings.EMAIL_FILE_PATH = str(tmp_path / "sent-mail")
    out = run("seed_demo")
    assert (
        "Email to the console's users is written as files to "
        f"{tmp_path / 'sent-mail'} (no EMAIL_HOST: no mail server is set)."
    ) in out

    settings.EMAIL_HOST, settings.EMAIL_PORT = "mail.example.com", 587
    assert "Email to the console's users goes through mail.example.com:587." in run("seed_demo")
