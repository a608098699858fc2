"""Reads of proposals, owning their joins."""

from datetime import datetime

from django.db.models import Prefetch, QuerySet
from django.http import Http404

from approvals import action_types
from approvals.models import Agent, Decision, Execution, Proposal
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
