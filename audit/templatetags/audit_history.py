from django import template

from audit.actors import describe_actor
from audit.chain import REWRITTEN, REWRITTEN_GONE

register = template.Library()


@register.filter
def changed_by(record) -> str:
    """Who made a historical record's change, in words: "the executor (system)"."""
    return describe_actor(record.history_actor_kind, record.history_actor)


@register.simple_tag
def chain_mark(chain_break, record) -> str:
    """What the last verification found befell this historical record, if anything."""
    return chain_break.marked.get(record.pk, "") if chain_break else ""


@register.filter
def chain_unvouched(what: str) -> bool:
    """Whether a record's mark says its link was rewritten: the chain vouches for nothing
    there, neither that the row was altered nor that it is as it was."""
    return what.startswith((REWRITTEN, REWRITTEN_GONE))
