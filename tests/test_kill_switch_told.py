"""A kill switch engaged or released is told to the people who decide what it covers: each
person the active routes meeting its scope name, on their own channels, a message drawn as it
goes (about ten seconds after the save) saying who engaged it, when and why, and what it has
held back by then, linked to the list of those proposals; released, who released it and how
many of those it sent to a person still wait (releasing it runs none of them). Before, the
policy owner's own console said so and nobody else was told anything: the operators learnt
of it only as each held proposal reached them as one more "Waits for your decision"."""

import html
import json
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal
from approvals.selectors import proposals_sent_by_kill_switch
from approvals.services.decisions import proposal_approve
from audit.actors import Actor, acting_as, changed_by
from executors.runner import proposal_execute
from hitlproject.formats import console_time
from ledger.models import Account
from notifications.models import Notification, ReachedBy, Route
from notifications.services import notifications_deliver
from policies.models import KillSwitch
from tests.conftest import bid_adjustment, posted_from_page, reallocation, wait_until
from tests.factories import evaluated
from tests.slack_fake import shown_text
from tests.test_policy_tuning import form_data

OUTAGE = "Tracking outage: nothing runs unseen."
TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def told_in(mailbox, subject_starts: str) -> list:
    return [
        m for m in mailbox.to("operator@example.com") if m["Subject"].startswith(subject_starts)
    ]


def text_of(message) -> str:
    return " ".join(message.get_body(("plain",)).get_content().split())


def slack_text(call) -> str:
    blocks = call.get("blocks")
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return " ".join(shown_text(blocks).split())


def links_in(message) -> list[str]:
    return re.findall(r"https?://\S+", message.get_body(("plain",)).get_content())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_the_operators_are_told_a_switch_is_engaged_what_it_held_and_when_it_is_released(
    login, slack, mailbox, channel, monkeypatch
):
    channel(200)
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.update_or_create(user=operator, defaults={"slack": True, "email": True})
    with monkeypatch.context() as patch:  # approved by policy, not yet run
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        approved = [
            evaluated(bid_adjustment("2.12")),
            evaluated(bid_adjustment("0.84", campaign="display-retarget")),
        ]
    assert [p.status for p in approved] == ["approved", "approved"]
    owner = login("policy-owner")
    engaged = owner.post(
        "/admin/policies/killswitch/add/",
        {
            "scope": "account",
            "account": Account.objects.get(external_id="demo").pk,
            "engaged": "on",
            "reason": OUTAGE,
            "change_reason": "Incident 7.",
        },
    )
    assert engaged.status_code == 302
    switch = KillSwitch.objects.get()
    for proposal in approved:  # the executor comes to them, and holds them back
        assert proposal_execute(proposal_id=proposal.pk).status == "pending_review"

    [email] = wait_until(lambda: told_in(mailbox, "[HITL] Kill switch engaged"), timeout=40)
    assert email["Subject"] == f"[HITL] Kill switch engaged on account demo: {OUTAGE}"
    said = text_of(email)
    assert re.search(
        f"The kill switch on account demo was engaged by policy-owner \\(person\\) at {TIME}: "
        + re.escape(OUTAGE),
        said,
    ), said
    assert "While it is engaged, nothing on account demo runs without a person's approval" in said
    assert re.search(
        f"As of {TIME}, it has held back 2 approved proposals before they ran \\(listed below\\): "
        "each went back to a person, to approve again.",
        said,
    ), said
    assert "You are told by the route “Demo: everything waiting, to the operators”." in said
    [listed] = [url for url in links_in(email) if "&kill_switch=" in url]
    assert listed.endswith(f"/admin/approvals/proposal/?status=all&kill_switch={switch.pk}")
    address = urlsplit(listed)
    page = login("operator").get(f"{address.path}?{address.query}")
    assert page.status_code == 200
    shown = set(page.context["cl"].result_list.values_list("pk", flat=True))
    assert shown == {p.pk for p in approved}
    [posted] = [
        call
        for call in slack.sent("chat.postMessage", channel="U0OPERATOR")
        if call.get("text") == "Kill switch engaged on account demo"
    ]
    assert "it has held back 2 approved proposals before they ran" in slack_text(posted)
    # The dashboard says, beside the switch, who was told of it.
    wait_until(lambda: "Told: operator and policy-owner." in switch_on_dashboard(login))

    mailbox.messages.clear()
    released = posted_from_page(
        owner,
        f"/admin/policies/killswitch/{switch.pk}/change/",
        {
            "scope": "account",
            "account": switch.account_id,
            "reason": OUTAGE,
            "change_reason": "Fixed.",
        },
    )
    assert released.status_code == 302 and not KillSwitch.objects.get().engaged

    [email] = wait_until(lambda: told_in(mailbox, "[HITL] Kill switch released"), timeout=40)
    assert email["Subject"] == "[HITL] Kill switch released on account demo"
    said = text_of(email)
    assert re.search(
        f"The kill switch on account demo was released by policy-owner \\(person\\) at {TIME}. "
        f"It had been engaged since {TIME} by policy-owner \\(person\\): " + re.escape(OUTAGE),
        said,
    ), said
    assert (
        "While it was engaged, it sent 2 proposals to a person (2 held back before they ran). "
        "2 of them still wait for a person's decision: releasing the switch runs none of them; "
        "each runs once a person approves it."
    ) in said

    # Who was told is on record, as for a proposal's messages.
    def told() -> list:
        return sorted(
            Notification.objects.filter(
                kill_switch=switch, status="sent", recipient__username="operator"
            ).values_list("kind", "channel")
        )

    assert wait_until(lambda: len(told()) == 4) and told() == [
        ("switch_engaged", "email"),
        ("switch_engaged", "slack"),
        ("switch_released", "email"),
        ("switch_released", "slack"),
    ]
    history = Notification.history.filter(kill_switch_id=switch.pk).values_list(
        "history_change_reason", flat=True
    )
    assert any(reason.startswith("Sent to operator by email: accepted by") for reason in history)


