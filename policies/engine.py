"""The policy engine: a pure function of a proposal's facts and the rules in force.

No database, no clock, no I/O: the live path and the what-if simulation run this same code, and
it is tested without a database. ``policies.services`` gathers the facts (the ledger, the
guardrails, the recent moves on the same targets) and turns policy rows into ``Rule``.

How a verdict is reached, in order:

1. **Guardrail blocks** (a strategy lock, a budget cap) and a **hard ceiling** of the matched
   policy refuse the proposal outright: ``block``.
2. An action type that always waits for a person (a change to the policies themselves), no
   matching policy, a **kill switch**, a **brand-guideline** finding, a value an approved
   proposal **changes first** (this one would only be superseded), **always review**, a
   magnitude or amount over the **auto-execute ceiling**, or a **cumulative** move over the
   window's ceiling: ``review``, by a human. Every reason found is given, not only the first.
3. Otherwise ``auto_approve``.

Every rule that held a proposal back is also named in the verdict's ``held_by``, as a
``Hold``: which rule (``HoldRule``) and its figures in words ("cumulative ceiling 25% per 1 day
(with this move, brand-search's daily budget would move -28.0% within 1 day, counting
what is approved or executed)"), so that a page can point at the rule a person would change.

Matching: a policy matches when its action type is the proposal's and each scope it names
(agent, account, agent kind, channel) is the proposal's. The most specific wins: an agent
counts 8, an account 4, an agent kind 2, a channel 1; then the higher priority; then the older
policy.

Cumulative moves compound: a campaign's budget moved +9% ten times has moved
1.09^10 - 1 = +136.7%, and a move down then up by the same share nets out. Each target (a
campaign's bid, a campaign's daily budget) is checked on its own.

A move approved but not yet executed may never run (superseded when another change lands on
its target first, failed, re-routed to a person), so it counts only towards the bound it
pushes and never offsets another: with this move, the executed product times every pending
raise must stay within the ceiling above, and the executed product times every pending cut
within the ceiling below. Whichever of the pending moves end up running, the target stays
within the ceiling; a cut approved to balance a raise (and then left to be superseded) lets
no raise through.

A ceiling holds a move only on the side it pushes: a raise where the highest bound goes over
the ceiling above, a cut where the lowest goes below the ceiling below. A cut where earlier
raises took the target over the ceiling above (or a raise after cuts below the one below)
brings it back towards where it was: holding it for a person would only keep the figure
further out while it waits, so the ceiling does not hold it, and an approval of it says so
beside its auto-execute reason ("Without this move, … would move +30.0% …: over the 25.0%
cumulative ceiling …. This move of -2.0% brings it back to +27.4%, so that ceiling does not
hold it"). One that overshoots the other way is over the ceiling on its own side.

Except what can never run with this move: a proposal that sets a value (``Facts.sets_values``:
a bid, a budget) and a pending move that sets the same target (``Move.sets_value``) were both
made against the value it has now, so whichever executes first changes it and supersedes the
other; this one cannot even be approved while that one is under way (it waits for a person,
``Facts.changed_first``). Such a move is not counted for it, and its reason says so ("not
counting #12, approved, not yet executed, which sets brand-search's bid too: only one of them
can run"): compounding the two would tell its reader of a move that cannot happen. A move of
an amount (a reallocation) keeps its meaning when the value changes, and runs after either:
it counts, for every proposal, and every pending move counts for one.

Exact figures: a move's factor is the ratio of the ledger's own values (new / current) as a
fraction, never rounded, and magnitudes, compounded moves and the ceilings they are compared
with are compared exactly; only what an operator reads is rounded. A move that lands exactly on
a ceiling is within it, and one cent over is over, however many moves compound. The arithmetic
is done on integers, each figure as the numerator and denominator ``Fraction`` would hold
(``a/b > c/d`` as ``a*d > c*b``), and a rule's figures are converted once per rule: building
fractions was most of an evaluation's time, and the batch path evaluates every item.

Risk score (0-100, for ordering the review queue; deterministic), in two bands::

    clean    = min(90, weight + pressure + record)       0-90: no guardrail spoke
    guarded  = 91 + clean // 10                         91-100: a guardrail spoke

    weight     the action type's: 10 (bid) ... 40 (strategy)
    pressure   15 x min(pressure, 4): magnitude over its ceiling, or amount over its ceiling,
               whichever presses harder
    record     15 x (1 - approval rate): the agent's record; 5 when it has too few decisions

where a missing ceiling counts as 10% for relative changes, 1 for counts, and 1,000 for money,
and a guardrail speaks with a banned term, a kill switch, a cap or a lock. A proposal a
guardrail spoke about ranks above every clean one, whatever their sizes and records: a bonus
added to the sum could not do that (one creative's pressure, 15, outweighed the old +10), and
one big enough to would not fit in 0-100. Clean proposals keep the figures they always had, so
a notification route's minimum risk means what it did for them and stored risks stay
comparable; guarded ones keep their order among themselves by the tens of their clean score.
The queue's one order (riskiest, then oldest, ``proposal_queue_idx``) needs no second key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from math import gcd
from typing import Literal, NamedTuple

from hitlproject.durations import describe_duration
from hitlproject.percentages import percent_figure, round_half_away

Outcome = Literal["auto_approve", "review", "block"]
MagnitudeUnit = Literal["ratio", "count"]
# The largest relative change recorded (a proposal's magnitude column, and what the engine
# counts): a move of 100000% or more is recorded at it, and shown as "at least" that much.
MAGNITUDE_CAP = Decimal("1000")
HoldRule = Literal[
    "guardrail",
    "changed_first",
    "hard_ceiling",
    "hard_amount_ceiling",
    "always_human",
    "no_policy",
    "always_review",
    "no_auto_execute_ceiling",
    "auto_execute_ceiling",
    "amount_ceiling",
    "cumulative_ceiling",
    "two_person_rule",
]
# The holds that are not a policy's own rules: where one of these alone holds a proposal, the
# policy that matches it did not decide it.
NOT_A_POLICYS_RULE = frozenset({"guardrail", "changed_first", "always_human", "no_policy"})
# What each rule is called where a page counts the proposals it held.
HOLD_RULE_LABELS: dict[str, str] = {
    "guardrail": "a guardrail",
    "changed_first": "a value an approved proposal changes first",
    "hard_ceiling": "the hard ceiling",
    "hard_amount_ceiling": "the hard amount ceiling",
    "always_human": "always a person's (the action type)",
    "no_policy": "no policy matched",
    "always_review": "always review",
    "no_auto_execute_ceiling": "no auto-execute ceiling",
    "auto_execute_ceiling": "the auto-execute ceiling",
    "amount_ceiling": "the auto-execute amount ceiling",
    "cumulative_ceiling": "the cumulative ceiling",
    "two_person_rule": "the two-person rule",
}

# An exact number as (numerator, denominator), the denominator positive, not always reduced.
_Ratio = tuple[int, int]
_REFERENCE_CEILING_RATIO: dict[str, _Ratio] = {"ratio": (1, 10), "count": (1, 1)}
_REFERENCE_AMOUNT_RATIO: _Ratio = (1000, 1)
_MAX_PRESSURE = 4
# A compounded product's terms are reduced once they grow past this many bits.
_REDUCE_ABOVE_BITS = 1024
_UNKNOWN_RECORD_RISK = 5
_CLEAN_RISK_MAX = 90
_GUARDED_RISK_MIN = 91
# The lowest risk a guardrail's finding gives (``guarded_risk``): a risk below it no
# guardrail raised.
GUARDED_RISK_MIN = _GUARDED_RISK_MIN


@dataclass(frozen=True)
class Rule:
    policy_id: int
    name: str
    action_type: str
    agent_id: int | None = None
    account_id: int | None = None
    agent_kind: str = ""
    channel: str = ""
    priority: int = 0
    auto_execute_max_magnitude: Decimal | None = None
    auto_execute_max_amount: Decimal | None = None
    block_above_magnitude: Decimal | None = None
    block_above_amount: Decimal | None = None
    always_review: bool = False
    cumulative_max_magnitude: Decimal | None = None
    cumulative_window: timedelta = timedelta(hours=24)
    required_approvals: int = 1
    more_approvals_above_magnitude: Decimal | None = None
    more_approvals_above_amount: Decimal | None = None
    approvals_above_threshold: int = 2
    review_window: timedelta = timedelta(hours=72)
    version: int | None = None

    @property
    def specificity(self) -> int:
        return (
            8 * (self.agent_id is not None)
            + 4 * (self.account_id is not None)
            + 2 * bool(self.agent_kind)
            + bool(self.channel)
        )

    # Worked out once per rule, not once per evaluation (a frozen rule's figures cannot change;
    # ``dataclasses.replace`` makes a new rule, which works them out anew).
    @cached_property
    def _rank(self) -> tuple[int, int, int]:
        """Which of the matching rules wins: the most specific, then the higher priority,
        then the older policy."""
        return (self.specificity, self.priority, -self.policy_id)

    @cached_property
    def _figures(self) -> _Figures:
        ratio = _maybe_ratio
        return _Figures(
            auto_execute_max_magnitude=ratio(self.auto_execute_max_magnitude),
            auto_execute_max_amount=ratio(self.auto_execute_max_amount),
            block_above_magnitude=ratio(self.block_above_magnitude),
            block_above_amount=ratio(self.block_above_amount),
            cumulative_max_magnitude=ratio(self.cumulative_max_magnitude),
            more_approvals_above_magnitude=ratio(self.more_approvals_above_magnitude),
            more_approvals_above_amount=ratio(self.more_approvals_above_amount),
            # A ceiling of 0 or none presses as the reference ceiling (see the risk score).
            pressure_magnitude=ratio(self.auto_execute_max_magnitude or None),
            pressure_amount=ratio(self.auto_execute_max_amount or None) or _REFERENCE_AMOUNT_RATIO,
        )

    @cached_property
    def _texts(self) -> dict[tuple, str]:
        """Its figures in words, by (how, which figure, unit or currency): see ``_said``."""
        return {}

    def matches(self, facts: Facts | Scope) -> bool:
        return (
            self.action_type == facts.action_type
            and self.agent_id in (None, facts.agent_id)
            and self.account_id in (None, facts.account_id)
            and self.agent_kind in ("", facts.agent_kind)
            and self.channel in ("", facts.channel)
        )


class _Figures(NamedTuple):
    """A rule's figures as exact ratios of integers, for comparisons by cross-multiplying."""

    auto_execute_max_magnitude: _Ratio | None
    auto_execute_max_amount: _Ratio | None
    block_above_magnitude: _Ratio | None
    block_above_amount: _Ratio | None
    cumulative_max_magnitude: _Ratio | None
    more_approvals_above_magnitude: _Ratio | None
    more_approvals_above_amount: _Ratio | None
    pressure_magnitude: _Ratio | None
    pressure_amount: _Ratio


