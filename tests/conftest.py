import email
import email.policy
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from approvals.models import Agent, Execution
from approvals.services.lifecycle import proposal_lock
from executors.models import GoogleAdsCampaign, GoogleAdsLink
from hitlproject import broker
from hitlproject.celery import app as celery_app
from hitlproject.pooled_sqlite3.base import _Turns
from ledger.models import Account, Campaign
from notifications.models import ReachedBy
from tests import slack_fake
from tests.google_ads_fake import CUSTOMER, PLACES, SECRETS, FakeGoogleAds

REPO = Path(__file__).resolve().parent.parent
SESSION_QUEUE = f"hitl-test-{uuid.uuid4().hex[:8]}"
T = TypeVar("T")
WORKER_RUNNING = False  # the session's worker (``celery_worker``) has started


@pytest.fixture(scope="session", autouse=True)
def isolated_task_queue(tmp_path_factory) -> str:
    """Each test session sends its tasks to a queue of its own, on a broker folder of its own."""
    celery_app.conf.task_default_queue = SESSION_QUEUE
    if celery_app.conf.broker_url.startswith(broker.SCHEME):
        broker_dir = tmp_path_factory.mktemp("broker")
        for folder in ("queue", "processed", "control"):
            (broker_dir / folder).mkdir()
        celery_app.conf.broker_transport_options = {
            **celery_app.conf.broker_transport_options,
            "data_folder_in": str(broker_dir / "queue"),
            "data_folder_out": str(broker_dir / "queue"),
            "processed_folder": str(broker_dir / "processed"),
            "control_folder": str(broker_dir / "control"),
        }
        os.environ["HITL_BROKER_DIR"] = str(broker_dir)
    return SESSION_QUEUE


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def demo_credentials_file(settings, tmp_path) -> Path:
    """Where seed_demo keeps what it printed: the test's own, not the developer's var/."""
    settings.DEMO_CREDENTIALS_FILE = tmp_path / "demo-credentials.json"
    return settings.DEMO_CREDENTIALS_FILE


def database_url(db: dict) -> str:
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


class MailServer:
    """A real SMTP server (aiosmtpd) on a local port, keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        server = self

        class Keeping:
            async def handle_DATA(self, smtp_server, session, envelope):
                parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
                parsed["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
                server.messages.append(parsed)
                return "250 Message accepted for delivery"

        self.controller = Controller(Keeping(), hostname="127.0.0.1", port=free_port())
        self.controller.start()
        self.port = self.controller.port

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in list(self.messages) if address in m["X-Envelope-To"]]


@pytest.fixture(scope="session")
def mail_server() -> Iterator[MailServer]:
    """The SMTP server the tests' worker sends email to (EMAIL_HOST, EMAIL_PORT)."""
    server = MailServer()
    yield server
    server.controller.stop()


@pytest.fixture
def mailbox(mail_server) -> MailServer:
    """The session's SMTP server, emptied for this test."""
    mail_server.messages.clear()
    return mail_server


@pytest.fixture(scope="session")
def slack_server() -> Iterator[slack_fake.SlackServer]:
    """The Slack-compatible Web API the tests' worker and web process call (SLACK_API_URL)."""
    server = slack_fake.SlackServer()
    yield server
    server.close()


@pytest.fixture
def slack(slack_server, settings) -> slack_fake.SlackServer:
    """The session's Slack, emptied for this test, and this process's settings pointing at it."""
    slack_server.clear()
    settings.SLACK_API_URL = slack_server.url
    settings.SLACK_BOT_TOKEN = slack_fake.TOKEN
    settings.SLACK_SIGNING_SECRET = slack_fake.SIGNING_SECRET
    return slack_server


@pytest.fixture
def on_slack(demo_world, slack, channel):
    """The operator chose to be told on Slack; the demo's channel endpoint executes."""
    channel(200)
    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.update_or_create(user=operator, defaults={"slack": True, "email": False})
    return slack


@pytest.fixture(scope="session")
def google_ads_server() -> Iterator[FakeGoogleAds]:
    """The Google Ads (gRPC) and OAuth token endpoint the tests' worker calls."""
    fake = FakeGoogleAds(
        customer_id=CUSTOMER,
        developer_token=SECRETS["developer_token"],
        refresh_token=SECRETS["refresh_token"],
    )
    fake.endpoints = fake.start()
    yield fake
    fake.stop()


