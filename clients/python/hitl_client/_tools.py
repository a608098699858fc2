"""What the framework adapters share: how a tool call becomes a proposal (``ToolAction``), the
idempotency key that makes a re-run of the same call find the same proposal, and what the model
is told of the platform's outcome (``outcome_report``)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ._core import message_without_key
from .errors import (
    BadResponse,
    Conflict,
    ConnectionFailed,
    HitlError,
    PermissionDenied,
    ServerError,
    Unprocessable,
    ValidationFailed,
)
from .models import Decision, Proposal, Status

Args = Mapping[str, Any]


def _from_arg(name: str, default: Any = None) -> Callable[[Args], Any]:
    def read(args: Args) -> Any:
        return args.get(name, default)

    read.__qualname__ = f"args[{name!r}]"
    return read


@dataclass(frozen=True)
class ToolAction:
    """How the calls of one tool become proposals.

    ``action_type`` is the platform's (``bid_adjustment``, ``budget_reallocation``, …);
    ``payload`` builds the action's payload from the tool call's arguments; ``account`` is the
    account's external id, or a function of the arguments. ``rationale``, ``confidence`` and
    ``supporting_data`` are read from the arguments of the same names unless given (a
    constant or a function of the arguments): the model states why, and how sure it is."""

    action_type: str
    payload: Callable[[Args], dict[str, Any]]
    account: str | Callable[[Args], str]
    rationale: str | Callable[[Args], str] = field(default=_from_arg("rationale", ""))
    confidence: float | Callable[[Args], float] = field(default=_from_arg("confidence"))
    supporting_data: dict[str, Any] | Callable[[Args], dict[str, Any] | None] | None = field(
        default=_from_arg("supporting_data")
    )

    def proposal_fields(self, args: Args) -> dict[str, Any]:
        """The arguments of ``Client.propose`` for one call (a ``KeyError`` or ``ValueError``
        when the call's arguments cannot make one)."""

        def value(source: Any) -> Any:
            return source(args) if callable(source) else source

        return {
            "action_type": self.action_type,
            "account": value(self.account),
            "payload": self.payload(args),
            "rationale": value(self.rationale),
            "confidence": value(self.confidence),
            "supporting_data": value(self.supporting_data),
        }


def idempotency_key(framework: str, *parts: str) -> str:
    """A key that is the same each time the same tool call is run again (a resumed graph
    re-runs the node; a resumed run re-checks the call), so the platform answers with the
    proposal it already has instead of taking a second one."""
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:48]
    return f"{framework}-{digest}"


def arguments_text(args: Args) -> str:
    """A tool call's arguments, written one way whatever their order: a part of its key, so
    that a call whose id a model reused (some providers number calls "call_0", "call_1", …
    again each turn) with other arguments is another proposal, not the first one's answer."""
    return json.dumps(args, sort_keys=True, default=str, ensure_ascii=False)


def key_reused(error: HitlError) -> bool:
    """Whether the platform refused a proposal because its key had come with another body (a
    422, the only one a proposal gets): not the model's to fix, nor the earlier proposal's
    answer to give."""
    return isinstance(error, Unprocessable)


def key_reused_told(error: HitlError, key: str, made_of: str) -> HitlError:
    """``error`` (``key_reused``) saying what it means for an adapter's call: its key, made of
    the call's identity and arguments (``made_of`` says of what), was first sent with other
    fields, so the tool's ``ToolAction`` builds them from something else than the arguments
    (a clock, a counter, a file); nothing was proposed for this call, and the earlier
    proposal is not its answer."""
    said = message_without_key(error).rstrip()
    error.message = (
        f"{said} The tool call's Idempotency-Key, {key!r}, is made of {made_of}, and was "
        "first sent with other proposal fields for the same arguments: the tool's "
        "ToolAction builds its fields from something other than the call's arguments. "
        "Nothing was proposed for this call, and the proposal first made with the key is not "
        "its answer. Make the ToolAction's fields a function of the arguments alone."
    )
    error.args = (error.message,)
    error.idempotency_key = key
    return error


#: Failures after which a proposal may have been made though its answer never arrived whole:
#: the connection broke, the platform failed (after the client's retries), or its answer could
#: not be read; or (a 409 after the client's retries) the first request with its key was still
#: being answered.
ANSWER_LOST = (ConnectionFailed, ServerError, BadResponse)


def may_be_made(error: HitlError) -> bool:
    """Whether the proposal whose POST failed so may have been made: its answer was lost
    (``ANSWER_LOST``), a request with its key was still being answered (``Conflict``), or an
    earlier attempt's answer was lost before the last was refused with nothing done (a 429,
    a 408: ``HitlError.answer_lost``)."""
    return isinstance(error, (*ANSWER_LOST, Conflict)) or error.answer_lost


#: The payload fields that hold money or a bid (``strategy_change``'s targets among its
#: ``changes``): the platform reads each as a decimal, so that "2.1", "2.10", 2.1 and
#: ``Decimal("2.10")`` are one amount to it.
MONEY_FIELDS = frozenset({"new_bid", "new_daily_budget", "amount", "target_cpa", "target_roas"})