def switch_on_dashboard(login) -> str:
    page = login("operator").get("/admin/")
    assert page.status_code == 200
    found = re.search(r'<li data-kill-switch="\d+">(.*?)</li>', page.content.decode(), re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split()) if found else ""


def test_the_dashboard_ends_a_switch_s_reason_as_a_sentence_before_who_was_told(login):
    """A reason written without a full stop ran into the next sentence: "…: Google Ads
    outage Told: operator and policy-owner." (the emails end it)."""
    KillSwitch.objects.create(scope="channel", channel="google_ads", reason="Google Ads outage")

    said = switch_on_dashboard(login)
    # Then who was told, or is being told, as a sentence of its own.
    assert re.search(
        r": Google Ads outage\. (Told|Being told): operator and policy-owner\.$", said
    ), said


def test_the_dashboard_says_when_nobody_was_told_a_switch_is_engaged(login):
    """No route reaches the account the switch covers: the dashboard says so beside it."""
    elsewhere = Account.objects.create(external_id="acme", name="Acme", channel="meta")
    KillSwitch.objects.create(scope="account", account=elsewhere, reason="Acme only.")

    said = switch_on_dashboard(login)

    assert said.startswith("On account acme, engaged by ")
    assert said.endswith(
        "Acme only. Nobody was told it is engaged: no active route names anyone for what it covers."
    )


def test_a_switch_engaged_and_released_at_once_tells_nobody_anything(demo_world, mailbox):
    """Engaged by mistake and released within seconds: neither message goes (each is drawn as
    it goes, and by then neither is so), and the outbox says why, so nobody reads that a
    switch is engaged that was released, or released that they never heard was engaged."""
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=OUTAGE
    )
    switch.engaged = False
    switch.save()
    messages = Notification.objects.filter(kill_switch=switch)
    assert sorted(messages.values_list("recipient__username", "kind")) == [
        ("operator", "switch_engaged"),
        ("operator", "switch_released"),
        ("policy-owner", "switch_engaged"),
        ("policy-owner", "switch_released"),
    ]
    messages.update(next_attempt_at=timezone.now() - timedelta(seconds=1))

    done = notifications_deliver(notification_ids=list(messages.values_list("pk", flat=True)))

    assert {n.status for n in done} == {"not_sent"}
    said = {
        n.kind: n.log[-1]["result"]
        for n in Notification.objects.filter(kill_switch=switch, recipient__username="operator")
    }
    assert said == {
        "switch_engaged": "not sent: the kill switch was released before it went",
        "switch_released": (
            "not sent: they were not told it was engaged (it was released before that message went)"
        ),
    }
    assert mailbox.messages == []


def test_an_emails_subject_quotes_a_long_reason_cut_and_its_body_whole(demo_world, mailoutbox):
    long = "Tracking outage " + "x" * 200
    switch = KillSwitch.objects.create(scope="global", reason=long)
    messages = Notification.objects.filter(kill_switch=switch, recipient__username="operator")
    messages.update(next_attempt_at=timezone.now() - timedelta(seconds=1))

    notifications_deliver(notification_ids=list(messages.values_list("pk", flat=True)))

    [email] = [m for m in mailoutbox if m.to == ["operator@example.com"]]
    assert email.subject == f"[HITL] Kill switch engaged on everything: {long[:79]}…"
    assert "was engaged by " in email.body and f"{long}." in email.body


def test_a_switch_over_another_account_tells_nobody_whose_routes_do_not_reach_it(demo_world):
    elsewhere = Account.objects.create(external_id="acme", name="Acme", channel="meta")
    KillSwitch.objects.create(scope="account", account=elsewhere, reason="Acme only.")
    assert not Notification.objects.exists()
    everything = KillSwitch.objects.create(scope="global", reason=OUTAGE)
    told = Notification.objects.filter(kill_switch=everything)
    # The operators' route (every demo proposal) and the policy owners' (demo's policy
    # changes): the switch holds what either tells of.
    assert sorted(told.values_list("recipient__username", flat=True)) == [
        "operator",
        "policy-owner",
    ]