def google_ads_holds_demo_campaigns(fake: FakeGoogleAds) -> list[tuple[Campaign, int, int]]:
    """``fake`` holding the demo ledger's campaigns as the ledger has them; each campaign with
    its campaign id and ad group id there."""
    placed = []
    for campaign in Campaign.objects.filter(account__external_id="demo"):
        campaign_id, budget_id, ad_group_id = PLACES[campaign.external_id]
        fake.add_campaign(
            campaign_id=campaign_id,
            budget_id=budget_id,
            amount_micros=int(campaign.daily_budget * 1_000_000),
            ad_group_id=ad_group_id,
            cpc_bid_micros=int(campaign.bid * 1_000_000),
        )
        placed.append((campaign, campaign_id, ad_group_id))
    return placed


def link_demo_account(fake: FakeGoogleAds) -> None:
    """The demo account linked to ``fake``, whose campaigns become the ledger's."""
    account = Account.objects.get(external_id="demo")
    GoogleAdsLink.objects.create(
        account=account, customer_id=CUSTOMER, client_id="client-id.apps", **SECRETS
    )
    for campaign, campaign_id, ad_group_id in google_ads_holds_demo_campaigns(fake):
        GoogleAdsCampaign.objects.create(
            campaign=campaign,
            google_campaign_id=campaign_id,
            google_ad_group_id=ad_group_id,
            final_url="https://example.com/",
            extra_headline="Free 30-day trial",
            extra_description="Set up in minutes. Cancel any time.",
        )


@pytest.fixture
def linked_google_ads(google_ads_server, demo_world, settings) -> FakeGoogleAds:
    """The worker's Google Ads, holding the demo ledger's campaigns, the demo account linked
    to it (this process's settings pointing at it too)."""
    google_ads_server.clear()
    settings.GOOGLE_ADS_API_ENDPOINT, settings.GOOGLE_ADS_TOKEN_URI = google_ads_server.endpoints
    link_demo_account(google_ads_server)
    return google_ads_server


