import json
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from datetime import timedelta
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import IS_FACETS_VAR, IS_POPUP_VAR
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery, Window
from django.db.models.functions import RowNumber
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import escape, format_html, format_html_join
from django.utils.http import urlencode
from django.utils.text import capfirst

from approvals import action_types
from approvals.action_types.base import EXAMPLE_STEP
from approvals.admin import (
    EVERY_STATUS,
    ActionTypeFilter,
    FailingAtNextAttemptFilter,
    HeldBackByKillSwitchFilter,
    KnownValuesOnly,
)
from approvals.models import Agent, AgentKind, Proposal
from approvals.selectors import (
    APPROVED_NAMED,
    WaitingUnderPolicy,
    left_by_kill_switch,
    proposals_let_past_kill_switch,
    proposals_sent_by_kill_switch,
    proposals_under_way,
    routed_still_there,
    waiting_under_policy,
)
from approvals.services.proposals import proposal_dry_run
from approvals.simulation import WHAT_HELD_LABELS, draft_rule_set, drafts_in_place, simulate
from audit.actors import Actor, changed_by
from audit.admin import (
    ChangeReasonAdmin,
    ChangeReasonForm,
    ChosenByIdField,
    ConsoleChangeList,
    ConsoleHistoryValues,
    NamedRecordForm,
    change_reason_field,
    console_act_logged,
    is_history_page,
    valid_id,
    version_said,
    versions_of,
)
from hitlproject.charts import grouped_bars
from hitlproject.converters import record_page
from hitlproject.errors import DomainError, InvalidInput
from hitlproject.formats import console_time
from hitlproject.forms import IndentedJSONField, PlainDecimalField, WindowField
from hitlproject.periods import PeriodForm, describe_duration
from hitlproject.validation import id_asked
from hitlproject.vocabulary import (
    AFTER_AN_UNSURE_ATTEMPT,
    AT_NEXT_ATTEMPT,
    DRY_RUN_OUTCOME_SAID,
    NOT_YET_CARRIED_OUT,
    SIMULATED_ROW_LABELS,
    SIMULATED_ROWS,
    VerdictOutcome,
    and_joined,
    as_sentence,
    how_many,
)
from ledger.models import Account, Channel
from policies.drafts import (
    active_draft_of,
    changes_on_promotion,
    draft_promotion,
    duplicate_initial,
    owned_agent_governed,
    policy_promote,
    promotion_record_typed,
    replaced_policy,
)
from policies.engine import (
    NOT_A_POLICYS_RULE,
    Rule,
    ceiling_text,
    format_magnitude,
    format_money,
    percent_text,
)
from policies.models import (
    KILL_SWITCH_REASON_MAX_LENGTH,
    NAMED_APART,
    BrandGuidelines,
    KillSwitch,
    KillSwitchScope,
    Policy,
    lines,
    records_named_apart,
    same_scope,
    switches_named_apart,
)
from policies.reading import describe, is_invisible
from policies.receivers import HELD_BACK_NOW, RISKS_LOWERED
from policies.services import (
    DecidesInstead,
    deciding_rule,
    kill_switch_called,
    kill_switches_still_over,
    live_policies,
    policies_deciding_instead,
    rule_from_policy,
    rules_in_force,
)


def percent_field(label: str, help_text: str, **kwargs) -> forms.DecimalField:
    """A ceiling typed as people think of it: 10 for 10%, in plain digits."""
    return PlainDecimalField(
        label=label,
        help_text=help_text,
        required=False,
        min_value=0,
        max_digits=13,
        decimal_places=4,
        **kwargs,
    )


# Ceilings in the unit of the policy's action type: a percentage of the value moved, or (for
# creative batches) a count. The cumulative ceiling is always a percentage.
MAGNITUDE_FIELDS = (
    "auto_execute_max_magnitude",
    "block_above_magnitude",
    "more_approvals_above_magnitude",
)
PERCENT_FIELDS = ("cumulative_max_magnitude",)
IN_ITS_UNIT = "in percent (10 = 10%); for creative batches, a count of creatives"


def magnitude_unit(action_type_name: str | None) -> str:
    """How a policy's ceilings read for an action type: a share until one is chosen, and for
    one no longer known (``action_types.named``)."""
    return action_types.named(action_type_name).magnitude_unit if action_type_name else "ratio"


def as_typed(value, unit: str) -> Decimal | None:
    """A stored ceiling as the form shows it: 0.100000 as 10, a count as it is."""
    if value is None or value == "":
        return None
    value = Decimal(value)
    shown = value.scaleb(2) if unit == "ratio" else value
    return Decimal(format(shown.normalize(), "f"))


def as_stored(value: Decimal | None, unit: str) -> Decimal | None:
    """A typed ceiling as the engine uses it, exactly: 12.5 (%) as 0.125."""
    if value is None:
        return None
    return value.scaleb(-2) if unit == "ratio" else value


def waiting_list_url(policy_id: int) -> str:
    """The queue, filtered to the proposals waiting for a person that the policy routed."""
    return (
        reverse("admin:approvals_proposal_changelist")
        + "?"
        + urlencode({"status": "pending_review", "policy": policy_id})
    )


# What a change of a policy does to the proposals already waiting under it, said before the
# change (its form, a draft's promotion page) and after (the message): nothing re-routes them.
KEPT_AS_ROUTED = (
    "A change of the policy does not route {them} again: {each} the verdict, the approvals "
    "needed, the review window and the decision deadline it was routed with. A ceiling raised "
    "does not let {one} run on {its} own, and switched off, the policy leaves {them} waiting "
    "for a person."
)
HARD_CEILING_LOWERED = (
    "A hard ceiling lowered below {one} is the exception: a person's approval of it as "
    "proposed is then refused."
)
REFUSED_ABOVE_HARD_CEILING = (
    "a person's approval of {them} as proposed is refused, as the policy blocks {them} "
    "outright; an edit within it, or a rejection, is possible."
)


def _of_them(count: int, refused: int, verb: str) -> str:
    """Which of ``count`` waiting proposals ``refused`` are, as a sentence begins: "It is",
    "Both are", "1 of them is", "2 of them are" (``verb``: "is", or "would be")."""
    plural = {"is": "are"}.get(verb, verb)
    if count == 1:
        return f"It {verb}"
    if refused == count:
        return f"Both {plural}" if count == 2 else f"All {count} {plural}"
    return f"1 of them {verb}" if refused == 1 else f"{refused} of them {plural}"


def waiting_said(
    waiting: WaitingUnderPolicy,
    *,
    after: bool,
    replaced: Policy | None = None,
    switched_off: bool = False,
) -> str:
    """The proposals waiting under a policy, in words, with a link to them in the queue:
    before a change of it (``after`` False), or once saved; with ``replaced``, on the
    promotion page of a draft that replaces that policy: which of them its hard ceiling
    refuses now, which the draft's would refuse once it is promoted. Then the approved ones
    it routed not yet carried out that a hard ceiling fails at their next attempt
    (``approved_said``)."""
    said = _pending_said(waiting, after=after, replaced=replaced) if waiting.count else ""
    approved = approved_said(waiting, after=after, replaced=replaced, switched_off=switched_off)
    if said and approved:
        return format_html("{} {}", said, approved)
    return said or approved


def held_back_list_url(switch_id: int) -> str:
    """The queue, filtered to the approved proposals the kill switch held back
    (``HeldBackByKillSwitchFilter``), as its messages link to them."""
    return (
        reverse("admin:approvals_proposal_changelist")
        + "?"
        + urlencode({"status": EVERY_STATUS, HeldBackByKillSwitchFilter.parameter_name: switch_id})
    )


def failing_list_url(policy_id: int) -> str:
    """The queue, filtered to the approved proposals not yet carried out that the policy's
    hard ceiling fails at their next attempt; for a draft, those of the policy it replaces
    that the draft's would fail once it is promoted (``FailingAtNextAttemptFilter``)."""
    return (
        reverse("admin:approvals_proposal_changelist")
        + "?"
        + urlencode({"status": EVERY_STATUS, FailingAtNextAttemptFilter.parameter_name: policy_id})
    )


def _numbers_linked(ids: tuple[int, ...], count: int) -> str:
    """ "#12", "#12 and #17", "#3, #4 and #9", each linked to its page; of ``count``, past
    the ``APPROVED_NAMED`` named (``ids``), "… and 4 more"."""
    links = [
        format_html(
            '<a href="{}">#{}</a>', reverse("admin:approvals_proposal_change", args=[pk]), pk
        )
        for pk in ids[:APPROVED_NAMED]
    ]
    more = count - len(links)
    if more > 0:
        links.append(f"{more} more")
    if len(links) == 1:
        return links[0]
    return format_html(
        "{} and {}", format_html(", ".join(["{}"] * (len(links) - 1)), *links[:-1]), links[-1]
    )


def risks_lowered_said(ids: list[int], *, engaged: bool, of_those_waiting: bool = False) -> str:
    """What a switch's save that released it (or, ``engaged``, moved it off what it covered)
    did to the risk of the waiting proposals it alone had raised
    (``policies.receivers.RISKS_LOWERED``, their ids): each is back to the risk the engine
    gives it, as its history says ("Risk 92 → 19: …"), and still waits for a person. The
    message said nothing of it, though the queue's order changed under the operator. Where
    the sentence before it says they still wait (``of_those_waiting``: a release's, of those
    it left waiting, ``left_waiting_said``), it names them "of them" rather than say again
    that they wait."""
    count = len(ids)
    if of_those_waiting:
        return format_html(
            "Its release lowered the risk of {} of them, which it alone had raised ({}): {} back "
            "to the risk the engine gives it without the switch, as its history says.",
            count,
            _numbers_linked(tuple(ids), count),
            "it is" if count == 1 else "each is",
        )
    return format_html(
        "Its {} lowered the risk of {} it alone had raised ({}): {} back to the risk the engine "
        "gives it without the switch, as its history says, and still waits for a person's "
        "decision.",
        "move" if engaged else "release",
        how_many(count, "waiting proposal"),
        _numbers_linked(tuple(ids), count),
        "it is" if count == 1 else "each is",
    )


def approved_said(
    waiting: WaitingUnderPolicy,
    *,
    after: bool,
    replaced: Policy | None = None,
    switched_off: bool = False,
) -> str:
    """The approved proposals a policy routed that are not yet carried out (queued, or
    between attempts on their channel), as the runner fails them: before a change of it, how
    many there are (a hard ceiling lowered below one fails it at its next attempt rather than
    run it) and which its hard ceiling fails already; once saved, which its hard ceiling
    fails now; on a draft's promotion page, which the draft's would fail once promoted, and
    which that of the policy it replaces fails already. Each count of those failing links to
    the queue's list of exactly them (``failing_list_url``). ``switched_off``: the policy is,
    and its hard ceiling fails none of them until it is switched on again (the runner asks
    only a policy switched on). "" where there is nothing to say."""
    failing, drafted = waiting.approved_failing, waiting.approved_draft_failing
    said = []

    def listed(count: int, policy_id: int) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            failing_list_url(policy_id),
            how_many(count, "approved proposal"),
        )

    def routed(count: int, policy_id: int) -> str:
        by = "it" if replaced is None else f"“{replaced}”"
        return format_html(
            "{} routed by {}, {},",
            listed(count, policy_id),
            by,
            NOT_YET_CARRIED_OUT.format(its="its" if count == 1 else "their"),
        )

    def fails(count: int) -> str:
        return "it fails" if count == 1 else "each fails"

    if not after and replaced is None and waiting.approved:
        said.append(
            format_html(
                "{} {} approved and {}. {} hard ceiling lowered below one fails it {} it{}.",
                how_many(waiting.approved, "proposal"),
                "routed by it is" if waiting.approved == 1 else "routed by it are",
                NOT_YET_CARRIED_OUT.format(its="its" if waiting.approved == 1 else "their"),
                "Switched off, the policy fails none: a" if switched_off else "A",
                AT_NEXT_ATTEMPT,
                " once the policy is switched on again, if it has not run by then"
                if switched_off
                else "",
            )
        )
        if failing:
            one = failing == 1
            said.append(
                format_html(
                    "Of them, {} {} above its hard ceiling already, lowered since {} routed: "
                    "{}. {} {}.",
                    listed(failing, waiting.policy_id),
                    "is" if one else "are",
                    "it was" if one else "they were",
                    _numbers_linked(waiting.approved_refused, failing),
                    capfirst(fails(failing)),
                    AT_NEXT_ATTEMPT,
                )
            )
    elif failing:
        one = failing == 1
        said.append(
            format_html(
                "{} {} above {} hard ceiling now, lowered since {} routed: {}. {} {}.",
                routed(failing, waiting.policy_id),
                "is" if one else "are",
                "its" if replaced is None else "that policy's",
                "it was" if one else "they were",
                _numbers_linked(waiting.approved_refused, failing),
                capfirst(fails(failing)),
                AT_NEXT_ATTEMPT,
            )
        )
    if replaced is not None and drafted and waiting.draft_id is not None:
        already = waiting.approved_refused_by_both
        said.append(
            format_html(
                "{} {} above the draft's hard ceiling{}: {}. Once it is promoted, {} {}.",
                routed(drafted, waiting.draft_id),
                "would be",
                f" ({already} of these failing already)" if already else "",
                _numbers_linked(waiting.approved_draft_refused, drafted),
                fails(drafted),
                AT_NEXT_ATTEMPT,
            )
        )
    return format_html(" ".join(["{}"] * len(said)), *said) if said else ""


