"""Operators are told on Slack and decide there: the reference reallocation reaches the operator
as a message with Approve / Reject / "I'll take it"; a signed press decides as the console user
with the Slack user's email, through the console's rules, and the message then says who
decided; a forged, stale or replayed press is refused and decides nothing; a person who may
not decide is told why, on Slack."""

import re
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.utils import timezone

from access.models import SecondFactorRequirement
from approvals.models import Agent, Decision, Execution, Proposal
from approvals.roles import AUDITORS, OPERATORS
from approvals.selectors import how_review_ended
from approvals.services.decisions import (
    payload_seen,
    proposal_approve,
    proposal_reject,
    proposal_retry,
)
from approvals.services.proposals import proposal_withdraw_for_agent
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from ledger.models import Account, Campaign
from notifications.models import Claim, DecisionDeadline, Notification, ReachedBy
from notifications.services import notifications_deliver, proposal_claim
from policies.models import Policy
from tests.conftest import bid_adjustment, free_port, reallocation, wait_until
from tests.slack_fake import markup, press, shown_text, signed_headers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

URL = "/integrations/slack/interactivity/"
OPERATOR = "U0OPERATOR"


def post(body: bytes, headers: dict[str, str]):
    headers = dict(headers)
    content_type = headers.pop("Content-Type", "application/x-www-form-urlencoded")
    return Client().post(URL, data=body, content_type=content_type, headers=headers)


def waiting_on_slack(optimizer, slack, **overrides) -> tuple[dict, dict]:
    """Submit the reference reallocation; return it and the message posted to the operator."""
    answer = optimizer.post("/api/v1/proposals/", reallocation(**overrides), format="json")
    assert answer.status_code == 201, answer.content
    proposal = answer.json()
    assert proposal["status"] == "pending_review"
    [message] = wait_until(lambda: slack.sent("chat.postMessage", channel=OPERATOR), timeout=15)
    channel, ts = wait_until(lambda: _posted_where(slack))
    return proposal, {"channel": channel, "ts": ts, "call": message}


def _posted_where(slack):
    return next(iter(slack.messages), None)


def pressing(slack_user: str, action: str, value: str, where: dict, **signing):
    return press(
        user_id=slack_user,
        action_id=action,
        value=value,
        channel=where["channel"],
        message_ts=where["ts"],
        **signing,
    )


def updates_of(slack, where: dict) -> list:
    return slack.sent("chat.update", channel=where["channel"], ts=where["ts"])


def seconds(at) -> str:
    """A time as the console and the messages say it: "2026-12-05 04:50:12 UTC"."""
    return f"{timezone.localtime(at):%Y-%m-%d %H:%M:%S %Z}"


def approved_at(proposal: Proposal):
    """When the last approval of its round was given, as its page says it."""
    return (
        Decision.objects.filter(proposal=proposal, outcome="approve")
        .latest("created_at")
        .created_at
    )


def withdrawn_at(proposal_id: int):
    """When its history recorded it withdrawn, as its page says it."""
    return (
        Proposal.history.filter(id=proposal_id, status="withdrawn")
        .order_by("history_id")
        .first()
        .history_date
    )


def said_in_context(blocks: list) -> list:
    """The message's context blocks but the last line every message ends with, why its reader
    is told and where they choose how (``told_line``)."""
    return [b for b in blocks if b["type"] == "context" and b not in told_line(blocks)]


def told_line(blocks: list) -> list:
    """The block that says why its reader is told ("You are told by the route …"), if any."""
    return [
        b
        for b in blocks
        if b["type"] == "context"
        and any(e["text"].startswith("How you are told is yours") for e in b["elements"])
    ]


def context_texts(blocks: list) -> str:
    return " ".join(e["text"] for b in said_in_context(blocks) for e in b["elements"])


def shown_as_typed(blocks: list) -> str:
    """The context's text, which Slack shows as typed: plain text, no emoji made of codes."""
    elements = [e for b in said_in_context(blocks) for e in b["elements"]]
    assert all(e["type"] == "plain_text" and e["emoji"] is False for e in elements), elements
    return " ".join(e["text"] for e in elements)


def headline(blocks: list) -> str:
    return shown_text(blocks[:1]).split("\n")[0]


def facts(blocks: list) -> str:
    """The message's facts (its second block), as shown: a line each."""
    return shown_text(blocks[1:2])


def why_it_waits(blocks: list) -> str:
    [why] = [
        b["text"]["text"]
        for b in blocks
        if b["type"] == "section" and b["text"]["text"].startswith("Why it wait")
    ]
    return why


def buttons(blocks: list) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def told(slack, slack_user: str) -> str:
    return " ".join(call["text"] for call in slack.sent("chat.postEphemeral", user=slack_user))


def test_the_reference_reallocation_reaches_the_operator_on_slack_with_buttons(optimizer, on_slack):
    proposal, where = waiting_on_slack(optimizer, on_slack)

    message = where["call"]
    assert proposal["summary"] in message["text"]
    assert buttons(message["blocks"]) == ["approve", "reject", "claim"]
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    approve, reject, claim = actions["elements"]
    # A decision carries the action as the message shows it; a claim, the proposal alone.
    seen = payload_seen(Proposal.objects.get(pk=proposal["id"]).payload)
    assert approve["value"] == f"{proposal['id']}:{seen}"
    assert claim["value"] == str(proposal["id"])
    assert f"{proposal['id']}:too_aggressive:{seen}" in [o["value"] for o in reject["options"]]
    # Only the operators are on the demo's route: nobody else hears of it.
    assert len(on_slack.sent("chat.postMessage")) == 1
    # Why its reader is told, and where that is theirs to change, as an email says.
    [told] = [b for b in message["blocks"] if b["type"] == "context"][-1:]
    assert told["elements"][0] == {
        "type": "plain_text",
        "text": "You are told by the route “Demo: everything waiting, to the operators”.",
        "emoji": False,
    }
    assert told["elements"][1]["text"].endswith("/admin/notifications/reachedby/|your channels>.")


def test_a_signed_approve_press_approves_as_the_operator_and_the_message_says_so(
    optimizer, on_slack
):
    proposal, where = waiting_on_slack(optimizer, on_slack)

    answer = post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))

    assert answer.status_code == 200
    [decision] = Decision.objects.filter(proposal_id=proposal["id"])
    assert decision.reviewer.username == "operator"
    assert decision.outcome == "approve"
    # Its record says it came by Slack, as a rejection's does: the auditor can tell.
    assert decision.note == "Approved on Slack."
    wait_until(lambda: Proposal.objects.get(pk=proposal["id"]).status == "executed")
    [update, *_] = wait_until(lambda: updates_of(on_slack, where))
    assert "operator approved it at" in context_texts(update["blocks"])
    assert headline(update["blocks"]) == "No longer waits"
    # Nor does any part of it say it still waits.
    assert why_it_waits(update["blocks"]).startswith("Why it waited\n")
    assert "Why it waits" not in str(update["blocks"])
    assert buttons(update["blocks"]) == []
    history = Proposal.history.filter(id=proposal["id"], status="approved").get()
    assert (history.history_actor_kind, history.history_actor) == ("user", "operator")
    assert not on_slack.sent("chat.postEphemeral")


def test_an_approval_on_slack_then_says_when_it_executed(optimizer, on_slack):
    proposal, where = waiting_on_slack(optimizer, on_slack)

    post(*pressing(OPERATOR, "approve", approve_value(where["call"]["blocks"]), where))

    executed = wait_until(
        lambda: Proposal.objects.filter(pk=proposal["id"], status="executed").first()
    )
    said = wait_until(
        lambda: "executed at" in _says_now(on_slack, where) and _says_now(on_slack, where)
    )
    decided, ran = seconds(approved_at(executed)), seconds(executed.executed_at)
    # As its page says it beside its status, to the second, and when it ran.
    assert said == f"operator approved it at {decided}; executed at {ran}."
    assert said.startswith(how_review_ended(executed).removesuffix("."))
    kinds = Notification.objects.filter(proposal_id=proposal["id"], kind="update")
    assert "its execution: executed" in kinds.values_list("about", flat=True)


def test_an_approval_with_edits_says_so_and_what_its_agent_proposed(optimizer, on_slack):
    """The operator was sent "move 280.00 USD/day … (28.0%)" and, in the console, edited it
    to 200.00 and approved it. The message then read "#… move 200.00 USD/day … (20.0%)",
    "Approved by operator at …; executed at …": as if the agent had proposed 200.00 and
    the operator approved it as it was."""
    operator = get_user_model().objects.get(username="operator")
    proposal, where = waiting_on_slack(optimizer, on_slack)

    proposal_approve(
        proposal_id=proposal["id"],
        reviewer=operator,
        edited_payload={**proposal["payload"], "amount": "200.00"},
    )

    executed = wait_until(
        lambda: Proposal.objects.filter(pk=proposal["id"], status="executed").first()
    )
    said = wait_until(
        lambda: "executed at" in _says_now(on_slack, where) and _says_now(on_slack, where)
    )
    decided, ran = seconds(approved_at(executed)), seconds(executed.executed_at)
    assert said == (
        f"operator (with edits) approved it at {decided}; its agent proposed “move 280.00 "
        f"USD/day from brand-search to generic-search (28.0%)”; executed at {ran}."
    )
    # Headed as its page heads it: as its agent proposed it, then as edited, and by whom.
    head = shown_text(on_slack.messages[(where["channel"], where["ts"])]["blocks"][:1])
    assert head.splitlines()[1:] == [
        f"#{proposal['id']} move 280.00 USD/day from brand-search to generic-search (28.0%)",
        "As edited by operator: move 200.00 USD/day from brand-search to generic-search (20.0%)",
    ]


