"""Carrying out approved proposals, exactly once.

The built-in ledger executor commits the ledger effect, the execution record and the status
change in one transaction, under locks on the proposal, its agent (shared, so that nobody
stops the agent while its action runs, and one stopped while this waited for the proposal is
read as stopped), its account and then its campaigns (always in that order, campaigns by
id), so a redelivered task finds the proposal executed and does nothing, and two actions on
one account are checked against its total budget cap one after the other, each counting the
other's change.
Proposals sent together (a batch's approved items) that need nothing but doing are carried
out together, in one such transaction, each checked as it would be alone and its moves,
attempt and ledger change recorded as they would be, in a few statements for the whole set;
one that needs more (held back, superseded, re-assessed, refused) is carried out alone.

A channel executor (the webhook's, Google Ads'; chosen by ``executors.registry``) cannot
hold a transaction open across the channel's request. One runner does everything around it
for all of them (``_execute_on_channel``): it commits ``executing`` with the round's request
frozen by the executor (``executors.models.ExecutionRound``), has the executor send it, then
records the attempt (and, once carried out, the action in the ledger) in a second
transaction. A crash in between leaves the proposal executing, and the stall sweep sends it
again once the round's lease has run out: the same request, with the same key.
"""

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from itertools import chain, groupby, islice
from operator import itemgetter

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import OperationalError, connection, transaction
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    Exists,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from approvals import action_types
from approvals.models import (
    Execution,
    ExecutionStatus,
    Proposal,
    ProposalStatus,
    VerdictOutcome,
)
from approvals.selectors import LastRound, approved_to_run_said
from approvals.services.acts import AgentAccounts, agent_accounts_of, agent_stopped, agents_hold
from approvals.services.hooks import (
    executions_carried_out,
    executions_failed,
    proposals_sent_back,
)
from approvals.services.lifecycle import (
    Move,
    counted_moves_update,
    counted_state,
    proposal_lock,
    proposal_transition,
    proposals_move_through,
    proposals_transition,
)
from approvals.services.proposals import (
    REASSESSED_BEFORE_EXECUTING,
    REASSESSED_NOW,
    REASSESSED_WOULD_BE_BLOCKED,
    assessed_from_ledger,
    campaigns_for,
    guardrail_blocks,
    hard_ceilings_lowered_since,
    held_back_after_attempts,
    held_back_reason,
    ledger_snapshot,
    re_routed_reason,
    reasons_after,
    verdict_changes,
    verdict_for,
    verdict_policy_held,
)
from approvals.services.supersession import (
    TargetMove,
    changed_it_first,
    moves_on_what_it_sets,
    proposal_supersede,
    proposals_supersede_after_changes,
    target_moves,
)
from audit.actors import Actor, acting_as
from audit.history import create_with_history, update_with_history
from executors.base import ChannelError, ChannelExecutor, Frozen, Outcome
from executors.models import ExecutionRound
from executors.registry import FALLBACK, executor_for, executor_named
from hitlproject.celery import app
from hitlproject.errors import InvalidInput, NotFound
from hitlproject.queueing import after_commit
from hitlproject.vocabulary import (
    EXECUTION_FAILED,
    PARTLY_CARRIED_OUT,
    UNDER_WAY_STATUSES,
    attempt_numbers,
    http_answer,
    no_sure_answer_said,
    refusal_said,
    unsure_answers_said,
)
from ledger.models import Account, Campaign, campaign_field_label, campaign_value_label
from ledger.services import accounts_lock
from policies.engine import guarded_risk
from policies.models import KillSwitch, KillSwitchScope, Policy
from policies.services import (
    HeldBackNow,
    engaged_kill_switches,
    kill_switch_engaged_since,
    kill_switch_named_in,
    kill_switch_names,
    kill_switch_reason,
    kill_switches_covering,
    kill_switches_engaged_over,
    kill_switches_told_apart,
    reads_account_total,
)

logger = logging.getLogger(__name__)

LEDGER_EXECUTOR = FALLBACK.name
# How long an attempt waits when its account has all the requests its executor is given.
ENDPOINT_BUSY_WAIT = timedelta(seconds=2)
# The task that sends a channel executor's request (``executors.tasks``, which imports this
# module), sent by its name; the name it had when approvals ran it, as queued messages hold.
SEND_EXECUTION_REQUEST = "approvals.send_execution_request"
STOPPED = "the worker stopped while the request was under way"
STOPPED_NOT_SENT_AGAIN = (
    f"{STOPPED}, so it may have been carried out; not sent again, since the channel cannot "
    "tell and sending it again could do it twice: check the channel before retrying"
)


class GuardrailRefusal(Exception):
    """A guardrail refuses the action now: one set since the approval (a cap, a lock), or a
    cap that what ran since has reached (the account's total daily budget); or the hard
    ceiling of the policy that routed it, lowered since (each said as whose it is,
    ``refusal_said``)."""

    def __init__(self, reasons: tuple[str, ...]) -> None:
        super().__init__(refusal_said(reasons))


def _reassessed(
    proposal: Proposal, action_type, campaigns, moves, actor: Actor
) -> Proposal | str | None:
    """An amount moved on campaigns whose budgets moved since it was assessed keeps its
    meaning: it is assessed again against the ledger now. Its verdict decides what follows:
    still one that lets it run as it was approved (the engine's approval, or a person's for
    anything short of a block), it runs on the new figures, recorded; one that needs a person
    where the engine approved it goes to one (re-routed, with the new routing); one that
    would now be blocked fails. Returns the proposal moved on, why the attempt must fail, or
    None to go on."""
    moved = "; ".join(str(move) for move in moves)
    # The policy's hard ceilings judge its figures once re-assessed (a block now fails it).
    if _refusal(proposal, action_type, campaigns, ceilings=False):
        return None  # it can no longer be applied at all: the attempt fails, saying why
    assessed = assessed_from_ledger(
        action_type=action_type,
        account=proposal.account,
        payload=proposal.payload,
        campaigns=campaigns,
    )
    # Held, since a re-routing records it: one deleted meanwhile is not recorded.
    verdict, findings = verdict_policy_held(
        partial(verdict_for, assessed=assessed, agent=proposal.agent, proposal_id=proposal.pk)
    )
    facts = assessed.proposal_fields()
    said = f"{REASSESSED_BEFORE_EXECUTING} {moved}."
    if verdict.outcome == VerdictOutcome.BLOCK:
        return f"{said}{REASSESSED_WOULD_BE_BLOCKED}" + " ".join(verdict.reasons)
    if verdict.outcome == VerdictOutcome.REVIEW and _approved_by_a_person_at(proposal) is None:
        reason = re_routed_reason(moved, _unsure_before(proposal))
        # Routed again: this verdict is its routing now, not a re-assessment beside one.
        changes = {
            **facts,
            **verdict_changes(verdict, findings),
            "reassessed_at": None,
            "reassessed_policy_version": None,
        }
        changes["verdict_reasons"] = reasons_after(
            reason, proposal.verdict_reasons, reassessed=True, verdict_reasons=verdict.reasons
        )
        return _sent_back(proposal, actor, reason, changes)
    counted_before = counted_state(proposal)
    for name, value in facts.items():
        setattr(proposal, name, value)
    # Said where its page says why it is here, as a waiting one's re-assessment is, above
    # what happened to it before (an edit, an earlier attempt's re-assessment); its verdict's
    # reasons stay those its approval was given on.
    proposal._change_reason = (
        f"{said}{REASSESSED_NOW}{assessed.assessment.summary}, which its approval still covers."
    )
    proposal.verdict_reasons = reasons_after(
        proposal._change_reason, proposal.verdict_reasons, reassessed=True
    )
    proposal.save()
    counted_moves_update([(proposal, counted_before)])
    return None


def _unsure_before(proposal: Proposal) -> list[tuple[int, str]]:
    """The attempts sent before that got no sure answer (``_unsure_answers``), of the round a
    kill switch's hold or a re-assessment interrupts, or of the held round a person's
    approval resumes: sent back to a person then (``_held_back``, re-routed), it may have
    run."""
    current = _current_round(proposal) if proposal.status == ProposalStatus.EXECUTING else None
    sent = current or _held_round(proposal)
    return _unsure_answers(proposal, sent) if sent else []


def _locked_one(proposal_id: int) -> Proposal:
    """One proposal, locked (waiting for whoever holds it), as ``_locked_for_execution``
    reads it; ``NotFound`` if there is none."""
    locked = _locked_for_execution([proposal_id], skip_locked=False)
    if not locked:
        raise NotFound(f"There is no proposal #{proposal_id}.")
    return locked[0]


def _locked_for_execution(proposal_ids: Sequence[int], *, skip_locked: bool) -> list[Proposal]:
    """The proposals, locked until the surrounding transaction ends, in id order (those
    another transaction holds left out, with ``skip_locked``), then their agents held as they
    are (``agents_hold``), and only then read, with their agent and account, and, in the same
    statement, what the executor asks first: how many attempts each had (``attempts_before``)
    and whether a kill switch is engaged over it (``kill_switch_engaged``).

    Read once both are held, not in the statement that locks: one that waits for a row's lock
    reads that row as it is once it has it, but every other (the agent, a kill switch, the
    attempts) as they were when it began, so an agent deactivated or a switch engaged while
    it waited for the proposal (held by a decision, a claim, another attempt) went unseen and
    the action ran for an agent already stopped."""
    if connection.features.has_select_for_update:
        locked = list(
            Proposal.objects.select_for_update(skip_locked=skip_locked)
            .filter(pk__in=proposal_ids)
            .order_by("pk")
            .values_list("pk", "agent_id")
        )
        agents_hold(agent_id for _, agent_id in locked)
        proposal_ids = [pk for pk, _ in locked]
    attempts = (
        Execution.objects.filter(proposal=OuterRef("pk"))
        .order_by()
        .values("proposal")
        .annotate(count=Count("pk"))
        .values("count")
    )
    engaged = kill_switches_engaged_over(OuterRef("account_id"), OuterRef("account__channel"))
    return list(
        Proposal.objects.select_related("agent", "account", "verdict_policy")
        .annotate(
            attempts_before=Coalesce(Subquery(attempts), 0),
            kill_switch_engaged=Exists(engaged),
            verdict_policy_latest=_latest_version_if_capped(),
        )
        .filter(pk__in=proposal_ids)
        .order_by("pk")
    )