def _pending_said(
    waiting: WaitingUnderPolicy, *, after: bool, replaced: Policy | None = None
) -> str:
    """The proposals waiting for a person under a policy (``waiting_said``)."""
    one = waiting.count == 1
    words = (
        {"them": "it", "each": "it keeps", "one": "it", "its": "its"}
        if one
        else {"them": "them", "each": "each keeps", "one": "one", "its": "its"}
    )
    wait = "waits" if one else "wait"
    if replaced is not None:
        routed = f"routed by “{replaced}”, the policy the draft replaces, {wait}"
    elif after:
        routed = f"routed by its earlier versions still {wait}"
    else:
        routed = f"routed by it {wait}"
    said = format_html(
        '<a href="{}">{}</a> {} for a person. {}',
        waiting_list_url(waiting.policy_id),
        how_many(waiting.count, "proposal"),
        routed,
        KEPT_AS_ROUTED.format(**words),
    )
    if replaced is not None:
        return format_html("{}{}", said, _with_draft_said(waiting, replaced))
    if not waiting.refused:
        return (
            said
            if after
            else format_html("{} {}", said, HARD_CEILING_LOWERED.format(one="it" if one else "one"))
        )
    them = "it" if waiting.refused == 1 else "them"
    whose = _of_them(waiting.count, waiting.refused, "is")
    above = f"{whose} above its hard ceiling now"
    return format_html("{} {}: {}", said, above, REFUSED_ABOVE_HARD_CEILING.format(them=them))


def _with_draft_said(waiting: WaitingUnderPolicy, replaced: Policy) -> str:
    """On a draft's promotion page, after what waits under the policy it replaces: which of
    them that policy's hard ceiling refuses now, and which the draft's would refuse once it
    is promoted, of them refused now and not; "" where neither refuses any."""
    said = ""
    if waiting.refused:
        them = "it" if waiting.refused == 1 else "them"
        said += (
            f" {_of_them(waiting.count, waiting.refused, 'is')} above the hard ceiling of "
            f"“{replaced}” now: a person's approval of {them} as proposed is refused already, "
            f"as that policy blocks {them} outright."
        )
    drafted = waiting.draft_refused
    if drafted:
        them = "it" if drafted == 1 else "them"
        both = waiting.refused_by_both
        already = (
            ""
            if not both
            else (" (refused already)" if drafted == 1 else " (each refused already)")
            if both == drafted
            else f" ({both} of these refused already)"
        )
        said += (
            f" {_of_them(waiting.count, drafted, 'would be')} above the draft's hard ceiling"
            f"{already}: once it is promoted, a person's approval of {them} as proposed would "
            f"be refused, as the policy would block {them} outright; an edit within it, or a "
            "rejection, is possible."
        )
    lifted = waiting.refused - waiting.refused_by_both
    if lifted:
        them = "it" if lifted == 1 else "them"
        which = (
            "it"
            if waiting.count == 1
            else ("that one" if lifted == 1 else "those")
            if lifted == waiting.refused
            else f"{lifted} of those"
        )
        said += (
            f" Once the draft is promoted, {which} would no longer be refused: within the "
            f"draft's hard ceiling, a person may approve {them} as proposed."
        )
    return said


# The policies that decide instead of one for part of its scope (``policies_deciding_instead``),
# said to its owner on its page, after a save that changes how it routes, and in the list. A
# hard ceiling set on a policy for every agent ("No bid move above 50%, ever") does not hold
# where an agent's own policy on an account (the copy an autonomy recommendation makes)
# decides: the page and the save's message said only "Hard ceiling: — → 50%".

# What a save may change of how a policy routes: its scope and the settings its rule reads.
ROUTING_FIELDS = tuple(
    field.name
    for field in dataclass_fields(Rule)
    if field.name not in ("policy_id", "name", "version")
)
HARD_CEILINGS = ("block_above_magnitude", "block_above_amount")
# The most policies deciding instead that a row of the list names.
DECIDED_INSTEAD_LISTED = 3


def overlap_said(each: DecidesInstead) -> str:
    """The part of a policy's scope another decides for, in words: "agent “optimizer” on
    account “demo”", "optimization agents", "any agent on Google Ads"."""
    if each.agent is not None:
        who = f"agent “{each.agent}”"
    elif each.agent_kind:
        who = f"{AgentKind(each.agent_kind).label.lower()} agents"
    else:
        who = "any agent"
    if each.account is not None:
        return f"{who} on account “{each.account.external_id}”"
    if each.channel:
        return f"{who} on {Channel(each.channel).label}"
    return who


def _hard_ceiling_there(policy: Policy, other: Policy, name: str) -> str:
    """Whether ``policy``'s hard ceiling ``name`` holds where ``other`` decides instead: it
    does not; ``other``'s own does, if it has one as low."""
    mine, theirs = getattr(policy, name), getattr(other, name)
    if mine is None:
        return ""
    if name == "block_above_magnitude":
        label, unit = "hard ceiling", magnitude_unit(policy.action_type)

        def text(value):
            return ceiling_text(value, unit)

    else:
        label = "hard amount ceiling"

        def text(value):
            return f"{format_money(value, '')} a day"

    if theirs is None:
        return (
            f"This policy's {label} of {text(mine)} does not hold there, and that policy has "
            f"none: a change above {text(mine)} proposed there is not blocked."
        )
    if theirs > mine:
        return (
            f"This policy's {label} of {text(mine)} does not hold there, and that policy's is "
            f"{text(theirs)}: a change between the two proposed there is not blocked."
        )
    return f"That policy's own {label}, {text(theirs)}, blocks there."


def _routed_still_there_said(policy: Policy, each: DecidesInstead, *, after: bool) -> str:
    """The proposals ``policy`` routed where ``each`` decides instead now that are still its
    own (``routed_still_there``): its settings hold for them. "" if none."""
    ids = routed_still_there(
        policy.pk,
        agent_id=each.agent.pk if each.agent is not None else None,
        agent_kind=each.agent_kind,
        account_id=each.account.pk if each.account is not None else None,
        channel=each.channel,
    )
    if not ids:
        return ""
    numbers = [f"#{pk}" for pk in ids[:APPROVED_NAMED]]
    named = f"{', '.join(numbers)} and more" if len(ids) > APPROVED_NAMED else and_joined(numbers)
    what = "this change holds" if after else "this policy's settings hold"
    return (
        f"What this policy routed there before, still waiting for a person or approved and "
        f"not yet carried out ({named}), stays this policy's: {what} for it."
    )


def decided_instead_said(
    policy: Policy, deciding: list[DecidesInstead], *, after: bool, hard_ceilings: bool = True
) -> list[str]:
    """Each policy that decides instead of ``policy`` for part of its scope, linked, and what
    of ``policy`` does not hold there, in a line: on its page (``after`` False) or after a
    save that changed how it routes. With ``hard_ceilings``, plainly where its hard ceiling
    does not hold (that policy has none, or a higher one): the case that misleads."""
    lines = []
    for each in deciding:
        other = each.policy
        # It decides what is proposed there from now on; what this policy routed there
        # already stays this policy's (its hard ceilings hold for it), said apart.
        said = format_html(
            'For {}, <a href="{}">“{}”</a> (#{}, priority {}) decides instead, as the more '
            "specific policy, for what is proposed there from now on: {} for it.",
            overlap_said(each),
            reverse("admin:policies_policy_change", args=[other.pk]),
            other,
            other.pk,
            other.priority,
            "this change does not hold" if after else "none of this policy's settings hold",
        )
        if hard_ceilings:
            for name in HARD_CEILINGS:
                if there := _hard_ceiling_there(policy, other, name):
                    said = format_html("{} {}", said, there)
        if still := _routed_still_there_said(policy, each, after=after):
            said = format_html("{} {}", said, still)
        lines.append(said)
    if lines:
        lines.append(
            "A change of this policy is not carried into those: to have it hold there too, "
            "make it on each of them as well."
        )
    return lines


def decided_instead_listed(policy: Policy, deciding: list[DecidesInstead]) -> str:
    """For the list's state column: the policies that decide instead of ``policy`` for part
    of its scope, linked, each with that part, the first few."""
    shown = format_html_join(
        ", ",
        '<a href="{}">“{}”</a> ({})',
        (
            (reverse("admin:policies_policy_change", args=[each.policy.pk]), each.policy,
             overlap_said(each))
            for each in deciding[:DECIDED_INSTEAD_LISTED]
        ),
    )  # fmt: skip
    more = len(deciding) - DECIDED_INSTEAD_LISTED
    if more > 0:
        shown = format_html("{} and {} more", shown, more)
    return format_html("Live, but not everywhere in its scope; deciding instead: {}", shown)


class PolicyForm(NamedRecordForm):
    action_type = forms.ChoiceField(
        choices=lambda: [(name, action_types.label(name)) for name in action_types.names()]
    )
    agent_kind = forms.ChoiceField(
        choices=[("", "Any kind"), *AgentKind.choices], required=False, label="Agent kind"
    )
    draft_of = forms.ModelChoiceField(
        queryset=Policy.objects.filter(is_draft=False),
        required=False,
        label="Replaces, when promoted",
        help_text="For a draft: the policy it takes the place of in the simulation and when "
        "promoted (one switched off stays so). Empty: the live policy of the same action type, "
        "scope and priority.",
    )
    auto_execute_max_magnitude = percent_field(
        "Auto-execute ceiling",
        f"Largest change that runs without a human, {IN_ITS_UNIT}. Empty: nothing auto-executes.",
    )
    block_above_magnitude = percent_field(
        "Hard ceiling", f"Above it, blocked outright; {IN_ITS_UNIT}."
    )
    more_approvals_above_magnitude = percent_field(
        "More approvals above", f"Two-person rule: above this change, {IN_ITS_UNIT}…"
    )
    cumulative_max_magnitude = percent_field(
        "Cumulative ceiling",
        "Most a campaign's bid or budget may move, compounded, over the window, counting what "
        "executed and what is approved, in percent (25 = 25%), up or down. Above it, a human "
        "decides a move that takes the figure further. A move that brings the figure back "
        "towards where it was is not held for it (a cut after raises that went over it).",
    )

    class Meta:
        model = Policy
        fields = ["action_type", "agent_kind"]  # the admin's fieldsets add the rest

    user = None  # who edits: set by PolicyAdmin.get_form

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        unit = magnitude_unit(self.initial.get("action_type") or self.instance.action_type)
        for name in MAGNITUDE_FIELDS + PERCENT_FIELDS:
            if name in self.initial:
                shown_in = "ratio" if name in PERCENT_FIELDS else unit
                self.initial[name] = as_typed(self.initial[name], shown_in)

    def clean_change_reason(self) -> str:
        reason = self.cleaned_data["change_reason"]
        if promotion_record_typed(reason):
            raise forms.ValidationError(
                "A reason typed here cannot begin as the record of a promotion does "
                "(“promoted from draft #…”, “promoted into …”): only promoting a draft writes it.",
                code="promotion_record",
            )
        return reason

    def named_so_apart(self, cleaned: dict) -> models.QuerySet[Policy] | None:
        """A policy's name is how every proposal it routes names it ("Routed by policy “Bid
        adjustments”"): not another policy's, but a draft's, which keeps the name of the
        policy it replaces (retired beside it once promoted)."""
        if cleaned.get("is_draft", self.instance.is_draft):
            return None
        return Policy.objects.filter(is_draft=False).exclude(pk=self.instance.pk)

    def clean(self):
        cleaned = super().clean()
        unit = magnitude_unit(cleaned.get("action_type"))
        for name in MAGNITUDE_FIELDS + PERCENT_FIELDS:
            if name in cleaned:
                in_unit = "ratio" if name in PERCENT_FIELDS else unit
                cleaned[name] = as_stored(cleaned[name], in_unit)
        # Only the add page has "Is draft": a policy's own page shows it read only
        # (``PolicyAdmin.draft_state``).
        if not cleaned.get("is_draft", self.instance.is_draft):
            cleaned["draft_of"] = None  # only a draft replaces a policy
        if self.errors:  # the scope is not known until its fields are
            return cleaned
        # Who owns an agent does not set how far it runs unreviewed: neither the policy it
        # had nor the one it gets, whichever scope governs it (the rule of
        # approvals.services.acts, for policies). The instance is as saved until it is saved.
        as_saved = Policy(
            agent=cleaned.get("agent"),
            agent_kind=cleaned.get("agent_kind") or "",
            account=cleaned.get("account"),
            channel=cleaned.get("channel") or "",
        )
        before = self.instance if self.instance.pk else None
        agent = owned_agent_governed(self.user, before, as_saved)
        if agent is not None:
            raise forms.ValidationError(
                f"You own agent {agent}; someone else must set its policy.",
                code="owns_agent",
            )
        return cleaned


