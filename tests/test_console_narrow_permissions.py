"""Staff given one permission and not the rest: the console lets them do what it grants and
nothing the pages they may not open would have offered."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from approvals.models import Decision, Proposal, ProposalStatus
from approvals.services.decisions import payload_seen
from tests.factories import evaluated

CHANGELIST = reverse("admin:approvals_proposal_changelist")


def staff_with(username: str, *codenames: str) -> Client:
    user = get_user_model().objects.create_user(username, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_a_person_who_may_decide_but_not_see_proposals_decides_none(demo_world):
    approved, rejected = evaluated(), evaluated()
    blind = staff_with("blind-decider", "decide_proposal")
    page = blind.get(reverse("admin:approvals_proposal_change", args=[approved.pk]))
    assert page.status_code == 403

    approve = blind.post(
        reverse("admin:approvals_proposal_approve", args=[approved.pk]),
        {"seen": payload_seen(approved.payload), "note": "unseen"},
    )
    reject = blind.post(
        reverse("admin:approvals_proposal_reject", args=[rejected.pk]),
        {"seen": payload_seen(rejected.payload), "reason_code": "other", "note": "unseen"},
    )
    withdraw = blind.post(
        reverse("admin:approvals_proposal_withdraw", args=[rejected.pk]),
        {"seen": payload_seen(rejected.payload)},
    )
    bulk = blind.post(
        CHANGELIST,
        {
            "action": "approve_selected",
            "_selected_action": [approved.pk, rejected.pk],
            "confirm": "yes",
            **{f"seen-{p.pk}": payload_seen(p.payload) for p in (approved, rejected)},
        },
    )

    assert [approve.status_code, reject.status_code, withdraw.status_code] == [403, 403, 403]
    assert bulk.status_code == 403
    assert set(Proposal.objects.values_list("status", flat=True)) == {ProposalStatus.PENDING_REVIEW}
    assert not Decision.objects.exists()


def test_a_person_who_may_see_and_decide_proposals_decides_them(demo_world):
    proposal = evaluated()
    decider = staff_with("decider", "decide_proposal", "view_proposal")
    page = decider.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    assert 'id="approve-form"' in page.text

    decider.post(
        reverse("admin:approvals_proposal_approve", args=[proposal.pk]),
        {"seen": payload_seen(proposal.payload), "note": "read it"},
    )

    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.APPROVED
    assert proposal.decisions.get().reviewer.username == "decider"
