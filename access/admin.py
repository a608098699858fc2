from django.contrib import admin

from access.models import SecondFactorRequirement
from audit.admin import AuditedHistoryAdmin


@admin.register(SecondFactorRequirement)
class SecondFactorRequirementAdmin(AuditedHistoryAdmin):
    """Which groups must use a second factor: an administrator's to set (no role group has
    any permission on this app)."""

    list_display = ["group", "created_at"]
    fields = ["group"]
