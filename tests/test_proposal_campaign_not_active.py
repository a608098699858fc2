"""A proposal on a campaign paused (or removed) since it was proposed says so, on its page and
in its messages, before anyone decides it: an operator walking the demo approved a budget
rise on generic-search after another proposal had paused it, the page showing the budget row
alone ("Now 780.00"), nothing of the pause."""

import re
from dataclasses import replace

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal
from approvals.selectors import STATUS_SINCE_READ
from approvals.services.decisions import proposal_approve
from executors.runner import proposal_execute
from hitlproject.formats import console_time
from ledger.models import Campaign
from notifications.messages import addressed_to_one_who_may_not_decide, proposal_messages
from notifications.models import Notification, NotificationKind
from notifications.services import as_read_by
from notifications.slack import message_blocks
from tests.conftest import (
    bid_adjustment,
    confirmed_from_page,
    creative,
    creative_batch,
    decided_from_page,
    reallocation,
)
from tests.factories import evaluated
from tests.slack_fake import shown_text


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def notice(client, proposal: Proposal) -> str:
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])).text
    found = re.search(r'<p class="errornote" id="campaigns-not-active">(.*?)</p>', page, re.S)
    return found.group(1) if found else ""


def pause(campaign: str, operator) -> Proposal:
    paused = evaluated(
        bid_adjustment(
            action_type="status_change", payload={"campaign": campaign, "status": "paused"}
        )
    )
    if paused.status == "pending_review":
        proposal_approve(proposal_id=paused.pk, reviewer=operator)
    assert proposal_execute(proposal_id=paused.pk).status == "executed"
    paused.refresh_from_db()
    return paused


@pytest.mark.django_db
def test_a_proposal_on_a_campaign_paused_since_says_so_before_it_is_decided(operator, login):
    raise_ = evaluated(
        bid_adjustment(
            action_type="budget_change",
            payload={"campaign": "generic-search", "new_daily_budget": "900.00"},
        )
    )
    batch = evaluated(
        creative_batch(creative())
        | {"payload": {"campaign": "generic-search", "creatives": [creative()]}}
    )
    assert raise_.status == "pending_review"
    assert notice(login("operator"), raise_) == ""  # active: nothing to say

    paused = pause("generic-search", operator)

    said = (
        f"Campaign generic-search is paused now (by proposal #{paused.pk}, executed at "
        f"{console_time(paused.executed_at)}, after this one was proposed)."
    )
    runs = (
        " Approving it still makes the change on generic-search as it is, paused: approving "
        "does not activate it, so the change takes effect only once someone does."
    )
    assert notice(login("operator"), raise_) == said + runs
    batch.refresh_from_db()
    assert batch.status == "pending_review"  # a person decides a creative batch
    assert notice(login("operator"), batch) == said + runs
    # The operator's message about it says it too.
    raise_.refresh_from_db()
    [message] = proposal_messages([(raise_, NotificationKind.REMINDER)], now=timezone.now())
    assert message.campaigns_now == ["c" + said[1:-1]]
    email = render_to_string("notifications/proposal_email.txt", {"message": message})
    assert said in email


@pytest.mark.django_db
def test_a_campaign_paused_by_a_person_and_one_since_removed_are_said_so(operator, login):
    raise_ = evaluated(
        bid_adjustment(
            action_type="budget_change",
            payload={"campaign": "generic-search", "new_daily_budget": "900.00"},
        )
    )
    campaign = Campaign.objects.get(external_id="generic-search")
    campaign.status = "paused"
    campaign._change_reason = "paused by hand"
    campaign.save()
    said = notice(login("operator"), raise_)
    assert said.startswith("Campaign generic-search is paused now (by "), said
    at = console_time(Campaign.history.filter(id=campaign.pk).latest("history_id").history_date)
    assert said.endswith(
        f", at {at}, after this one was proposed). Approving it still makes the change on "
        "generic-search as it is, paused: approving does not activate it, so the change takes "
        "effect only once someone does."
    ), said


