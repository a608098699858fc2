"""A proposal a reviewer edited that then ended without running, superseded or withdrawn, as
its agent is told it, in the words an expired one's agent is told it
(``test_expired_after_an_edit_told``). Under a two-person rule one operator approved a bid raise
as proposed (2.00 → 2.60), a second edited it to 2.40 with a note and approved it, which started
a new round. Then the agent's own newer proposal for the same bid ran first, or an operator
withdrew it for the agent. Its ``superseded`` and ``withdrawn`` feedback and its callback's
``reason`` said nothing of the edit (only the callback's ``edits`` and ``proposed_summary``
did): the agent read "superseded" or "withdrawn" beside a summary it never proposed."""

import html

import pytest
from django.urls import reverse

from approvals.models import Proposal
from approvals.services.decisions import proposal_approve
from feedback.models import CallbackEvent
from policies.models import Policy
from tests.conftest import bid_adjustment, decided_from_page, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

PROPOSED = "bid of brand-search 2.00 → 2.60 USD (+30.0%)"
EDITED = "bid of brand-search 2.00 → 2.40 USD (+20.0%)"
NOTE = "2.40 is enough for now"
EDIT_DIFF = {"new_bid": {"from": "2.60", "to": "2.40"}}


def edit_said(ended: str, noted: str = f": {NOTE}") -> str:
    return (
        f"It {ended} as a reviewer edited it, not as it proposed it: it proposed {PROPOSED}; "
        f"as edited, {EDITED}.\nA reviewer edited it (new_bid: 2.60 → 2.40){noted}"
    )


# The edit told after a rejection in its own round, whose notes say its editor's note already
# ("Reviewer 1 approved with edits: 2.40 is enough for now"): it was said twice in one note.
REJECTED_AS_EDITED = edit_said("was rejected", noted=".")


def edited_by_the_second_of_two(operators, optimizer) -> int:
    """A bid raise to 2.60 one operator approved and a second edited to 2.40 and approved:
    waiting for one more approval of the edit."""
    first, second = operators
    Policy.objects.filter(action_type="bid_adjustment").update(required_approvals=2)
    submitted = optimizer.post("/api/v1/proposals/", bid_adjustment("2.60"), format="json")
    assert submitted.json()["summary"] == PROPOSED
    proposal_id = submitted.json()["id"]
    proposal_approve(proposal_id=proposal_id, reviewer=first)
    proposal_approve(
        proposal_id=proposal_id,
        reviewer=second,
        edited_payload={"campaign": "brand-search", "new_bid": "2.40"},
        note=NOTE,
    )
    assert Proposal.objects.get(pk=proposal_id).status == "pending_review"
    return proposal_id


def told(optimizer, endpoint, proposal_id: int, kind: str) -> tuple[dict, dict]:
    """Its feedback record, as the agent pulls it, and its callback, as its endpoint got it."""
    wait_until(
        lambda: CallbackEvent.objects.filter(
            proposal_id=proposal_id, type=f"proposal.{kind}", status="delivered"
        ).exists()
    )
    feed = optimizer.get("/api/v1/feedback/").json()["results"]
    [record] = [item for item in feed if item["proposal"] == proposal_id]
    [event] = [
        event
        for event in endpoint.events()
        if event["proposal"]["id"] == proposal_id and event["type"] == f"proposal.{kind}"
    ]
    assert record["kind"] == kind
    assert event["proposal"]["proposed_summary"] == PROPOSED
    assert event["proposal"]["summary"] == EDITED
    assert event["edits"] == EDIT_DIFF
    return record, event


def history_told(login, proposal_id: int) -> str:
    page = login("auditor").get(reverse("admin:approvals_proposal_history", args=[proposal_id]))
    assert page.status_code == 200
    return html.unescape(page.text)


