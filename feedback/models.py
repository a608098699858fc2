from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from approvals.models import RejectionReason
from audit.actors import Actor, acting_as, describe_actor
from audit.models import audited_history
from hitlproject.attempts import attempts_in_words, entry_time
from hitlproject.formats import console_time
from hitlproject.periods import DurationAtLeast, DurationAtMost
from hitlproject.vocabulary import how_many


class FeedbackKind(models.TextChoices):
    APPROVED = "approved", "Approved as is"
    APPROVED_WITH_EDITS = "approved_with_edits", "Approved with edits"
    REJECTED = "rejected", "Rejected"
    # Not "unreviewed": people may have approved or edited it, one approval short (its note
    # says).
    EXPIRED = "expired", "Expired: its review window closed first"
    SUPERSEDED = "superseded", "Superseded: its target changed first"
    WITHDRAWN = "withdrawn", "Withdrawn by a reviewer"
    FAILED = "failed", "Execution failed"
    SENT_TO_RUN_AGAIN = "sent_to_run_again", "Sent to run again by a reviewer"
    EXECUTED = "executed", "Executed after it was sent to run again"
    OUTCOME = "outcome", "Outcome reported"
    # Not "before it ran": one held back between two attempts may have run (its note says).
    SENT_BACK = "sent_back", "Sent back to a person"


class OutcomeEffect(models.TextChoices):
    IMPROVED = "improved", "Improved results"
    NO_CHANGE = "no_change", "No clear change"
    HURT = "hurt", "Hurt results"


# The most outcomes an agent reports on one proposal of its own (at 1, 7, 30 and 90 days, and
# again as figures are corrected, say): an agent reporting without end (a loop, or a hostile
# one) would otherwise grow the proposal's page and its answer in the API past reading.
AGENT_OUTCOMES_PER_PROPOSAL = 100
# The autonomy review's decision counts are bounded here, not by the database (SQLite stored
# any integer; PostgreSQL refused one past its range with an error).
MAX_DECISIONS = 1_000_000


class Outcome(models.Model):
    """What happened after a proposal executed: an operator's judgment of it, or the figures
    its agent (or a connector with the agent's key) measured, or both."""

    proposal = models.ForeignKey(
        "approvals.Proposal", on_delete=models.PROTECT, related_name="outcomes"
    )
    effect = models.CharField(max_length=16, choices=OutcomeEffect.choices, blank=True)
    metrics = models.JSONField(
        default=dict,
        blank=True,
        help_text='Measured figures by name, e.g. {"conversions_7d": 118, "cpa_7d": 41.2}.',
    )
    note = models.TextField(blank=True)
    reported_by_kind = models.CharField(max_length=8, help_text="user or agent")
    reported_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)

    history = audited_history()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        effect = self.get_effect_display() or "Figures"
        return f"{effect} on #{self.proposal_id}, by {self.reported_by}"

    @property
    def reporter_said(self) -> str:
        """Who reported it, as the console names who acted: "operator (person)",
        "optimizer (agent)" (the API says "user:operator", "agent:optimizer")."""
        return describe_actor(self.reported_by_kind, self.reported_by)


