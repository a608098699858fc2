"""A webhook's request for a reallocation sets figures (each budget after the move), worked
out from the ledger when its round began. Another move on the same campaigns, approved before
it, can land while it waits for its next attempt, or while its first is not yet sent: the
channel was then told budgets the ledger never held (h280: told brand 1400.00 / generic
100.00 while the ledger ended at 1050.00 / 600.00, and nothing said so). Now a request is
worked out again from the ledger as that move left it, with a new key, where no attempt of it
can have been carried out; where one may have, it is not sent, and the failure says what it
would have set, for a person to check; and no two requests to the same campaigns are under
way at once."""

import html
import json
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_retry
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from ledger.models import Campaign
from tests.conftest import reallocation, wait_until
from tests.factories import evaluated

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def approved(amount: str, monkeypatch) -> Proposal:
    """A reallocation of ``amount`` from brand-search (1000.00) to generic-search (500.00),
    approved, its execution left for the test to run."""
    with monkeypatch.context() as patch:
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        proposal = evaluated(reallocation(amount))
        if proposal.status == ProposalStatus.PENDING_REVIEW:
            operator = get_user_model().objects.get(username="operator")
            proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    return Proposal.objects.get(pk=proposal.pk)


def run(proposal: Proposal, monkeypatch) -> Proposal:
    """One attempt at it, here, its follow-up tasks left unsent."""
    with monkeypatch.context() as patch:
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        return proposal_execute(proposal_id=proposal.pk)


def brought_forward(proposal: Proposal, monkeypatch) -> Proposal:
    """Its next attempt, due in ten minutes, made now."""
    ExecutionRound.objects.filter(proposal=proposal).update(lease_until=timezone.now())
    return run(proposal, monkeypatch)


def budgets() -> dict[str, str]:
    return {
        name: str(Campaign.objects.get(external_id=name).daily_budget)
        for name in ("brand-search", "generic-search")
    }


def told(request: dict) -> tuple[str, dict]:
    """A request the endpoint received: its key, and the budgets it sets."""
    changes = json.loads(request["body"])["changes"]
    return request["headers"]["Idempotency-Key"], {
        name: fields["daily_budget"] for name, fields in changes.items()
    }


def test_a_request_refused_for_now_is_worked_out_again_after_a_move_ahead_lands(
    channel, monkeypatch
):
    # 429 (not carried out, come back in ten minutes), then 200s.
    endpoint = channel(429, 200, retry_after="600")
    first = approved("280.00", monkeypatch)
    assert run(first, monkeypatch).status == ProposalStatus.EXECUTING  # refused for now
    second = approved("100.00", monkeypatch)
    assert run(second, monkeypatch).status == ProposalStatus.EXECUTED
    assert budgets() == {"brand-search": "900.00", "generic-search": "600.00"}

    assert brought_forward(first, monkeypatch).status == ProposalStatus.EXECUTED

    # What the channel was last told is what the ledger holds.
    assert budgets() == {"brand-search": "620.00", "generic-search": "880.00"}
    assert [told(request) for request in endpoint.received] == [
        (f"hitl-proposal-{first.pk}-1", {"brand-search": "720.00", "generic-search": "780.00"}),
        (f"hitl-proposal-{second.pk}-1", {"brand-search": "900.00", "generic-search": "600.00"}),
        # Its second round, numbered so: it was -3, numbered by the records of its history
        # while executing (its re-assessment wrote one), and an operator looked for round 2.
        (f"hitl-proposal-{first.pk}-2", {"brand-search": "620.00", "generic-search": "880.00"}),
    ]
    # Its history says why a second request went, with another key.
    reasons = list(
        Proposal.history.filter(id=first.pk)
        .order_by("history_date")
        .values_list("history_change_reason", flat=True)
    )
    assert (
        f"Its request worked out again before attempt 2, as a new request (key "
        f"hitl-proposal-{first.pk}-2): since the request of key hitl-proposal-{first.pk}-1 was "
        "worked out, brand-search's daily budget went from 1000.00 to 900.00 and "
        "generic-search's daily budget went from 500.00 to 600.00. That one would have set "
        "brand-search's daily budget 720.00 and generic-search's daily budget 780.00; this one "
        "sets brand-search's daily budget 620.00 and generic-search's daily budget 880.00. No "
        "attempt of it was carried out: each was refused, or never reached the channel."
    ) in reasons