def test_the_dashboard_does_not_say_no_route_names_anyone_where_those_named_have_no_channel(
    login,
):
    """The routes reaching the switch name the operators and the policy owners, none of whom
    has a channel to be told on (no email address, none chosen): nobody was told, and the
    dashboard says why as it is, not that no route names anyone."""
    get_user_model().objects.exclude(username="auditor").update(email="")
    KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=OUTAGE
    )
    assert not Notification.objects.exists()

    said = switch_on_dashboard(login)

    assert said.endswith(
        "Nobody was told it is engaged: the routes for what it covers name operator and "
        "policy-owner, who have no channel to be told on (none chosen, or email without an "
        "address)."
    ), said


def test_a_switch_messages_page_says_it_told_of_no_review_round(demo_world, login):
    """A message about a kill switch is about no proposal: its page does not say its
    proposal's policy let it run without a person."""
    switch = KillSwitch.objects.create(scope="global", reason=OUTAGE)
    told = Notification.objects.filter(kill_switch=switch).first()

    page = login("auditor").get(f"/admin/notifications/notification/{told.pk}/change/")

    shown = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.content.decode())).split())
    assert "its policy let it run without a person" not in shown
    assert "Review round: none: a message about a kill switch, not about a proposal" in shown


def deliver_due(switch) -> list:
    """Send the switch's messages now (not ten seconds on): what each says or why not."""
    due = Notification.objects.filter(kill_switch=switch, status="pending")
    due.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    return notifications_deliver(notification_ids=list(due.values_list("pk", flat=True)))


def test_an_engaged_switchs_message_says_its_save_held_them_and_what_a_person_approves_runs(
    demo_world, mailoutbox, login
):
    """Engaged over two approved bids (its save holds both back at once), then a person
    approves one again: the message said "1 approved proposal it covers is not yet carried
    out: it holds each back as its execution comes", of the one that runs, being approved by
    a person while it is engaged. Now it says the save held both (linked to them), and that
    what a person approves while it is engaged runs."""
    approved = [
        evaluated(bid_adjustment("2.12")),
        evaluated(bid_adjustment("0.84", campaign="display-retarget")),
    ]
    waiting = evaluated(reallocation("280.00"))
    assert [p.status for p in (*approved, waiting)] == ["approved", "approved", "pending_review"]
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=OUTAGE
    )
    assert {p.status for p in Proposal.objects.filter(pk__in=[p.pk for p in approved])} == {
        "pending_review"
    }
    operator = get_user_model().objects.get(username="operator")
    assert proposal_approve(proposal_id=approved[0].pk, reviewer=operator).status == "approved"
    deliver_due(switch)

    [email] = [m for m in mailoutbox if m.to == ["operator@example.com"]]
    said = " ".join(email.body.split())
    assert (
        "While it is engaged, nothing on account demo runs without a person's approval: what "
        "its policy would let run at once waits for a person, and what was approved and not "
        "yet carried out when it was engaged went back to a person then, to approve again. "
        "What a person approves (or sends to run again) while it is engaged runs: the switch "
        "holds back nothing a person approved since it was engaged."
    ) in said, said
    assert re.search(
        rf"As of {TIME}, it has held back 2 approved proposals before they ran \(listed "
        r"below\): each went back to a person, to approve again; 1 approved proposal it covers "
        "is not yet carried out: a person approved it while the switch was engaged, which lets "
        r"it run\.",
        said,
    ), said
    assert "as its execution comes" not in said
    [listed] = [url for url in re.findall(r"https?://\S+", email.body) if "held_by" in url]
    assert listed.endswith(f"/admin/approvals/proposal/?status=all&held_by_kill_switch={switch.pk}")
    address = urlsplit(listed)
    page = login("operator").get(f"{address.path}?{address.query}")
    assert page.status_code == 200
    assert set(page.context["cl"].result_list.values_list("pk", flat=True)) == {
        p.pk for p in approved
    }


def test_a_switch_moved_off_what_people_were_told_tells_them_it_no_longer_covers_it(
    demo_world, mailoutbox
):
    """Engaged on account demo (a Google Ads account), then moved to channel Meta: the
    operators told "Kill switch engaged on account demo" are told it no longer covers demo,
    whose proposals now run without a person. Before, nobody was told anything: they were
    told only that it was engaged on demo."""
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=OUTAGE
    )
    deliver_due(switch)
    mailoutbox.clear()

    switch.scope, switch.account, switch.channel = "channel", None, "meta"
    switch.save()
    deliver_due(switch)

    [email] = [m for m in mailoutbox if m.to == ["operator@example.com"]]
    assert email.subject == "[HITL] Kill switch no longer on account demo: moved to channel Meta"
    said = " ".join(email.body.split())
    assert re.search(
        f"The kill switch engaged on account demo was moved by .+ at {TIME}: it no longer "
        "covers account demo. It covers channel Meta now.",
        said,
    ), said
    assert (
        "What a policy lets run on account demo runs without a person's approval again: no "
        "kill switch covers it now."
    ) in said
    assert sorted(
        Notification.objects.filter(kill_switch=switch, kind="switch_moved").values_list(
            "recipient__username", "status"
        )
    ) == [("operator", "sent"), ("policy-owner", "sent")]

    # Released now: those it was moved off heard it no longer covers them; nobody else was
    # told it was engaged, and no route reaches channel Meta: nobody is told of the release.
    mailoutbox.clear()
    switch.engaged = False
    switch.save()
    assert not Notification.objects.filter(kill_switch=switch, kind="switch_released").exists()


