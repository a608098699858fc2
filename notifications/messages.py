"""What a message about a proposal says, whatever carries it: the summary, why it waits, the
figures that matter, when a decision is due, who is on it, and the link to its page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from django.conf import settings
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.urls import reverse
from django.utils import timezone

from approvals import action_types
from approvals.models import Decision, DecisionOutcome, Proposal, ProposalStatus
from approvals.selectors import (
    CampaignsNow,
    SinceProposed,
    approved_said,
    campaigns_now_each,
    campaigns_read,
    let_run_said,
    paused_still_runs_said,
    retry_checks_said,
    retry_ends_it_said,
    retry_over_cumulative_said,
    retry_past_kill_switches_said,
    since_proposed_each,
    was_retried,
)
from approvals.services.acts import review_window_closed
from approvals.services.decisions import payload_seen, retries_refused_now
from approvals.services.proposals import (
    HELD_BACK_ANY,
    held_back_reason_now,
    kill_switch_findings_recorded_at,
    kill_switches_gone_said,
    retries_over_cumulative_ceiling,
)
from approvals.services.supersession import sets_values, target_moves_each
from hitlproject.addresses import served_at
from hitlproject.formats import console_time
from hitlproject.validation import one_line
from hitlproject.vocabulary import (
    EXECUTION_FAILED,
    SENT_TO_RUN_AGAIN,
    VerdictOutcome,
    sent_to_run_again_said,
)
from notifications.models import Claim, DecisionDeadline, NotificationKind
from policies.reading import is_control
from policies.services import (
    KILL_SWITCH_FINDING,
    engaged_kill_switches,
    kill_switch_finding_now,
    kill_switch_names,
    kill_switch_reason,
    kill_switch_runs,
    kill_switches_engaged_then,
    kill_switches_moved_off,
    named_for_people,
)

# Why a proposal waits that no policy decided, as every message says it.
NO_POLICY_DECIDED = "No policy decided it: a person does."
# A digest's line of reasons: enough for the usual one or two, not a batch's every finding.
REASONS_BRIEF_LIMIT = 300
MORE_ON_ITS_PAGE = "… (more on its page)"

HEADLINES = {
    NotificationKind.WAITING: "Waits for your decision",
    NotificationKind.REMINDER: "Reminder: half the time to decide is gone",
    NotificationKind.ESCALATION: "Overdue: escalated to you",
    NotificationKind.FAILED: "Its execution failed",
}
# The headline of a message that said its execution failed, once a person sent it to run
# again: what it says below is what became of it since.
FAILED_THEN_SENT_AGAIN = f"Its execution failed, then it was {SENT_TO_RUN_AGAIN}"
# A person retrying it found its target had moved: nothing was sent to run.
FAILED_THEN_SUPERSEDED = "Its execution failed, then it was superseded"
# The headline of a message saying it waits, to a person it does not wait for: one who owns
# the agent that proposed it, or who has approved it and waits for another's approval.
WAITS_NOT_FOR_YOU = "Waits for a decision"
# The headline of a message saying it is overdue, to a person of a backup group who may not
# decide it: it reached them, not a person who may decide it.
OVERDUE_NOT_FOR_YOU = "Overdue: waits for a decision"
# The headline of a message whose proposal no longer waits for a decision in its round.
NO_LONGER_WAITS = "No longer waits"


@dataclass(frozen=True)
class Failure:
    """What a message saying a proposal's execution failed tells of it: when it failed, why,
    in the words the channel (or the check that stopped it) answered with, on one line; and
    who let it run (its policy, without a person, or the people who approved it)."""

    at: datetime | None
    said: str
    let_run: str
    # Let run by its policy: the message says why, in the verdict's reasons.
    by_policy: bool
    # The kill switches engaged over it as the message was written, each as its finding says
    # it (``kill_switch_reason``): a retry runs it past them, as its page says beside Retry.
    kill_switches: tuple[str, ...] = ()
    # For a reader who may retry it, while a retry would send it as a new request the channel
    # cannot tell from attempts that got no sure answer: to check on the channel first
    # (``retry_check_said``). Said here, as the message is written, not in the failure's
    # words (``said``), which are quoted long after, and to its agent too.
    retry_check: str = ""
    # For a reader who may retry it, where a retry sends nothing: its target moved since, and
    # a retry ends it superseded (``retry_ends_it_said``), as its page says beside Retry.
    retry_ends_it: str = ""
    # Why a retry is refused now, whoever would make it (its agent stopped, what it would
    # change changed since, a guardrail set since: ``retry_refused_now``, which a person's
    # retry is refused by), said to every reader in place of what a retry would send.
    retry_refused: str = ""
    # For a reader who may retry it, where a retry would re-assess it (the budget a move draws
    # on moved since it failed) over its policy's cumulative ceiling: that a retry, a
    # person's approval, runs it all the same (``retry_over_cumulative_said``), as its page
    # says beside Retry.
    retry_over_cumulative: str = ""
    # Whether its reader may retry it (``retry_refusal``), as the message is told to them
    # (``failure_as_told``): for a single message, as its ``may_decide``; for a digest
    # listing it, as ``notifications.services.as_read_by`` reads it for them.
    may_retry: bool = True

    @property
    def retry_would(self) -> str:
        """What a retry would do, for a reader who may retry it: end it superseded, or send a
        new request to check on the channel for first; "" where neither is said."""
        return self.retry_ends_it or self.retry_check

    @property
    def kill_switches_text(self) -> str:
        """The switches engaged over it, for a reader who may not retry it."""
        return " ".join(self.kill_switches)

    @property
    def retry_past_kill_switches(self) -> str:
        """The switches engaged over it and that a retry runs it past them, in its page's
        words (``retry_past_kill_switches_said``), for a reader who may retry it."""
        return retry_past_kill_switches_said(self.kill_switches)

    @property
    def at_text(self) -> str:
        """When it failed, to the second, with the zone, as the console shows times."""
        if self.at is None:
            return ""
        return console_time(self.at)


@dataclass(frozen=True)
class ProposalMessage:
    headline: str
    proposal_id: int
    summary: str
    agent: str
    account: str
    action_type: str
    magnitude: str
    risk: int | None
    reasons: list[str]
    due_at: datetime | None
    claimed_by: str | None
    url: str
    # The deadline had passed when the message was made (an escalation's always has): it
    # says the decision was due, not that it is.
    overdue: bool = False
    # The action as the message shows it (``payload_seen``), carried by its buttons: a press
    # on a message shown before a colleague's edit decides nothing.
    seen: str = ""
    # When the claim of ``claimed_by`` lapses: a message says it, as the console does, so that
    # it stays true once the claim has lapsed (nothing updates it then).
    claimed_until: datetime | None = None
    # How far it has come, when some approved it and its policy asks for more ("Approved by
    # operator: 1 of 2 approvals; waits for 1 more."): a reminder or an escalation says it.
    progress: str = ""
    # The words it would publish, which its summary does not say (a creative batch's each
    # headline, body and call to action: ``ActionType.words_shown``), shown before it may be
    # approved from the message.
    words: Sequence[tuple[str, Sequence[tuple[str, str]]]] = ()
    # Why this person is told of it ("You are told by the route “Demo: …”."), as the
    # notification's route says; empty where no route is on record.
    told_because: str = ""
    # Why its reader, who may reject it, may not approve it (its agent was stopped since it
    # proposed it): the message says so and offers no Approve.
    approval_refused: str = ""
    # Why its reader, who may decide it, may not do so from Slack (``slack_lacks_second_factor``):
    # the Slack message says so and offers neither Approve nor Reject.
    decided_on_its_page: str = ""
    # Why its reader, told as one of a backup group, and nobody else in that group may decide
    # it (an escalation to a group of auditors): it says so, not only "Read it on its page".
    nobody_may_decide: str = ""
    # Why its reader, told of it, may not decide it, and who does ("operator may not decide on
    # policy change proposals: a policy owner decides it; you may read it."): every message
    # (and digest line) to one who may not says so, beside "Read it on its page".
    not_yours: str = ""
    # A message saying its execution failed (``NotificationKind.FAILED``): how, and who let
    # it run. It asks no decision (no buttons): a retry is made on its page.
    failure: Failure | None = None
    # What its agent proposed, where the proposal reads otherwise now (``summary``): a
    # person's edit, a re-assessment. A message leads with it, as the proposal's page does,
    # then says the action as it now reads and how it came to (``changed_by``).
    as_proposed: str = ""
    # How it came to read as it does now, as the page heads it, naming who edited it: "As
    # edited by operator", "As edited by operator and re-assessed", "As re-assessed".
    changed_by: str = ""
    # Each campaign it touches that is not active now, as its page says it
    # (``campaigns_not_active``): "campaign generic-search is paused now (by proposal #10, …)".
    campaigns_now: Sequence[str] = ()
    # Where approving (or retrying) it lets it run on those of them paused, that it runs
    # there all the same, left paused, in its page's words (``paused_still_runs_said``).
    paused_still_runs: str = ""

    @property
    def campaigns_now_text(self) -> str:
        """``campaigns_now`` as sentences: "Campaign generic-search is paused now (…).", then,
        as its page says it beside them, what approving (or retrying) it does there
        ("Approving it still makes the change on generic-search as it is, paused: …"), unless
        its reader may not approve it (``approval_refused``), or may not let it run at all
        (``the_pause_only``); else ""."""
        said = [f"{said[:1].upper()}{said[1:]}." for said in self.campaigns_now]
        if said and self.paused_still_runs and not self.approval_refused:
            said.append(self.paused_still_runs)
        return " ".join(said)

    @property
    def proposed_summary(self) -> str:
        """What a message leads with: the action as its agent proposed it."""
        return self.as_proposed or self.summary

    @property
    def as_now(self) -> str:
        """The action as it now reads, where that is not as proposed: "As edited by
        operator: move 200.00 USD/day …"; else ""."""
        return f"{self.changed_by}: {self.summary}" if self.as_proposed else ""

    @property
    def summary_said(self) -> str:
        """Both, on one line (a subject, Slack's notification text): "move 280.00 USD/day …;
        as edited by operator: move 200.00 USD/day …"."""
        if not self.as_proposed:
            return self.summary
        return f"{self.as_proposed}; {self.as_now[:1].lower()}{self.as_now[1:]}"

    @property
    def claimed_until_text(self) -> str:
        """When the claim lapses, as the proposal's page says it: "2026-12-04 17:15:09 UTC"."""
        if self.claimed_until is None:
            return ""
        return console_time(self.claimed_until)

    @property
    def claim_text(self) -> str:
        """Who is on it, until when: "operator, until 2026-12-04 17:15:09 UTC"; "" when nobody
        is."""
        if not self.claimed_by or self.claimed_until is None:
            return self.claimed_by or ""
        return f"{self.claimed_by}, until {self.claimed_until_text}"

    @property
    def due_label(self) -> str:
        """ "Decision due by", or "Decision was due by" once that time has passed."""
        return "Decision was due by" if self.overdue else "Decision due by"

    @property
    def due_text(self) -> str:
        """When the decision is (or was) due as the console shows it: to the second, with
        the zone."""
        if self.due_at is None:
            return ""
        return console_time(self.due_at)

    @property
    def reasons_brief(self) -> str:
        """Why it waits, in one line for a digest: its reasons, cut (saying so) where they run
        long, as many as a creative batch's findings can be; the whole is on its page. Each
        reason is a sentence, so they follow one another as sentences do (not "….; …")."""
        said = (
            " ".join(
                reason if reason.endswith((".", "!", "?")) else f"{reason}."
                for reason in self.reasons
            )
            or NO_POLICY_DECIDED
        )
        if len(said) <= REASONS_BRIEF_LIMIT:
            return said
        return said[: REASONS_BRIEF_LIMIT - len(MORE_ON_ITS_PAGE)].rstrip() + MORE_ON_ITS_PAGE

    @property
    def words_text(self) -> str:
        """The words it would publish, as a plain-text message shows them: each group's title,
        then its parts indented, a part's own line breaks (any Unicode reads as one) continuing
        under it; so no line of an agent's words starts where the message's own lines do (a
        body could otherwise add "- Cleared by legal" as one more reason why it waits)."""
        return "\n".join(words_lines(title, parts) for title, parts in self.words)

    @property
    def subject(self) -> str:
        # As its agent proposed it, and that it reads otherwise since: both in full would
        # often run past the subject's length; the message says both.
        since = f" ({self.changed_by.replace('As ', 'since ', 1)})" if self.as_proposed else ""
        return f"[HITL] {self.headline}: #{self.proposal_id} {self.proposed_summary}{since}"[:200]


