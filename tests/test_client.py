"""The Python client (clients/python, ``hitl_client``) against the platform as it runs: the
Procfile's web process and a real Celery worker. The reference scenario through the client:
a 6% bid change executes with nobody involved, the 28% reallocation waits for an operator,
a creative with a banned term is held, naming the term, and rejected with the reviewer's
reason. Then what an agent relies on:
typed errors with the API's message, idempotent retries, the dry run, campaigns, feedback
from a kept resume link, outcomes, and the async client."""

import asyncio
import gc
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils.timezone import now as django_now
from hitl_client import (
    AsyncClient,
    AuthFailed,
    Client,
    Conflict,
    ConnectionFailed,
    HitlError,
    NotFound,
    ProposalRequest,
    RetryPolicy,
    Status,
    Unprocessable,
    ValidationFailed,
    WaitTimedOut,
    Withdrawal,
)
from hitl_client._tools import outcome_report

from approvals.models import Proposal as ProposalRow
from approvals.services.decisions import proposal_approve, proposal_reject
from approvals.services.expiry import proposals_expire_overdue
from approvals.services.proposals import proposal_withdraw_for_agent
from ledger.models import Campaign
from tests.answer_lost import answer_lost_proxy
from tests.conftest import connections_to, creative

pytestmark = [pytest.mark.worker, pytest.mark.usefixtures("celery_worker")]

REALLOCATION = {"from_campaign": "brand-search", "to_campaign": "generic-search", "amount": "280"}


@pytest.fixture
def hitl(web_server, demo_world, monkeypatch):
    """The client as an agent configures it: from HITL_BASE_URL and HITL_API_KEY."""
    monkeypatch.setenv("HITL_BASE_URL", web_server)
    monkeypatch.setenv("HITL_API_KEY", demo_world["agents"]["optimizer"])
    with Client() as client:
        yield client


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def propose_bid(hitl: Client, new_bid: str = "2.12", **extra):
    return hitl.propose(
        "bid_adjustment",
        "demo",
        {"campaign": "brand-search", "new_bid": new_bid},
        rationale="CPC below target for five days.",
        confidence=0.9,
        **extra,
    )


def propose_reallocation(hitl: Client, **extra):
    return hitl.propose(
        "budget_reallocation",
        "demo",
        REALLOCATION,
        rationale="generic-search converts at 2.3x brand-search's rate this week.",
        confidence=0.82,
        supporting_data={"conversion_rate": {"brand-search": [0.021, 0.019, 0.018]}},
        **extra,
    )


def test_client_bid_change_of_6_percent_executes_and_shows_before_and_after(hitl):
    proposal = propose_bid(hitl, "2.12")
    assert proposal.status == Status.APPROVED
    assert proposal.verdict.outcome == "auto_approve"
    assert proposal.magnitude == Decimal("0.06")

    executed = hitl.wait(proposal.id, timeout=60)

    assert executed.status == "executed" and executed.is_final
    assert Decimal(executed.execution.before_state["brand-search"]["bid"]) == Decimal("2.00")
    assert Decimal(executed.execution.after_state["brand-search"]["bid"]) == Decimal("2.12")
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.12")


def test_client_reallocation_of_28_percent_waits_for_an_operator_then_executes(hitl, operator):
    proposal = propose_reallocation(hitl)
    assert proposal.status == Status.PENDING_REVIEW
    assert proposal.verdict.outcome == "review"
    assert "exceeds the 10.0%" in proposal.verdict.reasons[0]
    assert proposal.verdict.policy.name == "Budget reallocations"
    # The version that decided, by the number the console shows it under (its first).
    assert proposal.verdict.policy.number == 1

    with pytest.raises(WaitTimedOut) as timed_out:
        hitl.wait(proposal.id, timeout=1.5)
    assert timed_out.value.proposal.status == "pending_review"

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(hitl.wait, proposal.id, 60)
        proposal_approve(proposal_id=proposal.id, reviewer=operator, note="Agreed.")
        executed = waiting.result(timeout=90)

    assert executed.status == "executed"
    assert executed.decisions[0].outcome == "approve"
    assert executed.decisions[0].note == "Agreed."
    assert Decimal(executed.execution.before_state["brand-search"]["daily_budget"]) == 1000
    assert Decimal(executed.execution.after_state["brand-search"]["daily_budget"]) == 720
    assert Campaign.objects.get(external_id="generic-search").daily_budget == Decimal("780.00")


