"""What-if: replay the recorded routings of a period through the policy engine.

A proposal's routing (its verdict: outcome, policy, policy version) is recorded on it and in
its history, with the facts it was decided on: magnitude, amount, effects, guardrail findings.
It can be routed more than once (re-assessed before it executes); it can be held back by a
kill switch, edited, or superseded, which change its status and figures but not how it was
routed. So the replay reads the history, not the proposals as they are now: each record that
set a routing is replayed with the facts of that same record, through the same
``engine.evaluate`` that decides live, at the time it was made:

- the policies are those in force then (each policy's history record of that time), with the
  recorded version of the deciding policy; with drafts, those with the drafts in place of the
  policies they replace (``policies.drafts.replaced_policy``); or a fixed set of rules, when
  one is given;
- the cumulative moves are those approved or executed then, each with the effects, the time
  it was approved to run (``approved_at``; its decision for records made before that was
  recorded) and whether it had executed then, the proposal's own left out (as live),
  compounded exactly, a move not yet executed only towards the bound it pushes (as live).

A waiting proposal re-assessed as it was made (its campaigns moved) keeps its routing (a
person is still asked), so it is no second routing; but the live engine ran on it again, and
its holds are what its page shows from then on: the replay runs its re-assessment too, with
that record's facts, and counts what held it back in place of its routing's
(``_count_reassessed``).

What happened to each routing is counted as it happened, as the dashboard counts proposals:
one the engine auto-approved counts as auto-executed if its proposal then executed as routed,
on its first run or on a person's retry of a failed one (a retry decides nothing: it runs
what policy approved); one superseded, sent back to a person, failed and not run since, or
not yet run by the period's end counts as auto-approved, not executed. With the draft, a
routing the draft too auto-approves would have met the same fate at the same moment; one it
auto-approves that went to a person or was blocked would have auto-executed (as the count of
those a person rejected or edited assumes).

With the draft, what the draft auto-approves counts for the routings after it, as live:

- its move counts towards their cumulative ceilings from the moment it was routed, pending
  (live, an approved move is pending until it runs, and when it would have run is not on
  record) until it executes as it happened, executed from then (it would have run by then
  with the draft too), in place of the proposal's recorded moves, and stays until it leaves
  the window;
- the fields it moves are changed first (``approvals.services.proposals.changed_first``): a
  value-setting proposal routed after it, made against the value it saw too, waits for a
  person with the same reason as live, until it executes as it happened too. With the draft
  that proposal would be superseded either way, so it is not counted as run;
- what it takes from a budget is taken first: a reallocation routed after it that would find
  too little left once it (and the moves approved live and not yet run then) had run waits
  for a person with the same reason as live ("Its execution would refuse it: …"), judged
  against the ledger as its history has it then (``LedgerTimeline``: each campaign's history
  read once), and counted on its own line of what held routings back (``what_held``). A
  move only the draft approved keeps drawing on the budget until its proposal executes as
  it happened (then the history has its change): a daily budget moved stays moved, and the
  move would have run as it was approved, before any later change, so unlike a move still
  under way live (``LedgerAhead``), a change the history has since does not supersede a cut
  it sets: what it cut is taken from the figure as the history has it
  (``LedgerAhead.of_moves``' ``run_first``).

A move a recorded policy approved and the draft would not still counts (its approval is on
record; with it, the draft lets through no more than it would). Every routing of the period
is replayed with the draft, those an agent or action type filter leaves out of the report
included, since what the draft approves among them counts for the others.

A routing of an action type the platform no longer has is not replayed (the engine reads its
facts through the type's code): it is counted apart, as one that cannot be replayed, and its
recorded moves count for the others as they happened.

With no draft, the replay reproduces every recorded routing. The history is streamed in the
order it was written (a server-side cursor); only the proposals still in flight and the moves
inside the longest cumulative window are kept, so memory does not grow with the proposals'
history. The ledger's history is kept for the campaigns a reallocation judged against a
draft-only move touches (``LedgerTimeline``): each one's records of the period, read once.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

from django.db.models import Q, Subquery
from django.utils import timezone

from approvals import action_types
from approvals.models import Decision, Proposal, ProposalStatus
from approvals.services.acts import EXECUTION_WOULD_REFUSE, Ledger, LedgerAhead, refused_once_run
from approvals.services.proposals import (
    FieldKey,
    campaign_fields_changed,
    changed_first_reviews,
    fields_moved,
)
from hitlproject.vocabulary import (
    AUTO_EXECUTED,
    AUTO_NOT_EXECUTED,
    COUNTED_STATUSES,
    ENGINE_COULD_NOT_EVALUATE,
    FINAL_STATUSES,
    SIMULATED_ROWS,
    UNDER_WAY_STATUSES,
    VerdictOutcome,
)
from ledger.models import Campaign
from policies import engine
from policies.drafts import replaced_policy
from policies.engine import HOLD_RULE_LABELS
from policies.models import CUMULATIVE_WINDOW_BOUNDS, Policy, windows_out_of_bounds
from policies.services import (
    PolicyMisconfigured,
    named_for_people,
    rule_from_policy,
    rules_in_force,
)

S = ProposalStatus

# Examples of each kind the report keeps (routings gone another way, holds, not replayed).
EXAMPLES_KEPT = 20
# Rows read per round trip: history records streamed, proposals looked up per statement.
CHUNK = 2000

# What held a routing back, as the what-if counts it: the engine's rule (``HoldRule``), except
# that of the holds an approved proposal makes (``changed_first``), those where its execution
# would refuse it once the moves approved before it have run (``refused_once_run``: a
# reallocation a budget would be left short for) are counted apart from those where it
# changes a value this one sets first; the engine names both ``changed_first``.
REFUSED_ONCE_RUN = "refused_once_run"
WHAT_HELD_LABELS: dict[str, str] = {
    **HOLD_RULE_LABELS,
    REFUSED_ONCE_RUN: "too little left once the moves approved before it have run"
    " (its execution would refuse it)",
}


def what_held(hold: engine.Hold) -> str:
    """The line of the what-if's "What held proposals back" that ``hold`` counts in."""
    if hold.rule == "changed_first" and hold.text.startswith(EXECUTION_WOULD_REFUSE):
        return REFUSED_ONCE_RUN
    return hold.rule


