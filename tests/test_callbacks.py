"""Agents hear of their proposals' decisions and executions on their callback URL: signed,
retried when the endpoint fails, and never in the way of the decision itself."""

import time
from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from hitl_client import verify_callback

from approvals.models import Agent, Proposal
from approvals.services.decisions import proposal_approve, proposal_reject, proposal_retry
from approvals.services.proposals import proposal_withdraw, proposal_withdraw_for_agent
from feedback.callbacks import callback_event_deliver
from feedback.models import CallbackEvent, Feedback
from hitlproject.signing import sign
from policies.models import Policy
from tests.conftest import (
    BID_RAISES,
    bid_adjustment,
    creative,
    creative_batch,
    done_while_held,
    reallocation,
    wait_until,
)
from tests.factories import evaluated

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def waiting_proposal() -> Proposal:
    campaign, bid = next(iter(BID_RAISES.items()))
    return evaluated(bid_adjustment(bid, campaign))  # 20%: waits for a person


def settled(event_count: int):
    """Every event written so far delivered or given up on, and ``event_count`` of them."""
    events = list(CallbackEvent.objects.all())
    return len(events) == event_count and all(event.status != "pending" for event in events)


def test_the_agent_hears_of_the_approval_and_the_execution_signed(callback_endpoint):
    endpoint = callback_endpoint(200)
    proposal = waiting_proposal()
    operator = get_user_model().objects.get(username="operator")

    proposal_approve(proposal_id=proposal.pk, reviewer=operator)

    wait_until(lambda: len(endpoint.received) == 2)
    secret = Agent.objects.get(name="optimizer").callback_secret
    for request in endpoint.received:
        assert verify_callback(secret, request["headers"]["X-HITL-Signature"], request["body"])
    # Events are sent at once, in parallel: they may arrive in any order; created_at orders them.
    events = sorted(endpoint.events(), key=lambda event: event["created_at"])
    told = [(e["type"], e["proposal"]["id"], e["proposal"]["status"]) for e in events]
    assert told == [
        ("proposal.approved", proposal.pk, "approved"),
        ("proposal.executed", proposal.pk, "executed"),
    ]
    assert events[0]["reason"] == "approved by a reviewer"
    assert [r["headers"]["X-HITL-Delivery"] for r in endpoint.received] == [
        e["id"] for e in endpoint.events()
    ]
    wait_until(lambda: settled(2))
    assert set(CallbackEvent.objects.values_list("status", flat=True)) == {"delivered"}


def test_an_agent_whose_proposal_was_edited_hears_it_was_approved_with_edits(callback_endpoint):
    """Its feedback said "approved_with_edits", and its callback "approved by a reviewer"
    beside a summary that was not the one it proposed (2.20, where it proposed 2.40)."""
    endpoint = callback_endpoint(200)
    proposal = waiting_proposal()
    operator = get_user_model().objects.get(username="operator")

    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=operator,
        edited_payload={"campaign": proposal.payload["campaign"], "new_bid": "2.20"},
    )

    wait_until(lambda: settled(2))
    [approved] = [e for e in endpoint.events() if e["type"] == "proposal.approved"]
    assert approved["reason"] == "approved with edits by a reviewer"
    assert "2.20" in approved["proposal"]["summary"]


def test_an_agent_hears_of_edits_a_first_of_two_reviewers_made_when_the_second_approves(
    callback_endpoint, operators
):
    """Of two approvals, the first edited (2.20 where it proposed 2.40), the second as the
    first left it: its feedback says approved_with_edits, and so does its callback, not
    "approved by a reviewer" because the approval that settled it edited nothing."""
    endpoint = callback_endpoint(200)
    first, second = operators
    Policy.objects.filter(action_type="bid_adjustment").update(required_approvals=2)
    proposal = waiting_proposal()
    assert proposal.required_approvals == 2

    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=first,
        edited_payload={"campaign": proposal.payload["campaign"], "new_bid": "2.20"},
    )
    proposal_approve(proposal_id=proposal.pk, reviewer=second)

    wait_until(lambda: settled(2))
    [approved] = [e for e in endpoint.events() if e["type"] == "proposal.approved"]
    assert approved["reason"] == "approved with edits by 2 reviewers"
    assert Feedback.objects.get(proposal=proposal).kind == "approved_with_edits"


