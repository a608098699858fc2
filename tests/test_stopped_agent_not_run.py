"""Nothing an agent proposed runs once it has been deactivated or has lost the account, however
far it had come: approved (by the policy engine or a person) and still waiting for the
executor, or between two attempts on its channel's endpoint. The executor fails it, saying
why, and nothing reaches the ledger or the channel."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from approvals.models import Agent, ProposalStatus
from approvals.services.decisions import proposal_approve
from executors import webhook
from executors.models import ExecutionRound
from executors.runner import proposal_execute, proposals_execute
from ledger.models import Campaign
from tests.conftest import bid_adjustment, reallocation
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


@pytest.mark.parametrize("how", ["deactivated", "account taken away"])
def test_an_auto_approved_action_still_queued_does_not_run_once_its_agent_is_stopped(
    demo_world, how
):
    proposal = evaluated(bid_adjustment("2.12"))  # 6%: the policy engine approves it
    assert proposal.status == ProposalStatus.APPROVED
    said = stop(how)

    ran = proposal_execute(proposal_id=proposal.pk)

    assert ran.status == ProposalStatus.FAILED
    assert said in ran.executions.get().error
    assert bid() == Decimal("2.00")


def test_one_stopped_agent_s_action_in_a_set_does_not_run_and_the_others_do(demo_world):
    mine = evaluated(bid_adjustment("2.12"))
    theirs = evaluated(bid_adjustment("1.55", campaign="generic-search"), agent="copywriter")
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
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING  # 503
    said = stop(how)
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())

    ran = proposal_execute(proposal_id=proposal.pk)

    assert ran.status == ProposalStatus.FAILED
    error = ran.executions.order_by("attempt").last().error
    assert error == (
        f"Stopped: {said}. Attempt 1 was sent to the channel before (“the endpoint answered "
        "HTTP 503”): check on the channel that it was not carried out."
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
    proposal = evaluated(bid_adjustment("2.12"))

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
        "while the request was under way”): check on the channel that it was not carried out.",
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
    proposal = evaluated(bid_adjustment("2.12"))

    ran = proposal_execute(proposal_id=proposal.pk)

    assert len(endpoint.received) == 1
    assert ran.status == ProposalStatus.EXECUTED, ran.executions.get().error
    assert bid() == Decimal("2.12")
    assert ran.executions.get().after_state == {"brand-search": {"bid": "2.12"}}
