"""An account's cap on the total daily budget of its active campaigns holds whatever the order
of events: budget moves on different campaigns of one account, approved in one batch or
carried out at the same moment, are judged each counting the others, and never run past it."""

import html
import threading
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from approvals.models import Agent, Decision, Execution, Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_retry
from approvals.services.proposals import (
    Submission,
    guardrail_blocks_counting_approved,
    proposals_submit,
)
from executors.runner import proposal_execute
from hitlproject.errors import DomainError
from ledger.models import Account, Campaign, CampaignStatus
from tests.conftest import (
    bid_adjustment,
    decided_from_page,
    reallocation,
    run_at_once_while_held,
    wait_until,
)
from tests.factories import evaluated

BATCH_URL = "/api/v1/proposals/batch/"
# The demo account's active campaigns spend 1,000 + 500 + 300 = 1,800.00 USD a day.
CAP = Decimal("1850.00")
OVER_CAP = (
    "Account demo's active campaigns would spend 1,860.00 USD a day, above its cap of 1,850.00 USD."
)


def budget_change(campaign: str, new: str) -> dict:
    return bid_adjustment(action_type="budget_change") | {
        "payload": {"campaign": campaign, "new_daily_budget": new}
    }


def cap_account(cap: Decimal = CAP) -> None:
    Account.objects.filter(external_id="demo").update(max_total_daily_budget=cap)


def active_total() -> Decimal:
    return sum(
        Campaign.objects.filter(account__external_id="demo", status=CampaignStatus.ACTIVE)
        .values_list("daily_budget", flat=True)
        .iterator(),
        Decimal(0),
    )


def verdicts(response) -> list[tuple[str, list[str]]]:
    assert response.status_code == 200, response.content
    return [
        (item["proposal"]["status"], item["proposal"]["verdict"]["reasons"])
        for item in response.json()
    ]


@pytest.mark.django_db
def test_a_batch_s_budget_raises_on_one_capped_account_count_each_other(optimizer):
    cap_account()
    # Each alone: 1,830.00, within the cap; the second after the first: 1,860.00.
    response = optimizer.post(
        BATCH_URL,
        [budget_change("display-retarget", "330.00"), budget_change("generic-search", "530.00")],
        format="json",
    )

    (first, _), (second, second_reasons) = verdicts(response)
    assert first == ProposalStatus.APPROVED
    assert second == ProposalStatus.BLOCKED
    assert second_reasons == [
        OVER_CAP[:-1] + ", counting the 1 action approved before it in its batch."
    ]


@pytest.mark.django_db
def test_a_batch_s_budget_cut_makes_room_under_the_cap_for_a_raise_after_it(optimizer):
    cap_account(Decimal("1810.00"))
    raise_display = budget_change("display-retarget", "330.00")  # alone: 1,830.00, over

    alone = verdicts(optimizer.post(BATCH_URL, [raise_display], format="json"))
    after_a_cut = verdicts(
        optimizer.post(
            BATCH_URL,
            [budget_change("generic-search", "470.00"), raise_display],  # 1,770 then 1,800
            format="json",
        )
    )

    assert alone[0][0] == ProposalStatus.BLOCKED
    assert [status for status, _ in after_a_cut] == [ProposalStatus.APPROVED] * 2


@pytest.mark.django_db
def test_a_batch_item_sent_to_a_person_does_not_count_against_the_cap(optimizer):
    cap_account()
    response = optimizer.post(
        BATCH_URL,
        [
            budget_change("display-retarget", "340.00"),  # +13.3%: a person decides it
            budget_change("generic-search", "530.00"),  # 1,830.00 without the first
        ],
        format="json",
    )

    assert [status for status, _ in verdicts(response)] == [
        ProposalStatus.PENDING_REVIEW,
        ProposalStatus.APPROVED,
    ]


