"""Properties, checked over many generated cases by hypothesis: the policy engine never lets
through what its rules hold back, ranks a proposal a guardrail spoke about above every clean
one and a larger move no lower than a smaller one otherwise alike, and no sequence of events
takes a proposal through an illegal state or executes one that is not approved."""

from contextlib import suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from approvals.models import Execution, Proposal
from approvals.services.decisions import proposal_approve, proposal_reject, proposal_retry
from approvals.services.expiry import proposals_expire_overdue
from approvals.services.proposals import proposal_evaluate, proposal_withdraw
from executors.runner import proposal_execute
from hitlproject.errors import DomainError
from hitlproject.vocabulary import ALLOWED_TRANSITIONS
from ledger.models import Campaign
from policies.engine import Facts, Move, Rule, evaluate, matching_rule
from tests.conftest import bid_adjustment
from tests.factories import submitted

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ratios = st.decimals(min_value=0, max_value=3, places=4)
maybe_ratios = st.none() | ratios
moneys = st.none() | st.decimals(min_value=0, max_value=10_000, places=2)


@st.composite
def rules(draw) -> list[Rule]:
    return [
        Rule(
            policy_id=n + 1,
            name=f"policy {n + 1}",
            action_type="bid_adjustment",
            agent_id=draw(st.sampled_from([None, 1, 2])),
            account_id=draw(st.sampled_from([None, 1, 2])),
            priority=draw(st.integers(0, 2)),
            auto_execute_max_magnitude=draw(maybe_ratios),
            auto_execute_max_amount=draw(moneys),
            block_above_magnitude=draw(maybe_ratios),
            always_review=draw(st.booleans()),
            cumulative_max_magnitude=draw(maybe_ratios),
            required_approvals=draw(st.integers(1, 3)),
            more_approvals_above_magnitude=draw(maybe_ratios),
        )
        for n in range(draw(st.integers(0, 4)))
    ]


@st.composite
def facts(draw) -> Facts:
    magnitude = draw(ratios)
    return Facts(
        action_type="bid_adjustment",
        action_label="bid adjustment",
        magnitude=magnitude,
        magnitude_unit="ratio",
        magnitude_label=f"{magnitude}",
        risk_weight=10,
        account_id=draw(st.sampled_from([1, 2])),
        agent_id=draw(st.sampled_from([1, 2])),
        amount=draw(moneys),
        currency="USD",
        effects={"bid": 1 + magnitude},
        recent_moves=[
            Move(target="bid", factor=Decimal(factor), at=NOW - timedelta(hours=1))
            for factor in draw(st.lists(st.sampled_from(["0.9", "1.1", "1.3"]), max_size=3))
        ],
        now=NOW,
        guardrail_blocks=tuple(draw(st.lists(st.just("locked"), max_size=1))),
        guardrail_reviews=tuple(draw(st.lists(st.just("kill switch"), max_size=1))),
        agent_approval_rate=draw(st.none() | st.floats(0, 1)),
        always_human=draw(st.sampled_from(["", "policy owners decide"])),
    )


@settings(max_examples=500, deadline=None, database=None, derandomize=True)
@given(facts(), rules())
def test_the_engine_lets_nothing_through_that_its_rules_hold_back(facts, rules):
    verdict = evaluate(facts, rules)
    rule = matching_rule(facts, rules)
    assert 0 <= verdict.risk <= 100
    assert verdict.reasons
    if verdict.outcome != "auto_approve":
        return
    # Auto-approved: a policy matched, and nothing held it back.
    assert rule is not None and verdict.policy_id == rule.policy_id
    assert not (facts.guardrail_blocks or facts.guardrail_reviews or facts.always_human)
    assert not rule.always_review
    assert rule.auto_execute_max_magnitude is not None
    assert facts.magnitude <= rule.auto_execute_max_magnitude
    if rule.auto_execute_max_amount is not None and facts.amount is not None:
        assert facts.amount <= rule.auto_execute_max_amount
    if rule.block_above_magnitude is not None:
        assert facts.magnitude <= rule.block_above_magnitude
    if rule.more_approvals_above_magnitude is not None:  # the two-person rule needs people
        assert facts.magnitude <= rule.more_approvals_above_magnitude
    if rule.cumulative_max_magnitude is not None:
        compounded = 1 + facts.magnitude
        for move in facts.recent_moves:
            compounded *= move.factor
        assert abs(compounded - 1) <= rule.cumulative_max_magnitude


