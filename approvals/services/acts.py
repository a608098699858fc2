"""Who may act on a proposal, and when: the one rule that every act by a person goes through.

A person acts on a proposal by approving it (as proposed or edited), rejecting it, withdrawing
it for its agent, retrying its failed execution, or reporting what it did once executed. Each
act needs the permission the proposal's action type names (operators act on actions; policy
owners on the platform's proposed changes to policy) and the right to read proposals (nobody
decides one the console will not show them); nobody but an outcome's reporter acts on
a proposal of an agent they own or one that concerns an agent they own; each act is open only
from the status it starts from; a decision only within the review window; a reviewer
decides once a round; and nothing is let run (approved, or retried) whose agent has been
deactivated, or lost the account, since it proposed it, nor what no longer applies to what
it would change (a policy's ceiling moved since the platform recommended changing it), nor
what the ledger no longer allows as proposed (a reallocation's source budget cut below its
amount, or drawn or set below it by the moves approved before it once they have run: an edit
of the amount can mend it). The services check the rule under the
proposal's row lock; the console asks it before it shows a button, so that it never offers
one the server refuses.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, Q, prefetch_related_objects
from django.utils import timezone

from approvals import action_types
from approvals.action_types.base import ActionType
from approvals.models import Agent, Decision, Proposal, ProposalStatus
from approvals.services.lifecycle import InvalidTransition
from hitlproject.errors import Conflict, DomainError, NotAllowed
from hitlproject.formats import console_time
from hitlproject.row_locks import rows_held
from hitlproject.vocabulary import READ_PERMISSION, UNDER_WAY_STATUSES, and_joined
from ledger.models import Campaign


class Act(StrEnum):
    APPROVE = "approve"
    EDIT = "edit"  # edit, then approve
    REJECT = "reject"
    WITHDRAW = "withdraw"  # for the agent
    RETRY = "retry"
    REPORT_OUTCOME = "report_outcome"


@dataclass(frozen=True)
class _ActRule:
    from_status: str
    to_status: str | None  # the status the act moves the proposal to, if it moves it
    done: str  # the act, in the passive: "it can no longer be approved"
    owners_may: bool = False
    within_review_window: bool = False
    once_a_round: bool = False
    runs_it: bool = False  # the act lets the action run: its agent must still be let act


_RULES = {
    Act.APPROVE: _ActRule(
        ProposalStatus.PENDING_REVIEW,
        ProposalStatus.APPROVED,
        "approved",
        within_review_window=True,
        once_a_round=True,
        runs_it=True,
    ),
    Act.EDIT: _ActRule(
        ProposalStatus.PENDING_REVIEW,
        ProposalStatus.APPROVED,
        "edited and approved",
        within_review_window=True,
        once_a_round=True,
        runs_it=True,
    ),
    Act.REJECT: _ActRule(
        ProposalStatus.PENDING_REVIEW,
        ProposalStatus.REJECTED,
        "rejected",
        within_review_window=True,
        once_a_round=True,
    ),
    # Withdrawing ends a proposal as a rejection does, without a reason: as much a decision.
    Act.WITHDRAW: _ActRule(
        ProposalStatus.PENDING_REVIEW,
        ProposalStatus.WITHDRAWN,
        "withdrawn",
        within_review_window=True,
    ),
    # Retrying is deciding again that it should run.
    Act.RETRY: _ActRule(ProposalStatus.FAILED, ProposalStatus.APPROVED, "retried", runs_it=True),
    # A report says what happened; it decides nothing, so an owner may say what they saw.
    Act.REPORT_OUTCOME: _ActRule(ProposalStatus.EXECUTED, None, "reported on", owners_may=True),
}


# The statuses a person lets a proposal run from (approving it, retrying it): where what has
# changed since it was proposed (``no_longer_applies_each``) is asked.
LET_RUN_FROM = frozenset(rule.from_status for rule in _RULES.values() if rule.runs_it)


class LacksPermission(NotAllowed):
    """The person's role does not act on proposals of this kind at all."""


class OwnsAgent(NotAllowed):
    """The person owns the agent that proposed it, or one it concerns: someone else decides."""


class ReviewWindowClosed(Conflict):
    """A proposal's review window closed before the act: it has expired instead."""

    code = "expired"

    def __init__(self, proposal: Proposal, done: str) -> None:
        super().__init__(
            f"Proposal #{proposal.pk}'s review window closed at "
            f"{console_time(proposal.review_expires_at)}: it has expired and can no longer be "
            f"{done}."
        )


def review_window_closed(proposal: Proposal, now: datetime) -> bool:
    """Whether a proposal waiting for review waited past its window (the sweep may not have
    expired it yet)."""
    return (
        proposal.status == ProposalStatus.PENDING_REVIEW
        and proposal.review_expires_at is not None
        and proposal.review_expires_at <= now
    )


def reviewers_this_round(proposal: Proposal) -> list[int]:
    return reviewers_by_proposal([proposal])[proposal.pk]


def reviewers_by_proposal(proposals: Iterable[Proposal]) -> dict[int, list[int]]:
    """Who decided each proposal in its current round, read at once (by proposal id)."""
    rounds = {proposal.pk: proposal.review_round for proposal in proposals}
    reviewers: dict[int, list[int]] = {pk: [] for pk in rounds}
    for proposal_id, review_round, reviewer_id in Decision.objects.filter(
        proposal_id__in=rounds
    ).values_list("proposal_id", "review_round", "reviewer_id"):
        if rounds[proposal_id] == review_round:
            reviewers[proposal_id].append(reviewer_id)
    return reviewers


