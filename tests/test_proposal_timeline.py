"""A proposal's page's timeline says what happened to it, each row true of its status: one
that failed says when (its last attempt's finish), not "Executed at: —" with nothing saying
it failed; one retried says when the person sent it to run again; one under way says when
it started, not "Executed at"; one withdrawn or superseded says when."""

import html
import re
import time
from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from approvals.models import Execution, ExecutionStatus, Proposal, person_retries
from approvals.services.decisions import proposal_approve, proposal_reject, proposal_retry
from approvals.services.expiry import proposals_expire_overdue
from approvals.services.proposals import proposal_withdraw_for_agent
from executors.runner import proposal_execute
from ledger.models import Campaign
from tests.conftest import bid_adjustment, wait_until
from tests.factories import evaluated


@pytest.fixture
def operator(demo_world):
    return get_user_model().objects.get(username="operator")


def at(value) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"


def timeline(client, proposal: Proposal, version=None) -> list[tuple[str, str]]:
    """The timeline's rows as its reader reads them: (label, value), on its page or on one
    of its past versions' (a record of its history)."""
    page = client.get(
        reverse("admin:approvals_proposal_change", args=[proposal.pk])
        if version is None
        else reverse(
            "admin:approvals_proposal_simple_history", args=[proposal.pk, version.history_id]
        )
    )
    assert page.status_code == 200
    section = page.text.split("Timeline</h2>")[1].split("</fieldset>")[0]
    rows = re.findall(r"<label[^>]*>(.*?):</label>\s*<div class=\"readonly\">(.*?)</div>", section)
    return [(html.unescape(label), html.unescape(value).strip()) for label, value in rows]


def a_raise(campaign: str = "generic-search", budget: str = "525.00") -> Proposal:
    """A 5% raise of a campaign's budget its policy lets run with no person."""
    raise_ = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": campaign, "new_daily_budget": budget}}
    )
    assert raise_.status == "approved"
    return raise_


def failed(raise_: Proposal) -> Proposal:
    """Failed by the ledger's executor: the campaign's cap was set below it before it ran."""
    campaign = Campaign.objects.filter(external_id=raise_.payload["campaign"])
    cap = campaign.get().max_daily_budget
    campaign.update(max_daily_budget=campaign.get().daily_budget)
    assert proposal_execute(proposal_id=raise_.pk).status == "failed"
    campaign.update(max_daily_budget=cap)
    raise_.refresh_from_db()
    return raise_


def waiting() -> Proposal:
    proposal = evaluated(bid_adjustment("2.50"))
    assert proposal.status == "pending_review"
    return proposal


def start(proposal: Proposal) -> tuple[Proposal, Execution]:
    # Read the same way as rows the executor writes (see executors.runner).
    attempt = Execution.objects.create(
        proposal=proposal,
        attempt=proposal.executions.count() + 1,
        executor="ledger",
        status=ExecutionStatus.RUNNING,
        started_at=timezone.now(),
    )
    Proposal.objects.filter(pk=proposal.pk).update(status="executing")
    proposal.refresh_from_db()
    return proposal, attempt


def test_a_failed_proposal_says_when_it_failed_not_executed_at(login):
    raise_ = failed(a_raise())
    attempt = raise_.executions.get()

    rows = timeline(login("auditor"), raise_)

    assert rows == [
        ("Created at", at(raise_.created_at)),
        ("Evaluated at", at(raise_.evaluated_at)),
        ("Decided at", at(raise_.decided_at)),
        ("Failed at", at(attempt.finished_at)),
    ]


def test_a_retried_proposal_that_executed_says_it_failed_was_sent_again_and_executed(
    operator, login
):
    raise_ = failed(a_raise())
    first = raise_.executions.get()
    proposal_retry(proposal_id=raise_.pk, reviewer=operator)
    assert proposal_execute(proposal_id=raise_.pk).status == "executed"
    raise_.refresh_from_db()

    rows = timeline(login("auditor"), raise_)

    assert rows == [
        ("Created at", at(raise_.created_at)),
        ("Evaluated at", at(raise_.evaluated_at)),
        ("Decided at", at(raise_.decided_at)),
        ("Failed at", at(first.finished_at)),
        ("Sent to run again at", f"{at(raise_.approved_at)} by operator"),
        ("Executed at", at(raise_.executed_at)),
    ]


