"""A reallocation whose source budget was cut below its amount while it waited: its page says
"It can no longer be applied as proposed", and nobody is told it is approved to execute
(nor retries it) while its execution would refuse it; an edit of the amount can mend it."""

import html
import re
from decimal import Decimal

import pytest
from django.db import connection
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
from hitlproject.errors import Conflict
from ledger.models import Campaign
from policies.models import Policy
from tests.conftest import bid_adjustment, reallocation, wait_until
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

        answer = client.post(reverse("admin:approvals_proposal_approve", args=[waiting.pk]))
        said = messages_of(client.get(url))
        assert refused_as_proposed(waiting) in said, said
        assert not any("approval is counted" in m or "sent to be executed" in m for m in said)
        assert answer.status_code in (302, 409)
    # In bulk: its confirmation says why it is left, and confirming decides nothing.
    plan = bulk_approval_plan(proposal_ids=[waiting.pk], reviewer=first)
    assert plan.refusals[waiting.pk].message == refused_as_proposed(waiting)
    confirmed = login("operator").post(
        reverse("admin:approvals_proposal_changelist"),
        {"action": "approve_selected", "_selected_action": [waiting.pk], "confirm": "yes"},
        follow=True,
    )
    assert refused_as_proposed(waiting) in html.unescape(confirmed.text)
    decided = proposals_approve(proposal_ids=[waiting.pk], reviewer=second)
    assert decided.proposals == []
    assert [refusal.message for refusal in decided.refused] == [refused_as_proposed(waiting)]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.approvals_this_round) == (ProposalStatus.PENDING_REVIEW, 0)
    assert not Decision.objects.filter(proposal=waiting).exists()

    # An edit within the budget mends it: approved by one, then the other, it runs.
    edited = colleague.post(
        reverse("admin:approvals_proposal_edit-approve", args=[waiting.pk]),
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


def queue_marks(client) -> tuple[dict[int, str], int]:
    """The review queue's summary cells, by proposal id, as read (tags dropped, spaces as a
    reader sees them), and the statements its page took."""
    with CaptureQueriesContext(connection) as read:
        page = client.get(reverse("admin:approvals_proposal_changelist")).text
    cells = re.findall(
        r'<input [^>]*name="_selected_action" value="(\d+)".*?'
        r'class="field-summary_shown"[^>]*>(.*?)</t[dh]>',
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
