"""JSON has no NaN or Infinity. The client refuses a number that is not finite before
sending, naming where it is, as it refuses an Idempotency-Key the API would not take: before,
``float("nan")`` in a payload went out as the bare word ``NaN`` (JSON only Python reads) and
came back a 400 naming no field ("JSON parse error - Out of range float values are not JSON
compliant: 'NaN'"), after the retries a dead address costs; and the MCP server, whose model
may write ``NaN`` in a tool call's JSON, passed it on the same way."""

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hitl_client import NO_RETRIES, AsyncClient, Client, ProposalRequest, ValidationFailed

from approvals.models import Proposal

NOT_FINITE = "Must be a finite number: JSON has no NaN or Infinity."
BRAND = {"campaign": "brand-search"}


def nowhere(cls=Client):
    """A client of an address where nothing listens, retrying nothing: a refusal from it
    came before anything was sent."""
    return cls(base_url="http://127.0.0.1:9", api_key="hitl_x_y", retry=NO_RETRIES)


@pytest.mark.parametrize(
    ("payload", "confidence", "supporting_data", "where"),
    [
        ({**BRAND, "new_bid": float("nan")}, 0.9, None, "payload.new_bid"),
        ({**BRAND, "new_bid": Decimal("NaN")}, 0.9, None, "payload.new_bid"),
        ({**BRAND, "new_bid": "2.20"}, float("inf"), None, "confidence"),
        ({**BRAND, "new_bid": "2.20"}, 0.9, {"ctr": [0.2, float("-inf")]}, "supporting_data.ctr.1"),
        ({**BRAND, "new_bid": "2.20"}, 0.9, {"cpa": Decimal("-Infinity")}, "supporting_data.cpa"),
    ],
)  # fmt: skip
def test_a_number_that_is_not_finite_is_refused_before_anything_is_sent(
    payload, confidence, supporting_data, where
):
    with nowhere() as client, pytest.raises(ValidationFailed) as refused:
        client.propose(
            "bid_adjustment",
            "demo",
            payload,
            rationale="r",
            confidence=confidence,
            supporting_data=supporting_data,
        )
    assert refused.value.errors == {where: [NOT_FINITE]}
    assert str(refused.value) == f"{where}: {NOT_FINITE} Nothing was sent."


def test_a_batch_a_dry_run_and_an_outcome_are_refused_the_same_way():
    """One item's NaN refuses the batch, naming the item: JSON carrying it cannot be
    written, and the platform read none of the batch's items when it was."""
    good = ProposalRequest(
        "bid_adjustment", "demo", {**BRAND, "new_bid": "2.20"}, rationale="r", confidence=0.9
    )
    bad = {
        "action_type": "bid_adjustment",
        "account": "demo",
        "payload": {**BRAND, "new_bid": float("nan")},
        "rationale": "r",
        "confidence": 0.9,
    }
    with nowhere() as client:
        with pytest.raises(ValidationFailed) as refused:
            client.propose_many([good, bad])
        assert refused.value.errors == {"1.payload.new_bid": [NOT_FINITE]}
        with pytest.raises(ValidationFailed) as refused:
            client.evaluate("bid_adjustment", "demo", {**BRAND, "new_bid": float("inf")})
        assert refused.value.errors == {"payload.new_bid": [NOT_FINITE]}
        with pytest.raises(ValidationFailed) as refused:
            client.report_outcome(7, {"cpa": float("nan"), "conversions": 3})
        assert refused.value.errors == {"metrics.cpa": [NOT_FINITE]}


def test_the_async_client_refuses_it_too():
    async def propose():
        async with nowhere(AsyncClient) as client:
            await client.propose(
                "bid_adjustment", "demo", {**BRAND, "new_bid": float("nan")},
                rationale="r", confidence=0.9,
            )  # fmt: skip

    with pytest.raises(ValidationFailed) as refused:
        asyncio.run(propose())
    assert refused.value.errors == {"payload.new_bid": [NOT_FINITE]}


def test_a_value_json_cannot_write_is_a_type_error_naming_its_place():
    """Before, json said "datetime is not JSON serializable", not where in the call."""
    with nowhere() as client, pytest.raises(TypeError) as refused:
        client.propose(
            "bid_adjustment", "demo", {**BRAND, "new_bid": "2.20"}, rationale="r",
            confidence=0.9, supporting_data={"series": [{"at": datetime.now(UTC), "cpc": 1.2}]},
        )  # fmt: skip
    assert str(refused.value) == (
        "supporting_data.series.0.at: datetime is not JSON serializable (send text, a number, "
        "true/false, null, a list or an object). Nothing was sent."
    )


@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
def test_the_mcp_server_tells_the_model_which_number_is_not_finite(web_server, demo_world):
    """A model's tool call is JSON it wrote; the MCP server reads ``NaN`` in it as a float
    (the ``mcp`` package's own client would send null, so this speaks JSON-RPC itself)."""
    env = {
        **os.environ,
        "HITL_BASE_URL": web_server,
        "HITL_API_KEY": demo_world["agents"]["optimizer"],
    }
    lines = [
        {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "test", "version": "0"}},
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ]  # fmt: skip
    call = {
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "propose_action", "arguments": {
            "action_type": "bid_adjustment", "account": "demo",
            "payload": {**BRAND, "new_bid": "__NAN__"}, "rationale": "r", "confidence": 0.9,
        }},
    }  # fmt: skip
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "hitl-mcp")],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        for line in lines:
            server.stdin.write(json.dumps(line) + "\n")
        server.stdin.write(json.dumps(call).replace('"__NAN__"', "NaN") + "\n")
        server.stdin.flush()
        answers = {}
        while 2 not in answers:
            answer = json.loads(server.stdout.readline())
            answers[answer.get("id")] = answer
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    result = answers[2]["result"]
    assert result["isError"]
    said = result["content"][0]["text"]
    assert said == (  # not "The platform refused": it never saw the call
        "Error executing tool propose_action: The request was refused before it was sent to "
        f"the platform: payload.new_bid: {NOT_FINITE} Nothing was done; call it again with "
        "them corrected."
    )
    assert not Proposal.objects.exists()


@pytest.mark.parametrize("metrics", ["ctr", [("ctr", 0.031)]])
def test_metrics_not_given_as_a_mapping_are_refused_before_anything_is_sent(metrics):
    """A text failed with "dictionary update sequence element #0 has length 1; 2 is
    required", and pairs were taken without a word, unlike the type the method declares."""
    with nowhere() as client, pytest.raises(TypeError) as refused:
        client.report_outcome(7, metrics)
    assert "takes its metrics as a mapping of name to number" in str(refused.value)
    assert "Nothing was sent." in str(refused.value)
