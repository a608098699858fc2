"""What counts against a cumulative ceiling, and from when. A move approved but not yet
executed may never run (superseded when another change lands on its target first, re-routed
to a person at execution), so it counts only towards the bound it pushes: a cut approved to
balance a raise, and then left to be superseded, makes no room for another raise. A failed
move a person retries counts from the retry, when it is approved to run again. The what-if
simulation replays both as they were decided live."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import combinations
from math import prod

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_retry
from approvals.simulation import SlidingMoves, simulate
from executors.runner import proposal_execute
from ledger.models import Campaign
from policies import engine
from policies.models import CountedMove
from tests.conftest import bid_adjustment, reallocation
from tests.factories import backdated

URL = "/api/v1/proposals/"
DAY = timedelta(days=1)


def proposed(client, body: dict) -> dict:
    answer = client.post(URL, body, format="json")
    assert answer.status_code == 201, answer.content
    return answer.json()


def status(answer: dict) -> str:
    return Proposal.objects.get(pk=answer["id"]).status


def executed(answer: dict) -> Proposal:
    """Carried out now, as the worker would (the test picks the order the tasks land in)."""
    return proposal_execute(proposal_id=answer["id"])


def campaign(external_id: str) -> Campaign:
    return Campaign.objects.get(external_id=external_id)


def replayed():
    """The recorded routings of the day, replayed under the rules that decided them."""
    now = timezone.now()
    return simulate(since=now - 2 * DAY, until=now + DAY)


def test_a_raise_made_while_a_cut_is_under_way_waits_for_a_person(optimizer):
    """The attack: bids auto-execute up to 15%, and may move 25% a day in all. The agent
    proposes a 15% cut and a 15% raise (each within the auto-execute ceiling, together about
    nothing), hoping the raise lands first and the cut, made against the bid before it, is
    superseded and never runs. The engine no longer approves the raise: the cut, approved
    before it, changes the bid first."""
    cut = proposed(optimizer, bid_adjustment("1.70"))  # -15%
    raise_ = proposed(optimizer, bid_adjustment("2.30"))  # +15%
    assert (cut["status"], raise_["status"]) == ("approved", "pending_review")
    assert raise_["verdict"]["reasons"][0].startswith(
        f"#{cut['id']}, approved and about to execute, changes brand-search's bid first"
    )


def test_a_cut_approved_to_balance_a_raise_lets_no_raise_past_the_cumulative_ceiling(optimizer):
    """Once a raise has run, a cut approved since does not offset it: counted only towards
    the bound each pushes, the second raise waits for a person (counting the cut against the
    raise took brand-search's bid from 2.00 to 2.64, +32%, with nobody looking)."""
    assert executed(proposed(optimizer, bid_adjustment("2.30"))).status == "executed"  # +15%
    second_cut = proposed(optimizer, bid_adjustment("1.96"))  # -14.8% of 2.30
    second_raise = proposed(optimizer, bid_adjustment("2.64"))  # +14.8% of 2.30

    assert second_cut["status"] == "approved"  # within the ceiling below: 1.15 x 0.852
    assert second_raise["status"] == "pending_review"
    # The cut sets the bid too: of the two, only the first to run runs, so it is not counted
    # (which offsets nothing either), nor named, as a cut would not count towards a raise.
    assert (
        "With this move of +14.8%, brand-search's bid would move +32.0% within 1 day, over the "
        "25.0% cumulative ceiling of policy “Bid adjustments”, counting the executed moves."
    ) in second_raise["verdict"]["reasons"]
    assert campaign("brand-search").bid == Decimal("2.30")
    # The engine's dry run says the same while both wait.
    dry_run = optimizer.post("/api/v1/policies/evaluate/", bid_adjustment("2.64"), format="json")
    assert dry_run.json()["outcome"] == "review"

    # The replay decides each routing as the live engine did, the raise held by the ceiling.
    report = replayed()
    assert (report.routings, report.changed, report.other_policy) == (3, 0, 0)
    # The raise ran; the cut is approved, not yet run; the second raise waits.
    assert dict(report.happened) == {"auto_executed": 1, "auto_not_executed": 1, "review": 1}
    assert report.held_by["cumulative_ceiling"] == 1
    [held] = report.held_examples
    assert held["proposal"] == second_raise["id"]
    assert any("brand-search's bid would move +32.0% within 1 day" in h for h in held["held_by"])


def test_a_reallocation_waiting_to_execute_makes_no_room_for_raises_on_its_source(optimizer):
    """A reallocation out of generic-search, approved but not run, is no counterweight: it
    may be re-routed to a person when it is re-assessed at execution, and never run. The
    raises on generic-search count as if it will not."""
    for budget in ("550.00", "605.00"):  # +10% each: +21% in all
        raised = proposed(optimizer, budget_change(budget))
        assert executed(raised).status == ProposalStatus.EXECUTED
    shift = proposed(optimizer, reallocation("50.00") | {"payload": {
        "from_campaign": "generic-search", "to_campaign": "display-retarget", "amount": "50.00"
    }})  # fmt: skip
    assert shift["status"] == "approved"  # 50.00 of generic-search's 605.00
    third = proposed(optimizer, budget_change("665.50"))  # +33.1%, or +19.8% less the 50.00

    assert third["status"] == "pending_review"
    assert any(
        "generic-search's daily budget would move +33.1% within 1 day" in reason
        for reason in third["verdict"]["reasons"]
    ), third["verdict"]["reasons"]
    # The channel halves display-retarget's budget: re-assessed, the reallocation is +33% on
    # it now, and goes to a person. The cut it promised did not happen.
    Campaign.objects.filter(external_id="display-retarget").update(daily_budget=Decimal("150.00"))
    assert executed(shift).status == ProposalStatus.PENDING_REVIEW
    assert campaign("generic-search").daily_budget == Decimal("605.00")

    report = replayed()
    assert (report.routings, report.changed, report.other_policy) == (5, 0, 0)


def budget_change(new: str, campaign: str = "generic-search") -> dict:
    return bid_adjustment(action_type="budget_change") | {
        "payload": {"campaign": campaign, "new_daily_budget": new}
    }


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def test_a_failed_move_retried_a_day_later_counts_from_its_retry(optimizer, operator):
    """A +10% budget move fails (a cap set after it was approved refuses it); a day later a
    person lifts the cap and retries it. It runs then, so it counts against the day from
    then: two more +10% moves would take the budget +33.1% within 24 hours, and the second
    waits for a person. Counted from its first approval, it would have been left out."""
    first = proposed(optimizer, budget_change("550.00"))
    assert first["status"] == "approved"
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=Decimal("520.00"))
    assert executed(first).status == ProposalStatus.FAILED
    assert not CountedMove.objects.filter(proposal_id=first["id"]).exists()
    a_day_ago = timezone.now() - DAY - timedelta(hours=1)
    backdated(Proposal.objects.get(pk=first["id"]), created_at=a_day_ago, decided_at=a_day_ago)

    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    retried = proposal_retry(proposal_id=first["id"], reviewer=operator)

    assert retried.decided_at == a_day_ago  # the decision was then; the time to decide stays
    assert retried.approved_at > a_day_ago + DAY
    [counted] = CountedMove.objects.filter(proposal_id=first["id"])
    assert (counted.approved_at, counted.executed) == (retried.approved_at, False)
    retry_record = Proposal.history.filter(id=first["id"]).latest("history_id")
    assert retry_record.history_change_reason == "sent to run again by operator"
    assert retry_record.approved_at == retried.approved_at
    assert executed(first).status == ProposalStatus.EXECUTED
    assert CountedMove.objects.get(proposal_id=first["id"]).executed

    second = proposed(optimizer, budget_change("605.00"))  # +21% counting the retried move
    assert executed(second).status == ProposalStatus.EXECUTED
    third = proposed(optimizer, budget_change("665.50"))

    assert third["status"] == "pending_review"
    assert (
        "generic-search's daily budget would move +33.1% within 1 day"
        in (third["verdict"]["reasons"][0])
    )
    report = replayed()
    assert (report.changed, report.other_policy) == (0, 0)
    assert report.held_by["cumulative_ceiling"] == 1