@dataclass(frozen=True)
class Scope:
    """What a policy is matched on: an action type, by an agent, on an account."""

    action_type: str
    account_id: int
    channel: str = ""
    agent_id: int | None = None
    agent_kind: str = ""


Number = Decimal | Fraction | int


def exact(value: Number) -> Fraction:
    return Fraction(value)


def _ratio(value: Number) -> _Ratio:
    """A number exactly, as integers: what ``Fraction(value)`` holds, without building one."""
    kind = type(value)
    if kind is Decimal or kind is Fraction:
        return value.as_integer_ratio()
    if kind is int:
        return value, 1
    value = Fraction(value)
    return value.numerator, value.denominator


def _maybe_ratio(value: Number | None) -> _Ratio | None:
    return None if value is None else _ratio(value)


def factor_text(factor: Number) -> str:
    """A factor as stored with a proposal's effects: an exact fraction, "new/current"."""
    factor = exact(factor)
    return f"{factor.numerator}/{factor.denominator}"


def factor_from_text(text: str) -> Fraction:
    """A stored factor: "265464/245800", or a decimal as older proposals stored it. The
    first, read by the thousand for cumulative ceilings, without Fraction's text parser."""
    numerator, slash, denominator = text.partition("/")
    if slash and numerator.isascii() and numerator.lstrip("-").isdigit() and denominator.isdigit():
        return Fraction(int(numerator), int(denominator))
    return Fraction(text)