class KillSwitchForm(ChangeReasonForm):
    class Meta:
        model = KillSwitch
        fields = ["scope", "account", "channel", "engaged", "reason"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The browser stops at the limit too; the model's check says why past it.
        if "reason" in self.fields:
            self.fields["reason"].widget.attrs["maxlength"] = KILL_SWITCH_REASON_MAX_LENGTH

    def clean(self):
        # The scope names what it covers, in the words of the form, beside the field: the
        # database's check (kill_switch_scope_matches) would otherwise refuse it by its name.
        cleaned = super().clean()
        scope, account, channel = (cleaned.get(name) for name in ("scope", "account", "channel"))
        if scope == KillSwitchScope.ACCOUNT:
            if account is None and "account" not in self.errors:
                self.add_error("account", "A switch on one account names it: pick the account.")
            if channel:
                self.add_error(
                    "channel",
                    "A switch on one account covers all its channels: leave the channel empty.",
                )
        elif scope == KillSwitchScope.CHANNEL:
            if not channel and "channel" not in self.errors:
                self.add_error("channel", "A switch on one channel names it: pick the channel.")
            if account is not None:
                self.add_error(
                    "account",
                    "A switch on one channel covers it on every account: leave the account empty.",
                )
        elif scope == KillSwitchScope.GLOBAL:
            for name, value in (("account", account), ("channel", channel)):
                if value:
                    self.add_error(name, f"A switch on everything names no {name}: leave it empty.")
        return cleaned


# What picks how the character before it is drawn (an emoji's colour or text form): seen, as
# that character's form, so kept when it follows one.
_PRESENTATION_SELECTORS = frozenset("\ufe0e\ufe0f")


def hidden_character(line: str) -> str | None:
    """The first character in ``line`` that shows as nothing (a zero-width space, a joiner, a
    bidi control, a byte-order mark: Unicode's format characters and the other
    default-ignorable ones), or None; a presentation selector after a character it draws
    counts as seen."""
    for position, char in enumerate(line):
        if not is_invisible(char):
            continue
        follows_seen = position > 0 and not is_invisible(line[position - 1])
        if char in _PRESENTATION_SELECTORS and follows_seen and not line[position - 1].isspace():
            continue
        return char
    return None


class BrandGuidelinesForm(ChangeReasonForm):
    """Each field is kept as its entries (``lines``), one a line, as the checks read it: a
    save that only re-spaced them, or added a blank line, changes nothing and is no version,
    and the history shows the entries themselves."""

    class Meta:
        model = BrandGuidelines
        fields = ["account", "banned_terms", "banned_patterns", "required_disclaimers"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("banned_terms", "banned_patterns", "required_disclaimers"):
            # Kept whole, so that a line is counted as the person sees it in the field
            # (each entry is stripped on its own below). One who may only read the
            # guidelines gets a form without them.
            if name in self.fields:
                self.fields[name].strip = False

    def _entries(self, name: str) -> str:
        text = self.cleaned_data.get(name) or ""
        for number, line in enumerate(text.splitlines(), start=1):
            hidden = hidden_character(line)
            if hidden is not None:
                # A person could not see it in the field, in the history ("Terms apply. →
                # Terms apply.") or in the save's message; and a creative typed by a person
                # never holds it, so a disclaimer with it would never be found.
                raise forms.ValidationError(
                    f"Line {number} holds an invisible character ({describe(hidden)}): "
                    "type it again without it.",
                    code="invisible_character",
                )
        return "\n".join(lines(text))

    def clean_banned_terms(self) -> str:
        return self._entries("banned_terms")

    def clean_banned_patterns(self) -> str:
        return self._entries("banned_patterns")

    def clean_required_disclaimers(self) -> str:
        return self._entries("required_disclaimers")


class PoliciesField(ChosenByIdField):
    """Policies chosen by id (an id past what the column holds is no policy's)."""


class SimulationForm(PeriodForm):
    """Its drafts' help says what the choice does either way, and, once drafts are chosen,
    which: beside a chosen draft, "None chosen: …" read as said of the choice made."""

    drafts = PoliciesField(
        queryset=Policy.objects.filter(is_draft=True, is_active=True),
        required=False,
        help_text="With none chosen, each proposal is replayed under the policies that decided "
        "it; with drafts chosen, with them in place of the policies they would replace.",
    )

    def clean_drafts(self):
        drafts = self.cleaned_data["drafts"]
        self["drafts"].help_text = self._drafts_help(drafts)  # the bound field is read as rendered
        return drafts

    @staticmethod
    def _drafts_help(drafts) -> str:
        if drafts:
            names = ", ".join(f"“{draft}”" for draft in drafts)
            in_place = (
                "it in place of the policy it"
                if len(drafts) == 1
                else "them in place of the policies they"
            )
            return (
                f"Chosen: {names}. Each proposal is replayed with {in_place} would replace; "
                "choose none to replay each under the policies that decided it."
            )
        return (
            "None chosen: each proposal is replayed under the policies that decided it. "
            "Choose drafts to replay with them in place of the policies they would replace."
        )


class PayloadField(IndentedJSONField):
    """A proposal's payload: a JSON object. Anything else typed (a list, a string, a number,
    null) is refused in those words, with an example of one where there is one, not as
    "This field is required." (an empty list) or the service's "Expected a dictionary, but
    got JSONString."."""

    example: dict | None = None

    def clean(self, value):
        parsed = self.to_python(value)
        if not isinstance(parsed, dict) and str(value or "").strip():
            such_as = (
                json.dumps(self.example, ensure_ascii=False)
                if self.example
                else '{"field": "value"}'
            )
            raise forms.ValidationError(
                f"The payload must be a JSON object, such as {such_as}", code="not_an_object"
            )
        self.validate(parsed)
        self.run_validators(parsed)
        return parsed


class DryRunForm(forms.Form):
    agent = forms.ModelChoiceField(queryset=Agent.objects.filter(is_active=True))
    account = forms.ModelChoiceField(queryset=Account.objects.all())
    payload = PayloadField()
    try_auto_execute_ceiling = percent_field(
        "Try an auto-execute ceiling",
        f"For this run only, instead of the policy's; {IN_ITS_UNIT}. Nothing is saved.",
    )
    try_cumulative_ceiling = percent_field(
        "Try a cumulative ceiling",
        "For this run only, instead of the policy's; in percent (25 = 25%).",
    )


def setting_label(name: str) -> str:
    """A policy's setting named as its form names it ("Auto-execute ceiling", not its field's
    "auto execute max magnitude"), wherever a page lists what changed: its history, a
    promotion."""
    declared = PolicyForm.declared_fields.get(name)
    if declared is not None and declared.label:
        return str(declared.label)
    return capfirst(Policy._meta.get_field(name).verbose_name)


class PromoteForm(forms.Form):
    change_reason = change_reason_field("the policy's history")
    # What the page showed: the draft's last version and the policy it replaces with its last
    # (``promotion_seen``). A promotion from a page opened before either changed is refused.
    seen = forms.CharField(widget=forms.HiddenInput, required=False, max_length=100)


def promotion_seen(draft: Policy, replaces: Policy | None) -> str:
    """The versions a promotion page shows, as its form carries them: the draft's last
    history record, the policy it replaces and that policy's last ("12:1:9"; "12::" where
    it replaces none)."""
    if replaces is None:
        return f"{_last_version(draft)}::"
    return f"{_last_version(draft)}:{replaces.pk}:{_last_version(replaces)}"


def _last_version(policy: Policy) -> str:
    latest = versions_of(policy).order_by("-history_id").first()
    return str(latest.history_id) if latest else ""


def _ceiling_display(field: str, label: str):
    def shown(self, policy) -> str:
        value = getattr(policy, field)
        if value is None:
            return "—"
        unit = "ratio" if field in PERCENT_FIELDS else magnitude_unit(policy.action_type)
        return ceiling_text(value, unit)

    return admin.display(description=label)(shown)


class PolicyHistoryValues(ConsoleHistoryValues):
    """A policy's history reads as its page does (``setting_text``, ``setting_label``): a
    setting by its form's name, a ceiling in percent, or a count for creative batches, not
    the fraction stored; an action type and an agent kind by their names ("budget
    reallocation", not budget_reallocation)."""

    def format_delta_change(self, change):
        if change.field not in (*MAGNITUDE_FIELDS, *PERCENT_FIELDS, *NAMED_FIELDS):
            return replace(super().format_delta_change(change), field=setting_label(change.field))
        # Each value in the unit of its own version's action type: a ceiling of 12 creatives
        # was not "1200%" when the same save made the policy one of percentages.
        old, new = (
            setting_text(change.field, value, magnitude_unit(record.action_type))
            for value, record in (
                (change.old, self.delta.old_record),
                (change.new, self.delta.new_record),
            )
        )
        old, new = self.stringify_delta_change_values(change, old, new)
        return replace(change, field=setting_label(change.field), old=old, new=new)


class PolicyStateFilter(KnownValuesOnly, admin.SimpleListFilter):
    """Where each policy stands, as the list's *state* column says it, defaulting to the
    policies in use: live, switched off and the drafts being tried, not the retired drafts. A
    draft set aside keeps its policy's name and its own ceilings: listed by default among the
    live ones ("Budget changes … Retired draft 20%" above "Budget changes … Live 10%"), it
    read as a policy in force to whom did not read the state, one more for every draft tried.
    Its own filter lists them; "Is active: yes" had counted drafts in, "Is draft: no" the
    policies switched off."""

    title = "state"
    parameter_name = "state"
    IN_USE = "in_use"
    kept = {
        "in_use": ~models.Q(is_draft=True, is_active=False),
        "live": models.Q(is_draft=False, is_active=True),
        "draft": models.Q(is_draft=True, is_active=True),
        "inactive": models.Q(is_draft=False, is_active=False),
        "retired": models.Q(is_draft=True, is_active=False),
        "all": models.Q(),
    }

    def lookups(self, request, model_admin):
        return [
            (self.IN_USE, "In use (all but retired drafts)"),
            ("live", "Live"),
            ("draft", "Draft"),
            ("inactive", "Inactive (switched off)"),
            ("retired", "Retired draft"),
            ("all", "All, retired drafts too"),
        ]

    def current(self) -> str:
        return self.value() or self.IN_USE

    def choices(self, changelist):
        # "Show counts" counts each state too, as it does every other filter's choices.
        counts = self.get_facet_queryset(changelist) if changelist.add_facets else None
        for i, (value, label) in enumerate(self.lookup_choices):
            if counts is not None:
                label = f"{label} ({counts.get(f'{i}__c', '-')})"
            yield {
                "selected": self.current() == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request, queryset):
        self.refuse_unknown(self.value())
        return queryset.filter(self.kept[self.current()])


class PolicyChangeList(ConsoleChangeList):
    """The list's total ("1 result (6 total)") is of the list its link leads to: the policies
    in use, the list shown by default; asked for retired drafts (or every policy), every
    policy, its link leading to them all. It counted every policy whatever the state asked
    for: the filter's own "In use" read "6 results (7 total)", whose link led to the same six."""

    total_query = "?"

    def get_results(self, request):
        super().get_results(request)
        self.read_decided_instead()
        if self.full_result_count is None:
            return
        asked = request.GET.getlist(PolicyStateFilter.parameter_name)
        state = (asked[-1] if asked else "") or PolicyStateFilter.IN_USE  # as the filter reads it
        every = state in ("retired", "all")
        total = "all" if every else PolicyStateFilter.IN_USE
        self.full_result_count = self.root_queryset.filter(PolicyStateFilter.kept[total]).count()
        kept = {PolicyStateFilter.parameter_name: "all"} if every else {}
        if self.is_popup:
            kept[IS_POPUP_VAR] = 1
        if self.add_facets:
            kept[IS_FACETS_VAR] = ""
        self.total_query = f"?{urlencode(kept)}"

    def read_decided_instead(self) -> None:
        """Each live policy listed with the policies that decide instead of it for part of its
        scope (``decided_instead``, for the state column), the live ones read in one query."""
        listed = [policy for policy in self.result_list if policy.state == "Live"]
        if not listed:
            return
        live = live_policies(action_types={policy.action_type for policy in listed})
        for policy in listed:
            policy.decided_instead = policies_deciding_instead(policy, live=live)


def outranked_by_annotated(policies: models.QuerySet[Policy]) -> models.QuerySet[Policy]:
    """Each policy with the id and name of the live policy that outranks it on its whole
    scope (``Policy.outranked_by``), read with the list rather than once a row."""
    rivals = (
        Policy.objects.filter(same_scope(), is_active=True, is_draft=False)
        .filter(
            Q(priority__gt=OuterRef("priority"))
            | Q(priority=OuterRef("priority"), pk__lt=OuterRef("pk"))
        )
        .order_by("-priority", "pk")
    )
    return policies.annotate(
        outranked_by_pk=Subquery(rivals.values("pk")[:1]),
        outranked_by_name=Subquery(rivals.values("name")[:1]),
    )


@admin.register(Policy)
class PolicyAdmin(ChangeReasonAdmin):
    form = PolicyForm
    history_values = PolicyHistoryValues
    # Its windows as its page reads them ("1 day"), typed so too.
    formfield_overrides = {models.DurationField: {"form_class": WindowField}}
    list_display = [
        "name_said",
        "action_type_display",
        "scope",
        "priority",
        "state",
        "auto_executes",
        "cumulative_ceiling_over_window",
    ]
    list_filter = [PolicyStateFilter, ActionTypeFilter, "account"]
    list_select_related = ["account", "agent"]
    # Each version numbered as its owner counts them (1: as first saved), as a proposal's
    # page and history name the version that routed it.
    history_list_display = ["version"]
    search_fields = ["name", "description"]
    fieldsets = [
        (
            None,
            {"fields": ["name", "action_type", "is_active", "is_draft", "draft_of", "description"]},
        ),
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
                    "decide_within",
                ]
            },
        ),
    ]
    shown_read_only = {
        "action_type": "action_type_display",
        "auto_execute_max_magnitude": "auto_execute_ceiling",
        "cumulative_max_magnitude": "cumulative_ceiling",
        "cumulative_window": "cumulative_window_shown",
        "block_above_magnitude": "hard_ceiling",
        "more_approvals_above_magnitude": "more_approvals_above",
        "review_window": "review_window_shown",
        "decide_within": "decide_within_shown",
    }

    auto_execute_ceiling = _ceiling_display("auto_execute_max_magnitude", "auto-execute ceiling")
    hard_ceiling = _ceiling_display("block_above_magnitude", "hard ceiling")
    more_approvals_above = _ceiling_display(
        "more_approvals_above_magnitude", "more approvals above"
    )

    cumulative_ceiling = _ceiling_display("cumulative_max_magnitude", "cumulative ceiling")

    @admin.display(description="cumulative ceiling", ordering="cumulative_max_magnitude")
    def cumulative_ceiling_over_window(self, policy: Policy) -> str:
        """In the list, with the window it counts over (its page shows the window beside it),
        as the proposal's page says a policy's terms: "25% per 1 day"."""
        if policy.cumulative_max_magnitude is None:
            return "—"
        ceiling = ceiling_text(policy.cumulative_max_magnitude, "ratio")
        return f"{ceiling} per {describe_duration(policy.cumulative_window)}"

    def get_changelist(self, request, **kwargs):
        return PolicyChangeList

    def get_history_queryset(self, request, history_manager, pk_name, object_id):
        return (
            super()
            .get_history_queryset(request, history_manager, pk_name, object_id)
            .annotate(version=Window(RowNumber(), order_by=F("history_id").asc()))
        )

    @admin.display(description="cumulative window")
    def cumulative_window_shown(self, policy) -> str:
        return describe_duration(policy.cumulative_window)

    @admin.display(description="review window")
    def review_window_shown(self, policy) -> str:
        return describe_duration(policy.review_window)

    @admin.display(description="decide within")
    def decide_within_shown(self, policy) -> str:
        return describe_duration(policy.decide_within) if policy.decide_within else "no deadline"

    # Where a policy stands (live, a draft, retired) is never changed on its page. A draft
    # goes live only by its promotion, which shows what it changes, replaces the policy it
    # drafts and refuses to change nothing: unticking "Is draft" on a draft's page made it a
    # second live policy beside the one it drafts (given another priority, as the refusal of
    # the same one asked), each change of its own unsaid. A policy becomes a draft only as a
    # new draft of it: ticking the box on a live policy's page took it out of force at once,
    # its proposals sent to a person ("No policy covers …") and its own draft left replacing
    # a draft, under a message saying only "Is draft: no → yes". So every policy's page shows
    # "Is draft" read only, in words, and a live policy's has no "Replaces, when promoted",
    # which only a draft has. A past version's page (its history) shows what was recorded.
    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or is_history_page(request):
            return fieldsets
        # A retired draft replaces nothing any more: it says what it replaced, if it was
        # promoted, or that it never was.
        shown = {
            "is_draft": "draft_state" if self.editable(request, obj) else "draft_state_read",
            **({"draft_of": "retired_draft_replaced"} if obj.state == "Retired draft" else {}),
        }
        return [
            (
                name,
                {
                    **options,
                    "fields": [
                        shown.get(field, field)
                        for field in options["fields"]
                        if obj.is_draft or field != "draft_of"
                    ],
                },
            )
            for name, options in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        if obj is not None and self.editable(request, obj):
            return [*readonly, "draft_state"]
        return readonly

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.user = request.user  # on the class modelform_factory made for this request
        if obj is not None and not obj.is_draft:
            form.base_fields.pop("draft_of", None)  # declared, so there unless taken out
        if obj is not None and "is_active" in form.base_fields:
            form.base_fields["is_active"].help_text = (
                "Unticked, the draft is set aside for good: retired, it decides nothing, is "
                "promoted no more and is kept as it is, read only."
                + (
                    " Delete it instead if it is not worth keeping."
                    if self.has_delete_permission(request, obj)
                    else ""
                )
                if obj.is_draft
                else "Unticked, the policy is switched off: it decides nothing until it is "
                "switched on again. Each is recorded, with its reason, as a new version."
            )
        return form

    @admin.display(description="is draft")
    def draft_state(self, policy: Policy) -> str:
        """Where the policy stands, in words, with the way to what the box did: its promotion
        for a draft; for a live policy, a draft of it."""
        if policy.is_draft and policy.is_active:
            promote = reverse("admin:policies_policy_promote", args=[policy.pk])
            replaces = replaced_policy(policy)
            if replaces is not None and not replaces.is_active:
                # Promoted into the policy it was made of, switched off since: the draft's
                # settings become that policy's, which decides nothing until switched on.
                return format_html(
                    'yes: <a href="{}" id="promote-field-link">promoted</a>, its settings '
                    'become those of <a href="{}">“{}”</a>, the policy it replaces, which is '
                    "switched off and stays so: they decide nothing until it is switched on "
                    "again",
                    promote,
                    reverse("admin:policies_policy_change", args=[replaces.pk]),
                    replaces,
                )
            # A draft that replaces no policy (none live has its action type, scope and
            # priority) is added by its promotion: there is no policy it changes.
            does = (
                "shows first what it changes in the policy it replaces"
                if replaces is not None
                else "adds it to the policies in force: no live policy has its action type, "
                "scope and priority"
            )
            return format_html(
                'yes: it goes live only when <a href="{}" id="promote-field-link">promoted</a>, '
                "which {}",
                promote,
                does,
            )
        if not policy.is_draft and policy.is_active:
            return format_html(
                "{}. A policy becomes a draft only as a new one: "
                '<a href="{}?duplicate={}" id="duplicate-field-link">duplicate it as a draft</a> '
                "to try a change, and this policy decides as it is until the draft is promoted "
                "into it",
                self.draft_state_read(policy),
                reverse("admin:policies_policy_add"),
                policy.pk,
            )
        return self.draft_state_read(policy)

    @admin.display(description="is draft")
    def draft_state_read(self, policy: Policy) -> str:
        """As ``draft_state`` says it, on a page that changes nothing (an auditor's, a retired
        draft's): no way to act."""
        if not policy.is_draft:
            if policy.is_active:
                above = policy.outranked_by()
                if above is None:
                    return "no: it decides live"
                return format_html(
                    'no: live, but it decides nothing: <a href="{}">“{}”</a> (#{}) has its '
                    "action type and scope at a higher priority ({}) and wins every proposal "
                    "this one would match, while it is live",
                    reverse("admin:policies_policy_change", args=[above.pk]),
                    above,
                    above.pk,
                    above.priority,
                )
            return "no: switched off, it decides nothing until it is switched on again"
        if policy.is_active:
            return "yes: it decides nothing live until it is promoted"
        said = (
            "yes, retired: it decides nothing, is promoted no more and is kept as it is, read "
            "only; its history says when and why it was retired"
        )
        promotion = draft_promotion(policy)
        live = replaced_policy(policy)
        if live is None:
            return f"{said}. To try its settings again, make a new draft"
        return format_html(
            '{}. To try its settings again, duplicate <a href="{}">“{}”</a>, the {} it {}, as '
            "a new draft",
            said,
            reverse("admin:policies_policy_change", args=[live.pk]),
            live,
            "live policy" if live.is_active else "policy (switched off)",
            "was promoted into"
            if promotion is not None and promotion.id == live.pk
            else "would replace",
        )

    @admin.display(description="what it replaced")
    def retired_draft_replaced(self, policy: Policy) -> str:
        """A retired draft's "Replaces, when promoted", now that it will not be: the policy it
        was promoted into, by whom and when, as its history recorded it; or that it replaced
        nothing, retired unpromoted."""
        promotion = draft_promotion(policy)
        if promotion is None:
            meant = policy.draft_of
            if meant is None:
                return "nothing: it was retired without being promoted"
            return format_html(
                'nothing: it was retired without being promoted; it was to replace <a href="{}">'
                "“{}”</a>",
                reverse("admin:policies_policy_change", args=[meant.pk]),
                meant,
            )
        by = changed_by(promotion)
        when = console_time(promotion.history_date)
        if not Policy.objects.filter(pk=promotion.id).exists():
            return (
                f"“{promotion.name}” (#{promotion.id}, since deleted): {by} promoted it into "
                f"that policy at {when}"
            )
        return format_html(
            '<a href="{}">“{}”</a> (#{}): {} promoted it into that policy at {}',
            reverse("admin:policies_policy_change", args=[promotion.id]),
            promotion.name,
            promotion.id,
            by,
            when,
        )

    # A retired draft stays retired. Ticking "Is active" on its page made a draft promoted
    # into its policy a draft again ("What changed: Is active: no → yes"), its page and the
    # list saying it waits to be promoted; promoted again, it set the live policy back to what
    # it was before every change made since. It is kept as the record of what was promoted
    # (or set aside), read only: trying it again is a new draft, promoted as any other.
    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_draft and not obj.is_active:
            return False
        if obj is not None and owned_agent_governed(request.user, obj):
            return False  # shown read-only: someone else must set its policy
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and owned_agent_governed(request.user, obj):
            return False
        return super().has_delete_permission(request, obj)

    # A proposal's record names the policy that routed it (``verdict_policy``, protected), so
    # such a policy is kept. Django's collector said so as a want of permission ("would
    # result in deleting related objects, but your account doesn't have permission to delete
    # … proposal"), as if the deletion would take the proposals with it, and read every one
    # of them to say it. The page says what is so, from a count and the first few.
    ROUTED_LISTED = 10

    def delete_view(self, request, object_id, extra_context=None):
        policy = self.get_object(request, unquote(object_id))
        if policy is not None:
            routed = Proposal.objects.filter(verdict_policy=policy).count()
            if routed:
                extra_context = {
                    **(extra_context or {}),
                    "routed_said": format_html(
                        "Policy “{}” routed {}, whose records name it as the policy that "
                        "decided them: it cannot be deleted. To stop it deciding, "
                        '<a href="{}">switch it off on its page</a> (untick “Is active”, '
                        "saying why): it then decides nothing, and its history and their "
                        "pages read as they do.",
                        policy,
                        how_many(routed, "proposal"),
                        reverse("admin:policies_policy_change", args=[policy.pk]),
                    ),
                }
        return super().delete_view(request, object_id, extra_context)

    def get_deleted_objects(self, objs, request):
        routed = Proposal.objects.filter(verdict_policy__in=objs)
        first = list(routed.order_by("pk")[: self.ROUTED_LISTED + 1])
        if not first:
            return super().get_deleted_objects(objs, request)
        protected = [
            format_html(
                '<a href="{}">#{} {}</a>',
                reverse("admin:approvals_proposal_change", args=[proposal.pk]),
                proposal.pk,
                proposal.summary,
            )
            for proposal in first[: self.ROUTED_LISTED]
        ]
        if len(first) > self.ROUTED_LISTED:
            protected.append(f"and {routed.count() - self.ROUTED_LISTED} more")
        return [], {}, set(), protected

    @admin.display(description="auto-executes", ordering="auto_execute_max_magnitude")
    def auto_executes(self, policy: Policy) -> str:
        """What runs without a person, in one column, as the engine reads the three settings
        that say it: a column each (the ceiling, the amount ceiling, "always review") made the
        list 1,098 px wide, its last columns behind a sideways scroll at a laptop's 1280 px,
        and showed a ceiling that "always review" sets aside as if it were in force. An amount
        is a day's, in the account's currency where the policy has one account."""
        action_type = action_types.named(policy.action_type)
        if action_type.always_human:
            return "never: always a person's (the action type)"
        if policy.always_review:
            return "never: always review"
        if policy.auto_execute_max_magnitude is None:
            return "never: no auto-execute ceiling"
        magnitude = policy.auto_execute_max_magnitude
        ceiling = (  # a count says what it counts ("3 creatives"); a share, exactly as set
            action_type.magnitude_text(magnitude)
            if action_type.magnitude_unit == "count"
            else ceiling_text(magnitude, "ratio")
        )
        amount = policy.auto_execute_max_amount
        if amount is None:
            return f"up to {ceiling}"
        currency = policy.account.currency if policy.account_id else ""
        return f"up to {ceiling} and {format_money(amount, currency)} a day"

    def get_queryset(self, request):
        return outranked_by_annotated(super().get_queryset(request))

    @admin.display(description="name", ordering="name")
    def name_said(self, policy: Policy) -> str:
        """Its name as its page titles it: a draft's says it is one ("Budget reallocations
        (draft)"), where the list showed it and the live policy it was made of under one name,
        told apart only by their state."""
        return str(policy)

    @admin.display(description="state")
    def state(self, policy: Policy) -> str:
        # A live policy another live one outranks on its whole scope decides nothing: "Live"
        # alone read as if it did.
        outranked = getattr(policy, "outranked_by_pk", None)
        if policy.state == "Live" and outranked is not None:
            return format_html(
                'Live. Outranked by <a href="{}">“{}”</a> (#{}): decides nothing',
                reverse("admin:policies_policy_change", args=[outranked]),
                policy.outranked_by_name,
                outranked,
            )
        deciding = getattr(policy, "decided_instead", None)
        if policy.state == "Live" and deciding:
            return decided_instead_listed(policy, deciding)
        return policy.state

    @admin.display(description="action type", ordering="action_type")
    def action_type_display(self, policy: Policy) -> str:
        return action_types.named(policy.action_type).listed_as

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
            *record_page(
                "promote/",
                self.admin_site.admin_view(self.promote_view),
                name="policies_policy_promote",
            ),
        ]
        return urls + super().get_urls()

    # Duplicate as draft: the add form, filled in from the policy (``?duplicate=<id>``).

    def _duplicated(self, request) -> Policy | None:
        source_id = request.GET.get("duplicate")
        if source_id is None:
            return None
        valid_id(Policy._meta.pk, source_id)
        source = Policy.objects.filter(pk=source_id, is_draft=False).first()
        if source is None:
            raise Http404(f"There is no live policy #{source_id} to duplicate.")
        return source

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        source = self._duplicated(request)
        return initial | duplicate_initial(source) if source else initial

    def add_view(self, request, form_url="", extra_context=None):
        source = self._duplicated(request)
        if source is not None:
            draft = active_draft_of(source)
            if draft is not None:
                messages.info(request, f"“{source}” already has a draft: this one.")
                return HttpResponseRedirect(
                    reverse("admin:policies_policy_change", args=[draft.pk])
                )
            extra_context = {**(extra_context or {}), "title": f"Duplicate “{source}” as a draft"}
        return super().add_view(request, form_url, extra_context)

    def outranking_said(self, request, policy: Policy) -> None:
        """After a save: which live policy of its scope this one now leaves deciding nothing,
        or which leaves it so, as the list's state column says it."""
        for below in policy.outranks():
            messages.warning(
                request,
                f"It outranks “{below}” (#{below.pk}), which has its action type and scope at "
                f"priority {below.priority}: that policy decides nothing while this one is "
                "live.",
            )
        above = policy.outranked_by()
        if above is not None:
            messages.warning(
                request,
                f"“{above}” (#{above.pk}) outranks it, with its action type and scope at "
                f"priority {above.priority}: this policy decides nothing while that one is "
                "live.",
            )

    def response_change(self, request, obj):
        answer = super().response_change(request, obj)
        self.outranking_said(request, obj)
        if not getattr(obj, "_nothing_changed", False):
            self.waiting_said_after(request, obj)
            self.decided_instead_after(request, obj)
        return answer

    def decided_instead_after(self, request, policy: Policy) -> None:
        """After a save (or a draft's promotion) that changed how ``policy`` routes: the
        policies that decide instead of it for part of its scope, where the change does not
        hold; plainly so of a hard ceiling the save set or changed."""
        last_two = list(versions_of(policy).order_by("-history_id")[:2])
        changed = set(ROUTING_FIELDS)
        if len(last_two) == 2:
            now, before = last_two
            changed = {name for name in changed if getattr(now, name) != getattr(before, name)}
        if not changed:
            return
        deciding = policies_deciding_instead(policy)
        lines = decided_instead_said(
            policy, deciding, after=True, hard_ceilings=bool(changed & set(HARD_CEILINGS))
        )
        if lines:
            messages.warning(request, format_html_join(" ", "{}", ((line,) for line in lines)))

    def waiting_said_after(self, request, policy: Policy) -> None:
        """After a change of a policy (a save, a draft's promotion into it): the proposals it
        routed that still wait for a person as they were routed, and how many of them its
        hard ceilings now refuse, with a link to them."""
        if policy.is_draft:
            return
        # Switched off, its hard ceilings refuse nothing: it decides nothing.
        rule = rule_from_policy(policy) if policy.is_active else None
        waiting = waiting_under_policy(policy.pk, rule=rule)
        if waiting.count or waiting.approved_failing:
            messages.warning(request, waiting_said(waiting, after=True))

    def response_add(self, request, obj, post_url_continue=None):
        if obj.is_draft and "_addanother" not in request.POST:
            messages.success(
                request,
                f"Draft “{obj}” saved. It decides nothing live: dry run it or simulate it, "
                "then promote it.",
            )
            return HttpResponseRedirect(reverse("admin:policies_policy_change", args=[obj.pk]))
        answer = super().response_add(request, obj, post_url_continue)
        self.outranking_said(request, obj)
        self.decided_instead_after(request, obj)
        return answer

    def change_view(self, request, object_id, form_url="", extra_context=None):
        policy = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if policy is not None and policy.is_draft:
            # A retired draft (promoted, say) is simulated no more: the simulation offers only
            # active drafts, so its link would lead to a refusal.
            if policy.is_active:
                context["simulate_query"] = simulate_query(policy)
            context["replaces"] = replaced_policy(policy)
        elif policy is not None:
            # As the message after its save says: how many of them its hard ceilings refuse
            # now (none, switched off: it decides nothing).
            rule = rule_from_policy(policy) if policy.is_active else None
            waiting = waiting_under_policy(policy.pk, rule=rule)
            if waiting.count or waiting.approved:
                context["waiting_said"] = waiting_said(
                    waiting, after=False, switched_off=not policy.is_active
                )
            context["decided_instead"] = decided_instead_said(
                policy, policies_deciding_instead(policy), after=False
            )
        return super().change_view(request, object_id, form_url, context)

    def promote_view(self, request, object_id: int):
        draft = self.get_object(request, object_id)
        if draft is None or not draft.is_draft or not draft.is_active:
            raise Http404("There is no active draft with this id.")
        replaces = replaced_policy(draft)
        if not self.has_change_permission(request, draft) or (
            replaces is not None and not self.has_change_permission(request, replaces)
        ):
            raise PermissionDenied
        form = PromoteForm(
            request.POST if request.method == "POST" else None,
            initial={"seen": promotion_seen(draft, replaces)},
        )
        if form.is_bound and form.is_valid():
            live, changed = None, ""
            try:
                with transaction.atomic():
                    changed = self.changed_since_shown(request, draft, form.cleaned_data["seen"])
                    if not changed:
                        live = policy_promote(
                            draft_id=draft.pk,
                            actor=Actor.for_user(request.user),
                            reason=form.cleaned_data["change_reason"],
                        )
            except DomainError as error:
                form.add_error(None, error.message)
            if live is not None:
                console_act_logged(request, live, f"Promoted from draft #{draft.pk}")
                messages.success(request, self.promotion_said(request, live, draft))
                if live.pk != draft.pk:
                    self.waiting_said_after(request, live)
                self.decided_instead_after(request, live)
                return HttpResponseRedirect(reverse("admin:policies_policy_change", args=[live.pk]))
            if form.is_valid() and changed:
                # The page again, as things stand now, to promote again from it.
                draft.refresh_from_db()
                if not (draft.is_draft and draft.is_active):
                    messages.error(request, changed)
                    return HttpResponseRedirect(
                        reverse("admin:policies_policy_change", args=[draft.pk])
                    )
                replaces = replaced_policy(draft)
                form.data = form.data.copy()
                form.data["seen"] = promotion_seen(draft, replaces)
                form.add_error(None, changed)
        # Each side in the unit of its own action type (a draft may change it).
        live_unit = magnitude_unit(replaces.action_type if replaces else draft.action_type)
        unit = magnitude_unit(draft.action_type)
        place = self.form_order()
        in_form_order = sorted(changes_on_promotion(draft), key=lambda change: place[change[0]])
        changes = [
            (setting_label(name), setting_text(name, before, live_unit),
             setting_text(name, after, unit))
            for name, before, after in in_form_order
        ]  # fmt: skip
        context = {
            **self.admin_site.each_context(request),
            "title": f"Promote “{draft}”",
            "opts": self.model._meta,
            "draft": draft,
            "replaces": replaces,
            "changes": changes,
            "form": form,
        }
        if replaces is not None:
            # Switched off, neither hard ceiling refuses anything: it decides nothing.
            active = replaces.is_active
            waiting = waiting_under_policy(
                replaces.pk,
                rule=rule_from_policy(replaces) if active else None,
                draft=rule_from_policy(draft) if active else None,
            )
            if waiting.count or waiting.approved_failing or waiting.approved_draft_failing:
                context["waiting_said"] = waiting_said(waiting, after=False, replaced=replaces)
        return TemplateResponse(request, "admin/policies/policy/promote.html", context)

    def changed_since_shown(self, request, draft: Policy, seen: str) -> str:
        """Why a promotion from a page that showed ``seen`` (``promotion_seen``) is refused,
        with the draft and the policy it replaces locked until the promotion ends: who changed
        either since, what and when, as a save of a page opened before a change is refused
        ("" if neither changed). Promoted as they stand, the settings that went live were not
        those the page listed (a colleague's edit of the draft: 30% where it said 25%)."""
        if not seen:  # a page from before pages said what they showed
            return ""
        Policy.objects.select_for_update().filter(pk=draft.pk).first()
        draft.refresh_from_db()
        replaces = replaced_policy(draft, lock=True)
        if promotion_seen(draft, replaces) == seen:
            return ""
        draft_seen, replaced_pk, replaced_seen = ([*seen.split(":"), "", ""])[:3]
        said = self._changes_since(request, draft, draft_seen, "the draft")
        replaced_id = id_asked(replaced_pk)
        replaced = Policy.objects.filter(pk=replaced_id).first() if replaced_id else None
        if replaced is not None:
            said += self._changes_since(
                request, replaced, replaced_seen, f"“{replaced}”, the policy it replaces,"
            )
        said = [text for _, text in sorted(said)]  # in the order they were made
        if (replaces.pk if replaces else None) != (replaced.pk if replaced else None):
            said.append(
                f"it now replaces “{replaces}”"
                if replaces is not None
                else "it now replaces no policy: it would go live itself, beside the others"
            )
        return (
            "Nothing was promoted: the draft or the policy it replaces changed after you "
            "opened this page, so what it listed is not what promoting would do. Changed: "
            + "; then ".join(said or ["what the page showed is not how they stand now"])
            + ". What it changes now is listed above: check it and promote again."
        )

    def _changes_since(
        self, request, policy: Policy, seen: str, named: str
    ) -> list[tuple[int, str]]:
        """Each version of ``policy`` after the history record ``seen``, in words, with its
        history record's id."""
        since = id_asked(seen) or 0
        previous = versions_of(policy).filter(history_id__lte=since).order_by("-history_id")
        previous = previous.first()
        said = []
        for record in versions_of(policy).filter(history_id__gt=since).order_by("history_id"):
            what = self.version_in_words(request, record, previous) if previous else ""
            said.append((record.history_id, f"{named} by {version_said(record, what)}"))
            previous = record
        return said

    def promotion_said(self, request, live: Policy, draft: Policy) -> str:
        """What a promotion changed, as a save's message says it: the settings of the live
        policy the draft replaced, as its history reads them ("What changed: Auto-execute
        ceiling: 15% → 20%."); or that the draft itself went live, adding a policy."""
        if live.pk == draft.pk:
            return (
                f"“{live}” is live, as the draft set it: no live policy had its action type, "
                "scope and priority, so it adds to the policies in force."
            )
        changes = self.changes_in_words(request, live)
        if not live.is_active:
            return (
                f"“{live}” has the draft's settings and stays switched off: it decides nothing "
                f"until it is switched on again. What changed: {as_sentence(changes)}"
            )
        return f"“{live}” is live, as the draft set it. What changed: {as_sentence(changes)}"

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
            draft_set = drafts_in_place([d.pk for d in drafts]) if drafts else None
            since, until = form.bounds()
            try:
                report = simulate(since=since, until=until, draft_set=draft_set)
            except DomainError as error:
                form.add_error(None, error.message)
                return TemplateResponse(request, "admin/policies/policy/simulate.html", context)
            labels = {row: SIMULATED_ROW_LABELS[row].capitalize() for row in SIMULATED_ROWS}
            # With no draft, the routings are replayed under the policies that decided them.
            replayed = "With the draft" if report.drafts else "Replayed"
            context["report"] = report
            context["replayed_label"] = replayed
            context["chart_label"] = (
                "Outcomes, as they happened and with the draft"
                if report.drafts
                else "Outcomes, as they happened and replayed under the policies that decided them"
            )
            if len(drafts) == 1 and self.has_change_permission(request, drafts[0]):
                context["promotable"] = drafts[0]
            # A draft of a policy switched off since is simulated deciding, as that policy
            # would once switched on again; promoted into it, it stays switched off.
            context["switched_off"] = [
                (draft, replaces)
                for draft in drafts
                if (replaces := replaced_policy(draft)) is not None and not replaces.is_active
            ]
            context["rows"] = [
                (labels[row], report.happened[row], report.with_draft[row])
                for row in SIMULATED_ROWS
            ]
            context["held"] = [
                (WHAT_HELD_LABELS[held], count) for held, count in report.held_by.most_common()
            ]
            context["chart"] = grouped_bars(
                [labels[row] for row in SIMULATED_ROWS],
                [
                    ("Happened", [report.happened[row] for row in SIMULATED_ROWS]),
                    (replayed, [report.with_draft[row] for row in SIMULATED_ROWS]),
                ],
            )
        return TemplateResponse(request, "admin/policies/policy/simulate.html", context)

    def dry_run_view(self, request, object_id: int):
        policy = self.get_object(request, object_id)
        if policy is None or not self.has_view_permission(request, policy):
            raise PermissionDenied
        chosen = dry_run_for(policy)
        agent, account = chosen.agent, chosen.account
        example, example_said = dry_run_example(policy, account, agent)
        form = DryRunForm(
            request.POST if request.method == "POST" else None,
            initial={"payload": example, "account": account, "agent": agent},
        )
        form.fields["payload"].example = example
        context = {
            **self.admin_site.each_context(request),
            "title": f"Dry run: {policy}",
            "opts": self.model._meta,
            "policy": policy,
            "form": form,
            "example_said": "" if form.is_bound else example_said,
            "agent_said": "" if form.is_bound else chosen.said,
            "decides_said": chosen.decides_said,
            "simulate_query": simulate_query(policy)
            if policy.is_draft and policy.is_active
            else "",
            "replaces": replaced_policy(policy) if policy.is_draft else None,
            "may_promote": policy.is_draft
            and policy.is_active
            and self.has_change_permission(request, policy),
        }
        if form.is_bound and form.is_valid():
            rules, tried = self._rules_to_try(policy, form.cleaned_data)
            try:
                assessed, verdict = proposal_dry_run(
                    agent=form.cleaned_data["agent"],
                    account_external_id=form.cleaned_data["account"].external_id,
                    action_type=policy.action_type,
                    payload=form.cleaned_data["payload"],
                    rules=rules,
                )
            except InvalidInput as error:
                form.add_error(None, error.message)
            else:
                if tried and verdict.policy_id != policy.pk and policy.is_active:
                    # A more specific policy (an agent's own, say) decided it: the ceiling
                    # typed, in this policy's rule, was never read.
                    decides = (
                        f"policy “{verdict.policy_name}”" if verdict.policy_name else "no policy"
                    )
                    tried = [
                        f"nothing: {decides} decides it, not “{policy}”, so the ceiling "
                        "typed was not used"
                    ]
                unit = assessed.action_type.magnitude_unit
                context.update(
                    assessed=assessed,
                    verdict=verdict,
                    # A guardrail's block (a cap, a lock) is not its policy's: the policy only
                    # matches it, and the page says so rather than "blocked under" it.
                    policy_decides=verdict.outcome == VerdictOutcome.AUTO_APPROVE
                    or any(hold.rule not in NOT_A_POLICYS_RULE for hold in verdict.held_by),
                    tried=tried,
                    magnitude=format_magnitude(assessed.assessment.magnitude, unit),
                )
        return TemplateResponse(request, "admin/policies/policy/dry_run.html", context)

    def _rules_to_try(self, policy: Policy, typed: dict):
        """The rules a dry run evaluates with: those in force (with ``policy`` in place if it
        is a draft), and the ceilings typed in the form, for this run only, in ``policy``'s
        rule. Also what was tried, in words."""
        rules = draft_rule_set([policy.pk])[0] if policy.is_draft else None
        unit = magnitude_unit(policy.action_type)
        tried = {
            "auto_execute_max_magnitude": as_stored(typed["try_auto_execute_ceiling"], unit),
            "cumulative_max_magnitude": as_stored(typed["try_cumulative_ceiling"], "ratio"),
        }
        tried = {name: value for name, value in tried.items() if value is not None}
        if not tried:
            return rules, []
        rules = rules if rules is not None else rules_in_force(action_type=policy.action_type)
        if not any(rule.policy_id == policy.pk for rule in rules):
            return rules, [f"nothing: “{policy}” is not in force, so no ceiling of it decides"]
        rules = [replace(r, **tried) if r.policy_id == policy.pk else r for r in rules]
        words = {
            "auto_execute_max_magnitude": f"an auto-execute ceiling of "
            f"{ceiling_text(tried.get('auto_execute_max_magnitude', 0), unit)}",
            "cumulative_max_magnitude": f"a cumulative ceiling of "
            f"{percent_text(tried.get('cumulative_max_magnitude', 0))}",
        }
        return rules, [words[name] for name in tried]


