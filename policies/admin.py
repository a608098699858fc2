from django import forms
from django.contrib import admin

from approvals import action_types
from approvals.models import AgentKind
from audit.admin import AuditedHistoryAdmin
from policies.models import BrandGuidelines, KillSwitch, Policy


class PolicyForm(forms.ModelForm):
    action_type = forms.ChoiceField(choices=lambda: [(name, name) for name in action_types.names()])
    agent_kind = forms.ChoiceField(
        choices=[("", "Any kind"), *AgentKind.choices], required=False, label="Agent kind"
    )

    class Meta:
        model = Policy
        fields = ["action_type", "agent_kind"]  # the admin's fieldsets add the rest


@admin.register(Policy)
class PolicyAdmin(AuditedHistoryAdmin):
    form = PolicyForm
    list_display = [
        "name",
        "action_type",
        "scope",
        "priority",
        "is_active",
        "is_draft",
        "auto_execute_max_magnitude",
        "auto_execute_max_amount",
        "cumulative_max_magnitude",
        "always_review",
    ]
    list_filter = ["action_type", "is_active", "is_draft", "account"]
    list_select_related = ["account", "agent"]
    search_fields = ["name", "description"]
    fieldsets = [
        (None, {"fields": ["name", "action_type", "is_active", "is_draft", "description"]}),
        (
            "Scope: leave empty for everything; the most specific policy wins",
            {"fields": ["agent", "account", "agent_kind", "channel", "priority"]},
        ),
        (
            "What runs without a human",
            {
                "fields": [
                    "auto_execute_max_magnitude",
                    "auto_execute_max_amount",
                    "always_review",
                    "cumulative_max_magnitude",
                    "cumulative_window",
                ]
            },
        ),
        ("What is refused outright", {"fields": ["block_above_magnitude", "block_above_amount"]}),
        (
            "Approvals",
            {
                "fields": [
                    "required_approvals",
                    "more_approvals_above_magnitude",
                    "more_approvals_above_amount",
                    "approvals_above_threshold",
                    "review_window",
                ]
            },
        ),
    ]

    @admin.display(description="scope")
    def scope(self, policy: Policy) -> str:
        parts = [
            f"agent {policy.agent}" if policy.agent_id else "",
            f"account {policy.account}" if policy.account_id else "",
            f"{policy.agent_kind} agents" if policy.agent_kind else "",
            policy.get_channel_display() if policy.channel else "",
        ]
        return ", ".join(part for part in parts if part) or "everything"


@admin.register(KillSwitch)
class KillSwitchAdmin(AuditedHistoryAdmin):
    list_display = ["__str__", "scope", "account", "channel", "engaged", "updated_at"]
    list_filter = ["engaged", "scope"]


@admin.register(BrandGuidelines)
class BrandGuidelinesAdmin(AuditedHistoryAdmin):
    list_display = ["account", "updated_at"]
