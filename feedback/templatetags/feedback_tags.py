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


# Every ending of ``ProposalCounts``, so that an action type's bars add up to the proposals it
# made, as its row does; the first five always drawn, the others where a proposal came to them.
FARED = (
    ("auto_executed", "Auto-executed", True),
    ("approved_as_proposed", "Approved as proposed", True),
    ("edited", "Approved with edits", True),
    ("rejected", "Rejected", True),
    ("expired", "Expired", True),
    ("waiting", "Waiting for a person", False),
    ("auto_not_executed", "Auto-approved, not executed", False),
    ("blocked", "Blocked by policy", False),
    ("withdrawn", "Withdrawn", False),
    ("superseded", "Superseded", False),
)


def scorecard_charts(cards: list[Scorecard]) -> dict:
    """A scorecard's charts: how each action type's proposals fared (each named as its
    table names it, every proposal it made in its bars), and why people rejected them."""
    series = [
        (label, [getattr(card, ending) for card in cards])
        for ending, label, always in FARED
        if always or any(getattr(card, ending) for card in cards)
    ]
    verdicts = grouped_bars(
        [action_type_label(card.action_type) for card in cards],
        series,
        width=max(520, 140 * len(cards), 20 * len(series) * len(cards)),
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
