"""Deciding many proposals at once: the rules of a single decision hold for each one, each
gets its decision, feedback and history, and every proposal approved is executed once."""

import html
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals.models import Agent, Decision, Proposal, ProposalStatus
from approvals.services import decisions
from approvals.services.decisions import proposal_approve, proposals_approve, proposals_reject
from executors.runner import proposal_execute
from feedback.models import Feedback
from hitlproject.errors import DomainError
from ledger.models import Account, Campaign
from policies.models import KillSwitch, Policy
from tests.conftest import (
    BID_RAISES,
    bid_adjustment,
    confirmed_from_page,
    creative,
    creative_batch,
    reallocation,
    seen_on_confirmation,
    wait_until,
)
from tests.factories import evaluated

CHANGELIST = reverse("admin:approvals_proposal_changelist")


def budget_change(campaign: str, new: str) -> dict:
    return bid_adjustment(action_type="budget_change") | {
        "payload": {"campaign": campaign, "new_daily_budget": new}
    }


def statuses(*proposals: Proposal) -> list[str]:
    found = dict(Proposal.objects.values_list("pk", "status"))
    return [found[proposal.pk] for proposal in proposals]


def test_bulk_approval_holds_each_proposal_to_the_rules_of_a_single_one(operators, monkeypatch):
    monkeypatch.setattr(decisions, "BULK_BATCH", 2)  # several transactions' worth
    operator, colleague = operators
    plain = evaluated(reallocation("200.00"))
    over_cap = evaluated(reallocation("280.00"))
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    seconded = evaluated(reallocation("210.00"))
    first_of_two = evaluated(reallocation("220.00"))
    decided_before = evaluated(reallocation("230.00"))
    proposal_approve(proposal_id=seconded.pk, reviewer=colleague)
    proposal_approve(proposal_id=decided_before.pk, reviewer=operator)
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=Decimal("750"))

    everything = [plain, over_cap, seconded, first_of_two, decided_before]
    decided = proposals_approve(
        proposal_ids=[p.pk for p in everything] + [999999], reviewer=operator, note="Week 47."
    )

    assert {p.pk for p in decided.proposals} == {plain.pk, seconded.pk, first_of_two.pk}
    assert statuses(*everything) == [
        "approved",
        "pending_review",  # the cap set since refuses it
        "approved",  # the colleague's approval and this one make two
        "pending_review",  # one approval of two
        "pending_review",  # the operator may not approve twice
    ]
    assert {error.message for error in decided.refused} == {
        "There is no proposal #999999.",
        f"A guardrail refuses proposal #{over_cap.pk} now: generic-search's "
        "daily budget would be 780.00 USD, above its cap of 750.00 USD.",
        f"You have already decided on proposal #{decided_before.pk}: nobody decides a proposal "
        "twice.",
    }
    assert not Decision.objects.filter(proposal=over_cap).exists()
    assert Decision.objects.filter(proposal=decided_before).count() == 1
    assert Decision.objects.filter(proposal=first_of_two).get().note == "Week 47."


def test_each_bulk_decision_has_its_own_feedback_and_history(operators):
    operator, _ = operators
    approved, rejected = evaluated(reallocation("200.00")), evaluated(reallocation("210.00"))

    proposals_approve(proposal_ids=[approved.pk], reviewer=operator)
    proposals_reject(
        proposal_ids=[rejected.pk], reviewer=operator, reason_code="wrong_signal", note="Noise."
    )

    for proposal, kind, reason in [
        (approved, "approved", "approved by operator"),
        (rejected, "rejected", "rejected by operator: Wrong signal"),
    ]:
        moved = Proposal.history.filter(id=proposal.pk).latest("history_date")
        assert (moved.status, moved.history_change_reason) == (kind, reason)
        decision = Decision.objects.get(proposal=proposal)
        feedback = Feedback.objects.get(proposal=proposal)
        assert feedback.kind == kind and feedback.decision == decision
        for record in (moved, decision.history.get(), feedback.history.get()):
            assert (record.history_actor_kind, record.history_actor) == ("user", "operator")
            assert record.history_user == operator
    assert Feedback.objects.get(proposal=rejected).note == "Noise."


