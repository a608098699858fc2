from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from approvals.api import PolicyRefOutput, ProposalInput
from approvals.services.proposals import proposal_dry_run
from hitlproject.api import AgentAPIView
from hitlproject.validation import StrictFloatField, finite_number
from policies.engine import HOLD_RULE_LABELS


class DryRunInput(ProposalInput):
    """The body of a proposal; only the action decides the verdict, so the rest is optional."""

    rationale = serializers.CharField(max_length=10_000, required=False)
    confidence = StrictFloatField(
        min_value=0.0, max_value=1.0, validators=[finite_number], required=False
    )


class HoldOutput(serializers.Serializer):
    rule = serializers.ChoiceField(
        choices=list(HOLD_RULE_LABELS),
        help_text="The rule that held the action back from running on its own.",
    )
    text = serializers.CharField(help_text="The rule with its figures, in words.")


class DryRunOutput(serializers.Serializer):
    outcome = serializers.CharField()
    policy = PolicyRefOutput(allow_null=True)
    reasons = serializers.ListField(child=serializers.CharField())
    held_by = HoldOutput(many=True)
    required_approvals = serializers.IntegerField()
    risk = serializers.IntegerField()
    magnitude = serializers.DecimalField(max_digits=14, decimal_places=6)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    summary = serializers.CharField()


class PolicyEvaluateApi(AgentAPIView):
    @extend_schema(
        operation_id="policies_evaluate",
        request=DryRunInput,
        responses={200: DryRunOutput},
        summary="Dry run: what would happen to this action now (nothing is written)",
    )
    def post(self, request: Request) -> Response:
        serializer = DryRunInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        valid = serializer.validated_data
        assessed, verdict = proposal_dry_run(
            agent=request.user,
            account_external_id=valid["account"],
            action_type=valid["action_type"],
            payload=valid["payload"],
        )
        policy = None
        if verdict.policy_id is not None:
            policy = {
                "id": verdict.policy_id,
                "name": verdict.policy_name,
                "version": verdict.policy_version,
            }
        return Response(
            DryRunOutput(
                {
                    "outcome": verdict.outcome,
                    "policy": policy,
                    "reasons": list(verdict.reasons),
                    "held_by": [{"rule": h.rule, "text": h.text} for h in verdict.held_by],
                    "required_approvals": verdict.required_approvals,
                    "risk": verdict.risk,
                    "magnitude": assessed.assessment.magnitude,
                    "amount": assessed.assessment.amount,
                    "summary": assessed.assessment.summary,
                }
            ).data
        )
