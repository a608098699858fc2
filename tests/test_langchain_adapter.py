"""hitl_client.langchain: a LangChain v1 agent (``create_agent``) whose tool calls are
proposals, against the web server and a real worker, with LangChain's own fake chat model
scripted to call the tools. What the model is shown as each tool's result is the platform's
outcome: executed with the state before and after, or rejected with the reviewer's reason,
whether the call waited for the human by blocking or by pausing the run and resuming it."""

import asyncio
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from hitl_client import AsyncClient, Client, RetryPolicy
from hitl_client.errors import ConnectionFailed, HitlError, NotFound
from hitl_client.langchain import (
    INTERRUPT_TYPE,
    ProposalMiddleware,
    ToolAction,
    aresume_when_decided,
    resume_when_decided,
)
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import Field

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_reject
from ledger.models import Account, Campaign
from policies.models import KillSwitch, Policy
from tests.answer_lost import answer_lost_proxy
from tests.conftest import (
    GUARANTEED,
    REALLOCATION,
    RESET,
    SIX_PERCENT_BID,
    connections_to,
    wait_until,
)

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("celery_worker")]

#: The client's own retry of a proposal whose answer was lost, soon.
ONE_RETRY = RetryPolicy(max_attempts=2, backoff=0.1)


class ScriptedModel(GenericFakeChatModel):
    """LangChain's fake chat model, answering from its script in turn, that accepts tools
    (as ``create_agent`` binds them) and keeps the tool results it was shown."""

    shown: list[ToolMessage] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedModel":
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any):
        self.shown.extend(m for m in messages if isinstance(m, ToolMessage) and m not in self.shown)
        return super()._generate(messages, *args, **kwargs)


def scripted(*calls: tuple[str, dict]) -> ScriptedModel:
    """A model that calls each tool in turn, then says it is done."""
    turns = [
        AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call-{uuid4()}"}])
        for name, args in calls
    ]
    return ScriptedModel(messages=iter([*turns, AIMessage(content="Done.")]))


def uuid4() -> str:
    return uuid.uuid4().hex[:12]


@tool
def adjust_bid(campaign: str, new_bid: str, rationale: str, confidence: float) -> str:
    """Set a campaign's bid. The platform's policy decides whether a human looks first."""
    raise AssertionError("the platform executes it; the agent never runs it")


@tool
def move_budget(from_campaign: str, to_campaign: str, amount: str, rationale: str) -> str:
    """Move part of one campaign's daily budget to another."""
    raise AssertionError("the platform executes it; the agent never runs it")


@tool
def deploy_creative(campaign: str, headline: str, body: str, rationale: str) -> str:
    """Deploy one creative on a campaign."""
    raise AssertionError("the platform executes it; the agent never runs it")


# Brings brand-search's bid back from SIX_PERCENT_BID's 2.12: a 5.7% move.
SIX_PERCENT_BID_BACK = ("adjust_bid", {**SIX_PERCENT_BID[1], "new_bid": "2.00"})

ACTIONS = {
    "adjust_bid": ToolAction(
        "bid_adjustment",
        account="demo",
        payload=lambda a: {"campaign": a["campaign"], "new_bid": a["new_bid"]},
    ),
    "move_budget": ToolAction(
        "budget_reallocation",
        account="demo",
        payload=lambda a: {k: a[k] for k in ("from_campaign", "to_campaign", "amount")},
        confidence=0.82,
        supporting_data=lambda a: {"conversion_rate": {a["from_campaign"]: [0.021, 0.018]}},
    ),
    "deploy_creative": ToolAction(
        "creative_deployment",
        account="demo",
        payload=lambda a: {
            "campaign": a["campaign"],
            "creatives": [
                {"headline": a["headline"], "body": a["body"], "call_to_action": "Try it"}
            ],
        },
        confidence=0.7,
    ),
}


@pytest.fixture
def platform(web_server, demo_world):
    with Client(web_server, demo_world["agents"]["optimizer"]) as client:
        yield client


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def agent_with(model: ScriptedModel, middleware: ProposalMiddleware, **kwargs: Any):
    return create_agent(
        model, tools=[adjust_bid, move_budget, deploy_creative], middleware=[middleware], **kwargs
    )


def told(model: ScriptedModel) -> dict:
    """The one tool result the model was shown, as it read it."""
    (result,) = model.shown
    return json.loads(result.content)