class AgentMayNoLongerAct(NotAllowed):
    """The proposal's agent was deactivated, or lost the account, since it proposed: what it
    proposed is not let run (rejected or withdrawn, it may end)."""


AgentAccounts = set[tuple[int, int]]  # (agent id, account id): who may act where


def agent_accounts_of(proposals: Iterable[Proposal]) -> AgentAccounts:
    """Which of these proposals' agents may still act on which of their accounts, read at
    once (for ``act_refusal``'s ``agent_accounts``, over many proposals)."""
    proposals = list(proposals)
    return set(
        Agent.accounts.through.objects.filter(
            agent_id__in={proposal.agent_id for proposal in proposals},
            account_id__in={proposal.account_id for proposal in proposals},
        ).values_list("agent_id", "account_id")
    )


def agents_hold(agent_ids: Iterable[int]) -> None:
    """Hold these agents as they are until the surrounding transaction ends, in id order
    (``FOR SHARE``): whoever deactivates one or changes its accounts (which saves the agent)
    waits until then, and one deactivated while the caller waited for an earlier lock is read
    by its later statements as it is now. Shared: executions of one agent's proposals do not
    wait for each other, nor does a proposal's insertion (which takes a lighter lock). On
    SQLite a transaction holds the database's one write lock from its start (``IMMEDIATE``):
    nothing commits meanwhile, and there is nothing to take."""
    rows_held(Agent, agent_ids, lock="SHARE")


def agent_stopped(proposal: Proposal, agent_accounts: AgentAccounts | None = None) -> str:
    """Why the proposal's agent may no longer act on what it proposed ("agent optimizer has
    been deactivated"), or "" if it may: what it proposed is then let run by nobody, neither
    a person nor the executor. ``agent_accounts``: ``agent_accounts_of``, if already read."""
    agent = proposal.agent
    if agent.is_platform:  # the platform's own advisor proposes on no account of its own
        return ""
    if not agent.is_active:
        return f"agent {agent} has been deactivated"
    if (agent.pk, proposal.account_id) not in (
        agent_accounts if agent_accounts is not None else agent_accounts_of([proposal])
    ):
        return f"agent {agent} may no longer act on account {proposal.account.external_id}"
    return ""


def agent_stopped_said(why: str) -> str:
    """An agent stopped since it proposed (``agent_stopped``'s ``why``), as it is said of one
    who would let its proposal run and as the queue marks it ("cannot be let run: agent
    optimizer has been deactivated since it proposed it.")."""
    return f"cannot be let run: {why} since it proposed it."


# What a failed proposal whose agent was stopped since (``agent_stopped``) may still be: it
# stays failed, and nobody retries it until its agent may act again. Not "it can be rejected
# or withdrawn", said of one that waits, which a failed one cannot be.
RETRY_REFUSED_WHILE_STOPPED = "A retry is refused while that is so: it stays failed."


def _agent_may_no_longer_act(
    proposal: Proposal, agent_accounts: AgentAccounts | None, act: Act
) -> DomainError | None:
    why = agent_stopped(proposal, agent_accounts)
    if not why:
        return None
    then = RETRY_REFUSED_WHILE_STOPPED if act == Act.RETRY else "It can be rejected or withdrawn."
    return AgentMayNoLongerAct(f"Proposal #{proposal.pk} {agent_stopped_said(why)} {then}")


class NoLongerApplies(Conflict):
    """What the proposal would change has changed since it was proposed, in a way its
    execution would refuse (a policy's ceiling moved, the ledger no longer allows it): it is
    not let run; it can be rejected or withdrawn while it waits (and, where the ledger
    refuses it as proposed, edited)."""


# What retrying a proposal whose execution would refuse it again would do: said of one that no
# longer applies, one the ledger refuses as proposed, and one a guardrail refuses now.
RETRY_WOULD_FAIL_AGAIN = "A retry would fail again: its execution would refuse it."

# How a proposal the ledger refuses as proposed is said: as its re-assessment recorded it
# (``approvals.services.proposals.REASSESSED_NO_LONGER_APPLIES``), and to one who would let
# it run (``refused_as_proposed_said``): "can no longer" where it could be applied when it
# was proposed, "cannot" where its routing found already that its execution would refuse it
# (``refused_when_routed``): nothing changed since for the worse.
NO_LONGER_APPLIED_AS_PROPOSED = "can no longer be applied as proposed: "
NOT_APPLIED_AS_PROPOSED = "cannot be applied as proposed: "

# How the reason of a move held at its routing because its execution would refuse it
# begins (``refused_once_run``), as its routing records it.
EXECUTION_WOULD_REFUSE = "Its execution would refuse it: "


def refused_when_routed(proposal: Proposal) -> bool:
    """Whether ``proposal``'s routing found that its execution would refuse it as proposed
    (``refused_once_run``: moves approved before it would leave too little), as its routing
    record keeps it (``guardrail_findings``' "changed_first", which a re-assessment or an
    edit leaves as it was decided): it could not be applied as proposed when it was
    proposed, so it is not said to be "no longer" applicable."""
    found = proposal.guardrail_findings
    if not isinstance(found, dict):
        return False
    return any(
        str(reason).startswith(EXECUTION_WOULD_REFUSE)
        for reason in found.get("changed_first") or ()
    )


