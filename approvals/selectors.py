"""Reads of proposals, owning their joins."""

import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import (
    Aggregate,
    Case,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    JSONField,
    Max,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    When,
)
from django.db.models.functions import Coalesce
from django.http import Http404
from django.template.defaultfilters import pluralize
from django.utils import timezone
from django.utils.text import capfirst

from approvals import action_types
from approvals.models import (
    RETRY_RECORDED,
    Agent,
    Decision,
    DecisionOutcome,
    Execution,
    ExecutionStatus,
    Proposal,
    ProposalStatus,
    WithdrawnBy,
    person_retries,
)
from approvals.services.acts import FigureAhead
from approvals.services.lifecycle import by_a_reviewer
from approvals.services.proposals import (
    HELD_BACK_ANY,
    NOTES,
    AssessedAction,
    campaigns_as_recorded,
    campaigns_for,
    hard_ceilings_lowered_since,
    hard_ceilings_refuse,
    held_back_after_attempts,
    held_back_by,
)
from audit.actors import changed_by
from hitlproject.diffs import payload_diff, value_said, word_runs
from hitlproject.formats import console_time
from hitlproject.periods import describe_duration
from hitlproject.vocabulary import (
    AFTER_AN_UNSURE_ATTEMPT,
    APPROVED_TO_RUN_STATUSES,
    BEFORE_ENOUGH_APPROVED,
    COUNTED_STATUSES,
    FINAL_STATUSES,
    MAY_HAVE_BEEN_CARRIED_OUT,
    MAY_STILL_RUN_STATUSES,
    PARTLY_CARRIED_OUT,
    SENT_TO_RUN_AGAIN,
    STATUS_REACHED,
    UNDER_WAY_STATUSES,
    CarriedOut,
    VerdictOutcome,
    and_joined,
    fails_at_next_attempt_said,
    how_many,
    retry_check,
    retry_may_repeat,
    sent_to_run_again_said,
)
from ledger.models import (
    Account,
    Campaign,
    CampaignStatus,
    Creative,
    campaign_field_label,
    campaign_value_label,
)
from policies.engine import HOLD_RULE_LABELS, Rule, format_magnitude
from policies.models import KillSwitch, KillSwitchScope, Policy
from policies.services import (
    KILL_SWITCH_NAME_ENDS,
    kill_switch_last_run,
    kill_switch_named_in,
    kill_switch_names,
    named_for_people,
    version_number,
    version_number_of,
)


@dataclass(frozen=True)
class WaitingUnderPolicy:
    """The proposals waiting for a person that a policy routed, in any of its versions: a
    change of the policy does not route them again (``waiting_under_policy``). ``refused``:
    how many of them the hard ceilings it was judged by refuse as proposed; with a draft
    about to be promoted into it, ``draft_refused``: how many the draft's would refuse, of
    which ``refused_by_both`` are refused already."""

    policy_id: int
    count: int
    refused: int = 0
    draft_refused: int = 0
    refused_by_both: int = 0
    # The approved ones it routed not yet carried out (queued, or between attempts on their
    # channel; not one with a request at its channel now, as the kill switch form counts
    # them): how many; how many its hard ceilings, lowered since they were routed, fail at
    # their next attempt (``approved_failing``, as the runner asks it), and the ids of the
    # first ``APPROVED_NAMED`` of them; with a draft, the same of those the draft's would
    # fail once it is promoted, ``approved_refused_by_both`` of which fail already.
    approved: int = 0
    approved_failing: int = 0
    approved_refused: tuple[int, ...] = ()
    approved_draft_failing: int = 0
    approved_draft_refused: tuple[int, ...] = ()
    approved_refused_by_both: int = 0
    draft_id: int | None = None


# How many of the approved proposals a hard ceiling fails a notice names by number, each
# linked to its page; the rest it counts, and links to the queue's list of them all
# (``FailingAtNextAttemptFilter``).
APPROVED_NAMED = 10


def _hard_ceiling(rule: Rule | None) -> bool:
    return rule is not None and (
        rule.block_above_magnitude is not None or rule.block_above_amount is not None
    )


def approved_under_way(policy_id: int) -> QuerySet[Proposal]:
    """The approved proposals the policy routed, in any of its versions, not yet carried out:
    queued, or between attempts on their channel; not one with a request at its channel now
    (the channel's answer decides it, as the kill switch form counts it apart)."""
    sending = Execution.objects.filter(proposal=OuterRef("pk"), status=ExecutionStatus.RUNNING)
    return Proposal.objects.filter(
        ~Exists(sending), status__in=UNDER_WAY_STATUSES, verdict_policy_id=policy_id
    )


def beyond_hard_ceilings(
    proposals: QuerySet[Proposal],
    rule: Rule,
    judged: Callable[[list[Proposal]], Collection[int]],
) -> QuerySet[Proposal]:
    """Those of ``proposals`` that ``rule``'s hard ceilings refuse, as a query: decided by the
    database wherever the stored figures decide it, so that none is read to count them or to
    list them (a policy with 50,000 of them read every one, and its form took seconds).

    The engine judges the exact magnitude (``hard_ceilings_refuse``); the stored one is it
    rounded half up to six places, as the ceiling is stored. A stored magnitude above the
    ceiling is therefore an exact one above it, one below it an exact one below; only one
    equal to the ceiling may be either (28.00004% stored as 28%): those few are read and
    ``judged`` (the ids, of those read, the ceilings refuse), as the engine judges them. An
    amount is judged as stored. The rule's scope (action type, agent, account, agent kind,
    channel) is matched in the database too, as ``Rule.matches`` matches it."""
    if not _hard_ceiling(rule):
        return proposals.none()
    scoped = proposals.filter(action_type=rule.action_type)
    if rule.agent_id is not None:
        scoped = scoped.filter(agent_id=rule.agent_id)
    if rule.account_id is not None:
        scoped = scoped.filter(account_id=rule.account_id)
    if rule.agent_kind:
        scoped = scoped.filter(agent__kind=rule.agent_kind)
    if rule.channel:
        scoped = scoped.filter(account__channel=rule.channel)
    above, at = Q(pk__in=[]), Q(pk__in=[])
    if rule.block_above_magnitude is not None:
        above |= Q(magnitude__gt=rule.block_above_magnitude)
        at = Q(magnitude=rule.block_above_magnitude)
    if rule.block_above_amount is not None:
        above |= Q(amount__gt=rule.block_above_amount)
    boundary = list(
        scoped.filter(at)
        .exclude(pk__in=scoped.filter(above).values("pk"))
        .select_related("agent", "account", "verdict_policy")
        .order_by("pk")
    )
    found = set(judged(boundary)) if boundary else set()
    return scoped.filter(above | Q(pk__in=sorted(found)))


def approved_failing(policy_id: int, rule: Rule | None) -> QuerySet[Proposal]:
    """The approved proposals the policy routed, not yet carried out, that its hard ceilings
    (``rule``: the policy as saved now, live and switched on; None: it decides nothing)
    fail at their next attempt, lowered since they were routed, as the runner asks it
    (``hard_ceilings_lowered_since``): those routed by its latest version and not re-assessed
    since are within them."""
    approved = approved_under_way(policy_id)
    if not _hard_ceiling(rule):
        return approved.none()
    latest = Policy.history.filter(id=policy_id).aggregate(latest=Max("history_id"))["latest"]
    if latest is None:
        return approved.none()
    since = approved.filter(
        Q(verdict_policy_version__isnull=False) | Q(reassessed_policy_version__isnull=False)
    ).exclude(verdict_policy_version=latest, reassessed_policy_version__isnull=True)

    def judged(proposals: list[Proposal]) -> Collection[int]:
        return hard_ceilings_lowered_since(proposals, latest={policy_id: latest}).keys()

    return beyond_hard_ceilings(since, replace(rule, version=latest), judged)


def approved_draft_fails(policy_id: int, draft: Rule | None) -> QuerySet[Proposal]:
    """The approved proposals the policy routed, not yet carried out, that ``draft``'s hard
    ceilings (a draft about to be promoted into it) would fail at their next attempt once it
    is promoted."""
    approved = approved_under_way(policy_id)
    if not _hard_ceiling(draft):
        return approved.none()

    def judged(proposals: list[Proposal]) -> Collection[int]:
        return {p.pk for p in proposals if hard_ceilings_refuse(p, draft)}

    return beyond_hard_ceilings(approved, draft, judged)


def _first_named(proposals: QuerySet[Proposal]) -> tuple[int, ...]:
    return tuple(proposals.order_by("pk").values_list("pk", flat=True)[:APPROVED_NAMED])


def routed_still_there(
    policy_id: int, *, agent_id, agent_kind: str, account_id, channel: str
) -> list[int]:
    """The proposals the policy routed in part of its scope (another policy decides there
    now, for what is proposed from now on: ``policies_deciding_instead``'s overlap, blank
    where any) that are still its own: waiting for a person, or approved and not yet carried
    out (``approved_under_way``), the first few by id. Its hard ceilings hold for them (a
    person's approval refused, the next attempt failed: ``hard_ceilings_lowered_since``), as
    they did for #1-#3 while its page said none of its settings held there."""
    still = Proposal.objects.filter(
        verdict_policy_id=policy_id, status=ProposalStatus.PENDING_REVIEW
    ) | approved_under_way(policy_id)
    if agent_id is not None:
        still = still.filter(agent_id=agent_id)
    if agent_kind:
        still = still.filter(agent__kind=agent_kind)
    if account_id is not None:
        still = still.filter(account_id=account_id)
    if channel:
        still = still.filter(account__channel=channel)
    return list(still.order_by("pk").values_list("pk", flat=True)[: APPROVED_NAMED + 1])


def waiting_under_policy(
    policy_id: int, *, rule: Rule | None = None, draft: Rule | None = None
) -> WaitingUnderPolicy:
    """What waits for a person under the policy, and, with ``rule`` (the policy as saved now),
    how many of those its hard ceilings refuse as proposed: a person's approval of them is
    refused (``hard_ceilings_lowered_since``); with ``draft`` (a draft about to be promoted
    into it), how many the draft's hard ceilings would refuse once it is. Then the approved
    ones not yet carried out, counted, and those the hard ceilings fail at their next attempt
    counted and the first few named, in a few statements however many there are."""
    waiting = Proposal.objects.filter(
        status=ProposalStatus.PENDING_REVIEW, verdict_policy_id=policy_id
    )
    approved = approved_under_way(policy_id).count()
    if not _hard_ceiling(rule) and not _hard_ceiling(draft):
        return WaitingUnderPolicy(policy_id=policy_id, count=waiting.count(), approved=approved)
    proposals = list(waiting.select_related("agent", "account").order_by("pk"))
    now = {p.pk for p in proposals if rule is not None and hard_ceilings_refuse(p, rule)}
    then = {p.pk for p in proposals if draft is not None and hard_ceilings_refuse(p, draft)}
    result = WaitingUnderPolicy(
        policy_id=policy_id,
        count=len(proposals),
        refused=len(now),
        draft_refused=len(then),
        refused_by_both=len(now & then),
        approved=approved,
        draft_id=draft.policy_id if draft is not None else None,
    )
    if not approved:
        return result
    # As the runner asks it at their next attempt: a hard ceiling lowered since they were
    # routed (with ``rule`` only: switched off, the policy fails none).
    failing = approved_failing(policy_id, rule)
    drafted = approved_draft_fails(policy_id, draft)
    failing_count = failing.count() if _hard_ceiling(rule) else 0
    drafted_count = drafted.count() if _hard_ceiling(draft) else 0
    return replace(
        result,
        approved_failing=failing_count,
        approved_refused=_first_named(failing) if failing_count else (),
        approved_draft_failing=drafted_count,
        approved_draft_refused=_first_named(drafted) if drafted_count else (),
        approved_refused_by_both=(
            drafted.filter(pk__in=failing.values("pk")).count()
            if failing_count and drafted_count
            else 0
        ),
    )


def with_deciding_policy_name(queryset: QuerySet[Proposal]) -> QuerySet[Proposal]:
    """Each proposal with ``deciding_policy_name``: the name its policy had in the version
    that routed it (read from that history record, by its id), not the name it has today."""
    return queryset.annotate(
        deciding_policy_name=Subquery(
            Policy.history.filter(history_id=OuterRef("verdict_policy_version")).values("name")[:1]
        )
    )


def policy_name_then(proposal: Proposal) -> str:
    """The name of the policy that routed the proposal, as it was in the version that did;
    its name now only where that version is not on record (or not read: a proposal just
    routed, whose version is the policy as it is now)."""
    return getattr(proposal, "deciding_policy_name", None) or proposal.verdict_policy.name


def with_deciding_policy_number(queryset: QuerySet[Proposal]) -> QuerySet[Proposal]:
    """Each proposal with ``deciding_policy_number``: the number, among its policy's own
    versions (1: as first saved, as the console counts them), of the version that routed it
    (read by its history record, in the same statement: no query per proposal)."""
    return queryset.annotate(
        deciding_policy_number=version_number_of(
            OuterRef("verdict_policy_id"), OuterRef("verdict_policy_version")
        )
    )


def policy_number_then(proposal: Proposal) -> int | None:
    """The number of the policy version that routed the proposal among its policy's own, as
    the console counts them: read with it (``with_deciding_policy_number``); for one just
    routed, carried by the policy in force that routed it (``policies_in_force`` reads each
    with its number); else asked for. None where that version is not on record."""
    if hasattr(proposal, "deciding_policy_number"):
        return proposal.deciding_policy_number
    policy = proposal.verdict_policy
    if getattr(policy, "version", None) == proposal.verdict_policy_version and hasattr(
        policy, "version_number"
    ):
        return policy.version_number
    return version_number(proposal.verdict_policy_id, proposal.verdict_policy_version)


