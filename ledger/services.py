"""Locks on the ledger that the apps above it take in one order.

An account's total daily budget (its active campaigns', against its cap) is read across
campaigns that no single action locks, so whoever reads that total to judge or carry out an
action holds the account first: two actions on different campaigns of one account are then
judged one after the other, each seeing the other's effect. The order, everywhere: the
proposals (by id), then their agents (by id, shared: ``approvals.services.acts.agents_hold``,
by the executor), then their accounts (by id), then their campaigns (by id).
"""

from collections import defaultdict
from collections.abc import Iterable

from ledger.models import Account


def accounts_lock(accounts: Iterable[Account]) -> None:
    """Hold these accounts until the surrounding transaction ends, locked in id order, and
    give each instance its budget cap as it stands once locked (a policy owner may have just
    changed it). ``FOR NO KEY UPDATE``: it keeps out whoever takes the same lock or edits the
    account, not whoever only inserts a row that refers to it (a proposal, a campaign)."""
    instances: dict[int, list[Account]] = defaultdict(list)
    for account in accounts:
        instances[account.pk].append(account)
    if not instances:
        return
    locked = (
        Account.objects.select_for_update(no_key=True)
        .filter(pk__in=sorted(instances))
        .order_by("pk")
        .values_list("pk", "max_total_daily_budget")
    )
    for pk, cap in locked:
        for account in instances[pk]:
            account.max_total_daily_budget = cap
