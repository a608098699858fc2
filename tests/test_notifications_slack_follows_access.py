"""A Slack message shows what its reader may do now, not what they might when it went: a
second factor required of their group, their being added to such a group, their staff
status taken away, their deactivation (a person told of a proposal is not deleted) redraw
each of their messages of a proposal that waits, with nobody pressing anything and the
proposal not moving (as a refused press did). The message of one whose group must use a
second factor then offers only "I'll take it" and says why; one who may no longer decide has
it taken back; once the change is undone, the buttons come back."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models import ProtectedError
from django.test import Client

from access.models import SecondFactorRequirement
from approvals.models import Decision, Proposal
from approvals.roles import OPERATORS
from notifications.models import Notification
from tests.conftest import posted_from_page, wait_until
from tests.test_notifications_slack import (
    buttons,
    context_texts,
    updates_of,
    waiting_on_slack,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

LACKING = (
    "operator is in a group that must use a second factor, which a press on Slack does not "
    "ask for: approve or reject it on its page."
)
DECIDING = ["approve", "reject", "claim"]


def waiting_and_recorded(optimizer, slack) -> tuple[dict, dict]:
    """The reallocation waiting, its message posted to the operator and recorded as sent
    (where a change made between the two is read: ``slack_messages_follow_people``)."""
    proposal, where = waiting_on_slack(optimizer, slack)
    wait_until(
        lambda: Notification.objects.filter(
            proposal_id=proposal["id"], channel="slack", status="sent"
        ).exists()
    )
    return proposal, where


def shown(slack, where: dict) -> dict:
    """The message as Slack holds it now."""
    return slack.messages[(where["channel"], where["ts"])]


def redrawn(slack, where: dict, count: int) -> dict:
    """The message once its ``count``-th update landed and every update of it is recorded as
    it ended. Its sender reads the message's proposal and reader again once Slack has it, and
    sends it again if that changed meanwhile (``_until_it_holds``): a change a test made as
    soon as Slack had it (on a busy machine, before that read) was drawn by the update before
    it, and its own update found the message saying it already ("not sent"). Once the update
    is recorded, its sender is done: a change made then is one of its own."""
    wait_until(lambda: len(updates_of(slack, where)) >= count, timeout=15)
    wait_until(lambda: not updates_on_their_way(where))
    return shown(slack, where)


def updates_on_their_way(where: dict) -> bool:
    """Whether an update of the message is recorded and not yet recorded as ended."""
    return Notification.objects.filter(
        kind="update", slack_channel=where["channel"], slack_ts=where["ts"], status="pending"
    ).exists()


def nothing_pressed(slack, proposal: dict) -> None:
    assert not slack.sent("chat.postEphemeral")
    assert Proposal.objects.get(pk=proposal["id"]).status == "pending_review"
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()


def test_a_second_factor_required_of_their_group_in_the_console_redraws_the_message_at_once(
    optimizer, on_slack, demo_world
):
    """The message went with Approve and Reject; an administrator then requires a second
    factor of the operators (Access → Second factor requirements). It kept offering both
    until the operator pressed one (refused) or the proposal moved; now it offers only to
    take it on, saying why, as soon as the requirement is saved. Lifted, they come back."""
    proposal, where = waiting_and_recorded(optimizer, on_slack)
    assert buttons(where["call"]["blocks"]) == DECIDING
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("admin", "admin@example.com"))
    operators = Group.objects.get(name=OPERATORS)

    answer = admin.post(
        "/admin/access/secondfactorrequirement/add/", {"group": operators.pk, "_save": "Save"}
    )
    assert answer.status_code == 302, answer.content

    message = redrawn(on_slack, where, 1)
    assert buttons(message["blocks"]) == ["claim"]
    assert LACKING in context_texts(message["blocks"])
    nothing_pressed(on_slack, proposal)

    requirement = SecondFactorRequirement.objects.get(group=operators)
    answer = admin.post(
        f"/admin/access/secondfactorrequirement/{requirement.pk}/delete/", {"post": "yes"}
    )
    assert answer.status_code == 302, answer.content

    message = redrawn(on_slack, where, 2)
    assert buttons(message["blocks"]) == DECIDING
    assert "second factor" not in context_texts(message["blocks"])
    nothing_pressed(on_slack, proposal)


def test_one_added_to_a_group_that_must_use_a_second_factor_is_offered_only_to_take_it_on(
    optimizer, on_slack
):
    """The operator is added to a group that must use a second factor (one that grants
    nothing else): their message is redrawn at once, without Approve and Reject; taken out
    of it again, the buttons come back."""
    contractors = Group.objects.create(name="contractors")
    SecondFactorRequirement.objects.create(group=contractors)
    proposal, where = waiting_and_recorded(optimizer, on_slack)
    assert buttons(where["call"]["blocks"]) == DECIDING
    operator = get_user_model().objects.get(username="operator")

    operator.groups.add(contractors)

    message = redrawn(on_slack, where, 1)
    assert buttons(message["blocks"]) == ["claim"]
    assert LACKING in context_texts(message["blocks"])

    contractors.user_set.remove(operator)

    message = redrawn(on_slack, where, 2)
    assert buttons(message["blocks"]) == DECIDING
    nothing_pressed(on_slack, proposal)


@pytest.mark.parametrize(
    "field, said",
    [
        ("is_staff", "operator may not log in to the console."),
        ("is_active", "operator was deactivated."),
    ],
)
def test_one_who_may_no_longer_decide_has_their_message_taken_back_at_once(
    optimizer, on_slack, field, said
):
    """The operator's staff status is taken away, or they are deactivated: their message,
    which showed the proposal with its buttons until they pressed one or it moved, is taken
    back at once. Given back, it shows the proposal and its buttons again."""
    proposal, where = waiting_and_recorded(optimizer, on_slack)
    operator = get_user_model().objects.get(username="operator")

    setattr(operator, field, False)
    operator.save()

    message = redrawn(on_slack, where, 1)
    assert message["text"] == f"This message is no longer shown: {said}"
    assert buttons(message["blocks"]) == []
    assert proposal["summary"] not in str(message)

    setattr(operator, field, True)
    operator.save()

    message = redrawn(on_slack, where, 2)
    assert buttons(message["blocks"]) == DECIDING
    nothing_pressed(on_slack, proposal)


def test_a_person_told_of_a_proposal_is_not_deleted_and_their_message_stays(optimizer, on_slack):
    """The operator's account cannot be deleted: the outbox keeps who was told (deleted, their
    messages' records went with them). Their message is left as it is; deactivating them
    takes it back (above)."""
    proposal, where = waiting_and_recorded(optimizer, on_slack)
    operator = get_user_model().objects.get(username="operator")

    with pytest.raises(ProtectedError):
        operator.delete()

    assert Notification.objects.filter(proposal_id=proposal["id"], recipient=operator).exists()
    assert updates_of(on_slack, where) == []
    assert Proposal.objects.get(pk=proposal["id"]).status == "pending_review"


def test_a_save_that_changes_nothing_they_may_do_leaves_their_message_as_it_is(optimizer, on_slack):
    """An administrator corrects the operator's name, and a colleague is added to the
    operators: the operator's message is not sent again (Slack counts every call)."""
    _, where = waiting_and_recorded(optimizer, on_slack)
    operator = get_user_model().objects.get(username="operator")
    operator.first_name = "Olga"
    operator.save()
    colleague = get_user_model().objects.create_user("colleague", is_staff=True)
    colleague.groups.add(Group.objects.get(name=OPERATORS))
    # Then a change that does redraw it, to know the ones before had their chance to.
    SecondFactorRequirement.objects.create(group=Group.objects.get(name=OPERATORS))

    message = redrawn(on_slack, where, 1)
    assert buttons(message["blocks"]) == ["claim"]
    assert len(updates_of(on_slack, where)) == 1