@pytest.fixture(scope="session")
def celery_worker(
    request,
    django_db_setup,
    isolated_task_queue,
    tmp_path_factory,
    mail_server,
    slack_server,
    google_ads_server,
) -> Iterator[None]:
    """A real Celery worker process, on the test database and this session's queue.

    Once started it serves the rest of the session. A transactional test (whose commits send
    tasks) must therefore use it, and its teardown waits for what it sent to finish
    (``worker_settled``): a task still running when the test database is emptied would write
    to it after the flush, or hold the flush up (``tests.postgresql_emptied_by_delete``)."""
    global WORKER_RUNNING
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "HITL_CELERY_QUEUE": isolated_task_queue,
        "HITL_CALLBACK_RETRY_SECONDS": "0.2",  # retries a test can wait for
        "HITL_WEBHOOK_RETRY_SECONDS": "0.2",
        "HITL_OUTBOUND_ALLOW_PRIVATE": "1",  # the tests' endpoints are on this machine
        "HITL_OUTBOUND_DEADLINE_SECONDS": "3",  # slow endpoints a test can wait out
        "CELERY_CONCURRENCY": "2",
        "HITL_WEBHOOK_CONCURRENCY": "4",
        "HITL_CALLBACK_CONCURRENCY": "4",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(mail_server.port),
        "HITL_NOTIFICATION_RETRY_SECONDS": "0.2",
        "SLACK_API_URL": slack_server.url,
        "SLACK_BOT_TOKEN": slack_fake.TOKEN,
        "SLACK_SIGNING_SECRET": slack_fake.SIGNING_SECRET,
        "GOOGLE_ADS_API_ENDPOINT": google_ads_server.endpoints[0],
        "GOOGLE_ADS_TOKEN_URI": google_ads_server.endpoints[1],
        "GOOGLE_ADS_DEADLINE": "5",
    }
    with open(log_path, "w") as log:
        # As production runs it (the Procfile's worker): a worker for each queue.
        worker = subprocess.Popen(
            [str(REPO / "bin" / "worker")],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while log_path.read_text().count("ready.") < 3:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"The Celery workers did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        WORKER_RUNNING = True
        yield
    finally:
        WORKER_RUNNING = False
        worker.terminate()  # bin/worker asks each of its workers to stop
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        # A failure that waited on the worker is read with what the worker said (in CI too).
        if os.environ.get("HITL_TEST_SHOW_WORKER_LOG") or request.session.testsfailed:
            title = f"the Celery workers' log ({log_path}), last 200 lines"
            lines = "\n".join(log_path.read_text().splitlines()[-200:])
            plugins = request.config.pluginmanager
            with plugins.get_plugin("capturemanager").global_and_fixture_disabled():
                if hasattr(request.config, "workerinput"):
                    # One of bin/test's parallel processes: its stderr is the run's terminal.
                    sys.stderr.write(f"\n{' ' + title + ' ':=^100}\n{lines}\n")
                else:
                    terminal = plugins.get_plugin("terminalreporter")
                    terminal.section(title)
                    terminal.write_line(lines)


@pytest.fixture(autouse=True)
def private_destinations_allowed(settings) -> None:
    """The tests' endpoints (``Receiver``) listen on this machine, as a developer's would; the
    tests of the destination check turn this off."""
    settings.OUTBOUND_ALLOW_PRIVATE = True


@pytest.fixture(autouse=True)
def notifications_sent_before_teardown(request) -> Iterator[None]:
    """A test that uses the worker leaves it nothing to send when it ends. Every proposal of
    the demo account that waits for a person is told to the operators (seed_demo's route), so
    most such tests leave messages on their way, which the test itself never waits for; a
    worker still writing them when the database is emptied holds the flush up."""
    marker = request.node.get_closest_marker("django_db")
    transactional = (marker is not None and marker.kwargs.get("transaction")) or {
        "transactional_db",
        "live_server",
    } & set(request.fixturenames)
    uses_database = marker is not None or transactional or "db" in request.fixturenames
    # Once the session's worker runs, any test that commits may have sent it work.
    uses_worker = "celery_worker" in request.fixturenames or (WORKER_RUNNING and transactional)
    if not (uses_worker and uses_database):
        yield
        return
    # The database set up before this fixture, so that it is emptied only after the wait.
    request.getfixturevalue("transactional_db" if transactional else "db")
    yield
    from notifications.models import Notification, NotificationStatus

    # At most 15 s: what is still pending then is the test's own to judge.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        soon = timezone.now() + timedelta(seconds=2)
        if not Notification.objects.filter(
            status=NotificationStatus.PENDING, next_attempt_at__lte=soon
        ).exists():
            break
        time.sleep(0.1)
    if transactional:
        worker_settled()


def worker_settled(timeout: float = 10) -> None:
    """Wait, at most ``timeout`` seconds, until the session's workers run and hold no task
    (what the test's commits sent and it never waited for: an execution, a callback, a Slack
    update, and what each of those sends on) and, at the same moment, no other session on the
    test database is running a statement or holds a transaction open (a web server's
    request). The workers are asked before and after the database is looked at: a task the
    worker took between two looks, or one between two of its transactions (waiting on Slack,
    say), left the database idle for a moment, and its next transaction was open at the flush.

    What is still under way then is left to the flush, which never waits for a table while
    holding another (``tests.postgresql_emptied_by_delete``): it waits for it to end."""
    if connection.vendor != "postgresql":
        return

    def workers_idle() -> bool:
        return not WORKER_RUNNING or workers_without_tasks()

    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:

        def database_idle() -> bool:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
            )
            return not cursor.fetchone()[0]

        while time.monotonic() < deadline:
            if workers_idle() and database_idle() and workers_idle():
                return
            time.sleep(0.05)


def workers_without_tasks() -> bool:
    """Whether each of the session's workers (bin/worker's three, ``celery_worker``) answers
    that it runs no task and holds none it took from its queue. A task due later (a retry's
    countdown, a channel's "come back in ten minutes") is not waited for: some come back every
    second or so while a lease runs out."""
    queue, host = celery_app.conf.task_default_queue, socket.gethostname()
    workers = [f"{queue}{kind}@{host}" for kind in ("", ".webhooks", ".callbacks")]
    inspect = celery_app.control.inspect(destination=workers, timeout=1.0, limit=len(workers))
    replies = [inspect.active(), inspect.reserved()]
    if any(reply is None or len(reply) < len(workers) for reply in replies):
        return False  # one that did not answer in time may be busy
    return not any(tasks for reply in replies for tasks in reply.values())


