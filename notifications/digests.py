"""Digests: the messages held for a digest go out together, one message per person and
channel, once the first of them is due; those about proposals that no longer wait in their
round are dropped, with the reason, rather than sent.

A digest follows the outbox's rules (``notifications.services``): its notifications are
taken under a row lock (skip locked: two runs never take one; the person's row is locked
first, so two runs never split one person's digest), leased by pushing their next
attempt past the time a send may take, sent with no transaction open, and recorded only if
the lease is still theirs. A run that dies mid-send leaves them held, due again once the
lease runs out: resent, never lost, and the next run records the attempt interrupted first
(it may have reached the person).

A Slack digest is recorded where it was posted, on each message that went in it, as a single
message is; as each of its proposals stops waiting (or moves on while it waits), the digest
is updated through the outbox (``notifications.services``): its line says what became of
the proposal, and its headline how many still wait."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.history import history_records, update_with_history_where
from notifications.carriers import channel_for
from notifications.channels import ChannelError
from notifications.messages import proposal_messages, told_because
from notifications.models import (
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
)
from notifications.services import (
    LEASE,
    NOTIFICATIONS_ACTOR,
    _backoff,
    _interruptions_record,
    _not_to_send,
    _slack_drawn_from,
    _slack_messages_changed_as_they_went,
    as_read_by,
    attempt_note,
    proposals_lock,
    refusal_note,
    slack_messages_went_stale,
    stopped_as_they_went,
    went_as_it_stopped,
)

HELD = NotificationStatus.HELD
DIGEST_LIMIT = 100  # proposals in one message; more go in the next run's
RECIPIENTS_A_RUN = 500


def went_with(notifications: list[Notification], *, failures: bool) -> str:
    """What the message sent for ``notifications`` held for one person was, as each one's
    log says it: "in a digest of #12, #13", "in one message telling of the failures of #12,
    #13"; one held alone went on its own, and is not called a digest of one."""
    if len(notifications) == 1:
        if failures:
            return "on its own (held to go with other failures, none was held for them)"
        return "on its own (held for a digest, nothing else was held for them)"
    ids = ", ".join(f"#{n.proposal_id}" for n in notifications)
    if failures:
        return f"in one message telling of the failures of {ids}"
    return f"in a digest of {ids}"


def notifications_send_digests(*, now: datetime | None = None) -> int:
    """Send the digests that are due, one per person and channel. Returns how many
    messages went."""
    now = now or timezone.now()
    due = (
        Notification.objects.filter(status=HELD, next_attempt_at__lte=now)
        .values_list("recipient_id", "channel", "kind")
        .distinct()
        .order_by("recipient_id", "channel", "kind")[:RECIPIENTS_A_RUN]
    )
    # What waits for a decision and what failed go in messages of their own.
    digests = dict.fromkeys(
        (recipient_id, channel, kind == NotificationKind.FAILED)
        for recipient_id, channel, kind in list(due)
    )
    return sum(
        digest_send(recipient_id=recipient_id, channel=channel, now=now, failures=failures)
        for recipient_id, channel, failures in digests
    )


