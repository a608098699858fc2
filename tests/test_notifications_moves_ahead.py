"""A Slack message follows the moves approved ahead of its proposal: display-retarget spends
300.00 a day, and two moves of 200.00 out of it wait, each told to the operator on Slack with
Approve. Once one is approved (not yet run), the other can no longer be approved (the console
refuses it, "… once #1, approved before it, has run."), and its message, which kept offering
Approve, now says so and offers none; once the one ahead fails, Approve comes back."""

from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from ledger.models import Campaign
from notifications.models import Notification
from tests.conftest import bid_adjustment, first_attempt_answered, reallocation, wait_until
from tests.test_notifications_slack import (
    OPERATOR,
    approve_value,
    buttons,
    context_texts,
    post,
    pressing,
    told,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def retarget_move(amount: str = "200.00") -> dict:
    return reallocation(amount) | {
        "payload": {
            "from_campaign": "display-retarget",
            "to_campaign": "generic-search",
            "amount": amount,
        }
    }


def two_moves_told_on_slack(optimizer, slack) -> tuple[int, int, dict]:
    """Both moves submitted and told to the operator; their ids, and where each message is
    (its channel and ts), by proposal id."""
    ids = []
    for _ in range(2):
        answer = optimizer.post("/api/v1/proposals/", retarget_move(), format="json")
        assert answer.status_code == 201, answer.content
        assert answer.json()["status"] == "pending_review"
        ids.append(answer.json()["id"])
    wait_until(
        lambda: (
            Notification.objects.filter(proposal_id__in=ids, kind="waiting", status="sent").count()
            == 2
        ),
        timeout=15,
    )
    where = {
        n.proposal_id: {"channel": n.slack_channel, "ts": n.slack_ts}
        for n in Notification.objects.filter(proposal_id__in=ids, kind="waiting")
    }
    for proposal_id in ids:
        assert buttons(shown(slack, where[proposal_id])) == ["approve", "reject", "claim"]
    first, second = ids
    return first, second, where


def shown(slack, where: dict) -> list:
    """The message's blocks as Slack shows it now, every update applied."""
    return slack.messages[(where["channel"], where["ts"])]["blocks"]


def refused(first: int, second: int) -> str:
    """What the console says of approving the second once the first is approved."""
    return (
        f"Proposal #{second} can no longer be applied as proposed: amount: Exceeds "
        f"display-retarget's daily budget of 100.00 once #{first}, approved before it, has run. "
        "Approving it would not carry it out: its execution would refuse it. It can be edited, "
        "rejected or withdrawn."
    )


def approved_ahead(operators, first: int) -> None:
    """A colleague approves the first in the console; its webhook asks to come back in ten
    minutes, so it stays executing, not yet run."""
    _, colleague = operators
    proposal_approve(proposal_id=first, reviewer=colleague)
    first_attempt_answered(first)
    assert Proposal.objects.get(pk=first).status == ProposalStatus.EXECUTING


def test_a_message_sent_before_another_move_was_approved_loses_approve_and_says_why(
    optimizer, on_slack, channel, operators
):
    channel(503, retry_after="600")
    first, second, where = two_moves_told_on_slack(optimizer, on_slack)
    old_approve = approve_value(shown(on_slack, where[second]))

    approved_ahead(operators, first)

    blocks = wait_until(
        lambda: (
            "approve" not in buttons(shown(on_slack, where[second]))
            and shown(on_slack, where[second])
        ),
        timeout=15,
    )
    assert buttons(blocks) == ["reject", "claim"]
    assert refused(first, second) in context_texts(blocks)
    # The update's record says what it was for, where the proposal's page lists who was told.
    assert Notification.objects.filter(
        proposal_id=second,
        kind="update",
        about=f"#{first} approved, drawing on display-retarget's daily budget too",
    ).exists()
    # A press of the Approve it showed before is refused, in the same words, and decides
    # nothing.
    post(*pressing(OPERATOR, "approve", old_approve, where[second]))
    assert refused(first, second) in told(on_slack, OPERATOR)
    assert Proposal.objects.get(pk=second).status == ProposalStatus.PENDING_REVIEW
    assert Campaign.objects.get(external_id="display-retarget").daily_budget == Decimal("300.00")


def test_once_the_move_approved_ahead_fails_approve_comes_back(
    optimizer, on_slack, channel, operators
):
    # Its first attempt answered "come back in ten minutes", its second refused for good.
    channel(503, 400, retry_after="600")
    first, second, where = two_moves_told_on_slack(optimizer, on_slack)
    approved_ahead(operators, first)
    wait_until(lambda: "approve" not in buttons(shown(on_slack, where[second])), timeout=15)

    # Its next attempt, brought forward: it failed, and took nothing. (The worker's sweep may
    # find the lease run out first and make the attempt itself: either way, it fails.)
    ExecutionRound.objects.filter(proposal_id=first).update(lease_until=timezone.now())
    proposal_execute(proposal_id=first)
    wait_until(lambda: Proposal.objects.get(pk=first).status == ProposalStatus.FAILED, timeout=15)

    blocks = wait_until(
        lambda: (
            "approve" in buttons(shown(on_slack, where[second])) and shown(on_slack, where[second])
        ),
        timeout=15,
    )
    assert buttons(blocks) == ["approve", "reject", "claim"]
    assert "can no longer be applied" not in context_texts(blocks)
    assert Notification.objects.filter(
        proposal_id=second,
        kind="update",
        about=f"#{first} failed, drawing on display-retarget's daily budget too",
    ).exists()
    # And it is approved, from the message, as the console would approve it.
    post(*pressing(OPERATOR, "approve", approve_value(blocks), where[second]))
    assert Proposal.objects.get(pk=second).status != ProposalStatus.PENDING_REVIEW


def test_only_the_messages_whose_approval_the_move_changes_are_updated(
    optimizer, on_slack, channel, operators
):
    """50.00, 200.00 and 260.00 out of display-retarget's 300.00: approving the first leaves
    250.00, enough for the second, whose message is left as it is, and not for the third,
    whose message loses Approve."""
    channel(503, retry_after="600")
    ids = []
    for amount in ("50.00", "200.00", "260.00"):
        answer = optimizer.post("/api/v1/proposals/", retarget_move(amount), format="json")
        ids.append(answer.json()["id"])
    first, fits, overdrawn = ids
    wait_until(
        lambda: Notification.objects.filter(proposal_id__in=ids, status="sent").count() == 3,
        timeout=15,
    )
    where = {
        n.proposal_id: {"channel": n.slack_channel, "ts": n.slack_ts}
        for n in Notification.objects.filter(proposal_id__in=ids, kind="waiting")
    }

    approved_ahead(operators, first)

    blocks = wait_until(
        lambda: (
            "approve" not in buttons(shown(on_slack, where[overdrawn]))
            and shown(on_slack, where[overdrawn])
        ),
        timeout=15,
    )
    assert (
        "amount: Exceeds display-retarget's daily budget of 250.00 once "
        f"#{first}, approved before it, has run."
    ) in context_texts(blocks)
    assert buttons(shown(on_slack, where[fits])) == ["approve", "reject", "claim"]
    assert not Notification.objects.filter(proposal_id=fits, kind="update").exists()


def test_a_budget_cut_approved_ahead_takes_approve_from_a_move_it_leaves_short(
    optimizer, on_slack, channel, operators
):
    """display-retarget at 300.00; a move of 200.00 out of it waits, told on Slack with
    Approve; a colleague approves a cut of its budget to 50.00, which stays executing. The
    console refuses the move now ("… of 50.00 once #N, approved before it, has run."): its
    message says so and offers no Approve, the update saying it is for the cut."""
    channel(503, retry_after="600")
    answer = optimizer.post("/api/v1/proposals/", retarget_move("200.00"), format="json")
    move = answer.json()["id"]
    cut = optimizer.post(
        "/api/v1/proposals/",
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "display-retarget", "new_daily_budget": "50.00"}},
        format="json",
    ).json()
    assert cut["status"] == "pending_review"
    wait_until(
        lambda: (
            Notification.objects.filter(proposal_id=move, kind="waiting", status="sent")
            .exclude(slack_ts="")
            .exists()
        ),
        timeout=15,
    )
    notification = Notification.objects.get(proposal_id=move, kind="waiting")
    where = {"channel": notification.slack_channel, "ts": notification.slack_ts}
    assert buttons(shown(on_slack, where)) == ["approve", "reject", "claim"]

    approved_ahead(operators, cut["id"])

    blocks = wait_until(
        lambda: "approve" not in buttons(shown(on_slack, where)) and shown(on_slack, where),
        timeout=15,
    )
    assert buttons(blocks) == ["reject", "claim"]
    assert (
        "amount: Exceeds display-retarget's daily budget of 50.00 once "
        f"#{cut['id']}, approved before it, has run."
    ) in context_texts(blocks)
    assert Notification.objects.filter(
        proposal_id=move,
        kind="update",
        about=f"#{cut['id']} approved, setting display-retarget's daily budget",
    ).exists()


