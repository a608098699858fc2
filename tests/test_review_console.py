"""The operator's console in the admin: the queue, the detail page, approve and reject,
singly and in bulk, with permissions enforced on the server."""

import html
import importlib
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from approvals.models import Agent, Decision, Proposal, ProposalStatus
from approvals.selectors import withdrawal_seen
from approvals.services.decisions import proposal_approve, proposal_retry
from feedback.models import Feedback
from hitlproject.errors import NotAllowed
from policies.models import Policy
from tests.conftest import (
    bid_adjustment,
    confirmed_from_page,
    decided_from_page,
    posted_from_page,
    reallocation,
    seen_on_confirmation,
)
from tests.factories import evaluated

CHANGELIST = reverse("admin:approvals_proposal_changelist")


def test_queue_shows_what_waits_for_review_riskiest_first(login):
    small = evaluated(reallocation("150.00"))
    large = evaluated(reallocation("400.00"))
    auto = evaluated(bid_adjustment())  # auto-approved: not in the queue
    page = login("operator").get(CHANGELIST)
    assert page.status_code == 200
    queue = list(page.context["cl"].result_list)
    assert queue == [large, small]
    assert auto not in queue
    assert "move 400.00 USD/day from brand-search to generic-search (40.0%)" in page.text


def test_detail_page_shows_reasons_and_current_versus_proposed(login):
    proposal = evaluated(reallocation("280.00"))
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert page.status_code == 200
    states = page.context["states"]
    assert states.columns == ["Campaign", "Field", "When proposed", "Proposed", "Now"]
    assert states.rows == [
        ["brand-search", "daily budget", "1000.00", "720.00", "1000.00"],
        ["generic-search", "daily budget", "500.00", "780.00", "500.00"],
    ]
    assert "exceeds the 10.0% auto-execute ceiling" in page.text
    assert 'id="approve-form"' in page.text


def test_operator_approves_from_the_detail_page(login):
    proposal = evaluated()
    response = decided_from_page(login("operator"), "approve", proposal.pk, {"note": "fine"})
    assert response.status_code == 302
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.APPROVED
    decision = proposal.decisions.get()
    assert (decision.reviewer.username, decision.note) == ("operator", "fine")


def test_rejection_needs_a_reason_and_feeds_it_back(login):
    proposal = evaluated()
    client = login("operator")
    decided_from_page(client, "reject", proposal.pk, {"note": "no reason given"})
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PENDING_REVIEW

    decided_from_page(
        client, "reject", proposal.pk, {"reason_code": "too_aggressive", "note": "Halve it."}
    )
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.REJECTED
    feedback = Feedback.objects.get(proposal=proposal)
    assert (feedback.kind, feedback.reason_code, feedback.note) == (
        "rejected",
        "too_aggressive",
        "Halve it.",
    )


@pytest.mark.parametrize("username", ["auditor", "policy-owner"])
def test_user_without_the_review_permission_cannot_approve(login, username):
    proposal = evaluated()
    client = login(username)
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert page.status_code == 200
    assert 'id="approve-form"' not in page.text
    response = decided_from_page(client, "approve", proposal.pk)
    assert response.status_code == 403
    bulk = client.post(
        CHANGELIST,
        {"action": "approve_selected", "_selected_action": [proposal.pk], "confirm": "yes"},
    )
    assert bulk.status_code == 403  # a bulk action the person does not have is refused
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    assert not Decision.objects.exists()


def test_reviewer_permission_is_enforced_by_the_service_too(demo_world):
    proposal = evaluated()
    auditor = get_user_model().objects.get(username="auditor")
    with pytest.raises(NotAllowed):
        proposal_approve(proposal_id=proposal.pk, reviewer=auditor)
    assert Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.PENDING_REVIEW


