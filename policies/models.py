from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import BooleanField, Case, Exists, OuterRef, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact

from audit.models import audited_history, version_of
from hitlproject.errors import DomainError
from hitlproject.periods import DurationAtLeast, DurationAtMost, describe_duration
from ledger.models import Channel
from policies.guardrails import pattern_error

RATIO = {"max_digits": 14, "decimal_places": 6, "null": True, "blank": True}
MONEY = {"max_digits": 14, "decimal_places": 2, "null": True, "blank": True}

# What a policy's windows may be. A review window of more than a year is no deadline; a
# cumulative window longer than a quarter reads more history than a ceiling on a campaign's
# recent moves means, and a window of nothing counts nothing. Outside these, date arithmetic
# on them can also overflow: a policy saved with one is refused where it is entered, and one
# stored before these bounds makes the engine send its proposals to a human
# (``policies.services.policy_verdict``) rather than guess.
REVIEW_WINDOW_BOUNDS = (timedelta(minutes=1), timedelta(days=365))
CUMULATIVE_WINDOW_BOUNDS = (timedelta(minutes=1), timedelta(days=90))
DECIDE_WITHIN_BOUNDS = (timedelta(minutes=1), timedelta(days=365))
# Distinct people a proposal may need: more than this is a proposal nobody can approve (it
# waits until it expires), not a stricter rule.
MAX_PRIORITY = 1_000_000
MAX_APPROVALS = 10


# A policy's scope: the action type it governs, and each of agent, account, agent kind and
# channel it names or leaves blank (any). The first two are blank as NULL, the others as "".
SCOPE_FIELDS = ("action_type", "agent_id", "account_id", "agent_kind", "channel")
_BLANK_AS_NULL = frozenset({"agent_id", "account_id"})


def same_scope(policy: "Policy | None" = None) -> models.Q:
    """The policies of ``policy``'s action type and scope: the one rule by which a policy
    outranks another (``Policy.outranked_by``, the policy list's ``outranked_by_annotated``),
    two may not share a priority (``Policy.clean``), and a draft takes a policy's place
    (``policies.drafts.replaced_policy``). Each of agent, account, agent kind and channel named
    alike or blank alike: one for any agent is not of the scope of one naming an agent (it
    governs more; the one naming it wins where both match). ``None``: of each row of the outer
    query, in a ``Subquery``, where SQL's = never holds of two blanks."""
    if policy is not None:  # a blank agent or account filters as IS NULL
        return models.Q(**{field: getattr(policy, field) for field in SCOPE_FIELDS})
    return models.Q(
        *(
            Exact(Coalesce(field, Value(0)), Coalesce(OuterRef(field), Value(0)))
            if field in _BLANK_AS_NULL
            else models.Q(**{field: OuterRef(field)})
            for field in SCOPE_FIELDS
        )
    )


def _within(bounds: tuple[timedelta, timedelta]) -> list:
    return [DurationAtLeast(bounds[0]), DurationAtMost(bounds[1])]


def windows_out_of_bounds(policy) -> list[str]:
    """What is wrong with a policy's (or an engine rule's) windows, in words; empty if
    nothing is."""
    problems = []
    for label, window, bounds in (
        ("review window", policy.review_window, REVIEW_WINDOW_BOUNDS),
        ("cumulative window", policy.cumulative_window, CUMULATIVE_WINDOW_BOUNDS),
    ):
        if window is not None and not bounds[0] <= window <= bounds[1]:
            problems.append(
                f"policy “{policy.name}” has a {label} of {describe_duration(window)}, outside "
                f"what a policy may have ({describe_duration(bounds[0])} to "
                f"{describe_duration(bounds[1])})"
            )
    return problems


