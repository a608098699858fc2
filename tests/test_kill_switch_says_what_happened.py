"""What a kill switch's messages say is what happened: the console's answer to its save does
not say "to approve again before it runs" of a proposal held after an attempt that may have
carried it out; a switch is named with its number wherever two on one scope would read
alike; a proposal's messages say a switch moved away was moved, not released; a move's
email says what it sent since it was moved, or that it sent nothing."""

import html
import re

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import strip_tags

from approvals.admin import EVERY_STATUS
from approvals.models import ProposalStatus
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from hitlproject.errors import DomainError
from ledger.models import Account
from notifications.messages import proposal_messages
from notifications.models import NotificationKind
from policies.models import KillSwitch
from tests.conftest import bid_adjustment
from tests.factories import evaluated
from tests.test_kill_switch_holds_execution import OUTAGE, engaged_in_the_console
from tests.test_kill_switch_told import deliver_due

AFTER_UNSURE = "after an attempt sent to the channel got no sure answer"


def as_read(messages) -> list[str]:
    return [" ".join(html.unescape(strip_tags(str(message))).split()) for message in messages]


def page_text(page) -> str:
    assert page.status_code == 200
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.content.decode())).split())


def test_the_save_counts_apart_those_held_after_an_unsure_attempt(channel, login):
    """One bid between two attempts (attempt 1 answered 503: it may have run) and one
    approved and queued: the save said of both "to approve again before it runs"."""
    channel(503, 200)
    between = evaluated(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=between.pk).status == ProposalStatus.EXECUTING
    ExecutionRound.objects.filter(proposal=between).update(lease_until=timezone.now())
    queued = evaluated(bid_adjustment("0.84", campaign="display-retarget"))
    assert queued.status == ProposalStatus.APPROVED

    said = as_read(engaged_in_the_console(login("policy-owner")))

    assert any(
        message.startswith(
            "Kill switch on account demo held back 2 approved proposals (1 not yet carried "
            f"out, 1 {AFTER_UNSURE}): each is back with a person, to approve again: the 1 not "
            "yet carried out before it runs, the 1 held after such an attempt before its next "
            "attempt, as it may have been carried out there."
        )
        for message in said
    ), said
    assert not any("before it runs." in message for message in said), said


def test_two_switches_on_one_scope_are_named_apart_in_the_console_and_its_refusal(login):
    """Two engaged on account demo read alike as "Kill switch on account demo (engaged)" in
    the console's list of switches and a proposals list's filter by switch, and the refusal
    to delete either said "The kill switch on account demo is engaged", while their messages
    and findings already named each with its number."""
    demo = Account.objects.get(external_id="demo")
    first = KillSwitch.objects.create(scope="account", account=demo, reason=OUTAGE)
    second = KillSwitch.objects.create(scope="account", account=demo, reason="Budget audit.")
    other = KillSwitch.objects.create(scope="channel", channel="google_ads", reason=OUTAGE)

    assert [str(switch) for switch in (first, second, other)] == [
        f"Kill switch on account demo (#{first.pk}) (engaged)",
        f"Kill switch on account demo (#{second.pk}) (engaged)",
        "Kill switch on channel Google Ads (engaged)",  # alone on its scope: no number
    ]
    owner = login("policy-owner")
    listed = page_text(owner.get(reverse("admin:policies_killswitch_changelist")))
    for switch in (first, second, other):
        assert str(switch) in listed, listed
    filtered = page_text(
        owner.get(
            reverse("admin:approvals_proposal_changelist"),
            {"status": EVERY_STATUS, "kill_switch": first.pk},
        )
    )
    assert f"Kill switch on account demo (#{first.pk}) (engaged)" in filtered
    with pytest.raises(DomainError) as refused:
        second.delete()
    assert str(refused.value) == (
        f"The kill switch on account demo (#{second.pk}) is engaged: release it first."
    )
    # Once the other is released, the one left engaged is the only one: named by its scope.
    first.engaged = False
    first.save()
    second.refresh_from_db()
    assert str(second) == "Kill switch on account demo (engaged)"


def test_a_proposals_message_says_a_switch_moved_off_it_was_moved_not_released(demo_world):
    """A bid a switch on account demo sent to a person; the switch, still engaged, moved to
    account acme: a reminder of the bid said "Released since: no kill switch covers it now",
    while its page said the switch was moved there."""
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=OUTAGE
    )
    proposal = evaluated(bid_adjustment("2.06"))
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    switch.account = Account.objects.create(external_id="acme", name="Acme", channel="meta")
    switch.save()

    [message] = proposal_messages([(proposal, NotificationKind.REMINDER)], now=timezone.now())

    assert message.reasons == [
        f"The kill switch on account demo was engaged when it was routed: {OUTAGE} Moved to "
        "account acme since, engaged there.",
        "No kill switch covers it now: the one above has been moved to account acme since.",
    ]


def test_a_move_email_with_nothing_sent_since_the_move_says_since_the_move(demo_world, mailoutbox):
    """Engaged on everything, it sent a bid to a person; moved to account demo, it sent
    nothing more. The email telling the operators it was moved there said "it has held
    nothing back: … none has been made since", as if it had never held anything, and gave no
    link to what it had sent before the move."""
    switch = KillSwitch.objects.create(scope="global", reason=OUTAGE)
    before = evaluated(bid_adjustment("2.12"))
    assert before.status == ProposalStatus.PENDING_REVIEW
    switch.scope, switch.account = "account", Account.objects.get(external_id="demo")
    switch.save()
    deliver_due(switch)

    [email] = [
        m for m in mailoutbox if m.to == ["operator@example.com"] and "moved to" in m.subject
    ]
    said = " ".join(email.body.split())
    assert (
        "it has held nothing back since it was moved to account demo: no approved proposal it "
        "covers there was waiting to be carried out then, and none has been made since."
    ) in said, said
    assert (
        "The 1 proposal it has sent to a person, before it was moved to account demo"
    ) in said, said


def test_a_second_switch_engaged_on_one_scope_is_named_apart_in_the_messages_of_its_save(
    login,
):
    """Engaging a second switch on account demo, the messages after its save read "Kill
    switch on account demo (#2) holds nothing back: …" and then "Kill switch on account demo
    engaged: …", the latter as if it were the first, now "(#1)" in the list beside it."""
    first = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="Budget audit."
    )

    said = engaged_in_the_console(login("policy-owner"))

    second = KillSwitch.objects.exclude(pk=first.pk).get()
    assert said[-1] == f"Kill switch on account demo (#{second.pk}) engaged: {OUTAGE}", said
    assert all("account demo (#" in message for message in said), said


def test_two_switches_on_one_channel_or_on_everything_are_named_apart_in_the_console_list(login):
    """Two engaged on channel Google Ads, or two on everything, have no account: the console's
    list compared their accounts as SQL does (NULL equals nothing), so it named each by its
    scope alone, "Kill switch on channel Google Ads (engaged)" twice, while its own page, its
    messages and findings named each with its number."""
    switches = [
        KillSwitch.objects.create(scope="channel", channel="google_ads", reason=OUTAGE),
        KillSwitch.objects.create(scope="channel", channel="google_ads", reason="Audit."),
        KillSwitch.objects.create(scope="global", reason=OUTAGE),
        KillSwitch.objects.create(scope="global", reason="Audit."),
    ]

    listed = page_text(login("policy-owner").get(reverse("admin:policies_killswitch_changelist")))

    for switch in switches:
        assert f"(#{switch.pk}) (engaged)" in str(switch)
        assert str(switch) in listed, listed
