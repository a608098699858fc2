"""A proposal is evaluated as it is accepted: the submission's answer carries the verdict,
one transaction records it as submitted and as routed, racing submissions on one target never
pass its cumulative ceiling together, and a batch costs the same statements as one proposal."""

import json
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from approvals.api import ProposalOutput, proposal_body
from approvals.models import Agent, Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from approvals.services.proposals import Submission, proposal_evaluate, proposals_submit
from executors.runner import proposal_execute
from feedback.models import CallbackEvent
from hitlproject.vocabulary import COUNTED_STATUSES
from ledger.models import Account, Campaign
from policies.models import CountedMove, KillSwitch
from tests.conftest import bid_adjustment, creative, creative_batch, reallocation, wait_until

URL = "/api/v1/proposals/"


def budget_change(new: str, campaign: str = "generic-search") -> dict:
    return bid_adjustment(action_type="budget_change") | {
        "payload": {"campaign": campaign, "new_daily_budget": new}
    }


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


@pytest.mark.django_db
def test_the_answer_says_what_the_policy_decided(optimizer, agent_client):
    small = optimizer.post(URL, bid_adjustment("2.12"), format="json").json()
    large = optimizer.post(URL, reallocation("280.00"), format="json").json()
    promise = agent_client("copywriter").post(
        URL, creative_batch(creative(body="Guaranteed results.")), format="json"
    )

    assert small["status"] == "approved"
    assert small["verdict"]["outcome"] == "auto_approve"
    assert small["verdict"]["policy"]["name"] == "Bid adjustments"
    assert small["evaluated_at"] and small["decided_at"]
    assert large["status"] == "pending_review" and large["verdict"]["outcome"] == "review"
    assert "28.0%" in " ".join(large["verdict"]["reasons"])
    assert large["review_expires_at"] and large["decided_at"] is None
    assert promise.status_code == 201
    assert promise.json()["status"] == "pending_review"
    assert "guaranteed" in json.dumps(promise.json()["verdict"]["reasons"]).lower()
    # What the answer said is what was recorded.
    for answer in (small, large):
        assert optimizer.get(f"{URL}{answer['id']}/").json()["verdict"] == answer["verdict"]


@pytest.mark.django_db
def test_the_history_says_the_agent_submitted_it_and_the_engine_routed_it(optimizer):
    answer = optimizer.post(URL, reallocation("280.00"), format="json").json()

    steps = Proposal.history.filter(id=answer["id"]).order_by("history_id")
    assert [(s.history_type, s.history_actor, s.status) for s in steps] == [
        ("+", "optimizer", "submitted"),
        ("~", "policy-engine", "pending_review"),
    ]
    assert "28.0%" in steps[1].history_change_reason


@pytest.mark.django_db
@pytest.mark.parametrize(
    "scope, named",
    [("global", "everything"), ("account", "account demo"), ("channel", "channel Google Ads")],
)
def test_a_kill_switch_sends_even_a_small_move_to_a_person_in_the_answer(optimizer, scope, named):
    """The answer names the switch as its title does ("Kill switch on channel Google Ads"),
    not by the account alone or the channel's code."""
    switch = KillSwitch.objects.create(
        scope=scope,
        account=Account.objects.get(external_id="demo") if scope == "account" else None,
        channel="google_ads" if scope == "channel" else "",
        reason="Quarter close",
    )

    answer = optimizer.post(URL, bid_adjustment("2.04"), format="json").json()

    assert answer["status"] == "pending_review"
    assert str(switch) == f"Kill switch on {named} (engaged)"
    said = f"The kill switch on {named} is engaged: Quarter close."
    assert answer["verdict"]["reasons"] == [said]
    assert optimizer.get(f"{URL}{answer['id']}/").json()["verdict"]["reasons"] == [said]