def _latest_version_if_capped() -> Case:
    """The latest version (history record) of the policy that routed a proposal, where that
    policy has a hard ceiling; else null, and its history not read: what
    ``hard_ceilings_lowered_since`` asks, read in the statement that reads the proposal."""
    latest = Policy.history.filter(id=OuterRef("verdict_policy_id")).order_by("-history_id")
    return Case(
        When(
            Q(verdict_policy__block_above_magnitude__isnull=False)
            | Q(verdict_policy__block_above_amount__isnull=False),
            then=Subquery(latest.values("history_id")[:1]),
        ),
        default=None,
        output_field=BigIntegerField(),
    )


def _record_attempt(
    proposal: Proposal,
    *,
    number: int,
    executor: str,
    status: str,
    before: dict,
    started_at,
    after: dict | None = None,
    error: str = "",
    key: str = "",
) -> Execution:
    """``key``: the idempotency key it goes to its channel with, said in its history ("" if
    none: the channel gets none, or it is not sent)."""
    attempt = Execution(
        proposal=proposal,
        attempt=number,
        executor=executor,
        status=status,
        before_state=before,
        after_state=after or {},
        error=error,
        started_at=started_at,
        finished_at=None if status == ExecutionStatus.RUNNING else timezone.now(),
    )
    attempt._change_reason = _attempt_made(
        attempt, approved_to_run_said([proposal])[proposal.pk], key
    )
    attempt.save(force_insert=True)
    return attempt


# What an attempt's record says it came of, by the status it was made with.
_MADE_AS = {
    ExecutionStatus.SUCCEEDED: "executed",
    ExecutionStatus.FAILED: "failed",
    ExecutionStatus.RUNNING: "started (its request on its way to the channel)",
}


def _attempt_made(attempt: Execution, approved: str, key: str = "") -> str:
    """The history reason of an attempt's first record: what wrote it and why, "attempt 1
    executed by the worker with the ledger executor; approved by policy “Bid adjustments”
    version 3" (``approved``: ``approved_to_run_said``); with the idempotency ``key`` its
    request went with, if any."""
    done = _MADE_AS.get(attempt.status, attempt.status)
    if key:
        done = f"{done} with key {key}"
    return (
        f"attempt {attempt.attempt} {done} by the worker with the {attempt.executor} executor; "
        f"{approved}"
    )


def _attempt_saved(attempt: Execution, what: str) -> None:
    """An attempt's change saved with its history reason: ``what`` became of it, as the
    worker that ran it recorded it."""
    attempt._change_reason = f"attempt {attempt.attempt} {what}, recorded by the worker"
    attempt.save()


def _fail(proposal: Proposal, error: str) -> Proposal:
    """The execution failed: the proposal says so, and its agent's feedback too (written
    last in the transaction, as feedback is)."""
    actor = Actor.system("executor")
    with transaction.atomic():
        failed = proposal_transition(
            proposal_id=proposal.pk,
            to_status=ProposalStatus.FAILED,
            actor=actor,
            reason=f"{EXECUTION_FAILED}{error}",
        )
        executions_failed(failures=[(failed, error)], actor=actor)
    return failed


# How many of a proposal's latest history records are read for when it last became approved
# (the records of its current round's attempts come first).
APPROVAL_READ_BACK = 100


def _approved_by_a_person_at(proposal: Proposal) -> datetime | None:
    """When a person last said this proposal should run (approved it, or retried it): the
    time it last became approved, if a person moved it there; None if the policy engine did
    (``_approved_by_a_person_at_each`` of it alone)."""
    return _approved_by_a_person_at_each([proposal.pk])[proposal.pk]


def _approved_by_a_person_at_each(proposal_ids: Sequence[int]) -> dict[int, datetime | None]:
    """``_approved_by_a_person_at`` for each proposal, their histories read in one query,
    each in the order its records were written (``history_id``), not by the clocks of the
    hosts that wrote them."""
    history = (
        Proposal.history.filter(id__in=proposal_ids)
        .order_by("id", "-history_id")
        .values_list("id", "status", "history_actor_kind", "history_date")
    )
    if len(proposal_ids) == 1:  # before each attempt under an engaged switch: read no more
        history = history[:APPROVAL_READ_BACK]
    found: dict[int, datetime | None] = dict.fromkeys(proposal_ids)
    for proposal_id, records in groupby(history.iterator(chunk_size=5000), key=itemgetter(0)):
        found[proposal_id] = _became_approved_by_a_person(islice(records, APPROVAL_READ_BACK))
    return found


def _became_approved_by_a_person(records: Iterable[tuple]) -> datetime | None:
    """Of one proposal's history records, newest first (id, status, actor kind, time): when
    it last became approved, if a person moved it there."""
    became = None
    for _, status, actor_kind, at in records:
        if status == ProposalStatus.EXECUTING and became is None:
            continue  # the attempts of this round
        if status != ProposalStatus.APPROVED:
            break
        became = (actor_kind, at)
    if became is None or became[0] != "user":
        return None
    return became[1]


def _kill_switch_hold(proposal: Proposal) -> list[KillSwitch]:
    """The kill switches that hold the proposal back for a person, if any
    (``_kill_switch_holds_each`` of it alone, with the switches engaged over its account or
    channel). (``proposal`` from ``_locked_for_execution``: which switches, and since when,
    is asked only if one is.)"""
    if not proposal.kill_switch_engaged:
        return []
    holds = _kill_switch_holds_each([proposal], engaged_kill_switches(proposal.account))
    return holds.get(proposal.pk, [])


def _kill_switch_holds_each(
    proposals: Sequence[Proposal], engaged: Sequence[KillSwitch]
) -> dict[int, list[KillSwitch]]:
    """The kill switches that hold back each of ``proposals`` for a person: of ``engaged``
    (switches engaged, told apart, read once for them all), every one over its account or
    channel does, unless a person approved it (or retried it) while that switch was engaged.
    A switch routes everything to humans: what the policy engine approved never runs past
    it, nor what a person approved before it was engaged. Each proposal a switch is engaged
    over (its ``kill_switch_engaged``, from ``_locked_for_execution``) is keyed, with those
    that hold it, none if a person let it run past them; when a person approved them, and
    since when a switch is engaged, are asked only where they decide."""
    covering = {
        proposal.pk: kill_switches_covering(engaged, proposal.account)
        for proposal in proposals
        if proposal.kill_switch_engaged
    }
    approved_at = _approved_by_a_person_at_each([pk for pk, over in covering.items() if over])
    asked = {
        switch.pk: switch
        for pk, over in covering.items()
        if approved_at.get(pk) is not None
        for switch in over
    }
    since = {pk: kill_switch_engaged_since(switch) for pk, switch in asked.items()}
    return {
        pk: [
            switch
            for switch in over
            if approved_at[pk] is None or approved_at[pk] < since[switch.pk]
        ]
        for pk, over in covering.items()
    }


def _findings_with_holds(proposal: Proposal, holding: Sequence[KillSwitch]) -> dict:
    """The proposal's guardrail findings with the switches that hold it back now among those
    that send it to a person, in place of what a switch of the same scope said when it was
    routed: the queue's Guardrail column and the bulk confirmation say what holds it, and
    its page does not tell a switch that sent it back as one "engaged since it was routed".
    Its first routing keeps what was found then, in its history."""
    found = dict(proposal.guardrail_findings or {})
    # A switch is known by its scope, as its finding opens ("The kill switch on account demo
    # is engaged: ", or as one recorded before named it), whatever its reason said then (as
    # the proposal's page tells them apart).
    holds = [kill_switch_reason(switch) for switch in holding]
    named = frozenset().union(*map(kill_switch_names, holding))
    review = [
        finding for finding in found.get("review", []) if kill_switch_named_in(finding) not in named
    ]
    found["review"] = [*review, *holds]
    found.setdefault("block", [])
    return found


def _held_back_changes(
    proposal: Proposal, holding: Sequence[KillSwitch], unsure: Sequence[tuple[int, str]]
) -> tuple[str, dict]:
    """Why the kill switches ``holding`` send the proposal back to a person, and what that
    changes of it: their findings its reason, in its verdict reasons and findings, with the
    attempts ``unsure`` (``_unsure_answers`` of the round the hold interrupts, or of the held
    round a person's approval resumes) that got no sure answer: it may have run, and is not
    said to be held back before it did."""
    reason = held_back_reason(" ".join(map(kill_switch_reason, holding)), unsure)
    return reason, {
        "verdict_reasons": reasons_after(reason, proposal.verdict_reasons),
        "guardrail_findings": _findings_with_holds(proposal, holding),
        # Among those a guardrail sent to a person in the queue, not below clean ones.
        "risk": guarded_risk(proposal.risk or 0),
    }


def _held_back(proposal: Proposal, holding: Sequence[KillSwitch], actor: Actor) -> Proposal:
    """The proposal sent back to a person because the kill switches ``holding`` hold it
    (``_kill_switch_hold``), their findings its reason."""
    reason, changes = _held_back_changes(proposal, holding, _unsure_before(proposal))
    return _sent_back(proposal, actor, reason, changes)


