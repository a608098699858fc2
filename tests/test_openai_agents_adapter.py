"""hitl_client.openai_agents: an OpenAI Agents SDK agent whose tool calls are proposals,
through the SDK's own approval flow (needs_approval, interruptions, RunState.approve/reject),
against the web server and a real worker, with a scripted ``Model`` that calls the tools.
The model is shown the platform's outcome as each tool's result."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from agents import Agent, Model, ModelResponse, Runner, RunState, Usage, set_tracing_disabled
from agents.exceptions import UserError
from django.contrib.auth import get_user_model
from hitl_client import AsyncClient, RetryPolicy
from hitl_client.errors import ConnectionFailed, NotFound, Unprocessable
from hitl_client.openai_agents import PlatformTools, ToolAction
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_reject
from ledger.models import Account, Campaign
from policies.models import KillSwitch
from tests.answer_lost import answer_lost_proxy
from tests.conftest import (
    GUARANTEED,
    REALLOCATION,
    SIX_PERCENT_BID,
    connections_to,
    wait_until,
)

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("celery_worker")]

set_tracing_disabled(True)  # nothing leaves the machine

#: The client's own retry of a proposal whose answer was lost, soon.
ONE_RETRY = RetryPolicy(max_attempts=2, backoff=0.1)


class ScriptedModel(Model):
    """Calls each tool in its script in turn, then says it is done; keeps the tool results
    it was shown (by the tool call's id)."""

    def __init__(self, *calls: tuple[str, dict | str]) -> None:
        """``calls``: (tool, arguments), the arguments as JSON, or as the model wrote them."""
        self.turns = [
            [
                ResponseFunctionToolCall(
                    type="function_call",
                    id=f"fc-{uuid.uuid4().hex[:8]}",
                    call_id=f"call-{uuid.uuid4().hex[:12]}",
                    name=name,
                    arguments=args if isinstance(args, str) else json.dumps(args),
                )
            ]
            for name, args in calls
        ]
        self.shown: dict[str, str] = {}

    async def get_response(self, system_instructions, input, *args: Any, **kwargs: Any):
        for item in input if isinstance(input, list) else []:
            if isinstance(item, dict) and item.get("type") == "function_call_output":
                self.shown[item["call_id"]] = item["output"]
        output = self.turns.pop(0) if self.turns else [done()]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the tests run without streaming")

    def told(self) -> dict:
        (result,) = self.shown.values()
        try:
            return json.loads(result)
        except ValueError:
            raise AssertionError(f"the model was shown {result!r}") from None


def done() -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id="msg-done",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text="Done.", annotations=[])],
    )


def adjust_bid(campaign: str, new_bid: str, rationale: str, confidence: float) -> str:
    """Set a campaign's bid. The platform's policy decides whether a human looks first."""
    raise AssertionError("the platform executes it; the agent never runs it")


def move_budget(from_campaign: str, to_campaign: str, amount: str, rationale: str) -> str:
    """Move part of one campaign's daily budget to another."""
    raise AssertionError("the platform executes it; the agent never runs it")


def deploy_creative(campaign: str, headline: str, body: str, rationale: str) -> str:
    """Deploy one creative on a campaign."""
    raise AssertionError("the platform executes it; the agent never runs it")


def tools_of(platform: PlatformTools) -> list:
    return [
        platform.tool(
            adjust_bid,
            ToolAction(
                "bid_adjustment",
                account="demo",
                payload=lambda a: {"campaign": a["campaign"], "new_bid": a["new_bid"]},
            ),
        ),
        platform.tool(
            move_budget,
            ToolAction(
                "budget_reallocation",
                account="demo",
                payload=lambda a: {k: a[k] for k in ("from_campaign", "to_campaign", "amount")},
                confidence=0.82,
            ),
        ),
        platform.tool(
            deploy_creative,
            ToolAction(
                "creative_deployment",
                account="demo",
                payload=lambda a: {
                    "campaign": a["campaign"],
                    "creatives": [
                        {"headline": a["headline"], "body": a["body"], "call_to_action": "Go"}
                    ],
                },
                confidence=0.7,
            ),
        ),
    ]


