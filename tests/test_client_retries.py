"""The client's retries, idempotency keys and typed errors, against a fake agent API started
in the test: a local HTTP server that answers each request as the test scripts it (throttled,
busy, failing, or dropping the connection without an answer) and keeps what it was sent.

The client's pauses are recorded (and cut short), so the tests assert how long the client
chose to wait (what Retry-After asked), not how long anything took."""

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from hitl_client import (
    AsyncClient,
    AuthFailed,
    BadResponse,
    Client,
    Conflict,
    ConnectionFailed,
    HitlError,
    NotFound,
    PermissionDenied,
    RateLimited,
    RetryPolicy,
    ServerError,
    Unprocessable,
    ValidationFailed,
    WaitTimedOut,
)
from hitl_client import client as client_module
from hitl_client._tools import REMEMBERED_LOST, LostAnswers

from tests.conftest import free_port

DROP = object()  # close the connection without answering


def proposal_json(proposal_id: int = 7, status: str = "approved") -> dict:
    return {
        "id": proposal_id,
        "status": status,
        "action_type": "bid_adjustment",
        "account": "demo",
        "payload": {"campaign": "brand-search", "new_bid": "2.12"},
        "rationale": "CPC below target.",
        "supporting_data": {},
        "confidence": 0.9,
        "external_ref": "",
        "summary": "raise brand-search's bid from 2.00 to 2.12",
        "magnitude": "0.060000",
        "amount": None,
        "risk": 12,
        "verdict": {
            "outcome": "auto_approve" if status == "approved" else "review",
            "policy": {"id": 1, "name": "Bid adjustments", "version": 3},
            "reasons": ["6.0% is within the 15.0% auto-execute ceiling."],
            "required_approvals": 1,
        },
        "decisions": [],
        "execution": None,
        "outcomes": [],
        "created_at": "2026-12-02T02:00:00.000000Z",
        "updated_at": "2026-12-02T02:00:00.000000Z",
        "evaluated_at": "2026-12-02T02:00:00.000000Z",
        "review_expires_at": None,
        "decided_at": None,
        "executed_at": None,
    }


class FakeAPI:
    """Answers requests with the scripted answers in turn: (status, body, headers), DROP, or
    a function of the request. It keeps each request's method, path, query, headers and body."""

    def __init__(self) -> None:
        self.script: list = []
        self.requests: list[dict] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                request = {
                    "method": self.command,
                    "path": url.path,
                    "query": {k: v[0] for k, v in parse_qs(url.query).items()},
                    "headers": dict(self.headers),
                    "json": json.loads(body) if body else None,
                }
                api.requests.append(request)
                step = api.script.pop(0) if len(api.script) > 1 else api.script[0]
                if callable(step):
                    step = step(request)
                if step is DROP:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, payload, headers = (*step, {})[:3]
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answers(self, *steps) -> "FakeAPI":
        self.script = list(steps)
        return self


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    fake = FakeAPI()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def pauses(monkeypatch) -> list[float]:
    """The pauses the client takes between attempts and rounds, recorded instead of slept."""
    slept: list[float] = []
    sleep, async_sleep = time.sleep, asyncio.sleep

    def short_sleep(seconds: float) -> None:
        slept.append(seconds)
        sleep(min(seconds, 0.05))

    async def short_async_sleep(seconds: float) -> None:
        slept.append(seconds)
        await async_sleep(min(seconds, 0.05))

    monkeypatch.setattr(client_module.time, "sleep", short_sleep)
    monkeypatch.setattr(client_module.asyncio, "sleep", short_async_sleep)
    return slept


@pytest.fixture
def hitl(api) -> Iterator[Client]:
    with Client(api.url, "hitl_test_key") as client:
        yield client


def propose(client: Client):
    return client.propose(
        "bid_adjustment",
        "demo",
        {"campaign": "brand-search", "new_bid": "2.12"},
        rationale="CPC below target.",
        confidence=0.9,
    )


