"""The execution tasks: thin, named, idempotent (as every task: ``approvals.tasks``).

Approvals sends them by name once a move to approved commits (``approvals.tasks``), and the
stall sweep sends them again (``executors.recovery``). Their names are the ones they had
when approvals ran them, which the task routes (``hitlproject.celery``) name too: a message
queued before an upgrade still finds its task after it.
"""

from celery import shared_task

from executors.runner import proposal_execute, proposals_execute
from hitlproject.queueing import TRANSIENT
from hitlproject.queueing import send_each as _send_each


@shared_task(name="approvals.execute_proposal", **TRANSIENT)
def execute_proposal(proposal_id: int) -> None:
    """One approved proposal's execution (as the stall sweep sends it): ``execute_proposals``."""
    _execute([proposal_id])


@shared_task(name="approvals.execute_proposals", **TRANSIENT)
def execute_proposals(proposal_ids: list[int]) -> None:
    """Carry out approved proposals in the ledger; those for a channel executor are handed
    to the webhook queue's workers, so no channel, however slow, holds up anybody else's."""
    _execute(proposal_ids)


def _execute(proposal_ids: list[int]) -> None:
    for_channel = proposals_execute(proposal_ids=proposal_ids).for_channel
    if for_channel:
        _send_each(send_execution_request, for_channel)


@shared_task(name="approvals.send_execution_request", **TRANSIENT)
def send_execution_request(proposal_id: int) -> None:
    proposal_execute(proposal_id=proposal_id)
