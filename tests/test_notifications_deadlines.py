"""Deadlines to decide: under a policy's “decide within”, the people told are reminded at half
time and, at the deadline, the route's backup group is told and the proposal's history says
so; a proposal decided in time is neither; the dashboard shows the share decided in time and
each route's time to a decision, as it happened."""

import re
import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.db import connection
from django.utils import timezone

from approvals.models import Agent, Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_reject
from approvals.services.lifecycle import proposal_transition
from audit.actors import Actor
from audit.chain import chain_seal, chain_verify
from notifications.deadlines import deadlines_sweep
from notifications.digests import notifications_send_digests
from notifications.models import (
    DecisionDeadline,
    Delivery,
    Notification,
    NotificationKind,
    NotificationStatus,
    Route,
)
from notifications.services import notifications_deliver, reached_by_choose
from policies.models import Policy
from tests.conftest import reallocation, wait_until
from tests.factories import evaluated

DEMO_ROUTE = "Demo: everything waiting, to the operators"


def decide_within(seconds: float) -> None:
    for policy in Policy.objects.all():
        policy.decide_within = timedelta(seconds=seconds)
        policy.save()


def backup_member(email: str = "backup@example.com"):
    """A backup group with one member, named by the demo's route. Its people read proposals
    in the console (a message goes only to those who may) and decide them."""
    backup = Group.objects.create(name="backup")
    backup.permissions.add(
        *Permission.objects.filter(codename__in=["view_proposal", "decide_proposal"])
    )
    user = get_user_model().objects.create_user("backup", email=email, is_staff=True)
    user.groups.add(backup)
    route = Route.objects.get(name=DEMO_ROUTE)
    route.backup_group = backup
    route.save()
    return user


def subjects(mailbox, address: str) -> list[str]:
    return [message["Subject"] for message in mailbox.to(address)]


def sweep_until(moment, *, every: float = 0.25) -> None:
    """Sweep the deadlines as the beat does, only more often, until ``moment`` has passed."""
    while timezone.now() < moment:
        deadlines_sweep()
        time.sleep(every)
    deadlines_sweep()