#: A figure as the platform reads one: ASCII digits and a point, no exponent, no spaces.
_PLAIN_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def _money_as_read(value: Any, *, money: bool = False) -> Any:
    """``value`` (a payload) with each amount in a money field written one way for the amount
    it is, as the platform reads what the client sends: a string as written, a number as JSON
    writes it, a ``Decimal`` as its text ("2.10", 2.1 and ``Decimal("2.100")`` are all
    "2.1"). Amounts that differ stay different (2.1 and 2.11; 0.1 + 0.2, sent as
    0.30000000000000004, and 0.3), and so does a spelling the platform does not read as a
    figure ("2.1e0", " 2.1"): it is refused, not taken for the amount."""
    if isinstance(value, Mapping):
        return {
            name: _money_as_read(item, money=name in MONEY_FIELDS) for name, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_money_as_read(item) for item in value]
    if not money or isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        sent = str(value)  # as the client sends a Decimal
    elif isinstance(value, int | float):
        sent = json.dumps(value)  # as JSON writes a number
    elif isinstance(value, str):
        sent = value
    else:
        return value
    if not _PLAIN_DECIMAL.fullmatch(sent):
        return value
    return f"{Decimal(sent).normalize():f}"


#: How many actions whose answers were lost an adapter remembers (the oldest forgotten
#: first): a platform failing for hours holds no more of them than this.
REMEMBERED_LOST = 1000


class LostAnswers:
    """The proposals an adapter sent whose outcome it could not learn (``may_be_made`` when
    proposing, or any failure while reading it after), by conversation (``scope``: a
    LangChain thread, an MCP session) and action (type, account, payload).

    A later call for the same action in the same conversation, through the same adapter (a
    re-run of the agent, a retrying middleware, the model calling the tool again), is sent
    with the first one's fields and Idempotency-Key: the platform answers with the proposal it
    may have made, and takes it once if it did not, where a new key would have proposed the
    action a second time (two moves of the same budget, each of which a person could
    approve). Another conversation's call for the same action is its own: it is never
    answered with this one's proposal, nor shown its key. Forgotten once a call for it gets
    its answer through, or when ``REMEMBERED_LOST`` newer ones are remembered."""

    def __init__(self, limit: int = REMEMBERED_LOST) -> None:
        self.limit = limit
        self._by_action: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}

    @staticmethod
    def _action(fields: Mapping[str, Any], scope: Any) -> tuple[str, str]:
        action = json.dumps(
            [fields["action_type"], fields["account"], _money_as_read(fields["payload"])],
            default=str,
            sort_keys=True,
        )
        return json.dumps(scope, default=repr), action

    def __len__(self) -> int:
        return len(self._by_action)

    def sent_as(
        self, fields: dict[str, Any], key: str, scope: Any = None
    ) -> tuple[dict[str, Any], str]:
        """The fields and key to send this call with: those of the same action's lost answer
        in the same ``scope`` if there is one, else its own."""
        return self._by_action.get(self._action(fields, scope), (fields, key))

    def remember(self, fields: dict[str, Any], key: str, scope: Any = None) -> None:
        """Remember that the action was sent with ``fields`` and ``key`` and its answer lost
        (the first fields and key it was sent with, if it was already)."""
        action = self._action(fields, scope)
        self._by_action[action] = self._by_action.pop(action, (fields, key))
        while len(self._by_action) > self.limit:
            del self._by_action[next(iter(self._by_action))]

    def lost(
        self,
        error: HitlError,
        fields: dict[str, Any],
        key: str,
        *,
        made: int | None,
        again: str,
        scope: Any = None,
    ) -> None:
        """Remember the action's key, and say in ``error`` (its ``message``, and its
        ``idempotency_key`` attribute) that the proposal may exist and how to find it without
        proposing it twice: ``made`` is its id when it is known to have been made, ``again``
        how to ask again (the adapter's way)."""
        self.remember(fields, key, scope)
        said = message_without_key(error)  # the client's words for the key: said below
        if made is None:
            what = "The proposal may have been made all the same (its answer was lost)."
        else:
            what = f"Proposal #{made} was made; what became of it could not be read."
        error.message = (
            f"{said.rstrip()} {what} Do not propose it again with another key: "
            f"{again} sends it with the same Idempotency-Key, {key!r}, and the same fields, "
            "and the platform answers with that proposal as it is now if it was made, and "
            f"takes it once if it was not (as Client.propose(..., idempotency_key={key!r}) "
            "with the same fields does)."
        )
        error.args = (error.message,)
        error.idempotency_key = key

    def answered(self, fields: Mapping[str, Any], scope: Any = None) -> None:
        self._by_action.pop(self._action(fields, scope), None)


#: Refusals the model can act on (fix its arguments, pick another campaign or account): they
#: go back to it as the tool's result. Others (a bad API key, the platform unreachable after
#: the client's retries, …) are the operator's to fix and are raised. A proposal is never a
#: 404 (an account or campaign not the agent's is a 400): a ``NotFound`` is a base URL that is
#: not the platform's address, which the model was told as the platform refusing its call.
MODEL_FIXABLE = (ValidationFailed, PermissionDenied)

#: Proposals that will execute without anyone deciding more: wait for the execution.
_RUNNING = frozenset({Status.APPROVED, Status.EXECUTING, Status.SUBMITTED})


#: What a proposal that is not final yet is doing, in the model's words.
_STILL = {
    Status.PENDING_REVIEW: "waits for a human decision",
    Status.APPROVED: "is approved and waits for its execution",
    Status.EXECUTING: "is executing (its request may be with the channel now)",
}

#: What a failed execution did on the channel (the API's ``execution.carried_out``), never
#: more than the platform knows: a request that got no sure answer may have been carried out.
_FAILED_SAID = {
    "no": "Nothing was carried out.",
    "partly": (
        "Part of it was carried out on the channel and part was not (the error says which); "
        "it is not retried, which would do the done part twice. Read the current state "
        "before proposing anything more about it."
    ),
    "unknown": (
        "It may have been carried out all the same: a request for it was sent to the channel "
        "and no answer said whether the channel carried it out. Read the current state "
        "before proposing anything more about it."
    ),
}
#: From a server that does not say what the attempts did.
_NOT_SAID = "Whether any of it was carried out on the channel is not known."

