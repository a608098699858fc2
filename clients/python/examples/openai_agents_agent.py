"""An OpenAI Agents SDK agent proposing the reference scenario to the platform.

Start the platform (``bin/start``), then, with the optimizer's API key that it printed:

    pip install './clients/python[openai-agents]'
    HITL_BASE_URL=http://127.0.0.1:8000 HITL_API_KEY=<optimizer key> \\
        python clients/python/examples/openai_agents_agent.py

The model is scripted (a ``Model`` of its own: no API key, and tracing is off, so nothing
leaves the machine): it reads the campaigns, raises brand-search's bid by 6% (executes at
once) and moves 28% of brand-search's daily budget to generic-search (waits for an
operator). That call stops the run with an interruption, as any tool needing approval does;
the example prints where to decide the proposal it waits for (``PlatformTools.waiting``),
then ``PlatformTools.resolve`` waits for the platform's decision and approves or rejects the
interruption to match, and the run resumes; the model reads what happened.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from agents import Agent, Model, ModelResponse, Runner, Usage, set_tracing_disabled
from hitl_client import AsyncClient
from hitl_client.openai_agents import PlatformTools, ToolAction
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)


def adjust_bid(campaign: str, new_bid: str, rationale: str, confidence: float) -> str:
    """Set a campaign's bid. The platform's policy decides whether a human looks first."""
    raise NotImplementedError("the platform executes it")


def move_budget(
    from_campaign: str, to_campaign: str, amount: str, rationale: str, confidence: float
) -> str:
    """Move part of one campaign's daily budget to another (a daily amount)."""
    raise NotImplementedError("the platform executes it")


class ScriptedOptimizer(Model):
    """Stands in for a model: calls the tools in its script, one a turn, then sums up the
    results it was shown."""

    def __init__(self, calls: list[tuple[str, dict]]) -> None:
        self.turns = [
            ResponseFunctionToolCall(
                type="function_call",
                id=f"fc-{uuid.uuid4().hex}",
                call_id=f"call-{uuid.uuid4().hex}",
                name=name,
                arguments=json.dumps(args),
            )
            for name, args in calls
        ]

    async def get_response(self, system_instructions, input, *args: Any, **kwargs: Any):
        if self.turns:
            output: Any = self.turns.pop(0)
        else:
            results = [
                item["output"]
                for item in input
                if isinstance(item, dict) and item.get("type") == "function_call_output"
            ]
            output = ResponseOutputMessage(
                id=f"msg-{uuid.uuid4().hex}",
                type="message",
                role="assistant",
                status="completed",
                content=[
                    ResponseOutputText(
                        type="output_text", text="\n".join(map(_line, results)), annotations=[]
                    )
                ],
            )
        return ModelResponse(output=[output], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("this example does not stream")


def _line(output: Any) -> str:
    try:
        result = json.loads(output)
    except (TypeError, ValueError):
        return f"- {output}"
    return f"- #{result.get('proposal_id')}: {result['message']}"


async def main() -> None:
    set_tracing_disabled(True)
    async with AsyncClient() as hitl:  # HITL_BASE_URL and HITL_API_KEY
        campaigns = {c.external_id: c for c in await hitl.campaigns()}
        brand = campaigns["brand-search"]
        cent = Decimal("0.01")
        model = ScriptedOptimizer(
            [
                (
                    "adjust_bid",
                    {
                        "campaign": "brand-search",
                        "new_bid": str((brand.bid * Decimal("1.06")).quantize(cent)),
                        "rationale": "CPC below target for five days.",
                        "confidence": 0.9,
                    },
                ),
                (
                    "move_budget",
                    {
                        "from_campaign": "brand-search",
                        "to_campaign": "generic-search",
                        "amount": str((brand.daily_budget * Decimal("0.28")).quantize(cent)),
                        "rationale": "generic-search converts at 2.3x brand-search's rate.",
                        "confidence": 0.82,
                    },
                ),
            ]
        )
        platform = PlatformTools(client=hitl)
        tools = [
            platform.tool(
                adjust_bid,
                ToolAction(
                    "bid_adjustment",
                    account="demo",
                    payload=lambda args: {"campaign": args["campaign"], "new_bid": args["new_bid"]},
                ),
            ),
            platform.tool(
                move_budget,
                ToolAction(
                    "budget_reallocation",
                    account="demo",
                    payload=lambda args: {
                        "from_campaign": args["from_campaign"],
                        "to_campaign": args["to_campaign"],
                        "amount": args["amount"],
                    },
                ),
            ),
        ]
        agent = Agent(name="optimizer", model=model, tools=tools)
        result = await Runner.run(agent, "Tune the demo account.")
        # A run stops for each call that waits for a person, and for a call whose arguments
        # are no JSON object (the SDK cannot check those): resolve() settles both.
        while result.interruptions:
            for proposal in await platform.waiting(result):
                print(
                    f"Proposal #{proposal.id} waits for an operator: {proposal.summary}\n"
                    f"  decide it at {hitl.base_url}/admin/approvals/proposal/{proposal.id}/change/"
                )
            result = await Runner.run(agent, await platform.resolve(result))
        print(result.final_output)


if __name__ == "__main__":
    asyncio.run(main())
