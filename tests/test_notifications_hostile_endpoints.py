"""A Slack Web API (SLACK_API_URL), a mail server (EMAIL_HOST) or Google's OAuth server
(GOOGLE_ADS_TOKEN_URI) that answers slowly or with
garbage: a trickle a byte at a time, an answer without end, bytes that are not UTF-8, JSON
nested past what Python reads, JSON of the wrong shape. A button press is still answered
within Slack's 3 seconds and decides nothing; a message is still tried again later, saying
why; a worker is held no longer than the deadline."""

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.test import Client

from approvals.models import Decision
from executors import google_ads_api
from executors.models import GoogleAdsLink
from notifications.models import NotificationStatus
from tests.conftest import reallocation
from tests.slack_fake import press
from tests.test_notifications_attacks import held_for_a_digest, on_slack_only, send_held_one_by_one

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/integrations/slack/interactivity/"
OPERATOR_FOUND = {
    "ok": True,
    "user": {"id": "U0OPERATOR", "profile": {"email": "operator@example.com"}},
    "channel": "D0OPERATOR",
    "ts": "1.000001",
}


class HostileSlack:
    """Answers every Slack method the same way: ``answer(connection)`` writes what it likes."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/api/"
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        try:
            connection.recv(65536)
            self.answer(connection)
        except OSError:
            pass  # the platform hung up, as it should
        finally:
            connection.close()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()


def head(length: int) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % length
    )


def trickling(answer: dict) -> Callable[[socket.socket], None]:
    """A good answer, a byte every 0.2 s: each read's timeout met, the whole taking 20 s."""

    def trickle(connection: socket.socket) -> None:
        body = json.dumps(answer).encode()
        connection.sendall(head(len(body)))
        for byte in body:
            if HOSTILE_CLOSED.is_set():
                return
            connection.sendall(bytes([byte]))
            time.sleep(0.2)

    return trickle


trickled = trickling(OPERATOR_FOUND)


