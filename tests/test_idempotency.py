"""Idempotency-Key: a retried submission is answered, not repeated."""

from datetime import timedelta

import pytest

from approvals.models import Agent, Proposal
from approvals.services.idempotency import idempotency_claim, request_fingerprint
from hitlproject.errors import Conflict
from tests.conftest import bid_adjustment, reallocation

URL = "/api/v1/proposals/"


def test_same_key_and_body_replays_the_original_answer(optimizer):
    first = optimizer.post(URL, bid_adjustment(), format="json", HTTP_IDEMPOTENCY_KEY="retry-1")
    again = optimizer.post(URL, bid_adjustment(), format="json", HTTP_IDEMPOTENCY_KEY="retry-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Proposal.objects.count() == 1


def test_same_key_with_another_body_is_a_422(optimizer):
    optimizer.post(URL, bid_adjustment("2.10"), format="json", HTTP_IDEMPOTENCY_KEY="retry-2")
    response = optimizer.post(
        URL, bid_adjustment("2.20"), format="json", HTTP_IDEMPOTENCY_KEY="retry-2"
    )
    assert response.status_code == 422
    assert "different request body" in response.json()["detail"]
    assert Proposal.objects.count() == 1


def test_retry_while_the_first_request_is_in_flight_is_a_409(optimizer):
    agent = Agent.objects.get(name="optimizer")
    body = bid_adjustment()
    idempotency_claim(agent=agent, key="slow-1", fingerprint=request_fingerprint(URL, body))
    response = optimizer.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="slow-1")
    assert response.status_code == 409
    assert "still in progress" in response.json()["detail"]
    assert Proposal.objects.count() == 0


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


def test_a_request_that_outlived_its_lease_is_undone_not_doubled(optimizer, settings):
    from django.db import transaction

    from approvals.services.idempotency import idempotency_complete
    from approvals.services.proposals import Submission, proposal_submit

    agent = Agent.objects.get(name="optimizer")
    body = bid_adjustment()
    settings.IDEMPOTENCY_LEASE = timedelta(0)  # so that it has run out by the time of the retry
    slow = idempotency_claim(agent=agent, key="slow-2", fingerprint=request_fingerprint(URL, body))
    # The first request is still working when the retry comes and takes the key over.
    retry = optimizer.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="slow-2")
    assert retry.status_code == 201

    with pytest.raises(Conflict), transaction.atomic():
        proposal_submit(agent=agent, submission=Submission(**body))
        idempotency_complete(record=slow, status=201, body={"id": -1})

    assert Proposal.objects.count() == 1
    replay = optimizer.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="slow-2")
    assert replay.json()["id"] == retry.json()["id"]
