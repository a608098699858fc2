"""Telling people what waits for them: the routes matched as a proposal enters review, one
message per person and channel recorded in the same transaction (the outbox) and sent once
it commits, the Slack messages updated once it leaves review, and claims.

Sending follows the callbacks' outbox (``feedback.callbacks``): an attempt takes a lease
under a row lock (skip locked, so two workers never send one message), holds no transaction
while the channel answers, records what happened only if its lease is still the latest, and
retries with backoff what may succeed later; the sweep sends what a lost task left."""

from __future__ import annotations

import copy
import functools
import logging
import operator
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from asgiref.local import Local
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from approvals import action_types
from approvals.models import (
    Agent,
    Decision,
    DecisionOutcome,
    Execution,
    ExecutionStatus,
    Proposal,
    ProposalStatus,
)
from approvals.selectors import (
    approved_said,
    approvers_said,
    as_proposed,
    let_run_said,
    rejected_said,
    review_window_ran_out,
    superseded_said,
    was_retried,
    withdrawal_seen,
    withdrawn_said,
)
from approvals.services.acts import (
    Act,
    Gone,
    LedgerAhead,
    act_refusal,
    agent_accounts_of,
    agent_stopped,
    agents_hold,
    check_may_act,
    figures_moved,
    no_longer_applies_each,
    reviewers_by_proposal,
)
from approvals.services.decisions import Guarded, guardrail_refusal, retry_refusal
from approvals.services.proposals import (
    GuardrailCampaigns,
    campaigns_as_recorded,
    guardrail_blocks_counting_approved,
    guardrail_campaigns,
    sent_back_after_attempts,
)
from audit.actors import Actor, acting_as, current_actor
from audit.history import (
    history_records,
    insert_with_history,
    rows_update,
    update_with_history,
    update_with_history_where,
)
from hitlproject.celery import app
from hitlproject.errors import Conflict, NotFound
from hitlproject.formats import console_time
from hitlproject.on_its_way import send_now, started
from hitlproject.queueing import after_commit, chunked, send_each
from hitlproject.row_locks import rows_read_held
from hitlproject.validation import one_line
from hitlproject.vocabulary import (
    AFTER_AN_UNSURE_ATTEMPT,
    APPROVED_TO_RUN_STATUSES,
    INTERRUPTED,
    READ_PERMISSION,
    REVIEW_ENDINGS,
    SENT_TO_RUN_AGAIN,
    UNDER_WAY_STATUSES,
    VerdictOutcome,
    and_joined,
    refused_by,
)
from ledger.models import Account, campaign_field_label
from notifications.carriers import channel_for
from notifications.channels import ChannelError, Sent
from notifications.kill_switches import (
    TOLD_AFTER,
    switch_message,
    switch_message_not_so,
    switch_recipients,
    switch_told_engaged,
)
from notifications.messages import (
    FAILED_THEN_SENT_AGAIN,
    FAILED_THEN_SUPERSEDED,
    DigestLine,
    ProposalMessage,
    addressed_to_one_who_may_not_decide,
    approvals_so_far,
    ended_as,
    failure_as_told,
    in_review_window,
    proposal_messages,
    retried_text,
    told_because,
)
from notifications.models import (
    KILL_SWITCH_KINDS,
    NOT_UPDATED,
    ROUND_ENDED,
    UPDATED_SINCE,
    Claim,
    DecisionDeadline,
    Delivery,
    Notification,
    NotificationChannel,
    NotificationKind,
    NotificationStatus,
    ReachedBy,
    Route,
    held_for,
    no_longer_so,
    superseded_at_its_retry,
)
from notifications.selectors import (
    channels_of,
    group_recipients,
    routing,
    slack_lacks_second_factor,
    told_of_before,
    who_may_decide,
    why_not_theirs,
)
from policies.models import KillSwitch, KillSwitchScope, Policy
from policies.services import (
    SPEND_FIELDS,
    BatchSpend,
    CappedSpends,
    changes_spend,
    in_force,
    kill_switch_names,
)

S = ProposalStatus
UPDATE = NotificationKind.UPDATE
LEASE = timedelta(minutes=2)
SWEEP_BATCH = 500
# Notifications one delivery sends together: those a transaction recorded travel this many to a
# task, and a task whose own leave room takes the others due longest (a backlog of single
# submissions' messages goes out in chunks). More to a task is less work in all; fewer, more
# workers sending at once, and a slow channel holding fewer back.
DELIVERY_CHUNK = 20
# How long a task goes on sending its chunk, well within the lease (each send is bounded by
# OUTBOUND_DEADLINE): what is left then is given back for the next task, so a slow channel
# neither outlives the lease (another task would send it again) nor tells a person, late,
# of a proposal someone decided meanwhile.
SENDING_TIME = timedelta(seconds=15)
# A proposal that waits only until one approved ahead of it executes, and is superseded then
# (its findings' "changed_first"), is told of this much later, and only if it still waits:
# the one ahead executes within a second or two, and nobody is asked to decide what is about
# to go away. Told all the same if that one fails, or has not executed by then.
TOLD_AFTER_THE_ONE_AHEAD = timedelta(seconds=10)
# A delivery task sent and not yet started takes along what writers commit meanwhile, who then
# send none (under a burst of submissions, nine tasks in ten found their messages sent by
# another); its mark, older than this, is of a task lost on its way.
DELIVERY_ON_ITS_WAY = "notifications.deliver"
# The delivery task (notifications.tasks), sent by its name: the tasks module imports this one.
DELIVER_NOTIFICATIONS = "notifications.deliver_notifications"
REDRAW_SLACK_MESSAGES = "notifications.redraw_slack_messages"
FOLLOW_MOVES_AHEAD = "notifications.follow_moves_ahead"
ON_ITS_WAY_STALE_SECONDS = 5
# An update of a Slack message that Slack could not take for now (out of reach, rate limited,
# answering 5xx) is tried past ``NOTIFICATION_MAX_ATTEMPTS``, its backoff doubling up to an
# hour, for this long after it was recorded: until it lands, the message says what is no longer
# so (Approve on a proposal rejected meanwhile). Given up then, or at once where Slack refuses
# it for good (the message deleted, the token revoked), the message's own record says so
# (``_messages_not_updated``).
UPDATE_TRIED_FOR = timedelta(days=1)
# Who writes the outbox and the deadlines in the audit trail: the platform's part that tells
# people, whichever move (a person's, an agent's, a sweep's) made it tell them.
NOTIFICATIONS_ACTOR = Actor.system("notifications")
logger = logging.getLogger(__name__)


def _actor() -> Actor:
    """Who moved the proposal that this outbox or deadline record follows, if known (a
    person deciding, an agent submitting), else the notifications' own part."""
    return current_actor() or NOTIFICATIONS_ACTOR


def notifications_record_moves(proposals: Sequence[Proposal]) -> None:
    """In the transaction that moved ``proposals``: tell the people the routes name about
    those that entered review, start their deadlines, and end the review of those that left
    it (deadline met or not, Slack messages updated); have the messages of those that ran
    say how; and tell of those whose execution failed."""
    entered = [p for p in proposals if p.status == S.PENDING_REVIEW]
    left = [p for p in proposals if p.status in REVIEW_ENDINGS and p.review_round > 0]
    # A person's approval has run, or a person's retry of what the policy let run: its
    # messages, which say who let it run (and that its execution failed), say how it ran.
    ran = [
        p
        for p in proposals
        if p.status in (S.EXECUTED, S.FAILED) and (p.review_round > 0 or was_retried(p))
    ]
    # What the policy let run, whose failure was told, sent to run again by a person (or
    # superseded before it ran again, or as a person retried it: nothing was sent to run):
    # its messages say so. Of a proposal the policy let run, only its failure has messages.
    # One a person approved is followed as its review ended (``_review_ended``).
    retried = [
        p
        for p in proposals
        if p.review_round == 0
        and (p.status == S.SUPERSEDED or (p.status == S.APPROVED and was_retried(p)))
    ]
    now = timezone.now()
    if entered:
        _deadlines_start(entered, now=now)
        _tell(entered, kind=NotificationKind.WAITING, now=now)
    if left:
        _review_ended(left, now=now)
    if retried:
        _slack_messages_follow(
            retried,
            about={
                p.pk: _ended_about(p) if p.status == S.APPROVED else "its end: superseded"
                for p in retried
            },
        )
    if ran:
        _slack_messages_follow(
            ran, about={p.pk: f"its execution: {p.get_status_display().lower()}" for p in ran}
        )
    # Its execution failed for good (a retry in progress leaves it executing): it waits for
    # a person again, who may retry it.
    failed = [p for p in proposals if p.status == S.FAILED]
    if failed:
        _failures_tell(failed, now=now)
    # A move that takes from a figure approved, or no longer to run: the other moves waiting
    # on that figure may be approved, or not, as what it leaves allows (``LedgerAhead``).
    if slack_on():  # what follows only redraws Slack messages
        # And a spend change that ran, on an account whose total may be capped: the cap's
        # words naming it ahead of the others ("counting #8, approved and not yet executed")
        # are no longer so. Followed after commit: the execution's locked transaction reads
        # nothing more for it.
        ahead = [
            [p.pk, p.status]
            for p in proposals
            if _moves_ahead_changed(p) or (p.status == S.EXECUTED and _may_count_on_a_cap(p))
        ]
        if ahead:
            after_commit(_follow_moves_ahead_later, ahead)
        _headroom_moved(proposals)


def slack_on() -> bool:
    """Whether Slack is configured here: its messages are sent, and followed."""
    return channel_for(NotificationChannel.SLACK).is_configured()


def _moves_ahead_changed(proposal: Proposal) -> bool:
    """Whether this move changes what the moves approved and not yet run take from a figure
    others draw on, or set it to (``figures_moved``: a reallocation, from its source's daily
    budget; a budget change, to its new one): approved (by a person, by its policy, or
    retried), or no longer to run (``_no_longer_to_run``). One that ran moved the figure
    itself: the moves waiting on it are re-assessed, and their messages follow
    (``slack_messages_reassessed``)."""
    return bool(figures_moved(proposal)) and (
        proposal.status == S.APPROVED or _no_longer_to_run(proposal)
    )


def _may_count_on_a_cap(proposal: Proposal) -> bool:
    """Whether ``proposal`` changes spend on an account whose total daily budget may be
    capped (its account as the move read it, where it did: else it may be)."""
    return _spends(proposal) and (
        not Proposal.account.is_cached(proposal)
        or proposal.account.max_total_daily_budget is not None
    )


def _follow_moves_ahead_later(moved: list[list]) -> None:
    app.send_task(FOLLOW_MOVES_AHEAD, (moved,))


def slack_messages_follow_moves_ahead(*, moved: Sequence[Sequence]) -> None:
    """Once moves that take from a figure were approved or are no longer to run (``moved``:
    each proposal's id and the status it moved to, ``_moves_ahead_changed``): the Slack
    messages of the other proposals that wait and draw on the same figures, whose approval
    that changes (refused, as the console refuses it, "amount: Exceeds display-retarget's
    daily budget of 100.00 once #1, approved before it, has run."; or no longer refused, or
    refused in other words), are redrawn as they would be sent now: no Approve, and why; or
    Approve back. One pass: the proposals that wait on those figures, and the moves ahead of
    them, read once for all; their messages updated by the outbox. The others are left as
    they are: their messages say what is still so. Those of ``moved`` that executed are
    followed against their accounts' total budget caps (``_headroom_ran``)."""
    status_of = {pk: status for pk, status in moved if status != S.EXECUTED}
    with transaction.atomic():
        if status_of:
            _ledger_ahead_moved(status_of)
        ran = [pk for pk, status in moved if status == S.EXECUTED]
        if ran:
            _headroom_ran(ran)


def _ledger_ahead_moved(status_of: dict[int, str]) -> None:
    """``slack_messages_follow_moves_ahead`` for the moves approved or no longer to run
    (``status_of``: the status each moved to), in its transaction."""
    movers = list(
        # With what ``LedgerAhead`` reads of each (the snapshot a budget change was made
        # against, its agent): not fetched again a proposal at a time.
        Proposal.objects.filter(pk__in=list(status_of)).only(
            "pk",
            "account_id",
            "agent_id",
            "action_type",
            "payload",
            "status",
            "target_snapshot",
        )
    )
    figures: dict[tuple[int, str, str], list[Proposal]] = defaultdict(list)
    for mover in movers:
        for figure in figures_moved(mover):
            figures[figure].append(mover)
    drawing = [name for name in action_types.names() if action_types.get(name).ledger_may_refuse]
    waiting = [
        proposal
        for proposal in _slack_messaged_waiting({mover.account_id for mover in movers})
        .filter(action_type__in=drawing)
        .exclude(pk__in=list(status_of))
        .only(
            "pk",
            "account_id",
            "agent_id",
            "action_type",
            "payload",
            "review_round",
            "target_snapshot",
        )
        if _shared_figures(proposal, figures)
    ]
    if not waiting:
        return
    ledger = LedgerAhead.read(waiting)
    # The moves ahead as they were before these moved: without those approved, with those
    # no longer to run (counted last: judged after the others, as each is).
    approved = {pk for pk, status in status_of.items() if status == S.APPROVED}
    before = LedgerAhead(
        ledger.campaigns,
        {
            figure: [draw for draw in draws if draw.proposal_id not in approved]
            for figure, draws in ledger.draws.items()
        },
    )
    for mover in movers:
        if mover.pk not in approved and mover.status not in UNDER_WAY_STATUSES:
            before.count(mover)
    about = {}
    for proposal in waiting:
        if ledger.refusal(proposal) != before.refusal(proposal):
            about[proposal.pk] = _moves_ahead_about(_shared_figures(proposal, figures), status_of)
    _slack_messages_update_by_round(
        [(p.pk, p.review_round) for p in waiting if p.pk in about],
        about=about,
        in_digest=False,
    )


def _shared_figures(
    proposal: Proposal, figures: dict[tuple[int, str, str], list[Proposal]]
) -> dict[tuple[int, str, str], list[Proposal]]:
    """Of ``figures`` (the moves that moved, by the figure each draws on), those ``proposal``
    draws on too."""
    drawn = action_types.named(proposal.action_type).drawn_from(proposal.payload)
    return {
        key: figures[key]
        for campaign, amounts in drawn.items()
        for name in amounts
        if (key := (proposal.account_id, campaign, name)) in figures
    }


def _moves_ahead_about(
    shared: dict[tuple[int, str, str], list[Proposal]], status_of: dict[int, str]
) -> str:
    """What an update for moves ahead of a proposal is for: "#1 approved, drawing on
    display-retarget's daily budget too", "#3 approved, setting display-retarget's daily
    budget"."""
    said = []
    for (_, campaign, name), movers in shared.items():
        for sets in (False, True):
            these = [
                mover
                for mover in movers
                if sets != bool(action_types.named(mover.action_type).drawn_from(mover.payload))
            ]
            if these:
                moves = and_joined([f"#{m.pk} {_moved_said(status_of[m.pk], m)}" for m in these])
                how = "setting" if sets else "drawing on"
                said.append(
                    f"{moves}, {how} {campaign}'s {campaign_field_label(name)}"
                    + ("" if sets else " too")
                )
    return "; ".join(said)


def _moved_said(status: str, mover: Proposal) -> str:
    if status == S.PENDING_REVIEW:
        # Held back between two attempts, after one that got no sure answer: it may have run.
        if sent_back_after_attempts(str((mover.verdict_reasons or [""])[0])):
            return f"sent back to a person {AFTER_AN_UNSURE_ATTEMPT}"
        return "sent back to a person before it ran"
    if status == S.FAILED:
        return "failed"
    return ProposalStatus(status).label.lower()


