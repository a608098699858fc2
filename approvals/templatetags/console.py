import re
from collections.abc import Sequence
from datetime import timedelta

from django import template
from django.urls import reverse
from django.utils.html import escape, format_html, format_html_join, strip_tags
from django.utils.safestring import mark_safe
from django.utils.text import capfirst

from approvals.action_types.policy_changes import PolicyWritten, policy_written
from approvals.models import Agent, Execution, RejectionReason
from approvals.selectors import (
    COUNTED,
    COUNTED_FIGURES,
    ProposalCounts,
    dashboard,
    deployed_creatives,
)
from hitlproject.charts import GroupedBarChart, as_sent, grouped_bars
from hitlproject.durations import elapsed_said
from hitlproject.formats import share_percent
from hitlproject.vocabulary import (
    READ_PERMISSION,
    WHAT_IF_LABELS,
    action_type_label,
    as_sentence,
)
from ledger.models import Creative, campaign_field_label, campaign_value_label
from policies.services import kill_switches_engaged_now

register = template.Library()
# A person's words ending a sentence, with its full stop (a kill switch's reason).
register.filter("as_sentence", as_sentence)


@register.filter
def policy_before(written: PolicyWritten) -> str:
    """The ceiling a policy change's execution replaced, as the policy's history has it."""
    in_force = " in force" if written.created else ""
    return f"Auto-execute ceiling{in_force} {written.ceiling_before}"


@register.filter
def policy_after(written: PolicyWritten, linked: bool = True) -> str:
    """The policy version a policy change's execution wrote, as the policy's history has it:
    its name (a link to it, unless ``linked`` is false: in a line that is a link itself, a
    proposal history's), its number as its page counts them, the ceiling from → to."""
    name = format_html("“<bdi>{}</bdi>”", written.name)
    if not written.exists:
        name = format_html("{} (deleted since)", name)
    elif linked:
        url = reverse("admin:policies_policy_change", args=[written.policy_id])
        name = format_html('<a href="{}">{}</a>', url, name)
    did = "created as" if written.created else "saved as"
    said = format_html(
        "Policy {} {} version {}: auto-execute ceiling {} → {}.",
        name,
        did,
        written.number,
        written.ceiling_before,
        written.ceiling_after,
    )
    if written.made_from:
        said = format_html("{} <bdi>{}</bdi>", said, written.made_from)
    return said


def creatives_said(creatives: Sequence[Creative], *, linked: bool = True) -> str:
    """The creatives a creative batch's execution put in the ledger (``deployed_creatives``),
    on which campaign, each by its ledger record (linked to it, unless ``linked`` is false)
    and its headline; "—" if none. Each headline isolated (<bdi>): one with a right-to-left
    override would otherwise reverse the records listed after it."""
    if not creatives:
        return "—"

    def record(creative: Creative) -> str:
        said = f"ledger record #{creative.pk}"
        if not linked:
            return said
        url = reverse("admin:ledger_creative_change", args=[creative.pk])
        return format_html('<a href="{}">{}</a>', url, said)

    listed = format_html_join(
        ", ", "{} <bdi>“{}”</bdi>", ((record(c), c.headline) for c in creatives)
    )
    return format_html("on {}: {}", creatives[0].campaign.external_id, listed)


def attempt_left(execution: Execution) -> str:
    """What a successful attempt left, as its own page says it, in a line that is a link
    itself (a proposal history's, so nothing in it is): the campaign fields it set, a
    creative batch's creatives, the policy version a policy change wrote; neither of the
    last two sets a campaign field, so its state alone read "—", as if nothing was done."""
    proposal = execution.proposal
    if proposal.action_type == "policy_change":
        written = policy_written(proposal)
        if written is not None:
            return policy_after(written, linked=False)
    said = [ledger_state(execution.after_state)] if any(execution.after_state.values()) else []
    creatives = deployed_creatives(proposal)
    if creatives:
        said.append(creatives_said(creatives, linked=False))
    return format_html_join("; ", "{}", ((part,) for part in said)) or "—"


