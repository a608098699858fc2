"""A failed attempt after which a person pressed Retry says who sent it to run again, and when:
"Failed, sent to run again by operator at …". It read "Failed, tried again", the words of the
runner's own further attempt after a failure it may get past (a 503), on the proposal's
executions table, the list of executions, the attempt's own page and the proposal's history:
a reader could not tell the platform's retry from a person's. The runner's own still reads
"Failed, tried again"."""

import html
import re

from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_retry
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from hitlproject.formats import console_time
from tests.conftest import bid_adjustment
from tests.test_attempt_keys_shown import executions_table
from tests.test_stopped_agent_not_run import approved_here


def text(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def retried_by_a_person(channel, monkeypatch) -> Proposal:
    """Attempt 1 answered 503 and the runner tried again; attempt 2 answered 422 and the
    proposal failed; operator pressed Retry, and attempt 3 succeeded."""
    endpoint = channel(503, 422, 200)
    proposal = approved_here(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.FAILED
    with monkeypatch.context() as patch:  # no task: the test runs it
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        proposal_retry(
            proposal_id=proposal.pk, reviewer=get_user_model().objects.get(username="operator")
        )
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED
    assert len(endpoint.received) == 3
    return proposal


def test_an_attempt_a_person_sent_to_run_again_says_who_and_when(channel, login, monkeypatch):
    proposal = retried_by_a_person(channel, monkeypatch)
    retried = (
        Proposal.history.filter(id=proposal.pk, history_change_reason__startswith="sent to run")
        .get()
        .history_date
    )
    by_operator = f"Failed, sent to run again by operator at {console_time(retried)}"
    operator = login("operator")

    head, rows = executions_table(operator, proposal)
    assert [row[head.index("Status")] for row in rows] == [
        "Failed, tried again",  # the runner's own, after a 503
        by_operator,
        "Succeeded",
    ]

    second = proposal.executions.get(attempt=2)
    page = operator.get(reverse("admin:approvals_execution_change", args=[second.pk])).text
    said = f"#{proposal.pk} attempt 2: {by_operator}"
    assert text(re.search(r"<h2>(.*?)</h2>", page, re.S).group(1)) == said
    assert f"Status: {by_operator}" in text(page)

    listed = text(operator.get(reverse("admin:approvals_execution_changelist")).text)
    assert by_operator in listed
    assert "Failed, tried again" in listed  # attempt 1's

    history = text(
        operator.get(reverse("admin:approvals_proposal_history", args=[proposal.pk])).text
    )
    assert "Execution attempt 1 by the webhook executor: failed, tried again" in history
    assert (
        "Execution attempt 2 by the webhook executor: failed, sent to run again by operator "
        f"at {console_time(retried)}"
    ) in history