@pytest.mark.django_db
def test_the_answer_is_the_same_as_the_schema_s_serializer_gives(optimizer, operator):
    """The answer is built without DRF's serializers (they cost more than the rest of a
    submission); it must stay what the published schema's ``ProposalOutput`` says."""
    waiting = optimizer.post(URL, reallocation("280.00"), format="json").json()
    approved = optimizer.post(URL, bid_adjustment("2.12"), format="json").json()
    proposal_approve(proposal_id=waiting["id"], reviewer=operator, note="Go.")
    proposal_execute(proposal_id=waiting["id"])
    proposal_execute(proposal_id=approved["id"])

    for proposal in Proposal.objects.all():
        assert proposal_body(proposal) == json.loads(json.dumps(ProposalOutput(proposal).data))
    executed = optimizer.get(f"{URL}{waiting['id']}/").json()
    assert executed["status"] == "executed"
    assert executed["execution"]["after_state"] and executed["decisions"][0]["note"] == "Go."


@pytest.mark.django_db
def test_a_batch_costs_the_same_statements_as_one_proposal(demo_world):
    agent = Agent.objects.get(name="optimizer")
    account = Account.objects.get(external_id="demo")
    Campaign.objects.bulk_create(
        Campaign(account=account, external_id=f"c-{i}", name=f"c {i}", daily_budget=100, bid=1)
        for i in range(104)
    )
    campaigns = iter(range(104))

    def statements(pairs: int) -> int:
        """``pairs`` times a 2% bid move (approved) and a 20% one (waits for a person), each
        on a campaign of its own."""
        submissions = [
            Submission(**bid_adjustment(bid, f"c-{next(campaigns)}"))
            for _ in range(pairs)
            for bid in ("1.02", "1.20")
        ]
        with CaptureQueriesContext(connection) as queries:
            results = proposals_submit(agent=agent, submissions=submissions)
        assert all(isinstance(result, Proposal) for result in results)
        writes = ("INSERT", "COPY", "SELECT nextval")  # a big batch's proposals numbered first
        inserts = [query for query in queries if query["sql"].startswith(writes)]
        return len(queries) - len(inserts), len(inserts)

    statements(1)  # the process reads the rules in force once, then keeps them
    one, hundred = statements(1), statements(50)

    # Reads and locks once for the whole batch; on PostgreSQL each insert is one statement
    # too, and the many proposals of a batch are numbered by one more before they are copied
    # in (SQLite splits a bulk insert by its limit on a statement's parameters).
    assert hundred[0] == one[0]
    if connection.vendor == "postgresql":
        assert hundred[1] == one[1] + 1
    assert Proposal.objects.filter(status=ProposalStatus.APPROVED).count() == 52
    assert Proposal.objects.filter(status=ProposalStatus.PENDING_REVIEW).count() == 52


@pytest.mark.django_db
def test_the_moves_counted_are_those_of_proposals_approved_executing_or_executed(
    demo_world, operator
):
    """The engine reads cumulative moves from their own table; it says what the proposals
    say (and whether each has executed), through approval, execution, supersession and
    failure."""
    agent = Agent.objects.get(name="optimizer")

    def counted() -> set:
        return set(CountedMove.objects.values_list("proposal_id", "target", "factor", "executed"))

    def derived() -> set:
        return {
            (proposal.pk, target, factor, proposal.status == ProposalStatus.EXECUTED)
            for proposal in Proposal.objects.filter(status__in=COUNTED_STATUSES)
            for target, factor in proposal.effects.items()
        }

    small, large, setter = proposals_submit(
        agent=agent,
        submissions=[
            Submission(**bid_adjustment("2.04")),
            Submission(**reallocation("280.00")),
            Submission(**budget_change("600.00", "generic-search")),  # +20%: waits
        ],
    )
    assert counted() == derived() == {(small.pk, "brand-search's bid", "51/50", False)}
    proposal_approve(proposal_id=setter.pk, reviewer=operator)
    proposal_approve(proposal_id=large.pk, reviewer=operator)
    assert counted() == derived() and len(counted()) == 4
    Campaign.objects.filter(external_id="brand-search").update(daily_budget="200.00")
    assert proposal_execute(proposal_id=large.pk).status == ProposalStatus.FAILED
    assert proposal_execute(proposal_id=small.pk).status == ProposalStatus.EXECUTED
    assert counted() == derived() and {move[0] for move in counted()} == {small.pk, setter.pk}
    assert (small.pk, "brand-search's bid", "51/50", True) in counted()  # now executed
    # A reallocation lands on generic-search's budget first: the approved setter is superseded.
    (other,) = proposals_submit(agent=agent, submissions=[Submission(**reallocation("2.00"))])
    assert proposal_execute(proposal_id=other.pk).status == ProposalStatus.EXECUTED
    assert Proposal.objects.get(pk=setter.pk).status == ProposalStatus.SUPERSEDED
    assert counted() == derived() and setter.pk not in {move[0] for move in counted()}


