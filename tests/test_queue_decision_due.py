"""The queue says when a decision on each waiting proposal is due (a policy's “decide
within”), which are overdue, and lists the overdue alone; a bulk confirmation says which of
those selected are overdue. A deadline is not the review window, which expires a proposal."""

import html
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals.services.decisions import proposal_approve
from notifications.models import DecisionDeadline
from policies.models import Policy
from tests.conftest import bid_adjustment, reallocation
from tests.factories import evaluated

QUEUE = reverse("admin:approvals_proposal_changelist")


@pytest.fixture
def reallocations_decided_within_an_hour(demo_world) -> None:
    policy = Policy.objects.get(action_type="budget_reallocation")
    policy.decide_within = timedelta(hours=1)
    policy.save()


def overdue_by(proposal, delta: timedelta) -> None:
    """Its deadline moved back so that it was due ``delta`` ago (as if the hour had passed)."""
    DecisionDeadline.objects.filter(proposal=proposal).update(
        due_at=timezone.now() - delta, remind_at=timezone.now() - delta - timedelta(minutes=30)
    )


def rows(page) -> dict[int, str]:
    """Each row of the queue by its proposal, as its text reads."""
    found = {}
    for row in page.text.split("<tr")[1:]:
        number = re.search(r"/admin/approvals/proposal/(\d+)/change/", row)
        if number:
            text = html.unescape(re.sub(r"<[^>]+>", " ", row.split("</tr>")[0]))
            found[int(number.group(1))] = " ".join(text.split())
    return found


def due_cell(page, proposal) -> str:
    row = page.text.split(f"/admin/approvals/proposal/{proposal.pk}/change/", 1)[1].split("</tr>")[
        0
    ]
    cell = re.search(r'<td[^>]* class="field-decision_due"[^>]*>(.*?)</td>', row, re.S)
    assert cell, "no Due cell in the row"
    return cell.group(1)


@pytest.mark.usefixtures("reallocations_decided_within_an_hour")
def test_the_queue_says_which_proposals_are_overdue_and_when_each_is_due(login, operators):
    late = evaluated(reallocation("280.00"))
    in_time = evaluated(reallocation("150.00"))
    no_deadline = evaluated(bid_adjustment("3.00"))  # its policy sets no “decide within”
    overdue_by(late, timedelta(minutes=12))
    # Decided after its deadline: its round ended, and nothing of it runs on.
    decided = evaluated(reallocation("120.00"))
    overdue_by(decided, timedelta(minutes=5))
    proposal_approve(proposal_id=decided.pk, reviewer=operators[0])
    operator = login("operator")

    page = operator.get(QUEUE)

    assert re.search(
        r'<th scope="col" class="sortable column-decision_due">.*?Decision due</a>', page.text, re.S
    )
    late_due = DecisionDeadline.objects.get(proposal=late).due_at
    assert f"overdue by 12 min {late_due:%Y-%m-%d %H:%M:%S} UTC" in rows(page)[late.pk]
    assert 'class="decision-overdue"' in due_cell(page, late)  # marked, not only said
    in_time_due = DecisionDeadline.objects.get(proposal=in_time).due_at
    assert re.search(rf"in (59|60) min {in_time_due:%Y-%m-%d %H:%M:%S} UTC", rows(page)[in_time.pk])
    assert "decision-overdue" not in due_cell(page, in_time)
    assert "overdue" not in rows(page)[no_deadline.pk]
    assert " in " not in due_cell(page, no_deadline)

    # The overdue alone, by the filter; each kind by the others.
    assert list(rows(operator.get(QUEUE, {"due": "overdue"}))) == [late.pk]
    assert list(rows(operator.get(QUEUE, {"due": "not_yet"}))) == [in_time.pk]
    assert list(rows(operator.get(QUEUE, {"due": "none"}))) == [no_deadline.pk]
    assert operator.get(QUEUE, {"due": "overdeu"}).status_code == 400
    # A list of other statuses has no Due column: no deadline runs there.
    every_status = operator.get(QUEUE, {"status": "all"})
    assert decided.pk in rows(every_status)
    assert "field-decision_due" not in every_status.text
    # Leaving the overdue for another status, or searching from it, by the links the page
    # offers (they carry ``due``): that list, not a 400 "could not be understood".
    executed_link = operator.get(QUEUE, {"due": "overdue", "status": "executed"})
    assert executed_link.status_code == 200
    assert "By decision due" in page.text
    assert "By decision due" not in executed_link.text  # offered in the queue alone
    searched = operator.get(QUEUE, {"due": "overdue", "q": str(decided.pk)})
    assert searched.status_code == 200
    assert list(rows(searched)) == [decided.pk]

    # Sorted by it: the most overdue at the top, those without a deadline last.
    column = page.context["cl"].list_display.index("decision_due")
    sorted_page = operator.get(QUEUE, {"o": str(column)})
    assert list(rows(sorted_page)) == [late.pk, in_time.pk, no_deadline.pk]
    assert "soonest due first" in sorted_page.context["title"]


