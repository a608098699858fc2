"""A Slack message already posted is redrawn when what it says stops being so elsewhere, not
only when its proposal moves. A kill switch released lowered the risk it had raised (92 →
19) on the proposal's page and in the queue, while the operator's Slack message kept "Risk
92" and "The kill switch on everything is engaged". A message telling of a failed execution
kept inviting a retry, "retry it on its page", after its agent was stopped (a retry refused
now), and said nothing of a kill switch engaged over it since (a retry runs past it), which
its page says beside Retry. Each is now redrawn once by the worker after the change commits,
through the outbox, as it would be sent now."""

import pytest
from django.contrib.auth import get_user_model

from approvals.models import Agent, Proposal
from notifications.models import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
    ReachedBy,
)
from policies.models import KillSwitch
from tests.conftest import bid_adjustment, wait_until
from tests.slack_fake import shown_text
from tests.test_notifications_failures import REFUSAL, auto_approved_bid, failed
from tests.test_notifications_slack import OPERATOR, buttons, facts, why_it_waits

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

OUTAGE = "Tracking outage."
RETRY_PAST = (
    "The kill switch on everything is engaged: Incident 42. Retrying runs it anyway: "
    "a person's retry is their approval, which lets it past the switch."
)


def posted(slack) -> tuple[str, str]:
    """Where the operator's message is, once the platform has recorded it sent: Slack has it
    a moment before its record says so, and a change in that moment finds no message to
    redraw."""
    wait_until(lambda: slack.sent("chat.postMessage", channel=OPERATOR), timeout=15)
    wait_until(
        lambda: (
            Notification.objects.filter(
                channel=NotificationChannel.SLACK, status=NotificationStatus.SENT
            )
            .exclude(slack_ts="")
            .exists()
        )
    )
    return wait_until(lambda: next(iter(slack.messages), None))


def shown(slack, where) -> str:
    """The message as Slack shows it now (every update applied), on one line."""
    return " ".join(shown_text(slack.messages[where]["blocks"]).split())


def updates_for(proposal_id: int, about: str) -> int:
    return Notification.objects.filter(
        proposal_id=proposal_id, kind=NotificationKind.UPDATE, about=about
    ).count()


def test_a_kill_switch_released_shows_on_slack_the_risk_it_no_longer_raises(optimizer, on_slack):
    switch = KillSwitch.objects.create(scope="global", reason=OUTAGE)
    answer = optimizer.post("/api/v1/proposals/", bid_adjustment("2.08"), format="json")
    assert answer.status_code == 201, answer.content
    proposal = answer.json()
    assert (proposal["status"], proposal["risk"]) == ("pending_review", 92)
    where = posted(on_slack)
    blocks = on_slack.messages[where]["blocks"]
    assert "Risk 92" in facts(blocks)
    assert "The kill switch on everything is engaged: Tracking outage." in why_it_waits(blocks)

    switch.engaged = False
    switch.save()

    assert Proposal.objects.get(pk=proposal["id"]).risk == 19  # its page and the queue
    blocks = wait_until(
        lambda: (
            "Risk 19" in facts(on_slack.messages[where]["blocks"])
            and on_slack.messages[where]["blocks"]
        )
    )
    assert "Risk 92" not in shown(on_slack, where)
    assert "is engaged" not in why_it_waits(blocks)
    assert "released" in why_it_waits(blocks)
    # It still waits for the operator's decision: the buttons stay.
    assert buttons(blocks) == ["approve", "reject", "claim"]
    # One update of the one message, for the release.
    assert updates_for(proposal["id"], "the kill switch on everything released") == 1


def test_a_failure_told_on_slack_says_a_kill_switch_engaged_since_and_its_release(
    optimizer, slack, channel
):
    proposal, where = failure_told_on_slack(optimizer, slack, channel)
    assert "retry it on" in shown(slack, where)
    assert "kill switch" not in shown(slack, where)

    switch = KillSwitch.objects.create(scope="global", reason="Incident 42.")

    said = wait_until(lambda: RETRY_PAST in shown(slack, where) and shown(slack, where))
    assert f"{RETRY_PAST} It waits for a person: retry it on" in said
    assert updates_for(proposal["id"], "the kill switch on everything engaged") == 1

    switch.engaged = False
    switch.save()

    said = wait_until(lambda: RETRY_PAST not in shown(slack, where) and shown(slack, where))
    assert "kill switch" not in said
    assert "It waits for a person: retry it on" in said
    assert updates_for(proposal["id"], "the kill switch on everything released") == 1
    assert len(slack.sent("chat.postMessage", channel=OPERATOR)) == 1  # updated, not re-told


def test_a_kill_switch_moved_off_a_failure_says_on_its_history_that_it_moved(
    optimizer, slack, channel
):
    """Moved off what it covered while engaged, the switch's update of a message was recorded
    as "the kill switch on channel Meta engaged": of a switch that was engaged already, named
    by where it went, not the scope the message is on. It says it moved, from where to
    where."""
    proposal, where = failure_told_on_slack(optimizer, slack, channel)
    switch = KillSwitch.objects.create(scope="global", reason="Incident 42.")
    wait_until(lambda: RETRY_PAST in shown(slack, where))

    switch.scope, switch.channel = "channel", "meta"
    switch.save()

    said = wait_until(lambda: RETRY_PAST not in shown(slack, where) and shown(slack, where))
    assert "kill switch" not in said
    assert updates_for(proposal["id"], "the kill switch on everything moved to channel Meta") == 1
    assert updates_for(proposal["id"], "the kill switch on channel Meta engaged") == 0


def test_a_failure_told_on_slack_stops_inviting_a_retry_once_its_agent_is_stopped(
    optimizer, slack, channel
):
    proposal, where = failure_told_on_slack(optimizer, slack, channel)
    assert "It waits for a person: retry it on" in shown(slack, where)

    agent = Agent.objects.get(name="optimizer")
    agent.is_active = False
    agent.save()

    said = wait_until(lambda: "retry it on" not in shown(slack, where) and shown(slack, where))
    assert (
        "Proposal #{id} cannot be let run: agent optimizer has been deactivated since it "
        "proposed it. A retry is refused while that is so: it stays failed. Read it on <"
    ).format(id=proposal["id"]) in said
    assert updates_for(proposal["id"], "agent optimizer deactivated") == 1

    agent.is_active = True
    agent.save()

    said = wait_until(lambda: "retry it on" in shown(slack, where) and shown(slack, where))
    assert "refused" not in said
    assert updates_for(proposal["id"], "agent optimizer activated again") == 1


def failure_told_on_slack(optimizer, slack, channel):
    """An auto-approved bid of optimizer's the channel refused (a 400), told to the operator
    on Slack: the proposal as the API answered it, and where its message is."""
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.create(user=operator, slack=True, email=False)
    channel(400, says=REFUSAL)
    proposal = auto_approved_bid(optimizer)
    failed(proposal["id"])
    return proposal, posted(slack)
