"""Google Ads in the console, as people use it (a real Chromium, web server and worker): an
administrator links the demo account, and no page shows a secret back; an operator cannot see
the link; an auditor reads on the proposal's page what Google Ads was asked and answered."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from approvals.models import Proposal
from executors.models import GoogleAdsCampaign, GoogleAdsLink
from ledger.models import Account, Campaign
from tests.conftest import bid_adjustment, google_ads_holds_demo_campaigns, wait_until
from tests.factories import submitted
from tests.google_ads_fake import CUSTOMER, PLACES, SECRETS
from tests.test_browser import browser, log_in  # noqa: F401 (a fixture)

pytestmark = [
    pytest.mark.worker,
    pytest.mark.usefixtures("celery_worker"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def google_ads(google_ads_server, demo_world, settings):
    """The worker's Google Ads holding the demo campaigns; the account not linked yet."""
    google_ads_server.clear()
    settings.GOOGLE_ADS_API_ENDPOINT, settings.GOOGLE_ADS_TOKEN_URI = google_ads_server.endpoints
    google_ads_holds_demo_campaigns(google_ads_server)
    return google_ads_server


def test_an_administrator_links_google_ads_and_an_auditor_reads_what_it_did(
    live_server,
    demo_world,
    browser,  # noqa: F811 (the fixture imported above)
    google_ads,
):
    get_user_model().objects.create_superuser("root", password="walk-the-console-1")
    root = {"username": "root", "password": "walk-the-console-1"}
    admin = browser.new_context().new_page()
    log_in(admin, live_server.url, root)

    admin.goto(f"{live_server.url}/admin/executors/googleadslink/add/")
    admin.select_option("#id_account", label=str(Account.objects.get(external_id="demo")))
    admin.fill("#id_customer_id", CUSTOMER)
    admin.fill("#id_client_id", "client-id.apps")
    for name, secret in SECRETS.items():
        admin.fill(f"#id_new_{name}", secret)
    admin.click("input[name=_continue]")
    expect(admin.locator(".messagelist")).to_contain_text("was added successfully")
    link = GoogleAdsLink.objects.get()
    assert link.refresh_token == SECRETS["refresh_token"]

    # No page an administrator opens shows a secret back, nor do its password fields.
    base = f"{live_server.url}/admin/executors/googleadslink"
    for url in (
        f"{base}/{link.pk}/change/",
        f"{base}/{link.pk}/history/",
        f"{base}/",
        f"{base}/?q={SECRETS['developer_token'][:8]}",
        f"{live_server.url}/admin/",  # its recent actions
        f"{live_server.url}/admin/ledger/account/{link.account_id}/change/",
    ):
        admin.goto(url)
        for secret in SECRETS.values():
            assert secret not in admin.content(), url
    admin.goto(f"{base}/{link.pk}/change/")
    for name in SECRETS:
        expect(admin.locator(f"#id_new_{name}")).to_have_value("")
    admin.goto(f"{base}/?q={SECRETS['developer_token'][:8]}")
    expect(admin.locator("#changelist")).to_contain_text("0 results")

    # An operator neither sees nor reaches it.
    operator = browser.new_context().new_page()
    log_in(operator, live_server.url, demo_world["users"]["operator"])
    expect(operator.locator("#content-main")).not_to_contain_text("Google Ads")
    assert operator.goto(f"{base}/{link.pk}/change/").status == 403
    assert operator.goto(f"{base}/").status == 403

    # The campaigns placed on Google Ads, an agent's bid change carried out there.
    for campaign in Campaign.objects.filter(account=link.account):
        campaign_id, _, ad_group_id = PLACES[campaign.external_id]
        GoogleAdsCampaign.objects.create(
            campaign=campaign,
            google_campaign_id=campaign_id,
            google_ad_group_id=ad_group_id,
            final_url="https://example.com/",
            extra_headline="Free 30-day trial",
            extra_description="Set up in minutes.",
        )
    proposal = submitted(bid_adjustment("2.12"))  # 6%: approved at once
    wait_until(lambda: Proposal.objects.get(pk=proposal.pk).status == "executed")
    assert google_ads.state.ad_groups[301].cpc_bid_micros == 2_120_000

    auditor = browser.new_context().new_page()
    log_in(auditor, live_server.url, demo_world["users"]["auditor"])
    auditor.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")
    executions = auditor.locator("#proposal-executions tbody tr")
    expect(executions).to_have_count(1)
    row = executions.first
    expect(row).to_contain_text("google_ads")
    expect(row).to_contain_text("Succeeded")
    expect(row).to_contain_text("brand-search bid 2.00")
    expect(row).to_contain_text("brand-search bid 2.12")
    for call in google_ads.calls:  # read, validate, change, read again: each call's id
        expect(row).to_contain_text(call.request_id)
    expect(row).to_contain_text(f"customers/{CUSTOMER}/adGroups/301")
    for secret in SECRETS.values():
        assert secret not in auditor.content()