def _all_held_back(holds: Sequence[tuple[Proposal, list[KillSwitch]]], actor: Actor) -> None:
    """``_held_back`` for many proposals, locked by the caller's transaction, written
    together: the rounds they interrupt held in one UPDATE, the proposals moved alike (held
    by the same switches) in one transition each, with a history record for every one, and
    their agents told once; the attempts that got no sure answer, which their reasons name,
    read in one query for them all."""
    # Each one's rounds, latest first; its last: the one a hold interrupts (executing), or a
    # held one a person's approval resumes (as ``_held_round``), whose attempts sent before
    # the hold it names.
    rounds: dict[int, list[ExecutionRound]] = defaultdict(list)
    for round_ in ExecutionRound.objects.filter(
        proposal_id__in=[proposal.pk for proposal, _ in holds]
    ).order_by("proposal_id", "-first_attempt"):
        rounds[round_.proposal_id].append(round_)
    sent = {
        proposal.pk: rounds[proposal.pk]
        for proposal, _ in holds
        if rounds[proposal.pk]
        and (proposal.status == ProposalStatus.EXECUTING or rounds[proposal.pk][0].held)
    }
    unsure = _unsure_answers_each(sent)
    interrupted = [each[0].pk for each in sent.values() if not each[0].held]
    if interrupted:
        ExecutionRound.objects.filter(pk__in=interrupted).update(held=True, lease_until=None)
    alike: dict[str, list[Proposal]] = defaultdict(list)
    for proposal, holding in holds:
        reason, changes = _held_back_changes(proposal, holding, unsure.get(proposal.pk, []))
        for name, value in changes.items():
            setattr(proposal, name, value)
        alike[reason].append(proposal)
    for reason, proposals in alike.items():
        proposals_transition(
            proposals=proposals,
            to_status=ProposalStatus.PENDING_REVIEW,
            actor=actor,
            reason=reason,
            also_write=["verdict_reasons", "guardrail_findings", "risk"],
        )
    proposals_sent_back(proposals=[proposal for proposal, _ in holds], actor=actor)


def _sent_back(proposal: Proposal, actor: Actor, reason: str, changes: dict) -> Proposal:
    """The proposal back with a person before an attempt, in a new review round (approvals of
    the earlier ones no longer count). A channel executor's round it interrupts is marked
    held, with no lease, so that a person's approval of the same action resends the same
    request, key included: an attempt whose answer never came may have been carried out."""
    current = _current_round(proposal) if proposal.status == ProposalStatus.EXECUTING else None
    if current is not None:
        ExecutionRound.objects.filter(pk=current.pk).update(held=True, lease_until=None)
    sent_back = proposal_transition(
        proposal_id=proposal.pk,
        to_status=ProposalStatus.PENDING_REVIEW,
        actor=actor,
        reason=reason,
        changes=changes,
    )
    # Its agent was told it was approved (its callback, the submission's answer): it is told
    # that a person must now approve it before it runs.
    proposals_sent_back(proposals=[sent_back], actor=actor)
    return sent_back


@dataclass(frozen=True)
class _Checked:
    """What the checks before an attempt found: the proposal's campaigns (locked) and their
    state; the proposal if they moved it on instead (sent back, re-routed or superseded);
    why the attempt must fail, if it must."""

    campaigns: dict
    before: dict
    moved_on: Proposal | None = None
    refusal: str = ""


def _checked_targets(proposal: Proposal, action_type, actor: Actor) -> _Checked:
    """Under the proposal's lock, before an attempt: its account and campaigns locked (in
    that order); sent back to a person if a kill switch holds it back; superseded if it sets a
    value whose target moved since it was made; re-assessed if it moves an amount on campaigns
    that moved, or its figures are read from a field that moved (``_reassessed``)."""
    accounts_lock([proposal.account])
    campaigns = campaigns_for(
        account=proposal.account, action_type=action_type, payload=proposal.payload, lock=True
    )
    before = ledger_snapshot(action_type=action_type, payload=proposal.payload, campaigns=campaigns)
    holding = _kill_switch_hold(proposal)
    if holding:
        return _Checked(campaigns, before, _held_back(proposal, holding, actor))
    moves = target_moves(proposal.target_snapshot, before)
    if not moves:
        return _Checked(campaigns, before)
    ending = moves_on_what_it_sets(proposal, moves) if action_type.sets_values else []
    if ending:
        # An attempt sent before it (of this round, or of one a kill switch held) that got no
        # sure answer is said from its record (``Overtaken.unsure``): not one a 429 answered.
        superseded = proposal_supersede(
            proposal=proposal, moves=ending, actor=actor, cause="found before executing"
        )
        return _Checked(campaigns, before, superseded)
    reassessed = _reassessed(proposal, action_type, campaigns, moves, actor)
    if isinstance(reassessed, str):
        return _Checked(campaigns, before, refusal=reassessed)
    return _Checked(campaigns, before, reassessed)


def _supersede_others(executed: Sequence[tuple[Proposal, dict]], actor: Actor) -> None:
    """The changes have landed (each executed proposal with the state it left): the other
    proposals made against the values they replaced end."""
    by_account = defaultdict(list)
    for proposal, after in executed:
        by_account[proposal.account_id].append(
            (
                after,
                changed_it_first(proposal),
                proposal.agent_id,
                proposal.pk,
            )
        )
    for account_id, changes in by_account.items():
        proposals_supersede_after_changes(account_id=account_id, changes=changes, actor=actor)


def _refusal(
    proposal: Proposal,
    action_type,
    campaigns,
    agent_accounts: AgentAccounts | None = None,
    *,
    ceilings: bool = True,
) -> str:
    """Why the action may not be carried out now (its agent stopped, a guardrail set since,
    a hard ceiling of the policy that routed it lowered below it since, a ledger that no
    longer allows it), or "" if it may. ``agent_accounts``: ``agent_accounts_of`` the set it
    is carried out with, if already read. Without ``ceilings``, the policy's hard ceilings
    are left to the caller (one about to re-assess it, whose figures they judge)."""
    # Nothing an agent proposed runs once it is stopped, however far it had come (approved
    # and queued, or between two attempts on its channel): a person can no longer approve or
    # retry it either.
    stopped = agent_stopped(proposal, agent_accounts)
    if stopped:
        return f"Stopped: {stopped} since it proposed it."
    lowered = _hard_ceilings_lowered(proposal) if ceilings else ()
    return _ledger_refusal(proposal, action_type, campaigns, lowered)


def _hard_ceilings_lowered(proposal: Proposal) -> tuple[str, ...]:
    """What a hard ceiling of the policy that routed the proposal, lowered since (it was
    approved, or routed to the person who approved it), refuses about it, in the words its
    approval is refused in now (``hard_ceilings_lowered_since``): the policy owner who set
    "nothing above 20%" does not see 28% run because it had been approved before, or the
    policy let it run on its own. The attempt fails rather than going back to a person: the
    policy blocks it outright, so a person's approval of it would be refused (as a verdict
    that now blocks fails it, ``_reassessed``). Nothing asked of the database where the policy
    has no hard ceiling or has not changed since (``proposal`` as ``_locked_for_execution``
    reads it: with its policy and that policy's latest version)."""
    if proposal.verdict_policy_id is None:
        return ()
    latest = {proposal.verdict_policy_id: proposal.verdict_policy_latest}
    return hard_ceilings_lowered_since([proposal], latest=latest).get(proposal.pk, ())


def _ledger_refusal(
    proposal: Proposal, action_type, campaigns, policy_blocks: tuple[str, ...] = ()
) -> str:
    """Why the ledger may not record the action now (a guardrail set since, a ledger that no
    longer allows it), or "" if it may; ``policy_blocks``: what the policy's hard ceilings
    refuse about it now, said among the guardrails', as its approval says them."""
    blocked = guardrail_blocks(proposal=proposal, campaigns=campaigns) + policy_blocks
    if blocked:
        return str(GuardrailRefusal(blocked))
    try:
        action_type.check(proposal.payload, campaigns)
    except InvalidInput as error:
        return error.message
    return ""


def _for_channel(proposal: Proposal, chosen: dict | None = None) -> bool:
    """Whether a channel executor carries out this proposal (as locked): the registry picks
    one for its account and action type, or one already took it to executing (only a channel
    executor leaves a proposal executing between transactions; it stays with it, and with the
    request it froze, whatever the account says since). ``chosen`` keeps the registry's
    choices across a set, so a set asks it once per account and action type."""
    if proposal.status == ProposalStatus.EXECUTING:
        return True
    if proposal.status != ProposalStatus.APPROVED:
        return False
    return not _executor(proposal, {} if chosen is None else chosen).in_transaction


def _executor(proposal: Proposal, chosen: dict | None = None):
    chosen = {} if chosen is None else chosen
    key = (proposal.account_id, proposal.action_type)
    if key not in chosen:
        chosen[key] = executor_for(
            account=proposal.account, action_type=action_types.named(proposal.action_type)
        )
    return chosen[key]


@dataclass
class Executions:
    """What ``proposals_execute`` did: each proposal the ledger executor settled, as it ended
    up (executed, failed, sent back, superseded; or as it was, if there was nothing left to
    do), by id; the ids of those that are a channel executor's to send; and those left
    undone when the time to carry them out alone ran out (``alone_for``), to be sent on."""

    settled: dict[int, Proposal] = field(default_factory=dict)
    for_channel: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)


def proposal_execute(*, proposal_id: int) -> Proposal:
    """Carry out an approved proposal, with the executor the registry picks for it: the
    built-in ledger executor, or a channel executor (``_for_channel``)."""
    executions = proposals_execute(proposal_ids=[proposal_id])
    if proposal_id in executions.for_channel:
        return _execute_on_channel(proposal_id)
    if proposal_id not in executions.settled:
        raise NotFound(f"There is no proposal #{proposal_id}.")
    return executions.settled[proposal_id]


