"""The proposal lifecycle: the one place a proposal changes status.

    submitted ──> approved | pending_review | blocked | withdrawn
    pending_review ──> approved | rejected | expired | withdrawn | superseded
    approved ──> executing | pending_review (held back or re-routed) | superseded
    executing ──> executed | failed | pending_review (held back before a later attempt)
                  | superseded
    failed ──> approved (a person retries)

Held back: before each attempt to carry it out, a proposal goes back to a person, in a new
review round, when a kill switch engaged since a person approved it (or one that the policy
engine approved) covers it.

Superseded: a proposal that sets a value (a bid, a budget, a status, a strategy field) was
made against the value its target had then; once another change lands on that target first,
it ends, never executes, and its agent is told the value it saw and the value now. A
proposal that moves an amount keeps its meaning: it is re-assessed against the new state and
re-routed to a person if its verdict changes.

``proposal_transition`` locks the row, checks the move is allowed from the status the row has
*now*, writes it with the acting actor (history records who, when and why) and schedules the
side effects after commit. The admin, the API and the Celery tasks all call it.
"""

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from audit.actors import Actor, acting_as
from audit.history import update_with_history
from hitlproject.errors import Conflict, NotFound
from policies.models import REVIEW_WINDOW_BOUNDS, describe_duration

S = ProposalStatus

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.SUBMITTED: frozenset({S.APPROVED, S.PENDING_REVIEW, S.BLOCKED, S.WITHDRAWN}),
    S.PENDING_REVIEW: frozenset({S.APPROVED, S.REJECTED, S.EXPIRED, S.WITHDRAWN, S.SUPERSEDED}),
    S.APPROVED: frozenset({S.EXECUTING, S.PENDING_REVIEW, S.SUPERSEDED}),
    S.EXECUTING: frozenset({S.EXECUTED, S.FAILED, S.PENDING_REVIEW, S.SUPERSEDED}),
    S.FAILED: frozenset({S.APPROVED}),
}
DECIDED_STATUSES = frozenset({S.APPROVED, S.REJECTED, S.BLOCKED})
# Approved to run, and running: the platform moves these on with nobody acting.
UNDER_WAY_STATUSES = frozenset({S.APPROVED, S.EXECUTING})


class InvalidTransition(Conflict):
    code = "invalid_transition"

    def __init__(self, proposal: Proposal, to_status: str) -> None:
        super().__init__(
            f"Proposal #{proposal.pk} is {proposal.get_status_display().lower()}; "
            f"it cannot become {S(to_status).label.lower()}."
        )
        self.current_status = proposal.status


def proposal_lock(proposal_id: int) -> Proposal:
    """Read a proposal (with its agent, unlocked) and lock its row until the surrounding
    transaction ends."""
    proposal = (
        Proposal.objects.select_related("agent")
        .select_for_update(of=("self",))
        .filter(pk=proposal_id)
        .first()
    )
    if proposal is None:
        raise NotFound(f"There is no proposal #{proposal_id}.")
    return proposal


def _move(proposal: Proposal, to_status: str, *, reason: str, now: datetime) -> dict[str, Any]:
    """Move a locked proposal to ``to_status`` in memory, if the lifecycle allows it from the
    status the row has now, stamping the times that go with the move. Returns the fields the
    move set, with their values."""
    if to_status not in ALLOWED_TRANSITIONS.get(proposal.status, frozenset()):
        raise InvalidTransition(proposal, to_status)
    moved: dict[str, Any] = {"status": to_status, "updated_at": now}
    if to_status == S.PENDING_REVIEW:
        window, note = _review_window(proposal)
        reason = " ".join(filter(None, [reason or f"{proposal.status} → {to_status}", note]))
        moved.update(
            review_round=proposal.review_round + 1,
            approvals_this_round=0,  # a new round: earlier approvals were of another
            review_expires_at=now + window,
            decided_at=None,  # back with a person: not decided (until it is again)
        )
    if to_status in DECIDED_STATUSES and proposal.status != S.FAILED:
        moved["decided_at"] = now
    if to_status == S.EXECUTED:
        moved["executed_at"] = now
    proposal._change_reason = reason or f"{proposal.status} → {to_status}"
    for field_name, value in moved.items():
        setattr(proposal, field_name, value)
    return moved