def test_throttled_proposal_is_sent_again_after_retry_after_with_the_same_key(api, hitl, pauses):
    api.answers(
        (429, {"detail": "Request was throttled.", "code": "throttled"}, {"Retry-After": "3"}),
        (201, proposal_json()),
    )
    proposal = propose(hitl)

    assert proposal.id == 7 and proposal.status == "approved"
    assert pauses == [3.0]
    keys = [request["headers"]["Idempotency-Key"] for request in api.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert api.requests[0]["headers"]["Authorization"] == "Bearer hitl_test_key"


def test_each_proposal_gets_its_own_generated_key(api, hitl, pauses):
    api.answers((201, proposal_json()))
    propose(hitl)
    propose(hitl)
    first, second = (request["headers"]["Idempotency-Key"] for request in api.requests)
    assert first != second


def test_a_dropped_connection_is_retried_with_the_same_key_and_makes_one_proposal(
    api, hitl, pauses
):
    """The first request reaches the server and is carried out, but the connection drops
    before the answer arrives; the retry carries the same key and gets the replay."""
    made: dict[str, dict] = {}

    def idempotent_server(request):
        key = request["headers"]["Idempotency-Key"]
        if key in made:
            return 201, made[key], {"Idempotent-Replayed": "true"}
        made[key] = proposal_json(proposal_id=len(made) + 41)
        return DROP

    api.answers(idempotent_server)
    proposal = propose(hitl)

    assert len(made) == 1
    assert proposal.id == 41 and proposal.replayed
    assert len(api.requests) == 2
    assert len(pauses) == 1 and pauses[0] <= 0.5  # the first backoff step, jittered


def test_a_given_key_is_sent_as_is(api, hitl, pauses):
    api.answers((201, proposal_json()))
    hitl.propose(
        "bid_adjustment",
        "demo",
        {"campaign": "brand-search", "new_bid": "2.12"},
        rationale="r",
        confidence=0.5,
        idempotency_key="run-12-step-3",
    )
    assert api.requests[0]["headers"]["Idempotency-Key"] == "run-12-step-3"


def test_server_errors_are_retried_with_growing_backoff_then_succeed(api, hitl, pauses):
    api.answers((500, {"detail": "boom"}), (502, {}), (504, {}), (201, proposal_json()))
    assert propose(hitl).id == 7
    assert len(api.requests) == 4
    first, second, third = pauses
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0 and 1.0 <= third <= 2.0


def test_busy_answer_is_retried_after_its_retry_after(api, hitl, pauses):
    busy = {"detail": "Held by other requests; nothing was recorded.", "code": "busy"}
    api.answers((503, busy, {"Retry-After": "1"}), (200, proposal_json(status="pending_review")))
    assert hitl.get(7).status == "pending_review"
    assert pauses == [1.0]


@pytest.mark.parametrize(
    "never",
    ["Mon, 01 Jan 99999999999999999999 00:00:00 GMT", "inf", "nan", "1e400", "9" * 400],
)
def test_a_busy_answer_whose_retry_after_is_no_time_to_wait_is_retried_as_ever(
    api, hitl, pauses, never
):
    """A Retry-After the client cannot read as a time (a year no clock reaches, "inf", "nan",
    more seconds than a float holds) is one it was not given: the request is tried again after
    the usual backoff, not an OverflowError out of ``get``, nor a sleep without end."""
    busy = {"detail": "Held by other requests; nothing was recorded.", "code": "busy"}
    api.answers((503, busy, {"Retry-After": never}), (200, proposal_json(status="pending_review")))
    assert hitl.get(7).status == "pending_review"
    assert len(api.requests) == 2 and len(pauses) == 1 and 0.25 <= pauses[0] <= 0.5


def test_retries_stop_after_the_attempts_allowed(api, pauses):
    api.answers(
        (429, {"detail": "Request was throttled.", "code": "throttled"}, {"Retry-After": "2"})
    )
    hitl = Client(api.url, "k", retry=RetryPolicy(max_attempts=3))
    with hitl, pytest.raises(RateLimited) as throttled:
        propose(hitl)
    assert throttled.value.retry_after == 2.0
    assert throttled.value.message == "Request was throttled."
    assert len(api.requests) == 3 and pauses == [2.0, 2.0]


def test_a_retry_after_longer_than_the_time_allowed_is_not_waited_out(api, pauses):
    api.answers((429, {"detail": "Slow down.", "code": "throttled"}, {"Retry-After": "120"}))
    hitl = Client(api.url, "k", retry=RetryPolicy(max_elapsed=30))
    with hitl, pytest.raises(RateLimited) as throttled:
        hitl.campaigns()
    assert throttled.value.retry_after == 120.0
    assert len(api.requests) == 1 and pauses == []


def test_a_withdrawal_that_may_have_reached_the_server_is_not_sent_twice(api, hitl, pauses):
    """Withdraw takes no Idempotency-Key: after a dropped connection or a 500, whether it took
    effect is unknown, so the client says so instead of sending it again."""
    api.answers(DROP)
    with pytest.raises(ConnectionFailed) as dropped:
        hitl.withdraw(7)
    assert dropped.value.message == (
        "POST /api/v1/proposals/7/withdraw/ failed: RemoteProtocolError: Server disconnected "
        "without sending a response. It may have reached the server; it was not sent again "
        "because it has no Idempotency-Key, so whether it took effect is unknown."
    )  # one full stop after httpx's words, which end with one

    api.answers((500, {"detail": "Server error."}))
    with pytest.raises(ServerError) as failed:
        hitl.withdraw(7)
    assert failed.value.status_code == 500
    assert len(api.requests) == 2 and pauses == []


def test_a_throttled_withdrawal_is_retried(api, hitl, pauses):
    api.answers(
        (429, {"detail": "Request was throttled."}, {"Retry-After": "1"}),
        (200, proposal_json(status="withdrawn")),
    )
    assert hitl.withdraw(7).status == "withdrawn"
    assert pauses == [1.0]


def test_an_unreachable_server_is_tried_a_bounded_number_of_times(pauses):
    hitl = Client(f"http://127.0.0.1:{free_port()}", "k", retry=RetryPolicy(max_attempts=4))
    with hitl, pytest.raises(ConnectionFailed) as unreachable:
        propose(hitl)
    assert "ConnectError" in unreachable.value.message
    assert len(pauses) == 3


def test_a_409_on_a_retry_means_the_first_attempt_is_in_flight_and_is_retried(api, hitl, pauses):
    in_flight = {"detail": "A request with this Idempotency-Key is still in progress."}
    api.answers(DROP, (409, in_flight), (201, proposal_json()))
    assert propose(hitl).id == 7
    assert len(api.requests) == 3


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (401, "authentication_failed", AuthFailed),
        (403, "permission_denied", PermissionDenied),
        (404, "not_found", NotFound),
        (409, "conflict", Conflict),
        (422, "unprocessable", Unprocessable),
    ],
)
def test_refusals_raise_typed_errors_with_the_apis_message(api, hitl, pauses, status, code, error):
    message = f"The API's own words for {code}."
    api.answers((status, {"detail": message, "code": code}))
    with pytest.raises(error) as refused:
        hitl.withdraw(7)
    if status == 404:  # it names the address asked: a proposal missing, or a wrong base URL
        assert refused.value.message.startswith(f"{message} (POST http://")
        assert refused.value.message.endswith("/api/v1/proposals/7/withdraw/)")
    else:
        assert refused.value.message == message
    assert refused.value.status_code == status
    assert refused.value.code == code
    assert len(api.requests) == 1