@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
@pytest.mark.django_db(transaction=True)
def test_racing_submissions_on_one_target_never_pass_its_ceiling_together(demo_world):
    """Eight reallocations of 40.00 from brand-search to generic-search at once: each moves
    generic-search's budget by about +8%, and its policy auto-approves up to 25% compounded
    within 24 hours: routed one after the other, each counting the others' moves, two or
    three may run (three when executions land between them, each then a smaller share of a
    larger budget), never all eight, and the budget never ends more than 25% up."""
    key = demo_world["agents"]["optimizer"]
    start = threading.Barrier(8)
    answers: list = [None] * 8

    def submit(index: int) -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
            start.wait()
            answers[index] = client.post(URL, reallocation("40.00"), format="json").json()
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    outcomes = [answer["verdict"]["outcome"] for answer in answers]
    assert 2 <= outcomes.count("auto_approve") <= 3
    assert outcomes.count("review") == 8 - outcomes.count("auto_approve")
    wait_until(lambda: not Proposal.objects.filter(status__in=["approved", "executing"]).exists())
    executed = Proposal.objects.filter(status="executed").count()
    assert 1 <= executed <= outcomes.count("auto_approve")
    budget = Campaign.objects.get(external_id="generic-search").daily_budget
    assert budget == Decimal("500.00") + executed * Decimal("40.00") <= Decimal("625.00")


BATCH_URL = "/api/v1/proposals/batch/"


@pytest.mark.django_db
def test_an_auditor_reads_a_proposal_routed_when_it_was_submitted(optimizer):
    answer = optimizer.post(URL, bid_adjustment("2.10"), format="json").json()

    assert answer["created_at"] == answer["evaluated_at"] == answer["decided_at"]
    dates = set(Proposal.history.filter(id=answer["id"]).values_list("history_date", flat=True))
    assert dates == {Proposal.objects.get(pk=answer["id"]).created_at}


@pytest.mark.django_db
@pytest.mark.parametrize("size", [2, 60])  # on PostgreSQL: one INSERT; 60 rows are copied in
def test_a_batch_s_answer_is_what_its_proposals_read_back_say(optimizer, size):
    """The times and the rest of each item's answer are what was written: a later read of
    the proposal gives the same, and its two history records carry the time it was routed."""
    items = [bid_adjustment(f"{2.01 + i / 100:.2f}") for i in range(size)]
    results = optimizer.post(BATCH_URL, items, format="json").json()

    answered = [result["proposal"] for result in results]
    assert len(answered) == size and "submitted" not in {item["status"] for item in answered}
    for proposal in answered:
        assert optimizer.get(f"{URL}{proposal['id']}/").json() == proposal
        assert proposal["created_at"] == proposal["evaluated_at"]
    stored = Proposal.objects.get(pk=answered[-1]["id"])
    dates = Proposal.history.filter(id=stored.pk).values_list("history_date", flat=True)
    assert list(dates) == [stored.created_at] * 2


@pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"],
    reason="SQLite takes one writer at a time: a submission waits for the write lock instead",
)
@pytest.mark.django_db(transaction=True)
def test_a_submission_held_up_by_another_s_locks_is_answered_503_and_records_nothing(
    demo_world, settings
):
    settings.SUBMISSION_LOCK_TIMEOUT = timedelta(milliseconds=300)
    holding, release = threading.Event(), threading.Event()

    def hold_brand_search() -> None:
        try:
            with transaction.atomic():
                Campaign.objects.select_for_update().get(external_id="brand-search")
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_brand_search)
    holder.start()
    try:
        holding.wait(10)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {demo_world['agents']['optimizer']}")
        response = client.post(URL, bid_adjustment("2.10"), format="json")
    finally:
        release.set()
        holder.join()

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "Send it again shortly" in response.json()["detail"]
    assert not Proposal.objects.exists()


# A value set twice: the second would be superseded once the first executes, so it is never
# told "approved".


@pytest.mark.django_db
def test_a_value_an_approved_proposal_sets_first_is_not_approved_again_but_waits(optimizer):
    """The first bid change is approved and has not yet executed (this test runs no worker);
    the same bid changed again, well within the policy's limit, would be superseded once the
    first runs: its agent is told it waits for a person, and why, not "approved"."""
    first = optimizer.post(URL, bid_adjustment("2.12"), format="json").json()
    again = optimizer.post(URL, bid_adjustment("2.14"), format="json").json()
    other_field = optimizer.post(URL, budget_change("1020.00", "brand-search"), format="json")

    assert first["status"] == "approved"
    assert again["status"] == "pending_review" and again["verdict"]["outcome"] == "review"
    assert (
        f"#{first['id']}, approved and about to execute, changes brand-search's bid first: "
        "this one waits for a person, and is superseded once that one executes."
    ) in again["verdict"]["reasons"]
    assert other_field.json()["status"] == "approved", other_field.json()  # no clash
    # It does not count against the ceilings as a move about to happen.
    assert not CountedMove.objects.filter(proposal_id=again["id"]).exists()
    # The dry run says the same.
    dry = optimizer.post(
        "/api/v1/policies/evaluate/",
        {"account": "demo", "action_type": "bid_adjustment",
         "payload": {"campaign": "brand-search", "new_bid": "2.16"}},
        format="json",
    )  # fmt: skip
    assert dry.status_code == 200, dry.content
    assert dry.json()["outcome"] == "review"


@pytest.mark.django_db
def test_a_change_to_the_value_a_field_has_is_refused_and_holds_nothing_back(optimizer):
    """A bid change that sets brand-search's bid to the 2.00 it has is refused (it would
    change nothing), records nothing, and holds no other bid change behind it."""
    same = optimizer.post(URL, bid_adjustment("2.00"), format="json")
    after = optimizer.post(URL, bid_adjustment("2.12"), format="json").json()

    assert same.status_code == 400
    assert same.json()["payload"] == {
        "new_bid": ["brand-search's bid is already 2.00: this changes nothing."]
    }
    assert after["status"] == "approved", after["verdict"]["reasons"]
    # The same in one batch.
    batch = optimizer.post(
        f"{URL}batch/",
        [bid_adjustment("1.50", "generic-search"), bid_adjustment("1.55", "generic-search")],
        format="json",
    ).json()
    assert [item["status"] for item in batch] == [400, 201]
    assert batch[1]["proposal"]["status"] == "approved"