class Guardrailed(NamedTuple):
    """A proposal that waits with a Slack message posted (not a digest's), and what the
    guardrails refuse about it now (none: Approve is offered)."""

    review_round: int
    account_id: int
    reasons: tuple[str, ...]


GuardrailsShown = dict[int, Guardrailed]


def slack_guardrails_read(
    *,
    account_ids: Iterable[int],
    besides: Collection[int] = (),
    judged_too: Sequence[Proposal] = (),
    counting_too: Sequence[Proposal] = (),
) -> GuardrailsShown:
    """What the guardrails refuse now about each proposal on these accounts that waits with
    a Slack message posted (but ``besides``), read for all at once as its approval would read
    it (``guardrail_blocks_counting_approved``): what its messages say, or should. As they
    were found before a move: ``judged_too``, approved by it, are not counted ahead of them;
    ``counting_too``, no longer to run by it, are."""
    waiting = _slack_waiting(account_ids=account_ids, besides=besides)
    if not waiting:
        return {}
    return _guardrails_shown(
        waiting,
        guardrail_blocks_counting_approved(
            [*waiting, *judged_too], lock=False, counting_too=counting_too
        ),
    )


def _slack_messaged_waiting(account_ids: Iterable[int]) -> QuerySet[Proposal]:
    """The proposals on these accounts that wait with a Slack message posted (not a
    digest's)."""
    return Proposal.objects.filter(
        # The messages' own statement bound to these accounts' proposals that wait, as the
        # outer one is: unbounded, it read every Slack message posted on every account
        # (PostgreSQL hashes the whole subquery for a semi-join).
        pk__in=Notification.objects.filter(
            channel=NotificationChannel.SLACK,
            status=NotificationStatus.SENT,
            updates__isnull=True,
            in_digest=False,
            proposal__account_id__in=list(account_ids),
            proposal__status=S.PENDING_REVIEW,
        )
        .exclude(slack_ts="")
        .values("proposal_id"),
    )


def _slack_waiting(*, account_ids: Iterable[int], besides: Collection[int]) -> list[Proposal]:
    """``_slack_messaged_waiting`` but ``besides``; with their accounts."""
    return list(
        _slack_messaged_waiting(account_ids).exclude(pk__in=list(besides)).select_related("account")
    )


def _guardrails_shown(
    waiting: Sequence[Proposal], blocks: dict[int, tuple[str, ...]]
) -> GuardrailsShown:
    return {
        proposal.pk: Guardrailed(proposal.review_round, proposal.account_id, blocks[proposal.pk])
        for proposal in waiting
    }


def slack_messages_follow_guardrails(
    *, before: GuardrailsShown, after: GuardrailsShown, about
) -> None:
    """In the transaction that changed what the guardrails refuse (a cap or a strategy lock
    set or lifted, a raise approved that counts against its account's total budget cap, or
    one that no longer does): the Slack messages of the proposals whose refusal it changed
    (``before``, ``after``: ``slack_guardrails_read``) are redrawn as they would be sent now,
    no Approve where a guardrail refuses it and why, in the words its approval would be
    refused with; or Approve back. The others are left as they are: what they say is still
    so. ``about``: what the update is for, in words, or a mapping of them by proposal id."""
    _slack_messages_update_by_round(
        [
            (proposal_id, found.review_round)
            for proposal_id, found in after.items()
            if proposal_id in before and before[proposal_id].reasons != found.reasons
        ],
        about=about,
        in_digest=False,
    )


def slack_messages_follow_guardrail_save(
    *,
    account_id: int,
    about: str,
    account_was: dict | None = None,
    campaign_was: tuple[str, dict] | None = None,
) -> None:
    """In the transaction of a save that set or lifted a guardrail, once saved: its
    account's total budget cap (``account_was``: the account's guardrail fields as they
    were), or a campaign's cap or strategy lock (``campaign_was``: its external id, and its
    guardrail fields as they were). The Slack messages of the proposals that wait on the
    account whose approval it changes are redrawn (``slack_messages_follow_guardrails``;
    ``about``: the save, in words). Read once: what the guardrails refused before it is
    worked out from the same read, the fields put back as they were, so that what differs is
    the save alone, as the updates' records say; a raise approved (or one run) meanwhile,
    read before the save and after it alike, has an update of its own."""
    waiting = _slack_waiting(account_ids=[account_id], besides=())
    if not waiting:
        return
    as_before = [copy.copy(proposal) for proposal in waiting]
    if account_was is not None:
        for proposal in as_before:
            proposal.account = copy.copy(proposal.account)
            for name, value in account_was.items():
                setattr(proposal.account, name, value)
    # Every campaign of the account where it is capped before or after the save.
    found = guardrail_campaigns([*waiting, *as_before])
    campaigns_before = copy.deepcopy(found)
    if campaign_was is not None:
        external_id, values = campaign_was
        campaign = campaigns_before.get(account_id, {}).get(external_id)
        for name, value in values.items() if campaign is not None else ():
            setattr(campaign, name, value)
    slack_messages_follow_guardrails(
        before=_guardrails_judged(as_before, campaigns_before),
        after=_guardrails_judged(waiting, found),
        about=about,
    )


def _headroom_moved(proposals: Sequence[Proposal]) -> None:
    """Of moves of proposals that change spend on an account whose total daily budget is
    capped, those approved (counted against the cap ahead of the proposals that wait) and
    those no longer to run (failed, sent back to a person or superseded before they ran):
    the Slack messages of the other proposals that wait on those accounts, whose approval
    that changes, are redrawn (``slack_messages_follow_guardrails``). Read here, in the
    transaction that moved them: what the guardrails found before it can be read only while
    the moves approved have not run."""
    counted = [p for p in proposals if p.status == S.APPROVED and _spends(p)]
    freed = [p for p in proposals if _no_longer_to_run(p) and _spends(p)]
    if not counted and not freed:
        return
    # Their accounts as the move read them, where it did (a submission, a decision); the
    # others read here.
    accounts = {
        p.account_id: p.account for p in [*counted, *freed] if Proposal.account.is_cached(p)
    }
    missing = {p.account_id for p in [*counted, *freed]} - accounts.keys()
    if missing:
        accounts |= Account.objects.in_bulk(missing)
    capped = {
        pk: account
        for pk, account in accounts.items()
        if account.max_total_daily_budget is not None
    }
    counted = [p for p in counted if p.account_id in capped]
    freed = [p for p in freed if p.account_id in capped]
    moved = [*counted, *freed]
    if not moved:
        return
    for proposal in moved:
        if not Proposal.account.is_cached(proposal):
            proposal.account = capped[proposal.account_id]
    besides = {p.pk for p in moved}
    before = slack_guardrails_read(
        account_ids=capped, besides=besides, judged_too=counted, counting_too=freed
    )
    if not before:
        return
    after = slack_guardrails_read(account_ids=capped, besides=besides)
    slack_messages_follow_guardrails(
        before=before, after=after, about=_headroom_about(after, capped=capped, moved=moved)
    )


def _headroom_about(
    found: GuardrailsShown, *, capped: dict[int, Account], moved: Sequence[Proposal]
) -> dict[int, str]:
    """What an update for moves counting against their accounts' total budget caps is for,
    by proposal id (of those ``found``): "#8 approved, counting against account demo's total
    daily budget cap"."""
    said = {}
    for account_id, account in capped.items():
        movers = [p for p in moved if p.account_id == account_id]
        if movers:
            said[account_id] = (
                and_joined([f"#{p.pk} {_moved_said(p.status, p)}" for p in movers])
                + f", counting against account {account.external_id}'s total daily budget cap"
            )
    return {pk: said[shown.account_id] for pk, shown in found.items() if shown.account_id in said}


def _headroom_ran(proposal_ids: Sequence[int]) -> None:
    """Once spend changes on accounts whose total daily budget is capped have executed
    (``proposal_ids``), in the transaction of ``slack_messages_follow_moves_ahead``: the Slack
    messages of the proposals that wait on those accounts, whose approval that changes, are
    redrawn (``slack_messages_follow_guardrails``): the cap's words named them as approved and
    not yet executed ("…, counting #8, approved and not yet executed."), and no longer do.
    Read once, after they ran: before them is worked out from it, each campaign they changed
    as the first of them found it (its execution's ``before_state``) and they counted ahead,
    so that what differs is what their running changed, and nothing else committed
    meanwhile (that has an update of its own)."""
    ran = sorted(
        (
            proposal
            for proposal in Proposal.objects.filter(
                pk__in=list(proposal_ids), status=S.EXECUTED
            ).select_related("account")
            if proposal.account.max_total_daily_budget is not None and _spends(proposal)
        ),
        key=lambda proposal: (proposal.approved_at is None, proposal.approved_at, proposal.pk),
    )
    if not ran:
        return
    capped = {proposal.account_id: proposal.account for proposal in ran}
    waiting = _slack_waiting(account_ids=capped, besides={proposal.pk for proposal in ran})
    if not waiting:
        return
    found = guardrail_campaigns(waiting)
    as_before = copy.deepcopy(found)
    account_of = {proposal.pk: proposal.account_id for proposal in ran}
    reverted = set()
    for execution in Execution.objects.filter(
        proposal_id__in=list(account_of), status=ExecutionStatus.SUCCEEDED
    ).order_by("started_at", "pk"):
        account_id = account_of[execution.proposal_id]
        recorded = {
            external_id: {name: value for name, value in values.items() if name in SPEND_FIELDS}
            for external_id, values in execution.before_state.items()
            if (account_id, external_id) not in reverted
        }
        for external_id, was in campaigns_as_recorded(recorded).items():
            campaign = as_before.get(account_id, {}).get(external_id)
            if campaign is not None:
                reverted.add((account_id, external_id))
                for name in recorded[external_id]:
                    setattr(campaign, name, getattr(was, name))
    after = _guardrails_judged(waiting, found)
    before = _guardrails_judged(waiting, as_before, counting_too=ran)
    slack_messages_follow_guardrails(
        before=before, after=after, about=_headroom_about(after, capped=capped, moved=ran)
    )


def _guardrails_judged(
    waiting: Sequence[Proposal], campaigns: GuardrailCampaigns, **counting
) -> GuardrailsShown:
    """``slack_guardrails_read`` of ``waiting`` against the ledger as ``campaigns`` has it
    (``guardrail_campaigns``): its campaigns not read again (the moves approved ahead are)."""
    # Each capped account's campaigns, all of which ``campaigns`` holds, as the cap counts
    # the moves approved ahead: copies, which the counting moves.
    capped = {p.account_id for p in waiting if p.account.max_total_daily_budget is not None}
    spends = CappedSpends(
        {
            account_id: BatchSpend({key: copy.copy(c) for key, c in theirs.items()})
            for account_id, theirs in campaigns.items()
            if account_id in capped
        }
    )
    return _guardrails_shown(
        waiting,
        guardrail_blocks_counting_approved(
            waiting, lock=False, campaigns=campaigns, spends=spends, **counting
        ),
    )


def _spends(proposal: Proposal) -> bool:
    return changes_spend(
        action_type=action_types.named(proposal.action_type), payload=proposal.payload
    )


def _no_longer_to_run(proposal: Proposal) -> bool:
    """Whether this move ends the approval of a proposal that had not run: its execution
    failed, or it was sent back to a person, or superseded, before it ran."""
    if proposal.status == S.FAILED:
        return True
    if proposal.status == S.SUPERSEDED:
        return proposal.approved_at is not None
    return proposal.status == S.PENDING_REVIEW and (
        proposal.review_round > 1 or proposal.verdict_outcome == VerdictOutcome.AUTO_APPROVE
    )


def _deadlines_start(proposals: Sequence[Proposal], *, now: datetime) -> None:
    wanted = {p.verdict_policy_id for p in proposals if p.verdict_policy_id}
    # The policies that gave the verdicts are in force, as just read (else read now).
    kept = in_force().policies
    within = {pk: kept[pk].decide_within for pk in wanted & kept.keys()}
    if wanted - kept.keys():
        within.update(
            Policy.objects.filter(pk__in=wanted - kept.keys()).values_list("pk", "decide_within")
        )
    within = {pk: duration for pk, duration in within.items() if duration is not None}
    insert_with_history(
        DecisionDeadline,
        [
            DecisionDeadline(
                proposal=proposal,
                review_round=proposal.review_round,
                started_at=now,
                remind_at=now + within[proposal.verdict_policy_id] / 2,
                due_at=now + within[proposal.verdict_policy_id],
            )
            for proposal in proposals
            if proposal.verdict_policy_id in within
        ],
        actor=_actor(),
        reason="Review round began: a decision is due by its policy's “decide within”.",
        ignore_conflicts=True,
    )


def _tell(
    proposals: Sequence[Proposal],
    *,
    kind: str,
    now: datetime,
    recipients_of=None,
    at_once: bool = False,
) -> None:
    """Record a message to each person told about each proposal, on each of their channels,
    once (whichever of the routes that name them comes first), and send those not held for
    a digest once the transaction commits. ``recipients_of(proposal)`` gives [(route,
    users)]; by default, the routes it matches and their users and groups. ``at_once``:
    never held for a digest (a reminder held past the deadline it warns of says nothing)."""
    channels = None
    if recipients_of is None:
        current = routing()
        recipients_of, channels = current.recipients_of, current.channels
    told = {}
    for proposal in proposals:
        for route, users in recipients_of(proposal):
            for user in users:
                earlier = told.get((proposal.pk, user.pk))
                # Of the routes that name a person, one that tells at once wins over digests.
                if earlier is None or (_held(earlier[1]) and not _held(route)):
                    told[(proposal.pk, user.pk)] = (proposal, route, user)
    if not told:
        return
    if channels is None:
        channels = channels_of({user.pk: user for _, _, user in told.values()}.values())
    notifications = []
    for proposal, route, user in told.values():
        digest = not at_once and _held(route)
        if digest:
            due = now + timedelta(minutes=route.digest_minutes)
        elif kind == NotificationKind.WAITING and _superseded_soon(proposal):
            due = now + TOLD_AFTER_THE_ONE_AHEAD
        else:
            due = now
        for channel in channels[user.pk]:
            notifications.append(
                Notification(
                    proposal=proposal,
                    review_round=proposal.review_round,
                    recipient=user,
                    route=route,
                    channel=channel,
                    kind=kind,
                    status=NotificationStatus.HELD if digest else NotificationStatus.PENDING,
                    created_at=now,
                    next_attempt_at=due,
                )
            )
    _record(notifications, kind=kind)


def _superseded_soon(proposal: Proposal) -> bool:
    """Whether the proposal waits for one approved ahead of it, which changes first what it
    sets: once that one executes, it is superseded."""
    return bool((proposal.guardrail_findings or {}).get("changed_first"))


def _record(notifications: list[Notification], *, kind: str) -> None:
    """Write ``notifications`` to the outbox with their history (one statement each way),
    and send once the transaction commits those neither held for a digest nor told later."""
    said = NotificationKind(kind).label
    pending = [n for n in notifications if n.status == NotificationStatus.PENDING]
    held = [n for n in notifications if n.status == NotificationStatus.HELD]
    at_once = [n for n in pending if n.next_attempt_at <= n.created_at]
    later = [n for n in pending if n.next_attempt_at > n.created_at]
    actor = _actor()
    _send_after_commit(
        insert_with_history(Notification, at_once, actor=actor, reason=f"To be sent: {said}")
    )
    if later:
        seconds = int(TOLD_AFTER_THE_ONE_AHEAD.total_seconds())
        reason = (
            f"To be sent in {seconds} s, if it still waits (it is superseded once the "
            f"proposal approved ahead of it executes): {said}"
        )
        ids = insert_with_history(Notification, later, actor=actor, reason=reason)
        after_commit(_deliver_later, ids, seconds)
    insert_with_history(Notification, held, actor=actor, reason=f"{held_for(kind)}: {said}")