def digest_send(*, recipient_id: int, channel: str, now: datetime, failures: bool = False) -> int:
    """Send one person, on one channel, the digest of what is held for them, if any of it
    is due. Everything held for them goes, due or not: that keeps to one message every
    ``digest_minutes``, as the person's route says (what arrives after this digest is held
    that long from when it arrives). With ``failures``, the executions that failed held to go
    together (``NOTIFICATION_FAILURES_GROUPED_SECONDS``), in one message of their own; else
    what waits for a decision. Returns 1 if a message went, else 0."""
    of_kind = Q(kind=NotificationKind.FAILED)
    with transaction.atomic():
        # One run at a time per person: two runs that each locked part of a person's held
        # notifications would send two digests where the route says one. A run that finds
        # the person taken leaves them to the run that has them.
        # FOR NO KEY UPDATE: rows that refer to the person (notifications, decisions,
        # history) are written meanwhile as ever.
        person = get_user_model().objects.select_for_update(skip_locked=True, no_key=True)
        if not person.filter(pk=recipient_id).values_list("pk", flat=True):
            return 0
        held = list(
            Notification.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("proposal__agent", "proposal__account", "recipient", "route")
            .filter(recipient_id=recipient_id, channel=channel, status=HELD)
            .filter(of_kind if failures else ~of_kind)
            # Held and never tried, or due: not those another run is sending (leased).
            .filter(Q(next_attempt_at__lte=now) | Q(attempts=0))
            .order_by("created_at", "pk")[:DIGEST_LIMIT]
        )
        if not any(notification.next_attempt_at <= now for notification in held):
            return 0
        # What this run does now is recorded as of now, and leased from now: ``now`` is when
        # the run began, and its sends to the people before this one may have taken minutes
        # (a lease from then would have run out already, for the next run to take and send
        # again; history dated then would lie behind the audit chain's last sealing).
        at = timezone.now()
        # Attempts of a run that stopped before recording them (their lease ran out).
        _interruptions_record([n for n in held if n.attempts > len(n.log)], now=at)
        to_send, ended = [], []
        for notification in held:
            refusal = _not_to_send(notification)
            if refusal:
                notification.status = NotificationStatus.NOT_SENT
            elif notification.attempts >= settings.NOTIFICATION_MAX_ATTEMPTS:
                notification.status, refusal = NotificationStatus.FAILED, "gave up"
            else:
                notification.attempts += 1
                notification.next_attempt_at = at + LEASE
                to_send.append(notification)
                continue
            notification.next_attempt_at = None  # it has ended: nothing more is tried
            notification.log = [*notification.log, {"at": at.isoformat(), "result": refusal}]
            ended.append(notification)
        Notification.objects.bulk_update(ended, ["status", "log", "next_attempt_at"])
        for notification in ended:
            notification._change_reason = refusal_note(notification, notification.log[-1]["result"])
        history = Notification.history
        history.model.objects.bulk_create(
            history_records(history, ended, actor=NOTIFICATIONS_ACTOR, date=at, update=True)
        )
        Notification.objects.bulk_update(to_send, ["attempts", "next_attempt_at"])
    if not to_send:
        return 0

    recipient = to_send[0].recipient
    if channel == NotificationChannel.SLACK:
        for notification in to_send:
            # Read again where it is recorded sent, as a single message's is: its line drawn
            # from the proposal as it was leased (its lines say nobody's claim, and offer no
            # buttons, whatever its reader may do).
            notification.in_digest, notification.drawn_for = True, None
            notification.drawn_from = _slack_drawn_from(notification.proposal, None)
    # Why the person is told of each, by its route, as a single message says it; and, of one
    # they may not decide, why not and who does.
    messages = as_read_by(
        recipient,
        to_send,
        [
            replace(
                message,
                told_because=told_because(
                    kind=n.kind, route_name=n.route.name if n.route_id else ""
                ),
            )
            for message, n in zip(
                proposal_messages([(n.proposal, n.kind) for n in to_send], now=at),
                to_send,
                strict=True,
            )
        ],
    )
    try:
        sent = channel_for(channel).send_digest(recipient=recipient, messages=messages)
        delivered, retry, result, retry_after = True, False, sent.result, None
    except ChannelError as error:
        delivered, retry, result = False, not error.permanent, str(error)
        retry_after = error.retry_after

    finished = timezone.now()
    result = f"{went_with(to_send, failures=failures)}: {result}"
    entry = {"at": finished.isoformat(), "result": result}
    with transaction.atomic():
        # A proposal that stopped waiting while the digest went out: its line is updated to
        # say so, as a single message is; one that moved on while it waits (an approval
        # counted, a re-assessment), to say how far it has come.
        proposals = proposals_lock(to_send) if delivered else {}
        stopped = stopped_as_they_went(to_send, proposals=proposals) if delivered else {}
        recorded = []
        for notification in to_send:
            # Sent or given up: no next attempt (the lease it went under is none).
            # The attempt's own entry says so too, as a single message's does.
            went = entry
            if notification.pk in stopped:
                went = {**entry, "then": went_as_it_stopped(notification, stopped[notification.pk])}
            changes = {"log": [*notification.log, went], "next_attempt_at": None}
            if delivered:
                # Where it went, that its lines may be updated as their proposals stop waiting.
                changes.update(
                    status=NotificationStatus.SENT,
                    sent_at=finished,
                    in_digest=True,
                    slack_channel=sent.where.get("channel", ""),
                    slack_ts=sent.where.get("ts", ""),
                )
            elif retry and notification.attempts < settings.NOTIFICATION_MAX_ATTEMPTS:
                changes.update(
                    next_attempt_at=finished
                    + _backoff(notification.attempts, retry_after=retry_after)
                )
            else:
                changes.update(status=NotificationStatus.FAILED)
            # Only if this attempt is still the latest (see notifications_deliver).
            notification.status = changes.get("status", notification.status)
            recorded += update_with_history_where(
                Notification.objects.filter(
                    pk=notification.pk, attempts=notification.attempts, status=HELD
                ),
                changes,
                actor=NOTIFICATIONS_ACTOR,
                reason=attempt_note(notification, result, stopped=stopped.get(notification.pk)),
            )
        slack_messages_went_stale([n for n in to_send if n.pk in recorded], stopped=stopped)
        if channel == NotificationChannel.SLACK:  # drawn from its proposals, above
            _slack_messages_changed_as_they_went(
                [n for n in to_send if n.pk in recorded and n.pk not in stopped],
                proposals=proposals,
            )
    return 1 if delivered else 0