def wait_until(condition: Callable[[], object], timeout: float = 30, interval: float = 0.1):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {condition}")
        time.sleep(interval)


def first_attempt_answered(proposal_id: int) -> None:
    """Wait until the worker's first channel attempt at the proposal has its answer recorded
    (and with it the round's next due time): a test that then brings the next attempt forward
    is not overtaken by the first attempt's backoff, written after it."""
    answered = Execution.objects.filter(proposal_id=proposal_id, finished_at__isnull=False)
    wait_until(answered.exists, timeout=15)


def sessions_waiting_for_a_lock() -> int:
    """How many sessions of this test database wait for a lock (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def run_at_once_while_held(held: str, *runs: Callable[[], None]) -> None:
    """Each of ``runs`` in a thread of its own (with its own connection, closed after), all
    started while a third session holds what the statement ``held`` locks, each once the one
    before waits for it (PostgreSQL grants a lock in the order it was asked): once every one
    waits, it is let go, and they go on at once, in that order (PostgreSQL)."""
    holder = connections.create_connection("default")
    holder.set_autocommit(False)

    def run(each: Callable[[], None]) -> None:
        try:
            each()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(each,)) for each in runs]
    try:
        with holder.cursor() as cursor:
            cursor.execute(held)
        for waiting, thread in enumerate(threads, start=1):
            thread.start()
            wait_until(lambda waiting=waiting: sessions_waiting_for_a_lock() == waiting)
    finally:
        holder.rollback()
        holder.close()
        for thread in threads:
            if thread.ident is not None:  # started (a run that never waited stops the rest)
                thread.join()


def workers_idle(task: str, within: float = 120) -> bool:
    """Whether the session's workers run, hold or await no ``task`` (a name) due within
    ``within`` seconds: one an earlier test left (a delivery's retry, its look for what may be
    left) would start meanwhile, as any task would. Other tasks (an update of a Slack message
    retried for a day, say) are let be."""
    inspect = celery_app.control.inspect(timeout=1.0)
    soon = time.time() + within
    running = [
        request
        for replies in (inspect.active(), inspect.reserved())
        for requests in (replies or {}).values()
        for request in requests
    ]
    scheduled = [
        entry
        for entries in (inspect.scheduled() or {}).values()
        for entry in entries
        if datetime.fromisoformat(entry["eta"]).timestamp() < soon
    ]
    return not any(request["name"] == task for request in running) and not any(
        entry["request"]["name"] == task for entry in scheduled
    )


def done_while_the_proposal_is_held(
    proposal_id: int, work: Callable[[], T], meanwhile: Callable[[], object]
) -> T:
    """``work()`` in a thread of its own, started while another transaction holds the
    proposal's row lock (as a decision, a claim or a Slack update holds it); once ``work``
    waits for that lock, the holding transaction does ``meanwhile()`` and commits."""
    return done_while_held(lambda: proposal_lock(proposal_id), work, meanwhile)


def done_while_held(
    take: Callable[[], object], work: Callable[[], T], meanwhile: Callable[[], object] = bool
) -> T:
    """``work()`` in a thread of its own, started while another transaction has done
    ``take()`` (taken a row's lock, or changed a row and not committed); once ``work`` waits
    for a lock that transaction holds, it does ``meanwhile()`` and commits. Returns what
    ``work`` returned (raises what it raised). Waits on the lock itself, never a time."""
    held, let_go = threading.Event(), threading.Event()
    outcome: dict = {}

    def hold() -> None:
        try:
            with transaction.atomic():
                take()
                held.set()
                let_go.wait(timeout=60)
                meanwhile()
        except BaseException as error:
            outcome["holder"] = error
        finally:
            held.set()
            connection.close()

    def run() -> None:
        try:
            connection.ensure_connection()
            if connection.vendor == "postgresql":
                outcome["backend"] = connection.connection.info.backend_pid
            outcome["work"] = work()
        except BaseException as error:
            outcome["error"] = error
        finally:
            connection.close()

    holder, worker = threading.Thread(target=hold), threading.Thread(target=run)
    holder.start()
    held.wait(timeout=60)
    worker.start()
    try:
        wait_until(lambda: waits_for_a_lock(worker, outcome.get("backend")), interval=0.01)
    finally:
        let_go.set()
        holder.join()
        worker.join()
    if "holder" in outcome:
        raise outcome["holder"]
    if "error" in outcome:
        raise outcome["error"]
    return outcome["work"]


def waits_for_a_lock(thread: threading.Thread, backend: int | None) -> bool:
    """Whether ``thread`` waits for a lock another transaction holds: on PostgreSQL, its
    session (``backend``) waits for a lock; on SQLite, it waits for its turn to write
    (``hitlproject.pooled_sqlite3``), which the holder's transaction has."""
    if connection.vendor == "postgresql":
        if backend is None:
            return False
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [backend]
            )
            row = cursor.fetchone()
        return bool(row and row[0])
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code is _Turns.take.__code__:
            return True
        frame = frame.f_back
    return False


