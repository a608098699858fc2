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


label = action_type_label  # an action type as a person reads it (hitlproject.vocabulary)


from approvals.action_types import campaign_changes, creatives, policy_changes  # noqa: E402, F401

__all__ = ["ActionType", "Assessment", "get", "label", "names", "register"]
