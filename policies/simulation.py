"""What-if: run a draft policy set over the recorded proposals of a period.

Each recorded proposal is replayed through the same ``engine.evaluate`` that decides live, with
the facts recorded when it was made: its magnitude (exact from its effects, as live), amount
and effects, the guardrail findings of the time, and the cumulative moves that had been
approved by then (rebuilt as the stream goes by, compounded exactly). Proposals are streamed
from a server-side cursor and only the moves inside the longest cumulative window are kept, so
memory does not grow with the history.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction

from django.db.models import Exists, OuterRef

from approvals import action_types
from approvals.models import Decision, Proposal, ProposalStatus
from policies import engine
from policies.models import Policy, windows_out_of_bounds
from policies.services import PolicyMisconfigured, rule_from_policy, rules_in_force

OUTCOMES = ("auto_approve", "review", "block")
APPROVED_STATES = {ProposalStatus.APPROVED, ProposalStatus.EXECUTING, ProposalStatus.EXECUTED}
EXAMPLES_KEPT = 20


class SlidingMoves:
    """The approved moves on each target inside each cumulative window, as the replay's clock
    advances: one running product per target and window, so a row costs the same however
    many moves the window holds.

    Moves are added when their proposal is replayed but only count from the time they were
    approved (a pending heap releases them then). ``moves_for`` hands the engine one
    aggregate move per band between consecutive windows, dated at the band's far edge, so a
    rule counts exactly the bands inside its own window.
    """

    def __init__(self, windows: Iterable[timedelta]) -> None:
        self.windows = sorted(set(windows))
        self.pending: list[tuple[datetime, int, tuple[int, str], Fraction]] = []
        self.inside = {w: defaultdict(deque) for w in self.windows}
        # Exact, as the live engine compounds: dividing a move out leaves no rounding behind.
        self.product = {w: defaultdict(lambda: Fraction(1)) for w in self.windows}
        self.added = 0

    def add(self, account_id: int, target: str, factor: Fraction, at: datetime) -> None:
        self.added += 1
        heapq.heappush(self.pending, (at, self.added, (account_id, target), factor))

    def moves_for(self, account_id: int, target: str, now: datetime) -> list[engine.Move]:
        key = (account_id, target)
        while self.pending and self.pending[0][0] <= now:
            at, _, released, factor = heapq.heappop(self.pending)
            for window in self.windows:
                self.inside[window][released].append((at, factor))
                self.product[window][released] *= factor
        moves, inner = [], Fraction(1)
        for window in self.windows:
            queue = self.inside[window][key]
            while queue and queue[0][0] < now - window:
                _, factor = queue.popleft()
                self.product[window][key] /= factor
            if not queue:
                self.product[window][key] = Fraction(1)
            outer = self.product[window][key]
            if outer != inner:
                moves.append(engine.Move(target=target, factor=outer / inner, at=now - window))
            inner = outer
        return moves


@dataclass
class SimulationReport:
    since: datetime
    until: datetime
    drafts: list[str]
    proposals: int = 0
    happened: Counter = field(default_factory=Counter)
    with_draft: Counter = field(default_factory=Counter)
    changes: Counter = field(default_factory=Counter)  # (happened, with draft) -> count
    auto_though_rejected: int = 0
    auto_though_edited: int = 0
    examples: list[dict] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(n for (before, after), n in self.changes.items() if before != after)

    def as_json(self) -> dict:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "drafts": self.drafts,
            "proposals": self.proposals,
            "happened": {o: self.happened[o] for o in OUTCOMES},
            "with_draft": {o: self.with_draft[o] for o in OUTCOMES},
            "changed": self.changed,
            "changes": [
                {"happened": before, "with_draft": after, "proposals": n}
                for (before, after), n in sorted(self.changes.items())
                if before != after
            ],
            "auto_executed_though_a_human_rejected_it": self.auto_though_rejected,
            "auto_executed_though_a_human_edited_it": self.auto_though_edited,
            "examples": self.examples,
        }


def draft_rule_set(draft_ids: Iterable[int] | None = None) -> tuple[list[engine.Rule], list[str]]:
    """The rules in force with the drafts in place: a draft replaces the live policy of the
    same action type, scope and priority, or adds to the set. No ids: every active draft."""
    drafts = Policy.objects.filter(is_draft=True, is_active=True)
    if draft_ids is not None:
        drafts = drafts.filter(pk__in=list(draft_ids))
    drafts = list(drafts)
    by_scope = {policy.scope_key: policy for policy in drafts}
    live = Policy.objects.filter(is_active=True, is_draft=False)
    kept = {p.pk for p in live if p.scope_key not in by_scope}
    rules = [rule for rule in rules_in_force() if rule.policy_id in kept]
    rules += [rule_from_policy(policy) for policy in drafts]
    return rules, [str(policy) for policy in drafts]


def simulate(
    *,
    rules: list[engine.Rule],
    since: datetime,
    until: datetime,
    drafts: list[str] | None = None,
    only_account_id: int | None = None,
    only_agent_id: int | None = None,
    only_action_type: str | None = None,
) -> SimulationReport:
    """Replay the proposals made from ``since`` to ``until`` through ``rules``. Given an
    account, only its proposals are read (cumulative moves are an account's own); given an
    agent or an action type, only theirs are reported, while every proposal read still
    counts towards the moves."""
    problems = [problem for rule in rules for problem in windows_out_of_bounds(rule)]
    if problems:
        raise PolicyMisconfigured("The simulation cannot run: " + "; ".join(problems) + ".")
    report = SimulationReport(since=since, until=until, drafts=drafts or [])
    rules_by_type: dict[str, list[engine.Rule]] = defaultdict(list)
    for rule in rules:
        rules_by_type[rule.action_type].append(rule)
    windows = [r.cumulative_window for r in rules if r.cumulative_max_magnitude is not None]
    moves = SlidingMoves(windows)
    # Moves approved just before the period count against the first proposals in it, as they
    # did live: the stream starts one (longest) window early and reports from ``since``.
    warm_up = since - max(windows, default=timedelta(0))

    stream = Proposal.objects.filter(created_at__gte=warm_up, created_at__lt=until)
    if only_account_id is not None:
        stream = stream.filter(account_id=only_account_id)
    rows = (
        stream.exclude(verdict_outcome="")
        .annotate(
            edited=Exists(
                Decision.objects.filter(proposal=OuterRef("pk"), edited_payload__isnull=False)
            )
        )
        .order_by("created_at", "id")
        .values_list(
            "id",
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
            "effects",
            "guardrail_findings",
            "verdict_outcome",
            "status",
            "created_at",
            "decided_at",
            "edited",
        )
        .iterator(chunk_size=5000)
    )
    for (
        proposal_id,
        action_type_name,
        account_id,
        channel,
        currency,
        agent_id,
        agent_kind,
        magnitude,
        magnitude_label,
        summary,
        amount,
        payload,
        effects,
        findings,
        happened,
        status,
        created_at,
        decided_at,
        edited,
    ) in rows:
        action_type = action_types.get(action_type_name)
        factors = {target: engine.factor_from_text(factor) for target, factor in effects.items()}
        reported = (only_agent_id is None or agent_id == only_agent_id) and (
            only_action_type is None or action_type_name == only_action_type
        )
        if created_at < since or not reported:  # it only counts towards the moves
            if status in APPROVED_STATES and decided_at is not None:
                for target, factor in factors.items():
                    moves.add(account_id, target, factor, decided_at)
            continue
        recent = [
            move for target in factors for move in moves.moves_for(account_id, target, created_at)
        ]
        exact_magnitude = action_type.exact_magnitude(payload, factors)
        facts = engine.Facts(
            action_type=action_type_name,
            action_label=action_type.label,
            magnitude=magnitude if exact_magnitude is None else exact_magnitude,
            magnitude_unit=action_type.magnitude_unit,
            magnitude_label=magnitude_label,
            risk_weight=action_type.risk_weight,
            account_id=account_id,
            channel=channel,
            agent_id=agent_id,
            agent_kind=agent_kind,
            amount=amount,
            currency=currency,
            effects=factors,
            recent_moves=recent,
            now=created_at,
            guardrail_blocks=tuple(findings.get("block", ())),
            guardrail_reviews=tuple(findings.get("review", ())),
            always_human=action_type.always_human,
        )
        outcome = engine.evaluate(facts, rules_by_type[action_type_name]).outcome

        report.proposals += 1
        report.happened[happened] += 1
        report.with_draft[outcome] += 1
        report.changes[(happened, outcome)] += 1
        if outcome == "auto_approve":
            report.auto_though_rejected += status == ProposalStatus.REJECTED
            report.auto_though_edited += edited
        if outcome != happened and len(report.examples) < EXAMPLES_KEPT:
            report.examples.append(
                {
                    "proposal": proposal_id,
                    "summary": summary,
                    "happened": happened,
                    "with_draft": outcome,
                }
            )
        if status in APPROVED_STATES and decided_at is not None:
            for target, factor in factors.items():
                moves.add(account_id, target, factor, decided_at)
    return report