def proposals_execute(
    *,
    proposal_ids: Sequence[int],
    joining: Sequence[int] = (),
    alone_for: float | None = None,
) -> Executions:
    """Carry out approved proposals with the built-in ledger executor, exactly once each,
    and say which are a channel executor's instead (``_for_channel``).

    Those that need nothing but doing are done together, in one short transaction
    (``_execute_together``); any that needs more (a kill switch engaged, a target moved, a
    guardrail or the ledger refusing it, another proposal of the set on one of its
    campaigns, an action that writes more than campaign fields, a lock held elsewhere) is
    then carried out alone, in a transaction of its own (``_execute_alone``), as is every
    one of the set if doing them together failed.

    ``joining``: other approved proposals whose own execution is on its way, done together
    with these if they need nothing but doing and no one else holds them; whatever else
    becomes of them is left to their own execution (neither done alone here nor handed to
    their channel), as is anything they need.

    ``alone_for``: once this many seconds have passed, those still to be carried out alone
    are left undone (``Executions.left``), at least one of them done: a batch's hundred
    reallocations on shared campaigns, each alone and re-assessing the proposals waiting on
    them, held a worker for minutes while every other agent's approved action waited."""
    give_up_at = None if alone_for is None else time.monotonic() + alone_for
    proposal_ids = sorted(set(proposal_ids))  # those alone, too, in the order they were made
    joining = set(joining) - set(proposal_ids)
    executions = _together_or_nothing([*proposal_ids, *joining])
    if executions is None and joining:
        # One taken along may be what failed: it is left to its own task, these go on.
        joining = set()
        executions = _together_or_nothing(proposal_ids)
    if executions is None:
        logger.warning("Executing proposals %s together failed: each is tried alone", proposal_ids)
        executions = Executions()
    executions.for_channel = [pk for pk in executions.for_channel if pk not in joining]
    done_alone = False
    for proposal_id in proposal_ids:
        if proposal_id in executions.settled or proposal_id in executions.for_channel:
            continue
        if give_up_at is not None and time.monotonic() > give_up_at and done_alone:
            executions.left.append(proposal_id)
            continue
        done_alone = True
        try:
            executed = _execute_alone(proposal_id)
        except NotFound:
            logger.warning("Proposal %s to execute does not exist", proposal_id)
            continue
        if executed is None:
            executions.for_channel.append(proposal_id)
        else:
            executions.settled[proposal_id] = executed
    return executions


def _together_or_nothing(proposal_ids: Sequence[int]) -> Executions | None:
    """``_execute_together``, or None if it failed (logged; nothing of it was done)."""
    try:
        return _execute_together(sorted(proposal_ids))
    except OperationalError:
        raise  # transient (lock timeout, lost connection): the task retries
    except Exception:
        logger.exception("Executing proposals %s together failed", sorted(proposal_ids))
        return None


def _execute_together(proposal_ids: Sequence[int]) -> Executions:
    """The proposals that need nothing but doing, done in one transaction: locked (in id
    order, skipping any held elsewhere), then their agents held, their accounts and campaigns
    locked (each in id order, as everywhere);
    each checked as ``_execute_alone`` checks it, and left to it if anything is found; the
    rest applied to the ledger, their attempts recorded and their moves (approved →
    executing → executed) written, all with history, a few statements for the whole set;
    then the proposals made against the values they replaced superseded."""
    actor = Actor.system("executor")
    executions = Executions()
    chosen: dict = {}
    with transaction.atomic(), acting_as(actor):
        candidates = []
        for proposal in _locked_for_execution(proposal_ids, skip_locked=True):
            if _for_channel(proposal, chosen):
                executions.for_channel.append(proposal.pk)
            elif proposal.status != ProposalStatus.APPROVED:
                executions.settled[proposal.pk] = proposal  # nothing to do
            elif not proposal.kill_switch_engaged:
                action_type = action_types.named(proposal.action_type)
                if action_type.writes_campaign_fields_only:
                    candidates.append((proposal, action_type))
        # Two of the set on one campaign: the first's change may supersede the second, or
        # move what it is assessed on. They run alone, one after the other.
        touched = {
            proposal.pk: [(proposal.account_id, external_id) for external_id in fields]
            for proposal, action_type in candidates
            for fields in [action_type.campaign_fields(proposal.payload)]
        }
        shared = Counter(key for keys in touched.values() for key in keys)
        candidates = [
            (proposal, action_type)
            for proposal, action_type in candidates
            if all(shared[key] == 1 for key in touched[proposal.pk])
        ]
        # Their accounts before their campaigns, as everywhere; with their caps as locked.
        # One whose account's total cap judges it runs alone, after: the total counts every
        # campaign of the account, not only those locked here.
        accounts_lock(proposal.account for proposal, _ in candidates)
        campaigns = _locked_campaigns(
            key for proposal, _ in candidates for key in touched[proposal.pk]
        )
        started_at = timezone.now()
        staged = []
        agent_accounts = agent_accounts_of(proposal for proposal, _ in candidates)
        for proposal, action_type in candidates:
            if not all(key in campaigns for key in touched[proposal.pk]):
                continue  # a campaign gone: the action's own check says so, alone
            theirs = {
                external_id: campaigns[(account_id, external_id)]
                for account_id, external_id in touched[proposal.pk]
            }
            payload = proposal.payload
            before = ledger_snapshot(action_type=action_type, payload=payload, campaigns=theirs)
            if (
                target_moves(proposal.target_snapshot, before)
                or reads_account_total(
                    action_type=action_type, account=proposal.account, payload=payload
                )
                or _refusal(proposal, action_type, theirs, agent_accounts)
            ):
                continue
            writes = FALLBACK.staged_writes(
                action_type=action_type, payload=payload, campaigns=theirs, proposal=proposal
            )
            after = ledger_snapshot(action_type=action_type, payload=payload, campaigns=theirs)
            staged.append((proposal, before, after, writes))
        if not staged:
            return executions
        applied_at = timezone.now()
        campaign_writes = []
        for _, _, _, writes in staged:
            for campaign, fields in writes:
                campaign.updated_at = applied_at
                campaign_writes.append((campaign, {**fields, "updated_at": applied_at}))
        update_with_history(Campaign, campaign_writes, actor=actor)
        finished_at = timezone.now()  # the ledger written, as an attempt alone finishes
        executed = [proposal for proposal, *_ in staged]
        approved = approved_to_run_said(executed)
        attempts = [
            Execution(
                proposal=proposal,
                attempt=proposal.attempts_before + 1,
                executor=LEDGER_EXECUTOR,
                status=ExecutionStatus.SUCCEEDED,
                before_state=before,
                after_state=after,
                started_at=started_at,
                finished_at=finished_at,
            )
            for proposal, before, after, _ in staged
        ]
        for attempt in attempts:
            attempt._change_reason = _attempt_made(attempt, approved[attempt.proposal.pk])
        create_with_history(Execution, attempts, actor=actor)
        proposals_move_through(
            proposals=executed,
            moves=[
                Move(ProposalStatus.EXECUTING, "", started_at),
                Move(
                    ProposalStatus.EXECUTED,
                    "",
                    finished_at,
                    said_to_each={
                        proposal.pk: _executed_said(proposal, before, after)
                        for proposal, before, after, _ in staged
                    },
                ),
            ],
            actor=actor,
        )
        _supersede_others([(proposal, after) for proposal, _, after, _ in staged], actor)
        executions_carried_out(proposals=executed, actor=actor)
        executions.settled.update((proposal.pk, proposal) for proposal in executed)
    return executions


def _executed_said(
    proposal: Proposal, before: dict, after: dict, created: dict[str, list[int]] | None = None
) -> str:
    """What its agent is told an execution did (its callback's ``reason``), in the terms of
    the API's ``execution``: each campaign field it changed, from its before state to its
    after state ("executed: brand-search's bid 2.00 → 2.30"); an action that changes none (a
    creative batch adds creatives) by what it did, with the ledger records it added
    (``created``, as the execution's ``created`` lists them). The history's reason, for
    auditors, stays the lifecycle's words, beside the attempt's states."""
    changed = [
        f"{campaign}'s {campaign_field_label(name)} "
        f"{campaign_value_label(name, was)} → {campaign_value_label(name, now)}"
        for campaign, fields in after.items()
        for name, now in fields.items()
        if (was := before.get(campaign, {}).get(name)) != now
    ]
    if changed:
        return f"executed: {'; '.join(changed)}"
    records = "; ".join(
        f"{kind} {', '.join(f'#{pk}' for pk in ids)}"
        for kind, ids in (created or {}).items()
        if ids
    )
    return f"executed: {proposal.summary}" + (f" (in the ledger: {records})" if records else "")


def _locked_campaigns(keys) -> dict[tuple[int, str], Campaign]:
    """Campaigns by (account id, external id), locked in id order."""
    wanted = defaultdict(set)
    for account_id, external_id in keys:
        wanted[account_id].add(external_id)
    if not wanted:
        return {}
    query = Q(pk__in=[])
    for account_id, external_ids in wanted.items():
        query |= Q(account_id=account_id, external_id__in=sorted(external_ids))
    return {
        (campaign.account_id, campaign.external_id): campaign
        for campaign in Campaign.objects.select_for_update().filter(query).order_by("pk")
    }


def _execute_alone(proposal_id: int) -> Proposal | None:
    """Carry out one proposal in a transaction of its own, with every check and every way it
    can end; None if it is a channel executor's."""
    actor = Actor.system("executor")
    with transaction.atomic(), acting_as(actor):
        proposal = _locked_one(proposal_id)
        if _for_channel(proposal):
            return None
        if proposal.status != ProposalStatus.APPROVED:
            return proposal  # executed already, or no longer approved: nothing to do
        action_type = action_types.named(proposal.action_type)
        checked = _checked_targets(proposal, action_type, actor)
        if checked.moved_on:
            return checked.moved_on
        campaigns = checked.campaigns
        started_at = timezone.now()
        attempt = {
            "number": proposal.attempts_before + 1,
            "executor": LEDGER_EXECUTOR,
            "before": checked.before,
            "started_at": started_at,
        }
        try:
            with transaction.atomic():
                refusal = checked.refusal or _refusal(proposal, action_type, campaigns)
                if not refusal:
                    FALLBACK.apply(
                        action_type=action_type,
                        payload=proposal.payload,
                        campaigns=campaigns,
                        proposal=proposal,
                    )
        except OperationalError:
            raise  # transient (lock timeout, lost connection): the task retries
        except InvalidInput as error:  # the action itself says it cannot be applied now
            refusal = error.message
        except Exception as error:
            logger.exception("Executing proposal %s failed", proposal_id)
            refusal = f"{type(error).__name__}: {error}"
        executing = Move(ProposalStatus.EXECUTING, "", started_at)
        if refusal:
            _record_attempt(proposal, status=ExecutionStatus.FAILED, error=refusal, **attempt)
            failed = Move(ProposalStatus.FAILED, f"{EXECUTION_FAILED}{refusal}", timezone.now())
            proposals_move_through(proposals=[proposal], moves=[executing, failed], actor=actor)
            executions_failed(failures=[(proposal, refusal)], actor=actor)
            return proposal
        after = ledger_snapshot(
            action_type=action_type, payload=proposal.payload, campaigns=campaigns
        )
        _record_attempt(proposal, status=ExecutionStatus.SUCCEEDED, after=after, **attempt)
        said = _executed_said(
            proposal, checked.before, after, action_type.records_created(proposal)
        )
        executed = Move(ProposalStatus.EXECUTED, "", timezone.now(), said_to_agent=said)
        proposals_move_through(proposals=[proposal], moves=[executing, executed], actor=actor)
        _supersede_others([(proposal, after)], actor)
        executions_carried_out(proposals=[proposal], actor=actor)
        return proposal


