"""What the sync and async clients share: configuration, how a call is described, when a
failed attempt is tried again and after how long, and how an answer becomes a result or a
typed error. The two clients differ only in how they send and sleep."""

from __future__ import annotations

import email.utils
import html
import json
import math
import os
import random
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from hitl_client._bounded import DEFAULT_MAX_RESPONSE_BYTES
from hitl_client.errors import (
    BadResponse,
    ConfigurationError,
    ConnectionFailed,
    HitlError,
    ValidationFailed,
    error_from_response,
)

DEFAULT_TIMEOUT = 30.0
USER_AGENT = "hitl-client-python/0.1.0"
# The longest ``?wait=`` the API takes (SPEC: 1–60 seconds).
MAX_WAIT_SECONDS = 60


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter.

    ``max_attempts`` counts the first try; ``max_elapsed`` bounds the time from the first try
    until the last retry starts (a ``Retry-After`` that would pass it is not waited out: the
    error is raised at once). ``backoff`` is the first delay, doubling up to ``max_backoff``.
    """

    max_attempts: int = 5
    max_elapsed: float = 60.0
    backoff: float = 0.5
    max_backoff: float = 8.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """How long to wait before attempt ``attempt + 1``: what the server asked, else
        between half and all of the exponential step (the jitter spreads agents that failed
        together, so they do not retry together)."""
        if retry_after is not None:
            return retry_after
        step = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return random.uniform(step / 2, step)


NO_RETRIES = RetryPolicy(max_attempts=1)


@dataclass
class Call:
    """One API request, as both clients send it.

    ``retry_safe``: sending it twice does no harm (a read, a dry run, or a write carrying an
    Idempotency-Key); only such a call is sent again after it may have reached the server.
    ``long_poll``: the seconds the server may hold it, added to the read timeout."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    body: Any = None
    idempotency_key: str | None = None
    retry_safe: bool = False
    long_poll: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        refuse_non_finite(self.body)

    def url(self) -> str:
        """The path with ``params`` added to any query it has (a cursor link's), which httpx
        would replace rather than extend. A parameter the path has already is replaced: the
        API's links repeat the request's own (``page_size``), and a link followed again with
        the same parameter would otherwise grow by one each time."""
        if not self.params:
            return self.path
        given = {k: v for k, v in self.params.items() if v is not None}
        path, _, query = self.path.partition("?")
        kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in given]
        query = urlencode([*kept, *given.items()])
        return f"{path}?{query}" if query else path

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.idempotency_key is not None:
            headers["Idempotency-Key"] = self.idempotency_key
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def content(self) -> bytes | None:
        if self.body is None:
            return None
        return json.dumps(self.body, default=_json_default, separators=(",", ":")).encode()


NOT_FINITE = "Must be a finite number: JSON has no NaN or Infinity."
_JSON_LEAVES = (str, int, float, bool, type(None), Decimal)


def refuse_non_finite(body: Any) -> None:
    """A body holding a number that is not finite (a float or a ``Decimal`` NaN or
    infinity) is refused as ``ValidationFailed``, each place named as the API names fields
    (``payload.new_bid``, ``supporting_data.ctr.1``, ``1.payload.new_bid`` for a batch's
    second item), before anything is sent: JSON has no such number. A float one went out
    as the bare word ``NaN`` (JSON that Python alone reads), which the API refuses naming no
    field; a ``Decimal`` one as the text "NaN", which the API took as any text where it
    takes one (in ``supporting_data``). A value JSON cannot write at all (a ``datetime``, a
    set) is a ``TypeError`` naming its place, where json's said only "datetime is not JSON
    serializable". Read without recursion, a container once (a body that holds itself is
    json's to refuse)."""
    refused: dict[str, list[str]] = {}
    seen: set[int] = set()
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, float | Decimal):
            if not (math.isfinite(value) if isinstance(value, float) else value.is_finite()):
                refused[where or "non_field_errors"] = [NOT_FINITE]
            continue
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, list | tuple):
            items = enumerate(value)
        elif isinstance(value, _JSON_LEAVES):
            continue
        else:
            raise TypeError(
                f"{where or 'The body'}: {type(value).__name__} is not JSON serializable (send "
                "text, a number, true/false, null, a list or an object). Nothing was sent."
            )
        if id(value) in seen:
            continue
        seen.add(id(value))
        pending.extend((f"{where}.{key}" if where else str(key), item) for key, item in items)
    if refused:
        places = "; ".join(f"{where}: {NOT_FINITE}" for where in sorted(refused))
        raise ValidationFailed(f"{places} Nothing was sent.", errors=refused, code="invalid")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # money and bids as decimal strings, exactly as given
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def new_idempotency_key() -> str:
    return f"hitl-client-{uuid.uuid4()}"


