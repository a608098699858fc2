"""Google Ads carries out what was approved, through the official library, against a local
Google Ads that speaks its wire protocol (tests/google_ads_fake.py): it reads the live value
first and stops if it moved, validates each mutation before sending it, says whether a failure
is worth another try, reports a partial failure item by item, and returns the values before
and after with Google's request ids. An account's credentials are set by administrators, and
their secrets are never shown nor filterable in the console."""

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.views.debug import ExceptionReporter

from approvals.services.supersession import TargetMove
from audit.chain import chained_models
from executors.admin import GoogleAdsLinkAdmin
from executors.google_ads import GoogleAdsAction, GoogleAdsOutcome, google_ads_frozen_action
from executors.google_ads_api import google_ads_execute
from executors.models import GoogleAdsCampaign, GoogleAdsLink
from ledger.models import Account
from tests.conftest import creative, creative_batch, link_demo_account, reallocation
from tests.factories import evaluated, submitted
from tests.google_ads_fake import CUSTOMER, SECRETS, FakeGoogleAds


@pytest.fixture
def google_ads(demo_world, settings) -> Iterator[FakeGoogleAds]:
    """The demo account linked to a local Google Ads whose campaigns match the ledger."""
    fake = FakeGoogleAds(
        customer_id=CUSTOMER,
        developer_token=SECRETS["developer_token"],
        refresh_token=SECRETS["refresh_token"],
    )
    settings.GOOGLE_ADS_API_ENDPOINT, settings.GOOGLE_ADS_TOKEN_URI = fake.start()
    link_demo_account(fake)
    yield fake
    fake.stop()


def carry_out(action_type: str, payload: dict) -> GoogleAdsOutcome:
    """Propose the action as an agent would, then carry it out as the executor will: frozen
    against the proposal's snapshot, sent with the account's link."""
    proposal = submitted(reallocation(action_type=action_type, payload=payload))
    frozen = google_ads_frozen_action(
        account=proposal.account,
        action_type=proposal.action_type,
        payload=proposal.payload,
        targets=proposal.target_snapshot,
    )
    link = GoogleAdsLink.objects.get(account=proposal.account)
    # What the executor keeps between attempts is JSON, and every attempt sends it as kept.
    kept = GoogleAdsAction.from_json(json.loads(json.dumps(frozen.as_json())))
    outcome = google_ads_execute(link=link, action=kept)
    json.dumps(outcome.as_record())  # recordable as it is
    return outcome


def test_a_bid_change_is_made_on_google_ads_with_the_values_before_and_after(google_ads):
    outcome = carry_out("bid_adjustment", {"campaign": "brand-search", "new_bid": "2.12"})

    assert outcome.result == "done" and outcome.carried_out
    assert outcome.before == {"brand-search": {"bid": "2.00"}}
    assert outcome.after == {"brand-search": {"bid": "2.12"}}
    assert google_ads.state.ad_groups[301].cpc_bid_micros == 2_120_000
    assert outcome.resource_names == (f"customers/{CUSTOMER}/adGroups/301",)
    # Every call's request id, as Google Ads answered it, in the order made.
    assert outcome.request_ids == tuple(call.request_id for call in google_ads.calls)
    # Each call carried the link's credentials.
    assert {call.metadata["developer-token"] for call in google_ads.calls} == {
        SECRETS["developer_token"]
    }
    assert google_ads.token_requests[0]["refresh_token"] == SECRETS["refresh_token"]


def test_a_budget_change_is_made_on_the_campaigns_budget(google_ads):
    outcome = carry_out(
        "budget_change", {"campaign": "generic-search", "new_daily_budget": "550.00"}
    )

    assert outcome.result == "done"
    assert outcome.before == {"generic-search": {"daily_budget": "500.00"}}
    assert outcome.after == {"generic-search": {"daily_budget": "550.00"}}
    assert google_ads.state.budgets[202] == 550_000_000
    assert google_ads.state.budgets[201] == 1_000_000_000  # the others untouched


def test_a_reallocation_moves_both_budgets_in_one_request(google_ads):
    outcome = carry_out(
        "budget_reallocation",
        {"from_campaign": "brand-search", "to_campaign": "generic-search", "amount": "280.00"},
    )

    assert outcome.result == "done"
    assert outcome.before == {
        "brand-search": {"daily_budget": "1000.00"},
        "generic-search": {"daily_budget": "500.00"},
    }
    assert outcome.after == {
        "brand-search": {"daily_budget": "720.00"},
        "generic-search": {"daily_budget": "780.00"},
    }
    assert google_ads.state.budgets[201] == 720_000_000
    assert google_ads.state.budgets[202] == 780_000_000
    (sent,) = google_ads.mutations(validate_only=False)
    assert len(sent.request.operations) == 2 and not sent.request.partial_failure


