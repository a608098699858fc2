"""Never act on a meaning the agent did not propose (SPEC: the proposal lifecycle).

A proposal that sets a value ends ``superseded`` once another change lands on its target
first: it never executes, never reappears meaning something else, and its agent is told the
value it saw and the value now. A reallocation keeps its meaning and is re-assessed instead."""

import html
import json
import re
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hitl_client._tools import outcome_report
from hitl_client.models import Proposal as ClientProposal

from approvals.models import Agent, Decision, Execution, Proposal, ProposalStatus
from approvals.selectors import superseded_said, with_ended_recorded
from approvals.services import supersession
from approvals.services.decisions import (
    bulk_approval_plan,
    proposal_approve,
    proposal_retry,
    proposals_approve,
)
from approvals.services.proposals import verdict_for
from approvals.services.supersession import TargetMove
from executors.runner import proposal_execute
from feedback.models import CallbackEvent, Feedback
from feedback.selectors import MIN_DECISIONS_FOR_RECORD, RECORD_SPAN
from hitlproject.errors import Conflict
from ledger.models import Account, Campaign
from notifications.services import outcome_text
from policies.models import Policy
from policies.services import agent_approval_rate
from tests.conftest import bid_adjustment, decided_from_page, reallocation, wait_until
from tests.factories import evaluated
from tests.test_console_shows_what_happened import failed_budget_raise, status_line


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def bid(external_id: str = "brand-search") -> Decimal:
    return Campaign.objects.get(external_id=external_id).bid


def feedback_kinds(proposal: Proposal) -> list[str]:
    return list(
        Feedback.objects.filter(proposal=proposal).order_by("id").values_list("kind", flat=True)
    )


def test_a_change_landing_supersedes_the_proposals_made_against_the_old_value(operator, optimizer):
    Agent.objects.filter(name="optimizer").update(callback_url="https://agent.example/hook")
    small_raise = evaluated(bid_adjustment("2.10"))  # +5%: the engine approves it
    big_raise = evaluated(bid_adjustment("2.50"))  # +25%: waits for a person
    elsewhere = evaluated(bid_adjustment("2.00", campaign="generic-search"))
    assert (small_raise.status, big_raise.status) == ("approved", "pending_review")

    assert proposal_execute(proposal_id=small_raise.pk).status == ProposalStatus.EXECUTED

    # The +25% raise was made against 2.00; the bid is 2.10 now. It ends, as proposed: it
    # does not come back as "2.10 → 2.50 (+19%)", nor leave the queue holding it.
    big_raise.refresh_from_db()
    assert big_raise.status == ProposalStatus.SUPERSEDED
    assert big_raise.summary == "bid of brand-search 2.00 → 2.50 USD (+25.0%)"
    assert big_raise.verdict_reasons[0] == (
        f"Superseded: brand-search's bid is 2.10, was 2.00 (#{small_raise.pk} changed it first: "
        f"{small_raise.summary}). It was not executed."
    )
    assert Proposal.objects.get(pk=elsewhere.pk).status == ProposalStatus.PENDING_REVIEW
    # It never executes, whoever asks.
    assert proposal_execute(proposal_id=big_raise.pk).status == ProposalStatus.SUPERSEDED
    assert bid() == Decimal("2.10")
    assert not Execution.objects.filter(proposal=big_raise).exists()

    # The agent is told, in its feed and on its callback URL, with the value it saw and now.
    page = optimizer.get("/api/v1/feedback/").json()
    told = next(record for record in page["results"] if record["proposal"] == big_raise.pk)
    assert told["kind"] == "superseded"
    assert told["diff"] == {"brand-search.bid": {"saw": "2.00", "now": "2.10"}}
    answer = optimizer.get(f"/api/v1/proposals/{big_raise.pk}/").json()
    assert answer["status"] == "superseded"
    event = CallbackEvent.objects.get(proposal=big_raise)
    assert event.type == "proposal.superseded"
    assert "brand-search's bid is 2.10, was 2.00" in event.body["reason"]


def test_an_agent_is_not_told_which_of_another_agents_proposals_changed_its_target_first(
    agent_client,
):
    """An agent sees only its own proposals: superseded (or re-assessed) by a change another
    agent's proposal made, its proposal, its feedback and its callback say that another
    agent's proposal changed the value, with the value it saw and the value now, not that
    proposal's id nor what it did."""
    Agent.objects.filter(name="optimizer").update(callback_url="https://agent.example/hook")
    big_raise = evaluated(bid_adjustment("2.50"))  # the optimizer's, waiting for a person
    waiting = evaluated(reallocation("280.00"))  # the optimizer's too
    theirs = evaluated(bid_adjustment("2.05"), agent="copywriter")  # +2.5%: approved
    budget = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "brand-search", "new_daily_budget": "1050.00"}},
        agent="copywriter",
    )
    for proposal in (theirs, budget):
        assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED

    seen = agent_client("optimizer")
    superseded = seen.get(f"/api/v1/proposals/{big_raise.pk}/").json()
    reassessed = seen.get(f"/api/v1/proposals/{waiting.pk}/").json()
    feedback = seen.get("/api/v1/feedback/").json()["results"]
    callbacks = CallbackEvent.objects.filter(proposal=big_raise, type="proposal.superseded")

    assert superseded["status"] == "superseded"
    assert superseded["verdict"]["reasons"][0] == (
        "Superseded: brand-search's bid is 2.05, was 2.00 (another agent's proposal changed "
        "it first). It was not executed."
    )
    assert reassessed["verdict"]["reasons"][0].startswith(
        "Re-assessed after another agent's proposal changed it first: brand-search's daily "
        "budget went from 1000.00 to 1050.00."
    )
    told = str([superseded, reassessed, feedback, [event.body for event in callbacks]])
    assert callbacks.exists() and "another agent's proposal" in str(callbacks[0].body)
    for other in (theirs, budget):
        assert f"#{other.pk}" not in told and other.summary not in told