def test_validation_errors_carry_each_fields_messages(api, hitl, pauses):
    api.answers(
        (
            400,
            {
                "payload": {"new_bid": ["Ensure this value is greater than 0."]},
                "confidence": ["Ensure this value is less than or equal to 1.0."],
            },
        )
    )
    with pytest.raises(ValidationFailed) as invalid:
        propose(hitl)
    assert invalid.value.errors == {
        "payload.new_bid": ["Ensure this value is greater than 0."],
        "confidence": ["Ensure this value is less than or equal to 1.0."],
    }
    assert "payload.new_bid: Ensure this value is greater than 0." in str(invalid.value)
    assert len(api.requests) == 1


def test_wait_polls_at_a_bounded_interval_when_the_server_answers_at_once(api, pauses):
    """A server that ignores ?wait= answers every round at once; the client then pauses its
    fallback interval between rounds instead of asking again in a tight loop."""
    api.answers(
        (200, proposal_json(status="pending_review")),
        (200, proposal_json(status="pending_review")),
        (200, proposal_json(status="pending_review")),
        (200, proposal_json(status="approved")),
        (200, proposal_json(status="executed")),
    )
    with Client(api.url, "k", fallback_interval=2.5) as hitl:
        executed = hitl.wait(7)  # no timeout: as long as it takes

    assert executed.status == "executed"
    first, *rounds = api.requests
    assert "wait" not in first["query"]
    assert [r["query"]["status"] for r in rounds] == [
        "pending_review",
        "pending_review",
        "pending_review",
        "approved",
    ]
    assert all(r["query"]["wait"] == "60" for r in rounds)
    assert pauses == [2.5, 2.5]  # no pause once the status moved


