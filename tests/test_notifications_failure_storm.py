"""A burst of failed executions does not flood people: a channel that refuses every action
(a broken endpoint) makes twenty auto-approved reallocations fail within seconds. Each person
the routes name is told of the first at once, and of the rest in one message that lists them
all (how many, each with its link and the channel's words), on each of their channels: not
twenty emails and twenty Slack messages. Nothing is lost or told twice: every failure is in
exactly one message a person receives, and each proposal's history says whom it told."""

import re
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.mail.backends import locmem
from django.utils import timezone

from approvals.models import Proposal
from approvals.services.decisions import proposal_retry
from audit.chain import chain_seal, chain_verify
from executors.runner import proposal_execute
from hitlproject.formats import console_time
from notifications.digests import notifications_send_digests
from notifications.messages import (
    FAILED_THEN_SENT_AGAIN,
    FAILED_THEN_SUPERSEDED,
    DigestLine,
    failed_since_retried_text,
)
from notifications.models import Notification, NotificationKind, NotificationStatus, ReachedBy
from notifications.slack import MESSAGE_TEXT_LIMIT
from notifications.tasks import send_due_digests
from tests.conftest import reallocation, wait_until
from tests.slack_fake import blocks_units, shown_text
from tests.test_notifications_slack import OPERATOR

OPERATOR_EMAIL = "operator@example.com"
BATCH_URL = "/api/v1/proposals/batch/"
FAILURES = 20
REFUSAL = b'{"error": "endpoint misconfigured: campaign ids unknown"}'


def submit_auto_approved(optimizer, count: int) -> list[int]:
    """``count`` small reallocations (0.5% of brand-search each): their policy lets each run
    without a person, and, moving amounts, none waits for another."""
    answer = optimizer.post(
        BATCH_URL, [reallocation(amount=f"5.{n:02d}") for n in range(count)], format="json"
    )
    assert answer.status_code in (200, 201), answer.content
    ids = [item["proposal"]["id"] for item in answer.json()]
    statuses = Proposal.objects.filter(pk__in=ids).values_list("status", flat=True)
    assert set(statuses) <= {"approved", "executing", "failed"}, statuses
    return ids


def proposal_ids_in(text: str) -> set[int]:
    return {int(found) for found in re.findall(r"/admin/approvals/proposal/(\d+)/change/", text)}


