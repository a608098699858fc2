"""LangChain v1 agents (``create_agent``): tool calls become proposals on the platform.

``ProposalMiddleware`` sits where LangChain's own ``HumanInTheLoopMiddleware`` sits, around
each tool call. For the tools it is configured for (tool name → ``ToolAction``), the call is
not run by the agent: it is sent to the platform as a proposal, and the model gets back, as
the tool's result, what the platform did with it (executed, with the state before and after;
rejected, with the reviewer's reason code and note; edited and then executed, with the edit;
blocked or superseded, with the reasons; expired). Other tools run as usual.

While a human decides, the middleware either blocks (``wait="block"``, a long poll of up to
``timeout`` seconds; the model is told the proposal still waits if time runs out), or pauses
the LangGraph run (``wait="interrupt"``, LangGraph's ``interrupt``; the agent needs a
checkpointer and a ``thread_id``) and picks up the decision when the run is resumed with
``Command(resume=...)``: ``resume_when_decided`` waits for the decisions and builds that
command. A resumed run re-runs the tool call from its start; the proposal's idempotency key
is derived from the thread, the model's message that made the call, the call's id and its
arguments, so the platform answers with the proposal it already has (it is never proposed,
nor executed, twice), and a later call whose id the model reused is a proposal of its own.
The platform keeps idempotency keys for 48 hours by default: resume within that time.

Example::

    from langchain.agents import create_agent
    from hitl_client.langchain import ProposalMiddleware, ToolAction

    agent = create_agent(
        model,
        tools=[adjust_bid],
        middleware=[
            ProposalMiddleware(
                {
                    "adjust_bid": ToolAction(
                        "bid_adjustment",
                        account="demo",
                        payload=lambda a: {"campaign": a["campaign"], "new_bid": a["new_bid"]},
                    )
                }
            )
        ],
    )
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import nullcontext
from typing import Any, Literal

try:
    from langchain.agents.middleware import AgentMiddleware
    from langchain.agents.middleware.types import ToolCallRequest
    from langchain_core.messages import AIMessage, ToolMessage
    from langgraph.types import Command, Interrupt, interrupt
except ImportError as missing:  # the client installed without its langchain extra
    raise ImportError(
        'hitl_client.langchain needs the langchain extra: pip install "hitl-client[langchain]" '
        '(from the repository: pip install "./clients/python[langchain]").'
    ) from missing

from . import AsyncClient, Client
from ._tools import (
    MODEL_FIXABLE,
    LostAnswers,
    ToolAction,
    approvals_so_far,
    arguments_text,
    back_with_a_person,
    edit_told,
    expiry,
    idempotency_key,
    key_reused,
    key_reused_told,
    may_be_made,
    may_have_run,
    outcome_report,
    refusal_report,
    report_text,
    routed_told,
    will_run_without_a_human,
)
from .errors import HitlError, WaitTimedOut
from .models import FINAL_STATUSES, Proposal

__all__ = [
    "INTERRUPT_TYPE",
    "ProposalMiddleware",
    "ToolAction",
    "aresume_when_decided",
    "resume_when_decided",
]

#: The ``type`` of the interrupt value the middleware raises while a human decides.
INTERRUPT_TYPE = "hitl_proposal"

WaitMode = Literal["block", "interrupt"]

#: What a tool call's Idempotency-Key is made of (``_key``), as an error tells it.
_MADE_OF = "its thread, the model's message that made the call, the call's id and its arguments"


class ProposalMiddleware(AgentMiddleware):
    """Sends the configured tools' calls to the platform as proposals; the model gets the
    platform's outcome as the tool's result. See the module's documentation."""

    def __init__(
        self,
        actions: Mapping[str, ToolAction],
        *,
        client: Client | None = None,
        async_client: AsyncClient | None = None,
        wait: WaitMode = "block",
        timeout: float = 300.0,
        follow_retries: bool = False,
    ) -> None:
        """``actions``: tool name → how its calls become proposals. ``client`` (for
        ``invoke``) and ``async_client`` (for ``ainvoke``): given one, the other is made like
        it when first needed (the same platform, key, timeout and retries); given neither,
        both are configured by ``HITL_BASE_URL`` and ``HITL_API_KEY``. ``timeout``: in
        ``block`` mode, how long a call waits for a human; in both modes, how long it waits
        for an approved proposal's execution. ``follow_retries``: a failed execution does
        not end the call's wait: it waits (within ``timeout``) for a person to retry it and
        tells the model how that run ended; by default the model is told of the failure at
        once (and that an operator may retry it)."""
        super().__init__()
        if wait not in ("block", "interrupt"):
            raise ValueError(f"wait is 'block' or 'interrupt', not {wait!r}")
        self.actions = dict(actions)
        self.wait = wait
        self.timeout = timeout
        self.follow_retries = follow_retries
        self._client = client
        self._async_client = async_client
        # The clients it made itself, which are its to close (given ones are the caller's).
        self._made: Client | None = None
        self._made_async: AsyncClient | None = None
        self._lost = LostAnswers()

    @property
    def client(self) -> Client:
        if self._client is None:
            given = self._async_client
            self._client = self._made = Client(**_configured_as(given)) if given else Client()
        return self._client

    @property
    def async_client(self) -> AsyncClient:
        if self._async_client is None:
            given = self._client
            made = AsyncClient(**_configured_as(given)) if given else AsyncClient()
            self._async_client = self._made_async = made
        return self._async_client

    def close(self) -> None:
        """Close the client this middleware made for ``invoke`` (a client given is yours to
        close); used again, it makes another. ``aclose()`` closes the ``ainvoke`` one too."""
        if self._made is not None:
            self._made.close()
            self._client = self._made = None

    async def aclose(self) -> None:
        """Close the clients this middleware made, for ``invoke`` and ``ainvoke``."""
        self.close()
        if self._made_async is not None:
            await self._made_async.aclose()
            self._async_client = self._made_async = None

    def _lost_answer(
        self,
        request: ToolCallRequest,
        error: HitlError,
        fields: dict[str, Any],
        key: str,
        *,
        made: int | None,
    ) -> None:
        """Say in ``error`` the proposal may exist (or does) and how to find it: the run
        resumed on its thread re-runs the call with its key; the same action called again
        through this middleware is sent with it too (``LostAnswers``)."""
        again = "calling the tool again for the same action through this middleware"
        if _thread(request) is not None:
            again = f"resuming the run on its thread (agent.invoke(None, config)), or {again},"
        self._lost.lost(error, fields, key, made=made, again=again, scope=_thread(request))

    def _waits_for(self, proposal: Proposal) -> bool:
        """Whether the call waits for what becomes of the proposal before the model is told:
        blocking, until it is final; pausing the run, while it runs without a person; and,
        following retries, while it failed (a person may retry it)."""
        if self.follow_retries and proposal.may_be_retried:
            return True
        return not proposal.is_final and (
            self.wait == "block" or will_run_without_a_human(proposal)
        )

    @property
    def _until(self) -> Callable[[Proposal], bool] | None:
        """Pausing the run, a wait also ends when the proposal is sent back to a person before
        it ran (a kill switch): the run pauses for them, as for one routed to a person."""
        return back_with_a_person if self.wait == "interrupt" else None

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        action = self.actions.get(request.tool_call["name"])
        if action is None:
            return handler(request)
        try:
            fields = action.proposal_fields(request.tool_call["args"])
        except (KeyError, TypeError, ValueError) as error:
            return _tool_message(request, refusal_report(error))
        fields, key = self._lost.sent_as(fields, _key(request), _thread(request))
        try:
            proposal = self.client.propose(**fields, idempotency_key=key)
        except HitlError as error:
            if key_reused(error):
                raise key_reused_told(error, key, _MADE_OF) from None
            if isinstance(error, MODEL_FIXABLE):
                self._lost.answered(fields, _thread(request))
                return _tool_message(request, refusal_report(error), proposal=None)
            if may_be_made(error):
                self._lost_answer(request, error, fields, key, made=None)
            raise
        try:
            if proposal.replayed:  # the answer it got when first proposed: read it as it is now
                proposal = self.client.get(proposal.id)
            while True:
                while self.wait == "interrupt" and back_with_a_person(proposal):
                    interrupt(_interrupt_value(request, proposal))
                    proposal = self.client.get(proposal.id)
                if not self._waits_for(proposal):
                    break
                try:
                    proposal = self.client.wait(
                        proposal.id,
                        timeout=self.timeout,
                        until=self._until,
                        follow_retries=self.follow_retries,
                    )
                except WaitTimedOut as timed_out:
                    proposal = timed_out.proposal
                    break
        except HitlError as error:
            self._lost_answer(request, error, fields, key, made=proposal.id)
            raise
        self._lost.answered(fields, _thread(request))
        report = outcome_report(proposal)
        return _tool_message(request, report, proposal=proposal)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        action = self.actions.get(request.tool_call["name"])
        if action is None:
            return await handler(request)
        try:
            fields = action.proposal_fields(request.tool_call["args"])
        except (KeyError, TypeError, ValueError) as error:
            return _tool_message(request, refusal_report(error))
        client = self.async_client
        fields, key = self._lost.sent_as(fields, _key(request), _thread(request))
        try:
            proposal = await client.propose(**fields, idempotency_key=key)
        except HitlError as error:
            if key_reused(error):
                raise key_reused_told(error, key, _MADE_OF) from None
            if isinstance(error, MODEL_FIXABLE):
                self._lost.answered(fields, _thread(request))
                return _tool_message(request, refusal_report(error), proposal=None)
            if may_be_made(error):
                self._lost_answer(request, error, fields, key, made=None)
            raise
        try:
            if proposal.replayed:
                proposal = await client.get(proposal.id)
            while True:
                while self.wait == "interrupt" and back_with_a_person(proposal):
                    interrupt(_interrupt_value(request, proposal))
                    proposal = await client.get(proposal.id)
                if not self._waits_for(proposal):
                    break
                try:
                    proposal = await client.wait(
                        proposal.id,
                        timeout=self.timeout,
                        until=self._until,
                        follow_retries=self.follow_retries,
                    )
                except WaitTimedOut as timed_out:
                    proposal = timed_out.proposal
                    break
        except HitlError as error:
            self._lost_answer(request, error, fields, key, made=proposal.id)
            raise
        self._lost.answered(fields, _thread(request))
        report = outcome_report(proposal)
        return _tool_message(request, report, proposal=proposal)


