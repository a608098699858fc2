"""Bearer API keys for agents, the per-agent request rate limit, and the limit on failed
authentications per client address."""

import hashlib
import ipaddress
import time

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.permissions import BasePermission
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from access.addresses import client_ip_address
from approvals.models import Agent
from approvals.services.agents import agent_authenticate
from hitlproject.errors import NotAuthenticated
from hitlproject.windows import window_hit


class AgentAPIKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Send the API key as: Authorization: Bearer <api key>.")
        try:
            raw_key = parts[1].decode("ascii")
        except UnicodeDecodeError as error:
            authentication_failure_count(request)
            raise AuthenticationFailed("Malformed API key.") from error
        try:
            return agent_authenticate(raw_key)
        except NotAuthenticated as error:
            authentication_failure_count(request)
            raise AuthenticationFailed(error.message) from error

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="agent-api"'


class IsAgent(BasePermission):
    message = "An agent API key is required: Authorization: Bearer <api key>."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, Agent)


class AgentRateThrottle(BaseThrottle):
    """Requests per agent, counted in fixed windows shared by every web process
    (hitlproject.windows: one Redis round trip a request in production).

    DRF's SimpleRateThrottle instead re-writes a list of every request's timestamp on each
    request, which grows with the rate and loses counts when processes race.
    """

    def __init__(self) -> None:
        self.limit, self.period = agent_rate()
        self.retry_after: float | None = None

    def allow_request(self, request, view) -> bool:
        if not isinstance(request.user, Agent):
            return True
        hit = window_hit(name=agent_window(request.user), period=self.period, now=time.time())
        self.retry_after = hit.seconds_left
        return hit.count <= self.limit

    def wait(self) -> float | None:
        return self.retry_after


def agent_rate() -> tuple[int, int]:
    """The agents' rate limit: so many requests a period of so many seconds."""
    return _rate("agent")


def _rate(name: str) -> tuple[int, int]:
    count, _, period = api_settings.DEFAULT_THROTTLE_RATES[name].partition("/")
    return int(count), {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]


def authentication_failure_count(request) -> None:
    """Count a key refused (malformed, unknown, revoked, its agent deactivated) against the
    address it came from; past ``HITL_API_AUTH_FAILURE_RATE`` in a window, refuse it 429 with
    Retry-After instead of 401.

    Only refused keys are counted and only they are refused: a valid key is checked and let
    through whatever its address has sent, so an agent behind the same NAT or proxy as one
    sending a wrong key (or guessing) is never locked out. Keys are too long to guess; the
    limit tells a client looping on a wrong or revoked key, or guessing, to back off. It saves
    no lookup: a key is looked up before its address's count is read, so that a valid one is
    never refused. A request without any key is not counted: it asks nothing of the
    database."""
    limit, period = _rate("auth_failures")
    window = failures_window(client_ip_address(request))
    hit = window_hit(name=window, period=period, now=time.time())
    if hit.count > limit:
        seconds = max(1, int(hit.seconds_left + 0.999))
        refusal = Throttled(
            detail=(
                f"Too many requests with a malformed, unknown or revoked API key from this "
                f"address (more than {limit} in {period} seconds); nothing was done. Check "
                f"the key, and send again in {seconds} seconds."
            ),
            code="authentication_throttled",
        )
        refusal.wait = seconds  # Retry-After; given to Throttled, DRF adds its own sentence
        raise refusal


# Failed authentications are counted per address in this many shares: with Redis a share's
# count expires with its window, and on the embedded default it is a small file kept for
# good, so an address's count must not be a file of its own (a client with an IPv6 /64 has
# more addresses than any disk has room for files). Addresses sharing a share only share
# the limit on their refused keys.
ADDRESS_SHARES = 4096


def failures_window(address: str | None) -> str:
    """The counter of failed authentications from ``address`` (an IPv6 one by its /64, the
    least a host is given)."""
    address = address or ""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        grouped = address
    else:
        if parsed.version == 6 and parsed.ipv4_mapped:
            parsed = parsed.ipv4_mapped
        prefix = 64 if parsed.version == 6 else 32
        grouped = str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False))
    share = int.from_bytes(hashlib.sha256(grouped.encode()).digest()[:4]) % ADDRESS_SHARES
    return f"auth-failures-{share}"


def agent_window(agent: Agent) -> str:
    return f"agent-{agent.pk}"


class AgentAPIKeyScheme(OpenApiAuthenticationExtension):
    target_class = AgentAPIKeyAuthentication
    name = "agentApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An agent's API key, as printed once by create_agent or seed_demo.",
        }
