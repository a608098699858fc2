"""Every decision yields feedback the agent can pull."""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction

from approvals.models import (
    Agent,
    Decision,
    DecisionOutcome,
    Proposal,
    ProposalStatus,
)
from approvals.selectors import (
    decision_did,
    decision_said,
    review_window_ran_out,
    since_proposed_each,
    was_retried,
)
from approvals.services.acts import Act, check_may_act
from approvals.services.expiry import expiry_reason
from approvals.services.lifecycle import proposal_lock
from approvals.services.proposals import sent_back_after_attempts
from audit.actors import Actor, acting_as
from audit.history import create_with_history
from feedback.models import (
    AGENT_OUTCOMES_PER_PROPOSAL,
    Feedback,
    FeedbackKind,
    Outcome,
    OutcomeEffect,
)
from hitlproject.diffs import payload_diff, value_said
from hitlproject.errors import Conflict, DomainError, NotFound
from hitlproject.vocabulary import AFTER_AN_UNSURE_ATTEMPT, SENT_TO_RUN_AGAIN, note_checked
from hitlproject.wakeups import feedback_topic, wake_after_commit

# How a feedback record's history reason begins: it is written for its agent to learn from.
FOR_ITS_AGENT = "feedback for its agent: "

# The key of the transaction-scoped PostgreSQL lock that orders feedback writers.
_FEEDBACK_WRITERS_LOCK = 0x4F5F_FEED


def _in_commit_order() -> None:
    """Make the feedback this transaction writes visible in id order, after any written
    before it: agents read feedback by an id cursor, and a row that committed after a
    higher id was already read would be skipped. Writers queue on a lock held until their
    transaction ends (SQLite writers are serialised already), which is why a service writes
    its feedback last, just before its transaction commits: the lock is every decision's."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_FEEDBACK_WRITERS_LOCK])


def _wake_readers(agent_ids: Iterable[int]) -> None:
    """Once the feedback commits, wake the agents' requests waiting for it (long polls)."""
    wake_after_commit(feedback_topic(agent_id) for agent_id in agent_ids)


def _written(
    feedback: list[Feedback], *, actor: Actor, why: Callable[[Feedback], str]
) -> list[Feedback]:
    """Feedback written together, last in the caller's transaction (``_in_commit_order``),
    its agents' waiting requests woken once it commits; each record's history reason is
    ``why`` it was written ("feedback for its agent: rejected by operator: Too
    aggressive"), beside the service that wrote it (its actor)."""
    if not feedback:
        return []
    for item in feedback:
        item._change_reason = f"{FOR_ITS_AGENT}{why(item)}"
    _in_commit_order()
    _wake_readers(item.agent_id for item in feedback)
    return create_with_history(Feedback, feedback, actor=actor)


def feedback_record_decisions(
    *, decisions: Sequence[Decision], actor: Actor, proposed_payloads: Mapping[int, dict[str, Any]]
) -> list[Feedback]:
    """The decisions that settled their proposals, as the agents should learn from them,
    written together: a rejection, or the approval that made a proposal approved to run (an
    approval that leaves it waiting for another person tells the agent nothing yet). An edit
    is the field-by-field diff between what the agent proposed (``proposed_payloads``, by
    proposal id) and the action approved. Where several people decided in the round (an
    action that needs two approvals), the note says what each of them decided and wrote, in
    the order they decided ("Reviewer 1", "Reviewer 2": not by name, ``round_notes``). A
    rejection of one a reviewer had edited (their approval counted, and another rejected it;
    or edited and approved, it went back to a person before it ran) is told as the other
    endings without a run are (``EditTold.told_after``): its note goes on with the edit it
    was rejected as, its ``diff`` the edit field by field."""
    feedback = []
    notes = round_notes(decisions)
    edits = edits_told(
        [decision.proposal for decision in decisions if decision.outcome == DecisionOutcome.REJECT]
    )
    for decision in decisions:
        proposal = decision.proposal
        note = notes.get(decision.pk, decision.note)
        if decision.outcome == DecisionOutcome.REJECT:
            kind, diff = FeedbackKind.REJECTED, edits[proposal.pk].diff
            note = edits[proposal.pk].told_after(note, ProposalStatus.REJECTED)
        else:
            diff = payload_diff(proposed_payloads[proposal.pk], proposal.payload)
            kind = FeedbackKind.APPROVED_WITH_EDITS if diff else FeedbackKind.APPROVED
        feedback.append(
            Feedback(
                agent_id=proposal.agent_id,
                proposal=proposal,
                decision=decision,
                kind=kind,
                reason_code=decision.reason_code,
                note=note,
                diff=diff,
            )
        )
    decided = {decision.pk: decision for decision in decisions}
    return _written(
        feedback, actor=actor, why=lambda item: decision_said(decided[item.decision_id])
    )