def _review_window(proposal: Proposal) -> tuple[timedelta, str]:
    """How long the proposal may wait for review: its policy's window, brought within the
    bounds a policy may have if one was stored outside them (saying so), or the default."""
    if not proposal.verdict_policy_id:
        return settings.DEFAULT_REVIEW_WINDOW, ""
    policy = proposal.verdict_policy
    shortest, longest = REVIEW_WINDOW_BOUNDS
    window = min(max(policy.review_window, shortest), longest)
    if window == policy.review_window:
        return window, ""
    return window, (
        f"(Policy “{policy.name}” has a review window of "
        f"{describe_duration(policy.review_window)}, outside what a policy may have; "
        f"{describe_duration(window)} applies.)"
    )


def _after_move(proposals: Sequence[Proposal]) -> None:
    """Once the moves commit: execute what was approved, and tell agents what happened."""
    from approvals.tasks import enqueue_executions_after_commit
    from feedback.callbacks import callback_events_record

    approved = [proposal.pk for proposal in proposals if proposal.status == S.APPROVED]
    if approved:
        enqueue_executions_after_commit(approved)
    callback_events_record(proposals=proposals)


def proposal_transition(
    *,
    proposal_id: int,
    to_status: str,
    actor: Actor,
    reason: str = "",
    changes: Mapping[str, Any] | None = None,
) -> Proposal:
    with transaction.atomic(), acting_as(actor):
        proposal = proposal_lock(proposal_id)
        for field, value in (changes or {}).items():
            setattr(proposal, field, value)
        moved = _move(proposal, to_status, reason=reason, now=timezone.now())
        proposal.save(update_fields=[*(changes or {}), *moved])  # what changed, no more
        _after_move([proposal])
    return proposal


def proposals_transition(
    *,
    proposals: Sequence[Proposal],
    to_status: str,
    actor: Actor,
    reason: str,
    also_write: Sequence[str] = (),
) -> None:
    """Move many proposals, already locked by the caller's transaction, by the same rules as
    ``proposal_transition``, writing them together: proposals moved alike take one UPDATE,
    and their history one INSERT. Refuses them all if any one may not make the move.
    ``also_write`` names fields the caller has set on the proposals, written with the move."""
    proposals_move_through(
        proposals=proposals,
        moves=[Move(to_status, reason, timezone.now())],
        actor=actor,
        also_write=also_write,
    )


@dataclass(frozen=True)
class Move:
    """One move of a ``proposals_move_through``: to what status, why ("" for the lifecycle's
    own words) and when."""

    to_status: str
    reason: str
    at: datetime


def proposals_move_through(
    *,
    proposals: Sequence[Proposal],
    moves: Sequence[Move],
    actor: Actor,
    also_write: Sequence[str] = (),
) -> None:
    """Move proposals, already locked by the caller's transaction, through successive
    statuses (approved → executing → executed, say, once the work between them is done),
    each move checked by the lifecycle's rules from the status the one before left and
    recorded in history with its own time and reason, by ``actor``. The rows are written
    once, at the end, with only the columns the moves (and ``also_write``) changed: one
    UPDATE for the proposals moved alike, one INSERT of every history record. Refuses them
    all if any one may not make a move."""
    if not transaction.get_connection().in_atomic_block:
        raise TransactionManagementError("proposals_move_through needs the caller's row locks.")
    written = {
        proposal.pk: {name: getattr(proposal, name) for name in also_write}
        for proposal in proposals
    }
    records = []
    for move in moves:
        for proposal in proposals:
            written[proposal.pk].update(
                _move(proposal, move.to_status, reason=move.reason, now=move.at)
            )
            record = copy.copy(proposal)  # the proposal as this move left it, for history
            record._history_date = move.at
            records.append(record)
    changes = [(proposal, written[proposal.pk]) for proposal in proposals]
    update_with_history(Proposal, changes, actor=actor, records=records)
    _after_move(proposals)
