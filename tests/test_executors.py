"""Executors are plugins: a registry of classes, the first that takes a proposal's account and
action type carrying it out, the ledger executor when none does. A new channel is a class and
a registration, run by the same runner as the webhook's and Google Ads' (locks, checks,
attempts on record, retries, the ledger after a success). Google Ads, end to end with the
real worker against a local Google Ads: a change is made there and the ledger shows it, with
Google's request ids on the attempt; a value moved there supersedes the proposal; a quota
error is tried again; a permission error fails."""

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from approvals import action_types
from approvals.models import Proposal
from approvals.services.decisions import proposal_approve
from executors import registry
from executors.base import ChannelExecutor, Frozen, Outcome
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from ledger.models import Account, Campaign, Creative
from tests.conftest import bid_adjustment, creative, creative_batch, wait_until
from tests.factories import evaluated


def bid() -> Decimal:
    return Campaign.objects.get(external_id="brand-search").bid


def settled(proposal: Proposal):
    return lambda: (
        Proposal.objects.get(pk=proposal.pk).status
        in (
            "executed",
            "failed",
            "superseded",
        )
    )


def chosen_for(action_type: str) -> str:
    account = Account.objects.get(external_id="demo")
    return registry.executor_for(account=account, action_type=action_types.get(action_type)).name


class TinyChannel(ChannelExecutor):
    """A channel that takes bid changes on the demo account and says it did them."""

    name = "tiny"
    sent: list[dict] = []

    def carries_out(self, *, account, action_type) -> bool:
        return account.external_id == "demo" and action_type.name == "bid_adjustment"

    def freeze(self, *, proposal, action_type, campaigns, targets, key, previous) -> Frozen:
        return Frozen(key=key, request={"bid": proposal.payload["new_bid"], "targets": targets})

    def carry_out(self, *, request, account) -> Outcome:
        TinyChannel.sent.append(request)
        return Outcome("done", request_ids=("tiny-1",))


@pytest.fixture
def tiny_channel():
    TinyChannel.sent = []
    registry.register(TinyChannel)
    yield TinyChannel
    registry.unregister(TinyChannel)


def test_the_registry_has_the_google_ads_webhook_and_ledger_executors():
    assert [executor.name for executor in registry.registered()] == [
        "google_ads",
        "webhook",
        "ledger",
    ]


def test_the_web_server_and_the_worker_start_without_the_google_ads_library():
    """The library and gRPC weigh about 20 MiB in each process that loads them: a platform
    loads them at its first attempt on Google Ads, not at start."""
    started = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, django; django.setup(); import hitlproject.asgi, hitlproject.celery; "
            "hitlproject.celery.app.loader.import_default_modules(); "
            "from executors import registry; registry.registered(); "
            "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(('grpc', "
            "'google.ads', 'google.protobuf'))}))",
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "hitlproject.settings"},
        timeout=120,
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "[]"


@pytest.mark.django_db
def test_the_ledger_executor_carries_out_what_no_channel_takes(demo_world):
    assert chosen_for("bid_adjustment") == "ledger"  # no Google Ads link, no endpoint


@pytest.mark.django_db
def test_an_account_linked_to_google_ads_has_google_ads_carry_out_what_it_can(
    linked_google_ads,
):
    assert chosen_for("bid_adjustment") == "google_ads"
    assert chosen_for("creative_deployment") == "google_ads"
    assert chosen_for("policy_change") == "ledger"  # a policy change: nothing to send


