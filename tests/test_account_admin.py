"""Where an account's approved actions are sent is an administrator's to set: a policy owner
caps spending but cannot redirect execution, and nobody else sees the signing secret."""

from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from ledger.models import Account


def test_only_an_administrator_sets_the_execution_endpoint_and_sees_its_secret(login):
    account = Account.objects.get(external_id="demo")
    url = reverse("admin:ledger_account_change", args=[account.pk])
    for role in ("policy-owner", "operator", "auditor"):
        page = login(role).get(url)
        assert page.status_code == 200
        assert 'name="execution_endpoint"' not in page.text
        assert page.text.count("Execution endpoint") == 1, role  # shown once, read-only
        assert account.execution_secret not in page.text

    login("policy-owner").post(
        url, {"max_total_daily_budget": "5000", "execution_endpoint": "https://evil.example/x"}
    )
    account.refresh_from_db()
    assert account.execution_endpoint == ""

    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("admin"))
    page = admin.get(url)
    assert 'name="execution_endpoint"' in page.text
    assert account.execution_secret in page.text
