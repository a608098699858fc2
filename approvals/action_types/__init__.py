"""The action-type registry: ``get(name)`` returns the type, ``names()`` lists them, and
``named(name)`` reads a name stored with a proposal or a policy."""

from approvals.action_types.base import ActionType, Assessment
from approvals.action_types.gone import GoneActionType, no_such_type_any_more
from hitlproject.vocabulary import action_type_label

_REGISTRY: dict[str, ActionType] = {}


def register(cls: type[ActionType]) -> type[ActionType]:
    if cls.name in _REGISTRY:
        raise ValueError(f"Action type {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def get(name: str) -> ActionType | None:
    """The type registered as ``name``, or None: for a name given now (by an agent, a
    person, a form), which must be one the platform knows."""
    return _REGISTRY.get(name)


def named(name: str) -> ActionType:
    """The type a stored proposal or policy names: the registered one, or, where the
    platform no longer has it (a plugin removed, a type renamed since), a stand-in that says
    so and refuses to be approved, edited or executed (``GoneActionType``)."""
    found = _REGISTRY.get(name)
    return found if found is not None else GoneActionType(name)


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
    "named",
    "names",
    "no_such_type_any_more",
    "register",
    "unknown_text",
]
