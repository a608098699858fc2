"""The commands a user or a script relies on: seed_demo and create_agent."""

import io
import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from approvals.models import Agent
from ledger.models import Campaign
from policies.models import Policy


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_seed_demo_builds_the_reference_world_and_running_it_again_changes_nothing_else():
    first = json.loads(run("seed_demo", "--json"))
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
    # Keys are shown once, so each run issues fresh ones; the previous run's stop working.
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {first['agents']['optimizer']}")
    assert client.get("/api/v1/campaigns/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {second['agents']['optimizer']}")
    assert client.get("/api/v1/campaigns/").status_code == 200


@pytest.mark.django_db
def test_seed_demo_prints_logins_and_keys_for_a_person():
    out = run("seed_demo")
    assert "operator" in out and "optimizer" in out and "hitl_" in out


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
