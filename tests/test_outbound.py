"""What the platform sends out (agents' callbacks, the webhook executor) is bounded and goes only
where it is safe: a slow or hostile endpoint holds nothing past a total deadline and delays no
execution, and no request reaches a private, loopback or link-local address."""

import io
import select
import socket
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from approvals.models import Agent, Proposal
from approvals.services.decisions import proposal_reject
from feedback.models import CallbackEvent
from hitlproject.outbound import send_signed, validate_outbound_url
from ledger.models import Account
from tests.conftest import Receiver, bid_adjustment, posted_from_page, reallocation, wait_until


class TricklingEndpoint:
    """An endpoint that takes every connection and answers one byte a second, for as long as
    it is allowed to (``hold`` seconds), as a hostile or broken receiver would."""

    def __init__(self, hold: float = 60) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.hold = hold
        self.open_connections = 0
        self.most_open_at_once = 0
        self.accepted = 0
        self.finished_trickling = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(connection,), daemon=True).start()

    def _trickle(self, connection: socket.socket) -> None:
        with self.lock:
            self.accepted += 1
            self.open_connections += 1
            self.most_open_at_once = max(self.most_open_at_once, self.open_connections)
        deadline = time.monotonic() + self.hold
        try:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                if time.monotonic() > deadline:
                    break
                connection.send(bytes([byte]))
                # A second until the next byte, unless the platform hangs up meanwhile.
                if select.select([connection], [], [], 1)[0] and not connection.recv(1):
                    break
            else:
                with self.lock:
                    self.finished_trickling += 1
        except OSError:
            pass  # the platform hung up
        finally:
            connection.close()
            with self.lock:
                self.open_connections -= 1

    def close(self) -> None:
        self.listener.close()


