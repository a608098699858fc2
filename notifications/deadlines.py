"""Deadlines running out: at half the time a policy gives to decide (``decide_within``), the
people told about a proposal in its review round are reminded; at the deadline, the backup
groups of the routes that told them are told, and the proposal's history says so (or says
that nobody could be escalated to). Neither moves the proposal: it still waits for a person.

The sweep locks the deadlines it acts on, and their proposals, skipping rows another sweep
(or a decision) holds: two beats or workers at once never remind or escalate twice, and a
proposal decided meanwhile is left alone. The messages go through the outbox (``_tell``),
sent once the transaction commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from approvals.models import Proposal
from approvals.services.acts import reviewers_by_proposal
from audit.actors import Actor, acting_as
from audit.history import history_records, update_with_history_where
from hitlproject.formats import console_time
from hitlproject.periods import describe_duration
from hitlproject.vocabulary import READ_PERMISSION
from notifications.models import (
    DecisionDeadline,
    Notification,
    NotificationKind,
    NotificationStatus,
    Route,
)
from notifications.selectors import (
    deadlines_running,
    group_recipients,
    overdue_at,
    route_matches,
    routes_active,
    who_may_decide,
)
from notifications.services import _tell

DEADLINES_ACTOR = Actor.system("deadlines")
SWEEP_BATCH = 500


@dataclass(frozen=True)
class DeadlineSweep:
    reminded: int
    escalated: int


def deadlines_sweep(*, now: datetime | None = None) -> DeadlineSweep:
    """Remind about the review rounds at half time, escalate those at their deadline.
    ``now``: the moment the sweep begins as of (the clock's, by default). Each part judges
    and records what it does as of when it takes its deadlines (``_acting_at``), not when
    the sweep began: the escalations come after the reminders' transaction and the messages
    it hands on as it commits, and a history record dated before it is written may lie
    behind the audit chain's last sealing (``SEALING_MARGIN``), which verification then
    takes for one slipped in."""
    with acting_as(DEADLINES_ACTOR):  # the messages it records are the sweep's doing
        return DeadlineSweep(reminded=_remind(begun=now), escalated=_escalate(begun=now))


def _acting_at(begun: datetime | None) -> datetime:
    """When a part of the sweep acts: now by the clock, and never before the moment the
    sweep was begun as of (one run as of a later moment, as a test runs it)."""
    now = timezone.now()
    return max(now, begun) if begun else now


def _open_deadlines():
    """The deadlines of rounds still under review (``deadlines_running``), locked with their
    proposals; rows another transaction holds are skipped (it is deciding, or sweeping
    them)."""
    return (
        deadlines_running()
        .select_for_update(skip_locked=True, of=("self", "proposal"))
        .select_related("proposal__account", "proposal__agent")
    )


def _told_in_round(deadlines: Sequence[DecisionDeadline]) -> dict[int, list[Notification]]:
    """The messages saying each deadline's proposal waits, of the deadline's round."""
    rounds = {deadline.proposal_id: deadline.review_round for deadline in deadlines}
    told: dict[int, list[Notification]] = {}
    for notification in (
        Notification.objects.filter(proposal_id__in=rounds, kind=NotificationKind.WAITING)
        .select_related("recipient", "route__backup_group")
        .order_by("route__name", "pk")
    ):
        if notification.review_round == rounds[notification.proposal_id]:
            told.setdefault(notification.proposal_id, []).append(notification)
    return told


def _remind(*, begun: datetime | None) -> int:
    """Half the time is gone, the deadline not yet: remind the people told in this round,
    once. A deadline whose half time went by unswept until the deadline passed is not
    reminded (it is escalated): a reminder then would say what is no longer so."""
    with transaction.atomic():
        now = _acting_at(begun)
        deadlines = list(
            _open_deadlines()
            .filter(
                reminded_at__isnull=True,
                escalated_at__isnull=True,
                remind_at__lte=now,
                due_at__gt=now,
            )
            .order_by("due_at")[:SWEEP_BATCH]
        )
        if not deadlines:
            return 0
        told = _told_in_round(deadlines)
        # Who has decided each proposal in this round (the first of two approvals, say): they
        # have done their part, and "half the time to decide is gone" is not theirs to hear.
        decided = reviewers_by_proposal([deadline.proposal for deadline in deadlines])
        proposals_by_id = {deadline.proposal_id: deadline.proposal for deadline in deadlines}
        recipients: dict[int, list[tuple[Route | None, list]]] = {}
        passed_over: dict[int, dict[str, str]] = {}
        may_see: dict[int, bool] = {}  # by user: their permissions read once a sweep
        for proposal_id, notifications in told.items():
            by_route: dict[int | None, tuple[Route | None, dict]] = {}
            for notification in notifications:
                recipient = notification.recipient
                why_not = _not_reminded(
                    recipient,
                    proposals_by_id[proposal_id],
                    decided=decided.get(proposal_id, ()),
                    may_see=may_see,
                )
                if not why_not and notification.status == NotificationStatus.HELD:
                    # Not told yet: their digest, when it goes, says when it is due.
                    why_not = "is yet to be told of it, in a digest"
                if why_not:
                    passed_over.setdefault(proposal_id, {})[recipient.get_username()] = why_not
                    continue
                _, users = by_route.setdefault(notification.route_id, (notification.route, {}))
                users[notification.recipient_id] = recipient
            recipients[proposal_id] = [(r, list(users.values())) for r, users in by_route.values()]
        _tell(
            [deadline.proposal for deadline in deadlines],
            kind=NotificationKind.REMINDER,
            now=now,
            recipients_of=lambda proposal: recipients.get(proposal.pk, []),
            at_once=True,
        )
        update_with_history_where(
            DecisionDeadline.objects.filter(pk__in=[d.pk for d in deadlines]),
            {"reminded_at": now},
            actor=DEADLINES_ACTOR,
            reason="Reminded: half the time to decide is gone.",
        )
        # The proposal's history says it was reminded, and whom, as it says it was escalated.
        proposals = []
        for deadline in deadlines:
            proposal = deadline.proposal
            proposal._change_reason = _reminder_note(
                deadline, recipients.get(proposal.pk, []), passed_over.get(proposal.pk, {})
            )
            proposals.append(proposal)
        history = Proposal.history
        history.model.objects.bulk_create(
            history_records(history, proposals, actor=DEADLINES_ACTOR, date=now, update=True)
        )
    return len(deadlines)


def _not_reminded(user, proposal: Proposal, *, decided, may_see: dict[int, bool]) -> str:
    """Why a person told in this round is not reminded, or "" if they are: deactivated since,
    without the right to read proposals since (nothing would reach them), one who has
    decided it already (the first of two approvals, say), or one who may not decide it (an
    operator told of a policy change, which a policy owner decides; the owner of its agent):
    "half the time to decide is gone" is not theirs to hear, and their message said who
    decides. ``may_see`` keeps each person's right to read proposals as read once."""
    if not user.is_active:
        return "was deactivated"
    if user.pk in decided:
        return "has decided it in this round"
    if user.pk not in may_see:
        may_see[user.pk] = user.has_perm(READ_PERMISSION)
    if not may_see[user.pk]:
        return "may no longer see proposals in the console"
    if not who_may_decide([user], proposal, reviewers=decided):
        return "may not decide it"
    return ""


def _reminder_note(
    deadline: DecisionDeadline, recipients: Sequence[tuple], passed_over: dict[str, str]
) -> str:
    """What the proposal's history says of its reminder, in an auditor's words: whom it
    reminded, and whom of those told it did not, and why."""
    due = f"due {console_time(deadline.due_at)}"
    people = sorted({user.get_username() for _, users in recipients for user in users})
    not_them = "".join(f"; not {name}, who {why}" for name, why in sorted(passed_over.items()))
    if not people:
        return (
            f"Half the time to decide is gone ({due}); nobody told in this round to remind"
            f"{not_them}."
        )
    return f"Half the time to decide is gone ({due}); reminded {', '.join(people)}{not_them}."


def _escalate(*, begun: datetime | None) -> int:
    """The deadline has passed: tell the backup groups of the routes that told about the
    proposal in this round, and of the active routes it matches (a route whose people were
    told by another route still names its backup group), once, and record it in the
    proposal's history."""
    with transaction.atomic():
        now = _acting_at(begun)
        deadlines = list(
            _open_deadlines()
            .filter(overdue_at(now), escalated_at__isnull=True)
            .order_by("due_at")[:SWEEP_BATCH]
        )
        if not deadlines:
            return 0
        told = _told_in_round(deadlines)
        active = routes_active()
        members: dict[int, list] = {}
        backups: dict[int, list[Route]] = {}
        for deadline in deadlines:
            routes = {}
            naming = [n.route for n in told.get(deadline.proposal_id, [])] + [
                route for route in active if route_matches(route, deadline.proposal)
            ]
            for route in naming:
                if route is not None and route.backup_group_id is not None:
                    routes.setdefault(route.backup_group_id, route)
            backups[deadline.proposal_id] = list(routes.values())
            for route in routes.values():
                if route.backup_group_id not in members:
                    members[route.backup_group_id] = group_recipients(route.backup_group)
        # A member of a backup group who has decided it in this round (the first of two
        # approvals) is not told it is overdue, as they are not reminded.
        decided = reviewers_by_proposal([deadline.proposal for deadline in deadlines])
        escalated_to = {
            deadline.proposal_id: [
                (
                    route,
                    [
                        user
                        for user in members[route.backup_group_id]
                        if user.pk not in decided.get(deadline.proposal_id, ())
                    ],
                )
                for route in backups[deadline.proposal_id]
            ]
            for deadline in deadlines
        }
        _tell(
            [deadline.proposal for deadline in deadlines],
            kind=NotificationKind.ESCALATION,
            now=now,
            recipients_of=lambda proposal: escalated_to[proposal.pk],
            at_once=True,
        )
        proposals = []
        for deadline in deadlines:
            routes = backups[deadline.proposal_id]
            deadline.escalated_at = now
            deadline.escalated_to = routes[0].backup_group if routes else None
            proposal = deadline.proposal
            told = escalated_to[deadline.proposal_id]
            proposal._change_reason = _escalation_note(
                deadline,
                told,
                members,
                deciders={
                    user.pk
                    for user in who_may_decide(
                        {user for _, users in told for user in users},
                        proposal,
                        reviewers=decided.get(deadline.proposal_id, ()),
                    )
                },
            )
            proposals.append(proposal)
        DecisionDeadline.objects.bulk_update(deadlines, ["escalated_at", "escalated_to"])
        for deadline in deadlines:
            deadline._change_reason = deadline.proposal._change_reason
        records = DecisionDeadline.history
        records.model.objects.bulk_create(
            history_records(records, deadlines, actor=DEADLINES_ACTOR, date=now, update=True)
        )
        history = Proposal.history
        history.model.objects.bulk_create(
            history_records(history, proposals, actor=DEADLINES_ACTOR, date=now, update=True)
        )
    return len(deadlines)


def _escalation_note(
    deadline: DecisionDeadline,
    routes: Sequence[tuple[Route, list]],
    members: dict[int, list],
    *,
    deciders: set[int],
) -> str:
    """What the proposal's history says of its escalation, in an auditor's words: each group
    and how many of it were told (``routes``: each route, and the people of its backup group
    told), and who in it was not, having decided it already; and, where none of those told
    may decide it (``deciders``: those who may), that nobody who may was told it is
    overdue (a group of auditors reads it, and it waits on)."""
    within = describe_duration(deadline.due_at - deadline.started_at)
    overdue = (
        f"Overdue: no decision within {within} of review round {deadline.review_round} "
        f"(due {console_time(deadline.due_at)})"
    )
    if not routes:
        return f"{overdue}; nobody could be escalated to: no route it matches names a backup group."
    groups = []
    for route, users in routes:
        told = len(users)
        people = f"{told} {'person' if told == 1 else 'people'} told" if told else "nobody in it"
        if not told and members[route.backup_group_id]:
            people = "nobody told"
        if told and not any(user.pk in deciders for user in users):
            people += ", none of whom may decide it" if told > 1 else ", who may not decide it"
        told_ids = {user.pk for user in users}
        passed = sorted(
            user.get_username()
            for user in members[route.backup_group_id]
            if user.pk not in told_ids
        )
        if passed:
            people += f"; not {', '.join(passed)}, who decided it in this round"
        groups.append(f"group “{route.backup_group.name}” of route “{route.name}” ({people})")
    escalated = f"{overdue}; escalated to {', '.join(groups)}"
    if any(users for _, users in routes) and not deciders:
        return f"{escalated}; nobody who may decide it was told it is overdue."
    return f"{escalated}."
