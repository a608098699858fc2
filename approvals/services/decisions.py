"""People's decisions on proposals waiting for review: approve (as proposed or edited) or
reject, one at a time or many at once, by the same rules (``approvals.services.acts``: who may
decide what, and when). Operators decide on actions; policy owners on the platform's proposed
changes to policy. A decision after the review window is refused, and the proposal expires
there and then. Retrying a failed execution is deciding again that it should run
(``proposal_retry``), by the rule of who may act on it."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from approvals import action_types
from approvals.models import (
    Decision,
    DecisionOutcome,
    Proposal,
    ProposalStatus,
    RejectionReason,
    VerdictOutcome,
)
from approvals.selectors import approval_said, as_proposed_records, decision_said
from approvals.services.acts import (
    RETRY_WOULD_FAIL_AGAIN,
    Act,
    AgentAccounts,
    Gone,
    LedgerAhead,
    ReviewWindowClosed,
    SinceProposed,
    act_refusal,
    agent_accounts_of,
    agents_hold,
    campaigns_named,
    no_longer_applies,
    no_longer_applies_each,
    run_refusal,
)
from approvals.services.expiry import proposals_expire_locked
from approvals.services.hooks import (
    approvals_counted,
    decisions_settled,
    executions_retried,
    reviews_restarted,
)
from approvals.services.lifecycle import (
    by_a_reviewer,
    proposal_lock,
    proposal_transition,
    proposals_transition,
)
from approvals.services.proposals import (
    EDITED_BEFORE_APPROVAL,
    action_assess,
    brand_findings_named,
    brand_findings_taken_out,
    edited_since_seen,
    guardrail_blocks_counting_approved,
    payload_seen,
    refreshed_facts,
    verdict_for,
)
from approvals.services.supersession import (
    Overtaken,
    TargetMove,
    approved_ahead_each,
    overtaken_found,
    proposals_supersede,
    sets_values,
    supersessions_tell_agents,
    target_moves_each,
)
from audit.actors import Actor, acting_as
from audit.history import create_with_history, update_with_history
from hitlproject.diffs import payload_diff
from hitlproject.errors import Conflict, DomainError, InvalidInput, NotFound
from hitlproject.vocabulary import (
    SENT_TO_RUN_AGAIN,
    how_many,
    note_checked,
    refusal_said,
    refuses_now,
)
from ledger.models import campaign_field_label
from policies.engine import GUARDED_RISK_MIN
from policies.services import CappedSpends, brand_guideline_findings

DECIDE_PERMISSION = "approvals.decide_proposal"


def _edit(proposal: Proposal, edited_payload: Any) -> dict[str, Any] | None:
    """The proposal's new fields if the reviewer's edit changes the action, else None. The
    edit is validated and assessed against the ledger like an agent's payload, and given a
    fresh verdict; one that a guardrail or a hard ceiling would block is refused."""
    try:
        assessed = action_assess(
            account=proposal.account,
            action_type_name=proposal.action_type,
            raw_payload=edited_payload,
        )
    except InvalidInput as error:
        by_field = error.field_errors.get("payload")
        raise InvalidInput(
            f"The edited action is not valid: {error.message}",
            field_errors=by_field if isinstance(by_field, dict) else None,
        ) from error
    if assessed.payload == proposal.payload:
        return None
    editable = action_types.named(proposal.action_type).editable_fields
    if editable is not None:
        fixed = sorted(
            name
            for name in assessed.payload.keys() | proposal.payload.keys()
            if name not in editable and assessed.payload.get(name) != proposal.payload.get(name)
        )
        if fixed:
            raise DomainError(
                f"Only {', '.join(sorted(editable))} may be edited here, not {', '.join(fixed)}."
            )
    verdict, _ = verdict_for(assessed=assessed, agent=proposal.agent, proposal_id=proposal.pk)
    if verdict.outcome == VerdictOutcome.BLOCK:
        raise DomainError("The edited action would be blocked: " + " ".join(verdict.reasons))
    # A person's edit answers for what it brings in: nothing the brand guidelines ban.
    action_type = action_types.named(proposal.action_type)
    found_before, found_after = (
        brand_guideline_findings(account=proposal.account, texts=action_type.texts(payload))
        for payload in (proposal.payload, assessed.payload)
    )
    brought_in = [finding for finding in found_after if finding not in found_before]
    if brought_in:
        raise DomainError(
            "The edit brings in what the brand guidelines ban: "
            + " ".join(brought_in)
            + " Change it, or approve the proposal as it is."
        )
    summary = assessed.assessment.summary
    note = f"{EDITED_BEFORE_APPROVAL} to: {summary}."
    if summary == proposal.summary:  # it reads as before (a creative's copy): say what changed
        changed = ", ".join(
            action_type.field_words(path)
            for path in payload_diff(proposal.payload, assessed.payload)
        )
        note = f"{EDITED_BEFORE_APPROVAL} ({changed} changed): {summary}."
    return {"payload": assessed.payload, **refreshed_facts(proposal, assessed, verdict, note)}


def _risk_after_edit_said(proposal: Proposal, edit: Mapping[str, Any]) -> str:
    """What an edit's history record says of the risk it lowers out of the band a guardrail
    raises it into, where what raised it was what the brand guidelines found in the words it
    took out: ". Risk 96 → 50: the edit took out “guaranteed”, which raised it; no guardrail
    speaks about it as edited." Nothing where the risk stays raised (a kill switch, or a term
    left in) or was not raised."""
    old, new = proposal.risk, edit["risk"]
    if old is None or old < GUARDED_RISK_MIN or new >= GUARDED_RISK_MIN:
        return ""
    taken_out = brand_findings_taken_out(proposal, before=proposal.payload, after=edit["payload"])
    if not taken_out:
        return ""
    return (
        f". Risk {old} → {new}: the edit took out {brand_findings_named(taken_out)}, which "
        "raised it; no guardrail speaks about it as edited"
    )


def _as_edited(proposal: Proposal, changes: Mapping[str, Any]) -> Proposal:
    """A stand-in for the proposal with its reviewer's edit, to judge (nothing is saved): every
    field the edit sets, its figures and effects too, as it would be saved; a hard ceiling
    lowered since it was routed judges the edited move, not the one proposed."""
    edited = copy.copy(proposal)
    for field_name, value in changes.items():
        setattr(edited, field_name, value)
    return edited


class GuardrailRefuses(DomainError):
    """A guardrail, or its policy's hard ceiling lowered since, refuses approving a proposal
    now (``guardrail_refusal``): a Slack message that offered Approve is redrawn without it
    once a press is refused so."""


def guardrail_refusal(proposal_id: int, reasons: Collection[str]) -> GuardrailRefuses:
    """Why a guardrail refuses approving a proposal now (one set since it was made, or a cap
    whose headroom the ledger has used since), or the hard ceiling of the policy that routed
    it, lowered below it since: each said as whose it is (``refuses_now``)."""
    return GuardrailRefuses(refusal_said(tuple(reasons), named=f"proposal #{proposal_id}"))


# By proposal id, what the guardrails refuse about each now
# (``guardrail_blocks_counting_approved``).
Guarded = Mapping[int, tuple[str, ...]]


def guardrail_refuses_said(proposal: Proposal, reasons: Collection[str]) -> str:
    """What a guardrail, or its policy's hard ceiling lowered since, refuses about a waiting
    or failed proposal now, as its page says it and as the queue marks it ("a guardrail
    refuses it now, as proposed: brand-search's daily budget would be 710.00 USD, above its
    cap of 660.00 USD."; "the hard ceiling of the policy that routed it refuses it now, as
    proposed: …"; a failed one's, "a guardrail refuses it now: …", in its failure's words)."""
    as_proposed = ", as proposed" if proposal.status == ProposalStatus.PENDING_REVIEW else ""
    return f"{refuses_now(tuple(reasons))}{as_proposed}: " + " ".join(reasons)


def retry_refusal(
    user: AbstractBaseUser,
    proposal: Proposal,
    *,
    gone: Gone | None = None,
    guarded: Guarded | None = None,
    lock: bool = False,
    agent_accounts: AgentAccounts | None = None,
) -> DomainError | None:
    """Why ``user`` may not retry ``proposal`` now (``act_refusal``), or why a guardrail
    refuses it now (a cap set since it failed, or one whose headroom the ledger or approvals
    not yet executed have used): its execution would refuse it again, so it is not sent, as
    its approval is not (``guardrail_refusal``). ``gone`` and ``guarded``
    (``guardrail_blocks_counting_approved`` of it), if already read; with ``lock``, the
    capped accounts are held until the caller's transaction ends, as an approval holds them."""
    refusal = act_refusal(user, proposal, Act.RETRY, gone=gone, agent_accounts=agent_accounts)
    if refusal is not None:
        return refusal
    return _guardrail_refuses_retry(proposal, guarded=guarded, lock=lock)


def retry_refused_now(
    proposal: Proposal,
    *,
    gone: Gone | None = None,
    guarded: Guarded | None = None,
    agent_accounts: AgentAccounts | None = None,
) -> DomainError | None:
    """Why a retry of the failed ``proposal`` is refused now, whoever would make it, in the
    words the refusal of a person's retry says it (``retry_refusal`` asks the same, after
    whether the person may): its agent stopped, what it would change changed since, a
    guardrail that refuses it. None if a retry by a person who may is let through (or it is
    not failed). Said in the messages telling of its failure, for every reader, in place of
    what a retry would send. ``gone``, ``guarded``, ``agent_accounts``: read once for many
    (``no_longer_applies_each``, ``guardrail_blocks_counting_approved``,
    ``agent_accounts_of``)."""
    if proposal.status != ProposalStatus.FAILED:
        return None
    refusal = run_refusal(proposal, Act.RETRY, agent_accounts=agent_accounts, gone=gone)
    if refusal is not None:
        return refusal
    return _guardrail_refuses_retry(proposal, guarded=guarded, lock=False)


def retries_refused_now(proposals: Sequence[Proposal]) -> dict[int, DomainError]:
    """``retry_refused_now`` of each failed one of ``proposals`` whose retry is refused, by
    id: what has changed since each was proposed, the guardrails and who may act where read
    once for all of them (a digest of many failures reads them in one go)."""
    failed = [proposal for proposal in proposals if proposal.status == ProposalStatus.FAILED]
    if not failed:
        return {}
    gone = no_longer_applies_each(failed)
    guarded = guardrail_blocks_counting_approved(failed, lock=False)
    agent_accounts = agent_accounts_of(failed)
    refused = {
        proposal.pk: retry_refused_now(
            proposal, gone=gone, guarded=guarded, agent_accounts=agent_accounts
        )
        for proposal in failed
    }
    return {proposal_id: refusal for proposal_id, refusal in refused.items() if refusal}


def _guardrail_refuses_retry(
    proposal: Proposal, *, guarded: Guarded | None, lock: bool
) -> DomainError | None:
    """Why a guardrail refuses retrying ``proposal`` now (its execution would refuse it
    again), or None."""
    if lock or guarded is None or proposal.pk not in guarded:
        guarded = guardrail_blocks_counting_approved([proposal], lock=lock)
    reasons = guarded[proposal.pk]
    if not reasons:
        return None
    said = guardrail_refusal(proposal.pk, reasons).message
    return DomainError(f"{said} {RETRY_WOULD_FAIL_AGAIN}")


@dataclass
class Decided:
    """What a set of decisions did: the proposals decided (of which those now approved to
    run, and those approved by this reviewer that wait for another), those that ended
    superseded instead (their targets had moved), those held back from a bulk approval (by
    the proposal they conflict with), and why the others were refused."""

    proposals: list[Proposal] = field(default_factory=list)
    refused: list[DomainError] = field(default_factory=list)
    approved: list[Proposal] = field(default_factory=list)
    awaiting: list[Proposal] = field(default_factory=list)
    superseded: list[tuple[Proposal, list[TargetMove]]] = field(default_factory=list)
    held: dict[int, Conflict] = field(default_factory=dict)

    def __iadd__(self, other: Decided) -> Decided:
        self.proposals += other.proposals
        self.refused += other.refused
        self.approved += other.approved
        self.awaiting += other.awaiting
        self.superseded += other.superseded
        self.held |= other.held
        return self

    def only(self) -> Proposal:
        """The one proposal decided (or superseded instead), or the reason it was refused,
        raised."""
        if self.refused:
            raise self.refused[0]
        if self.superseded:
            return self.superseded[0][0]
        return self.proposals[0]


def _decisions_record(
    *,
    proposal_ids: Collection[int],
    reviewer: AbstractBaseUser,
    outcome: str,
    reason_code: str = "",
    note: str = "",
    edits: Mapping[int, Any] | None = None,
    seen: Mapping[int, str] | None = None,
    gone: Gone | None = None,
) -> Decided:
    """Check the reviewer may decide each proposal, record the decisions and their feedback,
    and move on the proposals that now have the approvals their policy asks for, rows
    written together. ``edits`` holds reviewers' edited payloads by proposal id; ``seen``,
    the ``payload_seen`` of each action as the reviewer's page showed it, where known (a
    proposal edited since is refused); ``gone``, why each no longer applies or the ledger
    refuses it as proposed (``no_longer_applies_each``), if already read.

    Runs inside the caller's transaction and locks the proposals until it ends, in id order
    (so two sets of decisions never deadlock). A proposal that may not be decided is refused
    and left untouched, except one whose review window has closed: it expires, as the sweep
    would have expired it. The others go through. The caller commits the transaction (with
    the expiries) before raising a refusal."""
    note_checked(note)
    edits = edits or {}
    seen = seen or {}
    actor = Actor.for_user(reviewer)
    to_status = (
        ProposalStatus.APPROVED if outcome == DecisionOutcome.APPROVE else ProposalStatus.REJECTED
    )
    # The proposals locked, then their agents held as they are (``agents_hold``), and only
    # then read: a statement that waits for a row's lock reads every other row as it was when
    # it began, so an agent deactivated while a decision waited for its proposal (held by
    # another decision, a claim, an execution) was read active, and the approval it then gave
    # ended with the executor failing the action "Stopped".
    held = list(
        Proposal.objects.select_for_update()
        .filter(pk__in=proposal_ids)
        .order_by("pk")
        .values_list("pk", "agent_id")
    )
    agents_hold(agent_id for _, agent_id in held)
    locked = {
        proposal.pk: proposal
        for proposal in Proposal.objects.select_related("agent", "account")
        .filter(pk__in=[pk for pk, _ in held])
        .order_by("pk")
    }
    decided = Decided(
        refused=[
            NotFound(f"There is no proposal #{proposal_id}.")
            for proposal_id in sorted(set(proposal_ids) - locked.keys())
        ]
    )
    # Who has decided each proposal in its current round; approvals count per round.
    earlier: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for proposal_id, review_round, reviewer_id, given in Decision.objects.filter(
        proposal_id__in=locked
    ).values_list("proposal_id", "review_round", "reviewer_id", "outcome"):
        if review_round == locked[proposal_id].review_round:
            earlier[proposal_id].append((reviewer_id, given))

    now = timezone.now()  # once the rows are locked: nothing decides them meanwhile
    agent_accounts = agent_accounts_of(locked.values())
    deciding, changes, overdue = [], {}, []
    for proposal in locked.values():
        if outcome == DecisionOutcome.REJECT:
            act = Act.REJECT
        else:
            act = Act.EDIT if proposal.pk in edits else Act.APPROVE
        refusal = act_refusal(
            reviewer,
            proposal,
            act,
            reviewers=[reviewer_id for reviewer_id, _ in earlier[proposal.pk]],
            now=now,
            agent_accounts=agent_accounts,
            gone=gone,
        )
        if (
            refusal is None
            and proposal.pk in seen
            and payload_seen(proposal.payload) != seen[proposal.pk]
        ):
            refusal = edited_since_seen(proposal)
        if refusal is None and proposal.pk in edits:
            try:
                edit = _edit(proposal, edits[proposal.pk])
            except DomainError as error:
                refusal = error
            else:
                if edit is not None:
                    changes[proposal.pk] = edit
        if refusal is None:
            deciding.append(proposal)
        else:
            decided.refused.append(refusal)
            if isinstance(refusal, ReviewWindowClosed):
                overdue.append(proposal)
    overtaken: list[Overtaken] = []  # superseded instead of approved: their targets moved
    if outcome == DecisionOutcome.APPROVE:
        # Counting the spend already approved on a capped account (under its lock): approved
        # too, this one would fail once that runs. An edit is judged as edited (``_edit``
        # judged it against the ledger alone).
        blocks = guardrail_blocks_counting_approved(
            (_as_edited(p, changes[p.pk]) if p.pk in changes else p for p in deciding), lock=True
        )
        decided.refused += [
            guardrail_refusal(proposal_id, reasons)
            for proposal_id, reasons in blocks.items()
            if reasons
        ]
        deciding = [proposal for proposal in deciding if not blocks.get(proposal.pk)]
        # A proposal that sets a value whose target moved since it was made is superseded,
        # not approved: approving it would act on a meaning its agent did not propose.
        moved = target_moves_each(
            proposal
            for proposal in deciding
            if proposal.pk not in changes and sets_values(proposal)
        )
        overtaken += [
            # Who is in the proposal's history; its reason, which its agent reads, says what,
            # and which proposal moved it, where one did.
            overtaken_found(proposal, moved[proposal.pk], found="found when a reviewer approved it")
            for proposal in deciding
            if proposal.pk in moved
        ]
        proposals_supersede(supersessions=overtaken, actor=actor)
        decided.superseded += [(each.proposal, each.moves) for each in overtaken]
        deciding = [proposal for proposal in deciding if proposal.pk not in moved]
        # One already approved and about to run changes the same field first: this one
        # would only be superseded once it does, so it is not approved (nor its agent told so).
        ahead = approved_ahead_each(deciding, lock=True)
        decided.refused += list(ahead.values())
        deciding = [proposal for proposal in deciding if proposal.pk not in ahead]
        overdrawn = _overdrawn_locked(deciding, changes=changes, earlier=earlier)
        decided.refused += list(overdrawn.values())
        deciding = [proposal for proposal in deciding if proposal.pk not in overdrawn]

    before_decision = {proposal.pk: proposal.payload for proposal in deciding}
    restarted = set()
    with acting_as(actor):
        for proposal in deciding:
            if proposal.pk in changes:
                # Earlier approvals were of the action as it stood; the edited one starts afresh.
                if earlier.pop(proposal.pk, None):
                    proposal.review_round += 1
                    proposal.approvals_this_round = 0
                    restarted.add(proposal.pk)
                risk_said = _risk_after_edit_said(proposal, changes[proposal.pk])
                for field_name, value in changes[proposal.pk].items():
                    setattr(proposal, field_name, value)
                proposal._change_reason = (
                    f"edited by {reviewer.get_username()} before approval{risk_said}"
                )
                proposal.save()
    # When the decision was made, after any edit's save: its record, the proposals it
    # settles (their ``decided_at``) and those it leaves counting approvals all say it.
    decided_at = timezone.now()
    made = [
        Decision(
            created_at=decided_at,
            proposal=proposal,
            review_round=proposal.review_round,
            reviewer=reviewer,
            outcome=outcome,
            reason_code=reason_code,
            note=note,
            edited_payload=proposal.payload if proposal.pk in changes else None,
            summary=proposal.summary,
        )
        for proposal in deciding
    ]
    for decision in made:
        decision._change_reason = decision_said(decision)
    decisions = create_with_history(Decision, made, actor=actor, at=decided_at)

    said_to_each: dict[int, str] = {}
    if outcome == DecisionOutcome.APPROVE:
        reason, said_to_agent = by_a_reviewer("approved", reviewer)
        for proposal in deciding:
            proposal.approvals_this_round += 1
        complete = [
            proposal
            for proposal in deciding
            if proposal.approvals_this_round >= proposal.required_approvals
        ]
        # Its agent is told it was edited, as its feedback says ("approved_with_edits", read
        # by the same comparison with what it proposed): by this approval or by an earlier
        # one of its round, the summary it reads is not the one it proposed.
        proposed_payloads = as_proposed_payloads(
            [proposal.pk for proposal in complete], before_decision
        )
        said_to_each = {
            proposal.pk: _approved_said(
                proposal,
                edited=bool(payload_diff(proposed_payloads[proposal.pk], proposal.payload)),
            )
            for proposal in complete
        }
        # The others wait for more reviewers, with this approval counted.
        settling = {proposal.pk for proposal in complete}
        waiting = [proposal for proposal in deciding if proposal.pk not in settling]
        for proposal in waiting:
            proposal.updated_at = decided_at  # the API's updated_at says it changed
            proposal._change_reason = (
                f"{reason}: {proposal.approvals_this_round} of "
                f"{proposal.required_approvals} approvals"
            )
        update_with_history(
            Proposal,
            [
                (
                    proposal,
                    {
                        "approvals_this_round": proposal.approvals_this_round,
                        "updated_at": decided_at,
                    },
                )
                for proposal in waiting
            ],
            actor=actor,
            at=decided_at,
        )
        counted = ("approvals_this_round",)
    else:
        reason, said_to_agent = by_a_reviewer(
            "rejected", reviewer, f": {RejectionReason(reason_code).label}"
        )
        complete, counted = deciding, ()
        proposed_payloads = as_proposed_payloads(
            [proposal.pk for proposal in complete], before_decision
        )
    proposals_transition(
        proposals=complete,
        to_status=to_status,
        actor=actor,
        reason=reason,
        also_write=counted,
        said_to_agent=said_to_agent,
        said_to_each=said_to_each,
        at=decided_at,
    )
    # Last, as writing feedback makes other feedback writers wait until this transaction ends.
    supersessions_tell_agents(supersessions=overtaken, actor=actor)
    settled = {proposal.pk for proposal in complete}
    if restarted - settled:
        reviews_restarted(
            proposals=[p for p in deciding if p.pk in restarted - settled], actor=actor
        )
    if outcome == DecisionOutcome.APPROVE and len(settled) < len(deciding):
        approvals_counted(
            proposals=[proposal for proposal in deciding if proposal.pk not in settled],
            actor=actor,
        )
    decisions_settled(
        decisions=[decision for decision in decisions if decision.proposal_id in settled],
        actor=actor,
        proposed_payloads=proposed_payloads,
    )
    proposals_expire_locked(proposals=overdue)
    decided.proposals = deciding
    if outcome == DecisionOutcome.APPROVE:
        decided.approved = complete
        decided.awaiting = [proposal for proposal in deciding if proposal.pk not in settled]
    return decided


def _overdrawn_locked(
    deciding: list[Proposal],
    *,
    changes: Mapping[int, dict[str, Any]],
    earlier: Mapping[int, list[tuple[int, str]]],
) -> dict[int, DomainError]:
    """Of proposals about to be approved (locked, ``changes``: their reviewers' edits,
    ``earlier``: the decisions of their round before this one), those that take from a
    figure (a reallocation, from its source's daily budget) more than the moves approved
    before them leave (``LedgerAhead``), by proposal id, with why: approved, they would fail
    once those run. Judged under the campaigns' locks (taken here, if not already), with the
    moves under way read after them: two people approving two such moves at once are taken
    one after the other, and the second counts the first. Of these, each counts those
    before it that this approval sends to be executed (as ``bulk_approval_plan`` does); an
    edit is judged as edited."""
    judged = [
        _as_edited(proposal, changes[proposal.pk]) if proposal.pk in changes else proposal
        for proposal in deciding
    ]
    ledger = LedgerAhead.read(judged, lock=True)
    overdrawn: dict[int, DomainError] = {}
    for proposal in judged:
        if not action_types.named(proposal.action_type).ledger_may_refuse:
            continue
        why = ledger.refusal(proposal)
        if why and proposal.pk in changes:
            overdrawn[proposal.pk] = InvalidInput(f"The edited action is not valid: {why}")
        elif why:
            overdrawn[proposal.pk] = no_longer_applies(
                proposal,
                Act.APPROVE,
                gone={proposal.pk: SinceProposed.of(proposal, refused_as_proposed=why)},
            )
        else:
            # An edit starts its round afresh: earlier approvals no longer count.
            counted = 0 if proposal.pk in changes and earlier.get(proposal.pk) else None
            if approvals_needed_after_one_more(proposal, counted=counted) <= 0:
                ledger.count(proposal)
    return overdrawn


def _approved_said(proposal: Proposal, *, edited: bool) -> str:
    """What its agent is told of the approvals that let it run, naming no one: "approved by
    a reviewer", or under a two-person rule "approved by 2 reviewers", as the feedback
    ("Reviewer 1 approved: …") and the client's adapters ("decided_by": "2 reviewers") count
    them; "with edits" when the action that runs is not the one proposed."""
    done = "approved with edits" if edited else "approved"
    approvals = proposal.approvals_this_round
    return f"{done} by {approvals} reviewers" if approvals > 1 else f"{done} by a reviewer"


def as_proposed_payloads(
    proposal_ids: Collection[int], before_decision: Mapping[int, dict[str, Any]]
) -> dict[int, dict[str, Any]]:
    """The payloads as their agents proposed them (``as_proposed_records``), by proposal id;
    for a proposal with no such record (written by other means than the platform's
    services), its payload before this decision."""
    if not proposal_ids:
        return {}
    recorded = dict(as_proposed_records(list(proposal_ids)).values_list("id", "payload"))
    return {pk: recorded.get(pk, before_decision[pk]) for pk in proposal_ids}


def _check_reason(reason_code: str) -> None:
    if reason_code not in RejectionReason.values:
        raise DomainError(f"Choose a rejection reason: {', '.join(RejectionReason.values)}.")


def proposal_approve(
    *,
    proposal_id: int,
    reviewer: AbstractBaseUser,
    note: str = "",
    edited_payload: Any = None,
    seen: str | None = None,
) -> Proposal:
    """Record an approval, of the action as proposed or as the reviewer edited it; the
    proposal is approved once it has as many approvals as its policy asks. ``seen``: the
    ``payload_seen`` of the action as the reviewer's page showed it, if known."""
    with transaction.atomic():
        decided = _decisions_record(
            proposal_ids=[proposal_id],
            reviewer=reviewer,
            outcome=DecisionOutcome.APPROVE,
            note=note,
            edits={} if edited_payload is None else {proposal_id: edited_payload},
            seen=None if seen is None else {proposal_id: seen},
        )
    return decided.only()  # a refusal raised once its expiry, if any, is committed


def proposal_reject(
    *,
    proposal_id: int,
    reviewer: AbstractBaseUser,
    reason_code: str,
    note: str = "",
    seen: str | None = None,
) -> Proposal:
    _check_reason(reason_code)
    with transaction.atomic():
        decided = _decisions_record(
            proposal_ids=[proposal_id],
            reviewer=reviewer,
            outcome=DecisionOutcome.REJECT,
            reason_code=reason_code,
            note=note,
            seen=None if seen is None else {proposal_id: seen},
        )
    return decided.only()


def proposal_retry(*, proposal_id: int, reviewer: AbstractBaseUser) -> Proposal:
    """A person sends a failed proposal back to execution, by the rule of who may act on it:
    retrying is deciding again that it should run. Its agent, told of the failure, is told
    of the retry too, in its feed as by its callback. One that sets a value whose target
    moved since it was made is superseded instead, as an approval supersedes it."""
    reason, said_to_agent = by_a_reviewer(SENT_TO_RUN_AGAIN, reviewer)
    actor = Actor.for_user(reviewer)
    with transaction.atomic():
        proposal = proposal_lock(proposal_id)
        # Held in the order an approval holds them, the capped accounts, then the campaigns:
        # a guardrail that refuses it now is asked with none of their proposals executing
        # meanwhile; and a move that takes from a figure is judged counting the moves
        # approved before it and not yet run (``LedgerAhead``): one approved meanwhile by
        # someone else is counted, or waits for this retry and counts it. Its campaigns held
        # whatever its type, as an approval holds them (``approved_ahead_each``): a budget cut
        # retried counts for a reallocation submitted meanwhile, which waits for it.
        guarded = guardrail_blocks_counting_approved([proposal], lock=True)
        ledger = LedgerAhead.ahead_of([proposal], campaigns_named([proposal], lock=True))
        refusal = retry_refusal(
            reviewer,
            proposal,
            gone=no_longer_applies_each([proposal], ledger=ledger),
            guarded=guarded,
        )
        if refusal is not None:
            raise refusal
        # A value set against a figure that has moved since it was proposed: sent to run
        # again, it would only be superseded as it ran, its agent told first that it was
        # sent. It ends superseded here, as an approval ends one (``_decisions_record``).
        moved = target_moves_each([proposal]) if sets_values(proposal) else {}
        if moved:
            found = "found when a reviewer retried it"
            overtaken = [overtaken_found(proposal, moved[proposal.pk], found=found)]
            proposals_supersede(supersessions=overtaken, actor=actor)
            supersessions_tell_agents(supersessions=overtaken, actor=actor)
            return proposal
        retried = proposal_transition(
            proposal_id=proposal_id,
            to_status=ProposalStatus.APPROVED,
            actor=actor,
            reason=reason,
            said_to_agent=said_to_agent,
        )
        executions_retried(proposals=[retried], actor=actor)
    return retried


# Proposals decided per transaction in bulk: few enough that no row stays locked for long.
BULK_BATCH = 200


def _in_batches(proposal_ids: Collection[int], decide: Callable[[list[int]], Decided]) -> Decided:
    ids = sorted(set(proposal_ids))
    decided = Decided()
    for start in range(0, len(ids), BULK_BATCH):
        with transaction.atomic():
            decided += decide(ids[start : start + BULK_BATCH])
    return decided


# What a bulk decision's confirmation calls the proposals it leaves as they are (one no longer
# waiting, or not the reviewer's to decide), in its banner and beside each.
SKIPPED = "Skipped"

# The order proposals are listed, and approved together, in: the review queue's.
QUEUE_ORDER = ("-risk", "created_at", "pk")


@dataclass(frozen=True)
class BulkApprovalPlan:
    """What approving proposals together would do, read before any is decided, in the order
    they are listed (the queue's): those the reviewer may approve, and of them, those held
    back because an earlier one changes the same campaign field first, and those held back
    because, with the earlier ones executed, their account's total budget cap would refuse
    them (by proposal id, why)."""

    proposals: list[Proposal]
    refusals: dict[int, DomainError]
    held: dict[int, Conflict]
    over_cap: dict[int, Conflict] = field(default_factory=dict)
    # Why each no longer applies or the ledger refuses it as proposed
    # (``no_longer_applies_each``), as the plan read it.
    gone: Gone = field(default_factory=dict)
    # Those that take more from a figure than the moves approved with them (and before them)
    # leave: they would fail once those run.
    overdrawn: dict[int, Conflict] = field(default_factory=dict)

    @property
    def approving(self) -> int:
        """How many of them the approval decides."""
        return len(self.proposals) - len(self.refusals) - len(self.left_waiting)

    @property
    def left_waiting(self) -> dict[int, Conflict]:
        """Those the approval leaves waiting, each with why."""
        return self.held | self.over_cap | self.overdrawn

    def outcome(self, proposal: Proposal) -> str:
        """What approving it with the others would do, in words."""
        if proposal.pk in self.refusals:
            return f"{SKIPPED}: {self.refusals[proposal.pk].message}"
        if proposal.pk in self.left_waiting:
            return self.left_waiting[proposal.pk].message
        missing = approvals_needed_after_one_more(proposal)
        if missing > 0:
            return f"Approved by you; waits for {how_many(missing, 'more approval')}."
        return f"Approved: {approval_said(proposal)}."

    def executes(self, proposal: Proposal) -> bool:
        """Whether the approval sends it to be executed."""
        return (
            proposal.pk not in self.refusals
            and proposal.pk not in self.left_waiting
            and approvals_needed_after_one_more(proposal) <= 0
        )


def approvals_needed_after_one_more(proposal: Proposal, *, counted: int | None = None) -> int:
    """Approvals it still needs after one more (a person's about to approve it); ``counted``:
    the approvals of its round that count, if not ``approvals_this_round`` (an edit restarts
    its round)."""
    if counted is None:
        counted = proposal.approvals_this_round
    return proposal.required_approvals - counted - 1


def bulk_approval_plan(
    *,
    proposal_ids: Collection[int],
    reviewer: AbstractBaseUser,
    seen: Mapping[int, str] | None = None,
):
    """Plan approving ``proposal_ids`` together (see ``BulkApprovalPlan``). Two proposals that
    change the same campaign field cannot both run as approved: whichever executed second
    would act on a value its agent did not see. So, in the order listed, a proposal that sets
    a field an earlier one changes is held back (it will be superseded once the earlier one
    executes), and so is one that moves an amount on a field an earlier one sets (it will be
    re-assessed then, and should be decided on those figures). Amounts moved on the same
    field compose, so reallocations are approved together, as long as what they take from a
    figure adds up to no more than it holds once the moves approved before them have run:
    one that would take more, counting those before it, would fail once they run, so it is
    held back (``LedgerAhead``). An account's total budget cap
    judges each, as a batch's submissions are judged, counting the spend of those approved
    before it: one that the cap would refuse once they have executed would fail then, so it
    is held back too (as is, refused, one the guardrails refuse alone). ``seen``: the
    ``payload_seen`` of each as the confirmation showed it, where known: one edited since is
    refused, and what it would move counts for none after it."""
    seen = seen or {}
    proposals = list(
        Proposal.objects.select_related("agent", "account")
        .filter(pk__in=proposal_ids)
        .order_by(*QUEUE_ORDER)
    )
    reviewers = defaultdict(list)
    rounds = {proposal.pk: proposal.review_round for proposal in proposals}
    for proposal_id, review_round, reviewer_id in Decision.objects.filter(
        proposal_id__in=rounds
    ).values_list("proposal_id", "review_round", "reviewer_id"):
        if review_round == rounds[proposal_id]:
            reviewers[proposal_id].append(reviewer_id)
    refusals, held, over_cap, overdrawn, changed_by, read_by = {}, {}, {}, {}, {}, {}
    ahead = approved_ahead_each(proposals, lock=False)
    spends = CappedSpends()  # left counting those approved earlier, not yet executed
    alone = guardrail_blocks_counting_approved(proposals, lock=False, spends=spends)
    counted: dict[int, list[int]] = defaultdict(list)  # by account: those counted against it
    agent_accounts = agent_accounts_of(proposals)
    waiting = [p for p in proposals if p.status == ProposalStatus.PENDING_REVIEW]
    ledger = LedgerAhead.read(waiting)  # left counting those approved earlier, not yet run
    gone = no_longer_applies_each(waiting, ledger=ledger)
    for proposal in proposals:
        refusal = act_refusal(
            reviewer,
            proposal,
            Act.APPROVE,
            reviewers=reviewers[proposal.pk],
            agent_accounts=agent_accounts,
            gone=gone,
        )
        if (
            refusal is None
            and proposal.pk in seen
            and payload_seen(proposal.payload) != seen[proposal.pk]
        ):
            refusal = edited_since_seen(proposal)
        if refusal is None:
            refusal = ahead.get(proposal.pk)
        if refusal is None and alone.get(proposal.pk):
            refusal = guardrail_refusal(proposal.pk, alone[proposal.pk])
        if refusal is not None:
            refusals[proposal.pk] = refusal
            continue
        action_type = action_types.named(proposal.action_type)
        fields, read_from = (
            [
                (proposal.account_id, campaign, name, f"{campaign}'s {campaign_field_label(name)}")
                for campaign, names in which(proposal.payload).items()
                for name in names
            ]
            for which in (action_type.campaign_fields, action_type.figures_read_from)
        )
        # Two moves of an amount on one field compose; anything else changed first on a
        # field it sets supersedes it, or re-assesses it (an amount it moves, or a figure it
        # reads, as a status change reads the daily budget it starts or stops).
        clashes = [(*field, action_type.sets_values, False) for field in fields]
        clashes += [(*field, False, True) for field in read_from]
        for *key, words, sets, reads in clashes:
            reader = None if reads else read_by.get(tuple(key))
            if reader is not None:  # it would move the figure another was approved on
                held[proposal.pk] = Conflict(
                    f"Proposal #{proposal.pk} is left waiting: #{reader}, approved with it, is "
                    f"judged on {words} as it is, which this changes; decide it once "
                    f"#{reader} executes."
                )
                break
            earlier = changed_by.get(tuple(key))
            if earlier is None or not (sets or reads or earlier[1]):
                continue
            if sets:
                why = f"it would be superseded once #{earlier[0]} executes"
            else:
                why = f"it would be re-assessed once #{earlier[0]} executes; decide it then"
            held[proposal.pk] = Conflict(
                f"Proposal #{proposal.pk} is left waiting: #{earlier[0]}, approved with it, "
                f"changes {words} first, so {why}."
            )
            break
        else:
            why = ledger.refusal(proposal) if action_type.ledger_may_refuse else ""
            if why:
                overdrawn[proposal.pk] = Conflict(
                    f"Proposal #{proposal.pk} is left waiting: it would not execute: {why}"
                )
                continue
            spend = spends.of(
                action_type=action_type, account=proposal.account, payload=proposal.payload
            )
            if spend is not None:
                touched = {
                    external_id: spend.campaigns[external_id]
                    for external_id in action_type.campaign_fields(proposal.payload)
                    if external_id in spend.campaigns
                }
                judged = {
                    "action_type": action_type,
                    "account": proposal.account,
                    "payload": proposal.payload,
                    "campaigns": touched,
                }
                blocks = spends.blocks(**judged, say_counted=False)
                if blocks:
                    before = ", ".join(f"#{pk}" for pk in counted[proposal.account_id])
                    over_cap[proposal.pk] = Conflict(
                        f"Proposal #{proposal.pk} is left waiting: it would not execute, it "
                        f"would fail after {before}, approved with it: " + " ".join(blocks)
                    )
                    continue
                spends.count(**judged)
                counted[proposal.account_id].append(proposal.pk)
            if approvals_needed_after_one_more(proposal) <= 0:  # it runs once approved
                ledger.count(proposal)
            for *key, _ in fields:
                changed_by.setdefault(tuple(key), (proposal.pk, action_type.sets_values))
            for *key, _ in read_from:
                read_by.setdefault(tuple(key), proposal.pk)
    return BulkApprovalPlan(proposals, refusals, held, over_cap, gone, overdrawn)


def proposals_approve(
    *,
    proposal_ids: Collection[int],
    reviewer: AbstractBaseUser,
    note: str = "",
    seen: Mapping[int, str] | None = None,
) -> Decided:
    """Approve many proposals, by the same rules as one at a time, in batches of
    ``BULK_BATCH`` to a transaction: a proposal that may not be approved (decided meanwhile,
    say) is refused and reported, one that conflicts with another approved with it, or that
    its account's total budget cap would refuse once the others ran, is held back
    (``bulk_approval_plan``), and the rest go through."""
    plan = bulk_approval_plan(proposal_ids=proposal_ids, reviewer=reviewer, seen=seen)
    held = plan.left_waiting
    decided = _in_batches(
        set(proposal_ids) - held.keys(),
        lambda batch: _decisions_record(
            proposal_ids=batch,
            reviewer=reviewer,
            outcome=DecisionOutcome.APPROVE,
            note=note,
            seen=seen,
            # Read once for the plan, not again for each under its lock: what it reads (a
            # policy's ceiling, the campaigns a reallocation moves budget between) is not
            # held by the proposal's lock, and the execution asks it again under their own
            # locks (``PolicyChange.apply``; the executor's ``check`` of the campaigns).
            gone=plan.gone,
        ),
    )
    decided.held = held
    return decided


def proposals_reject(
    *,
    proposal_ids: Collection[int],
    reviewer: AbstractBaseUser,
    reason_code: str,
    note: str = "",
    seen: Mapping[int, str] | None = None,
) -> Decided:
    """Reject many proposals, as ``proposals_approve`` approves them."""
    _check_reason(reason_code)
    return _in_batches(
        proposal_ids,
        lambda batch: _decisions_record(
            proposal_ids=batch,
            reviewer=reviewer,
            outcome=DecisionOutcome.REJECT,
            reason_code=reason_code,
            note=note,
            seen=seen,
        ),
    )
