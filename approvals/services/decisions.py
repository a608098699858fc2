"""People's decisions on proposals waiting for review: approve (as proposed or edited) or
reject, one at a time or many at once, by the same rules. Operators decide on actions; policy
owners on the platform's proposed changes to policy."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from rest_framework.exceptions import ValidationError

from approvals import action_types
from approvals.models import (
    Agent,
    Decision,
    DecisionOutcome,
    Proposal,
    ProposalStatus,
    RejectionReason,
    VerdictOutcome,
)
from approvals.services.lifecycle import InvalidTransition, proposals_transition
from approvals.services.proposals import (
    action_assess,
    guardrail_blocks_each,
    refreshed_facts,
    verdict_for,
)
from approvals.validation import validation_text
from audit.actors import Actor, acting_as
from audit.history import create_with_history
from feedback.services import feedback_record_decisions
from hitlproject.errors import DomainError, NotAllowed, NotFound

DECIDE_PERMISSION = "approvals.decide_proposal"


def may_decide(user: AbstractBaseUser, proposal: Proposal) -> bool:
    """Whether the user holds the permission deciding this proposal asks for (operators decide
    on actions; policy owners on changes to policy)."""
    return user.has_perm(action_types.get(proposal.action_type).decide_permission)


def check_operator(user: AbstractBaseUser) -> None:
    """Operators' other acts on proposals: withdraw one for its agent, report an outcome."""
    if not user.has_perm(DECIDE_PERMISSION):
        raise NotAllowed(f"{user.get_username()} may not decide on proposals.")


def check_may_decide(user: AbstractBaseUser, proposal: Proposal) -> None:
    if not may_decide(user, proposal):
        label = action_types.get(proposal.action_type).label
        raise NotAllowed(f"{user.get_username()} may not decide on {label} proposals.")


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
    editable = action_types.get(proposal.action_type).editable_fields
    if editable is not None:
        fixed = sorted(
            name
            for name in assessed.payload.keys() | proposal.payload.keys()
            if name not in editable and assessed.payload.get(name) != proposal.payload.get(name)
        )
        if fixed:
            raise DomainError(
                f"Only {', '.join(sorted(editable))} may be edited here, not {', '.join(fixed)}."
            )
    verdict, _ = verdict_for(assessed=assessed, agent=proposal.agent, proposal_id=proposal.pk)
    if verdict.outcome == VerdictOutcome.BLOCK:
        raise DomainError("The edited action would be blocked: " + " ".join(verdict.reasons))
    note = f"Edited before approval to: {assessed.assessment.summary}."
    return {"payload": assessed.payload, **refreshed_facts(proposal, assessed, verdict, note)}


@dataclass
class Decided:
    """What a set of decisions did: the proposals decided, and why the others were refused."""

    proposals: list[Proposal] = field(default_factory=list)
    refused: list[DomainError] = field(default_factory=list)

    def __iadd__(self, other: Decided) -> Decided:
        self.proposals += other.proposals
        self.refused += other.refused
        return self

    def only(self) -> Proposal:
        """The one proposal decided, or the reason it was refused, raised."""
        if self.refused:
            raise self.refused[0]
        return self.proposals[0]


def _check_may_decide_now(
    proposal: Proposal, reviewer: AbstractBaseUser, to_status: str, earlier: list[tuple[int, str]]
) -> None:
    """Refuse a decision the rules forbid: by someone without the permission its action type
    asks for, by the owner of the agent that proposed it or that it concerns, on a proposal no
    longer waiting, or a second one by the same reviewer in a round."""
    check_may_decide(reviewer, proposal)
    if proposal.agent.owner_id == reviewer.pk:
        raise NotAllowed(
            f"{reviewer.get_username()} owns agent {proposal.agent}, which proposed "
            f"proposal #{proposal.pk}; someone else must decide."
        )
    concerned = action_types.get(proposal.action_type).agents_concerned(proposal.payload)
    owned = concerned and Agent.objects.filter(name__in=concerned, owner=reviewer).first()
    if owned:
        raise NotAllowed(
            f"{reviewer.get_username()} owns agent {owned}, which proposal #{proposal.pk} "
            "concerns; someone else must decide."
        )
    if proposal.status != ProposalStatus.PENDING_REVIEW:
        raise InvalidTransition(proposal, to_status)
    if any(reviewer_id == reviewer.pk for reviewer_id, _ in earlier):
        raise NotAllowed(
            f"{reviewer.get_username()} has already decided on proposal #{proposal.pk}."
        )