def test_an_agent_is_told_the_edit_a_reviewer_made_before_its_newer_proposal_superseded_it(
    callback_endpoint, operators, optimizer, login
):
    endpoint = callback_endpoint(200)
    proposal_id = edited_by_the_second_of_two(operators, optimizer)

    # The agent's newer proposal for the same bid: +5%, its policy runs it at once.
    newer = optimizer.post("/api/v1/proposals/", bid_adjustment("2.10"), format="json").json()
    assert newer["status"] == "approved"
    wait_until(lambda: Proposal.objects.get(pk=proposal_id).status == "superseded")

    superseded = (
        f"Superseded: brand-search's bid is 2.10, was 2.00 (#{newer['id']} changed it first: "
        "bid of brand-search 2.00 → 2.10 USD (+5.0%)). It was not executed."
    )
    record, event = told(optimizer, endpoint, proposal_id, "superseded")
    # Its feed: what moved, then what it proposed, what was superseded and the editor's note.
    # Its diff stays the value it saw and the value now, which agents read it for.
    assert record["note"] == f"{superseded}\n{edit_said('was superseded')}"
    assert record["diff"] == {"brand-search.bid": {"saw": "2.00", "now": "2.10"}}
    # Its callback's reason says the same.
    assert event["reason"] == f"{superseded}\n{edit_said('was superseded')}"
    # The auditor reads among what its agent was told that it was superseded as edited.
    assert edit_said("was superseded") in history_told(login, proposal_id)


def test_an_agent_is_told_the_edit_a_reviewer_made_before_a_reviewer_withdrew_it(
    callback_endpoint, operators, optimizer, login
):
    endpoint = callback_endpoint(200)
    proposal_id = edited_by_the_second_of_two(operators, optimizer)

    withdrawn = decided_from_page(
        login("operator"), "withdraw", proposal_id, {"note": "The owner paused changes."}
    )
    assert withdrawn.status_code == 302
    assert Proposal.objects.get(pk=proposal_id).status == "withdrawn"

    record, event = told(optimizer, endpoint, proposal_id, "withdrawn")
    # Its feed: the reviewer's note, then the edit, as an expired one's says it; its diff the
    # edit field by field, as an approved_with_edits record's.
    assert record["note"] == f"The owner paused changes.\n{edit_said('was withdrawn')}"
    assert record["diff"] == EDIT_DIFF
    assert event["reason"] == (
        "withdrawn by a reviewer for the agent: The owner paused changes.\n"
        f"{edit_said('was withdrawn')}"
    )
    assert edit_said("was withdrawn") in history_told(login, proposal_id)


REJECTED_BY_THE_FIRST = (
    "Reviewer 1 approved with edits: 2.40 is enough for now\n"
    "Reviewer 2 rejected (Too aggressive): Not this week."
)


@pytest.mark.parametrize("approved_first", [True, False], ids=["new-round", "first-round"])
def test_an_agent_is_told_the_edit_a_reviewer_made_before_another_rejected_it(
    callback_endpoint, operators, optimizer, login, approved_first
):
    """Under a two-person rule the second operator edits the bid to 2.40 with a note and
    approves it, which counts as one of the two approvals (in a new round, where the first
    operator had approved it as proposed); the first operator then rejects it from its page.
    Its ``rejected`` feedback said who approved with edits and the note, with an empty
    ``diff``, and its callback's ``reason`` the same: nothing said what the edit was, beside
    a summary the agent never proposed. They say it in the words of the other endings,
    the editor's note once, with their decision: the edit's line said it again."""
    _, second = operators
    endpoint = callback_endpoint(200)
    if approved_first:
        proposal_id = edited_by_the_second_of_two(operators, optimizer)
    else:
        Policy.objects.filter(action_type="bid_adjustment").update(required_approvals=2)
        submitted = optimizer.post("/api/v1/proposals/", bid_adjustment("2.60"), format="json")
        proposal_id = submitted.json()["id"]
        proposal_approve(
            proposal_id=proposal_id,
            reviewer=second,
            edited_payload={"campaign": "brand-search", "new_bid": "2.40"},
            note=NOTE,
        )
    assert Proposal.objects.get(pk=proposal_id).approvals_this_round == 1

    rejected = decided_from_page(
        login("operator"),
        "reject",
        proposal_id,
        {"reason_code": "too_aggressive", "note": "Not this week."},
    )
    assert rejected.status_code == 302
    assert Proposal.objects.get(pk=proposal_id).status == "rejected"

    record, event = told(optimizer, endpoint, proposal_id, "rejected")
    # Its feed: what each reviewer of the round decided and wrote, then the edit it was
    # rejected as, as an expired one's says it; its diff the edit, field by field.
    assert record["note"] == f"{REJECTED_BY_THE_FIRST}\n{REJECTED_AS_EDITED}"
    assert record["note"].count(NOTE) == 1
    assert record["diff"] == EDIT_DIFF
    assert record["reason_code"] == "too_aggressive"
    assert event["reason"] == (
        f"rejected by a reviewer: Too aggressive\n{REJECTED_BY_THE_FIRST}\n{REJECTED_AS_EDITED}"
    )
    assert REJECTED_AS_EDITED in history_told(login, proposal_id)
