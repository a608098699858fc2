"""A kill switch is named as people read it: by what it covers ("Kill switch on account
demo"), with its number where another shares that scope ("account demo (#7)"). Its history
names it, row by row, as things stood when each row was written (it read every row as
things stand now: "account demo (#7)" of a row written when it was alone there); two
released switches on one account read apart in the list, the filter and the delete page;
and a proposal's page says once that no kill switch covers it now, not in every line."""

import html
import re

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from executors.runner import proposal_execute
from ledger.models import Account
from notifications.kill_switches import switch_message
from notifications.models import Notification, NotificationKind
from policies.models import KillSwitch
from tests.conftest import bid_adjustment
from tests.factories import evaluated


def on_demo(reason: str = "Tracking outage.") -> KillSwitch:
    return KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=reason
    )


def released(switch: KillSwitch) -> KillSwitch:
    switch.engaged = False
    switch.save()
    return switch


def read(response) -> str:
    assert response.status_code == 200
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


def history_rows(client: Client, switch: KillSwitch) -> list[str]:
    """Each row's name of the switch on its history page, newest first."""
    page = client.get(reverse("admin:policies_killswitch_history", args=[switch.pk]))
    assert page.status_code == 200
    table = page.content.decode().split('id="change-history"')[1].split("</table>")[0]
    cells = re.findall(r'data-label="Object">(.*?)</td>', table, re.S)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split()) for cell in cells]


def test_a_switchs_history_names_it_in_each_row_as_things_stood_when_it_was_written(login):
    """Engaged alone on account demo, joined there by a second switch, moved to channel
    Google Ads and released; a third switch engaged on that channel later. Each row read
    the switch as things stand now: its first "account demo (#1)", its last two "channel
    Google Ads (#1)", though it was alone where it was when they were written."""
    switch = on_demo("First outage.")
    second = on_demo("Second outage.")
    switch.reason = "First outage, widened."
    switch.save()
    switch.scope, switch.account, switch.channel = "channel", None, "google_ads"
    switch.save()
    released(switch)
    KillSwitch.objects.create(scope="channel", channel="google_ads", reason="Google Ads down.")
    auditor = login("auditor")

    assert history_rows(auditor, switch) == [
        "Kill switch on channel Google Ads (released)",
        "Kill switch on channel Google Ads (engaged)",
        f"Kill switch on account demo (#{switch.pk}) (engaged)",
        "Kill switch on account demo (engaged)",
    ]
    first = switch.history.earliest("history_id")
    version = auditor.get(
        reverse("admin:policies_killswitch_simple_history", args=[switch.pk, first.history_id])
    )
    assert "View Kill switch on account demo (engaged)" in read(version)
    # As things stand, it is told apart from the switch engaged on its channel now.
    assert f"Kill switch on channel Google Ads (#{switch.pk}) (released)" in read(
        auditor.get(reverse("admin:policies_killswitch_changelist"))
    )
    assert history_rows(auditor, second) == [
        f"Kill switch on account demo (#{second.pk}) (engaged)"
    ]


def test_a_switchs_history_and_list_are_read_in_as_many_statements_however_long(login):
    """Each history row asked the database whether another switch shared its scope, and a
    version engaged read the proposals' history twice more: 21 statements for a switch of 2
    records, 81 for one of 22."""
    switch = KillSwitch.objects.create(scope="global", reason="Outage.")
    auditor = login("auditor")
    history = reverse("admin:policies_killswitch_history", args=[switch.pk])
    listed = reverse("admin:policies_killswitch_changelist")
    auditor.get(history)  # what a first page reads once (the session's user, content types)
    counts = []
    for more in (1, 20):
        for number in range(more):
            switch.reason = f"Outage, update {number}."
            switch.save()
            released(on_demo())
        with CaptureQueriesContext(connection) as page:
            assert auditor.get(history).status_code == 200
        with CaptureQueriesContext(connection) as changelist:
            assert auditor.get(listed).status_code == 200
        counts.append((len(page), len(changelist)))
    assert switch.history.count() == 22 and KillSwitch.objects.count() == 22
    assert counts[0] == counts[1], counts


def superuser() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("admin", "", "x-Pass-9876"))
    return client


