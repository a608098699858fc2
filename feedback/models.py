from django.db import models
from django.utils import timezone

from audit.models import audited_history


class FeedbackKind(models.TextChoices):
    APPROVED = "approved", "Approved as is"
    APPROVED_WITH_EDITS = "approved_with_edits", "Approved with edits"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired unreviewed"


class Feedback(models.Model):
    """What a human's decision (or its absence) tells the agent about one proposal."""

    agent = models.ForeignKey("approvals.Agent", on_delete=models.PROTECT, related_name="feedback")
    proposal = models.ForeignKey(
        "approvals.Proposal", on_delete=models.PROTECT, related_name="feedback"
    )
    decision = models.OneToOneField(
        "approvals.Decision",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="feedback",
    )
    kind = models.CharField(max_length=24, choices=FeedbackKind.choices)
    reason_code = models.CharField(max_length=32, blank=True)
    note = models.TextField(blank=True)
    diff = models.JSONField(
        default=dict, blank=True, help_text="Field by field, what the reviewer changed."
    )
    created_at = models.DateTimeField(default=timezone.now)

    history = audited_history()

    class Meta:
        verbose_name_plural = "feedback"
        ordering = ["-id"]
        indexes = [models.Index(fields=["agent", "id"], name="feedback_agent_cursor_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on #{self.proposal_id}"
