"""A Slack message offers Approve only where approving would not be refused: a guardrail set
since the proposal was made (a campaign's cap, the account's total budget cap, a strategy
lock), or one whose headroom a raise approved ahead of it has used, refuses it now, as the
console says ("A guardrail refuses it now, as proposed: …") and as ``proposal_approve``
refuses it. The message says why in those words and offers Reject and "I'll take it" only;
messages sent before the guardrail was set, or before the raise ahead was approved, are
redrawn so, and only those whose approval it changes; Approve comes back once the cap is
lifted or the raise ahead fails."""

import threading
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import connection, transaction
from django.db.models.signals import pre_save
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal, ProposalStatus
from approvals.services.decisions import proposal_approve
from executors.models import ExecutionRound
from executors.runner import proposal_execute
from ledger.models import Account, Campaign
from notifications.models import Notification, ReachedBy
from notifications.services import (
    notifications_deliver,
    proposals_lock,
    slack_guardrails_read,
)
from tests.conftest import first_attempt_answered, posted_from_page, target_cpa_strategy, wait_until
from tests.factories import evaluated
from tests.test_account_budget_cap import budget_change
from tests.test_guardrail_refuses_retry import as_read
from tests.test_notifications_slack import (
    OPERATOR,
    approve_value,
    buttons,
    context_texts,
    post,
    pressing,
    told,
)

CAPPED = "generic-search's daily budget would be 600.00 USD, above its cap of 550.00 USD."


def refused(proposal_id: int, reasons: str) -> str:
    """What ``proposal_approve`` refuses an approval with, and the message says."""
    return f"A guardrail refuses proposal #{proposal_id} now: {reasons}"


def shown(slack, where: dict) -> list:
    """The message's blocks as Slack shows it now, every update applied."""
    return slack.messages[(where["channel"], where["ts"])]["blocks"]


def told_on_slack(optimizer, *bodies: dict) -> tuple[list[int], dict]:
    """Each submitted, waiting, and told to the operator on Slack with Approve; their ids,
    and where each message is, by proposal id."""
    ids = []
    for body in bodies:
        answer = optimizer.post("/api/v1/proposals/", body, format="json")
        assert answer.status_code == 201, answer.content
        assert answer.json()["status"] == "pending_review", answer.json()
        ids.append(answer.json()["id"])
    to_operator = Notification.objects.filter(
        proposal_id__in=ids, kind="waiting", recipient__username="operator"
    )
    wait_until(lambda: to_operator.filter(status="sent").count() == len(ids), timeout=15)
    where = {n.proposal_id: {"channel": n.slack_channel, "ts": n.slack_ts} for n in to_operator}
    return ids, where


def page_says(client, proposal_id: int) -> str:
    return as_read(client.get(reverse("admin:approvals_proposal_change", args=[proposal_id])).text)


def campaign_saved(owner, external_id: str, **values) -> None:
    """A policy owner saves the campaign's guardrails in the console, saying why."""
    campaign = Campaign.objects.get(external_id=external_id)
    url = reverse("admin:ledger_campaign_change", args=[campaign.pk])
    form = {
        "max_daily_budget": "" if campaign.max_daily_budget is None else campaign.max_daily_budget,
        "change_reason": "Spend review.",
        **({"strategy_locked": "on"} if campaign.strategy_locked else {}),
    }
    for name, value in values.items():
        if name == "strategy_locked":
            form.pop(name, None)
            if value:
                form[name] = "on"
        else:
            form[name] = value
    answer = posted_from_page(owner, url, form)
    assert answer.status_code == 302, answer.content


def account_saved(owner, cap: str) -> None:
    account = Account.objects.get(external_id="demo")
    url = reverse("admin:ledger_account_change", args=[account.pk])
    answer = posted_from_page(
        owner, url, {"max_total_daily_budget": cap, "change_reason": "Spend review."}
    )
    assert answer.status_code == 302, answer.content


