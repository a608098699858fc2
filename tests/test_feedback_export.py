"""An agent's record exported for prompt tuning: one JSON line per proposal people decided."""

import io
import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal
from approvals.services.decisions import proposal_approve, proposal_reject
from approvals.services.expiry import proposals_expire_overdue
from approvals.services.proposals import proposal_withdraw_for_agent
from executors.runner import proposal_execute
from feedback.models import Feedback, Outcome
from feedback.services import outcome_report_by_user
from tests.conftest import bid_adjustment, creative_batch, reallocation
from tests.factories import evaluated

EXPORT = reverse("feedback-export")


@pytest.fixture
def decided(demo_world):
    """An edited and executed creative batch with an outcome, a rejection, a decision long
    ago, and another agent's proposal."""
    operator = get_user_model().objects.get(username="operator")
    creative = evaluated(creative_batch())
    edited = json.loads(json.dumps(creative.payload))
    edited["creatives"][0]["body"] = "Results most customers see in a week."
    proposal_approve(proposal_id=creative.pk, reviewer=operator, edited_payload=edited)
    proposal_execute(proposal_id=creative.pk)
    outcome_report_by_user(
        proposal_id=creative.pk, user=operator, effect="improved", note="CTR up a third."
    )
    rejected = evaluated(reallocation("300.00"))
    proposal_reject(
        proposal_id=rejected.pk, reviewer=operator, reason_code="too_aggressive", note="Halve it."
    )
    long_ago = evaluated(reallocation("210.00"))
    proposal_reject(proposal_id=long_ago.pk, reviewer=operator, reason_code="other")
    Feedback.objects.filter(proposal=long_ago).update(
        created_at=timezone.now() - timedelta(days=60)
    )
    others = evaluated(reallocation("220.00"), agent="copywriter")
    proposal_reject(proposal_id=others.pk, reviewer=operator, reason_code="other")
    return creative, rejected


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def page_and_optimizers_month(client) -> tuple[str, object]:
    """The export's page as ``client`` opens it, and the file of optimizer's last 30 days."""
    today = timezone.localdate()
    page = client.get(EXPORT).text
    period = {"since": today - timedelta(days=30), "until": today + timedelta(1)}
    return page, client.get(EXPORT, {"agent": "optimizer", **period})


def test_an_operators_edit_to_a_creative_is_in_the_export_as_a_diff(login, decided):
    creative, rejected = decided
    today = timezone.localdate()
    response = login("auditor").get(
        EXPORT,
        {"agent": "optimizer", "since": today - timedelta(days=30), "until": today + timedelta(1)},
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    records = lines(b"".join(response.streaming_content).decode())
    assert [r["proposal_id"] for r in records] == [creative.pk, rejected.pk]
    edited, refused = records
    assert edited["label"] == "approved_with_edits"
    assert edited["proposed"]["payload"]["creatives"][0]["body"] == "Guaranteed results in a week."
    assert edited["approved_payload"]["creatives"][0]["body"] == (
        "Results most customers see in a week."
    )
    assert edited["edits"]["creatives[0].body"]["words"] == [
        {"from": "Guaranteed results", "to": "Results most customers see"}
    ]
    assert edited["status"] == "executed"
    assert [(o["effect"], o["note"]) for o in edited["outcomes"]] == [
        ("improved", "CTR up a third.")
    ]
    assert edited["verdict"]["outcome"] == "review"
    assert (refused["label"], refused["approved_payload"], refused["edits"]) == (
        "rejected",
        None,
        {},
    )
    assert [(d["outcome"], d["reason_code"], d["note"]) for d in refused["decisions"]] == [
        ("reject", "too_aggressive", "Halve it.")
    ]


def test_the_feedback_export_is_named_by_the_days_it_covers(login, demo_world):
    """Named "feedback-optimizer-2026-12-06-2026-12-07.jsonl" for one day: by its days."""
    today = timezone.localdate()
    client = login("auditor")
    period = {"agent": "optimizer", "since": today, "until": today + timedelta(1)}
    assert client.get(EXPORT, period)["Content-Disposition"] == (
        f'attachment; filename="feedback-optimizer-{today:%Y-%m-%d}.jsonl"'
    )
    period["since"] = today - timedelta(days=6)
    assert client.get(EXPORT, period)["Content-Disposition"] == (
        f'attachment; filename="feedback-optimizer-{period["since"]:%Y-%m-%d}-to-'
        f'{today:%Y-%m-%d}.jsonl"'
    )


def test_an_edited_move_is_exported_with_the_routing_that_sent_it_to_a_person(login, demo_world):
    """The line pairs what the agent proposed with how policy routed that: an edit that
    shrinks a 28% reallocation to 5% is re-assessed "within the ceiling", which is not why a
    person saw it."""
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation("280.00"))
    routed, risk = list(proposal.verdict_reasons), proposal.risk
    edited = {**proposal.payload, "amount": "50.00"}
    proposal_approve(proposal_id=proposal.pk, reviewer=operator, edited_payload=edited)
    proposal.refresh_from_db()
    assert proposal.verdict_reasons != routed  # re-assessed as edited
    today = timezone.localdate()

    response = login("auditor").get(
        EXPORT,
        {"agent": "optimizer", "since": today - timedelta(days=1), "until": today + timedelta(1)},
    )

    (line,) = lines(b"".join(response.streaming_content).decode())
    assert line["proposed"]["payload"]["amount"] == "280.00"
    assert line["verdict"] == {
        "outcome": "review",
        "policy": "Budget reallocations",
        "reasons": routed,
        "risk": risk,
    }
    assert any("28.0%" in reason for reason in line["verdict"]["reasons"])
    assert (line["label"], line["approved_payload"]["amount"]) == ("approved_with_edits", "50.00")


