"""What reaches nobody is seen: a proposal that waits for a person, or whose execution failed,
of which no message reached anyone (no active route names anyone for it) is counted on the
dashboard beside what waits and what failed, and above the routes for the people who keep
them, each count linked to the proposal list's "Who was told: Nobody", which lists exactly
those. Before, only the proposal's own page and history said so, and nobody looked there."""

import html
import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from approvals.models import Agent, Proposal
from approvals.services.decisions import proposal_approve, proposal_retry
from executors.runner import proposal_execute
from hitlproject.vocabulary import INTERRUPTED
from ledger.models import Account
from notifications.digests import notifications_send_digests
from notifications.models import Notification, NotificationKind, NotificationStatus, Route
from notifications.services import notifications_deliver
from policies.models import Policy
from tests.conftest import bid_adjustment, reallocation
from tests.factories import evaluated
from tests.test_queue_decision_due import rows

QUEUE = reverse("admin:approvals_proposal_changelist")
ROUTES = reverse("admin:notifications_route_changelist")
ROUTE_TO_OPERATORS = "Demo: everything waiting, to the operators"


@pytest.fixture
def uncovered(demo_world, channel) -> Account:
    """An account with the demo's campaigns, which the optimizer acts on and no route names
    (seed_demo's routes name the demo account), its channel endpoint as the demo's: both
    answer 400."""
    endpoint = channel(400, says=b'{"error": "campaign is archived"}')
    demo = Account.objects.get(external_id="demo")
    other = Account.objects.create(
        external_id="other",
        name="Other",
        channel=demo.channel,
        currency=demo.currency,
        execution_endpoint=endpoint.url,
    )
    for campaign in demo.campaigns.all():
        campaign.pk, campaign.account = None, other
        campaign.save()
    Agent.objects.get(name="optimizer").accounts.add(other)
    return other


def failed(account: str, new_bid: str = "2.12", campaign: str = "brand-search") -> Proposal:
    """A bid raise of 5 or 6% its policy lets run at once, whose channel refuses it (400)."""
    proposal = evaluated(bid_adjustment(new_bid, campaign, account=account))
    assert proposal.status == "approved"
    assert proposal_execute(proposal_id=proposal.pk).status == "failed"
    return proposal


def listed(page) -> list[int]:
    """The proposals a list shows, by id, in its order."""
    assert page.status_code == 200, page.content[:500]
    return list(rows(page))


def dashboard_link(page, element_id: str) -> tuple[int, str]:
    """The number a dashboard figure says, and where its link goes."""
    found = re.search(
        rf'<a id="{element_id}" href="([^"]+)">(?:[^<]*<span class="count">)?(\d+)', page.text
    )
    assert found, f"no #{element_id} on the dashboard"
    return int(found.group(2)), html.unescape(found.group(1))


def counted_and_listed(client, element_id: str) -> tuple[int, list[int]]:
    """What a dashboard figure says, read from the dashboard, and the proposals its link lists."""
    count, url = dashboard_link(client.get(reverse("admin:index")), element_id)
    return count, listed(client.get(url))


def test_what_waits_or_failed_on_an_account_no_route_names_is_counted_and_listed(uncovered, login):
    waiting_unheard = evaluated(reallocation("280.00", account="other"))
    failed_unheard = failed("other")
    waiting_told = evaluated(reallocation("280.00"))  # the operators are told (demo's route)
    failed_told = failed("demo")
    assert Notification.objects.filter(proposal=waiting_told, kind="waiting").exists()
    assert Notification.objects.filter(proposal=failed_told, kind="failed").exists()
    assert not Notification.objects.filter(proposal__in=[waiting_unheard, failed_unheard])
    operator = login("operator")

    dashboard = operator.get(reverse("admin:index"))

    waiting_count, waiting_url = dashboard_link(dashboard, "waiting-told-nobody")
    failed_count, failed_url = dashboard_link(dashboard, "failed-told-nobody")
    assert (waiting_count, failed_count) == (1, 1)
    said = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dashboard.text)).split())
    assert "Waiting for a person now 2 Nobody was told of 1 of them" in said  # beside it
    assert "Failed executions now 2 Nobody was told 1 of them failed" in said
    # What each number links to lists exactly those it counts.
    assert listed(operator.get(waiting_url)) == [waiting_unheard.pk]
    assert listed(operator.get(failed_url)) == [failed_unheard.pk]
    assert sorted(listed(operator.get(QUEUE, {"status": "all", "told": "nobody"}))) == sorted(
        [waiting_unheard.pk, failed_unheard.pk]
    )
    assert operator.get(QUEUE, {"told": "nobdy"}).status_code == 400
    # "Show counts" counts it as it lists it, within the status picked.
    counted = html.unescape(operator.get(QUEUE, {"_facets": "True"}).text)
    assert re.search(r">\s*Nobody \(1\)\s*<", counted)

    # The people who keep the routes read it above them, linked to the same lists.
    routes = login("policy-owner").get(ROUTES)
    notice = re.search(r'<div class="errornote" id="told-nobody">(.*?)</div>', routes.text, re.S)
    assert notice, "the routes list says nothing of what reached nobody"
    said = " ".join(html.unescape(re.sub(r"<[^>]+>", "", notice.group(1))).split())
    assert said.startswith(
        "1 waiting proposal and 1 failed execution reached nobody: no message about them went "
        "to anyone, or is on its way."
    ), said
    links = [html.unescape(url) for url in re.findall(r'href="([^"]+)"', notice.group(1))]
    assert links == [waiting_url, failed_url]

    # A route made since, naming everyone for every account, tells of what comes after it:
    # not of these, which still reached nobody, and the notice says why, not that no route
    # names anyone for them.
    everything = Route.objects.create(name="Everything, to the operators")
    everything.groups.set([Group.objects.get(name="operators")])
    assert sorted(listed(operator.get(QUEUE, {"status": "all", "told": "nobody"}))) == sorted(
        [waiting_unheard.pk, failed_unheard.pk]
    )
    routes = login("policy-owner").get(ROUTES)
    notice = re.search(r'<div class="errornote" id="told-nobody">(.*?)</div>', routes.text, re.S)
    said = " ".join(html.unescape(re.sub(r"<[^>]+>", "", notice.group(1))).split())
    assert "A route made since tells of those that come after it, not of these" in said