def test_an_approval_on_slack_whose_execution_failed_says_so_with_the_endpoints_words(
    optimizer, on_slack, channel
):
    channel(400, says=b'{"error": "campaign generic-search is archived"}')
    proposal, where = waiting_on_slack(optimizer, on_slack)

    post(*pressing(OPERATOR, "approve", approve_value(where["call"]["blocks"]), where))

    wait_until(lambda: Proposal.objects.filter(pk=proposal["id"], status="failed").exists())
    said = wait_until(lambda: "failed" in _says_now(on_slack, where) and _says_now(on_slack, where))
    # Not "operator approved it at …." alone: the operator who approved it reads it did not run.
    assert said.startswith("operator approved it at ")
    assert "; its execution failed at " in said
    assert "campaign generic-search is archived" in said


def test_a_retried_execution_says_it_failed_and_who_sent_it_to_run_again(
    optimizer, on_slack, channel
):
    """Approved on Slack, its execution failed (the message said so); the operator retried it
    in the console and it ran. The message then read "Approved by operator at 22:50 UTC;
    executed at 23:18 UTC." as if it had run at once, and the proposal's "Who was told" said
    that update was for "the decision: approved", at a time nobody decided anything."""
    operator = get_user_model().objects.get(username="operator")
    channel(400, says=b'{"error": "campaign generic-search is archived"}')
    proposal, where = waiting_on_slack(optimizer, on_slack)
    post(*pressing(OPERATOR, "approve", approve_value(where["call"]["blocks"]), where))
    wait_until(lambda: "failed" in _says_now(on_slack, where))

    channel(200)
    proposal_retry(proposal_id=proposal["id"], reviewer=operator)

    executed = wait_until(
        lambda: Proposal.objects.filter(pk=proposal["id"], status="executed").first()
    )
    said = wait_until(
        lambda: "executed at" in _says_now(on_slack, where) and _says_now(on_slack, where)
    )
    decided, retried, ran = (
        seconds(at) for at in (approved_at(executed), executed.approved_at, executed.executed_at)
    )
    assert said == (
        f"operator approved it at {decided}; its execution failed, and operator sent it to run "
        f"again at {retried}; executed at {ran}."
    )
    abouts = Notification.objects.filter(proposal_id=proposal["id"], kind="update").values_list(
        "about", flat=True
    )
    assert list(abouts).count("the decision: approved") == 1
    assert "sent to run again by operator" in abouts


def _says_now(slack, where: dict) -> str:
    """What the message's context says as Slack shows it now (every update applied)."""
    return context_texts(slack.messages[(where["channel"], where["ts"])]["blocks"])


def test_forged_stale_unsigned_and_replayed_presses_are_refused_and_decide_nothing(
    optimizer, on_slack
):
    proposal, where = waiting_on_slack(optimizer, on_slack)
    value = str(proposal["id"])
    body, headers = pressing(OPERATOR, "approve", value, where, signing_secret="not-the-secret")
    assert post(body, headers).status_code == 401
    stale = int(time.time()) - 6 * 60
    assert post(*pressing(OPERATOR, "approve", value, where, timestamp=stale)).status_code == 401
    assert post(body, {"Content-Type": headers["Content-Type"]}).status_code == 401
    # A timestamp that is no plain number of seconds, signed or not (400 digits overflowed the
    # verifier's arithmetic: a 500 to anyone, no secret needed).
    for timestamp in ("9" * 400, "9" * 5000, "١٧٠٠٠٠٠٠٠٠", "-1", " 1700000000", "1e9", ""):
        assert post(body, headers | {"X-Slack-Request-Timestamp": timestamp}).status_code == 401
    assert Proposal.objects.get(pk=proposal["id"]).status == "pending_review"
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()

    handled = pressing(OPERATOR, "approve", value, where)
    assert post(*handled).status_code == 200
    replayed = post(*handled)

    assert replayed.status_code == 403
    assert "replay" in replayed.json()["error"]
    assert Decision.objects.filter(proposal_id=proposal["id"]).count() == 1
    assert not on_slack.sent("chat.postEphemeral")  # the replay never reached the rules


def test_a_press_by_the_auditor_is_refused_with_a_message_back(optimizer, on_slack):
    proposal, where = waiting_on_slack(optimizer, on_slack)

    answer = post(*pressing("U0AUDITOR", "approve", str(proposal["id"]), where))

    assert answer.status_code == 200
    assert "auditor may not decide" in told(on_slack, "U0AUDITOR")
    assert Proposal.objects.get(pk=proposal["id"]).status == "pending_review"
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()


@pytest.fixture
def operators_use_a_second_factor(demo_world):
    """An administrator requires a second factor of the operators (Access → Second factor
    requirements): the console asks the operator for a code at every login."""
    SecondFactorRequirement.objects.create(group=Group.objects.get(name=OPERATORS))


def test_one_whose_group_must_use_a_second_factor_decides_on_its_page_not_on_slack(
    optimizer, on_slack, operators_use_a_second_factor, settings
):
    """A press on Slack asks for no second factor: one whose group must use one is told so
    and offered only to take it on (which decides nothing); a press decides nothing and says
    where to decide. Where Slack's own sign-in is taken for one, Slack decides as before."""
    proposal, where = waiting_on_slack(optimizer, on_slack)
    blocks = where["call"]["blocks"]
    assert buttons(blocks) == ["claim"]
    lacking = (
        "operator is in a group that must use a second factor, which a press on Slack does "
        "not ask for"
    )
    assert f"{lacking}: approve or reject it on its page." in context_texts(blocks)

    for action, value in [
        ("approve", str(proposal["id"])),
        ("reject", f"{proposal['id']}:too_aggressive"),
    ]:
        assert post(*pressing(OPERATOR, action, value, where)).status_code == 200
    page = f"/admin/approvals/proposal/{proposal['id']}/change/"
    said = [call["text"] for call in on_slack.sent("chat.postEphemeral", user=OPERATOR)]
    assert len(said) == 2
    assert all(
        text.startswith(f"Nothing was done: {lacking}. Approve or reject it on its page: ")
        and text.endswith(page)
        for text in said
    )
    assert Proposal.objects.get(pk=proposal["id"]).status == "pending_review"
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()
    # Taking it on decides nothing: still offered, and still theirs to give back.
    post(*pressing(OPERATOR, "claim", str(proposal["id"]), where))
    assert Claim.objects.get(proposal_id=proposal["id"]).user.username == "operator"
    update = wait_until(
        lambda: next(
            (u for u in updates_of(on_slack, where) if buttons(u["blocks"]) == ["release"]), None
        )
    )
    assert f"{lacking}: approve or reject it on its page." in context_texts(update["blocks"])
    assert all(
        buttons(u["blocks"]) in (["claim"], ["release"]) for u in updates_of(on_slack, where)
    )

    settings.SLACK_SIGN_IN_IS_SECOND_FACTOR = True
    post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))
    assert Decision.objects.get(proposal_id=proposal["id"]).reviewer.username == "operator"


def test_a_message_sent_before_a_second_factor_was_required_loses_its_buttons_once_refused(
    optimizer, on_slack
):
    """The message went with Approve and Reject; then an administrator required a second
    factor of the operators. The operator's press decided nothing, and the message kept
    offering the buttons that had just been refused, until the proposal moved: now the
    refusal has it say why and offer only to take it on."""
    proposal, where = waiting_on_slack(optimizer, on_slack)
    assert buttons(where["call"]["blocks"]) == ["approve", "reject", "claim"]
    SecondFactorRequirement.objects.create(group=Group.objects.get(name=OPERATORS))

    post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))

    assert "must use a second factor" in told(on_slack, OPERATOR)
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()
    [update, *_] = wait_until(lambda: updates_of(on_slack, where), timeout=15)
    assert buttons(update["blocks"]) == ["claim"]
    assert "approve or reject it on its page." in context_texts(update["blocks"])


def test_a_press_refused_for_a_second_factor_by_one_with_the_longest_name_is_answered(
    optimizer, on_slack
):
    """A username may have 150 characters. The update recorded for the refusal said what it
    was for in more than the 200 characters its record keeps: the write failed, and the
    press was answered 500, its person told nothing."""
    operator = get_user_model().objects.get(username="operator")
    operator.username = "operator-" + "x" * 141
    operator.save()
    proposal, where = waiting_on_slack(optimizer, on_slack)
    SecondFactorRequirement.objects.create(group=Group.objects.get(name=OPERATORS))

    answer = post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))

    assert answer.status_code == 200
    assert "must use a second factor" in told(on_slack, OPERATOR)
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()
    [update, *_] = wait_until(lambda: updates_of(on_slack, where), timeout=15)
    assert buttons(update["blocks"]) == ["claim"]


