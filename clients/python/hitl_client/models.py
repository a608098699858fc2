"""Typed views of the API's answers. Each keeps the decoded JSON it was built from in ``raw``,
so a field the server adds later is still at hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """A proposal's status (a str: ``proposal.status == "executed"`` works too)."""

    SUBMITTED = "submitted"
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    BLOCKED = "blocked"
    REJECTED = "rejected"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    EXECUTING = "executing"
    EXECUTED = "executed"
    FAILED = "failed"
    SUPERSEDED = "superseded"


#: Statuses after which nothing more happens on its own. (An operator may retry a failed
#: execution: it is then approved again, and runs; ``wait(..., follow_retries=True)`` waits
#: for that.)
FINAL_STATUSES = frozenset(
    {
        Status.BLOCKED,
        Status.REJECTED,
        Status.EXPIRED,
        Status.WITHDRAWN,
        Status.EXECUTED,
        Status.FAILED,
        Status.SUPERSEDED,
    }
)


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True)
class PolicyRef:
    """The policy that decided, in the version that did: ``name`` as it was then; ``number``
    that version's number among the policy's own (1: as first saved), as the console shows
    it ("version 3"); ``version`` its history record (the audit export's ``history_id``,
    shared by every policy's records). Either is None where not on record (``number`` from
    a server that does not say)."""

    id: int
    name: str
    version: int | None
    number: int | None = None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_api(cls, data: dict[str, Any] | None) -> PolicyRef | None:
        if not data:
            return None
        return cls(
            id=data["id"],
            name=data["name"],
            version=data.get("version"),
            number=data.get("number"),
            raw=data,
        )


@dataclass(frozen=True)
class Verdict:
    """What policy decided when the proposal was evaluated: ``outcome`` is ``auto_approve``,
    ``review`` or ``block``; ``reasons`` say why, in words. ``policy`` is the version whose
    verdict the reasons are: the one that routed it (``routed_by``), or, once it was
    re-assessed (``reassessed_at``: its figures moved, or a reviewer edited it) under
    another, that one. A re-assessment replaces the reasons of the verdict with its own (an
    amount edited down reads "… is within the … ceiling"); ``routed_reasons`` keeps why it
    went where it did (``outcome``), as its agent proposed it: None from a server that does
    not say."""

    outcome: str | None
    policy: PolicyRef | None
    reasons: list[str]
    required_approvals: int
    routed_by: PolicyRef | None = None
    reassessed_at: datetime | None = None
    routed_reasons: list[str] | None = None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            outcome=data.get("outcome"),
            policy=PolicyRef.from_api(data.get("policy")),
            reasons=list(data.get("reasons") or []),
            required_approvals=data.get("required_approvals", 1),
            routed_by=PolicyRef.from_api(data.get("routed_by", data.get("policy"))),
            reassessed_at=_time(data.get("reassessed_at")),
            routed_reasons=(
                list(data["routed_reasons"])
                if isinstance(data.get("routed_reasons"), list)
                else None
            ),
            raw=data,
        )


@dataclass(frozen=True)
class Decision:
    """A reviewer's decision: ``outcome`` ``approve`` or ``reject``; a rejection's
    ``reason_code`` (off_brand, wrong_signal, contradicts_strategy, too_aggressive,
    factual_error, other) and ``note``; ``edited_payload`` when approved with edits."""

    outcome: str
    reason_code: str
    note: str
    edited_payload: dict[str, Any] | None
    decided_at: datetime | None
    # The review round it was made in (a proposal sent back to a person starts a new one);
    # None from a server that does not say.
    round: int | None = None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Decision:
        return cls(
            outcome=data["outcome"],
            reason_code=data.get("reason_code", ""),
            note=data.get("note", ""),
            edited_payload=data.get("edited_payload"),
            decided_at=_time(data.get("decided_at")),
            round=data.get("round"),
            raw=data,
        )


