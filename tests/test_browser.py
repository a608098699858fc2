"""The console as people use it: a real headless Chromium, a real web server and a real Celery
worker. Set HITL_SCREENSHOTS=docs/screenshots to save the README's screenshots while they run.

Chromium is Debian's (``apt-get install chromium``; ``.ci/run`` installs it). Without it these
tests are skipped, unless HITL_REQUIRE_BROWSER is set, as in CI, where a missing browser fails.
"""

import os
import re
import shutil
import threading
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from approvals.models import Agent, Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_reject, proposals_approve
from audit.chain import chain_seal, chain_verification_record
from feedback.autonomy import autonomy_recommendations_propose
from feedback.models import AutonomyRules, CallbackEvent, Feedback
from ledger.models import Account, Campaign, Creative
from notifications.models import Notification, NotificationStatus
from notifications.services import proposal_claim
from policies.models import KillSwitch, Policy
from tests.conftest import (
    Receiver,
    bid_adjustment,
    creative,
    creative_batch,
    reallocation,
    wait_until,
)
from tests.factories import evaluated, submitted

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
    expect(page.locator("#proposal-states")).to_contain_text("720.00")
    screenshot(page, "detail")

    page.fill("#approve-form textarea[name=note]", "Agreed: generic-search converts better.")
    page.click("#approve-form input[type=submit]")
    expect(page.locator(".messagelist")).to_contain_text("is approved and sent to be executed")

    wait_for_status(page, "Executed")
    expect(page.locator("#proposal-executions")).to_contain_text("Succeeded")
    assert Campaign.objects.get(external_id="brand-search").daily_budget == 720
    assert Proposal.objects.get(pk=reference.pk).decisions.get().reviewer.username == "operator"

    page.goto(f"{live_server.url}/admin/")
    expect(page.locator("#queue-depth")).to_have_text("2")
    screenshot(page, "dashboard")

    page.locator("#agent-figures a", has_text="optimizer").click()
    expect(page.locator("#scorecard")).to_contain_text("budget reallocation")
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

    expect(page.locator("h1")).to_contain_text("Reject 2 proposals?")
    expect(page.locator("#bulk-proposals tbody tr")).to_have_count(2)
    assert not Proposal.objects.filter(status=ProposalStatus.REJECTED).exists()
    page.select_option("select[name=reason_code]", "too_aggressive")
    page.fill("textarea[name=note]", "Move in smaller steps.\nHalve it first.")
    page.click("input[value='Yes, reject 2']")

    rejected = (
        f"Rejected 2 proposals: {', '.join(f'#{pk}' for pk in sorted(p.pk for p in proposals))}."
    )
    expect(page.locator(".messagelist")).to_contain_text(rejected)
    # The result has the focus, so that a screen reader reads it out as the queue opens.
    expect(page.locator(":focus")).to_contain_text(rejected)
    for proposal in proposals:
        decision = Proposal.objects.get(pk=proposal.pk).decisions.get()
        assert (decision.outcome, decision.reason_code, decision.note) == (
            "reject",
            "too_aggressive",
            "Move in smaller steps.\r\nHalve it first.",  # as a browser sends it
        )
    # The page keeps the note's lines, as the agent reads them: not one run-on sentence.
    page.goto(f"{live_server.url}/admin/approvals/proposal/{proposals[0].pk}/change/")
    note = page.locator("#proposal-decisions td.note").inner_text()
    assert note.splitlines() == ["Move in smaller steps.", "Halve it first."]


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
    expect(page.locator("#change-history")).to_contain_text("the policy engine (system)")
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
    expect(page.locator(".messagelist")).to_contain_text("is approved and sent to be executed")

    wait_for_status(page, "Executed")
    earned = Policy.objects.get(agent__name="optimizer", account=demo)
    assert earned.auto_execute_max_magnitude == Decimal("0.225")


def test_the_queue_shows_who_is_on_a_proposal_without_scrolling(live_server, demo_world, browser):
    """“The others see who is on it”: in the queue, at the width of a laptop's screen (1280
    px and up), the column saying who took a proposal is on screen, not past the table's
    right edge; so are the risk the queue is sorted by and how long each has waited, with
    a guardrail's flag and the largest magnitude the queue writes beside them, with the ids
    of a platform in use (six digits: the whole suite's run on SQLite, its ids in the
    thousands, put the age 18% past the edge once the decision-due column came)."""
    ids_from(Proposal, 123456)
    [proposal, *_] = waiting(
        reallocation("280.00"),
        creative_batch(creative(body="Guaranteed results in a week.")),
        bid_adjustment("5000.00", campaign="display-retarget"),  # "at least 100000.0%"
    )
    operator = get_user_model().objects.get(username="operator")
    proposal_claim(proposal_id=proposal.pk, user=operator)
    for width in (1280, 1400):
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        log_in(page, live_server.url, demo_world["users"]["operator"])

        page.goto(f"{live_server.url}/admin/approvals/proposal/")

        taken = page.locator("#result_list tbody tr", has_text="move 280.00")
        expect(taken.locator("td.field-on_it")).to_contain_text("operator until")
        screenshot(page, f"queue-on-it-{width}")
        for column in ("on_it", "guardrail_flag", "magnitude_display", "risk", "age"):
            cells = page.locator(f"#result_list tbody td.field-{column}").all()
            assert len(cells) == 3, column
            for cell in cells:
                expect(cell).to_be_in_viewport(ratio=1)
        context.close()


def ids_from(model, first: int) -> None:
    """The next row of ``model`` gets id ``first``."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, false)", [table, first]
            )
        else:
            cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [table])
            cursor.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, first - 1]
            )


def test_the_queue_keeps_an_agents_short_name_whole_at_a_laptops_width(
    live_server, demo_world, browser
):
    """At 1280 px the queue's Agent column broke "copywriter" inside the word ("copywrite"
    over "r"): a name of some ten letters reads on one line."""
    proposal = submitted(creative_batch(creative()), agent="copywriter")
    wait_until(lambda: Proposal.objects.get(pk=proposal.pk).status == "pending_review")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["operator"])
    page.goto(f"{live_server.url}/admin/approvals/proposal/")
    agent = page.locator("#result_list tbody tr", has_text="deploy 1 creative").locator(
        "td.field-agent"
    )
    expect(agent).to_have_text("copywriter")
    lines = agent.evaluate(
        "cell => { const range = document.createRange(); range.selectNodeContents(cell);"
        " return new Set(Array.from(range.getClientRects(), r => Math.round(r.top))).size; }"
    )
    assert lines == 1, "copywriter is broken over lines"
    context.close()


def test_the_list_in_every_status_shows_every_column_at_a_laptops_width(
    live_server, demo_world, browser
):
    """Searched, or filtered to every status, the list adds its status column; at 1280 px an
    auto-approved proposal's "none needed: auto-approved", kept on one line, pushed the risk
    and the age past the table's right edge (read only by scrolling the table sideways)."""
    # Ids of a platform in use (six digits), not a fresh database's one or two.
    ids_from(Proposal, 123456)
    [claimed] = waiting(reallocation("280.00"))
    operator = get_user_model().objects.get(username="operator")
    proposal_claim(proposal_id=claimed.pk, user=operator)
    auto = submitted(bid_adjustment("2.10"))
    wait_until(lambda: Proposal.objects.get(pk=auto.pk).status == ProposalStatus.EXECUTED)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["operator"])
    for query in ("?status=all", "?q=brand-search"):
        page.goto(f"{live_server.url}/admin/approvals/proposal/{query}")
        expect(page.locator("#result_list tbody tr", has_text="2.00 → 2.10")).to_contain_text(
            "none needed: auto-approved"
        )
        taken = page.locator("#result_list tbody tr", has_text="move 280.00")
        expect(taken.locator("td.field-on_it")).to_contain_text("operator until")
        screenshot(page, f"queue-every-status-{query[1:2]}")
        for column in ("on_it", "status_shown", "approvals_display", "risk", "age"):
            cells = page.locator(f"#result_list tbody td.field-{column}").all()
            assert len(cells) == 2, (query, column)
            for cell in cells:
                # Across, within the page's width (a row below the fold is read by scrolling
                # down, as any list's is).
                box = cell.bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= 1280, (query, column, box)
        overflow = page.evaluate(
            "(() => { const t = document.querySelector('#result_list');"
            " return t.getBoundingClientRect().width - t.parentElement.clientWidth; })()"
        )
        assert overflow <= 0, (query, overflow)
    context.close()