def _execute_on_channel(proposal_id: int) -> Proposal:
    """Carry out an approved proposal with its channel executor: the request frozen when the
    proposal went to executing (``ChannelExecutor.freeze``) is sent outside any transaction
    (``ChannelExecutor.carry_out``), the same for every attempt of this round (an operator's
    retry starts a new round, with a new key). Each attempt is claimed, and recorded as under
    way, before it is sent; the round's lease keeps a second attempt from starting while one
    is under way or before the next is due. What comes back (``executors.base.Outcome``) is
    recorded here, and only here: carried out, the ledger records the action (if it still
    allows it) as the channel has it; a value moved on the channel supersedes the proposal;
    a failure another attempt can help is tried again with backoff; any other, a partial
    one, or the last try fails the execution."""
    actor = Actor.system("executor")
    with transaction.atomic(), acting_as(actor):
        proposal = _locked_one(proposal_id)
        next_attempt = proposal.attempts_before + 1
        now = timezone.now()
        if proposal.status == ProposalStatus.APPROVED:
            current = None
            executor = _executor(proposal)
            if executor.in_transaction:  # the account changed since it was handed over
                return _execute_alone(proposal_id) or proposal
        elif proposal.status == ProposalStatus.EXECUTING:
            current = _current_round(proposal)
            if current is None:
                return proposal
            if current.lease_until and current.lease_until > now:
                return proposal  # an attempt is under way, or the next is not due yet
            try:
                executor = executor_named(current.executor)
            except LookupError as error:
                _stopped_attempts_failed(proposal, current, now, STOPPED)
                return _fail(proposal, str(error))
            if executor.sends_again(current.request):
                _stopped_attempts_failed(proposal, current, now, STOPPED)
            elif _stopped_attempts_failed(proposal, current, now, STOPPED_NOT_SENT_AGAIN):
                # Its answer never came and the channel cannot tell it was done (ads created):
                # sending it again could do it twice. A person looks first.
                return _fail(proposal, STOPPED_NOT_SENT_AGAIN)
        else:
            return proposal  # executed already, or no longer approved: nothing to do
        # Every attempt, not only the first, checks what the first does: a kill switch
        # engaged, a target moved or a guardrail set since the last one stops it.
        action_type = action_types.named(proposal.action_type)
        checked = _checked_targets(proposal, action_type, actor)
        if checked.moved_on:
            return checked.moved_on
        campaigns, before = checked.campaigns, checked.before
        refusal = checked.refusal or _refusal(proposal, action_type, campaigns)
        under_way = [] if refusal else _requests_under_way(proposal.account, executor, now)
        if any(other != proposal.pk and names & before.keys() for other, names in under_way):
            # Another action's request to these campaigns is under way: this one is worked out
            # and sent once that one's answer is recorded, from the ledger as it leaves it, so
            # no two requests to the channel set figures worked out from the same values.
            if current is not None:
                _hold(current, until=now + ENDPOINT_BUSY_WAIT)
            after_commit(_retry_later, proposal_id, ENDPOINT_BUSY_WAIT.total_seconds())
            return proposal
        if current is None:
            frozen = None
            previous = _current_round(proposal)
            resumption = ""
            if not refusal:
                try:
                    frozen = executor.freeze(
                        proposal=proposal,
                        action_type=action_type,
                        campaigns=campaigns,
                        targets=before,
                        key=_next_round_key(proposal),
                        previous=previous,
                    )
                except ChannelError as error:
                    refusal = str(error)
            if frozen is not None and previous is not None and previous.held:
                # A held round resumed at a changed endpoint goes as a new request: said
                # where its move to executing is recorded, not left to the key alone.
                resumption = _resumption(
                    proposal, previous, frozen.key, frozen.request, next_attempt, executor
                )
            proposal = proposal_transition(
                proposal_id=proposal_id,
                to_status=ProposalStatus.EXECUTING,
                actor=actor,
                reason=resumption,
            )
            if frozen is not None:
                current = _round_begun(proposal, executor, frozen, next_attempt, at=now)
        elif not refusal:
            moved = target_moves(executor.worked_out_from(current.request), before)
            if moved:
                current, refusal = _worked_out_again(
                    proposal, executor, action_type, campaigns, before, current, moved, actor
                )
        if refusal:
            # Not the round's first attempt, or the first since a kill switch held its round
            # back (approved again, it resumes that round's request): attempts went before.
            sent = current or _held_round(proposal)
            if sent is not None:
                refusal = _sent_before(refusal, proposal, sent, executor)
            _record_attempt(
                proposal,
                number=next_attempt,
                executor=executor.name,
                status=ExecutionStatus.FAILED,
                before=before,
                started_at=now,
                error=refusal,
            )
            return _fail(proposal, refusal)
        if _this_round(proposal, current).count() >= executor.max_attempts:
            return _fail(
                proposal,
                _unanswered_said(
                    "no answer from the channel after every attempt", executor, proposal, current
                ),
            )
        if len(under_way) >= executor.requests_per_account:
            # The account has as many requests under way with this executor as it is given:
            # this one waits its turn without holding a worker, so a slow channel holds no more
            # than that many and every other account's requests still find workers free.
            _hold(current, until=now + ENDPOINT_BUSY_WAIT)
            after_commit(_retry_later, proposal_id, ENDPOINT_BUSY_WAIT.total_seconds())
            return proposal
        attempt = _record_attempt(
            proposal,
            number=next_attempt,
            executor=executor.name,
            status=ExecutionStatus.RUNNING,
            before={},
            started_at=now,
            key=_told_key(executor, current.key),
        )
        _hold(current, until=now + executor.lease)
    # Claimed and committed: a crash from here on leaves the attempt under way and the
    # proposal executing; once the lease runs out the stall sweep sends the same request.
    outcome = _carried_out(executor, current, proposal.account)

    with transaction.atomic(), acting_as(actor):
        proposal = proposal_lock(proposal_id)
        finished = timezone.now()
        attempt.refresh_from_db()
        if proposal.status != ProposalStatus.EXECUTING:
            return proposal  # another attempt finished it meanwhile
        action_type = action_types.named(proposal.action_type)
        accounts_lock([proposal.account])
        campaigns = campaigns_for(
            account=proposal.account, action_type=action_type, payload=proposal.payload, lock=True
        )
        attempt.before_state = outcome.before or ledger_snapshot(
            action_type=action_type, payload=proposal.payload, campaigns=campaigns
        )
        attempt.finished_at = finished
        attempt.request_ids = list(outcome.request_ids)
        attempt.channel_response = outcome.response
        if outcome.result == "done":
            return _record_carried_out(proposal, attempt, action_type, campaigns, outcome, actor)
        attempt.status = ExecutionStatus.FAILED
        if outcome.result == "moved":
            moves = "; ".join(str(move) for move in outcome.moves)
            attempt.error = f"Not sent: the value moved on the channel ({moves})."
            _attempt_saved(attempt, "not sent: the value moved on the channel")
            superseded = proposal_supersede(
                proposal=proposal,
                moves=list(outcome.moves),
                actor=actor,
                cause=f"found on the channel ({executor.name}) before executing",
            )
            _ledger_follows(campaigns, outcome.moves, proposal, executor.name, actor)
            return superseded
        attempt.error = outcome.detail
        if outcome.result == "partial":
            attempt.error = f"{PARTLY_CARRIED_OUT}{outcome.detail}"
            _attempt_saved(attempt, "failed: the channel carried out part of it")
            return _fail(proposal, attempt.error)
        attempt.unanswered = outcome.unanswered
        tried = _this_round(proposal, current).count()
        if not outcome.retryable or tried >= executor.max_attempts:
            # The round ends: its last attempt's record says what the failure says.
            attempt.error = _unanswered_said(outcome.detail, executor, proposal, current, attempt)
            _attempt_saved(attempt, "failed, the last of its round")
            return _fail(proposal, attempt.error)
        # A kill switch engaged while the request was at the channel holds it back now that
        # the channel answered, not when its next attempt is due (up to an hour away).
        proposal.kill_switch_engaged = True  # whether one is: asked by ``_kill_switch_hold``
        holding = _kill_switch_hold(proposal)
        if holding:
            _attempt_saved(attempt, "failed; a kill switch holds the next back for a person")
            return _held_back(proposal, holding, actor)
        _attempt_saved(attempt, "failed, to be tried again")
        # The next attempt is due after the backoff: nothing starts one before.
        delay = min(executor.retry_seconds * 2 ** (tried - 1), 600)
        # Not before the channel said to come back (a quota's retry delay), up to an hour.
        delay = max(delay, min(outcome.retry_after or 0, 3600))
        _hold(current, until=finished + timedelta(seconds=delay))
        after_commit(_retry_later, proposal_id, delay)
        return proposal