def test_a_switch_moved_onto_what_people_are_told_of_says_when_it_moved_and_since_when_engaged(
    demo_world, mailoutbox
):
    """Engaged on account acme (no route reaches it), then moved to account demo: the
    operators were told "The kill switch on account demo was engaged by … at <when it was
    first engaged, on acme>", as if someone had engaged it on demo then. Now they are told
    it was moved there, by whom and when, and since when it has been engaged."""
    elsewhere = Account.objects.create(external_id="acme", name="Acme", channel="meta")
    with acting_as(Actor.for_user(get_user_model().objects.get(username="policy-owner"))):
        switch = KillSwitch.objects.create(scope="account", account=elsewhere, reason=OUTAGE)
    assert deliver_due(switch) == []  # nobody is told of acme
    engaged_at = switch.history.earliest("history_id").history_date

    switch.account = Account.objects.get(external_id="demo")
    with acting_as(Actor.system("data script")):
        switch.save()
    moved_at = switch.history.latest("history_id").history_date
    deliver_due(switch)

    [email] = [m for m in mailoutbox if m.to == ["operator@example.com"]]
    assert email.subject == f"[HITL] Kill switch moved to account demo: {OUTAGE}"
    said = " ".join(email.body.split())
    assert (
        "The kill switch engaged on account acme was moved to account demo by "
        f"{changed_by(switch.history.latest('history_id'))} at {console_time(moved_at)}. It "
        f"has been engaged since {console_time(engaged_at)}, when policy-owner (person) engaged "
        f"it: {OUTAGE}"
    ) in said, said


def test_a_switch_released_or_moved_under_another_still_engaged_names_it_not_unless(
    demo_world, mailoutbox, login
):
    """A switch on account demo released, or moved off demo, while a switch on channel Google
    Ads (demo's channel) stays engaged: the release's email said "What it covers runs as its
    policies say again: what a policy lets run now runs without a person", and the move's
    "… runs without a person's approval again, unless another kill switch covers it",
    though another did. Now each names it and says nothing there runs without a person."""
    demo = Account.objects.get(external_id="demo")
    KillSwitch.objects.create(scope="channel", channel="google_ads", reason="Ads API outage.")
    switch = KillSwitch.objects.create(scope="account", account=demo, reason=OUTAGE)
    for each in KillSwitch.objects.all():
        deliver_due(each)
    mailoutbox.clear()

    switch.scope, switch.account, switch.channel = "channel", None, "meta"
    switch.save()
    deliver_due(switch)
    switch.scope, switch.account, switch.channel = "account", demo, ""  # back on demo
    switch.save()
    deliver_due(switch)
    owner = login("policy-owner")
    url = reverse("admin:policies_killswitch_change", args=[switch.pk])
    data = form_data(owner, url, engaged=False, change_reason="Tracking is back.")
    answer = owner.post(url, data, follow=True)
    assert answer.redirect_chain, answer.context["adminform"].form.errors
    deliver_due(switch)

    still = (
        "runs without a person yet: the kill switch on channel Google Ads is still engaged "
        "over all of it."
    )
    [moved_email] = [
        m for m in mailoutbox if m.to == ["operator@example.com"] and "no longer on" in m.subject
    ]
    said = " ".join(moved_email.body.split())
    assert f"Nothing on account demo {still}" in said, said
    assert "unless another kill switch" not in said
    [released_email] = [
        m for m in mailoutbox if m.to == ["operator@example.com"] and "released" in m.subject
    ]
    said = " ".join(released_email.body.split())
    assert f"Nothing it covered {still}" in said, said
    assert "what a policy lets run now runs without a person" not in said
    console = [html.unescape(str(message)) for message in answer.context["messages"]]
    assert any(
        message.startswith(f"Kill switch on account demo released. Nothing it covered {still}")
        for message in console
    ), console


def test_a_switch_released_tells_those_told_it_was_engaged_whom_no_route_names_now(
    demo_world, mailoutbox
):
    """The operators were told the switch on demo was engaged; their route was switched off
    since. Released, they are told so (read from the outbox), not left believing demo's
    proposals are still held. Before, only the routes' people then were told."""
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=OUTAGE
    )
    deliver_due(switch)
    Route.objects.filter(name__startswith="Demo: everything waiting").update(is_active=False)
    mailoutbox.clear()

    switch.engaged = False
    switch.save()
    deliver_due(switch)

    [email] = [m for m in mailoutbox if m.to == ["operator@example.com"]]
    assert email.subject == "[HITL] Kill switch released on account demo"
    assert "The kill switch on account demo was released by" in " ".join(email.body.split())