def words_lines(title: str, parts: Sequence[tuple[str, str]]) -> str:
    """One group of the words an action would publish (a creative), as plain text shows it:
    its title, then each part indented under it, the part's own line breaks (any Unicode reads
    as one) continuing under its first line, so none starts where a label does."""
    lines = [title]
    for label, said in parts:
        # A control character written out, as "Why it waits" quotes it: a terminal showing a
        # plain-text email acts on it ("\x1b[8m" hides what follows, a backspace writes over).
        said = "".join(f"⟨U+{ord(c):04X}⟩" if is_control(c) else c for c in said)
        first, *rest = said.splitlines() or [""]
        lines.append(f"    {label}: {first}")
        lines.extend(" " * (len(label) + 6) + line for line in rest)
    return "\n".join(lines)


def waiting_count_text(count: int) -> str:
    """A digest's headline: "1 proposal waits for a decision", "2 proposals wait for …"."""
    if count == 1:
        return "1 proposal waits for a decision"
    return f"{count} proposals wait for a decision"


def failed_count_text(count: int) -> str:
    """A digest of failures' headline: "1 execution failed", "20 executions failed"."""
    return "1 execution failed" if count == 1 else f"{count} executions failed"


def failed_since_retried_text(lines: Sequence[DigestLine]) -> str:
    """An updated digest of failures' headline: how many failed, and how many of them a
    person has sent to run again since, or whose retry found its target moved and ended
    it superseded ("3 executions failed; 1 was sent to run again; 1 was superseded")."""
    said = [failed_count_text(len(lines))]
    for ended_as, what in (
        (FAILED_THEN_SENT_AGAIN, SENT_TO_RUN_AGAIN),
        (FAILED_THEN_SUPERSEDED, "superseded"),
    ):
        count = sum(1 for line in lines if line.outcome and line.ended_as == ended_as)
        if count:
            said.append(f"{count} {'was' if count == 1 else 'were'} {what}")
    return "; ".join(said)