def connections_to(url: str) -> int:
    """Open TCP connections (established) to ``url``'s port, as the kernel lists them."""
    port = f"{int(url.rsplit(':', 1)[1]):04X}"
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[2].endswith(f":{port}") and row[3] == "01")


@pytest.fixture
def demo_world(db) -> dict:
    """The spec's reference world, built by ``seed_demo --json``: logins and agents' keys."""
    out = io.StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def login(demo_world) -> Callable[[str], Client]:
    """A browser session of one of the demo users (operator, policy-owner, auditor)."""

    def as_user(username: str) -> Client:
        credentials = demo_world["users"][username]
        user = get_user_model().objects.get(username=credentials["username"])
        assert user.check_password(credentials["password"])
        # Client.login() authenticates without a request, which the login lockout
        # (django-axes) refuses; the login page itself is tested in test_console_login.py.
        client = Client()
        client.force_login(user)
        return client

    return as_user


def posted_from_page(client: Client, url: str, data: dict, **extra):
    """``data`` posted to a console change page (``url``) as its form posts it: with the
    version of the record the page showed (its hidden ``seen_version``), read from the page
    first, as a browser has it. A change that names no version is refused."""
    shown = client.get(url).context["adminform"].form["seen_version"].value()
    return client.post(url, {**data, "seen_version": shown}, **extra)


def seen_on_page(client: Client, proposal_id: int) -> str:
    """What a proposal's page, as ``client``'s person reads it now, sends with each decision
    made on it: the action as the page shows it (its forms' hidden ``seen``)."""
    page = client.get(reverse("admin:approvals_proposal_change", args=[proposal_id]))
    assert page.status_code == 200, page.status_code
    return page.context["seen"]


def decided_from_page(client: Client, act: str, proposal_id: int, data=None, **extra):
    """A decision (``act``: approve, edit-approve, reject, withdraw) posted as the proposal's
    page posts it: with the action as the page showed it, read from the page first, as a
    browser has it (``seen_on_page``). A decision that does not say so is refused."""
    return client.post(
        reverse(f"admin:approvals_proposal_{act}", args=[proposal_id]),
        {**(data or {}), "seen": seen_on_page(client, proposal_id)},
        **extra,
    )


def seen_on_confirmation(page) -> dict[str, str]:
    """What a bulk decision's confirmation page sends with its confirmation: each proposal as
    the page shows it (its hidden ``seen-<id>``)."""
    return {f"seen-{proposal.pk}": proposal.seen for proposal in page.context["proposals"]}


def confirmed_from_page(client: Client, url: str, data: dict, **extra):
    """A bulk decision confirmed as its confirmation page posts it: the selection in ``data``
    (its action and proposals) posted to the queue at ``url`` first, for that page, then
    ``data`` with what the page sends (``seen_on_confirmation``)."""
    selection = {name: data[name] for name in ("action", "_selected_action") if name in data}
    page = client.post(url, selection)
    assert page.status_code == 200, page.status_code
    return client.post(url, {**data, **seen_on_confirmation(page)}, **extra)


@pytest.fixture
def operators(demo_world) -> tuple:
    """The demo operator and a second operator with the same groups, for two-person rules."""
    users = get_user_model().objects
    first = users.get(username="operator")
    second = users.create_user("second-operator", is_staff=True)
    second.groups.set(first.groups.all())
    return first, second