def _stopped_attempts_failed(
    proposal: Proposal, current: ExecutionRound, now: datetime, error: str
) -> int:
    """The round's attempts still under way whose lease ran out (their worker stopped) marked
    failed, saying ``error``, with history; how many there were."""
    stopped = list(_this_round(proposal, current).filter(status=ExecutionStatus.RUNNING))
    for attempt in stopped:
        attempt.status, attempt.finished_at, attempt.error = ExecutionStatus.FAILED, now, error
        attempt.unanswered = True  # its request may have gone, and its answer was lost
        # Found by the next run of its execution: the stall sweep's, or its task delivered
        # again once the worker was lost.
        attempt._change_reason = (
            f"attempt {attempt.attempt} marked failed: its worker stopped while it was under "
            "way, found when its execution was run again (sent again by the stall sweep, or "
            "its task delivered again)"
        )
        attempt.save()  # saved: on record
    return len(stopped)


def _held_round(proposal: Proposal) -> ExecutionRound | None:
    """The round a kill switch held back before its next attempt (``_sent_back``), which
    a person's approval resumes, key and all, if that is the proposal's last one."""
    last = _current_round(proposal)
    return last if last is not None and last.held else None


def _sent_before(
    refusal: str, proposal: Proposal, sent: ExecutionRound, executor: ChannelExecutor
) -> str:
    """A refusal of the round's next attempt, with what it must add of the attempts sent
    before it: the channel got their request, and one without a sure answer (a worker stopped
    while it was under way, a timeout: ``_unsure_answers``) may have been carried out there,
    which the ledger cannot know, or, where each got one, that it was not carried out. What
    happened only: what a retry would send is said where a retry is offered, and true then
    (beside the Retry button), not here, quoted long after and to the agent too."""
    last = _this_round(proposal, sent).order_by("-attempt").first()
    if last is None:
        return refusal
    refused = refusal if refusal.endswith(".") else refusal + "."
    try:  # the executor that sent it, which the registry may no longer pick
        sender = executor_named(sent.executor)
    except LookupError:
        sender = None
    unsure = _unsure_answers(proposal, sent)
    if not unsure:
        # The channel answered each that it did not carry it out (a quota error, a 408 or a
        # 429): nothing to check there, nor that a retry could do it a second time.
        said = (
            f"{refused} Attempt {last.attempt} was sent to the channel before (“{last.error}”), "
            "and the channel answered that it was not carried out."
        )
        resumed = _resumed_said(proposal, sent, sender or executor)
        return f"{said} {resumed}" if resumed else said
    # The one to check on the channel: the last that may have been carried out (no sure
    # answer), not a later one the channel said it did not carry out (408, 429).
    number, error = unsure[-1]
    # Its answer said once, unquoted where it is the channel's (“…HTTP 503”) and got…” read
    # as two sentences nested in one); what happened instead, where none came.
    quoted = "" if http_answer(error) else f" (“{error}”)"
    said = (
        f"{refused} Attempt {number} was sent to the channel before{quoted} and "
        f"{unsure_answers_said([(number, error)], named=False)}."
    )
    resumed = _resumed_said(proposal, sent, sender or executor)
    return f"{said} {resumed}" if resumed else said


def _unanswered_said(
    error: str,
    executor: ChannelExecutor,
    proposal: Proposal,
    current: ExecutionRound,
    last: Execution | None = None,
) -> str:
    """A failure that ends the round, with what it must add where an attempt of the round (or
    of the held rounds it resumes, ``_rounds_resumed``) got no sure answer (a timeout, a
    server's error, a worker stopped while it was under way): it may have been carried out
    (``no_sure_answer_said``), unless the channel is read first whether it was
    (``retry_finds_out``); and, for a round resumed as a new request, that it was
    (``_resumed_said``). What happened only: what a retry would do is said where it is read
    and true then (beside the Retry button, in a message to a person who may retry), not in
    the failure, quoted long after (its history, its attempt's record) and to its agent, who
    cannot retry. ``last``: the round's attempt just finished, not saved yet."""
    said = error
    if not executor.retry_finds_out(current.request):
        unsure = _unsure_answers(proposal, current, last)
        if unsure:
            said = f"{error if error.endswith('.') else error + '.'} {no_sure_answer_said(unsure)}"
    resumed = _resumed_said(proposal, current, executor)
    if resumed:
        said = f"{said if said.endswith('.') else said + '.'} {resumed}"
    return said


def _unsure_answers(
    proposal: Proposal, current: ExecutionRound, last: Execution | None = None
) -> list[tuple[int, str]]:
    """The attempts of ``current`` (and of the held rounds it resumes) that got no sure
    answer, each its number and its error (what the channel answered, if anything): each may
    have been carried out. ``last``: the round's attempt just finished, not saved yet."""
    earliest = _rounds_resumed(proposal, current)[-1]
    answers = dict(
        proposal.executions.filter(attempt__gte=earliest.first_attempt, unanswered=True)
        .exclude(pk=last.pk if last else None)
        .values_list("attempt", "error")
    )
    if last is not None and last.unanswered:
        answers[last.attempt] = last.error
    return sorted(answers.items())


def _unsure_answers_each(
    rounds: dict[int, Sequence[ExecutionRound]],
) -> dict[int, list[tuple[int, str]]]:
    """``_unsure_answers`` of many proposals' last rounds, their attempts read in one query:
    ``rounds``, each proposal's rounds, latest first (its last the one whose attempts are
    asked of, with the held rounds it resumes)."""
    earliest = {
        proposal_id: _resumed_among(each)[-1].first_attempt for proposal_id, each in rounds.items()
    }
    answers: dict[int, list[tuple[int, str]]] = {}
    if not earliest:
        return answers
    for proposal_id, attempt, error in (
        Execution.objects.filter(proposal_id__in=list(earliest), unanswered=True)
        .order_by("proposal_id", "attempt")
        .values_list("proposal_id", "attempt", "error")
    ):
        if attempt >= earliest[proposal_id]:
            answers.setdefault(proposal_id, []).append((attempt, error))
    return answers


def _worked_out_again(
    proposal: Proposal,
    executor: ChannelExecutor,
    action_type,
    campaigns: dict[str, Campaign],
    before: dict,
    current: ExecutionRound,
    moved: Sequence[TargetMove],
    actor: Actor,
) -> tuple[ExecutionRound, str]:
    """Before an attempt of a round whose request sets figures worked out from values that
    have ``moved`` since (an action approved before it landed on the same campaigns while it
    waited for its next attempt): sent as it is, it would set what the ledger no longer
    makes of the action. A round no attempt of which went yet (it waited its turn), nor of
    a held round it resumes, has its request worked out again, under its key, said on the
    proposal's history (its first attempt sets other figures than the round began with).
    Where no attempt of the round can have been carried out (each got an answer that it was
    not, or never reached the channel), or the channel reads first whether it was, a new round
    starts, with the request worked out from the ledger now and a new key, recorded on the
    proposal's history. Else it is not sent: the attempt fails, saying what the request
    would set, for a person to check on the channel. Returns the round to send and "", or
    the current round and why the attempt fails."""
    earliest = _rounds_resumed(proposal, current)[-1]  # a held round it resumes, key and all
    went_before = proposal.executions.filter(attempt__gte=earliest.first_attempt).exists()
    went = " and ".join(move.went for move in moved)
    was = _figures_said(executor.sets(current.request))
    comes_to = _figures_said(action_type.proposed_state(proposal.payload, campaigns))
    unsure = _unsure_answers(proposal, current)
    if unsure and not executor.retry_finds_out(current.request):
        # What happened only: what a retry would send is said beside Retry, as it stands
        # when read (``approvals.selectors.retry_may_repeat_said``), not stored here.
        return current, (
            f"Not sent again: since its request was worked out, {went}; it would have set "
            f"{was}, where the action came to {comes_to} by the ledger then."
        )
    key = _next_round_key(proposal) if went_before else current.key
    try:
        frozen = executor.freeze(
            proposal=proposal,
            action_type=action_type,
            campaigns=campaigns,
            targets=before,
            key=key,
            previous=None,
        )
    except ChannelError as error:
        return current, str(error)
    first_attempt = proposal.attempts_before + 1
    said = partial(_worked_out_again_said, first_attempt, went=went, was=was, comes_to=comes_to)
    # Each key named only where the channel gets it: Google Ads gets none.
    if not went_before:
        current.request = frozen.request
        current.save(update_fields=["request"])
        under_its_key = f"under its key ({key}), " if executor.sends_key else ""
        proposal._change_reason = said(f"{under_its_key}as nothing had been sent with it")
        update_with_history(Proposal, [(proposal, ())], actor=actor)
        return current, ""
    proposal._change_reason = (
        said(f"as a new request (key {key})", before=f"the request of key {current.key}")
        if executor.sends_key
        else said("as a new request", before="the request before it")
    ) + (
        f" {unsure_answers_said(unsure)}: the channel is read before this one sets anything, "
        "and finds it if it was."
        if unsure
        else " No attempt of it was carried out: each was refused, or never reached the channel."
    )
    update_with_history(Proposal, [(proposal, ())], actor=actor)
    return _round_begun(proposal, executor, frozen, first_attempt, at=timezone.now()), ""


def _worked_out_again_said(
    first_attempt: int, how: str, *, went: str, was: str, comes_to: str, before: str = ""
) -> str:
    """What the proposal's history says of its round's request worked out again before
    attempt ``first_attempt`` (``how``: under its key, or as a new request), since the figures
    it was worked out from moved (``went``): what it would have set (``was``), and what it sets
    now (``comes_to``). ``before``: the request it replaces, if a new one does."""
    if before:
        return (
            f"Its request worked out again before attempt {first_attempt}, {how}: since {before} "
            f"was worked out, {went}. That one would have set {was}; this one sets {comes_to}."
        )
    return (
        f"Its request worked out again before attempt {first_attempt}, {how}: since it was "
        f"worked out, {went}. It would have set {was}; it now sets {comes_to}."
    )