def test_an_approved_value_whose_target_moved_is_superseded_not_executed(operator):
    proposal = evaluated(bid_adjustment("2.50"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    # A change the platform did not make (on the channel, say) moved the bid meanwhile.
    Campaign.objects.filter(external_id="brand-search").update(bid=Decimal("2.71"))

    result = proposal_execute(proposal_id=proposal.pk)

    assert result.status == ProposalStatus.SUPERSEDED
    assert bid() == Decimal("2.71")  # not cut to 2.50: nobody proposed a cut
    assert not Execution.objects.filter(proposal=proposal).exists()
    assert feedback_kinds(proposal) == ["approved", "superseded"]


def test_approving_a_value_whose_target_moved_supersedes_it_instead(operator):
    proposal = evaluated(bid_adjustment("2.50"))
    Campaign.objects.filter(external_id="brand-search").update(bid=Decimal("2.71"))

    result = proposal_approve(proposal_id=proposal.pk, reviewer=operator)

    assert result.status == ProposalStatus.SUPERSEDED
    assert not Decision.objects.filter(proposal=proposal).exists()
    assert feedback_kinds(proposal) == ["superseded"]  # never "approved"
    assert "found when a reviewer approved it" in result.verdict_reasons[0]
    assert "operator" not in result.verdict_reasons[0]  # the agent reads it: what, not who
    assert result.history.latest("history_id").history_actor == "operator"  # who, on record


def test_a_reallocation_the_engine_approved_goes_to_a_person_when_moved_figures_need_one(
    demo_world, optimizer
):
    proposal = evaluated(reallocation("90.00"))  # 9% of 1000.00: within the 10% ceiling
    assert proposal.verdict_outcome == "auto_approve"
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("800.00"))

    result = proposal_execute(proposal_id=proposal.pk)

    # 90 of 800 is 11.25%: re-routed, and its verdict says so (not a stale auto-approve).
    assert result.status == ProposalStatus.PENDING_REVIEW
    assert result.verdict_outcome == "review"
    assert result.decided_at is None
    assert result.verdict_reasons[0] == (
        "Re-routed to a person before executing: brand-search's daily budget is 800.00, "
        "was 1000.00."
    )
    answer = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
    assert answer["verdict"]["outcome"] == "review"
    assert Campaign.objects.get(external_id="brand-search").daily_budget == Decimal("800.00")


def test_feedback_says_approved_only_once_a_proposal_is_approved_to_run(operators):
    first, second = operators
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = evaluated(reallocation("280.00"))

    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=first,
        edited_payload={**proposal.payload, "amount": "250.00"},
        note="Less, for now.",
    )
    assert feedback_kinds(proposal) == []  # one approval of two: nothing is approved yet

    proposal_approve(proposal_id=proposal.pk, reviewer=second)
    told = Feedback.objects.get(proposal=proposal)
    assert told.kind == "approved_with_edits"
    assert told.diff == {"amount": {"from": "280.00", "to": "250.00"}}


def test_bulk_approval_approves_only_what_will_run_as_approved(operator):
    bids = [evaluated(bid_adjustment(new)) for new in ("2.50", "2.60", "2.40")]
    elsewhere = evaluated(bid_adjustment("2.00", campaign="generic-search"))
    moves = [evaluated(reallocation(amount)) for amount in ("280.00", "300.00")]
    selected = [*bids, elsewhere, *moves]
    assert {p.status for p in selected} == {"pending_review"}

    plan = bulk_approval_plan(proposal_ids=[p.pk for p in selected], reviewer=operator)
    decided = proposals_approve(proposal_ids=[p.pk for p in selected], reviewer=operator)

    # The plan the confirmation page shows is what the approval did.
    assert decided.held.keys() == plan.held.keys()
    first_bid = next(p for p in plan.proposals if p.pk in {b.pk for b in bids})
    assert plan.held.keys() == {b.pk for b in bids} - {first_bid.pk}
    for held in plan.held.values():
        assert f"would be superseded once #{first_bid.pk} executes" in held.message
    approved = {p.pk for p in decided.approved}
    assert approved == {first_bid.pk, elsewhere.pk, *(m.pk for m in moves)}

    # Executed in any order, each approved proposal runs as approved; none is superseded.
    for proposal_id in sorted(approved, reverse=True):
        proposal_execute(proposal_id=proposal_id)
    assert set(Proposal.objects.filter(pk__in=approved).values_list("status", flat=True)) == {
        "executed"
    }
    # The ones held back, made against the old bid, ended once it landed.
    assert set(Proposal.objects.filter(pk__in=plan.held).values_list("status", flat=True)) == {
        "superseded"
    }
    assert Campaign.objects.get(external_id="brand-search").daily_budget == Decimal("420.00")
    assert not Decision.objects.filter(proposal_id__in=plan.held).exists()


def test_an_agents_approval_rate_counts_peoples_decisions_only(operator):
    optimizer = Agent.objects.get(name="optimizer")
    rejected = [evaluated(bid_adjustment("2.50")) for _ in range(MIN_DECISIONS_FOR_RECORD)]
    for proposal in rejected:
        Feedback.objects.create(agent=optimizer, proposal=proposal, kind="rejected")
        # Superseded and outcome records say nothing of what people thought of it.
        Feedback.objects.create(agent=optimizer, proposal=proposal, kind="superseded")
        Feedback.objects.create(agent=optimizer, proposal=proposal, kind="outcome")

    assert agent_approval_rate(optimizer) == 0.0