def test_client_lists_a_proposal_past_its_review_window_as_the_get_reads_it(hitl):
    """``proposals(status=...)`` and ``get`` read one past its window alike: waiting, its
    window closed, until the expiry sweep expires it (no read does), then expired, as its
    feedback says."""
    late, waiting = propose_reallocation(hitl), propose_reallocation(hitl)
    ProposalRow.objects.filter(pk=late.id).update(
        review_expires_at=django_now() - timedelta(seconds=1)
    )

    listed = list(hitl.proposals(status="pending_review"))
    assert [p.id for p in listed] == [waiting.id, late.id]
    assert listed[1].review_expires_at < datetime.now(listed[1].review_expires_at.tzinfo)
    assert hitl.get(late.id).status == "pending_review"
    assert list(hitl.proposals(status="expired")) == []

    assert proposals_expire_overdue() == 1

    assert [p.id for p in hitl.proposals(status="pending_review")] == [waiting.id]
    [expired] = hitl.proposals(status="expired")
    assert (expired.id, expired.is_final) == (late.id, True)
    assert hitl.get(late.id).status == "expired"
    assert [f.kind for f in hitl.feedback() if f.proposal == late.id] == ["expired"]


def test_every_model_of_a_decided_proposal_keeps_the_json_it_was_built_from(hitl, operator):
    """The README's promise: a field the server adds later is still at hand in ``.raw``, on
    the verdict, its policy, each decision and the execution as on the proposal itself."""
    proposed = propose_reallocation(hitl)
    proposal_approve(proposal_id=proposed.id, reviewer=operator, note="Go.")
    executed = hitl.wait(proposed.id, timeout=60)
    assert executed.status == Status.EXECUTED
    body = executed.raw
    assert executed.verdict.raw == body["verdict"]
    assert executed.verdict.policy.raw == body["verdict"]["policy"]
    assert [decision.raw for decision in executed.decisions] == body["decisions"]
    assert executed.decisions[0].raw["note"] == "Go."
    assert executed.execution.raw == body["execution"]
    assert executed.execution.raw["after_state"]["generic-search"]["daily_budget"] == "780.00"
    dry_run = hitl.evaluate("budget_reallocation", "demo", REALLOCATION)
    assert [hold.raw for hold in dry_run.held_by] == dry_run.raw["held_by"] != []


def test_client_creative_with_a_banned_term_is_held_then_rejected_with_the_reason(
    web_server, demo_world, operator
):
    with Client(web_server, demo_world["agents"]["copywriter"]) as hitl:
        proposal = hitl.propose(
            "creative_deployment",
            "demo",
            {
                "campaign": "display-retarget",
                "creatives": [creative(body="Guaranteed results in a week.")],
            },
            rationale="Urgency lifts CTR.",
            confidence=0.7,
        )
        assert proposal.status == "pending_review" and not proposal.is_final
        assert any("banned term “guaranteed”" in reason for reason in proposal.verdict.reasons)

        proposal_reject(
            proposal_id=proposal.id,
            reviewer=operator,
            reason_code="off_brand",
            note="We never promise results.",
        )
        rejected = hitl.wait(proposal.id, timeout=30)

    assert rejected.status == "rejected" and rejected.is_final
    assert rejected.rejection.reason_code == "off_brand"
    assert rejected.rejection.note == "We never promise results."
    assert rejected.execution is None