def still_waiting_count_text(waiting: int, *, listed: int) -> str:
    """An updated digest's headline: how many of the ``listed`` proposals still wait ("1 of 3
    proposals still waits for a decision"), or that none does."""
    if waiting == listed:
        return waiting_count_text(listed)
    if waiting == 0 and listed == 1:
        return "The proposal no longer waits for a decision"
    if waiting == 0:
        return f"None of the {listed} proposals waits for a decision any more"
    verb = "waits" if waiting == 1 else "wait"
    return f"{waiting} of {listed} proposals still {verb} for a decision"


@dataclass(frozen=True)
class DigestLine:
    """A proposal as an updated digest lists it: what became of it once it no longer waits
    (``outcome``, under ``ended_as``), or, while it waits, how far it has come
    (``progress``)."""

    message: ProposalMessage
    outcome: str = ""
    progress: str = ""
    ended_as: str = NO_LONGER_WAITS


def in_review_window(proposal: Proposal) -> bool:
    """Whether a proposal waits for a decision as every message says it: in review, within
    its window. One past it may not be decided, and expires when the sweep (or a list, a
    page, an act) comes round: no message counts it, or tells of it, as waiting."""
    return proposal.status == ProposalStatus.PENDING_REVIEW and not review_window_closed(
        proposal, timezone.now()
    )


