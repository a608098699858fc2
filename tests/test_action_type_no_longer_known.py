"""A proposal whose action type the platform no longer has (a plugin removed, a type renamed
since it was stored). The review queue and the proposal's page were server errors, for
everyone, from one such proposal; its execution was a crash. Now every place that reads it
says plainly what is the case: the queue lists it with its stored name, "no longer known";
its page says it cannot be approved, edited or retried, and can be rejected or withdrawn;
its execution fails in those words, writing nothing; messages, reports and exports read it."""

import html
import io
import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve, proposal_retry, proposals_approve
from executors.runner import proposal_execute
from hitlproject.errors import Conflict
from ledger.models import Campaign
from notifications.digests import notifications_send_digests
from notifications.models import Delivery, Notification, NotificationStatus, ReachedBy, Route
from notifications.services import notifications_deliver
from policies.drafts import duplicate_initial
from policies.models import Policy
from tests.conftest import bid_adjustment, decided_from_page
from tests.factories import evaluated
from tests.slack_fake import shown_text

RETIRED = "retired_type"
GONE = "there is no action type “retired type” any more"
DEMO_ROUTE = "Demo: everything waiting, to the operators"


def retired(proposal: Proposal) -> Proposal:
    """The proposal as a deployment that dropped its type finds it, its history included
    (raw UPDATEs: the type's name is what was stored)."""
    Proposal.objects.filter(pk=proposal.pk).update(action_type=RETIRED)
    Proposal.history.filter(id=proposal.pk).update(action_type=RETIRED)
    proposal.refresh_from_db()
    return proposal


def said_on_its_page(proposal: Proposal) -> str:
    return (
        f"Proposal #{proposal.pk} no longer applies: {GONE}. Approving it would not carry it "
        "out: its execution would refuse it. It can be rejected or withdrawn."
    )


def shown(page) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


@pytest.fixture
def waiting(demo_world) -> Proposal:
    """A 20% bid raise (over the demo's 15% ceiling) waiting for an operator, its type then
    dropped from the platform."""
    proposal = evaluated(bid_adjustment("2.40"))
    assert proposal.status == ProposalStatus.PENDING_REVIEW
    return retired(proposal)


def test_the_queue_lists_it_by_its_stored_name_and_its_page_says_it_can_only_be_ended(
    waiting, login
):
    operator = login("operator")
    for client in (operator, login("auditor"), login("policy-owner")):
        queue = client.get(reverse("admin:approvals_proposal_changelist"))
        assert queue.status_code == 200
        [row] = [r for r in queue.text.split("<tr") if f"/{waiting.pk}/change/" in r]
        assert "retired_type (no longer known)" in shown_row(row)

    url = reverse("admin:approvals_proposal_change", args=[waiting.pk])
    page = operator.get(url)

    assert page.status_code == 200
    [note] = re.findall(r'<p class="errornote" id="no-longer-applies">(.*?)</p>', page.text)
    assert html.unescape(note) == said_on_its_page(waiting)
    assert 'id="approve-form"' not in page.text
    assert 'id="reject-form"' in page.text  # an operator may end it
    assert login("auditor").get(url).status_code == 200

    refused = decided_from_page(operator, "approve", waiting.pk, follow=True)
    assert said_on_its_page(waiting) in [str(m) for m in refused.context["messages"]]
    edited = decided_from_page(
        operator,
        "edit-approve",
        waiting.pk,
        {"new_bid": "2.30"},
        follow=True,
    )
    assert any(
        str(m).startswith(f"Proposal #{waiting.pk} no longer applies: {GONE}.")
        for m in edited.context["messages"]
    )
    waiting.refresh_from_db()
    assert waiting.status == ProposalStatus.PENDING_REVIEW
    assert Campaign.objects.get(external_id="brand-search").bid == 2

    selected = {"action": "approve_selected", "_selected_action": [waiting.pk]}
    confirm = operator.post(reverse("admin:approvals_proposal_changelist"), selected)
    assert confirm.status_code == 200
    [outcome] = re.findall(r'<td class="bulk-outcome">(.*?)</td>', confirm.text, re.S)
    assert GONE in html.unescape(outcome)

    decided_from_page(
        operator,
        "reject",
        waiting.pk,
        {"reason_code": "other", "note": "Its type is gone."},
    )
    waiting.refresh_from_db()
    assert waiting.status == ProposalStatus.REJECTED
    assert operator.get(url).status_code == 200


def shown_row(row: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split())


