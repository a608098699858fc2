"""What the feedback loop reads: an agent's feed, and its scorecards."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, QuerySet
from django.utils import timezone

from approvals.models import Agent, Decision, Proposal, ProposalStatus
from approvals.selectors import (
    DECIDED_BY_PEOPLE,
    ProposalCounts,
    decision_time_percentiles,
    first_people_decisions,
    proposal_counts,
    proposals_made,
)
from feedback.models import Feedback, FeedbackKind, Outcome
from ledger.models import Account

# An agent's record for its risk: its last 500 decisions; below 10 it says little, and its risk
# uses a flat figure.
MIN_DECISIONS_FOR_RECORD = 10
RECORD_SPAN = 500
# The feedback that records what people decided of a proposal.
PEOPLES_DECISIONS = (
    FeedbackKind.APPROVED.value,
    FeedbackKind.APPROVED_WITH_EDITS.value,
    FeedbackKind.REJECTED.value,
)


def agent_approval_rate(agent: Agent) -> float | None:
    """The share of the agent's last 500 proposals people decided that they approved: read
    from its feedback (one record for each proposal people settled, indexed by agent; not
    expiries, supersessions or outcome reports, which are no one's judgment of the
    proposal), so it costs the same for an agent with a million decisions. The policies ask
    it through ``policies.services.agent_approval_rate``, at every submission: one statement
    written out, counted by the database over the last 500 (one row back, not 500), as
    ``Feedback.objects.filter(...).order_by("-id")[:500].aggregate(...)`` would count them
    at about 30 times the cost of the statement itself in building it."""
    table = connection.ops.quote_name(Feedback._meta.db_table)
    rejected = FeedbackKind.REJECTED.value
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN kind = %s THEN 0 ELSE 1 END), 0) "
            f"FROM (SELECT kind FROM {table} WHERE agent_id = %s AND kind IN (%s, %s, %s) "
            "ORDER BY id DESC LIMIT %s) AS record",
            [rejected, agent.pk, *PEOPLES_DECISIONS, RECORD_SPAN],
        )
        decided, approved = cursor.fetchone()
    if decided < MIN_DECISIONS_FOR_RECORD:
        return None
    return approved / decided


def feedback_list_for_agent(*, agent) -> QuerySet[Feedback]:
    """Feedback on an agent's own proposals."""
    return Feedback.objects.filter(agent=agent).select_related("proposal", "outcome")


@dataclass(frozen=True, kw_only=True)
class Scorecard(ProposalCounts):
    """How one agent's proposals of one action type fared over a window: its proposals'
    ``ProposalCounts``, the figures the dashboard and the track record show too, with how long
    people took and why they rejected."""

    agent: str
    action_type: str
    decision_median: timedelta | None = None
    rejection_reasons: dict[str, int] = field(default_factory=dict)
    # Proposals by the effect reported ("" is figures only): each proposal once, by its
    # latest report saying an effect (a person's over its agent's), however often reported.
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def outcomes_reported(self) -> int:
        return sum(self.outcomes.values())


def scorecards(
    *,
    since: datetime,
    until: datetime,
    agent: Agent | None = None,
    account: Account | None = None,
    action_type: str | None = None,
) -> list[Scorecard]:
    """A scorecard per agent and action type, over the proposals made in the window (for one
    agent, account or action type if given), ordered by agent and action type."""
    window = proposals_made(
        since=since, until=until, agent=agent, account=account, action_type=action_type
    )
    reasons: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for name, kind, code, count in (
        Decision.objects.filter(
            proposal__in=window.filter(status=ProposalStatus.REJECTED).values("pk"),
            outcome="reject",
        )
        .values_list("proposal__agent__name", "proposal__action_type", "reason_code")
        .annotate(count=Count("id"))
        .order_by()
    ):
        reasons[(name, kind)][code] = count
    # Each proposal's report that counts: an agent reporting again and again counts once; one
    # saying an effect over figures alone, and a person's word over its agent's later one.
    counted: dict[int, tuple[tuple[bool, int], str, str, str]] = {}
    for pk, proposal_id, name, kind, effect, by in Outcome.objects.filter(
        proposal__in=window.values("pk")
    ).values_list(
        "pk",
        "proposal_id",
        "proposal__agent__name",
        "proposal__action_type",
        "effect",
        "reported_by_kind",
    ):
        rank = (effect != "", by == "user", pk)
        if proposal_id not in counted or rank > counted[proposal_id][0]:
            counted[proposal_id] = (rank, name, kind, effect)
    outcomes: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for _, name, kind, effect in counted.values():
        outcomes[(name, kind)][effect] += 1
    cards = []
    for (name, kind), counts in proposal_counts(
        since=since,
        until=until,
        agent=agent,
        account=account,
        action_type=action_type,
        by=["agent__name", "action_type"],
    ).items():
        cards.append(
            Scorecard(
                agent=name,
                action_type=kind,
                decision_median=_decision_median(window.filter(agent__name=name, action_type=kind)),
                rejection_reasons=reasons[(name, kind)],
                outcomes=dict(outcomes[(name, kind)]),
                **counts.endings(),
            )
        )
    return cards


def scorecards_added_up(
    cards: list[Scorecard], *, since: datetime, until: datetime, agent: Agent
) -> Scorecard:
    """One agent's scorecards over every action type, as the row under them: the counts,
    rejection reasons and reported outcomes added up, and the median time to a person's
    decision taken over all its proposals (a median is not a sum of medians)."""
    reasons: dict[str, int] = defaultdict(int)
    outcomes: dict[str, int] = defaultdict(int)
    for card in cards:
        for code, count in card.rejection_reasons.items():
            reasons[code] += count
        for effect, count in card.outcomes.items():
            outcomes[effect] += count
    return Scorecard(
        agent=agent.name,
        action_type="",
        decision_median=_decision_median(proposals_made(since=since, until=until, agent=agent)),
        rejection_reasons=dict(reasons),
        outcomes=dict(outcomes),
        **sum(cards, ProposalCounts()).endings(),
    )


def _decision_median(made: QuerySet[Proposal]) -> timedelta | None:
    """The median time from evaluation to people's first decision (``first_people_decisions``:
    not a decision again after a kill switch held it back), of those of ``made`` decided."""
    decided = first_people_decisions(made.filter(DECIDED_BY_PEOPLE, evaluated_at__isnull=False))
    return decision_time_percentiles(decided)["median"]


# The days a scorecard may count over, in the API (``?days=``) and on an agent's console page
# alike: a whole number from 1 to 365, 30 unless asked.
SCORECARD_DAYS_DEFAULT = 30
SCORECARD_DAYS_MOST = 365


def scorecard_window(days: int) -> tuple[datetime, datetime]:
    """The last ``days`` days, to now."""
    now = timezone.now()
    return now - timedelta(days=days), now