def kill_switch_tell(
    *, switch: KillSwitch, kind: str, moved_from: str = "", covered: KillSwitch | None = None
) -> None:
    """In the transaction that engaged or released ``switch`` (``kind``): a message to each
    person the routes meeting its scope tell (``switch_recipients``), once, on each of their
    channels, sent ``TOLD_AFTER`` later and drawn then (``switch_message``), unless no longer
    so by then (``switch_message_not_so``). Released, those told it was engaged whom the
    routes no longer name are told too (``switch_told_engaged``). Moved while engaged off
    ``moved_from`` (what it covered, in words), those told it was engaged whom it no longer
    reaches are told it no longer covers that (``NotificationKind.SWITCH_MOVED``). Released
    and moved in the same save, the people of what it ``covered`` (engaged) are told it was
    released there (``moved_from``), not those of what it was moved to, which it never held."""
    current = routing()
    told: dict[int, tuple[Route, object]] = {}
    for route, users in switch_recipients(covered or switch):
        for user in users:
            told.setdefault(user.pk, (route, user))
    sent_to = [
        (route, user, channel, kind)
        for route, user in told.values()
        for channel in current.channels.get(user.pk, [])
    ]
    if kind == NotificationKind.SWITCH_RELEASED or moved_from:
        reached = (
            {(user.pk, channel) for _, user, channel, _ in sent_to}
            if kind == NotificationKind.SWITCH_RELEASED
            else None
        )
        for message in switch_told_engaged(switch):
            if reached is not None and (message.recipient_id, message.channel) in reached:
                continue
            if reached is None and message.recipient_id in told:
                continue  # the new scope reaches them: they are told it is engaged on it
            sent_to.append(
                (
                    message.route,
                    message.recipient,
                    message.channel,
                    kind if reached is not None else NotificationKind.SWITCH_MOVED,
                )
            )
    now = timezone.now()
    notifications = [
        Notification(
            kill_switch=switch,
            review_round=0,
            recipient=user,
            route=route,
            channel=channel,
            kind=told_kind,
            # Moved off it: those it no longer reaches, and those it now reaches, told so.
            about=moved_from[:200],
            status=NotificationStatus.PENDING,
            created_at=now,
            next_attempt_at=now + TOLD_AFTER,
        )
        for route, user, channel, told_kind in sent_to
    ]
    if not notifications:
        return
    seconds = int(TOLD_AFTER.total_seconds())
    ids = []
    for told_kind in dict.fromkeys(n.kind for n in notifications):
        said = NotificationKind(told_kind).label
        on = switch.scope_in_words()
        if told_kind == NotificationKind.SWITCH_RELEASED and moved_from:
            on = f"{moved_from}; moved to {on} as it was released"
        elif told_kind == NotificationKind.SWITCH_MOVED:
            on = f"{moved_from}; it now covers {on}"
        elif moved_from:
            on = f"{on}, moved there from {moved_from}"
        ids += insert_with_history(
            Notification,
            [n for n in notifications if n.kind == told_kind],
            actor=_actor(),
            reason=f"To be sent in {seconds} s, drawn then, unless no longer so: {said} ({on})",
        )
    after_commit(_deliver_later, ids, seconds)


def _deliver_later(notification_ids: list[int], seconds: int) -> None:
    for chunk in chunked(notification_ids, DELIVERY_CHUNK):
        app.send_task(DELIVER_NOTIFICATIONS, (chunk,), countdown=seconds)


def _held(route: Route | None) -> bool:
    return route is not None and route.delivery == Delivery.DIGEST


def _send_after_commit(notification_ids: list[int]) -> None:
    if notification_ids:
        after_commit(_deliver, notification_ids)


def _deliver(notification_ids: list[int]) -> None:
    """Send delivery tasks for messages just committed, a task to each chunk of them; none
    where they fit in one and a delivery task is on its way (``hitlproject.on_its_way``): it
    starts after this commit and takes them along."""
    chunks = chunked(notification_ids, DELIVERY_CHUNK)
    if len(chunks) > 1:
        send_each(DELIVER_NOTIFICATIONS, chunks)
    else:
        _deliver_unless_on_its_way(notification_ids)


def _deliver_more() -> None:
    """A task took a whole chunk, so more may be due, from writers that left them to it: it
    goes on to the next, and a task for them is sent too, to send beside it, unless one is
    on its way."""
    _deliver_unless_on_its_way([])


def _deliver_unless_on_its_way(notification_ids: list[int]) -> None:
    if send_now(DELIVERY_ON_ITS_WAY, stale_after=ON_ITS_WAY_STALE_SECONDS):
        try:
            send_each(DELIVER_NOTIFICATIONS, [notification_ids])
        except BaseException:
            started(DELIVERY_ON_ITS_WAY)  # not on its way after all: the next writer sends
            raise


def _review_ended(proposals: Sequence[Proposal], *, now: datetime) -> None:
    by_id = {p.pk: p for p in proposals}
    by_status: dict[str, list[int]] = {}
    for proposal in proposals:
        by_status.setdefault(proposal.status, []).append(proposal.pk)
    for status, proposal_ids in by_status.items():  # one UPDATE per way a round ends
        update_with_history_where(
            DecisionDeadline.objects.filter(proposal_id__in=proposal_ids, ended_at__isnull=True),
            {"ended_at": now, "ended_as": status},
            actor=_actor(),
            reason=f"{ROUND_ENDED}: {ProposalStatus(status).label.lower()}.",
        )
    _slack_messages_update(
        proposal_ids=by_id,
        now=now,
        about={proposal.pk: _ended_about(proposal) for proposal in proposals},
    )


def _ended_about(proposal: Proposal) -> str:
    """What an update about a proposal that left review is for: "the decision: rejected"."""
    status = proposal.get_status_display().lower()
    if proposal.status == S.APPROVED and was_retried(proposal):
        return f"{SENT_TO_RUN_AGAIN} by {_actor().name}"
    if proposal.status in (S.REJECTED, *APPROVED_TO_RUN_STATUSES):
        return f"the decision: {status}"
    return f"the end of its review: {status}"


def _slack_messages_update(*, proposal_ids, now: datetime, about, **only) -> None:
    """Record an update of every Slack message posted about these proposals (``only`` those
    matching further filters), sent once the transaction commits; what it says is read when
    it is sent (``notifications_deliver``). ``about``: what the update is for, in words, a
    mapping of it by proposal, or a function of the message it updates."""
    posted = Notification.objects.filter(
        **only,
        proposal_id__in=proposal_ids,
        channel=NotificationChannel.SLACK,
        status=NotificationStatus.SENT,
        updates__isnull=True,
    ).exclude(slack_ts="")
    _record(
        [
            Notification(
                proposal_id=message.proposal_id,
                review_round=message.review_round,
                recipient_id=message.recipient_id,
                route_id=message.route_id,
                channel=NotificationChannel.SLACK,
                kind=NotificationKind.UPDATE,
                updates=message,
                about=_about_cut(
                    about(message)
                    if callable(about)
                    else about.get(message.proposal_id, "")
                    if isinstance(about, dict)
                    else about
                ),
                slack_channel=message.slack_channel,
                slack_ts=message.slack_ts,
                created_at=now,
                next_attempt_at=now,
            )
            for message in posted
        ],
        kind=NotificationKind.UPDATE,
    )


ABOUT_LIMIT = Notification._meta.get_field("about").max_length


def _about_cut(about: str) -> str:
    """What an update is for, within what its record keeps (``Notification.about``): one
    that names a person, a group or a refusal quoting them (each name up to 150 characters)
    could run past it, and failed the write of the update, and with it the press or the
    change that asked for it."""
    return about if len(about) <= ABOUT_LIMIT else about[: ABOUT_LIMIT - 1] + "…"


def _slack_messages_follow(proposals: Sequence[Proposal], *, about) -> None:
    """Update the Slack messages of each proposal's current review round (``about``: what
    the update is for, in words, or a mapping of them by proposal id)."""
    _slack_messages_update_by_round(
        [(proposal.pk, proposal.review_round) for proposal in proposals], about=about
    )


def _slack_messages_update_by_round(rounds: Iterable[tuple[int, int]], *, about, **which) -> None:
    """Update the Slack messages of proposals (``rounds``: each one's id and the review round
    whose messages are updated), a round's at a time, ``which`` narrowing the messages
    (``_slack_messages_update``)."""
    by_round = defaultdict(list)
    for proposal_id, review_round in rounds:
        by_round[review_round].append(proposal_id)
    now = timezone.now()
    for review_round, proposal_ids in by_round.items():
        _slack_messages_update(
            proposal_ids=proposal_ids, now=now, about=about, review_round=review_round, **which
        )


def _failures_tell(proposals: Sequence[Proposal], *, now: datetime) -> None:
    """In the transaction in which proposals' executions failed (for good: no attempt is
    left to come), a person must look, and may retry them in the console: the people told of
    each are told, each on their own channels, at once (a failure is not held for a digest):
    those the routes it matches name (as they would be told were it waiting), and those told
    of it before (an email cannot change, so its reader learns it failed). Not on Slack one
    whose Slack message of this round about it is updated to say it failed (by the same
    move: ``ran``); nor anyone who may not see proposals in the console. The proposal's
    history says whom it tells, and whom not and why. What a message says of the failure is
    read as it goes, from the proposal's history (``messages._failures``)."""
    recipients_of = routing().recipients_of
    told_before = told_of_before(proposal_ids=[proposal.pk for proposal in proposals])
    # Read again, not the routing's people kept by this process: whether each is active and
    # may see proposals is as they are now.
    wanted = {
        proposal.pk: {
            **{n.recipient_id: None for n in told_before.get(proposal.pk, [])},
            **{user.pk: route for route, users in recipients_of(proposal) for user in users},
        }
        for proposal in proposals
    }
    people = get_user_model().objects.in_bulk({pk for by in wanted.values() for pk in by})
    channels = channels_of(people.values())
    barred = {pk: may_not_read(person) for pk, person in people.items()}
    lately = _failures_told_lately(sorted(people), now=now)
    notifications = []
    for proposal in proposals:
        # A Slack message of this round, which its update says failed: none more on Slack.
        updated = {
            n.recipient_id
            for n in told_before.get(proposal.pk, [])
            if n.channel == NotificationChannel.SLACK
            and n.status == NotificationStatus.SENT
            and n.slack_ts
            and n.review_round == proposal.review_round
        }
        told: dict[str, list[str]] = defaultdict(list)
        passed_over: list[str] = []
        for pk, route in wanted[proposal.pk].items():
            person = people[pk]
            name = person.get_username()
            if barred[pk]:
                passed_over.append(f"{name} ({barred[pk]})")
                continue
            if not channels[pk]:
                passed_over.append(f"{name} (has no channel to be told on)")
            for channel in channels[pk]:
                if channel == NotificationChannel.SLACK and pk in updated:
                    passed_over.append(
                        f"{name} on Slack (their message about it is updated to say it failed)"
                    )
                    continue
                by = NotificationChannel(channel).by
                # One a person sent to run again: they wait to hear how it went, at once.
                due = (
                    None
                    if was_retried(proposal)
                    else _failure_held_until(lately[(pk, channel)], proposal.pk, now=now)
                )
                if due is not None:
                    # What it goes with is known only when it goes (it may go on its own):
                    # the message's page says it then.
                    when = console_time(due)
                    by += f" (held until {when}, to go with any other failures held for them then)"
                lately[(pk, channel)].append((proposal.pk, due))
                told[name].append(by)
                notifications.append(
                    Notification(
                        proposal=proposal,
                        review_round=proposal.review_round,
                        recipient=person,
                        route=route,
                        channel=channel,
                        kind=NotificationKind.FAILED,
                        status=NotificationStatus.HELD if due else NotificationStatus.PENDING,
                        created_at=now,
                        next_attempt_at=due or now,
                    )
                )
        _failure_told_in_history(proposal, told=told, passed_over=passed_over, now=now)
    _record(notifications, kind=NotificationKind.FAILED)