def test_a_retried_proposal_that_failed_again_says_so(operator, login):
    raise_ = failed(a_raise())
    first = raise_.executions.get()
    proposal_retry(proposal_id=raise_.pk, reviewer=operator)
    raise_ = failed(raise_)
    second = raise_.executions.order_by("attempt").last()

    rows = timeline(login("auditor"), raise_)

    assert rows[2:] == [
        ("Decided at", at(raise_.decided_at)),
        ("Failed at", at(first.finished_at)),
        ("Sent to run again at", f"{at(raise_.approved_at)} by operator"),
        ("Failed again at", at(second.finished_at)),
    ]


def test_one_under_way_says_when_it_started_not_that_it_executed(operator, login):
    raise_, attempt = start(a_raise())

    rows = timeline(login("auditor"), raise_)

    assert rows[2:] == [
        ("Decided at", at(raise_.decided_at)),
        ("Execution started at", at(attempt.started_at)),
    ]
    # Under way again after a retry: the run under way, not the attempt that failed.
    raise_ = failed(a_raise("brand-search", "1050.00"))
    first = raise_.executions.get()
    proposal_retry(proposal_id=raise_.pk, reviewer=operator)
    raise_, attempt = start(raise_)

    assert timeline(login("auditor"), raise_)[2:] == [
        ("Decided at", at(raise_.decided_at)),
        ("Failed at", at(first.finished_at)),
        ("Sent to run again at", f"{at(raise_.approved_at)} by operator"),
        ("Execution started at", at(attempt.started_at)),
    ]


def test_a_retry_is_recorded_at_the_instant_it_says_it_was_sent_to_run_again(operator, login):
    """A retry set the proposal's approved_at, and its history record was written the moment
    after: across a second's edge its timeline said "Sent to run again at …:07" where the
    proposal, and the auditor's export beside it, said it was approved at …:06. The move and
    its record are one instant."""
    raise_ = failed(a_raise())
    proposal_retry(proposal_id=raise_.pk, reviewer=operator)
    raise_.refresh_from_db()

    [record] = person_retries([raise_.pk])

    assert record[1] == raise_.approved_at
    assert timeline(login("auditor"), raise_)[4] == (
        "Sent to run again at",
        f"{at(raise_.approved_at)} by operator",
    )


def test_one_approved_to_run_says_it_has_not_executed_yet(operator, login):
    proposal = waiting()
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    proposal.refresh_from_db()

    assert timeline(login("auditor"), proposal)[2:] == [
        ("Decided at", at(proposal.decided_at)),
        ("Executed at", "—"),
    ]


def test_one_rejected_says_when_and_nothing_of_an_execution(operator, login):
    proposal = waiting()
    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="other")
    proposal.refresh_from_db()

    assert timeline(login("auditor"), proposal)[2:] == [("Decided at", at(proposal.decided_at))]


def test_one_expired_says_when_its_window_closed_and_that_nobody_decided(login):
    proposal = waiting()
    Proposal.objects.filter(pk=proposal.pk).update(
        review_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert proposals_expire_overdue() == 1
    proposal.refresh_from_db()

    assert timeline(login("auditor"), proposal)[2:] == [
        ("Review window closed at", at(proposal.review_expires_at)),
        ("Decided at", "—"),
    ]


def test_one_withdrawn_says_when(operator, login):
    proposal = waiting()
    proposal_withdraw_for_agent(proposal_id=proposal.pk, reviewer=operator)
    withdrawn = proposal.history.filter(status="withdrawn").get()

    assert timeline(login("auditor"), proposal)[2:] == [
        ("Decided at", "—"),
        ("Withdrawn at", at(withdrawn.history_date)),
    ]


def test_one_superseded_says_when(operator, login):
    raise_ = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "600.00"}}
    )
    proposal_approve(proposal_id=raise_.pk, reviewer=operator)
    Campaign.objects.filter(external_id="generic-search").update(daily_budget="550.00")
    assert proposal_execute(proposal_id=raise_.pk).status == "superseded"
    raise_.refresh_from_db()

    rows = timeline(login("auditor"), raise_)

    assert rows[2:] == [
        ("Decided at", at(raise_.decided_at)),
        ("Superseded at", at(raise_.updated_at)),
    ]


def later_written(proposal: Proposal, *, ended_by: str) -> datetime:
    """The proposal ended (its move recorded) three minutes ago, and its row written again
    since, as a backfill writes it: its ``updated_at`` is now the backfill's. Returns when it
    ended."""
    [ended] = proposal.history.filter(status=ended_by)
    ended_at = ended.history_date - timedelta(minutes=3)
    proposal.history.filter(pk=ended.pk).update(history_date=ended_at)
    Proposal.objects.filter(pk=proposal.pk).update(updated_at=ended_at)
    proposal.refresh_from_db()
    proposal.verdict_reasons = [*proposal.verdict_reasons, "Backfilled."]
    proposal.save()
    assert proposal.updated_at - ended_at >= timedelta(minutes=3)
    return ended_at