def test_a_move_approved_ahead_while_a_message_is_on_its_way_takes_approve_off_it(
    optimizer, on_slack, channel, operators
):
    """Two moves of 200.00 out of display-retarget's 300.00 wait, told on Slack. A third is
    submitted; its message to the operator is drawn with Approve and, while it is on its way
    to Slack, a colleague approves the first, and the approval's follow-up runs (the worker's
    task): it takes Approve off the second's message, sent, and finds the third's not yet
    recorded sent. Its sender, recording it sent, reads the ledger again and redraws it."""
    channel(503, retry_after="600")
    first, second, _ = two_moves_told_on_slack(optimizer, on_slack)
    drawn, followed = [], []

    def meanwhile(args: dict) -> None:
        drawn.append(args["blocks"])
        try:
            proposal_approve(proposal_id=first, reviewer=operators[1])
            try:
                followed.append(
                    wait_until(
                        lambda: Notification.objects.filter(
                            proposal_id=second, kind="update", about__startswith=f"#{first} "
                        ).exists(),
                        timeout=2,
                    )
                )
            except AssertionError:
                followed.append(False)
        finally:
            connection.close()  # this thread's, the fake Slack's

    on_slack.while_next_post = meanwhile
    answer = optimizer.post("/api/v1/proposals/", retarget_move(), format="json")
    assert answer.json()["status"] == "pending_review"
    third = answer.json()["id"]
    told_third = Notification.objects.filter(proposal_id=third, kind="waiting", channel="slack")
    wait_until(lambda: told_third.filter(status="sent").exists(), timeout=15)

    [posted] = drawn
    assert buttons(posted) == ["approve", "reject", "claim"]
    assert followed == [True]  # the follow-up ran while the message was on its way
    message = told_third.get()
    where = {"channel": message.slack_channel, "ts": message.slack_ts}
    blocks = wait_until(
        lambda: "approve" not in buttons(shown(on_slack, where)) and shown(on_slack, where),
        timeout=15,
    )
    assert buttons(blocks) == ["reject", "claim"]
    assert refused(first, third) in context_texts(blocks)
    assert list(
        Notification.objects.filter(proposal_id=third, kind="update").values_list(
            "about", flat=True
        )
    ) == ["its approval refused by the ledger as it went"]