@settings(max_examples=500, deadline=None, database=None, derandomize=True)
@given(facts(), facts(), rules())
def test_a_proposal_a_guardrail_spoke_about_ranks_above_every_clean_one(one, other, rules):
    guarded = replace(one, guardrail_reviews=("kill switch",))
    clean = replace(other, guardrail_blocks=(), guardrail_reviews=())
    assert evaluate(clean, rules).risk <= 90 < evaluate(guarded, rules).risk


@settings(max_examples=500, deadline=None, database=None, derandomize=True)
@given(facts(), ratios, rules())
def test_a_larger_move_never_ranks_below_a_smaller_one_otherwise_alike(facts, more, rules):
    larger = replace(facts, magnitude=facts.magnitude + more)
    assert evaluate(larger, rules).risk >= evaluate(facts, rules).risk


class ProposalLife(RuleBasedStateMachine):
    """One proposal, and whatever may happen to it, in any order: decisions by two operators,
    withdrawal, expiry, execution (again and again), retry. After every step, its recorded
    history is a path the lifecycle allows, and it executed at most once, only if approved."""

    @initialize(raise_by=st.sampled_from(["2.04", "2.60"]))  # auto-executes, or waits
    def submit(self, raise_by):
        users = get_user_model().objects
        self.operators = [users.get(username="operator"), users.get(username="second-operator")]
        Campaign.objects.filter(external_id="brand-search").update(bid=Decimal("2.00"))
        self.proposal = proposal_evaluate(proposal_id=submitted(bid_adjustment(raise_by)).pk)
        self.bid = Decimal(raise_by)

    def attempt(self, act) -> None:
        with suppress(DomainError):  # refused: the invariants check it changed nothing
            act()

    @rule(who=st.integers(0, 1))
    def approve(self, who):
        reviewer = self.operators[who]
        self.attempt(lambda: proposal_approve(proposal_id=self.proposal.pk, reviewer=reviewer))

    @rule(who=st.integers(0, 1))
    def reject(self, who):
        self.attempt(
            lambda: proposal_reject(
                proposal_id=self.proposal.pk, reviewer=self.operators[who], reason_code="other"
            )
        )

    @rule()
    def withdraw(self):
        agent = self.proposal.agent
        self.attempt(lambda: proposal_withdraw(agent=agent, proposal_id=self.proposal.pk))

    @rule()
    def expire(self):
        Proposal.objects.filter(pk=self.proposal.pk).update(review_expires_at=NOW)
        proposals_expire_overdue()

    @rule()
    def execute(self):
        proposal_execute(proposal_id=self.proposal.pk)

    @rule()
    def retry(self):
        reviewer = self.operators[0]
        self.attempt(lambda: proposal_retry(proposal_id=self.proposal.pk, reviewer=reviewer))

    @precondition(lambda self: hasattr(self, "proposal"))
    @invariant()
    def history_is_a_legal_path(self):
        statuses = list(
            Proposal.history.filter(id=self.proposal.pk)
            .order_by("history_date", "history_id")
            .values_list("status", flat=True)
        )
        for before, after in pairwise(statuses):
            assert before == after or after in ALLOWED_TRANSITIONS.get(before, ()), statuses

    @precondition(lambda self: hasattr(self, "proposal"))
    @invariant()
    def executed_at_most_once_and_only_when_approved(self):
        executions = Execution.objects.filter(proposal=self.proposal, status="succeeded")
        assert executions.count() <= 1
        status = Proposal.objects.get(pk=self.proposal.pk).status
        bid = Campaign.objects.get(external_id="brand-search").bid
        if status == "executed":
            assert executions.count() == 1 and bid == self.bid
        else:
            assert not executions.exists() and bid == Decimal("2.00")


@pytest.mark.django_db
def test_no_sequence_of_events_breaks_the_lifecycle(operators):
    ProposalLife.TestCase.settings = settings(
        max_examples=40,
        stateful_step_count=12,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    ProposalLife.TestCase().runTest()
