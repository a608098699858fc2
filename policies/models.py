from datetime import timedelta

from django.core.validators import MinValueValidator
from django.db import models

from audit.models import audited_history


class Policy(models.Model):
    """Where the line runs for one action type: what may run at once, what waits for a human.

    A policy matches by action type and, optionally, an account; the more specific match wins.
    A proposal no policy matches goes to a human (fail safe).
    """

    name = models.CharField(max_length=200)
    action_type = models.CharField(max_length=32)
    account = models.ForeignKey(
        "ledger.Account",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="policies",
        help_text="Leave empty for every account.",
    )
    is_active = models.BooleanField(default=True)
    auto_execute_max_magnitude = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text=(
            "Largest magnitude that executes without a human: a fraction for relative changes "
            "(0.10 = 10%), a count for creative batches. Empty: nothing auto-executes."
        ),
    )
    always_review = models.BooleanField(default=False)
    required_approvals = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Distinct approvals needed."
    )
    review_window = models.DurationField(
        default=timedelta(hours=72), help_text="How long a proposal may wait before it expires."
    )
    description = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = audited_history()

    class Meta:
        verbose_name_plural = "policies"
        ordering = ["action_type", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["action_type", "account"],
                condition=models.Q(is_active=True, account__isnull=False),
                name="policy_one_active_per_account",
            ),
            models.UniqueConstraint(
                fields=["action_type"],
                condition=models.Q(is_active=True, account__isnull=True),
                name="policy_one_active_default",
            ),
        ]

    def __str__(self) -> str:
        return self.name
