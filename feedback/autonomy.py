"""Earned autonomy: the platform reads each agent's scorecards and recommends moving its
auto-execute ceilings, wider where people approve nearly everything as proposed, narrower
where they reject much. A recommendation is a ``policy_change`` proposal made by the
platform's own agent, the autonomy advisor; it always waits for a policy owner, shows its
evidence (the scorecard and a what-if simulation of the new ceiling over the same weeks), and
changes the policy only once approved and executed. The platform never widens its own
autonomy without a human.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from approvals import action_types
from approvals.action_types.policy_changes import agents_own_scope, is_agents_own
from approvals.models import Agent, AgentKind, Proposal, RejectionReason
from approvals.models import ProposalStatus as S
from approvals.services.proposals import Submission, proposal_submit
from approvals.simulation import SimulationReport, simulate
from audit.actors import Actor, acting_as
from feedback.models import AutonomyRules
from feedback.selectors import Scorecard, scorecards
from hitlproject.errors import DomainError
from hitlproject.formats import share_percent
from hitlproject.vocabulary import AUTO_EXECUTED, AUTO_NOT_EXECUTED, action_type_label, how_many
from ledger.models import Account
from policies.engine import format_magnitude, percent_text
from policies.models import Policy
from policies.services import policy_in_force, rule_from_policy, rules_in_force

logger = logging.getLogger(__name__)

ADVISOR = "autonomy-advisor"
POLICY_CHANGE = "policy_change"
_CEILING_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True)
class Recommendation:
    agent: Agent
    account: Account
    policy: Policy
    card: Scorecard
    current: Decimal
    proposed: Decimal

    @property
    def widens(self) -> bool:
        return self.proposed > self.current


def recommend(
    rules: AutonomyRules, agent: Agent, account: Account, card: Scorecard
) -> Recommendation | None:
    """What the rules say about one scorecard: a new ceiling for the policy in force, or
    None. Only relative ceilings (bids, budgets) move; a policy that always asks a person,
    or sets no ceiling, is left to people."""
    action_type = action_types.get(card.action_type)
    if action_type is None or action_type.always_human or action_type.magnitude_unit != "ratio":
        return None
    policy = policy_in_force(action_type=card.action_type, agent=agent, account=account)
    if policy is None or policy.always_review or not policy.auto_execute_max_magnitude:
        return None
    current = policy.auto_execute_max_magnitude
    if not card.decided:
        return None
    # Shares compared in whole numbers: 19 of 20 is 95%, which 19 / 20 in floats is not.
    clean, decided = card.approved - card.edited, Decimal(card.decided)
    if (
        card.decided >= rules.widen_min_decisions
        and clean >= rules.widen_min_clean_share * decided
        and not card.rejection_reasons.get("too_aggressive")
    ):
        # Never past the policy's hard ceiling: what lay between would be refused, not run.
        widest = min(
            rules.widen_max_ceiling,
            policy.block_above_magnitude
            if policy.block_above_magnitude is not None
            else rules.widen_max_ceiling,
        )
        if current >= widest:
            return None  # as wide as the rules (or the policy's hard ceiling) let it be
        proposed = min(current * rules.widen_factor, widest)
    elif (
        card.decided >= rules.narrow_min_decisions
        and card.rejected >= rules.narrow_min_rejected_share * decided
    ):
        proposed = current * rules.narrow_factor
    else:
        return None
    proposed = proposed.quantize(_CEILING_QUANTUM, rounding=ROUND_DOWN)
    if proposed == current:
        return None
    return Recommendation(agent, account, policy, card, current, proposed)


def advisor_for(account: Account) -> Agent:
    """The platform's own agent, which makes the recommendations, allowed on ``account``."""
    with acting_as(Actor.system("autonomy")):
        advisor = Agent.objects.filter(is_platform=True).first()
        if advisor is None:
            if Agent.objects.filter(name=ADVISOR).exists():
                raise DomainError(f"An agent of the users' is named “{ADVISOR}”; rename it.")
            advisor = Agent.objects.create(name=ADVISOR, kind=AgentKind.ANALYSIS, is_platform=True)
        if not advisor.accounts.filter(pk=account.pk).exists():
            advisor.accounts.add(account)
    return advisor


def _reference(agent: Agent, account: Account, action_type: str) -> str:
    return f"autonomy:{agent.name}:{account.external_id}:{action_type}"


# A recommendation in these states stands for its window: waiting, carried out, or turned
# down. One that failed, expired or was withdrawn does not.
_STANDING = [S.SUBMITTED, S.PENDING_REVIEW, S.APPROVED, S.EXECUTING, S.EXECUTED, S.REJECTED]


