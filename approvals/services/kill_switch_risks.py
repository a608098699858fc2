"""A kill switch raises the risk of what it sends to a person into the band of those a
guardrail spoke about (91-100, above every clean one: ``policies.engine.guarded_risk``), and
the queue is ordered riskiest first. Released, or moved while engaged off what it covered, it
no longer speaks about them: each proposal still waiting for a person whose risk it raised,
and that no other guardrail finding nor kill switch raises now, is re-assessed to the risk the
engine gives it without the switch, in the save's transaction, and its history says why ("Risk
92 → 12: the kill switch on everything, which raised it, was released; …"). Left at 92, it sat
first in the queue, above a +20% budget change at 55, for a reason its own page said was gone.

Re-assessed, not recomputed on read: what a page shows is what was recorded, and the risk an
agent, a notification route or an auditor's export reads is the one in the row. Its findings
stay as they were recorded (its page says the switch was released since), and so does its
routing: it still waits for a person, who decides it as before; nothing runs it on its own (a
person was told it waits, and may be deciding it). Those told of it stay told: a notification
route's minimum risk chooses whom a proposal is told to as it comes to people, not afterwards
(reminders go to those told, escalations to the backups of the routes that told them).

The clean risk is the engine's own (``policies.engine.risk_score``): the action's weight, its
size against the ceilings of the policy version its verdict was reached under, and its agent's
record as it is now (the routing's is not recorded). Read in bulk: the proposals in one
statement, the switches engaged in one, the policy versions in one, the agents' records one
per agent; written in one UPDATE and one INSERT of their history."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from django.db.models import Q
from django.utils import timezone

from approvals import action_types
from approvals.models import Proposal, ProposalStatus
from approvals.selectors import first_routings
from approvals.services.proposals import (
    brand_findings_named,
    brand_findings_taken_out,
    facts_as_recorded,
    routed_version,
)
from audit.actors import Actor
from audit.history import update_with_history
from hitlproject.vocabulary import ENGINE_COULD_NOT_EVALUATE
from policies.engine import GUARDED_RISK_MIN, Rule, risk_score
from policies.models import KillSwitch, KillSwitchScope, Policy
from policies.services import (
    agent_approval_rate,
    kill_switch_named_in,
    kill_switch_names,
    kill_switches_covering,
    kill_switches_told_apart,
    rule_from_policy,
)

# Who re-assesses a risk, in the proposal's history: the engine, whose figure it is. The
# switch's own history names who released or moved it.
REASSESSED_BY = Actor.system("policy-engine")


def _covered_then(covered: Mapping[str, Any]) -> Q:
    if covered["scope"] == KillSwitchScope.ACCOUNT:
        return Q(account_id=covered["account_id"])
    if covered["scope"] == KillSwitchScope.CHANNEL:
        return Q(account__channel=covered["channel"])
    return Q()


def risk_lowered_reason(
    *,
    old: int,
    new: int,
    named: str,
    switch: KillSwitch,
    others: bool = False,
    edited_out: Collection[str] = (),
) -> str:
    """Why a proposal's risk went from ``old`` to ``new``, as its history says it: the switch
    ``named`` as its finding names it ("The kill switch on everything") was released, or
    moved to what ``switch`` covers now. ``others``: its findings name other switches too,
    released before (it was the last that covered it). ``edited_out``: what the brand
    guidelines found in its agent's words, which a reviewer's edit took out."""
    then = named.replace("The", "the", 1)
    what = "was released" if not switch.engaged else f"was moved to {switch.scope_in_words()}"
    raised = "the last of the kill switches that raised it" if others else "which raised it"
    spoke = (
        f"{brand_findings_named(edited_out)}, found as its agent proposed it, was taken out by "
        "a reviewer's edit, and no other guardrail speaks about it"
        if edited_out
        else "no other guardrail spoke about it"
    )
    return (
        f"Risk {old} → {new}: {then}, {raised}, {what}; no kill switch covers it now, and "
        f"{spoke}. It still waits for a person's decision."
    )


def proposals_risk_reassess_after_kill_switch(
    *, switch: KillSwitch, covered: Mapping[str, Any]
) -> list[int]:
    """The waiting proposals ``covered`` (what ``switch`` covered, engaged, before the save
    that released or moved it) whose risk it raised, re-assessed as the module says, locked
    (in id order, as the executor locks them) in the caller's transaction; their ids."""
    waiting = list(
        Proposal.objects.filter(
            _covered_then(covered),
            status=ProposalStatus.PENDING_REVIEW,
            risk__gte=GUARDED_RISK_MIN,
        )
        .select_related("agent", "account", "verdict_policy")
        .select_for_update(of=("self",))
        .order_by("pk")
    )
    if not waiting:
        return []
    as_it_was = KillSwitch(
        pk=switch.pk,
        scope=covered["scope"],
        account_id=covered["account_id"],
        channel=covered["channel"],
    )
    its_names = kill_switch_names(as_it_was)
    engaged = kill_switches_told_apart(
        KillSwitch.objects.filter(engaged=True).select_related("account").order_by("pk")
    )
    # What the brand guidelines found in the agent's words and a reviewer's edit took out
    # speaks about it no more (its page says so): as proposed, read in one statement.
    others_found = {
        proposal.pk: [
            str(finding)
            for finding in (proposal.guardrail_findings or {}).get("review", [])
            if not kill_switch_named_in(str(finding))
        ]
        for proposal in waiting
    }
    as_proposed = dict(
        first_routings([pk for pk, others in others_found.items() if others]).values_list(
            "id", "payload"
        )
    )
    raised = []
    for proposal in waiting:
        findings = proposal.guardrail_findings or {}
        named = [kill_switch_named_in(str(finding)) for finding in findings.get("review", [])]
        if not any(name in its_names for name in named):
            continue  # this switch did not raise it
        others = others_found[proposal.pk]
        if others and not set(others) <= brand_findings_taken_out(
            proposal, before=as_proposed.get(proposal.pk), after=proposal.payload
        ):
            continue  # another guardrail spoke about it, and still does
        if findings.get("block"):
            continue
        if kill_switches_covering(engaged, proposal.account):
            continue  # another switch covers it now
        if any(
            str(reason).startswith(ENGINE_COULD_NOT_EVALUATE) for reason in proposal.verdict_reasons
        ):
            continue
        if action_types.get(proposal.action_type) is None:
            continue
        named = [name for name in named if name]
        raised.append((proposal, next(name for name in named if name in its_names), named))
    if not raised:
        return []
    versions = {routed_version(proposal) for proposal, _, _ in raised} - {None}
    recorded = {
        record.history_id: record for record in Policy.history.filter(history_id__in=versions)
    }
    agents = {proposal.agent_id: proposal.agent for proposal, _, _ in raised}
    records = {pk: agent_approval_rate(agent) for pk, agent in agents.items()}
    now = timezone.now()
    changes = []
    for proposal, name, named in raised:
        facts = facts_as_recorded(proposal, agent_approval_rate=records[proposal.agent_id])
        new = risk_score(facts, _rule(proposal, recorded))
        proposal._change_reason = risk_lowered_reason(
            old=proposal.risk,
            new=new,
            named=name,
            switch=switch,
            others=len(set(named)) > 1,
            edited_out=others_found[proposal.pk],
        )
        proposal.risk = new
        proposal.updated_at = now
        changes.append((proposal, {"risk": new, "updated_at": now}))
    update_with_history(Proposal, changes, actor=REASSESSED_BY, at=now)
    return [proposal.pk for proposal, _ in changes]


def _rule(proposal: Proposal, recorded: Mapping[int, Any]) -> Rule | None:
    """The policy version its verdict was reached under, as recorded (its ceilings press on
    its risk); the policy as it is where that version is not on record; none if none
    matched it."""
    version = routed_version(proposal)
    if version in recorded:
        return rule_from_policy(recorded[version], version=version)
    if proposal.verdict_policy is not None:
        return rule_from_policy(proposal.verdict_policy)
    return None