def test_the_migration_marks_executed_moves_and_dates_retried_ones_from_their_retry(
    optimizer, operator
):
    """Moves counted before the lifecycle kept these: the executed are marked so, and a
    failed move a person retried, still to run, counts from its retry."""
    done = proposed(optimizer, bid_adjustment("2.04"))
    executed(done)
    waiting = proposed(optimizer, bid_adjustment("1.45", campaign="generic-search"))
    retried = proposed(optimizer, budget_change("550.00"))
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=Decimal("520"))
    assert executed(retried).status == ProposalStatus.FAILED
    a_day_ago = timezone.now() - DAY
    backdated(Proposal.objects.get(pk=retried["id"]), created_at=a_day_ago, decided_at=a_day_ago)
    # The cap lifted: a retry the cap still refused would be refused, not sent.
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    proposal_retry(proposal_id=retried["id"], reviewer=operator)
    retry_record = Proposal.history.filter(id=retried["id"]).latest("history_id")
    # As the releases before kept them: every move pending, each from its decision.
    Proposal.objects.update(approved_at=None)
    CountedMove.objects.update(executed=False)
    CountedMove.objects.filter(proposal_id=retried["id"]).update(approved_at=a_day_ago)

    loader = MigrationExecutor(connection).loader
    for migration in [
        ("approvals", "0021_proposal_approved_at"),
        ("policies", "0007_counted_moves_executed"),
    ]:
        models_then = loader.project_state(migration, at_end=True).apps
        loader.get_migration(*migration).operations[-1].code(models_then, None)

    moves = {move.proposal_id: move for move in CountedMove.objects.all()}
    assert moves.keys() == {done["id"], waiting["id"], retried["id"]}
    assert [moves[p["id"]].executed for p in (done, waiting, retried)] == [True, False, False]
    assert moves[retried["id"]].approved_at == retry_record.history_date
    assert Proposal.objects.get(pk=retried["id"]).approved_at == retry_record.history_date
    assert moves[waiting["id"]].approved_at == Proposal.objects.get(pk=waiting["id"]).decided_at


