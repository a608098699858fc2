"""Submitting, assessing, evaluating and withdrawing proposals."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from functools import partial
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Max, OuterRef, Q, Subquery
from django.utils import timezone

from approvals import action_types
from approvals.action_types import ActionType, Assessment
from approvals.action_types.base import numeric_effects
from approvals.models import Agent, Proposal, ProposalStatus, VerdictOutcome, WithdrawnBy
from approvals.services import hooks
from approvals.services.acts import (
    NO_LONGER_APPLIED_AS_PROPOSED,
    NOT_APPLIED_AS_PROPOSED,
    Act,
    LedgerAhead,
    ReviewWindowClosed,
    act_refusal,
    refused_once_run,
    review_window_closed,
)
from approvals.services.expiry import proposals_expire_locked
from approvals.services.lifecycle import (
    by_a_reviewer,
    proposal_lock,
    proposal_transition,
    proposals_create_routed,
)
from audit.actors import Actor
from audit.history import rows_numbered
from hitlproject.errors import Busy, Conflict, DomainError, InvalidInput, NotFound, TooLarge
from hitlproject.row_locks import rows_held, rows_read_held
from hitlproject.validation import invalid_input, invalid_under
from hitlproject.vocabulary import (
    ATTEMPT_NUMBERS,
    ENGINE_COULD_NOT_EVALUATE,
    NO_SURE_ANSWER,
    UNDER_WAY_STATUSES,
    UNSURE_ANSWERS_SAID,
    DecidingCeilingFinding,
    HardCeilingFinding,
    how_many,
    unsure_answers_said,
)
from ledger.models import Account, Campaign, campaign_field_label
from ledger.services import accounts_lock
from policies.engine import Facts, Rule, Verdict, evaluate, factor_from_text, factor_text
from policies.models import Policy
from policies.services import (
    KILL_SWITCH_FINDING,
    CappedSpends,
    EvaluationContext,
    GuardrailFindings,
    brand_findings_ahead,
    brand_guideline_findings,
    changes_spend,
    deciding_rule,
    in_force,
    in_force_read_once,
    kill_switch_finding_now,
    kill_switch_gone,
    kill_switch_named_in,
    policy_verdict,
    reads_account_total,
    rule_from_policy,
    rules_in_force,
    version_number,
)
from policies.services import guardrail_blocks as policy_guardrail_blocks

logger = logging.getLogger(__name__)

VERDICT_STATUS = {
    VerdictOutcome.AUTO_APPROVE: ProposalStatus.APPROVED,
    VerdictOutcome.REVIEW: ProposalStatus.PENDING_REVIEW,
    VerdictOutcome.BLOCK: ProposalStatus.BLOCKED,
}


@dataclass(frozen=True)
class AssessedAction:
    """An action checked against the ledger: its type, clean payload and derived facts."""

    action_type: ActionType
    account: Account
    payload: dict[str, Any]
    assessment: Assessment
    snapshot: dict[str, dict[str, str]]
    campaigns: dict[str, Campaign]
    effects: dict[str, Fraction]  # exact: see ``numeric_effects``
    # The values the touched campaign fields would have after it (``proposed_state``), as
    # worked out against ``campaigns``, the campaigns ``snapshot`` recorded.
    proposed: dict[str, dict[str, Any]]

    def proposal_fields(self) -> dict[str, Any]:
        """The proposal's columns that hold what the platform derived."""
        return {
            "summary": self.assessment.summary[:300],
            "magnitude": self.assessment.magnitude,
            "magnitude_label": self.assessment.magnitude_label[:300],
            "amount": self.assessment.amount,
            "target_snapshot": self.snapshot,
            "effects": {target: factor_text(factor) for target, factor in self.effects.items()},
        }


def campaigns_for(
    *, account: Account, action_type: ActionType, payload: dict[str, Any], lock: bool = False
) -> dict[str, Campaign]:
    """The campaigns an action touches, by external id; locked in id order when asked."""
    queryset = Campaign.objects.filter(
        account=account, external_id__in=list(action_type.campaign_fields(payload))
    ).order_by("pk")
    if lock:
        queryset = queryset.select_for_update()
    return {campaign.external_id: campaign for campaign in queryset}


def ledger_snapshot(
    *, action_type: ActionType, payload: dict[str, Any], campaigns: dict[str, Campaign]
) -> dict[str, dict[str, str | None]]:
    return {
        external_id: {
            field: ledger_value(getattr(campaigns[external_id], field)) for field in fields
        }
        for external_id, fields in action_type.snapshot_fields(payload).items()
    }


def campaigns_as_recorded(snapshot: Mapping[str, Mapping[str, str | None]]) -> dict[str, Campaign]:
    """Unsaved campaigns holding a snapshot's values, to work out an action against them."""
    campaigns = {}
    for external_id, values in snapshot.items():
        campaign = Campaign(external_id=external_id)
        for name, value in values.items():
            value = ledger_value_recorded(value)
            field = Campaign._meta.get_field(name)
            setattr(campaign, name, None if value is None else field.to_python(value))
        campaigns[external_id] = campaign
    return campaigns


def ledger_value(value: Any) -> str | None:
    """A ledger field's value as snapshots record it: its text, or None (JSON null) where
    nothing is set (a target CPA never set), not the text "None"."""
    return None if value is None else str(value)


def ledger_value_recorded(value: str | None) -> str | None:
    """A snapshot's value as ``ledger_value`` gives it: releases before recorded a field
    that was not set as the text "None"."""
    return None if value == "None" else value


def action_validate(*, action_type_name: str, raw_payload: Any) -> tuple[ActionType, dict]:
    """The action type and its payload, checked for form (not yet against the ledger)."""
    action_type = action_types.get(action_type_name)
    if action_type is None:
        raise invalid_input({"action_type": [action_types.unknown_text(action_type_name)]})
    try:
        return action_type, action_type.validate_payload(raw_payload)
    except InvalidInput as error:
        raise invalid_under("payload", error) from error


def action_assess(*, account: Account, action_type_name: str, raw_payload: Any) -> AssessedAction:
    """Validate an action's payload and derive its magnitude from the platform's ledger."""
    action_type, payload = action_validate(
        action_type_name=action_type_name, raw_payload=raw_payload
    )
    campaigns = campaigns_for(account=account, action_type=action_type, payload=payload)
    return assessed_against(
        action_type=action_type, account=account, payload=payload, campaigns=campaigns
    )


def assessed_against(
    *,
    action_type: ActionType,
    account: Account,
    payload: dict[str, Any],
    campaigns: Mapping[str, Campaign],
) -> AssessedAction:
    """A valid payload checked against the campaigns it names, as the ledger has them (those
    of ``campaigns`` it names; a missing one is refused), and assessed."""
    campaigns = {
        id_: campaigns[id_] for id_ in action_type.campaign_fields(payload) if id_ in campaigns
    }
    missing = {
        field: [f"No campaign “{value}” on account “{account.external_id}”."]
        for field, value in payload.items()
        if isinstance(value, str) and field.endswith("campaign") and value not in campaigns
    }
    if missing:
        raise invalid_input({"payload": missing})
    try:
        action_type.check(payload, campaigns)
    except InvalidInput as error:
        raise invalid_under("payload", error) from error
    nothing = action_type.changes_nothing(payload, campaigns)
    if nothing:
        raise invalid_input({"payload": nothing})
    return assessed_from_ledger(
        action_type=action_type, account=account, payload=payload, campaigns=campaigns
    )


def assessed_from_ledger(
    *,
    action_type: ActionType,
    account: Account,
    payload: dict[str, Any],
    campaigns: dict[str, Campaign],
) -> AssessedAction:
    """What the platform derives from a valid payload and the campaigns as they are."""
    proposed = action_type.proposed_state(payload, campaigns)
    return AssessedAction(
        action_type=action_type,
        account=account,
        payload=payload,
        assessment=action_type.assess(payload, campaigns, account),
        snapshot=ledger_snapshot(action_type=action_type, payload=payload, campaigns=campaigns),
        campaigns=campaigns,
        effects=numeric_effects(campaigns, proposed),
        proposed=proposed,
    )


def verdict_for(
    *,
    assessed: AssessedAction,
    agent: Agent,
    proposal_id: int | None = None,
    rules: list[Rule] | None = None,
    context: EvaluationContext | None = None,
    changed_first: Sequence[str] = (),
) -> tuple[Verdict, GuardrailFindings]:
    """The verdict on an assessed action now, from ``context`` if a batch has read it, else
    from what is read for this action alone (under ``rules``, a draft set, if given; not
    counting ``proposal_id``'s own moves), with ``changed_first`` (``changed_first_reviews``)
    sending it to a person. If the engine fails, a human decides."""

    # A batch's context, read once for all its items; else policies.services reads one.
    judge = (
        context.verdict
        if context
        else partial(policy_verdict, rules=rules, proposal_id=proposal_id)
    )

    def evaluate() -> tuple[Verdict, GuardrailFindings]:
        return judge(
            action_type=assessed.action_type,
            account=assessed.account,
            agent=agent,
            payload=assessed.payload,
            campaigns=assessed.campaigns,
            magnitude=assessed.assessment.magnitude,
            magnitude_label=assessed.assessment.magnitude_label,
            amount=assessed.assessment.amount,
            effects=assessed.effects,
            changed_first=changed_first,
        )

    return verdict_or_engine_failure(
        evaluate,
        action_type=assessed.action_type.name,
        rules=context.rules if context else rules,
        subject=f"proposal #{proposal_id}" if proposal_id else "a proposal",
        reads_database=context is None,
    )


FieldKey = tuple[int, str, str]  # (account id, campaign external id, field)


def campaign_fields_changed(
    *, account_id: int, action_type: ActionType, payload: dict[str, Any]
) -> set[FieldKey]:
    """The campaign fields an action changes, as (account id, campaign, field)."""
    return {
        (account_id, campaign, name)
        for campaign, names in action_type.campaign_fields(payload).items()
        for name in names
    }


class Ahead(NamedTuple):
    """A proposal approved or executing that changes a field first: its id and its agent."""

    pk: int
    agent_id: int


