"""Slack, through the official ``slack-sdk``: a direct message with the proposal's summary,
why it waits and, for a person who may decide, Approve, a Reject menu that asks for the
reason, and "I'll take it"; the message is updated with what became of the proposal."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
from datetime import datetime
from http.client import HTTPMessage
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request

import httpx
from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from approvals.models import RejectionReason
from hitlproject.outbound import (
    AnswerTooLong,
    ExchangeFailed,
    exchange_within,
    failure_in_words,
    retry_after_seconds,
)
from hitlproject.validation import one_line
from notifications.channels import Channel, ChannelError, Sent
from notifications.kill_switches import SwitchMessage
from notifications.messages import (
    NO_LONGER_WAITS,
    DigestLine,
    ProposalMessage,
    failed_count_text,
    failed_since_retried_text,
    my_channels_url,
    still_waiting_count_text,
    waiting_count_text,
    words_lines,
)

# Slack's errors that trying again cannot mend.
PERMANENT_ERRORS = {
    "users_not_found",
    "user_not_found",
    "channel_not_found",
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "missing_scope",
    "cannot_dm_bot",
    "message_not_found",
    "cant_update_message",
    "invalid_blocks",
    "msg_too_long",
    "msg_blocks_too_long",
}
# What a refusal means, for the notification's record (an auditor reads it there), where
# Slack's code alone does not say it.
REFUSALS_SAID = {
    "msg_blocks_too_long": (
        "the words of its blocks add up to more than Slack takes in one message"
    ),
    "msg_too_long": "its text is longer than Slack takes in one message",
    "invalid_blocks": "its blocks break one of Slack's limits for a block",
}


# What a call to Slack raises when it fails: Slack's own answer, or, out of reach, the error of
# the connection under the client (``URLError``, a timeout), which the client lets through.
SLACK_FAILURES = (SlackClientError, OSError)


# Slack's Block Kit limits (api.slack.com/reference/block-kit/blocks): a message that breaks
# one is refused whole (invalid_blocks), so what is longer is cut to fit, saying so. Each is
# counted in UTF-16 units (an emoji is two), as Slack may count them.
SECTION_TEXT_LIMIT = 3000
BLOCKS_LIMIT = 50
# The words of all of a message's blocks together, in UTF-16 units (``message_units``): Slack
# refuses a message whose blocks' texts add up to about 12,000 characters
# (msg_blocks_too_long), a limit it does not document, nor say how it counts. Reported:
# refused at ~13,200 characters of markdown blocks (github.com/slackapi/bolt-js/issues/2509,
# where a Slack engineer answered "12,000 text characters with a buffer for block
# containers"), and at 11,341 characters summed over every text of rich text, section,
# header and divider blocks (github.com/slackapi/bolt-js/issues/2867). So a message's texts
# stay within this, well under the lowest refusal reported, for the containers (up to 50
# blocks) Slack may count besides: what is longer is cut, saying so.
MESSAGE_TEXT_LIMIT = 10_000
# The words an action would publish (a creative batch's), in a message: a section each, at
# most this many (a batch of 50 creatives would not be read in one message), as many as the
# message has room for.
WORDS_SHOWN_SECTIONS = 20
# A digest's line of its proposal, at most (a note quoted in full there would leave room
# for few other proposals' lines): the rest is on the proposal's page.
DIGEST_LINE_LIMIT = 1000
# A message's text, which Slack shows in a notification of it (not in the message).
PREVIEW_LIMIT = 3000

# Slack wants an answer to a button press within 3 s: each call made while it waits has this
# long.
IN_REQUEST_TIMEOUT = 1


# Slack answers a call in a few kilobytes (a message posted comes back with its blocks, at most
# 50): a longer answer is not Slack's.
ANSWER_LIMIT = 1024 * 1024


class UnreadableAnswer(SlackClientError):
    """An answer that is not Slack's: too long, not text, not a JSON object."""


