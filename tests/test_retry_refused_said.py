"""What a failure's messages and its page say of a retry is true when they are read: where a
retry is refused now, whoever would make it (a guardrail set since it failed, its agent
stopped), they say so and why, in the words the retry itself is refused with
(``retry_refused_now``, the checks ``retry_refusal`` makes), not what a retry would send;
where a retry would only end it superseded (a campaign it sets gone from the ledger), they
say that. A digest of failures reads it for all of them in one go, and says what a retry
would do only to a reader who may retry. A kill switch engaged since refuses no retry: a
person's retry runs past it, as the messages said already."""

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from approvals.models import Agent, Proposal
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from hitlproject.formats import console_time
from ledger.models import Campaign
from notifications.digests import digest_send
from notifications.models import (
    Notification,
    NotificationKind,
    NotificationStatus,
    ReachedBy,
    Route,
)
from notifications.services import notifications_deliver
from notifications.tasks import send_due_digests
from tests.conftest import bid_adjustment, wait_until
from tests.factories import evaluated
from tests.slack_fake import shown_text
from tests.test_notifications_failures import OPERATOR_EMAIL, failure_messages
from tests.test_notifications_slack import OPERATOR
from tests.test_policy_change_waiting import reallocations, saved
from tests.test_proposal_campaign_not_active import notice, pause
from tests.test_retry_reassessed import executed_reallocation, failed_reallocation

CAPPED = "generic-search's daily budget would be 525.00 USD, above its cap of 510.00 USD."
FAILS_AGAIN = "A retry would fail again: its execution would refuse it."
STOPPED = (
    "cannot be let run: agent optimizer has been deactivated since it proposed it. A retry is "
    "refused while that is so: it stays failed."
)


def budget_raise(campaign: str, budget: str) -> dict:
    """A 5% raise of ``campaign``'s daily budget: its policy lets it run without a person."""
    return bid_adjustment(action_type="budget_change") | {
        "payload": {"campaign": campaign, "new_daily_budget": budget}
    }


