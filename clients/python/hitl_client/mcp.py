"""An MCP server (stdio) that lets any MCP-speaking agent work with the approvals platform:
read campaigns, dry-run an action, propose it, wait for the human decision, and read the
feedback people left. Run it as ``hitl-mcp`` (or ``python -m hitl_client.mcp``) with
``HITL_BASE_URL`` and ``HITL_API_KEY`` set; it needs the ``mcp`` extra
(``pip install "hitl-client[mcp]"``).

Refusals come back as tool errors carrying the API's own message (and each field's
message), so the model can correct its call."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

try:
    from mcp.server import MCPServer
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver.exceptions import ToolError
    from pydantic import Field, ValidationError
except ImportError as missing:  # the client installed without its mcp extra
    raise ImportError(
        'hitl_client.mcp needs the mcp extra: pip install "hitl-client[mcp]" '
        '(from the repository: pip install "./clients/python[mcp]").'
    ) from missing

from hitl_client._core import message_without_key
from hitl_client._tools import (
    LostAnswers,
    approvals_so_far,
    approved_by,
    edit_told,
    expiry,
    faults,
    may_be_made,
    next_attempt_told,
    outcome_report,
    routed_told,
    sent_back_told,
)
from hitl_client.client import AsyncClient
from hitl_client.errors import (
    BadResponse,
    HitlError,
    ValidationFailed,
    WaitTimedOut,
)
from hitl_client.models import Proposal

INSTRUCTIONS = """\
This server connects you to a human-in-the-loop approvals platform for marketing actions.
Nothing you propose happens unchecked: policy decides at once whether an action runs on its
own (small, routine changes), waits for a human reviewer, or is held back.

