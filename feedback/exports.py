"""An agent's record for prompt tuning or fine-tuning: JSON Lines, one line per proposal its
agent was given feedback on in the period: people decided on it or withdrew it for the agent, it
expired, was superseded or failed to execute, or its outcome was reported, by a person or by the
agent itself (``label``: what people decided, else ``expired`` where its review window
closed first, else null: ``DECIDED_KINDS``).

Each line holds what the agent proposed (its payload as first submitted, rationale,
confidence, supporting data), how policy first routed it, the people's decisions with their reasons
and notes, what was approved and the edits between the two (with the words changed in
text), what became of it, the outcomes reported, and the feedback the agent was given on it,
as its feed gave it (a reviewer's note on withdrawing it, the values a superseded proposal saw
and found: no decision says them). Proposals are read in chunks, so a long
period streams in constant memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice

from django.db.models import Prefetch

from approvals.models import Agent, Decision, Proposal
from approvals.selectors import (
    as_proposed_records,
    first_routings,
    policy_name_then,
    with_deciding_policy_name,
)
from feedback.models import Feedback, FeedbackKind, Outcome
from hitlproject.diffs import payload_diff
from hitlproject.vocabulary import APPROVED_TO_RUN_STATUSES
from policies.models import Policy

CHUNK = 500
# What people said in the end, most telling first: the label of a proposal's line.
DECIDED_KINDS = [
    FeedbackKind.REJECTED,
    FeedbackKind.APPROVED_WITH_EDITS,
    FeedbackKind.APPROVED,
    FeedbackKind.EXPIRED,
]


def training_records(*, agent: Agent, since: datetime, until: datetime) -> Iterator[dict]:
    given_feedback = (
        Feedback.objects.filter(agent=agent, created_at__gte=since, created_at__lt=until)
        .values_list("proposal_id", flat=True)
        .order_by()
    )
    # The agent's own outcome reports give it no feedback (it knows them), yet what its
    # action measurably did is what tuning most needs: a move that ran unreviewed and hurt.
    outcome_reported = (
        Outcome.objects.filter(proposal__agent=agent, created_at__gte=since, created_at__lt=until)
        .values_list("proposal_id", flat=True)
        .order_by()
    )
    proposal_ids = (
        given_feedback.union(outcome_reported).order_by("proposal_id").iterator(chunk_size=CHUNK)
    )
    for chunk in _chunks(proposal_ids, CHUNK):
        proposals = (
            with_deciding_policy_name(Proposal.objects.filter(pk__in=chunk))
            .select_related("account", "verdict_policy")
            .prefetch_related(
                Prefetch("decisions", queryset=Decision.objects.order_by("created_at")),
                Prefetch("feedback", queryset=Feedback.objects.order_by("id")),
                "outcomes",
            )
            .order_by("pk")
        )
        as_submitted = dict(as_proposed_records(chunk).values_list("id", "payload"))
        routed = _first_routings(chunk)
        for proposal in proposals:
            yield _record(
                agent,
                proposal,
                as_submitted.get(proposal.pk, proposal.payload),
                routed.get(proposal.pk) or _routing_now(proposal),
            )


def _first_routings(proposal_ids: list[int]) -> dict[int, dict]:
    """Each proposal's first routing (``first_routings``, the record the console reads too):
    how policy routed what the agent proposed, before an edit or a re-assessment routed it
    again (an edit that halves a move is re-assessed "within the ceiling"), with its policy's
    name in the version that routed it."""
    first = {
        record["id"]: record
        for record in first_routings(proposal_ids).values(
            "id",
            "verdict_outcome",
            "verdict_policy_id",
            "verdict_policy_version",
            "verdict_reasons",
            "risk",
        )
    }
    names_then = dict(
        Policy.history.filter(
            history_id__in={record["verdict_policy_version"] for record in first.values()}
        ).values_list("history_id", "name")
    )
    names_now = dict(  # where the version that routed it is not on record
        Policy.objects.filter(
            pk__in={record["verdict_policy_id"] for record in first.values()}
        ).values_list("pk", "name")
    )
    return {
        pk: {
            "outcome": record["verdict_outcome"],
            "policy": names_then.get(record["verdict_policy_version"])
            or names_now.get(record["verdict_policy_id"]),
            "reasons": record["verdict_reasons"],
            "risk": record["risk"],
        }
        for pk, record in first.items()
    }


def _routing_now(proposal: Proposal) -> dict:
    """A proposal with no routing on record (evaluated before its history held one)."""
    return {
        "outcome": proposal.verdict_outcome,
        "policy": policy_name_then(proposal) if proposal.verdict_policy else None,
        "reasons": proposal.verdict_reasons,
        "risk": proposal.risk,
    }


def _chunks(items: Iterable[int], size: int) -> Iterator[list[int]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _record(agent: Agent, proposal: Proposal, submitted_payload: dict, routing: dict) -> dict:
    kinds = {item.kind for item in proposal.feedback.all()}
    approved = proposal.status in APPROVED_TO_RUN_STATUSES
    return {
        "agent": agent.name,
        "proposal_id": proposal.pk,
        "action_type": proposal.action_type,
        "account": proposal.account.external_id,
        "created_at": proposal.created_at,
        "proposed": {
            "payload": submitted_payload,
            "rationale": proposal.rationale,
            "confidence": proposal.confidence,
            "supporting_data": proposal.supporting_data,
        },
        "verdict": routing,
        "label": next((kind.value for kind in DECIDED_KINDS if kind in kinds), None),
        "decisions": [
            {
                "outcome": decision.outcome,
                "reason_code": decision.reason_code,
                "note": decision.note,
                "round": decision.review_round,
                "decided_at": decision.created_at,
            }
            for decision in proposal.decisions.all()
        ],
        "approved_payload": proposal.payload if approved else None,
        "edits": payload_diff(submitted_payload, proposal.payload) if approved else {},
        "status": proposal.status,
        "outcomes": [
            {
                "effect": outcome.effect,
                "metrics": outcome.metrics,
                "note": outcome.note,
                "reported_by": f"{outcome.reported_by_kind}:{outcome.reported_by}",
                "reported_at": outcome.created_at,
            }
            for outcome in proposal.outcomes.all()
        ],
        "feedback": [
            {
                "kind": item.kind,
                "reason_code": item.reason_code,
                "note": item.note,
                "diff": item.diff,
                "created_at": item.created_at,
            }
            for item in proposal.feedback.all()
        ],
    }
