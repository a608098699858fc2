"""Following the moves approved ahead reads the proposals whose Slack messages it may change
once for all of them: what it needs of each (what it draws on, the snapshot a budget change
was made against, its agent) is read with them, not fetched again a proposal at a time."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from notifications.models import Notification
from notifications.services import slack_messages_follow_moves_ahead
from tests.factories import evaluated
from tests.test_reallocation_no_longer_fits import retarget_move


def waiting_told_on_slack(count: int) -> list[Proposal]:
    operator = get_user_model().objects.get(username="operator")
    waiting = []
    for number in range(count):
        proposal = evaluated(retarget_move("50.00"))
        assert proposal.status == ProposalStatus.PENDING_REVIEW
        Notification.objects.create(
            proposal=proposal,
            review_round=proposal.review_round,
            recipient=operator,
            channel="slack",
            kind="waiting",
            status="sent",
            sent_at=timezone.now(),
            slack_channel="D1",
            slack_ts=f"{proposal.pk}.{number}",
        )
        waiting.append(proposal)
    return waiting


def statements_following(mover: Proposal, status: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        slack_messages_follow_moves_ahead(moved=[[mover.pk, status]])
    return len(queries)


@pytest.mark.django_db
def test_the_messages_waiting_on_a_move_are_read_at_once_however_many(demo_world):
    mover = evaluated(retarget_move("50.00"))
    Proposal.objects.filter(pk=mover.pk).update(status="failed", approved_at=timezone.now())
    waiting_told_on_slack(2)
    with_two = statements_following(mover, "failed")
    waiting_told_on_slack(4)
    assert statements_following(mover, "failed") == with_two
