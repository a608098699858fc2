"""An MCP-speaking agent proposing the reference scenario through ``hitl-mcp``.

Start the platform (``bin/start``), then, with the optimizer's API key that it printed:

    pip install './clients/python[mcp]'
    HITL_BASE_URL=http://127.0.0.1:8000 HITL_API_KEY=<optimizer key> \\
        python clients/python/examples/mcp_agent.py

It starts the MCP server (``python -m hitl_client.mcp``, which is ``hitl-mcp``) on stdio with
the official ``mcp`` package's client, as an MCP host does, and calls its tools the way a
model would (the calls are scripted: no model, no API key, no network but the platform's):
it reads the campaigns, raises brand-search's bid by 6% (policy lets it execute at once) and
moves 28% of brand-search's daily budget to generic-search (above the 10% ceiling: it waits
for an operator). It prints where to decide the one that waits, calls wait_for_decision
until both are final, and prints what the server told it of each (its ``message``) and the
feedback reviewers left on them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from decimal import Decimal
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client

# The server reads HITL_BASE_URL and HITL_API_KEY from its environment (an MCP host's
# configuration gives them as its "env").
ENVIRONMENT = ("HITL_BASE_URL", "HITL_API_KEY", "PYTHONPATH")  # PYTHONPATH: a checkout's client

SERVER = StdioServerParameters(
    command=sys.executable,  # the interpreter hitl-client is installed in
    args=["-m", "hitl_client.mcp"],  # hitl-mcp
    env={name: os.environ[name] for name in ENVIRONMENT if os.environ.get(name)},
)


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool's answer, as the model reads it; a tool error stops the example with its text
    (the platform's message: a model would correct its call and try again)."""
    result = await session.call_tool(tool, arguments)
    text = "\n".join(part.text for part in result.content if part.type == "text")
    if result.is_error:
        raise SystemExit(f"{tool} refused: {text}")
    return result.structured_content or json.loads(text)


async def main() -> None:
    base_url = os.environ.get("HITL_BASE_URL", "").rstrip("/")
    async with stdio_client(SERVER) as (read, write), ClientSession(read, write) as session:
        await session.initialize()  # its instructions tell a model how to work with it

        campaigns = await call(session, "list_campaigns")
        brand = next(c for c in campaigns["campaigns"] if c["external_id"] == "brand-search")
        cent = Decimal("0.01")
        # Money and bids as decimal strings, rounded to cents, as the tools' descriptions say.
        new_bid = str((Decimal(brand["bid"]) * Decimal("1.06")).quantize(cent))
        amount = str((Decimal(brand["daily_budget"]) * Decimal("0.28")).quantize(cent))

        proposals = [
            await call(
                session,
                "propose_action",
                action_type="bid_adjustment",
                account=brand["account"],
                payload={"campaign": "brand-search", "new_bid": new_bid},
                rationale="CPC below target for five days.",
                confidence=0.9,
            ),
            await call(
                session,
                "propose_action",
                action_type="budget_reallocation",
                account=brand["account"],
                payload={
                    "from_campaign": "brand-search",
                    "to_campaign": "generic-search",
                    "amount": amount,
                },
                rationale="generic-search converts at 2.3x brand-search's rate this week.",
                confidence=0.82,
                supporting_data={"conversion_rate": {"brand-search": [0.021, 0.019, 0.018]}},
            ),
        ]
        for proposal in proposals:
            if proposal["status"] == "pending_review":
                print(
                    f"Proposal #{proposal['id']} waits for an operator: {proposal['summary']}\n"
                    f"  decide it at {base_url}/admin/approvals/proposal/{proposal['id']}/change/",
                    flush=True,
                )

        outcomes = []
        for proposal in proposals:
            while not proposal["final"]:  # each call waits up to timeout_seconds
                proposal = await call(
                    session, "wait_for_decision", proposal_id=proposal["id"], timeout_seconds=60
                )
            outcomes.append(proposal)
        for proposal in outcomes:
            print(f"- #{proposal['id']}: {proposal['message']}")

        # What reviewers said of these two (a long-running agent keeps the resume value and
        # reads only what is new).
        ours = {proposal["id"] for proposal in outcomes}
        page = await call(session, "read_feedback", limit=500)
        records = page["feedback"]
        while page["more"]:
            page = await call(session, "read_feedback", resume=page["resume"], limit=500)
            records += page["feedback"]
        for record in records:
            if record["proposal"] in ours:
                said = record["note"] or record["reason_code"]
                print(f"  feedback on #{record['proposal']}: {record['kind']}: {said or '-'}")


if __name__ == "__main__":
    asyncio.run(main())
