"""An operator edits a proposal, then approves it: the edit is re-assessed, recorded as a diff,
and taught back to the agent."""

import json
from decimal import Decimal

import pytest
from django import forms
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hitl_client._tools import outcome_report
from hitl_client.models import Proposal as ClientProposal

from approvals.models import Decision, Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from executors.runner import proposal_execute
from feedback.models import Feedback
from hitlproject.errors import DomainError
from ledger.models import Campaign, Creative
from policies.models import Policy
from tests.conftest import (
    creative,
    creative_batch,
    decided_from_page,
    reallocation,
    target_cpa_strategy,
    wait_until,
)
from tests.factories import evaluated


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def test_an_edited_creative_is_approved_and_the_agent_gets_the_diff(login, optimizer):
    proposal = evaluated(creative_batch())
    edited = json.loads(json.dumps(proposal.payload))
    edited["creatives"][0]["body"] = "Results most customers see in a week."

    response = decided_from_page(
        login("operator"),
        "edit-approve",
        proposal.pk,
        {
            "edit-creative-0-headline": "Search smarter",
            "edit-creative-0-body": "Results most customers see in a week.",
            "edit-creative-0-call_to_action": "Try it",
            "edit-note": "No promises we cannot keep.",
        },
    )

    assert response.status_code == 302
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.APPROVED
    assert proposal.payload == edited
    assert Decision.objects.get(proposal=proposal).edited_payload == edited
    feed = optimizer.get("/api/v1/feedback/").json()["results"]
    assert feed == [
        {
            "id": Feedback.objects.get().pk,
            "proposal": proposal.pk,
            "action_type": "creative_deployment",
            "summary": "deploy 1 creative to display-retarget",
            "external_ref": "",
            "kind": "approved_with_edits",
            "reason_code": "",
            "note": "No promises we cannot keep.",
            "diff": {
                "creatives[0].body": {
                    "from": "Guaranteed results in a week.",
                    "to": "Results most customers see in a week.",
                    "words": [{"from": "Guaranteed results", "to": "Results most customers see"}],
                }
            },
            "outcome": None,
            "created_at": feed[0]["created_at"],
        }
    ]
    # The summary reads as before: why it is here says which fields the edit changed, and
    # its decision is marked as edited.
    assert proposal.verdict_reasons[0] == (
        "Edited before approval (body of creative 1 changed): deploy 1 creative to "
        "display-retarget."
    )
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    decided = page.text.split('id="proposal-decisions"')[1].split("</table>")[0]
    assert "(as edited: how, under “How it was edited” above)" in decided
    proposal_execute(proposal_id=proposal.pk)
    assert Creative.objects.get().body == "Results most customers see in a week."


def test_an_edited_amount_is_re_assessed_and_executed_as_edited(operator):
    proposal = evaluated(reallocation("280.00"))
    edited = {**proposal.payload, "amount": "140.00"}

    approved = proposal_approve(proposal_id=proposal.pk, reviewer=operator, edited_payload=edited)

    assert approved.status == ProposalStatus.APPROVED
    assert approved.magnitude == Decimal("0.14")
    assert approved.summary == "move 140.00 USD/day from brand-search to generic-search (14.0%)"
    assert approved.verdict_reasons[0] == (
        "Edited before approval to: move 140.00 USD/day from brand-search to generic-search "
        "(14.0%)."
    )
    assert "14.0% of brand-search's daily budget exceeds" in approved.verdict_reasons[1]
    # How it was routed stays on the record: a human had to decide it.
    assert approved.verdict_outcome == "review"
    proposal_execute(proposal_id=proposal.pk)
    assert Campaign.objects.get(external_id="brand-search").daily_budget == Decimal("860.00")
    history = Proposal.history.filter(id=proposal.pk).order_by("history_date")
    edit = history.get(history_change_reason="edited by operator before approval")
    assert (edit.payload["amount"], edit.history_actor) == ("140.00", "operator")
    assert history.first().payload["amount"] == "280.00"  # what the agent proposed, kept