def staff_status_taken_away() -> None:
    operator = get_user_model().objects.get(username="operator")
    operator.is_staff = False
    operator.save()


def added_to_a_group_that_must_use_a_second_factor() -> None:
    contractors = Group.objects.create(name="contractors")
    SecondFactorRequirement.objects.create(group=contractors)
    get_user_model().objects.get(username="operator").groups.add(contractors)


@pytest.mark.parametrize(
    "change, buttons_left, said",
    [
        (staff_status_taken_away, [], "This message is no longer shown"),
        (added_to_a_group_that_must_use_a_second_factor, ["claim"], LACKING),
    ],
)
def test_a_change_made_while_the_message_was_on_its_way_redraws_it(
    optimizer, on_slack, change, buttons_left, said
):
    """The change lands while the operator's message is on its way to Slack, drawn as
    before it and not yet recorded sent: the change found no message of theirs to redraw,
    and the message kept Approve and Reject. Its sender, recording it sent, reads the
    change and redraws it."""

    def meanwhile(args: dict) -> None:
        try:
            change()
        finally:
            connection.close()  # this thread's, the fake Slack's

    on_slack.while_next_post = meanwhile
    proposal, where = waiting_on_slack(optimizer, on_slack)
    assert buttons(where["call"]["blocks"]) == DECIDING

    message = redrawn(on_slack, where, 1)
    assert buttons(message["blocks"]) == buttons_left
    assert said in str(message)
    nothing_pressed(on_slack, proposal)


