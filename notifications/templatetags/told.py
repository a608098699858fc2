from django import template

from notifications.kill_switches import switch_recipients
from notifications.selectors import ToldNobody, switch_told_said, told_nobody_counts

register = template.Library()


@register.simple_tag
def told_nobody_now() -> ToldNobody:
    """The dashboard's waiting proposals and failed executions that reached nobody, as the
    proposal list's "Who was told: Nobody" lists them (``told_nobody``)."""
    return told_nobody_counts()


@register.simple_tag
def told_of_switch(engaged) -> str:
    """Who was told that an engaged kill switch (``policies.services.EngagedKillSwitch``) was
    engaged, as the dashboard says it beside it (``switch_told_said``), naming whom the routes
    meeting it name where nobody was told (``switch_recipients``). Moved there while engaged,
    those told since it was moved (its messages to what it covered before, not sent once it
    no longer covered it, are not about what it covers now)."""
    since = engaged.moved.at if engaged.moved else engaged.since
    named = {
        user.pk: user.get_username()
        for _, users in switch_recipients(engaged.switch)
        for user in users
    }
    return switch_told_said(
        engaged.switch.pk,
        since=since,
        named=sorted(named.values()),
        moved=engaged.moved is not None,
    )
