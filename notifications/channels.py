"""The channels that carry notifications, as integrations are shaped in healthchecks
(``hc/api/transports.py``): a base class, one subclass per channel, and an error that says
whether trying again can help. A channel sends one message to one person, or updates one it
sent; what it got back is returned for the outbox's log."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass, field

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string

from hitlproject.mail import mail_failure_in_words
from notifications.kill_switches import SwitchMessage
from notifications.messages import (
    NO_LONGER_WAITS,
    DigestLine,
    ProposalMessage,
    failed_count_text,
    my_channels_url,
    waiting_count_text,
)


class ChannelError(Exception):
    """A message that did not go. ``permanent``: trying again cannot help (a bad address, a
    user the channel does not know, a refused token); ``retry_after``: not before then."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after  # seconds the channel asked us to wait (Retry-After)


@dataclass
class Sent:
    """What the channel said when it took the message: in words for the log, and where a
    message that may be updated later went."""

    result: str
    where: dict[str, str] = field(default_factory=dict)
    # What an update made its message say (``Channel.update_said``), kept in its log: a later
    # update that would say the same is not sent (``unchanged``), and its record says so.
    said: str = ""
    unchanged: bool = False


class Channel:
    name = ""

    def is_configured(self) -> bool:
        return True

    def send(self, *, recipient, message: ProposalMessage, may_decide: bool) -> Sent:
        """Send ``message`` to ``recipient``, who ``may_decide`` it (for a message saying its
        execution failed, ``message.failure``: who may retry it)."""
        raise NotImplementedError

    def send_digest(self, *, recipient, messages: list[ProposalMessage]) -> Sent:
        raise NotImplementedError

    def send_switch_message(self, *, recipient, message: SwitchMessage) -> Sent:
        """Send a message about a kill switch engaged or released (``SwitchMessage``): it
        asks no decision."""
        raise NotImplementedError

    def update(
        self,
        *,
        where: dict[str, str],
        text: str,
        message: ProposalMessage,
        still_waits: bool = False,
        may_decide: bool = False,
        ended_as: str = NO_LONGER_WAITS,
        reader: str = "",
    ) -> Sent:
        """Say on a message sent earlier what became of its proposal (headed ``ended_as``) or,
        while it ``still_waits``, how far it has come (the buttons kept for a person who
        ``may_decide``; ``reader``, whose message it is, by username); channels whose
        messages cannot change (email) do nothing."""
        return Sent("not updated: this channel's messages do not change")

    def update_said(self, **says) -> str:
        """What ``update`` with these arguments would make the message say, as a fingerprint:
        the same for the same words and buttons. "" for channels whose messages cannot
        change."""
        return ""

    def digest_update_said(self, *, lines: list[DigestLine]) -> str:
        """What ``update_digest`` with these lines would make the digest say, as
        ``update_said`` fingerprints it."""
        return ""

    def update_digest(self, *, where: dict[str, str], lines: list[DigestLine]) -> Sent:
        """Say on a digest sent earlier what became of each proposal it listed, and how many
        still wait; channels whose messages cannot change (email) do nothing."""
        return Sent("not updated: this channel's messages do not change")

    def retract(self, *, where: dict[str, str], text: str) -> Sent:
        """Replace a message sent earlier (or a digest) with ``text`` alone: what it showed
        is no longer its reader's to see; channels whose messages cannot change do nothing."""
        return Sent("not updated: this channel's messages do not change")


class EmailChannel(Channel):
    """Django's email machinery, configured from the environment: a plain-text and an HTML
    part, each with the link to the proposal's page (deciding there needs a logged-in
    reviewer)."""

    name = "email"

    def _send(self, *, recipient, subject: str, template: str, context: dict) -> Sent:
        email = EmailMultiAlternatives(
            subject=subject,
            body=render_to_string(f"notifications/{template}.txt", context),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[recipient.email],
            connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
        )
        email.attach_alternative(
            render_to_string(f"notifications/{template}.html", context), "text/html"
        )
        try:
            email.send()
        except (OSError, TimeoutError) as error:  # smtplib's errors are OSErrors
            said = mail_failure_in_words(error, timeout=settings.EMAIL_TIMEOUT)
            raise ChannelError(said, permanent=_refused_for_good(error)) from error
        where = "the mail server" if settings.EMAIL_HOST else settings.EMAIL_FILE_PATH
        return Sent(f"accepted by {where} for {recipient.email}")

    def send(self, *, recipient, message: ProposalMessage, may_decide: bool) -> Sent:
        return self._send(
            recipient=recipient,
            subject=message.subject,
            # Its execution failed: how, and who let it run; nothing to decide, a retry to
            # make on its page (``may_decide``: its reader may).
            template="failure_email" if message.failure else "proposal_email",
            context={
                "message": message,
                "recipient": recipient,
                "may_decide": may_decide,
                "channels_url": my_channels_url(),
            },
        )

    def send_switch_message(self, *, recipient, message: SwitchMessage) -> Sent:
        return self._send(
            recipient=recipient,
            subject=message.subject,
            template="switch_email",
            context={"message": message, "recipient": recipient, "channels_url": my_channels_url()},
        )

    def send_digest(self, *, recipient, messages: list[ProposalMessage]) -> Sent:
        # Executions that failed, grouped (a burst of them): what each would have done, why
        # it failed in the channel's words, how it came to run, its page.
        failures = all(message.failure for message in messages)
        count = failed_count_text if failures else waiting_count_text
        return self._send(
            recipient=recipient,
            subject=f"[HITL] {count(len(messages))}",
            template="failure_digest_email" if failures else "digest_email",
            context={
                "messages": messages,
                "recipient": recipient,
                "channels_url": my_channels_url(),
                # Why they are told, once for each route whose proposals it lists.
                "told_because": list(
                    dict.fromkeys(m.told_because for m in messages if m.told_because)
                ),
            },
        )


def _refused_for_good(error: OSError) -> bool:
    """A 5xx answer: the server will not take it however often it is tried. The recipients
    refused (smtplib's ``SMTPRecipientsRefused``) carry their codes one per address."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
    else:
        codes = [getattr(error, "smtp_code", 0) or 0]
    return bool(codes) and all(500 <= code < 600 for code in codes)
