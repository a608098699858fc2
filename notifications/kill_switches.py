"""Telling the people who decide that a kill switch was engaged, or released, over what they
are told of: who is told (the active routes whose scope meets the switch's, their people and
groups, on their own channels), and what each message says, drawn as it goes, so that it
says what is so then (who engaged it, why, what it holds back by then) or is not sent (the
switch released, or engaged again, before it went). ``policies`` knows nothing of this: the
switch's saves reach it through ``notifications.receivers``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from approvals.selectors import (
    HELD_BY_KILL_SWITCH,
    left_by_kill_switch,
    proposals_sent_by_kill_switch,
    proposals_under_way,
)
from audit.actors import changed_by
from hitlproject.addresses import served_at
from hitlproject.formats import console_time
from hitlproject.validation import one_line
from hitlproject.vocabulary import AFTER_AN_UNSURE_ATTEMPT, as_sentence, how_many
from notifications.models import Notification, NotificationKind, NotificationStatus, Route
from notifications.selectors import routing
from policies.models import KillSwitch, KillSwitchScope
from policies.services import (
    kill_switch_called_as_saved,
    kill_switch_last_move,
    kill_switch_last_run,
    kill_switches_still_over,
)

# A switch's message goes this long after the save, drawn then: the figures say what it did
# by then (what its save held back at once, what it sent to a person since, what a person let
# run past it), and a switch engaged by mistake and released at once tells nobody anything.
TOLD_AFTER = timedelta(seconds=10)

# The proposal list's "every status" (``approvals.admin.EVERY_STATUS``), as the switch's
# history page links it.
EVERY_STATUS = "all"


def switch_recipients(switch: KillSwitch) -> list[tuple[Route, list]]:
    """The active routes that tell of anything the switch covers, each with the people it
    tells: any route for everything; for one account, the routes for it, for its channel or
    for any; for one channel, the routes for it, for an account on it or for any. Action
    types and risks aside: whatever the switch holds back is sent to a person."""
    current = routing()
    routes = current.routes
    if switch.scope == KillSwitchScope.ACCOUNT:
        account = switch.account
        routes = [
            route
            for route in routes
            if route.account_id in (None, account.pk) and route.channel in ("", account.channel)
        ]
    elif switch.scope == KillSwitchScope.CHANNEL:
        routes = [
            route
            for route in routes
            if route.channel in ("", switch.channel)
            and (route.account_id is None or route.account.channel == switch.channel)
        ]
    return [(route, current.recipients[route.pk]) for route in routes]


def switch_told_engaged(switch: KillSwitch) -> list[Notification]:
    """The switch's last message to each person on each channel, where it says it is engaged:
    those told it is engaged (or about to be) and not told since that it was released or
    that it no longer covers what they were told it covered, read from the outbox."""
    last: dict[tuple[int, str], Notification] = {}
    for message in (
        Notification.objects.filter(kill_switch=switch)
        .select_related("recipient", "route")
        .order_by("pk")
    ):
        last[message.recipient_id, message.channel] = message
    return [each for each in last.values() if each.kind == NotificationKind.SWITCH_ENGAGED]


def _console(path: str) -> str:
    return (settings.CONSOLE_URL or served_at()) + path


def switch_url(switch_id: int) -> str:
    return _console(reverse("admin:policies_killswitch_change", args=[switch_id]))


def held_by_switch_url(switch_id: int) -> str:
    """The proposal list of those the switch held back before they ran."""
    query = urlencode({"status": EVERY_STATUS, HELD_BY_KILL_SWITCH: switch_id})
    return _console(reverse("admin:approvals_proposal_changelist") + "?" + query)


def sent_by_switch_url(switch_id: int) -> str:
    """The proposal list of those the switch sent to a person (its history page's link)."""
    query = urlencode({"status": EVERY_STATUS, "kill_switch": switch_id})
    return _console(reverse("admin:approvals_proposal_changelist") + "?" + query)


@dataclass(frozen=True)
class Turn:
    """A switch's last engaging (or release): when, by whom, by its history."""

    at: datetime
    by: str


def _turns(switch: KillSwitch) -> tuple[Turn | None, Turn | None]:
    """The switch's last engaging and, if it is released now, its release
    (``kill_switch_last_run``): when, and by whom."""
    return tuple(
        Turn(record.history_date, changed_by(record)) if record is not None else None
        for record in kill_switch_last_run(switch)
    )


@dataclass(frozen=True)
class SwitchMessage:
    """What a message about a kill switch says, drawn as it goes: its subject (email), its
    headline, its paragraphs, and its links (words, address)."""

    subject: str
    headline: str
    paragraphs: tuple[str, ...]
    links: tuple[tuple[str, str], ...]
    # Why its reader is told: the route that names them.
    told_because: str = ""


# How much of a switch's reason an email's subject quotes (its body quotes all of it).
SUBJECT_REASON = 80


def _subject_cut(reason: str) -> str:
    return reason if len(reason) <= SUBJECT_REASON else reason[: SUBJECT_REASON - 1] + "…"


def _covers_said(switch: KillSwitch) -> str:
    if switch.scope == KillSwitchScope.GLOBAL:
        return "nothing"
    return f"nothing on {switch.scope_in_words()}"


def _called(switch: KillSwitch, notification: Notification) -> str:
    """The switch as its message names it: as things stood at the save that queued it
    (``kill_switch_called_as_saved``), with its number where another switch shared its scope
    then, whatever became of that other by the time it goes. What it was moved off (the
    message's ``about``) was named so as it was queued."""
    return kill_switch_called_as_saved(switch, at=notification.created_at)


def switch_message(notification: Notification, *, now: datetime | None = None) -> SwitchMessage:
    """The message a switch's notification says, as things are ``now``."""
    now = now or timezone.now()
    switch = KillSwitch.objects.select_related("account").get(pk=notification.kill_switch_id)
    on = _called(switch, notification)
    engaged, released = _turns(switch)
    since = engaged.at if engaged else switch.updated_at
    until = released.at if released else now
    # Told it is engaged on what it was moved to: what it did there, since it was moved.
    moved = (
        _saved_as_told(switch, notification)
        if notification.kind == NotificationKind.SWITCH_ENGAGED and notification.about
        else None
    )
    counted_since = max(since, moved.at) if moved else since
    ever = proposals_sent_by_kill_switch(switch)
    sent = [each for each in ever if counted_since <= each.at <= until]
    held = {each.proposal_id for each in sent if each.held_back}
    routed = {each.proposal_id for each in sent if not each.held_back} - held
    # Of those, the ones held back after an attempt that may have run (as ``LeftBySwitch``).
    after_attempts = {each.proposal_id for each in sent if each.after_attempts}
    links = []
    if held and notification.kind == NotificationKind.SWITCH_ENGAGED:
        links.append(("The approved proposals it held back", held_by_switch_url(switch.pk)))
    # Moved, with nothing sent since: the list still holds what it sent before the move.
    if sent or (moved and ever):
        listed = {each.proposal_id for each in ever}
        before = f"it was moved to {on}" if moved else "it was last engaged"
        links.append(
            (_sent_listed_said(listed, held | routed, before), sent_by_switch_url(switch.pk))
        )
    links.append((f"The kill switch on {on}", switch_url(switch.pk)))
    reason = as_sentence(switch.reason) if switch.reason.strip() else "no reason given."
    if notification.kind == NotificationKind.SWITCH_MOVED:
        return _moved_message(notification, switch, links=links)
    if notification.kind == NotificationKind.SWITCH_ENGAGED:
        by = engaged.by if engaged else "someone (not recorded)"
        opening = f"The kill switch on {on} was engaged by {by} at {console_time(since)}"
        if moved:
            opening = (
                f"The kill switch engaged on {notification.about} was moved to {on} by "
                f"{moved.by} at {console_time(moved.at)}. It has been engaged since "
                f"{console_time(since)}, when {by} engaged it"
            )
        # Its save held back what it covered (``policies.receivers``); a person's approval
        # since lets a proposal run past it (``executors.runner._kill_switch_hold``).
        paragraphs = [
            f"{opening}: {reason}",
            f"While it is engaged, {_covers_said(switch)} runs without a person's approval: "
            "what its policy would let run at once waits for a person, and what was approved "
            f"and not yet carried out when it was {'moved there' if moved else 'engaged'} went "
            "back to a person then, to approve again. What a person approves (or sends to run "
            "again) while it is engaged runs: the switch holds back nothing a person approved "
            "since it was engaged.",
            _held_said(
                switch,
                held=held,
                after_attempts=after_attempts,
                routed=routed,
                now=now,
                since=f" since it was moved to {on}" if moved else "",
            ),
        ]
        engaged_on = f"moved to {on}" if moved else f"engaged on {on}"
        return SwitchMessage(
            subject=f"[HITL] Kill switch {engaged_on}: {_subject_cut(one_line(reason))}",
            headline=f"Kill switch {engaged_on}",
            paragraphs=tuple(paragraphs),
            links=tuple(links),
        )
    by = released.by if released else "someone (not recorded)"
    engaged_by = f" by {engaged.by}" if engaged else ""
    released_on = f"The kill switch on {on} was released by {by} at {console_time(until)}."
    # Released and moved in the same save: released on what it covered (the message's
    # ``about``), judged by that, and left released on what it was moved to.
    covered = _covered_before(switch, notification) if notification.about else None
    if notification.about:
        released_on = (
            f"The kill switch on {notification.about} was released by {by} at "
            f"{console_time(until)}, and moved to {on} in the same save: released, it holds "
            "nothing back there either."
        )
        on = notification.about
    paragraphs = [
        f"{released_on} {_had_been_said(switch, since=since, engaged_by=engaged_by)}: {reason}",
        kill_switches_still_over(
            covered or switch, besides=switch.pk, at=notification.created_at
        ).said(
            nothing="Nothing it covered",
            runs_again="What it covered runs as its policies say again",
        )
        or (
            "What it covered runs as its policies say again: what a policy lets run now runs "
            "without a person."
        ),
        _left_waiting_said(switch),
    ]
    return SwitchMessage(
        subject=f"[HITL] Kill switch released on {on}",
        headline=f"Kill switch released on {on}",
        paragraphs=tuple(paragraphs),
        links=tuple(links),
    )


def _had_been_said(switch: KillSwitch, *, since: datetime, engaged_by: str) -> str:
    """Since when a released switch had been engaged and by whom, and, moved while engaged,
    since when it had covered what it covered then, off what and by whom
    (``kill_switch_last_move``): the move is not said as its engaging."""
    engaging, _ = kill_switch_last_run(switch)
    moved = kill_switch_last_move(switch, engaging=engaging)
    if moved is None:
        return f"It had been engaged since {console_time(since)}{engaged_by}"
    return (
        f"It had been on {switch.scope_in_words()} since {console_time(moved.at)} (moved from "
        f"{moved.moved_from} by {moved.by}); engaged since {console_time(since)}{engaged_by}"
    )


def _saved_as_told(switch: KillSwitch, notification: Notification) -> Turn:
    """The save of the switch a message was written in (a move): its history's last record
    as the message was written, by whom and when."""
    record = (
        switch.history.filter(history_date__lte=notification.created_at)
        .order_by("-history_id")
        .first()
    )
    if record is None:
        return Turn(notification.created_at, "someone (not recorded)")
    return Turn(record.history_date, changed_by(record))


def _covered_before(switch: KillSwitch, notification: Notification) -> KillSwitch | None:
    """What the switch covered before the save a message was written in (a move, or a
    release and move), by its history, as an unsaved switch; None where its history does not
    say."""
    before = next(
        iter(
            switch.history.filter(history_date__lte=notification.created_at).order_by(
                "-history_id"
            )[1:2]
        ),
        None,
    )
    if before is None:
        return None
    return KillSwitch(scope=before.scope, account=before.account, channel=before.channel)


def _moved_message(notification: Notification, switch: KillSwitch, *, links: list) -> SwitchMessage:
    """A switch moved while engaged off what its reader was told it covered (the message's
    ``about``): it no longer covers that, who moved it and when (its history's save as the
    message was written), and what it covers now, or that it was released since."""
    was = notification.about or "what it covered"
    moved = _saved_as_told(switch, notification)
    by, at = moved.by, moved.at
    on = _called(switch, notification)
    runs_again = f"What a policy lets run on {was} runs without a person's approval again"
    # What it covered before the move, by its history, is what others may still hold back.
    before = _covered_before(switch, notification)
    if before is None:  # its history does not say what it covered
        runs = f"{runs_again}, unless another kill switch covers it."
    else:
        runs = kill_switches_still_over(before, besides=None, at=notification.created_at).said(
            nothing=f"Nothing on {was}", runs_again=runs_again
        )
        runs = runs or f"{runs_again}: no kill switch covers it now."
    now = f"It covers {on} now." if switch.engaged else "It has been released since."
    return SwitchMessage(
        subject=f"[HITL] Kill switch no longer on {was}"
        + (f": moved to {on}" if switch.engaged else ""),
        headline=f"Kill switch no longer covers {was}",
        paragraphs=(
            f"The kill switch engaged on {was} was moved by {by} at {console_time(at)}: it "
            f"no longer covers {was}. {now}",
            f"{runs} Moving the switch runs none of the proposals it sent to a person: each "
            "runs once a person approves it.",
        ),
        links=tuple(links),
    )


def _sent_listed_said(listed: set[int], counted: set[int], before: str) -> str:
    """The link to the list of what a switch sent to a person (``sent_by_switch_url``: every
    proposal it ever did), said as that list: where it holds more than the message counts
    (``counted``: since ``before``, "it was moved to account demo"), how many more."""
    earlier = len(listed - counted)
    if not earlier:
        return "The proposals it sent to a person"
    if earlier == len(listed):  # none since then
        each = "" if earlier == 1 else "all "
        return f"The {how_many(earlier, 'proposal')} it has sent to a person, {each}before {before}"
    return (
        f"The {how_many(len(listed), 'proposal')} it has sent to a person, {earlier} of them "
        f"before {before}"
    )


def _held_said(
    switch: KillSwitch,
    *,
    held: set[int],
    after_attempts: set[int],
    routed: set[int],
    now: datetime,
    since: str = "",
) -> str:
    """What an engaged switch has done so far (``since``: " since it was moved to …", where
    counted since then) and what it is about to, as of ``now``. Of those it ``held`` back,
    ``after_attempts`` were held between two attempts, after one that got no sure answer:
    not "before they ran" (as ``LeftBySwitch.sent_said`` counts them)."""
    said = []
    if held:
        after = held & after_attempts
        before = held - after
        them = "it" if len(held) == 1 else "each"
        these = f"{how_many(len(held), 'approved proposal')}{since}"
        before_ran = f"before {'it' if len(before) == 1 else 'they'} ran"
        if not after:
            these = f"{these} {before_ran} (listed below)"
        elif not before:
            these = f"{these} {AFTER_AN_UNSURE_ATTEMPT} (listed below)"
        else:
            these = (
                f"{these} (listed below), {len(before)} {before_ran} and {len(after)} "
                f"{AFTER_AN_UNSURE_ATTEMPT}"
            )
        said.append(f"it has held back {these}: {them} went back to a person, to approve again")
    if routed:
        was = "it was" if len(routed) == 1 else "they were"
        said.append(
            f"it has sent {how_many(len(routed), 'proposal')} to a person{since} as {was} made"
        )
    under_way = proposals_under_way()
    scope = {
        "account": switch.account if switch.scope == KillSwitchScope.ACCOUNT else None,
        "channel": switch.channel,
    }
    approved, sending = under_way.held_by(**scope), under_way.sending_by(**scope)
    if approved:
        # Every one it covers not yet carried out was held back by the save that engaged it
        # (or moved it), but those a person approved since, which run past it.
        are, each = (
            ("is", "a person approved it") if approved == 1 else ("are", "a person approved each")
        )
        said.append(
            f"{how_many(approved, 'approved proposal')} it covers {are} not yet carried out: "
            f"{each} while the switch was engaged, which lets it run"
        )
    if sending:
        has = "has" if sending == 1 else "have"
        said.append(
            f"{how_many(sending, 'approved proposal')} {has} a request at its channel, which "
            "the switch does not call back: the channel's answer decides it"
        )
    if not said:
        if since:  # what it held back before the move is not counted here: not "nothing"
            return (
                f"As of {console_time(now)}, it has held nothing back{since}: no approved "
                "proposal it covers there was waiting to be carried out then, and none has "
                "been made since."
            )
        return (
            f"As of {console_time(now)}, it has held nothing back: no approved proposal it "
            "covers was waiting to be carried out, and none has been made since."
        )
    return f"As of {console_time(now)}, " + "; ".join(said) + "."


def _left_waiting_said(switch: KillSwitch) -> str:
    """What a released switch leaves: the proposals it sent to a person, and how many of
    them still wait (releasing it runs none of them), counted as the console's message after
    the release counts them (``left_by_kill_switch``)."""
    left = left_by_kill_switch(switch)
    said = left.sent_said()
    if not left.sent:
        return said
    waiting = len(left.waiting)
    if not waiting:
        return f"{said} None of them waits for a person now."
    still = "still waits" if waiting == 1 else "still wait"
    return (
        f"{said} {waiting} of them {still} for a person's decision: releasing the switch runs "
        f"none of them; {'it runs' if waiting == 1 else 'each runs'} once a person approves it."
    )


def switch_message_not_so(notification: Notification) -> str:
    """Why a switch's message is not to be sent, being no longer so as it goes, or "": one
    saying it was engaged, once it is released; one saying it was released, once it is
    engaged again; any, once a later message of the switch to the same person on the same
    channel is recorded (that one says what is so); one saying it was released, or that it
    no longer covers what it did, to a person whose message that it was engaged did not go
    and will not, nor any before it since a release they were told of (released or moved
    before it went: they were told nothing of it). A switch
    told of is not deleted (``Notification.kill_switch`` protects it)."""
    engaged = KillSwitch.objects.filter(pk=notification.kill_switch_id).values_list(
        "engaged", flat=True
    )[0]
    if notification.kind == NotificationKind.SWITCH_ENGAGED and not engaged:
        return "not sent: the kill switch was released before it went"
    if notification.kind == NotificationKind.SWITCH_RELEASED and engaged:
        return "not sent: the kill switch was engaged again before it went"
    same = Notification.objects.filter(
        kill_switch_id=notification.kill_switch_id,
        recipient_id=notification.recipient_id,
        channel=notification.channel,
    )
    if same.filter(pk__gt=notification.pk).exists():
        return "not sent: a later message about the kill switch to them says what is so"
    if notification.kind != NotificationKind.SWITCH_ENGAGED:
        # Told it was engaged by any message since the last release they may have read, not
        # by the last such message alone: one saying it was moved onto what they are told
        # of, not sent as it was released first, leaves them told by the one before it.
        earlier = list(same.filter(pk__lt=notification.pk).order_by("-pk"))
        told = []
        for message in earlier:
            if message.kind == NotificationKind.SWITCH_RELEASED and _may_have_gone(message):
                break
            if message.kind == NotificationKind.SWITCH_ENGAGED:
                told.append(message)
        if told and not any(_may_have_gone(message) for message in told):
            done = "released" if notification.kind == NotificationKind.SWITCH_RELEASED else "moved"
            return (
                f"not sent: they were not told it was engaged (it was {done} before that "
                "message went)"
            )
    return ""


def _may_have_gone(told: Notification) -> bool:
    """Whether a message reached its person, or may have (an attempt made), or may yet."""
    if told.status == NotificationStatus.SENT:
        return True
    if told.status == NotificationStatus.PENDING:
        return told.attempts > 0
    return bool(told.may_have_reached)
