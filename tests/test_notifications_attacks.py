"""Hostile input against the notifications: an agent whose text fills a message past what Slack
takes, a person told after they were deactivated or lost their address or role, a Slack user
whose address only looks like a console user's, a Slack that answers slowly. Each test says
what a person would check; the Slack-compatible server refuses what Slack refuses
(``tests.slack_fake.blocks_refusal``)."""

import time
from dataclasses import replace
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from django.test import Client
from django.utils import timezone

from approvals.models import Decision, Proposal
from notifications import services
from notifications.digests import notifications_send_digests
from notifications.messages import Failure, proposal_messages
from notifications.models import (
    Delivery,
    Notification,
    NotificationKind,
    NotificationStatus,
    ReachedBy,
    Route,
)
from notifications.services import notifications_deliver
from notifications.slack import MESSAGE_TEXT_LIMIT, failure_blocks, message_blocks
from tests.conftest import creative, creative_batch, free_port, reallocation, wait_until
from tests.slack_fake import blocks_refusal, blocks_units, press, shown_text

pytestmark = pytest.mark.django_db(transaction=True)
DEMO_ROUTE = "Demo: everything waiting, to the operators"
URL = "/integrations/slack/interactivity/"


def operator():
    return get_user_model().objects.get(username="operator")


def on_slack_only() -> None:
    ReachedBy.objects.update_or_create(user=operator(), defaults={"slack": True, "email": False})


def held_for_a_digest() -> Route:
    route = Route.objects.get(name=DEMO_ROUTE)
    route.delivery, route.digest_minutes = Delivery.DIGEST, 1
    route.save()
    return route


def submit(client, body: dict) -> dict:
    answer = client.post("/api/v1/proposals/", body, format="json")
    assert answer.status_code == 201, answer.content
    assert answer.json()["status"] == "pending_review", answer.json()
    return answer.json()


def due_now() -> None:
    Notification.objects.filter(status=NotificationStatus.HELD).update(
        next_attempt_at=timezone.now()
    )


def send_held_one_by_one() -> list[Notification]:
    """The held notifications sent each on its own (as a route that tells at once would)."""
    Notification.objects.filter(status=NotificationStatus.HELD).update(
        status=NotificationStatus.PENDING, next_attempt_at=timezone.now()
    )
    return [
        notification
        for pk in Notification.objects.filter(status=NotificationStatus.PENDING).values_list(
            "pk", flat=True
        )
        for notification in notifications_deliver(notification_ids=[pk])
    ]


# Slack's limits: a message Slack refuses is a person never told.


def test_a_slack_digest_of_many_waiting_proposals_is_posted_within_slacks_limits(
    demo_world, optimizer, slack
):
    """A busy morning: 25 proposals wait. The digest's one section grew past Slack's 3000
    characters, Slack answered invalid_blocks (permanent) and all 25 were marked failed:
    nobody was told."""
    held_for_a_digest()
    on_slack_only()
    for n in range(25):
        submit(optimizer, reallocation(f"{150 + n}.00"))
    due_now()

    assert notifications_send_digests() == 1

    [posted] = slack.sent("chat.postMessage")
    assert blocks_refusal(posted["blocks"]) == ""
    assert Notification.objects.filter(status=NotificationStatus.SENT).count() == 25
    assert "25 proposals wait" in shown_text(posted["blocks"])


def test_a_creative_batch_full_of_banned_terms_still_reaches_the_operator_on_slack(
    demo_world, agent_client, slack
):
    """A copywriter's batch of 50 creatives, each with a banned term: 50 findings quoted in
    "Why it waits" (over 3000 characters), so Slack refused the message and the operator was
    never told of the riskiest kind of proposal."""
    held_for_a_digest()  # held, then sent one by one in this process: no worker needed
    on_slack_only()
    batch = [
        creative(headline=f"Offer {n}", body=f"Guaranteed results, number {n}, in a week.")
        for n in range(50)
    ]
    proposal = submit(agent_client("copywriter"), creative_batch(*batch))
    assert len(Proposal.objects.get(pk=proposal["id"]).verdict_reasons) >= 50

    [notification] = send_held_one_by_one()

    assert notification.status == NotificationStatus.SENT, notification.log
    [posted] = slack.sent("chat.postMessage")
    assert blocks_refusal(posted["blocks"]) == ""
    # Its 50 creatives do not all fit: it is approved on its page, where they are read.
    assert [
        e["action_id"] for b in posted["blocks"] if b["type"] == "actions" for e in b["elements"]
    ] == ["reject", "claim"]


