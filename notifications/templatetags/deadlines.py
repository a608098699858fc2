from django import template

from notifications.models import DecisionDeadline
from notifications.selectors import deadline_figures, decision_times_by_route

register = template.Library()


@register.inclusion_tag("admin/notifications/deadline_figures.html")
def dashboard_deadlines(days: int):
    """The dashboard's deadlines: the share decided in time, and each route's time to a
    decision, over the dashboard's period."""
    return {
        "deadlines": deadline_figures(days=days),
        "routes": decision_times_by_route(days=days),
    }


@register.inclusion_tag("admin/notifications/proposal_deadline.html")
def proposal_deadline(proposal):
    """A proposal's deadline in its current review round, and what was done as it ran out."""
    return {
        "deadline": DecisionDeadline.objects.select_related("escalated_to")
        .filter(proposal=proposal, review_round=proposal.review_round)
        .first()
    }