def test_the_dashboard_and_a_scorecard_show_every_column_at_a_laptops_width(
    live_server, demo_world, browser
):
    """At 1280 px the dashboard's table of agents showed up to "Superse…": the superseded
    count, the auto-executed rate and the approval rate per agent were past its box's right
    edge; an agent's scorecard ran past the page's, the page scrolling sideways."""
    operator = get_user_model().objects.get(username="operator")
    rejected, approved = waiting(reallocation("280.00"), reallocation("150.00"))
    proposal_reject(proposal_id=rejected.pk, reviewer=operator, reason_code="contradicts_strategy")
    proposals_approve(proposal_ids=[approved.pk], reviewer=operator)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["operator"])

    def every_column_in_view(table: str) -> None:
        headers = page.locator(f"{table} thead th").all()
        assert len(headers) >= 15, table
        for header in headers:
            expect(header).to_be_in_viewport(ratio=1)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280

    page.goto(f"{live_server.url}/admin/")
    expect(page.locator("#agent-figures tr[data-agent=optimizer]")).to_contain_text("50%")
    every_column_in_view("#agent-figures")
    expect(page.locator("#content-related")).to_be_visible()  # the recent actions, still

    page.goto(f"{live_server.url}/admin/approvals/agent/{approved.agent_id}/change/")
    expect(page.locator("#scorecard-figures")).to_contain_text("Contradicts strategy")
    every_column_in_view("#scorecard-figures")
    context.close()


def test_the_executions_list_shows_when_each_finished_at_a_laptops_width(
    live_server, demo_world, browser, channel
):
    """The list kept each proposal's summary on one line, and pushed the time each attempt
    finished past its right edge at 1280 px ("2026-12-05 00:46:"). Its idempotency key
    column, by which an operator matches an attempt on a webhook to the endpoint's logs,
    keeps every column on the screen."""
    operator = get_user_model().objects.get(username="operator")
    endpoint = channel(200, 200, 200)  # the demo account's actions go to its webhook
    moves = waiting(reallocation("280.00"), reallocation("150.00"))
    proposals_approve(proposal_ids=[move.pk for move in moves], reviewer=operator)
    bid = evaluated(bid_adjustment("2.12"))  # approved at once, run by the worker
    done = [move.pk for move in moves] + [bid.pk]
    executed = Proposal.objects.filter(pk__in=done, status="executed")
    wait_until(lambda: executed.count() == 3)
    keys = sorted(request["headers"]["Idempotency-Key"] for request in endpoint.received)
    assert keys == sorted(f"hitl-proposal-{pk}-1" for pk in done)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["auditor"])

    page.goto(f"{live_server.url}/admin/approvals/execution/")

    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    for cell in page.locator("#result_list tbody td.field-finished_at").all():
        expect(cell).to_contain_text(" UTC")
        expect(cell).to_be_in_viewport(ratio=1)
    shown = page.locator("#result_list tbody td.field-key_sent").all_inner_texts()
    assert sorted(shown) == keys
    for cell in page.locator("#result_list tbody td, #result_list thead th").all():
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 1280, (cell.inner_text(), box)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    context.close()


def test_operator_searches_from_the_queue_and_finds_every_status(live_server, demo_world, page):
    promise, earlier, _ = waiting(
        creative_batch(creative(body="Guaranteed results in a week.")),
        creative_batch(creative(headline="Guaranteed savings", body="Save more.")),
        reallocation("280.00"),
    )
    operator = get_user_model().objects.get(username="operator")
    proposal_reject(proposal_id=earlier.pk, reviewer=operator, reason_code="off_brand")
    log_in(page, live_server.url, demo_world["users"]["operator"])

    page.goto(f"{live_server.url}/admin/approvals/proposal/")
    page.fill("#searchbar", "guaranteed")
    page.press("#searchbar", "Enter")

    expect(page.locator("h1")).to_have_text("Proposals matching “guaranteed”, in every status")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Rejected")  # newest first, whatever became of it
    expect(rows.nth(1)).to_contain_text("Pending review")
    flag = rows.nth(1).locator(".guardrail-flag")
    expect(flag).to_be_visible()
    expect(flag).to_have_attribute(
        "title", re.compile("The body of creative 1 uses the banned term “guaranteed”")
    )

    page.locator(
        '#changelist-filter details[data-filter-title="status"] a', has_text="Pending review"
    ).click()
    expect(page.locator("h1")).to_have_text(
        "Proposals matching “guaranteed”, with status pending review"
    )
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(f"{promise.pk}")


def test_an_operator_reads_what_a_guardrail_found_from_the_queue_by_keyboard_alone(
    live_server, demo_world, page
):
    """The queue's ⚠ opens, by Tab and Enter (or a tap), on what the guardrails found: a
    tooltip alone is read by a mouse's hover and by nothing else."""
    waiting(creative_batch(creative(headline="Guaranteed savings", body="Risk-free, for all.")))
    log_in(page, live_server.url, demo_world["users"]["operator"])
    page.goto(f"{live_server.url}/admin/approvals/proposal/")
    findings = page.locator("#result_list .guardrail-findings")
    expect(findings).to_be_hidden()

    tab_to(page, "#result_list .guardrail-flag summary")
    expect(page.locator(":focus")).to_have_accessible_name("⚠ 2 guardrail findings")
    page.keyboard.press("Enter")

    expect(findings).to_be_visible()
    expect(findings.locator("li")).to_have_text(
        [
            "The headline of creative 1 uses the banned term “guaranteed”: “«Guaranteed» savings”.",
            "The body of creative 1 uses the banned term “risk-free”: “«Risk-free», for all.”",
        ]
    )

    # On a phone, where the queue reads row by row, a tap on the ⚠ opens the findings across
    # the screen, none of them cut at its edge.
    phone = page.context.browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True
    )
    page = phone.new_page()
    log_in(page, live_server.url, demo_world["users"]["operator"])
    page.goto(f"{live_server.url}/admin/approvals/proposal/")
    # The ⚠ reads beside its heading ("Guardrail: ⚠ 2"), as every other value of the row
    # does, not alone on a line under it.
    cell = page.locator("#result_list td.field-guardrail_flag").bounding_box()
    mark = page.locator("#result_list .guardrail-flag summary").bounding_box()
    assert mark["y"] < cell["y"] + mark["height"], (cell, mark)
    page.locator("#result_list .guardrail-flag summary").tap()
    findings = page.locator("#result_list .guardrail-findings")
    expect(findings).to_be_visible()
    box = findings.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    phone.close()