def test_a_bulk_rejection_without_a_reason_changes_nothing(operators):
    operator, _ = operators
    proposal = evaluated()
    with pytest.raises(DomainError, match="Choose a rejection reason"):
        proposals_reject(proposal_ids=[proposal.pk], reviewer=operator, reason_code="")
    assert statuses(proposal) == ["pending_review"]
    assert not Decision.objects.exists()


def test_the_admin_lists_a_few_refusals_and_counts_the_rest(login):
    proposals = [evaluated(reallocation(f"{200 + n}.00")) for n in range(13)]
    Proposal.objects.update(status=ProposalStatus.EXPIRED)
    response = confirmed_from_page(
        login("operator"),
        f"{CHANGELIST}?status=all",
        {
            "action": "approve_selected",
            "_selected_action": [p.pk for p in proposals],
            "confirm": "yes",
            "note": "",
        },
        follow=True,
    )
    assert response.text.count("it cannot become approved") == 10
    assert "… and 3 more proposals not decided." in response.text
    assert not Decision.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_every_proposal_approved_in_bulk_is_executed_once(login):
    proposals = [evaluated(bid_adjustment(bid, campaign)) for campaign, bid in BID_RAISES.items()]
    assert statuses(*proposals) == ["pending_review"] * 3  # 20% each: a person decides
    response = confirmed_from_page(
        login("operator"),
        CHANGELIST,
        {
            "action": "approve_selected",
            "_selected_action": [p.pk for p in proposals],
            "confirm": "yes",
            "note": "",
        },
        follow=True,
    )
    ids = ", ".join(f"#{p.pk}" for p in proposals)
    assert f"3 proposals approved and sent to be executed: {ids}." in response.text
    wait_until(lambda: statuses(*proposals) == ["executed"] * 3)
    for proposal in proposals:
        assert [e.status for e in proposal.executions.all()] == ["succeeded"]
    bids = dict(Campaign.objects.values_list("external_id", "bid"))
    assert {campaign: str(bids[campaign]) for campaign in BID_RAISES} == BID_RAISES


def test_bulk_approval_says_which_budget_raise_a_capped_account_would_refuse_after_the_others(
    login,
):
    # Each raise fits under the account's cap alone (1,840.00 and 1,860.00 of 1,870.00), not
    # both: the second to run would fail at execution.
    Account.objects.filter(external_id="demo").update(max_total_daily_budget=Decimal("1870.00"))
    raises = [
        evaluated(budget_change("display-retarget", "340.00")),
        evaluated(budget_change("generic-search", "560.00")),
    ]
    assert statuses(*raises) == ["pending_review", "pending_review"]
    client = login("operator")
    selected = {"action": "approve_selected", "_selected_action": [p.pk for p in raises]}

    confirm = client.post(CHANGELIST, selected)

    first, second = confirm.context["plan"].proposals  # as listed: the queue's order
    rows = {
        int(pk): html.unescape(outcome)
        for pk, outcome in re.findall(
            r'<tr><td>(\d+)</td>.*?<td class="bulk-outcome">(.*?)</td>', confirm.text, re.S
        )
    }
    left_waiting = (
        f"Proposal #{second.pk} is left waiting: it would not execute, it would fail after "
        f"#{first.pk}, approved with it: Account demo's active campaigns would spend 1,900.00 "
        "USD a day, above its cap of 1,870.00 USD."
    )
    assert rows == {first.pk: "Approved: it executes.", second.pk: left_waiting}
    over_cap = re.sub(r"\s+", " ", confirm.text.split('id="bulk-over-cap">')[1].split("</p>")[0])
    assert over_cap.startswith(
        "1 of them would take its account's total daily budget above its cap once those listed "
        "above it have executed"
    )
    assert 'value="Yes, approve 1"' in confirm.text

    done = client.post(
        CHANGELIST,
        {**selected, "confirm": "yes", "note": "", **seen_on_confirmation(confirm)},
        follow=True,
    )

    said = [str(message) for message in done.context["messages"]]
    assert said == [
        f"1 proposal approved and sent to be executed: #{first.pk}.",
        left_waiting,
    ]
    assert statuses(first, second) == ["approved", "pending_review"]
    assert proposal_execute(proposal_id=first.pk).status == "executed"


