"""Gathering what the policy engine needs to know, and asking it for a verdict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

from django.apps import apps
from django.db import connection
from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from audit.actors import changed_by
from hitlproject.errors import DomainError
from hitlproject.vocabulary import and_joined, as_sentence
from ledger.models import Account, Campaign, CampaignStatus
from policies import engine
from policies.guardrails import BrandRules, brand_findings, budget_cap_findings
from policies.models import (
    CUMULATIVE_WINDOW_BOUNDS,
    NAMED_APART,
    SCOPE_FIELDS,
    BrandGuidelines,
    CountedMove,
    KillSwitch,
    KillSwitchScope,
    Policy,
    RulesVersion,
    policy_name,
    records_named_apart,
    windows_out_of_bounds,
)


class ActionType(Protocol):
    """What the policies read of an action type (``approvals.action_types``, above them)."""

    name: str
    label: str
    magnitude_unit: str
    risk_weight: int
    always_human: bool
    changes_strategy: bool

    def campaign_fields(self, payload: dict[str, Any]) -> dict[str, Any]: ...
    def proposed_state(self, payload: dict[str, Any], campaigns: Any) -> dict[str, Any]: ...
    def texts(self, payload: dict[str, Any]) -> Any: ...
    def exact_magnitude(self, payload: dict[str, Any], effects: Any) -> Any: ...


class Agent(Protocol):
    """What the policies read of an agent (``approvals.models.Agent``, above them)."""

    pk: int
    kind: str


# An agent's approval rate is read from what people decided on its proposals, which the
# feedback app records, above this one: it registers its reader in its ``ready()``.
_approval_rate_reader: Callable[[Agent], float | None] | None = None


def approval_rate_reader_register(reader: Callable[[Agent], float | None]) -> None:
    global _approval_rate_reader
    _approval_rate_reader = reader


# What an account's channel refuses outright about an action (Google Ads: texts longer than
# it takes), in words: said by the executors app, which registers its reader in its ready(),
# so that policies never imports it. Called with account=, action_type=, payload=.
_channel_refusals: Callable[..., list[str]] | None = None


def channel_refusals_register(reader: Callable[..., list[str]]) -> None:
    global _channel_refusals
    _channel_refusals = reader


@dataclass
class HeldBackNow:
    """What a kill switch just engaged held back at once (``kill_switch_holds_apply``), by
    proposal id: ``held``, approved proposals not yet carried out, sent back to a person;
    ``sending``, those with a request at their channel, which the switch does not call back;
    ``passed``, those a person approved (or sent to run again) since it was engaged, which it
    lets run (a switch moved while engaged: approved by a person before the move). Of
    ``held``, ``after_attempts``: those held between two attempts, after one sent to the
    channel got no sure answer (they may have been carried out: not "not yet carried out")."""

    held: list[int] = field(default_factory=list)
    after_attempts: list[int] = field(default_factory=list)
    sending: list[int] = field(default_factory=list)
    passed: list[int] = field(default_factory=list)


# Holding back what a kill switch covers is the executor's (it sends approved proposals back
# to a person before an attempt): the executors app registers it in its ready(), so that
# policies never imports it. Called with switch=.
_kill_switch_holder: Callable[..., HeldBackNow] | None = None


def kill_switch_holder_register(holder: Callable[..., HeldBackNow]) -> None:
    global _kill_switch_holder
    _kill_switch_holder = holder


def kill_switch_holds_apply(*, switch: KillSwitch) -> HeldBackNow:
    """What ``switch``, engaged (or moved while engaged) in the caller's transaction, holds
    back, held back now: the save that engages it, the proposals' pages, the API and the
    dashboard then say the same thing at once, not after each proposal's next attempt."""
    if _kill_switch_holder is None or not switch.engaged:
        return HeldBackNow()
    return _kill_switch_holder(switch=switch)


# What a switch released (or moved off what it covered) leaves of the risks it raised is the
# proposals' (approvals re-assesses the waiting ones): the approvals app registers it in its
# ready(), so that policies never imports it. Called with switch= and covered= (what the
# switch covered, engaged, before the save: ``scope``, ``account_id``, ``channel``); returns
# the ids of the proposals whose risk it lowered.
_kill_switch_risks_reassessor: Callable[..., list[int]] | None = None


def kill_switch_risks_reassessor_register(reassessor: Callable[..., list[int]]) -> None:
    global _kill_switch_risks_reassessor
    _kill_switch_risks_reassessor = reassessor


def kill_switch_risks_reassess(*, switch: KillSwitch, covered: Mapping[str, Any]) -> list[int]:
    """In the caller's transaction (the save that released ``switch``, or moved it off
    ``covered`` while engaged): each proposal waiting for a person whose risk the switch
    raised, and that nothing else raises now, back to the risk the engine gives it without
    the switch, in its history with why. It still waits for a person."""
    if _kill_switch_risks_reassessor is None:
        return []
    return _kill_switch_risks_reassessor(switch=switch, covered=covered)


def rule_from_policy(policy: Policy, version: int | None = None) -> engine.Rule:
    return engine.Rule(
        policy_id=policy.id,  # a historical record's pk is its history id
        name=policy_name(policy.name, is_draft=policy.is_draft),
        action_type=policy.action_type,
        agent_id=policy.agent_id,
        account_id=policy.account_id,
        agent_kind=policy.agent_kind,
        channel=policy.channel,
        priority=policy.priority,
        auto_execute_max_magnitude=policy.auto_execute_max_magnitude,
        auto_execute_max_amount=policy.auto_execute_max_amount,
        block_above_magnitude=policy.block_above_magnitude,
        block_above_amount=policy.block_above_amount,
        always_review=policy.always_review,
        cumulative_max_magnitude=policy.cumulative_max_magnitude,
        cumulative_window=policy.cumulative_window,
        required_approvals=policy.required_approvals,
        more_approvals_above_magnitude=policy.more_approvals_above_magnitude,
        more_approvals_above_amount=policy.more_approvals_above_amount,
        approvals_above_threshold=policy.approvals_above_threshold,
        review_window=policy.review_window,
        version=version,
    )


def version_number(policy_id: int, history_id: int | None) -> int | None:
    """A policy version's number among that policy's own versions, as its owner counts them
    (1: as first saved), from its history record (the number the routing records, shared by
    every policy's records); None where that record is not on record."""
    if history_id is None:
        return None
    counted = Policy.history.filter(id=policy_id, history_id__lte=history_id).aggregate(
        up_to=Count("pk"), this=Count("pk", filter=Q(history_id=history_id))
    )
    return counted["up_to"] if counted["this"] else None


def version_number_of(policy_id: Any, history_id: Any) -> Subquery:
    """``version_number`` as an expression, for many rows at once: ``policy_id`` and
    ``history_id`` are references into an outer query (``OuterRef``). NULL where that record
    is not on record."""
    return Subquery(
        Policy.history.filter(id=policy_id, history_id__lte=history_id)
        .order_by()
        .values("id")
        .annotate(up_to=Count("pk"), this=Count("pk", filter=Q(history_id=history_id)))
        .filter(this=1)
        .values("up_to")[:1]
    )


def versions_count(policy_id: int) -> int:
    """How many versions a policy has had: the number of its latest."""
    return Policy.history.filter(id=policy_id).count()


def rules_in_force(*, action_type: str | None = None) -> list[engine.Rule]:
    """The active, non-draft policies as rules, each with its current history version."""
    return policies_in_force(action_types=None if action_type is None else {action_type})[0]


