"""Guardrail checks: pure functions that say, in words an operator reads, what is wrong.

The service gathers the ledger and the guidelines; these only compare.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class BrandRules:
    banned_terms: tuple[str, ...] = ()
    banned_patterns: tuple[str, ...] = ()
    required_disclaimers: tuple[str, ...] = ()

    @classmethod
    def from_text(cls, banned_terms: str, banned_patterns: str, required_disclaimers: str):
        def lines(text: str) -> tuple[str, ...]:
            return tuple(line.strip() for line in text.splitlines() if line.strip())

        return cls(lines(banned_terms), lines(banned_patterns), lines(required_disclaimers))


def _quote(text: str, start: int, end: int, context: int = 30) -> str:
    left = max(0, start - context)
    right = min(len(text), end + context)
    return (
        ("…" if left else "")
        + text[left:start]
        + "«"
        + text[start:end]
        + "»"
        + text[end:right]
        + ("…" if right < len(text) else "")
    )


def brand_findings(texts: Iterable[tuple[str, str]], rules: BrandRules) -> list[str]:
    """Every banned term or pattern found, quoted where it stands, and every missing
    disclaimer. ``texts`` are (where, text) pairs such as ("creative 2 headline", "…")."""
    findings = []
    texts = list(texts)
    # Whole words: not inside another word, whether the term starts or ends with a letter or
    # a symbol ("100%", "#1").
    checks = [
        (rf"(?<!\w){re.escape(term)}(?!\w)", f"the banned term “{term}”")
        for term in rules.banned_terms
    ]
    checks += [(pattern, f"the banned pattern /{pattern}/") for pattern in rules.banned_patterns]
    for where, text in texts:
        for pattern, what in checks:
            match = re.search(pattern, text, flags=re.IGNORECASE)
            if match:
                findings.append(
                    f"The {where} uses {what}: “{_quote(text, match.start(), match.end())}”."
                )
    bodies = [(where, text) for where, text in texts if where.endswith("body")]
    for disclaimer in rules.required_disclaimers:
        for where, text in bodies:
            if disclaimer.lower() not in text.lower():
                findings.append(f"The {where} lacks the required disclaimer “{disclaimer}”.")
    return findings


def budget_cap_findings(
    *,
    proposed_budgets: Mapping[str, Decimal],
    campaign_caps: Mapping[str, Decimal | None],
    account_total_after: Decimal | None,
    account_cap: Decimal | None,
    account: str,
    currency: str,
) -> list[str]:
    findings = [
        f"{campaign}'s daily budget would be {budget:,.2f} {currency}, "
        f"above its cap of {campaign_caps[campaign]:,.2f} {currency}."
        for campaign, budget in proposed_budgets.items()
        if campaign_caps.get(campaign) is not None and budget > campaign_caps[campaign]
    ]
    if (
        account_cap is not None
        and account_total_after is not None
        and account_total_after > account_cap
    ):
        findings.append(
            f"Account {account}'s active campaigns would spend {account_total_after:,.2f} "
            f"{currency} a day, above its cap of {account_cap:,.2f} {currency}."
        )
    return findings
