"""Celery tasks: thin, named, idempotent. An id in, a service call.

They are acknowledged late and rejected when a worker dies, so a crash redelivers them; the
services they call re-read state under a lock and do nothing when the work is already done.

Executions are the executors app's tasks (``executors.tasks``); approvals sends them by name
(``EXECUTE_PROPOSALS``), so it never imports that app.
"""

from celery import shared_task

from approvals.services.expiry import proposals_expire_overdue
from approvals.services.idempotency import idempotency_records_purge
from approvals.services.proposals import proposal_evaluate
from approvals.services.recovery import proposals_requeue_stalled
from hitlproject.queueing import TRANSIENT, after_commit, chunked
from hitlproject.queueing import send_each as _send_each

# The executors app's task that carries out approved proposals, a list of ids to a message.
EXECUTE_PROPOSALS = "approvals.execute_proposals"
# A batch's executions travel at most this many to a message. Those of a message are carried
# out together, in one transaction, where nothing but doing them is needed: more to a message
# is less work in all, fewer to a message more workers sharing it.
EXECUTION_CHUNK = 100


def enqueue_executions_after_commit(proposal_ids: list[int]) -> None:
    """Send the approved proposals' executions, in messages alike in size, once the
    surrounding transaction commits (a broker out of reach is logged, and the stall sweeper
    sends them again)."""
    after_commit(_send_each, EXECUTE_PROPOSALS, chunked(proposal_ids, EXECUTION_CHUNK))


# Proposals are evaluated as they are submitted; these evaluate one that an earlier release
# left submitted (sent by the stall sweep, or still queued from before an upgrade).
@shared_task(name="approvals.evaluate_proposal", **TRANSIENT)
def evaluate_proposal(proposal_id: int) -> None:
    proposal_evaluate(proposal_id=proposal_id)


@shared_task(name="approvals.evaluate_proposals", **TRANSIENT)
def evaluate_proposals(proposal_ids: list[int]) -> None:
    for proposal_id in proposal_ids:
        proposal_evaluate(proposal_id=proposal_id)


@shared_task(name="approvals.expire_overdue_proposals")
def expire_overdue_proposals() -> int:
    return proposals_expire_overdue()


@shared_task(name="approvals.purge_idempotency_records")
def purge_idempotency_records() -> int:
    return idempotency_records_purge()


@shared_task(name="approvals.requeue_stalled_proposals")
def requeue_stalled_proposals() -> dict[str, int]:
    return proposals_requeue_stalled()
