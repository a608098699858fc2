"""A web process takes only so many API requests at once, in all and per API key: beyond, an
at-once 503 busy with Retry-After, so one agent's burst neither queues thousands of requests
for the database nor refuses another agent's request. A long poll counts while it reads, not
while it waits. And a long poll whose re-read fails is answered as any request would be (503,
never a 500)."""

import asyncio
import json
import os
import resource
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import OperationalError, connection, transaction
from psycopg_pool import PoolTimeout

from approvals.models import Agent, Proposal
from approvals.services.agents import agent_key_issue
from audit.actors import Actor
from hitlproject import wakeups
from hitlproject.inflight import InFlight, InFlightGuard
from ledger.models import Campaign
from tests.conftest import bid_adjustment, reallocation, wait_until
from tests.test_api_unavailable import PROPOSALS_URL, a_request_waits_for_a_lock, call


def held_campaign():
    """brand-search held by this test's transaction: a submission naming it waits (PostgreSQL's
    row lock; on SQLite, the write lock the transaction takes up front)."""
    Campaign.objects.select_for_update().filter(external_id="brand-search").get()


def test_one_agents_burst_is_refused_at_once_and_another_agents_request_still_answered(
    web_server_with, demo_world
):
    optimizer, copywriter = demo_world["agents"]["optimizer"], demo_world["agents"]["copywriter"]
    server = web_server_with(
        HITL_API_MAX_IN_FLIGHT="3",
        HITL_API_MAX_IN_FLIGHT_PER_AGENT="2",
        HITL_SUBMISSION_LOCK_TIMEOUT_SECONDS="60",
    )
    burst = [bid_adjustment(f"2.{n:02d}") for n in range(10, 18)]
    with ThreadPoolExecutor(max_workers=len(burst)) as pool:
        with transaction.atomic():
            held_campaign()
            answers = [
                pool.submit(call, server.url, PROPOSALS_URL, optimizer, body) for body in burst
            ]
            # Two of the burst are let in and wait for the campaign; the other six are refused
            # meanwhile, without waiting for anything.
            wait_until(lambda: sum(answer.done() for answer in answers) == 6, interval=0.05)
            refused = [answer.result() for answer in answers if answer.done()]
            campaigns = call(server.url, "/api/v1/campaigns/", copywriter)
        answered = [answer.result() for answer in answers]

    for status, headers, body in refused:
        assert status == 503
        assert headers["Retry-After"] == "1"
        assert body["code"] == "busy"
        assert "nothing was done" in body["detail"]
    assert campaigns[0] == 200
    assert "brand-search" in {campaign["external_id"] for campaign in campaigns[2]}
    created = [body["id"] for status, _, body in answered if status == 201]
    assert len(created) == 2
    assert sorted(Proposal.objects.values_list("id", flat=True)) == sorted(created)
    assert call(server.url, PROPOSALS_URL, optimizer)[0] == 200  # the places were given back


def test_an_agent_writing_its_authorization_header_another_way_shares_its_bound(
    web_server_with, demo_world
):
    """The bound counted requests by their Authorization header as written, and the API takes
    "Bearer KEY", "bearer KEY" and "Bearer   KEY" alike: an agent writing it a new way for
    each request had a share of its own for each, took every place the process has, and
    another agent was refused 503 busy. Now they are one agent's share."""
    optimizer, copywriter = demo_world["agents"]["optimizer"], demo_world["agents"]["copywriter"]
    server = web_server_with(
        HITL_API_MAX_IN_FLIGHT="3",
        HITL_API_MAX_IN_FLIGHT_PER_AGENT="2",
        HITL_SUBMISSION_LOCK_TIMEOUT_SECONDS="60",
    )
    written = [f"{' ' * n}{optimizer}" for n in range(8)]  # "Bearer", n spaces more, the key
    burst = [bid_adjustment(f"2.{n:02d}") for n in range(10, 18)]
    with ThreadPoolExecutor(max_workers=len(burst)) as pool:
        with transaction.atomic():
            held_campaign()
            answers = [
                pool.submit(call, server.url, PROPOSALS_URL, key, body)
                for key, body in zip(written, burst, strict=True)
            ]
            wait_until(lambda: sum(answer.done() for answer in answers) == 6, interval=0.05)
            campaigns = call(server.url, "/api/v1/campaigns/", copywriter)
        answered = [answer.result() for answer in answers]

    assert campaigns[0] == 200
    assert sorted(status for status, _, _ in answered) == [201, 201, *[503] * 6]