def text_of(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_twenty_failures_in_a_burst_reach_a_person_in_two_messages_on_each_channel(
    optimizer, mailbox, slack, channel, settings
):
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.create(user=operator, email=True, slack=True)
    channel(400, says=REFUSAL)

    ids = submit_auto_approved(optimizer, FAILURES)

    wait_until(lambda: Proposal.objects.filter(pk__in=ids, status="failed").count() == FAILURES)
    failed = Notification.objects.filter(proposal_id__in=ids, kind=NotificationKind.FAILED)
    wait_until(lambda: not failed.filter(status=NotificationStatus.PENDING).exists())
    # What went at once: the first failure, on each channel (failures recorded by workers at
    # the same instant take their turns: one of them finds the others told).
    at_once_by_email = len(mailbox.to(OPERATOR_EMAIL))
    at_once_on_slack = len(slack.sent("chat.postMessage", channel=OPERATOR))
    assert at_once_by_email == 1, [m["Subject"] for m in mailbox.to(OPERATOR_EMAIL)]
    assert at_once_on_slack == 1, at_once_on_slack

    # The rest are held to go together once the window since the first has passed.
    held = failed.filter(status=NotificationStatus.HELD)
    window = timedelta(seconds=settings.NOTIFICATION_FAILURES_GROUPED_SECONDS)
    assert held.count() == 2 * FAILURES - at_once_by_email - at_once_on_slack
    first_told = failed.order_by("created_at").first().created_at
    assert all(n.next_attempt_at <= first_told + window + timedelta(seconds=5) for n in held)
    send_due_digests.delay()
    time.sleep(2)
    assert len(mailbox.to(OPERATOR_EMAIL)) == at_once_by_email, "sent before its time"
    # As if the window had passed: the beat's run of the digests sends them.
    held.update(next_attempt_at=timezone.now())
    send_due_digests.delay()
    wait_until(lambda: not failed.exclude(status=NotificationStatus.SENT).exists(), timeout=30)

    emails = mailbox.to(OPERATOR_EMAIL)
    posts = slack.sent("chat.postMessage", channel=OPERATOR)
    assert len(emails) == at_once_by_email + 1, [m["Subject"] for m in emails]
    assert len(posts) == at_once_on_slack + 1, len(posts)
    # Every failure told exactly once on each channel: none lost, none twice.
    told_by_email = [proposal_ids_in(text_of(m)) for m in emails]
    assert sorted(i for told in told_by_email for i in told) == sorted(ids)
    told_on_slack = [proposal_ids_in(str(call["blocks"])) for call in posts]
    assert sorted(i for told in told_on_slack for i in told) == sorted(ids)
    grouped = next(m for m in emails if len(proposal_ids_in(text_of(m))) > 1)
    count = len(proposal_ids_in(text_of(grouped)))
    subject = " ".join(grouped["Subject"].split())
    assert subject == f"[HITL] {count} executions failed"
    text = " ".join(text_of(grouped).split())
    assert "endpoint misconfigured: campaign ids unknown" in text
    assert (
        "How it came to run: Policy “Budget reallocations” version 1 let it run without a person"
        in text
    )
    [grouped_post] = [call for call in posts if call["text"].endswith("executions failed")]
    assert (
        grouped_post["text"]
        == f"{len(proposal_ids_in(str(grouped_post['blocks'])))} executions failed"
    )
    # It ends, as a single message does, with why its reader is told, each route once.
    told = shown_text(grouped_post["blocks"][-1:])
    assert told.startswith(
        "You are told by the route “Demo: everything waiting, to the operators”. "
        "How you are told is yours to choose: <http"
    ), told
    assert blocks_units(grouped_post["blocks"]) <= MESSAGE_TEXT_LIMIT
    # Each proposal's history says whom it told, and how.
    for proposal_id in ids:
        told = [
            reason
            for reason in Proposal.history.filter(id=proposal_id).values_list(
                "history_change_reason", flat=True
            )
            if reason and "execution failed: operator" in reason
        ]
        assert told, proposal_id


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_grouped_failure_retried_is_left_out_and_one_retried_later_has_its_line_updated(
    optimizer, slack, channel
):
    """Four failures: the first told at once on Slack, three held. One of the three is sent
    to run again before they go: the grouped message leaves it out and counts two. Once it
    went, a second is sent to run again and executes: its line says so, as a single failure
    message's update does, and the headline how many were sent to run again."""
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.create(user=operator, email=False, slack=True)
    channel(400, says=REFUSAL)
    ids = submit_auto_approved(optimizer, 4)
    wait_until(lambda: Proposal.objects.filter(pk__in=ids, status="failed").count() == 4)
    failed = Notification.objects.filter(proposal_id__in=ids, kind=NotificationKind.FAILED)
    wait_until(lambda: not failed.filter(status=NotificationStatus.PENDING).exists())
    [at_once] = failed.exclude(status=NotificationStatus.HELD)
    retried_first, retried_later, left = (
        failed.filter(status=NotificationStatus.HELD)
        .order_by("pk")
        .values_list("proposal_id", flat=True)
    )

    channel(200)
    proposal_retry(proposal_id=retried_first, reviewer=operator)
    wait_until(lambda: Proposal.objects.filter(pk=retried_first, status="executed").exists())
    failed.filter(status=NotificationStatus.HELD).update(next_attempt_at=timezone.now())
    send_due_digests.delay()

    [_, grouped] = wait_until(
        lambda: (
            len(slack.sent("chat.postMessage", channel=OPERATOR)) == 2
            and slack.sent("chat.postMessage", channel=OPERATOR)
        )
    )
    assert proposal_ids_in(str(grouped["blocks"])) == {retried_later, left}
    assert grouped["text"] == "2 executions failed"
    [not_told] = failed.filter(proposal_id=retried_first)
    wait_until(lambda: not failed.filter(status=NotificationStatus.HELD).exists())
    not_told.refresh_from_db()
    assert not_told.status == NotificationStatus.NOT_SENT
    assert "a person sent the proposal to run again" in not_told.log[-1]["result"]

    proposal_retry(proposal_id=retried_later, reviewer=operator)
    wait_until(lambda: Proposal.objects.filter(pk=retried_later, status="executed").exists())
    updated = wait_until(
        lambda: [
            call
            for call in slack.sent("chat.update")
            if call["text"] == "2 executions failed; 1 was sent to run again"
            and "executed at" in str(call["blocks"])
        ]
    )
    said = str(updated[-1]["blocks"])
    assert "Its execution failed, then it was sent to run again:" in said
    assert "endpoint misconfigured" in said  # the other line, as it went
    assert at_once.proposal_id not in proposal_ids_in(said)


@pytest.mark.django_db
def test_failures_are_each_told_at_once_when_grouping_is_turned_off(optimizer, channel, settings):
    """Carried out here, with no worker: with ``HITL_FAILURES_GROUPED_SECONDS`` at 0 each
    failure is told at once, as before; by default the second waits for the first's window,
    and the proposal's history says so."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel(400, says=REFUSAL)
    first, second, third = submit_auto_approved(optimizer, 3)

    proposal_execute(proposal_id=first)
    proposal_execute(proposal_id=second)
    settings.NOTIFICATION_FAILURES_GROUPED_SECONDS = 0
    proposal_execute(proposal_id=third)

    statuses = dict(
        Notification.objects.filter(kind=NotificationKind.FAILED).values_list(
            "proposal_id", "status"
        )
    )
    assert statuses == {
        first: NotificationStatus.PENDING,
        second: NotificationStatus.HELD,
        third: NotificationStatus.PENDING,
    }
    told = Proposal.history.filter(id=second).values_list("history_change_reason", flat=True)
    # Held, it may yet go on its own (the third, told at once, is not held with it): not
    # promised "in one message" with others it cannot know of.
    assert any(
        reason
        and reason.startswith("Told that its execution failed: operator by email (held until ")
        and reason.endswith(" UTC, to go with any other failures held for them then).")
        for reason in told
    ), list(told)
    assert not any("in one message" in (reason or "") for reason in told), list(told)


HELD_WITH_FAILURES = "Held to go with the other failures told to them meanwhile, in one message"


@pytest.mark.django_db
def test_the_outbox_says_a_held_failure_is_held_to_go_with_the_other_failures(
    optimizer, channel, settings, login
):
    """A failure held to go with others read "Held for a digest" in the outbox (the
    status's one label), though no route's digest takes it: the list, its filter, the
    message's page and its history say what it is held for."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel(400, says=REFUSAL)
    first, second = submit_auto_approved(optimizer, 2)
    proposal_execute(proposal_id=first)
    proposal_execute(proposal_id=second)
    [held] = Notification.objects.filter(status=NotificationStatus.HELD)
    assert held.proposal_id == second
    auditor = login("auditor")

    def status_cells(query: str = "") -> list[str]:
        page = auditor.get(f"/admin/notifications/notification/{query}")
        assert page.status_code == 200
        return [
            " ".join(cell.split())
            for cell in re.findall(r'<td [^>]*class="field-status_shown">(.*?)</td>', page.text)
        ]

    # Until when: it went about 5 minutes later, and nothing said so.
    due = f"{HELD_WITH_FAILURES}; due to go at {console_time(held.next_attempt_at)}"
    assert held.next_attempt_at > timezone.now() + timedelta(minutes=4)
    assert sorted(status_cells()) == [due, "Pending"]
    assert status_cells("?status=held_with_failures") == [due]
    assert status_cells("?status=held") == []  # held for a digest: none is
    page = auditor.get(f"/admin/notifications/notification/{held.pk}/change/")
    assert due in " ".join(page.text.split())
    assert "Held for a digest" not in page.text

    Notification.objects.filter(pk=held.pk).update(next_attempt_at=timezone.now())
    assert notifications_send_digests() == 1
    history = auditor.get(f"/admin/notifications/notification/{held.pk}/history/")
    assert HELD_WITH_FAILURES in " ".join(history.text.split())
    assert "Held for a digest" not in history.text


@pytest.mark.django_db
def test_a_failure_after_a_retry_is_told_at_once_though_other_failures_are_held(
    optimizer, channel, settings
):
    """Three failures: the first told at once, two held. The operator sends the second to
    run again and it fails again: they wait to hear how it went, so its new failure goes at
    once (as the docs promise, "whatever else failed"); it was held with the third, for up
    to five minutes. Its first failure's held message is not sent, saying why."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    operator = get_user_model().objects.get(username="operator")
    channel(400, says=REFUSAL)
    first, second, third = submit_auto_approved(optimizer, 3)
    for proposal_id in (first, second, third):
        proposal_execute(proposal_id=proposal_id)
    failed = Notification.objects.filter(kind=NotificationKind.FAILED)
    assert sorted(failed.filter(status=NotificationStatus.HELD).values_list("proposal_id")) == [
        (second,),
        (third,),
    ]

    proposal_retry(proposal_id=second, reviewer=operator)
    proposal_execute(proposal_id=second)

    assert Proposal.objects.get(pk=second).status == "failed"
    [again] = failed.filter(proposal_id=second).order_by("-pk")[:1]
    assert again.status == NotificationStatus.PENDING, again.status_said
    told = Proposal.history.filter(id=second).values_list("history_change_reason", flat=True)
    assert told.first() == "Told that its execution failed: operator by email.", told.first()
    Notification.objects.filter(status=NotificationStatus.HELD).update(
        next_attempt_at=timezone.now()
    )
    notifications_send_digests()
    first_held = failed.filter(proposal_id=second).order_by("pk").first()
    assert first_held.status == NotificationStatus.NOT_SENT


@pytest.mark.django_db
def test_a_failure_held_after_the_others_fell_due_says_it_goes_with_them(
    optimizer, channel, settings
):
    """The held failures' message fell due a moment ago and the beat's run (every 30 s) has
    not sent it yet when another fails: it goes with them at that run, but its proposal's
    history and the outbox said it was held five minutes more ("in one message due" the
    window from now), a time it never waited for."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel(400, says=REFUSAL)
    first, second, third = submit_auto_approved(optimizer, 3)
    proposal_execute(proposal_id=first)
    proposal_execute(proposal_id=second)
    fell_due = timezone.now() - timedelta(seconds=1)
    Notification.objects.filter(status=NotificationStatus.HELD).update(next_attempt_at=fell_due)

    proposal_execute(proposal_id=third)

    [held] = Notification.objects.filter(proposal_id=third)
    assert held.status == NotificationStatus.HELD
    assert held.next_attempt_at <= timezone.now(), held.next_attempt_at
    said = Proposal.history.filter(id=third).values_list("history_change_reason", flat=True)
    due = re.search(r"held until (.+? UTC), to go with", said.first()).group(1)
    # To the second, as its page says when it is due to go ("12:16 UTC" dropped the seconds).
    assert due == console_time(held.next_attempt_at), said.first()
    assert notifications_send_digests() == 1
    assert set(
        Notification.objects.filter(proposal_id__in=(second, third)).values_list(
            "status", flat=True
        )
    ) == {NotificationStatus.SENT}


@pytest.mark.django_db
def test_held_failures_are_not_sent_to_one_who_may_no_longer_see_proposals(
    optimizer, channel, settings
):
    """Two failures held for the operator, who is taken out of every group before they
    go: nothing goes, each message's record saying why."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel(400, says=REFUSAL)
    ids = submit_auto_approved(optimizer, 3)
    for proposal_id in ids:
        proposal_execute(proposal_id=proposal_id)
    held = Notification.objects.filter(status=NotificationStatus.HELD)
    assert held.count() == 2
    operator = get_user_model().objects.get(username="operator")
    operator.groups.clear()
    held.update(next_attempt_at=timezone.now())

    assert notifications_send_digests() == 0

    for notification in Notification.objects.filter(proposal_id__in=ids[1:]):
        assert notification.status == NotificationStatus.NOT_SENT
        assert notification.log[-1]["result"] == (
            "not sent: operator may not see proposals in the console"
        )


class BeatRunsMeanwhile(locmem.EmailBackend):
    """Django's test mail backend, but while the first message is being sent the beat starts
    the next digests run, as it does every 30 s whatever the last run is still doing."""

    beat_ran = False

    def send_messages(self, messages):
        if not BeatRunsMeanwhile.beat_ran:
            BeatRunsMeanwhile.beat_ran = True
            notifications_send_digests()
        return super().send_messages(messages)


@pytest.mark.django_db
def test_a_digests_run_held_up_by_slow_sends_tells_each_failure_once(optimizer, channel, settings):
    """A digests run that began eleven minutes ago (a slow mail server held up the sends
    before this person's) reaches the operator's held failures now. It leased them until two
    minutes after it began, a time already past, so the run the beat started meanwhile took
    them as left by a stopped sender, recorded that sender 'interrupted' and sent them again:
    the operator was told twice. And the message it did not send (its proposal retried) was
    recorded as of when the run began, behind the audit chain's last sealing, so the chain
    was found broken ('inserted after its time had been sealed') with nothing tampered."""
    settings.EMAIL_BACKEND = f"{__name__}.BeatRunsMeanwhile"
    BeatRunsMeanwhile.beat_ran = False
    operator = get_user_model().objects.get(username="operator")
    channel(400, says=REFUSAL)
    first, second, third = submit_auto_approved(optimizer, 3)
    for proposal_id in (first, second, third):
        proposal_execute(proposal_id=proposal_id)
    mail.outbox.clear()
    began = timezone.now() - timedelta(minutes=11)
    held = Notification.objects.filter(status=NotificationStatus.HELD)
    assert sorted(held.values_list("proposal_id", flat=True)) == [second, third]
    held.update(next_attempt_at=began - timedelta(minutes=1))
    proposal_retry(proposal_id=third, reviewer=operator)
    chain_seal()

    notifications_send_digests(now=began)

    assert BeatRunsMeanwhile.beat_ran
    told = [m for m in mail.outbox if OPERATOR_EMAIL in m.to]
    assert len(told) == 1, [m.subject for m in told]
    [second_told] = Notification.objects.filter(proposal_id=second, kind=NotificationKind.FAILED)
    assert second_told.status == NotificationStatus.SENT
    [attempt] = second_told.log  # one attempt, not one "interrupted" and one more
    # It went alone: no digest of one.
    assert attempt["result"].startswith(
        "on its own (held to go with other failures, none was held for them): "
    ), attempt
    chain_seal()
    verification = chain_verify()
    assert verification.holds, str(verification.broken)


@pytest.mark.django_db
def test_a_held_failure_never_sent_does_not_hold_the_next_one_back(optimizer, channel, settings):
    """The operator was told of a failure six minutes ago; a second, held to go with the
    failures after it, was never sent (its proposal was sent to run again before it went).
    A third fails now: the last they heard was more than the five-minute window ago, so it
    goes at once. It was held five minutes more, for a message that told them nothing."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.NOTIFICATION_FAILURES_GROUPED_SECONDS = 300
    operator = get_user_model().objects.get(username="operator")
    channel(400, says=REFUSAL)
    first, second, third = submit_auto_approved(optimizer, 3)
    proposal_execute(proposal_id=first)
    proposal_execute(proposal_id=second)
    failed = Notification.objects.filter(kind=NotificationKind.FAILED)
    assert failed.get(proposal_id=second).status == NotificationStatus.HELD
    proposal_retry(proposal_id=second, reviewer=operator)
    failed.filter(proposal_id=second).update(next_attempt_at=timezone.now())
    assert notifications_send_digests() == 0
    [not_sent] = failed.filter(proposal_id=second)
    assert not_sent.status == NotificationStatus.NOT_SENT
    # As if the first were told six minutes ago, the second held four minutes ago.
    failed.filter(proposal_id=first).update(created_at=timezone.now() - timedelta(minutes=6))
    failed.filter(proposal_id=second).update(created_at=timezone.now() - timedelta(minutes=4))

    proposal_execute(proposal_id=third)

    [told] = failed.filter(proposal_id=third)
    assert told.status == NotificationStatus.PENDING, told.status_said
    said = Proposal.history.filter(id=third).values_list("history_change_reason", flat=True)
    assert said.first() == "Told that its execution failed: operator by email.", said.first()


@pytest.mark.django_db
def test_a_held_failure_that_will_not_go_says_so_while_it_is_held(
    optimizer, channel, settings, login
):
    """A failure held to go with others; a person sends its proposal to run again and it
    executes. Until the held messages went, "Who was told" and the outbox said it was "due
    to go at …", and then it was not sent ("a person sent the proposal to run again"). It
    says so as soon as that is so, in the sender's own words, which the sender then finds."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    channel(400, says=REFUSAL)
    first, second = submit_auto_approved(optimizer, 2)
    proposal_execute(proposal_id=first)
    proposal_execute(proposal_id=second)
    [held] = Notification.objects.filter(status=NotificationStatus.HELD)
    operator = get_user_model().objects.get(username="operator")
    channel(200)
    proposal_retry(proposal_id=second, reviewer=operator)
    assert proposal_execute(proposal_id=second).status == "executed"
    won_t_go = (
        f"{HELD_WITH_FAILURES}; will not go: a person sent the proposal to run again since its "
        "execution failed (it is now executed)"
    )
    auditor = login("auditor")

    told = auditor.get(f"/admin/approvals/proposal/{second}/change/").text
    table = told.split('id="proposal-told"')[1].split("</table>")[0]
    outbox = auditor.get("/admin/notifications/notification/?status=held_with_failures").text

    assert won_t_go in " ".join(table.split())
    assert "due to go" not in table
    assert [" ".join(cell.split()) for cell in re.findall(
        r'<td [^>]*class="field-status_shown">(.*?)</td>', outbox)] == [won_t_go]  # fmt: skip
    Notification.objects.filter(pk=held.pk).update(next_attempt_at=timezone.now())
    notifications_send_digests()
    held.refresh_from_db()
    assert held.status == NotificationStatus.NOT_SENT
    assert held.log[-1]["result"] == won_t_go.replace(
        f"{HELD_WITH_FAILURES}; will not go", "not sent"
    )


def test_an_updated_digest_of_failures_counts_one_superseded_at_its_retry_apart():
    """Of three failures grouped in one message: one sent to run again, one whose retry found
    its target moved and ended it superseded (nothing was sent to run), one standing. The
    headline counted both as sent to run again."""
    lines = [
        DigestLine(None, outcome="Executed at …", ended_as=FAILED_THEN_SENT_AGAIN),
        DigestLine(None, outcome="Superseded. …", ended_as=FAILED_THEN_SUPERSEDED),
        DigestLine(None),
    ]

    assert failed_since_retried_text(lines) == (
        "3 executions failed; 1 was sent to run again; 1 was superseded"
    )
