"""Reads of the notifications: which routes a proposal matches, and who they tell; who was
told about a proposal and who is on it; how the deadlines went, and how long each route's
proposals waited for a decision."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from access.selectors import second_factor_required
from approvals import action_types
from approvals.models import Proposal, ProposalStatus
from approvals.selectors import decision_time_percentiles, people_decided
from approvals.services.acts import Act, LacksPermission, act_refusal
from hitlproject.durations import elapsed_said
from hitlproject.vocabulary import INTERRUPTED, REVIEW_ENDINGS_DECIDED_BY_PEOPLE, and_joined
from notifications.models import (
    Claim,
    DecisionDeadline,
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
    ReachedBy,
    Route,
)
from policies.services import in_force


def routes_active() -> list[Route]:
    return list(
        Route.objects.filter(is_active=True)
        .select_related("account")
        .prefetch_related("users", "groups__user_set")
        .order_by("name", "pk")
    )


@dataclass(frozen=True)
class Routing:
    """The active routes, the active people each tells and the channels each of them is
    told on, as read at once. Shared by a process's threads: read, never changed."""

    routes: tuple[Route, ...]
    recipients: dict[int, list]  # by route
    channels: dict[int, list[str]]  # by user

    def recipients_of(self, proposal: Proposal) -> list[tuple[Route, list]]:
        """The routes ``proposal`` matches, each with the people it tells."""
        return [
            (route, self.recipients[route.pk])
            for route in self.routes
            if route_matches(route, proposal)
        ]


def routing() -> Routing:
    """The routing as of now. A submission routes what it sends to a person, so a process
    keeps what it read under the rules' version token, which the database changes at every
    write to the routes, the people and their channels (policies.models.RulesVersion): one
    statement while it holds, read again at the next change."""
    return in_force().read_once("routing", _routing_read)


def _routing_read() -> Routing:
    routes = routes_active()
    recipients = {route.pk: route_recipients(route) for route in routes}
    everyone = {user.pk: user for users in recipients.values() for user in users}
    return Routing(
        routes=tuple(routes), recipients=recipients, channels=channels_of(everyone.values())
    )


def route_matches(route: Route, proposal: Proposal) -> bool:
    return (
        (route.account_id is None or route.account_id == proposal.account_id)
        and (not route.channel or route.channel == proposal.account.channel)
        and (not route.action_type or route.action_type == proposal.action_type)
        and (proposal.risk or 0) >= route.minimum_risk
    )


def route_recipients(route: Route) -> list:
    """The active users a route tells: its users and its groups' members, each once."""
    users = {user.pk: user for user in route.users.all()}
    for group in route.groups.all():
        users.update((user.pk, user) for user in group.user_set.all())
    return [user for user in users.values() if user.is_active]


def group_recipients(group) -> list:
    return list(group.user_set.filter(is_active=True)) if group is not None else []


def who_may_decide(users: Iterable, proposal: Proposal, *, reviewers: Iterable[int]) -> list:
    """Of ``users``, those who may decide ``proposal`` now, by the console's rule (the
    permission its action type asks, not the owner of its agent, not one who decided it in
    this round: ``reviewers``): those who may reject it."""
    reviewers = list(reviewers)
    return [
        user
        for user in users
        # The console lets in staff alone (and messages go to them alone).
        if user.is_staff and act_refusal(user, proposal, Act.REJECT, reviewers=reviewers) is None
    ]


def why_not_theirs(user, proposal: Proposal, *, reviewers: Iterable[int]) -> str:
    """Why ``user``, told of ``proposal``, may not decide it now, by the console's rule, and
    who does, plainly ("operator may not decide on policy change proposals: a policy owner
    decides it; you may read it."); "" when they may (they may reject it)."""
    refusal = act_refusal(user, proposal, Act.REJECT, reviewers=reviewers)
    if refusal is None:
        return ""
    if isinstance(refusal, LacksPermission):
        decided_by = action_types.named(proposal.action_type).decided_by
        return f"{refusal.message.rstrip('.')}: {decided_by} decides it; you may read it."
    return f"{refusal.message} You may read it."