def round_notes(decisions: Sequence[Decision]) -> dict[int, str]:
    """For each decision that ended a round in which others decided before it (the first of
    two approvals), where any of them wrote a note or it was a rejection: what each person of
    the round decided and wrote, in the order they decided, each as "Reviewer 1", "Reviewer
    2"…: the agent learns what every person said of its proposal, not only the last, and no
    one's name (the API tells an agent what was decided, not who decided it). A note's own
    lines are indented under its author's, so that no note can pass a line of its own off as
    another person's."""
    several = {
        decision.proposal_id: decision
        for decision in decisions
        if decision.proposal.required_approvals > 1
    }
    if not several:
        return {}
    earlier = Decision.objects.filter(proposal_id__in=several)
    rounds: dict[int, list[Decision]] = {}
    for other in earlier.order_by("pk"):
        ending = several[other.proposal_id]
        if other.review_round == ending.review_round and other.pk != ending.pk:
            rounds.setdefault(ending.pk, []).append(other)
    notes = {}
    for ending in several.values():
        round_ = [*rounds.get(ending.pk, ()), ending]
        # A rejection after someone approved is said so, notes or none: "rejected" alone
        # read as if nobody had agreed with the agent.
        if len(round_) > 1 and (
            ending.outcome == DecisionOutcome.REJECT
            or any(decision.note.strip() for decision in round_)
        ):
            notes[ending.pk] = "\n".join(
                _said(decision, number) for number, decision in enumerate(round_, start=1)
            )
    return notes


def decision_notes(decisions: Sequence[Decision]) -> dict[int, str]:
    """For each decision that ended its round, what the people of that round decided and
    wrote, a line each: ``round_notes`` where others decided before it; where it alone
    decided and wrote a note, that note in the same words ("Reviewer 1 rejected (Other):
    not now"), so that an agent reads one shape whether one person or two decided."""
    notes = round_notes(decisions)
    for decision in decisions:
        if decision.pk not in notes and decision.note.strip():
            notes[decision.pk] = _said(decision, 1)
    return notes


def _said(decision: Decision, number: int) -> str:
    """One person's decision of a round and what they wrote, as one entry of the merged note
    ("Reviewer 1 approved: Fine."): each says what its author decided, so that an approver's
    note is not read as the reason for a rejection. The note's lines after its first are
    indented (its line endings as one: a browser sends CRLF)."""
    did = decision_did(decision)
    if decision.outcome == DecisionOutcome.REJECT and decision.reason_code:
        did = f"{did} ({decision.get_reason_code_display()})"
    note = "\n  ".join(decision.note.strip().splitlines())
    return f"Reviewer {number} {did}" + (f": {note}" if note else ".")