def test_a_request_that_may_have_been_carried_out_is_not_sent_again_with_old_figures(
    channel, monkeypatch, operators
):
    # 503: the endpoint may have done it before it failed. Then 200s.
    endpoint = channel(503, 200, retry_after="600")
    first = approved("280.00", monkeypatch)
    assert run(first, monkeypatch).status == ProposalStatus.EXECUTING
    second = approved("100.00", monkeypatch)
    assert run(second, monkeypatch).status == ProposalStatus.EXECUTED

    failed = brought_forward(first, monkeypatch)

    assert failed.status == ProposalStatus.FAILED
    assert len(endpoint.received) == 2  # not sent again
    assert budgets() == {"brand-search": "900.00", "generic-search": "600.00"}
    said = failed.executions.order_by("-attempt").first().error
    assert said.startswith(
        "Not sent again: since its request was worked out, brand-search's daily budget went "
        "from 1000.00 to 900.00 and generic-search's daily budget went from 500.00 to 600.00; "
        "it would have set brand-search's daily budget 720.00 and generic-search's daily "
        "budget 780.00, where the action came to brand-search's daily budget 620.00 and "
        "generic-search's daily budget 880.00 by the ledger then. Attempt 1 was sent to the "
        "channel before and was answered HTTP 503 (Retry-After: 600 s), which does not say "
        "whether the channel carried it out."
    ), said
    # What happened, stored, and quoted long after (its agent reads it too): nothing of a
    # retry, which its page says beside Retry as things then stand.
    assert "retry" not in said
    # As its move to failed is recorded, which its page, its agent and its alerts read.
    assert Proposal.history.filter(
        id=first.pk, status=ProposalStatus.FAILED, history_change_reason__endswith=said
    ).exists()

    # Beside Retry, as it stands when read: what a retry sends.
    client = Client()
    client.force_login(operators[0])
    page = client.get(reverse("admin:approvals_proposal_change", args=[first.pk])).text
    [note] = re.findall(r'<p class="errornote" id="retry-may-repeat">(.*?)</p>', page)
    assert html.unescape(note) == (
        "Attempt 1 was answered HTTP 503 (Retry-After: 600 s), which does not say whether the "
        "channel carried it out: check on the "
        f"channel before retrying it; a retry is a new request (key hitl-proposal-{first.pk}-2) "
        "the channel cannot tell from it."
    )

    # A person checked, and sends it to run again: worked out from the ledger as it is now.
    proposal_retry(proposal_id=first.pk, reviewer=operators[0])
    assert run(first, monkeypatch).status == ProposalStatus.EXECUTED
    key, sets = told(endpoint.received[-1])
    assert key != f"hitl-proposal-{first.pk}-1"
    assert sets == {"brand-search": "620.00", "generic-search": "880.00"} == budgets()