def policies_in_force(
    *, action_types: Iterable[str] | None = None
) -> tuple[list[engine.Rule], dict[int, Policy]]:
    """The active, non-draft policies (of these action types, or all) as rules, each with its
    current history version; and the policies themselves, by id, each with ``version`` (that
    version's history record) and ``version_number`` (its number, as ``version_number``
    counts)."""
    history = apps.get_model("policies", "HistoricalPolicy").objects
    # Its version's number read with it, in the same statement (one snapshot): what a
    # proposal it routes is answered with (``verdict.policy.number``), with no query per item.
    policies = Policy.objects.filter(is_active=True, is_draft=False).annotate(
        version=Subquery(
            history.filter(id=OuterRef("pk")).order_by("-history_id").values("history_id")[:1]
        ),
        version_number=Subquery(
            history.filter(id=OuterRef("pk"))
            .order_by()
            .values("id")
            .annotate(versions=Count("pk"))
            .values("versions")[:1]
        ),
    )
    if action_types is not None:
        policies = policies.filter(action_type__in=sorted(action_types))
    by_id = {policy.pk: policy for policy in policies}
    rules = [rule_from_policy(policy, policy.version) for policy in by_id.values()]
    return rules, by_id


@dataclass(frozen=True)
class InForce:
    """The rules in force, the policies behind them and the engaged kill switches (and what
    else the token covers, as first asked for: ``read_once``), as read under one
    ``RulesVersion`` token. Kept by the process and shared by its threads: read, never
    changed (but for the agents' keys, a store each request adds the key it found to)."""

    token: str | None
    rules: tuple[engine.Rule, ...]
    policies: dict[int, Policy]
    kill_switches: tuple[KillSwitch, ...]
    # Other reads of what the token covers (the notification routes: notifications.selectors
    # .routing), each made at most once under the token (``read_once``).
    also_read: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def read_once(self, name: str, read: Callable[[], Any]) -> Any:
        """What ``read()`` answers, read the first time it is asked for under this token and
        kept with the rules (by whichever thread asks first; another may read it too)."""
        if name not in self.also_read:
            self.also_read[name] = read()
        return self.also_read[name]

    def rules_for(self, action_types: set[str]) -> tuple[list[engine.Rule], dict[int, Policy]]:
        """As ``policies_in_force(action_types=...)`` answers."""
        rules = [rule for rule in self.rules if rule.action_type in action_types]
        return rules, {rule.policy_id: self.policies[rule.policy_id] for rule in rules}


_kept: InForce | None = None
# The rules as the unit of work under way first read them (``in_force_read_once``), if it
# keeps them: an empty list until then.
_read_for_work: ContextVar[list[InForce] | None] = ContextVar("read_for_work", default=None)


@contextmanager
def in_force_read_once() -> Iterator[None]:
    """Within it, the rules in force are read once: the first ``in_force()`` reads them (the
    token), the others take what it read. For a unit of work that asks for them in several
    places and means them to agree (a submission's evaluation, then its decision deadlines
    and the routing of its messages, in one transaction): one statement, not one in each."""
    reset = _read_for_work.set([])
    try:
        yield
    finally:
        _read_for_work.reset(reset)


def in_force() -> InForce:
    """The rules in force and the engaged kill switches, as of now (or as the unit of work
    under way read them: ``in_force_read_once``). Kept by the process between requests under
    the ``RulesVersion`` token it read them at: one statement (the token) while it holds,
    which the database changes in the same transaction as every write to what they are read
    from; read again when it does not."""
    read_for_work = _read_for_work.get()
    if read_for_work:
        return read_for_work[0]
    current = _in_force_now()
    if read_for_work is not None:
        read_for_work.append(current)
    return current


def _in_force_now() -> InForce:
    global _kept
    with connection.cursor() as cursor:  # read at every submission: no ORM to build it
        table = connection.ops.quote_name(RulesVersion._meta.db_table)
        cursor.execute(f"SELECT token FROM {table} WHERE id = 1")
        row = cursor.fetchone()
    token = row[0] if row else None
    kept = _kept
    if kept is not None and token is not None and kept.token == token:
        return kept
    rules, policies = policies_in_force()
    kill_switches = KillSwitch.objects.filter(engaged=True).select_related("account")
    fresh = InForce(
        token=token,
        rules=tuple(rules),
        policies=policies,
        kill_switches=tuple(kill_switches_told_apart(kill_switches.order_by("pk"))),
    )
    if token is not None:  # no row (a database emptied by hand): read every time
        _kept = fresh
    return fresh


@dataclass(frozen=True)
class DecidesInstead:
    """A live policy that decides instead of another where both match: on the part of that
    one's scope they share (``agent``, ``agent_kind``, ``account``, ``channel``: the overlap,
    blank where any), it is the more specific, so the engine picks it
    (``engine.matching_rule``) and none of the other's settings hold there."""

    policy: Policy
    agent: Any
    agent_kind: str
    account: Account | None
    channel: str


def _rank(policy: Policy) -> tuple[int, int, int]:
    """A policy's rank among those matching a proposal, as ``engine.Rule`` ranks its rule."""
    return (rule_from_policy(policy).specificity, policy.priority, -policy.pk)


def _same_scope(one: Policy, other: Policy) -> bool:
    return all(getattr(one, name) == getattr(other, name) for name in SCOPE_FIELDS)


def _overlap(one: Policy, other: Policy) -> DecidesInstead | None:
    """Where both policies match (with ``other`` as the one deciding there), or None where no
    proposal matches both: another action type, agent, agent kind, account or channel, or an
    agent of another kind, an account on another channel."""
    if one.action_type != other.action_type:
        return None
    for name in ("agent_id", "account_id", "agent_kind", "channel"):
        mine, theirs = getattr(one, name), getattr(other, name)
        if mine and theirs and mine != theirs:
            return None
    agent = one.agent if one.agent_id else other.agent if other.agent_id else None
    account = one.account if one.account_id else other.account if other.account_id else None
    agent_kind = one.agent_kind or other.agent_kind
    channel = one.channel or other.channel
    if agent is not None and agent_kind and agent.kind != agent_kind:
        return None
    if account is not None and channel and account.channel != channel:
        return None
    return DecidesInstead(
        policy=other,
        agent=agent,
        agent_kind="" if agent is not None else agent_kind,
        account=account,
        channel="" if account is not None else channel,
    )


def live_policies(*, action_types: Iterable[str] | None = None) -> list[Policy]:
    """The live policies (active, not drafts), with their agent and account, to ask
    ``policies_deciding_instead`` of many policies with one query."""
    live = Policy.objects.filter(is_active=True, is_draft=False).select_related("agent", "account")
    if action_types is not None:
        live = live.filter(action_type__in=sorted(action_types))
    return list(live.order_by("pk"))


def policies_deciding_instead(
    policy: Policy, *, live: Sequence[Policy] | None = None
) -> list[DecidesInstead]:
    """The live policies that decide instead of ``policy`` for part of its scope: more
    specific ones whose scope overlaps its own (an agent's own copy on an account, which an
    autonomy recommendation makes, of a policy for every agent), each with the part they
    share. Not those of its very scope (``Policy.outranked_by`` says those), nor one that
    itself decides nothing (outranked on its whole scope). None for a draft or a policy
    switched off: it decides nothing live. ``live``: ``live_policies()``, read once for
    many."""
    if policy.is_draft or not policy.is_active:
        return []
    if live is None:
        live = live_policies(action_types=[policy.action_type])
    deciding: dict[tuple, Policy] = {}  # of each scope, the one that outranks the others
    for other in live:
        if other.action_type != policy.action_type:
            continue
        scope = tuple(getattr(other, name) for name in SCOPE_FIELDS)
        if scope not in deciding or _rank(other) > _rank(deciding[scope]):
            deciding[scope] = other
    own_rank = _rank(policy)
    found = []
    for other in deciding.values():
        if other.pk == policy.pk or _same_scope(policy, other) or _rank(other) < own_rank:
            continue
        overlap = _overlap(policy, other)
        if overlap is not None:
            found.append(overlap)
    # The most specific first: where it decides, the others listed do not either.
    found.sort(key=lambda each: (-_rank(each.policy)[0], each.policy.name, each.policy.pk))
    return found


