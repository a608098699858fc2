"""Requests the platform sends out (agents' callbacks, the webhook executor): signed, bounded,
sent only where it is safe to send them.

- **Bounded**: the whole exchange (resolving the name, connecting, sending, reading the
  answer's status line and headers) has one deadline, ``OUTBOUND_DEADLINE``; an endpoint that
  trickles its answer a byte at a time is cut off there, not after each read. The answer's
  headers are capped by h11 (16 KiB); of its body, at most the first bytes are read (a
  refusal's words; a success's, for a caller that asks), for at most a second.
- **What it answered, bounded**: the request ids its ``Request-Id`` and ``X-Request-Id``
  headers give (``REQUEST_IDS_AT_MOST`` of them, each on one line and at most
  ``REQUEST_ID_CHARS`` characters), whatever their number or length.
- **Checked**: the name is resolved when sending, every address it resolves to must be a public
  one (no loopback, private, link-local such as 169.254.169.254, carrier-grade NAT, multicast
  or reserved addresses, IPv4-mapped ones included), and the request goes to the address that
  was checked, so a name cannot resolve to a public address for the check and a private one
  for the connection. ``HITL_OUTBOUND_ALLOW_PRIVATE`` lifts the address check, for development
  against endpoints on one's own machine. The same check runs when a URL is saved
  (``validate_outbound_url``).
- Never following a redirect, judging by the status alone: a 2xx carried it; a timeout, a
  connection error, a 5xx, 408 or 429 may be tried again; any other answer, or a refused
  destination, refuses it. Of those refusals, a redirect other than 307 or 308 (which ask
  for the request again elsewhere) is no sure answer: a server that carried a POST out
  sends the caller on to its result with a 303 (many frameworks, a 302). A deadline met
  before any of the request was sent (its name still being looked up) is no such timeout:
  it reached nobody.
- **Said as it happened**: each result names what the endpoint did in words an operator reads
  as they are: how long it was given ("timed out: no answer within 10 s"), a redirect as one,
  where it pointed and not followed, headers without end as such (not in h11's words).

A service the platform is configured to call and whose answer it reads (Slack's Web API)
goes through ``exchange_within``: the same one deadline for the whole exchange, the answer
read up to a length, no address check (its address is the operator's setting, not an
agent's).
"""

import ast
import asyncio
import codecs
import contextlib
import functools
import ipaddress
import math
import os
import re
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import certifi
import h11
import httpcore
import httpx
from django.conf import settings
from django.core.exceptions import ValidationError

from hitlproject.once import made_once
from hitlproject.signing import SIGNATURE_HEADER, signed_now
from hitlproject.validation import one_line, shows_nothing

RETRIED_STATUSES = {408, 429}  # and every 5xx
# Redirects that say the request was not acted on here: send it again elsewhere.
NOT_ACTED_ON_REDIRECTS = {307, 308}
# Name lookups, which the standard library cannot bound in time: a stuck one holds one of
# these threads, not the request that gave up on it at its deadline.
_RESOLVER = ThreadPoolExecutor(max_workers=8, thread_name_prefix="outbound-resolver")


@dataclass(frozen=True)
class Sent:
    delivered: bool
    retry: bool  # worth trying again, if not delivered
    result: str  # what happened, in words
    retry_after: float | None = None  # seconds the endpoint asked to be left alone (Retry-After)
    # Sent, but no answer says whether the endpoint acted on it (a timeout, a connection lost
    # after sending, a 5xx, a redirect but 307 and 308): it may have. Not one refused, or that
    # never connected.
    unanswered: bool = False
    # The request ids the answer's headers gave (``request_ids``), and, for a caller that
    # asked, a success's body: its first bytes, or None if it said more (or took longer to
    # say) than is read.
    request_ids: tuple[str, ...] = ()
    answer: bytes | None = None
    # The answer's HTTP status, if one came.
    status: int | None = None
    # Whether the request is known to have reached the endpoint: it answered (``status``), it
    # answered with headers longer than are read, or it was sent and no answer came by the
    # deadline. Not one refused, that never connected, or whose connection failed.
    reached: bool = False
    # Whether any of the request was sent, its answer not had: a connection lost then, or a
    # timeout, may have carried it to the endpoint.
    went: bool = False