# How a move counts: executed, it compounds; approved but not yet executed, a raise counts
# only towards the ceiling above and a cut only towards the one below (``policies.engine``),
# and one that sets a value not for a proposal setting the same target (``Move.sets_value``).
_EXECUTED, _RAISE, _CUT = "executed", "raise", "cut"
_RAISE_SET, _CUT_SET = "raise setting a value", "cut setting a value"
_KINDS = (_EXECUTED, _RAISE, _CUT, _RAISE_SET, _CUT_SET)
_SETS_VALUE = frozenset({_RAISE_SET, _CUT_SET})
_ONE = Fraction(1)


@dataclass(eq=False)
class _Move:
    at: datetime
    factor: Fraction
    proposal_id: int
    key: tuple[int, str]
    kind: str
    inside: set = field(default_factory=set)  # the windows whose queue still holds it
    alive: bool = True

    def __lt__(self, other: _Move) -> bool:
        return self.at < other.at


class SlidingMoves:
    """The approved moves on each target inside each cumulative window, as the replay's clock
    advances: one running product per target, window and kind of move (executed, pending
    raises, pending cuts), so a routing costs the same however many moves the window holds. A
    move leaves when its proposal stops counting (sent back, superseded, its effects
    re-assessed), as it leaves the live query, and is counted again as executed once it is.

    ``moves_for`` hands the engine one aggregate move per band between consecutive windows
    and kind, dated at the band's far edge, so a rule counts exactly the bands inside its own
    window, and pending raises and cuts each towards their own bound.
    """

    def __init__(self, windows: Iterable[timedelta]) -> None:
        self.windows = sorted(set(windows))
        self.queues = {w: defaultdict(deque) for w in self.windows}
        # Exact, as the live engine compounds: dividing a move out leaves no rounding behind.
        self.product: dict[timedelta, dict[tuple, Fraction]] = {w: {} for w in self.windows}
        self.by_proposal: dict[int, list[_Move]] = defaultdict(list)

    def add(
        self,
        proposal_id: int,
        account_id: int,
        target: str,
        factor: Fraction,
        at: datetime,
        *,
        pending: bool = False,
        sets_value: bool = False,
    ) -> None:
        if not pending:
            kind = _EXECUTED
        elif factor > 1:
            kind = _RAISE_SET if sets_value else _RAISE
        elif factor < 1:
            kind = _CUT_SET if sets_value else _CUT
        else:
            return  # a pending move to the same value pushes towards neither bound
        move = _Move(at, factor, proposal_id, (account_id, target), kind, set(self.windows))
        for window in self.windows:
            queue = self.queues[window][move.key]
            if not queue or queue[-1].at <= at:
                queue.append(move)
            else:  # decided a moment before a move already recorded
                insort(queue, move)
            products = self.product[window]
            products[move.key, kind] = products.get((move.key, kind), _ONE) * factor
        self.by_proposal[proposal_id].append(move)

    def remove(self, proposal_id: int) -> None:
        """The proposal's moves no longer count (or no longer count as they did)."""
        for move in self.by_proposal.pop(proposal_id, ()):
            move.alive = False
            for window in move.inside:
                self.product[window][move.key, move.kind] /= move.factor
            move.inside.clear()

    def moves_for(
        self, account_id: int, target: str, now: datetime, exclude: int | None = None
    ) -> list[engine.Move]:
        key = (account_id, target)
        own = [m for m in self.by_proposal.get(exclude, ()) if m.key == key]
        moves = []
        inner = dict.fromkeys(_KINDS, _ONE)
        for window in self.windows:
            queue = self.queues[window][key]
            products = self.product[window]
            while queue and queue[0].at < now - window:
                move = queue.popleft()
                if move.alive:
                    products[key, move.kind] /= move.factor
                    move.inside.discard(window)
                    if not move.inside:
                        self._forget(move)
            for kind in _KINDS:
                outer = products.get((key, kind), _ONE)
                for move in own:
                    if move.kind == kind and window in move.inside:
                        outer /= move.factor
                if outer != inner[kind]:
                    moves.append(
                        engine.Move(
                            target=target,
                            factor=outer / inner[kind],
                            at=now - window,
                            pending=kind != _EXECUTED,
                            sets_value=kind in _SETS_VALUE,
                        )
                    )
                inner[kind] = outer
        return moves

    def _forget(self, move: _Move) -> None:
        kept = [m for m in self.by_proposal.get(move.proposal_id, ()) if m is not move]
        if kept:
            self.by_proposal[move.proposal_id] = kept
        else:
            self.by_proposal.pop(move.proposal_id, None)


