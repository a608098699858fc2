"""The feedback loop on the console's pages: outcomes and scorecards."""

from django import template

from approvals.templatetags.console import reason_label
from feedback.models import OutcomeEffect
from feedback.selectors import Scorecard
from hitlproject.charts import grouped_bars
from hitlproject.vocabulary import action_type_label

register = template.Library()


@register.filter
def effect_label(effect: str) -> str:
    return OutcomeEffect(effect).label if effect in OutcomeEffect.values else "figures only"


def scorecard_charts(cards: list[Scorecard]) -> dict:
    """A scorecard's charts: how each action type's proposals fared (each named as its
    table names it), and why people rejected them."""
    verdicts = grouped_bars(
        [action_type_label(card.action_type) for card in cards],
        [
            ("Auto-executed", [card.auto_executed for card in cards]),
            ("Approved as proposed", [card.approved_as_proposed for card in cards]),
            ("Approved with edits", [card.edited for card in cards]),
            ("Rejected", [card.rejected for card in cards]),
            ("Expired", [card.expired for card in cards]),
        ],
        width=max(520, 140 * len(cards)),
    )
    reasons: dict[str, int] = {}
    for card in cards:
        for code, count in card.rejection_reasons.items():
            reasons[code] = reasons.get(code, 0) + count
    reasons_chart = None
    if reasons:
        ordered = sorted(reasons.items(), key=lambda item: -item[1])
        reasons_chart = grouped_bars(
            [reason_label(code) for code, _ in ordered],
            [("Rejections", [count for _, count in ordered])],
            width=max(360, 110 * len(ordered)),
            height=180,
        )
    return {"verdict_chart": verdicts, "reasons_chart": reasons_chart}