def dry_run_example(
    policy: Policy, account: Account | None, agent: Agent | None = None
) -> tuple[dict | None, str]:
    """The payload a policy's dry run is first filled with, made from the account's campaigns
    as they are now, and what it is, in words; none, and why, where the account has nothing
    it could be about."""
    governed = action_types.named(policy.action_type)
    label = action_types.label(policy.action_type)
    if account is None:
        return None, f"No payload is filled in: there is no account to try a {label} on."
    ceiling = policy.auto_execute_max_magnitude
    replaced = policy.draft_of.auto_execute_max_magnitude if policy.draft_of else None
    raises = bool(policy.is_draft and ceiling and replaced is not None and ceiling > replaced)
    magnitude = governed.example_magnitude(ceiling, replaced=replaced if raises else None)
    example = governed.example_payload(account, magnitude)
    if example is None:
        return None, (
            f"No payload is filled in: account “{account}” {governed.example_missing}, so "
            f"there is no {label} on it to try. Choose an account that has, and type one."
        )
    made = f"The payload filled in is an example made from account “{account}” as it is now"
    if governed.always_human:
        return example, f"{made}. {governed.always_human}"
    if policy.always_review:
        return example, f"{made}: this policy sends every one to a person."
    if policy.auto_execute_max_magnitude is None:
        return example, f"{made}: this policy lets nothing auto-execute, so a person decides it."
    if raises:
        return raised_ceiling_example(policy, governed, account, agent, example, made)
    return example, f"{made}, a change just past this policy's auto-execute ceiling."


