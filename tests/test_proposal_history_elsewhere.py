"""A proposal's history page (django-simple-history's, customised) lists, after its own
records, what is recorded of it in records of their own, in order: the decisions with their
notes (an edit's, a rejection's), who was told, the feedback and callback events its agent
was sent, and the outcomes reported. The page left them all to the proposal's page."""

import html
import re
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import strip_tags

from approvals.services.decisions import proposal_approve, proposal_reject
from approvals.services.proposals import proposal_withdraw
from executors.runner import proposal_execute
from feedback.callbacks import callback_event_deliver
from feedback.models import CallbackEvent
from feedback.services import outcome_report_by_user
from hitlproject.formats import console_time
from ledger.models import Creative
from notifications.deadlines import deadlines_sweep
from notifications.models import Claim, DecisionDeadline
from notifications.services import proposal_claim, proposal_release
from tests.conftest import creative, creative_batch, reallocation
from tests.factories import evaluated
from tests.test_notifications_deadlines import decide_within


def elsewhere(page: str) -> list[tuple[str, str]]:
    table = page.split('id="recorded-elsewhere-list"')[1].split("</table>")[0]
    rows = re.findall(
        r"<tr><td[^>]*>(.*?)</td>\s*<td[^>]*>(.*?)</td>\s*<td[^>]*>(.*?)</td></tr>", table, re.S
    )
    return [
        (re.sub(r"<[^>]+>", "", what).strip(), re.sub(r"<[^>]+>", "", note).strip())
        for _, what, note in rows
    ]


def test_the_history_page_lists_the_edit_note_who_was_told_and_the_outcome_in_order(
    login, callback_endpoint
):
    callback_endpoint(200)
    operator = get_user_model().objects.get(username="operator")
    body = reallocation("280.00")
    proposal = evaluated(body)
    proposal_approve(
        proposal_id=proposal.pk,
        reviewer=operator,
        note="Halved: 10% a day at most.",
        edited_payload={**body["payload"], "amount": "140.00"},
    )
    proposal_execute(proposal_id=proposal.pk)
    for event in CallbackEvent.objects.order_by("pk"):
        callback_event_deliver(event_id=event.pk)
    outcome_report_by_user(
        proposal_id=proposal.pk, user=operator, effect="improved", note="CPA down 8% in a week."
    )

    url = reverse("admin:approvals_proposal_history", args=[proposal.pk])
    page = html.unescape(login("auditor").get(url).content.decode())
    rows = elsewhere(page)
    whats = [what for what, _ in rows]
    decision = next(i for i, what in enumerate(whats) if what.startswith("Decision: Approved"))
    assert whats[decision].startswith("Decision: Approved by operator (person), as edited:")
    assert rows[decision][1] == "“Halved: 10% a day at most.”"
    told = [i for i, what in enumerate(whats) if what.startswith("operator told by email")]
    assert told and told[0] < decision  # told it waits, before it was decided
    assert any(w.startswith("Feedback to optimizer (agent): Approved with edits") for w in whats)
    # The attempt that moved the money, and what it left in the ledger: it was on the
    # proposal's page alone.
    executed = whats.index(
        "Execution attempt 1 by the ledger executor: succeeded; after it: brand-search daily "
        "budget 860.00; generic-search daily budget 640.00"
    )
    assert decision < executed
    delivered = [w for w in whats if w.startswith("Callback event")]
    assert [w.split(":")[0] for w in delivered] == [
        "Callback event “Approved” to optimizer (agent)",
        "Callback event “Executed” to optimizer (agent)",
    ]
    delivered_once = r": delivered at [\d-]+ [\d:]+ UTC, after 1 attempt$"
    assert all(re.search(delivered_once, what) for what in delivered)
    assert rows[-2:] == [
        ("Outcome reported by operator (person): Improved results", "“CPA down 8% in a week.”"),
        ("Feedback to optimizer (agent): Outcome reported", "“CPA down 8% in a week.”"),
    ]
    assert f'href="{reverse("admin:approvals_proposal_change", args=[proposal.pk])}"' in page


def test_a_proposal_nobody_acted_on_says_nothing_is_recorded_elsewhere(
    login, demo_world, monkeypatch
):
    with monkeypatch.context() as patch:  # no execution task: it is approved, not yet run
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        proposal = evaluated(reallocation("20.00"))  # 2%: approved unseen, nobody told
    url = reverse("admin:approvals_proposal_history", args=[proposal.pk])
    page = html.unescape(login("auditor").get(url).content.decode())
    assert 'id="recorded-elsewhere-none">Nothing yet' in page


def test_a_creative_batch_s_attempt_says_the_creatives_it_put_in_the_ledger(login, demo_world):
    """An executed creative batch's attempt read "succeeded; after it: —", as if it had left
    nothing in the ledger, where it had put its creatives there (the attempt's own page and
    the proposal's list them)."""
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(
        creative_batch(creative(headline="Run far"), creative(headline="Run light"))
    )
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert proposal_execute(proposal_id=proposal.pk).status == "executed"
    first, second = Creative.objects.filter(deployed_by_proposal=proposal).order_by("pk")

    url = reverse("admin:approvals_proposal_history", args=[proposal.pk])
    page = html.unescape(login("auditor").get(url).content.decode())

    assert (
        "Execution attempt 1 by the ledger executor: succeeded; after it: on display-retarget: "
        f"ledger record #{first.pk} “Run far”, ledger record #{second.pk} “Run light”",
        "—",
    ) in elsewhere(page)