# The headers an endpoint names its request in (Stripe's, and most frameworks'), and what of
# them is kept: however many it sends, however long, an operator's cell shows a few, short.
REQUEST_ID_HEADERS = ("Request-Id", "X-Request-Id")
REQUEST_IDS_AT_MOST = 5
REQUEST_ID_CHARS = 100


def request_id(value) -> str | None:
    """An id an endpoint gave, as recorded: a string or a whole number (never a list, a
    mapping, a boolean or a fraction), on one line (control and invisible characters read as
    a space), at most ``REQUEST_ID_CHARS`` characters (one longer is cut and ends with "…");
    None if it is no such thing or shows nothing."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = one_line(str(value))
    if shows_nothing(text):
        return None
    return text if len(text) <= REQUEST_ID_CHARS else text[: REQUEST_ID_CHARS - 1] + "…"


def request_ids(values) -> tuple[str, ...]:
    """The ids of ``values`` as recorded (``request_id``), each once, in their order, at most
    ``REQUEST_IDS_AT_MOST``."""
    kept: list[str] = []
    for value in values:
        named = request_id(value)
        if named is not None and named not in kept:
            kept.append(named)
            if len(kept) == REQUEST_IDS_AT_MOST:
                break
    return tuple(kept)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """An HTTP ``Retry-After`` value (seconds, or an HTTP date) as seconds from now; None if
    absent or not understood (a date in a year past any calendar's, or more seconds than a
    float holds, too: what a hostile endpoint sends to fail the worker reading it, or to have
    its attempt say "Retry-After: inf s"), 0 for a date already past."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to str.isdigit, not to float
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class RefusedDestination(Exception):
    """A URL the platform will not send to; ``retry`` when another try may find it fine (a
    name that did not resolve), not when it names a private address."""

    def __init__(self, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class Destination:
    url: str  # with the checked address in place of the name
    host_header: str
    server_name: str  # for TLS: the certificate is checked against the name, not the address


# IPv6 ranges that carry an IPv4 address a router may deliver to: NAT64's and the deprecated
# IPv4-compatible form. (IPv4-mapped and 6to4 addresses have attributes of their own.)
_EMBEDDING_IPV4 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96"))
# IETF protocol assignments: Python counts two of them as global; none is an endpoint.
_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")
# Where the internet's IPv6 hosts are (global unicast). Python counts more as global: NAT64's
# local-use prefix 64:ff9b:1::/48 (RFC 8215, an IPv4 address inside at a place its network
# chooses) and SIIT's IPv4-translated ::ffff:0:0:0/96, which a translator delivers to the
# IPv4 address inside, a private one or the cloud's metadata service among them.
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in network for network in _EMBEDDING_IPV4):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return _public(embedded)
        return (
            address in _GLOBAL_UNICAST
            and address.is_global
            and not address.is_multicast
            and address.teredo is None
        )
    return address.is_global and not address.is_multicast and address not in _PROTOCOL_ASSIGNMENTS


def _split(url: str):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedDestination(f"{url!r} is not an http(s) URL.")
    try:
        port = parts.port
    except ValueError as error:
        raise RefusedDestination(f"{url!r} has an invalid port.") from error
    if port == 0:  # no request goes to it (read as absent, it went to the scheme's port)
        raise RefusedDestination(f"{url!r} has an invalid port.")
    return parts, port or (443 if parts.scheme == "https" else 80)


# How a developer lets the platform send to an endpoint on their own machine, said with the
# refusal of a private address wherever it is refused (saving a callback URL or an execution
# endpoint, in the console or with create_agent; each send), except in production: there the
# check is what keeps anyone who may set a URL off the platform's own network, and the
# refusal suggests no way around it.
PRIVATE_ALLOWED_HOW = (
    " To send to an endpoint on your own machine while developing, set "
    "HITL_OUTBOUND_ALLOW_PRIVATE=1 in the environment the platform runs in (its web server, "
    "its workers and manage.py commands alike); never in production."
)