@pytest.mark.django_db
def test_a_batch_on_a_capped_account_reads_its_campaigns_once_whatever_its_size(demo_world):
    agent = Agent.objects.get(name="optimizer")
    account = Account.objects.get(external_id="demo")
    account.max_total_daily_budget = Decimal("1000000.00")
    account.save()
    Campaign.objects.bulk_create(
        Campaign(account=account, external_id=f"c-{i}", name=f"c {i}", daily_budget=100, bid=1)
        for i in range(104)
    )
    campaigns = iter(range(104))

    def statements(pairs: int) -> int:
        """``pairs`` times a 2% budget raise (approved) and a 20% one (waits for a person),
        each on a campaign of its own."""
        submissions = [
            Submission(**budget_change(f"c-{next(campaigns)}", budget))
            for _ in range(pairs)
            for budget in ("102.00", "120.00")
        ]
        with CaptureQueriesContext(connection) as queries:
            results = proposals_submit(agent=agent, submissions=submissions)
        assert [result.status for result in results] == [
            ProposalStatus.APPROVED,
            ProposalStatus.PENDING_REVIEW,
        ] * pairs
        # The reads and locks: not the writes, however they go (a big batch's rows are
        # numbered, then copied in).
        writes = ("INSERT", "COPY", "SELECT nextval")
        return sum(not query["sql"].startswith(writes) for query in queries)

    statements(1)  # the first reads the rules in force, kept per process from then on
    assert statements(50) == statements(1)


POSTGRESQL_ONLY = pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"],
    reason="SQLite takes one writer at a time: two transactions cannot overlap there",
)


@POSTGRESQL_ONLY
@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
@pytest.mark.django_db(transaction=True)
def test_two_raises_on_one_capped_account_executed_at_once_never_pass_its_cap(
    demo_world, monkeypatch
):
    cap_account()
    with monkeypatch.context() as patch:  # no execution task: only the two racers run them
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        raises = [
            evaluated(budget_change("display-retarget", "330.00")),
            evaluated(budget_change("generic-search", "530.00")),
        ]
    assert [proposal.status for proposal in raises] == [ProposalStatus.APPROVED] * 2

    # A third session holds every attempt at its record (an insert into the attempts table),
    # which comes after the account's total is read and the budget written: both executions
    # get as far as they can at once before either commits.
    outcomes: list = [None, None]

    def execute(index: int) -> None:
        outcomes[index] = proposal_execute(proposal_id=raises[index].pk).status

    run_at_once_while_held(
        f"LOCK TABLE {Execution._meta.db_table} IN SHARE MODE",
        lambda: execute(0),
        lambda: execute(1),
    )

    assert sorted(outcomes) == [ProposalStatus.EXECUTED, ProposalStatus.FAILED]
    assert active_total() == Decimal("1830.00") <= CAP
    failed = Proposal.objects.get(status=ProposalStatus.FAILED)
    # The agent reads why on the proposal; the operator, on its page and in its history.
    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Bearer {demo_world['agents']['optimizer']}")
    seen = agent.get(f"/api/v1/proposals/{failed.pk}/").json()
    assert seen["execution"]["error"] == f"A guardrail refuses it now: {OVER_CAP}"
    move = failed.history.get(status=ProposalStatus.FAILED, history_actor="executor")
    assert move.history_change_reason == (
        f"execution failed: A guardrail refuses it now: {OVER_CAP}"
    )