def test_requests_still_sending_their_body_hold_no_place_in_the_bound(web_server_with, demo_world):
    """A place was taken before the request's body was read: requests that never finished
    sending theirs, with any key or none, filled the process's bound for as long as they
    stayed connected, and every agent was answered 503 busy. Now a place is taken once the
    body is in."""
    optimizer = demo_world["agents"]["optimizer"]
    server = web_server_with(HITL_API_MAX_IN_FLIGHT="3", HITL_API_MAX_IN_FLIGHT_PER_AGENT="2")
    address = urlsplit(server.url)
    with ExitStack() as stack:
        for n in range(6):
            unfinished = stack.enter_context(
                socket.create_connection((address.hostname, address.port))
            )
            unfinished.sendall(
                f"POST {PROPOSALS_URL} HTTP/1.1\r\nHost: localhost\r\n"
                f"Authorization: Bearer not-a-key-{n}\r\nContent-Type: application/json\r\n"
                "Content-Length: 100\r\n\r\n{".encode()
            )
        time.sleep(1)  # their headers read; on the old code, each had taken a place
        listed = call(server.url, PROPOSALS_URL, optimizer)
        submitted = call(server.url, PROPOSALS_URL, optimizer, bid_adjustment("2.10"))

    assert listed[0] == 200
    assert submitted[0] == 201


def second_key(name: str) -> str:
    """Another API key of the same agent: a share of the bound of its own, the agent's waits
    counted together."""
    agent = Agent.objects.get(name=name)
    return agent_key_issue(agent=agent, actor=Actor.system("test"), revoke_existing=False)


def waiting(pool, server, url: str, key: str, other_key: str):
    """A long poll of ``key``'s sent in the background, returned once it is waiting: another
    wait of the agent's (with ``other_key``) is told the agent has its one wait (429). Sent
    again if that other wait got there first (then the first one was told 429)."""
    for _ in range(10):
        answer = pool.submit(call, server.url, f"{url}?wait=60", key)
        wait_until(
            lambda answer=answer: (
                answer.done() or call(server.url, f"{url}?wait=1", other_key)[0] == 429
            )
        )
        if not answer.done():
            return answer
    raise AssertionError("The long poll was never waiting")


def test_a_waiting_long_poll_holds_no_place_in_the_bound(web_server_with, demo_world):
    optimizer = demo_world["agents"]["optimizer"]
    server = web_server_with(
        HITL_API_MAX_IN_FLIGHT_PER_AGENT="1", HITL_LONG_POLL_MAX_WAITS_PER_AGENT="1"
    )
    status, _, proposal = call(server.url, PROPOSALS_URL, optimizer, reallocation())
    assert status == 201 and proposal["status"] == "pending_review"
    url = f"{PROPOSALS_URL}{proposal['id']}/"
    other_key = second_key("optimizer")

    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = waiting(pool, server, url, optimizer, other_key)
        read = call(server.url, url, optimizer)  # the key's one place is free
        withdrawn = call(server.url, f"{url}withdraw/", optimizer, {})
        answer = answer.result()

    assert read[0] == 200 and read[2]["status"] == "pending_review"
    assert withdrawn[0] == 200
    assert (answer[0], answer[2]["status"]) == (200, "withdrawn")


def test_the_bound_counts_all_agents_and_each_agent():
    in_flight = InFlight(limit=3, per_agent=2)

    assert [in_flight.take("a"), in_flight.take("a"), in_flight.take("a")] == [True, True, False]
    assert [in_flight.take("b"), in_flight.take("b")] == [True, False]  # 3 under way in all
    with in_flight.counted("c"):  # a long poll's re-read: counted, never refused
        assert not in_flight.take("c")
    in_flight.give_back("a")
    assert in_flight.take("c")


