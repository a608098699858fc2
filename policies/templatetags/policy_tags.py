from django import template

from hitlproject.vocabulary import ROUTED_LABELS

register = template.Library()


@register.filter
def outcome_label(outcome: str) -> str:
    return ROUTED_LABELS.get(outcome, outcome)