@POSTGRESQL_ONLY
@pytest.mark.worker
@pytest.mark.usefixtures("celery_worker")
@pytest.mark.django_db(transaction=True)
def test_executions_and_submissions_racing_on_one_capped_account_all_finish_within_its_cap(
    demo_world, monkeypatch
):
    """Executions (proposal, account, campaigns) and submissions (account, campaigns) on one
    capped account at once: all finish, none deadlocks, and the total stays within the cap."""
    cap_account()
    raises = {"brand-search": "1040.00", "generic-search": "530.00", "display-retarget": "320.00"}
    with monkeypatch.context() as patch:
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        approved = [evaluated(budget_change(campaign, new)).pk for campaign, new in raises.items()]
    key = demo_world["agents"]["optimizer"]
    start = threading.Barrier(6)
    results: list = [None] * 6

    def execute(index: int) -> str:
        start.wait()
        return proposal_execute(proposal_id=approved[index]).status

    def submit(index: int) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        start.wait()
        body = [budget_change("display-retarget", "315.00"), reallocation("10.00")]
        return client.post(BATCH_URL, body, format="json").status_code

    def run(index: int) -> None:
        try:
            results[index] = (execute if index < 3 else submit)(index % 3)
        except Exception as error:
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(result in ("executed", "failed", "superseded") for result in results[:3]), results
    assert results[3:] == [200] * 3
    wait_until(lambda: not Proposal.objects.filter(status__in=["approved", "executing"]).exists())
    assert active_total() <= CAP


def _two_raises_each_within_the_cap_alone() -> tuple[Proposal, Proposal]:
    # 1,840.00 and 1,860.00 of 1,870.00 alone; 1,900.00 together.
    cap_account(Decimal("1870.00"))
    first = evaluated(budget_change("display-retarget", "340.00"))
    second = evaluated(budget_change("generic-search", "560.00"))
    assert (first.status, second.status) == ("pending_review", "pending_review")
    return first, second


def _over_cap_counting(first: Proposal) -> str:
    return (
        "Account demo's active campaigns would spend 1,900.00 USD a day, above its cap of "
        f"1,870.00 USD, counting #{first.pk}, approved and not yet executed."
    )


def test_approving_a_raise_counts_one_approved_on_the_capped_account_not_yet_executed(
    operators,
):
    operator, second_operator = operators
    first, second = _two_raises_each_within_the_cap_alone()
    assert proposal_approve(proposal_id=first.pk, reviewer=operator).status == "approved"

    with pytest.raises(DomainError) as refused:
        proposal_approve(proposal_id=second.pk, reviewer=second_operator)

    assert refused.value.message == (
        f"A guardrail refuses proposal #{second.pk} now: {_over_cap_counting(first)}"
    )
    second.refresh_from_db()
    assert (second.status, second.approvals_this_round) == ("pending_review", 0)
    assert not Decision.objects.filter(proposal=second).exists()
    # The first still runs, within the cap.
    assert proposal_execute(proposal_id=first.pk).status == "executed"
    assert active_total() == Decimal("1840.00")


def test_the_console_refuses_the_second_raise_naming_the_approval_that_used_the_headroom(
    operators, login
):
    operator, _ = operators
    first, second = _two_raises_each_within_the_cap_alone()
    proposal_approve(proposal_id=first.pk, reviewer=operator)
    client = login("operator")

    page = client.get(reverse("admin:approvals_proposal_change", args=[second.pk]))
    note = html.unescape(page.text[page.text.index('id="refused-as-proposed"') :].split("</p>")[0])
    refused = decided_from_page(client, "approve", second.pk, {"note": ""}, follow=True)

    assert f"A guardrail refuses it now, as proposed: {_over_cap_counting(first)}" in note
    said = [str(message) for message in refused.context["messages"]]
    assert said == [f"A guardrail refuses proposal #{second.pk} now: {_over_cap_counting(first)}"]
    second.refresh_from_db()
    assert second.status == "pending_review"
    assert not Decision.objects.filter(proposal=second).exists()
    assert Campaign.objects.get(external_id="generic-search").daily_budget == Decimal("500.00")


def test_once_the_approved_raise_has_executed_the_refusal_counts_the_ledger_alone(operators):
    operator, second_operator = operators
    first, second = _two_raises_each_within_the_cap_alone()
    proposal_approve(proposal_id=first.pk, reviewer=operator)
    proposal_execute(proposal_id=first.pk)

    with pytest.raises(DomainError) as refused:
        proposal_approve(proposal_id=second.pk, reviewer=second_operator)

    assert refused.value.message.endswith("above its cap of 1,870.00 USD.")


