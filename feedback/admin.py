import dataclasses

from django.contrib import admin, messages
from django.db import models
from django.shortcuts import redirect
from django.utils.text import capfirst

from approvals.admin import proposal_shown
from approvals.selectors import approval_told
from approvals.services.decisions import DECIDE_PERMISSION
from audit.admin import (
    ChangeReasonAdmin,
    ChangeReasonForm,
    ConsoleHistoryValues,
    ReadOnlyAdmin,
    console_acts_logged,
    lines_shown,
    shown_as_of,
)
from feedback.callbacks import callback_events_redeliver
from feedback.models import (
    AutonomyRules,
    CallbackEvent,
    CallbackEventType,
    Feedback,
    Outcome,
)
from hitlproject.forms import PercentField, WindowField
from hitlproject.periods import describe_duration
from hitlproject.vocabulary import how_many
from policies.engine import percent_text

# The autonomy rules' shares, stored as fractions, typed and read in percent as a policy's
# ceilings are (a policy owner keeps both): what each says, in the form's words.
PERCENT_SHARES = {
    "widen_min_clean_share": "…of which at least this share approved unedited, in percent "
    "(95 = 95%)…",
    "widen_max_ceiling": "…up to at most this ceiling, in percent (50 = 50%; 0 = never widen).",
    "narrow_min_rejected_share": "…of which at least this share rejected, in percent (25 = 25%)…",
}


class AutonomyRulesHistoryValues(ConsoleHistoryValues):
    """The rules' history reads as their form: a share in percent, not the fraction stored."""

    def prepare_delta_change_value(self, change, value):
        if change.field in PERCENT_SHARES and value is not None:
            return percent_text(value)
        return super().prepare_delta_change_value(change, value)


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdmin):
    list_display = ["id", proposal_shown, "agent", "kind", "reason_code", "created_at"]
    list_filter = ["kind", "reason_code", "agent"]
    list_select_related = ["proposal", "agent"]
    raw_id_fields = ["proposal", "decision", "outcome"]


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyAdmin):
    list_display = ["id", proposal_shown, "effect", "reporter", "created_at"]
    list_filter = ["effect", "reported_by_kind"]
    list_select_related = ["proposal"]
    raw_id_fields = ["proposal"]

    @admin.display(description="reported by", ordering="reported_by")
    def reporter(self, outcome: Outcome) -> str:
        return outcome.reporter_said


# How many events "Deliver again" left as they were are named one by one.
NOT_SENT_LISTED = 10


class CallbackEventHistoryValues(ConsoleHistoryValues):
    """An event's history reads as its page: its log attempt by attempt in words, each
    version's as it read at that version's time (not the JSON stored), and when it is next
    tried as each version says it (``CallbackEvent.next_attempt_said``): the lease of an
    attempt under way rewritten as its retry in the same second read "15:05:39 UTC →
    15:05:39 UTC", a change nobody could see; one that reads the same in words is said to
    have been rewritten within the second."""

    def format_delta_change(self, change):
        if change.field not in ("log", "next_attempt_at") or self.delta is None:
            return super().format_delta_change(change)
        old, new = (
            record.history_object for record in (self.delta.old_record, self.delta.new_record)
        )
        if change.field == "log":
            old_said, new_said = (
                lines_shown(event.attempts_at(record.history_date))
                for event, record in (
                    (old, self.delta.old_record),
                    (new, self.delta.new_record),
                )
            )
        else:
            old_said, new_said = old.next_attempt_said(), new.next_attempt_said()
            if old_said == new_said:
                new_said = f"{new_said}, rewritten within the same second"
        field = capfirst(self.model._meta.get_field(change.field).verbose_name)
        return dataclasses.replace(change, field=field, old=old_said, new=new_said)


