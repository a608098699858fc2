"""A reallocation submitted while moves approved before it and not yet run draw on the same
budget (or set it) is judged against what they leave, as a person's approval is: one that
would fail once they have run is not approved at once, but waits for a person, saying why in
the words its page uses; and a move approved and not yet run that sets the budget a waiting
reallocation draws on counts for its approval."""

import html
import re
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from approvals.models import Agent, Decision, Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_retry
from approvals.services.lifecycle import proposal_transition
from approvals.services.proposals import Submission, proposals_submit
from audit.actors import Actor
from executors.runner import proposal_execute
from hitlproject.errors import Conflict
from ledger.models import Campaign
from policies.models import Policy
from tests.conftest import bid_adjustment, run_at_once_while_held
from tests.factories import evaluated
from tests.test_reallocation_no_longer_fits import queue_marks, retarget_budget, retarget_move

URL = "/api/v1/proposals/"
BATCH_URL = "/api/v1/proposals/batch/"


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def reallocations_run_alone_up_to(share: str = "0.60", agent: str = "optimizer") -> None:
    """The agent's reallocations run without a person up to ``share`` of their source."""
    Policy.objects.create(
        name=f"Reallocations by {agent}",
        action_type="budget_reallocation",
        agent=Agent.objects.get(name=agent),
        auto_execute_max_magnitude=Decimal(share),
    )


def approved_move(operator, amount: str = "200.00") -> Proposal:
    """#1: a move out of display-retarget (300.00) a person approved, not yet run (its
    execution is queued, or its webhook backs off)."""
    first = evaluated(retarget_move(amount))
    assert first.status == ProposalStatus.PENDING_REVIEW
    assert proposal_approve(proposal_id=first.pk, reviewer=operator).status == "approved"
    return first


def left_after(pk: int, left: str = "100.00", *, named: str = "") -> str:
    return (
        f"amount: Exceeds display-retarget's daily budget of {left} once "
        f"{named or f'#{pk}'}, approved before it, has run."
    )


def waits_for_a_person(why: str) -> str:
    return f"Its execution would refuse it: {why} It waits for a person, who can edit it."


@pytest.mark.django_db
def test_a_move_that_would_fail_after_one_under_way_is_not_approved_at_submission(
    optimizer, operator, login
):
    """display-retarget at 300.00; #1 moves 200.00 out of it, approved, not yet run; the
    optimizer's policy runs a 50% move alone. #2, 150.00, was answered "approved", ran after
    #1 and failed ("Exceeds display-retarget's daily budget of 100.00"). Now it waits for a
    person, and its answer says why; one that fits what #1 leaves is still approved."""
    reallocations_run_alone_up_to("0.60")
    first = approved_move(operator)

    answer = optimizer.post(URL, retarget_move("150.00"), format="json")

    assert answer.status_code == 201, answer.content
    second = answer.json()
    assert second["status"] == "pending_review"
    assert second["verdict"]["outcome"] == "review"
    assert waits_for_a_person(left_after(first.pk)) in second["verdict"]["reasons"]
    # What the agent was told is what was recorded, and read back.
    assert optimizer.get(f"{URL}{second['id']}/").json()["verdict"] == second["verdict"]
    # Its page says what it said at submission: approving it as proposed is refused, an edit is
    # offered; the queue marks it alike.
    client = login("operator")
    page = client.get(reverse("admin:approvals_proposal_change", args=[second["id"]])).text
    [note] = re.findall(r'<p class="errornote" id="no-longer-applies">(.*?)</p>', page)
    assert left_after(first.pk) in html.unescape(note)
    assert 'id="approve-form"' not in page and 'id="edit-approve-form"' in page
    said, _ = queue_marks(client)
    assert said[second["id"]].endswith(left_after(first.pk)), said[second["id"]]

    fits = optimizer.post(URL, retarget_move("100.00"), format="json").json()
    assert fits["status"] == "approved", fits["verdict"]["reasons"]
    assert not any("would refuse" in reason for reason in fits["verdict"]["reasons"])

    assert proposal_execute(proposal_id=first.pk).status == ProposalStatus.EXECUTED
    assert retarget_budget() == Decimal("100.00")
    assert Proposal.objects.get(pk=second["id"]).status == ProposalStatus.PENDING_REVIEW


@pytest.mark.django_db
def test_another_agent_s_move_under_way_is_not_named_to_the_agent(operator):
    """An agent reads only its own proposals: another agent's move under way is said to be
    one, not named; the console, which reads them all, names it."""
    reallocations_run_alone_up_to("0.60", agent="copywriter")
    first = approved_move(operator)
    other = Agent.objects.get(name="copywriter")

    [second] = proposals_submit(agent=other, submissions=[Submission(**retarget_move("150.00"))])

    assert second.status == ProposalStatus.PENDING_REVIEW
    assert (
        waits_for_a_person(left_after(first.pk, named="another agent's proposal"))
        in second.verdict_reasons
    )
    with pytest.raises(Conflict) as refused:
        proposal_approve(proposal_id=second.pk, reviewer=operator)
    assert left_after(first.pk) in refused.value.message


