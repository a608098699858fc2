"""A route may name people who may not decide some of what it tells of: the demo's operators'
route tells the operators of every proposal of demo, the platform's autonomy recommendations
(policy changes, which only a policy owner decides) among them. What reaches such a person
says plainly that it waits for someone else, and who ("operator may not decide on policy
change proposals: a policy owner decides it; you may read it."), by email, on Slack and in a
digest; they are not reminded that half the time to decide is gone, and an escalation to them
does not read as one to a person who may decide. What a person who may decide reads is
unchanged."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from django.utils import timezone

from approvals import action_types
from approvals.models import Agent, Proposal
from approvals.services.proposals import Submission, proposal_submit
from feedback.autonomy import advisor_for
from ledger.models import Account
from notifications.deadlines import deadlines_sweep
from notifications.digests import notifications_send_digests
from notifications.models import (
    DecisionDeadline,
    Delivery,
    Notification,
    NotificationKind,
    NotificationStatus,
    ReachedBy,
    Route,
)
from notifications.services import notifications_deliver
from policies.models import Policy
from tests.conftest import reallocation, wait_until
from tests.slack_fake import shown_text

DEMO_ROUTE = "Demo: everything waiting, to the operators"
NOT_THE_OPERATORS = (
    "operator may not decide on policy change proposals: a policy owner decides it; you may "
    "read it."
)


def autonomy_recommendation() -> Proposal:
    """The platform recommends a wider ceiling for optimizer on demo, as its advisor does: a
    policy change, which waits for a policy owner."""
    account = Account.objects.get(external_id="demo")
    payload = action_types.get("policy_change").example_payload(account, Decimal("0.2"))
    proposal = proposal_submit(
        agent=advisor_for(account),
        submission=Submission(
            account="demo",
            action_type="policy_change",
            payload=payload,
            rationale="optimizer's last 10 bid adjustments were all approved as proposed.",
            confidence=1.0,
        ),
    )
    assert proposal.status == "pending_review"
    return proposal


def plain(email) -> str:
    return " ".join(email.get_body(preferencelist=("plain",)).get_content().split())


def context_notes(blocks: list) -> list[str]:
    return [e.get("text", "") for b in blocks if b["type"] == "context" for e in b["elements"]]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_an_operator_emailed_of_an_autonomy_recommendation_is_told_a_policy_owner_decides_it(
    demo_world, mailbox
):
    """The operators' route emailed the operator "Waits for a decision" and "Read it on its
    page", and nothing said that only a policy owner may decide it; the policy owner's email
    is as it was."""
    proposal = autonomy_recommendation()

    [to_operator] = wait_until(lambda: mailbox.to("operator@example.com"), timeout=15)
    [to_owner] = wait_until(lambda: mailbox.to("policy-owner@example.com"), timeout=15)

    said = plain(to_operator)
    assert (
        to_operator["Subject"] == f"[HITL] Waits for a decision: #{proposal.pk} {proposal.summary}"
    )
    assert said.startswith("Waits for a decision ")
    assert NOT_THE_OPERATORS in said
    assert "Read it on its page" in said
    assert f"You are told by the route “{DEMO_ROUTE}”." in said
    html = to_operator.get_body(preferencelist=("html",)).get_content()
    assert NOT_THE_OPERATORS in html

    theirs = plain(to_owner)
    assert theirs.startswith("Waits for your decision ")
    assert "may not decide" not in theirs
    assert "you may read it" not in theirs
    assert "Decide on its page" in theirs


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_on_slack_an_operator_is_told_a_policy_owner_decides_it_and_the_owner_gets_buttons(
    on_slack,
):
    users = get_user_model().objects
    ReachedBy.objects.update_or_create(
        user=users.get(username="policy-owner"), defaults={"slack": True, "email": False}
    )
    proposal = autonomy_recommendation()

    [to_operator] = wait_until(
        lambda: on_slack.sent("chat.postMessage", channel="U0OPERATOR"), timeout=15
    )
    [to_owner] = wait_until(
        lambda: on_slack.sent("chat.postMessage", channel="U0POLICYOWNER"), timeout=15
    )

    blocks = to_operator["blocks"]
    assert shown_text(blocks[:1]).startswith("Waits for a decision\n")
    assert NOT_THE_OPERATORS in context_notes(blocks)
    assert not [b for b in blocks if b["type"] == "actions"]

    theirs = to_owner["blocks"]
    assert shown_text(theirs[:1]).startswith("Waits for your decision\n")
    assert "may not decide" not in shown_text(theirs)
    [actions] = [b for b in theirs if b["type"] == "actions"]
    assert [e["action_id"] for e in actions["elements"]] == ["approve", "reject", "claim"]
    assert Notification.objects.filter(proposal=proposal).count() == 2


@pytest.mark.django_db
def test_a_digest_to_an_operator_says_which_of_its_proposals_a_policy_owner_decides(
    demo_world, optimizer
):
    """The operators are told in a digest: it lists a reallocation, theirs to decide, and
    the autonomy recommendation, which only its line says is a policy owner's."""
    route = Route.objects.get(name=DEMO_ROUTE)
    route.delivery, route.digest_minutes = Delivery.DIGEST, 30
    route.save()
    theirs = optimizer.post("/api/v1/proposals/", reallocation(), format="json").json()
    recommendation = autonomy_recommendation()

    assert notifications_send_digests(now=timezone.now() + timedelta(minutes=31)) >= 1

    [digest] = [m for m in mail.outbox if m.to == ["operator@example.com"]]
    assert digest.subject == "[HITL] 2 proposals wait for a decision"
    lines = digest.body.split("\n#")[1:]  # each proposal's line, under the headline
    [mine] = [line for line in lines if line.startswith(f"{theirs['id']} ")]
    [not_mine] = [line for line in lines if line.startswith(f"{recommendation.pk} ")]
    assert NOT_THE_OPERATORS in " ".join(not_mine.split())
    assert "may not decide" not in mine
    assert NOT_THE_OPERATORS in digest.alternatives[0][0]


