"""Why a proposal went to a person stays what its agent reads after a re-assessment (a
reviewer's edit, its figures moved) replaced its verdict's reasons with its own. An amount
edited down from 28% to 5% read, in ``verdict.reasons``, "… is within the 10.0%
auto-execute ceiling" beside ``outcome: review``: the agent was told its proposal was within
the ceiling and not why a person was asked, which the console keeps ("Why it came to a
person, as optimizer proposed it"). ``verdict.routed_reasons`` keeps it, in the API, the
Python client, the MCP server and the framework adapters."""

import pytest
from django.contrib.auth import get_user_model
from hitl_client._tools import outcome_report
from hitl_client.mcp import proposal_view
from hitl_client.models import Proposal as ClientProposal

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_reject
from executors.runner import proposal_execute
from policies.models import KillSwitch, Policy
from tests.conftest import bid_adjustment, reallocation
from tests.factories import evaluated

ROUTED_28 = (
    "28.0% of brand-search's daily budget exceeds the 10.0% auto-execute ceiling of policy "
    "“Budget reallocations”."
)
CUMULATIVE_28 = (
    "brand-search's daily budget would move -28.0% within 1 day, over the 25.0% cumulative "
    "ceiling of policy “Budget reallocations”, with no other move changing it."
)


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def first_reasons(proposal: Proposal) -> list[str]:
    return (
        Proposal.history.filter(id=proposal.pk)
        .exclude(verdict_outcome="")
        .earliest("history_id")
        .verdict_reasons
    )


def test_an_amount_edited_within_the_ceiling_still_says_why_a_person_was_asked(operator, optimizer):
    proposal = evaluated(reallocation("280.00"))  # 28%: "Budget reallocations" asks a person
    routed = first_reasons(proposal)
    assert any("exceeds the 10.0% auto-execute ceiling" in reason for reason in routed)
    submitted = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()["verdict"]
    assert submitted["routed_reasons"] == submitted["reasons"] == routed

    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=operator,
        edited_payload={**proposal.payload, "amount": "50.00"},
    )

    verdict = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()["verdict"]
    assert verdict["outcome"] == "review"
    # What it reads of the edited action: within the ceiling, as before.
    assert verdict["reasons"][0].startswith("Edited before approval to: move 50.00 USD/day")
    assert any("within" in reason for reason in verdict["reasons"][1:])
    assert not any("exceeds" in reason for reason in verdict["reasons"])
    # And why a person was asked, as its agent proposed it.
    assert verdict["routed_reasons"] == routed
    listed = optimizer.get("/api/v1/proposals/").json()["results"]
    assert next(p for p in listed if p["id"] == proposal.pk)["verdict"] == verdict


def test_a_kill_switch_released_before_the_edit_is_still_why_it_went_to_a_person(
    operator, optimizer
):
    switch = KillSwitch.objects.create(scope="global", reason="Tracking outage.")
    proposal = evaluated(bid_adjustment("2.12"))  # 6%: a person only for the kill switch
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    routed = first_reasons(proposal)
    assert any("Tracking outage." in reason for reason in routed)
    switch.engaged = False
    switch.save()

    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=operator,
        edited_payload={**proposal.payload, "new_bid": "2.10"},
    )

    verdict = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()["verdict"]
    assert verdict["outcome"] == "review"
    assert not any("Tracking outage." in reason for reason in verdict["reasons"])
    assert verdict["routed_reasons"] == routed


def test_the_client_mcp_and_adapters_tell_why_it_went_to_a_person(operator, optimizer):
    """Under a two-person rule, one reviewer edits and approves: it waits for a second. The
    MCP server's view and a blocking wait's report say why it went to a person, beside the
    edited action's reasons; rejected by the second, the report keeps it too."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = evaluated(reallocation("280.00"))
    routed = first_reasons(proposal)
    assert routed[:2] == [ROUTED_28, CUMULATIVE_28]
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=operator,
        edited_payload={**proposal.payload, "amount": "50.00"},
    )

    answer = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
    assert answer["status"] == "pending_review"
    read = ClientProposal.from_api(answer)
    assert not any(ROUTED_28 in reason for reason in read.verdict.reasons)
    assert read.verdict.routed_reasons == routed
    said = f"Why it was sent to a person, as routed before that: {' '.join(routed)}"
    view = proposal_view(read)
    assert view["routed_reasons"] == routed
    # After the edit, field by field, which the next step begins with.
    assert view["next_step"].startswith("Reviewer 1 edited it (amount: 280.00 → 50.00).")
    assert said in view["next_step"]
    report = outcome_report(read)
    assert report["routed_reasons"] == routed
    assert said in report["message"]

    second = get_user_model().objects.create_user("second", is_staff=True)
    second.groups.add(operator.groups.get())
    proposal_reject(
        proposal_id=proposal.pk, reviewer=second, reason_code="too_aggressive", note="No."
    )
    rejected = outcome_report(
        ClientProposal.from_api(optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json())
    )
    assert rejected["status"] == "rejected"
    assert rejected["routed_reasons"] == routed


def test_reasons_not_replaced_are_not_told_twice(optimizer):
    proposal = evaluated(reallocation("280.00"))
    read = ClientProposal.from_api(optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json())
    assert read.verdict.routed_reasons == read.verdict.reasons == first_reasons(proposal)
    assert read.verdict.reasons[:2] == [ROUTED_28, CUMULATIVE_28]
    assert "routed_reasons" not in proposal_view(read)
    assert "routed_reasons" not in outcome_report(read)
    # From a server that does not say: nothing invented.
    older = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
    del older["verdict"]["routed_reasons"]
    assert ClientProposal.from_api(older).verdict.routed_reasons is None


def test_a_superseded_proposal_keeps_why_it_went_to_a_person_not_that_it_was_superseded(
    optimizer,
):
    """Its supersession is what happened to it after it was routed, said first in its
    reasons; ``routed_reasons`` stays why it was routed (it read "Superseded: …" among them)."""
    big_raise = evaluated(bid_adjustment("2.50"))  # +25%: waits for a person
    small_raise = evaluated(bid_adjustment("2.10"))  # +5%: the engine approves it
    routed = first_reasons(big_raise)
    assert proposal_execute(proposal_id=small_raise.pk).status == ProposalStatus.EXECUTED

    verdict = optimizer.get(f"/api/v1/proposals/{big_raise.pk}/").json()["verdict"]
    assert verdict["reasons"][0].startswith("Superseded: brand-search's bid is 2.10, was 2.00")
    assert verdict["routed_reasons"] == routed
    assert not any(reason.startswith("Superseded") for reason in verdict["routed_reasons"])
    listed = optimizer.get("/api/v1/proposals/?status=superseded").json()["results"]
    assert next(p for p in listed if p["id"] == big_raise.pk)["verdict"] == verdict
