"""An integer a policy owner types in the console is bounded by the form, the same on SQLite
and PostgreSQL: a policy's priority of 99999999999 was stored on SQLite, where PostgreSQL's
range check refused it; the autonomy rules' decision counts likewise. Refused with a message
saying the bound, and nothing saved."""

import html
import re

import pytest
from django.test import Client
from django.urls import reverse

from feedback.models import AutonomyRules
from policies.models import Policy
from tests.test_policy_tuning import form_data


@pytest.fixture
def owner(login) -> Client:
    return login("policy-owner")


def text_of(answer) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", answer.content.decode()))


@pytest.mark.parametrize(
    ("priority", "said"),
    [
        ("99999999999", "Ensure this value is less than or equal to 1000000."),
        ("1000001", "Ensure this value is less than or equal to 1000000."),
        ("-1000001", "Ensure this value is greater than or equal to -1000000."),
    ],
)
def test_a_policy_priority_out_of_bounds_is_refused_saying_the_bound(owner, priority, said):
    url = reverse("admin:policies_policy_add")
    data = {
        "name": "Huge priority",
        "action_type": "bid_adjustment",
        "is_active": "on",
        "priority": priority,
        "auto_execute_max_magnitude": "5",
        "change_reason": "Trying a priority.",
    }
    answer = owner.post(url, form_data(owner, url, **data))
    assert answer.status_code == 200
    assert said in text_of(answer)
    assert not Policy.objects.filter(name="Huge priority").exists()


def test_a_policy_priority_at_the_bound_is_saved(owner):
    url = reverse("admin:policies_policy_add")
    data = {
        "name": "Top priority",
        "action_type": "bid_adjustment",
        "is_active": "on",
        "priority": "1000000",
        "auto_execute_max_magnitude": "5",
        "change_reason": "The highest there is.",
    }
    owner.post(url, form_data(owner, url, **data))
    assert Policy.objects.get(name="Top priority").priority == 1_000_000


@pytest.mark.parametrize("field", ["widen_min_decisions", "narrow_min_decisions"])
def test_an_autonomy_rules_decision_count_out_of_bounds_is_refused(owner, field):
    rules = AutonomyRules.objects.first() or AutonomyRules.objects.create()
    url = reverse("admin:feedback_autonomyrules_change", args=[rules.pk])
    before = getattr(rules, field)
    answer = owner.post(
        url, form_data(owner, url, **{field: "99999999999", "change_reason": "Trying."})
    )
    assert answer.status_code == 200
    assert "Ensure this value is less than or equal to 1000000." in text_of(answer)
    rules.refresh_from_db()
    assert getattr(rules, field) == before
