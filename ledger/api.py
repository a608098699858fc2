from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from hitlproject.api import AgentAPIView
from hitlproject.validation import StrictQuery
from ledger.selectors import campaign_list_for_agent


class CampaignOutput(serializers.Serializer):
    external_id = serializers.CharField()
    account = serializers.CharField(source="account.external_id")
    name = serializers.CharField()
    daily_budget = serializers.DecimalField(max_digits=14, decimal_places=2)
    bid = serializers.DecimalField(max_digits=14, decimal_places=2)
    bidding_strategy = serializers.CharField()
    target_cpa = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    target_roas = serializers.DecimalField(max_digits=8, decimal_places=2, allow_null=True)
    status = serializers.CharField()
    strategy_locked = serializers.BooleanField()
    updated_at = serializers.DateTimeField()


class CampaignListQuery(StrictQuery):
    """It takes none: an agent asking for one account's campaigns is told so, not given every
    account's as if they were that one's."""


class CampaignListApi(AgentAPIView):
    @extend_schema(
        operation_id="campaigns_list",
        responses={200: CampaignOutput(many=True)},
        summary="The current state of the campaigns on this agent's accounts",
    )
    def get(self, request: Request) -> Response:
        CampaignListQuery(data=request.query_params).is_valid(raise_exception=True)
        campaigns = campaign_list_for_agent(agent=request.user)
        return Response(CampaignOutput(campaigns, many=True).data)
