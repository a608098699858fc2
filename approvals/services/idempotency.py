"""Idempotency-Key handling for agent requests.

A request under a key does everything in one transaction: it takes the key, reads what an
earlier request under it was answered, does its work, and stores its own answer with it.
Nothing is written before the work is done, so a request that is refused (a 4xx, raised) or
cut off (a crash, a killed server, a lost connection) rolls back along with its work and leaves
the key free: there is no claim to release or take over.

How a retry that arrives while the first request is still in flight is kept from doing the
work twice depends on the database:

- PostgreSQL: the key is taken with a transaction-scoped advisory lock on (agent, key), tried
  rather than waited for. A retry finds it held and is answered 409 at once; the lock goes with
  the first request's transaction, when its answer is committed (or when it is undone).
- SQLite: every transaction is IMMEDIATE (hitlproject.settings), taking the database's one
  write lock up front, so writers run one at a time. A retry waits for the first request to
  finish (up to the connection's timeout) and then replays its answer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from approvals.models import Agent, IdempotencyRecord
from audit.history import rows_insert
from hitlproject.errors import Conflict, Unprocessable
from hitlproject.parsers import NumberAsWritten

MAX_KEY_LENGTH = 255
# Marks a number kept as written in a request's fingerprint: no key of a parsed body holds a
# NUL (hitlproject.parsers), so no object an agent sends reads as one.
WRITTEN = "\x00written"


@dataclass(frozen=True)
class Replay:
    status: int
    body: Any


@dataclass(frozen=True)
class KeyTaken:
    """This request holds the key until its transaction ends; ``expired`` is a record kept past
    its retention under the same key, which the answer replaces."""

    agent: Agent
    key: str
    fingerprint: str
    expired: IdempotencyRecord | None


def request_fingerprint(path: str, body: Any) -> str:
    """What makes two requests the same one: where they were sent, and what they said. A key
    reused on another endpoint, or another proposal's, is a different request (422)."""
    canonical = json.dumps(
        {"path": path, "body": _as_written(body)},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _as_written(value: Any) -> Any:
    """``value`` with each JSON number that the float it is read as does not write back as
    it came (``2.1200000000000000001``, ``2.120``, ``1e1``) kept as it was written. As a
    float, ``"new_bid": 2.1200000000000000001`` was the fingerprint of ``2.12``: sent under
    the key of a proposal made with 2.12, it replayed that proposal, where another body under
    a key is a 422 (and that body, on its own, a 400: money is held to cents). A number that
    writes back as it came is left a float, so a fingerprint kept before reads the same."""
    if isinstance(value, NumberAsWritten):
        return value if value.written == repr(float(value)) else {WRITTEN: value.written}
    if isinstance(value, dict):
        return {key: _as_written(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_written(item) for item in value]
    return value


def _advisory_lock_id(agent: Agent, key: str) -> int:
    digest = hashlib.blake2b(
        f"{agent.pk}\0{key}".encode(), digest_size=8, person=b"hitl-idem-key"
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def idempotency_key_take(*, agent: Agent, key: str, fingerprint: str) -> KeyTaken | Replay:
    """Take ``key`` for this request, in the caller's transaction, or return the answer an
    earlier request under it got. 409 if a request under it is still in flight (PostgreSQL;
    SQLite waits for it instead), 422 if the key came with another request."""
    if not connection.in_atomic_block:
        raise RuntimeError("An Idempotency-Key is taken inside the request's transaction.")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_advisory_lock_id(agent, key)])
            if not cursor.fetchone()[0]:
                raise Conflict(
                    "A request with this Idempotency-Key is still in progress; retry later."
                )
    # Most keys are new: whether the key was used is asked in SQL written out (the ORM took
    # longer to build the question than the database to answer it); the record is read only
    # if it was.
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {quote(IdempotencyRecord._meta.db_table)} "
            f"WHERE agent_id = %s AND {quote('key')} = %s",
            [agent.pk, key],
        )
        used = cursor.fetchone() is not None
    record = _kept_record(agent=agent, key=key, fingerprint=fingerprint) if used else None
    if record is None:
        return KeyTaken(agent=agent, key=key, fingerprint=fingerprint, expired=None)
    if _expired(record):
        return KeyTaken(agent=agent, key=key, fingerprint=fingerprint, expired=record)
    return Replay(status=record.response_status, body=json.loads(record.response_body))


def idempotency_key_not_reused(*, agent: Agent, key: str, fingerprint: str) -> None:
    """For a request refused before its key is taken (its body malformed): 422 if the key
    was used with another request, as taking it would have answered."""
    _kept_record(agent=agent, key=key, fingerprint=fingerprint)


def _kept_record(*, agent: Agent, key: str, fingerprint: str) -> IdempotencyRecord | None:
    """The record under the key, if any; 422 if it is still kept and came with another
    request."""
    record = IdempotencyRecord.objects.filter(agent=agent, key=key).first()
    if record is not None and not _expired(record) and record.request_fingerprint != fingerprint:
        raise Unprocessable(
            "This Idempotency-Key was used with a different request body (or endpoint). "
            "Use a new key for a new request."
        )
    return record


def _expired(record: IdempotencyRecord) -> bool:
    """Past its retention and not purged yet: as if it were gone."""
    return record.created_at < timezone.now() - settings.IDEMPOTENCY_KEY_TTL


def idempotency_answer_store(*, taken: KeyTaken, status: int, body: Any) -> None:
    """Keep the answer under the key, in the transaction that did the work."""
    if taken.expired is None:
        record = IdempotencyRecord(
            agent=taken.agent,
            key=taken.key,
            request_fingerprint=taken.fingerprint,
            response_status=status,
            response_body=json.dumps(body),
        )
        rows_insert(IdempotencyRecord, [record])
        return
    # IdempotencyRecord is bookkeeping, not history-tracked: one UPDATE is enough.
    IdempotencyRecord.objects.filter(pk=taken.expired.pk).update(
        request_fingerprint=taken.fingerprint,
        response_status=status,
        response_body=json.dumps(body),
        created_at=timezone.now(),
    )


def idempotency_records_purge() -> int:
    cutoff = timezone.now() - settings.IDEMPOTENCY_KEY_TTL
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
