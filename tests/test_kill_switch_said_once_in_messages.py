"""A proposal's email, Slack message and digest line, and the queue's mark, say once, below
its reasons, that no kill switch covers it now, as its page does ("No kill switch covers it
now: those above have been released since."): they said it at the end of each line naming
a released switch, twice for a bid two switches on its account sent to a person. A switch
that held it back before it ran and is released since reads so in them, as on its page: it
read "is engaged"."""

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from approvals.models import ProposalStatus
from ledger.models import Account
from notifications.channels import EmailChannel
from notifications.messages import proposal_messages
from notifications.models import NotificationKind
from notifications.slack import message_blocks
from policies.models import KillSwitch
from tests.conftest import bid_adjustment
from tests.factories import evaluated
from tests.slack_fake import shown_text
from tests.test_kill_switch_names import held_back_by_a_second_switch_both_released

NONE_COVERS = "No kill switch covers it now: those above have been released since."


def on_demo(reason: str) -> KillSwitch:
    return KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=reason
    )


def released(switch: KillSwitch) -> None:
    switch.engaged = False
    switch.save()


def email_and_slack(proposal, mailoutbox) -> tuple[str, str, str]:
    """What the reminder of ``proposal`` says why it waits: in its email (text and HTML, as
    words) and in its Slack message; and its digest line."""
    message = proposal_messages([(proposal, NotificationKind.REMINDER)], now=timezone.now())[0]
    operator = get_user_model().objects.get(username="operator")
    EmailChannel().send(recipient=operator, message=message, may_decide=True)
    [email] = mailoutbox
    body = " ".join(email.body.split())
    why = body.split("Why it waits: ")[1].split(" Decide on its page")[0]
    [(alternative, _)] = email.alternatives
    words = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", alternative)).split())
    assert words.lower().count("no kill switch covers it now") == 1, words
    slack = shown_text(message_blocks(message, may_decide=True))
    slack_why = slack.split("Why it waits\n")[1].split("\n\n")[0]
    return why, slack_why, message.reasons_brief


@pytest.mark.django_db
def test_a_bid_two_released_switches_sent_to_a_person_is_told_once_none_covers_it(
    demo_world, mailoutbox
):
    """Two switches engaged on account demo send a 6% bid to a person; both are released. Its
    reminder said "Released since: no kill switch covers it now." after each switch."""
    first, second = on_demo("First outage."), on_demo("Second outage.")
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    released(first)
    released(second)

    why, slack, brief = email_and_slack(proposal, mailoutbox)

    first_was = (
        f"The kill switch on account demo (#{first.pk}) was engaged when it was routed: First "
        "outage. Released since."
    )
    second_was = (
        f"The kill switch on account demo (#{second.pk}) was engaged when it was routed: "
        "Second outage. Released since."
    )
    assert why.endswith(f"- {first_was} - {second_was} - {NONE_COVERS}"), why
    assert slack.endswith(f"• {first_was}\n• {second_was}\n• {NONE_COVERS}"), slack
    assert brief.endswith(f"{first_was} {second_was} {NONE_COVERS}"), brief
    for said in (why, slack, brief):
        assert said.lower().count("no kill switch covers it now") == 1, said


@pytest.mark.django_db
def test_a_bid_held_back_by_a_switch_released_since_is_told_so_once(demo_world, mailoutbox):
    """One switch sends a 6% bid to a person; it is approved, the switch released, a second
    switch holds it back before it runs, and is released too. Its reminder said the second
    "is engaged", the first "Released since: no kill switch covers it now."; its page says
    both released, and once that none covers it now. So does its reminder."""
    proposal = held_back_by_a_second_switch_both_released()

    why, slack, brief = email_and_slack(proposal, mailoutbox)

    held = (
        "Held back before executing: the kill switch on account demo was engaged then: Second "
        "outage. Released since. A person must approve it again."
    )
    routed = (
        "The kill switch on account demo was engaged when it was routed: First outage. "
        "Released since."
    )
    assert why.startswith(f"- {held} - "), why
    assert f"- {routed} - {NONE_COVERS}" in why, why
    assert slack.startswith(f"• {held}\n") and f"• {routed}\n• {NONE_COVERS}" in slack, slack
    assert "is engaged" not in why + slack + brief
    for said in (why, slack, brief):
        assert said.lower().count("no kill switch covers it now") == 1, said


def test_the_queue_says_once_that_no_kill_switch_covers_it_now(login):
    """The queue's mark of a bid two released switches sent to a person ("kill switch
    released"): what it quotes on hover said "no kill switch covers it now" after each."""
    first, second = on_demo("First outage."), on_demo("Second outage.")
    proposal = evaluated(bid_adjustment("2.12"))
    released(first)
    released(second)

    listed = login("operator").get(reverse("admin:approvals_proposal_changelist")).text
    row = html.unescape(listed.split(f'value="{proposal.pk}"')[1].split("</tr>")[0])
    title = row.split('class="guardrail-released" title="')[1].split('">')[0]

    assert title.split("\n") == [
        f"The kill switch on account demo (#{first.pk}) was engaged when it was routed: First "
        "outage. Released since.",
        f"The kill switch on account demo (#{second.pk}) was engaged when it was routed: "
        "Second outage. Released since.",
        NONE_COVERS,
    ], title
