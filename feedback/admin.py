from django.contrib import admin

from approvals.admin import ReadOnlyAdmin
from feedback.models import Feedback, Outcome


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdmin):
    list_display = ["id", "proposal", "agent", "kind", "reason_code", "created_at"]
    list_filter = ["kind", "reason_code", "agent"]
    list_select_related = ["proposal", "agent"]
    raw_id_fields = ["proposal", "decision", "outcome"]


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyAdmin):
    list_display = ["id", "proposal", "effect", "reported_by_kind", "reported_by", "created_at"]
    list_filter = ["effect", "reported_by_kind"]
    list_select_related = ["proposal"]
    raw_id_fields = ["proposal"]