def test_a_creative_batch_that_fills_a_slack_message_still_reaches_the_operator(
    demo_world, agent_client, slack
):
    """Seven creatives of 1,700 characters: within the 12,000 a message showed creatives up
    to, but with its headline, facts, why it waits and buttons the message's texts added up
    to more than Slack takes in one message. Slack refused it (msg_blocks_too_long), which
    was tried again as if Slack had been busy, six times, and the operator was never told."""
    held_for_a_digest()
    on_slack_only()
    batch = [creative(headline=f"Offer {n}", body="Long. " * 272) for n in range(1, 8)]
    submit(agent_client("copywriter"), creative_batch(*batch))

    [notification] = send_held_one_by_one()

    assert notification.status == NotificationStatus.SENT, notification.log
    [posted] = slack.sent("chat.postMessage")
    assert blocks_units(posted["blocks"]) <= MESSAGE_TEXT_LIMIT
    # The creatives it has no room for are named and left to its page, where they are read
    # before it is approved.
    shown = shown_text(posted["blocks"])
    assert "Creative 5\n" in shown and "Creative 6\n" not in shown
    assert (
        "Creative 6 and the 1 after it do not fit in this message: read them, and approve " in shown
    )
    assert [
        e["action_id"] for b in posted["blocks"] if b["type"] == "actions" for e in b["elements"]
    ] == ["reject", "claim"]


def test_a_message_slack_refuses_as_too_long_is_given_up_at_once_saying_why(
    demo_world, optimizer, slack
):
    """Slack's limit on a message's words is undocumented and may be lower than the platform
    allows for: its refusal (msg_blocks_too_long) was tried again six times over a quarter of
    an hour, as if Slack had been busy, to be refused each time, and the record said only
    "Slack refused it: msg_blocks_too_long"."""
    held_for_a_digest()
    on_slack_only()
    submit(optimizer, reallocation("150.00"))
    slack.blocks_text_limit = 300

    [notification] = send_held_one_by_one()

    assert notification.status == NotificationStatus.FAILED, notification.log
    assert notification.attempts == 1
    assert notification.log[-1]["result"] == (
        "Slack refused it: msg_blocks_too_long (the words of its blocks add up to more than "
        "Slack takes in one message); not tried again: Slack would refuse it again"
    )


def test_a_slack_message_whose_every_text_runs_long_stays_within_what_slack_takes(
    demo_world, agent_client
):
    """Whatever its texts hold at their longest (a summary, reasons quoting fifty creatives,
    notes of 5,000 characters, names, a batch's creatives of emoji), a message about a
    proposal, waiting or decided, adds up to what Slack takes in one message: the words an
    action would publish take the room left, and long notes are cut, saying so."""
    batch = [creative(headline="😀" * 150, body="😀" * 1200, cta="😀" * 50) for _ in range(10)]
    proposal = Proposal.objects.get(
        pk=submit(agent_client("copywriter"), creative_batch(*batch))["id"]
    )
    [message] = proposal_messages([(proposal, NotificationKind.WAITING)], now=timezone.now())
    note = "Paused by its owner: " + "😀" * 4980
    longest = replace(
        message,
        summary="s" * 300,
        agent="a" * 100,
        account="b" * 100,
        magnitude="m" * 300,
        reasons=[f"Finding {n}: “{'😀' * 200}”." for n in range(50)],
        claimed_by="c" * 150,
        claimed_until=timezone.now(),
        due_at=timezone.now(),
        progress=note,
        nobody_may_decide=note,
        approval_refused=note,
    )

    for blocks in (
        message_blocks(longest, may_decide=True, reader="c" * 150),
        message_blocks(longest, may_decide=False),
        message_blocks(longest, may_decide=False, outcome=note),
    ):
        assert blocks_refusal(blocks) == ""
        assert blocks_units(blocks) <= MESSAGE_TEXT_LIMIT
        notes = [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]
        assert all(text.endswith("…") for text in notes if text.startswith("Paused by"))
        assert " after it do not fit in this message" in notes[0]

    # And the message saying its execution failed: an endpoint's answer of 5,000 characters,
    # let run by a policy of fifty reasons, three kill switches engaged over it whose reasons
    # run as long.
    failed = replace(
        longest,
        failure=Failure(
            at=timezone.now(),
            said="😀" * 5000,
            let_run="l" * 300,
            by_policy=True,
            kill_switches=tuple(f"The kill switch on {n} is engaged: {'😀' * 5000}" for n in "abc"),
        ),
    )
    for blocks in (
        failure_blocks(failed, may_retry=True),
        failure_blocks(failed, may_retry=False),
        failure_blocks(failed, may_retry=False, outcome=note),
    ):
        assert blocks_refusal(blocks) == ""
        assert blocks_units(blocks) <= MESSAGE_TEXT_LIMIT
        assert "Why it failed\n😀😀" in shown_text(blocks)


