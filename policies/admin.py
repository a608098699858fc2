from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.template.response import TemplateResponse
from django.urls import path
from rest_framework.exceptions import ValidationError

from approvals import action_types
from approvals.models import Agent, AgentKind
from approvals.services.proposals import proposal_dry_run
from approvals.validation import validation_text
from audit.admin import AuditedHistoryAdmin, id_refusal
from hitlproject.charts import grouped_bars
from hitlproject.converters import record_page
from hitlproject.errors import DomainError
from hitlproject.forms import IndentedJSONField
from hitlproject.periods import PeriodForm
from ledger.models import Account
from policies.engine import format_magnitude
from policies.models import BrandGuidelines, KillSwitch, Policy
from policies.simulation import OUTCOMES, draft_rule_set, simulate
from policies.templatetags.policy_tags import OUTCOME_LABELS


class PolicyForm(forms.ModelForm):
    action_type = forms.ChoiceField(choices=lambda: [(name, name) for name in action_types.names()])
    agent_kind = forms.ChoiceField(
        choices=[("", "Any kind"), *AgentKind.choices], required=False, label="Agent kind"
    )

    class Meta:
        model = Policy
        fields = ["action_type", "agent_kind"]  # the admin's fieldsets add the rest

    user = None  # who edits: set by PolicyAdmin.get_form

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.agent_before = self.instance.agent if self.instance.agent_id else None

    def clean(self):
        cleaned = super().clean()
        # Who owns an agent does not set how far it runs unreviewed: neither the policy it
        # had nor the one it gets (the rule of approvals.services.acts, for policies).
        for agent in (self.agent_before, cleaned.get("agent")):
            if agent is not None and owns_agent(self.user, agent):
                raise forms.ValidationError(
                    f"You own agent {agent}; someone else must set its policy.",
                    code="owns_agent",
                )
        return cleaned


def owns_agent(user, agent: Agent | None) -> bool:
    """Whether ``user`` owns ``agent`` and so may not set its policy. Administrators
    (superusers) are exempt: they are answerable for the whole platform."""
    return (
        user is not None
        and agent is not None
        and not user.is_superuser
        and agent.owner_id is not None
        and agent.owner_id == user.pk
    )


class PoliciesField(forms.ModelMultipleChoiceField):
    def _check_values(self, value):
        # An id past what the column holds is no policy's, not a query the database refuses.
        for pk in value:
            if isinstance(pk, str | int) and id_refusal(Policy._meta.pk, str(pk)):
                raise DjangoValidationError(
                    self.error_messages["invalid_pk_value"],
                    code="invalid_pk_value",
                    params={"pk": pk},
                )
        return super()._check_values(value)


class SimulationForm(PeriodForm):
    drafts = PoliciesField(
        queryset=Policy.objects.filter(is_draft=True, is_active=True),
        required=False,
        help_text="None chosen: every active draft.",
    )


class DryRunForm(forms.Form):
    agent = forms.ModelChoiceField(queryset=Agent.objects.filter(is_active=True))
    account = forms.ModelChoiceField(queryset=Account.objects.all())
    payload = IndentedJSONField()


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

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"user": request.user})

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and owns_agent(request.user, obj.agent):
            return False  # shown read-only: someone else must set its policy
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and owns_agent(request.user, obj.agent):
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="scope")
    def scope(self, policy: Policy) -> str:
        parts = [
            f"agent {policy.agent}" if policy.agent_id else "",
            f"account {policy.account}" if policy.account_id else "",
            f"{policy.agent_kind} agents" if policy.agent_kind else "",
            policy.get_channel_display() if policy.channel else "",
        ]
        return ", ".join(part for part in parts if part) or "everything"

    def get_urls(self):
        urls = [
            path(
                "simulate/",
                self.admin_site.admin_view(self.simulate_view),
                name="policies_policy_simulate",
            ),
            *record_page(
                "dry-run/",
                self.admin_site.admin_view(self.dry_run_view),
                name="policies_policy_dry_run",
            ),
        ]
        return urls + super().get_urls()

    def simulate_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = SimulationForm(request.GET if "since" in request.GET else None)
        context = {
            **self.admin_site.each_context(request),
            "title": "What-if simulation",
            "opts": self.model._meta,
            "form": form,
        }
        if form.is_bound and form.is_valid():
            drafts = form.cleaned_data["drafts"]
            rules, names = draft_rule_set([d.pk for d in drafts] if drafts else None)
            since, until = form.bounds()
            try:
                report = simulate(rules=rules, since=since, until=until, drafts=names)
            except DomainError as error:
                form.add_error(None, error.message)
                return TemplateResponse(request, "admin/policies/policy/simulate.html", context)
            labels = {o: OUTCOME_LABELS[o].capitalize() for o in OUTCOMES}
            context["report"] = report
            context["rows"] = [
                (labels[o], report.happened[o], report.with_draft[o]) for o in OUTCOMES
            ]
            context["chart"] = grouped_bars(
                [labels[o] for o in OUTCOMES],
                [
                    ("Happened", [report.happened[o] for o in OUTCOMES]),
                    ("With the draft", [report.with_draft[o] for o in OUTCOMES]),
                ],
            )
        return TemplateResponse(request, "admin/policies/policy/simulate.html", context)

    def dry_run_view(self, request, object_id: int):
        policy = self.get_object(request, object_id)
        if policy is None or not self.has_view_permission(request, policy):
            raise PermissionDenied
        example = action_types.get(policy.action_type).example_payload
        agent = policy.agent or Agent.objects.filter(is_active=True).first()
        account = policy.account or (agent.accounts.first() if agent else None)
        form = DryRunForm(
            request.POST if request.method == "POST" else None,
            initial={"payload": example, "account": account, "agent": agent},
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Dry run: {policy}",
            "opts": self.model._meta,
            "policy": policy,
            "form": form,
        }
        if form.is_bound and form.is_valid():
            try:
                assessed, verdict = proposal_dry_run(
                    agent=form.cleaned_data["agent"],
                    account_external_id=form.cleaned_data["account"].external_id,
                    action_type=policy.action_type,
                    payload=form.cleaned_data["payload"],
                    rules=draft_rule_set([policy.pk])[0] if policy.is_draft else None,
                )
            except ValidationError as error:
                form.add_error(None, validation_text(error))
            else:
                unit = assessed.action_type.magnitude_unit
                context.update(
                    assessed=assessed,
                    verdict=verdict,
                    magnitude=format_magnitude(assessed.assessment.magnitude, unit),
                )
        return TemplateResponse(request, "admin/policies/policy/dry_run.html", context)


@admin.register(KillSwitch)
class KillSwitchAdmin(AuditedHistoryAdmin):
    list_display = ["__str__", "scope", "account", "channel", "engaged", "updated_at"]
    list_filter = ["engaged", "scope"]


@admin.register(BrandGuidelines)
class BrandGuidelinesAdmin(AuditedHistoryAdmin):
    list_display = ["account", "updated_at"]