@dataclass(frozen=True)
class Move:
    """A change already approved or executed on a target, as the factor it multiplies it by;
    ``pending`` while approved but not yet executed (it counts only towards the bound it
    pushes)."""

    target: str
    factor: Number
    at: datetime
    pending: bool = False
    # Its proposal sets the target's value (a bid, a budget), rather than moving an amount: a
    # proposal setting the same target cannot run with it (see the module's notes).
    sets_value: bool = False
    # The proposal that made it, where known (a replay counts moves without them), and its
    # agent: a reason names only its reader's own proposals.
    proposal: int | None = None
    agent: int | None = None


@dataclass(frozen=True)
class Facts:
    action_type: str
    action_label: str
    magnitude: Number  # exact, where the action type can give it so
    magnitude_unit: MagnitudeUnit
    magnitude_label: str
    risk_weight: int
    account_id: int
    channel: str = ""
    agent_id: int | None = None
    agent_kind: str = ""
    amount: Decimal | None = None
    currency: str = ""
    # target ("brand-search's daily budget") -> factor this proposal multiplies it by
    effects: dict[str, Number] = field(default_factory=dict)
    # It sets its targets' values (``ActionType.sets_values``): a pending move setting one of
    # them too (``Move.sets_value``) can never run with it, and is not counted.
    sets_values: bool = False
    recent_moves: Sequence[Move] = ()
    now: datetime | None = None
    guardrail_blocks: tuple[str, ...] = ()
    guardrail_reviews: tuple[str, ...] = ()
    # Why it would only be superseded once it runs: a proposal approved before it changes a
    # value it sets first. Not a guardrail: it adds no risk, and the proposal may be right.
    changed_first: tuple[str, ...] = ()
    agent_approval_rate: float | None = None
    # Why this kind of action always waits for a person, whatever the policies say.
    always_human: str = ""


@dataclass(frozen=True)
class Hold:
    """One rule that held a proposal back from running on its own: which, and what it says
    with its figures ("auto-execute ceiling 10% (this is 28.0%)")."""

    rule: HoldRule
    text: str
    policy_id: int | None = None
    # A cumulative ceiling's own figures, for a page to show beside each other without
    # reading them back out of the words: the target, its compounded move (exact, as
    # integers), the ceiling and its window as the policy stores them.
    target: str = ""
    moved: _Ratio | None = None
    ceiling: Decimal | None = None
    window: timedelta | None = None
    # The verdict's reason this hold gives (one of ``Verdict.reasons``), paired where the
    # engine finds it, for a page that says one rule's reasons alone. What the hold is does
    # not include it: a record does not store it (``as_record``).
    reason: str = field(default="", compare=False)

    def as_record(self) -> dict[str, object]:
        """What a proposal stores of it (JSON): its figures as exact strings, the move a
        fraction ("59/200"; a ratio of ledger values need not end as a decimal), the
        ceiling the policy's decimal ("0.25")."""
        record: dict[str, object] = {"rule": self.rule, "text": self.text}
        if self.policy_id is not None:
            record["policy"] = self.policy_id
        if self.moved is not None:
            moved = Fraction(*self.moved)
            record.update(
                target=self.target,
                moved=f"{moved.numerator}/{moved.denominator}",
                ceiling=str(self.ceiling),
                window_seconds=int(self.window.total_seconds()),
            )
        return record

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[str, ...]
    risk: int
    policy_id: int | None = None
    policy_name: str = ""
    policy_version: int | None = None
    required_approvals: int = 1
    review_window: timedelta | None = None
    # What held it back (for ``block``, what refused it); empty when it runs on its own.
    held_by: tuple[Hold, ...] = ()


def rounded_percent(value: Number, *, signed: bool = False) -> str:
    """A ratio as a percentage to one decimal, the one rule every page, reason and message
    shows a move or a magnitude by: computed exactly, from the value's own digits (never a
    float, which can land on either side of a tie), and rounded half away from zero, as people
    and spreadsheets round: 0.85 / 0.80 is +6.25%, which reads "+6.3%"."""
    numerator, denominator = _ratio(value)
    return percent_figure(numerator, denominator, digits=1, signed=signed)


