"""An agent waits for its proposal's decision, and for its feedback, with ``?wait=SECONDS``
(SPEC: Agent API): the answer comes as soon as the status changes (or a record arrives),
woken by whoever made the change (a person deciding, the worker executing or superseding, the
agent withdrawing), or when the time is up, with things as they are then. Served by the
Procfile's web process and a real worker, on PostgreSQL and Redis or the embedded default."""

import time
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest
from django.contrib.auth import get_user_model

from approvals.models import Agent
from approvals.services.agents import agent_key_issue
from approvals.services.decisions import proposal_approve, proposal_reject
from audit.actors import Actor
from tests.conftest import bid_adjustment, reallocation, wait_until

pytestmark = pytest.mark.usefixtures("celery_worker")


@pytest.fixture
def agent(web_server, demo_world):
    """The optimizer's HTTP client on the live server."""

    def client_for(name: str) -> httpx.Client:
        return httpx.Client(
            base_url=web_server,
            headers={"Authorization": f"Bearer {demo_world['agents'][name]}"},
            timeout=90,
        )

    clients = {name: client_for(name) for name in demo_world["agents"]}
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


@pytest.fixture
def in_background():
    pool = ThreadPoolExecutor(max_workers=4)
    yield pool.submit
    pool.shutdown(wait=True)