def _each_told(
    kind: FeedbackKind,
    told: Iterable[tuple[Proposal, str]],
    *,
    actor: Actor,
    why: str | Callable[[Proposal], str],
    diffs: Mapping[int, dict[str, Any]] | None = None,
) -> list[Feedback]:
    """One kind of news for each proposal's agent (``told``: each proposal with the note its
    agent reads, ``diffs`` any field-by-field change by proposal id), written together with
    the reason ``why`` they were written (``_written``): one for all, or each proposal's."""
    told = list(told)
    reasons = {proposal.pk: why(proposal) if callable(why) else why for proposal, _ in told}
    return _written(
        [
            Feedback(
                agent_id=proposal.agent_id,
                proposal=proposal,
                kind=kind,
                note=note,
                diff=(diffs or {}).get(proposal.pk, {}),
            )
            for proposal, note in told
        ],
        actor=actor,
        why=lambda item: reasons[item.proposal_id],
    )


def _ended_told(
    kind: FeedbackKind,
    told: Sequence[tuple[Proposal, str]],
    *,
    actor: Actor,
    why: str | Callable[[Proposal], str],
    diffs: Mapping[int, dict[str, Any]] | None = None,
) -> list[Feedback]:
    """``_each_told`` for proposals that ended without running (expired, superseded,
    withdrawn for their agent): where a reviewer had edited one, its note goes on with the
    edit it ended as, in the words its callback's ``reason`` has (``EditTold.told_after``),
    and its ``diff`` is the edit field by field (as an ``approved_with_edits`` record's),
    unless its kind's ``diffs`` say something else (a supersession's: the value it saw and
    the value now, which its agent reads by that shape; its callback's ``edits`` has the
    edit)."""
    edits = edits_told([proposal for proposal, _ in told])
    diffs = diffs or {}
    return _each_told(
        kind,
        [
            (proposal, edits[proposal.pk].told_after(note, proposal.status))
            for proposal, note in told
        ],
        actor=actor,
        why=why,
        diffs={
            proposal.pk: diffs[proposal.pk] if proposal.pk in diffs else edits[proposal.pk].diff
            for proposal, _ in told
        },
    )


def feedback_record_supersessions(
    *, superseded: Sequence[tuple[Proposal, Sequence[Any], str]], actor: Actor
) -> list[Feedback]:
    """Proposals ended superseded (each with what moved and the reason it was ended): each
    agent learns, field by field, the value it saw and the value now (``moves``:
    ``approvals.services.supersession.TargetMove``), to propose again against it, and, where
    a reviewer had edited it, the edit it was superseded as (``_ended_told``). Written
    together, last in the caller's transaction, as all feedback is (``_in_commit_order``)."""
    return _ended_told(
        FeedbackKind.SUPERSEDED,
        [(proposal, note) for proposal, _, note in superseded],
        actor=actor,
        why="superseded: its target changed before it executed",
        diffs={
            proposal.pk: {
                f"{move.campaign}.{move.field}": {"saw": move.saw, "now": move.now}
                for move in moves
            }
            for proposal, moves, _ in superseded
        },
    )


# How a proposal that ended without running is said to have ended, by its status, where a
# reviewer had edited it ("It was superseded as a reviewer edited it, …"; "It was rejected as
# …" where one reviewer's edit was approved and another rejected it): its feedback's note and
# its callback's ``reason`` go on with the edit (``EditTold.told_after``).
ENDED_AS_EDITED = {
    ProposalStatus.REJECTED: "was rejected",
    ProposalStatus.EXPIRED: "expired",
    ProposalStatus.SUPERSEDED: "was superseded",
    ProposalStatus.WITHDRAWN: "was withdrawn",
}