@pytest.mark.django_db
def test_one_who_may_not_decide_is_not_reminded_and_the_history_says_why(optimizer):
    """The operator owns optimizer, whose reallocation the operators' route tells them of:
    "half the time to decide is gone" is not theirs to hear; the other operator is reminded."""
    for policy in Policy.objects.all():
        policy.decide_within = timedelta(seconds=60)
        policy.save()
    users = get_user_model().objects
    operator = users.get(username="operator")
    second = users.create_user("second", email="second@example.com", is_staff=True)
    second.groups.add(Group.objects.get(name="operators"))
    Agent.objects.filter(name="optimizer").update(owner=operator)
    proposal_id = optimizer.post("/api/v1/proposals/", reallocation(), format="json").json()["id"]

    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)
    assert deadlines_sweep(now=deadline.remind_at + timedelta(seconds=1)).reminded == 1

    reminded = Notification.objects.filter(
        proposal_id=proposal_id, kind=NotificationKind.REMINDER
    ).values_list("recipient__username", flat=True)
    assert set(reminded) == {"second"}
    note = Proposal.history.filter(
        id=proposal_id, history_change_reason__startswith="Half the time"
    ).values_list("history_change_reason", flat=True)
    assert list(note) == [
        f"Half the time to decide is gone (due {deadline.due_at:%Y-%m-%d %H:%M:%S} UTC); "
        "reminded second; not operator, who may not decide it."
    ]


@pytest.mark.django_db
def test_an_escalation_to_one_who_may_not_decide_does_not_read_as_reaching_a_decider(optimizer):
    """The route's backup group is the auditors: the auditor's email said "Overdue: escalated
    to you", as to a person who may decide it."""
    for policy in Policy.objects.all():
        policy.decide_within = timedelta(seconds=60)
        policy.save()
    route = Route.objects.get(name=DEMO_ROUTE)
    route.backup_group = Group.objects.get(name="auditors")
    route.save()
    proposal_id = optimizer.post("/api/v1/proposals/", reallocation(), format="json").json()["id"]
    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)
    assert deadlines_sweep(now=deadline.due_at + timedelta(seconds=1)).escalated == 1

    told = Notification.objects.filter(proposal_id=proposal_id, kind=NotificationKind.ESCALATION)
    told.update(next_attempt_at=timezone.now())  # the sweep's moment was a minute ahead
    notifications_deliver(notification_ids=[n.pk for n in told])
    assert set(told.values_list("status", flat=True)) == {NotificationStatus.SENT}

    [email] = [m for m in mail.outbox if m.to == ["auditor@example.com"]]
    assert email.subject.startswith("[HITL] Overdue: waits for a decision: ")
    said = " ".join(email.body.split())
    assert said.startswith("Overdue: waits for a decision ")
    assert "escalated to you" not in said
    assert (
        "auditor may not decide on budget reallocation proposals: an operator decides it; you "
        "may read it."
    ) in said
    assert "Nobody in the backup group “auditors” may decide it" in said