@dataclass(frozen=True)
class DraftSet:
    """Drafts put in place of the policies they would replace."""

    rules: tuple[engine.Rule, ...]
    replaces: frozenset[int]  # the live policies they take the place of
    names: tuple[str, ...]


def drafts_in_place(draft_ids: Iterable[int] | None = None) -> DraftSet:
    """The active drafts (those of ``draft_ids``, or all), each in place of the live policy
    it replaces."""
    drafts = Policy.objects.filter(is_draft=True, is_active=True).order_by("pk")
    if draft_ids is not None:
        drafts = drafts.filter(pk__in=list(draft_ids))
    drafts = list(drafts)
    replaced = [replaced_policy(draft) for draft in drafts]
    return DraftSet(
        rules=tuple(rule_from_policy(draft) for draft in drafts),
        replaces=frozenset(policy.pk for policy in replaced if policy is not None),
        names=tuple(str(draft) for draft in drafts),
    )


def draft_rule_set(draft_ids: Iterable[int] | None = None) -> tuple[list[engine.Rule], list[str]]:
    """The rules in force now with the drafts in place. No ids: every active draft."""
    drafts = drafts_in_place(draft_ids)
    rules = [rule for rule in rules_in_force() if rule.policy_id not in drafts.replaces]
    return rules + list(drafts.rules), list(drafts.names)


class PolicyTimeline:
    """The policies in force as the replay's clock advances, from their history: at each
    moment, of each policy's records dated by then, the one written last (``history_id``; a
    record's date is the clock of the host that wrote it, and two hosts' can disagree)."""

    def __init__(self, until: datetime) -> None:
        self.records = list(
            Policy.history.filter(history_date__lt=until).order_by("history_date", "history_id")
        )
        self.by_version = {record.history_id: record for record in self.records}
        self.current: dict[int, Any] = {}
        self.position = 0
        self._rules: list[engine.Rule] | None = None

    def windows(self) -> set[timedelta]:
        low, high = CUMULATIVE_WINDOW_BOUNDS
        return {
            record.cumulative_window
            for record in self.records
            if record.cumulative_max_magnitude is not None
            and low <= record.cumulative_window <= high
        }

    def advance(self, now: datetime) -> None:
        while self.position < len(self.records) and self.records[self.position].history_date <= now:
            record = self.records[self.position]
            in_force = self.current.get(record.id)
            if in_force is None or in_force.history_id < record.history_id:
                self.current[record.id] = record
            self.position += 1
            self._rules = None

    def rules(self) -> list[engine.Rule]:
        if self._rules is None:
            self._rules = [
                rule_from_policy(record, version=record.history_id)
                for record in self.current.values()
                if record.history_type != "-" and record.is_active and not record.is_draft
            ]
        return self._rules

    def deciding(self, policy_id: int | None, version: int | None) -> list[engine.Rule]:
        """The rules in force, with the deciding policy as the version recorded (it was
        read in the same moment the routing was made)."""
        rules = self.rules()
        recorded = self.by_version.get(version) if version is not None else None
        if recorded is None or recorded.id != policy_id:
            return rules
        if any(rule.policy_id == policy_id and rule.version == version for rule in rules):
            return rules
        others = [rule for rule in rules if rule.policy_id != policy_id]
        return [*others, rule_from_policy(recorded, version=recorded.history_id)]


@dataclass
class SimulationReport:
    since: datetime
    until: datetime
    drafts: list[str]
    proposals: int = 0
    routings: int = 0  # a proposal re-routed before it executed was routed more than once
    # What became of each routing, and what would have with the draft, by ``SIMULATED_ROWS``.
    happened: Counter = field(default_factory=Counter)
    with_draft: Counter = field(default_factory=Counter)
    changes: Counter = field(default_factory=Counter)  # (routed, routed with draft) -> count
    # What held routings back, with the draft (``what_held``) -> how many it held.
    held_by: Counter = field(default_factory=Counter)
    held: int = 0  # routings a rule held back, with the draft (``held_examples``: the first)
    other_policy: int = 0  # with no draft: routings decided by another policy or version
    auto_though_rejected: int = 0
    auto_though_edited: int = 0
    examples: list[dict] = field(default_factory=list)  # routings that went another way
    held_examples: list[dict] = field(default_factory=list)  # and some the rules held back
    # Routings of an action type the platform no longer has: the engine cannot read them, so
    # they are not replayed, and counted in neither column (``not_replayed_examples``: the
    # first, each saying why).
    not_replayed: int = 0
    not_replayed_examples: list[dict] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(n for (before, after), n in self.changes.items() if before != after)

    @property
    def last_day(self) -> date:
        """The last day the period holds, where it is read: ``until`` is the moment after it
        (the midnight that ends it, as the console's period form gives it)."""
        return timezone.localtime(self.until - timedelta(microseconds=1)).date()

    def as_json(self) -> dict:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "drafts": self.drafts,
            "proposals": self.proposals,
            "routings": self.routings,
            "happened": {row: self.happened[row] for row in SIMULATED_ROWS},
            "with_draft": {row: self.with_draft[row] for row in SIMULATED_ROWS},
            "changed": self.changed,
            "changes": [
                {"routed": before, "routed_with_draft": after, "routings": n}
                for (before, after), n in sorted(self.changes.items())
                if before != after
            ],
            "held_by": dict(self.held_by.most_common()),
            "held": self.held,
            "decided_by_another_policy": self.other_policy,
            "auto_executed_though_a_human_rejected_it": self.auto_though_rejected,
            "auto_executed_though_a_human_edited_it": self.auto_though_edited,
            "examples": self.examples,
            "held_examples": self.held_examples,
            "not_replayed": self.not_replayed,
            "not_replayed_examples": self.not_replayed_examples,
        }


