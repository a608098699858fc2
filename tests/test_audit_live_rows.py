"""Tamper evidence of what the console shows: verification compares each live row of every
history-tracked model with the last record of its history, and names a row changed past the
history (raw SQL, with the platform stopped) or slipped in with no history at all."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext

from approvals.models import Decision, Proposal
from approvals.services.decisions import proposal_approve, proposal_reject
from audit.chain import chain_seal, chain_verification_ask, chain_verification_run, chain_verify
from executors.runner import proposal_execute
from ledger.models import Campaign
from tests.conftest import reallocation
from tests.factories import evaluated
from tests.test_audit_chain import CHAIN_PAGE, history_page


@pytest.fixture
def rejected(demo_world) -> Decision:
    """A proposal rejected as contradicting the strategy, beside the reference one approved
    and executed; everything sealed."""
    operator = get_user_model().objects.get(username="operator")
    approved = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=approved.pk, reviewer=operator)
    proposal_execute(proposal_id=approved.pk)
    proposal = evaluated(reallocation("290.00"))
    proposal_reject(
        proposal_id=proposal.pk,
        reviewer=operator,
        reason_code="contradicts_strategy",
        note="Brand week: no moves.",
    )
    chain_seal()
    assert chain_verify().holds
    return Decision.objects.get(proposal=proposal)


def raw(sql: str, *params) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def verified(username: str = "auditor"):
    user = get_user_model().objects.get(username=username)
    return chain_verification_run(verification_id=chain_verification_ask(user=user).pk)


def test_live_rows_changed_past_the_history_are_named_with_both_values(rejected, login):
    """The walk's forgery: a decision's reason and note, and a proposal's rationale, changed
    in the database directly. The chain page and each history page name the row, every field
    changed, what it is and what was recorded; the proposal's page names its decision's."""
    decision, proposal = rejected, rejected.proposal
    recorded = Decision.history.filter(id=decision.pk).latest().history_id
    raw(
        "UPDATE approvals_decision SET reason_code = %s, note = %s WHERE id = %s",
        "too_aggressive",
        "Far too aggressive for the quarter.",
        decision.pk,
    )
    raw(
        "UPDATE approvals_proposal SET rationale = %s WHERE id = %s",
        "Forged rationale.",
        proposal.pk,
    )
    found = verified()
    assert found.holds is False
    said_decision = (
        f"the live row of decision #{decision.pk} differs from its last recorded version "
        f"(record {recorded}): reason code is “too_aggressive”, recorded “contradicts_strategy”; "
        "note is “Far too aggressive for the quarter.”, recorded “Brand week: no moves.”"
    )
    said_proposal = (
        f"the live row of proposal #{proposal.pk} differs from its last recorded version"
    )
    assert said_decision in found.found
    # Both are live rows: neither is a break of the chain, nor after the other in it.
    assert found.found.endswith(
        " In all it found 2 live rows not as their history last recorded them, each marked "
        "on the history page of its record."
    )
    assert "break" not in found.found.split(" In all ")[1]
    when = f"{found.finished_at:%Y-%m-%d %H:%M:%S} UTC"

    auditor = login("auditor")
    chain_page = history_page(auditor, CHAIN_PAGE)
    assert said_decision[0].upper() + said_decision[1:] + " (its history)." in chain_page
    assert said_proposal[0].upper() + said_proposal[1:] in chain_page
    assert f"rationale is “Forged rationale.”, recorded “{proposal.rationale}”" in chain_page

    page = history_page(auditor, f"/admin/approvals/decision/{decision.pk}/history/")
    assert (
        said_decision[0].upper() + said_decision[1:] + ". What the console shows of it is not "
        f"what was recorded, as the last verification of the audit chain found ({when})."
    ) in page
    page = history_page(auditor, f"/admin/approvals/proposal/{proposal.pk}/history/")
    assert f"{said_proposal[0].upper()}{said_proposal[1:]} (record " in page
    assert f"rationale is “Forged rationale.”, recorded “{proposal.rationale}”" in page

    # Put back as recorded, the next verification finds nothing, and the pages say nothing.
    raw(
        "UPDATE approvals_decision SET reason_code = %s, note = %s WHERE id = %s",
        decision.reason_code,
        decision.note,
        decision.pk,
    )
    raw(
        "UPDATE approvals_proposal SET rationale = %s WHERE id = %s",
        proposal.rationale,
        proposal.pk,
    )
    assert verified().holds
    page = history_page(auditor, f"/admin/approvals/decision/{decision.pk}/history/")
    assert "live row" not in page


def test_the_chain_page_counts_a_live_row_apart_from_the_records_the_chain_broke_at(
    rejected, login
):
    """A proposal's history record forged (its link broken) and a decision's live row changed
    (its history intact). The chain page said "It found 1 other break after it": the other
    was the decision's live row, which is in no order of the chain's and breaks nothing of
    it. It counts them as the audit export's page does."""
    record = Proposal.history.filter(id=rejected.proposal_id).latest("history_id")
    raw(
        "UPDATE approvals_historicalproposal SET rationale = %s WHERE history_id = %s",
        "Forged in the history.",
        record.history_id,
    )
    raw("UPDATE approvals_decision SET note = %s WHERE id = %s", "Forged.", rejected.pk)
    found = verified()
    assert found.holds is False

    page = history_page(login("auditor"), CHAIN_PAGE)
    assert "other break" not in page
    assert (
        f"(in the history of proposal #{rejected.proposal_id}) was altered after it was sealed. "
        "In all it found the chain broken at 1 record, and 1 live row not as its history last "
        "recorded it, each marked on the history page of its record."
    ) in page
    export = history_page(login("auditor"), "/admin/audit/export/")
    assert (
        "found the chain broken at 1 record, and 1 live row not as its history last recorded it"
    ) in export


