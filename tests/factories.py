"""Building proposals in a given state through the same services the platform uses."""

from approvals.models import Agent, Proposal
from approvals.services.proposals import Submission, proposal_evaluate, proposal_submit
from tests.conftest import reallocation


def submitted(body: dict | None = None, agent: str = "optimizer") -> Proposal:
    body = body or reallocation()
    return proposal_submit(agent=Agent.objects.get(name=agent), submission=Submission(**body))


def evaluated(body: dict | None = None, agent: str = "optimizer") -> Proposal:
    """A proposal the policy engine has routed (a 28% reallocation waits for review)."""
    return proposal_evaluate(proposal_id=submitted(body, agent).pk)
