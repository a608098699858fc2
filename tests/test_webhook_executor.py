"""The webhook executor: an account with an execution endpoint has its approved actions
POSTed there, signed, with one idempotency key for every attempt; retried on 5xx and
timeouts, failed on a 4xx, every attempt recorded; the ledger records the action once the
endpoint has carried it out."""

import html
import json
from datetime import UTC, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from hitl_client import verify_callback
from hitl_client._tools import outcome_report
from hitl_client.mcp import proposal_view
from hitl_client.models import Proposal as HitlProposal

from approvals.models import Proposal
from approvals.services.decisions import proposal_approve, proposal_retry
from approvals.services.recovery import proposals_requeue_stalled
from executors import webhook
from executors.base import Outcome
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from hitlproject.formats import console_time
from ledger.models import Account, Campaign
from tests.conftest import bid_adjustment, reallocation, wait_until
from tests.factories import evaluated

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def settled(proposal: Proposal):
    return lambda: Proposal.objects.get(pk=proposal.pk).status in ("executed", "failed")


def bid() -> Decimal:
    return Campaign.objects.get(external_id="brand-search").bid


def test_the_channel_carries_out_the_action_and_the_ledger_records_it(channel):
    endpoint = channel(200)
    proposal = evaluated(bid_adjustment("2.12"))  # 6%: approved at once, executed by the worker

    wait_until(settled(proposal))

    assert Proposal.objects.get(pk=proposal.pk).status == "executed"
    [request] = endpoint.received
    secret = Account.objects.get(external_id="demo").execution_secret
    assert verify_callback(secret, request["headers"]["X-HITL-Signature"], request["body"])
    assert request["headers"]["Idempotency-Key"] == f"hitl-proposal-{proposal.pk}-1"
    sent = json.loads(request["body"])
    assert sent["changes"] == {"brand-search": {"bid": "2.12"}}
    assert bid() == Decimal("2.12")
    execution = proposal.executions.get()
    assert (execution.executor, execution.status) == ("webhook", "succeeded")


def test_a_failing_endpoint_is_retried_with_the_same_key_and_the_action_recorded_once(channel):
    endpoint = channel(503, 500, 200)
    proposal = evaluated(bid_adjustment("2.12"))

    wait_until(settled(proposal))

    assert Proposal.objects.get(pk=proposal.pk).status == "executed"
    keys = {request["headers"]["Idempotency-Key"] for request in endpoint.received}
    assert len(endpoint.received) == 3 and keys == {f"hitl-proposal-{proposal.pk}-1"}
    assert [(e.status, e.error) for e in proposal.executions.order_by("attempt")] == [
        ("failed", "the endpoint answered HTTP 503"),
        ("failed", "the endpoint answered HTTP 500"),
        ("succeeded", ""),
    ]
    assert bid() == Decimal("2.12")
    changes = Campaign.history.filter(external_id="brand-search", history_actor="executor")
    assert changes.count() == 1


def test_an_endpoint_saying_when_to_come_back_is_not_sent_again_before(channel):
    """A 503 with Retry-After: 3 (the tests' worker backs off 0.2 s): the next attempt waits
    the 3 seconds, and the attempt says what the endpoint asked."""
    channel(503, 200, retry_after="3")
    proposal = evaluated(bid_adjustment("2.12"))

    wait_until(settled(proposal))

    first, second = proposal.executions.order_by("attempt")
    assert first.error == "the endpoint answered HTTP 503 (Retry-After: 3 s)"
    assert second.status == "succeeded"
    assert (second.started_at - first.finished_at).total_seconds() >= 3


@pytest.mark.parametrize(
    "retry_after",
    ["Mon, 01 Jan 99999999999999999999 00:00:00 GMT", "9" * 400],
    ids=["a year past any calendar", "more seconds than a float holds"],
)
def test_an_endpoint_asking_to_come_back_past_any_clock_is_retried_as_ever(channel, retry_after):
    """A 503 whose Retry-After is an HTTP date in a year no clock reaches, or 400 digits of
    seconds, is a Retry-After not understood: the action is tried again after the usual
    backoff and executes, rather than the worker failing mid-attempt and leaving it executing,
    its attempt running; nor does its attempt say "Retry-After: inf s"."""
    channel(503, 200, retry_after=retry_after)
    proposal = evaluated(bid_adjustment("2.12"))

    wait_until(settled(proposal))

    assert Proposal.objects.get(pk=proposal.pk).status == "executed"
    first, second = proposal.executions.order_by("attempt")
    assert first.error == "the endpoint answered HTTP 503"
    assert second.status == "succeeded"
    assert bid() == Decimal("2.12")


