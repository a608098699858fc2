"""The platform's vocabulary: a proposal's statuses and the moves between them, the policy
engine's outcomes and their labels, and the sets of statuses the apps count by. Each is
defined here once, below every app, and imported: two places that disagree on which
statuses count as "approved" would show a person two different truths."""

import re
from collections.abc import Sequence

from django.db import models

from hitlproject.errors import DomainError


class ProposalStatus(models.TextChoices):
    SUBMITTED = "submitted", "Submitted"
    PENDING_REVIEW = "pending_review", "Pending review"
    APPROVED = "approved", "Approved"
    BLOCKED = "blocked", "Blocked"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    WITHDRAWN = "withdrawn", "Withdrawn"
    EXECUTING = "executing", "Executing"
    EXECUTED = "executed", "Executed"
    FAILED = "failed", "Failed"
    SUPERSEDED = "superseded", "Superseded"


class VerdictOutcome(models.TextChoices):
    AUTO_APPROVE = "auto_approve", "Auto-approve"
    REVIEW = "review", "Human review"
    BLOCK = "block", "Block"


S = ProposalStatus

# How a sentence says a proposal has come to a status ("Proposal #25 has failed."), where a
# page tells a person what became of it: a status's label does not fit after "is now" ("is
# now failed").
STATUS_REACHED: dict[str, str] = {
    S.SUBMITTED: "is submitted, not routed yet",
    S.PENDING_REVIEW: "waits for a person's decision",
    S.APPROVED: "is approved",
    S.BLOCKED: "is blocked",
    S.REJECTED: "is rejected",
    S.EXPIRED: "has expired",
    S.WITHDRAWN: "is withdrawn",
    S.EXECUTING: "is being executed",
    S.EXECUTED: "has been executed",
    S.FAILED: "has failed",
    S.SUPERSEDED: "has been superseded",
}

# The moves the lifecycle's one transition function allows, from each status.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.SUBMITTED: frozenset({S.APPROVED, S.PENDING_REVIEW, S.BLOCKED, S.WITHDRAWN}),
    S.PENDING_REVIEW: frozenset({S.APPROVED, S.REJECTED, S.EXPIRED, S.WITHDRAWN, S.SUPERSEDED}),
    S.APPROVED: frozenset({S.EXECUTING, S.PENDING_REVIEW, S.SUPERSEDED}),
    S.EXECUTING: frozenset({S.EXECUTED, S.FAILED, S.PENDING_REVIEW, S.SUPERSEDED}),
    # Retried, or superseded as a person retries it: its target moved since it was made.
    S.FAILED: frozenset({S.APPROVED, S.SUPERSEDED}),
}
# Statuses a proposal never leaves: nothing more is routed, moved or run once it is in one.
FINAL_STATUSES = frozenset(S.values) - frozenset(ALLOWED_TRANSITIONS)
# A move into one of these is a decision, by people or by policy: it records ``decided_at``.
DECIDED_STATUSES = frozenset({S.APPROVED, S.REJECTED, S.BLOCKED})
# How a review round can end (a proposal leaves review only into one of these).
REVIEW_ENDINGS = ALLOWED_TRANSITIONS[S.PENDING_REVIEW]
# The review endings that are people's decisions (the others: nobody decided in time, or
# nobody had to).
REVIEW_ENDINGS_DECIDED_BY_PEOPLE = frozenset({S.APPROVED, S.REJECTED})
# Approved to run, by people or by policy, whether or not it has run yet, or failed: what a
# decision count counts as approved (a person who approved what later failed approved it).
APPROVED_TO_RUN_STATUSES = frozenset({S.APPROVED, S.EXECUTING, S.EXECUTED, S.FAILED})
# Approved to run, and running: the platform moves these on with nobody acting.
UNDER_WAY_STATUSES = frozenset({S.APPROVED, S.EXECUTING})
# A proposal's moves count against cumulative ceilings from its approval on, unless it fails,
# is superseded or goes back to a person; until it has executed, only towards the bound each
# pushes. Not ``APPROVED_TO_RUN_STATUSES``: a failed move changed nothing.
COUNTED_STATUSES = frozenset({S.APPROVED, S.EXECUTING, S.EXECUTED})
# A proposal that may still run (a failed one, when a person retries it): its figures now are
# worth showing beside what it was made on.
MAY_STILL_RUN_STATUSES = frozenset({S.PENDING_REVIEW, S.APPROVED, S.FAILED})
# A proposal a person may still decide (one just submitted, not yet routed, may go to one).
MAY_STILL_BE_DECIDED_STATUSES = frozenset({S.SUBMITTED, S.PENDING_REVIEW})
# Waiting to run, and so superseded when a change lands on what it sets (a failed one is
# re-checked when retried instead: the lifecycle does not supersede from FAILED).
SUPERSEDABLE_STATUSES = frozenset({S.PENDING_REVIEW, S.APPROVED})

