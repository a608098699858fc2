"""The web server as production runs it (the Procfile's ``web``): clients that send their
requests slowly cost a connection each, not a worker, so everyone else is still answered."""

import http.cookiejar
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message

import pytest
from django.contrib.auth import get_user_model

from tests.conftest import REPO, bid_adjustment, procfile_command


def test_the_procfile_names_the_web_worker_and_beat_processes():
    # Each a script that picks the embedded default's lighter layout when DATABASE_URL is
    # unset; the web process listens on $PORT (every test below starts it so).
    assert procfile_command("web") == "bin/web"
    assert procfile_command("worker") == "bin/worker"
    assert procfile_command("beat") == "bin/beat"
    assert "exec celery -A hitlproject beat" in (REPO / "bin" / "beat").read_text()


def test_slow_clients_do_not_starve_the_web_server(web_server):
    host, port = web_server.removeprefix("http://").split(":")
    slow_clients = []
    for _ in range(30):  # many more than the server has workers (one) or threads
        client = socket.create_connection((host, int(port)))
        client.sendall(b"GET /healthz HTTP/1.1\r\n")
        slow_clients.append(client)
    try:
        for second in range(3):
            for client in slow_clients:  # one header line a second, never finishing
                client.sendall(f"X-Slow-{second}: still typing\r\n".encode())
            with urllib.request.urlopen(f"{web_server}/healthz", timeout=10) as response:
                assert response.status == 200
                assert response.read() == b'{"status": "ok"}'
            with pytest.raises(urllib.error.HTTPError) as refused:  # the API answers too
                urllib.request.urlopen(f"{web_server}/api/v1/campaigns/", timeout=10)
            assert refused.value.code == 401
            time.sleep(1)
    finally:
        for client in slow_clients:
            client.close()


def login_through(base: str, username: str, password: str, forwarded_for: str) -> int:
    """A login on the console's page, as a browser posts it, claiming an address."""
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirects())
    page = browser.open(f"{base}/admin/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token}
    ).encode()
    request = urllib.request.Request(
        f"{base}/admin/login/?next=/admin/",
        data=form,
        headers={"X-Forwarded-For": forwarded_for, "Referer": f"{base}/admin/login/"},
    )
    try:
        return browser.open(request, timeout=10).status
    except urllib.error.HTTPError as answer:
        return answer.code


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_a_client_cannot_pick_the_address_its_failed_logins_count_against(web_server):
    """Behind no proxy (HITL_TRUSTED_PROXY_COUNT=0), X-Forwarded-For is the client's own
    word: failures from one machine lock its user out however the header changes."""
    get_user_model().objects.create_user("victim", password="the-right-one", is_staff=True)

    statuses = [
        login_through(web_server, "victim", "wrong", f"198.51.100.{attempt}")
        for attempt in range(5)
    ]

    assert statuses == [200, 200, 200, 200, 429]  # the form again, then the lockout page
    assert login_through(web_server, "victim", "the-right-one", "203.0.113.9") == 429


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def answer_to(request: urllib.request.Request | str) -> tuple[int, Message]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


def test_every_answer_passes_the_same_middleware_whichever_way_the_server_takes_it(
    web_server, demo_world
):
    """The server takes a request for a synchronous view through the middleware in one trip
    to a thread kept between requests, and a long poll (an async view) through the async
    chain: the console's page, an agent's submission, a long poll and an unknown address all
    keep the security headers, and a form posted without its token is refused."""
    key = demo_world["agents"]["optimizer"]
    agent = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    submitted = urllib.request.Request(
        f"{web_server}/api/v1/proposals/",
        data=json.dumps(bid_adjustment()).encode(),
        headers={**agent, "Idempotency-Key": "middleware-1"},
    )
    answers = {
        "console page": answer_to(f"{web_server}/admin/login/"),
        "submission": answer_to(submitted),
        "long poll": answer_to(
            urllib.request.Request(f"{web_server}/api/v1/feedback/?wait=1", headers=agent)
        ),
        "unknown address": answer_to(f"{web_server}/no-such-page/"),
    }

    assert {name: status for name, (status, _) in answers.items()} == {
        "console page": 200,
        "submission": 201,
        "long poll": 200,
        "unknown address": 404,
    }
    for name, (_, headers) in answers.items():
        assert {h: headers.get(h) for h in SECURITY_HEADERS} == SECURITY_HEADERS, name
    assert "Set-Cookie" not in answers["submission"][1]
    login = urllib.request.Request(
        f"{web_server}/admin/login/",
        data=urllib.parse.urlencode(demo_world["users"]["operator"]).encode(),
    )
    status, _ = answer_to(login)
    assert status == 403  # no CSRF token
