"""The console's side of reaching people: routes kept by policy owners, each person's own
channels, the outbox as sent, claims, and on each proposal's page who is on it and who was
told (its deadline is ``notifications.templatetags.deadlines``). The proposal's page and
queue are approvals' (which knows nothing of notifications): this app registers them again
with what it adds."""

import dataclasses

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import BadRequest, ObjectDoesNotExist, PermissionDenied
from django.db.models import Exists, F, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html

from approvals import action_types
from approvals.admin import EVERY_STATUS, KnownValuesOnly, ReadOnlyAdmin, listed_status
from approvals.admin import ProposalAdmin as ApprovalsProposalAdmin
from approvals.models import (
    DecisionOutcome,
    ExecutionStatus,
    Proposal,
    ProposalStatus,
    attempt_status_said,
    sent_to_run_again_read,
)
from approvals.services.acts import Act, may_act, permission_refusal
from approvals.templatetags.console import attempt_left
from audit.admin import (
    AuditedHistoryAdmin,
    ChangeReasonAdmin,
    ConsoleHistoryValues,
    NamedRecordForm,
    change_reason_field,
    console_act_logged,
    console_acts_logged,
    is_history_page,
    lines_shown,
    shown_as_of,
)
from feedback.models import CallbackEvent, DeliveryStatus
from hitlproject.attempts import attempts_in_words
from hitlproject.converters import record_page
from hitlproject.errors import DomainError, NotFound
from hitlproject.formats import console_time
from hitlproject.vocabulary import READ_PERMISSION, how_many
from notifications.carriers import channel_for
from notifications.models import (
    ROUND_ENDED,
    SWITCH_MOVED_ONTO,
    SWITCH_MOVED_ONTO_LABEL,
    UPDATE_NOTES,
    Claim,
    DecisionDeadline,
    Delivery,
    Notification,
    NotificationKind,
    NotificationStatus,
    ReachedBy,
    Route,
    held_for,
)
from notifications.selectors import (
    claim_live,
    deadlines_running,
    due_said,
    overdue_at,
    proposal_notifications,
    sent_with,
    told_nobody,
    told_nobody_counts,
    told_not_yet,
    undecidable_by_group,
)
from notifications.services import (
    proposal_claim,
    proposal_release,
    reached_by_choose,
    routes_deactivate,
)


def route_scope(route: Route) -> str:
    """Which proposals a route tells of, in words."""
    scope = [
        f"account {route.account.external_id}" if route.account_id else "every account",
        route.get_channel_display() if route.channel else "every channel",
        action_types.label(route.action_type) if route.action_type else "every action type",
    ]
    if route.minimum_risk:
        scope.append(f"risk {route.minimum_risk}+")
    return ", ".join(scope)


def backup_group_warning(route: Route) -> str:
    """What a policy owner is warned of when nobody in a route's backup group may decide
    (some of) the proposals it tells of: an overdue one would be escalated to people who
    cannot decide it (a group of auditors); "" when someone may, or it names no group."""
    if route.backup_group_id is None:
        return ""
    undecidable = undecidable_by_group(route.backup_group, action_type=route.action_type)
    if not undecidable:
        return ""
    if route.action_type:
        which = f"the {undecidable[0]} proposals this route tells of"
    elif len(undecidable) == len(action_types.names()):
        which = "any of the proposals this route tells of"
    else:
        which = f"{', '.join(undecidable)} proposals, which this route tells of"
    return (
        f"Nobody in the backup group “{route.backup_group.name}” may decide {which}: one that "
        "is overdue would be escalated to people who cannot decide it. Give the group a person "
        "who may, or choose another group."
    )


def backup_group_warnings(groups) -> dict[int, tuple[Route, str]]:
    """The active routes whose backup group is one of ``groups`` and whose page warns that
    nobody in it may decide (some of) what they tell of, by id, each with its warning."""
    routes = Route.objects.filter(is_active=True, backup_group__in=groups).select_related(
        "backup_group"
    )
    return {
        route.pk: (route, warning) for route in routes if (warning := backup_group_warning(route))
    }


