"""Nothing lost: proposals whose task never arrived are sent again.

A task can be lost between a commit and the broker (the broker was unreachable, the process
died in between). Every task is idempotent, so sending one again is always safe.

This module sends evaluations again; executions are the executors app's, which registers
its part of the sweep in its ``ready()`` (``on_stall_sweep``), so approvals never imports it.
"""

from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from hitlproject.queueing import send_each

SWEEP_BATCH = 1000
# The task that evaluates a proposal left submitted (``approvals.tasks``, which imports this
# module), sent by its name.
EVALUATE_PROPOSAL = "approvals.evaluate_proposal"

# Called with cutoff= (a proposal untouched since is stalled) and now=; returns how many
# proposals it sent again, by status.
StallSweeper = Callable[..., dict[str, int]]
_sweepers: list[StallSweeper] = []


def on_stall_sweep(sweeper: StallSweeper) -> None:
    """Have ``sweeper`` called by each sweep, after the evaluations are sent again."""
    if sweeper not in _sweepers:
        _sweepers.append(sweeper)


def stalled_ids(proposals, *, status: str, cutoff: datetime) -> list[int]:
    """The ids of ``proposals`` in ``status`` untouched since ``cutoff``, longest first, at
    most ``SWEEP_BATCH`` of them."""
    return list(
        proposals.filter(status=status, updated_at__lt=cutoff)
        .order_by("updated_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )


def proposals_requeue_stalled(*, stalled_after: timedelta | None = None) -> dict[str, int]:
    """Resend evaluation for any proposal left submitted (by a release that evaluated after
    the answer: proposals are now routed in the request that submits them), and, by the
    sweepers registered, execution for long-approved proposals and those a channel executor
    left executing with no attempt under way or due. How many were sent, by status."""
    now = timezone.now()
    cutoff = now - (stalled_after if stalled_after is not None else settings.PROPOSAL_STALL_AFTER)
    ids = stalled_ids(Proposal.objects.all(), status=ProposalStatus.SUBMITTED, cutoff=cutoff)
    send_each(EVALUATE_PROPOSAL, ids)
    sent = {ProposalStatus.SUBMITTED.value: len(ids)}
    for sweeper in _sweepers:
        sent.update(sweeper(cutoff=cutoff, now=now))
    return sent
