"""Every decision yields feedback the agent pulls by cursor."""

import threading
import time
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.urls import reverse

from approvals.models import Proposal
from approvals.services.decisions import proposal_approve, proposal_reject, proposal_retry
from executors.runner import proposal_execute
from ledger.models import Campaign
from policies.models import Policy
from tests.conftest import bid_adjustment, reallocation
from tests.factories import evaluated


def test_agent_pulls_its_feedback_oldest_first_by_cursor(agent_client):
    operator = get_user_model().objects.get(username="operator")
    approved = evaluated(reallocation("200.00"))
    rejected = evaluated(reallocation("300.00"))
    evaluated(reallocation("400.00"), agent="copywriter")
    proposal_approve(proposal_id=approved.pk, reviewer=operator)
    proposal_reject(
        proposal_id=rejected.pk, reviewer=operator, reason_code="too_aggressive", note="Halve it."
    )

    optimizer = agent_client("optimizer")
    first = optimizer.get("/api/v1/feedback/?page_size=1").json()
    assert [(f["proposal"], f["kind"]) for f in first["results"]] == [(approved.pk, "approved")]
    second = optimizer.get(first["next"]).json()
    assert [(f["proposal"], f["kind"], f["reason_code"], f["note"]) for f in second["results"]] == [
        (rejected.pk, "rejected", "too_aggressive", "Halve it.")
    ]
    assert second["next"] is None
    assert agent_client("copywriter").get("/api/v1/feedback/").json()["results"] == []

    # Polled later, ``resume`` returns what arrived since, and only that.
    assert optimizer.get(second["resume"]).json()["results"] == []
    later = evaluated(reallocation("250.00"))
    proposal_approve(proposal_id=later.pk, reviewer=operator)
    polled = optimizer.get(second["resume"]).json()
    assert [f["proposal"] for f in polled["results"]] == [later.pk]
    assert optimizer.get(polled["resume"]).json()["results"] == []


def test_what_each_of_two_approvers_wrote_reaches_the_agent(agent_client, operators):
    """Where an action needs two approvals, the agent learns what both people decided and
    wrote, each as "Reviewer 1", "Reviewer 2" in the order they decided (not by name: the API
    tells an agent what was decided, not who decided it): the first approver's note is a
    correction as much as the second's. A note's own lines are indented under its author, so
    no note passes a line off as another person's. An edit starts the round afresh: notes on the
    action as it stood before are not about the action approved."""
    operator, colleague = operators
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    seconded = evaluated(reallocation("210.00"))
    spoof = "Fine, watch the CPA.\r\nReviewer 2: and halve it."  # as a browser sends it
    proposal_approve(proposal_id=seconded.pk, reviewer=operator, note=spoof)
    proposal_approve(proposal_id=seconded.pk, reviewer=colleague, note="Agreed, this week only.")
    quiet_second = evaluated(reallocation("220.00"))
    proposal_approve(proposal_id=quiet_second.pk, reviewer=colleague, note="Good signal.")
    proposal_reject(proposal_id=quiet_second.pk, reviewer=operator, reason_code="wrong_signal")
    quiet_first = evaluated(reallocation("225.00"))
    proposal_approve(proposal_id=quiet_first.pk, reviewer=operator)
    proposal_approve(proposal_id=quiet_first.pk, reviewer=colleague, note="Only mine.")
    edited = evaluated(reallocation("230.00"))
    proposal_approve(proposal_id=edited.pk, reviewer=operator, note="As proposed: fine.")
    proposal_approve(
        proposal_id=edited.pk,
        reviewer=colleague,
        note="Less.",
        edited_payload={**edited.payload, "amount": "150.00"},
    )
    proposal_approve(proposal_id=edited.pk, reviewer=operator)

    feedback = agent_client("optimizer").get("/api/v1/feedback/").json()["results"]
    assert [(f["proposal"], f["kind"], f["note"]) for f in feedback] == [
        (
            seconded.pk,
            "approved",
            "Reviewer 1 approved: Fine, watch the CPA.\n  Reviewer 2: and halve it.\n"
            "Reviewer 2 approved: Agreed, this week only.",
        ),
        # The approver's note is not the rejection's reason: each says what its author did.
        (
            quiet_second.pk,
            "rejected",
            "Reviewer 1 approved: Good signal.\nReviewer 2 rejected (Wrong signal).",
        ),
        (quiet_first.pk, "approved", "Reviewer 1 approved.\nReviewer 2 approved: Only mine."),
        (
            edited.pk,
            "approved_with_edits",
            "Reviewer 1 approved with edits: Less.\nReviewer 2 approved.",
        ),
    ]
    quiet_round = evaluated(reallocation("235.00"))
    proposal_approve(proposal_id=quiet_round.pk, reviewer=operator)
    proposal_approve(proposal_id=quiet_round.pk, reviewer=colleague)
    feedback = agent_client("optimizer").get("/api/v1/feedback/").json()["results"]
    assert feedback[-1]["note"] == ""  # nobody wrote anything: nothing is made up