def test_a_superseded_proposal_written_again_says_when_it_was_superseded(operator, login):
    """ "Superseded at" read the row's ``updated_at``: any later write to it (a backfill, a
    re-assessment) moved it, and its status line with it, to when that write was made."""
    raise_ = evaluated(
        bid_adjustment(action_type="budget_change")
        | {"payload": {"campaign": "generic-search", "new_daily_budget": "600.00"}}
    )
    proposal_approve(proposal_id=raise_.pk, reviewer=operator)
    Campaign.objects.filter(external_id="generic-search").update(daily_budget="550.00")
    assert proposal_execute(proposal_id=raise_.pk).status == "superseded"
    superseded_at = later_written(raise_, ended_by="superseded")
    auditor = login("auditor")

    assert timeline(auditor, raise_)[2:] == [
        ("Decided at", at(raise_.decided_at)),
        ("Superseded at", at(superseded_at)),
    ]
    page = auditor.get(reverse("admin:approvals_proposal_change", args=[raise_.pk])).text
    review_ended = html.unescape(re.sub(r"<[^>]+>", "", page.split('id="review-ended">')[1]))
    assert review_ended.startswith(
        f"· operator approved it at {at(raise_.decisions.get().created_at)}, then its target "
        f"was found changed before it ran, at {at(superseded_at)}: nothing was done."
    )