# The policy engine's outcomes, in the order the console shows them, and their labels: as
# the policy pages say where an action went, and as a what-if chart names its bars.
VERDICT_OUTCOMES = tuple(VerdictOutcome.values)
ROUTED_LABELS = {
    VerdictOutcome.AUTO_APPROVE: "auto-executed",
    VerdictOutcome.REVIEW: "to a human",
    VerdictOutcome.BLOCK: "blocked",
}
# The what-if's rows: what became of each routing. One the engine auto-approved auto-executed
# if its proposal then executed as routed, with nobody approving it (a person's retry of a
# failed run included, as the dashboard's count has it); one superseded, sent back to a
# person, failed and not run since, or not yet run by the period's end did not.
AUTO_EXECUTED, AUTO_NOT_EXECUTED = "auto_executed", "auto_not_executed"
SIMULATED_ROWS = (AUTO_EXECUTED, AUTO_NOT_EXECUTED, VerdictOutcome.REVIEW, VerdictOutcome.BLOCK)
SIMULATED_ROW_LABELS = {
    AUTO_EXECUTED: "auto-executed",
    AUTO_NOT_EXECUTED: "auto-approved, not executed (superseded, sent back, failed or not run)",
    VerdictOutcome.REVIEW: ROUTED_LABELS[VerdictOutcome.REVIEW],
    VerdictOutcome.BLOCK: ROUTED_LABELS[VerdictOutcome.BLOCK],
}
# A routing as the what-if's examples name it: what the engine decided, not what followed.
ROUTING_LABELS = {
    VerdictOutcome.AUTO_APPROVE: "auto-approved",
    VerdictOutcome.REVIEW: ROUTED_LABELS[VerdictOutcome.REVIEW],
    VerdictOutcome.BLOCK: ROUTED_LABELS[VerdictOutcome.BLOCK],
}
# A dry run's verdict: what would happen to the action, were it proposed now (nothing ran).
DRY_RUN_LABELS = {
    VerdictOutcome.AUTO_APPROVE: "would be auto-approved",
    VerdictOutcome.REVIEW: "to a human",
    VerdictOutcome.BLOCK: "blocked",
}
# A dry run's verdict in a sentence, as its example says it with a draft and with the policy
# in force: "auto-approved with the draft, sent to a person with the policy in force".
DRY_RUN_OUTCOME_SAID = {
    VerdictOutcome.AUTO_APPROVE: "auto-approved",
    VerdictOutcome.REVIEW: "sent to a person",
    VerdictOutcome.BLOCK: "blocked",
}
WHAT_IF_LABELS = {
    VerdictOutcome.AUTO_APPROVE: "Run on their own",
    VerdictOutcome.REVIEW: "To a person",
    VerdictOutcome.BLOCK: "Blocked",
}


# Reading proposals in the console (Django's permission on the approvals app's Proposal): the
# audit trail, its chain, the dashboard and the messages to people ask for it, and whoever acts
# on a proposal must have it.
READ_PERMISSION = "approvals.view_proposal"
# Reading people (their accounts, their roles): the auditors' (``approvals.roles``); the
# audit export gives their records, and those of each person's own channels, to them alone.
PEOPLE_PERMISSION = "auth.view_user"

# A ledger field that holds no value (a target CPA never set), wherever a page shows its value.
NOT_SET = "not set"


def how_many(count: int, noun: str) -> str:
    """A count and its noun in agreement, as a person writes them: "1 proposal", "3
    proposals" (never "1 proposal(s)")."""
    return f"{count} {noun if count == 1 else noun + 's'}"


class HardCeilingFinding(str):
    """What the hard ceiling of the policy that routed a proposal refuses about it now, the
    ceiling lowered below it since, or the proposal re-assessed above it
    (``approvals.services.proposals.hard_ceilings_lowered_since``): told apart from a
    guardrail's finding among the reasons its approval is refused for, so that it is said as
    the policy's (``refuses_now``). A policy's hard ceiling is no guardrail: the policy routed
    the proposal; the guardrails (kill switches, caps, strategy locks, brand rules) stand
    beside every policy."""