@admin.register(CallbackEvent)
class CallbackEventAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "type",
        proposal_shown,
        "agent",
        "status_shown",
        "attempts",
        "created_at",
    ]
    list_filter = ["status", "type", "agent"]
    list_select_related = ["proposal", "agent"]
    raw_id_fields = ["proposal"]
    actions = ["deliver_again"]
    history_values = CallbackEventHistoryValues

    # Its log attempt by attempt in words, as a notification's (not the JSON stored), its
    # attempts with those since an operator sent it again, and its next attempt as none once
    # there is none.
    shown_read_only = {
        "type": "type_said",
        "status": "status_shown",
        "attempts": "attempts_said",
        "log": "log_said",
        "next_attempt_at": "next_attempt_said",
    }

    @admin.display(description="type")
    def type_said(self, event: CallbackEvent) -> str:
        """Its kind, and of an approval, who approved (a person, or its policy without one)
        as its proposal's history records it: "Approved: operator approved it at …". The
        agent's payload says none of it beside its "reason", and stays as it is."""
        said = event.get_type_display()
        if event.type != CallbackEventType.APPROVED:
            return said
        told = approval_told(event.proposal, event.created_at)
        return f"{said}: {told}" if told else said

    @admin.display(description="status", ordering="status")
    def status_shown(self, event: CallbackEvent) -> str:
        """Waiting to be tried again, when, and how many attempts failed, for an event
        between its attempts: not "Being delivered" the minutes it waits. A past version's
        page says it as it was at that version's time."""
        return event.status_at(shown_as_of(event))

    @admin.display(description="attempts")
    def attempts_said(self, event: CallbackEvent) -> str:
        return event.attempts_summary

    @admin.display(description="log")
    def log_said(self, event: CallbackEvent) -> str:
        return lines_shown(event.attempts_at(shown_as_of(event)))

    @admin.display(description="next attempt at")
    def next_attempt_said(self, event: CallbackEvent) -> str:
        """When a pending event is next due, or that none is: the field keeps the lease of an
        event's last attempt, which read as an attempt to come on one given up on."""
        return event.next_attempt_said()

    @admin.action(description="Deliver again (events given up on)", permissions=["redeliver"])
    def deliver_again(self, request, queryset):
        done = callback_events_redeliver(events=queryset, operator=request.user)
        console_acts_logged(request, [(event, "Sent again") for event in done.sent])
        if done.sent:
            messages.success(request, f"Sending {how_many(len(done.sent), 'event')} again.")
        # Each selected and left as it was, with why, as many as are listed.
        for event, why in done.not_sent[:NOT_SENT_LISTED]:
            messages.warning(request, f"Event #{event.pk} was not sent again: {why}.")
        unlisted = len(done.not_sent) - NOT_SENT_LISTED
        if unlisted > 0:
            messages.warning(request, f"… and {how_many(unlisted, 'more event')} not sent again.")

    def has_redeliver_permission(self, request) -> bool:
        return request.user.has_perm(DECIDE_PERMISSION)  # operators keep the loop running


@admin.register(AutonomyRules)
class AutonomyRulesAdmin(ChangeReasonAdmin):
    """One set of rules, kept by policy owners, each change saying why."""

    form = ChangeReasonForm
    history_values = AutonomyRulesHistoryValues

    # The window typed and shown in words, as a policy's ("30 days", "6 weeks"), not as
    # Django's "30 00:00:00", which was all the form showed and took.
    formfield_overrides = {models.DurationField: {"form_class": WindowField}}

    fieldsets = [
        (None, {"fields": ["is_active", "window"]}),
        (
            "Widen an agent's auto-execute ceiling when",
            {
                "fields": [
                    "widen_min_decisions",
                    "widen_min_clean_share",
                    "widen_factor",
                    "widen_max_ceiling",
                ]
            },
        ),
        (
            "Narrow it when",
            {"fields": ["narrow_min_decisions", "narrow_min_rejected_share", "narrow_factor"]},
        ),
    ]
    # Read only: the window as a policy's page says one ("30 days"), not Python's "30 days,
    # 0:00:00"; a share as typed ("95%"), not the fraction stored. Each with the form's help.
    shown_read_only = {
        "window": "window_shown",
        **{name: f"{name}_shown" for name in PERCENT_SHARES},
    }

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name in PERCENT_SHARES:
            return PercentField(
                label=capfirst(db_field.verbose_name), help_text=PERCENT_SHARES[db_field.name]
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="window")
    def window_shown(self, rules: AutonomyRules) -> str:
        return describe_duration(rules.window)

    @admin.display(description="widen min clean share")
    def widen_min_clean_share_shown(self, rules: AutonomyRules) -> str:
        return percent_text(rules.widen_min_clean_share)

    @admin.display(description="widen max ceiling")
    def widen_max_ceiling_shown(self, rules: AutonomyRules) -> str:
        return percent_text(rules.widen_max_ceiling)

    @admin.display(description="narrow min rejected share")
    def narrow_min_rejected_share_shown(self, rules: AutonomyRules) -> str:
        return percent_text(rules.narrow_min_rejected_share)

    def has_add_permission(self, request) -> bool:
        return False  # the one set exists from the start

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        # The one set, made at set-up; a platform not migrated since lists none, and this
        # read makes none.
        rules = AutonomyRules.objects.filter(pk=1).first()
        if rules is None:
            return super().changelist_view(request, extra_context)
        return redirect("admin:feedback_autonomyrules_change", rules.pk)

    def response_change(self, request, obj):
        # One set, whose page is its list (each button comes back to it). Django said "The
        # autonomy rules “Autonomy rules” was changed successfully."
        if getattr(obj, "_nothing_changed", False):
            return super().response_change(request, obj)
        request.changes_said = self.changes_in_words(request, obj)
        self.message_user(request, "The autonomy rules were changed.", messages.SUCCESS)
        return redirect(request.path)
