"""Operators' decisions: approve or reject a proposal waiting for review."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from approvals.models import Decision, DecisionOutcome, Proposal, ProposalStatus, RejectionReason
from approvals.services.lifecycle import InvalidTransition, proposal_lock, proposal_transition
from audit.actors import Actor, acting_as
from feedback.services import feedback_record_decision
from hitlproject.errors import DomainError, NotAllowed

DECIDE_PERMISSION = "approvals.decide_proposal"


def _check_reviewer_may_decide(
    *, proposal: Proposal, reviewer: AbstractBaseUser, to_status: str
) -> None:
    if not reviewer.has_perm(DECIDE_PERMISSION):
        raise NotAllowed(f"{reviewer.get_username()} may not approve or reject proposals.")
    if proposal.status != ProposalStatus.PENDING_REVIEW:
        raise InvalidTransition(proposal, to_status)
    if proposal.decisions.filter(review_round=proposal.review_round, reviewer=reviewer).exists():
        raise NotAllowed(
            f"{reviewer.get_username()} has already decided on proposal #{proposal.pk}."
        )


def proposal_approve(*, proposal_id: int, reviewer: AbstractBaseUser, note: str = "") -> Proposal:
    """Record an approval; the proposal is approved once it has as many as its policy asks."""
    actor = Actor.for_user(reviewer)
    with transaction.atomic(), acting_as(actor):
        proposal = proposal_lock(proposal_id)
        _check_reviewer_may_decide(
            proposal=proposal, reviewer=reviewer, to_status=ProposalStatus.APPROVED
        )
        decision = Decision.objects.create(
            proposal=proposal,
            review_round=proposal.review_round,
            reviewer=reviewer,
            outcome=DecisionOutcome.APPROVE,
            note=note,
        )
        feedback_record_decision(decision=decision, actor=actor)
        approvals = proposal.decisions.filter(
            review_round=proposal.review_round, outcome=DecisionOutcome.APPROVE
        ).count()
        if approvals < proposal.required_approvals:
            return proposal
        return proposal_transition(
            proposal_id=proposal_id,
            to_status=ProposalStatus.APPROVED,
            actor=actor,
            reason=f"approved by {reviewer.get_username()}",
        )


def proposal_reject(
    *, proposal_id: int, reviewer: AbstractBaseUser, reason_code: str, note: str = ""
) -> Proposal:
    if reason_code not in RejectionReason.values:
        raise DomainError(f"Choose a rejection reason: {', '.join(RejectionReason.values)}.")
    actor = Actor.for_user(reviewer)
    with transaction.atomic(), acting_as(actor):
        proposal = proposal_lock(proposal_id)
        _check_reviewer_may_decide(
            proposal=proposal, reviewer=reviewer, to_status=ProposalStatus.REJECTED
        )
        decision = Decision.objects.create(
            proposal=proposal,
            review_round=proposal.review_round,
            reviewer=reviewer,
            outcome=DecisionOutcome.REJECT,
            reason_code=reason_code,
            note=note,
        )
        feedback_record_decision(decision=decision, actor=actor)
        return proposal_transition(
            proposal_id=proposal_id,
            to_status=ProposalStatus.REJECTED,
            actor=actor,
            reason=f"rejected by {reviewer.get_username()}: {RejectionReason(reason_code).label}",
        )