class ErrorPage(SlackClientError):
    """An error's status with no answer of Slack's (a proxy's 503 page, say): it read as
    "Slack refused it: Received a response in a non-JSON format: ", as though Slack had."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"Slack answered HTTP {status}, with no error of its own")
        self.retry_after = retry_after


def _readable(body: bytes, charset: str) -> str | None:
    """The answer as text, if it is a JSON object Python can read, else None."""
    try:
        text = body.decode(charset)
        return text if isinstance(json.loads(text), dict) else None
    except (ValueError, LookupError, RecursionError):  # RecursionError: nested too deep
        return None


class BoundedWebClient(WebClient):
    """slack-sdk's client with each call bounded as a whole. Its own timeout bounds each read
    of the socket, so a Slack trickling its answer a byte at a time held a worker, or a
    button press past Slack's 3 s, for as long as it liked, and an answer without end was
    read into memory whole. Here a call's exchange has ``timeout`` seconds in all and reads
    at most ANSWER_LIMIT bytes; past the deadline it raises ExchangeFailed, and an answer that
    is not a JSON object raises UnreadableAnswer.

    A call is made once: the client's own retry of a connection lost (after a pause of its
    own) took a call twice its deadline and more, a button press's two past Slack's 3 s, and
    sent a message again that nobody's log showed sent twice (Slack may have posted the
    first). Whoever calls tries again, recording each attempt (the outbox), or tells the
    person it failed (a press)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(retry_handlers=[], **kwargs)

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        try:
            answer = exchange_within(
                req.get_method(),
                url,
                content=req.data,
                headers={
                    name: str(value)
                    for name, value in req.header_items()
                    if name.lower() != "content-length"  # the client's own, from the body
                },
                deadline=self.timeout,
                limit=ANSWER_LIMIT,
            )
        except AnswerTooLong as error:
            raise UnreadableAnswer(str(error)) from error
        except httpx.HTTPError as error:  # as urllib says it
            raise URLError(f"{type(error).__name__}: {error}") from error
        headers = HTTPMessage()
        for name, value in answer.headers:
            headers[name] = value
        text = _readable(answer.body, headers.get_content_charset() or "utf-8")
        if not 200 <= answer.status < 300:
            if text is None:
                raise ErrorPage(answer.status, retry_after_seconds(headers.get("Retry-After")))
            # As urllib raises it, which the client reads (a 429's Retry-After, say).
            raise HTTPError(url, answer.status, answer.reason, headers, io.BytesIO(text.encode()))
        if text is None:
            raise UnreadableAnswer("not a JSON object")
        return {"status": answer.status, "headers": headers, "body": text}


def slack_client(*, timeout: float | None = None) -> WebClient:
    return BoundedWebClient(
        token=settings.SLACK_BOT_TOKEN,
        base_url=settings.SLACK_API_URL,
        timeout=int(max(1, settings.OUTBOUND_DEADLINE if timeout is None else timeout)),
    )


def slack_user_email(slack_user_id: str) -> str:
    """The email address on a Slack user's profile (the app needs ``users:read.email``)."""
    try:
        answer = slack_client(timeout=IN_REQUEST_TIMEOUT).users_info(user=slack_user_id)
    except SLACK_FAILURES as error:
        raise _failure(error) from error
    email = _found(answer, "user", "profile", "email")
    if not email:
        raise ChannelError("Slack gives no email address for you", permanent=True)
    if not email.isprintable():  # a NUL, say: no console user's, and no query's
        raise ChannelError(
            f"Slack gives no usable email address for you ({one_line(email)[:80]!r})",
            permanent=True,
        )
    return email


def slack_tell(*, channel: str, slack_user_id: str, text: str) -> None:
    """A message only ``slack_user_id`` sees, in the conversation where they pressed."""
    try:
        slack_client(timeout=IN_REQUEST_TIMEOUT).chat_postEphemeral(
            # Plain words: whatever an agent or a reviewer wrote into them (a summary, a
            # note) is shown as written, not read as Slack's markup (a link, a mention, a
            # bold "*stop*", an emoji made of ":fire:"); the text, for a notification, is
            # escaped.
            channel=channel or slack_user_id,
            user=slack_user_id,
            text=_escape(text),
            blocks=[_plain_section(_cut(text, SECTION_TEXT_LIMIT))],
        )
    except SLACK_FAILURES as error:
        raise _failure(error) from error


def _found(answer: Any, *path: str) -> str:
    """The text at ``path`` in Slack's answer (``"user", "id"``), or "" if it has none there."""
    value = answer.data if hasattr(answer, "data") else answer
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    return value if isinstance(value, str) else ""


# What Slack's answers name, as Slack writes it: a user id ("U0123ABCD"), and where a message
# it posted is: a channel id ("D0123ABCD") and the message's timestamp ("1733356800.000100"),
# each short enough to be kept (``Notification.slack_channel``, ``slack_ts``: 32 characters).
_AS_SLACK_WRITES = {
    ("user", "id"): re.compile(r"[A-Z0-9]{1,32}"),  # whom a message goes to, named in its log
    ("channel",): re.compile(r"[A-Z0-9]{1,32}"),
    ("ts",): re.compile(r"[0-9]{1,20}\.[0-9]{1,11}"),
}


def _in_answer(answer: Any, *path: str) -> str:
    """The text at ``path`` in Slack's answer, or the ChannelError that says it is missing;
    an id only as Slack writes one: one that is not (a 40-character timestamp, a NUL in a
    user id) could not be kept, and had failed the recording of every message sent with it,
    which were all sent again."""
    value = _found(answer, *path)
    if not value:
        raise ChannelError(f"Slack's answer has no {'.'.join(path)}")
    kept_as = _AS_SLACK_WRITES.get(path)
    if kept_as is not None and not kept_as.fullmatch(value):
        raise ChannelError(
            f"Slack's answer has no {'.'.join(path)} as Slack writes one: {value[:40]!r}"
        )
    return value


