"""A Slack message whose update does not land is kept true, or said to be stale. An update
Slack could not take for now (rate limited, out of reach) is tried again past the usual
attempts, its backoff growing to an hour, for a day: before, after six attempts (minutes) it
was given up, and the message went on offering Approve on a proposal rejected meanwhile
until the proposal moved again. One Slack refuses for good (the message deleted, the token
revoked) is given up at once, and the message's own record, where the console lists who was
told, says it could not be updated and why; a later update that lands says so in turn."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from approvals.models import Proposal
from approvals.services.decisions import proposal_reject
from notifications.messages import NO_LONGER_WAITS
from notifications.models import Notification, NotificationStatus
from notifications.services import proposal_claim, proposal_release
from tests.conftest import wait_until
from tests.test_notifications_slack import buttons, context_texts, headline, updates_of
from tests.test_notifications_slack_follows_access import waiting_and_recorded

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

MAX_ATTEMPTS = 6  # the worker's HITL_NOTIFICATION_MAX_ATTEMPTS (the default)


def operator():
    return get_user_model().objects.get(username="operator")


def rejected(proposal: dict) -> None:
    proposal_reject(
        proposal_id=proposal["id"], reviewer=operator(), reason_code="too_aggressive", note="No."
    )


def the_update(proposal: dict) -> Notification:
    return wait_until(
        lambda: Notification.objects.filter(kind="update", proposal_id=proposal["id"]).first()
    )


def the_message(proposal: dict) -> Notification:
    return Notification.objects.get(
        kind="waiting", channel="slack", proposal_id=proposal["id"], updates__isnull=True
    )


def proposal_page(proposal: dict) -> str:
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("admin", "admin@example.com"))
    answer = admin.get(f"/admin/approvals/proposal/{proposal['id']}/change/")
    assert answer.status_code == 200
    return answer.content.decode()


def test_an_update_slack_could_not_take_for_a_while_lands_once_it_can(optimizer, on_slack):
    """Slack rate-limits chat.update while the operator's proposal is rejected: the update
    is refused six times over (the usual attempts). Slack then takes calls again: the
    message says it was rejected, its buttons gone, and its record says it went."""
    proposal, where = waiting_and_recorded(optimizer, on_slack)
    on_slack.rate_limited["chat.update"] = 0

    rejected(proposal)

    update = the_update(proposal)
    wait_until(lambda: len(Notification.objects.get(pk=update.pk).log) >= MAX_ATTEMPTS, timeout=30)
    on_slack.rate_limited.clear()

    [landed, *_] = wait_until(lambda: updates_of(on_slack, where), timeout=40)
    assert buttons(landed["blocks"]) == []
    assert headline(landed["blocks"]) == NO_LONGER_WAITS
    assert "operator rejected it (too aggressive) at" in context_texts(landed["blocks"])
    wait_until(lambda: Notification.objects.get(pk=update.pk).status == NotificationStatus.SENT)
    update.refresh_from_db()
    assert update.attempts > MAX_ATTEMPTS
    assert "ratelimited" in update.log[0]["result"]
    assert the_message(proposal).status_said == "Sent"


@pytest.mark.parametrize(
    "how, said",
    [("deleted", "message_not_found"), ("token revoked", "invalid_auth")],
)
def test_an_update_slack_refuses_for_good_is_said_on_the_messages_record(
    optimizer, on_slack, how, said
):
    """The operator's message is deleted on Slack (or the app's token revoked) and the
    proposal is taken on: the update is refused for good. The message's record says, in the
    console, that it could not be updated and why; its update's record that it was given
    up. Before, the message's record said "Sent" and nothing more."""
    proposal, where = waiting_and_recorded(optimizer, on_slack)
    if how == "deleted":
        del on_slack.messages[(where["channel"], where["ts"])]
    else:
        token, on_slack.token = on_slack.token, "xoxb-revoked"

    proposal_claim(proposal_id=proposal["id"], user=operator())

    update = the_update(proposal)
    wait_until(lambda: Notification.objects.get(pk=update.pk).status == "failed", timeout=20)
    page = proposal_page(proposal)
    assert "Sent, but its message could not be updated" in page
    assert f"Its message could not be updated: Slack refused it: {said}" in page
    message = the_message(proposal)
    assert message.status_said == "Sent, but its message could not be updated"
    assert message.attempts_said[-1].endswith(
        f"Its message could not be updated: Slack refused it: {said}"
    )
    update.refresh_from_db()
    assert update.attempts == 1  # not tried again: Slack would refuse it again
    reasons = list(update.history.values_list("history_change_reason", flat=True))
    assert any(
        r.startswith("Could not update operator's Slack message, gave up: Slack refused it: ")
        and said in r
        for r in reasons
    ), reasons
    assert Proposal.objects.get(pk=proposal["id"]).status == "pending_review"

    if how == "token revoked":  # a new token: the next update lands, and says so
        on_slack.token = token
        proposal_release(proposal_id=proposal["id"], user=operator())
        wait_until(lambda: updates_of(on_slack, where), timeout=20)
        message = wait_until(lambda: not (m := the_message(proposal)).not_updated and m)
        assert message.status_said == "Sent"
        assert message.attempts_said[-1].endswith(
            "Its message was updated since: it says what is so again"
        )
