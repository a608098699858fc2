"""Bearer API keys for agents, and the per-agent request rate limit."""

import time

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

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
            raise AuthenticationFailed("Malformed API key.") from error
        try:
            return agent_authenticate(raw_key)
        except NotAuthenticated as error:
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
    count, _, period = api_settings.DEFAULT_THROTTLE_RATES["agent"].partition("/")
    return int(count), {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]


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