def submitted(client: httpx.Client, body: dict) -> dict:
    response = client.post("/api/v1/proposals/", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def waiting_for(in_background, client: httpx.Client, url: str) -> Future:
    """A long poll sent in the background, given a moment to be waiting when the change
    comes (were it late, it would find the change made and answer at once, just the same)."""
    answer = in_background(client.get, url)
    time.sleep(0.5)
    return answer


def executed(proposal_id: int, client: httpx.Client) -> None:
    """Until the worker is done with it (a test's end must not find it at work)."""
    wait_until(
        lambda: (
            client.get(f"/api/v1/proposals/{proposal_id}/").json()["status"]
            in ("executed", "failed", "superseded")
        )
    )


def test_a_waiting_agent_is_answered_when_an_operator_approves_and_again_when_it_executes(
    agent, operator, in_background
):
    optimizer = agent["optimizer"]
    proposal = submitted(optimizer, reallocation())
    assert proposal["status"] == "pending_review"
    url = f"/api/v1/proposals/{proposal['id']}/?wait=60"

    answer = waiting_for(in_background, optimizer, url)
    proposal_approve(proposal_id=proposal["id"], reviewer=operator)
    approved = answer.result()
    assert approved.status_code == 200
    assert approved.json()["status"] in ("approved", "executing", "executed")
    assert approved.json()["decisions"][0]["outcome"] == "approve"

    # Waiting from "approved" on: answered once the worker has moved it on.
    moved_on = optimizer.get(f"{url}&status=approved").json()
    assert moved_on["status"] in ("executing", "executed")
    if moved_on["status"] == "executing":
        moved_on = optimizer.get(f"{url}&status=executing").json()
    assert moved_on["status"] == "executed"
    assert moved_on["execution"]["after_state"]


def test_a_waiting_agent_learns_its_proposal_was_rejected_and_why(agent, operator, in_background):
    optimizer = agent["optimizer"]
    proposal = submitted(optimizer, reallocation())

    answer = waiting_for(in_background, optimizer, f"/api/v1/proposals/{proposal['id']}/?wait=60")
    proposal_reject(proposal_id=proposal["id"], reviewer=operator, reason_code="too_aggressive")

    rejected = answer.result().json()
    assert rejected["status"] == "rejected"
    assert rejected["decisions"][0]["reason_code"] == "too_aggressive"


def test_a_waiting_agent_learns_its_proposal_was_superseded(agent, in_background):
    optimizer = agent["optimizer"]
    big_raise = submitted(optimizer, bid_adjustment("2.50"))  # +25%: waits for a person
    assert big_raise["status"] == "pending_review"

    answer = waiting_for(in_background, optimizer, f"/api/v1/proposals/{big_raise['id']}/?wait=60")
    small_raise = submitted(optimizer, bid_adjustment("2.10"))  # +5%: the worker executes it

    superseded = answer.result().json()
    assert superseded["status"] == "superseded"
    executed(small_raise["id"], optimizer)


def test_a_wait_ends_when_the_agent_withdraws_its_proposal(agent, in_background):
    optimizer = agent["optimizer"]
    proposal = submitted(optimizer, reallocation())

    answer = waiting_for(in_background, optimizer, f"/api/v1/proposals/{proposal['id']}/?wait=60")
    assert optimizer.post(f"/api/v1/proposals/{proposal['id']}/withdraw/").status_code == 200

    assert answer.result().json()["status"] == "withdrawn"


def test_when_the_time_is_up_the_answer_is_the_proposal_as_it_is(agent):
    optimizer = agent["optimizer"]
    proposal = submitted(optimizer, reallocation())

    answer = optimizer.get(f"/api/v1/proposals/{proposal['id']}/?wait=1")

    assert answer.status_code == 200
    assert answer.json()["id"] == proposal["id"]
    assert answer.json()["status"] == "pending_review"


def test_a_status_other_than_the_one_named_is_answered_at_once(agent):
    """``?status=`` names what the agent last saw: a change it has not seen yet (made before
    this request came) is answered at once, not waited past."""
    optimizer = agent["optimizer"]
    proposal = submitted(optimizer, reallocation())

    answer = optimizer.get(f"/api/v1/proposals/{proposal['id']}/?wait=60&status=approved")

    assert answer.status_code == 200
    assert answer.json()["status"] == "pending_review"


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("wait=0", "wait", "greater than or equal to 1"),
        ("wait=61", "wait", "less than or equal to 60"),
        ("wait=soon", "wait", "plain digits"),
        # Other scripts' digits, signs, underscores and spaces int() would read: refused, as
        # the API refuses them for money.
        ("wait=%D9%A3", "wait", "plain digits"),
        ("wait=%EF%BC%93", "wait", "plain digits"),
        ("wait=1_0", "wait", "plain digits"),
        ("wait=%2B2", "wait", "plain digits"),
        ("wait=%202", "wait", "plain digits"),
        ("wait=2.0", "wait", "plain digits"),
        ("wait=10&status=decided", "status", "not a valid choice"),
    ],
)
def test_bad_wait_or_status_is_a_400_naming_the_field(agent, query, field, message):
    optimizer = agent["optimizer"]
    proposal = submitted(optimizer, reallocation())

    answer = optimizer.get(f"/api/v1/proposals/{proposal['id']}/?{query}")

    assert answer.status_code == 400
    assert message in answer.json()[field][0]
    assert optimizer.get(f"/api/v1/proposals/{proposal['id']}/").json()["status"] == (
        "pending_review"
    )


def test_another_agents_proposal_is_not_found_even_when_waiting_for_it(agent):
    proposal = submitted(agent["optimizer"], reallocation())

    answer = agent["copywriter"].get(f"/api/v1/proposals/{proposal['id']}/?wait=30")

    assert answer.status_code == 404
    assert "status" not in answer.json()


def test_waiting_on_the_feedback_feed_wakes_on_the_next_record(agent, operator, in_background):
    optimizer = agent["optimizer"]
    proposal = submitted(optimizer, reallocation())
    feed = optimizer.get("/api/v1/feedback/").json()
    assert feed["results"] == []

    nothing_yet = optimizer.get(feed["resume"], params={"wait": 1}).json()
    assert nothing_yet["results"] == []
    assert nothing_yet["resume"]

    resume = nothing_yet["resume"]
    answer = waiting_for(
        in_background, optimizer, f"{resume}{'&' if '?' in resume else '?'}wait=60"
    )
    proposal_reject(proposal_id=proposal["id"], reviewer=operator, reason_code="off_brand")

    arrived = answer.result().json()
    assert [(record["proposal"], record["kind"]) for record in arrived["results"]] == [
        (proposal["id"], "rejected")
    ]
    assert arrived["results"][0]["reason_code"] == "off_brand"


