"""A kill switch that sent a proposal to a person, moved since onto its channel (still over
it), is the same switch: the proposal's page said it twice, once as moved ("… Moved to
channel Google Ads since, engaged there.") and again, falsely, under "Engaged since it was
routed" ("The kill switch on channel Google Ads is engaged …"), and the queue's Guardrail
column said it twice too. A switch is known by what it is (its number), not by its name
now: it is said once, as moved; a switch engaged over it since it was routed is still
said so, even where one of its scope routed it."""

import html
import re

from django.test import Client
from django.urls import reverse

from approvals.models import ProposalStatus
from ledger.models import Account
from policies.models import KillSwitch
from tests.conftest import bid_adjustment
from tests.factories import evaluated

OUTAGE = "Tracking outage."


def on_demo(reason: str) -> KillSwitch:
    return KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=reason
    )


def to_google_ads(switch: KillSwitch) -> None:
    switch.scope, switch.account, switch.channel = "channel", None, "google_ads"
    switch.save()


def page_of(client: Client, proposal) -> str:
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert page.status_code == 200
    return html.unescape(page.content.decode())


def text_of(page: str) -> str:
    page = re.sub(r"<style.*?</style>", " ", page, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def queue_row(client: Client, proposal) -> str:
    page = client.get(reverse("admin:approvals_proposal_changelist"))
    assert page.status_code == 200
    return html.unescape(page.content.decode().split(f'value="{proposal.pk}"')[1].split("</tr>")[0])


def test_a_switch_moved_onto_the_proposals_channel_is_said_once_as_moved(login):
    """#1 and #2 engaged on account demo; #2's finding sends a bid to a person; #2 moved to
    channel Google Ads (demo is on it). The page said #2 moved, then "Engaged since it was
    routed, over its account or channel: The kill switch on channel Google Ads is engaged"."""
    first = on_demo("Budget audit.")
    second = on_demo(OUTAGE)
    proposal = evaluated(bid_adjustment("2.12"))  # a policy would run it: the switches hold it
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    to_google_ads(second)
    operator = login("operator")

    page = page_of(operator, proposal)
    said = text_of(page)

    assert (
        f"The kill switch on account demo (#{second.pk}) was engaged when it was routed: "
        f"{OUTAGE} Moved to channel Google Ads since, engaged there."
    ) in said, said
    assert "Engaged since it was routed" not in said, said
    assert 'id="kill-switch-engaged-since"' not in page
    assert "The kill switch on channel Google Ads" not in said, said
    assert f"The kill switch on account demo (#{first.pk}) is engaged: Budget audit." in said
    row = queue_row(operator, proposal)
    assert "Engaged since it was routed" not in row, row
    assert "The kill switch on channel Google Ads" not in row, row


def test_a_switch_alone_on_the_account_moved_onto_its_channel_is_said_once(login):
    switch = on_demo(OUTAGE)
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    to_google_ads(switch)
    operator = login("operator")

    said = text_of(page_of(operator, proposal))

    assert (
        f"The kill switch on account demo was engaged when it was routed: {OUTAGE} Moved to "
        "channel Google Ads since, engaged there."
    ) in said, said
    assert "Engaged since it was routed" not in said, said
    assert "Engaged since it was routed" not in queue_row(operator, proposal)


def test_a_second_switch_engaged_on_the_scope_of_the_one_that_routed_it_is_engaged_since(login):
    """Routed by the one switch on account demo (its finding names it by scope alone), then a
    second engaged there: the second was taken for the first, both "the kill switch on
    account demo", and the page did not say one was engaged since it was routed."""
    first = on_demo(OUTAGE)
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    second = on_demo("Budget freeze.")
    operator = login("operator")

    page = page_of(operator, proposal)
    since = page.split('id="kill-switch-engaged-since"')[1].split("</ul>")[0]

    assert re.findall(r"<li>(.*?)</li>", since) == [
        f"The kill switch on account demo (#{second.pk}) is engaged: Budget freeze."
    ]
    assert first.pk != second.pk
    assert (
        f"The kill switch on account demo (#{second.pk}) is engaged: Budget freeze. Engaged "
        "since it was routed; a person's approval still lets it run."
    ) in queue_row(operator, proposal)