@dataclass
class _InFlight:
    """What the replay keeps of a proposal until it reaches a final status."""

    routing: tuple
    move: tuple | None
    reported: bool = False
    # Its routing the engine auto-approved, until it is known whether that routing ran: the
    # outcome the replay gave it.
    awaiting_run: str | None = None
    # With the draft: its move as the draft approved it, where the draft auto-approved what
    # went to a person or was blocked (it stands for the proposal's moves from then on).
    draft_move: tuple | None = None
    # Its routing's payload and its last re-assessment, and what held its routing back as the
    # report counts it (``what_held``), where the routing is reported and the replay left it
    # waiting for a person: a re-assessment of it is replayed (``_count_reassessed``).
    payload: Any = None
    reassessed_at: datetime | None = None
    held: tuple[str, ...] | None = None


_COLUMNS = (
    "id",
    "history_date",
    "status",
    "action_type",
    "account_id",
    "account__channel",
    "account__currency",
    "agent_id",
    "agent__kind",
    "magnitude",
    "magnitude_label",
    "summary",
    "amount",
    "payload",
    "target_snapshot",
    "effects",
    "guardrail_findings",
    "verdict_held_by",
    "verdict_outcome",
    "verdict_policy_id",
    "verdict_policy_version",
    "decided_at",
    "approved_at",
    "reassessed_at",
    "reassessed_policy_version",
)


def _engine_failure(problems: list[str]) -> engine.Verdict:
    return engine.Verdict(
        outcome="review",
        reasons=(f"{ENGINE_COULD_NOT_EVALUATE}: {'; '.join(problems)}.",),
        risk=100,
    )


