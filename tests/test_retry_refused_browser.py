"""A failed proposal's page, in a real browser, in each case that changes what a retry does
since it failed: a guardrail set since, its agent stopped, a kill switch engaged, a campaign
it sets gone. Retry is offered only where a retry goes through, and the page says beside it
(or in its place) what a retry would do, in the words the messages telling the failure say."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from playwright.sync_api import expect

from approvals.models import Agent
from ledger.models import Campaign
from policies.models import KillSwitch
from tests.test_browser import browser, log_in, page  # noqa: F401 (fixtures)
from tests.test_retry_refused_said import CAPPED, FAILS_AGAIN, STOPPED, failed_after_a_server_error

pytestmark = [
    pytest.mark.worker,
    pytest.mark.usefixtures("celery_worker"),
    pytest.mark.django_db(transaction=True),
]

SAID = {
    "guardrail": (
        "#retry-refused-by-guardrail",
        f"A guardrail refuses it now: {CAPPED} {FAILS_AGAIN}",
    ),
    "agent": ("#agent-stopped", "Proposal #{id} " + STOPPED),
    "kill switch": (
        "#retry-past-kill-switch",
        "The kill switch on everything is engaged: Incident 42. Retrying runs it anyway: a "
        "person's retry is their approval, which lets it past the switch.",
    ),
    "campaign gone": (
        "#retry-ends-it",
        "It was made against a value that has changed since (generic-search's daily budget is "
        "—, was 500.00): retried, it is superseded there and then, and nothing is sent to run; "
        "optimizer is told the value it saw and the value now.",
    ),
}


@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("case", list(SAID))
def test_a_failed_proposal_s_page_says_what_a_retry_would_do_now(
    live_server,
    demo_world,
    page,  # noqa: F811 (a fixture)
    channel,
    monkeypatch,
    case,
    width,
):
    def failed():
        # Its requests sent outside the browser's event loop, as a worker sends them.
        try:
            return failed_after_a_server_error(channel, monkeypatch)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as thread:
        proposal = thread.submit(failed).result()
    if case == "guardrail":
        Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="510.00")
    elif case == "agent":
        Agent.objects.filter(name="optimizer").update(is_active=False)
    elif case == "kill switch":
        KillSwitch.objects.create(scope="global", reason="Incident 42.")
    else:
        Campaign.objects.filter(external_id="generic-search").delete()
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, live_server.url, demo_world["users"]["operator"])

    page.goto(f"{live_server.url}/admin/approvals/proposal/{proposal.pk}/change/")

    where, said = SAID[case]
    expect(page.locator(where)).to_have_text(said.format(id=proposal.pk))
    expect(page.locator(where)).to_be_visible()
    retry = page.locator("#retry-form input[type=submit]")
    if case in ("guardrail", "agent"):
        expect(retry).to_have_count(0)
        expect(page.locator("#proposal-review")).not_to_contain_text("rejected or withdrawn")
        return
    expect(retry).to_be_visible()
    retry.click()
    if case == "kill switch":
        expect(page.locator(".messagelist")).to_contain_text(
            f"Proposal #{proposal.pk} is sent to run again."
        )
    else:
        expect(page.locator(".messagelist")).to_contain_text(
            f"Proposal #{proposal.pk} was not sent to run again. Superseded: "
        )
