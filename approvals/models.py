from datetime import datetime
from typing import NamedTuple

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from audit.models import audited_history, version_of, version_recorded_at
from hitlproject.formats import console_time
from hitlproject.outbound import validate_outbound_url
from hitlproject.signing import new_secret
from hitlproject.vocabulary import (
    HELD_BACK_APPROVED_AGAIN,
    SENT_TO_RUN_AGAIN,
    ProposalStatus,
    VerdictOutcome,
)


class AgentKind(models.TextChoices):
    RESEARCH = "research", "Research"
    ANALYSIS = "analysis", "Analysis"
    PRODUCTION = "production", "Production"
    OPTIMIZATION = "optimization", "Optimization"


class Agent(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=AgentKind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_agents",
        help_text="The person answerable for this agent.",
    )
    is_active = models.BooleanField(default=True)
    is_platform = models.BooleanField(
        default=False,
        editable=False,
        help_text="Built into the platform (the autonomy advisor): proposes what agents may not.",
    )
    accounts = models.ManyToManyField(
        "ledger.Account", related_name="agents", help_text="Accounts this agent may act on."
    )
    callback_url = models.URLField(
        blank=True,
        validators=[validate_outbound_url],
        help_text="Receives the agent's proposals' decisions and executions, signed, if set.",
    )
    callback_secret = models.CharField(
        max_length=64,
        default=new_secret,
        editable=False,
        help_text="Signs the events sent to the callback URL (HMAC-SHA256).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # The signing secret stays out of history, which auditors read.
    history = audited_history(m2m_fields=[accounts], excluded_fields=["callback_secret"])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # An authenticated agent stands in for DRF's request.user.
    is_authenticated = True


class AgentAPIKey(models.Model):
    """An API key: stored as a SHA-256 digest, found by its public prefix, shown once."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    history = audited_history()

    class Meta:
        verbose_name = "agent API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.agent})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class WithdrawnBy(models.TextChoices):
    """Who took back a proposal that waited: its agent, or a reviewer on its behalf."""

    AGENT = "agent", "Its agent"
    REVIEWER = "reviewer", "A reviewer, for its agent"


class ProposalQuerySet(models.QuerySet):
    def overdue(self, now):
        """Those waiting for review past their window by ``now``: expired in all but the
        record, until the sweep (or a late act) expires them; no read does. The query's form
        of ``approvals.services.acts.review_window_closed``."""
        return self.filter(status=ProposalStatus.PENDING_REVIEW, review_expires_at__lte=now)

    def waiting(self, now):
        """Those waiting for review within their window by ``now`` (or with none): what a
        person may still decide."""
        return self.filter(status=ProposalStatus.PENDING_REVIEW).exclude(review_expires_at__lte=now)


class Proposal(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="proposals")
    account = models.ForeignKey("ledger.Account", on_delete=models.PROTECT, related_name="+")
    action_type = models.CharField(max_length=32, db_index=True)
    payload = models.JSONField(
        help_text="The action as approved; the agent's own words until edited."
    )
    rationale = models.TextField()
    supporting_data = models.JSONField(default=dict, blank=True)
    confidence = models.FloatField(validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    external_ref = models.CharField(max_length=200, blank=True)

    # What the platform derived from its own ledger, not from the agent's claim.
    summary = models.CharField(max_length=300)
    magnitude = models.DecimalField(max_digits=14, decimal_places=6)
    magnitude_label = models.CharField(max_length=300, help_text="The magnitude, in words.")
    amount = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Money moved per day, in the account's currency, where the action moves money.",
    )
    target_snapshot = models.JSONField(
        default=dict, help_text="The ledger fields the action touches, as they were when assessed."
    )
    effects = models.JSONField(
        default=dict,
        blank=True,
        help_text="The factor each bid or budget is multiplied by; cumulative ceilings add these.",
    )

    status = models.CharField(
        max_length=16, choices=ProposalStatus.choices, default=ProposalStatus.SUBMITTED
    )
    risk = models.PositiveSmallIntegerField(null=True, blank=True)
    verdict_outcome = models.CharField(max_length=16, choices=VerdictOutcome.choices, blank=True)
    verdict_policy = models.ForeignKey(
        "policies.Policy", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    verdict_policy_version = models.BigIntegerField(
        null=True, blank=True, help_text="The policy's history record in force when it decided."
    )
    verdict_reasons = models.JSONField(default=list, blank=True)
    # Null on proposals evaluated before verdicts recorded their holds: a page reads those
    # from their reasons' words instead.
    verdict_held_by = models.JSONField(
        null=True,
        blank=True,
        help_text="The rules that held it back, as its verdict found them, with their figures: "
        "[{'rule', 'text', 'policy', and for a cumulative ceiling 'target', 'moved', "
        "'ceiling', 'window_seconds'}].",
    )
    # A re-assessment (its target moved, or a reviewer edited it) evaluates it again under the
    # policies in force, and its reasons and holds become that verdict's while its routing
    # (outcome, policy and version above) stays as decided: the version that verdict was
    # reached under is recorded, so that no reader names the routing one for it.
    reassessed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When it was last re-assessed against the policies in force (its target "
        "moved, or a reviewer edited it); null if never.",
    )
    reassessed_policy_version = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The history record of the policy version its last re-assessment was "
        "reached under (null: no policy matched it then); its reasons are that verdict's.",
    )
    # With 'changed_first': [...] too, where an approved proposal changes a value it sets first
    # (policies.services.GuardrailFindings), whatever the verdict.
    guardrail_findings = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the guardrails found when evaluated: {'block': [...], 'review': [...]}.",
    )
    required_approvals = models.PositiveSmallIntegerField(default=1)
    review_round = models.PositiveSmallIntegerField(
        default=0,
        help_text="Increments each time the proposal enters review; approvals count per round.",
    )
    # Kept by the decision service, reset with each new round; db_default for rows that
    # other means (the benches' SQL) write.
    approvals_this_round = models.PositiveSmallIntegerField(
        default=0,
        db_default=0,
        help_text="Approvals given in the current review round.",
    )

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    review_expires_at = models.DateTimeField(null=True, blank=True)
    # Not ``created_at`` nor ``evaluated_at``: re-assessed and routed again, or held back by a
    # kill switch as it was about to run, it waits for people from then, in a new round.
    waiting_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When it last began waiting for people (its review round began: routed to "
        "them as it was made or re-assessed, or sent back to them before it ran); null if it "
        "never waited for a person, or waited before this was recorded.",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    # Not ``decided_at``, which dates the decision for its time to decide: a person retrying
    # a failed execution approves it to run again, and its moves count from then.
    approved_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When it was last approved to run (by the policy engine, by people, or "
        "again by a person retrying its failed execution): its moves count against "
        "cumulative ceilings from then.",
    )
    executed_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.CharField(
        max_length=8,
        choices=WithdrawnBy.choices,
        blank=True,
        help_text="Who withdrew it, if it was withdrawn: its agent, or a reviewer for it.",
    )
    withdrawal_note = models.TextField(
        blank=True,
        help_text="What was written with its withdrawal, if anything: by a reviewer for its "
        "agent, or by its agent.",
    )
    superseded_by = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="If it was superseded by another proposal's execution: that proposal (its "
        "agent may not be this one's, which its agent is not told).",
    )
    # A channel executor's rounds (what each sends, its lease) are its own:
    # executors.models.ExecutionRound.
    history = audited_history()
    objects = ProposalQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [("decide_proposal", "Can approve or reject proposals")]
        indexes = [
            # The review queue: pending first, riskiest then oldest.
            models.Index(fields=["status", "-risk", "created_at"], name="proposal_queue_idx"),
            # The queue sorted by magnitude (a column an operator sorts by).
            models.Index(
                fields=["-magnitude"],
                name="proposal_queue_magnitude_idx",
                condition=models.Q(status="pending_review"),
            ),
            # The queue sorted by approvals so far, most first (then as the queue is).
            models.Index(
                fields=["-approvals_this_round", "-risk", "created_at"],
                name="proposal_queue_approvals_idx",
                condition=models.Q(status="pending_review"),
            ),
            models.Index(fields=["agent", "-id"], name="proposal_agent_idx"),
            # Decisions of a period, for the dashboard.
            models.Index(fields=["decided_at"], name="proposal_decided_idx"),
            models.Index(
                fields=["review_expires_at"],
                name="proposal_review_expiry_idx",
                condition=models.Q(status="pending_review"),
            ),
            # Proposals that may still execute, by account: those a change landing supersedes.
            models.Index(
                fields=["account"],
                name="proposal_open_account_idx",
                condition=models.Q(status__in=["pending_review", "approved"]),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.summary}"


class DecisionOutcome(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class RejectionReason(models.TextChoices):
    OFF_BRAND = "off_brand", "Off brand"
    WRONG_SIGNAL = "wrong_signal", "Wrong signal"
    CONTRADICTS_STRATEGY = "contradicts_strategy", "Contradicts strategy"
    TOO_AGGRESSIVE = "too_aggressive", "Too aggressive"
    FACTUAL_ERROR = "factual_error", "Factual error"
    OTHER = "other", "Other"


class Decision(models.Model):
    proposal = models.ForeignKey(Proposal, on_delete=models.PROTECT, related_name="decisions")
    review_round = models.PositiveSmallIntegerField()
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions"
    )
    outcome = models.CharField(max_length=8, choices=DecisionOutcome.choices)
    reason_code = models.CharField(max_length=32, choices=RejectionReason.choices, blank=True)
    note = models.TextField(blank=True)
    edited_payload = models.JSONField(null=True, blank=True)
    summary = models.CharField(
        max_length=300, blank=True, help_text="The action as the reviewer decided it."
    )
    created_at = models.DateTimeField(default=timezone.now)

    history = audited_history()

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["proposal", "review_round", "reviewer"],
                name="decision_one_per_reviewer_per_round",
            ),
            models.CheckConstraint(
                condition=~models.Q(outcome="reject") | ~models.Q(reason_code=""),
                name="decision_rejection_has_reason",
            ),
        ]
        indexes = [
            # Decisions of a period, for the dashboard's time to a person's first decision.
            models.Index(fields=["created_at"], name="decision_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} by {self.reviewer} on #{self.proposal_id}"


class ExecutionStatus(models.TextChoices):
    RUNNING = "running", "Under way"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Execution(models.Model):
    """One attempt to carry out an approved proposal."""

    proposal = models.ForeignKey(Proposal, on_delete=models.PROTECT, related_name="executions")
    attempt = models.PositiveSmallIntegerField()
    executor = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=ExecutionStatus.choices)
    before_state = models.JSONField(default=dict)
    after_state = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    # What a channel answered: its request ids, and what else it said (resource names, each
    # item's result), for an operator looking the request up on the channel.
    request_ids = models.JSONField(default=list, blank=True)
    channel_response = models.JSONField(default=dict, blank=True)
    # A failed attempt that may have been carried out all the same: sent, and no answer said
    # whether (a timeout, a server's error, a worker stopped while it was under way).
    unanswered = models.BooleanField(
        "no sure answer",
        default=False,
        help_text="Sent, and no answer said whether the channel carried it out: it may have.",
    )
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    history = audited_history()

    class Meta:
        ordering = ["proposal", "attempt"]
        constraints = [
            models.UniqueConstraint(fields=["proposal", "attempt"], name="execution_unique_attempt")
        ]
        indexes = [
            # Requests under way, per account endpoint: few at any time, among millions.
            models.Index(
                fields=["started_at"],
                name="execution_running_idx",
                condition=models.Q(status="running"),
            )
        ]

    def __str__(self) -> str:
        """Its number and status as its list and its proposal's page say it (its page's
        title, heading and breadcrumbs, and its history's, read it here): "Failed, tried
        again" of a failed attempt another followed, where its title said "failed"; a past
        version's as it stood at that version's own time."""
        return f"#{self.proposal_id} attempt {self.attempt}: {self.status_as_said()}"

    def status_as_said(self) -> str:
        """Its status as the console says it (``attempt_status_said``): of a past version
        (its history's rows, a version's page), tried again only if the next attempt had
        begun by that version's own time (``version_recorded_at``); its record of failing,
        written before its retry began, said "Failed" then."""
        as_of = version_recorded_at(self)
        retried = self.retry_started_at()
        tried_again = retried is not None and (as_of is None or retried <= as_of)
        sent_again = self.sent_to_run_again()
        if sent_again is not None and as_of is not None and sent_again.at > as_of:
            sent_again = None  # sent to run again after this version's own time
        return attempt_status_said(
            self,
            tried_again=tried_again,
            sent_again=sent_again,
            to_be_tried_again=as_of is None and self.awaits_retry(),
            due=getattr(self, "retry_due", None),
        )

    def awaits_retry(self) -> bool:
        """Whether it failed and its proposal's execution goes on with another attempt: the
        newest of a proposal still executing (a round that ends fails its proposal in the
        same transaction as its last attempt, and a kill switch's hold sends it back to a
        person). Said "Failed, to be tried again", not "Failed", which reads as the end."""
        return (
            self.status == ExecutionStatus.FAILED
            and self.retry_started_at() is None
            and self.proposal.status == ProposalStatus.EXECUTING
        )

    def retry_started_at(self) -> datetime | None:
        """When the attempt after it began, if it failed and another followed; else None.
        Read with it where a page reads many (``retry_started``, annotated on it or on its
        past version's record), else once."""
        if self.status != ExecutionStatus.FAILED:
            return None
        for read_with in (self, version_of(self)):
            if hasattr(read_with, "retry_started"):
                return read_with.retry_started
        self.retry_started = (
            Execution.objects.filter(proposal_id=self.proposal_id, attempt__gt=self.attempt)
            .order_by("attempt")
            .values_list("started_at", flat=True)
            .first()
        )
        return self.retry_started

    def sent_to_run_again(self) -> "PersonLetRunAgain | None":
        """Who let it run again after it failed and when, if a person did (before the next
        attempt began, if one did): sent it to run again (Retry), or approved it again after
        a kill switch held it back; the attempt after it was theirs, not the runner's own.
        Read with it where a page reads many (``sent_to_run_again_read``), else once."""
        if self.status != ExecutionStatus.FAILED:
            return None
        for read_with in (self, version_of(self)):
            if hasattr(read_with, "sent_again"):
                return read_with.sent_again
        sent_to_run_again_read([self])
        return self.sent_again


class PersonLetRunAgain(NamedTuple):
    """A person's move that let a failed attempt's proposal run again: who (as its history
    names them), when, and whether it was an approval after a kill switch held it back
    (``held``) rather than a retry of a failed proposal."""

    by: str
    at: datetime
    held: bool = False

    def said(self) -> str:
        """ "sent to run again by operator at …", "held back, then approved again by operator
        at …"."""
        done = HELD_BACK_APPROVED_AGAIN if self.held else SENT_TO_RUN_AGAIN
        return f"{done} by {self.by} at {console_time(self.at)}"


# How the history record of a person's retry begins ("sent to run again by operator"), and how
# it began before it said it so: a record keeps the words it was written with.
RETRY_RECORDED = (f"{SENT_TO_RUN_AGAIN} by ", "execution retried by ")


def person_retries(proposal_ids) -> QuerySet:
    """The history records of each time a person sent a failed execution of one of
    ``proposal_ids`` to run again (their approval to run it), in order: ``id`` (the
    proposal's), ``history_date`` and ``history_actor`` (who, as the record names them)."""
    recorded_as_retry = Q()
    for words in RETRY_RECORDED:
        recorded_as_retry |= Q(history_change_reason__startswith=words)
    return (
        Proposal.history.filter(
            recorded_as_retry,
            id__in=proposal_ids,
            status=ProposalStatus.APPROVED,
            history_actor_kind="user",
        )
        .order_by("id", "history_id")
        .values_list("id", "history_date", "history_actor")
    )


def persons_approvals(proposal_ids) -> QuerySet:
    """The history records of each time a person made one of ``proposal_ids`` approved (an
    approval, a retry of its failed execution), in order: ``id`` (the proposal's),
    ``history_date``, ``history_actor`` (who, as the record names them) and
    ``history_change_reason``."""
    return (
        Proposal.history.filter(
            id__in=proposal_ids, status=ProposalStatus.APPROVED, history_actor_kind="user"
        )
        .order_by("id", "history_id")
        .values_list("id", "history_date", "history_actor", "history_change_reason")
    )


def persons_approvals_after(*, retry: bool) -> QuerySet:
    """A failed attempt's proposal's history records of a person's move to approved after
    it began and before its next attempt began (``Exists`` of it): their retries (``retry``)
    or their approvals after a kill switch held it back, as ``sent_to_run_again_read`` tells
    them apart. The attempt is annotated with ``next_began`` (``retry_started``)."""
    recorded_as_retry = Q()
    for words in RETRY_RECORDED:
        recorded_as_retry |= Q(history_change_reason__startswith=words)
    records = Proposal.history.filter(
        id=OuterRef("proposal_id"),
        status=ProposalStatus.APPROVED,
        history_actor_kind="user",
        history_date__gt=OuterRef("started_at"),
        history_date__lte=OuterRef("next_began"),
    )
    return records.filter(recorded_as_retry) if retry else records.exclude(recorded_as_retry)


def sent_to_run_again_read(executions) -> None:
    """Each failed attempt of ``executions`` given ``sent_again`` (``PersonLetRunAgain``):
    who let its proposal run again after it and when, the first person's move to approved
    after it began and before the attempt after it began: a retry, or an approval after a
    kill switch held it back between two attempts (nothing else makes an executing or failed
    proposal approved); None where the runner tried again on its own or nothing followed.
    One query for all, none if none failed. Each one's next attempt's start is read as
    ``retry_started_at`` reads it (annotated, or once)."""
    failed = [e for e in executions if e.status == ExecutionStatus.FAILED]
    for execution in failed:
        execution.sent_again = None
    if not failed:
        return
    approvals: dict[int, list[PersonLetRunAgain]] = {}
    for pk, at, by, how in persons_approvals({execution.proposal_id for execution in failed}):
        held = not (how or "").startswith(RETRY_RECORDED)
        approvals.setdefault(pk, []).append(PersonLetRunAgain(by, at, held))
    for execution in failed:
        next_began = execution.retry_started_at()
        execution.sent_again = next(
            (
                approval
                for approval in approvals.get(execution.proposal_id, [])
                if execution.started_at < approval.at
                and (next_began is None or approval.at <= next_began)
            ),
            None,
        )


def later_attempts() -> QuerySet:
    """The attempts of an attempt's proposal after it (``Exists`` of it: it was tried
    again)."""
    return Execution.objects.filter(
        proposal=OuterRef("proposal_id"), attempt__gt=OuterRef("attempt")
    )


def retry_started() -> Subquery:
    """An attempt's ``retry_started`` read with it (on an execution, or a past version of
    one: both name its proposal and its number): when the next attempt of its proposal
    began, through the attempts' unique index, one lookup a row."""
    return Subquery(later_attempts().order_by("attempt").values("started_at")[:1])


def attempt_status_said(
    execution: Execution,
    *,
    tried_again: bool,
    to_be_tried_again: bool = False,
    due: datetime | None = None,
    sent_again: PersonLetRunAgain | None = None,
) -> str:
    """An attempt's status, as its proposal's page, the list of executions and its own page
    say it: a failed one after which another was made, "Failed, tried again", not a bare
    "Failed"; one whose next attempt is yet to come (``to_be_tried_again``), "Failed, to be
    tried again at 15:15:39" (``due``: when the next is due, if read), as its proposal's
    status line says it is due. A bare "Failed" is said only of one nothing follows. One a
    person let run again (``sent_again``) says so, "Failed, sent to run again by operator2 at
    21:30:04 UTC" (Retry), "Failed, held back, then approved again by operator2 at …" (after a
    kill switch's hold): "tried again" is the runner's own further attempt."""
    status = execution.get_status_display()
    if execution.status != ExecutionStatus.FAILED:
        return status
    if sent_again is not None:
        return f"{status}, {sent_again.said()}"
    if tried_again:
        return f"{status}, tried again"
    if not to_be_tried_again:
        return status
    if due is None:
        return f"{status}, to be tried again"
    if due > timezone.now():
        return f"{status}, to be tried again at {console_time(due)}"
    # Its time has come: it goes once a worker takes it up.
    return f"{status}, to be tried again (due at {console_time(due)})"


class IdempotencyRecord(models.Model):
    """An agent's Idempotency-Key, the request it came with, and the answer it got: written
    with the request's work, in its transaction (approvals.services.idempotency)."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    # The answer's JSON as it was sent, kept as text: PostgreSQL's jsonb would put its keys in
    # an order of its own, and a replay would read otherwise than the answer it repeats.
    response_body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "key"], name="idempotency_unique_agent_key")
        ]

    def __str__(self) -> str:
        return f"{self.agent_id}:{self.key}"