def change_percent(current: Number, new: Number, *, signed: bool = False) -> str:
    """(new − current) / current by ``rounded_percent``'s rule (its size alone unless
    ``signed``), worked out in integers: a batch says it of each of its items, and the same
    in Fractions cost several of them a figure. ``current`` is not zero."""
    current_numerator, current_denominator = _ratio(current)
    new_numerator, new_denominator = _ratio(new)
    numerator = new_numerator * current_denominator - current_numerator * new_denominator
    denominator = new_denominator * current_numerator
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    if not signed:
        numerator = abs(numerator)
    return percent_figure(numerator, denominator, digits=1, signed=signed)


def _at_cap(numerator: int, denominator: int) -> bool:
    return numerator >= int(MAGNITUDE_CAP) * denominator


def format_magnitude(value: Number, unit: MagnitudeUnit) -> str:
    if unit == "ratio":
        numerator, denominator = _ratio(value)
        if _at_cap(numerator, denominator):
            return f"at least {rounded_percent(MAGNITUDE_CAP)}"  # recorded at the cap
        return percent_figure(numerator, denominator, digits=1, signed=False)
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
    return f"{Decimal(value).normalize():f}"


def _move_text(moved: _Ratio, limit: _Ratio, *, signed: bool = True) -> str:
    """``rounded_percent``, with a decimal more (up to six) for as long as it reads as the
    limit does by the same rule: a move over a ceiling never reads as the ceiling."""
    digits = _digits_apart(moved, limit)
    return percent_figure(moved[0], moved[1], digits=digits, signed=signed)


def _digits_apart(moved: _Ratio, limit: _Ratio) -> int:
    """How many decimals (one to six) the move's percentage takes not to read as the limit's,
    both rounded half away from zero."""
    numerator, denominator = abs(moved[0]) * 100, moved[1]
    limit_numerator, limit_denominator = abs(limit[0]) * 100, limit[1]
    digits, shift = 1, 10
    while digits < 6 and round_half_away(numerator * shift, denominator) == round_half_away(
        limit_numerator * shift, limit_denominator
    ):
        digits, shift = digits + 1, shift * 10
    return digits


def _limit_beside(moved: _Ratio, limit: _Ratio) -> str:
    """A ratio ceiling as a reason names it beside a move over it: to one decimal, as its
    policy's figures read everywhere, unless that rounds it up to where the move's figure,
    given more decimals to tell the two apart, would read as over less than it is ("+12.30%
    over the 12.3% ceiling" of 12.25%): then to as many decimals as the move, or exactly where
    it takes fewer ("the 12.25% ceiling")."""
    numerator, denominator = abs(limit[0]), limit[1]
    digits = _digits_apart(moved, limit)
    if digits == 1 or numerator * 1000 % denominator == 0:
        return percent_figure(numerator, denominator, digits=1, signed=False)
    if numerator * 100 * 10**digits % denominator == 0:
        return percent_text(Fraction(numerator, denominator))
    return percent_figure(numerator, denominator, digits=digits, signed=False)


def _own_move_text(numerator: int, denominator: int) -> str:
    return percent_figure(numerator - denominator, denominator, digits=1, signed=True)


def _round_half_even(numerator: int, denominator: int) -> int:
    """round(numerator / denominator) exactly, halves to even, as ``round`` rounds a Fraction
    (the denominator positive)."""
    quotient, remainder = divmod(numerator, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2):
        quotient += 1
    return quotient


def format_money(value: Decimal, currency: str) -> str:
    return f"{value:,.2f} {currency}".strip()


def percent_text(ratio: Number) -> str:
    """A stored fraction as the percentage people think in, exactly: 0.1 is "10%", 0.125
    "12.5%" (to a millionth of a percent: finer than any ceiling a policy stores)."""
    numerator, denominator = _ratio(ratio)
    shown = (Decimal(numerator * 100) / Decimal(denominator)).quantize(Decimal("1e-6"))
    return f"{shown.normalize():f}%"


def ceiling_text(value: Number, unit: MagnitudeUnit) -> str:
    """A ceiling as its owner set it: a percentage for relative changes, a count otherwise."""
    if unit == "ratio":
        return percent_text(value)
    numerator, denominator = _ratio(value)
    return f"{(Decimal(numerator) / Decimal(denominator)).normalize():f}"


def window_text(window: timedelta) -> str:
    """A cumulative window in the words its policy's form takes and shows it in ("1 day", "36
    hours", "90 minutes"), not in hours ("24 h", "336 h" for two weeks, "1.5 h")."""
    return describe_duration(window)


def matching_rule(facts: Facts | Scope, rules: Iterable[Rule]) -> Rule | None:
    # ``Rule.matches`` and ``max`` by ``Rule._rank``, inlined: the batch path matches every
    # item against every rule in force. Ties keep the first rule, as ``max`` does.
    action_type, agent_id, account_id = facts.action_type, facts.agent_id, facts.account_id
    agent_kind, channel = facts.agent_kind, facts.channel
    best, best_rank = None, None
    for rule in rules:
        if (
            rule.action_type == action_type
            and (rule.agent_id is None or rule.agent_id == agent_id)
            and (rule.account_id is None or rule.account_id == account_id)
            and (rule.agent_kind == "" or rule.agent_kind == agent_kind)
            and (rule.channel == "" or rule.channel == channel)
        ):
            rank = rule._rank
            if best is None or rank > best_rank:
                best, best_rank = rule, rank
    return best


