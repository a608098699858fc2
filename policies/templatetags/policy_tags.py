from django import template

from hitlproject.vocabulary import (
    DRY_RUN_LABELS,
    ROUTED_LABELS,
    ROUTING_LABELS,
    action_type_label,
)

register = template.Library()
register.filter("action_type_label", action_type_label)


@register.filter
def outcome_label(outcome: str) -> str:
    return ROUTED_LABELS.get(outcome, outcome)


@register.filter
def routing_label(outcome: str) -> str:
    """A routing as the engine decided it ("auto-approved"), not what followed."""
    return ROUTING_LABELS.get(outcome, outcome)


@register.filter
def dry_run_label(outcome: str) -> str:
    """A dry run's verdict as what would happen ("would be auto-approved"): nothing ran."""
    return DRY_RUN_LABELS.get(outcome, outcome)


@register.filter
def holds_joined(texts: list[str]) -> str:
    """What held a proposal back, one rule after another: "…“«Guaranteed» wins”; always
    review", each text's own closing full stop dropped (they read as one list)."""
    return "; ".join(text.rstrip().removesuffix(".") for text in texts)
