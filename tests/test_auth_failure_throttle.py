"""Refused API keys are limited per client address: past the limit a wrong key is answered 429
with Retry-After, while a valid key from the same address goes on working."""

import asyncio
import time
from collections.abc import Iterator

import hitl_client
import pytest
from rest_framework.test import APIClient

from approvals.authentication import failures_window
from approvals.models import AgentAPIKey, Proposal
from approvals.services.agents import agent_key_revoke
from audit.actors import Actor
from hitlproject.windows import window_counts_clear, window_hit
from tests.conftest import bid_adjustment

URL = "/api/v1/proposals/"
NAT = "203.0.113.7"
ELSEWHERE = "198.51.100.20"
LIMIT = 3


@pytest.fixture
def failures_limited(settings, demo_world) -> Iterator[None]:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "auth_failures": f"{LIMIT}/min",
        },
    }
    windows = {failures_window(address) for address in (NAT, ELSEWHERE, "2001:db8:1:2::1")}
    assert len(windows) == 3  # the addresses count apart
    for name in windows:
        window_counts_clear(name=name)
    yield
    for name in windows:
        window_counts_clear(name=name)


def client_at(address: str, key: str | None = None) -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    if key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def wrong_key(demo_world) -> str:
    """The optimizer's key with its secret changed: a known prefix, a wrong secret."""
    key = demo_world["agents"]["optimizer"]
    return key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")


def test_wrong_keys_from_one_address_are_refused_429_after_the_limit(failures_limited, demo_world):
    guesser = client_at(NAT, wrong_key(demo_world))
    answers = [guesser.get(URL) for _ in range(LIMIT + 2)]
    assert [answer.status_code for answer in answers] == [401] * LIMIT + [429, 429]
    assert answers[0].json()["code"] == "authentication_failed"
    refused = answers[-1]
    assert refused.json()["code"] == "authentication_throttled"
    assert "API key" in refused.json()["detail"]
    seconds = int(refused.headers["Retry-After"])
    assert 1 <= seconds <= 60
    assert refused.json()["detail"].endswith(f"Check the key, and send again in {seconds} seconds.")
    # Malformed keys and keys nobody has count alike, and a refused write records nothing.
    posted = client_at(NAT, "hitl_000000000000_nobody").post(URL, bid_adjustment(), format="json")
    assert posted.status_code == 429
    assert client_at(NAT, "not-a-key").get(URL).status_code == 429
    assert not Proposal.objects.exists()


def test_a_valid_key_behind_the_same_address_is_never_locked_out(failures_limited, demo_world):
    guesser = client_at(NAT, wrong_key(demo_world))
    for _ in range(LIMIT + 1):
        guesser.get(URL)
    assert guesser.get(URL).status_code == 429

    agent = client_at(NAT, demo_world["agents"]["optimizer"])
    submitted = agent.post(URL, bid_adjustment("2.40"), format="json")
    assert submitted.status_code == 201
    assert agent.get(f"{URL}{submitted.json()['id']}/").status_code == 200
    # A request sending no key is told it sent none, not throttled.
    assert client_at(NAT).get(URL).json()["code"] == "not_authenticated"
    # Another address's wrong key is still told plainly that it is wrong.
    other = client_at(ELSEWHERE, wrong_key(demo_world)).get(URL)
    assert other.status_code == 401


def test_a_revoked_key_counts_as_refused(failures_limited, demo_world):
    key = demo_world["agents"]["copywriter"]
    stored = AgentAPIKey.objects.get(prefix=key.split("_")[1])
    agent_key_revoke(key=stored, actor=Actor.system("test"))
    revoked = client_at(ELSEWHERE, key)
    statuses = [revoked.get(URL).status_code for _ in range(LIMIT + 1)]
    assert statuses == [401] * LIMIT + [429]


def test_an_ipv6_host_is_counted_by_its_64(failures_limited, demo_world):
    """A host given a /64 cannot step round the limit by changing its address in it."""
    key = wrong_key(demo_world)
    statuses = [
        client_at(f"2001:db8:1:2::{n:x}", key).get(URL).status_code for n in range(LIMIT + 1)
    ]
    assert statuses == [401] * LIMIT + [429]


def test_the_client_raises_a_throttled_wrong_key_as_both_auth_failed_and_rate_limited(
    web_server_with, demo_world
):
    """Through the Procfile's web server, as an agent built on the client meets it."""
    window_counts_clear(name=failures_window("127.0.0.1"))
    server = web_server_with(HITL_API_AUTH_FAILURE_RATE="2/min")
    wrong = hitl_client.Client(
        base_url=server.url, api_key=wrong_key(demo_world), retry=hitl_client.NO_RETRIES
    )
    right = hitl_client.Client(base_url=server.url, api_key=demo_world["agents"]["optimizer"])
    try:
        for _ in range(2):
            with pytest.raises(hitl_client.AuthFailed) as refused:
                wrong.campaigns()
            assert refused.value.status_code == 401
        with pytest.raises(hitl_client.AuthThrottled) as throttled:
            wrong.campaigns()
        assert isinstance(throttled.value, hitl_client.AuthFailed)
        assert isinstance(throttled.value, hitl_client.RateLimited)
        assert throttled.value.status_code == 429
        assert throttled.value.code == "authentication_throttled"
        assert 1 <= throttled.value.retry_after <= 60
        assert "API key" in str(throttled.value)
        assert {c.external_id for c in right.campaigns()} >= {"brand-search"}
    finally:
        wrong.close()
        right.close()
        window_counts_clear(name=failures_window("127.0.0.1"))


@pytest.mark.parametrize("client_class", [hitl_client.Client, hitl_client.AsyncClient])
def test_the_client_does_not_send_a_throttled_wrong_key_again(
    web_server_with, demo_world, client_class
):
    """The client retried every 429 after its Retry-After: a key refused as wrong was slept on
    (up to a minute) and sent again, one more refused key from the address, and the agent
    was told at last of a 401 in a new window, or of the 429 a minute late. The same key is
    refused again: now the 429 is raised at once, with what it says to mend."""
    window_counts_clear(name=failures_window("127.0.0.1"))
    server = web_server_with(HITL_API_AUTH_FAILURE_RATE="2/min")
    patient = hitl_client.RetryPolicy(max_attempts=5, max_elapsed=3600)
    key = wrong_key(demo_world)
    try:
        for _ in range(2):
            refusal = _refusal(client_class, server.url, key, hitl_client.NO_RETRIES)
            assert refusal.status_code == 401
        refusal = _refusal(client_class, server.url, key, patient)
        assert isinstance(refusal, hitl_client.AuthThrottled)
        assert (refusal.status_code, refusal.code) == (429, "authentication_throttled")
        # Sent once: the address's window counts the two refused before it, this one, and
        # the hit read here.
        assert window_hit(name=failures_window("127.0.0.1"), period=60, now=time.time()).count == 4
    finally:
        window_counts_clear(name=failures_window("127.0.0.1"))


def _refusal(client_class, url: str, key: str, retry) -> hitl_client.AuthFailed:
    client = client_class(base_url=url, api_key=key, retry=retry)
    if client_class is hitl_client.Client:
        with client, pytest.raises(hitl_client.AuthFailed) as refused:
            client.campaigns()
        return refused.value

    async def refused_async() -> hitl_client.AuthFailed:
        async with client:
            try:
                await client.campaigns()
            except hitl_client.AuthFailed as refused:
                return refused
        raise AssertionError("not refused")

    return asyncio.run(refused_async())