class DecidingCeilingFinding(HardCeilingFinding):
    """What the hard ceiling of the policy that decides a failed proposal now refuses about
    it as its retry would be re-assessed, where that is another policy than routed it (a more
    specific one added since): its retry's execution is judged by it
    (``executors.runner._reassessed``), so it is said as that policy's (``refused_by``)."""


# The approved proposals a policy routed that are not yet carried out, and what a hard ceiling
# of that policy lowered below one since does to it (``executors.runner``'s
# ``_hard_ceilings_lowered``): said in these words wherever a person is told of them (the
# policy's form, the message after its save, a draft's promotion page) and by the queue's
# list of exactly those (its filter's heading, "By …", and its choice).
NOT_YET_CARRIED_OUT = "not yet carried out (queued, or between attempts on {its} channel)"
AT_NEXT_ATTEMPT = "at its next attempt rather than run"


def fails_at_next_attempt_said(reasons: Sequence[str], *, due: str = "") -> str:
    """What becomes of one such proposal (approved, not yet carried out) that the hard ceiling
    of the policy that routed it refuses now (``reasons``: ``hard_ceilings_lowered_since``'s),
    said where a person or its agent reads what comes next of it: "The hard ceiling of the
    policy that routed it refuses it now: …. It fails at its next attempt (due 15:55:34 UTC)
    rather than run." ``due``: when that attempt is due, if known (one between attempts on
    its channel); none said for one queued."""
    when = f" (due {due})" if due else ""
    return f"{refusal_said(reasons)} It fails at its next attempt{when} rather than run."


FAILING_AT_NEXT_ATTEMPT_TITLE = "hard ceiling that fails it at its next attempt"


def failing_at_next_attempt_said(policy: str, *, draft: bool) -> str:
    """The queue's list of the approved proposals a policy's hard ceiling fails at their next
    attempt (``policy``: its name, quoted), or a draft's would once promoted, in words."""
    listed = f"Approved, {NOT_YET_CARRIED_OUT.format(its='their')}, above the hard ceiling of "
    if draft:
        return f"{listed}draft {policy}: once it is promoted, each fails {AT_NEXT_ATTEMPT}"
    return f"{listed}{policy} now: each fails {AT_NEXT_ATTEMPT}"


def refuses_now(reasons: Sequence[str], *, named: str = "it") -> str:
    """Who refuses a proposal now, for ``reasons`` (a guardrail's findings, its policy's hard
    ceiling's: ``HardCeilingFinding``), as a sentence begins it, before the reasons: "a
    guardrail refuses it now", "the hard ceiling of the policy that routed it refuses it now",
    "a guardrail and the hard ceiling of the policy that routed it refuse it now"; ``named``
    names the proposal where it is refused ("… that routed it refuses proposal #12 now"), in
    the page's words otherwise: a message read "the policy that routed proposal #12 refuses it
    now" beside the page's "the policy that routed it refuses it now"."""
    by = refused_by(reasons)
    if " and " in by:  # a guardrail and a policy's hard ceiling, or two policies' ceilings
        return f"{by} refuse {named} now"
    return f"{by} refuses {named} now"


def refused_by(reasons: Sequence[str]) -> str:
    """Who refuses a proposal for ``reasons`` (``refuses_now``), as a sentence names them:
    "a guardrail", "the hard ceiling of the policy that routed it" (or, for a retry judged by
    a policy added since, ``DecidingCeilingFinding``, "… that decides it now"; where both
    policies refuse it, "the hard ceilings of the policy that decides it now and of the
    policy that routed it"), or a guardrail and those."""
    ceilings = [reason for reason in reasons if isinstance(reason, HardCeilingFinding)]
    ceiling = bool(ceilings)
    guardrail = len(ceilings) < len(reasons)
    deciding = sum(isinstance(reason, DecidingCeilingFinding) for reason in ceilings)
    policy_s = "the hard ceiling of the policy that routed it"
    if deciding and deciding < len(ceilings):
        policy_s = (
            "the hard ceilings of the policy that decides it now and of the policy that routed it"
        )
    elif deciding:
        policy_s = "the hard ceiling of the policy that decides it now"
    if ceiling and guardrail:
        return f"a guardrail and {policy_s}"
    return policy_s if ceiling else "a guardrail"