def test_policy_owner_raises_the_reallocation_ceiling_by_draft_dry_run_and_promotion(
    live_server, demo_world, page
):
    """Raising the reallocation ceiling from 10% to 30%: duplicate as draft, dry run (on a
    move the draft lets run and the live policy holds: one the cumulative ceiling does not
    hold under both, as it holds a 29% move), simulate (which points at the cumulative
    ceiling as what still holds the 28% proposal), and promote, with a reason. Every click
    and every field typed in is counted."""
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
    # Prefilled: a move the draft's 30% lets run and the live 10% holds, tried through the
    # engine: the cumulative 25% holds 290.00, 240.00 and 200.00 of brand-search's 1000.00
    # under both (generic-search's 500.00 would move +58%, +48%, +40%), so 110.00.
    expect(page.locator("#dry-run-example")).to_contain_text(
        "a change of 11.0%, within this draft's auto-execute ceiling and past the one of the "
        "policy it replaces: auto-approved with the draft, sent to a person with the policy in "
        "force."
    )
    act(page.click, "#dry-run-form input[type=submit]")
    expect(page.locator("#dry-run-verdict h2")).to_contain_text("Would be auto-approved")
    screenshot(page, "policy-dry-run")

    act(page.click, "#simulate-link")
    expect(page.locator("#simulation-held-by")).to_contain_text("The cumulative ceiling: 1")
    expect(page.locator("#held-examples")).to_contain_text("cumulative ceiling 25% per 1 day")
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


def rows_of(page: Page, table: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in row.locator("th, td").all_inner_texts()]
        for row in page.locator(f"{table} tr").all()
    ]


def test_auditor_reads_what_was_proposed_approved_and_done_after_ledger_and_policy_moved(
    live_server, demo_world, page
):
    operator = get_user_model().objects.get(username="operator")
    reference, again = waiting(reallocation("280.00"), reallocation("280.00"))
    for proposal in (reference, again):  # the second runs on what the first left
        proposals_approve(proposal_ids=[proposal.pk], reviewer=operator)
        wait_until(lambda p=proposal: Proposal.objects.get(pk=p.pk).status == "executed")
    policy = Policy.objects.get(action_type="budget_reallocation", is_draft=False)
    policy.auto_execute_max_magnitude = Decimal("0.30")
    policy._change_reason = "Raise the reallocation ceiling to 30%."
    policy.save()
    log_in(page, live_server.url, demo_world["users"]["auditor"])

    page.goto(f"{live_server.url}/admin/approvals/proposal/{reference.pk}/change/")

    # The move it made, as recorded; not 440.00 / 1060.00 recomputed from today's ledger.
    assert rows_of(page, "#proposal-states") == [
        # (the admin's style sets headings in capitals)
        ["CAMPAIGN", "FIELD", "WHEN PROPOSED", "PROPOSED", "BEFORE EXECUTION", "AFTER EXECUTION"],
        ["brand-search", "daily budget", "1000.00", "720.00", "1000.00", "720.00"],
        ["generic-search", "daily budget", "500.00", "780.00", "500.00", "780.00"],
    ]
    expect(page.locator("#proposal-review")).not_to_contain_text("440.00")
    # The ceiling that routed it, not today's.
    expect(page.locator("#routed-by")).to_contain_text("runs without a person up to 10.0%")
    expect(page.locator("#routed-by")).to_contain_text("it has changed since")
    expect(page.locator(".field-magnitude_display")).to_contain_text("28.0% / 10.0%")
    screenshot(page, "executed")


def test_operator_bulk_approves_bids_on_one_campaign_and_is_told_what_will_run(
    live_server, demo_world, page
):
    raises = waiting(bid_adjustment("2.50"), bid_adjustment("2.60"), bid_adjustment("2.40"))
    [elsewhere] = waiting(bid_adjustment("2.00", campaign="generic-search"))
    log_in(page, live_server.url, demo_world["users"]["operator"])
    page.goto(f"{live_server.url}/admin/approvals/proposal/")
    for proposal in (*raises, elsewhere):
        page.check(f"input[name=_selected_action][value='{proposal.pk}']")
    page.select_option("select[name=action]", "approve_selected")
    page.click("button[name=index]")

    expect(page.locator("#bulk-conflicts")).to_contain_text(
        "2 of them clash with one listed above them"
    )
    listed = {int(row[0]): row[-1] for row in rows_of(page, "#bulk-proposals tbody")}
    raised = {p.pk for p in raises}
    first = next(pk for pk in listed if pk in raised)  # in the order the page lists them
    assert listed[first] == listed[elsewhere.pk] == "Approved: it executes."
    for pk in raised - {first}:
        assert listed[pk] == (
            f"Proposal #{pk} is left waiting: #{first}, approved with it, changes "
            f"brand-search's bid first, so it would be superseded once #{first} executes."
        )
    screenshot(page, "bulk-confirmation")
    page.click("input[value='Yes, approve 2']")

    expect(page.locator(".messagelist")).to_contain_text(
        "2 proposals approved and sent to be executed"
    )
    expect(page.locator(".messagelist li")).to_have_count(3)  # and the two held back, why
    held = [p for p in raises if p.pk != first]
    wait_until(lambda: Proposal.objects.get(pk=first).status == "executed")
    wait_until(lambda: all(Proposal.objects.get(pk=p.pk).status == "superseded" for p in held))

    page.goto(f"{live_server.url}/admin/approvals/proposal/{held[0].pk}/change/")
    expect(page.locator("#proposal-status")).to_have_text("Superseded")
    expect(page.locator("#verdict-reasons")).to_contain_text("Superseded: brand-search's bid is")
    expect(page.locator("#verdict-reasons")).to_contain_text("was 2.00")
    assert (
        str(Campaign.objects.get(external_id="brand-search").bid)
        == (Proposal.objects.get(pk=first).payload["new_bid"])
    )


def test_operator_edits_a_creatives_headline_and_sees_what_the_edit_changed(
    live_server, demo_world, page
):
    [proposal] = waiting(
        creative_batch(creative(headline="Guaranteed results, fast", body="Find it in seconds."))
    )
    log_in(page, live_server.url, demo_world["users"]["operator"])
    page.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")

    form = page.locator("#edit-approve-form")
    headline = form.get_by_label("Headline of creative 1")
    expect(headline).to_have_value("Guaranteed results, fast")
    expect(form.get_by_label("Call to action of creative 1")).to_have_value("Try it")
    screenshot(page, "edit-form")
    headline.fill("Results, fast")
    form.get_by_label("Note").fill("No promises we cannot keep.")
    form.locator("input[type=submit]").click()

    expect(page.locator(".messagelist")).to_contain_text("is approved and sent to be executed")
    changes = page.locator("#edit-changes")
    expect(changes).to_contain_text("No promises we cannot keep.")
    row = changes.locator("tr", has_text="Headline of creative 1")
    expect(row.locator("del")).to_have_text("Guaranteed results,")
    expect(row.locator("ins")).to_have_text("Results,")
    expect(row.locator("td")).to_have_text("Guaranteed results, Results, fast")
    screenshot(page, "edit-diff")

    wait_for_status(page, "Executed")
    expect(page.locator("#edit-changes del")).to_have_text("Guaranteed results,")
    assert Creative.objects.get(deployed_by_proposal=proposal).headline == "Results, fast"


