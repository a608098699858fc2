"""A kill switch raises the risk of what it sends to a person into the guardrails' band
(91-100), and the queue reads riskiest first. Released, a +3.8% bid it had sent to a person
kept its 92 and sat first, above a +20% budget change at 55, while its own mark read "kill
switch released": a person triaging by risk was shown a risk whose only reason was gone.
Released (or moved off it), the switch's save re-assesses each waiting proposal whose risk it
raised to the risk the engine gives it without the switch, and its history says why; it still
waits for a person."""

import html
import re
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from approvals.simulation import simulate
from ledger.models import Account
from notifications.models import Notification, Route
from policies.models import KillSwitch, Policy
from tests.conftest import (
    bid_adjustment,
    creative,
    creative_batch,
    decided_from_page,
    posted_from_page,
)
from tests.factories import evaluated

CHANGELIST = reverse("admin:approvals_proposal_changelist")
OUTAGE = "Tracking outage."
STILL_WAITS = "It still waits for a person's decision."


def budget_change(campaign: str, new: str) -> dict:
    return bid_adjustment(action_type="budget_change") | {
        "payload": {"campaign": campaign, "new_daily_budget": new}
    }


def text_of(page) -> str:
    assert page.status_code == 200
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.content.decode())).split())


def queue_read(operator) -> list[tuple[int, int]]:
    """The queue as an operator reads it, row by row: each row's proposal and its risk."""
    page = operator.get(CHANGELIST)
    assert page.status_code == 200
    rows = page.content.decode().split("<tbody>", 1)[1].split("</tbody>", 1)[0].split("<tr")
    read = []
    for row in rows[1:]:
        number = re.search(r"/proposal/(\d+)/change/", row)[1]
        risk = re.search(r'class="field-risk">(\d+)<', row)[1]
        read.append((int(number), int(risk)))
    assert [pk for pk, _ in read] == [proposal.pk for proposal in page.context["cl"].result_list]
    return read


def demo() -> Account:
    return Account.objects.get(external_id="demo")


def released_in_the_console(owner, switch: KillSwitch) -> None:
    url = reverse("admin:policies_killswitch_change", args=[switch.pk])
    form = {
        "scope": switch.scope,
        "account": switch.account_id or "",
        "channel": switch.channel,
        "engaged": "",
        "reason": switch.reason,
        "change_reason": "Tracking is back.",
    }
    assert posted_from_page(owner, url, form, follow=True).status_code == 200
    switch.refresh_from_db()
    assert not switch.engaged


def test_a_released_switch_no_longer_puts_its_bid_first_in_the_queue(login):
    """The browser walk: a switch on everything sends a +4% bid (a policy would run it) to a
    person at 92; a +20% budget change waits at 55. Released in the console, the bid read 92
    and first; now it reads the risk a bid of its size has, below the budget change, and its
    history says why."""
    budget = evaluated(budget_change("generic-search", "600.00"))  # +20%
    assert (budget.status, budget.risk) == (ProposalStatus.PENDING_REVIEW, 55)
    switch = KillSwitch.objects.create(scope="global", reason=OUTAGE)
    bid = evaluated(bid_adjustment("2.08"))
    assert (bid.status, bid.risk) == (ProposalStatus.PENDING_REVIEW, 92)
    operator = login("operator")
    assert queue_read(operator) == [(bid.pk, 92), (budget.pk, 55)]

    released_in_the_console(login("policy-owner"), switch)

    bid.refresh_from_db()
    assert bid.status == ProposalStatus.PENDING_REVIEW  # still a person's to decide
    # The risk a bid of its size has: weight 10, +4% against its policy's 15% ceiling 4, an
    # agent with too few decisions for a record 5.
    assert bid.risk == 19
    assert queue_read(operator) == [(budget.pk, 55), (bid.pk, 19)]

    record = bid.history.latest("history_id")
    assert record.history_change_reason == (
        "Risk 92 → 19: the kill switch on everything, which raised it, was released; no kill "
        f"switch covers it now, and no other guardrail spoke about it. {STILL_WAITS}"
    )
    assert record.status == ProposalStatus.PENDING_REVIEW
    history = text_of(
        login("auditor").get(reverse("admin:approvals_proposal_history", args=[bid.pk]))
    )
    assert "Risk 92 → 19: the kill switch on everything, which raised it, was released" in history
    # Its findings stay as recorded; its page says the switch was released since.
    page = text_of(operator.get(reverse("admin:approvals_proposal_change", args=[bid.pk])))
    assert "The kill switch on everything was engaged when it was routed" in page