def test_bulk_approve_asks_for_confirmation_first(login):
    proposals = [evaluated(reallocation(amount)) for amount in ("200.00", "300.00")]
    client = login("operator")
    selection = {"action": "approve_selected", "_selected_action": [p.pk for p in proposals]}
    confirmation = client.post(CHANGELIST, selection)
    assert confirmation.status_code == 200
    assert "Approve 2 proposals?" in confirmation.text
    assert "move 300.00 USD/day" in confirmation.text
    # The proposals may be several agents': the note goes to each one's.
    assert "Sent to each proposal's agent as feedback, with your approval." in confirmation.text
    assert not Decision.objects.exists()

    done = client.post(
        CHANGELIST,
        {**selection, "confirm": "yes", "note": "", **seen_on_confirmation(confirmation)},
    )
    assert done.status_code == 302
    assert set(Proposal.objects.values_list("status", flat=True)) == {ProposalStatus.APPROVED}


def test_bulk_reject_with_a_reason_skips_what_is_no_longer_pending(login):
    waiting = evaluated(reallocation("200.00"))
    executed_already = evaluated(bid_adjustment())
    client = login("operator")
    response = confirmed_from_page(
        client,
        f"{CHANGELIST}?status=all",
        {
            "action": "reject_selected",
            "_selected_action": [waiting.pk, executed_already.pk],
            "confirm": "yes",
            "reason_code": "wrong_signal",
            "note": "Seasonality.",
        },
        follow=True,
    )
    assert f"Rejected 1 proposal: #{waiting.pk}." in response.text
    assert (
        f"Proposal #{executed_already.pk} is approved; it cannot become rejected." in response.text
    )
    assert Proposal.objects.get(pk=waiting.pk).status == ProposalStatus.REJECTED
    assert Proposal.objects.get(pk=executed_already.pk).status == ProposalStatus.APPROVED


def test_two_person_rule_needs_two_distinct_reviewers(operators):
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    proposal = evaluated()
    operator, second = operators

    assert proposal_approve(proposal_id=proposal.pk, reviewer=operator).status == "pending_review"
    with pytest.raises(NotAllowed, match="already decided"):
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    assert proposal_approve(proposal_id=proposal.pk, reviewer=second).status == "approved"


def test_auditor_can_read_history_and_change_nothing(login):
    proposal = evaluated()
    client = login("auditor")
    history = client.get(reverse("admin:approvals_proposal_history", args=[proposal.pk]))
    assert history.status_code == 200
    assert "the policy engine (system)" in history.text
    policy = Policy.objects.first()
    assert client.get(reverse("admin:policies_policy_change", args=[policy.pk])).status_code == 200
    edit = client.post(
        reverse("admin:policies_policy_change", args=[policy.pk]), {"name": "loosened"}
    )
    assert edit.status_code == 403
    assert Policy.objects.get(pk=policy.pk).name != "loosened"


@pytest.mark.parametrize("action", ["approve_selected", "reject_selected", "delete_selected"])
def test_an_auditor_s_bulk_decision_posted_by_hand_is_refused(login, action):
    """The auditor has no bulk action; one posted by hand was answered with the queue, as if
    it had been read: refused, as every other change, and nothing decided."""
    proposal = evaluated(reallocation("280.00"))
    answer = login("auditor").post(
        CHANGELIST,
        {
            "action": action,
            "_selected_action": [proposal.pk],
            "post": "yes",
            "reason_code": "other",
        },
    )
    assert answer.status_code == 403
    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    assert not Decision.objects.filter(proposal=proposal).exists()