def test_a_press_of_one_whose_staff_status_was_taken_away_takes_their_message_back(
    optimizer, on_slack
):
    """Their staff status taken away after the message went: their press decided nothing,
    and the message still showed the proposal and its buttons until the proposal moved."""
    proposal, where = waiting_on_slack(optimizer, on_slack)
    operator = get_user_model().objects.get(username="operator")
    operator.is_staff = False
    operator.save()

    post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))

    assert "may not log in to the console" in told(on_slack, OPERATOR)
    [update, *_] = wait_until(lambda: updates_of(on_slack, where), timeout=15)
    assert buttons(update["blocks"]) == []
    assert "This message is no longer shown" in update["text"]


def test_one_who_may_not_decide_at_all_is_told_so_not_sent_to_its_page_for_a_second_factor(
    optimizer, on_slack
):
    """The auditors must use a second factor. The auditor's press (on a message of theirs
    sent before it, or forged) was told to "approve or reject it on its page", where they
    may not either; the refusal said of it is the one that holds wherever they press."""
    proposal, where = waiting_on_slack(optimizer, on_slack)
    SecondFactorRequirement.objects.create(group=Group.objects.get(name=AUDITORS))

    post(*pressing("U0AUDITOR", "approve", str(proposal["id"]), where))

    said = told(on_slack, "U0AUDITOR")
    assert "auditor may not decide" in said
    assert "on its page" not in said
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()


def test_a_press_by_the_agents_owner_is_refused_with_a_message_back(optimizer, on_slack):
    proposal, where = waiting_on_slack(optimizer, on_slack)
    Agent.objects.filter(name="optimizer").update(
        owner=get_user_model().objects.get(username="operator")
    )

    post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))

    assert "operator owns agent optimizer" in told(on_slack, OPERATOR)
    assert "someone else must decide" in told(on_slack, OPERATOR)
    assert Proposal.objects.get(pk=proposal["id"]).status == "pending_review"


def test_a_press_refused_as_its_agents_owner_redraws_the_message_without_its_buttons(
    optimizer, on_slack
):
    """The operator was made the owner of the agent after the message went (which is not
    followed as it is saved). Their press of Approve was refused, and the message went on
    offering Approve, Reject and "I'll take it", each of which they may not do, and saying it
    waited for their decision, until the proposal moved."""
    proposal, where = waiting_on_slack(optimizer, on_slack)
    assert buttons(where["call"]["blocks"]) == ["approve", "reject", "claim"]
    agent = Agent.objects.get(name="optimizer")
    agent.owner = get_user_model().objects.get(username="operator")
    agent.save()

    post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))

    assert "operator owns agent optimizer" in told(on_slack, OPERATOR)
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()
    [update, *_] = wait_until(lambda: updates_of(on_slack, where), timeout=15)
    assert buttons(update["blocks"]) == []
    assert headline(update["blocks"]) == "Waits for a decision"
    assert (
        f"operator owns agent optimizer, which proposed proposal #{proposal['id']}; someone "
        "else must decide."
    ) in context_texts(update["blocks"])


def test_a_press_refused_as_its_agent_stopped_past_its_signals_takes_approve_away(
    optimizer, on_slack
):
    """The agent was stopped by a change the platform does not see as it is made (an
    update of its row, not a save). The press of Approve was refused, and the message kept
    offering Approve, to be refused at every press, until the proposal moved."""
    proposal, where = waiting_on_slack(optimizer, on_slack)
    Agent.objects.filter(name="optimizer").update(is_active=False)

    post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))

    assert "agent optimizer has been deactivated" in told(on_slack, OPERATOR)
    [update, *_] = wait_until(lambda: updates_of(on_slack, where), timeout=15)
    assert buttons(update["blocks"]) == ["reject", "claim"]
    assert (
        f"Proposal #{proposal['id']} cannot be let run: agent optimizer has been deactivated "
        "since it proposed it."
    ) in context_texts(update["blocks"])


def test_the_agents_owner_told_of_its_proposal_is_not_told_it_waits_for_their_decision(
    optimizer, on_slack, mailbox
):
    """The route tells the operators, and one of them owns the agent: they may read of the
    proposal, not decide it; neither the email nor the Slack message says it waits for their
    decision (as "Waits for your decision" did, above no buttons and "Read it on its page")."""
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.filter(user=operator).update(email=True)
    Agent.objects.filter(name="optimizer").update(owner=operator)

    proposal, where = waiting_on_slack(optimizer, on_slack)

    assert headline(where["call"]["blocks"]) == "Waits for a decision"
    assert where["call"]["text"].startswith("Waits for a decision: ")
    assert buttons(where["call"]["blocks"]) == []
    [email] = wait_until(lambda: mailbox.to("operator@example.com"), timeout=15)
    assert (
        email["Subject"] == f"[HITL] Waits for a decision: #{proposal['id']} {proposal['summary']}"
    )
    text = email.get_body(preferencelist=("plain",)).get_content()
    assert text.splitlines()[0] == "Waits for a decision"
    assert "your decision" not in text


def test_a_slack_user_no_console_user_matches_is_told_and_decides_nothing(optimizer, on_slack):
    proposal, where = waiting_on_slack(optimizer, on_slack)

    post(*pressing("U0STRANGER", "approve", str(proposal["id"]), where))

    assert "no active console user has the address" in told(on_slack, "U0STRANGER")
    assert Proposal.objects.get(pk=proposal["id"]).status == "pending_review"


def test_a_press_by_one_deactivated_past_the_signals_takes_their_message_back(optimizer, on_slack):
    """The operator was deactivated by an update of their row (a directory's sync, a
    script), which takes back nothing at once. Their press was refused, as nobody active has
    their address, and the message went on showing the proposal and its buttons to a
    person who may no longer see it, until it moved."""
    proposal, where = waiting_on_slack(optimizer, on_slack)
    wait_until(
        lambda: Notification.objects.filter(
            proposal_id=proposal["id"], channel="slack", status="sent"
        ).exists()
    )
    get_user_model().objects.filter(username="operator").update(is_active=False)

    answer = post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))

    assert answer.status_code == 200
    assert "no active console user has the address" in told(on_slack, OPERATOR)
    [update, *_] = wait_until(lambda: updates_of(on_slack, where), timeout=15)
    assert buttons(update["blocks"]) == []
    assert "This message is no longer shown: operator was deactivated." in update["text"]
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()


def test_a_press_while_slack_is_out_of_reach_answers_slack_and_decides_nothing(
    optimizer, on_slack, settings
):
    """Slack's API cannot be reached while the press is handled (its client raises the
    connection's error, not Slack's own): the press is answered, nothing is decided."""
    proposal, where = waiting_on_slack(optimizer, on_slack)
    settings.SLACK_API_URL = f"http://127.0.0.1:{free_port()}/api/"

    assert post(*pressing(OPERATOR, "approve", str(proposal["id"]), where)).status_code == 200

    assert Proposal.objects.get(pk=proposal["id"]).status == "pending_review"


def test_rejecting_from_the_menu_records_the_reason_and_the_message_says_who(optimizer, on_slack):
    proposal, where = waiting_on_slack(optimizer, on_slack)

    post(*pressing(OPERATOR, "reject", f"{proposal['id']}:too_aggressive", where))

    [decision] = Decision.objects.filter(proposal_id=proposal["id"])
    assert (decision.outcome, decision.reason_code) == ("reject", "too_aggressive")
    assert decision.note == "Rejected on Slack."
    assert decision.reviewer.username == "operator"
    assert Proposal.objects.get(pk=proposal["id"]).status == "rejected"
    [update, *_] = wait_until(lambda: updates_of(on_slack, where))
    assert "operator rejected it (too aggressive) at" in context_texts(update["blocks"])


def told_what(client, proposal_id: int) -> list[str]:
    """The "What" column of a proposal's "Who was told", as the console shows it."""
    page = client.get(f"/admin/approvals/proposal/{proposal_id}/change/").text
    table = page.split('id="proposal-told"')[1].split("</table>")[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[3] for row in table.split("<tr>")[2:]]


