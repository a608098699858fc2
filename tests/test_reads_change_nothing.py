"""A read changes nothing: an auditor opening the console (who may change nothing), an
operator looking, an agent polling the API. What they are shown is what happened, and the
history never says a reader did anything. Two reads wrote: the autonomy rules' page made the
rules the first time it was opened, and every list, dashboard, proposal page, agent page and
agent API read expired the proposals past their review window there and then (status, history,
feedback, callbacks), where only the expiry sweep, or a late act, expires them."""

import html
import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.urls import reverse
from django.utils import timezone
from hitl_client._tools import expiry
from hitl_client.models import Proposal as ClientProposal

from approvals.models import Proposal, ProposalStatus
from approvals.services.expiry import proposals_expire_overdue
from feedback.models import AutonomyRules, Feedback
from tests.conftest import reallocation
from tests.factories import evaluated


def every_table() -> dict[str, int]:
    """The rows of every table the platform keeps (sessions aside: signing in is a write)."""
    return {
        model._meta.label: model._base_manager.count()
        for model in apps.get_models(include_auto_created=True)
        if model._meta.label != "sessions.Session"
    }


def past_its_window(amount: str) -> Proposal:
    proposal = evaluated(reallocation(amount))
    Proposal.objects.filter(pk=proposal.pk).update(
        review_expires_at=timezone.now() - timedelta(seconds=1)
    )
    return Proposal.objects.get(pk=proposal.pk)


def text_of(response) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))


def test_the_autonomy_rules_are_made_at_setup_and_opening_them_writes_nothing(login):
    """The rules were made by the first GET of their page, an auditor's too. They exist from
    the platform's set-up, its history says so, and reading them adds nothing."""
    rules = AutonomyRules.objects.get(pk=1)  # before anyone opened their page
    [made] = rules.history.all()
    assert (made.history_type, made.history_actor_kind, made.history_actor) == (
        "+",
        "system",
        "setup",
    )
    assert made.history_user is None
    clients = {name: login(name) for name in ["auditor", "policy-owner", "operator"]}
    before = every_table()

    for username, client in clients.items():
        page = client.get(reverse("admin:feedback_autonomyrules_changelist"), follow=True)
        assert page.status_code == 200
        history = client.get(reverse("admin:feedback_autonomyrules_history", args=[rules.pk]))
        assert "the platform's set-up (system)" in text_of(history)
        assert f"{username} (person)" not in text_of(history)

    assert every_table() == before
    assert AutonomyRules.objects.get(pk=1).updated_at == rules.updated_at


def test_an_auditor_reading_the_console_expires_nothing_and_is_shown_the_truth(login):
    """Opening the queue, the dashboard, a proposal's page or its agent's page expired every
    proposal past its window: status, history, feedback and callbacks written by a read. Now
    the read writes nothing; the proposal reads as waiting with its window closed, offers no
    decision, is not counted as waiting for a person, and the sweep expires it."""
    late, waiting = past_its_window("170.00"), evaluated(reallocation("150.00"))
    client = login("auditor")
    before = every_table()
    history_before = late.history.count()

    queue = client.get(reverse("admin:approvals_proposal_changelist"))
    dashboard = client.get(reverse("admin:index"))
    page = client.get(reverse("admin:approvals_proposal_change", args=[late.pk]))
    agent_page = client.get(reverse("admin:approvals_agent_change", args=[late.agent_id]))
    history = client.get(reverse("admin:approvals_proposal_history", args=[late.pk]))

    assert {r.status_code for r in [queue, dashboard, page, agent_page, history]} == {200}
    assert every_table() == before
    late.refresh_from_db()
    assert late.status == ProposalStatus.PENDING_REVIEW
    assert late.history.count() == history_before
    assert not Feedback.objects.filter(proposal=late).exists()

    # Shown as it is: listed, past its window, not decidable; not counted as waiting.
    listed = {row.pk for row in queue.context["cl"].result_list}
    assert listed == {late.pk, waiting.pk}
    assert "review window closed" in queue.content.decode()
    assert re.search(r'id="queue-depth"[^>]*>1<', dashboard.content.decode())
    said = text_of(page)
    assert "its review window closed at" in said
    assert "nobody can decide it any more" in said
    assert 'id="approve-form"' not in page.content.decode()

    # The sweep expires it, as the platform, not as the auditor who looked.
    assert proposals_expire_overdue() == 1
    late.refresh_from_db()
    assert late.status == ProposalStatus.EXPIRED
    record = late.history.latest("history_id")
    assert (record.history_actor_kind, record.history_actor, record.history_user) == (
        "system",
        "expiry",
        None,
    )


@pytest.mark.parametrize("username", ["operator", "policy-owner"])
def test_others_reading_the_console_expire_nothing_either(login, username):
    late = past_its_window("170.00")
    client = login(username)  # signing in is recorded (sessions, sign-ins); reading is not
    before = every_table()
    for url in [
        reverse("admin:approvals_proposal_changelist"),
        reverse("admin:index"),
        reverse("admin:approvals_proposal_change", args=[late.pk]),
        reverse("admin:approvals_agent_change", args=[late.agent_id]),
    ]:
        assert client.get(url).status_code == 200, url
    assert every_table() == before
    assert Proposal.objects.get(pk=late.pk).status == ProposalStatus.PENDING_REVIEW


def test_an_agent_polling_a_proposal_past_its_window_changes_nothing(optimizer):
    """Its reads (one proposal, a long poll, its list, its scorecard) expired it there and
    then. They read it as it is: waiting, with the time its window closed; the sweep expires
    it, and the agent then reads it expired."""
    late = past_its_window("170.00")
    before = every_table()

    read = optimizer.get(f"/api/v1/proposals/{late.pk}/").json()
    polled = optimizer.get(f"/api/v1/proposals/{late.pk}/?wait=1").json()
    listed = optimizer.get("/api/v1/proposals/?status=pending_review").json()
    scorecard = optimizer.get("/api/v1/scorecard/?days=30")

    assert scorecard.status_code == 200
    assert every_table() == before
    assert read["status"] == polled["status"] == "pending_review"
    assert read["review_expires_at"] is not None
    assert [p["id"] for p in listed["results"]] == [late.pk]
    assert not Feedback.objects.filter(proposal=late).exists()
    # Its client tells the model so, not "It expires at (a past time) unless a person
    # decides it first".
    assert expiry(ClientProposal.from_api(read))[1] == (
        f"Its review window closed at {read['review_expires_at']}: no person can decide it "
        "any more, and the platform is about to expire it. It will not be executed."
    )

    assert proposals_expire_overdue() == 1
    assert optimizer.get(f"/api/v1/proposals/{late.pk}/").json()["status"] == "expired"
    assert Feedback.objects.get(proposal=late).kind == "expired"