def refusal_said(reasons: Sequence[str], *, named: str = "it") -> str:
    """An approval, a retry or an execution refused for ``reasons``, in a sentence: "A
    guardrail refuses proposal #12 now: …" (``refuses_now``)."""
    said = refuses_now(reasons, named=named)
    return f"{said[:1].upper()}{said[1:]}: " + " ".join(reasons)


def edit_within(reasons: Sequence[str]) -> str:
    """What an edit must keep within for the approval ``reasons`` refuse to pass: "the
    guardrail", "its policy's hard ceiling", or both."""
    ceiling = any(isinstance(reason, HardCeilingFinding) for reason in reasons)
    guardrail = not all(isinstance(reason, HardCeilingFinding) for reason in reasons)
    if ceiling and guardrail:
        return "the guardrail and its policy's hard ceiling"
    return "its policy's hard ceiling" if ceiling else "the guardrail"


def and_joined(names: Sequence[str]) -> str:
    """Names listed as a person lists them: "operator", "operator and operator2", "a, b and
    c"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def as_sentence(text: str) -> str:
    """Words ending a sentence, with its full stop unless they end as one already: a policy
    owner's reason ("Tracking outage" → "Tracking outage."), or what a save changed, which may
    end with a value's own ("… as agreed in the Q1 plan.", never "plan..")."""
    text = text.strip()
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def action_type_label(name: str) -> str:
    """An action type as a person reads it: "budget reallocation", not its name."""
    return name.replace("_", " ")


# A person's note (on a decision, on an outcome), as long as an agent's outcome note may be:
# it reaches the agent as feedback, and a page shows it whole.
NOTE_MAX_LENGTH = 5000


def note_checked(note: str) -> str:
    """``note`` if it is within ``NOTE_MAX_LENGTH``; else a ``DomainError`` saying so."""
    if len(note) > NOTE_MAX_LENGTH:
        raise DomainError(
            f"A note is at most {NOTE_MAX_LENGTH:,} characters; this one is {len(note):,}."
        )
    return note


# What an outbox's log says of an attempt whose sender stopped before recording it (a message
# to a person, an agent's callback): it may have gone, and is sent again.
INTERRUPTED = (
    "interrupted: its sender stopped before recording whether it went, so it may have; "
    "to be sent again"
)

# How a proposal's history says its execution failed, before the failure's own words
# ("execution failed: the endpoint answered HTTP 400: …"): written by the executors, read by
# the messages that tell of the failure.
EXECUTION_FAILED = "execution failed: "
# Said of a failed round's attempts that may have been carried out all the same (sent, and no
# answer said whether), by the failure (``no_sure_answer_said``) and beside its Retry button.
NO_SURE_ANSWER = "got no answer that says whether the channel carried it out"
# The HTTP answer an attempt's error records ("the endpoint answered HTTP 503 (Retry-After:
# 600 s)"): a server's error, which the platform takes as no sure answer (SPEC: 5xx are
# retried), but an answer all the same, said as such (``unsure_answers_said``).
# Read from its start: a round's last attempt's error goes on to say the others' answers.
_HTTP_ANSWERED = r"HTTP \d{3}\b(?: \([^)]*\))?"
_HTTP_ANSWER = re.compile(rf"the endpoint answered ({_HTTP_ANSWERED})")
# Said of attempts sent before a proposal ended without sending anything more (superseded)
# that got no sure answer, after "nothing more was sent, but attempt 2, sent at …,", wherever
# a person or its agent is told how it ended: not "nothing was done", which only a sure answer
# (a refusal, a 408 or a 429) tells.
MAY_HAVE_BEEN_CARRIED_OUT = "got no sure answer and may have been carried out on the channel"
# When a kill switch held back an approved proposal between two attempts, after one sent to
# the channel got no sure answer (it may have run), as every count and record of what the
# switch did says it: "sent back to a person after …" (its history, its agent's feedback),
# "1 held back after …" (the switch's messages), where one held before any attempt went is
# "held back before it ran". It had been worded three ways.
AFTER_AN_UNSURE_ATTEMPT = "after an attempt sent to the channel got no sure answer"
# How an attempt's error begins when the channel carried out some of the action and not the
# rest (a creative batch, item by item): failed, and never retried, which would do the done
# part twice.
PARTLY_CARRIED_OUT = "Partly carried out on the channel, not retried: "