def raised_ceiling_example(
    policy: Policy,
    governed: action_types.ActionType,
    account: Account,
    agent: Agent | None,
    example: dict,
    made: str,
) -> tuple[dict, str]:
    """For a draft that raises the auto-execute ceiling of the policy it replaces: a change
    the draft lets run that the live policy holds, tried through the engine at sizes between
    the two ceilings, largest first, against the account's campaigns and the moves counted on
    them now. A change just within the draft's ceiling alone is no such example where another
    rule (the cumulative ceiling, say) holds it under both. Where no size tried differs, the
    page says so, and what holds it."""
    ceiling = policy.auto_execute_max_magnitude
    replaced = policy.draft_of.auto_execute_max_magnitude
    count = governed.magnitude_unit == "count"
    step = Decimal(1) if count else EXAMPLE_STEP
    sizes = [ceiling - step, (ceiling + replaced) / 2, replaced + step]
    cumulative = policy.cumulative_max_magnitude
    if cumulative is not None and not count:
        sizes.insert(1, cumulative - step)
    sizes = sorted(
        {Decimal(int(size)) if count else size for size in sizes if replaced < size <= ceiling},
        reverse=True,
    )
    if agent is None or not sizes:
        return example, f"{made}, a change {BETWEEN_THE_CEILINGS}."
    draft_rules = draft_rule_set([policy.pk])[0]
    tried = []
    for size in sizes:
        payload = governed.example_payload(account, size)
        if payload is None:
            continue
        try:
            [(assessed, live), (_, drafted)] = [
                proposal_dry_run(
                    agent=agent,
                    account_external_id=account.external_id,
                    action_type=policy.action_type,
                    payload=payload,
                    rules=rules,
                )
                for rules in (None, draft_rules)
            ]
        except DomainError:
            continue
        shown = governed.magnitude_text(assessed.assessment.magnitude)
        if drafted.outcome != live.outcome:
            return payload, (
                f"{made}, a change of {shown}, {BETWEEN_THE_CEILINGS}: "
                f"{DRY_RUN_OUTCOME_SAID[drafted.outcome]} with the draft, "
                f"{DRY_RUN_OUTCOME_SAID[live.outcome]} with the policy in force."
            )
        tried.append((payload, shown, drafted))
    if not tried:
        return example, f"{made}, a change {BETWEEN_THE_CEILINGS}."
    payload, first, drafted = tried[0]
    holds = "; ".join(hold.text.rstrip().removesuffix(".") for hold in drafted.held_by)
    # The holds' figures are those of the first size, the one filled in: at a smaller one,
    # a cumulative ceiling may hold one campaign and not the other.
    return payload, (
        f"{made}, a change {BETWEEN_THE_CEILINGS}. No such change on it would be decided "
        "otherwise by the draft now: "
        f"at each size tried ({', '.join(shown for _, shown, _ in tried)}) it is "
        f"{DRY_RUN_OUTCOME_SAID[drafted.outcome]} under both"
        + (f"; at {first}, the one filled in below, held by {holds}." if holds else ".")
    )