def test_a_switch_released_while_another_covers_the_proposal_leaves_its_risk(login):
    """Two switches over the bid, on everything and on account demo: releasing one leaves
    it held by the other, at 92, with nothing added to its history; releasing the other
    lowers it."""
    everything = KillSwitch.objects.create(scope="global", reason=OUTAGE)
    account = KillSwitch.objects.create(scope="account", account=demo(), reason="Audit.")
    bid = evaluated(bid_adjustment("2.08"))
    records = bid.history.count()

    everything.engaged = False
    everything.save()

    bid.refresh_from_db()
    assert (bid.risk, bid.history.count()) == (92, records)
    assert queue_read(login("operator")) == [(bid.pk, 92)]

    account.engaged = False
    account.save()

    bid.refresh_from_db()
    assert bid.risk == 19
    assert bid.history.latest("history_id").history_change_reason == (
        "Risk 92 → 19: the kill switch on account demo, the last of the kill switches that "
        "raised it, was released; no kill switch covers it now, and no other guardrail spoke "
        f"about it. {STILL_WAITS}"
    )


def test_a_proposal_a_brand_guideline_spoke_about_keeps_its_risk(login):
    """A creative batch promising "guaranteed" results waits for a person whatever the
    switch: released, its risk stays in the guardrails' band (the guideline still speaks),
    while a bid the switch alone raised is lowered."""
    switch = KillSwitch.objects.create(scope="global", reason=OUTAGE)
    batch = evaluated(creative_batch())
    bid = evaluated(bid_adjustment("2.08"))
    assert batch.risk >= 91
    records = batch.history.count()

    switch.engaged = False
    switch.save()

    batch_then, batch.risk = batch.risk, None
    batch.refresh_from_db()
    bid.refresh_from_db()
    assert (batch.risk, batch.history.count()) == (batch_then, records)
    assert bid.risk == 19
    assert queue_read(login("operator")) == [(batch.pk, batch_then), (bid.pk, 19)]


def test_a_switch_moved_off_the_proposal_lowers_its_risk_and_says_it_moved(login):
    switch = KillSwitch.objects.create(scope="account", account=demo(), reason=OUTAGE)
    bid = evaluated(bid_adjustment("2.08"))
    assert bid.risk == 92

    switch.account = Account.objects.create(external_id="acme", name="Acme", channel="meta")
    switch.save()

    bid.refresh_from_db()
    assert (bid.status, bid.risk) == (ProposalStatus.PENDING_REVIEW, 19)
    assert bid.history.latest("history_id").history_change_reason == (
        "Risk 92 → 19: the kill switch on account demo, which raised it, was moved to account "
        "acme; no kill switch covers it now, and no other guardrail spoke about it. "
        f"{STILL_WAITS}"
    )


def test_a_proposal_held_back_before_executing_goes_back_to_the_risk_it_was_routed_at(login):
    """Auto-approved at its clean risk, held back by a switch engaged before it ran (its
    risk raised then); released, its risk is the one it was routed at, and it still waits
    for a person: releasing a switch runs nothing."""
    bid = evaluated(bid_adjustment("2.08"))
    assert bid.status == ProposalStatus.APPROVED
    routed_at = bid.risk
    assert routed_at == 19
    switch = KillSwitch.objects.create(scope="account", account=demo(), reason=OUTAGE)
    bid.refresh_from_db()
    assert (bid.status, bid.risk) == (ProposalStatus.PENDING_REVIEW, 92)

    switch.engaged = False
    switch.save()

    bid.refresh_from_db()
    assert (bid.status, bid.risk) == (ProposalStatus.PENDING_REVIEW, routed_at)
    assert bid.history.latest("history_id").history_change_reason.startswith(
        "Risk 92 → 19: the kill switch on account demo, which raised it, was released;"
    )
    assert queue_read(login("operator")) == [(bid.pk, 19)]