def policy_in_force(*, action_type: str, agent: Agent, account: Account) -> Policy | None:
    """The live policy that decides this agent's actions of this type on this account."""
    return policies_in_force_each([(action_type, agent, account)])[0]


def policies_in_force_each(
    asked: Sequence[tuple[str, Agent, Account]],
) -> list[Policy | None]:
    """``policy_in_force`` of each (action type, agent, account) asked, in order, read in one
    statement whatever their number (none if none is asked): for a page, a decision set or a
    sending that asks it of many proposals. Each policy with ``version_number``, the number
    of its latest version (``versions_count``), read in the same statement."""
    rules, policies = policies_in_force(action_types={action_type for action_type, _, _ in asked})
    found = []
    for action_type, agent, account in asked:
        rule = deciding_rule(rules, action_type=action_type, agent=agent, account=account)
        found.append(policies[rule.policy_id] if rule else None)
    return found


def deciding_rule(
    rules: Iterable[engine.Rule], *, action_type: str, agent: Agent, account: Account
) -> engine.Rule | None:
    """The rule of ``rules`` that decides this agent's actions of this type on this account,
    matched as a submission's evaluation matches it (``EvaluationContext.verdict``): the most
    specific, then the higher priority, then the older (``engine.matching_rule``)."""
    scope = engine.Scope(
        action_type=action_type,
        account_id=account.pk,
        channel=account.channel,
        agent_id=agent.pk,
        agent_kind=agent.kind,
    )
    return engine.matching_rule(scope, rules)


def kill_switches_engaged_over(account: Any, channel: Any) -> QuerySet[KillSwitch]:
    """The kill switches engaged over an account on a channel: everything's, the account's,
    the channel's. ``account`` and ``channel`` may be references into an outer query
    (``OuterRef``), to ask about many accounts' proposals at once."""
    return KillSwitch.objects.filter(engaged=True).filter(
        Q(scope=KillSwitchScope.GLOBAL)
        | Q(scope=KillSwitchScope.ACCOUNT, account=account)
        | Q(scope=KillSwitchScope.CHANNEL, channel=channel)
    )


def _covers(switch: KillSwitch, account: Account) -> bool:
    return (
        switch.scope == KillSwitchScope.GLOBAL
        or (switch.scope == KillSwitchScope.ACCOUNT and switch.account_id == account.pk)
        or (switch.scope == KillSwitchScope.CHANNEL and switch.channel == account.channel)
    )


def kill_switches_covering(switches: Iterable[KillSwitch], account: Account) -> list[KillSwitch]:
    """Of ``switches`` (those engaged, read once for many accounts' proposals), the ones over
    ``account`` or its channel, in their order."""
    return [switch for switch in switches if _covers(switch, account)]


def engaged_kill_switches(account: Account) -> list[KillSwitch]:
    return kill_switches_told_apart(
        kill_switches_engaged_over(account, account.channel)
        .select_related("account")
        .order_by("pk")
    )


def kill_switches_told_apart(switches: Iterable[KillSwitch]) -> list[KillSwitch]:
    """``switches``, engaged, read with every engaged switch over their scopes (all engaged,
    or those over one account), each told whether another of them covers the very same scope:
    named apart then (``kill_switch_named``), with no query each."""
    switches = list(switches)
    scopes = Counter(switch.very_scope() for switch in switches)
    for switch in switches:
        setattr(switch, NAMED_APART, scopes[switch.very_scope()] > 1)
    return switches


# How a kill switch's finding begins (``kill_switch_reason``), for a page that tells it apart.
KILL_SWITCH_FINDING = "The kill switch on "


def kill_switch_reason(switch: KillSwitch) -> str:
    """The switch and the policy owner's reason for it, as a sentence of its own."""
    return f"{kill_switch_named(switch)}{_ENGAGED}{as_sentence(switch.reason)}"


_ENGAGED = " is engaged: "
# What follows a switch's name in its finding (``kill_switch_reason``): a name looked for in
# a reason ends there ("… on account demo" is not "… on account demo (#8)").
KILL_SWITCH_NAME_ENDS = _ENGAGED


# When a switch's finding was recorded with a proposal: as it was routed, or as it was about
# to run and the switch held it back (its reasons then begin "Held back before executing:"),
# or between two attempts, after one sent to the channel got no sure answer ("Held back
# before its next attempt:": it may have run).
WHEN_ROUTED = "when it was routed"
WHEN_HELD_BACK = "when it was held back before executing"
WHEN_HELD_BACK_BETWEEN = "when it was held back before its next attempt"


def kill_switch_reason_released(
    finding: str, *, none_covers_now: bool = True, when: str = WHEN_ROUTED
) -> str:
    """A kill switch's finding (``kill_switch_reason``), for a proposal it no longer covers
    (``none_covers_now``: nor does any other switch), engaged then (``when``: as it was
    routed, or as the switch held it back before executing)."""
    finding = finding.replace(_ENGAGED, f" was engaged {when}: ", 1)
    if none_covers_now:
        return f"{finding} Released since: no kill switch covers it now."
    return f"{finding} Released since."


def kill_switch_called(switch: KillSwitch) -> str:
    """What a switch is on, as its messages name it ("account demo", "account demo (#7)"
    where another engaged switch covers the same scope: ``kill_switch_named``)."""
    return switch.called()


def kill_switch_called_as_saved(switch: KillSwitch, *, at: datetime) -> str:
    """What a switch's message names it: as ``kill_switch_called`` did at its save that
    queued the message (its last historical record written by ``at``, the message's
    writing, read with whether it was named apart then: ``records_named_apart``), not as
    things stand when it goes, ten seconds on. A second switch engaged on account demo is
    "account demo (#2)" in its message though the first was released before it went, as
    the proposals it routed then name it; the first's release, "account demo (#1)" where
    the second was still there. As things stand now, where its history has no such record."""
    record = (
        records_named_apart(switch.history.filter(history_date__lte=at))
        .select_related("account")
        .order_by("-history_id")
        .first()
    )
    if record is None:
        return kill_switch_called(switch)
    named = record.instance.scope_in_words()
    return f"{named} (#{switch.pk})" if getattr(record, NAMED_APART) else named


def kill_switch_called_on(switch: KillSwitch, covered: KillSwitch) -> str:
    """What ``switch``, engaged, was called on what it covered (``covered``, unsaved, its
    scope before a save moved it), as things stood at that save: with its number where
    another engaged switch covers that very scope (``KillSwitch.named_apart``)."""
    others = KillSwitch.objects.filter(
        engaged=True, scope=covered.scope, account_id=covered.account_id, channel=covered.channel
    ).exclude(pk=switch.pk)
    named = covered.scope_in_words()
    return f"{named} (#{switch.pk})" if others.exists() else named


def kill_switch_named(switch: KillSwitch) -> str:
    """How a switch's finding opens, up to "is engaged", naming it as its title and the
    console's messages do (``KillSwitch.scope_in_words``): "The kill switch on account demo",
    "… on channel Google Ads", "… on everything"; where another engaged switch covers the
    very same scope, with its number, as its page's address has it ("The kill switch on
    account demo (#7)"): two switches on one account were both "the kill switch on account
    demo" in a proposal's findings, the messages and a release's words."""
    return f"{KILL_SWITCH_FINDING}{switch.called()}"