def test_its_execution_fails_saying_so_and_writes_nothing(demo_world, login):
    """Approved while its type was known, then the type went before it ran."""
    proposal = evaluated(bid_adjustment("2.40"))
    proposal_approve(
        proposal_id=proposal.pk, reviewer=get_user_model().objects.get(username="operator")
    )
    retired(proposal)

    failed = proposal_execute(proposal_id=proposal.pk)

    assert failed.status == ProposalStatus.FAILED
    assert failed.executions.get().error == "There is no action type “retired type” any more."
    assert Campaign.objects.get(external_id="brand-search").bid == 2
    with pytest.raises(Conflict) as refused:
        proposal_retry(
            proposal_id=proposal.pk, reviewer=get_user_model().objects.get(username="operator")
        )
    assert refused.value.message == (
        f"Proposal #{proposal.pk} no longer applies: {GONE}. A retry would fail again: its "
        "execution would refuse it."
    )
    page = login("operator").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert page.status_code == 200
    assert "There is no action type “retired type” any more." in shown(page)


def test_one_executed_before_its_type_went_still_reads_as_it_happened(demo_world, login, optimizer):
    proposal = evaluated(bid_adjustment("2.10"))  # 5%: it runs on its own
    assert proposal_execute(proposal_id=proposal.pk).status == ProposalStatus.EXECUTED
    retired(proposal)

    page = login("auditor").get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert page.status_code == 200
    assert "2.00" in shown(page) and "2.10" in shown(page)
    detail = optimizer.get(f"/api/v1/proposals/{proposal.pk}/")
    assert detail.status_code == 200
    assert (detail.json()["status"], detail.json()["execution"]["status"]) == (
        "executed",
        "succeeded",
    )


def test_no_approval_reaches_it_as_proposed_edited_or_in_bulk_and_its_agent_may_withdraw_it(
    waiting, optimizer
):
    operator = get_user_model().objects.get(username="operator")
    for edited in (None, {"campaign": "brand-search", "new_bid": "2.30"}):
        with pytest.raises(Conflict) as refused:
            proposal_approve(proposal_id=waiting.pk, reviewer=operator, edited_payload=edited)
        assert refused.value.message == said_on_its_page(waiting)
    bulk = proposals_approve(proposal_ids=[waiting.pk], reviewer=operator)
    assert [refusal.message for refusal in bulk.refused] == [said_on_its_page(waiting)]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.decisions.count()) == (ProposalStatus.PENDING_REVIEW, 0)

    withdrawn = optimizer.post(f"/api/v1/proposals/{waiting.pk}/withdraw/", {}, format="json")

    assert withdrawn.status_code == 200, withdrawn.content
    assert withdrawn.json()["status"] == "withdrawn"


def test_the_operator_is_told_of_it_by_email_saying_it_can_only_be_ended(waiting):
    [told] = Notification.objects.filter(proposal=waiting, recipient__username="operator")
    Notification.objects.filter(pk=told.pk).update(
        status=NotificationStatus.PENDING, next_attempt_at=timezone.now()
    )

    [sent] = notifications_deliver(notification_ids=[told.pk])

    assert sent.status == NotificationStatus.SENT, sent.log
    [message] = [m for m in mail.outbox if m.to == ["operator@example.com"]]
    assert said_on_its_page(waiting) in " ".join(message.body.split())


def test_a_slack_digest_lists_it(demo_world, slack):
    route = Route.objects.get(name=DEMO_ROUTE)
    route.delivery, route.digest_minutes = Delivery.DIGEST, 1
    route.save()
    ReachedBy.objects.update_or_create(
        user=get_user_model().objects.get(username="operator"),
        defaults={"slack": True, "email": False},
    )
    proposal = retired(evaluated(bid_adjustment("2.40")))
    Notification.objects.filter(status=NotificationStatus.HELD).update(
        next_attempt_at=timezone.now()
    )

    assert notifications_send_digests() == 1

    [posted] = slack.sent("chat.postMessage")
    assert f"#{proposal.pk}" in shown_text(posted["blocks"])
    assert Notification.objects.get(proposal=proposal).status == NotificationStatus.SENT


