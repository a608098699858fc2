"""One definition of each count of proposals, shown alike wherever it is shown: the dashboard,
a proposal's track record, the agent's scorecard and the agent's scorecard in the API, each
read as a person (or an agent) reads it, with the label that says what it counts and the
period it covers."""

from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.urls import reverse
from django.utils import timezone

from approvals import selectors
from approvals.models import Agent, Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_reject
from approvals.services.expiry import proposals_expire_overdue
from approvals.services.lifecycle import proposal_transition
from approvals.services.proposals import proposal_withdraw
from audit.actors import Actor
from executors.runner import proposal_execute
from ledger.models import Account, Campaign
from policies.models import KillSwitch, Policy
from tests.conftest import bid_adjustment
from tests.factories import evaluated

# The history below, as every place must show it: each proposal once, by where it stands now.
SHOWN = {
    "Proposals made": "15",
    "Auto-executed": "1",
    "Decided by a person": "5",
    "Approved by a person": "4",
    "of those, with edits": "1",
    "Rejected by a person": "1",
    "Waiting for a person": "1",
    "Auto-approved, not executed": "2",
    "Blocked by policy": "1",
    "Expired": "2",
    "Withdrawn": "1",
    "Superseded": "2",
}
LABELS = {
    "Auto-executed": "executed with no person approving it: policy approved it and it ran, "
    "on its first run or when a person retried its failed execution",
    "Decided by a person": "approved or rejected by people (one proposal two people approved "
    "is one)",
    "Superseded": "its target changed before it ran; never ran, and not counted as approved "
    "even if a person had approved it",
    # As a deadline's end says it ("withdrawn before enough people approved it"): it read
    # "withdrawn before a decision", of proposals one of two reviewers had approved too.
    "Withdrawn": "withdrawn before enough people approved it, by its agent or by a reviewer for "
    "it; never ran",
    "Expired": "its review window closed before enough people approved it; never ran",
}
API_FIELDS = {
    "proposals": 15,
    "auto_executed": 1,
    "decided": 5,
    "approved": 4,
    "edited": 1,
    "rejected": 1,
    "waiting": 1,
    "auto_not_executed": 2,
    "blocked": 1,
    "expired": 2,
    "withdrawn": 1,
    "superseded": 2,
}