def shown(page, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page.text, re.S)
    assert match, f"#{element_id} is not on the page"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_operator_is_reminded_at_half_time_and_backup_group_told_at_the_deadline(
    optimizer, mailbox, login
):
    decide_within(seconds=6)
    backup_member()
    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    assert answer.status_code == 201, answer.content
    proposal_id = answer.json()["id"]
    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)
    assert deadline.due_at - deadline.started_at == timedelta(seconds=6)
    wait_until(lambda: mailbox.to("operator@example.com"), timeout=15)

    sweep_until(deadline.remind_at - timedelta(seconds=0.5))
    assert len(mailbox.to("operator@example.com")) == 1, "reminded before half time"
    sweep_until(deadline.remind_at + timedelta(seconds=0.3))
    wait_until(lambda: len(mailbox.to("operator@example.com")) >= 2, timeout=2)
    reminder = mailbox.to("operator@example.com")[1]
    reminded_by = timezone.now()
    assert reminded_by < deadline.due_at, "the reminder came after the deadline"
    assert reminder["Subject"].startswith("[HITL] Reminder: half the time to decide is gone")
    assert f"#{proposal_id}" in reminder["Subject"]
    assert not mailbox.to("backup@example.com"), "escalated before the deadline"

    sweep_until(deadline.due_at + timedelta(seconds=1))
    [escalation] = wait_until(lambda: mailbox.to("backup@example.com"), timeout=15)
    assert escalation["Subject"].startswith("[HITL] Overdue: escalated to you")
    told = escalation.get_body(preferencelist=("plain",)).get_content()
    assert f"/admin/approvals/proposal/{proposal_id}/change/" in told
    # Why they of all people are told: as the backup group, not as the route's own people.
    assert (
        "You are told as one of the backup group of the route "
        "“Demo: everything waiting, to the operators”." in " ".join(told.split())
    )

    # More beats change nothing: one reminder, one escalation.
    sweep_until(timezone.now() + timedelta(seconds=1))
    time.sleep(1)
    assert len(subjects(mailbox, "operator@example.com")) == 2
    assert len(subjects(mailbox, "backup@example.com")) == 1
    deadline.refresh_from_db()
    assert deadline.remind_at <= deadline.reminded_at < deadline.due_at <= deadline.escalated_at
    assert deadline.escalated_to.name == "backup"
    # Escalating moves nothing: it still waits for a person.
    assert Proposal.objects.get(pk=proposal_id).status == ProposalStatus.PENDING_REVIEW

    auditor = login("auditor")
    history = auditor.get(f"/admin/approvals/proposal/{proposal_id}/history/")
    assert "Overdue: no decision within 6 seconds" in history.text
    assert "escalated to group “backup” of route “Demo: everything waiting" in history.text
    assert "the deadline sweep" in history.text
    page = auditor.get(f"/admin/approvals/proposal/{proposal_id}/change/")
    assert "escalated" in shown(page, "proposal-escalation")
    assert "“backup”" in shown(page, "proposal-escalation")
    assert shown(page, "proposal-status") == "Pending review"
    wait_until(
        lambda: (
            Notification.objects.filter(status="sent").count() == 3
            and not Notification.objects.exclude(status="sent").exists()
        )
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_without_a_backup_group_the_history_says_nobody_could_be_escalated_to(
    optimizer, mailbox, login
):
    decide_within(seconds=2)
    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    proposal_id = answer.json()["id"]
    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)
    wait_until(lambda: mailbox.to("operator@example.com"), timeout=15)
    sweep_until(deadline.due_at + timedelta(seconds=0.5))

    deadline.refresh_from_db()
    assert deadline.escalated_at is not None and deadline.escalated_to is None
    assert not Notification.objects.filter(kind=NotificationKind.ESCALATION).exists()
    auditor = login("auditor")
    history = auditor.get(f"/admin/approvals/proposal/{proposal_id}/history/")
    assert "nobody could be escalated to: no route it matches names a backup group" in (
        history.text
    )
    # The proposal's page says the same, not that some group was told.
    page = auditor.get(f"/admin/approvals/proposal/{proposal_id}/change/")
    said = shown(page, "proposal-escalation")
    assert "nobody could be escalated to: no route it matches names a backup group" in said
    assert "told" not in said
    wait_until(lambda: not Notification.objects.filter(status="pending").exists())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_proposal_decided_in_time_is_never_reminded_nor_escalated_and_counts_as_met(
    optimizer, mailbox, login, operators
):
    decide_within(seconds=3)
    backup_member()
    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    proposal_id = answer.json()["id"]
    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)
    wait_until(lambda: mailbox.to("operator@example.com"), timeout=15)
    for reviewer in operators:
        if Proposal.objects.get(pk=proposal_id).status == ProposalStatus.PENDING_REVIEW:
            proposal_approve(proposal_id=proposal_id, reviewer=reviewer)

    sweep_until(deadline.due_at + timedelta(seconds=1))
    time.sleep(1)  # a reminder or an escalation would have been sent by now

    assert subjects(mailbox, "operator@example.com") == [
        mailbox.to("operator@example.com")[0]["Subject"]
    ]
    assert not mailbox.to("backup@example.com")
    assert not Notification.objects.exclude(kind=NotificationKind.WAITING).exists()
    deadline.refresh_from_db()
    assert (deadline.reminded_at, deadline.escalated_at) == (None, None)
    assert deadline.ended_as == ProposalStatus.APPROVED and deadline.met
    page = login("operator").get("/admin/")
    assert shown(page, "deadline-met-share") == "100%"
    assert shown(page, "deadline-in-time") == "1"
    assert shown(page, "deadline-open-count") == "0"
    wait_until(
        lambda: (
            Proposal.objects.get(pk=proposal_id).status == ProposalStatus.EXECUTED
            and not Notification.objects.filter(status="pending").exists()
        )
    )


def deadline_of(proposal: Proposal) -> DecisionDeadline:
    return DecisionDeadline.objects.get(proposal=proposal, review_round=proposal.review_round)


