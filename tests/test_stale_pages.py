"""A decision is of the action its reviewer's page showed. Under the two-person rule, a
colleague may edit and approve a proposal while another reviewer has its page open; the
other's approval, from the page as loaded, must not approve the edited action unseen (an
attack had a +18.8% bid raised by 1025% so: the second operator's click on a page that read
"0.80 → 0.95" executed 9.00)."""

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse

from approvals.models import Decision, Proposal, ProposalStatus
from approvals.services.decisions import payload_seen
from feedback.models import Feedback
from ledger.models import Campaign
from notifications.models import Claim
from policies.models import Policy
from tests.conftest import decided_from_page, reallocation, seen_on_confirmation
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
    decided_from_page(
        logged_in(colleague),
        "edit-approve",
        proposal.pk,
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
        decided_from_page(logged_in(colleague), "approve", proposal.pk, {"note": ""})
    client = logged_in(operator)
    selected = {"action": "approve_selected", "_selected_action": [edited.pk, untouched.pk]}
    confirmation = client.post(CHANGELIST, selected)
    seen = dict(re.findall(r'name="seen-(\d+)" value="([0-9a-f]+)"', confirmation.text))

    # A third operator edits one while the confirmation page is open (a new round, 1 of 2).
    third = type(operator).objects.create_user("third-operator", is_staff=True)
    third.groups.set(operator.groups.all())
    decided_from_page(
        logged_in(third), "edit-approve", edited.pk, {"edit-amount": "900.00", "edit-note": ""}
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
    decided_from_page(logged_in(operator), "approve", proposal.pk, {"note": ""})

    done = decided_from_page(
        logged_in(colleague),
        "edit-approve",
        proposal.pk,
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
    decided_from_page(
        logged_in(colleague),
        "edit-approve",
        proposal.pk,
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


# Each decision form of a proposal's page, what it posts (a note typed at length among it),
# and what was typed that the page shows again after a refusal.
DECISION_FORMS = {
    "approve": ({"note": "Typed at length, kept."}, "Typed at length, kept."),
    "edit-approve": ({"edit-amount": "300.00", "edit-note": "Typed, kept."}, "Typed, kept."),
    "reject": ({"reason_code": "too_aggressive", "note": "Typed, kept."}, "Typed, kept."),
    "withdraw": ({"note": "Typed, kept."}, "Typed, kept."),
}


def not_from_its_page(proposal) -> str:
    return (
        f"Nothing was decided: this decision did not come from proposal #{proposal.pk}'s page "
        "as it was shown to you. Read the page as it is now, and decide again."
    )


def what_a_decision_leaves(proposal) -> tuple:
    """What any decision would change: the proposal, its history, its decisions, the
    feedback to its agent, a claim on it, the console's log."""
    proposal = Proposal.objects.get(pk=proposal.pk)
    return (
        proposal.status,
        proposal.payload,
        proposal.withdrawn_by,
        Proposal.history.filter(id=proposal.pk).count(),
        Decision.objects.filter(proposal=proposal).count(),
        Feedback.objects.filter(proposal=proposal).count(),
        Claim.objects.filter(proposal=proposal).count(),
        LogEntry.objects.count(),
    )


@pytest.mark.parametrize("act", list(DECISION_FORMS))
@pytest.mark.parametrize(
    "seen",
    [None, "", "not a fingerprint", "0" * 31, "A" * 32, "0" * 32 + "0", "0" * 32 + "\n"],
    ids=["absent", "empty", "words", "too-short", "upper-case", "too-long", "trailing-newline"],
)
def test_a_decision_that_does_not_say_how_its_page_showed_the_action_decides_nothing(
    operators, act, seen
):
    """A decision posted without the action as its page showed it (a script's post, a form
    made elsewhere) was taken unchecked: an operator's POST of the CSRF token alone approved,
    and executed, a proposal. It is refused, changes nothing, and its person is shown the
    proposal's page as it is, with what they typed."""
    operator, _ = operators
    proposal = evaluated(reallocation("280.00"))
    before = what_a_decision_leaves(proposal)
    data, typed = DECISION_FORMS[act]
    client = logged_in(operator)

    refused = client.post(
        reverse(f"admin:approvals_proposal_{act}", args=[proposal.pk]),
        data if seen is None else {**data, "seen": seen},
        follow=True,
    )

    # Post/Redirect/Get, to the proposal's page, as other refusals are.
    change_url = reverse("admin:approvals_proposal_change", args=[proposal.pk])
    assert refused.redirect_chain == [(change_url, 302)]
    assert what_a_decision_leaves(proposal) == before
    assert messages_of(refused) == [not_from_its_page(proposal)]
    form = re.search(rf'<form [^>]*id="{act}-form".*?</form>', refused.text, re.S).group(0)
    assert typed in form and "did not come from proposal" in form
    # Its form now says how the page shows it: sent, it decides.
    assert seen_on(refused) == payload_seen(proposal.payload)
    decided_from_page(client, act, proposal.pk, data)
    assert what_a_decision_leaves(proposal) != before


def test_a_withdrawal_from_a_page_loaded_before_a_colleagues_edit_withdraws_nothing(
    operators, two_approvals
):
    operator, colleague = operators
    proposal = evaluated(reallocation("280.00"))
    page = logged_in(operator).get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    decided_from_page(
        logged_in(colleague),
        "edit-approve",
        proposal.pk,
        {"edit-amount": "900.00", "edit-note": ""},
    )
    before = what_a_decision_leaves(proposal)

    refused = logged_in(operator).post(
        reverse("admin:approvals_proposal_withdraw", args=[proposal.pk]),
        {"note": "Its owner asked.", "seen": seen_on(page)},
        follow=True,
    )

    assert what_a_decision_leaves(proposal) == before
    assert messages_of(refused) == [
        f"Proposal #{proposal.pk} was edited since it was shown to you: it now reads "
        f"“{proposal_now(proposal).summary}”. Nothing was decided; read it again before you decide."
    ]
    decided_from_page(logged_in(operator), "withdraw", proposal.pk, {"note": "Its owner asked."})
    assert proposal_now(proposal).status == ProposalStatus.WITHDRAWN


def test_every_decision_form_of_a_proposals_page_sends_the_action_as_the_page_shows_it(
    operators,
):
    """The page, and the page shown again with a form refused as typed (400), post the action
    as they show it with each decision."""
    operator, _ = operators
    proposal = evaluated(reallocation("280.00"))
    client = logged_in(operator)
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    again = client.post(
        reverse("admin:approvals_proposal_edit-approve", args=[proposal.pk]),
        {"edit-amount": "not an amount", "edit-note": "", "seen": seen_on(page)},
    )
    assert again.status_code == 400

    for shown in (page, again):
        for act in DECISION_FORMS:
            form = re.search(rf'<form [^>]*id="{act}-form".*?</form>', shown.text, re.S).group(0)
            assert f'name="seen" value="{payload_seen(proposal.payload)}"' in form, act


@pytest.mark.parametrize("seen", [None, "not a fingerprint"])
def test_a_bulk_confirmation_that_does_not_say_how_it_showed_each_decides_none(operators, seen):
    """A bulk confirmation posted without each proposal as its page showed it was decided
    unchecked, as a single decision was: it is shown the confirmation again, as the
    proposals are now, with the note typed, and decides none."""
    operator, _ = operators
    proposals = [evaluated(reallocation(amount)) for amount in ("280.00", "150.00")]
    before = [what_a_decision_leaves(proposal) for proposal in proposals]
    client = logged_in(operator)
    selected = {"action": "approve_selected", "_selected_action": [p.pk for p in proposals]}
    posted = {**selected, "confirm": "yes", "note": "Both, typed at length."}
    if seen is not None:  # one of the two says it; the other does not
        posted |= {f"seen-{proposals[0].pk}": payload_seen(proposals[0].payload)}
        posted |= {f"seen-{proposals[1].pk}": seen}

    shown_again = client.post(CHANGELIST, posted)

    assert shown_again.status_code == 400
    assert [what_a_decision_leaves(proposal) for proposal in proposals] == before
    assert messages_of(shown_again) == [
        "Nothing was decided: this confirmation did not come from its page as it was shown "
        "to you. Read the proposals below as they are now, and confirm again."
    ]
    assert "Both, typed at length." in shown_again.text
    assert seen_on_confirmation(shown_again) == {
        f"seen-{p.pk}": payload_seen(p.payload) for p in proposals
    }
    confirmed = client.post(CHANGELIST, {**posted, **seen_on_confirmation(shown_again)})
    assert confirmed.status_code == 302
    assert all(what_a_decision_leaves(p)[3] > b[3] for p, b in zip(proposals, before, strict=True))
