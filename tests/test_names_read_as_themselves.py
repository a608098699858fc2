"""A name is how operators and auditors tell one record from another: which policy routed a
proposal ("Routed by policy “Bid adjustments”"), which route told whom, which role a route
tells, which account and campaign a proposal is on. A name that would show as another one's
is refused; a name written in another script is a name like any other."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from ledger.models import Account, Campaign
from notifications.models import Route
from policies.models import Policy
from tests.test_policy_ownership import form_data

LOOK_ALIKES = [
    "Bid adjustments\u200b",  # a zero-width space after the demo policy's name
    "Bid adjustm\u0435nts",  # a Cyrillic "е"
    "\u202estnemtsujda diB",  # reversed by a right-to-left override: reads "Bid adjustments"
    "Bid  adjustments",
]


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_a_policy_named_as_it_would_show_as_another_is_refused(login, demo_world, name):
    """A policy owner added a policy scoped to one agent, auto-executing its every bid
    move, named "Bid adjustments" and a zero-width space: the proposals it let run said
    "Routed by policy “Bid adjustments”", the demo's vetted policy as far as any reader
    could tell. Refused, saying why; nothing saved."""
    client = login("policy-owner")
    url = reverse("admin:policies_policy_add")
    before = Policy.objects.count()

    page = client.post(
        url,
        form_data(
            client,
            url,
            name=name,
            action_type="bid_adjustment",
            is_active="on",
            auto_execute_max_magnitude="1000",
            always_review=False,
            priority="7",  # beside the demo's own, which covers every bid adjustment
        ),
    )

    assert page.status_code == 200  # the form again, saying why
    assert "would show as another name" in page.text
    assert Policy.objects.count() == before


def test_a_policy_named_in_another_script_is_taken(login, demo_world):
    client = login("policy-owner")
    url = reverse("admin:policies_policy_add")

    page = client.post(
        url,
        form_data(
            client, url, name="Ρυθμίσεις προσφορών", action_type="bid_adjustment", priority="7"
        ),
    )

    assert page.status_code == 302, page.text
    assert Policy.objects.filter(name="Ρυθμίσεις προσφορών").exists()


def test_a_policy_named_so_before_the_check_still_has_its_other_settings_changed(login, demo_world):
    """A policy whose name was saved before the check (two spaces) could not have its
    ceiling changed until someone renamed it: every save was refused for the name. Its
    name unchanged, the save goes through; renamed to another look-alike, it is refused."""
    policy = Policy.objects.get(name="Bid adjustments")
    policy.name = "Bid  adjustments"
    policy.save()
    client = login("policy-owner")
    url = reverse("admin:policies_policy_change", args=[policy.pk])

    page = client.post(url, form_data(client, url, auto_execute_max_magnitude="5"))  # per cent

    assert page.status_code == 302, page.text
    policy.refresh_from_db()
    assert policy.auto_execute_max_magnitude == Decimal("0.05")
    page = client.post(url, form_data(client, url, name="Bid adjustments\u200b"))
    assert "would show as another name" in page.text
    assert Policy.objects.get(pk=policy.pk).name == "Bid  adjustments"


def administrator() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("admin", "admin@example.com"))
    return client


def route_values() -> dict:
    return {
        "is_active": "on",
        "action_type": "budget_reallocation",
        "groups": [Group.objects.get(name="operators").pk],
        "users": [],
        "delivery": "immediately",
    }


def account_values() -> dict:
    return {"external_id": "shop-2", "channel": "google_ads", "currency": "EUR"}


def campaign_values() -> dict:
    return {
        "account": Account.objects.get(external_id="demo").pk,
        "external_id": "spring-2",
        "daily_budget": "100",
        "bid": "1.20",
        "bidding_strategy": "manual_cpc",
        "status": "active",
    }


# Where each kind of name is typed, by whom, and what else its form needs.
NAMED_IN_CONSOLE = {
    "route": ("admin:notifications_route_add", Route, "policy-owner", route_values),
    "account": ("admin:ledger_account_add", Account, None, account_values),
    "campaign": ("admin:ledger_campaign_add", Campaign, None, campaign_values),
    "role": ("admin:auth_group_add", Group, None, lambda: {"permissions": []}),
}


def named_in_console(login, kind: str, name: str):
    """The add page of ``kind`` posted with ``name`` typed in, by whom may add one."""
    url_name, model, username, values = NAMED_IN_CONSOLE[kind]
    client = login(username) if username else administrator()
    url = reverse(url_name)
    return client.post(url, form_data(client, url, name=name, **values())), model


@pytest.mark.parametrize("kind", NAMED_IN_CONSOLE)
@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_a_route_account_campaign_or_role_named_as_it_would_show_as_another_is_refused(
    login, kind, name
):
    """A route named "Bid adjustments" and a zero-width space told the operators beside the
    one they knew by that name; a role named "operators" with a Cyrillic "о" read, on a
    route's page, as the operators. Refused, saying why; nothing saved."""
    model = NAMED_IN_CONSOLE[kind][1]
    before = model.objects.count()

    page, _ = named_in_console(login, kind, name)

    assert page.status_code == 200  # the form again, saying why
    assert "would show as another name" in page.text
    assert model.objects.count() == before


@pytest.mark.parametrize("kind", NAMED_IN_CONSOLE)
@pytest.mark.parametrize("name", ["Ρυθμίσεις προσφορών", "コンバージョン"])
def test_a_route_account_campaign_or_role_named_in_another_script_is_taken(login, kind, name):
    page, model = named_in_console(login, kind, name)

    assert page.status_code == 302, page.context["adminform"].form.errors
    assert model.objects.filter(name=name).exists()


# Django's own check takes any script's letters, and refuses an invisible character already.
@pytest.mark.parametrize("username", ["operat\u043er", "\u03bfperator"])  # Cyrillic, Greek "о"
def test_a_person_named_as_they_would_show_as_another_is_refused(demo_world, username):
    """Records name a person by username ("Approved by operator"): one added as "operatоr",
    with a Cyrillic "о", approved as the operator to every reader of the history."""
    client = administrator()
    url = reverse("admin:auth_user_add")
    before = get_user_model().objects.count()

    page = client.post(url, person_values(client, url, username))

    assert page.status_code == 200  # the form again, saying why
    assert "would show as another name" in page.text
    assert get_user_model().objects.count() == before


def test_a_person_named_in_another_script_is_taken(demo_world):
    client = administrator()
    url = reverse("admin:auth_user_add")

    page = client.post(url, person_values(client, url, "σοφία"))

    assert page.status_code == 302, page.context["adminform"].form.errors
    assert get_user_model().objects.filter(username="σοφία").exists()


def person_values(client: Client, url: str, username: str) -> dict:
    password = "correct horse battery staple 7"
    return form_data(
        client,
        url,
        username=username,
        usable_password="true",
        password1=password,
        password2=password,
        groups=[],
        user_permissions=[],
    )
