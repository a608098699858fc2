from django.contrib import admin, messages

from approvals.admin import ReadOnlyAdmin
from approvals.services.decisions import DECIDE_PERMISSION
from feedback.callbacks import callback_events_redeliver
from feedback.models import CallbackEvent, Feedback, Outcome


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


@admin.register(CallbackEvent)
class CallbackEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "proposal", "agent", "status", "attempts", "created_at"]
    list_filter = ["status", "type", "agent"]
    list_select_related = ["proposal", "agent"]
    raw_id_fields = ["proposal"]
    actions = ["deliver_again"]

    @admin.action(description="Deliver again (events given up on)", permissions=["redeliver"])
    def deliver_again(self, request, queryset):
        sent = callback_events_redeliver(events=queryset)
        messages.success(request, f"Sending {sent} event(s) again.")

    def has_redeliver_permission(self, request) -> bool:
        return request.user.has_perm(DECIDE_PERMISSION)  # operators keep the loop running