def slack_lacks_second_factor(user) -> str:
    """Why a press on Slack may not approve or reject for ``user``: a group of theirs must use
    a second factor, which the console asks of them at every login and a press on Slack does
    not (unless Slack's own sign-in is taken for one: ``SLACK_SIGN_IN_IS_SECOND_FACTOR``);
    "" when it may. Taking a proposal ("I'll take it") decides nothing, and stays open."""
    if settings.SLACK_SIGN_IN_IS_SECOND_FACTOR or not second_factor_required(user):
        return ""
    return (
        f"{user.get_username()} is in a group that must use a second factor, which a press on "
        "Slack does not ask for"
    )


def undecidable_by_group(group, *, action_type: str = "") -> list[str]:
    """The action types (``action_type``, or every one where it is empty), by label, whose
    proposals no active member of ``group`` who may log in to the console has the permission
    to decide: a proposal of one escalated to the group reaches nobody who can decide it."""
    members = group_recipients(group)
    has = {}
    undecidable = []
    for name in [action_type] if action_type else action_types.names():
        action = action_types.get(name)
        if action is None:
            continue
        permission = action.decide_permission
        if permission not in has:
            has[permission] = any(user.is_staff and user.has_perm(permission) for user in members)
        if not has[permission]:
            undecidable.append(action.label)
    return undecidable


def channels_of(users: Iterable) -> dict[int, list[str]]:
    """The channels each user is told on: as they chose, or by email if they never chose
    (and have an address)."""
    users = list(users)
    chosen = {r.user_id: r for r in ReachedBy.objects.filter(user__in=[u.pk for u in users])}
    channels = {}
    for user in users:
        choice = chosen.get(user.pk)
        wanted = (
            [c for c in NotificationChannel.values if getattr(choice, c)]
            if choice is not None
            else [NotificationChannel.EMAIL]
        )
        channels[user.pk] = [c for c in wanted if c != NotificationChannel.EMAIL or user.email]
    return channels


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def users_by_email(email: str, *, active: bool = True) -> Sequence:
    """The active (or, ``active=False``, deactivated) console users with this address (ASCII
    case aside: the database's and Python's case folding also fold look-alikes such as the
    Kelvin sign or a dotless i onto ASCII letters, and another person's address is not one's
    own)."""
    wanted = email.translate(_ASCII_LOWER)
    return [
        user
        for user in get_user_model().objects.filter(email__iexact=email, is_active=active)[:10]
        if user.email.translate(_ASCII_LOWER) == wanted
    ][:2]


def proposal_notifications(*, proposal: Proposal) -> list[Notification]:
    """Who was told about a proposal, on which channel, when, and how the sending went, as
    recorded; each with ``route_name``, the name its route had when the message was written
    (not the name it has since been given): of the route's records dated by then, the one
    written last (``history_id``, not the clocks of the hosts that wrote them)."""
    notifications = list(
        Notification.objects.filter(proposal=proposal)
        .select_related("recipient")
        .order_by("created_at", "pk")
    )
    names = defaultdict(list)
    for version in (
        Route.history.filter(id__in={n.route_id for n in notifications if n.route_id})
        .order_by("history_id")
        .values("id", "name", "history_date")
    ):
        names[version["id"]].append(version)
    for notification in notifications:
        then = [
            version["name"]
            for version in names.get(notification.route_id, ())
            if version["history_date"] <= notification.created_at
        ]
        notification.route_name = then[-1] if then else ""
        notification.proposal = proposal  # one read for all, as a held one says what it will do
    return notifications


def told_of_before(*, proposal_ids: Iterable[int]) -> dict[int, list[Notification]]:
    """The messages that told people of each proposal (not the updates of them), in any
    review round, on any channel: sent, or perhaps sent (an attempt interrupted before its
    sender recorded it), with their recipients; by proposal id, oldest first."""
    told: dict[int, list[Notification]] = defaultdict(list)
    for notification in (
        Notification.objects.filter(
            Q(status=NotificationStatus.SENT)
            | Q(status__in=[NotificationStatus.NOT_SENT, NotificationStatus.FAILED])
            & Q(log__icontains=INTERRUPTED),
            proposal_id__in=list(proposal_ids),
            updates__isnull=True,
        )
        .select_related("recipient")
        .order_by("created_at", "pk")
    ):
        told[notification.proposal_id].append(notification)
    return told