@pytest.mark.django_db
def test_in_a_batch_a_move_approved_earlier_counts_for_the_items_after_it(optimizer, operator):
    """Two moves of 150.00 and one of 100.00 out of display-retarget (300.00), each within
    the optimizer's 60%: the first two fit together, the third does not once they have run."""
    reallocations_run_alone_up_to("0.60")

    results = optimizer.post(
        BATCH_URL,
        [retarget_move("150.00"), retarget_move("150.00"), retarget_move("100.00")],
        format="json",
    ).json()

    answered = [result["proposal"] for result in results]
    assert [item["status"] for item in answered] == ["approved", "approved", "pending_review"]
    assert (
        waits_for_a_person(
            "amount: Exceeds display-retarget's daily budget of 0.00 once item 1 of this batch "
            "(index 0) and item 2 of this batch (index 1), approved before it, have run."
        )
        in answered[2]["verdict"]["reasons"]
    )

    # And with one approved before the batch: it counts for every item.
    Proposal.objects.filter(pk__in=[item["id"] for item in answered]).update(
        status=ProposalStatus.WITHDRAWN
    )
    first = approved_move(operator)
    results = optimizer.post(
        BATCH_URL, [retarget_move("60.00"), retarget_move("60.00")], format="json"
    ).json()
    answered = [result["proposal"] for result in results]
    assert [item["status"] for item in answered] == ["approved", "pending_review"]
    assert (
        waits_for_a_person(
            f"amount: Exceeds display-retarget's daily budget of 40.00 once #{first.pk} and item 1 "
            "of this batch (index 0), approved before it, have run."
        )
        in answered[1]["verdict"]["reasons"]
    )


@pytest.mark.django_db
def test_a_move_evaluated_after_submission_is_judged_alike(operator):
    """The evaluation of a proposal recorded as submitted (the stall sweep's) judges it as
    its submission would have."""
    reallocations_run_alone_up_to("0.60")
    first = approved_move(operator)

    second = evaluated(retarget_move("150.00"))

    assert second.status == ProposalStatus.PENDING_REVIEW
    assert waits_for_a_person(left_after(first.pk)) in second.verdict_reasons


def budget_change(new: str) -> dict:
    return bid_adjustment(action_type="budget_change") | {
        "payload": {"campaign": "display-retarget", "new_daily_budget": new}
    }


@pytest.mark.django_db
def test_a_budget_cut_under_way_counts_for_a_waiting_reallocation(login, operators):
    """display-retarget at 300.00; #4 moves 200.00 out of it, waiting; #3 cuts it to 50.00,
    approved and not yet run. #4's page offered Approve, its approval was taken, and it failed
    once #3 ran. Now it is refused, naming #3; once #3 has run, the ledger's own figure says
    it; a cut that will be superseded counts for nothing."""
    operator, colleague = operators
    waiting = evaluated(retarget_move("200.00"))
    cut = evaluated(budget_change("50.00"))
    assert (waiting.status, cut.status) == ("pending_review", "pending_review")
    assert proposal_approve(proposal_id=cut.pk, reviewer=operator).status == "approved"
    refused = (
        f"Proposal #{waiting.pk} can no longer be applied as proposed: "
        f"{left_after(cut.pk, '50.00')} Approving it would not carry it out: its execution "
        "would refuse it. It can be edited, rejected or withdrawn."
    )

    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[waiting.pk]))
    [note] = re.findall(r'<p class="errornote" id="no-longer-applies">(.*?)</p>', page.text)
    assert html.unescape(note) == refused
    with pytest.raises(Conflict) as single:
        proposal_approve(proposal_id=waiting.pk, reviewer=colleague)
    assert single.value.message == refused
    assert not Decision.objects.filter(proposal=waiting).exists()
    # Submitted now, a move of it waits for a person, saying so.
    reallocations_run_alone_up_to("0.60")
    later = evaluated(retarget_move("100.00"))
    assert later.status == ProposalStatus.PENDING_REVIEW
    assert waits_for_a_person(left_after(cut.pk, "50.00")) in later.verdict_reasons

    # A cut made against another figure than the ledger holds is superseded when it runs: it
    # counts for nothing.
    Campaign.objects.filter(external_id="display-retarget").update(daily_budget="310.00")
    assert proposal_approve(proposal_id=waiting.pk, reviewer=colleague).status == "approved"
    assert proposal_execute(proposal_id=cut.pk).status == ProposalStatus.SUPERSEDED
    assert proposal_execute(proposal_id=waiting.pk).status == ProposalStatus.EXECUTED