#: How a superseded proposal's reason says an attempt may have been carried out.
_SAID_MAY_HAVE_RUN = "may have been carried out on the channel"

#: What an attempt sent to the channel before a proposal ended otherwise than executed (a
#: kill switch held it back, a person then rejected it; its target moved) may have done.
_SENT_BEFORE = {
    "partly": "An attempt sent to the channel before then carried out part of it, though.",
    "unknown": (
        "An attempt sent to the channel before then got no answer that says whether the "
        "channel carried it out, though: it may have been."
    ),
}


#: The same, of one sent back to a person after that attempt (``sent_back_told``).
_SENT_BEFORE_SENT_BACK = {
    "partly": "An attempt sent to the channel before then carried out part of it.",
    "unknown": (
        "An attempt sent to the channel before then got no answer that says whether the "
        "channel carried it out: it may have been."
    ),
}
#: How the platform's reason begins for one a kill switch held back, or a re-assessment
#: re-routed, after an attempt that may have carried it out: the reason names that attempt
#: and what the channel answered it ("… Attempt 1 was answered HTTP 503, which does not say
#: whether the channel carried it out: it may have been carried out there."; recorded
#: before, "… Attempt 1 was sent to the channel and got no answer that says whether …").
_SENT_BACK_BETWEEN = (
    "Held back before its next attempt:",
    "Re-routed to a person before its next attempt:",
)


#: What an earlier attempt did on the channel, for a proposal that may still execute and was
#: not sent back to a person (``sent_back_told`` says it of one that was, after saying so).
#: "An attempt sent to the channel before then" had been said with no "then" before it.
_EARLIER = {
    "partly": "An attempt already sent to the channel carried out part of it.",
    "unknown": (
        "An attempt already sent to the channel got no answer that says whether the channel "
        "carried it out: it may have been."
    ),
}


def will_run_without_a_human(proposal: Proposal) -> bool:
    return proposal.status in _RUNNING


def back_with_a_person(proposal: Proposal) -> bool:
    """Waiting for a person: routed to one, or sent back to one before it ran (a kill switch
    engaged after the platform approved it). A wait that would pause the run for a person
    ends here too (``Client.wait``'s ``until``), rather than block until they decide."""
    return proposal.status == Status.PENDING_REVIEW


def sent_back_told(proposal: Proposal) -> str:
    """For a proposal waiting for a person that had been approved to run (policy let it run,
    its approvals were in, or an attempt was sent), the sentences that tell the model it was
    sent back to a person (a kill switch held it, a re-assessment re-routed it), before it
    ran, or, where an attempt sent before then may have carried it out, after that attempt,
    and why (its reasons the routing did not give: "Held back before executing: …", "Held back
    before its next attempt: …"); "" otherwise. It had read "Waiting for a human reviewer."
    alone, beside an ``auto_approve`` verdict; and "before it ran" of one an attempt that got
    no sure answer may have carried out."""
    verdict = proposal.verdict
    if proposal.status != Status.PENDING_REVIEW or verdict is None:
        return ""
    current = proposal.review_round or 0
    earlier: dict[int, int] = {}
    for decision in proposal.decisions:
        if decision.outcome == "approve" and (decision.round or 0) < current:
            earlier[decision.round or 0] = earlier.get(decision.round or 0, 0) + 1
    approved = (
        verdict.outcome == "auto_approve"
        or proposal.execution is not None
        or any(count >= verdict.required_approvals for count in earlier.values())
    )
    if not approved:
        return ""
    routed = [str(reason) for reason in verdict.routed_reasons or []]
    why = [str(reason) for reason in verdict.reasons if str(reason) not in routed]
    carried_out = _carried_out(proposal) or ""
    if carried_out not in _SENT_BEFORE:
        said = "It was approved to run, then sent back to a person before it ran"
        return said + (f": {' '.join(why)}" if why and routed else ".")
    # An attempt sent to the channel may have carried it out: not "before it ran". Where the
    # platform's reason says so itself ("Held back before its next attempt: … Attempt 1 was
    # answered HTTP 503, which does not say …"), it is not said twice.
    said = "It was approved to run, then sent back to a person"
    said += f": {' '.join(why)}" if why and routed else "."
    if why and routed and any(reason.startswith(_SENT_BACK_BETWEEN) for reason in why):
        return said
    return f"{said} {_SENT_BEFORE_SENT_BACK[carried_out]}"


def refusal_report(error: HitlError | Exception) -> dict[str, Any]:
    """The tool's result when the platform refused the proposal (or it could not be made)."""
    report: dict[str, Any] = {"status": "refused", "executed": False}
    if isinstance(error, ValidationFailed) and error.status_code is None:
        # The client's own refusal, before sending: the platform never saw the call.
        report["message"] = (
            f"The client refused the proposal before sending it to the platform: {faults(error)}"
        )
        report["errors"] = error.errors
    elif isinstance(error, ValidationFailed):
        report["message"] = f"The platform refused the proposal: {error.message}"
        report["errors"] = error.errors
    elif isinstance(error, HitlError):
        report["message"] = f"The platform refused the proposal: {error.message}"
    elif isinstance(error, KeyError) and error.args:
        report["message"] = (
            f"The tool call's arguments lack “{error.args[0]}”, which the proposal needs; "
            "call the tool again with it."
        )
    else:
        reason = _sentence(str(error)) or f"{type(error).__name__}."
        report["message"] = f"The tool call's arguments could not make a proposal: {reason}"
    report["message"] += " Nothing was executed."
    return report


