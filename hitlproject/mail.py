"""Django's SMTP backend with one deadline for the whole exchange with the mail server, as
outbound requests have (``hitlproject.outbound``): smtplib's timeout bounds each read, so a
server answering a byte at a time, each within it, held a worker for as long as it liked.
From the connection on, the exchange has ``timeout`` seconds (EMAIL_TIMEOUT) in all; then its
socket is shut down under it, and the send fails as a dropped connection does (tried again).

What went wrong is said in words (``mail_failure_in_words``): what the server answered, its
code and its words ("the mail server answered 550 5.1.1 User unknown"), not smtplib's
exception and Python's bytes (``SMTPRecipientsRefused: {'…': (550, b'5.1.1 User unknown')}``).
A line of the server's longer than smtplib reads is said as that, where it came (its
greeting, its answer to a command), not as the "500 Line too long." smtplib makes up as though
the server had answered it: the server misbehaved, it did not refuse the message, and the send
is tried again as after a dropped connection."""

import contextlib
import os
import smtplib
import socket
import ssl
import threading

from django.core.mail.backends.smtp import EmailBackend as SMTPEmailBackend

from hitlproject.outbound import timed_out_text, tls_failure_text
from hitlproject.validation import one_line

# smtplib's longest line (its ``_MAXLINE``, 8192 bytes), in KiB.
LINE_AT_MOST_KIB = 8
# Of a server's words, what is kept.
SERVER_WORDS_CHARS = 300


class MailExchangeEnded(smtplib.SMTPServerDisconnected):
    """The exchange with the mail server ended on our side, its connection closed, for the
    reason its words say (a line too long to read, the deadline passed): tried again."""


class _Bounded:
    """Mixed into smtplib's SMTP (or SMTP_SSL): the deadline starts with the socket."""

    deadline: float
    _cut_off: threading.Timer | None = None
    _cut = False
    # The last command sent (none yet: the server's greeting is awaited), and how many
    # replies came since (DATA's second is the answer to the message itself).
    _asked = ""
    _replies = 0

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        self._cut_off = threading.Timer(self.deadline, self._cut_now)
        self._cut_off.daemon = True
        self._cut_off.start()
        return sock

    def _cut_now(self) -> None:
        self._cut = True
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # closed already
                sock.shutdown(socket.SHUT_RDWR)

    # The connection lost where the deadline cut it is said so.
    def send(self, s) -> None:
        try:
            super().send(s)
        except smtplib.SMTPServerDisconnected as error:
            if self._cut or isinstance(error.__context__, TimeoutError):
                raise self._deadline_passed() from error
            raise

    def putcmd(self, cmd, args="") -> None:
        self._asked, self._replies = cmd.upper(), 0
        super().putcmd(cmd, args)

    def getreply(self):
        try:
            reply = super().getreply()
        except smtplib.SMTPServerDisconnected as error:
            # smtplib says a read that timed out as "Connection unexpectedly closed: timed
            # out": the server closed nothing, it did not answer in time.
            if self._cut or isinstance(error.__context__, TimeoutError):
                raise self._deadline_passed() from error
            raise
        except smtplib.SMTPResponseException as error:
            # Raised by smtplib itself, never for a reply read: a line longer than it reads.
            raise MailExchangeEnded(
                f"{self._what_answered()} was longer than {LINE_AT_MOST_KIB} KiB: not read"
            ) from error
        self._replies += 1
        return reply

    def _what_answered(self) -> str:
        if not self._asked:
            return "the mail server's greeting"
        if self._asked == "DATA" and self._replies:
            return "the mail server's answer to the message"
        return f"the mail server's answer to {self._asked}"

    def _deadline_passed(self) -> MailExchangeEnded:
        """The exchange's deadline passed, or a read's timeout (the same seconds)."""
        return MailExchangeEnded(f"the mail server {timed_out_text(self.deadline)}")

    def close(self) -> None:
        if self._cut_off is not None:
            self._cut_off.cancel()
        super().close()


class _BoundedSMTP(_Bounded, smtplib.SMTP):
    pass


class _BoundedSMTPSSL(_Bounded, smtplib.SMTP_SSL):
    pass


class EmailBackend(SMTPEmailBackend):
    @property
    def connection_class(self):
        base = _BoundedSMTPSSL if self.use_ssl else _BoundedSMTP
        # Bound per connection: the timeout is the backend's (get_connection(timeout=…)).
        return type(base.__name__, (base,), {"deadline": self.timeout or 60.0})


def _reply(code: int, words: bytes | str) -> str:
    """A server's reply as it came: its code and its words, on one line, cut."""
    if isinstance(words, bytes):
        words = words.decode("utf-8", errors="replace")
    words = one_line(words)
    if len(words) > SERVER_WORDS_CHARS:
        words = words[: SERVER_WORDS_CHARS - 1] + "…"
    if code < 0:  # smtplib's -1: the reply began with no code it could read
        return f"with no reply code: “{words}”"
    return f"{code} {words}".strip()


def mail_failure_in_words(error: OSError, *, timeout: float) -> str:
    """Why an email did not go, as an outbox's log says it: what the mail server answered
    ("the mail server answered 550 5.1.1 User unknown"), or what became of the exchange; a
    timeout as every outbound exchange says one, with its limit (``timeout``, the
    connection's): "the mail server timed out: no answer within 10 s"."""
    if isinstance(error, MailExchangeEnded):
        return str(error)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        refused = list(error.recipients.items())
        if len(refused) == 1:
            return f"the mail server answered {_reply(*refused[0][1])}"
        each = "; ".join(f"{_reply(*reply)} for {address}" for address, reply in refused)
        return f"the mail server answered {each}"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"the mail server answered {_reply(error.smtp_code, error.smtp_error)}"
    if isinstance(error, smtplib.SMTPServerDisconnected):
        # smtplib's "Connection unexpectedly closed[: why]".
        why = str(error).partition(": ")[2]
        return "the mail server closed the connection" + (f": {why}" if why else "")
    if isinstance(error, smtplib.SMTPException):  # smtplib's own words: no AUTH offered, say
        return f"the mail server could not be used: {error}"
    if isinstance(error, socket.gaierror):
        return f"the mail server's name did not resolve: {error.strerror or error}"
    if isinstance(error, TimeoutError):
        return f"the mail server {timed_out_text(timeout)}"
    if isinstance(error, ssl.SSLError):
        # As every outbound exchange says one, not OpenSSL's "CERTIFICATE_VERIFY_FAILED".
        return f"no secure connection with the mail server: {tls_failure_text(error)}"
    if error.errno:
        return f"could not connect to the mail server: {os.strerror(error.errno).lower()}"
    return f"could not connect to the mail server: {error}"