def test_the_api_says_what_the_agent_proposed_next_to_what_a_reviewer_edited(operator, optimizer):
    """An agent (or a framework adapter, in a process that did not make the proposal) tells
    a reviewer's edit against what it proposed: the API gives both, in a page of its
    proposals read with the same number of queries however many were edited."""
    plain = evaluated(reallocation("50.00"))
    edited = evaluated(reallocation("280.00"))
    proposal_approve(
        proposal_id=edited.pk,
        reviewer=operator,
        edited_payload={**edited.payload, "amount": "140.00"},
    )

    detail = optimizer.get(f"/api/v1/proposals/{edited.pk}/").json()
    assert (detail["payload"]["amount"], detail["proposed_payload"]["amount"]) == (
        "140.00",
        "280.00",
    )
    listed = {p["id"]: p for p in optimizer.get("/api/v1/proposals/").json()["results"]}
    assert listed[edited.pk]["proposed_payload"]["amount"] == "280.00"
    assert listed[plain.pk]["proposed_payload"] == listed[plain.pk]["payload"]

    with CaptureQueriesContext(connection) as one_edited:
        optimizer.get("/api/v1/proposals/")
    for amount in ("60.00", "70.00"):
        more = evaluated(reallocation(amount))
        proposal_approve(
            proposal_id=more.pk,
            reviewer=operator,
            edited_payload={**more.payload, "amount": "40.00"},
        )
    with CaptureQueriesContext(connection) as three_edited:
        answer = optimizer.get("/api/v1/proposals/").json()["results"]
    assert len(three_edited) == len(one_edited)
    assert sorted(p["proposed_payload"]["amount"] for p in answer) == [
        "280.00",
        "50.00",
        "60.00",
        "70.00",
    ]


def test_an_edit_that_is_not_valid_is_refused_and_changes_nothing(operator):
    proposal = evaluated(reallocation("280.00"))
    with pytest.raises(DomainError, match=r"not valid: payload\.amount: Exceeds brand-search"):
        proposal_approve(
            proposal_id=proposal.pk,
            reviewer=operator,
            edited_payload={**proposal.payload, "amount": "5000"},
        )
    proposal.refresh_from_db()
    assert (proposal.status, proposal.payload["amount"]) == ("pending_review", "280.00")
    assert not Decision.objects.exists()


def test_an_edit_the_guardrails_would_block_is_refused(operator):
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=Decimal("700"))
    proposal = evaluated(reallocation("150.00"))
    with pytest.raises(DomainError, match="would be blocked: generic-search's daily budget"):
        proposal_approve(
            proposal_id=proposal.pk,
            reviewer=operator,
            edited_payload={**proposal.payload, "amount": "250.00"},
        )


def test_an_edit_after_a_first_approval_needs_the_approvals_again(operator):
    Policy.objects.filter(action_type="budget_reallocation").update(
        more_approvals_above_magnitude=Decimal("0.20")
    )
    second = get_user_model().objects.create_user("second-operator", is_staff=True)
    second.groups.set(operator.groups.all())
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)

    edited = proposal_approve(
        proposal_id=proposal.pk,
        reviewer=second,
        edited_payload={**proposal.payload, "amount": "260.00"},
    )

    # The first approval was of 280; the second reviewer's edit to 260 needs a second look.
    assert edited.status == ProposalStatus.PENDING_REVIEW
    assert edited.review_round == proposal.review_round + 1
    assert proposal_approve(proposal_id=proposal.pk, reviewer=operator).status == "approved"


def test_an_edit_that_changes_nothing_is_a_plain_approval(operator):
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(
        proposal_id=proposal.pk, reviewer=operator, edited_payload={**proposal.payload}
    )
    assert Decision.objects.get().edited_payload is None
    assert Feedback.objects.get().kind == "approved"


def test_an_edit_that_brings_in_a_banned_term_is_refused(operator):
    proposal = evaluated(creative_batch(), agent="copywriter")  # "Guaranteed results"
    creatives = proposal.payload["creatives"]
    disguised = [{**creatives[0], "headline": "Results, gυaranteed", "body": "It is risk‑free."}]

    with pytest.raises(DomainError) as refused:
        proposal_approve(
            proposal_id=proposal.pk,
            reviewer=operator,
            edited_payload={**proposal.payload, "creatives": disguised},
        )

    # The banned term the agent used, moved and disguised, and one the edit added, are named.
    assert refused.value.message.startswith("The edit brings in what the brand guidelines ban:")
    assert "“risk-free”" in refused.value.message
    assert refused.value.message.endswith("Change it, or approve the proposal as it is.")
    assert Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.PENDING_REVIEW
    assert not Decision.objects.filter(proposal=proposal).exists()


def as_a_browser_posts(client: Client, proposal: Proposal, **typed: str) -> dict[str, str]:
    """The edit form as a browser sends it back: each field as the page shows it (a
    textarea's line breaks as CRLF, a one-line field without any), ``typed`` over it."""
    form = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])).context[
        "edit_form"
    ]
    data = {}
    for name, field in form.fields.items():
        shown = str(form[name].value() or "")
        if isinstance(field.widget, forms.Textarea):
            data[form[name].html_name] = shown.replace("\r\n", "\n").replace("\n", "\r\n")
        else:
            data[form[name].html_name] = shown.replace("\r", "").replace("\n", "")
    data.update({form[name].html_name: value for name, value in typed.items()})
    return data