def test_a_decision_s_live_row_is_named_on_its_proposal_s_history_page(rejected, login):
    raw("UPDATE approvals_decision SET note = %s WHERE id = %s", "Forged.", rejected.pk)
    assert verified().holds is False
    page = history_page(
        login("auditor"), f"/admin/approvals/proposal/{rejected.proposal_id}/history/"
    )
    assert (
        f"The live row of decision #{rejected.pk} differs from its last recorded version"
    ) in page
    assert "note is “Forged.”, recorded “Brand week: no moves.” (its history; it belongs to" in page


def test_a_decision_s_live_row_altered_is_said_on_its_proposal_s_page(rejected, login):
    """An auditor read a rejection's note forged in the database on its proposal's page, in
    its Decisions table, with no word of it: only its history page said what verification
    had found."""
    raw("UPDATE approvals_decision SET note = %s WHERE id = %s", "Forged.", rejected.pk)
    assert verified().holds is False
    page = history_page(
        login("auditor"), f"/admin/approvals/proposal/{rejected.proposal_id}/change/"
    )
    assert "Forged." in page  # the table shows the live row, as it is
    assert (
        f"The live row of decision #{rejected.pk} differs from its last recorded version"
    ) in page
    assert (
        "recorded “Brand week: no moves.” (decision "
        f"#{rejected.pk} belongs to this one): what this page shows of it is not what was "
        "recorded. As the last verification of the audit chain found"
    ) in page


def test_a_routing_policy_s_version_altered_is_said_beside_the_terms_it_shows(rejected, login):
    """A proposal's page reads its routing policy's terms from that version's record: altered
    in the database (its ceiling 10% made 35%), the page said "runs without a person up to
    35.0%" beside a reason saying 10.0%, with no word that verification had found the record
    altered."""
    proposal = rejected.proposal
    raw(
        "UPDATE policies_historicalpolicy SET auto_execute_max_magnitude = %s "
        "WHERE history_id = %s",
        "0.350000",
        proposal.verdict_policy_version,
    )
    auditor = login("auditor")
    url = f"/admin/approvals/proposal/{proposal.pk}/change/"
    assert "was altered after it was sealed" not in history_page(auditor, url)
    assert verified().holds is False

    page = history_page(auditor, url)

    assert "runs without a person up to 35.0%" in page
    assert (
        "The record of version 1 of policy “Budget reallocations”, which these terms are read "
        "from, was altered after it was sealed, as the last verification of the audit chain "
        "found"
    ) in page


def test_a_proposal_s_page_reads_the_last_verification_once_for_all_it_says_of_it(rejected, login):
    """Its page says what the last verification found in two places (its decision's row
    above, its routing policy's version beside the terms): it read which verification was
    the last twice, and could have said each of another."""
    proposal = rejected.proposal
    raw("UPDATE approvals_decision SET note = %s WHERE id = %s", "Forged.", rejected.pk)
    raw(
        "UPDATE policies_historicalpolicy SET auto_execute_max_magnitude = %s "
        "WHERE history_id = %s",
        "0.350000",
        proposal.verdict_policy_version,
    )
    found = verified()
    assert found.holds is False
    when = f"{found.finished_at:%Y-%m-%d %H:%M:%S} UTC"
    auditor = login("auditor")

    with CaptureQueriesContext(connection) as read:
        page = history_page(auditor, f"/admin/approvals/proposal/{proposal.pk}/change/")

    assert (
        f"(decision #{rejected.pk} belongs to this one): what this page shows of it is not what "
        f"was recorded. As the last verification of the audit chain found ({when})"
    ) in page
    assert (
        "The record of version 1 of policy “Budget reallocations”, which these terms are read "
        f"from, was altered after it was sealed, as the last verification of the audit chain "
        f"found ({when})"
    ) in page
    asked = [q for q in read.captured_queries if 'FROM "audit_chainverification"' in q["sql"]]
    assert len(asked) == 1


