from django.contrib.auth.models import Group
from django.db import models

from audit.models import audited_history


class SecondFactorRequirement(models.Model):
    """Everyone in this group must confirm a code from an authenticator app (TOTP) after
    their password before they may use the console. A group with no row logs in with a
    password alone."""

    group = models.OneToOneField(
        Group, on_delete=models.CASCADE, related_name="second_factor_requirement"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = audited_history()

    class Meta:
        ordering = ["group__name"]
        verbose_name = "second factor requirement"

    def __str__(self) -> str:
        return f"{self.group.name} must use a second factor"