def test_two_released_switches_on_one_account_read_apart_where_a_person_picks_one(login):
    """Both read "Kill switch on account demo (released)" in the list, in the proposal
    list's filter and on the page deleting one: which one was it? Each reads with its
    number. An engaged switch there keeps its name as its findings recorded it."""
    get_user_model().objects.update(email="")  # nobody told: a released switch may go
    first = released(on_demo("First outage."))
    second = released(on_demo("Second outage."))
    owner = login("policy-owner")

    listed = read(owner.get(reverse("admin:policies_killswitch_changelist")))
    assert f"Kill switch on account demo (#{first.pk}) (released)" in listed
    assert f"Kill switch on account demo (#{second.pk}) (released)" in listed
    assert "Kill switch on account demo (released)" not in listed

    filtered = read(
        owner.get(
            reverse("admin:approvals_proposal_changelist") + f"?status=all&kill_switch={first.pk}"
        )
    )
    assert f"Kill switch on account demo (#{first.pk}) (released)" in filtered

    deleting = read(superuser().get(reverse("admin:policies_killswitch_delete", args=[second.pk])))
    assert f"Kill switch on account demo (#{second.pk}) (released)" in deleting
    assert "Kill switch on account demo (released)" not in deleting

    engaged = on_demo("Third outage.")
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal.verdict_reasons[0] == (
        "The kill switch on account demo is engaged: Third outage."
    )
    assert f"Kill switch on account demo (#{engaged.pk})" not in read(
        owner.get(reverse("admin:policies_killswitch_changelist"))
    )


def test_a_released_switchs_message_names_it_apart_from_the_other_released_there(demo_world):
    first = released(on_demo("First outage."))
    second = released(on_demo("Second outage."))

    message = switch_message(
        Notification(kill_switch=second, kind=NotificationKind.SWITCH_RELEASED, about="")
    )

    assert message.headline == f"Kill switch released on account demo (#{second.pk})"
    assert f"The kill switch on account demo (#{second.pk}) was released by" in " ".join(
        message.paragraphs
    )
    assert first.pk != second.pk


def held_back_by_a_second_switch_both_released() -> Proposal:
    """A 6% bid one switch on demo sent to a person, approved, the switch released; a second
    held it back before it ran, and was released too."""
    first = on_demo("First outage.")
    proposal = evaluated(bid_adjustment("2.12"))  # 6%: the switch sends it to a person
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    operator = get_user_model().objects.get(username="operator")
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    released(first)
    second = on_demo("Second outage.")
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.PENDING_REVIEW
    released(second)
    proposal.refresh_from_db()
    return proposal


def test_a_held_proposals_page_says_once_that_no_kill_switch_covers_it_now(login):
    """Routed to a person by one switch, approved, held back before it ran by a second and
    both released: its page said "no kill switch covers it now" three times, in each line
    naming a switch and below them. Each line says what became of its switch; the line
    below them says once that none covers it now."""
    proposal = held_back_by_a_second_switch_both_released()

    page = read(
        login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    )
    why = page.split("Why it is here:")[1].split("What optimizer says")[0].strip()

    assert why == (
        "Held back before executing: the kill switch on account demo was engaged then: Second "
        "outage. Released since. A person must approve it again. "
        "The kill switch on account demo was engaged when it was routed: First outage. "
        "Released since. "
        "No kill switch covers it now: those above have been released since. It still waits "
        "for a person's decision."
    ), why
    assert page.lower().count("no kill switch covers it now") == 1


def test_the_list_of_what_a_moved_switch_sent_names_what_it_covered_then(login):
    """Engaged on account demo, it sent a bid to a person, then was moved to channel Meta.
    The list of what it sent named it "Kill switch on channel Meta (engaged)" alone, above a
    bid whose findings read "The kill switch on account demo is engaged": a person looking
    for what account demo's switch sent could not tell it was this one. It names both."""
    switch = on_demo()
    bid = evaluated(bid_adjustment("2.08"))
    assert bid.status == ProposalStatus.PENDING_REVIEW
    switch.scope, switch.account, switch.channel = "channel", None, "meta"
    switch.save()
    operator = login("operator")

    for parameter in ("kill_switch", "held_by_kill_switch"):
        page = operator.get(reverse("admin:approvals_proposal_changelist"), {parameter: switch.pk})
        assert "Kill switch on channel Meta (engaged), on account demo before" in read(page)
    listed = operator.get(
        reverse("admin:approvals_proposal_changelist"), {"kill_switch": switch.pk}
    )
    assert [proposal.pk for proposal in listed.context["cl"].result_list] == [bid.pk]
