"""The console's dashboard: the queue now, and how the last week went."""

import re
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from approvals.models import Decision, Proposal, ProposalStatus
from approvals.selectors import dashboard
from approvals.services.decisions import proposal_approve, proposal_reject
from audit.actors import Actor, acting_as
from executors.runner import proposal_execute
from ledger.models import Account
from policies.models import KillSwitch
from tests.conftest import bid_adjustment, reallocation
from tests.factories import evaluated


def decided_after(proposal: Proposal, minutes: int) -> None:
    """As if the human decision had come ``minutes`` after evaluation."""
    Proposal.objects.filter(pk=proposal.pk).update(
        evaluated_at=proposal.decided_at - timedelta(minutes=minutes)
    )


def test_dashboard_figures_match_what_happened(demo_world):
    operator = get_user_model().objects.get(username="operator")
    evaluated(bid_adjustment("2.12"))  # approved by policy, not executed yet
    waiting = evaluated(reallocation("400.00"))
    five_hours_ago = timezone.now() - timedelta(hours=5)
    Proposal.objects.filter(pk=waiting.pk).update(
        created_at=five_hours_ago, evaluated_at=five_hours_ago, waiting_since=five_hours_ago
    )
    for amount, minutes, decide in [
        ("150", 10, "approve"),
        ("200", 30, "approve"),
        ("250", 90, "reject"),
    ]:
        proposal = evaluated(reallocation(amount))
        if decide == "approve":
            decided = proposal_approve(proposal_id=proposal.pk, reviewer=operator)
        else:
            decided = proposal_reject(
                proposal_id=proposal.pk, reviewer=operator, reason_code="wrong_signal"
            )
        decided_after(decided, minutes)
    failed = evaluated(bid_adjustment("0.84", campaign="display-retarget"))  # auto, +5%
    Proposal.objects.filter(pk=failed.pk).update(status=ProposalStatus.FAILED)

    figures = dashboard()

    assert figures.queue_depth == 1
    assert timedelta(hours=4, minutes=59) < figures.oldest_waiting < timedelta(hours=5, minutes=1)
    assert figures.decisions == 3
    assert round(figures.decision_median.total_seconds() / 60) == 30
    # Interpolated between 30 and 90 minutes, as PostgreSQL's PERCENTILE_CONT does.
    assert round(figures.decision_p90.total_seconds() / 60) == 78
    # Neither of the two the policy engine approved ran: one waits for the worker, one failed.
    assert (figures.total.proposals, figures.total.auto_executed) == (6, 0)
    assert figures.total.auto_not_executed == 2
    assert figures.failed_executions == 1
    assert list(figures.agents) == ["optimizer"]
    optimizer = figures.agents["optimizer"]
    assert (optimizer.decided, optimizer.approved, optimizer.rejected) == (3, 2, 1)
    assert optimizer.approval_rate == 2 / 3


def test_oldest_waiting_counts_from_when_it_was_sent_back_to_people_not_from_when_made(login):
    """A reallocation made two days ago, approved, and held back by a kill switch as it was
    about to run ten minutes ago: it has waited for people again for ten minutes, in a new
    review round (its deadline and reminders count from then). The dashboard said "Oldest
    waiting 2.0 d", counting from when it was made."""
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    two_days_ago = timezone.now() - timedelta(days=2)
    Proposal.objects.filter(pk=proposal.pk).update(
        created_at=two_days_ago, evaluated_at=two_days_ago
    )
    KillSwitch.objects.create(scope="global", reason="Tracking outage.")
    held = proposal_execute(proposal_id=proposal.pk)
    assert held.status == ProposalStatus.PENDING_REVIEW
    assert held.review_round == 2
    Proposal.objects.filter(pk=proposal.pk).update(
        waiting_since=held.waiting_since - timedelta(minutes=10)
    )

    figures = dashboard()

    assert figures.queue_depth == 1
    assert timedelta(minutes=9) < figures.oldest_waiting < timedelta(minutes=11)
    page = login("operator").get("/admin/").text
    assert re.search(r'id="oldest-waiting">\s*10 min\s*<', page), page.split("oldest-waiting")[1][
        :60
    ]


