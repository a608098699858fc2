"""Agents authenticate with their own key and see only their own proposals and feedback."""

import multiprocessing
import threading
import uuid
from concurrent.futures import ProcessPoolExecutor

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from approvals.authentication import agent_window
from approvals.models import Agent, AgentAPIKey, Proposal, ProposalStatus
from approvals.services.agents import (
    agent_callback_secret_rotate,
    agent_key_issue,
    agent_key_revoke,
)
from audit.actors import Actor
from hitlproject.windows import window_counts_clear, window_hit
from tests.conftest import bid_adjustment
from tests.spawned import django_ready
from tests.test_rules_in_force_kept import in_another_process

URL = "/api/v1/proposals/"


@pytest.fixture
def optimizers_proposal(optimizer) -> int:
    """A 20% bid raise: it waits for a person."""
    return optimizer.post(URL, bid_adjustment("2.40"), format="json").json()["id"]


def test_agent_cannot_read_another_agents_proposal(agent_client, optimizers_proposal):
    copywriter = agent_client("copywriter")
    assert copywriter.get(f"{URL}{optimizers_proposal}/").status_code == 404
    assert copywriter.get(URL).json()["results"] == []
    assert agent_client("optimizer").get(f"{URL}{optimizers_proposal}/").status_code == 200


def test_agent_cannot_withdraw_another_agents_proposal(agent_client, optimizers_proposal):
    response = agent_client("copywriter").post(f"{URL}{optimizers_proposal}/withdraw/")
    assert response.status_code == 404
    assert Proposal.objects.get(pk=optimizers_proposal).status == ProposalStatus.PENDING_REVIEW