def _recently_recommended(agent: Agent, account: Account, action_type: str, since) -> bool:
    """One recommendation per agent, account and action type per window: a pending one is
    not repeated, and one decided is not raised again until a new record has built up."""
    return Proposal.objects.filter(
        action_type=POLICY_CHANGE,
        external_ref=_reference(agent, account, action_type),
        status__in=_STANDING,
        created_at__gte=since,
    ).exists()


def what_if(recommendation: Recommendation, since: datetime, until: datetime) -> SimulationReport:
    """The agent's proposals of the window replayed with the proposed ceiling in place, the
    way the executor will put it: on the agent's own policy for the account."""
    policy, agent, account = recommendation.policy, recommendation.agent, recommendation.account
    own = is_agents_own(policy, agent, account)
    draft = replace(rule_from_policy(policy), auto_execute_max_magnitude=recommendation.proposed)
    if not own:
        draft = replace(draft, policy_id=0, **agents_own_scope(agent, account))
    rules = [rule for rule in rules_in_force() if not (own and rule.policy_id == policy.pk)]
    return simulate(
        rules=[*rules, draft],
        since=since,
        until=until,
        drafts=[f"{agent.name}'s ceiling at {recommendation.proposed}"],
        only_account_id=account.pk,
        only_agent_id=agent.pk,
        only_action_type=recommendation.card.action_type,
    )


def _was(count: int) -> str:
    return "was" if count == 1 else "were"


def _evidence(
    rules_now: AutonomyRules, recommendation: Recommendation, report: SimulationReport, days: int
) -> tuple[str, dict]:
    """The proposal's rationale and supporting data: the scorecard, the rule it meets, and
    the what-if."""
    card = recommendation.card
    pct = share_percent
    verb = "widening" if recommendation.widens else "narrowing"
    # The rule's thresholds exactly as set (97.5%, not "98%": more than the rule asks); the
    # record's shares, read off its counts, to a whole percent.
    test = (
        f"at least {how_many(rules_now.widen_min_decisions, 'decision')}, at least "
        f"{percent_text(rules_now.widen_min_clean_share)} approved as proposed, none rejected "
        "as too aggressive"
        if recommendation.widens
        else f"at least {how_many(rules_now.narrow_min_decisions, 'decision')}, at least "
        f"{percent_text(rules_now.narrow_min_rejected_share)} rejected"
    )
    reasons = (
        ", ".join(
            f"{n} {RejectionReason(code).label.lower() if code in RejectionReason else code}"
            for code, n in sorted(card.rejection_reasons.items(), key=lambda item: -item[1])
        )
        or "none"
    )
    happened, with_change = report.happened, report.with_draft
    rationale = (
        f"Over the last {how_many(days, 'day')} {card.agent} made "
        f"{how_many(card.proposals, action_type_label(card.action_type) + ' proposal')} "
        f"on {recommendation.account.external_id}: {card.auto_executed} ran on their "
        f"own; people decided {card.decided}, approving {pct(card.approval_rate)} "
        f"({card.approved - card.edited} as proposed, {card.edited} edited) and rejecting "
        f"{card.rejected} (reasons: {reasons}). The rules for {verb} hold ({test}).\n\n"
        f"What if the ceiling had been {format_magnitude(recommendation.proposed, 'ratio')} "
        f"over those days, every other rule as it is now (it was "
        f"{format_magnitude(recommendation.current, 'ratio')} when recommended): "
        f"{with_change[AUTO_EXECUTED]} of the {report.proposals} proposals would have run on "
        f"their own ({happened[AUTO_EXECUTED]} did), {with_change['review']} gone to "
        f"people ({happened['review']} did) and {with_change['block']} been blocked "
        f"({happened['block']} {_was(happened['block'])})"
        + (
            f", and {with_change[AUTO_NOT_EXECUTED]} been auto-approved but not executed "
            f"({happened[AUTO_NOT_EXECUTED]} {_was(happened[AUTO_NOT_EXECUTED])}: superseded, "
            "sent back or failed first)"
            if happened[AUTO_NOT_EXECUTED] or with_change[AUTO_NOT_EXECUTED]
            else ""
        )
        + "; of those that would have run on "
        f"their own, people had rejected {report.auto_though_rejected} and edited "
        f"{report.auto_though_edited}."
    )
    policy, agent, account = recommendation.policy, recommendation.agent, recommendation.account
    if not is_agents_own(policy, agent, account):
        # The copy then decides for the agent on the account, in the place of the policy it
        # was made from: a hard ceiling set later on that one does not hold there.
        rationale += (
            f"\n\nApproved, it does not change “{policy.name}”: it makes {agent.name}'s own "
            f"policy on {account.external_id}, a copy of it with the new ceiling, which then "
            f"decides instead of “{policy.name}” for {agent.name} on {account.external_id}. A "
            f"later change of “{policy.name}” (a hard ceiling, say) does not hold there unless "
            "it is made on that copy too."
        )
    supporting = {
        "scorecard": {
            "days": days,
            "proposals": card.proposals,
            "auto_executed": card.auto_executed,
            "decided": card.decided,
            "approved": card.approved,
            "edited": card.edited,
            "rejected": card.rejected,
            "expired": card.expired,
            "rejection_reasons": card.rejection_reasons,
            "outcomes_reported": card.outcomes,
        },
        "what_if": {
            "ceilings": {
                "now": str(recommendation.current),
                "proposed": str(recommendation.proposed),
            },
            # By routing, as the chart draws them; auto-approved ones counted as run only if
            # they did (``approvals.simulation``). "happened" is what became of them under the
            # policies of their day, not a replay with the ceiling now: the ceiling may have
            # moved within the window.
            **{
                outcome: {"happened": happened[row], "proposed": with_change[row]}
                for outcome, row in (
                    ("auto_approve", AUTO_EXECUTED),
                    ("review", "review"),
                    ("block", "block"),
                )
            },
            "auto_approved_not_executed": {
                "happened": happened[AUTO_NOT_EXECUTED],
                "proposed": with_change[AUTO_NOT_EXECUTED],
            },
            "would_have_run_though_rejected": report.auto_though_rejected,
            "would_have_run_though_edited": report.auto_though_edited,
        },
    }
    return rationale, supporting