def kill_switch_names(switch: KillSwitch) -> frozenset[str]:
    """Every way a finding recorded with a proposal may open for this switch: named by its
    scope, with its number or not (``kill_switch_named``, whichever it was when recorded),
    and as findings recorded before named it, by its account alone or its channel's code
    ("The kill switch on demo", "… on google_ads"): how a finding is told to be that
    switch's, whatever its reason says and whenever recorded. Named by its scope alone, a
    finding is either switch's where two covered the same scope."""
    named = f"{KILL_SWITCH_FINDING}{switch.scope_in_words()}"
    formerly = f"{KILL_SWITCH_FINDING}{switch.account or switch.channel or 'everything'}"
    return frozenset({named, f"{named} (#{switch.pk})", formerly})


def kill_switch_named_in(finding: str) -> str:
    """How a kill switch's finding names its switch ("The kill switch on account demo"),
    to be looked up among ``kill_switch_names``; "" for any other finding."""
    if not finding.startswith(KILL_SWITCH_FINDING) or _ENGAGED not in finding:
        return ""
    return finding.partition(_ENGAGED)[0]


def kill_switches_engaged_then(
    switches: Iterable[KillSwitch],
    runs: Mapping[int, KillSwitchRun],
    *,
    recorded_at: datetime | None,
) -> list[KillSwitch]:
    """Of ``switches`` (engaged now), those whose run (``runs``, ``kill_switch_runs``) began
    by ``recorded_at``, when a proposal's findings were recorded: one engaged since, though
    named alike ("the kill switch on account demo": the same switch released and engaged
    again, or another engaged on that scope after the one that routed it was released), is
    not the switch its findings name. All of them where ``recorded_at`` is unknown."""
    switches = list(switches)
    if recorded_at is None:
        return switches
    return [
        switch
        for switch in switches
        if (began := _run(runs, switch).began_at) is None or began <= recorded_at
    ]


def kill_switch_finding_now(
    finding: str,
    engaged_now: Collection[str],
    *,
    when: str = WHEN_ROUTED,
    moved: Mapping[str, str] | None = None,
    none_covers_said: bool = True,
) -> str:
    """A reason or finding recorded with a proposal, as it stands now: a kill switch's ("The kill
    switch on account demo is engaged: …") says the switch was engaged when it was routed and is
    released since, unless that switch is engaged now (``engaged_now``: the switches engaged over
    its account, engaged when it was recorded: ``kill_switches_engaged_then``), or was moved while
    engaged to cover something else (``moved``, as ``kill_switches_moved_off`` says it); any other,
    as recorded. Where none covers the proposal now, it says so (": no kill switch covers it now"),
    unless ``none_covers_said`` is false: a page that says it once, below its lines, does not say it
    in each of them (``kill_switch_gone``)."""
    named = kill_switch_named_in(finding)
    if not named or named in engaged_now:
        return finding
    none_covers_now = not engaged_now and none_covers_said
    if moved and named in moved:
        finding = finding.replace(_ENGAGED, f" was engaged {when}: ", 1)
        here = ": no kill switch covers it now." if none_covers_now else "."
        return f"{finding} {KILL_SWITCH_MOVED_TO}{moved[named]} since, engaged there{here}"
    return kill_switch_reason_released(finding, none_covers_now=none_covers_now, when=when)


def kill_switch_gone(
    finding: str, engaged_now: Collection[str], *, moved: Mapping[str, str] | None = None
) -> str:
    """What became of the switch a finding names, as ``kill_switch_finding_now`` says it:
    "released", or "moved to account acme" (``moved``); "" where it is engaged over the
    proposal now (``engaged_now``), or the finding is no kill switch's."""
    named = kill_switch_named_in(finding)
    if not named or named in engaged_now:
        return ""
    if moved and named in moved:
        return f"moved to {moved[named]}"
    return "released"


# How a finding of a switch moved off what it covered says so (``kill_switch_finding_now``).
KILL_SWITCH_MOVED_TO = "Moved to "


def kill_switches_moved_off() -> dict[str, str]:
    """Each way a finding names what an engaged switch covered earlier in its run and covers
    no longer (``kill_switch_names`` of each version of it since its last engaging), with
    what it covers now, in words: a finding of a switch moved while engaged is not said
    released."""
    moved: dict[str, str] = {}
    for switch in KillSwitch.objects.filter(engaged=True).select_related("account"):
        engaging, _ = kill_switch_last_run(switch)
        if engaging is None:
            continue
        now = kill_switch_names(switch)
        records = switch.history.filter(history_id__gte=engaging.history_id, engaged=True)
        for record in records.select_related("account")[:200]:
            for name in kill_switch_names(record.instance) - now:
                moved[name] = switch.scope_in_words()
    return moved


@dataclass(frozen=True)
class KillSwitchRun:
    """An engaged switch's run since its last engaging: where that began (its record's
    ``history_id``), and every name a finding may have given it meanwhile
    (``kill_switch_names`` of each version of it, moved or not)."""

    began: int
    names: frozenset[str]
    # When it began, as its engaging record dates it; None where its history has none.
    began_at: datetime | None = None


def kill_switch_runs() -> dict[int, KillSwitchRun]:
    """Each engaged switch's run (``KillSwitchRun``), by its id: read once for a page, or for
    all the rows of a list."""
    return kill_switch_runs_of(KillSwitch.objects.filter(engaged=True).select_related("account"))


def kill_switch_runs_of(switches: Iterable[KillSwitch]) -> dict[int, KillSwitchRun]:
    """The runs (``KillSwitchRun``) of ``switches``, engaged, by their ids."""
    runs = {}
    for switch in switches:
        engaging, _ = kill_switch_last_run(switch)
        if engaging is None:
            runs[switch.pk] = KillSwitchRun(0, kill_switch_names(switch))
            continue
        records = switch.history.filter(history_id__gte=engaging.history_id, engaged=True)
        versions = [record.instance for record in records.select_related("account")[:200]]
        names = frozenset().union(*map(kill_switch_names, [switch, *versions]))
        runs[switch.pk] = KillSwitchRun(engaging.history_id, names, engaging.history_date)
    return runs


def kill_switches_found_in(
    findings: Iterable[str],
    switches: Iterable[KillSwitch],
    runs: Mapping[int, KillSwitchRun],
    *,
    recorded_at: datetime | None = None,
) -> frozenset[int]:
    """The ids of those of ``switches`` (engaged now) that ``findings`` (recorded with a
    proposal) name: a switch by any name it went by in its run (``runs``,
    ``kill_switch_runs``), so that one moved since, renamed by what it covers, is still the
    one found; a name with its number, that switch alone; a name by scope alone (no other
    engaged switch shared that scope when it was recorded), one switch only, the one engaged
    longest of those it may be: two switches on one account are not both found by it. Of
    those engaged when the findings were recorded (``recorded_at``,
    ``kill_switches_engaged_then``) only: one engaged since is not found by a name alike."""
    named = {kill_switch_named_in(str(finding)) for finding in findings} - {""}
    found: set[int] = set()
    switches = kill_switches_engaged_then(switches, runs, recorded_at=recorded_at)
    ordered = sorted(switches, key=lambda switch: (_run(runs, switch).began, switch.pk))
    for name in named:
        for switch in ordered:
            if name in _run(runs, switch).names:
                found.add(switch.pk)
                break
    return frozenset(found)


