"""An execution that fails for good is told: a proposal its policy let run (or people approved)
whose channel answered 4xx, or whose retries ran out, waits for a person again, who may retry
it. The people the routes name for it, and those told of it before, are told on their own
channels: which proposal, what it would have done, who let it run, the channel's words on one
line, when, and the link to its page where it can be retried; on Slack without buttons. One
whose Slack message about it says so already is not sent another; a retry that then runs has
the message say so. The proposal's history says whom it told; who may not see proposals, or
was deactivated, is not told."""

import html
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils import timezone

from approvals.models import Proposal
from approvals.services.decisions import proposal_approve, proposal_retry
from executors.runner import proposal_execute
from ledger.models import Campaign
from notifications.messages import proposal_messages
from notifications.models import (
    Notification,
    NotificationKind,
    NotificationStatus,
    ReachedBy,
    Route,
)
from notifications.services import notifications_deliver
from policies.models import KillSwitch
from tests.conftest import bid_adjustment, reallocation, wait_until
from tests.slack_fake import shown_text
from tests.test_notifications_slack import (
    OPERATOR,
    approve_value,
    buttons,
    context_texts,
    headline,
    post,
    pressing,
    shown_as_typed,
    waiting_on_slack,
)

OPERATOR_EMAIL = "operator@example.com"
# What the demo's channel endpoint answers: a line break, and Slack markup and a mention that
# must show as typed, not be read.
REFUSAL = b'{"error": "campaign *brand-search* is archived"}\n<!here> :fire:'
QUOTED = (
    "the endpoint answered HTTP 400: "
    '“{"error": "campaign *brand-search* is archived"} <!here> :fire:”'
)


def auto_approved_bid(optimizer) -> dict:
    """A 6% bid raise on brand-search: its policy lets it run at once."""
    answer = optimizer.post("/api/v1/proposals/", bid_adjustment(), format="json")
    assert answer.status_code == 201, answer.content
    proposal = answer.json()
    assert proposal["status"] == "approved", proposal
    return proposal


def failed(proposal_id: int) -> Proposal:
    return wait_until(lambda: Proposal.objects.filter(pk=proposal_id, status="failed").first())


