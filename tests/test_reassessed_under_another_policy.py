"""A waiting reallocation re-assessed after its campaigns' budgets moved is evaluated again
under the policies in force (SPEC: the proposal lifecycle). Where a more specific policy was
added since, its reasons become that policy's verdict's: the agent's ``verdict.policy`` and the
console name that policy, in that version, and the one that first routed it beside it, not
the routing one alone beside reasons it did not give."""

import html
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from approvals.models import Agent, Proposal, ProposalStatus
from executors.runner import proposal_execute
from policies.models import Policy
from tests.conftest import bid_adjustment, reallocation
from tests.factories import evaluated


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def paragraph(page: str, id_: str) -> str:
    found = re.search(rf'<p id="{id_}">(.*?)</p>', page, re.S)
    assert found, f"no #{id_} on the page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


def moved_budget() -> None:
    """brand-search's budget 1000.00 → 1050.00, run: waiting reallocations are re-assessed."""
    raise_ = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "brand-search", "new_daily_budget": "1050.00"}}
    )
    assert proposal_execute(proposal_id=raise_.pk).status == ProposalStatus.EXECUTED


def test_a_reallocation_re_assessed_under_a_policy_added_since_names_it_and_its_first_routing(
    operator, optimizer, login
):
    waiting = evaluated(reallocation("280.00"))  # 28%: "Budget reallocations" asks a person
    assert waiting.status == ProposalStatus.PENDING_REVIEW
    Policy.objects.create(
        name="Reallocations by optimizer",
        action_type="budget_reallocation",
        agent=Agent.objects.get(name="optimizer"),
        auto_execute_max_magnitude=Decimal("0.20"),
    )
    moved_budget()

    waiting.refresh_from_db()
    assert waiting.status == ProposalStatus.PENDING_REVIEW
    assert any("Reallocations by optimizer" in reason for reason in waiting.verdict_reasons)

    verdict = optimizer.get(f"/api/v1/proposals/{waiting.pk}/").json()["verdict"]
    # The verdict whose reasons it carries was reached under the optimizer's policy.
    assert verdict["policy"]["name"] == "Reallocations by optimizer"
    assert verdict["policy"]["number"] == 1
    assert verdict["routed_by"]["name"] == "Budget reallocations"
    assert verdict["reassessed_at"] is not None
    listed = optimizer.get("/api/v1/proposals/").json()["results"]
    assert next(p for p in listed if p["id"] == waiting.pk)["verdict"] == verdict

    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[waiting.pk]))
    text = page.content.decode()
    under = paragraph(text, "reassessed-under")
    assert "under policy “Reallocations by optimizer”, version 1, which governs it now" in under
    assert "runs without a person up to 20.0%" in under
    routed = paragraph(text, "routed-by")
    assert routed.startswith("First routed by policy “Budget reallocations” in its version 1")


def test_a_reallocation_re_assessed_under_the_policy_that_routed_it_says_only_that_one(
    optimizer, login
):
    waiting = evaluated(reallocation("280.00"))
    moved_budget()

    waiting = Proposal.objects.get(pk=waiting.pk)
    assert waiting.reassessed_at is not None
    verdict = optimizer.get(f"/api/v1/proposals/{waiting.pk}/").json()["verdict"]
    assert verdict["policy"]["name"] == verdict["routed_by"]["name"] == "Budget reallocations"
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[waiting.pk]))
    assert 'id="reassessed-under"' not in page.content.decode()
    assert paragraph(page.content.decode(), "routed-by").startswith("Routed by policy")