def overdue(proposal: Proposal) -> None:
    """As if its deadline had passed: started 20 minutes ago, due 10 minutes ago."""
    now = timezone.now()
    DecisionDeadline.objects.filter(pk=deadline_of(proposal).pk).update(
        started_at=now - timedelta(minutes=20),
        remind_at=now - timedelta(minutes=15),
        due_at=now - timedelta(minutes=10),
    )


def decided_after(proposal: Proposal, minutes: int) -> None:
    """As if the decision had come ``minutes`` after evaluation (as test_dashboard does)."""
    proposal.refresh_from_db()
    Proposal.objects.filter(pk=proposal.pk).update(
        evaluated_at=proposal.decided_at - timedelta(minutes=minutes)
    )


def test_dashboard_shows_the_share_decided_in_time_and_each_routes_time_to_decide(
    demo_world, login
):
    decide_within(seconds=600)
    operator = get_user_model().objects.get(username="operator")
    optimizer = Actor.for_agent(Agent.objects.get(name="optimizer"))

    in_time = evaluated(reallocation("150.00"))
    proposal_approve(proposal_id=in_time.pk, reviewer=operator)
    decided_after(in_time, 10)
    # A second route, to the policy owner, from here on: it tells of the rest only.
    owners = Route.objects.create(name="Reallocations, to the policy owner")
    owners.users.set([get_user_model().objects.get(username="policy-owner")])

    late = evaluated(reallocation("200.00"))
    overdue(late)
    proposal_approve(proposal_id=late.pk, reviewer=operator)
    decided_after(late, 30)
    rejected = evaluated(reallocation("250.00"))
    proposal_reject(proposal_id=rejected.pk, reviewer=operator, reason_code="wrong_signal")
    decided_after(rejected, 90)
    expired = evaluated(reallocation("260.00"))
    overdue(expired)
    proposal_transition(
        proposal_id=expired.pk, to_status=ProposalStatus.EXPIRED, actor=Actor.system("expiry")
    )
    withdrawn = evaluated(reallocation("270.00"))
    proposal_transition(
        proposal_id=withdrawn.pk, to_status=ProposalStatus.WITHDRAWN, actor=optimizer
    )
    overdue(evaluated(reallocation("280.00")))  # still waits, past its deadline
    evaluated(reallocation("290.00"))  # still waits, in time
    long_ago = evaluated(reallocation("300.00"))
    proposal_approve(proposal_id=long_ago.pk, reviewer=operator)
    DecisionDeadline.objects.filter(pk=deadline_of(long_ago).pk).update(
        ended_at=timezone.now() - timedelta(days=8)
    )
    Proposal.objects.filter(pk=long_ago.pk).update(decided_at=timezone.now() - timedelta(days=8))

    page = login("auditor").get("/admin/")

    assert page.status_code == 200
    # Of the four rounds people decided or let expire this week, two were decided in time.
    assert shown(page, "deadline-met-share") == "50%"
    assert "of the 4 review rounds with a deadline" in page.text
    assert [shown(page, f"deadline-{name}") for name in ("in-time", "late", "expired")] == [
        "2",
        "1",
        "1",
    ]
    assert shown(page, "deadline-open-count") == "2"
    assert shown(page, "deadline-open-overdue") == "1"
    # "2 (1 overdue)": the label says the two are under review and one of them is overdue,
    # not that both are past their deadline.
    assert shown(page, "deadline-open-label") == (
        "Review rounds with a deadline still under review now, and how many of them are past "
        "it; not counted above"
    )
    assert shown(page, "deadline-not-decided") == "1"
    # The withdrawn one had a deadline; the label says it counts only such rounds, so a week
    # of superseded proposals without one does not read as "0 superseded".
    assert shown(page, "deadline-not-decided-label") == (
        "Review rounds with a deadline withdrawn or superseded before a decision; not counted above"
    )

    rows = dict(
        re.findall(
            r'<tr data-route="([^"]+)">(.*?)</tr>',
            page.text.split('id="route-decision-times"')[1],
            re.S,
        )
    )
    cells = {route: re.findall(r"<td[^>]*>(.*?)</td>", row) for route, row in rows.items()}
    # The operators were told of all three decided: 10, 30 and 90 minutes.
    assert cells[DEMO_ROUTE][1:] == ["3", "30 min", "78 min"]
    # The policy owner's route, of the two after it: 30 and 90 minutes.
    assert cells["Reallocations, to the policy owner"][1:] == ["2", "60 min", "84 min"]