@pytest.mark.django_db
def test_a_digest_reads_the_ledger_once_for_every_proposal_it_lists(operator):
    """A digest's messages say of each proposal whether its campaign is active: the ledger
    is read once for all of them, not once a proposal."""
    proposals = [
        evaluated(
            bid_adjustment(
                action_type="budget_change",
                payload={"campaign": "generic-search", "new_daily_budget": f"{900 + n}.00"},
            )
        )
        for n in range(3)
    ]
    pause("generic-search", operator)
    for proposal in proposals:
        proposal.refresh_from_db()
    items = [(proposal, NotificationKind.REMINDER) for proposal in proposals]
    with CaptureQueriesContext(connection) as read:
        messages = proposal_messages(items, now=timezone.now())
    ledger_reads = [
        query["sql"] for query in read.captured_queries if 'FROM "ledger_campaign" ' in query["sql"]
    ]
    assert len(ledger_reads) == 1, ledger_reads
    # Nor its history, for who paused it and when: once for the campaign, not once a proposal
    # (a bulk confirmation of fifty on it read it fifty times, and the proposal that paused it).
    history_reads = [
        query["sql"]
        for query in read.captured_queries
        if 'FROM "ledger_historicalcampaign" ' in query["sql"]
    ]
    assert len(history_reads) == 1, history_reads
    assert all(
        message.campaigns_now
        and message.campaigns_now[0].startswith(
            "campaign generic-search is paused now (by proposal"
        )
        for message in messages
    )


@pytest.mark.django_db
def test_a_pause_further_back_than_its_history_is_read_names_no_one(operator, login):
    """Paused by a person, then its budget changed more times than the page reads of its
    history: the page named the oldest record it read as the pause, by whoever made that
    change and when; it says the campaign is paused, and nothing of when it was not read."""
    raise_ = evaluated(
        bid_adjustment(
            action_type="budget_change",
            payload={"campaign": "generic-search", "new_daily_budget": "900.00"},
        )
    )
    campaign = Campaign.objects.get(external_id="generic-search")
    campaign.status = "paused"
    campaign._change_reason = "paused by hand"
    campaign.save()
    for n in range(STATUS_SINCE_READ):
        campaign.daily_budget = 600 + n
        campaign._change_reason = "budget tuned while paused"
        campaign.save()

    assert notice(login("operator"), raise_) == "Campaign generic-search is paused now."


@pytest.mark.django_db
def test_approving_on_a_campaign_paused_since_says_before_and_after_that_it_stays_paused(
    operator, login
):
    """The page said "Campaign generic-search is paused now (…)" and no more: the operator
    could not tell whether approving would wait, fail, or reactivate it. It runs, and the
    campaign stays paused: the page says so before the click, the message after it, and the
    ledger shows it."""
    raise_ = evaluated(
        bid_adjustment(
            action_type="budget_change",
            payload={"campaign": "generic-search", "new_daily_budget": "900.00"},
        )
    )
    paused = pause("generic-search", operator)
    stays = (
        "Approving it still makes the change on generic-search as it is, paused: approving "
        "does not activate it, so the change takes effect only once someone does."
    )
    client = login("operator")

    assert notice(client, raise_) == (
        f"Campaign generic-search is paused now (by proposal #{paused.pk}, executed at "
        f"{console_time(paused.executed_at)}, after this one was proposed). {stays}"
    )
    answer = decided_from_page(client, "approve", raise_.pk, {"note": ""}, follow=True)
    said = [str(message) for message in answer.context["messages"]]
    assert said == [
        f"Proposal #{raise_.pk} is approved and sent to be executed. Campaign generic-search "
        "is paused: the change is made there all the same, and it stays paused."
    ]
    assert proposal_execute(proposal_id=raise_.pk).status == "executed"
    campaign = Campaign.objects.get(external_id="generic-search")
    assert (campaign.status, str(campaign.daily_budget)) == ("paused", "900.00")


RUNS = (
    "Approving it still makes the change on generic-search as it is, paused: approving "
    "does not activate it, so the change takes effect only once someone does."
)