def test_operator_changes_only_a_call_to_action_and_only_that_is_reported(
    live_server, demo_world, page, optimizer
):
    sent = creative("Search smarter", "Find it fast.\r\nNo card needed.", "Try it")
    answer = optimizer.post("/api/v1/proposals/", creative_batch(sent), format="json").json()
    wait_until(lambda: Proposal.objects.get(pk=answer["id"]).status == "pending_review")
    log_in(page, live_server.url, demo_world["users"]["operator"])
    page.goto(f"{live_server.url}/admin/approvals/proposal/{answer['id']}/change/")

    # The page shows the body with its lines, as the agent wrote it and as it would run.
    body = page.locator(".creative-body").inner_text()
    assert body.splitlines() == ["Find it fast.", "No card needed."]
    form = page.locator("#edit-approve-form")
    expect(form.get_by_label("Body of creative 1")).to_have_value("Find it fast.\nNo card needed.")
    form.get_by_label("Call to action of creative 1").fill("Buy now")
    form.get_by_label("Note").fill("A clearer ask.")
    page.locator("#reject-form").get_by_label("Note").fill("Not this one.")  # its own box
    form.locator("input[type=submit]").click()

    expect(page.locator(".messagelist")).to_contain_text("is approved and sent to be executed")
    expect(page.locator("#edit-changes tbody th")).to_have_text(["Call to action of creative 1"])
    feedback = Feedback.objects.get(proposal_id=answer["id"])
    assert (feedback.note, list(feedback.diff)) == (
        "A clearer ask.",
        ["creatives[0].call_to_action"],
    )
    wait_for_status(page, "Executed")
    executed = Creative.objects.get(deployed_by_proposal_id=answer["id"])
    assert (executed.headline, executed.body, executed.call_to_action) == (
        "Search smarter",
        "Find it fast.\nNo card needed.",
        "Buy now",
    )


def test_an_edit_the_platform_refuses_keeps_what_the_operator_typed(live_server, demo_world, page):
    [proposal] = waiting(reallocation("280.00"))
    log_in(page, live_server.url, demo_world["users"]["operator"])
    page.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")

    form = page.locator("#edit-approve-form")
    amount = form.get_by_label("Daily amount moved from brand-search to generic-search (USD)")
    expect(amount).to_have_value("280.00")
    amount.fill("5000")
    form.get_by_label("Note").fill("Half of it, to start with.")
    form.locator("input[type=submit]").click()

    expect(page.locator(".messagelist")).to_contain_text("Not approved")
    form = page.locator("#edit-approve-form")
    field = form.locator(".edit-field.errors")
    expect(field.locator(".errorlist")).to_have_text(
        "Exceeds brand-search's daily budget of 1000.00."
    )
    expect(field.locator("input")).to_have_value("5000")
    expect(form.get_by_label("Note")).to_have_value("Half of it, to start with.")
    expect(page.locator("#proposal-status")).to_have_text("Pending review")
    screenshot(page, "edit-refused")

    field.locator("input").fill("140")
    form.locator("input[type=submit]").click()
    expect(page.locator(".messagelist")).to_contain_text("is approved and sent to be executed")
    decision = Proposal.objects.get(pk=proposal.pk).decisions.get()
    assert (decision.edited_payload["amount"], decision.note) == (
        "140.00",
        "Half of it, to start with.",
    )


def test_a_refused_act_reads_as_the_proposals_page_and_a_reload_sends_nothing_again(
    live_server, demo_world, operators, page
):
    """A refused act's page is the answer to its form, at the act's address; the address bar
    reads the proposal's page instead, with what was typed still in the form, so a reload
    reads the page again rather than sending the form again. Refused because a colleague
    rejected the proposal meanwhile, the refusal names them and when, in its first words."""
    operator, colleague = operators
    [proposal] = waiting(reallocation("280.00"))
    proposal_page = f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/"
    log_in(page, live_server.url, demo_world["users"]["operator"])
    page.goto(proposal_page)

    form = page.locator("#edit-approve-form")
    form.get_by_label("Daily amount moved from brand-search to generic-search (USD)").fill("5000")
    form.get_by_label("Note").fill("Half of it, to start with.")
    form.locator("input[type=submit]").click()

    expect(page.locator(".messagelist")).to_contain_text("Not approved")
    expect(page).to_have_url(proposal_page)
    expect(page.locator("#edit-approve-form").get_by_label("Note")).to_have_value(
        "Half of it, to start with."
    )
    expect(page.locator(":focus")).to_contain_text("Exceeds brand-search's daily budget")

    proposal_reject(proposal_id=proposal.pk, reviewer=colleague, reason_code="too_aggressive")
    page.locator("#edit-approve-form input[type=submit]").click()

    decided = Proposal.objects.get(pk=proposal.pk).decisions.get().created_at
    refusal = (
        f"Proposal #{proposal.pk} is rejected; it cannot become approved. second-operator "
        f"rejected it (too aggressive) at {decided:%Y-%m-%d %H:%M:%S} UTC."
    )
    expect(page.locator(".messagelist .error")).to_have_text(f"Not approved: {refusal}")
    expect(page.locator(":focus")).to_have_text(f"Not approved: {refusal}")
    expect(page).to_have_url(proposal_page)

    reloaded_without_sending(page, proposal_page)
    expect(page.locator("#proposal-status")).to_have_text("Rejected")
    assert not Proposal.objects.get(pk=proposal.pk).decisions.filter(reviewer=operator).exists()


def test_without_javascript_a_refused_decision_is_the_proposals_page_and_a_reload_sends_nothing(
    live_server, demo_world, operators, browser
):
    """With no script to set the address bar, a refused decision still answers with the
    proposal's page, by a redirect (Post/Redirect/Get): the refusal is said there, with who
    decided first, and reloading it reads the page again; it used to stay at the act's
    address, and a reload asked to send the refused form again."""
    operator, colleague = operators
    [proposal] = waiting(reallocation("280.00"))
    proposal_page = f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/"
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["operator"])
    page.goto(proposal_page)
    proposal_reject(proposal_id=proposal.pk, reviewer=colleague, reason_code="too_aggressive")

    page.locator("#approve-form").get_by_label("Note").fill("Fine by me.")
    page.locator("#approve-form input[type=submit]").click()

    decided = Proposal.objects.get(pk=proposal.pk).decisions.get().created_at
    expect(page).to_have_url(proposal_page)
    expect(page.locator(".messagelist .error")).to_have_text(
        f"Proposal #{proposal.pk} is rejected; it cannot become approved. second-operator "
        f"rejected it (too aggressive) at {decided:%Y-%m-%d %H:%M:%S} UTC."
    )
    expect(page.locator("#proposal-status")).to_have_text("Rejected")
    reloaded_without_sending(page, proposal_page)
    expect(page.locator("#proposal-status")).to_have_text("Rejected")
    assert not Proposal.objects.get(pk=proposal.pk).decisions.filter(reviewer=operator).exists()
    context.close()


def reloaded_without_sending(page: Page, url: str) -> None:
    """Reload ``page``, asserting the browser asked for ``url`` again by a GET and sent no
    form (a reload after a POST's answer sends the form again)."""
    sent = []
    page.on("request", lambda request: sent.append((request.method, request.url)))
    page.reload()
    page.wait_for_load_state()
    assert sent[0] == ("GET", url), sent
    assert not any(method == "POST" for method, _ in sent), sent