@register.filter
def ledger_state(state: dict | None) -> str:
    """A recorded ledger state as a person reads it, in the edit form's words: "brand-search
    daily budget 1000.00", "generic-search target CPA not set", "generic-search bidding
    strategy Manual CPC"; "—" where it holds no field (a creative batch adds creatives, it
    sets no number)."""
    lines = [
        f"{campaign} {campaign_field_label(field)} {campaign_value_label(field, value)}"
        for campaign, fields in (state or {}).items()
        for field, value in fields.items()
    ]
    return "; ".join(lines) or "—"


@register.inclusion_tag("admin/dashboard.html", takes_context=True)
def console_dashboard(context):
    request = context["request"]
    if not request.user.has_perm(READ_PERMISSION):
        return {"figures": None}
    figures = dashboard()
    chart, agents = None, []
    if figures.agents:
        ids = dict(Agent.objects.filter(name__in=figures.agents).values_list("name", "pk"))
        agents = [
            (
                name,
                reverse("admin:approvals_agent_change", args=[ids[name]])
                + f"?days={figures.days}#scorecard",
                counts,
            )
            for name, counts in figures.agents.items()
        ]
        counts = list(figures.agents.values())
        chart = grouped_bars(
            list(figures.agents),
            [
                ("Approved as proposed", [c.approved_as_proposed for c in counts]),
                ("Approved with edits", [c.edited for c in counts]),
                ("Rejected", [c.rejected for c in counts]),
            ],
            height=180,
        )
    return {
        "figures": figures,
        "chart": chart,
        "agents": agents,
        # While a kill switch is engaged nothing it covers auto-executes: the auto-executed
        # figures fall, and the page says why.
        "kill_switches": kill_switches_engaged_now(),
        "may_view_kill_switches": request.user.has_perm("policies.view_killswitch"),
    }


_CELL_START = re.compile(r"^\s*<(td|th)\b")


@register.simple_tag
def labelled_cells(cells, headers) -> str:
    """A list row's cells, each with its column's heading as ``data-label``: on a phone the
    lists read row by row, each value beside its heading (base_site.html). A column headed by
    no words (the selection's checkbox) gets none."""
    said = []
    for cell, header in zip(cells, headers, strict=False):
        label = capfirst(strip_tags(str(header["text"])).strip())
        if label:
            attribute = f' data-label="{escape(label)}"'
            cell = _CELL_START.sub(lambda start, extra=attribute: start[0] + extra, cell, count=1)
        said.append(cell)
    return mark_safe("".join(said))  # the cells as the admin made them safe, one attribute more


@register.simple_tag
def counted_figures():
    """The counts of proposals, with their labels and what each counts."""
    return COUNTED_FIGURES


@register.simple_tag
def counted_rule() -> str:
    return COUNTED


@register.filter
def count_of(counts: ProposalCounts, name: str) -> int:
    return getattr(counts, name)


@register.filter
def duration(value: timedelta | None) -> str:
    return elapsed_said(value)


@register.filter
def percent(value: float | None) -> str:
    return share_percent(value)


register.filter("action_type_label", action_type_label)
register.filter("as_sent", as_sent)


@register.filter
def reason_label(code: str) -> str:
    return RejectionReason(code).label if code in RejectionReason.values else code or "—"


def what_if_chart(proposal) -> GroupedBarChart | None:
    """A recommended policy change's what-if, as bars: the agent's proposals of the window by
    what became of them, under the policies of their day, and with the ceiling proposed. (The
    first was stored as "now" before it was named for what it is; it was what happened then
    too, not a replay with the ceiling now.)"""
    if proposal.action_type != "policy_change":
        return None
    what_if = proposal.supporting_data.get("what_if", {})
    try:
        rows = [what_if[outcome] for outcome in WHAT_IF_LABELS]
        series = [
            ("As it happened", [int(row.get("happened", row.get("now"))) for row in rows]),
            ("Ceiling proposed", [int(row["proposed"]) for row in rows]),
        ]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # made before the what-if was recorded this way
    return grouped_bars(list(WHAT_IF_LABELS.values()), series, height=180)


@register.filter
def labelled(row: list, columns: list) -> list[tuple]:
    """A table row's cells, each with its column's heading: what a phone's stacked rows say
    beside each value in place of the headings above."""
    return list(zip(columns, row, strict=False))
