"""The execution tasks: thin, named, idempotent (as every task: ``approvals.tasks``).

Approvals sends them by name once a move to approved commits (``approvals.services.lifecycle``),
and the stall sweep sends them again (``executors.recovery``). Their names are the ones they had
when approvals ran them, which the task routes (``hitlproject.celery``) name too: a message
queued before an upgrade still finds its task after it.
"""

from celery import shared_task
from django.conf import settings

from approvals.models import Proposal, ProposalStatus
from approvals.services.lifecycle import EXECUTE_PROPOSALS, EXECUTION_CHUNK
from executors.recovery import EXECUTE_PROPOSAL
from executors.runner import SEND_EXECUTION_REQUEST, proposal_execute, proposals_execute
from hitlproject.queueing import TRANSIENT
from hitlproject.queueing import send_each as _send_each


@shared_task(name=EXECUTE_PROPOSAL, **TRANSIENT)
def execute_proposal(proposal_id: int) -> None:
    """One approved proposal's execution (as the stall sweep sends it): ``execute_proposals``."""
    _execute([proposal_id])


@shared_task(name=EXECUTE_PROPOSALS, **TRANSIENT)
def execute_proposals(proposal_ids: list[int]) -> None:
    """Carry out approved proposals in the ledger; those for a channel executor are handed
    to the webhook queue's workers, so no channel, however slow, holds up anybody else's."""
    _execute(proposal_ids)


def _execute(proposal_ids: list[int]) -> None:
    executions = proposals_execute(
        proposal_ids=proposal_ids,
        joining=_waiting_to_execute(proposal_ids),
        alone_for=settings.EXECUTION_ALONE_SECONDS,
    )
    if executions.for_channel:
        _send_each(send_execution_request, executions.for_channel)
    if executions.left:
        # Behind the messages sent meanwhile: other agents' executions take their turn.
        _send_each(EXECUTE_PROPOSALS, [executions.left])


@shared_task(name=SEND_EXECUTION_REQUEST, **TRANSIENT)
def send_execution_request(proposal_id: int) -> None:
    proposal_execute(proposal_id=proposal_id)


def _waiting_to_execute(proposal_ids: list[int]) -> list[int]:
    """Other approved proposals, oldest first, to be carried out with these: under load,
    each single submission's execution task would otherwise do alone what one transaction
    does for many (their own tasks then find them executed). At most
    ``EXECUTION_TAKES_ALONG``, and no more than fill a message's worth."""
    room = min(settings.EXECUTION_TAKES_ALONG, EXECUTION_CHUNK - len(proposal_ids))
    if room <= 0:
        return []
    waiting = Proposal.objects.filter(status=ProposalStatus.APPROVED).exclude(pk__in=proposal_ids)
    return list(waiting.order_by("pk").values_list("pk", flat=True)[:room])