def lost_approve(slack, where: dict) -> list:
    return wait_until(
        lambda: "approve" not in buttons(shown(slack, where)) and shown(slack, where),
        timeout=15,
    )


def got_approve_back(slack, where: dict) -> list:
    return wait_until(
        lambda: "approve" in buttons(shown(slack, where)) and shown(slack, where), timeout=15
    )


@pytest.mark.django_db
def test_a_message_drawn_while_a_guardrail_refuses_it_offers_no_approve_and_says_why(
    demo_world, slack, settings
):
    """A raise of generic-search to 600.00 waits; its campaign is capped at 550.00 before its
    message goes. The console refuses approving it; the message offered Approve all the
    same. It offers Reject and "I'll take it", and says why in the refusal's words; the
    email says so too."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.update_or_create(user=operator, defaults={"slack": True, "email": True})
    raise_ = evaluated(budget_change("generic-search", "600.00"))
    assert raise_.status == ProposalStatus.PENDING_REVIEW
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="550.00")

    notifications_deliver(
        notification_ids=list(
            Notification.objects.filter(proposal=raise_).values_list("pk", flat=True)
        )
    )

    [call] = slack.sent("chat.postMessage", channel=OPERATOR)
    assert buttons(call["blocks"]) == ["reject", "claim"]
    assert refused(raise_.pk, CAPPED) in context_texts(call["blocks"])
    [email] = [m for m in mail.outbox if m.to == [operator.email]]
    assert refused(raise_.pk, CAPPED) in " ".join(email.body.split())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_cap_set_in_the_console_takes_approve_off_messages_sent_before_and_lifting_it_back(
    optimizer, on_slack, login
):
    """The raise to 600.00 waits on Slack with Approve; a policy owner caps generic-search at
    550.00. Its page says approving it will be refused, and it is; its message kept
    offering Approve, and a press was refused and the message redrawn with Approve again.
    It loses Approve and says why; a raise of another campaign is left as it is; the cap
    lifted, Approve comes back."""
    [raise_, other], where = told_on_slack(
        optimizer,
        budget_change("generic-search", "600.00"),
        budget_change("display-retarget", "360.00"),
    )
    old_approve = approve_value(shown(on_slack, where[raise_]))

    campaign_saved(login("policy-owner"), "generic-search", max_daily_budget="550.00")

    blocks = lost_approve(on_slack, where[raise_])
    assert buttons(blocks) == ["reject", "claim"]
    assert refused(raise_, CAPPED) in context_texts(blocks)
    assert f"A guardrail refuses it now, as proposed: {CAPPED}" in page_says(
        login("operator"), raise_
    )
    assert Notification.objects.filter(
        proposal_id=raise_, kind="update", about="generic-search's daily budget cap set to 550.00"
    ).exists()
    # A press of the Approve it showed before is refused, in the same words, and leaves the
    # message without Approve.
    post(*pressing(OPERATOR, "approve", old_approve, where[raise_]))
    assert refused(raise_, CAPPED) in told(on_slack, OPERATOR)
    assert Proposal.objects.get(pk=raise_).status == ProposalStatus.PENDING_REVIEW
    wait_until(
        lambda: (
            not Notification.objects.filter(
                proposal_id=raise_, kind="update", status="pending"
            ).exists()
        ),
        timeout=15,
    )
    assert buttons(shown(on_slack, where[raise_])) == ["reject", "claim"]
    assert not Notification.objects.filter(proposal_id=other, kind="update").exists()

    campaign_saved(login("policy-owner"), "generic-search", max_daily_budget="")

    blocks = got_approve_back(on_slack, where[raise_])
    assert buttons(blocks) == ["approve", "reject", "claim"]
    assert "guardrail" not in context_texts(blocks)
    assert not Notification.objects.filter(proposal_id=other, kind="update").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_strategy_lock_set_in_the_console_takes_approve_off_a_strategy_change(
    optimizer, on_slack, login
):
    [change], where = told_on_slack(optimizer, target_cpa_strategy("generic-search"))

    campaign_saved(login("policy-owner"), "generic-search", strategy_locked=True)

    blocks = lost_approve(on_slack, where[change])
    assert buttons(blocks) == ["reject", "claim"]
    said = context_texts(blocks)
    assert f"A guardrail refuses proposal #{change} now: " in said
    refused_on_page = page_says(login("operator"), change)
    reasons = said.split(f"A guardrail refuses proposal #{change} now: ", 1)[1]
    assert f"A guardrail refuses it now, as proposed: {reasons}" in refused_on_page


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_an_account_cap_set_in_the_console_takes_approve_off_raises_not_off_a_cut(
    optimizer, on_slack, login
):
    """Active campaigns spend 1,800.00 a day; the account is capped at 1,850.00: the raise
    to 600.00 (1,900.00) is refused, the cut of display-retarget is not, and its message is
    left as it is."""
    [raise_, cut], where = told_on_slack(
        optimizer,
        budget_change("generic-search", "600.00"),
        budget_change("display-retarget", "200.00"),
    )

    account_saved(login("policy-owner"), "1850.00")

    blocks = lost_approve(on_slack, where[raise_])
    assert refused(
        raise_,
        "Account demo's active campaigns would spend 1,900.00 USD a day, above its cap of "
        "1,850.00 USD.",
    ) in context_texts(blocks)
    assert buttons(shown(on_slack, where[cut])) == ["approve", "reject", "claim"]
    assert not Notification.objects.filter(proposal_id=cut, kind="update").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_raise_approved_ahead_that_uses_the_account_caps_headroom_takes_approve_off_the_next(
    optimizer, on_slack, channel, operators, login
):
    """The account capped at 1,900.00 (active campaigns spend 1,800.00): raises of 100.00
    and 60.00 wait, each within the cap alone. A colleague approves the first (its webhook
    asks to come back in ten minutes: not yet run); the console refuses the second now. Its
    message loses Approve and says why; once the first fails, Approve comes back."""
    channel(503, 400, retry_after="600")
    Account.objects.filter(external_id="demo").update(max_total_daily_budget=Decimal("1900.00"))
    [first, second], where = told_on_slack(
        optimizer,
        budget_change("generic-search", "600.00"),
        budget_change("display-retarget", "360.00"),
    )
    assert buttons(shown(on_slack, where[second])) == ["approve", "reject", "claim"]

    proposal_approve(proposal_id=first, reviewer=operators[1])
    first_attempt_answered(first)

    blocks = lost_approve(on_slack, where[second])
    assert buttons(blocks) == ["reject", "claim"]
    said = context_texts(blocks)
    assert f"A guardrail refuses proposal #{second} now: Account demo's active campaigns" in said
    reasons = said.split(f"A guardrail refuses proposal #{second} now: ", 1)[1]
    assert f"A guardrail refuses it now, as proposed: {reasons}" in page_says(
        login("operator"), second
    )

    ExecutionRound.objects.filter(proposal_id=first).update(lease_until=timezone.now())
    assert proposal_execute(proposal_id=first).status == ProposalStatus.FAILED

    blocks = got_approve_back(on_slack, where[second])
    assert buttons(blocks) == ["approve", "reject", "claim"]
    assert "guardrail" not in context_texts(blocks)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_press_a_guardrail_refuses_takes_approve_off_every_message_of_it(
    optimizer, on_slack, operators
):
    """A cap written past the console's save (as a script or the ledger writes it: no save
    told the messages): the press is refused, and the message was redrawn offering Approve
    again. Every message of it, the presser's and a colleague's, now offers none, and says
    why."""
    _, colleague = operators
    colleague.email = "colleague@example.com"
    colleague.save()
    on_slack.people["U0SECOND"] = colleague.email
    ReachedBy.objects.create(user=colleague, slack=True, email=False)
    [raise_], where = told_on_slack(optimizer, budget_change("generic-search", "600.00"))
    [theirs] = wait_until(
        lambda: Notification.objects.filter(
            proposal_id=raise_, kind="waiting", recipient=colleague, status="sent"
        )
    )
    theirs = {"channel": theirs.slack_channel, "ts": theirs.slack_ts}
    Campaign.objects.filter(external_id="generic-search").update(max_daily_budget="550.00")

    post(
        *pressing(OPERATOR, "approve", approve_value(shown(on_slack, where[raise_])), where[raise_])
    )

    assert refused(raise_, CAPPED) in told(on_slack, OPERATOR)
    for message in (where[raise_], theirs):
        blocks = lost_approve(on_slack, message)
        assert buttons(blocks) == ["reject", "claim"]
        assert refused(raise_, CAPPED) in context_texts(blocks)
    assert Proposal.objects.get(pk=raise_).status == ProposalStatus.PENDING_REVIEW


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_raise_approved_ahead_that_runs_is_no_longer_named_by_the_next_ones_refusal(
    optimizer, on_slack, channel, operators
):
    """The account capped at 1,900.00 (active campaigns spend 1,800.00): raises of 100.00
    and 60.00 and a cut wait. A colleague approves the first (its webhook asks to come back
    in ten minutes); the second's message loses Approve, its refusal counting the first,
    "approved and not yet executed". The first then runs: the campaigns spend 1,900.00, and
    the second would still take them over the cap. Its message kept naming the first as not
    yet executed; it now says the cap's refusal without it, and its update says what it is
    for. The cut's message is left as it is."""
    channel(503, 200, retry_after="600")
    Account.objects.filter(external_id="demo").update(max_total_daily_budget=Decimal("1900.00"))
    [first, second, cut], where = told_on_slack(
        optimizer,
        budget_change("generic-search", "600.00"),
        budget_change("display-retarget", "360.00"),
        budget_change("brand-search", "800.00"),
    )
    proposal_approve(proposal_id=first, reviewer=operators[1])
    first_attempt_answered(first)
    blocks = lost_approve(on_slack, where[second])
    assert f"counting #{first}, approved and not yet executed" in context_texts(blocks)

    ExecutionRound.objects.filter(proposal_id=first).update(lease_until=timezone.now())
    assert proposal_execute(proposal_id=first).status == ProposalStatus.EXECUTED

    blocks = wait_until(
        lambda: (
            "not yet executed" not in context_texts(shown(on_slack, where[second]))
            and shown(on_slack, where[second])
        ),
        timeout=15,
    )
    assert buttons(blocks) == ["reject", "claim"]
    assert refused(
        second,
        "Account demo's active campaigns would spend 1,960.00 USD a day, above its cap of "
        "1,900.00 USD.",
    ) in context_texts(blocks)
    assert Notification.objects.filter(
        proposal_id=second,
        kind="update",
        about=f"#{first} executed, counting against account demo's total daily budget cap",
    ).exists()
    assert buttons(shown(on_slack, where[cut])) == ["approve", "reject", "claim"]
    assert not Notification.objects.filter(proposal_id=cut, kind="update").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("slack_set_up", [True, False])
