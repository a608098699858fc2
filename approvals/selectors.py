"""Reads of proposals, owning their joins."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Prefetch,
    Q,
    QuerySet,
)
from django.http import Http404
from django.utils import timezone

from approvals import action_types
from approvals.models import Agent, Decision, Execution, Proposal, ProposalStatus
from approvals.services.proposals import campaigns_for


def proposals_with_details() -> QuerySet[Proposal]:
    return Proposal.objects.select_related("account", "verdict_policy").prefetch_related(
        Prefetch("decisions", queryset=Decision.objects.order_by("created_at")),
        Prefetch("executions", queryset=Execution.objects.order_by("attempt")),
        "outcomes",
    )


def proposal_list_for_agent(
    *,
    agent: Agent,
    status: str | None = None,
    action_type: str | None = None,
    since: datetime | None = None,
) -> QuerySet[Proposal]:
    queryset = proposals_with_details().filter(agent=agent)
    if status:
        queryset = queryset.filter(status=status)
    if action_type:
        queryset = queryset.filter(action_type=action_type)
    if since:
        queryset = queryset.filter(created_at__gte=since)
    return queryset


def proposal_get_for_agent(*, agent: Agent, proposal_id: int) -> Proposal:
    """An agent's own proposal; another agent's is as good as absent (404)."""
    proposal = proposals_with_details().filter(agent=agent, pk=proposal_id).first()
    if proposal is None:
        raise Http404("No such proposal.")
    return proposal


def current_vs_proposed(proposal: Proposal) -> list[dict[str, str]]:
    """Rows of campaign, field, its value when proposed, now, and after the action."""
    action_type = action_types.get(proposal.action_type)
    campaigns = campaigns_for(
        account=proposal.account, action_type=action_type, payload=proposal.payload
    )
    if len(campaigns) < len(action_type.campaign_fields(proposal.payload)):
        return []
    proposed = action_type.proposed_state(proposal.payload, campaigns)
    return [
        {
            "campaign": external_id,
            "field": field,
            "when_proposed": proposal.target_snapshot.get(external_id, {}).get(field, ""),
            "current": str(getattr(campaigns[external_id], field)),
            "proposed": str(value),
        }
        for external_id, values in proposed.items()
        for field, value in values.items()
    ]


@dataclass(frozen=True)
class DecisionCounts:
    """How people decided: the figures behind approval and edit rates."""

    decided: int = 0
    approved: int = 0
    edited: int = 0
    rejected: int = 0

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.decided if self.decided else None

    @property
    def edit_rate(self) -> float | None:
        return self.edited / self.approved if self.approved else None


DECISION_COUNTS = {
    "decided": Count("id"),
    "approved": Count("id", filter=Q(outcome="approve")),
    "edited": Count("id", filter=Q(outcome="approve", edited_payload__isnull=False)),
    "rejected": Count("id", filter=Q(outcome="reject")),
}


@dataclass(frozen=True)
class TrackRecord:
    proposals: int
    auto_executed: int
    decisions: DecisionCounts


TRACK_RECORD_SPAN = 1000


def agent_track_record(*, agent: Agent, action_type: str) -> TrackRecord:
    """How an agent's last 1,000 proposals of one type fared with people: enough to judge by,
    and as cheap for an agent with a million proposals as for one with ten."""
    latest = (
        Proposal.objects.filter(agent=agent, action_type=action_type)
        .order_by("-id")
        .values("id")[:TRACK_RECORD_SPAN]
    )
    counts = Proposal.objects.filter(pk__in=latest).aggregate(
        total=Count("id"), auto=Count("id", filter=Q(verdict_outcome="auto_approve"))
    )
    return TrackRecord(
        proposals=counts["total"],
        auto_executed=counts["auto"],
        decisions=DecisionCounts(
            **Decision.objects.filter(proposal__in=latest).aggregate(**DECISION_COUNTS)
        ),
    )


EARLIER_PROPOSALS_SPAN = 2000


def earlier_proposals_on_targets(*, proposal: Proposal, limit: int = 10) -> QuerySet[Proposal]:
    """The latest proposals that touched any of the same campaigns, among the account's 2,000
    before this one: a bounded look back, however long the account's history."""
    if not proposal.target_snapshot:
        return Proposal.objects.none()  # it touches no campaign (a change of policy)
    before = (
        Proposal.objects.filter(account_id=proposal.account_id, pk__lt=proposal.pk)
        .order_by("-pk")
        .values("pk")[:EARLIER_PROPOSALS_SPAN]
    )
    return (
        Proposal.objects.filter(
            pk__in=before, target_snapshot__has_any_keys=sorted(proposal.target_snapshot)
        )
        .select_related("agent")
        .order_by("-pk")[:limit]
    )