def with_reassessed_policy(queryset: QuerySet[Proposal]) -> QuerySet[Proposal]:
    """Each proposal with the policy version its last re-assessment was reached under, read
    from that version's history record in the same statement: ``reassessed_policy_id``,
    ``reassessed_policy_name`` (its name then) and ``reassessed_policy_number`` (as the
    console counts its versions); None where it was never re-assessed or none matched."""
    record = Policy.history.filter(history_id=OuterRef("reassessed_policy_version"))
    return queryset.annotate(
        reassessed_policy_id=Subquery(record.values("id")[:1]),
        reassessed_policy_name=Subquery(record.values("name")[:1]),
    ).annotate(
        reassessed_policy_number=version_number_of(
            OuterRef("reassessed_policy_id"), OuterRef("reassessed_policy_version")
        )
    )


def reassessed_otherwise(proposal: Proposal) -> bool:
    """Whether its last re-assessment (its target moved, or a reviewer edited it) was reached
    under another policy version than the one that routed it, or under none: its reasons,
    holds and approvals needed are that verdict's, not the routing one's."""
    return (
        proposal.reassessed_at is not None
        and proposal.reassessed_policy_version != proposal.verdict_policy_version
    )


def routing_policy_ref(proposal: Proposal) -> dict[str, Any] | None:
    """The policy version that routed the proposal (``policy_name_then``,
    ``policy_number_then``), as the API refers to a policy; None if none matched it."""
    if proposal.verdict_policy_id is None:
        return None
    return {
        "id": proposal.verdict_policy_id,
        "name": policy_name_then(proposal),
        "version": proposal.verdict_policy_version,
        "number": policy_number_then(proposal),
    }


def reassessed_policy_ref(proposal: Proposal) -> dict[str, Any] | None:
    """The policy version its last re-assessment was reached under, as the API refers to a
    policy (read with ``with_reassessed_policy``, else asked for); None if none matched it
    then, or the proposal was never re-assessed."""
    version = proposal.reassessed_policy_version
    if version is None:
        return None
    if hasattr(proposal, "reassessed_policy_name"):
        policy_id, name = proposal.reassessed_policy_id, proposal.reassessed_policy_name
        number = proposal.reassessed_policy_number
    else:
        record = Policy.history.filter(history_id=version).values("id", "name").first()
        if record is None:
            return None
        policy_id, name = record["id"], record["name"]
        number = version_number(policy_id, version)
    return {"id": policy_id, "name": name, "version": version, "number": number}


def verdict_policy_ref(proposal: Proposal) -> dict[str, Any] | None:
    """The policy version that reached the verdict the proposal carries (SPEC's
    ``verdict.policy``): the one that routed it, or, once a re-assessment evaluated it again
    under another (its reasons are then that verdict's), that one."""
    if reassessed_otherwise(proposal):
        return reassessed_policy_ref(proposal)
    return routing_policy_ref(proposal)


def deployed_creatives(proposal: Proposal) -> list[Creative]:
    """The creatives a creative batch's execution put in the ledger, in order, each with its
    campaign."""
    return list(proposal.deployed_creatives.select_related("campaign").order_by("pk"))


def proposals_with_details() -> QuerySet[Proposal]:
    return with_reassessed_policy(
        with_deciding_policy_number(
            with_deciding_policy_name(
                Proposal.objects.select_related("account", "verdict_policy").prefetch_related(
                    Prefetch("decisions", queryset=Decision.objects.order_by("created_at")),
                    Prefetch("executions", queryset=Execution.objects.order_by("attempt")),
                    "outcomes",
                    Prefetch(
                        "deployed_creatives",
                        queryset=Creative.objects.only("pk", "deployed_by_proposal"),
                    ),
                )
            )
        )
    )


def proposal_list_for_agent(
    *,
    agent: Agent,
    status: str | None = None,
    action_type: str | None = None,
    since: datetime | None = None,
) -> QuerySet[Proposal]:
    queryset = proposals_with_details().filter(agent=agent)
    if status:
        queryset = queryset.filter(status=status)
    if action_type:
        queryset = queryset.filter(action_type=action_type)
    if since:
        queryset = queryset.filter(created_at__gte=since)
    return queryset


def proposal_get_for_agent(*, agent: Agent, proposal_id: int) -> Proposal:
    """An agent's own proposal; another agent's is as good as absent (404)."""
    proposal = proposals_with_details().filter(agent=agent, pk=proposal_id).first()
    if proposal is None:
        raise Http404("No such proposal.")
    return proposal


def as_proposed_records(proposal_ids) -> QuerySet:
    """Each proposal as its agent made it: its first history record (``history_type`` "+":
    the payload, summary and the targets' values then), one per proposal, whatever was
    edited, re-assessed or decided since. ``proposal_ids`` may be a list or a queryset."""
    first = Proposal.history.filter(id=OuterRef("id"), history_type="+").order_by("history_id")
    return Proposal.history.filter(
        id__in=proposal_ids, history_id=Subquery(first.values("history_id")[:1])
    )


def proposed_payloads(proposals: Iterable[Proposal]) -> dict[int, Any]:
    """The payloads as their agents proposed them (``as_proposed_records``), by id, of those
    among ``proposals`` a reviewer edited since (a decision of theirs holds an edited
    payload; prefetch their decisions to read many): one query, none if no one edited any."""
    edited = [
        proposal.pk
        for proposal in proposals
        if any(decision.edited_payload is not None for decision in proposal.decisions.all())
    ]
    if not edited:
        return {}
    return dict(as_proposed_records(edited).values_list("id", "payload"))


def as_proposed(proposal: Proposal):
    """The proposal as its agent made it (``as_proposed_records``); the proposal itself where
    its history holds no such record (made before it had one)."""
    return as_proposed_records([proposal.pk]).first() or proposal


@dataclass(frozen=True)
class FieldEdit:
    """A field a reviewer changed, as its agent was told (the feedback's diff), in runs for a
    person to read: ("kept" | "removed" | "added", text)."""

    path: str
    runs: list[tuple[str, str]]


@dataclass(frozen=True)
class ProposalEdit:
    decision: Decision
    fields: list[FieldEdit]