def ended_as(proposal: Proposal) -> str:
    """How a message whose review round ended is headed: its proposal no longer waits, or,
    waiting still, its review started again (an edit after an approval, a hold before it
    ran) and a later message asks for the decision."""
    if in_review_window(proposal):
        return "Its review started again"
    return NO_LONGER_WAITS


def proposal_url(proposal_id: int) -> str:
    console = settings.CONSOLE_URL or served_at()
    return console + reverse("admin:approvals_proposal_change", args=[proposal_id])


def my_channels_url() -> str:
    """Where a person chooses how they are told (*My channels*)."""
    console = settings.CONSOLE_URL or served_at()
    return console + reverse("admin:notifications_reachedby_changelist")


# Why a person no route names now is told that a proposal's execution failed.
TOLD_OF_IT_BEFORE = "You are told as you were told of it before."


def told_because(*, kind: str, route_name: str) -> str:
    """Why a person is told, by the route that told them: its people, or, for an overdue
    decision, its backup group; that its execution failed, by no route, as one told of it
    before."""
    if not route_name:
        return TOLD_OF_IT_BEFORE if kind == NotificationKind.FAILED else ""
    if kind == NotificationKind.ESCALATION:
        return f"You are told as one of the backup group of the route “{route_name}”."
    return f"You are told by the route “{route_name}”."


