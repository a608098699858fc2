"""Magnitudes come from the platform's ledger, never from the agent's claim."""

from decimal import Decimal

import pytest

from approvals import action_types
from approvals.services.proposals import action_assess
from hitlproject.errors import InvalidInput
from ledger.models import Account, Campaign


@pytest.fixture
def account(demo_world) -> Account:
    return Account.objects.get(external_id="demo")


def assess(account, action_type: str, **payload):
    return action_assess(account=account, action_type_name=action_type, raw_payload=payload)


def test_registry_has_the_six_marketing_action_types_and_policy_changes():
    assert action_types.names() == [
        "bid_adjustment",
        "budget_change",
        "budget_reallocation",
        "creative_deployment",
        "policy_change",
        "status_change",
        "strategy_change",
    ]


def test_bid_adjustment_magnitude_is_relative_to_the_current_bid(account):
    assessed = assess(account, "bid_adjustment", campaign="brand-search", new_bid="1.70")
    assert assessed.assessment.magnitude == Decimal("0.15")
    assert assessed.assessment.summary == "bid of brand-search 2.00 → 1.70 USD (-15.0%)"
    assert assessed.snapshot == {"brand-search": {"bid": "2.00"}}


def test_magnitude_follows_the_ledger_not_an_earlier_figure(account):
    Campaign.objects.filter(external_id="generic-search").update(daily_budget=Decimal("250.00"))
    assessed = assess(account, "budget_change", campaign="generic-search", new_daily_budget=300)
    assert assessed.assessment.magnitude == Decimal("0.2")
    assert assessed.assessment.amount == Decimal("50.00")


def test_reallocation_magnitude_is_the_share_of_the_source_budget(account):
    assessed = assess(
        account,
        "budget_reallocation",
        from_campaign="brand-search",
        to_campaign="generic-search",
        amount="280",
    )
    assert assessed.assessment.magnitude == Decimal("0.28")
    assert assessed.assessment.amount == Decimal("280")
    assert set(assessed.snapshot) == {"brand-search", "generic-search"}


def test_creative_batch_magnitude_is_its_size(account):
    creative = {"headline": "Search smarter", "body": "Try it today.", "call_to_action": "Start"}
    assessed = assess(
        account, "creative_deployment", campaign="display-retarget", creatives=[creative] * 3
    )
    assert assessed.assessment.magnitude == 3
    assert assessed.assessment.summary == "deploy 3 creatives to display-retarget"


def test_strategy_change_counts_the_fields_it_changes(account):
    assessed = assess(
        account,
        "strategy_change",
        campaign="brand-search",
        changes={"bidding_strategy": "target_cpa", "target_cpa": "25.00"},
    )
    assert assessed.assessment.magnitude == 2


def test_a_strategy_change_is_summed_up_in_the_edit_forms_words(account):
    """ "Manual CPC", as the edit form offers it, not the code manual_cpc; a field by the
    form's label; a target CPA in the account's currency."""
    Campaign.objects.filter(external_id="brand-search").update(
        bidding_strategy="target_roas", target_roas=Decimal("3.5")
    )
    assessed = assess(
        account,
        "strategy_change",
        campaign="brand-search",
        changes={"bidding_strategy": "maximize_conversions", "target_roas": "4"},
    )
    assert assessed.assessment.summary == (
        "brand-search: bidding strategy Target ROAS → Maximize conversions; target ROAS 3.50 → 4.00"
    )
    form = action_types.get("strategy_change").edit_form(
        payload={"campaign": "brand-search", "changes": {}}, currency="USD"
    )
    assert form.fields["target_roas"].label == "Target ROAS"
    assert dict(form.fields["bidding_strategy"].choices)["maximize_conversions"] == (
        "Maximize conversions"
    )


def test_pausing_a_campaign_moves_all_of_its_spend(account):
    assessed = assess(account, "status_change", campaign="display-retarget", status="paused")
    assert assessed.assessment.magnitude == 1
    assert assessed.assessment.amount == Decimal("300.00")