def _multiplied(product: _Ratio, factor: _Ratio) -> _Ratio:
    numerator, denominator = product[0] * factor[0], product[1] * factor[1]
    if denominator.bit_length() > _REDUCE_ABOVE_BITS:
        common = gcd(numerator, denominator)
        numerator, denominator = numerator // common, denominator // common
    return numerator, denominator


def _excluded(facts: Facts, move: Move) -> bool:
    """A pending move that can never run with this proposal: both set the target's value,
    so whichever executes first supersedes the other (see the module's notes)."""
    return move.pending and move.sets_value and facts.sets_values


def _bounds(facts: Facts, window: timedelta) -> dict[str, tuple[_Ratio, _Ratio]]:
    """Each target's compounded factor over the window, this proposal's included, at its
    highest and at its lowest: the executed moves with every pending raise, and with every
    pending cut (but those that cannot run with it, ``_excluded``). Exact ratios of integers
    (not reduced: a product of a few factors is cheaper unreduced)."""
    since = facts.now - window if facts.now else None
    products = {target: _ratio(factor) for target, factor in facts.effects.items()}
    raises: dict[str, _Ratio] = {}
    cuts: dict[str, _Ratio] = {}
    for move in facts.recent_moves:
        target = move.target
        if target in products and (since is None or move.at >= since):
            if _excluded(facts, move):
                continue
            factor = _ratio(move.factor)
            if not move.pending:
                products[target] = _multiplied(products[target], factor)
            elif factor[0] > factor[1]:
                raises[target] = _multiplied(raises.get(target, (1, 1)), factor)
            elif factor[0] < factor[1]:
                cuts[target] = _multiplied(cuts.get(target, (1, 1)), factor)
    bounds = {}
    for target, product in products.items():
        up, down = raises.get(target), cuts.get(target)
        bounds[target] = (
            _multiplied(product, up) if up else product,
            _multiplied(product, down) if down else product,
        )
    return bounds


def _pushes(facts: Facts, target: str) -> int:
    """Which way this proposal moves a target: 1 up, -1 down, 0 not at all."""
    numerator, denominator = _ratio(facts.effects[target])
    return (numerator > denominator) - (numerator < denominator)


def _past_ceiling(
    facts: Facts, window: timedelta, ceiling: _Ratio, *, pushed: bool
) -> Iterator[tuple[str, int, _Ratio]]:
    """The targets this move pushes whose compounded factor over the window (``_bounds``) is
    past the ceiling, each with the way it pushes (``_pushes``) and that factor. ``pushed``:
    on the side the move pushes it, which holds the move (a raise whose highest bound is over
    the ceiling above, highest - 1 > ceiling; a cut whose lowest is over the ceiling below,
    1 - lowest > ceiling). Else on the other side: a cut where earlier raises are over the
    ceiling above, or a raise where earlier cuts are below the one below, brings the figure
    back towards where it was and is not held for it (``_cumulative_eased``)."""
    for target, (highest, lowest) in _bounds(facts, window).items():
        way = _pushes(facts, target)
        if not way:
            continue
        above = (way > 0) == pushed
        moved = highest if above else lowest
        past = abs(moved[0] - moved[1]) * ceiling[1] > ceiling[0] * moved[1]
        if (moved[0] > moved[1]) == above and past:
            yield target, way, moved


def _cumulative_eased(facts: Facts, rule: Rule, figures: _Figures) -> list[str]:
    """For a move the cumulative ceiling lets through though its target is over it (earlier
    moves the other way took it there; see ``_past_ceiling``), what an operator and an
    auditor read of it: the figure over the window before and with it, and that the ceiling
    holds only a move that takes it further."""
    cumulative = figures.cumulative_max_magnitude
    if cumulative is None:
        return []
    notes = []
    for target, way, moved in _past_ceiling(
        facts, rule.cumulative_window, cumulative, pushed=False
    ):
        own = _ratio(facts.effects[target])
        before = (moved[0] * own[1], moved[1] * own[0])  # the bound without this move
        window = _said(rule, window_text, "cumulative_window")
        limit = _said(rule, format_magnitude, "cumulative_max_magnitude", "ratio")
        counting = _counting_text(facts, rule.cumulative_window, target, raised=way < 0)
        notes.append(
            f"Without this move, {target} would move "
            f"{_move_text((before[0] - before[1], before[1]), cumulative)} within {window}, "
            f"{counting}: over the {limit} cumulative ceiling of policy “{rule.name}”. This "
            f"move of {_own_move_text(*own)} brings it back to "
            f"{_move_text((moved[0] - moved[1], moved[1]), cumulative)}, so that ceiling does "
            "not hold it: it holds only a move that takes the figure further."
        )
    return notes


