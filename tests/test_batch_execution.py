"""A batch's approved proposals are executed together: sent in a few messages, carried out
in one transaction where nothing but doing them is needed, and each one ends exactly as it
would alone, with the same records: one attempt, the ledger changed once, its moves
(approved → executing → executed) in history by the executor. One that needs more (a kill
switch, a target moved, a guardrail refusing it, a neighbour in the set on its campaign)
is carried out alone, as before."""

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from approvals.models import Execution, Proposal, ProposalStatus
from approvals.services import supersession
from approvals.services.lifecycle import EXECUTE_PROPOSALS, enqueue_executions_after_commit
from approvals.services.proposals import proposal_evaluate
from executors import tasks
from executors.runner import proposals_execute
from executors.tasks import execute_proposal, execute_proposals, send_execution_request
from hitlproject import queueing
from hitlproject.celery import route_task
from ledger.models import Account, Campaign
from policies.models import KillSwitch
from tests.conftest import bid_adjustment, reallocation, wait_until
from tests.factories import evaluated, submitted


def campaigns(*external_ids: str, bid: str = "1.00", budget: str = "100.00") -> None:
    demo = Account.objects.get(external_id="demo")
    Campaign.objects.bulk_create(
        Campaign(account=demo, external_id=external_id, name=external_id,
                 daily_budget=Decimal(budget), bid=Decimal(bid))
        for external_id in external_ids
    )  # fmt: skip


def approved(body: dict) -> Proposal:
    proposal = evaluated(body)
    assert proposal.status == ProposalStatus.APPROVED, proposal.verdict_reasons
    return proposal


def budget_change(new_daily_budget: str, campaign: str) -> dict:
    return bid_adjustment(action_type="budget_change") | {
        "payload": {"campaign": campaign, "new_daily_budget": new_daily_budget}
    }


def moves(proposal: Proposal) -> list[tuple[str, str, str]]:
    return list(
        Proposal.history.filter(id=proposal.pk)
        .order_by("history_id")
        .values_list("status", "history_actor_kind", "history_actor")
    )


def attempts(proposal: Proposal) -> list[tuple[int, str]]:
    return list(
        Execution.objects.filter(proposal=proposal)
        .order_by("attempt")
        .values_list("attempt", "status")
    )