def test_names_in_a_slack_message_are_shown_as_written_not_as_slacks_markup(
    optimizer, on_slack, operators
):
    """Slugs and usernames may hold "_": an agent "_night_shift_", an account "_emea_", a
    campaign "_generic_search_" in the summary, a colleague "_sam_" on it. The message's
    headline, facts and "On it" were Slack's markup, which showed them in italics, without
    their underscores: "night_shift" for the agent's name."""
    agent = Agent.objects.get(name="optimizer")
    agent.name = "_night_shift_"
    agent.save()
    account = Account.objects.get(external_id="demo")
    account.external_id = "_emea_"
    account.save()
    campaign = Campaign.objects.get(external_id="generic-search")
    campaign.external_id = "_generic_search_"
    campaign.save()
    _, colleague = operators
    colleague.username = "_sam_"
    colleague.save()
    body = reallocation(account="_emea_")
    body["payload"]["to_campaign"] = "_generic_search_"
    proposal, where = waiting_on_slack(optimizer, on_slack, **body)

    proposal_claim(proposal_id=proposal["id"], user=colleague)
    [update, *_] = wait_until(lambda: updates_of(on_slack, where))

    for blocks in (where["call"]["blocks"], update["blocks"]):
        assert markup(blocks[:2]) == []
        said = shown_text(blocks[:2]).split("\n")
        assert said[1] == f"#{proposal['id']} {proposal['summary']}"
        assert "_generic_search_ (28.0%)" in said[1]
        assert "Agent _night_shift_" in said and "Account _emea_" in said
    # Bold, a link to its page, as it was.
    [link] = [e for e in update["blocks"][0]["elements"][0]["elements"] if e["type"] == "link"]
    assert link["style"] == {"bold": True}
    assert link["url"].endswith(f"/admin/approvals/proposal/{proposal['id']}/change/")
    assert "\nOn it _sam_, until " in facts(update["blocks"])
    # Nor does any other part of it read their names as markup.
    for name in ("_night_shift_", "_emea_", "_generic_search_", "_sam_"):
        assert not [text for text in markup(update["blocks"]) if name in text]


def test_a_person_who_lost_the_right_to_read_proposals_is_shown_no_more_of_it(
    optimizer, on_slack, operators
):
    """The operator was told of the reallocation on Slack, then taken out of the operators'
    group: what it showed is taken back at once, buttons and all (it stayed until the
    proposal moved). A colleague rejects it: the operator's message is not updated with who
    decided and why (theirs no longer to see)."""
    first, second = operators
    proposal, where = waiting_on_slack(optimizer, on_slack)
    to_first = Notification.objects.filter(proposal_id=proposal["id"], recipient=first)
    wait_until(lambda: to_first.filter(status="sent").exists())
    first.groups.clear()

    taken_back = "This message is no longer shown: operator may not see proposals in the console."
    [update] = wait_until(lambda: updates_of(on_slack, where), timeout=15)
    assert update["text"] == taken_back
    proposal_reject(proposal_id=proposal["id"], reviewer=second, reason_code="wrong_signal")
    updates = Notification.objects.filter(proposal_id=proposal["id"], kind="update")
    wait_until(lambda: updates.count() == 2)
    wait_until(lambda: not updates.filter(status__in=["pending", "held"]).exists())
    assert {update["text"] for update in updates_of(on_slack, where)} == {taken_back}
    shown = str(on_slack.messages[(where["channel"], where["ts"])])
    assert "second-operator" not in shown and "move 280.00" not in shown
    # In plain words: a username may hold "_", which Slack's markup reads as italics.
    [block] = on_slack.messages[(where["channel"], where["ts"])]["blocks"]
    assert block["text"] == {"type": "plain_text", "text": update["text"], "emoji": False}
    assert buttons(on_slack.messages[(where["channel"], where["ts"])]["blocks"]) == []


def test_one_who_may_no_longer_log_in_to_the_console_decides_nothing_on_slack_and_is_told_no_more(
    optimizer, on_slack, operators
):
    """The operator was told of the reallocation on Slack, then had their staff status taken
    away: the console lets them in no more (Django's admin lets in staff alone), though they
    kept their group. Their Approve, pressed since, decided it all the same, as them, and
    the next proposal was sent to them with its buttons; a colleague's rejection updated
    their message with who decided and why. Now a press decides nothing, the message is
    taken back, and the next is not sent, saying why."""
    first, second = operators
    proposal, where = waiting_on_slack(optimizer, on_slack)
    first.is_staff = False
    first.save()

    post(*pressing(OPERATOR, "approve", approve_value(where["call"]["blocks"]), where))

    [answer] = [call["text"] for call in on_slack.sent("chat.postEphemeral")]
    assert answer == "Nothing was done: operator may not log in to the console."
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()
    # Their message is taken back at their press, and stays so when a colleague decides.
    taken_back = "This message is no longer shown: operator may not log in to the console."
    wait_until(lambda: updates_of(on_slack, where))
    proposal_reject(proposal_id=proposal["id"], reviewer=second, reason_code="wrong_signal")
    updates = Notification.objects.filter(proposal_id=proposal["id"], kind="update")
    wait_until(lambda: not updates.filter(status__in=["pending", "held"]).exists())
    assert {update["text"] for update in updates_of(on_slack, where)} == {taken_back}
    assert "second-operator" not in str(on_slack.messages[(where["channel"], where["ts"])])
    answer = optimizer.post("/api/v1/proposals/", reallocation("150.00"), format="json")
    assert answer.status_code == 201, answer.content
    [told] = wait_until(
        lambda: Notification.objects.filter(proposal_id=answer.json()["id"]).exclude(
            status__in=["pending", "held"]
        )
    )
    assert told.status == "not_sent"
    assert "operator may not log in to the console" in told.log[-1]["result"]
    assert len(on_slack.sent("chat.postMessage", channel=OPERATOR)) == 1


@pytest.mark.parametrize("action", ["approve", "reject", "claim", "release"])
def test_a_press_by_one_who_lost_the_right_to_read_proposals_tells_them_nothing_of_it(
    optimizer, on_slack, operators, action
):
    """The operator was told on Slack, then taken out of the operators' group. Before their
    message was taken back, a colleague approved the proposal (1 of 2), then another rejected
    it; a button on the operator's message, pressed since, decides nothing, and its answer
    names neither who decided nor how (the answer had said "Rejected by second-operator
    (wrong signal) at …", and, while it waited, whose approvals it had)."""
    first, second = operators
    third = get_user_model().objects.create_user("third-operator", is_staff=True)
    third.groups.set(first.groups.all())
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal, where = waiting_on_slack(optimizer, on_slack)
    first.groups.clear()
    proposal_approve(proposal_id=proposal["id"], reviewer=second)
    value = {"reject": f"{proposal['id']}:other"}.get(action, str(proposal["id"]))

    post(*pressing(OPERATOR, action, value, where))
    proposal_reject(proposal_id=proposal["id"], reviewer=third, reason_code="wrong_signal")
    post(*pressing(OPERATOR, action, value, where))

    [waiting, decided] = [call["text"] for call in on_slack.sent("chat.postEphemeral")]
    for answer in (waiting, decided):
        assert answer == "Nothing was done: operator may not see proposals in the console."
    assert not Decision.objects.filter(proposal_id=proposal["id"], reviewer=first).exists()
    assert not Claim.objects.filter(proposal_id=proposal["id"]).exists()


def test_taking_a_proposal_on_shows_who_is_on_it(optimizer, on_slack, login):
    proposal, where = waiting_on_slack(optimizer, on_slack)

    post(*pressing(OPERATOR, "claim", str(proposal["id"]), where))

    claim = Claim.objects.get(proposal_id=proposal["id"])
    assert claim.user.username == "operator"
    [update, *_] = wait_until(lambda: updates_of(on_slack, where))
    # Until when, as the page says it: nothing updates the message when the claim lapses, so
    # it says when it does (Slack shows the time in the reader's zone, UTC as written here).
    lapses = f"{claim.lapses_at:%Y-%m-%d %H:%M:%S} UTC"
    assert f"\nOn it operator, until {lapses}" in facts(update["blocks"])
    [until] = [
        e
        for b in update["blocks"][1:2]
        for section in b["elements"]
        for e in section["elements"]
        if e["type"] == "date"
    ]
    assert until == {
        "type": "date",
        "timestamp": int(claim.lapses_at.timestamp()),
        "format": "{date_short} {time_secs}",
        "fallback": lapses,
    }
    assert headline(update["blocks"]) == headline(where["call"]["blocks"])
    assert headline(update["blocks"]) == "Waits for your decision"
    # Still to decide; on the message of the one who is on it, theirs to give back, not to
    # take again.
    assert buttons(update["blocks"]) == ["approve", "reject", "release"]
    # The outbox says what the update was for, not only that it was one.
    assert told_what(login("auditor"), proposal["id"]) == [
        "Waits for a decision",
        "Update of a message sent: a claim: operator is on it",
    ]

    post(*pressing(OPERATOR, "release", str(proposal["id"]), where))

    claim.refresh_from_db()
    assert not claim.is_live()
    given_back = wait_until(lambda: updates_of(on_slack, where)[1:])[-1]
    assert buttons(given_back["blocks"]) == ["approve", "reject", "claim"]
    assert "On it" not in str(given_back["blocks"])
    assert not on_slack.sent("chat.postEphemeral")