@dataclass(frozen=True)
class Execution:
    """The latest execution attempt, with the target's state before and after, and what it
    added to the ledger besides campaign fields (``created``: a creative batch's creatives'
    ledger ids, ``{"creatives": [12, 13]}``). ``carried_out``: what the attempts so far did
    on the channel, as far as the platform knows: ``"yes"``, ``"partly"`` (some of it, not
    retried), ``"unknown"`` (under way, or sent with no sure answer: it may have been),
    ``"no"``; None from a server that does not say (then nothing is known of it). ``status``
    is this attempt's: ``"failed"`` while the proposal is ``executing`` means another attempt
    follows, due at ``next_attempt_at`` (None when none is awaited, or from a server that
    does not say)."""

    attempt: int
    executor: str
    status: str
    before_state: dict[str, Any] | None
    after_state: dict[str, Any] | None
    error: str
    started_at: datetime | None
    finished_at: datetime | None
    created: dict[str, list[int]] = field(default_factory=dict)
    carried_out: str | None = None
    next_attempt_at: datetime | None = None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_api(cls, data: dict[str, Any] | None) -> Execution | None:
        if not data:
            return None
        return cls(
            attempt=data.get("attempt", 1),
            executor=data.get("executor", ""),
            status=data.get("status", ""),
            before_state=data.get("before_state"),
            after_state=data.get("after_state"),
            error=data.get("error", ""),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            created=data.get("created") or {},
            carried_out=data.get("carried_out"),
            next_attempt_at=_time(data.get("next_attempt_at")),
            raw=data,
        )


@dataclass(frozen=True)
class Outcome:
    """What was measured after execution (``report_outcome``), or an operator's judgment."""

    effect: str
    metrics: dict[str, float]
    note: str
    reported_by: str
    reported_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Outcome:
        return cls(
            effect=data.get("effect", ""),
            metrics=dict(data.get("metrics") or {}),
            note=data.get("note", ""),
            reported_by=data.get("reported_by", ""),
            reported_at=_time(data.get("reported_at")),
            raw=data,
        )


@dataclass(frozen=True)
class Withdrawal:
    """Who withdrew a withdrawn proposal: ``by`` is ``agent`` (the agent itself) or
    ``reviewer`` (a person, for the agent, with ``note`` saying why if they wrote it), or None
    where the platform has no record of who."""

    by: str | None
    note: str
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_api(cls, data: dict[str, Any] | None) -> Withdrawal | None:
        if not data:
            return None
        return cls(by=data.get("by"), note=data.get("note", ""), raw=data)


@dataclass(frozen=True)
class Retry:
    """A person's retry of the proposal's failed execution: their approval to run it again.
    ``by`` is ``reviewer`` (people are not named to the agent); ``at`` when they sent it to
    run again; the failed attempt it followed: ``failed_attempt`` (its number), ``failed_at``
    and its ``error``."""

    by: str
    at: datetime | None
    failed_attempt: int | None
    failed_at: datetime | None
    error: str
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Retry:
        return cls(
            by=data.get("by", "reviewer"),
            at=_time(data.get("at")),
            failed_attempt=data.get("failed_attempt"),
            failed_at=_time(data.get("failed_at")),
            error=data.get("error", ""),
            raw=data,
        )


