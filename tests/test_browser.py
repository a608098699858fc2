"""The console as people use it: a real headless Chromium, a real web server and a real Celery
worker. Set HITL_SCREENSHOTS=docs/screenshots to save the README's screenshots while they run.

Chromium is Debian's (``apt-get install chromium``; ``.ci/run`` installs it). Without it these
tests are skipped, unless HITL_REQUIRE_BROWSER is set, as in CI, where a missing browser fails.
"""

import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposals_approve
from feedback.autonomy import autonomy_recommendations_propose
from feedback.models import AutonomyRules
from ledger.models import Account, Campaign
from policies.models import Policy
from tests.conftest import bid_adjustment, reallocation, wait_until
from tests.factories import submitted

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    if os.environ.get("HITL_REQUIRE_BROWSER"):
        raise RuntimeError(f"No Chromium at {CHROMIUM}, and HITL_REQUIRE_BROWSER is set.")
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

pytestmark = [
    pytest.mark.worker,
    pytest.mark.usefixtures("celery_worker"),
    pytest.mark.django_db(transaction=True),
]
SCREENSHOTS = os.environ.get("HITL_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield context.new_page()
    context.close()


def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SCREENSHOTS}/{name}.png", full_page=True)


def log_in(page: Page, base: str, login: dict) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", login["username"])
    page.fill("#id_password", login["password"])
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(login["username"])


def wait_for_status(page: Page, status: str) -> None:
    """Reload the proposal's page until it shows ``status`` (the worker gets there)."""

    def shows_it():
        page.reload()
        return page.locator("#proposal-status").inner_text() == status

    wait_until(shows_it, timeout=30, interval=0.5)


def waiting(*bodies: dict) -> list[Proposal]:
    """Submit these as the optimizer and wait for the worker to route them to review."""
    proposals = [submitted(body) for body in bodies]
    for proposal in proposals:
        wait_until(lambda p=proposal: Proposal.objects.get(pk=p.pk).status == "pending_review")
    return proposals


