"""A proposal policy approved whose execution failed, which an operator retried and which then
executed, is counted alike by the dashboard and by the what-if's "Happened": auto-executed
(nobody approved it; the retry ran what policy approved), each page saying so in its words."""

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal
from approvals.services.decisions import proposal_retry
from tests.conftest import bid_adjustment, wait_until
from tests.factories import evaluated

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def words(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def status_of(proposal: Proposal) -> str:
    return Proposal.objects.get(pk=proposal.pk).status


def test_a_policy_approval_executed_on_a_retry_counts_as_auto_executed_on_both_pages(
    channel, login
):
    """The demo account's endpoint refuses the first request (400: the execution fails) and
    takes the second. A 5% bid raise, approved by policy, fails; the operator retries it, and
    it executes. A 5% raise of another campaign executes at once; a third fails and is left."""
    endpoint = channel(400, 200, 200, 400)
    retried = evaluated(bid_adjustment("2.10"))  # +5%: policy approves it
    assert retried.status == "approved" and retried.review_round == 0
    wait_until(lambda: status_of(retried) == "failed")
    operator = get_user_model().objects.get(username="operator")
    proposal_retry(proposal_id=retried.pk, reviewer=operator)
    wait_until(lambda: status_of(retried) == "executed")
    at_once = evaluated(bid_adjustment("1.57", "generic-search"))  # +4.7%
    wait_until(lambda: status_of(at_once) == "executed")
    left = evaluated(bid_adjustment("0.84", "display-retarget"))  # +5%
    wait_until(lambda: status_of(left) == "failed")
    assert len(endpoint.received) == 4

    today = timezone.localdate()
    simulated = login("policy-owner").get(
        reverse("admin:policies_policy_simulate"),
        {"since": str(today), "until": str(today + timezone.timedelta(days=1))},
    )
    assert "<tr><td>Auto-executed</td><td>2</td><td>2</td></tr>" in simulated.text
    assert (
        "<tr><td>Auto-approved, not executed (superseded, sent back, failed or not run)</td>"
        "<td>1</td><td>1</td></tr>"
    ) in simulated.text
    assert "on its first run or when a person retried its failed execution" in words(simulated.text)

    dashboard = html.unescape(login("operator").get(reverse("admin:index")).text)
    assert 'id="auto-rate">67%<' in dashboard  # 2 of the 3 proposals made
    assert (
        "<strong>Auto-executed</strong>: executed with no person approving it: policy approved "
        "it and it ran, on its first run or when a person retried its failed execution."
    ) in dashboard