def test_client_refusals_are_typed_errors_with_the_apis_message(hitl, web_server, operator):
    with pytest.raises(ValidationFailed) as invalid:
        propose_bid(hitl, "-1")
    assert list(invalid.value.errors) == ["payload.new_bid"]
    assert invalid.value.status_code == 400

    with pytest.raises(ValidationFailed) as unknown_field:
        hitl.propose(
            "bid_adjustment",
            "demo",
            {"campaign": "brand-search", "new_bid": "2.10", "colour": "red"},
            rationale="r",
            confidence=0.5,
        )
    assert unknown_field.value.errors == {"payload.colour": ["Unknown field."]}

    with pytest.raises(NotFound) as missing:
        hitl.get(999_999_999)
    # The API's own "Not found." names what was asked: a proposal that is not the agent's, or
    # an address with a path too many, are told apart by reading it.
    assert missing.value.message.endswith(f"(GET {web_server}/api/v1/proposals/999999999/)")

    with Client(web_server, "hitl_not-a-real-key") as stranger, pytest.raises(AuthFailed) as auth:
        stranger.campaigns()
    assert auth.value.status_code == 401 and auth.value.message

    pending = propose_reallocation(hitl)
    proposal_reject(proposal_id=pending.id, reviewer=operator, reason_code="other")
    with pytest.raises(Conflict) as conflict:
        hitl.withdraw(pending.id)
    assert conflict.value.message

    propose_bid(hitl, "2.04", idempotency_key="bid-once")
    with pytest.raises(Unprocessable) as reused:
        propose_bid(hitl, "2.06", idempotency_key="bid-once")
    assert "Idempotency-Key" in reused.value.message


@pytest.mark.parametrize(
    ("path", "answered"),
    [
        ("/admin", "302 with a redirect to /admin/login/"),  # the console's login page
        ("/console", "404 with an HTML page titled “Not found | HITL approvals”"),
    ],
)
def test_a_base_url_that_is_not_the_apis_is_told_by_what_answered_and_where(
    web_server, demo_world, path, answered
):
    """A base URL with a path the platform does not serve its API under: the error's message
    was "HTTP 302", or the 404 page's HTML, 500 characters of it, saying nothing of the URL
    asked."""
    with (
        Client(web_server + path, demo_world["agents"]["optimizer"]) as misplaced,
        pytest.raises(HitlError) as refused,
    ):
        misplaced.campaigns()

    message = refused.value.message
    assert message.startswith(f"GET {web_server}{path}/api/v1/campaigns/ was answered "), message
    assert answered in message and "<" not in message
    assert message.endswith("not by the API: is the base URL the platform's address?")


def test_client_same_idempotency_key_replays_the_first_answer(hitl):
    first = propose_bid(hitl, "2.04", idempotency_key="agent-run-7-step-3")
    again = propose_bid(hitl, "2.04", idempotency_key="agent-run-7-step-3")
    assert again.id == first.id
    assert again.replayed and not first.replayed
    assert ProposalRow.objects.filter(action_type="bid_adjustment").count() == 1


def test_client_proposes_a_batch_with_a_result_for_each_item(hitl):
    results = hitl.propose_many(
        [
            ProposalRequest(
                "bid_adjustment",
                "demo",
                {"campaign": "generic-search", "new_bid": "1.59"},
                rationale="CPC below target.",
                confidence=0.9,
            ),
            {
                "action_type": "bid_adjustment",
                "account": "demo",
                "payload": {"campaign": "no-such-campaign", "new_bid": "1.00"},
                "rationale": "A campaign the agent imagined.",
                "confidence": 0.4,
            },
        ]
    )
    accepted, refused = results
    assert accepted.ok and accepted.proposal.status == "approved"
    assert not refused.ok and refused.status_code in (400, 404)
    assert isinstance(refused.error, HitlError) and "no-such-campaign" in str(refused.error)
    assert ProposalRow.objects.count() == 1


def test_a_batch_item_or_a_payload_that_is_no_object_is_refused_by_the_platform(hitl):
    """An item of a batch that is no object raised a bare TypeError ("'int' object is not
    iterable") and sent nothing, the good items with it; a payload or supporting data that
    is none likewise (a model's supporting_data written as a sentence ended a LangChain run
    with a ValueError). The platform answers each as it answers the API: item by item."""
    good = ProposalRequest(
        "bid_adjustment",
        "demo",
        {"campaign": "generic-search", "new_bid": "1.59"},
        rationale="CPC below target.",
        confidence=0.9,
    )

    accepted, number, pairs = hitl.propose_many([good, 5, [("action_type", "bid_adjustment")]])
    with pytest.raises(ValidationFailed) as refused:
        hitl.propose(
            "bid_adjustment",
            "demo",
            5,
            rationale="r",
            confidence=0.5,
            supporting_data="CTR up 12% this week",
        )

    assert accepted.ok and accepted.proposal.status == "approved"
    assert (number.status_code, pairs.status_code) == (400, 400)
    assert "Expected a dictionary, but got int." in str(number.error)
    assert "Expected a dictionary, but got list." in str(pairs.error)
    assert set(refused.value.errors) == {"payload", "supporting_data"}
    assert ProposalRow.objects.count() == 1