def decision_due_after_expiry(policy) -> str | None:
    """Why a policy's deadline to decide (``decide_within``) can never fall due, in words: it
    is no sooner than its proposals expire (``review_window``). None if it can, if there is
    none, or if either window is out of bounds (refused as such)."""
    review, decide = policy.review_window, policy.decide_within
    if review is None or decide is None or decide < review:
        return None
    if not (
        REVIEW_WINDOW_BOUNDS[0] <= review <= REVIEW_WINDOW_BOUNDS[1]
        and DECIDE_WITHIN_BOUNDS[0] <= decide <= DECIDE_WITHIN_BOUNDS[1]
    ):
        return None
    return (
        f"A proposal expires after the review window, {describe_duration(review)}: a "
        f"decision due within {describe_duration(decide)} would never be late. Make it "
        "shorter than the review window, or leave it empty."
    )


def hard_ceilings_below_auto_execute(policy) -> dict[str, ValidationError]:
    """A hard ceiling below the auto-execute ceiling it stands beside (of magnitude, or of
    amount), by field, in words: what lies between them would be refused outright, never run,
    so the policy would not do what its auto-execute ceiling says. A policy stored so before
    this check routes as it did; it is refused only when next saved (or promoted)."""
    pairs = (
        ("block_above_magnitude", "auto_execute_max_magnitude", "hard ceiling"),
        ("block_above_amount", "auto_execute_max_amount", "hard amount ceiling"),
    )
    problems = {}
    for hard, auto, label in pairs:
        high, low = getattr(policy, hard), getattr(policy, auto)
        if high is not None and low is not None and high < low:
            problems[hard] = ValidationError(
                f"The {label} is below the auto-execute "
                f"{'amount ceiling' if 'amount' in hard else 'ceiling'}: what lies between "
                "them would be refused outright, never run as that ceiling says. Make it at "
                "least as high, or lower the auto-execute one.",
                code="below_auto_execute",
            )
    return problems


def policy_name(name: str, *, is_draft: bool) -> str:
    """A policy as the console names it: a draft says it is one, wherever it is named (its
    page, a dry run's verdict and reasons, the simulation)."""
    return f"{name} (draft)" if is_draft else name