def test_a_switch_moved_before_its_message_went_tells_them_nothing(demo_world, mailoutbox):
    """Engaged on demo and moved to Meta within seconds: the operators hear neither that it
    was engaged on demo nor that it no longer covers demo."""
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=OUTAGE
    )
    switch.scope, switch.account, switch.channel = "channel", None, "meta"
    switch.save()

    deliver_due(switch)

    assert mailoutbox == []
    said = dict(
        Notification.objects.filter(kill_switch=switch, recipient__username="operator").values_list(
            "kind", "log"
        )
    )
    assert said["switch_engaged"][-1]["result"] == (
        "not sent: a later message about the kill switch to them says what is so"
    )
    assert said["switch_moved"][-1]["result"] == (
        "not sent: they were not told it was engaged (it was moved before that message went)"
    )


def test_a_switch_told_engaged_then_moved_and_released_at_once_tells_them_it_was_released(
    demo_world, mailoutbox
):
    """The operators were told the switch on demo was engaged; it was moved onto Google Ads
    (still over demo) and released within seconds, before the message of the move went. That
    message is rightly not sent (released by then), but the release was not sent either
    ("they were not told it was engaged"), as if the move's message were the only one: they
    were left believing demo's proposals still held. Now they are told it was released."""
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=OUTAGE
    )
    deliver_due(switch)
    assert any(
        m.subject.startswith("[HITL] Kill switch engaged on account demo") for m in mailoutbox
    )
    mailoutbox.clear()
    switch.scope, switch.account, switch.channel = "channel", None, "google_ads"
    switch.save()
    switch.engaged = False
    switch.save()

    deliver_due(switch)

    [email] = [m for m in mailoutbox if m.to == ["operator@example.com"]]
    assert email.subject.startswith("[HITL] Kill switch released on "), email.subject
    assert " was released by " in " ".join(email.body.split())
    said = dict(
        Notification.objects.filter(kill_switch=switch, recipient__username="operator")
        .order_by("pk")
        .values_list("kind", "log")
    )
    assert said["switch_released"][-1]["result"].startswith("accepted by ")


def superuser() -> Client:
    """Who may delete a kill switch: a superuser (policy owners add and change them only)."""
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("admin", "", "x-Pass-9876"))
    return client


def delete_page_said(client, switch) -> str:
    page = client.get(f"/admin/policies/killswitch/{switch.pk}/delete/")
    assert page.status_code == 200
    found = re.search(r'<div id="content"[^>]*>(.*?)<div id="footer"', page.content.decode(), re.S)
    text = found.group(1) if found else page.content.decode()
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", text)).split())


def test_an_engaged_switch_is_not_deleted_its_page_saying_to_release_it_first(login):
    """Deleted while engaged, a switch released what it held and told nobody (its messages
    tell of engaging and releasing): its delete page says to release it first, and a
    deletion posted anyway deletes nothing."""
    get_user_model().objects.update(email="")  # nobody told: nothing else keeps it
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=OUTAGE
    )
    owner = superuser()

    said = delete_page_said(owner, switch)

    assert (
        "The kill switch on account demo is engaged: it cannot be deleted. Deleted, it would "
        "let what it holds back run without a person, and nobody would be told. Release it on "
        "its page first (untick “Engaged”, saying why): those told it was engaged are told it "
        "was released."
    ) in said
    assert "Engaged: it holds back what it covers until it is released" in said
    owner.post(
        f"/admin/policies/killswitch/{switch.pk}/delete/",
        {"post": "yes", "change_reason": "Not needed."},
    )
    assert KillSwitch.objects.filter(pk=switch.pk, engaged=True).exists()


def test_a_released_switch_people_were_told_of_is_kept_its_page_saying_why(login):
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=OUTAGE
    )
    switch.engaged = False
    switch.save()

    said = delete_page_said(superuser(), switch)

    assert (
        "People were told of the kill switch on account demo: it cannot be deleted, as the "
        "outbox keeps who was told of what, and of which switch. Released, it holds nothing "
        "back: leave it released (its page)."
    ) in said
    assert "4 messages about it in the outbox" in said
    assert "Notification:" not in said and "protected related objects" not in said


def test_a_released_switch_nobody_was_told_of_is_deleted(login):
    get_user_model().objects.update(email="")
    switch = KillSwitch.objects.create(scope="global", reason=OUTAGE, engaged=False)

    superuser().post(
        f"/admin/policies/killswitch/{switch.pk}/delete/",
        {"post": "yes", "change_reason": "Made by mistake."},
    )

    assert not KillSwitch.objects.filter(pk=switch.pk).exists()


def test_a_reason_past_a_thousand_characters_is_refused_by_the_form_saying_why(login):
    """A 100 KB reason made a 100 KB email (its body quotes all of it): the form refuses it
    beside the field, and nothing is engaged."""
    page = login("policy-owner").post(
        "/admin/policies/killswitch/add/",
        {
            "scope": "global",
            "engaged": "on",
            "reason": "x" * 100_000,
            "change_reason": "Incident 7.",
        },
    )

    assert page.status_code == 200
    assert page.context["adminform"].form.errors["reason"] == [
        "A kill switch's reason is at most 1,000 characters (every message about it quotes "
        "all of it); this one is 100,000."
    ]
    assert 'maxlength="1000"' in page.content.decode()
    assert not KillSwitch.objects.exists() and not Notification.objects.exists()


