from django.db import models


class BaselineRow(models.Model):
    """The baseline's one row per request: what a bare Django endpoint costs."""

    body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return str(self.pk)