def changed_first(
    keys: Iterable[FieldKey], *, besides: Iterable[int] = ()
) -> dict[FieldKey, Ahead]:
    """Of these campaign fields, those a proposal already approved or executing (but
    ``besides``) changes: by field, the first such proposal. One read of the proposals
    under way (on PostgreSQL, only those made against these campaigns)."""
    keys = set(keys)
    if not keys:
        return {}
    accounts = {account_id for account_id, _, _ in keys}
    # In SQL written out, by status alone (through the queue's index: the few proposals
    # under way), their accounts told apart here: every value-setting submission asks, the
    # ORM took longer to build the question than the database to answer it, and with the
    # account in it SQLite read every proposal the account ever made.
    statuses = sorted(UNDER_WAY_STATUSES)
    sql = (
        f"SELECT id, account_id, action_type, payload, target_snapshot, agent_id FROM "
        f"{connection.ops.quote_name(Proposal._meta.db_table)} "
        f"WHERE status IN ({', '.join(['%s'] * len(statuses))})"
    )
    params: list[Any] = [*statuses]
    if connection.vendor == "postgresql":  # only those made against these campaigns
        sql += " AND jsonb_exists_any(target_snapshot, %s::text[])"
        params.append(sorted({campaign for _, campaign, _ in keys}))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ahead = sorted(cursor.fetchall())
    besides = set(besides)
    changed: dict[FieldKey, Ahead] = {}
    for pk, account_id, name, payload, snapshot, agent_id in ahead:
        if account_id not in accounts or pk in besides:
            continue
        action_type = action_types.named(name)  # one since retired changes nothing
        payload, snapshot = (
            json.loads(v) if isinstance(v, str) else v for v in (payload, snapshot)
        )
        clashes = [
            key
            for key in campaign_fields_changed(
                account_id=account_id, action_type=action_type, payload=payload
            )
            if key in keys and key not in changed
        ]
        for key in fields_moved(action_type, payload, snapshot, clashes):
            changed[key] = Ahead(pk, agent_id)
    return changed


