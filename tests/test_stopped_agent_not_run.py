"""Nothing an agent proposed runs once it has been deactivated or has lost the account, however
far it had come: approved (by the policy engine or a person) and still waiting for the
executor, or between two attempts on its channel's endpoint. The executor fails it, saying
why, and nothing reaches the ledger or the channel."""

import threading
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django.utils import timezone

from approvals.models import Agent, Proposal, ProposalStatus
from approvals.services.acts import AgentMayNoLongerAct
from approvals.services.decisions import proposal_approve
from executors import webhook
from executors.models import ExecutionRound
from executors.runner import proposal_execute, proposals_execute
from ledger.models import Campaign
from tests.conftest import (
    bid_adjustment,
    done_while_the_proposal_is_held,
    reallocation,
    wait_until,
    waits_for_a_lock,
)
from tests.factories import evaluated


def stop(how: str) -> str:
    """Take the optimizer's right to act on demo away, ``how``; the words the failure says."""
    agent = Agent.objects.get(name="optimizer")
    if how == "deactivated":
        agent.is_active = False
        agent.save()
        return "agent optimizer has been deactivated since it proposed it"
    agent.accounts.clear()
    return "agent optimizer may no longer act on account demo since it proposed it"


def bid() -> Decimal:
    return Campaign.objects.get(external_id="brand-search").bid