@dataclass(frozen=True)
class EditTold:
    """A person's edit of a proposal, as its agent is told it: ``diff``, field by field from
    what it proposed to what it is now (the shape of an ``approved_with_edits`` record's);
    ``edits``, each edit in words with its editor's note, naming no one ("A reviewer edited
    it (new_bid: 2.60 → 2.40): 2.40 is enough for now", a note's further lines indented, as
    in ``_said``)."""

    proposed_summary: str
    summary: str
    diff: dict[str, Any]
    edits: tuple[str, ...]
    # How it came to read as it does ("as edited", "as edited and re-assessed").
    how: str = "as edited"
    # ``edits`` as told after a rejection: an edit of the rejection's own round without its
    # note, which the round's notes say already, with its author's decision ("Reviewer 1
    # approved with edits: …", ``round_notes``). It was told twice in one note.
    edits_rejected: tuple[str, ...] = ()

    @property
    def edited(self) -> bool:
        return bool(self.diff)

    def told_after(self, said: str, status: str) -> str:
        """``said``, what its agent is told of a proposal that ended with ``status``, going
        on, where it ended without running as a reviewer edited it (``ENDED_AS_EDITED``),
        with the edit in words (``said``); as it is otherwise."""
        ended = ENDED_AS_EDITED.get(status)
        if not self.edited or ended is None:
            return said
        return "\n".join(filter(None, [said, self.said(ended, status)]))

    def said(self, ended: str, status: str = "") -> str:
        """The edit told of a proposal that ``ended`` ("expired") without running: "It
        expired as a reviewer edited it, not as it proposed it: it proposed bid of
        brand-search 2.00 → 2.60 USD (+30.0%); as edited, bid of brand-search 2.00 → 2.40
        USD (+20.0%).", then each edit. Without it, an agent told "expired" beside its
        proposal's summary read a value it never proposed as its own, and nothing of the
        person who changed it or why."""
        return "\n".join(
            [
                f"It {ended} as a reviewer edited it, not as it proposed it: it proposed "
                f"{self.proposed_summary}; {self.how}, {self.summary}.",
                *(self.edits_rejected if status == ProposalStatus.REJECTED else self.edits),
            ]
        )


def edits_told(proposals: Sequence[Proposal]) -> dict[int, EditTold]:
    """Each of ``proposals``, by id, with what its agent proposed and any reviewer's edit
    that left it otherwise, as its agent is told them (``EditTold``: no ``diff`` where none
    did)."""
    by_id = {proposal.pk: proposal for proposal in proposals}
    told = {}
    for proposal_id, since in since_proposed_each(proposals).items():
        if not since.edited:
            told[proposal_id] = EditTold(since.proposed_summary, since.summary, {}, ())
            continue
        edits, edits_rejected = [], []
        before = since.proposed_payload
        this_round = by_id[proposal_id].review_round
        for decision in since.edit_decisions:
            changed = payload_diff(before, decision.edited_payload)
            before = decision.edited_payload
            if not changed:
                continue
            note = "\n  ".join(decision.note.strip().splitlines())
            edited = f"A reviewer edited it ({_changes_said(changed)})"
            edits.append(edited + (f": {note}" if note else "."))
            noted = decision.review_round == this_round  # in the rejection's round's notes
            edits_rejected.append(edits[-1] if not noted else f"{edited}.")
        told[proposal_id] = EditTold(
            proposed_summary=since.proposed_summary,
            summary=since.summary,
            diff=payload_diff(since.proposed_payload, by_id[proposal_id].payload),
            edits=tuple(edits),
            how=since.how.lower(),
            edits_rejected=tuple(edits_rejected),
        )
    return told


def _changes_said(diff: Mapping[str, Mapping[str, Any]]) -> str:
    """A diff in words, field by field: "new_bid: 2.60 → 2.40; amount: 280.00 → 200.00"."""
    return "; ".join(
        f"{path}: {value_said(change.get('from'))} → {value_said(change.get('to'))}"
        for path, change in diff.items()
    )


def feedback_record_expiries(*, proposals: Sequence[Proposal], actor: Actor) -> list[Feedback]:
    """Proposals expired: their agents are told, in one write, last in the caller's
    transaction (``_in_commit_order``), with when the window closed and how many of the
    approvals its policy asks for it had (not who gave them); and, where a reviewer edited
    it, the edit it expired as (``_ended_told``). Each record's history says why it expired
    in the words the proposal's own history has (``expiry_reason``)."""
    return _ended_told(
        FeedbackKind.EXPIRED,
        [(proposal, review_window_ran_out(proposal)) for proposal in proposals],
        actor=actor,
        why=lambda proposal: f"expired: {expiry_reason(proposal)}",
    )