KEY_REFUSED = "Must be 1 to 255 printable ASCII characters."


def idempotency_key_or_new(key: str | None) -> str:
    """The caller's Idempotency-Key, or a new one when none is given. A key the API would
    refuse (it takes 1 to 255 printable ASCII characters) is refused here as the API would,
    ``ValidationFailed`` on ``Idempotency-Key``, before anything is sent: such a key cannot
    even be written into a header (a letter outside ASCII, a line break), and its request
    failed as a ``UnicodeEncodeError`` or as a connection that failed. Spaces and tabs at
    either end are left out, as HTTP leaves them out of a header's value (httpx refused to
    send them: a ``ConnectionFailed``); the API reads the key the same."""
    if not key:
        return new_idempotency_key()
    if isinstance(key, str):
        key = key.strip(" \t")
    if not (isinstance(key, str) and 1 <= len(key) <= 255 and key.isascii() and key.isprintable()):
        raise ValidationFailed(
            f"Idempotency-Key: {KEY_REFUSED} Nothing was sent.",
            errors={"Idempotency-Key": [KEY_REFUSED]},
            code="invalid",
        )
    return key


@dataclass(frozen=True)
class Settings:
    base_url: str
    api_key: str
    timeout: float
    retry: RetryPolicy
    headers: dict[str, str]
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


def settings_from(
    base_url: str | None,
    api_key: str | None,
    timeout: float | None,
    retry: RetryPolicy | None,
    user_agent: str | None,
    max_response_bytes: int | None = None,
) -> Settings:
    given = bool(base_url)
    base_url = base_url or os.environ.get("HITL_BASE_URL")
    api_key = api_key or os.environ.get("HITL_API_KEY")
    if not base_url:
        raise ConfigurationError("No base URL: pass base_url= or set HITL_BASE_URL.")
    if not api_key:
        raise ConfigurationError("No API key: pass api_key= or set HITL_API_KEY.")
    return Settings(
        base_url=_checked_base_url(base_url, named="The base URL" if given else "HITL_BASE_URL"),
        api_key=api_key,
        timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
        retry=retry or RetryPolicy(),
        headers={
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": user_agent or USER_AGENT,
        },
        max_response_bytes=max_response_bytes or DEFAULT_MAX_RESPONSE_BYTES,
    )


#: The API's own path, which the client adds to the base URL: a base URL ending with it (or
#: with its /api) was answered "Not found." at .../api/v1/api/v1/campaigns/.
_API_PATH = re.compile(r"/api(?:/v1)?/*$", re.IGNORECASE)


def _checked_base_url(base_url: str, *, named: str) -> str:
    """The base URL without its trailing slash, refused now if it is not an http(s) URL:
    httpx would only fail at the first request, and then with a puzzle ("unsupported
    protocol 'localhost://'" for ``localhost:8110``). One ending with the API's path
    (``…/api/v1``, ``…/api``) is refused too: each request was a 404, "Not found.", which
    the framework adapters handed the model as the platform refusing its proposal."""
    parts = urlsplit(base_url)
    if not (parts.scheme.lower() in ("http", "https") and parts.netloc):
        hint = f"; did you mean 'http://{base_url}'?" if "://" not in base_url else "."
        raise ConfigurationError(f"{named} {base_url!r} is not an http:// or https:// URL{hint}")
    if api_path := _API_PATH.search(parts.path):
        meant = parts._replace(path=parts.path[: api_path.start()], query="", fragment="")
        raise ConfigurationError(
            f"{named} {base_url!r} ends with the API's path, which the client adds itself "
            f"(/api/v1/…): did you mean {meant.geturl()!r}, the platform's address?"
        )
    return base_url.rstrip("/")


def timeout_for(settings: Settings, call: Call) -> httpx.Timeout:
    return httpx.Timeout(settings.timeout, read=settings.timeout + call.long_poll)