@pytest.fixture
def agent_client(demo_world) -> Callable[[str], APIClient]:
    def client_for(agent_name: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {demo_world['agents'][agent_name]}")
        return client

    return client_for


@pytest.fixture
def optimizer(agent_client) -> APIClient:
    return agent_client("optimizer")


def reallocation(amount: str = "280.00", **overrides) -> dict:
    """The reference scenario's proposal: move part of brand-search's budget to generic-search."""
    return {
        "action_type": "budget_reallocation",
        "account": "demo",
        "payload": {
            "from_campaign": "brand-search",
            "to_campaign": "generic-search",
            "amount": amount,
        },
        "rationale": "generic-search converts at 2.3x brand-search's rate this week.",
        "supporting_data": {"conversion_rate": {"brand-search": [0.021, 0.019, 0.018]}},
        "confidence": 0.82,
        **overrides,
    }


# A 20% bid raise on each demo campaign: independent proposals, each for a person to decide.
BID_RAISES = {"brand-search": "2.40", "generic-search": "1.80", "display-retarget": "0.96"}


def bid_adjustment(new_bid: str = "2.12", campaign: str = "brand-search", **overrides) -> dict:
    return {
        "action_type": "bid_adjustment",
        "account": "demo",
        "payload": {"campaign": campaign, "new_bid": new_bid},
        "rationale": "CPC below target for five days.",
        "confidence": 0.9,
        **overrides,
    }


def target_cpa_strategy(campaign: str = "generic-search", target_cpa: str = "25.00") -> dict:
    """A strategy change to bid for conversions at a target CPA (generic-search has none set)."""
    changes = {"bidding_strategy": "target_cpa", "target_cpa": target_cpa}
    return bid_adjustment(
        action_type="strategy_change",
        rationale="Enough conversions to bid for them.",
        confidence=0.8,
        payload={"campaign": campaign, "changes": changes},
    )


def creative(headline="Search smarter", body="Find what you need, fast.", cta="Try it") -> dict:
    return {"headline": headline, "body": body, "call_to_action": cta}


def creative_batch(*creatives: dict) -> dict:
    """A batch of creatives for display-retarget; by default one whose body makes a promise
    the demo brand guidelines ban ("guaranteed")."""
    creatives = creatives or (creative(body="Guaranteed results in a week."),)
    return bid_adjustment(action_type="creative_deployment") | {
        "payload": {"campaign": "display-retarget", "creatives": list(creatives)}
    }


# In a Receiver's statuses, instead of an HTTP status: the request read whole and kept, then
# the connection closed without a word (``HANG_UP``), or reset (``RESET``): an endpoint that
# may have acted on it, whose answer was lost.
HANG_UP = 0
RESET = -1


class Receiver:
    """An HTTP endpoint on localhost (an agent's callback URL, a channel's execution
    endpoint) that answers with the given statuses in turn (the last one repeats) and keeps
    what it was sent; ``HANG_UP`` or ``RESET`` among them loses the connection instead of
    answering."""

    def __init__(
        self,
        *statuses: int,
        host: str = "127.0.0.1",
        hold: threading.Event | None = None,
        retry_after: str | None = None,
        says: bytes = b"",
        answers: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """``hold``: each answer waits until it is set (at most 2 s, within the outbound
        deadline the tests' worker has), as a slow endpoint does; ``retry_after``: the
        ``Retry-After`` every answer other than a 2xx carries; ``says``: the body of every
        answer other than a 2xx; ``answers``: the body of every 2xx; ``headers``: sent with
        every answer, as they are (a name given twice is sent twice)."""
        self.statuses = list(statuses) or [200]
        self.received: list[dict] = []
        # Done once, in the endpoint's thread, while its first request is under way (a
        # policy owner engaging a kill switch, say), before it answers; and while its later
        # ones are, each the one it is given for (its number, from 2).
        self.while_first_request: Callable[[], None] | None = None
        self.while_later_requests: dict[int, Callable[[], None]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                number = len(receiver.received) + 1
                meanwhile = (
                    receiver.while_first_request
                    if number == 1
                    else receiver.while_later_requests.get(number)
                )
                if meanwhile:
                    try:
                        meanwhile()
                    finally:
                        connection.close()  # this thread's own
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"headers": dict(self.headers), "body": body})
                if hold is not None:
                    hold.wait(timeout=2)
                statuses = receiver.statuses
                status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
                if status in (HANG_UP, RESET):
                    if status == RESET:  # closed at once with a TCP reset, not a FIN
                        self.connection.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        self.connection.close()
                    self.close_connection = True
                    return
                self.send_response(status)
                if retry_after is not None and not 200 <= status < 300:
                    self.send_header("Retry-After", retry_after)
                for name, value in headers:
                    self.send_header(name, value)
                answer = answers if 200 <= status < 300 else says
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        server_class = type(
            "Server",
            (ThreadingHTTPServer,),
            {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET},
        )
        self.server = server_class((host, 0), Handler)
        named = f"[{host}]" if ":" in host else host
        self.url = f"http://{named}:{self.server.server_port}/hitl-events"
        # Its shutdown (``close``) waits for the serving loop to look again: every 0.5 s by
        # default, a quarter of a second lost at the end of each test that has one.
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def events(self) -> list[dict]:
        return [json.loads(request["body"]) for request in self.received]

    def close(self) -> None:
        """Stop answering and stop listening: what is still sent here is refused at once,
        rather than left to wait out its deadline on a socket nobody serves."""
        self.server.shutdown()
        self.server.server_close()


def procfile_command(name: str) -> str:
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"The Procfile names no {name} process")


