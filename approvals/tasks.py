"""Celery tasks: thin, named, idempotent. An id in, a service call.

They are acknowledged late and rejected when a worker dies, so a crash redelivers them; the
services they call re-read state under a lock and do nothing when the work is already done.

Executions are the executors app's tasks (``executors.tasks``); approvals sends them by name
(``approvals.services.lifecycle.EXECUTE_PROPOSALS``), so it never imports that app. The
services send this module's tasks by name too (``EVALUATE_PROPOSAL``): this module imports
them.
"""

from celery import shared_task

from approvals.services.expiry import proposals_expire_overdue
from approvals.services.idempotency import idempotency_records_purge
from approvals.services.proposals import proposal_evaluate
from approvals.services.recovery import EVALUATE_PROPOSAL, proposals_requeue_stalled
from approvals.services.supersession import SUPERSEDE_SKIPPED, proposals_supersede_skipped
from hitlproject.queueing import TRANSIENT


# Proposals are evaluated as they are submitted; these evaluate one that an earlier release
# left submitted (sent by the stall sweep, or still queued from before an upgrade).
@shared_task(name=EVALUATE_PROPOSAL, **TRANSIENT)
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


@shared_task(name=SUPERSEDE_SKIPPED, **TRANSIENT)
def supersede_skipped_after_changes(
    account_id: int, changes: list, process: str, proposal_ids: list[int]
) -> None:
    proposals_supersede_skipped(
        account_id=account_id, changes=changes, process=process, proposal_ids=proposal_ids
    )