def test_one_re_assessed_while_it_waits_keeps_waiting_from_when_it_began(login):
    """A waiting reallocation re-assessed as another from its campaign ran is still routed to
    the people it was (its verdict again asks for review): it waits from when it first
    began, in the same review round, not from its re-assessment, as docs/console.md says.
    Only one sent back to people (re-routed, or held back by a kill switch) waits from then."""
    operator = get_user_model().objects.get(username="operator")
    waiting = evaluated(reallocation("220.00"))
    first = evaluated(reallocation("280.00"))
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Proposal.objects.filter(pk=waiting.pk).update(
        created_at=an_hour_ago, evaluated_at=an_hour_ago, waiting_since=an_hour_ago
    )
    proposal_approve(proposal_id=first.pk, reviewer=operator)
    assert proposal_execute(proposal_id=first.pk).status == "executed"

    waiting.refresh_from_db()
    assert waiting.verdict_reasons[0].startswith(f"Re-assessed after #{first.pk}")
    assert (waiting.status, waiting.review_round) == (ProposalStatus.PENDING_REVIEW, 1)
    assert waiting.waiting_since == an_hour_ago
    assert timedelta(minutes=59) < dashboard().oldest_waiting < timedelta(minutes=61)
    page = login("operator").get("/admin/").text
    assert re.search(r'id="oldest-waiting">\s*60 min\s*<', page), page.split("oldest-waiting")[1][
        :60
    ]


def test_oldest_waiting_counts_one_that_waited_before_waiting_since_was_recorded(demo_world):
    """A proposal waiting since before the upgrade that its history could not date
    (``waiting_since`` null, as the model allows) still waits: routed to people three hours
    ago, it is the oldest waiting. The dashboard left it out and said "10 min", from another
    one, as if nothing had waited longer."""
    recent = evaluated(reallocation("280.00"))
    older = evaluated(reallocation("300.00"))
    assert recent.status == older.status == ProposalStatus.PENDING_REVIEW
    now = timezone.now()
    Proposal.objects.filter(pk=recent.pk).update(waiting_since=now - timedelta(minutes=10))
    Proposal.objects.filter(pk=older.pk).update(
        created_at=now - timedelta(hours=3),
        evaluated_at=now - timedelta(hours=3),
        waiting_since=None,
    )

    figures = dashboard()

    assert timedelta(hours=2, minutes=59) < figures.oldest_waiting < timedelta(hours=3, minutes=1)


def test_the_dashboard_gives_each_agent_its_auto_execution_and_approval_rates(login):
    """As the console's rates are everywhere: auto-executed of those made, approved by a
    person of those a person decided."""
    operator = get_user_model().objects.get(username="operator")
    auto = evaluated(bid_adjustment("2.12"))
    proposal_execute(proposal_id=auto.pk)
    for amount, decide in [("150", proposal_approve), ("200", proposal_approve)]:
        decide(proposal_id=evaluated(reallocation(amount)).pk, reviewer=operator)
    proposal_reject(
        proposal_id=evaluated(reallocation("250")).pk, reviewer=operator, reason_code="other"
    )

    page = login("operator").get("/admin/")

    row = re.search(r'<tr data-agent="optimizer">(.*?)</tr>', page.text, re.S).group(1)
    row = re.sub(r' data-label="[^"]*"', "", row)  # each cell's heading, read on a phone
    assert '<td data-figure="auto_execution_rate">25%</td>' in row  # 1 of 4 made
    assert '<td data-figure="approval_rate">67%</td>' in row  # 2 of 3 decided
    assert 'data-figure="approval_rate" title="Approved by a person, of those decided' in page.text


def test_the_admin_home_shows_the_dashboard_to_every_role(login):
    evaluated(reallocation("400.00"))
    for username in ("operator", "auditor", "policy-owner"):
        page = login(username).get("/admin/")
        assert page.status_code == 200
        assert 'id="queue-depth"' in page.text, username
        assert page.context["figures"].queue_depth == 1


def engaged_by(username: str, **fields) -> KillSwitch:
    person = get_user_model().objects.get(username=username)
    with acting_as(Actor.for_user(person)):
        return KillSwitch.objects.create(**fields)


def test_the_dashboard_says_which_kill_switches_are_engaged_by_whom_since_when_and_why(login):
    """While a kill switch held everything on demo for a person, the dashboard's auto-executed
    figures fell without a word."""
    demo = Account.objects.get(external_id="demo")
    switch = engaged_by("policy-owner", scope="account", account=demo, reason="Audit <week>.")
    since = switch.history.get().history_date
    switch.reason = "Audit <week>, extended."  # a reason edited: not engaged again
    switch.save()
    released = engaged_by("policy-owner", scope="global", reason="Over.")
    released.engaged = False
    released.save()

    page = login("operator").get("/admin/")

    note = page.text.split('id="kill-switches-engaged">')[1].split("</div>")[0]
    said = " ".join(re.sub(r"<[^>]+>", " ", note).split())
    assert said.startswith("A kill switch is engaged: nothing it covers runs without a person")
    assert (
        f"On account demo , engaged by policy-owner (person) since "
        f"{since:%Y-%m-%d %H:%M:%S} UTC : Audit &lt;week&gt;, extended." in said
    )
    assert reverse("admin:policies_killswitch_change", args=[switch.pk]) in note
    assert "Over." not in note and f'data-kill-switch="{released.pk}"' not in note


