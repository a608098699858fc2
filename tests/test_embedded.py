"""The embedded default's layout (hitlproject.embedded): the Procfile's web process loads Django
once and forks the Celery worker from it, so a laptop holds one copy; the two stop together,
however either ends, and nothing is left running."""

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    embedded_env,
    free_port,
    procfile_command,
    reallocation,
    wait_until,
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A migrated embedded database, as bin/start leaves it before starting the Procfile."""
    folder = tmp_path_factory.mktemp("embedded")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=REPO, env=embedded_env(folder), check=True,
    )  # fmt: skip
    return folder


class Platform:
    """The Procfile's web process on the embedded default, and the worker it forked."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.log = folder / f"web-{self.port}.log"
        with open(self.log, "w") as log:
            self.web = subprocess.Popen(
                ["bash", "-c", f"exec {procfile_command('web')}"],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=embedded_env(folder, PORT=str(self.port), HITL_BIND="127.0.0.1"),
            )  # fmt: skip
        wait_until(self._ready, timeout=90, interval=0.3)
        self.worker = children(self.web.pid)[0]

    def _ready(self) -> bool:
        if self.web.poll() is not None:
            raise AssertionError(f"The web process stopped:\n{self.log.read_text()}")
        try:
            answered = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
        except OSError:
            return False
        return answered.status == 200 and "ready." in self.log.read_text()

    def stop(self) -> None:
        if self.web.poll() is None:
            os.killpg(self.web.pid, signal.SIGKILL)
            self.web.wait(timeout=10)


@pytest.fixture
def platform(data_dir) -> Iterator[Platform]:
    started = Platform(data_dir)
    yield started
    started.stop()


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its exit status is left to collect


def rollup(pid: int, field: str) -> int:
    """A field of the process's memory summary, in KiB."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_the_worker_is_forked_from_the_web_process_and_shares_its_django(platform):
    # One child, the Celery worker serving the three queues (its banner is in the log).
    assert len(children(platform.web.pid)) == 1
    log = platform.log.read_text()
    for queue in ("hitl", "hitl.webhooks", "hitl.callbacks"):
        assert f".> {queue} " in log
    # What the web process loaded before the fork (Django, the API, the tasks: tens of MiB)
    # is held once for both, not twice.
    assert rollup(platform.worker, "Shared_Dirty") > 20 * 1024
    assert rollup(platform.worker, "Pss") < rollup(platform.worker, "Rss") * 0.8


def test_bin_worker_stands_in_on_the_embedded_default(data_dir):
    worker = subprocess.run(
        ["bash", "-c", f"timeout 3 {procfile_command('worker')}"],
        cwd=REPO, env=embedded_env(data_dir), capture_output=True, text=True,
    )  # fmt: skip
    assert worker.returncode == 124  # still standing in when timeout stopped it
    assert "the web process (bin/web) runs the worker" in worker.stderr


def test_a_stop_stops_the_worker_too(platform):
    os.kill(platform.web.pid, signal.SIGTERM)
    assert platform.web.wait(timeout=40) == -signal.SIGTERM  # ended by it, as uvicorn ends
    assert not alive(platform.worker)  # stopped, and waited for, before the web process ended
    assert "Warm shutdown" in platform.log.read_text()


def test_the_web_server_stops_when_its_worker_dies(platform):
    # bin/start (and a process manager) then see the platform is not whole and stop it.
    os.kill(platform.worker, signal.SIGKILL)
    assert platform.web.wait(timeout=40) == 1
    assert "The worker stopped: stopping the web server." in platform.log.read_text()


def test_the_worker_stops_when_the_web_process_is_killed(platform):
    os.kill(platform.web.pid, signal.SIGKILL)
    platform.web.wait(timeout=10)
    deadline = time.monotonic() + 40
    while alive(platform.worker):  # an orphan now: it notices within a second and stops
        assert time.monotonic() < deadline, "the worker outlived the web process"
        time.sleep(0.2)
    assert "Warm shutdown" in platform.log.read_text()


def posted(port: int, path: str, headers: dict[str, str], body=None) -> tuple[int, bytes]:
    """POST as written: ``body`` bytes, an iterable of chunks (sent in chunks, with no
    length), or None (nothing sent after the headers); the status and body answered."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.putrequest("POST", path)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            connection.putheader(name, value)
        chunked = body is not None and not isinstance(body, bytes)
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        try:
            if chunked:
                for part in body:
                    connection.send(b"%x\r\n%s\r\n" % (len(part), part))
                connection.send(b"0\r\n\r\n")
            elif body:
                connection.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the rest was read
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_a_body_is_bounded_before_it_is_read_and_one_sent_in_chunks_is_read(platform, data_dir):
    """Django's handler reads a whole body before any view (or key check) is reached: one
    said to be larger than a batch may be is refused at once, unread, before the key is
    even looked at; one sent in chunks (no length) past that is refused once it passes it;
    one sent in chunks within it is read as a body sent with its length is (Django would
    have read none of it: every field "required")."""
    seeded = subprocess.run(
        [sys.executable, "manage.py", "seed_demo", "--json"],
        cwd=REPO, env=embedded_env(data_dir), capture_output=True, check=True,
    )  # fmt: skip
    key = json.loads(seeded.stdout)["agents"]["optimizer"]
    proposal = json.dumps(reallocation("150.00")).encode()
    limit = 16 * 1024 * 1024
    batch = "/api/v1/proposals/batch/"

    said_too_large = posted(platform.port, batch, {"Content-Length": str(limit + 1)})
    chunked_too_large = posted(platform.port, batch, {}, (b" " * (1 << 18) for _ in range(65)))
    chunked = posted(
        platform.port,
        "/api/v1/proposals/",
        {"Authorization": f"Bearer {key}"},
        [proposal[:10], proposal[10:50], proposal[50:]],
    )

    detail = json.dumps(
        {"detail": f"Request body larger than {limit} bytes.", "code": "payload_too_large"}
    ).encode()
    assert said_too_large == (413, detail)
    assert chunked_too_large == (413, detail)
    status, body = chunked
    assert status == 201, body
    assert json.loads(body)["status"] == "pending_review"
