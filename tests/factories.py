"""Building proposals in a given state through the same services the platform uses."""

from approvals.models import Agent, Proposal
from approvals.services.proposals import Submission, proposal_evaluate, proposal_submit
from policies.models import CountedMove
from tests.conftest import reallocation


def submitted(body: dict | None = None, agent: str = "optimizer") -> Proposal:
    body = body or reallocation()
    return proposal_submit(agent=Agent.objects.get(name=agent), submission=Submission(**body))


def evaluated(body: dict | None = None, agent: str = "optimizer") -> Proposal:
    """A proposal the policy engine has routed (a 28% reallocation waits for review)."""
    return proposal_evaluate(proposal_id=submitted(body, agent).pk)


def backdated(proposal: Proposal, *, created_at, decided_at=None) -> None:
    """Move a proposal, and its history (which the what-if simulation replays), back in
    time: made at ``created_at``, decided (if it was) at ``decided_at``."""
    Proposal.objects.filter(pk=proposal.pk).update(
        created_at=created_at,
        evaluated_at=created_at,
        decided_at=decided_at if proposal.decided_at or decided_at else None,
        approved_at=decided_at if proposal.approved_at else None,
    )
    history = Proposal.history.filter(id=proposal.pk)
    history.update(created_at=created_at)
    history.filter(decided_at=None).update(history_date=created_at)
    history.exclude(evaluated_at=None).update(evaluated_at=created_at)
    if decided_at is not None:
        history.exclude(decided_at=None).update(history_date=decided_at, decided_at=decided_at)
        history.exclude(approved_at=None).update(approved_at=decided_at)
        CountedMove.objects.filter(proposal_id=proposal.pk).update(approved_at=decided_at)