@pytest.mark.django_db
def test_each_proposal_of_a_set_ends_as_it_would_alone(demo_world):
    campaigns("pair", "capped")
    clean = approved(bid_adjustment("1.57", "generic-search"))
    first = approved(bid_adjustment("1.05", "pair"))
    # Made against 1.00, as the first was: the engine now sends it to a person (the first
    # changes pair's bid first); approved as earlier releases approved it.
    second = evaluated(bid_adjustment("1.04", "pair"))
    Proposal.objects.filter(pk=second.pk).update(status=ProposalStatus.APPROVED)
    second.refresh_from_db()
    moved = approved(bid_adjustment("2.10", "brand-search"))
    refused = approved(budget_change("105.00", "capped"))
    # Since their approval: someone set brand-search's bid, and a cap on capped's budget.
    Campaign.objects.filter(external_id="brand-search").update(bid=Decimal("2.05"))
    Campaign.objects.filter(external_id="capped").update(max_daily_budget=Decimal("102.00"))
    everyone = [refused, moved, second, first, clean]

    executions = proposals_execute(proposal_ids=[proposal.pk for proposal in everyone])

    status = {pk: proposal.status for pk, proposal in executions.settled.items()}
    assert status == {
        clean.pk: ProposalStatus.EXECUTED,
        first.pk: ProposalStatus.EXECUTED,
        second.pk: ProposalStatus.SUPERSEDED,
        moved.pk: ProposalStatus.SUPERSEDED,
        refused.pk: ProposalStatus.FAILED,
    }
    assert executions.for_channel == []
    for proposal in everyone:  # as recorded, not only as returned
        assert Proposal.objects.get(pk=proposal.pk).status == status[proposal.pk]
    bids = dict(Campaign.objects.values_list("external_id", "bid"))
    assert (bids["generic-search"], bids["pair"], bids["brand-search"]) == (
        Decimal("1.57"),
        Decimal("1.05"),
        Decimal("2.05"),
    )
    assert Campaign.objects.get(external_id="capped").daily_budget == Decimal("100.00")

    # The records each would have alone: every move by its actor, one attempt where one ran.
    executor = ("system", "executor")
    assert moves(clean) == [
        ("submitted", "agent", "optimizer"),
        ("approved", "system", "policy-engine"),
        ("executing", *executor),
        ("executed", *executor),
    ]
    # Its failure then told to whom the routes name, as its history says last.
    assert moves(refused)[-3:] == [
        ("executing", *executor),
        ("failed", *executor),
        ("failed", "system", "notifications"),
    ]
    assert attempts(clean) == attempts(first) == [(1, "succeeded")]
    assert attempts(refused) == [(1, "failed")]
    assert attempts(second) == attempts(moved) == []
    assert Execution.objects.get(proposal=refused).error == (
        "A guardrail refuses it now: capped's daily budget would be 105.00 "
        "USD, above its cap of 102.00 USD."
    )
    assert Proposal.objects.get(pk=second.pk).verdict_reasons[0] == (
        f"Superseded: pair's bid is 1.05, was 1.00 (#{first.pk} changed it first: "
        f"{first.summary}). It was not executed."
    )
    change = Campaign.history.filter(external_id="generic-search").latest("history_id")
    assert (change.bid, change.history_actor, change.history_change_reason) == (
        Decimal("1.57"),
        "executor",
        f"proposal #{clean.pk}: {clean.summary}",
    )
    executed = Proposal.objects.get(pk=clean.pk)
    assert executed.executed_at is not None
    assert Execution.objects.get(proposal=clean).before_state == {"generic-search": {"bid": "1.50"}}

    # Sent again (a redelivered message): nothing more happens.
    again = proposals_execute(proposal_ids=[proposal.pk for proposal in everyone])
    assert {pk: proposal.status for pk, proposal in again.settled.items()} == status
    assert Execution.objects.filter(proposal__in=everyone).count() == 3
    assert (
        Campaign.history.filter(external_id="generic-search", history_actor="executor").count() == 1
    )


@pytest.mark.django_db
def test_a_kill_switch_holds_back_every_proposal_of_a_set(demo_world):
    one = approved(bid_adjustment("2.04", "brand-search"))
    other = approved(bid_adjustment("1.52", "generic-search"))
    KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="Outage."
    )

    executions = proposals_execute(proposal_ids=[one.pk, other.pk])

    assert {proposal.status for proposal in executions.settled.values()} == {"pending_review"}
    assert Proposal.objects.get(pk=one.pk).verdict_reasons[0] == (
        "Held back before executing: the kill switch on account demo is engaged: Outage. "
        "A person must approve it again."
    )
    assert not Execution.objects.filter(proposal__in=[one, other]).exists()
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.00")


@pytest.mark.django_db
def test_an_execution_takes_along_the_approved_proposals_still_waiting_for_theirs(demo_world):
    """Under load each single submission's execution is its own message; the first to run
    carries out, together, the others already approved, and their own messages then find
    nothing to do. One that needs more than doing is left to its own message."""
    campaigns("one", "two", "three")
    first = approved(bid_adjustment("1.05", "one"))
    second = approved(bid_adjustment("1.04", "two"))
    third = approved(bid_adjustment("1.03", "three"))
    moved = approved(bid_adjustment("2.10", "brand-search"))
    Campaign.objects.filter(external_id="brand-search").update(bid=Decimal("2.05"))

    execute_proposals([first.pk])

    for proposal, bid in [(first, "1.05"), (second, "1.04"), (third, "1.03")]:
        proposal.refresh_from_db()
        assert proposal.status == ProposalStatus.EXECUTED
        assert attempts(proposal) == [(1, "succeeded")]
        assert Campaign.objects.get(external_id=proposal.payload["campaign"]).bid == Decimal(bid)
    moved.refresh_from_db()
    assert moved.status == ProposalStatus.APPROVED, "left to its own execution"
    assert attempts(moved) == []

    for proposal in (second, third, moved):
        execute_proposals([proposal.pk])

    for proposal in (first, second, third):
        assert attempts(proposal) == [(1, "succeeded")], "carried out once"
        assert [status for status, *_ in moves(proposal)][-2:] == ["executing", "executed"]
    moved.refresh_from_db()
    assert moved.status == ProposalStatus.SUPERSEDED