@pytest.fixture
def key(demo_world) -> str:
    return demo_world["agents"]["optimizer"]


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def waiting_proposal() -> Proposal:
    return wait_until(lambda: Proposal.objects.filter(status=ProposalStatus.PENDING_REVIEW).first())


def budgets() -> tuple[Decimal, Decimal]:
    campaigns = {c.external_id: c.daily_budget for c in Campaign.objects.all()}
    return campaigns["brand-search"], campaigns["generic-search"]


def test_a_six_percent_bid_change_runs_without_an_interruption_and_shows_before_and_after(
    web_server, key
):
    model = ScriptedModel(SIX_PERCENT_BID)

    async def run():
        async with AsyncClient(web_server, key) as client:
            platform = PlatformTools(client=client)
            agent = Agent(name="optimizer", model=model, tools=tools_of(platform))
            return await Runner.run(agent, "Raise brand-search's bid 6%.")

    result = asyncio.run(run())

    assert result.interruptions == []
    assert result.final_output == "Done."
    seen = model.told()
    assert seen["status"] == "executed" and seen["decided_by"] == "policy (auto-approved)"
    assert seen["before"] == {"brand-search": {"bid": "2.00"}}
    assert seen["after"] == {"brand-search": {"bid": "2.12"}}
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.12")


def test_platform_tools_closes_the_client_it_made_for_itself(web_server, key, monkeypatch):
    """``PlatformTools()`` makes its client from the environment, and nothing closed it: its
    connection stayed open until the garbage collector came by. Used as an async context
    manager (or ``aclose()``), it is closed."""
    monkeypatch.setenv("HITL_BASE_URL", web_server)
    monkeypatch.setenv("HITL_API_KEY", key)
    before = connections_to(web_server)
    model = ScriptedModel(SIX_PERCENT_BID)

    async def run():
        async with PlatformTools() as platform:
            agent = Agent(name="optimizer", model=model, tools=tools_of(platform))
            result = await platform.run(agent, "Raise brand-search's bid 6%.")
            assert connections_to(web_server) == before + 1
            return result

    assert asyncio.run(run()).final_output == "Done."
    assert model.told()["status"] == "executed"
    assert connections_to(web_server) == before