@dataclass(frozen=True)
class SinceProposed:
    """What its agent proposed, and what became of the action since: the one reading of it
    that the proposal's page (its heading, its table of states, what each edit changed) and
    its messages (by email and on Slack) all say, so that none tells a person another story.
    ``edited``: a person's edit changed the action (its payload is not its agent's);
    ``reassessed``: the ledger's figures it was assessed against moved since it was proposed
    (its target snapshot is not the one it was made with), as it waited, as it was edited or
    as it was about to run; ``summary``: what it means now."""

    proposed_summary: str
    proposed_payload: Any
    proposed_snapshot: Any
    summary: str
    edited: bool
    reassessed: bool
    # Each decision that edited it, oldest first (with its reviewer), whether or not a later
    # edit took the change back.
    edit_decisions: tuple[Decision, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether the action is other than its agent proposed it, edited or re-assessed."""
        return self.edited or self.reassessed

    @property
    def reads_otherwise(self) -> bool:
        """Whether it now reads otherwise than its agent proposed it: where a page or a
        message says what it means now beside what was proposed."""
        return self.summary != self.proposed_summary

    @property
    def how(self) -> str:
        """How it came to read as it does: "As edited", "As edited and re-assessed", "As
        re-assessed"."""
        if not self.edited:
            return "As re-assessed"
        return f"As edited{' and re-assessed' if self.reassessed else ''}"

    @property
    def editors(self) -> list[str]:
        """Who edited it, in order, each once."""
        return list(dict.fromkeys(d.reviewer.get_username() for d in self.edit_decisions))

    @property
    def how_by(self) -> str:
        """``how``, naming who edited it: "As edited by operator and re-assessed"."""
        if not self.edited or not self.editors:
            return self.how
        by = f" by {' and '.join(self.editors)}"
        return f"As edited{by}{' and re-assessed' if self.reassessed else ''}"

    @property
    def edits(self) -> list[ProposalEdit]:
        """What each decision that edited it changed, oldest first: the diff, by the same rule
        as the agent's feedback, between the action before that decision (the agent's own, or
        an earlier reviewer's edit) and the action the decision approved."""
        before = self.proposed_payload
        edits = []
        for decision in self.edit_decisions:
            diff = payload_diff(before, decision.edited_payload)
            before = decision.edited_payload
            edits.append(
                ProposalEdit(
                    decision=decision,
                    fields=[
                        FieldEdit(path=path, runs=_runs(diff[path]))
                        for path in sorted(diff, key=_natural)
                    ],
                )
            )
        return edits


def since_proposed_each(proposals: Sequence[Proposal]) -> dict[int, SinceProposed]:
    """``SinceProposed`` of each of these proposals, by id, read at once: their first records
    (``as_proposed_records``; the proposal itself for one whose history holds none) and the
    decisions that edited them."""
    by_id = {proposal.pk: proposal for proposal in proposals}
    first = {
        pk: (summary, payload, snapshot)
        for pk, summary, payload, snapshot in as_proposed_records(list(by_id)).values_list(
            "id", "summary", "payload", "target_snapshot"
        )
    }
    edit_decisions: dict[int, list[Decision]] = defaultdict(list)
    for decision in (
        Decision.objects.filter(proposal_id__in=list(by_id), edited_payload__isnull=False)
        .select_related("reviewer")
        .order_by("created_at", "pk")
    ):
        edit_decisions[decision.proposal_id].append(decision)
    said = {}
    for pk, proposal in by_id.items():
        summary, payload, snapshot = first.get(
            pk, (proposal.summary, proposal.payload, proposal.target_snapshot)
        )
        said[pk] = SinceProposed(
            proposed_summary=summary,
            proposed_payload=payload,
            proposed_snapshot=snapshot,
            summary=proposal.summary,
            edited=proposal.payload != payload,
            reassessed=proposal.target_snapshot != snapshot,
            edit_decisions=tuple(edit_decisions[pk]),
        )
    return said


def since_proposed(proposal: Proposal) -> SinceProposed:
    """What its agent proposed and what became of it since (``SinceProposed``)."""
    return since_proposed_each([proposal])[proposal.pk]


def _natural(path: str) -> list[str | int]:
    """``creatives[10]`` after ``creatives[2]``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _runs(change: dict[str, Any]) -> list[tuple[str, str]]:
    before, after = change.get("from"), change.get("to")
    if "words" in change:  # text: the words changed, among those kept
        return word_runs(before, after)
    return [
        (kind, value_said(value))
        for kind, value in (("removed", before), ("added", after))
        if value is not None
    ]


@dataclass(frozen=True)
class WithdrawalSeen:
    """Who withdrew a withdrawn proposal, when, and why, as its history and its record say:
    ``by_reviewer`` if a person did it for the agent (``who`` names them), else the agent."""

    who: str
    at: datetime | None
    by_reviewer: bool
    note: str


def withdrawal_seen(proposal: Proposal) -> WithdrawalSeen | None:
    """How a withdrawn proposal came to be withdrawn (None for one that was not)."""
    if proposal.status != ProposalStatus.WITHDRAWN:
        return None
    record = (
        Proposal.history.filter(id=proposal.pk, status=ProposalStatus.WITHDRAWN)
        .only("history_actor", "history_date")
        .order_by("history_id")
        .first()
    )
    by_reviewer = proposal.withdrawn_by == WithdrawnBy.REVIEWER
    return WithdrawalSeen(
        who=record.history_actor if record is not None else ("a reviewer" if by_reviewer else ""),
        at=record.history_date if record is not None else None,
        by_reviewer=by_reviewer,
        note=proposal.withdrawal_note,
    )


def review_window_ran_out(proposal: Proposal, approvers: Sequence[str] = ()) -> str:
    """How an expired proposal's review ended: undecided, or with fewer approvals than its
    policy asks for (naming who gave them, for the people who read it; an agent is told how
    many, not who)."""
    closed = console_time(proposal.review_expires_at or proposal.updated_at)
    given = proposal.approvals_this_round
    if not given:
        return f"Nobody decided it in time: its review window closed at {closed}."
    by = f" ({', '.join(approvers)})" if approvers else ""
    return (
        f"It had {given} of the {proposal.required_approvals} approvals its policy asks "
        f"for{by} when its review window closed at {closed}: it was not approved."
    )


def was_retried(proposal) -> bool:
    """Sent to run again by a person after its execution failed: approved (to run) since it
    was decided, which only a retry does (the policy engine's approval decides it too). Of a
    proposal or one of its history's records."""
    return bool(
        proposal.decided_at and proposal.approved_at and proposal.approved_at > proposal.decided_at
    )


def with_ended_recorded(queryset: QuerySet[Proposal]) -> QuerySet[Proposal]:
    """Each proposal with ``ended_recorded_at``, read in the same statement: when its history
    records it reaching the status it has now (its first record in it). Of a status reached
    once (superseded, withdrawn, expired), when it ended so: its ``updated_at`` is its last
    write's, which any later write to the row moves (a re-assessment, a backfill)."""
    first = Proposal.history.filter(id=OuterRef("pk"), status=OuterRef("status"))
    superseded = _superseded_recorded(OuterRef("pk"))
    unsure = (
        Execution.objects.filter(_UNSURE, proposal=OuterRef("pk")).order_by().values("proposal")
    )
    # Of a superseded one alone (the rest read nothing more): the person who retried its
    # failed execution and found its target moved, as ``superseded_at_retry_by`` says; and
    # its attempts that got no sure answer, as ``unsure_attempts`` reads them.
    of_superseded = {
        "superseded_at_retry_by": Subquery(superseded[:1]),
        **{
            f"unsure_attempts_{name}": Subquery(unsure.annotate(value=read).values("value"))
            for name, read in _UNSURE_READ.items()
        },
    }
    return queryset.annotate(
        ended_recorded_at=Subquery(first.order_by("history_id").values("history_date")[:1]),
        **{
            name: Case(When(status=ProposalStatus.SUPERSEDED, then=read), default=None)
            for name, read in of_superseded.items()
        },
    )


# An attempt that may have been carried out on its channel, as the API's ``carried_out`` says
# "unknown" of it: sent, and no answer said whether (``Execution.unanswered``), or recorded as
# under way still.
_UNSURE = Q(unanswered=True) | Q(status=ExecutionStatus.RUNNING)
# What ``UnsureAttempts`` reads of them, by name.
_UNSURE_READ = {
    "count": Count("pk"),
    "first": Min("attempt"),
    "last": Max("attempt"),
    "last_sent_at": Max("started_at"),
}


@dataclass(frozen=True)
class UnsureAttempts:
    """A proposal's attempts on its channel that got no sure answer (``_UNSURE``): each may
    have been carried out there, whatever the attempts after it were told. How many, the
    first's and the last's numbers, and when the last was sent."""

    count: int
    first: int
    last: int
    last_sent_at: datetime

    @property
    def said(self) -> str:
        """After what ended a proposal that sent nothing more (superseded), instead of
        "nothing was done": "nothing more was sent, but its attempt 2, sent at …, got no sure
        answer and may have been carried out on the channel: check there"."""
        sent_at = console_time(self.last_sent_at)
        if self.count == 1:
            attempts = f"its attempt {self.last}, sent at {sent_at},"
        elif self.count == self.last - self.first + 1:
            attempts = f"its attempts {self.first}–{self.last}, the last sent at {sent_at},"
        elif self.count == 2:
            attempts = f"its attempts {self.first} and {self.last}, the last sent at {sent_at},"
        else:
            attempts = (
                f"{self.count} of its attempts {self.first}–{self.last}, the last sent at "
                f"{sent_at},"
            )
        return f"nothing more was sent, but {attempts} {MAY_HAVE_BEEN_CARRIED_OUT}: check there"


def unsure_attempts_each(proposal_ids: Iterable[int]) -> dict[int, UnsureAttempts]:
    """Of the proposals ``proposal_ids``, those with attempts that got no sure answer, by id,
    with them (``UnsureAttempts``). One query, none for no proposal."""
    proposal_ids = list(proposal_ids)
    if not proposal_ids:
        return {}
    read = (
        Execution.objects.filter(_UNSURE, proposal_id__in=proposal_ids)
        .order_by()
        .values("proposal_id")
        .annotate(**_UNSURE_READ)
    )
    return {
        row["proposal_id"]: UnsureAttempts(**{name: row[name] for name in _UNSURE_READ})
        for row in read
    }


def unsure_attempts(proposal: Proposal) -> UnsureAttempts | None:
    """The attempts of a superseded proposal that got no sure answer: as read with it
    (``with_ended_recorded``), else read here. None where it has none (or is not
    superseded)."""
    if proposal.status != ProposalStatus.SUPERSEDED:
        return None
    if hasattr(proposal, "unsure_attempts_count"):
        if not proposal.unsure_attempts_count:
            return None
        return UnsureAttempts(
            **{name: getattr(proposal, f"unsure_attempts_{name}") for name in _UNSURE_READ}
        )
    return unsure_attempts_each([proposal.pk]).get(proposal.pk)


def _superseded_recorded(proposal_id) -> QuerySet:
    """Who moved the proposal to superseded, where it moved there from failed (a person's
    retry that found its target moved, ``proposal_retry``: the only such move): its history's
    first record in superseded, with the status of the record before it."""
    before = (
        Proposal.history.filter(id=OuterRef("id"), history_id__lt=OuterRef("history_id"))
        .order_by("-history_id")
        .values("status")[:1]
    )
    return (
        Proposal.history.filter(id=proposal_id, status=ProposalStatus.SUPERSEDED)
        .order_by("history_id")
        .annotate(came_from=Subquery(before))
        .annotate(
            retried_by=Case(
                When(came_from=ProposalStatus.FAILED, then=F("history_actor")), default=None
            )
        )
        .values("retried_by")
    )


def superseded_at_retry_by(proposal: Proposal) -> str | None:
    """Who retried the superseded proposal's failed execution, superseding it there and then
    (its target had moved): as read with it (``with_ended_recorded``), else read here. None
    where it was superseded otherwise (as it was approved, or was to run)."""
    if proposal.status != ProposalStatus.SUPERSEDED:
        return None
    if hasattr(proposal, "superseded_at_retry_by"):
        return proposal.superseded_at_retry_by
    first = _superseded_recorded(proposal.pk).first()
    return first["retried_by"] if first is not None else None


def ended_recorded_at(proposal: Proposal) -> datetime | None:
    """When the proposal reached the status it has now (of one reached once: when it ended
    so), as its history records the move: as read with it (``with_ended_recorded``), else
    read here. None where its history records no such move."""
    if hasattr(proposal, "ended_recorded_at"):
        return proposal.ended_recorded_at
    return (
        Proposal.history.filter(id=proposal.pk, status=proposal.status)
        .order_by("history_id")
        .values_list("history_date", flat=True)
        .first()
    )


def _changed_first_said(
    by: Proposal, superseded_at, named: Callable[[Proposal], str], *, changed: str
) -> str:
    """The proposal whose execution changed a superseded one's target first, and when it
    executed (or, unrecorded, when the other was superseded): "#13 changed its target first,
    executed at …"."""
    executed_at = by.executed_at or superseded_at
    what = f"{named(by)} {changed} its target first"
    return what + (f", executed at {console_time(executed_at)}" if executed_at else "")


def superseded_said(
    proposal: Proposal,
    approvals: Sequence[Decision] = (),
    *,
    named: Callable[[Proposal], str] = lambda other: f"#{other.pk}",
) -> str:
    """How a superseded proposal ended, as its page and its messages say it: the proposal
    whose execution changed its target first (``named``: how to name it; by its id) and when
    that executed, or when its target was found changed (when it was superseded, as its
    history records it: ``ended_recorded_at``); and, where people approved it first
    (``approvals``, its round's approving decisions), who, and when they decided, and who
    retried its failed execution, and when, if someone did (its ``approved_at`` is then the
    retry's, not when anyone approved it), or that a person's retry found its target moved
    and ended it (``superseded_at_retry_by``: read with it, ``with_ended_recorded``, for no
    query)."""
    superseded_at = ended_recorded_at(proposal)
    by = proposal.superseded_by
    retried_by = superseded_at_retry_by(proposal)
    # What its execution did before it ended: nothing, unless an attempt sent before got no
    # sure answer (a 503, a timeout): that may have reached the channel.
    unsure = unsure_attempts(proposal)
    done = f": {unsure.said}." if unsure is not None else ": nothing was done."
    if retried_by is not None:
        # Superseded as a person retried its failed execution: said, not left out between
        # its approval and what moved its target.
        what = (
            _changed_first_said(by, superseded_at, named, changed="had changed")
            if by is not None
            else "its target was found changed"
        )
        when = f" at {console_time(superseded_at)}" if superseded_at else ""
        retried = f"its execution failed, and when {retried_by} retried it{when}, {what}"
        approvers = approvers_said(approvals)
        if not approvers:
            return f"{retried[0].upper()}{retried[1:]}{done}"
        return f"{approved_said(approvers, approvals[-1].created_at)}, {retried}{done}"
    if by is not None:
        what = _changed_first_said(by, superseded_at, named, changed="changed")
    else:
        # When it was found changed (as it was to run, or as the change was made), not
        # when the change was made: a retry finds a value that moved minutes before.
        what = "its target was found changed before it " + (
            "ran" if unsure is None else "was sent again"
        )
        what += f", at {console_time(superseded_at)}" if superseded_at else ""
    approvers = approvers_said(approvals)
    if not approvers:
        return f"{what[0].upper()}{what[1:]}{done}"
    if len(approvers) < proposal.required_approvals:
        return (
            f"It had {len(approvers)} of the {proposal.required_approvals} approvals its policy "
            f"asks for ({', '.join(approvers)}) when {what}{done}"
        )
    approved = approved_said(approvers, approvals[-1].created_at)
    if was_retried(proposal):
        retried = approval_told(proposal, superseded_at or proposal.updated_at)
        if retried and retried != approved:
            approved = f"{approved}, {retried}"
    return f"{approved}, then {what}{done}"


def rejected_said(rejection: Decision) -> str:
    """A rejection as every reader is told it, its page and its messages alike: "operator2
    rejected it (too aggressive) at 2026-12-05 04:50:12 UTC" (when the reviewer decided)."""
    reason = rejection.get_reason_code_display().lower()
    return (
        f"{rejection.reviewer.get_username()} rejected it ({reason}) at "
        f"{console_time(rejection.created_at)}"
    )


def approved_said(approvers: Sequence[str], last_at: datetime) -> str:
    """An approval as every reader is told it: "operator approved it at 2026-12-05 04:50:12
    UTC", or, of several, "operator and operator2 approved it, the last at …" (``last_at``:
    when the last of them decided)."""
    if len(approvers) == 1:
        return f"{approvers[0]} approved it at {console_time(last_at)}"
    return f"{and_joined(approvers)} approved it, the last at {console_time(last_at)}"


def let_run_said(proposal: Proposal) -> str:
    """A proposal let run without a person's approval, as every reader is told it: "Policy
    “Bid adjustments” version 3 let it run without a person at …" (the version that routed
    it, ``policy_versions_said``), or, approved by no decision of its round, when it was."""
    when = console_time(proposal.decided_at or proposal.approved_at or proposal.updated_at)
    if proposal.verdict_outcome != VerdictOutcome.AUTO_APPROVE:
        return f"It was approved to run at {when}"
    return _policy_let_run(proposal.verdict_policy_version, when)


def _policy_let_run(version: int | None, when: str) -> str:
    """ "Policy “Bid adjustments” version 3 let it run without a person at …", naming the
    policy version (``version``: its history record) as it was then; "Its policy" where that
    version is not on record."""
    by = policy_versions_said([version]).get(version)
    return f"{capfirst(by) if by else 'Its policy'} let it run without a person at {when}"


def policy_versions_said(versions: Iterable[int | None]) -> dict[int, str]:
    """Each policy version that routed a proposal (its history record's id), named as every
    reader is told it, its page's sentence and its execution's history alike: "policy “Bid
    adjustments” version 3" (its name in that version, and the version's number among its
    policy's own, as its page counts them), never the name it took later. One query, whatever
    their number; a version not on record is left out."""
    wanted = set(versions) - {None}
    if not wanted:
        return {}
    return {
        record["history_id"]: f"policy “{record['name']}” version {record['number']}"
        for record in Policy.history.filter(history_id__in=wanted)
        .annotate(number=version_number_of(OuterRef("id"), OuterRef("history_id")))
        .values("history_id", "name", "number")
    }


def approved_to_run_said(proposals: Sequence[Proposal]) -> dict[int, str]:
    """Why each approved proposal runs, as its executions' history records say it: sent to
    run again by a person after its execution failed, "sent to run again by operator2" (who,
    as its last record moving it to approved says); "approved by operator" (the approvals of
    its review round, in the order given: "approved by operator (with edits) and
    second-operator"); or, let run without a person, "approved by policy “Bid adjustments”
    version 3" (the version that routed it, ``policy_versions_said``); "approved to run"
    where none is on record. A query for each of the three kinds there is among them,
    whatever their number."""
    retried = {p.pk for p in proposals if was_retried(p)}
    last_approved: dict[int, object] = {}
    for record in Proposal.history.filter(id__in=retried, status=ProposalStatus.APPROVED).order_by(
        "id", "-history_id"
    ):
        last_approved.setdefault(record.id, record)
    retriers = {pk: r.history_actor for pk, r in last_approved.items() if _is_retry(r)}
    reviewed = {p.pk: p.review_round for p in proposals if p.review_round and p.pk not in retriers}
    approvals: dict[int, list[Decision]] = defaultdict(list)
    for decision in (
        Decision.objects.filter(proposal_id__in=reviewed, outcome=DecisionOutcome.APPROVE)
        .select_related("reviewer")
        .order_by("created_at", "pk")
    ):
        if decision.review_round == reviewed[decision.proposal_id]:
            approvals[decision.proposal_id].append(decision)
    policies = policy_versions_said(
        proposal.verdict_policy_version
        for proposal in proposals
        if proposal.pk not in reviewed
        and proposal.pk not in retriers
        and proposal.verdict_outcome == VerdictOutcome.AUTO_APPROVE
    )
    said = {}
    for proposal in proposals:
        policy = policies.get(proposal.verdict_policy_version)
        if proposal.pk in retriers:
            said[proposal.pk] = f"{SENT_TO_RUN_AGAIN} by {retriers[proposal.pk]}"
        elif approvals.get(proposal.pk):
            said[proposal.pk] = f"approved by {and_joined(approvers_said(approvals[proposal.pk]))}"
        elif policy is not None:
            said[proposal.pk] = f"approved by {policy}"
        else:
            said[proposal.pk] = "approved to run"
    return said


def _last_approved(proposal: Proposal, at: datetime):
    """The last history record of ``proposal`` up to ``at`` moving it to approved."""
    return (
        Proposal.history.filter(
            id=proposal.pk, status=ProposalStatus.APPROVED, history_date__lte=at
        )
        .order_by("-history_id")
        .first()
    )


def _is_retry(record) -> bool:
    """Whether a proposal's history record is a person's retry of its failed execution."""
    return record.history_actor_kind == "user" and (record.history_change_reason or "").startswith(
        RETRY_RECORDED
    )


@dataclass(frozen=True)
class Retry:
    """A person's retry of a proposal's failed execution: when they sent it to run again
    (their approval to run it), who did (their name as its history records it), and the
    failed attempt it followed (None where no failed attempt before it is on record)."""

    at: datetime
    failed: Execution | None
    by: str


def retries_of(proposals: Iterable[Proposal]) -> dict[int, list[Retry]]:
    """Each time a person sent a failed execution of each of ``proposals`` to run again, in
    the order they did, by id (those never retried are left out), as their histories record
    it: one query, none if none of them has a failed attempt (prefetch their executions to
    read many)."""
    failures = {
        proposal.pk: [a for a in proposal.executions.all() if a.status == ExecutionStatus.FAILED]
        for proposal in proposals
    }
    failed = [pk for pk, attempts in failures.items() if attempts]
    if not failed:
        return {}
    retries: dict[int, list[Retry]] = defaultdict(list)
    for pk, at, by in person_retries(failed):
        before = [a for a in failures[pk] if a.started_at < at]
        retries[pk].append(Retry(at=at, failed=before[-1] if before else None, by=by))
    return dict(retries)


def retry_told(proposal: Proposal, at: datetime) -> str:
    """If the proposal's last move to approved up to ``at`` was a person's retry, who sent
    it to run again and when, as every reader is told it ("its execution failed, and
    operator sent it to run again at …"); else ""."""
    record = _last_approved(proposal, at)
    if record is None or not _is_retry(record):
        return ""
    return sent_to_run_again_said(record.history_actor, console_time(record.history_date))


def approval_told(proposal: Proposal, at: datetime) -> str:
    """Who approved the proposal by the move its history records last up to ``at`` (an event
    the agent was sent then), as every reader is told it: "operator approved it at …" (a
    person, or several), "Policy “Bid adjustments” version 3 let it run without a person at
    …" (as ``let_run_said``), or "its execution failed, and operator sent it to run again at
    …"; "" if its history records no such move."""
    record = _last_approved(proposal, at)
    if record is None:
        return ""
    when = console_time(record.history_date)
    if _is_retry(record):
        return sent_to_run_again_said(record.history_actor, when)
    if record.history_actor_kind == "user":
        approvals = list(
            Decision.objects.filter(
                proposal=proposal,
                review_round=record.review_round,
                outcome=DecisionOutcome.APPROVE,
                created_at__lte=at,
            )
            .select_related("reviewer")
            .order_by("created_at", "pk")
        )
        if approvals:
            return approved_said(approvers_said(approvals), approvals[-1].created_at)
        return f"{record.history_actor} approved it at {when}"
    if record.verdict_outcome == VerdictOutcome.AUTO_APPROVE:
        return _policy_let_run(record.verdict_policy_version, when)
    return ""


def withdrawn_said(withdrawal: WithdrawalSeen) -> str:
    """A withdrawal as every reader is told it: "operator withdrew it for its agent at …", or
    "Its agent withdrew it at …" (when its history recorded it)."""
    when = f" at {console_time(withdrawal.at)}" if withdrawal.at else ""
    if withdrawal.by_reviewer:
        return f"{withdrawal.who} withdrew it for its agent{when}"
    return f"Its agent withdrew it{when}"


def how_review_ended(
    proposal: Proposal, *, named: Callable[[Proposal], str] = lambda other: f"#{other.pk}"
) -> str:
    """Who ended a proposal's review and when, as a sentence ("operator2 rejected it (too
    aggressive) at 2026-12-05 04:50:12 UTC."), for a person refused an act on it because
    someone else got there first, and beside its status on its page; "" for a proposal that
    may still be decided. ``named``: how a proposal that superseded it is named. Its messages
    say the same sentences (``notifications.services.outcome_text``)."""
    if proposal.status in (ProposalStatus.SUBMITTED, ProposalStatus.PENDING_REVIEW):
        return ""
    decisions = list(
        Decision.objects.filter(proposal=proposal, review_round=proposal.review_round)
        .select_related("reviewer")
        .order_by("created_at", "pk")
    )
    rejections = [d for d in decisions if d.outcome == DecisionOutcome.REJECT]
    approvals = [d for d in decisions if d.outcome == DecisionOutcome.APPROVE]
    if proposal.status == ProposalStatus.REJECTED and rejections:
        return f"{rejected_said(rejections[-1])}."
    if proposal.status in APPROVED_TO_RUN_STATUSES and approvals:
        return f"{approved_said(approvers_said(approvals), approvals[-1].created_at)}."
    if proposal.status in APPROVED_TO_RUN_STATUSES and proposal.decided_at:
        return f"{let_run_said(proposal)}."
    if proposal.status == ProposalStatus.EXPIRED and proposal.review_expires_at:
        return review_window_ran_out(proposal, [d.reviewer.get_username() for d in approvals])
    withdrawal = withdrawal_seen(proposal)
    if withdrawal is not None:
        return f"{withdrawn_said(withdrawal)}."
    if proposal.status == ProposalStatus.SUPERSEDED:
        return superseded_said(proposal, approvals, named=named)
    return ""


def last_failure(proposal: Proposal) -> Execution | None:
    """Why a proposal that failed failed: its last attempt (None for any other status). Said
    beside its status wherever the console says it failed (``failure.html``), not how it
    came to run."""
    if proposal.status != ProposalStatus.FAILED:
        return None
    return proposal.executions.order_by("attempt").last()


@dataclass(frozen=True)
class RunTimes:
    """When a proposal's execution did what it did, from its attempts as recorded: what its
    page's timeline says beside when it was decided."""

    # Sent to run again by a person (``was_retried``): when the attempt it followed failed
    # (that attempt's finish), and when the person sent it.
    failed_before_retry: datetime | None
    retried: datetime | None
    # Of the run under way (since it was last approved): when its first attempt started.
    started: datetime | None
    # Of a failed one: when its last attempt finished (as ``last_failure`` says it failed).
    failed: datetime | None


def run_times(proposal: Proposal, *, as_of: datetime | None = None) -> RunTimes:
    """When its execution started, failed, was sent to run again (one query). ``as_of``: of
    a past version of it (its history record's time), its attempts as they stood then: one
    recorded at its first failure, retried since, said it failed when the retry's attempt
    finished (and succeeded)."""
    attempts = proposal.executions.order_by("attempt").only("status", "started_at", "finished_at")
    if as_of is not None:
        # An attempt's times are its host's clock, as is the record of the move it made
        # (written after them, in the same transaction), so they are never later than it.
        attempts = attempts.filter(started_at__lte=as_of)
    attempts = list(attempts)
    retried = proposal.approved_at if was_retried(proposal) else None
    before = [a for a in attempts if retried is not None and a.started_at < retried]
    failed_before = [a.finished_at for a in before if a.status == ExecutionStatus.FAILED]
    # The run approved last: attempts of one approved before it (a retry's, or one held back
    # for people as it was about to run) are another run's.
    since = proposal.approved_at
    this_run = [a for a in attempts if since is None or a.started_at >= since]
    return RunTimes(
        failed_before_retry=failed_before[-1] if failed_before else None,
        retried=retried,
        started=this_run[0].started_at if this_run else None,
        failed=(
            attempts[-1].finished_at
            if proposal.status == ProposalStatus.FAILED and attempts
            else None
        ),
    )


def decision_did(decision: Decision) -> str:
    """What a person's decision did, in words: "rejected", "approved", or "approved with
    edits" (the action that runs, or was to run, is their edit)."""
    if decision.outcome == DecisionOutcome.REJECT:
        return "rejected"
    return "approved with edits" if decision.edited_payload is not None else "approved"


def decision_said(decision: Decision) -> str:
    """A person's decision in words, naming them, as its own history and the history of its
    agent's feedback on it both say it: "approved with edits by operator (review round 1)",
    "rejected by operator: Too aggressive (review round 2)"."""
    rejected = decision.outcome == DecisionOutcome.REJECT
    why = f": {decision.get_reason_code_display()}" if rejected else ""
    said, _ = by_a_reviewer(decision_did(decision), decision.reviewer, why)
    return f"{said} (review round {decision.review_round})"


def approvers_said(approvals: Sequence[Decision]) -> list[str]:
    """Who approved, in order, one who edited the action first "operator (with edits)": what
    ran, or was to run, is the edit."""
    return [
        f"{d.reviewer.get_username()}{' (with edits)' if d.edited_payload is not None else ''}"
        for d in approvals
    ]


def routings(proposal_id) -> QuerySet:
    """The proposal's history records from its first routing on, in the order they were
    written (``history_id``: two records of one write share their ``history_date``, and the
    hosts' clocks that stamp it may disagree): the first is the one place that says which
    record is the proposal's first routing (``first_routings``), as its agent made it and as
    policy routed it, whatever an edit's re-assessment or a re-routing changed since (its
    magnitude, its reasons, its holds). A record routed is one with a verdict: the record of
    its submission has none, whether it was routed in the same request or later (a proposal
    left submitted and routed by the stall sweep). ``proposal_id`` may be an ``OuterRef``."""
    return (
        Proposal.history.filter(id=proposal_id).exclude(verdict_outcome="").order_by("history_id")
    )


def first_routings(proposal_ids) -> QuerySet:
    """Each proposal's first routing (``routings``' first record), one per proposal that has
    one, in one query: for the export and the bulk decisions. ``proposal_ids`` may be a list
    or a queryset."""
    return Proposal.history.filter(
        id__in=proposal_ids,
        history_id=Subquery(routings(OuterRef("id")).values("history_id")[:1]),
    )


# A routing's reason that a proposal approved ahead of it changes a value it sets first
# (``approvals.services.proposals.changed_first_reviews``): as a person reads it, naming that
# proposal by id ("#3, approved and about to execute,"), or as its agent was told it, where
# that one is another agent's ("Another agent's proposal, approved and about to execute,")
# or an earlier item of its batch ("Item 2 of this batch (index 1), approved,").
_CHANGED_FIRST = re.compile(
    r"(?P<who>.+?), approved(?P<about> and about to execute)?, changes (?P<words>.+) first: "
    r"this one waits for a person, and is superseded once that one executes\."
)
_NAMED_BY_ID = re.compile(r"#(?P<pk>\d+)")


def changed_first_now(reason, named: str | None = None):
    """A "changed first" reason (``reason``, in the words it was told in) as it stands now:
    the proposal ahead that was about to execute when it was routed (``named``: the same
    reason as a person reads it, naming that one by id, ``named_for_people``; else
    ``reason`` names it), where it has not run and is not about to (failed, sent back to a
    person by a kill switch or a re-routing, superseded, decided otherwise), reads so, with
    whether it may still supersede this one, not as still about to execute and supersede
    it. Read when shown, in the page's and the API's words alike; the recorded reason (and
    its history) stays as it was said when it was routed. Any other reason, as it is."""
    told = _CHANGED_FIRST.fullmatch(str(reason))
    person = _CHANGED_FIRST.fullmatch(str(named)) if named is not None else told
    ahead = _NAMED_BY_ID.fullmatch(person["who"]) if person is not None else None
    if told is None or ahead is None:
        return reason
    status = Proposal.objects.filter(pk=int(ahead["pk"])).values_list("status", flat=True).first()
    if status is None or status in COUNTED_STATUSES:  # it runs, or has: as the reason says
        return reason
    since = {
        ProposalStatus.FAILED: "it has failed since, and supersedes this one only if a person "
        "sends it to run again",
        ProposalStatus.PENDING_REVIEW: "it has been sent back to a person since, and supersedes "
        "this one only if approved again",
    }.get(status, f"it {STATUS_REACHED[status]} now, so it does not supersede this one")
    return (
        f"{told['who']} was approved{told['about'] or ''} when this one was routed, changing "
        f"{told['words']} first; {since}."
    )


def reasons_as_they_stand(proposal: Proposal, reasons: Iterable[str]) -> list[str]:
    """``reasons`` of ``proposal`` (its verdict's, or its routing's) as its agent reads them
    through the API: each "changed first" reason as it stands now (``changed_first_now``),
    the others as recorded."""
    named = named_for_people(proposal.guardrail_findings)
    return [changed_first_now(str(reason), named.get(str(reason))) for reason in reasons or ()]


def verdict_reasons_alone(reasons: Iterable[str]) -> list[str]:
    """A proposal's reasons without its notes (``NOTES``: what happened to it since it was
    routed, an edit, a re-assessment, a hold, its supersession), which are said above them:
    its verdict's."""
    return [str(reason) for reason in reasons or () if not str(reason).startswith(NOTES)]


def routing_reasons(proposals: Iterable[Proposal]) -> dict[int, list[str]]:
    """Why each of ``proposals`` went where it did (the API's ``verdict.routed_reasons``), by
    id: the reasons of the verdict that routed it, without the notes said above them. Those
    on the proposal, until a re-assessment (its figures moved, or a reviewer edited it:
    ``reassessed_at``) replaced them with the verdict reached then ("… is within the 60.0%
    auto-execute ceiling", of an amount edited down); then those of its last record routed
    and not re-assessed (its routing, or a re-routing before executing, which clears
    ``reassessed_at``), read for all of them in one query, none if none was re-assessed. A
    re-assessed proposal whose history holds no such record is left out."""
    routed, reassessed = {}, []
    for proposal in proposals:
        if proposal.reassessed_at is None:
            routed[proposal.pk] = verdict_reasons_alone(proposal.verdict_reasons)
        else:
            reassessed.append(proposal.pk)
    if reassessed:
        last_routed = (
            Proposal.history.filter(id=OuterRef("id"), reassessed_at__isnull=True)
            .exclude(verdict_outcome="")
            .order_by("-history_id")
            .values("history_id")[:1]
        )
        records = Proposal.history.filter(
            id__in=reassessed, history_id=Subquery(last_routed)
        ).values_list("id", "verdict_reasons")
        routed.update((pk, verdict_reasons_alone(reasons)) for pk, reasons in records)
    return routed


def deciding_policy(proposal: Proposal):
    """The policy as it stood when it routed the proposal (its history record then), or
    None if no policy routed it."""
    if not proposal.verdict_policy_version:
        return None
    return Policy.history.filter(history_id=proposal.verdict_policy_version).first()


def policy_terms(policy, unit: str) -> list[str]:
    """A policy version's terms, in words, as they stood: what ran without a person, what was
    blocked, what it took to approve, how soon a decision was due and when it expired."""
    if policy is None:
        return ["No policy matched: a person decides."]

    def limit(value) -> str:  # a count is of a batch's items: "2 above a batch of 1"
        said = format_magnitude(value, unit)
        return f"a batch of {said}" if unit == "count" else said

    terms = []
    if policy.always_review:
        terms.append("always waits for a person")
    elif policy.auto_execute_max_magnitude is not None:
        ceiling = limit(policy.auto_execute_max_magnitude)
        if policy.auto_execute_max_amount is not None:
            ceiling += f" and {policy.auto_execute_max_amount} a day"
        terms.append(f"runs without a person up to {ceiling}")
    if policy.block_above_magnitude is not None:
        terms.append(f"blocked above {limit(policy.block_above_magnitude)}")
    if policy.cumulative_max_magnitude is not None:
        terms.append(
            f"at most {format_magnitude(policy.cumulative_max_magnitude, 'ratio')} per target "
            f"over {describe_duration(policy.cumulative_window)}"
        )
    approvals = f"{policy.required_approvals} approval{pluralize(policy.required_approvals)}"
    above = []
    if policy.more_approvals_above_magnitude is not None:
        above.append(limit(policy.more_approvals_above_magnitude))
    if policy.more_approvals_above_amount is not None:
        above.append(f"{policy.more_approvals_above_amount} a day")
    # The two-person rule, where it asks for more than the rest (as the engine counts it).
    more = max(policy.required_approvals, policy.approvals_above_threshold)
    if above and more > policy.required_approvals:
        approvals += f", {more} above {' or '.join(above)}"
    terms.append(approvals)
    # The deadline and the window it was routed with are its own, whatever they are now.
    if policy.decide_within is not None:
        terms.append(f"a decision due within {describe_duration(policy.decide_within)}")
    terms.append(f"expires after {describe_duration(policy.review_window)} undecided")
    return terms


@dataclass(frozen=True)
class ProposalStates:
    """Each campaign field a proposal touches, through its life: the value when proposed and
    what the agent proposed; what was approved, where an edit or a re-assessment changed the
    action; what its execution changed (before → after); and, while it may still run, the
    value now. Every figure is recorded, none recomputed against today's ledger."""

    columns: list[str]
    rows: list[list[str]]
    # What the table holds, as its heading says it: what it changed (an execution succeeded),
    # would change (it may still run) or would have changed (it never will).
    heading: str
    # What moves approved before it and not yet run leave of a figure it draws on, and what
    # it leaves after them (``figures_ahead_said``): its columns count from the figures
    # when it was proposed, and it runs after them. None where no move is ahead.
    ahead: list[tuple[str, str]] = field(default_factory=list)


def carried_out(executions: list[Execution]) -> str:
    """What a proposal's attempts (in order) did on the channel, never more than is known: an
    attempt that got no sure answer may have carried it out, whatever the attempts after it
    were told."""
    last = executions[-1]
    if last.status == ExecutionStatus.SUCCEEDED:
        return CarriedOut.YES
    if any(attempt.error.startswith(PARTLY_CARRIED_OUT) for attempt in executions):
        return CarriedOut.PARTLY
    if last.status == ExecutionStatus.RUNNING or any(a.unanswered for a in executions):
        return CarriedOut.UNKNOWN
    return CarriedOut.NO


# What a heading of what a proposal would change adds where an attempt did some of it, or may
# have: a failed one that carried out part of a creative batch did change the channel.
_CARRIED_OUT_SAID = {
    CarriedOut.PARTLY: " (part of it was carried out on the channel: see its executions)",
    CarriedOut.UNKNOWN: " (an attempt may have carried it out on the channel: see its executions)",
}


# The column of what a failed proposal's retry would set, re-assessed from the ledger now.
RETRIED_COLUMN = "As a retry would re-assess it"
# The same, said of it under that table once the moves approved before it have run
# (``figures_ahead_said``): its retry runs after them and re-assesses it from what they leave.
RETRIED_THEN = "as a retry would re-assess it then"


def proposal_states(
    proposal: Proposal,
    *,
    since: SinceProposed | None = None,
    ahead: Sequence[FigureAhead] = (),
    retried: AssessedAction | None = None,
) -> ProposalStates | None:
    """The proposal's ``ProposalStates`` (``since``: its ``since_proposed``, if read already;
    ``ahead``: the figures moves approved before it change first, ``LedgerAhead``'s, as its
    page reads them for its approval; ``retried``: a failed one's ``assessed_as_retried``,
    where a person may retry it, whose figures a retry would set rather than those it was
    assessed with), or None if it touches no campaign field."""
    action_type = action_types.named(proposal.action_type)
    since = since or since_proposed(proposal)
    snapshot = since.proposed_snapshot
    if not snapshot or not any(snapshot.values()):
        return None  # it touches no campaign field (creatives, a change of policy)
    fields = [(external_id, name) for external_id, names in snapshot.items() for name in names]
    columns = {
        "When proposed": {
            key: campaign_value_label(key[1], snapshot[key[0]][key[1]]) for key in fields
        },
        "Proposed": _state_after(action_type, since.proposed_payload, snapshot),
    }
    if since.changed:
        # An edit made after the ledger moved: a figure the edit did not touch (the budget a
        # pause stops) is not said to be the edit's ("As edited and re-assessed").
        columns[since.how] = _state_after(action_type, proposal.payload, proposal.target_snapshot)
    runs = list(proposal.executions.all())
    done = next((run for run in runs if run.status == ExecutionStatus.SUCCEEDED), None)
    if done is not None:
        columns["Before execution"] = _flat(done.before_state)
        columns["After execution"] = _flat(done.after_state)
    if proposal.status in MAY_STILL_RUN_STATUSES:
        campaigns = campaigns_for(
            account=proposal.account, action_type=action_type, payload=proposal.payload
        )
        columns["Now"] = {
            key: campaign_value_label(key[1], getattr(campaigns[key[0]], key[1]))
            for key in fields
            if key[0] in campaigns
        }
    if retried is not None and done is None:
        # The budget it draws on moved since it failed: a retry re-assesses it from the
        # ledger now and sets these, not what its other columns say it was assessed to set.
        columns[RETRIED_COLUMN] = _state_after(action_type, proposal.payload, retried.snapshot)
    if done is not None:
        heading = "What it changed"
    else:
        heading = (
            "What it would change"
            if proposal.status not in FINAL_STATUSES
            else ("What it would have changed")
        )
        heading += _CARRIED_OUT_SAID.get(carried_out(runs), "") if runs else ""
    # What its lines say it leaves once the moves ahead have run is what its run then leaves:
    # a failed one runs again only by a retry, which runs after them and re-assesses it from
    # the ledger as they leave it (they move what it touches), whether or not the budget it
    # draws on has moved already (its column, where it has).
    how = "as edited" if since.edited else "as proposed"
    if proposal.status == ProposalStatus.FAILED and done is None:
        how = RETRIED_THEN
    return ProposalStates(
        heading=heading,
        ahead=(
            figures_ahead_said(ahead, how=how) if proposal.status in MAY_STILL_RUN_STATUSES else []
        ),
        columns=["Campaign", "Field", *columns],
        rows=[
            [
                external_id,
                campaign_field_label(name),
                *(values.get((external_id, name), "—") for values in columns.values()),
            ]
            for external_id, name in fields
        ],
    )


def figures_ahead_said(figures: Sequence[FigureAhead], *, how: str) -> list[tuple[str, str]]:
    """Each figure moves approved before a proposal change first, as its page says it under
    what it would change, as (who, what): ("Once #2, approved before it, has run:",
    "display-retarget daily budget 300.00 → 100.00; after this one, as edited, 0.00.")
    (``how``: "as proposed", "as edited", or ``RETRIED_THEN`` for a failed one its retry
    would re-assess), or, where its execution would refuse it then, "…; this one, as
    proposed, takes 150.00 from it: its execution would refuse it." """
    said = []
    for figure in figures:
        what = (
            f"{figure.campaign} {campaign_field_label(figure.field)} "
            f"{_figure_said(figure.field, figure.now)} → {_figure_said(figure.field, figure.left)}"
        )
        if figure.after is not None:
            what += f"; after this one, {how}, {_figure_said(figure.field, figure.after)}."
        elif figure.takes is not None:
            what += (
                f"; this one, {how}, takes {_figure_said(figure.field, figure.takes)} from it: "
                "its execution would refuse it."
            )
        else:
            what += f"; this one, {how}, would then be refused by its execution."
        said.append((f"Once {figure.once}:", what))
    return said


def _figure_said(name: str, value: Decimal) -> str:
    """A figure worked out from the ledger's (what moves leave of it), to the places the
    ledger keeps it: 100.00, not 100 nor 100.0000."""
    places = getattr(Campaign._meta.get_field(name), "decimal_places", None)
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places))
    return campaign_value_label(name, value)


