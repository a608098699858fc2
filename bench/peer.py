"""This platform against the closest self-hosted HITL server, both on their embedded default.

The peer is awaithumans (``awaithumans[server]==0.1.12``): agents call ``POST /api/tasks``
with its admin token as a Bearer (``awaithumans.server.routes.tasks.create_task_route``); the
task, with an idempotency key, waits for a human. It is installed by this benchmark with pip
into a virtualenv of its own (bench/.peer-venv) and started as its production entrypoint
starts it (``awaithumans serve``: one uvicorn process) on SQLite in a temporary folder.

This platform is started as ``bin/start`` starts it, with no DATABASE_URL or REDIS_URL (SQLite
and the filesystem broker, in a temporary HITL_DATA_DIR), every process of the Procfile; the
agent's key comes from ``manage.py seed_demo --json``. Its request is the closest equivalent
of the peer's: ``POST /api/v1/proposals/`` with an Idempotency-Key, a bid adjustment that the
demo policy sends to a human (``--route review``, the default: 20%, above its 15% auto-approval
limit) or approves at once (``--route auto``: small moves that stay under the ceilings).

Both are driven by the same load generator (bench/loadgen.py: asyncio, one kept-alive
connection per client), interleaved, for three rounds at 1, 8 and 32 clients: creates/s, p50,
p99 and errors, and the ratio ours/peer. Also, for this platform, the evaluation backlog:
how many proposals are still ``submitted`` when the load ends, and how long they take to
drain (it is waited for before the next measure, so that neither side's measure pays for the
other's leftovers); and, for both, the CPU their processes used per create, and their resident
memory after the load (RSS and PSS summed over every process each started).

Run with ``bin/bench peer``. The throttle is raised (HITL_API_THROTTLE_RATE) for this
platform, since the peer has none: both are measured at what they can take.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    cpu_seconds_of,
    free_port,
    memory_of,
    processes_with_env,
    start_process,
    stop_process_group,
    wait_for_http,
)
from bench.loadgen import post_load  # noqa: E402

PEER_REQUIREMENT = "awaithumans[server]==0.1.12"
PEER_VERSION = "0.1.12"
PEER_VENV = REPO / "bench" / ".peer-venv"
RESULTS = REPO / "bench" / "results"
CAMPAIGNS = {"brand-search": 2.00, "generic-search": 1.50, "display-retarget": 0.80}
RATIONALE = "Benchmark: CPC below target for five days; raising the bid to win more auctions."
SUPPORTING = {"cpc": [1.1, 1.05, 1.02, 0.98, 0.97], "impression_share": 0.41}


# --- The peer ------------------------------------------------------------------------------


def ensure_peer_venv() -> Path:
    """bench/.peer-venv with the peer installed (once; again if its version differs)."""
    awaithumans = PEER_VENV / "bin" / "awaithumans"
    python = PEER_VENV / "bin" / "python"
    if awaithumans.exists():
        installed = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('awaithumans'))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if installed == PEER_VERSION:
            return awaithumans
    print(f"Installing {PEER_REQUIREMENT} into {PEER_VENV.relative_to(REPO)}…", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         PEER_REQUIREMENT],
        capture_output=True, text=True,
    )  # fmt: skip
    if installed.returncode:
        raise SystemExit(f"pip could not install {PEER_REQUIREMENT}:\n{installed.stderr}")
    return awaithumans


class Peer:
    name = "peer"

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.token = secrets.token_urlsafe(24)
        self.marker = f"BENCH_PEER_DIR={folder}"
        self.process = None

    def start(self) -> None:
        awaithumans = ensure_peer_venv()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWAITHUMANS_")},
            "BENCH_PEER_DIR": str(self.folder),
            "AWAITHUMANS_DB_PATH": str(self.folder / "awaithumans.db"),
            "AWAITHUMANS_PAYLOAD_KEY": secrets.token_urlsafe(32),
            "AWAITHUMANS_ADMIN_API_TOKEN": self.token,
            "AWAITHUMANS_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
        }
        self.process = start_process(
            [str(awaithumans), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning"],
            self.folder / "peer.log",
            cwd=self.folder,  # it reads a .env from where it runs: none there
            env=env,
        )  # fmt: skip
        wait_for_http(self.port, "/api/health", process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, self.marker)

    def pids(self) -> list[int]:
        return processes_with_env(self.marker)

    def path(self) -> str:
        return "/api/tasks"

    def requests(self, tag: str, count: int, route: str) -> tuple[list[bytes], dict]:
        """The peer's equivalent of each proposal: a task awaiting a human, carrying the same
        action, with an idempotency key and the schema of the answer expected."""
        bodies = []
        for i, (campaign, bid, external_ref) in enumerate(_actions(tag, count, route)):
            body = {
                "task": f"Approve a bid adjustment on {campaign}",
                "payload": {
                    "action_type": "bid_adjustment",
                    "account": "demo",
                    "campaign": campaign,
                    "new_bid": bid,
                    "rationale": RATIONALE,
                    "supporting_data": SUPPORTING,
                    "confidence": 0.9,
                    "external_ref": external_ref,
                },
                "payload_schema": {
                    "type": "object",
                    "properties": {
                        "campaign": {"type": "string"},
                        "new_bid": {"type": "string"},
                    },
                },
                "response_schema": {
                    "type": "object",
                    "properties": {"approved": {"type": "boolean"}, "note": {"type": "string"}},
                },
                "timeout_seconds": 72 * 3600,  # the demo policy's review window
                "idempotency_key": f"{tag}-{i}",
            }
            bodies.append(json.dumps(body).encode())
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        return bodies, headers

    def backlog(self) -> int:
        return 0  # the peer has nothing to evaluate after it answers


# --- This platform -------------------------------------------------------------------------


class Ours:
    name = "ours"

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.marker = f"HITL_DATA_DIR={folder}"
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if k
                not in (
                    "DATABASE_URL",
                    "REDIS_URL",
                    "DJANGO_SETTINGS_MODULE",
                    "HITL_DATA_DIR",
                    "HITL_BROKER_DIR",
                    "HITL_CELERY_QUEUE",
                )
            },
            "HITL_DATA_DIR": str(folder),
            "PORT": str(port),
            "HITL_BIND": "127.0.0.1",
            "CELERY_LOG_LEVEL": "warning",
            "HITL_LOG_LEVEL": "WARNING",
            "HITL_API_THROTTLE_RATE": "100000000/min",
        }
        self.process = None
        self.key = ""

    def start(self) -> None:
        self.process = start_process(
            [str(REPO / "bin" / "start")], self.folder / "platform.log", cwd=REPO, env=self.env
        )
        wait_for_http(self.port, "/healthz", timeout=600, process=self.process)
        seeded = subprocess.run(
            [sys.executable, "manage.py", "seed_demo", "--json"],
            cwd=REPO,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        self.key = json.loads(seeded.stdout)["agents"]["optimizer"]

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, self.marker)

    def pids(self) -> list[int]:
        return processes_with_env(self.marker)

    def path(self) -> str:
        return "/api/v1/proposals/"

    def requests(self, tag: str, count: int, route: str) -> tuple[list[bytes], list[dict]]:
        bodies, headers = [], []
        for i, (campaign, bid, external_ref) in enumerate(_actions(tag, count, route)):
            body = {
                "action_type": "bid_adjustment",
                "account": "demo",
                "payload": {"campaign": campaign, "new_bid": bid},
                "rationale": RATIONALE,
                "supporting_data": SUPPORTING,
                "confidence": 0.9,
                "external_ref": external_ref,
            }
            bodies.append(json.dumps(body).encode())
            headers.append(
                {
                    "Authorization": f"Bearer {self.key}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": f"{tag}-{i}",
                }
            )
        return bodies, headers

    def backlog(self) -> int:
        """Proposals still waiting for their evaluation."""
        with sqlite3.connect(self.folder / "db.sqlite3", timeout=30) as connection:
            return connection.execute(
                "SELECT count(*) FROM approvals_proposal WHERE status = 'submitted'"
            ).fetchone()[0]


def _actions(tag: str, count: int, route: str):
    """(campaign, new bid, external ref) for each request. ``review``: +20%, above the demo
    policy's 15% auto-approval limit, so a human decides (as the peer's task waits for one).
    ``auto``: each campaign's bid a cent, two, … ten above where it started, then a cent
    again: small moves, each approved and executed at once, that never reach the 25%
    cumulative ceiling, and never a bid the campaign has (which the platform refuses as
    changing nothing) unless its nine moves before are all still to execute."""
    names = list(CAMPAIGNS)
    for i in range(count):
        campaign = names[i % len(names)]
        bid = CAMPAIGNS[campaign]
        cents = i // len(names) % 10 + 1
        new = bid * 1.2 if route == "review" else bid + cents / 100
        yield campaign, f"{new:.2f}", f"{tag}-{i}"


# --- The run -------------------------------------------------------------------------------


def measure(side, tag: str, args, clients: int) -> dict:
    bodies, headers = side.requests(tag, args.requests, args.route)
    pids = side.pids()
    cpu_before = cpu_seconds_of(pids)
    result = post_load(
        port=side.port,
        path=side.path(),
        bodies=bodies,
        headers=headers,
        clients=clients,
        seconds=args.seconds,
    )
    backlog = side.backlog()
    result["backlog_at_end"] = backlog
    if backlog:
        started = time.monotonic()
        while side.backlog() and time.monotonic() - started < args.drain_timeout:
            time.sleep(0.5)
        left = side.backlog()
        result["backlog_drained_seconds"] = (
            round(time.monotonic() - started, 1) if not left else None
        )
        result["backlog_left_after_timeout"] = left
    else:
        result["backlog_drained_seconds"] = 0.0
    # Every process the side runs, the work after the answer (the backlog) included.
    result["cpu_ms_per_create"] = (
        round((cpu_seconds_of(pids) - cpu_before) * 1000 / result["ok"], 1)
        if result["ok"]
        else None
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="1,8,32", help="Comma-separated client counts.")
    parser.add_argument("--requests", type=int, default=1000, help="At most, per measure.")
    parser.add_argument("--seconds", type=float, default=20, help="At most, per measure.")
    parser.add_argument("--route", choices=["review", "auto"], default="review")
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument("--keep", action="store_true", help="Keep the data folders.")
    args = parser.parse_args()
    client_counts = [int(c) for c in args.clients.split(",")]

    RESULTS.mkdir(exist_ok=True)
    ensure_peer_venv()
    ours_dir = Path(tempfile.mkdtemp(prefix="hitl-bench-ours-"))
    peer_dir = Path(tempfile.mkdtemp(prefix="hitl-bench-peer-"))
    ours, peer = Ours(ours_dir, free_port()), Peer(peer_dir, free_port())
    runs: list[dict] = []
    try:
        print("Starting this platform (bin/start, embedded default) and the peer…", flush=True)
        ours.start()
        peer.start()
        for side in (ours, peer):  # warm-up: imports, connections, caches
            measure(side, "warmup", argparse.Namespace(**{**vars(args), "requests": 60}), 8)
        for round_ in range(1, args.rounds + 1):
            for clients in client_counts:
                # Alternate who goes first, so that neither always runs on a warmer machine.
                order = (
                    (ours, peer) if (round_ + client_counts.index(clients)) % 2 else (peer, ours)
                )
                for side in order:
                    result = measure(side, f"r{round_}-c{clients}", args, clients)
                    runs.append({"side": side.name, "round": round_, "clients": clients, **result})
                    print(_line(runs[-1]), flush=True)
        memory = {"ours": memory_of(ours.pids()), "peer": memory_of(peer.pids())}
        with sqlite3.connect(ours_dir / "db.sqlite3", timeout=30) as connection:
            statuses = dict(
                connection.execute(
                    "SELECT status, count(*) FROM approvals_proposal GROUP BY status"
                ).fetchall()
            )
    finally:
        ours.stop()
        peer.stop()
        if not args.keep:
            shutil.rmtree(ours_dir, ignore_errors=True)
            shutil.rmtree(peer_dir, ignore_errors=True)

    results = {
        "setup": {
            "ours": "bin/start, embedded default (SQLite + filesystem broker)",
            "peer": f"{PEER_REQUIREMENT}, awaithumans serve, SQLite",
            "route": args.route,
            "requests_per_measure_at_most": args.requests,
            "seconds_per_measure_at_most": args.seconds,
            "cores": os.cpu_count(),
        },
        "runs": runs,
        "summary": summarize(runs, client_counts),
        "memory_after_load": memory,
        "our_proposals_by_status": statuses,
    }
    (RESULTS / "peer.json").write_text(json.dumps(results, indent=2))
    print(report(results, client_counts))


def _line(run: dict) -> str:
    backlog = ""
    if run["side"] == "ours":
        backlog = (
            f"  backlog {run['backlog_at_end']}, drained in {run['backlog_drained_seconds']} s"
        )
    return (
        f"  round {run['round']} {run['clients']:>2} clients {run['side']:<4} "
        f"{run['creates_per_second']:>7}/s p50 {run['p50_ms']} ms p99 {run['p99_ms']} ms "
        f"errors {run['errors']} cpu {run['cpu_ms_per_create']} ms/create{backlog}"
    )


def summarize(runs: list[dict], client_counts: list[int]) -> dict:
    import statistics

    summary = {}
    for clients in client_counts:
        entry = {}
        for side in ("ours", "peer"):
            mine = [r for r in runs if r["side"] == side and r["clients"] == clients]
            entry[side] = {
                "creates_per_second": [r["creates_per_second"] for r in mine],
                "p50_ms": [r["p50_ms"] for r in mine],
                "p99_ms": [r["p99_ms"] for r in mine],
                "errors": sum(r["errors"] for r in mine),
                "cpu_ms_per_create": [r["cpu_ms_per_create"] for r in mine],
            }
        ratios = [
            round(o["creates_per_second"] / p["creates_per_second"], 2)
            for o, p in zip(
                [r for r in runs if r["side"] == "ours" and r["clients"] == clients],
                [r for r in runs if r["side"] == "peer" and r["clients"] == clients],
                strict=True,
            )
            if p["creates_per_second"]
        ]
        entry["ratio_ours_to_peer"] = ratios
        entry["ratio_median"] = statistics.median(ratios) if ratios else None
        ours_runs = [r for r in runs if r["side"] == "ours" and r["clients"] == clients]
        entry["ours_backlog_at_end"] = [r["backlog_at_end"] for r in ours_runs]
        entry["ours_backlog_drained_seconds"] = [r["backlog_drained_seconds"] for r in ours_runs]
        summary[str(clients)] = entry
    return summary


def _span(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}–{high}"


def report(results: dict, client_counts: list[int]) -> str:
    setup, summary, memory = results["setup"], results["summary"], results["memory_after_load"]
    lines = [
        f"This platform (embedded default) against {setup['peer']}, {setup['cores']} cores, "
        f"{setup['route']}-routed bid adjustments; each measure at most "
        f"{setup['requests_per_measure_at_most']} requests or "
        f"{setup['seconds_per_measure_at_most']} s; figures are the span over the rounds",
        f"  {'clients':>7} {'side':<5} {'creates/s':>12} {'p50 ms':>12} {'p99 ms':>14} "
        f"{'errors':>6} {'CPU ms/create':>14}",
    ]
    for clients in client_counts:
        entry = summary[str(clients)]
        for side in ("ours", "peer"):
            s = entry[side]
            lines.append(
                f"  {clients:>7} {side:<5} {_span(s['creates_per_second']):>12} "
                f"{_span(s['p50_ms']):>12} {_span(s['p99_ms']):>14} {s['errors']:>6} "
                f"{_span(s['cpu_ms_per_create']):>14}"
            )
        lines.append(
            f"  {clients:>7} ratio ours/peer: {', '.join(map(str, entry['ratio_ours_to_peer']))} "
            f"(median {entry['ratio_median']})"
        )
        lines.append(
            f"  {'':>7} our backlog when the load ended: "
            f"{_span(entry['ours_backlog_at_end'])} proposals still submitted, drained in "
            f"{_span(entry['ours_backlog_drained_seconds'])} s"
        )
    lines.append(
        f"Resident memory after the load: ours {memory['ours']['rss_mib']} MiB RSS, "
        f"{memory['ours']['pss_mib']} MiB PSS over {memory['ours']['processes']} processes; "
        f"peer {memory['peer']['rss_mib']} MiB RSS, {memory['peer']['pss_mib']} MiB PSS over "
        f"{memory['peer']['processes']} process(es); ratio (PSS) "
        f"{memory['ours']['pss_mib'] / max(memory['peer']['pss_mib'], 0.1):.1f}×"
    )
    lines.append(f"Our proposals by status at the end: {results['our_proposals_by_status']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
