"""Google Ads misbehaving, and what the record says: an answer that never comes (the request
may have been carried out), a read that fails after the change was made, an error code the
library cannot name. Each outcome is recorded as it happened, retried only where a retry can
help and cannot do the change twice, and shown on the proposal's page."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal
from approvals.services.decisions import proposal_approve
from executors.google_ads import GoogleAdsExecutor
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from ledger.models import Campaign
from tests.conftest import bid_adjustment, creative, creative_batch, wait_until
from tests.factories import evaluated
from tests.test_google_ads_channel import carry_out

WORKER_DEADLINE = 5  # the tests' worker's GOOGLE_ADS_DEADLINE (tests/conftest.py)


def bid() -> Decimal:
    return Campaign.objects.get(external_id="brand-search").bid


def settled(proposal: Proposal):
    def check():
        status = Proposal.objects.get(pk=proposal.pk).status
        return status in ("executed", "failed", "superseded") and status

    return check


def executions_on_page(login, proposal: Proposal) -> str:
    page = login("auditor").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    return text[text.index('id="proposal-executions"') :]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_ads_whose_creation_got_no_answer_are_not_created_again(linked_google_ads):
    """Google Ads created the ad but its answer came after the deadline: trying again would
    create it a second time (there is no idempotency key for a creation), so the execution
    fails, saying the ad may exist, for a person to check."""
    linked_google_ads.answer_late("MutateAdGroupAds", WORKER_DEADLINE + 2)
    proposal = evaluated(creative_batch(creative("Search smarter")))
    if proposal.status == "pending_review":
        operator = get_user_model().objects.get(username="operator")
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)

    assert wait_until(settled(proposal), timeout=60) == "failed"

    assert len(linked_google_ads.state.ads) == 1  # created once, never twice
    assert len(linked_google_ads.mutations(validate_only=False)) == 1
    attempt = proposal.executions.get()  # not retried
    assert "DEADLINE_EXCEEDED" in attempt.error
    assert "may have been created in ad group 303" in attempt.error
    assert "(not tried again by itself)" in attempt.error


@pytest.mark.django_db
def test_ads_a_dead_worker_was_creating_are_not_created_again_once_its_lease_runs_out(
    linked_google_ads, monkeypatch
):
    """The worker died with the creation under way (Google Ads made the ad; its answer was
    never recorded). Once the attempt's lease runs out the stall sweep sends the execution
    again: the request is not sent a second time (it would create the ad twice); the
    execution fails, saying so, for a person to check."""
    proposal = evaluated(creative_batch(creative("Search smarter")))
    if proposal.status == "pending_review":
        operator = get_user_model().objects.get(username="operator")
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    carry_out_for_real = GoogleAdsExecutor.carry_out

    def created_then_killed(self, *, request, account):
        carry_out_for_real(self, request=request, account=account)
        raise KeyboardInterrupt("the worker was killed")

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(GoogleAdsExecutor, "carry_out", created_then_killed)
        proposal_execute(proposal_id=proposal.pk)
    assert Proposal.objects.get(pk=proposal.pk).status == "executing"
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())

    failed = proposal_execute(proposal_id=proposal.pk)  # as the stall sweep's task does

    assert failed.status == "failed"
    assert len(linked_google_ads.state.ads) == 1  # created once, never twice
    assert len(linked_google_ads.mutations(validate_only=False)) == 1
    attempt = failed.executions.get()  # not sent again
    assert attempt.status == "failed"
    assert attempt.error.startswith("the worker stopped while the request was under way")
    assert "not sent again" in attempt.error
    move = failed.history.get(status="failed", history_actor="executor")
    assert "not sent again" in move.history_change_reason


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_bid_change_whose_answer_never_came_is_found_made_and_not_sent_twice(
    linked_google_ads, login
):
    linked_google_ads.answer_late("MutateAdGroups", WORKER_DEADLINE + 2)

    proposal = evaluated(bid_adjustment("2.12"))  # approved at once; the worker executes it

    assert wait_until(settled(proposal), timeout=60) == "executed"
    assert len(linked_google_ads.mutations(validate_only=False)) == 1  # sent once
    assert linked_google_ads.state.ad_groups[301].cpc_bid_micros == 2_120_000
    assert bid() == Decimal("2.12")
    first, second = proposal.executions.order_by("attempt")
    assert first.status == "failed" and "DEADLINE_EXCEEDED" in first.error
    assert "it may have been carried out" in first.error
    assert second.status == "succeeded"
    note = "Google Ads already holds the values it sets; nothing sent again."
    assert second.channel_response["note"] == note
    # The auditor reads why the second attempt sent nothing.
    assert note in executions_on_page(login, proposal)


@pytest.mark.django_db
def test_a_change_made_whose_values_cannot_be_read_back_is_recorded_as_made(
    linked_google_ads, login
):
    """The mutation was answered (done); the read after it is refused. The change stands on
    Google Ads, so the ledger records it: a failed execution would leave the ledger behind."""
    linked_google_ads.fail_next("permission", method="Search", after=1)
    proposal = evaluated(bid_adjustment("2.12"))

    executed = proposal_execute(proposal_id=proposal.pk)

    assert linked_google_ads.state.ad_groups[301].cpc_bid_micros == 2_120_000
    assert executed.status == "executed"
    assert bid() == Decimal("2.12")
    attempt = executed.executions.get()
    assert attempt.status == "succeeded"
    assert attempt.after_state == {"brand-search": {"bid": "2.12"}}
    assert "could not be read back" in attempt.channel_response["note"]
    page = executions_on_page(login, executed)
    assert "customers/1234567890/adGroups/301" in page  # what Google Ads changed
    assert "could not be read back" in page


def test_an_error_code_the_library_cannot_name_is_a_permanent_failure_said_plainly(
    linked_google_ads,
):
    linked_google_ads.fail_next("unknown")

    outcome = carry_out("status_change", {"campaign": "brand-search", "status": "paused"})

    assert outcome.result == "failed" and not outcome.retryable
    assert "unknown_error UNNAMED: Something this version cannot name" in outcome.detail
    assert "None" not in outcome.detail
    assert outcome.detail.endswith("(not tried again by itself).")
    assert "cannot help" not in outcome.detail  # beside the page's Retry button
    assert linked_google_ads.state.campaigns[101].status == "ENABLED"


def test_a_quota_error_says_another_attempt_may_succeed(linked_google_ads):
    linked_google_ads.fail_next("quota")

    outcome = carry_out("bid_adjustment", {"campaign": "brand-search", "new_bid": "2.12"})

    assert outcome.result == "failed" and outcome.retryable
    assert outcome.detail.endswith("(another attempt may succeed).")


@pytest.mark.django_db
def test_a_bid_changed_in_google_ads_supersedes_the_proposal_and_the_ledger_follows_it(
    linked_google_ads, optimizer
):
    """Someone changed the bid in Google Ads itself after the agent proposed: nothing is sent,
    the proposal is superseded, and the ledger takes the value that holds in Google Ads, with
    a history record saying where it came from. Another proposal made against the old value,
    waiting for a person, ends too, as after any change that lands. The agent reads the value
    that holds from the campaigns it reasons from, and why each proposal ended."""
    proposal = evaluated(bid_adjustment("2.12"))
    waiting = evaluated(bid_adjustment("2.60"))
    assert waiting.status == "pending_review"
    linked_google_ads.state.ad_groups[301].cpc_bid_micros = 2_300_000

    superseded = proposal_execute(proposal_id=proposal.pk)

    assert superseded.status == "superseded"
    assert linked_google_ads.mutations(validate_only=False) == []
    assert bid() == Decimal("2.30")
    record = Campaign.history.filter(external_id="brand-search").latest("history_id")
    assert record.bid == Decimal("2.30") and record.history_type == "~"
    assert record.history_change_reason == (
        f"as the channel (google_ads) has it: changed there, found before executing "
        f"proposal #{proposal.pk}"
    )
    assert Proposal.objects.get(pk=waiting.pk).status == "superseded"
    campaigns = optimizer.get("/api/v1/campaigns/").json()
    assert {c["external_id"]: c["bid"] for c in campaigns}["brand-search"] == "2.30"
    feedback = optimizer.get("/api/v1/feedback/").json()["results"]
    assert sorted((f["proposal"], f["kind"], f["diff"]) for f in feedback) == [
        (pk, "superseded", {"brand-search.bid": {"saw": "2.00", "now": "2.30"}})
        for pk in sorted([proposal.pk, waiting.pk])
    ]


@pytest.mark.django_db
def test_a_strategy_changed_in_google_ads_to_one_the_ledger_has_no_name_for_leaves_it_whole(
    linked_google_ads,
):
    """Google Ads now bids by a strategy the ledger has no name for, and so reports no target
    CPA: the proposal is superseded, and the ledger is left as it was rather than given half
    of what holds (a target-CPA strategy with no target CPA)."""
    Campaign.objects.filter(external_id="brand-search").update(
        bidding_strategy="target_cpa", target_cpa=Decimal("20.00")
    )
    on_google_ads = linked_google_ads.state.campaigns[101]
    on_google_ads.strategy, on_google_ads.target_cpa_micros = "TARGET_CPA", 20_000_000
    proposal = evaluated(
        bid_adjustment(action_type="strategy_change")
        | {"payload": {"campaign": "brand-search", "changes": {"target_cpa": "25.00"}}}
    )
    if proposal.status == "pending_review":
        operator = get_user_model().objects.get(username="operator")
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    on_google_ads.strategy = "MAXIMIZE_CONVERSIONS"

    assert proposal_execute(proposal_id=proposal.pk).status == "superseded"

    campaign = Campaign.objects.get(external_id="brand-search")
    assert (campaign.bidding_strategy, campaign.target_cpa) == ("target_cpa", Decimal("20.00"))
    assert linked_google_ads.mutations(validate_only=False) == []