def test_a_long_poll_refused_busy_in_a_burst_is_asked_again_after_retry_after(api, pauses):
    """What the README promises: a web process with as many requests under way as it takes
    answers a long poll 503 busy at once; the wait asks again after Retry-After and goes on."""
    busy = {"detail": "As many requests under way as it takes; nothing was done.", "code": "busy"}
    api.answers(
        (200, proposal_json(status="pending_review")),
        (503, busy, {"Retry-After": "1"}),
        (200, proposal_json(status="executed")),
    )
    with Client(api.url, "k") as hitl:
        assert hitl.wait(7, timeout=30).status == "executed"
    _, refused, again = api.requests
    assert (
        refused["query"]
        == again["query"]
        == {"wait": again["query"]["wait"], "status": "pending_review"}
    )
    assert pauses == [1.0]


TOO_MANY_WAITS = (
    429,
    {
        "detail": "This agent already has 100 long polls (?wait=) waiting on this server, the "
        "most it may; wait for one of them to be answered, or ask again without wait, or "
        "after Retry-After seconds.",
        "code": "too_many_waits",
    },
    {"Retry-After": "5"},
)


def test_a_wait_past_the_agents_share_of_long_polls_goes_on_until_decided(api, pauses):
    """An agent with more waits open than the platform holds for it (100 per web process:
    several workers sharing a key) is answered 429 too_many_waits, past the client's five
    attempts too. wait() with no timeout waits "as long as it takes": it goes on, after each
    Retry-After, reading the proposal without wait in between (as the refusal suggests, so a
    decision is seen), rather than raise RateLimited after 20 s, which it did to 60 of 160
    such waits."""
    pending, executed = proposal_json(status="pending_review"), proposal_json(status="executed")
    api.answers(
        (200, pending), *[TOO_MANY_WAITS] * 5, (200, pending), TOO_MANY_WAITS, (200, executed)
    )
    with Client(api.url, "k") as hitl:
        assert hitl.wait(7).status == "executed"
    assert pauses and min(pauses) >= 5.0  # Retry-After honoured: no tight loop
    queries = [request["query"] for request in api.requests]
    assert queries[6] == {}  # once the attempts ran out: a plain read, not one more wait
    assert queries[7]["status"] == "pending_review" and "wait" in queries[7]


def test_a_wait_refused_too_many_waits_until_its_time_is_up_times_out(api, pauses):
    """The same with a timeout: WaitTimedOut with the proposal as last seen, as for any wait
    that runs out of time, not RateLimited."""
    api.answers((200, proposal_json(status="pending_review")), TOO_MANY_WAITS)
    with Client(api.url, "k") as hitl, pytest.raises(WaitTimedOut) as timed_out:
        hitl.wait(7, timeout=2.5)
    assert timed_out.value.proposal.status == "pending_review"
    assert max(pauses) == 5.0 and len(api.requests) < 60  # Retry-After honoured: no tight loop


def test_an_async_wait_refused_busy_past_the_client_retries_goes_on(api, pauses):
    """A web process too loaded to begin a long poll's read answers 503 busy; past the
    client's attempts too, the async wait goes on as the blocking one does."""
    busy = (
        503,
        {"detail": "This server had too many requests under way …", "code": "busy"},
        {"Retry-After": "1"},
    )
    pending = proposal_json(status="pending_review")
    api.answers((200, pending), *[busy] * 5, (200, proposal_json(status="rejected")))

    async def waited():
        async with AsyncClient(api.url, "k") as hitl:
            return await hitl.wait(7, timeout=300)

    assert asyncio.run(waited()).status == "rejected"
    assert pauses and min(pauses) >= 1.0