def test_no_two_requests_to_the_same_campaigns_are_under_way_at_once(channel, monkeypatch):
    """Both approved; while the first's request is under way, the second's attempt is not
    sent (it was, worked out from the same budgets as the first, and the channel ended at
    900.00 / 600.00 where the ledger held 620.00 / 880.00). It goes once the first's answer is
    recorded, worked out from the ledger as the first left it."""
    endpoint = channel(200)
    first = approved("280.00", monkeypatch)
    second = approved("100.00", monkeypatch)
    while_the_first_is_under_way = []

    def second_tried():
        endpoint.while_first_request = None  # once
        tried = proposal_execute(proposal_id=second.pk)  # its retry goes to the worker
        while_the_first_is_under_way.append((tried.status, len(endpoint.received)))

    endpoint.while_first_request = second_tried
    assert proposal_execute(proposal_id=first.pk).status == ProposalStatus.EXECUTED

    assert while_the_first_is_under_way == [(ProposalStatus.APPROVED, 0)]
    wait_until(lambda: Proposal.objects.get(pk=second.pk).status == ProposalStatus.EXECUTED)
    assert [told(request) for request in endpoint.received] == [
        (f"hitl-proposal-{first.pk}-1", {"brand-search": "720.00", "generic-search": "780.00"}),
        (f"hitl-proposal-{second.pk}-1", {"brand-search": "620.00", "generic-search": "880.00"}),
    ]
    assert budgets() == {"brand-search": "620.00", "generic-search": "880.00"}
    assert Decimal(budgets()["brand-search"]) + Decimal(budgets()["generic-search"]) == 1500


def test_a_request_that_waited_its_turn_is_worked_out_again_under_its_key(
    channel, monkeypatch, settings
):
    """The account's endpoint had all the requests it is given under way: the round began
    (its request worked out from brand-search's 1000.00) and waited its turn, nothing sent.
    The budget moved meanwhile (as a person's edit of the campaign moves it); its turn come,
    it is worked out again and sent under the same key, as nothing went with it. Its history
    says so: its first attempt sets other figures than its round began with, and nothing said
    it had been worked out again."""
    endpoint = channel(200)
    proposal = approved("90.00", monkeypatch)  # 9%: the engine's to approve
    settings.WEBHOOK_REQUESTS_PER_ACCOUNT = 0  # every place taken
    assert run(proposal, monkeypatch).status == ProposalStatus.EXECUTING
    assert not proposal.executions.exists() and not endpoint.received
    Campaign.objects.filter(external_id="brand-search").update(daily_budget=Decimal("950.00"))
    settings.WEBHOOK_REQUESTS_PER_ACCOUNT = 2

    assert brought_forward(proposal, monkeypatch).status == ProposalStatus.EXECUTED

    assert [told(request) for request in endpoint.received] == [
        (f"hitl-proposal-{proposal.pk}-1", {"brand-search": "860.00", "generic-search": "590.00"})
    ]
    assert budgets() == {"brand-search": "860.00", "generic-search": "590.00"}
    assert (
        f"Its request worked out again before attempt 1, under its key "
        f"(hitl-proposal-{proposal.pk}-1), as nothing had been sent with it: since it was worked "
        "out, brand-search's daily budget went from 1000.00 to 950.00. It would have set "
        "brand-search's daily budget 910.00 and generic-search's daily budget 590.00; it now "
        "sets brand-search's daily budget 860.00 and generic-search's daily budget 590.00."
    ) in Proposal.history.filter(id=proposal.pk).values_list("history_change_reason", flat=True)


