"""A decision is of the action its reviewer's page showed. Under the two-person rule, a
colleague may edit and approve a proposal while another reviewer has its page open; the
other's approval, from the page as loaded, must not approve the edited action unseen (an
attack had a +18.8% bid raised by 1025% so: the second operator's click on a page that read
"0.80 → 0.95" executed 9.00)."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from approvals.models import Decision, ProposalStatus
from ledger.models import Campaign
from policies.models import Policy
from tests.conftest import reallocation
from tests.factories import evaluated

CHANGELIST = reverse("admin:approvals_proposal_changelist")


@pytest.fixture
def two_approvals(demo_world):
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def seen_on(page) -> str:
    """The hidden field a decision form sends: the action as the page shows it."""
    found = re.search(r'name="seen" value="([0-9a-f]+)"', page.text)
    return found.group(1) if found else ""


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.mark.parametrize(
    ("act", "form"),
    [("approve", {"note": ""}), ("reject", {"reason_code": "too_aggressive", "note": ""})],
)
def test_a_decision_from_a_page_loaded_before_a_colleagues_edit_decides_nothing(
    operators, two_approvals, act, form
):
    operator, colleague = operators
    proposal = evaluated(reallocation("280.00"))
    page = logged_in(operator).get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert "280.00" in page.text

    # Meanwhile the colleague moves 900 a day instead, and approves (1 of 2).
    logged_in(colleague).post(
        reverse("admin:approvals_proposal_edit-approve", args=[proposal.pk]),
        {"edit-amount": "900.00", "edit-note": ""},
    )

    done = logged_in(operator).post(
        reverse(f"admin:approvals_proposal_{act}", args=[proposal.pk]),
        {**form, "seen": seen_on(page)},
        follow=True,
    )

    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    assert proposal.payload["amount"] == "900.00"
    assert Decision.objects.filter(proposal=proposal, reviewer=operator).count() == 0
    assert Campaign.objects.get(external_id="brand-search").daily_budget == 1000
    assert messages_of(done) == [
        f"Proposal #{proposal.pk} was edited since it was shown to you: it now reads "
        f"“{proposal.summary}”. Nothing was decided; read it again before you decide."
    ]
    # Read again, the page decides the action it now shows.
    again = logged_in(operator).get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert "900.00" in again.text
    logged_in(operator).post(
        reverse(f"admin:approvals_proposal_{act}", args=[proposal.pk]),
        {**form, "seen": seen_on(again)},
    )
    proposal.refresh_from_db()
    assert proposal.status == ("approved" if act == "approve" else "rejected")


def test_a_bulk_approval_confirmed_after_a_colleagues_edit_leaves_that_one_waiting(
    operators, two_approvals
):
    operator, colleague = operators
    edited, untouched = evaluated(reallocation("280.00")), evaluated(reallocation("150.00"))
    for proposal in (edited, untouched):  # each has the colleague's approval as proposed
        logged_in(colleague).post(
            reverse("admin:approvals_proposal_approve", args=[proposal.pk]), {"note": ""}
        )
    client = logged_in(operator)
    selected = {"action": "approve_selected", "_selected_action": [edited.pk, untouched.pk]}
    confirmation = client.post(CHANGELIST, selected)
    seen = dict(re.findall(r'name="seen-(\d+)" value="([0-9a-f]+)"', confirmation.text))

    # A third operator edits one while the confirmation page is open (a new round, 1 of 2).
    third = type(operator).objects.create_user("third-operator", is_staff=True)
    third.groups.set(operator.groups.all())
    logged_in(third).post(
        reverse("admin:approvals_proposal_edit-approve", args=[edited.pk]),
        {"edit-amount": "900.00", "edit-note": ""},
    )

    done = client.post(
        CHANGELIST,
        {**selected, "confirm": "yes", "note": ""}
        | {f"seen-{pk}": value for pk, value in seen.items()},
        follow=True,
    )

    edited.refresh_from_db()
    untouched.refresh_from_db()
    assert edited.status == ProposalStatus.PENDING_REVIEW
    assert not Decision.objects.filter(proposal=edited, reviewer=operator).exists()
    assert untouched.status in (ProposalStatus.APPROVED, ProposalStatus.EXECUTED)
    assert set(seen) == {str(edited.pk), str(untouched.pk)}
    assert any(
        f"Proposal #{edited.pk} was edited since it was shown to you" in message
        for message in messages_of(done)
    )


def test_an_edit_that_starts_the_review_again_tells_its_editor_the_approvals_no_longer_count(
    operators, two_approvals
):
    """The operator approved (1 of 2); the colleague's edit makes it another action, so that
    approval no longer counts. The colleague is told so, not only that theirs is counted."""
    operator, colleague = operators
    proposal = evaluated(reallocation("280.00"))
    logged_in(operator).post(
        reverse("admin:approvals_proposal_approve", args=[proposal.pk]), {"note": ""}
    )

    done = logged_in(colleague).post(
        reverse("admin:approvals_proposal_edit-approve", args=[proposal.pk]),
        {"edit-amount": "200.00", "edit-note": ""},
        follow=True,
    )

    assert messages_of(done) == [
        "Your edit started its review again: the approvals given before were of the action "
        "before it, and no longer count. Your approval is counted: proposal "
        f"#{proposal.pk} has 1 of 2 approvals and waits for another person's."
    ]


@pytest.mark.parametrize(
    ("act", "form", "kept"),
    [
        (
            "approve",
            {"note": "Fine by me: generic-search converts better."},
            [r'<textarea name="note"[^>]*id="id_approve-note"[^>]*>\s*Fine by me'],
        ),
        (
            "reject",
            {"reason_code": "too_aggressive", "note": "Move it in two steps."},
            [
                r'<option value="too_aggressive" selected>Too aggressive</option>',
                r'<textarea name="note"[^>]*id="id_reject-note"[^>]*>\s*Move it in two steps.',
            ],
        ),
    ],
)
def test_a_refused_decision_shows_the_page_again_with_what_its_reviewer_typed(
    operators, two_approvals, act, form, kept
):
    """A decision the platform refuses (here: its page went stale under a colleague's edit)
    shows the page again, as it is now, with the reviewer's note and reason as typed and why
    beside the form: the page used to reload empty, a long note lost, and the reason said only
    at the top, far from the button a keyboard user had just pressed."""
    operator, colleague = operators
    proposal = evaluated(reallocation("280.00"))
    page = logged_in(operator).get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    logged_in(colleague).post(
        reverse("admin:approvals_proposal_edit-approve", args=[proposal.pk]),
        {"edit-amount": "900.00", "edit-note": ""},
    )

    client = logged_in(operator)
    refused = client.post(
        reverse(f"admin:approvals_proposal_{act}", args=[proposal.pk]),
        {**form, "seen": seen_on(page)},
        follow=True,
    )

    # Redirected to the proposal's page (Post/Redirect/Get): reloading it sends nothing again.
    change_url = reverse("admin:approvals_proposal_change", args=[proposal.pk])
    assert refused.redirect_chain == [(change_url, 302)]
    assert refused.status_code == 200
    assert not Decision.objects.filter(proposal=proposal, reviewer=operator).exists()
    said = (
        f"Proposal #{proposal.pk} was edited since it was shown to you: it now reads "
        f"“{proposal_now(proposal).summary}”. Nothing was decided; read it again before you decide."
    )
    assert messages_of(refused) == [said]
    decision_form = re.search(
        rf'<form [^>]*id="{act}-form".*?</form>', refused.content.decode(), re.S
    ).group(0)
    for typed in kept:
        assert re.search(typed, decision_form), typed
    assert "was edited since it was shown to you" in decision_form
    # The page is as it is now: its form decides the action it now shows.
    assert seen_on(refused) != seen_on(page)
    assert "900.00" in refused.content.decode()
    # Reloaded, it is the page as it is: the refusal was said once, and nothing is sent.
    reloaded = client.get(change_url)
    assert messages_of(reloaded) == []
    assert "was edited since it was shown to you" not in reloaded.text
    assert not Decision.objects.filter(proposal=proposal, reviewer=operator).exists()


def proposal_now(proposal):
    proposal.refresh_from_db()
    return proposal
