"""Agents and their API keys.

A key is ``hitl_<prefix>_<secret>``: the prefix is public and finds the key's row, the secret
has 256 bits of entropy. Only a SHA-256 digest of the whole key is stored. A slow password hash
would buy nothing against guessing a 256-bit secret and would cost every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals.models import Agent, AgentAPIKey
from audit.actors import Actor, acting_as
from hitlproject.errors import DomainError, NotAuthenticated
from hitlproject.signing import new_secret
from ledger.models import Account
from policies.services import in_force

KEY_SCHEME = "hitl"
KEY_PREFIX = re.compile(r"[0-9a-f]{12}")


def _digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def agent_callback_secret_rotate(*, agent: Agent, actor: Actor) -> str:
    """Give the agent a new secret to verify its callbacks by; the old one stops at once.
    The agent is read again under its lock, so that a change saved since ``agent`` was read
    (it deactivated, its callback URL changed) is kept, not written back as it was."""
    with transaction.atomic(), acting_as(actor):
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        agent.callback_secret = new_secret()
        agent._change_reason = "new callback signing secret issued"
        agent.save()
    return agent.callback_secret


def agent_key_issue(
    *, agent: Agent, actor: Actor, revoke_existing: bool = True, reason: str = ""
) -> str:
    """Issue a new key for an agent and return it: the only time it is ever shown. The
    platform's own agents have none: nothing outside may act as them. ``reason``: why, as
    the key's history says it (by default, who issued it)."""
    if agent.is_platform:
        raise DomainError(f"{agent} is the platform's own agent; it has no API keys.")
    with transaction.atomic(), acting_as(actor):
        # Under the agent's lock: two issued at once (two people, two tabs) each revoked the
        # keys in force when it began, neither the other's new one, and both new keys stayed
        # in force, where a new key is to be the agent's one.
        Agent.objects.select_for_update().filter(pk=agent.pk).first()
        if revoke_existing:
            for key in agent.api_keys.filter(revoked_at__isnull=True):
                key.revoked_at = timezone.now()
                key._change_reason = "revoked: a new key was issued"
                key.save()
        while True:
            prefix = secrets.token_hex(6)
            raw_key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
            key = AgentAPIKey(agent=agent, prefix=prefix, digest=_digest(raw_key))
            key._change_reason = reason or f"Issued by {actor.name}."
            try:
                with transaction.atomic():
                    key.save(force_insert=True)
            except IntegrityError:
                continue  # a prefix collision: draw again
            return raw_key


def agent_key_revoke(*, key: AgentAPIKey, actor: Actor) -> bool:
    """Revoke a key in force, and say whether this revoked it: one already revoked (by
    another person meanwhile) keeps the time and the person its history says revoked it."""
    with transaction.atomic(), acting_as(actor):
        key = AgentAPIKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is not None:
            return False
        key.revoked_at = timezone.now()
        key._change_reason = f"revoked by {actor.name}"
        key.save()
    return True


def agent_create(
    *,
    name: str,
    kind: str,
    accounts: Iterable[Account],
    actor: Actor,
    owner: AbstractBaseUser | None = None,
    callback_url: str = "",
    reason: str = "",
    key_reason: str = "",
) -> tuple[Agent, str]:
    """Create an agent with access to ``accounts``; returns it with its first API key.
    ``reason`` and ``key_reason``: why, as their histories say it (by default, who made
    them). The agent's history has one record of it made, with its accounts: not one with
    no accounts and no reason, then one more, of its accounts, with none either."""
    with transaction.atomic(), acting_as(actor):
        agent = Agent(name=name, kind=kind, owner=owner, callback_url=callback_url)
        agent.full_clean()
        agent.skip_history_when_saving = True
        try:
            agent.save()
            agent.accounts.set(accounts)
        finally:
            del agent.skip_history_when_saving
        agent._change_reason = reason or f"Made by {actor.name}."
        type(agent)._audited_history.create_historical_record(agent, "+")
        return agent, agent_key_issue(agent=agent, actor=actor, reason=key_reason)


def agent_authenticate(raw_key: str) -> tuple[Agent, AgentAPIKey]:
    scheme, _, rest = raw_key.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not KEY_PREFIX.fullmatch(prefix) or not secret:
        raise NotAuthenticated("Malformed API key.")
    # Kept as found, with the accounts its agent may act on, under the rules' token, which
    # every write to the agents, their keys and their accounts changes (approvals 0024, 0025):
    # a key revoked or an account taken away anywhere counts at the very next request.
    found = in_force().read_once("agent_keys", dict)
    key = found.get(prefix)
    if key is None:
        key = (
            AgentAPIKey.objects.select_related("agent")
            .prefetch_related("agent__accounts")
            .filter(prefix=prefix)
            .first()
        )
        if key is not None:  # not a prefix nobody has: guessed ones would fill the process
            found[prefix] = key
    if key is None or not hmac.compare_digest(key.digest, _digest(raw_key)):
        raise NotAuthenticated("Invalid API key.")
    _in_force(key)
    return key.agent, key


def agent_key_still_in_force(*, key_id: int) -> None:
    """For a request that authenticated a while ago and answers now (a long poll re-reading
    after a wake-up): its key, read again, is neither revoked nor its agent's deactivated
    since. Raises ``NotAuthenticated`` as authenticating would."""
    key = AgentAPIKey.objects.select_related("agent").filter(pk=key_id).first()
    if key is None:
        raise NotAuthenticated("Invalid API key.")
    _in_force(key)


def _in_force(key: AgentAPIKey) -> None:
    if key.is_revoked:
        raise NotAuthenticated("This API key has been revoked.")
    if not key.agent.is_active or key.agent.is_platform:
        raise NotAuthenticated("This agent is deactivated.")