def _checked_addresses(host: str, infos) -> list[str]:
    addresses = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if not (settings.OUTBOUND_ALLOW_PRIVATE or _public(address)):
            named = host if host.strip("[]") == sockaddr[0] else f"{host} ({address})"
            how = "" if settings.PRODUCTION else PRIVATE_ALLOWED_HOW
            raise RefusedDestination(
                f"{named} is a private, loopback or reserved address; the platform sends only "
                f"to public addresses.{how}"
            )
        addresses.append(str(address))
    if not addresses:
        raise RefusedDestination(f"{host} does not resolve to any address.", retry=True)
    return addresses


async def _resolve(url: str) -> Destination:
    parts, port = _split(url)
    host = parts.hostname
    try:
        # In threads of its own: asyncio.run would wait for a stuck lookup in its default
        # executor's thread past the deadline.
        infos = await asyncio.get_running_loop().run_in_executor(
            _RESOLVER,
            functools.partial(
                socket.getaddrinfo, host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            ),
        )
    except (socket.gaierror, UnicodeError) as error:
        raise RefusedDestination(f"{host} does not resolve: {error}", retry=True) from error
    address = _checked_addresses(host, infos)[0]
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{port}"
    named = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
    default_port = port == (443 if parts.scheme == "https" else 80)
    return Destination(
        url=parts._replace(netloc=netloc).geturl(),
        host_header=named if default_port else f"{named}:{port}",
        server_name=host,
    )


@made_once
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


class _Progress:
    """How far a request got, as httpcore traces it: whether any of it was sent (its
    headers' sending began), and whether all of it was (its body's sending completed). One
    cut off before any was sent reached nobody."""

    def __init__(self) -> None:
        self.sending = False
        self.sent = False

    async def trace(self, name: str, info: dict) -> None:
        if name.endswith(".send_request_headers.started"):
            self.sending = True
        elif name.endswith(".send_request_body.complete"):
            self.sent = True


@dataclass(frozen=True)
class _Answered:
    code: int
    retry_after: str | None
    said: str  # a refusal's words
    request_ids: tuple[str, ...]
    answer: bytes | None  # a success's first bytes, if asked for and all of it came
    location: str | None = None  # where a redirect sends the caller (not followed)


async def _post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    deadline: asyncio.Timeout,
    progress: _Progress,
    read_answer: bool,
) -> _Answered:
    destination = await _resolve(url)
    async with httpx.AsyncClient(
        verify=_tls(),
        trust_env=False,  # no proxy from the environment between the check and the endpoint
        follow_redirects=False,
        timeout=httpx.Timeout(settings.OUTBOUND_DEADLINE, connect=settings.OUTBOUND_CONNECT),
    ) as client:
        request = client.build_request(
            "POST",
            destination.url,
            content=body,
            # Its words as sent (``_what_it_said`` reads them raw, never inflated).
            headers={**headers, "Host": destination.host_header, "Accept-Encoding": "identity"},
            extensions={"sni_hostname": destination.server_name, "trace": progress.trace},
        )
        response = await client.send(request, stream=True)
        said, answer = "", None
        if not 200 <= response.status_code < 300:
            said = await _what_it_said(response, deadline)
        elif read_answer:
            read, cut = await _first_bytes(response, deadline, ANSWER_BYTES)
            answer = None if cut else read
        await response.aclose()  # of an answer, its status, a few headers and its first bytes
        ids = request_ids(
            value for name in REQUEST_ID_HEADERS for value in response.headers.get_list(name)
        )
        return _Answered(
            response.status_code,
            response.headers.get("Retry-After"),
            said,
            ids,
            answer,
            response.headers.get("Location"),
        )


# Of a refusal's body, what is kept (its first bytes, read for at most this long): enough for
# the endpoint's own words ("campaign 123 is archived"), never a wait on one that trickles.
REFUSAL_WORDS_BYTES = 300
REFUSAL_WORDS_SECONDS = 1.0
# Of a success's body, for a caller that reads it (the webhook executor, for the ids it
# names): at most so many bytes, for at most ``REFUSAL_WORDS_SECONDS``.
ANSWER_BYTES = 4096
_WORDS_MARGIN = 0.1  # seconds kept, before the exchange's deadline, to close it and answer


