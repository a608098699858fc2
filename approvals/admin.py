"""The review console: the operator's queue and decisions, the auditor's read-only view."""

import copy
import dataclasses
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from decimal import Decimal
from fractions import Fraction

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import label_for_field
from django.contrib.admin.views.main import ORDER_VAR, SEARCH_VAR
from django.core.exceptions import BadRequest, PermissionDenied
from django.db import models
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    QueryDict,
)
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst

from approvals import action_types
from approvals.action_types.forms import ActionEditForm, edit_form_for
from approvals.action_types.policy_changes import PolicyWritten, policy_written
from approvals.models import (
    Agent,
    AgentAPIKey,
    Decision,
    Execution,
    ExecutionStatus,
    Proposal,
    ProposalStatus,
    RejectionReason,
    WithdrawnBy,
    later_attempts,
    persons_approvals_after,
    retry_started,
    sent_to_run_again_read,
)
from approvals.search import proposals_matching, search_words
from approvals.selectors import (
    HELD_BY_KILL_SWITCH,
    SinceProposed,
    agent_track_record,
    approved_draft_fails,
    approved_failing,
    attempt_keys,
    campaigns_not_active,
    campaigns_now_each,
    campaigns_paused,
    campaigns_read,
    carried_out,
    changed_first_now,
    deciding_policy,
    deployed_creatives,
    earlier_proposals_on_targets,
    ended_recorded_at,
    executions_keys,
    failing_at_next_attempt,
    how_review_ended,
    last_failure,
    last_round,
    next_attempts_due,
    paused_ran_said,
    paused_still_runs_said,
    policy_terms,
    proposal_followed,
    proposal_states,
    proposals_sent_by_kill_switch,
    reassessed_otherwise,
    reassessed_policy_ref,
    retries_awaited,
    retries_of,
    retry_ends_it_said,
    retry_may_repeat_said,
    retry_over_cumulative_said,
    retry_past_kill_switches_said,
    retry_told,
    routing_reasons,
    routings,
    run_times,
    since_proposed,
    was_retried,
    with_ended_recorded,
    with_reassessed_policy,
    withdrawal_seen,
    withdrawn_said,
)
from approvals.services.acts import (
    LET_RUN_FROM,
    RETRY_WOULD_FAIL_AGAIN,
    Act,
    AgentMayNoLongerAct,
    LedgerAhead,
    NoLongerApplies,
    act_refusal,
    agent_accounts_of,
    agent_stopped,
    agent_stopped_said,
    may_act,
    no_longer_applies,
    no_longer_applies_each,
    permission_refusal,
    review_window_closed,
    reviewers_by_proposal,
)
from approvals.services.agents import (
    agent_callback_secret_rotate,
    agent_key_issue,
    agent_key_revoke,
)
from approvals.services.decisions import (
    DECIDE_PERMISSION,
    QUEUE_ORDER,
    Decided,
    approvals_needed_after_one_more,
    bulk_approval_plan,
    guardrail_refuses_said,
    payload_seen,
    proposal_approve,
    proposal_reject,
    proposal_retry,
    proposals_approve,
    proposals_reject,
    retry_refusal,
)
from approvals.services.lifecycle import InvalidTransition
from approvals.services.proposals import (
    HELD_BACK_ANY,
    HELD_BACK_BETWEEN,
    SEEN_SHAPE,
    assessed_as_retried,
    brand_findings_taken_out,
    guardrail_blocks_counting_approved,
    held_back_by,
    held_back_reason_now,
    kill_switch_findings_recorded_at,
    kill_switches_gone_said,
    proposal_withdraw_for_agent,
    retry_over_cumulative_ceiling,
)
from approvals.services.supersession import (
    proposals_its_execution_would_end,
    sets_values,
    target_moves_each,
)
from approvals.templatetags.console import (
    creatives_said,
    ledger_state,
    policy_after,
    policy_before,
    what_if_chart,
)
from audit.actors import Actor
from audit.admin import (
    ChangeReasonAdmin,
    ChangeReasonForm,
    ConsoleChangeList,
    ConsoleHistoryValues,
    ReadOnlyAdmin,
    address_quoted,
    chain_broken_as_last_verified,
    console_act_logged,
    console_acts_logged,
    refuse_nul_in_search,
    version_recorded_at,
)
from audit.chain import record_break_recorded
from feedback.models import OutcomeEffect
from feedback.selectors import (
    SCORECARD_DAYS_DEFAULT,
    SCORECARD_DAYS_MOST,
    scorecard_window,
    scorecards,
    scorecards_added_up,
)
from feedback.services import outcome_report_by_user
from feedback.templatetags.feedback_tags import scorecard_charts
from hitlproject.charts import numeric_series, numeric_series_count
from hitlproject.converters import record_page
from hitlproject.durations import elapsed_said
from hitlproject.errors import DomainError
from hitlproject.formats import console_time
from hitlproject.paginators import CappedCountPaginator
from hitlproject.validation import PLAIN_DIGITS, id_asked
from hitlproject.vocabulary import (
    APPROVED_TO_RUN_STATUSES,
    FAILING_AT_NEXT_ATTEMPT_TITLE,
    FINAL_STATUSES,
    HELD_BACK_APPROVED_AGAIN,
    MAY_STILL_BE_DECIDED_STATUSES,
    NOTE_MAX_LENGTH,
    SENT_TO_RUN_AGAIN,
    STATUS_REACHED,
    UNDER_WAY_STATUSES,
    CarriedOut,
    VerdictOutcome,
    and_joined,
    edit_within,
    failing_at_next_attempt_said,
    how_many,
    refuses_now,
)
from ledger.models import Channel, campaign_field_label, campaign_value_label
from ledger.selectors import channels_with_accounts
from policies.drafts import replaced_policy
from policies.engine import (
    cumulative_figure,
    legacy_cumulative_figure_from_reasons,
    rounded_percent,
)
from policies.models import KillSwitch, Policy
from policies.services import (
    KILL_SWITCH_FINDING,
    WHEN_HELD_BACK,
    WHEN_HELD_BACK_BETWEEN,
    WHEN_ROUTED,
    KillSwitchRun,
    engaged_kill_switches,
    kill_switch_covered_before,
    kill_switch_finding_now,
    kill_switch_named_in,
    kill_switch_names,
    kill_switch_reason,
    kill_switch_runs,
    kill_switches_covering,
    kill_switches_engaged_then,
    kill_switches_found_in,
    kill_switches_moved_off,
    kill_switches_told_apart,
    named_for_people,
    rule_from_policy,
    version_number,
    versions_count,
)

EVERY_STATUS = "all"
SUBMITTED = ProposalStatus.SUBMITTED.value

# The queue's order when the operator picked none (``ProposalAdmin.ordering``), in words.
QUEUE_ORDER_IN_WORDS = "riskiest first, then oldest"
# A column's sort in words, ascending then descending as the column header toggles it (age
# sorts by ``-created_at``: ascending is youngest first). A column not named here reads "by
# <its header>, ascending" or "descending".
SORTED_IN_WORDS = {
    "id": ("by number, lowest first", "by number, highest first"),
    "summary_shown": ("by summary, A to Z", "by summary, Z to A"),
    "action_type_display": ("by action type, A to Z", "by action type, Z to A"),
    "agent": ("by agent, A to Z", "by agent, Z to A"),
    "account": ("by account, A to Z", "by account, Z to A"),
    "magnitude_display": ("smallest magnitude first", "largest magnitude first"),
    "approvals_display": ("fewest approvals first", "most approvals first"),
    "risk": ("least risky first", "riskiest first"),
    "age": ("youngest first", "oldest first"),
}


def order_in_words(changelist) -> str:
    """The order a proposal list shows, as its title says it: the columns the operator
    sorted by (``?o=``, as the admin reads it: a column that does not sort is skipped), else
    the queue's own order."""
    said = []
    if changelist.params.get(ORDER_VAR):
        for index, direction in changelist.get_ordering_field_columns().items():
            if not 0 <= index < len(changelist.list_display):
                continue
            name = changelist.list_display[index]
            if not changelist.get_ordering_field(name):
                continue
            ascending = direction == "asc"
            in_words = getattr(changelist.model_admin, "sorted_in_words", SORTED_IN_WORDS)
            if name in in_words:
                said.append(in_words[name][0 if ascending else 1])
            else:
                header = label_for_field(name, changelist.model, changelist.model_admin)
                said.append(f"by {header}, {'ascending' if ascending else 'descending'}")
    return ", then ".join(said) or QUEUE_ORDER_IN_WORDS


def listed_status(request: HttpRequest) -> str:
    """The status the proposal list shows: the one picked; else, while searching, every
    status (a search finds a proposal whatever became of it); else the review queue."""
    picked = request.GET.get(QueueStatusFilter.parameter_name)
    if picked:
        return picked
    if search_words(request.GET.get(SEARCH_VAR, "")):
        return EVERY_STATUS
    return ProposalStatus.PENDING_REVIEW


class KnownValuesOnly:
    """A value the filter does not know (``?status=bogus``, ``?risk=hihg``) is refused saying
    so, as the list refuses one a field cannot read: it showed an empty list ("0 proposals",
    as if there were none) or, for the risk, every proposal, as if filtered."""

    def known_values(self) -> list[str]:
        return [str(value) for value, _ in self.lookup_choices]

    def refuse_unknown(self, value: str | None) -> None:
        if value and value not in self.known_values():
            raise IncorrectLookupParameters(
                f"“{value}” is not one of the {self.title} values it knows: "
                + ", ".join(self.known_values())
                + "."
            )


class QueueStatusFilter(KnownValuesOnly, admin.SimpleListFilter):
    """Status, defaulting to the review queue (what waits for a human), or to every status
    when searching."""

    title = "status"
    parameter_name = "status"

    def __init__(self, request, params, model, model_admin):
        self.current = listed_status(request)
        super().__init__(request, params, model, model_admin)

    def lookups(self, request, model_admin):
        return [
            (value, "Submitted, not routed yet" if value == SUBMITTED else label)
            for value, label in ProposalStatus.choices
            if value != SUBMITTED or self.offers_submitted()
        ] + [(EVERY_STATUS, "All")]

    def offers_submitted(self) -> bool:
        """A proposal is routed in the request that submits it, in the same transaction, so
        none is stored as submitted but those an older release left to be evaluated after its
        answer, until the stall sweep evaluates them (``proposals_requeue_stalled``):
        "Submitted" is offered while some is, or while it is the status picked. One probe of
        the queue's index on the status."""
        return self.current == SUBMITTED or Proposal.objects.filter(status=SUBMITTED).exists()

    def choices(self, changelist):
        # "Show counts": how many each status holds within the other filters, as each other
        # filter's choices say (Django's own counting would apply ``queryset``, which reads
        # the status from the request, not from the choice it counts).
        counts = self.get_facet_queryset(changelist) if changelist.add_facets else None
        for index, (value, label) in enumerate(self.lookup_choices):
            yield {
                "selected": self.current == value,
                "query_string": changelist.get_query_string(
                    {self.parameter_name: value, ORDER_VAR: ordering_carried(changelist, value)}
                ),
                "display": label if counts is None else f"{label} ({counts[f'{index}__c']})",
            }

    def get_facet_counts(self, pk_attname, filtered_qs):
        return {
            f"{index}__c": models.Count(
                pk_attname, filter=None if value == EVERY_STATUS else models.Q(status=value)
            )
            for index, (value, _) in enumerate(self.lookup_choices)
        }

    def queryset(self, request, queryset):
        self.refuse_unknown(self.current)
        if self.current == EVERY_STATUS:
            return queryset
        return queryset.filter(status=self.current)


def ordering_carried(changelist, status: str) -> str | None:
    """The list's sort (``?o=``, by the columns' places) as the list of ``status`` reads it:
    each sorted column at its place there, one that list does not show dropped (None if none
    is left). The queue sorted by decision due (``o=4``) carried it to the other statuses'
    lists, whose fourth column is another: a status shows its own columns
    (``list_display_for``)."""
    asked = changelist.params.get(ORDER_VAR)
    if not asked:
        return None
    shown = changelist.list_display
    there = changelist.model_admin.list_display_for(status)
    if shown[:1] == ["action_checkbox"]:  # the bulk actions' column, first where there are any
        there = ["action_checkbox", *there]
    kept = []
    for part in asked.split("."):
        _, descending, place = part.rpartition("-")
        try:  # read as Django's list reads it (``ChangeList.get_ordering``): "²" is no place
            column = shown[int(place)]
        except (IndexError, ValueError):
            continue
        if column in there and changelist.get_ordering_field(column):
            kept.append(f"{descending}{there.index(column)}")
    return ".".join(kept) or None


class OneRecordFilter(KnownValuesOnly, admin.SimpleListFilter):
    """The proposals of one record a link names (``?kill_switch=3``), offered only when a link
    asks for it: one it does not know is refused, not dropped (the list showed every
    proposal, as if filtered, for ``?kill_switch=99``)."""

    model: type[models.Model]
    named: str

    def has_output(self) -> bool:
        return bool(self.value()) or super().has_output()

    def lookups(self, request, model_admin):
        asked = id_asked(request.GET.get(self.parameter_name, ""))
        found = self.model.objects.filter(pk=asked).first() if asked is not None else None
        return [(str(found.pk), str(found))] if found is not None else []

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        if self.value() not in self.known_values():
            raise IncorrectLookupParameters(f"there is no {self.named} #{self.value()}.")
        return self.of(queryset, self.model.objects.get(pk=self.value()))

    def of(self, queryset, record):
        raise NotImplementedError


class KillSwitchRecordFilter(OneRecordFilter):
    """The proposals of one kill switch, named as it is now and by what else it covered in
    its history (``kill_switch_covered_before``): one moved since names, in the findings of
    the proposals it sent to a person, what it covered then ("The kill switch on account
    demo is engaged: …"), which the filter's "Kill switch on channel Meta (engaged)" did not
    say: a person looking for account demo's did not find it there."""

    model = KillSwitch
    named = "kill switch"

    def lookups(self, request, model_admin):
        asked = id_asked(request.GET.get(self.parameter_name, ""))
        found = self.model.objects.filter(pk=asked).first() if asked is not None else None
        if found is None:
            return []
        before = kill_switch_covered_before(found)
        said = str(found)
        if before:
            said = f"{said}, on {and_joined(before)} before"
        return [(str(found.pk), said)]


class SentByKillSwitchFilter(KillSwitchRecordFilter):
    """The proposals a kill switch sent to a person while engaged, as its history page lists
    them."""

    title = "kill switch that sent it to a person"
    parameter_name = "kill_switch"

    def of(self, queryset, record):
        sent = {each.proposal_id for each in proposals_sent_by_kill_switch(record)}
        return queryset.filter(pk__in=sent)


class HeldBackByKillSwitchFilter(KillSwitchRecordFilter):
    """The approved proposals a kill switch held back before they ran, or before their next
    attempt after one that got no sure answer (at the save that engaged it, or at an
    attempt), sent back to a person to approve again: what the message
    saying it was engaged counts as held back, linked to them. Its list of all it sent to a
    person (``?kill_switch=``) holds those it routed as they were made too."""

    title = "kill switch that held it back, approved, before it ran (or its next attempt)"
    parameter_name = HELD_BY_KILL_SWITCH

    def of(self, queryset, record):
        held = {
            each.proposal_id for each in proposals_sent_by_kill_switch(record) if each.held_back
        }
        return queryset.filter(pk__in=held)


class RoutedByPolicyFilter(OneRecordFilter):
    """The proposals a policy routed, in any of its versions: what a change of that policy
    leaves waiting as it was routed, as the policy's page and the message after its save link
    to them."""

    title = "policy that routed it"
    parameter_name = "policy"
    model = Policy
    named = "policy"

    def of(self, queryset, record):
        return queryset.filter(verdict_policy_id=record.pk)


