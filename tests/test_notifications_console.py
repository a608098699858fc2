"""Reaching people, as the console shows it: policy owners keep the routes (with history), the
others read them; a route's minimum risk tells of every proposal a guardrail spoke about; each
person chooses their own channels and nobody else's; a reviewer takes a proposal ("I'll take it")
and the others see who is on it, in the queue too, without being stopped from deciding; a
proposal's page says who was told, on which channel, when, whether it was sent, and its deadline."""

import html
import re
from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import strip_tags

from approvals.models import Proposal, ProposalStatus
from approvals.roles import AUDITORS, OPERATORS
from approvals.services.decisions import proposal_approve, proposal_reject
from approvals.services.expiry import proposals_expire_overdue
from approvals.services.proposals import proposal_withdraw
from ledger.models import Account
from notifications.models import Claim, Notification, NotificationStatus, ReachedBy, Route
from notifications.services import notifications_deliver
from policies.models import KillSwitch, Policy
from tests.conftest import bid_adjustment, posted_from_page, reallocation
from tests.factories import evaluated

pytestmark = pytest.mark.django_db

DEMO_ROUTE = "Demo: everything waiting, to the operators"


def route_form(**values) -> dict:
    return {
        "name": "Big reallocations to the operators",
        "is_active": "on",
        "account": Account.objects.get(external_id="demo").pk,
        "channel": "",
        "action_type": "budget_reallocation",
        "minimum_risk": "50",
        "groups": [Group.objects.get(name=OPERATORS).pk],
        "delivery": "digest",
        "digest_minutes": "15",
        "backup_group": "",
        "change_reason": "The operators asked to hear of the big ones.",
        **values,
    }


def test_policy_owner_adds_a_route_and_its_history_names_them(login):
    client = login("policy-owner")
    response = client.post(reverse("admin:notifications_route_add"), route_form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    route = Route.objects.get(name="Big reallocations to the operators")
    assert [g.name for g in route.groups.all()] == [OPERATORS]
    assert (route.action_type, route.minimum_risk, route.delivery) == (
        "budget_reallocation",
        50,
        "digest",
    )

    listing = client.get(reverse("admin:notifications_route_changelist")).text
    assert "account demo, every channel, budget reallocation, risk 50+" in listing
    assert "group operators" in listing
    assert "In a digest, at most every 15 min" in listing

    posted_from_page(
        client,
        reverse("admin:notifications_route_change", args=[route.pk]),
        route_form(name="Big reallocations, at once", delivery="immediately"),
    )
    history = client.get(reverse("admin:notifications_route_history", args=[route.pk])).text
    assert "Big reallocations, at once" in history
    assert "Big reallocations to the operators" in history
    latest = route.history.latest("history_date")
    assert (latest.history_actor_kind, latest.history_actor) == ("user", "policy-owner")
    assert latest.history_change_reason == "The operators asked to hear of the big ones."
    unexplained = posted_from_page(
        client,
        reverse("admin:notifications_route_change", args=[route.pk]),
        route_form(name="Quietly renamed", change_reason=""),
    )
    assert "change_reason" in unexplained.context["adminform"].form.errors
    assert Route.objects.get(pk=route.pk).name == "Big reallocations, at once"


def test_one_save_of_a_route_is_one_record_in_its_history_with_whom_it_tells(login):
    """The policy owner creates a route naming a group, then changes its name and its users
    in one save: its history has two records, each with the people as they were, not a
    record for the fields and another for the people of one change."""
    client = login("policy-owner")
    client.post(reverse("admin:notifications_route_add"), route_form())
    route = Route.objects.get(name="Big reallocations to the operators")
    operator = get_user_model().objects.get(username="operator")
    posted_from_page(
        client,
        reverse("admin:notifications_route_change", args=[route.pk]),
        route_form(name="Big reallocations, to the operator too", users=[operator.pk]),
    )

    created, changed = route.history.order_by("history_date", "history_id")
    assert (created.history_type, created.name) == ("+", "Big reallocations to the operators")
    assert [g.group.name for g in created.groups.all()] == [OPERATORS]
    assert (changed.history_type, changed.name) == ("~", "Big reallocations, to the operator too")
    assert [u.user.username for u in changed.users.all()] == ["operator"]
    assert (changed.history_actor_kind, changed.history_actor) == ("user", "policy-owner")
    history = client.get(reverse("admin:notifications_route_history", args=[route.pk])).text
    assert history.count("policy-owner (person)") == 2


def test_a_route_saved_says_whom_it_now_tells_by_name_as_its_history_does(login):
    """The message after a save said "What changed: Backup group: — → 1; Users: — → 1.",
    ids where the route's history reads the group and the person by name."""
    client = login("policy-owner")
    client.post(reverse("admin:notifications_route_add"), route_form())
    route = Route.objects.get(name="Big reallocations to the operators")
    operator = get_user_model().objects.get(username="operator")
    page = posted_from_page(
        client,
        reverse("admin:notifications_route_change", args=[route.pk]),
        route_form(users=[operator.pk], backup_group=Group.objects.get(name=OPERATORS).pk),
        follow=True,
    )
    said = [strip_tags(str(message)) for message in page.context["messages"]]
    # In the form's order: whom it tells, then how (not A to Z).
    assert said[-1] == (
        "The route “Big reallocations to the operators” was changed successfully. What "
        "changed: Users: — → operator; Backup group: — → operators."
    )
    history = client.get(reverse("admin:notifications_route_history", args=[route.pk])).text
    assert history_entries(history)[0] == (
        "Changed",
        ["Users: — → operator", "Backup group: — → operators"],
    )


def test_a_route_made_to_tell_of_every_action_type_says_so_as_its_form_does(login):
    """Its history read "Action type: budget reallocation → —", where the form and the list
    say "every action type"."""
    client = login("policy-owner")
    client.post(reverse("admin:notifications_route_add"), route_form())
    route = Route.objects.get(name="Big reallocations to the operators")

    page = posted_from_page(
        client,
        reverse("admin:notifications_route_change", args=[route.pk]),
        route_form(action_type="", minimum_risk="70"),
        follow=True,
    )

    said = [strip_tags(str(message)) for message in page.context["messages"]]
    assert said[-1].endswith(
        "What changed: Action type: budget reallocation → every action type; Minimum risk: 50 → 70."
    )
    history = client.get(reverse("admin:notifications_route_history", args=[route.pk])).text
    assert history_entries(history)[0][1] == [
        "Action type: budget reallocation → every action type",
        "Minimum risk: 50 → 70",
    ]


def history_entries(page: str) -> list[tuple[str, list[str]]]:
    """A history list's entries, newest first: each one's kind ("Created", "Changed") and the
    changes it shows ("field: old → new"), as a person reads them."""
    table = page.split('id="change-history"')[1].split("</table>")[0]
    entries = []
    for row in table.split("<tr>")[2:]:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        changes = [
            " ".join(re.sub(r"<[^>]+>|&nbsp;", " ", item).replace("&rarr;", "→").split())
            for item in re.findall(r"<li>(.*?)</li>", row, re.S)
        ]
        entries.append((cells[2].strip(), changes))
    return entries


def test_a_routes_created_entry_shows_whom_it_tells_and_what_it_covers(login):
    """The history list's "Created" entry shows the values the route was made with, as the
    entries after it show their changes, without opening that version."""
    client = login("policy-owner")
    client.post(reverse("admin:notifications_route_add"), route_form())
    route = Route.objects.get(name="Big reallocations to the operators")
    posted_from_page(
        client,
        reverse("admin:notifications_route_change", args=[route.pk]),
        route_form(minimum_risk="70"),
    )

    page = login("auditor").get(reverse("admin:notifications_route_history", args=[route.pk]))

    (changed, changes), (created, values) = history_entries(page.text)
    assert (changed, changes) == ("Changed", ["Minimum risk: 50 → 70"])
    assert created == "Created"
    shown = "\n".join(values)
    for value in (
        "Name: — → Big reallocations to the operators",
        "Account: — → demo",
        "Action type: — → budget reallocation",  # as the route list writes it
        "Minimum risk: — → 50",
        "Delivery: — → In a digest",  # its choice in words, as the form offers it
        "Digest minutes: — → 15",
        f"Groups: — → {OPERATORS}",  # in words, as every other value: no brackets
        "Is active: — → yes",
    ):
        assert value in shown, shown
    # Only what it was made with: no empty scope (every channel), no backup group, no id.
    unset = ("Channel:", "Backup group:", "Users:", "ID:")
    assert [value for value in values if value.startswith(unset)] == []


def test_a_routes_minimum_risk_tells_of_clean_proposals_above_it_and_every_guarded_one(
    demo_world,
):
    policy_owner = get_user_model().objects.get(username="policy-owner")
    risky = Route.objects.create(name="Risky ones, to the policy owner", minimum_risk=70)
    risky.users.set([policy_owner])

    large = evaluated(bid_adjustment("2.40", campaign="generic-search"))  # +60%: 75
    modest = evaluated(reallocation("150.00"))  # 15% of brand-search's budget: 52
    KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason="Outage"
    )
    small = evaluated(bid_adjustment("2.12"))  # +6%, held by the kill switch: 93 (was 31)

    assert (large.risk, modest.risk, small.risk) == (75, 52, 93)
    told = set(
        # Of proposals: the kill switch's own message (engaged) is told to them too.
        Notification.objects.filter(recipient=policy_owner, proposal__isnull=False).values_list(
            "proposal", flat=True
        )
    )
    assert told == {large.pk, small.pk}