def tab_to(page: Page, selector: str, presses: int = 60) -> None:
    """Press Tab, as a person without a mouse does, until ``selector`` has the focus."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is not reached by Tab in {presses} presses")


def test_an_operator_rejects_with_the_keyboard_alone_and_a_refusal_keeps_what_was_typed(
    live_server, demo_world, operators, page
):
    """Without a mouse, with a screen reader: each decision's form is named for what it does
    (three boxes are each labelled "Note"), each note says where it goes, and the rejection's
    reason and note are reached and sent by Tab and Enter. Refused because a colleague edited
    the proposal meanwhile, the page comes back as it is now with the reason and the note as
    typed, and Enter on its Reject decides the action now shown."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    operator, colleague = operators
    [proposal] = waiting(reallocation("280.00"))
    log_in(page, live_server.url, demo_world["users"]["operator"])
    page.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")

    for name in ("Approve as proposed", "Edit, then approve", "Reject"):
        expect(page.get_by_role("form", name=name)).to_be_visible()
    reject = page.get_by_role("form", name="Reject")
    expect(reject.get_by_role("textbox", name="Note")).to_have_accessible_description(
        "Sent to the agent as feedback, with the reason."
    )
    expect(
        page.get_by_role("form", name="Approve as proposed").get_by_role("textbox", name="Note")
    ).to_have_accessible_description("Sent to the agent as feedback, with your approval.")

    tab_to(page, "#reject-form select[name=reason_code]")
    for _ in range(4):
        page.keyboard.press("ArrowDown")
    expect(reject.get_by_role("combobox", name="Reason")).to_have_value("too_aggressive")
    page.keyboard.press("Tab")
    page.keyboard.type("Move it in two steps.")
    proposal_approve(  # meanwhile a colleague edits it (1 of 2 approvals)
        proposal_id=proposal.pk,
        reviewer=colleague,
        edited_payload=reallocation("140.00")["payload"],
    )
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")

    expect(page.locator(".messagelist")).to_contain_text("was edited since it was shown to you")
    reject = page.get_by_role("form", name="Reject")
    expect(reject).to_contain_text("Nothing was decided")
    # The focus is on the refusal, read out, and the next Tab is in the form it refused.
    expect(page.locator(":focus")).to_contain_text("Nothing was decided")
    page.keyboard.press("Tab")
    expect(reject.get_by_role("combobox", name="Reason")).to_be_focused()
    expect(reject.get_by_role("combobox", name="Reason")).to_have_value("too_aggressive")
    expect(reject.get_by_role("textbox", name="Note")).to_have_value("Move it in two steps.")
    expect(page.locator("#summary-now")).to_contain_text("move 140.00 USD/day")
    assert not Proposal.objects.get(pk=proposal.pk).decisions.filter(reviewer=operator).exists()

    tab_to(page, "#reject-form input[type=submit]")
    page.keyboard.press("Enter")

    expect(page.locator(".messagelist")).to_contain_text(f"Proposal #{proposal.pk} is rejected.")
    decision = Proposal.objects.get(pk=proposal.pk).decisions.get(reviewer=operator)
    assert (decision.outcome, decision.reason_code, decision.note) == (
        "reject",
        "too_aggressive",
        "Move it in two steps.",
    )


@contextmanager
def approved_while_its_channel_holds(live_server, demo_world, page, answers: int = 200):
    """The reference reallocation approved on its page, the demo account's channel holding
    its answer (HTTP ``answers``) until told (``answer.set()``): the page is left while the
    proposal is still under way, to follow it by itself. Yields the proposal, the answer and
    the channel."""
    answer = threading.Event()
    endpoint = Receiver(answers, hold=answer)
    Account.objects.filter(external_id="demo").update(execution_endpoint=endpoint.url)
    try:
        [proposal] = waiting(reallocation("280.00"))
        log_in(page, live_server.url, demo_world["users"]["operator"])
        page.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")
        page.click("#approve-form input[type=submit]")
        expect(page.locator("#proposal-status")).to_have_text(re.compile("^(Approved|Executing)$"))
        yield proposal, answer, endpoint
    finally:
        answer.set()
        endpoint.close()


def test_a_page_that_can_no_longer_follow_its_proposal_says_so(live_server, demo_world, page):
    """Logged out while the page follows a proposal under way: it cannot read the status any
    more, so it says it stopped following and may be behind, rather than show "Approved"
    about what may have executed since."""
    with approved_while_its_channel_holds(live_server, demo_world, page) as (proposal, _, _):
        page.context.clear_cookies()  # the session gone, as when it expires

        expect(page.locator("#follow-stopped")).to_have_text(
            f"This page stopped following proposal #{proposal.pk} (you may have been logged "
            "out): reload it to see where it stands.",
            timeout=15_000,
        )


def test_the_operator_approves_and_sees_it_executed_without_reloading(
    live_server, demo_world, page
):
    with approved_while_its_channel_holds(live_server, demo_world, page) as held:
        proposal, answer, endpoint = held
        approved = f"Proposal #{proposal.pk} is approved and sent to be executed."
        expect(page.locator(".messagelist")).to_contain_text(approved)
        page.evaluate("window.loadedOnce = true")  # gone if the page loads itself again

        wait_until(lambda: endpoint.received)  # the executor's request is at the channel
        answer.set()

        expect(page.locator("#proposal-status")).to_have_text("Executed", timeout=15_000)
        expect(page.locator("#proposal-executions")).to_contain_text("webhook")
        expect(page.locator("#proposal-executions")).to_contain_text("Succeeded")
        # What the operator did is still said, and what has become of it since, below it.
        expect(page.locator(".messagelist li")).to_have_text(
            [approved, f"Proposal #{proposal.pk} has been executed."]
        )
        assert page.evaluate("window.loadedOnce") is True
        expect(page.locator("#follow-status")).to_have_count(0)  # final: nothing to follow


def test_a_page_that_reads_it_executed_after_a_stale_answer_says_it_has_been_executed(
    live_server, demo_world, page
):
    """The page asks the proposal's status, then reads its page: the answer said "Executing"
    with a new attempt, and by the time the page was read it had executed. The page read
    "Executed" with nothing said of it ("… has been executed.", said from the answer's
    status, which had not moved). What the page shows says it."""
    with approved_while_its_channel_holds(live_server, demo_world, page) as held:
        proposal, answer, endpoint = held
        wait_until(lambda: endpoint.received)  # the executor's request is at the channel
        expect(page.locator("#proposal-status")).to_have_text("Executing", timeout=15_000)

        def read_before_it_ended(route) -> None:
            # Each answer as if read just before the attempt ended: still executing, its
            # attempt moved on (the page then reads it as it is).
            response = route.fetch()
            body = response.json()
            if body["status"] == "executed":
                body = {**body, "status": "executing", "last_attempt": "read before it ended"}
            route.fulfill(response=response, json=body)

        status_url = reverse("admin:approvals_proposal_status", args=[proposal.pk])
        page.route(f"**{status_url}", read_before_it_ended)
        answer.set()

        expect(page.locator("#proposal-status")).to_have_text("Executed", timeout=15_000)
        expect(page.locator(".messagelist li").last).to_have_text(
            f"Proposal #{proposal.pk} has been executed."
        )


def test_the_operator_sees_an_execution_fail_without_reloading_in_words(
    live_server, demo_world, page
):
    """Followed to its end, a failed execution reads "Proposal #25 has failed.", not the
    status's label after "is now" ("is now failed")."""
    with approved_while_its_channel_holds(live_server, demo_world, page, answers=400) as held:
        proposal, answer, endpoint = held
        wait_until(lambda: endpoint.received)
        answer.set()

        expect(page.locator("#proposal-status")).to_have_text("Failed", timeout=15_000)
        expect(page.locator(".messagelist li").last).to_have_text(
            f"Proposal #{proposal.pk} has failed."
        )


def test_a_proposals_page_follows_each_failed_attempt_while_it_stays_executing(
    live_server, demo_world, page
):
    """The channel answers 503, then 429, then 200: between attempts the proposal stays
    "Executing", and its page said "attempt 2 is due at …" after attempt 2 had failed and
    attempt 3 been scheduled, until the final status came. It says each failed attempt and
    the next one due as it happens, without loading itself again."""
    endpoint = Receiver(503, 429, 200, retry_after="6")
    Account.objects.filter(external_id="demo").update(execution_endpoint=endpoint.url)
    try:
        [proposal] = waiting(reallocation("280.00"))
        log_in(page, live_server.url, demo_world["users"]["operator"])
        page.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")
        page.click("#approve-form input[type=submit]")
        page.evaluate("window.loadedOnce = true")  # gone if the page loads itself again

        retrying = page.locator("#execution-retrying")
        expect(retrying).to_contain_text("ttempt 1 by the webhook executor failed", timeout=15_000)
        expect(retrying).to_contain_text("HTTP 503")
        expect(retrying).to_contain_text("attempt 2 is due at")
        expect(retrying).to_contain_text("ttempt 2 by the webhook executor failed", timeout=15_000)
        expect(retrying).to_contain_text("HTTP 429")
        # Said while it still executes (once it has executed, nothing is due): the page
        # followed the attempt, not only the final status.
        expect(retrying).to_contain_text("attempt 3 is due at")
        assert page.evaluate("window.loadedOnce") is True
        expect(page.locator("#proposal-status")).to_have_text("Executed", timeout=20_000)
        expect(page.locator(".messagelist li").last).to_have_text(
            f"Proposal #{proposal.pk} has been executed."
        )
    finally:
        endpoint.close()