# Held while a run proposes, so that beat's run and a command's do not both propose.
RUN_LOCK = "feedback:autonomy-run"


def autonomy_recommendations_propose(*, now: datetime | None = None) -> list[Proposal]:
    """Read every agent's scorecards, per account and action type, and propose the policy
    changes the autonomy rules call for. Returns the proposals made."""
    rules = AutonomyRules.current()
    if not rules.is_active:
        return []
    if not cache.add(RUN_LOCK, "running", timeout=3600):
        logger.info("A run of the autonomy recommendations is under way; not starting another.")
        return []
    try:
        return _propose_all(rules, now or timezone.now())
    finally:
        cache.delete(RUN_LOCK)


def _propose_all(rules: AutonomyRules, until: datetime) -> list[Proposal]:
    since = until - rules.window
    pairs = (
        Proposal.objects.filter(
            created_at__gte=since, created_at__lt=until, agent__is_platform=False
        )
        .values_list("agent_id", "account_id")
        .distinct()
        .order_by("agent_id", "account_id")
    )
    pairs = list(pairs)
    agents = Agent.objects.in_bulk({agent_id for agent_id, _ in pairs})
    accounts = Account.objects.in_bulk({account_id for _, account_id in pairs})
    made = []
    for agent_id, account_id in pairs:
        agent, account = agents[agent_id], accounts[account_id]
        for card in scorecards(since=since, until=until, agent=agent, account=account):
            try:
                proposal = _propose(rules, agent, account, card, since, until)
            except DomainError as error:  # one pair's trouble stops no other
                logger.warning(
                    "No autonomy recommendation for %s's %s on %s: %s",
                    agent, card.action_type, account.external_id, error,
                )  # fmt: skip
                continue
            if proposal is not None:
                made.append(proposal)
    return made


def _propose(rules, agent, account, card, since, until) -> Proposal | None:
    recommendation = recommend(rules, agent, account, card)
    if recommendation is None or _recently_recommended(agent, account, card.action_type, since):
        return None
    days = max(1, round(rules.window / timedelta(days=1)))
    rationale, supporting = _evidence(
        rules, recommendation, what_if(recommendation, since, until), days
    )
    with transaction.atomic():
        return proposal_submit(
            agent=advisor_for(account),
            submission=Submission(
                account=account.external_id,
                action_type=POLICY_CHANGE,
                payload={
                    "agent": agent.name,
                    "action_type": card.action_type,
                    "from_ceiling": str(recommendation.current),
                    "to_ceiling": str(recommendation.proposed),
                },
                rationale=rationale,
                supporting_data=supporting,
                # How strongly the record speaks for it.
                confidence=float(
                    card.clean_approval_rate if recommendation.widens else card.rejection_rate
                ),
                external_ref=_reference(agent, account, card.action_type),
            ),
        )