def words(text: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def check_said(proposal_id: int) -> str:
    """What a failure's message says to check before a retry of ``proposal_id`` sends."""
    return (
        "Check on the channel before retrying it: a retry is a new request "
        f"(key hitl-proposal-{proposal_id}-2) the channel cannot tell from attempt 1."
    )


def line_of(text: str, proposal_id: int) -> str:
    """A digest's lines about ``proposal_id``, up to the next proposal's."""
    after = text.split(f"#{proposal_id} ", 1)[1]
    return re.split(r"\n#\d+ |• #\d+ ", after, maxsplit=1)[0]


def failed_after_a_server_error(channel, monkeypatch):
    """A raise of generic-search whose first attempt got a 503 (no sure answer), its second
    a 400: failed, its follow-up tasks (the failure's message among them) left unsent."""
    channel(503, 400, retry_after="600")
    with monkeypatch.context() as patch:
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        proposal = evaluated(budget_raise("generic-search", "525.00"))
        assert proposal.status == "approved"
        assert proposal_execute(proposal_id=proposal.pk).status == "executing"
        ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())
        assert proposal_execute(proposal_id=proposal.pk).status == "failed"
    return Proposal.objects.get(pk=proposal.pk)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_digest_of_failures_says_which_retry_is_refused_now_and_what_the_others_would_do(
    optimizer, mailbox, slack, channel
):
    """Three raises failed after a 503 each, after a first failure told at once: held to go
    together. Meanwhile generic-search is capped below one, and display-retarget is gone from
    the ledger. The digest said of each "Check on the channel before retrying it: a retry is
    a new request (key …)": of the capped one, whose retry is refused, and of the one a retry
    ends superseded, sending nothing."""
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.create(user=operator, email=True, slack=True)
    channel(400, 503, 400, 503, 400, 503, 400)
    ids = []
    for campaign, budget in (
        ("brand-search", "1040.00"),  # told at once
        ("generic-search", "525.00"),
        ("brand-search", "1050.00"),
        ("display-retarget", "315.00"),
    ):
        answer = optimizer.post("/api/v1/proposals/", budget_raise(campaign, budget), format="json")
        assert answer.json()["status"] == "approved", answer.content
        ids.append(answer.json()["id"])
        wait_until(lambda i=ids[-1]: Proposal.objects.get(pk=i).status == "failed", timeout=30)
    failed = Notification.objects.filter(proposal_id__in=ids, kind=NotificationKind.FAILED)
    wait_until(lambda: not failed.filter(status=NotificationStatus.PENDING).exists())
    held = failed.filter(status=NotificationStatus.HELD)
    assert set(held.values_list("proposal_id", flat=True)) == set(ids[1:])
    _, capped, free, gone = ids
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="510.00")
    Campaign.objects.filter(external_id="display-retarget").delete()

    held.update(next_attempt_at=timezone.now())
    send_due_digests.delay()
    wait_until(lambda: not failed.exclude(status=NotificationStatus.SENT).exists(), timeout=30)

    [digest] = [m for m in mailbox.to(OPERATOR_EMAIL) if "3 executions failed" in m["Subject"]]
    text = digest.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
    posts = slack.sent("chat.postMessage", channel=OPERATOR)
    [call] = [c for c in posts if c["text"] == "3 executions failed"]
    shown = shown_text(call["blocks"])
    refused = f"A guardrail refuses proposal #{capped} now: {CAPPED} {FAILS_AGAIN}"
    ends_it = (
        "It was made against a value that has changed since (display-retarget's daily budget "
        "is —, was 300.00): retried, it is superseded there and then, and nothing is sent to "
        "run; optimizer is told the value it saw and the value now."
    )
    for said in (text, shown):
        assert refused in words(line_of(said, capped))
        assert "before retrying" not in line_of(said, capped)
        assert check_said(free) in words(line_of(said, free))
        assert ends_it in words(line_of(said, gone))
        assert "before retrying" not in line_of(said, gone)
    assert "unless its lines say a retry is refused now" in words(text)


@pytest.mark.django_db
def test_a_failure_whose_agent_was_stopped_since_says_a_retry_is_refused(
    channel, monkeypatch, slack, settings, login
):
    """The agent deactivated after its raise failed: the email and the Slack message said
    only "Read it on its page", and the page "It can be rejected or withdrawn", which a
    failed proposal cannot be. Both say that a retry is refused, and why, in the words a
    retry pressed anyway is refused with."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.create(user=operator, slack=True, email=True)
    proposal = failed_after_a_server_error(channel, monkeypatch)
    Agent.objects.filter(name="optimizer").update(is_active=False)

    mail.outbox.clear()
    notifications_deliver(notification_ids=[n.pk for n in failure_messages(proposal.pk)])

    refused = f"Proposal #{proposal.pk} {STOPPED}"
    [email] = [m for m in mail.outbox if m.to == [OPERATOR_EMAIL]]
    for said in (email.body, email.alternatives[0][0]):
        assert f"{refused} Read it on its page" in words(said)
        assert "before retrying" not in said
    [call] = slack.sent("chat.postMessage", channel=OPERATOR)
    shown = words(shown_text(call["blocks"]))
    assert f"{refused} Read it on" in shown and "before retrying" not in shown

    client = login("operator")
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])).text
    [note] = re.findall(r'<p class="errornote" id="agent-stopped">(.*?)</p>', page)
    assert words(note) == refused
    assert "rejected or withdrawn" not in page and 'id="retry-form"' not in page
    retry = reverse("admin:approvals_proposal_retry", args=[proposal.pk])
    pressed = client.post(retry, follow=True)
    assert refused in words(pressed.text)
    assert Proposal.objects.get(pk=proposal.pk).status == "failed"


@pytest.mark.django_db
def test_a_failure_capped_since_says_why_its_retry_is_refused_not_read_it_only(
    channel, monkeypatch, slack, settings
):
    """Capped after it failed by a 503 then a 400: its messages dropped what a retry would
    send and said "Read it on its page", not why nobody may retry it."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.create(user=operator, slack=True, email=True)
    proposal = failed_after_a_server_error(channel, monkeypatch)
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="510.00")

    mail.outbox.clear()
    notifications_deliver(notification_ids=[n.pk for n in failure_messages(proposal.pk)])

    refused = f"A guardrail refuses proposal #{proposal.pk} now: {CAPPED} {FAILS_AGAIN}"
    [email] = [m for m in mail.outbox if m.to == [OPERATOR_EMAIL]]
    assert f"{refused} Read it on its page" in words(email.body)
    [call] = slack.sent("chat.postMessage", channel=OPERATOR)
    assert f"{refused} Read it on" in words(shown_text(call["blocks"]))