def simulate(
    *,
    since: datetime,
    until: datetime,
    rules: list[engine.Rule] | None = None,
    draft_set: DraftSet | None = None,
    drafts: Sequence[str] | None = None,
    only_account_id: int | None = None,
    only_agent_id: int | None = None,
    only_action_type: str | None = None,
) -> SimulationReport:
    """Replay the routings recorded from ``since`` to ``until``: under the policies that
    decided them, with ``draft_set`` in place if given, or under ``rules`` (a fixed set, named
    ``drafts``) if given. Given an account, only its proposals are read (cumulative moves are
    an account's own); given an agent or an action type, only theirs are reported, while
    every proposal read still counts towards the moves."""
    timeline = PolicyTimeline(until)
    fixed = list(rules) if rules is not None else None
    in_place = draft_set or DraftSet(rules=(), replaces=frozenset(), names=())
    # A policy in force now with a window the engine cannot work with is fixed first (its
    # fix is recorded), rather than replayed one way or another.
    given = fixed if fixed is not None else [*rules_in_force(), *in_place.rules]
    problems = [problem for rule in given for problem in windows_out_of_bounds(rule)]
    if problems:
        raise PolicyMisconfigured("The simulation cannot run: " + "; ".join(problems) + ".")
    deciding = fixed is None and not in_place.rules
    names = list(drafts) if drafts is not None else list(in_place.names)
    report = SimulationReport(since=since, until=until, drafts=names)

    windows = {r.cumulative_window for r in given if r.cumulative_max_magnitude is not None}
    if fixed is None:
        windows |= timeline.windows()
    moves = SlidingMoves(windows)
    # Moves approved before the period count against its first proposals, as they did live.
    warm_up = since - max(windows, default=timedelta(0))

    def rules_at(policy_id: int | None, version: int | None) -> list[engine.Rule]:
        if fixed is not None:
            return fixed
        if deciding:
            return timeline.deciding(policy_id, version)
        kept = [rule for rule in timeline.rules() if rule.policy_id not in in_place.replaces]
        return kept + list(in_place.rules)

    def rules_reassessed(version: int | None) -> list[engine.Rule]:
        """As a waiting proposal was re-assessed: under the policies in force then, the one
        whose verdict it took in the version recorded."""
        recorded = timeline.by_version.get(version) if version is not None else None
        return rules_at(recorded.id if recorded is not None else None, version)

    relevant = Proposal.objects.filter(created_at__lt=until, updated_at__gte=warm_up)
    if only_account_id is not None:
        relevant = relevant.filter(account_id=only_account_id)
    # Replayed in the order they were written: a proposal's records follow one another in
    # ``history_id``, while their dates are the clocks of the hosts that wrote them (the web
    # host's routing, the worker's execution), which can disagree by seconds.
    rows = (
        Proposal.history.filter(id__in=relevant.values("pk"), history_date__lt=until)
        .order_by("history_id")
        .values_list(*_COLUMNS)
        .iterator(chunk_size=CHUNK)
    )
    in_flight: dict[int, _InFlight] = {}
    auto_with_draft: set[int] = set()
    # With the draft: the campaign fields that a proposal only the draft auto-approves
    # changes first, each with that proposal and the value it saw (``_changed_first``), until
    # that proposal executes as it happened too.
    claimed: dict[FieldKey, tuple[int, str | None]] = {}
    # With the draft: the moves that draw on or set a figure a reallocation draws on, approved
    # and not yet run as the replay reaches each routing, each with when it was approved: those
    # approved live (``under_way``, as the history has them then), and those only the draft
    # approved, until they execute as it happened (``drawing``). A reallocation routed after
    # them is judged against what they leave, as live (``_refused_with_draft``).
    under_way: dict[int, tuple[datetime, Proposal]] = {}
    drawing: dict[int, tuple[datetime, Proposal]] = {}
    ledger = LedgerTimeline(since, until)
    for row in rows:
        record = dict(zip(_COLUMNS, row, strict=True))
        proposal_id, at, status = record["id"], record["history_date"], record["status"]
        timeline.advance(at)
        before = in_flight.get(proposal_id)
        routing = (
            record["verdict_outcome"],
            record["verdict_policy_id"],
            record["verdict_policy_version"],
        )
        reported = before.reported if before else False
        awaiting_run = before.awaiting_run if before else None
        draft_move = before.draft_move if before else None
        payload = before.payload if before else record["payload"]
        reassessed_at = before.reassessed_at if before else record["reassessed_at"]
        held = before.held if before else None
        if awaiting_run is not None and (
            status not in MAY_STILL_RUN_AS_ROUTED or before.routing != routing
        ):
            _count_run(report, awaiting_run, ran=status == S.EXECUTED)
            awaiting_run = None
        wanted = (only_agent_id is None or record["agent_id"] == only_agent_id) and (
            only_action_type is None or record["action_type"] == only_action_type
        )
        # With the draft, every routing is replayed, reported or not: what the draft approves
        # counts towards the moves and the fields changed first of those after it.
        replayed = (
            routing[0]
            and (before is None or before.routing != routing)
            and at >= since
            and (wanted or not deciding)
        )
        # A waiting proposal re-assessed as it was made (its target moved), its routing kept
        # (a person is asked still): live, the engine gave it its holds again, with its
        # figures now, as its page shows them; so does the replay, in place of its routing's.
        reassessed = (
            not replayed
            and held is not None
            and status == S.PENDING_REVIEW
            and record["reassessed_at"] is not None
            and record["reassessed_at"] != reassessed_at
            and record["payload"] == payload
            and at >= since
        )
        if replayed:
            payload, held = record["payload"], None
        reassessed_at = record["reassessed_at"]
        known = action_types.get(record["action_type"]) is not None
        changed_first = (
            []
            if deciding or not known or not (replayed or reassessed)
            else [
                *_changed_first(record, claimed),
                *_refused_with_draft(record, under_way, drawing, ledger),
            ]
        )
        if reassessed and known:
            verdict = _replayed(
                record, rules_reassessed(record["reassessed_policy_version"]), moves, changed_first
            )
            held = _count_reassessed(report, record, held, verdict)
        elif replayed and not known:
            if wanted:
                _count_not_replayed(report, record)
        elif replayed:
            verdict = _replayed(record, rules_at(*routing[1:]), moves, changed_first)
            if wanted:
                _count(report, record, verdict, deciding=deciding, first=not reported)
                reported = True
                if verdict.outcome != VerdictOutcome.AUTO_APPROVE:
                    held = tuple(dict.fromkeys(what_held(hold) for hold in verdict.held_by))
                if routing[0] == VerdictOutcome.AUTO_APPROVE:
                    awaiting_run = verdict.outcome
                if verdict.outcome == VerdictOutcome.AUTO_APPROVE:
                    auto_with_draft.add(proposal_id)
            if (
                not deciding
                and draft_move is None
                and verdict.outcome == VerdictOutcome.AUTO_APPROVE
                and routing[0] != VerdictOutcome.AUTO_APPROVE
            ):
                # Approved by the draft as it is routed, where live a person or a block
                # decided it: from now on its move counts as the draft approved it (pending,
                # as live until it runs: when it would have run is not on record), and the
                # fields it moves are changed first for the proposals after it.
                draft_move = (at, tuple(sorted((record["effects"] or {}).items())), False)
                _claim(record, claimed)
                if _draws_on_figures(record):
                    drawing[proposal_id] = (at, _as_proposal(record))
        if draft_move is not None and status == S.EXECUTED:
            # It ran as it happened too: from here the field has its change in both, and its
            # move, pending until now, counts as executed (approved since the draft routed it).
            for key in [key for key, (pk, _) in claimed.items() if pk == proposal_id]:
                del claimed[key]
            drawing.pop(proposal_id, None)
            draft_move = (draft_move[0], draft_move[1], True)
        # Then the record's own change to the moves that count from now on, as live
        # (``approvals.services.lifecycle.counted_state``), or as the draft approved it.
        approved_at = record["approved_at"] or record["decided_at"]
        executed = status == S.EXECUTED
        if not deciding:
            if (
                status in UNDER_WAY_STATUSES
                and approved_at
                and proposal_id not in drawing
                and _draws_on_figures(record)
            ):
                under_way[proposal_id] = (approved_at, _as_proposal(record))
            else:
                under_way.pop(proposal_id, None)
        move = draft_move or (
            (approved_at, tuple(sorted(record["effects"].items())), executed)
            if status in COUNTED_STATUSES and approved_at and record["effects"]
            else None
        )
        if (before.move if before else None) != move:
            moves.remove(proposal_id)
            for target, factor in move[1] if move else ():
                moves.add(
                    proposal_id,
                    record["account_id"],
                    target,
                    engine.factor_from_text(factor),
                    move[0],
                    pending=not move[2],
                    sets_value=_sets_values(record),
                )
        if status in FINAL_STATUSES:  # a move the draft approved stays, until out of window
            in_flight.pop(proposal_id, None)
        else:
            in_flight[proposal_id] = _InFlight(
                routing, move, reported, awaiting_run, draft_move, payload, reassessed_at, held
            )
    for still in in_flight.values():
        if still.awaiting_run is not None:  # not run by the period's end
            _count_run(report, still.awaiting_run, ran=False)
    _count_human_overrides(report, auto_with_draft)
    return report