class FailingAtNextAttemptFilter(OneRecordFilter):
    """The approved proposals not yet carried out (queued, or between attempts on their
    channel) that a policy's hard ceiling, lowered since they were routed, fails at their
    next attempt, as the runner fails them; for a draft, those routed by the policy it
    replaces that the draft's hard ceiling would fail once it is promoted: exactly those the
    policy's form, the message after its save and the draft's promotion page count. Switched
    off (or the policy a draft replaces switched off), it fails none."""

    title = FAILING_AT_NEXT_ATTEMPT_TITLE
    parameter_name = "ceiling_fails"
    model = Policy
    named = "policy"

    def lookups(self, request, model_admin):
        asked = id_asked(request.GET.get(self.parameter_name, ""))
        found = Policy.objects.filter(pk=asked).first() if asked is not None else None
        if found is None:
            return []
        said = failing_at_next_attempt_said(f"“{found.name}”", draft=found.is_draft)
        return [(str(found.pk), said)]

    def of(self, queryset, record):
        if record.is_draft:
            replaces = replaced_policy(record)
            if replaces is None or not (record.is_active and replaces.is_active):
                return queryset.none()
            failing = approved_draft_fails(replaces.pk, rule_from_policy(record))
        else:
            rule = rule_from_policy(record) if record.is_active else None
            failing = approved_failing(record.pk, rule)
        return queryset.filter(pk__in=failing.values("pk"))


class RiskFilter(KnownValuesOnly, admin.SimpleListFilter):
    title = "risk"
    parameter_name = "risk"
    bands = {"high": (70, 101), "medium": (40, 70), "low": (0, 40)}

    def lookups(self, request, model_admin):
        return [("high", "High (70+)"), ("medium", "Medium (40–69)"), ("low", "Low (under 40)")]

    def queryset(self, request, queryset):
        self.refuse_unknown(self.value())
        if self.value() not in self.bands:
            return queryset
        low, high = self.bands[self.value()]
        return queryset.filter(risk__gte=low, risk__lt=high)


class ActionTypeFilter(KnownValuesOnly, admin.SimpleListFilter):
    """The registered action types (not a DISTINCT over every proposal ever made)."""

    title = "action type"
    parameter_name = "action_type"

    def lookups(self, request, model_admin):
        return [(name, action_types.label(name)) for name in action_types.names()]

    def queryset(self, request, queryset):
        self.refuse_unknown(self.value())
        return queryset.filter(action_type=self.value()) if self.value() else queryset


class ChannelFilter(KnownValuesOnly, admin.SimpleListFilter):
    """The channels some account is on (not every channel the platform knows)."""

    title = "channel"
    parameter_name = "channel"

    def lookups(self, request, model_admin):
        return channels_with_accounts()

    def known_values(self) -> list[str]:
        return list(Channel.values)  # every channel, offered or not (its accounts gone since)

    def queryset(self, request, queryset):
        self.refuse_unknown(self.value())
        return queryset.filter(account__channel=self.value()) if self.value() else queryset


# Refusals a bulk decision lists one by one; the rest are counted.
REFUSALS_LISTED = 10


class RejectForm(forms.Form):
    reason_code = forms.ChoiceField(
        choices=[("", "— choose a reason —"), *RejectionReason.choices], label="Reason"
    )
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        max_length=NOTE_MAX_LENGTH,
        help_text="Sent to the agent as feedback, with the reason.",
    )


class OutcomeForm(forms.Form):
    effect = forms.ChoiceField(
        choices=[("", "— what did it do? —"), *OutcomeEffect.choices], label="Effect"
    )
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        max_length=NOTE_MAX_LENGTH,
        help_text="What you saw, for the agent: it receives this as feedback.",
    )


class WithdrawForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        max_length=NOTE_MAX_LENGTH,
        label="Why, for the agent",
        help_text="The agent receives this as feedback, with the withdrawal.",
    )


class ApproveForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        max_length=NOTE_MAX_LENGTH,
        help_text="Sent to the agent as feedback, with your approval.",
    )


# The forms of a proposal's page a refusal brings back as filled in, by their names in the
# page's context (the edit form is its action type's own: ``edit_form_for``).
REFUSABLE_FORMS: dict[str, type[forms.Form] | None] = {
    "approve_form": ApproveForm,
    "reject_form": RejectForm,
    "withdraw_form": WithdrawForm,
    "outcome_form": OutcomeForm,
    "edit_form": None,
}


def edits_shown(
    since: SinceProposed, form: ActionEditForm | None
) -> list[tuple[Decision, list[tuple[str, list[tuple[str, str]]]]]]:
    """Each decision that edited the proposal (``SinceProposed.edits``), with the fields it
    changed as the edit form names them, and their runs of words kept, removed and added, the
    values as the form writes them."""
    if form is None:
        return [
            (edit.decision, [(field.path, field.runs) for field in edit.fields])
            for edit in since.edits
        ]
    return [
        (
            edit.decision,
            [
                (form.label_for(field.path), form.runs_shown(field.path, field.runs))
                for field in edit.fields
            ],
        )
        for edit in since.edits
    ]


def _form_ids(shown_as: str | None) -> dict[str, str]:
    """The ids of a form's fields on a proposal's page ("id_approve-note"; the edit form's are
    "id_edit-…"): each form's own, so that each label names its own box; the names posted
    stay the forms' own."""
    if shown_as is None:
        return {}
    return {"auto_id": f"id_{shown_as.removesuffix('_form')}-%s"}


def _seen(request: HttpRequest, name: str = "seen") -> str | None:
    """The action as the page the decision was made on showed it (``payload_seen``); a
    decision from a page that has since gone stale (another reviewer edited the action) is
    refused rather than taken for the edited action. None if the decision sent none, or
    not one of a fingerprint's shape: it came from no page of ours (a script's post, a form
    made elsewhere), and is refused (``_not_from_its_page``) rather than taken unchecked."""
    seen = request.POST.get(name, "")
    return seen if SEEN_SHAPE.fullmatch(seen) else None


def _not_from_its_page(proposal_id: int) -> str:
    """The refusal of a decision that does not say how its page showed the action."""
    return (
        f"Nothing was decided: this decision did not come from proposal #{proposal_id}'s page "
        "as it was shown to you. Read the page as it is now, and decide again."
    )


# A refused form kept for the proposal's page to show after the redirect (``_refused_redirect``).
REFUSED_FORM_KEY = "refused-form-{}"


def _moved_on(error: DomainError) -> bool:
    """Whether a refusal says the proposal has moved on since its page was loaded (a
    colleague decided it, edited it, its window closed, its agent may no longer act), rather
    than that what was typed is wrong: the person has nothing to correct in the form, and the
    page to read is the proposal's as it is now."""
    return error.status_code in (403, 404, 409)


def _refused_redirect(request: HttpRequest, object_id: int, shown_as: str, form) -> HttpResponse:
    """The proposal's page after a refusal, by a redirect (Post/Redirect/Get): reloading it
    reads the page again rather than offering to send the refused form again. What was typed
    and the refusal beside it are kept in the session for that page to show once
    (``_refused_form``); the refusal itself is among the messages."""
    request.session[REFUSED_FORM_KEY.format(object_id)] = {
        "form": shown_as,
        "data": {
            name: request.POST.getlist(name)
            for name in request.POST
            if name != "csrfmiddlewaretoken"
        },
        "errors": {
            field: [error["message"] for error in errors]
            for field, errors in form.errors.get_json_data().items()
        },
    }
    return HttpResponseRedirect(reverse("admin:approvals_proposal_change", args=[object_id]))


# How many times a proposal's page is read before it is shown as last read: a proposal moves
# a few times a second at most (approved, executing, executed).
PAGE_READS = 3


def _last_moved(proposal_id: int) -> tuple | None:
    """A proposal's status and last change, which every move writes."""
    return Proposal.objects.filter(pk=proposal_id).values_list("status", "updated_at").first()


def _refused_form(request: HttpRequest, proposal: Proposal) -> dict[str, forms.Form]:
    """The form refused just before (``_refused_redirect``), as its reviewer filled it in,
    with its refusal beside it, by its name in the page's context; once: a later reload
    shows the page as it is."""
    kept = request.session.pop(REFUSED_FORM_KEY.format(proposal.pk), None)
    if not isinstance(kept, dict) or kept.get("form") not in REFUSABLE_FORMS:
        return {}
    data = QueryDict(mutable=True)
    for name, values in kept["data"].items():
        data.setlist(name, values)
    shown_as = kept["form"]
    if shown_as == "edit_form":
        form = edit_form_for(proposal, data)
        if form is None:
            return {}
    else:
        form = REFUSABLE_FORMS[shown_as](data, **_form_ids(shown_as))  # type: ignore[misc]
    form.is_valid()
    for field, said in kept["errors"].items():
        field = None if field == forms.forms.NON_FIELD_ERRORS else field
        if field is not None and field not in form.fields:
            continue
        for message in said:
            if message not in form.errors.get(field or forms.forms.NON_FIELD_ERRORS, []):
                form.add_error(field, message)
    return {shown_as: form}


def _what_happened(proposal: Proposal, *, not_done: str = "approved") -> str:
    """A single act's result, as it is: superseded says why, in the proposal's own words, and
    that the act (``not_done``: "approved", "sent to run again") was not done."""
    if proposal.status == ProposalStatus.SUPERSEDED:
        return f"Proposal #{proposal.pk} was not {not_done}. {proposal.verdict_reasons[0]}"
    if proposal.status == ProposalStatus.APPROVED:
        said = f"Proposal #{proposal.pk} is approved and sent to be executed."
        paused = paused_ran_said(campaigns_paused(proposal))
        return f"{said} {paused}" if paused else said
    if proposal.status == ProposalStatus.PENDING_REVIEW and proposal.approvals_this_round:
        return (
            f"Your approval is counted: proposal #{proposal.pk} has "
            f"{proposal.approvals_this_round} of {proposal.required_approvals} approvals and "
            "waits for another person's."
        )
    if proposal.withdrawn_by == WithdrawnBy.REVIEWER:
        return (
            f"Proposal #{proposal.pk} is withdrawn for {proposal.agent}; the agent learns it "
            f"as feedback{', with your note' if proposal.withdrawal_note else ''}."
        )
    return f"Proposal #{proposal.pk} {STATUS_REACHED[proposal.status]}."


def approval_logged(proposal: Proposal, *, edited: bool = False) -> str:
    """An approval as the console's log says it (``console_acts_logged``): what the reviewer
    did and what came of it, as the reviewer was told."""
    as_edited = " (as edited)" if edited else ""
    if proposal.status == ProposalStatus.SUPERSEDED:
        return "Not approved: superseded, its target had moved"
    if proposal.status == ProposalStatus.PENDING_REVIEW:
        return (
            f"Approved{as_edited}, {proposal.approvals_this_round} of "
            f"{proposal.required_approvals} approvals"
        )
    return f"Approved{as_edited}"


def rejection_logged(reason_code: str) -> str:
    return f"Rejected ({RejectionReason(reason_code).label.lower()})"


def retry_logged(proposal: Proposal) -> str:
    if proposal.status == ProposalStatus.APPROVED:
        return capfirst(SENT_TO_RUN_AGAIN)
    if proposal.status == ProposalStatus.SUPERSEDED:  # as an approval's is logged
        return f"Not {SENT_TO_RUN_AGAIN}: superseded, its target had moved"
    return f"{capfirst(SENT_TO_RUN_AGAIN)}: it {STATUS_REACHED[proposal.status]}"


def _refused(error: DomainError, proposal_id: int, act: Act) -> str:
    """A refused act's message; where a colleague ended the proposal's review first (it was
    rejected, approved or withdrawn since this page was loaded), who did it and when, as the
    Decisions table further down records it; a retry that came second, who retried it first."""
    if not isinstance(error, InvalidTransition):
        return error.message
    proposal = Proposal.objects.filter(pk=proposal_id).first()
    if act == Act.RETRY:
        # A colleague's retry came first: said as theirs ("Its execution failed, and
        # operator2 sent it to run again at …"), not left to read as an approval by nobody.
        # Only where it stands approved to run since: a retry long ago is not why it is refused.
        ran = proposal is not None and proposal.status in APPROVED_TO_RUN_STATUSES
        retried = retry_told(proposal, timezone.now()) if ran else ""
        return f"{error.message} {capfirst(retried)}." if retried else error.message
    ended = how_review_ended(proposal) if proposal is not None else ""
    return f"{error.message} {ended}" if ended else error.message


# The statuses whose page says, beside the status, how the review ended (a withdrawal says
# it in words of its own; an approval's decisions and execution say it below).
REVIEW_ENDED_BESIDE_STATUS = frozenset(
    {ProposalStatus.REJECTED, ProposalStatus.EXPIRED, ProposalStatus.SUPERSEDED}
)


def _review_ended_linked(proposal: Proposal) -> str:
    """``how_review_ended``, the proposal that superseded it (if one did) linked to its
    page."""
    mark = "\x00superseded by\x00"
    said = how_review_ended(proposal, named=lambda other: mark)
    before, named, after = said.partition(mark)
    if not named:
        return said
    by = proposal.superseded_by
    link = reverse("admin:approvals_proposal_change", args=[by.pk])
    return format_html('{}<a href="{}">#{}</a>{}', before, link, by.pk, after)


def _bulk_title(verb: str, deciding: int, selected: int) -> str:
    """A bulk confirmation's title, counting what its button decides ("Approve 3 of the 4
    proposals selected?"), not what was selected."""
    if deciding == selected:
        return f"{verb.capitalize()} {how_many(selected, 'proposal')}?"
    if not deciding:
        if selected == 1:
            return f"This proposal cannot be {verb}d now"
        return f"None of the {selected} proposals selected can be {verb}d now"
    return f"{verb.capitalize()} {deciding} of the {how_many(selected, 'proposal')} selected?"


def _listed(proposals) -> str:
    ids = [f"#{proposal.pk}" for proposal in proposals]
    return ", ".join(ids[:REFUSALS_LISTED]) + (
        f" and {len(ids) - REFUSALS_LISTED} more" if len(ids) > REFUSALS_LISTED else ""
    )


# What judged an edit's magnitude (``ProposalAdmin.magnitude_display``): its re-assessment by
# the policies in force when it was made, whose findings are among the reasons it is here.
EDIT_JUDGED = "re-assessed then by the policies in force (why it is here says what they found)"


def _auto_execute_ceiling(policy) -> Decimal | None:
    """A policy version's auto-execute ceiling; None where none applies (no policy matched,
    or it always asks a person)."""
    if policy is None or policy.always_review:
        return None
    return policy.auto_execute_max_magnitude


def _reassessed_under(proposal: Proposal) -> str:
    """What re-assessed a proposal, short, as its page's "Re-assessed at … under policy …"
    says it: "re-assessed under “Reallocations by optimizer”, version 1" where another version than
    the one that routed it judges it now, "re-assessed under no policy" where none matched
    it then, else "re-assessed" (by the version that routed it)."""
    if not reassessed_otherwise(proposal):
        return "re-assessed"
    under = reassessed_policy_ref(proposal)
    if under is None:
        return "re-assessed under no policy"
    number = f", version {under['number']}" if under["number"] else ""
    return f"re-assessed under “{under['name']}”{number}"


