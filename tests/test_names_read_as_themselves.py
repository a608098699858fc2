"""A policy's name is how operators and auditors tell which policy routed a proposal ("Routed
by policy “Bid adjustments”"): a name that would show as another one's is refused."""

import pytest
from django.urls import reverse

from policies.models import Policy
from tests.test_policy_ownership import form_data


@pytest.mark.parametrize(
    "name",
    [
        "Bid adjustments\u200b",  # a zero-width space after the demo policy's name
        "Bid adjustm\u0435nts",  # a Cyrillic "е"
        "\u202estnemtsujda diB",  # reversed by a right-to-left override: reads "Bid adjustments"
        "Bid  adjustments",
    ],
)
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