def _counting_text(facts: Facts, window: timedelta, target: str, *, raised: bool) -> str:
    """What a cumulative figure counts besides this move, in words: the executed moves, if
    any, and the pending moves (approved, not yet executed) that push the way it is over,
    named where their proposals are known; the pending ones the other way do not offset them
    (see the module's notes)."""
    since = facts.now - window if facts.now else None
    side, other = ("raises", "cuts") if raised else ("cuts", "raises")
    pushing, offsetting, executed, excluded = [], False, (1, 1), []
    for move in facts.recent_moves:
        if move.target != target or (since and move.at < since):
            continue
        if _excluded(facts, move):
            # Named only where it would have counted: pushing the way this one is over.
            numerator, denominator = _ratio(move.factor)
            if numerator != denominator and (numerator > denominator) == raised:
                excluded.append(move)
            continue
        if not move.pending:
            executed = _multiplied(executed, _ratio(move.factor))
            continue
        numerator, denominator = _ratio(move.factor)
        if numerator == denominator:
            continue
        if (numerator > denominator) == raised:
            pushing.append(move)
        else:
            offsetting = True
    # The executed moves where they move it (a replay keeps them as one running product,
    # which moves it just as they do together).
    counted = ["the executed moves"] if executed[0] != executed[1] else []
    if pushing:
        # Their ids where known, and what they come to together: a replay, which counts
        # them as one running product, says the same figure.
        together = (1, 1)
        for move in pushing:
            together = _multiplied(together, _ratio(move.factor))
        named = _moves_named(facts, pushing)
        figure = _move_text((together[0] - together[1], together[1]), (0, 1))
        listed = f"{named}, {figure} in all" if named else f"{figure} in all"
        counted.append(f"the pending {side} (approved, not yet executed: {listed})")
    if counted:
        said = "counting " + " and ".join(counted)
    else:
        said = "counting no other move" if excluded else "with no other move changing it"
    if offsetting:
        said += f"; pending {other} do not offset {'them' if counted else 'it'}"
    if excluded:
        named = _moves_named(facts, excluded)
        several = len(excluded) > 1
        what = named or ("moves" if several else "a move")
        said += (
            f"; not counting {what}{',' if named else ''} approved, not yet executed, which "
            f"{'set' if several else 'sets'} {target} too: only one of them can run"
        )
    return said


def _moves_named(facts: Facts, moves: Sequence[Move]) -> str:
    """The proposals of these moves, in words, where known ("#3, #5 and another agent's
    proposal"); another agent's proposals are counted, not named: an agent sees only its
    own. Empty where none is known (a replay counts moves without them)."""
    known = {move.proposal: move.agent for move in moves if move.proposal is not None}
    ids = sorted(pk for pk, agent in known.items() if agent in (None, facts.agent_id))
    others = len(known) - len(ids)
    parts = [f"#{pk}" for pk in ids]
    if others:
        parts.append(
            "another agent's proposal" if others == 1 else f"{others} proposals of other agents"
        )
    return " and ".join(", ".join(parts).rsplit(", ", 1))


def cumulative_figure_text(moved: Number, ceiling: Number, window: timedelta) -> str:
    """A cumulative move beside its ceiling, as a page shows it: "+29.5% in 1 day / 25.0%
    cumulative"."""
    moved_ratio, ceiling_ratio = _ratio(moved), _ratio(ceiling)
    return (
        f"{_move_text(moved_ratio, ceiling_ratio)} in {window_text(window)} / "
        f"{_limit_beside(moved_ratio, ceiling_ratio)} cumulative"
    )


def cumulative_figure(held_by: Iterable[dict]) -> str | None:
    """The cumulative move and its ceiling that held a proposal, from the holds its verdict
    recorded (``Hold.as_record``), or None if no cumulative ceiling did."""
    for hold in held_by:
        if hold.get("rule") == "cumulative_ceiling" and hold.get("moved"):
            return cumulative_figure_text(
                factor_from_text(hold["moved"]),
                Decimal(hold["ceiling"]),
                timedelta(seconds=hold["window_seconds"]),
            )
    return None


# Only for proposals evaluated before verdicts recorded their holds (``held_by`` is null):
# their cumulative ceiling's reason, as ``_reviews`` words it (and as it was worded before
# it said what it counts), read back for the figure and the ceiling.
_LEGACY_CUMULATIVE_REASON = re.compile(
    r"would move (?P<move>[+-]\d[\d.]*%) within (?P<window>[^,]+),"
    r"(?: counting what is approved or executed,)? over the (?P<limit>\d[\d.]*%) cumulative"
)


def legacy_cumulative_figure_from_reasons(reasons: Iterable[str]) -> str | None:
    """The cumulative figure a verdict recorded before ``held_by`` was stored says in its
    reasons' words, or None: never used for a verdict that recorded its holds."""
    for reason in reasons:
        found = _LEGACY_CUMULATIVE_REASON.search(str(reason))
        if found:
            return f"{found['move']} in {found['window']} / {found['limit']} cumulative"
    return None


def compounded_moves(facts: Facts, window: timedelta) -> dict[str, Fraction]:
    """Each target's compounded relative move over the window, this proposal included,
    exactly: the furthest it may go, up or down, whichever pending moves run (with none
    pending, where the moves take it)."""
    moved = {}
    for target, (highest, lowest) in _bounds(facts, window).items():
        up = Fraction(highest[0] - highest[1], highest[1])
        down = Fraction(lowest[0] - lowest[1], lowest[1])
        moved[target] = up if abs(up) >= abs(down) else down
    return moved


