"""One agent's long polls do not hold up another's (hitlproject.longpoll): waits with the same
answer woken together share one re-read, so another agent's re-read does not queue behind a
thousand identical ones; and an agent may hold only so many waits at once (429 beyond)."""

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from approvals.services.decisions import proposals_reject
from hitlproject import wakeups
from hitlproject.inflight import ARRIVED_KEY
from hitlproject.longpoll import LongPoll, _reread, _waited
from tests.conftest import reallocation
from tests.test_api_unavailable import PROPOSALS_URL, call


def poll_for(
    key: str, reads: list[str], release: threading.Event | None = None, *, agent: int = 0
) -> LongPoll:
    def reread() -> tuple[bool, str]:
        reads.append(key)
        if release is not None:
            release.wait(30)
        else:
            time.sleep(0.005)  # a read takes a moment
        return True, f"{key} as read"

    return LongPoll(topic=f"proposal:{key}", seconds=60, reread=reread, agent=agent, key=key)


def test_waits_woken_together_share_one_read_and_another_agents_read_is_next():
    """The attack's case: agent 1 holds 1,500 waits on its proposal, agent 2 one on its own,
    both woken by one decision, agent 1's first. Agent 2's answer is the second read made, not
    the 1,501st; and every wait of agent 1 has the answer."""
    reads: list[str] = []

    async def woken() -> tuple[list, list]:
        flood = [asyncio.ensure_future(_reread(poll_for("one", reads))) for _ in range(1500)]
        other = asyncio.ensure_future(_reread(poll_for("two", reads)))
        return await asyncio.gather(*flood), [await other]

    flood, other = asyncio.run(woken())

    assert sorted(reads) == ["one", "two"]
    assert {answer for answer in flood} == {(True, "one as read")}
    assert other == [(True, "two as read")]


def test_an_agents_waits_that_cannot_share_a_read_take_turns_with_another_agents():
    """The attack's case without sharing: agent 1 holds its 100 waits (the most it may) on
    its feedback feed, each at an address of its own (``&x=1``, ``&x=2``, …: a read each),
    and has them woken (a proposal of its own superseded, say); agent 2's proposal is decided
    a moment later. Agent 2's read queued behind agent 1's hundred, 0.5 s late on a server
    that answers it in 0.04 s alone; it is now among the next reads made."""
    reads: list[str] = []

    async def woken() -> tuple[list, list]:
        flood = [
            asyncio.ensure_future(_reread(poll_for(f"feed-{n}", reads, agent=1)))
            for n in range(100)
        ]
        other = asyncio.ensure_future(_reread(poll_for("two", reads, agent=2)))
        return await asyncio.gather(*flood), [await other]

    flood, other = asyncio.run(woken())

    assert reads.index("two") < settings.LONG_POLL_READERS, reads.index("two")
    assert len(flood) == 100 and all(answer[0] for answer in flood)
    assert other == [(True, "two as read")]


def test_a_read_already_under_way_is_not_shared_with_a_wait_woken_after_it_began():
    """It may have read before the change that woke the later wait: that wait reads again."""
    reads: list[str] = []
    release = threading.Event()

    async def woken_twice() -> list:
        first = asyncio.ensure_future(_reread(poll_for("one", reads, release)))
        while not reads:  # the first read has begun
            await asyncio.sleep(0.01)
        second = asyncio.ensure_future(_reread(poll_for("one", reads)))
        release.set()
        return await asyncio.gather(first, second)

    answers = asyncio.run(woken_twice())

    assert reads == ["one", "one"]
    assert answers == [(True, "one as read")] * 2


@pytest.fixture
def capped_server(web_server_with, celery_worker, demo_world):
    server = web_server_with(HITL_LONG_POLL_MAX_WAITS_PER_AGENT="3")

    def client(name: str) -> httpx.Client:
        return httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {demo_world['agents'][name]}"},
            timeout=90,
        )

    clients = {name: client(name) for name in ("optimizer", "copywriter")}
    yield clients
    for each in clients.values():
        each.close()


