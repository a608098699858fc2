"""Deploying a batch of new creatives to a campaign. Magnitude is the batch's size."""

from decimal import Decimal

from django import forms
from django.utils.text import capfirst
from rest_framework import serializers

from approvals.action_types import register
from approvals.action_types.base import (
    ActionType,
    Assessment,
    CampaignRef,
    example_campaigns,
)
from approvals.action_types.forms import ActionEditForm, TextField, parse_path
from hitlproject.validation import MultiLineCharField, SingleLineCharField, StrictSerializer
from ledger.models import Account, Creative
from policies.guardrails import BrandRules
from policies.models import BrandGuidelines

MAX_CREATIVES_PER_BATCH = 50


class CreativePayload(StrictSerializer):
    """A creative as it is shown: its headline and call to action on one line each (as the
    reviewer's form shows them), its body in lines."""

    headline = SingleLineCharField(max_length=150)
    body = MultiLineCharField(max_length=2000)
    call_to_action = SingleLineCharField(max_length=50)


class CreativeDeploymentPayload(StrictSerializer):
    campaign = CampaignRef()
    creatives = serializers.ListField(
        child=CreativePayload(),
        min_length=1,
        max_length=MAX_CREATIVES_PER_BATCH,
        # DRF's own say "Ensure this field has at least 1 elements."
        error_messages={
            "min_length": "Give at least 1 creative.",
            "max_length": f"Give at most {MAX_CREATIVES_PER_BATCH} creatives a batch.",
        },
    )


CREATIVE_PARTS = {
    "headline": forms.TextInput(attrs={"size": 40}),
    "body": forms.Textarea(attrs={"rows": 3, "cols": 40}),
    "call_to_action": forms.TextInput(attrs={"size": 20}),
}


class CreativeDeploymentEdit(ActionEditForm):
    """The headline, body and call to action of each creative in the batch."""

    def creatives(self) -> list:
        creatives = self.payload.get("creatives")
        return creatives if isinstance(creatives, list) else []

    @staticmethod
    def name(number: int, part: str) -> str:
        return f"creative-{number}-{part}"

    def add_payload_fields(self) -> None:
        for number in range(len(self.creatives())):
            for part, widget in CREATIVE_PARTS.items():
                self.fields[self.name(number, part)] = TextField(
                    label=capfirst(_part_of_creative(part, number + 1)), widget=widget
                )

    def initial_from(self, payload):
        return {
            self.name(number, part): creative.get(part, "")
            for number, creative in enumerate(self.creatives())
            for part in CREATIVE_PARTS
        }

    def edited(self, cleaned):
        creatives = [
            {part: cleaned[self.name(number, part)] for part in CREATIVE_PARTS}
            for number in range(len(self.creatives()))
        ]
        return {**self.payload, "creatives": creatives}

    def field_for(self, path):
        if len(path) == 3 and path[0] == "creatives":
            name = self.name(path[1], path[2])
            return name if name in self.fields else None
        return None

    def groups(self):
        return [
            (f"Creative {number + 1}", [self[self.name(number, part)] for part in CREATIVE_PARTS])
            for number in range(len(self.creatives()))
        ]


@register
class CreativeDeployment(ActionType):
    proposed_by_kinds = ("production",)
    name = "creative_deployment"
    label = "creative batch"
    magnitude_unit = "count"
    magnitude_counts = "creative"
    risk_weight = 30
    payload_serializer = CreativeDeploymentPayload
    edit_form = CreativeDeploymentEdit

    def example_payload(self, account, magnitude):
        campaigns = example_campaigns(account)
        if not campaigns:
            return None
        # With the account's required disclaimers, so that its brand guidelines pass it.
        guidelines = BrandGuidelines.objects.filter(account=account).first()
        rules = BrandRules.from_text("", "", guidelines.required_disclaimers if guidelines else "")
        body = "\n".join(["Find what you need in seconds.", *rules.required_disclaimers])
        creative = {"headline": "Search smarter", "body": body, "call_to_action": "Try it free"}
        count = min(max(int(magnitude), 1), MAX_CREATIVES_PER_BATCH)
        return {"campaign": campaigns[0].external_id, "creatives": [creative] * count}

    def campaign_fields(self, payload):
        # Deploying adds creatives; it reads nothing on the campaign that could move under it.
        return {payload["campaign"]: ()}

    def assess(self, payload, campaigns, account: Account) -> Assessment:
        count = len(payload["creatives"])
        noun = "creative" if count == 1 else "creatives"
        return Assessment(
            magnitude=Decimal(count),
            magnitude_label=f"A batch of {count} {noun}",
            summary=f"deploy {count} {noun} to {payload['campaign']}",
        )

    def texts(self, payload):
        return [
            (_part_of_creative(part, number), creative[part])
            for number, creative in enumerate(payload["creatives"], start=1)
            for part in ("headline", "body", "call_to_action")
        ]

    def words_shown(self, payload):
        return [
            (
                f"Creative {number}",
                [(capfirst(part.replace("_", " ")), creative[part]) for part in CREATIVE_PARTS],
            )
            for number, creative in enumerate(payload["creatives"], start=1)
        ]

    def field_words(self, path):
        match parse_path(path):
            case ("creatives", int(index), str(part)):
                return _part_of_creative(part, index + 1)
        return super().field_words(path)

    def proposed_state(self, payload, campaigns):
        return {payload["campaign"]: {}}

    def apply(self, payload, campaigns, proposal) -> None:
        campaign = campaigns[payload["campaign"]]
        for fields in payload["creatives"]:
            creative = Creative(campaign=campaign, deployed_by_proposal=proposal, **fields)
            creative._change_reason = f"proposal #{proposal.pk}: {proposal.summary}"
            creative.save()

    def records_created(self, proposal) -> dict[str, list[int]]:
        # Saved one by one in the batch's order (``apply``), so their ids follow it.
        return {"creatives": sorted(creative.pk for creative in proposal.deployed_creatives.all())}


def _part_of_creative(part: str, number: int) -> str:
    """A creative's text as a reason names it: "body of creative 2"."""
    return f"{part.replace('_', ' ')} of creative {number}"
