"""A proposal routed to a person because another, approved and about to execute, changes the
same value first: once a kill switch sends that one back to a person, the waiting one's page
and the API's ``verdict.reasons`` say that one was sent back and supersedes it only if
approved again, not that it is about to execute and supersede it; the recorded reason (and
its history) stays as it was said."""

import html
import re

from django.urls import reverse

from approvals.models import Proposal
from approvals.services.decisions import proposal_approve
from policies.receivers import HELD_BACK_NOW
from tests.conftest import bid_adjustment
from tests.test_kill_switch_holds_execution import engage, person

URL = "/api/v1/proposals/"
STALE = "is superseded once that one executes"


def page_of(client, pk: int) -> str:
    text = client.get(reverse("admin:approvals_proposal_change", args=[pk])).text
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def test_a_move_ahead_sent_back_by_a_kill_switch_is_said_so_on_the_page_and_the_api(
    agent_client, optimizer, login
):
    ahead = optimizer.post(URL, bid_adjustment("2.12"), format="json").json()
    waiting = optimizer.post(URL, bid_adjustment("2.14"), format="json").json()
    others = agent_client("copywriter").post(URL, bid_adjustment("2.16"), format="json").json()
    assert ahead["status"] == "approved"
    routed = (
        f"#{ahead['id']}, approved and about to execute, changes brand-search's bid first: "
        "this one waits for a person, and is superseded once that one executes."
    )
    assert waiting["verdict"]["reasons"] == [routed]
    recorded = Proposal.objects.get(pk=waiting["id"]).verdict_reasons

    assert getattr(engage(), HELD_BACK_NOW).held == [ahead["id"]]  # held as it is saved
    assert Proposal.objects.get(pk=ahead["id"]).status == "pending_review"

    sent_back = (
        f"#{ahead['id']} was approved and about to execute when this one was routed, changing "
        "brand-search's bid first; it has been sent back to a person since, and supersedes "
        "this one only if approved again."
    )
    verdict = optimizer.get(f"{URL}{waiting['id']}/").json()["verdict"]
    assert verdict["reasons"] == [sent_back]
    assert verdict["routed_reasons"] == [sent_back]
    listed = {p["id"]: p for p in optimizer.get(URL).json()["results"]}
    assert listed[waiting["id"]]["verdict"]["reasons"] == [sent_back]
    page = page_of(login("operator"), waiting["id"])
    assert sent_back in page and STALE not in page
    # Another agent's, not named to it, reads so in its words.
    told = agent_client("copywriter").get(f"{URL}{others['id']}/").json()["verdict"]["reasons"]
    assert (
        "Another agent's proposal was approved and about to execute when this one was routed, "
        "changing brand-search's bid first; it has been sent back to a person since, and "
        "supersedes this one only if approved again."
    ) in told
    assert not any(STALE in reason for reason in told)
    # Nothing recorded was rewritten: the reason is read as it stands when shown.
    assert Proposal.objects.get(pk=waiting["id"]).verdict_reasons == recorded

    # Approved again (while the switch holds): about to execute again, as routed.
    proposal_approve(proposal_id=ahead["id"], reviewer=person())
    assert optimizer.get(f"{URL}{waiting['id']}/").json()["verdict"]["reasons"] == [routed]
    assert routed in page_of(login("operator"), waiting["id"])