class Policy(models.Model):
    """Where the line runs for one action type: what may run at once, what waits for a human,
    what is refused outright.

    A policy matches by action type and an optional scope (agent, account, agent kind,
    channel). The most specific match wins (an agent outweighs an account, which outweighs an
    agent kind, which outweighs a channel); ties go to the higher priority. A proposal no
    policy matches goes to a human. Drafts never decide anything live: they exist to be
    simulated over history, then promoted.
    """

    name = models.CharField(max_length=200)
    action_type = models.CharField(max_length=32)
    agent = models.ForeignKey(
        "approvals.Agent", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    account = models.ForeignKey(
        "ledger.Account", null=True, blank=True, on_delete=models.PROTECT, related_name="policies"
    )
    agent_kind = models.CharField(max_length=16, blank=True)
    channel = models.CharField(max_length=32, choices=Channel.choices, blank=True)
    # Bounded here, not by the database: PostgreSQL refuses a priority past its integer's
    # range with an error, SQLite stored 99999999999; both refuse the same now, saying why.
    priority = models.IntegerField(
        default=0,
        validators=[MinValueValidator(-MAX_PRIORITY), MaxValueValidator(MAX_PRIORITY)],
        help_text=f"Breaks ties between equally specific policies: higher wins. From "
        f"-{MAX_PRIORITY:,} to {MAX_PRIORITY:,}.",
    )
    is_active = models.BooleanField(default=True)
    is_draft = models.BooleanField(
        default=False, help_text="A draft is only simulated; it decides nothing live."
    )
    draft_of = models.ForeignKey(
        "self",
        verbose_name="replaces, when promoted",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="drafts",
        help_text="The live policy this draft replaces when it is simulated and promoted.",
    )

    auto_execute_max_magnitude = models.DecimalField(
        **RATIO,
        validators=[MinValueValidator(0)],
        help_text=(
            "Largest magnitude that executes without a human: a fraction for relative changes "
            "(0.10 = 10%), a count for creative batches. Empty: nothing auto-executes."
        ),
    )
    auto_execute_max_amount = models.DecimalField(
        "auto-execute amount ceiling",
        **MONEY,
        validators=[MinValueValidator(0)],
        help_text="And at most this much money a day, in the account's currency. Empty: no limit.",
    )
    block_above_magnitude = models.DecimalField(
        **RATIO, validators=[MinValueValidator(0)], help_text="Hard ceiling: above it, blocked."
    )
    block_above_amount = models.DecimalField(
        "hard amount ceiling",
        **MONEY,
        validators=[MinValueValidator(0)],
        help_text="Hard ceiling in money per day.",
    )
    always_review = models.BooleanField(default=False)
    cumulative_max_magnitude = models.DecimalField(
        **RATIO,
        validators=[MinValueValidator(0)],
        help_text=(
            "Most a campaign's bid or budget may move, compounded, over the window, counting "
            "what executed and what is approved (0.25 = 25%). Above it, a human decides."
        ),
    )
    cumulative_window = models.DurationField(
        default=timedelta(hours=24),
        validators=_within(CUMULATIVE_WINDOW_BOUNDS),
        help_text="The moves counted: those of this long before. From a minute to 90 days.",
    )
    required_approvals = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_APPROVALS)],
        help_text=f"Distinct approvals needed, up to {MAX_APPROVALS}.",
    )
    more_approvals_above_magnitude = models.DecimalField(
        **RATIO,
        validators=[MinValueValidator(0)],
        help_text="Two-person rule: above this magnitude…",
    )
    more_approvals_above_amount = models.DecimalField(
        "more approvals above this amount",
        **MONEY,
        validators=[MinValueValidator(0)],
        help_text="…or this amount per day…",
    )
    approvals_above_threshold = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_APPROVALS)],
        help_text=f"…this many distinct approvals, up to {MAX_APPROVALS}.",
    )
    review_window = models.DurationField(
        default=timedelta(hours=72),
        validators=_within(REVIEW_WINDOW_BOUNDS),
        help_text=(
            "How long a proposal may wait before it expires: a minute to 365 days. A change "
            "applies to proposals routed after it; those waiting keep the window they had."
        ),
    )
    decide_within = models.DurationField(
        null=True,
        blank=True,
        validators=_within(DECIDE_WITHIN_BOUNDS),
        help_text=(
            "How soon a decision is due, shorter than the review window: those told are "
            "reminded at half time, and at the deadline the routes' backup groups are told. "
            "Empty: no deadline. A change applies to proposals routed after it."
        ),
    )
    description = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = audited_history()

    class Meta:
        verbose_name_plural = "policies"
        ordering = ["action_type", "-priority", "name"]
        indexes = [models.Index(fields=["action_type", "is_active"], name="policy_lookup_idx")]

    def __str__(self) -> str:
        return policy_name(self.name, is_draft=self.is_draft)

    @property
    def state(self) -> str:
        """Whether it decides anything live, in words: a draft keeps its policy's name, and a
        promoted draft is retired beside the live policy it was promoted into."""
        if self.is_draft:
            return "Draft" if self.is_active else "Retired draft"
        return "Live" if self.is_active else "Inactive"

    def _same_scope_live(self) -> models.QuerySet["Policy"]:
        return Policy.objects.filter(same_scope(self), is_active=True, is_draft=False).exclude(
            pk=self.pk
        )

    def outranked_by(self) -> "Policy | None":
        """The live policy of this one's action type and scope that the engine prefers on
        every proposal this one would match (a higher priority; at the same, the older): while
        it is live, this one decides nothing. None for a draft or one switched off."""
        if self.is_draft or not self.is_active:
            return None
        return (
            self._same_scope_live()
            .filter(
                models.Q(priority__gt=self.priority)
                | models.Q(priority=self.priority, pk__lt=self.pk)
            )
            .order_by("-priority", "pk")
            .first()
        )

    def outranks(self) -> list["Policy"]:
        """The live policies of this one's action type and scope that decide nothing while
        this one is live (see ``outranked_by``)."""
        if self.is_draft or not self.is_active:
            return []
        return list(
            self._same_scope_live()
            .filter(
                models.Q(priority__lt=self.priority)
                | models.Q(priority=self.priority, pk__gt=self.pk)
            )
            .order_by("-priority", "pk")
        )

    def clean(self) -> None:
        late = decision_due_after_expiry(self)
        if late:
            raise ValidationError({"decide_within": ValidationError(late, code="after_expiry")})
        below = hard_ceilings_below_auto_execute(self)
        if below:
            raise ValidationError(below)
        if not self.is_active:
            return
        rivals = Policy.objects.filter(
            same_scope(self), is_active=True, is_draft=self.is_draft, priority=self.priority
        ).exclude(pk=self.pk)
        rival = rivals.first()
        if rival is not None:
            # By its id too: the rival often has this policy's name (a draft of it, or the
            # draft promoted in its place while it was switched off).
            raise ValidationError(
                f"“{rival}” (#{rival.pk}) already covers this action type and scope at "
                f"priority {self.priority}; give one of them another priority or scope."
            )