def feedback_record_withdrawals(*, proposals: Sequence[Proposal], actor: Actor) -> list[Feedback]:
    """Proposals a reviewer withdrew for their agents: each agent learns it, with the
    reviewer's note if they wrote one, as it learns of a rejection, and, where a reviewer
    had edited it, the edit it was withdrawn as (``_ended_told``); written last in the
    caller's transaction (``_in_commit_order``)."""
    return _ended_told(
        FeedbackKind.WITHDRAWN,
        [(proposal, proposal.withdrawal_note) for proposal in proposals],
        actor=actor,
        why=f"withdrawn for it by {actor.name}",
    )


def feedback_record_failures(
    *, failures: Sequence[tuple[Proposal, str]], actor: Actor
) -> list[Feedback]:
    """Executions that failed (each proposal with the error): their agents learn it here as
    well as by the proposal, in one write, last in the caller's transaction
    (``_in_commit_order``)."""
    return _each_told(FeedbackKind.FAILED, failures, actor=actor, why="its execution failed")


def feedback_record_retries(*, proposals: Sequence[Proposal], actor: Actor) -> list[Feedback]:
    """Failed executions a person sent to run again: their agents, told of the failure, learn
    that a person judged it worth running again ("sent to run again by a reviewer", naming
    no one, as its callback says it); whether it then executed or failed again follows
    (``feedback_record_executions``, ``feedback_record_failures``). Written last in the
    caller's transaction (``_in_commit_order``)."""
    return _each_told(
        FeedbackKind.SENT_TO_RUN_AGAIN,
        [(proposal, proposal._said_to_agent) for proposal in proposals],
        actor=actor,
        why=f"{SENT_TO_RUN_AGAIN} by {actor.name}",
    )


def feedback_record_sent_back(*, proposals: Sequence[Proposal], actor: Actor) -> list[Feedback]:
    """Approved proposals sent back to a person (a kill switch held them back, a
    re-assessment re-routed them), before they ran or between two attempts: their agents,
    told they were approved, learn that a person must approve them again, and why, in the
    words their history has ("Held back before executing: the kill switch on account demo is
    engaged: … A person must approve it again.", or, after an attempt that got no sure
    answer, "Held back before its next attempt: … Attempt 1 was sent to the channel and got
    no answer that says whether the channel carried it out: it may have been carried out
    there. …"); the decision that follows comes as any other. Written last in the caller's
    transaction (``_in_commit_order``)."""
    return _written(
        [
            Feedback(
                agent_id=proposal.agent_id,
                proposal=proposal,
                kind=FeedbackKind.SENT_BACK,
                note=proposal._said_to_agent,
            )
            for proposal in proposals
        ],
        actor=actor,
        why=lambda item: _sent_back_said(item.note),
    )


def _sent_back_said(reason: str) -> str:
    """Why a ``sent_back`` record was written, as its history says it: before it ran, or,
    held back or re-routed after an attempt sent to the channel got no sure answer ("Held
    back before its next attempt: …", "Re-routed to a person before its next attempt: …"),
    after that attempt, which may have carried it out."""
    if sent_back_after_attempts(reason):
        return f"sent back to a person {AFTER_AN_UNSURE_ATTEMPT}"
    return "sent back to a person before it ran"


def feedback_record_executions(*, proposals: Sequence[Proposal], actor: Actor) -> list[Feedback]:
    """Executions carried out: of those a person had sent to run again after a failure, the
    agent learns it executed, in the words its callback has ("executed: brand-search's bid
    2.00 → 2.12"), since the last its feed said of them was the failure. Any other's
    execution is no news to the feed (its approval, or the agent's own answer, said it would
    run). Written last in the caller's transaction (``_in_commit_order``)."""
    return _each_told(
        FeedbackKind.EXECUTED,
        [(proposal, proposal._said_to_agent) for proposal in proposals if was_retried(proposal)],
        actor=actor,
        why=f"executed after it was {SENT_TO_RUN_AGAIN}",
    )