def faults(error: ValidationFailed) -> str:
    """Each field's messages, named (``confidence: Must be a finite number…``)."""
    return "; ".join(
        " ".join(messages) if name == "non_field_errors" else f"{name}: {' '.join(messages)}"
        for name, messages in error.errors.items()
    )


def outcome_report(proposal: Proposal) -> dict[str, Any]:
    """What the model is told of a proposal: what happened, when (``decided_at``,
    ``executed_at``, ``failed_at``; ``expires_at`` for one still waiting for a person, as the
    API writes them), and the figures that say so; a reviewer's edit field by field, against
    the payload as its agent proposed it (``proposed_payload``), whoever made the call."""
    report: dict[str, Any] = {
        "proposal_id": proposal.id,
        "status": proposal.status,
        "executed": proposal.status == Status.EXECUTED,
        "summary": proposal.summary,
    }
    status = proposal.status
    if status == Status.EXECUTED:
        execution = proposal.execution
        report["decided_at"] = _at(proposal, "decided_at")
        report["executed_at"] = _at(proposal, "executed_at")
        report["before"] = execution.before_state if execution else None
        report["after"] = execution.after_state if execution else None
        if execution is not None and execution.created:
            report["created"] = execution.created
        approvals = _approvals_that_let_it_run(proposal)
        report["decided_by"] = _approvers(approvals) or "policy (auto-approved)"
        retry = proposal.let_run_by_retry
        if retry is not None:
            # A person's retry is their approval: the run that executed was on their word.
            report["first_decided_by"] = report["decided_by"]
            report["first_decided_at"] = report["decided_at"]
            report["decided_by"] = RETRIED_BY
            report["decided_at"] = retry.raw.get("at")
        if proposal.retries:
            report["retries"] = [each.raw for each in proposal.retries]
        retried = _retries_said(proposal)
        said = _said(approvals)
        if len(approvals) == 1 and approvals[0].note:
            report["note"] = approvals[0].note
        elif len(approvals) > 1 and said:  # each one's, never the last one's as the word on it
            report["notes"] = said
        approved = f"approved it{': ' + ' '.join(said) if said else '.'}"
        figures = _what_it_changed(
            report["before"], report["after"], proposal.summary, report.get("created", {})
        )
        edited, proposed = proposal.edited_payload, proposal.proposed_payload
        if edited is not None and proposed is not None and not _changed_fields(proposed, edited):
            # Edited back to what its agent proposed (one reviewer's edit undone by the next):
            # it ran as proposed, as its feedback says ("approved", no diff).
            edited = None
        if edited is not None:
            report["edited"] = {"proposed": proposed, "executed": edited}
            by = "" if len(approvals) == 1 else f"{_approvers(approvals)} "
            report["message"] = (
                f"A reviewer edited it ({_edit_text(proposed, edited)}), then {by}{approved} "
                f"{retried}The edited version executed. {figures}"
            )
        elif approvals:
            report["message"] = (
                f"{_approvers(approvals).capitalize()} {approved} {retried}Executed. {figures}"
            )
        elif retried:
            auto = proposal.verdict is not None and proposal.verdict.outcome == "auto_approve"
            first = POLICY_APPROVED if auto else "It was approved to run."
            report["message"] = f"{first} {retried}Executed. {figures}"
        else:
            report["message"] = f"Executed. {figures}"
    elif status == Status.REJECTED:
        rejection = proposal.rejection
        report["decided_at"] = _at(proposal, "decided_at")
        report["reason_code"] = rejection.reason_code if rejection else ""
        report["note"] = rejection.note if rejection else ""
        report["reasons"] = _reasons(proposal)  # why policy sent it to a human
        routed, _ = routed_told(proposal)
        if routed is not None:  # replaced in reasons by a re-assessment's (an edit's)
            report["routed_reasons"] = routed
        note = _sentence(report["note"])
        rejected = (
            f"rejected it ({report['reason_code'] or 'no reason code'})"
            f"{': ' + note if note else '.'}"
        )
        approved_first = _approved_before(proposal, rejection)
        if approved_first:
            # Under a two-person rule, one who approved before another rejected: it had read
            # "A reviewer rejected it", as if nobody had agreed with the agent.
            report["approved_before"] = [
                {"by": f"Reviewer {number}", "at": decision.raw.get("decided_at"),
                 "note": decision.note}
                for number, decision in enumerate(approved_first, start=1)
            ]  # fmt: skip
            needed = proposal.verdict.required_approvals if proposal.verdict else None
            report["message"] = (
                " ".join(
                    f"Reviewer {number} approved it"
                    + (" with edits" if decision.edited_payload is not None else "")
                    + (f": {_sentence(decision.note)}" if decision.note.strip() else ".")
                    for number, decision in enumerate(approved_first, start=1)
                )
                + f" Then Reviewer {len(approved_first) + 1} {rejected}"
                + (f" It needed {needed} approvals." if needed else "")
                + f" {_not_executed(proposal)}"
            )
        else:
            report["message"] = f"A reviewer {rejected} {_not_executed(proposal)}"
        _tell_edit(report, proposal, "The version rejected was the edited one.")
    elif status == Status.BLOCKED:
        report["reasons"] = _reasons(proposal)
        # A policy's hard ceiling, or a guardrail (a budget cap, a strategy lock): its reasons
        # say which.
        report["message"] = " ".join(
            ["It was blocked.", _not_executed(proposal), *report["reasons"]]
        )
    elif status == Status.SUPERSEDED:
        # The platform's own account comes first: the value the call saw and the value now.
        report["reasons"] = _reasons(proposal)[:1]
        why = " ".join(report["reasons"]) or (
            "Superseded: its target changed before it could execute, so it was not executed."
        )
        # A reason that names the attempt that may have been carried out already says so:
        # not said twice.
        sent_before = (
            "" if _SAID_MAY_HAVE_RUN in why else _SENT_BEFORE.get(_carried_out(proposal), "")
        )
        report["message"] = " ".join(
            filter(
                None,
                [
                    why,
                    sent_before,
                    "Read the current state and propose again if it still makes sense.",
                ],
            )
        )
        _tell_edit(report, proposal, "It was superseded as edited.")
    elif status == Status.EXPIRED:
        # The last review round's approvals: one approved before it was sent back to a person
        # (a kill switch held it before it ran) did not approve the round that expired.
        approved = _approvals_that_let_it_run(proposal)
        asked = proposal.verdict.required_approvals if proposal.verdict else 1
        if approved:
            said = f"It expired before enough people approved it (its policy asks for {asked})."
        elif any(decision.outcome == "approve" for decision in proposal.decisions):
            said = "It was approved, then sent back to a person; nobody decided it again in time."
        else:
            said = "Nobody decided it in time; it expired."
        report["message"] = f"{said} {_not_executed(proposal)}"
        _tell_edit(report, proposal, "It expired as edited.")
    elif status == Status.WITHDRAWN:
        withdrawal = proposal.withdrawal
        if withdrawal is not None and withdrawal.by == "reviewer":
            report["withdrawn_by"] = "a reviewer"
            report["note"] = withdrawal.note
            note = _sentence(withdrawal.note)
            report["message"] = (
                f"A reviewer withdrew it{': ' + note if note else '.'} {_not_executed(proposal)}"
            )
        elif withdrawal is not None:
            # Withdrawn through this agent's own key: by this run, or by another of its runs or
            # processes (an orchestrator), which the model may not know of.
            report["withdrawn_by"] = "this agent"
            report["note"] = withdrawal.note
            note = _sentence(withdrawal.note)
            report["message"] = (
                f"This agent withdrew it{': ' + note if note else '.'} {_not_executed(proposal)}"
            )
        else:  # withdrawn before the platform recorded by whom
            report["message"] = f"It was withdrawn. {_not_executed(proposal)}"
        _tell_edit(report, proposal, "It was withdrawn as edited.")
    elif status == Status.FAILED:
        execution = proposal.execution
        report["failed_at"] = execution.raw.get("finished_at") if execution else None
        report["error"] = execution.error if execution else ""
        report["carried_out"] = _carried_out(proposal)
        if proposal.retries:
            report["retries"] = [each.raw for each in proposal.retries]
        retried = _retries_said(proposal)
        at = report["failed_at"]
        failed = (
            f"{retried}That run failed too{' at ' + at if at else ''}: "
            if retried
            else "Approved, but its execution failed: "
        )
        report["message"] = (
            f"{failed}{_sentence(report['error'])} "
            f"{_FAILED_SAID.get(report['carried_out'], _NOT_SAID)} "
            "An operator may retry it: do not propose it again."
        )
        _tell_edit(report, proposal, "The version that failed was the edited one.")
    else:
        # Not final: a wait that ran out (``wait="block"``). It may still execute, so the model
        # is told not to propose it again, which would ask for the same action twice.
        report["reasons"] = _reasons(proposal)
        waiting = _STILL.get(status, f"is {status}")
        approvals = approvals_so_far(proposal)
        if approvals is not None:
            report["approvals"] = approvals
        if proposal.retries:
            report["retries"] = [each.raw for each in proposal.retries]
        retry = proposal.let_run_by_retry if status in _RUNNING else None
        if retry is not None:
            report["decided_by"] = RETRIED_BY
            report["decided_at"] = retry.raw.get("at")
        edit, edit_said = edit_told(proposal)
        if edit is not None:
            report["edited"] = edit
        next_at, next_said = next_attempt_told(proposal)
        if next_at is not None:
            report["next_attempt_at"] = next_at
        # The platform says, first among its reasons, where its next attempt fails it rather
        # than run (a hard ceiling of the policy that routed it lowered since): then it is not
        # said to be tried again, nor that it still may execute.
        failing = _fails_at_next_attempt(report["reasons"])
        if failing and next_at is not None:
            next_said = next_said.split("; the platform tries it again by itself")[0] + "."
        routed, routed_said = routed_told(proposal)
        if routed is not None:
            report["routed_reasons"] = routed
        sent_back = sent_back_told(proposal)
        report["message"] = " ".join(
            filter(
                None,
                [
                    (
                        f"Proposal #{proposal.id} {waiting}; it has not executed yet, and its "
                        "next attempt fails it rather than run it, as said below."
                        if failing
                        else f"Proposal #{proposal.id} {waiting}; it has not executed yet, but "
                        "it still may: do not propose it again."
                    ),
                    _retries_said(proposal).strip() if retry is not None else "",
                    edit_said,
                    approvals["message"] if approvals else "",
                    next_said,
                    sent_back or _EARLIER.get(_carried_out(proposal) or "", ""),
                    # Those the sentence that it was sent back gave as why are not said twice.
                    *(reason for reason in report["reasons"] if reason not in sent_back),
                    routed_said,
                ],
            )
        )
        expires_at, expiry_said = expiry(proposal)
        if expires_at:
            report["expires_at"] = expires_at
            report["message"] += f" {expiry_said}"
    if proposal.execution is not None:
        # What its attempts did on the channel, as the API says: "unknown" or "partly" for
        # one that did not execute here means it ran, or may have, there.
        report["carried_out"] = _carried_out(proposal)
    return report