class KillSwitchScope(models.TextChoices):
    GLOBAL = "global", "Everything"
    ACCOUNT = "account", "One account"
    CHANNEL = "channel", "One channel"


# How long a kill switch's reason may be: every message about it quotes all of it (an email's
# body, a Slack message, each proposal it holds back), so 100 KB made a 100 KB email.
KILL_SWITCH_REASON_MAX_LENGTH = 1000


def kill_switch_reason_within(reason: str) -> None:
    if len(reason) > KILL_SWITCH_REASON_MAX_LENGTH:
        raise ValidationError(
            f"A kill switch's reason is at most {KILL_SWITCH_REASON_MAX_LENGTH:,} characters "
            f"(every message about it quotes all of it); this one is {len(reason):,}."
        )


# Set on a switch read with the others over its scope, or on a historical record of one read
# with the others' records before it: whether it is named apart from them
# (``KillSwitch.named_apart``), so that naming it asks nothing more.
NAMED_APART = "_named_apart"


def _on_the_same_scope(rows: QuerySet) -> QuerySet:
    """Of ``rows`` (switches, or their historical records), those on the very scope of the
    row of the outer query."""
    # A switch on everything or on a channel has no account, and SQL's NULL equals nothing:
    # of one scope, those with none are on the same (the model's constraint).
    return rows.filter(scope=OuterRef("scope"), channel=OuterRef("channel")).filter(
        Q(account_id=OuterRef("account_id")) | Q(account__isnull=True)
    )


def _apart_from(others: QuerySet) -> Case:
    """Whether the outer query's switch is named apart from ``others``, the switches on its
    very scope (``KillSwitch.named_apart``): engaged, from another engaged; released, from
    any other."""
    return Case(
        When(engaged=True, then=Exists(others.filter(engaged=True))),
        default=Exists(others),
        output_field=BooleanField(),
    )


def switches_named_apart(switches: QuerySet) -> QuerySet:
    """``switches``, each read with whether it is named apart (``KillSwitch.named_apart``) as
    things stand, in the statement that reads them."""
    others = _on_the_same_scope(KillSwitch.objects.exclude(pk=OuterRef("pk")))
    return switches.annotate(**{NAMED_APART: _apart_from(others)})


def records_named_apart(records: QuerySet) -> QuerySet:
    """Historical records of switches, each read with whether its switch was named apart as
    that record was written (``KillSwitch.named_apart``): of each other switch, its last
    record written before, unless that one is its deletion. In the statement that reads
    them: a page of them asks nothing more."""
    history = KillSwitch.history.model
    written_after = history.objects.filter(
        id=OuterRef("id"),
        history_id__gt=OuterRef("history_id"),
        history_id__lt=OuterRef(OuterRef("history_id")),
    )
    others = _on_the_same_scope(
        history.objects.filter(history_id__lt=OuterRef("history_id"))
        .exclude(id=OuterRef("id"))
        .exclude(history_type="-")
        .exclude(Exists(written_after))
    )
    return records.annotate(**{NAMED_APART: _apart_from(others)})


