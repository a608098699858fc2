"""A reallocation whose source budget was cut below its amount while it waited: its page says
"It can no longer be applied as proposed", and nobody is told it is approved to execute
(nor retries it) while its execution would refuse it; an edit of the amount can mend it."""

import html
import re
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals.models import Decision, Proposal, ProposalStatus
from approvals.services.decisions import (
    bulk_approval_plan,
    proposal_approve,
    proposal_retry,
    proposals_approve,
)
from executors.runner import proposal_execute
from hitlproject.errors import Conflict, InvalidInput
from ledger.models import Campaign
from policies.models import Policy
from tests.conftest import (
    bid_adjustment,
    confirmed_from_page,
    decided_from_page,
    reallocation,
    run_at_once_while_held,
    seen_on_confirmation,
    wait_until,
)
from tests.factories import evaluated
from tests.test_notifications_slack import (
    OPERATOR,
    buttons,
    context_texts,
    post,
    pressing,
    told,
    updates_of,
    waiting_on_slack,
)

EXCEEDS = "amount: Exceeds brand-search's daily budget of 350.00."
CHANGELIST = reverse("admin:approvals_proposal_changelist")


def brand_search_budget(amount: str) -> None:
    campaign = Campaign.objects.get(external_id="brand-search")
    campaign.daily_budget = Decimal(amount)
    campaign.save()


def budget_cut_executed(operator, to: str = "350.00") -> Proposal:
    """#B: a budget change of brand-search, approved and executed."""
    cut = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "brand-search", "new_daily_budget": to}}
    )
    proposal_approve(proposal_id=cut.pk, reviewer=operator)
    assert proposal_execute(proposal_id=cut.pk).status == ProposalStatus.EXECUTED
    return cut


def refused_as_proposed(proposal: Proposal) -> str:
    return (
        f"Proposal #{proposal.pk} can no longer be applied as proposed: {EXCEEDS} Approving it "
        "would not carry it out: its execution would refuse it. It can be edited, rejected or "
        "withdrawn."
    )


def messages_of(answer) -> list[str]:
    return [str(message) for message in answer.context["messages"]]