def test_a_claim_is_not_given_back_once_the_proposal_was_decided(optimizer, on_slack, login):
    """A "Give it back" pressed on a message shown before the decision (or the console's
    address posted to) changes nothing and sends no update: the proposal no longer waits,
    and its messages already say what became of it."""
    proposal, where = waiting_on_slack(optimizer, on_slack)
    post(*pressing(OPERATOR, "claim", str(proposal["id"]), where))
    post(*pressing(OPERATOR, "reject", f"{proposal['id']}:other", where))
    wait_until(
        lambda: [u for u in updates_of(on_slack, where) if "operator rejected it" in u["text"]]
    )
    claim = Claim.objects.get(proposal_id=proposal["id"])
    versions = claim.history.count()
    outbox = Notification.objects.filter(proposal_id=proposal["id"]).count()

    post(*pressing(OPERATOR, "release", str(proposal["id"]), where))
    page = login("operator").post(
        f"/admin/approvals/proposal/{proposal['id']}/release/", follow=True
    )

    assert "is rejected; nobody is on it now" in told(on_slack, OPERATOR)
    assert "is rejected; nobody is on it now" in page.text
    assert "You gave proposal" not in page.text
    claim.refresh_from_db()
    assert claim.history.count() == versions
    assert Notification.objects.filter(proposal_id=proposal["id"]).count() == outbox


def test_while_a_colleague_is_on_it_others_are_offered_no_claim(optimizer, on_slack, operators):
    first, second = operators
    second.email = "second-operator@example.com"
    second.save()
    on_slack.people["U0SECOND"] = second.email
    ReachedBy.objects.create(user=second, slack=True, email=False)
    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    proposal_id = answer.json()["id"]
    [their_message] = wait_until(
        lambda: Notification.objects.filter(
            proposal_id=proposal_id, recipient=second, slack_ts__gt=""
        )
    )
    theirs = {"channel": their_message.slack_channel, "ts": their_message.slack_ts}

    proposal_claim(proposal_id=proposal_id, user=first)

    [update, *_] = wait_until(lambda: updates_of(on_slack, theirs))
    assert buttons(update["blocks"]) == ["approve", "reject"]  # taking it would be refused
    assert "\nOn it operator, until " in facts(update["blocks"])


def test_a_stopped_agents_proposal_is_taken_on_to_be_rejected_and_says_why_not_approved(
    optimizer, on_slack
):
    """Its agent deactivated since it proposed, a proposal cannot be let run: "I'll take it"
    was refused as if it were an approval, and the message, once updated, offered nothing,
    Reject included, under "Waits for a decision", as if it were someone else's to decide."""
    proposal, where = waiting_on_slack(optimizer, on_slack)
    Agent.objects.filter(name="optimizer").update(is_active=False)

    answer = post(*pressing(OPERATOR, "claim", str(proposal["id"]), where))

    assert answer.status_code == 200
    assert Claim.objects.get(proposal_id=proposal["id"]).user.username == "operator"
    [update, *_] = wait_until(lambda: updates_of(on_slack, where))
    assert headline(update["blocks"]) == "Waits for your decision"
    assert buttons(update["blocks"]) == ["reject", "release"]
    assert (
        f"Proposal #{proposal['id']} cannot be let run: agent optimizer has been deactivated "
        "since it proposed it."
    ) in context_texts(update["blocks"])


def test_the_auditor_cannot_take_a_proposal_on(optimizer, on_slack):
    proposal, where = waiting_on_slack(optimizer, on_slack)

    post(*pressing("U0AUDITOR", "claim", str(proposal["id"]), where))

    assert "auditor may not decide" in told(on_slack, "U0AUDITOR")
    assert not Claim.objects.filter(proposal_id=proposal["id"]).exists()


def test_under_the_two_person_rule_the_message_says_one_of_two_then_who_approved(
    optimizer, on_slack, operators, login
):
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    _, second = operators
    second.email = "second-operator@example.com"
    second.save()
    on_slack.people["U0SECOND"] = second.email
    proposal, where = waiting_on_slack(optimizer, on_slack)
    value = str(proposal["id"])

    post(*pressing(OPERATOR, "approve", value, where))

    assert Proposal.objects.get(pk=proposal["id"]).status == "pending_review"
    [partial] = wait_until(lambda: updates_of(on_slack, where))
    assert "Approved by operator: 1 of 2 approvals" in context_texts(partial["blocks"])
    assert buttons(partial["blocks"]) == []  # operator has decided: nothing left to press
    # It waits, but no longer for operator: the message does not say it waits for them.
    assert headline(partial["blocks"]) == "Waits for a decision"

    post(*pressing(OPERATOR, "approve", value, where))
    assert "You have already decided" in told(on_slack, OPERATOR)
    assert "Approved by operator: 1 of 2 approvals; waits for 1 more." in told(on_slack, OPERATOR)

    post(*pressing("U0SECOND", "approve", value, where))
    wait_until(lambda: Proposal.objects.get(pk=proposal["id"]).status == "executed")
    final = wait_until(
        lambda: [
            u
            for u in updates_of(on_slack, where)
            if "operator and second-operator approved it, the last at" in context_texts(u["blocks"])
        ]
    )
    assert final
    approval, *rest = told_what(login("auditor"), proposal["id"])[-3:]
    # An update drawn just before operator's approval counted and recorded after it (on a
    # busy machine) carries it, and says so: the approval's own then says nothing new.
    assert approval in (
        "Update of a message sent: an approval by operator; it waits for 1 more",
        "Update of a message sent: an approval counted as it went; it waits for 1 more",
    )
    assert rest == [
        "Update of a message sent: the decision: approved",
        "Update of a message sent: its execution: executed",
    ]


def test_a_proposal_that_expired_with_one_of_two_approvals_does_not_say_nobody_decided(
    optimizer, on_slack
):
    """Operator gave the first of two approvals on Slack; nobody gave the second before the
    review window closed. The message says so, and when it closed, not "Expired: nobody
    decided within its review window."."""
    from approvals.services.expiry import proposals_expire_overdue

    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal, where = waiting_on_slack(optimizer, on_slack)
    post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))
    wait_until(lambda: updates_of(on_slack, where))
    closed = timezone.now() - timedelta(seconds=1)
    Proposal.objects.filter(pk=proposal["id"]).update(review_expires_at=closed)

    assert proposals_expire_overdue() == 1

    said = f"{closed:%Y-%m-%d %H:%M:%S} UTC"
    [expired] = wait_until(
        lambda: [u for u in updates_of(on_slack, where) if "Expired" in u["text"]]
    )
    assert context_texts(expired["blocks"]) == (
        "Expired. It had 1 of the 2 approvals its policy asks for (operator) when its review "
        f"window closed at {said}: it was not approved."
    )
    assert headline(expired["blocks"]) == "No longer waits"


def test_an_approval_on_slack_superseded_before_it_ran_says_who_approved_it_and_when(
    optimizer, on_slack, channel
):
    """Operator approved a bid raise on Slack; its channel did not answer the first attempt,
    and before the next the bid moved: it ended superseded. The message, which had said
    "Approved by operator at …", then said only "Superseded: its target changed before it
    ran; nothing was done.", as if nobody had approved it, and not when; and then "…: nothing
    was done.", though its first attempt, a 503, may have been carried out."""
    endpoint = channel(503, 503, 503, 503)
    answer = optimizer.post("/api/v1/proposals/", bid_adjustment("2.60"), format="json")
    proposal = answer.json()
    assert proposal["status"] == "pending_review", proposal
    wait_until(lambda: on_slack.sent("chat.postMessage", channel=OPERATOR), timeout=15)
    channel_id, ts = wait_until(lambda: _posted_where(on_slack))
    where = {"channel": channel_id, "ts": ts}

    post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))
    # The first attempt: no answer, recorded; the next one due after a backoff.
    wait_until(lambda: endpoint.received, timeout=15)
    ended = Execution.objects.filter(proposal_id=proposal["id"], finished_at__isnull=False)
    wait_until(ended.exists, timeout=15)
    Campaign.objects.filter(external_id="brand-search").update(bid=Decimal("2.05"))
    ExecutionRound.objects.filter(proposal_id=proposal["id"]).update(lease_until=timezone.now())
    proposal_execute(proposal_id=proposal["id"])  # or the worker's retry, whichever comes first

    ended = wait_until(
        lambda: Proposal.objects.filter(pk=proposal["id"], status="superseded").first()
    )
    [update] = wait_until(
        lambda: [u for u in updates_of(on_slack, where) if "uperseded" in u["text"]]
    )
    # When operator decided (its approved_at is a retry's, where one was made).
    decided = ended.decisions.get().created_at
    approved = f"{timezone.localtime(decided):%Y-%m-%d %H:%M:%S} UTC"
    at = f"{timezone.localtime(ended.updated_at):%Y-%m-%d %H:%M:%S} UTC"
    # Its attempts got a 503, no sure answer: not "nothing was done", which it said, but
    # that they may have been carried out (attempt 2 went too, if the worker's retry came
    # before the bid moved).
    attempts = list(ended.executions.order_by("attempt"))
    assert all(attempt.unanswered for attempt in attempts)
    sent = f"{timezone.localtime(attempts[-1].started_at):%Y-%m-%d %H:%M:%S} UTC"
    which = (
        f"its attempt 1, sent at {sent},"
        if len(attempts) == 1
        else f"its attempts 1–{len(attempts)}, the last sent at {sent},"
    )
    # As its page says it beside its status (approvals.selectors.how_review_ended).
    assert context_texts(update["blocks"]) == (
        f"Superseded. operator approved it at {approved}, then its target was found changed "
        f"before it was sent again, at {at}: nothing more was sent, but {which} got no sure "
        "answer and may have been carried out on the channel: check there."
    )
    assert context_texts(update["blocks"]) == f"Superseded. {how_review_ended(ended)}"
    assert headline(update["blocks"]) == "No longer waits"
    assert buttons(update["blocks"]) == []