def test_an_edit_of_only_the_call_to_action_tells_the_agent_only_that(login, optimizer):
    sent = creative("Search smarter", "Find it fast.\r\nNo card needed.", "Try it")
    submitted = optimizer.post("/api/v1/proposals/", creative_batch(sent), format="json")
    assert submitted.json()["status"] == ProposalStatus.PENDING_REVIEW, submitted.json()
    proposal = Proposal.objects.get(pk=submitted.json()["id"])
    client = login("operator")

    approved = decided_from_page(
        client,
        "edit-approve",
        proposal.pk,
        as_a_browser_posts(client, proposal, **{"creative-0-call_to_action": "Buy now"}),
    )

    assert approved.status_code == 302
    [feedback] = optimizer.get("/api/v1/feedback/").json()["results"]
    assert feedback["diff"] == {
        "creatives[0].call_to_action": {
            "from": "Try it",
            "to": "Buy now",
            "words": [{"from": "Try it", "to": "Buy now"}],
        }
    }
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    [(_, changed)] = page.context["edit_changes"]
    assert [label for label, _ in changed] == ["Call to action of creative 1"]
    proposal_execute(proposal_id=proposal.pk)
    executed = Creative.objects.get(deployed_by_proposal=proposal)
    assert (executed.headline, executed.body, executed.call_to_action) == (
        "Search smarter",
        "Find it fast.\nNo card needed.",
        "Buy now",
    )


def reasons_on_its_page(client: Client, proposal: Proposal) -> list[str]:
    """'Why it is here' on the proposal's page in the console, each reason as it reads."""
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert page.status_code == 200
    return [str(reason) for reason in page.context["reasons_now"]]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_an_edit_stays_on_record_through_every_later_re_assessment(operators, login, optimizer):
    """An operator edits and approves a reallocation that needs two approvals; a budget change
    lands on its source while it waits, the channel moves that budget again before it runs.
    Its page and its API say each of the three, newest first, with the figures each read:
    the re-assessments did not take the edit's place, nor the last one the first."""
    _, second = operators
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    submitted = optimizer.post("/api/v1/proposals/", reallocation("280.00"), format="json")
    proposal = Proposal.objects.get(pk=submitted.json()["id"])
    edited = decided_from_page(
        login("operator"),
        "edit-approve",
        proposal.pk,
        {"edit-amount": "140.00", "edit-note": "Half, for now."},
    )
    assert edited.status_code == 302
    edit = (
        "Edited before approval to: move 140.00 USD/day from brand-search to generic-search "
        "(14.0%)."
    )
    # A raise of the source's budget, which the engine approves and the worker carries out.
    raise_ = optimizer.post(
        "/api/v1/proposals/",
        reallocation(action_type="budget_change")
        | {"payload": {"campaign": "brand-search", "new_daily_budget": "1050.00"}},
        format="json",
    ).json()
    assert raise_["status"] == "approved", raise_
    wait_until(lambda: Proposal.objects.get(pk=proposal.pk).magnitude == Decimal("0.133333"))
    waiting = (
        f"Re-assessed after #{raise_['id']} changed it first: {raise_['summary']}: "
        "brand-search's daily budget went from 1000.00 to 1050.00."
    )
    proposal.refresh_from_db()
    assert proposal.verdict_reasons[:2] == [
        f"{waiting} Now: move 140.00 USD/day from brand-search to generic-search (13.3%).",
        edit,
    ]

    # The channel moves the budget again; the second operator's approval has it run.
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("1120.00"))
    second_operator = Client()
    second_operator.force_login(second)
    approved = decided_from_page(second_operator, "approve", proposal.pk, {"note": ""})
    assert approved.status_code == 302
    wait_until(lambda: Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.EXECUTED)

    said = [
        "Re-assessed before executing: brand-search's daily budget is 1120.00, was 1050.00. "
        "Now: move 140.00 USD/day from brand-search to generic-search (12.5%), which its "
        "approval still covers.",
        waiting,
        edit,
    ]
    reasons = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()["verdict"]["reasons"]
    on_page = reasons_on_its_page(login("auditor"), proposal)
    assert reasons[:3] == on_page[:3] == said
    # Each said once, and what its verdict says comes below what happened to it.
    assert len(set(reasons)) == len(reasons) and reasons == on_page
    assert not any(reason.startswith(("Re-assessed", "Edited")) for reason in reasons[3:])
    # What it reads as now is said to be the edit's and the re-assessments' both.
    page = login("auditor").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert (
        "As edited and re-assessed:</strong> move 140.00 USD/day from brand-search to "
        "generic-search (12.5%)"
    ) in page.content.decode()
    assert Campaign.objects.get(external_id="brand-search").daily_budget == Decimal("980.00")


