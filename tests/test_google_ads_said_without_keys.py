"""Google Ads gets no idempotency key: a round's key (hitl-proposal-<id>-<n>) is the runner's
own and never reaches it. What a person is told of its requests names none: a retry that
could do an ad creation twice is "a new request the channel cannot tell from it", with no
key an operator would look for on Google Ads; and a held round resumed is not said to go as
a new request because "what it sends changed", when only its key (never sent) did and
Google Ads reads the values it sets before setting them."""

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from hitlproject.vocabulary import NO_SURE_ANSWER
from ledger.models import Campaign
from tests.conftest import bid_adjustment, creative, creative_batch
from tests.factories import evaluated
from tests.test_kill_switch_holds_execution import engage, resumed_said
from tests.test_stopped_agent_not_run import stop
from tests.test_unanswered_attempts import retry_warning

DEADLINE = 1  # this process's GOOGLE_ADS_DEADLINE here: an answer later than it never comes


def approved(body: dict) -> Proposal:
    proposal = evaluated(body)
    if proposal.status == ProposalStatus.PENDING_REVIEW:
        operator = get_user_model().objects.get(username="operator")
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    return proposal


def next_attempt_due(proposal: Proposal) -> None:
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())


def test_ads_whose_creation_got_no_answer_say_a_retry_is_a_new_request_without_a_key(
    linked_google_ads, settings, client
):
    """The creation's answer never came: the ads may exist, and a retry would create them
    again. The failure's words and the console beside the Retry button said "a retry is a
    new request (key hitl-proposal-…-2) the channel cannot tell from it": Google Ads never
    gets that key, and an operator looked for it there. (The failure's words now say what
    happened only; the retry is said beside the Retry button.)"""
    settings.GOOGLE_ADS_DEADLINE = DEADLINE
    linked_google_ads.answer_late("MutateAdGroupAds", DEADLINE + 2)
    proposal = approved(creative_batch(creative("Search smarter")))

    failed = proposal_execute(proposal_id=proposal.pk)

    assert failed.status == ProposalStatus.FAILED
    assert len(linked_google_ads.state.ads) == 1  # created, its answer lost
    retry = (
        f"Attempt 1 {NO_SURE_ANSWER}: check on the channel before retrying it; a retry is a new "
        "request the channel cannot tell from it."
    )
    # The failure says what happened; what a retry sends, beside the Retry button.
    error = failed.executions.get().error
    assert error.endswith(f". Attempt 1 {NO_SURE_ANSWER}.") and "hitl-proposal" not in error
    assert retry_warning(failed, client) == retry


def test_ads_stopped_between_attempts_say_a_retry_is_a_new_request_without_a_key(
    linked_google_ads,
):
    """The creation's first attempt met Google Ads' quota; its agent was stopped before the
    next. The refusal said the key a retry would send, one Google Ads never gets. Nor does it
    ask to check on Google Ads that the attempt was not carried out, nor warn that a retry
    could do it again: Google Ads answered that it did nothing (a quota error)."""
    linked_google_ads.fail_next("quota", method="MutateAdGroupAds")
    proposal = approved(creative_batch(creative("Search smarter")))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    said = stop("deactivated")
    next_attempt_due(proposal)

    failed = proposal_execute(proposal_id=proposal.pk)

    assert failed.status == ProposalStatus.FAILED
    first, refused = failed.executions.order_by("attempt")
    assert refused.error == (
        f"Stopped: {said}. Attempt 1 was sent to the channel before (“{first.error}”), and the "
        "channel answered that it was not carried out."
    )
    assert not first.unanswered
    assert not linked_google_ads.state.ads  # none created


def test_a_held_bid_change_resumed_on_google_ads_is_not_said_to_send_something_changed(
    linked_google_ads, settings, client
):
    """Its first attempt set the bid on Google Ads, but the answer never came; a kill switch
    held the round before the next, and a person approved it again. Google Ads reads the bid
    before it sets it, so the resumed round found 2.12 there and sent nothing. Its move to
    executing and its page said "Resumed as a new request (key hitl-proposal-…-2): what it
    sends changed while a kill switch held it. The channel cannot tell it from attempt 1,
    sent before with key hitl-proposal-…-1": nothing it sends had changed, neither key ever
    reached Google Ads, and Google Ads did tell (it read the bid first)."""
    settings.GOOGLE_ADS_DEADLINE = DEADLINE
    linked_google_ads.answer_late("MutateAdGroups", DEADLINE + 2)
    proposal = approved(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    assert proposal.executions.get().unanswered
    engage()
    next_attempt_due(proposal)
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.PENDING_REVIEW
    proposal_approve(
        proposal_id=proposal.pk, reviewer=get_user_model().objects.get(username="operator")
    )

    executed = proposal_execute(proposal_id=proposal.pk)

    assert executed.status == ProposalStatus.EXECUTED
    assert len(linked_google_ads.mutations(validate_only=False)) == 1  # set once, never again
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.12")
    held, resumed = ExecutionRound.objects.filter(proposal=proposal).order_by("first_attempt")
    assert held.request == resumed.request  # what it sends did not change
    moves = executed.history.filter(status="executing").order_by("history_id")
    assert [m.history_change_reason for m in moves] == ["Approved → Executing"] * 2
    assert resumed_said(executed, client) == ""