def test_the_bulk_confirmation_counts_in_words_that_agree_with_the_count(login):
    """One proposal held behind another is "1 of them clashes with one listed above it"; two
    are "2 of them clash with one listed above them"."""
    first, *later = [
        evaluated(budget_change("generic-search", amount))
        for amount in ("560.00", "570.00", "580.00")
    ]
    assert statuses(first, *later) == ["pending_review"] * 3
    client = login("operator")

    def conflicts(proposals) -> str:
        selected = {"action": "approve_selected", "_selected_action": [p.pk for p in proposals]}
        page = client.post(CHANGELIST, selected).text
        said = page.split('id="bulk-conflicts">')[1].split("</p>")[0]
        return html.unescape(re.sub(r"\s+", " ", said))

    assert conflicts([first, later[0]]).startswith(
        "1 of them clashes with one listed above it: both change the same campaign field"
    )
    assert "so it is left waiting; “Approving it” says what becomes of it." in conflicts(
        [first, later[0]]
    )
    assert conflicts([first, *later]).startswith(
        "2 of them clash with one listed above them: both change the same campaign field"
    )
    assert "so they are left waiting; “Approving it” says what becomes of each." in conflicts(
        [first, *later]
    )


def test_each_proposal_on_the_bulk_confirmation_links_to_its_page(login):
    """Before confirming, the operator can open any proposal listed to read it whole (in a new
    tab, so the confirmation stays)."""
    proposals = [evaluated(reallocation(amount)) for amount in ("280.00", "150.00")]
    selected = {"action": "approve_selected", "_selected_action": [p.pk for p in proposals]}
    page = login("operator").post(CHANGELIST, selected).text

    rows = page.split('id="bulk-proposals">')[1].split("</tbody>")[0].split("<tr><td>")[1:]
    for proposal, row in zip(proposals, rows, strict=True):
        link = reverse("admin:approvals_proposal_change", args=[proposal.pk])
        assert re.search(
            rf'<a href="{link}" target="_blank" rel="noopener">{re.escape(proposal.summary)}', row
        ), row


def test_the_bulk_confirmation_says_a_budget_change_held_behind_a_pause_waits_to_be_decided(
    login,
):
    """A budget change approved with the pause of its campaign is left waiting because the
    pause is judged on that budget, not because the pause changes it: the page does not tell
    the operator it will be superseded, and its row says to decide it once the pause ran."""
    paused = evaluated(
        bid_adjustment(action_type="status_change")
        | {"payload": {"campaign": "brand-search", "status": "paused"}}
    )
    raised = evaluated(budget_change("brand-search", "1500.00"))
    Proposal.objects.filter(pk=raised.pk).update(risk=paused.risk - 1)  # the pause first
    client = login("operator")
    selected = {"action": "approve_selected", "_selected_action": [paused.pk, raised.pk]}

    page = client.post(CHANGELIST, selected).text

    said = html.unescape(
        re.sub(r"\s+", " ", page.split('id="bulk-conflicts">')[1].split("</p>")[0])
    )
    assert said == (
        "1 of them clashes with one listed above it: both change the same campaign field, or "
        "one changes a figure the other is judged on (a pause is judged on the daily budget it "
        "stops). Approving them together would run one on a figure other than the one "
        "approved, so it is left waiting; “Approving it” says what becomes of it. 1 of the 2 "
        "will be approved."
    )
    assert "superseded" not in said
    rows = dict(re.findall(r'<tr><td>(\d+)</td>.*?<td class="bulk-outcome">(.*?)</td>', page, re.S))
    assert html.unescape(rows[str(raised.pk)]).endswith(f"decide it once #{paused.pk} executes.")