def proposal_messages(
    items: Sequence[tuple[Proposal, str]], *, now: datetime, failed_by: datetime | None = None
) -> list[ProposalMessage]:
    """What a message of each kind about each proposal says, as of ``now``: their deadlines
    and claims read at once; one saying its execution failed, of the failure last recorded
    (by ``failed_by``, if given: when the message was written)."""
    rounds = {proposal.pk: proposal.review_round for proposal, _ in items}
    due = {
        proposal_id: due_at
        for proposal_id, review_round, due_at in DecisionDeadline.objects.filter(
            proposal_id__in=rounds
        ).values_list("proposal_id", "review_round", "due_at")
        if rounds[proposal_id] == review_round
    }
    claims = {
        claim.proposal_id: claim
        for claim in Claim.objects.select_related("user").filter(proposal_id__in=rounds)
    }
    approvers: dict[int, list[str]] = {}
    # Who approved it in its round, as its page names them ("operator (with edits)"), and
    # when the last of them did.
    approved: dict[int, tuple[list[str], datetime]] = {}
    for proposal_id, review_round, username, edited, at in (
        Decision.objects.filter(proposal_id__in=rounds, outcome=DecisionOutcome.APPROVE)
        .order_by("created_at", "pk")
        .values_list(
            "proposal_id",
            "review_round",
            "reviewer__username",
            ExpressionWrapper(Q(edited_payload__isnull=False), output_field=BooleanField()),
            "created_at",
        )
    ):
        if rounds[proposal_id] == review_round:
            approvers.setdefault(proposal_id, []).append(username)
            named = approved.get(proposal_id, ([], at))[0]
            named.append(f"{username} (with edits)" if edited else username)
            approved[proposal_id] = (named, at)
    # Each proposal once, however many people (and channels) it is told to: what is read of
    # it is read once, and said once (a paused campaign read once a reader was said as often).
    proposals = list({proposal.pk: proposal for proposal, _ in items}.values())
    failed = {proposal.pk for proposal, kind in items if kind == NotificationKind.FAILED}
    failures = _failures(
        [proposal for proposal in proposals if proposal.pk in failed],
        approved,
        failed_by=failed_by,
    )
    # A kill switch a reason names, released (or moved off it) since it was routed, or since
    # it held it back before it ran, reads so, not engaged (the switches engaged now read once
    # an account, where a reason names one).
    accounts = {
        proposal.account_id: proposal.account
        for proposal, _ in items
        if any(
            str(reason).startswith((KILL_SWITCH_FINDING, *HELD_BACK_ANY))
            for reason in proposal.verdict_reasons or []
        )
    }
    engaged = {pk: engaged_kill_switches(account) for pk, account in accounts.items()}
    runs = kill_switch_runs() if accounts else {}
    # Of those, the ones engaged when its reasons were recorded, in their run now: one
    # engaged since on the same scope is not the switch they name, though named alike.
    engaged_now = {
        proposal.pk: frozenset().union(
            *map(
                kill_switch_names,
                kill_switches_engaged_then(
                    engaged[proposal.account_id],
                    runs,
                    recorded_at=kill_switch_findings_recorded_at(proposal),
                ),
            )
        )
        for proposal, _ in items
        if proposal.account_id in engaged
    }
    # One moved off it while engaged reads as moved there, not released, as its page says.
    moved = kill_switches_moved_off() if accounts else {}
    # What its agent proposed, where it reads otherwise now, as its page says it.
    since = since_proposed_each(proposals)
    # Each campaign it touches not active now, the ledger read once for all of them, and
    # what approving (or retrying) it does on those paused, as its page says it.
    campaigns_now = campaigns_now_each(proposals)
    paused_still_runs = _paused_still_runs(proposals, campaigns_now, failures)
    messages = []
    for proposal, kind in items:
        due_at, claim = due.get(proposal.pk), claims.get(proposal.pk)
        if kind == NotificationKind.FAILED:  # it waits for no decision, nor is anyone on it
            due_at, claim = None, None
        messages.append(
            ProposalMessage(
                headline=HEADLINES.get(kind, "Waits for a decision"),
                proposal_id=proposal.pk,
                summary=proposal.summary,
                agent=proposal.agent.name,
                account=proposal.account.external_id,
                action_type=action_types.label(proposal.action_type),
                magnitude=proposal.magnitude_label,
                risk=proposal.risk,
                reasons=_reasons_now(
                    proposal, engaged_now.get(proposal.pk, frozenset()), moved=moved
                ),
                due_at=due_at,
                overdue=due_at is not None
                and (kind == NotificationKind.ESCALATION or due_at <= now),
                claimed_by=claim.user.get_username() if claim and claim.is_live(now) else None,
                claimed_until=claim.lapses_at if claim and claim.is_live(now) else None,
                url=proposal_url(proposal.pk),
                seen=payload_seen(proposal.payload),
                progress=""
                if kind == NotificationKind.FAILED
                else approvals_so_far(approvers.get(proposal.pk, []), proposal),
                words=_words_shown(proposal),
                failure=failures.get(proposal.pk),
                **_changed_since_proposed(since[proposal.pk]),
                campaigns_now=campaigns_now[proposal.pk].not_active,
                paused_still_runs=paused_still_runs.get(proposal.pk, ""),
            )
        )
    return messages


