"""An action type the platform's code no longer has (a plugin removed, a type renamed) that
stored proposals and policies still name. Whatever reads a stored name reads it through
``action_types.named``, which gives this stand-in for such a name: every page, list, message,
export and report reads it as it reads any type, and it says plainly that the type is gone.
It refuses what only the type's own code could do (check, assess, apply or edit a payload),
in the words its page says, so that nobody approves, edits or retries it and its execution
fails, writing nothing; it can be rejected or withdrawn, by an operator.
"""

from __future__ import annotations

from typing import Any

from django.utils.text import capfirst

from approvals.action_types.base import ActionType, Assessment
from hitlproject.errors import InvalidInput
from hitlproject.vocabulary import action_type_label


def no_such_type_any_more(name: str) -> str:
    """That no action type is called ``name`` any more, as a sentence's clause: "there is no
    action type “retired type” any more"."""
    return f"there is no action type “{action_type_label(name)}” any more"


class GoneActionType(ActionType):
    """A stand-in for the action type ``name``, which the platform no longer knows.

    Its magnitude reads as a share, as the console reads the ceilings of a policy for a type
    it no longer knows. It is decided by an operator, as any agent's action is by default: it
    can no longer run whoever decides it, so deciding it only ends it, and the operators are
    the ones whose queue it waits in (a permission no role holds would leave it there, with
    nobody who reads it able to end it)."""

    risk_weight = 0
    agents_may_propose = False
    executes_on_channel = False  # no channel executor is sent what the platform cannot read
    sets_values = False  # it changes nothing: nothing it was made against is held for it
    editable_fields = frozenset()
    edit_form = None
    example_missing = "has nothing for it: the action type is no longer known"

    def __init__(self, name: str) -> None:
        self.name = name
        self.label = action_type_label(name)

    @property
    def listed_as(self) -> str:
        return f"{self.name} (no longer known)"

    def refusal(self) -> InvalidInput:
        return InvalidInput(f"{capfirst(no_such_type_any_more(self.name))}.")

    def validate_payload(self, raw_payload: Any) -> dict[str, Any]:
        raise self.refusal()

    def campaign_fields(self, payload):
        return {}

    def example_payload(self, account, magnitude):
        return None

    def check(self, payload, campaigns) -> None:
        raise self.refusal()

    def assess(self, payload, campaigns, account) -> Assessment:
        raise self.refusal()

    def no_longer_applies(self, payload, account) -> str:
        return no_such_type_any_more(self.name)

    def proposed_state(self, payload, campaigns):
        return {}

    def apply(self, payload, campaigns, proposal) -> None:
        raise self.refusal()
