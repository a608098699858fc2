"""History is read in the order it was written. A historical record's ``history_date`` is the
clock of the host that wrote it; a web host's and a worker's can disagree by seconds. So
"which came after which" follows ``history_id`` (the order the database took the records in),
while "what was true at time T" filters on ``history_date`` and, within it, takes the record
written last. Each test writes records whose dates run backwards against their ids, as a
clock a few seconds behind another would."""

import html
import json
import re
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_retry
from approvals.simulation import drafts_in_place, simulate
from audit.actors import Actor, acting_as
from audit.chain import chain_seal
from audit.models import ChainLink
from executors.runner import proposal_execute
from ledger.models import Campaign
from notifications.messages import proposal_messages
from notifications.models import NotificationKind, Route
from policies.models import Policy
from policies.services import kill_switches_engaged_now
from tests.conftest import bid_adjustment, reallocation
from tests.factories import evaluated
from tests.test_audit_export import URL as EXPORT_URL
from tests.test_audit_export import period
from tests.test_dashboard import engaged_by
from tests.test_kill_switch_holds_execution import engage
from tests.test_notifications_console import DEMO_ROUTE, detail

SKEW = timedelta(seconds=5)


def dated_before(record, other) -> None:
    """``record`` (written after ``other``) dated ``SKEW`` before it: its host's clock is
    behind."""
    type(record).objects.filter(history_id=record.history_id).update(
        history_date=other.history_date - SKEW
    )


def operator():
    return get_user_model().objects.get(username="operator")


def test_a_switch_engaged_again_by_a_host_whose_clock_is_behind_says_who_engaged_it_since_when(
    demo_world,
):
    switch = engaged_by("policy-owner", scope="global", reason="Outage.")
    with acting_as(Actor.system("test")):
        switch.engaged = False
        switch.save()
    with acting_as(Actor.for_user(get_user_model().objects.get(username="operator"))):
        switch.engaged = True  # engaged again, on a host whose clock is behind
        switch.save()
    released, engaging = switch.history.order_by("history_id")[1:]
    dated_before(engaging, released)
    engaging.refresh_from_db()

    [engaged] = kill_switches_engaged_now()

    assert engaged.since == engaging.history_date
    assert engaged.engaged_by == "operator (person)"


def test_a_person_s_approval_written_by_a_host_whose_clock_is_behind_lets_it_run_past_the_switch(
    demo_world,
):
    engage()
    proposal = evaluated(reallocation("280.00"))
    routed = Proposal.history.filter(id=proposal.pk).latest("history_id")
    # The approval's host stamped it a moment after the switch was engaged, yet before the
    # routing's clock had it routed.
    Proposal.history.filter(history_id=routed.history_id).update(
        history_date=timezone.now() + timedelta(minutes=1)
    )
    proposal_approve(proposal_id=proposal.pk, reviewer=operator())

    done = proposal_execute(proposal_id=proposal.pk)

    assert done.status == ProposalStatus.EXECUTED
    assert Campaign.objects.get(external_id="generic-search").daily_budget == Decimal("780.00")


def test_the_replay_follows_a_proposal_s_records_in_the_order_they_were_written(demo_world):
    proposal = evaluated(bid_adjustment("2.12"))
    assert proposal.status == ProposalStatus.APPROVED
    proposal_execute(proposal_id=proposal.pk)
    records = list(Proposal.history.filter(id=proposal.pk).order_by("history_id"))
    routing = next(r for r in records if r.status == ProposalStatus.APPROVED)
    for record in records:  # the worker's records, by a clock behind the web host's
        if record.status in (ProposalStatus.EXECUTING, ProposalStatus.EXECUTED):
            dated_before(record, routing)

    now = timezone.now()
    report = simulate(since=now - timedelta(days=1), until=now + timedelta(days=1))

    assert report.proposals == report.routings == 1
    assert dict(report.happened) == {"auto_executed": 1}
    assert report.changed == 0