def test_an_edit_approved_over_the_headroom_an_approved_raise_uses_is_refused(operators):
    operator, second_operator = operators
    first, second = _two_raises_each_within_the_cap_alone()
    proposal_approve(proposal_id=first.pk, reviewer=operator)

    # Edited down to 545.00: 1,845.00 alone, 1,885.00 after the first raise.
    with pytest.raises(DomainError) as refused:
        proposal_approve(
            proposal_id=second.pk,
            reviewer=second_operator,
            edited_payload={"campaign": "generic-search", "new_daily_budget": "545.00"},
        )

    assert refused.value.message == (
        f"A guardrail refuses proposal #{second.pk} now: Account demo's active campaigns would "
        f"spend 1,885.00 USD a day, above its cap of 1,870.00 USD, counting #{first.pk}, "
        "approved and not yet executed."
    )
    second.refresh_from_db()
    assert second.payload["new_daily_budget"] == "560.00"
    assert second.status == "pending_review"
    assert not Decision.objects.filter(proposal=second).exists()


# A cap stops what takes spending above it, not what brings it down: once a policy owner
# lowers a cap below what is spent, a pause or a cut that spends less is not refused.
# Before, pausing display-retarget on an account spending 1,820.00 a day over a cap of
# 1,000.00 was refused at approval: "A guardrail refuses proposal #8 now: Account demo's
# active campaigns would spend 1,460.00 USD a day, above its cap of 1,000.00 USD."


def status_change(campaign: str, status: str) -> dict:
    return bid_adjustment(action_type="status_change") | {
        "payload": {"campaign": campaign, "status": status}
    }


def test_a_pause_that_lowers_spend_over_a_lowered_account_cap_is_not_refused(operators):
    cap_account(Decimal("1000.00"))  # below the 1,800.00 spent
    pause = evaluated(status_change("display-retarget", "paused"))
    assert pause.status == "pending_review"
    assert pause.guardrail_findings["block"] == []

    approved = proposal_approve(proposal_id=pause.pk, reviewer=operators[0])

    assert approved.status == "approved"
    assert proposal_execute(proposal_id=pause.pk).status == "executed"
    assert active_total() == Decimal("1500.00")


def test_over_a_lowered_cap_a_budget_cut_runs_and_a_raise_is_still_refused(demo_world):
    cap_account(Decimal("1000.00"))
    Campaign.objects.filter(external_id="display-retarget").update(
        max_daily_budget=Decimal("200.00")  # below its 300.00
    )

    cut = evaluated(budget_change("display-retarget", "280.00"))
    raised = evaluated(budget_change("display-retarget", "310.00"))

    assert (cut.status, cut.guardrail_findings["block"]) == ("approved", [])
    assert raised.status == "blocked"
    assert raised.verdict_reasons == [
        "display-retarget's daily budget would be 310.00 USD, above its cap of 200.00 USD.",
        "Account demo's active campaigns would spend 1,810.00 USD a day, above its cap of "
        "1,000.00 USD.",
    ]


def _a_failed_raise_and_a_waiting_one(operators) -> tuple[Proposal, Proposal]:
    """The second raise approved and failed (its campaign's own cap, lifted after), the first
    waiting: each within the account's cap alone, not together."""
    operator, _ = operators
    first, second = _two_raises_each_within_the_cap_alone()
    proposal_approve(proposal_id=second.pk, reviewer=operator)
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="550.00")
    assert proposal_execute(proposal_id=second.pk).status == "failed"
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget=None)
    return first, Proposal.objects.get(pk=second.pk)


