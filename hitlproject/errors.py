"""Domain errors. Services raise them; the API's exception handler turns each into its 4xx,
and the admin shows its message to the operator."""

from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAuthenticated(DomainError):
    """The credentials sent are nobody's who may act: a malformed, unknown or revoked key, a
    deactivated agent. (The API's authentication answers it as DRF's ``AuthenticationFailed``,
    with its challenge.)"""

    status_code = 401
    code = "authentication_failed"


class NotAllowed(DomainError):
    status_code = 403
    code = "not_allowed"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    """The request is valid but the record's current state does not allow it."""

    status_code = 409
    code = "conflict"


class Busy(DomainError):
    """What the request needs is held by others for longer than a request may wait: nothing
    was done, and the same request may be sent again shortly."""

    status_code = 503
    code = "busy"
    retry_after = 1


class Unavailable(DomainError):
    """A service the request needs (the rate-limit store) cannot be reached: nothing was done,
    and the same request may be sent again once it is back."""

    status_code = 503
    code = "unavailable"
    retry_after = 5


class TooLarge(DomainError):
    """The request asks for more work than one request may: nothing was done."""

    status_code = 413
    code = "payload_too_large"


class Unprocessable(DomainError):
    status_code = 422
    code = "unprocessable"


class InvalidInput(DomainError):
    """Input that breaks a rule. ``field_errors`` says which field broke which, nested by field
    name and list index as a serializer reports them, so that a form can show each message
    beside the field it is about."""

    def __init__(self, message: str, *, field_errors: Mapping[str | int, Any] | None = None):
        super().__init__(message)
        self.field_errors = field_errors or {}
