"""A reviewer's edit of a proposal that has not executed, as its agent is told it: field by
field against what it proposed, as an executed one's edit is told, by the client's report
(``outcome_report``, which the framework adapters give the model) and the MCP server's view.
Under a two-person rule an edit comes with the first approval and the proposal keeps waiting
for a second reviewer: the agent was told "1 of the 2 approvals it needs is in" and nothing of
the edit, though the action a second reviewer now decides is not the one it proposed."""

import asyncio

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from hitl_client._tools import outcome_report
from hitl_client.mcp import proposal_view
from hitl_client.models import Proposal as HitlProposal

from approvals.services.decisions import proposal_approve, proposal_reject
from policies.models import Policy
from tests.conftest import reallocation
from tests.factories import evaluated
from tests.test_mcp import call, run_agent

PROPOSED = {"from_campaign": "brand-search", "to_campaign": "generic-search", "amount": "280.00"}
EDITED = {**PROPOSED, "amount": "200.00"}
EDIT_SAID = (
    "Reviewer 1 edited it (amount: 280.00 → 200.00). A decision now is on the edited "
    "version: it is what would run."
)
# Why it went to a person, kept from its routing once the edit's re-assessment replaced it.
ROUTED_SAID = "Why it was sent to a person, as routed before that: "


@pytest.fixture
def two_person_rule(demo_world):
    policy = Policy.objects.get(action_type="budget_reallocation", account=None, agent=None)
    policy.required_approvals = 2
    policy.save()


def as_agent_reads(agent_client, proposal_id: int) -> HitlProposal:
    body = agent_client("optimizer").get(f"/api/v1/proposals/{proposal_id}/").json()
    return HitlProposal.from_api(body)


@pytest.mark.usefixtures("two_person_rule")
def test_an_edit_waiting_for_a_second_reviewer_is_told_field_by_field(agent_client, operators):
    first, second = operators
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=first, edited_payload=EDITED)

    waiting = as_agent_reads(agent_client, proposal.pk)
    told = outcome_report(waiting)

    assert waiting.status == "pending_review"
    assert told["edited"] == {"proposed": PROPOSED, "payload": EDITED}
    [approval] = waiting.decisions
    # The edit first; then why it was sent to a person (``routed_reasons``), and the round.
    assert told["message"].startswith(
        f"Proposal #{proposal.pk} waits for a human decision; it has not executed yet, but it "
        f"still may: do not propose it again. {EDIT_SAID} "
    )
    assert ROUTED_SAID in told["message"]
    assert (
        f"1 of the 2 approvals it needs is in: Reviewer 1 approved it at "
        f"{approval.raw['decided_at']}. It still waits for a second reviewer's approval."
    ) in told["message"]
    view = proposal_view(waiting)
    assert view["edited"] == told["edited"]
    assert view["next_step"].startswith(f"{EDIT_SAID} {ROUTED_SAID}")
    assert "1 of the 2 approvals it needs is in: " in view["next_step"]

    proposal_reject(proposal_id=proposal.pk, reviewer=second, reason_code="too_aggressive")
    rejected = outcome_report(as_agent_reads(agent_client, proposal.pk))

    assert rejected["edited"] == {"proposed": PROPOSED, "payload": EDITED}
    assert rejected["message"] == (
        "Reviewer 1 approved it with edits. Then Reviewer 2 rejected it (too_aggressive). It "
        "needed 2 approvals. It was not executed. A reviewer edited it (amount: 280.00 → "
        "200.00). The version rejected was the edited one."
    )


@pytest.mark.usefixtures("two_person_rule")
def test_an_edit_that_starts_a_new_round_names_its_editor_among_that_round_s_approvals(
    agent_client, operators
):
    """One operator approves as proposed; a second edits and approves: the first approval
    was of another action, so a new round begins, in which the editor's approval is the
    first of two."""
    first, second = operators
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=first)
    proposal_approve(proposal_id=proposal.pk, reviewer=second, edited_payload=EDITED)

    waiting = as_agent_reads(agent_client, proposal.pk)
    told = outcome_report(waiting)

    assert (waiting.status, waiting.review_round) == ("pending_review", 2)
    assert f"do not propose it again. {EDIT_SAID} " in told["message"]
    assert "1 of the 2 approvals it needs is in: " in told["message"]


def test_an_edit_undone_is_not_told_as_an_edit(agent_client, operators, two_person_rule):
    """Edited back to what its agent proposed: nothing to tell."""
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operators[0], edited_payload={**PROPOSED})

    told = outcome_report(as_agent_reads(agent_client, proposal.pk))

    assert "edited" not in told
    assert "edited it" not in told["message"]


@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker", "two_person_rule")
def test_mcp_tells_an_edit_waiting_for_a_second_reviewer(web_server, demo_world):
    """The MCP server's view of a proposal still waiting said who approved it and nothing of
    the edit that came with the approval."""

    def edit_and_approve(proposal_id: int) -> None:
        try:
            operator = get_user_model().objects.get(username="operator")
            proposal_approve(proposal_id=proposal_id, reviewer=operator, edited_payload=EDITED)
        finally:
            connection.close()  # the thread's own, before the test database goes

    async def agent(session):
        proposed = await call(
            session,
            "propose_action",
            action_type="budget_reallocation",
            account="demo",
            payload=PROPOSED,
            rationale="generic-search converts at 2.3x brand-search's rate this week.",
            confidence=0.82,
        )
        await asyncio.to_thread(edit_and_approve, proposed["id"])
        return await call(
            session, "wait_for_decision", proposal_id=proposed["id"], timeout_seconds=1
        )

    seen = run_agent(web_server, demo_world["agents"]["optimizer"], agent)

    assert (seen["status"], seen["final"]) == ("pending_review", False)
    assert seen["edited"] == {"proposed": PROPOSED, "payload": EDITED}
    assert seen["next_step"].startswith(f"{EDIT_SAID} {ROUTED_SAID}")
    assert "1 of the 2 approvals it needs is in: " in seen["next_step"]