def test_the_outbox_names_its_column_for_what_each_message_is_about(login):
    """A switch's message and a proposal's side by side: the column reads "about", over
    "Kill switch #N" and "Proposal #M" (it read "proposal" over "Kill switch #N")."""
    proposal = evaluated(bid_adjustment("9.00"))  # waits: its operators are told
    switch = KillSwitch.objects.create(scope="global", reason=OUTAGE)

    page = login("auditor").get("/admin/notifications/notification/").content.decode()

    heading = re.search(
        r'<th scope="col" class="[^"]*column-proposal_number[^"]*">(.*?)</th>', page, re.S
    )
    assert " ".join(re.sub(r"<[^>]+>", "", heading.group(1)).split()) == "About"
    cells = {
        " ".join(re.sub(r"<[^>]+>", "", cell).split())
        for cell in re.findall(r'<td [^>]*class="field-proposal_number">(.*?)</td>', page, re.S)
    }
    assert cells == {f"Kill switch #{switch.pk}", f"Proposal #{proposal.pk}"}


def test_a_switch_released_and_moved_in_one_save_tells_of_its_release_where_it_was_engaged(
    demo_world, mailoutbox, login
):
    """Engaged on account demo (under the switch on channel Google Ads), then released and
    moved to account acme in one console save: it was judged by acme. The console said "Kill
    switch on account acme (until now on account demo) released." and not that demo's
    proposals still wait under the channel's switch; the email was "Kill switch released on
    account acme", saying "What it covers runs as its policies say again", and went to acme's
    people too, never told it was engaged. Now each says it was released on demo and moved,
    names the switch still over demo, and only demo's people are told."""
    demo = Account.objects.get(external_id="demo")
    acme = Account.objects.create(external_id="acme", name="Acme", channel="meta")
    acme_operator = get_user_model().objects.create_user(
        "acme-operator", email="acme@example.com", is_staff=True
    )
    Route.objects.create(name="Acme: everything, to its operator", account=acme).users.add(
        acme_operator
    )
    KillSwitch.objects.create(scope="channel", channel="google_ads", reason="Ads API outage.")
    switch = KillSwitch.objects.create(scope="account", account=demo, reason=OUTAGE)
    for each in KillSwitch.objects.all():
        deliver_due(each)
    mailoutbox.clear()

    owner = login("policy-owner")
    url = reverse("admin:policies_killswitch_change", args=[switch.pk])
    data = form_data(owner, url, account=acme.pk, engaged=False, change_reason="Wrong account.")
    answer = owner.post(url, data, follow=True)
    assert answer.redirect_chain, answer.context["adminform"].form.errors
    deliver_due(switch)

    still = (
        "Nothing it covered runs without a person yet: the kill switch on channel Google Ads is "
        "still engaged over all of it."
    )
    console = [html.unescape(str(message)) for message in answer.context["messages"]]
    assert any(
        message.startswith(
            "Kill switch on account demo released, and moved to account acme: released, it "
            f"holds nothing back there either. {still}"
        )
        for message in console
    ), console
    assert [m.to for m in mailoutbox if "acme@example.com" in m.to] == []
    [email] = [m for m in mailoutbox if m.to == ["operator@example.com"]]
    assert email.subject == "[HITL] Kill switch released on account demo"
    said = " ".join(email.body.split())
    assert re.search(
        f"The kill switch on account demo was released by policy-owner \\(person\\) at {TIME}, "
        "and moved to account acme in the same save: released, it holds nothing back there "
        "either.",
        said,
    ), said
    assert still in said, said


def test_a_switch_released_while_proposals_of_an_earlier_run_still_wait_names_this_runs(login):
    """Engaged, released (what it held still waiting), engaged again and released in the
    console: the message after the release was a server error (the proposals of this run
    waiting, numbered, were written with a count missing). Now it names them."""
    demo = Account.objects.get(external_id="demo")
    first = evaluated(bid_adjustment("2.12"))
    switch = KillSwitch.objects.create(scope="account", account=demo, reason=OUTAGE)
    switch.engaged = False
    switch.save()
    second = evaluated(bid_adjustment("0.84", campaign="display-retarget"))
    switch.engaged = True
    switch.save()
    assert set(
        Proposal.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True)
    ) == {"pending_review"}

    owner = login("policy-owner")
    url = reverse("admin:policies_killswitch_change", args=[switch.pk])
    data = form_data(owner, url, engaged=False, change_reason="Tracking is back.")
    answer = owner.post(url, data, follow=True)

    assert answer.status_code == 200
    console = [html.unescape(str(message)) for message in answer.context["messages"]]
    assert any(
        "While it was engaged, it sent 1 proposal to a person (1 held back before it ran). 1 of "
        f'them still waits (<a href="/admin/approvals/proposal/{second.pk}/change/">#{second.pk}'
        "</a>) for a person's decision" in message
        for message in console
    ), console


