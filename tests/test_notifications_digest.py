"""Digests: a route that tells by digest sends each person one message listing what waits for
them, once it is due; a proposal decided meanwhile is left out (not sent, and the reason
kept); two runs at once send it once. A Slack digest goes on telling the truth: as its
proposals stop waiting, its lines say what became of them and its headline how many still
wait."""

import json
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone
from django.utils.html import escape

from approvals.models import Proposal
from approvals.services.decisions import proposal_approve, proposal_reject, proposals_reject
from approvals.services.proposals import proposal_withdraw_for_agent
from notifications import digests
from notifications.channels import Sent
from notifications.digests import notifications_send_digests
from notifications.messages import proposal_messages
from notifications.models import (
    Delivery,
    Notification,
    NotificationKind,
    NotificationStatus,
    Route,
)
from notifications.services import proposal_claim, reached_by_choose
from notifications.slack import MESSAGE_TEXT_LIMIT, SlackChannel
from notifications.tasks import send_due_digests
from policies.models import Policy
from tests.conftest import bid_adjustment, reallocation, wait_until
from tests.slack_fake import blocks_refusal, blocks_units, markup, shown_text
from tests.test_notifications_sweep import WorkerKilled

pytestmark = pytest.mark.django_db(transaction=True)
DEMO_ROUTE = "Demo: everything waiting, to the operators"


def by_digest(minutes: int = 1) -> None:
    route = Route.objects.get(name=DEMO_ROUTE)
    route.delivery, route.digest_minutes = Delivery.DIGEST, minutes
    route.save()


def submit(client, amounts: list[str]) -> list[dict]:
    proposals = []
    for amount in amounts:
        answer = client.post("/api/v1/proposals/", reallocation(amount), format="json")
        assert answer.status_code == 201, answer.content
        assert answer.json()["status"] == "pending_review"
        proposals.append(answer.json())
    return proposals


def digests_due_now() -> None:
    """As if the route's minute had gone by (the digest is due a minute after the first)."""
    Notification.objects.filter(status=NotificationStatus.HELD).update(
        next_attempt_at=timezone.now()
    )


@pytest.mark.usefixtures("celery_worker")
def test_a_digest_route_sends_one_email_listing_what_waits_leaving_out_what_was_decided(
    optimizer, mailbox
):
    by_digest(minutes=1)
    first, decided, third = submit(optimizer, ["150.00", "200.00", "250.00"])
    held = Notification.objects.filter(status=NotificationStatus.HELD)
    assert held.count() == 3
    assert all(59 <= (n.next_attempt_at - n.created_at).total_seconds() <= 60 for n in held), (
        "held for the route's minute"
    )
    send_due_digests.delay()
    time.sleep(2)
    assert not mailbox.to("operator@example.com"), "sent before the digest was due"

    operator = get_user_model().objects.get(username="operator")
    proposal_reject(proposal_id=decided["id"], reviewer=operator, reason_code="wrong_signal")
    digests_due_now()
    send_due_digests.delay()

    [digest] = wait_until(lambda: mailbox.to("operator@example.com"), timeout=15)
    assert digest["Subject"] == "[HITL] 2 proposals wait for a decision"
    text = digest.get_body(preferencelist=("plain",)).get_content()
    html = digest.get_body(preferencelist=("html",)).get_content()
    for proposal in (first, third):
        assert f"#{proposal['id']} {proposal['summary']}" in text
        assert f"/admin/approvals/proposal/{proposal['id']}/change/" in html
    assert f"#{decided['id']}" not in text
    assert f"/admin/approvals/proposal/{decided['id']}/change/" not in html

    wait_until(lambda: Notification.objects.filter(status=NotificationStatus.SENT).count() == 2)
    [dropped] = Notification.objects.filter(proposal_id=decided["id"])
    assert dropped.status == NotificationStatus.NOT_SENT
    assert "rejected" in dropped.log[-1]["result"]
    for sent in Notification.objects.filter(status=NotificationStatus.SENT):
        assert sent.sent_at is not None
        assert f"in a digest of #{first['id']}, #{third['id']}" in sent.log[-1]["result"]

    # Another run finds nothing due: one message, not two.
    send_due_digests.delay()
    time.sleep(2)
    assert len(mailbox.to("operator@example.com")) == 1


