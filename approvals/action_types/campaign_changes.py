"""Action types that change a campaign's numbers, status or strategy in the ledger."""

from decimal import ROUND_UP, Decimal
from typing import Any, ClassVar

from django import forms
from django.utils.text import capfirst
from rest_framework import serializers

from approvals.action_types import register
from approvals.action_types.base import (
    ActionType,
    Assessment,
    CampaignRef,
    Money,
    PlainDecimal,
    change_label,
    change_of,
    exact_factor,
    example_campaigns,
    example_figure,
    relative_change,
    signed_percent,
    target_name,
)
from approvals.action_types.forms import ActionEditForm, MoneyField
from hitlproject.validation import ListedChoiceField, StrictSerializer, invalid_input
from hitlproject.vocabulary import NOT_SET
from ledger.models import (
    Account,
    BiddingStrategy,
    CampaignStatus,
    campaign_field_label,
    campaign_value_label,
)
from policies.engine import format_magnitude


class NumericFieldChange(ActionType):
    """Setting one of a campaign's numbers: magnitude is |new − current| / current."""

    proposed_by_kinds = ("optimization",)

    field: str
    payload_field: str
    noun: str
    moves_daily_money: bool

    def campaign_fields(self, payload):
        return {payload["campaign"]: (self.field,)}

    def example_payload(self, account, magnitude):
        campaigns = example_campaigns(account, self.field)
        if not campaigns:
            return None
        campaign = campaigns[0]
        # A daily budget turns down where up would pass its cap.
        cap = campaign.max_daily_budget if self.field == "daily_budget" else None
        new = example_figure(getattr(campaign, self.field), magnitude, cap)
        return {"campaign": campaign.external_id, self.payload_field: str(new)}

    def assess(self, payload, campaigns, account: Account) -> Assessment:
        campaign = campaigns[payload["campaign"]]
        current, new = getattr(campaign, self.field), Decimal(payload[self.payload_field])
        magnitude = relative_change(current, new)
        return Assessment(
            magnitude=magnitude,
            magnitude_label=f"{change_label(current, new)} to {campaign.external_id}'s {self.noun}",
            summary=(
                f"{self.noun} of {campaign.external_id} {current} → {new} {account.currency} "
                f"({signed_percent(current, new)})"
            ),
            amount=abs(new - current) if self.moves_daily_money else None,
        )

    def changes_nothing(self, payload, campaigns):
        campaign = campaigns[payload["campaign"]]
        current = getattr(campaign, self.field)
        if current is None or current != Decimal(payload[self.payload_field]):
            return None
        return {
            self.payload_field: [
                f"{campaign.external_id}'s {self.noun} is already {current}: this changes nothing."
            ]
        }

    def exact_magnitude(self, payload, effects):
        return change_of(effects.get(target_name(payload["campaign"], self.noun)))

    def proposed_state(self, payload, campaigns):
        return {payload["campaign"]: {self.field: Decimal(payload[self.payload_field])}}

    def figures_set(self, payload):
        return {payload["campaign"]: {self.field: Decimal(payload[self.payload_field])}}


class NumericFieldEdit(ActionEditForm):
    """The one number the action sets, in the account's currency."""

    payload_field: ClassVar[str]
    field_label: ClassVar[str]

    def add_payload_fields(self) -> None:
        proposed = self.payload.get(self.payload_field)
        self.fields[self.payload_field] = MoneyField(
            currency=self.currency,
            label=f"{self.field_label} for {self.payload.get('campaign')}",
            help_text=f"Proposed: {proposed} {self.currency}.",
        )


class BidAdjustmentEdit(NumericFieldEdit):
    payload_field, field_label = "new_bid", "New bid"


class BidAdjustmentPayload(StrictSerializer):
    campaign = CampaignRef()
    new_bid = Money(help_text="The new bid, in the account's currency.")


@register
class BidAdjustment(NumericFieldChange):
    name = "bid_adjustment"
    label = "bid adjustment"
    risk_weight = 10
    payload_serializer = BidAdjustmentPayload
    edit_form = BidAdjustmentEdit
    field, payload_field, noun, moves_daily_money = "bid", "new_bid", "bid", False
    sets_figures = frozenset({"bid"})


class BudgetChangeEdit(NumericFieldEdit):
    payload_field, field_label = "new_daily_budget", "New daily budget"