def test_policy_owner_edits_a_policy_and_history_names_them(login):
    policy = Policy.objects.get(action_type="budget_reallocation")
    url = reverse("admin:policies_policy_change", args=[policy.pk])
    response = posted_from_page(
        login("policy-owner"),
        url,
        {
            "name": policy.name,
            "action_type": "budget_reallocation",
            "is_active": "on",
            "auto_execute_max_magnitude": "20",  # percent
            "required_approvals": "1",
            "approvals_above_threshold": "2",
            "priority": "0",
            "cumulative_max_magnitude": "25",
            "cumulative_window": "1 00:00:00",
            "review_window": "3 00:00:00",
            "description": "Loosened after a clean quarter.",
            "change_reason": "A clean quarter.",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    latest = policy.history.latest("history_date")
    assert latest.auto_execute_max_magnitude == Decimal("0.20")
    assert (latest.history_actor_kind, latest.history_actor) == ("user", "policy-owner")
    assert latest.history_user.username == "policy-owner"


def test_operator_cannot_edit_policies(login):
    policy = Policy.objects.get(action_type="budget_reallocation")
    url = reverse("admin:policies_policy_change", args=[policy.pk])
    response = login("operator").post(url, {"name": "x", "auto_execute_max_magnitude": "1"})
    assert response.status_code == 403
    assert Policy.objects.get(pk=policy.pk).auto_execute_max_magnitude == Decimal("0.10")


def test_the_owner_of_an_agent_cannot_approve_its_proposals(login):
    operator = get_user_model().objects.get(username="operator")
    Agent.objects.filter(name="optimizer").update(owner=operator)
    proposal = evaluated()
    with pytest.raises(NotAllowed, match="owns agent optimizer"):
        proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    response = decided_from_page(login("operator"), "approve", proposal.pk, follow=True)
    assert "someone else must decide" in response.text
    assert Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.PENDING_REVIEW


def test_only_a_reviewer_may_retry_a_failed_execution(demo_world):
    proposal = evaluated(bid_adjustment())
    Proposal.objects.filter(pk=proposal.pk).update(status=ProposalStatus.FAILED)
    auditor = get_user_model().objects.get(username="auditor")
    with pytest.raises(NotAllowed):
        proposal_retry(proposal_id=proposal.pk, reviewer=auditor)
    assert Proposal.objects.get(pk=proposal.pk).status == ProposalStatus.FAILED


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("999999", "No proposal #999999 was ever recorded."),
        ("abc", "No proposal was ever recorded at “abc”: that is not a proposal&#x27;s id."),
    ],
)
def test_a_proposal_that_does_not_exist_is_not_an_error_page(login, key, said):
    """Django's words guessed "Perhaps it was deleted?", of proposals nobody can delete,
    and led to the home page."""
    response = login("operator").get(f"{CHANGELIST}{key}/change/", follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == CHANGELIST
    assert said in response.text
    assert "Perhaps it was deleted" not in response.text


def test_a_made_up_proposal_address_is_quoted_back_on_one_line_and_cut_short(login):
    """An address made to be sent to an operator: its direction override turned the page's
    own words after it around ("No proposal #\u202eabc was ever recorded." read backwards
    from there), and a 5,000-character key was written out whole."""
    response = login("operator").get(f"{CHANGELIST}%E2%80%AEabc/change/", follow=True)
    assert "No proposal was ever recorded at “abc”" in response.text
    assert "\u202e" not in response.text

    response = login("operator").get(f"{CHANGELIST}{'9' * 5000}x/change/", follow=True)
    assert response.status_code == 200
    assert "9" * 200 not in response.text


@pytest.mark.parametrize(
    ("address", "quoted"),
    [
        # An isolate left open, and direction marks: the page's words after them moved.
        ("%E2%81%A7abc%E2%80%8F", "“abc”"),
        # Joiners and a tag character: invisible letters in what the page says was asked.
        ("a%E2%80%8Db%F3%A0%81%81", "“a b”"),
        # Hundreds of combining marks on one letter: a tower drawn over the lines around it.
        ("a" + "%CC%81" * 300, "“\u00e1\u0301\u0301\u0301”"),
        # Words that read as the page's own sentence: "No proposal #1 was deleted by …".
        ("1%20was%20deleted%20by%20operator.%20No%20proposal%20%232",
         "“1 was deleted by operator. No proposal #2”"),
        # Quotation marks of its own, to close the page's early.
        ("1%E2%80%9D%20was%20deleted.%20%E2%80%9Cx", "“1\" was deleted. \"x”"),
    ],
)  # fmt: skip
def test_a_made_up_address_is_quoted_back_as_what_it_asked_and_nothing_more(login, address, quoted):
    """The key of a made-up proposal address was written into the page's sentence as it
    came, once its overrides were gone: the rest of Unicode's tricks passed (an isolate, a
    stack of 300 accents), and an address's own words passed for the page's ("No proposal
    #1 was deleted by operator. No proposal #2 was ever recorded.")."""
    response = login("operator").get(f"{CHANGELIST}{address}/change/", follow=True)
    assert response.status_code == 200
    (said,) = [str(message) for message in response.context["messages"]]
    assert said == f"No proposal was ever recorded at {quoted}: that is not a proposal's id."

    response = login("operator").get(f"{CHANGELIST}{address}/history/")
    assert response.status_code == 404
    assert f"Not an id: {quoted}." in html.unescape(response.text)


def test_deciding_on_a_proposal_that_does_not_exist_says_so(login):
    response = login("operator").post(
        reverse("admin:approvals_proposal_approve", args=[999999]), follow=True
    )
    assert "There is no proposal #999999." in response.text


def test_queue_shows_magnitude_against_its_ceiling_and_approvals_so_far(login):
    Policy.objects.filter(action_type="budget_reallocation").update(
        more_approvals_above_magnitude=Decimal("0.20")
    )
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation("280.00"))
    proposal_approve(proposal_id=proposal.pk, reviewer=operator)
    page = login("auditor").get(CHANGELIST)
    row = next(r for r in page.context["cl"].result_list if r.pk == proposal.pk)
    admin_page = page.context["cl"].model_admin
    assert admin_page.magnitude_display(row) == "28.0% / 10.0%"
    assert admin_page.approvals_display(row) == "1 of 2"
    assert "1 of 2" in page.text