# The rule itself, against every way the pending moves may end.

CEILING = Fraction(1, 4)
NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)
RULE = engine.Rule(
    policy_id=1,
    name="Bid adjustments",
    action_type="bid_adjustment",
    auto_execute_max_magnitude=Decimal("1000000000"),  # only the cumulative ceiling speaks
    cumulative_max_magnitude=Decimal("0.25"),
    cumulative_window=timedelta(hours=24),
)
TARGET = "brand-search's bid"
factors = st.integers(min_value=60, max_value=140).map(lambda percent: Fraction(percent, 100))


def facts(this: Fraction, moves: list[engine.Move]) -> engine.Facts:
    return engine.Facts(
        action_type="bid_adjustment",
        action_label="bid adjustment",
        magnitude=abs(this - 1),
        magnitude_unit="ratio",
        magnitude_label="A change",
        risk_weight=10,
        account_id=1,
        effects={TARGET: this},
        recent_moves=moves,
        now=NOW,
    )


def _taken_further(moved: Fraction, this: Fraction) -> bool:
    """Whether a compounded factor is over the ceiling on the side this move pushes it: a
    raise above the ceiling above, a cut below the one below. A move back towards where the
    target was is not held for a figure over the ceiling the other way."""
    if this > 1:
        return moved - 1 > CEILING
    if this < 1:
        return 1 - moved > CEILING
    return False


@settings(max_examples=300, deadline=None, database=None)
@given(
    done=st.lists(factors, max_size=4),
    pending=st.lists(factors, max_size=5),
    ended=st.lists(factors, max_size=2),
    this=factors,
)
def test_a_move_runs_on_its_own_only_if_the_ceiling_holds_whichever_pending_moves_run(
    done, pending, ended, this
):
    """Auto-approved exactly when every combination of the pending moves that may still run
    keeps the target within the ceiling on the side this move pushes it
    (``_taken_further``), with the executed moves and this one; and the
    simulation's running products give the engine the same figures, through moves that
    executed after being pending and moves that stopped counting."""
    executed_product = prod(done, start=Fraction(1))
    within = all(
        not _taken_further(executed_product * prod(running, start=Fraction(1)) * this, this)
        for size in range(len(pending) + 1)
        for running in combinations(pending, size)
    )
    at = NOW - timedelta(hours=1)
    moves = [engine.Move(TARGET, factor, at) for factor in done] + [
        engine.Move(TARGET, factor, at, pending=True) for factor in pending
    ]
    verdict = engine.evaluate(facts(this, moves), [RULE])
    assert (verdict.outcome == "auto_approve") == within

    sliding = SlidingMoves([timedelta(hours=1), RULE.cumulative_window, 7 * DAY])
    proposal_ids = iter(range(1, 100))
    for factor in done:  # approved, then executed
        proposal_id = next(proposal_ids)
        sliding.add(proposal_id, 1, TARGET, factor, at, pending=True)
        sliding.remove(proposal_id)
        sliding.add(proposal_id, 1, TARGET, factor, at)
    for factor in pending:
        sliding.add(next(proposal_ids), 1, TARGET, factor, at, pending=True)
    for factor in ended:  # superseded or failed before running
        proposal_id = next(proposal_ids)
        sliding.add(proposal_id, 1, TARGET, factor, at, pending=True)
        sliding.remove(proposal_id)
    replayed_facts = facts(this, sliding.moves_for(1, TARGET, NOW))
    assert engine.evaluate(replayed_facts, [RULE]).reasons == verdict.reasons


