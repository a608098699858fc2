from django.db import models
from simple_history.models import HistoricalRecords


class BaselineRow(models.Model):
    """The baseline's one row per request: what a bare Django endpoint costs."""

    body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return str(self.pk)


class TrackedRow(models.Model):
    """The plain DRF baseline's row: a proposal's fields, its history kept by stock
    django-simple-history."""

    action_type = models.CharField(max_length=32)
    account = models.CharField(max_length=100)
    payload = models.JSONField()
    rationale = models.TextField()
    supporting_data = models.JSONField(default=dict, blank=True)
    confidence = models.FloatField()
    external_ref = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, default="submitted")
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    def __str__(self) -> str:
        return str(self.pk)
