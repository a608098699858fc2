"""Why a proposal went to a person reads the same for its operator and its agent: the
console's "Why it came to a person, as optimizer proposed it" and the API's
``verdict.routed_reasons`` (which the Python client, the MCP server and the adapters tell the
model). They are the reasons of the routing that sent it to a person; for one the engine let
run and then re-routed to a person before executing (its source's budget cut meanwhile), that
re-routing, not its first routing, which let it run.

The console read the first routing: a 9% reallocation re-routed at 11.3% and then edited
showed the operator "Why it came to a person: 9.0% … is within the 10.0% auto-execute
ceiling", while its agent read "11.3% … exceeds the 10.0% auto-execute ceiling"."""

import html
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from hitl_client._tools import routed_told
from hitl_client.models import Proposal as ClientProposal

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from executors.runner import proposal_execute
from ledger.models import Campaign
from tests.conftest import reallocation
from tests.factories import evaluated

EXCEEDS = (
    "11.3% of brand-search's daily budget exceeds the 10.0% auto-execute ceiling of policy "
    "“Budget reallocations”."
)


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def console_routed_reasons(client, proposal: Proposal) -> list[str]:
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert page.status_code == 200
    listed = re.search(r'<ul id="routed-as-proposed">(.*?)</ul>', page.content.decode(), re.S)
    assert listed is not None, "the page does not say why it came to a person"
    return [html.unescape(item) for item in re.findall(r"<li>(.*?)</li>", listed.group(1))]


def test_a_proposal_re_routed_before_executing_then_edited_reads_the_same_everywhere(
    operator, optimizer, login
):
    moved = evaluated(reallocation("90.00"))  # 9% of 1000.00: its policy lets it run
    assert moved.status == ProposalStatus.APPROVED
    first = optimizer.get(f"/api/v1/proposals/{moved.pk}/").json()["verdict"]["reasons"]
    assert any("within the 10.0% auto-execute ceiling" in reason for reason in first)
    # Before it runs, brand-search's budget is cut: 90.00 of 800.00 is 11.3%, a person's.
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("800.00"))
    assert proposal_execute(proposal_id=moved.pk).status == ProposalStatus.PENDING_REVIEW
    re_routed = optimizer.get(f"/api/v1/proposals/{moved.pk}/").json()["verdict"]
    assert re_routed["reasons"][0].startswith("Re-routed to a person before executing:")
    assert EXCEEDS in re_routed["reasons"]

    proposal_approve(
        proposal_id=moved.pk,
        reviewer=operator,
        edited_payload={**moved.payload, "amount": "40.00"},  # 5.0%: within the ceiling
    )

    verdict = optimizer.get(f"/api/v1/proposals/{moved.pk}/").json()["verdict"]
    assert verdict["reasons"][0].startswith("Edited before approval to: move 40.00 USD/day")
    assert EXCEEDS not in verdict["reasons"]
    # Why it came to a person: its re-routing, not its first routing, which let it run.
    assert EXCEEDS in verdict["routed_reasons"]
    assert not any("within" in reason for reason in verdict["routed_reasons"])
    # The operator reads the same, and so does the model, through the client.
    for reader in ("operator", "auditor"):
        assert console_routed_reasons(login(reader), moved) == verdict["routed_reasons"]
    told, said = routed_told(
        ClientProposal.from_api(optimizer.get(f"/api/v1/proposals/{moved.pk}/").json())
    )
    assert told == verdict["routed_reasons"]
    assert said.startswith(f"Why it was sent to a person, as routed before that: {EXCEEDS}")


def test_an_edited_proposal_routed_once_reads_its_routing_everywhere(operator, optimizer, login):
    proposal = evaluated(reallocation("280.00"))  # 28%: a person's from the start
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=operator,
        edited_payload={**proposal.payload, "amount": "50.00"},
    )

    verdict = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()["verdict"]
    assert any("28.0% of brand-search" in reason for reason in verdict["routed_reasons"])
    assert console_routed_reasons(login("operator"), proposal) == verdict["routed_reasons"]