BETWEEN_THE_CEILINGS = (
    "within this draft's auto-execute ceiling and past the one of the policy it replaces"
)


@dataclass(frozen=True)
class DryRunFor:
    """Whom a policy's dry run is first shown for: an agent and an account, why them, in
    words, and whom the policy decides for, in words."""

    agent: Agent | None
    account: Account | None
    said: str
    decides_said: str


# The most (agent, account) pairs a dry run's page names: those the policy decides for, those
# that proposed last and are decided by another policy.
NAMED_AT_MOST = 8


def rules_deciding_with(policy: Policy) -> list[Rule]:
    """The rules a submission would be matched against with ``policy`` deciding as it does: a
    live policy with those in force; a draft in place of the policy it would replace, as the
    simulation and the dry run put it (``draft_rule_set``). One not in force (switched off, a
    draft retired or set aside) among them as if it were: whom it would decide for."""
    if policy.is_draft and policy.is_active:
        return draft_rule_set([policy.pk])[0]
    rules = [
        rule
        for rule in rules_in_force(action_type=policy.action_type)
        if rule.policy_id != policy.pk
    ]
    if policy.is_draft:
        replaces = replaced_policy(policy)
        rules = [rule for rule in rules if replaces is None or rule.policy_id != replaces.pk]
    return [*rules, rule_from_policy(policy)]


def _pair_said(agent: Agent, account: Account) -> str:
    return f"“{agent}” on “{account}”"


def _named(pairs: list[str]) -> str:
    """ "a, b and c", or "a, b, … and 3 more" past ``NAMED_AT_MOST``."""
    shown = pairs[:NAMED_AT_MOST]
    more = len(pairs) - len(shown)
    shown = shown + ([f"{more} more"] if more else [])
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


