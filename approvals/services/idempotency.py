"""Idempotency-Key handling for agent requests.

The key is claimed in its own committed transaction before the work starts, so a concurrent
retry sees it in flight (409). The answer is stored with the work, in the same transaction, on
condition that this request still holds the key; a replay returns it as it was. A claim whose
request died is taken over once its lease (longer than any request may run) is over. A request
that is refused (4xx) releases its key: it changed nothing, and the agent may correct it and
send it again under the same key.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals.models import Agent, IdempotencyRecord
from hitlproject.errors import Conflict, Unprocessable

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Replay:
    status: int
    body: Any


def request_fingerprint(path: str, body: Any) -> str:
    """What makes two requests the same one: where they were sent, and what they said. A key
    reused on another endpoint, or another proposal's, is a different request (422)."""
    canonical = json.dumps(
        {"path": path, "body": body}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_claim(*, agent: Agent, key: str, fingerprint: str) -> IdempotencyRecord | Replay:
    """Claim ``key`` for this request, or return the answer a previous one got."""
    now = timezone.now()
    lease_end = now + settings.IDEMPOTENCY_LEASE
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                agent=agent,
                key=key,
                request_fingerprint=fingerprint,
                locked_until=lease_end,
                claim_token=uuid.uuid4().hex,
            )
    except IntegrityError:
        pass
    with transaction.atomic():
        record = IdempotencyRecord.objects.select_for_update().get(agent=agent, key=key)
        stale = record.created_at < now - settings.IDEMPOTENCY_KEY_TTL
        if stale or (not record.is_complete and record.locked_until <= now):
            # Past its retention, or its first request died mid-way: this request takes it.
            record.request_fingerprint = fingerprint
            record.response_status = record.response_body = None
            record.created_at, record.locked_until = now, lease_end
            record.claim_token = uuid.uuid4().hex
            record.save()
            return record
        if record.request_fingerprint != fingerprint:
            raise Unprocessable(
                "This Idempotency-Key was used with a different request body (or endpoint). "
                "Use a new key for a new request."
            )
        if not record.is_complete:
            raise Conflict("A request with this Idempotency-Key is still in progress; retry later.")
        return Replay(status=record.response_status, body=record.response_body)


def _held(record: IdempotencyRecord):
    # IdempotencyRecord is bookkeeping, not history-tracked: a conditional UPDATE is the point.
    return IdempotencyRecord.objects.filter(
        pk=record.pk, claim_token=record.claim_token, response_status__isnull=True
    )


def idempotency_complete(*, record: IdempotencyRecord, status: int, body: Any) -> None:
    """Store the answer, in the transaction that did the work. If this request outlived its
    lease and a retry took the key over, raise, so that the work rolls back and is done once."""
    stored = _held(record).update(response_status=status, response_body=body, locked_until=None)
    if not stored:
        raise Conflict(
            "This request took longer than its Idempotency-Key's lease and a retry took the key "
            "over; this attempt was undone. Read the key's answer by sending it again."
        )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    _held(record).delete()


def idempotency_records_purge() -> int:
    cutoff = timezone.now() - settings.IDEMPOTENCY_KEY_TTL
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
