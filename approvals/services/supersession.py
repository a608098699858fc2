"""Never act on a meaning the agent did not propose.

A proposal that sets a value (a bid, a budget, a status, a strategy field) was made against
the value its target had then (``target_snapshot``). Once another change lands on that target
first, the proposal's premise is gone: it ends ``superseded``, never executes, and its agent is
told the value it saw and the value now, so it can propose again. This happens to a waiting or
approved proposal as soon as the change lands (``proposals_supersede_after_changes``), and, as a
last check, to any proposal a person is about to approve or the executor is about to carry out.

A proposal that moves an amount (a reallocation) keeps its meaning when its campaigns' budgets
move: a waiting one is re-assessed as the change lands, so its page reads the figures it would
run on, and the executor re-assesses it again before it runs
(``executors.runner``). So does one whose figures are read from a field it does not set (a
status change names the daily budget it starts or stops, ``figures_read_from``): only a move
of a field it sets supersedes it.

And a person is not asked to approve what would only be superseded: approving a proposal that
sets a value another approved, about-to-run proposal changes first is refused
(``approved_ahead_each``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from approvals import action_types
from approvals.models import Execution, ExecutionStatus, Proposal, ProposalStatus
from approvals.selectors import UnsureAttempts, unsure_attempts_each
from approvals.services.acts import campaigns_named, refused_when_routed
from approvals.services.hooks import proposals_reassessed, proposals_superseded
from approvals.services.lifecycle import (
    Move,
    counted_moves_update,
    counted_state,
    proposals_move_through,
)
from approvals.services.proposals import (
    REASSESSED_AFTER,
    REASSESSED_NO_LONGER_APPLIES,
    REASSESSED_NOT_APPLIED,
    REASSESSED_NOW,
    SUPERSEDED,
    AssessedAction,
    FieldKey,
    approvals_routed_with,
    assessed_from_ledger,
    campaign_fields_changed,
    campaigns_for,
    changed_first,
    ledger_value,
    ledger_value_recorded,
    reasons_after,
    refreshed_facts,
    verdict_for,
)
from audit.actors import Actor
from audit.history import update_alike_with_history, update_with_history
from hitlproject.celery import app
from hitlproject.errors import Conflict, InvalidInput
from hitlproject.queueing import after_commit
from hitlproject.vocabulary import SUPERSEDABLE_STATUSES
from ledger.models import Campaign, campaign_field_label, campaign_value_label
from policies.engine import Verdict
from policies.services import EvaluationContext


@dataclass(frozen=True)
class TargetMove:
    """A ledger field a proposal was made against, with the value it saw and the value now."""

    campaign: str
    field: str
    saw: str | None  # None: nothing was set
    now: str | None

    def __str__(self) -> str:
        return (
            f"{self.campaign}'s {campaign_field_label(self.field)} is "
            f"{campaign_value_label(self.field, self.now)}, "
            f"was {campaign_value_label(self.field, self.saw)}"
        )

    @property
    def went(self) -> str:
        """The move, in words that stay true once the field moves again."""
        return (
            f"{self.campaign}'s {campaign_field_label(self.field)} went from "
            f"{campaign_value_label(self.field, self.saw)} to "
            f"{campaign_value_label(self.field, self.now)}"
        )


def target_moves(
    expected: Mapping[str, Mapping[str, str | None]],
    current: Mapping[str, Mapping[str, str | None]],
) -> list[TargetMove]:
    """The fields of ``expected`` (a proposal's snapshot) whose value differs in ``current``
    (as ``ledger_value`` gives them; a campaign gone: "—")."""
    moves = []
    for campaign, fields in expected.items():
        for field, saw in fields.items():
            saw = ledger_value_recorded(saw)
            now = ledger_value_recorded(current.get(campaign, {}).get(field, "—"))
            if now != saw:
                moves.append(TargetMove(campaign, field, saw, now))
    return moves


def sets_values(proposal: Proposal) -> bool:
    return action_types.named(proposal.action_type).sets_values


def moves_on_what_it_sets(proposal: Proposal, moves: Iterable[TargetMove]) -> list[TargetMove]:
    """Of ``moves`` on a proposal's snapshot, those on fields it sets: the ones that end
    its premise, if it sets values (a move of a field its figures are only read from
    re-assesses it instead)."""
    sets = action_types.named(proposal.action_type).campaign_fields(proposal.payload)
    return [move for move in moves if move.field in sets.get(move.campaign, ())]


def proposals_its_execution_would_end(
    proposal: Proposal,
) -> list[tuple[Proposal, list[TargetMove]]]:
    """The other waiting or approved proposals that ``proposal``'s execution, as it stands,
    would supersede (``proposals_supersede_after_changes``'s rule), each with the moves that
    would end it: for a person about to approve it, who may not know that someone else's
    proposal, approvals already given and all, ends with it. The ledger's values after it
    are worked out in memory, as the execution records them."""
    action_type = action_types.named(proposal.action_type)
    campaigns = campaigns_for(
        account=proposal.account, action_type=action_type, payload=proposal.payload
    )
    if set(action_type.campaign_fields(proposal.payload)) - set(campaigns):
        return []  # a campaign gone: it would not execute as it is, and ends nothing
    try:
        proposed = action_type.proposed_state(proposal.payload, campaigns)
    except (KeyError, InvalidInput):  # a payload the ledger no longer allows
        return []
    changed = {}
    for external_id, values in proposed.items():
        campaign = campaigns[external_id]
        for name, value in values.items():
            setattr(campaign, name, value)
        if values:
            changed[external_id] = {name: ledger_value(getattr(campaign, name)) for name in values}
    if not changed:
        return []  # it sets no campaign field (creatives added)
    ended = []
    for other in (
        Proposal.objects.filter(
            account_id=proposal.account_id,
            status__in=SUPERSEDABLE_STATUSES,
            target_snapshot__has_any_keys=list(changed),
        )
        .exclude(pk=proposal.pk)
        .select_related("agent")
        .order_by("pk")
    ):
        if not sets_values(other):
            continue
        moves = target_moves(_seen_of_changed(other.target_snapshot, changed), changed)
        moves = moves_on_what_it_sets(other, moves)
        if moves:
            ended.append((other, moves))
    return ended


def _seen_of_changed(
    snapshot: Mapping[str, Mapping[str, str | None]], changed: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, str | None]]:
    """Of a proposal's snapshot, the values it saw of the fields ``changed`` changes."""
    return {
        campaign: {
            name: value for name, value in fields.items() if name in changed.get(campaign, {})
        }
        for campaign, fields in snapshot.items()
    }


def target_moves_each(
    proposals: Iterable[Proposal], *, ledger: Mapping[tuple[int, str], Campaign] | None = None
) -> dict[int, list[TargetMove]]:
    """``target_moves`` against the ledger now, for many proposals at once (one read of the
    campaigns they were made against), by proposal id; only proposals whose targets moved (a
    field they set: ``moves_on_what_it_sets``). ``ledger``: those campaigns as just read, by
    (account id, external id) (``CampaignsNow.ledger``), not read again."""
    proposals = [proposal for proposal in proposals if proposal.target_snapshot]
    if ledger is None:
        wanted = Q(pk__in=[])
        by_account: dict[int, set[str]] = defaultdict(set)
        for proposal in proposals:
            by_account[proposal.account_id] |= set(proposal.target_snapshot)
        for account_id, external_ids in by_account.items():
            wanted |= Q(account_id=account_id, external_id__in=external_ids)
        ledger = {
            (campaign.account_id, campaign.external_id): campaign
            for campaign in Campaign.objects.filter(wanted)
        }
    moved = {}
    for proposal in proposals:
        current = {
            external_id: {
                field: ledger_value(getattr(ledger[(proposal.account_id, external_id)], field))
                for field in fields
            }
            for external_id, fields in proposal.target_snapshot.items()
            if (proposal.account_id, external_id) in ledger
        }
        moves = moves_on_what_it_sets(proposal, target_moves(proposal.target_snapshot, current))
        if moves:
            moved[proposal.pk] = moves
    return moved


def _fields(proposal: Proposal) -> set[FieldKey]:
    """The campaign fields a proposal changes, as (account, campaign, field)."""
    return campaign_fields_changed(
        account_id=proposal.account_id,
        action_type=action_types.named(proposal.action_type),
        payload=proposal.payload,
    )


def approved_ahead_each(proposals: Iterable[Proposal], *, lock: bool) -> dict[int, Conflict]:
    """Of proposals that set values, about to be approved: those a proposal already approved
    (or executing) changes a field of first. Approving them would tell their agents
    "approved" for what will be superseded once the other one runs; they are held back
    instead, by proposal id, with why. With ``lock``, the campaigns they touch are locked
    until the caller's transaction ends (in id order, after the proposals, as everywhere), so
    two people approving conflicting proposals at once are taken one after the other."""
    proposals = list(proposals)
    fields = {proposal.pk: _fields(proposal) for proposal in proposals}
    setting = [proposal for proposal in proposals if sets_values(proposal)]
    # Every one's campaigns locked, not only the setting ones': a submission setting a value
    # a reallocation approved here changes first waits for this approval to commit, and sees
    # it (``changed_first``).
    touched: dict[int, set[str]] = defaultdict(set)
    for account_id, campaign, _ in set().union(*fields.values()):
        touched[account_id].add(campaign)
    if not touched:
        return {}
    if lock:
        wanted = Q(pk__in=[])
        for account_id, campaigns in touched.items():
            wanted |= Q(account_id=account_id, external_id__in=campaigns)
        list(Campaign.objects.select_for_update().filter(wanted).order_by("pk").values("pk"))
    if not setting:
        return {}
    changed_by = changed_first(
        set().union(*(fields[proposal.pk] for proposal in setting)), besides=fields
    )
    held = {}
    for proposal in setting:
        clash = next((key for key in sorted(fields[proposal.pk]) if key in changed_by), None)
        if clash is not None:
            other, words = changed_by[clash].pk, f"{clash[1]}'s {campaign_field_label(clash[2])}"
            held[proposal.pk] = Conflict(
                f"Proposal #{proposal.pk} was not approved: #{other}, approved and about to "
                f"execute, changes {words} first: this one is superseded once that one "
                "executes (if that one does not run, this one can be decided then)."
            )
    return held


@dataclass(frozen=True)
class Overtaken:
    """A proposal (locked by the caller's transaction) whose targets moved since it was
    made: what moved, and what moved it."""

    proposal: Proposal
    moves: list[TargetMove]
    cause: str = ""
    # The proposal whose execution moved them, where one did (``Proposal.superseded_by``).
    by: int | None = None
    # Its attempts sent before that got no sure answer (a 503, a timeout), where any did:
    # they may have reached the channel (``unsure_attempts_each``).
    unsure: UnsureAttempts | None = None

    @property
    def moved(self) -> str:
        return "; ".join(str(move) for move in self.moves)

    @property
    def superseded_reason(self) -> str:
        cause = f" ({self.cause})" if self.cause else ""
        ended = "It was not executed" + (f": {self.unsure.said}" if self.unsure else "")
        return f"{SUPERSEDED} {self.moved}{cause}. {ended}."

    @property
    def reassessed_note(self) -> str:
        """Said of a waiting proposal re-assessed after the moves, here and in its history, in
        words that stay true once it is re-assessed again (``reassessment_note``)."""
        went = "; ".join(move.went for move in self.moves)
        return f"{REASSESSED_AFTER}{self.cause}: {went}."


def changed_it_first(proposal: Proposal) -> str:
    """What a proposal whose execution moved another's target is told of it, where it is
    its own agent's (``_causes_told``): "#13 changed it first: bid of hk-one …"."""
    return f"#{proposal.pk} changed it first: {proposal.summary}"


# Executions read, newest first, for the one that set a moved field (``moved_by``): the
# field's last setter is among the account's last few successes on its campaign.
SETTERS_READ = 50


def moved_by(proposal: Proposal, moves: Sequence[TargetMove]) -> Proposal | None:
    """The proposal whose execution, since ``proposal`` was made, set a field of ``moves`` to
    the value it has now, as the executions record it (the field's last setter set that
    value); None where none did (the value moved on the channel, or in the console)."""
    for move in moves:
        setters = (
            Execution.objects.filter(
                proposal__account_id=proposal.account_id,
                status=ExecutionStatus.SUCCEEDED,
                finished_at__gte=proposal.created_at,
                after_state__has_key=move.campaign,
            )
            .exclude(proposal_id=proposal.pk)
            .select_related("proposal")
            .order_by("-finished_at", "-pk")
        )
        for execution in setters[:SETTERS_READ]:
            values = execution.after_state.get(move.campaign, {})
            if move.field not in values:
                continue
            if ledger_value_recorded(values[move.field]) == move.now:
                return execution.proposal
            break  # its last setter set another value: moved since by another hand
    return None


def overtaken_found(proposal: Proposal, moves: list[TargetMove], *, found: str) -> Overtaken:
    """A proposal (locked) found, as a person acts on it (``found``: "found when a reviewer
    approved it"), made against values that have moved since: with the proposal whose
    execution moved them, where one did, named as a change landing names it
    (``proposals_supersede_after_changes``: to its own agent only, ``_causes_told``)."""
    by = moved_by(proposal, moves)
    told = _causes_told(proposal, [(changed_it_first(by), by.agent_id)]) if by else ""
    cause = "; ".join(filter(None, [told, found]))
    unsure = unsure_attempts_each([proposal.pk]).get(proposal.pk)
    return Overtaken(proposal, moves, cause, by.pk if by is not None else None, unsure)


def proposals_supersede(*, supersessions: Sequence[Overtaken], actor: Actor) -> list[Proposal]:
    """End proposals whose premise is gone, written together (the lifecycle's set-based
    move). Their agents are told by ``supersessions_tell_agents``, which the caller calls
    last in its transaction: writing feedback queues every other feedback writer until the
    transaction ends."""
    by_reason: dict[str, list[Proposal]] = defaultdict(list)
    for supersession in supersessions:
        proposal = supersession.proposal
        proposal.verdict_reasons = reasons_after(
            supersession.superseded_reason, proposal.verdict_reasons
        )
        proposal.superseded_by_id = supersession.by
        by_reason[supersession.superseded_reason].append(proposal)
    now = timezone.now()
    for reason, proposals in by_reason.items():
        proposals_move_through(
            proposals=proposals,
            moves=[Move(ProposalStatus.SUPERSEDED, reason, now)],
            actor=actor,
            also_write=("verdict_reasons", "superseded_by_id"),
        )
    return [supersession.proposal for supersession in supersessions]


def supersessions_tell_agents(*, supersessions: Sequence[Overtaken], actor: Actor) -> None:
    """Each superseded proposal's agent learns the value it saw and the value now: last in
    the transaction (see ``proposals_supersede``)."""

    proposals_superseded(
        superseded=[(s.proposal, s.moves, s.superseded_reason) for s in supersessions], actor=actor
    )


def proposal_supersede(
    *, proposal: Proposal, moves: list[TargetMove], actor: Actor, cause: str = ""
) -> Proposal:
    """End one proposal whose premise is gone, and tell its agent what moved, as the last
    thing its caller's transaction writes. The caller holds the proposal's row lock."""
    unsure = unsure_attempts_each([proposal.pk]).get(proposal.pk)
    supersessions = [Overtaken(proposal, moves, cause, unsure=unsure)]
    (superseded,) = proposals_supersede(supersessions=supersessions, actor=actor)
    supersessions_tell_agents(supersessions=supersessions, actor=actor)
    return superseded


# The task that looks again at the proposals a landed change skipped, locked by someone else
# at that instant (``approvals.tasks``, which imports this module), sent by its name, a
# second later: by then a person deciding one, or a message being recorded about it, is done.
SUPERSEDE_SKIPPED = "approvals.supersede_skipped_after_changes"
SKIPPED_LOOKED_AT_AGAIN_AFTER = 1.0


def proposals_supersede_after_changes(
    *,
    account_id: int,
    changes: Sequence[tuple],
    actor: Actor,
    only: Collection[int] | None = None,
) -> list[Proposal]:
    """After changes landed on an account's campaigns (``changes``: each the new values, by
    campaign external id and field, with its cause, which a proposal it ends is told, and,
    where an agent's proposal made it, that agent's id, so that another agent's proposal is
    told the change without its id or what it was (``_causes_told``), and that proposal's id,
    which the console names (``Proposal.superseded_by``); two
    changes landed together touch distinct campaigns), supersede every waiting or approved
    proposal that sets one of those fields and was made against another value, so that the
    queue never holds a proposal whose premise is gone; and re-assess every waiting one that
    moves an amount on them, or whose figures are read from them (``figures_read_from``), so
    that its page reads the figures it would run on. Runs in the
    transaction that wrote the changes, which holds the changed campaigns' locks: so all of
    it is done as a set, a few statements (one more for each ``CAMPAIGNS_AT_ONCE`` campaigns
    changed or ``PROPOSALS_AT_ONCE`` proposals made against them), and the
    superseded proposals' feedback is written last (see ``proposals_supersede``).

    A proposal locked by someone else right now (a person deciding it, the executor taking
    it, the outbox recording a message about it) is skipped rather than waited for, so this
    never deadlocks with them; the check a person's approval and the executor make before
    acting supersedes it then, and, in case neither comes, it is looked at again a second
    after the commit, by the same changes (``only`` those skipped: they were made before
    them)."""
    changed, causes, made_by = {}, {}, {}
    for change, cause, *by in changes:
        by_agent, by_proposal = (*by, None, None)[:2]
        for campaign, fields in change.items():
            if fields:
                changed[campaign] = fields
                causes[campaign] = (cause, by_agent)
                made_by[campaign] = by_proposal
    if not changed:
        return []  # it changed no campaign field (creatives added, a policy changed)
    supersedable = Proposal.objects.filter(account_id=account_id, status__in=SUPERSEDABLE_STATUSES)
    if only is not None:
        supersedable = supersedable.filter(pk__in=only)
    matched = _made_against_any_of(supersedable, sorted(changed))
    ids = sorted(matched)
    candidates = [
        proposal
        for start in range(0, len(ids), PROPOSALS_AT_ONCE)
        for proposal in supersedable.filter(pk__in=ids[start : start + PROPOSALS_AT_ONCE])
        .select_related("agent", "account")
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("pk")
    ]
    skipped = matched - {proposal.pk for proposal in candidates}
    if skipped:
        after_commit(_look_again_later, account_id, changes, actor.name, sorted(skipped))
    supersessions, waiting = [], []
    for proposal in candidates:
        moves = target_moves(_seen_of_changed(proposal.target_snapshot, changed), changed)
        if not moves:
            continue
        cause = _causes_told(proposal, [causes[move.campaign] for move in moves])
        ending = moves_on_what_it_sets(proposal, moves) if sets_values(proposal) else []
        if ending:
            cause = _causes_told(proposal, [causes[move.campaign] for move in ending])
            by = next((made_by[m.campaign] for m in ending if made_by[m.campaign]), None)
            supersessions.append(Overtaken(proposal, ending, cause, by))
        elif proposal.status == ProposalStatus.PENDING_REVIEW:
            waiting.append(Overtaken(proposal, moves, cause))
    # One held back by a kill switch after an attempt may have had it reach the channel.
    unsure = unsure_attempts_each(s.proposal.pk for s in supersessions)
    supersessions = [replace(s, unsure=unsure.get(s.proposal.pk)) for s in supersessions]
    proposals_reassess_waiting(waiting=waiting, actor=actor)
    superseded = proposals_supersede(supersessions=supersessions, actor=actor)
    supersessions_tell_agents(supersessions=supersessions, actor=actor)
    return superseded


# Campaigns asked about in one statement: SQLite writes "has any of these keys" as one test
# per key joined by OR, and refuses a tree of them deeper than 1,000 ("Expression tree is
# too large"), which a set of 1,500 executions landing together reached.
# How many campaigns, or proposals, one statement asks about: SQLite refuses an expression of
# more than 1,000 terms, and either database a statement of more than 32,766 (SQLite) or
# 65,535 (PostgreSQL) parameters.
CAMPAIGNS_AT_ONCE = 500
PROPOSALS_AT_ONCE = 10_000


def _made_against_any_of(proposals: QuerySet[Proposal], campaigns: Sequence[str]) -> set[int]:
    """The ids of ``proposals`` whose snapshot names any of ``campaigns``, asked about
    ``CAMPAIGNS_AT_ONCE`` at a time, so a statement's size never grows with the changes."""
    return {
        pk
        for start in range(0, len(campaigns), CAMPAIGNS_AT_ONCE)
        for pk in proposals.filter(
            target_snapshot__has_any_keys=campaigns[start : start + CAMPAIGNS_AT_ONCE]
        ).values_list("pk", flat=True)
    }


# What a proposal is told of a change another agent's proposal made first: an agent sees only
# its own proposals (their ids and what they did are not for another), as its cumulative
# figures count another agent's moves without naming them.
ANOTHER_AGENTS_CHANGE = "another agent's proposal changed it first"


def _causes_told(proposal: Proposal, causes: Sequence[tuple[str, int | None]]) -> str:
    """The causes of the moves a proposal is told of (each with the agent whose proposal
    made it, if one did), in words it may read: another agent's proposal is not named."""
    told = (
        cause if by_agent in (None, proposal.agent_id) else ANOTHER_AGENTS_CHANGE
        for cause, by_agent in causes
    )
    return "; ".join(dict.fromkeys(told))


def _look_again_later(account_id: int, changes, process: str, proposal_ids: list[int]) -> None:
    app.send_task(
        SUPERSEDE_SKIPPED,
        (account_id, changes, process, proposal_ids),
        countdown=SKIPPED_LOOKED_AT_AGAIN_AFTER,
    )


def proposals_supersede_skipped(
    *,
    account_id: int,
    changes: Sequence[tuple],
    process: str,
    proposal_ids: Collection[int],
) -> list[Proposal]:
    """Look again at the proposals a landed change skipped (see
    ``proposals_supersede_after_changes``), in a transaction of their own, as that system
    process; those still locked are looked at again a second later."""
    with transaction.atomic():
        return proposals_supersede_after_changes(
            account_id=account_id, changes=changes, actor=Actor.system(process), only=proposal_ids
        )


def proposals_reassess_waiting(*, waiting: Sequence[Overtaken], actor: Actor) -> None:
    """Waiting proposals that move an amount on campaigns that moved, or whose figures are
    read from fields that moved (each with its moves
    and their cause; locked by the caller): their figures, risk and reasons follow the ledger
    now (their routing stays as decided: a person was asked, and is asked still), so the
    person deciding reads what approving one would do. As a set: the campaigns and what the
    engine needs are read once, each proposal is assessed and evaluated in memory by the
    same code as alone, and all are written with their history in a few statements.

    A change lands on a busy campaign with hundreds waiting on it, mostly alike (an agent's
    batch of the same move): what the re-assessment works out from what a proposal proposes
    (its assessment and verdict, ``_proposing``) is worked out once for all that propose the
    same, and what it writes (``_outcome``: that, its note and the reasons it had) once for
    all that end alike, written in one statement with their records
    (``update_alike_with_history``). Each ends with what it would alone."""
    if not waiting:
        return
    campaigns = campaigns_named(overtaken.proposal for overtaken in waiting)
    # Each proposal's assessment, or why the ledger now refuses it (``ledger_refusal``).
    checked: dict[tuple, AssessedAction | str] = {}
    for overtaken in waiting:
        proposal = overtaken.proposal
        proposing = _proposing(proposal)
        if proposing in checked:
            continue
        action_type = action_types.named(proposal.action_type)
        ledger = campaigns[proposal.account_id]
        theirs = {
            id_: ledger[id_]
            for id_ in action_type.campaign_fields(proposal.payload)
            if id_ in ledger
        }
        refused = action_type.ledger_refusal(proposal.payload, theirs)
        if refused:
            checked[proposing] = refused
            continue
        checked[proposing] = assessed_from_ledger(
            action_type=action_type,
            account=proposal.account,
            payload=proposal.payload,
            campaigns=theirs,
        )
    assessed_ok = [item for item in checked.values() if not isinstance(item, str)]
    context = EvaluationContext.read(
        agents={overtaken.proposal.agent for overtaken in waiting},
        accounts={assessed.account for assessed in assessed_ok},
        action_types={assessed.action_type.name for assessed in assessed_ok},
        targets={
            (assessed.account.pk, target) for assessed in assessed_ok for target in assessed.effects
        },
    )
    now = timezone.now()
    routed_with = approvals_routed_with(overtaken.proposal for overtaken in waiting)
    verdicts: dict[tuple, Verdict] = {}
    # Each outcome's changes, and the proposals that end with them (in the order given).
    outcomes: dict[tuple, tuple[dict[str, Any], list[Proposal]]] = {}
    written = []
    for overtaken in waiting:
        proposal, note = overtaken.proposal, overtaken.reassessed_note
        proposing = _proposing(proposal)
        assessed = checked[proposing]
        # The approvals it was routed needing are read too: whether "It now needs" is said.
        outcome = (
            proposing,
            note,
            *_outcome_read(proposal),
            routed_with.get(proposal.pk),
            refused_when_routed(proposal),  # whether it "cannot", or "can no longer", be applied
        )
        if outcome not in outcomes:
            if isinstance(assessed, str):
                # Its verdict stays (nothing was evaluated), under what happened to it.
                # "cannot", where its routing found so already; else "can no longer".
                then = (
                    REASSESSED_NOT_APPLIED
                    if refused_when_routed(proposal)
                    else REASSESSED_NO_LONGER_APPLIES
                )
                reasons = reasons_after(
                    f"{note}{then}{assessed}",
                    proposal.verdict_reasons,
                    reassessed=True,
                )
                changes = {"verdict_reasons": reasons}
            else:
                if proposing not in verdicts:
                    verdicts[proposing], _ = verdict_for(
                        assessed=assessed,
                        agent=proposal.agent,
                        proposal_id=proposal.pk,
                        context=context,
                    )
                changes = refreshed_facts(
                    proposal,
                    assessed,
                    verdicts[proposing],
                    f"{note}{REASSESSED_NOW}{assessed.assessment.summary}.",
                    routed_with,
                )
            changes["updated_at"] = now
            outcomes[outcome] = (changes, [])
        changes, alike = outcomes[outcome]
        counted_before = counted_state(proposal)
        # The same values set on each that ends alike: nothing changes them in place.
        for name, value in changes.items():
            setattr(proposal, name, value)
        proposal._change_reason = note
        alike.append(proposal)
        written.append((proposal, counted_before))
    # Those that end alike in one statement each; those whose outcome is theirs alone together.
    alone = []
    for changes, alike in outcomes.values():
        if len(alike) > 1:
            update_alike_with_history(Proposal, alike, list(changes), actor=actor, date=now)
        else:
            alone += [(proposal, changes) for proposal in alike]
    update_with_history(Proposal, alone, actor=actor)
    counted_moves_update(written)
    proposals_reassessed(proposals=[proposal for proposal, _ in written], actor=actor)


def _proposing(proposal: Proposal) -> tuple:
    """All that a waiting proposal's assessment and verdict read of it: who proposes what,
    on which account (the campaigns and the rest the engine reads are the same for all)."""
    payload = json.dumps(proposal.payload, sort_keys=True, cls=DjangoJSONEncoder)
    return (proposal.account_id, proposal.agent_id, proposal.action_type, payload)


def _outcome_read(proposal: Proposal) -> tuple:
    """What else its re-assessment's outcome reads of it (``refreshed_facts``, beside its
    note): the reasons it had and the approvals asked of it, and by which policy version."""
    return (
        tuple(proposal.verdict_reasons or ()),
        proposal.required_approvals,
        proposal.verdict_policy_version,
    )