def test_the_replay_holds_a_policy_to_its_version_written_last_whatever_its_date(demo_world):
    bids = Policy.objects.get(action_type="bid_adjustment")
    bids.auto_execute_max_magnitude = Decimal("0.05")  # tightened, by a host whose clock is behind
    bids.save()
    before, tightened = list(bids.history.order_by("history_id"))[-2:]
    dated_before(tightened, before)
    proposal = evaluated(bid_adjustment("2.12"))  # +6%: over the tightened 5%
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    Policy.objects.create(  # a draft elsewhere: the replay reads the bid rules from history
        name="Reallocations, draft", action_type="budget_reallocation", is_draft=True
    )

    now = timezone.now()
    report = simulate(
        draft_set=drafts_in_place(None),
        since=now - timedelta(days=1),
        until=now + timedelta(days=1),
    )

    assert report.proposals == 1
    assert report.changed == 0, report.examples


def test_a_failure_message_tells_of_the_failure_written_last(demo_world):
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator())
    brand = Campaign.objects.filter(external_id="brand-search")
    brand.update(daily_budget=Decimal("200.00"))
    first = proposal_execute(proposal_id=proposal.pk)
    assert first.status == ProposalStatus.FAILED
    brand.update(daily_budget=Decimal("1000.00"))  # a retry is refused while it cannot run
    proposal_retry(proposal_id=proposal.pk, reviewer=operator())
    brand.update(daily_budget=Decimal("100.00"))
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.FAILED
    failures = Proposal.history.filter(
        id=proposal.pk, history_change_reason__startswith="execution failed: "
    )
    earlier, later = failures.order_by("history_id")[:1].get(), failures.latest("history_id")
    dated_before(later, earlier)

    [message] = proposal_messages(
        [(Proposal.objects.get(pk=proposal.pk), NotificationKind.FAILED)], now=timezone.now()
    )

    assert "daily budget of 100.00" in message.failure.said
    assert "200.00" not in message.failure.said


def test_a_proposal_s_page_names_the_route_as_it_was_last_named_before_it_told(login):
    route = Route.objects.get(name=DEMO_ROUTE)
    route.name = "Demo, renamed"
    route.save()
    named, renamed = list(route.history.order_by("history_id"))[-2:]
    dated_before(renamed, named)

    page = detail(login("operator"), evaluated())

    told = page.split('id="proposal-told"')[1].split("</table>")[0]
    assert "Demo, renamed" in told and DEMO_ROUTE not in told


def test_the_export_lists_an_object_s_records_in_the_order_written_each_against_the_one_before(
    login,
):
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator())
    records = Proposal.history.filter(id=proposal.pk).order_by("history_id")
    routed, approved = records[1], records[2]
    dated_before(approved, routed)

    response = login("auditor").get(EXPORT_URL, {**period(), "format": "jsonl"})

    lines = b"".join(response.streaming_content).splitlines()
    exported = [
        record
        for record in map(json.loads, lines)
        if record["model"] == "approvals.proposal" and record["object_id"] == proposal.pk
    ]
    assert [r["fields"]["status"] for r in exported] == ["submitted", "pending_review", "approved"]
    assert "decided_at" in exported[2]["changed"]


def test_the_chain_seals_records_in_the_order_they_were_written(demo_world):
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator())
    records = list(Proposal.history.filter(id=proposal.pk).order_by("history_id"))
    dated_before(records[2], records[1])

    chain_seal()

    sealed = ChainLink.objects.filter(
        table="approvals.historicalproposal", object_id=str(proposal.pk)
    ).order_by("id")
    assert list(sealed.values_list("history_id", flat=True)) == [r.history_id for r in records]


def test_a_history_page_lists_changes_in_the_order_they_were_written(login):
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator())
    records = list(Proposal.history.filter(id=proposal.pk).order_by("history_id"))
    dated_before(records[2], records[1])

    page = login("auditor").get(reverse("admin:approvals_proposal_history", args=[proposal.pk]))

    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))
    newest_first = [record.history_change_reason for record in reversed(records)]
    positions = [text.find(reason) for reason in newest_first]
    assert -1 not in positions, (newest_first, text)
    assert positions == sorted(positions)
