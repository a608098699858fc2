"""The agent API for proposals: submit, batch, list, detail, withdraw, and the dry run."""

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from approvals import action_types
from approvals.models import (
    DecisionOutcome,
    Execution,
    ExecutionStatus,
    Proposal,
    ProposalStatus,
    RejectionReason,
    WithdrawnBy,
)
from approvals.selectors import (
    Retry,
    carried_out,
    failing_at_next_attempt,
    next_attempts_due,
    proposal_get_for_agent,
    proposal_list_for_agent,
    proposed_payloads,
    reasons_as_they_stand,
    reassessed_otherwise,
    reassessed_policy_ref,
    retries_of,
    routing_policy_ref,
    routing_reasons,
    verdict_policy_ref,
)
from approvals.services.agents import agent_key_still_in_force
from approvals.services.idempotency import (
    MAX_KEY_LENGTH,
    Replay,
    idempotency_answer_store,
    idempotency_key_not_reused,
    idempotency_key_take,
    request_fingerprint,
)
from approvals.services.proposals import (
    FreeTextTally,
    Submission,
    action_validate,
    proposal_dry_run,
    proposal_submit,
    proposal_withdraw,
    proposals_submit,
    refused_to_agents,
)
from hitlproject.api import AgentAPIView, IdCursorPagination, api_error_body
from hitlproject.errors import InvalidInput
from hitlproject.longpoll import (
    TOO_MANY_WAITS_DESCRIPTION,
    LongPoll,
    LongPollView,
    wait_field,
)
from hitlproject.schema import docstring_for_code_readers
from hitlproject.validation import (
    ListedChoiceField,
    PlainWholeNumber,
    ShownTextField,
    StrictFloatField,
    StrictQuery,
    StrictSerializer,
    bounded_json,
    finite_number,
)
from hitlproject.vocabulary import (
    NOTE_MAX_LENGTH,
    UNDER_WAY_STATUSES,
    CarriedOut,
    VerdictOutcome,
)
from hitlproject.wakeups import proposal_topic
from policies.engine import HOLD_RULE_LABELS
from policies.services import version_number

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Makes a retry safe: the same key and body replay the original answer; the same key "
        "with another body is 422; a retry while the first is still in flight is 409. "
        "Kept at least 24 hours."
    ),
)


class ProposalInput(StrictSerializer):
    """An action on one of the agent's accounts, with why (rationale, supporting data) and how
    sure it is (confidence). A field it does not know is a 400."""

    action_type = serializers.CharField(max_length=32, help_text="One of the action types.")
    account = serializers.SlugField(max_length=100, help_text="The account's external id.")
    payload = serializers.DictField(help_text="The action's fields; see the action type.")
    rationale = ShownTextField(max_length=10_000)
    supporting_data = serializers.DictField(required=False, default=dict, validators=[bounded_json])
    confidence = StrictFloatField(min_value=0.0, max_value=1.0, validators=[finite_number])
    external_ref = ShownTextField(max_length=200, required=False, allow_blank=True, default="")


class DecisionOutput(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=DecisionOutcome.choices)
    reason_code = serializers.ChoiceField(
        choices=RejectionReason.choices,
        allow_blank=True,
        help_text="Why a reviewer rejected it; empty for an approval.",
    )
    note = serializers.CharField()
    edited_payload = serializers.JSONField(allow_null=True)
    decided_at = serializers.DateTimeField(source="created_at")
    round = serializers.IntegerField(
        source="review_round",
        help_text="The review round it was made in, from 1. A proposal sent back to a person "
        "(edited after an approval, held by a kill switch before it ran, re-routed when "
        "re-assessed) starts a new round: only the approvals of the last round let it run.",
    )


