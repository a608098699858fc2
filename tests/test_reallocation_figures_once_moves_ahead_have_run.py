"""A waiting reallocation's page says what the budget it draws on will be once the moves
approved before it and not yet run have run, and what it will be after this one: its table
"What it would change" counts from the budget when it was proposed, and read alone it said
200.00 where the budget ended at 0.00. A page with nothing ahead says nothing more."""

import html
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_retry
from executors.runner import proposal_execute
from hitlproject.errors import Conflict
from ledger.models import Campaign
from policies.models import Policy
from tests.conftest import bid_adjustment, reallocation
from tests.factories import evaluated
from tests.test_reallocation_no_longer_fits import retarget_budget, retarget_move
from tests.test_reallocation_under_way_at_submission import approved_move, budget_change


def page_of(client, proposal: Proposal) -> str:
    return client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])).text


def ahead_said(page: str) -> list[str]:
    """The lines under "What it would change" about moves approved before it, as read."""
    found = re.search(r'<div id="proposal-states-ahead"[^>]*>(.*?)</div>', page, flags=re.S)
    if found is None:
        return []
    return [
        " ".join(html.unescape(re.sub(r"<[^>]+>", " ", line)).split())
        for line in re.findall(r"<p[^>]*>(.*?)</p>", found.group(1), flags=re.S)
    ]


