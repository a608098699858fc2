"""Proposals that waited longer than their policy allows expire and never execute: swept once
a minute, and expired there and then when someone tries to decide or withdraw one late, or its
agent reads or lists it late, or a person lists the proposals (it is never answered or shown
as waiting for a person past its window)."""

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


def proposals_expire_overdue_listed(*, agent_id: int | None = None) -> int:
    """Expire the proposals (an agent's, or everyone's for ``None``) whose review window has
    closed, before a list of them is read: its status filters, counts and pages then say
    what happened, not what the once-a-minute sweep has not got to yet. Nothing overdue
    costs one indexed read; the overdue expire together, in one transaction, at most
    ``SWEEP_BATCH`` of them, each judged again under its lock. Returns how many expired."""
    now = timezone.now()
    overdue = Proposal.objects.overdue(now)
    if agent_id is not None:
        overdue = overdue.filter(agent_id=agent_id)
    # One batch: a backlog the sweep left (it was down) is its work, not one page's.
    found = sorted(overdue.order_by().values_list("pk", flat=True)[:SWEEP_BATCH])
    return _proposals_expire_if_overdue(found, now) if found else 0


def _proposals_expire_if_overdue(proposal_ids: list[int], now: datetime) -> int:
    """Lock the proposals (in id order) and expire those still overdue by ``now``: one
    decided, withdrawn or sent back for a new window since they were read is left as it
    is. How many expired."""
    with transaction.atomic():
        locked = (
            Proposal.objects.select_related("agent")
            .select_for_update(of=("self",))
            .filter(pk__in=proposal_ids)
            .order_by("pk")
        )
        overdue = [proposal for proposal in locked if review_window_closed(proposal, now)]
        proposals_expire_locked(proposals=overdue)
        return len(overdue)
