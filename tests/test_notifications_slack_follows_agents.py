"""A Slack message shows what may be done with its proposal now, not what could when it went:
its agent deactivated in the console, or the account taken away from it, redraws the
messages of its proposals that wait, with nobody pressing anything and the proposal not
moving. Before, each kept its Approve button until a press of it was refused, and only then
was redrawn. Approve goes (Reject and "I'll take it" stay), the message says why; started
again, Approve comes back; once for one save, not once for each part the console saves."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from approvals.models import Agent
from ledger.models import Account
from notifications.models import Notification
from tests.conftest import posted_from_page
from tests.test_notifications_slack import (
    buttons,
    context_texts,
    updates_of,
    waiting_on_slack,
)
from tests.test_notifications_slack_follows_access import (
    DECIDING,
    nothing_pressed,
    redrawn,
    waiting_and_recorded,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

NOT_APPROVE = ["reject", "claim"]


def cannot_be_let_run(proposal: dict, why: str) -> str:
    return f"Proposal #{proposal['id']} cannot be let run: {why} since it proposed it."


def saved_in_the_console(admin: Client, agent: Agent, **changed) -> None:
    """The agent's page in the console, saved with ``changed`` (``is_active``, ``accounts``)."""
    data = {
        "name": agent.name,
        "kind": agent.kind,
        "owner": agent.owner_id or "",
        "accounts": [a.pk for a in agent.accounts.all()],
        "callback_url": agent.callback_url,
        "is_active": "on" if agent.is_active else "",
        "change_reason": "Its owner asked.",
        "_save": "Save",
    }
    data |= changed
    data = {name: value for name, value in data.items() if value != ""}
    answer = posted_from_page(admin, f"/admin/approvals/agent/{agent.pk}/change/", data)
    assert answer.status_code == 302, answer.context["adminform"].form.errors


@pytest.fixture
def admin() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("admin", "admin@example.com"))
    return client


def test_an_agent_deactivated_in_the_console_has_its_proposals_messages_redrawn_at_once(
    optimizer, on_slack, admin
):
    """The message went with Approve, Reject and "I'll take it"; an administrator then
    deactivates the optimizer on its page. At once, with nobody pressing, the message offers
    Reject and "I'll take it" and says why it cannot be approved; activated again, Approve
    comes back. One update for each save."""
    proposal, where = waiting_and_recorded(optimizer, on_slack)
    assert buttons(where["call"]["blocks"]) == DECIDING
    agent = Agent.objects.get(name="optimizer")

    saved_in_the_console(admin, agent, is_active="")

    message = redrawn(on_slack, where, 1)
    assert buttons(message["blocks"]) == NOT_APPROVE
    said = cannot_be_let_run(proposal, "agent optimizer has been deactivated")
    assert said in context_texts(message["blocks"])
    nothing_pressed(on_slack, proposal)
    update = Notification.objects.get(kind="update", proposal_id=proposal["id"])
    assert update.what == "Update of a message sent: agent optimizer deactivated"

    agent.refresh_from_db()
    saved_in_the_console(admin, agent, is_active="on")

    message = redrawn(on_slack, where, 2)
    assert buttons(message["blocks"]) == DECIDING
    assert "cannot be let run" not in context_texts(message["blocks"])
    nothing_pressed(on_slack, proposal)
    # Once for each save, not once more for the accounts the page saved unchanged.
    updates = Notification.objects.filter(kind="update", proposal_id=proposal["id"])
    assert updates.count() == 2
    assert len(updates_of(on_slack, where)) == 2