def _risk(facts: Facts, magnitude: _Ratio, amount: _Ratio | None, figures: _Figures | None) -> int:
    numerator, denominator = magnitude
    ceiling = figures.pressure_magnitude if figures else None
    if ceiling is None:
        ceiling = _REFERENCE_CEILING_RATIO[facts.magnitude_unit]
    # pressure = magnitude / ceiling, as numerator / denominator with denominator > 0
    numerator, denominator = numerator * ceiling[1], denominator * ceiling[0]
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    if amount is not None:
        ceiling = figures.pressure_amount if figures else _REFERENCE_AMOUNT_RATIO
        by_amount, over = amount[0] * ceiling[1], amount[1] * ceiling[0]
        if over < 0:
            by_amount, over = -by_amount, -over
        if by_amount * denominator > numerator * over:
            numerator, denominator = by_amount, over
    if numerator > _MAX_PRESSURE * denominator:
        pressure_risk = 15 * _MAX_PRESSURE
    else:
        pressure_risk = _round_half_even(15 * numerator, denominator)
    record = (
        round(15 * (1 - facts.agent_approval_rate))
        if facts.agent_approval_rate is not None
        else _UNKNOWN_RECORD_RISK
    )
    clean = min(_CLEAN_RISK_MAX, facts.risk_weight + pressure_risk + record)
    if facts.guardrail_blocks or facts.guardrail_reviews:
        return guarded_risk(clean)
    return clean


def guarded_risk(risk: int) -> int:
    """A risk as it is once a guardrail speaks about the action (91-100, above every clean
    one, keeping its order among them): a risk in that band already, as it is."""
    return (
        risk if risk >= _GUARDED_RISK_MIN else _GUARDED_RISK_MIN + min(_CLEAN_RISK_MAX, risk) // 10
    )


def risk_score(facts: Facts, rule: Rule | None) -> int:
    amount = _ratio(facts.amount) if facts.amount is not None else None
    return _risk(facts, _ratio(facts.magnitude), amount, rule._figures if rule else None)


def _said(rule: Rule, how: Callable[..., str], figure: str, *context: str) -> str:
    """One of the rule's figures in words, ``how(rule.<figure>, *context)``, made once per
    rule: a rule's figures cannot change, and the batch path evaluates every item under the
    same rules."""
    key = (how, figure, *context)
    texts = rule._texts
    text = texts.get(key)
    if text is None:
        text = texts[key] = how(getattr(rule, figure), *context)
    return text


def _sizes_over(facts: Facts, limit: _Ratio, limit_text: str) -> tuple[str, str, str]:
    """A magnitude over a ceiling, as its reason says it, the ceiling beside it, and the
    magnitude as its hold says it: its label, with its figure to as many decimals as tell it
    from the ceiling where the label's reads as the ceiling's ("A 10.0% change to … (10.003%)
    exceeds the 10.0% auto-execute ceiling", not "A 10.0% change … exceeds the 10.0% …")."""
    unit, size = facts.magnitude_unit, facts.magnitude_label
    magnitude = _ratio(facts.magnitude)
    if unit != "ratio" or _at_cap(*magnitude):
        return size, limit_text, format_magnitude(facts.magnitude, unit)
    shown = _move_text(magnitude, limit, signed=False)
    if rounded_percent(facts.magnitude) == limit_text:
        return f"{size} ({shown})", _limit_beside(magnitude, limit), shown
    return size, limit_text, shown


def _over(value: _Ratio | None, limit: _Ratio | None) -> bool:
    """value > limit, exactly, by cross-multiplying (denominators are positive)."""
    return value is not None and limit is not None and value[0] * limit[1] > limit[0] * value[1]


def evaluate(facts: Facts, rules: Iterable[Rule]) -> Verdict:
    rule = matching_rule(facts, rules)
    figures = rule._figures if rule else None
    magnitude = _ratio(facts.magnitude)
    amount = _ratio(facts.amount) if facts.amount is not None else None
    risk = _risk(facts, magnitude, amount, figures)
    unit = facts.magnitude_unit
    size = facts.magnitude_label
    policy_id = rule.policy_id if rule else None

    # (reason, hold): what an operator reads, and the rule it names for a page to point at.
    # Texts are made only for the verdict's own reasons: a block's, or else a review's.
    blocks = [(finding, Hold("guardrail", f"guardrail: {finding}")) for finding in
              facts.guardrail_blocks]  # fmt: skip
    if rule is not None:
        named = f"policy “{rule.name}”"
        if _over(magnitude, figures.block_above_magnitude):
            limit = _said(rule, format_magnitude, "block_above_magnitude", unit)
            ceiling = _said(rule, ceiling_text, "block_above_magnitude", unit)
            over, limit, shown_size = _sizes_over(facts, figures.block_above_magnitude, limit)
            blocks.append(
                (
                    f"{over} is above the {limit} hard ceiling of {named}.",
                    Hold(
                        "hard_ceiling", f"hard ceiling {ceiling} (this is {shown_size})", policy_id
                    ),
                )
            )
        if _over(amount, figures.block_above_amount):
            limit = _said(rule, format_money, "block_above_amount", facts.currency)
            money = format_money(facts.amount, facts.currency)
            blocks.append(
                (
                    f"{money} a day is above the {limit} hard ceiling of {named}.",
                    Hold(
                        "hard_amount_ceiling",
                        f"hard ceiling {limit} a day (this moves {money} a day)",
                        policy_id,
                    ),
                )
            )

    required = 1
    two_person_rule = False
    if rule is not None:
        required = rule.required_approvals
        if _over(magnitude, figures.more_approvals_above_magnitude) or _over(
            amount, figures.more_approvals_above_amount
        ):
            required = max(required, rule.approvals_above_threshold)
            two_person_rule = True

    if blocks:
        outcome: Outcome = "block"
        found = blocks
    else:
        found = _reviews(facts, rule, figures, magnitude, amount, required, two_person_rule)
        if found:
            outcome = "review"
        else:
            limit = _said(rule, format_magnitude, "auto_execute_max_magnitude", unit)
            outcome = "auto_approve"
            found = [
                (
                    f"{size} is within the {limit} auto-execute ceiling of policy “{rule.name}”.",
                    None,
                ),
                *((note, None) for note in _cumulative_eased(facts, rule, figures)),
            ]
    return Verdict(
        outcome=outcome,
        reasons=tuple([reason for reason, _ in found]),
        risk=risk,
        policy_id=policy_id,
        policy_name=rule.name if rule else "",
        policy_version=rule.version if rule else None,
        required_approvals=required,
        review_window=rule.review_window if rule else None,
        held_by=tuple([replace(hold, reason=reason) for reason, hold in found if hold is not None]),
    )