def sent_with(notification: Notification) -> list[int]:
    """The proposals whose messages went in the one message with ``notification`` (a digest,
    or failures told together), by id: those its person was sent on that channel by that one
    send, which dated them all alike. ``notification`` may be a version of it in its history."""
    if not notification.in_digest or notification.sent_at is None:
        return []
    return list(
        Notification.objects.filter(
            recipient_id=notification.recipient_id,
            channel=notification.channel,
            sent_at=notification.sent_at,
            in_digest=True,
        )
        .exclude(pk=notification.id)
        .order_by("created_at", "pk")
        .values_list("proposal_id", flat=True)
    )


def claim_live(*, proposal: Proposal, now: datetime | None = None) -> Claim | None:
    """Who is on a proposal now, if anyone: a lapsed claim is nobody's."""
    claim = Claim.objects.filter(proposal=proposal).select_related("user").first()
    return claim if claim is not None and claim.is_live(now) else None


def deadlines_running():
    """The deadlines of review rounds still under way: not ended, their proposal waiting for
    a person in that round. What the sweep reminds about and escalates
    (``notifications.deadlines``), and what the queue's Due column and its overdue filter
    read."""
    return DecisionDeadline.objects.filter(
        ended_at__isnull=True,
        proposal__status=ProposalStatus.PENDING_REVIEW,
        proposal__review_round=F("review_round"),
    )


def overdue_at(now: datetime) -> Q:
    """A deadline overdue at ``now``: it was due by then (the sweep escalates it)."""
    return Q(due_at__lte=now)


def may_have_told() -> Q:
    """A message that went to its person, or may have gone (an attempt interrupted before its
    sender recorded it)."""
    return Q(status=NotificationStatus.SENT) | Q(
        status__in=[
            NotificationStatus.NOT_SENT,
            NotificationStatus.FAILED,
            NotificationStatus.PENDING,
        ],
        log__icontains=INTERRUPTED,
    )


def on_its_way() -> Q:
    """A message not sent yet that is still to go: to be sent, or held for a digest or to go
    with other failures."""
    return Q(status__in=[NotificationStatus.PENDING, NotificationStatus.HELD])


def reached_someone() -> Q:
    """A message that went to its person, may have gone, or is on its way: not one given up,
    nor one not sent (its person deactivated, say)."""
    return may_have_told() | on_its_way()


# The messages that tell a person a proposal waits in a review round (not an update of one).
TOLD_IT_WAITS = (NotificationKind.WAITING, NotificationKind.REMINDER, NotificationKind.ESCALATION)


def _told_now(messages: Q) -> tuple[Exists, Exists]:
    """Whether a proposal has such ``messages`` of its current review round (that it waits, a
    reminder, an escalation), and of its last failure."""
    reached = Notification.objects.filter(messages, proposal=OuterRef("pk"))
    told_it_waits = reached.filter(review_round=OuterRef("review_round"), kind__in=TOLD_IT_WAITS)
    # Each failure is told as it is recorded, after it was last approved to run (a retry
    # approves it anew); one approved before that was recorded (null) has had one failure.
    told_it_failed = reached.filter(
        kind=NotificationKind.FAILED,
        created_at__gte=Coalesce(OuterRef("approved_at"), OuterRef("created_at")),
    )
    return Exists(told_it_waits), Exists(told_it_failed)


def _waiting(now: datetime) -> Q:
    return Q(status=ProposalStatus.PENDING_REVIEW) & ~Q(review_expires_at__lte=now)