def text_of(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")


def history_reasons(proposal_id: int) -> list[str]:
    return list(
        Proposal.history.filter(id=proposal_id)
        .order_by("history_date", "history_id")
        .values_list("history_change_reason", flat=True)
    )


def failure_messages(proposal_id: int):
    return Notification.objects.filter(proposal_id=proposal_id, kind=NotificationKind.FAILED)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_an_auto_approved_bid_whose_endpoint_answers_400_is_told_to_the_operators_by_email(
    optimizer, mailbox, channel
):
    """Its first attempt answered 503 (retried: nobody is told of a retry in progress), the
    second 400: it failed, and the operators, whom the demo's route names for every demo
    proposal, are told once, by email."""
    channel(503, 400, says=REFUSAL)
    proposal = auto_approved_bid(optimizer)

    failed(proposal["id"])
    [message] = wait_until(lambda: mailbox.to(OPERATOR_EMAIL), timeout=15)

    subject = " ".join(message["Subject"].split())  # as long headers are folded
    assert subject == f"[HITL] Its execution failed: #{proposal['id']} {proposal['summary']}"
    text = text_of(message)
    said = " ".join(text.split())
    assert proposal["summary"] in text
    assert "Policy “Bid adjustments” version 1 let it run without a person at " in said
    assert proposal["verdict"]["reasons"][0] in said  # why it ran without a person
    # The endpoint's words as it typed them, on one line of the message's own; and that the
    # first attempt, a 503, may have been carried out; then, to the operator, who may retry
    # it, once, what a retry sends: a new request.
    assert (
        f"Why it failed:\n    {QUOTED}. Attempt 1 was answered HTTP 503, which does not say "
        "whether the channel carried it out.\n    Check on the channel before retrying it: a "
        "retry is a new request "
        f"(key hitl-proposal-{proposal['id']}-2) the channel cannot tell from attempt 1.\n"
    ) in text
    assert said.count("before retrying") == 1
    assert f"/admin/approvals/proposal/{proposal['id']}/change/" in text
    assert "retry it on its page if it should still run" in said
    assert "You are told by the route “Demo: everything waiting, to the operators”." in said
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "&lt;!here&gt;" in html and "<!here>" not in html
    # The 503 was a retry in progress: told once, of the failure that stands.
    assert len(mailbox.to(OPERATOR_EMAIL)) == 1
    assert not mailbox.to("auditor@example.com")
    assert not mailbox.to("policy-owner@example.com")

    # Who was told, in the audit record: the message's history, and the proposal's.
    [notification] = wait_until(
        lambda: failure_messages(proposal["id"]).filter(status=NotificationStatus.SENT)
    )
    assert notification.recipient.username == "operator"
    assert notification.what == "Its execution failed"
    notes = list(
        notification.history.order_by("history_id").values_list("history_change_reason", flat=True)
    )
    assert notes[0] == "To be sent: Its execution failed"
    assert notes[-1].startswith("Sent to operator by email: accepted by the mail server")
    assert "Told that its execution failed: operator by email." in history_reasons(proposal["id"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_on_slack_a_failure_asks_no_decision_and_says_so_once_retried_and_executed(
    optimizer, slack, channel
):
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.create(user=operator, slack=True, email=False)
    channel(400, says=REFUSAL)
    proposal = auto_approved_bid(optimizer)

    [call] = wait_until(lambda: slack.sent("chat.postMessage", channel=OPERATOR), timeout=15)
    where = next(iter(slack.messages))
    blocks = call["blocks"]
    assert headline(blocks) == "Its execution failed"
    assert buttons(blocks) == []  # a retry is made in the console
    plain = [b["text"]["text"] for b in blocks if b.get("text", {}).get("type") == "plain_text"]
    assert f"Why it failed\n{QUOTED}" in plain  # plain text: shown as typed, mention and all
    assert any(
        p.startswith(
            "How it came to run\n• Policy “Bid adjustments” version 1 let it run without a person"
        )
        for p in plain
    )
    link = context_texts(blocks)
    assert "retry it on <http" in link and f"/proposal/{proposal['id']}/change/|its page>" in link

    channel(200)
    proposal_retry(proposal_id=proposal["id"], reviewer=operator)

    executed = wait_until(
        lambda: Proposal.objects.filter(pk=proposal["id"], status="executed").first()
    )
    now = wait_until(
        lambda: (
            "executed at" in context_texts(slack.messages[where]["blocks"])
            and slack.messages[where]["blocks"]
        )
    )
    assert headline(now) == "Its execution failed, then it was sent to run again"
    approved, retried, ran = (
        f"{at:%Y-%m-%d %H:%M:%S} UTC"
        for at in (executed.decided_at, executed.approved_at, executed.executed_at)
    )
    assert shown_as_typed(now) == (
        f"Policy “Bid adjustments” version 1 let it run without a person at {approved}; its "
        f"execution failed, and operator sent it to run again at {retried}; executed at {ran}."
    )
    assert buttons(now) == []
    # Told once: the update is of the message it was sent.
    assert len(slack.sent("chat.postMessage", channel=OPERATOR)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_person_approved_failure_updates_their_slack_message_and_emails_who_was_emailed(
    optimizer, slack, mailbox, channel
):
    """The operator is told on Slack and by email: the reallocation waits, they approve it on
    Slack, its execution fails. Their Slack message says so (as it did before), no second
    Slack message is sent them, and, as an email cannot change, they are emailed that it
    failed."""
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.create(user=operator, slack=True, email=True)
    channel(400, says=REFUSAL)
    proposal, where = waiting_on_slack(optimizer, slack)
    wait_until(lambda: mailbox.to(OPERATOR_EMAIL))

    post(*pressing(OPERATOR, "approve", approve_value(where["call"]["blocks"]), where))

    failed(proposal["id"])
    said = wait_until(
        lambda: (
            "failed at" in context_texts(slack.messages[(where["channel"], where["ts"])]["blocks"])
            and context_texts(slack.messages[(where["channel"], where["ts"])]["blocks"])
        )
    )
    assert said.startswith("operator approved it at ")
    [_, failure] = wait_until(
        lambda: len(mailbox.to(OPERATOR_EMAIL)) == 2 and mailbox.to(OPERATOR_EMAIL)
    )
    assert failure["Subject"].startswith(f"[HITL] Its execution failed: #{proposal['id']} ")
    text = " ".join(text_of(failure).split())
    assert "How it came to run: - operator approved it at " in text
    assert f"Why it failed: {QUOTED}" in text
    assert len(slack.sent("chat.postMessage", channel=OPERATOR)) == 1
    assert [n.channel for n in failure_messages(proposal["id"])] == ["email"]
    assert (
        "Told that its execution failed: operator by email. Not told: operator on Slack (their "
        "message about it is updated to say it failed)." in history_reasons(proposal["id"])
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_who_may_not_see_proposals_or_was_deactivated_is_not_told_it_failed(
    optimizer, mailbox, channel
):
    """A route names an outsider (no right to see proposals) and a colleague, who was emailed
    that the reallocation waits and has been deactivated since: neither hears it failed."""
    users = get_user_model().objects
    operator = users.get(username="operator")
    outsider = users.create_user("outsider", email="outsider@example.com", is_staff=True)
    former = users.create_user("former", email="former@example.com", is_staff=True)
    former.groups.set(operator.groups.all())
    route = Route.objects.create(name="Everything, to two more")
    route.users.set([outsider, former])
    channel(400, says=REFUSAL)
    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    proposal = answer.json()
    wait_until(lambda: mailbox.to("former@example.com") and mailbox.to(OPERATOR_EMAIL))
    former.is_active = False
    former.save()

    proposal_approve(proposal_id=proposal["id"], reviewer=operator)

    failed(proposal["id"])
    wait_until(lambda: len(mailbox.to(OPERATOR_EMAIL)) == 2)
    assert len(mailbox.to("former@example.com")) == 1  # that it waited, not that it failed
    assert not mailbox.to("outsider@example.com")
    assert [n.recipient.username for n in failure_messages(proposal["id"])] == ["operator"]
    [note] = [r for r in history_reasons(proposal["id"]) if "its execution failed" in r]
    assert "Told that its execution failed: operator by email." in note
    assert "outsider (may not see proposals in the console)" in note
    assert "former (was deactivated)" in note


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_retry_that_fails_again_is_told_again_and_the_slack_message_says_so(
    optimizer, slack, mailbox, channel
):
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.create(user=operator, slack=True, email=True)
    channel(400, says=REFUSAL)
    proposal = auto_approved_bid(optimizer)
    wait_until(lambda: mailbox.to(OPERATOR_EMAIL) and slack.messages)
    where = next(iter(slack.messages))

    channel(400, says=b"still archived")
    proposal_retry(proposal_id=proposal["id"], reviewer=operator)

    failed(proposal["id"])
    [first, second] = wait_until(
        lambda: len(mailbox.to(OPERATOR_EMAIL)) == 2 and mailbox.to(OPERATOR_EMAIL)
    )
    assert QUOTED in text_of(first)
    text = " ".join(text_of(second).split())
    assert "the endpoint answered HTTP 400: “still archived”" in text
    assert ", and operator sent it to run again at " in text
    # On Slack, the message it was sent says the retry failed too; no second message.
    said = wait_until(
        lambda: (
            "still archived" in context_texts(slack.messages[where]["blocks"])
            and context_texts(slack.messages[where]["blocks"])
        )
    )
    assert ", and operator sent it to run again at " in said
    assert headline(slack.messages[where]["blocks"]) == (
        "Its execution failed, then it was sent to run again"
    )
    assert QUOTED in str(slack.messages[where]["blocks"])  # the failure it told of
    assert len(slack.sent("chat.postMessage", channel=OPERATOR)) == 1


@pytest.mark.django_db
def test_a_failure_retried_before_its_message_goes_is_not_told(optimizer, channel, settings, login):
    """Carried out here, with no worker: its message is written as it fails; a person sends
    it to run again before the message goes, which then says nothing that is no longer so.
    Its page read "Attempt 1, …: not sent: …" beside "Attempts: 0": nothing was attempted."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel(400, says=REFUSAL)
    proposal = auto_approved_bid(optimizer)
    assert proposal_execute(proposal_id=proposal["id"]).status == "failed"
    [message] = failure_messages(proposal["id"])
    assert message.status == NotificationStatus.PENDING

    operator = get_user_model().objects.get(username="operator")
    proposal_retry(proposal_id=proposal["id"], reviewer=operator)
    notifications_deliver(notification_ids=[message.pk])

    message.refresh_from_db()
    assert message.status == NotificationStatus.NOT_SENT
    assert message.log[-1]["result"] == (
        "not sent: a person sent the proposal to run again since its execution failed (it is "
        "now approved)"
    )
    page = login("auditor").get(f"/admin/notifications/notification/{message.pk}/change/")
    text = " ".join(re.sub(r"<[^>]+>", " ", page.content.decode()).split())
    assert "Attempts: 0" in text
    assert "Attempt 1" not in text
    assert "UTC: not sent: a person sent the proposal to run again" in text


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_failure_is_told_at_once_to_a_route_that_sends_digests(optimizer, mailbox, channel):
    """A digest lists what waits for a decision, every N minutes; a failure asks for a person
    now, and is not held for it."""
    route = Route.objects.get(name="Demo: everything waiting, to the operators")
    route.delivery, route.digest_minutes = "digest", 60
    route.save()
    channel(400, says=REFUSAL)
    proposal = auto_approved_bid(optimizer)

    [message] = wait_until(lambda: mailbox.to(OPERATOR_EMAIL), timeout=15)

    assert f"Its execution failed: #{proposal['id']} " in " ".join(message["Subject"].split())
    [told] = failure_messages(proposal["id"])
    assert told.route == route


@pytest.mark.django_db
def test_a_failure_sent_to_run_again_since_says_no_more_what_a_retry_would_do(optimizer):
    """A grouped failure message is rebuilt as it goes, and again when a line is updated: once
    a person sent the proposal to run again, its line said still "Retrying runs it anyway"
    under the switch engaged over it."""
    operator = get_user_model().objects.get(username="operator")
    KillSwitch.objects.create(scope="global", reason="Incident 42.")
    made = optimizer.post("/api/v1/proposals/", reallocation("400.00"), format="json").json()
    proposal_approve(proposal_id=made["id"], reviewer=operator)
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("350.00"))
    assert proposal_execute(proposal_id=made["id"]).status == "failed"
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("1000.00"))

    def told():
        proposal = Proposal.objects.get(pk=made["id"])
        [message] = proposal_messages([(proposal, NotificationKind.FAILED)], now=timezone.now())
        return message.failure

    assert told().retry_past_kill_switches == (
        "The kill switch on everything is engaged: Incident 42. Retrying runs it anyway: "
        "a person's retry is their approval, which lets it past the switch."
    )
    proposal_retry(proposal_id=made["id"], reviewer=operator)
    assert (told().kill_switches, told().retry_past_kill_switches) == ((), "")


@pytest.mark.django_db
def test_a_failure_under_an_engaged_kill_switch_says_a_retry_runs_past_it(
    optimizer, mailbox, slack, settings, login
):
    """With the switch over everything engaged, the operator approves the reallocation (a
    person's approval runs past it) and its execution fails. The proposal's page said beside
    Retry that the switch is engaged and a retry runs it anyway; the email and the Slack
    message telling them it failed offered the retry and said nothing of the switch."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.create(user=operator, slack=True, email=True)
    KillSwitch.objects.create(scope="global", reason="Incident 42.")
    proposal = optimizer.post("/api/v1/proposals/", reallocation("400.00"), format="json").json()
    proposal_approve(proposal_id=proposal["id"], reviewer=operator)
    source = Campaign.objects.get(external_id="brand-search")
    source.daily_budget = Decimal("350.00")  # cut since: the reallocation no longer fits
    source.save()
    assert proposal_execute(proposal_id=proposal["id"]).status == "failed"
    source.daily_budget = Decimal("1000.00")  # the cause mended: a retry would run
    source.save()
    warned = (
        "The kill switch on everything is engaged: Incident 42. Retrying runs it anyway: "
        "a person's retry is their approval, which lets it past the switch."
    )
    page = html.unescape(
        login("operator")
        .get(f"/admin/approvals/proposal/{proposal['id']}/change/")
        .content.decode()
    )
    assert warned in " ".join(page.split())  # the page's words, which the messages repeat

    mail.outbox.clear()
    notifications_deliver(notification_ids=[n.pk for n in failure_messages(proposal["id"])])

    [email] = [m for m in mail.outbox if m.to == [OPERATOR_EMAIL]]
    assert email.subject.startswith(f"[HITL] Its execution failed: #{proposal['id']} ")
    text = " ".join(email.body.split())
    assert f"{warned} It waits for a person: retry it on its page if it should still run" in text
    assert warned in " ".join(html.unescape(email.alternatives[0][0]).split())
    [call] = slack.sent("chat.postMessage", channel=OPERATOR)
    shown = " ".join(shown_text(call["blocks"]).split())
    assert f"{warned} It waits for a person: retry it on" in shown


@pytest.mark.django_db
def test_a_failure_superseded_at_its_retry_is_not_said_to_have_been_sent_to_run_again(
    optimizer, channel, settings
):
    """Its bid moved since it failed: a person's retry ends it superseded there and then,
    and nothing is sent to run. Its failure's message, not yet gone, is not sent, and does
    not say a person sent it to run again, which nobody did."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel(400, says=REFUSAL)
    proposal = auto_approved_bid(optimizer)
    assert proposal_execute(proposal_id=proposal["id"]).status == "failed"
    [message] = failure_messages(proposal["id"])
    Campaign.objects.filter(external_id="brand-search").update(bid=Decimal("2.50"))

    operator = get_user_model().objects.get(username="operator")
    retried = proposal_retry(proposal_id=proposal["id"], reviewer=operator)
    assert retried.status == "superseded"
    notifications_deliver(notification_ids=[message.pk])

    message.refresh_from_db()
    assert message.status == NotificationStatus.NOT_SENT
    assert message.log[-1]["result"] == (
        "not sent: superseded since its execution failed (a person retrying it found its "
        "target had moved): it will not run"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_on_slack_a_failure_superseded_at_its_retry_says_so(optimizer, slack, channel):
    """Its bid moved since it failed: the retry ends it superseded, and nothing runs. Its
    Slack message went on offering to retry it on its page, a retry that is refused."""
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.create(user=operator, slack=True, email=False)
    channel(400, says=REFUSAL)
    proposal = auto_approved_bid(optimizer)
    wait_until(lambda: slack.sent("chat.postMessage", channel=OPERATOR), timeout=15)
    where = next(iter(slack.messages))
    Campaign.objects.filter(external_id="brand-search").update(bid=Decimal("2.50"))

    assert proposal_retry(proposal_id=proposal["id"], reviewer=operator).status == "superseded"

    now = wait_until(
        lambda: (
            "Superseded" in context_texts(slack.messages[where]["blocks"])
            and slack.messages[where]["blocks"]
        ),
        timeout=15,
    )
    assert headline(now) == "Its execution failed, then it was superseded"
    assert "retry it on" not in context_texts(now)
    assert len(slack.sent("chat.postMessage", channel=OPERATOR)) == 1
