from functools import partial
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import Cursor
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param

from approvals.api import IDEMPOTENCY_HEADER, IdempotentAPIView, OutcomeOutput
from approvals.models import RejectionReason
from approvals.selectors import COUNTED, COUNTED_FIGURES
from approvals.services.agents import agent_key_still_in_force
from feedback.models import FeedbackKind, OutcomeEffect
from feedback.selectors import (
    SCORECARD_DAYS_DEFAULT,
    SCORECARD_DAYS_MOST,
    Scorecard,
    feedback_list_for_agent,
    scorecard_window,
    scorecards,
    scorecards_added_up,
)
from feedback.services import outcome_report_by_agent
from hitlproject.api import AgentAPIView, IdCursorPagination
from hitlproject.longpoll import (
    TOO_MANY_WAITS_DESCRIPTION,
    LongPoll,
    LongPollView,
    wait_field,
)
from hitlproject.validation import (
    FigureField,
    ListedChoiceField,
    PlainWholeNumber,
    ShownTextField,
    StrictQuery,
    StrictSerializer,
    disguises_said,
    letters_in_disguise,
    may_show_as_another,
    reading_as_said,
    reads_as,
)
from hitlproject.vocabulary import NOTE_MAX_LENGTH, how_many
from hitlproject.wakeups import feedback_topic

MAX_METRICS = 50


class MetricsField(serializers.DictField):
    """Figures by name: at most 50, names of 1 to 100 printable characters that show as
    themselves (``may_show_as_another``, each letter in another's dress named) and no two
    reading alike (``reads_as``), each a number kept as written (``FigureField``)."""

    child = FigureField()

    def to_internal_value(self, data: Any) -> dict[str, float]:
        metrics = super().to_internal_value(data)
        if len(metrics) > MAX_METRICS:
            raise serializers.ValidationError(f"At most {MAX_METRICS} figures.")
        # Printable, and each shown as itself: the proposal's page listed "ctr 0.01, сtr 0.7"
        # (a Cyrillic "с"), and a name with a variation selector or spaces at its end alike.
        disguised = {name: letters_in_disguise(name) for name in metrics}
        if any(
            not 1 <= len(name) <= 100 or may_show_as_another(name.translate(str.maketrans(its)))
            for name, its in disguised.items()
        ):
            raise serializers.ValidationError(
                "Names are 1 to 100 printable characters, each shown as itself: no invisible "
                "or blank characters, no spaces at either end or two together, no word mixing "
                "Latin, Cyrillic or Greek letters."
            )
        # A letter in another's dress: "ｃtr 0.7" (a full-width "ｃ") beside "ctr 0.01".
        for name, its in disguised.items():
            if its:
                raise serializers.ValidationError(
                    f"Names are each shown as itself: “{name}” holds {disguises_said(its)}. "
                    "Write each as the letter or digit it shows as."
                )
        # Two names that read alike: "сор" (in Cyrillic letters) beside "cop".
        read: dict[tuple[str, ...], str] = {}
        for name in metrics:
            other = read.setdefault(reads_as(name), name)
            if other != name:
                raise serializers.ValidationError(
                    f"Names are each shown as itself: “{name}” reads as “{other}”"
                    f"{reading_as_said(name, other)}. Name each so that it reads as itself."
                )
        return metrics


class OutcomeInput(StrictSerializer):
    """What the agent measured after its proposal executed. A field it does not know is a
    400."""

    metrics = MetricsField(
        help_text='What was measured after the action, by name: {"conversions_7d": 118}.'
    )
    effect = ListedChoiceField(
        choices=OutcomeEffect.choices, required=False, allow_blank=True, default=""
    )
    note = ShownTextField(max_length=NOTE_MAX_LENGTH, required=False, allow_blank=True, default="")