def _configured_as(client: Client | AsyncClient) -> dict[str, Any]:
    """The arguments that make a client of the other kind talk to the same platform, as the
    same agent, with the same timeout, retries and limits."""
    settings = client.settings
    return {
        "base_url": settings.base_url,
        "api_key": settings.api_key,
        "timeout": settings.timeout,
        "retry": settings.retry,
        "fallback_interval": client.fallback_interval,
        "user_agent": settings.headers.get("User-Agent"),
        "max_response_bytes": settings.max_response_bytes,
    }


def _thread(request: ToolCallRequest) -> Any:
    config = getattr(request.runtime, "config", None) or {}
    return (config.get("configurable") or {}).get("thread_id")


def _key(request: ToolCallRequest) -> str:
    """The same for each run of this tool call in this thread, and another for any other
    call; without a thread (no checkpointer, so nothing can re-run the call), one of its own,
    which a failure whose proposal may have been made names (``LostAnswers``).

    A call is the thread's, the model's message that carries it (its id, which the thread's
    checkpoint keeps, as a resumed run reads it again), its id and its arguments: the call's
    id alone had been the key, and a model whose ids repeat in a thread ("call_0" each turn,
    as some providers number them) had its next call answered with the first one's proposal
    (the same action: told "executed" for a call nobody saw) or refused for it (another)."""
    thread_id = _thread(request)
    call_id = request.tool_call.get("id")
    if thread_id is None or not call_id:
        return f"langchain-{uuid.uuid4().hex}"
    return idempotency_key(
        "langchain",
        str(thread_id),
        _carried_by(request, call_id),
        call_id,
        arguments_text(request.tool_call.get("args") or {}),
    )