def test_one_proposal_given_to_propose_many_is_refused_before_anything_is_sent(hitl):
    """One proposal (a mapping) was iterated as its keys: each key sent as an item and
    refused "Expected a dictionary, but got str", a dict the caller had given."""
    one = {
        "action_type": "bid_adjustment",
        "account": "demo",
        "payload": {"campaign": "generic-search", "new_bid": "1.59"},
        "rationale": "CPC below target.",
        "confidence": 0.9,
    }

    with pytest.raises(TypeError, match="propose_many takes a list of proposals, not one"):
        hitl.propose_many(one)

    assert not ProposalRow.objects.exists()


def test_a_batch_sent_again_with_its_key_says_its_proposals_are_the_first_answer(hitl):
    """A batch retried with its Idempotency-Key (after a lost answer, or a restart) is answered
    the first answer, its statuses as they were then: ``proposal.replayed`` said False, so an
    agent could not tell that "approved" might since be "executed"."""
    batch = [
        ProposalRequest(
            "bid_adjustment",
            "demo",
            {"campaign": "generic-search", "new_bid": "1.59"},
            rationale="CPC below target.",
            confidence=0.9,
        )
    ]
    (first,) = hitl.propose_many(batch, idempotency_key="nightly-batch-1")
    hitl.wait(first.proposal.id, timeout=60)

    (again,) = hitl.propose_many(batch, idempotency_key="nightly-batch-1")

    assert first.proposal.replayed is False
    assert again.proposal.replayed is True
    assert (again.proposal.id, again.proposal.status) == (first.proposal.id, "approved")
    assert ProposalRow.objects.count() == 1


def test_a_naive_since_is_the_agents_local_time_as_python_means_it(hitl):
    """``datetime.now()`` is local time; the platform reads a time without an offset as UTC.
    At UTC+9 the client asked for what was made from eight hours ahead, and listed nothing."""
    zone = os.environ.get("TZ")
    os.environ["TZ"] = "JST-9"  # POSIX form: no time zone database needed
    time.tzset()
    try:
        made = propose_bid(hitl)
        an_hour_ago = datetime.now() - timedelta(hours=1)  # local time, as an agent writes it

        assert [p.id for p in hitl.proposals(since=an_hour_ago)] == [made.id]
    finally:
        if zone is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = zone
        time.tzset()


def test_client_withdraws_a_waiting_proposal(hitl):
    pending = propose_reallocation(hitl)
    withdrawn = hitl.withdraw(pending.id)
    assert withdrawn.status == "withdrawn"
    assert hitl.wait(pending.id, timeout=5).status == "withdrawn"


def test_client_and_its_tools_tell_a_withdrawal_by_a_reviewer_from_the_agents_own(hitl, operator):
    own = propose_reallocation(hitl)
    assert hitl.withdraw(own.id).withdrawal == Withdrawal(by="agent", note="")
    told = outcome_report(hitl.get(own.id))
    assert told["message"] == "This agent withdrew it. It was not executed."
    assert (told["withdrawn_by"], told["note"]) == ("this agent", "")
    # Withdrawn by another of its runs, with why: the model is told that too.
    noted = propose_reallocation(hitl)
    hitl.withdraw(noted.id, note="Superseded by tonight's plan")
    assert outcome_report(hitl.get(noted.id))["message"] == (
        "This agent withdrew it: Superseded by tonight's plan. It was not executed."
    )
    theirs = propose_reallocation(hitl)
    proposal_withdraw_for_agent(
        proposal_id=theirs.id, reviewer=operator, note="Budget moves wait for the quarter's plan"
    )
    withdrawn = hitl.wait(theirs.id, timeout=5)
    assert withdrawn.withdrawal == Withdrawal(
        by="reviewer", note="Budget moves wait for the quarter's plan"
    )
    told = outcome_report(withdrawn)
    assert told["message"] == (
        "A reviewer withdrew it: Budget moves wait for the quarter's plan. It was not executed."
    )
    assert (told["withdrawn_by"], told["executed"]) == ("a reviewer", False)
    assert [(record.proposal, record.kind) for record in hitl.feedback()] == [
        (theirs.id, "withdrawn")
    ]