def _fails_at_next_attempt(reasons: list[str]) -> bool:
    """Whether the platform says, among the proposal's reasons (``verdict.reasons``), that
    its next attempt fails it rather than run: "… It fails at its next attempt (due …) rather
    than run."."""
    return any(
        "It fails at its next attempt" in reason and reason.endswith("rather than run.")
        for reason in reasons
    )


def may_have_run(report: Mapping[str, Any]) -> bool:
    """Whether the action the report tells of ran, or may have, on the channel, whatever its
    status: executed, or attempts that carried out part of it or got no sure answer."""
    return bool(report.get("executed")) or report.get("carried_out") in {"partly", "unknown"}


def _carried_out(proposal: Proposal) -> str | None:
    """What its attempts did on the channel, as the API says (``execution.carried_out``):
    "no" with no attempt on record (the platform records one before it sends anything);
    None from a server that does not say."""
    if proposal.execution is None:
        return "no"
    return proposal.execution.carried_out


def _not_executed(proposal: Proposal) -> str:
    """ "It was not executed.", as far as is known: an attempt sent to the channel before it
    ended so (a kill switch held it back and a person then decided otherwise) may have
    carried it out."""
    carried_out = _carried_out(proposal)
    if carried_out == "no":
        return "It was not executed."
    if carried_out in _SENT_BEFORE:
        return f"The platform did not execute it. {_SENT_BEFORE[carried_out]}"
    return f"The platform did not execute it. {_NOT_SAID}"


