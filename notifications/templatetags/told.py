from django import template

from notifications.selectors import ToldNobody, told_nobody_counts

register = template.Library()


@register.simple_tag
def told_nobody_now() -> ToldNobody:
    """The dashboard's waiting proposals and failed executions that reached nobody, as the
    proposal list's "Who was told: Nobody" lists them (``told_nobody``)."""
    return told_nobody_counts()