# Who is told: as they are when it is sent, not as they were when it was recorded.


def test_a_person_deactivated_before_the_message_went_is_not_sent_it(demo_world, optimizer):
    held_for_a_digest()
    submit(optimizer, reallocation("150.00"))
    person = operator()
    person.is_active = False
    person.save()
    mail.outbox.clear()

    [notification] = send_held_one_by_one()

    assert not [m for m in mail.outbox if "operator@example.com" in m.to]
    assert notification.status == NotificationStatus.NOT_SENT
    assert "deactivated" in notification.log[-1]["result"]


def test_a_person_removed_from_every_group_is_not_sent_what_they_may_no_longer_see(
    demo_world, optimizer
):
    held_for_a_digest()
    submit(optimizer, reallocation("150.00"))
    person = operator()
    person.groups.clear()
    assert not person.has_perm("approvals.view_proposal")
    mail.outbox.clear()

    [notification] = send_held_one_by_one()

    assert not [m for m in mail.outbox if "operator@example.com" in m.to]
    assert notification.status == NotificationStatus.NOT_SENT


def test_an_email_to_a_person_whose_address_was_removed_is_not_recorded_as_accepted(
    demo_world, optimizer
):
    """Django sends nothing to no address and says so by returning 0; the outbox recorded
    "accepted by the mail server for " and showed the message as sent."""
    held_for_a_digest()
    submit(optimizer, reallocation("150.00"))
    get_user_model().objects.filter(username="operator").update(email="")
    mail.outbox.clear()

    [notification] = send_held_one_by_one()

    assert notification.status != NotificationStatus.SENT, notification.log
    assert "accepted" not in notification.log[-1]["result"]


def test_a_digest_to_a_person_deactivated_meanwhile_is_not_sent(demo_world, optimizer):
    held_for_a_digest()
    submit(optimizer, reallocation("150.00"))
    submit(optimizer, reallocation("160.00"))
    get_user_model().objects.filter(username="operator").update(is_active=False)
    due_now()
    mail.outbox.clear()

    assert notifications_send_digests() == 0

    assert not [m for m in mail.outbox if "operator@example.com" in m.to]
    assert set(Notification.objects.values_list("status", flat=True)) == {
        NotificationStatus.NOT_SENT
    }


# A burst: the messages a backlog holds go out in chunks, each exactly once.


def test_a_burst_of_waiting_proposals_tells_the_operator_once_of_each_that_still_waits(
    demo_world, optimizer
):
    """A task whose own message leaves room sends the others that are due with it, each
    recorded as what became of it: sent, or not sent because its proposal was withdrawn
    meanwhile. The tasks of the messages it took find nothing left to send."""
    held_for_a_digest()
    proposals = [submit(optimizer, reallocation(f"{150 + i}.00"))["id"] for i in range(5)]
    withdrawn = proposals[2]
    assert optimizer.post(f"/api/v1/proposals/{withdrawn}/withdraw/").status_code == 200
    Notification.objects.filter(status=NotificationStatus.HELD).update(
        status=NotificationStatus.PENDING, next_attempt_at=timezone.now()
    )
    told = dict(
        Notification.objects.filter(proposal_id__in=proposals).values_list("proposal_id", "pk")
    )
    assert len(told) == 5
    mail.outbox.clear()

    sent = notifications_deliver(notification_ids=[told[proposals[0]]], others_due=True)

    assert {n.pk: n.status for n in sent} == {
        pk: NotificationStatus.NOT_SENT if proposal == withdrawn else NotificationStatus.SENT
        for proposal, pk in told.items()
    }
    assert sorted(m.subject.split("#")[1].split()[0] for m in mail.outbox) == sorted(
        str(proposal) for proposal in proposals if proposal != withdrawn
    )
    for pk in told.values():
        assert notifications_deliver(notification_ids=[pk], others_due=True) == []
    assert len(mail.outbox) == 4
    # Each message's history says what became of it, and the row says the same.
    for proposal, pk in told.items():
        row = Notification.objects.get(pk=pk)
        last = row.history.order_by("-history_id").first()
        assert last.status == row.status
        if proposal == withdrawn:
            assert row.status == NotificationStatus.NOT_SENT
            assert "no longer waits" in last.history_change_reason
        else:
            assert row.status == NotificationStatus.SENT and row.attempts == 1
            assert last.history_change_reason.startswith("Sent to operator by email")