def _carried_by(request: ToolCallRequest, call_id: str) -> str:
    """The model's message in the thread that carries the call: its id (the messages'
    reducer gives each message one), or its place among the thread's messages; "" where the
    state holds no such message."""
    state = request.state
    messages = state.get("messages") if isinstance(state, Mapping) else None
    if messages is None:
        messages = getattr(state, "messages", None) or ()
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, AIMessage) and any(
            call.get("id") == call_id for call in message.tool_calls
        ):
            return message.id or f"#{index}"
    return ""


def _interrupt_value(request: ToolCallRequest, proposal: Proposal) -> dict[str, Any]:
    """What the paused run says of the proposal it waits on: the proposal, why it waits, the
    approvals in so far under a two-person rule, a reviewer's edit field by field
    (``edited``, with its ``message``), and, for one waiting for a person, when it
    expires unless one decides it first (``expires_at``, as the API writes the time, as a
    blocking wait's report and the MCP server give it)."""
    value = {
        "type": INTERRUPT_TYPE,
        "proposal_id": proposal.id,
        "status": proposal.status,
        "summary": proposal.summary,
        "reasons": list(proposal.verdict.reasons) if proposal.verdict else [],
        "tool_call_id": request.tool_call.get("id"),
        "tool": request.tool_call["name"],
    }
    approvals = approvals_so_far(proposal)
    if approvals is not None:  # one of two approvals in: it waits for a second reviewer
        value["approvals"] = approvals
    edit, edit_said = edit_told(proposal)
    if edit is not None:  # a reviewer's edit, field by field: what a decision now is on
        value["edited"] = {**edit, "message": edit_said}
    routed, _ = routed_told(proposal)
    if routed is not None:  # why it waits, where a re-assessment's reasons replaced it
        value["routed_reasons"] = routed
    expires_at, _ = expiry(proposal)
    if expires_at:
        value["expires_at"] = expires_at
    return value