def test_an_agents_approval_rate_is_what_people_decided_of_its_last_500(operator):
    """Approved as proposed or with edits counts as approved; the 500 most recent decisions
    count, not those before them; an agent with fewer than 10 has no record yet."""

    optimizer = Agent.objects.get(name="optimizer")
    proposal = evaluated(bid_adjustment("2.50"))

    def decided(*kinds: str) -> None:
        Feedback.objects.bulk_create(
            [Feedback(agent=optimizer, proposal=proposal, kind=kind) for kind in kinds]
        )

    decided(*["approved"] * (MIN_DECISIONS_FOR_RECORD - 1))
    assert agent_approval_rate(optimizer) is None
    decided("rejected")
    assert agent_approval_rate(optimizer) == 0.9
    # 20 rejected, then 500 decisions of which 400 approved (100 with edits): the rejections
    # before the last 500 no longer count.
    decided(*["rejected"] * 20, *["approved"] * 300, *["approved_with_edits"] * 100)
    decided(*["rejected"] * 100, *["expired", "superseded", "outcome"] * 5)
    assert RECORD_SPAN == 500
    assert agent_approval_rate(optimizer) == 400 / 500


def test_a_value_another_approved_proposal_sets_first_is_not_approved(operators):
    operator, colleague = operators
    first, second = (evaluated(bid_adjustment(new)) for new in ("2.50", "2.60"))
    proposal_approve(proposal_id=first.pk, reviewer=colleague)  # approved, about to run

    with pytest.raises(Conflict) as refused:
        proposal_approve(proposal_id=second.pk, reviewer=operator)

    assert refused.value.message == (
        f"Proposal #{second.pk} was not approved: #{first.pk}, approved and about to execute, "
        "changes brand-search's bid first: this one is superseded once that one executes (if "
        "that one does not run, this one can be decided then)."
    )
    assert not Decision.objects.filter(proposal=second).exists()
    assert feedback_kinds(second) == []  # never told "approved"
    plan = bulk_approval_plan(proposal_ids=[second.pk], reviewer=operator)
    assert plan.refusals[second.pk].message == refused.value.message
    proposal_execute(proposal_id=first.pk)
    assert Proposal.objects.get(pk=second.pk).status == ProposalStatus.SUPERSEDED
    assert feedback_kinds(second) == ["superseded"]


def test_a_waiting_reallocation_is_re_assessed_when_its_campaigns_budgets_move(operator):
    waiting = evaluated(reallocation("280.00"))  # 28% of 1000.00
    small_raise = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "brand-search", "new_daily_budget": "1050.00"}}
    )
    assert proposal_execute(proposal_id=small_raise.pk).status == ProposalStatus.EXECUTED

    waiting.refresh_from_db()
    # Still waiting for a person, who now reads what approving it would do: 280 of 1050.
    assert waiting.status == ProposalStatus.PENDING_REVIEW
    assert waiting.summary == "move 280.00 USD/day from brand-search to generic-search (26.7%)"
    assert waiting.target_snapshot["brand-search"] == {"daily_budget": "1050.00"}
    assert waiting.verdict_reasons[0] == (
        f"Re-assessed after #{small_raise.pk} changed it first: {small_raise.summary}: "
        "brand-search's daily budget went from 1000.00 to 1050.00. Now: move 280.00 USD/day from "
        "brand-search to generic-search (26.7%)."
    )
    proposal_approve(proposal_id=waiting.pk, reviewer=operator)
    assert proposal_execute(proposal_id=waiting.pk).status == ProposalStatus.EXECUTED
    assert Campaign.objects.get(external_id="brand-search").daily_budget == Decimal("770.00")


def test_a_reallocation_re_assessed_twice_says_both_changes_as_its_history_does(operator, login):
    """Two reallocations into generic-search held for a person; the first approved and run
    (generic-search 500.00 → 780.00), then another move into it: the one still waiting says
    both re-assessments, each with the proposal that made its change and the figures, the
    latest first (with what it reads now), as its history records them; on its page too."""
    first = evaluated(reallocation("280.00"))
    waiting = evaluated(reallocation("300.00"))
    assert (first.status, waiting.status) == ("pending_review", "pending_review")
    proposal_approve(proposal_id=first.pk, reviewer=operator)
    assert proposal_execute(proposal_id=first.pk).status == ProposalStatus.EXECUTED
    second = evaluated(reallocation("100.00"))
    if second.status == ProposalStatus.PENDING_REVIEW:
        proposal_approve(proposal_id=second.pk, reviewer=operator)
    assert proposal_execute(proposal_id=second.pk).status == ProposalStatus.EXECUTED

    waiting.refresh_from_db()
    before = (
        f"Re-assessed after #{first.pk} changed it first: {first.summary}: brand-search's "
        "daily budget went from 1000.00 to 720.00; generic-search's daily budget went from "
        "500.00 to 780.00."
    )
    latest = (
        f"Re-assessed after #{second.pk} changed it first: {second.summary}: brand-search's "
        "daily budget went from 720.00 to 620.00; generic-search's daily budget went from "
        "780.00 to 880.00."
    )
    now = "move 300.00 USD/day from brand-search to generic-search (48.4%)"
    assert waiting.status == ProposalStatus.PENDING_REVIEW
    assert waiting.verdict_reasons[:2] == [f"{latest} Now: {now}.", before]
    recorded = [
        record.history_change_reason
        for record in Proposal.history.filter(id=waiting.pk).order_by("-history_id")
        if (record.history_change_reason or "").startswith("Re-assessed after")
    ]
    assert recorded == [latest, before]
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[waiting.pk]))
    listed = page.text.split('id="verdict-reasons">')[1].split("</ul>")[0]
    assert html.unescape(listed).count("Re-assessed after") == 2
    assert before in html.unescape(listed)


