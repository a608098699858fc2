"""A LangChain agent (``create_agent``) proposing the reference scenario to the platform.

Start the platform (``bin/start``), then, with the optimizer's API key that it printed:

    pip install './clients/python[langchain]'
    HITL_BASE_URL=http://127.0.0.1:8000 HITL_API_KEY=<optimizer key> \\
        python clients/python/examples/langchain_agent.py

The model is scripted (no API key, no network but the platform's): it reads the campaigns,
raises brand-search's bid by 6% (policy lets it execute at once) and moves 28% of
brand-search's daily budget to generic-search (above the 10% ceiling: it waits for an
operator). The run pauses there (LangGraph's ``interrupt``) until someone approves or rejects
it in the console, then resumes, and the model reads what happened.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from hitl_client import Client
from hitl_client.langchain import ProposalMiddleware, ToolAction, resume_when_decided
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver


@tool
def adjust_bid(campaign: str, new_bid: str, rationale: str, confidence: float) -> str:
    """Set a campaign's bid. The platform's policy decides whether a human looks first."""
    raise NotImplementedError("the platform executes it")


@tool
def move_budget(
    from_campaign: str, to_campaign: str, amount: str, rationale: str, confidence: float
) -> str:
    """Move part of one campaign's daily budget to another (a daily amount)."""
    raise NotImplementedError("the platform executes it")


ACTIONS = {
    "adjust_bid": ToolAction(
        "bid_adjustment",
        account="demo",
        payload=lambda args: {"campaign": args["campaign"], "new_bid": args["new_bid"]},
    ),
    "move_budget": ToolAction(
        "budget_reallocation",
        account="demo",
        payload=lambda args: {
            "from_campaign": args["from_campaign"],
            "to_campaign": args["to_campaign"],
            "amount": args["amount"],
        },
        supporting_data={"conversion_rate": {"brand-search": [0.021, 0.019, 0.018]}},
    ),
}


class ScriptedOptimizer(GenericFakeChatModel):
    """Stands in for a chat model: calls the tools in its script, then sums up the results
    it was shown."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedOptimizer:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        try:
            return super()._generate(messages, *args, **kwargs)
        except StopIteration:
            results = [json.loads(m.content) for m in messages if isinstance(m, ToolMessage)]
            summary = "\n".join(f"- #{r.get('proposal_id')}: {r['message']}" for r in results)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=summary))])


def script(hitl: Client) -> ScriptedOptimizer:
    """The tool calls a model would make from the campaigns' current state."""
    campaigns = {c.external_id: c for c in hitl.campaigns()}
    brand = campaigns["brand-search"]
    cent = Decimal("0.01")
    calls = [
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
                "rationale": "generic-search converts at 2.3x brand-search's rate this week.",
                "confidence": 0.82,
            },
        ),
    ]
    turns = [
        AIMessage(
            content="", tool_calls=[{"name": name, "args": args, "id": f"call-{uuid.uuid4()}"}]
        )
        for name, args in calls
    ]
    return ScriptedOptimizer(messages=iter(turns))


def main() -> None:
    with Client() as hitl:  # HITL_BASE_URL and HITL_API_KEY
        agent = create_agent(
            script(hitl),
            tools=[adjust_bid, move_budget],
            middleware=[ProposalMiddleware(ACTIONS, client=hitl, wait="interrupt")],
            checkpointer=InMemorySaver(),
        )
        config = {"configurable": {"thread_id": f"optimizer-{uuid.uuid4()}"}}
        request = {"messages": [{"role": "user", "content": "Tune the demo account."}]}
        result = agent.invoke(request, config)
        while resume := _waiting(result, hitl):
            result = agent.invoke(resume, config)
        print(result["messages"][-1].content)


def _waiting(result: dict, hitl: Client):
    for paused in result.get("__interrupt__", ()):
        proposal_id = paused.value["proposal_id"]
        print(
            f"Proposal #{proposal_id} waits for an operator: {paused.value['summary']}\n"
            f"  decide it at {hitl.base_url}/admin/approvals/proposal/{proposal_id}/change/"
        )
    return resume_when_decided(result, client=hitl)


if __name__ == "__main__":
    main()