# A campaign's history record written by a proposal's execution names it first (the ledger
# as the action left it, or as the channel had it after): "proposal #10: …".
_BY_PROPOSAL = re.compile(r"^proposal #(\d+)\b")


def campaigns_not_active(proposal: Proposal) -> list[str]:
    """Each campaign a proposal that may still run touches that is not active now, in
    words, as its page and its messages say it beside what it would change: "campaign
    generic-search is paused now (by proposal #10, executed at 2026-12-06 12:05:03 UTC,
    after this one was proposed)"; one no longer in the ledger, so. Approving it lets it
    run all the same (a budget raised, creatives deployed, on a paused campaign): its
    reviewer reads it before deciding. Empty for campaigns active, and for a proposal that
    will not run again."""
    return campaigns_not_active_each([proposal])[proposal.pk]


def campaigns_not_active_each(proposals: Sequence[Proposal]) -> dict[int, list[str]]:
    """``campaigns_not_active`` of each proposal, by id, their campaigns read in one
    statement: a digest's messages say it of every proposal they list, and a query a
    proposal made a digest of fifty read the ledger fifty times."""
    return {pk: now.not_active for pk, now in campaigns_now_each(proposals).items()}


@dataclass
class CampaignsNow:
    """What a proposal that may still run finds of the campaigns it touches now, from one
    read of the ledger: each not active, in words (``campaigns_not_active``); those of them
    paused that it would change (``campaigns_paused``), by external id; and the campaigns
    read, by (account id, external id), its target's among them, for what else is judged on
    them in the same read (``target_moves_each``'s ``ledger``): one dict, the same on every
    proposal of one ``campaigns_now_each`` (``campaigns_read``)."""

    not_active: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    ledger: dict[tuple[int, str], Campaign] = field(default_factory=dict)


