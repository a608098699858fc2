"""The proposal lifecycle: the one place a proposal changes status.

    submitted ──> approved | pending_review | blocked | withdrawn
    pending_review ──> approved | rejected | expired | withdrawn | superseded
    approved ──> executing | pending_review (held back or re-routed) | superseded
    executing ──> executed | failed | pending_review (held back before a later attempt)
                  | superseded
    failed ──> approved (a person retries) | superseded (as a person retries it)

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from approvals import action_types
from approvals.models import Proposal, ProposalStatus
from audit.actors import Actor, acting_as
from audit.history import (
    history_manager,
    history_rows,
    history_rows_write,
    rows_insert,
    update_with_history,
)
from hitlproject.errors import Conflict, NotFound
from hitlproject.periods import describe_duration
from hitlproject.queueing import after_commit, chunked, send_each
from hitlproject.vocabulary import ALLOWED_TRANSITIONS, COUNTED_STATUSES, DECIDED_STATUSES
from hitlproject.wakeups import proposal_topic, wake_after_commit
from policies.models import REVIEW_WINDOW_BOUNDS, CountedMove

S = ProposalStatus

CountedState = tuple[datetime, tuple[tuple[str, str], ...], bool] | None


def counted_state(proposal: Proposal) -> CountedState:
    """What a proposal counts against cumulative ceilings: its effects, from when it was
    approved to run, and whether they have executed."""
    # ``decided_at`` for proposals approved before ``approved_at`` was recorded.
    approved_at = proposal.approved_at or proposal.decided_at
    if proposal.status in COUNTED_STATUSES and approved_at and proposal.effects:
        effects = tuple(sorted(proposal.effects.items()))
        return approved_at, effects, proposal.status == S.EXECUTED
    return None


def counted_moves_update(written: Iterable[tuple[Proposal, CountedState]]) -> None:
    """Bring the moves that count against cumulative ceilings (``CountedMove``) in line with
    proposals just written, given what each counted before: in the same transaction, so an
    evaluation never counts a move that is not (or misses one that is). Nothing is written
    for a proposal whose count did not change (most moves: executing); one that executed has
    its moves marked so, in one UPDATE."""
    changed = []
    executed = []
    for proposal, before in written:
        after = counted_state(proposal)
        if after == before:
            continue
        if before is not None and after is not None and before[:2] == after[:2] and after[2]:
            executed.append(proposal.pk)  # the same moves, now executed
        else:
            changed.append((proposal, before, after))
    if executed:
        CountedMove.objects.filter(proposal_id__in=executed).update(executed=True)
    if not changed:
        return
    stale = [proposal.pk for proposal, before, _ in changed if before is not None]
    if stale:
        CountedMove.objects.filter(proposal_id__in=stale).delete()
    fresh = []
    for proposal, _, after in changed:
        if after is None:
            continue
        approved_at, effects, has_executed = after
        fresh += [
            CountedMove(
                proposal_id=proposal.pk,
                agent_id=proposal.agent_id,
                account_id=proposal.account_id,
                target=target,
                factor=factor,
                approved_at=approved_at,
                executed=has_executed,
                sets_value=_sets_values(proposal),
            )
            for target, factor in effects
            if factor != "1/1"  # a move to the same value compounds to nothing
        ]
    rows_insert(CountedMove, fresh)


def _sets_values(proposal: Proposal) -> bool:
    """Whether the proposal's action sets values (a type since retired counts as moving an
    amount: counted for every proposal, as before the distinction was made)."""
    return action_types.named(proposal.action_type).sets_values


# Where a proposal stands once it was approved (and has not failed or ended otherwise since).
_APPROVED_ALREADY = frozenset({S.APPROVED, S.EXECUTING, S.EXECUTED})


class InvalidTransition(Conflict):
    code = "invalid_transition"

    def __init__(self, proposal: Proposal, to_status: str) -> None:
        status = proposal.get_status_display().lower()
        if proposal.status == to_status:  # done already (a second withdrawal, say)
            message = f"Proposal #{proposal.pk} is already {status}."
        elif to_status == S.APPROVED and proposal.status in _APPROVED_ALREADY:
            # A colleague approved it first (it may have run since): it was approved, not
            # "cannot become approved", which reads as if it never would be.
            message = f"Proposal #{proposal.pk} is {status}; it was approved already."
        else:
            target = S(to_status).label.lower()
            # "Proposal #12 failed", not "is failed": its execution failed, it is not a state.
            state = "failed" if proposal.status == S.FAILED else f"is {status}"
            message = f"Proposal #{proposal.pk} {state}; it cannot become {target}."
        super().__init__(message)
        self.proposal_id = proposal.pk
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


def _move(
    proposal: Proposal, to_status: str, *, reason: str, now: datetime, said_to_agent: str = ""
) -> dict[str, Any]:
    """Move a locked proposal to ``to_status`` in memory, if the lifecycle allows it from the
    status the row has now, stamping the times that go with the move. Returns the fields the
    move set, with their values. ``reason`` is what its history records; ``said_to_agent``,
    what its agent is told of the move (its callback's ``reason``) where that differs: an
    agent is told what people decided, not who decided it."""
    if to_status not in ALLOWED_TRANSITIONS.get(proposal.status, frozenset()):
        raise InvalidTransition(proposal, to_status)
    moved: dict[str, Any] = {"status": to_status, "updated_at": now}
    if to_status == S.PENDING_REVIEW:
        window, note = _review_window(proposal)
        reason = " ".join(filter(None, [reason or _moved_text(proposal.status, to_status), note]))
        moved.update(
            review_round=proposal.review_round + 1,
            approvals_this_round=0,  # a new round: earlier approvals were of another
            review_expires_at=now + window,
            waiting_since=now,
            decided_at=None,  # back with a person: not decided (until it is again)
            approved_at=None,
        )
    if to_status in DECIDED_STATUSES and proposal.status != S.FAILED:
        moved["decided_at"] = now
    if to_status == S.APPROVED:  # by the engine, by people, or again by a person's retry
        moved["approved_at"] = now
    if to_status == S.EXECUTED:
        moved["executed_at"] = now
    proposal._change_reason = reason or _moved_text(proposal.status, to_status)
    proposal._said_to_agent = said_to_agent or proposal._change_reason
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


# The executors app's task that carries out approved proposals, a list of ids to a message,
# sent by its name: approvals does not import the app above it.
EXECUTE_PROPOSALS = "approvals.execute_proposals"
# A batch's executions travel at most this many to a message. Those of a message are carried
# out together, in one transaction, where nothing but doing them is needed: more to a message
# is less work in all, fewer to a message more workers sharing it.
EXECUTION_CHUNK = 100


def enqueue_executions_after_commit(proposal_ids: list[int]) -> None:
    """Send the approved proposals' executions, in messages alike in size, once the
    surrounding transaction commits (a broker out of reach is logged, and the stall sweeper
    sends them again)."""
    after_commit(send_each, EXECUTE_PROPOSALS, chunked(proposal_ids, EXECUTION_CHUNK))


ProposalsMoved = Callable[[Sequence[Proposal]], None]
_moved_listeners: list[ProposalsMoved] = []


def on_proposals_moved(listener: ProposalsMoved) -> None:
    """Have ``listener`` called with the proposals of every move, in the transaction that
    moves them (an app above this one records its side effects so, without this module
    importing it: notifications, in their ``ready()``)."""
    if listener not in _moved_listeners:
        _moved_listeners.append(listener)


def _after_move(proposals: Sequence[Proposal], *, created: bool = False) -> None:
    """Once the moves commit: execute what was approved, and tell agents what happened: by
    their callbacks, and by waking the requests that wait on these proposals (long polls).
    Nobody waits on a proposal just ``created``: its id is not out before the commit. The
    listeners record, in the same transaction, what they do about the moves."""
    approved = [proposal.pk for proposal in proposals if proposal.status == S.APPROVED]
    if approved:
        enqueue_executions_after_commit(approved)
    for listener in _moved_listeners:
        listener(proposals)
    if not created:
        wake_after_commit(proposal_topic(proposal.pk) for proposal in proposals)


def by_a_reviewer(done: str, reviewer: AbstractBaseUser, then: str = "") -> tuple[str, str]:
    """A reviewer's move in words, twice: as its history records it, naming them ("rejected
    by operator: Too aggressive", the ``reason``), and as its agent is told it, naming no one
    ("rejected by a reviewer: Too aggressive", the ``said_to_agent``)."""
    return f"{done} by {reviewer.get_username()}{then}", f"{done} by a reviewer{then}"


def proposal_transition(
    *,
    proposal_id: int,
    to_status: str,
    actor: Actor,
    reason: str = "",
    changes: Mapping[str, Any] | None = None,
    said_to_agent: str = "",
) -> Proposal:
    with transaction.atomic(), acting_as(actor):
        proposal = proposal_lock(proposal_id)
        counted_before = counted_state(proposal)
        for field, value in (changes or {}).items():
            setattr(proposal, field, value)
        now = timezone.now()
        moved = _move(proposal, to_status, reason=reason, now=now, said_to_agent=said_to_agent)
        # Its history record is of the move at the instant the move set ("Sent to run again
        # at" as its approved_at), not the moment after, which can be the next second.
        proposal._history_date = now
        proposal.save(update_fields=[*(changes or {}), *moved])  # what changed, no more
        del proposal._history_date
        counted_moves_update([(proposal, counted_before)])
        _after_move([proposal])
    return proposal


def proposals_transition(
    *,
    proposals: Sequence[Proposal],
    to_status: str,
    actor: Actor,
    reason: str,
    also_write: Sequence[str] = (),
    said_to_agent: str = "",
    said_to_each: Mapping[int, str] | None = None,
    at: datetime | None = None,
) -> None:
    """Move many proposals, already locked by the caller's transaction, by the same rules as
    ``proposal_transition``, writing them together: proposals moved alike take one UPDATE,
    and their history one INSERT. Refuses them all if any one may not make the move.
    ``also_write`` names fields the caller has set on the proposals, written with the move;
    ``said_to_each``, by id, what an agent is told of its proposal where it is not
    ``said_to_agent``; ``at``, when the move was made, if not now (a decision's time, which
    its record and the proposal's ``decided_at`` both say)."""
    proposals_move_through(
        proposals=proposals,
        moves=[Move(to_status, reason, at or timezone.now(), said_to_agent, said_to_each or {})],
        actor=actor,
        also_write=also_write,
    )


def _moved_text(from_status: str, to_status: str) -> str:
    """A move in the words its history is read in: "Approved → Executing"."""
    return f"{S(from_status).label} → {S(to_status).label}"


@dataclass(frozen=True)
class Move:
    """One move of a ``proposals_move_through``: to what status, why ("" for the lifecycle's
    own words) and when; and, where it differs from why, what its agent is told of it: the
    same for all (``said_to_agent``), or each proposal's own, by id (``said_to_each``: what
    each execution of a set changed)."""

    to_status: str
    reason: str
    at: datetime
    said_to_agent: str = ""
    said_to_each: Mapping[int, str] = dataclass_field(default_factory=dict)


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
    counted_before = [counted_state(proposal) for proposal in proposals]
    records = []
    for move in moves:
        for proposal in proposals:
            written[proposal.pk].update(
                _move(
                    proposal,
                    move.to_status,
                    reason=move.reason,
                    now=move.at,
                    said_to_agent=move.said_to_each.get(proposal.pk, move.said_to_agent),
                )
            )
            record = copy.copy(proposal)  # the proposal as this move left it, for history
            record._history_date = move.at
            records.append(record)
    changes = [(proposal, written[proposal.pk]) for proposal in proposals]
    update_with_history(Proposal, changes, actor=actor, records=records)
    counted_moves_update(zip(proposals, counted_before, strict=True))
    _after_move(proposals)


def proposals_create_routed(
    *,
    proposals: Sequence[Proposal],
    routes: Sequence[tuple[str, str, Mapping[str, Any]]],
    submitted_by: Actor,
    routed_by: Actor,
    at: datetime,
    submitted_said: Sequence[str] | None = None,
) -> None:
    """Record new proposals as their agent submitted them and as the policy engine routed
    them, in the caller's transaction (which holds the locks their routing was decided
    under). Each proposal, built in memory as submitted, takes its route (the status, the
    reason, the verdict's fields) by the lifecycle's rules, as ``proposal_transition`` would
    move it; then all are inserted once, in the state they were routed to, with two history
    records each: submitted, by its agent; routed, by ``routed_by``. Their moves count from
    then on, and the approved ones are sent to execute once the transaction commits. ``at``
    is when they were submitted and routed (the routing's reading of the world);
    ``submitted_said``, each one's reason for its submitted record ("submitted" by default)."""
    if not transaction.get_connection().in_atomic_block:
        raise TransactionManagementError("proposals_create_routed needs the caller's locks.")
    as_submitted = []
    if submitted_said is None:
        submitted_said = ["submitted"] * len(proposals)
    for proposal, (to_status, reason, changes), said in zip(
        proposals, routes, submitted_said, strict=True
    ):
        proposal.created_at = proposal.updated_at = at
        proposal._change_reason = said
        as_submitted.append(copy.copy(proposal))
        for field, value in changes.items():
            setattr(proposal, field, value)
        _move(proposal, to_status, reason=reason, now=at)
    written = rows_insert(Proposal, proposals, ids=True)
    history = history_manager(Proposal)
    for submitted, proposal in zip(as_submitted, proposals, strict=True):
        submitted.pk = proposal.pk
    # The submitted records first, then the routed ones, in the order two inserts gave them;
    # the values the proposals were written with taken as written.
    history_rows_write(
        history,
        history_rows(
            history, as_submitted, actor=submitted_by, date=at, update=False, written=written
        )
        + history_rows(history, proposals, actor=routed_by, date=at, update=True, written=written),
    )
    counted_moves_update((proposal, None) for proposal in proposals)
    _after_move(proposals, created=True)