def test_a_change_landing_re_assesses_every_waiting_reallocation_and_ends_outdated_values(
    operator, optimizer
):
    """Many proposals parked on one campaign: the change that lands on it re-assesses each
    waiting move on its own figures, with history saying why, and ends the value made
    against the old budget, its agent told; nothing else moves."""
    Account.objects.filter(external_id="demo").update(max_total_daily_budget=Decimal("5000"))
    outdated = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "brand-search", "new_daily_budget": "1250.00"}}
    )
    amounts = ["280.00", "300.00", "150.00"] * 4
    waiting = [evaluated(reallocation(amount)) for amount in amounts]
    inbound = evaluated(
        reallocation()
        | {
            "payload": {
                "from_campaign": "generic-search",
                "to_campaign": "brand-search",
                "amount": "200.00",
            }
        }
    )
    small_raise = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "brand-search", "new_daily_budget": "1020.00"}}
    )
    assert small_raise.status == ProposalStatus.APPROVED

    assert proposal_execute(proposal_id=small_raise.pk).status == ProposalStatus.EXECUTED

    cause = f"#{small_raise.pk} changed it first: {small_raise.summary}"
    for proposal, amount in zip(waiting, amounts, strict=True):
        proposal.refresh_from_db()
        share = Decimal(amount) / Decimal("1020.00") * 100
        figures = f"move {amount} USD/day from brand-search to generic-search ({share:.1f}%)"
        assert proposal.status == ProposalStatus.PENDING_REVIEW
        assert proposal.summary == figures
        assert proposal.target_snapshot["brand-search"] == {"daily_budget": "1020.00"}
        assert proposal.verdict_reasons[0] == (
            f"Re-assessed after {cause}: brand-search's daily budget went from 1000.00 to 1020.00. "
            f"Now: {figures}."
        )
        latest = Proposal.history.filter(id=proposal.pk).latest("history_id")
        assert latest.history_change_reason == (
            f"Re-assessed after {cause}: brand-search's daily budget went from 1000.00 to 1020.00."
        )
        assert (latest.history_actor_kind, latest.summary) == ("system", figures)
    # A move into the campaign reads its new budget too; its share of its source is the same.
    inbound.refresh_from_db()
    assert inbound.status == ProposalStatus.PENDING_REVIEW
    assert inbound.target_snapshot["brand-search"] == {"daily_budget": "1020.00"}
    assert inbound.summary == "move 200.00 USD/day from generic-search to brand-search (40.0%)"

    outdated.refresh_from_db()
    assert outdated.status == ProposalStatus.SUPERSEDED
    assert feedback_kinds(outdated) == ["superseded"]
    told = Feedback.objects.get(proposal=outdated)
    assert told.diff == {"brand-search.daily_budget": {"saw": "1000.00", "now": "1020.00"}}
    assert all(feedback_kinds(proposal) == [] for proposal in waiting)
    page = optimizer.get("/api/v1/feedback/").json()
    assert [record["proposal"] for record in page["results"]] == [outdated.pk]


def test_a_waiting_reallocation_that_no_longer_fits_says_so(operator):
    waiting = evaluated(reallocation("280.00"))
    cut = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "brand-search", "new_daily_budget": "200.00"}}
    )
    proposal_approve(proposal_id=cut.pk, reviewer=operator)
    proposal_execute(proposal_id=cut.pk)

    waiting.refresh_from_db()
    assert waiting.verdict_reasons[0].endswith(
        "It can no longer be applied as proposed: amount: Exceeds brand-search's daily budget "
        "of 200.00."
    )


def pause(campaign: str = "brand-search") -> dict:
    return bid_adjustment(action_type="status_change") | {
        "payload": {"campaign": campaign, "status": "paused"}
    }


def budget_raise(new_daily_budget: str, campaign: str = "brand-search") -> dict:
    return bid_adjustment(action_type="budget_change") | {
        "payload": {"campaign": campaign, "new_daily_budget": new_daily_budget}
    }


def test_a_waiting_pause_names_the_daily_budget_it_would_stop_once_that_moves(
    operator, optimizer, login
):
    waiting = evaluated(pause())
    assert waiting.status == ProposalStatus.PENDING_REVIEW
    assert waiting.summary == "pause brand-search (1000.00 USD/day)"
    raised = evaluated(budget_raise("1050.00"))
    assert proposal_execute(proposal_id=raised.pk).status == ProposalStatus.EXECUTED

    waiting.refresh_from_db()
    # Still waiting (the budget is not what it sets), and it says what pausing stops now.
    now = "pause brand-search (1050.00 USD/day)"
    assert waiting.status == ProposalStatus.PENDING_REVIEW
    assert (waiting.summary, waiting.amount) == (now, Decimal("1050.00"))
    note = (
        f"Re-assessed after #{raised.pk} changed it first: {raised.summary}: "
        "brand-search's daily budget went from 1000.00 to 1050.00."
    )
    assert waiting.verdict_reasons[0] == f"{note} Now: {now}."
    assert waiting.history.first().history_change_reason == note
    # The agent reads the same through the API.
    answer = optimizer.get(f"/api/v1/proposals/{waiting.pk}/").json()
    assert (answer["summary"], answer["amount"]) == (now, "1050.00")
    # The queue and the bulk approval's confirmation name the budget it stops now.
    client = login("operator")
    queue = client.get(reverse("admin:approvals_proposal_changelist"))
    assert now in queue.text and "(1000.00 USD/day)" not in queue.text
    confirm = client.post(
        reverse("admin:approvals_proposal_changelist"),
        {"action": "approve_selected", "_selected_action": [waiting.pk]},
    )
    [listed] = confirm.context["proposals"]
    assert (listed.summary, listed.bulk_outcome) == (now, "Approved: it executes.")
    proposal_approve(proposal_id=waiting.pk, reviewer=operator)
    done = proposal_execute(proposal_id=waiting.pk)
    assert (done.status, done.summary) == (ProposalStatus.EXECUTED, now)
    assert Campaign.objects.get(external_id="brand-search").status == "paused"