def _magnitude_against(as_written, magnitude, ceiling, held_by_cumulative: str | None) -> str:
    """A magnitude beside the ceiling that routed it (``ProposalAdmin.magnitude_display``)."""
    if held_by_cumulative and (ceiling is None or magnitude <= ceiling):
        return held_by_cumulative
    if ceiling is None:
        return as_written(magnitude)
    if magnitude <= ceiling:  # the ceiling let it through: it did not hold it
        return f"{as_written(magnitude)}, within {as_written(ceiling)}"
    return f"{as_written(magnitude)} / {as_written(ceiling)}"


# Said of a finding in an agent's words that a person's edit took out.
NOT_IN_THE_EDIT = "Found in the text as {agent} proposed it, not in it as edited."


def _guardrail_findings(
    proposal: Proposal, *, engaged_now: Collection[str], moved: Mapping[str, str] | None = None
) -> list[tuple[str, bool]]:
    """What the guardrails found when the proposal was routed, each with whether it still holds: a
    kill switch's no longer does once that switch is released (``engaged_now``: the switches engaged
    over its account now, engaged when they were recorded: ``kill_switches_engaged_then``), whatever
    became of the proposal since, and says so (``kill_switch_finding_now``: moved while engaged,
    where ``moved``, ``kill_switches_moved_off``, says so, it says that); what the brand guidelines
    found in its agent's words no longer does once an edit took it out (``_edited_out``), and says
    so: approving it runs the edit, not those words."""
    findings = proposal.guardrail_findings or {}
    recorded = [*findings.get("block", []), *findings.get("review", [])]
    edited_out = _edited_out(proposal, recorded)
    # A switch that held it back as it was about to run (an approved proposal) found it then,
    # not as it was routed: its reasons say so ("Held back before executing: the kill switch…",
    # or, recorded before, "…: The kill switch…"; "Held back before its next attempt: …" after
    # an attempt that got no sure answer).
    holds = [
        str(reason)
        for reason in proposal.verdict_reasons or ()
        if str(reason).startswith(HELD_BACK_ANY)
    ]
    said = []
    for finding in recorded:
        if finding in edited_out:
            said.append((f"{finding} {NOT_IN_THE_EDIT.format(agent=proposal.agent)}", False))
            continue
        held = [hold for hold in holds if held_back_by(hold, finding)]
        when = WHEN_ROUTED
        if held:
            between = held[0].startswith(HELD_BACK_BETWEEN)  # the latest hold naming it
            when = WHEN_HELD_BACK_BETWEEN if between else WHEN_HELD_BACK
        # That no kill switch covers it now is said once, below them, where they are read
        # (``_kill_switches_gone_said``), not at the end of each.
        now = kill_switch_finding_now(
            finding, engaged_now, when=when, moved=moved, none_covers_said=False
        )
        said.append((now, now == finding))
    return said


def confidence_said(proposal: Proposal) -> str:
    """The confidence its agent gave, as a person reads it (``ActionType.confidence_text``),
    of the payload as the agent made it (the queue's annotation, else its first routing's):
    an edit changes what runs, not what the agent meant."""
    if hasattr(proposal, "routed_payload"):
        payload = proposal.routed_payload
    else:
        payload = routings(proposal.pk).values_list("payload", flat=True).first()
    return action_types.named(proposal.action_type).confidence_text(
        proposal.confidence, payload or proposal.payload
    )


def _edited_out(proposal: Proposal, recorded: Collection[str]) -> frozenset[str]:
    """Those of a proposal's recorded findings that the brand guidelines find in its texts
    as its agent made them and not in them as a person edited them (none if it was not
    edited, or if it has no finding but a kill switch's). One the guidelines no longer find
    in either (they changed since) is not said to be taken out: it stands as recorded."""
    if all(finding.startswith(KILL_SWITCH_FINDING) for finding in recorded):
        return frozenset()
    if hasattr(proposal, "routed_payload"):  # the queue's annotation
        routed_payload = proposal.routed_payload
    else:
        routed_payload = routings(proposal.pk).values_list("payload", flat=True).first()
    return brand_findings_taken_out(proposal, before=routed_payload, after=proposal.payload)


def _kill_switches_engaged_over(proposal: Proposal) -> list[KillSwitch]:
    """The kill switches engaged over a proposal's account now, every one (two of one scope,
    each with its reason): as the queue read them once for all its rows
    (``QueueChangeList``), else read."""
    engaged = getattr(proposal, "kill_switches_engaged_now", None)
    if engaged is None:
        return engaged_kill_switches(proposal.account)
    return engaged


def _kill_switches_moved_off(proposal: Proposal) -> Mapping[str, str]:
    """What engaged switches covered earlier in their run and were moved off, with what each
    covers now (``kill_switches_moved_off``): as the list read them once for all its rows,
    else read."""
    moved = getattr(proposal, "kill_switches_moved_off", None)
    return kill_switches_moved_off() if moved is None else moved


def _switch_gone_said(finding: str, moved: Mapping[str, str]) -> str:
    """A list's mark for a kill switch's finding that no longer holds (``_guardrail_findings``):
    moved while engaged to cover something else, or released."""
    for named, to in moved.items():
        if finding.startswith(f"{named} was engaged "):
            return f"kill switch moved to {to}"
    return "kill switch released"


def _kill_switches_named_now(proposal: Proposal) -> frozenset[str]:
    """The kill switches engaged over a proposal's account now, as its findings name them
    (``kill_switch_names``): those engaged, in their run now, when its findings were
    recorded. One engaged since on the same scope (or the same switch engaged again) is not
    the switch they name, released since (``kill_switches_engaged_then``)."""
    engaged = kill_switches_engaged_then(
        _kill_switches_engaged_over(proposal),
        _kill_switch_runs(proposal),
        recorded_at=kill_switch_findings_recorded_at(proposal),
    )
    return frozenset().union(*map(kill_switch_names, engaged))


def _reasons_now(proposal: Proposal, reasons, *, none_covers_said: bool = True) -> list[str]:
    """Reasons recorded with a proposal as they stand now: a kill switch released since it
    was routed, or since it held the proposal back before executing, reads as engaged then
    and released since, wherever a person reads them (``held_back_reason_now``). One that a
    proposal approved ahead of it made reads as a person is told it, naming each proposal by
    id, where its routing recorded so (``named_for_people``: its agent was told another
    agent's proposal, or an earlier item of its batch, without it). Where no kill switch
    covers it now, each says so, unless ``none_covers_said`` is false: its page says it once,
    below them (``_kill_switches_gone_said``)."""
    engaged_now = None
    named = named_for_people(proposal.guardrail_findings)
    said = []
    for reason in reasons or ():
        reason = named.get(str(reason), reason)
        if str(reason).startswith((KILL_SWITCH_FINDING, *HELD_BACK_ANY)):
            if engaged_now is None:
                engaged_now = _kill_switches_named_now(proposal)
            if str(reason).startswith(HELD_BACK_ANY):
                waits = proposal.status == ProposalStatus.PENDING_REVIEW
                reason = held_back_reason_now(
                    str(reason), engaged_now, waits=waits, none_covers_said=none_covers_said
                )
            elif kill_switch_named_in(str(reason)) in engaged_now:
                pass  # as recorded: its switch is engaged now
            else:  # released since, or moved while engaged to cover something else
                moved = _kill_switches_moved_off(proposal)
                reason = kill_switch_finding_now(
                    str(reason), engaged_now, moved=moved, none_covers_said=none_covers_said
                )
        else:
            reason = changed_first_now(reason)
        said.append(reason)
    return said


def _routed_reasons(proposal: Proposal) -> list:
    """Why the proposal came to a person, as recorded (``routing_reasons``: its routing, or
    its re-routing before executing, which sent to a person one its first routing let run);
    none where its reasons still say all of it, as the agent's client tells it only then
    (``hitl_client``'s ``routed_told``)."""
    routed = routing_reasons([proposal]).get(proposal.pk, [])
    if all(reason in proposal.verdict_reasons for reason in routed):
        return []
    return routed


# The other proposals a page names as ended by approving one: the first ones, and how many
# more (an agent's thousands on one bid would make every approver's page megabytes).
ENDS_LISTED = 10


@dataclasses.dataclass(frozen=True)
class Ends:
    lines: list[str]
    count: int

    @property
    def more(self) -> int:
        return self.count - len(self.lines)


# Where a proposal's last round on a channel may have resumed a held one as a new request.
RESUMED_SAID_STATUSES = (ProposalStatus.EXECUTING, ProposalStatus.EXECUTED, ProposalStatus.FAILED)


def _ends_when_executed(proposal: Proposal, *, besides: Collection[int] = ()) -> Ends:
    """The other proposals approving ``proposal`` would end once it executes (but those
    ``besides``: a bulk confirmation's own rows say what becomes of those selected with it),
    the first ``ENDS_LISTED`` each in a line (whose it is, where it stands, and the value it
    was made against that this one changes), and how many in all."""
    ended = [
        (other, moves)
        for other, moves in proposals_its_execution_would_end(proposal)
        if other.pk not in besides
    ]
    said = []
    for other, moves in ended[:ENDS_LISTED]:
        standing = other.get_status_display().lower()
        if other.approvals_this_round:
            standing += (
                f", {other.approvals_this_round} of {other.required_approvals} approvals given"
            )
        against = "; ".join(
            f"{move.campaign}'s {campaign_field_label(move.field)} "
            f"{campaign_value_label(move.field, move.saw)}, which this one sets to "
            f"{campaign_value_label(move.field, move.now)}"
            for move in moves
        )
        said.append(
            f"#{other.pk}, {other.summary} ({other.agent}, {standing}): made against {against}."
        )
    return Ends(lines=said, count=len(ended))


def _kill_switches_gone_said(proposal: Proposal, reasons: Iterable) -> str:
    """Where the reasons a proposal's page lists (``reasons``, as recorded: why it is here,
    why it came to a person as proposed), or the findings the queue's mark quotes, name kill
    switches, none of which covers it now, that, said once, below them, with what became of
    them, as its messages say it (``kill_switches_gone_said``); "" otherwise. The switches
    engaged over it, and those moved off what they covered, as the queue read them for all
    its rows, else read (only where a reason names a switch)."""
    reasons = [str(reason) for reason in reasons or ()]
    if not any(reason.startswith((KILL_SWITCH_FINDING, *HELD_BACK_ANY)) for reason in reasons):
        return ""
    engaged_now = _kill_switches_named_now(proposal)
    moved = {} if engaged_now else _kill_switches_moved_off(proposal)
    return kill_switches_gone_said(reasons, engaged_now, moved=moved)


# What the queue says after a kill switch's finding engaged since the proposal was routed.
ENGAGED_SINCE_ROUTED = "Engaged since it was routed; a person's approval still lets it run."


# The queue's Guardrail column, where a guardrail (a cap, a lock) or its policy's hard ceiling
# refuses the row now: its summary's mark says what ("A guardrail refuses it now, as proposed:
# …"), once.
def refuses_now_flag(reasons) -> str:
    """The queue's mark of a proposal whose approval is refused now, naming who refuses it
    (``refuses_now``): "A guardrail refuses it now: see its summary", "The hard ceiling of
    the policy that routed it refuses it now: see its summary"."""
    said = refuses_now(reasons)
    return f"{said[:1].upper()}{said[1:]}: see its summary"


def _kill_switches_engaged_since(proposal: Proposal) -> list[str]:
    """The kill switches engaged over a proposal that still waits which were not when it was
    routed (its reasons do not name them), each as a finding says it: an operator deciding it
    learns the policy owners stopped automatic execution there since."""
    if proposal.status != ProposalStatus.PENDING_REVIEW:
        return []
    # A switch is known by any name its findings gave it in its run engaged, as its finding
    # opens ("The kill switch on account demo (#2) is engaged: "), whatever its reason says
    # now: one moved since onto its channel is the switch that routed it, said once, as
    # moved, not again as engaged since.
    engaged = _kill_switches_engaged_over(proposal)
    found = kill_switches_found_in(
        (proposal.guardrail_findings or {}).get("review", []),
        engaged,
        _kill_switch_runs(proposal),
        recorded_at=kill_switch_findings_recorded_at(proposal),
    )
    return [kill_switch_reason(switch) for switch in engaged if switch.pk not in found]


def _kill_switch_runs(proposal: Proposal) -> Mapping[int, KillSwitchRun]:
    """Each engaged switch's run (``kill_switch_runs``): as the list read them once for all
    its rows, else read."""
    runs = getattr(proposal, "kill_switch_runs", None)
    if runs is None:  # read once for its page, which asks it of each line
        runs = proposal.kill_switch_runs = kill_switch_runs()
    return runs


def _bulk_logged(
    verb: str, decided: Decided, *, reason_code: str = "", **form
) -> list[tuple[Proposal, str]]:
    """Each proposal a bulk decision decided, or superseded instead, as the console's log
    says it (``console_acts_logged``); those refused or held back were not acted on."""
    if verb == "reject":
        acts = [(proposal, rejection_logged(reason_code)) for proposal in decided.proposals]
    else:
        acts = [(proposal, approval_logged(proposal)) for proposal in decided.proposals]
    acts += [(proposal, approval_logged(proposal)) for proposal, _ in decided.superseded]
    return [(proposal, f"{said}, in bulk") for proposal, said in acts]


def _bulk_result(
    verb: str, decided: Decided, paused_each: dict[int, list[str]] | None = None
) -> list[tuple[int, str]]:
    """What a bulk decision did, counted by what will happen: what will execute (and, of
    those on campaigns paused now, by ``paused_each``, that it runs there all the same, left
    paused, as a single approval's message says), what waits for a further approval, what
    ended superseded, what was held back and what was refused, each with why."""
    said = []
    if verb == "reject":
        if decided.proposals:
            said.append(
                (
                    messages.SUCCESS,
                    f"Rejected {how_many(len(decided.proposals), 'proposal')}: "
                    f"{_listed(decided.proposals)}.",
                )
            )
    else:
        if decided.approved:
            said.append(
                (
                    messages.SUCCESS,
                    f"{how_many(len(decided.approved), 'proposal')} approved and sent to be "
                    f"executed: {_listed(decided.approved)}.",
                )
            )
            on_paused: dict[tuple[str, ...], list[Proposal]] = {}
            for proposal in decided.approved:
                paused = tuple((paused_each or {}).get(proposal.pk, ()))
                if paused:
                    on_paused.setdefault(paused, []).append(proposal)
            for paused, proposals in on_paused.items():
                said.append(
                    (
                        messages.INFO,
                        f"Proposal{'s' if len(proposals) > 1 else ''} {_listed(proposals)}: "
                        f"{paused_ran_said(paused)}",
                    )
                )
        if decided.awaiting:
            said.append(
                (
                    messages.INFO,
                    f"{how_many(len(decided.awaiting), 'proposal')} "
                    + (
                        "has your approval and waits"
                        if len(decided.awaiting) == 1
                        else "have your approval and wait"
                    )
                    + f" for another person's: {_listed(decided.awaiting)}.",
                )
            )
        if decided.superseded:
            said.append(
                (
                    messages.WARNING,
                    f"{how_many(len(decided.superseded), 'proposal')} superseded, not approved: "
                    + (
                        "its target moved since it was made"
                        if len(decided.superseded) == 1
                        else "their targets moved since they were made"
                    )
                    + f": {_listed(proposal for proposal, _ in decided.superseded)}.",
                )
            )
        for held in list(decided.held.values())[:REFUSALS_LISTED]:
            said.append((messages.WARNING, held.message))
    act = Act.REJECT if verb == "reject" else Act.APPROVE
    for error in decided.refused[:REFUSALS_LISTED]:
        # One a colleague decided (or its agent withdrew) since it was selected: who, how and
        # when, as a single refused decision says it.
        if isinstance(error, InvalidTransition):
            said.append((messages.WARNING, _refused(error, error.proposal_id, act)))
        else:
            said.append((messages.WARNING, error.message))
    unlisted = max(len(decided.refused) - REFUSALS_LISTED, 0) + max(
        len(decided.held) - REFUSALS_LISTED, 0
    )
    if unlisted:
        said.append((messages.WARNING, f"… and {how_many(unlisted, 'more proposal')} not decided."))
    return said