def _failure(error: SlackClientError | OSError) -> ChannelError:
    if isinstance(error, UnreadableAnswer):
        return ChannelError(f"Slack's answer could not be read: {error}")
    if isinstance(error, ErrorPage):
        return ChannelError(str(error), retry_after=error.retry_after)
    if isinstance(error, SlackApiError):
        code = _found(error.response, "error") if error.response is not None else ""
        # Slack's codes are short words ("ratelimited"); anything else is shown and kept as
        # text can be (a NUL in it had failed the recording of every message sent with it).
        said = one_line(code)[:100]
        if code in REFUSALS_SAID:
            said += f" ({REFUSALS_SAID[code]}); not tried again: Slack would refuse it again"
        return ChannelError(
            f"Slack refused it: {said or error}",
            permanent=code in PERMANENT_ERRORS,
            retry_after=_retry_after(error),
        )
    if isinstance(error, ExchangeFailed):  # reached nobody, or may have reached Slack
        return ChannelError(failure_in_words("Slack", str(error), went=error.went))
    return ChannelError(f"Slack could not be reached: {getattr(error, 'reason', None) or error}")


def _retry_after(error: SlackApiError) -> float | None:
    """The seconds a rate-limited answer (429) asks to wait, if it says."""
    headers = getattr(error.response, "headers", None) or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def message_blocks(
    message: ProposalMessage,
    *,
    may_decide: bool,
    outcome: str = "",
    progress: str = "",
    reader: str = "",
) -> list:
    """The Block Kit message: buttons only while it waits, and only for a person who may
    decide on it, under how far it has come (``progress``); once decided, what became of it
    instead. What others wrote in it (a summary, an agent's or an account's slug, a username,
    a note, a creative) is shown as written: rich text elements and plain text, not Slack's
    markup. Its words together stay within MESSAGE_TEXT_LIMIT: why it waits and its notes,
    where long, are cut to one length to fit with its headline, facts and buttons (leaving
    room to say which creatives do not fit), and the words the action would publish take the
    room left (``_words_blocks``)."""
    # One who may decide it, but not from Slack (``decided_on_its_page``): told so, and
    # offered only to take it.
    on_its_page = bool(may_decide and not outcome and message.decided_on_its_page)
    may_approve = may_decide and not outcome and not on_its_page
    reasons = "\n".join(f"• {reason}" for reason in message.reasons) or "• No policy decided it."
    # Once it no longer waits (``outcome``), why it waited: not "waits".
    why = f"{'Why it waited' if outcome else 'Why it waits'}\n{reasons}"
    progress = progress or message.progress  # a new message says how far it has come too
    notes = [
        note
        for note, shown in (
            # Each quotes a reviewer's or an agent's note, or a name, as they typed it.
            (outcome or progress, True),
            (message.not_yours, not outcome),
            (message.nobody_may_decide, not outcome),
            (message.approval_refused, may_approve),
            (message.decided_on_its_page, on_its_page),
        )
        if note and shown
    ]
    head = [_headline_block(message), _facts_block(message, on_it=not outcome)]
    told = _told_blocks(message)
    # The buttons as they would be with Approve: they take at most this room.
    if may_approve:
        actions = [_actions_block(message, approve=True, reader=reader)]
    else:
        actions = _claim_block(message, reader=reader) if on_its_page else []
    room = MESSAGE_TEXT_LIMIT - message_units([*head, *actions, *told])
    limit = min(
        SECTION_TEXT_LIMIT,
        _share(
            [min(_units(text), SECTION_TEXT_LIMIT) for text in (why, *notes)],
            room - _words_left_room(message, may_approve=may_approve),
        ),
    )
    # Plain text, as the words are: a reason quotes the creative it found a banned term in
    # ("“*«Guaranteed»* :tada:”"), which Slack's markup would show bold, with an emoji.
    said = [
        _plain_section(_cut(why, limit, more="\n… and more on its page.")),
        *({"type": "context", "elements": [_plain(_cut(note, limit))]} for note in notes),
    ]
    words, every_word_shown = _words_blocks(
        message, may_approve=may_approve, room=room - message_units(said)
    )
    if may_approve:
        approve = every_word_shown and not message.approval_refused
        actions = [_actions_block(message, approve=approve, reader=reader)]
    return [*head, *words, *said, *actions, *told]


def _told_blocks(message: ProposalMessage) -> list[dict]:
    """Why its reader is told (by which route, or as its backup group) and where they choose
    how they are told, as an email ends; the route's name (200 characters at most) as its
    policy owner typed it. An update ends so too, as an updated digest does: it redraws the
    whole message, which would otherwise lose its last line. None where no route is on
    record (its route deleted)."""
    if not message.told_because:
        return []
    link = f"How you are told is yours to choose: <{my_channels_url()}|your channels>."
    return [
        {
            "type": "context",
            "elements": [
                _plain(message.told_because),
                {"type": "mrkdwn", "text": link},
            ],
        }
    ]


# Why a digest's reader is told, at most (a digest may list proposals told by many routes,
# each named up to 200 characters): the rest of its routes are counted.
DIGEST_TOLD_LIMIT = 2000


