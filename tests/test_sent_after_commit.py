"""What is sent once a transaction commits (tasks to the broker, a retry scheduled, wake-ups)
never turns the committed work into an error: a broker that refuses it then is logged, and the
stall sweep sends the task again (hitlproject.queueing.after_commit).

Django 5.2 logs a failed robust ``on_commit`` callback by its ``__qualname__``, which a
``functools.partial`` lacks (Django ticket #36487): the logging itself raised AttributeError,
out of the commit, and an agent whose proposal was recorded was answered 500."""

import logging

import pytest
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerError
from rest_framework.test import APIClient

from approvals.models import IdempotencyRecord, Proposal
from hitlproject.celery import app as celery_app
from hitlproject.queueing import after_commit
from tests.conftest import bid_adjustment

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = "Error 111 connecting to 127.0.0.1:6379. Connection refused."


def broker_refuses(*args, **kwargs):
    raise BrokerError(REFUSED)


def test_a_broker_that_refuses_the_execution_after_the_submission_committed_is_not_a_500(
    demo_world, monkeypatch, caplog
):
    """The proposal is approved and recorded, with the answer under its Idempotency-Key; then
    sending its execution fails. The agent gets its 201 (a retry would replay it), not a 500
    that says nothing of what was recorded."""
    monkeypatch.setattr(celery_app, "producer_or_acquire", broker_refuses)
    client = APIClient()
    client.raise_request_exception = False  # a server error answered, as a server answers it
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {demo_world['agents']['optimizer']}")

    with caplog.at_level(logging.ERROR, logger="django.db.backends.base"):
        response = client.post(
            "/api/v1/proposals/", bid_adjustment("2.12"), format="json", HTTP_IDEMPOTENCY_KEY="k1"
        )

    assert response.status_code == 201, response.content[:300]
    proposal = Proposal.objects.get()
    assert response.json()["id"] == proposal.pk
    assert proposal.status == "approved"  # executed once the stall sweep sends it again
    assert IdempotencyRecord.objects.get(key="k1").response_status == 201
    assert REFUSED in caplog.text
    assert "send_each" in caplog.text  # the log names what failed


def test_a_failing_callback_after_commit_is_logged_and_the_later_ones_still_run(caplog):
    ran = []

    def fails(what: str) -> None:
        raise RuntimeError(f"{what} failed")

    with caplog.at_level(logging.ERROR, logger="django.db.backends.base"), transaction.atomic():
        after_commit(fails, "sending")
        after_commit(ran.append, "the next one")

    assert ran == ["the next one"]
    assert "sending failed" in caplog.text
    assert "fails" in caplog.text