def test_one_agents_burst_of_long_polls_is_told_429_past_its_share_and_503_past_the_servers():
    """An agent's long polls are bounded by its share of waits (429 ``too_many_waits``, as
    documented), not by the requests a process takes from one key: a burst of 150 waits from
    one agent was told 503 busy from its 41st, never 429. Beyond the long polls the process
    takes from all agents before they wait, 503 busy; other requests keep their own bound."""
    reached: list[str] = []
    release = asyncio.Event()

    async def django(scope, receive, send):  # the long polls' first reads, queued
        reached.append(scope["query_string"].decode())
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = InFlightGuard(django, limit=2, per_agent=1, waits=(5, 3))

    async def request(key: str, query: str) -> tuple[int, dict, dict]:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/api/v1/proposals/12/",
            "query_string": query.encode(),
            "headers": [(b"authorization", f"Bearer {key}".encode())],
        }
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await guard(scope, receive, send)
        headers = {name.decode(): value.decode() for name, value in sent[0]["headers"]}
        return sent[0]["status"], headers, json.loads(sent[1]["body"])

    async def burst() -> tuple[list, list, list]:
        mine = [asyncio.ensure_future(request("A", f"wait=30&n={n}")) for n in range(4)]
        theirs = [asyncio.ensure_future(request("B", f"wait=30&n={n}")) for n in range(3)]
        plain = [asyncio.ensure_future(request("A", f"n={n}")) for n in range(2)]
        await asyncio.sleep(0.2)
        refused = [task.result() for task in mine + theirs + plain if task.done()]
        release.set()
        answered = await asyncio.gather(*mine, *theirs, *plain)
        return refused, answered, list(reached)

    refused, answered, reached_django = asyncio.run(burst())

    too_many, busy, busy_plain = refused
    assert too_many[0] == 429 and too_many[1]["retry-after"] == "5"
    assert too_many[2]["code"] == "too_many_waits"
    assert "already has 3 long polls" in too_many[2]["detail"]
    assert busy[0] == 503 and busy[1]["retry-after"] == "1" and busy[2]["code"] == "busy"
    assert busy_plain[0] == 503 and busy_plain[2]["code"] == "busy"  # the key's one place
    assert sorted(reached_django) == sorted(
        ["wait=30&n=0", "wait=30&n=1", "wait=30&n=2", "wait=30&n=0", "wait=30&n=1", "n=0"]
    )
    assert [status for status, _, _ in answered].count(200) == 6


def pool_timeout() -> OperationalError:
    """What Django raises when psycopg_pool gives no connection in time."""
    try:
        try:
            raise PoolTimeout("couldn't get a connection after 0.50 sec")
        except PoolTimeout as timeout:
            raise OperationalError(str(timeout)) from timeout
    except OperationalError as error:
        return error


@pytest.mark.parametrize(
    "failure",
    [pool_timeout(), OperationalError("server closed the connection unexpectedly")],
    ids=["pool-timeout", "connection-lost"],
)
def test_a_long_poll_whose_reread_fails_is_told_to_come_back(optimizer, monkeypatch, failure):
    proposal = optimizer.post(PROPOSALS_URL, reallocation(), format="json").json()

    def failing_reread(*args, **kwargs):
        raise failure

    monkeypatch.setattr("approvals.api._proposal_reread", failing_reread)
    answer = optimizer.get(f"{PROPOSALS_URL}{proposal['id']}/?wait=5")

    assert answer.status_code == 503
    assert answer["Retry-After"] == "1"
    assert answer.json()["code"] == "busy"
    assert "nothing was recorded" in answer.json()["detail"]


def test_a_woken_long_poll_that_finds_no_free_connection_is_told_to_come_back(
    web_server_with, demo_world
):
    """The server's one pooled connection is held by a submission waiting for a campaign this
    test holds; a wait woken meanwhile cannot re-read."""
    if connection.vendor != "postgresql" or not wakeups.transport().__class__.__name__.startswith(
        "Redis"
    ):
        pytest.skip("The connection pool is PostgreSQL's; the wake-up is sent through Redis")
    optimizer = demo_world["agents"]["optimizer"]
    server = web_server_with(
        HITL_DATABASE_POOL_SIZE="1",
        # Long enough that the wait and the test's other requests, taking turns on the one
        # connection, each get it on a loaded machine (at 0.5 s one was told 503 and the wait
        # was never set up); the woken wait is refused when it runs out all the same.
        HITL_DATABASE_POOL_TIMEOUT_SECONDS="5",
        HITL_SUBMISSION_LOCK_TIMEOUT_SECONDS="60",
        HITL_LONG_POLL_MAX_WAITS_PER_AGENT="1",
    )
    other_key = second_key("optimizer")
    proposal = call(server.url, PROPOSALS_URL, optimizer, reallocation())[2]
    url = f"{PROPOSALS_URL}{proposal['id']}/"
    with ThreadPoolExecutor(max_workers=2) as pool:
        woken = waiting(pool, server, url, optimizer, other_key)
        with transaction.atomic():
            held_campaign()
            holder = pool.submit(call, server.url, PROPOSALS_URL, optimizer, bid_adjustment())
            wait_until(a_request_waits_for_a_lock, interval=0.05)
            # Sent from a thread of its own: outside this test's transaction, so at once.
            waker = threading.Thread(
                target=wakeups.wake_after_commit, args=([wakeups.proposal_topic(proposal["id"])],)
            )
            waker.start()
            waker.join()
            status, headers, body = woken.result()
        assert holder.result()[0] == 201

    assert status == 503
    assert headers["Retry-After"] == "1"
    assert body["code"] == "busy"