def test_a_route_that_tells_nobody_is_refused_with_a_clear_error(login):
    response = login("policy-owner").post(
        reverse("admin:notifications_route_add"), route_form(groups=[])
    )
    assert response.status_code == 200
    assert "Name at least one user or group to tell" in response.text
    assert not Route.objects.filter(name="Big reallocations to the operators").exists()


def backup_warning(page: str) -> str:
    """The warning beside a route's backup group on its page, as read; "" if there is none."""
    match = re.search(r'id="backup-group-warning">(.*?)</p>', page, re.S)
    return html.unescape(strip_tags(match.group(1))) if match else ""


def warnings_shown(response) -> list[str]:
    return [str(m) for m in response.context["messages"] if m.level_tag == "warning"]


def test_a_backup_group_whose_deciders_may_no_longer_log_in_is_warned_of(login):
    """The weekend group's one member has the operators' permissions, but had their staff
    status taken away: the console lets them in no more, and messages no longer go to them.
    The route was saved without a word, as if an overdue proposal would reach someone who
    may decide it."""
    client = login("policy-owner")
    former = get_user_model().objects.create_user("former", email="former@example.com")
    former.groups.add(Group.objects.get(name=OPERATORS))
    weekend = Group.objects.create(name="weekend")
    weekend.user_set.add(former)

    saved = client.post(
        reverse("admin:notifications_route_add"), route_form(backup_group=weekend.pk), follow=True
    )

    assert warnings_shown(saved) == [
        "Nobody in the backup group “weekend” may decide the budget reallocation proposals "
        "this route tells of: one that is overdue would be escalated to people who cannot "
        "decide it. Give the group a person who may, or choose another group."
    ]
    former.is_staff = True
    former.save()
    route = Route.objects.get(name="Big reallocations to the operators")
    change = reverse("admin:notifications_route_change", args=[route.pk])
    assert backup_warning(client.get(change).text) == ""