def test_an_expired_proposal_nobody_decided_says_when_its_review_window_closed(optimizer, on_slack):
    from approvals.services.expiry import proposals_expire_overdue

    proposal, where = waiting_on_slack(optimizer, on_slack)
    closed = timezone.now() - timedelta(seconds=1)
    Proposal.objects.filter(pk=proposal["id"]).update(review_expires_at=closed)

    assert proposals_expire_overdue() == 1

    [expired] = wait_until(lambda: updates_of(on_slack, where))
    assert context_texts(expired["blocks"]) == (
        "Expired. Nobody decided it in time: its review window closed at "
        f"{closed:%Y-%m-%d %H:%M:%S} UTC."
    )


def test_a_withdrawal_for_the_agent_says_who_withdrew_it_and_why_in_plain_words(
    optimizer, on_slack
):
    proposal, where = waiting_on_slack(optimizer, on_slack)
    operator = get_user_model().objects.get(username="operator")
    note = "Paused by the *owner* <!channel> <https://example.com|read this> & more :fire:"

    proposal_withdraw_for_agent(proposal_id=proposal["id"], reviewer=operator, note=note)

    [update] = wait_until(lambda: updates_of(on_slack, where))
    when = seconds(withdrawn_at(proposal["id"]))
    # Not "Its agent withdrew it": a person did, and the note is shown, not read as markup.
    assert shown_as_typed(update["blocks"]) == (
        f"operator withdrew it for its agent at {when}: {note}"
    )
    # Nor does the text a notification shows of it mention anyone.
    assert "<!channel>" not in update["text"] and "&lt;!channel&gt;" in update["text"]
    assert buttons(update["blocks"]) == []
    # A press on it afterwards is told the same, in plain words too.
    post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))
    assert "operator withdrew it for its agent at" in told(on_slack, OPERATOR)
    assert "&lt;!channel&gt;" in told(on_slack, OPERATOR)
    assert "<!channel>" not in told(on_slack, OPERATOR)
    [reply] = on_slack.sent("chat.postEphemeral", user=OPERATOR)
    [block] = reply["blocks"]
    assert block["text"]["type"] == "plain_text" and block["text"]["emoji"] is False
    assert block["text"]["text"].endswith(f"for its agent at {when}: {note}")


FORGED = "operator approved it at 2026-12-04 22:50:03 UTC; executed at 2026-12-04 22:51:09 UTC."


def test_a_withdrawal_for_the_agent_shows_its_note_on_one_line(optimizer, on_slack, operators):
    """A reviewer's note with line breaks had added lines that read as the message's own
    ("operator approved it at …; executed at …." under "second-operator withdrew it for its
    agent at …: Paused."), as an agent's note had before c9a132c."""
    proposal, where = waiting_on_slack(optimizer, on_slack)
    _, second = operators

    proposal_withdraw_for_agent(
        proposal_id=proposal["id"], reviewer=second, note=f"Paused.\n\n{FORGED}\u2028\u202eEnd"
    )

    [update] = wait_until(lambda: updates_of(on_slack, where))
    when = seconds(withdrawn_at(proposal["id"]))
    assert shown_as_typed(update["blocks"]) == (
        f"second-operator withdrew it for its agent at {when}: Paused. {FORGED} End"
    )
    assert Proposal.objects.get(pk=proposal["id"]).withdrawal_note.startswith("Paused.\n\n")


@pytest.mark.parametrize(
    ("note", "quoted"),
    [
        # Shown as typed: not a mention of everyone.
        ("Not this week <!here>", "Not this week <!here>"),
        # On one line: its line breaks had added a line that read as the message's own, saying
        # a person approved it and it ran.
        (
            f"Changed my mind.\n\n{FORGED}\u2028\u202eTrailing\ttab",
            f"Changed my mind. {FORGED} Trailing tab",
        ),
    ],
)
def test_an_agents_withdrawal_says_when_and_quotes_its_note_on_one_line_as_typed(
    optimizer, on_slack, note, quoted
):
    proposal, where = waiting_on_slack(optimizer, on_slack)

    answer = optimizer.post(
        f"/api/v1/proposals/{proposal['id']}/withdraw/", {"note": note}, format="json"
    )

    assert answer.status_code == 200, answer.content
    [update] = wait_until(lambda: updates_of(on_slack, where))
    # When, to the second, as its page says it (it said the minute), and when its history
    # recorded it (not when the row last changed).
    when = seconds(withdrawn_at(proposal["id"]))
    assert shown_as_typed(update["blocks"]) == f"Its agent withdrew it at {when}: “{quoted}”"
    # Kept as written, for its page and its agent.
    assert answer.json()["withdrawal"]["note"] == note


def test_an_approval_in_the_console_under_the_two_person_rule_shows_on_slack(
    optimizer, on_slack, operators
):
    """Slack's message says what the proposal's page says, however the reviewer approved:
    one approval of the two its policy asks for, given in the console, is on Slack too."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    first, _ = operators
    proposal, where = waiting_on_slack(optimizer, on_slack)

    proposal_approve(proposal_id=proposal["id"], reviewer=first)  # as the console does

    assert Proposal.objects.get(pk=proposal["id"]).status == "pending_review"
    [partial] = wait_until(lambda: updates_of(on_slack, where))
    assert "Approved by operator: 1 of 2 approvals" in context_texts(partial["blocks"])
    assert buttons(partial["blocks"]) == []  # the operator's own message: nothing to press


def claim_value(args: dict) -> int:
    """The proposal a message's "I'll take it" button names, from the call that posts it."""
    [value] = [
        e["value"]
        for b in args["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "claim"
    ]
    return int(value)


def while_it_is_posted(slack, change) -> None:
    """Have ``change`` (given the proposal's id) happen while the next message is on its way:
    Slack has it, drawn as before the change, and its sender has not yet recorded it sent."""

    def meanwhile(args: dict) -> None:
        try:
            change(claim_value(args))
        finally:
            connection.close()  # this thread's, the fake Slack's

    slack.while_next_post = meanwhile


def test_an_approval_counted_while_the_message_was_on_its_way_shows_on_slack(
    optimizer, on_slack, operators, login
):
    """The first of two approvals is given in the console while the operator's message is on
    its way to Slack: the approval found no message recorded sent to update, and the message
    kept saying nobody had approved, with Approve and Reject for one who had. Its sender,
    recording it sent, reads the proposal again and updates it."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    first, _ = operators
    while_it_is_posted(
        on_slack, lambda proposal_id: proposal_approve(proposal_id=proposal_id, reviewer=first)
    )
    proposal, where = waiting_on_slack(optimizer, on_slack)
    assert buttons(where["call"]["blocks"]) == ["approve", "reject", "claim"]
    assert "Approved by" not in context_texts(where["call"]["blocks"])

    [partial] = wait_until(lambda: updates_of(on_slack, where), timeout=15)
    assert "Approved by operator: 1 of 2 approvals" in context_texts(partial["blocks"])
    assert buttons(partial["blocks"]) == []  # the operator has decided: nothing to press
    assert Proposal.objects.get(pk=proposal["id"]).status == "pending_review"
    assert told_what(login("auditor"), proposal["id"])[-1] == (
        "Update of a message sent: an approval counted as it went; it waits for 1 more"
    )


def test_a_claim_made_while_the_message_was_on_its_way_shows_on_slack(
    optimizer, on_slack, operators, login
):
    """A colleague takes the proposal on while the operator's message is on its way: the
    message kept offering "I'll take it" (a press refused: the colleague is on it) and did
    not say who was on it. Its sender, recording it sent, reads the claim and updates it."""
    _, second = operators
    while_it_is_posted(
        on_slack, lambda proposal_id: proposal_claim(proposal_id=proposal_id, user=second)
    )
    proposal, where = waiting_on_slack(optimizer, on_slack)
    assert buttons(where["call"]["blocks"]) == ["approve", "reject", "claim"]

    [update] = wait_until(lambda: updates_of(on_slack, where), timeout=15)
    assert "\nOn it second-operator, until " in facts(update["blocks"])
    assert buttons(update["blocks"]) == ["approve", "reject"]  # taking it would be refused
    assert told_what(login("auditor"), proposal["id"])[-1] == (
        "Update of a message sent: a claim made as it went: second-operator is on it"
    )


def test_an_update_read_before_a_decision_that_lands_after_it_is_sent_again(
    optimizer, on_slack, operators
):
    """Two senders update one message: the first reads "1 of 2 approvals" and, while its
    update is on its way, the second approval is recorded and its own update lands first.
    The message ends saying what happened (approved by both), not the older "1 of 2"."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    first, second = operators
    proposal, where = waiting_on_slack(optimizer, on_slack)

    def second_approval_lands_first(_args):
        try:
            proposal_approve(proposal_id=proposal["id"], reviewer=second)
            update = Notification.objects.filter(proposal_id=proposal["id"], kind="update")
            # Sent as another worker would, while the first sender's update is on its way.
            notifications_deliver(notification_ids=[update.latest("pk").pk])
        finally:
            connection.close()  # this thread's own

    on_slack.while_next_update = second_approval_lands_first
    proposal_approve(proposal_id=proposal["id"], reviewer=first)

    def now_says() -> str:
        return context_texts(on_slack.messages[(where["channel"], where["ts"])]["blocks"])

    # The first sender's "1 of 2" landed after the second's update...
    wait_until(lambda: [u for u in updates_of(on_slack, where) if "1 of 2" in str(u["blocks"])])
    # ... and the message ends saying what happened.
    wait_until(lambda: "operator and second-operator approved it, the last at" in now_says())
    assert "waits for" not in now_says()
    assert buttons(on_slack.messages[(where["channel"], where["ts"])]["blocks"]) == []
    assert Proposal.objects.get(pk=proposal["id"]).status in ("approved", "executing", "executed")


def a_reallocation_that_will_supersede_a_budget_change(optimizer, slack) -> tuple[dict, dict]:
    """The walk's 28% reallocation, waiting on the operator's Slack, and a budget change of
    brand-search waiting too (made against its 1000.00), which the reallocation's execution
    supersedes; both messages posted and recorded sent."""
    proposal, where = waiting_on_slack(optimizer, slack)
    answer = optimizer.post(
        "/api/v1/proposals/",
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "brand-search", "new_daily_budget": "1250.00"}},
        format="json",
    )
    assert answer.json()["status"] == "pending_review"
    wait_until(lambda: Notification.objects.filter(channel="slack", status="sent").count() == 2)
    return proposal, where


