"""The spec's worked example, end to end over HTTP with a real Celery worker process.

An optimization agent proposes moving 28% of brand-search's budget to generic-search; the
policy auto-executes reallocations only up to 10%, so it waits for an operator, who approves it
in the admin, and the worker executes it. A 6% bid adjustment executes with nobody involved.
"""

import re
from decimal import Decimal

import pytest
import requests

from approvals.models import Proposal
from ledger.models import Campaign
from tests.conftest import bid_adjustment, reallocation, wait_until

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("celery_worker")]


def agent_session(key: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    return session


def proposal_state(session: requests.Session, base: str, proposal_id: int, status: str):
    body = session.get(f"{base}/api/v1/proposals/{proposal_id}/", timeout=10).json()
    return body if body["status"] == status else None


def admin_login(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/admin/login/", timeout=10)
    response = session.post(
        f"{base}/admin/login/?next=/admin/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{base}/admin/login/"},
        timeout=10,
    )
    assert response.url.endswith("/admin/"), "the operator could not log in"
    return session


def test_budget_reallocation_above_threshold_waits_for_operator_then_executes(
    live_server, demo_world
):
    base = live_server.url
    agent = agent_session(demo_world["agents"]["optimizer"])

    response = agent.post(f"{base}/api/v1/proposals/", json=reallocation("280.00"), timeout=10)
    assert response.status_code == 201, response.text
    proposal_id = response.json()["id"]
    assert response.json()["magnitude"] == "0.280000"

    waiting = wait_until(lambda: proposal_state(agent, base, proposal_id, "pending_review"))
    assert waiting["verdict"]["outcome"] == "review"
    assert waiting["verdict"]["policy"]["name"] == "Budget reallocations"
    assert (
        "28.0% of brand-search's daily budget exceeds the 10.0%" in waiting["verdict"]["reasons"][0]
    )
    assert Campaign.objects.get(external_id="brand-search").daily_budget == Decimal("1000.00")

    operator = admin_login(base, **demo_world["users"]["operator"])
    page = operator.get(f"{base}/admin/approvals/proposal/", timeout=10)
    assert "move 280.00 USD/day from brand-search to generic-search" in page.text
    detail_url = f"{base}/admin/approvals/proposal/{proposal_id}/change/"
    detail = operator.get(detail_url, timeout=10)
    assert "exceeds the 10.0% auto-execute ceiling" in detail.text
    approved = operator.post(
        f"{base}/admin/approvals/proposal/{proposal_id}/approve/",
        data={
            "note": "Agreed, generic is converting.",
            "seen": re.search(r'name="seen" value="([0-9a-f]+)"', detail.text).group(1),
            "csrfmiddlewaretoken": operator.cookies["csrftoken"],
        },
        headers={"Referer": detail_url},
        timeout=10,
    )
    assert approved.status_code == 200 and approved.url == detail_url

    executed = wait_until(lambda: proposal_state(agent, base, proposal_id, "executed"))
    assert executed["decisions"][0]["outcome"] == "approve"
    assert executed["execution"]["before_state"] == {
        "brand-search": {"daily_budget": "1000.00"},
        "generic-search": {"daily_budget": "500.00"},
    }
    assert executed["execution"]["after_state"] == {
        "brand-search": {"daily_budget": "720.00"},
        "generic-search": {"daily_budget": "780.00"},
    }
    assert Campaign.objects.get(external_id="brand-search").daily_budget == Decimal("720.00")
    assert Campaign.objects.get(external_id="generic-search").daily_budget == Decimal("780.00")

    # The auditor's view: every step on the record, with who took it.
    steps = [
        (record.status, record.history_actor_kind, record.history_actor)
        for record in Proposal.history.filter(id=proposal_id).order_by("history_date")
    ]
    assert steps == [
        ("submitted", "agent", "optimizer"),
        ("pending_review", "system", "policy-engine"),
        ("approved", "user", "operator"),
        ("executing", "system", "executor"),
        ("executed", "system", "executor"),
    ]
    approval = Proposal.history.get(id=proposal_id, status="approved")
    assert approval.history_user.username == "operator"
    budget_change = Campaign.history.filter(external_id="brand-search").latest("history_date")
    assert (budget_change.daily_budget, budget_change.history_actor) == (
        Decimal("720.00"),
        "executor",
    )


def test_small_bid_adjustment_executes_without_anyone_looking(live_server, demo_world):
    base = live_server.url
    agent = agent_session(demo_world["agents"]["optimizer"])

    response = agent.post(f"{base}/api/v1/proposals/", json=bid_adjustment("2.12"), timeout=10)
    assert response.status_code == 201, response.text

    executed = wait_until(lambda: proposal_state(agent, base, response.json()["id"], "executed"))
    assert executed["verdict"]["outcome"] == "auto_approve"
    assert executed["decisions"] == []
    assert (
        "6.0% change to brand-search's bid is within the 15.0%" in executed["verdict"]["reasons"][0]
    )
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.12")