def test_an_edit_that_changes_nothing_is_said_to_be_an_approval_as_proposed(login):
    """Sent unchanged from the edit form, it was recorded as a plain approval while the
    operator was told only "approved", as if their edit had run."""
    proposal = evaluated(reallocation("280.00"))
    client = login("operator")
    form = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])).context[
        "edit_form"
    ]
    unchanged = {form.add_prefix(name): form[name].value() for name in form.fields}

    done = decided_from_page(
        client,
        "edit-approve",
        proposal.pk,
        {key: value for key, value in unchanged.items() if value is not None},
        follow=True,
    )

    assert Decision.objects.get(proposal=proposal).edited_payload is None
    assert [str(message) for message in done.context["messages"]] == [
        f"Approved as proposed: your edit changed nothing. Proposal #{proposal.pk} is approved "
        "and sent to be executed."
    ]


def test_an_agent_is_told_an_edit_of_a_batch_or_of_strategy_fields_field_by_field(
    operator, optimizer
):
    """A reviewer's edit of one creative's headline and another's body, or of a strategy
    change's fields, is told to the model as the feedback's diff names them
    (``creatives[0].headline``, ``changes.target_cpa``), each text quoted, not as the whole
    list of creatives (or the whole of ``changes``) before and after, which left the model to
    find the difference in two walls of JSON."""
    batch = evaluated(
        creative_batch(
            creative(headline="Save big this winter"),
            creative(body="Every plan, lower prices.\nLimited time."),
        )
    )
    edited = json.loads(json.dumps(batch.payload))
    edited["creatives"][0]["headline"] = "Save this winter"
    edited["creatives"][1]["body"] = "Every plan, lower prices.\nWhile stocks last."
    proposal_approve(proposal_id=batch.pk, reviewer=operator, edited_payload=edited)
    proposal_execute(proposal_id=batch.pk)

    strategy = evaluated(target_cpa_strategy(target_cpa="40.00"))
    proposal_approve(
        proposal_id=strategy.pk,
        reviewer=operator,
        edited_payload={
            "campaign": "generic-search",
            "changes": {"bidding_strategy": "target_roas", "target_roas": "3.50"},
        },
    )
    proposal_execute(proposal_id=strategy.pk)

    told = {
        pk: outcome_report(
            ClientProposal.from_api(optimizer.get(f"/api/v1/proposals/{pk}/").json())
        )
        for pk in (batch.pk, strategy.pk)
    }
    assert told[batch.pk]["message"].startswith(
        'A reviewer edited it (creatives[0].headline: "Save big this winter" → "Save this '
        'winter"; creatives[1].body: "Every plan, lower prices.\\nLimited time." → "Every '
        'plan, lower prices.\\nWhile stocks last."), then approved it. The edited version '
        "executed. Done: deploy 2 creatives to display-retarget"
    )
    assert told[strategy.pk]["message"].startswith(
        "A reviewer edited it (changes.bidding_strategy: target_cpa → target_roas; "
        "changes.target_cpa: 40.00 → (none); changes.target_roas: (none) → 3.50), then "
        "approved it. The edited version executed."
    )
    # What was proposed and what executed stay whole beside it.
    assert told[strategy.pk]["edited"]["proposed"]["changes"]["target_cpa"] == "40.00"


def test_an_edit_undone_by_a_second_reviewer_is_told_as_run_as_proposed(operators, optimizer):
    """Under a two-person rule one reviewer edits 280 to 200, the next edits it back to 280,
    and it runs as the agent proposed it: its feed says ``approved`` with no diff, and so does
    what the model is told. It read "A reviewer edited it (no field changed) … The edited
    version executed.", an edit that its feed denied."""
    first, second = operators
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=first,
        edited_payload={**proposal.payload, "amount": "200.00"},
    )
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=second,
        edited_payload={**proposal.payload, "amount": "280.00"},
        note="As proposed after all.",
    )
    proposal_approve(proposal_id=proposal.pk, reviewer=first)
    proposal_execute(proposal_id=proposal.pk)

    answer = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
    assert answer["payload"] == answer["proposed_payload"]
    assert Feedback.objects.get(proposal=proposal).kind == "approved"
    told = outcome_report(ClientProposal.from_api(answer))
    assert "edited" not in told
    assert told["message"].startswith(
        "2 reviewers approved it: Reviewer 1: As proposed after all. Executed. Before: "
    )