def test_the_migration_gives_each_move_counted_before_it_its_proposals_agent(optimizer):
    """Moves counted before they kept their agent are given their proposal's, by which a
    reason names only its reader's own proposals."""
    done = proposed(optimizer, bid_adjustment("2.04"))
    executed(done)
    approved = proposed(optimizer, bid_adjustment("1.55", campaign="generic-search"))
    CountedMove.objects.update(agent_id=None)  # as the releases before kept them

    migration = ("policies", "0012_counted_moves_agent")
    loader = MigrationExecutor(connection).loader
    models_then = loader.project_state(migration, at_end=True).apps
    loader.get_migration(*migration).operations[-1].code(models_then, None)

    optimizer_id = Proposal.objects.get(pk=done["id"]).agent_id
    assert {move.proposal_id: move.agent_id for move in CountedMove.objects.all()} == {
        done["id"]: optimizer_id,
        approved["id"]: optimizer_id,
    }


# Two proposals setting one value can never both run: whichever executes first changes it,
# and the other, made against the value before, is superseded. A pending move setting the
# value is not counted for a proposal setting it too; a reallocation moves an amount, runs
# after either, and counts for both.


def test_a_bid_set_while_another_setting_it_waits_to_run_is_not_compounded_with_it(optimizer):
    """A +15% bid raise is approved and waits to run (the channel is slow); the agent then
    proposes +37% from the same 2.00. Both cannot run: the engine said "+57.6%, counting the
    pending raises (#1)", a move that cannot happen. It says the move this one would make,
    and why the other is left out; once the first runs, the second is superseded."""
    first = proposed(optimizer, bid_adjustment("2.30"))  # +15%: approved, not yet run
    second = proposed(optimizer, bid_adjustment("2.74"))  # +37% of the same 2.00
    third = proposed(optimizer, bid_adjustment("2.40"))  # +20%: over 25% only with the first

    assert first["status"] == "approved"
    reasons = second["verdict"]["reasons"]
    assert second["status"] == "pending_review"
    assert reasons[0].startswith(f"#{first['id']}, approved and about to execute, changes")
    assert reasons[-1] == (
        "brand-search's bid would move +37.0% within 1 day, over the 25.0% cumulative ceiling "
        "of policy “Bid adjustments”, counting no other move; not counting "
        f"#{first['id']}, approved, not yet executed, which sets brand-search's bid too: only "
        "one of them can run."
    )
    assert not any("57.6%" in reason for reason in reasons)
    # The agent reads the same on the proposal; the queue's figure is the one recorded.
    assert optimizer.get(f"{URL}{second['id']}/").json()["verdict"]["reasons"] == reasons
    [held] = [
        hold
        for hold in Proposal.objects.get(pk=second["id"]).verdict_held_by
        if hold["rule"] == "cumulative_ceiling"
    ]
    assert held["moved"] == "37/100"
    # +20% alone is within the 25% cumulative ceiling: it waits for the first and the
    # auto-execute ceiling, not for a +38.0% that cannot happen.
    assert third["status"] == "pending_review"
    assert not any("cumulative" in reason for reason in third["verdict"]["reasons"])

    # Only one of them runs: the first, and the others end superseded.
    assert executed(first).status == ProposalStatus.EXECUTED
    assert {status(second), status(third)} == {ProposalStatus.SUPERSEDED}
    assert campaign("brand-search").bid == Decimal("2.30")

    # The replay decides each routing as the live engine did, with the same figures.
    report = replayed()
    assert (report.routings, report.changed, report.other_policy) == (3, 0, 0)
    assert report.held_by["cumulative_ceiling"] == 1
    assert any(
        "brand-search's bid would move +37.0% within 1 day" in text
        for example in report.held_examples
        for text in example["held_by"]
    )


