"""Deploying a batch of new creatives to a campaign. Magnitude is the batch's size."""

from decimal import Decimal

from rest_framework import serializers

from approvals.action_types import register
from approvals.action_types.base import ActionType, Assessment, CampaignRef
from approvals.validation import StrictSerializer
from ledger.models import Account, Creative

MAX_CREATIVES_PER_BATCH = 50


class CreativePayload(StrictSerializer):
    headline = serializers.CharField(max_length=150)
    body = serializers.CharField(max_length=2000)
    call_to_action = serializers.CharField(max_length=50)


class CreativeDeploymentPayload(StrictSerializer):
    campaign = CampaignRef()
    creatives = serializers.ListField(
        child=CreativePayload(), min_length=1, max_length=MAX_CREATIVES_PER_BATCH
    )


@register
class CreativeDeployment(ActionType):
    name = "creative_deployment"
    label = "creative batch"
    magnitude_unit = "count"
    risk_weight = 30
    payload_serializer = CreativeDeploymentPayload
    example_payload = {
        "campaign": "display-retarget",
        "creatives": [
            {
                "headline": "Search smarter",
                "body": "Find what you need in seconds.",
                "call_to_action": "Try it free",
            }
        ],
    }

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
            (f"creative {number} {part.replace('_', ' ')}", creative[part])
            for number, creative in enumerate(payload["creatives"], start=1)
            for part in ("headline", "body", "call_to_action")
        ]

    def proposed_state(self, payload, campaigns):
        return {payload["campaign"]: {}}

    def apply(self, payload, campaigns, proposal) -> None:
        campaign = campaigns[payload["campaign"]]
        for fields in payload["creatives"]:
            creative = Creative(campaign=campaign, deployed_by_proposal=proposal, **fields)
            creative._change_reason = f"proposal #{proposal.pk}: {proposal.summary}"
            creative.save()