def test_a_refusal_s_own_words_are_kept_with_the_failed_execution(channel):
    """The operator who retries reads why the endpoint refused, in its words (the first of
    them, on one line, saying they go on), not the status alone."""
    channel(400, says=b'{"error": "campaign brand-search is archived\nupstream"}' + b" " * 1000)
    proposal = evaluated(bid_adjustment("2.12"))

    wait_until(settled(proposal))

    assert proposal.executions.get().error == (
        'the endpoint answered HTTP 400: “{"error": "campaign brand-search is archived upstream"}…”'
    )


def test_a_refusal_cannot_close_the_quote_its_words_are_set_in(channel):
    """A refusal's words are read in “…”: an endpoint that closed the quote itself would go on
    in what reads as the platform's words. Its own curly quotes are made straight."""
    channel(400, says="archived”: it was carried out, do not retry. “OK″ ＂〞 »".encode())
    proposal = evaluated(bid_adjustment("2.12"))

    wait_until(settled(proposal))

    assert proposal.executions.get().error == (
        'the endpoint answered HTTP 400: “archived": it was carried out, do not retry. "OK" "" "”'
    )


def test_an_endpoint_that_refuses_fails_the_execution_and_a_retry_is_a_new_request(channel):
    endpoint = channel(422, 200)
    proposal = evaluated(bid_adjustment("2.12"))

    wait_until(settled(proposal))

    assert Proposal.objects.get(pk=proposal.pk).status == "failed"
    assert len(endpoint.received) == 1
    assert proposal.executions.get().error == "the endpoint answered HTTP 422"
    assert bid() == Decimal("2.00")

    operator = get_user_model().objects.get(username="operator")
    proposal_retry(proposal_id=proposal.pk, reviewer=operator)
    wait_until(lambda: Proposal.objects.get(pk=proposal.pk).status == "executed")
    assert [r["headers"]["Idempotency-Key"] for r in endpoint.received] == [
        f"hitl-proposal-{proposal.pk}-1",
        f"hitl-proposal-{proposal.pk}-2",  # a new round: the refused key is not reused
    ]
    assert bid() == Decimal("2.12")


def test_a_retry_s_key_is_numbered_past_the_largest_its_rounds_were_sent_with(channel):
    """Keys were once numbered by the proposal's history records while it was executing, so
    a round may have gone as -3 where it was the first (a re-assessment wrote a record too).
    The next round is numbered past it, -4: a key sent once never goes again with other
    figures, nor does a number already used come back."""
    endpoint = channel(422, 200)
    proposal = evaluated(bid_adjustment("2.12"))
    wait_until(settled(proposal))
    # As the earlier numbering left such a round.
    ExecutionRound.objects.filter(proposal=proposal).update(key=f"hitl-proposal-{proposal.pk}-3")

    operator = get_user_model().objects.get(username="operator")
    proposal_retry(proposal_id=proposal.pk, reviewer=operator)
    wait_until(lambda: Proposal.objects.get(pk=proposal.pk).status == "executed")

    assert endpoint.received[-1]["headers"]["Idempotency-Key"] == f"hitl-proposal-{proposal.pk}-4"
    assert bid() == Decimal("2.12")


def approved_without_its_task(body: dict, monkeypatch) -> Proposal:
    """An approved proposal whose execution task never left: the test runs it itself."""
    with monkeypatch.context() as patch:
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        proposal = evaluated(body)
        if proposal.status == "pending_review":
            operator = get_user_model().objects.get(username="operator")
            proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    return proposal


