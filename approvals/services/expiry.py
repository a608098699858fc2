"""Proposals that waited longer than their policy allows expire and never execute: swept by
beat (every ``HITL_EXPIRY_SWEEP_SECONDS``), and expired there and then when someone tries to
decide or withdraw one late. Never by a read: an auditor opening the queue, or an agent
polling its proposal, changes nothing. Until the sweep reaches it, one past its window reads
as it is, waiting for review, with the time its window closed; no decision of it is taken,
and no count of what waits counts it (``Proposal.objects.waiting``)."""

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from approvals.services.acts import review_window_closed
from approvals.services.hooks import proposals_expired
from approvals.services.lifecycle import proposal_lock, proposals_transition
from audit.actors import Actor, acting_as

SWEEP_BATCH = 500


def proposals_expire_locked(*, proposals: Sequence[Proposal]) -> None:
    """Expire proposals whose review window closed, locked by the caller's transaction: each
    expires, its agent is told, and its expiry is recorded as feedback. The platform expires
    them, whoever found them overdue."""
    if not proposals:
        return
    actor = Actor.system("expiry")
    by_reason = defaultdict(list)
    for proposal in proposals:
        by_reason[expiry_reason(proposal)].append(proposal)
    # As the actor, so that no record names whoever's request found them overdue (a person
    # opening the console's list, an auditor too) as the user who expired them.
    with acting_as(actor):
        for reason, expiring in by_reason.items():
            proposals_transition(
                proposals=expiring,
                to_status=ProposalStatus.EXPIRED,
                actor=actor,
                reason=reason,
            )
        proposals_expired(proposals=proposals, actor=actor)


def expiry_reason(proposal: Proposal) -> str:
    """Why a proposal expired, as it was: with none of its approvals, or with some of those its
    policy asks for ("the review window closed before enough people approved it: 1 of 2
    approvals"). Its history says it in these words, its agent's callback and the history of
    its agent's feedback too: that feedback's history said "before enough people decided it"
    beside the proposal's own "1 of 2 approvals"."""
    given, asked = proposal.approvals_this_round, proposal.required_approvals
    if not given:
        return "the review window closed without a decision"
    return (
        f"the review window closed before enough people approved it: {given} of {asked} approvals"
    )


def proposals_expire_overdue() -> int:
    """Expire every proposal whose review window has closed. Returns how many expired."""
    expired = 0
    while True:
        now = timezone.now()
        overdue = list(Proposal.objects.overdue(now).values_list("pk", flat=True)[:SWEEP_BATCH])
        expired += sum(proposal_expire_if_overdue(proposal_id, now) for proposal_id in overdue)
        if len(overdue) < SWEEP_BATCH:
            return expired


def proposal_expire_if_overdue(proposal_id: int, now: datetime | None = None) -> bool:
    """Expire the proposal if its review window has closed (by ``now``), judged under its
    lock: one decided, or sent back for a new window, since it was read is left as it is.
    Whether it expired."""
    with transaction.atomic():
        proposal = proposal_lock(proposal_id)
        if not review_window_closed(proposal, now or timezone.now()):
            return False
        proposals_expire_locked(proposals=[proposal])
        return True