def told_at_once(proposals: list[int]) -> list[int]:
    """The held messages about ``proposals`` made due now, as a route that tells at once
    leaves them; their ids, oldest first."""
    Notification.objects.filter(status=NotificationStatus.HELD).update(
        status=NotificationStatus.PENDING, next_attempt_at=timezone.now()
    )
    return list(
        Notification.objects.filter(proposal_id__in=proposals)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def test_a_slack_out_of_reach_holds_back_none_of_the_emails_sent_with_it(
    demo_world, optimizer, slack, settings
):
    """The operator is told by email and on Slack; Slack cannot be reached (its client raises
    a connection error, not Slack's own). That message is tried again later, saying why;
    the emails taken with it go once, and nothing is sent twice."""
    held_for_a_digest()
    ReachedBy.objects.update_or_create(user=operator(), defaults={"slack": True, "email": True})
    proposals = [submit(optimizer, reallocation(f"{150 + i}.00"))["id"] for i in range(2)]
    ids = told_at_once(proposals)
    assert len(ids) == 4
    settings.SLACK_API_URL = f"http://127.0.0.1:{free_port()}/api/"
    mail.outbox.clear()

    notifications_deliver(notification_ids=ids[:1], others_due=True)
    for pk in ids:
        assert notifications_deliver(notification_ids=[pk], others_due=True) == []

    assert sorted(m.subject.split("#")[1].split()[0] for m in mail.outbox) == sorted(
        str(proposal) for proposal in proposals
    )
    for row in Notification.objects.filter(pk__in=ids):
        assert row.attempts == 1, row.log
        if row.channel == "email":
            assert row.status == NotificationStatus.SENT
        else:
            assert row.status == NotificationStatus.PENDING
            assert row.next_attempt_at > timezone.now()
            assert row.log[-1]["result"].startswith("Slack could not be reached"), row.log
            reason = row.history.order_by("-history_id").first().history_change_reason
            assert reason.startswith("Not yet reached operator on Slack (attempt 1), retried")


def test_a_chunk_that_outlasts_its_sending_time_gives_the_rest_back_untried(
    demo_world, optimizer, slack, monkeypatch
):
    """Slack answers slowly: once the task's time to send is up, what it has not sent is
    given back, due at once and with no attempt counted, and another task sends it; nothing
    goes twice."""
    held_for_a_digest()
    on_slack_only()
    proposals = [submit(optimizer, reallocation(f"{150 + i}.00"))["id"] for i in range(3)]
    ids = told_at_once(proposals)
    answer_of = slack.answer

    def slow(method, args, *, token):
        if method == "chat.postMessage":
            time.sleep(0.5)
        return answer_of(method, args, token=token)

    slack.answer = slow
    monkeypatch.setattr(services, "SENDING_TIME", timedelta(seconds=0.2))
    try:
        [first] = notifications_deliver(notification_ids=ids[:1], others_due=True)
    finally:
        slack.answer = answer_of

    assert first.pk == ids[0] and first.status == NotificationStatus.SENT
    # Given back due at once: the task queued for them (the worker's, once it runs) or this
    # one sends them, long before their lease would have run out.
    monkeypatch.setattr(services, "SENDING_TIME", timedelta(seconds=15))
    notifications_deliver(notification_ids=ids[1:], others_due=True)
    sent = Notification.objects.filter(pk__in=ids, status=NotificationStatus.SENT)
    wait_until(lambda: sent.count() == 3, timeout=10)
    # One attempt each: the one given back untried was not counted.
    assert [row.attempts for row in sent] == [1, 1, 1]
    assert len(slack.sent("chat.postMessage")) == 3


# The Slack user behind a press.


def test_a_slack_address_that_only_folds_to_a_console_users_address_decides_nothing(
    demo_world, optimizer, slack
):
    """Kim decides on Slack; a Slack user whose address is written with a dotless i (U+0131,
    as in an address at a look-alike domain) is not kim@example.com, though PostgreSQL's
    upper() (which ``iexact`` uses) folds it to "I"."""
    kim = get_user_model().objects.create_user(
        "kim", email="kim@example.com", password="kim-password-1"
    )
    kim.groups.add(Group.objects.get(name="operators"))
    slack.people["U0LOOKALIKE"] = "k\u0131m@example.com"
    proposal = submit(optimizer, reallocation("150.00"))

    answer = post_press("U0LOOKALIKE", "approve", proposal["id"])

    assert answer.status_code == 200
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()
    assert "no active console user" in told(slack, "U0LOOKALIKE")


def post_press(slack_user: str, action: str, proposal_id: int):
    body, headers = press(user_id=slack_user, action_id=action, value=str(proposal_id))
    headers = dict(headers)
    content_type = headers.pop("Content-Type")
    return Client().post(URL, data=body, content_type=content_type, headers=headers)


def told(slack, slack_user: str) -> str:
    return " ".join(call["text"] for call in slack.sent("chat.postEphemeral", user=slack_user))


# Slack's 3 seconds.


def test_a_press_is_answered_within_slacks_three_seconds_when_slack_is_slow(
    demo_world, optimizer, slack
):
    """users.info and chat.postEphemeral each answer in 0.9 s (under the 1 s each call is
    given): the answer to Slack still comes within its 3 s."""
    proposal = submit(optimizer, reallocation("150.00"))
    answer_of = slack.answer

    def slow(method, args, *, token):
        if method in ("users.info", "chat.postEphemeral"):
            time.sleep(0.9)
        return answer_of(method, args, token=token)

    slack.answer = slow
    try:
        started = time.monotonic()
        answer = post_press("U0AUDITOR", "approve", proposal["id"])
        took = time.monotonic() - started
    finally:
        slack.answer = answer_of

    assert answer.status_code == 200
    assert took < 3, f"answered Slack after {took:.1f} s"


# The mail server's answers.


@pytest.fixture
def refusing_mail_server(settings):
    """An SMTP server that refuses every recipient for good (550), as one does an address
    that does not exist."""

    class Refusing:
        async def handle_RCPT(self, server, session, envelope, address, options):
            return "550 5.1.1 No such user here"

    controller = Controller(Refusing(), hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    yield controller
    controller.stop()


def test_an_address_the_mail_server_refuses_for_good_is_not_tried_again(
    demo_world, optimizer, refusing_mail_server
):
    """550 "no such user" is permanent: the outbox said it would try again (six times,
    over a quarter of an hour), as if the server had been busy."""
    held_for_a_digest()
    submit(optimizer, reallocation("150.00"))

    [notification] = send_held_one_by_one()

    assert notification.status == NotificationStatus.FAILED, notification.log
    assert notification.attempts == 1
    assert "550" in notification.log[-1]["result"]


# Slack's rate limits.


def test_a_message_slack_rate_limits_is_tried_again_no_sooner_than_slack_says(
    demo_world, optimizer, slack
):
    """Slack answers 429 with Retry-After: 600 (a burst of messages). The outbox tried again
    after its own 30 s, and again and again, giving up after six attempts while Slack still
    asked it to wait: a burst of proposals became notifications marked failed."""
    held_for_a_digest()
    on_slack_only()
    submit(optimizer, reallocation("150.00"))
    slack.rate_limited["chat.postMessage"] = 600

    [notification] = send_held_one_by_one()

    assert notification.status == NotificationStatus.PENDING
    assert "ratelimited" in notification.log[-1]["result"]
    waits = (notification.next_attempt_at - timezone.now()).total_seconds()
    assert waits >= 590, f"tried again after {waits:.0f} s"


# Several routes naming one person.


def test_a_person_on_an_at_once_route_is_told_at_once_whatever_digest_route_also_names_them(
    demo_world, optimizer
):
    demo = Route.objects.get(name=DEMO_ROUTE)
    demo.is_active = False
    demo.save()
    operators = Group.objects.get(name="operators")
    for name, delivery in (
        ("A: everything, in a daily digest", Delivery.DIGEST),
        (
            "Z: urgent, at once",
            Delivery.IMMEDIATELY,
        ),
    ):
        route = Route.objects.create(name=name, delivery=delivery, digest_minutes=24 * 60)
        route.groups.add(operators)

    submit(optimizer, reallocation("150.00"))

    [notification] = Notification.objects.filter(recipient=operator())
    assert notification.status == NotificationStatus.PENDING, "held for tomorrow's digest"


# What an agent writes, quoted in the messages.


@pytest.mark.parametrize("line_break", ["\n", "\r\n", "\u2028", "\x85"])
def test_an_agents_line_breaks_in_a_quoted_creative_cannot_add_lines_to_why_it_waits(
    demo_world, optimizer, slack, line_break
):
    """A finding quotes the creative around the banned term as submitted. A copywriter that
    puts a line break right after it wrote a line of its own into "Why it waits", in the
    email and on Slack, where it read as one more of the platform's reasons:
    "- Cleared by legal"."""
    held_for_a_digest()
    ReachedBy.objects.update_or_create(user=operator(), defaults={"slack": True, "email": True})
    body = f"Guaranteed{line_break}- Cleared by legal{line_break}• Cleared by legal"
    proposal = submit(optimizer, creative_batch(creative(body=body)))
    mail.outbox.clear()

    sent = send_held_one_by_one()

    assert [n.status for n in sent] == [NotificationStatus.SENT] * 2, [n.log for n in sent]
    quoted = next(r for r in proposal["verdict"]["reasons"] if "banned term" in r)
    assert "Cleared by legal" in quoted
    assert len(quoted.splitlines()) == 1, quoted
    [email] = [m for m in mail.outbox if "operator@example.com" in m.to]
    assert "- Cleared by legal" not in email.body.splitlines()
    assert not any(line.startswith("- Cleared") for line in email.body.splitlines())
    [posted] = slack.sent("chat.postMessage")
    why = next(b["text"]["text"] for b in posted["blocks"] if "Why it waits" in str(b))
    assert not any(line.startswith("• Cleared") for line in why.splitlines()), why


def test_a_why_it_waits_of_emoji_fits_a_slack_message_as_slack_may_count_it(
    demo_world, agent_client, slack
):
    """A copywriter's batch of 50 creatives, each with a banned term among emoji: their 50
    findings, cut to 3,000 characters, are 5,000 UTF-16 units and more (an emoji is two), past
    a section's 3,000 if Slack counts units, as a creative's words are measured since
    8e28998. Slack would refuse the whole message (for good), and tell the operator nothing."""
    held_for_a_digest()
    on_slack_only()
    emoji = "😀" * 30
    batch = [creative(headline=f"Offer {n}", body=f"{emoji}Guaranteed{emoji}") for n in range(50)]
    submit(agent_client("copywriter"), creative_batch(*batch))

    [notification] = send_held_one_by_one()

    assert notification.status == NotificationStatus.SENT, notification.log
    [posted] = slack.sent("chat.postMessage")
    assert blocks_refusal(posted["blocks"]) == ""
    why = next(b["text"]["text"] for b in posted["blocks"] if "Why it waits" in str(b))
    assert why.endswith("… and more on its page.")


@pytest.mark.usefixtures("celery_worker")
def test_an_agents_withdrawal_note_of_emoji_still_updates_its_slack_message(
    demo_world, optimizer, slack
):
    """An agent withdraws its proposal with a note of 3,000 emoji (the API takes 5,000
    characters): cut to 3,000 characters, the update's note was 6,000 UTF-16 units, and a
    Slack counting them refuses the update for good; the message went on offering Approve
    for a proposal withdrawn."""
    on_slack_only()
    proposal = submit(optimizer, reallocation())
    wait_until(lambda: slack.sent("chat.postMessage"), timeout=15)
    [where] = wait_until(lambda: list(slack.messages))

    answer = optimizer.post(
        f"/api/v1/proposals/{proposal['id']}/withdraw/", {"note": "😀" * 3000}, format="json"
    )
    assert answer.status_code == 200, answer.content

    def updated():
        blocks = slack.messages[where]["blocks"]
        return blocks if "Its agent withdrew it at" in str(blocks) else None

    blocks = wait_until(updated, timeout=15)
    assert not [b for b in blocks if b["type"] == "actions"]
    assert blocks_refusal(blocks) == ""
