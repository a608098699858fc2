"""Nothing lost: proposals whose task never arrived are sent again.

A task can be lost between a commit and the broker (the broker was unreachable, the process
died in between). Every task is idempotent, so sending one again is always safe.
"""

from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from executors.models import ExecutionRound

SWEEP_BATCH = 1000


def proposals_requeue_stalled(*, stalled_after: timedelta | None = None) -> dict[str, int]:
    """Resend execution for long-approved proposals and those a channel executor left
    executing with no attempt under way or due; and evaluation for any left submitted (by a
    release that evaluated after the answer: proposals are now routed in the request that
    submits them)."""
    from approvals.tasks import evaluate_proposal, execute_proposal

    now = timezone.now()
    cutoff = now - (stalled_after if stalled_after is not None else settings.PROPOSAL_STALL_AFTER)
    # Only a channel executor leaves a proposal executing between transactions. Its round's
    # lease says an attempt is under way, or when the next is due (a task already waits for
    # it); once the lease has run out, the worker sending it died, or the task was lost.
    # Sending it again, with the round's request and key, is safe.
    attempt_pending = Exists(
        ExecutionRound.objects.filter(proposal=OuterRef("pk"), lease_until__gt=now)
    )
    sent = {}
    for status, task, stalled in [
        (ProposalStatus.SUBMITTED, evaluate_proposal, Proposal.objects.all()),
        (ProposalStatus.APPROVED, execute_proposal, Proposal.objects.all()),
        (ProposalStatus.EXECUTING, execute_proposal, Proposal.objects.exclude(attempt_pending)),
    ]:
        ids = list(
            stalled.filter(status=status, updated_at__lt=cutoff)
            .order_by("updated_at")
            .values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        for proposal_id in ids:
            task.delay(proposal_id)
        sent[status.value] = len(ids)
    return sent