def test_waits_beyond_an_agents_share_are_429_and_others_still_wait(capped_server):
    optimizer, copywriter = capped_server["optimizer"], capped_server["copywriter"]
    mine = optimizer.post("/api/v1/proposals/", json=reallocation()).json()
    theirs = copywriter.post("/api/v1/proposals/", json=reallocation()).json()
    with ThreadPoolExecutor(max_workers=4) as pool:
        waits = [
            pool.submit(optimizer.get, f"/api/v1/proposals/{mine['id']}/?wait=60") for _ in range(3)
        ]
        time.sleep(1)  # given a moment to be waiting

        refused = optimizer.get(f"/api/v1/proposals/{mine['id']}/?wait=60")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "5"
        assert refused.json()["code"] == "too_many_waits"
        assert "already has 3 long polls" in refused.json()["detail"]
        # Without wait it is answered as ever; another agent may still wait.
        assert optimizer.get(f"/api/v1/proposals/{mine['id']}/").status_code == 200
        other = pool.submit(copywriter.get, f"/api/v1/proposals/{theirs['id']}/?wait=60")
        time.sleep(1)

        operator = get_user_model().objects.get(username="operator")
        proposals_reject(
            proposal_ids=[mine["id"], theirs["id"]], reviewer=operator, reason_code="other"
        )
        assert [wait.result().json()["status"] for wait in waits] == ["rejected"] * 3
        assert other.result().json()["status"] == "rejected"

    # Its waits answered, the agent may wait again.
    again = optimizer.get(f"/api/v1/proposals/{mine['id']}/?wait=1")
    assert again.status_code == 200
    assert again.json()["status"] == "rejected"


def test_waits_whose_clients_hung_up_are_given_back(capped_server):
    """An agent that sends its 3 waits (its share here) and hangs up at once, again and
    again: the server stops waiting for each when its client goes, so the agent may wait
    again, rather than being refused 429 until the 60 seconds of each are up."""
    optimizer = capped_server["optimizer"]
    mine = optimizer.post("/api/v1/proposals/", json=reallocation()).json()
    key = optimizer.headers["Authorization"]
    address = httpx.URL(str(optimizer.base_url))
    for _ in range(2):
        hung_up = []
        for _ in range(3):
            sock = socket.create_connection((address.host, address.port))
            sock.sendall(
                f"GET /api/v1/proposals/{mine['id']}/?wait=60 HTTP/1.1\r\n"
                f"Host: {address.host}\r\nAuthorization: {key}\r\n\r\n".encode()
            )
            hung_up.append(sock)
        time.sleep(1)  # waiting
        assert optimizer.get(f"/api/v1/proposals/{mine['id']}/?wait=1").status_code == 429
        for sock in hung_up:
            sock.close()
        time.sleep(1)

        again = optimizer.get(f"/api/v1/proposals/{mine['id']}/?wait=1")

        assert again.status_code == 200, again.text


def test_one_agents_burst_of_waits_is_told_429_past_its_share_not_503(web_server_with, demo_world):
    """SPEC's agent, written against the documented share of waits (3 here), sends 8 at once:
    it was told 503 busy for all but the first (the process takes one request at a time from
    a key here, and a wait held its place until its first read, queued, was done); now 3
    wait and the other 5 are told 429 too_many_waits, as documented."""
    key = demo_world["agents"]["optimizer"]
    server = web_server_with(
        HITL_LONG_POLL_MAX_WAITS_PER_AGENT="3", HITL_API_MAX_IN_FLIGHT_PER_AGENT="1"
    )
    status, _, proposal = call(server.url, PROPOSALS_URL, key, reallocation())
    assert status == 201, proposal
    address = httpx.URL(server.url)
    burst = [socket.create_connection((address.host, address.port)) for _ in range(8)]
    for sock in burst:  # connected first, then sent together
        sock.sendall(
            f"GET {PROPOSALS_URL}{proposal['id']}/?wait=2 HTTP/1.1\r\nHost: {address.host}\r\n"
            f"Authorization: Bearer {key}\r\nConnection: close\r\n\r\n".encode()
        )
    answers = []
    for sock in burst:
        with sock, sock.makefile("rb") as answer:
            answers.append(answer.read().decode())

    statuses = sorted(int(answer.split()[1]) for answer in answers)
    assert statuses == [200] * 3 + [429] * 5, statuses
    refusals = [answer for answer in answers if answer.split()[1] == "429"]
    assert all("retry-after: 5" in answer.lower() for answer in refusals)
    bodies = [json.loads(answer.partition("\r\n\r\n")[2]) for answer in refusals]
    assert {body["code"] for body in bodies} == {"too_many_waits"}