def test_two_switches_engaged_on_one_account_are_named_apart_wherever_named(
    demo_world, mailoutbox, login
):
    """Two switches engaged on account demo were both "the kill switch on account demo": in
    the finding of a proposal each held back, in their messages, and in the words of one's
    release naming the other still engaged ("Nothing it covered runs without a person yet:
    the kill switch on account demo is still engaged"). Now each is named with its number
    where another covers the same scope, as its page's address has it; a finding recorded
    by scope alone still reads as either's."""
    demo = Account.objects.get(external_id="demo")
    first = KillSwitch.objects.create(scope="account", account=demo, reason=OUTAGE)
    deliver_due(first)
    # Approved by a person while the first is engaged: it lets it run; the second holds it.
    approved = evaluated(reallocation("280.00"))
    operator = get_user_model().objects.get(username="operator")
    assert proposal_approve(proposal_id=approved.pk, reviewer=operator).status == "approved"
    second = KillSwitch.objects.create(scope="account", account=demo, reason="Budget audit.")
    proposal = evaluated(bid_adjustment("2.12"))
    deliver_due(second)
    assert Proposal.objects.get(pk=approved.pk).verdict_reasons[0] == (
        f"Held back before executing: the kill switch on account demo (#{second.pk}) is "
        "engaged: Budget audit. A person must approve it again."
    )
    # What each sent to a person, as its history page counts it: the second held it back,
    # not the first (which routed it to a person, as it was made).
    held = {
        switch.pk: {
            each.proposal_id for each in proposals_sent_by_kill_switch(switch) if each.held_back
        }
        for switch in (first, second)
    }
    assert held == {first.pk: set(), second.pk: {approved.pk}}

    assert proposal.status == "pending_review"
    assert proposal.guardrail_findings["review"] == [
        f"The kill switch on account demo (#{first.pk}) is engaged: {OUTAGE}",
        f"The kill switch on account demo (#{second.pk}) is engaged: Budget audit.",
    ]
    [engaged_email] = [
        m for m in mailoutbox if m.to == ["operator@example.com"] and "Budget" in m.subject
    ]
    assert engaged_email.subject == (
        f"[HITL] Kill switch engaged on account demo (#{second.pk}): Budget audit."
    )

    owner = login("policy-owner")
    url = reverse("admin:policies_killswitch_change", args=[first.pk])
    data = form_data(owner, url, engaged=False, change_reason="Tracking is back.")
    answer = owner.post(url, data, follow=True)
    console = [html.unescape(str(message)) for message in answer.context["messages"]]
    assert any(
        message.startswith(
            f"Kill switch on account demo (#{first.pk}) released. Nothing it covered runs "
            f"without a person yet: the kill switch on account demo (#{second.pk}) is still "
            "engaged over all of it."
        )
        for message in console
    ), console
    # The proposal's page reads the first switch's finding as released, the second's as
    # engaged, each its own.
    page = owner.get(reverse("admin:approvals_proposal_change", args=[proposal.pk]))
    shown = html.unescape(page.content.decode())
    assert f"The kill switch on account demo (#{first.pk}) was engaged when it was routed" in (
        shown
    )
    assert f"The kill switch on account demo (#{second.pk}) is engaged: Budget audit." in shown


def test_a_switch_moved_before_it_was_told_says_who_was_told_of_where_it_is_now(login):
    """Engaged on account demo, moved to account acme (no route reaches it) before its
    messages were drawn: the dashboard said "Being told: operator and policy-owner.", then
    "Not told: …", of the messages about demo, withdrawn as no longer so, as if they were
    to be told of acme. Nobody was told it is engaged where it is now."""
    switch = KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=OUTAGE
    )
    switch.account = Account.objects.create(external_id="acme", name="Acme", channel="meta")
    switch.save()
    deliver_due(switch)

    said = switch_on_dashboard(login)
    assert said.endswith(
        "Nobody was told it is engaged: no active route names anyone for what it covers."
    ), said


def test_a_switch_moved_while_engaged_is_said_moved_on_the_dashboard_and_in_its_release(
    demo_world, mailoutbox, login
):
    """Engaged on account acme by the policy owner, then moved to account demo: the dashboard
    read "On account demo, engaged by policy-owner (person) since <when engaged on acme>" and
    the release's email "The kill switch on account demo was released … It had been engaged
    since <then>", as if engaged on demo then. Now each says since when it is on demo, moved
    from acme by whom, and since when and by whom it is engaged."""
    elsewhere = Account.objects.create(external_id="acme", name="Acme", channel="meta")
    with acting_as(Actor.for_user(get_user_model().objects.get(username="policy-owner"))):
        switch = KillSwitch.objects.create(scope="account", account=elsewhere, reason=OUTAGE)
    engaged_at = console_time(switch.history.earliest("history_id").history_date)
    switch.account = Account.objects.get(external_id="demo")
    with acting_as(Actor.system("data script")):
        switch.save()
    moved = switch.history.latest("history_id")
    moved_at, moved_by = console_time(moved.history_date), changed_by(moved)
    switch.reason = OUTAGE + " "  # its reason edited since: no move
    switch.save()

    said = switch_on_dashboard(login)
    assert said.startswith(
        f"On account demo since {moved_at} (moved from account acme by {moved_by}); "
        f"engaged since {engaged_at} by policy-owner (person): {OUTAGE}"
    ), said

    deliver_due(switch)
    mailoutbox.clear()
    switch.engaged = False
    switch.save()
    deliver_due(switch)
    [email] = [m for m in mailoutbox if m.to == ["operator@example.com"]]
    said = " ".join(email.body.split())
    assert re.search(
        f"The kill switch on account demo was released by .+ at {TIME}. It had been on "
        f"account demo since {re.escape(moved_at)} \\(moved from account acme by "
        f"{re.escape(moved_by)}\\); engaged since {re.escape(engaged_at)} by policy-owner "
        f"\\(person\\): {re.escape(OUTAGE)}",
        said,
    ), said