def campaigns_now_each(proposals: Sequence[Proposal]) -> dict[int, CampaignsNow]:
    """``CampaignsNow`` of each proposal, by id, their campaigns (and their targets') read in
    one statement."""
    # Each once: a proposal listed twice (told to two people) would say each campaign twice.
    proposals = list({proposal.pk: proposal for proposal in proposals}.values())
    named: dict[int, list[str]] = {}
    said: dict[int, list[str]] = {}
    paused: dict[int, list[str]] = {}
    for proposal in proposals:
        said[proposal.pk] = []
        action_type = action_types.named(proposal.action_type)
        if proposal.status not in MAY_STILL_RUN_STATUSES:
            continue
        try:
            named[proposal.pk] = list(action_type.campaign_fields(proposal.payload))
        except (KeyError, TypeError, AttributeError):  # a payload it does not read (never routed)
            continue
    running = [proposal for proposal in proposals if named.get(proposal.pk)]
    if not running:
        return {pk: CampaignsNow(not_active=said[pk]) for pk in said}
    campaigns = {
        (campaign.account_id, campaign.external_id): campaign
        for campaign in Campaign.objects.filter(
            account_id__in={proposal.account_id for proposal in running},
            external_id__in={
                external_id
                for proposal in running
                for external_id in [*named[proposal.pk], *(proposal.target_snapshot or ())]
            },
        )
    }
    # How each campaign came to its status, read once for every proposal on it.
    became: dict[int, tuple[str, datetime] | None] = {}
    for proposal in running:
        paused[proposal.pk] = []
        for external_id in named[proposal.pk]:
            campaign = campaigns.get((proposal.account_id, external_id))
            if campaign is None:
                said[proposal.pk].append(
                    f"campaign {external_id} is no longer in the ledger of account "
                    f"{proposal.account.external_id}"
                )
            elif campaign.status != CampaignStatus.ACTIVE:
                status = campaign.get_status_display().lower()
                if campaign.pk not in became:
                    became[campaign.pk] = _status_became(campaign)
                how = _status_since(became[campaign.pk], proposal)
                said[proposal.pk].append(
                    f"campaign {external_id} is {status} now{f' ({how})' if how else ''}"
                )
                # As ``campaigns_paused`` has it: a status change's own status is its action.
                if (
                    campaign.status == CampaignStatus.PAUSED
                    and proposal.action_type != "status_change"
                ):
                    paused[proposal.pk].append(external_id)
    return {
        pk: CampaignsNow(not_active=said[pk], paused=paused.get(pk, []), ledger=campaigns)
        for pk in said
    }


def campaigns_read(campaigns_now: Mapping[int, CampaignsNow]) -> dict[tuple[int, str], Campaign]:
    """The campaigns one ``campaigns_now_each`` read, by (account id, external id): the
    ``ledger`` each of its proposals carries, the same dict, taken once."""
    return next((now.ledger for now in campaigns_now.values()), {})


def campaigns_paused(proposal: Proposal) -> list[str]:
    """The campaigns a proposal would change that are paused now, by external id, in the
    order its action names them; none for a status change (what it does to a status is its
    own action, superseded where that status moved since) or a payload it does not read."""
    action_type = action_types.named(proposal.action_type)
    if action_type.name == "status_change":
        return []
    try:
        named = list(action_type.campaign_fields(proposal.payload))
    except (KeyError, TypeError, AttributeError):  # a payload it does not read (never routed)
        return []
    paused = set(
        Campaign.objects.filter(
            account_id=proposal.account_id, external_id__in=named, status=CampaignStatus.PAUSED
        ).values_list("external_id", flat=True)
    )
    return [external_id for external_id in named if external_id in paused]