def api_time(moment) -> str:
    """A time as the API writes it (UTC, ``Z``)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def waiting_proposal() -> Proposal:
    return wait_until(lambda: Proposal.objects.filter(status=ProposalStatus.PENDING_REVIEW).first())


def budgets() -> tuple[Decimal, Decimal]:
    campaigns = {c.external_id: c.daily_budget for c in Campaign.objects.all()}
    return campaigns["brand-search"], campaigns["generic-search"]


def ask(agent, text: str, **kwargs: Any):
    return agent.invoke({"messages": [{"role": "user", "content": text}]}, **kwargs)


def paused_run(platform: Client, model: ScriptedModel, text: str, thread: str):
    """An agent that pauses its run for a person (``wait="interrupt"``), asked ``text`` on a
    thread of its own: the agent, the run's config, the paused result and its interrupt."""
    agent = agent_with(
        model,
        ProposalMiddleware(ACTIONS, client=platform, wait="interrupt"),
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": f"{thread}-{uuid4()}"}}
    paused = ask(agent, text, config=config)
    (waiting,) = paused["__interrupt__"]
    return agent, config, paused, waiting


def test_a_six_percent_bid_change_executes_and_the_model_sees_before_and_after(platform):
    model = scripted(SIX_PERCENT_BID)
    agent = agent_with(model, ProposalMiddleware(ACTIONS, client=platform))

    result = ask(agent, "brand-search's CPC is below target; raise its bid 6%.")

    seen = told(model)
    assert seen["status"] == "executed" and seen["executed"] is True
    assert seen["decided_by"] == "policy (auto-approved)"
    assert seen["before"] == {"brand-search": {"bid": "2.00"}}
    assert seen["after"] == {"brand-search": {"bid": "2.12"}}
    assert result["messages"][-1].content == "Done."
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.12")


def test_the_reallocation_blocks_until_an_operator_approves_then_the_model_sees_it_executed(
    platform, operator
):
    model = scripted(REALLOCATION)
    agent = agent_with(model, ProposalMiddleware(ACTIONS, client=platform, timeout=60))

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(ask, agent, "Move 28% of brand-search's budget to generic-search.")
        proposal = waiting_proposal()
        assert "exceeds the 10.0%" in proposal.verdict_reasons[0]
        assert not model.shown  # the model is still waiting for the tool's result
        proposal_approve(proposal_id=proposal.pk, reviewer=operator, note="Agreed.")
        running.result(timeout=60)

    seen = told(model)
    assert seen["status"] == "executed" and seen["decided_by"] == "a reviewer"
    assert seen["note"] == "Agreed."
    decided = Proposal.objects.get()  # when, as recorded (the model was told no time at all)
    assert (seen["decided_at"], seen["executed_at"]) == (
        api_time(decided.decided_at),
        api_time(decided.executed_at),
    )
    assert seen["message"].startswith("A reviewer approved it: Agreed. Executed. Before: ")
    assert seen["before"] == {
        "brand-search": {"daily_budget": "1000.00"},
        "generic-search": {"daily_budget": "500.00"},
    }
    assert seen["after"] == {
        "brand-search": {"daily_budget": "720.00"},
        "generic-search": {"daily_budget": "780.00"},
    }
    assert budgets() == (Decimal("720.00"), Decimal("780.00"))


def test_an_edited_reallocation_tells_the_model_what_was_edited_and_the_reviewers_note(
    platform, operator
):
    model = scripted(REALLOCATION)
    agent = agent_with(model, ProposalMiddleware(ACTIONS, client=platform, timeout=60))

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(ask, agent, "Move 28% of brand-search's budget to generic-search.")
        proposal = waiting_proposal()
        proposal_approve(
            proposal_id=proposal.pk,
            reviewer=operator,
            edited_payload={**proposal.payload, "amount": "200.00"},
            note="Keep a reserve on brand-search.",
        )
        running.result(timeout=60)

    seen = told(model)
    assert seen["status"] == "executed" and seen["note"] == "Keep a reserve on brand-search."
    proposed = {"from_campaign": "brand-search", "to_campaign": "generic-search"}
    assert seen["edited"] == {
        "proposed": {**proposed, "amount": "280.00"},
        "executed": {**proposed, "amount": "200.00"},
    }
    # A model that reads only the message learns what was changed and why.
    assert seen["message"] == (
        "A reviewer edited it (amount: 280.00 → 200.00), then approved it: Keep a reserve on "
        "brand-search. The edited version executed. Before: "
        '{"brand-search": {"daily_budget": "1000.00"}, '
        '"generic-search": {"daily_budget": "500.00"}}; after: '
        '{"brand-search": {"daily_budget": "800.00"}, '
        '"generic-search": {"daily_budget": "700.00"}}.'
    )
    assert budgets() == (Decimal("800.00"), Decimal("700.00"))


def test_a_reallocation_two_reviewers_approved_tells_the_model_both_their_notes(
    platform, operators
):
    """Under a two-person rule the model read "A reviewer approved it: <the second's note>":
    the first reviewer's note was lost, and one reviewer named where two had approved."""
    for policy in Policy.objects.filter(action_type="budget_reallocation"):
        policy.required_approvals = 2
        policy.save()
    first, second = operators
    model = scripted(REALLOCATION)
    agent = agent_with(model, ProposalMiddleware(ACTIONS, client=platform, timeout=60))

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(ask, agent, "Move 28% of brand-search's budget to generic-search.")
        proposal = waiting_proposal()
        proposal_approve(proposal_id=proposal.pk, reviewer=first, note="Only for this week")
        proposal_approve(proposal_id=proposal.pk, reviewer=second, note="Fine")
        running.result(timeout=60)

    seen = told(model)
    assert (seen["status"], seen["decided_by"]) == ("executed", "2 reviewers")
    assert seen["notes"] == ["Reviewer 1: Only for this week.", "Reviewer 2: Fine."]
    # Not also a "note" of one reviewer's, the last one's, as if theirs were the word on it.
    assert "note" not in seen
    assert seen["message"].startswith(
        "2 reviewers approved it: Reviewer 1: Only for this week. Reviewer 2: Fine. Executed. "
        "Before: "
    )


def test_a_reallocation_one_reviewer_approved_and_another_rejected_tells_the_model_both(
    platform, operators
):
    """Under a two-person rule the model read "A reviewer rejected it (too_aggressive): …",
    as if nobody had agreed with it, though one reviewer had approved it first, with a note:
    the API's decisions and the agent's feedback say both."""
    for policy in Policy.objects.filter(action_type="budget_reallocation"):
        policy.required_approvals = 2
        policy.save()
    first, second = operators
    model = scripted(REALLOCATION)
    agent = agent_with(model, ProposalMiddleware(ACTIONS, client=platform, timeout=60))

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(ask, agent, "Move 28% of brand-search's budget to generic-search.")
        proposal = waiting_proposal()
        proposal_approve(proposal_id=proposal.pk, reviewer=first, note="Good signal")
        proposal_reject(
            proposal_id=proposal.pk,
            reviewer=second,
            reason_code="too_aggressive",
            note="Too much at once",
        )
        running.result(timeout=60)

    seen = told(model)
    assert (seen["status"], seen["reason_code"], seen["note"]) == (
        "rejected",
        "too_aggressive",
        "Too much at once",
    )
    [approval] = seen["approved_before"]
    assert (approval["by"], approval["note"]) == ("Reviewer 1", "Good signal")
    assert seen["message"] == (
        "Reviewer 1 approved it: Good signal. Then Reviewer 2 rejected it (too_aggressive): "
        "Too much at once. It needed 2 approvals. It was not executed."
    )
    assert budgets() == (Decimal("1000.00"), Decimal("500.00"))


def test_the_reallocation_pauses_the_run_and_resumes_once_approved_without_proposing_twice(
    platform, operator
):
    model = scripted(REALLOCATION)
    agent, config, paused, waiting = paused_run(
        platform, model, "Move 28% of brand-search's budget to generic-search.", "optimizer"
    )
    assert waiting.value["type"] == INTERRUPT_TYPE
    assert waiting.value["status"] == "pending_review"
    assert "exceeds the 10.0%" in waiting.value["reasons"][0]
    proposal = Proposal.objects.get()
    assert waiting.value["proposal_id"] == proposal.pk
    # Until when it waits, as a blocking wait's report and the MCP server say it.
    assert waiting.value["expires_at"] == api_time(proposal.review_expires_at)
    assert not model.shown and budgets() == (Decimal("1000.00"), Decimal("500.00"))

    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    result = agent.invoke(resume_when_decided(paused, client=platform, timeout=60), config)

    seen = told(model)
    assert seen["status"] == "executed" and seen["proposal_id"] == proposal.pk
    assert seen["after"]["brand-search"] == {"daily_budget": "720.00"}
    assert result["messages"][-1].content == "Done."
    # The resumed run re-ran the tool call: the platform answered with the same proposal,
    # which executed once.
    assert Proposal.objects.count() == 1
    assert budgets() == (Decimal("720.00"), Decimal("780.00"))
    assert Proposal.history.filter(id=proposal.pk, status="executed").count() == 1


def test_a_call_id_the_model_uses_again_in_a_later_turn_is_a_proposal_of_its_own(
    platform, operator
):
    """Some providers number tool calls "call_0", "call_1", … again each turn. The key had
    been the thread and the call's id: the same reallocation asked for again after a
    reviewer rejected it was answered with that rejection (nobody saw the second call), and
    a smaller one refused for the first one's key. Each is a proposal a person decides; a
    resumed run still finds its own."""

    def turn(amount: str) -> AIMessage:
        args = {**REALLOCATION[1], "amount": amount}
        return AIMessage(
            content="", tool_calls=[{"name": "move_budget", "args": args, "id": "call_0"}]
        )

    model = ScriptedModel(
        messages=iter([turn("280.00"), turn("280.00"), turn("150.00"), AIMessage(content="Done.")])
    )
    agent, config, paused, waiting = paused_run(platform, model, "Move 28%.", "reused-ids")
    first = waiting.value["proposal_id"]
    proposal_reject(
        proposal_id=first, reviewer=operator, reason_code="too_aggressive", note="Too much."
    )

    paused = agent.invoke(resume_when_decided(paused, client=platform, timeout=60), config)
    (waiting,) = paused["__interrupt__"]
    second = waiting.value["proposal_id"]
    assert second != first  # the same action again: a person decides it again
    assert json.loads(model.shown[0].content)["proposal_id"] == first
    proposal_reject(
        proposal_id=second, reviewer=operator, reason_code="too_aggressive", note="Still."
    )

    paused = agent.invoke(resume_when_decided(paused, client=platform, timeout=60), config)
    (waiting,) = paused["__interrupt__"]
    third = waiting.value["proposal_id"]
    assert third not in (first, second)
    proposal_approve(proposal_id=third, reviewer=operator, note="Fine.")
    result = agent.invoke(resume_when_decided(paused, client=platform, timeout=60), config)

    assert [json.loads(m.content)["note"] for m in model.shown] == ["Too much.", "Still.", "Fine."]
    seen = [json.loads(m.content) for m in model.shown]
    assert [each["proposal_id"] for each in seen] == [first, second, third]
    assert [each["status"] for each in seen] == ["rejected", "rejected", "executed"]
    assert result["messages"][-1].content == "Done."
    assert Proposal.objects.count() == 3
    assert budgets() == (Decimal("850.00"), Decimal("650.00"))


def test_resuming_with_a_client_of_its_own_reads_the_environment_and_closes_it(
    platform, operator, web_server, demo_world, monkeypatch
):
    """``resume_when_decided(paused)`` with no client makes one from HITL_BASE_URL and
    HITL_API_KEY; it left that client's connection open, one more for each resume of a
    loop."""
    monkeypatch.setenv("HITL_BASE_URL", web_server)
    monkeypatch.setenv("HITL_API_KEY", demo_world["agents"]["optimizer"])
    model = scripted(REALLOCATION)
    _, _, paused, waiting = paused_run(
        platform, model, "Move 28% of brand-search's budget to generic-search.", "own-client"
    )
    proposal_approve(proposal_id=waiting.value["proposal_id"], reviewer=operator)
    before = connections_to(web_server)

    resumed = resume_when_decided(paused, timeout=60)

    assert resumed.resume[waiting.id]["status"] == "executed"
    assert connections_to(web_server) == before


def test_a_middleware_closes_the_clients_it_made_for_itself(web_server, demo_world, monkeypatch):
    """Without ``client=`` the middleware makes its own from the environment, and nothing
    closed it: each agent built so (one per request, in a web app) kept a connection open
    until the garbage collector came by."""
    monkeypatch.setenv("HITL_BASE_URL", web_server)
    monkeypatch.setenv("HITL_API_KEY", demo_world["agents"]["optimizer"])
    before = connections_to(web_server)
    middleware = ProposalMiddleware(ACTIONS)
    ask(agent_with(scripted(SIX_PERCENT_BID), middleware), "Raise it 6%.")

    async def asynchronously() -> None:
        agent = agent_with(scripted(SIX_PERCENT_BID_BACK), middleware)
        await agent.ainvoke({"messages": [{"role": "user", "content": "Lower it again."}]})
        assert connections_to(web_server) == before + 2  # one for invoke, one for ainvoke
        await middleware.aclose()

    asyncio.run(asynchronously())

    assert connections_to(web_server) == before
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.00")


def test_a_creative_with_a_banned_term_comes_back_rejected_with_the_reviewers_reason(
    platform, operator
):
    model = scripted(GUARANTEED)
    agent, config, paused, waiting = paused_run(
        platform, model, "Write urgent copy for display-retarget.", "copy"
    )
    assert "guaranteed" in " ".join(waiting.value["reasons"]).lower()
    proposal_reject(
        proposal_id=waiting.value["proposal_id"],
        reviewer=operator,
        reason_code="off_brand",
        note="We never promise results.",
    )
    agent.invoke(resume_when_decided(paused, client=platform, timeout=60), config)

    seen = told(model)
    assert seen["status"] == "rejected" and seen["executed"] is False
    assert seen["decided_at"] == api_time(Proposal.objects.get().decided_at)
    assert seen["reason_code"] == "off_brand"
    assert seen["note"] == "We never promise results."
    assert seen["message"] == (
        "A reviewer rejected it (off_brand): We never promise results. It was not executed."
    )
    assert "guaranteed" in " ".join(seen["reasons"]).lower()
    assert model.shown[0].status == "error"


def test_an_approved_creative_batch_tells_the_model_what_it_did_not_empty_states(
    platform, operator
):
    # A creative batch adds creatives and sets no campaign field: its execution's states are
    # empty, and "Before: {...: {}}; after: {...: {}}" would tell the model nothing happened.
    model = scripted(
        (
            "deploy_creative",
            {
                "campaign": "display-retarget",
                "headline": "Search smarter",
                "body": "Find what you need in seconds.",
                "rationale": "A fresh angle for returning visitors.",
            },
        )
    )
    agent, config, paused, waiting = paused_run(
        platform, model, "Write copy for display-retarget.", "copy"
    )
    proposal_approve(proposal_id=waiting.value["proposal_id"], reviewer=operator)
    agent.invoke(resume_when_decided(paused, client=platform, timeout=60), config)

    seen = told(model)
    assert seen["status"] == "executed" and seen["executed"] is True
    assert seen["before"] == seen["after"] == {"display-retarget": {}}
    [deployed] = Campaign.objects.get(external_id="display-retarget").creatives.all()
    assert seen["created"] == {"creatives": [deployed.pk]}
    assert seen["message"] == (
        "A reviewer approved it. Executed. Done: deploy 1 creative to display-retarget (in the "
        f"ledger: creatives #{deployed.pk}); no campaign setting changed."
    )


def test_an_agent_run_asynchronously_gets_the_same_outcome(web_server, demo_world):
    model = scripted(SIX_PERCENT_BID)

    async def run() -> None:
        async with AsyncClient(web_server, demo_world["agents"]["optimizer"]) as client:
            agent = agent_with(model, ProposalMiddleware(ACTIONS, async_client=client))
            await agent.ainvoke({"messages": [{"role": "user", "content": "Raise it 6%."}]})
            assert await aresume_when_decided({}, client=client) is None

    asyncio.run(run())

    seen = told(model)
    assert seen["status"] == "executed"
    assert seen["after"] == {"brand-search": {"bid": "2.12"}}


def test_an_agent_given_one_client_uses_it_for_invoke_and_ainvoke_alike(
    web_server, demo_world, monkeypatch
):
    """``ProposalMiddleware(client=...)`` run with ``ainvoke`` (or ``async_client=`` with
    ``invoke``) ignored the client given and made one from HITL_BASE_URL and HITL_API_KEY:
    without them the run failed ("No base URL"), and with them set for another agent it
    proposed as that agent. The other kind of client is now made like the one given."""
    monkeypatch.delenv("HITL_BASE_URL", raising=False)
    monkeypatch.delenv("HITL_API_KEY", raising=False)
    key = demo_world["agents"]["optimizer"]
    asynchronous, synchronous = scripted(SIX_PERCENT_BID), scripted(SIX_PERCENT_BID_BACK)

    async def run_async() -> None:
        with Client(web_server, key) as client:
            agent = agent_with(asynchronous, ProposalMiddleware(ACTIONS, client=client))
            await agent.ainvoke({"messages": [{"role": "user", "content": "Raise it 6%."}]})

    async def client_for_sync_run() -> None:
        async with AsyncClient(web_server, key) as client:
            agent = agent_with(synchronous, ProposalMiddleware(ACTIONS, async_client=client))
            await asyncio.to_thread(ask, agent, "Lower it again.")

    asyncio.run(run_async())
    asyncio.run(client_for_sync_run())

    assert told(asynchronous)["after"] == {"brand-search": {"bid": "2.12"}}
    assert told(synchronous)["after"] == {"brand-search": {"bid": "2.00"}}
    assert set(Proposal.objects.values_list("agent__name", flat=True)) == {"optimizer"}


def test_a_call_the_platform_refuses_comes_back_to_the_model_with_the_reason(platform):
    unknown = ("adjust_bid", {**SIX_PERCENT_BID[1], "campaign": "no-such-campaign"})
    missing = ("move_budget", {"from_campaign": "brand-search", "rationale": "?"})
    model = scripted(unknown, missing)
    agent = agent_with(model, ProposalMiddleware(ACTIONS, client=platform))

    ask(agent, "Raise no-such-campaign's bid.")

    refused, unusable = (json.loads(message.content) for message in model.shown)
    assert refused["status"] == "refused" and refused["executed"] is False
    assert "no-such-campaign" in refused["message"]
    assert unusable["status"] == "refused"
    assert unusable["message"] == (  # what to do, in words, not KeyError('to_campaign')
        "The tool call's arguments lack “to_campaign”, which the proposal needs; call the "
        "tool again with it. Nothing was executed."
    )
    assert not Proposal.objects.exists()


def test_a_call_the_client_refuses_before_sending_is_told_as_the_clients_refusal(platform):
    """A model wrote NaN for the confidence (Python's json reads it): the client refuses it
    before sending, and the model is told so, naming the argument; before, NaN went out and
    the model read "The platform refused the proposal: JSON parse error - Out of range float
    values are not JSON compliant: 'NaN'", naming nothing it could mend."""
    model = scripted(("adjust_bid", {**SIX_PERCENT_BID[1], "confidence": float("nan")}))
    agent = agent_with(model, ProposalMiddleware(ACTIONS, client=platform))

    ask(agent, "Raise brand-search's bid.")

    not_finite = "Must be a finite number: JSON has no NaN or Infinity."
    assert told(model) == {
        "status": "refused",
        "executed": False,
        "errors": {"confidence": [not_finite]},
        "message": "The client refused the proposal before sending it to the platform: "
        f"confidence: {not_finite} Nothing was executed.",
    }
    assert not Proposal.objects.exists()


def test_a_blocking_wait_that_runs_out_tells_the_model_it_may_still_execute(platform):
    """Past ``timeout`` the proposal still waits for a person, who may yet approve it: the
    model is told so, and not to propose it again (a second proposal of the same move)."""
    model = scripted(REALLOCATION)
    agent = agent_with(model, ProposalMiddleware(ACTIONS, client=platform, timeout=1))

    ask(agent, "Move 28% of brand-search's budget to generic-search.")

    seen = told(model)
    assert seen["status"] == "pending_review" and seen["executed"] is False
    assert seen["message"].startswith(
        f"Proposal #{seen['proposal_id']} waits for a human decision; it has not executed yet, "
        "but it still may: do not propose it again. 28.0% of brand-search's daily budget"
    ), seen["message"]
    # Until when it may still execute: after that, proposing again is no repeat.
    waiting = Proposal.objects.get()
    assert waiting.status == ProposalStatus.PENDING_REVIEW
    assert seen["expires_at"] == api_time(waiting.review_expires_at)
    assert seen["message"].endswith(
        f" It expires at {seen['expires_at']} unless a person decides it first."
    )
    # Not a failed call: it was made, and may yet run. Marked "error", a provider told the
    # model the call failed (Anthropic's is_error), inviting it to propose again.
    assert model.shown[0].status == "success"


def test_a_failed_execution_tells_the_model_an_operator_may_retry_it(web_server, platform):
    """The account's endpoint refuses the action (a 404): it fails, and nothing changed. A
    person may still retry it, so the model is told not to propose it again."""
    Account.objects.filter(external_id="demo").update(
        execution_endpoint=f"{web_server}/api/v1/no-such-endpoint/"
    )
    model = scripted(SIX_PERCENT_BID)
    agent = agent_with(model, ProposalMiddleware(ACTIONS, client=platform, timeout=60))

    ask(agent, "brand-search's CPC is below target; raise its bid 6%.")

    seen = told(model)
    assert seen["status"] == "failed" and seen["executed"] is False
    assert seen["error"]
    failed = Proposal.objects.get().executions.get()
    assert seen["failed_at"] == api_time(failed.finished_at)
    assert seen["message"].startswith("Approved, but its execution failed: "), seen["message"]
    # The endpoint answered that it did not do it: nothing was carried out. (Not "it would
    # then execute": a retry may fail too.)
    assert seen["carried_out"] == "no"
    assert seen["message"].endswith(
        "Nothing was carried out. An operator may retry it: do not propose it again."
    )
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.00")


def test_a_failed_execution_whose_requests_got_no_answer_may_have_been_carried_out(
    platform, channel
):
    """The account's endpoint takes each request and resets the connection before answering:
    every attempt may have been carried out there, and the execution fails. The model is not
    told "Nothing changed", which the platform cannot know, but that it may have been, and to
    read the state before proposing more."""
    endpoint = channel(RESET)
    model = scripted(SIX_PERCENT_BID)
    agent = agent_with(model, ProposalMiddleware(ACTIONS, client=platform, timeout=60))

    ask(agent, "brand-search's CPC is below target; raise its bid 6%.")

    seen = told(model)
    assert seen["status"] == "failed" and seen["executed"] is False
    assert endpoint.received  # the endpoint had the request: it may have acted on it
    assert seen["carried_out"] == "unknown"
    # Not marked a failed call, which a provider hands the model as one to try again.
    assert model.shown[0].status == "success"
    assert "Nothing" not in seen["message"], seen["message"]
    assert seen["message"].endswith(
        "It may have been carried out all the same: a request for it was sent to the channel "
        "and no answer said whether the channel carried it out. Read the current state before "
        "proposing anything more about it. An operator may retry it: do not propose it again."
    )


def test_a_proposal_superseded_while_the_run_is_paused_tells_the_model_the_value_it_saw_and_now(
    platform,
):
    """The run waits for a person on a 20% bid raise; meanwhile a 1% raise on the same bid
    executes first. Resumed, the model reads that its call was superseded, not executed, with
    the bid it saw and the bid now, and is told to read the state again."""
    raise_ = ("adjust_bid", {**SIX_PERCENT_BID[1], "new_bid": "2.40"})
    model = scripted(raise_)
    agent, config, paused, waiting = paused_run(
        platform, model, "Raise brand-search's bid 20%.", "superseded"
    )

    first = platform.propose(
        "bid_adjustment",
        "demo",
        {"campaign": "brand-search", "new_bid": "2.02"},
        rationale="A nudge.",
        confidence=0.9,
    )
    assert platform.wait(first.id, timeout=60).status == "executed"
    agent.invoke(resume_when_decided(paused, client=platform, timeout=60), config)

    seen = told(model)
    assert seen["proposal_id"] == waiting.value["proposal_id"]
    assert seen["status"] == "superseded" and seen["executed"] is False
    assert seen["message"] == (
        f"Superseded: brand-search's bid is 2.02, was 2.00 (#{first.id} changed it first: bid "
        "of brand-search 2.00 → 2.02 USD (+1.0%)). It was not executed. Read the current state "
        "and propose again if it still makes sense."
    )
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.02")


def test_a_call_the_platform_approved_but_a_kill_switch_sent_back_pauses_the_run(
    platform, channel, operator
):
    """The platform approves a 6% bid raise; while its execution is first tried, a policy
    owner engages a kill switch over the account, and the action goes back to a person
    before it runs. A run that pauses for people pauses for this one too, rather than block
    the agent until someone decides; resumed once approved, the model sees it executed."""
    endpoint = channel(503, 200)
    endpoint.while_first_request = lambda: KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="An outage."
    )
    model = scripted(SIX_PERCENT_BID)
    agent = agent_with(
        model,
        ProposalMiddleware(ACTIONS, client=platform, wait="interrupt", timeout=60),
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": f"held-{uuid4()}"}}

    paused = ask(agent, "Raise brand-search's bid 6%.", config=config)

    (waiting,) = paused["__interrupt__"]
    assert model.shown == []  # nothing told yet: the run waits for a person
    held = Proposal.objects.get(pk=waiting.value["proposal_id"])
    assert held.status == ProposalStatus.PENDING_REVIEW
    # Attempt 1 got a 503 (it may have been carried out): held before its next attempt.
    assert held.verdict_reasons[0].startswith("Held back before its next attempt: the kill switch")
    proposal_approve(proposal_id=held.pk, reviewer=operator)
    agent.invoke(resume_when_decided(paused, client=platform, timeout=60), config)

    assert told(model)["status"] == "executed"
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.12")


def test_a_reallocation_whose_answer_was_lost_is_not_proposed_twice_when_run_again(
    web_server, demo_world
):
    """Blocking, without a thread: the platform made the proposal but its answer never came
    back. The caller got ConnectionFailed naming no proposal, and the client's random key
    was gone with it: running the agent again proposed the move a second time, and a
    reviewer approving both would have moved the budget twice. The error now says the
    proposal may have been made and names its key; the same action run again through the
    middleware is sent with that key, and the platform answers with the one proposal."""
    key = demo_world["agents"]["optimizer"]
    with answer_lost_proxy(web_server) as proxy, Client(proxy.url, key, retry=ONE_RETRY) as lost:
        middleware = ProposalMiddleware(ACTIONS, client=lost, timeout=1)
        with pytest.raises(ConnectionFailed) as failed:
            ask(agent_with(scripted(REALLOCATION), middleware), "Move 28% to generic-search.")
        made = Proposal.objects.get()  # made, though the agent never heard so
        assert proxy.posts == 2  # the client's own retry, with the same key, answered nothing
        message = str(failed.value)
        assert "The proposal may have been made all the same (its answer was lost)." in message
        assert failed.value.idempotency_key.startswith("langchain-")
        assert f"Idempotency-Key, {failed.value.idempotency_key!r}," in message
        assert "calling the tool again for the same action through this middleware" in message

        proxy.losing = False
        model = scripted(REALLOCATION)  # the model calls it again: another tool call id
        ask(agent_with(model, middleware), "Move 28% to generic-search.")

    seen = told(model)
    assert seen["proposal_id"] == made.pk and seen["status"] == "pending_review"
    assert "do not propose it again" in seen["message"]
    assert Proposal.objects.count() == 1
    assert budgets() == (Decimal("1000.00"), Decimal("500.00"))


def test_a_paused_run_whose_answer_was_lost_resumes_onto_the_one_proposal(web_server, demo_world):
    """Pausing the run, on a thread: the proposal's answer is lost and the run fails. The
    error says how to find it (resume the run on its thread); resumed, the tool call is sent
    again with its key, derived from the thread and the call, and pauses for the one
    proposal."""
    key = demo_world["agents"]["optimizer"]
    with answer_lost_proxy(web_server) as proxy, Client(proxy.url, key, retry=ONE_RETRY) as lost:
        agent = agent_with(
            scripted(REALLOCATION),
            ProposalMiddleware(ACTIONS, client=lost, wait="interrupt"),
            checkpointer=InMemorySaver(),
        )
        config = {"configurable": {"thread_id": f"lost-{uuid4()}"}}
        with pytest.raises(ConnectionFailed) as failed:
            ask(agent, "Move 28% to generic-search.", config=config)
        made = Proposal.objects.get()
        assert "resuming the run on its thread (agent.invoke(None, config))" in str(failed.value)
        assert failed.value.idempotency_key.startswith("langchain-")

        proxy.losing = False
        paused = agent.invoke(None, config)

    (waiting,) = paused["__interrupt__"]
    assert waiting.value["proposal_id"] == made.pk
    assert waiting.value["status"] == "pending_review"
    assert Proposal.objects.count() == 1


def test_a_base_url_that_is_not_the_platforms_is_raised_not_told_to_the_model(
    web_server, demo_world
):
    """Every request to a path the platform does not serve is a 404. The middleware handed it
    to the model as the platform refusing its proposal ("…not by the API: is the base URL the
    platform's address? Nothing was executed."), which the model cannot mend and the
    operator never saw. It is raised, as a bad key is."""
    key = demo_world["agents"]["optimizer"]
    with Client(f"{web_server}/hitl", key) as elsewhere:
        model = scripted(SIX_PERCENT_BID)
        with pytest.raises(NotFound, match="is the base URL the platform's address"):
            ask(agent_with(model, ProposalMiddleware(ACTIONS, client=elsewhere)), "Raise it.")
    assert model.shown == []
    assert not Proposal.objects.exists()


@pytest.mark.parametrize("then", ["throttled", "timeout"])
def test_a_lost_answer_whose_retries_were_refused_with_nothing_done_is_not_proposed_twice(
    web_server, demo_world, then
):
    """The platform made the proposal and its answer was lost; the client's retries with the
    same key were throttled (429) or timed out (408), both "nothing was done". The caller got
    that last refusal alone, naming no key, and the middleware forgot the action: run again,
    it proposed the move a second time. It is told the proposal may have been made, with its
    key, and the action run again is sent with that key."""
    key = demo_world["agents"]["optimizer"]
    retries = RetryPolicy(max_attempts=3, backoff=0.1)
    with answer_lost_proxy(web_server) as proxy, Client(proxy.url, key, retry=retries) as lost:
        proxy.then = then
        middleware = ProposalMiddleware(ACTIONS, client=lost, timeout=1)
        with pytest.raises(HitlError) as failed:
            ask(agent_with(scripted(REALLOCATION), middleware), "Move 28% to generic-search.")
        made = Proposal.objects.get()  # made by the first attempt, though nobody heard so
        message = str(failed.value)
        assert "An earlier attempt reached the server and its answer was lost" in message
        assert "The proposal may have been made all the same (its answer was lost)." in message
        assert failed.value.idempotency_key.startswith("langchain-")

        proxy.losing = False
        model = scripted(REALLOCATION)  # the model calls it again: another tool call id
        ask(agent_with(model, middleware), "Move 28% to generic-search.")

    assert told(model)["proposal_id"] == made.pk
    assert Proposal.objects.count() == 1


def test_a_lost_answer_on_one_thread_is_not_another_threads_proposal(web_server, demo_world):
    """One middleware serves many conversations (threads). Thread A's proposal lost its
    answer; thread B then asked for the same move in its own words. B was sent with A's key
    and A's rationale, and told of A's proposal as its own (and A's key, in an error B never
    had). Each thread's lost answers are its own: B proposes its own, with its own
    rationale; A, run again, finds the one it made."""
    key = demo_world["agents"]["optimizer"]
    thread_a = {"configurable": {"thread_id": f"a-{uuid4()}"}}
    thread_b = {"configurable": {"thread_id": f"b-{uuid4()}"}}
    b_says = {**REALLOCATION[1], "rationale": "Thread B's own reason."}
    with answer_lost_proxy(web_server) as proxy, Client(proxy.url, key, retry=ONE_RETRY) as lost:
        middleware = ProposalMiddleware(ACTIONS, client=lost, timeout=1)
        with pytest.raises(ConnectionFailed):
            ask(agent_with(scripted(REALLOCATION), middleware, checkpointer=InMemorySaver()),
                "Move 28% to generic-search.", config=thread_a)  # fmt: skip
        made = Proposal.objects.get()

        proxy.losing = False
        model_b = scripted((REALLOCATION[0], b_says))
        ask(agent_with(model_b, middleware, checkpointer=InMemorySaver()),
            "Move 28% to generic-search.", config=thread_b)  # fmt: skip
        model_a = scripted(REALLOCATION)
        ask(agent_with(model_a, middleware, checkpointer=InMemorySaver()),
            "Move 28% to generic-search.", config=thread_a)  # fmt: skip

    b_proposal = Proposal.objects.exclude(pk=made.pk).get()
    assert told(model_b)["proposal_id"] == b_proposal.pk
    assert b_proposal.rationale == "Thread B's own reason."
    assert told(model_a)["proposal_id"] == made.pk
    assert Proposal.objects.count() == 2


@pytest.mark.parametrize(
    "again", ["280", 280, 280.0, "280.0"], ids=["text", "number", "float", "one-place"]
)
def test_a_lost_answer_is_found_again_when_the_model_writes_the_same_amount_another_way(
    web_server, demo_world, again
):
    """The platform made the move of "280.00" and its answer was lost; the model, calling
    the tool again, wrote the amount as 280 (or "280", 280.0): the same money, which the
    platform reads as the same amount. The middleware remembered the lost action by its
    arguments as written, took it for another action, and proposed the move a second time
    with a new key. The same amount, however written, is the one action: sent with the
    first key, the platform answers with the one proposal."""
    key = demo_world["agents"]["optimizer"]
    with answer_lost_proxy(web_server) as proxy, Client(proxy.url, key, retry=ONE_RETRY) as lost:
        middleware = ProposalMiddleware(ACTIONS, client=lost, timeout=1)
        with pytest.raises(ConnectionFailed):
            ask(agent_with(scripted(REALLOCATION), middleware), "Move 28% to generic-search.")
        made = Proposal.objects.get()

        proxy.losing = False
        model = scripted((REALLOCATION[0], {**REALLOCATION[1], "amount": again}))
        ask(agent_with(model, middleware), "Move 28% to generic-search.")

    assert told(model)["proposal_id"] == made.pk
    assert Proposal.objects.count() == 1


def test_a_lost_answer_does_not_stand_for_another_amount(web_server, demo_world):
    """Amounts that differ are different actions: the move of "280.00" lost its answer, and
    the model then asks for 280.01 (and for 0.1 + 0.2 where 0.3 would be another amount): a
    proposal of its own, never answered with the lost one."""
    key = demo_world["agents"]["optimizer"]
    with answer_lost_proxy(web_server) as proxy, Client(proxy.url, key, retry=ONE_RETRY) as lost:
        middleware = ProposalMiddleware(ACTIONS, client=lost, timeout=1)
        with pytest.raises(ConnectionFailed):
            ask(agent_with(scripted(REALLOCATION), middleware), "Move 28% to generic-search.")
        made = Proposal.objects.get()

        proxy.losing = False
        model = scripted((REALLOCATION[0], {**REALLOCATION[1], "amount": "280.01"}))
        ask(agent_with(model, middleware), "Move 28% to generic-search.")

    other = Proposal.objects.exclude(pk=made.pk).get()
    assert told(model)["proposal_id"] == other.pk
    assert other.payload["amount"] == "280.01"