def _digest_told_blocks(messages: list[ProposalMessage]) -> list[dict]:
    """Why a digest's reader is told, as a single message ends (``_told_blocks``): each route
    (or way) that told them of a proposal it lists said once, in the order they come, as
    many as DIGEST_TOLD_LIMIT units hold ("… and by 3 more routes."), and where they choose
    how they are told."""
    said = list(dict.fromkeys(m.told_because for m in messages if m.told_because))
    if not said:
        return []

    def more(left: int) -> str:
        return f"… and by {left} more route{'s' if left != 1 else ''}." if left else ""

    kept: list[str] = []
    for index, why in enumerate(said):
        if _units(" ".join([*kept, why, more(len(said) - index - 1)])) > DIGEST_TOLD_LIMIT:
            kept.append(more(len(said) - index))
            break
        kept.append(why)
    return _told_blocks(dataclasses.replace(messages[0], told_because=" ".join(kept)))


def _headline_block(message: ProposalMessage) -> dict:
    """What the message is about, and the proposal's number and summary as its agent
    proposed it, bold, a link to its page, then, where it now reads otherwise, as it does and
    how it came to ("As edited by operator: …"), as its page heads it: a summary names
    campaigns by their slugs, which Slack's markup would read ("_retarget_" in italics)."""
    summary = f"#{message.proposal_id} {one_line(message.proposed_summary)}"
    lines = [[_rich(message.headline)], [_rich_link(message.url, summary, bold=True)]]
    if message.as_now:
        lines.append(
            [_rich(f"{message.changed_by}:", bold=True), _rich(f" {one_line(message.summary)}")]
        )
    if message.campaigns_now:  # a campaign it touches paused (or gone) since, as its page says
        lines.append([_rich(one_line(message.campaigns_now_text), bold=True)])
    return _rich_block(lines)


def _facts_block(message: ProposalMessage, *, on_it: bool) -> dict:
    """The figures that matter, a line each under its label, bold; when a decision is due,
    and who is on it (while ``on_it`` may still be said) until when, as dates Slack shows in
    the reader's own zone. Its names (an agent's, an account's, a campaign's in its size, a
    person's) are shown as they are written: a slug or a username may hold "_", which
    Slack's markup reads as italics."""
    risk = message.risk if message.risk is not None else "not scored"
    lines = [
        [_rich(label, bold=True), _rich(f" {value}")]
        for label, value in (
            ("Agent", message.agent),
            ("Account", message.account),
            ("Action", message.action_type),
            ("Size", message.magnitude),
            ("Risk", risk),
        )
    ]
    if message.due_at:
        due = "Was due by" if message.overdue else "Due by"
        when = _rich_date(message.due_at, "{date_short} {time_secs}", message.due_text)
        lines.append([_rich(due, bold=True), _rich(" "), when])
    if message.claimed_by and on_it:
        line = [_rich("On it", bold=True), _rich(f" {message.claimed_by}")]
        if message.claimed_until is not None:
            until = _rich_date(
                message.claimed_until, "{date_short} {time_secs}", message.claimed_until_text
            )
            line += [_rich(", until "), until]
        lines.append(line)
    return _rich_block(lines)


def _actions_block(message: ProposalMessage, *, approve: bool, reader: str) -> dict:
    """Approve (where ``approve``), the Reject menu that asks for the reason, and the claim's
    button."""
    value = str(message.proposal_id)
    # A decision carries the action as this message shows it (``press_parse``).
    seen = f":{message.seen}" if message.seen else ""
    approve_button = {
        "type": "button",
        "action_id": "approve",
        "style": "primary",
        "text": {"type": "plain_text", "text": "Approve"},
        "value": f"{value}{seen}",
    }
    return {
        "type": "actions",
        "block_id": f"proposal-{message.proposal_id}",
        "elements": [
            *([approve_button] if approve else []),
            {
                "type": "static_select",
                "action_id": "reject",
                "placeholder": {"type": "plain_text", "text": "Reject because…"},
                "options": [
                    {
                        "text": {"type": "plain_text", "text": label},
                        "value": f"{value}:{code}{seen}",
                    }
                    for code, label in RejectionReason.choices
                ],
            },
            *_claim_button(message, value, reader=reader),
        ],
    }