def test_the_history_page_lists_its_decision_deadline_s_records_and_who_took_it_on(
    login, demo_world
):
    """The records of its decision deadline (set as its review round began, the reminder at
    half time, the escalation once overdue, the round's end), sealed in the chain as the
    rest are, and of who took it on and gave it back, were left out of the list: an
    auditor read nothing of when a decision was due, or whether it came in time."""
    decide_within(seconds=600)
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation())
    deadline = DecisionDeadline.objects.get(proposal=proposal)
    due = console_time(deadline.due_at)
    proposal_claim(proposal_id=proposal.pk, user=operator)
    proposal_release(proposal_id=proposal.pk, user=operator)
    DecisionDeadline.objects.filter(pk=deadline.pk).update(remind_at=timezone.now())
    deadlines_sweep()
    deadline.refresh_from_db()
    assert deadline.reminded_at is not None
    proposal_reject(
        proposal_id=proposal.pk, reviewer=operator, reason_code="other", note="Not this week."
    )

    url = reverse("admin:approvals_proposal_history", args=[proposal.pk])
    page = html.unescape(login("auditor").get(url).content.decode())
    whats = [what for what, _ in elsewhere(page)]
    said = f"Decision deadline, round 1, due {due}: "
    deadlines = [what for what in whats if what.startswith(said)]
    assert (
        deadlines[0]
        == said + "review round began: a decision is due by its policy's “decide within”"
    )
    assert deadlines[1].startswith(said + "reminded")
    # As the proposal's page says it beside when it ended (the page read "decided in time").
    assert deadlines[2] == said + "review round ended: rejected in time"
    detail = reverse("admin:approvals_proposal_change", args=[proposal.pk])
    page_said = html.unescape(login("auditor").get(detail).content.decode())
    assert ", rejected in time" in " ".join(strip_tags(page_said).split())
    assert len(deadlines) == 3
    lapses = console_time(Claim.history.earliest("history_id").lapses_at)
    took = whats.index(f"operator took it on (“I'll take it”) until {lapses}")
    assert whats[took + 1] == "operator gave it back (no longer on it)"
    assert whats.index(deadlines[0]) < took < whats.index(deadlines[1])
    decided = next(i for i, what in enumerate(whats) if what.startswith("Decision: Rejected"))
    assert whats.index(deadlines[1]) < decided <= whats.index(deadlines[2]) + 1
    described = page[page.index('id="recorded-elsewhere"') :]
    assert "each change to its decision deadlines" in described.split("</p>")[0]


def test_a_deadline_record_of_a_round_nobody_decided_says_how_it_ended_not_in_time(
    login, demo_world
):
    """Withdrawn before anyone decided it: the proposal's page says the round ended
    "withdrawn before enough people approved it", which the dashboard counts neither in time nor
    late, but its history's "Recorded elsewhere" read "review round ended: withdrawn, in
    time", as if decided then. Now both say how it ended."""
    decide_within(seconds=600)
    proposal = evaluated(reallocation())
    due = console_time(DecisionDeadline.objects.get(proposal=proposal).due_at)
    proposal_withdraw(agent=proposal.agent, proposal_id=proposal.pk, note="Not needed.")
    client = login("auditor")

    url = reverse("admin:approvals_proposal_history", args=[proposal.pk])
    page = html.unescape(client.get(url).content.decode())
    said = f"Decision deadline, round 1, due {due}: "
    deadlines = [what for what, _ in elsewhere(page) if what.startswith(said)]
    assert deadlines[-1] == said + "review round ended: withdrawn before enough people approved it"
    detail = reverse("admin:approvals_proposal_change", args=[proposal.pk])
    assert "withdrawn before enough people approved it" in html.unescape(
        client.get(detail).content.decode()
    )
    assert not any("in time" in what for what in deadlines)


def test_the_history_page_reads_its_deadline_records_in_a_fixed_number_of_queries(
    login, demo_world
):
    """One deadline record or five, the page is read in as many statements: none a record."""
    decide_within(seconds=600)
    client = login("auditor")

    def statements(changes: int) -> tuple[int, int]:
        proposal = evaluated(reallocation())
        deadline = DecisionDeadline.objects.get(proposal=proposal)
        for n in range(changes):
            deadline.remind_at = deadline.remind_at + timedelta(seconds=1)
            deadline._change_reason = f"Moved, {n + 1}."
            deadline.save()
        url = reverse("admin:approvals_proposal_history", args=[proposal.pk])
        with CaptureQueriesContext(connection) as read:
            page = html.unescape(client.get(url).content.decode())
        listed = [w for w, _ in elsewhere(page) if w.startswith("Decision deadline")]
        return len(listed), len(read.captured_queries)

    one, five = statements(0), statements(4)
    assert (one[0], five[0]) == (1, 5)
    assert one[1] == five[1]
