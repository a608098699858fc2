"""A failed attempt whose next attempt is already scheduled reads "Failed, to be tried again at
…" (the time its proposal's status line says the next is due), in the proposal's executions
table, the list of executions and its own page: it read "Failed", as the end of it, while
the proposal's status line said "Executing · … attempt 2 is due at …". The list's status
filter tells the failed attempts apart: its "Failed" listed those still to be tried again
beside those nothing followed."""

import re

from django.urls import reverse
from django.utils import timezone

from approvals.models import Execution, Proposal, ProposalStatus
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from hitlproject.formats import console_time
from tests.conftest import bid_adjustment
from tests.test_attempt_keys_shown import executions_table
from tests.test_attempts_said_alike import EXECUTIONS, executions_list, text
from tests.test_stopped_agent_not_run import approved_here, stop


def failed_once(channel) -> Proposal:
    """A webhook proposal whose first attempt was answered 503: attempt 2 is scheduled."""
    channel(503, 200)
    proposal = approved_here(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    return proposal


def test_a_failed_attempt_whose_retry_is_scheduled_says_when_it_is_tried_again(channel, login):
    proposal = failed_once(channel)
    due = ExecutionRound.objects.get(proposal=proposal).lease_until
    assert due > timezone.now()
    said = f"Failed, to be tried again at {console_time(due)}"
    operator = login("operator")

    page = text(operator.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])).text)
    assert f"attempt 2 is due at {console_time(due)}" in page  # the status line, as before
    head, rows = executions_table(operator, proposal)
    assert [row[head.index("Status")] for row in rows] == [said]
    [attempt] = proposal.executions.all()
    assert executions_list(operator)[attempt.pk]["Status"] == said
    own = operator.get(reverse("admin:approvals_execution_change", args=[attempt.pk])).text
    assert text(re.search(r"<h2>(.*?)</h2>", own, re.S).group(1)) == (
        f"#{proposal.pk} attempt 1: {said}"
    )
    assert f"Status: {said}" in text(own)

    # Once its time has passed and before a worker takes it up: still to be tried again.
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())
    due = ExecutionRound.objects.get(proposal=proposal).lease_until
    head, rows = executions_table(operator, proposal)
    assert (
        rows[0][head.index("Status")] == f"Failed, to be tried again (due at {console_time(due)})"
    )
    # Tried again: said so, and the one that succeeded, as before.
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED
    head, rows = executions_table(operator, proposal)
    assert [row[head.index("Status")] for row in rows] == ["Failed, tried again", "Succeeded"]


def test_the_list_of_executions_filters_failed_attempts_by_what_came_of_them(channel, login):
    waiting = failed_once(channel)  # attempt 1 to be tried again
    channel(503, 200)
    ended = approved_here(bid_adjustment("1.60", campaign="generic-search"))
    assert proposal_execute(proposal_id=ended.pk).status == ProposalStatus.EXECUTING
    stop("deactivated")  # attempt 2 refused: the proposal fails, nothing more is tried
    ExecutionRound.objects.filter(proposal=ended).update(lease_until=timezone.now())
    assert proposal_execute(proposal_id=ended.pk).status == ProposalStatus.FAILED
    ids = {
        (execution.proposal_id, execution.attempt): execution.pk
        for execution in Execution.objects.filter(proposal__in=[waiting, ended])
    }
    operator = login("operator")

    def listed(status: str) -> set[tuple[int, int]]:
        rows = executions_list(operator, status=status)
        return {key for key, pk in ids.items() if pk in rows}

    assert listed("failed_to_be_tried_again") == {(waiting.pk, 1)}
    assert listed("failed_tried_again") == {(ended.pk, 1)}
    assert listed("failed") == {(ended.pk, 2)}  # it read every failed attempt, (waiting, 1) too
    filters = text(operator.get(EXECUTIONS).text)
    for label in ("Failed, nothing more tried", "Failed, to be tried again", "Failed, tried again"):
        assert label in filters
