"""Where an account's approved actions are sent is an administrator's to set: a policy owner
caps spending but cannot redirect execution, and nobody else sees the signing secret."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from ledger.models import Account, Campaign
from tests.conftest import posted_from_page


def test_only_an_administrator_sets_the_execution_endpoint_and_sees_its_secret(login):
    account = Account.objects.get(external_id="demo")
    url = reverse("admin:ledger_account_change", args=[account.pk])
    for role in ("policy-owner", "operator", "auditor"):
        page = login(role).get(url)
        assert page.status_code == 200
        assert 'name="execution_endpoint"' not in page.text
        assert page.text.count("Execution endpoint") == 1, role  # shown once, read-only
        assert account.execution_secret not in page.text

    posted_from_page(
        login("policy-owner"),
        url,
        {"max_total_daily_budget": "5000", "execution_endpoint": "https://evil.example/x"},
    )
    account.refresh_from_db()
    assert account.execution_endpoint == ""

    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("admin"))
    page = admin.get(url)
    assert 'name="execution_endpoint"' in page.text
    assert account.execution_secret in page.text


@pytest.mark.parametrize(
    "model, cap", [(Account, "max_total_daily_budget"), (Campaign, "max_daily_budget")]
)
def test_a_budget_cap_below_zero_is_refused_and_changes_nothing(login, model, cap):
    # A policy owner's "-5" was saved, and the history read "Max daily budget: not set →
    # -5.00": a cap that no budget could meet, blocking every budget move.
    record = model.objects.get(external_id="demo" if model is Account else "brand-search")
    url = reverse(f"admin:ledger_{model._meta.model_name}_change", args=[record.pk])
    owner = login("policy-owner")

    refused = posted_from_page(owner, url, {cap: "-5", "change_reason": "Tighten it."})

    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors == {
        cap: ["Ensure this value is greater than or equal to 0."]
    }
    record.refresh_from_db()
    assert getattr(record, cap) is None
    assert record.history.count() == 1
    # A cap set says why, as a policy's change does: the reason is recorded with it.
    unexplained = posted_from_page(owner, url, {cap: "0"})
    assert unexplained.context["adminform"].form.errors == {
        "change_reason": ["This field is required."]
    }
    saved = posted_from_page(owner, url, {cap: "0", "change_reason": "Spend paused for the audit."})
    assert saved.status_code == 302  # nothing may be spent: a cap
    assert record.history.latest("history_id").history_change_reason == (
        "Spend paused for the audit."
    )