def refused_as_proposed_said(why: str, *, when_routed: bool) -> str:
    """Why the ledger refuses a proposal as proposed (``why``: ``LedgerAhead.refusal``), as
    it is said everywhere (its page, the queue, a bulk approval, Slack, email, a
    re-assessment's record): "cannot be applied as proposed: <why>" where its routing found
    so already (``when_routed``: ``refused_when_routed``), else "can no longer be applied as
    proposed: <why>"."""
    said = NOT_APPLIED_AS_PROPOSED if when_routed else NO_LONGER_APPLIED_AS_PROPOSED
    return f"{said}{why}"


@dataclass(frozen=True)
class SinceProposed:
    """What has changed since a proposal was proposed that its execution would refuse, as
    read once (``no_longer_applies_each``)."""

    # Why it no longer applies at all (``ActionType.no_longer_applies``: a policy's ceiling
    # moved): nothing lets it run, as proposed or edited.
    no_longer_applies: str = ""
    # Why the ledger refuses it as proposed (``ActionType.ledger_refusal``: "amount: Exceeds
    # brand-search's daily budget of 350.00."): not approved or retried as it is; an edit is
    # judged as edited, against the ledger (its own check).
    refused_as_proposed: str = ""
    # Its routing found so already (``refused_when_routed``): it "cannot be applied as
    # proposed", not "no longer".
    refused_when_routed: bool = False

    @classmethod
    def of(cls, proposal: Proposal, *, no_longer_applies: str = "", refused_as_proposed: str = ""):
        """As read of ``proposal`` now, with whether its routing found it refused already."""
        return cls(
            no_longer_applies=no_longer_applies,
            refused_as_proposed=refused_as_proposed,
            refused_when_routed=bool(refused_as_proposed) and refused_when_routed(proposal),
        )

    def said(self) -> str:
        """What has changed, as it is said of one who would let the proposal run as proposed
        (approve it, retry it) and as the queue marks it ("no longer applies: <why>."; "can
        no longer be applied as proposed: <the ledger's refusal>", or "cannot be applied as
        proposed: …" where its routing found so already: ``refused_as_proposed_said``); ""
        where it still applies."""
        if self.no_longer_applies:
            return f"no longer applies: {self.no_longer_applies}."
        if self.refused_as_proposed:
            return refused_as_proposed_said(
                self.refused_as_proposed, when_routed=self.refused_when_routed
            )
        return ""


Gone = dict[int, SinceProposed]  # by proposal id; its fields "" where it still applies


# Campaigns as the ledger holds them now, by account id, then external id.
Ledger = dict[int, dict[str, Campaign]]


def campaigns_named(proposals: Iterable[Proposal], *, lock: bool = False) -> Ledger:
    """The campaigns the proposals touch, by account id and external id, read at once; with
    ``lock``, locked until the caller's transaction ends (in id order, after the proposals,
    as everywhere)."""
    named: dict[int, set[str]] = defaultdict(set)
    for proposal in proposals:
        fields = action_types.named(proposal.action_type).campaign_fields(proposal.payload)
        named[proposal.account_id] |= set(fields)
    wanted = Q(pk__in=[])
    for account_id, external_ids in named.items():
        wanted |= Q(account_id=account_id, external_id__in=sorted(external_ids))
    read = Campaign.objects.filter(wanted).order_by("pk")
    campaigns: Ledger = defaultdict(dict)
    for campaign in read.select_for_update() if lock else read:
        campaigns[campaign.account_id][campaign.external_id] = campaign
    return campaigns


class Draw(NamedTuple):
    """A move approved and not yet run, as it draws on a figure another proposal draws on too
    (``ActionType.drawn_from``), or sets it (``ActionType.figures_set``): its proposal, how
    much it takes (or the value it sets the figure to), and whether a bulk approval approves
    it with the other (an earlier row) rather than before it."""

    proposal_id: int | None
    amount: Decimal
    with_it: bool = False
    # It sets the figure to ``amount`` (a budget change), made against ``seen`` (as its
    # snapshot recorded the figure): once anything else has changed the figure, it is
    # superseded when its turn comes, and sets nothing.
    sets: bool = False
    seen: Decimal | None = None
    agent_id: int | None = None
    # An earlier item of a batch being submitted (its index as sent): it has no id yet.
    item: int | None = None
    # It adds ``amount`` to the figure (a reallocation, to its destination's budget): never
    # counted for a move judged after it (``LedgerAhead``), only said of what it leaves.
    brings: bool = False
    # When it was approved to run (last): a failed proposal runs after it when retried,
    # whether it was approved before or after the failed one was (``_once_run``).
    approved_at: datetime | None = None


DrawnFigure = tuple[int, str, str]  # (account id, campaign external id, field)


@dataclass(frozen=True)
class FigureAhead:
    """A campaign figure a proposal draws on, as moves approved before it and not yet run
    change it before it runs (``LedgerAhead.figures_ahead``)."""

    campaign: str  # its external id
    field: str
    now: Decimal
    left: Decimal  # once they have run
    once: str  # who they are: "#8, approved before it, has run" (``_once_run``)
    after: Decimal | None  # after the proposal, run then; None: its execution would refuse it
    takes: Decimal | None  # what the proposal takes from it (a reallocation's amount)


