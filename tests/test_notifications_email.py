"""Operators are told by email when something waits for them: the reference reallocation
reaches operator@example.com within seconds, with its summary, why it waits and a link to its
page, at the address the console answers at; a message about a proposal that no longer waits
is not sent."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from approvals.models import Proposal
from ledger.models import Account
from notifications.channels import EmailChannel
from notifications.messages import proposal_messages
from notifications.models import (
    DecisionDeadline,
    Notification,
    NotificationKind,
    NotificationStatus,
)
from notifications.slack import message_blocks
from policies.models import KillSwitch
from tests.conftest import bid_adjustment, reallocation, target_cpa_strategy, wait_until
from tests.factories import evaluated
from tests.slack_fake import shown_text


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_the_reference_reallocation_reaches_the_operator_by_email(optimizer, mailbox):
    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    assert answer.status_code == 201, answer.content
    proposal = answer.json()
    assert proposal["status"] == "pending_review"

    [message] = wait_until(lambda: mailbox.to("operator@example.com"), timeout=15)

    assert f"#{proposal['id']}" in message["Subject"]
    assert message["Date"].endswith(" +0000")  # UTC, said as such: not "-0000", zone unknown
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert proposal["summary"] in text
    assert "Why it waits" in text
    assert f"/admin/approvals/proposal/{proposal['id']}/change/" in text
    assert f"/admin/approvals/proposal/{proposal['id']}/change/" in html
    # Why they are told, and where they choose how.
    said = " ".join(text.split())
    assert "You are told by the route “Demo: everything waiting, to the operators”." in said
    assert "How you are told is yours to choose: http://" in said
    assert said.endswith("/admin/notifications/reachedby/")
    assert '/admin/notifications/reachedby/">your channels</a>' in html
    # Only the operators are on the demo's route: nobody else hears of it.
    assert not mailbox.to("auditor@example.com")
    assert not mailbox.to("policy-owner@example.com")
    wait_until(lambda: Notification.objects.filter(status=NotificationStatus.SENT).count() == 1)


@pytest.mark.django_db
def test_the_link_goes_where_the_console_answers(demo_world, settings):
    """Started with ``PORT=8111 bin/start`` and no HITL_CONSOLE_URL, the console answers (and
    seed_demo prints it) at 127.0.0.1:8111: the link in a message goes there, not to :8000.
    HITL_CONSOLE_URL, where set, is the console as its users reach it."""
    proposal = evaluated(reallocation())
    settings.WEB_BIND, settings.WEB_PORT = "127.0.0.1", "8111"
    settings.CONSOLE_URL = ""

    message = proposal_messages([(proposal, NotificationKind.WAITING)], now=timezone.now())[0]
    assert message.url == f"http://127.0.0.1:8111/admin/approvals/proposal/{proposal.pk}/change/"

    settings.CONSOLE_URL = "https://hitl.example.com"
    message = proposal_messages([(proposal, NotificationKind.WAITING)], now=timezone.now())[0]
    assert message.url == f"https://hitl.example.com/admin/approvals/proposal/{proposal.pk}/change/"


@pytest.mark.django_db
def test_the_due_time_reads_as_the_console_shows_it_and_in_the_past_once_overdue(
    demo_world, mailoutbox
):
    """ "Decision due by" to the second, with the zone, as the proposal's page says it; the
    escalation (sent once the time has passed) says when it was due; the action type reads as
    the console writes it ("budget reallocation"), in the email as on Slack."""
    proposal = evaluated(reallocation())
    now = timezone.now()
    due = now.replace(microsecond=0) - timedelta(seconds=3) + timedelta(milliseconds=250)
    DecisionDeadline.objects.create(
        proposal=proposal,
        review_round=proposal.review_round,
        started_at=due - timedelta(minutes=1),
        remind_at=due - timedelta(seconds=30),
        due_at=due,
    )
    operator = get_user_model().objects.get(username="operator")
    shown = f"{due:%Y-%m-%d %H:%M:%S} UTC"
    page = login_as(operator).get(f"/admin/approvals/proposal/{proposal.pk}/change/")
    assert f"{due:%Y-%m-%d %H:%M:%S} UTC" in page.text  # the console's own words

    for kind in (NotificationKind.ESCALATION, NotificationKind.WAITING):
        message = proposal_messages([(proposal, kind)], now=now - timedelta(minutes=5))[0]
        EmailChannel().send(recipient=operator, message=message, may_decide=True)
    escalation, waiting = mailoutbox  # as Django's email machinery would send them

    text, [(html, _)] = escalation.body, escalation.alternatives
    assert f"Decision was due by: {shown}" in text
    assert f"Decision was due by</th><td>{shown}</td>" in html
    assert "Decision due by" not in text + html
    assert "Action: budget reallocation\n" in text and "budget_reallocation" not in text
    assert "Size: 28.0% of brand-search's daily budget\n" in text  # a cell of its own
    assert "Action</th><td>budget reallocation</td>" in html and "budget_reallocation" not in html
    text = waiting.body
    assert f"Decision due by: {shown}" in text  # made before the time had passed

    blocks = message_blocks(
        proposal_messages([(proposal, NotificationKind.ESCALATION)], now=now)[0], may_decide=True
    )
    facts = shown_text(blocks[1:2]).split("\n")
    assert "Action budget reallocation" in facts
    assert "Size 28.0% of brand-search's daily budget" in facts
    assert f"Was due by {shown}" in facts
    [due] = [e for e in blocks[1]["elements"][0]["elements"] if e["type"] == "date"]
    assert due["format"] == "{date_short} {time_secs}" and due["fallback"] == shown


@pytest.mark.django_db
def test_who_is_on_it_reads_until_when_as_the_console_shows_it(demo_world, mailoutbox):
    """A claim lapses on its own and nothing updates a message then: the email says until
    when the person is on it, as the proposal's page does, so that it stays true."""
    from notifications.services import proposal_claim

    proposal = evaluated(reallocation())
    operator = get_user_model().objects.get(username="operator")
    claim = proposal_claim(proposal_id=proposal.pk, user=operator)
    until = f"{claim.lapses_at:%Y-%m-%d %H:%M:%S} UTC"
    page = login_as(operator).get(f"/admin/approvals/proposal/{proposal.pk}/change/")
    assert f"you, until {until}" in page.text  # the console's words

    message = proposal_messages([(proposal, NotificationKind.REMINDER)], now=timezone.now())[0]
    EmailChannel().send(recipient=operator, message=message, may_decide=True)

    [email] = mailoutbox
    assert f"On it: operator, until {until}\n" in email.body
    assert f"On it</th><td>operator, until {until}</td>" in email.alternatives[0][0]


