"""Reading the rules in force and asking the engine for a verdict."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from ledger.models import Account
from policies import engine
from policies.models import Policy

if TYPE_CHECKING:
    from approvals.action_types import ActionType


def rules_in_force(*, action_type: str, account: Account) -> list[engine.Rule]:
    policies = Policy.objects.filter(is_active=True, action_type=action_type).filter(
        account__isnull=True
    ) | Policy.objects.filter(is_active=True, action_type=action_type, account=account)
    return [
        engine.Rule(
            policy_id=policy.pk,
            name=policy.name,
            action_type=policy.action_type,
            account_id=policy.account_id,
            auto_execute_max_magnitude=policy.auto_execute_max_magnitude,
            always_review=policy.always_review,
            required_approvals=policy.required_approvals,
            review_window=policy.review_window,
        )
        for policy in policies
    ]


def policy_verdict(
    *, action_type: ActionType, account: Account, magnitude: Decimal, magnitude_label: str
) -> engine.Verdict:
    facts = engine.Facts(
        action_type=action_type.name,
        action_label=action_type.label,
        account_id=account.pk,
        magnitude=magnitude,
        magnitude_unit=action_type.magnitude_unit,
        magnitude_label=magnitude_label,
        risk_weight=action_type.risk_weight,
    )
    return engine.evaluate(facts, rules_in_force(action_type=action_type.name, account=account))
