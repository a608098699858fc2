"""The MCP server (``hitl-mcp``, stdio) as an MCP-speaking agent uses it: a ClientSession from
the official ``mcp`` package starts the command and calls its tools, against the platform as
it runs (the Procfile's web process and a real Celery worker). The reference scenario: a 6%
bid change executes (the agent sees before and after), the 28% reallocation waits until an
operator approves it, a creative with a banned term is held naming the term and the
reviewer's rejection comes back with its reason; refusals come back as tool errors with the
API's message."""

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from contextlib import asynccontextmanager
from datetime import UTC
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from hitl_client import mcp as mcp_server
from hitl_client._tools import outcome_report
from hitl_client.models import Proposal as HitlProposal
from mcp import ClientSession, StdioServerParameters, stdio_client

from approvals.models import Proposal as ProposalRow
from approvals.services.decisions import proposal_approve, proposal_reject
from approvals.services.proposals import proposal_withdraw_for_agent
from feedback.models import FeedbackKind
from ledger.models import Account
from policies.models import KillSwitch, Policy
from tests.answer_lost import answer_lost_proxy
from tests.conftest import bid_adjustment, creative, reallocation, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("celery_worker")]

HITL_MCP = str(Path(sys.executable).parent / "hitl-mcp")


@asynccontextmanager
async def mcp_session(base_url: str, api_key: str, errlog=sys.stderr):
    env = {"HITL_BASE_URL": base_url, "HITL_API_KEY": api_key}
    if os.environ.get("PYTHONPATH"):  # a checkout's client ahead of the installed one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    server = StdioServerParameters(command=HITL_MCP, env=env)
    async with (
        stdio_client(server, errlog=errlog) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def call(session: ClientSession, tool: str, **arguments) -> dict:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    return result.structured_content or json.loads(result.content[0].text)


async def refusal(session: ClientSession, tool: str, **arguments) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.is_error
    return result.content[0].text


def run_agent(web_server: str, key: str, agent) -> object:
    async def session_then_agent():
        async with mcp_session(web_server, key) as session:
            return await agent(session)

    return asyncio.run(session_then_agent())


@pytest.fixture
def as_operator(demo_world):
    """Decides as the demo operator, through the console's services, while the agent's
    event loop goes on (Django's database calls run in a thread of their own)."""
    operator = get_user_model().objects.get(username="operator")

    def decide(service, **arguments):
        try:
            return service(reviewer=operator, **arguments)
        finally:
            connection.close()  # the thread's own connection, before the test database goes

    async def in_thread(service, **arguments):
        return await asyncio.to_thread(decide, service, **arguments)

    return in_thread


def test_mcp_server_offers_the_tools_an_agent_needs(web_server, demo_world):
    async def agent(session):
        return {tool.name: tool.description for tool in (await session.list_tools()).tools}

    tools = run_agent(web_server, demo_world["agents"]["optimizer"], agent)
    assert {
        "propose_action",
        "dry_run",
        "wait_for_decision",
        "list_campaigns",
        "read_feedback",
    } <= set(tools)
    assert "budget_reallocation" in tools["propose_action"]  # the payloads, spelled out
    # Every kind of record the feed gives is told to the model reading it: a failed
    # execution a reviewer sent to run again comes as sent_to_run_again, then executed (or
    # failed again), which the tool's description left out.
    told = tools["read_feedback"]
    assert [kind for kind in FeedbackKind.values if kind not in told] == []
    assert "sent_to_run_again (a reviewer sent a failed execution to run again" in told


def test_mcp_bid_change_of_6_percent_executes_and_the_agent_sees_before_and_after(
    web_server, demo_world
):
    async def agent(session):
        campaigns = await call(session, "list_campaigns")
        dry_run = await call(
            session,
            "dry_run",
            action_type="bid_adjustment",
            account="demo",
            payload={"campaign": "brand-search", "new_bid": "2.12"},
        )
        proposed = await call(
            session,
            "propose_action",
            action_type="bid_adjustment",
            account="demo",
            payload={"campaign": "brand-search", "new_bid": "2.12"},
            rationale="CPC below target for five days.",
            confidence=0.9,
        )
        final = await call(session, "wait_for_decision", proposal_id=proposed["id"])
        return campaigns, dry_run, proposed, final

    campaigns, dry_run, proposed, final = run_agent(
        web_server, demo_world["agents"]["optimizer"], agent
    )
    brand = next(c for c in campaigns["campaigns"] if c["external_id"] == "brand-search")
    assert brand["bid"] == "2.00"
    assert dry_run["would_execute_without_review"] and dry_run["outcome"] == "auto_approve"
    assert proposed["status"] == "approved" and not proposed["final"]
    assert final["status"] == "executed" and final["final"]
    assert final["execution"]["before_state"]["brand-search"]["bid"] == "2.00"
    assert final["execution"]["after_state"]["brand-search"]["bid"] == "2.12"
    assert final["message"] == (
        'Executed. Before: {"brand-search": {"bid": "2.00"}}; '
        'after: {"brand-search": {"bid": "2.12"}}.'
    )
    assert "message" not in proposed  # not final: its next step instead


def test_mcp_reallocation_of_28_percent_waits_for_an_operator_then_executes(
    web_server, demo_world, as_operator
):
    async def agent(session):
        proposed = await call(
            session,
            "propose_action",
            action_type="budget_reallocation",
            account="demo",
            payload={"from_campaign": "brand-search", "to_campaign": "generic-search",
                     "amount": "280.00"},
            rationale="generic-search converts at 2.3x brand-search's rate this week.",
            confidence=0.82,
            supporting_data={"conversion_rate": {"brand-search": [0.021, 0.019, 0.018]}},
        )  # fmt: skip
        not_yet = await call(
            session, "wait_for_decision", proposal_id=proposed["id"], timeout_seconds=1
        )
        waiting = asyncio.create_task(
            call(session, "wait_for_decision", proposal_id=proposed["id"], timeout_seconds=60)
        )
        await as_operator(proposal_approve, proposal_id=proposed["id"], note="Agreed.")
        return proposed, not_yet, await waiting

    proposed, not_yet, final = run_agent(web_server, demo_world["agents"]["optimizer"], agent)
    assert proposed["status"] == "pending_review"
    assert proposed["verdict"]["outcome"] == "review"
    assert "exceeds the 10.0%" in proposed["verdict"]["reasons"][0]
    assert not_yet["status"] == "pending_review" and not not_yet["final"]
    assert "wait_for_decision" in not_yet["next_step"]
    # Until when it may still execute, as the framework adapters tell their models: after
    # that, proposing it again is no repeat.
    deadline = ProposalRow.objects.get(pk=proposed["id"]).review_expires_at
    expires_at = deadline.astimezone(UTC).isoformat().replace("+00:00", "Z")
    for waiting in (proposed, not_yet):
        assert waiting["expires_at"] == expires_at
        assert waiting["next_step"] == (
            "Waiting for a human reviewer. Call wait_for_decision. "
            f"It expires at {expires_at} unless a person decides it first."
        )
    assert "expires_at" not in final and "next_step" not in final
    assert final["status"] == "executed"
    assert final["decisions"][0]["outcome"] == "approve"
    after = final["execution"]["after_state"]
    assert Decimal(after["brand-search"]["daily_budget"]) == Decimal("720.00")
    assert Decimal(after["generic-search"]["daily_budget"]) == Decimal("780.00")


def test_mcp_an_edited_reallocation_tells_the_agent_what_the_reviewer_changed(
    web_server, demo_world, as_operator
):
    """Once a reviewer edits a proposal, its payload is the edited one: the server tells the
    edit against the payload the agent proposed, field by field, as the framework adapters
    do, not as the whole payload that executed; and so does a session that did not make it
    (the server restarted, or another one reads it)."""
    payload = {"from_campaign": "brand-search", "to_campaign": "generic-search",
               "amount": "280.00"}  # fmt: skip

    async def agent(session):
        proposed = await call(
            session,
            "propose_action",
            action_type="budget_reallocation",
            account="demo",
            payload=payload,
            rationale="generic-search converts at 2.3x brand-search's rate this week.",
            confidence=0.82,
        )
        await as_operator(
            proposal_approve,
            proposal_id=proposed["id"],
            edited_payload={**payload, "amount": "200.00"},
            note="Keep a reserve on brand-search.",
        )
        return await call(session, "wait_for_decision", proposal_id=proposed["id"])

    final = run_agent(web_server, demo_world["agents"]["optimizer"], agent)
    assert final["status"] == "executed"
    assert final["payload"]["amount"] == "200.00"
    assert final["message"] == (
        "A reviewer edited it (amount: 280.00 → 200.00), then approved it: Keep a reserve on "
        "brand-search. The edited version executed. Before: "
        '{"brand-search": {"daily_budget": "1000.00"}, '
        '"generic-search": {"daily_budget": "500.00"}}; after: '
        '{"brand-search": {"daily_budget": "800.00"}, '
        '"generic-search": {"daily_budget": "700.00"}}.'
    )

    async def another_session(session):
        return await call(session, "get_proposal", proposal_id=final["id"])

    read_again = run_agent(web_server, demo_world["agents"]["optimizer"], another_session)
    assert read_again["message"] == final["message"]


def test_mcp_creative_with_a_banned_term_is_held_then_rejected_with_the_reason(
    web_server, demo_world, as_operator
):
    async def agent(session):
        proposed = await call(
            session,
            "propose_action",
            action_type="creative_deployment",
            account="demo",
            payload={
                "campaign": "display-retarget",
                "creatives": [creative(body="Guaranteed results in a week.")],
            },
            rationale="Urgency lifts CTR.",
            confidence=0.7,
        )
        await as_operator(
            proposal_reject,
            proposal_id=proposed["id"],
            reason_code="off_brand",
            note="We never promise results.",
        )
        final = await call(session, "wait_for_decision", proposal_id=proposed["id"])
        feedback = await call(session, "read_feedback")
        again = await call(session, "read_feedback", resume=feedback["resume"])
        return proposed, final, feedback, again

    proposed, final, feedback, again = run_agent(
        web_server, demo_world["agents"]["copywriter"], agent
    )
    assert proposed["status"] == "pending_review"
    assert any("banned term “guaranteed”" in reason for reason in proposed["verdict"]["reasons"])
    assert final["status"] == "rejected" and final["final"]
    assert final["decisions"][0]["reason_code"] == "off_brand"
    assert final["decisions"][0]["note"] == "We never promise results."
    assert final["message"] == (
        "A reviewer rejected it (off_brand): We never promise results. It was not executed."
    )
    assert [(f["proposal"], f["kind"], f["reason_code"]) for f in feedback["feedback"]] == [
        (proposed["id"], "rejected", "off_brand")
    ]
    assert again["feedback"] == []


def test_mcp_proposing_again_with_the_same_key_answers_the_proposal_as_it_is_now(
    web_server, demo_world, as_operator
):
    """A retry with the idempotency_key of a proposal since rejected is told it was rejected,
    not the first answer's pending_review with a next step to wait for a reviewer."""
    arguments = {
        "action_type": "budget_reallocation",
        "account": "demo",
        "payload": {"from_campaign": "brand-search", "to_campaign": "generic-search",
                    "amount": "280.00"},
        "rationale": "generic-search converts at 2.3x brand-search's rate this week.",
        "confidence": 0.82,
        "idempotency_key": "optimizer-run-7-step-2",
    }  # fmt: skip

    async def agent(session):
        first = await call(session, "propose_action", **arguments)
        await as_operator(
            proposal_reject, proposal_id=first["id"], reason_code="too_aggressive", note="No."
        )
        return first, await call(session, "propose_action", **arguments)

    first, again = run_agent(web_server, demo_world["agents"]["optimizer"], agent)
    assert first["status"] == "pending_review" and "replayed" not in first
    assert again["id"] == first["id"]
    assert again["status"] == "rejected" and again["final"] and "next_step" not in again
    assert again["decisions"][0]["reason_code"] == "too_aggressive"
    assert "Nothing new was proposed" in again["replayed"]
    assert ProposalRow.objects.count() == 1


def test_mcp_a_key_reused_for_another_action_is_refused_with_the_api_s_words_and_status(
    web_server, demo_world
):
    """The model was told "The platform refused the request: non_field_errors: This
    Idempotency-Key was used …", a field of that name it could not mend."""
    arguments = {
        "action_type": "bid_adjustment",
        "account": "demo",
        "payload": {"campaign": "brand-search", "new_bid": "2.12"},
        "rationale": "CPC below target.",
        "confidence": 0.9,
        "idempotency_key": "optimizer-run-8-step-1",
    }

    async def agent(session):
        await call(session, "propose_action", **arguments)
        other = {**arguments, "payload": {"campaign": "brand-search", "new_bid": "2.14"}}
        return await refusal(session, "propose_action", **other)

    refused = run_agent(web_server, demo_world["agents"]["optimizer"], agent)
    assert refused == (
        "Error executing tool propose_action: The platform refused the request (422): This "
        "Idempotency-Key was used with a different request body (or endpoint). Use a new key "
        "for a new request."
    )
    assert ProposalRow.objects.count() == 1


def test_mcp_a_proposal_a_reviewer_withdrew_says_so_with_their_note(
    web_server, demo_world, as_operator
):
    """The view of a proposal left out its withdrawal: who withdrew it, and the note a
    reviewer wrote for the agent, were only in the sentence."""

    async def agent(session):
        tools = {tool.name: tool.description for tool in (await session.list_tools()).tools}
        proposed = await call(
            session,
            "propose_action",
            action_type="budget_reallocation",
            account="demo",
            payload={"from_campaign": "brand-search", "to_campaign": "generic-search",
                     "amount": "280.00"},
            rationale="generic-search converts better.",
            confidence=0.8,
        )  # fmt: skip
        await as_operator(
            proposal_withdraw_for_agent, proposal_id=proposed["id"], note="Duplicate of #41"
        )
        decided = await call(session, "wait_for_decision", proposal_id=proposed["id"])
        feedback = await call(session, "read_feedback")
        return tools, decided, feedback

    tools, decided, feedback = run_agent(web_server, demo_world["agents"]["optimizer"], agent)
    assert (decided["status"], decided["final"]) == ("withdrawn", True)
    assert decided["withdrawal"] == {"by": "reviewer", "note": "Duplicate of #41"}
    assert decided["message"] == "A reviewer withdrew it: Duplicate of #41. It was not executed."
    assert [(f["kind"], f["note"]) for f in feedback["feedback"]] == [
        ("withdrawn", "Duplicate of #41")
    ]
    for kind in ("withdrawn", "superseded", "failed"):  # each kind the feed may hold
        assert kind in tools["read_feedback"]


def test_mcp_read_feedback_resume_stays_the_same_link_round_after_round(
    web_server, demo_world, as_operator
):
    """An agent passes each call's resume to the next: the link must not grow (the API's
    links repeat the page_size the call sent; kept, each round added one more)."""

    async def agent(session):
        resumes = [(await call(session, "read_feedback", limit=5))["resume"]]
        for _ in range(3):
            again = await call(session, "read_feedback", resume=resumes[-1], limit=5)
            resumes.append(again["resume"])
        proposed = await call(
            session,
            "propose_action",
            action_type="budget_reallocation",
            account="demo",
            payload={"from_campaign": "brand-search", "to_campaign": "generic-search",
                     "amount": "280.00"},
            rationale="generic-search converts better.",
            confidence=0.8,
        )  # fmt: skip
        await as_operator(
            proposal_reject, proposal_id=proposed["id"], reason_code="other", note="Not now."
        )
        arrived = await call(session, "read_feedback", resume=resumes[-1], limit=5, wait_seconds=30)
        return resumes, proposed, arrived

    resumes, proposed, arrived = run_agent(web_server, demo_world["agents"]["optimizer"], agent)
    assert len(set(resumes)) == 1
    assert resumes[0].count("page_size=") == 1
    assert [(f["proposal"], f["kind"], f["note"]) for f in arrived["feedback"]] == [
        (proposed["id"], "rejected", "Not now.")
    ]
    assert arrived["resume"].count("page_size=") == 1


def test_mcp_read_feedback_with_a_resume_it_did_not_return_says_what_to_pass(
    web_server, demo_world
):
    """A resume the model made up (or copied from another field) was requested as it was:
    the tool error was the console's 404 page, HTML, as "The platform refused the request"."""

    async def agent(session):
        return [
            await refusal(session, "read_feedback", resume=resume)
            for resume in ("cursor=cD0y", "/api/v1/proposals/")
        ]

    for refused in run_agent(web_server, demo_world["agents"]["optimizer"], agent):
        assert "<" not in refused and "refused" not in refused, refused
        assert "Pass the resume value the previous read_feedback call returned" in refused


def test_mcp_server_writes_to_stderr_what_went_wrong_not_every_request(
    web_server, demo_world, tmp_path
):
    """An MCP host shows or keeps the server's stderr: a refused call is worth a line there,
    each request to the platform (the HTTP client's INFO log) is not."""
    stderr = tmp_path / "hitl-mcp.stderr"

    async def agent():
        with stderr.open("w") as errlog:
            key = demo_world["agents"]["optimizer"]
            async with mcp_session(web_server, key, errlog=errlog) as session:
                await call(session, "list_campaigns")
                await refusal(
                    session,
                    "propose_action",
                    action_type="bid_adjustment",
                    account="demo",
                    payload={"campaign": "brand-search", "new_bid": "2.12", "bogus": 1},
                    rationale="x",
                    confidence=0.5,
                )

    asyncio.run(agent())
    written = stderr.read_text()
    assert "HTTP Request" not in written
    assert "/api/v1/" not in written
    assert "payload.bogus" in written


def test_mcp_refusals_are_tool_errors_with_the_apis_message(web_server, demo_world):
    async def agent(session):
        unknown_field = await refusal(
            session,
            "propose_action",
            action_type="bid_adjustment",
            account="demo",
            payload={"campaign": "brand-search", "new_bid": "2.10", "colour": "red"},
            rationale="r",
            confidence=0.5,
        )
        missing = await refusal(session, "wait_for_decision", proposal_id=999_999_999)
        return unknown_field, missing

    unknown_field, missing = run_agent(web_server, demo_world["agents"]["optimizer"], agent)
    assert "payload" in unknown_field and "colour" in unknown_field
    assert "404" in missing
    assert not ProposalRow.objects.exists()


def test_mcp_arguments_a_tool_cannot_take_are_named_plainly_and_do_nothing(web_server, demo_world):
    """Arguments that fail a tool's schema were answered with pydantic's report (the input
    echoed back, "For further information visit https://errors.pydantic.dev/…" under each
    one), and an argument a tool does not take was dropped without a word: propose_action
    with "dry_run": true proposed the action for real."""
    bid = {"campaign": "brand-search", "new_bid": "2.10"}

    async def agent(session):
        missing = await refusal(session, "propose_action", action_type="bid_adjustment")
        wrong_types = await refusal(
            session,
            "propose_action",
            action_type="bid_adjustment",
            account="demo",
            payload="campaign=brand-search",
            rationale="r",
            confidence="high",
        )
        too_short = await refusal(session, "wait_for_decision", proposal_id=1, timeout_seconds=0)
        dry_run = await refusal(
            session,
            "propose_action",
            action_type="bid_adjustment",
            account="demo",
            payload=bid,
            rationale="r",
            confidence=0.5,
            dry_run=True,
        )
        takes_none = await refusal(session, "list_campaigns", verbose=True)
        return missing, wrong_types, too_short, dry_run, takes_none

    missing, wrong_types, too_short, dry_run, takes_none = run_agent(
        web_server, demo_world["agents"]["optimizer"], agent
    )
    for told in (missing, wrong_types, too_short, dry_run):
        assert "pydantic" not in told and "input_value" not in told, told
        assert "Nothing was done" in told
    assert "its arguments were refused: account: required; payload: required; " in missing
    assert "rationale: required; confidence: required." in missing
    assert "payload: Input should be a valid dictionary;" in wrong_types
    assert "confidence: Input should be a valid number" in wrong_types
    assert "timeout_seconds: Input should be greater than or equal to 1." in too_short
    assert "it takes no argument 'dry_run'" in dry_run
    assert "it takes no argument 'verbose' (it takes none)" in takes_none
    assert not ProposalRow.objects.exists()


class NotTheApi(BaseHTTPRequestHandler):
    """Answers every request 200 with a page, as a server at the wrong address may."""

    def do_GET(self) -> None:
        body = b"<html><title>Welcome</title></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_mcp_an_answer_that_is_not_the_apis_is_not_called_a_refusal(demo_world):
    """A 200 the client cannot read as the API's (a BadResponse) was told to the model as
    "The platform refused the request (200)": nothing was refused, and the model would
    change its call to no purpose."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotTheApi)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        base_url = f"http://127.0.0.1:{server.server_address[1]}"

        async def agent():
            async with mcp_session(base_url, demo_world["agents"]["optimizer"]) as session:
                return await refusal(session, "list_campaigns")

        unread = asyncio.run(agent())
    finally:
        server.shutdown()
        server.server_close()
    assert "refused" not in unread, unread
    assert "The platform's answer could not be read (HTTP 200): " in unread


class Answers(BaseHTTPRequestHandler):
    """Answers each GET with the API's own answer kept for its path (``answers``)."""

    answers: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.answers[self.path.split("?")[0]]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_mcp_a_proposal_a_reviewer_approved_is_not_said_approved_by_policy(
    demo_world, agent_client
):
    """Read between a reviewer's approval and its execution, a proposal was "Approved by
    policy" to the model, which then took a person's decision for a routine one. The API's
    answers, as it gave them at that moment, are served to the server (this test runs its
    decisions inside a transaction that nothing executes)."""
    optimizer = agent_client("optimizer")
    waited = optimizer.post("/api/v1/proposals/", reallocation(), format="json").json()
    routine = optimizer.post("/api/v1/proposals/", bid_adjustment(), format="json").json()
    operator = get_user_model().objects.get(username="operator")
    proposal_approve(proposal_id=waited["id"], reviewer=operator, note="Agreed.")
    Answers.answers = {
        f"/api/v1/proposals/{pk}/": optimizer.get(f"/api/v1/proposals/{pk}/").content
        for pk in (waited["id"], routine["id"])
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        base_url = f"http://127.0.0.1:{server.server_address[1]}"

        async def agent():
            async with mcp_session(base_url, demo_world["agents"]["optimizer"]) as session:
                return [
                    await call(session, "get_proposal", proposal_id=pk)
                    for pk in (waited["id"], routine["id"])
                ]

        approved, auto_approved = asyncio.run(agent())
    finally:
        server.shutdown()
        server.server_close()
    assert (approved["status"], auto_approved["status"]) == ("approved", "approved")
    assert approved["next_step"] == (
        "Approved by a reviewer; it executes within seconds. Call wait_for_decision."
    )
    assert auto_approved["next_step"] == (
        "Approved by policy; it executes within seconds. Call wait_for_decision."
    )


@pytest.mark.parametrize(
    ("configured", "named"),
    [
        ({}, ["HITL_BASE_URL", "HITL_API_KEY"]),
        ({"HITL_API_KEY": "hitl_key"}, ["HITL_BASE_URL"]),
        ({"HITL_BASE_URL": "http://127.0.0.1:8000"}, ["HITL_API_KEY"]),
        ({"HITL_BASE_URL": "localhost:8110", "HITL_API_KEY": "hitl_key"}, ["HITL_BASE_URL"]),
    ],
)
def test_hitl_mcp_without_its_configuration_names_the_environment_variables_to_set(
    configured, named
):
    """Someone running the command (or an MCP host's config) is told what to set, not a
    Python argument: the command takes no options, only its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITL_")} | configured
    started = subprocess.run(
        [HITL_MCP], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 2
    for variable in named:
        assert variable in started.stderr, started.stderr
    assert "base_url=" not in started.stderr and "api_key=" not in started.stderr
    assert started.stderr.startswith("hitl-mcp: ") and not started.stdout


def test_hitl_mcp_help_says_what_it_reads_and_serves_nothing():
    helped = subprocess.run(
        [HITL_MCP, "--help"], capture_output=True, text=True, timeout=60, stdin=subprocess.PIPE
    )  # stdin left open: a server started by mistake would wait on it, and time out
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: hitl-mcp")
    assert "HITL_BASE_URL" in helped.stdout and "HITL_API_KEY" in helped.stdout

    refused = subprocess.run(
        [HITL_MCP, "--port", "9"], capture_output=True, text=True, timeout=60, stdin=subprocess.PIPE
    )
    assert refused.returncode == 2
    assert "unrecognized arguments: --port 9" in refused.stderr


REALLOCATION_ARGUMENTS = {
    "action_type": "budget_reallocation",
    "account": "demo",
    "payload": {"from_campaign": "brand-search", "to_campaign": "generic-search",
                "amount": "280.00"},
    "rationale": "generic-search converts at 2.3x brand-search's rate this week.",
    "confidence": 0.82,
}  # fmt: skip


def test_mcp_a_proposal_whose_answer_was_lost_says_how_to_learn_of_it_without_a_duplicate(
    web_server, demo_world
):
    """The platform made the proposal but its answer never came back: the model was told only
    "POST /api/v1/proposals/ failed: RemoteProtocolError …", with no idempotency_key to ask
    again with, so its natural retry proposed the same action a second time (two budget
    moves for a person to approve, each of which would execute). It is told the proposal
    may have been made, and the key that finds it; asking again with that key answers the
    one proposal."""
    arguments = REALLOCATION_ARGUMENTS
    with answer_lost_proxy(web_server) as proxy:

        async def lost():
            async with mcp_session(proxy.url, demo_world["agents"]["optimizer"]) as session:
                return await refusal(session, "propose_action", **arguments)

        told = asyncio.run(lost())
    assert ProposalRow.objects.count() == 1  # made, though the agent never heard so
    assert "may have been made" in told, told
    key = re.search(r'idempotency_key "([^"]+)"', told)
    assert key, told

    async def again(session):
        return await call(session, "propose_action", **arguments, idempotency_key=key[1])

    found = run_agent(web_server, demo_world["agents"]["optimizer"], again)
    assert found["id"] == ProposalRow.objects.get().pk
    assert found["status"] == "pending_review"
    assert "Nothing new was proposed" in found["replayed"]
    assert ProposalRow.objects.count() == 1


def test_mcp_a_lost_answer_is_not_proposed_twice_when_the_model_asks_again_without_its_key(
    web_server, demo_world
):
    """The platform made the proposal and its answer was lost; the client's retries with the
    same key were throttled ("nothing was done"). The model was told "The platform refused
    the request (429)" with no key, and proposing the move again, without a key as models
    do, made a second one. It is told the proposal may have been made, with its key; asked
    again in the same session without the key, the server sends it with that key, and the
    one proposal is the answer."""
    with answer_lost_proxy(web_server) as proxy:
        proxy.then = "throttled"

        async def lost_then_again(session):
            told = await refusal(session, "propose_action", **REALLOCATION_ARGUMENTS)
            proxy.losing = False
            again = await call(session, "propose_action", **REALLOCATION_ARGUMENTS)
            return told, again

        told, again = run_agent(proxy.url, demo_world["agents"]["optimizer"], lost_then_again)
    made = ProposalRow.objects.get()
    assert "may have been made" in told, told
    key = re.search(r'idempotency_key "([^"]+)"', told)[1]
    assert again["id"] == made.pk
    assert again["replayed"] == (
        f'Already proposed with idempotency_key "{key}": this is that proposal as it is now. '
        "Nothing new was proposed."
    )


def test_mcp_a_replayed_proposal_that_cannot_be_read_again_is_not_called_refused(
    web_server, demo_world
):
    """Asked again with its key, the platform answered with the proposal it had made, but
    reading it as it is now failed (a 502 from a load balancer): the model was told "The
    platform refused the request (502)", and would propose it anew. It is told the proposal
    as first answered, that nothing new was proposed, and how to read it now."""
    arguments = {**REALLOCATION_ARGUMENTS, "idempotency_key": f"mcp-test-{os.getpid()}"}
    with answer_lost_proxy(web_server) as proxy:
        proxy.losing = False

        async def twice(session):
            first = await call(session, "propose_action", **arguments)
            proxy.gets = 502
            return first, await call(session, "propose_action", **arguments)

        first, again = run_agent(proxy.url, demo_world["agents"]["optimizer"], twice)
    assert again["id"] == first["id"] == ProposalRow.objects.get().pk
    assert (
        "this is that proposal as it was first answered; reading it as it is now failed"
        in (again["replayed"])
    )
    assert f"Call get_proposal with proposal_id {first['id']}" in again["replayed"]


def test_mcp_a_lost_answer_is_found_again_when_the_model_writes_the_same_amount_another_way(
    web_server, demo_world
):
    """The move of "280.00" was made and its answer lost; the model asked again in the same
    session without the key, writing the amount as the number 280 (JSON's way, as models
    often do): the same money, which the server took for another action and proposed a
    second time. The same amount, however written, is the one action; another amount
    (280.01) is another."""
    with answer_lost_proxy(web_server) as proxy:
        proxy.then = "throttled"

        async def lost_then_again(session):
            await refusal(session, "propose_action", **REALLOCATION_ARGUMENTS)
            proxy.losing = False
            payload = REALLOCATION_ARGUMENTS["payload"]
            same = await call(
                session,
                "propose_action",
                **{**REALLOCATION_ARGUMENTS, "payload": {**payload, "amount": 280}},
            )
            other = await call(
                session,
                "propose_action",
                **{**REALLOCATION_ARGUMENTS, "payload": {**payload, "amount": "280.01"}},
            )
            return same, other

        same, other = run_agent(proxy.url, demo_world["agents"]["optimizer"], lost_then_again)
    made = ProposalRow.objects.order_by("pk").first()
    assert same["id"] == made.pk and "Nothing new was proposed" in same["replayed"]
    assert other["id"] != made.pk and other["payload"]["amount"] == "280.01"
    assert ProposalRow.objects.count() == 2


async def when_in_the_database(condition) -> None:
    """Waits, in a thread of its own, until ``condition`` holds (its own connection closed)."""

    def waiting():
        try:
            wait_until(condition, timeout=60)
        finally:
            connection.close()

    await asyncio.to_thread(waiting)


async def proposed_then_held(session) -> dict:
    """The 6% bid raise proposed (the policy approves it), once the kill switch engaged while
    its first request was at the channel sent it back to a person: the answer it was
    proposed with."""
    proposed = await call(
        session,
        "propose_action",
        action_type="bid_adjustment",
        account="demo",
        payload={"campaign": "brand-search", "new_bid": "2.12"},
        rationale="CPC below target for five days.",
        confidence=0.9,
    )
    held = proposed["id"]
    await when_in_the_database(
        lambda: ProposalRow.objects.filter(pk=held, status="pending_review").exists()
    )
    return proposed


def test_mcp_a_rejection_after_a_request_went_unanswered_does_not_say_it_was_not_executed(
    web_server, demo_world, channel, as_operator
):
    """A 6% bid raise the platform approved is sent to the account's endpoint, which answers
    503 (no answer says whether it did it); a kill switch engaged meanwhile sends it back to a
    person, who rejects it. "It was not executed" would tell the agent more than anyone
    knows: the endpoint had the request and may have acted on it."""
    endpoint = channel(503, 200)
    endpoint.while_first_request = lambda: KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="An outage."
    )

    async def agent(session):
        proposed = await proposed_then_held(session)
        held = proposed["id"]
        await as_operator(
            proposal_reject, proposal_id=held, reason_code="other", note="Not during an outage."
        )
        return await call(session, "wait_for_decision", proposal_id=held)

    final = run_agent(web_server, demo_world["agents"]["optimizer"], agent)
    assert len(endpoint.received) == 1
    assert final["status"] == "rejected"
    assert final["execution"]["carried_out"] == "unknown"
    assert final["message"] == (
        "A reviewer rejected it (other): Not during an outage. The platform did not execute "
        "it. An attempt sent to the channel before then got no answer that says whether the "
        "channel carried it out, though: it may have been."
    )


def test_mcp_an_approved_action_a_kill_switch_sent_back_is_told_so_until_a_person_decides(
    web_server, demo_world, channel, as_operator
):
    """A 6% bid raise policy approved is sent to the account's endpoint, which answers 503
    with Retry-After; a kill switch engaged meanwhile sends it back to a person. Waiting, the
    model read "Waiting for a human reviewer." beside an auto_approve verdict: nothing said it
    had been approved and sent back, nor that the request already sent may have been carried
    out. It is told both, and why; approved again, it executes and is told who let it run."""
    endpoint = channel(503, 200, retry_after="1")
    endpoint.while_first_request = lambda: KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="An outage."
    )

    async def agent(session):
        tools = {tool.name: tool.description for tool in (await session.list_tools()).tools}
        proposed = await proposed_then_held(session)
        held = proposed["id"]
        waiting = await call(session, "wait_for_decision", proposal_id=held, timeout_seconds=1)
        await as_operator(proposal_approve, proposal_id=held, note="Fine after all.")
        final = await call(session, "wait_for_decision", proposal_id=held)
        return tools, proposed, waiting, final

    tools, proposed, waiting, final = run_agent(
        web_server, demo_world["agents"]["optimizer"], agent
    )
    assert (
        "go back to a person, held by a kill switch before it runs or between two "
        in (tools["propose_action"])
    )
    assert "pending_review again" in tools["wait_for_decision"]
    assert proposed["status"] == "approved" and proposed["final"] is False
    assert waiting["status"] == "pending_review" and waiting["final"] is False
    assert waiting["next_step"] == (
        "It was approved to run, then sent back to a person: Held back before its next "
        "attempt: the kill switch on account demo is engaged: An outage. Attempt 1 was "
        "answered HTTP 503 (Retry-After: 1 s), which does not say whether the channel carried "
        "it out: it may have been carried out there. A person must approve it again. Waiting "
        "for a human "
        f"reviewer. Call wait_for_decision. It expires at {waiting['expires_at']} unless a "
        "person decides it first."
    )
    assert final["status"] == "executed" and final["decided_by"] == "a reviewer"
    assert final["message"].startswith("A reviewer approved it: Fine after all. Executed.")
    assert len(endpoint.received) == 2


def test_mcp_one_reviewers_approved_then_held_before_any_attempt_is_told_as_sent_back():
    """Approved by a reviewer (round 1), held by a kill switch before any attempt (round 2,
    no execution): sent back, nothing sent to the channel. One waiting for a second
    reviewer's approval, or routed to a person at once, is not."""
    reasons = ["Held back before executing: the kill switch on account demo is engaged: X."]
    routed = ["28.0% of brand-search's daily budget exceeds the 10.0% ceiling."]
    answer = {
        "id": 4,
        "status": "pending_review",
        "summary": "move",
        "verdict": {
            "outcome": "review",
            "reasons": reasons + routed,
            "routed_reasons": routed,
            "required_approvals": 1,
        },
        "decisions": [{"outcome": "approve", "note": "", "round": 1}],
        "review_round": 2,
        "execution": None,
    }
    view = mcp_server.proposal_view(HitlProposal.from_api(answer))
    assert view["next_step"].startswith(
        f"It was approved to run, then sent back to a person before it ran: {reasons[0]} "
        "Waiting for a human reviewer."
    )
    answer["verdict"]["required_approvals"] = 2  # one of two approvals in, then an edit
    view = mcp_server.proposal_view(HitlProposal.from_api(answer))
    assert view["next_step"] == "Waiting for a human reviewer. Call wait_for_decision."
    answer.update(decisions=[], review_round=1)  # routed to a person at once
    view = mcp_server.proposal_view(HitlProposal.from_api(answer))
    assert view["next_step"] == "Waiting for a human reviewer. Call wait_for_decision."


@pytest.mark.parametrize(
    "attempt_said",
    [
        # As the platform says it now: the answer its attempt's failure names.
        "Attempt 1 was answered HTTP 503, which does not say whether the channel carried it out",
        # As reasons recorded before say it.
        "Attempt 1 was sent to the channel and got no answer that says whether the channel "
        "carried it out",
    ],
)
def test_mcp_one_held_between_attempts_is_told_its_attempt_once(attempt_said):
    """Held back by a kill switch after attempt 1 was answered 503: the platform's reason
    says what that attempt got, and the model is not told it a second time in other words
    (the client looked for "got no answer that says …" in it, which a reason naming the
    channel's answer does not say, and added "An attempt sent to the channel before then got
    no answer …" after "Attempt 1 was answered HTTP 503 …")."""
    reasons = [
        "Held back before its next attempt: the kill switch on account demo is engaged: X. "
        f"{attempt_said}: it may have been carried out there. A person must approve it again."
    ]
    answer = {
        "id": 4,
        "status": "pending_review",
        "summary": "bid",
        "verdict": {
            "outcome": "auto_approve",
            "reasons": [*reasons, "6% is within the policy."],
            "routed_reasons": ["6% is within the policy."],
            "required_approvals": 1,
        },
        "decisions": [],
        "review_round": 1,
        "execution": {"status": "failed", "carried_out": "unknown", "attempts": 1},
    }
    view = mcp_server.proposal_view(HitlProposal.from_api(answer))
    assert view["next_step"].startswith(
        f"It was approved to run, then sent back to a person: {reasons[0]} Waiting for a human "
        "reviewer."
    ), view["next_step"]
    assert "before then" not in view["next_step"]


def test_mcp_a_creative_batch_google_ads_partly_deployed_is_told_as_partly_carried_out(
    web_server, demo_world, linked_google_ads, as_operator
):
    """Google Ads deploys the first of two creatives and refuses the second: the execution
    fails, not retried. The agent is told that part of it was carried out, not "Nothing
    changed": one creative is live."""
    linked_google_ads.fail_items({1: "Trademark in the headline."})

    async def agent(session):
        proposed = await call(
            session,
            "propose_action",
            action_type="creative_deployment",
            account="demo",
            payload={
                "campaign": "brand-search",
                "creatives": [creative("Search smarter"), creative("Find it fast")],
            },
            rationale="Two fresh angles.",
            confidence=0.7,
        )
        if proposed["status"] == "pending_review":
            await as_operator(proposal_approve, proposal_id=proposed["id"])
        return await call(session, "wait_for_decision", proposal_id=proposed["id"])

    final = run_agent(web_server, demo_world["agents"]["copywriter"], agent)
    assert len(linked_google_ads.state.ads) == 1  # one creative is live
    assert final["status"] == "failed"
    assert final["execution"]["carried_out"] == "partly"
    assert final["execution"]["error"].startswith("Partly carried out on the channel")
    assert "Nothing" not in final["message"]
    assert final["message"].endswith(
        "Part of it was carried out on the channel and part was not (the error says which); it "
        "is not retried, which would do the done part twice. Read the current state before "
        "proposing anything more about it. An operator may retry it: do not propose it again."
    )


def test_mcp_and_the_adapters_say_one_of_two_approvals_is_in_and_it_waits_for_a_second(
    web_server, demo_world, as_operator, agent_client
):
    """Under a two-person rule, a reallocation one operator approved read to the model as
    simply "Waiting for a human reviewer", as if nobody had looked at it: the API says one
    approval of its round is in (its decision, when, its round) and two are needed. The MCP
    server and the framework adapters (``outcome_report``) say so, in the same words."""
    policy = Policy.objects.get(action_type="budget_reallocation", account=None, agent=None)
    policy.required_approvals = 2
    policy.save()

    async def agent(session):
        proposed = await call(
            session,
            "propose_action",
            action_type="budget_reallocation",
            account="demo",
            payload={"from_campaign": "brand-search", "to_campaign": "generic-search",
                     "amount": "280.00"},
            rationale="generic-search converts at 2.3x brand-search's rate this week.",
            confidence=0.82,
        )  # fmt: skip
        assert "approvals" not in proposed
        await as_operator(proposal_approve, proposal_id=proposed["id"], note="Agreed")
        return await call(session, "get_proposal", proposal_id=proposed["id"])

    seen = run_agent(web_server, demo_world["agents"]["optimizer"], agent)
    answer = agent_client("optimizer").get(f"/api/v1/proposals/{seen['id']}/").json()
    # What the API says: pending, one approval in its round, two needed.
    assert answer["status"] == "pending_review" and answer["review_round"] == 1
    assert answer["verdict"]["required_approvals"] == 2
    [approval] = answer["decisions"]
    assert (approval["outcome"], approval["round"]) == ("approve", 1)
    said = (
        f"1 of the 2 approvals it needs is in: Reviewer 1 approved it at "
        f"{approval['decided_at']} (Agreed.). It still waits for a second reviewer's approval."
    )
    assert seen["approvals"] == {
        "given": 1,
        "required": 2,
        "approved": [{"by": "Reviewer 1", "at": approval["decided_at"], "note": "Agreed"}],
        "message": said,
    }
    assert seen["next_step"] == (
        f"{said} Call wait_for_decision. "
        f"It expires at {answer['review_expires_at']} unless a person decides it first."
    )
    told = outcome_report(HitlProposal.from_api(answer))
    assert told["approvals"] == seen["approvals"]
    assert told["message"].startswith(
        f"Proposal #{seen['id']} waits for a human decision; it has not executed yet, but it "
        f"still may: do not propose it again. {said}"
    )
