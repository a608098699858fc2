"""An auditor reading a kill switch's history sees the proposals it sent to a person while
it was engaged: routed to a person as they were made, or held back as they were about to run.
Their own pages named the switch; the switch's page named none of them."""

import html
import re
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from executors.runner import proposal_execute
from ledger.models import Account, Campaign
from policies.models import KillSwitch
from tests.conftest import BID_RAISES, bid_adjustment, reallocation
from tests.factories import evaluated


def switch_on(account: str, reason: str) -> KillSwitch:
    return KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id=account), reason=reason
    )


def history_page(client, switch: KillSwitch) -> str:
    url = reverse("admin:policies_killswitch_history", args=[switch.pk])
    return html.unescape(client.get(url).content.decode())


def said(page: str, element: str) -> str:
    return re.sub(r"\s+", " ", page.split(f'id="{element}">')[1].split("</p>")[0]).strip()


def test_a_switchs_history_names_the_proposals_it_sent_to_a_person(login):
    operator = get_user_model().objects.get(username="operator")
    approved_before = evaluated(bid_adjustment("2.12"))  # 6%: approved to run, not yet run
    assert approved_before.status == ProposalStatus.APPROVED
    waiting_before = evaluated(bid_adjustment(BID_RAISES["generic-search"], "generic-search"))
    switch = switch_on("demo", "Tracking outage.")
    routed = evaluated(bid_adjustment("0.84", "display-retarget"))  # 5%: would run unseen
    assert routed.status == ProposalStatus.PENDING_REVIEW
    held = proposal_execute(proposal_id=approved_before.pk)
    assert held.status == ProposalStatus.PENDING_REVIEW
    proposal_approve(proposal_id=waiting_before.pk, reviewer=operator)  # decided meanwhile
    switch.engaged = False
    switch.save()
    after = evaluated(bid_adjustment("0.82", "display-retarget"))
    assert after.status == ProposalStatus.APPROVED  # released: ran unseen, not its doing

    auditor = login("auditor")
    page = history_page(auditor, switch)
    assert said(page, "kill-switch-sent-count").startswith(
        "While engaged, it sent 2 proposals to a person: 1 routed to a person as it was made "
        "or re-assessed and 1 held back as it was about to run, to be approved again."
    )
    rows = re.findall(
        r"<tr><td[^>]*>[^<]*</td>\s*<td[^>]*><a href=\"[^\"]*\">#(\d+)</a></td>\s*"
        r"<td[^>]*>([^<]*)</td></tr>",
        page.split('id="kill-switch-sent-list"')[1].split("</table>")[0],
    )
    assert rows == [  # held back as it was engaged, before the other was made
        (str(held.pk), "Held it back before executing: a person had to approve it again"),
        (str(routed.pk), "Routed it to a person"),
    ]
    link = html.unescape(
        re.search(r'<a href="([^"]+)">See them in the proposal list</a>', page).group(1)
    )
    listed = auditor.get(link)
    assert listed.status_code == 200
    shown = {proposal.pk for proposal in listed.context["cl"].result_list}
    assert shown == {routed.pk, held.pk}
    unknown = auditor.get(link.replace(f"kill_switch={switch.pk}", "kill_switch=999"))
    assert unknown.status_code == 400  # refused, not every proposal shown as if filtered
    assert "there is no kill switch #999." in html.unescape(unknown.content.decode())


def test_a_switch_over_another_account_or_engaged_later_claims_none_of_them(login):
    """Two switches, one after the other over the same account, and one over an account the
    proposals are not on: each names what it did, and only that."""
    first = switch_on("demo", "First outage.")
    by_first = evaluated(bid_adjustment("2.12"))
    first.engaged = False
    first.save()
    second = switch_on("demo", "Second outage.")
    by_second = evaluated(bid_adjustment("0.84", "display-retarget"))
    elsewhere = KillSwitch.objects.create(scope="channel", channel="meta", reason="Meta down.")

    auditor = login("auditor")
    for switch, proposal in ((first, by_first), (second, by_second)):
        page = history_page(auditor, switch)
        assert said(page, "kill-switch-sent-count").startswith(
            "While engaged, it sent 1 proposal to a person: 1 routed to a person as it was made"
        )
        assert f">#{proposal.pk}</a>" in page
    assert said(history_page(auditor, elsewhere), "kill-switch-sent-count") == (
        "It sent no proposal to a person: none was routed or held back by it while it was engaged."
    )


def test_a_switchs_history_reads_its_proposals_in_as_many_queries_however_many(login):
    """One query a proposal had read the record before each one it routed: 2,153 queries
    (2 s) for a switch over everything that sent 2,139 proposals to a person."""
    switch = KillSwitch.objects.create(scope="global", reason="Outage.")
    auditor = login("auditor")
    url = reverse("admin:policies_killswitch_history", args=[switch.pk])
    listed = reverse("admin:approvals_proposal_changelist") + f"?status=all&kill_switch={switch.pk}"
    auditor.get(url)  # what a first page reads once (the session's user, content types)
    counts = []
    for bids in (("0.84",), ("0.83", "0.82", "0.81", "0.79")):
        for bid in bids:
            evaluated(bid_adjustment(bid, "display-retarget"))
        with CaptureQueriesContext(connection) as page:
            assert auditor.get(url).status_code == 200
        with CaptureQueriesContext(connection) as filtered:
            assert auditor.get(listed).status_code == 200
        counts.append((len(page), len(filtered)))
    assert said(history_page(auditor, switch), "kill-switch-sent-count").startswith(
        "While engaged, it sent 5 proposals to a person"
    )
    assert counts[0] == counts[1]