def paused_still_runs_said(paused: Sequence[str], *, act: str = "approving") -> str:
    """What letting a proposal run (``act``: "approving", "retrying") does on the campaigns
    of it paused now (``campaigns_paused``), said beside "is paused now" before the person
    decides: it runs, on the paused campaign, which it does not activate. "" for none."""
    if not paused:
        return ""
    several = len(paused) > 1
    return (
        f"{act.capitalize()} it still makes the change on {and_joined(paused)} as "
        f"{'they are' if several else 'it is'}, paused: {act} does not activate "
        f"{'them' if several else 'it'}, so the change takes effect only once someone does."
    )


def paused_ran_said(paused: Sequence[str]) -> str:
    """After a person let a proposal run on campaigns paused now (``campaigns_paused``), as
    the message after the click says it: the change is made there, and they stay paused."""
    if not paused:
        return ""
    several = len(paused) > 1
    return (
        f"Campaign{'s' if several else ''} {and_joined(paused)} "
        f"{'are' if several else 'is'} paused: the change is made there all the same, and "
        f"{'they stay' if several else 'it stays'} paused."
    )


# How many of a campaign's latest history records are read for when its status became what it is.
STATUS_SINCE_READ = 200


def _status_became(campaign: Campaign) -> tuple[str, datetime] | None:
    """How a campaign came to its status, as its history recorded it, and when: the proposal
    whose execution set it (and when it executed), or who set it, and when; None where its
    history holds no record of the change (it was made so)."""
    records = list(
        Campaign.history.filter(id=campaign.pk).order_by("-history_id")[:STATUS_SINCE_READ]
    )
    kept = next((n for n, record in enumerate(records) if record.status != campaign.status), None)
    if kept is None and len(records) == STATUS_SINCE_READ:
        return None  # it became so further back than is read: not known here
    became = records[:kept][-1] if records[:kept] else None
    if became is None or became.history_type == "+":
        return None
    by_proposal = _BY_PROPOSAL.match(became.history_change_reason or "")
    by = (
        Proposal.objects.filter(pk=int(by_proposal.group(1))).only("executed_at").first()
        if by_proposal
        else None
    )
    if by is not None:
        executed_at = by.executed_at or became.history_date
        return f"by proposal #{by.pk}, executed at {console_time(executed_at)}", became.history_date
    return f"by {changed_by(became)}, at {console_time(became.history_date)}", became.history_date


def _status_since(became: tuple[str, datetime] | None, proposal: Proposal) -> str:
    """``_status_became`` of a campaign as ``proposal``'s page says it: "" where not known,
    and whether it became so after the proposal was made."""
    if became is None:
        return ""
    how, at = became
    return f"{how}, after this one was proposed" if at > proposal.created_at else how