def _outcome_record(
    *,
    proposal: Proposal | None,
    proposal_id: int,
    actor: Actor,
    effect: str,
    metrics: Mapping[str, float],
    note: str,
) -> Outcome:
    if proposal is None:
        raise NotFound(f"There is no proposal #{proposal_id}.")
    if proposal.status != ProposalStatus.EXECUTED:
        raise Conflict(
            f"Proposal #{proposal.pk} is {proposal.get_status_display().lower()}; an outcome "
            "is reported once it has executed."
        )
    if effect and effect not in OutcomeEffect.values:
        raise DomainError(f"The effect is one of: {', '.join(OutcomeEffect.values)}.")
    if not (effect or metrics or note.strip()):
        raise DomainError("Report the effect, the figures measured, or a note.")
    note_checked(note)
    with transaction.atomic(), acting_as(actor):
        if actor.kind == "agent":
            _agent_outcomes_below_limit(proposal)
        outcome = Outcome.objects.create(
            proposal=proposal,
            effect=effect,
            metrics=dict(metrics),
            note=note,
            reported_by_kind=actor.kind,
            reported_by=actor.name,
        )
        if actor.kind == "user":  # what a person saw is feedback the agent should learn from
            _in_commit_order()
            _wake_readers([proposal.agent_id])
            told = Feedback(
                agent_id=proposal.agent_id,
                proposal=proposal,
                outcome=outcome,
                kind=FeedbackKind.OUTCOME,
                note=note,
            )
            told._change_reason = f"{FOR_ITS_AGENT}{actor.name} reported what it did"
            told.save()
    return outcome


def _agent_outcomes_below_limit(proposal: Proposal) -> None:
    """Refuse an agent's report on a proposal that has ``AGENT_OUTCOMES_PER_PROPOSAL`` of its
    agent's already; counted under the proposal's row lock, so that reports racing one
    another do not pass the limit together."""
    proposal_lock(proposal.pk)
    reported = Outcome.objects.filter(proposal=proposal, reported_by_kind="agent").count()
    if reported >= AGENT_OUTCOMES_PER_PROPOSAL:
        raise Conflict(
            f"Proposal #{proposal.pk} has {AGENT_OUTCOMES_PER_PROPOSAL} outcomes reported by "
            "its agent already, the most one proposal takes; nothing was recorded."
        )


def outcome_report_by_user(
    *,
    proposal_id: int,
    user: AbstractBaseUser,
    effect: str,
    note: str = "",
    metrics: Mapping[str, float] | None = None,
) -> Outcome:
    """A person says what an executed proposal did, later, if the rule of who may act lets
    them (operators on actions, policy owners on changes to policy); the agent gets it as
    feedback."""
    proposal = Proposal.objects.select_related("agent").filter(pk=proposal_id).first()
    if proposal is not None:
        check_may_act(user, proposal, Act.REPORT_OUTCOME)
    return _outcome_record(
        proposal=proposal,
        proposal_id=proposal_id,
        actor=Actor.for_user(user),
        effect=effect,
        metrics=metrics or {},
        note=note,
    )


def outcome_report_by_agent(
    *,
    proposal_id: int,
    agent: Agent,
    metrics: Mapping[str, float],
    effect: str = "",
    note: str = "",
) -> Outcome:
    """An agent (or a connector holding its key) reports what it measured after one of its own
    proposals executed."""
    return _outcome_record(
        proposal=Proposal.objects.filter(pk=proposal_id, agent=agent).first(),
        proposal_id=proposal_id,
        actor=Actor.for_agent(agent),
        effect=effect,
        metrics=metrics,
        note=note,
    )