def _failures_told_lately(people_ids: Sequence[int], *, now: datetime) -> dict:
    """By person and channel, the failures told to them (or held to be told) within
    ``NOTIFICATION_FAILURES_GROUPED_SECONDS``: each as its proposal's id and, where it is
    held to go with others, when that message is due (else None). Not one that ended
    without ever being sent (its proposal sent to run again before it went, say): it told
    them nothing, and the next failure is not held a window for it. Their rows are locked
    first, in a consistent order, so that two failures recorded at once take turns: the
    second finds the first told, rather than both going at once."""
    window = timedelta(seconds=settings.NOTIFICATION_FAILURES_GROUPED_SECONDS)
    lately: dict[tuple[int, str], list[tuple[int, datetime | None]]] = defaultdict(list)
    if not window or not people_ids:
        return lately
    # FOR NO KEY UPDATE: the rows that refer to them (messages, history) are written meanwhile.
    list(
        get_user_model()
        .objects.select_for_update(no_key=True)
        .filter(pk__in=people_ids)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for recipient_id, channel, proposal_id, status, due in (
        Notification.objects.filter(
            kind=NotificationKind.FAILED, recipient_id__in=people_ids, created_at__gt=now - window
        )
        .exclude(status=NotificationStatus.NOT_SENT, attempts=0)
        .values_list("recipient_id", "channel", "proposal_id", "status", "next_attempt_at")
    ):
        # Held, due or not: one fallen due goes at the digests' next run (the beat's, within
        # 30 s), and a failure held now goes with it.
        held = status == NotificationStatus.HELD and due is not None
        lately[(recipient_id, channel)].append((proposal_id, due if held else None))
    return lately


def _failure_held_until(
    lately: list[tuple[int, datetime | None]], proposal_id: int, *, now: datetime
) -> datetime | None:
    """When a failure of ``proposal_id`` is told, in one message with others, to a person
    told of ``lately`` (``_failures_told_lately``): with those held already, when the first
    of them is due (now, where it fell due and waits for the digests' next run); or,
    another failure having been told at once, once the window from now has passed; None (at
    once) when it is the first, or only this proposal's own failures were told them. (A
    proposal a person sent to run again is told at once whatever else failed:
    ``_failures_tell``.)"""
    others = [due for told_of, due in lately if told_of != proposal_id]
    if not others or not settings.NOTIFICATION_FAILURES_GROUPED_SECONDS:
        return None
    held = [due for due in others if due is not None]
    window = timedelta(seconds=settings.NOTIFICATION_FAILURES_GROUPED_SECONDS)
    # Those held fell due already: at the digests' next run, with them.
    return max(min(held), now) if held else now + window


def _failure_told_in_history(
    proposal: Proposal, *, told: dict[str, list[str]], passed_over: list[str], now: datetime
) -> None:
    """The proposal's history says whom its failure is told, on what, and whom not and why:
    "Told that its execution failed: operator by email and on Slack. Not told: auditor (may
    not see proposals in the console)." (each message's own history says how it went)."""
    said = [
        "Told that its execution failed: "
        + "; ".join(f"{name} {' and '.join(by)}" for name, by in told.items())
        + "."
        if told
        else "Nobody is told that its execution failed: no route names anyone for it, and "
        "nobody was told of it before."
    ]
    if passed_over:
        said.append("Not told: " + "; ".join(passed_over) + ".")
    record = copy.copy(proposal)
    record._change_reason = " ".join(said)
    history = Proposal.history
    history.model.objects.bulk_create(
        history_records(history, [record], actor=NOTIFICATIONS_ACTOR, date=now, update=True)
    )


def slack_messages_reassessed(*, proposals: Sequence[Proposal], actor: Actor) -> None:
    """In the transaction that re-assessed waiting proposals (a change to their campaigns
    landed first): their Slack messages of this review round say what approving them would
    do now, as their pages do, not what it would have done when they were sent."""
    _slack_messages_follow(
        proposals, about="a re-assessment: a change to its campaigns landed first"
    )


def slack_messages_approval_counted(*, proposals: Sequence[Proposal], actor: Actor) -> None:
    """In the transaction that counted a reviewer's approval on proposals whose policy asks
    for more: their Slack messages say who approved and how many more they wait for, as
    their pages do, however the reviewer approved (console, bulk approval or Slack)."""
    _slack_messages_follow(
        proposals,
        about={
            proposal.pk: (
                f"an approval by {actor.name}; it waits for "
                f"{proposal.required_approvals - proposal.approvals_this_round} more"
            )
            for proposal in proposals
        },
    )


def reviews_restarted_tell(*, proposals: Sequence[Proposal], actor: Actor) -> None:
    """In the transaction in which a reviewer's edit started waiting proposals' review again
    (the approvals given were of the action before it): the earlier round's Slack messages
    say it was edited and its review started again (their buttons gone); the people the
    routes name, but the editor, are told of the action as it now reads, in messages of the
    new round; and the decision stays due by the deadline it had, now the new round's (so
    reminders and escalation go on)."""
    now = timezone.now()
    by_round = defaultdict(list)
    for proposal in proposals:
        by_round[proposal.review_round - 1].append(proposal.pk)
    for earlier, proposal_ids in by_round.items():
        update_with_history_where(
            DecisionDeadline.objects.filter(
                proposal_id__in=proposal_ids, review_round=earlier, ended_at__isnull=True
            ),
            {"review_round": earlier + 1},
            actor=actor,
            reason=f"Review round began again, edited by {actor.name}: the decision is due "
            "by the same deadline.",
        )
        _slack_messages_update(
            proposal_ids=proposal_ids,
            now=now,
            about=f"an edit by {actor.name}: its review started again",
            review_round=earlier,
        )
    recipients_of = routing().recipients_of
    _tell(
        proposals,
        kind=NotificationKind.WAITING,
        now=now,
        recipients_of=lambda proposal: [
            (route, [user for user in users if user != actor.user])
            for route, users in recipients_of(proposal)
        ],
    )


def slack_messages_claimed(*, proposal_id: int, about: str) -> None:
    """Have the Slack messages of this review round of a proposal that still waits say who
    is on it (``about``: the claim, in words). Not a digest's: its lines do not say who is on
    a proposal, and an edit that changes nothing still counts against Slack's limits."""
    with transaction.atomic():
        proposal = Proposal.objects.only("review_round").get(pk=proposal_id)
        _slack_messages_update(
            proposal_ids=[proposal_id],
            now=timezone.now(),
            about=about,
            review_round=proposal.review_round,
            in_digest=False,
        )


def slack_messages_redrawn_for(*, proposal_id: int, user, about: str) -> None:
    """Have ``user``'s Slack messages of this review round of a proposal that still waits
    say it as they may read it now. Once a press of theirs was refused for what changed
    since the message went, the message offers no button that would be refused again."""
    with transaction.atomic():
        _slack_messages_redraw(
            Proposal.objects.filter(pk=proposal_id), user_ids=[user.pk], about=about
        )


def slack_messages_redrawn_for_people(*, user_ids: Sequence[int], about: str) -> None:
    """Have these people's Slack messages of proposals that still wait (each of its review
    round under way) say them as they may read them now (``REDRAW_SLACK_MESSAGES``)."""
    with transaction.atomic():
        _slack_messages_redraw(
            Proposal.objects.filter(pk__in=_live_slack_messages(user_ids).values("proposal_id")),
            user_ids=user_ids,
            about=about,
        )


def slack_messages_redrawn_for_proposals(*, proposal_ids: Sequence[int], about: str) -> None:
    """Have every Slack message of these proposals that still wait (each of its review round
    under way) say them as its reader may decide them now (``REDRAW_SLACK_MESSAGES``, for
    ``slack_messages_follow_agents``)."""
    with transaction.atomic():
        _slack_messages_redraw(
            Proposal.objects.filter(pk__in=list(proposal_ids)), user_ids=None, about=about
        )


def _slack_messages_redraw(proposals, *, user_ids: Sequence[int] | None, about: str) -> None:
    """Record an update of each of these people's (None: everyone's) Slack messages of the
    review round under way of those of ``proposals`` that still wait, drawn as it is sent
    (``_update_says``): to one whose staff status was taken away, who was deactivated or may
    no longer see proposals, it takes the message back; to one whose group must now use a
    second factor, it offers only "I'll take it" and says why; to one who may decide on
    Slack again, the buttons come back; of a proposal whose agent was stopped, it offers no
    Approve and says why (its agent started again, Approve comes back). Not a digest's: its
    lines offer no buttons."""
    whose = {} if user_ids is None else {"recipient_id__in": list(user_ids)}
    _slack_messages_update_by_round(
        proposals.filter(status=ProposalStatus.PENDING_REVIEW).values_list("pk", "review_round"),
        about=about,
        in_digest=False,
        **whose,
    )
    # A failure's message invites its reader to retry it on its page, says why a retry is
    # refused now, and which kill switches a retry runs past, as read when it was drawn:
    # redrawn as it would be sent now (before, it kept inviting a retry its agent's stop
    # refused, and said nothing of a switch engaged over it since).
    _slack_messages_update_by_round(
        proposals.filter(status=ProposalStatus.FAILED).values_list("pk", "review_round"),
        about=about,
        in_digest=False,
        kind=NotificationKind.FAILED,
        **whose,
    )


def _live_slack_messages(user_ids: Sequence[int]):
    """These people's Slack messages, posted and not a digest's, of proposals that wait
    (``_slack_live``)."""
    return _slack_live().filter(recipient_id__in=list(user_ids))


def _slack_live() -> QuerySet[Notification]:
    """The Slack messages, posted and not a digest's, that a change may redraw: those of
    proposals that wait for a decision, and those telling of a failure that waits for a
    retry (``_slack_messages_redraw``)."""
    return (
        Notification.objects.filter(
            channel=NotificationChannel.SLACK,
            status=NotificationStatus.SENT,
            updates__isnull=True,
            in_digest=False,
        )
        .filter(
            Q(proposal__status=ProposalStatus.PENDING_REVIEW)
            | Q(proposal__status=ProposalStatus.FAILED, kind=NotificationKind.FAILED)
        )
        .exclude(slack_ts="")
    )


def _slack_standing(user) -> tuple:
    """What a Slack message offers its reader turns on, besides its proposal: whether they
    may be shown proposals, whether a group of theirs must use a second factor a press does
    not ask for, and their permissions."""
    return (
        may_not_read(user),
        slack_lacks_second_factor(user),
        frozenset(user.get_all_permissions()),
    )


def _slack_drawn_from(proposal: Proposal, claim: tuple[str, datetime] | None) -> tuple:
    """What a Slack message says of its proposal turns on, besides its reader: whether and in
    which round it waits, the approvals counted in that round and how many it needs, when it
    last changed (an approval counted, a re-assessment: ``updated_at``, as the API says it),
    and who is on it until when (``claim``: as the message shows it, None if nobody)."""
    return (
        proposal.status,
        proposal.review_round,
        proposal.approvals_this_round,
        proposal.required_approvals,
        proposal.updated_at,
        claim,
    )


def _claim_shown(claim: Claim | None, *, now: datetime) -> tuple[str, datetime] | None:
    """A claim as a message drawn ``now`` shows it (``proposal_messages``): who, until when."""
    if claim is None or not claim.is_live(now):
        return None
    return claim.user.get_username(), claim.lapses_at


def _moved_as_it_went(drawn: tuple, found: tuple) -> str:
    """What changed of a proposal between a message's drawing (``drawn``) and its recording
    (``found``), both ``_slack_drawn_from``; "" if nothing did."""
    if drawn == found:
        return ""
    _, _, approvals, required, _, claim = found
    said = []
    if approvals != drawn[2]:
        said.append(f"an approval counted as it went; it waits for {required - approvals} more")
    if claim != drawn[5]:
        said.append(
            f"a claim made as it went: {claim[0]} is on it"
            if claim
            else "its claim given back or lapsed as it went"
        )
    return "; ".join(said) or "a change to the proposal (a re-assessment, say), made as it went"


def _slack_messages_changed_as_they_went(
    sent: Sequence[Notification], *, proposals: dict[int, Proposal]
) -> None:
    """In the transaction that records these Slack messages sent: each drawn as its reader
    stood (``drawn_for``) or as its proposal was (``drawn_from``) before a change made since
    is updated, once; a digest (``in_digest``, ``drawn_for`` None) where one of its lines
    was drawn so, as its proposal was. ``proposals``: theirs, locked (``proposals_lock``), as
    a move, an approval counted, a claim or a re-assessment locks them; their readers' rows
    locked here, as a change to what they may do locks them (``slack_messages_follow_people``);
    and each drawn as the ledger or the guardrails refused its approval, or not, before a
    change made since (``_approvals_refused_now``: a cap saved, a move on its figures or its
    account approved, or no longer to run), whose own update read the messages sent before
    this one was. A change committed before is read here; one committed after finds these
    messages sent, and updates them itself."""
    if not sent:
        return
    # NO KEY: as a save of theirs locks them; a row naming them (a decision, a message) waits
    # for neither.
    people = {
        user.pk: user
        for user in get_user_model()
        .objects.select_for_update(no_key=True)
        .filter(pk__in={n.recipient_id for n in sent})
        .order_by("pk")
    }
    stopped_now = _agents_stopped_now(sent)
    refused_now = _approvals_refused_now(sent)
    # Claims are taken and given back under their proposal's lock, held here.
    claims = {
        claim.proposal_id: claim
        for claim in Claim.objects.select_related("user").filter(
            proposal_id__in={n.proposal_id for n in sent}
        )
    }
    now = timezone.now()
    about = {}
    for n in sent:
        said = []
        proposal = proposals.get(n.proposal_id)
        if proposal is not None:
            # A digest's lines do not say who is on a proposal.
            claim = None if n.in_digest else _claim_shown(claims.get(n.proposal_id), now=now)
            said.append(_moved_as_it_went(n.drawn_from, _slack_drawn_from(proposal, claim)))
        # A digest's lines offer no buttons: what its reader may do draws nothing there.
        standing = _slack_standing(people[n.recipient_id]) if n.recipient_id in people else None
        if n.drawn_for is not None and standing is not None and standing != n.drawn_for:
            said.append("a change to what its reader may do, made as it went")
        if n.pk in stopped_now and stopped_now[n.pk] != n.drawn_stopped:
            agent = n.proposal.agent.name
            said.append(
                f"agent {agent} stopped as it went"
                if stopped_now[n.pk]
                else f"agent {agent} started again as it went"
            )
        if n.pk in refused_now and refused_now[n.pk] != n.drawn_refused:
            said.append(_refusal_moved_said(n.drawn_refused, refused_now[n.pk]))
        if any(said):
            about[n.pk] = "; ".join(filter(None, said))
    if about:
        _slack_messages_update(
            proposal_ids={n.proposal_id for n in sent if n.pk in about},
            now=now,
            about=lambda message: about[message.pk],
            pk__in=list(about),
        )


def _agents_stopped_now(sent: Sequence[Notification]) -> dict[int, str]:
    """By message (a single one, drawn with ``drawn_stopped``), why its proposal may not be
    let run now (``agent_stopped``), or "": its agent held (``agents_hold``), as stopping it
    locks it (a save of it, or ``slack_messages_follow_agents`` for its accounts), so that a
    stop committed before is read here, and one committed after finds the message sent."""
    followed = [n for n in sent if hasattr(n, "drawn_stopped")]
    if not followed:
        return {}
    agents_hold(n.proposal.agent_id for n in followed)
    agents = Agent.objects.in_bulk({n.proposal.agent_id for n in followed})
    for n in followed:
        n.proposal.agent = agents.get(n.proposal.agent_id, n.proposal.agent)
    accounts = agent_accounts_of([n.proposal for n in followed])
    return {n.pk: agent_stopped(n.proposal, accounts) for n in followed}


# What the ledger refuses of approving a proposal as proposed (``LedgerAhead.refusal``, ""
# if nothing), and the guardrails (their reasons, none if nothing): whether its Slack message
# offers Approve, and why not.
ApprovalRefused = tuple[str, tuple[str, ...]]


def _approval_refused_as_read(
    proposal: Proposal, *, gone: Gone, guarded: Guarded
) -> ApprovalRefused | None:
    """What the ledger and the guardrails refuse of approving ``proposal``, as read for the
    messages of a chunk (``gone``, ``guarded``: ``_send``'s) and drawn from; None where they
    were not read of it (it no longer waits)."""
    if proposal.pk not in gone or proposal.pk not in guarded:
        return None
    return gone[proposal.pk].refused_as_proposed, tuple(guarded[proposal.pk])


def _approvals_refused_now(sent: Sequence[Notification]) -> dict[int, ApprovalRefused]:
    """By message (a single one, drawn with ``drawn_refused``), what the ledger and the
    guardrails refuse of approving its proposal now, as proposed (as its message was drawn
    from it). Its account and the campaigns the guardrails read are held first (``FOR
    SHARE``), as a save of a cap or a strategy lock, an approval, an evaluation and an
    execution lock them to change what they refuse, so that a change committed before is
    read here, and one committed after finds the message sent, and updates it itself
    (``slack_messages_follow_guardrails``, ``slack_messages_follow_moves_ahead``, whose task
    is sent once the move that locked the campaigns commits). Four statements at most, for a
    whole chunk: the accounts, the campaigns, and the moves approved ahead as the ledger and
    the guardrails count them."""
    followed = [n for n in sent if hasattr(n, "drawn_refused")]
    if not followed:
        return {}
    caps = {
        account.pk: account.max_total_daily_budget
        for account in rows_read_held(
            Account.objects.filter(pk__in={n.proposal.account_id for n in followed})
            .only("pk", "max_total_daily_budget")
            .order_by("pk"),
            lock="SHARE",
        )
    }
    judged: dict[int, Proposal] = {}
    for n in followed:
        if n.proposal_id not in judged and n.proposal.account_id in caps:
            proposal = copy.copy(n.proposal)
            proposal.account = copy.copy(n.proposal.account)
            proposal.account.max_total_daily_budget = caps[proposal.account_id]
            judged[proposal.pk] = proposal
    if not judged:
        return {}
    waiting = list(judged.values())
    campaigns = guardrail_campaigns(waiting, held=True)
    ledger = LedgerAhead.ahead_of(waiting, campaigns)
    guarded = _guardrails_judged(waiting, campaigns)
    refused = {
        proposal.pk: (
            ledger.refusal(proposal)
            if action_types.named(proposal.action_type).ledger_may_refuse
            else "",
            guarded[proposal.pk].reasons,
        )
        for proposal in waiting
    }
    return {n.pk: refused[n.proposal_id] for n in followed if n.proposal_id in refused}


def _refusal_moved_said(drawn: ApprovalRefused, found: ApprovalRefused) -> str:
    """What changed of what refuses a message's approval between its drawing and its
    recording: "its approval refused by a guardrail as it went", "… by the hard ceiling of
    the policy that routed it …" (``refused_by``: a policy's hard ceiling is no guardrail)."""
    said = []
    for kind, was, now in zip(("ledger", "guardrails"), drawn, found, strict=True):
        if was == now:
            continue
        if kind == "ledger":
            was_by = now_by = "the ledger"
        else:
            was_by, now_by = refused_by(was), refused_by(now)
        if not was:
            said.append(f"its approval refused by {now_by} as it went")
        elif not now:
            said.append(f"its approval no longer refused by {was_by} as it went")
        elif was_by == now_by:
            refuse = "refuse" if " and " in now_by else "refuses"
            said.append(f"why {now_by} {refuse} its approval changed as it went")
        else:
            said.append(f"its approval refused by {now_by}, not {was_by}, as it went")
    return "; ".join(said)


def slack_messages_follow_people(*, user_ids: Sequence[int], about: str) -> None:
    """In the transaction that changed what these people may do with a proposal (a second
    factor required of a group of theirs or no longer, their groups or permissions changed,
    their staff status or their account's activity changed): once it commits, their Slack
    messages of proposals that wait are redrawn as they would be sent now, by a task
    (``REDRAW_SLACK_MESSAGES``), without waiting for a press or for the proposal to move.
    Nothing is sent for people with no such message, and one task for each kind of change
    however many times the transaction names them (``_redraw_once_committed``)."""
    user_ids = sorted({pk for pk in user_ids if pk is not None})
    if not user_ids:
        return
    with transaction.atomic():
        # As a message's sender locks them to record it sent (``_slack_messages_changed_as_
        # they_went``): one recorded before is seen here, one recorded after sees the change.
        list(
            get_user_model()
            .objects.select_for_update(no_key=True)
            .filter(pk__in=user_ids)
            .order_by("pk")
            .values_list("pk")
        )
        if _live_slack_messages(user_ids).exists():
            _redraw_once_committed(user_ids, about)


def slack_messages_follow_agents(
    *, agent_ids: Sequence[int], about: str, account_ids: Sequence[int] | None = None
) -> None:
    """In the transaction that stopped these agents (deactivated, or an account taken away
    from them: ``account_ids``, their proposals on those alone) or started them again: once
    it commits, the Slack messages of their proposals that wait are redrawn as they would be
    sent now (no Approve while the agent may not act, and why; Approve back once it may), by
    a task (``REDRAW_SLACK_MESSAGES``), without waiting for a press to be refused or for the
    proposal to move. Nothing is sent where no such message is; one task for each kind of
    change however many times the transaction names them (``_redraw_once_committed``)."""
    agent_ids = sorted({pk for pk in agent_ids if pk is not None})
    if not agent_ids:
        return
    with transaction.atomic():
        # As a message's sender holds them to record it sent (``_agents_stopped_now``): one
        # recorded before is seen here, one recorded after reads the change. (A save of the
        # agent holds it already.)
        list(
            Agent.objects.select_for_update(no_key=True)
            .filter(pk__in=agent_ids)
            .order_by("pk")
            .values_list("pk")
        )
        proposal_ids = _waiting_with_slack_messages(agent_ids, account_ids)
        if proposal_ids:
            _redraw_once_committed([], about, proposal_ids=proposal_ids)


def slack_messages_follow_kill_switch(*, about: str, covered: Sequence[KillSwitch]) -> None:
    """In the transaction that engaged, released or moved a switch (``about``: the save, in
    words, as each update records it; ``covered``: the switch as it covered things before
    the save and as it covers them now, where engaged then or now): once it commits, the
    Slack messages it made untrue are redrawn as they would be sent now, by a task
    (``REDRAW_SLACK_MESSAGES``). Those of proposals that wait whose risk or reasons it
    raised, which said it engaged (their risk lowered as it is released, their reasons
    "released since"); and those telling of a failure on what it covered, which say which
    switches a retry runs past. The others say nothing of it. Nothing is sent where no such
    message is."""
    if not covered or not slack_on():
        return
    names = frozenset().union(*map(kill_switch_names, covered))
    live = _slack_live()
    if all(then.scope != KillSwitchScope.GLOBAL for then in covered):
        scopes = [_covered_by(then) for then in covered]
        live = live.filter(functools.reduce(operator.or_, scopes))
    proposal_ids = set(
        live.filter(proposal__status=ProposalStatus.FAILED).values_list("proposal_id", flat=True)
    )
    for pk, reasons, findings in (
        Proposal.objects.filter(
            pk__in=live.filter(proposal__status=ProposalStatus.PENDING_REVIEW).values("proposal_id")
        )
        .values_list("pk", "verdict_reasons", "guardrail_findings")
        .iterator()
    ):
        said = [*(reasons or []), *((findings or {}).get("review") or [])]
        if any(str(reason).startswith(name) for reason in said for name in names):
            proposal_ids.add(pk)
    if proposal_ids:
        _redraw_once_committed([], about, proposal_ids=sorted(proposal_ids))


def _covered_by(switch: KillSwitch) -> Q:
    """The messages of proposals on what ``switch``, on one account or one channel, covers."""
    if switch.scope == KillSwitchScope.ACCOUNT:
        return Q(proposal__account_id=switch.account_id)
    return Q(proposal__account__channel=switch.channel)


def _waiting_with_slack_messages(
    agent_ids: Sequence[int], account_ids: Sequence[int] | None
) -> list[int]:
    """The ids of these agents' proposals (on these accounts) that wait, for a decision or
    for a retry, with a Slack message posted and not a digest's (``_slack_live``)."""
    live = _slack_live().filter(proposal__agent_id__in=agent_ids)
    if account_ids is not None:
        live = live.filter(proposal__account_id__in=list(account_ids))
    return sorted(set(live.values_list("proposal_id", flat=True)))


# The people, and the proposals, whose Slack messages are to be redrawn once the transaction
# under way commits, by what changed; this thread's (or async task's), as its database
# connection is.
_to_redraw = Local()


def _redraw_once_committed(
    user_ids: Sequence[int], about: str, *, proposal_ids: Sequence[int] = ()
) -> None:
    """One save in the console names a person several times (their row, then their groups,
    which Django's admin saves as a removal and an addition), and each redrew their messages
    alike: Slack was sent the same message up to three times, and the proposal's page listed
    each. Gathered here, they are sent as one task for each kind of change, by the first of
    the transaction's callbacks to run once it commits. A transaction rolled back forgets its
    callbacks but not what it gathered: the next commit sends it, a redraw of things as they
    are then, which says nothing untrue."""
    pending = getattr(_to_redraw, "pending", None)
    if pending is None:
        pending = _to_redraw.pending = defaultdict(set)
    if user_ids:
        pending[(about, "user_ids")].update(user_ids)
    if proposal_ids:
        pending[(about, "proposal_ids")].update(proposal_ids)
    after_commit(_redraw_gathered)


def _redraw_gathered() -> None:
    pending = getattr(_to_redraw, "pending", None)
    _to_redraw.pending = None
    for (about, whose), ids in (pending or {}).items():
        if whose == "user_ids":
            app.send_task(REDRAW_SLACK_MESSAGES, (sorted(ids), about))
        else:
            app.send_task(REDRAW_SLACK_MESSAGES, ([], about), {whose: sorted(ids)})


def outcome_text(proposal: Proposal, *, reader=None) -> str:
    """What became of a proposal that left review, as its messages say it: the sentences its
    page says beside its status (``approvals.selectors.how_review_ended``), to the second,
    and what followed (how it ran, a person's retry); ``reader``: the person whose message
    says it, if known."""
    decisions = list(
        Decision.objects.filter(proposal=proposal, review_round=proposal.review_round)
        .select_related("reviewer")
        .order_by("created_at", "pk")
    )
    approvals = [d for d in decisions if d.outcome == DecisionOutcome.APPROVE]
    approvers = [d.reviewer.get_username() for d in approvals]
    rejections = [d for d in decisions if d.outcome == DecisionOutcome.REJECT]
    if proposal.status == S.REJECTED and rejections:
        return f"{rejected_said(rejections[-1])}."
    if proposal.status in APPROVED_TO_RUN_STATUSES and approvals:
        return (
            f"{approved_said(approvers_said(approvals), approvals[-1].created_at)}"
            f"{_as_its_agent_proposed(proposal, decisions)}{retried_text(proposal)}"
            f"{_how_it_ran(proposal)}"
        )
    if (
        proposal.status in APPROVED_TO_RUN_STATUSES
        and proposal.verdict_outcome == VerdictOutcome.AUTO_APPROVE
    ):  # its policy let it run (its failure was told, and a person may have retried it)
        return f"{let_run_said(proposal)}{retried_text(proposal)}{_how_it_ran(proposal)}"
    if proposal.status == S.PENDING_REVIEW and not in_review_window(proposal):
        # Past its window, before the sweep expired it: as it will read once expired.
        return review_window_ran_out(proposal, approvers)
    if proposal.status == S.PENDING_REVIEW:  # waits still, in a later round than the message's
        edits = [d.reviewer for d in decisions if d.edited_payload is not None]
        why = f"Edited by {edits[0].get_username()}" if edits else "Sent back to a person"
        if edits and reader is not None and edits[0].pk == reader.pk:
            # Its editor is told of it in no new message (``reviews_restarted_tell``): theirs
            # says how far the new round has come, their approval its first.
            return f"{why} since this message: its review started again. " + approvals_so_far(
                approvers, proposal
            )
        return (
            f"{why} since this message: its review started again, in a new message showing "
            "it as it now is."
        )
    if proposal.status == S.EXPIRED:
        # As its page and its agent's feedback say it (approvals.selectors).
        return f"Expired. {review_window_ran_out(proposal, approvers)}"
    if proposal.status == S.SUPERSEDED:
        # As its page says it (approvals.selectors): who approved it, and what ended it.
        return f"Superseded. {superseded_said(proposal, approvals)}"
    withdrawal = withdrawal_seen(proposal)
    if withdrawal is not None:
        # As its page says it, and why: the note on one line, a reviewer's as an agent's (a
        # line break in it would start a line of the message's own, "operator approved it
        # at …"); the agent's own words quoted, as its page shows them.
        said = one_line(withdrawal.note)
        if withdrawal.by_reviewer:
            return f"{withdrawn_said(withdrawal)}" + (f": {said}" if said else ".")
        return f"{withdrawn_said(withdrawal)}" + (f": “{said}”" if said else ".")
    return f"Now {proposal.get_status_display().lower()}."


def _as_its_agent_proposed(proposal: Proposal, decisions: Sequence[Decision]) -> str:
    """After an approval with edits that changed what the proposal says it does: what its
    agent had proposed ("; its agent proposed “move 280.00 USD/day …”"), which the message
    said before its update shows the edited action. "" otherwise."""
    if not any(d.edited_payload is not None for d in decisions):
        return ""
    proposed = as_proposed(proposal).summary
    return f"; its agent proposed “{proposed}”" if proposed != proposal.summary else ""


def _how_it_ran(proposal: Proposal) -> str:
    """The end of an approval's words once it has run: "; executed at 2026-12-04 22:00:07
    UTC.", or "; its execution failed at …: the endpoint answered HTTP 400: …"; else "."."""
    if proposal.status == S.EXECUTED and proposal.executed_at:
        return f"; executed at {console_time(proposal.executed_at)}."
    if proposal.status == S.FAILED:
        last = proposal.executions.order_by("attempt").last()
        if last is not None:
            when = console_time(last.finished_at or last.started_at)
            error = last.error.rstrip(".") or "no reason was given"
            return f"; its execution failed at {when}: {error}."
        return "; its execution failed."
    return "."


def progress_text(proposal: Proposal) -> str:
    """How far a proposal that still waits has come: the approvals it has of those its policy
    asks for, and whose. Empty before anyone approved."""
    approvers = list(
        Decision.objects.filter(
            proposal=proposal,
            review_round=proposal.review_round,
            outcome=DecisionOutcome.APPROVE,
        )
        .order_by("created_at")
        .values_list("reviewer__username", flat=True)
    )
    return approvals_so_far(approvers, proposal)


def still_waits(notification: Notification) -> bool:
    proposal = notification.proposal
    return in_review_window(proposal) and proposal.review_round == notification.review_round


def _backoff(attempts: int, *, retry_after: float | None = None) -> timedelta:
    """How long until the next attempt: doubling each time, and never sooner than the
    channel asked (a rate limit's Retry-After); an hour at most."""
    seconds = settings.NOTIFICATION_RETRY_SECONDS * 2 ** (attempts - 1)
    return timedelta(seconds=min(max(seconds, retry_after or 0), 3600))


def notifications_deliver(
    *, notification_ids: Sequence[int], others_due: bool = False
) -> list[Notification]:
    """Make one attempt to send each of these notifications that is due, and record how each
    went; with ``others_due``, while fewer than ``DELIVERY_CHUNK``, the others due longest
    too (a backlog of messages, one recorded by each submission, goes out in chunks: each
    leased in one transaction and recorded in another, not two for every message), and,
    having taken a whole chunk, the next, until none is left or ``SENDING_TIME`` has passed
    (and a task is sent for what may be left, to send beside this one). Returns those
    attempted or ended, as recorded; not those that were not due (sent, given up, held, or
    being sent by another worker). A message about a proposal that no longer waits is not
    sent: the person would be told of something that is not so."""
    until = timezone.now() + SENDING_TIME
    done: list[Notification] = []
    while True:
        chunk, whole = _deliver_chunk(notification_ids, others_due=others_due)
        done += chunk
        if not (others_due and whole) or timezone.now() >= until:
            return done
        notification_ids = []


def _deliver_chunk(
    notification_ids: Sequence[int], *, others_due: bool
) -> tuple[list[Notification], bool]:
    """One chunk of ``notifications_deliver``: those attempted or ended, and whether it was
    a whole chunk, all sent in time."""
    now = timezone.now()
    # Read first, with no transaction (no write turn on SQLite): another task took them.
    if not _any_due(None if others_due else notification_ids, now=now):
        return [], False
    with transaction.atomic():
        ids = _due_locked(notification_ids, now=now, most=DELIVERY_CHUNK)
        if others_due and len(ids) < DELIVERY_CHUNK:
            ids += _due_locked(None, now=now, most=DELIVERY_CHUNK - len(ids), besides=ids)
        if not ids:  # another task took them between the first read and the lock
            return [], False
        whole = len(ids) == DELIVERY_CHUNK
        if others_due and whole:
            after_commit(_deliver_more)  # once these are leased
        found = Notification.objects.select_related(
            "proposal__agent", "proposal__account", "recipient", "route"
        ).in_bulk(ids)
        taken = [found[pk] for pk in ids]
        # One of each person, so their permissions are read once for all their messages.
        people = {}
        for notification in taken:
            notification.recipient = people.setdefault(
                notification.recipient_id, notification.recipient
            )
        # Attempts leased by a sender that stopped before recording them (their lease ran out).
        _interruptions_record([n for n in taken if n.attempts > len(n.log)], now=now)
        ended, to_send = [], []
        for notification in taken:
            refusal = _not_to_send(notification)
            if not refusal and _attempts_left(notification, now=now):
                to_send.append(notification)
                continue
            notification.status = (
                NotificationStatus.NOT_SENT if refusal else NotificationStatus.FAILED
            )
            notification.next_attempt_at = None  # it has ended: nothing more is tried
            refusal = refusal or "gave up"
            notification.log = [*notification.log, {"at": now.isoformat(), "result": refusal}]
            notification._change_reason = refusal_note(notification, refusal)
            ended.append(notification)
        if ended:
            update_with_history(
                Notification,
                [(n, {"status": n.status, "log": n.log, "next_attempt_at": None}) for n in ended],
                actor=NOTIFICATIONS_ACTOR,
            )
            _messages_not_updated(ended, now=now)
        leased_until = now + LEASE
        _lease(to_send, until=leased_until)

    outcomes: list[tuple[Notification, str]] = []
    try:
        left = _send(to_send, outcomes, stop_at=now + SENDING_TIME)
    finally:  # what went is recorded whatever stopped the rest
        recorded = _attempts_record(outcomes, leased_until=leased_until)
    if left:  # out of time: given back, due at once, for the next task
        given_back = _lease_give_back(left, leased_until=leased_until)
        if given_back:
            app.send_task(DELIVER_NOTIFICATIONS, (given_back,))
    return ended + recorded, whole and not left


def _attempts_left(notification: Notification, *, now: datetime) -> bool:
    """Whether a message not yet sent is tried again: up to ``NOTIFICATION_MAX_ATTEMPTS``;
    an update of a Slack message for ``UPDATE_TRIED_FOR`` however many attempts that takes."""
    if notification.attempts < settings.NOTIFICATION_MAX_ATTEMPTS:
        return True
    return (
        notification.kind == NotificationKind.UPDATE
        and now - notification.created_at < UPDATE_TRIED_FOR
    )


def _messages_not_updated(updates: Sequence[Notification], *, now: datetime) -> None:
    """In the transaction that records these messages ended: of the updates among them that
    failed for good (Slack refused them for good, or they were tried for
    ``UPDATE_TRIED_FOR``), the Slack message each was to update has its record say so, and
    why, where an operator reads who was told (its status, the last entry of its log, the
    proposal's page): "Sent, but its message could not be updated", as it may show what is
    no longer so (Approve on a proposal rejected since). A later update that lands says so
    in turn (``_messages_updated_again``)."""
    failed = _updates_by_message(updates, NotificationStatus.FAILED)
    if not failed:
        return
    originals = _messages_locked(failed)
    # One updated since this update was recorded says what is so already (an update says
    # what is so as it lands).
    landed = set(
        Notification.objects.filter(
            updates_id__in=list(failed),
            kind=NotificationKind.UPDATE,
            status=NotificationStatus.SENT,
            sent_at__gte=min(n.created_at for n in failed.values()),
        ).values_list("updates_id", "sent_at")
    )
    originals = [
        original
        for original in originals
        if not any(pk == original.pk and sent_at >= failed[pk].created_at for pk, sent_at in landed)
    ]
    if not originals:
        return
    for original in originals:
        update = failed[original.pk]
        why = (update.log[-1].get("result") if update.log else "") or "gave up"
        if why == "gave up":
            why = f"gave up after {update.attempts} attempts"
        original.log = [
            *original.log,
            {"at": now.isoformat(), "result": f"{NOT_UPDATED}: {why}", "not_updated": update.pk},
        ]
        original._change_reason = (
            f"Its Slack message to {update.recipient.get_username()} could not be updated "
            f"(for {update.about or 'a change'}): {why}. It may show what is no longer so; "
            "the proposal's page says what is."
        )
    _logs_recorded(originals)


def _messages_updated_again(updates: Sequence[Notification], *, now: datetime) -> None:
    """In the transaction that records these updates sent: a message whose record said it
    could not be updated (``_messages_not_updated``) says it was updated since."""
    sent = _updates_by_message(updates, NotificationStatus.SENT)
    if not sent:
        return
    originals = [original for original in _messages_locked(sent) if original.not_updated]
    for original in originals:
        update = sent[original.pk]
        original.log = [
            *original.log,
            {"at": now.isoformat(), "result": UPDATED_SINCE, "updated": update.pk},
        ]
        original._change_reason = (
            f"Its Slack message to {update.recipient.get_username()} was updated since it "
            f"could not be (for {update.about or 'a change'}): it says what is so again."
        )
    _logs_recorded(originals)


def _updates_by_message(
    updates: Sequence[Notification], status: NotificationStatus
) -> dict[int, Notification]:
    """The updates among these that ended in ``status``, by the message each updates."""
    return {
        n.updates_id: n
        for n in updates
        if n.kind == NotificationKind.UPDATE and n.status == status and n.updates_id is not None
    }


def _messages_locked(message_ids: Iterable[int]) -> list[Notification]:
    """These messages' records, locked in id order to note in their log what became of an
    update of them (``no_key``: an update row naming one may still be written meanwhile)."""
    return list(
        Notification.objects.select_for_update(no_key=True)
        .filter(pk__in=list(message_ids))
        .order_by("pk")
    )


def _logs_recorded(messages: Sequence[Notification]) -> None:
    if messages:
        update_with_history(
            Notification, [(n, {"log": n.log}) for n in messages], actor=NOTIFICATIONS_ACTOR
        )


def _any_due(notification_ids: Sequence[int] | None, *, now: datetime) -> bool:
    """Whether any of these notifications (None: any at all) is due: in SQL written out, as
    most tasks of a backlog find theirs sent already by the task before (the ORM takes longer
    to build the question than the database to answer it)."""
    if notification_ids is not None and not notification_ids:
        return False
    where = "status = %s AND next_attempt_at <= %s"
    params = [NotificationStatus.PENDING, connection.ops.adapt_datetimefield_value(now)]
    if notification_ids is not None:
        where += f" AND id IN ({', '.join(['%s'] * len(notification_ids))})"
        params += notification_ids
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {connection.ops.quote_name(Notification._meta.db_table)} "
            f"WHERE {where} LIMIT 1",
            params,
        )
        return cursor.fetchone() is not None