@pytest.mark.parametrize(
    "action_type, payload, refusal",
    [
        (
            "bid_adjustment",
            {"campaign": "brand-search", "new_bid": "2"},
            {"new_bid": ["brand-search's bid is already 2.00: this changes nothing."]},
        ),
        (
            "budget_change",
            {"campaign": "generic-search", "new_daily_budget": "500.00"},
            {
                "new_daily_budget": [
                    "generic-search's daily budget is already 500.00: this changes nothing."
                ]
            },
        ),
        (
            "status_change",
            {"campaign": "display-retarget", "status": "active"},
            {"status": ["display-retarget is already active: this changes nothing."]},
        ),
        (
            "strategy_change",
            {
                "campaign": "brand-search",
                "changes": {"target_cpa": "25", "bidding_strategy": "target_cpa"},
            },
            {
                "changes": [
                    "brand-search already has bidding strategy Target CPA; target CPA 25.00 USD: "
                    "this changes nothing."
                ]
            },
        ),
    ],
)
def test_an_action_that_would_change_nothing_is_refused_saying_so(
    account, action_type, payload, refusal
):
    """A proposal whose campaign has the value already would be reviewed, "executed" and
    counted as a change that changed nothing: it is refused, naming the value it has."""
    Campaign.objects.filter(external_id="brand-search").update(
        bidding_strategy="target_cpa", target_cpa=Decimal("25.00")
    )
    with pytest.raises(InvalidInput) as refused:
        assess(account, action_type, **payload)
    assert refused.value.field_errors == {"payload": refusal}


def test_a_strategy_change_that_changes_one_field_of_two_is_summed_up_by_that_one(account):
    assessed = assess(
        account,
        "strategy_change",
        campaign="brand-search",
        changes={"bidding_strategy": "manual_cpc", "target_cpa": "25"},
    )
    assert assessed.assessment.magnitude == 1
    assert assessed.assessment.summary == "brand-search: target CPA not set → 25.00 USD"


def test_change_from_a_zero_baseline_is_capped_not_infinite(account):
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=0)
    assessed = assess(account, "budget_change", campaign="brand-search", new_daily_budget="10")
    assert assessed.assessment.magnitude == Decimal("1000")


def test_a_move_larger_than_the_recorded_cap_is_labelled_as_large_as_it_is(account):
    assessed = assess(account, "bid_adjustment", campaign="brand-search", new_bid="5000.00")
    assert assessed.assessment.magnitude == Decimal("1000")  # recorded at the cap
    assert assessed.assessment.magnitude_label == "A 249900.0% change to brand-search's bid"
    assert assessed.assessment.summary == "bid of brand-search 2.00 → 5000.00 USD (+249900.0%)"


def test_a_change_from_a_zero_baseline_says_so_rather_than_a_size(account):
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=0)
    assessed = assess(account, "budget_change", campaign="brand-search", new_daily_budget="10")
    assert assessed.assessment.magnitude_label == (
        "A change from zero to brand-search's daily budget"
    )


@pytest.mark.parametrize(
    ("new_bid", "label"),
    [
        ("2.17", "An 8.5% change"),  # eight
        ("2.22", "An 11.0% change"),  # eleven
        ("2.36", "An 18.0% change"),  # eighteen
        ("3.60", "An 80.0% change"),  # eighty
        ("18.00", "An 800.0% change"),  # eight hundred
        ("2.24", "A 12.0% change"),
        ("2.02", "A 1.0% change"),
        ("4.20", "A 110.0% change"),  # one hundred and ten
        ("5000.00", "A 249900.0% change"),
    ],
)
def test_a_change_label_reads_with_the_article_its_number_is_spoken_with(account, new_bid, label):
    """ "A 8.3% change" was read out "a eight point three": the article follows the number as
    it is spoken ("an eight", "an eleven", "an eighteen", "an eighty")."""
    assessed = assess(account, "bid_adjustment", campaign="brand-search", new_bid=new_bid)
    assert assessed.assessment.magnitude_label == f"{label} to brand-search's bid"