def dry_run_for(policy: Policy) -> DryRunFor:
    """The agent and account a policy's dry run is first shown for, and why, in words: of the
    active agents that may propose its action type (only the platform's own agent for one
    agents may not propose, a policy change; never it for an agent's action) on each of their
    accounts, one this policy decides for, matched as a submission is (``deciding_rule``, with
    a draft in place of the policy it would replace): the one that last proposed its action
    type there; else one of the kind whose work it is (``proposed_by_kinds``), else the first
    by name. The last to propose it was tried even where a more specific policy (an agent's
    own on its account, one an autonomy recommendation made) decided it, so that a ceiling
    typed for this policy was never read. Where it decides for no agent at all, the last to
    propose it, saying whose verdict it is.

    Bounded whatever the number of agents, accounts and proposals: it reads the latest
    ``RECENT_PROPOSALS`` proposals of the action type and
    matches against the rules the first ``PAIRS_EXAMINED`` agent and account pairs by name
    and those proposers' pairs, saying so where it looked at only some."""
    label = action_types.label(policy.action_type)
    in_force = policy.is_active
    decides = "this policy decides" if in_force else "this policy would decide"
    rules = rules_deciding_with(policy)
    platforms = not action_types.named(policy.action_type).agents_may_propose
    agents = Agent.objects.filter(is_active=True, is_platform=platforms)
    if policy.agent_id:
        agents = agents.filter(pk=policy.agent_id)
    if policy.agent_kind:
        agents = agents.filter(kind=policy.agent_kind)
    links = Agent.accounts.through.objects.filter(agent__in=agents)
    if policy.account_id:
        links = links.filter(account_id=policy.account_id)
    if policy.channel:
        links = links.filter(account__channel=policy.channel)
    pairs = links.count()
    examined = list(
        links.select_related("agent", "account").order_by("agent__name", "account__external_id")[
            :PAIRS_EXAMINED
        ]
    )
    # Who proposed its action type last, on which account, the latest first: on an account
    # it still acts on (else it could not propose there now).
    proposals = Proposal.objects.filter(
        Exists(links.filter(agent_id=OuterRef("agent_id"), account_id=OuterRef("account_id"))),
        action_type=policy.action_type,
    )
    recent = list(
        proposals.order_by("-created_at").values_list("agent_id", "account_id", "created_at")[
            :RECENT_PROPOSALS
        ]
    )
    proposers: dict[tuple[int, int], object] = {}
    for agent_id, account_id, created_at in recent:
        proposers.setdefault((agent_id, account_id), created_at)
    pairs_of = {(link.agent_id, link.account_id): (link.agent, link.account) for link in examined}
    unseen = [pair for pair in proposers if pair not in pairs_of]
    if unseen:  # a proposer past the first by name, on its account: read them too
        agents_of = Agent.objects.in_bulk({agent_id for agent_id, _ in unseen})
        accounts_of = Account.objects.in_bulk({account_id for _, account_id in unseen})
        pairs_of |= {pair: (agents_of[pair[0]], accounts_of[pair[1]]) for pair in unseen}
    deciding = {
        pair: (
            agent,
            account,
            deciding_rule(rules, action_type=policy.action_type, agent=agent, account=account),
        )
        for pair, (agent, account) in pairs_of.items()
    }
    first_by_name = len(examined)
    by_name = list(deciding.values())[:first_by_name]
    decided = [
        (agent, account)
        for agent, account, rule in by_name
        if rule is not None and rule.policy_id == policy.pk
    ]
    some = (
        f" (the first {PAIRS_EXAMINED} by name of {pairs} such pairs, only those looked at)"
        if pairs > PAIRS_EXAMINED
        else ""
    )
    if decided:
        decides_said = (
            f"Of the active agents that may propose a {label}, each on the accounts it acts "
            f"on{some}, {decides} for {_named([_pair_said(*pair) for pair in decided])}: choose "
            "one of those below for this policy's verdict (and a ceiling typed to be tried); "
            "for any other, the verdict is that of the policy that decides it."
        )
    elif some:
        decides_said = (
            f"Of the active agents that may propose a {label}, each on the accounts it acts "
            f"on{some}, {decides} for none: a more specific policy decides for each of those."
        )
    elif deciding:
        decides_said = (
            f"Of the active agents that may propose a {label}, {decides} for none, on any "
            "account it acts on: a more specific policy decides for each, so the verdict is "
            "never this policy's and a ceiling typed is not used."
        )
    else:
        decides_said = ""
    if decides_said and not in_force:
        decides_said = f"Were it in force: {decides_said[0].lower()}{decides_said[1:]}"
    lately = (
        f" lately (in the {RECENT_PROPOSALS} latest proposals of a {label})"
        if len(recent) == RECENT_PROPOSALS
        else " lately"
    )
    passed_over = []
    for pair, last in proposers.items():
        agent, account, rule = deciding[pair]
        if rule is not None and rule.policy_id == policy.pk:
            said = (
                f"It is tried for agent “{agent}” on account “{account}”, the last to propose "
                f"a {label} that {decides} ({console_time(last)})."
            )
            if passed_over:
                later = "A later one is" if len(passed_over) == 1 else "Later ones are"
                said += f" {later} decided by another policy: {_passed_over_said(passed_over)}."
            return DryRunFor(agent, account, said, decides_said)
        if len(passed_over) < NAMED_AT_MOST:
            passed_over.append((agent, account, rule))
    if decided:
        kinds = action_types.named(policy.action_type).proposed_by_kinds
        suited = [pair for pair in decided if pair[0].kind in kinds]
        agent, account = (suited or decided)[0]
        proposed = (
            f"No agent that proposed a {label}{lately} is one {decides} for: "
            + _passed_over_said(passed_over)
            if passed_over
            else f"No agent has proposed a {label} yet on an account it acts on now"
        )
        if suited:
            why = (
                f", which {decides} for: an agent of the kind whose work it is "
                f"({AgentKind(agent.kind).label.lower()})"
            )
        elif len(decided) == 1 and not some:
            why = f", the only agent and account {decides} for"
        else:
            why = f", the first by name of those {decides} for"
        return DryRunFor(
            agent,
            account,
            f"{proposed}. It is tried for agent “{agent}” on account “{account}”{why}.",
            decides_said,
        )
    if passed_over:
        agent, account, rule = passed_over[0]
        return DryRunFor(
            agent,
            account,
            f"It is tried for agent “{agent}” on account “{account}”, the last to propose a "
            f"{label}; {_decided_by(rule)} decides it, not this policy, and its verdict is "
            "the one shown.",
            decides_said,
        )
    if not deciding and platforms:
        return DryRunFor(None, policy.account, _no_platform_account(label), decides_said)
    if not deciding:
        return DryRunFor(
            None,
            policy.account,
            f"There is no active agent this policy covers to try a {label} for.",
            decides_said,
        )
    agent, account, rule = by_name[0]
    return DryRunFor(
        agent,
        account,
        f"It is tried for agent “{agent}” on account “{account}”, the first by name; "
        f"{_decided_by(rule)} decides it, not this policy, and its verdict is the one shown.",
        decides_said,
    )


# How many of an action type's latest proposals a dry run looks through for the last one by
# an agent, on an account, its policy decides; how many agent and account pairs, first by
# name, it matches against the rules to say whom the policy decides for. Each read at once.
RECENT_PROPOSALS = 200
PAIRS_EXAMINED = 200


def _no_platform_account(label: str) -> str:
    """Why a dry run of an action only the platform's own agent proposes (a policy change, an
    autonomy recommendation) is tried for nobody: that agent is made with its first
    recommendation and given each account it recommends a change on, then."""
    platform = Agent.objects.filter(is_platform=True).first()
    if platform is None:
        return (
            f"Only the platform's own agent proposes a {label} (an autonomy recommendation), "
            "and there is none yet: it is made with the first recommendation. There is no one "
            "to try it for until then."
        )
    return (
        f"Only the platform's own agent, “{platform}”, proposes a {label} (an autonomy "
        "recommendation), and it acts on no account this policy covers"
        + ("" if platform.is_active else " (it is switched off)")
        + ": it is given an account when it recommends a change on it. There is no one to try "
        "it for until then."
    )


def _decided_by(rule: Rule | None) -> str:
    return f"policy “{rule.name}”" if rule is not None else "no policy"


def _passed_over_said(passed_over: list) -> str:
    """The agents that proposed, each on its account, and the policy deciding for each:
    "policy “Budget reallocations: optimizer on demo” decides for “optimizer” on “demo”"."""
    return "; ".join(
        f"{_decided_by(rule)} decides for {_pair_said(agent, account)}"
        for agent, account, rule in passed_over
    )


def simulate_query(draft: Policy) -> str:
    """The simulation page's query for a draft over the last 30 days."""
    today = timezone.localdate()
    return urlencode(
        {
            "drafts": draft.pk,
            "since": today - timedelta(days=30),
            "until": today + timedelta(days=1),
        }
    )


# Settings stored as a name that a page shows in words: "budget reallocation", not
# budget_reallocation, as the form's choices and the policy list read them.
NAMED_FIELDS = ("action_type", "agent_kind")