def _tool_message(
    request: ToolCallRequest, report: dict[str, Any], *, proposal: Proposal | None = None
) -> ToolMessage:
    return ToolMessage(
        content=report_text(report),
        name=request.tool_call["name"],
        tool_call_id=request.tool_call["id"],
        status=_message_status(report),
        artifact=proposal.raw if proposal is not None else report,
    )


def _message_status(report: dict[str, Any]) -> Literal["success", "error"]:
    """ "error" where the action ended without running (refused, rejected, blocked, failed…);
    "success" where it ran, or still may (waiting for a person past the wait, approved, under
    way). A model's provider may send "error" on as a failed call (Anthropic's ``is_error``),
    which read beside "it still may execute: do not propose it again" invited a retry. An
    action that failed, or was stopped, after the channel carried out part of it, or got a
    request with no sure answer, may have run: "success" too."""
    if may_have_run(report) or report.get("status") not in {*FINAL_STATUSES, "refused"}:
        return "success"
    return "error"


def _our_interrupts(paused: Any) -> list[Interrupt]:
    """The middleware's interrupts, from a run's result (``invoke``'s dict with
    ``__interrupt__``, or a ``version="v2"`` result with ``interrupts``) or the interrupts."""
    if isinstance(paused, Mapping):
        found: Iterable[Any] = paused.get("__interrupt__", ())
    else:
        found = getattr(paused, "interrupts", paused)
    return [
        item
        for item in found
        if isinstance(item, Interrupt)
        and isinstance(item.value, Mapping)
        and item.value.get("type") == INTERRUPT_TYPE
    ]


def resume_when_decided(
    paused: Any,
    *,
    client: Client | None = None,
    timeout: float | None = None,
    follow_retries: bool = False,
) -> Command[Any] | None:
    """Wait (a long poll, up to ``timeout`` seconds for each) until every proposal a paused
    run waits for is decided and done, and return the ``Command`` that resumes the run:
    ``agent.invoke(resume_when_decided(result), config)``. ``None`` when the run waits for no
    proposal. Raises ``WaitTimedOut`` if one is still undecided when time runs out: resume
    later (a decision wakes the wait at once; there is no cost in waiting again).
    ``follow_retries``: one whose execution failed is waited on for a person's retry too
    (``Client.wait``), and ``WaitTimedOut`` if nobody retried it in time."""
    pending = _our_interrupts(paused)
    if not pending:
        return None
    # A client of its own is closed once done (a loop of resumes would leave its pools open).
    with nullcontext(client) if client else Client() as waiting:
        answers = {
            item.id: waiting.wait(
                item.value["proposal_id"], timeout=timeout, follow_retries=follow_retries
            ).raw
            for item in pending
        }
    return Command(resume=answers)


async def aresume_when_decided(
    paused: Any,
    *,
    client: AsyncClient | None = None,
    timeout: float | None = None,
    follow_retries: bool = False,
) -> Command[Any] | None:
    """``resume_when_decided`` for ``ainvoke``."""
    pending = _our_interrupts(paused)
    if not pending:
        return None
    answers = {}
    async with nullcontext(client) if client else AsyncClient() as waiting:
        for item in pending:
            proposal = await waiting.wait(
                item.value["proposal_id"], timeout=timeout, follow_retries=follow_retries
            )
            answers[item.id] = proposal.raw
    return Command(resume=answers)