def test_an_edit_stamped_before_its_routing_by_a_slower_clock_is_not_exported_as_the_routing(
    login, demo_world
):
    """The routing exported is the one the console reads as "as proposed": the first written
    with a verdict, whatever time a host's clock stamped on the records. An edit made on a
    web host whose clock runs behind the worker's that routed the proposal carries an earlier
    ``history_date``; the export ordered by it and paired the agent's 28% move with the
    edit's "within the ceiling"."""
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation("280.00"))
    routed = list(proposal.verdict_reasons)
    routed_at = proposal.history.get(status="pending_review", history_type="~").history_date
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=operator,
        edited_payload={**proposal.payload, "amount": "50.00"},
    )
    proposal.history.filter(history_date__gt=routed_at).update(
        history_date=routed_at - timedelta(seconds=2)
    )
    today = timezone.localdate()

    response = login("auditor").get(
        EXPORT,
        {"agent": "optimizer", "since": today - timedelta(days=1), "until": today + timedelta(1)},
    )
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))

    (line,) = lines(b"".join(response.streaming_content).decode())
    assert line["verdict"]["reasons"] == routed
    assert any("28.0%" in reason for reason in routed)
    assert "5.0% as edited, re-assessed then by the policies in force" in page.content.decode()
    assert "; 28.0% / 10.0% as proposed" in page.content.decode()


@pytest.mark.parametrize("breaks", ["\u2028", "\u2029", "\x85"])
def test_a_line_break_other_than_a_newline_in_what_was_said_keeps_one_record_a_line(
    login, demo_world, breaks
):
    """A rationale or a note with a Unicode line or paragraph separator (or NEL) is written
    escaped, as JSON allows: a reader splitting the file into lines as Python's
    ``splitlines`` does (or an editor) got a record cut in two, neither half JSON."""
    operator = get_user_model().objects.get(username="operator")
    said = f"Generic search converts better.{breaks}Brand search is saturated."
    proposal = evaluated(reallocation("300.00", rationale=said))
    proposal_reject(
        proposal_id=proposal.pk, reviewer=operator, reason_code="other", note=f"No.{breaks}Wait."
    )
    today = timezone.localdate()

    response = login("auditor").get(
        EXPORT,
        {"agent": "optimizer", "since": today - timedelta(days=1), "until": today + timedelta(1)},
    )

    (line,) = lines(b"".join(response.streaming_content).decode())
    assert line["proposed"]["rationale"] == said
    assert line["decisions"][0]["note"] == f"No.{breaks}Wait."