def test_a_change_of_their_groups_in_the_console_redraws_their_message_once(optimizer, on_slack):
    """An administrator moves the operator from one group to another on their page (Users →
    operator), one save: Django's admin saves their groups as a removal and an addition, and
    each started a redraw of their message, drawn alike: Slack was sent the same message
    twice, and the proposal's page listed two updates of it. Now the message is redrawn once;
    a real change after it, in a transaction of its own, is redrawn too."""
    operator = get_user_model().objects.get(username="operator")
    operator.groups.add(Group.objects.create(name="newsletter"))
    proposal, where = waiting_and_recorded(optimizer, on_slack)
    contractors = Group.objects.create(name="contractors")
    SecondFactorRequirement.objects.create(group=contractors)
    operators = Group.objects.get(name=OPERATORS)
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("admin", "admin@example.com"))
    form = {
        "username": "operator",
        "first_name": "",
        "last_name": "",
        "email": operator.email,
        "is_active": "on",
        "is_staff": "on",
        "groups": [operators.pk, contractors.pk],
        "date_joined_0": f"{operator.date_joined:%Y-%m-%d}",
        "date_joined_1": f"{operator.date_joined:%H:%M:%S}",
        "change_reason": "contracts too",
        "_save": "Save",
    }

    answer = posted_from_page(admin, f"/admin/auth/user/{operator.pk}/change/", form)
    assert answer.status_code == 302, answer.content
    assert set(operator.groups.values_list("name", flat=True)) == {OPERATORS, "contractors"}

    message = redrawn(on_slack, where, 1)
    assert buttons(message["blocks"]) == ["claim"]
    assert LACKING in context_texts(message["blocks"])

    # A real change: the second factor no longer required of the contractors.
    SecondFactorRequirement.objects.filter(group=contractors).delete()

    message = redrawn(on_slack, where, 2)
    assert buttons(message["blocks"]) == DECIDING
    assert len(updates_of(on_slack, where)) == 2
    updates = Notification.objects.filter(proposal_id=proposal["id"], kind="update")
    assert list(updates.order_by("pk").values_list("about", "status")) == [
        ("a change to its reader's groups or permissions", "sent"),
        ("a second factor no longer required of a group of theirs", "sent"),
    ]
    nothing_pressed(on_slack, proposal)


def test_a_requirement_moved_to_a_group_with_the_longest_name_redraws_the_message(
    optimizer, on_slack, demo_world
):
    """A group's name may have 150 characters. What the redraw was for ("a second factor now
    required of the group “…” in place of another") ran past the 200 characters its record
    keeps: the worker's write of it failed, and the message kept offering Approve and
    Reject to one who may no longer decide on Slack."""
    operators = Group.objects.get(name=OPERATORS)
    operators.name = "Operators " + "o" * 140
    operators.save()
    requirement = SecondFactorRequirement.objects.create(group=Group.objects.create(name="x"))
    proposal, where = waiting_and_recorded(optimizer, on_slack)
    assert buttons(where["call"]["blocks"]) == DECIDING

    requirement.group = operators
    requirement.save()

    message = redrawn(on_slack, where, 1)
    assert buttons(message["blocks"]) == ["claim"]
    assert LACKING in context_texts(message["blocks"])
    [update] = Notification.objects.filter(proposal_id=proposal["id"], kind="update")
    assert update.about.startswith("a second factor now required of the group “Operators ooo")
    assert update.about.endswith("…")
    nothing_pressed(on_slack, proposal)
