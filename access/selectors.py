"""Who owes the console a second factor, and with which device; who has which role."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group
from django_otp.plugins.otp_totp.models import TOTPDevice

from access.models import SecondFactorRequirement
from audit.actors import describe_actor


def second_factor_required(user: AbstractBaseUser) -> bool:
    """Whether one of the user's groups must use a second factor."""
    if not user.is_authenticated:
        return False
    return SecondFactorRequirement.objects.filter(group__user=user).exists()


def second_factor_verified(user: AbstractBaseUser) -> bool:
    """Whether this session's user confirmed a code (django-otp's middleware says so)."""
    return getattr(user, "otp_device", None) is not None


def second_factor_owed(user: AbstractBaseUser) -> bool:
    """A console user past the password who must still set up or enter a second factor."""
    return (
        user.is_authenticated
        and user.is_active
        and user.is_staff
        and second_factor_required(user)
        and not second_factor_verified(user)
    )


def confirmed_device(user: AbstractBaseUser) -> TOTPDevice | None:
    """The user's authenticator app, once they confirmed it (one per user)."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()


@dataclass(frozen=True)
class Membership:
    """One person in one group (a role), as their history recorded it: since the record
    that put them in it, and by whom (``by``, in words), with the reason given if one was;
    ``since`` None where their history does not record it."""

    user: AbstractBaseUser
    group: Group
    since: datetime | None = None
    by: str = ""
    reason: str = ""
    # In it already when its history began (its first record written on upgrade): ``since``
    # is when that record was written, not when they were put in it.
    before_history: bool = False


def memberships(*, users=None, group: Group | None = None) -> list[Membership]:
    """Who is in which group now, each since when and given by whom, read from the people's
    history: the record that began their latest unbroken time in the group. For ``users``
    (each one's groups) or for ``group`` (its members)."""
    through = get_user_model().groups.through
    rows = through.objects.select_related("user", "group").order_by("group__name", "user__username")
    if group is not None:
        rows = rows.filter(group=group)
    if users is not None:
        rows = rows.filter(user__in=users)
    rows = list(rows)
    history = get_user_model().history.model
    recorded_in = apps.get_model(history._meta.app_label, f"{history.__name__}_groups")
    user_ids = {row.user_id for row in rows}
    holding: dict[int, set[int]] = defaultdict(set)  # history id: the groups it records
    for history_id, group_id in recorded_in.objects.filter(user_id__in=user_ids).values_list(
        "history_id", "group_id"
    ):
        holding[history_id].add(group_id)
    records: dict[int, list[dict]] = defaultdict(list)
    for record in (
        history.objects.filter(id__in=user_ids)
        .order_by("id", "history_id")
        .values(
            "id",
            "history_id",
            "history_date",
            "history_type",
            "history_actor_kind",
            "history_actor",
            "history_change_reason",
        )
    ):
        records[record["id"]].append(record)
    found = []
    for row in rows:
        start = None
        for record in records.get(row.user_id, []):
            if row.group_id in holding.get(record["history_id"], ()):
                start = start or record
            else:
                start = None
        if start is None:
            found.append(Membership(row.user, row.group))
            continue
        found.append(
            Membership(
                row.user,
                row.group,
                since=start["history_date"],
                by=describe_actor(start["history_actor_kind"], start["history_actor"]),
                reason=start["history_change_reason"] or "",
                before_history=start["history_type"] == "+"
                and start["history_actor_kind"] == "system"
                and start["history_actor"] == "migration",
            )
        )
    return found