def approved_here(body: dict, agent: str = "optimizer") -> Proposal:
    """A proposal the policy engine approves, with no execution task sent for it: only the
    executor the test calls runs it. A Celery worker an earlier test of the session started
    is still up, and took the task: it ran the action first, and the test read the channel
    before the worker's request had reached it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        return evaluated(body, agent=agent)


@pytest.mark.parametrize("how", ["deactivated", "account taken away"])
def test_an_auto_approved_action_still_queued_does_not_run_once_its_agent_is_stopped(
    demo_world, how
):
    proposal = approved_here(bid_adjustment("2.12"))  # 6%: the policy engine approves it
    assert proposal.status == ProposalStatus.APPROVED
    said = stop(how)

    ran = proposal_execute(proposal_id=proposal.pk)

    assert ran.status == ProposalStatus.FAILED
    assert said in ran.executions.get().error
    assert bid() == Decimal("2.00")


def test_one_stopped_agent_s_action_in_a_set_does_not_run_and_the_others_do(demo_world):
    mine = approved_here(bid_adjustment("2.12"))
    theirs = approved_here(bid_adjustment("1.55", campaign="generic-search"), agent="copywriter")
    stop("deactivated")

    done = proposals_execute(proposal_ids=[mine.pk, theirs.pk]).settled

    assert done[mine.pk].status == ProposalStatus.FAILED
    assert done[theirs.pk].status == ProposalStatus.EXECUTED
    assert bid() == Decimal("2.00")
    assert Campaign.objects.get(external_id="generic-search").bid == Decimal("1.55")


def test_a_person_s_approval_does_not_let_it_run_once_its_agent_is_stopped_before_it_ran(
    demo_world,
):
    proposal = evaluated(reallocation())  # 28%: waits for a person
    proposal_approve(
        proposal_id=proposal.pk, reviewer=get_user_model().objects.get(username="operator")
    )
    stop("deactivated")

    ran = proposal_execute(proposal_id=proposal.pk)

    assert ran.status == ProposalStatus.FAILED
    assert Campaign.objects.get(external_id="brand-search").daily_budget == Decimal("1000.00")


@pytest.mark.parametrize("how", ["deactivated", "account taken away"])
def test_the_next_attempt_on_the_channel_is_not_sent_once_its_agent_is_stopped(channel, how):
    endpoint = channel(503, 200)
    proposal = approved_here(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING  # 503
    said = stop(how)
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())

    ran = proposal_execute(proposal_id=proposal.pk)

    assert ran.status == ProposalStatus.FAILED
    error = ran.executions.order_by("attempt").last().error
    assert error == (
        f"Stopped: {said}. Attempt 1 was sent to the channel before and was answered HTTP 503, "
        "which does not say whether the channel carried it out."
    )
    assert len(endpoint.received) == 1 and bid() == Decimal("2.00")


def test_the_next_attempt_not_sent_after_a_429_says_the_channel_did_not_carry_it_out(channel):
    """The endpoint answered the first attempt 429 (Too Many Requests: it did nothing); its
    agent was stopped before the next. The refusal asked to check on the channel that the
    attempt was not carried out, and warned that a retry could not be told from it: the
    channel had said it was not."""
    endpoint = channel(429, 200)
    proposal = approved_here(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING  # 429
    said = stop("deactivated")
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())

    ran = proposal_execute(proposal_id=proposal.pk)

    assert ran.status == ProposalStatus.FAILED
    assert ran.executions.order_by("attempt").last().error == (
        f"Stopped: {said}. Attempt 1 was sent to the channel before (“the endpoint answered "
        "HTTP 429”), and the channel answered that it was not carried out."
    )
    assert len(endpoint.received) == 1 and bid() == Decimal("2.00")


def test_a_stopped_agent_s_action_whose_worker_died_mid_request_says_the_channel_may_have_it(
    channel, monkeypatch
):
    """Its first request went out and its worker died before the answer; then its agent was
    stopped. The next attempt is not sent, and the failure says so: the ledger cannot know
    whether the channel carried out the first, so the person reading it must look there,
    not take "Stopped" for "nothing happened"."""
    endpoint = channel(200)
    proposal = approved_here(bid_adjustment("2.12"))

    def killed(request, account):
        raise KeyboardInterrupt("the worker was killed")

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(webhook, "_post", killed)
        proposal_execute(proposal_id=proposal.pk)
    said = stop("deactivated")
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())

    ran = proposal_execute(proposal_id=proposal.pk)

    assert ran.status == ProposalStatus.FAILED
    assert [e.error for e in ran.executions.order_by("attempt")] == [
        "the worker stopped while the request was under way",
        f"Stopped: {said}. Attempt 1 was sent to the channel before (“the worker stopped "
        "while the request was under way”) and got no answer that says whether the channel "
        "carried it out.",
    ]
    assert endpoint.received == [] and bid() == Decimal("2.00")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["deactivated", "account taken away"])
def test_an_action_the_channel_carried_out_as_its_agent_was_stopped_is_recorded_as_done(
    channel, how
):
    """The agent was stopped while its approved bid was on its way to the channel, which
    carried it out. The executor then refused to record what the channel had done ("Carried
    out on the channel, but the ledger refuses it: Stopped: agent optimizer has been
    deactivated…"): the proposal failed and the ledger kept 2.00 while the channel had 2.12,
    so what came next was judged against a bid no longer there. Stopping an agent stops what
    has not started; what the channel did is on record."""
    endpoint = channel(200)
    endpoint.while_first_request = lambda: stop(how)
    proposal = approved_here(bid_adjustment("2.12"))

    ran = proposal_execute(proposal_id=proposal.pk)

    assert len(endpoint.received) == 1
    assert ran.status == ProposalStatus.EXECUTED, ran.executions.get().error
    assert bid() == Decimal("2.12")
    assert ran.executions.get().after_state == {"brand-search": {"bid": "2.12"}}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["deactivated", "account taken away"])
def test_an_agent_stopped_while_the_executor_waits_for_its_proposal_does_not_have_it_run(
    demo_world, how
):
    """The executor came for an approved bid while another transaction held the proposal (a
    decision, a claim); the agent was stopped and that transaction committed, and only then
    did the executor get the proposal. It ran the bid all the same: it had read the agent as
    it was when it began to wait, so the owner saw the agent deactivated, then its action
    carried out."""
    proposal = approved_here(bid_adjustment("2.12"))  # only the executor below runs it
    assert proposal.status == ProposalStatus.APPROVED
    said = []

    ran = done_while_the_proposal_is_held(
        proposal.pk,
        lambda: proposal_execute(proposal_id=proposal.pk),
        lambda: said.append(stop(how)),
    )

    assert ran.status == ProposalStatus.FAILED
    assert ran.executions.get().error == f"Stopped: {said[0]}."
    assert bid() == Decimal("2.00")


@pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"],
    reason="SQLite takes one writer at a time: two transactions cannot overlap there",
)
@pytest.mark.django_db(transaction=True)
def test_an_agent_deactivated_while_its_action_is_carried_out_waits_for_it_and_deadlocks_nothing(
    demo_world,
):
    """The executor holds the proposal and its agent, then waits for the campaign (another
    transaction has it); the agent's owner deactivates the agent meanwhile. The deactivation
    waits for the action, which ends executed, and is then saved: both finish, in that order,
    as the history tells them."""
    proposal = approved_here(bid_adjustment("2.12"))  # only the executor below runs it
    holder = connections.create_connection("default")
    holder.set_autocommit(False)
    outcome: dict = {}

    def execute() -> None:
        connection.ensure_connection()
        outcome["executor"] = connection.connection.info.backend_pid
        try:
            outcome["executed"] = proposal_execute(proposal_id=proposal.pk).status
        finally:
            connection.close()

    def deactivate() -> None:
        connection.ensure_connection()
        outcome["deactivation"] = connection.connection.info.backend_pid
        try:
            outcome["said"] = stop("deactivated")
        finally:
            connection.close()

    executor, deactivation = threading.Thread(target=execute), threading.Thread(target=deactivate)
    try:
        with holder.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {Campaign._meta.db_table} WHERE external_id = 'brand-search' "
                "FOR UPDATE"
            )
        executor.start()
        wait_until(lambda: waits_for_a_lock(executor, outcome.get("executor")), interval=0.01)
        deactivation.start()
        wait_until(  # it waits for the executor (before, it was saved at once)
            lambda: (
                "said" in outcome or waits_for_a_lock(deactivation, outcome.get("deactivation"))
            ),
            interval=0.01,
        )
    finally:
        holder.rollback()
        holder.close()
        executor.join()
        deactivation.join()

    assert outcome["executed"] == ProposalStatus.EXECUTED and bid() == Decimal("2.12")
    assert not Agent.objects.get(name="optimizer").is_active
    executed_at = proposal.history.get(status=ProposalStatus.EXECUTED).history_date
    deactivated_at = Agent.history.get(name="optimizer", is_active=False).history_date
    assert executed_at < deactivated_at


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["deactivated", "account taken away"])
def test_an_agent_stopped_while_an_approval_waits_for_its_proposal_is_not_approved(demo_world, how):
    """A reviewer approved while another transaction held the proposal (another decision, a
    Slack update); the agent was deactivated and that transaction committed, and only then
    did the approval get the proposal. It answered "approved", read from the agent as it was
    when it began to wait, and the executor then failed the action "Stopped": the reviewer
    saw an approval of an agent already stopped. Now it is refused, saying why, and the
    proposal still waits (to be rejected or withdrawn)."""
    proposal = evaluated(bid_adjustment("2.60"))  # 30%: a person decides
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    operator = get_user_model().objects.get(username="operator")
    said = []

    with pytest.raises(AgentMayNoLongerAct) as refused:
        done_while_the_proposal_is_held(
            proposal.pk,
            lambda: proposal_approve(proposal_id=proposal.pk, reviewer=operator),
            lambda: said.append(stop(how)),
        )

    assert said[0].removesuffix(" since it proposed it") in str(refused.value)
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    assert not proposal.decisions.exists()
    assert not proposal.executions.exists()
    assert bid() == Decimal("2.00")