# An auto-approved routing is still to run in these: under way, or failed, which a person may
# retry (the retry decides nothing: it runs as routed, and counts as auto-executed once it
# has, as the dashboard counts it).
MAY_STILL_RUN_AS_ROUTED = UNDER_WAY_STATUSES | {S.FAILED}


def _sets_values(record: dict) -> bool:
    """Whether the proposal sets values, as ``CountedMove.sets_value`` records it live."""
    return action_types.named(record["action_type"]).sets_values


def _fields_and_snapshot(record: dict) -> tuple[action_types.ActionType, set[FieldKey]]:
    action_type = action_types.named(record["action_type"])  # one since retired changes nothing
    fields = campaign_fields_changed(
        account_id=record["account_id"], action_type=action_type, payload=record["payload"]
    )
    return action_type, fields


def _seen(record: dict, key: FieldKey) -> str | None:
    """The value a proposal saw in a field as it was made (its target snapshot)."""
    return ((record["target_snapshot"] or {}).get(key[1]) or {}).get(key[2])


def _claim(record: dict, claimed: dict[FieldKey, tuple[int, str | None]]) -> None:
    """The fields a proposal the draft approved moves from the value it saw: changed first,
    by it, for a proposal made after it against that same value."""
    action_type, fields = _fields_and_snapshot(record)
    snapshot = record["target_snapshot"] or {}
    for key in fields_moved(action_type, record["payload"], snapshot, fields):
        claimed[key] = (record["id"], _seen(record, key))


def _changed_first(record: dict, claimed: dict[FieldKey, tuple[int, str | None]]) -> list[str]:
    """Why a value-setting proposal waits for a person with the draft, as live
    (``changed_first_reviews``): a proposal only the draft auto-approved, routed before it
    and made against the value it saw too, changes one of its fields first (and had not
    executed as it happened when this one was routed). With the draft, that one is approved
    and about to execute (this one would be superseded once it does), or has executed (this
    one, made against the value before, would be superseded): either way, this one does not
    run as it was made."""
    action_type, fields = _fields_and_snapshot(record)
    if not action_type.sets_values:
        return []
    changed = {
        key: claimed[key][0]
        for key in fields
        if key in claimed
        and claimed[key][0] != record["id"]
        and claimed[key][1] == _seen(record, key)
    }
    return changed_first_reviews(action_type, fields, changed)


def _draws_on_figures(record: dict) -> bool:
    """Whether the proposal takes from a campaign figure or sets one when it runs (a
    reallocation, a budget or bid change), as ``LedgerAhead`` counts moves under way."""
    action_type = action_types.get(record["action_type"])
    return action_type is not None and bool(
        action_type.ledger_may_refuse or action_type.sets_figures
    )


def _as_proposal(record: dict) -> Proposal:
    """The proposal as a history record has it, for what it draws on (``LedgerAhead``)."""
    return Proposal(
        pk=record["id"],
        account_id=record["account_id"],
        agent_id=record["agent_id"],
        action_type=record["action_type"],
        payload=record["payload"],
        target_snapshot=record["target_snapshot"],
    )