def told_nobody(now: datetime) -> Q:
    """The proposals that reached nobody: one waiting for a person (within its review window:
    one past it no longer waits, ``Proposal.objects.overdue``) of which no message of its
    current review round reached anyone or is on its way (``reached_someone``; an edit that
    started its review again, or a kill switch that sent it back to people, began a new
    round, told afresh); one whose execution failed (not sent to run again since) of whose
    failure no message did, a failure before a person's retry being another's. The one
    definition: the dashboard's and the routes list's counts (``told_nobody_counts``) and the
    proposal list's "Who was told: Nobody" (``notifications.admin.ToldNobodyFilter``)."""
    told_it_waits, told_it_failed = _told_now(reached_someone())
    return (_waiting(now) & ~told_it_waits) | (Q(status=ProposalStatus.FAILED) & ~told_it_failed)


def told_not_yet(now: datetime) -> Q:
    """The proposals, waiting or failed as ``told_nobody`` reads them, of which no message
    reached anyone yet but one is on its way (held for a digest, or to go with other
    failures, or about to be sent): nobody was told of them yet, and somebody will be. The
    dashboard counted them as told; it now says them apart, linked to the proposal list's
    "Who was told: Not yet"."""
    went_waits, went_failed = _told_now(may_have_told())
    coming_waits, coming_failed = _told_now(on_its_way())
    return (_waiting(now) & ~went_waits & coming_waits) | (
        Q(status=ProposalStatus.FAILED) & ~went_failed & coming_failed
    )


@dataclass(frozen=True)
class ToldNobody:
    """How many proposals reached nobody now (``told_nobody``): waiting, and failed; and how
    many nobody was told of yet, a message about them on its way (``told_not_yet``)."""

    waiting: int
    failed: int
    waiting_not_yet: int
    failed_not_yet: int


def _by_status(proposals: Q) -> dict[str, int]:
    return Proposal.objects.filter(proposals).aggregate(
        waiting=Count("pk", filter=Q(status=ProposalStatus.PENDING_REVIEW)),
        failed=Count("pk", filter=Q(status=ProposalStatus.FAILED)),
    )


def told_nobody_counts() -> ToldNobody:
    now = timezone.now()
    not_yet = _by_status(told_not_yet(now))
    return ToldNobody(
        **_by_status(told_nobody(now)),
        waiting_not_yet=not_yet["waiting"],
        failed_not_yet=not_yet["failed"],
    )


def due_said(due_at: datetime | None, now: datetime) -> str:
    """When a decision is due, from ``now``, as the queue and a bulk confirmation say it:
    "in 12 min", "overdue by 3.5 h"; "" where no deadline runs."""
    if due_at is None:
        return ""
    if due_at <= now:  # as ``overdue_at``
        return f"overdue by {elapsed_said(now - due_at)}"
    return f"in {elapsed_said(due_at - now)}"


@dataclass(frozen=True)
class DeadlineFigures:
    """The review rounds with a deadline that ended in the period, by how they ended, and
    those still under review now (not counted as met or missed: they are neither yet)."""

    days: int
    decided_in_time: int
    decided_late: int
    expired: int  # nobody decided: missed
    not_decided: int  # withdrawn or superseded first: nobody had to decide
    still_open: int
    still_open_overdue: int

    @property
    def counted(self) -> int:
        return self.decided_in_time + self.decided_late + self.expired

    @property
    def share_in_time(self) -> float | None:
        return self.decided_in_time / self.counted if self.counted else None


def deadline_figures(*, days: int) -> DeadlineFigures:
    now = timezone.now()
    decided = Q(ended_as__in=REVIEW_ENDINGS_DECIDED_BY_PEOPLE)
    in_time = Q(ended_at__lte=F("due_at"))
    ended = DecisionDeadline.objects.filter(ended_at__gte=now - timedelta(days=days)).aggregate(
        decided_in_time=Count("pk", filter=decided & in_time),
        decided_late=Count("pk", filter=decided & ~in_time),
        expired=Count("pk", filter=Q(ended_as=ProposalStatus.EXPIRED)),
        not_decided=Count("pk", filter=~decided & ~Q(ended_as=ProposalStatus.EXPIRED)),
    )
    still_open = DecisionDeadline.objects.filter(ended_at__isnull=True).aggregate(
        all=Count("pk"), overdue=Count("pk", filter=overdue_at(now))
    )
    return DeadlineFigures(
        days=days,
        **ended,
        still_open=still_open["all"],
        still_open_overdue=still_open["overdue"],
    )