How to work:
1. Call list_campaigns to see the current budgets, bids and statuses you reason from.
2. Optionally call dry_run with the action to learn whether it would run at once or wait.
3. Call propose_action. The answer carries the status:
   - "approved": it will execute within seconds; call wait_for_decision to see the result.
   - "pending_review": a human must decide; call wait_for_decision (repeat if not final).
     Under a two-person rule, "approvals" says which approvals are in (by whom, when) and
     that it still waits for another reviewer's; "edited" (and next_step) what a
     reviewer's edit changed, field by field, if one edited it.
   - "blocked": refused (a policy's hard ceiling or a guardrail); read verdict.reasons, do
     not resubmit the same thing.
4. A final status is one of executed (see execution.before_state / after_state), rejected
   (see decisions: reason_code and note), failed (see execution.error; an operator may
   retry it, so do not propose it again: wait_for_decision called on a failed proposal
   waits for that retry and for how the run it starts ends; "retries" lists each retry,
   when, and the failure it followed), expired, withdrawn, blocked, superseded (the
   target changed first: look at the campaigns again and propose anew). Where a request
   was sent to the channel, execution.carried_out says what it did as far as the platform
   knows: yes, partly, unknown (no answer said whether: it may have been) or no; read the
   campaigns again before proposing more for one that is partly or unknown.
5. Call read_feedback now and then to learn how reviewers judged your proposals, and adjust.
"""

PAYLOADS = """\
Payload by action_type (campaigns by external id; amounts and bids as decimal strings):
- bid_adjustment: {"campaign": "<id>", "new_bid": "2.12"}
- budget_change: {"campaign": "<id>", "new_daily_budget": "550.00"}
- budget_reallocation: {"from_campaign": "<id>", "to_campaign": "<id>", "amount": "280.00"}
  (a daily amount moved from one campaign to another)
- creative_deployment: {"campaign": "<id>", "creatives": [{"headline": "...", "body": "...",
  "call_to_action": "..."}]}
- strategy_change: {"campaign": "<id>", "changes": {"bidding_strategy": "target_cpa",
  "target_cpa": "40.00"}}
- status_change: {"campaign": "<id>", "status": "active" | "paused"}
A field the action type does not know is refused."""

ClientFactory = Callable[[], AsyncClient]

#: The name ``ValidationFailed.errors`` gives the messages about the request as a whole.
NON_FIELD = "non_field_errors"


def _tool_error(error: HitlError) -> ToolError:
    """The API's refusal, worded for the model: its message, and each field's. A refusal of
    the request as a whole (an idempotency_key reused with another action, a 422) is its
    message with its status, not a field named ``non_field_errors``. One the client made
    before sending (an Idempotency-Key or a number the API would not take) is said to be
    that, not the platform's. An answer that is not the API's (``BadResponse``) is said to
    be one, not a refusal."""
    if isinstance(error, ValidationFailed) and error.status_code is None:
        # The client's own refusal, before sending (a key or a number the API would not take).
        return ToolError(
            f"The request was refused before it was sent to the platform: {faults(error)} "
            "Nothing was done; call it again with them corrected."
        )
    if isinstance(error, ValidationFailed) and set(error.errors) - {NON_FIELD}:
        return ToolError(f"The platform refused the request: {faults(error)}")
    if isinstance(error, BadResponse):  # answered, but not as the API answers: no refusal
        status = "" if error.status_code is None else f" (HTTP {error.status_code})"
        return ToolError(f"The platform's answer could not be read{status}: {error.message}")
    if error.status_code is not None:
        return ToolError(f"The platform refused the request ({error.status_code}): {error.message}")
    return ToolError(error.message)


class _Server(MCPServer):
    """The SDK's server, telling the model plainly what is wrong with a call's arguments.

    The SDK answers arguments that fail a tool's schema with pydantic's report (the input
    echoed back, a link to pydantic's documentation on every line), and drops arguments a
    tool does not take without a word: ``propose_action`` given ``"dry_run": true`` proposed
    for real. Here each wrong argument is named with what is wrong with it, and an argument
    a tool does not take is refused, as the API refuses a field or parameter it does not
    know."""

    _arguments_taken: dict[str, frozenset[str]] | None = None

    async def _taken(self, tool: str) -> frozenset[str] | None:
        if self._arguments_taken is None:
            self._arguments_taken = {
                listed.name: frozenset(listed.input_schema.get("properties") or ())
                for listed in await self.list_tools()
            }
        return self._arguments_taken.get(tool)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        taken = await self._taken(name)  # None: no such tool, which the SDK says
        if taken is not None and (unknown := sorted(set(arguments) - taken)):
            takes = f"its arguments: {', '.join(sorted(taken))}" if taken else "it takes none"
            raise ToolError(
                f"Error executing tool {name}: it takes no argument "
                f"{', '.join(map(repr, unknown))} ({takes}). "
                f"Nothing was done; call it again without {'it' if len(unknown) == 1 else 'them'}."
            )
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as error:
            invalid = error.__cause__
            if not isinstance(invalid, ValidationError):
                raise
            raise ToolError(
                f"Error executing tool {name}: its arguments were refused: "
                f"{_argument_faults(invalid)}. Nothing was done; call it again with them "
                "corrected."
            ) from invalid


def _outcome_unknown(error: HitlError, key: str) -> ToolError:
    """A proposal whose answer never arrived whole (the connection broke, the platform failed,
    or its answer could not be read): it may have been made. The model is given the key
    that finds it, so that asking again answers that proposal rather than making another."""
    return ToolError(
        f"Whether it was proposed is unknown: {message_without_key(error)} It may have been "
        "made. Do not propose it again with another key: call propose_action again with the "
        f'same arguments and idempotency_key "{key}", which answers that proposal as it is now '
        "if it was made, and proposes it once if it was not."
    )


def _argument_faults(invalid: ValidationError) -> str:
    """Each wrong argument and what is wrong with it, in pydantic's words without its
    boilerplate: "account: required; confidence: Input should be a valid number"."""
    faults = []
    for fault in invalid.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in fault["loc"]) or "arguments"
        faults.append(f"{where}: {'required' if fault['type'] == 'missing' else fault['msg']}")
    return "; ".join(faults)


NEXT_STEP = {
    # Approved by policy as it was proposed, or by reviewers since: ``approved_by`` says.
    "approved": "Approved by {approved_by}; it executes within seconds. Call wait_for_decision.",
    "pending_review": "Waiting for a human reviewer. Call wait_for_decision.",
    "executing": "Executing now. Call wait_for_decision.",
}


#: What a model may do about a failed proposal: a person may still send it to run again.
RETRY_NEXT_STEP = (
    "An operator may retry it (it then runs again): do not propose it again. Call "
    "wait_for_decision to wait for that retry and for how the run it starts ends."
)


def proposal_view(proposal: Proposal) -> dict[str, Any]:
    """What a model needs of a proposal, as JSON: once it is final, what became of it in a
    sentence (``message``, as the framework adapters tell it); before, what to do next, and
    for one waiting for a person, when it expires unless one decides it (``expires_at``, in
    the framework adapters' words). A reviewer's edit is told field by field ("amount:
    280.00 → 200.00"), whichever session made the proposal."""
    raw = proposal.raw
    view: dict[str, Any] = {
        "id": proposal.id,
        "status": proposal.status,
        "final": proposal.is_final,
        "summary": proposal.summary,
        "action_type": proposal.action_type,
        "payload": proposal.payload,
        "magnitude": raw.get("magnitude"),
        "risk": proposal.risk,
        "verdict": raw.get("verdict"),
        "decisions": raw.get("decisions") or [],
        "execution": raw.get("execution"),
        "withdrawal": raw.get("withdrawal"),
        "retries": raw.get("retries") or [],
    }
    if proposal.is_final:
        report = outcome_report(proposal)
        view["message"] = report["message"]
        for told in ("decided_by", "decided_at", "edited"):
            if told in report:
                view[told] = report[told]
        if proposal.may_be_retried:
            view["next_step"] = RETRY_NEXT_STEP
    else:
        expires_at, expiry_said = expiry(proposal)
        next_step = NEXT_STEP.get(proposal.status, "Call wait_for_decision.").format(
            approved_by=approved_by(proposal)
        )
        approvals = approvals_so_far(proposal)
        if approvals is not None:  # not simply waiting: one of two approvals is in
            view["approvals"] = approvals
            next_step = f"{approvals['message']} Call wait_for_decision."
        # Why it went to a person, where a re-assessment's reasons (an edit's) replaced it.
        routed, routed_said = routed_told(proposal)
        if routed is not None:
            view["routed_reasons"] = routed
            next_step = f"{routed_said} {next_step}"
        edit, edit_said = edit_told(proposal)
        if edit is not None:  # what a reviewer changed, as an executed one's edit is told
            view["edited"] = edit
            next_step = f"{edit_said} {next_step}"
        # An attempt failed and the platform tries it again: execution.status "failed" is
        # that attempt's, not the proposal's.
        next_at, next_said = next_attempt_told(proposal)
        if next_at is not None:
            view["next_attempt_at"] = next_at
            next_step = f"{next_said} {next_step}"
        # Approved to run, then sent back to a person (before it ran, or after an attempt
        # that got no sure answer): why, and what an attempt sent meanwhile may have done.
        sent_back = sent_back_told(proposal)
        if sent_back:
            next_step = f"{sent_back} {next_step}"
        view["next_step"] = f"{next_step} {expiry_said}" if expires_at else next_step
        if expires_at:
            view["expires_at"] = expires_at
    return view


class _FailedSinceCalled:
    """Whether a wait for a decision (following retries) has its answer at a failed
    proposal: one that failed during the call, not one already failed as it was called,
    which is waited on for a person's retry until a retry's run fails too (it has more
    ``retries`` than when first read). The wait's first read is the first proposal asked
    of (``Client.wait`` asks ``until`` of every answer that does not end it otherwise)."""

    def __init__(self) -> None:
        self.first: Proposal | None = None

    def __call__(self, proposal: Proposal) -> bool:
        first = self.first = self.first or proposal
        if not proposal.may_be_retried:
            return False
        return not first.may_be_retried or len(proposal.retries) > len(first.retries)


def build_server(client_factory: ClientFactory = AsyncClient) -> MCPServer:
    """The MCP server, its tools calling the platform through a client from
    ``client_factory`` (by default ``AsyncClient()``, configured from the environment)."""
    # Each session's client, and the proposals whose answers it lost (its own: another
    # session's proposal is never its answer).
    sessions: list[tuple[AsyncClient, LostAnswers]] = []

    @asynccontextmanager
    async def connected(_server: MCPServer) -> AsyncIterator[None]:
        async with client_factory() as client:
            current = (client, LostAnswers())
            sessions.append(current)
            try:
                yield None
            finally:
                sessions.remove(current)

    server = _Server(
        "hitl-approvals", instructions=INSTRUCTIONS, version="0.1.0", lifespan=connected
    )

    def session() -> tuple[AsyncClient, LostAnswers]:
        return sessions[-1]

    def hitl() -> AsyncClient:
        return session()[0]

    @server.tool(
        description=(
            "Propose a marketing action on one of your accounts. Policy decides at once: the "
            "answer's status is approved (it runs by itself; not final: call "
            "wait_for_decision, as it may fail, or go back to a person, held by a kill switch "
            "before it runs or between two attempts: pending_review again), pending_review (a "
            "human must decide: "
            "then call wait_for_decision) or blocked (refused; verdict.reasons say why). "
            "Always give your rationale, your confidence (0 to 1) and the data behind "
            "it.\n" + PAYLOADS
        )
    )
    async def propose_action(
        action_type: Annotated[
            str,
            Field(
                description="bid_adjustment, budget_change, budget_reallocation, "
                "creative_deployment, strategy_change or status_change"
            ),
        ],
        account: Annotated[str, Field(description="The account's external id, e.g. demo")],
        payload: Annotated[dict[str, Any], Field(description="The action's fields (see above)")],
        rationale: Annotated[str, Field(description="Why, for the human reviewer")],
        confidence: Annotated[float, Field(description="Your confidence, from 0 to 1")],
        supporting_data: Annotated[
            dict[str, Any] | None,
            Field(description="Figures behind it; series as lists of numbers are charted"),
        ] = None,
        external_ref: Annotated[str | None, Field(description="Your own reference")] = None,
        idempotency_key: Annotated[
            str | None,
            Field(description="Send the same key again to retry without proposing twice"),
        ] = None,
    ) -> dict[str, Any]:
        # The key is the server's when the model gives none, so that a proposal whose answer
        # was lost can be asked for again by it (``_outcome_unknown``). The same action
        # proposed again in this session after its answer was lost is sent with the key and
        # fields it was first sent with, whatever key the model gives (``LostAnswers``).
        client, lost = session()
        fields, key = lost.sent_as(
            {
                "action_type": action_type,
                "account": account,
                "payload": payload,
                "rationale": rationale,
                "confidence": confidence,
                "supporting_data": supporting_data,
                "external_ref": external_ref,
            },
            f"mcp-{uuid.uuid4().hex}" if idempotency_key is None else idempotency_key,
        )
        try:
            proposal = await client.propose(**fields, idempotency_key=key)
        except HitlError as error:
            if may_be_made(error):
                lost.remember(fields, key)
                raise _outcome_unknown(error, key) from error
            lost.answered(fields)
            raise _tool_error(error) from error
        lost.answered(fields)
        replayed = proposal.replayed
        unread = None
        if replayed:  # the answer it got when first proposed: read it as it is now
            try:
                proposal = await client.get(proposal.id)
            except HitlError as error:  # it was made all the same: never called refused
                unread = error
        view = proposal_view(proposal)
        if replayed and unread is None:
            view["replayed"] = (
                f'Already proposed with idempotency_key "{key}": this is that proposal as it '
                "is now. Nothing new was proposed."
            )
        elif replayed:
            view["replayed"] = (
                f'Already proposed with idempotency_key "{key}": this is that proposal as it '
                f"was first answered; reading it as it is now failed ({unread.message}). "
                f"Nothing new was proposed. Call get_proposal with proposal_id {proposal.id} "
                "to see it as it is now."
            )
        return view

    @server.tool(
        description=(
            "Dry run: what policy would do with an action if you proposed it now (outcome "
            "auto_approve, review or block, with the reasons and the rules that would hold it "
            "back). Nothing is recorded. Use it to size an action so that it runs by "
            "itself, or to know a human will look.\n" + PAYLOADS
        )
    )
    async def dry_run(
        action_type: Annotated[str, Field(description="The action type, as for propose_action")],
        account: Annotated[str, Field(description="The account's external id")],
        payload: Annotated[dict[str, Any], Field(description="The action's fields")],
    ) -> dict[str, Any]:
        try:
            result = await hitl().evaluate(action_type, account, payload)
        except HitlError as error:
            raise _tool_error(error) from error
        return {"would_execute_without_review": result.would_execute, **result.raw}

    @server.tool(
        description=(
            "Wait for a proposal's outcome: answers as soon as it is final (executed, with "
            "the state before and after; rejected, with the reviewer's reason_code and "
            "note; blocked, failed, expired, withdrawn or superseded), or when "
            "timeout_seconds pass with final=false; then call it again to keep waiting (an "
            "approved one sent back to a person, held by a kill switch before it ran or after "
            "an attempt that got no sure answer, is pending_review again: next_step says "
            "why). "
            "Called on a failed proposal, it waits for an operator to retry it and answers "
            "when the run that retry starts ends (executed, or failed again), or, with it "
            "still failed, when timeout_seconds pass."
        )
    )
    async def wait_for_decision(
        proposal_id: Annotated[int, Field(description="The id propose_action returned")],
        timeout_seconds: Annotated[
            float, Field(description="How long to wait this call, 1 to 600", ge=1, le=600)
        ] = 50,
    ) -> dict[str, Any]:
        try:
            proposal = await hitl().wait(
                proposal_id,
                timeout=timeout_seconds,
                follow_retries=True,
                until=_FailedSinceCalled(),
            )
        except WaitTimedOut as timed_out:
            proposal = timed_out.proposal
        except HitlError as error:
            raise _tool_error(error) from error
        return proposal_view(proposal)

    @server.tool(description="A proposal as it is now (status, verdict, decisions, execution).")
    async def get_proposal(
        proposal_id: Annotated[int, Field(description="The proposal's id")],
    ) -> dict[str, Any]:
        try:
            return proposal_view(await hitl().get(proposal_id))
        except HitlError as error:
            raise _tool_error(error) from error

    @server.tool(
        description="Withdraw a proposal that is still waiting for review (not once decided)."
    )
    async def withdraw_proposal(
        proposal_id: Annotated[int, Field(description="The proposal's id")],
        note: Annotated[
            str | None,
            Field(description="Why you withdraw it, for the people who read it (optional)"),
        ] = None,
    ) -> dict[str, Any]:
        try:
            return proposal_view(await hitl().withdraw(proposal_id, note))
        except HitlError as error:
            raise _tool_error(error) from error

    @server.tool(
        description=(
            "The campaigns on your accounts as they are now: external_id, account, name, "
            "daily_budget, bid, bidding_strategy, status, strategy_locked. Reason from these "
            "values: a proposal is measured against them, not against what you remember."
        )
    )
    async def list_campaigns() -> dict[str, Any]:
        try:
            campaigns = await hitl().campaigns()
        except HitlError as error:
            raise _tool_error(error) from error
        return {"campaigns": [campaign.raw for campaign in campaigns]}

    @server.tool(
        description=(
            "Feedback humans left on your proposals, oldest first, each naming the proposal "
            "(its id, summary: the action in words, as a reviewer edited it if one did, and "
            "your external_ref): approved, "
            "approved_with_edits (diff says what they changed), rejected (reason_code: "
            "off_brand, wrong_signal, contradicts_strategy, too_aggressive, factual_error, "
            "other; and a note), withdrawn (a reviewer withdrew it for you; note says why), "
            "expired, superseded (diff: the value you saw and the value now; of these and "
            "rejected, one a reviewer had edited: note goes on with the edit), failed (note: "
            "the execution's error), sent_to_run_again (a reviewer sent a failed execution "
            "to run again: do not propose it again yourself), then executed (note: what it "
            "changed) or failed again, outcome (what a person measured after), sent_back (an "
            "action approved to run went back to a person, a kill switch or a re-assessment, "
            "before it ran or after an attempt that may have carried it out; note says which, "
            "and why: wait for their decision, do not propose it again). "
            "Pass the resume value from the last call to read only what is new; wait_seconds > 0 "
            "waits that long for something new when there is nothing yet."
        )
    )
    async def read_feedback(
        resume: Annotated[
            str | None, Field(description="The resume value from the previous call")
        ] = None,
        wait_seconds: Annotated[
            float, Field(description="Wait up to this long for new feedback, 0 to 60", ge=0, le=60)
        ] = 0,
        limit: Annotated[int, Field(description="At most this many records", ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        try:
            page = await hitl().feedback_page(resume, page_size=limit)
            if not page.records and wait_seconds >= 1:
                page = await hitl().feedback_page(
                    page.resume, wait=int(wait_seconds), page_size=limit
                )
        except HitlError as error:
            raise _tool_error(error) from error
        except ValueError as error:  # a resume this tool did not return
            raise ToolError(
                f"resume {resume!r} is not a value read_feedback returned. Pass the resume "
                "value the previous read_feedback call returned, or none to read from the "
                "beginning."
            ) from error
        return {
            "feedback": [record.raw for record in page.records],
            "more": page.next is not None,
            "resume": page.resume,
        }

    return server


#: What the command reads; it takes no options.
ENVIRONMENT = {
    "HITL_BASE_URL": "where the platform answers, e.g. http://127.0.0.1:8000",
    "HITL_API_KEY": "the agent's API key",
}


def main() -> None:
    """The ``hitl-mcp`` command: the MCP server on stdin and stdout."""
    argparse.ArgumentParser(
        prog="hitl-mcp",
        description="The HITL platform's MCP server, on stdin and stdout (an MCP host starts "
        "it). It takes no options, only its environment.",
        epilog="Environment: "
        + "; ".join(f"{name}: {what}" for name, what in ENVIRONMENT.items())
        + ".",
    ).parse_args()  # --help prints this and exits; anything else is refused with the usage
    missing = [name for name in ENVIRONMENT if not os.environ.get(name)]
    if missing:
        unset = " and ".join(missing) + (" are" if len(missing) > 1 else " is")
        reads = " and ".join(f"{name} ({what})" for name, what in ENVIRONMENT.items())
        print(
            f"hitl-mcp: {unset} not set. hitl-mcp reads {reads} from its environment, and "
            'takes no options: set them in its "env" in the MCP host\'s configuration, or in '
            "the shell that starts it.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    try:
        AsyncClient()  # the configuration is checked before anything is served
    except HitlError as error:
        print(f"hitl-mcp: {error.message}", file=sys.stderr)
        raise SystemExit(2) from error
    # The host shows or keeps the server's stderr: refused calls are worth a line there, each
    # request to the platform (httpx logs one at INFO, the mcp package's level) is not.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    build_server().run("stdio")


if __name__ == "__main__":
    main()