@dataclass
class LedgerAhead:
    """The campaigns some proposals touch as the ledger holds them now, and what the moves
    approved or executing and not yet run will take from the figures those proposals draw on,
    or set them to (in the order they were approved, as they run; then those a bulk approval
    approves with them, or a batch's submission before them, ``count``). A proposal the ledger
    may refuse (``ActionType.ledger_may_refuse``) is judged against what they leave
    (``refusal``): approved too, it runs after them. Only what they take is counted, not what
    they bring (one that brings may run after it): one that takes more than is left at its
    turn takes nothing (it fails when it runs), one that sets a figure higher than it is then
    is not counted, and one that sets it lower counts unless the figure has changed since it
    was made (it is superseded then). What they bring to a figure a proposal adds to (a
    reallocation's destination) is read too, for its page to say what they leave of it
    (``figures_ahead``): nothing refuses a proposal for what it adds to."""

    campaigns: Ledger
    draws: dict[DrawnFigure, list[Draw]] = field(default_factory=dict)

    @classmethod
    def read(cls, proposals: Iterable[Proposal], *, lock: bool = False) -> LedgerAhead:
        """For ``proposals``, read at once (the campaigns, then the moves under way on them:
        two statements, none where none is a type the ledger may refuse). With ``lock``, the
        campaigns are locked first, until the caller's transaction ends: a move approved
        meanwhile by someone else (who locks them too) is committed before its draws are
        read, and one approved after waits for the caller's to commit, and counts it."""
        refusable = _refusable(proposals)
        if not refusable:
            return cls({})
        return cls.ahead_of(refusable, campaigns_named(refusable, lock=lock))

    @classmethod
    def ahead_of(cls, proposals: Iterable[Proposal], campaigns: Ledger) -> LedgerAhead:
        """For ``proposals`` (saved or not: a submission's, yet to be recorded), whose
        campaigns the caller has read (and locked, for a verdict that counts): the moves
        under way on the figures they draw on, read at once (one statement, none where none
        is a type the ledger may refuse). Read after the campaigns' locks, a move approved by
        someone else who holds them (a person's approval, a submission, an evaluation, a
        retry: each locks them) is committed before it is read."""
        refusable = _refusable(proposals)
        wanted = {
            key
            for proposal in refusable
            for key, _ in [*_drawn_figures(proposal, with_it=False), *_brought_figures(proposal)]
        }
        if not wanted:
            return cls(campaigns)
        fields = {name for _, _, name in wanted}
        drawing = [
            name
            for name in action_types.names()
            if action_types.get(name).ledger_may_refuse
            or fields
            & (action_types.get(name).sets_figures | action_types.get(name).brings_figures)
        ]
        under_way = Proposal.objects.filter(
            account_id__in={account_id for account_id, _, _ in wanted},
            status__in=UNDER_WAY_STATUSES,
            action_type__in=drawing,
        )
        judged = [proposal.pk for proposal in refusable if proposal.pk is not None]
        if judged:
            under_way = under_way.exclude(pk__in=judged)
        draws: dict[DrawnFigure, list[Draw]] = defaultdict(list)
        for other in under_way.only(
            "pk",
            "account_id",
            "action_type",
            "payload",
            "target_snapshot",
            "agent_id",
            "approved_at",
        ).order_by(F("approved_at").asc(nulls_last=True), "pk"):
            for key, draw in [*_drawn_figures(other, with_it=False), *_brought_figures(other)]:
                if key in wanted:
                    draws[key].append(draw._replace(approved_at=other.approved_at))
        return cls(campaigns, dict(draws))

    @classmethod
    def of_moves(
        cls, campaigns: Ledger, moves: Iterable[Proposal], *, run_first: Collection[int] = ()
    ) -> LedgerAhead:
        """``moves`` (approved and not yet run, in the order they were approved) against
        ``campaigns`` (the ledger as it was then): the what-if replay's, whose moves under way
        are read from the proposals' history, not from the proposals as they are now.

        Those of ``run_first`` (the replay's moves only a draft approved) would have run as
        they were approved, before anything changed the figures they set, yet ``campaigns``
        has none of them: what such a move cuts from the figure it was made against is
        taken from the figure as it is, not superseded by a change the history has since
        (a reallocation that ran after it would have taken from what it left)."""
        draws: dict[DrawnFigure, list[Draw]] = defaultdict(list)
        for move in moves:
            for key, draw in _drawn_figures(move, with_it=False):
                if move.pk in run_first and draw.sets and draw.seen is not None:
                    if draw.amount >= draw.seen:
                        continue  # a raise is not counted, as for any move ahead
                    draw = draw._replace(amount=draw.seen - draw.amount, sets=False, seen=None)
                draws[key].append(draw)
        return cls(campaigns, dict(draws))

    def refusal(self, proposal: Proposal, *, agent_id: int | None = None) -> str:
        """Why the ledger would refuse ``proposal`` as proposed when it runs: as it is now, in
        the words its re-assessment records (``ActionType.ledger_refusal``), or once the moves
        counted ahead of it have taken their share (or set the figure), said so ("amount:
        Exceeds display-retarget's daily budget of 100.00 once #8, approved before it, has
        run."); "" if it allows it, or one of its campaigns is gone (its page says so).
        Written for ``agent_id``'s agent, where given: another agent's proposal is not named
        (an agent reads only its own)."""
        action_type = action_types.named(proposal.action_type)
        campaigns = self._touched(proposal)
        if campaigns is None:
            return ""
        refused = action_type.ledger_refusal(proposal.payload, campaigns)
        if refused:
            return refused
        left, ran = self._left_once_run(proposal, campaigns)
        if not ran:
            return ""
        refused = action_type.ledger_refusal(proposal.payload, left)
        if not refused:
            return ""
        ran_all = list(dict.fromkeys(draw for draws in ran.values() for draw in draws))
        once = _once_run(ran_all, agent_id, retried_after=_retried_after(proposal))
        return f"{refused.removesuffix('.')} once {once}."

    def figures_ahead(self, proposal: Proposal) -> list[FigureAhead]:
        """Each figure ``proposal`` draws on or adds to that the moves counted ahead of it
        change before it runs: as it is now, as they leave it, and as ``proposal`` (its
        payload as it stands, edited or not) leaves it after them, or None where its execution
        would refuse it then. What its page says beside what it would change, whose columns
        count from the figures when it was proposed; none where no move ahead changes one, or
        one of its campaigns is gone (its page says so). A figure it draws on is said as its
        execution is judged (``refusal``: what they take, or set lower); one it adds to (a
        reallocation's destination), as they all leave it, in the order they were approved:
        what they take from it, bring to it, or set it to."""
        action_type = action_types.named(proposal.action_type)
        campaigns = self._touched(proposal)
        if campaigns is None:
            return []
        left, ran = self._left_once_run(proposal, campaigns)
        ran.update(self._landed_once_run(proposal, left))
        if not ran:
            return []
        refused = bool(action_type.ledger_refusal(proposal.payload, left))
        after = {} if refused else action_type.proposed_state(proposal.payload, left)
        taken = action_type.drawn_from(proposal.payload)
        retried_after = _retried_after(proposal)
        return [
            FigureAhead(
                campaign=campaign,
                field=name,
                now=getattr(campaigns[campaign], name),
                left=getattr(left[campaign], name),
                once=_once_run(draws, retried_after=retried_after),
                after=after.get(campaign, {}).get(name) if not refused else None,
                takes=taken.get(campaign, {}).get(name),
            )
            for (campaign, name), draws in ran.items()
        ]

    def left_once_run(self, proposal: Proposal) -> tuple[dict[str, Campaign], str] | None:
        """The campaigns ``proposal`` touches (copies) as the moves counted ahead of it leave
        them once they have run, the figures it draws on and those it adds to alike (as
        ``figures_ahead`` says them), with who those moves are, as said of it ("#8, approved
        before its retry, has run": ``_once_run``); None where none changes a figure it
        touches, or one of its campaigns is gone. What a failed move's retry, run after them,
        is re-assessed from (``approvals.services.proposals``' ``_as_retried``): the
        re-assessment itself is the approvals' to make, with their policies, not the
        ledger's."""
        campaigns = self._touched(proposal)
        if campaigns is None:
            return None
        left, ran = self._left_once_run(proposal, campaigns)
        ran.update(self._landed_once_run(proposal, left))
        if not ran:
            return None
        draws = list(dict.fromkeys(draw for draws in ran.values() for draw in draws))
        return left, _once_run(draws, retried_after=_retried_after(proposal))

    def _touched(self, proposal: Proposal) -> dict[str, Campaign] | None:
        """The campaigns ``proposal`` touches, by external id; None if one of them is gone."""
        held = self.campaigns.get(proposal.account_id, {})
        touched = action_types.named(proposal.action_type).campaign_fields(proposal.payload)
        if any(external_id not in held for external_id in touched):
            return None
        return {external_id: held[external_id] for external_id in touched}

    def _left_once_run(
        self, proposal: Proposal, campaigns: dict[str, Campaign]
    ) -> tuple[dict[str, Campaign], dict[tuple[str, str], list[Draw]]]:
        """``campaigns`` (copies) as the moves counted ahead of ``proposal`` leave the figures
        it draws on, and those that change each figure (by campaign and field, in the order
        they run)."""
        left = {external_id: copy.copy(campaign) for external_id, campaign in campaigns.items()}
        ran: dict[tuple[str, str], list[Draw]] = {}
        for (_, campaign, name), _ in _drawn_figures(proposal, with_it=False):
            if campaign not in left:
                continue
            for draw in self.draws.get((proposal.account_id, campaign, name), ()):
                if draw.brings:  # it may run after this one, or fail: not counted on
                    continue
                figure = getattr(left[campaign], name)
                if draw.sets:
                    # A value it was not made against supersedes it; a raise is not counted.
                    runs = draw.seen is None or draw.seen == figure
                    if runs and draw.amount < figure:
                        setattr(left[campaign], name, draw.amount)
                        ran.setdefault((campaign, name), []).append(draw)
                elif draw.amount <= figure:
                    setattr(left[campaign], name, figure - draw.amount)
                    ran.setdefault((campaign, name), []).append(draw)
        return left, ran

    def _landed_once_run(
        self, proposal: Proposal, left: dict[str, Campaign]
    ) -> dict[tuple[str, str], list[Draw]]:
        """Each figure ``proposal`` adds to (``ActionType.brought_to``), set in ``left`` to
        what the moves counted ahead of it leave of it once they have all run, in the order
        they were approved (one taking more than is left then fails and takes nothing; one
        setting it is superseded where the figure is no longer the one it was made against),
        with those that change it (by campaign and field)."""
        ran: dict[tuple[str, str], list[Draw]] = {}
        for (_, campaign, name), _ in _brought_figures(proposal):
            if campaign not in left:
                continue
            for draw in self.draws.get((proposal.account_id, campaign, name), ()):
                figure = getattr(left[campaign], name)
                if draw.brings:
                    landed = figure + draw.amount
                elif draw.sets:
                    runs = draw.seen is None or draw.seen == figure
                    landed = draw.amount if runs else figure
                else:
                    landed = figure - draw.amount if draw.amount <= figure else figure
                if landed != figure:
                    setattr(left[campaign], name, landed)
                    ran.setdefault((campaign, name), []).append(draw)
        return ran

    def numbered(self, ids: dict[int, int]) -> None:
        """The earlier items of a batch being submitted, counted before their proposals had
        ids (``count``'s ``item``), given them (``ids``: by index as sent): a refusal written
        for a person names them by id, one written for their agent by item."""
        for key, draws in self.draws.items():
            self.draws[key] = [
                draw._replace(proposal_id=ids[draw.item])
                if draw.item in ids and draw.proposal_id is None
                else draw
                for draw in draws
            ]

    def runs_after_an_item(self, proposal: Proposal) -> bool:
        """Whether an earlier item of ``proposal``'s batch not numbered yet is among the
        moves counted ahead of it that change a figure it draws on (``numbered``)."""
        campaigns = self._touched(proposal)
        if campaigns is None:
            return False
        _, ran = self._left_once_run(proposal, campaigns)
        return any(
            draw.item is not None and draw.proposal_id is None
            for draws in ran.values()
            for draw in draws
        )

    def count(self, proposal: Proposal, *, item: int | None = None) -> None:
        """``proposal`` approved with those judged after it (a bulk approval's earlier row; or,
        ``item``, an earlier item of a batch being submitted, by its index as sent, approved
        before them): what it takes from a figure, or sets it to, counts for them."""
        for key, draw in _drawn_figures(proposal, with_it=item is None):
            self.draws.setdefault(key, []).append(draw._replace(item=item))


