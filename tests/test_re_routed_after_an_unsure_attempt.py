"""A re-assessment that re-routes an approved proposal to a person after an attempt sent to
its channel got no answer that says whether the channel carried it out (a 503) says so, in
the words a kill switch's hold between attempts has: it read "Re-routed to a person before
executing", of an action the channel may have carried out. One re-routed before any attempt
went still reads "before executing"."""

import html
import re
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from hitl_client import Proposal as ClientProposal
from hitl_client._tools import sent_back_told

from approvals.models import ProposalStatus
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from feedback.models import Feedback, FeedbackKind
from ledger.models import Campaign
from tests.conftest import reallocation
from tests.factories import evaluated

MOVED = "brand-search's daily budget is 800.00, was 1000.00."
ANSWERED_503 = (
    "Attempt 1 was answered HTTP 503, which does not say whether the channel carried it out: "
    "it may have been carried out there."
)


def budget_moved() -> None:
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("800.00"))


def page_text(client, proposal) -> str:
    client.force_login(get_user_model().objects.get(username="operator"))
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert page.status_code == 200
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))


def test_re_routed_after_a_503_says_the_attempt_may_have_run(channel, client, optimizer):
    endpoint = channel(503, 200)
    proposal = evaluated(reallocation("90.00"))  # 9%: the engine lets it run
    assert proposal.status == ProposalStatus.APPROVED
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTING
    budget_moved()  # 90.00 of 800.00 is past the 10% ceiling: a person must approve it
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())

    re_routed = proposal_execute(proposal_id=proposal.pk)

    said = f"Re-routed to a person before its next attempt: {MOVED} {ANSWERED_503}"
    assert re_routed.status == ProposalStatus.PENDING_REVIEW
    assert re_routed.verdict_reasons[0] == said
    assert re_routed.history.latest("history_id").history_change_reason == said
    assert len(endpoint.received) == 1
    text = page_text(client, re_routed)
    assert said in text and "before executing" not in text
    feedback = Feedback.objects.get(proposal=re_routed, kind=FeedbackKind.SENT_BACK)
    assert feedback.note == said
    assert feedback.history.earliest("history_id").history_change_reason == (
        "feedback for its agent: sent back to a person after an attempt sent to the channel "
        "got no sure answer"
    )
    # The agent's adapters quote it once, not with the attempt said a second time.
    answer = optimizer.get(f"/api/v1/proposals/{re_routed.pk}/").json()
    told = sent_back_told(ClientProposal.from_api(answer))
    assert told == f"It was approved to run, then sent back to a person: {said}"


def test_re_routed_before_any_attempt_still_reads_before_executing(channel):
    channel(200)
    proposal = evaluated(reallocation("90.00"))
    budget_moved()

    re_routed = proposal_execute(proposal_id=proposal.pk)

    assert re_routed.status == ProposalStatus.PENDING_REVIEW
    assert re_routed.verdict_reasons[0] == f"Re-routed to a person before executing: {MOVED}"