@dataclass(frozen=True)
class Proposal:
    """A proposal as the API last answered it."""

    id: int
    status: str
    action_type: str
    account: str
    payload: dict[str, Any]
    rationale: str
    supporting_data: dict[str, Any]
    confidence: float
    external_ref: str
    summary: str
    magnitude: Decimal | None
    amount: Decimal | None
    risk: int | None
    verdict: Verdict | None
    decisions: list[Decision]
    execution: Execution | None
    outcomes: list[Outcome]
    created_at: datetime | None
    updated_at: datetime | None
    evaluated_at: datetime | None
    review_expires_at: datetime | None
    decided_at: datetime | None
    executed_at: datetime | None
    replayed: bool = False
    """True when the answer is the replay of an earlier request with the same Idempotency-Key."""
    withdrawal: Withdrawal | None = None
    """Who withdrew it, once it is withdrawn: the agent, or a reviewer for it."""
    review_round: int | None = None
    """The review round it is in (0: never asked of a person); the approvals of this round
    are those counted toward ``verdict.required_approvals``. None from a server that does
    not say."""
    proposed_payload: dict[str, Any] | None = None
    """The payload as its agent proposed it (``payload`` until a reviewer edits it, in the
    platform's spelling). None from a server that does not say."""
    retries: list[Retry] = field(default_factory=list)
    """Each time a person sent its failed execution to run again, oldest first (empty if
    never, or from a server that does not say): each keeps the failure it followed."""
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def is_final(self) -> bool:
        """Nothing more will happen to it unless a person acts: executed, failed (an operator
        may retry it: it is then approved again, and executes: ``may_be_retried``),
        rejected, blocked, expired, withdrawn or superseded."""
        return self.status in FINAL_STATUSES

    @property
    def may_be_retried(self) -> bool:
        """Failed, and a person may still send it to run again (then it is approved and
        runs, or, where a value it sets moved since it was made, superseded there and then):
        ``wait(..., follow_retries=True)`` waits for that."""
        return self.status == Status.FAILED

    @property
    def let_run_by_retry(self) -> Retry | None:
        """The person's retry that let it run last (the last of ``retries``, when nobody
        decided it since): then it runs, or ran, on that person's word, whoever approved it
        first. None if no retry did."""
        if not self.retries:
            return None
        last = self.retries[-1]
        if self.decided_at is not None and last.at is not None and last.at < self.decided_at:
            return None  # sent back to a person since, and decided again
        return last

    @property
    def is_pending(self) -> bool:
        return self.status == Status.PENDING_REVIEW

    @property
    def rejection(self) -> Decision | None:
        """The decision that rejected it, if one did."""
        return next((d for d in reversed(self.decisions) if d.outcome == "reject"), None)

    @property
    def edited_payload(self) -> dict[str, Any] | None:
        """The payload as a reviewer edited it before approving, if one did."""
        edits = [d.edited_payload for d in self.decisions if d.edited_payload is not None]
        return edits[-1] if edits else None

    @classmethod
    def from_api(cls, data: dict[str, Any], *, replayed: bool = False) -> Proposal:
        verdict = data.get("verdict")
        return cls(
            id=data["id"],
            status=data["status"],
            action_type=data.get("action_type", ""),
            account=data.get("account", ""),
            payload=data.get("payload") or {},
            rationale=data.get("rationale", ""),
            supporting_data=data.get("supporting_data") or {},
            confidence=float(data.get("confidence") or 0),
            external_ref=data.get("external_ref", ""),
            summary=data.get("summary", ""),
            magnitude=_decimal(data.get("magnitude")),
            amount=_decimal(data.get("amount")),
            risk=data.get("risk"),
            verdict=Verdict.from_api(verdict) if verdict else None,
            decisions=[Decision.from_api(d) for d in data.get("decisions") or []],
            execution=Execution.from_api(data.get("execution")),
            outcomes=[Outcome.from_api(o) for o in data.get("outcomes") or []],
            created_at=_time(data.get("created_at")),
            updated_at=_time(data.get("updated_at")),
            evaluated_at=_time(data.get("evaluated_at")),
            review_expires_at=_time(data.get("review_expires_at")),
            decided_at=_time(data.get("decided_at")),
            executed_at=_time(data.get("executed_at")),
            replayed=replayed,
            withdrawal=Withdrawal.from_api(data.get("withdrawal")),
            review_round=data.get("review_round"),
            proposed_payload=data.get("proposed_payload"),
            retries=[Retry.from_api(r) for r in data.get("retries") or []],
            raw=data,
        )


@dataclass(frozen=True)
class Hold:
    """A rule that held an action back from running on its own."""

    rule: str
    text: str
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)


@dataclass(frozen=True)
class DryRun:
    """What would happen to an action if proposed now (nothing is written)."""

    outcome: str
    policy: PolicyRef | None
    reasons: list[str]
    held_by: list[Hold]
    required_approvals: int
    risk: int | None
    magnitude: Decimal | None
    amount: Decimal | None
    summary: str
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def would_execute(self) -> bool:
        """True when it would be approved and executed with nobody looking."""
        return self.outcome == "auto_approve"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DryRun:
        return cls(
            outcome=data["outcome"],
            policy=PolicyRef.from_api(data.get("policy")),
            reasons=list(data.get("reasons") or []),
            held_by=[
                Hold(rule=h["rule"], text=h["text"], raw=h) for h in data.get("held_by") or []
            ],
            required_approvals=data.get("required_approvals", 1),
            risk=data.get("risk"),
            magnitude=_decimal(data.get("magnitude")),
            amount=_decimal(data.get("amount")),
            summary=data.get("summary", ""),
            raw=data,
        )