class ExecutionOutput(serializers.Serializer):
    attempt = serializers.IntegerField()
    executor = serializers.CharField()
    status = serializers.ChoiceField(
        choices=ExecutionStatus.choices,
        help_text="This attempt's, as recorded (the proposal's own status says where it "
        "stands): failed while the proposal is executing means another attempt follows "
        "(next_attempt_at says when).",
    )
    before_state = serializers.JSONField()
    after_state = serializers.JSONField()
    error = serializers.CharField()
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    created = serializers.SerializerMethodField(
        help_text="What the attempt added to the ledger besides campaign fields, by kind: a "
        "creative batch's creatives, their ledger ids in the batch's order ({\"creatives\": "
        "[12, 13]}); {} for an action that only sets campaign fields (its states say what "
        "changed), and for an attempt that did not succeed."
    )
    carried_out = serializers.ChoiceField(
        choices=CarriedOut.choices,
        read_only=True,
        help_text="What the proposal's attempts so far did on the channel, as far as the "
        "platform knows (of every attempt, not this one alone): yes (this attempt carried it "
        "out); partly (an attempt carried out some of it and not the rest: not retried); "
        "unknown (an attempt is under way, or one was sent and no answer said whether the "
        "channel carried it out: it may have); no (nothing was carried out: each attempt was "
        "refused, or never sent).",
    )
    next_attempt_at = serializers.DateTimeField(
        allow_null=True,
        read_only=True,
        help_text="While the proposal is executing and no attempt is under way, when its "
        "next attempt on the channel is due: after this one failed, once the backoff (or the "
        "channel's Retry-After) has passed; it may be past, the attempt then starts once a "
        "worker takes it up. Null otherwise: an attempt is under way, or none follows.",
    )

    @extend_schema_field(
        serializers.DictField(child=serializers.ListField(child=serializers.IntegerField()))
    )
    def get_created(self, execution: Execution) -> dict[str, list[int]]:
        if execution.status != ExecutionStatus.SUCCEEDED:
            return {}
        proposal = execution.proposal
        return action_types.named(proposal.action_type).records_created(proposal)


class PolicyRefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(
        help_text="The policy's name in the version that decided (its name now only where "
        "that version is not on record)."
    )
    version = serializers.IntegerField(
        allow_null=True,
        help_text="The policy's history record in force when it decided (its history_id in "
        "the audit export; not the version's number among the policy's own, which the "
        "console shows: that is number).",
    )
    number = serializers.IntegerField(
        allow_null=True,
        help_text="The number of the version that decided among the policy's own versions "
        "(1: as first saved), as the console counts them: the policy's page and history "
        "call it version <number>. It stays the number of the version that decided after "
        "the policy changes; null where that version is not on record.",
    )


class VerdictOutput(serializers.Serializer):
    outcome = serializers.ChoiceField(
        choices=VerdictOutcome.choices,
        source="verdict_outcome",
        help_text="Where it was routed when evaluated (routed_by's verdict); a re-assessment "
        "keeps it: a person asked to decide is asked still.",
    )
    policy = serializers.SerializerMethodField(
        help_text="The policy version that reached the verdict whose reasons and required "
        "approvals these are: the one that routed it, or, once a re-assessment (its figures "
        "moved, or a reviewer edited it) evaluated it again under another, that one (null: "
        "none matched it)."
    )
    reasons = serializers.SerializerMethodField(
        help_text="Why, in words: first what happened to it since it was routed (an edit, a "
        "re-assessment, a hold), newest first, then the reasons of the verdict policy names, "
        "which a re-assessment replaces with its own (routed_reasons keeps the routing's). "
        "A reason that a proposal approved ahead of it was about to change the same value "
        "first reads as it stands now: where that one has not run and is no longer about to "
        "(sent back to a person, failed, decided otherwise), it says so, and whether it may "
        "still supersede this one. One approved and not yet carried out that a hard ceiling "
        "of the policy that routed it, lowered since, refuses now: first, that its next "
        "attempt fails it rather than run."
    )
    routed_reasons = serializers.SerializerMethodField(
        help_text="Why it went where it did (outcome): the reasons of the verdict that "
        "routed it (routed_by's), which a re-assessment since (its figures moved, or a "
        "reviewer edited it: reassessed_at) leaves as they were, while reasons gives the "
        "re-assessment's (an amount edited down reads there as within the auto-execute "
        "ceiling; here, why a person was asked). Until then, reasons without its notes. "
        "Empty where none is on record."
    )
    required_approvals = serializers.IntegerField()
    routed_by = serializers.SerializerMethodField(
        help_text="The policy version that routed it when it was evaluated (null: none "
        "matched it); the same as policy unless a re-assessment was reached under another."
    )
    reassessed_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When it was last re-assessed against the policies in force; null if never.",
    )

    @extend_schema_field(PolicyRefOutput(allow_null=True))
    def get_policy(self, proposal: Proposal):
        return verdict_policy_ref(proposal)

    @extend_schema_field(PolicyRefOutput(allow_null=True))
    def get_routed_by(self, proposal: Proposal):
        return routing_policy_ref(proposal)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_reasons(self, proposal: Proposal) -> list[str]:
        return _reasons_now(proposal)

    def get_routed_reasons(self, proposal: Proposal) -> list[str]:
        return reasons_as_they_stand(proposal, routing_reasons([proposal]).get(proposal.pk, []))


class OutcomeOutput(serializers.Serializer):
    effect = serializers.CharField()
    metrics = serializers.JSONField()
    note = serializers.CharField()
    reported_by = serializers.SerializerMethodField()
    reported_at = serializers.DateTimeField(source="created_at")

    def get_reported_by(self, outcome) -> str:
        return f"{outcome.reported_by_kind}:{outcome.reported_by}"