def test_a_risk_lowered_tells_nobody_again_and_unsays_nothing(demo_world):
    """A route for risks of 90 and more told the policy owner of the bid at 92. Lowered to
    19, nobody is told anything more, and the message they had stays in the outbox."""
    route = Route.objects.create(name="Risky ones, to the policy owner", minimum_risk=90)
    route.users.add(get_user_model().objects.get(username="policy-owner"))
    switch = KillSwitch.objects.create(scope="global", reason=OUTAGE)
    bid = evaluated(bid_adjustment("2.08"))
    told = list(Notification.objects.filter(proposal=bid).values_list("pk", "recipient_id"))
    assert told

    switch.engaged = False
    switch.save()

    bid.refresh_from_db()
    assert bid.risk == 19
    assert list(Notification.objects.filter(proposal=bid).values_list("pk", "recipient_id")) == (
        told
    )


def test_the_replay_reads_the_routing_not_the_risk_lowered(demo_world):
    """The what-if replays each recorded routing once: the record of a risk lowered is no
    routing, and the bid is still counted once, sent to a person."""
    switch = KillSwitch.objects.create(scope="global", reason=OUTAGE)
    evaluated(bid_adjustment("2.08"))
    now = timezone.now()
    before = simulate(since=now - timedelta(days=1), until=now + timedelta(days=1))

    switch.engaged = False
    switch.save()

    assert Proposal.objects.get().risk == 19  # lowered, in a record of its own
    after = simulate(since=now - timedelta(days=1), until=now + timedelta(days=1))
    assert (after.proposals, after.routings) == (before.proposals, before.routings) == (1, 1)
    assert dict(after.happened) == dict(before.happened)
    assert after.changed == before.changed == 0


def released_counting_statements(bids: list[str]) -> tuple[int, int]:
    """A switch on everything sends these bids to a person; the statements its release
    takes, lowering each, and how many figures it wrote."""
    switch = KillSwitch.objects.create(scope="global", reason=OUTAGE)
    sent = [evaluated(bid_adjustment(new_bid)).pk for new_bid in bids]
    assert not Proposal.objects.filter(pk__in=sent).exclude(risk__gte=91).exists()
    switch.engaged = False
    with CaptureQueriesContext(connection) as statements:
        switch.save()
    figures = set(Proposal.objects.filter(pk__in=sent).values_list("risk", flat=True))
    assert max(figures) < 91
    return len(statements), len(figures)


def test_a_release_reads_and_writes_the_proposals_it_lowers_in_bulk(demo_world):
    """The statements a release takes do not grow with the proposals it lowers: one more
    for twenty than for one only where they take another figure (rows written alike take
    one UPDATE, ``audit.history.rows_update``; a risk has at most 91 figures below the
    guardrails' band)."""
    one, _ = released_counting_statements(["2.08"])
    assert released_counting_statements(["2.08"] * 20) == (one, 1)
    varied, figures = released_counting_statements(["2.08", "2.10", "2.12"] * 7)
    assert figures == 3
    assert varied == one + figures - 1