def _paused_still_runs(
    proposals: Sequence[Proposal], campaigns_now: dict[int, CampaignsNow], failures: dict
) -> dict[int, str]:
    """What approving (or retrying) each of these does on the campaigns of it paused now, as
    its page says it before anyone decides (``paused_still_runs_said``), by id: for one that
    waits, unless approving it ends it superseded (a value it sets moved since); for one that
    failed, unless a retry is refused now or ends it so (``Failure``). None for another."""
    paused = [p for p in proposals if campaigns_now[p.pk].paused]
    waiting = [p for p in paused if p.status == ProposalStatus.PENDING_REVIEW]
    moved = target_moves_each(
        [p for p in waiting if sets_values(p)],
        ledger=campaigns_read(campaigns_now),
    )
    said = {}
    for proposal in paused:
        failure = failures.get(proposal.pk)
        if proposal.status == ProposalStatus.PENDING_REVIEW and not moved.get(proposal.pk):
            act = "approving"
        elif (
            proposal.status == ProposalStatus.FAILED
            and failure is not None
            and not failure.retry_refused
            and not failure.retry_ends_it
        ):
            act = "retrying"
        else:
            continue
        said[proposal.pk] = paused_still_runs_said(campaigns_now[proposal.pk].paused, act=act)
    return said