def test_bulk_pages_count_proposals_and_approvals_in_words_that_agree(login):
    """'Approve 1 proposal?', '1 more approval', '1 proposal has your approval and waits':
    never '1 proposal(s)'."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = evaluated(reallocation("200.00"))
    client = login("operator")
    selected = {"action": "approve_selected", "_selected_action": [proposal.pk]}

    confirm = client.post(CHANGELIST, selected)
    done = client.post(
        CHANGELIST,
        {**selected, "confirm": "yes", "note": "", **seen_on_confirmation(confirm)},
        follow=True,
    )

    assert confirm.context["title"] == "Approve 1 proposal?"
    about = confirm.text.split('id="bulk-about">')[1].split("</p>")[0]
    assert re.sub(r"\s+", " ", re.sub(r"<.*?>", "", about)) == (
        "You are about to approve this proposal; if it is no longer waiting for review, it is "
        "left as it is and reported."
    )
    assert confirm.context["proposals"][0].bulk_outcome == (
        "Approved by you; waits for 1 more approval."
    )
    assert [str(message) for message in done.context["messages"]] == [
        f"1 proposal has your approval and waits for another person's: #{proposal.pk}."
    ]


def test_the_bulk_confirmation_quotes_what_the_guardrails_found_before_approving(login):
    """A creative with a banned term and a clean one selected together: the confirmation
    quotes the finding under the one it concerns, and says approving runs it as it is."""
    flagged = evaluated(creative_batch(creative(body="Guaranteed results in a week.")))
    clean = evaluated(creative_batch(creative(body="Find it fast.")))
    selected = {"action": "approve_selected", "_selected_action": [flagged.pk, clean.pk]}

    page = html.unescape(login("operator").post(CHANGELIST, selected).text)

    said = re.sub(r"\s+", " ", page.split('id="bulk-findings">')[1].split("</p>")[0])
    assert said.startswith("The guardrails found something in 1 of them")
    assert said.endswith("Approving it runs it as it is.")
    # The table's rows, each opening on its proposal's number (a creative batch's row holds a
    # table of its creatives, rows of its own).
    rows = {
        row.split("</td>")[0]: row
        for row in re.split(r"<tr><td>(?=\d+</td>)", page.split('id="bulk-proposals"')[1])[1:]
    }
    assert "⚠ The body of creative 1 uses the banned term “guaranteed”" in rows[str(flagged.pk)]
    assert "⚠" not in rows[str(clean.pk)]


def test_a_bulk_rejection_quotes_the_findings_too(login):
    flagged = evaluated(creative_batch(creative(body="Guaranteed results in a week.")))
    selected = {"action": "reject_selected", "_selected_action": [flagged.pk]}

    page = html.unescape(login("operator").post(CHANGELIST, selected).text)

    said = re.sub(r"\s+", " ", page.split('id="bulk-findings">')[1].split("</p>")[0])
    assert said.startswith("The guardrails found something in 1 of them")
    assert "Approving" not in said
    assert "⚠ The body of creative 1 uses the banned term “guaranteed”" in page


def test_a_kill_switch_released_since_is_not_quoted_as_engaged_in_the_queue_or_the_bulk_page(
    login,
):
    """A 3% bid held only by the account's kill switch, then the switch released: the queue
    flags nothing on it, and the confirmation says the switch was engaged and is released,
    not "⚠ … is engaged", nor that approving runs it despite what the guardrails found."""
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="Outage."
    )
    held = evaluated(bid_adjustment("2.06"))
    client = login("operator")

    def queue_row() -> str:
        return client.get(CHANGELIST).text.split(f'value="{held.pk}"')[1].split("</tr>")[0]

    assert "guardrail-flag" in queue_row()
    switch.engaged = False
    switch.save()
    # No warning; what routed it (and put its risk in the guardrail band) is still said.
    assert "guardrail-flag" not in queue_row()
    assert ">kill switch released</span>" in queue_row()

    selected = {"action": "approve_selected", "_selected_action": [held.pk]}
    page = html.unescape(client.post(CHANGELIST, selected).text)

    assert 'id="bulk-findings"' not in page
    said = re.sub(r"\s+", " ", page.split('id="bulk-released-switches">')[1].split("</p>")[0])
    assert said.startswith(
        "1 of them went to a person because a kill switch was engaged when it was routed; it "
        "has been released since"
    )
    row = page.split('id="bulk-proposals"')[1].split("</tr>")[1]
    # Each line what became of its switch; that none covers it now, once, below them.
    assert re.findall(r"<li>(.*?)</li>", row.split('class="bulk-findings">')[1]) == [
        "The kill switch on account demo was engaged when it was routed: Outage. Released since.",
        "No kill switch covers it now: the one above has been released since.",
    ]
    assert "⚠" not in row


def test_a_banned_term_an_edit_took_out_is_not_quoted_as_found_in_the_queue_or_the_bulk_page(
    operators,
):
    """Under a two-person rule, one operator edits the banned term out of a creative and
    approves it; the second reads the queue and the bulk confirmation. The finding is of the
    agent's text: without a ⚠, said to be of the text as proposed, not as something approving
    would run, while one found in the text as edited is still flagged."""
    operator, colleague = operators
    Policy.objects.filter(action_type="creative_deployment").update(required_approvals=2)
    mended = evaluated(creative_batch(creative(headline="Guaranteed savings", body="Every day.")))
    kept = evaluated(creative_batch(creative(headline="Guaranteed savings", body="Every day.")))
    for proposal, cta in ((mended, "Try it"), (kept, "Shop now")):
        proposal_approve(
            proposal_id=proposal.pk,
            reviewer=operator,
            edited_payload={
                "campaign": "display-retarget",
                "creatives": [
                    creative(
                        headline="Big savings" if proposal == mended else "Guaranteed savings",
                        body="Every day.",
                        cta=cta,
                    )
                ],
            },
        )
    client = Client()
    client.force_login(colleague)

    def queue_row(proposal) -> str:
        page = html.unescape(client.get(CHANGELIST).text)
        return page.split(f'value="{proposal.pk}"')[1].split("</tr>")[0]

    assert "guardrail-flag" not in queue_row(mended)
    assert ">found as proposed, not as edited</span>" in queue_row(mended)
    assert (
        "The headline of creative 1 uses the banned term “guaranteed”: “«Guaranteed» savings”. "
        "Found in the text as optimizer proposed it, not in it as edited."
    ) in queue_row(mended)
    assert "guardrail-flag" in queue_row(kept)

    selected = {"action": "approve_selected", "_selected_action": [mended.pk, kept.pk]}
    page = html.unescape(client.post(CHANGELIST, selected).text)

    said = re.sub(r"\s+", " ", page.split('id="bulk-findings">')[1].split("</p>")[0])
    assert said.startswith("The guardrails found something in 1 of them")
    assert 'id="bulk-released-switches"' not in page
    rows = {
        row.split("</td>")[0]: row
        for row in re.split(r"<tr><td>(?=\d+</td>)", page.split('id="bulk-proposals"')[1])[1:]
    }
    assert "⚠" not in rows[str(mended.pk)]
    assert (
        "“«Guaranteed» savings”. Found in the text as optimizer proposed it, not in it as edited."
    ) in rows[str(mended.pk)]
    assert "⚠ The headline of creative 1 uses the banned term “guaranteed”" in rows[str(kept.pk)]


def test_the_bulk_confirmation_titles_what_it_approves_and_names_what_it_skips_alike(
    login, optimizer
):
    """Four selected, one withdrawn since: the title read "Approve 4 proposals?" above a
    button "Yes, approve 3"; the banner said "1 of them is not pending review and will be
    skipped", its row "Refused: …"."""
    waiting = [
        evaluated(budget_change(campaign, new))
        for campaign, new in (("brand-search", "1250.00"), ("generic-search", "600.00"))
    ]
    withdrawn = evaluated(budget_change("display-retarget", "450.00"))
    assert optimizer.post(f"/api/v1/proposals/{withdrawn.pk}/withdraw/").status_code == 200
    selected = {
        "action": "approve_selected",
        "_selected_action": [p.pk for p in (*waiting, withdrawn)],
    }

    confirm = login("operator").post(CHANGELIST, selected)

    assert confirm.context["title"] == "Approve 2 of the 3 proposals selected?"
    assert 'value="Yes, approve 2"' in confirm.text
    banner = confirm.text.split('id="bulk-skipped">')[1].split("</p>")[0]
    assert html.unescape(re.sub(r"\s+", " ", banner)) == (
        "1 of them will be skipped: it cannot be approved by you now, and “Approving it” says why."
    )
    outcomes = {p.pk: p.bulk_outcome for p in confirm.context["proposals"]}
    assert outcomes[withdrawn.pk] == (
        f"Skipped: Proposal #{withdrawn.pk} is withdrawn; it cannot become approved."
    )