def status_link(page, label: str) -> str:
    """The address the status filter's link ``label`` leads to (``?status=…``)."""
    block = page.text[page.text.index('data-filter-title="status"') :]
    block = block[: block.index("</details>")]
    [href] = [
        html.unescape(href)
        for href, text in re.findall(r'<a href="([^"]*)"[^>]*>([^<]*)</a>', block)
        if text.strip() == label
    ]
    return href


@pytest.mark.parametrize("user", ["operator", "auditor"])  # the auditor's list has no checkboxes
@pytest.mark.usefixtures("reallocations_decided_within_an_hour")
def test_the_status_links_carry_no_sort_by_decision_due_out_of_the_queue(login, user):
    evaluated(reallocation("280.00"))
    approved = evaluated(bid_adjustment("2.12"))
    client = login(user)
    columns = client.get(QUEUE).context["cl"].list_display
    due, age = columns.index("decision_due"), columns.index("age")
    queue = client.get(QUEUE, {"o": f"{due}.-{age}"})
    assert queue.context["title"].endswith("soonest due first, then oldest first")

    executed = client.get(QUEUE + status_link(queue, "Approved"))

    # The approved list sorted as the queue was, by its age, under its own column: not by
    # the column in the decision due's place there (a column of that list's own).
    assert list(rows(executed)) == [approved.pk]
    there = executed.context["cl"]
    assert [there.list_display[i] for i in there.get_ordering_field_columns()] == ["age"]
    assert re.findall(r'class="sortable column-(\w+) sorted', executed.text) == ["age"]
    # Sorted by the decision due alone, the links carry no sort out of the queue.
    queue = client.get(QUEUE, {"o": str(due)})
    assert "o=" not in status_link(queue, "Approved")
    assert "o=" not in status_link(queue, "All")
    assert f"o={due}" in status_link(queue, "Pending review")  # the queue's own
    # So does the search form, whose search lists every status.
    assert 'name="o"' not in queue.text[queue.text.index('id="changelist-search"') :]
    queue = client.get(QUEUE, {"o": f"{due}.-{age}"})
    searched = client.get(QUEUE, {**searched_with(queue), "q": str(approved.pk)})
    assert approved.pk in rows(searched)
    there = searched.context["cl"]
    assert [there.list_display[i] for i in there.get_ordering_field_columns()] == ["age"]


@pytest.mark.parametrize("sort", ["²", "4.²", "-²", "99", "x"])
def test_a_sort_the_list_cannot_read_is_let_be_by_the_status_links_and_search(login, sort):
    """A sort Django's list passes over (a place it has no column at, a digit int() does not
    read) is passed over by the links and the search form too: "²" was a 500."""
    evaluated(reallocation("280.00"))
    queue = login("operator").get(QUEUE, {"o": sort})
    assert queue.status_code == 200
    assert f"o={sort}" not in status_link(queue, "Approved")
    assert searched_with(queue).get("o") != sort


def searched_with(page) -> dict[str, str]:
    """The hidden fields the list's search form sends with what is typed."""
    form = page.text[page.text.index('id="changelist-search"') :]
    form = form[: form.index("</form>")]
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))


@pytest.mark.usefixtures("reallocations_decided_within_an_hour")
def test_the_queue_reads_its_deadlines_in_as_many_queries_for_many_as_for_one(login):
    overdue_by(evaluated(reallocation("280.00")), timedelta(minutes=3))
    operator = login("operator")
    operator.get(QUEUE)
    with CaptureQueriesContext(connection) as one:
        assert operator.get(QUEUE).text.count("overdue by") == 1
    for amount in ("150.00", "160.00", "170.00", "180.00"):
        overdue_by(evaluated(reallocation(amount)), timedelta(minutes=3))
    with CaptureQueriesContext(connection) as five:
        assert operator.get(QUEUE).text.count("overdue by") == 5
    assert len(five) == len(one)


@pytest.mark.usefixtures("reallocations_decided_within_an_hour")
def test_a_bulk_approvals_confirmation_says_which_are_overdue(login):
    late = evaluated(reallocation("280.00"))
    in_time = evaluated(reallocation("150.00"))
    overdue_by(late, timedelta(minutes=25))
    operator = login("operator")

    confirm = operator.post(
        QUEUE, {"action": "approve_selected", "_selected_action": [late.pk, in_time.pk]}
    )

    assert confirm.status_code == 200
    said = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", confirm.text)).split())
    assert (
        f"1 of them is overdue: a decision was due by the deadline their policy sets "
        f"(#{late.pk} overdue by 25 min)" in said
    )
    cells = re.findall(r'<td class="bulk-due">(.*?)</td>', confirm.text, re.S)
    assert len(cells) == 2
    assert "<th>Decision due</th>" in confirm.text
    by_row = dict(zip([late.pk, in_time.pk], cells, strict=True))
    assert "overdue by 25 min" in by_row[late.pk]
    assert re.search(r"in (59|60) min", by_row[in_time.pk])