@dataclass(frozen=True)
class RouteDecisionTimes:
    route: str
    is_active: bool
    decisions: int
    median: timedelta | None
    p90: timedelta | None


def decision_times_by_route(*, days: int) -> list[RouteDecisionTimes]:
    """The dashboard's time to a person's decision, of the proposals each route told about
    in the round people first decided (``first_people_decisions``: not a round a kill switch
    began by holding it back): a proposal two routes told about counts for both. A message
    held for a digest that the decision came before told nobody (held still, or not sent
    once the digest ran): its route did not tell of that proposal; one not sent after an
    attempt that was interrupted (it may have gone) may have told them, and counts."""
    decided = people_decided(since=timezone.now() - timedelta(days=days))
    told_by = Notification.objects.filter(
        ~Q(status__in=[NotificationStatus.HELD, NotificationStatus.NOT_SENT])
        | Q(status=NotificationStatus.NOT_SENT, log__icontains=INTERRUPTED),
        proposal=OuterRef("pk"),
        review_round=OuterRef("first_decided_round"),
        kind=NotificationKind.WAITING,
    )
    routes = Route.objects.filter(
        Exists(decided.filter(Exists(told_by.filter(route=OuterRef(OuterRef("pk"))))))
    ).order_by("name", "pk")
    figures = []
    for route in routes:
        waits = decision_time_percentiles(decided.filter(Exists(told_by.filter(route=route))))
        figures.append(
            RouteDecisionTimes(
                route=route.name,
                is_active=route.is_active,
                decisions=waits["count"],
                median=waits["median"],
                p90=waits["p90"],
            )
        )
    return figures


def switch_told_said(
    switch_id: int, *, since: datetime, named: Sequence[str] = (), moved: bool = False
) -> str:
    """Who was told that a kill switch was engaged, at its last engaging (``since``), by its
    messages in the outbox: "Told: operator and policy-owner.", "Being told: operator.",
    "Not told: auditor (see the outbox)."; where none was written, why: "Nobody was told it
    is engaged: no active route names anyone for what it covers.", or, where the routes for
    what it covers name people (``named``, their usernames), that none of them has a channel
    to be told on. ``moved``: moved while engaged (``since`` its last move), those told it was
    moved there (a message whose ``about`` says from where), not those of what it covered
    before, withdrawn once it no longer covered it."""
    messages = Notification.objects.filter(
        kill_switch_id=switch_id,
        kind=NotificationKind.SWITCH_ENGAGED,
        created_at__gte=since - timedelta(seconds=1),
    )
    if moved:
        messages = messages.exclude(about="")
    messages = list(messages.select_related("recipient").order_by("recipient__username", "pk"))
    if not messages and named:
        return (
            f"Nobody was told it is engaged: the routes for what it covers name "
            f"{and_joined(list(named))}, {'who has' if len(named) == 1 else 'who have'} no "
            "channel to be told on (none chosen, or email without an address)."
        )
    if not messages:
        return "Nobody was told it is engaged: no active route names anyone for what it covers."
    told, coming, not_told = {}, {}, {}
    for message in messages:
        name = message.recipient.get_username()
        if message.status == NotificationStatus.SENT:
            told[name] = True
        elif message.status in (NotificationStatus.PENDING, NotificationStatus.HELD):
            coming[name] = True
        else:
            not_told[name] = True
    coming = {name: True for name in coming if name not in told}
    not_told = {name: True for name in not_told if name not in told and name not in coming}
    said = []
    if told:
        said.append(f"Told: {and_joined(list(told))}.")
    if coming:
        said.append(f"Being told: {and_joined(list(coming))}.")
    if not_told:
        said.append(f"Not told: {and_joined(list(not_told))} (see the outbox).")
    return " ".join(said)