def test_an_agent_is_told_two_reviewers_approved_under_a_two_person_rule(
    callback_endpoint, operators
):
    """Two operators approved under a two-person rule; its callback said "approved by a
    reviewer", where its feedback names both ("Reviewer 1 approved: …", "Reviewer 2
    approved: …") and the client's adapters tell the model "2 reviewers"."""
    endpoint = callback_endpoint(200)
    first, second = operators
    Policy.objects.filter(action_type="bid_adjustment").update(required_approvals=2)
    proposal = waiting_proposal()

    proposal_approve(proposal_id=proposal.pk, reviewer=first, note="Agreed")
    proposal_approve(proposal_id=proposal.pk, reviewer=second, note="Fine by me")

    wait_until(lambda: settled(2))
    [approved] = [e for e in endpoint.events() if e["type"] == "proposal.approved"]
    assert approved["reason"] == (
        "approved by 2 reviewers\nReviewer 1 approved: Agreed\nReviewer 2 approved: Fine by me"
    )
    assert Feedback.objects.get(proposal=proposal).note == (
        "Reviewer 1 approved: Agreed\nReviewer 2 approved: Fine by me"
    )


def test_an_agent_rejected_after_one_approval_is_told_of_the_approval_too(
    callback_endpoint, operators
):
    """Under a two-person rule one operator approved and the second rejected: its callback
    said "rejected by a reviewer: Too aggressive" alone, as if nobody had agreed with the
    agent, where its feedback and the client's adapters say the first approved it and what
    each wrote. The callback says it in the feedback's words, naming nobody."""
    endpoint = callback_endpoint(200)
    first, second = operators
    Policy.objects.filter(action_type="bid_adjustment").update(required_approvals=2)
    proposal = waiting_proposal()

    proposal_approve(proposal_id=proposal.pk, reviewer=first, note="Fine, watch the CPA.")
    proposal_reject(
        proposal_id=proposal.pk, reviewer=second, reason_code="too_aggressive", note="Halve it."
    )

    wait_until(lambda: settled(1))
    [rejected] = endpoint.events()
    assert rejected["type"] == "proposal.rejected"
    assert rejected["reason"] == (
        "rejected by a reviewer: Too aggressive\n"
        "Reviewer 1 approved: Fine, watch the CPA.\n"
        "Reviewer 2 rejected (Too aggressive): Halve it."
    )
    assert rejected["reason"].split("\n", 1)[1] == Feedback.objects.get(proposal=proposal).note
    for request in endpoint.received:
        assert b"operator" not in request["body"], request["body"]


def test_an_agent_rejected_by_one_reviewer_is_told_what_the_reviewer_wrote(callback_endpoint):
    """One reviewer rejected with the reason Other and a note: its callback said "rejected
    by a reviewer: Other" alone, where a rejection by the second of two reviewers went on
    with what each wrote. The one reviewer's note comes in the same shape; a rejection with
    no note says the reason alone, as before."""
    endpoint = callback_endpoint(200)
    with_note, without_note = waiting_proposal(), waiting_proposal()
    operator = get_user_model().objects.get(username="operator")

    proposal_reject(
        proposal_id=with_note.pk,
        reviewer=operator,
        reason_code="other",
        note="not now\nReviewer 2 approved: forged",
    )
    proposal_reject(proposal_id=without_note.pk, reviewer=operator, reason_code="off_brand")

    wait_until(lambda: settled(2))
    said = {e["proposal"]["id"]: e["reason"] for e in endpoint.events()}
    assert said == {
        # A note's further lines are indented: no note passes a line off as another's.
        with_note.pk: (
            "rejected by a reviewer: Other\n"
            "Reviewer 1 rejected (Other): not now\n  Reviewer 2 approved: forged"
        ),
        without_note.pk: "rejected by a reviewer: Off brand",
    }
    assert Feedback.objects.get(proposal=with_note).note == "not now\nReviewer 2 approved: forged"


def test_an_agent_approved_by_one_reviewer_is_told_what_the_reviewer_wrote(callback_endpoint):
    """An approval with a note, or an edit with one, said "approved by a reviewer" alone;
    the note was in its feedback only."""
    endpoint = callback_endpoint(200)
    approved = waiting_proposal()
    edited = evaluated(bid_adjustment(BID_RAISES["generic-search"], "generic-search"))
    operator = get_user_model().objects.get(username="operator")

    proposal_approve(proposal_id=approved.pk, reviewer=operator, note="Watch the CPA.")
    proposal_approve(
        proposal_id=edited.pk,
        reviewer=operator,
        edited_payload={"campaign": "generic-search", "new_bid": "1.65"},
        note="A smaller step first.",
    )

    wait_until(lambda: settled(4))
    said = {
        e["proposal"]["id"]: e["reason"]
        for e in endpoint.events()
        if e["type"] == "proposal.approved"
    }
    assert said == {
        approved.pk: "approved by a reviewer\nReviewer 1 approved: Watch the CPA.",
        edited.pk: (
            "approved with edits by a reviewer\n"
            "Reviewer 1 approved with edits: A smaller step first."
        ),
    }