def test_client_withdraws_saying_why_and_the_operator_reads_it_on_its_page(hitl, login):
    pending = propose_reallocation(hitl)

    withdrawn = hitl.withdraw(pending.id, note="Superseded by my plan for next week.")

    assert withdrawn.withdrawal == Withdrawal(
        by="agent", note="Superseded by my plan for next week."
    )
    page = login("operator").get(f"/admin/approvals/proposal/{pending.id}/change/").text
    said = page.split('id="withdrawal"')[1].split("</span>")[0]
    # Said as its messages say it.
    assert said.startswith(">· Its agent withdrew it at 20")
    assert "“<bdi>Superseded by my plan for next week.</bdi>”" in said
    # The agent knows why it withdrew it: no feedback record tells it back.
    assert list(hitl.feedback()) == []


def test_client_withdrawing_twice_is_told_the_proposal_is_already_withdrawn(hitl):
    pending = propose_reallocation(hitl)
    hitl.withdraw(pending.id)
    with pytest.raises(Conflict) as again:
        hitl.withdraw(pending.id)
    assert again.value.status_code == 409 and again.value.code == "invalid_transition"
    assert again.value.message == f"Proposal #{pending.id} is already withdrawn."


def test_client_dry_run_says_what_would_happen_and_writes_nothing(hitl):
    small = hitl.evaluate("bid_adjustment", "demo", {"campaign": "brand-search", "new_bid": "2.12"})
    assert small.would_execute and small.outcome == "auto_approve"

    large = hitl.evaluate("budget_reallocation", "demo", REALLOCATION)
    assert large.outcome == "review" and not large.would_execute
    assert large.magnitude == Decimal("0.28")
    assert "exceeds the 10.0%" in large.reasons[0]
    assert (large.policy.name, large.policy.number) == ("Budget reallocations", 1)
    assert not ProposalRow.objects.exists()


def test_client_lists_the_campaigns_it_reasons_from(hitl):
    campaigns = {campaign.external_id: campaign for campaign in hitl.campaigns()}
    assert set(campaigns) == {"brand-search", "generic-search", "display-retarget"}
    assert campaigns["brand-search"].daily_budget == Decimal("1000.00")
    assert campaigns["brand-search"].bid == Decimal("2.00")


def test_client_reads_feedback_once_from_a_kept_resume_link(hitl, operator):
    first = propose_reallocation(hitl)
    proposal_reject(
        proposal_id=first.id, reviewer=operator, reason_code="too_aggressive", note="Halve it."
    )
    feed = hitl.feedback()
    records = list(feed)
    assert [(r.proposal, r.kind, r.reason_code, r.note) for r in records] == [
        (first.id, "rejected", "too_aggressive", "Halve it.")
    ]
    kept = feed.resume

    assert list(hitl.feedback(kept)) == []

    second = propose_reallocation(hitl)
    proposal_approve(proposal_id=second.id, reviewer=operator)
    later = hitl.feedback(kept, follow=True, timeout=30)
    arrived = next(iter(later))
    assert (arrived.proposal, arrived.kind) == (second.id, "approved")


@pytest.mark.parametrize(
    "kept", ["not a link", "/api/v1/proposals/", "https://elsewhere.example/api/v1/campaigns/"]
)
def test_a_resume_link_not_of_the_feedback_feed_is_refused_saying_so(hitl, kept):
    """A value kept by mistake (another field, another endpoint's link) was requested as it
    was: the developer got a 404 whose message was the console's HTML page, or another list
    read as the feed's, a BadResponse "(KeyError)" with status 200."""
    with pytest.raises(ValueError, match="is not a link of the feedback feed") as refused:
        list(hitl.feedback(kept))
    assert repr(kept) in str(refused.value)
    with pytest.raises(ValueError, match="is not a link of the feedback feed"):
        hitl.feedback_page(kept)