def _reasons_now(
    proposal: Proposal, engaged_now: frozenset[str], *, moved: dict[str, str]
) -> list[str]:
    """Why it waits (or waited), as its page says it: each reason as a person is told it
    (``_named_for_people``), a kill switch's released since, or moved off it, as it stands
    now, saying what became of its own switch (``kill_switch_finding_now``; one that held it
    back before it ran, ``held_back_reason_now``); then, where none covers it now, that,
    once, below them (``kill_switches_gone_said``). It said "no kill switch covers it now"
    at the end of each."""
    waits = proposal.status == ProposalStatus.PENDING_REVIEW
    said = []
    for reason in _named_for_people(proposal):
        if reason.startswith(HELD_BACK_ANY):
            reason = held_back_reason_now(reason, engaged_now, waits=waits, none_covers_said=False)
        else:
            reason = kill_switch_finding_now(
                reason, engaged_now, moved=moved, none_covers_said=False
            )
        said.append(reason)
    none_covers = kill_switches_gone_said(proposal.verdict_reasons, engaged_now, moved=moved)
    return [*said, none_covers] if none_covers else said


def _named_for_people(proposal: Proposal) -> list[str]:
    """Its reasons as a person who decides is told them: one a proposal approved ahead of it
    made names that proposal by id (``named_for_people``), as the console does."""
    named = named_for_people(proposal.guardrail_findings)
    return [named.get(str(reason), str(reason)) for reason in proposal.verdict_reasons or []]


def _changed_since_proposed(since: SinceProposed) -> dict[str, str]:
    """``as_proposed`` and ``changed_by`` of a message about a proposal that reads otherwise
    than its agent proposed it (``SinceProposed``: "As edited by operator and re-assessed");
    nothing for one that reads as proposed."""
    if not since.reads_otherwise:
        return {}
    return {"as_proposed": since.proposed_summary, "changed_by": since.how_by}


def _failures(
    proposals: Sequence[Proposal],
    approved: dict[int, tuple[list[str], datetime]],
    *,
    failed_by: datetime | None,
) -> dict:
    """How each of these proposals' execution failed, as its history recorded it (the last
    failure, or the last by ``failed_by``: the one a message written then tells of, even
    once a retry has run since), and who let it run, by proposal id. The last is the last
    written (``history_id``): a record's date is its writer's clock, and a web host's and a
    worker's can disagree by seconds."""
    if not proposals:
        return {}
    # The switches engaged over each account now, read once an account.
    switches = {
        proposal.account_id: tuple(
            kill_switch_reason(switch) for switch in engaged_kill_switches(proposal.account)
        )
        for proposal in {proposal.account_id: proposal for proposal in proposals}.values()
    }
    recorded = Proposal.history.filter(
        id__in=[p.pk for p in proposals],
        status=ProposalStatus.FAILED,
        # The move to failed: not a later record of the failed proposal (whom it was told).
        history_change_reason__startswith=EXECUTION_FAILED,
    )
    if failed_by is not None:
        recorded = recorded.filter(history_date__lte=failed_by)
    last = {}
    for proposal_id, at, reason in recorded.order_by("id", "history_id").values_list(
        "id", "history_date", "history_change_reason"
    ):
        last[proposal_id] = (at, (reason or "").removeprefix(EXECUTION_FAILED))
    # Failed now, still to be retried: a retry refused now whoever makes it says why, as the
    # retry itself is refused (``retry_refused_now``), read once for all of them; else what a
    # retry would do: one whose target moved, a retry ends superseded there and then,
    # sending nothing; another's, what it would send.
    still_failed = [p for p in proposals if p.status == ProposalStatus.FAILED]
    refused = retries_refused_now(still_failed)
    let_through = [p for p in still_failed if p.pk not in refused]
    moved = target_moves_each([p for p in let_through if sets_values(p)])
    retry_checks = retry_checks_said([p for p in let_through if not moved.get(p.pk)])
    # A move a retry would re-assess (the budget it draws on moved) over its policy's
    # cumulative ceiling, as its page says beside Retry; the ledger read once for all.
    over_cumulative = retries_over_cumulative_ceiling(let_through)
    failures = {}
    for proposal in proposals:
        at, reason = last.get(proposal.pk, (None, ""))
        approved_by = approved.get(proposal.pk)
        # A retry made after the failure told of is not how it came to run then.
        retried = (
            retried_text(proposal)
            if failed_by is None or (proposal.approved_at and proposal.approved_at <= failed_by)
            else ""
        )
        failures[proposal.pk] = Failure(
            at=at,
            # The channel's words (an endpoint's answer, quoted) on one line, shown as typed.
            said=one_line(reason) or "no reason was given",
            let_run=(approved_said(*approved_by) if approved_by else let_run_said(proposal))
            + retried,
            by_policy=not approved_by and proposal.verdict_outcome == VerdictOutcome.AUTO_APPROVE,
            # Engaged over it now, while a retry is still to be made: once a person sent it to
            # run again, a message rebuilt says nothing of what a retry would do.
            kill_switches=(
                switches[proposal.account_id] if proposal.status == ProposalStatus.FAILED else ()
            ),
            retry_check=retry_checks.get(proposal.pk, ""),
            retry_ends_it=(
                retry_ends_it_said(proposal, moved[proposal.pk]) if moved.get(proposal.pk) else ""
            ),
            retry_refused=refused[proposal.pk].message if proposal.pk in refused else "",
            retry_over_cumulative=retry_over_cumulative_said(over_cumulative.get(proposal.pk, ())),
        )
    return failures