def test_a_raise_that_runs_follows_the_messages_behind_it_only_where_slack_is_set_up(
    demo_world, slack, settings, django_capture_on_commit_callbacks, slack_set_up
):
    """A raise on a capped account executes (the ledger's own executor). Where Slack is set
    up, its commit sends the one task that follows the messages waiting behind it; where it
    is not, nothing is sent: there is no message to follow."""
    if not slack_set_up:
        settings.SLACK_BOT_TOKEN = ""
    Account.objects.filter(external_id="demo").update(max_total_daily_budget=Decimal("1900.00"))
    raise_ = evaluated(budget_change("generic-search", "600.00"))
    proposal_approve(
        proposal_id=raise_.pk, reviewer=get_user_model().objects.get(username="operator")
    )

    with django_capture_on_commit_callbacks() as callbacks:
        assert proposal_execute(proposal_id=raise_.pk).status == ProposalStatus.EXECUTED

    sent = [c.__qualname__ for c in callbacks if c.__qualname__ == "_follow_moves_ahead_later"]
    assert len(sent) == (1 if slack_set_up else 0)


@pytest.mark.django_db
@pytest.mark.parametrize("cap", ["1900.00", None])
def test_a_raise_the_channel_carries_out_follows_the_messages_behind_it_only_on_a_capped_account(
    demo_world, slack, channel, django_capture_on_commit_callbacks, cap
):
    """A raise carried out by the account's channel executes; Slack is set up. On an account
    whose total daily budget is capped, its commit sends the one task that follows the
    messages waiting behind it (the cap's words named it as approved and not yet executed);
    on one not capped, none, as for a raise the ledger's own executor runs: nothing names it.
    (The channel's execution moved the proposal read again without its account, and sent the
    task whatever the account.)"""
    channel(200)
    Account.objects.filter(external_id="demo").update(
        max_total_daily_budget=None if cap is None else Decimal(cap)
    )
    raise_ = evaluated(budget_change("generic-search", "600.00"))
    proposal_approve(
        proposal_id=raise_.pk, reviewer=get_user_model().objects.get(username="operator")
    )

    with django_capture_on_commit_callbacks() as callbacks:
        assert proposal_execute(proposal_id=raise_.pk).status == ProposalStatus.EXECUTED

    assert Campaign.objects.get(external_id="generic-search").daily_budget == Decimal("600.00")
    sent = [c.__qualname__ for c in callbacks if c.__qualname__ == "_follow_moves_ahead_later"]
    assert len(sent) == (0 if cap is None else 1)


