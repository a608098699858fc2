"""The web server as production runs it (the Procfile's ``web``): clients that send their
requests slowly cost a connection each, not a worker, so everyone else is still answered."""

import http.cookiejar
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from django.contrib.auth import get_user_model

from tests.conftest import REPO, procfile_command


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