def retried_text(proposal: Proposal) -> str:
    """ "; its execution failed, and operator sent it to run again at …" for a proposal a
    person retried (the last time), which its approval's words alone do not say; else ""."""
    if not was_retried(proposal):
        return ""
    who = (
        Proposal.history.filter(id=proposal.pk, status=ProposalStatus.APPROVED)
        .order_by("-history_id")
        .values_list("history_actor", flat=True)
        .first()
    )
    return f"; {sent_to_run_again_said(who or 'a person', console_time(proposal.approved_at))}"


def _words_shown(proposal: Proposal) -> list[tuple[str, list[tuple[str, str]]]]:
    return action_types.named(proposal.action_type).words_shown(proposal.payload)


def approvals_so_far(approvers: Sequence[str], proposal: Proposal) -> str:
    """How far a proposal that waits has come, in its round: "Approved by operator: 1 of 2
    approvals; waits for 1 more."; "" before anyone approved."""
    if not approvers:
        return ""
    missing = proposal.required_approvals - len(approvers)
    return (
        f"Approved by {', '.join(approvers)}: {len(approvers)} of "
        f"{proposal.required_approvals} approvals; waits for {missing} more."
    )


def the_pause_only(message: ProposalMessage) -> ProposalMessage:
    """The message as told to a person who may not let its proposal run (decide it while it
    waits; retry it once its execution failed): a campaign of it paused now is said paused,
    not what approving or retrying does there ("Retrying it still makes the change on
    generic-search …"), which its page says only to one who may, beside Approve or Retry."""
    return replace(message, paused_still_runs="")


def failure_as_told(message: ProposalMessage, *, may_retry: bool) -> ProposalMessage:
    """A message saying its proposal's execution failed, as told to a reader who
    ``may_retry`` it (``retry_refusal``: their role, and whether a retry is refused now) or
    may not: to one who may not, nothing of what a retry would do, nor what retrying does on
    a campaign of it paused now (``the_pause_only``), as its page says those beside Retry,
    to one it offers Retry."""
    message = replace(message, failure=replace(message.failure, may_retry=may_retry))
    return message if may_retry else the_pause_only(message)


def addressed_to_one_who_may_not_decide(message: ProposalMessage, why: str) -> ProposalMessage:
    """The message as told to a person who may not decide it (``why``: why not, and who
    does): "Waits for a decision", not "Waits for your decision", and "Overdue: waits for a
    decision", not "Overdue: escalated to you", as if it had reached one who may; the rest,
    without buttons, says whose it is to decide and that it is theirs to read."""
    headline = {
        HEADLINES[NotificationKind.WAITING]: WAITS_NOT_FOR_YOU,
        HEADLINES[NotificationKind.ESCALATION]: OVERDUE_NOT_FOR_YOU,
    }.get(message.headline, message.headline)
    return replace(the_pause_only(message), headline=headline, not_yours=why)