def _due_locked(
    notification_ids: Sequence[int] | None,
    *,
    now: datetime,
    most: int,
    besides: Sequence[int] = (),
) -> list[int]:
    """Of these notifications (or, with None, of all but ``besides``, due longest first), the
    ids of at most ``most`` that are due, locked (those another transaction holds skipped),
    in SQL written out: under a backlog most tasks find theirs taken by another, and the ORM
    built this question, with the rows' every column and their proposals', agents',
    accounts' and recipients', in longer than the rest of such a task."""
    if notification_ids is not None and not notification_ids:
        return []
    quote = connection.ops.quote_name
    where, params = (
        ["status = %s", "next_attempt_at <= %s"],
        [
            NotificationStatus.PENDING,
            connection.ops.adapt_datetimefield_value(now),
        ],
    )
    if notification_ids is not None:
        where.append(f"id IN ({', '.join(['%s'] * len(notification_ids))})")
        params += notification_ids
        order = "id"
    else:
        if besides:
            where.append(f"id NOT IN ({', '.join(['%s'] * len(besides))})")
            params += besides
        order = "next_attempt_at, id"
    skip_locked = connection.features.has_select_for_update_skip_locked
    lock = " FOR UPDATE SKIP LOCKED" if skip_locked else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {quote(Notification._meta.db_table)} WHERE {' AND '.join(where)} "
            f"ORDER BY {order} LIMIT %s{lock}",
            [*params, most],
        )
        return [row[0] for row in cursor.fetchall()]