def _round_begun(
    proposal: Proposal, executor: ChannelExecutor, frozen: Frozen, first_attempt: int, *, at
) -> ExecutionRound:
    """A round of ``executor``'s attempts at the proposal, from ``first_attempt`` on, each
    sending the ``frozen`` request with its key."""
    return ExecutionRound.objects.create(
        proposal=proposal,
        executor=executor.name,
        key=frozen.key,
        first_attempt=first_attempt,
        request=frozen.request,
        started_at=at,
    )


def _figures_said(values: dict[str, dict]) -> str:
    """``{"brand-search": {"daily_budget": "720.00"}}`` in words: "brand-search's daily
    budget 720.00", joined with "and"."""
    return " and ".join(
        f"{campaign}'s {campaign_field_label(name)} {campaign_value_label(name, str(value))}"
        for campaign, fields in sorted(values.items())  # one order, however they were stored
        for name, value in sorted(fields.items())
    )


def _rounds_resumed(proposal: Proposal, current: ExecutionRound) -> list[ExecutionRound]:
    """``current`` and the rounds a kill switch held that it resumes, one after the other
    (a person approved each again), latest first: a retry cannot tell their attempts from
    its own either."""
    earlier = ExecutionRound.objects.filter(
        proposal_id=proposal.pk, first_attempt__lt=current.first_attempt
    ).order_by("-first_attempt")
    return _resumed_among(chain([current], earlier))


def _resumed_among(rounds: Iterable[ExecutionRound]) -> list[ExecutionRound]:
    """Of a proposal's rounds, latest first from the one asked of, that one and the rounds a
    kill switch held that it resumes (``_rounds_resumed``)."""
    rounds = iter(rounds)
    resumed = [next(rounds)]
    for before in rounds:
        if not before.held:
            break
        resumed.append(before)
    return resumed


def _resumed_said(proposal: Proposal, current: ExecutionRound, executor: ChannelExecutor) -> str:
    """What a round that resumed a held one as a new request says of it
    (``_resumption``); "" if it resumed none."""
    resumed = _rounds_resumed(proposal, current)
    if len(resumed) < 2:
        return ""
    return _resumption(
        proposal, resumed[1], current.key, current.request, current.first_attempt, executor
    )


def _resumption(
    proposal: Proposal,
    held: ExecutionRound,
    key: str,
    request: dict,
    first_attempt: int,
    executor: ChannelExecutor,
) -> str:
    """What a round resuming the ``held`` one (with ``key``, sending ``request`` with
    ``executor``, from attempt ``first_attempt`` on) must say if it goes as a new request the
    channel cannot tell from the held round's attempts that got no sure answer (each may have
    been carried out): with a new key, its endpoint (or what it sends) having changed while
    the kill switch held it; or, on a channel that gets no key (Google Ads), as every request
    there does. "" if it resumes with the same key, after no such attempt, or where the
    channel reads first whether it was done (``retry_finds_out``)."""
    if executor.retry_finds_out(request) or (executor.sends_key and held.key == key):
        return ""
    unsure = list(
        _this_round(proposal, held)
        .filter(attempt__lt=first_attempt, unanswered=True)
        .order_by("attempt")
        .values_list("attempt", "error")
    )
    if not unsure:
        return ""
    # Only what changed is said: on a channel that gets no key, a new key is no change.
    was, now = held.request.get("endpoint"), request.get("endpoint")
    if was != now:
        changed = f": its endpoint changed while a kill switch held it ({was} then, {now} now)"
    elif held.request != request:
        changed = ": what it sends changed while a kill switch held it"
    else:
        changed = ""
    new_key, held_key = (
        (f" (key {key})", f" with key {held.key}") if executor.sends_key else ("", "")
    )
    return (
        f"Resumed as a new request{new_key}{changed}. The channel cannot tell it from "
        f"{attempt_numbers([number for number, _ in unsure]).lower()}, sent "
        f"before{held_key}. {unsure_answers_said(unsure)}: check on the channel that it was "
        "not carried out twice."
    )


def _told_key(executor: ChannelExecutor, key: str) -> str:
    """``key`` as people are told it: "" where the executor's channel never gets it."""
    return key if executor.sends_key else ""


def _retry_key(
    proposal: Proposal,
    last: ExecutionRound,
    executor: ChannelExecutor,
    action_type,
    campaigns: dict,
    targets: dict,
) -> str:
    """The key a person's retry would send, as things stand: the next round's, unless the
    last round is one a kill switch held whose request the executor would resume as it is
    (``ChannelExecutor.freeze``), key and all."""
    key = _next_round_key(proposal)
    if not last.held:
        return key
    try:
        return executor.freeze(
            proposal=proposal,
            action_type=action_type,
            campaigns=campaigns,
            targets=targets,
            key=key,
            previous=last,
        ).key
    except ChannelError:
        return key


def retries_due(proposal_ids: Sequence[int]) -> dict[int, datetime]:
    """Of the executing proposals ``proposal_ids``, those waiting between attempts on their
    channel, by id, with when the next attempt is due: their last round's lease, where it
    is not held and none of its attempts is under way (registered in this app's ``ready()``
    for ``approvals.selectors.retries_awaited``)."""
    under_way = Execution.objects.filter(
        proposal_id=OuterRef("proposal_id"),
        attempt__gte=OuterRef("first_attempt"),
        status=ExecutionStatus.RUNNING,
    )
    due: dict[int, datetime] = {}
    seen = set()
    for round_ in (
        ExecutionRound.objects.filter(
            proposal_id__in=list(proposal_ids), proposal__status=ProposalStatus.EXECUTING
        )
        .annotate(under_way=Exists(under_way))
        .order_by("proposal_id", "-first_attempt")
    ):
        if round_.proposal_id in seen:
            continue  # an earlier round
        seen.add(round_.proposal_id)
        if not round_.held and not round_.under_way and round_.lease_until is not None:
            due[round_.proposal_id] = round_.lease_until
    return due


def attempt_keys_of(proposal: Proposal, attempts: Sequence[int] | None = None) -> dict[int, str]:
    """The key each of the proposal's attempts (``attempts``' numbers; all if None) was sent
    with, by attempt number (``_keys_sent``). One query (registered in this app's
    ``ready()`` for ``approvals.selectors.attempt_keys``)."""
    went = Execution.history.filter(proposal_id=proposal.pk)
    if attempts is not None:
        went = went.filter(attempt__in=list(attempts))
    return {attempt: key for (_, attempt), key in _keys_sent(went).items()}


def executions_keys_of(executions: Sequence[Execution]) -> dict[int, str]:
    """The key each of these attempts, of any proposals (a page of the list of executions),
    was sent with, by the attempt's id (``_keys_sent``). One query (registered in this app's
    ``ready()`` for ``approvals.selectors.executions_keys``)."""
    ids = {(execution.proposal_id, execution.attempt): execution.pk for execution in executions}
    if not ids:
        return {}
    went = Execution.history.filter(id__in=list(ids.values()))
    return {ids[made]: key for made, key in _keys_sent(went).items() if made in ids}


def _keys_sent(went: QuerySet) -> dict[tuple[int, int], str]:
    """The key each attempt among the history records ``went`` was sent with, by (proposal
    id, attempt number): its round's (the round of its proposal with the largest first
    attempt at or before it), for attempts that went to a channel that gets the key
    (``sends_key``). An attempt went if its first record has it under way (its request on
    its way, ``_MADE_AS``): one refused before it was sent is recorded failed at once, and
    went with no key."""
    its_round = ExecutionRound.objects.filter(
        proposal_id=OuterRef("proposal_id"), first_attempt__lte=OuterRef("attempt")
    ).order_by("-first_attempt")
    keys = {}
    for proposal_id, attempt, executor, key, round_executor in (
        went.filter(history_type="+", status=ExecutionStatus.RUNNING)
        .annotate(
            key=Subquery(its_round.values("key")[:1]),
            round_executor=Subquery(its_round.values("executor")[:1]),
        )
        .values_list("proposal_id", "attempt", "executor", "key", "round_executor")
    ):
        if key is None or executor != round_executor:
            continue  # no round: an executor that sends nothing to a channel (the ledger)
        try:
            sender = executor_named(executor)
        except LookupError:
            continue  # an executor no longer known: whether its channel got the key is not
        if getattr(sender, "sends_key", False):
            keys[proposal_id, attempt] = key
    return keys


def last_round_of(proposal: Proposal) -> LastRound | None:
    """The proposal's last round of channel attempts, as the console reads it
    (``approvals.selectors.last_round``): registered in this app's ``ready()``."""
    last = _current_round(proposal)
    if last is None:
        return None
    try:
        executor = executor_named(last.executor)
    except LookupError:
        return None
    key = _next_round_key(proposal)
    picked = _executor(proposal)  # the executor a retry would run on: the registry's pick now
    if last.held and isinstance(picked, ChannelExecutor):
        action_type = action_types.named(proposal.action_type)
        campaigns = campaigns_for(
            account=proposal.account, action_type=action_type, payload=proposal.payload
        )
        try:  # a campaign it names may be gone from the ledger: a retry would then be refused
            targets = ledger_snapshot(
                action_type=action_type, payload=proposal.payload, campaigns=campaigns
            )
            key = _retry_key(proposal, last, picked, action_type, campaigns, targets)
        except LookupError:
            pass
    resumed = _rounds_resumed(proposal, last)
    # The keys of rounds resumed one after another are the same or new (``freeze``), and a
    # retry resumes the last one's or sends a new one: those it cannot tell its request from
    # are the earliest rounds, up to the first with its key.
    same_key = [r.first_attempt for r in resumed if r.key == key]
    return LastRound(
        first_attempt=resumed[-1].first_attempt,
        before_attempt=min(same_key) if same_key else None,
        retry_key=_told_key(executor, key),
        retry_repeats=not executor.retry_finds_out(last.request),
        resumed=_resumed_said(proposal, last, executor),
    )