class BackupGroupsWarned:
    """A change to a person (their groups, their permissions, whether they are active, or
    their deletion) or to a group (its permissions) can leave a route's backup group with
    nobody who may decide what the route tells of. Saving it then warns, naming each such
    route, as the route's own page does from then on; the escalation would otherwise be the
    first to say it."""

    def backup_groups_touched(self, obj) -> list[int]:
        """The groups whose members or permissions saving or deleting ``obj`` may change, as
        they are before (a group ``obj`` joins only gains someone)."""
        if isinstance(obj, Group):
            return [obj.pk]
        return list(obj.groups.values_list("pk", flat=True))

    def save_model(self, request, obj, form, change) -> None:
        form.backup_groups_touched = self.backup_groups_touched(obj) if change else []
        form.backup_warned_before = set(backup_group_warnings(form.backup_groups_touched))
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        self._warn(request, form.backup_groups_touched, form.backup_warned_before)

    def delete_model(self, request, obj) -> None:
        touched = self.backup_groups_touched(obj)
        warned_before = set(backup_group_warnings(touched))
        super().delete_model(request, obj)
        self._warn(request, touched, warned_before)

    def delete_queryset(self, request, queryset) -> None:
        touched = sorted({pk for obj in queryset for pk in self.backup_groups_touched(obj)})
        warned_before = set(backup_group_warnings(touched))
        super().delete_queryset(request, queryset)
        self._warn(request, touched, warned_before)

    def _warn(self, request, groups: list[int], warned_before: set[int]) -> None:
        for pk, (route, warning) in backup_group_warnings(groups).items():
            if pk not in warned_before:
                url = reverse("admin:notifications_route_change", args=[pk])
                messages.warning(
                    request,
                    format_html('Route <a href="{}">“{}”</a>: {}', url, route.name, warning),
                )


for model in (get_user_model(), Group):
    # Registered by django.contrib.auth and given the console's guards by audit.admin.
    registered = type(admin.site.get_model_admin(model))
    admin.site.unregister(model)
    admin.site.register(model, type(registered.__name__, (BackupGroupsWarned, registered), {}))


class ReasonForm(forms.Form):
    """Why routes are deactivated together: one reason, kept in each one's history."""

    change_reason = change_reason_field("each route's history")


class RouteForm(NamedRecordForm):
    action_type = forms.ChoiceField(
        choices=lambda: [
            ("", "Every action type"),
            *[(name, action_types.label(name)) for name in action_types.names()],
        ],
        required=False,
        label="Action type",
    )

    class Meta:
        model = Route
        fields = [
            "name",
            "is_active",
            "account",
            "channel",
            "action_type",
            "minimum_risk",
            "users",
            "groups",
            "delivery",
            "digest_minutes",
            "backup_group",
        ]

    def named_so_apart(self, cleaned: dict) -> QuerySet[Route]:
        """A route's name is how people tell whom it tells ("You are told by the route
        “…”."): not another route's."""
        return Route.objects.exclude(pk=self.instance.pk)

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("users") and not cleaned.get("groups"):
            raise forms.ValidationError(
                "Name at least one user or group to tell: a route that tells nobody does nothing."
            )
        return cleaned


class RouteHistoryValues(ConsoleHistoryValues):
    """A route's history reads as its list and form do: the action type as a person reads
    it, and none as "every action type" (not "—"; a "Created" entry's value before it was
    made stays "—")."""

    def prepare_delta_change_value(self, change, value):
        if change.field == "action_type" and value is not None:
            return action_types.label(value) if value else "every action type"
        return super().prepare_delta_change_value(change, value)


