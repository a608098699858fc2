"""Operators' decisions: approve or reject a proposal waiting for review."""

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from rest_framework.exceptions import ValidationError

from approvals.models import (
    Decision,
    DecisionOutcome,
    Proposal,
    ProposalStatus,
    RejectionReason,
    VerdictOutcome,
)
from approvals.services.lifecycle import InvalidTransition, proposal_lock, proposal_transition
from approvals.services.proposals import (
    action_assess,
    guardrail_blocks,
    refreshed_facts,
    verdict_for,
)
from approvals.validation import validation_text
from audit.actors import Actor, acting_as
from feedback.services import feedback_record_decision
from hitlproject.errors import DomainError, NotAllowed

DECIDE_PERMISSION = "approvals.decide_proposal"


def check_may_decide(user: AbstractBaseUser) -> None:
    if not user.has_perm(DECIDE_PERMISSION):
        raise NotAllowed(f"{user.get_username()} may not decide on proposals.")


def _edit(proposal: Proposal, edited_payload: Any) -> dict[str, Any] | None:
    """The proposal's new fields if the reviewer's edit changes the action, else None. The
    edit is validated and assessed against the ledger like an agent's payload, and given a
    fresh verdict; one that a guardrail or a hard ceiling would block is refused."""
    try:
        assessed = action_assess(
            account=proposal.account,
            action_type_name=proposal.action_type,
            raw_payload=edited_payload,
        )
    except ValidationError as error:
        raise DomainError(f"The edited action is not valid: {validation_text(error)}") from error
    if assessed.payload == proposal.payload:
        return None
    verdict, _ = verdict_for(assessed=assessed, agent=proposal.agent, proposal_id=proposal.pk)
    if verdict.outcome == VerdictOutcome.BLOCK:
        raise DomainError("The edited action would be blocked: " + " ".join(verdict.reasons))
    note = f"Edited before approval to: {assessed.assessment.summary}."
    return {"payload": assessed.payload, **refreshed_facts(proposal, assessed, verdict, note)}


def _decision_record(
    *,
    proposal_id: int,
    reviewer: AbstractBaseUser,
    outcome: str,
    reason_code: str = "",
    note: str = "",
    edited_payload: Any = None,
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
    earlier = list(this_round.values_list("reviewer_id", "outcome"))
    if any(reviewer_id == reviewer.pk for reviewer_id, _ in earlier):
        raise NotAllowed(
            f"{reviewer.get_username()} has already decided on proposal #{proposal.pk}."
        )

    edit = _edit(proposal, edited_payload) if edited_payload is not None else None
    if edit is None and outcome == DecisionOutcome.APPROVE:
        blocked = guardrail_blocks(proposal=proposal)
        if blocked:
            raise DomainError(
                "A guardrail set since the proposal was made refuses it: " + " ".join(blocked)
            )
    proposed_payload = proposal.payload
    with acting_as(actor):
        if edit is not None:
            # Earlier approvals were of the action as it stood; the edited one starts afresh.
            if earlier:
                edit["review_round"] = proposal.review_round + 1
                earlier = []
            for field_name, value in edit.items():
                setattr(proposal, field_name, value)
            proposal._change_reason = f"edited by {reviewer.get_username()} before approval"
            proposal.save()
        decision = Decision.objects.create(
            proposal=proposal,
            review_round=proposal.review_round,
            reviewer=reviewer,
            outcome=outcome,
            reason_code=reason_code,
            note=note,
            edited_payload=proposal.payload if edit is not None else None,
        )
    feedback_record_decision(decision=decision, actor=actor, proposed_payload=proposed_payload)
    if to_status == ProposalStatus.APPROVED:
        approvals = 1 + sum(given == DecisionOutcome.APPROVE for _, given in earlier)
        if approvals < proposal.required_approvals:
            return proposal  # waiting for more reviewers
        reason = f"approved by {reviewer.get_username()}"
    else:
        reason = f"rejected by {reviewer.get_username()}: {RejectionReason(reason_code).label}"
    return proposal_transition(
        proposal_id=proposal_id, to_status=to_status, actor=actor, reason=reason
    )


@transaction.atomic
def proposal_approve(
    *,
    proposal_id: int,
    reviewer: AbstractBaseUser,
    note: str = "",
    edited_payload: Any = None,
) -> Proposal:
    """Record an approval, of the action as proposed or as the reviewer edited it; the
    proposal is approved once it has as many approvals as its policy asks."""
    return _decision_record(
        proposal_id=proposal_id,
        reviewer=reviewer,
        outcome=DecisionOutcome.APPROVE,
        note=note,
        edited_payload=edited_payload,
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


def proposals_decide_in_bulk(
    *, proposal_ids: list[int], decide: Callable[[int], Proposal]
) -> tuple[int, list[str]]:
    """Decide many proposals, each in its own short transaction: one refused (decided
    meanwhile, say) is reported and the rest go through, and no lock is held longer than its
    own decision. Returns how many were decided and why the others were refused."""
    done, refused = 0, []
    for proposal_id in sorted(proposal_ids):
        try:
            decide(proposal_id)
        except DomainError as error:
            refused.append(error.message)
        else:
            done += 1
    return done, refused