def test_a_refusal_whose_words_trickle_in_late_is_still_told_as_the_refusal_it_is(settings):
    """An endpoint that answers 400 late, then trickles its body: the words that came in time
    are kept, and the exchange ends within its deadline as a 400 (not retried), not "timed
    out" (retried) for the body the platform read for the refusal's words."""
    settings.OUTBOUND_DEADLINE = 1.5
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_late() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            time.sleep(1.1)  # 0.4 s of the deadline left
            connection.sendall(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 1000\r\n\r\ncampaign archived"
            )
            for _ in range(20):  # the rest, a byte at a time, slower than anyone waits
                time.sleep(0.2)
                try:
                    connection.send(b".")
                except OSError:
                    return

    threading.Thread(target=answer_late, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"

    started = time.monotonic()
    sent = send_signed(url, b"{}", secret="whsec_x", headers={})

    assert time.monotonic() - started < settings.OUTBOUND_DEADLINE + 0.5
    assert not sent.delivered and not sent.retry
    assert sent.result.startswith("HTTP 400: “campaign archived")
    listener.close()


def refusal_words(says: bytes) -> str:
    """What a 400 saying ``says`` is recorded as."""
    endpoint = Receiver(400, says=says)
    try:
        return send_signed(endpoint.url, b"{}", secret="whsec_x", headers={}).result
    finally:
        endpoint.close()


def test_a_refusal_said_whole_is_quoted_whole():
    assert refusal_words(b'{"error": "campaign archived"}') == (
        'HTTP 400: “{"error": "campaign archived"}”'
    )


def test_a_refusal_longer_than_what_is_kept_says_it_was_cut():
    """Its first 300 bytes are kept: the quote ends with "…", not as though the endpoint had
    said no more."""
    assert refusal_words(b"A" * 5000) == f"HTTP 400: “{'A' * 300}…”"


def test_a_character_the_cut_splits_is_left_out_not_shown_broken():
    """The 300th byte falls inside a three-byte character: the quote stops before it, not
    with a replacement character the endpoint never sent."""
    assert refusal_words(b"x" * 298 + "€€".encode()) == f"HTTP 400: “{'x' * 298}…”"


def test_bytes_that_are_no_text_in_a_whole_refusal_still_show_as_such():
    assert refusal_words(b"archived \xff") == "HTTP 400: “archived \ufffd”"


def test_an_endpoint_that_trickles_its_answer_is_cut_off_at_the_total_deadline(settings):
    settings.OUTBOUND_DEADLINE = 1
    endpoint = TricklingEndpoint(hold=60)

    sent = send_signed(endpoint.url, b"{}", secret="whsec_x", headers={})

    # How long it waited, said (it said "timed out").
    assert (sent.delivered, sent.retry) == (False, True)
    assert sent.result == "timed out: no answer within 1 s"
    # The platform hung up long before the endpoint would have finished answering.
    wait_until(lambda: endpoint.open_connections == 0, timeout=10)
    assert endpoint.accepted == 1 and endpoint.finished_trickling == 0
    endpoint.close()


def test_an_answer_whose_headers_never_end_is_said_so_not_in_h11_s_words():
    """Headers past the 100 KiB read (httpcore's cap): recorded as "RemoteProtocolError:
    Receive buffer too long", which told an operator nothing of what the endpoint did."""
    endpoint = Receiver(200, headers=[("X-Padding", "a" * 1024 * 1024)])
    try:
        sent = send_signed(endpoint.url, b"{}", secret="whsec_x", headers={})
    finally:
        endpoint.close()

    assert (sent.delivered, sent.retry, sent.unanswered) == (False, True, True)
    assert sent.result == "answered with headers longer than 100 KiB: not read"


def test_whether_an_answer_came_and_the_endpoint_was_reached_are_told_apart_from_words():
    """What happened is told by fields, not read back from its words (which the webhook
    executor once compared with fixed strings): an answer's status, and whether the endpoint
    was reached (answered, or sent the request and gave no answer in time) or not (nothing
    listening)."""
    answering = Receiver(200, 400)
    unused = socket.create_server(("127.0.0.1", 0))
    nobody = f"http://127.0.0.1:{unused.getsockname()[1]}/hook"
    unused.close()
    try:
        done, refused = (
            send_signed(answering.url, b"{}", secret="whsec_x", headers={}) for _ in range(2)
        )
    finally:
        answering.close()
    unreached = send_signed(nobody, b"{}", secret="whsec_x", headers={})

    assert (done.status, done.reached) == (200, True)
    assert (refused.status, refused.reached) == (400, True)
    assert (unreached.status, unreached.reached) == (None, False)
    assert unreached.result.startswith("could not connect")


class SelfSignedEndpoint:
    """An HTTPS endpoint whose certificate nobody vouches for (self-signed, as a test server
    or a misconfigured one is): it completes no handshake with a client that checks it."""

    def __init__(self, directory: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        (directory / "key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(connection, server_side=True) as secured:
                    secured.recv(65536)
                    secured.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass  # the platform refused the certificate and hung up
            finally:
                connection.close()

    def close(self) -> None:
        self.listener.close()


def test_a_certificate_refused_is_said_as_such_not_as_a_system_error(tmp_path):
    """An endpoint whose TLS certificate does not check out was recorded as "could not
    connect: operation not permitted" (OpenSSL's error number read as the system's), which
    sends an operator looking for a firewall; it says the certificate was refused, and why."""
    endpoint = SelfSignedEndpoint(tmp_path)
    try:
        sent = send_signed(endpoint.url, b"{}", secret="whsec_x", headers={})
    finally:
        endpoint.close()

    assert (sent.delivered, sent.retry, sent.reached, sent.went) == (False, True, False, False)
    assert sent.result == (
        "could not connect: its TLS certificate was refused (self-signed certificate)"
    )


def test_https_to_an_endpoint_that_speaks_no_tls_is_said_as_such():
    """An https:// URL whose port answers plain HTTP was "could not connect: operation not
    permitted" too; it says no TLS connection could be made, in OpenSSL's words."""
    endpoint = Receiver(200)
    try:
        sent = send_signed(
            endpoint.url.replace("http://", "https://"), b"{}", secret="whsec_x", headers={}
        )
    finally:
        endpoint.close()

    assert (sent.delivered, sent.went) == (False, False)
    assert (
        sent.result == "could not connect: no TLS connection could be made (wrong version number)"
    )
    assert endpoint.received == []


class RawEndpoint:
    """An endpoint that reads the request and answers with the given bytes, whatever they are
    (a mail server's greeting on a port a URL names, a broken server's status line)."""

    def __init__(self, answer: bytes) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(self.answer)
                connection.recv(1)  # until the platform hangs up

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize(
    "answer, said",
    [
        (
            b"220 mail.example.com ESMTP ready\r\n\r\n",
            "answered with something other than HTTP "
            "(illegal status line: “220 mail.example.com ESMTP ready”): not read",
        ),
        (
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            "answered with something other than HTTP "
            "(illegal header line: “no colon here”): not read",
        ),
    ],
)
def test_an_answer_that_is_no_http_is_said_as_one_not_as_a_connection_lost(answer, said):
    """An endpoint that answered something h11 cannot read as HTTP was recorded as "the
    connection was lost after the request was sent: it may have arrived (illegal status line:
    bytearray(b'220 …'))": no connection was lost, it answered, and the words were Python's
    repr. It says the endpoint answered with something that is not HTTP, and what."""
    endpoint = RawEndpoint(answer)
    try:
        sent = send_signed(endpoint.url, b"{}", secret="whsec_x", headers={})
    finally:
        endpoint.close()

    assert (sent.delivered, sent.retry, sent.unanswered, sent.reached) == (False, True, True, True)
    assert sent.result == said


def test_an_answer_whose_headers_are_within_what_is_read_is_read():
    """Headers of 64 KiB are within the 100 KiB read: an answer said to have been "longer
    than 16 KiB" had been read as far as that and more."""
    endpoint = Receiver(200, headers=[("X-Padding", "a" * 64 * 1024)])
    try:
        sent = send_signed(endpoint.url, b"{}", secret="whsec_x", headers={})
    finally:
        endpoint.close()

    assert (sent.delivered, sent.result) == (True, "HTTP 200")


@pytest.mark.parametrize(
    ("location", "said"),
    [
        (
            "http://169.254.169.254/latest/meta-data/",
            "a redirect to “http://169.254.169.254/latest/meta-data/”",
        ),
        ("http://127.0.0.1:8000/admin/", "a redirect to “http://127.0.0.1:8000/admin/”"),
        # Its own words, as an endpoint's are kept: on one line, its quotes made straight, cut.
        (
            "/x», it was carried out  " + "y" * 300,
            "a redirect to “" + ('/x", it was carried out ' + "y" * 300)[:199] + "…”",
        ),
        (None, "a redirect"),
    ],
    ids=["metadata", "admin", "hostile", "nowhere"],
)
def test_a_redirect_is_said_with_where_it_pointed_and_not_followed(location, said):
    """It was recorded "HTTP 302" alone: an operator could not tell it was a redirect, nor
    that the platform did not follow it, nor where it pointed."""
    endpoint = Receiver(302, headers=[("Location", location)] if location else [])
    try:
        sent = send_signed(endpoint.url, b"{}", secret="whsec_x", headers={})
    finally:
        endpoint.close()

    assert len(endpoint.received) == 1
    assert sent.result == f"HTTP 302 ({said}, not followed)"


PRIVATE_DESTINATIONS = [
    "http://127.0.0.1:{port}/hook",
    "http://localhost:{port}/hook",
    "http://[::1]:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",
    "http://0.0.0.0:{port}/hook",
    # IPv4 addresses carried in IPv6 ones: IPv4-compatible, NAT64, 6to4, Teredo
    "http://[::7f00:1]:{port}/hook",
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
    "http://[2002:7f00:1::]/hook",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",
    "http://192.0.0.8/hook",
    # NAT64's local-use prefix (RFC 8215) and SIIT's IPv4-translated form, which a network's
    # translator delivers to the IPv4 address inside (here the cloud's metadata service)
    "http://[64:ff9b:1::a9fe:a9fe]/latest/meta-data/",
    "http://[64:ff9b:1:fea9:fe:a900::]/latest/meta-data/",
    "http://[::ffff:0:a9fe:a9fe]/latest/meta-data/",
]


@pytest.mark.parametrize("url", PRIVATE_DESTINATIONS)
def test_private_loopback_and_link_local_destinations_are_refused_when_sending(settings, url):
    settings.OUTBOUND_ALLOW_PRIVATE = False
    receiver = Receiver(200)

    sent = send_signed(
        url.format(port=receiver.server.server_port), b"{}", secret="whsec_x", headers={}
    )

    assert not sent.delivered and not sent.retry
    assert sent.result.startswith("refused:") and "public addresses" in sent.result
    assert receiver.received == []


def test_a_name_is_resolved_and_checked_at_each_send_not_only_when_saved(settings):
    receiver = Receiver(200)
    url = f"http://localhost:{receiver.server.server_port}/hook"
    assert send_signed(url, b"{}", secret="whsec_x", headers={}).delivered  # allowed in dev

    settings.OUTBOUND_ALLOW_PRIVATE = False
    sent = send_signed(url, b"{}", secret="whsec_x", headers={})

    assert sent.result.startswith("refused: localhost (127.0.0.1) is a private")
    assert len(receiver.received) == 1


def test_a_request_to_an_ipv6_endpoint_names_its_host_in_brackets():
    try:
        receiver = Receiver(204, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")

    assert send_signed(receiver.url, b"{}", secret="whsec_x", headers={}).delivered
    assert receiver.received[0]["headers"]["Host"] == f"[::1]:{receiver.server.server_port}"


def test_an_endpoint_s_retry_after_is_read_as_seconds_or_as_a_date():
    in_90_seconds = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    for status, header, low, high in [
        (429, "120", 120, 120),
        (503, in_90_seconds, 88, 90),
        (503, "soon", None, None),  # not understood: the usual backoff
        (503, "²", None, None),  # a digit to Python's str.isdigit, not a number of seconds
    ]:
        endpoint = Receiver(status, retry_after=header)
        try:
            sent = send_signed(endpoint.url, b"{}", secret="s", headers={})
        finally:
            endpoint.close()
        assert (sent.delivered, sent.retry, sent.result) == (False, True, f"HTTP {status}")
        if low is None:
            assert sent.retry_after is None
        else:
            assert low <= sent.retry_after <= high


def test_other_schemes_are_refused(settings):
    settings.OUTBOUND_ALLOW_PRIVATE = False
    for url in ("ftp://example.com/hook", "file:///etc/passwd", "gopher://example.com/"):
        sent = send_signed(url, b"{}", secret="whsec_x", headers={})
        assert not sent.delivered and sent.result.startswith("refused:")


def test_port_zero_is_refused_not_sent_to_the_scheme_s_port(settings):
    """``http://host:0/`` was saved, and its requests went to port 80: the port it names
    is none a request can go to (helper-94)."""
    settings.OUTBOUND_ALLOW_PRIVATE = True
    sent = send_signed("http://127.0.0.1:0/hook", b"{}", secret="whsec_x", headers={})
    assert (sent.delivered, sent.retry) == (False, False)
    assert sent.result == "refused: 'http://127.0.0.1:0/hook' has an invalid port."
    with pytest.raises(ValidationError, match="has an invalid port"):
        validate_outbound_url("http://1.1.1.1:0/hook")


@pytest.mark.django_db
def test_a_private_callback_url_or_execution_endpoint_is_refused_when_saved(demo_world, settings):
    settings.OUTBOUND_ALLOW_PRIVATE = False
    get_user_model().objects.create_superuser("admin", password="not-a-demo-password")
    admin = Client()
    admin.force_login(get_user_model().objects.get(username="admin"))
    agent = Agent.objects.get(name="optimizer")
    account = Account.objects.get(external_id="demo")

    page = posted_from_page(
        admin,
        reverse("admin:approvals_agent_change", args=[agent.pk]),
        {
            "name": agent.name,
            "kind": agent.kind,
            "is_active": "on",
            "accounts": [account.pk],
            "callback_url": "http://169.254.169.254/latest/meta-data/",
        },
    )
    assert page.status_code == 200  # the form again, with the error
    assert "a private, loopback or reserved address" in page.text
    page = posted_from_page(
        admin,
        reverse("admin:ledger_account_change", args=[account.pk]),
        {"execution_endpoint": "http://[::1]:9000/execute", "max_total_daily_budget": ""},
    )
    assert "a private, loopback or reserved address" in page.text
    agent.refresh_from_db()
    account.refresh_from_db()
    assert agent.callback_url == "" and account.execution_endpoint == ""

    with pytest.raises(CommandError, match="private, loopback or reserved"):
        call_command(
            "create_agent", "scout", "--kind", "research", "--account", "demo",
            "--callback-url", "http://127.0.0.1:8000/hook", stdout=io.StringIO(),
        )  # fmt: skip
    assert not Agent.objects.filter(name="scout").exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_slow_callback_endpoint_delays_no_execution(celery_worker, demo_world, optimizer):
    """Callbacks to an endpoint that trickles its answers hold the agent's callback requests;
    every approved action still executes while those callbacks are stuck.

    The callbacks are stuck first (two rejections' events, as many requests as one
    agent's receiver is given at once), then the actions proposed: the executions cannot
    come before the callbacks they are to outrun, as they could when both began at once
    (a callback worker slow to start under load had not connected yet when all three had
    executed)."""
    endpoint = TricklingEndpoint(hold=25)
    Agent.objects.filter(name="optimizer").update(callback_url=endpoint.url)
    operator = get_user_model().objects.get(username="operator")
    for amount in ["250.00", "260.00"]:  # each rejected: one callback each, nothing executes
        response = optimizer.post("/api/v1/proposals/", reallocation(amount), format="json")
        assert response.status_code == 201 and response.json()["status"] == "pending_review"
        proposal_reject(
            proposal_id=response.json()["id"], reviewer=operator, reason_code="too_aggressive"
        )
    wait_until(lambda: endpoint.open_connections == 2, interval=0.01)
    campaigns = ["brand-search", "generic-search", "display-retarget"]
    bids = {"brand-search": "2.02", "generic-search": "1.51", "display-retarget": "0.81"}

    ids = []
    for campaign in campaigns:  # each 1%: auto-approved, two callbacks each
        response = optimizer.post(
            "/api/v1/proposals/", bid_adjustment(bids[campaign], campaign), format="json"
        )
        assert response.status_code == 201
        ids.append(response.json()["id"])

    wait_until(lambda: Proposal.objects.filter(pk__in=ids, status="executed").count() == 3)
    assert endpoint.open_connections > 0  # the callbacks are still being trickled to
    assert endpoint.finished_trickling == 0
    # Each is cut off at the deadline; stop the retries before the test ends.
    endpoint.close()
    wait_until(lambda: endpoint.open_connections == 0, timeout=40)
    CallbackEvent.objects.update(status="failed")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_slow_channel_endpoint_delays_no_other_account_s_channel(
    celery_worker, demo_world, optimizer
):
    slow = TricklingEndpoint(hold=25)
    demo = Account.objects.get(external_id="demo")
    other = Account.objects.create(
        external_id="other", name="Other", channel="meta", currency="USD"
    )
    for campaign in demo.campaigns.all():
        campaign.pk, campaign.account = None, other
        campaign.save()
    Agent.objects.get(name="optimizer").accounts.add(other)
    Account.objects.filter(pk=demo.pk).update(execution_endpoint=slow.url)

    # More actions for the slow channel than there are webhook workers (4 in the tests), each
    # on a field of its own (a second change of one field would wait for a person).
    on_slow_channel = [
        optimizer.post(
            "/api/v1/proposals/",
            bid_adjustment(action_type=action_type)
            | {"payload": {"campaign": campaign, field: value}},
            format="json",
        ).json()["id"]
        for action_type, field, values in [
            ("bid_adjustment", "new_bid", ["2.02", "1.51", "0.81"]),
            ("budget_change", "new_daily_budget", ["1010.00", "505.00", "303.00"]),
        ]
        for campaign, value in zip(
            ["brand-search", "generic-search", "display-retarget"], values, strict=True
        )
    ]
    assert len(on_slow_channel) == 6
    wait_until(lambda: slow.accepted >= 2)
    fast = Receiver(200)
    Account.objects.filter(pk=other.pk).update(execution_endpoint=fast.url)
    on_fast_channel = optimizer.post(
        "/api/v1/proposals/", bid_adjustment("2.02", "brand-search", account="other"), format="json"
    ).json()["id"]

    wait_until(lambda: Proposal.objects.get(pk=on_fast_channel).status == "executed")
    assert len(fast.received) == 1
    assert slow.open_connections > 0  # still trickling
    # The slow endpoint is given two requests at a time, never every worker.
    assert slow.most_open_at_once == settings.WEBHOOK_REQUESTS_PER_ACCOUNT == 2
    # Cut off at the deadline, then refused on every retry: each fails before the test ends.
    slow.close()
    wait_until(
        lambda: Proposal.objects.filter(pk__in=on_slow_channel, status="failed").count() == 6,
        timeout=120,
    )


@pytest.mark.django_db
def test_a_private_address_refused_outside_production_says_how_a_developer_allows_one(
    demo_world, settings
):
    """``create_agent X --callback-url http://127.0.0.1:18737/cb`` on a developer's laptop said
    "127.0.0.1 is a private, loopback or reserved address; the platform sends only to public
    addresses." and no word of how to reach a receiver on their own machine. It says so now,
    in the console's form as in the command (one refusal); in production the refusal stays
    as it was, suggesting no way around it."""
    settings.OUTBOUND_ALLOW_PRIVATE = False
    create = (
        "create_agent", "X", "--kind", "optimization", "--account", "demo",
        "--callback-url", "http://127.0.0.1:18737/cb",
    )  # fmt: skip
    with pytest.raises(CommandError) as refused:
        call_command(*create, stdout=io.StringIO(), stderr=io.StringIO())
    assert str(refused.value) == (
        "127.0.0.1 is a private, loopback or reserved address; the platform sends only to "
        "public addresses. To send to an endpoint on your own machine while developing, set "
        "HITL_OUTBOUND_ALLOW_PRIVATE=1 in the environment the platform runs in (its web "
        "server, its workers and manage.py commands alike); never in production."
    )
    get_user_model().objects.create_superuser("admin", password="not-a-demo-password")
    admin = Client()
    admin.force_login(get_user_model().objects.get(username="admin"))
    account = Account.objects.get(external_id="demo")
    page = posted_from_page(
        admin,
        reverse("admin:ledger_account_change", args=[account.pk]),
        {"execution_endpoint": "http://[::1]:9000/execute", "max_total_daily_budget": ""},
    )
    assert "set HITL_OUTBOUND_ALLOW_PRIVATE=1 in the environment" in page.text

    settings.PRODUCTION = True
    with pytest.raises(CommandError) as refused:
        call_command(*create, stdout=io.StringIO(), stderr=io.StringIO())
    assert str(refused.value) == (
        "127.0.0.1 is a private, loopback or reserved address; the platform sends only to "
        "public addresses."
    )
    assert not Agent.objects.filter(name="X").exists()
    account.refresh_from_db()
    assert account.execution_endpoint == ""
