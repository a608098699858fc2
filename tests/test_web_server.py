"""The web server as production runs it (the Procfile's ``web``): clients that send their
requests slowly cost a connection each, not a worker, so everyone else is still answered."""

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import REPO, database_url, wait_until


def procfile_command(name: str) -> str:
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"The Procfile names no {name} process")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def web_server(transactional_db, tmp_path) -> str:
    """The Procfile's web process, one worker, on the test database."""
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": database_url(connection.settings_dict),
        "PORT": str(port),
        "HITL_BIND": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
    }
    log_path = tmp_path / "web.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            ["bash", "-c", f"exec {procfile_command('web')}"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            if server.poll() is not None:
                raise AssertionError(f"The web server stopped:\n{log_path.read_text()}")
            try:
                return urllib.request.urlopen(f"{base}/healthz", timeout=2).status == 200
            except OSError:
                return False

        try:
            wait_until(answers, timeout=60, interval=0.3)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{log_path.read_text()}") from error
        yield base
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=20)


def test_the_procfile_names_the_web_worker_and_beat_processes():
    assert "$PORT" in procfile_command("web") or "${PORT" in procfile_command("web")
    assert procfile_command("worker") == "bin/worker"
    assert shlex.split(procfile_command("beat"))[:4] == ["celery", "-A", "hitlproject", "beat"]


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