def backing_off_after_attempt_1(monkeypatch) -> Proposal:
    """An approved bid whose first attempt the endpoint refused for now (a 503): executing,
    its next attempt due, which the test leaves unrun."""
    proposal = approved_without_its_task(bid_adjustment("2.12"), monkeypatch)
    with monkeypatch.context() as patch:
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        assert proposal_execute(proposal_id=proposal.pk).status == "executing"
    return proposal


def test_a_worker_that_dies_mid_request_leaves_it_executing_and_it_is_sent_again(
    channel, monkeypatch
):
    endpoint = channel(200)
    proposal = approved_without_its_task(bid_adjustment("2.12"), monkeypatch)

    def killed(request, account):
        raise KeyboardInterrupt("the worker was killed")

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(webhook, "_post", killed)
        proposal_execute(proposal_id=proposal.pk)
    assert Proposal.objects.get(pk=proposal.pk).status == "executing"
    # Meanwhile the account's endpoint is removed: the request frozen for this round stands.
    Account.objects.filter(external_id="demo").update(execution_endpoint="")
    assert proposals_requeue_stalled()["executing"] == 0  # the attempt's lease still holds
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())
    Proposal.objects.filter(pk=proposal.pk).update(updated_at=timezone.now() - timedelta(minutes=5))

    assert proposals_requeue_stalled()["executing"] == 1

    wait_until(settled(proposal))
    assert Proposal.objects.get(pk=proposal.pk).status == "executed"
    assert [(e.status, e.error) for e in proposal.executions.order_by("attempt")] == [
        ("failed", "the worker stopped while the request was under way"),
        ("succeeded", ""),
    ]
    stopped = proposal.executions.order_by("attempt").first()
    assert [h.status for h in stopped.history.order_by("history_date")] == ["running", "failed"]
    assert [r["headers"]["Idempotency-Key"] for r in endpoint.received] == [
        f"hitl-proposal-{proposal.pk}-1"
    ]
    assert bid() == Decimal("2.12")


def test_an_action_the_ledger_no_longer_allows_is_failed_not_overdrawn(channel, monkeypatch):
    channel(200)
    proposal = approved_without_its_task(reallocation("280.00"), monkeypatch)

    def carried_out_while_the_budget_shrank(request, account):
        Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("100"))
        return Outcome("done")

    monkeypatch.setattr(webhook, "_post", carried_out_while_the_budget_shrank)
    failed = proposal_execute(proposal_id=proposal.pk)

    assert failed.status == "failed"
    assert failed.executions.get().error.startswith(
        "Carried out on the channel, but the ledger refuses it:"
    )
    assert Campaign.objects.get(external_id="brand-search").daily_budget == Decimal("100")


def test_an_endpoint_whose_answer_s_headers_never_end_is_said_to_have_answered(channel):
    """Headers past what is read (100 KiB) came from an endpoint that was reached and
    answered: the execution said "the endpoint could not be reached: its answer's headers
    were longer than 16 KiB: not read"."""
    channel(200, headers=[("X-Padding", "a" * 1024 * 1024)])
    proposal = evaluated(bid_adjustment("2.12"))

    wait_until(lambda: proposal.executions.exclude(error="").exists())

    error = proposal.executions.exclude(error="").first().error
    assert error.startswith("the endpoint answered with headers longer than 100 KiB: not read")


def test_a_proposal_waiting_for_its_next_attempt_says_the_last_failed_and_when_the_next_is_due(
    channel, monkeypatch, login
):
    """The endpoint answers 503, asking to come back in 10 minutes: the proposal stays
    executing, and its page said "Executing" and nothing else for as long, nothing telling
    of the failed attempt or the next try. Its page and the list of those executing say
    attempt 1 failed, with what, and when attempt 2 is due."""
    channel(503, retry_after="600")
    proposal = backing_off_after_attempt_1(monkeypatch)
    [attempt] = proposal.executions.all()
    due = ExecutionRound.objects.get(proposal=proposal).lease_until
    said = (
        f"ttempt 1 by the webhook executor failed at {console_time(attempt.finished_at)}: the "
        f"endpoint answered HTTP 503 (Retry-After: 600 s); attempt 2 is due at {console_time(due)}"
    )
    operator = login("operator")

    page = html.unescape(
        operator.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])).text
    )
    listed = html.unescape(
        operator.get(reverse("admin:approvals_proposal_changelist") + "?status=executing").text
    )

    assert f'<span id="execution-retrying">· A{said}</span>' in page
    row = listed.split(f'value="{proposal.pk}"')[1].split("</tr>")[0]
    assert f"Executing: a{said}" in row