@pytest.mark.django_db
def test_a_raise_under_way_is_not_counted_as_bringing_more(login, operators):
    """What a move under way brings is not counted (it may not run first): a raise to 500.00
    lets no 400.00 move through before it has run."""
    operator, colleague = operators
    raised = evaluated(budget_change("500.00"))
    proposal_approve(proposal_id=raised.pk, reviewer=operator)
    waiting = evaluated(retarget_move("250.00"))  # fits 300.00 as it is

    assert proposal_approve(proposal_id=waiting.pk, reviewer=colleague).status == "approved"


@pytest.mark.django_db
def test_a_reallocation_s_submission_reads_one_statement_more_whatever_the_batch_size(
    demo_world, operator
):
    """What is under way is read once for the whole batch, and only where a move the ledger
    may refuse is in it (a bid change reads nothing more)."""
    agent = Agent.objects.get(name="optimizer")
    approved_move(operator, "100.00")

    def statements(items: list[dict]) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            results = proposals_submit(agent=agent, submissions=[Submission(**i) for i in items])
        assert all(isinstance(result, Proposal) for result in results), results
        writes = ("INSERT", "COPY", "SELECT nextval", "WITH made AS (INSERT")
        return [query["sql"] for query in queries if not query["sql"].startswith(writes)]

    def under_way_read(sql: list[str]) -> list[str]:
        return [s for s in sql if s.startswith("SELECT") and "approvals_proposal" in s]

    statements([bid_adjustment("2.12")])  # the rules in force, read once and kept
    bids = statements([bid_adjustment("2.13")])
    one = statements([retarget_move("1.00")])
    many = statements([retarget_move("1.00") for _ in range(20)])
    mixed = statements([retarget_move("1.00"), bid_adjustment("2.14")])
    assert len(one) == len(many) and len(mixed) == len(bids) + 1, (bids, one, mixed)
    # A bid's submission reads the values under way that a proposal changes first; a
    # reallocation's, what those under way take from its source instead: one statement each.
    assert len(under_way_read(bids)) == len(under_way_read(one)) == 1
    assert len(under_way_read(mixed)) == 2


POSTGRESQL_ONLY = pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"],
    reason="SQLite takes one writer at a time: two transactions cannot overlap there",
)


@POSTGRESQL_ONLY
@pytest.mark.django_db(transaction=True)
def test_two_moves_submitted_at_once_are_not_both_approved(demo_world, monkeypatch):
    """Two submissions of 200.00 out of display-retarget (300.00), each within the policy
    alone, at once: each read the moves under way before the other committed, and both were
    approved; one failed once both ran. A third session holds display-retarget while both
    wait for it: the second counts the first."""
    monkeypatch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
    reallocations_run_alone_up_to("0.70")
    agent = Agent.objects.get(name="optimizer")
    outcomes: list = [None, None]

    def submit(index: int) -> None:
        [outcomes[index]] = proposals_submit(
            agent=Agent.objects.get(pk=agent.pk),
            submissions=[Submission(**retarget_move("200.00"))],
        )

    run_at_once_while_held(
        f"SELECT id FROM {Campaign._meta.db_table} WHERE external_id = 'display-retarget' "
        "FOR UPDATE",
        lambda: submit(0),
        lambda: submit(1),
    )

    statuses = sorted(str(outcome.status) for outcome in outcomes)
    assert statuses == ["approved", "pending_review"], outcomes
    won = next(outcome for outcome in outcomes if outcome.status == "approved")
    lost = next(outcome for outcome in outcomes if outcome.status == "pending_review")
    assert waits_for_a_person(left_after(won.pk)) in lost.verdict_reasons


@POSTGRESQL_ONLY
@pytest.mark.django_db(transaction=True)
def test_a_budget_cut_retried_while_a_move_is_submitted_counts_for_it(
    demo_world, operator, monkeypatch
):
    """#1 cut display-retarget (300.00) to 50.00 and failed; a person retries it as a move of
    200.00 out of it, within the policy alone, is submitted. The retry held nothing the
    submission holds: the submission read the moves under way before the retry committed, and
    its move was approved, to fail once the cut had run. The retry holds display-retarget as
    an approval does: the submission waits for it, and counts it."""
    monkeypatch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
    cut = evaluated(budget_change("50.00"))
    assert proposal_approve(proposal_id=cut.pk, reviewer=operator).status == "approved"
    for status in (ProposalStatus.EXECUTING, ProposalStatus.FAILED):
        proposal_transition(proposal_id=cut.pk, to_status=status, actor=Actor.system("executor"))
    reallocations_run_alone_up_to("0.70")
    agent = Agent.objects.get(name="optimizer")
    submitted: list = []

    def retry() -> None:
        proposal_retry(proposal_id=cut.pk, reviewer=get_user_model().objects.get(pk=operator.pk))

    def submit() -> None:
        submitted.extend(
            proposals_submit(
                agent=Agent.objects.get(pk=agent.pk),
                submissions=[Submission(**retarget_move("200.00"))],
            )
        )

    run_at_once_while_held(
        f"SELECT id FROM {Campaign._meta.db_table} WHERE external_id = 'display-retarget' "
        "FOR UPDATE",
        retry,
        submit,
    )

    assert Proposal.objects.get(pk=cut.pk).status == ProposalStatus.APPROVED
    [move] = submitted
    assert move.status == ProposalStatus.PENDING_REVIEW
    assert waits_for_a_person(left_after(cut.pk, "50.00")) in move.verdict_reasons


