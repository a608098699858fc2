"""The console's permission choosers (a role's, a person's) offer what the console uses: no
permission of a history model ("Can change historical user"), which no admin shows and
nothing asks for; and the roles hold none."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from approvals.roles import AUDITORS, OPERATORS, POLICY_OWNERS


@pytest.fixture
def admin_client(demo_world) -> Client:
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "x")
    client = Client()
    client.force_login(admin)
    return client


def offered(page, field: str) -> list[str]:
    return [
        f"{p.content_type.app_label}.{p.codename}"
        for p in page.context["adminform"].form.fields[field].queryset
    ]


def test_a_roles_permission_chooser_offers_no_permission_of_a_history_model(admin_client):
    operators = Group.objects.get(name=OPERATORS)
    page = admin_client.get(f"/admin/auth/group/{operators.pk}/change/")
    assert page.status_code == 200
    choices = offered(page, "permissions")
    assert "policies.change_policy" in choices and "approvals.decide_proposal" in choices
    assert not [name for name in choices if "historical" in name]
    assert "Can change historical user" not in page.text
    assert "Can view historical policy" not in page.text


def test_a_persons_permission_chooser_offers_no_permission_of_a_history_model(admin_client):
    person = get_user_model().objects.get(username="operator")
    page = admin_client.get(f"/admin/auth/user/{person.pk}/change/")
    assert page.status_code == 200
    choices = offered(page, "user_permissions")
    assert "auth.view_user" in choices
    assert not [name for name in choices if "historical" in name]
    assert "Can change historical user" not in page.text


def test_the_roles_hold_no_permission_of_a_history_model(demo_world):
    for role in (OPERATORS, POLICY_OWNERS, AUDITORS):
        held = Group.objects.get(name=role).permissions.values_list("codename", flat=True)
        assert "view_policy" in held
        assert not [codename for codename in held if "historical" in codename], role