# A failed execution a person sent back to run (its page's Retry button), in the one phrase
# everyone reads it in: the operator's confirmation, the console's log and the proposal's
# history, the messages to people, and its agent's callback ("sent to run again by a
# reviewer"). Not "retried": an execution's own further attempts are retries ("not retried",
# above), and a reader of both could not tell a person's act from the platform's.
SENT_TO_RUN_AGAIN = "sent to run again"


# A failed attempt after which a kill switch held its proposal back and a person approved it
# again (its next attempt theirs, as after a retry): "Failed, held back, then approved again by
# operator at …". It read "Failed, tried again", the words of the platform's own further attempt.
HELD_BACK_APPROVED_AGAIN = "held back, then approved again"


# How a review round ended, wherever a person reads it: its decision deadline's line on the
# proposal's page and its records in the proposal's history ("rejected in time", "approved
# after the deadline"; one nobody decided, how it ended instead, "withdrawn before enough
# people approved it"), and the legends of what the scorecards count ("Expired: its review
# window closed before enough people approved it"). The page read "decided in time" beside
# the history's "rejected, in time"; the legend, "Withdrawn: withdrawn before a decision" of
# proposals one of two reviewers had approved, and those a kill switch held back after one.
BEFORE_ENOUGH_APPROVED = "before enough people approved it"


def round_ending_said(ended: str, *, in_time: bool | None) -> str:
    """A round that ``ended`` ("rejected", "withdrawn") as said beside when it ended: "rejected
    in time", "approved after the deadline"; where nobody decided it (``in_time`` None),
    "withdrawn before enough people approved it"."""
    if in_time is None:
        return f"{ended} {BEFORE_ENOUGH_APPROVED}"
    return f"{ended} in time" if in_time else f"{ended} after the deadline"


def sent_to_run_again_said(who: str, when: str) -> str:
    """Who sent a failed execution to run again, and when, as every reader is told it after
    what came before: "its execution failed, and operator sent it to run again at …"."""
    return f"its execution failed, and {who} sent it to run again at {when}"


class CarriedOut(models.TextChoices):
    """What a proposal's execution attempts did on the channel, as far as the platform knows
    (the API's ``execution.carried_out``): what an agent is told, never more than is known."""

    YES = "yes", "Carried out"
    PARTLY = "partly", "Partly carried out"
    UNKNOWN = "unknown", "May have been carried out (sent, no sure answer)"
    NO = "no", "Not carried out"