def test_queue_filters_by_risk(login):
    high = evaluated(reallocation("900.00"))
    low = evaluated(reallocation("120.00"))
    queue = login("operator").get(f"{CHANGELIST}?risk=high").context["cl"].result_list
    assert list(queue) == [high]
    assert low.risk < 70 <= high.risk


def test_detail_page_draws_the_supporting_series_and_the_agents_record(login):
    operator = get_user_model().objects.get(username="operator")
    earlier = evaluated(reallocation("150.00"))
    proposal_approve(proposal_id=earlier.pk, reviewer=operator)
    proposal = evaluated(reallocation("280.00"))  # carries conversion_rate for brand-search
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    [chart] = page.context["charts"]
    assert chart.title == "conversion_rate"
    assert [line.label for line in chart.lines] == ["brand-search"]
    assert "<polyline" in page.text and "cdn" not in page.text.lower()
    # The chart as text too, for a screen reader: each line's figures, as drawn.
    text = re.sub(r">\s+<", "><", page.text)
    assert (
        '<details class="chart-figures"><summary>The figures of conversion_rate</summary>'
        '<table><tr><th scope="row">brand-search</th><td>0.021, 0.019, 0.018</td></tr>'
    ) in text
    record = page.context["track_record"].counts
    assert (record.proposals, record.decided, record.approved, record.waiting) == (2, 1, 1, 1)
    assert re.search(r'<td data-figure="approved"[^>]*>1</td>', page.text)
    assert list(page.context["earlier"]) == [earlier]


def test_a_proposal_sent_without_supporting_data_says_there_was_none(login):
    body = reallocation("280.00")
    del body["supporting_data"]
    proposal = evaluated(body)
    assert proposal.supporting_data == {}

    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))

    supporting = re.search(
        r'<div class="form-row field-supporting_data_display">.*?<div class="readonly">(.*?)</div>',
        page.text,
        re.S,
    )
    assert supporting, "no supporting data row"
    assert supporting[1] == "None: optimizer sent no supporting data with this proposal."


