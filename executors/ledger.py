"""The built-in executor: the action is the ledger's change itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from executors.base import Executor

if TYPE_CHECKING:
    from approvals.action_types.base import ActionType
    from approvals.models import Proposal
    from ledger.models import Account, Campaign


class LedgerExecutor(Executor):
    """Writes the action to the ledger, in the transaction that records the attempt and the
    status change (one at a time, or a whole set together: ``staged_writes``). The registry's
    fallback: it carries out whatever no channel executor takes."""

    name = "ledger"
    in_transaction = True

    def carries_out(self, *, account: Account, action_type: ActionType) -> bool:
        return True

    def apply(
        self,
        *,
        action_type: ActionType,
        payload: dict[str, Any],
        campaigns: dict[str, Campaign],
        proposal: Proposal,
    ) -> None:
        action_type.apply(payload, campaigns, proposal)

    def staged_writes(
        self,
        *,
        action_type: ActionType,
        payload: dict[str, Any],
        campaigns: dict[str, Campaign],
        proposal: Proposal,
    ) -> list[tuple[Campaign, dict[str, Any]]]:
        """What ``apply`` writes, for a set carried out together (written with history)."""
        return action_type.staged_writes(payload, campaigns, proposal)