def _flat(state: dict[str, dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Each recorded value of a state as the page shows it, and as the executions' states
    say it (``ledger_state``): a choice by its label, "not set" where nothing was set; "—"
    is left for a column that holds no value of the field."""
    return {
        (external_id, name): campaign_value_label(name, value)
        for external_id, values in state.items()
        for name, value in values.items()
    }


def _state_after(action_type, payload, snapshot) -> dict[tuple[str, str], str]:
    """The snapshot's fields after the action: those it sets as set, the others (those its
    figures are only read from) as they were."""
    return {
        **_flat(snapshot),
        **_flat(action_type.proposed_state(payload, campaigns_as_recorded(snapshot))),
    }


S = ProposalStatus


@dataclass(frozen=True)
class CountedFigure:
    name: str
    label: str
    counts: str  # what it counts, in words


# Every count of proposals the console and the API show, defined once, and how they count.
COUNTED = (
    "Each proposal is counted once, by where it stands now: one that two people approved is one "
    "proposal approved; one a person approved that was then superseded or sent back to review "
    "counts as superseded or waiting, not as approved."
)
COUNTED_FIGURES = (
    CountedFigure("proposals", "Proposals made", "every proposal made in the period"),
    CountedFigure(
        "auto_executed",
        "Auto-executed",
        "executed with no person approving it: policy approved it and it ran, on its first "
        "run or when a person retried its failed execution",
    ),
    CountedFigure(
        "decided",
        "Decided by a person",
        "approved or rejected by people (one proposal two people approved is one)",
    ),
    CountedFigure(
        "approved",
        "Approved by a person",
        "approved by as many people as its policy asks, as proposed or with edits, "
        "whether it has executed yet or its execution failed",
    ),
    CountedFigure("edited", "of those, with edits", "approved after a person edited it"),
    CountedFigure("rejected", "Rejected by a person", "rejected by a person"),
    CountedFigure("waiting", "Waiting for a person", "not decided yet"),
    CountedFigure(
        "auto_not_executed",
        "Auto-approved, not executed",
        "policy approved it, no person: waiting to run, running, or failed and not run since",
    ),
    CountedFigure("blocked", "Blocked by policy", "stopped by a policy or guardrail; never ran"),
    CountedFigure(
        "expired",
        "Expired",
        f"its review window closed {BEFORE_ENOUGH_APPROVED}; never ran",
    ),
    CountedFigure(
        "withdrawn",
        "Withdrawn",
        f"withdrawn {BEFORE_ENOUGH_APPROVED}, by its agent or by a reviewer for it; never ran",
    ),
    CountedFigure(
        "superseded",
        "Superseded",
        "its target changed before it ran; never ran, and not counted as approved "
        "even if a person had approved it",
    ),
)


@dataclass(frozen=True, kw_only=True)
class ProposalCounts:
    """How proposals stand, ``COUNTED``; the endings add up to the proposals.
    ``COUNTED_FIGURES`` says what each figure counts."""

    waiting: int = 0
    approved_as_proposed: int = 0
    edited: int = 0
    rejected: int = 0
    auto_executed: int = 0
    auto_not_executed: int = 0
    blocked: int = 0
    expired: int = 0
    withdrawn: int = 0
    superseded: int = 0

    @property
    def proposals(self) -> int:
        return sum(getattr(self, ending) for ending in ENDINGS)

    @property
    def approved(self) -> int:
        return self.approved_as_proposed + self.edited

    @property
    def decided(self) -> int:
        return self.approved + self.rejected

    @property
    def auto_execution_rate(self) -> float | None:
        return self.auto_executed / self.proposals if self.proposals else None

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.decided if self.decided else None

    @property
    def clean_approval_rate(self) -> float | None:
        """Approved exactly as proposed, of all decided."""
        return self.approved_as_proposed / self.decided if self.decided else None

    @property
    def edit_rate(self) -> float | None:
        return self.edited / self.approved if self.approved else None

    @property
    def rejection_rate(self) -> float | None:
        return self.rejected / self.decided if self.decided else None

    def endings(self) -> dict[str, int]:
        return {ending: getattr(self, ending) for ending in ENDINGS}

    def __add__(self, other: "ProposalCounts") -> "ProposalCounts":
        return ProposalCounts(
            **{ending: getattr(self, ending) + getattr(other, ending) for ending in ENDINGS}
        )


ENDINGS = tuple(field.name for field in fields(ProposalCounts))
# Proposals approved to run leave review only by people's approvals (``approvals.services.
# decisions``); the policy engine approves only what never entered review. So an approved
# proposal that entered review (``review_round`` > 0) is one people approved, and one that
# never did ran, or will, without a person: the proposal's own row tells them apart.
APPROVED_BY_PEOPLE = Q(status__in=APPROVED_TO_RUN_STATUSES, review_round__gt=0)
DECIDED_BY_PEOPLE = APPROVED_BY_PEOPLE | Q(status=S.REJECTED)
_ENDING_OF_STATUS = {
    S.SUBMITTED: "waiting",
    S.PENDING_REVIEW: "waiting",
    S.REJECTED: "rejected",
    S.BLOCKED: "blocked",
    S.EXPIRED: "expired",
    S.WITHDRAWN: "withdrawn",
    S.SUPERSEDED: "superseded",
}


def proposals_made(
    *,
    since: datetime | None,
    until: datetime | None = None,
    agent: Agent | None = None,
    account: Account | None = None,
    action_type: str | None = None,
) -> QuerySet[Proposal]:
    """The proposals made in a period (since ever if ``since`` is None; for one agent,
    account or action type if given): the period every count of proposals is over."""
    lookups = {
        "created_at__gte": since,
        "created_at__lt": until,
        "agent": agent,
        "account": account,
        "action_type": action_type,
    }
    return Proposal.objects.filter(
        **{lookup: value for lookup, value in lookups.items() if value is not None}
    )


def proposal_counts(
    *,
    since: datetime,
    until: datetime | None = None,
    agent: Agent | None = None,
    account: Account | None = None,
    action_type: str | None = None,
    latest: int | None = None,
    by: Sequence[str] = (),
) -> dict[tuple, ProposalCounts]:
    """The ``ProposalCounts`` of the proposals made in a period (``proposals_made``), or of
    those among the ``latest`` by id; per value of the ``by`` fields, keyed by a tuple of
    those values (``()`` if ``by`` is empty); nothing for a period without proposals.

    One query, as one snapshot, with one pass over the period's proposals and no lookup
    of decisions per proposal: a period of a million costs about what reading it does."""
    proposals = proposals_made(
        since=since, until=until, agent=agent, account=account, action_type=action_type
    )
    # A person's approvals with edits, read once (a decision comes after its proposal, so
    # those made since the period began); each approved proposal is looked up among them.
    edited = Decision.objects.filter(
        outcome=DecisionOutcome.APPROVE, edited_payload__isnull=False, created_at__gte=since
    )
    if latest is not None:
        # The latest by id, whatever their age, then those of the period: a scan that stops
        # after ``latest`` rows, however long the agent's history and however quiet the period.
        ids = proposals_made(since=None, agent=agent, account=account, action_type=action_type)
        ids = ids.order_by("-id").values("id")[:latest]
        proposals = proposals_made(since=since, until=until).filter(pk__in=ids)
        edited = edited.filter(proposal__in=ids)
    tallies: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in (
        proposals.values(*by, "status")
        .annotate(
            count=Count("id"),
            by_people=Count("id", filter=APPROVED_BY_PEOPLE),
            edited=Count("id", filter=APPROVED_BY_PEOPLE & Q(pk__in=edited.values("proposal_id"))),
        )
        .order_by()
    ):
        tally = tallies[tuple(row[name] for name in by)]
        status, count = row["status"], row["count"]
        if status in APPROVED_TO_RUN_STATUSES:
            tally["edited"] += row["edited"]
            tally["approved_as_proposed"] += row["by_people"] - row["edited"]
            by_policy = "auto_executed" if status == S.EXECUTED else "auto_not_executed"
            tally[by_policy] += count - row["by_people"]
        else:
            tally[_ENDING_OF_STATUS[status]] += count
    return {key: ProposalCounts(**tally) for key, tally in sorted(tallies.items())}


@dataclass(frozen=True)
class TrackRecord:
    """An agent's proposals of one action type in the last ``days`` days; if it made more than
    ``span``, its latest ``span`` of them (``capped``)."""

    days: int
    span: int
    counts: ProposalCounts

    @property
    def capped(self) -> bool:
        return self.counts.proposals >= self.span


TRACK_RECORD_DAYS = 30
TRACK_RECORD_SPAN = 1000


def agent_track_record(*, agent: Agent, action_type: str) -> TrackRecord:
    """How an agent's proposals of one type fared over the last 30 days, the agent scorecard's
    default period, so both show the same figures; at most its latest 1,000 of them, as
    cheap for an agent with a million proposals as for one with ten."""
    since = timezone.now() - timedelta(days=TRACK_RECORD_DAYS)
    counts = proposal_counts(
        since=since, agent=agent, action_type=action_type, latest=TRACK_RECORD_SPAN
    )
    return TrackRecord(
        days=TRACK_RECORD_DAYS,
        span=TRACK_RECORD_SPAN,
        counts=counts.get((), ProposalCounts()),
    )


EARLIER_PROPOSALS_SPAN = 2000


def earlier_proposals_on_targets(*, proposal: Proposal, limit: int = 10) -> QuerySet[Proposal]:
    """The latest proposals that touched any of the same campaigns, among the account's 2,000
    before this one: a bounded look back, however long the account's history."""
    if not proposal.target_snapshot:
        return Proposal.objects.none()  # it touches no campaign (a change of policy)
    before = (
        Proposal.objects.filter(account_id=proposal.account_id, pk__lt=proposal.pk)
        .order_by("-pk")
        .values("pk")[:EARLIER_PROPOSALS_SPAN]
    )
    return (
        Proposal.objects.filter(
            pk__in=before, target_snapshot__has_any_keys=sorted(proposal.target_snapshot)
        )
        .select_related("agent")
        .order_by("-pk")[:limit]
    )


@dataclass(frozen=True)
class Dashboard:
    days: int
    queue_depth: int
    oldest_waiting: timedelta | None
    decision_median: timedelta | None
    decision_p90: timedelta | None
    decisions: int
    failed_executions: int
    total: ProposalCounts  # the proposals made in the last ``days`` days
    agents: dict[str, ProposalCounts]  # the same, per agent


class Percentile(Aggregate):
    """PERCENTILE_CONT, PostgreSQL's ordered-set aggregate: the percentile without sending
    every row to Python."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=fraction, output_field=DurationField(), **extra)


def decision_time_percentiles(decided: QuerySet[Proposal]) -> dict[str, timedelta | None]:
    """The time from routing to people's first decision (``first_people_decisions``) of the
    proposals ``decided``, as annotated: their count, median and 90th percentile."""
    wait = ExpressionWrapper(
        F("first_decided_at") - F("evaluated_at"), output_field=DurationField()
    )
    if connection.vendor == "postgresql":
        return decided.aggregate(
            count=Count("id"), median=Percentile(wait, 0.5), p90=Percentile(wait, 0.9)
        )
    # SQLite, the embedded default: its history is small enough to sort here.
    waits = sorted(decided.annotate(wait=wait).values_list("wait", flat=True))
    return {
        "count": len(waits),
        "median": _interpolated(waits, 0.5),
        "p90": _interpolated(waits, 0.9),
    }


def _interpolated(ordered: list[timedelta], fraction: float) -> timedelta | None:
    """The percentile as PERCENTILE_CONT computes it, so both databases say the same."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def first_people_decisions(proposals: QuerySet[Proposal]) -> QuerySet[Proposal]:
    """Those of ``proposals`` that people decided, each annotated with when they first did
    (``first_decided_at``: the decision that ended the first review round people decided,
    the approval that completed it under the two-person rule) and that round
    (``first_decided_round``). Not its latest decision: approved, held back by a kill switch
    before it ran and approved again, it was decided when it was first approved; the
    approval again is another round's. A round with decisions that a later one followed was
    approved (a round ends in review again only from approved); the last one was decided if
    the proposal has a decision time (``decided_at``, cleared as a round begins), which is
    when it was decided."""
    decisions = Decision.objects.filter(proposal=OuterRef("pk"))
    first_round = decisions.order_by("review_round").values("review_round")[:1]
    ended = (
        Decision.objects.filter(
            proposal=OuterRef("pk"), review_round=OuterRef("first_decided_round")
        )
        .order_by("-created_at")
        .values("created_at")[:1]
    )
    return (
        proposals.annotate(first_decided_round=Subquery(first_round))
        .annotate(
            first_decided_at=Case(
                When(first_decided_round=F("review_round"), then=F("decided_at")),
                default=Subquery(ended),
            )
        )
        .filter(
            Q(first_decided_round__lt=F("review_round"))
            | Q(first_decided_round=F("review_round"), decided_at__isnull=False)
        )
    )


def people_decided(*, since: datetime) -> QuerySet[Proposal]:
    """The proposals routed to people that people first decided since ``since``
    (``first_people_decisions``): the dashboard's time to a person's decision is theirs."""
    decided_since = Decision.objects.filter(created_at__gte=since).values("proposal_id")
    return first_people_decisions(
        Proposal.objects.filter(
            pk__in=decided_since, verdict_outcome="review", evaluated_at__isnull=False
        )
    ).filter(first_decided_at__gte=since)


def dashboard(*, days: int = 7) -> Dashboard:
    """The console's figures: the queue now, and how the last ``days`` went."""
    now = timezone.now()
    since = now - timedelta(days=days)
    # What a person may still decide: one past its window, which the expiry sweep is about to
    # expire (a read expires nothing), waits for nobody.
    pending = Proposal.objects.waiting(now)
    # Waiting in its current round: one re-assessed and routed again, or held back by a kill
    # switch before it ran, has waited for people since then, not since it was made. One
    # that waited before this was recorded (null) waits still, since it was routed at least.
    began = Coalesce("waiting_since", "evaluated_at", "created_at")
    oldest = pending.aggregate(oldest=Min(began))["oldest"]
    waits = decision_time_percentiles(people_decided(since=since))
    made = proposal_counts(since=since, by=["agent__name"])
    return Dashboard(
        days=days,
        queue_depth=pending.count(),
        oldest_waiting=now - oldest if oldest else None,
        decision_median=waits["median"],
        decision_p90=waits["p90"],
        decisions=waits["count"],
        failed_executions=Proposal.objects.filter(status=ProposalStatus.FAILED).count(),
        total=sum(made.values(), ProposalCounts()),
        agents={name: counts for (name,), counts in made.items()},
    )


@dataclass(frozen=True)
class Counted:
    """Proposals counted in all, by account (its external id) and by channel."""

    total: int
    by_account: dict[str, int]
    by_channel: dict[str, int]

    def over(self, *, account: Account | None = None, channel: str = "") -> int:
        if account is not None:
            return self.by_account.get(account.external_id, 0)
        if channel:
            return self.by_channel.get(channel, 0)
        return self.total


@dataclass(frozen=True)
class UnderWay:
    """Approved proposals not yet carried out (approved, or executing: a channel's retries):
    ``held``, those a kill switch engaged now over each scope would hold back for a person,
    as the executor holds them (none was approved by a person while it was engaged), before
    their next attempt; ``sending``, those with an attempt under way (its request at the
    channel, or about to be), which no switch calls back: the channel carries it out or
    not, and only a later attempt, if one comes, is held."""

    held: Counted
    sending: Counted

    def held_by(self, *, account: Account | None = None, channel: str = "") -> int:
        return self.held.over(account=account, channel=channel)

    def sending_by(self, *, account: Account | None = None, channel: str = "") -> int:
        return self.sending.over(account=account, channel=channel)


def proposals_under_way() -> UnderWay:
    sending = Execution.objects.filter(proposal=OuterRef("pk"), status=ExecutionStatus.RUNNING)
    rows = (
        Proposal.objects.filter(status__in=UNDER_WAY_STATUSES)
        .annotate(sending=Exists(sending))
        .values_list("account__external_id", "account__channel", "sending")
        .annotate(count=Count("pk"))
        .order_by()
    )
    counts: dict[bool, tuple[dict[str, int], dict[str, int]]] = {
        False: (defaultdict(int), defaultdict(int)),
        True: (defaultdict(int), defaultdict(int)),
    }
    for account, channel, is_sending, count in rows:
        by_account, by_channel = counts[bool(is_sending)]
        by_account[account] += count
        by_channel[channel] += count
    held, under_way = (
        Counted(sum(by_account.values()), dict(by_account), dict(by_channel))
        for by_account, by_channel in (counts[False], counts[True])
    )
    return UnderWay(held=held, sending=under_way)


@dataclass(frozen=True)
class LastRound:
    """A proposal's last round of attempts on a channel, as its executor tells it (the
    executors app registers its reader, ``last_round_reader_register``, so that approvals
    never imports it).

    ``first_attempt``: the number of its first attempt, or of the first attempt of the rounds
    a kill switch held that it resumes; ``retry_key``: the key a person's retry would send, as
    things stand, "" where the channel gets none (Google Ads: no key is named); the attempts
    from ``first_attempt`` up to ``before_attempt`` (all, if None) went with another key, and
    the channel cannot tell the retry's request from theirs, unless it reads first whether
    the action was done (``retry_repeats`` False: a value read before it is set);
    ``resumed``: what a round that resumed a held one as a new request says of it (its
    endpoint changed while it was held), "" otherwise."""

    first_attempt: int
    before_attempt: int | None
    retry_key: str
    retry_repeats: bool
    resumed: str = ""


_last_round_reader: Callable[[Proposal], LastRound | None] | None = None


def last_round_reader_register(reader: Callable[[Proposal], LastRound | None]) -> None:
    global _last_round_reader
    _last_round_reader = reader


def last_round(proposal: Proposal) -> LastRound | None:
    """The proposal's last round of attempts on a channel; None if it had none."""
    return _last_round_reader(proposal) if _last_round_reader is not None else None


_attempt_keys_reader: Callable[[Proposal, Sequence[int] | None], dict[int, str]] | None = None


def attempt_keys_reader_register(
    reader: Callable[[Proposal, Sequence[int] | None], dict[int, str]],
) -> None:
    global _attempt_keys_reader
    _attempt_keys_reader = reader


def attempt_keys(proposal: Proposal, attempts: Sequence[int] | None = None) -> dict[int, str]:
    """The idempotency key each of the proposal's attempts (``attempts``' numbers; all if
    None) was sent to its channel with, by attempt number: its round's key, the channel's
    ``Idempotency-Key``, so an operator can find the attempt in the endpoint's logs (the
    executors app registers the reader, ``attempt_keys_reader_register``). None for an attempt
    not sent (refused before it went), nor where the channel gets no key (Google Ads). One
    query."""
    if _attempt_keys_reader is None or attempts == []:
        return {}
    return _attempt_keys_reader(proposal, attempts)


_executions_keys_reader: Callable[[Sequence[Execution]], dict[int, str]] | None = None


def executions_keys_reader_register(
    reader: Callable[[Sequence[Execution]], dict[int, str]],
) -> None:
    global _executions_keys_reader
    _executions_keys_reader = reader


def executions_keys(executions: Sequence[Execution]) -> dict[int, str]:
    """The idempotency key each of these attempts, of any proposals, was sent to its channel
    with, by the attempt's id, as ``attempt_keys`` reads them (the list of executions, a
    page at a time). One query."""
    if _executions_keys_reader is None or not executions:
        return {}
    return _executions_keys_reader(executions)


_retries_due_reader: Callable[[Sequence[int]], dict[int, datetime]] | None = None


def retries_due_reader_register(reader: Callable[[Sequence[int]], dict[int, datetime]]) -> None:
    global _retries_due_reader
    _retries_due_reader = reader


def next_attempts_due(proposals: Iterable[Proposal]) -> dict[int, datetime]:
    """Of ``proposals``, each executing with no attempt on its channel under way, by id, with
    when its next attempt is due (the executors app registers the reader,
    ``retries_due_reader_register``): after a failed attempt, once its backoff (or the
    channel's Retry-After) has passed; or its turn at a busy endpoint. The time may have
    passed: the attempt then starts once a worker takes it up. One query, none if none of
    them is executing."""
    executing = [p.pk for p in proposals if p.status == ProposalStatus.EXECUTING]
    if not executing or _retries_due_reader is None:
        return {}
    return _retries_due_reader(executing)


def proposal_followed(proposal_id: int) -> dict | None:
    """What a proposal's page follows while it is under way (``follow_status.js``), in one
    read: its status, how many attempts on its channel it has had and the last one's status
    (None before any). A failed attempt and the next one started move on with the status
    unchanged ("Executing"): the page read "attempt 2 is due at …" for the seconds after
    attempt 2 had failed and attempt 3 been scheduled. None if there is no such proposal."""
    last = Execution.objects.filter(proposal=OuterRef("pk")).order_by("-attempt")
    return (
        Proposal.objects.filter(pk=proposal_id)
        .annotate(
            attempts=Subquery(last.values("attempt")[:1]),
            last_attempt=Subquery(last.values("status")[:1]),
        )
        .values("status", "attempts", "last_attempt")
        .first()
    )


def retries_awaited(proposals: Sequence[Proposal]) -> dict[int, str]:
    """Of ``proposals``, each executing and waiting between attempts on its channel (its
    last attempt failed, the next not under way; the executors app registers the reader of
    when each is due, ``retries_due_reader_register``), by id: that attempt N failed, with
    what, and when the next is due. "Executing" alone was said for minutes while a webhook
    executor backed off, nothing telling of the failed attempts or the next try."""
    due = next_attempts_due(proposals)
    if not due:
        return {}
    last = {}
    for attempt in Execution.objects.filter(proposal_id__in=list(due)).order_by("attempt"):
        last[attempt.proposal_id] = attempt
    now = timezone.now()
    said = {}
    for proposal_id, at in due.items():
        attempt = last.get(proposal_id)
        if attempt is None or attempt.status != ExecutionStatus.FAILED:
            continue  # none failed: it waits its turn at a busy endpoint
        failed = f" at {console_time(attempt.finished_at)}" if attempt.finished_at else ""
        next_one = f"attempt {attempt.attempt + 1}"
        when = (
            f"{next_one} is due at {console_time(at)}"
            if at > now
            else f"{next_one} was due at {console_time(at)} and goes once a worker takes it up"
        )
        said[proposal_id] = (
            f"attempt {attempt.attempt} by the {attempt.executor} executor failed{failed}: "
            f"{attempt.error.rstrip('.')}; {when}"
        )
    return said


def failing_at_next_attempt(proposals: Sequence[Proposal]) -> dict[int, str]:
    """Of ``proposals``, each approved and not yet carried out (queued, or between attempts on
    its channel: none with a request at its channel now) that the hard ceiling of the policy
    that routed it, lowered since, refuses now, by id: that it fails at its next attempt
    rather than run, and why (``fails_at_next_attempt_said``). Judged as the runner judges it
    before each attempt (``hard_ceilings_lowered_since``, its ``_hard_ceilings_lowered``):
    its page, its queue row and its agent read "attempt 2 is due at …", and "it still may
    execute", while the policy's form said it fails then, and it did."""
    queued = [p for p in proposals if p.status == ProposalStatus.APPROVED]
    executing = [p for p in proposals if p.status == ProposalStatus.EXECUTING]
    due = next_attempts_due(executing)  # none while an attempt is under way
    waiting = queued + [p for p in executing if p.pk in due]
    if not waiting:
        return {}
    refused = hard_ceilings_lowered_since(waiting)
    if not refused:
        return {}
    sending = set(
        Execution.objects.filter(
            proposal_id__in=list(refused), status=ExecutionStatus.RUNNING
        ).values_list("proposal_id", flat=True)
    )
    return {
        pk: fails_at_next_attempt_said(reasons, due=console_time(due[pk]) if pk in due else "")
        for pk, reasons in refused.items()
        if pk not in sending
    }


_approval_said_reader: Callable[[Proposal], str] | None = None


def approval_said_reader_register(reader: Callable[[Proposal], str]) -> None:
    global _approval_said_reader
    _approval_said_reader = reader


def approval_said(proposal: Proposal) -> str:
    """What approving the proposal sets going, as its executor does it, in words: "it
    executes" (in the ledger, at once), or, for an account whose actions go to its webhook,
    "it is sent to the account's webhook; it executes once the webhook answers that it was
    done" (the executors app registers its reader, ``approval_said_reader_register``)."""
    if _approval_said_reader is None:
        return "it executes"
    return _approval_said_reader(proposal)


def _unsure_before_retry(proposal: Proposal, round_: LastRound | None) -> list[tuple[int, str]]:
    """For a failed proposal whose retry could repeat what its last round (``round_``) sent,
    that round's attempts that got no sure answer (``Execution.unanswered``, as recorded),
    each its number and its error (what the channel answered it, if anything): each may have
    been carried out all the same. [] otherwise."""
    if proposal.status != ProposalStatus.FAILED:
        return []
    if round_ is None or not round_.retry_repeats:
        return []
    attempts = proposal.executions.filter(attempt__gte=round_.first_attempt, unanswered=True)
    if round_.before_attempt is not None:
        attempts = attempts.filter(attempt__lt=round_.before_attempt)
    return list(attempts.order_by("attempt").values_list("attempt", "error"))


def retry_may_repeat_said(
    proposal: Proposal, round_: LastRound | None, *, retry_sends: bool = True
) -> str:
    """For a failed proposal, the attempts of its last round that got no sure answer
    (``Execution.unanswered``, as recorded) and may have been carried out all the same, with
    the key a retry would send, which the channel cannot tell from theirs: said beside its
    Retry button. "" if none did, or if a retry would find out itself (the same key, a value
    read first). ``round_``: its ``last_round``. ``retry_sends`` False: a retry sends nothing
    (its target moved, it ends superseded there and then), so no request is named, only the
    check on the channel those attempts still call for."""
    unsure = _unsure_before_retry(proposal, round_)
    if not unsure:
        return ""
    return retry_may_repeat(unsure, round_.retry_key if retry_sends else None)


def retry_check_said(proposal: Proposal, round_: LastRound | None) -> str:
    """For a failed proposal a retry would send as a new request, told to a person who may
    retry it after its failure (which says which attempts got no sure answer): to check on
    the channel first, and the key the retry would send (``retry_check``). "" where no
    attempt needs it, or a retry would find out itself. ``round_``: its ``last_round``."""
    unsure = _unsure_before_retry(proposal, round_)
    return retry_check([number for number, _ in unsure], round_.retry_key) if unsure else ""


def retry_checks_said(proposals: Sequence[Proposal]) -> dict[int, str]:
    """``retry_check_said`` of each of ``proposals`` (failed, a retry of which would send),
    by id, where it says anything: one query finds those with an attempt that got no sure
    answer, and only theirs read their last round (``last_round``), not every one of a
    digest's failures apart."""
    unsure = set(
        Execution.objects.filter(
            proposal_id__in=[proposal.pk for proposal in proposals], unanswered=True
        ).values_list("proposal_id", flat=True)
    )
    said = {
        proposal.pk: retry_check_said(proposal, last_round(proposal))
        for proposal in proposals
        if proposal.pk in unsure
    }
    return {proposal_id: check for proposal_id, check in said.items() if check}


def retry_ends_it_said(proposal: Proposal, moves: Sequence[Any]) -> str:
    """For a failed proposal that sets a value whose target moved since it was made
    (``moves``: its ``target_moves``), what a retry does: ends it superseded there and then,
    sending nothing (``proposal_retry``). Said beside its Retry button and in the messages
    telling it failed, to whoever may retry it, in place of what a retry would send."""
    return (
        f"It was made against a value that has changed since ({'; '.join(map(str, moves))}): "
        "retried, it is superseded there and then, and nothing is sent to run; "
        f"{proposal.agent} is told the value it saw and the value now."
    )


def retry_past_kill_switches_said(findings: Sequence[str]) -> str:
    """For a failed proposal a person may retry, the kill switches engaged over it now, each
    as its finding says it (``kill_switch_reason``), and that a retry runs it past them: a
    person's retry is their approval, which no switch holds back
    (``executors.runner._kill_switch_hold``). Said beside its Retry button and in the
    messages telling it failed; "" where no switch is engaged over it."""
    if not findings:
        return ""
    past = "the switch" if len(findings) == 1 else "the switches"
    return (
        f"{' '.join(findings)} Retrying runs it anyway: a person's retry is their approval, "
        f"which lets it past {past}."
    )


def retry_over_cumulative_said(reasons: Sequence[str]) -> str:
    """For a failed proposal a person may retry, what its policy's cumulative ceiling holds
    of it re-assessed as a retry would run it (``retry_over_cumulative_ceiling``, the
    engine's words), and that a retry runs it all the same: a person's retry is their
    approval, which covers it, as its execution then records ("…, which its approval still
    covers"). Said beside its Retry button; "" where the ceiling holds nothing of it."""
    if not reasons:
        return ""
    return (
        f"Re-assessed now, as a retry would run it, as the budget it draws on moved: "
        f"{' '.join(reasons)} Retrying runs it anyway: a person's retry is their approval, "
        "which covers it past that ceiling."
    )


@dataclass(frozen=True)
class SentToPerson:
    """One proposal a kill switch sent to a person: when, and how (as it was routed, or
    held back as it was about to run)."""

    proposal_id: int
    at: datetime
    held_back: bool
    # Routed: the other rules its verdict found holding it (their labels, "the cumulative
    # ceiling"), which would have sent it to a person without the switch.
    also_held_by: tuple[str, ...] = ()
    # Held back between two attempts, after one sent to the channel got no answer that says
    # whether the channel carried it out ("Held back before its next attempt:"): not before
    # it ran, as far as anyone knows.
    after_attempts: bool = False


# The proposal list's filter of the approved proposals a kill switch held back
# (``approvals.admin.HeldBackByKillSwitchFilter``), as links to it name it.
HELD_BY_KILL_SWITCH = "held_by_kill_switch"


def proposals_sent_by_kill_switch(switch: KillSwitch) -> list[SentToPerson]:
    """The proposals ``switch`` sent to a person while it was engaged, each once, as their
    history records it, in order: routed to a person with its finding among their reasons
    (the first of their records to carry it, written while this switch was engaged over them
    and named so), or held back by it before it ran or before its next attempt (each hold).
    A switch is known in a finding by its scope as it was then (``kill_switch_names`` of that
    version of it), with its number where another was engaged over the same scope; findings
    recorded by scope alone still read as either's."""
    sent: list[SentToPerson] = []
    routed_ids: set[int] = set()
    # The findings of the record each one follows, read with it (one query a span, not one a
    # proposal: a switch engaged over everything sends thousands).
    findings_before = Subquery(
        Proposal.history.filter(id=OuterRef("id"), history_id__lt=OuterRef("history_id"))
        .order_by("-history_id")
        .values("guardrail_findings")[:1],
        output_field=JSONField(),
    )
    for since, until, engaged in _engaged_spans(switch):
        names = kill_switch_names(engaged)
        records = _written_while_engaged(
            Proposal.history.filter(status=ProposalStatus.PENDING_REVIEW), since, until, engaged
        ).annotate(findings_before=findings_before)
        for record in records.order_by("history_id").values(
            "id",
            "history_id",
            "history_date",
            "guardrail_findings",
            "history_change_reason",
            "findings_before",
            "verdict_held_by",
        ):
            reason = record["history_change_reason"] or ""
            if reason.startswith(HELD_BACK_ANY) and any(
                held_back_by(reason, f"{name}{KILL_SWITCH_NAME_ENDS}") for name in names
            ):
                sent.append(
                    SentToPerson(
                        record["id"],
                        record["history_date"],
                        held_back=True,
                        after_attempts=held_back_after_attempts(reason),
                    )
                )
                continue
            if record["id"] in routed_ids or not _names_switch(record["guardrail_findings"], names):
                continue
            routed_ids.add(record["id"])
            if not _names_switch(record["findings_before"], names):
                sent.append(
                    SentToPerson(
                        record["id"],
                        record["history_date"],
                        held_back=False,
                        also_held_by=_held_by_other_rules(record["verdict_held_by"]),
                    )
                )
    return sorted(sent, key=lambda each: (each.at, each.proposal_id))


@dataclass(frozen=True)
class LeftBySwitch:
    """What a kill switch sent to a person in its last run engaged (from its last engaging
    on, as its release's email counts it): the proposals it held back before they ran, those
    it routed to a person as they were made, and, of both, those still waiting for a
    person's decision, which its release runs none of."""

    held: frozenset[int]
    routed: frozenset[int]
    waiting: tuple[int, ...]
    # Of all it ever sent to a person (its proposal list's ``?kill_switch=``), how many wait.
    waiting_ever: int = 0
    # Of ``held``, those it held back between two attempts, after one sent to the channel got
    # no answer that says whether the channel carried it out: they may have run.
    held_after_attempts: frozenset[int] = frozenset()

    @property
    def sent(self) -> int:
        return len(self.held | self.routed)

    @property
    def held_waiting(self) -> int:
        return len(self.held & set(self.waiting))

    def sent_said(self) -> str:
        """What it sent to a person, in a sentence, as its release's email and the console's
        message after the release both say it ("While it was engaged, it sent 3 proposals to
        a person (2 held back before they ran and 1 as it was made).")."""
        if not self.sent:
            return "While it was engaged, it sent no proposal to a person."
        ways = []
        before = self.held - self.held_after_attempts
        if before:
            ways.append(
                f"{len(before)} held back before {'it' if len(before) == 1 else 'they'} ran"
            )
        if self.held_after_attempts:
            ways.append(f"{len(self.held_after_attempts)} held back {AFTER_AN_UNSURE_ATTEMPT}")
        if self.routed:
            ways.append(
                f"{len(self.routed)} as {'it was' if len(self.routed) == 1 else 'they were'} made"
            )
        return (
            f"While it was engaged, it sent {how_many(self.sent, 'proposal')} to a person "
            f"({and_joined(ways)})."
        )


def left_by_kill_switch(switch: KillSwitch) -> LeftBySwitch:
    """``LeftBySwitch`` for ``switch``'s last engaged run, as its history records it
    (``kill_switch_last_run``)."""
    engaging, _ = kill_switch_last_run(switch)
    if engaging is None:
        return LeftBySwitch(frozenset(), frozenset(), ())
    since = engaging.history_date
    ever = proposals_sent_by_kill_switch(switch)
    sent = [each for each in ever if each.at >= since]
    held = frozenset(each.proposal_id for each in sent if each.held_back)
    # One held back both ways in the run (before it ran, then after an attempt, approved
    # again meanwhile) is said as the one that may have run.
    after_attempts = frozenset(each.proposal_id for each in sent if each.after_attempts)
    routed = frozenset(each.proposal_id for each in sent if not each.held_back) - held
    waiting = set(
        Proposal.objects.filter(
            pk__in={each.proposal_id for each in ever}, status=ProposalStatus.PENDING_REVIEW
        ).values_list("pk", flat=True)
    )
    return LeftBySwitch(
        held,
        routed,
        tuple(sorted(waiting & (held | routed))),
        waiting_ever=len(waiting),
        held_after_attempts=after_attempts,
    )


def _engaged_spans(switch: KillSwitch) -> list[tuple[datetime, datetime | None, KillSwitch]]:
    """When ``switch`` was engaged, by its history: from each version that engaged it (or
    moved it while engaged) until the next that released or moved it, with that version
    (its scope then). Versions that kept it engaged where it was (its reason edited) extend
    their span: a switch whose reason was edited twenty times is read in one span, not
    twenty (its history page read the proposals' history twice a version)."""
    versions = list(switch.history.order_by("history_id"))
    spans: list[tuple[datetime, datetime | None, KillSwitch]] = []
    extends = False  # whether the version before engaged it, where this one does
    for number, version in enumerate(versions):
        if not version.engaged or version.history_type == "-":
            extends = False
            continue
        until = versions[number + 1].history_date if number + 1 < len(versions) else None
        engaged = version.instance
        if extends and spans[-1][2].very_scope() == engaged.very_scope():
            spans[-1] = (spans[-1][0], until, spans[-1][2])
        else:
            spans.append((version.history_date, until, engaged))
        extends = True
    return spans


def _written_while_engaged(records, since: datetime, until: datetime | None, engaged: KillSwitch):
    """Of proposals' history ``records``, those written in a span a switch was engaged
    (``_engaged_spans``), on what it covered then."""
    records = records.filter(history_date__gte=since)
    if until is not None:
        records = records.filter(history_date__lt=until)
    if engaged.scope == KillSwitchScope.ACCOUNT:
        records = records.filter(account_id=engaged.account_id)
    elif engaged.scope == KillSwitchScope.CHANNEL:
        records = records.filter(account__channel=engaged.channel)
    return records


@dataclass(frozen=True)
class LetPastSwitch:
    """One proposal a person let run past a kill switch while it was engaged: approved or
    sent to run again by them then, which the executor takes as their approval to run it
    anyway (``executors.runner._kill_switch_hold``). When, and the move as its history says
    it ("sent to run again by operator"; a retry recorded in the words before those, as
    them)."""

    proposal_id: int
    at: datetime
    how: str


def proposals_let_past_kill_switch(switch: KillSwitch) -> list[LetPastSwitch]:
    """The proposals a person let run past ``switch`` while it was engaged over them, each
    time, in order, as their history records it: made approved by a person (their last
    approval, or a retry of a failed execution) while it was engaged; the switch holds back
    nothing a person approved since it was engaged. One query a span of it."""
    let_past: list[LetPastSwitch] = []
    for since, until, engaged in _engaged_spans(switch):
        records = _written_while_engaged(
            Proposal.history.filter(status=ProposalStatus.APPROVED, history_actor_kind="user"),
            since,
            until,
            engaged,
        )
        let_past += [
            LetPastSwitch(
                proposal_id,
                at,
                f"{SENT_TO_RUN_AGAIN} by {actor}"
                if (how or "").startswith(RETRY_RECORDED)
                else how or "approved by a person",
            )
            for proposal_id, at, how, actor in records.order_by("history_id").values_list(
                "id", "history_date", "history_change_reason", "history_actor"
            )
        ]
    return sorted(let_past, key=lambda each: (each.at, each.proposal_id))


def _held_by_other_rules(held_by: object) -> tuple[str, ...]:
    """The rules besides the guardrails (a kill switch is one) that a verdict found holding
    a proposal back, by their labels: each would have sent it to a person on its own."""
    rules = [hold.get("rule") for hold in held_by or [] if isinstance(hold, dict)]
    return tuple(
        dict.fromkeys(HOLD_RULE_LABELS.get(rule, rule) for rule in rules if rule != "guardrail")
    )


def _names_switch(findings: object, names: frozenset[str]) -> bool:
    """Whether a proposal's record's findings hold a routing finding of a switch named
    ``names`` (None, a first record's "before", holds none)."""
    findings = findings or {}
    review = findings.get("review", []) if isinstance(findings, dict) else []
    return any(kill_switch_named_in(str(finding)) in names for finding in review)