def test_an_operator_withdraws_a_proposal_for_its_agent_and_the_agent_learns_it(login, optimizer):
    proposal = evaluated()
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert 'id="withdraw-form"' in page.text and "Why, for the agent" in page.text
    response = decided_from_page(
        login("operator"),
        "withdraw",
        proposal.pk,
        {"note": "  The owner paused this account's changes.  "},
        follow=True,
    )
    assert (
        f"Proposal #{proposal.pk} is withdrawn for optimizer; the agent learns it as feedback, "
        "with your note." in response.text
    )
    record = Proposal.history.filter(id=proposal.pk).latest("history_date")
    assert (record.status, record.history_actor) == ("withdrawn", "operator")
    assert record.history_change_reason == (
        "withdrawn by operator for the agent: The owner paused this account's changes."
    )
    # Its page says who withdrew it, when and why, not only "No person decided it".
    page = login("auditor").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert (
        f"· operator withdrew it for its agent at {record.history_date:%Y-%m-%d %H:%M:%S} UTC: "
        "“<bdi>The owner paused this account&#x27;s changes.</bdi>”" in page.text
    )
    assert "No person decided it; operator withdrew it for optimizer." in page.text
    # The agent is told a person withdrew it, and why, on the proposal and in its feed.
    seen = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
    assert (seen["status"], seen["withdrawal"]) == (
        "withdrawn",
        {"by": "reviewer", "note": "The owner paused this account's changes."},
    )
    feed = optimizer.get("/api/v1/feedback/").json()["results"]
    assert [(item["proposal"], item["kind"], item["note"]) for item in feed] == [
        (proposal.pk, "withdrawn", "The owner paused this account's changes.")
    ]


def test_an_agent_withdrawing_its_own_proposal_is_told_it_did_and_gets_no_feedback(
    optimizer, login
):
    proposal = evaluated()
    answer = optimizer.post(f"/api/v1/proposals/{proposal.pk}/withdraw/").json()
    assert (answer["status"], answer["withdrawal"]) == ("withdrawn", {"by": "agent", "note": ""})
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    # To the second, as the page's other status lines (rejected, superseded, failed, expired)
    # say when (it read to the minute), and in the words of the bulk confirmation and the
    # messages (it read "by optimizer itself").
    withdrawn_at = withdrawal_seen(Proposal.objects.get(pk=proposal.pk)).at
    assert f"· Its agent withdrew it at {withdrawn_at:%Y-%m-%d %H:%M:%S} UTC" in page.text
    assert "No person decided it." in page.text
    assert optimizer.get("/api/v1/feedback/").json()["results"] == []
    waiting = optimizer.get(f"/api/v1/proposals/{evaluated().pk}/").json()
    assert waiting["withdrawal"] is None


def test_an_agents_withdrawal_note_cannot_turn_the_words_around_it(optimizer, login):
    # A right-to-left override in the note ran on past it: the page's closing quote showed
    # before the note's last words, as if they were not the agent's.
    proposal = evaluated()
    note = "Approved by operator \u202eeht no"
    answer = optimizer.post(
        f"/api/v1/proposals/{proposal.pk}/withdraw/", {"note": note}, format="json"
    )
    assert answer.status_code == 200, answer.content

    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))

    # Isolated (HTML's <bdi>): its direction ends where the note does, inside the quotes.
    said = page.text.split('id="withdrawal"')[1].split("</span>")[0]
    assert said.endswith(f": “<bdi>{note}</bdi>”")


def test_a_withdrawal_for_the_agent_without_a_note_still_tells_it(login, optimizer):
    proposal = evaluated()
    decided_from_page(login("operator"), "withdraw", proposal.pk)
    seen = optimizer.get(f"/api/v1/proposals/{proposal.pk}/").json()
    assert seen["withdrawal"] == {"by": "reviewer", "note": ""}
    assert [item["kind"] for item in optimizer.get("/api/v1/feedback/").json()["results"]] == [
        "withdrawn"
    ]
    record = Proposal.history.filter(id=proposal.pk).latest("history_date")
    assert record.history_change_reason == "withdrawn by operator for the agent"