def _lease(notifications: Sequence[Notification], *, until: datetime) -> None:
    """Lease the notifications for an attempt, counted: due again ``until`` (a sender that
    stops before recording it leaves it to whoever takes it then). The lease of an attempt is
    not a change of the message: no history (the attempt's end has)."""
    for notification in notifications:
        notification.attempts += 1
        notification.next_attempt_at = until
    rows_update(Notification, notifications, ("attempts", "next_attempt_at"))


def _lease_give_back(notifications: Sequence[Notification], *, leased_until: datetime) -> list[int]:
    """Give back the leases of notifications left unsent (out of time): their attempt
    uncounted, due at once; only where the lease taken (``leased_until``) still stands, not
    over another sender's that took them after it ran out. Returns the ids given back."""
    with transaction.atomic():
        ids = list(
            Notification.objects.select_for_update()
            .filter(
                pk__in=[n.pk for n in notifications],
                status=NotificationStatus.PENDING,
                next_attempt_at=leased_until,
            )
            .values_list("pk", flat=True)
        )
        Notification.objects.filter(pk__in=ids).update(
            attempts=F("attempts") - 1, next_attempt_at=timezone.now()
        )
    return ids


def _send(
    notifications: Sequence[Notification],
    outcomes: list[tuple[Notification, str]],
    *,
    stop_at: datetime,
) -> list[Notification]:
    """Send each notification on its channel, with no transaction open, until ``stop_at``
    (well within the lease), the first whatever the time (a task that spent its time reading
    sends one, not none); set on each what became of it and add it, with what its channel
    said, to ``outcomes``. Returns those left for lack of time."""
    # Messages to send, read at once; an update is read as it goes (``_send_one``), as is a
    # kill switch's message, which is about no proposal.
    about_proposals = [n for n in notifications if n.kind not in KILL_SWITCH_KINDS]
    new = [n for n in about_proposals if n.kind != NotificationKind.UPDATE]
    messages = dict(
        zip(
            (n.pk for n in new),
            proposal_messages([(n.proposal, n.kind) for n in new], now=timezone.now()),
            strict=True,
        )
    )
    reviewers = reviewers_by_proposal([n.proposal for n in new])
    # Whether each no longer applies (a policy's ceiling moved since) or the ledger refuses
    # it as proposed (whether Approve is offered), read once for all its readers, not again
    # for each person told of it.
    gone = no_longer_applies_each(
        {
            n.proposal_id: n.proposal
            for n in new
            if n.proposal.status in (S.PENDING_REVIEW, S.FAILED)
        }.values()
    )
    # Whether a guardrail refuses each one that waits now (whether Approve is offered: a
    # message sent, or an update of one) or each failed one (whether its retry is), read once
    # for all their readers, as ``gone`` is.
    guarded = guardrail_blocks_counting_approved(
        {
            n.proposal_id: n.proposal
            for n in about_proposals
            if (n.kind != NotificationKind.FAILED and n.proposal.status == S.PENDING_REVIEW)
            or (n.kind == NotificationKind.FAILED and n.proposal.status == S.FAILED)
        }.values(),
        lock=False,
    )
    digests_updated: dict[tuple[str, str], Sent] = {}
    updated = Updated(held={n.pk for n in notifications})
    for position, notification in enumerate(notifications):
        if position and timezone.now() >= stop_at:
            return list(notifications[position:])
        # Read again as it goes: the proposal may have stopped waiting since it was leased
        # (superseded, decided, withdrawn), and the person would be told what is not so.
        stopped = _stopped_waiting(notification)
        if stopped:
            notification.status, notification.next_attempt_at = NotificationStatus.NOT_SENT, None
            notification.log = [
                *notification.log,
                {"at": timezone.now().isoformat(), "result": stopped},
            ]
            outcomes.append((notification, stopped))
            continue
        retry_after = None
        try:
            sent = _send_one(
                notification,
                messages.get(notification.pk),
                reviewers=reviewers.get(notification.proposal_id, []),
                gone=gone,
                guarded=guarded,
                digests_updated=digests_updated,
                updated=updated,
            )
            delivered, retry, result, where = True, False, sent.result, sent.where
        except ChannelError as error:
            delivered, retry, result, where = False, not error.permanent, str(error), {}
            retry_after, sent = error.retry_after, None
        except Exception as error:  # a fault of ours, not the channel's answer: tried again
            logger.exception("Notification %s was not sent", notification.pk)
            delivered, retry, result, where = False, True, f"{type(error).__name__}: {error}", {}
            sent = None

        finished = timezone.now()
        entry = {"at": finished.isoformat(), "result": result}
        if sent is not None and sent.said:  # what an update made its message say
            entry["says"] = sent.said
        notification.log = [*notification.log, entry]
        # Sent, or given up: no next attempt (its lease is not one); retried: when it is.
        notification.next_attempt_at = None
        if sent is not None and sent.unchanged:  # its message says it already: not sent
            notification.status = NotificationStatus.NOT_SENT
        elif delivered:
            notification.status, notification.sent_at = NotificationStatus.SENT, finished
            notification.slack_channel = where.get("channel", notification.slack_channel)
            notification.slack_ts = where.get("ts", notification.slack_ts)
        elif retry and _attempts_left(notification, now=finished):
            notification.next_attempt_at = finished + _backoff(
                notification.attempts, retry_after=retry_after
            )
        else:
            notification.status = NotificationStatus.FAILED
        outcomes.append((notification, result))
    return []


def _send_one(
    notification: Notification,
    message,
    *,
    reviewers: list[int],
    gone: Gone,
    guarded: Guarded,
    digests_updated: dict[tuple[str, str], Sent],
    updated: Updated,
) -> Sent:
    """Send a message, or the update of one sent earlier (``_update_says``); a digest's, what
    became of each proposal it lists (``digests_updated``: the digests already updated by
    this sender, and what Slack said). An update is read as it goes and sent again while what
    it said no longer holds once Slack has it (``_until_it_holds``)."""
    channel = channel_for(notification.channel)
    if notification.kind in KILL_SWITCH_KINDS:
        route_name = notification.route.name if notification.route_id else ""
        return channel.send_switch_message(
            recipient=notification.recipient,
            message=replace(
                switch_message(notification),
                told_because=told_because(kind=notification.kind, route_name=route_name),
            ),
        )
    if notification.kind != NotificationKind.UPDATE:
        if notification.kind == NotificationKind.FAILED:
            # It asks no decision: it says whether its reader may retry it, on its page.
            may_decide = (
                retry_refusal(
                    notification.recipient, notification.proposal, gone=gone, guarded=guarded
                )
                is None
            )
            message = failure_as_told(message, may_retry=may_decide)
        else:
            if notification.channel == NotificationChannel.SLACK:
                # Read again where it is recorded sent: a change made since redraws it. The
                # proposal as it was leased, read before the message was drawn from it (a
                # change in between is read as one made since); its claim, as drawn.
                notification.drawn_for = _slack_standing(notification.recipient)
                notification.drawn_from = _slack_drawn_from(
                    notification.proposal,
                    (message.claimed_by, message.claimed_until) if message.claimed_by else None,
                )
                # Whether it may be let run (its agent stopped: no Approve), read before it
                # is drawn (``_as_told_to``): a change in between is read as one made since.
                notification.drawn_stopped = agent_stopped(notification.proposal)
                # What the ledger and the guardrails refuse of approving it, as drawn.
                drawn_refused = _approval_refused_as_read(
                    notification.proposal, gone=gone, guarded=guarded
                )
                if drawn_refused is not None:
                    notification.drawn_refused = drawn_refused
            may_decide, message = _as_told_to(
                notification.recipient,
                notification.proposal,
                message,
                reviewers,
                kind=notification.kind,
                route=notification.route,
                channel=notification.channel,
                gone=gone,
                guarded=guarded,
            )
        route_name = notification.route.name if notification.route_id else ""
        message = replace(
            message, told_because=told_because(kind=notification.kind, route_name=route_name)
        )
        return channel.send(
            recipient=notification.recipient, message=message, may_decide=may_decide
        )
    sent_as = {"channel": notification.slack_channel, "ts": notification.slack_ts}
    barred = may_not_read(notification.recipient)
    if barred:  # told nothing more, and what it showed taken back
        text = f"This message is no longer shown: {notification.recipient.get_username()} {barred}."
        return channel.retract(where=sent_as, text=text)
    if notification.updates.in_digest:
        # A digest's proposals decided together (a bulk approval) have an update each, in
        # the same chunk: the digest read once, after all of them were committed, says it
        # for all, in one call rather than one a proposal (Slack limits calls a minute).
        digest = (notification.slack_channel, notification.slack_ts)
        if digest not in digests_updated:
            lines = digest_lines(notification.updates)
            digests_updated[digest] = _unless_said_already(
                notification,
                said=channel.digest_update_said(lines=lines),
                text="",
                updated=updated,
            ) or updated.landed(
                notification,
                _until_it_holds(
                    lambda: digest_lines(notification.updates),
                    lambda lines: channel.update_digest(where=sent_as, lines=lines),
                    another_to_come=lambda: _another_update_to_come(notification),
                    first=lines,
                ),
            )
        return digests_updated[digest]
    says = _update_says(notification, guarded=guarded)
    return _unless_said_already(
        notification, said=channel.update_said(**says), text=says["text"], updated=updated
    ) or updated.landed(
        notification,
        _until_it_holds(
            # What the guardrails refuse as read for the chunk: a change to them since has
            # an update of its own to come (``slack_messages_follow_guardrails``).
            lambda: _update_says(notification, guarded=guarded),
            lambda says: channel.update(where=sent_as, **says),
            another_to_come=lambda: _another_update_to_come(notification),
            first=says,
        ),
    )


