"""Who did it: every write in the platform is made by an actor, and history records it.

Services take ``actor=`` explicitly and run their writes inside ``acting_as(actor)``, which is
how django-simple-history (which records from ``save()`` signals) learns who acted, in the
admin, the API and Celery tasks alike.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


class Agent(Protocol):
    """What an actor needs of an agent (``approvals.models.Agent``, an app above audit)."""

    pk: int
    name: str


ActorKind = Literal["user", "agent", "system"]


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    name: str
    user: AbstractBaseUser | None = None
    agent: Agent | None = None

    @classmethod
    def for_user(cls, user: AbstractBaseUser) -> Actor:
        return cls(kind="user", name=user.get_username(), user=user)

    @classmethod
    def for_agent(cls, agent: Agent) -> Actor:
        return cls(kind="agent", name=agent.name, agent=agent)

    @classmethod
    def system(cls, process: str) -> Actor:
        return cls(kind="system", name=process)

    def history_stamp(self) -> dict[str, str | int | None]:
        """The columns that name this actor on a historical record."""
        return {
            "history_actor_kind": self.kind,
            "history_actor": self.name,
            "history_agent_id": self.agent.pk if self.agent is not None else None,
        }

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"

    def __str__(self) -> str:
        return self.label


# The parts of the platform that act on their own, as a history page names them.
SYSTEM_PARTS = {
    "executor": "the executor",
    "expiry": "the expiry sweep",
    "deadlines": "the deadline sweep",
    "notifications": "the notifications",
    "callbacks": "the callbacks to agents",
    "policy-engine": "the policy engine",
    "autonomy": "the autonomy review",
    "seed_demo": "the seed_demo command",
    "create_agent": "the create_agent command",
    "createsuperuser": "the createsuperuser command",
    "changepassword": "the changepassword command",
    "migration": "an upgrade of the platform",
    "setup": "the platform's set-up",
    "unattributed": "an unnamed part of the platform",
}


def describe_actor(kind: str, name: str) -> str:
    """Who acted, in words, from what a historical record stamps: "operator (person)",
    "optimizer (agent)", "the executor (system)"."""
    if kind == "user":
        return f"{name} (person)"
    if kind == "agent":
        return f"{name} (agent)"
    return f"{SYSTEM_PARTS.get(name, f'the {name}')} (system)"


def changed_by(record) -> str:
    """Who made a historical record's change, in words: "the executor (system)"."""
    return describe_actor(record.history_actor_kind, record.history_actor)


_current_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar(
    "hitl_current_actor", default=None
)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    token = _current_actor.set(actor)
    try:
        yield actor
    finally:
        _current_actor.reset(token)


def current_actor() -> Actor | None:
    return _current_actor.get()