def test_a_retry_the_account_cap_refuses_counting_an_approval_is_refused_not_sent(operators):
    """Retried while an approved raise not yet executed uses the cap's headroom, it was sent
    and failed again at once; refused now as its approval would be, in the same words, and
    that a retry would fail again."""
    operator, second_operator = operators
    first, failed = _a_failed_raise_and_a_waiting_one(operators)
    proposal_approve(proposal_id=first.pk, reviewer=second_operator)

    with pytest.raises(DomainError) as refused:
        proposal_retry(proposal_id=failed.pk, reviewer=operator)

    assert refused.value.message == (
        f"A guardrail refuses proposal #{failed.pk} now: "
        f"{_over_cap_counting(first)} "
        "A retry would fail again: its execution would refuse it."
    )
    failed.refresh_from_db()
    assert failed.status == "failed"
    assert failed.executions.count() == 1
    assert proposal_execute(proposal_id=first.pk).status == "executed"
    assert active_total() == Decimal("1840.00")


@POSTGRESQL_ONLY
@pytest.mark.django_db(transaction=True)
def test_a_retry_and_an_approval_at_once_on_a_capped_account_are_judged_one_after_the_other(
    operators, monkeypatch
):
    """A retry holds the capped account as an approval does: sent while an approval of
    another raise on it waits for the account (an execution holds it), each judged alone would
    pass and both run, the second to fail. It waits behind the approval and is refused
    counting it."""
    operator, second_operator = operators
    monkeypatch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
    first, failed = _a_failed_raise_and_a_waiting_one(operators)
    outcomes: dict[str, str] = {}

    def act(name: str, do) -> None:
        try:
            outcomes[name] = do().status
        except DomainError as error:
            outcomes[name] = error.message

    run_at_once_while_held(  # as an execution on the account holds it
        f"SELECT 1 FROM {Account._meta.db_table} WHERE external_id = 'demo' FOR UPDATE",
        lambda: act("approve", lambda: proposal_approve(proposal_id=first.pk, reviewer=operator)),
        lambda: act(
            "retry", lambda: proposal_retry(proposal_id=failed.pk, reviewer=second_operator)
        ),
    )

    assert outcomes == {
        "approve": "approved",
        "retry": (
            f"A guardrail refuses proposal #{failed.pk} now: {_over_cap_counting(first)} "
            "A retry would fail again: its execution would refuse it."
        ),
    }
    assert Proposal.objects.get(pk=failed.pk).status == "failed"


def test_a_move_whose_campaign_is_gone_leaves_the_capped_account_s_other_proposals_decidable(
    operators, login
):
    """On a capped account, a reallocation out of display-retarget waits and another is
    approved, not yet run; then display-retarget leaves the ledger (renamed on the channel).
    Reading what the guardrails refuse raised a KeyError for them: the page of a budget raise
    on the account, its approval and its Slack message failed with it. Now a move whose
    campaign is gone counts for nothing (it fails when it runs) and is refused by nothing
    here (its page says the campaign is gone); the raise is judged as the others leave it."""
    operator, colleague = operators
    cap_account(Decimal("1870.00"))
    waiting = evaluated(
        reallocation(
            "200.00",
            payload={
                "from_campaign": "display-retarget",
                "to_campaign": "generic-search",
                "amount": "200.00",
            },
        )
    )
    approved = evaluated(
        reallocation(
            "100.00",
            payload={
                "from_campaign": "display-retarget",
                "to_campaign": "brand-search",
                "amount": "100.00",
            },
        )
    )
    if approved.status == "pending_review":
        proposal_approve(proposal_id=approved.pk, reviewer=operator)
    raise_ = evaluated(budget_change("generic-search", "560.00"))  # 1,860.00 of 1,870.00
    assert (waiting.status, raise_.status) == ("pending_review", "pending_review")
    Campaign.objects.filter(external_id="display-retarget").update(
        external_id="display-retarget-old"
    )
    client = login("operator")

    for proposal in (waiting, raise_):
        page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
        assert page.status_code == 200
    assert guardrail_blocks_counting_approved(
        [Proposal.objects.select_related("account").get(pk=pk) for pk in (waiting.pk, raise_.pk)],
        lock=False,
    ) == {waiting.pk: (), raise_.pk: ()}
    assert proposal_approve(proposal_id=raise_.pk, reviewer=colleague).status == "approved"