def test_the_account_taken_away_from_the_agent_redraws_its_proposals_messages(optimizer, on_slack):
    """The demo account is taken from the optimizer (its proposal on demo may no longer be
    let run): the message drops Approve at once, saying why; given back, Approve is back."""
    proposal, where = waiting_and_recorded(optimizer, on_slack)
    agent = Agent.objects.get(name="optimizer")
    demo = Account.objects.get(external_id="demo")

    agent.accounts.remove(demo)

    message = redrawn(on_slack, where, 1)
    assert buttons(message["blocks"]) == NOT_APPROVE
    said = cannot_be_let_run(proposal, "agent optimizer may no longer act on account demo")
    assert said in context_texts(message["blocks"])

    agent.accounts.add(demo)

    message = redrawn(on_slack, where, 2)
    assert buttons(message["blocks"]) == DECIDING
    nothing_pressed(on_slack, proposal)


def test_a_save_of_the_agent_that_stops_nothing_leaves_its_messages_as_they_are(
    optimizer, on_slack, admin
):
    """The agent's page saved with nothing stopped, and another account given to it: its
    proposal may be let run as before, and its message is not sent again (Slack counts every
    call)."""
    _, where = waiting_and_recorded(optimizer, on_slack)
    agent = Agent.objects.get(name="optimizer")
    other = Account.objects.exclude(agents=agent).first() or Account.objects.create(
        external_id="other", name="Other"
    )
    saved_in_the_console(admin, agent)
    agent.accounts.add(other)
    # Then a change that does redraw it, to know the ones before had their chance to.
    agent.refresh_from_db()
    agent.is_active = False
    agent.save()

    message = redrawn(on_slack, where, 1)
    assert buttons(message["blocks"]) == NOT_APPROVE
    assert len(updates_of(on_slack, where)) == 1


def test_an_agent_deactivated_while_the_message_was_on_its_way_has_it_redrawn(optimizer, on_slack):
    """The optimizer is deactivated while the operator's message is on its way to Slack,
    drawn with Approve and not yet recorded sent: the deactivation found no message to
    redraw. Its sender, recording it sent, reads the agent again and redraws it."""

    def meanwhile(args: dict) -> None:
        try:
            agent = Agent.objects.get(name="optimizer")
            agent.is_active = False
            agent.save()
        finally:
            connection.close()  # this thread's, the fake Slack's

    on_slack.while_next_post = meanwhile
    proposal, where = waiting_on_slack(optimizer, on_slack)
    assert buttons(where["call"]["blocks"]) == DECIDING

    message = redrawn(on_slack, where, 1)
    assert buttons(message["blocks"]) == NOT_APPROVE
    said = cannot_be_let_run(proposal, "agent optimizer has been deactivated")
    assert said in context_texts(message["blocks"])
    update = Notification.objects.get(kind="update", proposal_id=proposal["id"])
    assert update.what == "Update of a message sent: agent optimizer stopped as it went"
    nothing_pressed(on_slack, proposal)


def test_a_change_to_an_agent_in_the_console_says_why_and_its_history_keeps_it(optimizer, admin):
    """Where an agent's decisions are sent, what it may act on and whether it runs are rules it
    works under: its callback address was moved with no reason asked, its history's change
    reason empty. A save without one is refused and changes nothing; with one, the history
    keeps it beside who saved."""
    agent = Agent.objects.get(name="optimizer")
    page = f"/admin/approvals/agent/{agent.pk}/change/"
    data = {
        "name": agent.name,
        "kind": agent.kind,
        "accounts": [a.pk for a in agent.accounts.all()],
        "is_active": "on",
        "callback_url": "https://127.0.0.1:8443/hitl",
        "_save": "Save",
    }
    refused = posted_from_page(admin, page, data)
    assert refused.status_code == 200 and "This field is required." in refused.text
    agent.refresh_from_db()
    assert agent.callback_url != "https://127.0.0.1:8443/hitl"

    saved_in_the_console(admin, agent, callback_url="https://127.0.0.1:8443/hitl")
    agent.refresh_from_db()
    assert agent.callback_url == "https://127.0.0.1:8443/hitl"
    latest = agent.history.order_by("-history_id").first()
    assert latest.history_change_reason == "Its owner asked."
    assert latest.history_user.username == "admin"