def test_an_approved_pause_is_re_assessed_before_it_runs_not_superseded(operator):
    approved = evaluated(pause())
    proposal_approve(proposal_id=approved.pk, reviewer=operator)
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("1050.00"))

    done = proposal_execute(proposal_id=approved.pk)

    assert done.status == ProposalStatus.EXECUTED
    assert done.summary == "pause brand-search (1050.00 USD/day)"
    said = (
        "Re-assessed before executing: brand-search's daily budget is 1050.00, was 1000.00. Now: "
        "pause brand-search (1050.00 USD/day), which its approval still covers."
    )
    assert done.history.filter(history_change_reason=said).exists()
    # Its page says so where it says why it is here, not only its history.
    assert done.verdict_reasons[0] == said


@pytest.mark.parametrize("first_in_queue", ["pause", "budget change"])
def test_bulk_approval_never_runs_a_pause_on_a_budget_a_change_approved_with_it_moves(
    operator, first_in_queue
):
    """The pause names the daily budget it stops (1000.00 a day). Approved in bulk with a
    change to that budget, whichever executed first, the pause could run on another figure
    than the one approved: whichever comes second in the queue is left waiting, saying why,
    to be decided once the first has run."""
    raised = evaluated(budget_raise("1500.00"))
    paused = evaluated(pause())
    assert (raised.status, paused.status) == ("pending_review", "pending_review")
    first, second = (paused, raised) if first_in_queue == "pause" else (raised, paused)
    Proposal.objects.filter(pk=second.pk).update(risk=first.risk - 1)  # the queue's order

    plan = bulk_approval_plan(proposal_ids=[paused.pk, raised.pk], reviewer=operator)
    decided = proposals_approve(proposal_ids=[paused.pk, raised.pk], reviewer=operator)

    assert [p.pk for p in plan.proposals] == [first.pk, second.pk]
    assert decided.held.keys() == plan.held.keys() == {second.pk}
    assert [p.pk for p in decided.approved] == [first.pk]
    if first == raised:
        said = (
            f"#{raised.pk}, approved with it, changes brand-search's daily budget first, so it "
            f"would be re-assessed once #{raised.pk} executes; decide it then."
        )
    else:
        said = (
            f"#{paused.pk}, approved with it, is judged on brand-search's daily budget as it "
            f"is, which this changes; decide it once #{paused.pk} executes."
        )
    assert plan.held[second.pk].message == f"Proposal #{second.pk} is left waiting: {said}"


@pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"],
    reason="SQLite takes one writer at a time: a row cannot be locked apart from the rest",
)
@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
@pytest.mark.django_db(transaction=True)
def test_a_waiting_proposal_locked_as_a_change_lands_is_superseded_a_second_later(
    demo_world, monkeypatch
):
    """The change skips a proposal locked by someone else at that instant (a message about it
    being recorded, a person deciding it) rather than wait for it, and looks at it again a
    second after: it does not stay waiting on a value that is gone."""
    with monkeypatch.context() as patch:  # nothing sent: the nudge is executed here
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        waiting = evaluated(bid_adjustment("2.40"))
        nudge = evaluated(bid_adjustment("2.02"))
    assert (waiting.status, nudge.status) == ("pending_review", "approved")

    executed_while_held(nudge, held=waiting)

    wait_until(lambda: Proposal.objects.get(pk=waiting.pk).status == "superseded", timeout=30)
    waiting.refresh_from_db()
    assert waiting.verdict_reasons[0] == (
        f"Superseded: brand-search's bid is 2.02, was 2.00 (#{nudge.pk} changed it first: "
        "bid of brand-search 2.00 → 2.02 USD (+1.0%)). It was not executed."
    )
    assert feedback_kinds(waiting) == ["superseded"]


@pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"],
    reason="SQLite takes one writer at a time: a row cannot be locked apart from the rest",
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("nudged_by", ["optimizer", "copywriter"])
def test_approving_a_value_another_proposal_moved_names_that_proposal_to_its_own_agent_only(
    login, agent_client, monkeypatch, nudged_by
):
    """A waiting bid raise, locked by someone else as another proposal's execution moved its
    bid (the landing skips it), approved in the console before it is looked at again: it is
    superseded instead, and what it says names the proposal whose execution moved the bid
    ("#13 changed it first: …; found when a reviewer approved it"), to the operator and to
    its agent, where that proposal is its agent's own; another agent's proposal is told as
    such, its id and what it did left out."""
    with monkeypatch.context() as patch:  # nothing sent: the test runs what it runs
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        waiting = evaluated(bid_adjustment("2.40"))
        nudge = evaluated(bid_adjustment("2.02"), agent=nudged_by)
        assert (waiting.status, nudge.status) == ("pending_review", "approved")
        executed_while_held(nudge, held=waiting)
    nudge.refresh_from_db()

    page = decided_from_page(login("operator"), "approve", waiting.pk, follow=True)

    waiting.refresh_from_db()
    assert waiting.status == ProposalStatus.SUPERSEDED
    assert waiting.superseded_by_id == nudge.pk  # its page links it, whoever's it is
    moved_first = (
        f"#{nudge.pk} changed it first: {nudge.summary}"
        if nudged_by == "optimizer"
        else "another agent's proposal changed it first"
    )
    reason = (
        f"Superseded: brand-search's bid is 2.02, was 2.00 ({moved_first}; found when a "
        "reviewer approved it). It was not executed."
    )
    assert waiting.verdict_reasons[0] == reason
    said = [str(message) for message in page.context["messages"]]
    assert len(said) == 1 and reason in said[0], said
    seen = agent_client("optimizer")
    feedback = [
        item
        for item in seen.get("/api/v1/feedback/").json()["results"]
        if item["proposal"] == waiting.pk
    ]
    assert [(item["kind"], item["note"]) for item in feedback] == [("superseded", reason)]
    told = str([feedback, seen.get(f"/api/v1/proposals/{waiting.pk}/").json()])
    if nudged_by != "optimizer":
        assert f"#{nudge.pk}" not in told and nudge.summary not in told
    assert feedback_kinds(waiting) == ["superseded"]  # never "approved"
    assert not Decision.objects.filter(proposal=waiting).exists()