def test_a_rejection_after_an_approval_says_so_though_nobody_wrote_a_note(agent_client, operators):
    """Under a two-person rule, one approved and a second rejected, neither writing a note:
    the agent's feedback read "rejected" (too aggressive) with no note, as if nobody had
    agreed with it; the proposal's decisions said one had approved first."""
    operator, colleague = operators
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = evaluated(reallocation("210.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    proposal_reject(proposal_id=proposal.pk, reviewer=colleague, reason_code="too_aggressive")

    [feedback] = agent_client("optimizer").get("/api/v1/feedback/").json()["results"]
    assert (feedback["kind"], feedback["reason_code"], feedback["note"]) == (
        "rejected",
        "too_aggressive",
        "Reviewer 1 approved.\nReviewer 2 rejected (Too aggressive).",
    )
    answer = agent_client("optimizer").get(f"/api/v1/proposals/{proposal.pk}/").json()
    assert [(d["outcome"], d["round"]) for d in answer["decisions"]] == [
        ("approve", 1),
        ("reject", 1),
    ]


def test_dry_run_tells_the_verdict_and_writes_nothing(optimizer):
    response = optimizer.post("/api/v1/policies/evaluate/", reallocation("50.00"), format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["outcome"], body["policy"]["name"], body["magnitude"]) == (
        "auto_approve",
        "Budget reallocations",
        "0.050000",
    )
    assert body["policy"]["version"] is not None
    assert not Proposal.objects.exists()


def test_schema_and_docs_are_served_without_a_key(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/proposals/batch/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_the_cursor_never_skips_feedback_committed_out_of_order(agent_client):
    """Two decisions at once: the first writes its feedback, then holds its transaction open
    while the second decides and the agent polls. Had the second's feedback (a higher id)
    been readable first, the agent's cursor would move past the first's for good."""
    operator = get_user_model().objects.get(username="operator")
    slow, fast = evaluated(reallocation("200.00")), evaluated(reallocation("210.00"))
    optimizer = agent_client("optimizer")
    start = optimizer.get("/api/v1/feedback/").json()
    written, release = threading.Event(), threading.Event()

    def decide_slowly():
        try:
            with transaction.atomic():
                proposal_reject(proposal_id=slow.pk, reviewer=operator, reason_code="other")
                written.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def decide_quickly():
        try:
            written.wait(timeout=30)
            proposal_reject(proposal_id=fast.pk, reviewer=operator, reason_code="other")
        finally:
            connection.close()

    threads = [threading.Thread(target=decide_slowly), threading.Thread(target=decide_quickly)]
    for thread in threads:
        thread.start()
    written.wait(timeout=30)
    time.sleep(0.5)  # the second decision reaches its feedback meanwhile
    seen = []
    page = optimizer.get(start["resume"]).json()
    seen += [f["proposal"] for f in page["results"]]
    release.set()
    for thread in threads:
        thread.join()
    page = optimizer.get(page["resume"]).json()
    seen += [f["proposal"] for f in page["results"]]

    assert seen == [slow.pk, fast.pk]


def failed_feedback(agent_client) -> list[tuple[int, str, str]]:
    return [
        (item["proposal"], item["kind"], item["note"])
        for item in agent_client("optimizer").get("/api/v1/feedback/").json()["results"]
    ]


def test_an_execution_that_fails_is_in_the_agent_s_feedback_with_its_error(agent_client):
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=Decimal("750"))

    assert proposal_execute(proposal_id=proposal.pk).status == "failed"

    assert failed_feedback(agent_client) == [
        (proposal.pk, "approved", ""),
        (
            proposal.pk,
            "failed",
            "A guardrail refuses it now: generic-search's daily budget would be 780.00 USD, "
            "above its cap of 750.00 USD.",
        ),
    ]


def test_a_channel_refusing_an_action_is_in_the_agent_s_feedback(agent_client, channel):
    operator = get_user_model().objects.get(username="operator")
    channel(422)
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)

    assert proposal_execute(proposal_id=proposal.pk).status == "failed"

    (_, approved, _), (pk, kind, note) = failed_feedback(agent_client)
    assert (approved, pk, kind) == ("approved", proposal.pk, "failed")
    assert "422" in note


def test_a_failure_a_reviewer_sends_to_run_again_is_followed_in_the_feed_by_how_it_ended(
    agent_client, channel, login
):
    """A bid the policy let run fails on the account's endpoint (HTTP 400); an operator sends
    it to run again from the console, and it executes. The agent's feed held only the failure:
    an agent learning from its feed alone read it as failed, while its callback and the API
    said it had been sent to run again and had executed."""
    channel(400, 200)
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal.status == "approved"
    assert proposal_execute(proposal_id=proposal.pk).status == "failed"

    console = login("operator")
    console.post(reverse("admin:approvals_proposal_retry", args=[proposal.pk]))
    assert proposal_execute(proposal_id=proposal.pk).status == "executed"

    assert failed_feedback(agent_client) == [
        (proposal.pk, "failed", "the endpoint answered HTTP 400"),
        (proposal.pk, "sent_to_run_again", "sent to run again by a reviewer"),
        (proposal.pk, "executed", "executed: brand-search's bid 2.00 → 2.12"),
    ]


def test_a_retried_execution_that_fails_again_is_in_the_feed_as_failed_again(
    agent_client, channel, login
):
    channel(400, 409)
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=proposal.pk).status == "failed"
    login("operator").post(reverse("admin:approvals_proposal_retry", args=[proposal.pk]))
    assert proposal_execute(proposal_id=proposal.pk).status == "failed"

    assert failed_feedback(agent_client) == [
        (proposal.pk, "failed", "the endpoint answered HTTP 400"),
        (proposal.pk, "sent_to_run_again", "sent to run again by a reviewer"),
        (proposal.pk, "failed", "the endpoint answered HTTP 409"),
    ]