@pytest.mark.django_db
def test_reading_what_the_guardrails_refuse_reads_only_the_accounts_own_slack_messages(
    demo_world, slack
):
    """What the guardrails refuse of the proposals that wait on an account with a Slack
    message is read in one statement, its messages' subquery bound to that account's
    proposals that wait, not every Slack message posted on every account."""
    raise_ = evaluated(budget_change("generic-search", "600.00"))
    Notification.objects.create(
        proposal=raise_,
        review_round=raise_.review_round,
        recipient=get_user_model().objects.get(username="operator"),
        channel="slack",
        kind="waiting",
        status="sent",
        sent_at=timezone.now(),
        slack_channel="D1",
        slack_ts="1.1",
    )
    with CaptureQueriesContext(connection) as queries:
        found = slack_guardrails_read(account_ids=[raise_.account_id])

    assert list(found) == [raise_.pk]
    [statement] = [q["sql"] for q in queries if '"notifications_notification"' in q["sql"]]
    messages = statement.split('FROM "notifications_notification"', 1)[1]
    # Its subquery's proposals (aliased U1) are the account's.
    assert f'."account_id" IN ({raise_.account_id})' in messages


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_raise_approved_while_a_cap_is_saved_is_named_by_the_update_not_the_cap(
    optimizer, on_slack, channel, operators
):
    """The account capped at 1,950.00 (active campaigns spend 1,800.00): raises of 100.00
    and 60.00 wait, each within the cap, not both. A script caps brand-search (which
    neither touches) while a colleague approves the first, their approval committing as the
    save had read what the guardrails refused before it and not yet after (the console's
    save holds the account as it saves: no approval on it commits meanwhile; a script's
    need not). The second's message loses Approve, the first counted ahead; an update of it
    said it was for brand-search's cap, which changed nothing for it. Its only update names
    the approval."""
    channel(503, 400, retry_after="600")
    Account.objects.filter(external_id="demo").update(max_total_daily_budget=Decimal("1950.00"))
    [first, second], where = told_on_slack(
        optimizer,
        budget_change("generic-search", "600.00"),
        budget_change("display-retarget", "360.00"),
    )
    approving = threading.Thread(
        target=lambda: [
            proposal_approve(proposal_id=first, reviewer=operators[1]),
            connection.close(),
        ]
    )

    def approved_as_it_saves(sender, instance, **kwargs) -> None:
        if not approving.is_alive() and approving.ident is None:
            approving.start()
            approving.join(timeout=5)

    pre_save.connect(approved_as_it_saves, sender=Campaign, dispatch_uid="approved_as_it_saves")
    try:
        capped = Campaign.objects.get(external_id="brand-search")
        capped.max_daily_budget = Decimal("1500.00")
        capped.save()
    finally:
        pre_save.disconnect(sender=Campaign, dispatch_uid="approved_as_it_saves")
    approving.join(timeout=30)
    # Approved, not yet run: the worker may have sent its first attempt, which its webhook
    # asks to come back in ten minutes.
    assert Proposal.objects.get(pk=first).status in (
        ProposalStatus.APPROVED,
        ProposalStatus.EXECUTING,
    )

    blocks = lost_approve(on_slack, where[second])
    assert f"counting #{first}, approved and not yet executed" in context_texts(blocks)
    assert list(
        Notification.objects.filter(proposal_id=second, kind="update").values_list(
            "about", flat=True
        )
    ) == [f"#{first} approved, counting against account demo's total daily budget cap"]