def test_an_agent_told_of_a_retry_is_not_told_the_approvals_note_again(callback_endpoint, channel):
    """A failed proposal sent to run again is approved again by no new decision: its agent
    is told of the retry alone, not the approval's note once more."""
    endpoint = callback_endpoint(200)
    operator = get_user_model().objects.get(username="operator")
    channel(400, 400)
    failing = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=failing.pk, reviewer=operator, note="Go ahead.")
    wait_until(lambda: Proposal.objects.get(pk=failing.pk).status == "failed")
    proposal_retry(proposal_id=failing.pk, reviewer=operator)
    wait_until(lambda: settled(4))

    approved = sorted(
        (e["created_at"], e["reason"])
        for e in endpoint.events()
        if e["type"] == "proposal.approved"
    )
    assert [reason for _, reason in approved] == [
        "approved by a reviewer\nReviewer 1 approved: Go ahead.",
        "sent to run again by a reviewer",
    ]


def test_the_agent_hears_a_reviewer_withdrew_its_proposal_not_its_own_withdrawal(callback_endpoint):
    """A reviewer's withdrawal ends the proposal as a rejection does: an agent that resumes
    its run on the callback waited for ever. Its own withdrawal it knows of already."""
    endpoint = callback_endpoint(200)
    theirs, its_own = waiting_proposal(), waiting_proposal()
    operator = get_user_model().objects.get(username="operator")

    proposal_withdraw(agent=its_own.agent, proposal_id=its_own.pk, note="not now")
    proposal_withdraw_for_agent(proposal_id=theirs.pk, reviewer=operator, note="owner asked")

    wait_until(lambda: settled(1))
    secret = Agent.objects.get(name="optimizer").callback_secret
    [request] = endpoint.received
    assert verify_callback(secret, request["headers"]["X-HITL-Signature"], request["body"])
    [event] = endpoint.events()
    assert (event["type"], event["proposal"]["id"], event["proposal"]["status"]) == (
        "proposal.withdrawn",
        theirs.pk,
        "withdrawn",
    )
    assert event["reason"] == "withdrawn by a reviewer for the agent: owner asked"


def test_the_agent_is_told_what_people_decided_not_who_decided(callback_endpoint, channel):
    """An agent is told what was decided, not who decided it (its API's ``decisions`` and its
    feedback name nobody): a callback's ``reason`` said "approved by operator", "rejected by
    operator: …", "withdrawn by operator for the agent", "execution retried by operator",
    the console username of whoever acted."""
    endpoint = callback_endpoint(200)
    operator = get_user_model().objects.get(username="operator")
    rejected, withdrawn = waiting_proposal(), waiting_proposal()
    proposal_reject(
        proposal_id=rejected.pk, reviewer=operator, reason_code="too_aggressive", note="Slow down"
    )
    proposal_withdraw_for_agent(proposal_id=withdrawn.pk, reviewer=operator, note="owner asked")
    # A reallocation the account's endpoint refuses: approved, it fails; retried, again.
    channel(400, 400)
    failing = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=failing.pk, reviewer=operator)
    wait_until(lambda: Proposal.objects.get(pk=failing.pk).status == "failed")
    proposal_retry(proposal_id=failing.pk, reviewer=operator)
    wait_until(lambda: settled(6))

    said = sorted((e["type"], e["reason"]) for e in endpoint.events())
    assert [kind for kind, _ in said] == [
        "proposal.approved",
        "proposal.approved",
        "proposal.failed",
        "proposal.failed",
        "proposal.rejected",
        "proposal.withdrawn",
    ]
    assert "approved by a reviewer" in [reason for _, reason in said]
    assert "sent to run again by a reviewer" in [reason for _, reason in said]
    assert (
        "proposal.rejected",
        "rejected by a reviewer: Too aggressive\nReviewer 1 rejected (Too aggressive): Slow down",
    ) in said
    assert ("proposal.withdrawn", "withdrawn by a reviewer for the agent: owner asked") in said
    for request in endpoint.received:
        assert b"operator" not in request["body"], request["body"]
    # The history, which auditors read, still says who.
    assert Proposal.history.filter(id=rejected.pk, history_change_reason__contains="by operator")