def expiry(proposal: Proposal) -> tuple[str | None, str]:
    """When a proposal waiting for a person expires unless one decides it first (as the API
    writes the time), and the sentence that tells the model so; ``(None, "")`` for one that
    does not wait for a person, or waits with no deadline. Until then it may still execute:
    after it, proposing the action again is no repeat."""
    expires_at = _at(proposal, "review_expires_at")
    if proposal.status != Status.PENDING_REVIEW or expires_at is None:
        return None, ""
    if _passed(expires_at):
        # Read before the platform's expiry sweep came round (no read expires it).
        return expires_at, (
            f"Its review window closed at {expires_at}: no person can decide it any more, "
            "and the platform is about to expire it. It will not be executed."
        )
    return expires_at, f"It expires at {expires_at} unless a person decides it first."


def _passed(moment: str) -> bool:
    try:
        at = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return False
    return at.tzinfo is not None and at <= datetime.now(UTC)


def _at(proposal: Proposal, name: str) -> str | None:
    """A moment of the proposal's as the API wrote it (ISO 8601, UTC)."""
    moment = proposal.raw.get(name)
    return moment if isinstance(moment, str) and moment else None


def report_text(report: Mapping[str, Any]) -> str:
    return json.dumps(report, default=str, ensure_ascii=False)


def _reasons(proposal: Proposal) -> list[str]:
    return list(proposal.verdict.reasons) if proposal.verdict else []


#: How the reasons it was routed with are said, by the routing's outcome.
_ROUTED_SAID = {
    "review": "Why it was sent to a person, as routed before that:",
    "block": "Why it was blocked, as routed before that:",
    "auto_approve": "Why policy approved it without a person, as routed before that:",
}


def routed_told(proposal: Proposal) -> tuple[list[str] | None, str]:
    """Why policy routed the proposal as it did (the API's ``verdict.routed_reasons``), and
    the sentence that tells the model so, where its ``reasons`` no longer say it: a
    re-assessment (a reviewer's edit, its figures moved) replaced them with its own ("… is
    within the 60.0% auto-execute ceiling", of an amount edited down), which would leave the
    model reading that it was within the ceiling and not why a person was asked. ``(None,
    "")`` where its reasons still say it, or from a server that does not say."""
    verdict = proposal.verdict
    if verdict is None or not verdict.routed_reasons:
        return None, ""
    routed = [str(reason) for reason in verdict.routed_reasons]
    if all(reason in verdict.reasons for reason in routed):
        return None, ""
    lead = _ROUTED_SAID.get(verdict.outcome or "", "Why policy routed it, as routed then:")
    return routed, f"{lead} {' '.join(routed)}"


def next_attempt_told(proposal: Proposal) -> tuple[str | None, str]:
    """When an executing proposal's next attempt on its channel is due after its last one
    failed (the API's ``execution.next_attempt_at``), as the API writes the time, and the
    sentence that tells the model so: that attempt's ``failed`` is not the proposal's, which
    the platform tries again by itself. ``(None, "")`` otherwise."""
    execution = proposal.execution
    at = execution.raw.get("next_attempt_at") if execution is not None else None
    if (
        proposal.status != Status.EXECUTING
        or execution is None
        or execution.status != "failed"
        or not isinstance(at, str)
        or not at
    ):
        return None, ""
    error = _sentence(execution.error).rstrip(".")
    return at, (
        f"Attempt {execution.attempt} failed{': ' + error if error else ''}; the platform "
        f"tries it again by itself, attempt {execution.attempt + 1} being due at {at}."
    )


