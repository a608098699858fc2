"""Races that must not double anything: many submissions under one idempotency key, and
executions of one approved proposal at once. Real threads, real connections, committed data."""

import threading
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from rest_framework.test import APIClient

from approvals.models import Execution, Proposal
from approvals.services.decisions import proposal_approve
from executors.runner import proposal_execute
from ledger.models import Campaign
from tests.conftest import bid_adjustment, reallocation, wait_until
from tests.factories import evaluated

pytestmark = [
    pytest.mark.worker,
    pytest.mark.usefixtures("celery_worker"),
    pytest.mark.django_db(transaction=True),
]


def all_at_once(count: int, work) -> list:
    """Run ``work(index)`` in ``count`` threads released together; return each result or the
    exception it raised."""
    start = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            start.wait()
            results[index] = work(index)
        except Exception as error:
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_dozens_of_submissions_under_one_idempotency_key_make_one_proposal(demo_world):
    key = demo_world["agents"]["optimizer"]
    body = bid_adjustment("2.12")

    def submit(_):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client.post("/api/v1/proposals/", body, format="json", HTTP_IDEMPOTENCY_KEY="race")

    responses = all_at_once(24, submit)

    statuses = sorted({response.status_code for response in responses})
    assert set(statuses) <= {201, 409}, statuses  # created or replayed; or told to retry
    created = {response.json()["id"] for response in responses if response.status_code == 201}
    assert len(created) == 1
    assert Proposal.objects.count() == 1
    # The proposal evaluates and executes in the worker; wait, so the database is left quiet.
    wait_until(lambda: Proposal.objects.get().status == "executed")


def test_executions_of_one_approved_proposal_at_once_apply_it_once(demo_world, monkeypatch):
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation("280.00"))
    with monkeypatch.context() as patch:  # no execution task: only the racers below run it
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)

    outcomes = all_at_once(6, lambda _: proposal_execute(proposal_id=proposal.pk).status)

    assert all(outcome in ("executed", "approved") for outcome in outcomes), outcomes
    assert Proposal.objects.get(pk=proposal.pk).status == "executed"
    assert Execution.objects.filter(proposal=proposal).count() == 1
    budgets = dict(Campaign.objects.values_list("external_id", "daily_budget"))
    assert (budgets["brand-search"], budgets["generic-search"]) == (
        Decimal("720.00"),
        Decimal("780.00"),
    )
