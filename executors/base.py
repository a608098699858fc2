"""Executors: what carries out an approved proposal, one class per way of doing it.

Shaped as healthchecks shapes its integrations (``hc/api/transports.py``): a base class, a
subclass per integration, and an error that says whether trying again can help. The
registry (``executors.registry``) picks one per proposal, by its account and action type.

Two kinds:
- an **in-transaction** executor (the ledger executor) writes its effect in the same
  transaction as the execution record and the status change, so it happens exactly once;
- a **channel** executor reaches something outside the database (a webhook, an ad platform's
  API). It cannot hold a transaction open across the call, so the shared runner
  (``executors.runner``) does everything around it: locks, the kill switch, the
  target and guardrail checks, the lifecycle's transition function, the attempt log, the
  lease, retries with backoff, the per-account limit, the ledger write after a success and
  supersession after a moved value. The executor only freezes what a round will send
  (``freeze``, in the transaction that starts the round) and sends it (``carry_out``, outside
  any transaction, returning an ``Outcome``). It never changes a proposal itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from django.conf import settings

if TYPE_CHECKING:
    from approvals.action_types.base import ActionType
    from approvals.models import Proposal
    from approvals.services.supersession import TargetMove
    from executors.models import ExecutionRound
    from ledger.models import Account, Campaign


class ChannelError(Exception):
    """A channel call that did not carry the action out. ``permanent``: trying again cannot
    help (refused, not allowed, not set up); otherwise another attempt, later, may.
    ``unanswered``: the request reached the channel, or may have, and no answer says whether
    it carried it out (a timeout, a connection lost, a server's error): it may have.
    ``request_ids``: the ids the channel's answer gave its request, for the attempt's record."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        unanswered: bool = False,
        request_ids: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after  # seconds the channel asked to be left alone
        self.unanswered = unanswered
        self.request_ids = request_ids


@dataclass(frozen=True)
class Outcome:
    """What came of one channel attempt.

    ``result``: ``done`` (carried out; ``after``, if given, is the channel's state now, in the
    ledger's terms, and the ledger is brought to it), ``moved`` (a target's live value differs
    from what the round froze; nothing was sent; ``moves`` says which: the proposal is
    superseded), ``failed`` (nothing carried out; ``retryable`` says whether another attempt
    can help), ``partial`` (some of it carried out and some not: failed, what succeeded on
    record; never retried, which would do the done part twice).
    ``request_ids`` and ``response`` are what the channel answered, for the execution record;
    ``retry_after``, how long it asked to be left alone before another attempt.
    ``unanswered`` (a failure): the request may have reached the channel and no answer says
    whether it was carried out; an operator's retry, a new request, could do it twice."""

    result: Literal["done", "moved", "failed", "partial"]
    retryable: bool = False
    detail: str = ""
    before: dict[str, dict[str, str]] = field(default_factory=dict)
    after: dict[str, dict[str, str]] = field(default_factory=dict)
    moves: tuple[TargetMove, ...] = ()
    request_ids: tuple[str, ...] = ()
    response: dict[str, Any] = field(default_factory=dict)
    # Seconds the channel asked to be left alone before another attempt (a quota's retry
    # delay): the next attempt waits at least so long.
    retry_after: float | None = None
    unanswered: bool = False


@dataclass(frozen=True)
class Frozen:
    """What every attempt of a round sends (JSON), and the round's key."""

    key: str
    request: dict[str, Any]


class Executor:
    """Carries out approved proposals of the action types it takes, on the accounts it takes.

    ``name`` is recorded on each attempt (``approvals.Execution.executor``) and on each round;
    it must stay the same once used."""

    name: ClassVar[str]
    in_transaction: ClassVar[bool] = False

    def carries_out(self, *, account: Account, action_type: ActionType) -> bool:
        """Whether this executor carries out ``action_type`` on ``account``."""
        raise NotImplementedError

    def approval_said(self, *, account: Account) -> str:
        """What approving an action this executor carries out sets going, in words, as a
        bulk approval's confirmation says it beside each proposal ("Approved: it executes.")."""
        return "it executes"

    def refusals(self, *, account: Account, action_type: ActionType, payload: dict) -> list[str]:
        """What this executor's channel would refuse outright about the action, if this
        executor carries it out, in words: a guardrail, so the proposal is blocked when
        submitted, and an approval or an execution refused, rather than a person approving
        what can never run. Cheap checks first: it is asked at every evaluation."""
        return []


class ChannelExecutor(Executor):
    """An executor that reaches outside the database; run by the shared channel runner.

    ``sends_key``: whether the channel gets the round's key (an idempotency key it
    deduplicates on). Where it does not, what people are told of a request names no key."""

    sends_key: ClassVar[bool] = True

    @property
    def lease(self) -> timedelta:
        """How long an attempt holds the proposal: longer than ``carry_out`` can take."""
        return timedelta(seconds=60)

    @property
    def max_attempts(self) -> int:
        return settings.WEBHOOK_MAX_ATTEMPTS

    @property
    def retry_seconds(self) -> float:
        """The first retry's delay; each next one doubles (at most 10 minutes)."""
        return settings.WEBHOOK_RETRY_SECONDS

    @property
    def requests_per_account(self) -> int:
        """Attempts of this executor under way at once for one account, at most."""
        return settings.WEBHOOK_REQUESTS_PER_ACCOUNT

    def freeze(
        self,
        *,
        proposal: Proposal,
        action_type: ActionType,
        campaigns: dict[str, Campaign],
        targets: dict[str, dict[str, str]],
        key: str,
        previous: ExecutionRound | None,
    ) -> Frozen:
        """What every attempt of the round starting now sends, fixed from the proposal and
        the ledger as they stand (``targets``: the action's campaign fields now, in the
        ledger's terms). ``key`` is the new round's; ``previous`` the proposal's last round,
        if any (a held one may be resumed with its key). Runs inside the runner's
        transaction; raises ``ChannelError`` if the action cannot be sent at all."""
        raise NotImplementedError

    def carry_out(self, *, request: dict[str, Any], account: Account) -> Outcome:
        """Send a frozen request, outside any transaction. May raise ``ChannelError``."""
        raise NotImplementedError

    def worked_out_from(self, request: dict[str, Any]) -> dict[str, dict[str, str | None]]:
        """The ledger's values (``targets``, as ``freeze`` was given them) that what a round's
        ``request`` sets was worked out from, where it sends figures worked out from them (the
        budgets a reallocation comes to); ``{}`` where what it sends does not depend on them.
        The runner compares them with the ledger before each attempt: an action approved
        before it may have landed on the same campaigns meanwhile."""
        return {}

    def sets(self, request: dict[str, Any]) -> dict[str, dict[str, str]]:
        """The values ``request`` sets on the channel, in the ledger's terms
        (``{"brand-search": {"daily_budget": "720.00"}}``), as a person is told them."""
        return {}

    def sends_again(self, request: dict[str, Any]) -> bool:
        """Whether the runner may send ``request`` again after an attempt whose worker stopped
        while it was under way (it may have been carried out): yes where the channel finds out
        itself that it was (a key it deduplicates on, a value it reads first); no where a
        second request would do it twice, and the execution fails for a person to check."""
        return True

    def retry_finds_out(self, request: dict[str, Any]) -> bool:
        """Whether a new round (a person's retry, a new request with a new key) would find out
        itself that an attempt of the round that sent ``request`` carried it out (a value it
        reads first), so that it is not done twice. No for a key the channel deduplicates on:
        the retry's is another. Where not, a round that ends failed after an attempt with no
        sure answer says to check on the channel before retrying."""
        return False