def states_row(page: str, campaign: str) -> list[str]:
    table = re.search(r'<table id="proposal-states">(.*?)</table>', page, flags=re.S).group(1)
    for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S):
        cells = [html.unescape(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        if cells and cells[0] == campaign:
            return cells
    raise AssertionError(f"no row for {campaign}")


@pytest.mark.django_db
def test_a_move_waiting_behind_one_approved_says_what_the_budget_will_be(login, operators):
    """The walk: display-retarget at 300.00; #2 moves 200.00 out of it, approved, not yet
    run; #3 moves 150.00, waiting for two people. One edits it to 100.00. Its table read
    "300.00 | 150.00 | 200.00"; #2 and #3 ran and left 0.00. Now its page says, under the
    table, what #2 leaves and what this one leaves after it, as proposed and as edited."""
    operator, colleague = operators
    first = approved_move(operator)
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    assert Proposal.objects.get(pk=first.pk).status == ProposalStatus.APPROVED
    waiting = evaluated(retarget_move("150.00"))
    assert waiting.status == ProposalStatus.PENDING_REVIEW
    client = login("operator")

    page = page_of(client, waiting)
    assert states_row(page, "display-retarget")[2:4] == ["300.00", "150.00"]
    assert ahead_said(page) == [
        f"Once #{first.pk}, approved before it, has run: display-retarget daily budget "
        "300.00 → 100.00; this one, as proposed, takes 150.00 from it: its execution would "
        "refuse it.",
        f"Once #{first.pk}, approved before it, has run: generic-search daily budget "
        "500.00 → 700.00; this one, as proposed, would then be refused by its execution.",
    ]

    edited = {**waiting.payload, "amount": "100.00"}
    proposal_approve(proposal_id=waiting.pk, reviewer=colleague, edited_payload=edited)
    assert Proposal.objects.get(pk=waiting.pk).status == ProposalStatus.PENDING_REVIEW

    page = page_of(client, waiting)
    assert states_row(page, "display-retarget")[2:5] == ["300.00", "150.00", "200.00"]
    assert ahead_said(page) == [
        f"Once #{first.pk}, approved before it, has run: display-retarget daily budget "
        "300.00 → 100.00; after this one, as edited, 0.00.",
        f"Once #{first.pk}, approved before it, has run: generic-search daily budget "
        "500.00 → 700.00; after this one, as edited, 800.00.",
    ]

    # What it said is what happened.
    proposal_approve(proposal_id=waiting.pk, reviewer=operator)
    assert proposal_execute(proposal_id=first.pk).status == ProposalStatus.EXECUTED
    assert proposal_execute(proposal_id=waiting.pk).status == ProposalStatus.EXECUTED
    assert (retarget_budget(), generic_budget()) == (Decimal("0.00"), Decimal("800.00"))


@pytest.mark.django_db
def test_a_budget_cut_approved_before_it_is_counted(login, operators):
    """display-retarget at 300.00; a cut to 250.00 approved and not yet run; a move of 100.00
    out of it waits: the budget will be 250.00 once the cut has run, and 150.00 after it."""
    operator, _ = operators
    cut = evaluated(budget_change("250.00"))
    assert proposal_approve(proposal_id=cut.pk, reviewer=operator).status == "approved"
    waiting = evaluated(retarget_move("100.00"))
    assert waiting.status == ProposalStatus.PENDING_REVIEW

    assert ahead_said(page_of(login("operator"), waiting)) == [
        f"Once #{cut.pk}, approved before it, has run: display-retarget daily budget "
        "300.00 → 250.00; after this one, as proposed, 150.00."
    ]


@pytest.mark.django_db
def test_nothing_more_is_said_where_no_move_is_ahead(login, operators):
    """A move waiting alone, one whose move ahead has run, and a move under way on another
    budget: the page says nothing more than its table, and reads nothing more for it."""
    operator, _ = operators
    waiting = evaluated(retarget_move("150.00"))
    client = login("operator")
    page_of(client, waiting)  # permissions and the rules, read once and kept
    with CaptureQueriesContext(connection) as alone:
        page = page_of(client, waiting)
    assert 'id="proposal-states-ahead"' not in page and ahead_said(page) == []

    first = approved_move(operator, "50.00")
    with CaptureQueriesContext(connection) as behind:
        page = page_of(client, waiting)
    assert ahead_said(page)
    # The moves ahead are the page's own reading (its approval's check): none more for them.
    assert len(behind) == len(alone)

    assert proposal_execute(proposal_id=first.pk).status == ProposalStatus.EXECUTED
    assert ahead_said(page_of(client, waiting)) == []
    assert states_row(page_of(client, waiting), "display-retarget")[-1] == "250.00"


def generic_budget() -> Decimal:
    return Campaign.objects.get(external_id="generic-search").daily_budget


@pytest.mark.django_db
def test_a_move_into_its_destination_approved_before_it_is_counted(login, operators):
    """#1 moves 200.00 from display-retarget into generic-search (500.00), approved, its
    execution not yet run; #2 moves 150.00 from brand-search into generic-search, waiting.
    Its table says generic-search "500.00 | 650.00", and nothing more was said: generic-search
    ended at 850.00. Now its page says what #1 leaves of generic-search, and what this one
    leaves after it; brand-search, which no move ahead touches, has no line."""
    operator, _ = operators
    first = approved_move(operator)
    waiting = evaluated(reallocation("150.00"))
    assert waiting.status == ProposalStatus.PENDING_REVIEW

    page = page_of(login("operator"), waiting)
    assert states_row(page, "generic-search")[2:4] == ["500.00", "650.00"]
    assert ahead_said(page) == [
        f"Once #{first.pk}, approved before it, has run: generic-search daily budget "
        "500.00 → 700.00; after this one, as proposed, 850.00."
    ]

    # What it said is what happened, in either order the two run.
    proposal_approve(proposal_id=waiting.pk, reviewer=operator)
    assert proposal_execute(proposal_id=waiting.pk).status == ProposalStatus.EXECUTED
    assert proposal_execute(proposal_id=first.pk).status == ProposalStatus.EXECUTED
    assert generic_budget() == Decimal("850.00")


@pytest.mark.django_db
def test_moves_ahead_that_take_from_and_set_its_destination_are_counted(login, operators):
    """generic-search at 500.00: a cut of it to 400.00 approved, then a move of 100.00 out
    of it into brand-search approved; a move of 150.00 from display-retarget into it waits
    behind a move of 100.00 out of display-retarget: each figure it touches says what the
    moves ahead leave, and what it leaves after them; what is said is what the ledger ends
    at once all have run, in the order they were approved."""
    operator, _ = operators
    cut = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "400.00"}}
    )
    assert proposal_approve(proposal_id=cut.pk, reviewer=operator).status == "approved"
    out_of_it = evaluated(
        reallocation("100.00")
        | {
            "payload": {
                "from_campaign": "generic-search",
                "to_campaign": "brand-search",
                "amount": "100.00",
            }
        }
    )
    assert proposal_approve(proposal_id=out_of_it.pk, reviewer=operator).status == "approved"
    source_first = approved_move(operator, "100.00")
    waiting = evaluated(retarget_move("150.00"))
    assert waiting.status == ProposalStatus.PENDING_REVIEW

    assert ahead_said(page_of(login("operator"), waiting)) == [
        f"Once #{source_first.pk}, approved before it, has run: display-retarget daily "
        "budget 300.00 → 200.00; after this one, as proposed, 50.00.",
        f"Once #{cut.pk}, #{out_of_it.pk} and #{source_first.pk}, approved before it, have "
        "run: generic-search daily budget "
        "500.00 → 400.00; after this one, as proposed, 550.00.",
    ]

    proposal_approve(proposal_id=waiting.pk, reviewer=operator)
    for move in (cut, out_of_it, source_first, waiting):
        assert proposal_execute(proposal_id=move.pk).status == ProposalStatus.EXECUTED
    assert (retarget_budget(), generic_budget()) == (Decimal("50.00"), Decimal("550.00"))