def test_a_body_that_stops_arriving_is_answered_408_and_its_connection_closed(
    web_server_with, demo_world
):
    """The web server waits on a request's body for as long as its client keeps the
    connection open: a client that sent its headers and part of a body (with a length said,
    or in chunks) and no more held the connection, and the body read so far, for good. Now
    nothing more of it for HITL_REQUEST_BODY_IDLE_SECONDS is answered 408, and the connection
    closed; an agent sending its whole body is answered as ever."""
    optimizer = demo_world["agents"]["optimizer"]
    server = web_server_with(HITL_REQUEST_BODY_IDLE_SECONDS="1")
    address = urlsplit(server.url)
    answers = []
    for framing, part in (
        ("Content-Length: 100000", '{"action_type": "' + "x" * 70_000),
        ("Transfer-Encoding: chunked", '5\r\n{"a":'),
    ):
        with socket.create_connection((address.hostname, address.port), timeout=30) as stalled:
            stalled.sendall(
                f"POST {PROPOSALS_URL} HTTP/1.1\r\nHost: localhost\r\n"
                f"Authorization: Bearer {optimizer}\r\nContent-Type: application/json\r\n"
                f"{framing}\r\n\r\n{part}".encode()
            )
            received = b""
            while chunk := stalled.recv(65536):  # on the old code, no answer: recv timed out
                received += chunk
            answers.append(received.decode())

    for answer in answers:
        assert answer.startswith("HTTP/1.1 408 ")
        assert '"code": "request_timeout"' in answer
        assert "nothing more of it came for 1 second. Nothing was done" in answer
    assert not Proposal.objects.exists()
    assert call(server.url, PROPOSALS_URL, optimizer, bid_adjustment("2.10"))[0] == 201


def web_worker(server) -> int:
    """The pid of the web server's one worker process (gunicorn's master forks it)."""
    master = server.process.pid
    children = Path(f"/proc/{master}/task/{master}/children")
    wait_until(lambda: children.read_text().split(), timeout=10)
    (worker,) = children.read_text().split()
    return int(worker)


def open_files(pid: int) -> set[int]:
    """The file descriptors ``pid`` holds, once settled (the readiness check's connection
    closed): two looks half a second apart agree."""
    looks = [set()]

    def settled() -> bool:
        looks.append({int(fd) for fd in os.listdir(f"/proc/{pid}/fd")})
        time.sleep(0.5)
        return looks[-1] == {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}

    wait_until(settled, timeout=10)
    return looks[-1]


def test_a_body_the_server_has_no_room_for_is_a_503_busy_not_a_500(web_server_with, demo_world):
    """A body past 64 KiB is kept in a temporary file, one per connection sending one: with
    none to be had (the process's open files at their limit under many slow bodies, or the
    disk full), the request was answered a bare 500 "Internal Server Error", its traceback
    logged. Now it is a 503 busy with Retry-After in the API's shape, nothing done, and the
    server answers as ever once there is room again."""
    optimizer = demo_world["agents"]["optimizer"]
    server = web_server_with()
    address = urlsplit(server.url)
    worker = web_worker(server)
    soft, hard = resource.prlimit(worker, resource.RLIMIT_NOFILE)
    taken = open_files(worker)
    lowest_free = min(set(range(len(taken) + 1)) - taken)
    body = json.dumps(bid_adjustment("2.10", rationale="x" * 100_000)).encode()
    # Room for one more file: the connection's socket, not a temporary file for its body.
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (lowest_free + 1, hard))
    try:
        with socket.create_connection((address.hostname, address.port), timeout=30) as sent:
            sent.sendall(
                f"POST {PROPOSALS_URL} HTTP/1.1\r\nHost: localhost\r\n"
                f"Authorization: Bearer {optimizer}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            received = b""
            while chunk := sent.recv(65536):
                received += chunk
    finally:
        resource.prlimit(worker, resource.RLIMIT_NOFILE, (soft, hard))

    head, _, answer = received.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 503 "), received
    assert "retry-after: 1" in head.lower()
    assert json.loads(answer) == {
        "detail": "This server cannot hold the request's body right now (it has no room for "
        "it); nothing was done. Send it again shortly.",
        "code": "busy",
    }
    assert not Proposal.objects.exists()
    assert "Traceback" not in server.log_path.read_text()
    assert call(server.url, PROPOSALS_URL, optimizer, bid_adjustment("2.10"))[0] == 201