def test_a_bulk_confirmation_that_approves_none_says_so_in_its_title(login, optimizer):
    withdrawn = evaluated(budget_change("display-retarget", "450.00"))
    assert optimizer.post(f"/api/v1/proposals/{withdrawn.pk}/withdraw/").status_code == 200

    confirm = login("operator").post(
        CHANGELIST, {"action": "approve_selected", "_selected_action": [withdrawn.pk]}
    )

    assert confirm.context["title"] == "This proposal cannot be approved now"
    # Nobody is "about to approve" anything, and there is no note to write for it.
    assert 'id="bulk-about"' not in confirm.text and 'name="note"' not in confirm.text
    banner = confirm.text.split('id="bulk-skipped">')[1].split("</p>")[0]
    assert banner == (
        "Nothing will be approved: it cannot be approved by you now, and “Approving it” says why."
    )


def test_a_bulk_rejection_counts_only_what_its_button_rejects(login, operators):
    """A bulk rejection skipped only proposals no longer waiting: one the person had
    approved already this round (a two-person rule), or one of an agent they own, was
    counted in "Reject 3 proposals?" and "Yes, reject 3", then refused as the button was
    pressed. Those are skipped, said why beside their status, and the counts agree with what
    is then rejected."""
    operator, _ = operators
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    approved_by_them, plain = (evaluated(reallocation(a)) for a in ("200.00", "210.00"))
    proposal_approve(proposal_id=approved_by_them.pk, reviewer=operator)
    owned = evaluated(creative_batch(creative()), agent="copywriter")
    Agent.objects.filter(name="copywriter").update(owner=operator)
    selected = {
        "action": "reject_selected",
        "_selected_action": [approved_by_them.pk, plain.pk, owned.pk],
    }
    client = login("operator")

    confirm = client.post(CHANGELIST, selected)

    assert confirm.context["title"] == "Reject 1 of the 3 proposals selected?"
    assert 'value="Yes, reject 1"' in confirm.text
    shown = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"\s+", " ", confirm.text)))
    assert (
        "2 of them will be skipped: they cannot be rejected by you now; beside their status, why."
    ) in shown
    assert f"You have already decided on proposal #{approved_by_them.pk}: nobody" in shown
    assert "operator owns agent copywriter" in shown

    done = client.post(
        CHANGELIST,
        {
            **selected,
            "confirm": "yes",
            "reason_code": "wrong_signal",
            "note": "",
            **seen_on_confirmation(confirm),
        },
        follow=True,
    )
    said = [str(message) for message in done.context["messages"]]
    assert said[0] == f"Rejected 1 proposal: #{plain.pk}."
    assert statuses(approved_by_them, plain, owned) == [
        "pending_review",
        "rejected",
        "pending_review",
    ]