RETRYING = (
    "Retrying it still makes the change on generic-search as it is, paused: retrying does not "
    "activate it, so the change takes effect only once someone does."
)


def told_of_failures(slack, proposals, people, *, together: bool) -> dict:
    """What each of ``people`` (reached by email and on Slack) is told of each failed
    proposal, in words, by (username, "email" | "html" | "slack", proposal id): in a message
    of its own, or, ``together``, held and sent in one message telling of all of them."""
    told = Notification.objects.filter(
        proposal_id__in=[p.pk for p in proposals], kind=NotificationKind.FAILED
    )
    mail.outbox.clear()
    if together:
        told.update(status=NotificationStatus.HELD, next_attempt_at=timezone.now())
        for person in people:
            for channel in ("email", "slack"):
                digest_send(
                    recipient_id=person.pk, channel=channel, now=timezone.now(), failures=True
                )
    else:  # the second failure's, held to go with the first, sent alone all the same
        told.update(status=NotificationStatus.PENDING, next_attempt_at=timezone.now())
        notifications_deliver(notification_ids=[n.pk for n in told])
    said = {}
    for person in people:
        emails = [m for m in mail.outbox if m.to == [person.email]]
        texts = {
            "email": [m.body for m in emails],
            "html": [m.alternatives[0][0] for m in emails],
            "slack": [
                shown_text(call["blocks"])
                for call in slack.sent("chat.postMessage", channel=f"U0{person.username.upper()}")
            ],
        }
        for proposal in proposals:
            for how, found in texts.items():
                [text] = [t for t in found if f"#{proposal.pk} " in t]
                if together and how != "html":
                    text = line_of(text, proposal.pk)
                said[(person.username, how, proposal.pk)] = words(text)
    return said


@pytest.fixture
def reached(demo_world):
    """The operator, who may retry a failed proposal, and the auditor, who may read it and
    not retry it, both told of every failure (a route names the auditor), by email and on
    Slack."""
    users = get_user_model().objects
    operator, auditor = users.get(username="operator"), users.get(username="auditor")
    for person in (operator, auditor):
        ReachedBy.objects.create(user=person, slack=True, email=True)
    Route.objects.create(name="Everything, to the auditor").users.add(auditor)
    return operator, auditor