def test_client_reports_an_outcome_after_execution(hitl):
    executed = hitl.wait(propose_bid(hitl, "2.12").id, timeout=60)
    outcome = hitl.report_outcome(
        executed.id, {"conversions_7d": 118, "cpa": 41.5}, effect="improved", note="Held up."
    )
    assert outcome.effect == "improved"
    assert outcome.metrics == {"conversions_7d": 118, "cpa": 41.5}
    assert hitl.get(executed.id).outcomes[0].note == "Held up."
    # A figure that cannot be kept as written is refused, not recorded as another one.
    with pytest.raises(ValidationFailed) as refused:
        hitl.report_outcome(executed.id, {"ctr": Decimal("1e-400")})
    [said] = refused.value.errors["metrics.ctr"]
    assert said.startswith("1E-400 cannot be kept as written: it would be stored, and read")
    assert len(hitl.get(executed.id).outcomes) == 1


def test_async_client_proposes_and_waits_for_execution(web_server, demo_world):
    async def agent():
        async with AsyncClient(web_server, demo_world["agents"]["optimizer"]) as hitl:
            proposal = await hitl.propose(
                "bid_adjustment",
                "demo",
                {"campaign": "generic-search", "new_bid": Decimal("1.59")},
                rationale="CPC below target.",
                confidence=0.9,
            )
            return proposal, await hitl.wait(proposal.id, timeout=60)

    proposal, executed = asyncio.run(agent())
    assert proposal.status == "approved"
    assert executed.status == "executed"
    assert Decimal(executed.execution.after_state["generic-search"]["bid"]) == Decimal("1.59")


def test_an_async_client_serves_one_event_loop_after_another(web_server, demo_world):
    """An agent run paused in one ``asyncio.run`` and resumed in the next, with one
    ``AsyncClient`` (as the adapters keep theirs): the second loop found the first one's
    pooled connection, bound to a loop now closed, and every call raised a bare
    ``RuntimeError: Event loop is closed``, which no ``HitlError`` handler catches."""
    hitl = AsyncClient(web_server, demo_world["agents"]["optimizer"])

    async def campaigns() -> set[str]:
        return {campaign.external_id for campaign in await hitl.campaigns()}

    async def then_close() -> set[str]:
        try:
            return await campaigns()
        finally:
            await hitl.aclose()

    first = asyncio.run(campaigns())
    second = asyncio.run(then_close())

    assert first == second == {"brand-search", "generic-search", "display-retarget"}


def test_an_async_client_closes_a_loops_connections_as_that_loop_ends(web_server, demo_world):
    """A loop's connections could not be closed once the loop had ended, and ``aclose()`` in
    the next loop let them go unclosed: the server saw the first ``asyncio.run``'s connection
    open after it had ended (until its keep-alive ran out), and Python warned of an unclosed
    transport."""
    hitl = AsyncClient(web_server, demo_world["agents"]["optimizer"])
    before = connections_to(web_server)

    asyncio.run(hitl.campaigns())
    after_the_first_loop = connections_to(web_server)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        asyncio.run(hitl.aclose())
        gc.collect()

    assert after_the_first_loop == before
    assert not [w for w in warned if issubclass(w.category, ResourceWarning)]


def test_a_proposal_whose_answer_was_lost_names_the_key_that_finds_it(web_server, demo_world):
    """The platform made the reallocation, and the connection broke before its answer came
    back, on the client's retry too. ConnectionFailed said "it may have taken effect" and
    nothing else: the key the client had made for it was gone, and the only way to learn
    whether the move was made was to propose it again with a new key, which made a second
    one. The error names its key (``idempotency_key`` and the message); proposed again with
    it, the platform answers with the one proposal."""
    key = demo_world["agents"]["optimizer"]
    with (
        answer_lost_proxy(web_server) as proxy,
        Client(proxy.url, key, retry=RetryPolicy(max_attempts=2, backoff=0.1)) as hitl,
    ):
        with pytest.raises(ConnectionFailed) as failed:
            propose_reallocation(hitl)
        made = ProposalRow.objects.get()
        lost_key = failed.value.idempotency_key
        assert lost_key and lost_key.startswith("hitl-client-")
        assert f"Its Idempotency-Key was {lost_key!r}: sent again with that key" in str(
            failed.value
        )

        proxy.losing = False
        again = propose_reallocation(hitl, idempotency_key=lost_key)
    assert again.id == made.pk and again.replayed
    assert ProposalRow.objects.count() == 1