def test_a_moved_field_is_told_in_the_edit_forms_words():
    """Why a proposal ended (its reason, an execution's error) names the field and its
    values as the edit form does ("bidding strategy", "Target CPA", "not set"), not as
    codes."""
    strategy = TargetMove("generic-search", "bidding_strategy", "manual_cpc", "target_cpa")
    target = TargetMove("generic-search", "target_cpa", None, "25.00")
    status = TargetMove("brand-search", "status", "active", "paused")

    assert str(strategy) == "generic-search's bidding strategy is Target CPA, was Manual CPC"
    assert str(target) == "generic-search's target CPA is 25.00, was not set"
    assert str(status) == "brand-search's status is Paused, was Active"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_reallocation_re_routed_after_a_re_assessment_says_both_in_order(
    channel, login, optimizer
):
    """The engine approves moving 90.00 (9%); the channel's endpoint answers 429 (not done,
    come back later) twice, and the source's budget moves while each request is under way.
    The second attempt re-assesses it (90.00 of 950.00: still the engine's to approve), the
    third re-routes it to a person (90.00 of 800.00). Its page and its API say both, newest
    first, each with its figures; the re-routing did not wipe out the re-assessment the worker
    had recorded."""
    endpoint = channel(429, 429, 200)

    def moved(to: str):
        return lambda: Campaign.objects.filter(external_id="brand-search").update(
            daily_budget=Decimal(to)
        )

    endpoint.while_first_request = moved("950.00")
    endpoint.while_later_requests[2] = moved("800.00")
    submitted = optimizer.post("/api/v1/proposals/", reallocation("90.00"), format="json").json()
    assert submitted["status"] == "approved", submitted

    wait_until(lambda: Proposal.objects.get(pk=submitted["id"]).status == "pending_review")

    said = [
        "Re-routed to a person before executing: brand-search's daily budget is 800.00, was "
        "950.00.",
        "Re-assessed before executing: brand-search's daily budget is 950.00, was 1000.00.",
        "11.3% of brand-search's daily budget exceeds the 10.0% auto-execute ceiling of policy "
        "“Budget reallocations”.",
    ]
    answer = optimizer.get(f"/api/v1/proposals/{submitted['id']}/").json()
    assert answer["verdict"]["outcome"] == "review"
    assert answer["verdict"]["reasons"] == said
    page = login("auditor").get(reverse("admin:approvals_proposal_change", args=[answer["id"]]))
    assert [str(reason) for reason in page.context["reasons_now"]] == said
    # Its history keeps what the re-assessment read of it then, word for word.
    assert Proposal.history.filter(
        id=answer["id"],
        history_change_reason="Re-assessed before executing: brand-search's daily budget is "
        "950.00, was 1000.00. Now: move 90.00 USD/day from brand-search to generic-search "
        "(9.5%), which its approval still covers.",
    ).exists()
    assert len(endpoint.received) == 2


def test_many_waiting_reallocations_are_re_assessed_as_each_would_be_alone_at_a_flat_cost(
    operator, optimizer, monkeypatch
):
    """A change landing on a campaign with many reallocations waiting (an agent's batch of a
    few moves, each proposed many times) re-assesses each: every one ends with the figures,
    risk, reasons and history it would have were it the only one waiting, and the execution
    takes as many statements, and as many evaluations by the policy engine, with 30 waiting
    as with 6."""
    Account.objects.filter(external_id="demo").update(max_total_daily_budget=Decimal("5000"))
    evaluations = []

    def counted(**arguments):
        evaluations.append(arguments["proposal_id"])
        return verdict_for(**arguments)

    monkeypatch.setattr(supersession, "verdict_for", counted)

    def landing(amounts: list[str]) -> tuple[int, int, list[tuple]]:
        """What executing a +2% budget change does with ``amounts`` waiting: its statements,
        its evaluations, and what each waiting one reads (then undone)."""
        evaluations.clear()
        with transaction.atomic():
            waiting = [evaluated(reallocation(amount)) for amount in amounts]
            raised = evaluated(
                bid_adjustment(action_type="budget_change")
                | {"payload": {"campaign": "brand-search", "new_daily_budget": "1020.00"}}
            )
            assert raised.status == ProposalStatus.APPROVED
            records = Proposal.history.filter(id__in=[proposal.pk for proposal in waiting])
            recorded = records.count()
            with CaptureQueriesContext(connections["default"]) as statements:
                assert proposal_execute(proposal_id=raised.pk).status == ProposalStatus.EXECUTED
            assert records.count() == recorded + len(waiting)  # one record each, of this
            cause = f"#{raised.pk} "
            read = []
            for proposal in waiting:
                proposal.refresh_from_db()
                latest = Proposal.history.filter(id=proposal.pk).latest("history_id")
                read.append(
                    (
                        proposal.status,
                        proposal.summary,
                        proposal.risk,
                        proposal.required_approvals,
                        proposal.effects,
                        proposal.target_snapshot,
                        proposal.verdict_outcome,
                        [reason.replace(cause, "#N ") for reason in proposal.verdict_reasons],
                        latest.history_change_reason.replace(cause, "#N "),
                        latest.verdict_reasons == proposal.verdict_reasons,
                        latest.summary == proposal.summary,
                    )
                )
            transaction.set_rollback(True)
        return len(statements.captured_queries), len(evaluations), read

    amounts = ["280.00", "300.00", "150.00"]
    alone = {amount: landing([amount])[2][0] for amount in amounts}
    assert alone["300.00"][1] == ("move 300.00 USD/day from brand-search to generic-search (29.4%)")
    assert alone["300.00"][7][0].startswith("Re-assessed after #N changed it first:")

    few_statements, few_evaluations, few = landing(amounts * 2)
    many_statements, many_evaluations, many = landing(amounts * 10)

    assert many_statements == few_statements
    assert many_evaluations == few_evaluations == len(amounts)
    assert few == [alone[amount] for amount in amounts * 2]
    assert many == [alone[amount] for amount in amounts * 10]


