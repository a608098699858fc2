from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from simple_history.admin import SimpleHistoryAdmin


class AuditedHistoryAdmin(SimpleHistoryAdmin):
    """History that is read, never rewritten.

    django-simple-history's version page saves a POST from anyone who may view history; here
    a past version is shown, read-only, and never restored: every change goes through the
    platform's services or a change form, and is recorded with its actor.
    """

    history_list_display = ["history_actor_kind", "history_actor"]

    def revert_disabled(self, request, obj=None) -> bool:
        return True

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method == "POST":
            raise PermissionDenied("History is read-only.")
        return super().history_form_view(request, object_id, version_id, extra_context)

    def get_readonly_fields(self, request, obj=None):
        if request.resolver_match and request.resolver_match.url_name.endswith("_simple_history"):
            if self.fieldsets:
                return flatten_fieldsets(self.fieldsets)
            hidden = set(self.exclude or ())  # secrets (a key's digest) stay hidden in history
            return [field.name for field in self.model._meta.fields if field.name not in hidden]
        return super().get_readonly_fields(request, obj)