def test_an_agent_with_the_client_alone_verifies_the_events_it_receives(callback_endpoint):
    """The receiver's check was the platform's own ``hitlproject.signing.verify``: an agent
    that installs hitl-client alone had nothing to check a callback's signature with."""
    endpoint = callback_endpoint(200)
    proposal = waiting_proposal()
    operator = get_user_model().objects.get(username="operator")

    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="too_aggressive")

    wait_until(lambda: len(endpoint.received) == 1)
    (request,) = endpoint.received
    secret = Agent.objects.get(name="optimizer").callback_secret
    signature = request["headers"]["X-HITL-Signature"]
    assert verify_callback(secret, signature, request["body"])
    assert not verify_callback(secret, signature, request["body"] + b" ")
    assert not verify_callback("whsec_another", signature, request["body"])
    assert not verify_callback(secret, signature, request["body"], tolerance=-1)


def test_a_failing_endpoint_is_retried_until_it_answers(callback_endpoint):
    endpoint = callback_endpoint(503, 500, 200)
    proposal = waiting_proposal()
    operator = get_user_model().objects.get(username="operator")

    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="too_aggressive")

    wait_until(lambda: settled(1))
    event = CallbackEvent.objects.get()
    assert (event.type, event.status, event.attempts) == ("proposal.rejected", "delivered", 3)
    assert [attempt["result"] for attempt in event.log] == ["HTTP 503", "HTTP 500", "HTTP 200"]
    assert len({r["headers"]["X-HITL-Delivery"] for r in endpoint.received}) == 1  # one event


def test_an_endpoint_saying_when_to_come_back_is_not_sent_again_before(callback_endpoint):
    callback_endpoint(429, 200, retry_after="120")
    proposal = waiting_proposal()
    operator = get_user_model().objects.get(username="operator")

    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="too_aggressive")

    event = wait_until(
        lambda: next((e for e in CallbackEvent.objects.all() if len(e.log) == 1), None)
    )
    tried_at = datetime.fromisoformat(event.log[0]["at"])
    assert event.log[0]["result"] == "HTTP 429"
    assert (event.status, event.next_attempt_at - tried_at) == ("pending", timedelta(seconds=120))
    CallbackEvent.objects.update(status="failed")  # stop retrying before the test ends


def test_an_endpoint_that_refuses_is_given_up_on_and_an_operator_resends(callback_endpoint, login):
    endpoint = callback_endpoint(410, 200)
    proposal = waiting_proposal()
    operator = get_user_model().objects.get(username="operator")
    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="other")
    wait_until(lambda: settled(1))
    assert (CallbackEvent.objects.get().status, CallbackEvent.objects.get().attempts) == (
        "failed",
        1,
    )

    response = login("operator").post(
        reverse("admin:feedback_callbackevent_changelist"),
        {"action": "deliver_again", "_selected_action": [CallbackEvent.objects.get().pk]},
        follow=True,
    )

    assert "Sending 1 event again." in response.text
    wait_until(lambda: settled(1))
    assert CallbackEvent.objects.get().status == "delivered"
    assert len(endpoint.received) == 2


def test_a_dead_endpoint_does_not_hold_up_the_decision_or_the_execution(callback_endpoint):
    endpoint = callback_endpoint(200)
    endpoint.close()  # nothing listens there any more
    proposal = waiting_proposal()
    operator = get_user_model().objects.get(username="operator")

    assert proposal_approve(proposal_id=proposal.pk, reviewer=operator).status == "approved"

    wait_until(lambda: Proposal.objects.get(pk=proposal.pk).status == "executed")
    wait_until(lambda: CallbackEvent.objects.filter(attempts__gte=2).count() == 2)
    assert all(
        attempt["result"].startswith("could not connect")
        for event in CallbackEvent.objects.all()
        for attempt in event.log
    )
    CallbackEvent.objects.update(status="failed")  # stop retrying before the test ends


def test_a_signature_verifies_only_for_its_secret_body_and_time():
    body = b'{"id":"e1"}'
    now = int(time.time())
    header = sign("whsec_a", now, body)
    assert verify_callback("whsec_a", header, body)
    assert not verify_callback("whsec_b", header, body)
    assert not verify_callback("whsec_a", header, body + b" ")
    assert not verify_callback("whsec_a", sign("whsec_a", now - 3600, body), body)  # replayed
    assert not verify_callback("whsec_a", "v1=abc", body)


