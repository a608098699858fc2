from django import template

register = template.Library()

OUTCOME_LABELS = {"auto_approve": "auto-executed", "review": "to a human", "block": "blocked"}


@register.filter
def outcome_label(outcome: str) -> str:
    return OUTCOME_LABELS.get(outcome, outcome)
