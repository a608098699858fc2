"""When what a request needs cannot be had (a database connection, in a burst; the rate-limit
store, when Redis is down), the agent API answers 503 with Retry-After in its error format and
records nothing: never a 500."""

import json
import threading
import urllib.error
import urllib.request

import pytest
from django.db import OperationalError, connection, transaction
from psycopg_pool import PoolTimeout

from approvals.models import Proposal
from hitlproject.api import api_exception_handler
from ledger.models import Campaign
from tests.conftest import bid_adjustment, free_port, wait_until

PROPOSALS_URL = "/api/v1/proposals/"


def call(base_url: str, path: str, api_key: str = "", body: object = None):
    """(status, headers, JSON body) of one request to a running web server."""
    request = urllib.request.Request(
        f"{base_url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"null")


def a_request_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock')"
        )
        return cursor.fetchone()[0]


def test_a_request_that_finds_no_free_database_connection_is_told_to_come_back(
    web_server_with, demo_world
):
    """The web server's one pooled connection is held by a submission waiting for a campaign
    this test has locked; other agents' requests meanwhile get no connection."""
    if connection.vendor != "postgresql":
        pytest.skip("The connection pool is PostgreSQL's (psycopg_pool)")
    optimizer, copywriter = demo_world["agents"]["optimizer"], demo_world["agents"]["copywriter"]
    server = web_server_with(
        HITL_DATABASE_POOL_SIZE="1",
        HITL_DATABASE_POOL_TIMEOUT_SECONDS="0.5",
        HITL_SUBMISSION_LOCK_TIMEOUT_SECONDS="60",
    )
    answers = {}
    with transaction.atomic():
        Campaign.objects.select_for_update().filter(external_id="brand-search").get()
        holder = threading.Thread(
            target=lambda: answers.update(
                first=call(server.url, PROPOSALS_URL, optimizer, bid_adjustment("2.12"))
            )
        )
        holder.start()
        wait_until(a_request_waits_for_a_lock, interval=0.05)

        listed = call(server.url, PROPOSALS_URL, copywriter)
        submitted = call(
            server.url, PROPOSALS_URL, optimizer, bid_adjustment("0.95", "generic-search")
        )
    holder.join()

    for status, headers, body in (listed, submitted):
        assert status == 503
        assert headers["Retry-After"] == "1"
        assert body["code"] == "busy"
        assert "nothing was recorded" in body["detail"]
    assert answers["first"][0] == 201  # the connection came free for the request that held it
    assert list(Proposal.objects.values_list("payload__campaign", flat=True)) == ["brand-search"]


def test_a_pool_timeout_is_answered_503_in_the_api_s_error_format():
    """Django wraps psycopg_pool's PoolTimeout in its OperationalError, as here."""
    try:
        try:
            raise PoolTimeout("couldn't get a connection after 0.50 sec")
        except PoolTimeout as timeout:
            raise OperationalError(str(timeout)) from timeout
    except OperationalError as error:
        response = api_exception_handler(error, {})

    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.data["code"] == "busy"


def test_with_redis_unreachable_the_api_answers_503_and_the_console_still_works(
    web_server_with, demo_world
):
    optimizer = demo_world["agents"]["optimizer"]
    server = web_server_with(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")

    listed = call(server.url, PROPOSALS_URL, optimizer)
    submitted = call(server.url, PROPOSALS_URL, optimizer, bid_adjustment("2.12"))

    for status, headers, body in (listed, submitted):
        assert status == 503
        assert headers["Retry-After"] == "5"
        assert body["code"] == "unavailable"
        assert "cannot count this agent's requests" in body["detail"]
    assert not Proposal.objects.exists()
    with urllib.request.urlopen(f"{server.url}/admin/login/", timeout=30) as page:
        assert page.status == 200
        assert b"Password" in page.read()