def test_the_agent_api_reports_and_exports_read_it(waiting, optimizer, login):
    detail = optimizer.get(f"/api/v1/proposals/{waiting.pk}/")
    assert detail.status_code == 200
    assert detail.json()["action_type"] == RETIRED
    listed = optimizer.get("/api/v1/proposals/")
    assert listed.status_code == 200
    assert RETIRED in [item["action_type"] for item in listed.json()["results"]]
    assert optimizer.get("/api/v1/scorecard/?days=30").status_code == 200
    assert optimizer.get("/api/v1/feedback/").status_code == 200

    auditor = login("auditor")
    assert auditor.get("/admin/").status_code == 200  # the dashboard
    optimizer_page = reverse("admin:approvals_agent_change", args=[waiting.agent_id])
    assert auditor.get(optimizer_page + "?days=30").status_code == 200  # its scorecard
    today = timezone.localdate()
    period = {"since": str(today), "until": str(today + timedelta(days=1))}
    feedback = auditor.get(reverse("feedback-export"), {"agent": "optimizer", **period})
    assert feedback.status_code == 200
    audit = auditor.get("/admin/audit/export/", {**period, "format": "jsonl"})
    assert audit.status_code == 200
    records = [json.loads(line) for line in b"".join(audit.streaming_content).splitlines()]
    assert {
        r["fields"]["action_type"]
        for r in records
        if r["model"] == "approvals.proposal" and r["object_id"] == waiting.pk
    } == {RETIRED}
    simulated = auditor.get(reverse("admin:policies_policy_simulate"), period)
    assert simulated.status_code == 200
    assert simulated.context["report"].not_replayed == 1  # read, said as not replayable


def test_a_policy_for_a_type_no_longer_known_is_listed_and_opens(demo_world, login):
    policy = Policy.objects.get(name="Bid adjustments")
    Policy.objects.filter(pk=policy.pk).update(action_type=RETIRED)
    owner = login("policy-owner")

    listed = owner.get(reverse("admin:policies_policy_changelist"))
    assert listed.status_code == 200
    assert "retired_type (no longer known)" in shown(listed)
    assert owner.get(reverse("admin:policies_policy_change", args=[policy.pk])).status_code == 200


def simulation_page(client, **more) -> str:
    today = timezone.localdate()
    period = {"since": str(today), "until": str(today + timedelta(days=1)), **more}
    page = client.get(reverse("admin:policies_policy_simulate"), period)
    assert page.status_code == 200
    return shown(page).replace(" :", ":")  # a link's end, then its colon


def test_the_simulation_says_a_routing_of_a_type_gone_cannot_be_replayed_not_that_it_differs(
    demo_world, login
):
    """A 6% bid its policy let run, and a 20% one waiting for a person, the first's type then
    dropped. Replayed under the policies that decided them, every routing the platform can
    still read comes out as it happened; the one it cannot read was reported as going "to a
    human" instead, "decided by another policy", "held by: no policy matched": none of which
    happened. It is said as what it is, and counted in neither column."""
    ran = evaluated(bid_adjustment("2.12"))
    assert ran.status == ProposalStatus.APPROVED
    proposal_execute(proposal_id=ran.pk)
    waits = evaluated(bid_adjustment("1.80", campaign="generic-search"))
    assert waits.status == ProposalStatus.PENDING_REVIEW
    retired(ran)
    owner = login("policy-owner")

    said = simulation_page(owner)

    assert "1 proposal from" in said  # the one it replays
    assert "0 routings would have gone another way." in said
    assert "decided by another policy" not in said
    assert "no policy matched" not in said
    assert (
        f"1 routing cannot be replayed, and is counted in neither column: #{ran.pk} "
        f"{ran.summary}: there is no action type “retired type” any more." in said
    )
    # Happened and replayed alike, the one that waits alone in them.
    assert "Auto-executed 0 0" in said
    assert "To a human 1 1" in said

    live = Policy.objects.get(name="Bid adjustments")
    initial = duplicate_initial(live) | {"auto_execute_max_magnitude": Decimal("0.25")}
    initial["agent_id"], initial["account_id"] = initial.pop("agent"), initial.pop("account")
    initial["draft_of_id"] = initial.pop("draft_of")
    draft = Policy.objects.create(**initial)
    with_draft = simulation_page(owner, drafts=draft.pk)
    assert "1 routing would have gone another way." in with_draft  # the one waiting, let run
    assert f"#{ran.pk} {ran.summary}: there is no action type" in with_draft
    assert "Auto-executed 0 1" in with_draft


def test_the_simulation_command_says_a_routing_of_a_type_gone_as_its_page_does(demo_world):
    """The command said "1 routings cannot be replayed, counted in neither column" where the
    page says "1 routing cannot be replayed, and is counted in neither column"."""
    ran = evaluated(bid_adjustment("2.12"))
    proposal_execute(proposal_id=ran.pk)
    retired(ran)
    out = io.StringIO()

    call_command("simulate_policies", "--since", str(timezone.localdate()), stdout=out)

    assert (
        f"  1 routing cannot be replayed, and is counted in neither column: #{ran.pk}: there "
        "is no action type “retired type” any more.\n" in out.getvalue()
    ), out.getvalue()
    assert "  0 routings would have gone another way." in out.getvalue()