def test_each_mutation_is_validated_before_it_is_sent_for_real(google_ads):
    outcome = carry_out("status_change", {"campaign": "display-retarget", "status": "paused"})

    assert outcome.result == "done"
    assert outcome.after == {"display-retarget": {"status": "paused"}}
    assert google_ads.state.campaigns[103].status == "PAUSED"
    assert [(call.method, call.validate_only) for call in google_ads.calls] == [
        ("Search", False),  # the live value, before
        ("MutateCampaigns", True),
        ("MutateCampaigns", False),
        ("Search", False),  # the value after
    ]
    checked, sent = google_ads.mutations()
    assert list(checked.request.operations) == list(sent.request.operations)


def test_a_strategy_change_sets_the_campaigns_bidding_and_its_target(google_ads):
    outcome = carry_out(
        "strategy_change",
        {
            "campaign": "generic-search",
            "changes": {"bidding_strategy": "target_cpa", "target_cpa": "25.00"},
        },
    )

    assert outcome.result == "done"
    assert outcome.before == {
        "generic-search": {"bidding_strategy": "manual_cpc", "target_cpa": None}
    }
    assert outcome.after == {
        "generic-search": {"bidding_strategy": "target_cpa", "target_cpa": "25.00"}
    }
    campaign = google_ads.state.campaigns[102]
    assert (campaign.strategy, campaign.target_cpa_micros) == ("TARGET_CPA", 25_000_000)


def test_a_quota_error_is_worth_retrying_and_the_next_attempt_succeeds(google_ads):
    google_ads.fail_next("quota", method="MutateCampaignBudgets")
    payload = {"campaign": "brand-search", "new_daily_budget": "900.00"}

    first = carry_out("budget_change", payload)

    assert first.result == "failed" and first.retryable
    assert "RESOURCE_EXHAUSTED" in first.detail and "quota_error" in first.detail
    assert first.retry_after == 30  # as Google Ads said: come back in 30 seconds
    assert first.request_ids[-1] == google_ads.calls[-1].request_id  # the refused call's id
    assert google_ads.state.budgets[201] == 1_000_000_000

    second = carry_out("budget_change", payload)

    assert second.result == "done"
    assert google_ads.state.budgets[201] == 900_000_000


def test_a_permission_error_is_permanent_and_changes_nothing(google_ads):
    google_ads.fail_next("permission")

    outcome = carry_out("bid_adjustment", {"campaign": "brand-search", "new_bid": "3.00"})

    assert outcome.result == "failed" and not outcome.retryable
    assert "PERMISSION_DENIED" in outcome.detail and "USER_PERMISSION_DENIED" in outcome.detail
    assert google_ads.mutations() == []
    assert google_ads.state.ad_groups[301].cpc_bid_micros == 2_000_000


def test_no_amount_is_sent_to_a_customer_that_keeps_its_money_in_another_currency(google_ads):
    """The ledger's account is in USD; a link to a customer in yen would have 550.00 read as
    550 yen there, and the ledger say 550.00 dollars."""
    google_ads.currency = "JPY"

    for action_type, payload in [
        ("budget_change", {"campaign": "generic-search", "new_daily_budget": "550.00"}),
        ("bid_adjustment", {"campaign": "brand-search", "new_bid": "2.12"}),
    ]:
        outcome = carry_out(action_type, payload)
        assert outcome.result == "failed" and not outcome.retryable
        assert (
            f"Google Ads customer {CUSTOMER} keeps its money in JPY, the ledger's account in USD"
            in outcome.detail
        )
    assert google_ads.mutations() == []
    assert google_ads.state.budgets[202] == 500_000_000
    assert google_ads.state.ad_groups[301].cpc_bid_micros == 2_000_000

    # A status change carries no amount: it is made.
    paused = carry_out("status_change", {"campaign": "display-retarget", "status": "paused"})
    assert paused.result == "done"


def test_a_creation_refused_by_a_bare_status_is_a_refusal_not_a_lost_answer(google_ads):
    """A status that answers (permission denied) with no Google Ads failure record says
    nothing was created: not "they may have been created, check before retrying"."""
    google_ads.fail_next("bare_permission", method="MutateAdGroupAds", after=1)

    outcome = carry_out(
        "creative_deployment", {"campaign": "display-retarget", "creatives": creatives(1)}
    )

    assert outcome.result == "failed" and not outcome.retryable
    assert "PERMISSION_DENIED" in outcome.detail
    assert "may have been created" not in outcome.detail
    assert google_ads.state.ads == {}


def test_credentials_google_refuses_are_a_permanent_failure(google_ads):
    GoogleAdsLink.objects.update(refresh_token="1//revoked")

    outcome = carry_out("bid_adjustment", {"campaign": "brand-search", "new_bid": "3.00"})

    assert outcome.result == "failed" and not outcome.retryable
    assert "invalid_grant" in outcome.detail
    assert google_ads.calls == []