def test_the_consoles_pages_fit_a_phones_width(live_server, demo_world, browser):
    """At a phone's width (390 px) each page keeps the screen's width: a wide table (a
    proposal's executions' nine columns, a bulk confirmation's, a scorecard's sixteen) scrolls
    sideways by itself, and a chart shrinks to fit, rather than the whole page, its verdict
    and its buttons with it, scrolling sideways."""
    proposals = waiting(reallocation("280.00"), reallocation("150.00"))
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["operator"])

    def fits(what: str) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{what} is {width} px wide"

    page.goto(f"{live_server.url}/admin/approvals/proposal/{proposals[0].pk}/change/")
    expect(page.locator("#proposal-executions")).to_contain_text("Not executed.")
    screenshot(page, "detail-phone")
    fits("a proposal's page")
    for table in ("#proposal-states", "#proposal-executions table"):
        box = page.locator(table).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, table
    # What it would change is read whole, each value beside its heading:
    # none of its figures is cut at the edge of a box scrolling sideways.
    states = page.locator("#proposal-states")
    assert states.evaluate("table => table.scrollWidth <= table.clientWidth")
    now = states.locator("tr").filter(has_text="brand-search").locator("td[data-label=Now]")
    expect(now).to_have_text("1000.00")
    assert now.evaluate("td => getComputedStyle(td, '::before').content") == '"Now: "'
    box = now.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    # The agent's record on this action type reads figure by figure, each count beside its
    # heading: its last counts (waiting, superseded) are on the screen, not cut at its edge
    # in a row of twelve scrolling sideways.
    record = page.locator("#track-record-figures")
    assert record.evaluate("table => table.scrollWidth <= table.clientWidth")
    for figure, label, count in (
        ("waiting", "Waiting for a person", "2"),
        ("superseded", "Superseded", "0"),
    ):
        cell = record.locator(f"td[data-figure={figure}]")
        expect(cell).to_have_text(count)
        assert cell.evaluate("td => getComputedStyle(td, '::before').content") == f'"{label}: "'
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (figure, box)

    page.goto(f"{live_server.url}/admin/approvals/proposal/")
    fits("the queue")
    # The queue reads row by row, each value beside its heading: its last columns too, none
    # off the screen in a box that scrolls with nothing saying so.
    row = page.locator("#result_list tbody tr").filter(has_text="move 280.00 USD/day")
    for field, label in (
        ("magnitude_display", "Magnitude / ceiling that routed it"),
        ("approvals_display", "Approvals"),
        ("risk", "Risk"),
        ("age", "Age"),
    ):
        cell = row.locator(f"td.field-{field}")
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (field, box)
        assert cell.evaluate("td => getComputedStyle(td, '::before').content") == f'"{label}: "'
    expect(row.locator("td.field-approvals_display")).to_have_text("0 of 1")
    # Each row's checkbox is on its first line, before its number, not on a line of its own
    # above it (where it read as the previous row's as much as its own).
    for each in page.locator("#result_list tbody tr").all():
        checkbox = each.locator("input[name=_selected_action]").bounding_box()
        number = each.locator(".field-id").bounding_box()
        middle = checkbox["y"] + checkbox["height"] / 2
        assert number["y"] <= middle <= number["y"] + number["height"], (checkbox, number)
    for proposal in proposals:
        page.check(f"input[name=_selected_action][value='{proposal.pk}']")
    page.select_option("select[name=action]", "approve_selected")
    page.click("button[name=index]")
    expect(page.locator("input[type=submit][value^='Yes']")).to_be_visible()
    fits("the bulk confirmation")
    # It reads proposal by proposal, each value beside its heading: what approving each one
    # does, its last column, is on the screen, not cut at its edge in a box scrolling sideways.
    for outcome in page.locator("#bulk-proposals td.bulk-outcome").all():
        box = outcome.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        assert outcome.evaluate("td => getComputedStyle(td, '::before').content") == (
            '"Approving it: "'
        )

    page.goto(f"{live_server.url}/admin/approvals/agent/{proposals[0].agent_id}/change/")
    expect(page.locator("#scorecard")).to_contain_text("budget reallocation")
    fits("an agent's scorecard")

    # A history reads change by change, each value beside its heading: its seven columns were
    # squeezed until words broke letter by letter ("Change d"), its changes off the screen.
    page.goto(f"{live_server.url}/admin/approvals/proposal/{proposals[0].pk}/history/")
    fits("a proposal's history")
    routed = page.locator("#change-history tbody tr").filter(has_text="the policy engine")
    changes = routed.locator("td[data-label=Changes]")
    expect(changes).to_contain_text("Pending review")
    box = changes.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    assert changes.evaluate("td => getComputedStyle(td, '::before').content") == '"Changes: "'

    # The dashboard reads agent by agent and route by route, each figure beside its heading:
    # the agents' fifteen columns and the routes' four scrolled sideways, their last figures
    # (the approval rate, the 90th percentile) off the screen with nothing saying so.
    operator = get_user_model().objects.get(username="operator")
    (decided,) = waiting(reallocation("200.00"))
    # Told before it is decided: a message the decision comes before is not sent, and its
    # route did not tell of it (the dashboard's route table counts what routes told of).
    wait_until(
        lambda: Notification.objects.filter(
            proposal=decided, status=NotificationStatus.SENT
        ).exists()
    )
    proposal_reject(proposal_id=decided.pk, reviewer=operator, reason_code="too_aggressive")
    page.goto(f"{live_server.url}/admin/")
    fits("the dashboard")
    # A figure that opens its list is a target a finger can hit (WCAG 2.2's 24 × 24 px): the
    # failed executions' "0" was 14 px wide.
    for figure in ("#queue-depth", "#failed-executions"):
        box = page.locator(figure).bounding_box()
        assert box["width"] >= 24 and box["height"] >= 24, (figure, box)
    agent = page.locator("#agent-figures tr[data-agent=optimizer]")
    route = page.locator("#route-decision-times tbody tr").first
    for cell, label in (
        (agent.locator("td[data-figure=auto_execution_rate]"), "Auto-executed rate"),
        (agent.locator("td[data-figure=approval_rate]"), "Approval rate"),
        (route.locator("td.decisions"), "Decided by people"),
        (route.locator("td.p90"), "Time to decision, 90th percentile"),
    ):
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (label, box)
        assert cell.evaluate("td => getComputedStyle(td, '::before').content") == f'"{label}: "'
    # The agent's name beside its heading, on one line, not under it.
    name = agent.locator("td[data-label=Agent]")
    assert name.evaluate("td => td.offsetHeight < 30"), "its name under its heading"
    expect(agent.locator("td[data-figure=approval_rate]")).to_have_text("0%")
    expect(route.locator("td.decisions")).to_have_text("1")
    for table in ("#agent-figures", "#route-decision-times"):
        assert page.locator(table).evaluate("t => t.scrollWidth <= t.clientWidth"), table
    context.close()