@dataclass(frozen=True)
class Dashboard:
    queue_depth: int
    oldest_waiting: timedelta | None
    decision_median: timedelta | None
    decision_p90: timedelta | None
    decisions: int
    evaluated: int
    auto_executed: int
    failed_executions: int
    agents: dict[str, DecisionCounts]

    @property
    def auto_execution_rate(self) -> float | None:
        return self.auto_executed / self.evaluated if self.evaluated else None


class Percentile(Aggregate):
    """PERCENTILE_CONT, PostgreSQL's ordered-set aggregate: the percentile without sending
    every row to Python."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=fraction, output_field=DurationField(), **extra)


def decision_time_percentiles(decided: QuerySet[Proposal]) -> dict[str, timedelta | None]:
    wait = ExpressionWrapper(F("decided_at") - F("evaluated_at"), output_field=DurationField())
    if connection.vendor == "postgresql":
        return decided.aggregate(
            count=Count("id"), median=Percentile(wait, 0.5), p90=Percentile(wait, 0.9)
        )
    # SQLite, the embedded default: its history is small enough to sort here.
    waits = sorted(decided.annotate(wait=wait).values_list("wait", flat=True))
    return {
        "count": len(waits),
        "median": _interpolated(waits, 0.5),
        "p90": _interpolated(waits, 0.9),
    }


def _interpolated(ordered: list[timedelta], fraction: float) -> timedelta | None:
    """The percentile as PERCENTILE_CONT computes it, so both databases say the same."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def dashboard(*, days: int = 7) -> Dashboard:
    """The console's figures: the queue now, and how the last ``days`` went."""
    now = timezone.now()
    since = now - timedelta(days=days)
    pending = Proposal.objects.filter(status=ProposalStatus.PENDING_REVIEW)
    oldest = pending.order_by("created_at").values_list("created_at", flat=True).first()
    waits = decision_time_percentiles(
        Proposal.objects.filter(
            decided_at__gte=since, verdict_outcome="review", evaluated_at__isnull=False
        ).exclude(status__in=[ProposalStatus.PENDING_REVIEW, ProposalStatus.WITHDRAWN])
    )
    evaluated = (
        Proposal.objects.filter(created_at__gte=since)
        .exclude(verdict_outcome="")
        .aggregate(total=Count("id"), auto=Count("id", filter=Q(verdict_outcome="auto_approve")))
    )
    per_agent = (
        Decision.objects.filter(created_at__gte=since)
        .values("proposal__agent__name")
        .annotate(**DECISION_COUNTS)
        .order_by("proposal__agent__name")
    )
    return Dashboard(
        queue_depth=pending.count(),
        oldest_waiting=now - oldest if oldest else None,
        decision_median=waits["median"],
        decision_p90=waits["p90"],
        decisions=waits["count"],
        evaluated=evaluated["total"],
        auto_executed=evaluated["auto"],
        failed_executions=Proposal.objects.filter(status=ProposalStatus.FAILED).count(),
        agents={row.pop("proposal__agent__name"): DecisionCounts(**row) for row in per_agent},
    )