class Feedback(models.Model):
    """What a human's decision (or its absence) tells the agent about one proposal."""

    agent = models.ForeignKey("approvals.Agent", on_delete=models.PROTECT, related_name="feedback")
    proposal = models.ForeignKey(
        "approvals.Proposal", on_delete=models.PROTECT, related_name="feedback"
    )
    decision = models.OneToOneField(
        "approvals.Decision",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="feedback",
    )
    outcome = models.OneToOneField(
        Outcome, null=True, blank=True, on_delete=models.PROTECT, related_name="feedback"
    )
    kind = models.CharField(max_length=24, choices=FeedbackKind.choices)
    reason_code = models.CharField(max_length=32, choices=RejectionReason.choices, blank=True)
    note = models.TextField(blank=True)
    diff = models.JSONField(
        default=dict, blank=True, help_text="Field by field, what the reviewer changed."
    )
    created_at = models.DateTimeField(default=timezone.now)

    history = audited_history()

    class Meta:
        verbose_name_plural = "feedback"
        ordering = ["-id"]
        indexes = [models.Index(fields=["agent", "id"], name="feedback_agent_cursor_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on #{self.proposal_id}"


class CallbackEventType(models.TextChoices):
    APPROVED = "proposal.approved", "Approved"
    REJECTED = "proposal.rejected", "Rejected"
    BLOCKED = "proposal.blocked", "Blocked"
    EXPIRED = "proposal.expired", "Expired"
    EXECUTED = "proposal.executed", "Executed"
    FAILED = "proposal.failed", "Execution failed"
    SUPERSEDED = "proposal.superseded", "Superseded"
    WITHDRAWN = "proposal.withdrawn", "Withdrawn by a reviewer"
    # Not "before it ran": one held back between two attempts may have run (its reason says).
    SENT_BACK = "proposal.sent_back", "Sent back to a person"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Being delivered"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Given up"


# What a callback event's log keeps of each attempt beside its time and result: what was
# decided, as the sender decided it. Retried: when (``RETRY_AT``, ISO 8601); given up
# (``GIVEN_UP``): why, in words, or "" where the result says it already ("not sent: …").
RETRY_AT = "retry_at"
GIVEN_UP = "given_up"
NOT_WORTH_RETRYING = "trying again would not change this answer"
# Between its attempts, a log keeps notes that are no attempt, each marked with its kind under
# ``NOTE``: an operator sent the event again (``SENT_AGAIN``, the attempts allowed counted
# afresh from there), or it was not sent, the agent being no longer reached (``NOT_SENT``).
# ``attempts`` counts the attempts alone, and never goes back: an attempt counted and not in
# the log is under way, or its sender stopped before recording it.
NOTE = "note"
SENT_AGAIN = "sent_again"
NOT_SENT = "not_sent"


def attempts_spent(attempts: int, *, sent_again: bool) -> str:
    """Why an event retried as often as it may is given up, as its log keeps it."""
    since = " since it was sent again" if sent_again else ""
    return f"all {attempts} attempts allowed{since} were made"


def is_attempt(entry) -> bool:
    """Whether an entry of a callback event's log is an attempt, not a note."""
    return not (isinstance(entry, dict) and NOTE in entry)


def attempts_logged(log: list) -> int:
    """How many attempts a callback event's log records (its notes aside)."""
    return sum(1 for entry in log if is_attempt(entry))


def sent_again_note(*, at: datetime, by: str, allowed: int) -> dict:
    """The log's note of an operator (``by``, their username) sending an event again, with
    the attempts it is allowed from there."""
    return {
        "at": at.isoformat(),
        "result": f"sent again by {by}; up to {allowed} more attempts",
        NOTE: SENT_AGAIN,
        "by": by,
    }


class CallbackEvent(models.Model):
    """A decision on, or an execution of, an agent's proposal, for its callback URL. Written
    in the transaction that made the change, so none is lost; delivered afterwards, signed,
    with retries, so the decision never waits on the agent's endpoint."""

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    agent = models.ForeignKey(
        "approvals.Agent", on_delete=models.PROTECT, related_name="callback_events"
    )
    proposal = models.ForeignKey("approvals.Proposal", on_delete=models.PROTECT, related_name="+")
    type = models.CharField(max_length=32, choices=CallbackEventType.choices)
    url = models.URLField(
        "URL",
        help_text="Where it is sent: the agent's callback URL at its latest attempt (when the "
        "event happened, until one is made).",
    )
    body = models.JSONField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        default=timezone.now, help_text="When a pending event is next due; a lease while sending."
    )
    log = models.JSONField(
        default=list,
        blank=True,
        help_text="Each attempt (when, and result), and notes between them (sent again by an "
        "operator, not sent).",
    )
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    # Whether the agent was told, when, where and what its endpoint answered: in the audit
    # trail and its chain. Written where an event is made, where an attempt is taken (its
    # count, and the URL it goes to), where one ends (its answer, delivered, retried or given
    # up) or was found interrupted, and where an operator sends it again.
    history = audited_history()
    # When it is next due: moved without a record by the sweep (an overdue event due now)
    # and while its agent's receiver is busy; each attempt's record holds it as it was then.
    # Verification, comparing the live row with its last record, leaves it out.
    history_unrecorded = ("next_attempt_at",)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="callback_event_due_idx",
                condition=models.Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return self.said_at(timezone.now())

    def said_at(self, when: datetime) -> str:
        """Its title as it read at ``when`` (a history record's own time, for its row).
        Its kind and status as its page's fields and the list say them ("Execution failed",
        "Given up"), not the values stored: a title of "proposal.failed … failed" read as
        another event than the "Type" below it, and its status as the event's kind."""
        status = self.status_at(when)
        return (
            f"“{self.get_type_display()}” on #{self.proposal_id}: {status[:1].lower()}{status[1:]}"
        )

    @property
    def status_said(self) -> str:
        """Its status as the console says it now (``status_at``)."""
        return self.status_at(timezone.now())

    def status_at(self, when: datetime) -> str:
        """Its status as the console says it, as it was at ``when``: an event whose last
        attempt failed and is to be retried, none under way, "Waiting to be tried again at
        2026-12-05 10:02:11 UTC; 2 attempts so far, none accepted" (it read "Being delivered"
        the minutes between); else its status's label ("Being delivered", "Delivered", "Given
        up"). Not "failed": an attempt whose answer never came may have arrived all the same.
        A history record's row reads it at the record's own time (its ``history_date``), not
        the time the page is read: the record of a failed attempt, written 30 seconds before
        its retry, waited "at" that time, never "since" it."""
        log = self.log or []
        last = log[-1] if log else None
        waits = (
            self.status == DeliveryStatus.PENDING
            and isinstance(last, dict)
            and RETRY_AT in last
            and self.attempts <= attempts_logged(log)  # none under way
        )
        if not waits:
            return self.get_status_display()
        due = console_time(self.next_attempt_at)
        due_then = f"at {due}" if self.next_attempt_at > when else f"since {due}"
        made = attempts_logged(log)
        none = "none accepted" if made > 1 else "not accepted"
        return f"Waiting to be tried again {due_then}; {how_many(made, 'attempt')} so far, {none}"

    def next_attempt_said(self) -> str:
        """When it is next tried, as its record stands, and what that time is: none once it
        is delivered or given up on (the field keeps the lease of its last attempt); while an
        attempt is under way, that attempt's lease (it is taken again then if it has not
        ended), not an attempt to come; after one not accepted, the one that follows. A
        history record's row says each of its versions so: the lease of attempt 2 rewritten
        as its retry, in the same second, read "15:05:39 UTC → 15:05:39 UTC"."""
        if self.status == DeliveryStatus.DELIVERED:
            return "none: delivered"
        if self.status == DeliveryStatus.FAILED:
            return "none: given up on (an operator may deliver it again)"
        due = console_time(self.next_attempt_at)
        log = self.log or []
        made = attempts_logged(log)
        if self.attempts > made:
            return (
                f"{due}, the lease of attempt {self.attempts}, under way (taken again then "
                "if it has not ended)"
            )
        if log and isinstance(log[-1], dict) and RETRY_AT in log[-1]:
            return f"{due}: attempt {made + 1}, as attempt {made} was not accepted"
        return due

    @property
    def sent_again(self) -> int:
        """How many times an operator sent it again."""
        return sum(1 for entry in self.log or [] if _is_note(entry, SENT_AGAIN))

    @property
    def attempts_this_round(self) -> int:
        """The attempts since an operator last sent it again (all of them if none did): those
        counted against ``CALLBACK_MAX_ATTEMPTS``. Those before were all in the log when it
        was sent again."""
        log = self.log or []
        notes = [number for number, entry in enumerate(log) if _is_note(entry, SENT_AGAIN)]
        return self.attempts - (attempts_logged(log[: notes[-1]]) if notes else 0)

    @property
    def attempts_summary(self) -> str:
        """Its attempts as its page says them: "4 (1 since an operator sent it again)"."""
        if not self.sent_again:
            return str(self.attempts)
        last = " last" if self.sent_again > 1 else ""
        return f"{self.attempts} ({self.attempts_this_round} since an operator{last} sent it again)"

    @property
    def attempts_said(self) -> list[str]:
        """Its log in words as it reads now (``attempts_at``)."""
        return self.attempts_at(timezone.now())

    def attempts_at(self, when: datetime) -> list[str]:
        """Its log in words (``attempts_in_words``) as it read at ``when`` (a history
        record's own time, for its page), each attempt with what was decided:
        "Attempt 1, 2026-12-04 21:55:04 UTC: HTTP 503; retried at 2026-12-04 21:55:34 UTC",
        "…: HTTP 410; given up: trying again would not change this answer", and its notes
        unnumbered: "2026-12-04 22:10:00 UTC: sent again by operator; up to 8 more attempts"."""
        log = self.log or []
        return attempts_in_words(
            [
                {**entry, "then": self._decided(entry, last=number == len(log), when=when)}
                if isinstance(entry, dict)
                else entry
                for number, entry in enumerate(log, start=1)
            ],
            notes=(NOTE,),
        )

    def _decided(self, entry: dict, *, last: bool, when: datetime) -> str:
        """What was decided after an attempt: as its entry recorded it; for an entry written
        before decisions were recorded, by the event's status where it is the last."""
        if RETRY_AT in entry:
            retry_at = entry_time(entry, RETRY_AT)
            if retry_at is None:
                return "retried"
            waits = last and self.status == DeliveryStatus.PENDING and retry_at > when
            return f"{'to be retried' if waits else 'retried'} at {console_time(retry_at)}"
        if GIVEN_UP in entry:
            return f"given up: {entry[GIVEN_UP]}" if entry[GIVEN_UP] else "given up"
        if not last or _is_note(entry, SENT_AGAIN):
            return ""
        if self.status == DeliveryStatus.DELIVERED:
            return "delivered"
        if self.status == DeliveryStatus.FAILED:
            return "given up"
        return ""


def _is_note(entry, kind: str) -> bool:
    return isinstance(entry, dict) and entry.get(NOTE) == kind


def _share(default: str, help_text: str, *, above_zero: bool = False) -> models.DecimalField:
    return models.DecimalField(
        max_digits=5,
        decimal_places=3,
        default=Decimal(default),
        validators=[
            MinValueValidator(Decimal("0.001") if above_zero else 0),
            MaxValueValidator(1),
        ],
        help_text=help_text,
    )


class AutonomyRules(models.Model):
    """When the platform recommends that an agent do more, or less, on its own. One set, kept
    by policy owners. A recommendation is only ever a proposal for a policy owner to decide."""

    is_active = models.BooleanField(
        default=True,
        verbose_name="recommend changes",
        help_text="Ticked: each day the autonomy review proposes the ceiling changes these "
        "rules call for, each for a policy owner to decide. Unticked: it proposes none.",
    )
    window = models.DurationField(
        default=timedelta(days=30),
        validators=[DurationAtLeast(timedelta(days=1)), DurationAtMost(timedelta(days=365))],
        help_text="The record judged: the proposals of this long, from a day to a year.",
    )
    # At least one: the review judges no record without a decision by a person, so a 0 here
    # would read as a rule the review does not follow.
    widen_min_decisions = models.PositiveIntegerField(
        default=50,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DECISIONS)],
        help_text="Widen only after at least this many decisions by people…",
    )
    widen_min_clean_share = _share("0.950", "…of which at least this share approved unedited…")
    widen_factor = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("1.50"),
        validators=[MinValueValidator(Decimal("1.01")), MaxValueValidator(Decimal("10"))],
        help_text="…and none rejected as too aggressive: the ceiling is multiplied by this…",
    )
    widen_max_ceiling = _share("0.500", "…up to at most this ceiling (0.5 = 50%).")
    narrow_min_decisions = models.PositiveIntegerField(
        default=20,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DECISIONS)],
        help_text="Narrow after at least this many decisions by people…",
    )
    narrow_min_rejected_share = _share("0.250", "…of which at least this share rejected…")
    narrow_factor = _share("0.500", "…multiplying the ceiling by this.", above_zero=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = audited_history()

    class Meta:
        verbose_name = verbose_name_plural = "autonomy rules"

    def __str__(self) -> str:
        return "Autonomy rules"

    @classmethod
    def current(cls) -> AutonomyRules:
        """The rules. Made at set-up (``made_at_setup``), never by reading them: opening their
        page, an auditor's too, wrote them once, and changes nothing now."""
        return cls.objects.get(pk=1)

    @classmethod
    def made_at_setup(cls) -> bool:
        """The one set with the platform's defaults, made by the platform's set-up (each
        ``migrate``, and after a ``flush``) when there is none yet. Whether it was made."""
        if cls.objects.filter(pk=1).exists():
            return False
        rules = cls(pk=1)
        rules._change_reason = "Made with the platform's defaults when the platform was set up."
        try:
            with transaction.atomic(), acting_as(Actor.system("setup")):
                rules.save(force_insert=True)
        except IntegrityError:  # made by another process meanwhile
            return False
        return True