def test_the_outbox_and_the_routes_read_row_by_row_at_a_phones_width(
    live_server, demo_world, browser
):
    """At 390 px the outbox lists each message as the queue lists each proposal, each value
    beside its heading: its status, attempts and times are on the screen, not cut at its edge
    in a box scrolling sideways with nothing saying so; the routes' list too."""
    (proposal,) = waiting(reallocation("280.00"))
    wait_until(
        lambda: Notification.objects.filter(
            proposal=proposal, status=NotificationStatus.SENT
        ).exists()
    )
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["operator"])

    page.goto(f"{live_server.url}/admin/notifications/notification/")
    row = page.locator("#result_list tbody tr").filter(has_text="operator").first
    for field, label, said in (
        ("status_shown", "Status", "Sent"),
        ("attempts", "Attempts", "1"),
        ("sent_at", "Sent at", "UTC"),
    ):
        cell = row.locator(f"td.field-{field}")
        expect(cell).to_contain_text(said)
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (field, box)
        assert cell.evaluate("td => getComputedStyle(td, '::before').content") == f'"{label}: "'
    assert page.locator("#result_list").evaluate("t => t.scrollWidth <= t.clientWidth")

    page.goto(f"{live_server.url}/admin/notifications/route/")
    row = page.locator("#result_list tbody tr").filter(has_text="to the operators")
    cell = row.locator("td.field-is_active")
    box = cell.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    assert page.locator("#result_list").evaluate("t => t.scrollWidth <= t.clientWidth")
    context.close()


def test_an_auditor_reads_decisions_and_the_audit_chain_whole_at_a_phones_width(
    live_server, demo_world, browser
):
    """At 390 px an auditor reads a proposal's decisions and the audit chain's verifications
    record by record, each value beside its heading and on the screen: a decision's reason and
    note, and what a verification found and where it marked it, were cut at the screen's edge
    in boxes scrolling sideways, and a head hash ran off it. So is an execution's attempt:
    when it finished and what the ledger held after were off the screen in a box scrolling
    sideways."""
    proposal, approved = waiting(reallocation("280.00"), reallocation("150.00"))
    operator = get_user_model().objects.get(username="operator")
    proposal_approve(proposal_id=approved.pk, reviewer=operator)
    wait_until(lambda: Proposal.objects.get(pk=approved.pk).status == "executed")
    proposal_reject(
        proposal_id=proposal.pk,
        reviewer=operator,
        reason_code="too_aggressive",
        note="Move in smaller steps.",
    )
    chain_seal()
    head = chain_verification_record().head
    Proposal.history.filter(id=proposal.pk, status="rejected").update(
        history_change_reason="rejected by someone else"
    )
    chain_verification_record(through=head)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["auditor"])

    def on_screen_beside(cell, label: str) -> None:
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (label, box)
        assert cell.evaluate("td => td.scrollWidth <= td.clientWidth"), label
        assert cell.evaluate("td => getComputedStyle(td, '::before').content") == f'"{label}: "'

    page.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")
    decision = page.locator("#proposal-decisions tbody tr").first
    for label, said in (("Reason", "Too aggressive"), ("Note", "Move in smaller steps.")):
        cell = decision.locator(f"td[data-label='{label}']")
        expect(cell).to_have_text(said)
        on_screen_beside(cell, label)

    page.goto(f"{live_server.url}/admin/approvals/proposal/{approved.pk}/change/")
    attempt = page.locator("#proposal-executions tbody tr").first
    for label, said in (
        ("Status", "Succeeded"),
        ("After", "brand-search daily budget 850.00; generic-search daily budget 650.00"),
        ("Error", "—"),
        ("What the channel made or noted", "—"),  # it read as a heading with nothing beside it
    ):
        cell = attempt.locator(f"td[data-label='{label}']")
        expect(cell).to_have_text(said)
        on_screen_beside(cell, label)
    approval = page.locator("#proposal-decisions tbody tr").first
    for label in ("Reason", "Note"):  # an approval gives neither: said, not left blank
        expect(approval.locator(f"td[data-label='{label}']")).to_have_text("—")
    finished = attempt.locator("td[data-label='Finished']")
    expect(finished).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    on_screen_beside(finished, "Finished")

    page.goto(f"{live_server.url}/admin/audit/chain/")
    broken = page.locator("#audit-chain-verifications tr[data-holds=no]")
    found = broken.locator("td[data-label='What it found']")
    expect(found).to_contain_text("was altered after it was sealed")
    on_screen_beside(found, "What it found")
    on_screen_beside(broken.locator("td[data-label='Marked on']"), "Marked on")
    asked = broken.locator("td[data-label='Head hash asked about']")
    expect(asked).to_have_text(head)
    on_screen_beside(asked, "Head hash asked about")
    on_screen_beside(broken.locator("td[data-label='Done']"), "Done")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


def test_a_page_that_does_not_exist_is_spaced_as_the_consoles_pages_are(
    live_server, demo_world, browser
):
    """The message of a missing page sits as far from the way back under it as from its
    title above, at a laptop's width and at a phone's: on a laptop the links sat half as far
    below the message's box as the title sat above it, crowding the box."""
    for width, height in ((1366, 768), (390, 844)):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        log_in(page, live_server.url, demo_world["users"]["operator"])
        page.goto(f"{live_server.url}/admin/no-such-page/")
        title, message, ways_back = (
            page.locator(selector).bounding_box()
            for selector in ("#content h1", "#error-message", "#ways-back")
        )
        above = message["y"] - (title["y"] + title["height"])
        below = ways_back["y"] - (message["y"] + message["height"])
        assert round(below) == round(above), (width, above, below)
        context.close()


def test_a_drafts_dry_run_and_promotion_forms_fit_a_phones_width(live_server, demo_world, browser):
    """At 390 px the dry run's payload and the promotion's reason, with their help, ran past
    the screen's edge, cut ("For this run only, instead of the po"), in a table of two
    columns: each field reads under its label, whole."""
    live = Policy.objects.get(action_type="budget_reallocation", is_draft=False)
    draft = Policy.objects.create(
        name=live.name,
        action_type=live.action_type,
        is_draft=True,
        draft_of=live,
        auto_execute_max_magnitude=Decimal("0.3"),
        cumulative_max_magnitude=live.cumulative_max_magnitude,
        cumulative_window=live.cumulative_window,
    )
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["policy-owner"])

    def within_the_screen(selector: str) -> None:
        for box in (item.bounding_box() for item in page.locator(selector).all()):
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (selector, box)

    page.goto(f"{live_server.url}/admin/policies/policy/{draft.pk}/dry-run/")
    within_the_screen("#dry-run-form textarea")
    within_the_screen("#dry-run-form .helptext")
    within_the_screen("#dry-run-form input[type=text]")
    page.goto(f"{live_server.url}/admin/policies/policy/{draft.pk}/promote/")
    within_the_screen("#promote-form textarea")
    within_the_screen("#promote-form .helptext")
    context.close()


# Whether a cell is as wide as its longest word, as the cell writes it: no word of it is broken.
WORDS_WHOLE = """cell => {
    const word = document.createElement("span");
    word.style.font = getComputedStyle(cell).font;
    word.style.whiteSpace = "nowrap";
    word.style.position = "absolute";
    document.body.append(word);
    const widths = cell.innerText.split(/\\s+/).map(text => {
        word.textContent = text;
        return word.getBoundingClientRect().width;
    });
    word.remove();
    const style = getComputedStyle(cell);
    const inner = cell.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return Math.max(...widths) <= inner + 1;
}"""


