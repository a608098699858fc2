"""The action-type registry: ``get(name)`` returns the type, ``names()`` lists them."""

from approvals.action_types.base import ActionType, Assessment
from hitlproject.vocabulary import action_type_label

_REGISTRY: dict[str, ActionType] = {}


def register(cls: type[ActionType]) -> type[ActionType]:
    if cls.name in _REGISTRY:
        raise ValueError(f"Action type {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def get(name: str) -> ActionType | None:
    return _REGISTRY.get(name)


def names() -> list[str]:
    return sorted(_REGISTRY)


def agent_names() -> list[str]:
    """The types an agent may propose (not a policy change: the platform proposes those)."""
    return [name for name in names() if _REGISTRY[name].agents_may_propose]


def unknown_text(name: str) -> str:
    """An action type no agent may propose, said as the API refuses it."""
    return f"Unknown action type “{name}”. Known types: {', '.join(agent_names())}."


label = action_type_label  # an action type as a person reads it (hitlproject.vocabulary)


from approvals.action_types import campaign_changes, creatives, policy_changes  # noqa: E402, F401

__all__ = [
    "ActionType",
    "Assessment",
    "agent_names",
    "get",
    "label",
    "names",
    "register",
    "unknown_text",
]