@pytest.mark.django_db
def test_messages_of_a_proposal_on_a_campaign_paused_since_say_what_approving_does(operator):
    """Its Slack message and its emails said "Campaign generic-search is paused now (…)." and
    no more, where its page says approving still makes the change there and does not
    activate it: a person approving from Slack read less than one approving from its page."""
    raise_ = evaluated(
        bid_adjustment(
            action_type="budget_change",
            payload={"campaign": "generic-search", "new_daily_budget": "900.00"},
        )
    )
    paused = pause("generic-search", operator)
    raise_.refresh_from_db()
    said = (
        f"Campaign generic-search is paused now (by proposal #{paused.pk}, executed at "
        f"{console_time(paused.executed_at)}, after this one was proposed). {RUNS}"
    )
    [message] = proposal_messages([(raise_, NotificationKind.WAITING)], now=timezone.now())
    slack = shown_text(message_blocks(message, may_decide=True))
    assert said in slack, slack
    for template in ("proposal_email.txt", "digest_email.txt"):
        email = render_to_string(
            f"notifications/{template}",
            {"message": message, "messages": [message], "may_decide": True},
        )
        assert said in email, (template, email)
    html_email = render_to_string(
        "notifications/proposal_email.html", {"message": message, "may_decide": True}
    )
    assert said in html_email, html_email
    # A reader who may not approve it is not told what approving it does.
    refused = replace(message, approval_refused="Its agent was stopped.")
    assert refused.campaigns_now_text == said.removesuffix(f" {RUNS}")


@pytest.mark.django_db
def test_the_bulk_confirmation_says_what_approving_does_on_a_campaign_paused_since(operator, login):
    """The bulk confirmation said nothing of the pause: "Approved: …" beside a budget raise
    on a paused campaign, which approving ran there, left paused."""
    raise_ = evaluated(
        bid_adjustment(
            action_type="budget_change",
            payload={"campaign": "generic-search", "new_daily_budget": "900.00"},
        )
    )
    paused = pause("generic-search", operator)
    page = login("operator").post(
        reverse("admin:approvals_proposal_changelist"),
        {"action": "approve_selected", "_selected_action": [raise_.pk]},
    )
    assert page.status_code == 200
    found = re.findall(
        r'<p class="errornote bulk-campaigns-not-active">(.*?)</p>', page.content.decode(), re.S
    )
    assert found == [
        f"Campaign generic-search is paused now (by proposal #{paused.pk}, executed at "
        f"{console_time(paused.executed_at)}, after this one was proposed). {RUNS}"
    ]
    # Rejecting them says the pause, not what approving would do.
    page = login("operator").post(
        reverse("admin:approvals_proposal_changelist"),
        {"action": "reject_selected", "_selected_action": [raise_.pk]},
    )
    found = re.findall(
        r'<p class="errornote bulk-campaigns-not-active">(.*?)</p>', page.content.decode(), re.S
    )
    assert len(found) == 1 and RUNS not in found[0], found


@pytest.mark.django_db
def test_approving_in_bulk_on_a_campaign_paused_since_says_after_that_it_stays_paused(
    operator, login
):
    """Approved from its page, the message after said the campaign stays paused; approved in
    bulk, from a confirmation that said so beside it, the message after said "2 proposals
    approved and sent to be executed: #…, #…." alone, as of active campaigns."""
    on_paused = evaluated(
        bid_adjustment(
            action_type="budget_change",
            payload={"campaign": "generic-search", "new_daily_budget": "900.00"},
        )
    )
    on_active = evaluated(bid_adjustment("2.40"))
    pause("generic-search", operator)

    answer = confirmed_from_page(
        login("operator"),
        reverse("admin:approvals_proposal_changelist"),
        {
            "action": "approve_selected",
            "_selected_action": [on_paused.pk, on_active.pk],
            "confirm": "yes",
        },
        follow=True,
    )

    said = [str(message) for message in answer.context["messages"]]
    assert said == [
        f"2 proposals approved and sent to be executed: #{on_paused.pk}, #{on_active.pk}.",
        f"Proposal #{on_paused.pk}: Campaign generic-search is paused: the change is made there "
        "all the same, and it stays paused.",
    ]
    assert proposal_execute(proposal_id=on_paused.pk).status == "executed"
    campaign = Campaign.objects.get(external_id="generic-search")
    assert (campaign.status, str(campaign.daily_budget)) == ("paused", "900.00")