@dataclass
class Updated:
    """What the updates sent by one sender (a chunk) made each Slack message say, by where it
    is (channel, ts), and which updates the sender holds (leased: none of them is another's
    on its way)."""

    held: set[int]
    # By where the message is: what it says, for what the update that said it was, and when.
    said: dict[tuple[str, str], tuple[str, str, datetime | None]] = field(default_factory=dict)

    def landed(self, notification: Notification, sent: Sent) -> Sent:
        """Note what ``sent``, the update ``notification``, made its message say; returns it."""
        if sent.said and not sent.unchanged:
            where = (notification.slack_channel, notification.slack_ts)
            self.said[where] = (sent.said, notification.about, timezone.now())
        return sent


def _unless_said_already(
    notification: Notification, *, said: str, text: str, updated: Updated
) -> Sent | None:
    """An update of a Slack message that would make it say what it says already (the same
    words and buttons, ``said``), as the update that landed last made it say: not sent
    (Slack was sent "executed at …" twice, once by the decision's update read after it ran,
    and once by the execution's), its result saying so, and when and by which update the
    message came to say it. None where it is to be sent: it says something new, or what the
    message says now is not known for sure (none of its updates landed; one failed for good
    since; another sender's update of it is on its way, which may land after the last)."""
    where = (notification.slack_channel, notification.slack_ts)
    if not said or not where[1]:
        return None
    last = updated.said.get(where)
    if last is None:
        if notification.updates.not_updated:
            return None
        others = Notification.objects.filter(
            kind=NotificationKind.UPDATE, slack_channel=where[0], slack_ts=where[1]
        ).exclude(pk__in=[notification.pk, *updated.held])
        if any(
            other.attempts > len(other.log)
            for other in others.filter(status=NotificationStatus.PENDING).only("attempts", "log")
        ):
            return None
        landed = others.filter(status=NotificationStatus.SENT).order_by("-sent_at", "-pk").first()
        if landed is None or not landed.log:
            return None
        last = (landed.log[-1].get("says", ""), landed.about, landed.sent_at)
    says, about, at = last
    if says != said:
        return None
    quoted = f": “{one_line(text)}”" if text else ""
    return Sent(
        f"not sent: its message says this already, as updated at {console_time(at)} for "
        f"{about or 'a change'}{quoted}",
        said=said,
        unchanged=True,
    )


# How many times one sender sends an update of a message at most. Two senders may update one
# message at once (a decision recorded while another sender's update of it was under way):
# the one that read first may land last, and the message would say what is no longer so.
UPDATE_SENDS = 3


def _until_it_holds(read, send, *, another_to_come, first=None) -> Sent:
    """Send what a message says now (``read``), and read it again once Slack has it: while
    that is no longer what was sent, send it again (``UPDATE_SENDS`` at most; a later change
    has an update of its own to come), unless another update of the message, not yet taken
    by a sender, is to come (``another_to_come()``): it reads the change as it goes, and
    lands after this one. Sent again, the result says how many times it went and why (the
    log, the proposal's "Who was told"): Slack was sent each. ``first``: what it says, if
    read already."""
    says = read() if first is None else first
    sent, times = send(says), 1
    while times < UPDATE_SENDS:
        said, says = says, read()
        if says == said or another_to_come():
            break
        sent, times = send(says), times + 1
    if times == 1:
        return sent
    return replace(sent, result=f"{sent.result}; {sent_again_text(times)}")


def sent_again_text(times: int) -> str:
    """Said of an update sent ``times`` times by one sender (``_until_it_holds``)."""
    return (
        f"sent {times} times: what it says changed while it went (another sender's update "
        "may have landed before it)"
    )


# How soon another update of a message must be due for one that finds its proposal moved as it
# went to leave it to that one (``_another_update_to_come``): one left to back off for longer
# (Slack out of reach a while) would leave the message saying what is no longer so till then.
ANOTHER_UPDATE_SOON = timedelta(minutes=1)


def _another_update_to_come(notification: Notification) -> bool:
    """Whether another update of the message ``notification`` updates is recorded, not yet
    taken by a sender (pending, not leased: its attempts all logged) and due within
    ``ANOTHER_UPDATE_SOON``: whoever takes it reads the proposal after this, and Slack has it
    after this one."""
    others = (
        Notification.objects.filter(
            updates_id=notification.updates_id,
            kind=NotificationKind.UPDATE,
            status=NotificationStatus.PENDING,
            next_attempt_at__lte=timezone.now() + ANOTHER_UPDATE_SOON,
        )
        .exclude(pk=notification.pk)
        .only("attempts", "log")
    )
    return any(other.attempts == len(other.log) for other in others)


def _as_told_to(
    recipient,
    proposal: Proposal,
    message: ProposalMessage,
    reviewers,
    *,
    kind: str = "",
    route: Route | None = None,
    channel: str = "",
    gone: Gone | None = None,
    guarded: Guarded | None = None,
) -> tuple[bool, ProposalMessage]:
    """Whether ``recipient`` may decide the proposal, and the message as told to them: to one
    who may not (one whose role does not decide its kind, the owner of its agent, one who
    approved), it waits for a decision, not theirs, saying why and who decides, and an
    escalation (``kind``) to a backup group (``route``'s) none of whose people
    may decide it says so; to one who may reject it but not let it run (its agent was
    stopped since, or a guardrail refuses it now: ``guarded``, if read for it already), it
    says why it cannot be approved, in the words its approval would be refused with, and
    offers no Approve; on Slack
    (``channel``), to one whose group must use a second factor, that a press there decides
    nothing, and it offers neither Approve nor Reject."""
    why_not = why_not_theirs(recipient, proposal, reviewers=reviewers)
    if why_not:
        message = addressed_to_one_who_may_not_decide(message, why_not)
        if kind == NotificationKind.ESCALATION and route is not None:
            message = replace(
                message, nobody_may_decide=_nobody_in_backup_may_decide(route, proposal, reviewers)
            )
        return False, message
    if channel == NotificationChannel.SLACK:
        lacking = slack_lacks_second_factor(recipient)
        if lacking:
            message = replace(
                message, decided_on_its_page=f"{lacking}: approve or reject it on its page."
            )
    refusal = act_refusal(recipient, proposal, Act.APPROVE, reviewers=reviewers, gone=gone)
    if refusal is None and proposal.status == S.PENDING_REVIEW:
        # As ``proposal_approve`` asks after the rules of who may act: a cap or a lock set
        # since it was made, or a cap whose headroom approvals ahead of it have used.
        if guarded is None or proposal.pk not in guarded:
            guarded = guardrail_blocks_counting_approved([proposal], lock=False)
        if guarded[proposal.pk]:
            refusal = guardrail_refusal(proposal.pk, guarded[proposal.pk])
    if refusal is not None:
        return True, replace(message, approval_refused=refusal.message)
    return True, message


def _nobody_in_backup_may_decide(route: Route, proposal: Proposal, reviewers) -> str:
    """That nobody in ``route``'s backup group may decide the proposal (an escalation to a
    group of auditors, say: its people are told it is overdue, and it waits on for a person
    who may), read as the message goes; "" if someone may, or the route names none now."""
    group = route.backup_group
    if group is None or who_may_decide(group_recipients(group), proposal, reviewers=reviewers):
        return ""
    return (
        f"Nobody in the backup group “{group.name}” may decide it: it still waits for a "
        "person who may."
    )


def _update_says(notification: Notification, *, guarded: Guarded | None = None) -> dict:
    """What an update of a proposal's message says, the proposal read as it is now: what
    became of it, or, while it still waits, how far it has come (the buttons kept for a
    person who may decide). The message keeps what it was sent as (waiting, a reminder, …).
    ``guarded``: what the guardrails refuse about it now, if read already (else read here)."""
    proposal = Proposal.objects.select_related("agent", "account").get(pk=notification.proposal_id)
    notification.proposal = proposal
    told = notification.updates
    if told.kind == NotificationKind.FAILED:
        return _failure_update_says(notification, proposal)
    [message] = proposal_messages([(proposal, told.kind)], now=timezone.now())
    message = replace(message, told_because=_told_because_of(notification))
    if not still_waits(notification):
        return {
            "text": outcome_text(proposal, reader=notification.recipient),
            "message": message,
            "ended_as": ended_as(proposal),
        }
    reviewers = reviewers_by_proposal([proposal])[proposal.pk]
    may_decide, message = _as_told_to(
        notification.recipient,
        proposal,
        message,
        reviewers,
        kind=notification.updates.kind,
        route=notification.route,
        channel=notification.channel,
        guarded=guarded,
    )
    return {
        "text": progress_text(proposal),
        "message": message,
        "still_waits": True,
        "may_decide": may_decide,
        "reader": notification.recipient.get_username(),
    }


def _told_because_of(update: Notification) -> str:
    """Why the reader of the message ``update`` updates is told, as the message said it when
    it went (its route's name as it is now, as an updated digest says it): an update redraws
    the whole message, and it ends as it did, not without the line that says why they get
    it."""
    route_name = update.route.name if update.route_id else ""
    return told_because(kind=update.updates.kind, route_name=route_name)


def _failure_update_says(notification: Notification, proposal: Proposal) -> dict:
    """What an update of a message saying its execution failed says: the failure it told of
    (not a later one), and, once a person sent it to run again, what became of it since, in
    place of the link to retry it."""
    told = notification.updates
    [message] = proposal_messages(
        [(proposal, told.kind)], now=timezone.now(), failed_by=told.created_at
    )
    message = replace(message, told_because=_told_because_of(notification))
    if no_longer_so(told, proposal):
        # Sent to run again since: what became of it, not what a retry would do.
        return {
            "text": outcome_text(proposal, reader=notification.recipient),
            "message": failure_as_told(message, may_retry=False),
            "ended_as": failure_ended_as(told, proposal),
        }
    may_retry = retry_refusal(notification.recipient, proposal) is None
    return {
        "text": "",
        "message": failure_as_told(message, may_retry=may_retry),
        "ended_as": message.headline,
        "may_decide": may_retry,
    }


def as_read_by(recipient, told: Sequence[Notification], messages: Sequence) -> list:
    """A digest's messages (``messages``, one for each of ``told``) as its reader reads them:
    the line of a proposal that waits for a decision they may not make says why, and who
    makes it, as a single message does (``_as_told_to``)."""
    waiting = [
        n.proposal
        for n in told
        if n.kind != NotificationKind.FAILED and n.proposal.status == S.PENDING_REVIEW
    ]
    reviewers = reviewers_by_proposal(waiting)
    # A failure's line says what a retry would do only to a reader who may retry it, as a
    # single message does (``retry_refusal``): what it asks read once for all of them.
    failed = [
        n.proposal
        for n in told
        if n.kind == NotificationKind.FAILED and n.proposal.status == S.FAILED
    ]
    gone = no_longer_applies_each(failed) if failed else {}
    guarded = guardrail_blocks_counting_approved(failed, lock=False) if failed else {}
    agent_accounts = agent_accounts_of(failed)
    may_retry = {
        proposal.pk: retry_refusal(
            recipient, proposal, gone=gone, guarded=guarded, agent_accounts=agent_accounts
        )
        is None
        for proposal in failed
    }
    read = []
    for n, message in zip(told, messages, strict=True):
        if n.proposal_id in reviewers:
            why = why_not_theirs(recipient, n.proposal, reviewers=reviewers[n.proposal_id])
            # As a single message to them is told (``_as_told_to``): the pause only.
            message = addressed_to_one_who_may_not_decide(message, why) if why else message
        elif message.failure is not None:
            message = failure_as_told(message, may_retry=may_retry.get(n.proposal_id, False))
        read.append(message)
    return read


def digest_lines(sent_in_digest: Notification) -> list[DigestLine]:
    """The proposals of the digest this message went in, as listed there (the messages that
    went with it), each as it is now: what became of it, or how far it has come. Read as the
    update goes, as a single message's is."""
    listed = list(
        Notification.objects.filter(
            recipient_id=sent_in_digest.recipient_id,
            channel=sent_in_digest.channel,
            slack_channel=sent_in_digest.slack_channel,
            slack_ts=sent_in_digest.slack_ts,
            in_digest=True,
            status=NotificationStatus.SENT,
            updates__isnull=True,
        )
        .select_related("proposal__agent", "proposal__account", "route")
        .order_by("created_at", "pk")
    )
    messages = as_read_by(
        sent_in_digest.recipient,
        listed,
        [
            # Why its reader is told, by each route, as the digest said it when it went.
            replace(
                message,
                told_because=told_because(
                    kind=n.kind, route_name=n.route.name if n.route_id else ""
                ),
            )
            for n, message in zip(
                listed,
                proposal_messages(
                    [(n.proposal, n.kind) for n in listed],
                    now=timezone.now(),
                    # A digest of failures tells of the failures recorded when it went, not a
                    # later one.
                    failed_by=sent_in_digest.sent_at,
                ),
                strict=True,
            )
        ],
    )
    return [
        _failure_digest_line(n, message, reader=sent_in_digest.recipient)
        if n.kind == NotificationKind.FAILED
        else DigestLine(message, progress=progress_text(n.proposal))
        if still_waits(n)
        else DigestLine(
            message,
            outcome=outcome_text(n.proposal, reader=sent_in_digest.recipient),
            ended_as=ended_as(n.proposal),
        )
        for n, message in zip(listed, messages, strict=True)
    ]


def _failure_digest_line(told: Notification, message, *, reader) -> DigestLine:
    """A failure as an updated digest of failures lists it: as it went while that failure
    stands; once a person sent it to run again, what became of it since, in the words of a
    single failure message's update."""
    if not no_longer_so(told, told.proposal):
        return DigestLine(message)
    return DigestLine(
        message,
        outcome=outcome_text(told.proposal, reader=reader),
        ended_as=failure_ended_as(told, told.proposal),
    )


def failure_ended_as(told: Notification, proposal: Proposal) -> str:
    """How an update of a message that told of a failure no longer standing is headed: sent
    to run again, or superseded as a person retried it (nothing was sent to run)."""
    if superseded_at_its_retry(told, proposal):
        return FAILED_THEN_SUPERSEDED
    return FAILED_THEN_SENT_AGAIN


# What an attempt changes on a notification: its lease ends, as a next attempt or none.
ATTEMPT_FIELDS = ("log", "status", "sent_at", "next_attempt_at", "slack_channel", "slack_ts")