def deadline_for(settings: Settings, call: Call, until: float | None) -> float:
    """When an attempt at ``call`` starting now must be over (monotonic): ``timeout`` seconds
    for the whole exchange, plus the seconds a long poll may be held; never past ``until``."""
    deadline = time.monotonic() + settings.timeout + call.long_poll
    return deadline if until is None else min(deadline, until)


def path_of(link: str) -> str:
    """A link the API returned (``next``, ``resume``), as a path on our own base URL: the
    server may build absolute links with a host name only it knows (behind a proxy)."""
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date; None if absent or not understood
    ("inf", "nan", or more seconds than a float holds: none is a time to wait)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a year past any calendar's
        return None
    return max(0.0, when.timestamp() - time.time())


# Failures before the request was sent: retrying cannot repeat an effect.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Attempts:
    """The retry bookkeeping of one call: after each failed attempt, how long to wait before
    the next, or None when there is to be no next (the caller then raises)."""

    def __init__(self, policy: RetryPolicy, call: Call, until: float | None = None) -> None:
        self.policy = policy
        self.call = call
        self.until = until  # no attempt starts or runs past it (a wait's own deadline)
        self.count = 0
        self.started = time.monotonic()
        # An attempt reached the server and what it did is unknown (its connection broke
        # after it was sent, a 5xx, a 409 because an earlier one is still being answered).
        self.unanswered = False
        self.unanswered_before = False  # so, by an attempt before the current one

    def start(self) -> None:
        self.count += 1
        self.unanswered_before = self.unanswered

    def _within_budget(self, delay: float) -> float | None:
        if self.count >= self.policy.max_attempts:
            return None
        remaining = self.policy.max_elapsed - (time.monotonic() - self.started)
        if delay > remaining:
            return None
        if self.until is not None and time.monotonic() + delay >= self.until:
            return None
        return delay

    def after_exception(self, error: httpx.TransportError) -> float | None:
        if not isinstance(error, _NOT_SENT):
            self.unanswered = True
        if not (isinstance(error, _NOT_SENT) or self.call.retry_safe):
            return None
        return self._within_budget(self.policy.delay(self.count, None))

    def after_response(self, response: httpx.Response) -> float | None:
        status = response.status_code
        retry_after = retry_after_seconds(response)
        if status in (408, 429) or (status == 503 and retry_after is not None):
            # Refused before anything was done: throttled; the request's body stopped
            # arriving ("Nothing was done; send it again", as HTTP's 408 means); or busy,
            # "nothing was recorded".
            pass
        elif status >= 500 or (status == 409 and self.call.idempotency_key and self.count > 1):
            # A 409 on a keyed retry: our own earlier attempt is still in flight.
            self.unanswered = True
            if not self.call.retry_safe:
                return None
        else:
            return None
        return self._within_budget(self.policy.delay(self.count, retry_after))

    def failed(self, error: HitlError) -> HitlError:
        """The error the call ends with, marked ``answer_lost`` when an earlier attempt's
        answer was lost: a throttled or timed-out last attempt says nothing of what the
        first one did. A keyed call that may have taken effect (an attempt's answer lost)
        names its key (``key_named``)."""
        if self.unanswered_before and not error.answer_lost:
            error.answer_lost = True
            error.message = (
                f"{error.message.rstrip()} An earlier attempt reached the server and its "
                "answer was lost: it may have taken effect."
            )
            error.args = (error.message,)
        if self.unanswered or error.answer_lost:
            key_named(error, self.call.idempotency_key)
        return error

    def answer(self, response: httpx.Response, content: bytes, secret: str) -> Answer:
        """``answer_of`` the last attempt's answer, its refusal marked (``failed``)."""
        try:
            answer = answer_of(response, content, secret)
        except HitlError as error:
            self.failed(error)
            raise
        return replace(answer, idempotency_key=self.call.idempotency_key)


def key_named(error: HitlError, key: str | None) -> HitlError:
    """``error`` (a keyed request that may have taken effect though its answer never arrived
    whole) with the request's Idempotency-Key, in its ``idempotency_key`` and its message:
    the client made the key itself when none was given, and the caller, told only that the
    request "may have taken effect", had no way to learn whether it had other than sending
    it again with a new key, which does it twice if it had."""
    if key is None or error.idempotency_key == key:
        return error
    error.idempotency_key = key
    error._message_before_key = error.message.rstrip()
    error.message = f"{error._message_before_key} {key_sentence(key)}"
    error.args = (error.message,)
    return error