def _decisions_record(
    *,
    proposal_ids: Collection[int],
    reviewer: AbstractBaseUser,
    outcome: str,
    reason_code: str = "",
    note: str = "",
    edits: Mapping[int, Any] | None = None,
) -> Decided:
    """Check the reviewer may decide each proposal, record the decisions and their feedback,
    and move on the proposals that now have the approvals their policy asks for, rows
    written together. ``edits`` holds reviewers' edited payloads by proposal id.

    Runs inside the caller's transaction and locks the proposals until it ends, in id order
    (so two sets of decisions never deadlock). A proposal that may not be decided is refused
    and left untouched; the others go through."""
    edits = edits or {}
    actor = Actor.for_user(reviewer)
    to_status = (
        ProposalStatus.APPROVED if outcome == DecisionOutcome.APPROVE else ProposalStatus.REJECTED
    )
    locked = {
        proposal.pk: proposal
        for proposal in Proposal.objects.select_related("agent", "account")
        .select_for_update(of=("self",))
        .filter(pk__in=proposal_ids)
        .order_by("pk")
    }
    decided = Decided(
        refused=[
            NotFound(f"There is no proposal #{proposal_id}.")
            for proposal_id in sorted(set(proposal_ids) - locked.keys())
        ]
    )
    # Who has decided each proposal in its current round; approvals count per round.
    earlier: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for proposal_id, review_round, reviewer_id, given in Decision.objects.filter(
        proposal_id__in=locked
    ).values_list("proposal_id", "review_round", "reviewer_id", "outcome"):
        if review_round == locked[proposal_id].review_round:
            earlier[proposal_id].append((reviewer_id, given))

    deciding, changes = [], {}
    for proposal in locked.values():
        try:
            _check_may_decide_now(proposal, reviewer, to_status, earlier[proposal.pk])
            if proposal.pk in edits:
                edit = _edit(proposal, edits[proposal.pk])
                if edit is not None:
                    changes[proposal.pk] = edit
        except DomainError as error:
            decided.refused.append(error)
        else:
            deciding.append(proposal)
    if outcome == DecisionOutcome.APPROVE:
        blocks = guardrail_blocks_each(p for p in deciding if p.pk not in changes)
        decided.refused += [
            DomainError(
                f"A guardrail set since proposal #{proposal_id} was made refuses it: "
                + " ".join(reasons)
            )
            for proposal_id, reasons in blocks.items()
            if reasons
        ]
        deciding = [proposal for proposal in deciding if not blocks.get(proposal.pk)]

    proposed_payloads = {proposal.pk: proposal.payload for proposal in deciding}
    with acting_as(actor):
        for proposal in deciding:
            if proposal.pk in changes:
                # Earlier approvals were of the action as it stood; the edited one starts afresh.
                if earlier.pop(proposal.pk, None):
                    proposal.review_round += 1
                for field_name, value in changes[proposal.pk].items():
                    setattr(proposal, field_name, value)
                proposal._change_reason = f"edited by {reviewer.get_username()} before approval"
                proposal.save()
    decisions = create_with_history(
        Decision,
        [
            Decision(
                proposal=proposal,
                review_round=proposal.review_round,
                reviewer=reviewer,
                outcome=outcome,
                reason_code=reason_code,
                note=note,
                edited_payload=proposal.payload if proposal.pk in changes else None,
            )
            for proposal in deciding
        ],
        actor=actor,
    )

    if outcome == DecisionOutcome.APPROVE:
        reason = f"approved by {reviewer.get_username()}"
        complete = [
            proposal
            for proposal in deciding
            if 1 + sum(given == DecisionOutcome.APPROVE for _, given in earlier[proposal.pk])
            >= proposal.required_approvals
        ]  # the others wait for more reviewers
    else:
        reason = f"rejected by {reviewer.get_username()}: {RejectionReason(reason_code).label}"
        complete = deciding
    proposals_transition(proposals=complete, to_status=to_status, actor=actor, reason=reason)
    # Last, as it makes other feedback writers wait until this transaction ends.
    feedback_record_decisions(decisions=decisions, actor=actor, proposed_payloads=proposed_payloads)
    decided.proposals = deciding
    return decided


def _check_reason(reason_code: str) -> None:
    if reason_code not in RejectionReason.values:
        raise DomainError(f"Choose a rejection reason: {', '.join(RejectionReason.values)}.")


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
    return _decisions_record(
        proposal_ids=[proposal_id],
        reviewer=reviewer,
        outcome=DecisionOutcome.APPROVE,
        note=note,
        edits={} if edited_payload is None else {proposal_id: edited_payload},
    ).only()


@transaction.atomic
def proposal_reject(
    *, proposal_id: int, reviewer: AbstractBaseUser, reason_code: str, note: str = ""
) -> Proposal:
    _check_reason(reason_code)
    return _decisions_record(
        proposal_ids=[proposal_id],
        reviewer=reviewer,
        outcome=DecisionOutcome.REJECT,
        reason_code=reason_code,
        note=note,
    ).only()


# Proposals decided per transaction in bulk: few enough that no row stays locked for long.
BULK_BATCH = 200


def _in_batches(proposal_ids: Collection[int], decide: Callable[[list[int]], Decided]) -> Decided:
    ids = sorted(set(proposal_ids))
    decided = Decided()
    for start in range(0, len(ids), BULK_BATCH):
        with transaction.atomic():
            decided += decide(ids[start : start + BULK_BATCH])
    return decided


def proposals_approve(
    *, proposal_ids: Collection[int], reviewer: AbstractBaseUser, note: str = ""
) -> Decided:
    """Approve many proposals, by the same rules as one at a time, in batches of
    ``BULK_BATCH`` to a transaction: a proposal that may not be approved (decided meanwhile,
    say) is refused and reported, and the rest go through."""
    return _in_batches(
        proposal_ids,
        lambda batch: _decisions_record(
            proposal_ids=batch, reviewer=reviewer, outcome=DecisionOutcome.APPROVE, note=note
        ),
    )


def proposals_reject(
    *, proposal_ids: Collection[int], reviewer: AbstractBaseUser, reason_code: str, note: str = ""
) -> Decided:
    """Reject many proposals, as ``proposals_approve`` approves them."""
    _check_reason(reason_code)
    return _in_batches(
        proposal_ids,
        lambda batch: _decisions_record(
            proposal_ids=batch,
            reviewer=reviewer,
            outcome=DecisionOutcome.REJECT,
            reason_code=reason_code,
            note=note,
        ),
    )