@pytest.mark.django_db
def test_a_batch_that_sets_one_value_twice_approves_only_the_first(optimizer):
    """The reason names the first by its index in the batch as sent (a malformed item before
    it counts), the index its agent reads the first's answer at. It is no guardrail finding:
    the queue flags nothing and ranks it no higher than the first (both move the bid 10%)."""
    answer = optimizer.post(
        f"{URL}batch/",
        [{"action_type": "bid_adjustment"}, bid_adjustment("2.20"), bid_adjustment("1.80")],
        format="json",
    )
    assert answer.status_code == 200, answer.content
    malformed, *items = answer.json()
    first, second = (item["proposal"] for item in items)

    assert malformed["status"] == 400
    assert first["status"] == "approved"
    assert second["status"] == "pending_review"
    assert (
        "Item 2 of this batch (index 1), approved, changes brand-search's bid first: this "
        "one waits for a person, and is superseded once that one executes."
    ) in second["verdict"]["reasons"]
    held = Proposal.objects.get(pk=second["id"])
    assert [hold["rule"] for hold in held.verdict_held_by] == ["changed_first"]
    assert not held.guardrail_findings.get("review")
    assert held.risk == first["risk"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_the_value_set_again_is_superseded_once_the_first_executes_and_its_agent_told(optimizer):
    """Sent in one batch, the second is certain to come while the first is under way."""
    answer = optimizer.post(
        f"{URL}batch/", [bid_adjustment("2.12"), bid_adjustment("2.14")], format="json"
    )
    first, again = (item["proposal"] for item in answer.json())
    assert (first["status"], again["status"]) == ("approved", "pending_review")

    wait_until(lambda: Proposal.objects.get(pk=first["id"]).status == ProposalStatus.EXECUTED)
    wait_until(lambda: Proposal.objects.get(pk=again["id"]).status == ProposalStatus.SUPERSEDED)
    feed = optimizer.get("/api/v1/feedback/").json()["results"]
    told = [event for event in feed if event["proposal"] == again["id"]]
    assert [event["kind"] for event in told] == ["superseded"], told
    assert Campaign.objects.get(external_id="brand-search").bid == Decimal("2.12")


@pytest.mark.django_db
def test_a_proposal_left_submitted_by_an_earlier_release_is_not_approved_over_one_under_way(
    optimizer,
):
    first = optimizer.post(URL, bid_adjustment("2.12"), format="json").json()
    left = proposals_submit(
        agent=Agent.objects.get(name="optimizer"),
        submissions=[Submission(**bid_adjustment("2.14"))],
    )[0]
    Proposal.objects.filter(pk=left.pk).update(status=ProposalStatus.SUBMITTED)

    routed = proposal_evaluate(proposal_id=left.pk)

    assert first["status"] == "approved"
    assert routed.status == ProposalStatus.PENDING_REVIEW
    assert any(
        reason.startswith(f"#{first['id']}, approved and about to execute, changes brand-search")
        for reason in routed.verdict_reasons
    ), routed.verdict_reasons


@pytest.mark.django_db
def test_a_submission_approved_at_once_tells_its_agent_in_one_statement_more(demo_world):
    """An agent with a callback URL is told of its proposal approved at once: on PostgreSQL
    the event and its first record, which the audit chain seals, go in in one statement, as
    the event alone went in before it kept a history; the submission pays no round trip more
    for it. The record says it was made, by the callbacks."""
    agent = Agent.objects.get(name="optimizer")
    agent.callback_url = "https://agent.example/hook"
    agent.save(update_fields=["callback_url"])
    warm = bid_adjustment("1.80", "generic-search")  # waits for a person: no event
    proposals_submit(agent=agent, submissions=[Submission(**warm)])  # the rules read once

    with CaptureQueriesContext(connection) as queries:
        [proposal] = proposals_submit(agent=agent, submissions=[Submission(**bid_adjustment())])

    assert proposal.status == ProposalStatus.APPROVED
    event = CallbackEvent.objects.get(proposal=proposal)
    [made] = CallbackEvent.history.filter(id=event.pk)
    assert (made.history_type, made.history_actor, made.history_change_reason) == (
        "+",
        "callbacks",
        "Made, to be sent to its agent's callback URL",
    )
    about_events = [query for query in queries if "callbackevent" in query["sql"]]
    if connection.vendor == "postgresql":
        assert len(about_events) == 1
