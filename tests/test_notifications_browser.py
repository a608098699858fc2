"""Routes and claiming as people use them: a real headless Chromium, a real web server and a
real Celery worker (the browser, login and waiting helpers are test_browser's)."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from approvals.roles import OPERATORS
from ledger.models import Account
from notifications.models import Claim, Route
from tests.conftest import reallocation
from tests.test_browser import browser, log_in, page, screenshot, waiting  # noqa: F401

pytestmark = [
    pytest.mark.worker,
    pytest.mark.usefixtures("celery_worker"),
    pytest.mark.django_db(transaction=True),
]


def test_policy_owner_adds_a_route_and_finds_it_listed_and_in_its_history(
    live_server,
    demo_world,
    page,  # noqa: F811 (test_browser's fixture)
):
    log_in(page, live_server.url, demo_world["users"]["policy-owner"])
    page.goto(f"{live_server.url}/admin/notifications/route/add/")
    page.fill("#id_name", "Risky reallocations to the operators")
    page.select_option("#id_account", str(Account.objects.get(external_id="demo").pk))
    # The choices read as the route list writes them, not as the agents' API names them.
    expect(page.locator("#id_action_type option[value=budget_reallocation]")).to_have_text(
        "budget reallocation"
    )
    page.select_option("#id_action_type", label="budget reallocation")
    page.fill("#id_minimum_risk", "60")
    page.fill("#id_change_reason", "The operators asked to hear of the risky ones.")
    page.click("input[name=_save]")
    expect(page.locator(".errorlist.nonfield")).to_contain_text(
        "Name at least one user or group to tell"
    )

    page.select_option("#id_groups_from", label=OPERATORS)
    page.click("#id_groups_add")
    page.click("input[name=_save]")
    row = page.locator("#result_list tbody tr", has_text="Risky reallocations")
    expect(row).to_contain_text("account demo, every channel, budget reallocation, risk 60+")
    expect(row).to_contain_text("group operators")
    expect(row).to_contain_text("At once")
    screenshot(page, "routes")

    route = Route.objects.get(name="Risky reallocations to the operators")
    page.goto(f"{live_server.url}/admin/notifications/route/{route.pk}/history/")
    expect(page.locator("#change-history")).to_contain_text("policy-owner")
    # Its "Created" entry says whom it tells and what it covers, without opening the version.
    created = page.locator("#change-history tbody tr", has_text="Created")
    expect(created).to_contain_text("Action type: — → budget reallocation")
    expect(created).to_contain_text("Minimum risk: — → 60")
    expect(created).to_contain_text(f"Groups: — → {OPERATORS}")
    screenshot(page, "route-history")


def test_operator_takes_a_proposal_and_the_queue_and_the_others_see_who_is_on_it(
    live_server,
    demo_world,
    page,  # noqa: F811 (test_browser's fixtures)
    browser,  # noqa: F811
):
    [proposal] = waiting(reallocation())
    users = get_user_model().objects
    second = users.create_user("second-operator", password="second-pass-1234", is_staff=True)
    second.groups.set(users.get(username="operator").groups.all())

    log_in(page, live_server.url, demo_world["users"]["operator"])
    page.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")
    expect(page.locator("#on-it")).to_contain_text("nobody yet")
    page.click("#claim-form input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text(f"You are on proposal #{proposal.pk}")
    expect(page.locator("#on-it")).to_contain_text("you, until")
    assert Claim.objects.get(proposal=proposal).user.username == "operator"

    page.goto(f"{live_server.url}/admin/approvals/proposal/")
    row = page.locator("#result_list tbody tr", has_text="move 280.00")
    expect(row).to_contain_text("operator until")
    screenshot(page, "queue-on-it")

    other = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    log_in(other, live_server.url, {"username": "second-operator", "password": "second-pass-1234"})
    other.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")
    expect(other.locator("#on-it")).to_contain_text("operator, until")
    expect(other.locator("#claim-form")).to_have_count(0)
    expect(other.locator("#approve-form")).to_be_visible()  # claiming stops nobody deciding
    other.context.close()

    page.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")
    page.click("#release-form input[type=submit]")
    expect(page.locator("#on-it")).to_contain_text("nobody yet")
    page.goto(f"{live_server.url}/admin/approvals/proposal/")
    expect(page.locator("#result_list tbody tr", has_text="move 280.00")).not_to_contain_text(
        "until"
    )
