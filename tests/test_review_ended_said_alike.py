"""How a proposal's review ended reads the same wherever a person reads it: its page (beside
its status, or in the refusal of an act on it), its Slack message and a press's answer. The
page said "operator rejected it (too aggressive) at 04:50:12 UTC" while Slack said "Rejected
by operator (too aggressive) at 04:50 UTC", and a withdrawal's time came from whenever the
row last changed."""

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from approvals.models import Decision, Proposal
from approvals.services.decisions import proposal_approve, proposal_reject
from tests.conftest import decided_from_page, wait_until
from tests.test_notifications_slack import (
    OPERATOR,
    context_texts,
    post,
    pressing,
    told,
    updates_of,
    waiting_on_slack,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def seconds(at) -> str:
    return f"{timezone.localtime(at):%Y-%m-%d %H:%M:%S %Z}"


def status_line(page) -> str:
    line = page.content.decode().split("<strong>Status:</strong>")[1].split("</p>")[0]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", line))).strip()


def refusal_of_approving(login, proposal_id: int) -> str:
    """What the console says to an operator approving it now, as its reader reads it."""
    answer = decided_from_page(login("operator"), "approve", proposal_id, follow=True)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", answer.content.decode())))


def test_a_rejection_reads_the_same_on_its_page_on_slack_and_in_a_press_s_answer(
    optimizer, on_slack, login
):
    proposal, where = waiting_on_slack(optimizer, on_slack)
    operator = get_user_model().objects.get(username="operator")

    proposal_reject(proposal_id=proposal["id"], reviewer=operator, reason_code="too_aggressive")

    decided = Decision.objects.get(proposal_id=proposal["id"]).created_at
    said = f"operator rejected it (too aggressive) at {seconds(decided)}."
    page = login("auditor").get(reverse("admin:approvals_proposal_change", args=[proposal["id"]]))
    assert status_line(page) == f"Rejected · {said}"
    [update] = wait_until(lambda: updates_of(on_slack, where))
    assert context_texts(update["blocks"]) == said
    post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))
    assert told(on_slack, OPERATOR).endswith(f" {said}")
    assert f"it cannot become approved. {said}" in refusal_of_approving(login, proposal["id"])


def test_an_agents_withdrawal_reads_the_same_in_the_console_and_on_slack(
    optimizer, on_slack, login
):
    proposal, where = waiting_on_slack(optimizer, on_slack)

    answer = optimizer.post(
        f"/api/v1/proposals/{proposal['id']}/withdraw/", {"note": "Budget frozen"}, format="json"
    )
    assert answer.status_code == 200, answer.content

    recorded = Proposal.history.filter(id=proposal["id"], status="withdrawn").get()
    said = f"Its agent withdrew it at {seconds(recorded.history_date)}"
    assert f"{said}." in refusal_of_approving(login, proposal["id"])
    [update] = wait_until(lambda: updates_of(on_slack, where))
    assert context_texts(update["blocks"]) == f"{said}: “Budget frozen”"


def test_an_approval_reads_the_same_in_the_console_and_on_slack(optimizer, on_slack, login):
    proposal, where = waiting_on_slack(optimizer, on_slack)
    operator = get_user_model().objects.get(username="operator")

    proposal_approve(proposal_id=proposal["id"], reviewer=operator)

    executed = wait_until(
        lambda: Proposal.objects.filter(pk=proposal["id"], status="executed").first()
    )
    approved = Decision.objects.get(proposal_id=proposal["id"]).created_at
    said = f"operator approved it at {seconds(approved)}"
    assert f"{said}." in refusal_of_approving(login, proposal["id"])
    wait_until(lambda: "executed at" in context_texts(on_slack.messages[where_of(where)]["blocks"]))
    assert context_texts(on_slack.messages[where_of(where)]["blocks"]) == (
        f"{said}; executed at {seconds(executed.executed_at)}."
    )


def where_of(where: dict) -> tuple[str, str]:
    return (where["channel"], where["ts"])
