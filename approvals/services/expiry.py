"""Proposals that waited longer than their policy allows expire and never execute."""

from django.db import transaction
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from approvals.services.lifecycle import proposal_lock, proposal_transition
from audit.actors import Actor
from feedback.services import feedback_record_expiry

SWEEP_BATCH = 500


def proposals_expire_overdue() -> int:
    """Expire every proposal whose review window has closed. Returns how many expired."""
    actor = Actor.system("expiry")
    expired = 0
    while True:
        now = timezone.now()
        overdue = list(
            Proposal.objects.filter(
                status=ProposalStatus.PENDING_REVIEW, review_expires_at__lte=now
            ).values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        for proposal_id in overdue:
            with transaction.atomic():
                proposal = proposal_lock(proposal_id)
                if (
                    proposal.status != ProposalStatus.PENDING_REVIEW
                    or proposal.review_expires_at > now
                ):
                    continue  # decided, or re-opened, since we looked
                proposal = proposal_transition(
                    proposal_id=proposal_id,
                    to_status=ProposalStatus.EXPIRED,
                    actor=actor,
                    reason="the review window closed without a decision",
                )
                feedback_record_expiry(proposal=proposal, actor=actor)
                expired += 1
        if len(overdue) < SWEEP_BATCH:
            return expired
