"""A person's retry of a failed execution, as an agent learns of it: the API's ``retries``
(who, when, and the failure each followed), the client's and the adapters' report (who let
the run go that executed: the person who retried it, not the policy that let the first run
go), and a wait that follows a retry (``Client.wait(..., follow_retries=True)``, the MCP
server's ``wait_for_decision`` on a failed proposal, the framework adapters'
``follow_retries``), against the platform as it runs where a wait is involved."""

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC

import pytest
from agents import Agent, Runner
from django.contrib.auth import get_user_model
from django.db import connection
from hitl_client import AsyncClient, Client, WaitTimedOut
from hitl_client._tools import RETRIED_BY, outcome_report
from hitl_client.langchain import ProposalMiddleware
from hitl_client.mcp import RETRY_NEXT_STEP, proposal_view
from hitl_client.models import Proposal as HitlProposal
from hitl_client.openai_agents import PlatformTools

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_retry
from executors.runner import proposal_execute
from tests import test_langchain_adapter as langchain_agent
from tests import test_openai_agents_adapter as openai_agent
from tests.conftest import SIX_PERCENT_BID, bid_adjustment, reallocation, wait_until
from tests.factories import evaluated
from tests.test_mcp import call, run_agent

BID = {"campaign": "brand-search", "new_bid": "2.12"}


def api_time(moment) -> str:
    """A time as the API writes it (UTC, ``Z``)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def retried_at(proposal: Proposal) -> list[str]:
    """When each person's retry of it was recorded, as the API writes the time."""
    return [
        api_time(record.history_date)
        for record in Proposal.history.filter(
            id=proposal.pk, history_change_reason__startswith="sent to run again by "
        ).order_by("history_id")
    ]


def retry_in_thread(proposal_id: int) -> None:
    """The demo operator retries the proposal, from a thread of its own (an agent's event
    loop goes on meanwhile)."""
    try:
        operator = get_user_model().objects.get(username="operator")
        proposal_retry(proposal_id=proposal_id, reviewer=operator)
    finally:
        connection.close()  # the thread's own, before the test database goes


def failed_at(proposal: Proposal, attempt: int) -> str:
    return api_time(proposal.executions.get(attempt=attempt).finished_at)


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def test_the_api_says_a_person_retried_the_failed_execution_policy_let_run(
    agent_client, channel, operator
):
    """A 6% bid policy let run fails on the account's endpoint (HTTP 400); an operator sends
    it to run again, and it executes. The API said nothing of the retry, nor of the failure
    before it (``execution`` is the last attempt), and its ``decided_at`` is the policy's:
    the agent's report said "decided_by": "policy (auto-approved)" and "Executed." alone,
    though the run that executed went on a person's word."""
    channel(400, 200)
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal.status == "approved"
    assert proposal_execute(proposal_id=proposal.pk).status == "failed"
    proposal_retry(proposal_id=proposal.pk, reviewer=operator)
    assert proposal_execute(proposal_id=proposal.pk).status == "executed"

    body = agent_client("optimizer").get(f"/api/v1/proposals/{proposal.pk}/").json()

    [retry_at] = retried_at(proposal)
    assert body["retries"] == [
        {
            "by": "reviewer",
            "at": retry_at,
            "failed_attempt": 1,
            "failed_at": failed_at(proposal, 1),
            "error": "the endpoint answered HTTP 400",
        }
    ]
    assert body["decided_at"] == api_time(proposal.decided_at)  # when policy decided, kept
    assert body["execution"]["attempt"] == 2
    assert "operator" not in json.dumps(body)  # people are not named to the agent
    listed = agent_client("optimizer").get("/api/v1/proposals/").json()["results"]
    assert [item["retries"] for item in listed] == [body["retries"]]

    told = outcome_report(HitlProposal.from_api(body))
    assert (
        told["decided_by"]
        == RETRIED_BY
        == ("a reviewer, who sent it to run again after its execution failed")
    )
    assert told["decided_at"] == retry_at
    assert (told["first_decided_by"], told["first_decided_at"]) == (
        "policy (auto-approved)",
        body["decided_at"],
    )
    assert told["retries"] == body["retries"]
    assert told["message"] == (
        "Policy approved it without a person (auto-approved). Its execution failed at "
        f"{failed_at(proposal, 1)} (the endpoint answered HTTP 400), and a reviewer sent it to "
        f"run again at {retry_at} (their approval to run it). Executed. "
        'Before: {"brand-search": {"bid": "2.00"}}; after: {"brand-search": {"bid": "2.12"}}.'
    )


