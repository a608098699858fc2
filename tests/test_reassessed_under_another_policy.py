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
from django.db import connection
from django.test.utils import CaptureQueriesContext
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


def moved_budget(campaign: str = "brand-search", to: str = "1050.00") -> None:
    """A campaign's budget moved (brand-search's 1000.00 → 1050.00), run: waiting
    reallocations are re-assessed."""
    raise_ = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": campaign, "new_daily_budget": to}}
    )
    assert proposal_execute(proposal_id=raise_.pk).status == ProposalStatus.EXECUTED


def optimizers_policy_added() -> None:
    """A policy more specific than "Budget reallocations" added: the optimizer's
    reallocations run without a person up to 20%."""
    Policy.objects.create(
        name="Reallocations by optimizer",
        action_type="budget_reallocation",
        agent=Agent.objects.get(name="optimizer"),
        auto_execute_max_magnitude=Decimal("0.20"),
    )


def test_a_reallocation_re_assessed_under_a_policy_added_since_names_it_and_its_first_routing(
    operator, optimizer, login
):
    waiting = evaluated(reallocation("280.00"))  # 28%: "Budget reallocations" asks a person
    assert waiting.status == ProposalStatus.PENDING_REVIEW
    optimizers_policy_added()
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


def test_every_time_on_a_re_assessed_proposals_page_is_written_to_the_second(operator, login):
    """Its status line's expiry, "Re-assessed at", its routing policy's "as saved on" and the
    earlier proposals' "Proposed" read "2026-12-06 18:41 UTC" beside decisions and a timeline
    that read "2026-12-06 18:41:07 UTC": the console writes every time one way."""
    earlier = evaluated(bid_adjustment("2.12"))  # on brand-search, as the reallocation
    waiting = evaluated(reallocation("280.00"))
    optimizers_policy_added()
    moved_budget()
    waiting.refresh_from_db()
    saved_on = Policy.history.get(history_id=waiting.verdict_policy_version).history_date

    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[waiting.pk]))
    text = page.content.decode()

    status = " ".join(
        html.unescape(
            re.sub(r"<[^>]+>", "", text.split("<strong>Status:</strong>")[1].split("</p>")[0])
        ).split()
    )
    expires = f"{waiting.review_expires_at:%Y-%m-%d %H:%M:%S} UTC"
    assert status == f"Pending review · 0 of 1 approval · expires {expires}"
    assert paragraph(text, "reassessed-under").startswith(
        f"Re-assessed at {waiting.reassessed_at:%Y-%m-%d %H:%M:%S} UTC under policy "
        "“Reallocations by optimizer”, version 1, which governs it now:"
    )
    assert paragraph(text, "routed-by").startswith(
        "First routed by policy “Budget reallocations” in its version 1, as saved on "
        f"{saved_on:%Y-%m-%d %H:%M:%S} UTC:"
    )
    earlier_row = text.split('id="earlier-proposals"')[1].split(f">#{earlier.pk}</a>")[1]
    assert earlier_row.split("</tr>")[0].endswith(
        f'<td data-label="Proposed">{earlier.created_at:%Y-%m-%d %H:%M:%S} UTC</td>'
    )


def from_display_retarget(amount: str) -> dict:
    """A reallocation that leaves brand-search alone (display-retarget's 300.00 budget)."""
    payload = {"from_campaign": "display-retarget", "to_campaign": "generic-search"}
    return reallocation(amount, payload={**payload, "amount": amount})


def queue_cells(client) -> dict[int, str]:
    """Each listed proposal's "magnitude / ceiling" cell, by id, as the queue shows it."""
    page = client.get(reverse("admin:approvals_proposal_changelist")).content.decode()
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S)
    cells = {}
    for row in rows:
        link = re.search(r"/admin/approvals/proposal/(\d+)/change/", row)
        cell = re.search(r'<td [^>]*class="field-magnitude_display"[^>]*>(.*?)</td>', row, re.S)
        if link and cell:
            cells[int(link.group(1))] = html.unescape(cell.group(1))
    return cells


def test_the_queue_judges_a_re_assessed_reallocation_by_the_version_that_governs_it_now(
    optimizer, login
):
    """Re-assessed under a policy added since, the queue still said "26.7% / 10.0%": the
    ceiling of the version that first routed it, beside the re-assessed magnitude, though its
    page says another version governs it now (up to 20.0%). It says that one's ceiling, and
    that it was re-assessed under it, as its page does."""
    waiting = evaluated(reallocation("280.00"))
    optimizers_policy_added()
    moved_budget()

    operator = login("operator")
    cell = queue_cells(operator)[waiting.pk]
    assert cell == "26.7% / 20.0%, re-assessed under “Reallocations by optimizer”, version 1"
    page = operator.get(reverse("admin:approvals_proposal_change", args=[waiting.pk]))
    text = " ".join(html.unescape(page.content.decode()).split())
    assert "26.7% / 20.0%, re-assessed under “Reallocations by optimizer”, version 1" in text
    assert "26.7% / 10.0%" not in text


def test_the_queue_says_a_reallocation_re_assessed_under_the_version_that_routed_it_was(
    optimizer, login
):
    """Re-assessed under the version that routed it, its ceiling is still that version's;
    its magnitude is no longer the one that routed it (28.0%), and the queue says so."""
    waiting = evaluated(reallocation("280.00"))
    untouched = evaluated(from_display_retarget("150.00"))
    moved_budget()

    cells = queue_cells(login("operator"))
    assert cells[waiting.pk] == "26.7% / 10.0%, re-assessed"
    assert cells[untouched.pk] == "50.0% / 10.0%"


def test_the_queue_reads_what_re_assessed_each_row_without_a_query_per_row(optimizer, login):
    """The policy version each re-assessed row is judged by is read with the page, not one
    query per row: three re-assessed rows cost the queue no more queries than one does."""
    first = evaluated(reallocation("280.00"))
    others = [evaluated(from_display_retarget(amount)) for amount in ("150.00", "100.00")]
    optimizers_policy_added()
    operator = login("operator")
    moved_budget()  # brand-search's: the first alone is re-assessed
    with CaptureQueriesContext(connection) as one:
        cells = queue_cells(operator)
    assert [pk for pk, cell in cells.items() if "re-assessed under" in cell] == [first.pk]
    moved_budget("display-retarget", "320.00")
    with CaptureQueriesContext(connection) as three:
        cells = queue_cells(operator)
    assert {pk for pk, cell in cells.items() if "re-assessed under" in cell} == {
        first.pk,
        *(other.pk for other in others),
    }, cells
    assert len(three.captured_queries) <= len(one.captured_queries)
