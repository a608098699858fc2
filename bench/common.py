"""What the benchmarks share."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg

# The benchmarks' PostgreSQL: BENCH_DATABASE_URL names the database of `bin/bench policy` and
# `bin/bench console`; the others use databases of their own beside it (see ``bench_database``).
BASE_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hitl_bench"
)


def bench_database(suffix: str) -> str:
    """A benchmark's own database beside BENCH_DATABASE_URL's: ``<name>_<suffix>``."""
    return f"{BASE_DATABASE_URL}_{suffix}"


def create_database(url: str, *, fresh: bool = False) -> None:
    """Create the benchmark's PostgreSQL database if it does not exist yet; ``fresh``: drop it
    first, so that every run starts from the same state."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        if fresh:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


REPO = Path(__file__).resolve().parent.parent


def manage(*args: str) -> str:
    """Run a management command in a process of its own (the benchmark's environment)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout


def make_campaigns(count: int, *, bid: str = "1.00") -> list[str]:
    """``count`` campaigns on the demo account (budget 100.00, bid ``bid``), each a target of
    its own: their external ids. Needs Django set up."""
    from audit.actors import Actor
    from audit.history import create_with_history
    from ledger.models import Account, Campaign

    account = Account.objects.get(external_id="demo")
    campaigns = [
        Campaign(
            account=account,
            external_id=f"bench-{i:05d}",
            name=f"Benchmark campaign {i}",
            daily_budget="100.00",
            bid=bid,
        )
        for i in range(count)
    ]
    for start in range(0, count, 5000):
        create_with_history(Campaign, campaigns[start : start + 5000], actor=Actor.system("bench"))
    return [campaign.external_id for campaign in campaigns]


def temporary_data_dir(prefix: str) -> str:
    """A HITL_DATA_DIR for one run (what seed_demo keeps, caches), removed when it ends."""
    import tempfile

    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(port: int, path: str, timeout: float = 120, process=None) -> None:
    """Until GET ``path`` answers 200 (or ``process`` has died)."""
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server on port {port} exited ({process.returncode})")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"the server on port {port} did not answer {path}")


# --- Process trees: which processes a run started, their memory and CPU ------------------


def processes_with_env(marker: str) -> list[int]:
    """The processes whose environment holds ``marker`` ("NAME=value"): every process a
    server starts inherits it, whatever process group or session it moves to."""
    wanted = marker.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile, or not ours to read
    return found


def memory_of(pids: list[int]) -> dict:
    """Resident memory summed over processes: RSS and PSS (each shared page divided among the
    processes sharing it), from /proc/<pid>/smaps_rollup, in MiB."""
    rss = pss = 0
    counted = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        counted += 1
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name == "Rss":
                rss += int(value.split()[0])
            elif name == "Pss":
                pss += int(value.split()[0])
    return {"processes": counted, "rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1)}


def cpu_seconds_of(pids: list[int]) -> float:
    """User and system CPU time used so far by these processes (those still running)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def start_process(command: list[str], log: Path, **kwargs) -> subprocess.Popen:
    """A server, in a session (and process group) of its own, its output to ``log``."""
    with open(log, "w") as output:  # the child keeps its own copy
        return subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )


def stop_process_group(process: subprocess.Popen, marker: str | None = None) -> None:
    """SIGTERM to the process group, as a process manager or Ctrl-C stops it; what is still
    running 30 s later (or, with ``marker``, anything it started) is killed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    if marker is None:
        return
    deadline = time.monotonic() + 30
    while processes_with_env(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in processes_with_env(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
