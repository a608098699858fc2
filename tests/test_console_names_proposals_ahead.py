"""A proposal held at its routing because one approved ahead of it runs first is told so in
its agent's words, which name no other agent's proposal (an agent reads only its own) and an
earlier item of its batch by its index as sent; the console (its page, the what-if) and the
messages to the people who decide, who read every proposal, name each of them by id."""

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from approvals.models import Agent, Proposal, ProposalStatus
from executors.runner import proposal_execute
from ledger.models import Campaign
from notifications.messages import proposal_messages
from notifications.models import NotificationKind
from tests.conftest import bid_adjustment
from tests.factories import evaluated
from tests.test_reallocation_no_longer_fits import retarget_move
from tests.test_reallocation_under_way_at_submission import (
    approved_move,
    left_after,
    reallocations_run_alone_up_to,
    waits_for_a_person,
)

URL = "/api/v1/proposals/"
BATCH_URL = "/api/v1/proposals/batch/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def why_it_is_here(client, pk: int) -> list[str]:
    page = client.get(reverse("admin:approvals_proposal_change", args=[pk])).text
    [listed] = re.findall(r'<ul id="verdict-reasons">(.*?)</ul>', page, flags=re.S)
    return [html.unescape(reason) for reason in re.findall(r"<li>(.*?)</li>", listed, re.S)]


def test_a_move_left_short_by_another_agent_s_move_names_it_in_the_console_not_to_the_agent(
    operator, agent_client, login
):
    """#1, the optimizer's 200.00 out of display-retarget (300.00), approved, not yet run; the
    copywriter's 150.00 out of it waits for a person. Its agent is told "another agent's
    proposal"; the operator's page, the what-if and the operators' message name #1."""
    reallocations_run_alone_up_to("0.60", agent="copywriter")
    first = approved_move(operator)
    copywriter = agent_client("copywriter")

    answer = copywriter.post(URL, retarget_move("150.00"), format="json").json()

    told = waits_for_a_person(left_after(first.pk, named="another agent's proposal"))
    assert answer["status"] == "pending_review"
    assert told in answer["verdict"]["reasons"]
    read_back = copywriter.get(f"{URL}{answer['id']}/").json()
    assert read_back["verdict"] == answer["verdict"]
    assert f"#{first.pk}" not in str(read_back)

    named = waits_for_a_person(left_after(first.pk))
    assert named in why_it_is_here(login("operator"), answer["id"])
    assert told not in why_it_is_here(login("operator"), answer["id"])
    waiting = Proposal.objects.get(pk=answer["id"])
    [message] = proposal_messages([(waiting, NotificationKind.WAITING)], now=timezone.now())
    assert named in message.reasons and told not in message.reasons

    today = timezone.localdate()
    page = login("policy-owner").get(
        reverse("admin:policies_policy_simulate"),
        {"since": str(today), "until": str(today + timezone.timedelta(days=1))},
    )
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())
    assert f"once #{first.pk}, approved before it, has run." in text
    assert "another agent's proposal" not in text


def test_a_batch_s_earlier_items_are_named_by_id_in_the_console_by_index_to_its_agent(
    optimizer, login
):
    """Two moves of 150.00 and one of 100.00 out of display-retarget (300.00) in one batch:
    the third waits. Its agent reads "item 1 of this batch (index 0)"; a person, the ids."""
    reallocations_run_alone_up_to("0.60")

    results = optimizer.post(
        BATCH_URL,
        [retarget_move("150.00"), retarget_move("150.00"), retarget_move("100.00")],
        format="json",
    ).json()

    first, second, third = (result["proposal"] for result in results)
    assert (first["status"], second["status"], third["status"]) == (
        "approved",
        "approved",
        "pending_review",
    )
    told = waits_for_a_person(
        "amount: Exceeds display-retarget's daily budget of 0.00 once item 1 of this batch "
        "(index 0) and item 2 of this batch (index 1), approved before it, have run."
    )
    assert told in third["verdict"]["reasons"]
    assert told in optimizer.get(f"{URL}{third['id']}/").json()["verdict"]["reasons"]
    assert first["id"] < second["id"] < third["id"]
    assert why_it_is_here(login("operator"), third["id"]) == [
        waits_for_a_person(
            "amount: Exceeds display-retarget's daily budget of 0.00 once "
            f"#{first['id']} and #{second['id']}, approved before it, have run."
        )
    ]
    # Numbered before they were written, they are written under those ids, and the next
    # proposal takes the one after them.
    assert Proposal.objects.filter(pk__in=[first["id"], second["id"], third["id"]]).count() == 3
    later = optimizer.post(URL, bid_adjustment("2.10"), format="json").json()
    assert later["id"] == third["id"] + 1


def test_a_value_another_agent_s_proposal_changes_first_is_named_and_its_failure_said(login):
    """The optimizer's raise of generic-search's budget to 525.00, approved and about to
    execute; the copywriter's budget to 700.00 waits for a person. Its agent is told "another
    agent's proposal"; the operator reads #N, and once #N failed, that it failed since and
    does not supersede this one (as of the agent's own proposal)."""
    raise_ = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "525.00"}}
    )
    assert raise_.status == "approved"
    waiting = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "700.00"}},
        agent="copywriter",
    )
    assert waiting.status == ProposalStatus.PENDING_REVIEW
    assert waiting.agent == Agent.objects.get(name="copywriter")
    told = (
        "Another agent's proposal, approved and about to execute, changes generic-search's "
        "daily budget first: this one waits for a person, and is superseded once that one "
        "executes."
    )
    assert told in waiting.verdict_reasons
    assert f"#{raise_.pk}" not in str(waiting.verdict_reasons)

    named = told.replace("Another agent's proposal", f"#{raise_.pk}")
    assert named in why_it_is_here(login("operator"), waiting.pk)

    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="510.00")
    assert proposal_execute(proposal_id=raise_.pk).status == "failed"
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)

    reasons = why_it_is_here(login("operator"), waiting.pk)
    assert (
        f"#{raise_.pk} was approved and about to execute when this one was routed, changing "
        "generic-search's daily budget first; it has failed since, and supersedes this one "
        "only if a person sends it to run again."
    ) in reasons
    assert named not in reasons


def test_a_batch_s_earlier_item_changing_a_value_first_is_named_by_id_in_the_console(
    optimizer, login
):
    """Two budget changes of generic-search (500.00) in one batch, each within 10%: the first
    is approved, the second waits, since the first changes the budget first. Its agent reads
    "Item 1 of this batch (index 0)"; a person, the first one's id."""
    budget = bid_adjustment(action_type="budget_change")
    results = optimizer.post(
        BATCH_URL,
        [
            budget | {"payload": {"campaign": "generic-search", "new_daily_budget": "525.00"}},
            budget | {"payload": {"campaign": "generic-search", "new_daily_budget": "540.00"}},
        ],
        format="json",
    ).json()

    first, second = (result["proposal"] for result in results)
    assert (first["status"], second["status"]) == ("approved", "pending_review")
    told = (
        "Item 1 of this batch (index 0), approved, changes generic-search's daily budget first: "
        "this one waits for a person, and is superseded once that one executes."
    )
    assert told in optimizer.get(f"{URL}{second['id']}/").json()["verdict"]["reasons"]
    reasons = why_it_is_here(login("operator"), second["id"])
    assert (
        f"#{first['id']}, approved and about to execute, changes generic-search's daily budget "
        "first: this one waits for a person, and is superseded once that one executes."
    ) in reasons
    assert told not in reasons