def test_the_reallocation_interrupts_the_run_and_resumes_executed_once_an_operator_approves(
    web_server, key, operator
):
    model = ScriptedModel(REALLOCATION)

    def agent_of(platform: PlatformTools) -> Agent:
        return Agent(name="optimizer", model=model, tools=tools_of(platform))

    async def start() -> str:
        async with AsyncClient(web_server, key) as client:
            platform = PlatformTools(client=client)
            paused = await Runner.run(agent_of(platform), "Move 28%.")
            (interruption,) = paused.interruptions
            assert interruption.tool_name == "move_budget"
            (waiting,) = await platform.waiting(paused)  # what to tell the operator
            assert waiting.status == "pending_review" and "generic-search" in waiting.summary
            return paused.to_state().to_string()  # kept while the run waits

    async def resume(saved: str):
        # Another process, as after a restart: a fresh client and adapter, the saved state;
        # the proposal is found again by its idempotency key.
        async with AsyncClient(web_server, key) as client:
            platform = PlatformTools(client=client)
            agent = agent_of(platform)
            paused = await RunState.from_string(agent, saved)
            (waited_for,) = await platform.waiting(paused)
            state = await platform.resolve(paused, timeout=60)
            return waited_for.id, await Runner.run(agent, state)

    saved = asyncio.run(start())
    proposal = Proposal.objects.get()
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    assert not model.shown and budgets() == (Decimal("1000.00"), Decimal("500.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator, note="Agreed.")

    waited_for, result = asyncio.run(resume(saved))

    assert waited_for == proposal.pk
    assert result.final_output == "Done."
    seen = model.told()
    assert seen["status"] == "executed" and seen["note"] == "Agreed."
    assert seen["message"].startswith("A reviewer approved it: Agreed. Executed. Before: ")
    assert seen["before"] == {
        "brand-search": {"daily_budget": "1000.00"},
        "generic-search": {"daily_budget": "500.00"},
    }
    assert seen["after"] == {
        "brand-search": {"daily_budget": "720.00"},
        "generic-search": {"daily_budget": "780.00"},
    }
    assert Proposal.objects.count() == 1
    assert budgets() == (Decimal("720.00"), Decimal("780.00"))


def test_a_call_id_the_model_uses_again_in_a_later_run_is_a_proposal_of_its_own(
    web_server, key, operator
):
    """A model whose call ids start again each run ("call_0"): the key had been the call's
    id alone, so the same reallocation asked for again in the next run was answered with the
    first one's rejection (nobody saw it), and a smaller one refused for the first one's
    key. Each is a proposal a person decides."""

    def reusing(amount: str) -> ScriptedModel:
        model = ScriptedModel(("move_budget", {**REALLOCATION[1], "amount": amount}))
        model.turns[0][0].call_id = "call_0"
        return model

    async def runs() -> list[tuple[ScriptedModel, int]]:
        told = []
        async with AsyncClient(web_server, key) as client:
            platform = PlatformTools(client=client)
            for amount, decide in (("280.00", "reject"), ("280.00", "reject"), ("150.00", "ok")):
                model = reusing(amount)
                agent = Agent(name="optimizer", model=model, tools=tools_of(platform))
                paused = await Runner.run(agent, "Move budget.")
                (waiting,) = await platform.waiting(paused)
                await asyncio.to_thread(decided, waiting.id, decide)
                await Runner.run(agent, await platform.resolve(paused, timeout=60))
                told.append((model, waiting.id))
        return told

    def decided(proposal_id: int, decide: str) -> None:
        if decide == "reject":
            proposal_reject(
                proposal_id=proposal_id,
                reviewer=operator,
                reason_code="too_aggressive",
                note=f"Not #{proposal_id}.",
            )
        else:
            proposal_approve(proposal_id=proposal_id, reviewer=operator, note="Fine.")

    told = asyncio.run(runs())

    ids = [proposal_id for _, proposal_id in told]
    assert len(set(ids)) == 3 and Proposal.objects.count() == 3
    seen = [model.told() for model, _ in told]
    assert [each["proposal_id"] for each in seen] == ids
    assert [each["status"] for each in seen] == ["rejected", "rejected", "executed"]
    assert [each["note"] for each in seen] == [f"Not #{ids[0]}.", f"Not #{ids[1]}.", "Fine."]
    assert budgets() == (Decimal("850.00"), Decimal("650.00"))


def test_a_tool_action_that_builds_other_fields_for_the_same_call_is_raised_not_told(
    web_server, key
):
    """A ``ToolAction`` whose fields are not a function of the call's arguments alone (here a
    rationale with the process's start in it) builds other fields when the saved run is
    resumed elsewhere: its key came with another body, a 422. The model had been told the
    platform refused its proposal and nothing was executed, while the first one still waited
    for a person, who could approve it. It is raised, saying so; nothing more is proposed."""
    model = ScriptedModel(REALLOCATION)

    def platform_tools(client: AsyncClient, started: str) -> tuple[PlatformTools, Agent]:
        platform = PlatformTools(client=client)
        action = ToolAction(
            "budget_reallocation",
            account="demo",
            payload=lambda a: {k: a[k] for k in ("from_campaign", "to_campaign", "amount")},
            rationale=lambda a: f"{a['rationale']} (run started {started})",
            confidence=0.82,
        )
        return platform, Agent(
            name="optimizer", model=model, tools=[platform.tool(move_budget, action)]
        )

    async def start() -> str:
        async with AsyncClient(web_server, key) as client:
            _, agent = platform_tools(client, "09:00")
            paused = await Runner.run(agent, "Move 28%.")
            assert paused.interruptions  # it waits for a person
            return paused.to_state().to_string()

    async def resume(saved: str):
        async with AsyncClient(web_server, key) as client:
            platform, agent = platform_tools(client, "09:05")
            return await platform.resolve(await RunState.from_string(agent, saved), timeout=5)

    saved = asyncio.run(start())
    with pytest.raises(Unprocessable) as refused:
        asyncio.run(resume(saved))

    message = str(refused.value)
    assert "made of the PlatformTools' key_scope, the tool's name, the call's id and its" in message
    assert "Nothing was proposed for this call" in message
    assert "Make the ToolAction's fields a function of the arguments alone." in message
    assert refused.value.idempotency_key.startswith("openai-agents-")
    assert not model.shown
    (waiting,) = Proposal.objects.all()
    assert waiting.status == ProposalStatus.PENDING_REVIEW


def test_an_edited_reallocation_comes_back_with_the_edit(web_server, key, operator):
    model = ScriptedModel(REALLOCATION)

    async def run():
        async with AsyncClient(web_server, key) as client:
            platform = PlatformTools(client=client)
            agent = Agent(name="optimizer", model=model, tools=tools_of(platform))
            return await platform.run(agent, "Move 28% of brand-search's budget.", timeout=60)

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(asyncio.run, run())
        proposal = waiting_proposal()
        edit = {**proposal.payload, "amount": "200.00"}
        proposal_approve(
            proposal_id=proposal.pk,
            reviewer=operator,
            edited_payload=edit,
            note="Keep a reserve on brand-search",
        )
        result = running.result(timeout=90)

    assert result.final_output == "Done."
    seen = model.told()
    assert seen["status"] == "executed"
    assert seen["edited"]["proposed"]["amount"] == "280.00"
    assert seen["edited"]["executed"]["amount"] == "200.00"
    # A model that reads only the message learns what was changed and why.
    assert seen["message"].startswith(
        "A reviewer edited it (amount: 280.00 → 200.00), then approved it: Keep a reserve on "
        "brand-search. The edited version executed. Before: "
    ), seen["message"]
    assert seen["after"]["brand-search"] == {"daily_budget": "800.00"}
    assert budgets() == (Decimal("800.00"), Decimal("700.00"))


def test_a_creative_with_a_banned_term_is_rejected_and_the_model_is_told_why(
    web_server, key, operator
):
    model = ScriptedModel(GUARANTEED)

    async def run():
        async with AsyncClient(web_server, key) as client:
            platform = PlatformTools(client=client)
            agent = Agent(name="copywriter", model=model, tools=tools_of(platform))
            return await platform.run(agent, "Write urgent copy.", timeout=60)

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(asyncio.run, run())
        proposal = waiting_proposal()
        proposal_reject(
            proposal_id=proposal.pk,
            reviewer=operator,
            reason_code="off_brand",
            note="We never promise results.",
        )
        result = running.result(timeout=90)

    assert result.final_output == "Done."
    seen = model.told()
    assert seen["status"] == "rejected" and seen["executed"] is False
    assert (seen["reason_code"], seen["note"]) == ("off_brand", "We never promise results.")
    assert "guaranteed" in " ".join(seen["reasons"]).lower()


def test_with_wait_block_the_tool_itself_waits_for_the_human(web_server, key, operator):
    model = ScriptedModel(REALLOCATION)

    async def run():
        async with AsyncClient(web_server, key) as client:
            platform = PlatformTools(client=client, wait="block", timeout=60)
            agent = Agent(name="optimizer", model=model, tools=tools_of(platform))
            return await Runner.run(agent, "Move 28% of brand-search's budget.")

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(asyncio.run, run())
        proposal_approve(proposal_id=waiting_proposal().pk, reviewer=operator)
        result = running.result(timeout=90)

    assert result.interruptions == []
    assert model.told()["status"] == "executed"
    assert budgets() == (Decimal("720.00"), Decimal("780.00"))


def test_a_call_the_platform_refuses_comes_back_to_the_model_with_the_reason(web_server, key):
    model = ScriptedModel(("adjust_bid", {**SIX_PERCENT_BID[1], "campaign": "no-such-campaign"}))

    async def run():
        async with AsyncClient(web_server, key) as client:
            platform = PlatformTools(client=client)
            agent = Agent(name="optimizer", model=model, tools=tools_of(platform))
            return await platform.run(agent, "Raise no-such-campaign's bid.")

    result = asyncio.run(run())

    assert result.final_output == "Done."
    seen = model.told()
    assert seen["status"] == "refused" and "no-such-campaign" in seen["message"]
    assert not Proposal.objects.exists()


@pytest.mark.parametrize(
    ("arguments", "told"),
    [
        ('{"campaign": "brand-search", "new_bid": ', "they are not valid JSON"),
        ('["brand-search", "2.12"]', "they are a JSON list, not an object of named arguments"),
    ],
)
def test_a_call_whose_arguments_are_no_json_object_is_told_so(web_server, key, arguments, told):
    """A model's arguments cut off mid-way (or a list) were read as no arguments at all, and
    the model was told the arguments lacked "campaign", which it had given."""
    model = ScriptedModel(("adjust_bid", arguments))

    async def run():
        async with AsyncClient(web_server, key) as client:
            platform = PlatformTools(client=client)
            agent = Agent(name="optimizer", model=model, tools=tools_of(platform))
            return await platform.run(agent, "Raise brand-search's bid.")

    result = asyncio.run(run())

    assert result.final_output == "Done."
    seen = model.told()
    assert seen["status"] == "refused"
    assert f"The tool call's arguments could not make a proposal: {told}" in seen["message"]
    assert "Call the tool again with its arguments as one JSON object." in seen["message"]
    assert "lack" not in seen["message"]
    assert not Proposal.objects.exists()


def test_a_call_the_platform_approved_but_a_kill_switch_sent_back_is_told_as_waiting(
    web_server, key, channel
):
    """The run's approval is past once the tool is called: a 6% bid raise the platform
    approved, sent back to a person by a kill switch engaged as its execution was first
    tried, is told to the model as waiting for a human, with why, not waited for until
    someone decides."""
    endpoint = channel(503, 200)
    endpoint.while_first_request = lambda: KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="An outage."
    )
    model = ScriptedModel(SIX_PERCENT_BID)

    async def run():
        async with AsyncClient(web_server, key) as client:
            platform = PlatformTools(client=client, timeout=60)
            agent = Agent(name="optimizer", model=model, tools=tools_of(platform))
            return await Runner.run(agent, "Raise brand-search's bid 6%.")

    result = asyncio.run(run())

    seen = model.told()
    assert seen["status"] == "pending_review" and seen["executed"] is False
    assert "waits for a human decision" in seen["message"]
    # Its first request went to the endpoint, which answered 503: it may have been done, and
    # it is not said to have gone back to a person before it ran.
    assert (
        "It was approved to run, then sent back to a person: Held back before its next "
        "attempt: the kill switch on account demo is engaged: An outage. Attempt 1 was "
        "answered HTTP 503, which does not say whether the channel carried it out: it may "
        "have been carried out there. A person must approve it again." in seen["message"]
    )
    assert "before it ran" not in seen["message"]
    assert len(endpoint.received) == 1
    assert result.final_output == "Done."
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.00")


def test_a_base_url_that_is_not_the_platforms_is_raised_not_told_to_the_model(web_server, key):
    """Every request to a path the platform does not serve is a 404, which the tool handed to
    the model as the platform refusing its proposal: the model cannot mend it, and the
    operator never saw it. It is raised, as a bad key is (the SDK's UserError, caused by
    ours)."""

    async def run():
        async with AsyncClient(f"{web_server}/hitl", key) as elsewhere:
            platform = PlatformTools(client=elsewhere)
            model = ScriptedModel(SIX_PERCENT_BID)
            agent = Agent(name="optimizer", model=model, tools=tools_of(platform))
            with pytest.raises(UserError) as failed:
                await Runner.run(agent, "Raise brand-search's bid.")
            return failed.value, model

    failed, model = asyncio.run(run())
    assert isinstance(failed.__cause__, NotFound)
    assert "is the base URL the platform's address" in str(failed)
    assert model.shown == {}
    assert not Proposal.objects.exists()


@pytest.mark.parametrize("wait", ["interrupt", "block"])
def test_a_reallocation_whose_answer_was_lost_is_not_proposed_twice_when_run_again(
    web_server, key, wait
):
    """The platform made the proposal but its answer never came back: the run failed with
    ConnectionFailed naming no proposal, and running the agent again (the model's call has
    another id, so another key) proposed the move a second time. The error now says the
    proposal may have been made and names its key; the same action run again through the
    same PlatformTools is sent with that key, and the platform answers with the one
    proposal."""

    async def run(platform: PlatformTools, model: ScriptedModel):
        agent = Agent(name="optimizer", model=model, tools=tools_of(platform))
        return await Runner.run(agent, "Move 28% of brand-search's budget.")

    async def lost_then_again(proxy):
        async with AsyncClient(proxy.url, key, retry=ONE_RETRY) as client:
            platform = PlatformTools(client=client, wait=wait, timeout=1)
            # The SDK raises a failure of needs_approval as its UserError, caused by ours.
            with pytest.raises(UserError) as failed:
                await run(platform, ScriptedModel(REALLOCATION))
            assert isinstance(failed.value.__cause__, ConnectionFailed)
            assert str(failed.value.__cause__) in str(failed.value)
            proxy.losing = False
            model = ScriptedModel(REALLOCATION)
            return failed.value.__cause__, await run(platform, model), model

    with answer_lost_proxy(web_server) as proxy:
        failed, result, model = asyncio.run(lost_then_again(proxy))

    made = Proposal.objects.get()  # one proposal, though the agent proposed it twice
    message = str(failed)
    assert "The proposal may have been made all the same (its answer was lost)." in message
    assert failed.idempotency_key.startswith("openai-agents-")
    assert f"Idempotency-Key, {failed.idempotency_key!r}," in message
    assert "calling the tool again for the same action through these PlatformTools" in message
    if wait == "interrupt":
        (interruption,) = result.interruptions
        assert interruption.tool_name == "move_budget"
    else:
        seen = model.told()
        assert seen["proposal_id"] == made.pk and seen["status"] == "pending_review"
    assert budgets() == (Decimal("1000.00"), Decimal("500.00"))


def test_a_lost_answer_is_found_again_when_the_model_writes_the_same_amount_another_way(
    web_server, key
):
    """The move of "280.00" was made and its answer lost; run again, the model wrote the
    amount as the number 280: the same money, which PlatformTools took for another action
    and proposed a second time with a new key. The same amount, however written, is sent
    with the first key, and the platform answers with the one proposal."""

    async def lost_then_again(proxy):
        async with AsyncClient(proxy.url, key, retry=ONE_RETRY) as client:
            platform = PlatformTools(client=client, wait="block", timeout=1)
            agent = Agent(
                name="optimizer", model=ScriptedModel(REALLOCATION), tools=tools_of(platform)
            )
            with pytest.raises(UserError):
                await Runner.run(agent, "Move 28% of brand-search's budget.")
            proxy.losing = False
            model = ScriptedModel((REALLOCATION[0], {**REALLOCATION[1], "amount": 280}))
            agent = Agent(name="optimizer", model=model, tools=tools_of(platform))
            await Runner.run(agent, "Move 28% of brand-search's budget.")
            return model

    with answer_lost_proxy(web_server) as proxy:
        model = asyncio.run(lost_then_again(proxy))

    made = Proposal.objects.get()
    assert model.told()["proposal_id"] == made.pk
