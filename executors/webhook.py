"""The webhook executor: an account with an execution endpoint has its approved actions
POSTed there, signed, with an idempotency key every attempt of a round shares; the endpoint,
seeing the same key again, does the action once.

What the endpoint answered is on the attempt's record: the request ids its ``Request-Id`` and
``X-Request-Id`` headers give (a refusal's too), then a success's JSON body's
``request_id``; and that body's ``id`` (what a Stripe-like API answers: the object made), as
what the channel made. Bounded whatever the endpoint sends: the body read up to
``ANSWER_BYTES`` (one longer names nothing), an id only a string or a whole number, on one
line, cut at ``REQUEST_ID_CHARS``, and ``REQUEST_IDS_AT_MOST`` ids in all."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder

from executors.base import ChannelError, ChannelExecutor, Frozen, Outcome
from hitlproject.outbound import (
    failure_in_words,
    request_id,
    request_ids,
    send_signed,
)

if TYPE_CHECKING:
    from approvals.action_types.base import ActionType
    from approvals.models import Proposal
    from executors.models import ExecutionRound
    from ledger.models import Account, Campaign


class WebhookExecutor(ChannelExecutor):
    name = "webhook"

    def carries_out(self, *, account: Account, action_type: ActionType) -> bool:
        return bool(account.execution_endpoint and action_type.executes_on_channel)

    def approval_said(self, *, account: Account) -> str:
        """Approved, it is only sent: it executes (the ledger records it) once the endpoint
        answers 2xx, and may be refused, or never answered, first."""
        return (
            "it is sent to the account's webhook; it executes once the webhook answers that it "
            "was done"
        )

    def freeze(
        self,
        *,
        proposal: Proposal,
        action_type: ActionType,
        campaigns: dict[str, Campaign],
        targets: dict[str, dict[str, str]],
        key: str,
        previous: ExecutionRound | None,
    ) -> Frozen:
        """The same body, key and endpoint for every attempt of the round. A round resuming
        one a person's review interrupted (``previous.held``), sending the same action to the
        same endpoint with nothing landed on its targets since, keeps that round's key, so the
        channel carries the action out once, whichever round's attempt reaches it. (Had
        something landed, an attempt of the held round that reached the channel was
        overtaken; the new key has the action done again.)"""
        endpoint = proposal.account.execution_endpoint
        action = {
            "proposal": {
                "id": proposal.pk,
                "action_type": proposal.action_type,
                "account": proposal.account.external_id,
                "payload": proposal.payload,
                "summary": proposal.summary,
            },
            "changes": json.loads(
                json.dumps(
                    action_type.proposed_state(proposal.payload, campaigns), cls=DjangoJSONEncoder
                )
            ),
        }
        if (
            previous is not None
            and previous.held
            and previous.executor == self.name
            and previous.request["endpoint"] == endpoint
            and previous.request.get("targets") == targets
            and {
                name: value
                for name, value in previous.request["body"].items()
                if name != "idempotency_key"
            }
            == action
        ):
            key = previous.key
        return Frozen(
            key=key,
            request={
                "endpoint": endpoint,
                "targets": targets,
                "body": {"idempotency_key": key, **action},
            },
        )

    def carry_out(self, *, request: dict[str, Any], account: Account) -> Outcome:
        return _post(request, account)

    def worked_out_from(self, request: dict[str, Any]) -> dict[str, dict[str, str | None]]:
        # Its "changes" are absolute figures (a reallocation's budgets after the move), worked
        # out from the fields they set; not from those its figures are only read from (a
        # pause's budget), whose move the runner re-assessed: the same request goes again.
        changes = request["body"]["changes"]
        return {
            name: {
                field: value for field, value in fields.items() if field in changes.get(name, {})
            }
            # A round frozen before targets were kept: none.
            for name, fields in (request.get("targets") or {}).items()
        }

    def sets(self, request: dict[str, Any]) -> dict[str, dict[str, str]]:
        return request["body"]["changes"]


def _answered(body: bytes | None) -> dict[str, Any]:
    """A success's body as JSON, if it is a JSON object (all of it read); else nothing."""
    if not body:
        return {}
    try:
        answered = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past Python's stack
        return {}
    return answered if isinstance(answered, dict) else {}


def _post(request: dict[str, Any], account: Account) -> Outcome:
    """Send a frozen request: done, with the ids the endpoint's answer gave; raises
    ``ChannelError`` if it was not carried out."""
    body = request["body"]
    sent = send_signed(
        request["endpoint"],
        json.dumps(body, separators=(",", ":")).encode(),
        secret=account.execution_secret,
        headers={
            "User-Agent": "hitl-approvals-executor/1",
            "Idempotency-Key": body["idempotency_key"],
        },
        read_answer=True,
    )
    if sent.delivered:
        answered = _answered(sent.answer)
        made = request_id(answered.get("id"))
        return Outcome(
            "done",
            request_ids=request_ids([*sent.request_ids, answered.get("request_id")]),
            response={"id": made} if made is not None else {},
        )
    if sent.status is not None:
        said = f"the endpoint answered {sent.result}"
    elif sent.reached and not sent.went:  # it answered with more than is read
        said = f"the endpoint {sent.result}"
    else:  # no answer: before its request went (never reached), or after (it may have been)
        said = failure_in_words("the endpoint", sent.result, went=sent.went)
    if sent.retry_after is not None:  # its digits, not "1e+11 s" of 100000000000 asked
        asked = sent.retry_after
        said += f" (Retry-After: {int(asked) if asked.is_integer() else round(asked, 3)} s)"
    raise ChannelError(
        said,
        permanent=not sent.retry,
        retry_after=sent.retry_after,
        unanswered=sent.unanswered,
        request_ids=sent.request_ids,
    )