def test_a_backup_group_nobody_in_which_may_decide_the_routes_proposals_is_warned_of(login):
    """A policy owner names the auditors as a route's backup group: an overdue proposal would
    be escalated to people who cannot decide it (they read "Read it on its page"), and nobody
    who can would hear of it. The route is saved, as the group may yet be given someone who
    may, but the policy owner is warned, and its page says so while it holds."""
    client = login("policy-owner")
    auditors, operators = Group.objects.get(name=AUDITORS), Group.objects.get(name=OPERATORS)

    saved = client.post(
        reverse("admin:notifications_route_add"), route_form(backup_group=auditors.pk), follow=True
    )

    route = Route.objects.get(name="Big reallocations to the operators")
    assert route.backup_group == auditors
    warning = (
        "Nobody in the backup group “auditors” may decide the budget reallocation proposals "
        "this route tells of: one that is overdue would be escalated to people who cannot "
        "decide it. Give the group a person who may, or choose another group."
    )
    assert warnings_shown(saved) == [warning]
    change = reverse("admin:notifications_route_change", args=[route.pk])
    assert backup_warning(client.get(change).text) == warning
    assert backup_warning(login("auditor").get(change).text) == warning

    # The operators may decide them: nothing to warn of.
    saved = posted_from_page(client, change, route_form(backup_group=operators.pk), follow=True)
    assert warnings_shown(saved) == []
    assert backup_warning(client.get(change).text) == ""
    # A route of every action type: the operators may not decide the policy changes.
    saved = posted_from_page(
        client, change, route_form(backup_group=operators.pk, action_type=""), follow=True
    )
    assert warnings_shown(saved) == [
        "Nobody in the backup group “operators” may decide policy change proposals, which "
        "this route tells of: one that is overdue would be escalated to people who cannot "
        "decide it. Give the group a person who may, or choose another group."
    ]
    # A group's name is shown as written.
    night = Group.objects.create(name="<b>night</b> shift")
    posted_from_page(client, change, route_form(backup_group=night.pk, action_type=""))
    page = client.get(change).text
    assert "&lt;b&gt;night&lt;/b&gt; shift" in page and "<b>night</b>" not in page
    assert backup_warning(page).startswith(
        "Nobody in the backup group “<b>night</b> shift” may decide any of the proposals"
    )
    # A past version's page shows what was recorded, not the group as it is now.
    version = route.history.latest("history_date")
    past = client.get(
        reverse("admin:notifications_route_simple_history", args=[route.pk, version.history_id])
    )
    assert past.status_code == 200 and "<b>night</b> shift" in html.unescape(past.text)
    assert "backup-group-warning" not in past.text


def page_form(client: Client, url: str, **values) -> dict:
    """What a console page's form would post, with ``values`` typed in (a date and time as
    its two boxes, an unticked box not at all), and a reason where the page asks why."""
    form = client.get(url).context["adminform"].form
    if "change_reason" in form.fields:
        values.setdefault("change_reason", "staffing")
    data = {}
    for name in form.fields:
        value = form[name].value()
        if isinstance(value, datetime):
            data |= {f"{name}_0": value.date().isoformat(), f"{name}_1": value.time().isoformat()}
        elif value is not False:
            data[name] = "" if value is None else value
    return {name: value for name, value in (data | values).items() if value is not False}


def test_a_change_that_leaves_a_backup_group_nobody_who_may_decide_warns_of_each_route(
    login, admin_client
):
    """A route escalates overdue reallocations to the operators. Whoever manages people
    takes the last operator out of the group, or the group's permission to decide: saving it
    warns, naming the route, before an escalation reaches nobody who can decide. A change
    that leaves someone who may (or a route already warned of) says nothing new."""
    operators = Group.objects.get(name=OPERATORS)
    client = login("policy-owner")
    client.post(
        reverse("admin:notifications_route_add"),
        route_form(name="Overdue reallocations", backup_group=operators.pk),
    )
    route = Route.objects.get(name="Overdue reallocations")
    warning = (
        "Nobody in the backup group “operators” may decide the budget reallocation proposals "
        "this route tells of: one that is overdue would be escalated to people who cannot "
        "decide it. Give the group a person who may, or choose another group."
    )
    members = list(operators.user_set.filter(is_active=True))
    assert members, "the demo's operators group has people in it"

    # Another change to a person, who stays an operator: nothing to warn of.
    first = members[0]
    person = reverse("admin:auth_user_change", args=[first.pk])
    saved = admin_client.post(
        person, page_form(admin_client, person, first_name="Ada"), follow=True
    )
    assert saved.redirect_chain, saved.context["adminform"].form.errors
    assert warnings_shown(saved) == []

    # Every operator but the last deactivated, then the last taken out of the group.
    for other in members[1:]:
        url = reverse("admin:auth_user_change", args=[other.pk])
        admin_client.post(url, page_form(admin_client, url, is_active=False))
    kept = [g for g in page_form(admin_client, person)["groups"] if g != operators.pk]
    saved = admin_client.post(person, page_form(admin_client, person, groups=kept), follow=True)
    assert not operators.user_set.filter(is_active=True).exists()
    route_url = reverse("admin:notifications_route_change", args=[route.pk])
    assert [html.unescape(strip_tags(w)) for w in warnings_shown(saved)] == [
        f"Route “Overdue reallocations”: {warning}"
    ]
    assert f'<a href="{route_url}">“Overdue reallocations”</a>' in saved.text
    assert backup_warning(client.get(route_url).text) == warning

    # Put back, then the group's permissions taken away instead: the same warning.
    admin_client.post(person, page_form(admin_client, person, groups=[*kept, operators.pk]))
    assert backup_warning(client.get(route_url).text) == ""
    group = reverse("admin:auth_group_change", args=[operators.pk])
    saved = admin_client.post(group, page_form(admin_client, group, permissions=[]), follow=True)
    assert [html.unescape(strip_tags(w)) for w in warnings_shown(saved)] == [
        f"Route “Overdue reallocations”: {warning}"
    ]
    # Already warned of: a further change says nothing new about it.
    saved = admin_client.post(person, page_form(admin_client, person, last_name="L"), follow=True)
    assert warnings_shown(saved) == []