def test_wait_asks_for_no_longer_than_its_timeout_and_then_says_so(api, pauses):
    api.answers((200, proposal_json(status="pending_review")))
    with Client(api.url, "k") as hitl, pytest.raises(WaitTimedOut) as timed_out:
        hitl.wait(7, timeout=2.5)
    assert timed_out.value.proposal.status == "pending_review"
    asked = [int(r["query"]["wait"]) for r in api.requests if "wait" in r["query"]]
    assert asked and all(1 <= seconds <= 2 for seconds in asked)


def test_wait_returns_a_final_proposal_at_once(api, hitl, pauses):
    api.answers((200, proposal_json(status="rejected")))
    assert hitl.wait(7).status == "rejected"
    assert len(api.requests) == 1 and pauses == []


def test_feedback_follows_next_then_long_polls_the_kept_resume_link(api, pauses):
    record = {
        "id": 1,
        "proposal": 7,
        "action_type": "bid_adjustment",
        "kind": "rejected",
        "reason_code": "too_aggressive",
        "note": "Halve it.",
        "diff": None,
        "outcome": None,
        "created_at": "2026-12-02T02:00:00Z",
    }
    # Links as a server behind a proxy builds them: another host, the client's ?wait= kept.
    page_1 = {
        "next": "https://hitl.example/api/v1/feedback/?cursor=n1",
        "previous": None,
        "resume": "https://hitl.example/api/v1/feedback/?cursor=r1",
        "results": [record],
    }
    page_2 = {
        "next": None,
        "previous": None,
        "resume": "https://hitl.example/api/v1/feedback/?cursor=r2",
        "results": [record | {"id": 2, "kind": "approved", "reason_code": ""}],
    }
    empty = {
        "next": None,
        "previous": None,
        "resume": "https://hitl.example/api/v1/feedback/?cursor=r2&wait=60",
        "results": [],
    }
    api.answers((200, page_1), (200, page_2), (200, empty))
    with Client(api.url, "k") as hitl:
        feed = hitl.feedback()
        assert [(f.id, f.kind) for f in feed] == [(1, "rejected"), (2, "approved")]
        assert feed.resume == "/api/v1/feedback/?cursor=r2"

        later = hitl.feedback(feed.resume, follow=True, timeout=1.5)
        assert list(later) == []
    queries = [r["query"] for r in api.requests]
    assert queries[:2] == [{}, {"cursor": "n1"}]
    assert queries[2] == {"cursor": "r2"}  # what arrived since, without waiting
    assert queries[3:-1] and all(q == {"cursor": "r2", "wait": "1"} for q in queries[3:-1])
    # Under a second left: no long poll of "0" seconds, but a last look when the time ends.
    assert queries[-1] == {"cursor": "r2"}
    assert 0 < pauses[-1] <= 1.5  # taken when the time ends


def test_a_followed_feed_goes_on_past_too_many_waits(api, pauses):
    """A followed feed whose long polls are refused 429 too_many_waits past the client's
    attempts goes on after Retry-After with a read of its resume link, and hands out the
    record that arrived meanwhile; it had raised RateLimited out of the agent's loop."""
    empty = {"next": None, "previous": None, "resume": "/api/v1/feedback/?cursor=r1", "results": []}
    record = {
        "id": 1,
        "proposal": 7,
        "action_type": "bid_adjustment",
        "kind": "approved",
        "reason_code": "",
        "note": "",
        "diff": None,
        "outcome": None,
        "created_at": "2026-12-02T02:00:00Z",
    }
    page = {**empty, "resume": "/api/v1/feedback/?cursor=r2", "results": [record]}
    api.answers((200, empty), *[TOO_MANY_WAITS] * 5, (200, page))
    with Client(api.url, "k") as hitl:
        feed = hitl.feedback(follow=True)
        assert next(iter(feed)).id == 1
    assert api.requests[-1]["query"] == {"cursor": "r1"}  # read without waiting
    assert pauses and min(pauses) >= 5.0


def test_a_followed_feed_whose_last_look_is_refused_too_many_waits_ends_as_its_time_does(
    api, pauses
):
    """A followed feed with a timeout takes a last look (a read without wait) in its last
    second; refused 429 too_many_waits past the client's attempts, it ends as a feed whose
    time is up does, its resume link kept, as a long poll refused then ends it: it raised
    RateLimited out of the agent's loop."""
    empty = {"next": None, "previous": None, "resume": "/api/v1/feedback/?cursor=r1", "results": []}
    api.answers((200, empty), *[TOO_MANY_WAITS] * 5)
    with Client(api.url, "k") as hitl:
        feed = hitl.feedback(follow=True, timeout=0.5)
        assert list(feed) == []
    assert feed.resume == "/api/v1/feedback/?cursor=r1"
    assert len(api.requests) == 6 and api.requests[-1]["query"] == {"cursor": "r1"}


