"""What every agent API view shares: the body limit, a JSON parser that cannot be made to
crash, and one exception handler that turns domain errors into their 4xx responses."""

import base64
import re
from urllib import parse

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.http import Http404
from psycopg_pool import PoolTimeout
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, status
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings
from rest_framework.views import APIView, exception_handler

from hitlproject.converters import BIGGEST_ID
from hitlproject.errors import Busy, DomainError, InvalidInput, Unavailable
from hitlproject.parsers import SafeJSONParser
from hitlproject.validation import StrictQuery


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body larger than {limit} bytes.")


class AgentAPIView(APIView):
    parser_classes = [SafeJSONParser]
    max_body_bytes = settings.API_MAX_BODY_BYTES

    def initial(self, request, *args, **kwargs):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError as error:
            raise exceptions.ParseError("Malformed Content-Length header.") from error
        if length > self.max_body_bytes:
            raise PayloadTooLarge(self.max_body_bytes)
        super().initial(request, *args, **kwargs)
        if request.method not in SAFE_METHODS:
            self.check_no_query(request)

    @staticmethod
    def check_no_query(request) -> None:
        """A write takes no query parameter (DRF's own ``?format=json`` aside): one it is given
        is a 400 naming it, as on a read, before anything is recorded or an Idempotency-Key
        taken. ``POST /api/v1/proposals/?dry_run=1`` proposed for real, and ``?wait=30`` on a
        submission answered at once, neither saying the parameter went unread."""
        unknown = sorted(set(request.query_params) - StrictQuery.known_elsewhere)
        if unknown:
            raise exceptions.ValidationError({name: ["Unknown field."] for name in unknown})

    def perform_content_negotiation(self, request, force=False):
        """DRF answers a ``?format=`` it has no renderer for with a 404, which an agent reads
        as "no such proposal": it is a 400 naming the parameter."""
        try:
            return super().perform_content_negotiation(request, force)
        except Http404 as error:
            name = api_settings.URL_FORMAT_OVERRIDE
            raise exceptions.ValidationError(
                {name: [f"Answers are JSON: {name}=json, or no {name} at all."]}
            ) from error


class IdCursorPagination(CursorPagination):
    """Cursor pagination over an integer id. DRF trusts the position it decodes from the
    cursor; a forged one (``p=abc``) would reach the database as a filter and fail there,
    and one Python reads as a number though no list wrote it (``p=-1``, ``p= 5``,
    ``p=1_000``, twenty nines) answered a page of its own choosing. A position is an id as
    the list writes it: plain digits, within the ids' 64-bit range. A cursor that is not one
    of ours is a 400 naming the parameter: DRF's 404 "Invalid cursor" reads to an agent as
    "no such proposal"."""

    invalid_cursor_message = (
        "Not a cursor this list gave: send back the `next` or `resume` link as it came."
    )

    def decode_cursor(self, request):
        try:
            _as_written(request.query_params.get(self.cursor_query_param))
            cursor = super().decode_cursor(request)
            if cursor is not None and cursor.position is not None:
                _id_as_written(cursor.position)
        except (exceptions.NotFound, ValueError) as error:
            raise exceptions.ValidationError(
                {self.cursor_query_param: [self.invalid_cursor_message]}
            ) from error
        return cursor


# What a list over unique ids writes in its cursors: a position, and "r=1" on a link back. DRF
# reads more: base64 with any other characters dropped (``cursor=%%%``, read as none at all,
# answered the first page: a feed's reader whose kept link was mangled read every record
# again), and an offset (``o=5``), which these lists never write, as records to skip (the
# first five of a feed, never to be seen by the agent that sent it).
_CURSOR_PARTS = {"p": re.compile(r"[0-9]+"), "r": re.compile(r"1")}


def _as_written(encoded: str | None) -> None:
    """ValueError unless ``encoded`` is absent or a cursor as these lists write one."""
    if encoded is None:
        return
    pairs = parse.parse_qsl(
        base64.b64decode(encoded, validate=True).decode("ascii"),
        keep_blank_values=True,
        strict_parsing=True,
    )
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names) or not all(
        name in _CURSOR_PARTS and _CURSOR_PARTS[name].fullmatch(value) for name, value in pairs
    ):
        raise ValueError(encoded)


def _id_as_written(position: str) -> int:
    """``position`` as the id a list wrote it as, or ValueError."""
    if not (position.isascii() and position.isdigit()) or int(position) > BIGGEST_ID:
        raise ValueError(position)
    return int(position)


class DomainAPIException(exceptions.APIException):
    def __init__(self, error: DomainError) -> None:
        super().__init__(detail=error.message, code=error.code)
        self.status_code = error.status_code
        self.wait = getattr(error, "retry_after", None)  # DRF answers it as Retry-After


def lock_wait_ran_out(exc: Exception) -> bool:
    """A database error saying a lock was not had in time (PostgreSQL's lock_timeout, or
    SQLite's busy timeout): the request did nothing and can be sent again."""
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) == "55P03" or "database is locked" in str(exc)


def no_database_connection(exc: Exception) -> bool:
    """A database error saying no connection could be had: every pooled connection stayed in
    use for longer than a request waits for one (psycopg_pool's PoolTimeout: a burst of
    requests), or the server did not accept one (the request has none open). The request
    could not have written anything and can be sent again."""
    if not isinstance(exc, OperationalError):
        return False
    return (
        isinstance(exc.__cause__, PoolTimeout) or connections[DEFAULT_DB_ALIAS].connection is None
    )


def as_api_exception(exc: Exception) -> Exception:
    """Domain and Django errors as the DRF exception that carries their status code. Input
    refused field by field (``InvalidInput`` with ``field_errors``) is answered as a
    serializer's refusal is, the fields' messages nested as they are."""
    if isinstance(exc, InvalidInput) and exc.field_errors:
        return exceptions.ValidationError(exc.field_errors)
    if isinstance(exc, DomainError):
        return DomainAPIException(exc)
    if lock_wait_ran_out(exc):
        return DomainAPIException(
            Busy(
                "The campaigns this request changes are held by other requests for longer "
                "than a request waits; nothing was recorded. Send it again shortly."
            )
        )
    if no_database_connection(exc):
        return DomainAPIException(
            Busy(
                "No database connection came free in time (too many requests at once, or "
                "the database is unreachable); nothing was recorded. Send it again shortly."
            )
        )
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        # The agents' rate limit is counted in Redis (hitlproject.windows): without it no
        # request can be counted, and an uncounted agent could flood the platform.
        return DomainAPIException(
            Unavailable(
                "The platform cannot count this agent's requests right now (its rate-limit "
                "store is unreachable); nothing was done. Send it again shortly."
            )
        )
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or None)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    return exc


def api_error_body(exc: Exception) -> tuple[int, object]:
    """The status and body the API answers for a refused request (used per item in batches)."""
    response = api_exception_handler(exc, {})
    return response.status_code, response.data


def api_exception_handler(exc, context):
    exc = as_api_exception(exc)
    response = exception_handler(exc, context)
    if (
        response is not None
        and isinstance(exc, exceptions.APIException)
        and isinstance(response.data, dict)
        and "detail" in response.data
    ):
        codes = exc.get_codes()
        response.data["code"] = codes if isinstance(codes, str) else "error"
    return response
