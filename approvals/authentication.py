"""Bearer API keys for agents, and the per-agent request rate limit."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.throttling import SimpleRateThrottle

from approvals.models import Agent
from approvals.services.agents import agent_authenticate


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
        return agent_authenticate(raw_key)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="agent-api"'


class IsAgent(BasePermission):
    message = "An agent API key is required: Authorization: Bearer <api key>."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, Agent)


class AgentRateThrottle(SimpleRateThrottle):
    scope = "agent"

    def get_cache_key(self, request, view):
        if not isinstance(request.user, Agent):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class AgentAPIKeyScheme(OpenApiAuthenticationExtension):
    target_class = AgentAPIKeyAuthentication
    name = "agentApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An agent's API key, as printed once by create_agent or seed_demo.",
        }