def test_one_withdrawn_or_expired_written_again_says_when_it_ended(operator, login):
    """Their rows read when they ended from their history (a withdrawal) and from when their
    window was to close (an expiry), which a later write to the row does not move."""
    withdrawn = waiting()
    proposal_withdraw_for_agent(proposal_id=withdrawn.pk, reviewer=operator)
    withdrawn_at = later_written(withdrawn, ended_by="withdrawn")
    expired = waiting()
    Proposal.objects.filter(pk=expired.pk).update(
        review_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert proposals_expire_overdue() == 1
    expired.refresh_from_db()
    closed_at = expired.review_expires_at
    later_written(expired, ended_by="expired")
    auditor = login("auditor")

    assert timeline(auditor, withdrawn)[2:] == [
        ("Decided at", "—"),
        ("Withdrawn at", at(withdrawn_at)),
    ]
    assert timeline(auditor, expired)[2:] == [
        ("Review window closed at", at(closed_at)),
        ("Decided at", "—"),
    ]


def test_every_past_version_of_a_retried_proposal_opens_for_every_role(operator, login):
    """Each version in a proposal's history opens (the history list links every one): a
    version recorded while it was executing, failed or sent to run again has its own
    timeline rows ("Execution started at", "Failed at", "Sent to run again at"), which the
    version's read-only page did not know, and answered 500 to every role."""
    raise_ = failed(a_raise())
    proposal_retry(proposal_id=raise_.pk, reviewer=operator)
    assert proposal_execute(proposal_id=raise_.pk).status == "executed"
    versions = list(raise_.history.order_by("history_id"))
    assert {"executing", "failed"} <= {version.status for version in versions}

    for username in ("auditor", "operator", "policy-owner"):
        client = login(username)
        for version in versions:
            url = reverse(
                "admin:approvals_proposal_simple_history", args=[raise_.pk, version.history_id]
            )
            page = client.get(url)
            assert page.status_code == 200, (username, version.status, version.history_id)
            assert 'type="submit"' not in page.text.split('id="content-main"')[1]


# The page writes times to the second: attempts this far apart read apart.
SECOND_APART = 1.1


def attempts_of(proposal: Proposal) -> list[Execution]:
    return list(proposal.executions.order_by("attempt"))


def version_timelines(client, proposal: Proposal) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each past version's status and the end of its timeline (after "Decided at"), oldest
    first, as the auditor reads them opening each from the proposal's history."""
    versions = proposal.history.exclude(verdict_outcome="").order_by("history_id")
    return [(v.status, timeline(client, proposal, v)[3:]) for v in versions]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_each_past_version_of_a_retried_proposal_says_what_had_happened_by_then(
    channel, operator, login
):
    """The brief's case: a 6% bid its policy lets run, refused by the channel (400), sent to
    run again by the operator once the channel accepts it, executed. The versions recorded
    at its failure said it failed when the retry's attempt finished (and succeeded): their
    timeline rows were read from its attempts as they are now, not as they were then."""
    channel(400, 200)
    bid = evaluated(bid_adjustment("2.12"))
    wait_until(lambda: Proposal.objects.get(pk=bid.pk).status == "failed")
    time.sleep(SECOND_APART)
    proposal_retry(proposal_id=bid.pk, reviewer=operator)
    wait_until(lambda: Proposal.objects.get(pk=bid.pk).status == "executed")
    bid.refresh_from_db()
    first, second = attempts_of(bid)
    assert (first.status, second.status) == ("failed", "succeeded")
    before = ("Failed at", at(first.finished_at))
    sent = ("Sent to run again at", f"{at(bid.approved_at)} by operator")

    assert version_timelines(login("auditor"), bid) == [
        ("approved", [("Executed at", "—")]),
        ("executing", [("Execution started at", at(first.started_at))]),
        ("failed", [("Failed at", at(first.finished_at))]),
        ("failed", [("Failed at", at(first.finished_at))]),  # its failure told to operators
        ("approved", [before, sent, ("Executed at", "—")]),
        ("executing", [before, sent, ("Execution started at", at(second.started_at))]),
        ("executed", [before, sent, ("Executed at", at(bid.executed_at))]),
    ]


def test_a_version_recorded_at_its_second_failure_says_that_one_not_the_next(operator, login):
    """Failed, sent to run again, failed again, sent again, executed: the version recorded
    when it failed again says when its second attempt failed, not when its third finished."""
    raise_ = failed(a_raise())
    proposal_retry(proposal_id=raise_.pk, reviewer=operator)
    raise_ = failed(raise_)
    failed_again = raise_.history.filter(status="failed").latest("history_id")
    time.sleep(SECOND_APART)
    proposal_retry(proposal_id=raise_.pk, reviewer=operator)
    assert proposal_execute(proposal_id=raise_.pk).status == "executed"
    first, second, third = attempts_of(raise_)

    assert timeline(login("auditor"), raise_, failed_again)[3:] == [
        ("Failed at", at(first.finished_at)),
        ("Sent to run again at", f"{at(failed_again.approved_at)} by operator"),
        ("Failed again at", at(second.finished_at)),
    ]
    assert at(third.finished_at) != at(second.finished_at)


def test_a_past_version_says_which_moment_it_shows(operator, login):
    """Each version's title is the proposal's summary: its versions read alike, and nothing
    on one said when it stood so, nor who recorded it."""
    raise_ = failed(a_raise())
    proposal_retry(proposal_id=raise_.pk, reviewer=operator)
    retried = raise_.history.latest("history_id")

    page = login("auditor").get(
        reverse("admin:approvals_proposal_simple_history", args=[raise_.pk, retried.history_id])
    )

    said = re.search(r'<p id="version-as-of">(.*?)</p>', page.text, re.S)
    assert said is not None
    assert html.unescape(re.sub(r"<[^>]+>", "", said[1])) == (
        f"This is proposal #{raise_.pk} as it stood at {at(retried.history_date)}, as recorded "
        "by operator (person). Its page shows it as it is now."
    )


def test_a_proposal_retried_twice_by_two_people_names_each_retry_and_who_sent_it(operator, login):
    """A person's retry is their approval to run it, and the page's decisions name only who
    approved it first: its timeline says who sent it to run again, each time, in order, not
    the last retry's time alone with nobody named (the run that executed was operator2's
    word, not the approver's). Each failure it was retried after is said too, in order: the
    timeline said "Failed at" the second one's time alone, just before "… by operator", as
    if operator had retried that one and the first failure never happened."""
    colleague = get_user_model().objects.create_user("operator2", is_staff=True)
    colleague.groups.set(operator.groups.all())
    raise_ = failed(a_raise())
    first_failure = raise_.executions.get()
    proposal_retry(proposal_id=raise_.pk, reviewer=operator)
    raise_ = failed(raise_)
    second_failure = raise_.executions.order_by("attempt").last()
    first_retry_at = (
        Proposal.history.filter(
            id=raise_.pk, history_change_reason__startswith="sent to run again by operator"
        )
        .first()
        .history_date
    )
    proposal_retry(proposal_id=raise_.pk, reviewer=colleague)
    assert proposal_execute(proposal_id=raise_.pk).status == "executed"
    raise_.refresh_from_db()

    rows = timeline(login("auditor"), raise_)

    assert rows[2:] == [
        ("Decided at", at(raise_.decided_at)),
        (
            "Failed at",
            f"{at(first_failure.finished_at)} (attempt 1), then "
            f"{at(second_failure.finished_at)} (attempt 2)",
        ),
        (
            "Sent to run again at",
            f"{at(first_retry_at)} by operator, then {at(raise_.approved_at)} by operator2",
        ),
        ("Executed at", at(raise_.executed_at)),
    ]