def test_on_google_ads_a_move_retried_after_one_ahead_landed_sets_what_the_ledger_holds(
    linked_google_ads, monkeypatch
):
    """Google Ads reads the budgets before it sets them: its round, worked out from 1000.00 /
    500.00, found 900.00 / 600.00 there (the move ahead) and was superseded, "the value moved
    on the channel", though that move was the platform's own and the amount still fits. It is
    worked out again and carried out. Its history says so without naming a key: Google Ads
    gets none (it said "as a new request (key hitl-proposal-…-3)", a key never sent)."""
    linked_google_ads.fail_next("quota", method="MutateCampaignBudgets")  # come back later
    first = approved("280.00", monkeypatch)
    assert run(first, monkeypatch).status == ProposalStatus.EXECUTING
    second = approved("100.00", monkeypatch)
    assert run(second, monkeypatch).status == ProposalStatus.EXECUTED

    assert brought_forward(first, monkeypatch).status == ProposalStatus.EXECUTED

    assert budgets() == {"brand-search": "620.00", "generic-search": "880.00"}
    brand, generic = (
        Campaign.objects.get(external_id=name).google_ads.google_campaign_id
        for name in ("brand-search", "generic-search")
    )
    on_google_ads = linked_google_ads.state
    assert on_google_ads.budgets[on_google_ads.campaigns[brand].budget_id] == 620_000_000
    assert on_google_ads.budgets[on_google_ads.campaigns[generic].budget_id] == 880_000_000
    reasons = Proposal.history.filter(id=first.pk).values_list("history_change_reason", flat=True)
    said = [reason for reason in reasons if reason.startswith("Its request worked out again")]
    assert said == [
        "Its request worked out again before attempt 2, as a new request: since the request "
        "before it was worked out, brand-search's daily budget went from 1000.00 to 900.00 and "
        "generic-search's daily budget went from 500.00 to 600.00. That one would have set "
        "brand-search's daily budget 720.00 and generic-search's daily budget 780.00; this one "
        "sets brand-search's daily budget 620.00 and generic-search's daily budget 880.00. No "
        "attempt of it was carried out: each was refused, or never reached the channel."
    ]


def test_not_sent_again_names_the_attempt_that_may_have_been_carried_out(channel, monkeypatch):
    """Attempt 1 got a 503 (it may have been carried out), attempt 2 a 429 (it was not).
    A move ahead lands; the next attempt is not sent. What a person is asked to check on the
    channel is attempt 1, the one that may have been carried out, not attempt 2, which the
    channel said it did not carry out."""
    endpoint = channel(503, 429, 200, retry_after="600")
    first = approved("280.00", monkeypatch)
    assert run(first, monkeypatch).status == ProposalStatus.EXECUTING  # 503
    assert brought_forward(first, monkeypatch).status == ProposalStatus.EXECUTING  # 429
    second = approved("100.00", monkeypatch)
    assert run(second, monkeypatch).status == ProposalStatus.EXECUTED

    failed = brought_forward(first, monkeypatch)

    assert failed.status == ProposalStatus.FAILED
    assert len(endpoint.received) == 3
    said = failed.executions.order_by("-attempt").first().error
    assert (
        "Attempt 1 was sent to the channel before and was answered HTTP 503 (Retry-After: "
        "600 s), which does not say whether the channel carried it out."
    ) in said, said
    assert "Attempt 2 was sent to the channel before" not in said, said


def test_a_pause_whose_campaigns_budget_moved_is_sent_again_under_its_key(channel, monkeypatch):
    """A pause's request sets the status its payload names, whatever the budget: the budget
    is only what its figures (the spend it stops) are read from. Its first attempt got a 503;
    a move of that budget landed before its next. It is sent again, the same request under
    the same key (the endpoint does it once), not failed "Not sent again" as if the request
    had been worked out from the budget."""
    endpoint = channel(503, 200, retry_after="600")
    with monkeypatch.context() as patch:
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        pause = evaluated(
            {
                **reallocation(),
                "action_type": "status_change",
                "payload": {"campaign": "brand-search", "status": "paused"},
            }
        )
        if pause.status == ProposalStatus.PENDING_REVIEW:
            operator = get_user_model().objects.get(username="operator")
            proposal_approve(proposal_id=pause.pk, reviewer=operator)
    assert run(pause, monkeypatch).status == ProposalStatus.EXECUTING
    second = approved("100.00", monkeypatch)
    assert run(second, monkeypatch).status == ProposalStatus.EXECUTED

    assert brought_forward(pause, monkeypatch).status == ProposalStatus.EXECUTED

    keys = [request["headers"]["Idempotency-Key"] for request in endpoint.received]
    assert keys == [
        f"hitl-proposal-{pause.pk}-1",
        f"hitl-proposal-{second.pk}-1",
        f"hitl-proposal-{pause.pk}-1",
    ]
    assert Campaign.objects.get(external_id="brand-search").status == "paused"
