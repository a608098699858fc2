"""An agent's answers name the policy version that decided by the number the console counts
(``verdict.policy.number``: 1 as first saved, then 2, 3, …), next to its history record
(``verdict.policy.version``, kept as it was): the developer who reads "version 3" finds
version 3 on the proposal's page and in the policy's history. It is the number of the
version that decided, not of the policy as it is today, and the batch and the feed read it
with no statement per item."""

import html
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ledger.models import Account, Campaign
from policies.models import Policy
from tests.conftest import bid_adjustment

URL = "/api/v1/proposals/"
BATCH_URL = f"{URL}batch/"
DRY_RUN_URL = "/api/v1/policies/evaluate/"


def bid_policy() -> Policy:
    return Policy.objects.get(action_type="bid_adjustment", is_draft=False)


def bid_ceiling_set_to(ceiling: str) -> None:
    """A new version of the bid adjustments' policy, as its owner saves one."""
    policy = bid_policy()
    policy.auto_execute_max_magnitude = Decimal(ceiling)
    policy.save()


def console_text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


@pytest.mark.django_db
def test_the_verdict_names_the_deciding_version_by_the_number_the_console_shows(optimizer, login):
    bid_ceiling_set_to("0.14")  # version 2
    bid_ceiling_set_to("0.13")  # version 3
    answer = optimizer.post(URL, bid_adjustment("2.12"), format="json").json()  # 6%
    routed_by = answer["verdict"]["policy"]

    assert answer["status"] == "approved"
    assert routed_by["number"] == 3
    assert routed_by["version"] == bid_policy().history.latest().history_id  # as it was

    bid_ceiling_set_to("0.12")  # version 4, after it decided

    # The proposal read again, and in the feed, still names the version that decided it.
    assert optimizer.get(f"{URL}{answer['id']}/").json()["verdict"]["policy"] == routed_by
    (listed,) = [
        item for item in optimizer.get(URL).json()["results"] if item["id"] == answer["id"]
    ]
    assert listed["verdict"]["policy"] == routed_by
    # The console calls it by the same number.
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[answer["id"]]))
    assert "“Bid adjustments” in its version 3," in console_text(page)
    assert "(it has changed since, to version 4)" in console_text(page)
    history = login("operator").get(
        reverse("admin:policies_policy_history", args=[bid_policy().pk])
    )
    assert history.status_code == 200
    assert [row.version for row in history.context["page_obj"]] == [4, 3, 2, 1]

    # What is decided now is decided by version 4: a new proposal, one of a batch, a dry run.
    again = optimizer.post(URL, bid_adjustment("1.59", "generic-search"), format="json").json()
    batch = optimizer.post(
        BATCH_URL, [bid_adjustment("0.84", "display-retarget")], format="json"
    ).json()
    dry_run = optimizer.post(
        DRY_RUN_URL,
        {"account": "demo", "action_type": "bid_adjustment",
         "payload": {"campaign": "display-retarget", "new_bid": "0.85"}},
        format="json",
    ).json()  # fmt: skip
    assert again["verdict"]["policy"]["number"] == 4
    assert batch[0]["proposal"]["verdict"]["policy"]["number"] == 4
    assert dry_run["policy"]["number"] == 4
    assert dry_run["policy"]["version"] == bid_policy().history.latest().history_id


def statements(queries: CaptureQueriesContext) -> int:
    """The statements that read (a batch's inserts grow with it on SQLite, by design)."""
    writes = ("INSERT", "COPY", "SELECT nextval")
    return sum(1 for query in queries if not query["sql"].startswith(writes))


@pytest.mark.django_db
def test_a_batch_and_the_feed_read_each_version_s_number_with_no_statement_per_item(optimizer):
    account = Account.objects.get(external_id="demo")
    Campaign.objects.bulk_create(
        Campaign(account=account, external_id=f"c-{i}", name=f"c {i}", daily_budget=100, bid=1)
        for i in range(52)
    )
    bid_ceiling_set_to("0.14")  # version 2

    def batch(first: int, size: int) -> tuple[list[dict], int]:
        items = [bid_adjustment("1.02", f"c-{first + i}") for i in range(size)]
        with CaptureQueriesContext(connection) as queries:
            answer = optimizer.post(BATCH_URL, items, format="json")
        assert answer.status_code == 200, answer.content
        return [item["proposal"] for item in answer.json()], statements(queries)

    batch(0, 1)  # the process reads the rules in force once, then keeps them
    (one,), one_costs = batch(1, 1)
    fifty, fifty_cost = batch(2, 50)

    assert fifty_cost == one_costs
    assert {item["verdict"]["policy"]["number"] for item in [one, *fifty]} == {2}

    def feed(size: int) -> tuple[list[dict], int]:
        with CaptureQueriesContext(connection) as queries:
            page = optimizer.get(URL, {"page_size": size})
        return page.json()["results"], statements(queries)

    (newest,), one_cost = feed(1)
    listed, forty_cost = feed(40)
    assert forty_cost == one_cost
    assert newest == fifty[-1]
    assert {item["verdict"]["policy"]["number"] for item in listed} == {2}