def test_retrying_a_failed_value_whose_target_moved_supersedes_it_there_and_then(login):
    """Walked: a failed budget raise, retried in the console after another proposal had moved
    the same budget, read "Proposal #3 is sent to run again.", and, reloaded, "Superseded";
    its agent got ``sent_to_run_again`` then ``superseded`` in the same second, and its reason
    named nothing of what moved the budget. The retry ends it superseded, as an approval
    does, naming the proposal that moved it; nothing is sent to run, and its agent is never
    told it was."""
    raise_ = failed_budget_raise()  # 500.00 → 525.00, failed by a cap of 510.00
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    first = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "520.00"}}
    )
    assert proposal_execute(proposal_id=first.pk).status == ProposalStatus.EXECUTED
    first.refresh_from_db()
    told_before = feedback_kinds(raise_)

    page = login("operator").post(
        reverse("admin:approvals_proposal_retry", args=[raise_.pk]), follow=True
    )

    raise_.refresh_from_db()
    assert raise_.status == ProposalStatus.SUPERSEDED
    reason = (
        "Superseded: generic-search's daily budget is 520.00, was 500.00 "
        f"(#{first.pk} changed it first: {first.summary}; found when a reviewer retried it). "
        "It was not executed."
    )
    assert raise_.verdict_reasons[0] == reason
    assert [str(message) for message in page.context["messages"]] == [
        f"Proposal #{raise_.pk} was not sent to run again. {reason}"
    ]
    superseded_at = raise_.history.get(status=ProposalStatus.SUPERSEDED).history_date
    assert status_line(page) == (
        f"Superseded · Its execution failed, and when operator retried it at "
        f"{superseded_at:%Y-%m-%d %H:%M:%S} UTC, #{first.pk} had changed its target first, "
        f"executed at {first.executed_at:%Y-%m-%d %H:%M:%S} UTC: nothing was done."
    )
    assert feedback_kinds(raise_) == [*told_before, "superseded"]  # never "sent to run again"
    assert raise_.executions.count() == 1  # its failed attempt: nothing sent again
    assert not raise_.history.filter(history_change_reason__startswith="sent to run again")
    assert Campaign.objects.get(external_id="generic-search").daily_budget == Decimal("520.00")


def test_a_person_approved_failure_superseded_at_its_retry_says_it_failed_and_was_retried(
    operator, login
):
    """Approved by a person, failed, then retried after another proposal moved its target:
    its status line read "operator approved it at T1, then #13 changed its target first,
    executed at T2: nothing was done.", true, but leaving out that its execution failed in
    between and that a person's retry found the move. Said as its page reads it, with no
    query (what superseded it read with the page's proposal), and in its messages alike."""
    raise_ = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "600.00"}}
    )
    assert raise_.status == ProposalStatus.PENDING_REVIEW
    proposal_approve(proposal_id=raise_.pk, reviewer=operator)
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="550.00")
    assert proposal_execute(proposal_id=raise_.pk).status == ProposalStatus.FAILED
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    first = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "520.00"}}
    )
    assert proposal_execute(proposal_id=first.pk).status == ProposalStatus.EXECUTED
    first.refresh_from_db()
    retried = proposal_retry(proposal_id=raise_.pk, reviewer=operator)
    assert retried.status == ProposalStatus.SUPERSEDED
    approved_at = raise_.decisions.get().created_at
    superseded_at = raise_.history.get(status=ProposalStatus.SUPERSEDED).history_date
    said = (
        f"operator approved it at {approved_at:%Y-%m-%d %H:%M:%S} UTC, its execution failed, "
        f"and when operator retried it at {superseded_at:%Y-%m-%d %H:%M:%S} UTC, #{first.pk} "
        f"had changed its target first, executed at {first.executed_at:%Y-%m-%d %H:%M:%S} UTC: "
        "nothing was done."
    )

    page = login("auditor").get(reverse("admin:approvals_proposal_change", args=[raise_.pk]))
    # As the page reads it: when, and by whom, it was superseded, with the proposal.
    read = with_ended_recorded(
        Proposal.objects.filter(pk=raise_.pk).select_related("superseded_by")
    ).get()
    approvals = list(read.decisions.select_related("reviewer").order_by("created_at"))
    with CaptureQueriesContext(connections["default"]) as queries:
        alone = superseded_said(read, approvals)

    assert status_line(page) == f"Superseded · {said}"
    assert alone == said and queries.captured_queries == []
    assert outcome_text(Proposal.objects.get(pk=raise_.pk)) == f"Superseded. {said}"


