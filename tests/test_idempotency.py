"""Idempotency-Key: a retried submission is answered, not repeated."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from approvals.models import IdempotencyRecord, Proposal
from tests.conftest import bid_adjustment, reallocation, wait_until

URL = "/api/v1/proposals/"


def test_same_key_and_body_replays_the_original_answer(optimizer):
    first = optimizer.post(URL, bid_adjustment(), format="json", HTTP_IDEMPOTENCY_KEY="retry-1")
    again = optimizer.post(URL, bid_adjustment(), format="json", HTTP_IDEMPOTENCY_KEY="retry-1")
    assert first.status_code == again.status_code == 201
    # The replay reads as the answer it repeats, byte for byte: its fields in the same order
    # (PostgreSQL's jsonb kept them in an order of its own).
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Proposal.objects.count() == 1
    # The replay is the original answer, headers too: where the proposal is.
    assert again.headers["Location"] == first.headers["Location"] == f"{URL}{first.json()['id']}/"


def test_same_key_with_another_body_is_a_422(optimizer):
    optimizer.post(URL, bid_adjustment("2.10"), format="json", HTTP_IDEMPOTENCY_KEY="retry-2")
    response = optimizer.post(
        URL, bid_adjustment("2.20"), format="json", HTTP_IDEMPOTENCY_KEY="retry-2"
    )
    assert response.status_code == 422
    assert "different request body" in response.json()["detail"]
    assert Proposal.objects.count() == 1


@pytest.mark.parametrize("written", ["2.1000000000000000001", "2.100", "21e-1"])
def test_same_key_with_the_amount_written_otherwise_is_a_422_not_a_replay(optimizer, written):
    """A JSON number was fingerprinted as the float it is read as: 2.1000000000000000001
    under the key of a proposal made with 2.1 replayed that proposal's 201, where another
    body under a key is a 422 (on its own, with a new key, that body is a 400)."""
    sent = json.dumps(bid_adjustment()).replace('"2.12"', "NEW_BID")
    first = optimizer.generic(
        "POST", URL, sent.replace("NEW_BID", "2.1"), content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="retry-written",
    )  # fmt: skip
    again = optimizer.generic(
        "POST", URL, sent.replace("NEW_BID", written), content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="retry-written",
    )  # fmt: skip
    same = optimizer.generic(
        "POST", URL, sent.replace("NEW_BID", "2.1"), content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="retry-written",
    )  # fmt: skip

    assert first.status_code == 201
    assert again.status_code == 422
    assert "different request body" in again.json()["detail"]
    assert same.status_code == 201
    assert same.headers["Idempotent-Replayed"] == "true"
    assert Proposal.objects.count() == 1


def test_same_key_with_a_malformed_body_is_a_422_and_a_new_key_a_400(optimizer):
    """A body is checked for form before its key is taken; a key used with another request
    still says so first, and a malformed body under a new key takes nothing."""
    optimizer.post(URL, bid_adjustment("2.10"), format="json", HTTP_IDEMPOTENCY_KEY="retry-3")
    malformed = {"action_type": "bid_adjustment", "account": "demo"}

    reused = optimizer.post(URL, malformed, format="json", HTTP_IDEMPOTENCY_KEY="retry-3")
    assert reused.status_code == 422
    assert "different request body" in reused.json()["detail"]

    fresh = optimizer.post(URL, malformed, format="json", HTTP_IDEMPOTENCY_KEY="retry-4")
    assert fresh.status_code == 400
    assert "payload" in fresh.json()
    assert not IdempotencyRecord.objects.filter(key="retry-4").exists()
    retried = optimizer.post(
        URL, bid_adjustment("2.20"), format="json", HTTP_IDEMPOTENCY_KEY="retry-4"
    )
    assert retried.status_code == 201
    assert Proposal.objects.count() == 2


@pytest.mark.parametrize("body", ["{bad", "null"], ids=["unparseable", "null"])
def test_same_key_with_a_body_that_is_no_proposal_at_all_is_a_422_and_a_new_key_a_400(
    optimizer, body
):
    """Even a body that is no JSON object (or no JSON): a key used with another request says
    so first; under a new key it is a 400 saying what is wrong, in the API's error shape (an
    object), and takes no key."""
    optimizer.post(URL, bid_adjustment("2.10"), format="json", HTTP_IDEMPOTENCY_KEY="used")

    def sent(key: str):
        return optimizer.post(URL, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)

    reused = sent("used")
    assert reused.status_code == 422, reused.content
    assert "different request body" in reused.json()["detail"]
    fresh = sent("fresh")
    assert fresh.status_code == 400
    assert isinstance(fresh.json(), dict), fresh.json()
    assert not IdempotencyRecord.objects.filter(key="fresh").exists()
    assert Proposal.objects.count() == 1


def test_a_key_used_on_proposals_is_a_422_on_the_dry_run_and_on_a_withdrawal(optimizer):
    """Neither keeps an answer under a key; a key used on another endpoint is still a 422
    there (a key is bound to its endpoint), and a fresh one changes nothing."""
    first = optimizer.post(
        URL, reallocation("280.00"), format="json", HTTP_IDEMPOTENCY_KEY="bound"
    ).json()
    dry_run = {"account": "demo", "action_type": "bid_adjustment",
               "payload": {"campaign": "brand-search", "new_bid": "2.12"}}  # fmt: skip
    withdraw = f"{URL}{first['id']}/withdraw/"

    assert (
        optimizer.post(
            "/api/v1/policies/evaluate/", dry_run, format="json", HTTP_IDEMPOTENCY_KEY="bound"
        ).status_code
        == 422
    )
    assert optimizer.post(withdraw, HTTP_IDEMPOTENCY_KEY="bound").status_code == 422
    assert Proposal.objects.get(pk=first["id"]).status == "pending_review"

    assert (
        optimizer.post(
            "/api/v1/policies/evaluate/", dry_run, format="json", HTTP_IDEMPOTENCY_KEY="fresh"
        ).status_code
        == 200
    )
    assert optimizer.post(
        "/api/v1/policies/evaluate/", dry_run, format="json", HTTP_IDEMPOTENCY_KEY="x" * 256
    ).json() == {"Idempotency-Key": ["Must be 1 to 255 printable ASCII characters."]}
    assert optimizer.post(withdraw, HTTP_IDEMPOTENCY_KEY="fresh").status_code == 200
    assert Proposal.objects.get(pk=first["id"]).status == "withdrawn"


def test_keys_are_scoped_to_the_agent(agent_client):
    optimizer, copywriter = agent_client("optimizer"), agent_client("copywriter")
    first = optimizer.post(URL, bid_adjustment(), format="json", HTTP_IDEMPOTENCY_KEY="shared")
    second = copywriter.post(URL, bid_adjustment(), format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]


def test_refused_request_releases_its_key_for_a_corrected_retry(optimizer):
    refused = optimizer.post(
        URL, reallocation("5000.00"), format="json", HTTP_IDEMPOTENCY_KEY="fix-me"
    )
    assert refused.status_code == 400
    corrected = optimizer.post(
        URL, reallocation("280.00"), format="json", HTTP_IDEMPOTENCY_KEY="fix-me"
    )
    assert corrected.status_code == 201
    assert Proposal.objects.count() == 1


def test_batch_is_idempotent_as_a_whole(optimizer):
    batch = [bid_adjustment("2.10"), bid_adjustment("1.60", campaign="generic-search")]
    first = optimizer.post(f"{URL}batch/", batch, format="json", HTTP_IDEMPOTENCY_KEY="b-1")
    again = optimizer.post(f"{URL}batch/", batch, format="json", HTTP_IDEMPOTENCY_KEY="b-1")
    assert again.json() == first.json()
    assert Proposal.objects.count() == 2


def test_key_longer_than_255_characters_is_refused(optimizer):
    response = optimizer.post(URL, bid_adjustment(), format="json", HTTP_IDEMPOTENCY_KEY="k" * 256)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()


def test_a_key_past_its_retention_is_taken_by_a_new_request(optimizer, settings):
    first = optimizer.post(URL, bid_adjustment("2.10"), format="json", HTTP_IDEMPOTENCY_KEY="old")
    IdempotencyRecord.objects.filter(key="old").update(
        created_at=IdempotencyRecord.objects.get(key="old").created_at
        - settings.IDEMPOTENCY_KEY_TTL
        - timedelta(minutes=1)
    )
    second = optimizer.post(URL, bid_adjustment("2.20"), format="json", HTTP_IDEMPOTENCY_KEY="old")
    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    again = optimizer.post(URL, bid_adjustment("2.20"), format="json", HTTP_IDEMPOTENCY_KEY="old")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == second.json()


def settled() -> bool:
    return not Proposal.objects.filter(status__in=("submitted", "approved", "executing")).exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="on SQLite a retry waits, then replays"
)
def test_retry_while_the_first_request_is_in_flight_is_a_409_and_changes_nothing(demo_world):
    """Two real requests under one key: the first is held mid-way through its work (another
    transaction holds the proposals table, as a slow write would); the retry is told 409 at
    once, and neither the key nor any proposal is recorded until the first one answers."""
    api_key, body = demo_world["agents"]["optimizer"], bid_adjustment()
    table_held, release = threading.Event(), threading.Event()
    first: dict = {}

    def hold_the_proposals_table() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {Proposal._meta.db_table} IN EXCLUSIVE MODE")
                table_held.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    def send(name: str) -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
            first[name] = client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="slow")
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_proposals_table)
    holder.start()
    table_held.wait(timeout=30)
    sender = threading.Thread(target=send, args=("response",))
    sender.start()
    try:
        wait_until(first_request_waits_on_a_lock)
        retry = APIClient()
        retry.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
        response = retry.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="slow")
        assert response.status_code == 409
        assert "still in progress" in response.json()["detail"]
        assert not IdempotencyRecord.objects.exists()
        assert not Proposal.objects.exists()
    finally:
        release.set()
        holder.join()
        sender.join()

    assert first["response"].status_code == 201
    replay = retry.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="slow")
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first["response"].json()
    assert Proposal.objects.count() == 1
    wait_until(settled)


def first_request_waits_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock')"
        )
        return cursor.fetchone()[0]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_submission_under_a_key_is_one_transaction(optimizer, monkeypatch):
    """The key, the proposal and the stored answer are committed together, once; nothing is
    written outside that transaction."""
    commits: list[None] = []
    written_outside: list[str] = []
    commit = connection.commit

    def counted_commit() -> None:
        commits.append(None)
        commit()

    def observe(execute, sql, params, many, context):
        writes = sql.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}
        if writes and not connection.in_atomic_block:
            written_outside.append(sql)
        return execute(sql, params, many, context)

    monkeypatch.setattr(connection, "commit", counted_commit)
    with connection.execute_wrapper(observe):
        response = optimizer.post(URL, bid_adjustment(), format="json", HTTP_IDEMPOTENCY_KEY="one")
    monkeypatch.undo()

    assert response.status_code == 201
    assert len(commits) == 1
    assert written_outside == []
    assert json.loads(IdempotencyRecord.objects.get(key="one").response_body) == response.json()
    wait_until(settled)
