"""Tamper evidence: every historical record is sealed into a hash chain, and verification
names the first record altered, deleted or slipped in after sealing."""

import html
import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from approvals.models import Decision, Proposal
from approvals.services.decisions import proposal_approve
from audit import chain
from audit.chain import (
    chain_seal,
    chain_verification_ask,
    chain_verification_run,
    chain_verify,
)
from audit.models import ChainLink, ChainVerification
from executors.runner import proposal_execute
from ledger.models import Account
from tests.conftest import reallocation, wait_until
from tests.factories import evaluated

CHAIN_PAGE = "/admin/audit/chain/"


@pytest.fixture
def sealed(demo_world) -> Proposal:
    """The reference proposal, approved and executed, and everything so far sealed."""
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    proposal_execute(proposal_id=proposal.pk)
    assert chain_seal() > 0
    return proposal


def verify(*args: str) -> str:
    out = io.StringIO()
    call_command("verify_audit_chain", *args, stdout=out)
    return out.getvalue()


def test_a_chain_that_holds_says_how_many_live_rows_it_compared_with_their_history(sealed):
    """It said "The audit chain holds: 88 records sealed, head …; 0 written since the last
    sealing." and nothing of the live rows it had compared with their history, which it
    checks as well (a row changed past the history would have been named)."""
    tracked = chain.chained_models()
    rows = sum(model.instance_type._base_manager.count() for model in tracked)

    said = verify()

    assert said.rstrip().endswith(
        f"; {rows} live rows of {len(tracked)} kinds of record are as their history last "
        "recorded them."
    )


def test_the_chain_holds_over_everything_written(sealed):
    said = verify()
    assert said.startswith(f"The audit chain holds: {ChainLink.objects.count()} records sealed")
    assert "0 written since the last sealing" in said
    assert chain_seal() == 0  # nothing new to seal

    sealed.refresh_from_db()
    sealed.rationale = "Edited in the admin, properly: on the record."
    sealed.save()  # a new historical record, written the ordinary way
    assert "1 written since the last sealing" in verify()
    assert chain_seal() == 1
    assert chain_verify().holds


def test_an_altered_record_is_named(sealed):
    record = Proposal.history.filter(id=sealed.pk, status="approved").get()
    Proposal.history.filter(history_id=record.history_id).update(
        history_change_reason="approved by someone else"
    )
    with pytest.raises(CommandError) as refused:
        verify()
    assert str(refused.value).endswith(
        f"approvals.historicalproposal record {record.history_id} (in the history of proposal "
        f"#{sealed.pk}) was altered after it was sealed."
    )


def test_a_deleted_record_is_named(sealed):
    record = Proposal.history.filter(id=sealed.pk, status="executed").get()
    Proposal.history.filter(history_id=record.history_id).delete()
    broken = chain_verify().broken
    assert (broken.table, broken.history_id, broken.what) == (
        "approvals.historicalproposal",
        record.history_id,
        "was deleted after it was sealed",
    )


def test_a_record_slipped_in_behind_the_chain_is_named(sealed):
    first = Proposal.history.filter(id=sealed.pk).earliest("history_date")
    forged = Proposal.history.get(history_id=first.history_id)
    forged.pk = None
    forged.history_id = None
    forged.history_date = timezone.now() - timedelta(days=2)
    forged.history_change_reason = "approved by nobody, long ago"
    forged.save()
    assert chain_seal() == 0  # the next sealing run does not take it in
    broken = chain_verify().broken
    assert (broken.table, broken.history_id, broken.what, broken.of) == (
        "approvals.historicalproposal",
        forged.history_id,
        "was inserted after its time had been sealed",
        f"proposal #{sealed.pk}",
    )