def test_a_value_moved_since_the_proposal_is_reported_and_nothing_is_mutated(google_ads):
    proposal_payload = {"campaign": "brand-search", "new_bid": "2.50"}
    proposal = submitted(reallocation(action_type="bid_adjustment", payload=proposal_payload))
    google_ads.state.ad_groups[301].cpc_bid_micros = 2_300_000  # changed in Google Ads itself
    frozen = google_ads_frozen_action(
        account=proposal.account,
        action_type=proposal.action_type,
        payload=proposal.payload,
        targets=proposal.target_snapshot,
    )

    outcome = google_ads_execute(link=GoogleAdsLink.objects.get(), action=frozen)

    assert outcome.result == "moved" and not outcome.carried_out
    assert outcome.moves == (TargetMove("brand-search", "bid", "2.00", "2.30"),)
    assert outcome.before == {"brand-search": {"bid": "2.30"}}
    assert google_ads.mutations() == []
    assert google_ads.state.ad_groups[301].cpc_bid_micros == 2_300_000


def creatives(count: int) -> list[dict]:
    return [
        {"headline": f"Search smarter {n}", "body": "Find it in seconds.", "call_to_action": "Try"}
        for n in range(1, count + 1)
    ]


def test_creatives_are_deployed_as_responsive_search_ads(google_ads):
    outcome = carry_out(
        "creative_deployment", {"campaign": "display-retarget", "creatives": creatives(2)}
    )

    assert outcome.result == "done"
    assert [item.error for item in outcome.items] == ["", ""]
    assert len(outcome.resource_names) == 2
    ads = list(google_ads.state.ads.values())
    assert [ad["headlines"] for ad in ads] == [
        ["Search smarter 1", "Try", "Free 30-day trial"],
        ["Search smarter 2", "Try", "Free 30-day trial"],
    ]
    assert {ad["ad_group"] for ad in ads} == {303}


def test_a_partial_failure_says_which_creative_failed(google_ads):
    google_ads.fail_items({1: "Trademark in the headline."})

    outcome = carry_out(
        "creative_deployment", {"campaign": "display-retarget", "creatives": creatives(3)}
    )

    assert outcome.result == "partial" and not outcome.retryable
    first, second, third = outcome.items
    assert first.resource_name and not first.error
    assert not second.resource_name and "Trademark in the headline." in second.error
    assert third.resource_name and not third.error
    assert "#2" in outcome.detail
    assert len(google_ads.state.ads) == 2
    assert google_ads.mutations(validate_only=False)[0].request.partial_failure


def test_creatives_google_ads_would_refuse_are_refused_before_any_is_sent(google_ads):
    batch = creatives(2)
    batch[1]["headline"] = "A headline far longer than the thirty characters allowed"

    outcome = carry_out("creative_deployment", {"campaign": "display-retarget", "creatives": batch})

    assert outcome.result == "failed" and not outcome.retryable
    assert "TOO_LONG" in outcome.items[1].error and not outcome.items[0].error
    assert google_ads.mutations(validate_only=False) == []
    assert google_ads.state.ads == {}


def test_a_creative_longer_than_google_ads_takes_is_blocked_when_submitted(google_ads):
    """Nobody approves what Google Ads would refuse: the agent is told why at once. Wide
    characters count as two, as Google Ads counts them."""
    long = "A headline far longer than the thirty characters allowed"
    proposal = evaluated(creative_batch(creative(headline=long), creative(body="八" * 46)))

    assert proposal.status == "blocked"
    assert proposal.guardrail_findings["block"] == [
        f"Creative 1's headline is {len(long)} characters; Google Ads takes at most 30 in a "
        "responsive search ad's headline.",
        "Creative 2's body is 92 characters; Google Ads takes at most 90 in a responsive "
        "search ad's description.",
    ]
    assert google_ads.calls == []

    within = evaluated(creative_batch(creative(headline="Thirty characters, exactly!!!!")))
    assert within.status == "pending_review", within.verdict_reasons
    # Not linked, the ledger carries creatives out: nothing of Google Ads' to refuse.
    GoogleAdsLink.objects.all().delete()
    assert evaluated(creative_batch(creative(headline=long))).status == "pending_review"


# The credentials in the console.


@pytest.fixture
def administrator(demo_world) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="unused-1"))
    return client


