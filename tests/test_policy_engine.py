"""The policy engine is a pure function: these tests need no database."""

from datetime import timedelta
from decimal import Decimal

import pytest

from policies.engine import Facts, Rule, evaluate

ACCOUNT = 7


def facts(magnitude: str, action_type: str = "budget_reallocation", unit: str = "ratio") -> Facts:
    return Facts(
        action_type=action_type,
        action_label=action_type.replace("_", " "),
        account_id=ACCOUNT,
        magnitude=Decimal(magnitude),
        magnitude_unit=unit,
        magnitude_label=f"{Decimal(magnitude) * 100:.1f}% of brand-search's daily budget",
        risk_weight=25,
    )


def rule(policy_id=1, ceiling="0.10", account_id=None, always_review=False, **extra) -> Rule:
    return Rule(
        policy_id=policy_id,
        name=extra.pop("name", "Budget reallocations"),
        action_type=extra.pop("action_type", "budget_reallocation"),
        account_id=account_id,
        auto_execute_max_magnitude=Decimal(ceiling) if ceiling is not None else None,
        always_review=always_review,
        required_approvals=extra.pop("required_approvals", 1),
        review_window=timedelta(hours=72),
    )


@pytest.mark.parametrize(
    "magnitude, outcome",
    [
        ("0.06", "auto_approve"),
        ("0.10", "auto_approve"),
        ("0.100001", "review"),
        ("0.28", "review"),
    ],
)
def test_auto_execute_ceiling_is_inclusive(magnitude, outcome):
    assert evaluate(facts(magnitude), [rule()]).outcome == outcome


def test_reason_names_the_magnitude_the_ceiling_and_the_policy():
    verdict = evaluate(facts("0.28"), [rule()])
    assert verdict.reasons == (
        "28.0% of brand-search's daily budget exceeds the 10.0% auto-execute ceiling "
        "of policy “Budget reallocations”.",
    )
    assert verdict.policy_id == 1


def test_no_matching_policy_sends_it_to_a_human():
    verdict = evaluate(facts("0.01"), [rule(action_type="bid_adjustment")])
    assert verdict.outcome == "review"
    assert verdict.policy_id is None
    assert "No policy covers budget reallocation" in verdict.reasons[0]


def test_always_review_wins_over_a_small_magnitude():
    verdict = evaluate(facts("0.01"), [rule(always_review=True)])
    assert verdict.outcome == "review"
    assert "sends every budget reallocation to a human" in verdict.reasons[0]


def test_a_policy_without_a_ceiling_auto_executes_nothing():
    assert evaluate(facts("0"), [rule(ceiling=None)]).outcome == "review"


def test_account_specific_policy_wins_over_the_default():
    default, specific = rule(policy_id=1), rule(policy_id=2, ceiling="0.30", account_id=ACCOUNT)
    other_account = rule(policy_id=3, ceiling="0.50", account_id=ACCOUNT + 1)
    verdict = evaluate(facts("0.28"), [default, specific, other_account])
    assert (verdict.outcome, verdict.policy_id) == ("auto_approve", 2)


def test_required_approvals_come_from_the_matched_policy():
    assert evaluate(facts("0.28"), [rule(required_approvals=2)]).required_approvals == 2


def test_risk_grows_with_magnitude_against_the_ceiling_and_is_bounded():
    risks = [evaluate(facts(m), [rule()]).risk for m in ("0.01", "0.10", "0.28", "0.90", "50")]
    assert risks == sorted(risks)
    # type weight 25 + 15 x (magnitude / ceiling), the pressure capped at 4
    assert risks[:2] == [27, 40] and risks[-1] == 85
    assert evaluate(facts("0.28"), [rule()]).risk == evaluate(facts("0.28"), [rule()]).risk
