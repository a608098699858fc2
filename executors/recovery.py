"""The stall sweep's executions (``approvals.services.recovery``, which calls this module's
sweep as the executors app registered it): approved proposals whose execution never arrived,
and those a channel executor left executing, are sent again. Every execution is idempotent,
so sending one again is always safe."""

from datetime import datetime

from django.db.models import Exists, OuterRef

from approvals.models import Proposal, ProposalStatus
from approvals.services.recovery import stalled_ids
from executors.models import ExecutionRound
from hitlproject.queueing import send_each

# One proposal's execution (``executors.tasks``, which imports this module), sent by its name.
EXECUTE_PROPOSAL = "approvals.execute_proposal"


def executions_requeue_stalled(*, cutoff: datetime, now: datetime) -> dict[str, int]:
    """Resend execution for proposals approved and untouched since ``cutoff``, and for those
    a channel executor left executing since, with no attempt under way or due. How many were
    sent, by status."""
    # Only a channel executor leaves a proposal executing between transactions. Its round's
    # lease says an attempt is under way, or when the next is due (a task already waits for
    # it); once the lease has run out, the worker sending it died, or the task was lost.
    # Sending it again, with the round's request and key, is safe.
    attempt_pending = Exists(
        ExecutionRound.objects.filter(proposal=OuterRef("pk"), lease_until__gt=now)
    )
    sent = {}
    for status, stalled in [
        (ProposalStatus.APPROVED, Proposal.objects.all()),
        (ProposalStatus.EXECUTING, Proposal.objects.exclude(attempt_pending)),
    ]:
        ids = stalled_ids(stalled, status=status, cutoff=cutoff)
        send_each(EXECUTE_PROPOSAL, ids)
        sent[status.value] = len(ids)
    return sent