def approved_on_slack(proposal: dict, where: dict) -> None:
    seen = payload_seen(Proposal.objects.get(pk=proposal["id"]).payload)
    post(*pressing(OPERATOR, "approve", f"{proposal['id']}:{seen}", where))


def execution_update(proposal: dict) -> Notification:
    """The update its execution recorded of the operator's message (once it executed)."""
    return wait_until(
        lambda: Notification.objects.filter(
            proposal_id=proposal["id"], kind="update", about="its execution: executed"
        ).first(),
        timeout=20,
    )


def update_sends_listed(client, proposal: dict) -> int:
    """The updates Slack was sent, as the proposal's "Who was told" lists them: an update's
    row each, counted as many times as its last result says it went."""
    page = client.get(f"/admin/approvals/proposal/{proposal['id']}/change/").text
    table = page.split('id="proposal-told"')[1].split("</table>")[0]
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in table.split("<tr>")[2:]]
    sends = 0
    for cells in rows:
        if cells[3].startswith("Update of a message sent"):
            times = re.search(r"sent (\d+) times", cells[8])
            sends += int(times.group(1)) if times else 1
    return sends


def test_an_update_that_lands_after_a_later_one_is_sent_again_and_its_record_says_so(
    optimizer, on_slack, login
):
    """The walk's reallocation, approved on Slack, executes and supersedes a budget change
    while its "approved" update is on its way: the execution's update lands first, the older
    "approved" after it. Its sender sends it again, saying it executed, as it must; but that
    third chat.update was nowhere in the record: "Who was told" listed two updates."""
    proposal, where = a_reallocation_that_will_supersede_a_budget_change(optimizer, on_slack)

    def execution_update_lands_first(_args):
        try:
            later = execution_update(proposal)
            notifications_deliver(notification_ids=[later.pk])  # as another worker would
            wait_until(lambda: Notification.objects.get(pk=later.pk).status == "sent")
        finally:
            connection.close()  # this thread's, the fake Slack's

    on_slack.while_next_update = execution_update_lands_first
    approved_on_slack(proposal, where)

    def now_says() -> str:
        return context_texts(on_slack.messages[(where["channel"], where["ts"])]["blocks"])

    wait_until(lambda: "; executed at " in now_says(), timeout=20)
    updates = Notification.objects.filter(proposal_id=proposal["id"], kind="update")
    wait_until(lambda: updates.count() == updates.filter(status="sent").count() == 2)
    assert len(updates_of(on_slack, where)) == 3  # approved, executed, executed again
    decided = updates.get(about="the decision: approved")
    assert decided.log[-1]["result"].endswith(
        "; sent 2 times: what it says changed while it went (another sender's update may "
        "have landed before it)"
    )
    assert update_sends_listed(login("auditor"), proposal) == 3


def test_an_update_is_not_sent_again_where_a_later_update_is_still_to_go(
    optimizer, on_slack, login
):
    """The same, but the execution's update has not gone yet (Slack asked it to wait: rate
    limited) when the "approved" update lands: Slack was sent "executed" twice, once by the
    approval's sender, unrecorded, and once by the execution's. The later update says it,
    and lands after: the approval's is sent once, as recorded."""
    proposal, where = a_reallocation_that_will_supersede_a_budget_change(optimizer, on_slack)

    def execution_update_waits(_args):
        try:
            on_slack.rate_limited["chat.update"] = 2
            later = execution_update(proposal)
            wait_until(lambda: Notification.objects.get(pk=later.pk).log)  # refused, to retry
        finally:
            on_slack.rate_limited.clear()
            connection.close()  # this thread's, the fake Slack's

    on_slack.while_next_update = execution_update_waits
    approved_on_slack(proposal, where)

    later = execution_update(proposal)
    decided = Notification.objects.get(proposal_id=proposal["id"], about="the decision: approved")
    wait_until(lambda: Notification.objects.get(pk=decided.pk).status == "sent", timeout=20)

    def retried() -> bool:  # the sweep's, which the tests' worker does not run: as it would
        notifications_deliver(notification_ids=[later.pk])
        return Notification.objects.get(pk=later.pk).status == "sent"

    wait_until(retried, timeout=20)
    says = on_slack.messages[(where["channel"], where["ts"])]
    assert "; executed at " in context_texts(says["blocks"])
    assert len(updates_of(on_slack, where)) == 2  # approved, then executed
    assert update_sends_listed(login("auditor"), proposal) == 2


def approve_value(blocks: list) -> str:
    """What the message's Approve button sends."""
    (actions,) = [b for b in blocks if b["type"] == "actions"]
    return next(e["value"] for e in actions["elements"] if e["action_id"] == "approve")