def _carried_out(executor: ChannelExecutor, current: ExecutionRound, account: Account) -> Outcome:
    """The executor's outcome; its ``ChannelError`` is a failure, retryable unless permanent."""
    try:
        return executor.carry_out(request=current.request, account=account)
    except ChannelError as error:
        return Outcome(
            "failed",
            retryable=not error.permanent,
            detail=str(error),
            retry_after=error.retry_after,
            unanswered=error.unanswered,
            request_ids=error.request_ids,
        )


def _record_carried_out(
    proposal: Proposal, attempt: Execution, action_type, campaigns, outcome: Outcome, actor
) -> Proposal:
    """The channel carried the action out: the ledger records it (the action type's record,
    then each value as the channel has it after), unless it no longer allows it; then the
    proposal is executed and those made against the values it replaced superseded. Its agent
    stopped while the request was under way stops nothing here: the channel did it, and the
    ledger records what the channel has (a refusal had left it on the values before)."""
    refusal = _ledger_refusal(proposal, action_type, campaigns)
    if not refusal:
        try:
            with transaction.atomic():
                action_type.apply(proposal.payload, campaigns, proposal)  # its record
                _ledger_reflects(campaigns, outcome.after, proposal)
        except InvalidInput as error:
            refusal = error.message
    if refusal:  # the channel did it; the ledger cannot say so: a person must look
        attempt.status = ExecutionStatus.FAILED
        attempt.error = f"Carried out on the channel, but the ledger refuses it: {refusal}"
        _attempt_saved(attempt, "carried out on the channel, refused by the ledger")
        return _fail(proposal, attempt.error)
    attempt.status = ExecutionStatus.SUCCEEDED
    attempt.after_state = ledger_snapshot(
        action_type=action_type, payload=proposal.payload, campaigns=campaigns
    )
    _attempt_saved(attempt, "carried out on the channel")
    # Moved as held here (as the ledger's own executor moves its proposals), with its account
    # as locked: read again by id, it came without, and those its move is followed for (a
    # spend change that ran, on an account whose total may be capped: the task that redraws
    # the Slack messages behind it) counted it as on a capped account, whichever it was on.
    said = _executed_said(
        proposal, attempt.before_state, attempt.after_state, action_type.records_created(proposal)
    )
    proposals_move_through(
        proposals=[proposal],
        moves=[Move(ProposalStatus.EXECUTED, "", timezone.now(), said_to_agent=said)],
        actor=actor,
    )
    _supersede_others([(proposal, attempt.after_state)], actor)
    executions_carried_out(proposals=[proposal], actor=actor)
    return proposal


def _ledger_reflects(campaigns: dict[str, Campaign], after: dict, proposal: Proposal) -> None:
    """Each campaign field the channel reported after the action, written to the ledger as the
    channel has it (its own rounding, say), where the action's record left it otherwise."""
    for external_id, fields in after.items():
        campaign = campaigns.get(external_id)
        if campaign is None:
            continue
        changed = []
        for name, value in fields.items():
            model_field = Campaign._meta.get_field(name)
            new = None if value in (None, "None") else model_field.to_python(value)
            if getattr(campaign, name) != new:
                setattr(campaign, name, new)
                changed.append(name)
        if changed:
            campaign._change_reason = f"proposal #{proposal.pk}: as the channel has it after"
            campaign.save(update_fields=[*changed, "updated_at"])


def _ledger_follows(
    campaigns: dict[str, Campaign],
    moves: Sequence[TargetMove],
    proposal: Proposal,
    channel: str,
    actor: Actor,
) -> None:
    """The values found changed on the channel before executing ``proposal``, written to the
    ledger (the platform's record of the channel: agents then reason from the value that
    holds, not the one superseded), and the other proposals made against the values they
    replaced ended or re-assessed, as after any change that lands. A campaign's values are
    taken together or not at all: one the ledger cannot hold (a status or strategy it has no
    name for, no value) leaves that campaign as the ledger has it, not half the channel's."""
    found: dict[str, dict[str, str | None]] = defaultdict(dict)
    for move in moves:
        found[move.campaign][move.field] = move.now
    taken = {}
    for external_id, fields in found.items():
        campaign = campaigns.get(external_id)
        # A value the channel reports as not set (a target CPA under a strategy the ledger
        # may have no name for): the ledger's campaign stands whole, not half the channel's.
        if campaign is None or None in fields.values():
            continue
        try:
            values = {
                name: Campaign._meta.get_field(name).clean(value, campaign)
                for name, value in fields.items()
            }
        except (FieldDoesNotExist, ValidationError):
            continue
        for name, value in values.items():
            setattr(campaign, name, value)
        campaign._change_reason = (
            f"as the channel ({channel}) has it: changed there, found before executing "
            f"proposal #{proposal.pk}"
        )
        campaign.save(update_fields=[*values, "updated_at"])
        taken[external_id] = fields
    proposals_supersede_after_changes(
        account_id=proposal.account_id,
        changes=[(taken, f"found changed on the channel ({channel})")],
        actor=actor,
    )


def _requests_under_way(
    account: Account, executor: ChannelExecutor, now
) -> list[tuple[int, set[str]]]:
    """The executor's requests for an account under way now (an attempt abandoned by a dead
    worker counts until its lease runs out): each one's proposal and the campaigns it acts on.
    Read under a lock on the account (the one the checks took before the campaigns,
    ``_checked_targets``), held until the caller's transaction ends, so two attempts never
    both count one place free, nor both go to the same campaigns."""
    accounts_lock([account])
    return [
        (proposal_id, set(targets or {}))
        for proposal_id, targets in Execution.objects.filter(
            status=ExecutionStatus.RUNNING,
            executor=executor.name,
            started_at__gt=now - executor.lease,
            proposal__account_id=account.pk,
        ).values_list("proposal_id", "proposal__target_snapshot")
    ]


def _current_round(proposal: Proposal) -> ExecutionRound | None:
    """The proposal's last round of channel attempts (read under the proposal's lock, which
    every write to its rounds holds)."""
    return ExecutionRound.objects.filter(proposal_id=proposal.pk).order_by("-first_attempt").first()


def _this_round(proposal: Proposal, current: ExecutionRound):
    """The attempts since the proposal last went to executing."""
    return proposal.executions.filter(attempt__gte=current.first_attempt)


def _next_round_key(proposal: Proposal) -> str:
    """The key of the proposal's next round, ``hitl-proposal-<id>-<n>``: ``n`` the round's
    number, one past the largest its rounds were sent with (a held round resumed with its key
    is the same round, and keys numbered by an earlier count may have skipped some), so a key
    sent once is never sent again with other figures. Read under the proposal's lock, which
    every write to its rounds holds."""
    prefix = f"hitl-proposal-{proposal.pk}-"
    numbers = [
        int(number)
        for key in ExecutionRound.objects.filter(proposal_id=proposal.pk).values_list(
            "key", flat=True
        )
        if key.startswith(prefix) and (number := key.removeprefix(prefix)).isdecimal()
    ]
    return f"{prefix}{max(numbers, default=0) + 1}"


def proposals_hold_back_now(*, switch: KillSwitch) -> HeldBackNow:
    """What the kill switch ``switch``, just engaged (or moved to another scope while
    engaged) in the caller's transaction, holds back, held back now rather than when each
    proposal's next attempt comes (a channel's backoff, up to an hour): every approved
    proposal it covers not yet carried out, queued or waiting between two attempts on its
    channel, goes back to a person as the executor sends it back before an attempt
    (``_kill_switch_hold``, ``_held_back``: a round it interrupts is held, and a person's
    approval resumes its request, key and all). One with a request at its channel now
    (an attempt under way) is not: the switch does not call it back, and the channel's answer
    decides it (failed, to be tried again, it goes back to a person then). Locked as the
    executor locks them (the proposals in id order, then their agents), so neither holds
    what the other is about to send. Registered in this app's ``ready()`` for
    ``policies.services.kill_switch_holds_apply``."""
    covered = Proposal.objects.filter(status__in=UNDER_WAY_STATUSES)
    if switch.scope == KillSwitchScope.ACCOUNT:
        covered = covered.filter(account_id=switch.account_id)
    elif switch.scope == KillSwitchScope.CHANNEL:
        covered = covered.filter(account__channel=switch.channel)
    candidates = list(covered.order_by("pk").values_list("pk", flat=True))
    held = HeldBackNow()
    if not candidates:
        return held
    actor = Actor.system("executor")
    with transaction.atomic(), acting_as(actor):
        locked = _locked_for_execution(candidates, skip_locked=False)
        sending = set(
            Execution.objects.filter(
                proposal_id__in=[proposal.pk for proposal in locked],
                status=ExecutionStatus.RUNNING,
            ).values_list("proposal_id", flat=True)
        )
        # Carried out, or moved on, while this waited for them: left out.
        under_way = [proposal for proposal in locked if proposal.status in UNDER_WAY_STATUSES]
        held.sending = [proposal.pk for proposal in under_way if proposal.pk in sending]
        # Which switches hold each, as before each attempt (``_kill_switch_hold``), the
        # switches read once for them all.
        engaged = kill_switches_told_apart(
            KillSwitch.objects.filter(engaged=True).select_related("account").order_by("pk")
        )
        holding = _kill_switch_holds_each(
            [proposal for proposal in under_way if proposal.pk not in sending], engaged
        )
        holds = []
        for proposal in under_way:
            if proposal.pk not in holding:
                continue
            if holding[proposal.pk]:
                holds.append((proposal, holding[proposal.pk]))
            else:
                held.passed.append(proposal.pk)
        if holds:
            _all_held_back(holds, actor)
        held.held = [proposal.pk for proposal, _ in holds]
        held.after_attempts = [
            proposal.pk
            for proposal, _ in holds
            if held_back_after_attempts(str(proposal.verdict_reasons[0]))
        ]
    return held


def _hold(current: ExecutionRound, *, until) -> None:
    """No attempt of the round starts before ``until``; nor does the stall sweep send one."""
    ExecutionRound.objects.filter(pk=current.pk).update(lease_until=until)


def _retry_later(proposal_id: int, delay: float) -> None:
    app.send_task(SEND_EXECUTION_REQUEST, (proposal_id,), countdown=delay)