def test_async_client_retries_a_throttled_proposal_with_the_same_key(api, pauses):
    api.answers(
        (429, {"detail": "Request was throttled."}, {"Retry-After": "2"}),
        (201, proposal_json()),
    )

    async def agent():
        async with AsyncClient(api.url, "k") as hitl:
            return await hitl.propose(
                "bid_adjustment",
                "demo",
                {"campaign": "brand-search", "new_bid": "2.12"},
                rationale="r",
                confidence=0.5,
            )

    assert asyncio.run(agent()).id == 7
    assert pauses == [2.0]
    first, second = (r["headers"]["Idempotency-Key"] for r in api.requests)
    assert first == second


def test_client_reads_its_configuration_from_the_environment(monkeypatch, api, pauses):
    monkeypatch.setenv("HITL_BASE_URL", api.url + "/")
    monkeypatch.setenv("HITL_API_KEY", "hitl_from_env")
    api.answers((200, []))
    with Client() as hitl:
        assert hitl.campaigns() == []
    assert api.requests[0]["headers"]["Authorization"] == "Bearer hitl_from_env"
    assert api.requests[0]["path"] == "/api/v1/campaigns/"


def test_a_missing_configuration_is_said_plainly(monkeypatch):
    monkeypatch.delenv("HITL_BASE_URL", raising=False)
    monkeypatch.delenv("HITL_API_KEY", raising=False)
    with pytest.raises(Exception, match="HITL_BASE_URL"):
        Client()


@pytest.mark.parametrize("make", [Client, AsyncClient])
def test_a_base_url_without_http_or_https_is_refused_when_the_client_is_made(make, monkeypatch):
    with pytest.raises(ValueError, match="http://localhost:8110") as given:
        make("localhost:8110", "hitl_key")
    assert isinstance(given.value, HitlError)  # as a missing configuration is
    for url in ("ftp://hitl.example.com", "http://", "hitl.example.com"):
        with pytest.raises(ValueError, match="http:// or https://"):
            make(url, "hitl_key")
    monkeypatch.setenv("HITL_BASE_URL", "localhost:8110")
    monkeypatch.setenv("HITL_API_KEY", "hitl_key")
    with pytest.raises(ValueError, match="HITL_BASE_URL"):
        make()
    for url in ("http://127.0.0.1:8110", "HTTPS://hitl.example.com/"):
        made = make(url, "hitl_key")  # nothing is sent until the first call
        asyncio.run(made.aclose()) if isinstance(made, AsyncClient) else made.close()


@pytest.mark.parametrize("make", [Client, AsyncClient])
@pytest.mark.parametrize(
    "url, meant",
    [
        ("http://127.0.0.1:8000/api/v1", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/api/v1/", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/api", "http://127.0.0.1:8000"),
        ("https://corp.example/hitl/api/", "https://corp.example/hitl"),
    ],
)
def test_a_base_url_ending_with_the_api_s_path_is_refused_naming_the_address_meant(
    make, url, meant, monkeypatch
):
    """The client adds /api/v1 itself: given it too, each request was a 404, "Not found. (GET
    …/api/v1/api/v1/campaigns/)", which the framework adapters told the model as the platform
    refusing its proposal, a mistake it cannot mend."""
    with pytest.raises(ValueError, match=re.escape(f"did you mean {meant!r}")) as given:
        make(url, "hitl_key")
    assert isinstance(given.value, HitlError)
    monkeypatch.setenv("HITL_BASE_URL", url)
    monkeypatch.setenv("HITL_API_KEY", "hitl_key")
    with pytest.raises(ValueError, match="HITL_BASE_URL"):
        make()
    # A platform served under a path of its own is still taken.
    for url in ("https://corp.example/hitl", "https://corp.example/apis/"):
        made = make(url, "hitl_key")
        asyncio.run(made.aclose()) if isinstance(made, AsyncClient) else made.close()