class Tables(HTMLParser):
    """The rows of a page's tables as a person reads them: each cell under its column's
    header, by the header's visible text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id", ""), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, table_id: str) -> list[dict[str, str]]:
        header, *rows = self.tables[table_id]
        return [dict(zip(header, row, strict=True)) for row in rows]


def shown(row: dict[str, str]) -> dict[str, str]:
    return {label: row[label] for label in SHOWN}


def text(html: str) -> str:
    return " ".join(html.split())


@pytest.fixture
def history(demo_world, operators, channel):
    """optimizer's bid adjustments, each on a campaign of its own, with every ending: approved
    as proposed, approved with edits, approved by two people, rejected, expired (one of them
    after one of two approvals), withdrawn, auto-executed, auto-approved and not yet executed,
    auto-approved and failed on the channel, auto-approved then held back by a kill switch and
    approved by a person, blocked, superseded (one after a person approved it), and one still
    waiting."""
    operator, second = operators
    agent = Agent.objects.get(name="optimizer")
    Policy.objects.filter(action_type="bid_adjustment").update(
        block_above_magnitude=Decimal("2"), more_approvals_above_magnitude=Decimal("0.5")
    )
    account = Account.objects.get(external_id="demo")
    for number in range(1, 16):
        Campaign.objects.create(
            account=account, external_id=f"c{number}", name=f"C {number}", daily_budget=100, bid=2
        )

    def proposed(new_bid: str, number: int) -> Proposal:
        return evaluated(bid_adjustment(new_bid, campaign=f"c{number}"))

    as_proposed = proposed("2.40", 1)
    proposal_approve(proposal_id=as_proposed.pk, reviewer=operator)
    proposal_execute(proposal_id=as_proposed.pk)
    edited = proposed("2.60", 2)
    proposal_approve(
        proposal_id=edited.pk,
        reviewer=operator,
        edited_payload={"campaign": "c2", "new_bid": "2.50"},
    )
    proposal_execute(proposal_id=edited.pk)
    two_people = proposed("3.20", 3)
    proposal_approve(proposal_id=two_people.pk, reviewer=operator)
    proposal_approve(proposal_id=two_people.pk, reviewer=second)
    proposal_execute(proposal_id=two_people.pk)
    rejected = proposed("2.50", 4)
    proposal_reject(proposal_id=rejected.pk, reviewer=operator, reason_code="too_aggressive")
    left = proposed("2.50", 5)
    half_approved = proposed("3.20", 6)
    proposal_approve(proposal_id=half_approved.pk, reviewer=operator)
    Proposal.objects.filter(pk__in=[left.pk, half_approved.pk]).update(
        review_expires_at=timezone.now()
    )
    assert proposals_expire_overdue() == 2
    withdrawn = proposed("2.50", 7)
    proposal_withdraw(agent=agent, proposal_id=withdrawn.pk)
    auto = proposed("2.10", 8)
    proposal_execute(proposal_id=auto.pk)
    blocked = proposed("8.00", 10)
    approved_then_superseded = proposed("2.40", 11)
    proposal_approve(proposal_id=approved_then_superseded.pk, reviewer=operator)
    superseded = proposed("2.40", 12)
    for proposal in (approved_then_superseded, superseded):
        proposal_transition(
            proposal_id=proposal.pk,
            to_status=ProposalStatus.SUPERSEDED,
            actor=Actor.system("executor"),
            reason="its target changed first",
        )
    waiting = proposed("2.40", 13)
    sent_back = proposed("2.10", 14)
    switch = KillSwitch.objects.create(scope="account", account=account, reason="Outage.")
    proposal_execute(proposal_id=sent_back.pk)  # held back for a person
    proposal_approve(proposal_id=sent_back.pk, reviewer=operator)
    proposal_execute(proposal_id=sent_back.pk)
    switch.engaged = False
    switch.save()
    # Approved by policy, no worker runs it here (made after the switch: engaged, its save
    # would have held it back).
    proposed("2.10", 9)
    channel(422)  # the channel refuses what it is sent
    failed = proposed("2.10", 15)
    proposal_execute(proposal_id=failed.pk)
    Account.objects.filter(pk=account.pk).update(execution_endpoint="")

    statuses = dict(Proposal.objects.filter(agent=agent).values_list("payload__campaign", "status"))
    assert statuses == {
        "c1": "executed",
        "c2": "executed",
        "c3": "executed",
        "c4": "rejected",
        "c5": "expired",
        "c6": "expired",
        "c7": "withdrawn",
        "c8": "executed",
        "c9": "approved",
        "c10": "blocked",
        "c11": "superseded",
        "c12": "superseded",
        "c13": "pending_review",
        "c14": "executed",
        "c15": "failed",
    }
    assert blocked.status == ProposalStatus.BLOCKED
    return waiting


def test_the_dashboard_the_track_record_and_the_scorecards_show_the_same_figures(
    history, login, optimizer
):
    client = login("operator")
    agent = Agent.objects.get(name="optimizer")

    dashboard = client.get(reverse("admin:index")).text
    [row] = Tables(dashboard).rows("agent-figures")
    assert row["Agent"] == "optimizer"
    assert shown(row) == SHOWN
    assert "Proposals made in the last 7 days, by agent" in dashboard
    assert "Auto-executed (no person approved), of the 15 proposals made in the last 7 days" in (
        text(dashboard)
    )

    track = client.get(reverse("admin:approvals_proposal_change", args=[history.pk])).text
    [row] = Tables(track).rows("track-record-figures")
    assert shown(row) == SHOWN
    assert "the bid adjustment proposals it made in the last 30 days, as on" in text(track)

    for days in (7, 30):
        page = client.get(reverse("admin:approvals_agent_change", args=[agent.pk]), {"days": days})
        [row] = Tables(page.text).rows("scorecard-figures")
        assert row["Action type"] == "bid adjustment"  # the API: bid_adjustment
        assert shown(row) == SHOWN
        assert f"Scorecard: proposals made in the last {days} days" in page.text

        scorecard = optimizer.get(f"/api/v1/scorecard/?days={days}").json()
        [card] = scorecard["action_types"]
        assert {field: card[field] for field in API_FIELDS} == API_FIELDS
        assert (
            f"Proposals made from since to until (the last {days} days)." in (scorecard["counted"])
        )

    # Every place says what each figure counts, in the same words.
    agent_page = client.get(reverse("admin:approvals_agent_change", args=[agent.pk])).text
    for page in (dashboard, track, agent_page):
        for label, counts in LABELS.items():
            assert f"<strong>{label}</strong>: {counts}" in text(page)
        assert "one that two people approved is one proposal approved" in text(page)
    for field, label in [("decided", "Decided by a person"), ("superseded", "Superseded")]:
        assert scorecard["figures"][field] == f"{label}: {LABELS[label]}."


def test_each_place_counts_the_period_it_names(history, operators, login, optimizer):
    """A rejection of a proposal made ten days ago is in the 30 days of the track record and
    the scorecard, and not in the 7 days of the dashboard and the scorecard."""
    rejected = evaluated(bid_adjustment("3.00", campaign="c1"))  # +25% from 2.40: to a person
    proposal_reject(proposal_id=rejected.pk, reviewer=operators[0], reason_code="wrong_signal")
    Proposal.objects.filter(pk=rejected.pk).update(created_at=timezone.now() - timedelta(days=10))
    month = {
        **SHOWN,
        "Proposals made": "16",
        "Decided by a person": "6",
        "Rejected by a person": "2",
    }
    client = login("operator")
    agent_page = reverse("admin:approvals_agent_change", args=[history.agent_id])

    [week] = Tables(client.get(reverse("admin:index")).text).rows("agent-figures")
    assert shown(week) == SHOWN
    [week] = Tables(client.get(agent_page, {"days": 7}).text).rows("scorecard-figures")
    assert shown(week) == SHOWN
    [card] = optimizer.get("/api/v1/scorecard/?days=7").json()["action_types"]
    assert (card["proposals"], card["rejected"]) == (15, 1)

    track = client.get(reverse("admin:approvals_proposal_change", args=[history.pk])).text
    [row] = Tables(track).rows("track-record-figures")
    assert shown(row) == month
    [row] = Tables(client.get(agent_page, {"days": 30}).text).rows("scorecard-figures")
    assert shown(row) == month
    [card] = optimizer.get("/api/v1/scorecard/?days=30").json()["action_types"]
    assert (card["proposals"], card["decided"], card["rejected"]) == (16, 6, 2)


def test_the_track_record_of_a_busy_agent_says_it_counts_only_its_latest(
    history, login, monkeypatch
):
    monkeypatch.setattr(selectors, "TRACK_RECORD_SPAN", 3)  # as if it had made 1,000 more
    client = login("operator")

    track = client.get(reverse("admin:approvals_proposal_change", args=[history.pk])).text

    assert "the bid adjustment proposals it made in the last 30 days, its latest 3 of them" in (
        text(track)
    )
    assert "its scorecard</a> counts them all" in track
    [row] = Tables(track).rows("track-record-figures")
    # The latest three: executed after a person's approval (c14), approved by the policy
    # engine and not run (c9), and failed after the policy engine approved it (c15).
    assert (row["Proposals made"], row["Waiting for a person"]) == ("3", "0")
    assert (row["Approved by a person"], row["Auto-approved, not executed"]) == ("1", "2")
    assert row["Auto-executed"] == "0"


def test_the_dashboard_rate_says_of_how_many_proposals_in_words_that_agree(demo_world, login):
    """No proposal yet: no rate ("—", not "0%"); one: "of the 1 proposal made", not "of the
    1 proposals"."""
    client = login("operator")

    def auto_rate() -> tuple[str, str]:
        page = text(client.get(reverse("admin:index")).text)
        label = page.split("Auto-executed (no person approved), ")[1].split("</div>")[0]
        value = page.split('id="auto-rate">')[1].split("</div>")[0]
        return label, value

    assert auto_rate() == ("of the 0 proposals made in the last 7 days", "—")
    executed = evaluated(bid_adjustment("2.10"))  # +5%: policy approves it
    proposal_execute(proposal_id=executed.pk)
    assert auto_rate() == ("of the 1 proposal made in the last 7 days", "100%")