def test_deleting_the_last_who_may_decide_in_a_backup_group_warns_of_each_route(
    login, admin_client
):
    """A night shift of one is the backup group of a route: deleting that person (from their
    page, saying why: the list deletes nobody in bulk) leaves the route escalating to nobody
    who may decide, and the page after the deletion says so, naming the route."""
    night = Group.objects.create(name="night shift")
    night.permissions.set(Group.objects.get(name=OPERATORS).permissions.all())
    person = get_user_model().objects.create_user("night-op", is_staff=True)
    person.groups.add(night)
    login("policy-owner").post(
        reverse("admin:notifications_route_add"),
        route_form(name="Overdue at night", backup_group=night.pk),
    )
    route = Route.objects.get(name="Overdue at night")
    assert (
        backup_warning(
            login("policy-owner")
            .get(route_url := reverse("admin:notifications_route_change", args=[route.pk]))
            .text
        )
        == ""
    )

    assert "delete_selected" not in admin_client.get(reverse("admin:auth_user_changelist")).text
    url = reverse("admin:auth_user_delete", args=[person.pk])
    deleted = admin_client.post(url, {"post": "yes", "change_reason": "left"}, follow=True)

    assert not get_user_model().objects.filter(username="night-op").exists()
    warnings = [html.unescape(strip_tags(w)) for w in warnings_shown(deleted)]
    assert warnings == [
        "Route “Overdue at night”: Nobody in the backup group “night shift” may decide the "
        "budget reallocation proposals this route tells of: one that is overdue would be "
        "escalated to people who cannot decide it. Give the group a person who may, or "
        "choose another group."
    ]
    assert (
        backup_warning(login("policy-owner").get(route_url).text) == warnings[0].split(": ", 1)[1]
    )


