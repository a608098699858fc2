"""The web server as production runs it (the Procfile's ``web``): clients that send their
requests slowly cost a connection each, not a worker, so everyone else is still answered."""

import shlex
import socket
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import procfile_command


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
