"""The decisions, executions and feedback the platform's services write say, in their
history, what wrote each and why: the auditor's history page of each had an empty reason
beside "the executor (system)" or a reviewer's name, where every other write says why."""

import html
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from approvals.models import Agent, Decision, Execution, Proposal
from approvals.services.decisions import proposal_approve, proposal_reject, proposal_retry
from executors.runner import proposal_execute
from feedback.models import CallbackEvent, Feedback
from hitlproject.formats import console_time
from ledger.models import Campaign
from policies.models import Policy
from tests.conftest import bid_adjustment, decided_from_page, reallocation
from tests.factories import evaluated

pytestmark = pytest.mark.django_db


def reasons_on_history_page(client, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.content.decode())).split())


def test_the_auditor_reads_why_each_decision_execution_and_feedback_was_written(demo_world, login):
    operator = get_user_model().objects.get(username="operator")
    routine = evaluated(bid_adjustment())  # 6%: the policy lets it run
    proposal_execute(proposal_id=routine.pk)
    waited = evaluated(reallocation())  # 28%: an operator approves it
    proposal_approve(proposal_id=waited.pk, reviewer=operator, note="Agreed.")
    proposal_execute(proposal_id=waited.pk)
    refused = evaluated(reallocation("250.00"))
    proposal_reject(
        proposal_id=refused.pk, reviewer=operator, reason_code="too_aggressive", note="Too much."
    )
    auditor = login("auditor")

    def history(obj) -> str:
        meta = obj._meta
        return reasons_on_history_page(
            auditor, f"/admin/{meta.app_label}/{meta.model_name}/{obj.pk}/history/"
        )

    assert (
        "attempt 1 executed by the worker with the ledger executor; approved by policy "
        "“Bid adjustments” version 1" in history(Execution.objects.get(proposal=routine))
    )
    assert (
        "attempt 1 executed by the worker with the ledger executor; approved by operator"
        in history(Execution.objects.get(proposal=waited))
    )
    assert "approved by operator (review round 1)" in history(Decision.objects.get(proposal=waited))
    assert "rejected by operator: Too aggressive (review round 1)" in history(
        Decision.objects.get(proposal=refused)
    )
    # The feedback says the decision it tells its agent of in the decision's own words.
    assert "feedback for its agent: approved by operator (review round 1)" in history(
        Feedback.objects.get(proposal=waited)
    )
    assert "feedback for its agent: rejected by operator: Too aggressive (review round 1)" in (
        history(Feedback.objects.get(proposal=refused))
    )
    # None of their records has an empty reason.
    for model in (Decision, Execution, Feedback):
        assert not model.history.filter(history_change_reason__in=["", None]).exists(), model


def test_an_attempt_after_a_retry_says_who_sent_it_to_run_again_and_an_edit_says_so(
    demo_world, login
):
    """Attempt 2 of a failed reallocation operator2 sent to run again read "approved by
    operator", the approval of attempt 1, with no word of the retry; an edited approval read
    as approved as proposed."""
    users = get_user_model().objects
    operator = users.get(username="operator")
    operator2 = users.create_user("operator2")
    operator2.groups.set(operator.groups.all())
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    capped = Campaign.objects.filter(external_id="generic-search")
    capped.update(max_daily_budget=Decimal("750"))
    assert proposal_execute(proposal_id=proposal.pk).status == "failed"
    capped.update(max_daily_budget=Decimal("800"))
    proposal_retry(proposal_id=proposal.pk, reviewer=operator2)
    assert proposal_execute(proposal_id=proposal.pk).status == "executed"
    edited = evaluated(bid_adjustment("1.60"))  # -20%: a person decides
    proposal_approve(
        proposal_id=edited.pk,
        reviewer=operator,
        edited_payload={**edited.payload, "new_bid": "1.80"},
    )
    proposal_execute(proposal_id=edited.pk)

    reasons = [
        record.history_change_reason
        for record in Execution.history.filter(proposal_id=proposal.pk, history_type="+").order_by(
            "history_id"
        )
    ]
    assert reasons[0].endswith("; approved by operator")
    assert reasons[-1].endswith("; sent to run again by operator2")
    [made] = Execution.history.filter(proposal_id=edited.pk, history_type="+")
    assert made.history_change_reason.endswith("; approved by operator (with edits)")


def test_the_policy_version_that_let_it_run_is_named_alike_in_its_history_and_on_its_pages(
    demo_world, login
):
    """An execution's history read "approved by policy “Bid adjustments” version 1" where its
    callback event's page and the console's refusal read "Policy “Bid adjustments” let it run
    without a person at …", no version: one policy version, named two ways. Renamed since, it
    is still named as it was then."""
    Agent.objects.filter(name="optimizer").update(callback_url="http://127.0.0.1:9/hook")
    routine = evaluated(bid_adjustment())  # 6%: the policy lets it run
    proposal_execute(proposal_id=routine.pk)
    policy = Policy.objects.get(pk=routine.verdict_policy_id)
    policy.name = "Bid adjustments (tightened)"
    policy.save()
    named = "policy “Bid adjustments” version 1"
    let_run_at = Proposal.history.filter(id=routine.pk, status="approved").get().history_date
    let_run = f"{named[0].upper()}{named[1:]} let it run without a person at "
    operator = login("operator")

    [made] = Execution.history.filter(proposal_id=routine.pk, history_type="+")
    assert made.history_change_reason.endswith(f"; approved by {named}")
    event = CallbackEvent.objects.get(proposal=routine, type="proposal.approved")
    page = operator.get(reverse("admin:feedback_callbackevent_change", args=[event.pk]))
    type_said = re.search(r'<label>Type:</label>\s*<div class="readonly">(.*?)</div>', page.text)
    assert html.unescape(type_said.group(1)) == (f"Approved: {let_run}{console_time(let_run_at)}")
    refused = decided_from_page(operator, "approve", routine.pk, follow=True)
    said = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", refused.content.decode())).split())
    decided_at = Proposal.objects.get(pk=routine.pk).decided_at
    assert f"{let_run}{console_time(decided_at)}." in said