def _run(runs: Mapping[int, KillSwitchRun], switch: KillSwitch) -> KillSwitchRun:
    return runs.get(switch.pk) or KillSwitchRun(0, kill_switch_names(switch))


@dataclass(frozen=True)
class StillEngagedOver:
    """The engaged kill switches over what a switch covers (or covered): ``whole``, each of
    which covers all of it; ``part``, each of which covers some of it (an account's switch
    within a channel's, any within everything's)."""

    whole: tuple[KillSwitch, ...]
    part: tuple[KillSwitch, ...]

    def said(self, *, nothing: str, runs_again: str) -> str:
        """What still holds it back, in words: ``nothing`` ("Nothing it covered", "Nothing
        on account demo") runs without a person yet, where one covers all of it; or
        ``runs_again`` ("What it covered runs as its policies say again") except what one
        covers; "" where none does."""
        if self.whole:
            return (
                f"{nothing} runs without a person yet: {_named(self.whole)} "
                f"{'is' if len(self.whole) == 1 else 'are'} still engaged over all of it."
            )
        if self.part:
            covers, it = ("covers", "it holds") if len(self.part) == 1 else ("cover", "they hold")
            return (
                f"{runs_again}, except what {_named(self.part)} {covers}: still engaged, "
                f"{it} that back."
            )
        return ""


def _named(switches: Sequence[KillSwitch]) -> str:
    return and_joined([kill_switch_named(switch).replace("The", "the", 1) for switch in switches])


def kill_switches_still_over(
    covered: KillSwitch, *, besides: int | None, at: datetime | None = None
) -> StillEngagedOver:
    """The switches engaged now (but ``besides``, a switch's id) over what ``covered``
    covers, read by its scope (``scope``, ``account_id``, ``channel``), as the executor holds
    them (``kill_switches_engaged_over``): what a switch released (or moved) leaves held by
    others, named rather than hedged ("unless another kill switch covers it"). Where ``at``
    is given (a message's writing, at the save that queued it), each engaged then on what it
    covers now is named as things stood then (``kill_switches_engaged_at``), as the rest of
    the message names its switch (``kill_switch_called_as_saved``) and the proposals routed
    then name it: its email named them as they stood when it went, ten seconds on ("account
    demo" of one that shared that account with another at the save). Which are engaged is
    said as things stand: "still engaged" is read as the present."""
    engaged = kill_switches_told_apart(
        KillSwitch.objects.filter(engaged=True).select_related("account").order_by("pk")
    )
    if at is not None:
        then = {switch.pk: switch for switch in kill_switches_engaged_at(at)}
        for switch in engaged:
            was = then.get(switch.pk)
            if was is not None and was.very_scope() == switch.very_scope():
                setattr(switch, NAMED_APART, getattr(was, NAMED_APART))
    if besides is not None:
        engaged = [switch for switch in engaged if switch.pk != besides]
    for switch in engaged:  # named apart from the one its words name beside it
        if switch.very_scope() == covered.very_scope():
            setattr(switch, NAMED_APART, True)
    whole, part = [], []
    for switch in engaged:
        if switch.scope == KillSwitchScope.GLOBAL:
            whole.append(switch)
        elif covered.scope == KillSwitchScope.GLOBAL:
            part.append(switch)
        elif covered.scope == KillSwitchScope.ACCOUNT:
            if switch.account_id == covered.account_id or (
                switch.scope == KillSwitchScope.CHANNEL
                and switch.channel == covered.account.channel
            ):
                whole.append(switch)
        elif switch.scope == KillSwitchScope.CHANNEL:
            if switch.channel == covered.channel:
                whole.append(switch)
        elif switch.account.channel == covered.channel:
            part.append(switch)
    return StillEngagedOver(tuple(whole), tuple(part))


def kill_switches_engaged_at(at: datetime) -> list[KillSwitch]:
    """The switches engaged at ``at``, each as its last historical record written by then
    has it (deleted ones left out), told apart as things stood then
    (``kill_switches_told_apart``): in one statement, however many."""
    history = KillSwitch.history.model
    last = (
        history.objects.filter(history_date__lte=at)
        .values("id")
        .annotate(last=Max("history_id"))
        .values("last")
    )
    records = (
        history.objects.filter(history_id__in=last, engaged=True)
        .exclude(history_type="-")
        .select_related("account")
        .order_by("id")
    )
    switches = []
    for record in records:
        switch = record.instance
        switch.account = record.account  # read with it, not asked again when named
        switches.append(switch)
    return kill_switches_told_apart(switches)


def kill_switch_covered_before(switch: KillSwitch) -> list[str]:
    """What else the switch covered in its history, in words (``scope_in_words``), as the
    findings of the proposals it sent to a person then name it, the latest first; read in
    one statement."""
    covered = (
        switch.history.exclude(
            scope=switch.scope, account_id=switch.account_id, channel=switch.channel
        )
        .select_related("account")
        .order_by("-history_id")
    )
    said = []
    for record in covered[:200]:
        version = record.instance
        version.account = record.account  # read with it, not asked again when named
        said.append(version.scope_in_words())
    return [named for named in dict.fromkeys(said) if named != switch.scope_in_words()]


def kill_switch_last_run(switch: KillSwitch) -> tuple[Any, Any]:
    """The historical records of the switch's last engaging and, if it is released now, of
    its release (None where its history has none): editing its reason while engaged does not
    engage it again, nor while released release it again. Its records are read in the order
    they were written (``history_id``): their ``history_date`` is the clock of the host that
    wrote each, and a web host's and a worker's can disagree by seconds."""
    history = switch.history.order_by("-history_id").only(
        "history_date", "engaged", "history_actor_kind", "history_actor"
    )
    engaging = released = None
    for record in history[:200]:
        if not record.engaged:
            if engaging is not None:
                break
            released = record
            continue
        engaging = record
    return engaging, released


def kill_switch_engaged_since(switch: KillSwitch) -> datetime:
    """When an engaged switch was last engaged, by its history (its last change, if it has
    none)."""
    engaging, _ = kill_switch_last_run(switch)
    return engaging.history_date if engaging else switch.updated_at


@dataclass(frozen=True)
class KillSwitchMove:
    """A switch moved while engaged to cover something else: when, by whom, off what (in
    words, as ``KillSwitch.scope_in_words`` said it then)."""

    at: datetime
    by: str
    moved_from: str


def kill_switch_last_move(switch: KillSwitch, *, engaging: Any) -> KillSwitchMove | None:
    """The last save of the switch's run from ``engaging`` (its last engaging's record,
    ``kill_switch_last_run``) that changed what it covers, by its history; None where none
    did: what it covers now, it has covered since then, not since it was engaged."""
    if engaging is None:
        return None
    records = switch.history.filter(history_id__gte=engaging.history_id, engaged=True).order_by(
        "history_id"
    )
    moved, before = None, None
    for record in records.select_related("account")[:200]:
        covers = (record.scope, record.account_id, record.channel)
        if before is not None and covers != (before.scope, before.account_id, before.channel):
            moved = KillSwitchMove(
                at=record.history_date,
                by=changed_by(record),
                moved_from=before.instance.scope_in_words(),
            )
        before = record
    return moved


@dataclass(frozen=True)
class EngagedKillSwitch:
    """An engaged kill switch as the dashboard says it: over what, since when, by whom, and
    (``moved``) since when over that, where it was moved there while engaged."""

    switch: KillSwitch
    scope: str
    since: datetime
    engaged_by: str
    moved: KillSwitchMove | None = None


