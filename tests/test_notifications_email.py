"""Operators are told by email when something waits for them: the reference reallocation
reaches operator@example.com within seconds, with its summary, why it waits and a link to its
page, at the address the console answers at; a message about a proposal that no longer waits
is not sent."""

import pytest
from django.utils import timezone

from notifications.messages import proposal_message
from notifications.models import Notification, NotificationKind, NotificationStatus
from tests.conftest import reallocation, wait_until
from tests.factories import evaluated


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
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


@pytest.mark.django_db
def test_the_link_goes_where_the_console_answers(demo_world, settings):
    """Started with ``PORT=8111 bin/start`` and no HITL_CONSOLE_URL, the console answers (and
    seed_demo prints it) at 127.0.0.1:8111: the link in a message goes there, not to :8000.
    HITL_CONSOLE_URL, where set, is the console as its users reach it."""
    proposal = evaluated(reallocation())
    settings.WEB_BIND, settings.WEB_PORT = "127.0.0.1", "8111"
    settings.CONSOLE_URL = ""

    message = proposal_message(proposal, kind=NotificationKind.WAITING, now=timezone.now())
    assert message.url == f"http://127.0.0.1:8111/admin/approvals/proposal/{proposal.pk}/change/"

    settings.CONSOLE_URL = "https://hitl.example.com"
    message = proposal_message(proposal, kind=NotificationKind.WAITING, now=timezone.now())
    assert message.url == f"https://hitl.example.com/admin/approvals/proposal/{proposal.pk}/change/"