def test_a_press_on_a_message_shown_before_a_colleagues_edit_decides_nothing(
    optimizer, on_slack, operators
):
    """Under the two-person rule a colleague edits the proposal (280.00 a day → 900.00) and
    approves it; the operator's message still shows 280.00 until its update lands. A press
    on it is not an approval of the 900.00 nobody showed them: it decides nothing, says so,
    and the message updated since approves what it shows."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    first, second = operators
    proposal, where = waiting_on_slack(optimizer, on_slack)
    shown = approve_value(where["call"]["blocks"])
    assert shown.startswith(f"{proposal['id']}:")

    edited = {**proposal["payload"], "amount": "900.00"}
    proposal_approve(proposal_id=proposal["id"], reviewer=second, edited_payload=edited)
    post(*pressing(OPERATOR, "approve", shown, where))

    assert told(on_slack, OPERATOR).startswith(
        f"Proposal #{proposal['id']} was edited since it was shown to you"
    )
    assert "900.00" in told(on_slack, OPERATOR)
    assert told(on_slack, OPERATOR).count("Nothing") == 1  # said once, not twice
    assert Proposal.objects.get(pk=proposal["id"]).status == "pending_review"
    assert not Decision.objects.filter(proposal_id=proposal["id"], reviewer=first).exists()
    # The message, updated, shows the edit; its button approves what it shows.
    updated = wait_until(
        lambda: [u for u in updates_of(on_slack, where) if "900.00" in str(u["blocks"])]
    )
    post(*pressing(OPERATOR, "approve", approve_value(updated[-1]["blocks"]), where))
    wait_until(lambda: Proposal.objects.get(pk=proposal["id"]).status == "executed")


def test_an_edit_that_starts_the_review_again_tells_it_afresh_and_ends_the_earlier_message(
    optimizer, on_slack, operators
):
    """Under the two-person rule the operator approved (1 of 2); a colleague then edits the
    action (280.00 a day → 200.00) and approves it: the operator's approval was of the action
    before, so its review starts again. The operator's message no longer offers to decide
    what it shows; a new one shows the action as it now reads, with its buttons; and the
    decision stays due by the deadline it had (reminders and escalation go on)."""
    Policy.objects.filter(action_type="budget_reallocation").update(
        required_approvals=2, decide_within=timedelta(hours=4)
    )
    first, second = operators
    proposal, where = waiting_on_slack(optimizer, on_slack)
    due = DecisionDeadline.objects.get(proposal_id=proposal["id"]).due_at
    proposal_approve(proposal_id=proposal["id"], reviewer=first)
    edited = {**proposal["payload"], "amount": "200.00"}
    proposal_approve(proposal_id=proposal["id"], reviewer=second, edited_payload=edited)

    ended = wait_until(
        lambda: [u for u in updates_of(on_slack, where) if "started again" in str(u["blocks"])]
    )
    said = context_texts(ended[-1]["blocks"])
    assert said.startswith("Edited by second-operator since this message: its review started")
    assert headline(ended[-1]["blocks"]) == "Its review started again"  # not "No longer waits"
    assert buttons(ended[-1]["blocks"]) == []
    _, again = wait_until(
        lambda: (
            on_slack.sent("chat.postMessage", channel=OPERATOR)[1:]
            and (on_slack.sent("chat.postMessage", channel=OPERATOR))
        )
    )
    assert "move 200.00 USD/day" in again["text"]
    assert buttons(again["blocks"]) == ["approve", "reject", "claim"]
    [deadline] = DecisionDeadline.objects.filter(proposal_id=proposal["id"])
    assert (deadline.review_round, deadline.due_at) == (2, due)
    assert Notification.objects.filter(proposal_id=proposal["id"], recipient=second).count() == 0

    # The operator approves what the new message shows: two approvals of one action.
    (new_where,) = [key for key in on_slack.messages if key != (where["channel"], where["ts"])]
    at = {"channel": new_where[0], "ts": new_where[1]}
    post(*pressing(OPERATOR, "approve", approve_value(again["blocks"]), at))
    wait_until(lambda: Proposal.objects.get(pk=proposal["id"]).status == "executed")


def test_the_editor_whose_edit_started_the_review_again_is_not_pointed_to_a_new_message(
    optimizer, on_slack, operators
):
    """Under the two-person rule a colleague approved (1 of 2); the operator, told on Slack,
    then edits the action (280.00 a day → 200.00) in the console and approves it: its review
    starts again, with the operator's approval its first. The operator gets no new message
    (their part is done), so theirs does not send them to one ("in a new message showing it
    as it now is"): it says how far the new round has come."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    first, second = operators
    proposal, where = waiting_on_slack(optimizer, on_slack)
    proposal_approve(proposal_id=proposal["id"], reviewer=second)
    wait_until(lambda: updates_of(on_slack, where))
    edited = {**proposal["payload"], "amount": "200.00"}
    proposal_approve(proposal_id=proposal["id"], reviewer=first, edited_payload=edited)

    ended = wait_until(
        lambda: [u for u in updates_of(on_slack, where) if "started again" in str(u["blocks"])]
    )
    assert context_texts(ended[-1]["blocks"]) == (
        "Edited by operator since this message: its review started again. Approved by "
        "operator: 1 of 2 approvals; waits for 1 more."
    )
    assert buttons(ended[-1]["blocks"]) == []
    assert len(on_slack.sent("chat.postMessage", channel=OPERATOR)) == 1  # no new one to them


def test_a_press_on_a_proposal_someone_decided_says_who_decided_first(
    optimizer, on_slack, operators
):
    _, second = operators
    second.email = "second-operator@example.com"
    second.save()
    on_slack.people["U0SECOND"] = second.email
    proposal, where = waiting_on_slack(optimizer, on_slack)
    post(*pressing(OPERATOR, "approve", str(proposal["id"]), where))

    post(*pressing("U0SECOND", "reject", f"{proposal['id']}:other", where))

    assert "operator approved it at" in told(on_slack, "U0SECOND")
    assert Decision.objects.filter(proposal_id=proposal["id"]).count() == 1


def test_a_waiting_reallocation_re_assessed_is_shown_on_slack_as_it_now_is(optimizer, on_slack):
    """The operator was sent "move 280.00 … (28.0%)" with Approve. A budget change to
    brand-search lands first (1000.00 → 1050.00): the proposal is re-assessed, and its page
    reads 26.7% with the new reasons; the Slack message, whose Approve approves it as it now
    is, kept saying 28.0%."""
    proposal, where = waiting_on_slack(optimizer, on_slack)
    assert "(28.0%)" in headline_link(where["call"]["blocks"])
    change = optimizer.post(
        "/api/v1/proposals/",
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "brand-search", "new_daily_budget": "1050.00"}},
        format="json",
    ).json()
    wait_until(lambda: Proposal.objects.get(pk=change["id"]).status == "executed")
    now = Proposal.objects.get(pk=proposal["id"])
    assert "(26.7%)" in now.summary

    [update, *_] = wait_until(lambda: updates_of(on_slack, where), timeout=10)

    # As its page heads it: as its agent proposed it, then as it now reads.
    assert "(28.0%)" in headline_link(update["blocks"])
    assert shown_text(update["blocks"][:1]).splitlines()[-1].startswith("As re-assessed: ")
    assert "(26.7%)" in shown_text(update["blocks"][:1]).splitlines()[-1]
    assert buttons(update["blocks"]) == ["approve", "reject", "claim"]


def headline_link(blocks: list) -> str:
    [link] = [e for e in blocks[0]["elements"][0]["elements"] if e["type"] == "link"]
    return link["text"]


def presses_at_once(*presses: tuple[bytes, dict[str, str]]) -> list:
    """Each press posted from a thread of its own, released together."""
    start = threading.Barrier(len(presses))

    def pressed(signed):
        start.wait()
        try:
            return post(*signed)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(presses)) as pool:
        return list(pool.map(pressed, presses))


def test_presses_at_once_decide_once(optimizer, on_slack, operators):
    """Two operators press Approve and Reject at the same moment; then, under the two-person
    rule, one operator's double click (two presses, each signed) arrives twice at once. Each
    proposal is decided once, and whoever came second is told why nothing was done."""
    _, second = operators
    second.email = "second-operator@example.com"
    second.save()
    on_slack.people["U0SECOND"] = second.email
    proposal, where = waiting_on_slack(optimizer, on_slack)
    value = str(proposal["id"])

    answers = presses_at_once(
        pressing(OPERATOR, "approve", value, where),
        pressing("U0SECOND", "reject", f"{value}:other", where),
    )

    assert [answer.status_code for answer in answers] == [200, 200]
    [decision] = Decision.objects.filter(proposal_id=proposal["id"])
    loser = "U0SECOND" if decision.outcome == "approve" else OPERATOR
    assert "Nothing was done" in told(on_slack, loser)
    wait_until(lambda: Proposal.objects.get(pk=proposal["id"]).status in ("executed", "rejected"))

    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    answer = optimizer.post("/api/v1/proposals/", reallocation("150.00"), format="json")
    twice = str(answer.json()["id"])
    first_click = pressing(OPERATOR, "approve", twice, where)
    time.sleep(0.01)  # another click: its own action_ts, so its own signature

    presses_at_once(first_click, pressing(OPERATOR, "approve", twice, where))

    [approval] = Decision.objects.filter(proposal_id=twice)
    assert approval.reviewer.username == "operator"
    assert Proposal.objects.get(pk=twice).status == "pending_review"
    assert "You have already decided" in told(on_slack, OPERATOR)


def test_bad_payloads_are_refused_with_400(on_slack):
    for payload in ["", "not json", '{"type": "view_submission"}', '["block_actions"]']:
        body = f"payload={payload}".encode()
        assert post(body, signed_headers(body)).status_code == 400, payload
    body, headers = press(user_id=OPERATOR, action_id="approve", value="not-a-proposal")
    assert post(body, headers).status_code == 400
    body, headers = press(user_id=OPERATOR, action_id="delete", value="1")
    assert post(body, headers).status_code == 400
    for value in ("1:not-a-fingerprint", f"1:{'0' * 32}:more"):  # none of this platform's
        body, headers = press(user_id=OPERATOR, action_id="approve", value=value)
        assert post(body, headers).status_code == 400, value
    assert not Decision.objects.exists()


def test_a_signed_payload_nested_past_what_json_reads_is_a_400(on_slack):
    """JSON nested thousands deep: Python's reader gives up with a RecursionError, which
    was a 500."""
    body = urllib.parse.urlencode({"payload": "[" * 100_000}).encode()

    answer = post(body, signed_headers(body))

    assert answer.status_code == 400
    assert "not JSON" in answer.json()["error"]


def test_an_oversized_press_is_refused_413_unread(on_slack):
    """Slack's requests are a few kilobytes. The endpoint is open to anyone, who could send
    it 16 MiB (the largest body the agent API's batches take) per request to be read and
    hashed; it is refused for its size, before its signature is checked."""
    body = b"payload=" + b"x" * (2 * 1024 * 1024)

    answer = post(body, signed_headers(body))

    assert answer.status_code == 413
    assert "too large" in answer.json()["error"]
    assert not Decision.objects.exists()


def test_without_slack_configured_presses_are_refused(on_slack, settings):
    settings.SLACK_SIGNING_SECRET = ""
    body, headers = press(user_id=OPERATOR, action_id="approve", value="1")

    answer = post(body, headers)

    assert answer.status_code == 503
    assert "SLACK_SIGNING_SECRET" in answer.json()["error"]