def key_sentence(key: str) -> str:
    """What ``key_named`` adds to a message (a framework adapter says it in its own way)."""
    return (
        f"Its Idempotency-Key was {key!r}: sent again with that key and the same body, it is "
        "answered with what became of the first if that took effect, and done once if it "
        "did not."
    )


def message_without_key(error: HitlError) -> str:
    """``error``'s message without what ``key_named`` added to it."""
    before = error._message_before_key
    return error.message if before is None else before


def key_refused(response: httpx.Response, content: bytes) -> bool:
    """Whether a 429 is for the API key itself (``authentication_throttled``: too many wrong
    keys from this address, this one among them): sent again, the same key is refused again,
    one more wrong key counted against the address, so it is raised at once, not retried."""
    if response.status_code != 429:
        return False
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        return False
    return isinstance(body, dict) and body.get("code") == "authentication_throttled"


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: Any
    headers: httpx.Headers

    excerpt: str = ""  # the body's first characters, for a BadResponse
    idempotency_key: str | None = None  # the request's, which a BadResponse names


EXCERPT_CHARS = 200


def excerpt_of(text: str, secret: str, size: int = EXCERPT_CHARS) -> str:
    """The start of a text from the server, with the API key blanked out (a hostile or
    misconfigured server may echo the request's headers back)."""
    text = text.replace(secret, "[api key]") if secret else text
    return text[:size]


def answer_of(response: httpx.Response, content: bytes, secret: str) -> Answer:
    """A successful answer's decoded body, or the typed error for a refusal. A body that is
    not JSON (or is nested too deep to decode) is ``None``; the operation that reads it then
    raises ``BadResponse``."""
    body: Any = None
    text = content.decode(response.encoding or "utf-8", errors="replace") if content else ""
    if content:
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):
            body = None
    if response.is_success:
        return Answer(
            status_code=response.status_code,
            body=body,
            headers=response.headers,
            excerpt=excerpt_of(text, secret),
        )
    retry_after = retry_after_seconds(response)
    try:
        request = response.request
        error = error_from_response(
            response.status_code,
            body,
            retry_after=retry_after,
            text=not_the_apis(response, excerpt_of(text, secret, 500)) if body is None else "",
            asked=f"{request.method} {request.url.copy_with(query=None)}",
        )
    except RecursionError:  # decoded, but too deep to flatten into per-field errors
        error = error_from_response(
            response.status_code, None, retry_after=retry_after, text=excerpt_of(text, secret, 500)
        )
    raise error


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def not_the_apis(response: httpx.Response, text: str) -> str:
    """The message of a refusal whose body is not the API's JSON: the request, what answered
    it (a redirect and where to, an HTML page and its title, the start of a text) and, when
    that was a redirect or a page not found, the likely cause. A wrong base URL (the console's
    address, a path the API is not under) is answered so, and its HTML, or "HTTP 302", said
    nothing of the URL asked."""
    request = response.request
    status = response.status_code
    if response.has_redirect_location:
        what = f"a redirect to {response.headers['Location']}"
    elif "html" in response.headers.get("Content-Type", "") or text.lstrip()[:1] == "<":
        title = _TITLE.search(text)
        named = " ".join(html.unescape(title.group(1)).split()) if title else ""
        what = f"an HTML page titled “{named}”" if named else "an HTML page"
    elif text.strip():
        what = f"“{' '.join(text.split())[:200]}”"
    else:
        what = "no body"
    message = f"{request.method} {request.url} was answered {status} with {what}, not by the API"
    if status < 400 or status == 404:
        message += ": is the base URL the platform's address?"
    return message


def bad_response(answer: Answer, error: BaseException) -> BadResponse:
    return BadResponse(
        f"The server's answer is not what the API sends ({type(error).__name__}); "
        f"it begins: {answer.excerpt[:80]!r}",
        status_code=answer.status_code,
        excerpt=answer.excerpt,
    )


def connection_failed(call: Call, error: httpx.TransportError) -> ConnectionFailed:
    sent = not isinstance(error, _NOT_SENT)
    unknown = sent and not call.retry_safe
    detail = (
        " It may have reached the server; it was not sent again because it has no "
        "Idempotency-Key, so whether it took effect is unknown."
        if unknown
        else ""
    )
    said = str(error).rstrip(".") or "no detail"
    return ConnectionFailed(
        f"{call.method} {call.path} failed: {type(error).__name__}: {said}.{detail}"
    )
