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

from approvals.models import Execution, Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_retry
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from hitlproject.formats import console_time
from tests.conftest import bid_adjustment
from tests.test_attempt_keys_shown import executions_table
from tests.test_attempts_said_alike import EXECUTIONS, executions_list
from tests.test_kill_switch_holds_execution import engage, next_attempt_due, person
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


def held_and_approved_again(channel, monkeypatch) -> Proposal:
    """Attempt 1 answered 503; before attempt 2 a kill switch held the proposal back, and
    operator approved it again (the switch still engaged); attempt 2 succeeded."""
    endpoint = channel(503, 200)
    proposal = approved_here(bid_adjustment("1.60", campaign="generic-search"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    next_attempt_due(proposal)
    engage()
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.PENDING_REVIEW
    with monkeypatch.context() as patch:  # no task: the test runs it
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        proposal_approve(proposal_id=proposal.pk, reviewer=person())
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED
    assert len(endpoint.received) == 2
    return proposal


def test_an_attempt_held_back_then_approved_again_says_who_approved_it_and_when(
    channel, login, monkeypatch
):
    proposal = held_and_approved_again(channel, monkeypatch)
    approved = (
        Proposal.history.filter(id=proposal.pk, status="approved", history_actor_kind="user")
        .get()
        .history_date
    )
    by_operator = f"Failed, held back, then approved again by operator at {console_time(approved)}"
    operator = login("operator")

    head, rows = executions_table(operator, proposal)
    assert [row[head.index("Status")] for row in rows] == [by_operator, "Succeeded"]

    first = proposal.executions.get(attempt=1)
    page = operator.get(reverse("admin:approvals_execution_change", args=[first.pk])).text
    assert text(re.search(r"<h2>(.*?)</h2>", page, re.S).group(1)) == (
        f"#{proposal.pk} attempt 1: {by_operator}"
    )
    assert f"Status: {by_operator}" in text(page)
    assert executions_list(operator)[first.pk]["Status"] == by_operator

    history = text(
        operator.get(reverse("admin:approvals_proposal_history", args=[proposal.pk])).text
    )
    assert (
        "Execution attempt 1 by the webhook executor: failed, held back, then approved again "
        f"by operator at {console_time(approved)}"
    ) in history


def test_the_list_of_executions_filters_what_followed_a_failure_by_who_let_it_run_again(
    channel, login, monkeypatch
):
    retried = retried_by_a_person(channel, monkeypatch)  # by the runner, then by operator
    held = held_and_approved_again(channel, monkeypatch)
    ids = {
        (execution.proposal_id, execution.attempt): execution.pk
        for execution in Execution.objects.filter(proposal__in=[retried, held])
    }
    operator = login("operator")

    def listed(status: str) -> set[tuple[int, int]]:
        rows = executions_list(operator, status=status)
        return {key for key, pk in ids.items() if pk in rows}

    assert listed("failed_tried_again") == {(retried.pk, 1)}
    assert listed("failed_sent_again") == {(retried.pk, 2)}
    assert listed("failed_approved_again") == {(held.pk, 1)}
    filters = text(operator.get(EXECUTIONS).text)
    for label in (
        "Failed, tried again",
        "Failed, sent to run again by a person",
        "Failed, held back, then approved again by a person",
    ):
        assert label in filters