def figures_moved(proposal: Proposal) -> list[DrawnFigure]:
    """The figures ``proposal``, approved and not yet run, changes for the moves the ledger
    may refuse that draw on them (``LedgerAhead`` counts it for them): those it takes from (a
    reallocation, its source's daily budget), and those it sets that such a move draws on (a
    budget change, its campaign's daily budget; not a bid)."""
    drawn = {
        name
        for type_name in action_types.names()
        for name in action_types.get(type_name).draws_figures
    }
    return [
        key
        for key, draw in _drawn_figures(proposal, with_it=False)
        if not draw.sets or key[2] in drawn
    ]


def _refusable(proposals: Iterable[Proposal]) -> list[Proposal]:
    return [
        proposal
        for proposal in proposals
        if action_types.named(proposal.action_type).ledger_may_refuse
    ]


def _brought_figures(proposal: Proposal) -> list[tuple[DrawnFigure, Draw]]:
    """What ``proposal`` adds to campaign figures when it runs (``ActionType.brought_to``),
    each with the figure."""
    return [
        (
            (proposal.account_id, campaign, name),
            Draw(proposal.pk, amount, brings=True, agent_id=proposal.agent_id),
        )
        for campaign, amounts in action_types.named(proposal.action_type)
        .brought_to(proposal.payload)
        .items()
        for name, amount in amounts.items()
    ]


