"""A long poll held on a failed proposal (``?wait=…&status=failed``) is answered as soon as a
person's retry moves it on, even when the run that retry starts fails again before the wait
reads it: its status then differed from ``failed`` while the agent waited, which is what the
wait asked to hear of (SPEC: Agent API, long poll). The wait read the proposal only after the
retry's run had failed too, found it ``failed`` as asked, and held on until its time was up:
an agent (or the MCP server's ``wait_for_decision`` on a failed proposal) learnt of a retry
that failed again 30 s late, or a minute late: whenever the web process was slow to read
(its readers busy with its agent's other waits, the machine loaded). Served by the Procfile's
web process and a real worker, the retry's run refused by the account's endpoint each time;
the web process is paused (SIGSTOP) while the retry runs and fails, as a loaded machine
would hold it, so that its read comes after the failure every time."""

import asyncio
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from approvals.models import Proposal
from approvals.services.decisions import proposal_retry
from tests.conftest import wait_until
from tests.test_mcp import call, run_agent

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("celery_worker")]

BID = {
    "action_type": "bid_adjustment",
    "account": "demo",
    "payload": {"campaign": "brand-search", "new_bid": "2.12"},
    "rationale": "CPC below target for five days.",
    "confidence": 0.9,
}


@pytest.fixture
def server(web_server_with):
    return web_server_with()


@pytest.fixture
def optimizer(server, demo_world):
    with httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {demo_world['agents']['optimizer']}"},
        timeout=90,
    ) as client:
        yield client


def retried(proposal_id: int) -> None:
    """The demo operator sends the failed proposal to run again."""
    operator = get_user_model().objects.get(username="operator")
    proposal_retry(proposal_id=proposal_id, reviewer=operator)


def failed_again(proposal_id: int, attempts: int) -> bool:
    """Whether the proposal failed again, after more than ``attempts`` attempts."""
    proposal = Proposal.objects.get(pk=proposal_id)
    return proposal.status == "failed" and proposal.executions.count() > attempts


def test_a_wait_on_a_failed_proposal_is_answered_when_its_retry_fails_again(
    optimizer, server, channel
):
    channel(400, 409, 409)
    proposal = optimizer.post("/api/v1/proposals/", json=BID).json()
    assert proposal["status"] == "approved", proposal  # 6%: its policy lets it run
    wait_until(lambda: Proposal.objects.get(pk=proposal["id"]).status == "failed")
    url = f"/api/v1/proposals/{proposal['id']}/?wait=30&status=failed"

    with ThreadPoolExecutor(1) as pool:
        for retry in (1, 2):  # and a wait from the failure after that retry, the same
            asked = time.monotonic()
            waiting = pool.submit(optimizer.get, url)
            time.sleep(0.5)  # the long poll is held by now
            assert not waiting.done()
            attempts = Proposal.objects.get(pk=proposal["id"]).executions.count()
            os.killpg(server.process.pid, signal.SIGSTOP)
            try:
                retried(proposal["id"])
                wait_until(partial(failed_again, proposal["id"], attempts))
            finally:
                os.killpg(server.process.pid, signal.SIGCONT)
            answer = waiting.result(timeout=60)
            answered_after = time.monotonic() - asked

            assert answer.status_code == 200
            body = answer.json()
            # Answered once the web process could read it, not when its time was up.
            assert answered_after < 10, (answered_after, body["status"])
            assert body["status"] == "failed"
            assert len(body["retries"]) == retry

    final = optimizer.get(f"/api/v1/proposals/{proposal['id']}/").json()
    assert [retry["error"] for retry in final["retries"]] == [
        "the endpoint answered HTTP 400",
        "the endpoint answered HTTP 409",
    ]
    assert final["execution"]["attempt"] == 3

    # Nothing moved it since: a wait from failed holds until its time is up.
    asked = time.monotonic()
    held = optimizer.get(f"/api/v1/proposals/{proposal['id']}/?wait=2&status=failed").json()
    assert held["status"] == "failed"
    assert time.monotonic() - asked >= 1.9


def paused_while_retried_and_failed_again(server, proposal_id: int) -> None:
    """The operator retries the failed proposal while the web process is paused, until its
    run has failed again (from a thread of its own: an agent's event loop goes on)."""
    try:
        attempts = Proposal.objects.get(pk=proposal_id).executions.count()
        os.killpg(server.process.pid, signal.SIGSTOP)
        try:
            retried(proposal_id)
            wait_until(partial(failed_again, proposal_id, attempts))
        finally:
            os.killpg(server.process.pid, signal.SIGCONT)
    finally:
        connection.close()  # the thread's own, before the test database goes


def test_mcp_wait_for_decision_tells_a_retry_that_failed_again_at_once(server, demo_world, channel):
    """``wait_for_decision`` called on a failed proposal waits for a person's retry and tells
    how its run ended: a run that failed again before the wait read it was told only when
    ``timeout_seconds`` ran out (60 s here)."""
    channel(400, 409)

    async def agent(session):
        proposed = await call(
            session,
            "propose_action",
            action_type="bid_adjustment",
            account="demo",
            payload=BID["payload"],
            rationale=BID["rationale"],
            confidence=0.9,
        )
        failed = await call(session, "wait_for_decision", proposal_id=proposed["id"])
        assert failed["status"] == "failed"
        asked = time.monotonic()
        waiting = asyncio.create_task(
            call(session, "wait_for_decision", proposal_id=proposed["id"], timeout_seconds=60)
        )
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await asyncio.to_thread(paused_while_retried_and_failed_again, server, proposed["id"])
        return await waiting, time.monotonic() - asked

    again, answered_after = run_agent(server.url, demo_world["agents"]["optimizer"], agent)

    assert answered_after < 10
    assert again["status"] == "failed"
    assert [retry["error"] for retry in again["retries"]] == ["the endpoint answered HTTP 400"]
    assert "That run failed too at" in again["message"]
    assert "the endpoint answered HTTP 409" in again["message"]