def executed_while_held(nudge: Proposal, *, held: Proposal) -> None:
    """``nudge`` executes while another connection holds ``held``'s row (a message about it
    being recorded, a person deciding it): the landing skips ``held``, still waiting, to look
    at it again a second after."""
    holder = connections.create_connection("default")
    holder.set_autocommit(False)
    try:
        with holder.cursor() as cursor:
            table = Proposal._meta.db_table
            cursor.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [held.pk])
        assert proposal_execute(proposal_id=nudge.pk).status == "executed"
        assert Proposal.objects.get(pk=held.pk).status == "pending_review"  # skipped
    finally:
        holder.rollback()
        holder.close()


def page_text(page) -> str:
    """A console page's words, as its reader reads them (tags dropped, spaces as one)."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text))).strip()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_failure_superseded_at_its_retry_says_an_attempt_without_a_sure_answer_may_have_run(
    channel, callback_endpoint, login, optimizer
):
    """Two bid raises fail on the account's webhook after five attempts: one's attempt 2 got a
    503 (no sure answer: it may have been carried out) among 429s, the other's were all
    answered 429 (not carried out). Their bids are moved, and a person's retry supersedes
    each there and then. Both read "…: nothing was done." (its page, its history, its
    messages and its agent alike), though the 503'd one's request may have been carried out on
    the channel: that one says nothing more was sent and its attempt 2 may have been carried
    out; the 429'd one, that nothing was done."""
    hook = callback_endpoint(200)
    endpoint = channel(429, 503, 429, 429, 429, 429)  # the second's five: 429 (the last repeats)
    ended = {}
    for campaign, bid_to in (("brand-search", "2.12"), ("generic-search", "1.59")):
        answer = optimizer.post(
            "/api/v1/proposals/", bid_adjustment(bid_to, campaign), format="json"
        )
        assert answer.json()["status"] == "approved", answer.content
        pk = answer.json()["id"]
        ended[campaign] = wait_until(
            lambda pk=pk: Proposal.objects.filter(pk=pk, status="failed").first(), timeout=20
        )
    assert len(endpoint.received) == 10
    unanswered, answered = ended["brand-search"], ended["generic-search"]
    assert list(unanswered.executions.values_list("unanswered", flat=True)) == [
        False, True, False, False, False,
    ]  # fmt: skip
    Campaign.objects.filter(external_id="brand-search").update(bid=Decimal("2.05"))
    Campaign.objects.filter(external_id="generic-search").update(bid=Decimal("1.55"))

    operator = login("operator")
    retried = {
        proposal.pk: operator.post(
            reverse("admin:approvals_proposal_retry", args=[proposal.pk]), follow=True
        )
        for proposal in (unanswered, answered)
    }

    sent = unanswered.executions.get(attempt=2).started_at
    may_have_run = (
        f"nothing more was sent, but its attempt 2, sent at {sent:%Y-%m-%d %H:%M:%S} UTC, got no "
        "sure answer and may have been carried out on the channel: check there."
    )
    for proposal, moved, ending in (
        (unanswered, "brand-search's bid is 2.05, was 2.00", may_have_run),
        (answered, "generic-search's bid is 1.55, was 1.50", "nothing was done."),
    ):
        proposal.refresh_from_db()
        assert proposal.status == ProposalStatus.SUPERSEDED
        assert proposal.executions.count() == 5  # nothing sent at the retry
        superseded_at = proposal.history.get(status=ProposalStatus.SUPERSEDED).history_date
        said = (
            f"Its execution failed, and when operator retried it at "
            f"{superseded_at:%Y-%m-%d %H:%M:%S} UTC, its target was found changed: {ending}"
        )
        # Its page, as the retry left it, and its messages (email, Slack, the digest).
        assert status_line(retried[proposal.pk]) == f"Superseded · {said}"
        assert outcome_text(proposal) == f"Superseded. {said}"
        # Its history, and its agent: its reasons, its feed and its callback.
        ended_so = "It was not executed" + (f": {ending}" if ending == may_have_run else ".")
        reason = f"Superseded: {moved} (found when a reviewer retried it). {ended_so}"
        history = login("auditor").get(
            reverse("admin:approvals_proposal_history", args=[proposal.pk])
        )
        assert reason in page_text(history)
        answer = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
        assert answer["verdict"]["reasons"][0] == reason
        assert answer["execution"]["carried_out"] == ("unknown" if ending == may_have_run else "no")
        # What the client and the framework adapters tell the model: the reason, said once.
        told = outcome_report(ClientProposal.from_api(answer))["message"]
        assert told.startswith(reason)
        assert told.count("may have been") == (1 if ending == may_have_run else 0)
        feed = optimizer.get("/api/v1/feedback/").json()["results"]
        told = [r for r in feed if r["proposal"] == proposal.pk and r["kind"] == "superseded"]
        assert [r["note"] for r in told] == [reason]
        callback = CallbackEvent.objects.get(proposal=proposal, type="proposal.superseded")
        assert callback.body["reason"] == reason
        # As its callback URL received it.
        delivered = wait_until(
            lambda event_id=str(callback.event_id): next(
                (
                    b
                    for b in map(json.loads, (r["body"] for r in hook.received))
                    if b["id"] == event_id
                ),
                None,
            ),
            timeout=20,
        )
        assert delivered["reason"] == reason


def test_a_retry_names_no_proposal_for_a_value_moved_by_another_hand(operator):
    """A budget moved outside any proposal (on the channel, say): superseded at the retry,
    its reason says what moved and when it was found, and names no proposal."""
    raise_ = failed_budget_raise()
    Campaign.objects.filter(external_id="generic-search").update(
        max_daily_budget=None, daily_budget="550.00"
    )

    result = proposal_retry(proposal_id=raise_.pk, reviewer=operator)

    assert result.status == ProposalStatus.SUPERSEDED
    assert result.superseded_by_id is None
    assert result.verdict_reasons[0] == (
        "Superseded: generic-search's daily budget is 550.00, was 500.00 (found when a "
        "reviewer retried it). It was not executed."
    )
