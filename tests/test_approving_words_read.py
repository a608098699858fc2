"""A creative batch is approved by one shown its words: the email and the Slack message that
tell an operator of it show each creative's headline, body and call to action as they would
be published (Slack's formatting and emoji codes shown as typed); a batch whose words do not
all fit a Slack message is not offered Approve there, and says which creatives it leaves to
its page; the bulk confirmation lists them under each summary."""

import html
import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from approvals.models import Proposal
from notifications.channels import EmailChannel
from notifications.messages import proposal_messages
from notifications.models import NotificationKind, ReachedBy
from notifications.slack import message_blocks
from tests.conftest import creative, creative_batch, wait_until
from tests.factories import evaluated

OPERATOR = "U0OPERATOR"
# Words Slack would format, link or turn into an emoji if read as its markup.
MARKED_UP = creative(
    headline="*Free* <b>trial</b> :fire:",
    body="Line one\nGuaranteed results & more",
    cta="Start now",
)
# As the email's plain text shows it: a body's own line breaks indented under it.
SHOWN = (
    "Creative 1\n"
    "    Headline: *Free* <b>trial</b> :fire:\n"
    "    Body: Line one\n"
    "          Guaranteed results & more\n"
    "    Call to action: Start now"
)


def buttons(blocks: list) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def plain_sections(blocks: list) -> list[str]:
    return [
        b["text"]["text"]
        for b in blocks
        if b["type"] == "section" and b.get("text", {}).get("type") == "plain_text"
    ]


def creative_sections(blocks: list) -> list[str]:
    return [text for text in plain_sections(blocks) if text.startswith("Creative ")]


def why_it_waits(blocks: list) -> str:
    [why] = [text for text in plain_sections(blocks) if text.startswith("Why it wait")]
    return why