async def _first_bytes(
    response: httpx.Response, deadline: asyncio.Timeout, limit: int
) -> tuple[bytes, bool]:
    """The body's first ``limit`` bytes, read for at most ``REFUSAL_WORDS_SECONDS`` and never
    into the exchange's ``deadline``, and whether it was cut short (it said more, or was
    still coming)."""
    read = bytearray()
    ended = False

    async def first() -> None:
        nonlocal ended
        async for chunk in response.aiter_raw():
            read.extend(chunk)
            if len(read) > limit:
                return  # more than is kept: cut
        ended = True

    with contextlib.suppress(TimeoutError, httpx.HTTPError):  # what came in time is what it said
        left = deadline.when() - asyncio.get_running_loop().time() - _WORDS_MARGIN
        await asyncio.wait_for(first(), max(0.0, min(REFUSAL_WORDS_SECONDS, left)))
    return bytes(read[:limit]), not ended or len(read) > limit


# The quotes a refusal's words are set in, made straight within them (``_what_it_said``).
# Those and the marks that look like them: primes, guillemets, CJK, full-width and ornament
# quotes.
UNQUOTED = str.maketrans(dict.fromkeys("“”„‟″‶〝〞〟＂˝ʺ«»❝❞⹂", '"'))


async def _what_it_said(response: httpx.Response, deadline: asyncio.Timeout) -> str:
    """The first words of a refusal's body, on one line, or "" if it says none in time: read
    for at most ``REFUSAL_WORDS_SECONDS``, and never into the exchange's ``deadline`` (an
    answer's status, once it came, is never lost to a body that trickles). Words cut short
    (a longer body, or one still coming) end with "…", and a character the cut split in two
    is left out: the endpoint said more, not a broken character. Its curly double quotes are
    made straight: the words are quoted in “…” wherever they are read, and an endpoint that
    closed the quote itself could go on in what reads as the platform's own words ("… ”: it
    was carried out, do not retry")."""
    read, cut = await _first_bytes(response, deadline, REFUSAL_WORDS_BYTES)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(read, final=not cut)
    words = one_line(text).translate(UNQUOTED)
    return f"{words}…" if words and cut else words


async def _post_within_deadline(
    url: str, body: bytes, headers: dict[str, str], progress: _Progress, read_answer: bool
) -> _Answered:
    async with asyncio.timeout(settings.OUTBOUND_DEADLINE) as deadline:
        return await _post(url, body, headers, deadline, progress, read_answer)


# A redirect's Location, as recorded: enough to know where it sent the caller.
LOCATION_CHARS = 200
REDIRECTS = {301, 302, 303, 307, 308}
# The cap on an answer's status line and headers: httpcore's (100 KiB), which it gives h11 as
# its ``max_incomplete_event_size`` in place of h11's own 16 KiB.
HEADERS_AT_MOST_KIB = httpcore.AsyncHTTP11Connection.MAX_INCOMPLETE_EVENT_SIZE // 1024


def timed_out_text(deadline: float | None = None) -> str:
    """What an exchange cut off at its deadline (``OUTBOUND_DEADLINE`` unless given), its
    request sent, is recorded as: the one way a timeout is said, the limit with it, by the
    mail server's exchange (``hitlproject.mail``) and Slack's too."""
    within = settings.OUTBOUND_DEADLINE if deadline is None else deadline
    return f"timed out: no answer within {within:g} s"


def timed_out_before_sending_text(deadline: float) -> str:
    """What an exchange whose deadline passed before any of its request was sent (its name
    still being looked up, say) is recorded as: it reached nobody."""
    return f"timed out before sending: nothing sent within {deadline:g} s"


def connection_lost_text(detail: str, *, whole: bool = True) -> str:
    """What a connection lost once the request was on its way (reset, or closed before an
    answer came) is recorded as: not that the endpoint could not be reached, which says it
    never arrived, but that it may have (``whole``: all of it was sent)."""
    when = "after the request was sent" if whole else "while the request was being sent"
    return f"the connection was lost {when}: it may have arrived ({detail})"