def _approved_before(proposal: Proposal, rejection: Decision | None) -> list[Decision]:
    """Those who approved a rejected proposal in the round its rejection ended, before it (a
    two-person rule's first approval), in the order they approved."""
    if rejection is None or rejection not in proposal.decisions:
        return []
    earlier = proposal.decisions[: proposal.decisions.index(rejection)]
    return [
        d for d in earlier if d.outcome == "approve" and (d.round or 0) == (rejection.round or 0)
    ]


def _approvals_this_round(proposal: Proposal) -> list[Decision]:
    """The approvals of the review round it is in (the API's ``review_round``), in the order
    given; from a server that does not say its round, those of its decisions' last round."""
    current = proposal.review_round
    if current is None:
        current = max((decision.round or 0 for decision in proposal.decisions), default=0)
    return [d for d in proposal.decisions if d.outcome == "approve" and (d.round or 0) == current]


_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")


def approvals_so_far(proposal: Proposal) -> dict[str, Any] | None:
    """For a proposal waiting for a person that has some of the approvals its policy asks
    for (a two-person rule with one approval in), what the API says of it, in the words
    every adapter tells its model (the MCP server's ``approvals`` and ``next_step``, the
    framework adapters' report): ``given`` of ``required`` approvals, each approval (by
    whom, as the API and the feedback name reviewers, "Reviewer 1", when, and its note), and
    a ``message``: "1 of the 2 approvals it needs is in: Reviewer 1 approved it at …. It
    still waits for a second reviewer's approval." It had read as simply waiting for a
    human, as if no one had looked at it. None for any other proposal."""
    if proposal.status != Status.PENDING_REVIEW or proposal.verdict is None:
        return None
    required = proposal.verdict.required_approvals
    approvals = _approvals_this_round(proposal)
    if not approvals or len(approvals) >= required:
        return None
    given = [
        {
            "by": f"Reviewer {number}",
            "at": decision.raw.get("decided_at"),
            "note": decision.note,
        }
        for number, decision in enumerate(approvals, start=1)
    ]
    said = "; ".join(
        f"{each['by']} approved it"
        + (f" at {each['at']}" if each["at"] else "")
        + (f" ({_sentence(each['note'])})" if each["note"].strip() else "")
        for each in given
    )
    more = required - len(approvals)
    if more > 1:
        still = f"{more} more reviewers' approvals"
    elif len(approvals) < len(_ORDINALS):
        still = f"a {_ORDINALS[len(approvals)]} reviewer's approval"
    else:
        still = "one more reviewer's approval"
    are = "is" if len(approvals) == 1 else "are"
    return {
        "given": len(approvals),
        "required": required,
        "approved": given,
        "message": (
            f"{len(approvals)} of the {required} approvals it needs {are} in: {said}. "
            f"It still waits for {still}."
        ),
    }


def _approvals_that_let_it_run(proposal: Proposal) -> list[Decision]:
    """The approvals of its last review round: one sent back to a person (held by a kill
    switch before it ran, say) was let run by those, not by the earlier round's too, which
    would count one reviewer who approved it twice as "2 reviewers"."""
    last = max((decision.round or 0 for decision in proposal.decisions), default=0)
    return [d for d in proposal.decisions if d.outcome == "approve" and (d.round or 0) == last]


#: Who let a proposal run that a person sent to run again after its execution failed (a
#: person's retry is their approval), as the model is told: its report's ``decided_by``.
RETRIED_BY = "a reviewer, who sent it to run again after its execution failed"

#: The start of what the model is told of a proposal policy let run that then failed and was
#: retried: it had read as "Executed." alone, as if policy had let the run go that executed.
POLICY_APPROVED = "Policy approved it without a person (auto-approved)."


def approved_by(proposal: Proposal) -> str:
    """Who let an approved proposal run, as the model is told: "a reviewer", "2 reviewers"
    (its last review round's approvals), "policy" (auto-approved, nobody decided), or, sent
    to run again by a person after its execution failed, ``RETRIED_BY``."""
    if proposal.let_run_by_retry is not None:
        return RETRIED_BY
    return _approvers(_approvals_that_let_it_run(proposal)) or "policy"


def _retries_said(proposal: Proposal) -> str:
    """Each failure a person sent to run again, in order, as sentences ending in a space:
    "Its execution failed at … (the endpoint answered HTTP 400), and a reviewer sent it to
    run again at … (their approval to run it). " (a second: "That run failed too at … (…),
    and …"); "" if no one retried it."""
    said = []
    for number, retry in enumerate(proposal.retries):
        failed = "Its execution failed" if number == 0 else "That run failed too"
        at = retry.raw.get("failed_at")
        error = retry.error.strip().rstrip(".")
        said.append(
            f"{failed}{' at ' + at if at else ''}{f' ({error})' if error else ''}, and a "
            f"reviewer sent it to run again at {retry.raw.get('at')} (their approval to run "
            "it). "
        )
    return "".join(said)


#: What a reviewer's edit means for a proposal that has not executed, by its status.
_EDITED_NOW = {
    Status.PENDING_REVIEW: "A decision now is on the edited version: it is what would run.",
    Status.APPROVED: "The edited version is what runs.",
    Status.EXECUTING: "The edited version is what runs.",
}