@dataclass(frozen=True)
class Campaign:
    """A campaign's current state on one of the agent's accounts."""

    external_id: str
    account: str
    name: str
    daily_budget: Decimal
    bid: Decimal
    bidding_strategy: str
    target_cpa: Decimal | None
    target_roas: Decimal | None
    status: str
    strategy_locked: bool
    updated_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Campaign:
        return cls(
            external_id=data["external_id"],
            account=data.get("account", ""),
            name=data.get("name", ""),
            daily_budget=Decimal(str(data["daily_budget"])),
            bid=Decimal(str(data["bid"])),
            bidding_strategy=data.get("bidding_strategy", ""),
            target_cpa=_decimal(data.get("target_cpa")),
            target_roas=_decimal(data.get("target_roas")),
            status=data.get("status", ""),
            strategy_locked=bool(data.get("strategy_locked")),
            updated_at=_time(data.get("updated_at")),
            raw=data,
        )


@dataclass(frozen=True)
class Feedback:
    """A human's word on one of the agent's proposals: ``kind`` is approved,
    approved_with_edits (``diff`` says what changed), rejected (``reason_code``, ``note``),
    withdrawn (a reviewer withdrew it for the agent; ``note``), expired (``note``: when its
    review window closed, and with how many approvals), superseded (``diff``: the value seen
    and the value now); of those three and rejected, one a reviewer had edited says the edit
    too (its ``note`` goes on with it; a rejected, withdrawn or expired one's ``diff`` is the
    edit); failed
    (``note``: the error), sent_to_run_again (a reviewer sent a failed execution to run
    again), executed (after that: ``note`` says what it changed), outcome (``outcome``), or
    sent_back (approved to run, it went back to a person: a kill switch held it back, or a
    re-assessment re-routed it, before it ran or after an attempt that got no sure answer;
    ``note`` says which, and why)."""

    id: int
    proposal: int
    action_type: str
    kind: str
    reason_code: str
    note: str
    diff: Any
    outcome: Outcome | None
    created_at: datetime | None
    #: The proposal's action in words (as a reviewer edited it, if one did), and the
    #: ``external_ref`` the agent gave it: which of its actions the record is about.
    summary: str = ""
    external_ref: str = ""
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Feedback:
        outcome = data.get("outcome")
        return cls(
            id=data["id"],
            proposal=data["proposal"],
            action_type=data.get("action_type", ""),
            kind=data.get("kind", ""),
            reason_code=data.get("reason_code", ""),
            note=data.get("note", ""),
            diff=data.get("diff"),
            outcome=Outcome.from_api(outcome) if outcome else None,
            created_at=_time(data.get("created_at")),
            summary=data.get("summary", ""),
            external_ref=data.get("external_ref", ""),
            raw=data,
        )


@dataclass(frozen=True)
class FeedbackPage:
    """One page of the feedback feed: its records, ``next`` (more now, or None at the end)
    and ``resume`` (fetch it later for what arrives after this page)."""

    records: list[Feedback]
    next: str | None
    resume: str


@dataclass(frozen=True)
class ProposalRequest:
    """One proposal to submit, for ``propose_many``."""

    action_type: str
    account: str
    payload: dict[str, Any]
    rationale: str
    confidence: float
    supporting_data: dict[str, Any] | None = None
    external_ref: str | None = None

    def body(self) -> dict[str, Any]:
        return proposal_body(
            self.action_type,
            self.account,
            self.payload,
            rationale=self.rationale,
            confidence=self.confidence,
            supporting_data=self.supporting_data,
            external_ref=self.external_ref,
        )


@dataclass(frozen=True)
class BatchItem:
    """One item's result in a batch: ``proposal`` when it was accepted (HTTP 201), else
    ``error`` (the typed error the same proposal alone would have raised)."""

    index: int
    status_code: int
    proposal: Proposal | None
    error: Exception | None

    @property
    def ok(self) -> bool:
        return self.proposal is not None


def proposal_body(
    action_type: str,
    account: str,
    payload: dict[str, Any],
    *,
    rationale: str,
    confidence: float,
    supporting_data: dict[str, Any] | None = None,
    external_ref: str | None = None,
) -> dict[str, Any]:
    """The JSON body of a proposal, as ``POST /api/v1/proposals/`` takes it."""
    body: dict[str, Any] = {
        "action_type": action_type,
        "account": account,
        "payload": payload,
        "rationale": rationale,
        "confidence": confidence,
    }
    if supporting_data is not None:
        body["supporting_data"] = supporting_data
    if external_ref is not None:
        body["external_ref"] = external_ref
    return body