@pytest.mark.django_db
def test_a_failed_move_names_those_approved_after_it_as_ahead_of_its_retry(login, operators):
    """#1 moves 40.00 out of display-retarget, approved, not run; #2 moves 200.00 out of it,
    approved, and fails (its budget was cut below it, then restored); #3 moves 50.00 out of
    it, approved after #2, not run. #2's page said #3 was "approved before it": it was
    approved after #2, and runs ahead of #2's retry."""
    operator, _ = operators
    before = approved_move(operator, "40.00")
    failed = approved_move(operator, "200.00")
    budget = Campaign.objects.get(external_id="display-retarget")
    budget.daily_budget = Decimal("10.00")
    budget.save()
    assert proposal_execute(proposal_id=failed.pk).status == ProposalStatus.FAILED
    budget.daily_budget = Decimal("300.00")
    budget.save()
    after = approved_move(operator, "50.00")

    page = page_of(login("operator"), failed)
    assert ahead_said(page) == [
        f"Once #{before.pk}, approved before it, and #{after.pk}, approved before its retry, "
        "have run: display-retarget daily budget 300.00 → 210.00; after this one, as a "
        "retry would re-assess it then, 10.00.",
        f"Once #{before.pk}, approved before it, and #{after.pk}, approved before its retry, "
        "have run: generic-search daily budget 500.00 → 590.00; after this one, as a retry "
        "would re-assess it then, 790.00.",
    ]

    # And where its retry would fail, the refusal says so in the same words.
    last = approved_move(operator, "40.00")
    refused = (
        f"Proposal #{failed.pk} can no longer be applied as proposed: amount: Exceeds "
        "display-retarget's daily budget of 170.00 once "
        f"#{before.pk}, approved before it, and #{after.pk} and #{last.pk}, approved before "
        "its retry, have run. A retry would fail again: its execution would refuse it."
    )
    assert refused in html.unescape(page_of(login("operator"), failed))
    with pytest.raises(Conflict) as refusal:
        proposal_retry(proposal_id=failed.pk, reviewer=operator)
    assert refusal.value.message == refused

    # Once they have run, the ledger holds what its page said they leave.
    for move in (before, after, last):
        assert proposal_execute(proposal_id=move.pk).status == ProposalStatus.EXECUTED
    assert (retarget_budget(), generic_budget()) == (Decimal("170.00"), Decimal("630.00"))