def test_the_dashboard_says_nothing_of_kill_switches_when_none_is_engaged(login):
    switch = engaged_by("policy-owner", scope="global", reason="A test.")
    assert 'id="kill-switches-engaged"' in login("operator").get("/admin/").text
    switch.engaged = False
    switch.save()
    page = login("operator").get("/admin/")
    assert 'id="queue-depth"' in page.text
    assert 'id="kill-switches-engaged"' not in page.text


def test_a_kill_switch_is_linked_only_for_those_who_may_view_it(login, client):
    switch = engaged_by("policy-owner", scope="channel", channel="google_ads", reason="Outage.")
    reader = get_user_model().objects.create_user("queue-reader", password="pw", is_staff=True)
    reader.user_permissions.add(Permission.objects.get(codename="view_proposal"))
    client.force_login(reader)

    page = client.get("/admin/")

    note = page.text.split('id="kill-switches-engaged">')[1].split("</div>")[0]
    assert "On channel Google Ads, engaged by policy-owner (person)" in note
    assert reverse("admin:policies_killswitch_change", args=[switch.pk]) not in note


def test_the_dashboard_rounds_a_half_percent_up_as_a_person_does(login):
    """1 of 8 auto-executed is 12.5%: the dashboard read "12%" (a float's formatting rounds
    a half to even), where a person (and a spreadsheet) reads 13%."""
    auto = evaluated(bid_adjustment("2.12"))
    assert proposal_execute(proposal_id=auto.pk).status == "executed"
    for amount in ("101", "102", "103", "104", "105", "106", "107"):
        assert evaluated(reallocation(amount)).status == "pending_review"

    page = login("operator").get("/admin/")

    assert re.search(r'<div class="value" id="auto-rate">(.*?)</div>', page.text).group(1) == "13%"
    row = re.search(r'<tr data-agent="optimizer">(.*?)</tr>', page.text, re.S).group(1)
    row = re.sub(r' data-label="[^"]*"', "", row)
    assert '<td data-figure="auto_execution_rate">13%</td>' in row  # 1 of 8 made


def test_time_to_decision_runs_to_the_first_decision_not_an_approval_again_after_a_hold(login):
    """A reallocation routed to a person, approved 151 s later, held back by a kill switch
    before it ran, approved again once the switch was released 564 s after it was routed,
    and executed: people decided it 151 s after it was routed. The dashboard counted 564 s
    (to the approval again), and so did each route's time and the agent's scorecard."""
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    switch = KillSwitch.objects.create(scope="global", reason="Tracking outage.")
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.PENDING_REVIEW
    switch.engaged = False
    switch.save()
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED
    proposal.refresh_from_db()
    routed = proposal.decided_at - timedelta(seconds=564)
    Proposal.objects.filter(pk=proposal.pk).update(evaluated_at=routed)
    first = proposal.decisions.get(review_round=1)
    Decision.objects.filter(pk=first.pk).update(created_at=routed + timedelta(seconds=151))

    figures = dashboard()

    assert figures.decisions == 1
    assert figures.decision_median == figures.decision_p90 == timedelta(seconds=151)
    page = login("operator").get("/admin/")
    route = page.text.split('id="route-decision-times"')[1].split("</tr>", 2)[1]
    assert re.findall(r'class="(?:median|p90)"[^>]*>(.*?)</td>', route) == ["2.5 min", "2.5 min"]
    agent = proposal.agent
    scorecard = login("operator").get(reverse("admin:approvals_agent_change", args=[agent.pk]))
    row = re.findall(
        r'<tr data-action-type="budget_reallocation">(.*?)</tr>',
        re.sub(r">\s+<", "><", scorecard.text),
    )[0]
    assert "|2.5 min|" in re.sub(r"(<[^>]+>)+", "|", row)


def test_the_queue_says_a_proposals_age_as_the_dashboard_says_the_oldest_waiting(login):
    """Made and sent to people 1.8 minutes ago: the dashboard said "1.8 min" and the queue's
    Age "1 min", rounded down to whole minutes, as if the two read different proposals."""
    proposal = evaluated(reallocation("280.00"))
    # 106 s: "1.8 min" until 111 s, a margin for a loaded machine between this line and the
    # pages' reading of the clock.
    made = timezone.now() - timedelta(seconds=106)
    Proposal.objects.filter(pk=proposal.pk).update(
        created_at=made, evaluated_at=made, waiting_since=made
    )
    operator = login("operator")

    dashboard_page = operator.get("/admin/").text
    queue = operator.get(reverse("admin:approvals_proposal_changelist")).text

    assert re.search(r'id="oldest-waiting">\s*1.8 min\s*<', dashboard_page)
    row = queue.split(f"/admin/approvals/proposal/{proposal.pk}/change/", 1)[1].split("</tr>")[0]
    assert re.search(r'class="field-age"[^>]*>1.8 min</td>', row), row[-200:]
