"""What the operator reads by email and on Slack once a colleague edited a proposal (what its
agent proposed, and as edited by whom, as the proposal's page says both); that an updated Slack
message still says why its reader gets it; and that Slack is not sent an update that says what
its message says already (the decision's, read after it ran, then the execution's)."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from approvals.models import Proposal
from approvals.services.decisions import proposal_approve
from notifications.deadlines import deadlines_sweep
from notifications.models import DecisionDeadline, Notification, ReachedBy
from notifications.services import notifications_deliver
from policies.models import Policy
from tests.conftest import wait_until
from tests.slack_fake import shown_text
from tests.test_notifications_slack import (
    OPERATOR,
    approve_value,
    post,
    pressing,
    updates_of,
    waiting_on_slack,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

PROPOSED = "move 280.00 USD/day from brand-search to generic-search (28.0%)"
EDITED = "move 200.00 USD/day from brand-search to generic-search (20.0%)"
TOLD = "You are told by the route “Demo: everything waiting, to the operators”."


def last_context(blocks: list) -> str:
    [told] = [b for b in blocks if b["type"] == "context"][-1:]
    return " ".join(e["text"] for e in told["elements"])


def edited_by_a_colleague(optimizer, slack, operators) -> tuple[dict, dict]:
    """Under the two-person rule the operator, told by email and on Slack, is sent the walk's
    reallocation (280.00 a day); second-operator edits it to 200.00 and approves it (1 of 2)."""
    Policy.objects.filter(action_type="budget_reallocation").update(
        required_approvals=2, decide_within=timedelta(hours=4)
    )
    first, second = operators
    ReachedBy.objects.filter(user=first).update(email=True, slack=True)
    proposal, where = waiting_on_slack(optimizer, slack)
    edited = {**proposal["payload"], "amount": "200.00"}
    proposal_approve(proposal_id=proposal["id"], reviewer=second, edited_payload=edited)
    return proposal, where


def reminded_leading_with(pid: int, as_now: str, mailbox, slack) -> tuple[str, dict]:
    """The operator's reminder at half time, by email (plain and HTML) and on Slack, each
    leading with what the agent proposed, then ``as_now`` ("As edited by …: move …"): its
    email's subject and its Slack message."""
    DecisionDeadline.objects.filter(proposal_id=pid).update(
        remind_at=timezone.now() - timedelta(seconds=1)
    )
    deadlines_sweep()
    [reminder] = wait_until(
        lambda: [m for m in mailbox.to("operator@example.com") if "Reminder" in m["Subject"]]
    )
    plain = reminder.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = reminder.get_body(("html",)).get_content()
    assert f"#{pid} {PROPOSED}\n{as_now}\n" in plain
    assert f"#{pid} {PROPOSED}</h2>" in html
    how, said = as_now.split(": ", 1)
    assert f"<strong>{how}:</strong> {said}" in html
    [posted] = wait_until(
        lambda: [
            c
            for c in slack.sent("chat.postMessage", channel=OPERATOR)
            if c["text"].startswith("Reminder")
        ]
    )
    assert shown_text(posted["blocks"][:1]).splitlines()[1:] == [f"#{pid} {PROPOSED}", as_now]
    return reminder["Subject"], posted


def test_after_a_colleagues_edit_the_messages_say_what_the_agent_proposed_and_who_edited_it(
    optimizer, on_slack, operators, mailbox
):
    """The operator's Slack message, updated, and the reminder by email and on Slack led with
    "move 200.00 …" and "Edited before approval to: …", and never said the agent proposed
    280.00, while the proposal's page says both: the second approver decided on an edit
    without knowing what it changed."""
    proposal, where = edited_by_a_colleague(optimizer, on_slack, operators)
    pid = proposal["id"]

    [update] = wait_until(lambda: updates_of(on_slack, where))
    head = shown_text(update["blocks"][:1])
    assert head.splitlines()[1:] == [
        f"#{pid} {PROPOSED}",
        f"As edited by second-operator: {EDITED}",
    ]
    assert update["text"].startswith(f"#{pid} {PROPOSED}; as edited by second-operator: {EDITED}")

    # The reminder at half time, by email and on Slack.
    subject, posted = reminded_leading_with(
        pid, f"As edited by second-operator: {EDITED}", mailbox, on_slack
    )
    assert subject.endswith(f"#{pid} {PROPOSED} (since edited by second-operator)")
    assert f"{PROPOSED}; as edited by second-operator: {EDITED}" in posted["text"]

    # What its agent receives is as it was: the edit's reason, as recorded.
    reasons = optimizer.get(f"/api/v1/proposals/{pid}/").json()["verdict"]["reasons"]
    assert f"Edited before approval to: {EDITED}." in reasons