class LedgerTimeline:
    """The campaigns as the ledger's history has them at each moment of a period, each
    campaign's history read once (on first use), from its last record before the period: at
    each moment, of its records dated by then, the one written last (``history_id``), as
    ``PolicyTimeline`` reads the policies."""

    def __init__(self, since: datetime, until: datetime) -> None:
        self.since, self.until = since, until
        # (account id, external id) -> its records by date, and the one written last of each
        # record and those before it.
        self.read: dict[tuple[int, str], tuple[list[datetime], list[Any]]] = {}

    def ledger_at(self, account_id: int, external_ids: Iterable[str], at: datetime) -> Ledger:
        """The account's campaigns ``external_ids`` as the history has them at ``at`` (in
        the period)."""
        held = {}
        for external_id in external_ids:
            dates, last_written = self._history(account_id, external_id)
            at_most = bisect_right(dates, at)
            last = last_written[at_most - 1] if at_most else None
            if last is not None and last.history_type != "-":
                held[external_id] = last.instance
        return {account_id: held}

    def _history(self, account_id: int, external_id: str) -> tuple[list[datetime], list[Any]]:
        key = (account_id, external_id)
        if key not in self.read:
            records = Campaign.history.filter(account_id=account_id, external_id=external_id)
            before = records.filter(history_date__lt=self.since).order_by("-history_id")
            kept = sorted(
                records.filter(
                    Q(history_date__gte=self.since, history_date__lt=self.until)
                    | Q(history_id__in=Subquery(before.values("history_id")[:1]))
                ),
                key=lambda record: (record.history_date, record.history_id),
            )
            last_written = []
            for record in kept:
                if last_written and last_written[-1].history_id > record.history_id:
                    record = last_written[-1]
                last_written.append(record)
            self.read[key] = ([record.history_date for record in kept], last_written)
        return self.read[key]


def _refused_with_draft(
    record: dict,
    under_way: dict[int, tuple[datetime, Proposal]],
    drawing: dict[int, tuple[datetime, Proposal]],
    ledger: LedgerTimeline,
) -> list[str]:
    """Why a move the ledger may refuse (a reallocation) waits for a person with the draft,
    as live (``approvals.services.proposals._refused_once_run``): a move only the draft
    approved, routed before it and not yet executed as it happened, draws on the budget it
    draws on, and with it and the moves approved live and not yet run then, too little is
    left for it ("Its execution would refuse it: amount: Exceeds display-retarget's daily
    budget of 100.00 once #1, approved before it, has run. …"). Live, its routing recorded
    any such hold the moves approved live made; one held so already is held either way."""
    action_type = action_types.named(record["action_type"])
    if not drawing or not action_type.ledger_may_refuse:
        return []
    findings = record["guardrail_findings"] or {}
    if findings.get("changed_first") or any(
        hold.get("rule") == "changed_first" for hold in record["verdict_held_by"] or ()
    ):
        return []
    proposal = _as_proposal(record)
    figures = {
        (record["account_id"], campaign, name)
        for campaign, amounts in action_type.drawn_from(record["payload"]).items()
        for name in amounts
    }
    only_the_draft = LedgerAhead.of_moves({}, [move for _, move in drawing.values()])
    if not figures & only_the_draft.draws.keys():
        return []
    ahead = sorted(
        (entry for pk, entry in {**under_way, **drawing}.items() if pk != record["id"]),
        key=lambda entry: (entry[0], entry[1].pk),
    )
    ahead_of_it = LedgerAhead.of_moves(
        ledger.ledger_at(
            record["account_id"],
            action_type.campaign_fields(record["payload"]),
            record["history_date"],
        ),
        [move for _, move in ahead],
        run_first=drawing.keys(),
    )
    why = ahead_of_it.refusal(proposal)
    return [refused_once_run(why)] if why else []


def _replayed(
    record: dict,
    rules: list[engine.Rule],
    moves: SlidingMoves,
    changed_first: Sequence[str] = (),
) -> engine.Verdict:
    """The verdict the engine gives a recorded routing's facts under ``rules``, with
    ``changed_first``: a value a proposal only the draft approved changes first (as live,
    ``verdict_for``'s)."""
    factors = {
        target: engine.factor_from_text(factor)
        for target, factor in (record["effects"] or {}).items()
    }
    action_type = action_types.named(record["action_type"])
    rules = [rule for rule in rules if rule.action_type == record["action_type"]]
    scope = engine.Scope(
        action_type=record["action_type"],
        account_id=record["account_id"],
        channel=record["account__channel"],
        agent_id=record["agent_id"],
        agent_kind=record["agent__kind"],
    )
    rule = engine.matching_rule(scope, rules)
    problems = windows_out_of_bounds(rule) if rule is not None else []
    if problems:
        return _engine_failure(problems)
    now = record["history_date"]
    recent = [
        move
        for target in factors
        for move in moves.moves_for(record["account_id"], target, now, exclude=record["id"])
    ]
    exact_magnitude = action_type.exact_magnitude(record["payload"], factors)
    findings = record["guardrail_findings"] or {}
    named = named_for_people(findings)
    facts = engine.Facts(
        action_type=record["action_type"],
        action_label=action_type.label,
        magnitude=record["magnitude"] if exact_magnitude is None else exact_magnitude,
        magnitude_unit=action_type.magnitude_unit,
        magnitude_label=record["magnitude_label"],
        risk_weight=action_type.risk_weight,
        account_id=record["account_id"],
        channel=record["account__channel"],
        agent_id=record["agent_id"],
        agent_kind=record["agent__kind"],
        amount=record["amount"],
        currency=record["account__currency"],
        effects=factors,
        sets_values=action_type.sets_values,
        recent_moves=recent,
        now=now,
        guardrail_blocks=tuple(findings.get("block", ())),
        guardrail_reviews=tuple(findings.get("review", ())),
        # As the routing found it (the proposal approved ahead of it, as it then stood: with
        # its findings, or, recorded before they held it, where it held the proposal), as a
        # policy owner is told it (each proposal named by id: ``named_for_people``), and as
        # the replay finds it (one only the draft approved, ahead of it).
        changed_first=tuple(
            dict.fromkeys(
                [
                    *(
                        named.get(str(reason), str(reason))
                        for reason in (
                            findings["changed_first"]
                            if "changed_first" in findings
                            else (
                                hold["text"]
                                for hold in record["verdict_held_by"] or ()
                                if hold.get("rule") == "changed_first"
                            )
                        )
                    ),
                    *changed_first,
                ]
            )
        ),
        always_human=action_type.always_human,
    )
    return engine.evaluate(facts, rules)