def test_an_administrator_sets_the_credentials_and_never_sees_their_secrets_again(
    administrator, login
):
    account = Account.objects.get(external_id="demo")
    add = reverse("admin:executors_googleadslink_add")
    form = {
        "account": account.pk,
        "customer_id": CUSTOMER,
        "login_customer_id": "",
        "client_id": "client-id.apps",
        **{f"new_{name}": value for name, value in SECRETS.items()},
    }
    assert administrator.post(add, form).status_code == 302
    link = GoogleAdsLink.objects.get(account=account)
    assert {name: getattr(link, name) for name in SECRETS} == SECRETS

    change = reverse("admin:executors_googleadslink_change", args=[link.pk])
    pages = [
        administrator.get(change),
        administrator.get(reverse("admin:executors_googleadslink_changelist")),
        administrator.get(reverse("admin:executors_googleadslink_history", args=[link.pk])),
    ]
    for page in pages:
        assert page.status_code == 200
        for secret in SECRETS.values():
            assert secret not in page.text
    assert 'name="new_refresh_token"' in pages[0].text  # settable, never filled in

    # Saved again with the secrets left empty: kept. With one given: replaced.
    kept = {**form, **{f"new_{name}": "" for name in SECRETS}, "client_id": "other.apps"}
    assert administrator.post(change, kept).status_code == 302
    link.refresh_from_db()
    assert link.client_id == "other.apps" and link.refresh_token == SECRETS["refresh_token"]
    assert administrator.post(change, {**kept, "new_refresh_token": "1//new"}).status_code == 302
    link.refresh_from_db()
    assert link.refresh_token == "1//new" and link.developer_token == SECRETS["developer_token"]
    # History keeps no secret.
    history = {field.name for field in GoogleAdsLink.history.model._meta.fields}
    assert not history & set(SECRETS)

    # No one else reads or sets them.
    for role in ("operator", "policy-owner", "auditor"):
        assert login(role).get(change).status_code == 403
        assert login(role).post(add, form).status_code == 403


def test_the_credentials_secrets_cannot_be_filtered_or_searched_on(administrator):
    GoogleAdsLink.objects.create(
        account=Account.objects.get(external_id="demo"),
        customer_id=CUSTOMER,
        client_id="client-id.apps",
        **SECRETS,
    )
    url = reverse("admin:executors_googleadslink_changelist")
    for name, secret in SECRETS.items():
        for lookup in (name, f"{name}__startswith", f"{name}__regex"):
            answer = administrator.get(url, {lookup: secret[:6]})
            assert answer.status_code == 400 and 'id="result_list"' not in answer.text
        searched = administrator.get(url, {"q": secret[:10]})
        assert searched.status_code == 200 and "0 results" in searched.text
    # Through the link's account too.
    accounts = reverse("admin:ledger_account_changelist")
    answer = administrator.get(accounts, {"google_ads_link__refresh_token__startswith": "1//"})
    assert answer.status_code == 400
    # And the console's own check, which every deploy runs, finds nothing to say.
    call_command("check", "--fail-level", "WARNING", "--tag", "security")


def test_who_linked_an_account_to_google_ads_is_in_the_audit_trail_without_its_secrets(
    administrator, login
):
    """Where an account's money is spent is decided by its link and its campaigns' places:
    the auditor's export and the audit chain carry them, and no secret."""
    account = Account.objects.get(external_id="demo")
    form = {
        "account": account.pk,
        "customer_id": CUSTOMER,
        "login_customer_id": "",
        "client_id": "client-id.apps",
        **{f"new_{name}": value for name, value in SECRETS.items()},
    }
    assert administrator.post(reverse("admin:executors_googleadslink_add"), form).status_code == 302
    today = timezone.localdate()
    period = {"since": str(today), "until": str(today + timedelta(days=1)), "format": "jsonl"}

    export = login("auditor").get("/admin/audit/export/", period)

    text = b"".join(export.streaming_content).decode()
    (linked,) = [
        record
        for record in map(json.loads, text.splitlines())
        if record["model"] == "executors.googleadslink"
    ]
    assert (linked["change"], linked["user"]) == ("created", "root")
    assert linked["fields"]["customer_id"] == CUSTOMER
    for secret in SECRETS.values():
        assert secret not in text
    sealed = chained_models()
    assert GoogleAdsLink.history.model in sealed and GoogleAdsCampaign.history.model in sealed


def test_a_server_error_while_saving_the_credentials_reports_no_secret(
    administrator, monkeypatch, caplog
):
    """Django reports a server error with the request it failed on (the log, a mail to the
    admins); the secrets just typed are starred out of it."""

    def failing(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(GoogleAdsLinkAdmin, "save_model", failing)
    administrator.raise_request_exception = False
    form = {
        "account": Account.objects.get(external_id="demo").pk,
        "customer_id": CUSTOMER,
        "login_customer_id": "",
        "client_id": "client-id.apps",
        **{f"new_{name}": value for name, value in SECRETS.items()},
    }

    answer = administrator.post(reverse("admin:executors_googleadslink_add"), form)

    assert answer.status_code == 500
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    report = ExceptionReporter(record.request, *record.exc_info).get_traceback_text()
    assert "the database went away" in report and "client-id.apps" in report
    for secret in SECRETS.values():
        assert secret not in report
