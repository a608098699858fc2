"""No figure of what waits for a person counts a proposal past its review window: the console's
dashboard and the messages to people (a digest's headline, a Slack digest's updated one)
counted it as waiting until the sweep came round, though no approval of it is taken. They
count only what waits within its window; no read expires it (the sweep does, every 10
seconds). An agent's scorecard counts the statuses recorded: it counts one as waiting until
the sweep expires it, and as expired after."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from approvals.services.expiry import proposals_expire_overdue
from notifications.models import Notification, NotificationStatus
from notifications.tasks import send_due_digests
from tests.conftest import reallocation, wait_until
from tests.factories import evaluated
from tests.test_notifications_digest import (
    by_digest,
    digests_due_now,
    due_in_a_slack_digest,
    outbox_settled,
    shown,
    submit,
    the_digest,
)
from tests.test_review_window import expired_as_the_sweep_expires, overdue


def window_closed(proposal_id: int) -> None:
    """Its review window closed a second ago, before the sweep came round."""
    Proposal.objects.filter(pk=proposal_id).update(
        review_expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_the_dashboard_counts_no_proposal_past_its_window_as_waiting(login):
    """ "Waiting for a person now: 2", and its link opened a queue of one."""
    late, waiting = overdue("170.00"), evaluated(reallocation("150.00"))
    Proposal.objects.filter(pk=late.pk).update(waiting_since=timezone.now() - timedelta(days=3))

    response = login("auditor").get(reverse("admin:index"))

    page = response.text
    assert re.search(r'id="queue-depth"[^>]*>1<', page), page.split("queue-depth")[1][:80]
    # The oldest waiting is the one that does, not the one that waited three days.
    assert response.context["figures"].oldest_waiting < timedelta(hours=1)
    assert Proposal.objects.get(pk=waiting.pk).status == ProposalStatus.PENDING_REVIEW
    assert Proposal.objects.get(pk=late.pk).status == ProposalStatus.PENDING_REVIEW  # looked at
    assert proposals_expire_overdue() == 1
    expired_as_the_sweep_expires(late)  # by the platform, not the auditor who looked


def test_an_agents_scorecard_counts_one_past_its_window_as_recorded_until_the_sweep(
    optimizer, login
):
    late, waiting = overdue("170.00"), evaluated(reallocation("150.00"))
    [card] = optimizer.get("/api/v1/scorecard/?days=30").json()["action_types"]
    assert (card["waiting"], card["expired"]) == (2, 0)  # as recorded: the read expired none

    assert proposals_expire_overdue() == 1

    [card] = optimizer.get("/api/v1/scorecard/?days=30").json()["action_types"]
    assert (card["waiting"], card["expired"]) == (1, 1)
    expired_as_the_sweep_expires(late)
    assert Proposal.objects.get(pk=waiting.pk).status == ProposalStatus.PENDING_REVIEW


def test_the_agents_scorecard_page_and_a_proposals_record_count_as_recorded_until_the_sweep(login):
    client = login("operator")
    late, waiting = overdue("170.00"), evaluated(reallocation("150.00"))

    agent_page = reverse("admin:approvals_agent_change", args=[late.agent_id]) + "?days=30"
    [card] = client.get(agent_page).context["scorecards"]
    assert (card.waiting, card.expired) == (2, 0)  # as recorded: the read expired none
    assert proposals_expire_overdue() == 1

    [card] = client.get(agent_page).context["scorecards"]
    assert (card.waiting, card.expired) == (1, 1)
    expired_as_the_sweep_expires(late)

    later = overdue("180.00")
    assert proposals_expire_overdue() == 1
    page = client.get(reverse("admin:approvals_proposal_change", args=[waiting.pk]))
    record = page.context["track_record"].counts
    assert (record.waiting, record.expired) == (1, 2)
    assert Proposal.objects.get(pk=later.pk).status == ProposalStatus.EXPIRED


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_digest_counts_only_the_proposals_that_wait_within_their_window(optimizer, mailbox):
    """The email said "2 proposals wait for a decision" and listed one no approval of is
    taken; it says 1, lists that one, and the other's message records why it did not go."""
    by_digest(minutes=1)
    waiting, late = submit(optimizer, ["150.00", "200.00"])
    window_closed(late["id"])
    digests_due_now()
    # Held, its page says it will not go, and why, before the digest drops it.
    [held] = Notification.objects.filter(proposal_id=late["id"], recipient__username="operator")
    assert re.search(
        r"; will not go: its review window closed at .* UTC and it no longer waits for a decision",
        held.status_said,
    ), held.status_said

    send_due_digests.delay()

    [digest] = wait_until(lambda: mailbox.to("operator@example.com"), timeout=15)
    assert digest["Subject"] == "[HITL] 1 proposal waits for a decision"
    text = digest.get_body(preferencelist=("plain",)).get_content()
    assert f"#{waiting['id']} " in text
    assert f"#{late['id']} " not in text
    [dropped] = Notification.objects.filter(proposal_id=late["id"], recipient__username="operator")
    assert dropped.status == NotificationStatus.NOT_SENT
    assert re.search(
        r"not sent: its review window closed at .* UTC and it no longer waits for a decision",
        dropped.log[-1]["result"],
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_slack_digest_updated_counts_no_proposal_past_its_window_as_waiting(optimizer, slack):
    """A digest of three: one's window closes, another is approved before the sweep came
    round. Its update said "2 of 3 proposals still wait", the one past its window listed
    as waiting."""
    approved, late, _ = due_in_a_slack_digest(optimizer, ["150.00", "200.00", "250.00"])
    send_due_digests.delay()
    where, message = wait_until(lambda: slack.messages and the_digest(slack), timeout=15)
    assert message["text"] == "3 proposals wait for a decision"
    outbox_settled()

    window_closed(late["id"])
    operator = get_user_model().objects.get(username="operator")
    proposal_approve(proposal_id=approved["id"], reviewer=operator)

    message = wait_until(
        lambda: (
            slack.messages[where]["text"] != "3 proposals wait for a decision"
            and slack.messages[where]
        ),
        timeout=15,
    )
    assert message["text"] == "1 of 3 proposals still waits for a decision"
    _, late_line, waiting_line = shown(message).split("\n• ")[1:]
    closed = f"{Proposal.objects.get(pk=late['id']).review_expires_at:%Y-%m-%d %H:%M:%S} UTC"
    assert f"No longer waits: Nobody decided it in time: its review window closed at {closed}." in (
        late_line
    )
    assert "Why it waits" not in late_line
    assert "Why it waits: " in waiting_line
    outbox_settled()