def fields_moved(
    action_type: ActionType,
    payload: dict[str, Any],
    snapshot: Mapping[str, Mapping[str, str | None]],
    fields: Iterable[FieldKey],
    *,
    after: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[FieldKey]:
    """Of ``fields`` an action changes, those it moves from the value its ``snapshot`` saw:
    one it sets to the value it already had (a 0% change) moves nothing once it runs, and
    supersedes nothing. ``after``: the values it sets, where already worked out against the
    campaigns the snapshot was taken of (``AssessedAction.proposed``); else worked out
    against the snapshot's values (unsaved campaigns made for it, which a batch of a
    thousand paid 25–30 ms for)."""
    if after is None:
        try:
            after = action_type.proposed_state(payload, campaigns_as_recorded(snapshot))
        except (KeyError, TypeError, ArithmeticError):  # a snapshot an earlier release left
            after = {}
    return [
        key
        for key in fields
        if key[2] not in after.get(key[1], {})
        or not _same_value(after[key[1]][key[2]], snapshot.get(key[1], {}).get(key[2]))
    ]


def _same_value(set_to: Any, was: str | None) -> bool:
    """Whether a value an action sets is the one a field had (as text or a number)."""
    was = ledger_value_recorded(was)
    if set_to is None or was is None:
        return set_to is None and was is None
    try:
        return Decimal(str(set_to)) == Decimal(was)
    except ArithmeticError:
        return str(set_to) == was


@dataclass(frozen=True)
class EarlierItem:
    """An item of the same batch, approved ahead of another: by its index in the batch as
    sent (its proposal has no id yet when the ones after it are routed), and its proposal,
    which a person reads of by id once it has one (``proposals_submit`` numbers them where a
    reason names one)."""

    index: int
    proposal: Proposal | None = None


def _changed_first_clash(
    action_type: ActionType, fields: set[FieldKey], changed: Mapping[FieldKey, object]
) -> FieldKey | None:
    """The field of an action that sets values that a proposal approved before it changes
    first, the first in order, which ``changed_first_reviews`` names; None if none."""
    if not action_type.sets_values:
        return None
    return next((key for key in sorted(fields) if key in changed), None)


def changed_first_reviews(
    action_type: ActionType,
    fields: set[FieldKey],
    changed: Mapping[FieldKey, Ahead | EarlierItem | int],
    *,
    agent_id: int | None = None,
) -> list[str]:
    """Why an action that sets values (``fields``: ``campaign_fields_changed``) waits for a
    person: a proposal approved before it (``Ahead``, an id, or an earlier item of its batch)
    changes one of its fields first, and once that one executes this one would be
    superseded. Written for ``agent_id``'s agent, where given: another agent's proposal is
    not named (an agent sees only its own), and an earlier item of its batch is named as its
    agent sent it; else, for a person who reads every proposal, each is named by id.
    Approving it now would tell its agent "approved" for what will never run; it waits for a
    person instead, who decides it only if that one does not run (the console holds its
    approval back until then)."""
    clash = _changed_first_clash(action_type, fields, changed)
    if clash is None:
        return []
    other, words = changed[clash], f"{clash[1]}'s {campaign_field_label(clash[2])}"
    if isinstance(other, EarlierItem) and agent_id is None and other.proposal is not None:
        other = other.proposal.pk or other  # numbered: by its id, as any proposal ahead
    if isinstance(other, EarlierItem):
        who = f"Item {other.index + 1} of this batch (index {other.index}), approved,"
    elif isinstance(other, Ahead) and agent_id is not None and other.agent_id != agent_id:
        who = "Another agent's proposal, approved and about to execute,"
    else:
        who = f"#{other.pk if isinstance(other, Ahead) else other}, approved and about to execute,"
    return [
        f"{who} changes {words} first: this one waits for a person, and is superseded once that "
        "one executes."
    ]


def verdict_or_engine_failure(
    evaluate: Callable[[], tuple[Verdict, GuardrailFindings]],
    *,
    action_type: str,
    rules: list[Rule] | None = None,
    subject: str,
    reads_database: bool = True,
) -> tuple[Verdict, GuardrailFindings]:
    """``evaluate()``, the policy engine's verdict with the facts it gathers; or, when that
    raises, a verdict that sends the proposal to a human with the reason, the error logged.
    Nothing the engine cannot evaluate runs unseen or waits unevaluated forever.

    A transient database error (the connection lost, a serialization failure) is not the
    engine's: it propagates, so that the request or task retries. ``evaluate`` that reads the
    database runs in a savepoint, so a failed query leaves the caller's transaction usable."""
    try:
        with transaction.atomic() if reads_database else nullcontext():
            return evaluate()
    except (OperationalError, InterfaceError):
        raise
    except Exception as error:
        logger.exception("The policy engine could not evaluate %s", subject)
        what = (
            error.message if isinstance(error, DomainError) else f"{type(error).__name__}: {error}"
        )
        return (
            Verdict(
                outcome=VerdictOutcome.REVIEW,
                reasons=(f"{ENGINE_COULD_NOT_EVALUATE}: {what[:500]}; a human decides.",),
                risk=100,  # its risk is unknown: it is seen first
                required_approvals=_strictest_approvals(action_type, rules),
            ),
            GuardrailFindings(),
        )


def _strictest_approvals(action_type: str, rules: list[Rule] | None) -> int:
    """The most approvals any policy of this type could require: a proposal the engine could
    not evaluate takes no fewer people than its policy might have asked for."""
    try:
        with transaction.atomic():
            rules = rules if rules is not None else rules_in_force(action_type=action_type)
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        return 1
    return max(
        (
            max(rule.required_approvals, rule.approvals_above_threshold)
            for rule in rules
            if rule.action_type == action_type
        ),
        default=1,
    )


def _no_such_account(agent: Agent, external_id: str) -> InvalidInput:
    return invalid_input(
        {"account": [f"No account “{external_id}” that agent “{agent.name}” may act on."]}
    )


def agent_account(*, agent: Agent, external_id: str) -> Account:
    account = agent.accounts.filter(external_id=external_id).first()
    if account is None:
        raise _no_such_account(agent, external_id)
    return account


def refused_to_agents(action_type_name: str) -> InvalidInput | None:
    """The refusal of an action type only the platform proposes (a policy change), when an
    agent submits it; None for the others."""
    action_type = action_types.get(action_type_name)
    if action_type is None or action_type.agents_may_propose:
        return None
    return invalid_input(
        {"action_type": [f"Only the platform proposes a {action_type.label}, not an agent."]}
    )


def _may_propose(agent: Agent, action_type_name: str) -> None:
    refusal = None if agent.is_platform else refused_to_agents(action_type_name)
    if refusal is not None:
        raise refusal


@dataclass(frozen=True)
class Submission:
    """One proposal as an agent submits it (its fields already checked for form)."""

    account: str  # the account's external id
    action_type: str
    payload: Any
    rationale: str
    confidence: float
    supporting_data: dict[str, Any] = field(default_factory=dict)
    external_ref: str = ""


def proposals_submit(
    *,
    agent: Agent,
    submissions: Sequence[Submission],
    indices: Sequence[int] | None = None,
    batch_size: int | None = None,
) -> list[Proposal | InvalidInput]:
    """Record an agent's proposals, each checked, assessed and routed by policy as if it came
    alone (a move the engine approves counts for those after it), and none approved at once
    that would fail once the moves approved before it have run (a reallocation drawing on a
    budget they take from or cut: ``LedgerAhead``; it waits for a person). Returns, for each
    submission in order, its proposal, already approved, waiting for a person or blocked; or
    why it was refused.

    One short transaction, set-based, so a batch of a thousand costs a few statements, not
    thousands: the campaigns the submissions name are read and locked at once (in id order,
    so two submissions racing on one target are routed one after the other and each counts
    the other's move), everything else the engine needs is read once (``EvaluationContext``),
    every proposal is evaluated in memory by the same ``engine.evaluate``, and the proposals
    and their history are inserted together; the approved ones are sent to execute once it
    commits. In the caller's transaction, if it has one: a batch is recorded whole or not at
    all. ``indices``: each submission's index in the batch as its agent sent it (by default,
    its place here), by which a reason names an earlier item. ``batch_size``: of a batch, how
    many items its agent sent, which each proposal's history says it came in ("submitted in a
    batch of 3 items (index 0)")."""
    # Copies: an authenticated agent's accounts are kept, shared by the process's requests,
    # and the locks below give each instance its budget cap as locked.
    accounts = {account.external_id: copy.copy(account) for account in agent.accounts.all()}
    # Each submission checked for form first; then every campaign they name read at once.
    checked: list[tuple[Account, ActionType, dict] | InvalidInput] = []
    for submission in submissions:
        try:
            _may_propose(agent, submission.action_type)
            account = accounts.get(submission.account)
            if account is None:
                raise _no_such_account(agent, submission.account)
            checked.append(
                (
                    account,
                    *action_validate(
                        action_type_name=submission.action_type, raw_payload=submission.payload
                    ),
                )
            )
        except InvalidInput as error:
            checked.append(error)
    named: dict[int, set[str]] = defaultdict(set)
    totalled = []  # the accounts whose total daily budget judges some of the actions
    for item in checked:
        if not isinstance(item, InvalidInput):
            account, action_type, payload = item
            named[account.pk] |= set(action_type.campaign_fields(payload))
            if reads_account_total(action_type=action_type, account=account, payload=payload):
                totalled.append(account)
    _free_text_bounded(submissions)  # before any lock, as the creatives' text is read
    brand_found = brand_findings_ahead(items=_creative_texts(checked))

    # No savepoint in a caller's transaction (two statements of a single submission's
    # sixteen): what fails in here fails the whole of it, which the caller undoes. The rules
    # in force read once, with the campaigns locked: the evaluation, the decision deadlines
    # and the routing of the messages read them alike.
    with transaction.atomic(savepoint=False), in_force_read_once():
        campaigns = _campaigns_locked(named, totalled=totalled)
        assessed_each: list[AssessedAction | InvalidInput] = []
        for item in checked:
            if isinstance(item, InvalidInput):
                assessed_each.append(item)
                continue
            account, action_type, payload = item
            try:
                assessed_each.append(
                    assessed_against(
                        action_type=action_type,
                        account=account,
                        payload=payload,
                        campaigns=campaigns[account.pk],
                    )
                )
            except InvalidInput as error:
                assessed_each.append(error)
        assessed_ok = [item for item in assessed_each if isinstance(item, AssessedAction)]
        context = EvaluationContext.read(
            agents=[agent],
            accounts={assessed.account for assessed in assessed_ok},
            action_types={assessed.action_type.name for assessed in assessed_ok},
            targets={
                (assessed.account.pk, target)
                for assessed in assessed_ok
                for target in assessed.effects
            },
            brand_found=brand_found,
        )
        # The fields that value-setting actions change, which a proposal approved before
        # them may change first (read under the campaigns' locks: racing submissions see
        # each other's approvals).
        changed: dict[FieldKey, Ahead | EarlierItem] = changed_first(
            key
            for assessed in assessed_ok
            if assessed.action_type.sets_values
            for key in campaign_fields_changed(
                account_id=assessed.account.pk,
                action_type=assessed.action_type,
                payload=assessed.payload,
            )
        )
        made = [
            assessed
            if isinstance(assessed, InvalidInput)
            else Proposal(
                agent=agent,
                account=assessed.account,
                action_type=assessed.action_type.name,
                payload=assessed.payload,
                rationale=submission.rationale,
                supporting_data=submission.supporting_data,
                confidence=submission.confidence,
                external_ref=submission.external_ref,
                **assessed.proposal_fields(),
            )
            for submission, assessed in zip(submissions, assessed_each, strict=True)
        ]
        # The moves approved and not yet run that take from (or set) a figure a move the
        # ledger may refuse takes from (a reallocation's source budget): one read for all,
        # none where there is no such move; under the campaigns' locks, which whoever
        # approves such a move holds too (a person, a racing submission): it is committed, and
        # counted, or waits for this one, and counts it.
        drawing = [
            proposal
            for proposal, assessed in zip(made, assessed_each, strict=True)
            if isinstance(assessed, AssessedAction) and assessed.action_type.ledger_may_refuse
        ]
        ledger = LedgerAhead.ahead_of(drawing, campaigns) if drawing else None
        results: list[Proposal | InvalidInput] = []
        proposals, routes, submitted_said = [], [], []
        indices = range(len(submissions)) if indices is None else indices
        numbered = False  # the batch's proposals given their ids before they are written
        for index, proposal, assessed in zip(indices, made, assessed_each, strict=True):
            if isinstance(assessed, InvalidInput):
                results.append(assessed)
                continue
            fields = campaign_fields_changed(
                account_id=assessed.account.pk,
                action_type=assessed.action_type,
                payload=assessed.payload,
            )
            told = _changed_first_said(
                assessed.action_type, fields, changed, ledger, proposal, agent_id=agent.pk
            )
            clash = _changed_first_clash(assessed.action_type, fields, changed)
            if (
                told
                and not numbered
                and (
                    (clash is not None and isinstance(changed[clash], EarlierItem))
                    or (ledger is not None and ledger.runs_after_an_item(proposal))
                )
            ):
                # Its reasons name an earlier item of the batch, which its agent reads of by
                # its index, a person by its id: the batch's proposals are numbered now.
                numbered = _numbered(made, indices, ledger)
            verdict, findings = verdict_for(
                assessed=assessed, agent=agent, context=context, changed_first=told
            )
            if told and findings.changed_first == tuple(told):
                named = _changed_first_said(assessed.action_type, fields, changed, ledger, proposal)
                findings = replace(findings, changed_first_named=tuple(named))
            if verdict.outcome == VerdictOutcome.AUTO_APPROVE:
                if ledger is not None:  # what it takes, for those after it
                    ledger.count(proposal, item=index)
                # Changed first by this one, for those after it.
                for key in fields_moved(
                    assessed.action_type,
                    assessed.payload,
                    assessed.snapshot,
                    fields,
                    after=assessed.proposed,
                ):
                    changed.setdefault(key, EarlierItem(index, proposal))
                context.count(
                    account_id=assessed.account.pk,
                    effects=assessed.effects,
                    sets_value=assessed.action_type.sets_values,
                )
                context.count_spend(
                    action_type=assessed.action_type,
                    account=assessed.account,
                    payload=assessed.payload,
                    campaigns=assessed.campaigns,
                )
            changes = {**verdict_changes(verdict, findings), "evaluated_at": context.now}
            if verdict.policy_id in context.policies:
                changes["verdict_policy"] = context.policies[verdict.policy_id]
            routes.append((VERDICT_STATUS[verdict.outcome], " ".join(verdict.reasons), changes))
            proposals.append(proposal)
            submitted_said.append(
                "submitted"
                if batch_size is None
                else f"submitted in a batch of {how_many(batch_size, 'item')} (index {index})"
            )
            results.append(proposal)
        _routing_policies_held(
            changes["verdict_policy"].pk for _, _, changes in routes if "verdict_policy" in changes
        )
        proposals_create_routed(
            proposals=proposals,
            routes=routes,
            at=context.now,
            submitted_by=Actor.for_agent(agent),
            submitted_said=submitted_said,
            routed_by=Actor.system("policy-engine"),
        )
    return results


def _numbered(
    made: Sequence[Proposal | InvalidInput], indices: Sequence[int], ledger: LedgerAhead | None
) -> bool:
    """Give a batch's proposals (``made``, by their ``indices`` as sent) their ids before they
    are written, and the moves of those counted already (``ledger``) theirs: a reason that
    names an earlier item is told a person by its id. False where the database cannot."""
    theirs = {
        index: proposal
        for index, proposal in zip(indices, made, strict=True)
        if isinstance(proposal, Proposal)
    }
    if not rows_numbered(Proposal, list(theirs.values())):
        return False
    if ledger is not None:
        ledger.numbered({index: proposal.pk for index, proposal in theirs.items()})
    return True


def _refused_once_run(
    ledger: LedgerAhead | None, proposal: Proposal, *, agent_id: int | None = None
) -> list[str]:
    """Why a move the ledger may refuse waits for a person, where it would fail once the
    moves approved before it have run (``ledger``: ``LedgerAhead``, read for it): approved
    at once, its agent would be told "approved" of what fails when it runs. As its page
    refuses its approval (``acts.no_longer_applies``), in the same words; written for
    ``agent_id``'s agent (another agent's proposal unnamed)."""
    if ledger is None or not action_types.named(proposal.action_type).ledger_may_refuse:
        return []
    why = ledger.refusal(proposal, agent_id=agent_id)
    return [refused_once_run(why)] if why else []


def _changed_first_said(
    action_type: ActionType,
    fields: set[FieldKey],
    changed: Mapping[FieldKey, object],
    ledger: LedgerAhead | None,
    proposal: Proposal,
    *,
    agent_id: int | None = None,
) -> list[str]:
    """Why a proposal waits for a person though its policy would let it run, for what was
    approved before it: a value one changes first (``changed_first_reviews``), or a budget
    the moves ahead leave too small (``_refused_once_run``). Written for ``agent_id``'s
    agent, where given; else for a person who reads every proposal, each named by id."""
    return [
        *changed_first_reviews(action_type, fields, changed, agent_id=agent_id),
        *_refused_once_run(ledger, proposal, agent_id=agent_id),
    ]


def _routing_policies_held(policy_ids: Iterable[int]) -> None:
    """Hold the policies that routed these proposals until the submission commits, in id order
    (``FOR KEY SHARE``, the lock the proposals' references take as they are checked at commit,
    taken now): a policy deleted meanwhile waits, and then finds the proposals it routed
    (and is refused, as one with proposals is). One deleted since the rules were read
    is not there to hold: the submission was judged by a rule no longer in force, and is
    refused, nothing recorded, to be sent again (503, as when a lock is held too long) rather
    than failing at its commit (500). On SQLite a transaction holds the database's one write
    lock from its start: nothing is deleted meanwhile."""
    policy_ids = set(policy_ids)
    if rows_held(Policy, policy_ids, lock="KEY SHARE") != policy_ids:
        raise Busy(
            "A policy that judged this submission was deleted while it was evaluated: "
            "nothing was recorded; send it again."
        )


# How many times a verdict is reached again when the policy that reached it was deleted
# before it could be held: each needs another deletion committed in that moment.
ROUTING_TRIES = 3


def verdict_policy_held(
    evaluate: Callable[[], tuple[Verdict, GuardrailFindings]],
) -> tuple[Verdict, GuardrailFindings]:
    """``evaluate()``'s verdict, with the policy that reached it held until the surrounding
    transaction ends (``FOR KEY SHARE``, as a submission holds it: ``_routing_policies_held``)
    for the proposal that records it: a policy deleted meanwhile waits, and then finds the
    proposal (and is refused, as one with proposals is). One deleted since the rules were
    read is not there to hold: its deletion changed their token, and the proposal is
    evaluated again under the rules as they now are, rather than failing at its commit. For
    one proposal routed by a task (the stall sweep's evaluation, an execution's re-routing),
    which nobody is waiting to send again."""
    for _ in range(ROUTING_TRIES):
        verdict, findings = evaluate()
        if verdict.policy_id is None or rows_held(Policy, [verdict.policy_id], lock="KEY SHARE"):
            return verdict, findings
    raise Busy(
        f"The policy that judged this proposal was deleted while it was evaluated, "
        f"{ROUTING_TRIES} times over: nothing was recorded."
    )


class FreeTextTally:
    """The free text (rationales, supporting data as JSON, external references) of the
    proposals one request sends, added up as they are read: refused (413, nothing recorded)
    as soon as it is longer than one request may send, since it is all written, and its
    history with it, while the campaigns are locked. A value of another type counts nothing
    here (its item is refused for it)."""

    def __init__(self) -> None:
        self.length = 0

    def add(self, *, rationale: Any, external_ref: Any, supporting_data: Any) -> None:
        self.length += len(rationale) if isinstance(rationale, str) else 0
        self.length += len(external_ref) if isinstance(external_ref, str) else 0
        if isinstance(supporting_data, dict | list):
            # Its characters as sent: escaped, each letter outside ASCII counted six times
            # ("\u00e9"), and 511,000 characters sent were refused as "more than 2,000,000".
            self.length += len(
                json.dumps(supporting_data, separators=(",", ":"), ensure_ascii=False)
            )
        limit = settings.API_MAX_TEXT_CHARS
        if self.length > limit:
            raise TooLarge(
                f"The rationales, supporting data and external references sent come to more "
                f"than {limit:,} characters, the most one request may send. Send them in "
                f"smaller batches."
            )


def _free_text_bounded(submissions: Iterable[Submission]) -> None:
    tally = FreeTextTally()
    for submission in submissions:
        tally.add(
            rationale=submission.rationale,
            external_ref=submission.external_ref,
            supporting_data=submission.supporting_data,
        )


def _creative_texts(
    checked: Iterable[tuple[Account, ActionType, dict] | InvalidInput],
) -> list[tuple[Account, list[tuple[str, str]]]]:
    """The texts of the well-formed submissions, each with its account; refused (413, nothing
    recorded) when together they are longer than one request may send."""
    texts = [
        (item[0], item[1].texts(item[2])) for item in checked if not isinstance(item, Exception)
    ]
    length = sum(len(text) for _, each in texts for _, text in each)
    limit = settings.API_MAX_CREATIVE_TEXT_CHARS
    if length > limit:
        raise TooLarge(
            f"The creatives sent hold {length:,} characters of text; one request may send at "
            f"most {limit:,}. Send them in smaller batches."
        )
    return texts


def _campaigns_locked(
    named: Mapping[int, set[str]], *, totalled: Iterable[Account] = ()
) -> dict[int, dict[str, Campaign]]:
    """The campaigns named, by account id and external id, locked in id order; first the
    ``totalled`` accounts, those whose total daily budget judges an action (the total is read
    across campaigns nobody else locks; each instance gets its cap as locked). On PostgreSQL
    the transaction waits for them at most ``SUBMISSION_LOCK_TIMEOUT``: a request held up
    longer is answered 503 with Retry-After, rather than holding its connection and its
    caller while others wait behind it."""
    if connection.vendor == "postgresql":
        milliseconds = int(settings.SUBMISSION_LOCK_TIMEOUT.total_seconds() * 1000)
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = {milliseconds}")
    accounts_lock(totalled)
    campaigns: dict[int, dict[str, Campaign]] = defaultdict(dict)
    named = {account_id: ids for account_id, ids in named.items() if ids}  # a policy change: none
    if not named:
        return campaigns
    # Written out (read at every submission): the ORM took longer to build it than it runs.
    wanted, params = [], []
    for account_id, external_ids in named.items():
        wanted.append(
            f"(account_id = %s AND external_id IN ({', '.join(['%s'] * len(external_ids))}))"
        )
        params += [account_id, *sorted(external_ids)]
    locking = " FOR UPDATE" if connection.features.has_select_for_update else ""
    table = connection.ops.quote_name(Campaign._meta.db_table)
    for campaign in Campaign.objects.raw(
        f"SELECT * FROM {table} WHERE {' OR '.join(wanted)} ORDER BY id{locking}", params
    ):
        campaigns[campaign.account_id][campaign.external_id] = campaign
    return campaigns


def proposal_submit(*, agent: Agent, submission: Submission) -> Proposal:
    """Record one proposal (a batch of one), or raise why it is refused."""
    (result,) = proposals_submit(agent=agent, submissions=[submission])
    if isinstance(result, InvalidInput):
        raise result
    return result


def proposal_dry_run(
    *,
    agent: Agent,
    account_external_id: str,
    action_type: str,
    payload: Any,
    rules: list[Rule] | None = None,
) -> tuple[AssessedAction, Verdict]:
    """What the policy engine would decide about this action now, under the rules in force
    or the given (draft) rules. Writes nothing."""
    _may_propose(agent, action_type)
    account = agent_account(agent=agent, external_id=account_external_id)
    assessed = action_assess(account=account, action_type_name=action_type, raw_payload=payload)
    fields = campaign_fields_changed(
        account_id=account.pk, action_type=assessed.action_type, payload=assessed.payload
    )
    changed = changed_first(fields) if assessed.action_type.sets_values else {}
    # A move the ledger may refuse is judged against what the moves approved before it leave,
    # as its submission judges it (``proposals_submit``): else the dry run said "auto_approve"
    # of a move its submission then sent to a person.
    proposal = Proposal(
        agent=agent,
        account=account,
        action_type=assessed.action_type.name,
        payload=assessed.payload,
    )
    ledger = (  # the campaigns as its assessment read them: not read again
        LedgerAhead.ahead_of([proposal], {account.pk: assessed.campaigns})
        if assessed.action_type.ledger_may_refuse
        else None
    )
    verdict, _ = verdict_for(
        assessed=assessed,
        agent=agent,
        rules=rules,
        changed_first=_changed_first_said(
            assessed.action_type, fields, changed, ledger, proposal, agent_id=agent.pk
        ),
    )
    return assessed, verdict


def guardrail_blocks(
    *,
    proposal: Proposal,
    campaigns: dict[str, Campaign],
    account_campaigns: Iterable[Campaign] | None = None,
) -> tuple[str, ...]:
    """What the guardrails would refuse about this proposal now (caps, locks), in words,
    given the campaigns it touches (and all of the account's, if already read)."""
    return tuple(
        policy_guardrail_blocks(
            action_type=action_types.named(proposal.action_type),
            account=proposal.account,
            payload=proposal.payload,
            campaigns=campaigns,
            account_campaigns=account_campaigns,
        )
    )


GuardrailCampaigns = dict[int, dict[str, Campaign]]


def _touched(proposal: Proposal) -> set[str]:
    return set(action_types.named(proposal.action_type).campaign_fields(proposal.payload))


def guardrail_campaigns(proposals: Iterable[Proposal], *, held: bool = False) -> GuardrailCampaigns:
    """What the guardrails read of the ledger to judge these proposals, by account id and
    external id: the campaigns the proposals touch, and every campaign of an account whose
    total budget is capped (the cap counts them all). With ``held``, held as they are until
    the caller's transaction ends (``FOR SHARE``: a save of one, or a move that locks them to
    change them, waits; so does nobody who only reads them)."""
    capped, touched_by_account = set(), defaultdict(set)
    for proposal in proposals:
        if proposal.account.max_total_daily_budget is not None:
            capped.add(proposal.account_id)
        touched_by_account[proposal.account_id] |= _touched(proposal)
    wanted = Q(account_id__in=capped)
    for account_id, external_ids in touched_by_account.items():
        wanted |= Q(account_id=account_id, external_id__in=external_ids)
    by_account: GuardrailCampaigns = defaultdict(dict)
    read = Campaign.objects.filter(wanted).order_by("pk")
    for campaign in rows_read_held(read, lock="SHARE") if held else read:
        by_account[campaign.account_id][campaign.external_id] = campaign
    return by_account


def guardrail_blocks_each(
    proposals: Iterable[Proposal], *, campaigns: GuardrailCampaigns | None = None
) -> dict[int, tuple[str, ...]]:
    """``guardrail_blocks`` for many proposals at once, by proposal id, with one read of the
    campaigns (``guardrail_campaigns``; ``campaigns``, if read already). A proposal one of
    whose campaigns is gone from the ledger has none: its page and its execution say the
    campaign is gone."""
    proposals = list(proposals)
    touched = {proposal.pk: _touched(proposal) for proposal in proposals}
    by_account = guardrail_campaigns(proposals) if campaigns is None else campaigns
    blocks = {}
    lowered = hard_ceilings_lowered_since(proposals, campaigns=by_account)
    for proposal in proposals:
        theirs = by_account.get(proposal.account_id, {})
        if not touched[proposal.pk] <= theirs.keys():
            blocks[proposal.pk] = ()
            continue
        blocks[proposal.pk] = guardrail_blocks(
            proposal=proposal,
            campaigns={id_: theirs[id_] for id_ in touched[proposal.pk]},
            account_campaigns=theirs.values(),
        ) + lowered.get(proposal.pk, ())
    return blocks


def routed_version(proposal: Proposal) -> int | None:
    """The history record of the policy version that last routed the proposal (its routing,
    or a re-assessment since)."""
    versions = [proposal.verdict_policy_version, proposal.reassessed_policy_version]
    return max((version for version in versions if version is not None), default=None)


def hard_ceilings_lowered_since(
    proposals: Iterable[Proposal],
    *,
    latest: dict[int, int | None] | None = None,
    campaigns: GuardrailCampaigns | None = None,
) -> dict[int, tuple[str, ...]]:
    """By proposal id, what the hard ceilings of the policy that routed each refuse about it
    now, where that policy has changed since (a ceiling lowered below it): a person's approval
    does not run what the policy now blocks outright, as an edit to it would be refused. Its
    routing stands otherwise (its ceilings, approvals, expiry and deadline): nothing else a
    policy change does re-routes a proposal already waiting. Nothing where the policy is
    switched off, a draft or unchanged, or no longer matches it. The policies are those the
    proposals were read with where they were (the queue reads them with its rows), else read
    in one statement; their versions only where one has a hard ceiling, unless ``latest``
    gives them (each policy's latest history record, by policy id, read with the proposals:
    the executor's).

    A failed one that moves an amount, the figures it is judged by having moved since it was
    assessed (its source budget cut by another move), or moving before its retry runs (moves
    approved and not yet run ahead of it, which its retry runs after), is judged as a retry
    would run it: on its figures re-assessed from the ledger as they leave it (``campaigns``:
    the ledger as the guardrails read it, ``guardrail_campaigns``; the moves ahead read once
    for all, ``LedgerAhead``), as the executor re-assesses it before its attempt
    (``executors.runner._reassessed``), which would fail it for a block. Retrying it
    re-assessed above its hard ceiling is refused, and said so, rather than sent to fail
    again at once. That re-assessment is judged by the policy that decides it now (as any
    verdict is: ``verdict_for``), which is another than routed it where a more specific one
    was added since: judged, and said, by that one's hard ceiling then
    (``_retry_decided_by``), as well as by the routing one's where it changed since."""
    proposals = list(proposals)
    retried: dict[int, _Retried] = {}
    if campaigns is not None:
        failed = [proposal for proposal in proposals if proposal.status == ProposalStatus.FAILED]
        ahead = LedgerAhead.ahead_of(failed, campaigns) if failed else None
        for proposal in failed:
            judged = _as_retried(proposal, campaigns, ahead)
            if judged is not None:
                retried[proposal.pk] = judged
    # One no policy routed (none matched it then) is judged too: its retry's execution is.
    decided_by = _retry_decided_by(proposals, retried)
    proposals = [
        proposal
        for proposal in proposals
        if proposal.verdict_policy_id is not None or proposal.pk in decided_by
    ]
    policies: dict[int, Policy] = {}
    for proposal in proposals:
        if Proposal.verdict_policy.is_cached(proposal):
            policies[proposal.verdict_policy_id] = proposal.verdict_policy
    unread = {proposal.verdict_policy_id for proposal in proposals} - policies.keys() - {None}
    if unread:
        policies |= Policy.objects.in_bulk(unread)
    capped = {
        policy_id: policy
        for policy_id, policy in policies.items()
        if policy.is_active
        and not policy.is_draft
        and (policy.block_above_magnitude is not None or policy.block_above_amount is not None)
    }
    if not capped and not decided_by:
        return {}
    if latest is None:
        latest = dict(
            Policy.history.filter(id__in=capped)
            .order_by()
            .values("id")
            .annotate(latest=Max("history_id"))
            .values_list("id", "latest")
        )
    refused = {}
    for proposal in proposals:
        policy = capped.get(proposal.verdict_policy_id)
        routed = routed_version(proposal)
        judged = retried.get(proposal.pk)
        if proposal.pk in decided_by:
            # A retry re-assesses it under the policy that decides it now, not this one.
            found = _retry_refused_by(
                proposal,
                judged,
                decided_by[proposal.pk],
                routing=policies.get(proposal.verdict_policy_id),
                capped=policy,
                routed=routed,
                latest=latest,
            )
            if found:
                refused[proposal.pk] = found
            continue
        if policy is None or routed is None or latest.get(policy.pk) is None:
            continue
        # Routed by the version in force and not re-assessed since, it is within its hard
        # ceilings (above them, it was blocked). Re-assessed since (its source budget cut by
        # another move), it may now be above them, under whichever version; so may a failed
        # one a retry would re-assess.
        if (
            latest[policy.pk] == routed
            and proposal.reassessed_policy_version is None
            and judged is None
        ):
            continue
        found = _routing_ceiling_refuses(proposal, judged, policy, routed, latest)
        if found:
            refused[proposal.pk] = found
    return refused


class _Retried(NamedTuple):
    """A failed move as its retry's execution would re-assess it (``_as_retried``)."""

    judged: Proposal  # a stand-in with its figures re-assessed (nothing is saved)
    # Whether the budget it draws on moved since it was assessed (another move ran).
    moved: bool
    # The moves approved and not yet run that its retry runs after and that move that budget
    # first, as said of it ("#8, approved before its retry, has run"); "" for none.
    once: str

    def drawn_on_said(self) -> str:
        """Why it is re-assessed, as its refusal says it: "as the budget it draws on moved",
        "… moves once #8, approved before its retry, has run", or both."""
        if not self.once:
            return "as the budget it draws on moved"
        if not self.moved:
            return f"as the budget it draws on moves once {self.once}"
        return f"as the budget it draws on moved, and moves again once {self.once}"


def _routing_ceiling_refuses(
    proposal: Proposal,
    retried: _Retried | None,
    policy: Policy,
    routed: int | None,
    latest: Mapping[int, int | None],
) -> tuple[str, ...]:
    """What the hard ceilings of ``policy``, the one that routed ``proposal``, as it stands
    (``latest``), refuse about it as ``retried`` (its retry's re-assessment) or else as it
    is, said as changed since it routed it, or re-assessed since under it unchanged."""
    judged = retried.judged if retried is not None else proposal
    found = hard_ceilings_refuse(judged, rule_from_policy(policy, latest[policy.pk]))
    if not found:
        return ()
    then = version_number(policy.pk, proposal.verdict_policy_version or routed)
    now = version_number(policy.pk, latest[policy.pk])
    if then != now:
        # Judged once the moves ahead of its retry have run: said so, naming them.
        once = (
            f", re-assessed as a retry would run it once {retried.once}"
            if retried is not None and retried.once
            else ""
        )
        since = (
            f"Policy “{policy.name}” has changed since it routed this proposal (version "
            f"{then}; now version {now}){once}: "
        )
    else:
        drawn_on = (
            retried.drawn_on_said() if retried is not None else "as the budget it draws on moved"
        )
        since = (
            f"Re-assessed since policy “{policy.name}” routed this proposal (version "
            f"{now}, unchanged since), {drawn_on}: "
        )
    return (HardCeilingFinding(since + " ".join(found)),)


def _retry_decided_by(
    proposals: Sequence[Proposal], retried: Mapping[int, _Retried]
) -> dict[int, tuple[Rule, Policy]]:
    """Of the failed ``proposals`` a retry would re-assess (``retried``, by id), those another
    policy than routed them decides now (a more specific one added since, or one where none
    matched them when they were routed), with its rule and
    policy as in force: what their retry's re-assessment is judged by, as any verdict is
    (``executors.runner._reassessed``, ``verdict_for``), where their page used to judge it by
    the routing one. The rules in force read once, and their agents in one statement where
    not read with them; nothing read where none is retried."""
    if not retried:
        return {}
    current = in_force()
    theirs = [proposal for proposal in proposals if proposal.pk in retried]
    unread = {p.agent_id for p in theirs if not Proposal.agent.is_cached(p)}
    agents = Agent.objects.in_bulk(unread) if unread else {}
    decided = {}
    for proposal in theirs:
        if not Proposal.agent.is_cached(proposal):
            proposal.agent = agents[proposal.agent_id]  # kept: its verdict reads it again
        rule = deciding_rule(
            current.rules,
            action_type=proposal.action_type,
            agent=proposal.agent,
            account=proposal.account,
        )
        if rule is not None and rule.policy_id != proposal.verdict_policy_id:
            decided[proposal.pk] = (rule, current.policies[rule.policy_id])
    return decided


def _retry_refused_by(
    proposal: Proposal,
    retried: _Retried,
    deciding: tuple[Rule, Policy],
    *,
    routing: Policy | None,
    capped: Policy | None,
    routed: int | None,
    latest: Mapping[int, int | None],
) -> tuple[str, ...]:
    """What refuses a failed proposal's retry, re-assessed (``retried``) under the policy
    that decides it now (``deciding``, another than routed it), as its execution refuses it:
    that policy's hard ceilings (``_reassessed``: its verdict blocks it), and those of the
    routing one (``routing``; ``capped``: it, where it is live with a hard ceiling) where
    that one changed since it routed it (``_hard_ceilings_lowered``), in the engine's words:
    each that refuses it, each named."""
    rule, policy = deciding
    found = hard_ceilings_refuse(retried.judged, rule)
    refused: tuple[str, ...] = ()
    if found:
        since = (
            f"Re-assessed now, as a retry would run it, {retried.drawn_on_said()}, under "
            f"policy “{policy.name}” (version {policy.version_number}), which decides it now"
            f"{_in_place_of(routing, routed)}: "
        )
        refused = (DecidingCeilingFinding(since + " ".join(found)),)
    if capped is None or routed is None or latest.get(capped.pk) is None:
        return refused
    if latest[capped.pk] == routed and proposal.reassessed_policy_version is None:
        return refused  # unchanged since it routed it: its execution does not ask it again
    return refused + _routing_ceiling_refuses(proposal, retried, capped, routed, latest)


def _in_place_of(policy: Policy | None, routed: int | None) -> str:
    """The policy that routed a proposal (``routed``: the version), as the one deciding it
    now replaces it: " in place of policy “Budget reallocations” (version 2), which routed
    it"; nothing where it is gone."""
    if policy is None:
        return ""
    number = version_number(policy.pk, routed) if routed is not None else None
    said = f" (version {number})" if number else ""
    return f" in place of policy “{policy.name}”{said}, which routed it"


def _as_retried(
    proposal: Proposal, campaigns: GuardrailCampaigns, ahead: LedgerAhead | None
) -> _Retried | None:
    """For a failed proposal that moves an amount (``ActionType.sets_values`` false) whose
    figures were read from campaign fields that have moved since it was assessed, or move
    before its retry runs (``ahead``: the moves approved and not yet run that it runs after,
    ``LedgerAhead``), a stand-in with its figures as a retry's execution re-assesses them
    then, from the ledger as those moves leave it (nothing is saved); None for any other (one
    that sets a value whose target moved ends superseded at its retry; one whose campaign is
    gone, or that the ledger refuses, is said so apart)."""
    if proposal.status != ProposalStatus.FAILED:
        return None
    left = ahead.left_once_run(proposal) if ahead is not None else None
    assessed = _assessed_as_retried(proposal, campaigns, left[0] if left else None)
    if assessed is None:
        return None
    retried = copy.copy(proposal)
    for field_name, value in assessed.proposal_fields().items():
        setattr(retried, field_name, value)
    if left is None:
        return _Retried(retried, moved=True, once="")
    now = campaigns[proposal.account_id]
    moved = not _as_assessed(proposal, {name: now[name] for name in left[0]})
    return _Retried(retried, moved=moved, once=left[1])


def _as_assessed(proposal: Proposal, campaigns: dict[str, Campaign]) -> bool:
    """Whether the figures ``proposal`` was assessed from (its ``target_snapshot``) are
    those of ``campaigns`` (the ones it touches)."""
    action_type = action_types.named(proposal.action_type)
    snapshot = ledger_snapshot(
        action_type=action_type, payload=proposal.payload, campaigns=campaigns
    )
    saw = proposal.target_snapshot or {}
    return all(
        ledger_value_recorded(value) == ledger_value_recorded(saw.get(campaign, {}).get(name))
        for campaign, values in snapshot.items()
        for name, value in values.items()
    )


def _assessed_as_retried(
    proposal: Proposal,
    campaigns: GuardrailCampaigns,
    then: dict[str, Campaign] | None = None,
) -> AssessedAction | None:
    """``_as_retried``'s assessment: the action as a retry's execution re-assesses it from
    the ledger now, or, ``then``, from its campaigns as the moves ahead of it leave them
    (``LedgerAhead.left_once_run``); None where it would not be re-assessed (see there)."""
    if proposal.status != ProposalStatus.FAILED:
        return None
    action_type = action_types.named(proposal.action_type)
    if action_type.sets_values:
        return None
    touched = action_type.campaign_fields(proposal.payload)
    theirs = campaigns.get(proposal.account_id, {})
    if not touched.keys() <= theirs.keys():
        return None
    now = {external_id: theirs[external_id] for external_id in touched} if then is None else then
    if _as_assessed(proposal, now):
        return None  # as it was assessed: its figures stand
    try:
        return assessed_from_ledger(
            action_type=action_type,
            account=proposal.account,
            payload=proposal.payload,
            campaigns=now,
        )
    except InvalidInput:
        return None  # the ledger refuses it as proposed: said as such (``LedgerAhead``)


def assessed_as_retried(proposal: Proposal) -> AssessedAction | None:
    """For a failed proposal a retry would re-assess (``_as_retried``: the budget an amount
    it moves draws on moved since it was assessed), the action as its retry's execution
    re-assesses it from the ledger now (``executors.runner._reassessed``): its page says
    what a retry would set, and what its policy's cumulative ceiling holds of it
    (``retry_over_cumulative_ceiling``), from it. None for any other."""
    if proposal.status != ProposalStatus.FAILED:
        return None
    return _assessed_as_retried(proposal, guardrail_campaigns([proposal]))


def retry_over_cumulative_ceiling(
    proposal: Proposal, *, assessed: AssessedAction | None = None
) -> tuple[str, ...]:
    """For a failed proposal a retry would re-assess (``_as_retried``: the budget an amount
    it moves draws on moved since it was assessed), what its policy's cumulative ceiling
    holds of it so, in the engine's words ("With this move of -21.2%, brand-search's daily
    budget would move -33.0% within 1 day, over the 25.0% cumulative ceiling of policy …").
    A retry is a person's approval, which covers it: its execution runs it all the same
    (``executors.runner._reassessed``: "…, which its approval still covers"), so its page
    says so before Retry. Nothing for any other, nor where its policy would now block it
    (its retry is refused then: ``hard_ceilings_lowered_since``). ``assessed``: its
    ``assessed_as_retried``, if read already."""
    if proposal.status != ProposalStatus.FAILED:
        return ()
    if assessed is None:
        assessed = assessed_as_retried(proposal)
    if assessed is None:
        return ()
    verdict, _ = verdict_for(assessed=assessed, agent=proposal.agent, proposal_id=proposal.pk)
    if verdict.outcome != VerdictOutcome.REVIEW:
        return ()
    return tuple(hold.reason for hold in verdict.held_by if hold.rule == "cumulative_ceiling")


def retries_over_cumulative_ceiling(proposals: Sequence[Proposal]) -> dict[int, tuple[str, ...]]:
    """``retry_over_cumulative_ceiling`` of each failed one of ``proposals`` whose retry its
    policy's cumulative ceiling holds, by id: the ledger read once for all of them (a message
    told to many people, a digest of many failures), the verdict asked only of those a retry
    would re-assess (the budget they draw on moved since)."""
    failed = {
        proposal.pk: proposal
        for proposal in proposals
        if proposal.status == ProposalStatus.FAILED
        and not action_types.named(proposal.action_type).sets_values
    }
    if not failed:
        return {}
    campaigns = guardrail_campaigns(failed.values())
    held = {}
    for proposal in failed.values():
        assessed = _assessed_as_retried(proposal, campaigns)
        if assessed is None:
            continue
        reasons = retry_over_cumulative_ceiling(proposal, assessed=assessed)
        if reasons:
            held[proposal.pk] = reasons
    return held


def hard_ceilings_refuse(proposal: Proposal, rule: Rule) -> tuple[str, ...]:
    """What ``rule``'s hard ceilings refuse about the proposal, in the engine's words ("28.0%
    of brand-search's daily budget is above the 20.0% hard ceiling of policy “…”."); nothing
    where it is within them or the rule does not match it."""
    if rule.block_above_magnitude is None and rule.block_above_amount is None:
        return ()
    verdict = evaluate(facts_as_recorded(proposal), [rule])
    return verdict.reasons if verdict.outcome == VerdictOutcome.BLOCK else ()


def facts_as_recorded(proposal: Proposal, *, agent_approval_rate: float | None = None) -> Facts:
    """What the engine judges a proposal's size and risk by, as the proposal recorded it (its
    figures as assessed, or re-assessed since; the exact magnitude where its action type gives
    it from the exact effects), with no guardrail finding: its hard ceilings
    (``hard_ceilings_refuse``), and its clean risk once a kill switch that raised it is gone
    (``approvals.services.kill_switch_risks``, with its agent's record as it is now)."""
    action_type = action_types.named(proposal.action_type)
    effects = {
        target: factor_from_text(factor) for target, factor in (proposal.effects or {}).items()
    }
    exact = action_type.exact_magnitude(proposal.payload, effects) if effects else None
    return Facts(
        action_type=proposal.action_type,
        action_label=action_type.label,
        magnitude=proposal.magnitude if exact is None else exact,
        magnitude_unit=action_type.magnitude_unit,
        magnitude_label=proposal.magnitude_label,
        risk_weight=action_type.risk_weight,
        account_id=proposal.account_id,
        channel=proposal.account.channel,
        agent_id=proposal.agent_id,
        agent_kind=proposal.agent.kind,
        amount=proposal.amount,
        currency=proposal.account.currency,
        agent_approval_rate=agent_approval_rate,
    )


# When a proposal was sent back to a person (executors.runner): before it ran, or between
# two attempts, after one sent to the channel got no answer that says whether the channel
# carried it out: it may have run, so not "before executing" (``held_back_reason``,
# ``re_routed_reason``).
_BEFORE_EXECUTING = "before executing:"
_BEFORE_NEXT_ATTEMPT = "before its next attempt:"
# How the reasons of one a kill switch held back begin.
HELD_BACK = f"Held back {_BEFORE_EXECUTING}"
HELD_BACK_BETWEEN = f"Held back {_BEFORE_NEXT_ATTEMPT}"
HELD_BACK_ANY = (HELD_BACK, HELD_BACK_BETWEEN)
# How those of one a re-assessment re-routed to a person begin.
RE_ROUTED = f"Re-routed to a person {_BEFORE_EXECUTING}"
RE_ROUTED_BETWEEN = f"Re-routed to a person {_BEFORE_NEXT_ATTEMPT}"
SENT_BACK = (*HELD_BACK_ANY, RE_ROUTED, RE_ROUTED_BETWEEN)
_MAY_HAVE_RUN_THERE = "may have been carried out there."
# What a held-back reason says, before a person must approve it again, of the attempts sent
# before the hold that got no sure answer, in the words their failure and Retry use
# (``unsure_answers_said``): "Attempt 1 was answered HTTP 503 (Retry-After: 600 s), which
# does not say whether the channel carried it out: it may have been carried out there.";
# recorded before, "Attempt 1 was sent to the channel and got no answer that says whether the
# channel carried it out: it may have been carried out there.", which stays so recorded.
# Found as its last sentence only, in no words but those it is written in
# (``UNSURE_ANSWERS_SAID``, ``_MAY_HAVE_RUN_THERE``): before it, a switch's reason is free
# text, which may speak of attempts too.
_SENT_UNSURE = re.compile(
    rf" ((?:{UNSURE_ANSWERS_SAID}|{ATTEMPT_NUMBERS} (?:was|were) sent to the channel and "
    rf"{re.escape(NO_SURE_ANSWER)}): (?:it|each) {re.escape(_MAY_HAVE_RUN_THERE)})$"
)


def held_back_reason(held: str, unsure: Sequence[tuple[int, str]] = ()) -> str:
    """The reason of a proposal a kill switch held back as it was about to run: "Held back
    before executing: the kill switch on account demo is engaged: … A person must approve it
    again." (``held``: the switches' findings, each a sentence; the first goes on the line's
    own sentence, lower-cased: recorded before, it kept its capital, "…executing: The kill
    switch…", and stays so recorded). ``unsure``: the attempts sent to the channel before the
    hold that got no sure answer, each its number and its error: it was held before its next
    attempt, not before it ran, and they are named as their failure and Retry name them
    (``unsure_answers_said``: "…is engaged: … Attempt 1 was answered HTTP 503, which does not
    say whether the channel carried it out: it may have been carried out there. A person must
    approve it again.")."""
    lowered = f"{held[:1].lower()}{held[1:]}"
    if not unsure:
        return f"{HELD_BACK} {lowered}{_APPROVE_AGAIN}"
    return f"{HELD_BACK_BETWEEN} {lowered} {_sent_unsure_said(unsure)}{_APPROVE_AGAIN}"


def _sent_unsure_said(unsure: Sequence[tuple[int, str]]) -> str:
    each = "it" if len(unsure) == 1 else "each"
    return f"{unsure_answers_said(unsure)}: {each} {_MAY_HAVE_RUN_THERE}"


def held_back_after_attempts(reason: str) -> bool:
    """Whether a reason says a kill switch held the proposal back after an attempt sent to
    the channel got no sure answer (``held_back_reason`` with ``unsure``): it may have run."""
    return reason.startswith(HELD_BACK_BETWEEN)


def re_routed_reason(moved: str, unsure: Sequence[tuple[int, str]] = ()) -> str:
    """The reason of an approved proposal a re-assessment re-routed to a person as it was
    about to run, its figures ``moved`` since it was assessed ("brand-search's daily budget is
    800.00, was 1000.00"). ``unsure``: as ``held_back_reason``'s, the attempts sent before
    that got no sure answer: re-routed before its next attempt, not before it ran ("Re-routed
    to a person before its next attempt: … Attempt 1 was answered HTTP 503, which does not
    say whether the channel carried it out: it may have been carried out there.")."""
    if not unsure:
        return f"{RE_ROUTED} {moved}."
    return f"{RE_ROUTED_BETWEEN} {moved}. {_sent_unsure_said(unsure)}"


def sent_back_after_attempts(reason: str) -> bool:
    """Whether a reason says the proposal was sent back to a person (held back by a kill
    switch, re-routed by a re-assessment) after an attempt sent to the channel got no sure
    answer: it may have run."""
    return reason.startswith((HELD_BACK_BETWEEN, RE_ROUTED_BETWEEN))


def held_back_by(reason: str, finding: str) -> bool:
    """Whether a held-back reason (``held_back_reason``, as recorded now or before) names a
    kill switch's finding: anywhere, or first, its capital lowered."""
    lowered = f"{finding[:1].lower()}{finding[1:]}"
    return finding in reason or any(f"{said} {lowered}" in reason for said in HELD_BACK_ANY)


_APPROVE_AGAIN = " A person must approve it again."
# Where a held-back reason names a switch released since: as it stood when it held it back.
_WHEN_IT_HELD = "then"


def held_back_findings(reason: str) -> list[str]:
    """The kill switches' findings a held-back reason (``held_back_reason``, as recorded now
    or before) names, each as a finding opens ("The kill switch on account demo is engaged:
    …"); none for any other reason."""
    return _held_back_parts(reason)[1]


def _held_back_parts(reason: str) -> tuple[str, list[str], re.Match | None]:
    """A held-back reason's opening, the findings it names and what it says of the attempts
    sent before the hold (``_SENT_UNSURE``); ("", [], None) for any other reason."""
    if not reason.startswith(HELD_BACK_ANY) or not reason.endswith(_APPROVE_AGAIN):
        return "", [], None
    begins = HELD_BACK_BETWEEN if reason.startswith(HELD_BACK_BETWEEN) else HELD_BACK
    held = reason.removeprefix(begins).removesuffix(_APPROVE_AGAIN).strip()
    sent = _SENT_UNSURE.search(held) if begins == HELD_BACK_BETWEEN else None
    if sent is not None:
        held = held[: sent.start()]
    findings = re.split(f" (?={KILL_SWITCH_FINDING})", f"{held[:1].upper()}{held[1:]}")
    return begins, findings, sent


def kill_switch_findings_recorded_at(proposal: Proposal) -> Any:
    """When the kill switch findings a proposal holds were recorded: as its last review
    round began (routed to people, re-assessed and routed again, or held back before it
    ran: its findings and held-back reasons are written then), else as it was routed; None
    where neither is recorded. A switch engaged since is not one they name, though named
    alike (``policies.services.kill_switches_engaged_then``)."""
    return proposal.waiting_since or proposal.evaluated_at


def held_back_reason_now(
    reason: str, engaged_now: Collection[str], *, waits: bool, none_covers_said: bool = True
) -> str:
    """A held-back reason (``held_back_reason``, as recorded now or before) as it stands now: each
    switch it names that is released since (``engaged_now``, the switches engaged over the
    proposal's account now, engaged when it was recorded: ``kill_switches_engaged_then``) reads as
    engaged then and released since, as a finding recorded when it was routed does
    (``kill_switch_finding_now``); and once the proposal no longer ``waits`` for a person, that a
    person had to approve it again, not that one must. What it says of the attempts sent before the
    hold stays as recorded. Any other reason, as recorded. Where none covers it now, it says so,
    unless ``none_covers_said`` is false (``kill_switch_finding_now``)."""
    begins, findings, sent = _held_back_parts(reason)
    if not begins:
        return reason
    now = " ".join(
        kill_switch_finding_now(
            finding, engaged_now, when=_WHEN_IT_HELD, none_covers_said=none_covers_said
        )
        for finding in findings
    )
    again = _APPROVE_AGAIN if waits else " A person had to approve it again."
    unsure = f" {sent.group(1)}" if sent is not None else ""
    return f"{begins} {now[:1].lower()}{now[1:]}{unsure}{again}"


def kill_switches_gone_said(
    reasons: Iterable, engaged_now: Collection[str], *, moved: Mapping[str, str]
) -> str:
    """Where ``reasons`` (as recorded: a proposal's, or its guardrails' findings) name kill
    switches, none of which covers the proposal now (``engaged_now``: the switches engaged over its
    account, engaged when they were recorded: ``kill_switches_engaged_then``), that, said once,
    below them, with what became of them: released, or moved while engaged to cover something else
    (``moved``, as ``kill_switches_moved_off`` says it): "No kill switch covers it now: those above
    have been released since." ("the one above has been moved to account acme since"); "" otherwise.
    A held-back reason counts each switch it names. Its page, its messages and the queue say it so,
    each line before it saying only what became of its own switch (``kill_switch_finding_now``,
    ``held_back_reason_now``, with ``none_covers_said`` false): they said "no kill switch covers it
    now" at the end of each."""
    findings = []
    for reason in map(str, reasons or ()):
        findings += held_back_findings(reason) if reason.startswith(HELD_BACK_ANY) else [reason]
    findings = [finding for finding in dict.fromkeys(findings) if kill_switch_named_in(finding)]
    if not findings or engaged_now:
        return ""
    gone = dict.fromkeys(kill_switch_gone(finding, (), moved=moved) for finding in findings)
    those = "the one above has" if len(findings) == 1 else "those above have"
    return f"No kill switch covers it now: {those} been {' or '.join(gone)} since."


def brand_findings_taken_out(
    proposal: Proposal, *, before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> frozenset[str]:
    """What the brand guidelines find in a proposal's texts as ``before`` reads them and not
    as ``after`` does: what an edit took out (``before``, its action as its agent made it, or
    as it was just before the edit; ``after``, as edited). None where it was not edited
    (``before`` None or the same). One the guidelines no longer find in either (they changed
    since) is not taken out: it stands as recorded."""
    if before is None or before == after:
        return frozenset()
    texts = action_types.named(proposal.action_type).texts
    found_then, found_now = (
        brand_guideline_findings(account=proposal.account, texts=texts(payload))
        for payload in (before, after)
    )
    return frozenset(found_then) - frozenset(found_now)


_BANNED_TERM = re.compile(r"uses the banned term (“.*?”)(?=[:,])")


def brand_findings_named(findings: Iterable[str]) -> str:
    """What brand guideline findings are of, as a history reason names them: their banned
    terms ("“guaranteed” and “risk-free”"), or, for one of another kind (a pattern, a missing
    disclaimer, hidden text), the finding whole, in brackets after "what the brand guidelines
    found"."""
    terms, others = [], []
    for finding in sorted(findings):
        term = _BANNED_TERM.search(finding)
        if term is None:
            others.append(finding)
        elif term.group(1) not in terms:
            terms.append(term.group(1))
    named = [" and ".join(terms)] if terms else []
    if others:
        named.append(f"what the brand guidelines found ({' '.join(others)})")
    return " and ".join(named)


# How the reason of an approved proposal re-assessed as it was about to run begins (its
# figures moved since it was assessed; executors.runner), and that of a reviewer's edit.
REASSESSED_BEFORE_EXECUTING = "Re-assessed before executing:"
EDITED_BEFORE_APPROVAL = "Edited before approval"

# How a waiting proposal's reason begins once a change another proposal made landed on its
# campaigns (``approvals.services.supersession``), and how a re-assessment's reason (that
# one, or one before executing) goes on to say what it makes of the proposal then: the
# figures it read, or that it no longer applies (or would now be blocked).
REASSESSED_AFTER = "Re-assessed after "
REASSESSED_NOW = " Now: "
REASSESSED_NO_LONGER_APPLIES = f" It {NO_LONGER_APPLIED_AS_PROPOSED}"
# Of one whose routing found already that its execution would refuse it (``acts.
# refused_when_routed``): it could not be applied as proposed then either.
REASSESSED_NOT_APPLIED = f" It {NOT_APPLIED_AS_PROPOSED}"
REASSESSED_WOULD_BE_BLOCKED = " It would now be blocked: "

REASSESSMENTS = (REASSESSED_AFTER, REASSESSED_BEFORE_EXECUTING)
# The re-assessments its reasons list at most, the newest; the count of those left out is
# said after them (each is in its history): a reallocation waiting on a busy campaign is
# re-assessed at every change that lands there, and each history record copies its reasons.
REASSESSMENTS_LISTED = 5
REASSESSMENTS_LEFT_OUT = "Re-assessed earlier too, not listed here: "

# How the reason of a proposal that ended superseded begins (``approvals.services.
# supersession``): its target moved before it ran.
SUPERSEDED = "Superseded:"

# What happened to a proposal since its agent made it, each said by a reason of its own
# (a note) above the reasons of its verdict, newest first.
NOTES = (*REASSESSMENTS, REASSESSMENTS_LEFT_OUT, EDITED_BEFORE_APPROVAL, *SENT_BACK, SUPERSEDED)


def reassessment_note(reason: str) -> str:
    """A re-assessment's reason, as an earlier one reads once the proposal was assessed
    again: the change and what made it, as its history records it, without what it read of
    the proposal then, which a later assessment replaces. Any other note, as it is (a hold
    names a kill switch's reason, in its owner's words)."""
    if reason.startswith(REASSESSMENTS):
        for then in (REASSESSED_NOW, REASSESSED_NO_LONGER_APPLIES, REASSESSED_NOT_APPLIED):
            reason = reason.partition(then)[0]
    return reason


def _reassessments_listed(notes: list[str]) -> list[str]:
    """``notes`` (newest first) with the newest ``REASSESSMENTS_LISTED`` re-assessments, and
    the count of the others (those left out before among them) said where the next would
    be: under the last listed, above any note older than them all."""
    listed, left_out, kept, at = [], 0, 0, None
    for note in notes:
        if note.startswith(REASSESSMENTS_LEFT_OUT):
            left_out += int(note.removeprefix(REASSESSMENTS_LEFT_OUT).split(" ", 1)[0])
            at = len(listed) if at is None else at
        elif note.startswith(REASSESSMENTS) and kept == REASSESSMENTS_LISTED:
            left_out += 1
            at = len(listed) if at is None else at
        else:
            kept += note.startswith(REASSESSMENTS)
            listed.append(note)
    if left_out:
        listed.insert(at, f"{REASSESSMENTS_LEFT_OUT}{left_out} (each in its history).")
    return listed


def reasons_after(
    note: str,
    reasons: Iterable[str],
    *,
    reassessed: bool = False,
    verdict_reasons: Iterable[str] | None = None,
) -> list[str]:
    """A proposal's reasons once ``note`` happened to it: the note first, then every note
    its reasons held (``NOTES``: each earlier re-assessment, edit, hold, re-routing or
    supersession still happened, whatever came after), in the order they were said, then
    the reasons of its verdict: ``verdict_reasons``, those of the verdict it was evaluated
    again with, if it was, else those it had. ``reassessed``: the note says what the
    proposal reads now (its figures were read again), so each earlier re-assessment reads
    as ``reassessment_note``. Nothing is said twice; past ``REASSESSMENTS_LISTED``
    re-assessments, the earliest are counted, not listed."""
    reasons = [str(reason) for reason in reasons]
    notes = [reason for reason in reasons if reason.startswith(NOTES)]
    if reassessed:
        notes = [reassessment_note(reason) for reason in notes]
    if verdict_reasons is None:
        verdict_reasons = [reason for reason in reasons if not reason.startswith(NOTES)]
    notes = _reassessments_listed(list(dict.fromkeys([note, *notes])))
    return list(dict.fromkeys([*notes, *verdict_reasons]))


def refreshed_facts(
    proposal: Proposal,
    assessed: AssessedAction,
    verdict: Verdict,
    note: str,
    routed_with: Mapping[int, int] | None = None,
) -> dict[str, Any]:
    """A proposal's fields after its action was edited or its target moved: the figures,
    risk and approvals needed follow the action as it now is; the routing record (outcome,
    policy and version, guardrail findings) stays as it was decided, with ``note`` and today's
    reasons added to what the operator reads, and the policy version those reasons were
    reached under, and when, recorded beside it (``reassessed_policy_version``). Approvals
    needed only rise: where the policies in force now ask for more than the routing version
    asked of it (its two-person rule included), a reason says which, since the page names
    that version and its terms (``routed_with``: ``approvals_routed_with`` of the proposals
    being refreshed, read here if not given)."""
    required = max(proposal.required_approvals, verdict.required_approvals)
    # What happened to it before (sent back to a person, edited, re-assessed) still did.
    reasons = reasons_after(
        note, proposal.verdict_reasons, reassessed=True, verdict_reasons=verdict.reasons
    )
    asks = verdict.required_approvals
    routed = (routed_with or approvals_routed_with([proposal])).get(
        proposal.pk, proposal.required_approvals
    )
    # Said even beside the two-person rule's own reason, which names the policy, not the
    # version asking (the page names the version that routed it).
    if required > routed:
        policy = f"policy “{verdict.policy_name}”"
        version = f"version {version_number(verdict.policy_id, verdict.policy_version)}"
        reasons.append(
            f"It now needs {required} distinct approvals: {policy} asks for {required} as it "
            f"stands ({version})."
            if asks == required
            else f"It still needs {required} distinct approvals, as asked when it was "
            f"re-assessed or edited before; {policy} asks for {asks} as it stands ({version})."
        )
    return {
        **assessed.proposal_fields(),
        "risk": verdict.risk,
        "required_approvals": required,
        "verdict_reasons": reasons,
        "verdict_held_by": held_by_records(verdict),
        # Its reasons and holds are now this verdict's: the version it was reached under is
        # the one that governs it (``approvals.selectors.verdict_policy_ref``).
        "reassessed_at": timezone.now(),
        "reassessed_policy_version": verdict.policy_version,
    }


# Proposals asked about in one statement (a statement's parameters are bounded: 32,766 on
# SQLite, 65,535 on PostgreSQL).
_ROUTED_AT_ONCE = 10_000


def approvals_routed_with(proposals: Iterable[Proposal]) -> dict[int, int]:
    """The approvals each proposal needed as it was routed, by proposal id: those its first
    routing record holds (``approvals.selectors.routings``), which the routing version's
    terms asked of it as its agent made it, its two-person rule included (a 22% move under
    "1 approval, 2 above 20.0%" needed 2 from the start, though the version's own required
    approvals are 1). A proposal with no such record is left out."""
    ids = [proposal.pk for proposal in proposals]
    first_routing = (
        Proposal.history.filter(id=OuterRef("id"))
        .exclude(verdict_outcome="")
        .order_by("history_id")
        .values("history_id")[:1]
    )
    routed: dict[int, int] = {}
    for start in range(0, len(ids), _ROUTED_AT_ONCE):
        routed.update(
            Proposal.history.filter(
                id__in=ids[start : start + _ROUTED_AT_ONCE],
                history_id=Subquery(first_routing),
            ).values_list("id", "required_approvals")
        )
    return routed


def held_by_records(verdict: Verdict) -> list[dict[str, object]]:
    return [hold.as_record() for hold in verdict.held_by]


def verdict_changes(verdict: Verdict, findings: GuardrailFindings) -> dict[str, Any]:
    return {
        "verdict_outcome": verdict.outcome,
        "verdict_policy_id": verdict.policy_id,
        "verdict_policy_version": verdict.policy_version,
        "verdict_reasons": list(verdict.reasons),
        "verdict_held_by": held_by_records(verdict),
        "guardrail_findings": findings.as_json(),
        "required_approvals": verdict.required_approvals,
        "risk": verdict.risk,
    }


def proposal_evaluate(*, proposal_id: int) -> Proposal:
    """Route a submitted proposal by policy: approve it, send it to a human, or block it."""
    with transaction.atomic():
        proposal = proposal_lock(proposal_id)
        if proposal.status != ProposalStatus.SUBMITTED:
            return proposal  # evaluated already (a redelivered task), or withdrawn
        action_type = action_types.named(proposal.action_type)

        def evaluate() -> tuple[Verdict, GuardrailFindings]:
            if reads_account_total(
                action_type=action_type, account=proposal.account, payload=proposal.payload
            ):
                accounts_lock([proposal.account])
            # Locked (after the proposal and, if its total judges it, the account, as
            # execution locks them) so that two proposals on one campaign, or on one capped
            # account, are evaluated one after the other and each counts the other's move.
            campaigns = campaigns_for(
                account=proposal.account,
                action_type=action_type,
                payload=proposal.payload,
                lock=True,
            )
            # Read under the campaigns' locks: what moves approved before it leave.
            ledger = (
                LedgerAhead.ahead_of([proposal], {proposal.account_id: campaigns})
                if action_type.ledger_may_refuse
                else None
            )
            # Read under the campaigns' locks, taken above.
            changed = changed_first(fields) if action_type.sets_values else {}
            told = _changed_first_said(
                action_type, fields, changed, ledger, proposal, agent_id=proposal.agent_id
            )
            verdict, findings = policy_verdict(
                action_type=action_type,
                account=proposal.account,
                agent=proposal.agent,
                payload=proposal.payload,
                campaigns=campaigns,
                magnitude=proposal.magnitude,
                magnitude_label=proposal.magnitude_label,
                amount=proposal.amount,
                effects={
                    target: factor_from_text(factor) for target, factor in proposal.effects.items()
                },
                proposal_id=proposal.pk,
                changed_first=told,
            )
            if not told:
                return verdict, findings
            named = _changed_first_said(action_type, fields, changed, ledger, proposal)
            return verdict, replace(findings, changed_first_named=tuple(named))

        fields = campaign_fields_changed(
            account_id=proposal.account_id, action_type=action_type, payload=proposal.payload
        )
        verdict, findings = verdict_policy_held(
            partial(
                verdict_or_engine_failure,
                evaluate,
                action_type=proposal.action_type,
                subject=f"proposal #{proposal.pk}",
            )
        )
        return proposal_transition(
            proposal_id=proposal_id,
            to_status=VERDICT_STATUS[verdict.outcome],
            actor=Actor.system("policy-engine"),
            reason=" ".join(verdict.reasons),
            changes={**verdict_changes(verdict, findings), "evaluated_at": timezone.now()},
        )


def proposal_withdraw(*, agent: Agent, proposal_id: int, note: str = "") -> Proposal:
    """An agent takes back its own proposal while it waits, saying why if it will (``note``,
    kept with the withdrawal for the people who read it). Once its review window has closed
    it is too late: the proposal expires instead, as the sweep would have expired it."""
    with transaction.atomic():
        proposal = proposal_lock(proposal_id)
        if proposal.agent_id != agent.pk:
            raise NotFound(f"There is no proposal #{proposal_id}.")
        if not review_window_closed(proposal, timezone.now()):
            note = note.strip()
            return proposal_transition(
                proposal_id=proposal_id,
                to_status=ProposalStatus.WITHDRAWN,
                actor=Actor.for_agent(agent),
                reason="withdrawn by the agent" + (f": {note}" if note else ""),
                changes={"withdrawn_by": WithdrawnBy.AGENT, "withdrawal_note": note},
            )
        proposals_expire_locked(proposals=[proposal])
    raise ReviewWindowClosed(proposal, "withdrawn")  # once the expiry is committed


def payload_seen(payload: Any) -> str:
    """A fingerprint of an action as a page shows it. A decision sent with the one its page
    showed is refused if the action has been edited since (another reviewer's edit under the
    two-person rule): a stale page never approves an action its reviewer did not see."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# What ``payload_seen`` gives: a value of another shape came from no page or message of ours.
SEEN_SHAPE = re.compile(r"[0-9a-f]{32}")


class EditedSinceSeen(Conflict):
    """A decision made on a page or message that showed the action before an edit: it
    decides nothing, and its message says so."""


def edited_since_seen(proposal: Proposal) -> Conflict:
    return EditedSinceSeen(
        f"Proposal #{proposal.pk} was edited since it was shown to you: it now reads "
        f"“{proposal.summary}”. Nothing was decided; read it again before you decide."
    )


def proposal_withdraw_for_agent(
    *, proposal_id: int, reviewer: AbstractBaseUser, note: str = "", seen: str | None = None
) -> Proposal:
    """A person withdraws a waiting proposal on the agent's behalf (say, its owner asked), by
    the rule of who may act on it: as much a decision on it as a rejection, and the agent
    learns it as one: the proposal says a reviewer withdrew it, with the ``note``, and the
    agent's feedback has it (``hooks.withdrawn_for_agents``). ``seen``: the ``payload_seen``
    of the action as the reviewer's page showed it, if known; one edited since is refused, as
    a decision is: a withdrawal from a stale page would end, unseen, the action a colleague
    made of it."""
    with transaction.atomic():
        proposal = proposal_lock(proposal_id)
        refusal = act_refusal(reviewer, proposal, Act.WITHDRAW)
        if refusal is None and seen is not None and payload_seen(proposal.payload) != seen:
            refusal = edited_since_seen(proposal)
        if refusal is None:
            actor = Actor.for_user(reviewer)
            note = note.strip()
            reason, said_to_agent = by_a_reviewer(
                "withdrawn", reviewer, " for the agent" + (f": {note}" if note else "")
            )
            proposal = proposal_transition(
                proposal_id=proposal_id,
                to_status=ProposalStatus.WITHDRAWN,
                actor=actor,
                reason=reason,
                said_to_agent=said_to_agent,
                changes={"withdrawn_by": WithdrawnBy.REVIEWER, "withdrawal_note": note},
            )
            hooks.withdrawn_for_agents(proposals=[proposal], actor=actor)
            return proposal
        if isinstance(refusal, ReviewWindowClosed):
            proposals_expire_locked(proposals=[proposal])
    raise refusal  # once the expiry, if any, is committed


def guardrail_blocks_counting_approved(
    proposals: Iterable[Proposal],
    *,
    lock: bool,
    spends: CappedSpends | None = None,
    counting_too: Sequence[Proposal] = (),
    campaigns: GuardrailCampaigns | None = None,
) -> dict[int, tuple[str, ...]]:
    """``guardrail_blocks_each`` for proposals a person is about to approve, with each
    account's total budget cap also counting the spend changes already approved on it and
    not yet executed (they run before these would, so these would fail then), the cap's words
    naming them. With ``lock``, the capped accounts are held first (after the proposals, as
    executing one holds them): none of those executes, and no other approval on them is
    judged, until the caller's transaction ends; without, a preview of what approving would
    find. ``spends``, if given, is left counting them, for a caller that goes on to count
    more (a bulk approval, those it approves before each). ``counting_too``: proposals
    counted as approved and not yet executed though they no longer are (what the guardrails
    found before they failed, or were sent back, or superseded before they ran).
    ``campaigns``: the ledger as the guardrails read it (``guardrail_campaigns``), if read
    already; ``spends`` then holds its capped accounts' campaigns too."""
    proposals = list(proposals)
    totalled = [
        proposal
        for proposal in proposals
        if reads_account_total(
            action_type=action_types.named(proposal.action_type),
            account=proposal.account,
            payload=proposal.payload,
        )
    ]
    if lock:
        accounts_lock(proposal.account for proposal in totalled)
    blocks = guardrail_blocks_each(proposals, campaigns=campaigns)
    totalled = [proposal for proposal in totalled if not blocks[proposal.pk]]
    accounts = {proposal.account_id: proposal.account for proposal in totalled}
    judged = {proposal.pk for proposal in proposals}
    under_way = list(
        Proposal.objects.filter(account_id__in=accounts, status__in=UNDER_WAY_STATUSES)
        .exclude(pk__in=judged)
        .only("pk", "account_id", "action_type", "payload", "approved_at")
        .order_by("approved_at", "pk")
    )
    if counting_too:
        under_way = sorted(
            [
                *under_way,
                *(
                    other
                    for other in counting_too
                    if other.account_id in accounts and other.pk not in judged
                ),
            ],
            key=lambda other: (other.approved_at is None, other.approved_at, other.pk),
        )
    ahead = [
        other
        for other in under_way
        if changes_spend(action_type=action_types.named(other.action_type), payload=other.payload)
    ]
    if not ahead:
        return blocks
    spends = CappedSpends() if spends is None else spends
    for other in ahead:
        action_type = action_types.named(other.action_type)
        account = accounts[other.account_id]
        spend = spends.of(action_type=action_type, account=account, payload=other.payload)
        campaigns = _campaigns_of(spend.campaigns, action_type, other.payload)
        if campaigns is None:
            continue  # one of its campaigns is gone: it fails when it runs, and sets nothing
        spends.count(
            action_type=action_type,
            account=account,
            payload=other.payload,
            campaigns=campaigns,
            approved_earlier=other.pk,
        )
    for proposal in totalled:
        action_type = action_types.named(proposal.action_type)
        spend = spends.of(
            action_type=action_type, account=proposal.account, payload=proposal.payload
        )
        campaigns = _campaigns_of(spend.campaigns, action_type, proposal.payload)
        if not spend.approved_earlier or campaigns is None:
            continue
        blocks[proposal.pk] = tuple(
            spends.blocks(
                action_type=action_type,
                account=proposal.account,
                payload=proposal.payload,
                campaigns=campaigns,
            )
        )
    return blocks


def _campaigns_of(
    campaigns: Mapping[str, Campaign], action_type: ActionType, payload: dict[str, Any]
) -> dict[str, Campaign] | None:
    """The campaigns the action touches, of ``campaigns``; None if one of them is gone."""
    touched = action_type.campaign_fields(payload)
    if not touched.keys() <= campaigns.keys():
        return None
    return {external_id: campaigns[external_id] for external_id in touched}