@pytest.mark.parametrize("width", [1280, 390])
def test_a_kill_switchs_reason_without_spaces_keeps_its_history_and_the_simulation_in_the_page(
    live_server, demo_world, browser, width
):
    """A kill switch's reason of 3,000 letters with no space in it, and the reason given for
    engaging it, widened its history page to 31,000 px and the simulation (which quotes it as
    what held a proposal back) to 23,000 px: the page scrolled sideways, its other columns and
    lines off screen. They break where they must; the date beside them keeps its one line."""
    switch = KillSwitch(
        scope="account", account=Account.objects.get(external_id="demo"), reason="x" * 3000
    )
    switch._change_reason = "y" * 3000
    switch.save()
    waiting(bid_adjustment("2.06"))
    today = timezone.localdate()
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["policy-owner"])

    page.goto(f"{live_server.url}/admin/policies/killswitch/{switch.pk}/history/")
    expect(page.locator("#change-history")).to_contain_text("x" * 60)
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "its history"
    # The columns beside it keep their words whole: its name is not squeezed to a letter a line.
    for label in ("Object", "Comment", "Changed by"):
        cell = page.locator(f"#change-history tbody td[data-label='{label}']").first
        assert cell.evaluate(WORDS_WHOLE), label

    page.goto(
        f"{live_server.url}/admin/policies/policy/simulate/"
        f"?since={today - timedelta(days=7)}&until={today + timedelta(days=1)}"
    )
    expect(page.locator("#held-examples")).to_contain_text("x" * 60)
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the simulation"
    context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_an_agents_words_without_spaces_wrap_and_are_read_whole(
    live_server, demo_world, browser, width
):
    """An agent's rationale of 10,000 letters with no space in it, and a creative's headline
    of 150, ran past the page's edge: the rest of the rationale, and the end of each line of
    the creative's body beside the headline, were cut off, unread by the person approving,
    on its page and on the bulk confirmation."""
    [proposal] = waiting(
        creative_batch(creative(headline="H" * 150, body="Find it fast. " * 100))
        | {"rationale": "R" * 10_000}
    )
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["operator"])

    def read_whole(what: str, selector: str) -> None:
        assert page.evaluate("document.documentElement.scrollWidth") <= width, what
        for each in page.locator(selector).all():
            box = each.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, (what, box)
            assert each.evaluate("e => e.scrollWidth <= e.clientWidth"), what

    page.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")
    read_whole("a proposal's page", "#rationale, div.readonly, td.creative")

    page.goto(f"{live_server.url}/admin/approvals/proposal/")
    page.check(f"input[name=_selected_action][value='{proposal.pk}']")
    page.select_option("select[name=action]", "approve_selected")
    page.click("button[name=index]")
    expect(page.locator("input[type=submit][value^='Yes']")).to_be_visible()
    read_whole("the bulk confirmation", "td.bulk-said")
    context.close()


def test_the_policies_feedback_and_callback_lists_show_every_column_at_a_laptops_width(
    live_server, demo_world, browser
):
    """At 1280 px, beside the filters, the policies list hid its cumulative ceiling and
    "always review" behind a sideways scroll (three columns said what auto-executes, the
    widest headed "auto-execute amount ceiling"); the feedback and the callback events kept
    each proposal's summary on one line (490 px for a bid) and hid when each was made."""
    Agent.objects.filter(name="optimizer").update(callback_url="http://127.0.0.1:9/refuses")
    operator = get_user_model().objects.get(username="operator")
    [move] = waiting(reallocation("280.00"))
    proposal_reject(proposal_id=move.pk, reviewer=operator, reason_code="too_aggressive")
    wait_until(lambda: CallbackEvent.objects.exists())
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["operator"])

    for path in ("policies/policy", "feedback/feedback", "feedback/callbackevent"):
        page.goto(f"{live_server.url}/admin/{path}/")
        expect(page.locator("#result_list tbody tr").first).to_be_visible()
        results = page.locator("#changelist-form .results")
        assert results.evaluate("e => e.scrollWidth <= e.clientWidth"), path  # no scrolling
        for heading in page.locator("#result_list thead th").all():
            expect(heading).to_be_in_viewport(ratio=1)
    expect(page.locator("#result_list td.field-created_at").first).to_be_in_viewport(ratio=1)

    page.goto(f"{live_server.url}/admin/policies/policy/")
    bids = page.locator("#result_list tbody tr", has_text="Bid adjustments")
    expect(bids.locator("td.field-auto_executes")).to_have_text("up to 15%")
    expect(bids.locator("td.field-cumulative_ceiling_over_window")).to_have_text("25% per 1 day")
    creatives = page.locator("#result_list tbody tr", has_text="Creative batches")
    expect(creatives.locator("td.field-auto_executes")).to_have_text("never: always review")
    context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_supporting_data_at_its_cap_is_folded_in_a_box_and_the_record_below_stays_near(
    live_server, demo_world, browser, width
):
    """Supporting data at its 64 KiB cap, laid out in the page, was 150,000 px of JSON: the
    proposal's record under it (what the platform derived, its timeline, its decisions,
    executions) was pages of scrolling away. Folded, its size said, and opened by keyboard in a
    box of its own that scrolls by keyboard too."""
    series = {
        f"metric_{i:03d}": [round(0.001 * (i + j % 17), 4) for j in range(60)] for i in range(175)
    }
    [proposal] = waiting(reallocation("280.00") | {"supporting_data": series})
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["operator"])
    page.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")

    data = page.locator("#supporting-data")
    expect(data).not_to_have_attribute("open", "")
    expect(data.locator("summary")).to_have_text(re.compile(r"^As optimizer sent it: 6\d\.\d KiB"))
    expect(page.locator("#charts-not-drawn")).to_contain_text("the first 6 of the 175 series")
    assert page.locator("#approve-form").bounding_box()["y"] < data.bounding_box()["y"]
    assert page.evaluate("document.documentElement.scrollHeight") < 9000

    data.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(data).to_have_attribute("open", "")
    box = data.locator("pre")
    assert box.bounding_box()["height"] < 600
    assert page.evaluate("document.documentElement.scrollHeight") < 9500
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.keyboard.press("Tab")
    expect(box).to_be_focused()
    page.keyboard.press("End")
    wait_until(lambda: box.evaluate("e => e.scrollTop") > 0)
    expect(box).to_have_attribute("aria-label", "Supporting data as optimizer sent it")
    context.close()


def test_long_unbroken_names_wrap_in_the_policies_list_and_the_queue_at_a_laptops_width(
    live_server, demo_world, browser
):
    """A policy named with 200 letters and no space pushed the policies list's other columns
    (its action type, scope, priority, state) off the screen at 1280 px; an agent's or a
    campaign's long id did the same to the queue's magnitude, approvals, risk and age."""
    Policy.objects.create(name="R" * 200, action_type="budget_reallocation", priority=5)
    long_campaign = "c" * 100
    Campaign.objects.create(
        account=Account.objects.get(external_id="demo"),
        external_id=long_campaign,
        name="A campaign with a long id",
        daily_budget=Decimal("1000.00"),
        bid=Decimal("2.00"),
    )
    waiting(reallocation("280.00"), bid_adjustment("2.50", campaign=long_campaign))
    Agent.objects.filter(name="optimizer").update(name="o" * 100)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, live_server.url, demo_world["users"]["policy-owner"])

    def in_view(columns: list[str]) -> None:
        for column in columns:
            for cell in page.locator(f"#result_list tbody td.field-{column}").all():
                box = cell.bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= 1280, (column, box)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280

    page.goto(f"{live_server.url}/admin/policies/policy/?o=-4")
    expect(page.locator("#result_list tbody tr").first).to_contain_text("R" * 200)
    in_view(["action_type_display", "scope", "priority", "state", "auto_executes"])
    page.goto(f"{live_server.url}/admin/approvals/proposal/")
    expect(page.locator("#result_list tbody")).to_contain_text(long_campaign)
    in_view(["agent", "account", "magnitude_display", "approvals_display", "risk", "age"])
    context.close()