def test_what_nobody_was_told_of_yet_is_said_apart_from_what_was_told(uncovered, login, settings):
    """A failure whose message is held to go with the other failures (0 attempts, due in a
    minute) told nobody yet: the dashboard read "Failed executions now 3 · Nobody was told 1
    of them failed", counting it among those told. It now says it apart, linked to exactly
    it, as it does a waiting proposal whose message is held for a digest; once its message
    went, it is told."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    unheard = failed("other")
    grouped_for = settings.NOTIFICATION_FAILURES_GROUPED_SECONDS
    settings.NOTIFICATION_FAILURES_GROUPED_SECONDS = 0  # told at once
    told = failed("demo")
    notifications_deliver(
        notification_ids=list(
            Notification.objects.filter(proposal=told).values_list("pk", flat=True)
        )
    )
    settings.NOTIFICATION_FAILURES_GROUPED_SECONDS = grouped_for
    held = failed("demo", "0.84", campaign="display-retarget")
    [message] = Notification.objects.filter(proposal=held)
    assert (message.status, message.attempts) == (NotificationStatus.HELD, 0)
    assert Notification.objects.get(proposal=told).status == NotificationStatus.SENT
    waiting_held = evaluated(reallocation("280.00"))
    Notification.objects.filter(proposal=waiting_held).update(status=NotificationStatus.HELD)
    operator = login("operator")

    said = " ".join(
        html.unescape(re.sub(r"<[^>]+>", " ", operator.get(reverse("admin:index")).text)).split()
    )

    assert (
        "Failed executions now 3 Nobody was told 1 of them failed "
        "Nobody was told yet that 1 of them failed: a message is on its way"
    ) in said
    assert (
        "Waiting for a person now 1 Nobody was told yet of 1 of them: a message is on its way"
    ) in said
    assert counted_and_listed(operator, "failed-told-nobody") == (1, [unheard.pk])
    assert counted_and_listed(operator, "failed-told-not-yet") == (1, [held.pk])
    assert counted_and_listed(operator, "waiting-told-not-yet") == (1, [waiting_held.pk])
    assert sorted(listed(operator.get(QUEUE, {"status": "all", "told": "not_yet"}))) == sorted(
        [held.pk, waiting_held.pk]
    )

    notifications_send_digests(now=timezone.now() + timedelta(seconds=grouped_for + 1))
    assert Notification.objects.get(pk=message.pk).status == NotificationStatus.SENT
    said = " ".join(
        html.unescape(re.sub(r"<[^>]+>", " ", operator.get(reverse("admin:index")).text)).split()
    )
    assert "Nobody was told yet that" not in said
    assert listed(operator.get(QUEUE, {"status": "failed", "told": "not_yet"})) == []


def test_a_failure_told_then_retried_and_failed_again_counts_by_its_last_failure(
    uncovered, login, settings
):
    """Each failed first while a route named the operators, and was told. With the route
    gone, a person retried each and it failed again. The operator, emailed of the first
    failure, is told of the second too (as each told of it before is); of the other, whose
    first message was overtaken by the retry and never went, nobody is told: it is counted,
    though messages of its first failure are on record."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.NOTIFICATION_FAILURES_GROUPED_SECONDS = 0  # each told at once
    told_twice = failed("demo")
    [first_message] = Notification.objects.filter(proposal=told_twice, kind="failed")
    notifications_deliver(notification_ids=[first_message.pk])
    overtaken = failed("demo", "0.84", campaign="display-retarget")
    Route.objects.filter(name=ROUTE_TO_OPERATORS).update(is_active=False)
    operator = get_user_model().objects.get(username="operator")
    for proposal in (told_twice, overtaken):
        proposal_retry(proposal_id=proposal.pk, reviewer=operator)
        assert proposal_execute(proposal_id=proposal.pk).status == "failed"
    notifications_deliver(
        notification_ids=list(
            Notification.objects.filter(proposal=overtaken).values_list("pk", flat=True)
        )
    )
    assert Notification.objects.filter(proposal=told_twice, kind="failed").count() == 2
    assert Notification.objects.get(proposal=overtaken).status == NotificationStatus.NOT_SENT
    operator = login("operator")

    assert counted_and_listed(operator, "failed-told-nobody") == (1, [overtaken.pk])