def kill_switches_engaged_now() -> list[EngagedKillSwitch]:
    """Every engaged kill switch, the longest engaged first, with who engaged it when, by its
    history ("not recorded" where it has none)."""
    engaged = []
    for switch in KillSwitch.objects.filter(engaged=True).select_related("account"):
        engaging, _ = kill_switch_last_run(switch)
        engaged.append(
            EngagedKillSwitch(
                switch=switch,
                scope=switch.scope_in_words(),
                since=engaging.history_date if engaging else switch.updated_at,
                engaged_by=changed_by(engaging) if engaging else "not recorded",
                moved=kill_switch_last_move(switch, engaging=engaging),
            )
        )
    return sorted(engaged, key=lambda found: (found.since, found.switch.pk))


@dataclass(frozen=True)
class GuardrailFindings:
    """What was found about an action as it was routed, besides the rules: what the
    guardrails refuse and send to a person, and why it would only be superseded once it runs
    (``changed_first``). Recorded with the verdict, whatever the verdict (a block reads no
    further, so its held_by names none of the rest), so that a replay under a draft that lifts
    the block still finds what else held it."""

    blocks: tuple[str, ...] = ()
    reviews: tuple[str, ...] = ()
    # In its agent's words, as its verdict's reasons say them (another agent's proposal not
    # named: an agent reads only its own).
    changed_first: tuple[str, ...] = ()
    # The same, each as a person who reads every proposal is told it (the console, the
    # messages to the people who decide, the what-if): naming each proposal by id.
    changed_first_named: tuple[str, ...] = ()

    def as_json(self) -> dict[str, list[str]]:
        found = {"block": list(self.blocks), "review": list(self.reviews)}
        if self.changed_first:
            found["changed_first"] = list(self.changed_first)
            named = self.changed_first_named
            if len(named) == len(self.changed_first) and named != self.changed_first:
                found["changed_first_named"] = list(named)
        return found


def named_for_people(findings: object) -> dict[str, str]:
    """A routing's reasons that a proposal approved ahead of it made (``changed_first``) as
    its agent was told them, each with how a person who reads every proposal is told it
    (``changed_first_named``), from what its routing recorded (``guardrail_findings``);
    none where they read alike, or were recorded before both were."""
    if not isinstance(findings, dict):
        return {}
    told, named = findings.get("changed_first") or [], findings.get("changed_first_named") or []
    if len(told) != len(named):
        return {}
    return {str(agent): str(person) for agent, person in zip(told, named, strict=True)}


def guardrail_blocks(
    *,
    action_type: ActionType,
    account: Account,
    payload: dict[str, Any],
    campaigns: dict[str, Campaign],
    account_campaigns: Iterable[Campaign] | None = None,
    counted_in_batch: int = 0,
    counted_approved: Sequence[int] = (),
) -> list[str]:
    """What the guardrails refuse outright: strategy locks, budget caps, and what the
    account's channel would refuse (``channel_refusals_register``). ``campaigns`` are
    those the action touches, as the ledger has them; ``account_campaigns``, all of the
    account's, if already read: their daily budgets and statuses are those the action is
    judged after (a batch's, with the actions it approved before this one, ``counted_in_batch``
    of them, applied; and the proposals ``counted_approved``, approved and not yet executed)."""
    blocks = []
    if action_type.changes_strategy:
        blocks += [
            f"{campaign.external_id}'s strategy is locked; agents may not change it."
            for campaign in campaigns.values()
            if campaign.strategy_locked
        ]
    if _channel_refusals is not None:
        blocks += _channel_refusals(account=account, action_type=action_type, payload=payload)
    return blocks + _budget_cap_findings(
        action_type,
        account,
        payload,
        campaigns,
        account_campaigns,
        counted_in_batch,
        counted_approved,
    )


def brand_guideline_findings(*, account: Account, texts: list[tuple[str, str]]) -> list[str]:
    """What the account's brand guidelines find in these texts ((where, text) pairs): by the
    guidelines as read under the rules' token (``_brand_rules_of``), not a query each time
    (the queue asks it of each edited creative on a page)."""
    if not texts:
        return []
    rules = _brand_rules_of(in_force()).get(account.pk)
    return [] if rules is None else brand_findings(texts, rules)


def _brand_rules(guidelines: BrandGuidelines) -> BrandRules:
    return BrandRules.from_text(
        guidelines.banned_terms, guidelines.banned_patterns, guidelines.required_disclaimers
    )


def _brand_rules_of(current: InForce) -> dict[int, BrandRules]:
    """Every account's brand guidelines, as rules, by account: read once under the rules'
    token, which every write to the guidelines changes (policies 0011)."""
    return current.read_once(
        "brand_rules",
        lambda: {
            guidelines.account_id: _brand_rules(guidelines)
            for guidelines in BrandGuidelines.objects.all()
        },
    )


# What brand guidelines found in texts, by the rules and the texts ((where, text) pairs).
BrandFound = dict[tuple[BrandRules, tuple[tuple[str, str], ...]], tuple[str, ...]]


def brand_findings_ahead(
    *, items: Iterable[tuple[Account, Sequence[tuple[str, str]]]]
) -> BrandFound:
    """What the accounts' brand guidelines find in these texts (each with its account), worked
    out before the transaction that evaluates them: reading text as its reader sees it (look-
    alike letters folded) costs in proportion to the text, and that transaction holds its
    campaigns' locks. Handed to ``EvaluationContext.read``; keyed by the rules as well as the
    texts, so that an evaluation under guidelines changed in between finds nothing here for
    its rules and reads the texts itself."""
    items = [(account, tuple(texts)) for account, texts in items if texts]
    if not items:
        return {}
    rules = _brand_rules_of(in_force())
    found: BrandFound = {}
    for account, texts in items:
        if account.pk in rules and (rules[account.pk], texts) not in found:
            found[rules[account.pk], texts] = tuple(brand_findings(texts, rules[account.pk]))
    return found


SPEND_FIELDS = frozenset({"daily_budget", "status"})


def changes_spend(*, action_type: ActionType, payload: dict[str, Any]) -> bool:
    """Whether the action sets a daily budget or a status: what an account's total counts."""
    return any(
        SPEND_FIELDS & set(fields) for fields in action_type.campaign_fields(payload).values()
    )


def reads_account_total(
    *, action_type: ActionType, account: Account, payload: dict[str, Any]
) -> bool:
    """Whether the guardrails judge this action by the account's other campaigns too: it
    changes spend on an account whose total daily budget is capped. Two such actions on one
    account are only judged right one after the other, each seeing the other's effect: whoever
    judges or carries one out holds the account first (``ledger.services.accounts_lock``)."""
    return account.max_total_daily_budget is not None and changes_spend(
        action_type=action_type, payload=payload
    )


def _budget_cap_findings(
    action_type,
    account,
    payload,
    campaigns,
    account_campaigns=None,
    counted_in_batch=0,
    counted_approved=(),
) -> list[str]:
    if not changes_spend(action_type=action_type, payload=payload):
        return []
    account_total_before = account_total_after = None
    if account.max_total_daily_budget is not None:
        if account_campaigns is None:
            account_campaigns = Campaign.objects.filter(account=account).only(
                "external_id", "daily_budget", "status"
            )
        account_campaigns = {campaign.external_id: campaign for campaign in account_campaigns}
        # What the action sets, on its campaigns as the account's figures have them.
        judged = {
            external_id: account_campaigns.get(external_id, campaign)
            for external_id, campaign in campaigns.items()
        }
        proposed = action_type.proposed_state(payload, judged)
        account_total_before = account_total_after = Decimal(0)
        for campaign in account_campaigns.values():
            if campaign.status == CampaignStatus.ACTIVE:
                account_total_before += Decimal(campaign.daily_budget)
            after = proposed.get(campaign.external_id, {})
            if after.get("status", campaign.status) == CampaignStatus.ACTIVE:
                account_total_after += Decimal(after.get("daily_budget", campaign.daily_budget))
    else:
        judged = campaigns
        proposed = action_type.proposed_state(payload, campaigns)
    return budget_cap_findings(
        proposed_budgets={
            external_id: Decimal(values["daily_budget"])
            for external_id, values in proposed.items()
            if "daily_budget" in values
        },
        budgets_before={
            external_id: Decimal(campaign.daily_budget) for external_id, campaign in judged.items()
        },
        campaign_caps={c.external_id: c.max_daily_budget for c in campaigns.values()},
        account_total_before=account_total_before,
        account_total_after=account_total_after,
        account_cap=account.max_total_daily_budget,
        account=account.external_id,
        currency=account.currency,
        counted_in_batch=counted_in_batch,
        counted_approved=counted_approved,
    )