class WithdrawalOutput(serializers.Serializer):
    by = serializers.ChoiceField(
        choices=WithdrawnBy.choices,
        allow_null=True,
        help_text="agent: the agent withdrew it; reviewer: a person withdrew it for the agent; "
        "null where that is not on record.",
    )
    note = serializers.CharField(
        help_text="What was written with it (empty if nothing): by the reviewer who withdrew "
        "it, for the agent; or by the agent, for the people who read it."
    )


class RetryOutput(serializers.Serializer):
    by = serializers.ChoiceField(
        choices=[("reviewer", "reviewer")],
        help_text="reviewer: a person sent it to run again (as its decisions, people are "
        "not named to the agent).",
    )
    at = serializers.DateTimeField(
        help_text="When they sent it to run again: their approval to run it, after which "
        "it is approved, then executing, then executed or failed again."
    )
    failed_attempt = serializers.IntegerField(
        allow_null=True,
        help_text="The failed attempt it followed (its execution's attempt number); null "
        "where none is on record.",
    )
    failed_at = serializers.DateTimeField(
        allow_null=True, help_text="When that attempt failed (its finished_at)."
    )
    error = serializers.CharField(help_text="Why that attempt failed, as its execution said.")


class ProposalOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ProposalStatus.choices)
    action_type = serializers.CharField()
    account = serializers.CharField(source="account.external_id")
    payload = serializers.JSONField(
        help_text="The action as it runs: as its agent proposed it, or as a reviewer edited it."
    )
    proposed_payload = serializers.SerializerMethodField(
        help_text="The action as its agent proposed it (in the platform's spelling: amounts "
        "with 2 decimals): payload until a reviewer edits it."
    )
    rationale = serializers.CharField()
    supporting_data = serializers.JSONField()
    confidence = StrictFloatField()
    external_ref = serializers.CharField()
    summary = serializers.CharField()
    magnitude = serializers.DecimalField(max_digits=14, decimal_places=6)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    risk = serializers.IntegerField(allow_null=True)
    verdict = serializers.SerializerMethodField()
    decisions = serializers.SerializerMethodField()
    execution = serializers.SerializerMethodField()
    outcomes = serializers.SerializerMethodField()
    withdrawal = serializers.SerializerMethodField(
        help_text="Who withdrew it, for a withdrawn proposal; null otherwise."
    )
    retries = serializers.SerializerMethodField(
        help_text="Each time a person sent its failed execution to run again, oldest first "
        "(empty if never): a person's retry is their approval to run it, so a proposal "
        "policy let run that failed and was retried ran the second time on a person's "
        "word. decided_at stays when it was first decided; execution is its last attempt, "
        "and each retry here keeps the failure it followed."
    )
    review_round = serializers.IntegerField(
        help_text="The review round it is in, from 1 (0: it was never asked of a person). A "
        "proposal sent back to a person starts a new round; the approvals of this round "
        "(decisions whose round is this one) are those counted toward verdict."
        "required_approvals: under a two-person rule, one approval of this round while it is "
        "pending_review means it waits for another reviewer."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    evaluated_at = serializers.DateTimeField(allow_null=True)
    review_expires_at = serializers.DateTimeField(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    executed_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(serializers.JSONField())
    def get_proposed_payload(self, proposal: Proposal):
        return proposed_payloads([proposal]).get(proposal.pk, proposal.payload)

    @extend_schema_field(VerdictOutput(allow_null=True))
    def get_verdict(self, proposal: Proposal):
        if not proposal.verdict_outcome:
            return None  # not evaluated yet
        return VerdictOutput(proposal).data

    @extend_schema_field(DecisionOutput(many=True))
    def get_decisions(self, proposal: Proposal):
        return DecisionOutput(proposal.decisions.all(), many=True).data

    @extend_schema_field(ExecutionOutput(allow_null=True))
    def get_execution(self, proposal: Proposal):
        executions = list(proposal.executions.all())
        due = next_attempts_due([proposal]) if executions else {}
        return _execution(executions, due.get(proposal.pk))

    @extend_schema_field(OutcomeOutput(many=True))
    def get_outcomes(self, proposal: Proposal):
        return OutcomeOutput(proposal.outcomes.all(), many=True).data

    @extend_schema_field(WithdrawalOutput(allow_null=True))
    def get_withdrawal(self, proposal: Proposal):
        return _withdrawal(proposal)

    @extend_schema_field(RetryOutput(many=True))
    def get_retries(self, proposal: Proposal):
        return _retries(retries_of([proposal]).get(proposal.pk, []))


def _reasons_now(proposal: Proposal, failing: Mapping[int, str] | None = None) -> list[str]:
    """Its ``verdict.reasons`` as they stand (``reasons_as_they_stand``), first, for one
    approved and not yet carried out that a hard ceiling of the policy that routed it,
    lowered since, refuses now, that its next attempt fails it rather than run
    (``failing_at_next_attempt``, as the runner judges it; ``failing``: read once for a page
    of proposals): its agent read only that attempt 2 was due, and that it still may
    execute."""
    reasons = reasons_as_they_stand(proposal, proposal.verdict_reasons)
    if proposal.status not in UNDER_WAY_STATUSES:
        return reasons
    if failing is None:
        failing = failing_at_next_attempt([proposal])
    fails = failing.get(proposal.pk)
    return [fails, *reasons] if fails else reasons


def _execution(executions: list[Execution], next_attempt_at: datetime | None) -> dict | None:
    """The last attempt, as ``ExecutionOutput`` says it, with what the attempts so far did on
    the channel (``carried_out``) and when the next is due (``next_attempts_due``'s)."""
    if not executions:
        return None
    last = executions[-1]
    last.carried_out = carried_out(executions)
    last.next_attempt_at = next_attempt_at
    return ExecutionOutput(last).data


def _retries(retries: list[Retry]) -> list[dict]:
    """``RetryOutput`` of each retry, built directly (``proposal_body``)."""
    return [
        {
            "by": "reviewer",
            "at": _time(retry.at),
            "failed_attempt": retry.failed.attempt if retry.failed else None,
            "failed_at": _time(retry.failed.finished_at) if retry.failed else None,
            "error": retry.failed.error if retry.failed else "",
        }
        for retry in retries
    ]


def _withdrawal(proposal: Proposal) -> dict | None:
    if proposal.status != ProposalStatus.WITHDRAWN:
        return None
    # Who, if on record: migration approvals 0026 read it from history for those withdrawn
    # before the platform kept it, where history named an agent or a person.
    return {"by": proposal.withdrawn_by or None, "note": proposal.withdrawal_note}


_MAGNITUDE = ProposalOutput().fields["magnitude"]
_AMOUNT = ProposalOutput().fields["amount"]


def _time(value: datetime | None) -> str | None:
    """As DRF writes a time in UTC (its DateTimeField, at a fraction of the cost)."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def proposal_body(
    proposal: Proposal,
    *,
    just_submitted: bool = False,
    proposed: Mapping[int, Any] | None = None,
    retried: Mapping[int, list[Retry]] | None = None,
    routed: Mapping[int, list[str]] | None = None,
    due: Mapping[int, datetime] | None = None,
    failing: Mapping[int, str] | None = None,
) -> dict:
    """The API's view of a proposal, as ``ProposalOutput`` describes it (its schema), built
    directly: the submission path answers thousands a second, and a serializer per item
    would cost more than everything else. One just submitted has no decisions, executions
    or outcomes yet, so it is answered without asking the database for them. ``proposed``,
    ``retried``, ``routed``, ``due`` and ``failing``: ``proposed_payloads``, ``retries_of``,
    ``routing_reasons``, ``next_attempts_due`` and ``failing_at_next_attempt`` of a page of
    proposals, read once for all of them."""
    verdict = None
    if proposal.verdict_outcome:
        routed_by = routing_policy_ref(proposal)
        if routed is None:
            routed = routing_reasons([proposal])
        verdict = {
            "outcome": proposal.verdict_outcome,
            "policy": (
                reassessed_policy_ref(proposal) if reassessed_otherwise(proposal) else routed_by
            ),
            # Just submitted, what it was routed behind was read about to execute.
            "reasons": (
                [str(reason) for reason in proposal.verdict_reasons]
                if just_submitted
                else _reasons_now(proposal, failing)
            ),
            "routed_reasons": (
                routed.get(proposal.pk, [])
                if just_submitted
                else reasons_as_they_stand(proposal, routed.get(proposal.pk, []))
            ),
            "required_approvals": proposal.required_approvals,
            "routed_by": routed_by,
            "reassessed_at": _time(proposal.reassessed_at),
        }
    proposed_payload = proposal.payload
    if just_submitted:
        decisions, execution, outcomes, retries = [], None, [], []
    else:
        decisions = DecisionOutput(proposal.decisions.all(), many=True).data
        executions = list(proposal.executions.all())
        if due is None:
            due = next_attempts_due([proposal]) if executions else {}
        execution = _execution(executions, due.get(proposal.pk))
        outcomes = OutcomeOutput(proposal.outcomes.all(), many=True).data
        if proposed is None:
            proposed = proposed_payloads([proposal])
        proposed_payload = proposed.get(proposal.pk, proposal.payload)
        if retried is None:
            retried = retries_of([proposal])
        retries = _retries(retried.get(proposal.pk, []))
    return {
        "id": proposal.pk,
        "status": proposal.status,
        "action_type": proposal.action_type,
        "account": proposal.account.external_id,
        "payload": proposal.payload,
        "proposed_payload": proposed_payload,
        "rationale": proposal.rationale,
        "supporting_data": proposal.supporting_data,
        "confidence": float(proposal.confidence),
        "external_ref": proposal.external_ref,
        "summary": proposal.summary,
        "magnitude": _MAGNITUDE.to_representation(proposal.magnitude),
        "amount": None if proposal.amount is None else _AMOUNT.to_representation(proposal.amount),
        "risk": proposal.risk,
        "verdict": verdict,
        "decisions": decisions,
        "execution": execution,
        "outcomes": outcomes,
        "withdrawal": _withdrawal(proposal),
        "retries": retries,
        "review_round": proposal.review_round,
        "created_at": _time(proposal.created_at),
        "updated_at": _time(proposal.updated_at),
        "evaluated_at": _time(proposal.evaluated_at),
        "review_expires_at": _time(proposal.review_expires_at),
        "decided_at": _time(proposal.decided_at),
        "executed_at": _time(proposal.executed_at),
    }


def submission(data: Any, checker: ProposalInput | None = None) -> Submission:
    """A proposal's fields as the agent sent them, checked for form (or a 400). Building a
    serializer costs more than using it: a batch passes one ``checker`` for all its items,
    and a single submission uses the one its thread kept (the web server keeps its threads
    between requests: hitlproject.asgi_handler)."""
    if data is None:  # as DRF says of any other JSON that is not an object (not a bare list)
        raise ValidationError(
            {
                api_settings.NON_FIELD_ERRORS_KEY: [
                    "Invalid data. Expected a dictionary, but got null."
                ]
            }
        )
    if checker is None:
        checker = getattr(_checkers, "proposal", None)
        if checker is None:
            checker = _checkers.proposal = ProposalInput()
    try:
        return Submission(**checker.run_validation(data))
    except ValidationError as error:
        raise _with_action_errors(error, data) from None


def _with_action_errors(error: ValidationError, data: Any) -> ValidationError:
    """A refusal of the proposal's other fields, with its action's own faults too (an
    unknown action type, a payload its type refuses), so that the agent mends them all in
    one go, not one stage at a time. Its faults against the ledger (an unknown campaign, a
    bid it has already) are found once the rest is right."""
    detail = error.detail
    if not isinstance(detail, dict) or not isinstance(data, dict):
        return error
    action_type, payload = data.get("action_type"), data.get("payload")
    if {"action_type", "payload"} & set(detail) or not (
        isinstance(action_type, str) and isinstance(payload, dict)
    ):
        return error  # the serializer has said what is wrong with them
    # An API key is never the platform's: a type only it proposes is refused as such, not
    # told as a payload to fill in (which, filled in, would still be refused).
    refusal = refused_to_agents(action_type)
    if refusal is not None:
        return ValidationError({**detail, **refusal.field_errors})
    try:
        action_validate(action_type_name=action_type, raw_payload=payload)
    except InvalidInput as fault:
        return ValidationError({**detail, **fault.field_errors})
    return error


_checkers = threading.local()


def idempotency_key_of(request: Request) -> str | None:
    """The request's Idempotency-Key, if it sends one; a 400 if it is not one."""
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        # Spaces and tabs at either end are not part of a header's value (RFC 9110, 5.5): a
        # proxy drops them, and the web server kept trailing ones, so "run-7 " was another key
        # than the "run-7" of the same request retried through a proxy.
        key = key.strip(" \t")
    if key is not None and _sent_more_than_once(request, b"idempotency-key"):
        # Django joins the headers into one ("a,b"); a proxy may keep the first, the last or
        # both, so that a retry through it would carry another key and propose twice.
        raise ValidationError(
            {"Idempotency-Key": ["Send one Idempotency-Key header, not several."]}
        )
    if key is not None and not (
        1 <= len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()
    ):
        # HTTP carries a header's value as bytes, which the server reads as Latin-1: a key
        # written in UTF-8 came in as other letters (or control characters), and a proxy
        # or a retry from another client may re-encode it. The key, an opaque token, is
        # written in printable ASCII (a structured-field string, as the IETF's
        # Idempotency-Key draft says), read the same by every party.
        raise ValidationError({"Idempotency-Key": ["Must be 1 to 255 printable ASCII characters."]})
    return key


def _sent_more_than_once(request: Request, name: bytes) -> bool:
    """Whether the request carried header ``name`` (lower case) more than once, as the ASGI
    server received it (its ``scope``; a request made otherwise, by the test client, has
    one value a header)."""
    scope = getattr(request._request, "scope", None)
    if scope is None:
        return False
    return sum(1 for sent, _ in scope.get("headers", ()) if sent.lower() == name) > 1


@docstring_for_code_readers
class IdempotentAPIView(AgentAPIView):
    """A POST view whose answer is kept under the agent's Idempotency-Key, if it sends one:
    the key taken, the work done and the answer stored in one transaction
    (approvals.services.idempotency)."""

    def post(self, request: Request, **kwargs: Any) -> Response:
        key = idempotency_key_of(request)
        if key is None:
            return self.perform(request, self.checked(request), **kwargs)
        try:
            fingerprint = request_fingerprint(request.path, request.data)
        except ParseError:  # no request at all: a key used already was used with another
            idempotency_key_not_reused(agent=request.user, key=key, fingerprint="")
            raise
        try:
            checked = self.checked(request)
        except ValidationError:  # a key used with another body says so first (422)
            idempotency_key_not_reused(agent=request.user, key=key, fingerprint=fingerprint)
            raise
        with transaction.atomic():
            taken = idempotency_key_take(agent=request.user, key=key, fingerprint=fingerprint)
            if isinstance(taken, Replay):
                return Response(
                    taken.body,
                    status=taken.status,
                    headers={
                        **self.answer_headers(taken.status, taken.body),
                        "Idempotent-Replayed": "true",
                    },
                )
            response = self.perform(request, checked, **kwargs)
            idempotency_answer_store(taken=taken, status=response.status_code, body=response.data)
        return response

    def checked(self, request: Request) -> Any:
        """The request's body checked for form, before the transaction: on SQLite the
        transaction holds the database's one write lock, which no other request should wait
        on while a body (a batch: a thousand items) is checked."""
        raise NotImplementedError

    def perform(self, request: Request, checked: Any, **kwargs: Any) -> Response:
        raise NotImplementedError

    def answer_headers(self, status_code: int, body: Any) -> dict[str, str]:
        """The headers ``perform`` answers with besides the body, which a replay of its
        answer carries again (the body is what is kept)."""
        return {}


class ProposalPagination(IdCursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class ProposalPage(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next page; null at the end.")
    previous = serializers.URLField(allow_null=True)
    results = ProposalOutput(many=True)


class ProposalListFilters(StrictQuery):
    status = ListedChoiceField(choices=ProposalStatus.choices, required=False)
    # An action type no agent may propose is refused in a submission's words: an empty page
    # would say this agent proposed none of a type that does not exist.
    action_type = serializers.ChoiceField(
        choices=action_types.agent_names(),
        required=False,
        error_messages={"invalid_choice": action_types.unknown_text("{input}")},
    )
    since = serializers.DateTimeField(
        required=False,
        help_text="Only the proposals made at or after this time (their created_at, not "
        "updated_at: a proposal made earlier and decided since is not among them). ISO 8601; "
        "a time without an offset is UTC.",
    )
    cursor = serializers.CharField(required=False, help_text="From a next or previous link.")
    page_size = PlainWholeNumber(
        min_value=1,
        max_value=500,
        required=False,
        help_text="Proposals a page (default 50).",
    )


class ProposalCollectionApi(IdempotentAPIView):
    @extend_schema(
        operation_id="proposals_submit",
        request=ProposalInput,
        responses={201: ProposalOutput},
        parameters=[IDEMPOTENCY_HEADER],
        summary="Submit a proposal",
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def checked(self, request: Request) -> Submission:
        return submission(request.data)

    def perform(self, request: Request, checked: Submission) -> Response:
        proposal = proposal_submit(agent=request.user, submission=checked)
        body = proposal_body(proposal, just_submitted=True)
        return Response(
            body,
            status=status.HTTP_201_CREATED,
            headers=self.answer_headers(status.HTTP_201_CREATED, body),
        )

    def answer_headers(self, status_code: int, body: Any) -> dict[str, str]:
        if status_code == status.HTTP_201_CREATED and isinstance(body, dict) and "id" in body:
            return {"Location": f"/api/v1/proposals/{body['id']}/"}
        return {}

    @extend_schema(
        operation_id="proposals_list",
        parameters=[ProposalListFilters],
        responses={200: ProposalPage},
        summary="List this agent's proposals, newest first",
    )
    def get(self, request: Request) -> Response:
        filters = ProposalListFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        queryset = proposal_list_for_agent(
            agent=request.user,
            status=filters.validated_data.get("status"),
            action_type=filters.validated_data.get("action_type"),
            since=filters.validated_data.get("since"),
        )
        paginator = ProposalPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        proposed, retried = proposed_payloads(page), retries_of(page)
        routed, due = routing_reasons(page), next_attempts_due(page)
        failing = failing_at_next_attempt(page)
        return paginator.get_paginated_response(
            [
                proposal_body(
                    p, proposed=proposed, retried=retried, routed=routed, due=due, failing=failing
                )
                for p in page
            ]
        )


class BatchItemResult(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.IntegerField(help_text="201 when created, else the 4xx it would get.")
    proposal = ProposalOutput(required=False)
    errors = serializers.JSONField(required=False)


class ProposalBatchApi(IdempotentAPIView):
    max_body_bytes = settings.API_MAX_BATCH_BODY_BYTES

    @extend_schema(
        operation_id="proposals_submit_batch",
        request=ProposalInput(many=True),
        responses={200: BatchItemResult(many=True)},
        parameters=[IDEMPOTENCY_HEADER],
        summary="Submit up to 1,000 proposals; each gets its own result",
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def checked(self, request: Request) -> list[Submission | ValidationError]:
        """Each item checked for form (a malformed one is that item's error, not the
        batch's)."""
        items = request.data
        if not isinstance(items, list) or not items:
            raise ValidationError(
                {"non_field_errors": ["Send a non-empty JSON list of proposals."]}
            )
        if len(items) > settings.API_MAX_BATCH_SIZE:
            raise ValidationError(
                {"non_field_errors": [f"At most {settings.API_MAX_BATCH_SIZE} proposals a batch."]}
            )
        checked: list[Submission | ValidationError] = []
        checker = ProposalInput()
        # Counted as each item is read, the refused among them too, before its checks: a
        # batch of 16 MiB of supporting data took half a minute of a core to check item by
        # item and then be refused for its length (a minute, and a 200, when every item was
        # malformed and none was counted).
        free_text = FreeTextTally()
        for item in items:
            if isinstance(item, dict):
                free_text.add(
                    rationale=item.get("rationale"),
                    external_ref=item.get("external_ref"),
                    supporting_data=item.get("supporting_data"),
                )
            try:
                checked.append(submission(item, checker))
            except ValidationError as error:
                checked.append(error)
        return checked

    def perform(self, request: Request, checked: list[Submission | ValidationError]) -> Response:
        # The well-formed items submitted together, in one transaction: the batch is recorded
        # whole, with every item's result, or not at all.
        well_formed = [
            (index, item) for index, item in enumerate(checked) if isinstance(item, Submission)
        ]
        submitted = iter(
            proposals_submit(
                agent=request.user,
                submissions=[item for _, item in well_formed],
                indices=[index for index, _ in well_formed],
                batch_size=len(checked),
            )
        )
        results = []
        for index, item in enumerate(checked):
            outcome = next(submitted) if isinstance(item, Submission) else item
            if isinstance(outcome, Proposal):
                body = proposal_body(outcome, just_submitted=True)
                results.append({"index": index, "status": 201, "proposal": body})
            else:
                status_code, body = api_error_body(outcome)
                results.append({"index": index, "status": status_code, "errors": body})
        return Response(results, status=status.HTTP_200_OK)


class ProposalWaitQuery(StrictQuery):
    wait = wait_field()
    status = ListedChoiceField(
        choices=ProposalStatus.choices,
        required=False,
        help_text=(
            "With wait: answer as soon as the proposal's status is other than this one, or "
            "has been since the request arrived (a person's retry whose run failed again) "
            "(default: its status when the request arrives)."
        ),
    )


class ProposalDetailApi(LongPollView, AgentAPIView):
    @extend_schema(
        operation_id="proposals_retrieve",
        parameters=[ProposalWaitQuery],
        responses={
            200: ProposalOutput,
            429: OpenApiResponse(description=TOO_MANY_WAITS_DESCRIPTION),
        },
        summary="A proposal; with wait, once its status changes (long poll)",
    )
    def get(self, request: Request, proposal_id: int) -> Response:
        query = ProposalWaitQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        proposal = proposal_get_for_agent(agent=request.user, proposal_id=proposal_id)
        response = Response(proposal_body(proposal))
        seconds = query.validated_data.get("wait")
        waiting_on = query.validated_data.get("status", proposal.status)
        if seconds and proposal.status == waiting_on:
            read = _moves_read(proposal)
            response.long_poll = LongPoll(
                topic=proposal_topic(proposal_id),
                seconds=seconds,
                reread=partial(
                    _proposal_reread, request.user, request.auth.pk, proposal_id, waiting_on, read
                ),
                agent=request.user.pk,
                key=("proposal", request.user.pk, request.auth.pk, proposal_id, waiting_on, read),
            )
        return response


def _moves_read(proposal: Proposal) -> tuple[int, datetime | None]:
    """What tells that a proposal has left its status and come back to it since it was read:
    every way back to a status goes through review (a new round) or through approved again
    (a person's retry of a failed execution: failed, approved, executing, failed again), and
    each move to approved stamps ``approved_at``."""
    return proposal.review_round, proposal.approved_at


def _proposal_reread(
    agent, key_id: int, proposal_id: int, waiting_on: str, read: tuple
) -> tuple[bool, dict]:
    """The wait is over once the proposal's status differs from ``waiting_on``, or differed
    since the first read (``read``: ``_moves_read`` then): a retry whose run failed again
    before this read changed its status twice, and the wait is answered with it failed again,
    its ``retries`` saying so, not held until its time is up."""
    # The key may have been revoked (or the agent deactivated) while the request waited.
    agent_key_still_in_force(key_id=key_id)
    proposal = proposal_get_for_agent(agent=agent, proposal_id=proposal_id)
    moved = proposal.status != waiting_on or _moves_read(proposal) != read
    return moved, proposal_body(proposal)


KEY_BOUND = (
    "Keeps no answer under an Idempotency-Key; a key used on another endpoint is a 422 here "
    "too, since a key is bound to its endpoint."
)


@docstring_for_code_readers
class KeyBoundAPIView(AgentAPIView):
    """A POST view that keeps no answer under an Idempotency-Key (it writes nothing, or
    doing it again does nothing more): a key it is sent that was used on another endpoint is
    still a 422, since a key is bound to its endpoint."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        key = idempotency_key_of(request) if request.method == "POST" else None
        if key is not None:
            idempotency_key_not_reused(agent=request.user, key=key, fingerprint="")


class WithdrawInput(StrictSerializer):
    """Why the agent withdraws it, if it says: kept with its withdrawal and shown where people
    read it. Any other field is a 400, not dropped unsaid."""

    note = ShownTextField(
        max_length=NOTE_MAX_LENGTH,
        required=False,
        allow_blank=True,
        default="",
        help_text="Why it is withdrawn, for the people who read it: its page and its Slack "
        "messages show it, and its `withdrawal.note` keeps it.",
    )


class ProposalWithdrawApi(KeyBoundAPIView):
    @extend_schema(
        operation_id="proposals_withdraw",
        request=WithdrawInput,
        responses={200: ProposalOutput},
        summary="Withdraw a proposal that is still waiting",
        description=KEY_BOUND
        + " Withdrawing it again is a 409 and does nothing more. A body is optional: "
        '{"note": "why"} is kept with the withdrawal; another field is a 400.',
    )
    def post(self, request: Request, proposal_id: int) -> Response:
        withdrawal = WithdrawInput(data=request.data)
        withdrawal.is_valid(raise_exception=True)
        proposal_get_for_agent(agent=request.user, proposal_id=proposal_id)
        proposal_withdraw(
            agent=request.user, proposal_id=proposal_id, note=withdrawal.validated_data["note"]
        )
        return Response(
            proposal_body(proposal_get_for_agent(agent=request.user, proposal_id=proposal_id))
        )


class DryRunInput(ProposalInput):
    """The body of a proposal; only the action decides the verdict, so the rest is optional."""

    rationale = ShownTextField(max_length=10_000, required=False)
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
    outcome = serializers.ChoiceField(choices=VerdictOutcome.choices)
    policy = PolicyRefOutput(allow_null=True)
    reasons = serializers.ListField(child=serializers.CharField())
    held_by = HoldOutput(many=True)
    required_approvals = serializers.IntegerField()
    risk = serializers.IntegerField()
    magnitude = serializers.DecimalField(max_digits=14, decimal_places=6)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    summary = serializers.CharField()


class PolicyEvaluateApi(KeyBoundAPIView):
    @extend_schema(
        operation_id="policies_evaluate",
        request=DryRunInput,
        responses={200: DryRunOutput},
        summary="Dry run: what would happen to this action now (nothing is written)",
        description=KEY_BOUND,
    )
    def post(self, request: Request) -> Response:
        serializer = DryRunInput(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except ValidationError as error:
            raise _with_action_errors(error, request.data) from None
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
                "number": version_number(verdict.policy_id, verdict.policy_version),
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