def test_bulk_approval_says_an_action_for_a_webhook_is_sent_there_not_that_it_executes(login):
    """An account whose actions go to its webhook: approving one only sends it there, to be
    executed once the webhook answers that it was done (it may refuse it, or not answer). The
    confirmation said "Approved: it executes.", as of one the ledger carries out at once."""
    campaign, bid = next(iter(BID_RAISES.items()))
    proposal = evaluated(bid_adjustment(bid, campaign))
    assert proposal.status == "pending_review"
    Account.objects.filter(external_id="demo").update(
        execution_endpoint="https://channel.example/execute"
    )
    selected = {"action": "approve_selected", "_selected_action": [proposal.pk]}

    confirm = login("operator").post(CHANGELIST, selected)

    outcome = re.search(r'<td class="bulk-outcome">(.*?)</td>', confirm.text, re.S).group(1)
    assert html.unescape(outcome) == (
        "Approved: it is sent to the account's webhook; it executes once the webhook answers "
        "that it was done."
    )


def test_the_bulk_confirmation_reads_the_switches_over_its_rows_once_for_all(login):
    """Each row a released switch had sent to a person says, once below its findings, that
    none covers it now: read from the switches the page read for all its rows, not once more
    for each row (3 rows read 2 statements more than 1 did)."""
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="Outage."
    )
    held = [evaluated(bid_adjustment(bid)) for bid in ("2.04", "2.05", "2.06")]
    switch.engaged = False
    switch.save()
    client = login("operator")

    def confirmation(proposals) -> tuple[int, str]:
        selected = {"action": "approve_selected", "_selected_action": [p.pk for p in proposals]}
        with CaptureQueriesContext(connection) as queries:
            page = html.unescape(client.post(CHANGELIST, selected).text)
        return len(queries), page

    one, page = confirmation(held[:1])
    assert "No kill switch covers it now: the one above has been released since." in page
    three, page = confirmation(held)
    assert page.count("No kill switch covers it now: the one above has been released since.") == 3
    assert three == one