def test_a_banned_term_an_edit_took_out_does_not_keep_a_released_switch_s_risk(login, agent_client):
    """Under a two-person rule, a switch on account demo sends copywriter's creative, whose
    headline says "Guaranteed", to a person at 96. An operator edits the term out and
    approves (the switch still engaged, it stays raised); a +20% budget change waits at 55.
    Released in the console, the creative kept its 96 and sat first, its mark reading
    "kill switch released; found as proposed, not as edited": the brand finding of the
    agent's words counted as another guardrail speaking. Now it reads the risk its edit has,
    below the budget change, in the queue and the API, its history saying why."""
    Policy.objects.filter(action_type="creative_deployment").update(required_approvals=2)
    budget = evaluated(budget_change("generic-search", "600.00"))  # +20%
    switch = KillSwitch.objects.create(scope="account", account=demo(), reason=OUTAGE)
    creatives = evaluated(
        creative_batch(creative(headline="Guaranteed savings", body="Every day.")),
        agent="copywriter",
    )
    assert creatives.risk == 96
    operator = login("operator")
    edited = decided_from_page(
        operator,
        "edit-approve",
        creatives.pk,
        {
            "edit-creative-0-headline": "Big savings",
            "edit-creative-0-body": "Every day.",
            "edit-creative-0-call_to_action": "Try it",
        },
    )
    assert edited.status_code == 302
    creatives.refresh_from_db()
    assert (creatives.status, creatives.approvals_this_round) == (ProposalStatus.PENDING_REVIEW, 1)
    assert creatives.risk == 96  # the switch still speaks about it
    assert queue_read(operator) == [(creatives.pk, 96), (budget.pk, 55)]

    released_in_the_console(login("policy-owner"), switch)

    creatives.refresh_from_db()
    budget.refresh_from_db()
    assert creatives.status == ProposalStatus.PENDING_REVIEW  # still a person's to decide
    # A creative batch's weight 30, one creative against no ceiling 15, copywriter's record 5.
    assert (creatives.risk, budget.risk) == (50, 55)
    assert queue_read(operator) == [(budget.pk, 55), (creatives.pk, 50)]
    assert agent_client("copywriter").get(f"/api/v1/proposals/{creatives.pk}/").json()["risk"] == 50
    assert creatives.history.latest("history_id").history_change_reason == (
        "Risk 96 → 50: the kill switch on account demo, which raised it, was released; no kill "
        "switch covers it now, and “guaranteed”, found as its agent proposed it, was taken out "
        f"by a reviewer's edit, and no other guardrail speaks about it. {STILL_WAITS}"
    )
    # What was found as proposed stays on its page, as the routing's, of the agent's words.
    page = text_of(operator.get(reverse("admin:approvals_proposal_change", args=[creatives.pk])))
    routed = page.split("Why it came to a person, as copywriter proposed it:")[1]
    assert "The headline of creative 1 uses the banned term “guaranteed”" in routed


def test_the_release_says_how_many_waiting_proposals_it_lowered(login):
    """Released in the console, the switch re-assessed the two bids it alone had sent to a
    person at 92 (their history says "Risk 92 → 19"), and the queue reordered under the
    operator; its message said the switch was released and nothing of them. It says so,
    linking to each."""
    switch = KillSwitch.objects.create(scope="global", reason=OUTAGE)
    bids = [evaluated(bid_adjustment("2.08")), evaluated(bid_adjustment("2.09"))]
    assert [bid.risk for bid in bids] == [92, 92]
    url = reverse("admin:policies_killswitch_change", args=[switch.pk])
    form = {
        "scope": "global",
        "account": "",
        "channel": "",
        "engaged": "",
        "reason": OUTAGE,
        "change_reason": "Tracking is back.",
    }

    page = posted_from_page(login("policy-owner"), url, form, follow=True)

    said = [
        " ".join(html.unescape(re.sub(r"<[^>]+>", "", str(message))).split())
        for message in page.context["messages"]
    ]
    first, second = bids
    assert said == [
        "Kill switch on everything released. While it was engaged, it sent 2 proposals to a "
        "person (2 as they were made). 2 of them still wait for a person's decision: releasing "
        "the switch runs none of them; each runs once a person approves it. "
        f"Its release lowered the risk of 2 of them, which it alone had raised (#{first.pk} "
        f"and #{second.pk}): each is back to the risk the engine gives it without the switch, "
        "as its history says."
    ], said
    for bid in bids:
        bid.refresh_from_db()
        assert (bid.status, bid.risk) == (ProposalStatus.PENDING_REVIEW, 19)
        change = reverse("admin:approvals_proposal_change", args=[bid.pk])
        assert f'href="{change}"' in "".join(map(str, page.context["messages"]))