def route_rows(page) -> dict[str, list[str]]:
    """The dashboard's time to a decision by route: each route's cells after its name."""
    rows = re.findall(
        r'<tr data-route="([^"]+)">(.*?)</tr>',
        page.text.split('id="route-decision-times"')[1],
        re.S,
    )
    return {route: re.findall(r"<td[^>]*>(.*?)</td>", row)[1:] for route, row in rows}


@pytest.mark.django_db
def test_a_route_whose_digest_never_went_did_not_tell_of_what_was_decided_first(demo_world, login):
    """A digest route held a message that a decision made pointless: it told nobody of that
    proposal, so its time to a decision does not count it, held or, once the digest ran,
    not sent."""
    digest = Route.objects.create(
        name="Reallocations in a digest, to the policy owner",
        delivery=Delivery.DIGEST,
        digest_minutes=30,
    )
    digest.users.set([get_user_model().objects.get(username="policy-owner")])
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation("150.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    decided_after(proposal, 10)
    held = Notification.objects.get(proposal=proposal, route=digest)
    assert held.status == NotificationStatus.HELD

    assert route_rows(login("auditor").get("/admin/")) == {DEMO_ROUTE: ["1", "10 min", "10 min"]}

    notifications_send_digests(now=timezone.now() + timedelta(minutes=31))
    held.refresh_from_db()
    assert held.status == NotificationStatus.NOT_SENT
    assert route_rows(login("auditor").get("/admin/")) == {DEMO_ROUTE: ["1", "10 min", "10 min"]}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_two_sweeps_at_once_remind_and_escalate_once(optimizer, mailbox):
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite lets one writer in at a time")
    decide_within(seconds=600)
    backup_member()
    proposals = [
        optimizer.post("/api/v1/proposals/", reallocation(amount), format="json").json()["id"]
        for amount in ("150.00", "200.00", "250.00")
    ]
    wait_until(lambda: len(mailbox.to("operator@example.com")) == 3, timeout=15)
    now = timezone.now()
    halfway, past = proposals[:2], proposals[2:]
    DecisionDeadline.objects.filter(proposal_id__in=halfway).update(
        started_at=now - timedelta(minutes=6),
        remind_at=now - timedelta(minutes=1),
        due_at=now + timedelta(minutes=4),
    )
    DecisionDeadline.objects.filter(proposal_id__in=past).update(
        started_at=now - timedelta(minutes=11),
        remind_at=now - timedelta(minutes=6),
        due_at=now - timedelta(minutes=1),
    )
    start = threading.Barrier(2)
    swept = []

    def sweep() -> None:
        start.wait()
        try:
            swept.append(deadlines_sweep())
        finally:
            connection.close()

    sweeps = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in sweeps:
        thread.start()
    for thread in sweeps:
        thread.join()

    assert sum(s.reminded for s in swept) == 2
    assert sum(s.escalated for s in swept) == 1
    reminders = Notification.objects.filter(kind=NotificationKind.REMINDER)
    assert sorted(reminders.values_list("proposal_id", flat=True)) == sorted(halfway)
    [escalation] = Notification.objects.filter(kind=NotificationKind.ESCALATION)
    assert (escalation.proposal_id, escalation.recipient.username) == (past[0], "backup")
    wait_until(lambda: len(mailbox.to("operator@example.com")) == 5, timeout=15)
    wait_until(lambda: len(mailbox.to("backup@example.com")) == 1, timeout=15)
    wait_until(lambda: not Notification.objects.filter(status="pending").exists())
    time.sleep(1)
    assert len(mailbox.to("operator@example.com")) == 5


@pytest.mark.django_db
def test_a_person_named_by_two_routes_is_told_at_once_and_every_matching_backup_is_escalated_to(
    optimizer,
):
    """Two routes name the operators: one in a digest (its name sorts first), the demo's at
    once. The operator is told at once, and at the deadline the digest route's backup group is
    told too, although its people were told by the other route."""
    from django.contrib.auth.models import Group

    from notifications.models import Delivery, NotificationStatus

    decide_within(seconds=60)
    backup = Group.objects.create(name="reallocation backups")
    member = get_user_model().objects.create_user("backup", email="b@example.com", is_staff=True)
    member.groups.add(backup)
    digest = Route.objects.create(
        name="A digest of reallocations, to the operators",
        action_type="budget_reallocation",
        delivery=Delivery.DIGEST,
        digest_minutes=30,
        backup_group=backup,
    )
    digest.groups.set([Group.objects.get(name="operators")])

    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    proposal_id = answer.json()["id"]

    [told] = Notification.objects.filter(proposal_id=proposal_id, recipient__username="operator")
    assert told.status == NotificationStatus.PENDING  # at once, not held for the digest
    assert told.route.name == DEMO_ROUTE
    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)
    deadlines_sweep(now=deadline.due_at + timedelta(seconds=1))
    deadline.refresh_from_db()
    assert deadline.escalated_to == backup
    assert Notification.objects.filter(
        proposal_id=proposal_id, kind=NotificationKind.ESCALATION, recipient=member
    ).exists()