def test_an_updated_slack_message_still_says_why_its_reader_is_told(optimizer, on_slack, operators):
    """The message posted ended "You are told by the route …"; each update of it (an
    approval that waits for another, then the decision) dropped that line, while an updated
    digest keeps it."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    _, second = operators
    proposal, where = waiting_on_slack(optimizer, on_slack)
    assert last_context(where["call"]["blocks"]).startswith(TOLD)

    proposal_approve(proposal_id=proposal["id"], reviewer=second)
    [partial] = wait_until(lambda: updates_of(on_slack, where))
    assert last_context(partial["blocks"]).startswith(TOLD)

    post(*pressing(OPERATOR, "approve", approve_value(partial["blocks"]), where))
    final = wait_until(
        lambda: [u for u in updates_of(on_slack, where) if "executed at" in str(u["blocks"])]
    )
    assert last_context(final[-1]["blocks"]).startswith(TOLD)
    assert "your channels>." in last_context(final[-1]["blocks"])


def test_an_update_that_would_say_what_its_message_says_already_is_not_sent(
    optimizer, on_slack, login
):
    """Approved on Slack, the decision's update of the message could not go at once (Slack
    rate limited it) and was read after the proposal ran: it said "…; executed at …", and the
    execution's update then sent Slack the very same message again. The second is not sent,
    and its record says why, and what the message says."""
    proposal, where = waiting_on_slack(optimizer, on_slack)
    on_slack.rate_limited["chat.update"] = 2
    post(*pressing(OPERATOR, "approve", approve_value(where["call"]["blocks"]), where))
    executed = wait_until(
        lambda: Proposal.objects.filter(pk=proposal["id"], status="executed").first()
    )
    updates = Notification.objects.filter(proposal_id=proposal["id"], kind="update")
    wait_until(lambda: len(found := list(updates.all())) == 2 and all(u.log for u in found))
    on_slack.rate_limited.clear()

    for update in list(updates.order_by("pk")):  # as the sweep would, one after the other

        def ended(pk=update.pk) -> bool:
            notifications_deliver(notification_ids=[pk])
            return Notification.objects.get(pk=pk).status != "pending"

        wait_until(ended, timeout=20)

    sent = updates_of(on_slack, where)
    assert len(sent) == 1, [u["text"] for u in sent]
    said = shown_text(sent[0]["blocks"])
    ran = f"{timezone.localtime(executed.executed_at):%Y-%m-%d %H:%M:%S %Z}"
    assert f"executed at {ran}." in said
    [landed] = updates.filter(status="sent")
    [skipped] = updates.filter(status="not_sent")
    assert skipped.sent_at is None
    assert skipped.log[-1]["result"].startswith(
        "not sent: its message says this already, as updated at "
    )
    assert f"for {landed.about}: “operator approved it at " in skipped.log[-1]["result"]
    assert skipped.log[-1]["result"].endswith(f"; executed at {ran}.”")
    # The proposal's page lists both, as they went.
    page = login("auditor").get(f"/admin/approvals/proposal/{proposal['id']}/change/").text
    table = page.split('id="proposal-told"')[1].split("</table>")[0]
    rows = [re.sub(r"<[^>]+>", " ", row) for row in table.split("<tr>")[2:]]
    [row] = [r for r in rows if skipped.about in r]
    assert "Not sent" in row and "its message says this already" in row
    history = skipped.history.order_by("history_id").last()
    assert history.history_change_reason.startswith(
        "Not sent to operator on Slack: its message says this already"
    )


def test_edited_then_re_assessed_it_reads_the_same_on_its_page_by_email_and_on_slack(
    optimizer, on_slack, operators, mailbox, login
):
    """A colleague edits the reallocation to 200.00 a day; a raise of brand-search's budget
    (1000.00 to 1050.00) then lands, and the waiting proposal is re-assessed (19.0%). Its page,
    the operator's Slack message, updated, and the reminder by email and on Slack each lead
    with what the agent proposed, then say the action as it now reads, edited (by whom) and
    re-assessed, in the same words."""
    proposal, where = edited_by_a_colleague(optimizer, on_slack, operators)
    pid = proposal["id"]
    wait_until(lambda: updates_of(on_slack, where))
    raise_ = optimizer.post(
        "/api/v1/proposals/",
        {
            **{key: proposal[key] for key in ("account", "confidence", "rationale")},
            "action_type": "budget_change",
            "payload": {"campaign": "brand-search", "new_daily_budget": "1050.00"},
        },
        format="json",
    ).json()
    assert raise_["status"] == "approved", raise_
    now = "move 200.00 USD/day from brand-search to generic-search (19.0%)"
    wait_until(lambda: Proposal.objects.get(pk=pid).summary == now)
    how = "As edited by second-operator and re-assessed"

    # Its page: headed by what was proposed, then the action now, and who edited it.
    page = login("auditor").get(f"/admin/approvals/proposal/{pid}/change/")
    text = page.content.decode()
    assert f"<h2>#{pid} · {PROPOSED}</h2>" in text
    assert f'<p id="summary-now"><strong>As edited and re-assessed:</strong> {now}</p>' in text
    assert "As edited and re-assessed" in page.context["states"].columns
    [(edit, _)] = page.context["edit_changes"]
    assert edit.reviewer.username == "second-operator"

    # Slack, updated as it was re-assessed.
    update = wait_until(
        lambda: [u for u in updates_of(on_slack, where) if now in shown_text(u["blocks"][:1])]
    )[-1]
    assert shown_text(update["blocks"][:1]).splitlines()[1:] == [
        f"#{pid} {PROPOSED}",
        f"{how}: {now}",
    ]

    # The reminder at half time, by email and on Slack.
    subject, _ = reminded_leading_with(pid, f"{how}: {now}", mailbox, on_slack)
    assert subject.endswith(f"#{pid} {PROPOSED} (since edited by second-operator and re-assessed)")