def recent_moves(
    *,
    targets: Iterable[tuple[int, str]],
    since: datetime,
    exclude_proposal: int | None = None,
) -> dict[tuple[int, str], list[engine.Move]]:
    """The moves approved, executing or executed on these (account id, target) pairs since
    ``since``, by pair (those not yet executed pending): through the moves' own index, so the
    cost follows the targets' moves, not the account's."""
    by_account: dict[int, set[str]] = {}
    for account_id, target in targets:
        by_account.setdefault(account_id, set()).add(target)
    if not by_account:
        return {}
    # Written out (read at every submission): the ORM took longer to build it than it runs.
    wanted, params = [], []
    for account_id, names in by_account.items():
        wanted.append(f"(account_id = %s AND target IN ({', '.join(['%s'] * len(names))}))")
        params += [account_id, *sorted(names)]
    sql = (
        f"SELECT {', '.join(MOVE_COLUMNS)} "
        f"FROM {connection.ops.quote_name(CountedMove._meta.db_table)} "
        f"WHERE ({' OR '.join(wanted)}) AND approved_at >= %s"
    )
    params.append(connection.ops.adapt_datetimefield_value(since))
    if exclude_proposal is not None:
        sql += " AND proposal_id <> %s"
        params.append(exclude_proposal)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    moves: dict[tuple[int, str], list[engine.Move]] = {}
    for account_id, target, factor, at, executed, proposal_id, agent_id, sets_value in rows:
        moves.setdefault((account_id, target), []).append(
            engine.Move(
                target=target,
                factor=engine.factor_from_text(factor),
                # SQLite's driver gives the time as stored: in UTC, naive.
                at=at if timezone.is_aware(at) else timezone.make_aware(at, connection.timezone),
                pending=not executed,
                proposal=proposal_id,
                agent=agent_id,
                sets_value=bool(sets_value),
            )
        )
    return moves


# What ``recent_moves`` reads of each counted move, in order.
MOVE_COLUMNS = (
    "account_id",
    "target",
    "factor",
    "approved_at",
    "executed",
    "proposal_id",
    "agent_id",
    "sets_value",
)


def agent_approval_rate(agent: Agent | None) -> float | None:
    """The share of the agent's recent proposals people decided that they approved (None
    while its record says too little), as the feedback app reads it."""
    if agent is None:
        return None
    if _approval_rate_reader is None:
        raise RuntimeError("No approval rate reader: the feedback app registers it when ready.")
    return _approval_rate_reader(agent)


class PolicyMisconfigured(DomainError):
    """A policy holds a value the engine cannot work with (one stored before it was bounded
    where it is entered): the engine refuses to guess, and a human decides."""


@dataclass
class BatchSpend:
    """A capped account's campaigns as a batch leaves them: their daily budgets and statuses
    with the spend changes it approved (``approved`` of them) applied, in memory; and those
    of proposals approved earlier and not yet executed (``approved_earlier``, their ids)."""

    campaigns: dict[str, Campaign]
    approved: int = 0
    approved_earlier: list[int] = field(default_factory=list)


@dataclass
class CappedSpends:
    """Capped accounts' campaigns as a set of actions approved one after the other leaves
    them (a batch's submissions, the rows of a bulk approval), by account id: each action is
    judged against its account's total budget cap counting those approved before it
    (``blocks``), and once approved counts for those after it (``count``)."""

    accounts: dict[int, BatchSpend] = field(default_factory=dict)

    def of(
        self, *, action_type: ActionType, account: Account, payload: dict[str, Any]
    ) -> BatchSpend | None:
        """The account's campaigns as the actions counted leave them, if the action is judged
        by its total (``reads_account_total``): read the first time, from then on in memory."""
        if not reads_account_total(action_type=action_type, account=account, payload=payload):
            return None
        if account.pk not in self.accounts:
            self.accounts[account.pk] = BatchSpend(
                {
                    campaign.external_id: campaign
                    for campaign in Campaign.objects.filter(account=account).only(
                        "external_id", "daily_budget", "status", "max_daily_budget"
                    )
                }
            )
        return self.accounts[account.pk]

    def blocks(
        self,
        *,
        action_type: ActionType,
        account: Account,
        payload: dict[str, Any],
        campaigns: dict[str, Campaign],
        say_counted: bool = True,
    ) -> list[str]:
        """What the guardrails refuse about the action after those counted before it
        (``guardrail_blocks``); ``say_counted``: whether the account cap's words say how many
        were counted (a caller that names them says it itself)."""
        spend = self.of(action_type=action_type, account=account, payload=payload)
        return guardrail_blocks(
            action_type=action_type,
            account=account,
            payload=payload,
            campaigns=campaigns,
            account_campaigns=None if spend is None else spend.campaigns.values(),
            counted_in_batch=0 if spend is None or not say_counted else spend.approved,
            counted_approved=() if spend is None else spend.approved_earlier,
        )

    def count(
        self,
        *,
        action_type: ActionType,
        account: Account,
        payload: dict[str, Any],
        campaigns: dict[str, Campaign],
        approved_earlier: int | None = None,
    ) -> None:
        """An action just approved: the daily budgets and statuses it sets count against its
        account's total budget cap for the actions judged after it, as it would set them
        after the earlier ones (a reallocation moves its amount from where they left the
        budgets). ``approved_earlier``: the id of the proposal it is, if approved before
        these actions were judged and not yet executed (the cap's words name it)."""
        spend = self.of(action_type=action_type, account=account, payload=payload)
        if spend is None:
            return
        now = {
            external_id: spend.campaigns.get(external_id, campaign)
            for external_id, campaign in campaigns.items()
        }
        for external_id, values in action_type.proposed_state(payload, now).items():
            campaign = spend.campaigns.get(external_id)
            if campaign is None:
                continue
            for name in SPEND_FIELDS & values.keys():
                setattr(campaign, name, values[name])
        if approved_earlier is None:
            spend.approved += 1
        else:
            spend.approved_earlier.append(approved_earlier)