def test_a_reallocation_its_source_budget_no_longer_covers_is_not_approved_but_can_be_edited(
    login, operators
):
    """The walk: brand-search at 500.00 a day, a 400.00 move out of it waits for two people;
    brand-search is cut to 350.00. Its page said it could no longer be applied as proposed,
    offered Approve, counted one operator's approval and told the second it was "approved and
    sent to be executed"; its execution failed. Now no approval is offered or taken (page,
    bulk, service), the page says why; an edit of the amount is, and goes through."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    brand_search_budget("500.00")
    first, second = operators
    waiting = evaluated(reallocation("400.00"))
    assert waiting.status == ProposalStatus.PENDING_REVIEW
    budget_cut_executed(first)
    waiting.refresh_from_db()
    assert waiting.verdict_reasons[0].endswith(
        f"It can no longer be applied as proposed: {EXCEEDS}"
    )
    url = reverse("admin:approvals_proposal_change", args=[waiting.pk])
    colleague = Client()
    colleague.force_login(second)

    for client in (login("operator"), colleague):
        page = client.get(url).text
        [note] = re.findall(r'<p class="errornote" id="no-longer-applies">(.*?)</p>', page)
        assert html.unescape(note) == refused_as_proposed(waiting)
        assert 'id="approve-form"' not in page
        assert 'id="edit-approve-form"' in page
        assert 'id="reject-form"' in page and 'id="withdraw-form"' in page

        answer = decided_from_page(client, "approve", waiting.pk)
        said = messages_of(client.get(url))
        assert refused_as_proposed(waiting) in said, said
        assert not any("approval is counted" in m or "sent to be executed" in m for m in said)
        assert answer.status_code in (302, 409)
    # In bulk: its confirmation says why it is left, and confirming decides nothing.
    plan = bulk_approval_plan(proposal_ids=[waiting.pk], reviewer=first)
    assert plan.refusals[waiting.pk].message == refused_as_proposed(waiting)
    confirmed = confirmed_from_page(
        login("operator"),
        reverse("admin:approvals_proposal_changelist"),
        {"action": "approve_selected", "_selected_action": [waiting.pk], "confirm": "yes"},
        follow=True,
    )
    assert confirmed.redirect_chain  # confirmed, not the confirmation shown again
    assert refused_as_proposed(waiting) in html.unescape(confirmed.text)
    decided = proposals_approve(proposal_ids=[waiting.pk], reviewer=second)
    assert decided.proposals == []
    assert [refusal.message for refusal in decided.refused] == [refused_as_proposed(waiting)]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.approvals_this_round) == (ProposalStatus.PENDING_REVIEW, 0)
    assert not Decision.objects.filter(proposal=waiting).exists()

    # An edit within the budget mends it: approved by one, then the other, it runs.
    edited = decided_from_page(
        colleague,
        "edit-approve",
        waiting.pk,
        {"edit-amount": "300.00", "edit-note": "within the budget now"},
        follow=True,
    )
    assert any("approval is counted" in m for m in messages_of(edited)), messages_of(edited)
    proposal_approve(proposal_id=waiting.pk, reviewer=first)
    assert proposal_execute(proposal_id=waiting.pk).status == ProposalStatus.EXECUTED
    assert Campaign.objects.get(external_id="brand-search").daily_budget == Decimal("50.00")


def test_a_failed_reallocation_the_ledger_still_refuses_is_not_retried(login, operators):
    """Approved at 1000.00, its source cut to 350.00 before it ran: it failed for it. A retry
    would fail again: none is offered or taken, and the page says why; once the budget covers
    it again, it is."""
    operator, _ = operators
    approved = evaluated(reallocation("400.00"))
    proposal_approve(proposal_id=approved.pk, reviewer=operator)
    brand_search_budget("350.00")
    assert proposal_execute(proposal_id=approved.pk).status == ProposalStatus.FAILED
    url = reverse("admin:approvals_proposal_change", args=[approved.pk])
    said = (
        f"Proposal #{approved.pk} can no longer be applied as proposed: {EXCEEDS} A retry would "
        "fail again: its execution would refuse it."
    )

    page = login("operator").get(url).text
    assert 'id="retry-form"' not in page
    assert said in html.unescape(page)
    with pytest.raises(Conflict) as refused:
        proposal_retry(proposal_id=approved.pk, reviewer=operator)
    assert refused.value.message == said
    assert Proposal.objects.get(pk=approved.pk).status == ProposalStatus.FAILED

    brand_search_budget("450.00")
    assert 'id="retry-form"' in login("operator").get(url).text
    assert proposal_retry(proposal_id=approved.pk, reviewer=operator).status == "approved"


def test_the_ledger_is_read_once_for_a_bulk_approval_of_many_reallocations(operators):
    operator, _ = operators
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)

    def planned(count: int) -> int:
        ids = [evaluated(reallocation(f"{200 + n}.00")).pk for n in range(count)]
        with CaptureQueriesContext(connection) as queries:
            plan = bulk_approval_plan(proposal_ids=ids, reviewer=operator)
        assert not plan.refusals
        Proposal.objects.filter(pk__in=ids).update(status=ProposalStatus.WITHDRAWN)
        return len(queries)

    planned(1)  # the reviewer's permissions, read once and kept with them
    assert planned(2) == planned(6)


def queue_marks(client, field: str = "summary_shown") -> tuple[dict[int, str], int]:
    """The review queue's summary cells (or another ``field``'s), by proposal id, as read
    (tags dropped, spaces as a reader sees them), and the statements its page took."""
    with CaptureQueriesContext(connection) as read:
        page = client.get(reverse("admin:approvals_proposal_changelist")).text
    cells = re.findall(
        r'<input [^>]*name="_selected_action" value="(\d+)".*?'
        rf'class="field-{field}"[^>]*>(.*?)</t[dh]>',
        page,
        flags=re.S,
    )
    said = {
        int(pk): " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
        for pk, cell in cells
    }
    return said, len(read)


def test_the_queue_marks_a_reallocation_the_ledger_refuses_before_it_is_selected(login, operators):
    """brand-search at 500.00, a 400.00 move out of it waiting, then cut to 350.00: its page
    refused its approval, and bulk approval refused it, but its row in the queue read as every
    other approvable row, so it was selected with the others and refused after. Its summary
    now says why under it, in its page's words; a move the budget still covers says nothing;
    the page reads it for all its rows at once."""
    brand_search_budget("500.00")
    refused = evaluated(reallocation("400.00"))
    fits = evaluated(reallocation("100.00"))
    more = [evaluated(reallocation(f"{amount}.00")) for amount in (360, 380, 420)]
    budget_cut_executed(operators[0])
    operator = login("operator")

    said, read_with_more = queue_marks(operator)

    assert all(said[proposal.pk].endswith(f"applied as proposed: {EXCEEDS}") for proposal in more)
    Proposal.objects.filter(pk__in=[p.pk for p in more]).update(status=ProposalStatus.WITHDRAWN)
    said, read = queue_marks(operator)
    assert said == {
        refused.pk: (
            "move 400.00 USD/day from brand-search to generic-search (80.0%) "
            f"Can no longer be applied as proposed: {EXCEEDS}"
        ),
        fits.pk: "move 100.00 USD/day from brand-search to generic-search (28.6%)",
    }
    assert read_with_more == read


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_slack_offers_no_approve_of_a_reallocation_the_ledger_refuses_and_refuses_a_press(
    optimizer, on_slack, operators
):
    brand_search_budget("500.00")
    proposal, where = waiting_on_slack(
        optimizer, on_slack, payload=reallocation("400.00")["payload"]
    )
    budget_cut_executed(operators[0])
    refused = refused_as_proposed(Proposal.objects.get(pk=proposal["id"]))

    post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))

    assert refused in told(on_slack, OPERATOR)
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()
    update = wait_until(
        lambda: next(
            (u for u in updates_of(on_slack, where) if refused in context_texts(u["blocks"])),
            None,
        ),
        timeout=15,
    )
    assert "approve" not in buttons(update["blocks"])
    assert Proposal.objects.get(pk=proposal["id"]).status == ProposalStatus.PENDING_REVIEW


# display-retarget spends 300.00 a day: two moves of 200.00 out of it fit alone, not together.
def retarget_move(amount: str = "200.00") -> dict:
    return reallocation(amount) | {
        "payload": {
            "from_campaign": "display-retarget",
            "to_campaign": "generic-search",
            "amount": amount,
        }
    }


def two_moves_out_of_display_retarget() -> tuple[Proposal, Proposal]:
    first, second = evaluated(retarget_move()), evaluated(retarget_move())
    assert (first.status, second.status) == ("pending_review", "pending_review")
    return first, second


def retarget_budget() -> Decimal:
    return Campaign.objects.get(external_id="display-retarget").daily_budget


def drawn_below(first: Proposal, with_it: bool = False) -> str:
    return (
        "amount: Exceeds display-retarget's daily budget of 100.00 once "
        f"#{first.pk}, approved {'with' if with_it else 'before'} it, has run."
    )


def test_a_bulk_approval_leaves_waiting_a_move_the_one_approved_with_it_would_overdraw(login):
    """display-retarget at 300.00, two moves of 200.00 out of it waiting: approved together,
    the confirmation said "Approved: it executes." of both and confirming said both were
    "sent to be executed"; the second failed ("Exceeds display-retarget's daily budget of
    100.00"). Now the second is left waiting, and its row says why."""
    first, second = two_moves_out_of_display_retarget()
    client = login("operator")
    selected = {"action": "approve_selected", "_selected_action": [first.pk, second.pk]}

    confirm = client.post(CHANGELIST, selected)

    rows = {
        int(pk): html.unescape(outcome)
        for pk, outcome in re.findall(
            r'<tr><td>(\d+)</td>.*?<td class="bulk-outcome">(.*?)</td>', confirm.text, re.S
        )
    }
    left_waiting = f"Proposal #{second.pk} is left waiting: it would not execute: " + drawn_below(
        first, with_it=True
    )
    assert rows == {first.pk: "Approved: it executes.", second.pk: left_waiting}
    banner = re.sub(r"\s+", " ", confirm.text.split('id="bulk-overdrawn">')[1].split("</p>")[0])
    assert html.unescape(banner) == (
        "1 of them would take more from a campaign's daily budget than is left once those "
        "listed above it, and any approved before, have executed, and would fail then, so it "
        "is left waiting (see below). 1 of the 2 will be approved."
    )
    assert 'value="Yes, approve 1"' in confirm.text

    done = client.post(
        CHANGELIST,
        {**selected, "confirm": "yes", "note": "", **seen_on_confirmation(confirm)},
        follow=True,
    )

    assert messages_of(done) == [
        f"1 proposal approved and sent to be executed: #{first.pk}.",
        left_waiting,
    ]
    assert [Proposal.objects.get(pk=p.pk).status for p in (first, second)] == [
        "approved",
        "pending_review",
    ]
    assert not Decision.objects.filter(proposal=second).exists()
    # The queue says of the one left waiting what its page says, the first not yet run.
    said, _ = queue_marks(client)
    assert said[second.pk].endswith(
        f"Can no longer be applied as proposed: {drawn_below(first)}"
    ), said[second.pk]
    assert proposal_execute(proposal_id=first.pk).status == ProposalStatus.EXECUTED
    assert retarget_budget() == Decimal("100.00")


def test_a_move_is_not_approved_while_one_approved_before_it_would_leave_too_little(
    login, operators
):
    """#A approved and not yet run (the worker has not taken it, or its webhook backs off):
    #B's page offered Approve and approving it said "approved and sent to be executed"; it
    failed once #A ran. Now its page, the queue and an approval all say why it would fail,
    naming #A; once #A has run, the ledger's own figure says it."""
    operator, colleague = operators
    first, second = two_moves_out_of_display_retarget()
    assert proposal_approve(proposal_id=first.pk, reviewer=operator).status == "approved"
    refused = (
        f"Proposal #{second.pk} can no longer be applied as proposed: {drawn_below(first)} "
        "Approving it would not carry it out: its execution would refuse it. It can be edited, "
        "rejected or withdrawn."
    )
    client = login("operator")
    url = reverse("admin:approvals_proposal_change", args=[second.pk])

    page = client.get(url).text
    [note] = re.findall(r'<p class="errornote" id="no-longer-applies">(.*?)</p>', page)
    assert html.unescape(note) == refused
    assert 'id="approve-form"' not in page
    said, _ = queue_marks(client)
    assert said[second.pk].endswith(f"Can no longer be applied as proposed: {drawn_below(first)}")
    decided_from_page(client, "approve", second.pk)
    assert refused in messages_of(client.get(url))
    with pytest.raises(Conflict) as single:
        proposal_approve(proposal_id=second.pk, reviewer=colleague)
    assert single.value.message == refused
    # An edit is judged as edited, against what #A leaves.
    with pytest.raises(InvalidInput) as edited:
        proposal_approve(
            proposal_id=second.pk,
            reviewer=colleague,
            edited_payload=retarget_move("150.00")["payload"],
        )
    assert edited.value.message == f"The edited action is not valid: {drawn_below(first)}"
    assert not Decision.objects.filter(proposal=second).exists()

    assert proposal_execute(proposal_id=first.pk).status == ProposalStatus.EXECUTED
    with pytest.raises(Conflict) as after:
        proposal_approve(proposal_id=second.pk, reviewer=colleague)
    assert "Exceeds display-retarget's daily budget of 100.00. Approving" in after.value.message
    edited = proposal_approve(
        proposal_id=second.pk, reviewer=colleague, edited_payload=retarget_move("100.00")["payload"]
    )
    assert edited.status == "approved"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_move_is_not_approved_while_one_before_it_waits_for_its_webhook(channel, operators):
    """The account's webhook asks to come back in 10 minutes: #A stays executing, not yet
    run; approving #B told the operator it was sent to be executed."""
    channel(503, retry_after="600")
    operator, colleague = operators
    first, second = two_moves_out_of_display_retarget()
    proposal_approve(proposal_id=first.pk, reviewer=operator)
    wait_until(lambda: first.executions.exists())
    assert Proposal.objects.get(pk=first.pk).status == ProposalStatus.EXECUTING

    with pytest.raises(Conflict) as refused:
        proposal_approve(proposal_id=second.pk, reviewer=colleague)

    assert drawn_below(first) in refused.value.message
    assert Proposal.objects.get(pk=second.pk).status == ProposalStatus.PENDING_REVIEW
    assert retarget_budget() == Decimal("300.00")


@pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"],
    reason="SQLite takes one writer at a time: two transactions cannot overlap there",
)
@pytest.mark.django_db(transaction=True)
def test_two_people_approving_two_moves_at_once_do_not_both_pass(operators, monkeypatch):
    """Each approval read the ledger before the other committed: both passed, and one failed
    once both ran. A third session holds display-retarget while both wait for it."""
    # No execution task: nothing runs either move meanwhile.
    monkeypatch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
    operator, colleague = operators
    first, second = two_moves_out_of_display_retarget()
    outcomes: list = [None, None]

    def approve(index: int) -> None:
        proposal, reviewer = ((first, operator), (second, colleague))[index]
        try:
            outcomes[index] = proposal_approve(proposal_id=proposal.pk, reviewer=reviewer).status
        except Conflict as error:
            outcomes[index] = error.message

    run_at_once_while_held(
        f"SELECT id FROM {Campaign._meta.db_table} WHERE external_id = 'display-retarget' "
        "FOR UPDATE",
        lambda: approve(0),
        lambda: approve(1),
    )

    assert sorted(map(str, outcomes)).count("approved") == 1, outcomes
    won = outcomes.index("approved")
    lost = (first, second)[1 - won]
    assert outcomes[1 - won] == (
        f"Proposal #{lost.pk} can no longer be applied as proposed: "
        f"{drawn_below((first, second)[won])} Approving it would not carry it out: its "
        "execution would refuse it. It can be edited, rejected or withdrawn."
    )
    assert Proposal.objects.get(pk=lost.pk).status == ProposalStatus.PENDING_REVIEW
    assert not Decision.objects.filter(proposal=lost).exists()