@admin.register(Route)
class RouteAdmin(ChangeReasonAdmin):
    """Who is told about which proposals: policy owners add, change and deactivate routes;
    the others read them, history included. A route is deactivated, never deleted: the
    messages it sent still name it."""

    form = RouteForm
    history_values = RouteHistoryValues
    list_display = ["name", "scope", "told", "delivery_display", "backup_group", "is_active"]
    list_filter = [
        "is_active",
        ("account", RelatedOnlyFieldListFilter),
        "channel",
        "delivery",
    ]
    list_select_related = ["account", "backup_group"]
    search_fields = ["name"]
    filter_horizontal = ["users", "groups"]
    show_full_result_count = False
    actions = ["deactivate_selected"]
    fieldsets = [
        (None, {"fields": ["name", "is_active"]}),
        (
            "Which proposals (those that wait for a person; empty: any)",
            {"fields": ["account", "channel", "action_type", "minimum_risk"]},
        ),
        ("Who is told", {"fields": ["users", "groups"]}),
        ("How", {"fields": ["delivery", "digest_minutes", "backup_group"]}),
    ]

    change_list_template = "admin/notifications/route/change_list.html"

    def changelist_view(self, request, extra_context=None):
        """Above the routes, what reached nobody (``told_nobody``): the waiting proposals and
        the failed executions nobody was told of, each linked to the list of them, so that
        the people who keep the routes learn of them and may add one that tells someone."""
        if request.user.has_perm(READ_PERMISSION):
            counts = told_nobody_counts()
            queue = reverse("admin:approvals_proposal_changelist")
            extra_context = {
                "told_nobody_them": "it" if counts.waiting + counts.failed == 1 else "them",
                "told_nobody": [
                    (how_many(count, noun), f"{queue}?{query}")
                    for count, noun, query in [
                        (counts.waiting, "waiting proposal", "told=nobody"),
                        (counts.failed, "failed execution", "status=failed&told=nobody"),
                    ]
                    if count
                ],
                **(extra_context or {}),
            }
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("users", "groups")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_fieldsets(self, request, obj=None):
        """The route's page says, beside its backup group, when nobody in the group may
        decide what it tells of, as the group is now (not on a past version's page, nor
        over a form sent back with other values)."""
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or request.method != "GET" or is_history_page(request):
            return fieldsets
        warning = backup_group_warning(obj)
        if not warning:
            return fieldsets
        # Django shows a description as HTML: the group's name is escaped in it.
        description = format_html('<p class="errornote" id="backup-group-warning">{}</p>', warning)
        return [
            (name, {**options, "description": description})
            if "backup_group" in options["fields"]
            else (name, options)
            for name, options in fieldsets
        ]

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        warning = backup_group_warning(form.instance)
        if warning:
            messages.warning(request, warning)

    @admin.display(description="which proposals")
    def scope(self, route: Route) -> str:
        return route_scope(route)

    @admin.display(description="who is told")
    def told(self, route: Route) -> str:
        names = [user.get_username() for user in route.users.all()]
        names += [f"group {group.name}" for group in route.groups.all()]
        return ", ".join(names) or "nobody"

    @admin.display(description="delivery", ordering="delivery")
    def delivery_display(self, route: Route) -> str:
        if route.delivery == Delivery.DIGEST:
            return f"In a digest, at most every {route.digest_minutes} min"
        return route.get_delivery_display()

    @admin.action(description="Deactivate selected routes…", permissions=["change"])
    def deactivate_selected(self, request, queryset):
        """Asks why first, as every other change to a route does: the reason is kept in each
        route's history."""
        routes = list(queryset.order_by("name", "pk"))
        form = ReasonForm(request.POST if "confirm" in request.POST else None)
        if form.is_bound and form.is_valid():
            stopped = routes_deactivate(
                routes=routes, user=request.user, reason=form.cleaned_data["change_reason"]
            )
            console_acts_logged(request, [(route, "Deactivated") for route in stopped])
            they = "it tells" if len(stopped) == 1 else "they tell"
            messages.success(
                request, f"Deactivated {how_many(len(stopped), 'route')}; {they} nobody now."
            )
            return None
        return TemplateResponse(
            request,
            "admin/notifications/route/deactivate_selected.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Deactivate {how_many(len(routes), 'route')}?",
                "routes": routes,
                "form": form,
                "action": request.POST.get("action"),
                "opts": self.model._meta,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            },
        )