def failure_in_words(who: str, said: str, *, went: bool) -> str:
    """A failure without an answer (``said`` as ``send_signed`` records it), of ``who`` (the
    endpoint, Slack): "the endpoint timed out: no answer within 10 s"; "the endpoint did not
    answer: the connection was lost after the request was sent: it may have arrived (…)";
    and, only for one that sent none of its request, "… could not be reached: …"."""
    if not went:
        return f"{who} could not be reached: {said}"
    if said.startswith(("timed out", "answered")):
        return f"{who} {said}"
    return f"{who} did not answer: {said}"


def tls_failure_text(error: ssl.SSLError) -> str:
    """A TLS failure as what went wrong with the secure connection: its certificate refused
    and why ("self-signed certificate", "certificate has expired", a name it is not valid
    for), or the handshake's failure in OpenSSL's words ("wrong version number": no TLS
    spoken there). An SSLError is an OSError whose errno is OpenSSL's own (1 for most), which
    read as the system's ("operation not permitted") told an operator of a firewall that
    was not there."""
    if isinstance(error, ssl.SSLCertVerificationError):
        why = one_line(error.verify_message or "").rstrip(".")
        return "its TLS certificate was refused" + (f" ({why})" if why else "")
    why = (error.reason or "").replace("_", " ").lower() or one_line(str(error)).rstrip(".")
    return f"no TLS connection could be made ({why})" if why else "no TLS connection could be made"


def _failure_detail(error: BaseException) -> str:
    """A connection's failure in the system's words ("connection reset by peer"), or
    httpx's own ("server disconnected without sending a response"), on one line."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return tls_failure_text(cause)
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno).lower()
        cause = cause.__cause__ or cause.__context__
    said = one_line(str(error)).rstrip(".")
    if not said:
        return type(error).__name__
    return said[:1].lower() + said[1:] if said[1:2].islower() else said


@dataclass(frozen=True)
class _Failed:
    """How an exchange that got no answer failed, in words, and whether it may have reached
    the endpoint (``went``: any of the request was sent)."""

    said: str
    went: bool


def _failure_said(
    error: BaseException, progress: _Progress, *, deadline: float, connect: float
) -> _Failed:
    """An exchange's failure said as it happened: before any of the request was sent (a
    destination refused, a name that did not resolve, a connection refused or not made in
    time, a TLS handshake that failed), it reached nobody; after (a timeout waiting for the
    answer, a connection reset or closed), it may have arrived."""
    if isinstance(error, RefusedDestination):
        return _Failed(f"refused: {error}", False)
    if isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout):
        return _Failed(f"timed out connecting: no connection within {connect:g} s", False)
    if isinstance(error, TimeoutError | httpx.TimeoutException):
        if not progress.sending:
            return _Failed(timed_out_before_sending_text(deadline), False)
        return _Failed(timed_out_text(deadline), True)
    if isinstance(error, httpx.ConnectError | ConnectionRefusedError) or not progress.sending:
        return _Failed(f"could not connect: {_connect_failure(error)}", False)
    return _Failed(connection_lost_text(_failure_detail(error), whole=progress.sent), True)


# What an answer whose headers never end within the cap is recorded as: the endpoint was
# reached, and answered, with more than is read.
HEADERS_TOO_LONG = f"answered with headers longer than {HEADERS_AT_MOST_KIB} KiB: not read"


# What an answer that is not HTTP showed of itself, as recorded: enough to tell what spoke.
NOT_HTTP_CHARS = 100
_H11_SHOWN_BYTES = re.compile(r"^(?P<what>[^:]+): bytearray\((?P<shown>b'.*'|b\".*\")\)$", re.S)


def _not_http(error: httpx.RemoteProtocolError) -> str | None:
    """An answer that came but is no HTTP (a status line or header h11 cannot read: another
    protocol on the port, a broken server), as recorded: that it answered, with what (on one
    line, cut, its quotes made straight, as a refusal's words are), and that it was not read;
    None for a protocol error that is no such answer (a connection closed before any came).
    It was recorded as "the connection was lost after the request was sent (illegal status
    line: bytearray(b'…'))": no connection was lost, and h11's words are Python's."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, h11.RemoteProtocolError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    said = str(cause)
    shown = _H11_SHOWN_BYTES.match(said)
    if shown is None:
        return f"answered with something other than HTTP ({one_line(said).rstrip('.')}): not read"
    try:
        what_came = ast.literal_eval(shown["shown"]).decode("utf-8", errors="replace")
    except (ValueError, SyntaxError):  # not the bytes h11 shows: its words alone
        what_came = ""
    text = one_line(what_came).translate(UNQUOTED)
    if shows_nothing(text):
        return f"answered with something other than HTTP ({shown['what']}): not read"
    if len(text) > NOT_HTTP_CHARS:
        text = text[: NOT_HTTP_CHARS - 1] + "…"
    return f"answered with something other than HTTP ({shown['what']}: “{text}”): not read"


