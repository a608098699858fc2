"""Each API operation as a ``Call`` to send and a function that reads its answer; both
clients build their methods from these, so they cannot drift apart."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlencode

from hitl_client._core import (
    MAX_WAIT_SECONDS,
    Answer,
    Call,
    bad_response,
    idempotency_key_or_new,
    key_named,
    path_of,
)
from hitl_client.errors import (
    AuthThrottled,
    ConnectionFailed,
    HitlError,
    RateLimited,
    ServerError,
    WaitTimedOut,
    error_from_response,
)
from hitl_client.models import (
    BatchItem,
    Campaign,
    DryRun,
    Feedback,
    FeedbackPage,
    Outcome,
    Proposal,
    ProposalRequest,
    proposal_body,
)

PROPOSALS = "/api/v1/proposals/"
FEEDBACK = "/api/v1/feedback/"

P = ParamSpec("P")
R = TypeVar("R")

# What reading an answer of the wrong shape raises: a list where an object was due, a
# missing field, a value of the wrong type, a date that is not one, nesting too deep.
_MALFORMED = (AttributeError, KeyError, IndexError, TypeError, ValueError, RecursionError)


def reads_answer(function: Callable[P, R]) -> Callable[P, R]:
    """Marks a function that reads an ``Answer`` (among its arguments): an answer of the wrong
    shape raises ``BadResponse`` (a ``HitlError``), never a bare KeyError or TypeError."""

    @functools.wraps(function)
    def read(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except _MALFORMED as error:
            answer = next(a for a in (*args, *kwargs.values()) if isinstance(a, Answer))
            # Answered, so a keyed request took effect: its key finds what it did.
            raise key_named(bad_response(answer, error), answer.idempotency_key) from error

    return read


def as_sent(value: Any) -> Any:
    """A value for a field that takes an object: a mapping as the object JSON writes, anything
    else as it is, for the platform to refuse in its own words (a batch's item on its own:
    the others are still proposed). Turned into a dict, a list of pairs was sent as an object
    the caller never wrote, and another value raised a bare TypeError or ValueError ("'int'
    object is not iterable")."""
    return dict(value) if isinstance(value, Mapping) else value


def propose_call(
    action_type: str,
    account: str,
    payload: Mapping[str, Any],
    *,
    rationale: str,
    confidence: float,
    supporting_data: Mapping[str, Any] | None,
    external_ref: str | None,
    idempotency_key: str | None,
) -> Call:
    body = proposal_body(
        action_type,
        account,
        as_sent(payload),
        rationale=rationale,
        confidence=confidence,
        supporting_data=None if supporting_data is None else as_sent(supporting_data),
        external_ref=external_ref,
    )
    return Call(
        "POST",
        PROPOSALS,
        body=body,
        idempotency_key=idempotency_key_or_new(idempotency_key),
        retry_safe=True,
    )


def replayed(answer: Answer) -> bool:
    """The answer is the one stored for an earlier request with the same Idempotency-Key."""
    return answer.headers.get("Idempotent-Replayed", "").lower() == "true"


@reads_answer
def proposal_of(answer: Answer) -> Proposal:
    return Proposal.from_api(answer.body, replayed=replayed(answer))


def batch_call(
    items: Iterable[ProposalRequest | Mapping[str, Any]], idempotency_key: str | None
) -> Call:
    if isinstance(items, Mapping | ProposalRequest | str | bytes):
        # Iterated, one proposal would be sent as its keys (or a text as its characters),
        # each refused as "Expected a dictionary, but got str".
        raise TypeError(
            f"propose_many takes a list of proposals, not one ({type(items).__name__}): "
            "wrap it in a list, or call propose(). Nothing was sent."
        )
    body = [item.body() if isinstance(item, ProposalRequest) else as_sent(item) for item in items]
    return Call(
        "POST",
        f"{PROPOSALS}batch/",
        body=body,
        idempotency_key=idempotency_key_or_new(idempotency_key),
        retry_safe=True,
    )


@reads_answer
def batch_of(answer: Answer) -> list[BatchItem]:
    results = []
    again = replayed(answer)
    for item in answer.body:
        proposal = item.get("proposal")
        results.append(
            BatchItem(
                index=item["index"],
                status_code=item["status"],
                proposal=Proposal.from_api(proposal, replayed=again) if proposal else None,
                error=None if proposal else error_from_response(item["status"], item["errors"]),
            )
        )
    return results


def get_call(proposal_id: int, *, wait: int | None = None, status: str | None = None) -> Call:
    params: dict[str, Any] = {}
    if wait is not None:
        params["wait"] = wait
        if status is not None:
            params["status"] = status
    return Call(
        "GET",
        f"{PROPOSALS}{int(proposal_id)}/",
        params=params or None,
        retry_safe=True,
        long_poll=float(wait or 0),
    )


def list_call(
    *,
    status: str | None,
    action_type: str | None,
    since: datetime | str | None,
    page_size: int | None,
) -> Call:
    params = {
        "status": status,
        "action_type": action_type,
        "since": _with_offset(since) if isinstance(since, datetime) else since,
        "page_size": page_size,
    }
    return Call(
        "GET", PROPOSALS, params={k: v for k, v in params.items() if v is not None}, retry_safe=True
    )


def _with_offset(moment: datetime) -> str:
    """A time as the API reads it, with its offset. A naive datetime is local time in Python
    (``datetime.now()``), but the platform reads a time without an offset as UTC: sent as it
    was, ``since=datetime.now() - timedelta(hours=1)`` on a machine at UTC+9 asked for what
    was made from eight hours in the future, and listed nothing."""
    return moment.astimezone().isoformat() if moment.tzinfo is None else moment.isoformat()


def withdraw_call(proposal_id: int, note: str | None = None) -> Call:
    # Not retried once it may have reached the server: the API takes no Idempotency-Key here.
    return Call(
        "POST", f"{PROPOSALS}{int(proposal_id)}/withdraw/", body={"note": note} if note else None
    )


def outcome_call(
    proposal_id: int,
    metrics: Mapping[str, float],
    effect: str | None,
    note: str | None,
    idempotency_key: str | None,
) -> Call:
    if not isinstance(metrics, Mapping):
        # dict() took pairs without a word, and a text failed with "dictionary update
        # sequence element #0 has length 1; 2 is required".
        raise TypeError(
            f"report_outcome takes its metrics as a mapping of name to number, not "
            f"{type(metrics).__name__}: {{'ctr': 0.031, 'conversions': 42}}. Nothing was sent."
        )
    body: dict[str, Any] = {"metrics": dict(metrics)}
    if effect is not None:
        body["effect"] = effect
    if note is not None:
        body["note"] = note
    return Call(
        "POST",
        f"{PROPOSALS}{int(proposal_id)}/outcome/",
        body=body,
        idempotency_key=idempotency_key_or_new(idempotency_key),
        retry_safe=True,
    )


@reads_answer
def outcome_of(answer: Answer) -> Outcome:
    return Outcome.from_api(answer.body)


def evaluate_call(
    action_type: str,
    account: str,
    payload: Mapping[str, Any],
    rationale: str | None,
    confidence: float | None,
) -> Call:
    body: dict[str, Any] = {"action_type": action_type, "account": account, "payload": payload}
    if rationale is not None:
        body["rationale"] = rationale
    if confidence is not None:
        body["confidence"] = confidence
    # A dry run writes nothing, so sending it again is harmless.
    return Call("POST", "/api/v1/policies/evaluate/", body=body, retry_safe=True)


@reads_answer
def dry_run_of(answer: Answer) -> DryRun:
    return DryRun.from_api(answer.body)


def campaigns_call() -> Call:
    return Call("GET", "/api/v1/campaigns/", retry_safe=True)


@reads_answer
def campaigns_of(answer: Answer) -> list[Campaign]:
    return [Campaign.from_api(item) for item in answer.body]


def scorecard_call(days: int) -> Call:
    return Call("GET", "/api/v1/scorecard/", params={"days": days}, retry_safe=True)


@reads_answer
def scorecard_of(answer: Answer) -> dict[str, Any]:
    if not isinstance(answer.body, dict):
        raise TypeError("a scorecard is an object")
    return dict(answer.body)


def asked_again_later(error: HitlError) -> bool:
    """Whether ``error`` is a refusal that did nothing and asked to be asked again later, as
    its ``Retry-After`` says: a 429 (throttled, or ``too_many_waits``: more long polls of this
    agent's open than the platform holds for it) or a 503 (``busy``), once the client's own
    retries of it ran out. Not a refused key (``AuthThrottled``): asked again, it is refused
    again."""
    return (
        isinstance(error, RateLimited | ServerError)
        and error.retry_after is not None
        and error.status_code in (429, 503)
        and not isinstance(error, AuthThrottled)
    )


def _pause_asked(error: RateLimited | ServerError, fallback_interval: float) -> float:
    """The pause an ``asked_again_later`` refusal asked for, never less than
    ``fallback_interval`` (a ``Retry-After: 0`` is no reason to loop tightly)."""
    return max(error.retry_after or 0.0, fallback_interval)


class ProposalWait:
    """The rounds of ``wait()``: a plain read first (a final proposal is answered at once),
    then long polls (``?wait=…&status=<last seen>``) until the proposal is final or the time
    is up. A server that answers a long poll early with the status unchanged (one that does
    not hold requests) costs a pause of ``fallback_interval`` before the next round, never a
    tight loop.

    ``until`` bounds the rounds' requests: the wait's own deadline plus one request's
    ``request_timeout``, so a server that holds or trickles an answer cannot keep ``wait()``
    past it (``timed_out_after`` turns the failed round into ``WaitTimedOut``).

    ``follow_retries``: a failed proposal does not end the wait (a person may send it to run
    again, and it runs): it is long-polled on until it ends otherwise, ``until`` holds of it,
    or the time is up."""

    def __init__(
        self,
        proposal_id: int,
        timeout: float | None,
        fallback_interval: float,
        request_timeout: float = 0.0,
        *,
        until: Callable[[Proposal], bool] | None = None,
        follow_retries: bool = False,
    ):
        self.proposal_id = proposal_id
        self.until_holds = until
        self.follow_retries = follow_retries
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.until = None if self.deadline is None else self.deadline + request_timeout
        self.fallback_interval = fallback_interval
        self.seen: Proposal | None = None
        self.rounds = 0
        self._asked: tuple[str, float, int] | None = None
        # A round was refused "ask again later": the next is a plain read
        # (``pause_after_failure``).
        self._look_after_refusal = False

    def remaining(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def next_call(self) -> Call:
        self.rounds += 1
        remaining = self.remaining()
        if self.seen is None or remaining < 1 or self._look_after_refusal:
            # The first look, or the last: a long poll is asked for in whole seconds.
            self._asked = None
            return get_call(self.proposal_id)
        seconds = int(min(MAX_WAIT_SECONDS, remaining))
        self._asked = (self.seen.status, time.monotonic(), seconds)
        return get_call(self.proposal_id, wait=seconds, status=self.seen.status)

    def pause_after_failure(self, error: HitlError) -> float:
        """A round that failed: how long to pause before the next, when the wait goes on;
        else raises (``WaitTimedOut`` once its time is up, with the proposal as last seen, or
        ``error``).

        The wait goes on past a refusal that did nothing and asked to be asked again later,
        once the client's own retries of it ran out: a 429 with its Retry-After (the agent
        has more long polls open than the platform holds for it, ``too_many_waits``, or its
        rate), or a 503 with one (``busy``). ``wait()`` without a timeout waits as long as it
        takes, and had raised ``RateLimited`` some 20 s into a burst of its agent's waits.
        It pauses the Retry-After (never less than ``fallback_interval``), then reads the
        proposal without waiting, as the refusal suggests, so a decision made meanwhile is
        seen, before it long-polls again. A refused key (``AuthThrottled``) is raised."""
        if not (isinstance(error, ConnectionFailed) or asked_again_later(error)):
            raise error
        timed_out = self.timed_out_after(error)  # None while time remains, or if never read
        if timed_out is not None:
            raise timed_out from error
        remaining = self.remaining()
        if isinstance(error, ConnectionFailed) or remaining <= 0:
            raise error
        self._asked = None
        self._look_after_refusal = True
        return min(_pause_asked(error, self.fallback_interval), remaining)

    def timed_out_after(self, error: Exception) -> WaitTimedOut | None:
        """A round that failed once the wait's time was up ends the wait: ``WaitTimedOut``
        with the proposal as last seen; else None, and the caller raises ``error`` (also
        when the proposal was never read: there is no last seen to hand out, and the
        adapters read ``WaitTimedOut.proposal``)."""
        seen = self.seen
        if self.remaining() > 0 or seen is None:
            return None
        return WaitTimedOut(
            f"Proposal {self.proposal_id} is still {seen.status} when the wait timed out "
            f"(the last request failed: {error}).",
            proposal=seen,
        )

    def ends_the_wait(self, proposal: Proposal) -> bool:
        """Final (failed too, unless following retries), or ``until`` holds of it."""
        if proposal.is_final and not (self.follow_retries and proposal.may_be_retried):
            return True
        return self.until_holds is not None and self.until_holds(proposal)

    def pause_after(self, proposal: Proposal) -> float | None:
        """Record an answer: None when waiting is over (the proposal is final, or ``until``
        holds of it), else how
        long to pause before the next round. Raises ``WaitTimedOut`` when the time is up."""
        self.seen = proposal
        if self.ends_the_wait(proposal):
            return None
        remaining = self.remaining()
        if remaining <= 0:
            still = (
                "failed, and nobody sent it to run again,"
                if proposal.may_be_retried
                else f"still {proposal.status}"
            )
            raise WaitTimedOut(
                f"Proposal {proposal.id} is {still} when the wait timed out.",
                proposal=proposal,
            )
        if self._asked is None:
            # The first look, or the look after a refusal (paused already): a long poll next.
            first = self.rounds == 1 or self._look_after_refusal
            pause = 0.0 if first and remaining >= 1 else self.fallback_interval
            self._look_after_refusal = False
        else:
            status, asked_at, seconds = self._asked
            answered_early = time.monotonic() - asked_at < seconds / 2
            pause = self.fallback_interval if status == proposal.status and answered_early else 0
        return min(pause, remaining)


class FeedbackPages:
    """The rounds of a feedback feed, from a kept ``resume`` link: page by page to the end of
    what there is, then (when following) long polls on ``resume`` until records arrive.
    ``resume`` moves on only once a page has been handed out whole, so a reader that stops
    mid-page and keeps ``resume`` reads that whole page again, the records it had handled
    included (at least once, never lost)."""

    def __init__(
        self,
        resume: str | None,
        *,
        follow: bool,
        timeout: float | None,
        page_size: int | None,
        fallback_interval: float,
    ) -> None:
        self.resume = feed_link(resume) if resume else FEEDBACK
        self.follow = follow
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.page_size = page_size
        self.fallback_interval = fallback_interval
        self._next: str | None = self.resume
        self._page_resume = self.resume
        self._asked: tuple[float, int] | None = None
        self._looked_last = False

    def remaining(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def next_call(self) -> Call | None:
        """The next page to read, or None when the feed is done (at the end when not
        following; when following, once the time is up)."""
        params: dict[str, Any] = {}
        if self.page_size is not None:
            params["page_size"] = self.page_size
        self._asked = None
        if self._next is not None:
            return Call("GET", self._next, params=params or None, retry_safe=True)
        if not self.follow or self._looked_last:
            return None
        remaining = self.remaining()
        if remaining < 1:  # a long poll is asked for in whole seconds: a last look instead
            self._looked_last = True
            return Call("GET", self.resume, params=params or None, retry_safe=True)
        seconds = int(min(MAX_WAIT_SECONDS, remaining))
        params["wait"] = seconds
        self._asked = (time.monotonic(), seconds)
        return Call("GET", self.resume, params=params, retry_safe=True, long_poll=seconds)

    @reads_answer
    def read(self, answer: Answer) -> tuple[list[Feedback], float]:
        """A page's records, and how long to pause before the next round."""
        page = answer.body
        records = [Feedback.from_api(item) for item in page.get("results") or []]
        next_link = page.get("next")
        self._next = clean_link(next_link) if next_link else None
        self._page_resume = clean_link(page["resume"]) if page.get("resume") else self.resume
        pause = 0.0
        remaining = self.remaining()
        if not records and self._asked is not None:
            asked_at, seconds = self._asked
            if time.monotonic() - asked_at < seconds / 2:
                pause = min(self.fallback_interval, max(0.0, remaining))
        # Too little time after this pause for a whole-second long poll: the last look is
        # taken when the time ends, so the feed follows for the whole of it.
        following = self.follow and self._next is None and not self._looked_last
        if following and remaining > 0 and remaining - pause < 1:
            pause = remaining
        return records, pause

    def pause_after_failure(self, error: HitlError) -> float:
        """A round of a followed feed that failed: how long to pause before the next, when
        the feed goes on; else raises ``error``. As ``wait()`` does, a followed feed goes on
        past a refusal that asked to be asked again later (``asked_again_later``: too many
        long polls of this agent's at once, its rate, the server busy), after its
        Retry-After, with a read of ``resume`` without waiting; it had raised
        ``RateLimited`` out of the loop. Once its time is up, or its last look (taken in its
        last second) is refused, the feed ends, as it does then (``resume`` is kept: nothing
        is lost)."""
        if not (self.follow and asked_again_later(error)):
            raise error
        remaining = self.remaining()
        if self._looked_last or remaining <= 0:
            self._next, self._looked_last = None, True
            return 0.0
        if self._next is None:  # a long poll refused: read what there is, without waiting
            self._next = self.resume
        return min(_pause_asked(error, self.fallback_interval), remaining)

    def page_done(self) -> None:
        """Every record of the page last read has been handed out."""
        self.resume = self._page_resume


def clean_link(link: str) -> str:
    """A link from the API as a path on our base URL, without the long-poll parameters this
    client adds to each round itself."""
    path = path_of(link)
    base, _, query = path.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in ("wait",)]
    return base + (f"?{urlencode(kept)}" if kept else "")


def feed_link(link: str) -> str:
    """A link given back to the client (a kept ``resume``, a ``next``), checked to be one of
    the feedback feed's before it is requested: another value would be sent as it is, and
    answered with a page that is not the feed's (a 404 page, another list)."""
    path = path_of(link).partition("?")[0]
    if not path.endswith(FEEDBACK):
        raise ValueError(
            f"{link!r} is not a link of the feedback feed: pass a resume (or next) link it "
            f"returned, {FEEDBACK}?cursor=…, or None to read from the beginning."
        )
    return clean_link(link)


def next_page_call(page: Mapping[str, Any]) -> Call | None:
    """The call for a list's next page, or None on the last."""
    link = page.get("next")
    return Call("GET", path_of(link), retry_safe=True) if link else None


@reads_answer
def proposals_page_of(answer: Answer) -> tuple[list[Proposal], Call | None]:
    """A page of the proposals list, and the call for the next page (None on the last)."""
    page = answer.body
    return [Proposal.from_api(item) for item in page["results"]], next_page_call(page)


def feedback_page_call(link: str | None, *, wait: int | None, page_size: int | None) -> Call:
    params = {"wait": wait, "page_size": page_size}
    return Call(
        "GET",
        feed_link(link) if link else FEEDBACK,
        params={k: v for k, v in params.items() if v is not None} or None,
        retry_safe=True,
        long_poll=float(wait or 0),
    )


@reads_answer
def feedback_page_of(answer: Answer) -> FeedbackPage:
    page = answer.body
    return FeedbackPage(
        records=[Feedback.from_api(item) for item in page.get("results") or []],
        next=clean_link(page["next"]) if page.get("next") else None,
        resume=clean_link(page["resume"]),
    )
