"""A kill switch's messages go about ten seconds after its save, and named it as things stood
when they went: two switches engaged on account demo, the first released before the
second's message went, the inbox read "Kill switch engaged on account demo (#1)" and then
"Kill switch engaged on account demo" of the second, as if of the first; the first's
release, sent once the second had moved off demo, "Kill switch released on account demo".
Nobody reading them could tell which switch each was about. Each message now names its
switch as things stood at the save that queued it, as the proposals routed then name it:
with its number where another switch shared its scope then."""

from django.contrib.auth import get_user_model

from audit.actors import Actor, acting_as
from ledger.models import Account
from policies.models import KillSwitch
from tests.test_kill_switch_told import deliver_due


def on_demo(reason: str) -> KillSwitch:
    return KillSwitch.objects.create(
        scope="account", account=Account.objects.get(external_id="demo"), reason=reason
    )


def subjects(mailoutbox) -> list[str]:
    return [m.subject for m in mailoutbox if m.to == ["operator@example.com"]]


def body_of(mailoutbox, subject: str) -> str:
    [email] = [m for m in mailoutbox if m.to == ["operator@example.com"] and m.subject == subject]
    return " ".join(email.body.split())


def test_each_switchs_messages_name_it_as_things_stood_at_the_save_that_queued_them(
    demo_world, mailoutbox
):
    with acting_as(Actor.for_user(get_user_model().objects.get(username="policy-owner"))):
        first = on_demo("Budget audit.")
        second = on_demo("Tracking outage.")
        deliver_due(first)  # alone on demo at its save, whatever came since
        first.engaged = False  # released while the second is engaged on demo
        first.save()
        deliver_due(second)  # queued while the first was engaged there: "(#2)"
        second.scope, second.account, second.channel = "channel", None, "google_ads"
        second.save()  # moved off demo, alone there by then: "account demo"
        deliver_due(first)

    assert subjects(mailoutbox) == [
        "[HITL] Kill switch engaged on account demo: Budget audit.",
        f"[HITL] Kill switch engaged on account demo (#{second.pk}): Tracking outage.",
        f"[HITL] Kill switch released on account demo (#{first.pk})",
    ], subjects(mailoutbox)
    engaged = body_of(
        mailoutbox, f"[HITL] Kill switch engaged on account demo (#{second.pk}): Tracking outage."
    )
    assert f"The kill switch on account demo (#{second.pk}) was engaged by" in engaged, engaged
    released = body_of(mailoutbox, f"[HITL] Kill switch released on account demo (#{first.pk})")
    assert f"The kill switch on account demo (#{first.pk}) was released by" in released, released


def test_a_switch_moved_off_a_scope_it_shared_names_what_it_left_with_its_number(
    demo_world, mailoutbox
):
    """Moved off account demo while another switch stayed engaged there: "Kill switch no
    longer on account demo" read as if demo were free, said of the one that stayed."""
    stays = on_demo("Budget audit.")
    moves = on_demo("Tracking outage.")
    for switch in (stays, moves):
        deliver_due(switch)
    mailoutbox.clear()

    moves.scope, moves.account, moves.channel = "channel", None, "meta"
    moves.save()
    stays.engaged = False  # released before the move's message went
    stays.save()
    deliver_due(moves)

    subject = f"[HITL] Kill switch no longer on account demo (#{moves.pk}): moved to channel Meta"
    assert subject in subjects(mailoutbox), subjects(mailoutbox)
    said = body_of(mailoutbox, subject)
    assert f"The kill switch engaged on account demo (#{moves.pk}) was moved by" in said, said


def test_a_releases_still_engaged_line_names_the_others_as_at_its_save(demo_world, mailoutbox):
    """Released on everything while two switches were engaged on account demo, then one of
    those released before the email went: its "still engaged" line named the one left as
    things stood when it went ("the kill switch on account demo"), beside the rest of the
    email and the proposals routed then, which name it "account demo (#2)"."""
    with acting_as(Actor.for_user(get_user_model().objects.get(username="policy-owner"))):
        everything = KillSwitch.objects.create(scope="global", reason="Budget audit.")
        stays = on_demo("Tracking outage.")
        goes = on_demo("Feed outage.")
        deliver_due(everything)  # told it was engaged
        everything.engaged = False
        everything.save()
        goes.engaged = False  # released before the first release's email went
        goes.save()
        deliver_due(everything)

    said = body_of(mailoutbox, "[HITL] Kill switch released on everything")
    assert (
        "What it covered runs as its policies say again, except what the kill switch on "
        f"account demo (#{stays.pk}) covers: still engaged, it holds that back."
    ) in said, said