class BudgetChangePayload(StrictSerializer):
    campaign = CampaignRef()
    new_daily_budget = Money(help_text="The new daily budget, in the account's currency.")


@register
class BudgetChange(NumericFieldChange):
    name = "budget_change"
    label = "budget change"
    risk_weight = 20
    payload_serializer = BudgetChangePayload
    edit_form = BudgetChangeEdit
    field, payload_field, noun, moves_daily_money = (
        "daily_budget",
        "new_daily_budget",
        "daily budget",
        True,
    )
    sets_figures = frozenset({"daily_budget"})


class BudgetReallocationPayload(StrictSerializer):
    from_campaign = CampaignRef()
    to_campaign = CampaignRef()
    amount = Money(help_text="Daily amount moved, in the account's currency.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["from_campaign"] == attrs["to_campaign"]:
            raise serializers.ValidationError({"to_campaign": ["Must differ from from_campaign."]})
        return attrs


class BudgetReallocationEdit(ActionEditForm):
    """The amount moved; where it moves from and to is the agent's proposal."""

    def add_payload_fields(self) -> None:
        source, target = self.payload.get("from_campaign"), self.payload.get("to_campaign")
        self.fields["amount"] = MoneyField(
            currency=self.currency,
            label=f"Daily amount moved from {source} to {target}",
            help_text=f"Proposed: {self.payload.get('amount')} {self.currency} a day.",
        )


@register
class BudgetReallocation(ActionType):
    proposed_by_kinds = ("optimization",)
    name = "budget_reallocation"
    label = "budget reallocation"
    risk_weight = 25
    payload_serializer = BudgetReallocationPayload
    edit_form = BudgetReallocationEdit
    sets_values = False
    ledger_may_refuse = True
    draws_figures = frozenset({"daily_budget"})
    brings_figures = frozenset({"daily_budget"})
    example_missing = "has fewer than two campaigns"

    def example_payload(self, account, magnitude):
        # From the largest budget to the next, where the amount moves the target least.
        campaigns = sorted(
            example_campaigns(account),
            key=lambda c: (c.status != CampaignStatus.ACTIVE, -c.daily_budget),
        )
        if len(campaigns) < 2:
            return None
        source, target = campaigns[0], campaigns[1]
        # Its share of the source's budget, to the cent, and no more than all of it.
        share = min(magnitude, Decimal(1))
        amount = (source.daily_budget * share).quantize(Decimal("0.01"), rounding=ROUND_UP)
        return {
            "from_campaign": source.external_id,
            "to_campaign": target.external_id,
            "amount": str(amount or Decimal("0.01")),
        }

    def campaign_fields(self, payload):
        return {
            payload["from_campaign"]: ("daily_budget",),
            payload["to_campaign"]: ("daily_budget",),
        }

    def check(self, payload, campaigns) -> None:
        source = campaigns[payload["from_campaign"]]
        if Decimal(payload["amount"]) > source.daily_budget:
            raise invalid_input(
                {
                    "amount": [
                        f"Exceeds {source.external_id}'s daily budget of {source.daily_budget}."
                    ]
                }
            )

    def drawn_from(self, payload):
        return {payload["from_campaign"]: {"daily_budget": Decimal(payload["amount"])}}

    def brought_to(self, payload):
        return {payload["to_campaign"]: {"daily_budget": Decimal(payload["amount"])}}

    def assess(self, payload, campaigns, account: Account) -> Assessment:
        source = campaigns[payload["from_campaign"]]
        amount = Decimal(payload["amount"])
        magnitude = relative_change(source.daily_budget, source.daily_budget - amount)
        # Its share of the budget from the ledger's own figures, not the six places stored.
        share = change_of(exact_factor(source.daily_budget, source.daily_budget - amount))
        said = format_magnitude(share, self.magnitude_unit)
        return Assessment(
            magnitude=magnitude,
            magnitude_label=f"{said} of {source.external_id}'s daily budget",
            summary=(
                f"move {amount} {account.currency}/day from {source.external_id} "
                f"to {payload['to_campaign']} ({said})"
            ),
            amount=amount,
        )

    def exact_magnitude(self, payload, effects):
        return change_of(effects.get(target_name(payload["from_campaign"], "daily budget")))

    def proposed_state(self, payload, campaigns):
        amount = Decimal(payload["amount"])
        source, target = campaigns[payload["from_campaign"]], campaigns[payload["to_campaign"]]
        return {
            source.external_id: {"daily_budget": source.daily_budget - amount},
            target.external_id: {"daily_budget": target.daily_budget + amount},
        }


class StatusChangePayload(StrictSerializer):
    campaign = CampaignRef()
    status = ListedChoiceField(choices=CampaignStatus.choices)


@register
class StatusChange(ActionType):
    """Starting or stopping a campaign moves all of its spend: magnitude 1 (100%)."""

    proposed_by_kinds = ("optimization",)

    name = "status_change"
    label = "status change"
    risk_weight = 30
    payload_serializer = StatusChangePayload
    # No edit form: its one field has two values, and an edit could only set the one its
    # campaign has, which changes nothing (``changes_nothing``). Approved as proposed, or not.

    def example_payload(self, account, magnitude):
        # Pausing an active campaign, else starting a paused one: all of its spend either way.
        campaigns = example_campaigns(account)
        if not campaigns:
            return None
        campaign = campaigns[0]
        flipped = (
            CampaignStatus.PAUSED
            if campaign.status == CampaignStatus.ACTIVE
            else CampaignStatus.ACTIVE
        )
        return {"campaign": campaign.external_id, "status": str(flipped)}

    def campaign_fields(self, payload):
        return {payload["campaign"]: ("status",)}

    def figures_read_from(self, payload):
        return {payload["campaign"]: ("daily_budget",)}  # the spend it starts or stops

    def changes_nothing(self, payload, campaigns):
        campaign = campaigns[payload["campaign"]]
        if campaign.status != payload["status"]:
            return None
        already = f"{campaign.external_id} is already {campaign.status}"
        return {"status": [f"{already}: this changes nothing."]}

    def assess(self, payload, campaigns, account: Account) -> Assessment:
        campaign = campaigns[payload["campaign"]]
        changes = campaign.status != payload["status"]
        verb = "pause" if payload["status"] == CampaignStatus.PAUSED else "activate"
        return Assessment(
            magnitude=Decimal(1 if changes else 0),
            magnitude_label=(
                f"{verb.capitalize()} {campaign.external_id}, all of its spend"
                if changes
                else f"{campaign.external_id} is already {payload['status']}"
            ),
            summary=(
                f"{verb} {campaign.external_id} ({campaign.daily_budget} {account.currency}/day)"
            ),
            amount=campaign.daily_budget if changes else Decimal("0"),
        )

    def proposed_state(self, payload, campaigns):
        return {payload["campaign"]: {"status": payload["status"]}}


class StrategyChanges(StrictSerializer):
    bidding_strategy = ListedChoiceField(choices=BiddingStrategy.choices, required=False)
    target_cpa = Money(required=False, help_text="Target cost per acquisition.")
    target_roas = PlainDecimal(max_digits=8, required=False, help_text="Target return on ad spend.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Name at least one field to change.")
        return attrs


def strategy_value_in_words(field: str, value: Any, currency: str) -> str:
    """A strategy field's value as the edit form offers it: a bidding strategy by its label
    ("Manual CPC"), a target CPA in the account's currency, one never set as "not set"."""
    words = campaign_value_label(field, value)
    if field == "target_cpa" and words != NOT_SET:
        return f"{words} {currency}"
    return words


def strategy_change_in_words(field: str, current: Any, new: Any, currency: str) -> str:
    """One field's change, as a strategy change's summary says it: "target CPA not set →
    25.00 USD"."""
    return (
        f"{campaign_field_label(field)} {strategy_value_in_words(field, current, currency)} → "
        f"{strategy_value_in_words(field, new, currency)}"
    )


def _strategy_value_is(campaign, field: str, value: Any) -> bool:
    """Whether the campaign's strategy field already has ``value`` (a target as a number:
    25 is 25.00)."""
    current = getattr(campaign, field)
    if field.startswith("target_") and current is not None and value is not None:
        return current == Decimal(value)
    return str(current) == str(value)


# A target to start from where a campaign has none, for a strategy change's example.
TARGETS = {"target_cpa": Decimal("20.00"), "target_roas": Decimal("3.00")}


class StrategyChangePayload(StrictSerializer):
    campaign = CampaignRef()
    changes = StrategyChanges()


class StrategyChangeEdit(ActionEditForm):
    """Each strategy field; one left empty is not changed."""

    def add_payload_fields(self) -> None:
        self.fields["bidding_strategy"] = forms.ChoiceField(
            choices=[("", "— not changed —"), *BiddingStrategy.choices],
            required=False,
            label=capfirst(campaign_field_label("bidding_strategy")),
        )
        self.fields["target_cpa"] = MoneyField(
            currency=self.currency,
            label=capfirst(campaign_field_label("target_cpa")),
            required=False,
        )
        self.fields["target_roas"] = forms.CharField(
            label=capfirst(campaign_field_label("target_roas")),
            required=False,
            widget=forms.TextInput(attrs={"inputmode": "decimal", "size": 12}),
        )

    def initial_from(self, payload):
        changes = payload.get("changes") or {}
        return {name: changes.get(name, "") for name in self.payload_fields()}

    def edited(self, cleaned):
        changes = {name: cleaned[name] for name in self.payload_fields() if cleaned[name]}
        return {**self.payload, "changes": changes}

    def field_for(self, path):
        if len(path) == 2 and path[0] == "changes" and path[1] in self.payload_fields():
            return str(path[1])
        return None


@register
class StrategyChange(ActionType):
    """A change to how a campaign bids. Magnitude is the number of fields it changes."""

    proposed_by_kinds = ("optimization", "analysis")

    name = "strategy_change"
    label = "strategy change"
    magnitude_unit = "count"
    magnitude_counts = "field"
    risk_weight = 40
    payload_serializer = StrategyChangePayload
    edit_form = StrategyChangeEdit
    changes_strategy = True

    def example_payload(self, account, magnitude):
        campaigns = example_campaigns(account)
        if not campaigns:
            return None
        campaign = campaigns[0]
        # Each field to a value other than its own, as many fields as ``magnitude``: alone, a
        # strategy that needs no target; with more, one bidding to a target, and its target.
        counted = min(max(int(magnitude), 1), 3)
        share = Decimal("0.10")
        if counted == 1:
            alone = BiddingStrategy.MAXIMIZE_CONVERSIONS
            if campaign.bidding_strategy == alone:
                alone = BiddingStrategy.MAXIMIZE_CLICKS
            changes = {"bidding_strategy": str(alone)}
        else:
            strategy = BiddingStrategy.TARGET_CPA
            if campaign.bidding_strategy == strategy:
                strategy = BiddingStrategy.TARGET_ROAS
            target = "target_roas" if strategy == BiddingStrategy.TARGET_ROAS else "target_cpa"
            changes = {
                "bidding_strategy": str(strategy),
                target: str(example_figure(getattr(campaign, target) or TARGETS[target], share)),
            }
            if counted == 3:
                other = "target_cpa" if target == "target_roas" else "target_roas"
                changes[other] = str(
                    example_figure(getattr(campaign, other) or TARGETS[other], share)
                )
        return {"campaign": campaign.external_id, "changes": changes}

    def campaign_fields(self, payload):
        return {payload["campaign"]: tuple(sorted(payload["changes"]))}

    def assess(self, payload, campaigns, account: Account) -> Assessment:
        campaign = campaigns[payload["campaign"]]
        # Each field and value in the edit form's words ("bidding strategy Manual CPC →
        # Target CPA; target CPA not set → 25.00 USD"), not its name and code.
        changed = [
            strategy_change_in_words(field, getattr(campaign, field), value, account.currency)
            for field, value in sorted(payload["changes"].items())
            if not _strategy_value_is(campaign, field, value)
        ]
        return Assessment(
            magnitude=Decimal(len(changed)),
            magnitude_label=f"A strategy change to {campaign.external_id}",
            summary=f"{campaign.external_id}: " + ("; ".join(changed) or "no change"),
        )

    def changes_nothing(self, payload, campaigns):
        campaign = campaigns[payload["campaign"]]
        if not all(
            _strategy_value_is(campaign, field, value)
            for field, value in payload["changes"].items()
        ):
            return None
        return {
            "changes": [
                f"{campaign.external_id} already has "
                + "; ".join(
                    f"{campaign_field_label(field)} "
                    + strategy_value_in_words(field, value, campaign.account.currency)
                    for field, value in sorted(payload["changes"].items())
                )
                + ": this changes nothing."
            ]
        }

    def proposed_state(self, payload, campaigns):
        return {
            payload["campaign"]: {
                field: Decimal(value) if field.startswith("target_") else value
                for field, value in payload["changes"].items()
            }
        }
