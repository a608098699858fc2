"""Nothing lost: proposals whose task never arrived are sent again.

A task can be lost between a commit and the broker (the broker was unreachable, the process
died in between). Every task is idempotent, so sending one again is always safe.
"""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus

SWEEP_BATCH = 1000


def proposals_requeue_stalled(*, stalled_after: timedelta | None = None) -> dict[str, int]:
    """Resend execution for long-approved proposals and those left executing by the webhook
    executor; and evaluation for any left submitted (by a release that evaluated after the
    answer: proposals are now routed in the request that submits them)."""
    from approvals.tasks import evaluate_proposal, execute_proposal

    cutoff = timezone.now() - (
        stalled_after if stalled_after is not None else settings.PROPOSAL_STALL_AFTER
    )
    sent = {}
    for status, task in [
        (ProposalStatus.SUBMITTED, evaluate_proposal),
        (ProposalStatus.APPROVED, execute_proposal),
        # Only the webhook executor leaves a proposal executing between transactions: one
        # still executing this long was being sent when its worker died. Sending it again
        # with the same idempotency key is safe.
        (ProposalStatus.EXECUTING, execute_proposal),
    ]:
        stalled = list(
            Proposal.objects.filter(status=status, updated_at__lt=cutoff)
            .order_by("updated_at")
            .values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        for proposal_id in stalled:
            task.delay(proposal_id)
        sent[status.value] = len(stalled)
    return sent