def test_events_given_up_on_are_sent_again_where_the_agent_is_reached_now(callback_endpoint, login):
    """An operator who put the agent's callback URL right and sent its failed events again
    saw them fail again: they went to the URL they were first addressed to (helper-94)."""
    wrong = callback_endpoint(404)
    proposal = waiting_proposal()
    operator = get_user_model().objects.get(username="operator")
    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="other")
    wait_until(lambda: settled(1))
    right = callback_endpoint(200)  # the agent's callback URL, put right

    login("operator").post(
        reverse("admin:feedback_callbackevent_changelist"),
        {"action": "deliver_again", "_selected_action": [CallbackEvent.objects.get().pk]},
    )

    wait_until(lambda: settled(1))
    event = CallbackEvent.objects.get()
    assert (event.status, event.url) == ("delivered", right.url)
    assert (len(wrong.received), len(right.received)) == (1, 1)


def test_an_event_is_not_sent_where_the_agent_is_no_longer_reached(callback_endpoint):
    """Its callback URL removed (an endpoint handed over, say), an agent's pending events are
    not sent there on their next attempt: they are given up on, saying why."""
    endpoint = callback_endpoint(503)
    proposal = waiting_proposal()
    operator = get_user_model().objects.get(username="operator")
    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="other")
    wait_until(lambda: CallbackEvent.objects.filter(attempts=1).exclude(log=[]).exists())
    Agent.objects.filter(name="optimizer").update(callback_url="")
    CallbackEvent.objects.update(next_attempt_at=timezone.now())

    callback_event_deliver(event_id=CallbackEvent.objects.get().pk)

    event = CallbackEvent.objects.get()
    assert event.status == "failed"
    assert event.log[-1]["result"] == "not sent: the agent has no callback URL now"
    assert len(endpoint.received) == 1


def test_a_deactivated_agents_endpoint_is_not_told_of_its_proposals(callback_endpoint):
    """Deactivated, an agent is answered 401 by the API; a rejection made afterwards, with
    the reviewer's note, had still been posted to its callback URL, signed."""
    endpoint = callback_endpoint(200)
    proposal = waiting_proposal()
    Agent.objects.filter(name="optimizer").update(is_active=False)
    operator = get_user_model().objects.get(username="operator")

    proposal_reject(
        proposal_id=proposal.pk, reviewer=operator, reason_code="other", note="Not this quarter"
    )

    event = wait_until(lambda: CallbackEvent.objects.exclude(log=[]).first())
    assert (event.type, event.status) == ("proposal.rejected", "failed")
    assert event.log[-1]["result"] == "not sent: the agent is deactivated"
    assert endpoint.received == []


def test_an_agent_deactivated_while_its_event_is_taken_is_not_sent_it(callback_endpoint):
    """A worker took an event to send while the agent's owner was deactivating the agent (a
    transaction not yet committed); the worker waited for the agent's lock to count the
    requests under way, the deactivation committed, and the worker sent the event all the
    same, from the agent as it had read it before waiting. Now it reads the agent once it
    holds it: not sent, given up on, saying why."""
    endpoint = callback_endpoint(503)
    proposal = waiting_proposal()
    operator = get_user_model().objects.get(username="operator")
    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="other")
    wait_until(lambda: CallbackEvent.objects.filter(attempts=1).exclude(log=[]).exists())
    CallbackEvent.objects.update(next_attempt_at=timezone.now())
    event_id = CallbackEvent.objects.get().pk

    def deactivate() -> None:  # the owner's save, not yet committed
        agent = Agent.objects.get(name="optimizer")
        agent.is_active = False
        agent.save()

    done_while_held(deactivate, lambda: callback_event_deliver(event_id=event_id))

    event = CallbackEvent.objects.get()
    assert event.status == "failed"
    assert event.log[-1]["result"] == "not sent: the agent is deactivated"
    assert len(endpoint.received) == 1  # the first attempt's, before