class KillSwitch(models.Model):
    """While engaged, nothing in its scope executes without a human."""

    scope = models.CharField(max_length=8, choices=KillSwitchScope.choices)
    account = models.ForeignKey(
        "ledger.Account", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    channel = models.CharField(max_length=32, choices=Channel.choices, blank=True)
    engaged = models.BooleanField(default=True)
    reason = models.TextField(validators=[kill_switch_reason_within])
    updated_at = models.DateTimeField(auto_now=True)

    history = audited_history()

    class Meta:
        verbose_name_plural = "kill switches"
        constraints = [
            models.CheckConstraint(
                name="kill_switch_scope_matches",
                condition=(
                    models.Q(scope="global", account__isnull=True, channel="")
                    | models.Q(scope="account", account__isnull=False, channel="")
                    | models.Q(scope="channel", account__isnull=True) & ~models.Q(channel="")
                ),
            )
        ]

    def __str__(self) -> str:
        state = "engaged" if self.engaged else "released"
        return f"Kill switch on {self.called()} ({state})"

    def save(self, *args, **kwargs):
        """Saved in one transaction with what its save sets going (``policies.receivers``):
        engaged, what it covers is held back in the same transaction, whatever saved it, and
        a save outside any transaction (a ``manage.py shell``) commits both or neither."""
        with transaction.atomic():
            super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        """Refused while engaged: deleted, it would release what it holds with nobody told
        (the console's delete page says so, and to release it first)."""
        if self.engaged:
            raise DomainError(f"The kill switch on {self.called()} is engaged: release it first.")
        return super().delete(*args, **kwargs)

    def called(self) -> str:
        """What it is on, as its title and messages name it ("account demo"); with its
        number, as its page's address has it ("account demo (#7)"), where it is named apart
        (``named_apart``): two switches on one account read alike in its title, the
        console's lists and filters, a delete page, its messages and a proposal's
        findings."""
        named = self.scope_in_words()
        return f"{named} (#{self.pk})" if self.named_apart() else named

    def named_apart(self) -> bool:
        """Whether it is named with its number: engaged, where another switch engaged
        covers the very same scope; released, where any other switch does (two released
        on one account read alike on the page that deletes one). A released switch's name
        never changes an engaged one's, which its proposals' findings recorded.

        Of a past version (a history row, ``audit.models.version_of``), as things stood
        when that version was written (``records_named_apart``), not as they stand now.
        Asked of the database unless read beforehand (``switches_named_apart``,
        ``records_named_apart``, ``policies.services.kill_switches_told_apart``): a list
        of switches or of their records is read with it, in one statement."""
        apart = getattr(self, NAMED_APART, None)
        if apart is not None:
            return apart
        if self.pk is None:
            return False
        record = version_of(self)
        if record is not None:
            apart = getattr(record, NAMED_APART, None)
            if apart is None:
                records = type(record).objects.filter(history_id=record.history_id)
                apart = records_named_apart(records).values_list(NAMED_APART, flat=True).first()
            return bool(apart)
        others = KillSwitch.objects.filter(
            scope=self.scope, account_id=self.account_id, channel=self.channel
        ).exclude(pk=self.pk)
        return (others.filter(engaged=True) if self.engaged else others).exists()

    def very_scope(self) -> tuple[str, int | None, str]:
        """The very scope it covers, as two switches on one (or a switch and the scope it
        covered in a version of its history) compare: two on one read alike but for their
        numbers."""
        return (self.scope, self.account_id, self.channel)

    def scope_in_words(self) -> str:
        """What it covers, as every message names it: "everything", "account demo", "channel
        Google Ads" (its title read "Kill switch on demo" and "on google_ads" beside a
        message saying "Kill switch on account demo"), and the finding a proposal records
        (``policies.services.kill_switch_named``)."""
        if self.scope == KillSwitchScope.ACCOUNT:
            return f"account {self.account}"
        if self.scope == KillSwitchScope.CHANNEL:
            return f"channel {self.get_channel_display()}"
        return "everything"


class BrandGuidelines(models.Model):
    """What every creative on an account must and must not say."""

    account = models.OneToOneField(
        "ledger.Account", on_delete=models.PROTECT, related_name="brand_guidelines"
    )
    banned_terms = models.TextField(
        blank=True,
        help_text=(
            "One a line; matched as whole words, ignoring case, on what a reader sees: "
            "written with look-alike letters, invisible characters or reversed, still found."
        ),
    )
    banned_patterns = models.TextField(
        blank=True,
        help_text=(
            "Regular expressions, one a line, matched ignoring case, on the text as written "
            "and as read (look-alike letters read as the ASCII letters they imitate)."
        ),
    )
    required_disclaimers = models.TextField(
        blank=True,
        help_text=(
            "One a line; each must appear in every creative's body, as a reader sees it, "
            "and written plainly."
        ),
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = audited_history()

    class Meta:
        verbose_name_plural = "brand guidelines"

    def __str__(self) -> str:
        return f"Brand guidelines for {self.account}"

    def clean(self) -> None:
        for line in lines(self.banned_patterns):
            error = pattern_error(line)
            if error:
                raise ValidationError({"banned_patterns": error})


def lines(text: str) -> list[str]:
    """A field of one entry a line (a banned term, a disclaimer), as its entries."""
    return [line.strip() for line in text.splitlines() if line.strip()]


class CountedMove(models.Model):
    """A move of one campaign field that counts against cumulative ceilings: one row per
    target of each proposal approved (by policy or by people), executing or executed, at the
    time it was (last) approved to run, and whether it has executed. Kept by the proposal
    lifecycle in the transaction that moves the proposal, so the engine reads a target's moves
    of a window through one index, however busy the account; derived from the proposals
    (their status, ``approved_at`` and ``effects``), never edited by hand. ``proposal_id`` is
    not a foreign key: policies sit below approvals.

    A move not yet executed may still never run (superseded, failed, re-routed), so it counts
    only towards the bound it pushes: a raise towards the ceiling above, a cut towards the
    one below, never offsetting another move (see ``policies.engine``); and one that sets the
    target's value is not counted for a proposal setting it too (whichever executes first
    supersedes the other)."""

    proposal_id = models.BigIntegerField()
    agent_id = models.BigIntegerField(
        null=True,
        help_text="The agent whose proposal it is: a reason names only its reader's own.",
    )
    account = models.ForeignKey("ledger.Account", on_delete=models.CASCADE, related_name="+")
    target = models.CharField(max_length=200, help_text="campaign.field, e.g. brand-search.bid")
    factor = models.CharField(max_length=100, help_text="The exact factor, as a fraction's text.")
    approved_at = models.DateTimeField()
    executed = models.BooleanField(
        default=False, help_text="Executed; until then it counts only towards the bound it pushes."
    )
    sets_value = models.BooleanField(
        default=False,
        help_text=(
            "Its proposal sets the target's value (not an amount moved): until executed, not "
            "counted for a proposal setting the same target, since only one of them can run."
        ),
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["proposal_id", "target"], name="counted_move_proposal_target_unique"
            )
        ]
        indexes = [
            models.Index(
                fields=["account", "target", "approved_at"], name="counted_move_target_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.target} × {self.factor} (proposal #{self.proposal_id})"


class RulesVersion(models.Model):
    """Which state of the rules in force (the policies, their history, the kill switches, the
    accounts they name and the brand guidelines; the agents, their API keys and the accounts
    each may act on; and the notification routes, the people they tell and how each is
    reached) a process holds: one row, whose token the database changes, in the transaction
    that makes it, at every write to those tables, however it is made (by triggers, installed
    by the migration that made this table, by 0011, approvals' 0024 and 0025 and
    notifications' 0007). A process keeps what it read
    under the token it read (``policies.services.in_force``) and reads it again when the
    token differs. A token, not a counter: it never comes back, even when the row is lost
    and made again."""

    token = models.CharField(max_length=32)

    def __str__(self) -> str:
        return self.token