def embedded_env(folder: Path, **extra: str) -> dict[str, str]:
    """This environment as a process of the embedded default sees it, in its own data folder:
    no PostgreSQL, Redis or queue of the session's, and this interpreter's tools first."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "HITL_CELERY_QUEUE", "WEB_CONCURRENCY")
    }
    return {
        **env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HITL_DATA_DIR": str(folder),
        **extra,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def channel(demo_world) -> Iterator[Callable[..., "Receiver"]]:
    """The demo account's channel endpoint, answering with the statuses given in turn."""
    endpoints: list[Receiver] = []

    def answering(
        *statuses: int,
        retry_after: str | None = None,
        says: bytes = b"",
        answers: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> Receiver:
        endpoint = Receiver(
            *statuses, retry_after=retry_after, says=says, answers=answers, headers=headers
        )
        endpoints.append(endpoint)
        # Saved with its history, as the console saves it: verification names a live row
        # its history does not hold.
        account = Account.objects.get(external_id="demo")
        account.execution_endpoint = endpoint.url
        account.save()
        return endpoint

    yield answering
    for endpoint in endpoints:
        endpoint.close()


@pytest.fixture
def callback_endpoint(demo_world) -> Iterator[Callable[..., "Receiver"]]:
    """The optimizer's callback URL: an endpoint answering with the statuses given in turn."""
    endpoints: list[Receiver] = []

    def listening(
        *statuses: int, retry_after: str | None = None, headers: Sequence[tuple[str, str]] = ()
    ) -> Receiver:
        endpoint = Receiver(*statuses, retry_after=retry_after, headers=headers)
        endpoints.append(endpoint)
        # Saved with its history, as the console saves it: verification names a live row
        # its history does not hold.
        agent = Agent.objects.get(name="optimizer")
        agent.callback_url = endpoint.url
        agent.save(update_fields=["callback_url"])
        return endpoint

    yield listening
    for endpoint in endpoints:
        endpoint.close()


def log_time_said(value: str) -> str:
    """A time of an outbox's log (ISO 8601) as the console says it: "2026-12-05 19:31:56 UTC"."""
    return f"{timezone.localtime(datetime.fromisoformat(value)):%Y-%m-%d %H:%M:%S %Z}"


class WebServer:
    """The Procfile's web process, as production runs it, on the test database."""

    def __init__(self, log_path: Path, **extra_env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "DATABASE_URL": database_url(connection.settings_dict),
            "HITL_CELERY_QUEUE": celery_app.conf.task_default_queue,  # this session's workers
            "PORT": str(self.port),
            "HITL_BIND": "127.0.0.1",
            "WEB_CONCURRENCY": "1",
            **extra_env,
        }
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", f"exec {procfile_command('web')}"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_until(self._answers, timeout=60, interval=0.05)
        except AssertionError as error:
            self.stop()
            raise AssertionError(f"{error}\n{log_path.read_text()}") from error

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError("The web server stopped")
        try:
            return urllib.request.urlopen(f"{self.url}/healthz", timeout=2).status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """Gone at once, as a machine that loses power."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)


@pytest.fixture
def web_server_with(transactional_db, tmp_path) -> Iterator[Callable[..., WebServer]]:
    """Starts the Procfile's web process with the given environment on top; each is stopped
    at the end of the test."""
    servers: list[WebServer] = []

    def start(**extra_env: str) -> WebServer:
        servers.append(WebServer(tmp_path / f"web-{len(servers)}.log", **extra_env))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def connections_served(port: int) -> int:
    """Open TCP connections (established) a server listening on ``port`` holds, as the kernel
    lists them: its clients' requests under way, or kept alive for the next."""
    local = f":{port:04X}"
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[1].endswith(local) and row[3] == "01")


