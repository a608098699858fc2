"""What the feedback loop reads: an agent's feed, and its scorecards."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from approvals.models import Agent, Decision, Proposal, ProposalStatus
from approvals.selectors import as_proposed, decision_time_percentiles
from feedback.models import Feedback, Outcome
from feedback.services import payload_diff, word_runs
from ledger.models import Account

S = ProposalStatus
APPROVED_STATUSES = [S.APPROVED, S.EXECUTING, S.EXECUTED, S.FAILED]


def feedback_list_for_agent(*, agent) -> QuerySet[Feedback]:
    """Feedback on an agent's own proposals."""
    return Feedback.objects.filter(agent=agent).select_related("proposal", "outcome")


@dataclass(frozen=True)
class FieldEdit:
    """A field a reviewer changed, as its agent was told (the feedback's diff), in runs for a
    person to read: ("kept" | "removed" | "added", text)."""

    path: str
    runs: list[tuple[str, str]]


@dataclass(frozen=True)
class ProposalEdit:
    decision: Decision
    fields: list[FieldEdit]


def _natural(path: str) -> list[str | int]:
    """``creatives[10]`` after ``creatives[2]``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _runs(change: dict[str, Any]) -> list[tuple[str, str]]:
    before, after = change.get("from"), change.get("to")
    if "words" in change:  # text: the words changed, among those kept
        return word_runs(before, after)
    return [
        (kind, _shown(value))
        for kind, value in (("removed", before), ("added", after))
        if value is not None
    ]


def proposal_edits(*, proposal: Proposal) -> list[ProposalEdit]:
    """What each decision that edited the proposal changed, oldest first: the diff, by the
    same rule as the agent's feedback, between the action before that decision (the agent's
    own, or an earlier reviewer's edit) and the action the decision approved."""
    before = as_proposed(proposal).payload
    edits = []
    for decision in proposal.decisions.filter(edited_payload__isnull=False).select_related(
        "reviewer"
    ):
        diff = payload_diff(before, decision.edited_payload)
        before = decision.edited_payload
        edits.append(
            ProposalEdit(
                decision=decision,
                fields=[
                    FieldEdit(path=path, runs=_runs(diff[path]))
                    for path in sorted(diff, key=_natural)
                ],
            )
        )
    return edits


@dataclass(frozen=True)
class Scorecard:
    """How one agent's proposals of one action type fared over a window: how many ran on
    their own, and how people judged the rest. Counted by proposal, as it stands now."""

    agent: str
    action_type: str
    proposals: int = 0
    auto_executed: int = 0
    decided: int = 0  # of those routed to people, approved or rejected
    approved: int = 0  # approved, as proposed or edited
    edited: int = 0  # approved with edits
    rejected: int = 0
    expired: int = 0
    decision_median: timedelta | None = None
    rejection_reasons: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)  # by effect; "" is figures only

    @property
    def auto_execution_rate(self) -> float | None:
        return self.auto_executed / self.proposals if self.proposals else None

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.decided if self.decided else None

    @property
    def clean_approval_rate(self) -> float | None:
        """Approved exactly as proposed, of all decided."""
        return (self.approved - self.edited) / self.decided if self.decided else None

    @property
    def edit_rate(self) -> float | None:
        return self.edited / self.approved if self.approved else None

    @property
    def rejection_rate(self) -> float | None:
        return self.rejected / self.decided if self.decided else None

    @property
    def outcomes_reported(self) -> int:
        return sum(self.outcomes.values())


def scorecards(
    *,
    since: datetime,
    until: datetime,
    agent: Agent | None = None,
    account: Account | None = None,
    action_type: str | None = None,
) -> list[Scorecard]:
    """A scorecard per agent and action type, over the proposals made in the window (for one
    agent, account or action type if given), ordered by agent and action type."""
    window = Proposal.objects.filter(created_at__gte=since, created_at__lt=until)
    if agent is not None:
        window = window.filter(agent=agent)
    if account is not None:
        window = window.filter(account=account)
    if action_type is not None:
        window = window.filter(action_type=action_type)
    reviewed = Q(verdict_outcome="review")
    approved = reviewed & Q(status__in=APPROVED_STATUSES)
    edited = Exists(
        Decision.objects.filter(
            proposal=OuterRef("pk"), outcome="approve", edited_payload__isnull=False
        )
    )
    counts = (
        window.values("agent__name", "action_type")
        .annotate(
            proposals=Count("id"),
            auto_executed=Count("id", filter=Q(verdict_outcome="auto_approve")),
            decided=Count("id", filter=approved | Q(status=S.REJECTED)),
            approved=Count("id", filter=approved),
            edited=Count("id", filter=approved & Q(edited)),
            rejected=Count("id", filter=Q(status=S.REJECTED)),
            expired=Count("id", filter=Q(status=S.EXPIRED)),
        )
        .order_by("agent__name", "action_type")
    )
    reasons: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for name, kind, code, count in (
        Decision.objects.filter(proposal__in=window.values("pk"), outcome="reject")
        .values_list("proposal__agent__name", "proposal__action_type", "reason_code")
        .annotate(count=Count("id"))
        .order_by()
    ):
        reasons[(name, kind)][code] = count
    outcomes: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for name, kind, effect, count in (
        Outcome.objects.filter(proposal__in=window.values("pk"))
        .values_list("proposal__agent__name", "proposal__action_type", "effect")
        .annotate(count=Count("id"))
        .order_by()
    ):
        outcomes[(name, kind)][effect] = count
    cards = []
    for row in counts:
        name, kind = row.pop("agent__name"), row.pop("action_type")
        decided = window.filter(
            approved | Q(status=S.REJECTED),
            agent__name=name,
            action_type=kind,
            evaluated_at__isnull=False,
            decided_at__isnull=False,
        )
        cards.append(
            Scorecard(
                agent=name,
                action_type=kind,
                decision_median=decision_time_percentiles(decided)["median"],
                rejection_reasons=reasons[(name, kind)],
                outcomes=outcomes[(name, kind)],
                **row,
            )
        )
    return cards


def scorecard_window(days: int) -> tuple[datetime, datetime]:
    """The last ``days`` days, to now."""
    now = timezone.now()
    return now - timedelta(days=days), now
