"""Django's SMTP backend with one deadline for the whole exchange with the mail server, as
outbound requests have (``hitlproject.outbound``): smtplib's timeout bounds each read, so a
server answering a byte at a time, each within it, held a worker for as long as it liked.
From the connection on, the exchange has ``timeout`` seconds (EMAIL_TIMEOUT) in all; then its
socket is shut down under it, and the send fails as a dropped connection does (tried again)."""

import contextlib
import smtplib
import socket
import threading

from django.core.mail.backends.smtp import EmailBackend as SMTPEmailBackend


class _Bounded:
    """Mixed into smtplib's SMTP (or SMTP_SSL): the deadline starts with the socket."""

    deadline: float
    _cut_off: threading.Timer | None = None
    _cut = False

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
            if self._cut:
                raise self._deadline_passed() from error
            raise

    def getreply(self):
        try:
            return super().getreply()
        except smtplib.SMTPServerDisconnected as error:
            if self._cut:
                raise self._deadline_passed() from error
            raise

    def _deadline_passed(self) -> smtplib.SMTPServerDisconnected:
        return smtplib.SMTPServerDisconnected(
            f"The mail server did not finish within {self.deadline:g} s"
        )

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