def attempt_numbers(numbers: Sequence[int]) -> str:
    """``[1, 2, 3, 5]`` in words: "Attempts 1–3 and 5"; ``[4]``: "Attempt 4"."""
    runs: list[list[int]] = []
    for number in sorted(numbers):
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    said = [f"{run[0]}–{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs]
    if len(numbers) == 1:
        return f"Attempt {said[0]}"
    listed = said[0] if len(said) == 1 else ", ".join(said[:-1]) + " and " + said[-1]
    return f"Attempts {listed}"


def retry_is_new(key: str, attempts: int) -> str:
    """What a person retrying must know of a failed round's ``attempts`` attempts sent before:
    the retry is a new request, with its own ``key``, that the channel cannot tell from them.
    ``key`` is "" where the channel gets none (Google Ads): no key is named then."""
    these = "these" if attempts > 1 else "it"
    with_key = f" (key {key})" if key else ""
    return f"a retry is a new request{with_key} the channel cannot tell from {these}"


def http_answer(error: str) -> str:
    """The HTTP answer an attempt's ``error`` records ("HTTP 503 (Retry-After: 600 s)"), ""
    if it got none (a timeout, a lost connection, a worker stopped while it was under way)."""
    found = _HTTP_ANSWER.match(error)
    return found[1] if found else ""


# What ``unsure_answers_said`` says of the channel's answers to attempts: of one answer to each
# of them, and of several.
_ONE_ANSWER_UNSURE = "which does not say whether the channel carried it out"
_EACH_ANSWER_UNSURE = "none says whether the channel carried it out"


def unsure_answers_said(attempts: Sequence[tuple[int, str]], *, named: bool = True) -> str:
    """What the channel answered ``attempts`` (each its number and its error) that got no sure
    answer, as a sentence says it, without its full stop: "Attempts 1–5 were answered HTTP 503
    (Retry-After: 600 s), which does not say whether the channel carried it out"; "Attempt 1
    got no answer that says whether the channel carried it out". A server's "busy, come back
    later" is an answer: "got no answer" was read as the endpoint silent. ``named`` False:
    without the attempt's number, for a sentence that names it (one attempt)."""
    groups: dict[str, list[int]] = {}
    for number, error in sorted(attempts):
        groups.setdefault(http_answer(error), []).append(number)
    unanswered = groups.pop("", [])
    if not groups:
        return f"{attempt_numbers(unanswered)} {NO_SURE_ANSWER}" if named else NO_SURE_ANSWER
    parts = [
        f"{attempt_numbers(numbers) + ' ' if named else ''}"
        f"{'was' if len(numbers) == 1 else 'were'} answered {answer}"
        for answer, numbers in groups.items()
    ]
    if unanswered:
        parts.append(f"{attempt_numbers(unanswered)} got no answer")
    parts = [parts[0], *(part[:1].lower() + part[1:] for part in parts[1:])]
    if len(parts) == 1:  # one answer, to each of them
        return f"{parts[0]}, {_ONE_ANSWER_UNSURE}"
    return f"{and_joined(parts)}: {_EACH_ANSWER_UNSURE}"


# Attempt numbers as ``attempt_numbers`` says them ("Attempt 4", "Attempts 1–3 and 5"); of a
# later part of a sentence, lower-cased ("attempts 2 and 3").
_NUMBERS = r"\d+(?:–\d+)?(?:(?:, | and )\d+(?:–\d+)?)*"
ATTEMPT_NUMBERS = rf"Attempts? {_NUMBERS}"
_LATER_NUMBERS = rf"attempts? {_NUMBERS}"
_ANSWERED = rf" (?:was|were) answered {_HTTP_ANSWERED}"
# All that ``unsure_answers_said`` (named) can say, and nothing more: where it ends a text
# after free text (a held-back reason, after a policy owner's reason for a kill switch,
# which may speak of attempts too), it is found there, whatever that text says before it.
UNSURE_ANSWERS_SAID = (
    rf"(?:{ATTEMPT_NUMBERS} {re.escape(NO_SURE_ANSWER)}"
    rf"|{ATTEMPT_NUMBERS}{_ANSWERED}, {re.escape(_ONE_ANSWER_UNSURE)}"
    rf"|{ATTEMPT_NUMBERS}{_ANSWERED}(?:, {_LATER_NUMBERS}{_ANSWERED})*"
    rf" and {_LATER_NUMBERS}(?:{_ANSWERED}| got no answer): {re.escape(_EACH_ANSWER_UNSURE)})"
)


def no_sure_answer_said(attempts: Sequence[tuple[int, str]]) -> str:
    """What a failure records of its round's ``attempts`` that got no sure answer:
    what happened, and nothing of a retry, which is said where it is read and true then (the
    Retry note, ``retry_may_repeat``; a message to a person who may retry, ``retry_check``):
    a stored sentence is quoted long after (the proposal's status line and history, the
    attempt's record, its agent's feedback and callback), when a retry may send nothing, and
    to an agent, who cannot retry at all. ``attempts``: each its number and its error, whose
    answer is said (``unsure_answers_said``)."""
    return f"{unsure_answers_said(attempts)}."


def retry_check(numbers: Sequence[int], key: str) -> str:
    """Told to a person who may retry a failed proposal, after its failure (which says that
    ``numbers`` got no sure answer, ``no_sure_answer_said``), while a retry would send a new
    request with ``key`` ("" where the channel gets none): to check on the channel first."""
    with_key = f" (key {key})" if key else ""
    return (
        "Check on the channel before retrying it: a retry is a new request"
        f"{with_key} the channel cannot tell from {attempt_numbers(numbers).lower()}."
    )


def retry_may_repeat(attempts: Sequence[tuple[int, str]], key: str | None) -> str:
    """Said of a failed round's ``attempts`` (each its number and its error) that got no sure
    answer, by the failure and beside its Retry button: each may have been carried out, and a
    retry, a new request with ``key`` ("" where the channel gets none), could do it again.
    ``key`` None: a retry sends nothing (its target moved: it ends superseded), and only the
    check is said."""
    said = unsure_answers_said(attempts)
    if key is None:
        return f"{said}: check on the channel."
    return f"{said}: check on the channel before retrying it; {retry_is_new(key, len(attempts))}."


# How a verdict the policy engine could not reach begins (its risk unknown, 100: seen first),
# live and in the simulation's replay, and how a verdict is known to be one.
ENGINE_COULD_NOT_EVALUATE = "The policy engine could not evaluate this proposal"