def failure_blocks(message: ProposalMessage, *, may_retry: bool, outcome: str = "") -> list:
    """The Block Kit message saying a proposal's execution failed: what it would have done,
    when and why it failed (the channel's words, as plain text: an endpoint's answer is
    shown as it typed it, not read as Slack's markup), who let it run, and the link to its
    page, where a person who ``may_retry`` it may. No buttons: a retry is made in the
    console. Once it ran again (``outcome``), what became of it in place of the link. Its
    words stay within MESSAGE_TEXT_LIMIT as a message's asking for a decision do: why it
    failed and how it came to run cut to one length where long, the creatives in the room
    left."""
    failure = message.failure
    facts = _facts_block(message, on_it=False)
    if failure.at is not None:
        when = _rich_date(failure.at, "{date_short} {time_secs}", failure.at_text)
        facts["elements"][0]["elements"] += [_rich("\n"), _rich("Failed at", bold=True)]
        facts["elements"][0]["elements"] += [_rich(" "), when]
    head = [_headline_block(message), facts]
    told = _told_blocks(message)
    warned: list[dict] = []
    if outcome:
        tail = {"type": "context", "elements": [_plain(_cut(outcome, SECTION_TEXT_LIMIT))]}
    else:
        page = f"<{message.url}|its page>"
        note = (
            f"It waits for a person: retry it on {page} if it should still run."
            if may_retry
            else f"Read it on {page}."
        )
        tail = {"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}
        # A kill switch engaged over it, said before the retry as its page says it beside
        # Retry; in plain text, as a policy owner typed its reason.
        switches = failure.retry_past_kill_switches if may_retry else failure.kill_switches_text
        if switches:
            warned = [_plain_section(_cut(switches, SECTION_TEXT_LIMIT))]
        # Why a retry is refused now, whoever would make it, said to every reader as the
        # retry itself is refused; else what a retry would do, said to whoever may retry it,
        # as its page says it beside Retry.
        if failure.retry_refused:
            warned.append(_plain_section(_cut(failure.retry_refused, SECTION_TEXT_LIMIT)))
        elif may_retry and failure.retry_would:
            warned.append(_plain_section(_cut(failure.retry_would, SECTION_TEXT_LIMIT)))
        # Re-assessed as a retry would run it, over its policy's cumulative ceiling: that a
        # retry runs it all the same, to whoever may retry it, as its page says beside Retry.
        if may_retry and failure.retry_over_cumulative:
            said = _cut(failure.retry_over_cumulative, SECTION_TEXT_LIMIT)
            warned.append(_plain_section(said))
    how = [f"• {failure.let_run}."]
    if failure.by_policy:
        how += [f"• {reason}" for reason in message.reasons]
    texts = [f"Why it failed\n{failure.said}", "How it came to run\n" + "\n".join(how)]
    room = MESSAGE_TEXT_LIMIT - message_units([*head, *warned, tail, *told])
    limit = min(
        SECTION_TEXT_LIMIT,
        _share(
            [min(_units(text), SECTION_TEXT_LIMIT) for text in texts],
            room - _words_left_room(message, may_approve=False),
        ),
    )
    said = [_plain_section(_cut(text, limit, more="\n… and more on its page.")) for text in texts]
    words, _ = _words_blocks(message, may_approve=False, room=room - message_units(said))
    return [*head, *words, *said, *warned, tail, *told]


def _words_blocks(
    message: ProposalMessage, *, may_approve: bool, room: int
) -> tuple[list[dict], bool]:
    """The words the action would publish, a section each, as plain text (shown as they
    would be published: no Slack formatting, no emoji made of ``:fire:``; a part's own line
    breaks indented under it, as an email shows them, so that a body cannot add a line that
    reads as the creative's call to action), as many as fit the message's ``room`` (units);
    and whether every one of them did. One that did not is named, and the message offers no
    Approve: approving is for words read, on its page (where the reader may approve it,
    ``may_approve``, the note says so)."""
    texts = [words_lines(title, parts) for title, parts in message.words]
    if (
        len(texts) <= WORDS_SHOWN_SECTIONS
        and all(_units(text) <= SECTION_TEXT_LIMIT for text in texts)
        and sum(_units(text) for text in texts) <= room
    ):
        return [_plain_section(text) for text in texts], True
    room -= _words_left_room(message, may_approve=may_approve)
    blocks: list[dict] = []
    for text in texts:
        # Counted in UTF-16 units (an emoji is two), as Slack may count its limits: a creative
        # of emoji alone must not have the whole message refused.
        room -= _units(text)
        if len(blocks) == WORDS_SHOWN_SECTIONS or _units(text) > SECTION_TEXT_LIMIT or room < 0:
            break
        blocks.append(_plain_section(text))
    return [*blocks, _words_left(message, len(blocks), may_approve=may_approve)], False


def _words_left(message: ProposalMessage, shown: int, *, may_approve: bool) -> dict:
    """The note that the words of the first creative not ``shown`` (and of those after it) do
    not fit the message, and where they are read."""
    title = message.words[shown][0]
    after = len(message.words) - shown - 1
    which = f"{title} and the {after} after it do" if after else f"{title} does"
    approve = ", and approve it," if may_approve else ""
    note = (
        f"{_escape(which)} not fit in this message: read "
        f"{'them' if after else 'it'}{approve} on <{message.url}|its page>."
    )
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}


def _words_left_room(message: ProposalMessage, *, may_approve: bool) -> int:
    """The units the note that some of its words do not fit takes at most (``_words_left``)."""
    return max(
        (
            message_units([_words_left(message, shown, may_approve=may_approve)])
            for shown in range(len(message.words))
        ),
        default=0,
    )