def context_texts(blocks: list) -> str:
    return " ".join(e["text"] for b in blocks if b["type"] == "context" for e in b["elements"])


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_the_operator_reads_each_creative_in_the_email_and_on_slack_before_approving(
    demo_world, agent_client, mailbox, slack
):
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.update_or_create(user=operator, defaults={"slack": True, "email": True})
    second = creative(headline="Save more today", body="Switch in minutes", cta="Learn more")
    answer = agent_client("copywriter").post(
        "/api/v1/proposals/", creative_batch(MARKED_UP, second), format="json"
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["status"] == "pending_review"

    [email] = wait_until(lambda: mailbox.to("operator@example.com"), timeout=15)
    # Lines as a mail reader shows them (SMTP carries them with CRLF).
    text = email.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
    page = email.get_body(preferencelist=("html",)).get_content()
    assert (
        "Creative 1\n"
        "    Headline: *Free* <b>trial</b> :fire:\n"
        "    Body: Line one\n"
        "          Guaranteed results & more\n"
        "    Call to action: Start now\n"
        "Creative 2\n"
        "    Headline: Save more today\n"
    ) in text
    assert "*Free* &lt;b&gt;trial&lt;/b&gt; :fire:" in page
    assert "Line one<br>Guaranteed results &amp; more" in page

    [message] = wait_until(lambda: slack.sent("chat.postMessage", channel=OPERATOR), timeout=15)
    blocks = message["blocks"]
    assert creative_sections(blocks) == [
        SHOWN,
        "Creative 2\n    Headline: Save more today\n    Body: Switch in minutes\n"
        "    Call to action: Learn more",
    ]
    shown = [b for b in blocks if b.get("text", {}).get("type") == "plain_text"]
    assert all(block["text"]["emoji"] is False for block in shown)
    assert buttons(blocks) == ["approve", "reject", "claim"]


@pytest.mark.parametrize(
    ("creatives", "shown"),
    [
        # More creatives than a message has sections for them.
        ([creative(headline=f"Headline {n}") for n in range(1, 26)], 20),
        # Fewer, each long (2,000 characters): more words than a message has room for beside
        # its headline, facts and why it waits (MESSAGE_TEXT_LIMIT, 10,000, in all).
        ([creative(headline=f"Headline {n}", body="Long. " * 330) for n in range(1, 7)], 4),
    ],
)
@pytest.mark.django_db
def test_a_batch_whose_words_do_not_fit_a_slack_message_is_approved_on_its_page(
    demo_world, agent_client, mailoutbox, creatives, shown
):
    answer = agent_client("copywriter").post(
        "/api/v1/proposals/", creative_batch(*creatives), format="json"
    )
    assert answer.status_code == 201, answer.content
    proposal = Proposal.objects.get(pk=answer.json()["id"])
    [message] = proposal_messages([(proposal, NotificationKind.WAITING)], now=timezone.now())

    blocks = message_blocks(message, may_decide=True)
    sections = creative_sections(blocks)
    assert len(sections) == shown
    assert sections[-1].startswith(f"Creative {shown}\n    Headline: Headline {shown}\n")
    after = len(creatives) - shown - 1
    left = f"and the {after} after it do" if after else "does"
    assert f"Creative {shown + 1} {left} not fit in this message" in context_texts(blocks)
    assert f"on <{message.url}|its page>" in context_texts(blocks)
    # It can still be rejected or taken on; approving it is for one who read every creative.
    assert buttons(blocks) == ["reject", "claim"]

    # An email has room for every one.
    operator = get_user_model().objects.get(username="operator")
    EmailChannel().send(recipient=operator, message=message, may_decide=True)
    [email] = mailoutbox
    assert f"Creative {len(creatives)}\n    Headline: Headline {len(creatives)}\n" in email.body


@pytest.mark.django_db
def test_a_creative_of_emoji_is_measured_as_slack_may_count_it(demo_world, agent_client):
    """1,600 emoji are 1,600 characters but 3,200 UTF-16 units: over a section's 3,000 if
    Slack counts units, and a refused message would tell the operator nothing."""
    answer = agent_client("copywriter").post(
        "/api/v1/proposals/", creative_batch(creative(body="😀" * 1600)), format="json"
    )
    assert answer.status_code == 201, answer.content
    proposal = Proposal.objects.get(pk=answer.json()["id"])
    [message] = proposal_messages([(proposal, NotificationKind.WAITING)], now=timezone.now())

    blocks = message_blocks(message, may_decide=True)

    assert creative_sections(blocks) == []
    assert "Creative 1 does not fit in this message" in context_texts(blocks)
    assert buttons(blocks) == ["reject", "claim"]


@pytest.mark.django_db
def test_the_bulk_confirmation_shows_each_creative_it_would_approve(login):
    batch = evaluated(creative_batch(MARKED_UP))
    page = login("operator").post(
        reverse("admin:approvals_proposal_changelist"),
        {"action": "approve_selected", "_selected_action": [batch.pk]},
    )
    assert page.status_code == 200
    row = page.content.decode().split('id="bulk-proposals"')[1]
    assert "<caption><strong>Creative 1</strong></caption>" in row
    assert bulk_parts(row) == [
        ("Headline", html.escape(MARKED_UP["headline"])),
        ("Body", "Line one<br>Guaranteed results &amp; more"),
        ("Call to action", "Start now"),
    ]


def bulk_parts(page: str) -> list[tuple[str, str]]:
    """Each part of the creatives on a bulk confirmation, as (its label, its cell)."""
    return re.findall(r'<th scope="row">(.*?)</th><td class="bulk-said">(.*?)</td>', page, re.S)


@pytest.mark.django_db
def test_a_body_on_the_bulk_confirmation_stays_in_its_own_cell(login):
    # A body's line "Call to action: Learn more" read as the creative's call to action, on a
    # line of its own as the real one was.
    forged = "Great offer\nCall to action: Learn more"
    batch = evaluated(creative_batch(creative(body=forged, cta="Guaranteed riches")))
    page = login("operator").post(
        reverse("admin:approvals_proposal_changelist"),
        {"action": "approve_selected", "_selected_action": [batch.pk]},
    )
    assert [label for label, _ in bulk_parts(page.content.decode())] == [
        "Headline",
        "Body",
        "Call to action",
    ]
    assert ("Body", "Great offer<br>Call to action: Learn more") in bulk_parts(
        page.content.decode()
    )


def waiting_message(agent_client, *creatives):
    answer = agent_client("copywriter").post(
        "/api/v1/proposals/", creative_batch(*creatives), format="json"
    )
    assert answer.status_code == 201, answer.content
    proposal = Proposal.objects.get(pk=answer.json()["id"])
    [message] = proposal_messages([(proposal, NotificationKind.WAITING)], now=timezone.now())
    return message


@pytest.mark.django_db
def test_why_it_waits_on_slack_quotes_the_creative_as_typed_not_as_slack_markup(
    demo_world, agent_client
):
    """A finding quotes the creative around its banned term. In Slack's markup the quote
    "*Guaranteed* :tada: ~today~" read as a bold word, a party emoji and a struck-out one:
    not what the creative says."""
    message = waiting_message(
        agent_client, creative(headline="*Guaranteed* :tada: ~today~ <!here>")
    )

    blocks = message_blocks(message, may_decide=True)

    why = why_it_waits(blocks)  # a plain-text section
    assert why.startswith("Why it waits\n• ")
    assert "“*«Guaranteed»* :tada: ~today~ <!here>”" in why
    [block] = [b for b in blocks if b.get("text", {}).get("text") == why]
    assert block["text"]["emoji"] is False


@pytest.mark.django_db
def test_a_creatives_body_on_slack_cannot_add_a_line_that_reads_as_its_call_to_action(
    demo_world, agent_client
):
    message = waiting_message(
        agent_client,
        creative(body="Great deal\nCall to action: Claim your free phone", cta="Learn more"),
    )

    [shown] = creative_sections(message_blocks(message, may_decide=True))

    assert shown.splitlines() == [
        "Creative 1",
        "    Headline: Search smarter",
        "    Body: Great deal",
        "          Call to action: Claim your free phone",
        "    Call to action: Learn more",
    ]


@pytest.mark.django_db
def test_a_batch_too_long_for_slack_is_not_offered_for_approval_once_decided_or_to_one_who_may_not(
    demo_world, agent_client
):
    """A message too short for all of a batch's creatives sends its reader to its page to
    read them "and approve it": once it was approved (its message updated), or to one who may
    not decide it, that offers what would be refused."""
    message = waiting_message(agent_client, *[creative(headline=f"H {n}") for n in range(25)])

    decided = message_blocks(
        message, may_decide=False, outcome="Approved by operator at 2026-12-04 22:54 UTC."
    )
    may_not = message_blocks(message, may_decide=False)

    for blocks in (decided, may_not):
        assert "do not fit in this message: read them on <" in context_texts(blocks)
        assert "approve" not in context_texts(blocks).lower().replace("approved by", "")
    assert "read them, and approve it, on <" in context_texts(
        message_blocks(message, may_decide=True)
    )


@pytest.mark.django_db
def test_a_bodys_control_characters_are_written_out_where_it_is_read_as_text(
    demo_world, agent_client, mailoutbox
):
    """A body "Buy now\\x1b[8m guaranteed\\x1b[0m", read in a terminal (the email's plain
    text in a mail reader there), showed "Buy now" and hid the rest: a terminal acts on an
    escape sequence rather than showing it. The email and the Slack message write each
    control character out, as "Why it waits" quotes it; line breaks and tabs stay."""
    message = waiting_message(
        agent_client, creative(body="Buy now\x1b[8m guaranteed\x1b[0m\x08\x08!\n\tToday")
    )
    written_out = (
        "    Body: Buy now⟨U+001B⟩[8m guaranteed⟨U+001B⟩[0m⟨U+0008⟩⟨U+0008⟩!\n          \tToday\n"
    )

    [section] = creative_sections(message_blocks(message, may_decide=True))
    EmailChannel().send(
        recipient=get_user_model().objects.get(username="operator"),
        message=message,
        may_decide=True,
    )

    assert written_out in section
    [email] = mailoutbox
    assert written_out in email.body
    assert "\x1b" not in email.body and "\x08" not in email.body
