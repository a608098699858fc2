"""Carrying out approved proposals with the built-in ledger executor, exactly once.

The ledger effect, the execution record and the status change commit in one transaction,
under locks on the proposal and then its campaigns (always in that order, campaigns by id), so
a redelivered task finds the proposal executed and does nothing.
"""

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import OperationalError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from approvals import action_types
from approvals.models import Execution, ExecutionStatus, Proposal, ProposalStatus
from approvals.services.lifecycle import proposal_lock, proposal_transition
from approvals.services.proposals import (
    assessed_from_ledger,
    campaigns_for,
    guardrail_blocks,
    ledger_snapshot,
    refreshed_facts,
    verdict_for,
)
from approvals.validation import validation_text
from audit.actors import Actor, acting_as
from hitlproject.errors import NotFound

logger = logging.getLogger(__name__)

LEDGER_EXECUTOR = "ledger"


class GuardrailRefusal(Exception):
    """A guardrail set since the approval (a cap, a lock) refuses the action."""

    def __init__(self, reasons: tuple[str, ...]) -> None:
        super().__init__("A guardrail set since the approval refuses it: " + " ".join(reasons))


def _moved_fields(expected: dict, current: dict) -> list[str]:
    return [
        f"{campaign}'s {field} is {current[campaign][field]}, was {value}"
        for campaign, fields in expected.items()
        for field, value in fields.items()
        if current.get(campaign, {}).get(field) != value
    ]


def _reassessment(proposal: Proposal, action_type, campaigns, reason: str) -> dict:
    """The proposal's facts and verdict against the ledger as it is now, so that the operator
    decides on today's figures and a re-approval executes against them."""
    snapshot = ledger_snapshot(
        action_type=action_type, payload=proposal.payload, campaigns=campaigns
    )
    try:
        action_type.check(proposal.payload, campaigns)
    except ValidationError as error:
        return {
            "target_snapshot": snapshot,
            "verdict_reasons": [
                reason,
                f"It can no longer be applied as proposed: {validation_text(error)}",
            ],
        }
    assessed = assessed_from_ledger(
        action_type=action_type,
        account=proposal.account,
        payload=proposal.payload,
        campaigns=campaigns,
    )
    verdict, _ = verdict_for(assessed=assessed, agent=proposal.agent, proposal_id=proposal.pk)
    return refreshed_facts(proposal, assessed, verdict, reason)


def _record_failure(
    proposal: Proposal, attempt: int, before: dict, started_at, error: str
) -> Proposal:
    Execution.objects.create(
        proposal=proposal,
        attempt=attempt,
        executor=LEDGER_EXECUTOR,
        status=ExecutionStatus.FAILED,
        before_state=before,
        error=error,
        started_at=started_at,
        finished_at=timezone.now(),
    )
    return proposal_transition(
        proposal_id=proposal.pk,
        to_status=ProposalStatus.FAILED,
        actor=Actor.system("executor"),
        reason=f"execution failed: {error}",
    )


def proposal_execute(*, proposal_id: int) -> Proposal:
    actor = Actor.system("executor")
    with transaction.atomic(), acting_as(actor):
        proposal = proposal_lock(proposal_id)
        if proposal.status != ProposalStatus.APPROVED:
            return proposal  # executed already, or no longer approved: nothing to do
        action_type = action_types.get(proposal.action_type)
        campaigns = campaigns_for(
            account=proposal.account, action_type=action_type, payload=proposal.payload, lock=True
        )
        before = ledger_snapshot(
            action_type=action_type, payload=proposal.payload, campaigns=campaigns
        )
        moved = _moved_fields(proposal.target_snapshot, before)
        if moved:
            reason = "Sent back for review before executing: " + "; ".join(moved) + "."
            return proposal_transition(
                proposal_id=proposal_id,
                to_status=ProposalStatus.PENDING_REVIEW,
                actor=actor,
                reason=reason,
                changes=_reassessment(proposal, action_type, campaigns, reason),
            )

        proposal_transition(
            proposal_id=proposal_id, to_status=ProposalStatus.EXECUTING, actor=actor
        )
        started_at = timezone.now()
        attempt = proposal.executions.count() + 1
        try:
            with transaction.atomic():
                blocked = guardrail_blocks(proposal=proposal, campaigns=campaigns)
                if blocked:
                    raise GuardrailRefusal(blocked)
                action_type.check(proposal.payload, campaigns)
                action_type.apply(proposal.payload, campaigns, proposal)
        except OperationalError:
            raise  # transient (lock timeout, lost connection): the task retries
        except GuardrailRefusal as refusal:
            return _record_failure(proposal, attempt, before, started_at, str(refusal))
        except ValidationError as error:
            return _record_failure(proposal, attempt, before, started_at, validation_text(error))
        except Exception as error:
            logger.exception("Executing proposal %s failed", proposal_id)
            return _record_failure(
                proposal, attempt, before, started_at, f"{type(error).__name__}: {error}"
            )

        Execution.objects.create(
            proposal=proposal,
            attempt=attempt,
            executor=LEDGER_EXECUTOR,
            status=ExecutionStatus.SUCCEEDED,
            before_state=before,
            after_state=ledger_snapshot(
                action_type=action_type, payload=proposal.payload, campaigns=campaigns
            ),
            started_at=started_at,
            finished_at=timezone.now(),
        )
        return proposal_transition(
            proposal_id=proposal_id, to_status=ProposalStatus.EXECUTED, actor=actor
        )


def proposal_retry(*, proposal_id: int, reviewer: AbstractBaseUser) -> Proposal:
    """An operator sends a failed proposal back to execution."""
    from approvals.services.decisions import check_may_decide

    proposal = Proposal.objects.filter(pk=proposal_id).first()
    if proposal is None:
        raise NotFound(f"There is no proposal #{proposal_id}.")
    check_may_decide(reviewer, proposal)  # retrying is deciding again that it should run
    return proposal_transition(
        proposal_id=proposal_id,
        to_status=ProposalStatus.APPROVED,
        actor=Actor.for_user(reviewer),
        reason=f"execution retried by {reviewer.get_username()}",
    )
