"""Autonomy rules saved before a rule had to judge at least one decision ("after at least 0
decisions") are raised to 1 on upgrade, said in their history, and their form saves again as
the policy owner left it."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from audit.chain import chain_seal, chain_verify
from feedback.models import AutonomyRules
from tests.conftest import posted_from_page
from tests.test_audit_migrations import audit_migrations_restored, migrate_to_latest  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("feedback", "0021_bounded_integers")


def test_rules_of_at_least_0_decisions_are_raised_to_1_on_upgrade_and_say_so(
    login,
    demo_world,
    audit_migrations_restored,  # noqa: F811
):
    rules = AutonomyRules.current()
    rules.widen_min_decisions, rules.narrow_min_decisions = 0, 7
    rules._change_reason = "Judge every record."
    rules.save()  # as the form let a policy owner save it before
    MigrationExecutor(connection).migrate([BEFORE])

    migrate_to_latest()

    rules = AutonomyRules.current()
    assert (rules.widen_min_decisions, rules.narrow_min_decisions) == (1, 7)
    last = AutonomyRules.history.latest("history_id")
    assert last.widen_min_decisions == 1
    assert last.history_change_reason.startswith("at least 0 decisions raised to at least 1")
    assert chain_seal() > 0
    assert chain_verify().holds  # the history ends with what the row holds
    url = reverse("admin:feedback_autonomyrules_change", args=[rules.pk])
    owner = login("policy-owner")
    form = owner.get(url).context["adminform"].form
    unchanged = {name: form[name].value() for name in form.fields} | {
        "is_active": "on",
        "change_reason": "Looked at them.",
    }
    assert posted_from_page(owner, url, unchanged).status_code == 302  # saved
