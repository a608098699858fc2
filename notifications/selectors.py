"""Reads of the notifications: which routes a proposal matches, and who they tell; who was
told about a proposal, its deadlines, and who is on it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from django.contrib.auth import get_user_model

from approvals.models import Proposal
from notifications.models import (
    Claim,
    DecisionDeadline,
    Notification,
    NotificationChannel,
    ReachedBy,
    Route,
)


def routes_active() -> list[Route]:
    return list(
        Route.objects.filter(is_active=True)
        .select_related("account")
        .prefetch_related("users", "groups__user_set")
        .order_by("name", "pk")
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


def users_by_email(email: str) -> Sequence:
    """The active console users with this address (case aside)."""
    return list(get_user_model().objects.filter(email__iexact=email, is_active=True)[:2])


def proposal_notifications(*, proposal: Proposal) -> list[Notification]:
    """Who was told about a proposal, on which channel, when, and how the sending went, as
    recorded; each with ``route_name``, the name its route had when the message was written
    (not the name it has since been given)."""
    notifications = list(
        Notification.objects.filter(proposal=proposal)
        .select_related("recipient")
        .order_by("created_at", "pk")
    )
    names = defaultdict(list)
    for version in (
        Route.history.filter(id__in={n.route_id for n in notifications if n.route_id})
        .order_by("history_date", "history_id")
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
    return notifications


def proposal_deadlines(*, proposal: Proposal) -> list[DecisionDeadline]:
    """The deadlines of a proposal's review rounds, the first round first."""
    return list(
        DecisionDeadline.objects.filter(proposal=proposal)
        .select_related("escalated_to")
        .order_by("review_round")
    )


def claim_live(*, proposal: Proposal, now: datetime | None = None) -> Claim | None:
    """Who is on a proposal now, if anyone: a lapsed claim is nobody's."""
    claim = Claim.objects.filter(proposal=proposal).select_related("user").first()
    return claim if claim is not None and claim.is_live(now) else None
