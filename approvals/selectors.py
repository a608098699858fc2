"""Reads of proposals, owning their joins."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from approvals import action_types
from approvals.models import Agent, Decision, Execution, Proposal, ProposalStatus
from approvals.services.proposals import campaigns_for


def proposals_with_details() -> QuerySet[Proposal]:
    return Proposal.objects.select_related("account", "verdict_policy").prefetch_related(
        Prefetch("decisions", queryset=Decision.objects.order_by("created_at")),
        Prefetch("executions", queryset=Execution.objects.order_by("attempt")),
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
class TrackRecord:
    proposals: int
    auto_executed: int
    decided: int
    approved: int
    approved_with_edits: int
    rejected: int

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.decided if self.decided else None

    @property
    def edit_rate(self) -> float | None:
        return self.approved_with_edits / self.approved if self.approved else None


def agent_track_record(*, agent: Agent, action_type: str, days: int = 90) -> TrackRecord:
    """How an agent's proposals of one type fared with people over the last ``days``."""
    since = timezone.now() - timedelta(days=days)
    proposals = Proposal.objects.filter(agent=agent, action_type=action_type, created_at__gte=since)
    decisions = Decision.objects.filter(proposal__in=proposals)
    counts = proposals.aggregate(
        total=Count("id"), auto=Count("id", filter=Q(verdict_outcome="auto_approve"))
    )
    decided = decisions.aggregate(
        total=Count("id"),
        approved=Count("id", filter=Q(outcome="approve")),
        edited=Count("id", filter=Q(outcome="approve", edited_payload__isnull=False)),
        rejected=Count("id", filter=Q(outcome="reject")),
    )
    return TrackRecord(
        proposals=counts["total"],
        auto_executed=counts["auto"],
        decided=decided["total"],
        approved=decided["approved"],
        approved_with_edits=decided["edited"],
        rejected=decided["rejected"],
    )


def earlier_proposals_on_targets(*, proposal: Proposal, limit: int = 10) -> QuerySet[Proposal]:
    """The latest proposals on the same account that touched any of the same campaigns."""
    campaigns = sorted(proposal.target_snapshot)
    return (
        Proposal.objects.filter(
            account_id=proposal.account_id,
            created_at__lt=proposal.created_at,
            target_snapshot__has_any_keys=campaigns,
        )
        .select_related("agent")
        .order_by("-created_at")[:limit]
    )


@dataclass(frozen=True)
class AgentFigures:
    agent: str
    decided: int
    approved: int
    edited: int
    rejected: int

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.decided if self.decided else None

    @property
    def edit_rate(self) -> float | None:
        return self.edited / self.approved if self.approved else None


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
    agents: list[AgentFigures]

    @property
    def auto_execution_rate(self) -> float | None:
        return self.auto_executed / self.evaluated if self.evaluated else None


def _percentile(durations: list[timedelta], fraction: float) -> timedelta | None:
    if not durations:
        return None
    ordered = sorted(durations)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def dashboard(*, days: int = 7) -> Dashboard:
    """The console's figures: the queue now, and how the last ``days`` went."""
    now = timezone.now()
    since = now - timedelta(days=days)
    pending = Proposal.objects.filter(status=ProposalStatus.PENDING_REVIEW)
    oldest = pending.order_by("created_at").values_list("created_at", flat=True).first()
    waits = [
        decided - evaluated
        for decided, evaluated in Proposal.objects.filter(
            decided_at__gte=since, verdict_outcome="review", evaluated_at__isnull=False
        )
        .exclude(status__in=[ProposalStatus.PENDING_REVIEW, ProposalStatus.WITHDRAWN])
        .values_list("decided_at", "evaluated_at")
        .iterator()
    ]
    evaluated = Proposal.objects.filter(evaluated_at__gte=since).aggregate(
        total=Count("id"), auto=Count("id", filter=Q(verdict_outcome="auto_approve"))
    )
    per_agent = (
        Decision.objects.filter(created_at__gte=since)
        .values("proposal__agent__name")
        .annotate(
            decided=Count("id"),
            approved=Count("id", filter=Q(outcome="approve")),
            edited=Count("id", filter=Q(outcome="approve", edited_payload__isnull=False)),
            rejected=Count("id", filter=Q(outcome="reject")),
        )
        .order_by("proposal__agent__name")
    )
    return Dashboard(
        queue_depth=pending.count(),
        oldest_waiting=now - oldest if oldest else None,
        decision_median=_percentile(waits, 0.5),
        decision_p90=_percentile(waits, 0.9),
        decisions=len(waits),
        evaluated=evaluated["total"],
        auto_executed=evaluated["auto"],
        failed_executions=Proposal.objects.filter(status=ProposalStatus.FAILED).count(),
        agents=[
            AgentFigures(
                agent=row["proposal__agent__name"],
                decided=row["decided"],
                approved=row["approved"],
                edited=row["edited"],
                rejected=row["rejected"],
            )
            for row in per_agent
        ],
    )