@pytest.mark.usefixtures("celery_worker")
def test_two_runs_at_once_send_one_digest(optimizer):
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite lets one writer in at a time")
    by_digest(minutes=5)
    submit(optimizer, ["150.00", "200.00"])
    digests_due_now()
    mail.outbox.clear()
    start = threading.Barrier(2)
    sent = []

    def run() -> None:
        start.wait()
        try:
            sent.append(notifications_send_digests())
        finally:
            connection.close()

    runs = [threading.Thread(target=run) for _ in range(2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join()

    assert sorted(sent) == [0, 1]
    [digest] = [m for m in mail.outbox if "operator@example.com" in m.to]
    assert digest.subject == "[HITL] 2 proposals wait for a decision"
    assert Notification.objects.filter(status=NotificationStatus.SENT).count() == 2
    assert notifications_send_digests() == 0


@pytest.mark.usefixtures("celery_worker")
def test_a_run_leaves_a_person_another_run_is_sending_a_digest_to(optimizer):
    """The interleaving the test above can only hope for: while another run holds the person
    (between taking their held notifications and leasing them), this run sends them nothing,
    rather than the part the other run has not locked yet."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite lets one writer in at a time")
    by_digest(minutes=5)
    submit(optimizer, ["150.00", "200.00"])
    digests_due_now()
    first_held = Notification.objects.filter(status=NotificationStatus.HELD).order_by("pk")[0]
    taken, release = threading.Event(), threading.Event()

    def other_run() -> None:
        try:
            with transaction.atomic():
                get_user_model().objects.select_for_update().get(username="operator")
                Notification.objects.select_for_update().get(pk=first_held.pk)
                taken.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=other_run)
    holder.start()
    try:
        assert taken.wait(timeout=10)
        mail.outbox.clear()
        assert notifications_send_digests() == 0
        assert mail.outbox == []
    finally:
        release.set()
        holder.join()
    assert Notification.objects.filter(status=NotificationStatus.HELD, attempts=0).count() == 2
    assert notifications_send_digests() == 1
    [digest] = [m for m in mail.outbox if "operator@example.com" in m.to]
    assert digest.subject == "[HITL] 2 proposals wait for a decision"


@pytest.mark.usefixtures("celery_worker")
def test_a_digest_of_one_proposal_says_it_waits_and_why_by_email_and_on_slack(optimizer, slack):
    operator = get_user_model().objects.get(username="operator")
    reached_by_choose(user=operator, email=True, slack=True)
    by_digest(minutes=5)
    [proposal] = submit(optimizer, ["150.00"])
    digests_due_now()
    mail.outbox.clear()

    assert notifications_send_digests() == 2

    [digest] = [m for m in mail.outbox if "operator@example.com" in m.to]
    assert digest.subject == "[HITL] 1 proposal waits for a decision"
    assert "1 proposal waits for a decision:" in digest.body
    [posted] = slack.sent("chat.postMessage", channel=slack.user_id("operator@example.com"))
    assert posted["text"] == "1 proposal waits for a decision"
    assert f"#{proposal['id']}" in json.dumps(posted["blocks"])
    # Why it waits, as the single message says it.
    reasons = Proposal.objects.get(pk=proposal["id"]).verdict_reasons
    why = " ".join(reasons)  # sentences, one after another
    assert len(reasons) > 1 and len(why) < 300, why
    assert ".;" not in digest.body
    html = digest.alternatives[0][0]
    assert f"Why it waits: {why}" in digest.body
    assert f"Why it waits: {escape(why)}" in html
    assert f"Why it waits: {why}" in shown_text(posted["blocks"])


@pytest.mark.usefixtures("celery_worker")
def test_a_digest_email_says_why_its_reader_is_told_and_where_they_change_it(optimizer):
    """A single email says which route tells its reader ("You are told by the route …") by
    the link to their channels; a digest gave the link alone."""
    by_digest(minutes=5)
    submit(optimizer, ["150.00", "200.00"])
    digests_due_now()
    mail.outbox.clear()

    assert notifications_send_digests() == 1

    [digest] = [m for m in mail.outbox if "operator@example.com" in m.to]
    told = f"You are told by the route “{DEMO_ROUTE}”. How you are told is yours to choose: "
    assert told + "http://" in digest.body
    assert digest.body.count("You are told by") == 1  # once, for the route of both
    assert escape(told) + '<a href="http://' in digest.alternatives[0][0]


def test_a_digest_whose_run_died_sending_it_is_sent_again_its_record_saying_so(
    optimizer, monkeypatch
):
    """The run sends the digest and dies before recording it; once its lease runs out, the
    next run sends it again, and each message's record says the first attempt was
    interrupted (it may have reached the person) before the second went."""
    by_digest(minutes=1)
    [proposal] = submit(optimizer, ["150.00"])
    digests_due_now()
    mail.outbox.clear()
    monkeypatch.setattr(digests, "LEASE", timedelta(seconds=1))

    def killed(*args, **kwargs):
        raise WorkerKilled

    with monkeypatch.context() as crash:
        crash.setattr(digests, "update_with_history_where", killed)
        with pytest.raises(WorkerKilled):
            notifications_send_digests()
    assert len(mail.outbox) == 1  # it went; nothing says so yet
    assert notifications_send_digests() == 0  # its lease still stands
    time.sleep(1.1)

    assert notifications_send_digests() == 1

    assert len(mail.outbox) == 2
    [message] = Notification.objects.filter(proposal_id=proposal["id"], channel="email")
    assert (message.status, message.attempts) == (NotificationStatus.SENT, 2)
    *_, interrupted, sent = message.history.order_by("history_id").values_list(
        "history_change_reason", flat=True
    )
    assert interrupted == (
        "Attempt 1 to reach operator by email interrupted: its sender stopped before recording "
        "whether it went, so it may have reached them; to be sent again."
    )
    assert sent.startswith(
        "Sent to operator by email: on its own (held for a digest, nothing else was held for "
        "them): "
    )


def on_slack_alone() -> None:
    operator = get_user_model().objects.get(username="operator")
    reached_by_choose(user=operator, email=False, slack=True)


def due_in_a_slack_digest(optimizer, amounts: list[str]) -> list[dict]:
    """Reallocations of these amounts, held for the operator's Slack digest, now due."""
    on_slack_alone()
    by_digest(minutes=5)
    proposals = submit(optimizer, amounts)
    digests_due_now()
    return proposals


def shown(message: dict) -> str:
    """What a Slack message shows a person: its blocks' text, one after another."""
    return shown_text(message["blocks"])


def the_digest(slack) -> tuple[tuple[str, str], dict]:
    """Where the operator's one digest was posted (their direct messages), and the message
    as it is now."""
    assert slack.sent("chat.postMessage", channel=slack.user_id("operator@example.com"))
    [(where, message)] = slack.messages.items()
    return where, message


@pytest.mark.usefixtures("celery_worker")
def test_a_slack_digest_is_updated_to_say_which_proposals_no_longer_wait(optimizer, slack):
    approved, rejected, withdrawn = due_in_a_slack_digest(optimizer, ["150.00", "200.00", "250.00"])
    assert notifications_send_digests() == 1
    where, message = the_digest(slack)
    assert message["text"] == "3 proposals wait for a decision"
    # Where it went, on each message that went in it, as a single message's is kept.
    listed = Notification.objects.filter(status=NotificationStatus.SENT).order_by("pk")
    assert [(n.slack_channel, n.slack_ts, n.in_digest) for n in listed] == [(*where, True)] * 3

    operator = get_user_model().objects.get(username="operator")
    proposal_approve(proposal_id=approved["id"], reviewer=operator)

    def digest_says(headline: str) -> dict:
        now = slack.messages[where]
        return now if now["text"] == headline else None

    message = wait_until(lambda: digest_says("2 of 3 proposals still wait for a decision"))
    text = shown(message)
    assert text.startswith("2 of 3 proposals still wait for a decision\n• ")
    approved_line, rejected_line, withdrawn_line = text.split("\n• ")[1:]
    assert f"#{approved['id']} " in approved_line
    assert "No longer waits: operator approved it at " in approved_line
    assert "Why it waits" not in approved_line
    for proposal, line in ((rejected, rejected_line), (withdrawn, withdrawn_line)):
        assert f"#{proposal['id']} " in line
        assert "Why it waits: " in line and "No longer waits" not in line
    # Its update, in the outbox beside those of single messages (the others' say they were
    # re-assessed once it ran).
    [update] = Notification.objects.filter(
        kind=NotificationKind.UPDATE, proposal_id=approved["id"], about="the decision: approved"
    )
    assert (update.slack_channel, update.slack_ts) == where
    assert update.what == "Update of a message sent: the decision: approved"
    wait_until(lambda: Notification.objects.get(pk=update.pk).status == NotificationStatus.SENT)

    proposal_reject(proposal_id=rejected["id"], reviewer=operator, reason_code="wrong_signal")
    answer = optimizer.post(f"/api/v1/proposals/{withdrawn['id']}/withdraw/")
    assert answer.status_code == 200, answer.content

    message = wait_until(
        lambda: digest_says("None of the 3 proposals waits for a decision any more"), timeout=15
    )
    text = shown(message)
    assert "Why it waits" not in text
    assert "No longer waits: operator rejected it (wrong signal) at " in text
    assert "No longer waits: Its agent withdrew it at " in text
    outbox_settled()


@pytest.mark.usefixtures("celery_worker")
def test_a_slack_digest_of_long_notes_is_updated_within_what_slack_takes(optimizer, slack):
    """Twelve proposals in a digest, each withdrawn for its agent with a note of 4,900
    characters: each of their lines held a section's 3,000, the update's blocks added up to
    36,000 characters, and Slack refused it (msg_blocks_too_long), each time it was tried
    again: the digest went on saying that all twelve wait."""
    listed = due_in_a_slack_digest(optimizer, [f"{150 + n}.00" for n in range(12)])
    assert notifications_send_digests() == 1
    where, _ = the_digest(slack)
    operator = get_user_model().objects.get(username="operator")
    note = "Paused while its owner reviews the spend. " * 116

    for proposal in listed:
        proposal_withdraw_for_agent(proposal_id=proposal["id"], reviewer=operator, note=note)

    final = "None of the 12 proposals waits for a decision any more"
    message = wait_until(
        lambda: slack.messages[where]["text"] == final and slack.messages[where], timeout=30
    )
    blocks = message["blocks"]
    assert blocks_units(blocks) <= MESSAGE_TEXT_LIMIT
    # Each line's note cut, saying so (the whole is on its page); the lines it has no room
    # for are counted, for the console's queue.
    lines = shown_text(blocks[:-2]).split("\n• ")[1:]
    assert 5 <= len(lines) < 12
    assert all("No longer waits: operator withdrew it for its agent at" in line for line in lines)
    assert all(line.endswith("…") and len(line) < 1000 for line in lines)
    assert shown_text(blocks[-2:-1]) == f"… and {12 - len(lines)} more in the console's queue."
    # It still ends with why its reader is told, as it did when it went.
    assert shown_text(blocks[-1:]).startswith(f"You are told by the route “{DEMO_ROUTE}”.")
    outbox_settled()


@pytest.mark.usefixtures("celery_worker")
def test_a_slack_digest_ends_saying_each_route_that_told_its_reader_once(optimizer, slack):
    """A single Slack message and every email end with why their reader is told and a link
    to My channels; a Slack digest ended with its last proposal, so its reader could not
    tell which route to change. It names each route whose proposals it lists once (the
    demo route's two reallocations and another route's bid adjustment), within what Slack
    takes, and keeps saying it as it is updated."""
    operator = get_user_model().objects.get(username="operator")
    demo = Route.objects.get(name=DEMO_ROUTE)
    demo.action_type = "budget_reallocation"
    demo.save()
    bids = Route.objects.create(
        name="Bids _night_ *shift*, to the operator",
        action_type="bid_adjustment",
        delivery=Delivery.DIGEST,
        digest_minutes=5,
    )
    bids.users.add(operator)
    first, _ = due_in_a_slack_digest(optimizer, ["150.00", "200.00"])
    answer = optimizer.post("/api/v1/proposals/", bid_adjustment("3.00"), format="json")
    assert answer.json()["status"] == "pending_review", answer.content
    digests_due_now()

    assert notifications_send_digests() == 1

    where, message = the_digest(slack)
    assert message["text"] == "3 proposals wait for a decision"
    told = shown_text(message["blocks"][-1:])
    assert (
        told
        == (
            f"You are told by the route “{DEMO_ROUTE}”. You are told by the route “Bids _night_ "
            "*shift*, to the operator”. How you are told is yours to choose: <http"
        )
        + told.split("<http", 1)[1]
    )
    assert "/admin/notifications/reachedby/|your channels>." in told
    assert blocks_units(message["blocks"]) <= MESSAGE_TEXT_LIMIT

    proposal_reject(proposal_id=first["id"], reviewer=operator, reason_code="wrong_signal")
    updated = wait_until(
        lambda: (
            slack.messages[where]["text"] == "2 of 3 proposals still wait for a decision"
            and slack.messages[where]
        )
    )
    assert shown_text(updated["blocks"][-1:]) == told
    outbox_settled()


def test_a_slack_digest_of_many_routes_names_them_within_what_slack_takes(optimizer, slack):
    """Forty proposals each told by its own route, named in 200 characters: the footer
    names as many routes as it has room for and counts the rest, and the whole message stays
    within what Slack takes (the fake refuses msg_blocks_too_long as Slack does)."""
    operator = get_user_model().objects.get(username="operator")
    [proposal] = submit(optimizer, ["150.00"])
    [message] = proposal_messages(
        [(Proposal.objects.get(pk=proposal["id"]), NotificationKind.WAITING)], now=timezone.now()
    )
    messages = [
        replace(message, told_because=f"You are told by the route “{n:03d} {'R' * 196}”.")
        for n in range(40)
    ]

    SlackChannel().send_digest(recipient=operator, messages=messages)

    [posted] = slack.sent("chat.postMessage", channel=slack.user_id("operator@example.com"))
    assert blocks_units(posted["blocks"]) <= MESSAGE_TEXT_LIMIT
    told = shown_text(posted["blocks"][-1:])
    named = told.count("You are told by the route “")
    assert 3 <= named < 40, told
    assert [f"“{n:03d} " in told for n in range(named)] == [True] * named
    assert f"… and by {40 - named} more routes. How you are told is yours to choose: " in told


def outbox_settled() -> None:
    """Every message the test's decisions sent recorded, as the worker records it after
    Slack has it: a worker's transaction still open when the test's database is emptied
    holds the flush up (conftest's celery_worker)."""
    wait_until(
        lambda: not Notification.objects.filter(status=NotificationStatus.PENDING).exists(),
        timeout=15,
    )


@pytest.mark.usefixtures("celery_worker")
def test_a_slack_digest_that_went_as_a_proposal_in_it_was_rejected_is_updated_to_say_so(
    optimizer, slack, monkeypatch
):
    """The digest was made while both proposals waited; one was rejected while it went out:
    its record says so, and the digest is updated, as a single message is."""
    waits, rejected = due_in_a_slack_digest(optimizer, ["150.00", "200.00"])
    operator = get_user_model().objects.get(username="operator")
    send_digest = SlackChannel.send_digest

    def then_rejected(channel, **kwargs) -> Sent:
        sent = send_digest(channel, **kwargs)
        proposal_reject(proposal_id=rejected["id"], reviewer=operator, reason_code="off_brand")
        return sent

    monkeypatch.setattr(SlackChannel, "send_digest", then_rejected)
    assert notifications_send_digests() == 1

    where, message = the_digest(slack)
    [went] = Notification.objects.filter(proposal_id=rejected["id"], kind="waiting")
    assert went.status == NotificationStatus.SENT
    reason = went.history.latest("history_id").history_change_reason
    assert reason.endswith(
        "; the proposal became rejected as it went, and the message is updated to say so."
    )
    message = wait_until(
        lambda: (
            slack.messages[where]["text"] == "1 of 2 proposals still waits for a decision"
            and slack.messages[where]
        )
    )
    waits_line, rejected_line = shown(message).split("\n• ")[1:]
    assert f"#{waits['id']} " in waits_line and "Why it waits: " in waits_line
    assert f"#{rejected['id']} " in rejected_line
    assert "No longer waits: operator rejected it (off brand) at " in rejected_line


@pytest.mark.usefixtures("celery_worker")
def test_an_approval_counted_while_a_slack_digest_went_shows_in_its_line(
    optimizer, slack, operators, monkeypatch
):
    """The first of two approvals is counted while the digest is on its way (Slack has it,
    drawn before the approval, and its sender has not yet recorded it sent): the approval
    found no digest recorded sent to update, and its line said for good that nobody had
    approved. Its sender, recording it sent, reads the proposal again and updates it, as a
    single message's does."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    _, second = operators
    counted, waits = due_in_a_slack_digest(optimizer, ["150.00", "200.00"])
    send_digest = SlackChannel.send_digest

    def then_approved(channel, **kwargs) -> Sent:
        sent = send_digest(channel, **kwargs)
        proposal_approve(proposal_id=counted["id"], reviewer=second)
        return sent

    monkeypatch.setattr(SlackChannel, "send_digest", then_approved)
    assert notifications_send_digests() == 1

    where, message = the_digest(slack)
    assert "Approved by" not in shown(message)
    assert Proposal.objects.get(pk=counted["id"]).approvals_this_round == 1
    message = wait_until(
        lambda: "1 of 2 approvals" in shown(slack.messages[where]) and slack.messages[where],
        timeout=15,
    )
    counted_line, waits_line = shown(message).split("\n• ")[1:]
    assert f"#{counted['id']} " in counted_line
    assert "Approved by second-operator: 1 of 2 approvals" in counted_line
    assert f"#{waits['id']} " in waits_line and "Approved by" not in waits_line
    [update] = Notification.objects.filter(kind=NotificationKind.UPDATE)
    assert (update.proposal_id, update.about) == (
        counted["id"],
        "an approval counted as it went; it waits for 1 more",
    )
    outbox_settled()


@pytest.mark.usefixtures("celery_worker")
def test_a_slack_digest_two_of_whose_proposals_are_rejected_at_once_is_updated_once(
    optimizer, slack
):
    """A bulk rejection records an update of the digest for each proposal (each proposal's
    page says its digest was updated), and the digest, read once all of them are decided,
    is updated in one call to Slack, which limits how many it takes a minute."""
    first, second, waits = due_in_a_slack_digest(optimizer, ["150.00", "200.00", "250.00"])
    assert notifications_send_digests() == 1
    where, _ = the_digest(slack)
    operator = get_user_model().objects.get(username="operator")

    proposals_reject(
        proposal_ids=[first["id"], second["id"]], reviewer=operator, reason_code="too_aggressive"
    )

    updates = Notification.objects.filter(kind=NotificationKind.UPDATE)
    wait_until(
        lambda: set(updates.values_list("status", flat=True)) == {NotificationStatus.SENT},
        timeout=15,
    )
    assert sorted(updates.values_list("proposal_id", flat=True)) == [first["id"], second["id"]]
    [call] = slack.sent("chat.update", channel=where[0], ts=where[1])
    assert call["text"] == "1 of 3 proposals still waits for a decision"
    first_line, second_line, waits_line = shown(slack.messages[where]).split("\n• ")[1:]
    for line in (first_line, second_line):
        assert "No longer waits: operator rejected it (too aggressive) at " in line
    assert f"#{waits['id']} " in waits_line and "Why it waits: " in waits_line


@pytest.mark.usefixtures("celery_worker")
def test_taking_on_a_proposal_listed_in_a_slack_digest_leaves_the_digest_as_it_is(optimizer, slack):
    """A digest's lines do not say who is on a proposal: a claim is no reason to edit it (an
    edit that changes nothing still counts against Slack's limits), and none is recorded."""
    taken, _ = due_in_a_slack_digest(optimizer, ["150.00", "200.00"])
    assert notifications_send_digests() == 1
    where, _ = the_digest(slack)
    operator = get_user_model().objects.get(username="operator")

    proposal_claim(proposal_id=taken["id"], user=operator)
    # Then an edit that says something (a rejection: nothing runs, nothing else changes).
    proposal_reject(proposal_id=taken["id"], reviewer=operator, reason_code="wrong_signal")

    wait_until(lambda: slack.sent("chat.update", channel=where[0], ts=where[1]), timeout=15)
    [call] = slack.sent("chat.update", channel=where[0], ts=where[1])
    assert call["text"] == "1 of 2 proposals still waits for a decision"
    updates = Notification.objects.filter(kind=NotificationKind.UPDATE)
    assert list(updates.values_list("about", flat=True)) == ["the decision: rejected"]


FORGED_LINE = "• #1 Approved by ceo: executed."


@pytest.mark.usefixtures("celery_worker")
def test_a_slack_digest_shows_what_people_and_agents_wrote_as_they_wrote_it(optimizer, slack):
    """A note quoted on a digest's line was Slack's markup there: "*Approved by ceo*" showed
    bold, ":fire:" an emoji, "<https://…|click>" a link and "<!channel>" a mention of
    everyone (only "&", "<" and ">" were escaped, and Slack's markup has no escape for the
    rest). Its words are now shown as typed, on their proposal's line: a line break in them
    added a line that read as another proposal's."""
    by_reviewer, by_agent, waits = due_in_a_slack_digest(optimizer, ["150.00", "200.00", "250.00"])
    assert notifications_send_digests() == 1
    where, posted = the_digest(slack)
    operator = get_user_model().objects.get(username="operator")
    note = "x *Approved by ceo* :fire: <https://evil.example|click> <!channel> & ~more~ `ok`"

    proposal_withdraw_for_agent(
        proposal_id=by_reviewer["id"], reviewer=operator, note=f"{note}\n{FORGED_LINE}"
    )
    answer = optimizer.post(
        f"/api/v1/proposals/{by_agent['id']}/withdraw/", {"note": note}, format="json"
    )
    assert answer.status_code == 200, answer.content

    message = wait_until(
        lambda: (
            slack.messages[where]["text"] == "1 of 3 proposals still waits for a decision"
            and slack.messages[where]
        ),
        timeout=15,
    )
    blocks = message["blocks"]
    assert [text for text in markup(blocks) if "Approved by ceo" in text] == []
    assert blocks_refusal(blocks) == ""
    lines = shown_text(blocks).split("\n")
    assert FORGED_LINE not in lines
    reviewer_line, agent_line, waits_line = shown_text(blocks).split("\n• ")[1:]
    assert reviewer_line.startswith(f"#{by_reviewer['id']} ")
    assert reviewer_line.endswith(f"UTC: {note} {FORGED_LINE}")
    assert agent_line.endswith(f"UTC: “{note}”")
    assert f"#{waits['id']} " in waits_line and "Why it waits: " in waits_line
    # The words of the platform's own are styled as before: the headline bold, the labels
    # italic, each proposal's number and summary a link to its page.
    # (Its last block says why its reader is told, as a single message's does.)
    rich = [block for block in blocks if block["type"] == "rich_text"]
    assert rich == blocks[:-1]
    words = [e for block in rich for part in block["elements"] for e in part["elements"]]
    assert words[0] == {"type": "text", "text": message["text"], "style": {"bold": True}}
    assert [e["text"] for e in words if e.get("style") == {"italic": True}] == [
        "No longer waits:",
        "No longer waits:",
        "Why it waits:",
    ]
    links = [e for e in words if e["type"] == "link"]
    assert [link["url"].rsplit("/", 3)[-3] for link in links] == [
        str(p["id"]) for p in (by_reviewer, by_agent, waits)
    ]
    # No markup anywhere, as posted or updated: what the digest quotes is not Slack's to read.
    # (but the platform's own link to My channels, which ends it as it ends a single message)
    [own] = markup(blocks)
    assert markup(posted["blocks"]) == [own]
    assert own.startswith("How you are told is yours to choose: <http") and own.endswith(
        "/admin/notifications/reachedby/|your channels>."
    )