@pytest.mark.django_db
def test_a_route_whose_digest_was_interrupted_then_not_sent_may_have_told_and_counts(
    demo_world, login
):
    """A digest run sent the policy owner's digest and died before recording it; the
    proposal was decided meanwhile, so the next run does not send it again. The interrupted
    send may have told them: the route's time to a decision counts that proposal."""
    digest = Route.objects.create(
        name="Reallocations in a digest, to the policy owner",
        delivery=Delivery.DIGEST,
        digest_minutes=30,
    )
    digest.users.set([get_user_model().objects.get(username="policy-owner")])
    proposal = evaluated(reallocation("150.00"))
    Notification.objects.filter(proposal=proposal, route=digest).update(  # the run that died
        attempts=1, next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    operator = get_user_model().objects.get(username="operator")
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    decided_after(proposal, 10)

    notifications_send_digests(now=timezone.now())

    held = Notification.objects.get(proposal=proposal, route=digest)
    assert held.status == NotificationStatus.NOT_SENT
    assert held.log[0]["result"].startswith("interrupted")
    assert route_rows(login("auditor").get("/admin/")) == {
        DEMO_ROUTE: ["1", "10 min", "10 min"],
        digest.name: ["1", "10 min", "10 min"],
    }


def history_note(proposal_id: int, *, starting: str) -> str:
    """The one reason in the proposal's history that starts so."""
    [note] = [
        record.history_change_reason
        for record in Proposal.history.filter(id=proposal_id)
        if (record.history_change_reason or "").startswith(starting)
    ]
    return note


@pytest.mark.django_db
def test_the_reminder_passes_over_who_approved_already_or_lost_the_right_and_the_history_says_so(
    optimizer,
):
    """Under a two-person rule, the operator who gave the first approval is not reminded that
    half the time to decide is gone (they have done their part), nor is one who may no longer
    read proposals in the console (nothing would reach them); the proposal's history names
    whom the reminder went to, and whom it passed over and why, not every person once told."""
    decide_within(seconds=60)
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    users = get_user_model().objects
    operators = Group.objects.get(name="operators")
    second = users.create_user("second", email="second@example.com", is_staff=True)
    leaver = users.create_user("leaver", email="leaver@example.com", is_staff=True)
    for person in (second, leaver):
        person.groups.add(operators)

    proposal_id = optimizer.post("/api/v1/proposals/", reallocation(), format="json").json()["id"]
    assert {n.recipient.username for n in Notification.objects.filter(proposal_id=proposal_id)} == {
        "operator",
        "second",
        "leaver",
    }
    operator = users.get(username="operator")
    proposal_approve(proposal_id=proposal_id, reviewer=operator)  # 1 of 2 approvals
    leaver.groups.remove(operators)  # may no longer read proposals

    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)
    assert deadlines_sweep(now=deadline.remind_at + timedelta(seconds=1)).reminded == 1

    reminded = Notification.objects.filter(
        proposal_id=proposal_id, kind=NotificationKind.REMINDER
    ).values_list("recipient__username", flat=True)
    assert set(reminded) == {"second"}
    note = history_note(proposal_id, starting="Half the time")
    assert note == (
        f"Half the time to decide is gone (due {deadline.due_at:%Y-%m-%d %H:%M:%S} UTC); "
        "reminded second; not leaver, who may no longer see proposals in the console; "
        "not operator, who has decided it in this round."
    )