def test_a_wait_whose_key_is_revoked_meanwhile_is_not_told_the_decision(
    agent, operator, in_background
):
    """A key revoked (rotated, say, after it leaked) stops working, waits sent with it
    before included: what their re-read finds is not answered to whoever holds the key."""
    optimizer = agent["optimizer"]
    proposal = submitted(optimizer, reallocation())
    answer = waiting_for(in_background, optimizer, f"/api/v1/proposals/{proposal['id']}/?wait=60")

    agent_key_issue(agent=Agent.objects.get(name="optimizer"), actor=Actor.system("test"))
    proposal_reject(proposal_id=proposal["id"], reviewer=operator, reason_code="off_brand")

    refused = answer.result()
    assert refused.status_code == 401, refused.text
    assert "rejected" not in refused.text


def test_a_feedback_wait_of_an_agent_deactivated_meanwhile_is_not_told_what_arrived(
    agent, operator, in_background
):
    optimizer = agent["optimizer"]
    proposal = submitted(optimizer, reallocation())
    answer = waiting_for(in_background, optimizer, "/api/v1/feedback/?wait=60")

    deactivated = Agent.objects.get(name="optimizer")
    deactivated.is_active = False
    deactivated.save()
    proposal_reject(proposal_id=proposal["id"], reviewer=operator, reason_code="off_brand")

    refused = answer.result()
    assert refused.status_code == 401, refused.text
    assert "off_brand" not in refused.text


def test_the_feeds_links_are_kept_without_the_wait_that_fetched_them(
    agent, operator, in_background
):
    """``resume`` is the link to poll later: fetched later without asking to wait, it answers
    at once, whatever wait the request that handed it out carried."""
    optimizer = agent["optimizer"]
    first, second, third = (submitted(optimizer, reallocation()) for _ in range(3))
    for proposal in (first, second):
        proposal_reject(proposal_id=proposal["id"], reviewer=operator, reason_code="off_brand")
    page = optimizer.get("/api/v1/feedback/", params={"page_size": 1, "wait": 30}).json()
    last = optimizer.get(f"{page['next']}&wait=30").json()  # httpx's params= drop the cursor
    assert [record["proposal"] for record in page["results"] + last["results"]] == [
        first["id"],
        second["id"],
    ]
    answer = waiting_for(in_background, optimizer, f"{last['resume']}&wait=30")
    proposal_reject(proposal_id=third["id"], reviewer=operator, reason_code="wrong_signal")
    woken = answer.result().json()
    assert [record["proposal"] for record in woken["results"]] == [third["id"]]

    links = [page["next"], page["resume"], last["previous"], last["resume"], woken["resume"]]
    assert all("wait" not in link and "page_size=1" in link for link in links), links
    started = time.monotonic()
    assert optimizer.get(woken["resume"]).json()["results"] == []
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("query", "message"),
    [("wait=600", "less than or equal to 60"), ("wait=%EF%BC%93", "plain digits")],
)
def test_bad_wait_on_the_feedback_feed_is_a_400(agent, query, message):
    answer = agent["optimizer"].get(f"/api/v1/feedback/?{query}")

    assert answer.status_code == 400
    assert message in answer.json()["wait"][0]


def test_other_requests_are_answered_while_more_agents_wait_than_there_are_connections(agent):
    """A waiting request holds no database connection: with more agents waiting than the
    web process has connections in its pool (20), another request is still answered."""
    optimizer = agent["optimizer"]
    proposal = submitted(optimizer, reallocation())
    url = f"/api/v1/proposals/{proposal['id']}/?wait=5"
    with ThreadPoolExecutor(max_workers=25) as pool:
        waits = [pool.submit(optimizer.get, url) for _ in range(25)]
        time.sleep(1)

        assert optimizer.get("/api/v1/campaigns/").status_code == 200
        assert [wait.result().json()["status"] for wait in waits] == ["pending_review"] * 25
