"""A guardrail that refuses a proposal now (a campaign's cap, an account's total budget cap, a
strategy lock, set since it was made) is said alike wherever the proposal is let run from: a
failed one's retry is refused as its approval is, in the same words, not sent to fail again at
once; the queue marks a waiting or failed one so under its summary, in its page's words, read
once for the page; a message telling its failure does not invite a retry that would be
refused."""

import html
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core import mail
from django.urls import reverse

from approvals.models import Proposal, ProposalStatus
from ledger.models import Account, Campaign
from notifications.models import ReachedBy
from notifications.services import notifications_deliver
from tests.factories import evaluated
from tests.slack_fake import shown_text
from tests.test_account_budget_cap import budget_change
from tests.test_console_shows_what_happened import failed_budget_raise
from tests.test_notifications_failures import OPERATOR_EMAIL, failure_messages
from tests.test_notifications_slack import OPERATOR
from tests.test_reallocation_no_longer_fits import queue_marks

CAPPED = "generic-search's daily budget would be 525.00 USD, above its cap of 510.00 USD."
FAILS_AGAIN = "A retry would fail again: its execution would refuse it."


def as_read(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


@pytest.mark.django_db
def test_a_retry_a_guardrail_refuses_is_refused_in_its_approval_s_words_not_sent(login):
    """Failed by a campaign's cap set after it was approved, the cap still set: Retry was
    offered, the operator was told "Proposal #N is sent to run again.", and it failed again
    within the second. Not offered now; a retry posted anyway is refused as approving it
    would be, and nothing runs. Once the cap is lifted, it is retried."""
    raise_ = failed_budget_raise()  # generic-search capped at 510.00 below its 525.00
    operator = login("operator")
    page_url = reverse("admin:approvals_proposal_change", args=[raise_.pk])
    retry_url = reverse("admin:approvals_proposal_retry", args=[raise_.pk])

    page = operator.get(page_url).text
    answer = operator.post(retry_url, follow=True)

    [note] = re.findall(r'<p class="errornote" id="retry-refused-by-guardrail">(.*?)</p>', page)
    assert as_read(note) == f"A guardrail refuses it now: {CAPPED} {FAILS_AGAIN}"
    assert 'id="retry-form"' not in page
    said = [str(message) for message in get_messages(answer.wsgi_request)]
    assert said == [f"A guardrail refuses proposal #{raise_.pk} now: {CAPPED} {FAILS_AGAIN}"]
    raise_.refresh_from_db()
    assert raise_.status == ProposalStatus.FAILED
    assert raise_.executions.count() == 1
    # A person who may not retry reads the same line.
    assert as_read(note) in as_read(login("auditor").get(page_url).text)

    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    page = operator.get(page_url).text
    assert 'id="retry-refused-by-guardrail"' not in page and 'id="retry-form"' in page
    answer = operator.post(retry_url, follow=True)
    said = [str(message) for message in get_messages(answer.wsgi_request)]
    assert said == [f"Proposal #{raise_.pk} is sent to run again."]


@pytest.mark.django_db
def test_the_queue_marks_what_a_guardrail_refuses_now_before_it_is_selected(login):
    """Raises waiting on an account whose total budget was capped since: their pages said a
    guardrail refuses them, and approving them was refused, but their rows read as every
    approvable row, so they were selected for bulk approval and refused after. Each says so
    under its summary in its page's words; a cut the cap allows says nothing; a failed one
    says so too among the failures; the page reads them at once, whatever their number."""
    failed = failed_budget_raise()
    raises = [
        evaluated(budget_change(campaign, budget))
        for campaign, budget in (
            ("brand-search", "1200.00"),
            ("display-retarget", "360.00"),
            ("brand-search", "1150.00"),
        )
    ]
    cut = evaluated(budget_change("display-retarget", "200.00"))
    assert [p.status for p in [*raises, cut]] == [ProposalStatus.PENDING_REVIEW] * 4
    Account.objects.filter(external_id="demo").update(max_total_daily_budget=Decimal("1800.00"))
    operator = login("operator")

    marks, read_with_more = queue_marks(operator)

    over = (
        "Account demo's active campaigns would spend {} USD a day, above its cap of 1,800.00 USD."
    )
    assert marks[raises[0].pk] == (
        f"{raises[0].summary} A guardrail refuses it now, as proposed: {over.format('2,000.00')}"
    )
    assert marks[raises[1].pk].endswith(
        f"A guardrail refuses it now, as proposed: {over.format('1,860.00')}"
    )
    assert marks[cut.pk] == cut.summary
    # Its Guardrail column, beside the mark, says a guardrail refuses it (it read "—"), from
    # the same read: no statement more.
    flags, read_too = queue_marks(operator, "guardrail_flag")
    assert (
        flags[raises[0].pk] == flags[raises[1].pk] == "A guardrail refuses it now: see its summary"
    )
    assert flags[cut.pk] == "—"
    assert read_too == read_with_more
    page = as_read(
        operator.get(reverse("admin:approvals_proposal_change", args=[raises[0].pk])).text
    )
    assert marks[raises[0].pk].removeprefix(raises[0].summary).strip() in page
    Proposal.objects.filter(pk__in=[p.pk for p in raises[1:]]).update(
        status=ProposalStatus.WITHDRAWN
    )
    marks, read = queue_marks(operator)
    assert set(marks) == {raises[0].pk, cut.pk}
    assert read == read_with_more

    failures = as_read(
        operator.get(reverse("admin:approvals_proposal_changelist"), {"status": "failed"}).text
    )
    assert f"{failed.summary} A guardrail refuses it now: {CAPPED}" in failures


@pytest.mark.django_db
def test_a_failure_a_guardrail_still_refuses_is_told_without_inviting_a_retry(
    demo_world, mailbox, slack, settings
):
    """Its email and Slack message said "It waits for a person: retry it on its page if it
    should still run", and the retry failed again at once: they say to read it on its page,
    as to one who may not retry it; its failure's words say why."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.create(user=operator, slack=True, email=True)
    raise_ = failed_budget_raise()

    mail.outbox.clear()
    notifications_deliver(notification_ids=[n.pk for n in failure_messages(raise_.pk)])

    [email] = [m for m in mail.outbox if m.to == [OPERATOR_EMAIL]]
    text = " ".join(email.body.split())
    assert f"A guardrail refuses it now: {CAPPED}" in text
    assert "retry it on its page" not in text and "Read it on its page" in text
    [call] = slack.sent("chat.postMessage", channel=OPERATOR)
    shown = " ".join(shown_text(call["blocks"]).split())
    assert "retry it on" not in shown and "Read it on" in shown
