"""Operators are told by email when something waits for them: the reference reallocation
reaches operator@example.com within seconds, with its summary, why it waits and a link to its
page; a message about a proposal that no longer waits is not sent."""

import pytest

from notifications.models import Notification, NotificationStatus
from tests.conftest import reallocation, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def test_the_reference_reallocation_reaches_the_operator_by_email(optimizer, mailbox):
    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    assert answer.status_code == 201, answer.content
    proposal = answer.json()
    assert proposal["status"] == "pending_review"

    [message] = wait_until(lambda: mailbox.to("operator@example.com"), timeout=15)

    assert f"#{proposal['id']}" in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert proposal["summary"] in text
    assert "Why it waits" in text
    assert f"/admin/approvals/proposal/{proposal['id']}/change/" in text
    assert f"/admin/approvals/proposal/{proposal['id']}/change/" in html
    # Only the operators are on the demo's route: nobody else hears of it.
    assert not mailbox.to("auditor@example.com")
    assert not mailbox.to("policy-owner@example.com")
    wait_until(lambda: Notification.objects.filter(status=NotificationStatus.SENT).count() == 1)
