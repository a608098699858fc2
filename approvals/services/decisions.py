"""Operators' decisions: approve or reject a proposal waiting for review."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from approvals.models import Decision, DecisionOutcome, Proposal, ProposalStatus, RejectionReason
from approvals.services.lifecycle import InvalidTransition, proposal_lock, proposal_transition
from audit.actors import Actor, acting_as
from feedback.services import feedback_record_decision
from hitlproject.errors import DomainError, NotAllowed

DECIDE_PERMISSION = "approvals.decide_proposal"


def check_may_decide(user: AbstractBaseUser) -> None:
    if not user.has_perm(DECIDE_PERMISSION):
        raise NotAllowed(f"{user.get_username()} may not decide on proposals.")


def _decision_record(
    *,
    proposal_id: int,
    reviewer: AbstractBaseUser,
    outcome: str,
    reason_code: str = "",
    note: str = "",
) -> Proposal:
    """Check the reviewer may decide, record the decision and its feedback, and move the
    proposal on. Runs inside the caller's transaction, holding the proposal's lock."""
    actor = Actor.for_user(reviewer)
    to_status = (
        ProposalStatus.APPROVED if outcome == DecisionOutcome.APPROVE else ProposalStatus.REJECTED
    )
    proposal = proposal_lock(proposal_id)
    check_may_decide(reviewer)
    if proposal.agent.owner_id == reviewer.pk:
        raise NotAllowed(
            f"{reviewer.get_username()} owns agent {proposal.agent}, which proposed this; "
            "someone else must decide."
        )
    if proposal.status != ProposalStatus.PENDING_REVIEW:
        raise InvalidTransition(proposal, to_status)
    this_round = proposal.decisions.filter(review_round=proposal.review_round)
    if this_round.filter(reviewer=reviewer).exists():
        raise NotAllowed(
            f"{reviewer.get_username()} has already decided on proposal #{proposal.pk}."
        )

    with acting_as(actor):
        decision = Decision.objects.create(
            proposal=proposal,
            review_round=proposal.review_round,
            reviewer=reviewer,
            outcome=outcome,
            reason_code=reason_code,
            note=note,
        )
    feedback_record_decision(decision=decision, actor=actor)
    if to_status == ProposalStatus.APPROVED:
        approvals = this_round.filter(outcome=DecisionOutcome.APPROVE).count()
        if approvals < proposal.required_approvals:
            return proposal  # waiting for more reviewers
        reason = f"approved by {reviewer.get_username()}"
    else:
        reason = f"rejected by {reviewer.get_username()}: {RejectionReason(reason_code).label}"
    return proposal_transition(
        proposal_id=proposal_id, to_status=to_status, actor=actor, reason=reason
    )


@transaction.atomic
def proposal_approve(*, proposal_id: int, reviewer: AbstractBaseUser, note: str = "") -> Proposal:
    """Record an approval; the proposal is approved once it has as many as its policy asks."""
    return _decision_record(
        proposal_id=proposal_id, reviewer=reviewer, outcome=DecisionOutcome.APPROVE, note=note
    )


@transaction.atomic
def proposal_reject(
    *, proposal_id: int, reviewer: AbstractBaseUser, reason_code: str, note: str = ""
) -> Proposal:
    if reason_code not in RejectionReason.values:
        raise DomainError(f"Choose a rejection reason: {', '.join(RejectionReason.values)}.")
    return _decision_record(
        proposal_id=proposal_id,
        reviewer=reviewer,
        outcome=DecisionOutcome.REJECT,
        reason_code=reason_code,
        note=note,
    )