def test_a_feed_resume_covers_exactly_the_records_handed_out(api, pauses):
    """A reader that stops mid-page keeps the link it started from (it reads that page again
    from its first record, never loses one); one that stops after a page's last record keeps the
    link past it (reads nothing twice)."""

    def record(number: int) -> dict:
        return {"id": number, "proposal": 7, "kind": "approved", "created_at": None}

    page = {
        "next": None,
        "previous": None,
        "resume": "/api/v1/feedback/?cursor=after-2",
        "results": [record(1), record(2)],
    }
    api.answers((200, page))
    with Client(api.url, "k") as hitl:
        feed = hitl.feedback("/api/v1/feedback/?cursor=start")
        records = iter(feed)
        assert next(records).id == 1
        assert feed.resume == "/api/v1/feedback/?cursor=start"
        assert next(records).id == 2
        assert feed.resume == "/api/v1/feedback/?cursor=after-2"


def test_a_followed_feed_without_timeout_long_polls_for_the_next_record(api, pauses):
    nothing = {"next": None, "previous": None, "resume": "/api/v1/feedback/", "results": []}
    arrived = {
        "next": None,
        "previous": None,
        "resume": "/api/v1/feedback/?cursor=after-5",
        "results": [{"id": 5, "proposal": 7, "kind": "rejected", "reason_code": "other"}],
    }
    api.answers((200, nothing), (200, arrived))
    with Client(api.url, "k") as hitl:
        feed = hitl.feedback(follow=True)
        record = next(iter(feed))
    assert (record.id, record.kind) == (5, "rejected")
    assert [r["query"] for r in api.requests] == [{}, {"wait": "60"}]
    assert feed.resume == "/api/v1/feedback/?cursor=after-5"


def test_a_408_said_nothing_was_done_and_is_sent_again_with_the_same_key(api, hitl, pauses):
    """The platform answers 408 request_timeout, "Nothing was done; send it again", to a
    body that stopped arriving: the client sends it again, as it does a 429, where it had
    raised a HitlError the caller had to retry by hand. A withdrawal (no key) too: nothing
    was done."""
    api.answers(
        (408, {"detail": "Nothing was done; send it again.", "code": "request_timeout"}),
        (201, proposal_json()),
    )
    assert propose(hitl).id == 7
    first, second = api.requests
    assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"]
    assert len(pauses) == 1

    api.requests.clear()
    api.answers((408, {"detail": "Nothing was done.", "code": "request_timeout"}),
                (200, proposal_json(status="withdrawn")))  # fmt: skip
    assert hitl.withdraw(7).status == "withdrawn"
    assert len(api.requests) == 2


def test_a_throttled_retry_after_a_lost_answer_says_the_first_may_have_taken_effect(api, pauses):
    """The first attempt's connection broke after it was sent (the platform may have made
    the proposal); every retry was throttled. The RateLimited raised said only "Request was
    throttled.", as if nothing had been done: it says an earlier attempt's answer was lost,
    and ``answer_lost`` is set. Throttled from the first attempt, it is not."""
    throttled = (
        429,
        {"detail": "Request was throttled.", "code": "throttled"},
        {"Retry-After": "0"},
    )
    hitl = Client(api.url, "k", retry=RetryPolicy(max_attempts=3))
    api.answers(DROP, throttled)
    with hitl, pytest.raises(RateLimited) as failed:
        propose(hitl)
    assert failed.value.answer_lost
    key = api.requests[0]["headers"]["Idempotency-Key"]
    assert failed.value.idempotency_key == key
    assert failed.value.message == (
        "Request was throttled. An earlier attempt reached the server and its answer was "
        f"lost: it may have taken effect. Its Idempotency-Key was {key!r}: sent again with "
        "that key and the same body, it is answered with what became of the first if that "
        "took effect, and done once if it did not."
    )
    assert len(api.requests) == 3

    api.answers(throttled)
    again = Client(api.url, "k", retry=RetryPolicy(max_attempts=3))
    with again, pytest.raises(RateLimited) as refused:
        propose(again)
    assert not refused.value.answer_lost and refused.value.idempotency_key is None
    assert refused.value.message == "Request was throttled."