def test_a_redirect_to_the_metadata_service_is_not_followed_and_the_event_says_so(
    callback_endpoint, login
):
    """An agent's endpoint that sends the platform on to the cloud's metadata service: one
    request, to the endpoint alone, and the event given up on, its log saying it was a
    redirect, where to, not followed (it said "HTTP 302"), and its page no next attempt (it
    showed the lease of the last one, a minute on, as though another were to come)."""
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    endpoint = callback_endpoint(302, headers=[("Location", metadata)])
    proposal = waiting_proposal()
    operator = get_user_model().objects.get(username="operator")

    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="other")

    wait_until(lambda: settled(1))
    event = CallbackEvent.objects.get()
    assert (event.status, event.attempts, len(endpoint.received)) == ("failed", 1, 1)
    assert event.log[0]["result"] == f"HTTP 302 (a redirect to “{metadata}”, not followed)"
    page = login("operator").get(reverse("admin:feedback_callbackevent_change", args=[event.pk]))
    assert "none: given up on (an operator may deliver it again)" in page.text
    next_attempt = timezone.localtime(event.next_attempt_at)
    assert f"{next_attempt:%Y-%m-%d %H:%M}" not in page.text


def test_the_agent_is_told_what_its_execution_changed_not_the_lifecycles_words(
    callback_endpoint, channel, optimizer
):
    """A ``proposal.executed`` event's reason read "Executing → Executed", which its type says
    already: it says what the execution changed, as the API's ``execution`` has it, whichever
    way it ran (alone, with others of a batch, on a channel)."""
    endpoint = callback_endpoint(200)
    Agent.objects.filter(name="copywriter").update(callback_url=endpoint.url)
    operator = get_user_model().objects.get(username="operator")
    # Alone: a reallocation a person approved, and a creative batch (no field changes).
    moved = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=moved.pk, reviewer=operator)
    batch = evaluated(creative_batch(creative(), creative(headline="Search faster")), "copywriter")
    proposal_approve(proposal_id=batch.pk, reviewer=operator)
    # Together: two auto-approved bids of one batch.
    answer = optimizer.post(
        "/api/v1/proposals/batch/",
        [bid_adjustment("2.12", "brand-search"), bid_adjustment("1.59", "generic-search")],
        format="json",
    )
    assert answer.status_code == 200, answer.content
    together = [item["proposal"]["id"] for item in answer.json()]
    wait_until(lambda: Proposal.objects.filter(status="executed").count() == 4)
    # On a channel: the account's endpoint carries it out.
    channel(200)
    on_channel = evaluated(bid_adjustment("0.84", "display-retarget"))
    wait_until(lambda: Proposal.objects.get(pk=on_channel.pk).status == "executed")
    wait_until(lambda: len([e for e in endpoint.events() if e["type"] == "proposal.executed"]) == 5)

    said = {
        e["proposal"]["id"]: e["reason"]
        for e in endpoint.events()
        if e["type"] == "proposal.executed"
    }
    assert said[moved.pk] == (
        "executed: brand-search's daily budget 1000.00 → 720.00; "
        "generic-search's daily budget 500.00 → 780.00"
    )
    ids = sorted(Proposal.objects.get(pk=batch.pk).deployed_creatives.values_list("pk", flat=True))
    assert said[batch.pk] == (
        f"executed: deploy 2 creatives to display-retarget (in the ledger: creatives "
        f"#{ids[0]}, #{ids[1]})"
    )
    assert [said[pk] for pk in together] == [
        "executed: brand-search's bid 2.00 → 2.12",
        "executed: generic-search's bid 1.50 → 1.59",
    ]
    assert said[on_channel.pk] == "executed: display-retarget's bid 0.80 → 0.84"
    # As the API's execution says it.
    execution = optimizer.get(f"/api/v1/proposals/{on_channel.pk}/").json()["execution"]
    assert (execution["before_state"], execution["after_state"]) == (
        {"display-retarget": {"bid": "0.80"}},
        {"display-retarget": {"bid": "0.84"}},
    )
    # The history, for auditors, keeps the lifecycle's words beside the attempt's states.
    assert Proposal.history.filter(
        id=moved.pk, status="executed", history_change_reason="Executing → Executed"
    ).exists()


def test_a_failed_execution_tells_the_agent_the_executions_own_error(
    callback_endpoint, optimizer, channel
):
    endpoint = callback_endpoint(200)
    operator = get_user_model().objects.get(username="operator")
    channel(400)  # the account's endpoint refuses it
    failing = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=failing.pk, reviewer=operator)
    wait_until(lambda: Proposal.objects.get(pk=failing.pk).status == "failed")
    wait_until(lambda: settled(2))

    [event] = [e for e in endpoint.events() if e["type"] == "proposal.failed"]
    error = optimizer.get(f"/api/v1/proposals/{failing.pk}/").json()["execution"]["error"]
    assert error
    assert event["reason"] == f"execution failed: {error}"