def test_the_export_page_says_a_proposal_nobody_decided_is_in_it_and_it_is(login, demo_world):
    """A proposal superseded before anyone decided it was fed back to its agent: it is in
    the export, with no label, and the page says such proposals are."""
    first = evaluated(reallocation("300.00"))  # 30% of brand-search's budget: to a person
    operator = get_user_model().objects.get(username="operator")
    budget_set = evaluated(
        reallocation()
        | {"action_type": "budget_change",
           "payload": {"campaign": "brand-search", "new_daily_budget": "1500.00"}}
    )  # fmt: skip
    proposal_approve(proposal_id=first.pk, reviewer=operator)
    proposal_execute(proposal_id=first.pk)  # brand-search's budget moves: budget_set ends
    budget_set.refresh_from_db()
    assert budget_set.status == "superseded"
    page, response = page_and_optimizers_month(login("auditor"))

    covers = " ".join(page.split('id="export-covers">')[1].split("</p>")[0].split())
    assert covers.startswith(
        "One JSON line for each of the agent's proposals it was given feedback on in the "
        "period: those people decided on or withdrew for it, that expired, were superseded or "
        "failed to execute"
    )
    records = {r["proposal_id"]: r for r in lines(b"".join(response.streaming_content).decode())}
    assert (records[budget_set.pk]["label"], records[budget_set.pk]["status"]) == (
        None,
        "superseded",
    )
    assert records[first.pk]["label"] == "approved"


def test_the_command_writes_the_same_lines(login, decided):
    today = timezone.localdate()
    out = io.StringIO()
    call_command("export_feedback", "optimizer", "--since", str(today - timedelta(30)), stdout=out)
    response = login("operator").get(
        EXPORT,
        {"agent": "optimizer", "since": today - timedelta(days=30), "until": today + timedelta(1)},
    )
    assert lines(out.getvalue()) == lines(b"".join(response.streaming_content).decode())
    with pytest.raises(CommandError, match="No such agent: nobody"):
        call_command("export_feedback", "nobody", "--since", str(today))


@pytest.mark.parametrize(
    "query",
    [
        {"agent": "nobody", "since": "2026-01-01", "until": "2026-02-01"},
        {"agent": "optimizer", "since": "2026-13-01", "until": "2026-02-01"},
        {"agent": "optimizer", "since": "2026-02-01", "until": "2026-01-01"},
    ],
)
def test_a_bad_request_shows_the_form_again(login, query):
    response = login("operator").get(EXPORT, query)
    assert response.status_code == 200
    assert 'id="training-export-form"' in response.text
    assert "errorlist" in response.text


def test_each_line_holds_the_feedback_its_agent_was_given(login, demo_world):
    """What the agent was told is in its line, word for word as its feed gave it: a
    reviewer's note on withdrawing it, the value a superseded proposal saw and the value now;
    neither is a decision, so nothing else in the line says them."""

    operator = get_user_model().objects.get(username="operator")
    withdrawn = evaluated(reallocation("300.00"))
    proposal_withdraw_for_agent(
        proposal_id=withdrawn.pk, reviewer=operator, note="Brand search is being reworked."
    )
    first = evaluated(reallocation("300.00"))
    budget_set = evaluated(
        reallocation()
        | {"action_type": "budget_change",
           "payload": {"campaign": "brand-search", "new_daily_budget": "1500.00"}}
    )  # fmt: skip
    proposal_approve(proposal_id=first.pk, reviewer=operator)
    proposal_execute(proposal_id=first.pk)  # brand-search's budget moves: budget_set ends
    today = timezone.localdate()

    response = login("auditor").get(
        EXPORT,
        {"agent": "optimizer", "since": today - timedelta(days=30), "until": today + timedelta(1)},
    )

    records = {r["proposal_id"]: r for r in lines(b"".join(response.streaming_content).decode())}
    fed = {
        pk: [
            {**item, "created_at": item["created_at"].isoformat().replace("+00:00", "Z")}
            for item in Feedback.objects.filter(proposal_id=pk)
            .order_by("id")
            .values("kind", "reason_code", "note", "diff", "created_at")
        ]
        for pk in (withdrawn.pk, budget_set.pk)
    }
    assert records[withdrawn.pk]["feedback"] == fed[withdrawn.pk]
    assert [(f["kind"], f["note"]) for f in records[withdrawn.pk]["feedback"]] == [
        ("withdrawn", "Brand search is being reworked.")
    ]
    assert records[budget_set.pk]["feedback"] == fed[budget_set.pk]
    [superseded] = records[budget_set.pk]["feedback"]
    assert superseded["kind"] == "superseded"
    assert superseded["diff"] == {"brand-search.daily_budget": {"saw": "1000.00", "now": "700.00"}}


