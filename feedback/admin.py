from django.contrib import admin

from approvals.admin import ReadOnlyAdmin
from feedback.models import Feedback


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdmin):
    list_display = ["id", "proposal", "agent", "kind", "reason_code", "created_at"]
    list_filter = ["kind", "reason_code", "agent"]
    list_select_related = ["proposal", "agent"]
    raw_id_fields = ["proposal", "decision"]