def test_a_proposal_another_rule_held_too_is_said_to_have_gone_to_a_person_anyway(login):
    """A bid over the auto-execute ceiling, made while the switch was engaged, carries the
    switch's finding among its reasons; the page said the switch "sent" it to a person as it
    said of a 5% bid the switch alone held, when the ceiling would have sent it all the
    same."""
    switch = switch_on("demo", "Tracking outage.")
    campaign, bid = next(iter(BID_RAISES.items()))
    over = evaluated(bid_adjustment(bid, campaign))  # over the 15% ceiling: a person decides
    alone = evaluated(bid_adjustment("0.84", "display-retarget"))  # 5%: the switch alone
    assert {over.status, alone.status} == {ProposalStatus.PENDING_REVIEW}

    page = history_page(login("auditor"), switch)

    assert said(page, "kill-switch-sent-count").startswith(
        "While engaged, it sent 2 proposals to a person: 2 routed to a person as they were made "
        "or re-assessed; another rule held 1 of them too, which would have sent it to a person "
        "without the switch."
    )
    listed = page.split('id="kill-switch-sent-list"')[1]
    assert (
        f'>#{over.pk}</a></td>\n        <td data-label="What the switch did">Routed it to a '
        "person, as the auto-execute ceiling did too</td>"
    ) in listed
    assert (
        f'>#{alone.pk}</a></td>\n        <td data-label="What the switch did">Routed it to a '
        "person</td>"
    ) in listed


def brand_search_budget(amount: str) -> None:
    campaign = Campaign.objects.get(external_id="brand-search")
    campaign.daily_budget = Decimal(amount)
    campaign.save()


def let_past_rows(history: str) -> list[tuple[str, str]]:
    """The rows of a switch's "Proposals a person let run past it": (proposal id, what the
    person did)."""
    return re.findall(
        r"<a href=\"[^\"]*\">#(\d+)</a></td>\s*<td[^>]*>([^<]*)</td>",
        history.split('id="kill-switch-let-past-list"')[1].split("</table>")[0],
    )


def test_a_retry_past_an_engaged_switch_is_said_before_and_counted_on_its_history(login):
    """With the switch over everything engaged, a failed proposal's page offered "Retry
    execution" and said nothing of the switch; the retry ran (a person's retry is their
    approval), and the switch's history said "It sent no proposal to a person", naming none
    of it. Now the page says so before the retry, and the history counts what ran past it."""
    operator = get_user_model().objects.get(username="operator")
    failed = evaluated(reallocation("400.00"))
    proposal_approve(proposal_id=failed.pk, reviewer=operator)
    brand_search_budget("350.00")
    assert proposal_execute(proposal_id=failed.pk).status == ProposalStatus.FAILED
    brand_search_budget("1000.00")  # the cause mended: a retry would run
    switch = KillSwitch.objects.create(scope="global", reason="Incident 42.")
    client = login("operator")
    url = reverse("admin:approvals_proposal_change", args=[failed.pk])

    page = html.unescape(client.get(url).content.decode())

    assert 'id="retry-form"' in page
    assert said(page, "retry-past-kill-switch") == (
        "The kill switch on everything is engaged: Incident 42. Retrying runs it anyway: "
        "a person's retry is their approval, which lets it past the switch."
    )
    client.post(reverse("admin:approvals_proposal_retry", args=[failed.pk]))
    assert proposal_execute(proposal_id=failed.pk).status == ProposalStatus.EXECUTED

    history = history_page(login("auditor"), switch)
    assert said(history, "kill-switch-sent-count") == (
        "It sent no proposal to a person: none was routed or held back by it while it was engaged."
    )
    assert said(history, "kill-switch-let-past-count") == (
        "While engaged, it let 1 proposal run past it: a person approved each, or sent it to "
        "run again, while it was engaged, which lets it run as their approval."
    )
    assert let_past_rows(history) == [
        (
            str(failed.pk),
            "Sent to run again by operator while it was engaged: let run as their approval",
        )
    ]
    # A retry recorded before it was said so ("execution retried by operator") reads the same.
    assert (
        Proposal.history.filter(
            id=failed.pk, history_change_reason="sent to run again by operator"
        ).update(history_change_reason="execution retried by operator")
        == 1
    )
    assert let_past_rows(history_page(login("auditor"), switch)) == let_past_rows(history)
    # Released, a failed proposal's retry says nothing of a switch.
    switch.engaged = False
    switch.save()
    other = evaluated(reallocation("450.00"))
    proposal_approve(proposal_id=other.pk, reviewer=operator)
    brand_search_budget("300.00")
    assert proposal_execute(proposal_id=other.pk).status == ProposalStatus.FAILED
    brand_search_budget("1000.00")
    page = client.get(reverse("admin:approvals_proposal_change", args=[other.pk])).text
    assert 'id="retry-form"' in page and 'id="retry-past-kill-switch"' not in page
