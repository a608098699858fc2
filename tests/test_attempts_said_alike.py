"""An execution attempt reads the same wherever the console shows it: a failed attempt another
followed is "Failed, tried again" in the proposal's executions table and the list of
executions, and its own page said "failed" in its title, heading and breadcrumbs. The
proposal's table links each attempt to its page (for those who may open it), and the list of
executions names the idempotency key each went to its channel with, as the proposal's page
and the attempt's do (none on Google Ads, which gets none; none for one refused before it
was sent)."""

import html
import re

from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from approvals.models import Execution, Proposal, ProposalStatus
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from hitlproject.formats import console_time
from tests.conftest import bid_adjustment, creative, creative_batch
from tests.test_attempt_keys_shown import executions_table
from tests.test_console_narrow_permissions import staff_with
from tests.test_google_ads_said_without_keys import approved
from tests.test_stopped_agent_not_run import approved_here, stop

EXECUTIONS = reverse("admin:approvals_execution_changelist")


def text(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def failed_twice(channel) -> Proposal:
    """A webhook proposal whose first attempt failed (503) and was tried again, which failed
    too (503): attempt 1 "Failed, tried again", attempt 2 "Failed, to be tried again at …"."""
    endpoint = channel(503, 503)
    proposal = approved_here(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())
    proposal_execute(proposal_id=proposal.pk)
    assert len(endpoint.received) == 2
    return proposal


def test_a_failed_attempt_tried_again_says_so_on_its_own_page_as_the_tables_do(channel, login):
    proposal = failed_twice(channel)
    first, second = proposal.executions.order_by("attempt")
    operator = login("operator")
    head, rows = executions_table(operator, proposal)
    status = head.index("Status")
    due = console_time(ExecutionRound.objects.get(proposal=proposal).lease_until)
    # Attempt 3 is scheduled: attempt 2 is not the end of it.
    assert [row[status] for row in rows] == [
        "Failed, tried again",
        f"Failed, to be tried again at {due}",
    ]

    page = operator.get(reverse("admin:approvals_execution_change", args=[first.pk])).text
    said = f"#{proposal.pk} attempt 1: Failed, tried again"
    assert text(re.search(r"<title>(.*?)</title>", page, re.S).group(1)).startswith(said)
    assert text(re.search(r"<h2>(.*?)</h2>", page, re.S).group(1)) == said
    assert text(re.search(r'class="breadcrumbs">(.*?)</div>', page, re.S).group(1)).endswith(said)
    assert ": failed" not in text(page)
    assert "Status: Failed, tried again" in text(page)  # its field, as its heading
    last = operator.get(reverse("admin:approvals_execution_change", args=[second.pk])).text
    assert text(re.search(r"<h2>(.*?)</h2>", last, re.S).group(1)) == (
        f"#{proposal.pk} attempt 2: Failed, to be tried again at {due}"
    )
    history = operator.get(reverse("admin:approvals_execution_history", args=[first.pk])).text
    assert f"View history: {said}" in text(re.search(r"<h1>(.*?)</h1>", history, re.S).group(1))
    made = first.history.earliest("history_id")  # as it stood when its request went
    version = operator.get(
        reverse("admin:approvals_execution_simple_history", args=[first.pk, made.history_id])
    )
    assert version.status_code == 200 and "Status: Under way" in text(version.text)
    # The proposal's history lists its attempts in the same words.
    its_history = text(
        operator.get(reverse("admin:approvals_proposal_history", args=[proposal.pk])).text
    )
    assert "Execution attempt 1 by the webhook executor: failed, tried again" in its_history
    assert "Execution attempt 2 by the webhook executor: failed " in its_history + " "


def attempt_links(client, proposal: Proposal) -> list[tuple[str, str]]:
    """The proposal page's executions table: each attempt's cell, its link and its text."""
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])).text
    table = page[page.index('id="proposal-executions"') :]
    table = table[table.index("<tbody>") : table.index("</table>")]
    cells = re.findall(r'<td data-label="Attempt">(.*?)</td>', table, re.S)
    return [
        (link.group(1) if (link := re.search(r'href="([^"]+)"', cell)) else "", text(cell))
        for cell in cells
    ]


def test_the_proposals_executions_table_links_each_attempt_for_those_who_may_open_it(
    channel, login
):
    proposal = failed_twice(channel)
    first, second = proposal.executions.order_by("attempt")
    auditor = login("auditor")

    links = attempt_links(auditor, proposal)

    assert links == [
        (reverse("admin:approvals_execution_change", args=[first.pk]), "1"),
        (reverse("admin:approvals_execution_change", args=[second.pk]), "2"),
    ]
    for href, _ in links:
        assert auditor.get(href).status_code == 200
    # One who may read proposals but not attempts reads their numbers, unlinked: a link
    # would lead them to "403 Forbidden".
    reader = staff_with("proposals-only", "view_proposal")
    assert not Permission.objects.filter(user__username="proposals-only", codename="view_execution")
    assert attempt_links(reader, proposal) == [("", "1"), ("", "2")]
    forbidden = reader.get(reverse("admin:approvals_execution_change", args=[first.pk]))
    assert forbidden.status_code == 403