def test_a_proposal_whose_outcome_only_its_agent_reported_is_in_the_export(
    login, demo_world, optimizer
):
    """A 6% bid move ran with nobody looking; the agent measured that it hurt. The page says
    proposals whose outcome was reported are in the export, and this one is, with the figures
    and no label; one reported on outside the period is not."""
    ran = evaluated(bid_adjustment("2.12"))
    assert ran.status == "approved"
    proposal_execute(proposal_id=ran.pk)
    measured = {"metrics": {"cpa_7d": 48.1}, "effect": "hurt", "note": "CPA up 20%."}
    reported = optimizer.post(f"/api/v1/proposals/{ran.pk}/outcome/", measured, format="json")
    assert reported.status_code == 201, reported.content
    earlier = evaluated(bid_adjustment("2.20", campaign="generic-search"))
    proposal_execute(proposal_id=earlier.pk)
    optimizer.post(f"/api/v1/proposals/{earlier.pk}/outcome/", measured, format="json")
    Outcome.objects.filter(proposal=earlier).update(created_at=timezone.now() - timedelta(days=60))
    page, response = page_and_optimizers_month(login("auditor"))

    covers = " ".join(page.split('id="export-covers">')[1].split("</p>")[0].split())
    assert "or whose outcome was reported, by a person or by the agent" in covers
    records = {r["proposal_id"]: r for r in lines(b"".join(response.streaming_content).decode())}
    assert list(records) == [ran.pk]
    line = records[ran.pk]
    assert (line["label"], line["status"], line["feedback"]) == (None, "executed", [])
    assert [(o["effect"], o["metrics"], o["reported_by"]) for o in line["outcomes"]] == [
        ("hurt", {"cpa_7d": 48.1}, "agent:optimizer")
    ]


def test_the_page_says_what_label_an_expired_and_a_superseded_proposal_get_and_they_get_it(
    login, demo_world
):
    """Nobody decided either: one's review window closed first, the other's target changed
    first. The file labels the first "expired" and the second null, and the page says so,
    not that "nothing" labels every proposal nobody decided."""
    operator = get_user_model().objects.get(username="operator")
    first = evaluated(reallocation("300.00"))
    superseded = evaluated(
        reallocation()
        | {"action_type": "budget_change",
           "payload": {"campaign": "brand-search", "new_daily_budget": "1500.00"}}
    )  # fmt: skip
    expired = evaluated(bid_adjustment("2.60"))
    Proposal.objects.filter(pk=expired.pk).update(review_expires_at=timezone.now())
    assert proposals_expire_overdue() == 1
    proposal_approve(proposal_id=first.pk, reviewer=operator)
    proposal_execute(proposal_id=first.pk)  # brand-search's budget moves: superseded ends
    page, response = page_and_optimizers_month(login("auditor"))

    covers = " ".join(re.sub(r"<[^>]+>", "", page.split('id="export-covers">')[1]).split())
    covers = covers.split("): what the agent proposed")[0]
    assert covers.endswith(
        "(its label says how its review ended: what people decided, rejected, "
        "approved_with_edits or approved; else expired where its review window closed before "
        "they decided; else nothing (null), for one superseded or withdrawn for the agent "
        "before anyone decided, or run with no review"
    )
    records = {r["proposal_id"]: r for r in lines(b"".join(response.streaming_content).decode())}
    assert {
        records[p.pk]["status"]: (records[p.pk]["label"], records[p.pk]["decisions"])
        for p in (expired, superseded)
    } == {"expired": ("expired", []), "superseded": (None, [])}