@pytest.mark.django_db
def test_an_escalation_of_a_proposal_one_of_two_approved_says_who_approved_so_far(
    demo_world, mailoutbox
):
    """The backup group told at the deadline of a proposal operator gave the first of two
    approvals: the email and the Slack message say so (it needs one more approval, not a
    decision from scratch), as the proposal's page and the earlier messages' updates do."""
    from approvals.services.decisions import proposal_approve
    from policies.models import Policy

    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = evaluated(reallocation())
    operator = get_user_model().objects.get(username="operator")
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    so_far = "Approved by operator: 1 of 2 approvals; waits for 1 more."

    message = proposal_messages([(proposal, NotificationKind.ESCALATION)], now=timezone.now())[0]
    EmailChannel().send(recipient=operator, message=message, may_decide=True)

    [email] = mailoutbox
    assert f"So far: {so_far}\n" in email.body
    assert f"So far</th><td>{so_far}</td>" in email.alternatives[0][0]
    blocks = message_blocks(message, may_decide=True)
    notes = [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]
    assert notes == [so_far]


@pytest.mark.django_db
def test_a_strategy_changes_summary_reads_as_the_console_writes_it(
    demo_world, optimizer, mailoutbox
):
    """The summary in the edit form's words ("Manual CPC", not manual_cpc), as the API
    answers it, in the email's subject, text and HTML, and on Slack."""
    answer = optimizer.post(
        "/api/v1/proposals/",
        target_cpa_strategy(),
        format="json",
    )
    assert answer.status_code == 201, answer.content
    summary = (
        "generic-search: bidding strategy Manual CPC → Target CPA; target CPA not set → 25.00 USD"
    )
    assert answer.json()["summary"] == summary
    proposal = Proposal.objects.get(pk=answer.json()["id"])
    operator = get_user_model().objects.get(username="operator")

    message = proposal_messages([(proposal, NotificationKind.WAITING)], now=timezone.now())[0]
    EmailChannel().send(recipient=operator, message=message, may_decide=True)
    [email] = mailoutbox
    [(html, _)] = email.alternatives
    assert email.subject == f"[HITL] Waits for your decision: #{proposal.pk} {summary}"
    assert f"#{proposal.pk} {summary}\n" in email.body
    assert "Manual CPC → Target CPA" in html and "manual_cpc" not in email.body + html
    heading = message_blocks(message, may_decide=True)[0]
    assert shown_text([heading]).endswith(f"\n#{proposal.pk} {summary}")


@pytest.mark.django_db
def test_a_message_names_a_kill_switch_reason_recorded_in_its_former_words_as_it_stands(
    demo_world,
):
    """A reason recorded before findings named a switch as its title does ("The kill switch
    on demo is engaged: …", the account alone) is still that switch's: a message sent while
    it is engaged says it is, one sent once it is released says it was engaged then."""
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="Outage."
    )
    proposal = evaluated(bid_adjustment("2.06"))
    recorded = "The kill switch on demo is engaged: Outage."
    Proposal.objects.filter(pk=proposal.pk).update(verdict_reasons=[recorded])
    proposal.refresh_from_db()

    def reasons() -> list[str]:
        items = [(proposal, NotificationKind.REMINDER)]
        return proposal_messages(items, now=timezone.now())[0].reasons

    assert reasons() == [recorded]
    switch.engaged = False
    switch.save()
    assert reasons() == [
        "The kill switch on demo was engaged when it was routed: Outage. Released since.",
        "No kill switch covers it now: the one above has been released since.",
    ]


def login_as(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_a_message_sent_after_the_kill_switch_was_released_says_it_was_released(
    demo_world, mailoutbox
):
    """A bid held only by the account's kill switch, reminded of after the switch was released:
    the email and the Slack message say why it waits as it stands, the switch engaged when
    it was routed and released since, not "is engaged"."""
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="Outage."
    )
    proposal = evaluated(bid_adjustment("2.06"))
    switch.engaged = False
    switch.save()
    operator = get_user_model().objects.get(username="operator")
    released = (
        "The kill switch on account demo was engaged when it was routed: Outage. Released since."
    )
    none_covers = "No kill switch covers it now: the one above has been released since."

    message = proposal_messages([(proposal, NotificationKind.REMINDER)], now=timezone.now())[0]
    EmailChannel().send(recipient=operator, message=message, may_decide=True)

    [email] = mailoutbox
    said = " ".join(email.body.split())
    assert f"- {released} - {none_covers}" in said
    assert "is engaged" not in email.body + email.alternatives[0][0]
    slack = shown_text(message_blocks(message, may_decide=True))
    assert f"• {released}\n• {none_covers}" in slack and "is engaged" not in slack