def executions_list(client, **params) -> dict[int, dict[str, str]]:
    """The list of executions: each row by its attempt's id, its cells by their headers."""
    page = client.get(EXECUTIONS, params).text
    table = page[page.index('id="result_list"') : page.index("</table>")]
    head = [  # each column's name, not its sort's priority beside it
        text(cell)
        for cell in re.findall(
            r'<div class="text">(.*?)</div>', table[: table.index("</thead>")], re.S
        )
    ]
    found = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table[table.index("<tbody>") :], re.S):
        cells = [text(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        found[int(cells[0])] = dict(zip(head, cells, strict=True))
    return found


def test_the_list_of_executions_names_the_key_each_attempt_went_with(channel, login):
    endpoint = channel(503, 200)
    sent = approved_here(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=sent.pk).status == ProposalStatus.EXECUTING  # 503
    ExecutionRound.objects.filter(proposal=sent).update(lease_until=timezone.now())
    assert proposal_execute(proposal_id=sent.pk).status == ProposalStatus.EXECUTED
    keys = [request["headers"]["Idempotency-Key"] for request in endpoint.received]
    assert keys == [f"hitl-proposal-{sent.pk}-1"] * 2
    # Another whose second attempt was refused before it was sent: it went with no key.
    endpoint = channel(503, 200)
    refused = approved_here(bid_adjustment("2.15"))
    assert proposal_execute(proposal_id=refused.pk).status == ProposalStatus.EXECUTING
    stop("deactivated")
    ExecutionRound.objects.filter(proposal=refused).update(lease_until=timezone.now())
    assert proposal_execute(proposal_id=refused.pk).status == ProposalStatus.FAILED
    [refused_key] = [request["headers"]["Idempotency-Key"] for request in endpoint.received]
    operator = login("operator")

    listed = executions_list(operator)

    said = {
        (execution.proposal_id, execution.attempt): (
            row["Status"],
            row["Idempotency key sent"],
        )
        for execution in Execution.objects.all()
        for row in [listed[execution.pk]]
    }
    assert said == {
        (sent.pk, 1): ("Failed, tried again", keys[0]),
        (sent.pk, 2): ("Succeeded", keys[1]),
        (refused.pk, 1): ("Failed, tried again", refused_key),
        (refused.pk, 2): ("Failed", "—"),
    }


def test_the_list_of_executions_names_no_key_on_google_ads_which_gets_none(
    linked_google_ads, login
):
    linked_google_ads.fail_next("quota", method="MutateAdGroupAds")
    proposal = approved(creative_batch(creative("Search smarter")))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING  # quota
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED

    listed = executions_list(login("operator"))

    assert sorted(
        (row["Attempt"], row["Status"], row["Idempotency key sent"]) for row in listed.values()
    ) == [("1", "Failed, tried again", "—"), ("2", "Succeeded", "—")]


def test_an_attempts_history_says_its_failure_as_it_read_before_it_was_tried_again(channel, login):
    proposal = failed_twice(channel)
    first, second = proposal.executions.order_by("attempt")
    failure = first.history.filter(status="failed").latest("history_id")
    assert failure.history_date < second.started_at  # recorded before attempt 2 began
    operator = login("operator")

    history = operator.get(reverse("admin:approvals_execution_history", args=[first.pk])).text

    rows = {
        int(version): text(said)
        for version, said in re.findall(
            r'<td data-label="Object">\s*<a href="[^"]*/history/(\d+)/">(.*?)</a>', history, re.S
        )
    }
    assert rows[failure.history_id] == f"#{proposal.pk} attempt 1: Failed"
    now = f"#{proposal.pk} attempt 1: Failed, tried again"
    assert text(re.search(r"<h1>(.*?)</h1>", history, re.S).group(1)) == f"View history: {now}"
    version = operator.get(
        reverse("admin:approvals_execution_simple_history", args=[first.pk, failure.history_id])
    ).text
    then = f"#{proposal.pk} attempt 1: Failed"
    assert text(re.search(r"<h1>(.*?)</h1>", version, re.S).group(1)) == f"View {then}"
    crumbs = text(re.search(r'class="breadcrumbs">(.*?)</div>', version, re.S).group(1))
    assert f"› {then} › History" in crumbs
    assert "Status: Failed Before" in text(version)  # its field, not "Failed, tried again"