def environment_seen() -> dict[str, str]:
    """What of this process's environment a web process started now inherits (``WebServer``);
    pytest's name of the test under way aside."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


class SharedWebServer:
    """The web process the tests that take it as it is (``web_server``) share: started by the
    first of them, and kept for the next as long as what it serves is the same as a new one
    would serve. Its state outside the test database, Redis and the data folder (what a new
    one would see too) is Django's and the project's code (``functools.cache``s of pure
    functions, the wake-ups' subscription), the database connections it keeps (idle between
    requests: they hold no lock the flush between tests waits for, and one found broken is
    replaced, ``CONN_HEALTH_CHECKS``), and Django's ContentType cache: a flush deletes the
    content types and makes them again with new ids, which it still holds; so a test that
    makes the console record an act through it (``LogEntry``) must start one of its own
    (``web_server_with``). It is stopped, and the next test starts another, when a test leaves
    a connection open to it (a request under way, or a client that kept the connection), and
    a test whose environment differs from the one it started in starts one of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.server: WebServer | None = None
        self.environment: dict[str, str] = {}
        self.started = 0

    def url_for_test(self) -> str:
        if self.server is not None and self.environment != environment_seen():
            self.stop()
        if self.server is None:
            self.environment = environment_seen()
            self.started += 1
            self.server = WebServer(self.folder / f"web-{self.started}.log")
        return self.server.url

    def after_test(self) -> None:
        """Ready for the next test once nothing of this one's is under way in it; stopped
        otherwise. Fails the test if it stopped during it."""
        server = self.server
        if server is None:
            return
        if server.process.poll() is not None:
            self.server = None
            raise AssertionError(
                f"The web server stopped during the test:\n{server.log_path.read_text()}"
            )
        # Gunicorn closes a connection kept alive after 2 s (its keepalive).
        deadline = time.monotonic() + 3
        while connections_served(server.port) and time.monotonic() < deadline:
            time.sleep(0.02)
        if connections_served(server.port):
            self.stop()  # its requests under way end as they did when each test had its own
        else:
            worker_settled()  # a statement it may still be running (PostgreSQL)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture(scope="session")
def shared_web_server(django_db_setup, tmp_path_factory) -> Iterator[SharedWebServer]:
    """Stopped before the test database is dropped."""
    shared = SharedWebServer(tmp_path_factory.mktemp("web"))
    yield shared
    shared.stop()


@pytest.fixture
def web_server(shared_web_server, transactional_db) -> Iterator[str]:
    """The address of the Procfile's web process in the default environment, on the test
    database: the one the session's tests share (``SharedWebServer``)."""
    yield shared_web_server.url_for_test()
    shared_web_server.after_test()


# The reference scenario as an agent framework's tool calls (name, arguments), as the
# adapters' tests and examples make them.
SIX_PERCENT_BID = (
    "adjust_bid",
    {
        "campaign": "brand-search",
        "new_bid": "2.12",
        "rationale": "CPC below target for five days.",
        "confidence": 0.9,
    },
)
REALLOCATION = (
    "move_budget",
    {
        "from_campaign": "brand-search",
        "to_campaign": "generic-search",
        "amount": "280.00",
        "rationale": "generic-search converts at 2.3x brand-search's rate this week.",
    },
)
GUARANTEED = (
    "deploy_creative",
    {
        "campaign": "display-retarget",
        "headline": "Search smarter",
        "body": "Guaranteed results in a week.",
        "rationale": "Urgency lifts click-through.",
    },
)