def test_an_adapters_memory_of_lost_answers_is_bounded():
    """An adapter remembers each action whose answer was lost until a call for it is
    answered: a platform failing for hours, the model proposing a new action each time, grew
    it without end. It keeps the newest REMEMBERED_LOST; the oldest is forgotten first."""
    lost = LostAnswers()
    for amount in range(REMEMBERED_LOST + 50):
        payload = {"campaign": "brand-search", "new_daily_budget": str(amount)}
        fields = {"action_type": "budget_change", "account": "demo", "payload": payload}
        lost.lost(ServerError("Bad gateway."), fields, f"key-{amount}", made=None, again="again")
    assert len(lost) == REMEMBERED_LOST
    assert lost.sent_as(fields, "new")[1] == f"key-{REMEMBERED_LOST + 49}"
    oldest = {**fields, "payload": {"campaign": "brand-search", "new_daily_budget": "0"}}
    assert lost.sent_as(oldest, "new")[1] == "new"


def test_an_adapter_remembers_a_lost_answer_by_the_amount_not_by_how_it_was_written():
    """A lost action is found again by a call for the same amount written another way
    ("2.1", "2.10", 2.1, Decimal("2.100"): the platform reads them as one bid), and never by
    another amount: 2.11; 0.1 + 0.2, which goes out as 0.30000000000000004, against 0.3; a
    spelling the platform refuses (" 2.1", "2.1e0"). Other fields are compared as written:
    a campaign named "2.10" is not campaign "2.1"."""

    def bid(new_bid, campaign="brand-search"):
        payload = {"campaign": campaign, "new_bid": new_bid}
        return {"action_type": "bid_adjustment", "account": "demo", "payload": payload}

    lost = LostAnswers()
    lost.lost(ServerError("Bad gateway."), bid("2.1"), "first", made=None, again="again")
    for same in ("2.10", 2.1, Decimal("2.1"), Decimal("2.100"), "2.100"):
        assert lost.sent_as(bid(same), "new") == (bid("2.1"), "first"), same
    for other in ("2.11", 2.11, " 2.1", "2.1e0"):
        assert lost.sent_as(bid(other), "new") == (bid(other), "new"), other
    assert lost.sent_as(bid("2.1", campaign="2.10"), "new")[1] == "new"

    lost.lost(ServerError("Bad gateway."), bid(0.3), "point-three", made=None, again="again")
    assert lost.sent_as(bid("0.30"), "new")[1] == "point-three"
    assert lost.sent_as(bid(0.1 + 0.2), "new")[1] == "new"

    lost.answered(bid(Decimal("2.10")))
    assert lost.sent_as(bid("2.1"), "new")[1] == "new"


def test_a_proposal_that_may_have_been_made_names_the_key_the_client_made_for_it(api, pauses):
    """The client makes a key when none is given and reuses it on its own retries; when they
    ran out with the outcome unknown (every attempt a 502; a 201 whose body could not be
    read: the proposal was made), the error said it "may have taken effect" and kept the key
    to itself, so the caller could only propose again with a new key, a second proposal if
    the first was made. The error names it (``idempotency_key`` and the message). A refusal
    that did nothing (a 400, a 429 from the first attempt) names none."""
    hitl = Client(api.url, "k", retry=RetryPolicy(max_attempts=2))
    api.answers((502, {"detail": "Bad gateway."}))
    with hitl, pytest.raises(ServerError) as failed:
        propose(hitl)
    key = api.requests[0]["headers"]["Idempotency-Key"]
    assert api.requests[1]["headers"]["Idempotency-Key"] == key
    assert failed.value.idempotency_key == key
    assert f"Its Idempotency-Key was {key!r}: sent again with that key" in failed.value.message

    api.requests.clear()
    api.answers((201, "<html>a proxy's page</html>"))
    with Client(api.url, "k") as hitl, pytest.raises(BadResponse) as unread:
        propose(hitl)
    key = api.requests[0]["headers"]["Idempotency-Key"]
    assert unread.value.idempotency_key == key
    assert f"Its Idempotency-Key was {key!r}" in unread.value.message

    api.answers((400, {"payload": {"new_bid": ["Too many decimal places."]}}))
    with Client(api.url, "k") as hitl, pytest.raises(ValidationFailed) as refused:
        propose(hitl)
    assert refused.value.idempotency_key is None
    assert "Idempotency-Key" not in refused.value.message