def outbox_rows(client, query: str = "") -> dict[int, str]:
    """The outbox's rows, each message's id with what its list says it is."""
    page = client.get("/admin/notifications/notification/" + query)
    assert page.status_code == 200
    rows = re.findall(
        r'<a href="/admin/notifications/notification/(\d+)/change/[^"]*">.*?'
        r'<td [^>]*class="field-what">(.*?)</td>',
        page.content.decode(),
        re.S,
    )
    return {int(pk): html.unescape(" ".join(what.split())) for pk, what in rows}


def test_the_outbox_says_a_moved_switchs_message_was_moved_and_filters_it_apart(demo_world, login):
    """Engaged on account acme, moved to account demo (whose operators are told), then
    moved to channel Meta (which tells them it no longer covers demo): the outbox filed the
    "Kill switch moved to account demo" email under "A kill switch was engaged", and its kind
    filter had no "moved". Now its list and its page say "A kill switch was moved (from
    account acme)", and the filter lists "A kill switch was moved" apart from "engaged"."""
    elsewhere = Account.objects.create(external_id="acme", name="Acme", channel="meta")
    engaged = KillSwitch.objects.create(scope="global", reason=OUTAGE)
    switch = KillSwitch.objects.create(scope="account", account=elsewhere, reason=OUTAGE)
    switch.account = Account.objects.get(external_id="demo")
    switch.save()
    switch.scope, switch.account, switch.channel = "channel", None, "meta"
    switch.save()
    told = Notification.objects.filter(recipient__username="operator", channel="email")
    engaged_id = told.get(kill_switch=engaged).pk
    moved_onto_id = told.get(kill_switch=switch, kind="switch_engaged").pk
    moved_off_id = told.get(kill_switch=switch, kind="switch_moved").pk
    auditor = login("auditor")

    rows = outbox_rows(auditor)
    assert rows[engaged_id] == "A kill switch was engaged"
    assert rows[moved_onto_id] == "A kill switch was moved (from account acme)"
    assert rows[moved_off_id] == (
        "A kill switch was moved off account demo: it no longer covers it"
    )
    page = auditor.get(f"/admin/notifications/notification/{moved_onto_id}/change/")
    assert "A kill switch was moved (from account acme)" in html.unescape(page.content.decode())

    filters = html.unescape(auditor.get("/admin/notifications/notification/").content.decode())
    assert 'href="?kind=switch_moved_onto"' in filters
    assert "A kill switch was moved</a>" in filters
    moved_onto = outbox_rows(auditor, "?kind=switch_moved_onto")
    assert moved_onto_id in moved_onto and engaged_id not in moved_onto
    said_engaged = outbox_rows(auditor, "?kind=switch_engaged")
    assert engaged_id in said_engaged and moved_onto_id not in said_engaged


def test_a_moved_switchs_email_counts_since_the_move_and_says_its_list_holds_more(
    demo_world, mailoutbox
):
    """Engaged on everything, it sends a bid to a person; moved to account demo, it sends
    another: the email telling the operators it was moved there said "it has sent 1 proposal
    to a person as it was made" and linked "The proposals it sent to a person", a list of 2.
    Now the count says it is since the move, and the link says the list holds 2, 1 of them
    from before the move."""
    switch = KillSwitch.objects.create(scope="global", reason=OUTAGE)
    before = evaluated(bid_adjustment("2.12"))
    switch.scope, switch.account = "account", Account.objects.get(external_id="demo")
    switch.save()
    after = evaluated(bid_adjustment("2.13"))
    assert before.status == after.status == "pending_review"
    deliver_due(switch)

    [email] = [
        m for m in mailoutbox if m.to == ["operator@example.com"] and "moved to" in m.subject
    ]
    said = " ".join(email.body.split())
    assert (
        "it has sent 1 proposal to a person since it was moved to account demo as it was made"
    ) in said, said
    assert (
        "The 2 proposals it has sent to a person, 1 of them before it was moved to account demo"
    ) in said, said
    listed = login_list_ids(switch)
    assert listed == {before.pk, after.pk}


def login_list_ids(switch) -> set[int]:
    """The proposals the email's link lists, as a superuser reads them."""
    page = superuser().get(
        reverse("admin:approvals_proposal_changelist") + f"?status=all&kill_switch={switch.pk}"
    )
    return {int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', page.text)}