@dataclass
class EvaluationContext:
    """Everything the engine needs to know besides the action itself: the rules in force,
    the engaged kill switches, each account's brand guidelines, each agent's record, the
    moves that count against cumulative ceilings on the targets, and each capped account's
    campaigns (read the first time an action changes its spend). Read once for a whole batch
    (``read``), then each of its actions is given its verdict in memory (``verdict``); a move
    approved in the batch counts for the actions after it (``count``), and so does the spend
    it sets against its account's total budget cap (``count_spend``)."""

    now: datetime
    rules: list[engine.Rule]
    policies: dict[int, Policy]
    kill_switches: list[KillSwitch]
    brand_rules: dict[int, BrandRules]
    approval_rates: dict[int, float | None]
    moves: dict[tuple[int, str], list[engine.Move]] = field(default_factory=dict)
    spend: CappedSpends = field(default_factory=lambda: CappedSpends())
    # What brand guidelines found in the actions' texts, if worked out ahead
    # (``brand_findings_ahead``).
    brand_found: BrandFound = field(default_factory=dict)

    @classmethod
    def read(
        cls,
        *,
        agents: Iterable[Agent],
        accounts: Iterable[Account],
        action_types: Iterable[str],
        targets: Iterable[tuple[int, str]],
        rules: list[engine.Rule] | None = None,
        exclude_proposal: int | None = None,
        brand_found: BrandFound | None = None,
    ) -> EvaluationContext:
        """What the engine needs for these agents' actions of these types on these accounts
        and (account id, target) pairs, now; under ``rules`` (a draft set) if given, else the
        rules in force. ``exclude_proposal``'s own moves are not counted (it is re-assessed).
        ``brand_found``: what the brand guidelines found in the actions' texts, if worked out
        ahead."""
        now = timezone.now()
        action_types = set(action_types)
        policies: dict[int, Policy] = {}
        current = in_force()
        if rules is None:
            rules, policies = current.rules_for(action_types)
        account_ids = {account.pk for account in accounts}
        windows = [
            rule.cumulative_window
            for rule in rules
            if rule.action_type in action_types and rule.cumulative_max_magnitude is not None
        ]
        # A window stored out of bounds is refused by the engine; it reads no further back.
        since = now - min(max(windows), CUMULATIVE_WINDOW_BOUNDS[1]) if windows else None
        return cls(
            now=now,
            rules=rules,
            policies=policies,
            kill_switches=list(current.kill_switches),
            brand_rules={
                pk: guidelines
                for pk, guidelines in _brand_rules_of(current).items()
                if pk in account_ids
            },
            approval_rates={agent.pk: agent_approval_rate(agent) for agent in agents},
            moves=recent_moves(targets=targets, since=since, exclude_proposal=exclude_proposal)
            if since is not None
            else {},
            brand_found=brand_found or {},
        )

    def guardrail_findings(
        self,
        *,
        action_type: ActionType,
        account: Account,
        payload: dict[str, Any],
        campaigns: dict[str, Campaign],
    ) -> GuardrailFindings:
        """Everything the guardrails say: what they refuse, and what they send to a human
        (kill switches, brand guidelines)."""
        reviews = [
            kill_switch_reason(switch) for switch in self.kill_switches if _covers(switch, account)
        ]
        texts = action_type.texts(payload)
        if texts and account.pk in self.brand_rules:
            rules = self.brand_rules[account.pk]
            found = self.brand_found.get((rules, tuple(texts)))
            reviews += found if found is not None else brand_findings(texts, rules)
        blocks = self.spend.blocks(
            action_type=action_type, account=account, payload=payload, campaigns=campaigns
        )
        return GuardrailFindings(tuple(blocks), tuple(reviews))

    def count_spend(
        self,
        *,
        action_type: ActionType,
        account: Account,
        payload: dict[str, Any],
        campaigns: dict[str, Campaign],
    ) -> None:
        """An action just approved: it counts against its account's total budget cap for the
        actions evaluated after it (``CappedSpends.count``)."""
        self.spend.count(
            action_type=action_type, account=account, payload=payload, campaigns=campaigns
        )

    def verdict(
        self,
        *,
        action_type: ActionType,
        account: Account,
        agent: Agent | None,
        payload: dict[str, Any],
        campaigns: dict[str, Campaign],
        magnitude: Decimal,
        magnitude_label: str,
        amount: Decimal | None,
        effects: dict[str, Fraction],
        changed_first: Sequence[str] = (),
    ) -> tuple[engine.Verdict, GuardrailFindings]:
        """The verdict the rules give this action now, and what the guardrails found, with
        ``changed_first``: why it would only be superseded once it runs (a proposal approved
        before it changes a value it sets first; the caller finds that), sending it to a
        person. ``magnitude`` is the assessed one, rounded; where the action type can give it
        exactly from the exact ``effects``, the exact one decides."""
        rules = [rule for rule in self.rules if rule.action_type == action_type.name]
        scope = engine.Scope(
            action_type=action_type.name,
            account_id=account.pk,
            channel=account.channel,
            agent_id=agent.pk if agent else None,
            agent_kind=agent.kind if agent else "",
        )
        rule = engine.matching_rule(scope, rules)
        problems = windows_out_of_bounds(rule) if rule is not None else []
        if problems:
            raise PolicyMisconfigured("; ".join(problems))
        # Only the deciding policy's cumulative window counts moves (the engine reads them
        # within it).
        counts_moves = rule is not None and rule.cumulative_max_magnitude is not None
        exact_magnitude = action_type.exact_magnitude(payload, effects)
        findings = self.guardrail_findings(
            action_type=action_type, account=account, payload=payload, campaigns=campaigns
        )
        facts = engine.Facts(
            action_type=action_type.name,
            action_label=action_type.label,
            magnitude=magnitude if exact_magnitude is None else exact_magnitude,
            magnitude_unit=action_type.magnitude_unit,
            magnitude_label=magnitude_label,
            risk_weight=action_type.risk_weight,
            account_id=account.pk,
            channel=account.channel,
            agent_id=agent.pk if agent else None,
            agent_kind=agent.kind if agent else "",
            amount=amount,
            currency=account.currency,
            effects=effects,
            sets_values=action_type.sets_values,
            recent_moves=[
                move for target in effects for move in self.moves.get((account.pk, target), ())
            ]
            if counts_moves
            else [],
            now=self.now,
            guardrail_blocks=findings.blocks,
            guardrail_reviews=findings.reviews,
            changed_first=tuple(changed_first),
            agent_approval_rate=self.approval_rates.get(agent.pk) if agent else None,
            always_human=action_type.always_human,
        )
        return engine.evaluate(facts, self.rules), replace(
            findings, changed_first=tuple(changed_first)
        )

    def count(self, *, account_id: int, effects: dict[str, Fraction], sets_value: bool) -> None:
        """A move just approved: it counts for the actions evaluated after it, as pending;
        ``sets_value``: its action sets the values (``engine.Move.sets_value``)."""
        for target, factor in effects.items():
            self.moves.setdefault((account_id, target), []).append(
                engine.Move(
                    target=target, factor=factor, at=self.now, pending=True, sets_value=sets_value
                )
            )


def policy_verdict(
    *,
    action_type: ActionType,
    account: Account,
    agent: Agent | None,
    payload: dict[str, Any],
    campaigns: dict[str, Campaign],
    magnitude: Decimal,
    magnitude_label: str,
    amount: Decimal | None,
    effects: dict[str, Fraction],
    proposal_id: int | None = None,
    rules: list[engine.Rule] | None = None,
    changed_first: Sequence[str] = (),
) -> tuple[engine.Verdict, GuardrailFindings]:
    """The verdict the rules in force (or ``rules``, a draft set) give one action now, and
    what the guardrails found (``EvaluationContext`` for many), with ``changed_first``
    (``EvaluationContext.verdict``)."""
    context = EvaluationContext.read(
        agents=[agent] if agent else [],
        accounts=[account],
        action_types=[action_type.name],
        targets=[(account.pk, target) for target in effects],
        rules=rules,
        exclude_proposal=proposal_id,
    )
    return context.verdict(
        action_type=action_type,
        account=account,
        agent=agent,
        payload=payload,
        campaigns=campaigns,
        magnitude=magnitude,
        magnitude_label=magnitude_label,
        amount=amount,
        effects=effects,
        changed_first=changed_first,
    )
