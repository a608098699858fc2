"""A person the record of what happened names is kept, so that the auditor still reads who
decided and who was told: an operator who decided a proposal, and one who was only told of
one. Their page's delete says so, counting what names them, and offers what does the work of
a deletion: deactivating them. (A person nothing names is still deleted, saying why:
test_notifications_console; an agent's owner deleted empties the agent's owner, recorded in
its history by whoever deleted them: test_audit_links_emptied.)"""

import html

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import ProtectedError
from django.urls import reverse
from django.utils.html import strip_tags

from approvals.models import Decision
from approvals.roles import OPERATORS
from notifications.models import Notification
from tests.conftest import decided_from_page, reallocation
from tests.factories import evaluated

pytestmark = pytest.mark.django_db

DEACTIVATE_INSTEAD = (
    "cannot be deleted: the record of what happened names them, and keeps naming them. To "
    "stop them using the platform, deactivate them on their page instead (untick “Active”, "
    "saying why): they can no longer log in, decide or be told of anything, and their "
    "history says who deactivated them, when and why."
)


def delete_page(client, person) -> str:
    page = client.get(reverse("admin:auth_user_delete", args=[person.pk]))
    assert page.status_code == 200
    return " ".join(html.unescape(strip_tags(page.content.decode())).split())


def deleted_from_console(client, person):
    return client.post(
        reverse("admin:auth_user_delete", args=[person.pk]),
        {"post": "yes", "change_reason": "left the company"},
    )


def told_on_page(client, proposal_id: int) -> list[str]:
    """The "To" of each row of the proposal page's "Who was told", as its reader sees it."""
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal_id]))
    return [n.recipient.get_username() for n in page.context["told"]]


def night_operator() -> "get_user_model()":
    person = get_user_model().objects.create_user(
        "night-op", email="night@example.com", is_staff=True
    )
    person.groups.add(Group.objects.get(name=OPERATORS))
    return person


def test_an_operator_who_decided_is_kept_and_the_page_says_to_deactivate_them(
    demo_world, login, admin_client
):
    operator = get_user_model().objects.get(username="operator")
    proposal = evaluated(reallocation())
    assert decided_from_page(login("operator"), "approve", proposal.pk).status_code == 302

    said = delete_page(admin_client, operator)
    assert f"“operator” {DEACTIVATE_INSTEAD}" in said
    assert "1 decision (reviewer)" in said
    assert "will be deleted" not in said

    deleted_from_console(admin_client, operator)

    operator.refresh_from_db()
    assert Decision.objects.get(proposal=proposal).reviewer == operator
    assert "operator" in told_on_page(login("auditor"), proposal.pk)


def test_an_operator_who_was_only_told_is_kept_with_who_was_told(demo_world, login, admin_client):
    """Told of a proposal they never decided: deleting them took the outbox's rows with them,
    and the proposal's "Who was told" no longer named them."""
    person = night_operator()
    proposal = evaluated(reallocation())
    assert "night-op" in told_on_page(login("auditor"), proposal.pk)
    told = Notification.objects.filter(recipient=person).count()
    assert told

    said = delete_page(admin_client, person)
    assert f"“night-op” {DEACTIVATE_INSTEAD}" in said
    assert f"{told} notification{'s' if told > 1 else ''} (recipient)" in said
    deleted_from_console(admin_client, person)

    assert get_user_model().objects.filter(username="night-op").exists()
    assert Notification.objects.filter(recipient=person).count() == told
    assert "night-op" in told_on_page(login("auditor"), proposal.pk)
    # Nor does anything else delete them.
    with pytest.raises(ProtectedError):
        person.delete()