def test_a_reallocation_and_a_budget_set_each_count_the_other_waiting_to_run(optimizer):
    """A reallocation keeps its meaning when the budget moves, so it may run after a budget
    set, or before (then re-assessed): each counts the other, whichever is approved first."""
    setter = proposed(optimizer, budget_change("550.00"))  # +10%: approved, not yet run
    shift = proposed(optimizer, reallocation("100.00"))  # generic-search +20% (500 -> 600)
    assert setter["status"] == "approved"
    assert shift["status"] == "pending_review"
    assert (
        "With this move of +20.0%, generic-search's daily budget would move +32.0% within "
        "1 day, over the 25.0% cumulative ceiling of policy “Budget reallocations”, counting "
        f"the pending raises (approved, not yet executed: #{setter['id']}, +10.0% in all)."
    ) in shift["verdict"]["reasons"]

    moved = proposed(optimizer, reallocation("25.00", payload={
        "from_campaign": "display-retarget", "to_campaign": "brand-search", "amount": "25.00"
    }))  # fmt: skip
    assert moved["status"] == "approved"  # brand-search +2.5%, display-retarget -8.3%
    raised = proposed(optimizer, budget_change("1230.00", campaign="brand-search"))  # +23%
    assert (
        "With this move of +23.0%, brand-search's daily budget would move +26.1% within 1 day, "
        "over the 25.0% cumulative ceiling of policy “Budget changes”, counting the pending "
        f"raises (approved, not yet executed: #{moved['id']}, +2.5% in all)."
    ) in raised["verdict"]["reasons"]


moves_each = st.lists(st.tuples(factors, st.booleans()), max_size=5)


@settings(max_examples=300, deadline=None, database=None)
@given(
    done=st.lists(factors, max_size=3),
    pending=moves_each,
    this=factors,
    this_sets=st.booleans(),
)
def test_the_ceiling_holds_whichever_pending_moves_can_run_with_this_one(
    done, pending, this, this_sets
):
    """Auto-approved exactly when every combination of the pending moves that can still run
    with this one keeps the target within the ceiling on the side this move pushes it: those
    of an amount (a reallocation) always; those setting the value only with a move of an
    amount, since of two setting it the first to run supersedes the other. The replay's
    running products agree."""
    can_run = [factor for factor, sets in pending if not (sets and this_sets)]
    executed_product = prod(done, start=Fraction(1))
    within = all(
        not _taken_further(executed_product * prod(running, start=Fraction(1)) * this, this)
        for size in range(len(can_run) + 1)
        for running in combinations(can_run, size)
    )
    at = NOW - timedelta(hours=1)
    moves = [engine.Move(TARGET, factor, at) for factor in done] + [
        engine.Move(TARGET, factor, at, pending=True, sets_value=sets) for factor, sets in pending
    ]
    verdict = engine.evaluate(replace(facts(this, moves), sets_values=this_sets), [RULE])
    assert (verdict.outcome == "auto_approve") == within

    sliding = SlidingMoves([RULE.cumulative_window])
    for proposal_id, factor in enumerate(done, start=1):
        sliding.add(proposal_id, 1, TARGET, factor, at)
    for proposal_id, (factor, sets) in enumerate(pending, start=10):
        sliding.add(proposal_id, 1, TARGET, factor, at, pending=True, sets_value=sets)
    replayed_facts = replace(facts(this, sliding.moves_for(1, TARGET, NOW)), sets_values=this_sets)
    assert engine.evaluate(replayed_facts, [RULE]).outcome == verdict.outcome


def test_the_migration_marks_the_moves_of_proposals_that_set_values(optimizer):
    """Moves counted before they said whether they set a value are given their proposal's:
    a bid set does, a reallocation (an amount) does not."""
    setter = proposed(optimizer, bid_adjustment("2.04"))
    shift = proposed(optimizer, reallocation("50.00"))
    assert {move.proposal_id: move.sets_value for move in CountedMove.objects.all()} == {
        setter["id"]: True,
        shift["id"]: False,
    }
    for move in CountedMove.objects.all():  # as the releases before kept them
        move.sets_value = False
        move.save()

    migration = ("policies", "0016_counted_moves_sets_value")
    loader = MigrationExecutor(connection).loader
    models_then = loader.project_state(migration, at_end=True).apps
    loader.get_migration(*migration).operations[-1].code(models_then, None)

    assert {move.proposal_id: move.sets_value for move in CountedMove.objects.all()} == {
        setter["id"]: True,
        shift["id"]: False,
    }