@pytest.mark.django_db
def test_a_task_out_of_time_sends_the_rest_on_behind_other_agents_executions(
    demo_world, monkeypatch, settings
):
    """Reallocations sharing campaigns each run alone, one after the other (each re-assessing
    the proposals waiting on them): a batch's hundred held a worker for minutes while other
    agents' approved actions waited. Past its time a task leaves the rest, having done at
    least one, and sends them on in a message of their own, behind those queued meanwhile."""
    settings.EXECUTION_ALONE_SECONDS = 0
    sent = []
    monkeypatch.setattr(tasks, "_send_each", lambda task, arguments: sent.append((task, arguments)))
    reallocations = [approved(reallocation("10.00")) for _ in range(3)]

    execute_proposals([proposal.pk for proposal in reallocations])

    statuses = [Proposal.objects.get(pk=proposal.pk).status for proposal in reallocations]
    assert statuses == [ProposalStatus.EXECUTED, ProposalStatus.APPROVED, ProposalStatus.APPROVED]
    assert sent == [(EXECUTE_PROPOSALS, [[reallocations[1].pk, reallocations[2].pk]])]

    while sent:  # the worker takes each message in its turn
        _, [ids] = sent.pop(0)
        execute_proposals(ids)

    assert [attempts(proposal) for proposal in reallocations] == [[(1, "succeeded")]] * 3
    assert Campaign.objects.get(external_id="brand-search").daily_budget == Decimal("970.00")


@pytest.mark.django_db
def test_one_taken_along_that_cannot_be_done_together_leaves_the_rest_together(demo_world):
    """A waiting proposal that breaks the set (its action type no longer exists) is left to
    its own task; the task's own proposals are still carried out together, not each alone."""
    campaigns("one", "two", "three")
    broken = approved(bid_adjustment("1.05", "three"))
    Proposal.objects.filter(pk=broken.pk).update(action_type="retired_action")
    first = approved(bid_adjustment("1.05", "one"))
    second = approved(bid_adjustment("1.04", "two"))

    execute_proposals([first.pk, second.pk])

    done = Execution.objects.filter(proposal__in=[first, second])
    assert sorted(done.values_list("status", flat=True)) == ["succeeded", "succeeded"]
    assert len(set(done.values_list("started_at", flat=True))) == 1, "in one transaction"
    assert Proposal.objects.get(pk=broken.pk).status == ProposalStatus.APPROVED
    assert attempts(broken) == []


@pytest.mark.django_db
def test_a_set_costs_the_same_statements_whatever_its_size(demo_world):
    """Executing a set is a few statements for the whole set, not a few per proposal."""
    campaigns(*(f"c-{n}" for n in range(12)))
    small = [approved(bid_adjustment("1.05", f"c-{n}")).pk for n in range(2)]
    large = [approved(bid_adjustment("1.05", f"c-{n}")).pk for n in range(2, 12)]

    with CaptureQueriesContext(connection) as two:
        proposals_execute(proposal_ids=small)
    with CaptureQueriesContext(connection) as ten:
        proposals_execute(proposal_ids=large)

    assert Proposal.objects.filter(pk__in=small + large, status="executed").count() == 12
    assert len(ten.captured_queries) == len(two.captured_queries)


def test_approvals_sends_the_executors_task_by_name_after_commit_100_to_a_message(
    db, monkeypatch, django_capture_on_commit_callbacks
):
    """Approvals never imports the executors app: it sends the task by its name, which is
    the executors' task's, routed as before (the default queue; channel requests to theirs)."""
    sent = []
    monkeypatch.setattr(
        queueing.app, "send_task", lambda name, args, **options: sent.append((name, args))
    )
    with django_capture_on_commit_callbacks(execute=True):
        enqueue_executions_after_commit(list(range(1, 251)))
        assert sent == []  # nothing before the commit
    assert [name for name, _ in sent] == [EXECUTE_PROPOSALS] * 3
    assert [len(ids) for _, (ids,) in sent] == [84, 84, 82]
    assert sorted(i for _, (ids,) in sent for i in ids) == list(range(1, 251))
    assert execute_proposals.name == EXECUTE_PROPOSALS
    assert route_task(EXECUTE_PROPOSALS, (), {}, {}) is None
    assert route_task(send_execution_request.name, (), {}, {})["queue"].endswith(".webhooks")