def meanwhile_as_it_goes(slack, change) -> list[list]:
    """While the next Slack message, drawn, is on its way (not yet recorded sent), ``change``
    is committed in the console, before Slack has the message. Returns the blocks each such
    message was drawn with."""
    drawn = []

    def meanwhile(args: dict) -> None:
        drawn.append(args["blocks"])
        try:
            change()
        finally:
            connection.close()  # this thread's, the fake Slack's

    slack.while_next_post = meanwhile
    return drawn


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_raise_approved_ahead_while_a_message_is_on_its_way_takes_approve_off_it(
    optimizer, on_slack, channel, operators
):
    """The account capped at 1,950.00 (active campaigns spend 1,800.00): a raise of 100.00
    waits, told on Slack. A raise of 60.00 is submitted; its message to the operator is drawn
    with Approve (nothing approved ahead of it then) and, while it is on its way to Slack, a
    colleague approves the first. The approval's update read the messages sent, and this one
    was not yet recorded sent: it kept an Approve the console refuses. Its sender, recording
    it sent, reads the guardrails again and redraws it, with the cap's refusal."""
    channel(503, 400, retry_after="600")
    Account.objects.filter(external_id="demo").update(max_total_daily_budget=Decimal("1950.00"))
    [first], _ = told_on_slack(optimizer, budget_change("generic-search", "600.00"))
    drawn = meanwhile_as_it_goes(
        on_slack, lambda: proposal_approve(proposal_id=first, reviewer=operators[1])
    )

    [second], where = told_on_slack(optimizer, budget_change("display-retarget", "360.00"))

    [posted] = drawn
    assert buttons(posted) == ["approve", "reject", "claim"]
    assert Proposal.objects.get(pk=first).approved_at is not None
    blocks = lost_approve(on_slack, where[second])
    assert buttons(blocks) == ["reject", "claim"]
    assert (
        f"A guardrail refuses proposal #{second} now: Account demo's active campaigns"
        in context_texts(blocks)
    )
    assert f"counting #{first}, approved and not yet executed" in context_texts(blocks)
    assert list(
        Notification.objects.filter(proposal_id=second, kind="update").values_list(
            "about", flat=True
        )
    ) == ["its approval refused by a guardrail as it went"]
    # A press of the Approve it was drawn with is refused, and decides nothing.
    post(*pressing(OPERATOR, "approve", approve_value(posted), where[second]))
    assert f"A guardrail refuses proposal #{second} now" in told(on_slack, OPERATOR)
    assert Proposal.objects.get(pk=second).status == ProposalStatus.PENDING_REVIEW


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_a_cap_saved_while_a_message_is_on_its_way_takes_approve_off_it(optimizer, on_slack, login):
    """A raise of generic-search to 600.00 is drawn with Approve; while its message is on its
    way to Slack, a policy owner caps generic-search at 550.00 in the console. The save's
    update found no message sent of it; its sender, recording it sent, redraws it."""
    owner = login("policy-owner")
    drawn = meanwhile_as_it_goes(
        on_slack,
        lambda: campaign_saved(owner, "generic-search", max_daily_budget="550.00"),
    )

    [raise_], where = told_on_slack(optimizer, budget_change("generic-search", "600.00"))

    [posted] = drawn
    assert buttons(posted) == ["approve", "reject", "claim"]
    blocks = lost_approve(on_slack, where[raise_])
    assert buttons(blocks) == ["reject", "claim"]
    assert refused(raise_, CAPPED) in context_texts(blocks)
    assert list(
        Notification.objects.filter(proposal_id=raise_, kind="update").values_list(
            "about", flat=True
        )
    ) == ["its approval refused by a guardrail as it went"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")
@pytest.mark.django_db
def test_recording_slack_messages_sent_holds_their_ledger_in_two_statements_however_many(
    on_slack,
):
    """Recording Slack messages sent reads again what the guardrails and the ledger refuse of
    approving each (``_approvals_refused_now``), their accounts and campaigns held first: in
    two statements for the whole chunk, not two a message."""
    Account.objects.filter(external_id="demo").update(max_total_daily_budget=Decimal("2500.00"))
    made = [
        evaluated(budget_change(campaign, budget))
        for campaign, budget in [
            ("generic-search", "600.00"),
            ("display-retarget", "360.00"),
            ("brand-search", "800.00"),
        ]
    ]
    told = Notification.objects.filter(proposal__in=made, channel="slack", kind="waiting")
    assert told.count() == 3

    with CaptureQueriesContext(connection) as sending:
        sent = notifications_deliver(notification_ids=list(told.values_list("pk", flat=True)))

    assert {n.status for n in sent} == {"sent"}
    held = [
        q["sql"]
        for q in sending.captured_queries
        if q["sql"].endswith("FOR SHARE")
        and ('FROM "ledger_account"' in q["sql"] or 'FROM "ledger_campaign"' in q["sql"])
    ]
    assert len(held) == 2, held


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_recording_messages_sent_lets_a_cap_save_record_its_updates_about_their_proposal(
    demo_world,
):
    """Recording Slack messages sent locks their proposals, then holds their accounts and
    campaigns; a cap save holds the account, then records the updates it sends about the
    same proposal's other messages, whose reference to the proposal checks it exists. With
    the proposal locked FOR UPDATE that check waited for the recording, which waited for the
    account: one of the two was aborted as a deadlock. Locked FOR NO KEY UPDATE, as a row
    whose key nobody changes, the reference is written at once."""
    raise_ = evaluated(budget_change("generic-search", "600.00"))
    operator = get_user_model().objects.get(username="operator")
    locked, release = threading.Event(), threading.Event()

    def recording():
        try:
            with transaction.atomic():
                proposals_lock([Notification(proposal_id=raise_.pk)])
                locked.set()
                release.wait(timeout=10)
        finally:
            connection.close()  # this thread's own

    recorder = threading.Thread(target=recording)
    recorder.start()
    try:
        assert locked.wait(timeout=10)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '3s'")
            update = Notification.objects.create(
                proposal=raise_,
                review_round=raise_.review_round,
                recipient=operator,
                channel="slack",
                kind="update",
                about="its approval refused by a guardrail",
            )
    finally:
        release.set()
        recorder.join()
    assert Notification.objects.filter(pk=update.pk, proposal=raise_).exists()
