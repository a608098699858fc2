"""The errors the client raises. Every refusal from the API carries its message (``message``),
its HTTP status (``status_code``), its machine-readable ``code`` when the API sent one, and
the decoded ``body``."""

from __future__ import annotations

from typing import Any


class HitlError(Exception):
    """Base of every error this client raises."""

    #: Set on a failure after which a keyed request (a proposal, a batch, an outcome) may
    #: have taken effect (its answer was lost): its Idempotency-Key, the one the client made
    #: when none was given, which finds what it did without doing it twice. The message
    #: names it too.
    idempotency_key: str | None = None

    #: An earlier attempt of the call reached the server and its answer was lost (the
    #: connection broke after it was sent, a 5xx, a 409 because it was still being answered),
    #: whatever the last attempt was answered (a 429, a 408, a 503 "nothing was recorded"):
    #: it may have taken effect. The message says so too.
    answer_lost: bool = False

    # The message as it read before ``key_named`` named the key in it (its end's spaces
    # trimmed), for an adapter that says the key in its own words.
    _message_before_key: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.body = body

    def __str__(self) -> str:
        return self.message if self.status_code is None else f"{self.status_code}: {self.message}"


class ConfigurationError(HitlError, ValueError):
    """The client cannot be made as configured: no base URL or API key given or in the
    environment, or a base URL that is not an http:// or https:// URL. Raised when the client
    is made, before anything is sent."""


class ValidationFailed(HitlError):
    """400: the request broke a rule; ``errors`` maps each field (dotted for nested fields,
    ``non_field_errors`` for the request as a whole) to its messages."""

    def __init__(self, message: str, *, errors: dict[str, list[str]] | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.errors: dict[str, list[str]] = errors or {}


class Unprocessable(ValidationFailed):
    """422: well formed but unusable, e.g. an Idempotency-Key reused with another body or on
    another endpoint."""


class PayloadTooLarge(ValidationFailed):
    """413: the body is larger than the API accepts."""


class AuthFailed(HitlError):
    """401: no API key, an unknown one, or a revoked one."""


class PermissionDenied(HitlError):
    """403: the key is valid but this agent may not do this. SPEC lists it; the platform
    answers nothing with it today: another agent's proposal is a 404 and an account not this
    agent's a 400 (``ValidationFailed``), which say nothing of what others have."""


class NotFound(HitlError):
    """404: no such proposal among this agent's own, or no such account or campaign."""


class Conflict(HitlError):
    """409: the proposal's state does not allow this now (withdrawing a decided proposal), or
    a request with the same Idempotency-Key is still in flight."""


class RateLimited(HitlError):
    """429: throttled, after the client's own retries ran out; ``retry_after`` is the number
    of seconds the API asked to wait (None when it did not say)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class AuthThrottled(RateLimited, AuthFailed):
    """429 ``authentication_throttled``: this address sent more malformed, unknown or revoked
    API keys than the API takes; the key sent is one of them. Both a ``RateLimited`` (wait
    ``retry_after``) and an ``AuthFailed`` (mend the key: retrying it will not help)."""


class ServerError(HitlError):
    """5xx after the client's retries ran out (or a non-idempotent request, not retried)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ConnectionFailed(HitlError):
    """The API could not be reached, or the connection broke, after the client's retries ran
    out. For a request without an idempotency key that may have reached the server, the
    client does not retry: whether it took effect is unknown (``get`` or list to find out)."""


class BadResponse(HitlError):
    """The server's answer is not one the API gives: not JSON, JSON of the wrong shape (a list
    where a proposal was due, a proposal without its fields), nested too deep to read.
    ``status_code`` is the answer's status and ``excerpt`` its first characters (the API key
    blanked out, should the server have echoed it)."""

    def __init__(self, message: str, *, status_code: int | None, excerpt: str = "") -> None:
        super().__init__(message, status_code=status_code)
        self.excerpt = excerpt


class ResponseTooLarge(BadResponse):
    """The answer grew past the client's ``max_response_bytes`` (16 MiB by default): it was
    cut off there, not read into memory whole."""


class WaitTimedOut(HitlError, TimeoutError):
    """``wait()`` ran out of time before the proposal was final; ``proposal`` is how it was
    last seen."""

    def __init__(self, message: str, *, proposal: Any) -> None:
        super().__init__(message)
        self.proposal = proposal


BY_STATUS: dict[int, type[HitlError]] = {
    400: ValidationFailed,
    401: AuthFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Unprocessable,
    429: RateLimited,
}


def _flatten(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested per-field errors ({"payload": {"new_bid": ["…"]}}) as dotted names."""
    if isinstance(errors, dict):
        flat: dict[str, list[str]] = {}
        for name, value in errors.items():
            flat.update(_flatten(value, f"{prefix}.{name}" if prefix else str(name)))
        return flat
    if isinstance(errors, list) and errors and all(isinstance(e, str) for e in errors):
        return {prefix or "non_field_errors": list(errors)}
    if isinstance(errors, list):
        flat = {}
        for index, value in enumerate(errors):
            if value:
                flat.update(_flatten(value, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    return {prefix or "non_field_errors": [str(errors)]}


def error_from_response(
    status_code: int,
    body: Any,
    *,
    retry_after: float | None = None,
    text: str = "",
    asked: str = "",
) -> HitlError:
    """The typed error for a refused request, with the API's own message; a 404's names what
    was ``asked`` ("GET https://…/api/v1/proposals/7/"), as the API's "Not found." does not
    say whether the proposal or the address was wrong (a base URL with a path too many)."""
    code = None
    errors: dict[str, list[str]] = {}
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        message = body["detail"]
        code = body.get("code") if isinstance(body.get("code"), str) else None
    elif isinstance(body, dict | list) and body:
        errors = _flatten(body)
        message = "; ".join(
            msg if name == "non_field_errors" else f"{name}: {msg}"
            for name, messages in errors.items()
            for msg in messages
        )
    else:
        message = text.strip()[:500] or f"HTTP {status_code}"
    if status_code == 404 and asked and not text:
        message = f"{message} ({asked})"
    kind = BY_STATUS.get(status_code, ServerError if status_code >= 500 else HitlError)
    kw: dict[str, Any] = {"status_code": status_code, "code": code, "body": body}
    if issubclass(kind, ValidationFailed):
        return kind(message, errors=errors or {"non_field_errors": [message]}, **kw)
    if kind is RateLimited and code == "authentication_throttled":
        kind = AuthThrottled
    if issubclass(kind, RateLimited | ServerError):
        return kind(message, retry_after=retry_after, **kw)
    return kind(message, **kw)