@pytest.mark.django_db
@pytest.mark.parametrize("together", [False, True], ids=["alone", "together"])
def test_a_failure_on_a_campaign_paused_since_says_what_retrying_does_to_who_may_retry(
    reached, slack, settings, login, together
):
    """A move into generic-search failed, then generic-search was paused. Its Slack message
    said to the auditor, beside "Read it on its page", "Retrying it still makes the change on
    generic-search as it is, paused: …", which their page of it does not say (they may not
    retry it), and said the pause once for each message going out with it; its email said
    nothing of the pause, to anyone. Now each says what the reader's page says: the pause,
    and, to one who may retry it, what retrying does there."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    operator, auditor = reached
    failed = failed_reallocation(operator, "180.00")
    paused = pause("generic-search", operator)
    failed.refresh_from_db()

    said = told_of_failures(slack, [failed], [operator, auditor], together=together)

    pause_said = (
        f"Campaign generic-search is paused now (by proposal #{paused.pk}, executed at "
        f"{console_time(paused.executed_at)}, after this one was proposed)."
    )
    for person, page_says in (
        (operator, f"{pause_said} {RETRYING}"),
        (auditor, pause_said),
    ):
        assert words(notice(login(person.username), failed)) == page_says
        for how in ("email", "html", "slack"):
            text = said[(person.username, how, failed.pk)]
            assert text.count("is paused now") == 1, (person, how, text)
            assert page_says in text, (person, how, text)
            assert (RETRYING in text) == (person == operator), (person, how, text)


@pytest.mark.django_db
@pytest.mark.parametrize("together", [False, True], ids=["alone", "together"])
def test_failed_moves_their_source_cut_since_say_what_their_pages_say_of_a_retry(
    reached, slack, settings, login, together
):
    """Two moves out of brand-search failed (18% and 24%, under a 25% hard ceiling and a 40%
    cumulative one on the budget they raise); 150.00 moved the same way since. Re-assessed
    as a retry would run them, the 24% one is above the hard ceiling: its page offers no
    Retry and says why, as its messages do. The 18% one is over the cumulative ceiling: its
    page says so beside Retry, but its messages said nothing of it and invited the retry.
    Now they say it too, to whoever may retry it, as the page does."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    operator, auditor = reached
    saved(
        login("policy-owner"),
        reallocations(),
        block_above_magnitude="25",
        cumulative_max_magnitude="40",
    )
    over_cumulative = failed_reallocation(operator, "180.00")
    refused = failed_reallocation(operator, "240.00")
    executed_reallocation(operator, "150.00")  # brand-search 850.00, generic-search 650.00

    said = told_of_failures(
        slack, [over_cumulative, refused], [operator, auditor], together=together
    )

    pages = {
        (person.username, proposal.pk): login(person.username)
        .get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
        .text
        for person in (operator, auditor)
        for proposal in (over_cumulative, refused)
    }
    [note] = re.findall(
        r'<p class="errornote" id="retry-over-cumulative">(.*?)</p>',
        pages[("operator", over_cumulative.pk)],
    )
    note = words(note)
    assert note.startswith("Re-assessed now, as a retry would run it, as the budget it draws ")
    assert "over the 40.0% cumulative ceiling" in note
    [why] = re.findall(
        r'<p class="errornote" id="retry-refused-by-guardrail">(.*?)</p>',
        pages[("operator", refused.pk)],
    )
    why = words(why).removeprefix("The hard ceiling of the policy that routed it refuses it now: ")
    assert why.startswith("Re-assessed since policy “Budget reallocations” routed this proposal")
    assert "28.2% of brand-search's daily budget is above the 25.0% hard ceiling" in why
    refusal = (
        f"The hard ceiling of the policy that routed it refuses proposal #{refused.pk} now: {why}"
    )
    for person in (operator, auditor):
        may_retry = person == operator
        assert ('id="retry-form"' in pages[(person.username, over_cumulative.pk)]) == may_retry
        assert 'id="retry-form"' not in pages[(person.username, refused.pk)]
        for how in ("email", "slack") if together else ("email", "html", "slack"):
            # Over the cumulative ceiling: said beside the retry, to one who may make it.
            text = said[(person.username, how, over_cumulative.pk)]
            assert (note in text) == may_retry, (person, how, text)
            # Above the hard ceiling: why a retry is refused, to everyone, and no retry.
            text = said[(person.username, how, refused.pk)]
            assert refusal in text, (person, how, text)
            assert "retry it on" not in text and "Retrying runs it anyway" not in text
        if not together:
            invites = "retry it on its page if it should still run"
            assert (invites in said[(person.username, "email", over_cumulative.pk)]) == may_retry
            assert invites not in said[(person.username, "email", refused.pk)]
            assert "Read it on its page" in said[(person.username, "email", refused.pk)]
