"""Signed events on an agent's callback URL when its proposals are decided or executed.

An event is a row written in the transaction that moved the proposal, so it is never lost and
never sent for a change that rolled back; it is delivered after commit by a Celery task, so
the decision never waits on the agent's endpoint. Delivery is at least once: a receiver
de-duplicates by ``X-HITL-Delivery``.

Each request is signed with the agent's callback secret (``hitlproject.signing``, whose
``verify`` is the receiver's side). A 2xx answer delivers the event; a timeout, a connection
error, a 5xx, 408 or 429 is retried with exponential backoff; another 4xx, or the last retry,
gives up. At most ``CALLBACK_REQUESTS_PER_AGENT`` requests to one agent are under way at once
(as the webhook executor limits each account's): an event beyond them waits its turn without
holding a worker, so one agent's hanging receiver does not hold up another agent's events.

Each change of an event is in its history, sealed in the audit chain: made, each attempt
taken (its count and the URL it goes to) and how it ended, the attempts found interrupted,
given up, sent again by an operator (by them). When a pending event is next due is not
(``CallbackEvent.history_unrecorded``): the sweep and a busy receiver move it without a
record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from approvals.models import (
    Agent,
    Decision,
    Proposal,
    ProposalStatus,
    WithdrawnBy,
)
from audit.actors import Actor
from audit.history import (
    insert_with_history,
    rows_update,
    update_with_history,
    update_with_history_where,
)
from feedback.models import (
    GIVEN_UP,
    NOT_SENT,
    NOT_WORTH_RETRYING,
    NOTE,
    RETRY_AT,
    CallbackEvent,
    CallbackEventType,
    DeliveryStatus,
    attempts_logged,
    attempts_spent,
    sent_again_note,
)
from feedback.services import EditTold, decision_notes, edits_told
from hitlproject.celery import app
from hitlproject.outbound import send_signed
from hitlproject.queueing import after_commit, enqueue_after_commit, send_each
from hitlproject.vocabulary import INTERRUPTED

EVENT_TYPES = {
    ProposalStatus.APPROVED: CallbackEventType.APPROVED,
    ProposalStatus.REJECTED: CallbackEventType.REJECTED,
    ProposalStatus.BLOCKED: CallbackEventType.BLOCKED,
    ProposalStatus.EXPIRED: CallbackEventType.EXPIRED,
    ProposalStatus.EXECUTED: CallbackEventType.EXECUTED,
    ProposalStatus.FAILED: CallbackEventType.FAILED,
    ProposalStatus.SUPERSEDED: CallbackEventType.SUPERSEDED,
    ProposalStatus.WITHDRAWN: CallbackEventType.WITHDRAWN,
}
# The task that delivers one event (``feedback.tasks``, which imports this module), sent by
# its name.
DELIVER_CALLBACK_EVENT = "feedback.deliver_callback_event"
# While one worker sends an event, it holds it this long; another finds it not yet due.
LEASE = timedelta(seconds=60)
SWEEP_BATCH = 500
# How long an event waits for its turn when its agent's receiver has as many requests under
# way as it is given.
RECEIVER_BUSY_WAIT = timedelta(seconds=2)
NO_CALLBACK_URL = "not sent: the agent has no callback URL now"
# A deactivated agent is answered 401 by the API: its endpoint is not told of its proposals
# either (a decision, a reviewer's note) once it is.
DEACTIVATED = "not sent: the agent is deactivated"
# Who sends the events, and records what came of each attempt, in their history.
CALLBACKS_ACTOR = Actor.system("callbacks")
MADE = "Made, to be sent to its agent's callback URL"


def callback_events_record(*, proposals: Iterable[Proposal], sent_back: bool = False) -> None:
    """Record an event for each proposal just moved whose agent has a callback URL, and send
    them once the transaction commits. The proposals carry their agent (as locked) and the
    reason their move recorded in history. ``sent_back``: approved proposals just sent back to
    a person before they ran (``proposal.sent_back``), which their status does not tell apart
    from one routed to a person as it was submitted (whose agent has the answer already)."""
    now = timezone.now()
    events = [
        CallbackEvent(
            agent=proposal.agent,
            proposal=proposal,
            type=CallbackEventType.SENT_BACK if sent_back else EVENT_TYPES[proposal.status],
            url=proposal.agent.callback_url,
            created_at=now,
            next_attempt_at=now,
        )
        for proposal in proposals
        if (sent_back or proposal.status in EVENT_TYPES)
        and proposal.agent.callback_url
        and _news(proposal)
    ]
    said = _said_to_agents([event.proposal for event in events])
    edits = edits_told([event.proposal for event in events])
    for event in events:
        edit = edits[event.proposal.pk]
        # Ended without running as a reviewer edited it: its feedback's words on the edit.
        reason = edit.told_after(said[event.proposal.pk], event.proposal.status)
        event.body = _body(event, reason, edit)
    if events:
        # Made by the callbacks, whoever moved the proposals: their history says who did. On
        # PostgreSQL the events and their first records in one statement, as the events
        # alone took: a submission approved at once pays nothing more for their history.
        made = insert_with_history(CallbackEvent, events, actor=CALLBACKS_ACTOR, reason=MADE)
        enqueue_after_commit(DELIVER_CALLBACK_EVENT, *made)


def _news(proposal: Proposal) -> bool:
    """Whether the agent learns of this move from it: a withdrawal a reviewer made for the
    agent ends its proposal as a decision does (an agent waiting for its callback to resume a
    run would wait for ever), while one the agent made itself it knows of already."""
    return (
        proposal.status != ProposalStatus.WITHDRAWN or proposal.withdrawn_by == WithdrawnBy.REVIEWER
    )


def callback_events_record_moved(proposals: Sequence[Proposal]) -> None:
    """The listener of every move (``approvals.services.lifecycle.on_proposals_moved``)."""
    callback_events_record(proposals=proposals)


def callback_events_record_sent_back(*, proposals: Sequence[Proposal], actor: Actor) -> None:
    """The listener of ``approvals.services.hooks.proposals_sent_back``: an agent told its
    proposal was approved (``proposal.approved``) is told it went back to a person before it
    ran, and why, so that it does not take it as running until it executes or fails."""
    callback_events_record(proposals=proposals, sent_back=True)


def _said_to_agents(proposals: Sequence[Proposal]) -> dict[int, str]:
    """What each move says to its agent (its event's ``reason``), by proposal id: the move's
    own words; for a decision that settled a proposal (a rejection, or the approval that let
    it run), with what each person of its round decided and wrote, a line each, as
    ``decision_notes`` says it: "rejected by a reviewer: Too aggressive" alone read as if
    nobody had agreed with the agent, and "rejected by a reviewer: Other" dropped the one
    thing the reviewer wrote to say why."""
    said = {proposal.pk: proposal._said_to_agent for proposal in proposals}
    decided_at = {
        proposal.pk: _decided_at(proposal)
        for proposal in proposals
        if proposal.status == ProposalStatus.REJECTED
        or (proposal.status == ProposalStatus.APPROVED and proposal.approvals_this_round)
    }
    if not decided_at:
        return said
    by_id = {proposal.pk: proposal for proposal in proposals}
    ending = []
    for decision in Decision.objects.filter(proposal_id__in=decided_at):
        proposal = by_id[decision.proposal_id]
        # The decision that made this move, not an earlier one of its round (a failed
        # proposal sent to run again is approved again, by no new decision).
        if decision.review_round == proposal.review_round and (
            decision.created_at == decided_at[proposal.pk]
        ):
            decision.proposal = proposal
            ending.append(decision)
    by_decision = {decision.pk: decision.proposal_id for decision in ending}
    for decision_id, note in decision_notes(ending).items():
        proposal_id = by_decision[decision_id]
        said[proposal_id] = f"{said[proposal_id]}\n{note}"
    return said


def _decided_at(proposal: Proposal) -> datetime | None:
    """When the decision that made its move was made: the move's own time (a decision's
    record and the proposal it settles are written at one instant)."""
    if proposal.status == ProposalStatus.REJECTED:
        return proposal.decided_at
    return proposal.approved_at


def _body(event: CallbackEvent, reason: str, edit: EditTold) -> dict:
    """The event's JSON body. ``proposal.summary`` is what the proposal means now (as a
    reviewer edited it, if one did); ``proposal.proposed_summary``, what its agent proposed;
    ``edits``, a reviewer's edit field by field, from what the agent proposed to what it is
    now (``{"new_bid": {"from": "2.60", "to": "2.40"}}``, as an ``approved_with_edits``
    feedback record's ``diff``), ``{}`` where nobody edited it."""
    proposal = event.proposal
    return {
        "id": str(event.event_id),
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "proposal": {
            "id": proposal.pk,
            "status": proposal.status,
            "action_type": proposal.action_type,
            "external_ref": proposal.external_ref,
            "summary": proposal.summary,
            "proposed_summary": edit.proposed_summary,
            "url": f"/api/v1/proposals/{proposal.pk}/",
        },
        # What the move says to its agent: what people decided, not who (as the API's
        # decisions and the feedback name nobody); its history, for auditors, says who.
        "reason": reason,
        "edits": edit.diff,
    }


def _backoff(attempts: int) -> timedelta:
    seconds = settings.CALLBACK_RETRY_SECONDS * 2 ** (attempts - 1)
    return timedelta(seconds=min(seconds, 3600))


def callback_event_deliver(*, event_id: int) -> CallbackEvent | None:
    """Make one delivery attempt of an event that is due, and record how it went. Returns the
    event, or None if it is not due (delivered, given up, or being sent by another worker).
    Holds no transaction while the request is in flight."""
    now = timezone.now()
    with transaction.atomic():
        event = (
            # The event's row alone: locking its agent's too made a task taking another of
            # the agent's events at the same moment skip it, left for the sweep.
            CallbackEvent.objects.select_for_update(skip_locked=True)
            .filter(pk=event_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if event is None:
            return None
        if interrupted := _interruptions_logged(event, now=now):
            _recorded(event, ["log"], reason=_last_said(event, interrupted))
        # Its sender died on the last attempt allowed.
        if event.attempts_this_round >= settings.CALLBACK_MAX_ATTEMPTS:
            event.status = DeliveryStatus.FAILED
            made = event.attempts_this_round
            given_up = attempts_spent(made, sent_again=event.sent_again > 0)
            _recorded(event, ["status"], reason=f"Given up: {given_up}.")
            return event
        # The agent locked (as ``_requests_under_way`` counts under it) and read again only
        # then: the statement that took the event read it as it was when it began, so one
        # deactivated, or its URL removed, in between was still sent the event.
        event.agent = _agent_locked(event.agent_id)
        # Removed since, or its agent deactivated: not sent where it no longer goes.
        not_sent = (not event.agent.callback_url and NO_CALLBACK_URL) or (
            not event.agent.is_active and DEACTIVATED
        )
        if not_sent:
            event.status = DeliveryStatus.FAILED
            not_sent_note = {"at": now.isoformat(), "result": not_sent, NOTE: NOT_SENT}
            event.log = [*event.log, {**not_sent_note, GIVEN_UP: ""}]
            _recorded(event, ["status", "log"], reason=_last_said(event, 1))
            return event
        if _requests_under_way(event.agent_id, now) >= settings.CALLBACK_REQUESTS_PER_AGENT:
            # Its turn comes once one of those has ended, without holding a worker meanwhile
            # (when it is next due is not recorded: its state is as its last record says).
            event.next_attempt_at = now + RECEIVER_BUSY_WAIT
            rows_update(CallbackEvent, [event], ["next_attempt_at"])
            after_commit(_deliver_later, event.pk, RECEIVER_BUSY_WAIT.total_seconds())
            return None
        event.attempts += 1
        event.next_attempt_at = leased_until = now + LEASE
        # Where the agent is reached now: an operator who put its URL right and sends its
        # failed events again sends them there, not where they first failed.
        event.url = event.agent.callback_url
        # Recorded as it goes: a sender that stops before recording its answer leaves in the
        # history that the attempt went out, when, and where.
        _recorded(
            event,
            ["attempts", "next_attempt_at", "url"],
            reason=f"Attempt {event.attempts} under way: sent to {event.url}",
        )

    sent = send_signed(
        event.url,
        json.dumps(event.body, separators=(",", ":")).encode(),
        secret=event.agent.callback_secret,
        headers={
            "User-Agent": "hitl-approvals-callbacks/1",
            "X-HITL-Event": event.type,
            "X-HITL-Delivery": str(event.event_id),
        },
    )
    delivered, retry, result = sent.delivered, sent.retry, sent.result

    finished = timezone.now()
    # What was decided is kept beside what the endpoint did: when it is retried, or why not.
    entry = {"at": finished.isoformat(), "result": result}
    # Counted from an operator's latest sending it again, as the attempts allowed are.
    this_round = event.attempts_this_round
    if delivered:
        event.status, event.delivered_at = DeliveryStatus.DELIVERED, finished
    elif retry and this_round < settings.CALLBACK_MAX_ATTEMPTS:
        # Not before the endpoint said to come back (Retry-After), up to an hour.
        wait = max(_backoff(this_round), timedelta(seconds=min(sent.retry_after or 0, 3600)))
        event.next_attempt_at = finished + wait
        entry[RETRY_AT] = event.next_attempt_at.isoformat()
    else:
        event.status = DeliveryStatus.FAILED
        entry[GIVEN_UP] = (
            attempts_spent(this_round, sent_again=event.sent_again > 0)
            if retry
            else NOT_WORTH_RETRYING
        )
    event.log = [*event.log, entry]
    # Recorded only if this attempt is still the event's latest, under its lease: a sender
    # that outlived its lease must not undo what the one after it recorded, nor what an
    # operator did since (sending it again leaves its count of attempts as it is). Its
    # history record is written in the same statement, from the row as written.
    recorded = update_with_history_where(
        CallbackEvent.objects.filter(
            pk=event.pk,
            attempts=event.attempts,
            status=DeliveryStatus.PENDING,
            next_attempt_at=leased_until,
        ),
        {
            "log": event.log,
            "status": event.status,
            "delivered_at": event.delivered_at,
            "next_attempt_at": event.next_attempt_at,
        },
        actor=CALLBACKS_ACTOR,
        reason=_last_said(event, 1),
    )
    if recorded and event.status == DeliveryStatus.PENDING:
        countdown = (event.next_attempt_at - finished).total_seconds()
        app.send_task(DELIVER_CALLBACK_EVENT, (event.pk,), countdown=countdown)
    return event


def _interruptions_logged(event: CallbackEvent, *, now) -> int:
    """Log as interrupted the attempts of ``event`` counted and not in its log (their sender
    stopped before recording them; taken again, it is no longer under way). How many
    were."""
    missing = event.attempts - attempts_logged(event.log)
    if missing <= 0:
        return 0
    interrupted = {"at": now.isoformat(), "result": INTERRUPTED}
    event.log = [*event.log, *[interrupted] * missing]
    return missing


def _recorded(
    event: CallbackEvent, fields: Sequence[str], *, reason: str, actor: Actor = CALLBACKS_ACTOR
) -> None:
    """Write ``fields`` of ``event`` (held locked by the caller), and a record of the event
    as it now is, by ``actor``, saying ``reason``."""
    event._change_reason = reason
    update_with_history(
        CallbackEvent, [(event, {name: getattr(event, name) for name in fields})], actor=actor
    )


def _last_said(event: CallbackEvent, entries: int) -> str:
    """The last ``entries`` of ``event``'s log, as its page says them, for its history: what
    an attempt got and what was decided after it ("Attempt 2, 2026-12-04 21:55:04 UTC: HTTP
    200; delivered")."""
    return "; ".join(event.attempts_said[-entries:])


def _deliver_later(event_id: int, delay: float) -> None:
    app.send_task(DELIVER_CALLBACK_EVENT, (event_id,), countdown=delay)


def _agent_locked(agent_id: int) -> Agent:
    """The agent, locked until the caller's transaction ends (whoever deactivates it or changes
    its callback URL waits until then), read as it is once locked."""
    return Agent.objects.select_for_update(no_key=True).get(pk=agent_id)


def _requests_under_way(agent_id: int, now) -> int:
    """The requests to an agent's callback URL under way now: events taken to be sent (an
    attempt counted, its result not yet in the log) whose lease still stands. Counted under a
    lock on the agent, held until the caller's transaction ends, so two workers never both
    count one place free (``_agent_locked``, taken by the caller); in SQL written out (the
    attempts in the log, ``attempts_logged``, are counted by the database: its entries less
    its notes)."""
    table = connection.ops.quote_name(CallbackEvent._meta.db_table)
    if connection.vendor == "postgresql":
        logged = f"SELECT COUNT(*) FROM jsonb_array_elements({table}.log) AS entry "
        logged += "WHERE entry -> %s IS NULL"
        note = NOTE
    else:
        logged = f"SELECT COUNT(*) FROM json_each({table}.log) AS entry "
        logged += "WHERE entry.type != 'object' OR json_type(entry.value, %s) IS NULL"
        note = f"$.{NOTE}"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {table} "
            f"WHERE agent_id = %s AND status = %s AND next_attempt_at > %s "
            f"AND attempts > ({logged})",
            [
                agent_id,
                DeliveryStatus.PENDING,
                connection.ops.adapt_datetimefield_value(now),
                note,
            ],
        )
        return cursor.fetchone()[0]


def callback_events_resend_due() -> int:
    """Send the pending events whose attempt is overdue (a task lost with a broker or a
    worker). Returns how many were sent."""
    now = timezone.now()
    pending = CallbackEvent.objects.filter(status=DeliveryStatus.PENDING)
    overdue = list(
        pending.filter(next_attempt_at__lte=now - LEASE)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    # Due now, not overdue: the next sweep leaves them to the tasks sent here. A plain
    # update, no record: when an event is next due is bookkeeping its history leaves out
    # (``history_unrecorded``), and verification does not compare it.
    CallbackEvent.objects.filter(pk__in=overdue).update(next_attempt_at=now)
    send_each(DELIVER_CALLBACK_EVENT, overdue)
    return len(overdue)


@dataclass
class SentAgain:
    """What "Deliver again" did: the events sent again, and each of those selected it did
    not send again, with why ("it was delivered")."""

    sent: list[CallbackEvent] = field(default_factory=list)
    not_sent: list[tuple[CallbackEvent, str]] = field(default_factory=list)


def callback_events_redeliver(
    *, events: Iterable[CallbackEvent], operator: AbstractBaseUser
) -> SentAgain:
    """``operator`` sends events that were given up on once more: its log notes it, and the
    attempts allowed are counted afresh from there. Their count of attempts goes on (it is
    what the log and the count of requests under way are read against). One no longer given
    up on (sent again from another tab, say), or whose agent is no longer reached (it was
    deactivated, or its callback URL removed), is left as it is, and said why: its sender
    would only give it up again, unsent."""
    now = timezone.now()
    done = SentAgain()
    with transaction.atomic():
        selected = list(
            CallbackEvent.objects.select_for_update(of=("self",))
            .select_related("agent")
            .filter(pk__in=[event.pk for event in events])
            .order_by("pk")
        )
        for event in selected:
            why = _not_sent_again(event)
            if why:
                done.not_sent.append((event, why))
                continue
            # Those before are in the log, as ``attempts_this_round`` reads them.
            interrupted = _interruptions_logged(event, now=now)
            note = sent_again_note(
                at=now, by=operator.get_username(), allowed=settings.CALLBACK_MAX_ATTEMPTS
            )
            event.log = [*event.log, note]
            event.status, event.next_attempt_at = DeliveryStatus.PENDING, now
            _recorded(
                event,
                ["log", "status", "next_attempt_at"],
                reason=_last_said(event, interrupted + 1),
                actor=Actor.for_user(operator),
            )
            done.sent.append(event)
        enqueue_after_commit(DELIVER_CALLBACK_EVENT, *(event.pk for event in done.sent))
    return done


def _not_sent_again(event: CallbackEvent) -> str:
    """Why "Deliver again" leaves ``event`` as it is, or "" if it sends it again."""
    if event.status == DeliveryStatus.PENDING:
        return "it is being delivered, not given up on"
    if event.status == DeliveryStatus.DELIVERED:
        return "it was delivered"
    if not event.agent.is_active:
        return f"its agent {event.agent} is deactivated"
    if not event.agent.callback_url:
        return f"its agent {event.agent} has no callback URL now"
    return ""