class Quiet:
    """A web process's wake-ups in which nothing happens: each wait runs its time out."""

    position = 0
    connected = True
    stopping = False

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    async def wait(self, topic: str, position: int, timeout: float) -> bool:
        self.timeouts.append(timeout)
        await asyncio.sleep(timeout)
        return False


class Arrived:
    """A long poll that arrived ``ago`` seconds before its view is reached (its first read
    waited that long for its turn behind others')."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ago: float, wait: int) -> None:
        self.scope = {ARRIVED_KEY: loop.time() - ago, "headers": []}
        self.GET = {"wait": str(wait)}


def waiting_view(reads: list[str], wait: int, release: threading.Event | None = None):
    """A proposal's view that has to wait; its re-read, once let go, finds it decided."""

    def reread() -> tuple[bool, str]:
        reads.append("again")
        if release is not None:
            release.wait(10)
        return True, "decided"

    def view(request) -> SimpleNamespace:
        reads.append("first")
        poll = LongPoll(topic="proposal:12", seconds=wait, reread=reread, agent=0, key=id(reads))
        return SimpleNamespace(data="pending", long_poll=poll)

    return view


@pytest.fixture
def quiet(monkeypatch) -> Callable[[bool], Quiet]:
    def with_wakeups(heard: bool) -> Quiet:
        dispatcher = Quiet()

        async def the_dispatcher() -> Quiet:
            return dispatcher

        monkeypatch.setattr(wakeups, "dispatcher", the_dispatcher)
        heard_of = SimpleNamespace(backstop=None, hears_changes=heard)
        monkeypatch.setattr(wakeups, "transport", lambda: heard_of)
        return dispatcher

    return with_wakeups


def test_a_waits_time_counts_from_when_it_arrived_not_from_its_first_read(quiet):
    """Under 270 waits at once, a wait's first read waited seconds for its turn and its time
    began only then: agents were answered up to 5.9 s past the seconds they asked for. Here
    the first read comes 1.5 s after the request: 0.5 s of its 2 are left to wait."""
    dispatcher = quiet(True)
    reads: list[str] = []

    async def asked() -> Any:
        request = Arrived(asyncio.get_running_loop(), ago=1.5, wait=2)
        return await _waited(waiting_view(reads, 2), request)

    answer = asyncio.run(asked())

    assert answer.data == "pending" and reads == ["first"]
    assert dispatcher.timeouts and dispatcher.timeouts[0] <= 0.5, dispatcher.timeouts


def test_when_the_time_is_up_and_nothing_came_the_last_read_is_the_answer(quiet):
    """Every wait timing out together re-read, each read queued behind the others': answers
    came seconds late. Nothing having come since the last read, that read is the answer, at
    once; where changes cannot be heard of (no wake-ups to be had), it reads again."""
    release = threading.Event()
    timer = threading.Timer(5, release.set)  # the old code's re-read, let go in the end
    timer.daemon = True
    timer.start()
    heard, unheard = [], []

    async def asked(reads: list[str], hears: bool) -> Any:
        quiet(hears)
        request = Arrived(asyncio.get_running_loop(), ago=0, wait=1)
        return await _waited(waiting_view(reads, 1, release if hears else None), request)

    assert asyncio.run(asked(heard, True)).data == "pending"
    release.set()
    assert asyncio.run(asked(unheard, False)).data == "decided"

    assert heard == ["first"]
    assert unheard == ["first", "again"]


def test_a_wait_whose_first_read_could_not_begin_in_time_is_told_to_come_back(quiet):
    """Its turn came 1 s after its time was up (the reads of hundreds of waits ahead of it):
    it is not read, and the agent is told 503 busy, come back after Retry-After, within its
    time (and a half-second's grace), not answered whenever its turn came."""
    quiet(True)
    reads: list[str] = []

    async def asked() -> Any:
        request = Arrived(asyncio.get_running_loop(), ago=3, wait=2)
        return await _waited(waiting_view(reads, 2), request)

    answer = asyncio.run(asked())

    assert reads == []
    assert answer.status_code == 503
    assert answer["Retry-After"] == "1"
    body = json.loads(answer.content)
    assert body["code"] == "busy"
    assert "within the seconds it asked to wait" in body["detail"]
