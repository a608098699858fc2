"""Tuning a policy the safe way: duplicate it as a draft, try the draft (the dry run, the
what-if simulation), then promote it.

A draft replaces one policy: the one it was duplicated from (``draft_of``), live or switched
off, or else the live policy of the same action type, scope and priority; with neither, it
adds to the policies in force. The simulation puts it in place the same way
(``replaced_policy``), so what was simulated is what goes live. Promoting copies the draft's
settings onto the policy it replaces, which keeps its id, its history (the change recorded
with who promoted it and why) and whether it is switched on, and retires the draft. A draft of
a policy switched off since is promoted into it, which stays switched off: it had gone live as
a second policy beside it, the rule switched off back in force under another id.

Who may change a live policy: one policy owner (any user with the permission to change
policies), with a reason, who does not own an agent the policy could govern, as it stands or
as changed (``owned_agent_governed``: the rule of ``approvals.services.acts``, for policies).
That is how a live edit in the console works, and how the platform's own proposals to change
a ceiling (``policy_change``) are decided: by one policy owner. Promoting a draft is a live
change and follows the same rule.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.actors import Actor, acting_as
from hitlproject.errors import DomainError, NotFound
from policies.models import Policy, same_scope

# What a policy says, as opposed to where it stands (live or draft, active) and its bookkeeping.
SETTINGS = tuple(
    field.name
    for field in Policy._meta.concrete_fields
    if field.name not in {"id", "is_active", "is_draft", "draft_of", "updated_at"}
)


class ChangeReasonMissing(DomainError):
    def __init__(self) -> None:
        super().__init__("Say why: every change to a policy records its reason.")


class NothingToPromote(DomainError):
    """A draft that says what the policy it replaces says: promoting it would write a version
    of that policy changing nothing (a proposal routed under the one before would read "it
    has changed since"), as a save changing nothing does not."""

    def __init__(self, target: Policy) -> None:
        super().__init__(
            f"Nothing was changed in the policy “{target}”: the draft says what it says, so no "
            "new version was recorded. The draft stays as it is."
        )


def owned_agent_governed(user, *policies: Policy | None):
    """The first agent ``user`` owns that one of these policies (as they stand, or as they
    would be saved) could govern: each scope it names (agent, agent kind, account, channel)
    is the agent's, an account among its accounts, a channel one of its accounts is on. Not
    only a policy naming the agent: one for its kind outranks the policy it had, and one for
    every agent governs it too (even before it is given an account). None for an
    administrator, or a user owning no agent."""
    if user is None or user.is_superuser or not user.pk:
        return None
    for agent in user.owned_agents.prefetch_related("accounts"):
        accounts = list(agent.accounts.all())
        for policy in policies:
            if (
                policy is not None
                and policy.agent_id in (None, agent.pk)
                and policy.agent_kind in ("", agent.kind)
                and (policy.account_id is None or policy.account_id in {a.pk for a in accounts})
                and (policy.channel == "" or policy.channel in {a.channel for a in accounts})
            ):
                return agent
    return None


def duplicate_initial(source: Policy) -> dict[str, Any]:
    """A new draft's settings, as the policy it is duplicated from has them."""
    initial = {name: getattr(source, name) for name in SETTINGS}
    initial.update(
        agent=source.agent_id, account=source.account_id, is_draft=True, draft_of=source.pk
    )
    return initial


def replaced_policy(draft: Policy, *, lock: bool = False) -> Policy | None:
    """The policy a draft takes the place of, or None if it adds to the policies: the one it
    was made of, even switched off (promoted into it, it stays so), else the live one of its
    action type, scope and priority."""
    policies = Policy.objects.filter(is_draft=False)
    if lock:
        policies = policies.select_for_update()
    if draft.draft_of_id is not None:
        source = policies.filter(pk=draft.draft_of_id).first()
        if source is not None:
            return source
    return (
        policies.filter(same_scope(draft), is_active=True, priority=draft.priority)
        .order_by("pk")
        .first()
    )


def active_draft_of(policy: Policy) -> Policy | None:
    return Policy.objects.filter(draft_of=policy, is_draft=True, is_active=True).first()


# How the records a promotion writes begin (``policy_promote``): the policy's, of the draft
# promoted into it or gone live itself, and the draft's, retired. A reason a person types on a
# policy's form may not begin so (``promotion_record_typed``): "promoted from draft #7: …"
# typed on an ordinary change made draft #7's page say it had been promoted, when it never was.
PROMOTED_FROM_DRAFT = "promoted from draft #"
PROMOTED_FROM_A_DRAFT = "promoted from a draft:"
PROMOTED_INTO = "promoted into “"
PROMOTION_RECORDS = (PROMOTED_FROM_DRAFT, PROMOTED_FROM_A_DRAFT, PROMOTED_INTO)


def promotion_record_typed(reason: str) -> bool:
    """Whether a reason typed by a person begins as a promotion's record does (in any case)."""
    return reason.strip().lower().startswith(PROMOTION_RECORDS)


def draft_promotion(draft: Policy):
    """The version ``policy_promote`` wrote of the live policy a draft was promoted into (its
    id, its name then, who promoted it and when), or None for a draft never promoted into
    one."""
    return (
        Policy.history.filter(
            history_type="~",
            history_change_reason__startswith=f"{PROMOTED_FROM_DRAFT}{draft.pk}:",
        )
        .order_by("-history_id")
        .first()
    )


def changes_on_promotion(draft: Policy) -> list[tuple[str, Any, Any]]:
    """(setting, the live policy's value, the draft's) for each setting promoting would
    change; every setting of the draft if it adds a policy."""
    target = replaced_policy(draft)
    return [
        (name, getattr(target, name) if target else None, getattr(draft, name))
        for name in SETTINGS
        if target is None or getattr(target, name) != getattr(draft, name)
    ]


def policy_promote(*, draft_id: int, actor: Actor, reason: str) -> Policy:
    """Make a draft live: its settings replace those of the policy it replaces (recorded in
    that policy's history with ``actor`` and ``reason``; switched off, it stays so) and the
    draft is retired; or, if it replaces none, the draft itself goes live. Returns the policy
    that has the draft's settings."""
    reason = reason.strip()
    if not reason:
        raise ChangeReasonMissing()
    with transaction.atomic(), acting_as(actor):
        draft = (
            Policy.objects.select_for_update()
            .filter(pk=draft_id, is_draft=True, is_active=True)
            .first()
        )
        if draft is None:
            raise NotFound(f"There is no active draft policy #{draft_id}.")
        target = replaced_policy(draft, lock=True)
        agent = owned_agent_governed(actor.user, draft, target)
        if agent is not None:
            raise DomainError(f"You own agent {agent}; someone else must set its policy.")
        if target is None:
            live, draft.is_draft, draft.draft_of = draft, False, None
            live._change_reason = f"{PROMOTED_FROM_A_DRAFT} {reason}"
        else:
            if not any(getattr(target, name) != getattr(draft, name) for name in SETTINGS):
                raise NothingToPromote(target)
            live = target
            for name in SETTINGS:
                setattr(live, name, getattr(draft, name))
            live._change_reason = f"{PROMOTED_FROM_DRAFT}{draft.pk}: {reason}"
        try:
            live.full_clean()
        except ValidationError as error:
            problems = " ".join(message for messages in error.message_dict.values()
                                for message in messages)  # fmt: skip
            raise DomainError(f"The draft cannot go live: {problems}") from error
        live.save()
        if target is not None:
            draft.is_active = False
            draft._change_reason = f"{PROMOTED_INTO}{target.name}” (#{target.pk}): {reason}"
            draft.save()
    return live