def policy_as_recorded(policy_id: int | None, version: int | None) -> str:
    """The policy a proposal's routing recorded, as it was then: its name in that version
    (``version``: its history record), with its id and its version's number among its own;
    never a name it took later."""
    if policy_id is None:
        return "—"
    name = Policy.history.filter(id=policy_id, history_id=version).values_list("name", flat=True)
    named = f"“{name[0]}” " if version is not None and name else ""
    number = version_number(policy_id, version)
    return f"{named}(policy #{policy_id}, version {number if number is not None else '?'})"


def reassessed_as_recorded(version: int | None) -> str:
    """The policy version a re-assessment was reached under (``version``: its history
    record), as ``policy_as_recorded`` says a routing's; "—" for none."""
    if version is None:
        return "—"
    policy_id = Policy.history.filter(history_id=version).values_list("id", flat=True).first()
    if policy_id is None:
        return f"a policy version no longer on record (record {version})"
    return policy_as_recorded(policy_id, version)


# A proposal's history names ``approved_at`` as what it is: when it was last approved to run
# (``ProposalHistoryValues``).
APPROVED_TO_RUN_AT = "Approved to run at"


def approved_at_said(record, value) -> str:
    """A version's ``value`` of ``approved_at`` as its history says it: the time it was
    approved to run, or, stamped by a person retrying its failed execution (``was_retried``),
    "sent to run again at" that time; "—" if it was not approved to run."""
    if value is None:
        return "—"
    when = console_time(value)
    return f"{SENT_TO_RUN_AGAIN} at {when}" if was_retried(record) else when


class ProposalHistoryValues(ConsoleHistoryValues):
    """A proposal's changes as recorded: the deciding policy under the name it had in the
    version that routed it; the guardrails' findings, the verdict's reasons and the rules that
    held it as sentences; its magnitude as the queue writes it (16.0%, not 0.160000)."""

    def context_for_delta_changes(self, delta):
        # The version that routed it reads within the deciding policy's line ("version 1",
        # as the policy numbers them), not again as a line of its own giving its record's id.
        if any(change.field == "verdict_policy" for change in delta.changes):
            changes = [c for c in delta.changes if c.field != "verdict_policy_version"]
            delta = dataclasses.replace(delta, changes=changes)
        return super().context_for_delta_changes(delta)

    def prepare_delta_change_value(self, change, value):
        if change.field == "magnitude" and value is not None:  # as the queue writes it
            return action_types.named(self.delta.new_record.action_type).magnitude_text(value)
        if change.field == "amount" and value is not None:  # "280.00 USD", as its page says
            return f"{value} {self.delta.new_record.account.currency}"
        return super().prepare_delta_change_value(change, value)

    def format_delta_change(self, change):
        if change.field == "approved_at":
            # One change, of one field, read as what happened: a retry stamps it anew (its
            # moves count from then), "Approved to run at: 12:04:58 UTC → sent to run again
            # at 12:11:19 UTC". Read as "Approved at: 12:04:58 → 12:11:19" it moved the
            # approval to when nobody approved it again; split in two, "Sent to run again at:
            # — → 12:11:19", it said the field had no value before, and never that the
            # approval's time was written over.
            return dataclasses.replace(
                change,
                field=APPROVED_TO_RUN_AT,
                old=approved_at_said(self.delta.old_record, change.old),
                new=approved_at_said(self.delta.new_record, change.new),
            )
        formatted = super().format_delta_change(change)
        if change.field == "reassessed_policy_version":
            # A history record's id, which read as a version number the policy never had
            # ("— → 2" of a policy saved once): the version it names, as the routing's reads.
            return dataclasses.replace(
                formatted,
                old=reassessed_as_recorded(change.old),
                new=reassessed_as_recorded(change.new),
            )
        # The policy's version alone changes when the same policy routes it again (re-routed
        # before executing): its versions read as the policy's line does, not as record ids.
        if change.field not in ("verdict_policy", "verdict_policy_version"):
            return formatted
        old, new = (
            policy_as_recorded(record.verdict_policy_id, record.verdict_policy_version)
            for record in (self.delta.old_record, self.delta.new_record)
        )
        return dataclasses.replace(formatted, old=old, new=new)

    def json_in_words(self, field_name: str, value) -> str | None:
        if field_name == "effects" and isinstance(value, dict):  # each value's move, as a %
            try:
                moves = {
                    target: rounded_percent(Fraction(ratio) - 1, signed=True)
                    for target, ratio in value.items()
                }
            except (TypeError, ValueError, ZeroDivisionError):
                return None
            return ", ".join(f"{target} {move}" for target, move in moves.items())
        if field_name == "verdict_reasons" and isinstance(value, list):
            return " ".join(str(reason) for reason in value)
        if field_name == "verdict_held_by" and isinstance(value, list):
            return "; ".join(str(hold.get("text", "")) for hold in value if isinstance(hold, dict))
        if field_name == "guardrail_findings" and isinstance(value, dict):
            named = named_for_people(value)
            said = [
                f"{label}: {' '.join(named.get(str(f), str(f)) for f in value.get(key) or ())}"
                for key, label in (
                    ("block", "Refuses"),
                    ("review", "Sends to a person"),
                    ("changed_first", "Changed first"),
                )
                if value.get(key)
            ]
            return "; ".join(said) or None
        return None


class QueueChangeList(ConsoleChangeList):
    """The queue, each row given the kill switches engaged over it now, read in one query for
    all of them: its Guardrail column says what each switch found (and which were engaged
    since it was routed) without a query a row. Every switch, not the first of each scope:
    two engaged over one account, each with its own reason, are both told. And what has
    changed since each waiting or failed proposal was proposed that its execution would
    refuse (``no_longer_applies_each``), what a guardrail refuses about it now
    (``guardrail_blocks_counting_approved``), and whether its agent may still act
    (``agent_stopped``, its accounts read once for all), read once for the page: its summary
    says why it would not be let run, as its page does."""

    @property
    def params_searched(self) -> dict[str, str]:
        """The list's parameters as its search form carries them: a search lists every status
        unless one is picked (``listed_status``), and the queue's sort is carried to it by
        column (``ordering_carried``), as the status links carry it."""
        params = {name: value for name, value in self.params.items() if name != SEARCH_VAR}
        if ORDER_VAR in params:
            searched = params.get(QueueStatusFilter.parameter_name) or EVERY_STATUS
            carried = ordering_carried(self, searched)
            if carried:
                params[ORDER_VAR] = carried
            else:
                del params[ORDER_VAR]
        return params

    def get_results(self, request):
        super().get_results(request)
        engaged = kill_switches_told_apart(
            KillSwitch.objects.filter(engaged=True).select_related("account").order_by("pk")
        )
        retrying = retries_awaited(self.result_list)
        failing = failing_at_next_attempt(self.result_list)
        let_run = [proposal for proposal in self.result_list if proposal.status in LET_RUN_FROM]
        gone = no_longer_applies_each(let_run)
        guarded = guardrail_blocks_counting_approved(let_run, lock=False)
        agent_accounts = agent_accounts_of(let_run)
        moved = kill_switches_moved_off()
        runs = kill_switch_runs()
        for proposal in self.result_list:
            proposal.kill_switches_engaged_now = kill_switches_covering(engaged, proposal.account)
            proposal.kill_switches_moved_off = moved
            proposal.kill_switch_runs = runs
            proposal.retry_awaited = retrying.get(proposal.pk, "")
            proposal.fails_at_next_attempt = failing.get(proposal.pk, "")
            proposal.guardrail_refuses_now = guarded.get(proposal.pk, ())
            stopped = agent_stopped(proposal, agent_accounts) if proposal.pk in gone else ""
            proposal.let_run_refused_said = [
                said
                for said in (
                    agent_stopped_said(stopped) if stopped else "",
                    gone[proposal.pk].said() if proposal.pk in gone else "",
                    (
                        guardrail_refuses_said(proposal, guarded[proposal.pk])
                        if guarded.get(proposal.pk)
                        else ""
                    ),
                )
                if said
            ]


# How a proposal's timeline ends, by its status, after when it was decided: one that may
# still run says whether it has ("—", not yet), one under way when it started, one that
# failed when, one that ended otherwise when it did (a rejection or a block is its decision;
# an expiry, its window closing, said above). A person's retry is said before these.
_TIMELINE_ENDS: dict[str, list[str]] = {
    ProposalStatus.SUBMITTED: ["executed_at"],
    ProposalStatus.PENDING_REVIEW: ["executed_at"],
    ProposalStatus.APPROVED: ["executed_at"],
    ProposalStatus.EXECUTING: ["execution_started_at"],
    ProposalStatus.EXECUTED: ["executed_at"],
    ProposalStatus.FAILED: ["failed_at"],
    ProposalStatus.WITHDRAWN: ["withdrawn_at"],
    ProposalStatus.SUPERSEDED: ["superseded_at"],
}


def _timeline(proposal: Proposal) -> list[str]:
    """The rows of a proposal's timeline, each true of its status: a review expiry only while
    the review may still end by it (and when its window closed, for one that expired); when
    a person sent its failed execution to run again, and when the attempt before failed; and
    how it ended (``_TIMELINE_ENDS``): "Executed at: —" beside a failed one read as if
    nothing said when it failed."""
    expiry = (
        ["review_expires_at"]
        if proposal.status in MAY_STILL_BE_DECIDED_STATUSES
        else ["review_window_closed_at"]
        if proposal.status == ProposalStatus.EXPIRED
        else []
    )
    retried = ["failed_before_retry_at", "sent_to_run_again_at"] if was_retried(proposal) else []
    ends = _TIMELINE_ENDS.get(proposal.status, [])
    if retried and proposal.status == ProposalStatus.FAILED:
        ends = ["failed_again_at"]
    return ["created_at", "evaluated_at", *expiry, "decided_at", *retried, *ends]


def _run_times(proposal: Proposal):
    """``run_times``, read once for the page's timeline rows; a past version's as its
    attempts stood when it was recorded (``version_recorded_at``)."""
    if not hasattr(proposal, "_run_times"):
        proposal._run_times = run_times(proposal, as_of=version_recorded_at(proposal))
    return proposal._run_times


def _time_or_none(value) -> str | None:
    # As the timeline's fields write their times (a method's datetime reads raw); none is
    # said as the admin says an empty field.
    return console_time(value) if value is not None else None


# Supporting data longer than this, laid out, opens folded (its box holds about as many).
SUPPORTING_DATA_FOLDED_PAST_LINES = 30


