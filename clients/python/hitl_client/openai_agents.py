"""OpenAI Agents SDK: function tools whose calls become proposals on the platform, through the
SDK's own tool-approval flow (``needs_approval``, ``RunResult.interruptions``,
``RunState.approve`` / ``reject``, resuming with ``Runner.run(agent, state)``).

``PlatformTools.tool(fn, ToolAction(...))`` makes a ``FunctionTool`` (the model sees the
schema of ``fn``, whose body never runs): when the model calls it, the call is proposed to the
platform. If policy lets it run on its own (or blocks it), the tool answers at once with what
the platform did; if it waits for a human, the run stops with an interruption for it, as any
tool needing approval does. ``PlatformTools.resolve(result)`` waits (a long poll) for the
platform's decisions and approves or rejects each interruption to match; resuming the run,
the model gets the outcome as the tool's result: executed (with the state before and after,
and the reviewer's edit if there was one), or rejected with the reviewer's reason code and
note, superseded, expired. ``PlatformTools.run(agent, input)`` does that loop for you.

With ``wait="block"`` the tool never interrupts the run: it waits for the human itself (up
to ``timeout`` seconds; the model is told the proposal still waits if time runs out).

A call is proposed with an idempotency key derived from its call id and its arguments, so
checking it again when the run resumes, or in another process from a saved ``RunState``,
finds the same proposal: it is never proposed, nor executed, twice; a call whose id the
model reused with other arguments is a proposal of its own.

Example::

    from agents import Agent
    from hitl_client.openai_agents import PlatformTools, ToolAction

    platform = PlatformTools()

    def adjust_bid(campaign: str, new_bid: str, rationale: str, confidence: float) -> str:
        '''Set a campaign's bid; the platform's policy decides whether a human looks first.'''

    agent = Agent(
        name="optimizer",
        tools=[
            platform.tool(
                adjust_bid,
                ToolAction(
                    "bid_adjustment",
                    account="demo",
                    payload=lambda a: {"campaign": a["campaign"], "new_bid": a["new_bid"]},
                ),
            )
        ],
    )
    result = await platform.run(agent, "Raise brand-search's bid by 6%.")
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, Self

try:
    from agents import Agent, FunctionTool, RunContextWrapper, Runner, RunResult, RunState
    from agents import function_tool as make_function_tool
    from agents.items import ToolApprovalItem
    from agents.tool_context import ToolContext
except ImportError as missing:  # the client installed without its openai-agents extra
    raise ImportError(
        "hitl_client.openai_agents needs the openai-agents extra: "
        'pip install "hitl-client[openai-agents]" '
        '(from the repository: pip install "./clients/python[openai-agents]").'
    ) from missing

from . import AsyncClient
from ._tools import (
    MODEL_FIXABLE,
    LostAnswers,
    ToolAction,
    arguments_text,
    back_with_a_person,
    idempotency_key,
    key_reused,
    key_reused_told,
    may_be_made,
    outcome_report,
    refusal_report,
    report_text,
    will_run_without_a_human,
)
from .errors import HitlError, WaitTimedOut
from .models import Proposal, Status

__all__ = ["PlatformTools", "ToolAction"]

WaitMode = Literal["interrupt", "block"]

#: How a proposal whose answer was lost is found again without proposing it twice.
_AGAIN = (
    "calling the tool again for the same action through these PlatformTools (running the "
    "agent again with them)"
)

#: What a tool call's Idempotency-Key is made of (``PlatformTools._call``), as an error says.
_MADE_OF = "the PlatformTools' key_scope, the tool's name, the call's id and its arguments"

#: Statuses in which the platform approved the action: the interruption is approved and the
#: tool reports how its execution went. Any other final status rejects it.
_APPROVED = frozenset({Status.APPROVED, Status.EXECUTING, Status.EXECUTED, Status.FAILED})


class PlatformTools:
    """Makes tools whose calls are proposals, and settles the interruptions they cause."""

    def __init__(
        self,
        *,
        client: AsyncClient | None = None,
        wait: WaitMode = "interrupt",
        timeout: float = 300.0,
        key_scope: str = "",
        follow_retries: bool = False,
    ) -> None:
        """``client`` defaults to an ``AsyncClient`` configured by ``HITL_BASE_URL`` and
        ``HITL_API_KEY``, made when first needed. ``timeout``: how long a tool waits for an
        approved proposal's execution (and, with ``wait="block"``, for a human).
        ``key_scope``: mixed into the idempotency keys, for models whose call ids repeat
        across runs (a real model's do not). ``follow_retries``: a failed execution does not
        end a tool's wait: it waits (within ``timeout``) for a person to retry it and tells
        the model how that run ended; by default the model is told of the failure at once
        (and that an operator may retry it)."""
        if wait not in ("interrupt", "block"):
            raise ValueError(f"wait is 'interrupt' or 'block', not {wait!r}")
        self.wait = wait
        self.timeout = timeout
        self.follow_retries = follow_retries
        self.key_scope = key_scope
        self._client = client
        self._made: AsyncClient | None = None  # its own client, its to close
        self._actions: dict[str, ToolAction] = {}
        # What each call was answered when it was checked, until its tool reports it.
        self._seen: dict[str, Proposal | Exception] = {}
        # The fields and key each call was proposed with, until its tool reports it.
        self._sent: dict[str, tuple[dict[str, Any], str]] = {}
        # How many calls with the same id and arguments have been told their outcome (``_call``).
        self._told: dict[str, int] = {}
        self._lost = LostAnswers()

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            self._client = self._made = AsyncClient()
        return self._client

    async def aclose(self) -> None:
        """Close the client this object made (without ``client=``; a client given is yours
        to close). ``async with PlatformTools() as platform:`` closes it on leaving."""
        if self._made is not None:
            await self._made.aclose()
            self._client = self._made = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def tool(self, tool: FunctionTool | Callable[..., Any], action: ToolAction) -> FunctionTool:
        """A tool with the name, description and parameters of ``tool`` (a ``FunctionTool``
        or a function, whose body is never run) whose calls are proposals (``action``)."""
        schema = tool if isinstance(tool, FunctionTool) else make_function_tool(tool)
        self._actions[schema.name] = action

        async def needs_approval(
            context: RunContextWrapper[Any], args: dict[str, Any], call_id: str
        ) -> bool:
            answer = await self._proposal(schema.name, args, call_id)
            if isinstance(answer, Exception):
                return False  # the tool tells the model why
            return self.wait == "interrupt" and answer.status == Status.PENDING_REVIEW

        async def on_invoke_tool(context: ToolContext[Any], arguments: str) -> str:
            args = _arguments(arguments)
            call = self._call(schema.name, args, context.tool_call_id)
            answer = await self._proposal(schema.name, args, context.tool_call_id)
            self._seen.pop(call, None)
            if isinstance(answer, Exception):
                return report_text(refusal_report(answer))
            try:
                answer = await self._as_it_ends(answer)
            except HitlError as error:
                if call in self._sent:
                    fields, key = self._sent[call]
                    self._lost.lost(error, fields, key, made=answer.id, again=_AGAIN)
                raise
            if call in self._sent:
                self._lost.answered(self._sent.pop(call)[0])
            self._answered(schema.name, args, context.tool_call_id)
            return report_text(outcome_report(answer))

        return FunctionTool(
            name=schema.name,
            description=schema.description,
            params_json_schema=schema.params_json_schema,
            on_invoke_tool=on_invoke_tool,
            strict_json_schema=schema.strict_json_schema,
            needs_approval=needs_approval,
        )

    async def _as_it_ends(self, answer: Proposal) -> Proposal:
        """The proposal as it is now, or once it ends if the tool waits for that."""
        following = self.follow_retries
        if not answer.is_final or (following and answer.may_be_retried):
            answer = await self.client.get(answer.id)  # as it is now, not when checked
        if (following and answer.may_be_retried) or (
            not answer.is_final and (self.wait == "block" or will_run_without_a_human(answer))
        ):
            # The run's approval is past: one sent back to a person before it ran (a kill
            # switch) is told to the model as waiting for them, not waited for here.
            until = back_with_a_person if self.wait == "interrupt" else None
            try:
                answer = await self.client.wait(
                    answer.id, timeout=self.timeout, until=until, follow_retries=following
                )
            except WaitTimedOut as timed_out:
                answer = timed_out.proposal
        return answer

    async def _proposal(
        self, tool_name: str, args: dict[str, Any] | ValueError, call_id: str
    ) -> Proposal | Exception:
        """The proposal for this call: proposed once, found again by its key after that.
        ``args``: the call's arguments, or why they are none (``_arguments``)."""
        call = self._call(tool_name, args, call_id)
        if call in self._seen:
            return self._seen[call]
        if isinstance(args, ValueError):
            return args
        try:
            fields = self._actions[tool_name].proposal_fields(args)
        except (KeyError, TypeError, ValueError) as error:
            return error
        fields, key = self._lost.sent_as(fields, call)
        try:
            answer: Proposal | Exception = await self.client.propose(**fields, idempotency_key=key)
        except HitlError as error:
            if key_reused(error):
                raise key_reused_told(error, key, _MADE_OF) from None
            if not isinstance(error, MODEL_FIXABLE):
                if may_be_made(error):
                    self._lost.lost(error, fields, key, made=None, again=_AGAIN)
                raise
            self._lost.answered(fields)
            answer = error
        else:
            try:
                if answer.replayed:  # the answer it got when first proposed: as it is now
                    answer = await self.client.get(answer.id)
            except HitlError as error:
                self._lost.lost(error, fields, key, made=answer.id, again=_AGAIN)
                raise
            _keep(self._sent, call, (fields, key))
        _keep(self._seen, call, answer)
        return answer

    def _call(self, tool_name: str, args: dict[str, Any] | ValueError, call_id: str) -> str:
        """The call's Idempotency-Key, by which it is remembered until its tool reports it: the
        same each time the run checks it again (resumed, or from a saved ``RunState`` in
        another process), another for any other call. It is made of ``key_scope``, the
        tool's name, the call's id and its arguments: a model whose call ids repeat ("call_0"
        each turn, or each run) had a later call with other arguments refused for the first
        one's key, as the id alone made it (or answered with the first one's proposal while
        it was remembered here)."""
        parts = self._parts(tool_name, args, call_id)
        told = self._told.get(idempotency_key("openai-agents", *parts), 0)
        # Its model told the outcome of a call with the same id and arguments already (the
        # SDK refuses an id reused within a run, not in the next one): this one is another.
        return idempotency_key("openai-agents", *parts, *([str(told)] if told else []))

    def _parts(self, tool_name: str, args: dict[str, Any] | ValueError, call_id: str) -> list[str]:
        arguments = str(args) if isinstance(args, ValueError) else arguments_text(args)
        return [self.key_scope, tool_name, call_id, arguments]

    def _answered(self, tool_name: str, args: dict[str, Any] | ValueError, call_id: str) -> None:
        """The call's outcome was given to its model (its tool's result, or the rejection
        the run resumed with): the next call with its id and arguments is another call."""
        first = idempotency_key("openai-agents", *self._parts(tool_name, args, call_id))
        _keep(self._told, first, self._told.get(first, 0) + 1)

    def _ours(self, item: ToolApprovalItem) -> bool:
        return item.tool_name in self._actions

    async def waiting(self, paused: RunResult | RunState[Any]) -> list[Proposal]:
        """The proposals a paused run stopped for (this object's interruptions), as last
        read: each one's ``id`` and ``summary``, to tell a person what to decide and where.
        The run resumes, once they are decided, from ``resolve(paused)``."""
        items = paused.get_interruptions() if isinstance(paused, RunState) else paused.interruptions
        proposals = []
        for item in items:
            if not self._ours(item):
                continue
            raw = item.raw_item
            answer = await self._proposal(
                item.tool_name, _arguments(_field(raw, "arguments")), _field(raw, "call_id")
            )
            if isinstance(answer, Proposal):
                proposals.append(answer)
        return proposals

    async def resolve(
        self, paused: RunResult | RunState[Any], *, timeout: float | None = None
    ) -> RunState[Any]:
        """The state to resume a paused run from, with each of this object's interruptions
        approved or rejected as the platform decided (a long poll, up to ``timeout`` seconds
        for each; ``WaitTimedOut`` if one is still undecided then: resolve again later)."""
        state = paused if isinstance(paused, RunState) else paused.to_state()
        for item in state.get_interruptions():
            if not self._ours(item):
                continue
            raw = item.raw_item
            call_id = _field(raw, "call_id")
            args = _arguments(_field(raw, "arguments"))
            call = self._call(item.tool_name, args, call_id)
            answer = await self._proposal(item.tool_name, args, call_id)
            if isinstance(answer, Exception):  # not proposed: the tool says why
                state.approve(item)
                continue
            decided = await self.client.wait(answer.id, timeout=timeout)
            _keep(self._seen, call, decided)
            if decided.status in _APPROVED:
                state.approve(item)
            else:
                self._seen.pop(call, None)
                if call in self._sent:  # its tool does not run: it is answered here
                    self._lost.answered(self._sent.pop(call)[0])
                report = outcome_report(decided)
                state.reject(item, rejection_message=report_text(report))
                self._answered(item.tool_name, args, call_id)
        return state

    async def run(
        self,
        agent: Agent[Any],
        input: Any,
        *,
        timeout: float | None = None,
        max_resumes: int = 20,
        **runner_kwargs: Any,
    ) -> RunResult:
        """``Runner.run``, resumed each time it stops for this object's tools once the
        platform has decided them. Returns the final result, or the result of a run that
        stopped for another approval than this object's."""
        result = await Runner.run(agent, input, **runner_kwargs)
        for _ in range(max_resumes):
            if not any(self._ours(item) for item in result.interruptions):
                return result
            state = await self.resolve(result, timeout=timeout)
            result = await Runner.run(agent, state, **runner_kwargs)
        raise HitlError(f"The run still waits after {max_resumes} resumes.")


#: How many calls' answers a ``PlatformTools`` keeps until their tools report them (the oldest
#: forgotten first): runs paused and never resumed leave theirs. A call forgotten is proposed
#: again with its own key when it comes back, and the platform answers with its proposal.
REMEMBERED_CALLS = 1000


def _keep(kept: dict[str, Any], call: str, value: Any) -> None:
    kept.pop(call, None)
    kept[call] = value
    while len(kept) > REMEMBERED_CALLS:
        del kept[next(iter(kept))]


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _arguments(arguments: str | None) -> dict[str, Any] | ValueError:
    """A call's arguments, or, when the model wrote no JSON object (cut off mid-way, a list),
    the error that tells it so: they had been read as no arguments at all, and the model told
    that one it had given ("the arguments lack “campaign”") was missing."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError as error:
        return ValueError(
            f"they are not valid JSON ({error}): {_shown(arguments)}. Call the tool again "
            "with its arguments as one JSON object."
        )
    if not isinstance(parsed, dict):
        return ValueError(
            f"they are a JSON {type(parsed).__name__}, not an object of named arguments: "
            f"{_shown(arguments)}. Call the tool again with its arguments as one JSON object."
        )
    return parsed


def _shown(arguments: str | None, limit: int = 200) -> str:
    text = arguments or ""
    return repr(text if len(text) <= limit else text[:limit] + "…")
