"""The sync and async clients of the agent API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import httpx

from hitl_client import _calls
from hitl_client._bounded import DEADLINE, aread_body, bounded_transport, read_body
from hitl_client._core import (
    Answer,
    Attempts,
    Call,
    RetryPolicy,
    Settings,
    connection_failed,
    deadline_for,
    key_refused,
    settings_from,
    timeout_for,
)
from hitl_client.errors import HitlError
from hitl_client.models import (
    BatchItem,
    Campaign,
    DryRun,
    Feedback,
    FeedbackPage,
    Outcome,
    Proposal,
    ProposalRequest,
)

#: Between two rounds of ``wait()`` or a followed feed when the server answered a long poll
#: at once with nothing new (a server that does not hold requests).
DEFAULT_FALLBACK_INTERVAL = 1.0


class _Base:
    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        timeout: float | None,
        retry: RetryPolicy | None,
        fallback_interval: float,
        user_agent: str | None,
        max_response_bytes: int | None,
    ) -> None:
        self.settings: Settings = settings_from(
            base_url, api_key, timeout, retry, user_agent, max_response_bytes
        )
        self.fallback_interval = fallback_interval

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def _request_args(self, call: Call) -> dict[str, Any]:
        return {
            "method": call.method,
            "url": call.url(),
            "content": call.content(),
            "headers": call.request_headers(),
            "timeout": timeout_for(self.settings, call),
        }


class Client(_Base):
    """The agent API, blocking. With no arguments it reads ``HITL_BASE_URL`` and
    ``HITL_API_KEY`` from the environment.

    ``timeout`` (seconds, default 30) bounds each request as a whole: connecting, sending
    and reading the entire answer (plus, for a long poll, the seconds the server may hold
    it), however slowly the server trickles it. ``max_response_bytes`` (default 16 MiB) caps
    an answer's size (``ResponseTooLarge`` past it). ``retry`` bounds the retries of a failed
    request (``RetryPolicy(max_attempts=…, max_elapsed=…)``; ``NO_RETRIES`` turns them off).
    ``transport`` is handed to httpx (a proxy, a mock transport in tests); the deadline is
    then checked between the answer's chunks only. Use it as a context manager, or call
    ``close()``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        fallback_interval: float = DEFAULT_FALLBACK_INTERVAL,
        user_agent: str | None = None,
        transport: httpx.BaseTransport | None = None,
        max_response_bytes: int | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key, timeout, retry, fallback_interval, user_agent, max_response_bytes
        )
        self._http = httpx.Client(
            base_url=self.settings.base_url,
            headers=self.settings.headers,
            transport=transport or bounded_transport(),
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call, until: float | None = None) -> Answer:
        """Send ``call``, retried as its policy allows; no attempt runs past ``until``."""
        settings = self.settings
        attempts = Attempts(settings.retry, call, until)
        while True:
            attempts.start()
            deadline = deadline_for(settings, call, until)
            bound = DEADLINE.set(deadline)  # read by the transport's sockets
            try:
                with self._http.stream(**self._request_args(call)) as response:
                    delay = attempts.after_response(response)
                    if delay is None or response.status_code == 429:
                        content = read_body(response, settings.max_response_bytes, deadline)
                        if delay is None or key_refused(response, content):
                            return attempts.answer(response, content, settings.api_key)
            except httpx.TransportError as error:
                delay = attempts.after_exception(error)
                if delay is None:
                    raise attempts.failed(connection_failed(call, error)) from error
            finally:
                DEADLINE.reset(bound)
            time.sleep(delay)

    def propose(
        self,
        action_type: str,
        account: str,
        payload: Mapping[str, Any],
        *,
        rationale: str,
        confidence: float,
        supporting_data: Mapping[str, Any] | None = None,
        external_ref: str | None = None,
        idempotency_key: str | None = None,
    ) -> Proposal:
        """Submit a proposal; the answer already carries the policy's verdict (status
        ``approved``, ``pending_review`` or ``blocked``). An Idempotency-Key is generated
        when none is given and reused on this call's own retries, so a retry never makes a
        second proposal; pass your own to make retries across restarts safe too."""
        return _calls.proposal_of(
            self._send(
                _calls.propose_call(
                    action_type,
                    account,
                    payload,
                    rationale=rationale,
                    confidence=confidence,
                    supporting_data=supporting_data,
                    external_ref=external_ref,
                    idempotency_key=idempotency_key,
                )
            )
        )

    def propose_many(
        self,
        proposals: Iterable[ProposalRequest | Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> list[BatchItem]:
        """Submit up to 1,000 proposals in one request; each gets its own result, in order
        (``BatchItem.proposal``, or ``BatchItem.error`` for one that was refused)."""
        return _calls.batch_of(self._send(_calls.batch_call(proposals, idempotency_key)))

    def get(self, proposal_id: int) -> Proposal:
        return _calls.proposal_of(self._send(_calls.get_call(proposal_id)))

    def wait(
        self,
        proposal_id: int,
        timeout: float | None = None,
        *,
        until: Callable[[Proposal], bool] | None = None,
        follow_retries: bool = False,
    ) -> Proposal:
        """The proposal once it is final (executed, failed, rejected, blocked, expired,
        withdrawn or superseded), or, with ``until``, once that holds of it first (say, back
        with a person: ``lambda p: p.status == "pending_review"``), by long poll: the server
        answers as soon as its status changes. Raises ``WaitTimedOut`` (with ``.proposal``)
        after ``timeout`` seconds; ``None`` waits as long as it takes.

        ``failed`` ends the wait, though a person may still retry it (``may_be_retried``):
        it is then approved again and runs, which a later ``wait()`` follows (it reads the
        proposal first). With ``follow_retries=True`` a failed proposal does not end the
        wait: it goes on through a person's retry until the proposal ends otherwise
        (executed, superseded, …), ``until`` holds, or ``timeout`` (``WaitTimedOut``, its
        ``.proposal`` failed: nobody retried it in time). To stop at a failure after a retry
        too, for a proposal ``seen`` failed: ``until=lambda p: p.may_be_retried and
        len(p.retries) > len(seen.retries)``."""
        rounds = _calls.ProposalWait(
            proposal_id,
            timeout,
            self.fallback_interval,
            self.settings.timeout,
            until=until,
            follow_retries=follow_retries,
        )
        while True:
            try:
                answer = self._send(rounds.next_call(), until=rounds.until)
            except HitlError as error:
                pause = rounds.pause_after_failure(error)  # raises unless the wait goes on
            else:
                proposal = _calls.proposal_of(answer)
                pause = rounds.pause_after(proposal)
                if pause is None:
                    return proposal
            if pause:
                time.sleep(pause)

    def proposals(
        self,
        *,
        status: str | None = None,
        action_type: str | None = None,
        since: datetime | str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Proposal]:
        """This agent's proposals, newest first, page after page."""
        call: Call | None = _calls.list_call(
            status=status, action_type=action_type, since=since, page_size=page_size
        )
        while call is not None:
            page, call = _calls.proposals_page_of(self._send(call))
            yield from page

    def withdraw(self, proposal_id: int, note: str | None = None) -> Proposal:
        """Withdraw a proposal still waiting for review (``Conflict`` once decided), saying why
        in ``note`` if you will: the people who read it see it."""
        return _calls.proposal_of(self._send(_calls.withdraw_call(proposal_id, note)))

    def report_outcome(
        self,
        proposal_id: int,
        metrics: Mapping[str, float],
        effect: str | None = None,
        note: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Report what was measured after an executed proposal; ``effect`` is ``improved``,
        ``no_change`` or ``hurt``."""
        return _calls.outcome_of(
            self._send(_calls.outcome_call(proposal_id, metrics, effect, note, idempotency_key))
        )

    def evaluate(
        self,
        action_type: str,
        account: str,
        payload: Mapping[str, Any],
        *,
        rationale: str | None = None,
        confidence: float | None = None,
    ) -> DryRun:
        """Dry run: what policy would do with this action now. Nothing is written."""
        return _calls.dry_run_of(
            self._send(_calls.evaluate_call(action_type, account, payload, rationale, confidence))
        )

    def campaigns(self) -> list[Campaign]:
        """The current state of the campaigns on this agent's accounts."""
        return _calls.campaigns_of(self._send(_calls.campaigns_call()))

    def scorecard(self, days: int = 30) -> dict[str, Any]:
        """How this agent's proposals fared over the last ``days`` days, by action type."""
        return _calls.scorecard_of(self._send(_calls.scorecard_call(days)))

    def feedback_page(
        self, link: str | None = None, *, wait: int | None = None, page_size: int | None = None
    ) -> FeedbackPage:
        """One page of the feedback feed, from ``link`` (a ``resume`` or ``next`` link) or
        the beginning; with ``wait`` (1 to 60 seconds) the server holds the request until a
        record arrives. ``feedback()`` iterates these for you. A ``link`` that is not the
        feed's raises ``ValueError`` before anything is sent."""
        return _calls.feedback_page_of(
            self._send(_calls.feedback_page_call(link, wait=wait, page_size=page_size))
        )

    def feedback(
        self,
        resume: str | None = None,
        *,
        follow: bool = False,
        timeout: float | None = None,
        page_size: int | None = None,
    ) -> FeedbackFeed:
        """Feedback on this agent's proposals, oldest first, from ``resume`` (a link kept
        from an earlier feed's ``.resume``) or from the beginning. Without ``follow`` it
        stops at the end of what there is now; with it, it long-polls for more (for
        ``timeout`` seconds, or until the loop stops). Keep ``feed.resume`` to carry on
        later: it moves on a page at a time, so a loop stopped mid-page reads that page
        again from its first record (skip by ``record.id``, or ``page_size=1``). A
        ``resume`` that is not a link of the feed raises ``ValueError`` at once."""
        return FeedbackFeed(
            self,
            _calls.FeedbackPages(
                resume,
                follow=follow,
                timeout=timeout,
                page_size=page_size,
                fallback_interval=self.fallback_interval,
            ),
        )


class FeedbackFeed:
    """An iterator of ``Feedback``; ``resume`` is the link to keep."""

    def __init__(self, client: Client, pages: _calls.FeedbackPages) -> None:
        self._client = client
        self._pages = pages

    @property
    def resume(self) -> str:
        return self._pages.resume

    def __iter__(self) -> Iterator[Feedback]:
        pages = self._pages
        while (call := pages.next_call()) is not None:
            try:
                answer = self._client._send(call)
            except HitlError as error:
                time.sleep(pages.pause_after_failure(error))  # raises unless the feed goes on
                continue
            records, pause = pages.read(answer)
            if not records:
                pages.page_done()
            for index, record in enumerate(records):
                if index == len(records) - 1:
                    pages.page_done()  # ``resume`` now covers every record handed out
                yield record
            if pause:
                time.sleep(pause)


class AsyncClient(_Base):
    """The agent API for asyncio: the same methods as ``Client``, as coroutines (and
    ``feedback()`` an async iterator). Use it with ``async with``, or call ``aclose()``.
    One client may serve one event loop after another (a run paused in one ``asyncio.run``
    and resumed in the next): each loop gets connections of its own."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        fallback_interval: float = DEFAULT_FALLBACK_INTERVAL,
        user_agent: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_response_bytes: int | None = None,
    ) -> None:
        super().__init__(
            base_url, api_key, timeout, retry, fallback_interval, user_agent, max_response_bytes
        )
        self._transport = transport
        # httpx's connections belong to the event loop that opened them, and one found in the
        # pool by another loop fails ("Event loop is closed"): each loop the client serves (a
        # run paused in one ``asyncio.run`` and resumed in the next) has a pool of its own,
        # closed when that loop shuts down (``_closed_with_its_loop``) or by ``aclose()``.
        self._pools: dict[asyncio.AbstractEventLoop, AsyncGenerator[httpx.AsyncClient, None]] = {}
        self._closed = False

    async def _http(self) -> httpx.AsyncClient:
        """The connection pool of the running event loop, made on its first request."""
        if self._closed:
            raise RuntimeError("This AsyncClient has been closed (aclose); make another.")
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            for ended in [owner for owner in self._pools if owner.is_closed()]:
                del self._pools[ended]
            pool = self._pools[loop] = _closed_with_its_loop(
                httpx.AsyncClient(
                    base_url=self.settings.base_url,
                    headers=self.settings.headers,
                    transport=self._transport,
                )
            )
        return await anext(pool)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the running loop's connections (another loop's are closed as that loop shuts
        down, by ``asyncio.run`` or ``loop.shutdown_asyncgens()``: not from here)."""
        self._closed = True
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        self._pools.clear()
        if pool is not None:
            await pool.aclose()

    async def _send(self, call: Call, until: float | None = None) -> Answer:
        """See ``Client._send``; the deadline is an ``asyncio.timeout`` on the whole
        exchange."""
        settings = self.settings
        attempts = Attempts(settings.retry, call, until)
        while True:
            attempts.start()
            deadline = deadline_for(settings, call, until)
            try:
                try:
                    async with asyncio.timeout(deadline - time.monotonic()):
                        http = await self._http()
                        async with http.stream(**self._request_args(call)) as response:
                            delay = attempts.after_response(response)
                            if delay is None or response.status_code == 429:
                                content = await aread_body(response, settings.max_response_bytes)
                                if delay is None or key_refused(response, content):
                                    return attempts.answer(response, content, settings.api_key)
                except TimeoutError as expired:
                    raise httpx.ReadTimeout("the request's deadline passed") from expired
            except httpx.TransportError as error:
                delay = attempts.after_exception(error)
                if delay is None:
                    raise attempts.failed(connection_failed(call, error)) from error
            await asyncio.sleep(delay)

    async def propose(
        self,
        action_type: str,
        account: str,
        payload: Mapping[str, Any],
        *,
        rationale: str,
        confidence: float,
        supporting_data: Mapping[str, Any] | None = None,
        external_ref: str | None = None,
        idempotency_key: str | None = None,
    ) -> Proposal:
        """See ``Client.propose``."""
        return _calls.proposal_of(
            await self._send(
                _calls.propose_call(
                    action_type,
                    account,
                    payload,
                    rationale=rationale,
                    confidence=confidence,
                    supporting_data=supporting_data,
                    external_ref=external_ref,
                    idempotency_key=idempotency_key,
                )
            )
        )

    async def propose_many(
        self,
        proposals: Iterable[ProposalRequest | Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> list[BatchItem]:
        """See ``Client.propose_many``."""
        return _calls.batch_of(await self._send(_calls.batch_call(proposals, idempotency_key)))

    async def get(self, proposal_id: int) -> Proposal:
        return _calls.proposal_of(await self._send(_calls.get_call(proposal_id)))

    async def wait(
        self,
        proposal_id: int,
        timeout: float | None = None,
        *,
        until: Callable[[Proposal], bool] | None = None,
        follow_retries: bool = False,
    ) -> Proposal:
        """See ``Client.wait``."""
        rounds = _calls.ProposalWait(
            proposal_id,
            timeout,
            self.fallback_interval,
            self.settings.timeout,
            until=until,
            follow_retries=follow_retries,
        )
        while True:
            try:
                answer = await self._send(rounds.next_call(), until=rounds.until)
            except HitlError as error:
                pause = rounds.pause_after_failure(error)  # raises unless the wait goes on
            else:
                proposal = _calls.proposal_of(answer)
                pause = rounds.pause_after(proposal)
                if pause is None:
                    return proposal
            if pause:
                await asyncio.sleep(pause)

    async def proposals(
        self,
        *,
        status: str | None = None,
        action_type: str | None = None,
        since: datetime | str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Proposal]:
        """See ``Client.proposals``."""
        call: Call | None = _calls.list_call(
            status=status, action_type=action_type, since=since, page_size=page_size
        )
        while call is not None:
            page, call = _calls.proposals_page_of(await self._send(call))
            for proposal in page:
                yield proposal

    async def withdraw(self, proposal_id: int, note: str | None = None) -> Proposal:
        """See ``Client.withdraw``."""
        return _calls.proposal_of(await self._send(_calls.withdraw_call(proposal_id, note)))

    async def report_outcome(
        self,
        proposal_id: int,
        metrics: Mapping[str, float],
        effect: str | None = None,
        note: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """See ``Client.report_outcome``."""
        return _calls.outcome_of(
            await self._send(
                _calls.outcome_call(proposal_id, metrics, effect, note, idempotency_key)
            )
        )

    async def evaluate(
        self,
        action_type: str,
        account: str,
        payload: Mapping[str, Any],
        *,
        rationale: str | None = None,
        confidence: float | None = None,
    ) -> DryRun:
        """See ``Client.evaluate``."""
        return _calls.dry_run_of(
            await self._send(
                _calls.evaluate_call(action_type, account, payload, rationale, confidence)
            )
        )

    async def campaigns(self) -> list[Campaign]:
        return _calls.campaigns_of(await self._send(_calls.campaigns_call()))

    async def scorecard(self, days: int = 30) -> dict[str, Any]:
        return _calls.scorecard_of(await self._send(_calls.scorecard_call(days)))

    async def feedback_page(
        self, link: str | None = None, *, wait: int | None = None, page_size: int | None = None
    ) -> FeedbackPage:
        """See ``Client.feedback_page``."""
        return _calls.feedback_page_of(
            await self._send(_calls.feedback_page_call(link, wait=wait, page_size=page_size))
        )

    def feedback(
        self,
        resume: str | None = None,
        *,
        follow: bool = False,
        timeout: float | None = None,
        page_size: int | None = None,
    ) -> AsyncFeedbackFeed:
        """See ``Client.feedback``; iterate it with ``async for``."""
        return AsyncFeedbackFeed(
            self,
            _calls.FeedbackPages(
                resume,
                follow=follow,
                timeout=timeout,
                page_size=page_size,
                fallback_interval=self.fallback_interval,
            ),
        )


class AsyncFeedbackFeed:
    """An async iterator of ``Feedback``; ``resume`` is the link to keep."""

    def __init__(self, client: AsyncClient, pages: _calls.FeedbackPages) -> None:
        self._client = client
        self._pages = pages

    @property
    def resume(self) -> str:
        return self._pages.resume

    async def __aiter__(self) -> AsyncIterator[Feedback]:
        pages = self._pages
        while (call := pages.next_call()) is not None:
            try:
                answer = await self._client._send(call)
            except HitlError as error:
                await asyncio.sleep(pages.pause_after_failure(error))  # raises unless it goes on
                continue
            records, pause = pages.read(answer)
            if not records:
                pages.page_done()
            for index, record in enumerate(records):
                if index == len(records) - 1:
                    pages.page_done()  # ``resume`` now covers every record handed out
                yield record
            if pause:
                await asyncio.sleep(pause)


async def _closed_with_its_loop(http: httpx.AsyncClient) -> AsyncGenerator[httpx.AsyncClient, None]:
    """Hands out ``http`` for as long as its event loop runs, and closes it when the loop
    shuts down: an async generator not run to its end is closed by the loop's
    ``shutdown_asyncgens()`` (``asyncio.run`` calls it as it ends), while the loop can still
    close connections. A pool left to a loop that had ended kept its connections open (the
    server saw them until its keep-alive ran out; Python warned of unclosed transports)."""
    try:
        while True:
            yield http
    finally:
        await http.aclose()