@admin.register(ReachedBy)
class MyChannelsAdmin(AuditedHistoryAdmin):
    """Each person's own channels, and only their own: the list is their one record (made
    on their first save); another person's is no page of theirs."""

    fields = ["email", "slack"]
    change_form_template = "admin/notifications/reachedby/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(user=request.user)

    def _own(self, request, obj=None) -> bool:
        return request.user.is_active and (obj is None or obj.user_id == request.user.pk)

    def has_module_permission(self, request) -> bool:
        return self._own(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return self._own(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._own(request, obj)

    def has_add_permission(self, request) -> bool:
        return self._own(request) and not ReachedBy.objects.filter(user=request.user).exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        if request.GET:  # no list here to filter: a lookup typed in is refused, as elsewhere
            raise BadRequest("My channels is one page, your own: it takes no filters.")
        own = ReachedBy.objects.filter(user=request.user).values_list("pk", flat=True).first()
        if own is None:
            return redirect("admin:notifications_reachedby_add")
        return redirect("admin:notifications_reachedby_change", own)

    def add_view(self, request, form_url="", extra_context=None):
        own = ReachedBy.objects.filter(user=request.user).values_list("pk", flat=True).first()
        if own is not None:
            return redirect("admin:notifications_reachedby_change", own)
        return super().add_view(request, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if not settings.EMAIL_HOST:  # written as files on the server (hitlproject.settings)
            form.base_fields["email"].help_text = (
                f"{form.base_fields['email'].help_text} No mail server is set up on this "
                f"platform: messages are written as files to {settings.EMAIL_FILE_PATH} on its "
                "server, and none reaches your inbox until an administrator sets one up."
            )
        if not channel_for("slack").is_configured():  # said beside the box, where it is ticked
            form.base_fields["slack"].help_text = (
                f"{form.base_fields['slack'].help_text} Slack is not set up on this platform: "
                "nothing reaches you there until an administrator sets it up."
            )
        return form

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context.update(
            title="My channels",
            email_address=request.user.email,
            show_save_and_add_another=False,  # one record each: there is no other to add
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def save_model(self, request, obj, form, change) -> None:
        chosen = reached_by_choose(user=request.user, email=obj.email, slack=obj.slack)
        obj.pk, obj.user = chosen.pk, request.user

    def _saved(self, request, obj: ReachedBy) -> HttpResponseRedirect:
        """Saved, and where that leaves the person: told nowhere is said, not only "saved"."""
        if obj.slack and not channel_for("slack").is_configured():
            messages.warning(
                request,
                "Your channels are saved. Slack is not set up on this platform: until it is, "
                + (
                    "you are told by email only."
                    if obj.email
                    else "nothing reaches you (choose Email too to be told); what waits for "
                    "you is in the review queue."
                ),
            )
        elif not (obj.email or obj.slack):
            messages.warning(
                request,
                "Your channels are saved: none, so you are told of nothing; what waits for "
                "you is in the review queue.",
            )
        else:
            messages.success(request, "Your channels are saved.")
        return redirect("admin:notifications_reachedby_change", obj.pk)

    def response_add(self, request, obj, post_url_continue=None):
        return self._saved(request, obj)

    def response_change(self, request, obj):
        return self._saved(request, obj)


def went_with_said(notification) -> str:
    """What else went in the one message a notification (or a version of it in its history)
    went in, in place of its flag "in digest": a digest of one is no digest, and failures
    told together are no route's digest either (``held_for``)."""
    if not notification.in_digest:
        if notification.status == NotificationStatus.SENT:
            return "nothing else: a message of its own"
        return "—"
    others = sent_with(notification)
    if not others:
        return "nothing else: it went on its own, nothing else being held for them"
    ids = ", ".join(f"#{pk}" for pk in others)
    if notification.kind == NotificationKind.FAILED:
        return f"{ids}, in one message telling of their failures"
    return f"{ids}, in a digest"


class NotificationHistoryValues(ConsoleHistoryValues):
    def json_in_words(self, field_name: str, value) -> str | None:
        if field_name == "log" and isinstance(value, list):
            return " ".join(attempts_in_words(value, notes=UPDATE_NOTES))
        return None

    def format_delta_change(self, change):
        """Its flag "in digest" reads as its page's "sent with": what else went with it."""
        if change.field != "in_digest" or self.delta is None:
            return super().format_delta_change(change)
        return dataclasses.replace(
            change,
            field="Sent with",
            old=went_with_said(self.delta.old_record),
            new=went_with_said(self.delta.new_record),
        )

    def prepare_delta_change_value(self, change, value):
        # Held: for what, by its kind (a message's kind never changes).
        if change.field == "status" and value == NotificationStatus.HELD and self.delta:
            return held_for(self.delta.new_record.kind)
        return super().prepare_delta_change_value(change, value)


# A held failure, in the outbox's filter: held to go with the other failures, not for a
# digest (``held_for``).
HELD_WITH_FAILURES = "held_with_failures"


class NotificationStatusFilter(KnownValuesOnly, admin.SimpleListFilter):
    """The outbox by status, a held message by what it is held for: a route's digest, or
    the other failures told to its person meanwhile (``held_for``)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        held = NotificationStatus.HELD
        return [
            (held.value, held_for(NotificationKind.WAITING)),
            (HELD_WITH_FAILURES, held_for(NotificationKind.FAILED)),
            *((value, label) for value, label in NotificationStatus.choices if value != held),
        ]

    def queryset(self, request, queryset):
        self.refuse_unknown(self.value())
        held, failed = NotificationStatus.HELD, NotificationKind.FAILED
        if self.value() == held:
            return queryset.filter(status=held).exclude(kind=failed)
        if self.value() == HELD_WITH_FAILURES:
            return queryset.filter(status=held, kind=failed)
        if self.value() in NotificationStatus.values:
            return queryset.filter(status=self.value())
        return queryset


class NotificationKindFilter(KnownValuesOnly, admin.SimpleListFilter):
    """The outbox by kind, a kill switch's message saying it was moved onto what its reader
    is told of (of kind "engaged", with what it covered before) apart from one saying it was
    engaged: the list filed those under "A kill switch was engaged", and offered no "moved"."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        engaged = NotificationKind.SWITCH_ENGAGED
        said = []
        for value, label in NotificationKind.choices:
            said.append((value, label))
            if value == engaged:
                said.append((SWITCH_MOVED_ONTO, SWITCH_MOVED_ONTO_LABEL))
        return said

    def queryset(self, request, queryset):
        self.refuse_unknown(self.value())
        engaged = NotificationKind.SWITCH_ENGAGED
        if self.value() == engaged:
            return queryset.filter(kind=engaged, about="")
        if self.value() == SWITCH_MOVED_ONTO:
            return queryset.filter(kind=engaged).exclude(about="")
        return queryset.filter(kind=self.value()) if self.value() else queryset


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """The outbox: every message to a person, as it was sent (or why it was not)."""

    history_values = NotificationHistoryValues

    list_display = [
        "id",
        "proposal_number",
        "recipient",
        "channel",
        "what",
        "status_shown",
        "attempts",
        "created_at",
        "sent_at",
    ]
    list_filter = [NotificationStatusFilter, "channel", NotificationKindFilter]
    # Its proposal with it: a held message says whether it will still go (``due_said``).
    list_select_related = ["recipient", "proposal"]
    raw_id_fields = ["proposal", "kill_switch", "route", "updates"]
    exclude = ["slack_channel", "slack_ts"]
    # No next attempt (a message sent, failed or not sent), no time sent: as the console
    # writes an empty value elsewhere.
    empty_value_display = "—"

    @admin.display(description="status", ordering="status")
    def status_shown(self, notification: Notification) -> str:
        """As the list says it now; a past version's page, as it was at that version's time
        (held, "due to go by …" then, not "was due" because that time has passed since)."""
        return notification.status_at(shown_as_of(notification))

    # Its log, attempt by attempt in words, and its status as the list says it, where the
    # page (or a past version's) has the field.
    shown_read_only = {
        "log": "log_said",
        "status": "status_shown",
        "review_round": "review_round_said",
        "in_digest": "in_digest_said",
        "kind": "kind_said",
    }

    @admin.display(description="review round")
    def review_round_said(self, notification: Notification) -> str:
        """Which of its proposal's review rounds it told of; a failure of a proposal its
        policy let run had none (round 0 is no round: it never waited for a person); nor had
        a message about a kill switch, which is about no proposal."""
        if notification.kill_switch_id is not None:
            return "none: a message about a kill switch, not about a proposal"
        if notification.review_round == 0:
            return "none: its policy let it run without a person"
        return str(notification.review_round)

    @admin.display(description="kind")
    def kind_said(self, notification: Notification) -> str:
        return notification.kind_said

    @admin.display(description="sent with")
    def in_digest_said(self, notification: Notification) -> str:
        return went_with_said(notification)

    @admin.display(description="log")
    def log_said(self, notification: Notification) -> str:
        return lines_shown(notification.attempts_said)

    @admin.display(description="what", ordering="kind")
    def what(self, notification: Notification) -> str:
        return notification.what

    # What the message is about: a proposal, or a kill switch (the column read "proposal"
    # above "Kill switch #3").
    @admin.display(description="about", ordering="proposal_id")
    def proposal_number(self, notification: Notification) -> str:
        if notification.kill_switch_id is not None:  # about a switch, not a proposal
            url = reverse("admin:policies_killswitch_change", args=[notification.kill_switch_id])
            return format_html('<a href="{}">Kill switch #{}</a>', url, notification.kill_switch_id)
        url = reverse("admin:approvals_proposal_change", args=[notification.proposal_id])
        return format_html('<a href="{}">Proposal #{}</a>', url, notification.proposal_id)


@admin.register(Claim)
class ClaimAdmin(ReadOnlyAdmin):
    list_display = ["proposal_id", "user", "claimed_at", "lapses_at", "live"]
    list_select_related = ["user", "proposal"]
    raw_id_fields = ["proposal"]

    @admin.display(description="on it now", boolean=True)
    def live(self, claim: Claim) -> bool:
        # Nobody is on a proposal that no longer waits, however long the claim had to run
        # (the proposal's page and the queue say so too).
        return claim.proposal.status == ProposalStatus.PENDING_REVIEW and claim.is_live()


def on_it_text(claim: Claim | None, now) -> str:
    if claim is None or not claim.is_live(now):
        return ""
    return f"{claim.user.get_username()} until {console_time(claim.lapses_at)}"


# A decision as done, not as the button that made it ("Approve").
DECIDED = {DecisionOutcome.APPROVE: "Approved", DecisionOutcome.REJECT: "Rejected"}
# The records kept beside a proposal's own history that its history page lists, at most.
ELSEWHERE_LISTED = 200


def deadline_record_said(record) -> str:
    """A record of a decision deadline's history (each as the chain seals it), in words: its
    round and when it is due, then what was done, as the record says why it was written
    (the round began, half the time was gone and who was reminded, it was overdue and who was
    escalated to, the round ended, an edit began it again); an ended round as the proposal's
    page says it (``DecisionDeadline.ending_said``): "rejected in time" or "… after the
    deadline", or where nobody decided it, "withdrawn before enough people approved it"."""
    what = f"Decision deadline, round {record.review_round}, due {console_time(record.due_at)}"
    why = (record.history_change_reason or "").rstrip(".")
    if not why:  # none recorded: what it holds
        why = "ended" if record.ended_at else "set" if record.history_type == "+" else "changed"
    if record.ended_at is not None and why.startswith(ROUND_ENDED):
        why = f"{ROUND_ENDED}: {record.instance.ending_said}"
    return f"{what}: {why[:1].lower()}{why[1:]}"


def claim_records(proposal: Proposal) -> list:
    """The records of who took a proposal on (“I'll take it”) and gave it back, oldest
    first, each given ``said``: one query. A proposal has one claim, saved again as each
    person takes it; given back, its lapse is moved to then."""
    records = list(
        Claim.history.filter(proposal_id=proposal.pk).select_related("user").order_by("history_id")
    )
    before = None
    for record in records:
        who = record.user.get_username() if record.user is not None else "someone since removed"
        given_back = (
            before is not None
            and record.user_id == before.user_id
            and record.claimed_at == before.claimed_at
        )
        if given_back:
            record.said = f"{who} gave it back (no longer on it)"
        else:
            until = console_time(record.lapses_at)
            record.said = f"{who} took it on (“I'll take it”) until {until}"
        before = record
    return records


def recorded_elsewhere(proposal: Proposal) -> list[dict]:
    """What is on record about a proposal in records of their own, not in its history: the
    decisions with their notes (a rejection's, an edit's), the attempts to execute it with
    what each left in the ledger or why it failed, the outcomes reported, who was told of
    it, the records of its decision deadlines (due, reminded, escalated, ended), who took it
    on and gave it back, the feedback its agent was given and the callback events sent to
    it, each with when, who, what it says, and its page where it has one; oldest first. A
    fixed number of reads, however many there are."""
    entries = []

    def add(at, what: str, note: str, obj) -> None:
        opts = obj._meta
        try:
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        except NoReverseMatch:
            url = ""
        entries.append({"at": at, "what": what, "note": note, "url": url, "id": obj.pk})

    for decision in proposal.decisions.select_related("reviewer").order_by("created_at", "pk"):
        done = DECIDED.get(decision.outcome, decision.get_outcome_display())
        what = f"{done} by {decision.reviewer} (person)"
        if decision.edited_payload is not None:
            what += f", as edited: {decision.summary}"
        if decision.reason_code:
            what += f"; reason: {decision.get_reason_code_display()}"
        add(decision.created_at, f"Decision: {what}", decision.note, decision)
    executions = list(proposal.executions.order_by("attempt"))
    for execution, after in zip(executions, [*executions[1:], None], strict=False):
        execution.retry_started = after.started_at if after is not None else None
    sent_to_run_again_read(executions)  # who sent each failed one to run again, if a person
    for execution in executions:
        # Its status as its page and the proposal's say it ("failed, tried again", "failed,
        # sent to run again by operator2 at …").
        said = attempt_status_said(
            execution,
            tried_again=execution is not executions[-1],
            sent_again=execution.sent_to_run_again(),
        )
        what = (
            f"Execution attempt {execution.attempt} by the {execution.executor} executor: "
            f"{said[:1].lower()}{said[1:]}"
        )
        if execution.status == ExecutionStatus.SUCCEEDED:
            what = format_html("{}; after it: {}", what, attempt_left(execution))
        add(execution.started_at, what, execution.error, execution)
    for outcome in proposal.outcomes.order_by("created_at", "pk"):
        figures = ", ".join(f"{name} {value}" for name, value in (outcome.metrics or {}).items())
        effect = outcome.get_effect_display() or "figures"
        what = f"Outcome reported by {outcome.reporter_said}: {effect}"
        add(outcome.created_at, what + (f" ({figures})" if figures else ""), outcome.note, outcome)
    for notification in proposal_notifications(proposal=proposal):
        what = (
            f"{notification.recipient} told {notification.how_told}: "
            f"{notification.get_kind_display()}; {notification.get_status_display().lower()}"
        )
        add(notification.created_at, what, "", notification)
    for record in DecisionDeadline.history.filter(proposal_id=proposal.pk).order_by("history_id"):
        add(record.history_date, deadline_record_said(record), "", record)
    for record in claim_records(proposal):
        add(record.history_date, record.said, "", record)
    for feedback in proposal.feedback.select_related("agent").order_by("created_at", "pk"):
        what = f"Feedback to {feedback.agent} (agent): {feedback.get_kind_display()}"
        if feedback.reason_code:
            what += f"; reason: {feedback.get_reason_code_display()}"
        add(feedback.created_at, what, feedback.note, feedback)
    for event in CallbackEvent.objects.filter(proposal=proposal).select_related("agent"):
        what = f"Callback event “{event.get_type_display()}” to {event.agent} (agent): "
        after = f"after {how_many(event.attempts, 'attempt')}"
        if event.status == DeliveryStatus.DELIVERED:
            what += f"delivered at {console_time(event.delivered_at)}, {after}"
        elif event.status == DeliveryStatus.FAILED:
            what += f"given up {after}"
        else:
            what += event.status_said[:1].lower() + event.status_said[1:]
        add(event.created_at, what, "", event)
    return sorted(entries, key=lambda entry: entry["at"])


class DecisionDueFilter(KnownValuesOnly, admin.SimpleListFilter):
    """The queue by its decision deadlines (a policy's “decide within”): those overdue, those
    due and not yet overdue, those with none; each of its review round now, as the sweep
    reads them (``deadlines_running``)."""

    title = "decision due"
    parameter_name = "due"

    def lookups(self, request, model_admin):
        if listed_status(request) != ProposalStatus.PENDING_REVIEW:
            # No deadline runs outside the queue: offered nowhere else, and a ``due`` a link
            # carries there (the status filter's, the search form's) is read and let be,
            # not refused as a lookup nobody knows.
            return []
        return [
            ("overdue", "Overdue"),
            ("not_yet", "Due, not yet overdue"),
            ("none", "No deadline"),
        ]

    def queryset(self, request, queryset):
        self.refuse_unknown(self.value())
        running = deadlines_running().filter(proposal=OuterRef("pk"))
        overdue = overdue_at(timezone.now())
        if self.value() == "overdue":
            return queryset.filter(Exists(running.filter(overdue)))
        if self.value() == "not_yet":
            return queryset.filter(Exists(running.exclude(overdue)))
        if self.value() == "none":
            return queryset.filter(~Exists(running))
        return queryset


# The proposal lists "Who was told: Nobody" is offered on: the queue, the failed executions,
# and every status (both of them).
TOLD_NOBODY_LISTED = frozenset({ProposalStatus.PENDING_REVIEW, ProposalStatus.FAILED, EVERY_STATUS})


class ToldNobodyFilter(KnownValuesOnly, admin.SimpleListFilter):
    """The queue, or the failed executions, that reached nobody (``told_nobody``), or that
    nobody was told of yet, a message on its way (``told_not_yet``): what the dashboard and
    the routes list count, each linking here."""

    title = "who was told"
    parameter_name = "told"

    def lookups(self, request, model_admin):
        if listed_status(request) not in TOLD_NOBODY_LISTED:
            # Only a proposal that waits, or whose execution failed, is told of: offered
            # nowhere else, and a ``told`` a link carries there is let be (as ``due`` is).
            return []
        return [("nobody", "Nobody"), ("not_yet", "Nobody yet: a message is on its way")]

    def queryset(self, request, queryset):
        self.refuse_unknown(self.value())
        if self.value() == "nobody":
            return queryset.filter(told_nobody(timezone.now()))
        if self.value() == "not_yet":
            return queryset.filter(told_not_yet(timezone.now()))
        return queryset


def with_decision_due(proposals) -> None:
    """Each proposal given when a decision on it is due in its review round now, and how
    that reads now (``due_said``), in one read for all: None and "" where no deadline runs."""
    due = dict(
        deadlines_running()
        .filter(proposal__in=[proposal.pk for proposal in proposals])
        .values_list("proposal_id", "due_at")
    )
    now = timezone.now()
    for proposal in proposals:
        proposal.decision_due_at = due.get(proposal.pk)
        proposal.decision_due_said = due_said(proposal.decision_due_at, now)
        proposal.decision_overdue = proposal.decision_due_said.startswith("overdue")


admin.site.unregister(Proposal)


@admin.register(Proposal)
class ProposalAdmin(ApprovalsProposalAdmin):
    """The review queue and a proposal's page, with who is on each proposal (“I'll take
    it”), when a decision on it is due, and who was told about it."""

    # Who is on it right after what it is: at the end, past risk and age, a laptop's screen
    # had the column behind the table's scroll, and nobody saw that somebody had taken it.
    # When a decision is due beside it: which are overdue is read without opening each.
    list_display = [
        *ApprovalsProposalAdmin.list_display[:2],
        "on_it",
        "decision_due",
        *ApprovalsProposalAdmin.list_display[2:],
    ]
    list_filter = [*ApprovalsProposalAdmin.list_filter[:1], DecisionDueFilter, ToldNobodyFilter]
    list_filter += ApprovalsProposalAdmin.list_filter[1:]
    sorted_in_words = {
        **ApprovalsProposalAdmin.sorted_in_words,
        "decision_due": ("soonest due first", "those without a deadline first, then latest due"),
    }
    bulk_decision_template = "admin/notifications/proposal/bulk_decision.html"
    # The claim and its holder in the queue's one query (a left join on a unique key).
    list_select_related = [*ApprovalsProposalAdmin.list_select_related, "claim__user"]
    change_form_template = "admin/notifications/proposal/change_form.html"

    def get_queryset(self, request):
        # When a decision is due, in the queue's one query (a subquery on a unique key).
        running = deadlines_running().filter(proposal=OuterRef("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(decision_due_at=Subquery(running.values("due_at")[:1]))
        )

    def list_display_for(self, status: str) -> list:
        # A deadline runs only while a proposal waits for a person: the column is the
        # queue's (a list of what was executed, say, would read "—" down the column).
        shown = super().list_display_for(status)
        if status == ProposalStatus.PENDING_REVIEW:
            return shown
        return [field for field in shown if field != "decision_due"]

    @admin.display(description="decision due", ordering=F("decision_due_at").asc(nulls_last=True))
    def decision_due(self, proposal: Proposal) -> str:
        """When a decision is due (a policy's “decide within”), from now, and by when: "in
        12 min", "overdue by 3.5 h" marked; none where no deadline runs. Not its review
        window, which expires it."""
        due_at = proposal.decision_due_at
        if due_at is None:
            return ""
        said = due_said(due_at, timezone.now())
        return format_html(
            '<span class="{}">{}</span> <span class="decision-due-at">{}</span>',
            "decision-overdue" if said.startswith("overdue") else "decision-due",
            said,
            console_time(due_at),
        )

    def _bulk(self, request, queryset, **kwargs):
        """The confirmation says when a decision on each is due, and which are overdue."""
        response = super()._bulk(request, queryset, **kwargs)
        if isinstance(response, TemplateResponse):
            proposals = response.context_data["proposals"]
            with_decision_due(proposals)
            response.context_data["overdue"] = [p for p in proposals if p.decision_overdue]
            response.context_data["with_deadlines"] = any(p.decision_due_at for p in proposals)
        return response

    @admin.display(description="on it")
    def on_it(self, proposal: Proposal) -> str:
        if proposal.status != ProposalStatus.PENDING_REVIEW:
            return ""
        try:
            claim = proposal.claim
        except ObjectDoesNotExist:
            return ""
        return on_it_text(claim, timezone.now())

    def get_urls(self):
        def view(name: str, func):
            return record_page(
                f"{name}/", self.admin_site.admin_view(func), name=f"approvals_proposal_{name}"
            )

        return [
            *view("claim", self.claim_view),
            *view("release", self.release_view),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        proposal = self.get_object(request, object_id)
        if proposal is not None:
            claim = claim_live(proposal=proposal)
            pending = proposal.status == ProposalStatus.PENDING_REVIEW
            extra_context = {
                "claim": claim if pending else None,
                "can_claim": pending
                and (claim is None or claim.user_id == request.user.pk)
                and may_act(request.user, proposal, Act.REJECT),
                "holds_claim": pending and claim is not None and claim.user_id == request.user.pk,
                "told": proposal_notifications(proposal=proposal),
                **(extra_context or {}),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        """Its history, and after it what is recorded of it elsewhere, in order: its page
        showed the decisions' notes, the outcomes and who was told; its history none."""
        proposal = self.get_object(request, unquote(object_id))
        if proposal is not None and self.has_view_permission(request, proposal):
            entries = recorded_elsewhere(proposal)
            extra_context = {
                **(extra_context or {}),
                "elsewhere": {
                    "entries": entries[:ELSEWHERE_LISTED],
                    "unlisted": max(len(entries) - ELSEWHERE_LISTED, 0),
                    "page": reverse("admin:approvals_proposal_change", args=[proposal.pk]),
                },
            }
        return super().history_view(request, object_id, extra_context)

    def _claim_act(
        self, request: HttpRequest, object_id: int, act, *, logged: str
    ) -> HttpResponseRedirect:
        if not self.has_view_permission(request):
            # Told nothing of it, not even whether it is there or waits: what the service's
            # refusal would say ("Proposal #3 is rejected; …").
            raise PermissionDenied
        page = HttpResponseRedirect(reverse("admin:approvals_proposal_change", args=[object_id]))
        if request.method != "POST":  # an act's address opened as a page: the proposal's
            return page
        try:
            said = act()
        except DomainError as error:
            messages.error(request, error.message)
        else:
            console_act_logged(request, Proposal.objects.get(pk=object_id), logged)
            messages.success(request, said)
        return page

    def claim_view(self, request: HttpRequest, object_id: int):
        """“I'll take it”, by someone who may decide the proposal (a role that does not
        decide proposals of its kind is refused outright; the service checks the rest)."""
        proposal = Proposal.objects.select_related("agent").filter(pk=object_id).first()
        if proposal is not None and permission_refusal(request.user, proposal):
            raise PermissionDenied

        def take() -> str:
            if proposal is None:
                raise NotFound(f"There is no proposal #{object_id}.")
            claim = proposal_claim(proposal_id=object_id, user=request.user)
            return f"You are on proposal #{object_id} until {claim.lapses_text}; the others see it."

        return self._claim_act(request, object_id, take, logged="Claimed")

    def release_view(self, request: HttpRequest, object_id: int):
        def give_back() -> str:
            proposal_release(proposal_id=object_id, user=request.user)
            return f"You gave proposal #{object_id} back: nobody is on it."

        return self._claim_act(request, object_id, give_back, logged="Given back")
