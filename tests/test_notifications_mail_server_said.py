"""What a mail server did with an email is said in words in its record: the code and words it
answered, not Python's exception and bytes; a server breaking the protocol (a line longer than
is read) as that, tried again, not as the "500" smtplib makes up and gives up on for good."""

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from notifications.models import NotificationStatus
from tests.conftest import reallocation
from tests.test_notifications_attacks import held_for_a_digest, send_held_one_by_one

pytestmark = pytest.mark.django_db(transaction=True)


class TinyMailServer:
    """An SMTP server of a few lines on asyncio, in a thread of its own: it greets, answers
    each command as its script says, and takes nothing further."""

    def __init__(self, greeting: bytes, answer: Callable[[bytes], bytes]) -> None:
        self.greeting, self.answer = greeting, answer
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(5)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._talk, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.greeting)
            await writer.drain()
            while line := await reader.readline():
                verb = line.split(b" ", 1)[0].strip().upper()
                writer.write(self.answer(verb))
                await writer.drain()
                if verb == b"QUIT":
                    break
        except ConnectionError:
            pass  # the platform hung up
        finally:
            writer.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def mail_server(settings) -> Iterator[Callable[[bytes, Callable[[bytes], bytes]], None]]:
    """The platform's email goes to a tiny mail server of the test's script."""
    servers = []

    def serving(greeting: bytes, answer: Callable[[bytes], bytes]) -> None:
        server = TinyMailServer(greeting, answer)
        servers.append(server)
        settings.EMAIL_BACKEND = "hitlproject.mail.EmailBackend"  # as EMAIL_HOST sets it
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port

    yield serving
    for server in servers:
        server.close()


def agreeable(verb: bytes) -> bytes:
    return b"221 bye\r\n" if verb == b"QUIT" else b"250 ok\r\n"


def email_to_operator(optimizer):
    held_for_a_digest()
    answer = optimizer.post("/api/v1/proposals/", reallocation("150.00"), format="json")
    assert answer.json()["status"] == "pending_review", answer.content
    [notification] = send_held_one_by_one()
    return notification


def test_a_greeting_longer_than_is_read_is_said_so_and_tried_again(
    demo_world, optimizer, mail_server
):
    """Recorded as "SMTPResponseException: (500, 'Line too long.')", a 500 the server never
    sent (smtplib's), and given up on for good as though the server had refused the email."""
    mail_server(b"220 " + b"x" * 9000 + b"\r\n", agreeable)

    notification = email_to_operator(optimizer)

    assert notification.log[-1]["result"] == (
        "the mail server's greeting was longer than 8 KiB: not read"
    )
    assert notification.status == NotificationStatus.PENDING, notification.log
    assert notification.next_attempt_at is not None


def test_an_answer_to_a_command_longer_than_is_read_names_the_command(
    demo_world, optimizer, mail_server
):
    def long_answer_to_rcpt(verb: bytes) -> bytes:
        return b"250 " + b"y" * 9000 + b"\r\n" if verb == b"RCPT" else agreeable(verb)

    mail_server(b"220 mail.example.test ESMTP\r\n", long_answer_to_rcpt)

    notification = email_to_operator(optimizer)

    assert notification.log[-1]["result"] == (
        "the mail server's answer to RCPT was longer than 8 KiB: not read"
    )
    assert notification.status == NotificationStatus.PENDING, notification.log


def test_a_recipient_refused_for_good_says_what_the_server_answered(
    demo_world, optimizer, mail_server
):
    """Recorded as "SMTPRecipientsRefused: {'operator@example.com': (550, b'5.1.1 User
    unknown')}": Python's exception, dictionary and bytes."""

    def unknown_user(verb: bytes) -> bytes:
        return b"550 5.1.1 User unknown\r\n" if verb == b"RCPT" else agreeable(verb)

    mail_server(b"220 mail.example.test ESMTP\r\n", unknown_user)

    notification = email_to_operator(optimizer)

    assert notification.log[-1]["result"] == "the mail server answered 550 5.1.1 User unknown"
    assert notification.status == NotificationStatus.FAILED, notification.log


def test_a_message_the_server_will_not_take_now_says_its_answer_and_is_tried_again(
    demo_world, optimizer, mail_server
):
    """Recorded as "SMTPDataError: (451, b'4.3.0 Try again later\\nqueue full')"."""

    def busy(verb: bytes) -> bytes:
        return (
            b"451-4.3.0 Try again later\r\n451 queue full\r\n"
            if verb == b"DATA"
            else (agreeable(verb))
        )

    mail_server(b"220 mail.example.test ESMTP\r\n", busy)

    notification = email_to_operator(optimizer)

    assert notification.log[-1]["result"] == (
        "the mail server answered 451 4.3.0 Try again later queue full"
    )
    assert notification.status == NotificationStatus.PENDING, notification.log