def test_a_decision_is_dated_once_where_the_agent_reads_it(operators, optimizer):
    """The proposal's decided_at and its decisions' decided_at were two clocks read a few
    milliseconds apart (the decision's record when made, the proposal's when moved): the
    client said "decided at" one and "Reviewer 1 approved it at" the other of one act. Under
    a two-person rule with an edit, the API answers each decision's time, and the proposal's
    is the last one's, to the microsecond."""
    first, second = operators
    Policy.objects.filter(action_type="budget_reallocation").update(
        more_approvals_above_magnitude=Decimal("0.20")
    )
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=first)
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=second,
        edited_payload={**proposal.payload, "amount": "250.00"},
    )
    proposal_approve(proposal_id=proposal.pk, reviewer=first)

    answered = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()

    assert answered["status"] == "approved"
    decided = [decision["decided_at"] for decision in answered["decisions"]]
    assert len(decided) == 3 and answered["decided_at"] == decided[-1]
    recorded = Decision.objects.filter(proposal=proposal).latest("created_at").created_at
    assert Proposal.objects.get(pk=proposal.pk).decided_at == recorded


def test_a_decision_s_history_records_are_dated_when_it_was_made(operators):
    """A decision's own record (its past version's page: "This is decision #N as it stood
    at …", the audit export's "at") and the proposal's record of the approval it counts were
    dated by a clock read after its time (``created_at``, the API's decided_at): each is
    dated when the decision was made."""
    first, second = operators
    Policy.objects.filter(action_type="budget_reallocation").update(
        more_approvals_above_magnitude=Decimal("0.20")
    )
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=first)  # 1 of 2: it waits
    proposal_approve(proposal_id=proposal.pk, reviewer=second)

    counted, settled = Decision.objects.filter(proposal=proposal).order_by("created_at")
    assert [record.history_date for record in counted.history.all()] == [counted.created_at]
    assert [record.history_date for record in settled.history.all()] == [settled.created_at]
    records = {
        record.history_change_reason: record.history_date for record in proposal.history.all()
    }
    said = [reason for reason in records if reason and "1 of 2 approvals" in reason]
    assert len(said) == 1 and records[said[0]] == counted.created_at
    assert Proposal.objects.get(pk=proposal.pk).decided_at == settled.created_at


def test_an_edit_that_takes_out_a_banned_term_says_why_its_risk_fell(operators, login):
    """Under a two-person rule, copywriter's creative says "Guaranteed" and waits at 96. An
    operator edits the term out: its risk became the edit's own, 50, with the history saying
    only "edited by operator before approval" beside Risk 96 → 50. Now it says why; one edit
    that leaves the term in keeps it raised and says nothing of its risk."""
    Policy.objects.filter(action_type="creative_deployment").update(required_approvals=2)
    mended, kept = (
        evaluated(
            creative_batch(creative(headline="Guaranteed savings", body="Every day.")),
            agent="copywriter",
        )
        for _ in range(2)
    )
    assert (mended.risk, kept.risk) == (96, 96)
    operator = login("operator")
    for proposal, body in ((mended, "Every day."), (kept, "Every single day.")):
        edited = decided_from_page(
            operator,
            "edit-approve",
            proposal.pk,
            {
                "edit-creative-0-headline": "Big savings"
                if proposal == mended
                else ("Guaranteed savings"),
                "edit-creative-0-body": body,
                "edit-creative-0-call_to_action": "Try it",
            },
        )
        assert edited.status_code == 302
        proposal.refresh_from_db()
        assert proposal.status == ProposalStatus.PENDING_REVIEW  # 1 of 2 approvals

    assert (mended.risk, kept.risk) == (50, 96)
    edit_record = mended.history.filter(payload=mended.payload).earliest("history_id")
    assert edit_record.history_change_reason == (
        "edited by operator before approval. Risk 96 → 50: the edit took out “guaranteed”, "
        "which raised it; no guardrail speaks about it as edited"
    )
    history = login("auditor").get(reverse("admin:approvals_proposal_history", args=[mended.pk]))
    assert "Risk 96 → 50: the edit took out “guaranteed”, which raised it" in history.text
    kept_record = kept.history.filter(payload=kept.payload).earliest("history_id")
    assert kept_record.history_change_reason == "edited by operator before approval"