@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
@pytest.mark.django_db(transaction=True)
def test_a_batch_sent_together_is_executed_by_the_worker_once_each(demo_world, monkeypatch):
    count = 120  # more than a message's worth
    campaigns(*(f"c-{n}" for n in range(count + 1)))
    with monkeypatch.context() as patch:  # approved, with no task sent yet
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        ids = [
            proposal_evaluate(proposal_id=submitted(bid_adjustment("1.05", f"c-{n}")).pk).pk
            for n in range(count + 1)
        ]
    assert Proposal.objects.filter(pk__in=ids, status="approved").count() == count + 1

    with transaction.atomic():
        enqueue_executions_after_commit(ids[:count])
    execute_proposal.delay(ids[count])  # a message of the single-id task, as queued before

    executed = Proposal.objects.filter(pk__in=ids, status="executed")
    wait_until(lambda: executed.count() == count + 1, timeout=120)
    assert set(Execution.objects.filter(proposal__in=ids).values_list("attempt", "status")) == {
        (1, "succeeded")
    }
    assert Execution.objects.filter(proposal__in=ids).count() == count + 1
    assert set(
        Campaign.objects.filter(external_id__startswith="c-").values_list("bid", flat=True)
    ) == {Decimal("1.05")}
    by_executor = Campaign.history.filter(external_id__startswith="c-", history_actor="executor")
    assert by_executor.count() == count + 1  # each campaign changed once


@pytest.mark.django_db
def test_a_set_of_1500_is_executed_together_on_either_database(demo_world, optimizer):
    """More than a thousand approved proposals at once (a backlog taken along after a
    restart, a sweep): each on a campaign of its own, all executed, as fewer would be.
    SQLite refused the statements (an expression tree deeper than it allows) and none ran."""
    names = [f"c{i:04}" for i in range(1500)]
    campaigns(*names)
    for start in range(0, 1500, 750):  # the documented batch is at most 1,000 items
        response = optimizer.post(
            "/api/v1/proposals/batch/",
            [bid_adjustment("1.05", name) for name in names[start : start + 750]],
            format="json",
        )
        assert response.status_code == 200
    everyone = list(Proposal.objects.values_list("pk", flat=True))
    assert len(everyone) == 1500
    assert set(Proposal.objects.values_list("status", flat=True)) == {ProposalStatus.APPROVED}

    executions = proposals_execute(proposal_ids=everyone)

    assert len(executions.settled) == 1500 and executions.for_channel == []
    assert set(Proposal.objects.values_list("status", flat=True)) == {ProposalStatus.EXECUTED}
    assert set(Campaign.objects.filter(external_id__in=names).values_list("bid", flat=True)) == {
        Decimal("1.05")
    }
    assert Execution.objects.filter(status="succeeded").count() == 1500


@pytest.mark.django_db
def test_a_change_supersedes_every_proposal_made_against_it_whatever_a_statement_holds(
    demo_world, monkeypatch
):
    """The proposals made against a changed value are locked a few thousand ids a statement
    (a database refuses a statement of more than 32,766 or 65,535 parameters): asked about
    two at a time here, all five waiting raises of brand-search's bid made against 2.00 are
    superseded once a 5% raise executes, none left waiting on a premise that is gone."""
    monkeypatch.setattr(supersession, "PROPOSALS_AT_ONCE", 2)
    waiting = [evaluated(bid_adjustment("2.50")) for _ in range(5)]
    assert {proposal.status for proposal in waiting} == {ProposalStatus.PENDING_REVIEW}
    first = approved(bid_adjustment("2.10"))

    proposals_execute(proposal_ids=[first.pk])

    assert Proposal.objects.get(pk=first.pk).status == ProposalStatus.EXECUTED
    assert set(
        Proposal.objects.filter(pk__in=[p.pk for p in waiting]).values_list("status", flat=True)
    ) == {ProposalStatus.SUPERSEDED}