def test_agent_withdraws_its_own_waiting_proposal(optimizer, optimizers_proposal):
    response = optimizer.post(f"{URL}{optimizers_proposal}/withdraw/")
    assert response.status_code == 200
    assert response.json()["status"] == "withdrawn"
    assert optimizer.post(f"{URL}{optimizers_proposal}/withdraw/").status_code == 409


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer hitl_000000000000_not-the-secret",
        "Bearer not-a-key",
        "Bearer a b",
        "Bearer hitl_ab\x00cdef01234_secret",
        "Basic dXNlcjpwYXNz",
    ],
)
def test_requests_without_a_valid_key_are_401(demo_world, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(URL)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_rotated_key_stops_working(demo_world):
    old_key = demo_world["agents"]["optimizer"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {old_key}")
    assert client.get(URL).status_code == 200  # found, and kept by this process
    new_key = agent_key_issue(agent=Agent.objects.get(name="optimizer"), actor=Actor.system("test"))
    assert client.get(URL).status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {new_key}")
    assert client.get(URL).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_two_new_keys_issued_at_once_leave_only_one_in_force(demo_world):
    """Two people (or two tabs) issuing a new key for one agent at once: each revoked the keys
    in force when it began and not the other's new one, so both new keys worked, where
    "Issue a new API key (revokes the current one)" leaves one. Now the second waits for the
    first and revokes its key."""
    agent = Agent.objects.get(name="optimizer")
    first_issued, first_may_commit = threading.Event(), threading.Event()
    keys: dict[str, str] = {}

    def issue_first() -> None:
        try:
            with transaction.atomic():  # held open, its new key not yet committed
                keys["first"] = agent_key_issue(agent=agent, actor=Actor.system("first"))
                first_issued.set()
                first_may_commit.wait(10)
        finally:
            connection.close()

    def issue_second() -> None:
        try:
            keys["second"] = agent_key_issue(agent=agent, actor=Actor.system("second"))
        finally:
            connection.close()

    first = threading.Thread(target=issue_first)
    first.start()
    assert first_issued.wait(10)
    second = threading.Thread(target=issue_second)
    second.start()
    second.join(0.5)  # it waits for the first's transaction (a lock), as it must either way
    first_may_commit.set()
    first.join(10)
    second.join(10)

    in_force = AgentAPIKey.objects.filter(agent=agent, revoked_at__isnull=True)
    assert in_force.count() == 1
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {keys['first']}")
    assert client.get(URL).status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {keys['second']}")
    assert client.get(URL).status_code == 200


def test_a_key_revoked_again_keeps_when_and_by_whom_it_was_revoked(demo_world):
    """Two people revoking one key at once (the second's list read before the first's
    revocation): the second rewrote its revocation's time and its history's entry."""
    key = AgentAPIKey.objects.get(agent__name="optimizer", revoked_at__isnull=True)
    stale = AgentAPIKey.objects.get(pk=key.pk)
    agent_key_revoke(key=key, actor=Actor.system("first"))
    revoked_at = AgentAPIKey.objects.get(pk=key.pk).revoked_at
    entries = key.history.count()

    agent_key_revoke(key=stale, actor=Actor.system("second"))

    assert AgentAPIKey.objects.get(pk=key.pk).revoked_at == revoked_at
    assert key.history.count() == entries


def test_a_new_callback_secret_keeps_a_deactivation_saved_since_the_agent_was_read(optimizer):
    """The console's action issues secrets to the agents its list read: one deactivated by
    another person meanwhile was saved back active, its key working again."""
    stale = Agent.objects.get(name="optimizer")
    secret_before = stale.callback_secret
    deactivated = Agent.objects.get(pk=stale.pk)
    deactivated.is_active = False
    deactivated.save()

    secret = agent_callback_secret_rotate(agent=stale, actor=Actor.system("second"))

    agent = Agent.objects.get(pk=stale.pk)
    assert agent.is_active is False
    assert agent.callback_secret == secret != secret_before
    assert optimizer.get(URL).status_code == 401


def test_a_deactivated_agent_is_refused(optimizer):
    assert optimizer.get(URL).status_code == 200  # its key found, and kept by this process
    agent = Agent.objects.get(name="optimizer")
    agent.is_active = False
    agent.save()
    assert optimizer.get(URL).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_a_key_revoked_by_another_process_is_refused_at_the_next_request(demo_world, optimizer):
    """Each process keeps the keys it found; a revocation anywhere, even a raw write that no
    signal sees, changes the token they are kept under in the same transaction."""
    assert optimizer.get(URL).status_code == 200

    in_another_process(
        "from django.utils import timezone\n"
        "from approvals.models import AgentAPIKey\n"
        "AgentAPIKey.objects.filter(agent__name='optimizer').update(revoked_at=timezone.now())\n"
    )

    answer = optimizer.get(URL)
    assert answer.status_code == 401
    assert answer.json()["detail"] == "This API key has been revoked."


@pytest.mark.django_db(transaction=True)
def test_an_agent_deactivated_by_another_process_is_refused_at_the_next_request(optimizer):
    assert optimizer.get(URL).status_code == 200

    in_another_process(
        "from approvals.models import Agent\n"
        "Agent.objects.filter(name='optimizer').update(is_active=False)\n"
    )

    assert optimizer.get(URL).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_an_account_taken_from_an_agent_by_another_process_is_refused_at_the_next_submission(
    optimizer,
):
    """The accounts an agent may act on are kept with its key; taking one away anywhere (a
    raw write to the link too) changes the token they are kept under, in the same
    transaction."""
    assert optimizer.post(URL, bid_adjustment("2.40"), format="json").status_code == 201

    in_another_process(
        "from approvals.models import Agent\n"
        "Agent.accounts.through.objects.filter(agent__name='optimizer').delete()\n"
    )

    refused = optimizer.post(URL, bid_adjustment("2.40"), format="json")
    assert refused.status_code == 400
    assert "may act on" in refused.json()["account"][0]

    in_another_process(
        "from approvals.models import Agent\n"
        "from ledger.models import Account\n"
        "Agent.objects.get(name='optimizer').accounts.add(Account.objects.get(external_id='demo'))\n"
    )

    assert optimizer.post(URL, bid_adjustment("2.40"), format="json").status_code == 201


def test_keys_are_stored_only_as_digests(demo_world):
    raw_key = demo_world["agents"]["optimizer"]
    stored = Agent.objects.get(name="optimizer").api_keys.get(revoked_at__isnull=True)
    assert raw_key.startswith(f"hitl_{stored.prefix}_")
    assert raw_key not in (stored.digest, stored.prefix)
    assert len(stored.digest) == 64


def test_campaigns_lists_only_the_agents_accounts(optimizer):
    campaigns = optimizer.get("/api/v1/campaigns/").json()
    assert {c["external_id"] for c in campaigns} == {
        "brand-search",
        "generic-search",
        "display-retarget",
    }
    assert {c["account"] for c in campaigns} == {"demo"}


def test_an_agent_over_its_rate_gets_429_with_retry_after(optimizer, settings):
    window = agent_window(Agent.objects.get(name="optimizer"))
    window_counts_clear(name=window)
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "agent": "3/min",
        },
    }
    try:
        statuses = [optimizer.get("/api/v1/campaigns/").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        refused = optimizer.get("/api/v1/campaigns/")
        assert 0 < int(refused.headers["Retry-After"]) <= 60
    finally:
        window_counts_clear(name=window)


def test_hits_at_once_from_many_processes_are_each_counted_once():
    """The rate's counter is shared by the web server's processes and threads: none loses a
    hit, whichever store counts them (Redis, or the embedded default's files)."""
    name = f"test-{uuid.uuid4().hex}"
    spawn = multiprocessing.get_context("spawn")  # never forked (tests.spawned says why)
    together = spawn.Barrier(4, timeout=120)
    try:
        with ProcessPoolExecutor(
            4, mp_context=spawn, initializer=django_ready, initargs=(together,)
        ) as pool:
            counts = [n for batch in pool.map(hits, [name] * 4, timeout=120) for n in batch]
        assert sorted(counts) == list(range(1, 401))
        assert window_hit(name=name, period=3600, now=3600.0).count == 1  # the next window
    finally:
        window_counts_clear(name=name)


def hits(name: str) -> list[int]:
    return [window_hit(name=name, period=3600, now=0.0).count for _ in range(100)]


def test_a_reason_does_not_name_another_agents_proposal(agent_client, optimizer):
    """The optimizer's bid raise on brand-search is approved and has not executed; the
    copywriter's raise of the same bid goes to a person, saying an approved proposal changes
    it first and, over the cumulative ceiling alone, that its pending raise is not counted
    (only one of the two can run), without naming it (an agent sees only its own
    proposals). The optimizer, raising it again, is told which of its own it is."""
    approved = optimizer.post(URL, bid_adjustment("2.05"), format="json").json()
    assert approved["status"] == "approved"

    others = agent_client("copywriter").post(URL, bid_adjustment("2.60"), format="json")
    own = optimizer.post(URL, bid_adjustment("2.45"), format="json").json()

    assert others.status_code == 201, others.content
    told = " ".join(others.json()["verdict"]["reasons"])
    assert f"#{approved['id']}" not in told
    assert told.startswith(
        "Another agent's proposal, approved and about to execute, changes brand-search's bid first"
    )
    assert (
        "counting no other move; not counting another agent's proposal, approved, not yet "
        "executed, which sets brand-search's bid too: only one of them can run."
    ) in told
    assert " ".join(own["verdict"]["reasons"]).startswith(
        f"#{approved['id']}, approved and about to execute, changes brand-search's bid first"
    )