def _retried_after(proposal: Proposal) -> datetime | None:
    """When a failed ``proposal`` was approved to run (last): a retry runs it after the moves
    under way, those approved since too (``_once_run``); None for one not failed. One read
    without its status (``only``: a waiting one a message is redrawn for) is not read again
    for it."""
    if {"status", "approved_at"} & proposal.get_deferred_fields():
        return None
    return proposal.approved_at if proposal.status == ProposalStatus.FAILED else None


def _drawn_figures(proposal: Proposal, *, with_it: bool) -> list[tuple[DrawnFigure, Draw]]:
    """What ``proposal`` takes from campaign figures when it runs, and what it sets them to,
    each with the figure."""
    action_type = action_types.named(proposal.action_type)
    drawn = [
        (
            (proposal.account_id, campaign, name),
            Draw(proposal.pk, amount, with_it, agent_id=proposal.agent_id),
        )
        for campaign, amounts in action_type.drawn_from(proposal.payload).items()
        for name, amount in amounts.items()
    ]
    seen_of = proposal.target_snapshot or {}
    return drawn + [
        (
            (proposal.account_id, campaign, name),
            Draw(
                proposal.pk,
                value,
                with_it,
                sets=True,
                seen=_seen(seen_of, campaign, name),
                agent_id=proposal.agent_id,
            ),
        )
        for campaign, values in action_type.figures_set(proposal.payload).items()
        for name, value in values.items()
    ]