class FeedbackOutput(serializers.Serializer):
    id = serializers.IntegerField()
    proposal = serializers.IntegerField(source="proposal_id")
    action_type = serializers.CharField(source="proposal.action_type")
    summary = serializers.CharField(
        source="proposal.summary",
        help_text="The proposal's action in words, as its `summary`: as a reviewer edited it, "
        "if one did (`diff` says how).",
    )
    external_ref = serializers.CharField(
        source="proposal.external_ref",
        help_text="The agent's own reference to the proposal, as it sent it; empty if none.",
    )
    kind = serializers.ChoiceField(choices=FeedbackKind.choices)
    reason_code = serializers.ChoiceField(
        choices=RejectionReason.choices,
        allow_blank=True,
        help_text="For kind rejected: why; empty otherwise.",
    )
    note = serializers.CharField()
    diff = serializers.JSONField()
    outcome = OutcomeOutput(allow_null=True, help_text="For kind outcome: what a person reported.")
    created_at = serializers.DateTimeField()


class FeedbackPage(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next page now; null at the end.")
    previous = serializers.URLField(allow_null=True)
    resume = serializers.URLField(help_text="Fetch later for what arrives after this page.")
    results = FeedbackOutput(many=True)


class FeedbackPagination(IdCursorPagination):
    """A feed, oldest first. ``next`` pages through what there is now and is null at the
    end, as usual; ``resume`` is always there: fetched later, it returns only what arrived
    after this page, so an agent that keeps it reads each record once."""

    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def paginate_queryset(self, queryset, request, view=None):
        page = super().paginate_queryset(queryset, request, view)
        # Links to keep and follow later, not this request's long poll: a resume link that
        # carried wait=60 would hold whoever fetches it later for a minute.
        self.base_url = remove_query_param(self.base_url, "wait")
        return page

    def get_resume_link(self) -> str:
        if self.page:
            position = self._get_position_from_instance(self.page[-1], self.ordering)
        else:
            position = self.cursor.position if self.cursor else None
        if position is None:
            return remove_query_param(self.base_url, self.cursor_query_param)
        return self.encode_cursor(Cursor(offset=0, reverse=False, position=position))

    def get_paginated_response(self, data) -> Response:
        response = super().get_paginated_response(data)
        response.data["resume"] = self.get_resume_link()
        return response


class FeedbackListQuery(StrictQuery):
    wait = wait_field()
    cursor = serializers.CharField(required=False, help_text="From a next or resume link.")
    page_size = PlainWholeNumber(
        min_value=1,
        max_value=FeedbackPagination.max_page_size,
        required=False,
        help_text="Records a page (default 100).",
    )


class FeedbackListApi(LongPollView, AgentAPIView):
    @extend_schema(
        operation_id="feedback_list",
        parameters=[FeedbackListQuery],
        responses={
            200: FeedbackPage,
            429: OpenApiResponse(description=TOO_MANY_WAITS_DESCRIPTION),
        },
        summary=(
            "Feedback on this agent's proposals, oldest first, by cursor; with wait, once "
            "there is some (long poll)"
        ),
    )
    def get(self, request: Request) -> Response:
        query = FeedbackListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        found, response = self.page(request)
        seconds = query.validated_data.get("wait")
        if seconds and not found:
            response.long_poll = LongPoll(
                topic=feedback_topic(request.user.pk),
                seconds=seconds,
                reread=partial(self.page_data, request),
                agent=request.user.pk,
                # The page and its links follow the request's address (cursor, host).
                key=("feedback", request.user.pk, request.auth.pk, request.build_absolute_uri()),
            )
        return response

    def page_data(self, request: Request) -> tuple[bool, dict]:
        # The key may have been revoked (or the agent deactivated) while the request waited.
        agent_key_still_in_force(key_id=request.auth.pk)
        found, response = self.page(request)
        return found, response.data

    def page(self, request: Request) -> tuple[bool, Response]:
        """The page the request asks for: whether it holds any feedback, and the answer."""
        paginator = FeedbackPagination()
        page = paginator.paginate_queryset(
            feedback_list_for_agent(agent=request.user), request, view=self
        )
        return bool(page), paginator.get_paginated_response(FeedbackOutput(page, many=True).data)


class ScorecardQuery(StrictQuery):
    days = PlainWholeNumber(
        min_value=1,
        max_value=SCORECARD_DAYS_MOST,
        required=False,
        default=SCORECARD_DAYS_DEFAULT,
        help_text="The window, in days.",
    )


def counted(name: str) -> serializers.IntegerField:
    """A count of proposals, described as the console labels it."""
    figure = next(figure for figure in COUNTED_FIGURES if figure.name == name)
    return serializers.IntegerField(help_text=f"{figure.label}: {figure.counts}.")


class ScorecardOutput(serializers.Serializer):
    action_type = serializers.CharField()
    proposals = counted("proposals")
    auto_executed = counted("auto_executed")
    decided = counted("decided")
    approved = counted("approved")
    edited = counted("edited")
    rejected = counted("rejected")
    waiting = counted("waiting")
    auto_not_executed = counted("auto_not_executed")
    blocked = counted("blocked")
    expired = counted("expired")
    withdrawn = counted("withdrawn")
    superseded = counted("superseded")
    auto_execution_rate = serializers.FloatField(
        allow_null=True, help_text="Auto-executed, of all proposals made."
    )
    approval_rate = serializers.FloatField(
        allow_null=True, help_text="Approved by a person, of all decided by a person."
    )
    clean_approval_rate = serializers.FloatField(
        allow_null=True, help_text="Approved exactly as proposed, of all decided by a person."
    )
    edit_rate = serializers.FloatField(
        allow_null=True, help_text="With edits, of all approved by a person."
    )
    rejection_rate = serializers.FloatField(
        allow_null=True, help_text="Rejected, of all decided by a person."
    )
    rejection_reasons = serializers.DictField(
        child=serializers.IntegerField(), help_text="The rejected proposals, by reason."
    )
    decision_median_seconds = serializers.SerializerMethodField(
        help_text="Median time from evaluation to a person's decision, of those decided."
    )
    outcomes = serializers.DictField(
        child=serializers.IntegerField(),
        help_text='Reported outcomes by effect; "" counts those with figures only.',
    )

    def get_decision_median_seconds(self, card: Scorecard) -> float | None:
        median = card.decision_median
        return None if median is None else round(median.total_seconds(), 1)


class ScorecardResponse(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    counted = serializers.CharField(help_text="What the counts count, over which period.")
    figures = serializers.DictField(
        child=serializers.CharField(), help_text="Each count's label and what it counts."
    )
    action_types = ScorecardOutput(many=True)
    all_action_types = ScorecardOutput(
        help_text='Every action type together (action_type ""): the counts, rejection '
        "reasons and outcomes added up, the rates of those sums, and the median time to a "
        "person's decision over all of them (not a median of the medians)."
    )


class ScorecardApi(AgentAPIView):
    @extend_schema(
        operation_id="scorecard",
        parameters=[ScorecardQuery],
        responses={200: ScorecardResponse},
        summary="How this agent's proposals fared over the last days, by action type",
    )
    def get(self, request: Request) -> Response:
        query = ScorecardQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        days = query.validated_data["days"]
        since, until = scorecard_window(days)
        cards = scorecards(since=since, until=until, agent=request.user)
        scorecard = {
            "since": since,
            "until": until,
            "counted": (
                f"Proposals made from since to until (the last {how_many(days, 'day')}). {COUNTED}"
            ),
            "figures": {
                figure.name: f"{figure.label}: {figure.counts}." for figure in COUNTED_FIGURES
            },
            "action_types": cards,
            "all_action_types": scorecards_added_up(
                cards, since=since, until=until, agent=request.user
            ),
        }
        return Response(ScorecardResponse(scorecard).data)


class ProposalOutcomeApi(IdempotentAPIView):
    @extend_schema(
        operation_id="proposals_outcome",
        request=OutcomeInput,
        responses={201: OutcomeOutput},
        parameters=[IDEMPOTENCY_HEADER],
        summary="Report what was measured after an executed proposal",
    )
    def post(self, request: Request, proposal_id: int) -> Response:
        return super().post(request, proposal_id=proposal_id)

    def checked(self, request: Request) -> dict:
        serializer = OutcomeInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def perform(self, request: Request, checked: dict, proposal_id: int) -> Response:
        outcome = outcome_report_by_agent(proposal_id=proposal_id, agent=request.user, **checked)
        return Response(OutcomeOutput(outcome).data, status=status.HTTP_201_CREATED)
