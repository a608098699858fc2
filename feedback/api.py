from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from feedback.selectors import feedback_list_for_agent
from hitlproject.api import AgentAPIView, IdCursorPagination


class FeedbackOutput(serializers.Serializer):
    id = serializers.IntegerField()
    proposal = serializers.IntegerField(source="proposal_id")
    action_type = serializers.CharField(source="proposal.action_type")
    kind = serializers.CharField()
    reason_code = serializers.CharField()
    note = serializers.CharField()
    diff = serializers.JSONField()
    created_at = serializers.DateTimeField()


class FeedbackPagination(IdCursorPagination):
    """Oldest first, so an agent that keeps its cursor reads each record once."""

    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class FeedbackListApi(AgentAPIView):
    @extend_schema(
        operation_id="feedback_list",
        responses={200: FeedbackOutput(many=True)},
        summary="Feedback on this agent's proposals, oldest first, by cursor",
    )
    def get(self, request: Request) -> Response:
        queryset = feedback_list_for_agent(agent=request.user)
        paginator = FeedbackPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(FeedbackOutput(page, many=True).data)