def setting_text(name: str, value, unit: str) -> str:
    """A policy's setting as its page shows it."""
    if value is None or value == "":
        return "—"
    if name == "action_type":
        return action_types.label(value)
    if name == "agent_kind":
        return AgentKind(value).label if value in AgentKind.values else value
    if name == "channel":
        return Channel(value).label if value in Channel.values else value
    if name in MAGNITUDE_FIELDS:
        return ceiling_text(value, unit)
    if name in PERCENT_FIELDS:
        return percent_text(value)
    if isinstance(value, timedelta):
        return describe_duration(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def sent_to_people_said(sent: list) -> str:
    """How many proposals a switch sent to a person, and how: "While engaged, it sent 3
    proposals to a person: 2 routed to a person as they were made or re-assessed and 1 held
    back as it was about to run, to be approved again." Each proposal counted once a way; one
    both ways is said so."""
    routed = {each.proposal_id for each in sent if not each.held_back}
    held = {each.proposal_id for each in sent if each.held_back}
    ways = []
    if routed:
        made = "it was" if len(routed) == 1 else "they were"
        ways.append(f"{len(routed)} routed to a person as {made} made or re-assessed")
    if held:
        run = "it was" if len(held) == 1 else "they were"
        ways.append(f"{len(held)} held back as {run} about to run, to be approved again")
    said = f"While engaged, it sent {how_many(len(routed | held), 'proposal')} to a person: "
    said += " and ".join(ways)
    both = len(routed & held)
    if both:
        said += f" ({how_many(both, 'proposal')} both ways)"
    anyway = {each.proposal_id for each in sent if each.also_held_by}
    if anyway:
        which = "it" if len(anyway) == 1 else "them"
        said += (
            f"; another rule held {len(anyway)} of them too, which would have sent {which} to "
            "a person without the switch"
        )
    return said + "."


# A switch's history page lists this many of the proposals it sent to a person (each with
# when and how), and links to the list of them all.
SENT_LISTED = 100


def let_past_said(let_past: list) -> str:
    """How many proposals a person let run past a switch while it was engaged: "While
    engaged, it let 2 proposals run past it: a person approved each, or sent it to run
    again, while it was engaged, …"."""
    if not let_past:
        return (
            "No proposal ran past it by a person's approval: none was approved, or sent to run "
            "again, while it was engaged over it."
        )
    proposals = len({each.proposal_id for each in let_past})
    times = "" if len(let_past) == proposals else f" ({how_many(len(let_past), 'time')} in all)"
    return (
        f"While engaged, it let {how_many(proposals, 'proposal')} run past it{times}: a person "
        "approved each, or sent it to run again, while it was engaged, which lets it run as "
        "their approval."
    )


@admin.register(KillSwitch)
class KillSwitchAdmin(ChangeReasonAdmin):
    """A switch's form says, before it is saved, how many approved proposals not yet carried
    out it would hold back for a person over each scope it could cover, counted as the
    executor holds them (every one it covers: none was approved by a person since it was
    engaged); saved engaged, its save holds them back at once (``policies.receivers``), and the
    message says how many it held."""

    form = KillSwitchForm
    fieldsets = [(None, {"fields": ["scope", "account", "channel", "engaged", "reason"]})]
    list_display = ["__str__", "scope", "account", "channel", "engaged", "updated_at"]
    list_filter = ["engaged", "scope"]

    def get_queryset(self, request):
        # Each named as its title is, with its number where another shares its scope
        # (``KillSwitch.named_apart``), in the statement that reads the list.
        return switches_named_apart(super().get_queryset(request).select_related("account"))

    def get_history_queryset(self, request, history_manager, pk_name, object_id):
        # Each row names the switch as things stood when it was written (its number where
        # another switch shared its scope then), not as they stand now, in one statement.
        records = super().get_history_queryset(request, history_manager, pk_name, object_id)
        return records_named_apart(records.select_related("account"))

    def get_object(self, request, object_id, from_field=None):
        switch = super().get_object(request, object_id, from_field)
        # Its form may move it: named as it stands once saved, not as it was read.
        if switch is not None:
            vars(switch).pop(NAMED_APART, None)
        return switch

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if "engaged" not in form.base_fields:  # read only (an auditor's): no form to explain
            return form
        under_way = proposals_under_way()
        # Each account and channel with any, as held and as sending (0 where it has none).
        accounts = sorted({*under_way.held.by_account, *under_way.sending.by_account})
        channels = sorted({*under_way.held.by_channel, *under_way.sending.by_channel})

        def scopes(counted) -> str:
            said = [f"everything: {counted.total}"]
            said += [f"account {name}: {counted.by_account.get(name, 0)}" for name in accounts]
            said += [
                f"channel {Channel(channel).label if channel in Channel.values else channel}: "
                f"{counted.by_channel.get(channel, 0)}"
                for channel in channels
            ]
            return "; ".join(said)

        said = (
            "Engaged, it holds back every approved proposal it covers that has not been "
            "carried out yet: each goes back to a person to approve again. Approved and not "
            f"yet carried out now, {scopes(under_way.held)}."
        )
        if under_way.sending.total:
            said += (
                " With a request at its channel now, which a switch does not call back: "
                f"{scopes(under_way.sending)}."
            )
        # The admin shows a help text as HTML: an account's name is escaped.
        form.base_fields["engaged"].help_text = escape(said)
        return form

    def history_view(self, request, object_id, extra_context=None):
        """Its history, the proposals it sent to a person while engaged, and those a person
        let run past it then (approved, or sent to run again), as their own histories record
        it (their pages named the switch; its page named none of them)."""
        switch = self.get_object(request, unquote(object_id))
        if switch is not None and self.has_view_permission(request, switch):
            sent = proposals_sent_by_kill_switch(switch)
            proposals = len({each.proposal_id for each in sent})
            let_past = proposals_let_past_kill_switch(switch)
            extra_context = {
                **(extra_context or {}),
                # What ran past it while engaged, by a person's approval or retry: what it
                # sent to a person is not all that a person let run under it.
                "let_past_by_people": {
                    "listed": let_past[:SENT_LISTED],
                    "unlisted": max(len(let_past) - SENT_LISTED, 0),
                    "said": let_past_said(let_past),
                },
                "sent_to_people": {
                    "listed": sent[:SENT_LISTED],
                    "unlisted": max(len(sent) - SENT_LISTED, 0),
                    "proposals": proposals,
                    "said": sent_to_people_said(sent),
                    "list_url": (
                        reverse("admin:approvals_proposal_changelist")
                        + "?"
                        + urlencode({"status": EVERY_STATUS, "kill_switch": switch.pk})
                        if proposals
                        else ""
                    ),
                },
            }
        return super().history_view(request, object_id, extra_context)

    # An engaged switch is not deleted: deleted, it released what it held without a word to
    # anyone (its messages tell of engaging and releasing, not of a deletion). Released, one
    # people were told of is kept, as the outbox keeps who was told of what
    # (``Notification.kill_switch`` protects it): Django's page listed each message as a
    # "protected related object". Either page says what is so and what to do.
    def delete_view(self, request, object_id, extra_context=None):
        switch = self.get_object(request, unquote(object_id))
        if switch is not None:
            on = f"The kill switch on {kill_switch_called(switch)}"
            change = reverse("admin:policies_killswitch_change", args=[switch.pk])
            said = (
                format_html(
                    "{} is engaged: it cannot be deleted. Deleted, it would let what it holds "
                    "back run without a person, and nobody would be told. "
                    '<a href="{}">Release it on its page</a> first (untick “Engaged”, saying '
                    "why): those told it was engaged are told it was released.",
                    on,
                    change,
                )
                if switch.engaged
                else format_html(
                    "People were told of {}: it cannot be deleted, as the outbox keeps who was "
                    "told of what, and of which switch. Released, it holds nothing back: leave "
                    'it released (<a href="{}">its page</a>).',
                    on.replace("The kill", "the kill", 1),
                    change,
                )
            )
            extra_context = {**(extra_context or {}), "protected_said": said}
        return super().delete_view(request, object_id, extra_context)

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        told = len(protected)
        protected = [
            *(
                ["Engaged: it holds back what it covers until it is released"]
                if any(switch.engaged for switch in objs)
                else []
            ),
            *([f"{how_many(told, 'message')} about it in the outbox"] if told else []),
        ]
        # Its messages are never deleted by anyone: Django's page said so as a want of
        # permission ("your account doesn't have permission to delete … notification").
        return deleted, counts, set() if told else perms_needed, protected

    def construct_change_message(self, request, form, formsets, add=False):
        """Engaging or releasing a switch is what its log says, not "Changed Engaged"; one
        added and not engaged was released by nobody."""
        if add and not form.instance.engaged:
            return "Added, not engaged"
        if add or "engaged" in form.changed_data:
            return "Engaged" if form.instance.engaged else "Released"
        return super().construct_change_message(request, form, formsets, add)

    def saved_said(self, obj, form, change: bool) -> str:
        """ "Kill switch on account demo engaged: Tracking outage.", "… released.", "… stays
        engaged; its reason now reads: …", with the scope it covered before if it moved."""
        on = f"Kill switch on {kill_switch_called(obj)}"
        before = KillSwitch(
            scope=form.initial.get("scope", obj.scope),
            account_id=form.initial.get("account"),
            channel=form.initial.get("channel", ""),
        )
        if change and before.scope_in_words() != obj.scope_in_words():
            on += f" (until now on {before.scope_in_words()})"
        reason = f": {as_sentence(obj.reason)}" if obj.reason.strip() else "."
        was_engaged = change and form.initial.get("engaged")
        reworded = change and obj.reason != form.initial.get("reason")
        if obj.engaged and not was_engaged:
            return f"{on} engaged{reason}"
        if not obj.engaged:
            if was_engaged:
                moved = before.scope_in_words() != obj.scope_in_words()
                # Another switch still engaged over what it covered is named, not left to be
                # guessed; released and moved at once, what it covered is what it held before.
                still = kill_switches_still_over(before if moved else obj, besides=obj.pk).said(
                    nothing="Nothing it covered",
                    runs_again="What it covered runs as its policies say again",
                )
                said = format_html("{} released.", on)
                if moved:
                    said = format_html(
                        "Kill switch on {} released, and moved to {}: released, it holds "
                        "nothing back there either.",
                        before.scope_in_words(),
                        obj.scope_in_words(),
                    )
                for more in (still, self.left_waiting_said(obj)):
                    if more:
                        said = format_html("{} {}", said, more)
                return said
            if not change:
                return f"{on} added, not engaged."
            # A released switch's reason is what it will be engaged with, unless changed then.
            if reworded:
                return f"{on} stays released; its reason now reads{reason}"
            return f"{on} stays released."
        if reworded:
            return f"{on} stays engaged; its reason now reads{reason}"
        return f"{on} stays engaged{reason}"

    def left_waiting_said(self, switch: KillSwitch) -> str:
        """What a switch being released leaves, as its release's email says it
        (``left_by_kill_switch``): the proposals it sent to a person while engaged, how many
        of them still wait for a person's decision, linked to them, and that releasing it
        runs none of them ("" where it sent none)."""
        left = left_by_kill_switch(switch)
        if not left.sent:
            return ""
        said = left.sent_said()
        count = len(left.waiting)
        if not count:
            return f"{said} None of them waits for a person now."
        still = f"{count} of them {'still waits' if count == 1 else 'still wait'}"
        if left.waiting_ever == count:  # the list of those it sent that wait: exactly these
            still = format_html(
                '<a href="{}">{}</a>',
                reverse("admin:approvals_proposal_changelist")
                + "?"
                + urlencode({"status": "pending_review", "kill_switch": switch.pk}),
                still,
            )
        else:
            still = format_html("{} ({})", still, _numbers_linked(left.waiting, count))
        return format_html(
            "{} {} for a person's decision: releasing the switch runs none of them; {} once a "
            "person approves it.",
            said,
            still,
            "it runs" if count == 1 else "each runs",
        )

    def save_model(self, request, obj, form, change) -> None:
        engaging = obj.engaged and not (change and form.initial.get("engaged"))
        super().save_model(request, obj, form, change)
        if not change and getattr(request, "saved_said", None):
            # Said before the save, an added switch had no number yet: one engaged beside
            # another on its scope read "Kill switch on account demo engaged" as if alone,
            # where the message before it and the list name it "(#2)". An addition has
            # nothing before it to read from the form, so it is said again, saved.
            request.saved_said = self.saved_said(obj, form, change)
        lowered = getattr(obj, RISKS_LOWERED, None)
        if lowered and getattr(request, "saved_said", None):
            # A release's message says first how many it left still wait (``left_waiting_said``):
            # those it lowered, among them, are "of them", not said to wait a second time.
            of_those_waiting = not obj.engaged and set(lowered) <= set(
                left_by_kill_switch(obj).waiting
            )
            request.saved_said = format_html(
                "{} {}",
                request.saved_said,
                risks_lowered_said(lowered, engaged=obj.engaged, of_those_waiting=of_those_waiting),
            )
        # Held back by the save itself, in its transaction, whatever saved it
        # (``policies.receivers``): this message, the proposals' pages, the API and the
        # dashboard say the same thing from the moment it is saved.
        holds = getattr(obj, HELD_BACK_NOW, None)
        if holds is None:
            return
        held, sending, passed = len(holds.held), len(holds.sending), len(holds.passed)
        if not (engaging or held or sending or passed):
            return
        # Named as the message after the save names it ("Kill switch on account demo").
        on = f"Kill switch on {kill_switch_called(obj)}"
        if held:
            these = how_many(held, "approved proposal")
            ever = {
                each.proposal_id for each in proposals_sent_by_kill_switch(obj) if each.held_back
            }
            if ever == set(holds.held):  # the list of those it held back: exactly these
                these = format_html('<a href="{}">{}</a>', held_back_list_url(obj.pk), these)
            # Those held between two attempts, after one that got no sure answer, may have
            # been carried out: not "not yet carried out" (counted apart, as its email does).
            # Approved again, one not yet carried out runs then; one held after such an
            # attempt makes its next one, having maybe run already (it read "before it runs").
            after = len(set(holds.after_attempts) & set(holds.held))
            before = held - after
            each = "it" if held == 1 else "each"
            runs = "before it runs" if before == 1 else "before they run"
            next_attempt = f"before {'its' if after == 1 else 'their'} next attempt"
            may_have_run = f"{'it' if after == 1 else 'each'} may have been carried out there"
            if not after:
                how, again = "not yet carried out", "before it runs"
            elif not before:
                how = AFTER_AN_UNSURE_ATTEMPT
                again = f"before its next attempt: {may_have_run}"
            else:
                how = f"({before} not yet carried out, {after} {AFTER_AN_UNSURE_ATTEMPT})"
                again = (
                    f"the {before} not yet carried out {runs}, the {after} held after such an "
                    f"attempt {next_attempt}, as {may_have_run}"
                )
            said = format_html(
                "{} held back {} {}: {} back with a person, to approve again{}{}.",
                on,
                these,
                how,
                f"{each} is",
                ": " if after and before else " ",
                again,
            )
        elif passed:
            said = f"{on} held nothing back."
        else:
            said = (
                f"{on} holds nothing back: no approved proposal it covers was waiting to be "
                "carried out."
            )
        if passed:
            # Moved while engaged: a person approved them since it was engaged.
            are, them = ("is", "it") if passed == 1 else ("are", "them")
            said = format_html(
                "{} {} it covers, approved by a person since it was engaged (before it was "
                "moved here), {} not yet carried out: it lets {} run.",
                said,
                how_many(passed, "proposal"),
                are,
                them,
            )
        if sending:
            # Its request went before the switch: the channel's answer decides it.
            has, it = ("has", "it is") if sending == 1 else ("have", "each is")
            said = format_html(
                "{} {} {} a request at its channel now, which the switch does not call back: "
                "{} carried out if the channel carries it out, and goes back to a person if "
                "the channel answers that it may be tried again.",
                said,
                how_many(sending, "approved proposal"),
                has,
                it,
            )
        # What a person approves from now on runs (executors.runner._kill_switch_hold).
        said = format_html(
            "{} While it is engaged, what a person approves (or sends to run again) runs: the "
            "switch holds back nothing a person approved since it was engaged.",
            said,
        )
        messages.add_message(request, messages.WARNING if held or sending else messages.INFO, said)


@admin.register(BrandGuidelines)
class BrandGuidelinesAdmin(ChangeReasonAdmin):
    form = BrandGuidelinesForm
    fieldsets = [
        (None, {"fields": ["account", "banned_terms", "banned_patterns", "required_disclaimers"]})
    ]
    list_display = ["account", "updated_at"]

    # What each field's lines are, as the message after a save says they changed.
    said_as = (
        ("banned_terms", "ban", "no longer ban"),
        ("banned_patterns", "ban the pattern", "no longer ban the pattern"),
        ("required_disclaimers", "require", "no longer require"),
    )

    def saved_said(self, obj, form, change: bool) -> str:
        """ "Brand guidelines for demo now ban “x”; no longer ban “y”", line by line as
        typed (the form's before and after), or that nothing they say changed."""
        said = []
        for name, now, no_longer in self.said_as:
            before = lines(form.initial.get(name, "") if change else "")
            after = lines(getattr(obj, name))
            added = [line for line in after if line not in before]
            removed = [line for line in before if line not in after]
            if added:
                said.append(f"now {now} {', '.join(f'“{line}”' for line in added)}")
            if removed:
                said.append(f"{no_longer} {', '.join(f'“{line}”' for line in removed)}")
        moved = change and form.initial.get("account") != obj.account_id
        for_ = f"Brand guidelines for {obj.account}" + (" (moved to it)" if moved else "")
        if not said:
            return f"{for_} saved; what they ban and require is unchanged."
        return f"{for_} {'; '.join(said)}."