def test_proposals_withdrawn_before_the_column_are_told_apart_from_their_history(login, optimizer):
    """Migration approvals 0026 reads who withdrew each proposal withdrawn before it from the
    proposal's history: the agent, or a person for it; and records it in that history, as
    every change of a proposal is recorded (the auditor sees where the value came from)."""
    by_agent, by_reviewer = evaluated(), evaluated()
    optimizer.post(f"/api/v1/proposals/{by_agent.pk}/withdraw/")
    decided_from_page(login("operator"), "withdraw", by_reviewer.pk)
    Proposal.objects.update(withdrawn_by="")  # as they were before the column
    records_before = Proposal.history.count()

    migration = importlib.import_module("approvals.migrations.0026_proposal_withdrawn_by")
    state = MigrationExecutor(connection).loader.project_state(
        ("approvals", "0026_proposal_withdrawn_by")
    )
    migration.withdrawn_by_from_history(state.apps, None)

    assert dict(Proposal.objects.values_list("pk", "withdrawn_by")) == {
        by_agent.pk: "agent",
        by_reviewer.pk: "reviewer",
    }
    assert Proposal.history.count() == records_before + 2
    for proposal, by in ((by_agent, "agent"), (by_reviewer, "reviewer")):
        latest = Proposal.history.filter(id=proposal.pk).latest("history_id")
        assert (latest.withdrawn_by, latest.status, latest.history_type) == (by, "withdrawn", "~")
        assert (latest.history_actor_kind, latest.history_actor) == ("system", "migration")
        assert latest.history_change_reason == "who withdrew it, read from its history"


def test_a_withdrawal_with_a_note_too_long_or_by_an_auditor_changes_nothing(login):
    proposal = evaluated()
    response = decided_from_page(
        login("operator"),
        "withdraw",
        proposal.pk,
        {"note": "x" * 20_000},
        follow=True,
    )
    assert "Not saved" in response.text
    refused = decided_from_page(login("auditor"), "withdraw", proposal.pk, {"note": "stop"})
    assert refused.status_code == 403
    proposal.refresh_from_db()
    assert (proposal.status, proposal.withdrawn_by) == (ProposalStatus.PENDING_REVIEW, "")
    assert not Feedback.objects.filter(proposal=proposal).exists()


def test_the_filters_in_force_are_named_for_a_screen_reader(login):
    """The queue's filters in force were told apart from the others by their colour and a
    bar beside them: a screen reader read each choice alike. Each filter's choice in force
    is its current one (aria-current), and only that one."""
    evaluated(reallocation("900.00"))

    page = login("operator").get(f"{CHANGELIST}?risk=high&action_type=budget_reallocation").text

    in_force = {
        filter_title: re.findall(r'<a href="[^"]*" aria-current="true">([^<]+)</a>', choices)
        for filter_title, choices in re.findall(
            r'<details data-filter-title="([^"]+)".*?>(.*?)</details>', page, re.S
        )
    }
    assert in_force == {
        "status": ["Pending review"],
        "decision due": ["All"],
        "who was told": ["All"],
        "risk": ["High (70+)"],
        "action type": ["budget reallocation"],
        "agent": ["All"],
        "channel": ["All"],
    }


def test_show_counts_counts_the_statuses_too(login):
    """ "Show counts" put a count beside every filter's choices but the status's, the one an
    operator asks first ("how many failed?"): its choices stayed bare. Each status now says
    how many proposals the other filters leave in it, "All" all of them."""
    waiting = [evaluated(reallocation(amount)) for amount in ("200.00", "210.00")]
    evaluated(reallocation("220.00"))
    Proposal.objects.filter(pk=waiting[0].pk).update(status=ProposalStatus.FAILED)

    page = login("operator").get(f"{CHANGELIST}?_facets=True")
    choices = re.findall(
        r"<li[^>]*>\s*<a [^>]*>(.*?)</a>", page.text.split('id="changelist-filter"')[1]
    )
    assert "Pending review (2)" in choices and "Failed (1)" in choices, choices
    assert "Executed (0)" in choices and "All (3)" in choices

    low = login("operator").get(f"{CHANGELIST}?_facets=True&risk=low")
    assert "Pending review (0)" in html.unescape(low.text)  # within the other filters