def _attempts_record(
    outcomes: Sequence[tuple[Notification, str]], *, leased_until: datetime
) -> list[Notification]:
    """Record what became of each attempt, in one transaction; only where the attempt is
    still the latest and its lease (``leased_until``) still stands: a sender that outlived
    its lease must not undo what the sender that took the message after it recorded (this
    attempt interrupted, then its own). Those to be tried again are sent again when their
    time comes. Returns those recorded."""
    if not outcomes:
        return []
    with transaction.atomic():
        told_waits = [
            n
            for n, _ in outcomes
            if n.status == NotificationStatus.SENT
            and n.kind != NotificationKind.UPDATE
            and n.kind not in KILL_SWITCH_KINDS
        ]
        proposals = proposals_lock(told_waits)
        stopped = stopped_as_they_went(told_waits, proposals=proposals)
        latest = {
            pk: (attempts, lease)
            for pk, attempts, lease in Notification.objects.select_for_update()
            .filter(pk__in=[n.pk for n, _ in outcomes], status=NotificationStatus.PENDING)
            .values_list("pk", "attempts", "next_attempt_at")
        }
        recorded = [n for n, _ in outcomes if latest.get(n.pk) == (n.attempts, leased_until)]
        # The attempt's own entry says so too, where the proposal's page lists who was told:
        # "Sent" alone would read as telling of a proposal that waited.
        for notification in recorded:
            if notification.pk in stopped and notification.log:
                said = went_as_it_stopped(notification, stopped[notification.pk])
                notification.log = [*notification.log[:-1], {**notification.log[-1], "then": said}]
        for notification, result in outcomes:
            notification._change_reason = attempt_note(
                notification, result, stopped=stopped.get(notification.pk)
            )
        if recorded:
            update_with_history(
                Notification,
                [(n, {field: getattr(n, field) for field in ATTEMPT_FIELDS}) for n in recorded],
                actor=NOTIFICATIONS_ACTOR,
            )
        slack_messages_went_stale(recorded, stopped=stopped)
        now = timezone.now()
        _messages_not_updated(recorded, now=now)
        _messages_updated_again(recorded, now=now)
        _slack_messages_changed_as_they_went(
            [
                n
                for n in recorded
                if hasattr(n, "drawn_for")
                and n.status == NotificationStatus.SENT
                and n.pk not in stopped
            ],
            proposals=proposals,
        )
    retried = [n for n in recorded if n.status == NotificationStatus.PENDING]
    if retried:
        for notification in retried:
            countdown = (notification.next_attempt_at - timezone.now()).total_seconds()
            app.send_task(DELIVER_NOTIFICATIONS, ([notification.pk],), countdown=countdown)
    return recorded


def proposals_lock(told: Sequence[Notification]) -> dict[int, Proposal]:
    """In the caller's transaction, before it records messages that went: their proposals
    locked (as a move of a proposal, an approval counted, a claim taken or a re-assessment
    locks it, then reads the messages sent about it to update them), so that a change made
    while a message went out is seen here, or sees the message sent; by id, as they are.
    ``FOR NO KEY UPDATE``: it excludes those as ``FOR UPDATE`` does, but not a record written
    about the proposal meanwhile, whose reference checks the row (a cap save holding the
    account, recording its updates, while this waited for the account: a deadlock)."""
    return {
        proposal.pk: proposal
        for proposal in Proposal.objects.select_for_update(no_key=True, of=("self",))
        .filter(pk__in={n.proposal_id for n in told})
        .only(
            "status",
            "review_round",
            "approved_at",
            "approvals_this_round",
            "required_approvals",
            "updated_at",
        )
        .order_by("pk")
    }


def stopped_as_they_went(
    told_waits: Sequence[Notification], *, proposals: dict[int, Proposal] | None = None
) -> dict[int, Proposal]:
    """In the caller's transaction, before it records messages that went saying a proposal
    waits: their proposals locked first (``proposals_lock``, unless given, locked). Returns,
    by message, its proposal where it no longer waits for the message's round."""
    locked = proposals_lock(told_waits) if proposals is None else proposals
    return {
        n.pk: proposal
        for n in told_waits
        if (proposal := locked.get(n.proposal_id)) and no_longer_so(n, proposal)
    }


def slack_messages_went_stale(
    notifications: Sequence[Notification], *, stopped: dict[int, Proposal]
) -> None:
    """Have the Slack messages among ``notifications`` that went out as their proposal
    stopped waiting (``stopped``, by message) say what became of it; in the transaction that
    records them sent."""
    went_stale = [n for n in notifications if n.pk in stopped]
    if went_stale:
        _slack_messages_update(
            proposal_ids={n.proposal_id for n in went_stale},
            now=timezone.now(),
            about={n.proposal_id: _ended_about(stopped[n.pk]) for n in went_stale},
            pk__in=[n.pk for n in went_stale],
        )


def attempt_note(
    notification: Notification, result: str, *, stopped: Proposal | None = None
) -> str:
    """What an attempt to send a message did, in an auditor's words, for its history;
    ``stopped``: its proposal, where it stopped waiting while the message went out."""
    who = notification.recipient.get_username()
    by = notification.how_told
    if notification.status == NotificationStatus.NOT_SENT:
        return refusal_note(notification, result)
    if notification.status == NotificationStatus.SENT and stopped is not None:
        return f"Sent to {who} {by}: {result}; {went_as_it_stopped(notification, stopped)}."
    if notification.status == NotificationStatus.SENT:
        return f"Sent to {who} {by}: {result}"
    if notification.status == NotificationStatus.FAILED and notification.kind == UPDATE:
        return (
            f"Could not update {who}'s Slack message, gave up: {result}; it may show what is "
            "no longer so."
        )
    if notification.status == NotificationStatus.FAILED:
        return f"Failed to reach {who} {by}, gave up: {result}"
    return f"Not yet reached {who} {by} (attempt {notification.attempts}), retried: {result}"


def went_as_it_stopped(notification: Notification, stopped: Proposal) -> str:
    """What became of a message's proposal as the message went out (it stopped waiting), and
    what became of the message: "the proposal became superseded as it went, which an email
    cannot take back"."""
    if notification.kind == NotificationKind.FAILED and superseded_at_its_retry(
        notification, stopped
    ):
        then = (
            "the proposal became superseded as it went: a person retrying it found its target "
            "had moved, and nothing was sent to run"
        )
    elif notification.kind == NotificationKind.FAILED:
        then = (
            "a person sent the proposal to run again as it went (it is now "
            f"{stopped.get_status_display().lower()})"
        )
    elif stopped.status == S.PENDING_REVIEW:
        then = "a new review round of the proposal began as it went"
    else:
        then = f"the proposal became {stopped.get_status_display().lower()} as it went"
    if notification.channel == NotificationChannel.SLACK:
        return f"{then}, and the message is updated to say so"
    return f"{then}, which an email cannot take back"


def refusal_note(notification: Notification, refusal: str) -> str:
    """Why a message was not sent, and to whom, for its history."""
    who = notification.recipient.get_username()
    by = notification.how_told
    why = refusal.removeprefix("not sent: ")
    # An interrupted attempt may have gone: "not sent" alone would say nobody was told.
    maybe = f"; {notification.may_have_reached}" if notification.may_have_reached else ""
    if notification.status == NotificationStatus.FAILED and notification.kind == UPDATE:
        return (
            f"Could not update {who}'s Slack message after {notification.attempts} attempts: "
            f"{why}{maybe}; it may show what is no longer so."
        )
    if notification.status == NotificationStatus.FAILED:
        return f"Failed to reach {who} {by} after {notification.attempts} attempts: {why}{maybe}"
    return f"Not sent to {who} {by}: {why}{maybe}"


def _stopped_waiting(notification: Notification) -> str:
    """``no_longer_so``, the proposal read as it is now (an update of a message sent
    says what became of it, whatever that is)."""
    if notification.kind == NotificationKind.UPDATE:
        return ""
    if notification.kind in KILL_SWITCH_KINDS:
        return switch_message_not_so(notification)
    proposal = (
        Proposal.objects.filter(pk=notification.proposal_id)
        .only("status", "review_round", "approved_at")
        .get()
    )
    return no_longer_so(notification, proposal)


def _not_to_send(notification: Notification) -> str:
    """Why a notification is no longer to be sent, or "" if it still is."""
    if notification.kind == NotificationKind.UPDATE:
        return ""
    if notification.kind in KILL_SWITCH_KINDS:
        stopped = switch_message_not_so(notification)
    else:
        stopped = no_longer_so(notification, notification.proposal)
    if stopped:
        return stopped
    if not channel_for(notification.channel).is_configured():
        return f"not sent: {notification.get_channel_display()} is not configured"
    # Told as the person is now, not as they were when the message was recorded.
    recipient = notification.recipient
    barred = may_not_read(recipient)
    if barred:
        return f"not sent: {recipient.get_username()} {barred}"
    if notification.channel == NotificationChannel.EMAIL and not recipient.email:
        return f"not sent: {recipient.get_username()} has no email address"
    return ""


def may_not_read(recipient) -> str:
    """Why a person may not be shown proposals now, in words ("was deactivated", "may not see
    proposals in the console"), or "". A message shows what the console would: only to
    an active person who may read proposals there; an update of one sent earlier to a person
    who may no longer takes back what it showed."""
    if not recipient.is_active:
        return "was deactivated"
    if not recipient.has_perm(READ_PERMISSION):
        return "may not see proposals in the console"
    # The console (Django's admin) lets in staff alone: taking a person's staff status away
    # is how an administrator shuts them out of it, groups and all.
    if not recipient.is_staff:
        return "may not log in to the console"
    return ""


def notifications_resend_due() -> int:
    """Send again what a lost task or a stopped worker left: each message whose attempt's
    lease has run out with nothing recorded (its sender stopped between taking it and
    recording what became of it; the task that takes it records the attempt interrupted
    first, since it may have gone), and each message due for longer than a lease that no task
    came for (lost with a broker or a worker). Returns how many were sent."""
    now = timezone.now()
    lapsed = _lapsed(now=now)
    overdue = list(
        Notification.objects.filter(
            status=NotificationStatus.PENDING, next_attempt_at__lte=now - LEASE
        )
        .exclude(pk__in=lapsed)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[: SWEEP_BATCH - len(lapsed)]
    )
    Notification.objects.filter(pk__in=overdue).update(next_attempt_at=now)
    due = lapsed + overdue
    send_each(DELIVER_NOTIFICATIONS, chunked(due, DELIVERY_CHUNK))
    return len(due)


def _lapsed(*, now: datetime) -> list[int]:
    """The ids of messages waiting to be sent whose attempt's lease ran out before its
    sender recorded what became of it (one result in the log for each attempt recorded), in
    SQL written out (the log's length is asked of the database), longest lapsed first."""
    length = "jsonb_array_length" if connection.vendor == "postgresql" else "json_array_length"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {connection.ops.quote_name(Notification._meta.db_table)} "
            f"WHERE status = %s AND next_attempt_at <= %s AND attempts > {length}(log) "
            "ORDER BY next_attempt_at, id LIMIT %s",
            [
                NotificationStatus.PENDING,
                connection.ops.adapt_datetimefield_value(now),
                SWEEP_BATCH,
            ],
        )
        return [pk for (pk,) in cursor.fetchall()]


def _interruptions_record(notifications: Sequence[Notification], *, now: datetime) -> None:
    """Record, in the caller's transaction (which holds them locked), each attempt of these
    messages whose sender stopped before recording it: its sender may have sent it, and a
    mail server or Slack cannot be asked, so the record says so rather than nothing."""
    if not notifications:
        return
    for notification in notifications:
        missing = range(len(notification.log) + 1, notification.attempts + 1)
        notification.log = [
            *notification.log,
            *({"at": now.isoformat(), "result": INTERRUPTED} for _ in missing),
        ]
        notification._change_reason = interrupted_note(notification, attempts=missing)
    update_with_history(
        Notification, [(n, {"log": n.log}) for n in notifications], actor=NOTIFICATIONS_ACTOR
    )


def interrupted_note(notification: Notification, *, attempts: range) -> str:
    """What a sender found of attempts whose sender stopped, for the message's history."""
    who = notification.recipient.get_username()
    by = notification.how_told
    which = "Attempt" if len(attempts) == 1 else "Attempts"
    which += " " + " and ".join(str(attempt) for attempt in attempts)
    return (
        f"{which} to reach {who} {by} interrupted: its sender stopped before recording "
        "whether it went, so it may have reached them; to be sent again."
    )


def _waiting_locked(proposal_id: int, *, else_said: str) -> Proposal:
    """The proposal, locked, if it waits for review; else a refusal saying what it is and
    ``else_said``."""
    proposal = Proposal.objects.select_for_update().filter(pk=proposal_id).first()
    if proposal is None:
        raise NotFound(f"There is no proposal #{proposal_id}.")
    if proposal.status != S.PENDING_REVIEW:
        raise Conflict(
            f"Proposal #{proposal.pk} is {proposal.get_status_display().lower()}; {else_said}."
        )
    return proposal


def proposal_claim(*, proposal_id: int, user) -> Claim:
    """“I'll take it”: ``user`` is on the proposal until the claim lapses. Only someone who
    may decide it now takes it; taking one another person holds live is refused (they are on
    it); it stops nobody from deciding."""
    now = timezone.now()
    with transaction.atomic(), acting_as(Actor.for_user(user)):
        proposal = _waiting_locked(proposal_id, else_said="there is nothing to take on")
        # Taken on by one who may decide it: reject it, if not let it run (its agent stopped).
        check_may_act(user, proposal, Act.REJECT)
        claim = Claim.objects.filter(proposal=proposal).select_related("user").first()
        if claim is not None and claim.is_live(now) and claim.user_id != user.pk:
            # Not opening on the name: a message line capitalises its first letter.
            raise Conflict(
                f"Proposal #{proposal.pk} is taken: {claim.user.get_username()} is on it "
                f"until {claim.lapses_text}."
            )
        claim = claim or Claim(proposal=proposal)
        claim.user = user
        claim.claimed_at = now
        claim.lapses_at = now + timedelta(minutes=settings.CLAIM_MINUTES)
        claim.save()
        # "On it", wherever it was told.
        slack_messages_claimed(
            proposal_id=proposal.pk, about=f"a claim: {user.get_username()} is on it"
        )
    return claim


def proposal_release(*, proposal_id: int, user) -> None:
    """Give a claim back before it lapses, while the proposal waits: once it no longer does,
    nobody is on it, and there is nothing to give back (its messages already say what became
    of it)."""
    with transaction.atomic(), acting_as(Actor.for_user(user)):
        # The proposal first, then its claim, as taking one locks them.
        _waiting_locked(
            proposal_id, else_said="nobody is on it now, and there is nothing to give back"
        )
        claim = Claim.objects.select_for_update().filter(proposal_id=proposal_id).first()
        if claim is None or claim.user_id != user.pk or not claim.is_live():
            raise Conflict(f"You are not on proposal #{proposal_id}.")
        claim.lapses_at = timezone.now()
        claim.save(update_fields=["lapses_at"])
        slack_messages_claimed(
            proposal_id=proposal_id, about=f"a claim given back by {user.get_username()}"
        )


def reached_by_choose(*, user, email: bool, slack: bool) -> ReachedBy:
    """``user`` chooses the channels they are told on (theirs alone to choose); the first
    choice creates the record."""
    with transaction.atomic(), acting_as(Actor.for_user(user)):
        chosen = ReachedBy.objects.select_for_update().filter(user=user).first()
        if chosen is None:
            chosen, created = ReachedBy.objects.get_or_create(
                user=user, defaults={"email": email, "slack": slack}
            )
            if created:
                return chosen
        chosen.email, chosen.slack = email, slack
        chosen.save()
    return chosen


def routes_deactivate(*, routes: Sequence[Route], user, reason: str) -> list[Route]:
    """Stop routes telling anyone (kept, with their history, and active again by a change),
    ``reason`` kept in each one's history, as every change to a route is. Returns those that
    were active."""
    stopped = []
    with transaction.atomic(), acting_as(Actor.for_user(user)):
        for route in Route.objects.select_for_update().filter(
            pk__in=[r.pk for r in routes], is_active=True
        ):
            route.is_active = False
            route._change_reason = reason
            route.save()
            stopped.append(route)
    return stopped