def _reviews(
    facts: Facts,
    rule: Rule | None,
    figures: _Figures | None,
    magnitude: _Ratio,
    amount: _Ratio | None,
    required: int,
    two_person_rule: bool,
) -> list[tuple[str, Hold]]:
    """What sends a proposal that nothing blocks to a person, each with its hold."""
    reviews = [(finding, Hold("guardrail", f"guardrail: {finding}")) for finding in
               facts.guardrail_reviews]  # fmt: skip
    reviews += [(reason, Hold("changed_first", reason)) for reason in facts.changed_first]
    if facts.always_human:
        reviews.append((facts.always_human, Hold("always_human", facts.always_human)))
    if rule is None:
        if not facts.always_human:  # else the type's own reason says who decides
            reviews.append(
                (
                    f"No policy covers {facts.action_label} here, so a human decides.",
                    Hold("no_policy", f"no policy matched ({facts.action_label} here)"),
                )
            )
        return reviews

    unit = facts.magnitude_unit
    policy_id = rule.policy_id
    named = f"policy “{rule.name}”"
    if rule.always_review:
        reviews.append(
            (
                f"Policy “{rule.name}” sends every {facts.action_label} to a human.",
                Hold("always_review", f"always review ({named})", policy_id),
            )
        )
    elif rule.auto_execute_max_magnitude is None:
        reviews.append(
            (
                f"Policy “{rule.name}” sets no auto-execute ceiling.",
                Hold("no_auto_execute_ceiling", f"no auto-execute ceiling ({named})", policy_id),
            )
        )
    elif _over(magnitude, figures.auto_execute_max_magnitude):
        limit = _said(rule, format_magnitude, "auto_execute_max_magnitude", unit)
        ceiling = _said(rule, ceiling_text, "auto_execute_max_magnitude", unit)
        over, limit, shown_size = _sizes_over(facts, figures.auto_execute_max_magnitude, limit)
        reviews.append(
            (
                f"{over} exceeds the {limit} auto-execute ceiling of {named}.",
                Hold(
                    "auto_execute_ceiling",
                    f"auto-execute ceiling {ceiling} (this is {shown_size})",
                    policy_id,
                ),
            )
        )
    if not rule.always_review and _over(amount, figures.auto_execute_max_amount):
        limit = _said(rule, format_money, "auto_execute_max_amount", facts.currency)
        money = format_money(facts.amount, facts.currency)
        reviews.append(
            (
                f"{money} a day exceeds the {limit} auto-execute ceiling of {named}.",
                Hold(
                    "amount_ceiling",
                    f"auto-execute amount ceiling {limit} a day (this moves {money} a day)",
                    policy_id,
                ),
            )
        )
    cumulative = figures.cumulative_max_magnitude
    if cumulative is not None:
        for target, _, (numerator, denominator) in _past_ceiling(
            facts, rule.cumulative_window, cumulative, pushed=True
        ):
            window = _said(rule, window_text, "cumulative_window")
            moved = (numerator - denominator, denominator)
            limit = _said(rule, format_magnitude, "cumulative_max_magnitude", "ratio")
            if _digits_apart(moved, cumulative) > 1:
                limit = _limit_beside(moved, cumulative)
            ceiling = _said(rule, percent_text, "cumulative_max_magnitude")
            shown = _move_text(moved, cumulative)
            counting = _counting_text(
                facts,
                rule.cumulative_window,
                target,
                raised=numerator > denominator,
            )
            # The figure is the target's over the window, not this move's, which may be
            # smaller or go the other way (a cut where earlier raises are over): said
            # where the two differ.
            own_numerator, own_denominator = _ratio(facts.effects[target])
            own = ""
            if own_numerator * denominator != numerator * own_denominator:
                own = f" of {_own_move_text(own_numerator, own_denominator)}"
            reviews.append(
                (
                    f"{f'With this move{own}, ' if own else ''}{target} would move {shown} "
                    f"within {window}, over the {limit} cumulative ceiling of {named}, "
                    f"{counting}.",
                    Hold(
                        "cumulative_ceiling",
                        f"cumulative ceiling {ceiling} per {window} (with this move{own}, "
                        f"{target} would move {shown} within {window}, {counting})",
                        policy_id,
                        target=target,
                        moved=moved,
                        ceiling=rule.cumulative_max_magnitude,
                        window=rule.cumulative_window,
                    ),
                )
            )
    if two_person_rule:
        # Needing people's approvals means it cannot run on none.
        reviews.append(
            (
                f"It is large enough for {named}'s two-person rule: "
                f"{required} distinct approvals are needed.",
                Hold(
                    "two_person_rule",
                    f"two-person rule ({required} distinct approvals, {named})",
                    policy_id,
                ),
            )
        )
    return reviews