def waiting_on_a_campaign_paused_since(operator) -> Proposal:
    """A budget raise on generic-search waiting for a person, the campaign paused since."""
    raise_ = evaluated(
        bid_adjustment(
            action_type="budget_change",
            payload={"campaign": "generic-search", "new_daily_budget": "900.00"},
        )
    )
    pause("generic-search", operator)
    raise_.refresh_from_db()
    return raise_


def test_a_message_to_one_who_may_not_decide_it_says_the_pause_not_what_approving_does(
    operator,
):
    """An auditor told of a proposal on a campaign paused since read "Approving it still
    makes the change on generic-search …" beside "auditor may not decide on budget change
    proposals", as if approving it were theirs to weigh: they read the pause alone."""
    raise_ = waiting_on_a_campaign_paused_since(operator)
    [message] = proposal_messages([(raise_, NotificationKind.WAITING)], now=timezone.now())
    assert RUNS in message.campaigns_now_text

    told = addressed_to_one_who_may_not_decide(message, "auditor may not decide on it.")

    assert told.campaigns_now_text.startswith("Campaign generic-search is paused now (by ")
    assert RUNS not in told.campaigns_now_text
    slack = shown_text(message_blocks(told, may_decide=False))
    assert "Campaign generic-search is paused now" in slack and RUNS not in slack, slack


@pytest.mark.django_db
def test_a_digest_to_one_who_may_not_decide_it_says_the_pause_not_what_approving_does(operator):
    """A digest's line about a proposal on a campaign paused since said to the auditor
    "Approving it still makes the change on generic-search …" beside "auditor may not decide
    on budget change proposals", as a single message to them no longer does: the pause alone,
    by the one rule (``addressed_to_one_who_may_not_decide``)."""
    raise_ = waiting_on_a_campaign_paused_since(operator)
    auditor = get_user_model().objects.get(username="auditor")
    told = {
        person.username: Notification(
            proposal=raise_, recipient=person, kind=NotificationKind.WAITING
        )
        for person in (operator, auditor)
    }
    [message] = proposal_messages([(raise_, NotificationKind.WAITING)], now=timezone.now())

    [to_operator] = as_read_by(operator, [told["operator"]], [message])
    [to_auditor] = as_read_by(auditor, [told["auditor"]], [message])

    assert RUNS in to_operator.campaigns_now_text and not to_operator.not_yours
    assert to_auditor.not_yours.startswith("auditor may not decide")
    assert to_auditor.campaigns_now_text.startswith("Campaign generic-search is paused now (by ")
    assert RUNS not in to_auditor.campaigns_now_text
    for template in ("digest_email.txt", "digest_email.html"):
        email = render_to_string(f"notifications/{template}", {"messages": [to_auditor]})
        assert "generic-search is paused now" in email and RUNS not in email, email


@pytest.mark.django_db
def test_a_failure_told_to_many_says_the_pause_once_and_reads_it_once(operator):
    """A failure told to four (two people, by email and on Slack, sent together) said
    "Campaign generic-search is paused now (…)." four times over in each message: each
    proposal is read, and said, once, however many it is told to."""
    failed = evaluated(reallocation("180.00"))
    proposal_approve(proposal_id=failed.pk, reviewer=operator)
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="510.00")
    assert proposal_execute(proposal_id=failed.pk).status == "failed"
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    pause("generic-search", operator)
    failed.refresh_from_db()

    def told(times: int):
        with CaptureQueriesContext(connection) as read:
            messages = proposal_messages(
                [(failed, NotificationKind.FAILED)] * times, now=timezone.now()
            )
        return messages, len(read.captured_queries)

    told(1)  # what is read once a process (and kept on the proposal) read before counting
    [alone], once = told(1)
    messages, four_times = told(4)

    assert four_times == once
    for message in messages:
        assert len(message.campaigns_now) == 1, message.campaigns_now
        assert message.campaigns_now_text.count("is paused now") == 1
        assert message.campaigns_now_text == alone.campaigns_now_text
