from datetime import timedelta

from django import template

from approvals.selectors import dashboard
from hitlproject.charts import grouped_bars

register = template.Library()


@register.inclusion_tag("admin/dashboard.html", takes_context=True)
def console_dashboard(context):
    request = context["request"]
    if not request.user.has_perm("approvals.view_proposal"):
        return {"figures": None}
    figures = dashboard()
    chart = None
    if figures.agents:
        counts = list(figures.agents.values())
        chart = grouped_bars(
            list(figures.agents),
            [
                ("Approved as is", [c.approved - c.edited for c in counts]),
                ("Approved with edits", [c.edited for c in counts]),
                ("Rejected", [c.rejected for c in counts]),
            ],
            height=180,
        )
    return {"figures": figures, "chart": chart}


@register.filter
def duration(value: timedelta | None) -> str:
    """A duration as a person says it: 45 s, 12 min, 3.5 h, 2.1 d."""
    if value is None:
        return "—"
    seconds = value.total_seconds()
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


@register.filter
def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"