def test_operator_approves_the_reference_proposal_from_the_top_of_the_queue(
    live_server, demo_world, page
):
    reference, _, _ = waiting(
        reallocation("280.00"),
        reallocation("120.00"),
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "display-retarget", "new_daily_budget": "360.00"}},
    )
    submitted(bid_adjustment("2.12"))  # executes unseen: never in the queue
    log_in(page, live_server.url, demo_world["users"]["operator"])

    page.goto(f"{live_server.url}/admin/approvals/proposal/")
    first_row = page.locator("#result_list tbody tr").first
    expect(first_row).to_contain_text("move 280.00 USD/day from brand-search to generic-search")
    expect(first_row).to_contain_text("28.0% / 10.0%")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    screenshot(page, "queue")

    first_row.locator("a", has_text="move 280.00").click()
    expect(page.locator("#verdict-reasons")).to_contain_text(
        "28.0% of brand-search's daily budget exceeds the 10.0% auto-execute ceiling"
    )
    expect(page.locator("#supporting-charts svg polyline")).to_have_count(1)
    expect(page.locator("#current-vs-proposed")).to_contain_text("720.00")
    screenshot(page, "detail")

    page.fill("#approve-form textarea[name=note]", "Agreed: generic-search converts better.")
    page.click("#approve-form input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text("is now approved")

    wait_for_status(page, "Executed")
    expect(page.locator("#proposal-executions")).to_contain_text("Succeeded")
    assert Campaign.objects.get(external_id="brand-search").daily_budget == 720
    assert Proposal.objects.get(pk=reference.pk).decisions.get().reviewer.username == "operator"

    page.goto(f"{live_server.url}/admin/")
    expect(page.locator("#queue-depth")).to_have_text("2")
    screenshot(page, "dashboard")

    page.locator("#agent-figures a", has_text="optimizer").click()
    expect(page.locator("#scorecard")).to_contain_text("budget_reallocation")
    expect(page.locator("#scorecard svg.bar-chart rect").first).to_be_visible()
    screenshot(page, "scorecard")


def test_operator_rejects_two_proposals_at_once_with_a_reason(live_server, demo_world, page):
    proposals = waiting(reallocation("200.00"), reallocation("300.00"))
    log_in(page, live_server.url, demo_world["users"]["operator"])
    page.goto(f"{live_server.url}/admin/approvals/proposal/")
    for proposal in proposals:
        page.check(f"input[name=_selected_action][value='{proposal.pk}']")
    page.select_option("select[name=action]", "reject_selected")
    page.click("button[name=index]")

    expect(page.locator("h1")).to_contain_text("Reject 2 proposal(s)?")
    expect(page.locator("#bulk-proposals tbody tr")).to_have_count(2)
    assert not Proposal.objects.filter(status=ProposalStatus.REJECTED).exists()
    page.select_option("select[name=reason_code]", "too_aggressive")
    page.fill("textarea[name=note]", "Move in smaller steps.")
    page.click("input[value='Yes, reject 2']")

    expect(page.locator(".messagelist")).to_contain_text("Rejected 2 proposal(s).")
    for proposal in proposals:
        decision = Proposal.objects.get(pk=proposal.pk).decisions.get()
        assert (decision.outcome, decision.reason_code, decision.note) == (
            "reject",
            "too_aggressive",
            "Move in smaller steps.",
        )


def test_auditor_reads_the_history_and_finds_no_way_to_change_anything(
    live_server, demo_world, page
):
    [proposal] = waiting(reallocation("280.00"))
    log_in(page, live_server.url, demo_world["users"]["auditor"])

    page.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")
    expect(page.locator("#verdict-reasons")).to_be_visible()
    for form in ("#approve-form", "#edit-approve-form", "#reject-form", "#withdraw-form"):
        expect(page.locator(form)).to_have_count(0)
    expect(page.locator("select[name=action]")).to_have_count(0)

    page.click("a.historylink")
    expect(page.locator("#change-history")).to_contain_text("policy-engine")
    page.locator("#change-history a").first.click()
    expect(page.locator("#content-main")).to_be_visible()
    expect(page.locator("#content-main input[type=submit]")).to_have_count(0)

    page.goto(f"{live_server.url}/admin/policies/policy/")
    page.locator("#result_list tbody a").first.click()
    expect(page.locator("input[name=_save]")).to_have_count(0)
    expect(page.locator("#content-main input[type=submit]")).to_have_count(0)


def test_policy_owner_approves_the_platforms_recommendation_and_the_policy_changes(
    live_server, demo_world, page
):
    # A clean record: ten 20% bid raises, each on a campaign of its own, approved as proposed.
    rules = AutonomyRules.current()
    rules.widen_min_decisions = 10
    rules.save()
    demo = Account.objects.get(external_id="demo")
    raises = [
        bid_adjustment("1.20", campaign.external_id)
        for campaign in Campaign.objects.bulk_create(
            Campaign(account=demo, external_id=f"search-{n}", name=f"Search {n}",
                     daily_budget=Decimal("100.00"), bid=Decimal("1.00"))
            for n in range(10)
        )
    ]  # fmt: skip
    proposals = waiting(*raises)
    operator = get_user_model().objects.get(username="operator")
    ids = [proposal.pk for proposal in proposals]
    proposals_approve(proposal_ids=ids, reviewer=operator)
    executed = Proposal.objects.filter(pk__in=ids, status="executed")
    wait_until(lambda: executed.count() == len(ids))

    [recommendation] = autonomy_recommendations_propose()
    wait_until(lambda: Proposal.objects.get(pk=recommendation.pk).status == "pending_review")
    log_in(page, live_server.url, demo_world["users"]["policy-owner"])
    page.goto(f"{live_server.url}/admin/approvals/proposal/{recommendation.pk}/change/")
    expect(page.locator("#verdict-reasons")).to_contain_text(
        "A change to the policies always waits for a policy owner."
    )
    expect(page.locator("#rationale")).to_contain_text("What if the ceiling had been 22.5%")
    expect(page.locator("#what-if-chart svg")).to_be_visible()
    expect(page.locator("#what-if-chart svg rect")).to_have_count(6)
    screenshot(page, "recommendation")

    page.click("#approve-form input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text("is now approved")

    wait_for_status(page, "Executed")
    earned = Policy.objects.get(agent__name="optimizer", account=demo)
    assert earned.auto_execute_max_magnitude == Decimal("0.225")


def test_policy_owner_raises_the_reallocation_ceiling_by_draft_dry_run_and_promotion(
    live_server, demo_world, page
):
    """Raising the reallocation ceiling from 10% to 30%: duplicate as draft, dry run (which
    points at the cumulative ceiling as what still holds the reference move), simulate, and
    promote, with a reason. Every click and every field typed in is counted."""
    waiting(reallocation("280.00"))  # the reference proposal, recorded for the simulation
    log_in(page, live_server.url, demo_world["users"]["policy-owner"])
    page.goto(f"{live_server.url}/admin/policies/policy/")
    expect(page.locator("#result_list")).to_contain_text("10%")
    interactions = 0

    def act(action, *args) -> None:
        nonlocal interactions
        interactions += 1
        action(*args)

    act(page.click, "#result_list a:text('Budget reallocations')")
    act(page.click, "#duplicate-link")
    expect(page.locator("#id_auto_execute_max_magnitude")).to_have_value("10")
    act(page.fill, "#id_auto_execute_max_magnitude", "30")
    act(page.fill, "#id_change_reason", "Q3 plan: larger moves between search campaigns.")
    act(page.click, "input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("dry run it or simulate it")
    screenshot(page, "policy-draft")

    act(page.click, "#dry-run-link")
    act(page.click, "#dry-run-form input[type=submit]")  # the reference move, prefilled
    expect(page.locator("#dry-run-verdict h2")).to_contain_text("To a human")
    expect(page.locator("#held-by")).to_contain_text(
        "cumulative ceiling 25% per 24 h (this move would bring brand-search's daily budget "
        "to -28.0% within 24 h"
    )
    expect(page.locator("#held-by")).not_to_contain_text("auto-execute ceiling")
    screenshot(page, "policy-dry-run")

    act(page.click, "#simulate-link")
    expect(page.locator("#simulation-held-by")).to_contain_text("The cumulative ceiling: 1")
    expect(page.locator("#held-examples")).to_contain_text("cumulative ceiling 25% per 24 h")
    screenshot(page, "policy-simulation")

    act(page.click, "#promote-link")
    expect(page.locator("#promotion-changes")).to_contain_text("30%")
    act(page.fill, "#id_change_reason", "The dry run and the simulation agree.")
    act(page.click, "#promote-form input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text("is live, as the draft set it")
    expect(page.locator("#id_auto_execute_max_magnitude")).to_have_value("30")

    policy = Policy.objects.get(action_type="budget_reallocation", is_draft=False)
    assert policy.auto_execute_max_magnitude == Decimal("0.3")
    latest = policy.history.order_by("-history_id").first()
    assert latest.history_user.username == "policy-owner"
    assert latest.history_change_reason.endswith("The dry run and the simulation agree.")
    assert interactions == 11, interactions