def _seen(snapshot: dict, campaign: str, name: str) -> Decimal | None:
    """A figure as a proposal's snapshot recorded it when it was made; None if it did not."""
    try:
        return Decimal(str(snapshot[campaign][name]))
    except (KeyError, TypeError, ArithmeticError):
        return None


def _once_run(
    ran: Sequence[Draw], agent_id: int | None = None, *, retried_after: datetime | None = None
) -> str:
    """The moves a proposal would run after, as said of it: "#8, approved before it, has
    run", "#7, approved before it, and #9, approved with it, have run"; of a failed proposal
    approved at ``retried_after``, one approved after it as "#9, approved before its retry"
    (a retry runs it after them); written for ``agent_id``'s agent, where given, another
    agent's as "another agent's proposal", and an earlier item of the batch it came in as
    "item 1 of this batch (index 0)" (as its agent sent it), which a person reads by id once
    it has one (``LedgerAhead.numbered``)."""

    def approved(draw: Draw) -> str:
        if draw.with_it:
            return "with it"
        if retried_after is not None and (draw.approved_at or retried_after) > retried_after:
            return "before its retry"
        return "before it"

    said, counted = [], 0
    for when in ("before it", "before its retry", "with it"):
        these = [draw for draw in ran if approved(draw) == when]
        named = list(
            dict.fromkeys(
                f"item {draw.item + 1} of this batch (index {draw.item})"
                if draw.item is not None and (agent_id is not None or draw.proposal_id is None)
                else f"#{draw.proposal_id}"
                for draw in these
                if draw.item is not None or agent_id is None or draw.agent_id == agent_id
            )
        )
        others = len(
            {
                draw.proposal_id
                for draw in these
                if draw.item is None and agent_id is not None and draw.agent_id != agent_id
            }
        )
        if others:
            named.append(
                "another agent's proposal" if others == 1 else f"{others} proposals of other agents"
            )
        if named:
            said.append(f"{and_joined(named)}, approved {when}")
        counted += len(named) - bool(others) + others
    runs = "has" if counted == 1 else "have"
    return f"{', and '.join(said)}, {runs} run"


def refused_once_run(why: str) -> str:
    """Why a move submitted while others approved before it are under way waits for a
    person: once they have run, its execution would refuse it (``LedgerAhead.refusal``'s
    ``why``, in the words its page says it in). Approved at once, its agent would be told
    "approved" of what fails; a person can edit it to what is left, or decide it once they
    have run (or failed)."""
    return f"{EXECUTION_WOULD_REFUSE}{why} It waits for a person, who can edit it."


def no_longer_applies_each(
    proposals: Iterable[Proposal], *, ledger: LedgerAhead | None = None
) -> Gone:
    """What has changed since each of ``proposals`` was proposed that its execution would
    refuse: why it no longer applies (``ActionType.no_longer_applies``: a policy change reads
    the policy in force), and why the ledger refuses it as proposed, as it is or once the
    moves approved before it have run (``LedgerAhead``: the campaigns and those moves read
    once for all, and only where a type a move of the ledger can refuse is among them:
    ``ActionType.ledger_may_refuse``; ``ledger``, if already read). Read once, for
    ``act_refusal``'s and
    ``no_longer_applies``'s ``gone`` where one page, one decision set or one sending asks it
    again (of each act the page offers, for each person a message goes to)."""
    proposals = list(proposals)
    prefetch_related_objects(proposals, "account")  # those whose account is not read yet
    typed = [(proposal, action_types.named(proposal.action_type)) for proposal in proposals]
    of_type: dict[str, tuple[ActionType, list[Proposal]]] = {}
    for proposal, action_type in typed:
        of_type.setdefault(proposal.action_type, (action_type, []))[1].append(proposal)
    # Each type asked once for all its proposals: a policy change reads the agents and the
    # policies in force once, whatever their number (``ActionType.no_longer_applies_each``).
    why: dict[int, str] = {}
    for action_type, theirs in of_type.values():
        said = action_type.no_longer_applies_each(
            [(proposal.payload, proposal.account) for proposal in theirs]
        )
        why.update(zip((proposal.pk for proposal in theirs), said, strict=True))
    if ledger is None:
        ledger = LedgerAhead.read(proposals)
    return {
        proposal.pk: SinceProposed.of(
            proposal,
            no_longer_applies=why[proposal.pk],
            refused_as_proposed=(ledger.refusal(proposal) if action_type.ledger_may_refuse else ""),
        )
        for proposal, action_type in typed
    }


def no_longer_applies(
    proposal: Proposal, act: Act, *, gone: Gone | None = None
) -> NoLongerApplies | None:
    """Why letting ``proposal`` run by ``act`` (approving, retrying, editing) would not carry
    it out: what it would change has changed since it was proposed; None if it still applies.
    Said on its page to whoever reads it, not only to one who may act. An edit is judged as
    edited, against the ledger (``ActionType.check``): only what it cannot mend refuses it.
    ``gone``: ``no_longer_applies_each``, if already read."""
    if gone is None or proposal.pk not in gone:
        gone = no_longer_applies_each([proposal])
    since = gone[proposal.pk]
    if since.no_longer_applies:
        if act == Act.RETRY:
            then = RETRY_WOULD_FAIL_AGAIN
        else:
            then = (
                "Approving it would not carry it out: its execution would refuse it. It can be "
                "rejected or withdrawn."
            )
        return NoLongerApplies(f"Proposal #{proposal.pk} {since.said()} {then}")
    if act == Act.EDIT or not since.refused_as_proposed:
        return None
    if act == Act.RETRY:
        then = RETRY_WOULD_FAIL_AGAIN
    else:
        then = (
            "Approving it would not carry it out: its execution would refuse it. It can be "
            "edited, rejected or withdrawn."
        )
    return NoLongerApplies(f"Proposal #{proposal.pk} {since.said()} {then}")