def test_a_proposal_told_then_edited_into_a_new_round_counts_by_its_new_round(
    demo_world, login, operators
):
    """Under the two-person rule, an edit after the first approval starts its review again:
    the new round is told afresh (to the route's people but the editor). While the route
    names someone, it was told; with the route gone before the edit, its new round reached
    nobody, however many messages its first round sent."""
    Policy.objects.filter(action_type="budget_reallocation").update(required_approvals=2)
    first, second = operators
    told_again = evaluated(reallocation("280.00"))
    unheard_again = evaluated(reallocation("250.00"))
    for proposal in (told_again, unheard_again):
        proposal_approve(proposal_id=proposal.pk, reviewer=first)
    edited = {"from_campaign": "brand-search", "to_campaign": "generic-search", "amount": "200.00"}
    proposal_approve(proposal_id=told_again.pk, reviewer=second, edited_payload=edited)
    Route.objects.filter(name=ROUTE_TO_OPERATORS).update(is_active=False)
    proposal_approve(proposal_id=unheard_again.pk, reviewer=second, edited_payload=edited)
    for proposal in (told_again, unheard_again):
        proposal.refresh_from_db()
        assert (proposal.status, proposal.review_round) == ("pending_review", 2)
    assert Notification.objects.filter(proposal=unheard_again, review_round=1).exists()
    operator = login("operator")

    assert counted_and_listed(operator, "waiting-told-nobody") == (1, [unheard_again.pk])


def test_what_no_longer_waits_or_reached_nobody_only_by_a_message_not_sent_is_counted_so(
    uncovered, login
):
    """A waiting proposal past its review window no longer waits (nobody can decide it; the
    sweep expires it, not the list that reads it): not counted. One whose only message was
    not sent (its reader deactivated) reached nobody; one whose message is held for a digest,
    or may have gone, reached someone."""
    late = evaluated(reallocation("280.00", account="other"))
    Proposal.objects.filter(pk=late.pk).update(review_expires_at=timezone.now() - timedelta(1))
    not_sent = evaluated(reallocation("250.00"))
    Notification.objects.filter(proposal=not_sent).update(status=NotificationStatus.NOT_SENT)
    held = evaluated(reallocation("240.00"))
    Notification.objects.filter(proposal=held).update(status=NotificationStatus.HELD)
    interrupted = evaluated(reallocation("230.00"))
    Notification.objects.filter(proposal=interrupted).update(
        status=NotificationStatus.FAILED,
        log=[{"result": f"Attempt 1 to reach operator by email {INTERRUPTED}"}],
    )
    given_up = evaluated(reallocation("220.00"))
    Notification.objects.filter(proposal=given_up, kind=NotificationKind.WAITING).update(
        status=NotificationStatus.FAILED, log=[{"result": "the mail server answered 550"}]
    )
    operator = login("operator")

    routes = html.unescape(re.sub(r"<[^>]+>", "", login("policy-owner").get(ROUTES).text))
    count, shown = counted_and_listed(operator, "waiting-told-nobody")

    assert (count, sorted(shown)) == (2, sorted([not_sent.pk, given_up.pk]))
    assert Proposal.objects.get(pk=late.pk).status == "pending_review"  # the reads wrote nothing
    assert "2 waiting proposals reached nobody" in routes


def test_with_nothing_that_reached_nobody_the_routes_list_says_nothing_of_it(
    demo_world, login, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    told = evaluated(reallocation("280.00"))
    notifications_deliver(
        notification_ids=list(
            Notification.objects.filter(proposal=told).values_list("pk", flat=True)
        )
    )
    assert set(Notification.objects.filter(proposal=told).values_list("status", flat=True)) == {
        NotificationStatus.SENT
    }

    assert 'id="told-nobody"' not in login("policy-owner").get(ROUTES).text
    # Nor the dashboard: no "Nobody was told of 0 of them" under what waits, nor "Nobody was
    # told 0 of them failed" under what failed.
    said = " ".join(
        html.unescape(
            re.sub(r"<[^>]+>", " ", login("operator").get(reverse("admin:index")).text)
        ).split()
    )
    assert "Waiting for a person now 1 Oldest waiting" in said
    assert "Failed executions now 0 Deadlines" in said
    assert "Nobody was told" not in said