def _count(
    report: SimulationReport, record: dict, verdict: engine.Verdict, *, deciding: bool, first: bool
) -> None:
    happened, outcome = record["verdict_outcome"], verdict.outcome  # as routed, and replayed
    report.proposals += first
    report.routings += 1
    if happened != VerdictOutcome.AUTO_APPROVE:  # else counted once it is known if it ran
        report.happened[happened] += 1
        report.with_draft[_row_with_draft(outcome, ran=True)] += 1
    report.changes[(happened, outcome)] += 1
    for held in dict.fromkeys(what_held(hold) for hold in verdict.held_by):
        report.held_by[held] += 1
    other_policy = deciding and (verdict.policy_id, verdict.policy_version) != (
        record["verdict_policy_id"],
        record["verdict_policy_version"],
    )
    report.other_policy += other_policy
    if (outcome != happened or other_policy) and len(report.examples) < EXAMPLES_KEPT:
        report.examples.append(
            {
                "proposal": record["id"],
                "summary": record["summary"],
                "routed_at": record["history_date"].isoformat(),
                "routed": happened,
                "with_draft": outcome,
                "held_by": [hold.text for hold in verdict.held_by],
            }
        )
    report.held += bool(verdict.held_by)
    if verdict.held_by and len(report.held_examples) < EXAMPLES_KEPT:
        report.held_examples.append(
            {
                "proposal": record["id"],
                "summary": record["summary"],
                "held_by": [hold.text for hold in verdict.held_by],
                "reassessed": False,
            }
        )


def _count_reassessed(
    report: SimulationReport, record: dict, counted: tuple[str, ...], verdict: engine.Verdict
) -> tuple[str, ...]:
    """A waiting proposal's re-assessment, replayed (``verdict``): what holds its routing back
    from now on, in place of what did (``counted``), and its example with its figures now
    (as its page shows them), not its routing's. Returns what it counts now."""
    now_held = tuple(dict.fromkeys(what_held(hold) for hold in verdict.held_by))
    for held in counted:
        report.held_by[held] -= 1
        if report.held_by[held] <= 0:
            del report.held_by[held]
    for held in now_held:
        report.held_by[held] += 1
    report.held += bool(now_held) - bool(counted)
    example = (
        next((e for e in reversed(report.held_examples) if e["proposal"] == record["id"]), None)
        if counted
        else None
    )
    if example is not None and not now_held:
        report.held_examples.remove(example)
    elif example is not None:
        example.update(
            summary=record["summary"],
            held_by=[hold.text for hold in verdict.held_by],
            reassessed=True,
        )
    elif now_held and len(report.held_examples) < EXAMPLES_KEPT:
        report.held_examples.append(
            {
                "proposal": record["id"],
                "summary": record["summary"],
                "held_by": [hold.text for hold in verdict.held_by],
                "reassessed": True,
            }
        )
    return now_held


def _count_not_replayed(report: SimulationReport, record: dict) -> None:
    """A routing of an action type the platform no longer has: its facts cannot be read
    through the type's code, so what the engine would give them is not known. Its recorded
    moves still count for the others, as they happened."""
    report.not_replayed += 1
    if len(report.not_replayed_examples) < EXAMPLES_KEPT:
        report.not_replayed_examples.append(
            {
                "proposal": record["id"],
                "summary": record["summary"],
                "why": action_types.no_such_type_any_more(record["action_type"]),
            }
        )


def _row_with_draft(outcome: str, *, ran: bool) -> str:
    """The row a routing counts in with the draft, given whether what happened ran."""
    if outcome != VerdictOutcome.AUTO_APPROVE:
        return outcome
    return AUTO_EXECUTED if ran else AUTO_NOT_EXECUTED


def _count_run(report: SimulationReport, outcome_with_draft: str, *, ran: bool) -> None:
    """A routing the engine auto-approved, once it is known whether it ran; the replay gave
    it ``outcome_with_draft``."""
    report.happened[AUTO_EXECUTED if ran else AUTO_NOT_EXECUTED] += 1
    report.with_draft[_row_with_draft(outcome_with_draft, ran=ran)] += 1


def _count_human_overrides(report: SimulationReport, auto_with_draft: set[int]) -> None:
    """How many proposals the replay would auto-execute that a person rejected or edited."""
    ids = sorted(auto_with_draft)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        report.auto_though_rejected += Proposal.objects.filter(
            pk__in=chunk, status=S.REJECTED
        ).count()
        report.auto_though_edited += (
            Decision.objects.filter(proposal_id__in=chunk, edited_payload__isnull=False)
            .values("proposal_id")
            .distinct()
            .count()
        )
