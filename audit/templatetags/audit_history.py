import contextlib
import re

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from audit.actors import changed_by
from audit.admin import said_as_recorded
from audit.chain import REWRITTEN, REWRITTEN_GONE

register = template.Library()


register.filter("changed_by", changed_by)
# Each row's object as it read at that record's own time (a callback event's "waiting to be
# tried again at …"), not at the time the page is read.
register.filter("said_as_recorded", said_as_recorded)


@register.simple_tag
def chain_mark(chain_break, record) -> str:
    """What the last verification found befell this historical record, if anything."""
    return chain_break.marked.get(record.pk, "") if chain_break else ""


@register.filter
def chain_unvouched(what: str) -> bool:
    """Whether a record's mark says its link was rewritten: the chain vouches for nothing
    there, neither that the row was altered nor that it is as it was."""
    return what.startswith((REWRITTEN, REWRITTEN_GONE))


PROPOSAL_NAMED = re.compile(r"\bproposal #(\d{1,18})\b")


@register.filter
def reason_linked(reason) -> str:
    """A change reason with each proposal it names ("proposal #8: bid of brand-search …", a
    campaign's change by an execution) linked to that proposal's page, where its whole story
    is: the rest of it as text, escaped."""
    text = "" if reason is None else str(reason)
    parts, last = [], 0
    for match in PROPOSAL_NAMED.finditer(text):
        url = None
        with contextlib.suppress(NoReverseMatch):
            url = reverse("admin:approvals_proposal_change", args=[int(match.group(1))])
        if url is None:
            continue
        parts.append(escape(text[last : match.start()]))
        parts.append(format_html('<a href="{}">{}</a>', url, match.group(0)))
        last = match.end()
    parts.append(escape(text[last:]))
    return mark_safe("".join(parts))