def test_a_retry_that_failed_again_is_told_with_both_failures(agent_client, channel, operator):
    """It failed (HTTP 400), an operator retried it, and it failed again (HTTP 409): the
    report said "Approved, but its execution failed: the endpoint answered HTTP 409." alone,
    as if nobody had retried it, and the first failure was gone."""
    channel(400, 409)
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == "failed"
    proposal_retry(proposal_id=proposal.pk, reviewer=operator)
    running_again = agent_client("optimizer").get(f"/api/v1/proposals/{proposal.pk}/").json()
    assert proposal_execute(proposal_id=proposal.pk).status == "failed"

    body = agent_client("optimizer").get(f"/api/v1/proposals/{proposal.pk}/").json()

    [retry_at] = retried_at(proposal)
    first_failure = (
        f"Its execution failed at {failed_at(proposal, 1)} (the endpoint answered HTTP 400), "
        f"and a reviewer sent it to run again at {retry_at} (their approval to run it)."
    )
    waiting = HitlProposal.from_api(running_again)
    told_then = outcome_report(waiting)
    assert (told_then["status"], told_then["decided_by"]) == ("approved", RETRIED_BY)
    assert told_then["message"].startswith(
        f"Proposal #{proposal.pk} is approved and waits for its execution; it has not executed "
        f"yet, but it still may: do not propose it again. {first_failure} "
    )
    assert proposal_view(waiting)["next_step"] == (
        "Approved by a reviewer, who sent it to run again after its execution failed; it "
        "executes within seconds. Call wait_for_decision."
    )
    told = outcome_report(HitlProposal.from_api(body))
    assert told["message"] == (
        f"{first_failure} That run failed too at {failed_at(proposal, 2)}: the endpoint "
        "answered HTTP 409. Nothing was carried out. An operator may retry it: do not propose "
        "it again."
    )
    assert proposal_view(HitlProposal.from_api(body))["next_step"] == RETRY_NEXT_STEP


def test_a_retry_of_what_a_reviewer_approved_is_told_as_the_retry_not_the_approval(
    agent_client, channel, operators
):
    """The reallocation one operator approved fails; a second operator retries it. Who let
    the run go that executed is the one who retried it; the approval is told first."""
    first, second = operators
    channel(400, 200)
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=first, note="Agreed")
    assert proposal_execute(proposal_id=proposal.pk).status == "failed"
    proposal_retry(proposal_id=proposal.pk, reviewer=second)
    assert proposal_execute(proposal_id=proposal.pk).status == "executed"

    body = agent_client("optimizer").get(f"/api/v1/proposals/{proposal.pk}/").json()
    told = outcome_report(HitlProposal.from_api(body))

    [retry_at] = retried_at(proposal)
    assert (told["decided_by"], told["decided_at"]) == (RETRIED_BY, retry_at)
    assert told["first_decided_by"] == "a reviewer"
    assert told["message"].startswith(
        "A reviewer approved it: Agreed. Its execution failed at "
        f"{failed_at(proposal, 1)} (the endpoint answered HTTP 400), and a reviewer sent it to "
        f"run again at {retry_at} (their approval to run it). Executed. Before: "
    )


# --- waits that follow a retry, against the platform as it runs -----------------------------


@pytest.fixture
def hitl(web_server, demo_world):
    with Client(web_server, demo_world["agents"]["optimizer"]) as client:
        yield client