@admin.register(Proposal)
class ProposalAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "summary_shown",
        "guardrail_flag",
        "status_shown",
        "action_type_display",
        "agent",
        "account",
        "magnitude_display",
        "approvals_display",
        "risk",
        "age",
    ]
    list_display_links = ["id", "summary_shown"]
    list_filter = [
        QueueStatusFilter,
        SentByKillSwitchFilter,
        HeldBackByKillSwitchFilter,
        RoutedByPolicyFilter,
        FailingAtNextAttemptFilter,
        RiskFilter,
        ActionTypeFilter,
        "agent",
        "account",
        ChannelFilter,
    ]
    list_select_related = ["agent", "account", "verdict_policy"]
    # QUEUE_ORDER, the bulk confirmation's: riskiest, then oldest, then first made (a batch's
    # proposals share one creation time; the admin alone would break that tie by "-pk", newest
    # first). The id goes in as an expression, not "id": the ID column's header is not marked
    # as a sort the operator chose, nor carried into the order the headers' links ask for.
    ordering = [
        "-risk",
        "created_at",
        models.ExpressionWrapper(models.F("id"), output_field=models.BigIntegerField()),
    ]
    # What ``approvals.search`` reads (it does the searching, with an index on PostgreSQL).
    search_fields = [
        "=id",
        "summary",
        "rationale",
        "external_ref",
        "payload",
        "verdict_reasons",
        "action_type",
        "agent__name",
    ]
    search_help_text = (
        "Finds words in the agent's name, the campaigns, the action type, the creatives' text, "
        "the rationale, the policy's reasons, the external ref, the summary, or an id (#123). "
        "A search looks in every status unless you pick one."
    )
    list_per_page = 50
    paginator = CappedCountPaginator
    actions = ["approve_selected", "reject_selected"]
    change_form_template = "admin/approvals/proposal/change_form.html"
    bulk_decision_template = "admin/approvals/proposal/bulk_decision.html"
    # How the title says a column's sort (``order_in_words``).
    sorted_in_words = SORTED_IN_WORDS
    history_values = ProposalHistoryValues
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "summary",
                    "status",
                    "agent",
                    "account",
                    "action_type_display",
                    "external_ref",
                ]
            },
        ),
        (
            "What the agent says",
            {"fields": ["rationale", "confidence_display", "supporting_data_display"]},
        ),
        (
            "What the platform derived",
            {"fields": ["magnitude_display", "amount_display", "risk", "required_approvals"]},
        ),
        (
            "Timeline",
            {
                "fields": [
                    "created_at",
                    "evaluated_at",
                    "review_expires_at",
                    "decided_at",
                    "executed_at",
                ]
            },
        ),
    ]

    def get_fieldsets(self, request, obj=None):
        """The timeline says what happened to it, each row true for its status
        (``_timeline``)."""
        if obj is None:
            return self.fieldsets
        return [
            (name, {**options, "fields": _timeline(obj)} if name == "Timeline" else options)
            for name, options in self.fieldsets
        ]

    @admin.display(description="review window closed at")
    def review_window_closed_at(self, proposal: Proposal) -> str:
        # As the timeline's fields write their times (a method's datetime reads raw).
        return console_time(proposal.review_expires_at)

    @admin.display(description="failed at")
    def failed_before_retry_at(self, proposal: Proposal) -> str | None:
        # Retried more than once, each failure a retry followed, in order, as the retries
        # beside it are ("… (attempt 1), then … (attempt 2)"): the last one's time alone read,
        # just before "… by operator", as if that was the failure operator retried.
        failures = [retry.failed for retry in self._retries_shown(proposal) if retry.failed]
        if len(failures) < 2:
            return _time_or_none(_run_times(proposal).failed_before_retry)
        return ", then ".join(
            f"{console_time(failure.finished_at)} (attempt {failure.attempt})"
            for failure in failures
        )

    @staticmethod
    def _retries_shown(proposal: Proposal) -> list:
        """Its retries up to the version shown (``version_recorded_at``), in order."""
        as_of = version_recorded_at(proposal)
        return [
            retry
            for retry in retries_of([proposal]).get(proposal.pk, [])
            if as_of is None or retry.at <= as_of
        ]

    @admin.display(description=f"{SENT_TO_RUN_AGAIN} at")
    def sent_to_run_again_at(self, proposal: Proposal) -> str | None:
        # A retry is its person's approval to run it, and the decisions below name only who
        # approved it first: each retry up to this version, in order, says who sent it
        # ("… by operator, then … by operator2"), not the last one's time alone.
        retries = self._retries_shown(proposal)
        if not retries:
            return _time_or_none(_run_times(proposal).retried)
        return ", then ".join(f"{console_time(retry.at)} by {retry.by}" for retry in retries)

    @admin.display(description="execution started at")
    def execution_started_at(self, proposal: Proposal) -> str | None:
        return _time_or_none(_run_times(proposal).started)

    @admin.display(description="failed at")
    def failed_at(self, proposal: Proposal) -> str | None:
        return _time_or_none(_run_times(proposal).failed)

    @admin.display(description="failed again at")
    def failed_again_at(self, proposal: Proposal) -> str | None:
        return self.failed_at(proposal)  # the same time, after a retry

    @admin.display(description="withdrawn at")
    def withdrawn_at(self, proposal: Proposal) -> str | None:
        withdrawal = withdrawal_seen(proposal)
        return _time_or_none(withdrawal.at if withdrawal is not None else None)

    @admin.display(description="superseded at")
    def superseded_at(self, proposal: Proposal) -> str | None:
        # When it was found superseded, as its history records the move and the status line
        # says it (``superseded_said``), read with the page's proposal: not its last write's.
        return _time_or_none(ended_recorded_at(proposal))

    def get_queryset(self, request):
        routed_by = Policy.history.filter(
            history_id=OuterRef("verdict_policy_version"), always_review=False
        )
        # Its first routing, as its agent proposed it: an edit's re-assessment replaces the
        # magnitude and the holds on the proposal itself (``magnitude_display``).
        first_routing = routings(OuterRef("pk"))

        # What judges it since a re-assessment under another version (``magnitude_display``).
        reassessed_under = Policy.history.filter(
            history_id=OuterRef("reassessed_policy_version"), always_review=False
        )
        # When it ended, as its history records it, for its page's status line and timeline
        # (``ended_recorded_at``), and a bulk confirmation's "decided since" line, in this read.
        proposals = with_ended_recorded(with_reassessed_policy(super().get_queryset(request)))
        return proposals.annotate(
            deciding_ceiling=Subquery(routed_by.values("auto_execute_max_magnitude")[:1]),
            reassessed_ceiling=Subquery(reassessed_under.values("auto_execute_max_magnitude")[:1]),
            routed_payload=Subquery(
                first_routing.values("payload")[:1], output_field=models.JSONField()
            ),
            routed_magnitude=Subquery(first_routing.values("magnitude")[:1]),
            routed_held_by=Subquery(
                first_routing.values("verdict_held_by")[:1], output_field=models.JSONField()
            ),
        )

    def get_changelist(self, request, **kwargs):
        return QueueChangeList

    def get_search_results(self, request, queryset, search_term):
        refuse_nul_in_search(search_term)
        return proposals_matching(queryset, search_term), False

    def get_ordering(self, request):
        # Every status at once is history: newest first, which an index serves.
        if listed_status(request) == EVERY_STATUS:
            return ["-created_at"]
        return super().get_ordering(request)

    @admin.display(description="summary", ordering="summary")
    def summary_shown(self, proposal: Proposal) -> str:
        """Its summary; under it, for one waiting or failed that would not be let run as
        proposed, why, in its page's words ("Cannot be let run: agent optimizer has been
        deactivated since it proposed it.", "Can no longer be applied as proposed: amount:
        Exceeds brand-search's daily budget of 350.00.", "A guardrail refuses it now, as
        proposed: brand-search's daily budget would be 710.00 USD, above its cap of 660.00
        USD."): it is not approved or retried as it is, and an operator selecting rows to
        approve together reads so before, not after (``QueueChangeList``: read once for the
        page)."""
        said = getattr(proposal, "let_run_refused_said", [])
        if not said:
            return proposal.summary
        return format_html(
            "{}{}",
            proposal.summary,
            format_html_join(
                "", '<span class="no-longer-applies">{}</span>', ((capfirst(s),) for s in said)
            ),
        )

    @admin.display(description="status", ordering="status")
    def status_shown(self, proposal: Proposal) -> str:
        """Its status; executing between attempts on its channel, with the last one's
        failure and when the next is due (``retries_awaited``, read for the page's rows)."""
        retrying = getattr(proposal, "retry_awaited", "")
        label = proposal.get_status_display()
        label = f"{label}: {retrying}" if retrying else label
        # Its next attempt fails it rather than run (``failing_at_next_attempt``): said, not
        # "attempt 2 is due at …" alone, as if it were to run then.
        failing = getattr(proposal, "fails_at_next_attempt", "")
        if not failing:
            return label
        return format_html('{} · <span class="fails-at-next-attempt">{}</span>', label, failing)

    @admin.display(description="guardrail")
    def guardrail_flag(self, proposal: Proposal) -> str:
        """What its guardrails found (a kill switch, a banned term) and, where one refuses it
        now (read for the queue's rows: its summary says what), that it does: the column read
        "—" under "A guardrail refuses it now, …"."""
        flag = self._guardrail_findings_flag(proposal)
        reasons = getattr(proposal, "guardrail_refuses_now", ())
        if not reasons:
            return flag
        # Who refuses it: a policy's hard ceiling lowered since is no guardrail.
        return format_html(
            '<span class="guardrail-refuses-now">{}</span>{}',
            refuses_now_flag(reasons),
            format_html(" {}", flag) if flag else "",
        )

    def _guardrail_findings_flag(self, proposal: Proposal) -> str:
        moved = _kill_switches_moved_off(proposal)
        findings = _guardrail_findings(
            proposal, engaged_now=_kill_switches_named_now(proposal), moved=moved
        )
        # A switch engaged since it was routed is marked as its page notes it: an operator
        # approving from the list learns the policy owners stopped automatic execution there.
        found = [finding for finding, holds in findings if holds] + [
            f"{finding} {ENGAGED_SINCE_ROUTED}"
            for finding in _kill_switches_engaged_since(proposal)
        ]
        if not found:
            # Only a kill switch released since, or a banned term an edit took out: it still
            # explains why the proposal came to a person (and a switch, its risk as routed),
            # so it is said, without a warning.
            if not findings:
                return ""
            gone = dict.fromkeys(
                _switch_gone_said(finding, moved)
                if finding.startswith(KILL_SWITCH_FINDING)
                else "found as proposed, not as edited"
                for finding, _ in findings
            )
            # That no kill switch covers it now, said once below them, as its page says it.
            recorded = proposal.guardrail_findings or {}
            none_covers = _kill_switches_gone_said(
                proposal, [*recorded.get("block", []), *recorded.get("review", [])]
            )
            return format_html(
                '<span class="guardrail-released" title="{}">{}</span>',
                "\n".join([*(finding for finding, _ in findings), *filter(None, [none_covers])]),
                "; ".join(gone),
            )
        # What it found opens under the mark, by a click, a tap or Enter: a tooltip alone is
        # out of reach of the keyboard, of touch and of a screen reader.
        return format_html(
            '<details class="guardrail-flag" title="{}"><summary>⚠{}'
            '<span class="visually-hidden"> guardrail finding{}</span></summary>'
            '<ul class="guardrail-findings">{}</ul></details>',
            "\n".join(found),
            "" if len(found) == 1 else f" {len(found)}",
            "" if len(found) == 1 else "s",
            format_html_join("", "<li>{}</li>", ((finding,) for finding in found)),
        )

    @admin.display(description="action type", ordering="action_type")
    def action_type_display(self, proposal: Proposal) -> str:
        return action_types.named(proposal.action_type).listed_as

    @admin.display(description="money moved per day")
    def amount_display(self, proposal: Proposal) -> str:
        """The daily amount the action moves, in its account's currency ("280.00 USD"), as
        its summary writes it; the bare figure read as if it had no currency."""
        if proposal.amount is None:
            return "—"
        return f"{proposal.amount} {proposal.account.currency}"

    @admin.display(description="magnitude / ceiling that routed it", ordering="magnitude")
    def magnitude_display(self, proposal: Proposal) -> str:
        """The magnitude beside the auto-execute ceiling of the policy version that routed
        the proposal (not the policy as it reads today): annotated on the queue's rows,
        looked up for a single page or a history version. Where its verdict recorded that
        the cumulative ceiling held it though its own move is within the auto-execute one,
        the cumulative move beside the cumulative ceiling: what held it. Within the
        auto-execute ceiling, it says so ("6.0%, within 15.0%"): whatever sent it to a person,
        its size did not. Edited, the edit's magnitude and then the one that routed it, as
        its agent proposed it ("15.0% as edited, re-assessed …; 50.0% / 15.0% as proposed"):
        the edit's re-assessment replaced the proposal's, and alone it read as if its size had
        let it through. The edit's magnitude is said with what judged it, in words: no ceiling
        routed it, and "15.0% as edited" beside "/ ceiling" read as if one were left out.
        Re-assessed since (its figures moved), the magnitude and holds of that verdict beside
        the ceiling of the version it was reached under, saying so ("26.7% / 20.0%,
        re-assessed under “Reallocations by optimizer”, version 1"): the routing ceiling beside them
        read as if the policy that routed it still judged it, where its page says another
        governs it now."""
        as_written = action_types.named(proposal.action_type).magnitude_text
        if hasattr(proposal, "deciding_ceiling"):
            ceiling = proposal.deciding_ceiling
        else:
            ceiling = _auto_execute_ceiling(deciding_policy(proposal))
        if proposal.verdict_held_by is None:
            held_by = legacy_cumulative_figure_from_reasons(proposal.verdict_reasons or ())
        else:
            held_by = cumulative_figure(proposal.verdict_held_by)
        if hasattr(proposal, "routed_payload"):
            routed_payload, routed_magnitude, routed_held_by = (
                proposal.routed_payload,
                proposal.routed_magnitude,
                proposal.routed_held_by,
            )
        else:  # a history version's page
            routed_payload, routed_magnitude, routed_held_by = routings(proposal.id).values_list(
                "payload", "magnitude", "verdict_held_by"
            ).first() or (None, None, None)
        if routed_payload is not None and routed_payload != proposal.payload:
            routed = _magnitude_against(
                as_written, routed_magnitude, ceiling, cumulative_figure(routed_held_by or ())
            )
            return (
                f"{as_written(proposal.magnitude)} as edited, {EDIT_JUDGED}; {routed} as proposed"
            )
        if proposal.reassessed_at is None:
            return _magnitude_against(as_written, proposal.magnitude, ceiling, held_by)
        # Re-assessed (its figures moved): its magnitude and holds are that verdict's, judged
        # by the version it was reached under, which the change page names first.
        if reassessed_otherwise(proposal):
            if hasattr(proposal, "reassessed_ceiling"):
                ceiling = proposal.reassessed_ceiling
            else:
                ceiling = _auto_execute_ceiling(
                    Policy.history.filter(history_id=proposal.reassessed_policy_version).first()
                    if proposal.reassessed_policy_version
                    else None
                )
        said = _magnitude_against(as_written, proposal.magnitude, ceiling, held_by)
        return f"{said}, {_reassessed_under(proposal)}"

    @admin.display(description="approvals", ordering="approvals_this_round")
    def approvals_display(self, proposal: Proposal) -> str:
        """The approvals its review round counted of those it needed ("2 of 2"), while it
        waits and once it was decided, rejected or let expire, as it ended: before, a decided
        proposal read "—" here, as if nobody had approved it. One no person was asked about
        says why: the policy let it run, or refused it."""
        if proposal.review_round == 0:
            if proposal.verdict_outcome == VerdictOutcome.AUTO_APPROVE:
                return "none needed: auto-approved"
            if proposal.verdict_outcome == VerdictOutcome.BLOCK:
                return "none asked: blocked"
            return ""  # not routed yet
        given = f"{proposal.approvals_this_round} of {proposal.required_approvals}"
        if review_window_closed(proposal, timezone.now()):
            # Past its window, the expiry sweep not yet round: listed as it is (no read
            # expires it), and said to be decided by nobody any more.
            return format_html(
                '{} · <span class="review-window-closed">review window closed {}: nobody can '
                "decide it any more; expiring</span>",
                given,
                console_time(proposal.review_expires_at),
            )
        return given

    @admin.display(description="age", ordering="-created_at")  # youngest first, ascending
    def age(self, proposal: Proposal) -> str:
        # As the dashboard says the oldest waiting: rounded down to whole minutes, the queue
        # said "1 min" of the proposal the dashboard said had waited 1.8 min.
        return elapsed_said(timezone.now() - proposal.created_at)

    @admin.display(description="confidence")
    def confidence_display(self, proposal: Proposal) -> str:
        return confidence_said(proposal)

    @admin.display(description="supporting data")
    def supporting_data_display(self, proposal: Proposal) -> str:
        """The data as sent, laid out, in a box of its own that scrolls (by keyboard too: it
        takes the focus), under a line saying how much there is; folded when it is long. At
        its 64 KiB cap it is some 11,000 lines: laid out in the page, 150,000 px of JSON
        between the decision forms and the rest of the proposal's record (what the platform
        derived, its timeline, decisions, who was told, executions)."""
        if not proposal.supporting_data:  # sent as {} or not at all: said, not shown as "{}"
            return f"None: {proposal.agent} sent no supporting data with this proposal."
        laid_out = json.dumps(proposal.supporting_data, indent=2)
        lines = laid_out.count("\n") + 1
        size = len(json.dumps(proposal.supporting_data, separators=(",", ":")))  # as capped
        return format_html(
            '<details id="supporting-data"{}><summary>As {} sent it: {} of JSON, {}</summary>'
            '<pre tabindex="0" role="region" aria-label="Supporting data as {} sent it">{}</pre>'
            "</details>",
            "" if lines > SUPPORTING_DATA_FOLDED_PAST_LINES else " open",
            proposal.agent,
            f"{size / 1024:.1f} KiB" if size >= 1024 else f"{size} bytes",  # {} is not shown
            f"{lines:,} lines",
            proposal.agent,
            laid_out,
        )

    class Media:
        css = {"all": ["approvals/console.css"]}
        js = ["approvals/follow_status.js", "approvals/refusal_focus.js"]

    def get_list_display(self, request):
        return self.list_display_for(listed_status(request))

    def list_display_for(self, status: str) -> list:
        """The columns of the list of proposals of ``status`` (``listed_status``)."""
        if status == ProposalStatus.PENDING_REVIEW:  # say it once, in the title
            return [field for field in self.list_display if field != "status_shown"]
        return self.list_display

    def changelist_view(self, request, extra_context=None):
        status = listed_status(request)
        words = search_words(request.GET.get(SEARCH_VAR, ""))
        if words:
            where = (
                "in every status"
                if status == EVERY_STATUS
                else f"with status {dict(ProposalStatus.choices).get(status, status).lower()}"
            )
            # Each word as an address's words are quoted back: a direction override in a
            # search sent as a link turned the title's own words around.
            title = f"Proposals matching {' and '.join(map(address_quoted, words))}, {where}"
        elif status == ProposalStatus.PENDING_REVIEW:
            title = "Review queue: proposals waiting for a decision"
        else:
            title = "Proposals"
        response = super().changelist_view(request, {"title": title, **(extra_context or {})})
        context = getattr(response, "context_data", None) or {}
        # The queue's title says the order it shows, once the list has read the sort asked
        # for (not on a bulk action's confirmation page, which has a title of its own).
        if not words and status == ProposalStatus.PENDING_REVIEW and "cl" in context:
            context["title"] = f"{context['title']}, {order_in_words(context['cl'])}"
        return response

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(DECIDE_PERMISSION)

    # --- the detail page: approve, reject, retry ---------------------------------------------
    def get_urls(self):
        def view(name: str, func):
            return record_page(
                f"{name}/", self.admin_site.admin_view(func), name=f"approvals_proposal_{name}"
            )

        return [
            *view("approve", self.approve_view),
            *view("edit-approve", self.edit_approve_view),
            *view("reject", self.reject_view),
            *view("retry", self.retry_view),
            *view("withdraw", self.withdraw_view),
            *view("outcome", self.outcome_view),
            *view("status", self.status_view),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """A proposal's page, read as of one moment: its parts are read one after another
        (its status for the heading, its fields, its executions as the page is drawn), and an
        execution committed between them made one page say "Approved" above "Succeeded" and
        the ledger's figures from before it ran. A page during which the proposal moved is
        read again (its status and its last change compared before and after: every move
        writes both, in the transaction that writes what the move did)."""
        proposal = self.get_object(request, object_id)
        if proposal is None or request.method != "GET":
            return self._proposal_page(request, object_id, form_url, extra_context)
        refused = _refused_form(request, proposal)  # once: it is taken from the session
        for _ in range(PAGE_READS):
            moved = _last_moved(proposal.pk)
            response = self._proposal_page(
                request, object_id, form_url, extra_context, refused=refused
            )
            if not isinstance(response, TemplateResponse):
                return response
            response.render()
            if _last_moved(proposal.pk) == moved:
                break
        return response

    def _proposal_page(self, request, object_id, form_url="", extra_context=None, refused=None):
        proposal = self.get_object(request, object_id)
        if proposal is None:  # the admin says so and goes back to the list
            return super().change_view(request, object_id, form_url, extra_context)
        routed_by = deciding_policy(proposal) if proposal.verdict_policy_id else None
        edit_form = edit_form_for(proposal)
        number_then = routed_by and version_number(routed_by.id, routed_by.history_id)
        number_now = routed_by and versions_count(routed_by.id)
        unit = action_types.named(proposal.action_type).magnitude_unit
        terms_then = policy_terms(routed_by, unit)
        # Its policy's terms now, where it has changed since it routed this one: its reviewer
        # reads both (a waiting proposal keeps the routing it had, unless an edit or a move of
        # the ledger re-assessed it); a change undone since reads as the same terms.
        terms_now = (
            policy_terms(proposal.verdict_policy, unit) if number_then != number_now else None
        )
        # A re-assessment reached under another version than routed it: its reasons are that
        # verdict's, so the page names that version first, and the routing one after it.
        reassessed = None
        if reassessed_otherwise(proposal):
            under = (
                Policy.history.filter(history_id=proposal.reassessed_policy_version).first()
                if proposal.reassessed_policy_version
                else None
            )
            reassessed = {
                "at": proposal.reassessed_at,
                "policy": under,
                "number": under and version_number(under.id, under.history_id),
                "terms": policy_terms(under, unit),
            }
        # What has changed since it was proposed that its execution would refuse (a policy's
        # ceiling; the ledger, for a reallocation), read once for the page: its approval, its
        # edit, its retry and the line that says so ask it alike.
        # The moves approved before it and not yet run are read with the campaigns once: its
        # table says what they leave of the figures it draws on (``LedgerAhead``).
        ledger = LedgerAhead.read([proposal]) if proposal.status in LET_RUN_FROM else None
        gone = no_longer_applies_each([proposal], ledger=ledger) if ledger is not None else {}
        # What a guardrail refuses about it now (a cap or a lock set since it was made, or a
        # ledger or approvals not yet executed that have used a cap's headroom), read once:
        # said before its approval, and its retry refused for it (``proposal_retry``).
        guarded = (
            guardrail_blocks_counting_approved([proposal], lock=False)
            if proposal.status in LET_RUN_FROM
            else {}
        )
        refused_now = guarded.get(proposal.pk, ())
        approval_refused = act_refusal(request.user, proposal, Act.APPROVE, gone=gone)
        retry_refused = retry_refusal(request.user, proposal, gone=gone, guarded=guarded)
        # An edit may mend what the ledger refuses as proposed (a smaller amount): asked
        # apart only then; otherwise it is refused, or not, as the approval is.
        edit_refused = (
            act_refusal(request.user, proposal, Act.EDIT, gone=gone)
            if isinstance(approval_refused, NoLongerApplies)
            else approval_refused
        )
        withdrawal = withdrawal_seen(proposal)
        # Its last round on a channel, read once: whether it resumed a held one as a new
        # request, and what a retry could repeat.
        round_ = last_round(proposal) if proposal.status in RESUMED_SAID_STATUSES else None
        since = since_proposed(proposal)
        # Why it came to a person as the agent made it, where a re-assessment (an edit's, or
        # one after its figures moved) has replaced the verdict's reasons with its own: the
        # reasons of the routing that sent it to one, as its agent reads them
        # (``verdict.routed_reasons``; none where the reasons still say them, or where its
        # routing sent it to no person).
        routed = (
            _routed_reasons(proposal)
            if since.edited or proposal.verdict_outcome == VerdictOutcome.REVIEW
            else []
        )
        executions = _executions_said(proposal)
        # A value set against a figure that has moved since: retried, it ends superseded
        # there and then (``proposal_retry``), and nothing runs; said before the retry.
        retry_moves = (
            target_moves_each([proposal]).get(proposal.pk, [])
            if retry_refused is None and sets_values(proposal)
            else []
        )
        retry_ends_it = retry_ends_it_said(proposal, retry_moves) if retry_moves else ""
        # An amount moved from a budget that moved since it failed: its retry re-assesses it
        # from the ledger now (``executors.runner._reassessed``), read once for the page:
        # what its table says a retry would set, and what its policy's cumulative ceiling
        # holds of it so.
        retried = (
            assessed_as_retried(proposal)
            if proposal.status == ProposalStatus.FAILED and retry_refused is None
            else None
        )
        extra_context = {
            "proposal": proposal,
            "decisions": proposal.decisions.select_related("reviewer"),
            "executions": executions,
            # Its attempts as this page shows them, which it follows (``proposal_followed``).
            "attempts_shown": executions[-1].attempt if executions else 0,
            "last_attempt_shown": executions[-1].status if executions else "",
            # The key each attempt went to its channel with, in a column of its own only
            # where one did (none on Google Ads, which gets none).
            "executions_keyed": any(execution.key_sent for execution in executions),
            # Each attempt linked to its own page, for a reader who may open it.
            "attempts_linked": bool(executions)
            and self.admin_site.is_registered(Execution)
            and self.admin_site.get_model_admin(Execution).has_view_permission(request),
            # Why it failed, beside its status and the retry, not only in the executions below.
            "last_failure": last_failure(proposal),
            # The confidence its agent gave, as a person reads it (the platform's as a share).
            "confidence_said": confidence_said(proposal),
            # Executing between attempts on its channel: the last one's failure, and the next.
            "retry_awaited": retries_awaited([proposal]).get(proposal.pk, ""),
            # Approved, not yet carried out, above a hard ceiling of its policy lowered since:
            # its next attempt fails it rather than run, as the runner judges it.
            "fails_at_next_attempt": failing_at_next_attempt([proposal]).get(proposal.pk, ""),
            # A held round resumed as a new request (its endpoint changed while a kill
            # switch held it): the channel cannot tell it from the attempts sent before.
            "resumed_as_new": round_.resumed if round_ is not None else "",
            # What a retry would set, where it re-assesses it (the budget it draws on moved).
            "states": proposal_states(
                proposal,
                since=since,
                ahead=ledger.figures_ahead(proposal) if ledger is not None else (),
                retried=retried,
            ),
            # A campaign it touches paused (or gone) since: said before anyone decides, and,
            # to one who may let it run, that it runs there all the same, left paused.
            "campaigns_not_active": campaigns_not_active(proposal),
            # Not where approving or retrying it ends it superseded (a value it sets moved).
            "paused_still_runs": paused_still_runs_said(
                campaigns_paused(proposal)
                if (
                    (proposal.status == ProposalStatus.PENDING_REVIEW and approval_refused is None)
                    or (proposal.status == ProposalStatus.FAILED and retry_refused is None)
                )
                and not (sets_values(proposal) and target_moves_each([proposal]).get(proposal.pk))
                else [],
                act="retrying" if proposal.status == ProposalStatus.FAILED else "approving",
            ),
            # What its execution put in the ledger (a creative batch's), beside what it proposes.
            "deployed_creatives": deployed_creatives(proposal),
            # The policy version its execution wrote (a policy change's), as its history says.
            "policy_written": (
                policy_written(proposal)
                if proposal.action_type == "policy_change"
                and proposal.status == ProposalStatus.EXECUTED
                else None
            ),
            "ended": proposal.status in FINAL_STATUSES,
            # What its agent proposed and what became of it since, as its messages say it.
            "since": since,
            "routed_reasons": _reasons_now(proposal, routed, none_covers_said=False),
            # Why it is here, as recorded, each as it stands now (a kill switch released);
            # that no kill switch covers it now, said once below them (``kill_switches_gone``).
            "reasons_now": _reasons_now(proposal, proposal.verdict_reasons, none_covers_said=False),
            "deciding_policy": routed_by,
            # Where no policy routed it because its type always goes to a person (a policy
            # change): that fixed rule, not "none matched it".
            "always_human": getattr(action_types.get(proposal.action_type), "always_human", ""),
            "reassessed": reassessed,
            # Its terms are read from that version's record: one the last verification of
            # the audit chain found altered is said so beside them.
            "deciding_policy_break": routed_by
            and record_break_recorded(
                history=Policy.history.model,
                history_id=routed_by.history_id,
                broken=chain_broken_as_last_verified(request),
            ),
            "deciding_policy_number": number_then,
            "latest_policy_number": number_now,
            "policy_terms": terms_then,
            "policy_terms_now": terms_now,
            "policy_terms_same_now": terms_now == terms_then,
            "kill_switches_gone": _kill_switches_gone_said(
                proposal, [*(proposal.verdict_reasons or ()), *routed]
            ),
            "kill_switches_engaged_since": _kill_switches_engaged_since(proposal),
            "may_still_be_decided": proposal.status in MAY_STILL_BE_DECIDED_STATUSES,
            # Said as its messages say it (``withdrawn_said``), its note isolated on the page.
            "withdrawal": withdrawal,
            "withdrawal_said": withdrawn_said(withdrawal) if withdrawal is not None else "",
            "charts": numeric_series(proposal.supporting_data),
            "series_count": numeric_series_count(proposal.supporting_data),
            "what_if_chart": what_if_chart(proposal),
            "track_record": agent_track_record(
                agent=proposal.agent, action_type=proposal.action_type
            ),
            "earlier": earlier_proposals_on_targets(proposal=proposal),
            # The services' own rule: a button shows only where the server would take the act.
            "can_decide": approval_refused is None or may_act(request.user, proposal, Act.REJECT),
            "can_approve": approval_refused is None,
            "can_edit": edit_refused is None,
            # Where the buttons were for one who has approved it this round: said, not gone
            # without a word while it waits for another person's approval.
            "yours_this_round": (
                proposal.decisions.filter(
                    reviewer=request.user.pk, review_round=proposal.review_round
                ).first()
                if proposal.status == ProposalStatus.PENDING_REVIEW
                else None
            ),
            "approvals_still_needed": proposal.required_approvals - proposal.approvals_this_round,
            # Its agent may no longer act: said, as the approval or retry is not offered.
            "agent_stopped": next(
                (
                    refusal
                    for refusal in (approval_refused, retry_refused)
                    if isinstance(refusal, AgentMayNoLongerAct)
                ),
                None,
            ),
            # What it would change has changed since it was proposed (a policy's ceiling): said
            # to whoever reads it, with what it was then and what it is now, as the approval or
            # retry is not offered to one who may decide.
            "no_longer_applies": (
                no_longer_applies(proposal, Act.APPROVE, gone=gone)
                if proposal.status == ProposalStatus.PENDING_REVIEW
                else no_longer_applies(proposal, Act.RETRY, gone=gone)
                if proposal.status == ProposalStatus.FAILED
                else None
            ),
            # What an approval as proposed would be refused for now (a cap or a lock set since
            # it was made, or a ledger or approvals not yet executed that have used a cap's
            # headroom), said before the person tries: `proposal_approve` checks the same.
            "refused_as_proposed": (
                guardrail_refuses_said(proposal, refused_now)
                if proposal.status == ProposalStatus.PENDING_REVIEW and refused_now
                else ""
            ),
            # What an edit approved must keep within: the guardrail, its policy's hard ceiling.
            "edit_within": edit_within(refused_now) if refused_now else "",
            # Whose proposals approving it ends, once it executes, said before the person
            # approves: the same rule the execution supersedes them by.
            "ends_when_executed": (
                _ends_when_executed(proposal)
                if proposal.status == ProposalStatus.PENDING_REVIEW and approval_refused is None
                else None
            ),
            # Under the two-person rule, approvals it needs besides this person's.
            "approvals_after_yours": max(0, approvals_needed_after_one_more(proposal)),
            "can_withdraw": may_act(request.user, proposal, Act.WITHDRAW),
            "can_retry": retry_refused is None,
            "retry_ends_it": retry_ends_it,
            # Attempts of the failed round that may have been carried out (read from the
            # attempts as recorded, Execution.unanswered): said before a retry sends the
            # action again as a new request; one that ends it superseded sends none, and
            # names none, only the check on the channel they still call for.
            "retry_may_repeat": (
                retry_may_repeat_said(proposal, round_, retry_sends=not retry_ends_it)
                if retry_refused is None
                else ""
            ),
            # A guardrail its execution failed by, still refusing it (a cap not lifted since):
            # said to whoever reads it, in the words its failure and its execution would use,
            # as the retry is refused (``retry_refusal``) and not offered.
            "retry_refused_by_guardrail": (
                guardrail_refuses_said(proposal, refused_now)
                if proposal.status == ProposalStatus.FAILED and refused_now
                else ""
            ),
            "retry_would_fail_again": RETRY_WOULD_FAIL_AGAIN,
            # A kill switch engaged over it: a retry is a person's approval, which runs it
            # past the switch (``executors.runner._kill_switch_hold``), said before it.
            "retry_past_kill_switches": (
                retry_past_kill_switches_said(
                    [kill_switch_reason(switch) for switch in _kill_switches_engaged_over(proposal)]
                )
                if retry_refused is None
                else ""
            ),
            # Re-assessed as a retry would run it (the budget it draws on moved), over its
            # policy's cumulative ceiling: a retry is a person's approval, which runs it all
            # the same (``executors.runner._reassessed``), said before it.
            "retry_over_cumulative": (
                retry_over_cumulative_said(
                    retry_over_cumulative_ceiling(proposal, assessed=retried)
                )
                if retried is not None
                else ""
            ),
            "outcomes": proposal.outcomes.all(),
            "can_report_outcome": may_act(request.user, proposal, Act.REPORT_OUTCOME),
            "outcome_form": OutcomeForm(**_form_ids("outcome_form")),
            "withdraw_form": WithdrawForm(**_form_ids("withdraw_form")),
            "approve_form": ApproveForm(**_form_ids("approve_form")),
            "edit_form": edit_form,
            "edit_changes": edits_shown(since, edit_form),
            "reject_form": RejectForm(**_form_ids("reject_form")),
            # The action as this page shows it, sent with each decision (``_seen``).
            "seen": payload_seen(proposal.payload),
            "follows_status": proposal.status in UNDER_WAY_STATUSES,
            "status_reached": STATUS_REACHED[proposal.status],
            # One whose review ended otherwise than by approval says who or what ended it,
            # and when: a rejection, its window closing, another proposal executed first.
            "review_ended": (
                _review_ended_linked(proposal)
                if proposal.status in REVIEW_ENDED_BESIDE_STATUS
                else ""
            ),
            # Past its window and not yet expired: said as it is, not expired by this read.
            "window_closed": review_window_closed(proposal, timezone.now()),
            "expiry_sweep": how_many(settings.EXPIRY_SWEEP_SECONDS, "second"),
            # A form refused just before, as its reviewer filled it in (``_refused_redirect``).
            **(refused or {}),
            **(extra_context or {}),  # a refused form, as the reviewer filled it in
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def status_view(self, request: HttpRequest, object_id: int) -> JsonResponse:
        """The proposal's status, for its page to follow while it is under way
        (approvals/static/approvals/follow_status.js)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        followed = proposal_followed(object_id)
        if followed is None:
            raise Http404("There is no such proposal.")
        return JsonResponse(
            {
                "status": followed["status"],
                "label": ProposalStatus(followed["status"]).label,
                # Its attempts on its channel, which move on while its status stays
                # "Executing": the page puts itself as it then reads in place on these too.
                "attempts": followed["attempts"] or 0,
                "last_attempt": followed["last_attempt"] or "",
            }
        )

    def _decide(
        self,
        request: HttpRequest,
        object_id: int,
        form_class,
        decide,
        *,
        act: Act,
        logged: Callable[..., str],
        said: Callable[[Proposal], str] = _what_happened,
        shown_as: str | None = None,
        from_its_page: bool = False,
    ) -> HttpResponse:
        """Run a form's act on the proposal and say how it went. Someone whose role does not
        take this act on this proposal is refused outright; the service checks the whole rule
        of who may act (``approvals.services.acts``) under the proposal's lock, and any other
        refusal is shown as its message. A refused form the page shows (``shown_as``, its
        name in the page's context) comes back as its reviewer filled it in, the refusal
        beside it: a note typed at length is not lost to a reload. Done, the act is in the
        console's log as ``logged`` says it (given what the act returned and the form's
        values). An act ``from_its_page`` (a decision) that does not say how its page showed
        the action (``_seen``) is refused, and decides nothing."""
        if request.method != "POST":  # an act's address opened as a page: the proposal's
            return HttpResponseRedirect(
                reverse("admin:approvals_proposal_change", args=[object_id])
            )
        proposal = Proposal.objects.select_related("agent").filter(pk=object_id).first()
        if proposal is not None and permission_refusal(request.user, proposal):
            raise PermissionDenied
        form = form_class(request.POST, **_form_ids(shown_as))
        refused_with, moved_on = None, False
        if not form.is_valid():
            messages.error(request, "Not saved: the form has errors, shown beside its fields.")
            refused_with = 400
        elif from_its_page and proposal is not None and _seen(request) is None:
            refusal = _not_from_its_page(object_id)
            messages.error(request, refusal)
            form.add_error(None, refusal)
            refused_with, moved_on = 400, True  # nothing to correct: the page as it is now
        else:
            try:
                done = decide(**form.cleaned_data)
            except DomainError as error:
                refusal = _refused(error, object_id, act)
                messages.error(request, refusal)
                form.add_error(None, refusal)
                refused_with, moved_on = error.status_code, _moved_on(error)
            else:
                console_act_logged(
                    request,
                    done if isinstance(done, Proposal) else proposal,
                    logged(done, **form.cleaned_data),
                )
                if isinstance(done, Proposal):
                    done = said(done)
                messages.success(request, done)
        if refused_with and shown_as and proposal is not None:
            if moved_on:  # nothing to correct: the page as it is now
                return _refused_redirect(request, object_id, shown_as, form)
            return self._review_page(request, object_id, status=refused_with, **{shown_as: form})
        return HttpResponseRedirect(reverse("admin:approvals_proposal_change", args=[object_id]))

    def approve_view(self, request: HttpRequest, object_id: int):
        return self._decide(
            request,
            object_id,
            ApproveForm,
            lambda note: proposal_approve(
                proposal_id=object_id, reviewer=request.user, note=note, seen=_seen(request)
            ),
            act=Act.APPROVE,
            logged=lambda done, note: approval_logged(done),
            shown_as="approve_form",
            from_its_page=True,
        )

    def edit_approve_view(self, request: HttpRequest, object_id: int):
        """Approve the action as the reviewer edited it in its type's form. A refused edit
        (a field the service does not accept, or an edit it refuses) shows the page again,
        with what the reviewer typed and each reason beside its field."""
        if request.method != "POST":  # an act's address opened as a page: the proposal's
            return HttpResponseRedirect(
                reverse("admin:approvals_proposal_change", args=[object_id])
            )
        proposal = Proposal.objects.select_related("agent", "account").filter(pk=object_id).first()
        if proposal is None:
            messages.error(request, f"There is no proposal #{object_id}.")
            return HttpResponseRedirect(reverse("admin:approvals_proposal_changelist"))
        if permission_refusal(request.user, proposal):
            raise PermissionDenied
        form = edit_form_for(proposal, request.POST)
        if form is None:  # a type without one; or one no longer known, which nobody approves
            gone = no_longer_applies(proposal, Act.EDIT)
            label = action_types.named(proposal.action_type).label
            messages.error(
                request, gone.message if gone else f"A {label} is approved as proposed or not."
            )
            return HttpResponseRedirect(
                reverse("admin:approvals_proposal_change", args=[object_id])
            )
        if not form.is_valid():
            messages.error(request, "Not approved: the edit has errors, shown beside its fields.")
            return self._review_page(request, object_id, status=400, edit_form=form)
        if _seen(request) is None:
            refusal = _not_from_its_page(object_id)
            form.add_error(None, refusal)
            messages.error(request, refusal)
            return _refused_redirect(request, object_id, "edit_form", form)
        try:
            done = proposal_approve(
                proposal_id=object_id,
                reviewer=request.user,
                note=form.cleaned_data["note"],
                edited_payload=form.edited_payload(),
                seen=_seen(request),
            )
        except DomainError as error:
            refusal = form.add_refusal(error)
            if refusal == error.message:  # not a field's: the act's, said whole
                refusal = _refused(error, object_id, Act.EDIT)
            messages.error(request, f"Not approved: {refusal}")
            if _moved_on(error):
                return _refused_redirect(request, object_id, "edit_form", form)
            return self._review_page(request, object_id, status=error.status_code, edit_form=form)
        # An edit that leaves the action as it was is recorded as a plain approval: said so.
        edited = Decision.objects.filter(
            proposal=done,
            review_round=done.review_round,
            reviewer=request.user,
            edited_payload__isnull=False,
        ).exists()
        console_act_logged(request, done, approval_logged(done, edited=edited))
        happened = _what_happened(done)
        if done.review_round > proposal.review_round:  # earlier approvals: of another action
            happened = (
                "Your edit started its review again: the approvals given before were of the "
                f"action before it, and no longer count. {happened}"
            )
        elif not edited and done.status != ProposalStatus.SUPERSEDED:
            happened = f"Approved as proposed: your edit changed nothing. {happened}"
        messages.success(request, happened)
        return HttpResponseRedirect(reverse("admin:approvals_proposal_change", args=[object_id]))

    def _review_page(
        self, request: HttpRequest, object_id: int, *, status: int, **filled_in: forms.Form
    ):
        """The proposal's page, as a GET shows it, with a form as the reviewer filled it in
        (by its name in the page's context: ``edit_form``, ``approve_form``, …)."""
        reading = copy.copy(request)
        reading.method, reading.POST = "GET", QueryDict()  # the page, not a save of the admin's
        response = self.change_view(reading, str(object_id), extra_context=filled_in)
        response.status_code = status
        return response

    def reject_view(self, request: HttpRequest, object_id: int):
        return self._decide(
            request,
            object_id,
            RejectForm,
            lambda reason_code, note: proposal_reject(
                proposal_id=object_id,
                reviewer=request.user,
                reason_code=reason_code,
                note=note,
                seen=_seen(request),
            ),
            act=Act.REJECT,
            logged=lambda done, reason_code, note: rejection_logged(reason_code),
            shown_as="reject_form",
            from_its_page=True,
        )

    def withdraw_view(self, request: HttpRequest, object_id: int):
        return self._decide(
            request,
            object_id,
            WithdrawForm,
            lambda note: proposal_withdraw_for_agent(
                proposal_id=object_id, reviewer=request.user, note=note, seen=_seen(request)
            ),
            act=Act.WITHDRAW,
            logged=lambda done, note: "Withdrawn for its agent",
            shown_as="withdraw_form",
            from_its_page=True,
        )

    def outcome_view(self, request: HttpRequest, object_id: int):
        def report(effect: str, note: str) -> str:
            outcome = outcome_report_by_user(
                proposal_id=object_id, user=request.user, effect=effect, note=note
            )
            return f"Outcome recorded; {outcome.proposal.agent} receives it as feedback."

        return self._decide(
            request,
            object_id,
            OutcomeForm,
            report,
            act=Act.REPORT_OUTCOME,
            logged=lambda done, effect, note: (
                f"Outcome reported: {OutcomeEffect(effect).label.lower()}"
            ),
            shown_as="outcome_form",
        )

    def retry_view(self, request: HttpRequest, object_id: int):
        def retry() -> Proposal:
            # A retry decides nothing: it sends the approved action again.
            return proposal_retry(proposal_id=object_id, reviewer=request.user)

        def retried_said(retried: Proposal) -> str:
            if retried.status == ProposalStatus.APPROVED:
                said = f"Proposal #{retried.pk} is {SENT_TO_RUN_AGAIN}."
                paused = paused_ran_said(campaigns_paused(retried))
                return f"{said} {paused}" if paused else said
            return _what_happened(retried, not_done=SENT_TO_RUN_AGAIN)

        return self._decide(
            request,
            object_id,
            forms.Form,
            retry,
            act=Act.RETRY,
            logged=retry_logged,
            said=retried_said,
        )

    # --- bulk decisions, each behind a confirmation page ---------------------------------------
    def _bulk(self, request, queryset: QuerySet[Proposal], *, verb: str, form_class, decide):
        if "confirm" in request.POST or request.POST.get("select_across") != "1":
            # Every proposal selected (or confirmed), whatever became of it since the queue or
            # the confirmation page was loaded (the admin passes on only those its list still
            # shows, and one a colleague decided meanwhile would vanish unsaid): each is
            # decided or reported, and the confirmation says who decided it first.
            queryset = self.get_queryset(request).filter(
                pk__in=request.POST.getlist(ACTION_CHECKBOX_NAME)
            )
        proposals = list(queryset.select_related("agent", "account").order_by(*QUEUE_ORDER))
        # Each as the confirmation page showed it (``_seen``): a confirmation that does not
        # say so of each came from no page of ours, decides nothing, and is shown the page.
        seen = {
            proposal.pk: shown
            for proposal in proposals
            if (shown := _seen(request, f"seen-{proposal.pk}")) is not None
        }
        not_from_its_page = "confirm" in request.POST and len(seen) < len(proposals)
        confirming = "confirm" in request.POST and not not_from_its_page
        plan = None
        if verb == "approve" and not confirming:
            # What approving them together would do, as the approval will do it.
            plan = bulk_approval_plan(proposal_ids=[p.pk for p in proposals], reviewer=request.user)
            proposals = plan.proposals
            for proposal in proposals:
                proposal.bulk_outcome = plan.outcome(proposal)
                if plan.executes(proposal):
                    proposal.ends_when_executed = _ends_when_executed(
                        proposal, besides={selected.pk for selected in proposals}
                    )
        # What the guardrails found, said before it is decided, as it stands now.
        engaged = {
            account.pk: engaged_kill_switches(account)
            for account in {proposal.account for proposal in proposals}
        }
        runs = kill_switch_runs()
        # One moved off it while engaged reads as moved there, not released, as its page says.
        moved_off = kill_switches_moved_off()
        for proposal in proposals:
            proposal.kill_switches_moved_off = moved_off
            proposal.seen = payload_seen(proposal.payload)
            proposal.words_shown = action_types.named(proposal.action_type).words_shown(
                proposal.payload
            )
            proposal.kill_switches_engaged_now = engaged[proposal.account.pk]
            proposal.kill_switch_runs = runs
            # Those engaged when its findings were recorded, in their run now.
            switched = _kill_switches_named_now(proposal)
            proposal.findings = _guardrail_findings(proposal, engaged_now=switched, moved=moved_off)
            # That no kill switch covers it now, said once below them, as its page says it,
            # of the switches read above for all the rows.
            recorded = proposal.guardrail_findings or {}
            none_covers = kill_switches_gone_said(
                [*recorded.get("block", []), *recorded.get("review", [])],
                switched,
                moved=moved_off,
            )
            if none_covers:
                proposal.findings.append((none_covers, False))
            # One decided since it was selected: by whom, how and when, beside its status;
            # one that failed, why (as its page's status line says it), not how it came to run.
            proposal.last_failure = last_failure(proposal)
            if proposal.status != ProposalStatus.PENDING_REVIEW:
                proposal.review_ended = how_review_ended(proposal)
        # A campaign it touches paused (or gone) since, as its page says it; and, of one this
        # approval lets run, that it runs there all the same, left paused (not where approving
        # it ends it superseded: a value it sets moved).
        campaigns_now = campaigns_now_each(proposals)
        letting_run = [
            proposal
            for proposal in proposals
            if plan is not None
            and proposal.status == ProposalStatus.PENDING_REVIEW
            and proposal.pk not in plan.refusals
            and proposal.pk not in plan.left_waiting
            and campaigns_now[proposal.pk].paused
        ]
        moved = target_moves_each(
            [proposal for proposal in letting_run if sets_values(proposal)],
            ledger=campaigns_read(campaigns_now),
        )
        for proposal in proposals:
            proposal.campaigns_not_active = campaigns_now[proposal.pk].not_active
            proposal.paused_still_runs = (
                paused_still_runs_said(campaigns_now[proposal.pk].paused)
                if proposal in letting_run and not moved.get(proposal.pk)
                else ""
            )
        form = form_class(request.POST if "confirm" in request.POST else None)
        # The note goes to each proposal's own agent, not to one "agent".
        form.fields["note"].help_text = form.fields["note"].help_text.replace(
            "to the agent", "to each proposal's agent"
        )
        if confirming and form.is_valid():
            decided = decide(
                proposal_ids=[proposal.pk for proposal in proposals],
                reviewer=request.user,
                # Each as the confirmation page showed it: one edited since is refused.
                seen=seen,
                **form.cleaned_data,
            )
            console_acts_logged(request, _bulk_logged(verb, decided, **form.cleaned_data))
            paused_each = {pk: now.paused for pk, now in campaigns_now.items()}
            for level, message in _bulk_result(verb, decided, paused_each):
                messages.add_message(request, level, message)
            return None
        if not_from_its_page:
            messages.error(
                request,
                "Nothing was decided: this confirmation did not come from its page as it was "
                "shown to you. Read the proposals below as they are now, and confirm again.",
            )
        if plan is None:
            # A rejection skips, as its pressing will refuse, each proposal no longer
            # waiting and each this person may not reject (one they approved this round,
            # one of an agent they own, one of a kind their role does not decide, one whose
            # review window closed): said beside its status, who ended its review or why.
            reviewers = reviewers_by_proposal(proposals)
            for proposal in proposals:
                refusal = act_refusal(
                    request.user, proposal, Act.REJECT, reviewers=reviewers[proposal.pk]
                )
                if refusal is not None and proposal.status == ProposalStatus.PENDING_REVIEW:
                    proposal.review_ended = refusal.message
                proposal.skipped = refusal is not None
        # How many the button decides (an approval's plan counts its own), which the title
        # counts too.
        skipped = (
            [p for p in proposals if p.pk in plan.refusals]
            if plan
            else [p for p in proposals if p.skipped]
        )
        deciding = plan.approving if plan else len(proposals) - len(skipped)
        return TemplateResponse(
            request,
            self.bulk_decision_template,
            {
                **self.admin_site.each_context(request),
                "title": _bulk_title(verb, deciding, len(proposals)),
                "verb": verb,
                "action": request.POST.get("action"),
                "proposals": proposals,
                "plan": plan,
                # Those left as they are, named alike in the banner and beside each: an
                # approval's refusals, a rejection's (one no longer waiting among them).
                "skipped": skipped,
                # A rejection's skipped proposals all no longer waiting: who ended each
                # review; otherwise why each is skipped.
                "skipped_all_ended": all(
                    p.status != ProposalStatus.PENDING_REVIEW for p in skipped
                ),
                "skipped_failed": sum(1 for p in skipped if p.last_failure),
                "deciding": deciding,
                "with_findings": [p for p in proposals if any(holds for _, holds in p.findings)],
                "with_released_switches": [
                    p
                    for p in proposals
                    if any(
                        not holds and finding.startswith(KILL_SWITCH_FINDING)
                        for finding, holds in p.findings
                    )
                ],
                "form": form,
                "opts": self.model._meta,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            },
            status=400 if not_from_its_page else 200,
        )

    @admin.action(description="Approve selected proposals…", permissions=["decide"])
    def approve_selected(self, request, queryset):
        return self._bulk(
            request, queryset, verb="approve", form_class=ApproveForm, decide=proposals_approve
        )

    @admin.action(description="Reject selected proposals…", permissions=["decide"])
    def reject_selected(self, request, queryset):
        return self._bulk(
            request, queryset, verb="reject", form_class=RejectForm, decide=proposals_reject
        )


class DecidedByFilter(admin.RelatedOnlyFieldListFilter):
    """The people who decided something: every person offered an auditor and a policy owner,
    who decide no proposal, as if a list of their decisions could hold one. Offered even
    when one person alone has decided: Django leaves out a filter of one choice, and its value
    unread, so one person's link ("all your decisions") would have listed everyone's."""

    def has_output(self) -> bool:
        return True


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "proposal_number",
        "decided_summary",
        "outcome",
        "reason_code",
        "reviewer",
        "created_at",
    ]
    # One person's decisions, as an auditor reads someone's record (and the home page's "all
    # your decisions" links): offered, those who decided (``DecidedByFilter``).
    list_filter = ["outcome", "reason_code", ("reviewer", DecidedByFilter)]
    list_select_related = ["reviewer"]
    raw_id_fields = ["proposal"]
    # Newest first, as proposals, notifications and callback events are listed; a proposal's
    # own decisions still read in the order they were taken.
    ordering = ["-created_at", "-pk"]

    @admin.display(description="proposal", ordering="proposal_id")
    def proposal_number(self, decision: Decision) -> str:
        """The proposal by number; what was decided is the decision's own summary, as the
        reviewer saw it, not the proposal's as it reads today."""
        url = reverse("admin:approvals_proposal_change", args=[decision.proposal_id])
        return format_html('<a href="{}">#{}</a>', url, decision.proposal_id)

    @admin.display(description="summary", ordering="summary")
    def decided_summary(self, decision: Decision) -> str:
        """What was decided; an edit says so, as the proposal's page does: the agent proposed
        something else (what, and the edit, are on its page)."""
        if decision.edited_payload is None:
            return decision.summary
        return f"{decision.summary} (as edited)"


def _policy_written_by(execution: Execution) -> PolicyWritten | None:
    """The policy version a policy change's successful attempt wrote, as the proposal's page
    reads it in its Before and After (a policy change sets no campaign field). Read once for
    the attempt's page, whose Before and After both say it: kept on the execution it shows."""
    if not hasattr(execution, "policy_written"):
        proposal = execution.proposal
        execution.policy_written = (
            policy_written(proposal)
            if execution.status == ExecutionStatus.SUCCEEDED
            and proposal.action_type == "policy_change"
            else None
        )
    return execution.policy_written


@admin.display(description="proposal", ordering="proposal")
def proposal_shown(record) -> str:
    """In a list of records of proposals (executions, feedback, outcomes, callback events),
    the proposal by its summary, which wraps: the admin keeps a related record's name on one
    line, and at a laptop's 1280 px that line (490 px for a bid) pushed the list's last
    column, when each was made or finished, past its edge, behind a sideways scroll."""
    return str(record.proposal)


def _executions_said(proposal: Proposal) -> list[Execution]:
    """Its attempts, in order, each with its status as said (``status_as_said``) and the
    key it went to its channel with ("" if none: ``attempt_keys``)."""
    executions = list(proposal.executions.all())
    keys = attempt_keys(proposal) if executions else {}
    due = next_attempts_due([proposal]).get(proposal.pk)
    for execution, after in zip(executions, [*executions[1:], None], strict=False):
        execution.proposal = proposal
        execution.retry_started = after.started_at if after is not None else None
        execution.retry_due = due
    # Who sent it to run again after each failure a person retried, in one read for all.
    sent_to_run_again_read(executions)
    for execution in executions:
        execution.status_said = execution.status_as_said()
        execution.key_sent = keys.get(execution.attempt, "")
    return executions


def _key_sent(execution: Execution) -> str:
    """The key the attempt went to its channel with, "" if none; read once for its page."""
    if not hasattr(execution, "key_sent"):
        execution.key_sent = attempt_keys(execution.proposal, [execution.attempt]).get(
            execution.attempt, ""
        )
    return execution.key_sent


class ExecutionChangeList(ConsoleChangeList):
    """The list of executions, each row given the key its attempt went to its channel with,
    read in one query for the page (``executions_keys``): an operator matches the rows to an
    endpoint's logs by it, as on the proposal's page and the attempt's."""

    def get_results(self, request):
        super().get_results(request)
        keys = executions_keys(self.result_list)
        due = next_attempts_due({execution.proposal for execution in self.result_list})
        for execution in self.result_list:
            execution.key_sent = keys.get(execution.pk, "")
            execution.retry_due = due.get(execution.proposal_id)
        sent_to_run_again_read(self.result_list)  # who sent each failed one to run again


class AttemptStatusFilter(KnownValuesOnly, admin.SimpleListFilter):
    """An attempt's status as the list says it (``attempt_status_said``): a failed one told
    apart by what came of it. "Failed" listed attempts whose proposal's execution was still
    under way, its next attempt scheduled, beside those it ended with; "Failed, tried again"
    listed a person's retry and approval after a hold beside the runner's own."""

    title = "status"
    parameter_name = "status"
    FAILED_TRIED_AGAIN, FAILED_TO_BE_TRIED_AGAIN = "failed_tried_again", "failed_to_be_tried_again"
    FAILED_SENT_AGAIN, FAILED_APPROVED_AGAIN = "failed_sent_again", "failed_approved_again"

    def lookups(self, request, model_admin):
        return [
            (ExecutionStatus.RUNNING, ExecutionStatus.RUNNING.label),
            (ExecutionStatus.SUCCEEDED, ExecutionStatus.SUCCEEDED.label),
            (ExecutionStatus.FAILED, "Failed, nothing more tried"),
            (self.FAILED_TO_BE_TRIED_AGAIN, "Failed, to be tried again"),
            (self.FAILED_TRIED_AGAIN, "Failed, tried again"),
            (self.FAILED_SENT_AGAIN, f"Failed, {SENT_TO_RUN_AGAIN} by a person"),
            (self.FAILED_APPROVED_AGAIN, f"Failed, {HELD_BACK_APPROVED_AGAIN} by a person"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        self.refuse_unknown(value)
        if not value:
            return queryset
        if value in (ExecutionStatus.RUNNING, ExecutionStatus.SUCCEEDED):
            return queryset.filter(status=value)
        failed = queryset.filter(status=ExecutionStatus.FAILED)
        if value in (self.FAILED_TRIED_AGAIN, self.FAILED_SENT_AGAIN, self.FAILED_APPROVED_AGAIN):
            # As ``sent_to_run_again_read`` tells them apart: a person's move to approved
            # after it began, before the next attempt began; a retry if the first was one.
            tried = failed.filter(Exists(later_attempts())).annotate(next_began=retry_started())
            retried = Exists(persons_approvals_after(retry=True))
            approved_again = Exists(persons_approvals_after(retry=False))
            if value == self.FAILED_SENT_AGAIN:
                return tried.filter(retried)
            if value == self.FAILED_APPROVED_AGAIN:
                return tried.filter(approved_again).exclude(retried)
            return tried.exclude(retried).exclude(approved_again)
        not_yet = failed.filter(~Exists(later_attempts()))
        executing = Q(proposal__status=ProposalStatus.EXECUTING)
        if value == self.FAILED_TO_BE_TRIED_AGAIN:
            return not_yet.filter(executing)
        return not_yet.exclude(executing)


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        proposal_shown,
        "attempt",
        "executor",
        "status_said",
        "key_sent",
        "finished_at",
    ]
    list_filter = [AttemptStatusFilter, "executor"]
    list_select_related = ["proposal"]
    # Its status on its page as in its heading and the tables: "Failed, tried again".
    shown_read_only = {"status": "status_said"}
    # The ledger's states as the proposal's page reads them, not as JSON; what a creative
    # batch deployed, by its ledger records.
    fields = [
        "proposal",
        "attempt",
        "executor",
        "status",
        "before",
        "after",
        "creatives_deployed",
        "error",
        "carried_out_said",
        "key_sent",
        "request_ids",
        "channel_response",
        "started_at",
        "finished_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Execution]:
        return super().get_queryset(request).annotate(retry_started=retry_started())

    def get_history_queryset(self, request, history_manager, pk_name, object_id):
        # Each record says its status as at its own time, the next attempt's start read with
        # it (``Execution.status_as_said``).
        return (
            super()
            .get_history_queryset(request, history_manager, pk_name, object_id)
            .annotate(retry_started=retry_started())
        )

    def get_changelist(self, request, **kwargs):
        return ExecutionChangeList

    def get_object(self, request, object_id, from_field=None):
        execution = super().get_object(request, object_id, from_field)
        if execution is not None and execution.awaits_retry():
            execution.retry_due = next_attempts_due([execution.proposal]).get(execution.proposal_id)
        return execution

    def get_fields(self, request: HttpRequest, obj: Execution | None = None) -> list[str]:
        """Its key only where it went to a channel with one: an attempt on Google Ads, which
        gets none, or one refused before it was sent, shows none."""
        fields = list(super().get_fields(request, obj))
        if obj is None or not _key_sent(obj):
            fields.remove("key_sent")
        return fields

    @admin.display(description="idempotency key sent")
    def key_sent(self, execution: Execution) -> str:
        """The key the channel got with this attempt (its round's ``Idempotency-Key``), by
        which the endpoint's logs name it."""
        return _key_sent(execution) or "—"

    @admin.display(description="status", ordering="status")
    def status_said(self, execution: Execution) -> str:
        return execution.status_as_said()

    @admin.display(description="carried out on the channel")
    def carried_out_said(self, execution: Execution) -> str:
        """What this attempt did on the channel, as the API's ``carried_out`` says it of it
        alone: the flag's own help ("Sent, and no answer said whether the channel carried it
        out: it may have.") was shown beside every attempt, read as said of a 429 too."""
        return CarriedOut(carried_out([execution])).label

    @admin.display(description="before")
    def before(self, execution: Execution) -> str:
        written = _policy_written_by(execution)
        return ledger_state(execution.before_state) if written is None else policy_before(written)

    @admin.display(description="after")
    def after(self, execution: Execution) -> str:
        written = _policy_written_by(execution)
        return ledger_state(execution.after_state) if written is None else policy_after(written)

    @admin.display(description="creatives deployed")
    def creatives_deployed(self, execution: Execution) -> str:
        if execution.status != ExecutionStatus.SUCCEEDED:
            return "—"
        return creatives_said(deployed_creatives(execution.proposal))


SCORECARD_DAYS = (7, 30, 90)  # the periods an agent's page offers


def scorecard_days(request) -> int:
    """The days an agent's scorecard counts over, as ``?days=`` asks, within the bounds the
    API's scorecard takes (a whole number from 1 to 365 in plain digits; 30 unless asked, or
    given empty). Anything else is refused saying so: ``?days=abc``, ``0``, ``-5`` or
    ``100000`` showed 30 days, as if asked for, where the API answers a 400."""
    given = request.GET.getlist("days")
    if given == [""]:  # as the API takes an optional parameter given empty: not asked
        given = []
    if not given:
        return SCORECARD_DAYS_DEFAULT
    takes = (
        f"a whole number from 1 to {SCORECARD_DAYS_MOST}, in plain digits (0-9), "
        f"such as {', '.join(str(days) for days in SCORECARD_DAYS[:-1])} or {SCORECARD_DAYS[-1]}"
    )
    if len(given) > 1:
        raise BadRequest(
            f"The scorecard's days are given {len(given)} times: give them once, {takes}."
        )
    value = given[0]
    digits = value.lstrip("0")
    if not (PLAIN_DIGITS.fullmatch(value) and digits and len(digits) <= 3):
        digits = ""
    if not digits or int(digits) > SCORECARD_DAYS_MOST:
        shown = value if len(value) <= 20 else f"{value[:20]}…"
        raise BadRequest(
            f"“{shown}” is not a number of days the scorecard counts over: give {takes}."
        )
    return int(digits)


@admin.register(Agent)
class AgentAdmin(ChangeReasonAdmin):
    # Who an agent is, what it may act on, whether it runs and where its decisions are sent
    # are rules it works under: a change says why, in its history, as a policy's does (its
    # callback address was moved with an empty reason). Its history starts with what it was
    # made as (its kind, which policies scope by; its owner; whether it was active).
    form = ChangeReasonForm
    list_display = ["name", "kind", "owner", "is_active", "created_at"]
    list_filter = ["kind", "is_active"]
    filter_horizontal = ["accounts"]
    actions = ["issue_new_key", "issue_new_callback_secret"]

    # Named, as the other admins that ask why name theirs: left to be read from the form,
    # a history page's read-only fields (read from the fieldsets) recursed without end.
    fields = ["name", "kind", "owner", "is_active", "accounts", "callback_url"]

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if obj is not None and self.has_change_permission(request, obj):
            fields.append("callback_secret")  # who may change the agent may set up its end
        return fields

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "callback_secret"]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        agent = self.get_object(request, object_id)
        if agent is None:
            return super().change_view(request, object_id, form_url, extra_context)
        days = scorecard_days(request)
        since, until = scorecard_window(days)
        cards = scorecards(since=since, until=until, agent=agent)
        extra_context = {
            **(extra_context or {}),
            "scorecards": cards,
            "scorecards_added_up": (
                scorecards_added_up(cards, since=since, until=until, agent=agent)
                if len(cards) > 1
                else None
            ),
            "days": days,
            "day_choices": SCORECARD_DAYS,
            **(scorecard_charts(cards) if cards else {}),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(
        description="Issue a new callback signing secret (the old one stops verifying)",
        permissions=["change"],
    )
    def issue_new_callback_secret(self, request, queryset):
        for agent in queryset:
            agent_callback_secret_rotate(agent=agent, actor=Actor.for_user(request.user))
            console_act_logged(request, agent, "Issued a new callback signing secret")
        messages.success(request, "New signing secrets issued; each is on its agent's page.")

    @admin.action(
        description="Issue a new API key (revokes the current one)", permissions=["change"]
    )
    def issue_new_key(self, request, queryset):
        for agent in queryset:
            try:
                raw_key = agent_key_issue(agent=agent, actor=Actor.for_user(request.user))
            except DomainError as error:
                messages.error(request, error.message)
                continue
            console_act_logged(request, agent, "Issued a new API key")
            messages.warning(
                request,
                format_html("New API key for {}, shown once: <code>{}</code>", agent.name, raw_key),
            )


@admin.register(AgentAPIKey)
class AgentAPIKeyAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "agent", "created_at", "revoked_at"]
    list_filter = ["agent"]
    list_select_related = ["agent"]
    exclude = ["digest"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        return ["agent", "prefix", "created_at", "revoked_at"]

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke(self, request, queryset):
        for key in queryset.filter(revoked_at__isnull=True):
            if agent_key_revoke(key=key, actor=Actor.for_user(request.user)):
                console_act_logged(request, key, "Revoked")
        messages.success(request, "Revoked.")

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("approvals.change_agent")