@pytest.mark.django_db
def test_the_dry_run_says_a_move_that_would_fail_after_one_under_way_waits_for_a_person(
    optimizer, operator
):
    """The dry run is "what would happen to this proposal now": with #1 taking 200.00 of
    display-retarget's 300.00 and not yet run, a 150.00 move is sent to a person when
    submitted. The dry run answered "auto_approve" (it read no move under way), so an agent
    that checked first was told it would run alone, and then it waited."""
    reallocations_run_alone_up_to("0.60")
    first = approved_move(operator)
    move = {key: retarget_move("150.00")[key] for key in ("action_type", "account", "payload")}

    dry_run = optimizer.post("/api/v1/policies/evaluate/", move, format="json")

    assert dry_run.status_code == 200, dry_run.content
    verdict = dry_run.json()
    assert verdict["outcome"] == "review"
    assert waits_for_a_person(left_after(first.pk)) in verdict["reasons"]
    submitted = optimizer.post(URL, retarget_move("150.00"), format="json").json()
    assert submitted["verdict"]["outcome"] == verdict["outcome"]
    assert submitted["verdict"]["reasons"] == verdict["reasons"]
    # One that fits what #1 leaves runs alone, dry run and submission alike.
    fits = {**move, "payload": {**move["payload"], "amount": "100.00"}}
    assert (
        optimizer.post("/api/v1/policies/evaluate/", fits, format="json").json()["outcome"]
        == "auto_approve"
    )


@pytest.mark.django_db
def test_the_dry_run_of_a_move_reads_its_campaigns_once(optimizer, operator):
    """Judging a move against the moves under way, the dry run uses the campaigns its
    assessment read: it read them a second time to learn what it already had."""
    reallocations_run_alone_up_to("0.60")
    approved_move(operator)
    move = {key: retarget_move("150.00")[key] for key in ("action_type", "account", "payload")}
    table = Campaign._meta.db_table

    with CaptureQueriesContext(connection) as read:
        dry_run = optimizer.post("/api/v1/policies/evaluate/", move, format="json")

    assert dry_run.json()["outcome"] == "review"
    campaign_reads = [
        query["sql"]
        for query in read.captured_queries
        if re.search(rf'FROM "?{table}"?\s', query["sql"])
    ]
    assert len(campaign_reads) == 1, campaign_reads


@pytest.mark.django_db
def test_a_held_move_re_assessed_since_still_says_on_its_page_why_it_came_to_a_person(
    optimizer, operator, login
):
    """#2 waited for a person because #1, approved before it, would leave too little of
    display-retarget; a move into display-retarget then ran, and #2 was re-assessed: its
    reasons are now the re-assessment's (a share within the 60.0% auto-execute ceiling). Its
    agent still reads why it was routed (``verdict.routed_reasons``); its page said only the
    re-assessment's reasons, as if nothing had held it: now it says why it came to a person
    too, as it does after an edit."""
    reallocations_run_alone_up_to("0.60")
    first = approved_move(operator)
    second = optimizer.post(URL, retarget_move("150.00"), format="json").json()
    assert second["status"] == "pending_review"
    into = evaluated(
        retarget_move("200.00")
        | {
            "payload": {
                "from_campaign": "generic-search",
                "to_campaign": "display-retarget",
                "amount": "200.00",
            }
        }
    )
    assert into.status == ProposalStatus.APPROVED
    assert proposal_execute(proposal_id=into.pk).status == ProposalStatus.EXECUTED
    assert retarget_budget() == Decimal("500.00")

    verdict = optimizer.get(f"{URL}{second['id']}/").json()["verdict"]
    assert not any("would refuse" in reason for reason in verdict["reasons"]), verdict["reasons"]
    assert verdict["routed_reasons"] == [waits_for_a_person(left_after(first.pk))]
    page = html.unescape(
        login("operator").get(reverse("admin:approvals_proposal_change", args=[second["id"]])).text
    )
    assert "Why it came to a person, as optimizer proposed it:" in page
    assert waits_for_a_person(left_after(first.pk)) in page
