"""Reaching the people who decide: who is told about what (routes), on which channels each
person is reached, what was sent (an outbox, written in the transaction that moved the
proposal), the deadline a decision is due by, and who has taken a proposal (claims)."""

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from simple_history.manager import SIMPLE_HISTORY_REVERSE_ATTR_NAME

from approvals.services.acts import review_window_closed
from audit.models import audited_history
from hitlproject.attempts import attempts_in_words
from hitlproject.formats import console_time
from hitlproject.vocabulary import (
    INTERRUPTED,
    REVIEW_ENDINGS_DECIDED_BY_PEOPLE,
    S,
    round_ending_said,
)
from ledger.models import Channel


class Delivery(models.TextChoices):
    IMMEDIATELY = "immediately", "At once"
    DIGEST = "digest", "In a digest"


class Route(models.Model):
    """Which proposals waiting for a person are told to whom. A proposal is told to the users
    and groups of every active route it matches; an empty scope field matches anything."""

    name = models.CharField(max_length=200)
    account = models.ForeignKey(
        "ledger.Account",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty: every account.",
    )
    channel = models.CharField(
        max_length=32, choices=Channel.choices, blank=True, help_text="Empty: every channel."
    )
    action_type = models.CharField(max_length=32, blank=True, help_text="Empty: every type.")
    minimum_risk = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(100)],
        help_text="Only proposals this risky or more (0–100).",
    )
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    groups = models.ManyToManyField(Group, blank=True, related_name="+")
    delivery = models.CharField(
        max_length=16, choices=Delivery.choices, default=Delivery.IMMEDIATELY
    )
    digest_minutes = models.PositiveSmallIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text="For a digest: at most one message every this many minutes.",
    )
    backup_group = models.ForeignKey(
        Group,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Told when a decision is overdue (the policy's “decide within”).",
    )
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = audited_history(m2m_fields=[users, groups])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ReachedBy(models.Model):
    """The channels on which a person is told; theirs to choose."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reached_by"
    )
    email = models.BooleanField(default=True, help_text="At the address of your account.")
    slack = models.BooleanField(
        default=False, help_text="A direct message from the platform's Slack app."
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = audited_history()

    class Meta:
        verbose_name = "my channels"
        verbose_name_plural = "my channels"

    def __str__(self) -> str:
        chosen = [label for name, label in NotificationChannel.choices if getattr(self, name)]
        return f"{self.user}: {' and '.join(chosen) or 'not told'}"


class NotificationChannel(models.TextChoices):
    EMAIL = "email", "Email"
    SLACK = "slack", "Slack"

    @property
    def by(self) -> str:
        """How one is told on it, in words: "by email", "on Slack" (not "by slack")."""
        return "by email" if self == NotificationChannel.EMAIL else f"on {self.label}"


class NotificationKind(models.TextChoices):
    WAITING = "waiting", "Waits for a decision"
    REMINDER = "reminder", "Reminder: half the time to decide is gone"
    ESCALATION = "escalation", "Escalated: the decision is overdue"
    UPDATE = "update", "Update of a message sent"
    # A proposal let run (by policy or by people) whose execution failed: it waits for a
    # person again, who may retry it in the console.
    FAILED = "failed", "Its execution failed"
    # A kill switch engaged, or released, over what the route tells of: a message about the
    # switch (``Notification.kill_switch``), not about one proposal. Moved while engaged off
    # what a person was told it covered (``about``: what it covered, in words), they are told
    # it no longer covers that.
    SWITCH_ENGAGED = "switch_engaged", "A kill switch was engaged"
    SWITCH_RELEASED = "switch_released", "A kill switch was released"
    SWITCH_MOVED = "switch_moved", "A kill switch no longer covers what it did"


# A switch's message of kind "engaged" telling its reader it was moved onto what they are
# told of (its ``about``: what it covered before): as the outbox says and filters it.
SWITCH_MOVED_ONTO = "switch_moved_onto"
SWITCH_MOVED_ONTO_LABEL = "A kill switch was moved"

# The kinds of message about a kill switch rather than a proposal.
KILL_SWITCH_KINDS = (
    NotificationKind.SWITCH_ENGAGED,
    NotificationKind.SWITCH_RELEASED,
    NotificationKind.SWITCH_MOVED,
)


class NotificationStatus(models.TextChoices):
    HELD = "held", "Held for a digest"
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    NOT_SENT = "not_sent", "Not sent"


def held_for(kind: str) -> str:
    """What a message held (``NotificationStatus.HELD``) is held for, by its kind, as the
    console says its status: a failed execution is held to go with the other failures told
    to its person meanwhile, in a message of their own (never in a route's digest of what
    waits); any other kind for its route's digest."""
    if kind == NotificationKind.FAILED:
        return "Held to go with the other failures told to them meanwhile, in one message"
    return "Held for a digest"


# What a Slack message's log says once an update of it failed for good (``not_updated`` in
# its entry: the update's id), and once a later one landed (``updated``).
NOT_UPDATED = "Its message could not be updated"
UPDATED_SINCE = "Its message was updated since: it says what is so again"


# A Slack message's log entries that are no attempt of its own: an update of it that failed for
# good (``not_updated``: the update's id), or one that landed after (``updated``).
UPDATE_NOTES = ("not_updated", "updated")


# A failure a person's retry ended superseded, its target having moved since it was made: nobody
# sent it to run again (``approvals.services.decisions.proposal_retry``).
SUPERSEDED_AT_ITS_RETRY = (
    "superseded since its execution failed (a person retrying it found its target had moved)"
)


def superseded_at_its_retry(notification: "Notification", proposal) -> bool:
    """Whether the failure a message told of ended superseded as a person retried it: not
    sent to run again since the message was written (a failure leaves for superseded only
    so; one sent to run again first was approved since)."""
    retried = proposal.approved_at and proposal.approved_at > notification.created_at
    return proposal.status == S.SUPERSEDED and not retried


def no_longer_so(notification: "Notification", proposal) -> str:
    """Why a message is not to be sent, being no longer so of its proposal (as read: its
    status, review round and when it was last approved to run); or "" while it is so. One
    saying it waits (or for how long): while it waits in the message's round, within its
    review window. One saying its execution failed: while that failure stands, not once a
    person has sent it to run again (a new failure then is told anew). The one check: the
    sender's, as it sends or drops it (``notifications.services``), and the console's of one
    held (``Notification.due_said``)."""
    status = S(proposal.status)
    if notification.kind == NotificationKind.FAILED:
        if superseded_at_its_retry(notification, proposal):
            return f"not sent: {SUPERSEDED_AT_ITS_RETRY}: it will not run"
        retried = proposal.approved_at and proposal.approved_at > notification.created_at
        if status == S.FAILED and not retried:
            return ""
        return (
            "not sent: a person sent the proposal to run again since its execution failed "
            f"(it is now {status.label.lower()})"
        )
    if status == S.PENDING_REVIEW and proposal.review_round == notification.review_round:
        if review_window_closed(proposal, timezone.now()):
            # Past its window, before the sweep expired it: told of as waiting, it would be
            # counted in a digest's "2 proposals wait" that the queue, expiring it, does not show.
            return (
                f"not sent: its review window closed at {console_time(proposal.review_expires_at)}"
                " and it no longer waits for a decision"
            )
        return ""
    return f"not sent: the proposal is {status.label.lower()} and no longer waits for this review"


class Notification(models.Model):
    """One message to one person on one channel about one proposal: the outbox. Written in
    the transaction that moved the proposal, sent after it commits, retried, never lost by a
    crash (the sweep sends what is overdue). What each attempt got is kept in ``log``."""

    proposal = models.ForeignKey(
        "approvals.Proposal",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    # A message about a kill switch engaged or released (``KILL_SWITCH_KINDS``), about no
    # proposal: kept while its messages are, who was told of it being on record (a switch told
    # of is not deleted; one engaged is not deleted at all: ``KillSwitch.delete``).
    kill_switch = models.ForeignKey(
        "policies.KillSwitch",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    review_round = models.PositiveSmallIntegerField()
    # Who was told is on record for good: a person told of anything is deactivated, not
    # deleted (``access.admin.PersonAdmin``).
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    route = models.ForeignKey(Route, null=True, blank=True, on_delete=models.SET_NULL)
    channel = models.CharField(max_length=8, choices=NotificationChannel.choices)
    kind = models.CharField(max_length=16, choices=NotificationKind.choices)
    status = models.CharField(
        max_length=8, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    created_at = models.DateTimeField(default=timezone.now)
    # When it is next tried (held: when its digest is due; being sent: when the lease runs
    # out); none once it is sent, failed or not sent: nothing more is tried.
    next_attempt_at = models.DateTimeField(default=timezone.now, null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    log = models.JSONField(default=list, blank=True)
    # Where a Slack message went, so that it can be updated when the proposal is decided.
    slack_channel = models.CharField(max_length=32, blank=True)
    slack_ts = models.CharField(max_length=32, blank=True)
    # Went in a digest: its Slack message (slack_channel, slack_ts) lists the others that went
    # with it, and is updated as a digest, each line saying what became of its proposal.
    in_digest = models.BooleanField(default=False)
    # An update refers to the message it updates, and says what it was for: the decision,
    # a claim, an approval that waits for another…
    updates = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    about = models.CharField(max_length=200, blank=True)

    # Who was told of what, on which channel, and when it went or why it did not: in the
    # audit trail and its chain. Written where the outbox records a message and where an
    # attempt ends (a lease taken to send it is not a change of the message).
    history = audited_history()
    # The delivery lease, taken and given back at each attempt without a record (each would
    # be a record no one reads; each attempt's result is in ``log``, which is recorded):
    # verification, comparing the live row with its last record, leaves these out.
    history_unrecorded = ("attempts", "next_attempt_at")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="notification_due_idx"),
            models.Index(fields=["proposal", "channel"], name="notification_proposal_idx"),
        ]
        constraints = [
            # About a proposal, or (a kill switch's message) about a switch: one of them.
            models.CheckConstraint(
                name="notification_about_one_thing",
                condition=models.Q(proposal__isnull=False, kill_switch__isnull=True)
                | models.Q(proposal__isnull=True, kill_switch__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"{self.what} → {self.recipient} {self.how_told}"

    @property
    def how_told(self) -> str:
        """How its recipient is told, in words: "by email", "on Slack"."""
        return NotificationChannel(self.channel).by

    @property
    def what(self) -> str:
        """What the message is, in words: its kind and, for an update, what it was for."""
        if self.kind == NotificationKind.UPDATE and self.about:
            return f"Update of a message sent: {self.about}"
        return self.kind_said

    @property
    def kind_said(self) -> str:
        """Its kind in words; a kill switch's message about a move says the move, from what
        it covered (``about``): told it is engaged on what it was moved onto, "A kill switch
        was moved (from account acme)", not "A kill switch was engaged"; told it no longer
        covers what it was moved off, which."""
        if self.about and self.kind == NotificationKind.SWITCH_ENGAGED:
            return f"{SWITCH_MOVED_ONTO_LABEL} (from {self.about})"
        if self.about and self.kind == NotificationKind.SWITCH_MOVED:
            return f"A kill switch was moved off {self.about}: it no longer covers it"
        return self.get_kind_display()

    @property
    def attempts_said(self) -> list[str]:
        """Its log in words (``attempts_in_words``): "Attempt 1, 2026-12-04 21:55:04 UTC:
        accepted by … for operator@example.com", then a Slack message's updates that failed
        for good or landed after one did: "2026-12-05 10:02:11 UTC: Its message could not be
        updated: Slack refused it: message_not_found"; and how it ended where no attempt did
        (not sent, given up), unnumbered as a note is."""
        return attempts_in_words(self.log, notes=UPDATE_NOTES, attempts=self.attempts)

    @property
    def interrupted_attempts(self) -> list[int]:
        """The attempts whose sender stopped before recording whether they went (each
        attempt has its entry in the log, in order)."""
        return [
            number
            for number, entry in enumerate(self.log or [], start=1)
            if entry.get("result") == INTERRUPTED
        ]

    @property
    def may_have_reached(self) -> str:
        """Where a message not sent (or failed) had an attempt interrupted, that it may have
        reached the person all the same, in words ("attempt 1 was interrupted and may have
        reached them"); else ""."""
        interrupted = self.interrupted_attempts
        if self.status == NotificationStatus.SENT or not interrupted:
            return ""
        numbers = " and ".join(str(number) for number in interrupted)
        if len(interrupted) == 1:
            return f"attempt {numbers} was interrupted and may have reached them"
        return f"attempts {numbers} were interrupted and may have reached them"

    @property
    def not_updated(self) -> bool:
        """A Slack message sent whose last update failed for good, none landing since: it may
        show what is no longer so."""
        last = (self.log or [None])[-1]
        return isinstance(last, dict) and "not_updated" in last

    @property
    def status_said(self) -> str:
        """Its status as the console says it now (``status_at``)."""
        return self.status_at(timezone.now())

    def status_at(self, when: datetime) -> str:
        """Its status as the console says it, as it was at ``when`` (a version's page reads
        it at that version's time): "Not sent", or, where an interrupted attempt may have
        reached the person, "Not sent, but attempt 1 was interrupted and may have reached
        them"; a Slack message whose update failed for good, "Sent, but its message could
        not be updated" (its log says why); held, when it is due to go (``due_said_at``)."""
        if self.status == NotificationStatus.SENT and self.not_updated:
            return f"{self.status_label}, but its message could not be updated"
        maybe = self.may_have_reached
        said = self.status_label + self.due_said_at(when)
        return f"{said}, but {maybe}" if maybe else said

    def due_said_at(self, when: datetime) -> str:
        """When a held message, never tried yet, is due to go, as its status goes on to say
        it: "; due to go at 2026-12-06 12:16:40 UTC" (failures held together go when the
        first of them is due, and each held with it is due then); held for a digest, "by"
        then: it goes with the first of the person's held for that digest to fall due. Past
        due at ``when``, that it was (the digests' next run sends it): a version read later
        says what it said then, not that it was overdue the day it is read. One that will not
        go, what its sender will find stops it (``no_longer_so``), as soon as it is so: "; will
        not go: a person sent the proposal to run again since its execution failed (it is now
        executed)" (it read "due to go at …" until the sender dropped it). Else ""."""
        due = self.next_attempt_at
        if self.status != NotificationStatus.HELD or due is None or self.attempts:
            return ""
        # Not a past version, nor an update of a Slack message (its sender never drops one).
        if (
            getattr(self, SIMPLE_HISTORY_REVERSE_ATTR_NAME, None) is None
            and self.kind != NotificationKind.UPDATE
        ):
            # What will stop it going is known already: said now, not as it is dropped.
            stopped = no_longer_so(self, self.proposal)
            if stopped:
                return f"; will not go: {stopped.removeprefix('not sent: ')}"
        at = "at" if self.kind == NotificationKind.FAILED else "by"
        was = "was " if due <= when else ""
        return f"; {was}due to go {at} {console_time(due)}"

    @property
    def status_label(self) -> str:
        """Its status's label, a held message's saying what it is held for (``held_for``)."""
        if self.status == NotificationStatus.HELD:
            return held_for(self.kind)
        return self.get_status_display()


# How the history record of a decision deadline whose review round ended says why it was
# written ("Review round ended: rejected."), as its proposal's history reads it back.
ROUND_ENDED = "Review round ended"


class DecisionDeadline(models.Model):
    """When a decision on a proposal's review round is due, as its policy's “decide within”
    set it when the round began; what was done as the time ran out; when it was decided."""

    proposal = models.ForeignKey(
        "approvals.Proposal", on_delete=models.CASCADE, related_name="deadlines"
    )
    review_round = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    due_at = models.DateTimeField()
    # Half time, kept rather than computed in the sweep's query: SQLite cannot halve the
    # difference of two datetimes in SQL.
    remind_at = models.DateTimeField()
    reminded_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    escalated_to = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ended_at = models.DateTimeField(
        null=True, blank=True, help_text="When the round ended: decided, expired, withdrawn…"
    )
    # How the round ended, as it ended: the proposal's status later moves on (executed…).
    ended_as = models.CharField(max_length=16, blank=True)

    # When it was due, reminded, escalated and ended: in the audit trail and its chain.
    history = audited_history()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["proposal", "review_round"], name="one_deadline_a_round"
            )
        ]
        indexes = [
            models.Index(fields=["ended_at", "due_at"], name="deadline_open_idx"),
        ]

    def __str__(self) -> str:
        due = console_time(self.due_at)
        return f"Proposal #{self.proposal_id}, round {self.review_round}: due {due}"

    @property
    def met(self) -> bool | None:
        """Decided in time: True or False once people decided the round, None while it runs
        and for a round nobody decided (expired, withdrawn, superseded…), which the
        dashboard counts neither in time nor late."""
        if self.ended_at is None or self.ended_as not in REVIEW_ENDINGS_DECIDED_BY_PEOPLE:
            return None
        return self.ended_at <= self.due_at

    @property
    def ending_said(self) -> str:
        """How the round ended, as the proposal's page and its history say it beside when
        (``round_ending_said``): "rejected in time", "approved after the deadline"; one nobody
        decided, how it ended instead ("superseded before enough people approved it"), not
        "in time" as if it had been decided then, nor "before anyone decided it" of a round
        one of two reviewers approved (as an expiry's reason,
        ``approvals.services.expiry.expiry_reason``, says it). The page said "decided in
        time" where the history said "rejected, in time"."""
        if self.ended_at is None:
            return ""
        ended = S(self.ended_as).label.lower() if self.ended_as in S.values else "ended"
        return round_ending_said(ended, in_time=self.met)


class Claim(models.Model):
    """“I'll take it”: who is on a proposal, until when. A claim lapses on its own; it tells
    the others, and stops no authorised reviewer from deciding."""

    proposal = models.OneToOneField(
        "approvals.Proposal", on_delete=models.CASCADE, related_name="claim"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    claimed_at = models.DateTimeField()
    lapses_at = models.DateTimeField()

    history = audited_history()

    def __str__(self) -> str:
        return f"{self.user} on proposal #{self.proposal_id}"

    def is_live(self, now=None) -> bool:
        return (now or timezone.now()) < self.lapses_at

    @property
    def lapses_text(self) -> str:
        """When it lapses, as the proposal's page says it: "2026-12-04 17:15:09 UTC"."""
        return console_time(self.lapses_at)


class SlackRequestSeen(models.Model):
    """A signed request from Slack already handled, kept while its timestamp is fresh enough
    to pass the signature check, so that the same request sent again is refused. A table, not
    the cache: the embedded default's cache is each machine's own, and a replay may reach
    another web process."""

    signature = models.CharField(max_length=100, unique=True)
    received_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.signature[:16]}… at {self.received_at:%H:%M:%S}"
