"""A policy that routed proposals cannot be deleted: their records name it as the policy that
decided them. Its delete page says so as it is (how many it routed, the first of them, and to
switch it off instead), not Django's "would result in deleting related objects, but your
account doesn't have permission to delete … proposal", which read as if the deletion would
take proposals with it and only a permission stood in the way."""

import html

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from policies.models import Policy
from tests.conftest import reallocation
from tests.factories import evaluated


@pytest.fixture
def administrator(demo_world) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "x"))
    return client


def reallocations() -> Policy:
    return Policy.objects.get(action_type="budget_reallocation", is_draft=False)


def test_the_delete_page_of_a_policy_that_routed_proposals_says_it_is_kept_for_them(
    administrator,
):
    policy = reallocations()
    first = evaluated(reallocation("280.00"))
    evaluated(reallocation("120.00"))
    url = reverse("admin:policies_policy_delete", args=[policy.pk])

    page = administrator.get(url)

    assert page.status_code == 200
    text = html.unescape(page.content.decode())
    assert "Cannot delete policy" in text
    assert "permission" not in text
    assert "would result in deleting" not in text
    assert (
        f"Policy “{policy}” routed 2 proposals, whose records name it as the policy that "
        "decided them: it cannot be deleted." in text
    )
    assert reverse("admin:approvals_proposal_change", args=[first.pk]) in text
    assert "switch it off" in text
    assert reverse("admin:policies_policy_change", args=[policy.pk]) in text

    answer = administrator.post(url, {"post": "yes", "change_reason": "Tidying up."})

    assert answer.status_code == 200
    assert "it cannot be deleted" in html.unescape(answer.content.decode())
    assert Policy.objects.filter(pk=policy.pk).exists()


def test_a_policy_that_routed_nothing_is_still_deleted_with_its_reason(administrator):
    spare = Policy.objects.create(name="Spare", action_type="status_change", priority=5)
    url = reverse("admin:policies_policy_delete", args=[spare.pk])

    assert "will be deleted" in html.unescape(administrator.get(url).content.decode())
    answer = administrator.post(url, {"post": "yes", "change_reason": "Never used."})

    assert answer.status_code == 302
    assert not Policy.objects.filter(pk=spare.pk).exists()
    assert Policy.history.filter(id=spare.pk).latest("history_id").history_change_reason == (
        "Never used."
    )
