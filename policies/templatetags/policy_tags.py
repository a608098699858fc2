from django import template

from hitlproject.vocabulary import ROUTED_LABELS, action_type_label

register = template.Library()
register.filter("action_type_label", action_type_label)


@register.filter
def outcome_label(outcome: str) -> str:
    return ROUTED_LABELS.get(outcome, outcome)