def test_a_ledger_execution_retried_once_its_cap_was_raised_is_in_the_feed_as_executed(
    agent_client,
):
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    capped = Campaign.objects.filter(external_id="generic-search")
    capped.update(max_daily_budget=Decimal("750"))
    assert proposal_execute(proposal_id=proposal.pk).status == "failed"
    capped.update(max_daily_budget=Decimal("800"))
    proposal_retry(proposal_id=proposal.pk, reviewer=operator)
    assert proposal_execute(proposal_id=proposal.pk).status == "executed"

    assert [kind for _, kind, _ in failed_feedback(agent_client)] == [
        "approved",
        "failed",
        "sent_to_run_again",
        "executed",
    ]
    assert failed_feedback(agent_client)[-1][2] == (
        "executed: brand-search's daily budget 1000.00 → 720.00; "
        "generic-search's daily budget 500.00 → 780.00"
    )


def test_a_feedback_record_says_which_of_its_proposals_it_is_about(agent_client):
    """An agent reading its feed learns from each record what was decided on which of its
    actions, in the record itself: the action in words (``summary``, as the proposal's, a
    reviewer's edit included) and the agent's own reference to it (``external_ref``), as a
    callback's body gives them. Before, a record named the proposal by the platform's id
    alone ("rejected, too_aggressive: Halve it." on #7), so an agent had to read every
    proposal again to know what a person had turned down."""
    operator = get_user_model().objects.get(username="operator")
    rejected = evaluated(reallocation("300.00", external_ref="run-7/step-3"))
    edited = evaluated(reallocation("280.00"))
    proposal_reject(
        proposal_id=rejected.pk, reviewer=operator, reason_code="too_aggressive", note="Halve it."
    )
    proposal_approve(
        proposal_id=edited.pk,
        reviewer=operator,
        edited_payload={**edited.payload, "amount": "100.00"},
    )

    records = agent_client("optimizer").get("/api/v1/feedback/").json()["results"]
    assert [
        (r["kind"], r["summary"], r["external_ref"], r["reason_code"], r["note"]) for r in records
    ] == [
        (
            "rejected",
            "move 300.00 USD/day from brand-search to generic-search (30.0%)",
            "run-7/step-3",
            "too_aggressive",
            "Halve it.",
        ),
        (
            "approved_with_edits",
            "move 100.00 USD/day from brand-search to generic-search (10.0%)",
            "",
            "",
            "",
        ),
    ]
    assert records[1]["diff"] == {"amount": {"from": "280.00", "to": "100.00"}}