def _owned_agent(user: AbstractBaseUser, proposal: Proposal) -> DomainError | None:
    if proposal.agent.owner_id == user.pk:
        return OwnsAgent(
            f"{user.get_username()} owns agent {proposal.agent}, which proposed "
            f"proposal #{proposal.pk}; someone else must decide."
        )
    concerned = action_types.named(proposal.action_type).agents_concerned(proposal.payload)
    owned = concerned and Agent.objects.filter(name__in=concerned, owner=user).first()
    if owned:
        return OwnsAgent(
            f"{user.get_username()} owns agent {owned}, which proposal #{proposal.pk} "
            "concerns; someone else must decide."
        )
    return None


def permission_refusal(user: AbstractBaseUser, proposal: Proposal) -> LacksPermission | None:
    """Why ``user``'s role does not act on ``proposal`` at all (``act_refusal``'s first
    question, and its only ``LacksPermission``), or None if it does."""
    if not user.has_perm(READ_PERMISSION):
        return LacksPermission(f"{user.get_username()} may not see proposals in the console.")
    action_type = action_types.named(proposal.action_type)
    if not user.has_perm(action_type.decide_permission):
        return LacksPermission(
            f"{user.get_username()} may not decide on {action_type.label} proposals."
        )
    return None


def act_refusal(
    user: AbstractBaseUser,
    proposal: Proposal,
    act: Act,
    *,
    reviewers: Iterable[int] | None = None,
    now: datetime | None = None,
    agent_accounts: AgentAccounts | None = None,
    gone: Gone | None = None,
) -> DomainError | None:
    """Why ``user`` may not ``act`` on ``proposal`` now, or None if they may. ``reviewers``:
    who has decided the proposal in its current round, ``agent_accounts``, which agents
    may act on which accounts (``agent_accounts_of``), and ``gone``, why it no longer applies
    or the ledger refuses it as proposed (``no_longer_applies_each``), if already read: asked
    for many proposals or people, each is read once for all."""
    rule = _RULES[act]
    lacking = permission_refusal(user, proposal)
    if lacking:
        return lacking
    if not rule.owners_may:
        owned = _owned_agent(user, proposal)
        if owned:
            return owned
    if proposal.status != rule.from_status:
        if rule.to_status is None:
            return Conflict(
                f"Proposal #{proposal.pk} is {proposal.get_status_display().lower()}; it can "
                f"be {rule.done} once it is {ProposalStatus(rule.from_status).label.lower()}."
            )
        return InvalidTransition(proposal, rule.to_status)
    if rule.within_review_window and review_window_closed(proposal, now or timezone.now()):
        return ReviewWindowClosed(proposal, rule.done)
    if rule.runs_it:
        refused = run_refusal(proposal, act, agent_accounts=agent_accounts, gone=gone)
        if refused:
            return refused
    if rule.once_a_round:
        if reviewers is None:
            reviewers = reviewers_this_round(proposal)
        if user.pk in reviewers:
            # Said to the person refused (on the page, on Slack), as "you".
            return NotAllowed(
                f"You have already decided on proposal #{proposal.pk}: nobody decides a "
                "proposal twice."
            )
    return None


def run_refusal(
    proposal: Proposal,
    act: Act,
    *,
    agent_accounts: AgentAccounts | None = None,
    gone: Gone | None = None,
) -> DomainError | None:
    """Why letting ``proposal`` run by ``act`` (approving, editing, retrying) is refused now
    whoever would do it, or None: its agent may no longer act (``agent_stopped``), or what it
    would change has changed since it was proposed (``no_longer_applies``). ``act_refusal``
    asks it after whether the person may act; a message telling of a failure asks it alone,
    for every reader (``approvals.services.decisions.retry_refused_now``)."""
    stopped = _agent_may_no_longer_act(proposal, agent_accounts, act)
    if stopped:
        return stopped
    return no_longer_applies(proposal, act, gone=gone)


def check_may_act(user: AbstractBaseUser, proposal: Proposal, act: Act) -> None:
    """Raise why ``user`` may not ``act`` on ``proposal`` now, if they may not."""
    refusal = act_refusal(user, proposal, act)
    if refusal is not None:
        raise refusal


def may_act(
    user: AbstractBaseUser,
    proposal: Proposal,
    act: Act,
    *,
    reviewers: Iterable[int] | None = None,
    gone: Gone | None = None,
) -> bool:
    """Whether ``user`` may ``act`` on ``proposal`` now (``reviewers``: who decided it in its
    current round, and ``gone``, ``no_longer_applies_each`` of it, if already read)."""
    return act_refusal(user, proposal, act, reviewers=reviewers, gone=gone) is None