def test_a_live_row_slipped_in_with_no_history_is_named(rejected, login):
    """A campaign inserted without the history ``save()`` writes (``bulk_create`` sends no
    signal, as raw SQL would not): verification names it, and its history page says so."""
    copied = Campaign.objects.first()
    copied.pk, copied.external_id, copied.name = None, "slipped-in", "Slipped in"
    (slipped,) = Campaign.objects.bulk_create([copied])
    assert not Campaign.history.filter(id=slipped.pk).exists()
    with pytest.raises(CommandError) as refused:
        call_command("verify_audit_chain", stdout=io.StringIO())
    said = (
        f"the live row of campaign #{slipped.pk} has no recorded version: it was written past "
        "the history"
    )
    assert said in str(refused.value)
    page = history_page(login("auditor"), f"/admin/ledger/campaign/{slipped.pk}/history/")
    assert said[0].upper() + said[1:] in page


def test_a_busy_platform_s_live_rows_are_what_its_history_recorded(rejected):
    """Approvals, rejections, executions, edits through services and models: nothing
    changed past the history, so nothing named (the whole platform's busy day is walked by
    hand, see the report)."""
    proposal = Proposal.objects.get(pk=rejected.proposal_id)
    proposal.rationale = "Edited the ordinary way."
    proposal.save()
    found = chain_verify()
    assert found.holds, found.breaks


@pytest.mark.django_db(transaction=True)
def test_values_an_earlier_migration_filled_without_a_record_are_recorded_on_upgrade(demo_world):
    """A platform upgraded through migrations that filled live columns without a history
    record (a decision's summary, a proposal's approvals this round): verification would
    name those rows. Migration ``approvals.0029`` records them, saying where the values came
    from, and verification finds the platform as recorded; a row forged otherwise still
    shows."""
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    decision = Decision.objects.get(proposal=proposal)
    forged = evaluated(reallocation("150.00"))
    executor = MigrationExecutor(connection)
    executor.migrate([("approvals", "0028_execution_unanswered")])
    # As 0015 and 0018 did: columns filled from other data, with no record.
    raw("UPDATE approvals_decision SET summary = %s WHERE id = %s", "as it stood", decision.pk)
    raw("UPDATE approvals_proposal SET approvals_this_round = 2 WHERE id = %s", proposal.pk)
    raw("UPDATE approvals_proposal SET rationale = %s WHERE id = %s", "Forged.", forged.pk)
    # Not verified here: verification reads the models as they are now, with the columns
    # later migrations add (a proposal's superseded_by, 0031), which 0028's schema lacks.
    # Without 0029's records, the two rows filled above would be named beside the forged one.

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # every app at its latest again
    (left,) = chain_verify().breaks
    assert left.object_id == forged.pk
    assert "rationale is “Forged.”" in left.what
    record = Proposal.history.filter(id=proposal.pk).latest()
    assert (record.approvals_this_round, record.history_actor) == (2, "migration")
    assert record.history_change_reason.startswith("approvals this round and when it was")
    assert Decision.history.filter(id=decision.pk).latest().summary == "as it stood"


@pytest.mark.django_db(transaction=True)
def test_when_waiting_proposals_began_to_wait_is_recorded_as_filled_in_on_upgrade(demo_world):
    """Migration ``approvals.0037`` fills in when each waiting proposal began to wait, from its
    history: the value is recorded, so verification finds the platform as recorded, and the
    proposal's history says where it came from."""
    waiting = evaluated(reallocation("280.00"))
    assert waiting.status == "pending_review"
    began = Proposal.history.filter(id=waiting.pk, status="pending_review").earliest().history_date
    # As before 0037: neither the row nor its history holds the value; all of it sealed.
    raw("UPDATE approvals_proposal SET waiting_since = NULL")
    raw("UPDATE approvals_historicalproposal SET waiting_since = NULL")
    chain_seal()
    executor = MigrationExecutor(connection)
    executor.migrate([("approvals", "0036_decision_created_index")])

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # every app at its latest again
    assert chain_verify().holds, chain_verify().breaks
    record = Proposal.history.filter(id=waiting.pk).latest()
    assert (record.waiting_since, record.history_actor) == (began, "migration")
    assert record.history_change_reason == (
        "when it began waiting for people, read from its history on upgrade"
    )


def test_a_json_value_forged_to_one_python_holds_equal_is_named(rejected):
    """Supporting data recorded ``{"weekend": true, "days": 1}`` forged to ``{"weekend": 1,
    "days": true}``: Python holds True equal to 1, and the comparison named nothing, though
    the console shows the forged values."""
    proposal = rejected.proposal
    proposal.supporting_data = {"weekend": True, "days": 1}
    proposal.save()
    chain_seal()
    assert chain_verify().holds
    raw(
        "UPDATE approvals_proposal SET supporting_data = %s WHERE id = %s",
        '{"weekend": 1, "days": true}',
        proposal.pk,
    )
    (found,) = chain_verify().breaks
    assert found.what.endswith(
        'supporting data is “{"days": true, "weekend": 1}”, recorded “{"days": 1, "weekend": true}”'
    )