@pytest.mark.django_db
def test_a_new_channel_is_a_class_and_a_registration(demo_world, tiny_channel, login):
    proposal = evaluated(bid_adjustment("2.12"))  # approved at once; its task never leaves
    assert chosen_for("bid_adjustment") == "tiny"
    assert chosen_for("budget_change") == "ledger"

    executed = proposal_execute(proposal_id=proposal.pk)

    assert executed.status == "executed"
    assert tiny_channel.sent == [{"bid": "2.12", "targets": {"brand-search": {"bid": "2.00"}}}]
    assert bid() == Decimal("2.12")
    attempt = executed.executions.get()
    assert (attempt.executor, attempt.status, attempt.request_ids) == (
        "tiny",
        "succeeded",
        ["tiny-1"],
    )
    assert attempt.after_state == {"brand-search": {"bid": "2.12"}}
    execution_round = ExecutionRound.objects.get(proposal=executed)
    assert (execution_round.executor, execution_round.key) == (
        "tiny",
        f"hitl-proposal-{proposal.pk}-1",
    )
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert "tiny-1" in page.content.decode()  # the channel's request id, on the attempt


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_an_approved_bid_change_is_made_on_google_ads_and_the_ledger_shows_it(linked_google_ads):
    proposal = evaluated(bid_adjustment("2.12"))  # 6%: approved at once, executed by the worker

    wait_until(settled(proposal))

    assert Proposal.objects.get(pk=proposal.pk).status == "executed"
    assert linked_google_ads.state.ad_groups[301].cpc_bid_micros == 2_120_000
    assert bid() == Decimal("2.12")
    attempt = proposal.executions.get()
    assert (attempt.executor, attempt.status) == ("google_ads", "succeeded")
    assert attempt.before_state == {"brand-search": {"bid": "2.00"}}
    assert attempt.after_state == {"brand-search": {"bid": "2.12"}}
    # Google's request id for every call the attempt made, as Google Ads answered them.
    assert attempt.request_ids == [call.request_id for call in linked_google_ads.calls]
    assert len(attempt.request_ids) == 4  # read, validate, mutate, read again
    assert attempt.channel_response["resource_names"] == ["customers/1234567890/adGroups/301"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_value_moved_on_google_ads_supersedes_the_proposal_and_nothing_is_sent(
    linked_google_ads,
):
    linked_google_ads.state.ad_groups[301].cpc_bid_micros = 2_300_000  # changed in Google Ads

    proposal = evaluated(bid_adjustment("2.12"))
    wait_until(settled(proposal))

    superseded = Proposal.objects.get(pk=proposal.pk)
    assert superseded.status == "superseded"
    assert "2.00" in superseded.verdict_reasons[0] and "2.30" in superseded.verdict_reasons[0]
    assert linked_google_ads.mutations() == []
    assert linked_google_ads.state.ad_groups[301].cpc_bid_micros == 2_300_000
    assert bid() == Decimal("2.30")  # the ledger follows the value that holds in Google Ads
    attempt = superseded.executions.get()
    assert attempt.status == "failed" and attempt.error.startswith("Not sent: the value moved")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_quota_error_is_retried_and_the_next_attempt_succeeds(linked_google_ads):
    """Not before Google Ads said to come back (the quota error's retry delay), which is
    longer here than the runner's own first backoff."""
    linked_google_ads.fail_next("quota", method="MutateAdGroups")
    linked_google_ads.quota_retry_seconds = 3

    proposal = evaluated(bid_adjustment("2.12"))
    wait_until(settled(proposal))

    assert Proposal.objects.get(pk=proposal.pk).status == "executed"
    first, second = proposal.executions.order_by("attempt")
    assert first.status == "failed" and "RESOURCE_EXHAUSTED" in first.error
    assert first.request_ids  # the refused call's id among them
    assert second.status == "succeeded"
    assert (second.started_at - first.finished_at).total_seconds() >= 3
    assert linked_google_ads.state.ad_groups[301].cpc_bid_micros == 2_120_000
    assert bid() == Decimal("2.12")
    changes = Campaign.history.filter(external_id="brand-search", history_actor="executor")
    assert changes.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_permission_error_fails_the_execution_and_changes_nothing(linked_google_ads):
    linked_google_ads.fail_next("permission")

    proposal = evaluated(bid_adjustment("2.12"))
    wait_until(settled(proposal))

    failed = Proposal.objects.get(pk=proposal.pk)
    assert failed.status == "failed"
    attempt = failed.executions.get()  # not retried
    assert "PERMISSION_DENIED" in attempt.error and attempt.request_ids
    assert linked_google_ads.mutations() == []
    assert bid() == Decimal("2.00")


@pytest.mark.django_db
def test_a_value_google_ads_already_holds_is_not_sent_again_and_the_ledger_records_it(
    linked_google_ads,
):
    """An earlier attempt whose answer never came got through: the next one finds the new
    value there, sends nothing, and the ledger says it was carried out."""
    proposal = evaluated(bid_adjustment("2.12"))
    linked_google_ads.state.ad_groups[301].cpc_bid_micros = 2_120_000

    executed = proposal_execute(proposal_id=proposal.pk)

    assert executed.status == "executed"
    assert linked_google_ads.mutations() == []
    assert bid() == Decimal("2.12")
    assert executed.executions.get().after_state == {"brand-search": {"bid": "2.12"}}


@pytest.mark.django_db
def test_a_partial_deployment_fails_with_what_was_deployed_on_record(linked_google_ads):
    linked_google_ads.fail_items({1: "Trademark in the headline."})
    proposal = evaluated(creative_batch(creative("Search smarter"), creative("Find it fast")))
    if proposal.status == "pending_review":
        operator = get_user_model().objects.get(username="operator")
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)

    failed = proposal_execute(proposal_id=proposal.pk)

    assert failed.status == "failed"
    attempt = failed.executions.get()
    assert attempt.error.startswith("Partly carried out on the channel, not retried:")
    assert "#2" in attempt.error and "Trademark in the headline." in attempt.error
    deployed, refused = attempt.channel_response["items"]
    assert deployed["resource_name"] and not deployed["error"]
    assert not refused["resource_name"] and "Trademark" in refused["error"]
    assert len(linked_google_ads.state.ads) == 1


def test_an_execution_on_the_api_names_the_ledger_records_it_created(demo_world, optimizer):
    """A creative batch sets no campaign field: its states are empty, and the execution says
    what it did add, each creative's ledger id in the batch's order; a bid change adds
    nothing and says so."""
    batch = evaluated(
        creative_batch(creative(headline="First"), creative(headline="Second")), agent="optimizer"
    )
    bid_change = evaluated(bid_adjustment("2.10"))
    proposal_approve(
        proposal_id=batch.pk, reviewer=get_user_model().objects.get(username="operator")
    )
    for proposal in (batch, bid_change):
        assert proposal_execute(proposal_id=proposal.pk).status == "executed"

    deployed = optimizer.get(f"/api/v1/proposals/{batch.pk}/").json()["execution"]
    listed = {
        item["id"]: item["execution"]
        for item in optimizer.get("/api/v1/proposals/").json()["results"]
    }

    first, second = Creative.objects.filter(deployed_by_proposal=batch).order_by("pk")
    assert (first.headline, second.headline) == ("First", "Second")
    assert deployed["created"] == {"creatives": [first.pk, second.pk]}
    assert deployed["after_state"] == {"display-retarget": {}}
    assert listed[batch.pk]["created"] == deployed["created"]
    assert listed[bid_change.pk]["created"] == {}