def edit_told(proposal: Proposal) -> tuple[dict[str, Any] | None, str]:
    """A reviewer's edit of a proposal that has not executed (waiting for a second
    reviewer's approval, approved and about to run, sent back to a person, or ended so),
    field by field against the payload as its agent proposed it (``proposed_payload``), as
    an executed one's is told: ``({"proposed": …, "payload": …}, "A reviewer edited it
    (amount: 280.00 → 200.00). A decision now is on the edited version: …")``; ``(None,
    "")`` where no edit changed it (edited back to what its agent proposed, too)."""
    proposed, payload = proposal.proposed_payload, proposal.payload
    if proposed is None:  # a server that does not say what its agent proposed
        if proposal.edited_payload is None:
            return None, ""
    elif not _changed_fields(proposed, payload):
        return None, ""
    who = "A reviewer"
    if approvals_so_far(proposal) is not None:
        # Named as the approvals in so far are ("Reviewer 1 approved it at …"): the last of
        # them to edit it, if one of them did.
        editors = [
            number
            for number, decision in enumerate(_approvals_this_round(proposal), start=1)
            if decision.edited_payload is not None
        ]
        if editors:
            who = f"Reviewer {editors[-1]}"
    said = f"{who} edited it ({_edit_text(proposed, payload)})."
    now = _EDITED_NOW.get(proposal.status, "")
    return {"proposed": proposed, "payload": payload}, f"{said} {now}".strip()


def _tell_edit(report: dict[str, Any], proposal: Proposal, ended: str) -> None:
    """Add a reviewer's edit of a proposal that ended without executing to its ``report``
    (``edited``, and its ``message``, closed by ``ended``)."""
    edit, said = edit_told(proposal)
    if edit is not None:
        report["edited"] = edit
        report["message"] += f" {said} {ended}"


def _approvers(approvals: list[Decision]) -> str:
    """Who approved, as the API tells it (not by name): "a reviewer", "2 reviewers"."""
    if not approvals:
        return ""
    return "a reviewer" if len(approvals) == 1 else f"{len(approvals)} reviewers"


def _said(approvals: list[Decision]) -> list[str]:
    """What the approving reviewers wrote, as sentences: one reviewer's note alone; of
    several (a two-person rule), each note after its writer's place in the order they
    approved, "Reviewer 1: …", as the feedback names them. A second approver's note had been
    all the model was told."""
    if len(approvals) == 1:
        return [_sentence(approvals[0].note)] if approvals[0].note.strip() else []
    return [
        f"Reviewer {number}: {_sentence(decision.note)}"
        for number, decision in enumerate(approvals, start=1)
        if decision.note.strip()
    ]


def _sentence(note: str) -> str:
    note = note.strip()
    return note + "." if note and note[-1] not in ".!?" else note


def _edit_text(proposed: Mapping[str, Any] | None, executed: Mapping[str, Any]) -> str:
    """What a reviewer's edit changed, field by field ("amount: 280.00 → 200.00"), into a
    batch's items and a strategy change's fields as the feedback's diff names them
    ("creatives[0].headline: "Save big" → "Save"", "changes.target_cpa: 40.00 → 35.00");
    the executed payload whole when the proposed one is not known."""
    if proposed is None:
        return f"to {_compact(executed)}"
    changes = [
        f"{path}: {_value_text(before)} → {_value_text(after)}"
        for path, before, after in _changed_fields(proposed, executed)
    ]
    return "; ".join(changes) or "no field changed"


def _changed_fields(before: Any, after: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Each field that differs, by its path as the platform's diffs name it (the feedback's
    ``diff``: ``creatives[1].body``), in their order (by name: a payload's keys come back in
    another order from PostgreSQL than from SQLite); a list of another length (a creative
    added or removed) is told whole."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        return [
            change
            for name in sorted({*before, *after}, key=str)
            for change in _changed_fields(
                before.get(name), after.get(name), f"{path}.{name}" if path else str(name)
            )
        ]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            change
            for index, (old, new) in enumerate(zip(before, after, strict=True))
            for change in _changed_fields(old, new, f"{path}[{index}]")
        ]
    return [] if _same(before, after) else [(path, before, after)]


def _same(a: Any, b: Any) -> bool:
    """Equal, counting "280" and "280.00" (the platform's spelling) as the same amount."""
    if a == b:
        return True
    try:
        return isinstance(a, str | int | float) and Decimal(str(a)) == Decimal(str(b))
    except (ArithmeticError, ValueError):
        return False


#: A value told as it is, unquoted: an amount, a status, a strategy's name.
_BARE = re.compile(r"[\w.+-]+")


def _value_text(value: Any) -> str:
    """A value in an edit's words: an amount or a name as it is (280.00, target_cpa), a text
    quoted, its line breaks as \\n (a creative's copy: where it begins and ends is plain,
    whatever it says), anything else as JSON."""
    if value is None:
        return "(none)"
    if isinstance(value, str) and _BARE.fullmatch(value):
        return value
    return _compact(value)


def _what_it_changed(
    before: Any, after: Any, summary: str, created: Mapping[str, list[int]]
) -> str:
    """The execution's figures in a sentence: each campaign setting before and after; an
    action that sets none (a creative batch adds creatives) is told by what it did and the
    ledger records it added, not by empty states."""
    if _sets_a_field(before) or _sets_a_field(after):
        return f"Before: {_compact(before)}; after: {_compact(after)}."
    records = "; ".join(
        f"{kind} {', '.join(f'#{pk}' for pk in ids)}" for kind, ids in created.items() if ids
    )
    added = f" (in the ledger: {records})" if records else ""
    return f"Done: {summary}{added}; no campaign setting changed."


def _sets_a_field(state: Any) -> bool:
    return isinstance(state, Mapping) and any(state.values())


def _compact(state: Any) -> str:
    return json.dumps(state, default=str, ensure_ascii=False, separators=(", ", ": "))