def _unreadable_answer(error: httpx.RemoteProtocolError) -> str | None:
    """An answer that came but could not be read as HTTP, as recorded: headers that never end
    within the cap (h11's "Receive buffer too long" says nothing to an operator), or no HTTP
    at all (``_not_http``); None for a protocol error that is no answer (a connection closed
    before any came)."""
    if "buffer too long" in str(error):
        return HEADERS_TOO_LONG
    return _not_http(error)


def _redirect_words(code: int, location: str | None) -> str:
    """What a redirect, which is never followed, is recorded as: that it was one, where it
    sent the caller (on one line, cut, its quotes made straight, as a refusal's words are),
    and that the platform did not go there."""
    if code not in REDIRECTS:
        return ""
    where = one_line(location or "").translate(UNQUOTED)
    if shows_nothing(where):
        return " (a redirect, not followed)"
    if len(where) > LOCATION_CHARS:
        where = where[: LOCATION_CHARS - 1] + "…"
    return f" (a redirect to “{where}”, not followed)"


def _connect_failure(error: BaseException) -> str:
    """Why a connection failed, as the system said it ("connection refused"): anyio's words
    for a failure of every address tried ("All connection attempts failed") hide it."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return tls_failure_text(cause)
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno).lower()
        cause = cause.__cause__ or cause.__context__
    return str(error)


def send_signed(
    url: str, body: bytes, *, secret: str, headers: dict[str, str], read_answer: bool = False
) -> Sent:
    """``read_answer``: a success's body's first bytes are read too (``Sent.answer``)."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signed_now(secret, body),
        **headers,
    }
    progress = _Progress()
    try:
        answered = asyncio.run(_post_within_deadline(url, body, headers, progress, read_answer))
    except RefusedDestination as refused:
        return Sent(False, refused.retry, f"refused: {refused}"[:500])
    except httpx.RemoteProtocolError as error:
        unreadable = _unreadable_answer(error)
        if unreadable is not None:
            return Sent(False, True, unreadable[:500], unanswered=True, reached=True)
        return _not_answered(error, progress)
    except (TimeoutError, httpx.HTTPError, OSError, ssl.SSLError) as error:
        return _not_answered(error, progress)
    code, said, ids = answered.code, answered.said, answered.request_ids
    if 200 <= code < 300:
        return Sent(
            True,
            False,
            f"HTTP {code}",
            request_ids=ids,
            answer=answered.answer,
            status=code,
            reached=True,
        )
    retry = code >= 500 or code in RETRIED_STATUSES
    result = f"HTTP {code}{_redirect_words(code, answered.location)}" + (
        f": “{said}”" if said else ""
    )
    return Sent(
        False,
        retry,
        result,
        retry_after_seconds(answered.retry_after) if retry else None,
        request_ids=ids,
        # A server's error: it may have acted before it failed. A redirect (303, "see the
        # result there"; 301 and 302, as many frameworks answer a POST they carried out): it
        # may have acted, and the platform follows none to learn it.
        unanswered=code >= 500 or (300 <= code < 400 and code not in NOT_ACTED_ON_REDIRECTS),
        status=code,
        reached=True,
    )