def failed_proposal(hitl: Client) -> int:
    """A 6% bid policy lets run, which the account's endpoint refuses: failed."""
    proposed = hitl.propose(
        "bid_adjustment", "demo", BID, rationale="CPC below target.", confidence=0.9
    )
    assert hitl.wait(proposed.id, timeout=30).status == "failed"
    return proposed.id


def retried_while(wait, operator, proposal_id: int):
    """``wait()`` run in a thread while the operator retries the failed proposal, once the
    wait is under way; what it returned."""
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(wait)
        time.sleep(0.5)  # the wait's long poll is held by now
        assert not waiting.done()  # a failed proposal does not end it
        proposal_retry(proposal_id=proposal_id, reviewer=operator)
        return waiting.result(timeout=60)


@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
def test_wait_ends_at_a_failure_and_follow_retries_waits_for_the_retry_to_execute(
    hitl, channel, operator
):
    """``wait()`` took ``failed`` for final and had no way to follow a retry: an agent
    waiting for its proposal stopped at ``failed``, though a person retried it and it ran."""
    channel(400, 200)
    proposal_id = failed_proposal(hitl)
    started = time.monotonic()
    assert hitl.wait(proposal_id, timeout=5).status == "failed"  # by default, at once
    assert time.monotonic() - started < 2

    ended = retried_while(
        lambda: hitl.wait(proposal_id, timeout=60, follow_retries=True), operator, proposal_id
    )

    assert ended.status == "executed"
    assert [retry.error for retry in ended.retries] == ["the endpoint answered HTTP 400"]
    assert ended.let_run_by_retry is ended.retries[0]
    assert outcome_report(ended)["decided_by"] == RETRIED_BY


@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
def test_follow_retries_times_out_saying_nobody_retried_it(hitl, channel):
    channel(400)
    proposal_id = failed_proposal(hitl)

    with pytest.raises(WaitTimedOut) as timed_out:
        hitl.wait(proposal_id, timeout=2, follow_retries=True)

    assert timed_out.value.proposal.status == "failed"
    assert timed_out.value.proposal.may_be_retried
    assert str(timed_out.value) == (
        f"Proposal {proposal_id} is failed, and nobody sent it to run again, when the wait "
        "timed out."
    )


@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
def test_async_wait_follows_a_retry_too(web_server, demo_world, channel, operator):
    channel(400, 200)
    with Client(web_server, demo_world["agents"]["optimizer"]) as hitl:
        proposal_id = failed_proposal(hitl)

    async def follow():
        async with AsyncClient(web_server, demo_world["agents"]["optimizer"]) as client:
            return await client.wait(proposal_id, timeout=60, follow_retries=True)

    assert retried_while(lambda: asyncio.run(follow()), operator, proposal_id).status == (
        "executed"
    )


@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
def test_mcp_wait_for_decision_on_a_failed_proposal_waits_for_the_retry(
    web_server, demo_world, channel
):
    """``wait_for_decision`` answered a failed proposal at once, however often the model
    called it: a model could not learn that a person retried it and it executed, nor who let
    that run go. Now it tells the failure (with what to do next), then, called again, waits
    for the retry and tells how its run ended; a retry that fails again is told too."""
    channel(400, 200, 409)

    async def agent(session):
        proposed = await call(
            session,
            "propose_action",
            action_type="bid_adjustment",
            account="demo",
            payload=BID,
            rationale="CPC below target for five days.",
            confidence=0.9,
        )
        failed = await call(session, "wait_for_decision", proposal_id=proposed["id"])
        waiting = asyncio.create_task(
            call(session, "wait_for_decision", proposal_id=proposed["id"], timeout_seconds=60)
        )
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await asyncio.to_thread(retry_in_thread, proposed["id"])
        executed = await waiting
        return failed, executed

    failed, executed = run_agent(web_server, demo_world["agents"]["optimizer"], agent)

    assert (failed["status"], failed["final"]) == ("failed", True)
    assert failed["next_step"] == RETRY_NEXT_STEP
    assert failed["retries"] == []
    assert executed["status"] == "executed"
    row = Proposal.objects.get(pk=executed["id"])
    [retry_at] = retried_at(row)
    assert executed["decided_by"] == RETRIED_BY
    assert executed["decided_at"] == retry_at
    assert executed["retries"][0]["error"] == "the endpoint answered HTTP 400"
    assert executed["message"].startswith(
        "Policy approved it without a person (auto-approved). Its execution failed at "
        f"{failed_at(row, 1)} (the endpoint answered HTTP 400), and a reviewer sent it to run "
        f"again at {retry_at} (their approval to run it). Executed. Before: "
    )