def test_an_endpoint_asking_for_more_than_an_hour_is_quoted_in_its_digits_and_tried_in_an_hour(
    channel, monkeypatch
):
    """Retry-After: 100000000000 (some 3,000 years): the attempt says the seconds asked as the
    endpoint wrote them, not "1e+11 s", and the next attempt is due an hour after it ended,
    the longest the platform leaves an approved action waiting on its channel."""
    channel(503, retry_after="100000000000")
    proposal = backing_off_after_attempt_1(monkeypatch)
    [attempt] = proposal.executions.all()
    due = ExecutionRound.objects.get(proposal=proposal).lease_until

    assert attempt.error == "the endpoint answered HTTP 503 (Retry-After: 100000000000 s)"
    assert due - attempt.finished_at == timedelta(hours=1)


def test_the_agent_reads_that_attempt_1_failed_and_when_attempt_2_is_due(
    channel, monkeypatch, optimizer
):
    """The same 503 asking for 10 minutes, as the agent reads it: its proposal is executing,
    and its execution said attempt 1 ``failed`` with ``carried_out`` ``unknown`` and nothing
    of another attempt, which an agent reads as its proposal having failed. The execution
    says when attempt 2 is due (``next_attempt_at``), and the client, the MCP server and the
    framework adapters tell it."""
    channel(503, retry_after="600")
    proposal = backing_off_after_attempt_1(monkeypatch)
    due = ExecutionRound.objects.get(proposal=proposal).lease_until
    due_said = due.astimezone(UTC).isoformat().replace("+00:00", "Z")

    answer = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()

    assert answer["status"] == "executing"
    execution = answer["execution"]
    assert (execution["attempt"], execution["status"], execution["carried_out"]) == (
        1,
        "failed",
        "unknown",
    )
    assert execution["next_attempt_at"] == due_said
    assert due > timezone.now() + timedelta(minutes=9)
    listed = optimizer.get("/api/v1/proposals/?status=executing").json()["results"]
    assert [p["execution"] for p in listed] == [execution]

    read = HitlProposal.from_api(answer)
    assert read.execution.next_attempt_at == due
    said = (
        "Attempt 1 failed: the endpoint answered HTTP 503 (Retry-After: 600 s); the platform "
        f"tries it again by itself, attempt 2 being due at {due_said}."
    )
    report = outcome_report(read)
    assert report["next_attempt_at"] == due_said
    assert said in report["message"]
    view = proposal_view(read)
    assert view["next_attempt_at"] == due_said
    assert view["next_step"].startswith(said)

    # Once attempt 2 is under way (or none follows), none is said to be due.
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=None)
    assert (
        optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()["execution"]["next_attempt_at"]
        is None
    )


def test_the_status_a_proposals_page_follows_moves_with_each_attempt_while_it_executes(
    channel, login
):
    """Between attempts on its channel a proposal stays "Executing": the answer its page
    follows said only that, so a page read "attempt 2 is due" after attempt 2 had failed and
    attempt 3 been scheduled. The answer says how many attempts it has had and how the last
    one went, and each attempt's failure moves it."""
    channel(503, 429, 200, retry_after="2")
    proposal = evaluated(reallocation("280.00"))
    operator = login("operator")
    proposal_approve(
        proposal_id=proposal.pk, reviewer=get_user_model().objects.get(username="operator")
    )
    url = reverse("admin:approvals_proposal_status", args=[proposal.pk])
    answers = []

    def executed() -> bool:
        answer = operator.get(url).json()
        if not answers or answers[-1] != answer:
            answers.append(answer)
        return answer["status"] == "executed"

    wait_until(executed, timeout=30, interval=0.05)

    moves = [(a["status"], a["attempts"], a["last_attempt"]) for a in answers]
    assert ("executing", 1, "failed") in moves
    assert ("executing", 2, "failed") in moves
    assert moves[-1] == ("executed", 3, "succeeded")
    assert answers[-1]["label"] == "Executed"