@pytest.mark.django_db
def test_the_escalation_passes_over_a_backup_who_approved_already_and_the_history_says_so(
    optimizer,
):
    """The backup group holds the operator who gave the first of two approvals and one more
    person: at the deadline only the other is told it is overdue, and the history says whom
    it passed over, and why."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    decide_within(seconds=60)
    member = backup_member()
    operator = get_user_model().objects.get(username="operator")
    operator.groups.add(member.groups.get())
    proposal_id = optimizer.post("/api/v1/proposals/", reallocation(), format="json").json()["id"]
    proposal_approve(proposal_id=proposal_id, reviewer=operator)  # 1 of 2 approvals

    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)
    assert deadlines_sweep(now=deadline.due_at + timedelta(seconds=1)).escalated == 1

    escalated = Notification.objects.filter(
        proposal_id=proposal_id, kind=NotificationKind.ESCALATION
    ).values_list("recipient__username", flat=True)
    assert set(escalated) == {"backup"}
    note = history_note(proposal_id, starting="Overdue")
    assert note.endswith(
        f"escalated to group “backup” of route “{DEMO_ROUTE}” (1 person told; not operator, "
        "who decided it in this round)."
    )


@pytest.mark.django_db
def test_a_person_whose_digest_has_not_gone_yet_is_not_reminded_first(optimizer):
    """The operators are told in a digest every 30 minutes; a decision is due within a
    minute. At half time their digest has not gone: "half the time to decide is gone" would
    be the first they hear of it. They are not reminded (the digest, when it goes, says when
    it was due), and the history says so."""
    route = Route.objects.get(name=DEMO_ROUTE)
    route.delivery, route.digest_minutes = Delivery.DIGEST, 30
    route.save()
    decide_within(seconds=60)
    proposal_id = optimizer.post("/api/v1/proposals/", reallocation(), format="json").json()["id"]
    assert set(
        Notification.objects.filter(proposal_id=proposal_id).values_list("status", flat=True)
    ) == {NotificationStatus.HELD}

    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)
    assert deadlines_sweep(now=deadline.remind_at + timedelta(seconds=1)).reminded == 1

    assert not Notification.objects.filter(
        proposal_id=proposal_id, kind=NotificationKind.REMINDER
    ).exists()
    assert history_note(proposal_id, starting="Half the time") == (
        f"Half the time to decide is gone (due {deadline.due_at:%Y-%m-%d %H:%M:%S} UTC); "
        "nobody told in this round to remind; not operator, who is yet to be told of it, in a "
        "digest."
    )


@pytest.mark.django_db
def test_an_escalation_to_a_backup_group_nobody_in_which_may_decide_says_so(optimizer, slack):
    """The route's backup group is the auditors: at the deadline they are told it is overdue,
    and the messages said only "Read it on its page", as to anyone who may not decide; nobody
    who may decide was told, and nothing said so. The history now says it, and so does the
    message, by email and on Slack."""
    decide_within(seconds=60)
    auditors = Group.objects.get(name="auditors")
    route = Route.objects.get(name=DEMO_ROUTE)
    route.backup_group = auditors
    route.save()
    auditor = get_user_model().objects.get(username="auditor")
    reached_by_choose(user=auditor, email=True, slack=True)
    proposal_id = optimizer.post("/api/v1/proposals/", reallocation(), format="json").json()["id"]

    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)
    assert deadlines_sweep(now=deadline.due_at + timedelta(seconds=1)).escalated == 1

    note = history_note(proposal_id, starting="Overdue")
    assert note.endswith(
        f"escalated to group “auditors” of route “{DEMO_ROUTE}” (1 person told, who may not "
        "decide it); nobody who may decide it was told it is overdue."
    )
    told = Notification.objects.filter(proposal_id=proposal_id, kind=NotificationKind.ESCALATION)
    assert {(n.recipient.username, n.channel) for n in told} == {
        ("auditor", "email"),
        ("auditor", "slack"),
    }
    told.update(next_attempt_at=timezone.now())  # the sweep's moment was a minute ahead
    notifications_deliver(notification_ids=[n.pk for n in told])
    assert set(told.values_list("status", flat=True)) == {NotificationStatus.SENT}

    said = (
        "Nobody in the backup group “auditors” may decide it: it still waits for a person who may."
    )
    [email] = [m for m in mail.outbox if m.to == ["auditor@example.com"]]
    # Not "Overdue: escalated to you", as if it had reached a person who may decide it.
    assert email.subject.startswith("[HITL] Overdue: waits for a decision")
    assert said in " ".join(email.body.split())
    assert "Read it on its page" in email.body
    assert said in email.alternatives[0][0]
    [posted] = slack.sent("chat.postMessage", channel=slack.user_id("auditor@example.com"))
    notes = [e for b in posted["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert {"type": "plain_text", "text": said, "emoji": False} in notes
    assert not [b for b in posted["blocks"] if b["type"] == "actions"]


@pytest.mark.django_db
def test_an_escalation_to_a_backup_group_that_may_decide_says_nothing_more(optimizer):
    decide_within(seconds=60)
    backup_member()
    proposal_id = optimizer.post("/api/v1/proposals/", reallocation(), format="json").json()["id"]
    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)

    assert deadlines_sweep(now=deadline.due_at + timedelta(seconds=1)).escalated == 1

    assert history_note(proposal_id, starting="Overdue").endswith(
        f"escalated to group “backup” of route “{DEMO_ROUTE}” (1 person told)."
    )


ELEVEN_MINUTES_AGO = timedelta(minutes=11)


@pytest.mark.django_db
def test_a_sweep_held_up_before_its_reminders_leaves_the_audit_chain_whole(optimizer):
    """A deadlines sweep that began eleven minutes ago reaches a proposal at half time only
    now. Its reminder was recorded in the proposal's history as of when the sweep began:
    behind the audit chain's last sealing by more than its ten-minute margin, never sealed,
    so verification found the chain broken ('inserted after its time had been sealed') with
    nothing tampered. Now the reminder is recorded, and said, as of when it was made."""
    decide_within(seconds=3600)
    proposal_id = optimizer.post("/api/v1/proposals/", reallocation(), format="json").json()["id"]
    began = timezone.now() - ELEVEN_MINUTES_AGO
    DecisionDeadline.objects.filter(proposal_id=proposal_id).update(
        remind_at=began - timedelta(minutes=1)
    )
    chain_seal()

    assert deadlines_sweep(now=began).reminded == 1

    assert Notification.objects.filter(
        proposal_id=proposal_id, kind=NotificationKind.REMINDER
    ).exists()
    assert history_note(proposal_id, starting="Half the time").endswith("reminded operator.")
    chain_seal()
    verification = chain_verify()
    assert verification.holds, str(verification.broken)
    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)
    assert deadline.reminded_at > began


@pytest.mark.django_db
def test_a_sweep_held_up_before_its_escalations_leaves_the_audit_chain_whole(optimizer):
    """As above, at the deadline: the escalation, on the deadline's history and the
    proposal's, was dated when the sweep began, eleven minutes before it was written, and the
    chain was found broken. Now it is dated, and its deadline says escalated, as of when it
    was."""
    decide_within(seconds=3600)
    backup_member()
    proposal_id = optimizer.post("/api/v1/proposals/", reallocation(), format="json").json()["id"]
    began = timezone.now() - ELEVEN_MINUTES_AGO
    DecisionDeadline.objects.filter(proposal_id=proposal_id).update(
        remind_at=began - timedelta(minutes=2), due_at=began - timedelta(minutes=1)
    )
    chain_seal()

    assert deadlines_sweep(now=began).escalated == 1

    assert Notification.objects.filter(
        proposal_id=proposal_id, kind=NotificationKind.ESCALATION, recipient__username="backup"
    ).exists()
    chain_seal()
    verification = chain_verify()
    assert verification.holds, str(verification.broken)
    deadline = DecisionDeadline.objects.get(proposal_id=proposal_id)
    assert deadline.escalated_at > began
