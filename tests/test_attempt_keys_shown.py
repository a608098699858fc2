"""The console shows the idempotency key each attempt went to its channel with: a webhook
endpoint gets ``Idempotency-Key: hitl-proposal-<id>-<n>`` on each attempt of a round, and an
operator matches the endpoint's logs to the attempts by it. Neither the proposal's
executions, the attempt's page nor its history named it. Google Ads gets no key: nothing is
shown there; nor for an attempt refused before it was sent."""

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from approvals.models import Execution, Proposal, ProposalStatus
from approvals.services.decisions import proposal_retry
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from tests.conftest import bid_adjustment, creative, creative_batch, wait_until
from tests.factories import evaluated
from tests.test_google_ads_said_without_keys import approved
from tests.test_stopped_agent_not_run import approved_here, stop


def executions_table(client, proposal: Proposal) -> tuple[list[str], list[list[str]]]:
    """The proposal page's executions table: its headings, and each row's cells as text."""
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])).text
    table = page[page.index('id="proposal-executions"') :]
    table = table[: table.index("</table>")]

    def cells(row: str, tag: str) -> list[str]:
        found = re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", row, re.S)
        return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in found]

    head = cells(table[table.index("<thead>") : table.index("</thead>")], "th")
    rows = re.findall(r"<tr>(.*?)</tr>", table[table.index("<tbody>") :], re.S)
    return head, [cells(row, "td") for row in rows]


def attempt_page(client, attempt: Execution) -> str:
    page = client.get(reverse("admin:approvals_execution_change", args=[attempt.pk])).text
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_each_attempt_shows_the_key_the_endpoint_got_with_it(channel, login):
    endpoint = channel(503, 422, 200)
    proposal = evaluated(bid_adjustment("2.12"))  # approved at once, run by the worker
    wait_until(lambda: Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.FAILED)
    proposal_retry(
        proposal_id=proposal.pk, reviewer=get_user_model().objects.get(username="operator")
    )
    wait_until(lambda: Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.EXECUTED)
    received = [request["headers"]["Idempotency-Key"] for request in endpoint.received]
    assert received == [f"hitl-proposal-{proposal.pk}-{n}" for n in (1, 1, 2)]
    operator = login("operator")

    head, rows = executions_table(operator, proposal)

    column = head.index("Idempotency key sent")
    assert [(row[0], row[column]) for row in rows] == [
        ("1", received[0]),
        ("2", received[1]),
        ("3", received[2]),
    ]
    last = proposal.executions.get(attempt=3)
    assert f"Idempotency key sent: {received[2]}" in attempt_page(operator, last)
    made = last.history.earliest("history_id").history_change_reason
    assert made.startswith(
        f"attempt 3 started (its request on its way to the channel) with key {received[2]} "
    ), made


def test_an_attempt_refused_before_it_was_sent_shows_no_key(channel, login):
    endpoint = channel(503, 200)
    proposal = approved_here(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING  # 503
    stop("deactivated")
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.FAILED  # not sent
    [sent] = [request["headers"]["Idempotency-Key"] for request in endpoint.received]
    operator = login("operator")

    head, rows = executions_table(operator, proposal)

    column = head.index("Idempotency key sent")
    assert [(row[0], row[column]) for row in rows] == [("1", sent), ("2", "—")]
    refused = proposal.executions.get(attempt=2)
    assert "Idempotency key sent" not in attempt_page(operator, refused)
    assert "hitl-proposal" not in refused.history.earliest("history_id").history_change_reason


def test_on_google_ads_which_gets_no_key_none_is_shown(linked_google_ads, login):
    linked_google_ads.fail_next("quota", method="MutateAdGroupAds")
    proposal = approved(creative_batch(creative("Search smarter")))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING  # quota
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED
    operator = login("operator")

    head, rows = executions_table(operator, proposal)

    assert len(rows) == 2 and "Idempotency key sent" not in head
    for attempt in proposal.executions.all():
        page = attempt_page(operator, attempt)
        assert "Idempotency key" not in page and "hitl-proposal" not in page
        assert "hitl-proposal" not in attempt.history.earliest("history_id").history_change_reason
