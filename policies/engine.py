"""The policy engine: a pure function of a proposal's facts and the rules in force.

No database, no clock, no I/O: the live path and what-if simulation run this same code, and it
is tested without a database. ``policies.services`` turns rows into ``Rule`` and proposals into
``Facts``.

Risk score (0-100, for ordering the review queue; deterministic):
    risk = type weight + 15 x min(pressure, 4)
where the type weight comes from the action type (10 for a bid adjustment up to 40 for a
strategy change) and pressure is the magnitude over the matched policy's auto-execute ceiling
(over 10% for relative changes, or 1 for counts, when there is no ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Literal

Outcome = Literal["auto_approve", "review", "block"]
MagnitudeUnit = Literal["ratio", "count"]

_REFERENCE_CEILING: dict[str, Decimal] = {"ratio": Decimal("0.10"), "count": Decimal("1")}
_MAX_PRESSURE = Decimal("4")


@dataclass(frozen=True)
class Rule:
    policy_id: int
    name: str
    action_type: str
    account_id: int | None
    auto_execute_max_magnitude: Decimal | None
    always_review: bool
    required_approvals: int
    review_window: timedelta

    @property
    def specificity(self) -> int:
        return 1 if self.account_id is not None else 0


@dataclass(frozen=True)
class Facts:
    action_type: str
    action_label: str
    account_id: int
    magnitude: Decimal
    magnitude_unit: MagnitudeUnit
    magnitude_label: str
    risk_weight: int


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[str, ...]
    risk: int
    policy_id: int | None = None
    policy_name: str = ""
    required_approvals: int = 1
    review_window: timedelta | None = None


def format_magnitude(value: Decimal, unit: MagnitudeUnit) -> str:
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    return f"{value.normalize():f}"


def matching_rule(facts: Facts, rules: list[Rule]) -> Rule | None:
    candidates = [
        rule
        for rule in rules
        if rule.action_type == facts.action_type and rule.account_id in (None, facts.account_id)
    ]
    return max(candidates, key=lambda rule: rule.specificity, default=None)


def risk_score(facts: Facts, rule: Rule | None) -> int:
    ceiling = rule.auto_execute_max_magnitude if rule else None
    if not ceiling:
        ceiling = _REFERENCE_CEILING[facts.magnitude_unit]
    pressure = min(facts.magnitude / ceiling, _MAX_PRESSURE)
    return min(100, facts.risk_weight + round(15 * pressure))


def evaluate(facts: Facts, rules: list[Rule]) -> Verdict:
    rule = matching_rule(facts, rules)
    risk = risk_score(facts, rule)
    if rule is None:
        return Verdict(
            outcome="review",
            reasons=(
                f"No policy covers {facts.action_label} on this account, so a human decides.",
            ),
            risk=risk,
        )

    def verdict(outcome: Outcome, reason: str) -> Verdict:
        return Verdict(
            outcome=outcome,
            reasons=(reason,),
            risk=risk,
            policy_id=rule.policy_id,
            policy_name=rule.name,
            required_approvals=rule.required_approvals,
            review_window=rule.review_window,
        )

    ceiling = rule.auto_execute_max_magnitude
    if rule.always_review:
        return verdict(
            "review", f"Policy “{rule.name}” sends every {facts.action_label} to a human."
        )
    if ceiling is None:
        return verdict(
            "review", f"Policy “{rule.name}” sets no auto-execute ceiling for {facts.action_label}."
        )
    ceiling_text = format_magnitude(ceiling, facts.magnitude_unit)
    if facts.magnitude > ceiling:
        return verdict(
            "review",
            f"{facts.magnitude_label} exceeds the {ceiling_text} auto-execute ceiling "
            f"of policy “{rule.name}”.",
        )
    return verdict(
        "auto_approve",
        f"{facts.magnitude_label} is within the {ceiling_text} auto-execute ceiling "
        f"of policy “{rule.name}”.",
    )