def _share(lengths: list[int], room: int) -> int:
    """The most units each of texts of these ``lengths`` may keep for them all to take
    ``room`` at most: the longest cut to one length, the others kept whole."""
    left = len(lengths)
    for length in sorted(lengths):
        if length * left > room:
            return max(0, room // left)
        room -= length
        left -= 1
    return max(lengths, default=0)


def _claim_block(message: ProposalMessage, *, reader: str) -> list[dict]:
    """The claim's button alone, in a block of its own (none where there is no button)."""
    claim = _claim_button(message, str(message.proposal_id), reader=reader)
    block = {"type": "actions", "block_id": f"proposal-{message.proposal_id}", "elements": claim}
    return [block] if claim else []


def _claim_button(message: ProposalMessage, value: str, *, reader: str) -> list[dict]:
    """ "I'll take it" while nobody is on it; "Give it back" on the message of the one who is
    (``reader``); none on others' while someone is (taking it would be refused)."""
    if not message.claimed_by:
        action, text = "claim", "I'll take it"
    elif message.claimed_by == reader:
        action, text = "release", "Give it back"
    else:
        return []
    return [
        {
            "type": "button",
            "action_id": action,
            "text": {"type": "plain_text", "text": text},
            "value": value,
        }
    ]


def switch_blocks(message: SwitchMessage) -> list[dict]:
    """A kill switch's message: its headline, bold, each paragraph as written (a policy
    owner's reason is words, not markup), and its links, one a line."""
    return [
        _rich_block([[_rich(_cut(message.headline, 300), bold=True)]]),
        *(_plain_section(_cut(paragraph, 2900)) for paragraph in message.paragraphs),
        _rich_block([[_rich_link(url, words)] for words, url in message.links]),
    ]


def _plain(text: str) -> dict:
    """Text Slack shows as it is written: no markup, no emoji made of ``:fire:``, no links or
    mentions (``<!here>``), so nothing in it needs escaping."""
    return {"type": "plain_text", "text": text, "emoji": False}


def _plain_section(text: str) -> dict:
    return {"type": "section", "text": _plain(text)}


def _units(text: str) -> int:
    """A text's length as Slack may count its limits: in UTF-16 units (an emoji is two)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def message_units(blocks: list[dict]) -> int:
    """How long a message's blocks are as Slack may count them against its limit for a
    message (MESSAGE_TEXT_LIMIT): every text in them (a text object's, a rich text element's,
    a date's fallback, a button's, a menu's options'), in UTF-16 units."""

    def units(value: Any) -> int:
        if isinstance(value, dict):
            return sum(
                _units(said)
                if name in ("text", "fallback") and isinstance(said, str)
                else units(said)
                for name, said in value.items()
            )
        if isinstance(value, list):
            return sum(units(said) for said in value)
        return 0

    return units(blocks)


def _first_units(text: str, room: int) -> str:
    """The start of ``text`` that takes ``room`` UTF-16 units at most, never half an emoji."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > room:
            return text[:index]
    return text


def _cut(text: str, limit: int, *, more: str = "…") -> str:
    """``text``, cut to ``limit`` UTF-16 units (saying ``more``) if longer. Plain text: its
    "&" is one, and it has no escape to cut inside."""
    if _units(text) <= limit:
        return text
    return _first_units(text, max(0, limit - _units(more))) + more


def _rich(text: str, **style: bool) -> dict:
    """A rich text element Slack shows as it is written: its markup (``*bold*``), emoji codes
    (``:fire:``), links (``<https://…|click>``) and mentions (``<!channel>``) are words, as
    Slack's own are elements of their own."""
    return {"type": "text", "text": text, **({"style": style} if style else {})}


def _rich_link(url: str, text: str, **style: bool) -> dict:
    return {"type": "link", "url": url, "text": text, **({"style": style} if style else {})}


def _rich_date(when: datetime, format: str, fallback: str) -> dict:
    """A time Slack shows in its reader's own zone, as ``format`` says (its tokens:
    ``{date_short}``, ``{time}``…), or, where it cannot, as ``fallback`` (in the console's)."""
    return {
        "type": "date",
        "timestamp": int(when.timestamp()),
        "format": format,
        "fallback": fallback,
    }


def _rich_cut(elements: list[dict], limit: int, *, more: str = "…") -> list[dict]:
    """``elements``, their words cut to ``limit`` units (saying ``more``) if longer."""
    if sum(_units(element["text"]) for element in elements) <= limit:
        return elements
    room, kept = limit - _units(more), []
    for element in elements:
        text = element["text"]
        if _units(text) > room:
            kept.append({**element, "text": _first_units(text, room) + more})
            return kept
        kept.append(element)
        room -= _units(text)
    return kept


def _rich_block(lines: list[list[dict]]) -> dict:
    elements = [*lines[0]]
    for line in lines[1:]:
        elements += [_rich("\n"), *line]
    return {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": elements}]}


def _digest_blocks(
    title: str,
    lines: list[list[dict]],
    *,
    told: list[dict],
    failures: bool = False,
) -> list[dict]:
    """The digest's lines, each cut to DIGEST_LINE_LIMIT units, in rich text blocks that each
    hold as much as a section may (Slack counts a message's blocks, and rich text has no
    limit of its own written down), as many as a message takes (BLOCKS_LIMIT blocks,
    MESSAGE_TEXT_LIMIT units in all, beside why its reader is told, ``told``, which ends
    it); the lines left over are counted, for the proposals' queue to show."""
    lines = [_rich_cut(line, DIGEST_LINE_LIMIT) for line in lines]
    most_units = MESSAGE_TEXT_LIMIT - message_units(told)
    most_blocks = BLOCKS_LIMIT - len(told)
    blocks, placed = _digest_placed(title, lines, most_units=most_units, most_blocks=most_blocks)
    if placed < len(lines):

        def more(left: int) -> str:
            if failures:  # not in the queue of what waits: listed as failed
                return f"… and {left} more, in the console's proposals whose status is Failed."
            return f"… and {left} more in the console's queue."

        blocks, placed = _digest_placed(
            title,
            lines,
            most_units=most_units - _units(more(len(lines))),
            most_blocks=most_blocks - 1,
        )
        blocks.append([[_rich(more(len(lines) - placed))]])
    return [*(_rich_block(block) for block in blocks), *told]


def _digest_placed(
    title: str, lines: list[list[dict]], *, most_units: int, most_blocks: int
) -> tuple[list[list[list[dict]]], int]:
    """The digest's ``title`` and as many of its ``lines`` as fit ``most_blocks`` blocks of a
    section's length at most, ``most_units`` units in all (a line break between two lines of
    a block one), as the blocks' lines; and how many lines it placed."""
    blocks: list[list[list[dict]]] = [[[_rich(title, bold=True)]]]
    in_block = total = _units(title)
    for placed, line in enumerate(lines):
        length = sum(_units(element["text"]) for element in line)
        if in_block + 1 + length > SECTION_TEXT_LIMIT:  # a block of its own
            if len(blocks) == most_blocks or total + length > most_units:
                return blocks, placed
            blocks.append([line])
            in_block, total = length, total + length
        else:
            if total + 1 + length > most_units:
                return blocks, placed
            blocks[-1].append(line)
            in_block, total = in_block + 1 + length, total + 1 + length
    return blocks, len(lines)


def _digest_line(line: DigestLine) -> list[dict]:
    """A proposal's line in a digest: why it waits (and how far it has come), or, once it no
    longer waits, what became of it, in the words its own message is updated with. Its words
    are rich text elements, shown as written (a summary, a note, an endpoint's answer, what a
    brand guideline found in a creative), each on one line: a line break in them would start
    a line that reads as another proposal's or as the digest's own."""
    message = line.message
    link = _rich_link(message.url, f"#{message.proposal_id} {one_line(message.proposed_summary)}")
    if message.as_now:  # as its agent proposed it, then as it now reads, as its page says
        link = [link, _rich(f"\n    {message.changed_by}: {one_line(message.summary)}")]
    else:
        link = [link]
    if message.campaigns_now and not line.outcome:  # paused (or gone) since, as its page says
        link = [*link, _rich(f"\n    {one_line(message.campaigns_now_text)}")]
    if line.outcome:
        return [
            _rich("• "),
            *link,
            _rich("\n    "),
            _rich(f"{line.ended_as}:", italic=True),
            _rich(f" {one_line(line.outcome)}"),
        ]
    if message.failure:  # grouped failures: when and why, in the channel's words
        failure = message.failure
        return [
            _rich("• "),
            *link,
            _rich(f" (failed at {failure.at_text or 'a time not recorded'})\n    "),
            _rich("Why it failed:", italic=True),
            _rich(f" {one_line(failure.said)}\n    "),
            *(
                [_rich(f"{failure.retry_would}\n    ")]
                if failure.may_retry and failure.retry_would
                else []
            ),
            _rich("How it came to run:", italic=True),
            _rich(f" {one_line(failure.let_run)}."),
            # Why a retry is refused now, to every reader; the switches engaged over it, and
            # to one who may retry it, that a retry runs past them.
            *([_rich(f"\n    {one_line(failure.retry_refused)}")] if failure.retry_refused else []),
            *(
                [
                    _rich(
                        "\n    "
                        + one_line(
                            failure.retry_past_kill_switches
                            if failure.may_retry
                            else failure.kill_switches_text
                        )
                    )
                ]
                if failure.kill_switches
                else []
            ),
            *(
                [_rich(f"\n    {one_line(failure.retry_over_cumulative)}")]
                if failure.may_retry and failure.retry_over_cumulative
                else []
            ),
        ]
    risk = message.risk if message.risk is not None else "not scored"
    said = [
        _rich("• "),
        *link,
        _rich(f" (risk {risk})\n    "),
        _rich("Why it waits:", italic=True),
        _rich(f" {one_line(message.reasons_brief)}"),
    ]
    if message.not_yours:  # to one who may not decide it: why not, and who does
        said.append(_rich(f"\n    {one_line(message.not_yours)}"))
    return [*said, _rich(f"\n    {one_line(line.progress)}")] if line.progress else said


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _preview(text: str) -> str:
    """A message's text, which Slack shows in a notification of it: escaped, as Slack reads
    it as its markup (a note's "<!here>" is shown, not a mention), and cut to PREVIEW_LIMIT
    (an endpoint's answer quoted in it is as long as the endpoint likes)."""
    return _escape(_cut(text, PREVIEW_LIMIT))


class SlackChannel(Channel):
    name = "slack"

    def is_configured(self) -> bool:
        return bool(settings.SLACK_BOT_TOKEN)

    def _user_id(self, client: WebClient, recipient) -> str:
        if not recipient.email:
            raise ChannelError("has no email address to find them on Slack by", permanent=True)
        try:
            answer = client.users_lookupByEmail(email=recipient.email)
        except SLACK_FAILURES as error:
            raise _failure(error) from error
        return _in_answer(answer, "user", "id")

    def send(self, *, recipient, message: ProposalMessage, may_decide: bool) -> Sent:
        return self._post(
            recipient,
            text=_preview(f"{message.headline}: #{message.proposal_id} {message.summary_said}"),
            blocks=failure_blocks(message, may_retry=may_decide)
            if message.failure
            else message_blocks(message, may_decide=may_decide, reader=recipient.get_username()),
        )

    def send_switch_message(self, *, recipient, message: SwitchMessage) -> Sent:
        return self._post(recipient, text=_preview(message.headline), blocks=switch_blocks(message))

    def send_digest(self, *, recipient, messages: list[ProposalMessage]) -> Sent:
        lines = [_digest_line(DigestLine(message)) for message in messages]
        failures = all(message.failure for message in messages)
        text = (failed_count_text if failures else waiting_count_text)(len(messages))
        return self._post(
            recipient,
            text=text,
            blocks=_digest_blocks(
                text, lines, told=_digest_told_blocks(messages), failures=failures
            ),
        )

    def _post(self, recipient, *, text: str, blocks: list) -> Sent:
        """Post ``blocks`` to the recipient's direct messages; where it went, to update it."""
        client = slack_client()
        user_id = self._user_id(client, recipient)
        try:
            answer = client.chat_postMessage(
                channel=user_id, text=text, blocks=blocks, unfurl_links=False
            )
        except SLACK_FAILURES as error:
            raise _failure(error) from error
        where = {"channel": _in_answer(answer, "channel"), "ts": _in_answer(answer, "ts")}
        return Sent(f"posted to {user_id} ({where['channel']} {where['ts']})", where)

    def update_said(self, **says) -> str:
        return _said(_update(**says))

    def digest_update_said(self, *, lines: list[DigestLine]) -> str:
        return _said(_digest_update(lines))

    def update_digest(self, *, where: dict[str, str], lines: list[DigestLine]) -> Sent:
        return _chat_update(where, _digest_update(lines))

    def retract(self, *, where: dict[str, str], text: str) -> Sent:
        try:
            slack_client().chat_update(
                channel=where["channel"],
                ts=where["ts"],
                text=_preview(text),
                # Plain text: it names its reader by their username, which may hold "_".
                blocks=[_plain_section(_cut(text, SECTION_TEXT_LIMIT))],
            )
        except SLACK_FAILURES as error:
            raise _failure(error) from error
        return Sent(f"updated {where['channel']} {where['ts']}: {text}")

    def update(self, *, where: dict[str, str], **says) -> Sent:
        return _chat_update(where, _update(**says))


def _chat_update(where: dict[str, str], update: dict) -> Sent:
    """Send Slack ``update`` (its text and blocks) for the message at ``where``; the result
    keeps what it made the message say."""
    try:
        slack_client().chat_update(channel=where["channel"], ts=where["ts"], **update)
    except SLACK_FAILURES as error:
        raise _failure(error) from error
    return Sent(f"updated {where['channel']} {where['ts']}", said=_said(update))


def _update(
    *,
    text: str,
    message: ProposalMessage,
    still_waits: bool = False,
    may_decide: bool = False,
    ended_as: str = NO_LONGER_WAITS,
    reader: str = "",
) -> dict:
    """What an update of a message sends Slack (its text and blocks): what became of its
    proposal, or how far it has come (``Channel.update``)."""
    if message.failure:  # headed as its failure stands, or as sent to run again since
        message = dataclasses.replace(message, headline=ended_as)
        blocks = failure_blocks(message, may_retry=may_decide, outcome=text)
    elif still_waits:
        blocks = message_blocks(message, may_decide=may_decide, progress=text, reader=reader)
    else:  # its round ended: its headline must not say it waits for a decision here
        message = dataclasses.replace(message, headline=ended_as)
        blocks = message_blocks(message, may_decide=False, outcome=text)
    return {
        "text": _preview(
            f"#{message.proposal_id} {message.summary_said}: {text or message.headline}"
        ),
        "blocks": blocks,
    }


def _digest_update(lines: list[DigestLine]) -> dict:
    """What an update of a digest sends Slack: what became of each proposal it lists, and how
    many still wait (``Channel.update_digest``)."""
    waiting = sum(1 for line in lines if not line.outcome)
    failures = all(line.message.failure for line in lines)
    if failures:
        text = failed_since_retried_text(lines)
    else:
        text = still_waiting_count_text(waiting, listed=len(lines))
    blocks = _digest_blocks(
        text,
        [_digest_line(line) for line in lines],
        told=_digest_told_blocks([line.message for line in lines]),
        failures=failures,
    )
    return {"text": text, "blocks": blocks}


def _said(update: dict) -> str:
    """A fingerprint of what an update makes its message say: its text and blocks."""
    return hashlib.sha256(json.dumps(update, sort_keys=True).encode()).hexdigest()