def test_a_route_offers_the_registered_action_types_and_refuses_others(login):
    client = login("policy-owner")
    page = client.get(reverse("admin:notifications_route_add")).text
    # As the route list and the filters write it, not the name an agent sends.
    assert '<option value="budget_reallocation">budget reallocation</option>' in page
    assert '<option value="" selected>Every action type</option>' in page
    response = client.post(
        reverse("admin:notifications_route_add"), route_form(action_type="launch_rockets")
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.text
    assert not Route.objects.filter(name="Big reallocations to the operators").exists()


def test_policy_owner_deactivates_a_route_and_history_keeps_it(login):
    route = Route.objects.get(name=DEMO_ROUTE)
    response = login("policy-owner").post(
        reverse("admin:notifications_route_changelist"),
        {
            "action": "deactivate_selected",
            "_selected_action": [route.pk],
            "confirm": "yes",
            "change_reason": "The operators moved to the digest route.",
        },
    )
    assert response.status_code == 302
    route.refresh_from_db()
    assert not route.is_active
    latest = route.history.latest("history_date")
    assert (latest.is_active, latest.history_actor) == (False, "policy-owner")
    assert latest.history_change_reason == "The operators moved to the digest route."


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_routes_deactivated_in_bulk_say_why_first_and_without_a_reason_stay_active(login, reason):
    """The bulk action asks why, as a route's own page does; a deactivation without a reason
    changes nothing and records nothing."""
    route = Route.objects.get(name=DEMO_ROUTE)
    versions = route.history.count()
    posted = {"action": "deactivate_selected", "_selected_action": [route.pk]}
    if reason is not None:
        posted |= {"confirm": "yes", "change_reason": reason}

    page = login("policy-owner").post(reverse("admin:notifications_route_changelist"), posted)

    assert page.status_code == 200
    assert "Why this change" in page.text and DEMO_ROUTE in page.text
    route.refresh_from_db()
    assert route.is_active and route.history.count() == versions


def test_operator_reads_routes_but_cannot_change_them(login):
    client = login("operator")
    route = Route.objects.get(name=DEMO_ROUTE)
    assert client.get(reverse("admin:notifications_route_changelist")).status_code == 200
    assert client.get(reverse("admin:notifications_route_add")).status_code == 403
    change = reverse("admin:notifications_route_change", args=[route.pk])
    assert client.post(change, route_form(name="mine now")).status_code == 403
    assert Route.objects.get(pk=route.pk).name == DEMO_ROUTE
    response = client.post(
        reverse("admin:notifications_route_changelist"),
        {"action": "deactivate_selected", "_selected_action": [route.pk]},
    )
    assert Route.objects.get(pk=route.pk).is_active
    assert response.status_code == 403


def test_auditor_reads_routes_outbox_and_claims_with_history_and_changes_nothing(login):
    client = login("auditor")
    route = Route.objects.get(name=DEMO_ROUTE)
    page = client.get(reverse("admin:notifications_route_change", args=[route.pk]))
    assert page.status_code == 200
    assert 'name="_save"' not in page.text
    history = client.get(reverse("admin:notifications_route_history", args=[route.pk]))
    assert history.status_code == 200
    assert "seed_demo" in history.text
    assert client.post(
        reverse("admin:notifications_route_change", args=[route.pk]), route_form()
    ).status_code == (403)
    assert Route.objects.get(pk=route.pk).name == DEMO_ROUTE
    for listing in ("notification", "claim"):
        assert client.get(reverse(f"admin:notifications_{listing}_changelist")).status_code == 200


def test_each_person_chooses_their_own_channels(login):
    operator = login("operator")
    mine = reverse("admin:notifications_reachedby_changelist")
    first = operator.get(mine)
    assert first.status_code == 302
    assert first.url == reverse("admin:notifications_reachedby_add")
    page = operator.get(first.url).text
    assert "Email goes to <strong>operator@example.com</strong>" in page
    assert "Slack finds you by this same address" in page
    assert 'name="_addanother"' not in page  # one's channels are one record: no other to add

    saved = operator.post(first.url, {"slack": "on"})  # email unticked
    assert saved.status_code == 302
    choice = ReachedBy.objects.get(user__username="operator")
    assert (choice.email, choice.slack) == (False, True)
    assert operator.get(mine).url == reverse(
        "admin:notifications_reachedby_change", args=[choice.pk]
    )
    assert choice.history.latest("history_date").history_actor == "operator"

    auditor = login("auditor")
    theirs = reverse("admin:notifications_reachedby_change", args=[choice.pk])
    assert auditor.get(theirs).status_code == 302  # no such page of theirs: back to the index
    auditor.post(theirs, {"email": "on"})
    choice.refresh_from_db()
    assert (choice.email, choice.slack) == (False, True)
    history = reverse("admin:notifications_reachedby_history", args=[choice.pk])
    assert auditor.get(history).status_code == 403
    # The auditor's own list is their own record, made on their first save.
    assert auditor.get(mine).url == reverse("admin:notifications_reachedby_add")
    auditor.post(reverse("admin:notifications_reachedby_add"), {"email": "on", "slack": "on"})
    assert ReachedBy.objects.get(user__username="auditor").slack
    assert ReachedBy.objects.count() == 2


@pytest.mark.parametrize(
    ("chosen", "said"),
    [
        (
            {"slack": "on"},
            "Your channels are saved. Slack is not set up on this platform: until it is, "
            "nothing reaches you (choose Email too to be told); what waits for you is in the "
            "review queue.",
        ),
        (
            {"email": "on", "slack": "on"},
            "Your channels are saved. Slack is not set up on this platform: until it is, you "
            "are told by email only.",
        ),
        (
            {},
            "Your channels are saved: none, so you are told of nothing; what waits for you is "
            "in the review queue.",
        ),
        ({"email": "on"}, "Your channels are saved."),
    ],
)
def test_my_channels_say_when_what_was_chosen_reaches_nobody(login, settings, chosen, said):
    """Slack ticked on a platform without Slack set up (no SLACK_BOT_TOKEN) reached nobody,
    and the page said only "Your channels are saved.": an operator who chose Slack alone was
    told of nothing from then on without knowing it. The box says so beside it, and so does
    the save."""
    settings.SLACK_BOT_TOKEN = ""
    operator = login("operator")
    add = reverse("admin:notifications_reachedby_add")
    form = operator.get(add)
    help_text = form.context["adminform"].form.fields["slack"].help_text
    assert help_text == (
        "A direct message from the platform's Slack app. Slack is not set up on this platform: "
        "nothing reaches you there until an administrator sets it up."
    )
    assert 'aria-describedby="id_slack_helptext"' in form.text

    saved = operator.post(add, chosen, follow=True)

    assert [str(message) for message in saved.context["messages"]] == [said]
    chose = ReachedBy.objects.get(user__username="operator")
    assert (chose.email, chose.slack) == ("email" in chosen, "slack" in chosen)


def test_my_channels_with_slack_set_up_say_nothing_against_it(login, settings):
    settings.SLACK_BOT_TOKEN = "xoxb-test"
    operator = login("operator")
    add = reverse("admin:notifications_reachedby_add")
    assert operator.get(add).context["adminform"].form.fields["slack"].help_text == (
        "A direct message from the platform's Slack app."
    )

    saved = operator.post(add, {"slack": "on"}, follow=True)

    assert [str(message) for message in saved.context["messages"]] == ["Your channels are saved."]
    assert "operator: Slack</h2>" in saved.text  # the choice by its name, not its code


def test_the_user_tools_link_to_my_channels(login):
    page = login("policy-owner").get(reverse("admin:index")).text
    assert 'id="my-channels-link"' in page


def test_my_channels_read_as_the_persons_own_page_before_and_after_the_first_save(login):
    """The first visit is no "Add my channels": the page is the person's own, saved or not;
    nor does it read, once saved, as a record ("operator: Email")."""
    client = login("operator")

    def crumbs(response) -> str:
        trail = re.search(r'<div class="breadcrumbs">(.*?)</div>', response.text, re.S)[1]
        return " ".join(html.unescape(strip_tags(trail)).split())

    first = client.get(reverse("admin:notifications_reachedby_changelist"), follow=True)
    assert first.redirect_chain[-1][0] == reverse("admin:notifications_reachedby_add")
    assert crumbs(first) == "Home › Notifications › My channels"
    assert "<title>My channels |" in first.text
    assert "Add my channels" not in first.text

    client.post(reverse("admin:notifications_reachedby_add"), {"email": "on"})
    saved = client.get(reverse("admin:notifications_reachedby_changelist"), follow=True)
    assert crumbs(saved) == "Home › Notifications › My channels"


def claim_url(proposal) -> str:
    return reverse("admin:approvals_proposal_claim", args=[proposal.pk])


def detail(client: Client, proposal) -> str:
    return client.get(reverse("admin:approvals_proposal_change", args=[proposal.pk])).text


def test_taking_a_proposal_says_until_when_as_its_page_does(login, operators):
    """The message after "I'll take it" and a colleague's refusal name the moment the claim
    lapses as the "On it" line under them does: its day, its second and its zone."""
    proposal = evaluated()
    second = Client()
    second.force_login(operators[1])

    taken = login("operator").post(claim_url(proposal), follow=True)
    refused = second.post(claim_url(proposal), follow=True)

    until = f"{Claim.objects.get(proposal=proposal).lapses_at:%Y-%m-%d %H:%M:%S} UTC"
    assert f"On it:</strong> you, until {until}." in taken.text
    assert f"You are on proposal #{proposal.pk} until {until}; the others see it." in taken.text
    assert f"Proposal #{proposal.pk} is taken: operator is on it until {until}." in refused.text


def test_reviewer_takes_a_proposal_and_gives_it_back(login, operators):
    proposal = evaluated()
    operator = login("operator")
    second = Client()
    second.force_login(operators[1])
    page = detail(operator, proposal)
    assert 'value="I\'ll take it"' in page and "On it:</strong> nobody yet" in page

    taken = operator.post(claim_url(proposal), follow=True)
    assert "You are on proposal" in taken.text
    assert "On it:</strong> you, until" in taken.text
    assert 'id="release-form"' in taken.text
    claim = Claim.objects.get(proposal=proposal)
    assert claim.user.username == "operator" and claim.is_live()

    theirs = detail(second, proposal)
    assert "On it:</strong> operator, until" in theirs
    assert 'id="claim-form"' not in theirs
    assert 'id="approve-form"' in theirs  # claiming stops nobody from deciding
    refused = second.post(claim_url(proposal), follow=True)
    # Their name as it is, never capitalised by the message line (“Operator”).
    assert re.search(
        rf"Proposal #{proposal.pk} is taken: operator is on it until [\d-]+ \d\d:\d\d:\d\d UTC",
        refused.text,
    )
    assert Claim.objects.get(proposal=proposal).user.username == "operator"

    given = operator.post(
        reverse("admin:approvals_proposal_release", args=[proposal.pk]), follow=True
    )
    assert "You gave proposal" in given.text
    assert "On it:</strong> nobody yet" in given.text
    assert second.post(claim_url(proposal)).status_code == 302
    assert Claim.objects.get(proposal=proposal).user == operators[1]
    assert proposal_approve(proposal_id=proposal.pk, reviewer=operators[0]).status == "approved"


def test_only_those_who_may_decide_take_a_proposal(login):
    proposal = evaluated()
    auditor = login("auditor")
    assert 'id="claim-form"' not in detail(auditor, proposal)
    assert auditor.post(claim_url(proposal)).status_code == 403
    operator = login("operator")
    assert operator.get(claim_url(proposal)).status_code == 302  # a page, not an act
    assert not Claim.objects.exists()

    proposal_approve(
        proposal_id=proposal.pk, reviewer=get_user_model().objects.get(username="operator")
    )
    assert 'id="claim-form"' not in detail(operator, proposal)
    refused = operator.post(claim_url(proposal), follow=True)
    assert "there is nothing to take on" in refused.text
    assert not Claim.objects.exists()


def test_one_who_may_not_see_proposals_learns_nothing_from_taking_or_giving_one_back(demo_world):
    """A console user in no group opens no proposal; "Give it back" at a proposal's address
    answered them what it is ("Proposal #3 is rejected; nobody is on it now…") and "I'll take
    it" whether there is one at all ("There is no proposal #4.")."""
    nobody = Client()
    nobody.force_login(get_user_model().objects.create_user("nobody", is_staff=True))
    rejected = evaluated()
    proposal_reject(
        proposal_id=rejected.pk,
        reviewer=get_user_model().objects.get(username="operator"),
        reason_code="other",
    )
    missing = rejected.pk + 1000

    for url in (
        reverse("admin:approvals_proposal_release", args=[rejected.pk]),
        reverse("admin:approvals_proposal_release", args=[missing]),
        claim_url(rejected),
        reverse("admin:approvals_proposal_claim", args=[missing]),
    ):
        answer = nobody.post(url, follow=True)
        assert answer.status_code == 403, url
        assert "rejected" not in answer.text and "There is no proposal" not in answer.text, url


def test_the_queue_shows_who_is_on_each_proposal_in_one_query(login, operators):
    claimed, lapsed, free = (
        evaluated(),
        evaluated(reallocation("250.00")),
        evaluated(reallocation("200.00")),
    )
    operator = login("operator")
    operator.post(claim_url(claimed))
    second = Client()
    second.force_login(operators[1])
    second.post(claim_url(lapsed))
    lapsing = Claim.objects.get(proposal=lapsed)
    lapsing.lapses_at = timezone.now() - timedelta(minutes=1)
    lapsing.save()

    queue = reverse("admin:approvals_proposal_changelist")
    page = operator.get(queue)
    rows = {
        proposal.pk: row
        for proposal in (claimed, lapsed, free)
        for row in page.text.split("<tr")
        if f"/admin/approvals/proposal/{proposal.pk}/change/" in row
    }
    assert "<span>On it</span>" in page.text
    # Until when to the second, with its day, as the proposal's page says it: "until 17:15 UTC"
    # dropped the day (a claim taken before midnight lapses after it) and the seconds.
    lapses = Claim.objects.get(proposal=claimed).lapses_at
    assert f"operator until {lapses:%Y-%m-%d %H:%M:%S} UTC" in rows[claimed.pk]
    assert "second-operator" not in rows[lapsed.pk]  # a lapsed claim shows nothing
    assert "until" not in rows[free.pk]

    with CaptureQueriesContext(connection) as three:
        operator.get(queue)
    for amount in ("150.00", "160.00", "170.00", "180.00", "190.00"):
        operator.post(claim_url(evaluated(reallocation(amount))))
    with CaptureQueriesContext(connection) as eight:
        assert operator.get(queue).text.count("operator until") == 6
    assert len(eight) == len(three)


def test_a_proposals_page_says_who_was_told_on_which_channel_and_its_deadline(login):
    policy = Policy.objects.get(action_type="budget_reallocation")
    policy.decide_within = timedelta(hours=2)
    policy.save()
    proposal = evaluated()
    told = Notification.objects.get(proposal=proposal)
    assert (told.recipient.username, told.channel) == ("operator", "email")

    operator = login("operator")
    page = detail(operator, proposal)
    assert "Who was told" in page
    assert DEMO_ROUTE in page
    assert "Pending" in page
    assert "Decision due by" in page and "ended" not in page.split('id="proposal-deadline"')[1]

    notifications_deliver(notification_ids=[told.pk])
    told.refresh_from_db()
    assert told.status == NotificationStatus.SENT
    route = Route.objects.get(name=DEMO_ROUTE)
    route.name = "Renamed since"
    route.save()
    page = detail(operator, proposal)
    told_table = page.split('id="proposal-told"')[1].split("</table>")[0]
    assert "operator" in told_table and "Email" in told_table and "Sent" in told_table
    assert f"{told.sent_at:%Y-%m-%d %H:%M:%S}" in told_table
    assert DEMO_ROUTE in told_table and "Renamed since" not in told_table  # as it was then

    due = proposal.deadlines.get().due_at
    deadline = page.split('id="proposal-deadline"')[1].split("</p>")[0]
    assert f"{due:%Y-%m-%d %H:%M:%S} UTC" in deadline

    proposal_approve(
        proposal_id=proposal.pk, reviewer=get_user_model().objects.get(username="operator")
    )
    deadline = detail(operator, proposal).split('id="proposal-deadline"')[1].split("</p>")[0]
    assert "in time" in deadline


def test_a_round_nobody_decided_is_not_said_ended_in_time(login):
    """A round withdrawn or superseded before anyone decided it, or expired, is not "ended …,
    in time" on the proposal's page (the dashboard counts it neither in time nor late): the
    page says how it ended. One people decided says how, and that it was in time: "rejected in
    time", as its history says it (it read "decided in time" there)."""
    policy = Policy.objects.get(action_type="budget_reallocation")
    policy.decide_within = timedelta(hours=2)
    policy.save()
    operator = login("operator")

    def deadline_said(proposal) -> str:
        page = detail(operator, proposal).split('id="proposal-deadline"')[1].split("</p>")[0]
        return " ".join(strip_tags(page).split())

    withdrawn = evaluated(reallocation("150.00"))
    proposal_withdraw(agent=withdrawn.agent, proposal_id=withdrawn.pk, note="not now")
    said = deadline_said(withdrawn)
    assert "in time" not in said and "after the deadline" not in said
    assert said.endswith(", withdrawn before enough people approved it")

    expired = evaluated(reallocation("160.00"))
    Proposal.objects.filter(pk=expired.pk).update(
        review_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert proposals_expire_overdue() == 1
    said = deadline_said(expired)
    assert "in time" not in said and said.endswith(", expired before enough people approved it")

    decided = evaluated(reallocation("170.00"))
    proposal_reject(
        proposal_id=decided.pk,
        reviewer=get_user_model().objects.get(username="operator"),
        reason_code="too_aggressive",
    )
    assert deadline_said(decided).endswith(", rejected in time")


def test_a_round_one_of_two_approved_is_not_said_ended_before_anyone_decided_it(login):
    """Under a two-person rule, one operator approved, then the round expired, or its agent
    withdrew it: its deadline line read "expired: nobody decided it" and "withdrawn before
    anyone decided it" beside the approval its page lists and "1 of the 2 approvals" (the
    words its agent's record legend no longer says). It says what ended it before enough
    people approved it."""
    policy = Policy.objects.get(action_type="budget_reallocation")
    policy.decide_within = timedelta(hours=2)
    policy.required_approvals = 2
    policy.save()
    operator = login("operator")
    approver = get_user_model().objects.get(username="operator")

    def deadline_said(proposal) -> str:
        page = detail(operator, proposal).split('id="proposal-deadline"')[1].split("</p>")[0]
        return " ".join(strip_tags(page).split())

    expired = evaluated(reallocation("160.00"))
    assert proposal_approve(proposal_id=expired.pk, reviewer=approver).status == "pending_review"
    Proposal.objects.filter(pk=expired.pk).update(
        review_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert proposals_expire_overdue() == 1
    assert (
        "1 of 2 approvals" in Proposal.history.filter(id=expired.pk).latest().history_change_reason
    )
    said = deadline_said(expired)
    assert said.endswith(", expired before enough people approved it"), said
    assert "nobody" not in said

    withdrawn = evaluated(reallocation("150.00"))
    assert proposal_approve(proposal_id=withdrawn.pk, reviewer=approver).status == "pending_review"
    proposal_withdraw(agent=withdrawn.agent, proposal_id=withdrawn.pk, note="not now")
    said = deadline_said(withdrawn)
    assert said.endswith(", withdrawn before enough people approved it"), said
    assert "anyone" not in said


def test_a_message_on_slack_is_named_on_slack_as_one_by_email_is_by_email(login, settings):
    """A message's page, its breadcrumbs and its history name its channel as the proposal's
    history does ("operator on Slack"), not by its code ("operator by slack")."""
    settings.SLACK_BOT_TOKEN = "xoxb-test"
    ReachedBy.objects.update_or_create(
        user=get_user_model().objects.get(username="operator"),
        defaults={"email": True, "slack": True},
    )
    proposal = evaluated()
    operator = login("operator")
    for channel, said in (("email", "by email"), ("slack", "on Slack")):
        told = Notification.objects.get(proposal=proposal, channel=channel)
        page = operator.get(reverse("admin:notifications_notification_change", args=[told.pk]))
        assert f"Waits for a decision → operator {said}" in html.unescape(page.text), channel
    assert "by slack" not in html.unescape(detail(operator, proposal))


def test_a_proposal_without_deadline_or_route_says_so(login):
    route = Route.objects.get(name=DEMO_ROUTE)
    route.is_active = False
    route.save()
    proposal = evaluated()
    page = detail(login("operator"), proposal)
    assert 'id="proposal-deadline"' not in page
    assert "Nobody: no route told anyone of it." in page
    assert proposal.status == ProposalStatus.PENDING_REVIEW


def test_the_claims_list_shows_nobody_on_a_proposal_once_it_is_decided(login):
    waiting, decided = evaluated(), evaluated(reallocation("250.00"))
    operator = login("operator")
    operator.post(claim_url(waiting))
    operator.post(claim_url(decided))
    proposal_approve(
        proposal_id=decided.pk, reviewer=get_user_model().objects.get(username="operator")
    )

    page = login("auditor").get(reverse("admin:notifications_claim_changelist")).text
    on_it_now = dict(
        re.findall(
            r'field-proposal_id"><a [^>]*>(\d+)</a>.*?field-live"><img [^>]*alt="(\w+)"',
            page,
            re.S,
        )
    )
    assert on_it_now == {str(waiting.pk): "True", str(decided.pk): "False"}


def readonly_value(page: str, field: str) -> str:
    """What a read-only record's page shows for ``field``."""
    row = page.split(f"field-{field}")[1]
    return row.split('<div class="readonly">')[1].split("</div>")[0].strip()


def console_times(page: str) -> list[str]:
    return re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", page)


def test_a_sent_message_shows_no_next_attempt_on_its_page_or_in_its_history(login):
    """Once sent, nothing more is tried: its page shows no next attempt (not the lease it was
    sent under, two minutes after sending), and its history shows no time after it went."""
    proposal = evaluated()
    told = Notification.objects.get(proposal=proposal)
    notifications_deliver(notification_ids=[told.pk])
    told.refresh_from_db()
    assert (told.status, told.next_attempt_at) == (NotificationStatus.SENT, None)

    auditor = login("auditor")
    page = auditor.get(reverse("admin:notifications_notification_change", args=[told.pk])).text
    assert readonly_value(page, "next_attempt_at") == "—"
    assert readonly_value(page, "sent_at") != "—"
    history = auditor.get(reverse("admin:notifications_notification_history", args=[told.pk]))
    sent = f"{timezone.localtime(told.sent_at):%Y-%m-%d %H:%M:%S}"
    assert sent in console_times(history.text)
    assert max(console_times(history.text)) == sent, "a time after it went"


def test_a_message_whose_sender_died_then_not_sent_says_it_may_have_reached_them(login):
    """A sender took the message, may have sent it, and died before recording it; the
    proposal was rejected meanwhile, so the sender that takes it next does not send it. Its
    page, the outbox and its history say it may have reached the person all the same."""
    proposal = evaluated()
    told = Notification.objects.get(proposal=proposal)
    Notification.objects.filter(pk=told.pk).update(  # leased, sent perhaps, never recorded
        attempts=1, next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    operator = get_user_model().objects.get(username="operator")
    proposal_reject(proposal_id=proposal.pk, reviewer=operator, reason_code="wrong_signal")

    notifications_deliver(notification_ids=[told.pk])

    told.refresh_from_db()
    assert (told.status, told.attempts) == (NotificationStatus.NOT_SENT, 1)
    maybe = "attempt 1 was interrupted and may have reached them"
    client = login("auditor")
    told_table = detail(client, proposal).split('id="proposal-told"')[1].split("</table>")[0]
    assert f"Not sent, but {maybe}" in told_table
    assert "perhaps (interrupted)" in told_table  # not "—" as sent
    outbox = client.get(reverse("admin:notifications_notification_changelist")).text
    assert f"Not sent, but {maybe}" in outbox
    *_, interrupted, not_sent = told.history.order_by("history_id").values_list(
        "history_change_reason", flat=True
    )
    assert interrupted.startswith("Attempt 1 to reach operator by email interrupted")
    assert not_sent == (
        "Not sent to operator by email: the proposal is rejected and no longer waits for this "
        f"review; {maybe}"
    )
    assert told.next_attempt_at is None  # nothing more is tried


def test_a_message_s_page_lists_its_attempts_in_the_console_s_words(login, demo_world):
    """Each attempt on its own line, numbered, at the time as the console writes one, with what
    it got (and what became of its proposal as it went): not the log's JSON, whose times were
    ISO 8601 to the microsecond, in another form than every other time on the page."""
    from notifications.models import NotificationChannel, NotificationKind

    proposal = evaluated()
    first, second = timezone.now() - timedelta(minutes=3), timezone.now()
    notification = Notification.objects.create(
        proposal=proposal,
        review_round=1,
        recipient=get_user_model().objects.get(username="operator"),
        channel=NotificationChannel.EMAIL,
        kind=NotificationKind.WAITING,
    )
    notification.attempts = 2
    notification.log = [
        {"at": first.isoformat(), "result": "refused by the mail server: 451 try later"},
        {
            "at": second.isoformat(),
            "result": "accepted by mail.example.com for operator@example.com",
            "then": "the proposal became approved as it went, which an email cannot take back",
        },
    ]
    notification.save()

    auditor = login("auditor")
    page = auditor.get(reverse("admin:notifications_notification_change", args=[notification.pk]))
    version = auditor.get(
        reverse(
            "admin:notifications_notification_simple_history",
            args=[notification.pk, notification.history.latest("history_date").history_id],
        )
    )

    for shown in (page, version):
        assert shown.status_code == 200
        plain = html.unescape(strip_tags(shown.text))
        assert (
            f"Attempt 1, {timezone.localtime(first):%Y-%m-%d %H:%M:%S} UTC: refused by the mail "
            "server: 451 try later" in plain
        )
        assert (
            f"Attempt 2, {timezone.localtime(second):%Y-%m-%d %H:%M:%S} UTC: accepted by "
            "mail.example.com for operator@example.com; the proposal became approved as it "
            "went, which an email cannot take back" in plain
        )
        assert first.isoformat() not in shown.text and '"result"' not in shown.text
    # And its history list, where the log changed.
    listed = auditor.get(
        reverse("admin:notifications_notification_history", args=[notification.pk])
    )
    plain = " ".join(html.unescape(strip_tags(listed.text)).split())
    assert (
        f"Log: — → Attempt 1, {timezone.localtime(first):%Y-%m-%d %H:%M:%S} UTC: refused" in plain
    )
    assert first.isoformat() not in listed.text


def test_my_channels_say_that_email_reaches_no_inbox_without_a_mail_server(
    login, settings, tmp_path
):
    """Without EMAIL_HOST (the demo, a laptop) an email is written as a file on the server,
    and the page said "Email goes to operator@example.com": an operator waited for mail that
    nothing sends. The box says so beside it, as it does of Slack not set up."""
    settings.EMAIL_HOST = ""
    settings.EMAIL_FILE_PATH = str(tmp_path / "sent-mail")
    form = login("operator").get(reverse("admin:notifications_reachedby_add"))
    assert form.context["adminform"].form.fields["email"].help_text == (
        "At the address of your account. No mail server is set up on this platform: "
        f"messages are written as files to {tmp_path / 'sent-mail'} on its server, and "
        "none reaches your inbox until an administrator sets one up."
    )

    settings.EMAIL_HOST = "mail.example.com"
    form = login("operator").get(reverse("admin:notifications_reachedby_add"))
    assert form.context["adminform"].form.fields["email"].help_text == (
        "At the address of your account."
    )
