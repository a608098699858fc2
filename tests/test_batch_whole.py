"""A batch of proposals, up to the documented 1,000, is answered whole: every item's result,
recorded together or not at all, and a retry under the same Idempotency-Key never duplicates."""

import contextlib
import json
import sqlite3
import threading
import urllib.error
import urllib.request
import uuid

import pytest
from django.conf import settings
from django.db import connection

from approvals.models import Proposal
from tests.conftest import bid_adjustment, wait_until

BATCH_URL = "/api/v1/proposals/batch/"
CAMPAIGNS = ["brand-search", "generic-search", "display-retarget"]


def thousand_items() -> list[dict]:
    """1,000 bid adjustments; every tenth names a campaign the account does not have."""
    return [
        bid_adjustment(f"{1 + i % 90 / 100:.2f}", "no-such-campaign")
        if i % 10 == 9
        else bid_adjustment(f"{1 + i % 90 / 100:.2f}", CAMPAIGNS[i % 3], external_ref=f"item-{i}")
        for i in range(1000)
    ]


@pytest.mark.django_db
def test_a_thousand_item_batch_is_answered_whole_with_every_item_s_result(optimizer):
    response = optimizer.post(BATCH_URL, thousand_items(), format="json")

    assert response.status_code == 200
    results = response.json()
    assert [result["index"] for result in results] == list(range(1000))
    refused = [result for result in results if result["status"] != 201]
    assert [result["index"] for result in refused] == list(range(9, 1000, 10))
    assert all(
        result["status"] == 400
        and "No campaign “no-such-campaign”" in json.dumps(result, ensure_ascii=False)
        for result in refused
    )
    created = [result["proposal"] for result in results if result["status"] == 201]
    assert len(created) == 900 == Proposal.objects.count()
    # Each item's answer carries its verdict: nothing is left to evaluate after the answer.
    assert created[0]["external_ref"] == "item-0" and created[0]["status"] == "pending_review"
    assert created[0]["verdict"]["outcome"] == "review"
    assert "50.0%" in " ".join(created[0]["verdict"]["reasons"])
    assert {item["status"] for item in created} <= {"approved", "pending_review", "blocked"}
    assert not Proposal.objects.filter(status="submitted").exists()
    # Each proposal recorded as the agent made it, then as the policy engine routed it.
    assert Proposal.history.filter(history_type="+", history_actor="optimizer").count() == 900
    assert Proposal.history.filter(history_type="~", history_actor="policy-engine").count() == 900


@pytest.mark.django_db
def test_a_batch_retried_under_the_same_key_replays_and_creates_nothing_more(optimizer):
    key = str(uuid.uuid4())
    first = optimizer.post(BATCH_URL, thousand_items(), format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = optimizer.post(BATCH_URL, thousand_items(), format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Proposal.objects.count() == 900


def post_batch(base_url: str, key: str, items: list[dict], api_key: str):
    request = urllib.request.Request(
        f"{base_url}{BATCH_URL}",
        data=json.dumps(items).encode(),
        headers={
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, json.loads(response.read())


@pytest.mark.worker
def test_a_batch_whose_server_dies_mid_way_leaves_nothing_half_written(
    celery_worker, web_server_with, demo_world
):
    """The web server is killed as soon as the batch's transaction holds its key; whatever
    moment that is, the batch is either wholly recorded or not at all, and its retry under the
    same key records it exactly once."""
    api_key = demo_world["agents"]["optimizer"]
    key, items = str(uuid.uuid4()), thousand_items()
    server = web_server_with()

    def send() -> None:
        with contextlib.suppress(OSError):  # the server died under it
            post_batch(server.url, key, items, api_key)

    sending = threading.Thread(target=send)
    sending.start()
    wait_until(a_request_holds_its_key, interval=0.01)
    server.kill()
    sending.join()

    assert Proposal.objects.count() in (0, 900)  # never a part of the batch
    retried_on = web_server_with()
    status, results = wait_until(lambda: _retry(retried_on.url, key, items, api_key))
    assert status == 200 and len(results) == 1000
    assert Proposal.objects.count() == 900
    ids = {result["proposal"]["id"] for result in results if result["status"] == 201}
    assert ids == set(Proposal.objects.values_list("pk", flat=True))
    unsettled = ("submitted", "approved", "executing")
    wait_until(lambda: not Proposal.objects.filter(status__in=unsettled).exists(), timeout=120)


def a_request_holds_its_key() -> bool:
    """Whether a request's transaction has taken an Idempotency-Key (PostgreSQL: its advisory
    lock is held) or, on SQLite, holds the database's write lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted)"
            )
            return cursor.fetchone()[0]
    probe = sqlite3.connect(settings.DATABASES["default"]["NAME"], timeout=0)
    try:
        probe.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:  # database is locked
        return True
    finally:
        probe.close()
    return False


def _retry(base_url: str, key: str, items: list[dict], api_key: str):
    """The retry, once the dead request's transaction has been undone (409 until the database
    has noticed that its connection is gone)."""
    try:
        return post_batch(base_url, key, items, api_key)
    except urllib.error.HTTPError as error:
        if error.code == 409:
            return None
        raise