def endless(connection: socket.socket) -> None:
    """An answer 64 MiB long (it could as well never end), sent as fast as it is read."""
    start = json.dumps(OPERATOR_FOUND).encode()[:-1] + b', "padding": "'
    padding = 64 * 1024 * 1024
    connection.sendall(head(len(start) + padding + 2) + start)
    chunk = b"x" * 65536
    for _ in range(padding // len(chunk)):
        connection.sendall(chunk)
    connection.sendall(b'"}')


def answering(body: bytes) -> Callable[[socket.socket], None]:
    def answer(connection: socket.socket) -> None:
        connection.sendall(head(len(body)) + body)

    return answer


GARBAGE = {
    "not utf-8": b'{"ok": true, "user": "\xff\xfe"}',
    "nested too deep": b"[" * 100_000 + b"]" * 100_000,
    "no user": b'{"ok": true}',
    "user not an object": b'{"ok": true, "user": "U0OPERATOR"}',
    "profile not an object": b'{"ok": true, "user": {"id": "U1", "profile": "operator"}}',
    "email not text": b'{"ok": true, "user": {"id": "U1", "profile": {"email": ["a@b.c"]}}}',
    "error not text": b'{"ok": false, "error": ["user_not_found"]}',
    # A NUL, which PostgreSQL keeps in no text: in a query, or in a message's log, it was a
    # server error (a press answered 500; a whole chunk of messages sent, none recorded).
    "email with a NUL": b'{"ok": true, "user": {"id": "U1", "profile": '
    b'{"email": "operator@example.com\\u0000"}}}',
    "error with a NUL": b'{"ok": false, "error": "user_not_found\\u0000"}',
    "user id with a NUL": b'{"ok": true, "user": {"id": "U0OPERATOR\\u0000"}, "channel": '
    b'"D0OPERATOR", "ts": "1.000001"}',
}

HOSTILE_CLOSED = threading.Event()


@pytest.fixture
def hostile_slack(slack, settings) -> Iterator[Callable[..., HostileSlack]]:
    """Slack configured (token, signing secret), its Web API answering as a test says."""
    servers = []
    HOSTILE_CLOSED.clear()

    def serving(answer: Callable[[socket.socket], None]) -> HostileSlack:
        server = HostileSlack(answer)
        servers.append(server)
        settings.SLACK_API_URL = server.url
        return server

    yield serving
    HOSTILE_CLOSED.set()
    for server in servers:
        server.close()


def submit(client) -> dict:
    answer = client.post("/api/v1/proposals/", reallocation("150.00"), format="json")
    assert answer.status_code == 201, answer.content
    assert answer.json()["status"] == "pending_review"
    return answer.json()


def post_press(slack_user: str, action: str, proposal_id: int):
    body, headers = press(user_id=slack_user, action_id=action, value=str(proposal_id))
    headers = dict(headers)
    content_type = headers.pop("Content-Type")
    return Client().post(URL, data=body, content_type=content_type, headers=headers)


@pytest.mark.parametrize("answer", [trickled, endless], ids=["trickled", "endless"])
def test_a_press_is_answered_within_slacks_three_seconds_whatever_slack_sends_back(
    demo_world, optimizer, hostile_slack, answer
):
    """users.info trickled (each byte within the 1 s a read is given) held the press for as
    long as Slack liked, and an endless answer was read whole into memory; the press is
    answered in time and decides nothing, as when Slack cannot be reached."""
    proposal = submit(optimizer)
    hostile_slack(answer)

    started = time.monotonic()
    answer = post_press("U0OPERATOR", "approve", proposal["id"])
    took = time.monotonic() - started

    assert answer.status_code == 200
    assert took < 3, f"answered Slack after {took:.1f} s"
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_a_press_when_slack_answers_garbage_decides_nothing_and_is_no_500(
    demo_world, optimizer, hostile_slack, garbage
):
    proposal = submit(optimizer)
    hostile_slack(answering(garbage))

    answer = post_press("U0OPERATOR", "approve", proposal["id"])

    assert answer.status_code == 200
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()


@pytest.mark.parametrize("answer", [trickled, endless], ids=["trickled", "endless"])
def test_a_message_to_a_slack_that_never_finishes_answering_is_tried_again_later(
    demo_world, optimizer, hostile_slack, settings, answer
):
    """A worker sending it is held no longer than the outbound deadline (here 1 s a call,
    two calls), and the message is not taken as sent."""
    settings.OUTBOUND_DEADLINE = 1
    held_for_a_digest()
    on_slack_only()
    submit(optimizer)
    hostile_slack(answer)

    started = time.monotonic()
    [notification] = send_held_one_by_one()
    took = time.monotonic() - started

    assert took < 4, f"the worker was held {took:.1f} s"
    assert notification.status == NotificationStatus.PENDING, notification.log
    assert notification.log[-1]["result"].startswith(
        "Slack timed out: no answer within 1 s"
        if answer is trickled
        else "Slack's answer could not be read"
    )


@pytest.mark.parametrize(
    "garbage",
    [
        b'{"ok": true, "user": {"id": "U0OPERATOR"}}',  # posted, but where?
        b'{"ok": true, "user": {"id": "U0OPERATOR"}, "channel": 7, "ts": null}',
        # Where it went, as no Slack writes it: it could not be kept.
        b'{"ok": true, "user": {"id": "U0OPERATOR"}, "channel": "D0OPERATOR", "ts": "'
        + b"1" * 40
        + b'"}',
        b'{"ok": true, "user": {"id": "U0OPERATOR"}, "channel": "D0 <!here>", "ts": "1.2"}',
        *GARBAGE.values(),
    ],
)
def test_a_message_slack_answers_garbage_to_is_not_taken_as_sent(
    demo_world, optimizer, hostile_slack, garbage
):
    held_for_a_digest()
    on_slack_only()
    submit(optimizer)
    hostile_slack(answering(garbage))

    [notification] = send_held_one_by_one()

    assert notification.status == NotificationStatus.PENDING, notification.log
    assert notification.log[-1]["result"].startswith("Slack"), notification.log


def trickled_mail_server(connection: socket.socket) -> None:
    """An SMTP server answering every command, its greeting too, a byte every 0.2 s."""
    reader = connection.makefile("rb")

    def say(line: bytes) -> None:
        for byte in line:
            if HOSTILE_CLOSED.is_set():
                raise OSError("test over")
            connection.sendall(bytes([byte]))
            time.sleep(0.2)

    say(b"220 mail.example.test ESMTP\r\n")
    while command := reader.readline():
        say(b"221 bye\r\n" if command.upper().startswith(b"QUIT") else b"250 ok\r\n")


class HostileMailServer(HostileSlack):
    def _handle(self, connection: socket.socket) -> None:  # it speaks first
        try:
            self.answer(connection)
        except OSError:
            pass
        finally:
            connection.close()


def test_an_email_to_a_mail_server_that_trickles_its_answers_is_tried_again_later(
    demo_world, optimizer, settings
):
    """smtplib's timeout is per read: a server answering a byte at a time, each within it,
    held the worker for as long as it liked (here some 40 s)."""
    HOSTILE_CLOSED.clear()
    server = HostileMailServer(trickled_mail_server)
    settings.EMAIL_BACKEND = "hitlproject.mail.EmailBackend"  # as EMAIL_HOST sets it
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.listener.getsockname()[1]
    settings.EMAIL_TIMEOUT = 1
    held_for_a_digest()
    submit(optimizer)
    try:
        started = time.monotonic()
        [notification] = send_held_one_by_one()
        took = time.monotonic() - started
    finally:
        HOSTILE_CLOSED.set()
        server.close()

    assert took < 3, f"the worker was held {took:.1f} s"
    assert notification.status == NotificationStatus.PENDING, notification.log
    assert notification.next_attempt_at is not None
    # As every outbound exchange says a timeout (it said "did not finish within 1 s").
    assert notification.log[-1]["result"] == "the mail server timed out: no answer within 1 s"


def test_an_oauth_server_that_trickles_its_token_holds_the_executor_no_longer_than_its_deadline(
    settings,
):
    """google-auth's timeout (through requests) is per read: a token trickled a byte at a
    time held the execution worker for as long as the server liked (here some 11 s past a
    deadline of 1 s). It is a transport failure at the deadline, which another attempt may
    get past."""
    HOSTILE_CLOSED.clear()
    server = HostileSlack(trickling({"access_token": "ya29.token", "expires_in": 3600}))
    settings.GOOGLE_ADS_TOKEN_URI = server.url + "token"
    settings.GOOGLE_ADS_DEADLINE = 1
    link = GoogleAdsLink(
        customer_id="1234567890",
        client_id="client",
        developer_token="dev",
        client_secret="secret",
        refresh_token="refresh",
    )
    try:
        started = time.monotonic()
        with pytest.raises(google_ads_api._Refused) as refused:
            google_ads_api.google_ads_client(link)
        took = time.monotonic() - started
    finally:
        HOSTILE_CLOSED.set()
        server.close()

    assert took < 2, f"the executor was held {took:.1f} s"
    assert refused.value.retryable
    # Reached, and trickling its answer: not "was not reached" (it said so).
    assert str(refused.value) == "Google's OAuth server timed out: no answer within 1 s"


def dropping(connection: socket.socket) -> None:
    """No answer, and the connection dropped just before a call made in a press gives up."""
    HOSTILE_CLOSED.wait(0.9)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")


def test_a_press_is_answered_within_slacks_three_seconds_when_slack_drops_each_call(
    demo_world, optimizer, hostile_slack
):
    """slack-sdk tried a call whose connection dropped once more, after a pause of its own:
    users.info, then the ephemeral message saying nothing was done, took some 6 s, and Slack
    told the person their press had failed (it had waited 3 s)."""
    proposal = submit(optimizer)
    server = hostile_slack(dropping)

    started = time.monotonic()
    answer = post_press("U0OPERATOR", "approve", proposal["id"])
    took = time.monotonic() - started

    assert answer.status_code == 200
    assert took < 3, f"answered Slack after {took:.1f} s"
    assert not Decision.objects.filter(proposal_id=proposal["id"]).exists()
    server.close()


def silent(connection: socket.socket) -> None:
    HOSTILE_CLOSED.wait(30)


def hung_up(connection: socket.socket) -> None:
    """The request read to its end (nothing more comes for a while), then the connection
    closed without a word."""
    connection.settimeout(0.3)
    try:
        while connection.recv(65536):
            pass
    except TimeoutError:
        pass


def error_page(connection: socket.socket) -> None:
    body = b"<html><body>502 Bad Gateway</body></html>"
    connection.sendall(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\nRetry-After: 30\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )


def not_http(connection: socket.socket) -> None:
    """A mail server's greeting on the port SLACK_API_URL names."""
    connection.sendall(b"220 mail.example.com ESMTP ready\r\n\r\n")


def endless_headers(connection: socket.socket) -> None:
    """A status line, then one header that never ends (past the 100 KiB read of them)."""
    connection.sendall(b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 200_000)
    HOSTILE_CLOSED.wait(5)


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        # It said "Slack could not be reached: ", and nothing after; then "Slack could not be
        # reached: no answer within 1 s", though the request had reached it.
        (silent, "Slack timed out: no answer within 1 s"),
        # It said "Slack could not be reached: RemoteProtocolError: Server disconnected …".
        (
            hung_up,
            "Slack did not answer: the connection was lost after the request was sent: "
            "it may have arrived (server disconnected without sending a response)",
        ),
        # It said "Slack refused it: Received a response in a non-JSON format:", though no
        # Slack refused it: a page of a proxy in front of it, say.
        (error_page, "Slack answered HTTP 503, with no error of its own"),
        # It said "Slack did not answer: the connection was lost after the request was sent:
        # it may have arrived (illegal status line: bytearray(b'220 …'))": no connection was
        # lost, and the words were Python's; headers without end, "(receive buffer too
        # long)" or every byte read of them, 100 KiB of a repr on the message's record.
        (
            not_http,
            "Slack answered with something other than HTTP "
            "(illegal status line: “220 mail.example.com ESMTP ready”): not read",
        ),
        (endless_headers, "Slack answered with headers longer than 100 KiB: not read"),
    ],
    ids=["silent", "hung up", "error page", "not http", "endless headers"],
)
def test_a_message_slack_did_not_answer_says_what_happened_on_its_record(
    demo_world, optimizer, hostile_slack, settings, answer, said
):
    settings.OUTBOUND_DEADLINE = 1
    held_for_a_digest()
    on_slack_only()
    submit(optimizer)
    hostile_slack(answer)

    [notification] = send_held_one_by_one()

    assert notification.status == NotificationStatus.PENDING, notification.log
    assert notification.log[-1]["result"] == said