@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
def test_mcp_wait_for_decision_tells_a_retry_that_failed_again(web_server, demo_world, channel):
    channel(400, 409)

    async def agent(session):
        proposed = await call(
            session,
            "propose_action",
            action_type="bid_adjustment",
            account="demo",
            payload=BID,
            rationale="CPC below target for five days.",
            confidence=0.9,
        )
        await call(session, "wait_for_decision", proposal_id=proposed["id"])
        waiting = asyncio.create_task(
            call(session, "wait_for_decision", proposal_id=proposed["id"], timeout_seconds=60)
        )
        await asyncio.sleep(0.5)
        await asyncio.to_thread(retry_in_thread, proposed["id"])
        return await waiting

    again = run_agent(web_server, demo_world["agents"]["optimizer"], agent)

    row = Proposal.objects.get(pk=again["id"])
    assert (again["status"], row.executions.count()) == ("failed", 2)
    assert [r["error"] for r in again["retries"]] == ["the endpoint answered HTTP 400"]
    assert "That run failed too at" in again["message"]
    assert "the endpoint answered HTTP 409" in again["message"]
    assert again["next_step"] == RETRY_NEXT_STEP


@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
def test_a_langchain_call_following_retries_tells_the_model_the_retried_run(
    web_server, demo_world, channel, operator
):
    """With ``follow_retries`` the tool call waits past the failure for a person's retry:
    the model is told it executed on that person's word, and of the failure before."""
    channel(400, 200)
    model = langchain_agent.scripted(SIX_PERCENT_BID)
    with Client(web_server, demo_world["agents"]["optimizer"]) as platform:
        agent = langchain_agent.agent_with(
            model,
            ProposalMiddleware(
                langchain_agent.ACTIONS, client=platform, timeout=60, follow_retries=True
            ),
        )
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(langchain_agent.ask, agent, "Raise brand-search's bid 6%.")
            failed = wait_until(
                lambda: Proposal.objects.filter(status=ProposalStatus.FAILED).first()
            )
            time.sleep(0.5)
            assert not model.shown  # the call still waits
            proposal_retry(proposal_id=failed.pk, reviewer=operator)
            running.result(timeout=60)

    seen = langchain_agent.told(model)
    assert (seen["status"], seen["decided_by"]) == ("executed", RETRIED_BY)
    assert "Its execution failed at" in seen["message"]
    assert model.shown[0].status == "success"


@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
def test_an_openai_agents_tool_following_retries_tells_the_model_the_retried_run(
    web_server, demo_world, channel, operator
):
    channel(400, 200)
    model = openai_agent.ScriptedModel(SIX_PERCENT_BID)

    async def run():
        async with AsyncClient(web_server, demo_world["agents"]["optimizer"]) as client:
            platform = PlatformTools(client=client, timeout=60, follow_retries=True)
            agent = Agent(name="optimizer", model=model, tools=openai_agent.tools_of(platform))
            return await Runner.run(agent, "Raise brand-search's bid 6%.")

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(asyncio.run, run())
        failed = wait_until(lambda: Proposal.objects.filter(status=ProposalStatus.FAILED).first())
        time.sleep(0.5)
        assert not model.shown
        proposal_retry(proposal_id=failed.pk, reviewer=operator)
        assert running.result(timeout=60).final_output == "Done."

    seen = model.told()
    assert (seen["status"], seen["decided_by"]) == ("executed", RETRIED_BY)
    assert "Its execution failed at" in seen["message"]
