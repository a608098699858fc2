"""The platform stops as a process manager stops it (systemd, honcho, docker with an init, a
platform's dyno manager): SIGTERM to every process of bin/start's group at once, or to
bin/start alone (its trap forwards it). Within a deadline every process it started is gone,
and not before: whoever stopped it may start it again as soon as it ends. An agent's long
poll under way is answered, with the proposal as it is, rather than held until the web
server's graceful timeout and then cut off with a 500."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, embedded_env, free_port, reallocation

DEADLINE = 12  # seconds from the stop until nothing is left running


def started_by(data_dir: Path) -> list[int]:
    """The processes running for this data folder: each inherits HITL_DATA_DIR, whatever
    process group it put itself in (bin/worker gives one worker a group of its own)."""
    marker = f"HITL_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if state != "Z":  # a zombie has ended; only its exit status is left to collect
            found.append(int(entry.name))
    return found


def wait_for_every_process(data_dir: Path, since: float) -> float:
    """Seconds from ``since`` until every process of ``data_dir`` is gone (at most the
    deadline; what is left then is killed and named in the failure)."""
    while left := started_by(data_dir):
        if time.monotonic() - since > DEADLINE:
            names = [Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in left]
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"still running {DEADLINE} s after the stop: {names}")
        time.sleep(0.1)
    return time.monotonic() - since


class Started:
    """bin/start on the embedded default, in a data folder of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.log = folder / "platform.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [str(REPO / "bin" / "start")],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env=embedded_env(folder, PORT=str(self.port), CELERY_LOG_LEVEL="warning"),
            )  # fmt: skip
        deadline = time.monotonic() + 180
        while not self._ready():
            assert self.process.poll() is None, f"bin/start stopped:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"not up in time:\n{self.log.read_text()}"
            time.sleep(0.3)
        self.key = re.search(r"^\s+optimizer\s+(hitl_\S+)$", self.log.read_text(), re.M)[1]

    def _ready(self) -> bool:
        if "Press Ctrl-C to stop." not in self.log.read_text():
            return False
        try:
            return urllib.request.urlopen(self.url("/healthz"), timeout=2).status == 200
        except OSError:
            return False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def call(self, path: str, body: dict | None = None, timeout: float = 10) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.url(path),
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, {"body": error.read().decode(errors="replace")[:300]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """One data folder for the module's starts: the first migrates and seeds it (a minute),
    the next find it done, as a second bin/start does."""
    return tmp_path_factory.mktemp("platform")


@pytest.fixture
def platform(data_dir) -> Started:
    started = Started(data_dir)
    yield started
    for pid in started_by(data_dir):  # whatever a failed stop left behind
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sent_to", ["its process group", "bin/start alone"])
def test_the_embedded_default_stops_whole_and_answers_a_long_poll_first(platform, sent_to):
    status, proposal = platform.call("/api/v1/proposals/", reallocation())
    assert status == 201 and proposal["status"] == "pending_review", proposal
    answered = {}

    def long_poll() -> None:
        started = time.monotonic()
        answered["status"], answered["body"] = platform.call(
            f"/api/v1/proposals/{proposal['id']}/?wait=60", timeout=70
        )
        answered["after"] = time.monotonic() - started

    waiting = threading.Thread(target=long_poll)
    waiting.start()
    time.sleep(1.5)  # the agent's request is waiting on the server

    stopped_at = time.monotonic()
    if sent_to == "its process group":
        os.killpg(platform.process.pid, signal.SIGTERM)
    else:
        os.kill(platform.process.pid, signal.SIGTERM)
    took = wait_for_every_process(platform.folder, stopped_at)

    assert platform.process.wait(timeout=5) is not None
    waiting.join(timeout=5)
    # Answered as things are (it still waits for a person), at once, not cut off with a 500.
    assert answered["status"] == 200, answered
    assert answered["body"]["status"] == "pending_review"
    assert answered["after"] < 1.5 + 5
    assert took < DEADLINE


@pytest.mark.skipif(
    not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")),
    reason="bin/worker starts its three workers only with PostgreSQL and Redis",
)
def test_bin_worker_ends_only_once_every_worker_it_started_is_gone(tmp_path):
    """bin/worker (PostgreSQL and Redis) runs a worker per queue, one in a process group of
    its own. Stopped as bin/start under a process manager stops it, the stop sent to the
    group and then forwarded to it, it ends only once all three have finished what they were
    doing, within the deadline: it ended at the second signal, its workers still running (a
    process manager then started the next one beside them), or before it had told the one
    in a group of its own to stop at all (left running for good)."""
    queue = f"hitl-stop-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HITL_DATA_DIR": str(tmp_path),
        "HITL_CELERY_QUEUE": queue,
        "CELERY_CONCURRENCY": "1",
        "HITL_WEBHOOK_CONCURRENCY": "2",
        "HITL_CALLBACK_CONCURRENCY": "2",
    }
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [str(REPO / "bin" / "worker")],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while log_path.read_text().count("ready.") < 3:
            assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)

        stopped_at = time.monotonic()
        os.killpg(worker.pid, signal.SIGTERM)  # the process manager, to the group
        time.sleep(0.05)
        os.kill(worker.pid, signal.SIGTERM)  # and bin/start's trap, forwarding it
        while worker.poll() is None and time.monotonic() - stopped_at < DEADLINE:
            time.sleep(0.05)
        assert worker.poll() is not None, "bin/worker still running"
        still = [pid for pid in started_by(tmp_path) if pid != worker.pid]
        assert still == [], "bin/worker ended before the workers it started"
        assert log_path.read_text().count("Warm shutdown") >= 3  # each finished its tasks
    finally:
        for pid in started_by(tmp_path):
            os.kill(pid, signal.SIGKILL)
