from django import forms
from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from approvals import action_types
from policies.models import Policy


class PolicyForm(forms.ModelForm):
    action_type = forms.ChoiceField(choices=lambda: [(name, name) for name in action_types.names()])

    class Meta:
        model = Policy
        fields = [
            "name",
            "action_type",
            "account",
            "is_active",
            "auto_execute_max_magnitude",
            "always_review",
            "required_approvals",
            "review_window",
            "description",
        ]


@admin.register(Policy)
class PolicyAdmin(SimpleHistoryAdmin):
    form = PolicyForm
    list_display = [
        "name",
        "action_type",
        "account",
        "is_active",
        "auto_execute_max_magnitude",
        "always_review",
        "required_approvals",
        "review_window",
    ]
    list_filter = ["action_type", "is_active", "account"]
    list_select_related = ["account"]
    history_list_display = ["history_actor_kind", "history_actor"]