def test_records_slipped_in_past_those_kept_are_counted_all_the_same(sealed, monkeypatch):
    """A verification keeps so many breaks (``BREAKS_KEPT``) and counts the rest: records
    slipped in behind the chain past those kept were neither kept nor counted, and the
    room left for them was reckoned without the link breaks already kept."""
    monkeypatch.setattr(chain, "BREAKS_KEPT", 2)
    first = Proposal.history.filter(id=sealed.pk).earliest("history_date")
    Proposal.history.filter(history_id=first.history_id).update(rationale="forged")
    for days in (2, 3, 4):
        forged = Proposal.history.get(history_id=first.history_id)
        forged.pk = None
        forged.history_id = None
        forged.history_date = timezone.now() - timedelta(days=days)
        forged.save()
    assert chain_seal() == 0

    found = chain_verify()
    assert found.breaks_found == 4  # the altered record and the three slipped in
    assert [b.what for b in found.breaks] == [
        "was altered after it was sealed",
        "was inserted after its time had been sealed",
    ]


def test_rewritten_links_break_the_chain_from_there(sealed):
    middle = ChainLink.objects.order_by("id")[ChainLink.objects.count() // 2]
    ChainLink.objects.filter(pk=middle.pk).update(digest="0" * 64)
    broken = chain_verify().broken
    assert (broken.link, broken.what) == (
        middle.pk,
        "is not where the chain says: its links were rewritten, inserted or removed here",
    )


def test_a_recorded_head_proves_the_chain_is_the_same_one(sealed):
    head = chain_verify().head
    evaluated(reallocation("120.00"))
    chain_seal()
    assert "The audit chain holds" in verify("--head", head)  # it grew past the head: fine
    ChainLink.objects.all().delete()  # a whole new chain, consistent but not the one recorded
    chain_seal()
    with pytest.raises(CommandError, match="does not pass through"):
        verify("--head", head)


def test_a_column_added_after_sealing_breaks_no_old_record(sealed, monkeypatch):
    """Records sealed when their table had fewer columns are digested over those."""
    ChainLink.objects.all().delete()
    real_fields = chain._fields
    monkeypatch.setattr(
        chain, "_fields", lambda model: [f for f in real_fields(model) if f != "summary"]
    )
    chain.chain_seal()  # as if "summary" did not exist yet
    monkeypatch.setattr(chain, "_fields", real_fields)

    assert chain_verify().holds


def test_a_record_backdated_into_a_quiet_spell_is_named_too(sealed):
    """Nothing written for days, the sealer running all the while: a record dated within
    those days, slipped in now, is no more sealed than one dated before them."""
    ChainLink.objects.update(sealed_at=timezone.now() - timedelta(days=3))  # the last links
    assert chain_seal() == 0  # a run that finds nothing new, as every run of the quiet days
    first = Proposal.history.filter(id=sealed.pk).earliest("history_date")
    forged = Proposal.history.get(history_id=first.history_id)
    forged.pk = forged.history_id = None
    forged.history_date = timezone.now() - timedelta(days=1)
    forged.save()
    assert chain_seal() == 0
    assert chain_verify().broken.what == "was inserted after its time had been sealed"


def verifications_shown(client) -> list[tuple[str, str]]:
    page = html.unescape(client.get(CHAIN_PAGE).text)
    rows = page.split('id="audit-chain-verifications"')[1].split("<tbody>")[1].split("</tbody>")[0]
    return [
        (re.sub(r"<[^>]+>", "", result).strip(), found)
        for result, found in re.findall(
            r"<td[^>]*>([^<]*(?:<strong>[^<]*</strong>)?[^<]*)</td>\s*"
            r"<td class=\"found\"[^>]*>([^<]*)</td>",
            rows,
        )
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_the_auditor_verifies_the_chain_from_the_console_and_reads_what_it_found(sealed, login):
    """Asked for on its page, run by the worker: the chain holds, and the page says so with
    the head hash; once a sealed record is altered, the next verification names it; a head
    hash typed wrong is refused, and nothing is asked for."""
    auditor = login("auditor")
    assert "Verify the audit chain" in auditor.get("/admin/").text

    bad = auditor.post(CHAIN_PAGE, {"through": "not-a-hash"})
    assert bad.status_code == 200
    assert "A head hash is 64 hexadecimal characters" in html.unescape(bad.text)
    assert not ChainVerification.objects.exists()

    assert auditor.post(CHAIN_PAGE, {"through": ""}).status_code == 302
    wait_until(lambda: ChainVerification.objects.filter(finished_at__isnull=False).exists())
    [(result, found)] = verifications_shown(auditor)
    links, head = ChainLink.objects.count(), chain_verify().head
    assert result == "Holds"
    assert found.startswith(f"The audit chain holds: {links} records sealed, head {head};")

    record = Proposal.history.filter(id=sealed.pk, status="approved").get()
    Proposal.history.filter(history_id=record.history_id).update(history_change_reason="forged")
    pasted = f"  {head[:32].upper()}\n{head[32:]} "  # from a mail: cased, broken, spaced
    assert auditor.post(CHAIN_PAGE, {"through": pasted}).status_code == 302
    wait_until(lambda: ChainVerification.objects.filter(finished_at__isnull=False).count() == 2)
    latest, earlier = verifications_shown(auditor)
    assert latest[0] == "Does not hold"
    assert latest[1].startswith("The audit chain is broken at link #")
    assert (
        f"approvals.historicalproposal record {record.history_id} (in the history of proposal "
        f"#{sealed.pk}) was altered"
    ) in latest[1]
    assert earlier[0] == "Holds"
    assert ChainVerification.objects.order_by("-pk").first().through == head


def test_the_chain_page_is_refused_to_a_person_who_may_not_read_proposals(login, demo_world):
    outsider = get_user_model().objects.create_user("outsider", password="pw", is_staff=True)
    client = Client()
    client.force_login(outsider)
    assert client.get(CHAIN_PAGE).status_code == 403
    assert client.post(CHAIN_PAGE, {"through": ""}).status_code == 403
    assert not ChainVerification.objects.exists()


def test_one_verification_is_under_way_at_a_time_and_each_walks_the_chain_once(sealed):
    """However many ask at once, one is under way (the rest are told so); a task delivered
    twice walks the chain once; one whose worker was lost an hour ago no longer holds the next
    back, and says it did not finish."""
    auditor = get_user_model().objects.get(username="auditor")
    first = chain_verification_ask(user=auditor)
    assert first is not None
    assert chain_verification_ask(user=auditor) is None

    assert chain_verification_run(verification_id=first.pk).holds is True
    assert chain_verification_run(verification_id=first.pk) is None  # delivered again
    lost = chain_verification_ask(user=auditor)
    ChainVerification.objects.filter(pk=lost.pk).update(
        requested_at=timezone.now() - timedelta(hours=2)
    )
    assert chain_verification_ask(user=auditor) is not None
    lost.refresh_from_db()
    assert (lost.under_way, lost.holds, lost.found) == (
        None,
        None,
        "Did not finish: its worker stopped before it was done.",
    )


def test_the_chain_s_start_is_refused_as_a_head_hash_kept_elsewhere(sealed, login):
    refused = login("auditor").post(CHAIN_PAGE, {"through": "0" * 64})
    assert refused.status_code == 200
    assert "every chain passes through it" in html.unescape(refused.text)
    assert not ChainVerification.objects.exists()


def test_before_the_first_sealing_verification_says_nothing_is_sealed_yet(demo_world):
    """Not "The audit chain holds: 0 records sealed, head 0000…", on a new platform."""
    written = sum(model.objects.count() for model in chain.chained_models())
    assert written > 0 and not ChainLink.objects.exists()
    assert verify().strip() == (
        f"Nothing is sealed yet: {written} records written wait for the first sealing, a "
        "minute or so after they are written."
    )


def test_what_verification_and_sealing_count_reads_as_a_person_writes_it(db):
    """Not "65 record(s) sealed", "1 record(s) written wait": one record, or several. (A new
    platform holds the first records of its role groups: the counts of one are read as a
    verification that found them would say them.)"""
    assert chain.Verification(links=0, head=chain.GENESIS, unsealed=1).verdict() == (
        True,
        "Nothing is sealed yet: 1 record written waits for the first sealing, a minute or so "
        "after it is written.",
    )
    call_command("seal_audit_chain", stdout=io.StringIO())
    Account.objects.create(external_id="one", name="One", channel="google_ads", currency="USD")
    out = io.StringIO()
    call_command("seal_audit_chain", stdout=out)
    assert out.getvalue().strip() == "Sealed 1 record."
    holds = chain.Verification(links=1, head="h", unsealed=0, live_rows=1, live_models=1)
    assert holds.verdict()[1].startswith("The audit chain holds: 1 record sealed, head h; ")
    assert holds.verdict()[1].endswith(
        "1 live row of 1 kind of record is as their history last recorded them."
    )


def history_page(client, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<(?!/?tbody)[^>]+>", "", page.text)))


def test_a_record_the_last_verification_found_altered_is_marked_on_its_history_pages(sealed, login):
    """An auditor reading a decision's history, or its proposal's, is told that a record of
    it was altered after it was sealed, as of the last verification and saying when; before
    any verification found it, and once a later one finds the chain whole again, nothing."""
    decision = Decision.objects.get(proposal=sealed)
    record = Decision.history.get(id=decision.pk)
    auditor = login("auditor")
    decision_history = f"/admin/approvals/decision/{decision.pk}/history/"
    proposal_history = f"/admin/approvals/proposal/{sealed.pk}/history/"
    Decision.history.filter(history_id=record.history_id).update(note="Approved by the CFO.")
    assert "after it was sealed" not in history_page(auditor, decision_history)

    user = get_user_model().objects.get(username="auditor")
    found = chain_verification_run(verification_id=chain_verification_ask(user=user).pk)
    assert found.holds is False
    when = f"{found.finished_at:%Y-%m-%d %H:%M:%S} UTC"

    page = history_page(auditor, decision_history)
    assert (
        "A record of this history was altered after it was sealed (marked below), as the last "
        f"verification of the audit chain found ({when})."
    ) in page
    row = page.split("<tbody>")[1].split("</tbody>")[0]
    assert f"Created This record was altered after it was sealed ({when} verification):" in row
    page = history_page(auditor, proposal_history)
    assert (
        f"A record in the history of decision #{decision.pk}, which belongs to this one, was "
        f"altered after it was sealed, as the last verification of the audit chain found ({when})."
    ) in page
    other = evaluated(reallocation("290.00"))
    assert "after it was sealed" not in history_page(
        auditor, f"/admin/approvals/proposal/{other.pk}/history/"
    )

    Decision.history.filter(history_id=record.history_id).update(note=record.note)
    assert chain_verification_run(verification_id=chain_verification_ask(user=user).pk).holds
    assert "after it was sealed" not in history_page(auditor, decision_history)
    assert "after it was sealed" not in history_page(auditor, proposal_history)


def test_a_break_verify_audit_chain_finds_is_marked_as_one_found_from_the_console(sealed, login):
    """Run from the command line, verification records what it found as the console's does:
    the chain's page lists it, by the command, and the altered record's history page says so;
    a head hash is taken as the console takes it, and one it cannot take records nothing."""
    decision = Decision.objects.get(proposal=sealed)
    record = Decision.history.get(id=decision.pk)
    head = chain_verify().head
    assert verify("--head", f" {head.upper()} ").startswith("The audit chain holds")
    with pytest.raises(CommandError, match="A head hash is 64 hexadecimal characters"):
        verify("--head", "x" * 80)
    assert ChainVerification.objects.count() == 1

    Decision.history.filter(history_id=record.history_id).update(note="Approved by the CFO.")
    with pytest.raises(CommandError) as refused:
        verify()
    auditor = login("auditor")
    when = f"{ChainVerification.objects.order_by('-pk').first().finished_at:%Y-%m-%d %H:%M:%S} UTC"
    page = history_page(auditor, f"/admin/approvals/decision/{decision.pk}/history/")
    assert (
        "A record of this history was altered after it was sealed (marked below), as the last "
        f"verification of the audit chain found ({when})."
    ) in page
    latest, earlier = verifications_shown(auditor)
    assert latest == ("Does not hold", str(refused.value))
    assert earlier[0] == "Holds"
    listed = auditor.get(CHAIN_PAGE).text.split('id="audit-chain-verifications"')[1]
    assert (
        listed.count('<td data-label="By"><code>manage.py verify_audit_chain</code></td>') == 2
    )  # who asked


def test_every_record_altered_is_named_and_marked_not_only_the_first(sealed, login):
    """Two records altered after sealing, far apart in the chain: the verification names the
    first and counts the other, and each one's history page is marked (the second had said
    nothing, as though it had been checked and held). Two altered in one history are both
    marked on its page."""
    later = evaluated(reallocation("120.00"))
    chain_seal()
    first = Proposal.history.filter(id=sealed.pk, status="approved").get()
    second, *_, third = Proposal.history.filter(id=later.pk).order_by("history_id")
    for record in (first, second, third):
        Proposal.history.filter(history_id=record.history_id).update(rationale="forged")

    found = chain_verify()
    assert [b.history_id for b in found.breaks] == [
        first.history_id,
        second.history_id,
        third.history_id,
    ]
    with pytest.raises(CommandError) as refused:
        verify()
    assert str(refused.value).endswith(
        "was altered after it was sealed. In all it found the chain broken at 3 records, each "
        "marked on the history page of its record."
    )

    auditor = login("auditor")
    page = history_page(auditor, f"/admin/approvals/proposal/{sealed.pk}/history/")
    assert "A record of this history was altered after it was sealed (marked below)" in page
    page = history_page(auditor, f"/admin/approvals/proposal/{later.pk}/history/")
    assert "2 records of this history are not as they were sealed (each marked below" in page
    rows = page.split("<tbody>")[1].split("</tbody>")[0]
    assert rows.count("This record was altered after it was sealed") == 2


def test_a_record_moved_to_another_object_is_still_marked_on_the_page_it_was_sealed_in(
    sealed, login
):
    """Someone with the database alters a sealed record's object id, moving it into another
    proposal's history: the mark stays on the page of the proposal it was sealed in (which
    says where the record now reads), and the other's page marks it as moved there. Rewriting
    the link's recorded object as well breaks the chain at that link. A record deleted after
    sealing is named on its proposal's page too."""
    innocent = evaluated(reallocation("150.00"))
    chain_seal()
    record = Proposal.history.filter(id=sealed.pk, status="approved").get()
    Proposal.history.filter(history_id=record.history_id).update(id=innocent.pk)

    with pytest.raises(CommandError) as refused:
        verify()
    assert str(refused.value).endswith(
        f"approvals.historicalproposal record {record.history_id} (sealed in the history of "
        f"proposal #{sealed.pk}, now in that of proposal #{innocent.pk}) was altered after it "
        "was sealed."
    )
    auditor = login("auditor")
    when = f"{ChainVerification.objects.order_by('-pk').first().finished_at:%Y-%m-%d %H:%M:%S} UTC"
    page = history_page(auditor, f"/admin/approvals/proposal/{sealed.pk}/history/")
    assert (
        f"Record {record.history_id} of this history was altered after it was sealed: it now "
        f"reads as a record of proposal #{innocent.pk}, and is marked in that history, not "
        f"listed below, as the last verification of the audit chain found ({when})."
    ) in page
    assert (
        f'href="/admin/approvals/proposal/{innocent.pk}/history/"'
        in auditor.get(f"/admin/approvals/proposal/{sealed.pk}/history/").text
    )
    page = history_page(auditor, f"/admin/approvals/proposal/{innocent.pk}/history/")
    row = page.split("<tbody>")[1].split("</tbody>")[0]
    assert (
        "This record was altered after it was sealed: it was sealed in the history of "
        f"proposal #{sealed.pk}, and moved here ({when} verification)"
    ) in row
    assert row.count("after it was sealed") == 1

    # The link's recorded object rewritten to match: its hash no longer holds.
    ChainLink.objects.filter(
        table="approvals.historicalproposal", history_id=record.history_id
    ).update(object_id=str(innocent.pk))
    broken = chain_verify().broken
    assert (broken.history_id, broken.what) == (record.history_id, chain.REWRITTEN)

    Proposal.history.filter(history_id=record.history_id).update(id=sealed.pk)
    ChainLink.objects.filter(
        table="approvals.historicalproposal", history_id=record.history_id
    ).update(object_id=str(sealed.pk))
    assert chain_verify().holds
    Proposal.history.filter(history_id=record.history_id).delete()
    with pytest.raises(CommandError):
        verify()
    page = history_page(auditor, f"/admin/approvals/proposal/{sealed.pk}/history/")
    assert (
        f"Record {record.history_id} of this history was deleted after it was sealed, and is "
        "not listed below, as the last verification"
    ) in page
    assert "after it was sealed" not in history_page(
        auditor, f"/admin/approvals/proposal/{innocent.pk}/history/"
    )


def test_a_record_made_to_point_at_another_object_is_still_marked_on_the_one_it_belonged_to(
    sealed, login
):
    """Someone with the database makes a sealed decision record point at another proposal:
    the page of the proposal it belonged to when sealed still says a record of its decision
    was altered, naming the proposal it now points at; that one's page says so too."""
    innocent = evaluated(reallocation("150.00"))
    decision = Decision.objects.get(proposal=sealed)
    record = Decision.history.get(id=decision.pk)
    Decision.history.filter(history_id=record.history_id).update(proposal_id=innocent.pk)
    with pytest.raises(CommandError):
        verify()

    auditor = login("auditor")
    page = history_page(auditor, f"/admin/approvals/proposal/{sealed.pk}/history/")
    assert (
        f"A record in the history of decision #{decision.pk}, which belonged to this one when "
        f"it was sealed (it now names proposal #{innocent.pk}), was altered after it was sealed"
    ) in page
    page = history_page(auditor, f"/admin/approvals/proposal/{innocent.pk}/history/")
    assert (
        f"A record in the history of decision #{decision.pk}, which names this one now (it "
        f"belonged to proposal #{sealed.pk} when it was sealed), was altered after it was sealed"
    ) in page


def test_a_rewritten_link_is_marked_on_the_page_of_the_record_it_seals(sealed, login):
    """Someone with the database rewrites a decision record's link (its digest, to match a
    record they mean to alter): the verification names the record and whose history it is,
    and the decision's page marks the row, saying the chain no longer vouches for it; the
    proposal's page says a record of its decision is not where the chain says. It named no
    page before, so the auditor had nowhere to go."""
    decision = Decision.objects.get(proposal=sealed)
    record = Decision.history.get(id=decision.pk)
    link = ChainLink.objects.get(table="approvals.historicaldecision", history_id=record.history_id)
    ChainLink.objects.filter(pk=link.pk).update(digest="0" * 64)

    with pytest.raises(CommandError) as refused:
        verify()
    assert str(refused.value) == (
        f"The audit chain is broken at link #{link.pk}: approvals.historicaldecision record "
        f"{record.history_id} (in the history of decision #{decision.pk}) {chain.REWRITTEN}."
    )
    auditor = login("auditor")
    when = f"{ChainVerification.objects.order_by('-pk').first().finished_at:%Y-%m-%d %H:%M:%S} UTC"
    page = history_page(auditor, f"/admin/approvals/decision/{decision.pk}/history/")
    assert f"A record of this history {chain.REWRITTEN} (marked below)" in page
    row = page.split("<tbody>")[1].split("</tbody>")[0]
    assert (
        f"This record {chain.REWRITTEN} ({when} verification): the chain no longer vouches for "
        "what this row shows."
    ) in row
    page = history_page(auditor, f"/admin/approvals/proposal/{sealed.pk}/history/")
    assert (
        f"A record in the history of decision #{decision.pk}, which belongs to this one, "
        f"{chain.REWRITTEN}, as the last verification of the audit chain found ({when})."
    ) in page

    # The record deleted as well: named on its decision's page, which no longer lists it.
    Decision.history.filter(history_id=record.history_id).delete()
    with pytest.raises(CommandError) as refused:
        verify()
    assert str(refused.value).endswith(
        f"record {record.history_id} (in the history of decision #{decision.pk}) is not where "
        "the chain says (its links were rewritten, inserted or removed here) and is gone."
    )
    page = history_page(auditor, f"/admin/approvals/decision/{decision.pk}/history/")
    assert (
        f"Record {record.history_id} of this history is not where the chain says (its links "
        "were rewritten, inserted or removed here) and is gone, and is not listed below"
    ) in page
    assert "No record of this history is left to list." in page

    # The link put back: the record deleted, its history's only one, is still named there
    # (the page said only "This object doesn't have a change history").
    ChainLink.objects.filter(pk=link.pk).update(digest=link.digest)
    with pytest.raises(CommandError):
        verify()
    page = history_page(auditor, f"/admin/approvals/decision/{decision.pk}/history/")
    assert (
        f"Record {record.history_id} of this history was deleted after it was sealed, and is "
        "not listed below"
    ) in page
    assert "doesn't have a change history" not in page


def test_a_reference_set_to_null_is_said_so_on_the_page_it_belonged_to(sealed, login):
    """Someone with the database empties a sealed decision record's proposal: the proposal's
    page says the record belonged to it when sealed and now names no proposal at all (it said
    "which belongs to this one", as if it still did), and the verification says what the
    record pointed at when it was sealed."""
    decision = Decision.objects.get(proposal=sealed)
    record = Decision.history.get(id=decision.pk)
    Decision.history.filter(history_id=record.history_id).update(proposal_id=None)
    with pytest.raises(CommandError) as refused:
        verify()
    assert str(refused.value).endswith(
        f"approvals.historicaldecision record {record.history_id} (in the history of decision "
        f"#{decision.pk}) was altered after it was sealed: it named proposal #{sealed.pk} when "
        "it was sealed, and names no proposal now."
    )
    auditor = login("auditor")
    page = history_page(auditor, f"/admin/approvals/proposal/{sealed.pk}/history/")
    assert (
        f"A record in the history of decision #{decision.pk}, which belonged to this one when "
        "it was sealed (it now names no proposal: the reference was emptied), was altered "
        "after it was sealed"
    ) in page
    page = history_page(auditor, f"/admin/approvals/decision/{decision.pk}/history/")
    row = page.split("<tbody>")[1].split("</tbody>")[0]
    assert (
        f"This record was altered after it was sealed: it named proposal #{sealed.pk} when it "
        "was sealed, and names no proposal now"
    ) in row
    listed = html.unescape(auditor.get(CHAIN_PAGE).text)
    assert (
        f'<a href="/admin/approvals/decision/{decision.pk}/history/">decision #{decision.pk}</a>: '
        f"record {record.history_id} was altered after it was sealed: it named proposal "
        f"#{sealed.pk} when it was sealed, and names no proposal now."
    ) in listed


def test_the_chain_page_links_each_break_to_the_page_it_is_marked_on(sealed, login):
    """The verification said "It found 1 other break after it, each marked on the history
    page of its record" and named neither that record nor its page: each break it recorded
    is listed beside it, linked to the history page it is marked on."""
    later = evaluated(reallocation("120.00"))
    chain_seal()
    first = Proposal.history.filter(id=sealed.pk, status="approved").get()
    second = Proposal.history.filter(id=later.pk).earliest("history_id")
    for record in (first, second):
        Proposal.history.filter(history_id=record.history_id).update(rationale="forged")
    with pytest.raises(CommandError):
        verify()
    listed = html.unescape(login("auditor").get(CHAIN_PAGE).text)
    marks = listed.split('<ul class="chain-marks">')[1].split("</ul>")[0]
    assert [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", item)).strip()
        for item in marks.split("<li>")[1:]
    ] == [
        f"proposal #{sealed.pk}: record {first.history_id} was altered after it was sealed.",
        f"proposal #{later.pk}: record {second.history_id} was altered after it was sealed.",
    ]
    assert (
        f'<a href="/admin/approvals/proposal/{later.pk}/history/">proposal #{later.pk}</a>' in marks
    )


def test_the_chain_page_says_plainly_what_the_chain_does_not_seal(login, demo_world):
    """Its opening said "Every historical record … is sealed", and nothing of the console's
    own log or the sign-ins, which it does not seal. The callback events sent to agents, with
    each attempt to deliver them, it seals: the opening says so, and they are not listed."""
    page = html.unescape(login("auditor").get(CHAIN_PAGE).content.decode())
    opening = re.sub(r"\s+", " ", page.split('id="audit-chain-what">')[1].split("</p>")[0])
    assert "the callback events sent to agents with each attempt to deliver them" in opening
    outside = page.split('id="audit-chain-not-covered">')[1].split("</div>")[0]
    said = [re.sub(r"\s+", " ", item) for item in re.findall(r"<li>(.*?)</li>", outside, re.S)]
    assert any(item.startswith("Django's admin log") for item in said)
    assert "sign-ins, failed sign-ins and lockouts" in said
    assert not any("callback" in item for item in said)
    assert len(said) == len(set(said))


def test_every_table_left_out_of_the_chain_is_named_on_its_page():
    """A table added without history would be left out of the chain unsaid: each is named."""
    unnamed = {model._meta.label_lower for model in chain.unchained_models()} ^ set(
        chain.OUTSIDE_THE_CHAIN
    )
    assert unnamed == set()
    assert "feedback.historicalcallbackevent" in {
        model._meta.label_lower for model in chain.chained_models()
    }


def test_what_verification_names_does_not_depend_on_how_many_links_it_reads_at_once(
    sealed, monkeypatch
):
    """Verification reads the links, and the records they seal, by batches, and compares each
    live row with its record at one encoding of the whole row: a record altered, one deleted
    and a live row changed are each named, the same whether the walk reads one link at a
    time or thousands, and a live row is named with each field that differs."""
    later, other = evaluated(reallocation("120.00")), evaluated(reallocation("130.00"))
    chain_seal()
    altered = Proposal.history.filter(id=sealed.pk, status="approved").get()
    Proposal.history.filter(history_id=altered.history_id).update(rationale="forged")
    deleted = Proposal.history.filter(id=later.pk).order_by("history_id").first()
    Proposal.history.filter(history_id=deleted.history_id).delete()
    Proposal.objects.filter(pk=other.pk).update(confidence=0.11, supporting_data={"forged": 1})

    whole = chain_verify()
    monkeypatch.setattr(chain, "VERIFY_BATCH", 1)
    monkeypatch.setattr(chain, "BATCH", 1)
    one_by_one = chain_verify()

    assert [str(b) for b in one_by_one.breaks] == [str(b) for b in whole.breaks]
    assert (one_by_one.head, one_by_one.links) == (whole.head, whole.links)
    assert [(b.history_id, b.what) for b in whole.breaks[:2]] == [
        (altered.history_id, "was altered after it was sealed"),
        (deleted.history_id, "was deleted after it was sealed"),
    ]
    (live,) = [b for b in whole.breaks if b.live]
    assert live.object_id == other.pk
    assert "confidence is “0.11”" in live.what
    assert 'supporting data is “{"forged": 1}”' in live.what