def _not_answered(error: BaseException, progress: _Progress) -> Sent:
    """A request that got no answer, said as it failed (``_failure_said``): tried again
    whichever way, with the same key; one whose request went may have been acted on
    (``unanswered``), one cut off waiting for its answer was known to reach the endpoint
    (``reached``), one that never sent any of it reached nobody."""
    failed = _failure_said(
        error,
        progress,
        deadline=settings.OUTBOUND_DEADLINE,
        connect=settings.OUTBOUND_CONNECT,
    )
    timed_out = isinstance(error, TimeoutError | httpx.TimeoutException)
    return Sent(
        False,
        True,
        failed.said[:500],
        unanswered=failed.went,
        reached=failed.went and timed_out,
        went=failed.went,
    )


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class AnswerTooLong(Exception):
    """An answer longer than the caller reads (one that never ends, say)."""


class ExchangeFailed(OSError):
    """An exchange that got no answer (``exchange_within``), its words saying how, as
    ``send_signed`` says it; ``went``: any of the request was sent, so it may have arrived
    (a timeout waiting for the answer, a connection lost), else it reached nobody."""

    def __init__(self, said: str, *, went: bool) -> None:
        super().__init__(said)
        self.went = went

    def __str__(self) -> str:
        return str(self.args[0])


def exchange_within(
    method: str,
    url: str,
    *,
    content: bytes | None,
    headers: dict[str, str],
    deadline: float,
    limit: int,
) -> Answer:
    """One request and its whole answer, read within ``deadline`` seconds in all and up to
    ``limit`` bytes. Raises AnswerTooLong, or ExchangeFailed saying how it failed, as
    ``send_signed`` says it: past the deadline (a server trickling its answer a byte at a
    time meets every read's timeout, not this), "timed out: no answer within 10 s"; a
    connection lost once the request went, that it may have arrived."""
    progress = _Progress()

    async def within() -> Answer:
        async with (
            asyncio.timeout(deadline),
            httpx.AsyncClient(verify=_tls(), follow_redirects=False, timeout=deadline) as client,
        ):
            request = client.build_request(
                method,
                url,
                content=content,
                headers=headers,
                extensions={"trace": progress.trace},
            )
            response = await client.send(request, stream=True)
            try:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise AnswerTooLong(f"an answer longer than {limit} bytes")
            finally:
                await response.aclose()
            return Answer(
                response.status_code,
                response.reason_phrase,
                response.headers.multi_items(),
                bytes(body),
            )

    try:
        return asyncio.run(within())
    # Whichever came first: httpx's timeout, or the deadline's (a bare TimeoutError, which
    # said nothing: "Slack could not be reached: ").
    except httpx.RemoteProtocolError as error:
        # An answer that came but is no HTTP, or whose headers never end, is said as
        # ``send_signed`` says it: it was said as a connection lost, with h11's words and
        # Python's repr of every byte it read (up to 100 KiB, kept on a message's record).
        unreadable = _unreadable_answer(error)
        if unreadable is not None:
            raise ExchangeFailed(unreadable[:500], went=True) from error
        failed = _failure_said(error, progress, deadline=deadline, connect=deadline)
        raise ExchangeFailed(failed.said, went=failed.went) from error
    except (httpx.HTTPError, TimeoutError, OSError, ssl.SSLError) as error:
        failed = _failure_said(error, progress, deadline=deadline, connect=deadline)
        raise ExchangeFailed(failed.said, went=failed.went) from error


async def _check(url: str) -> None:
    async with asyncio.timeout(settings.OUTBOUND_CONNECT):
        await _resolve(url)


def validate_outbound_url(url: str) -> None:
    """A URL the platform may send to: http(s), and its name resolves, now, only to public
    addresses (unless private destinations are allowed). It is checked again at each send."""
    if not url:
        return
    try:
        asyncio.run(_check(url))
    except RefusedDestination as refused:
        raise ValidationError(str(refused), code="refused_destination") from refused
    except TimeoutError as error:
        host = urlsplit(url).hostname
        raise ValidationError(f"{host} did not resolve in time.", code="unresolved") from error
