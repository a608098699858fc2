"""Which executor carries out a proposal: the first registered one that takes its account
and action type, in the order registered; the ledger executor when none does.

A new channel is a class (``executors.base.ChannelExecutor``) and a call to ``register``,
made once when Django starts (its app's ``AppConfig.ready``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from approvals import action_types
from executors.base import Executor
from executors.google_ads import GoogleAdsExecutor
from executors.ledger import LedgerExecutor
from executors.webhook import WebhookExecutor

if TYPE_CHECKING:
    from approvals.action_types.base import ActionType
    from ledger.models import Account

FALLBACK = LedgerExecutor()
_registered: list[Executor] = []


def register(executor_class: type[Executor]) -> type[Executor]:
    """Add an executor, after those registered before it (usable as a class decorator)."""
    names = {executor.name for executor in registered()}
    if executor_class.name in names:
        raise ValueError(f"An executor named {executor_class.name!r} is registered already.")
    _registered.append(executor_class())
    return executor_class


def unregister(executor_class: type[Executor]) -> None:
    _registered[:] = [e for e in _registered if not isinstance(e, executor_class)]


def registered() -> list[Executor]:
    """Every executor, in the order they are asked; the fallback last."""
    return [*_registered, FALLBACK]


def executor_for(*, account: Account, action_type: ActionType) -> Executor:
    for executor in _registered:
        if executor.carries_out(account=account, action_type=action_type):
            return executor
    return FALLBACK


def channel_refusals(*, account: Account, action_type: ActionType, payload: dict) -> list[str]:
    """What the channels refuse outright about the action (``Executor.refusals``), for the
    guardrails (registered with ``policies.services.channel_refusals_register``)."""
    return [
        reason
        for executor in _registered
        for reason in executor.refusals(account=account, action_type=action_type, payload=payload)
    ]


def approval_said(proposal) -> str:
    """What approving ``proposal`` sets going, as its executor says it (for approvals, which
    never imports this app: ``approvals.selectors.approval_said``)."""
    action_type = action_types.named(proposal.action_type)
    executor = executor_for(account=proposal.account, action_type=action_type)
    return executor.approval_said(account=proposal.account)


def executor_named(name: str) -> Executor:
    """The executor that recorded itself as ``name`` (a round under way stays with it)."""
    for executor in registered():
        if executor.name == name:
            return executor
    raise LookupError(f"No executor named {name!r} is registered.")


# A real ad platform before the generic webhook: an account linked to Google Ads and given an
# endpoint too has Google Ads carry out what it can.
register(GoogleAdsExecutor)
register(WebhookExecutor)
