"""The embedded default's layout (hitlproject.embedded): the Procfile's web process loads Django
once and forks the Celery worker from it, so a laptop holds one copy; the two stop together,
however either ends, and nothing is left running."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, procfile_command, wait_until


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A migrated embedded database, as bin/start leaves it before starting the Procfile."""
    folder = tmp_path_factory.mktemp("embedded")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=REPO, env=embedded_env(folder), check=True,
    )  # fmt: skip
    return folder


def embedded_env(folder: Path, **extra: str) -> dict[str, str]:
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
