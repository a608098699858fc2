"""Benchmarks of the agent API, on PostgreSQL and Redis, as it runs in production.

1. Submission throughput over HTTP: POST /api/v1/proposals/ (auth, validation, ledger read,
   magnitude, insert with history, task enqueued) against a bare Django view that parses the
   same JSON and inserts one row, both served by the same gunicorn in the same run.
2. Submit-to-executed latency of an auto-approved action: the API call, the evaluate task and
   the execute task through Redis and a real Celery worker.

Run with ``bin/bench``. The load generator runs on the same 2-core machine as the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hitl_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = f"bench-{uuid.uuid4().hex[:8]}"
PORT = int(os.environ.get("BENCH_PORT", "8766"))

os.environ.update(
    DJANGO_SETTINGS_MODULE="bench.settings",
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=REDIS_URL,
    HITL_CELERY_QUEUE=QUEUE,
    HITL_API_THROTTLE_RATE="100000000/min",
    HITL_LOG_LEVEL="WARNING",
)
sys.path.insert(0, str(REPO))

from bench.common import create_database, percentile  # noqa: E402


def manage(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout


def load(path: str, bodies: list[dict], headers: dict, concurrency: int) -> dict:
    """POST every body once, from ``concurrency`` threads; returns rate and latency figures."""
    latencies: list[float] = []
    failures: list[int] = []
    cursor = iter(range(len(bodies)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            payload = json.dumps(bodies[index])
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            connection.request(
                "POST", path, payload, {"Content-Type": "application/json", **headers}
            )
            response = connection.getresponse()
            response.read()
            connection.close()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if response.status != 201:
                    failures.append(response.status)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{path}: {len(failures)} requests failed, e.g. HTTP {failures[0]}")
    return {
        "requests": len(bodies),
        "requests_per_second": round(len(bodies) / wall, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
    }


def bid_bodies(count: int) -> list[dict]:
    campaigns = ["brand-search", "generic-search", "display-retarget"]
    base_bids = {"brand-search": 2.00, "generic-search": 1.50, "display-retarget": 0.80}
    bodies = []
    for i in range(count):
        campaign = campaigns[i % 3]
        bodies.append(
            {
                "action_type": "bid_adjustment",
                "account": "demo",
                "payload": {"campaign": campaign, "new_bid": f"{base_bids[campaign] * 1.05:.2f}"},
                "rationale": "Benchmark: CPC below target for five days.",
                "supporting_data": {"cpc": [1.1, 1.05, 1.02, 0.98, 0.97]},
                "confidence": 0.9,
                "external_ref": f"bench-{i}",
            }
        )
    return bodies


def start(command: list[str], log_name: str) -> subprocess.Popen:
    with open(REPO / "bench" / "results" / log_name, "w") as log:  # the child keeps its own copy
        return subprocess.Popen(
            command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def wait_for_http(path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not answer {path}")


def submit_to_executed(key: str, samples: int) -> dict:
    import django

    django.setup()
    from approvals.models import Proposal

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    server_side, client_side = [], []
    for i in range(samples):
        body = {
            "action_type": "bid_adjustment",
            "account": "demo",
            "payload": {"campaign": "brand-search", "new_bid": "2.04" if i % 2 == 0 else "2.00"},
            "rationale": "Benchmark latency sample.",
            "confidence": 0.9,
        }
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        connection.request("POST", "/api/v1/proposals/", json.dumps(body), headers)
        response = connection.getresponse()
        proposal_id = json.loads(response.read())["id"]
        while True:
            proposal = (
                Proposal.objects.filter(pk=proposal_id)
                .values("status", "created_at", "executed_at")
                .get()
            )
            if proposal["status"] == "executed":
                break
            if proposal["status"] not in ("submitted", "approved", "executing"):
                raise SystemExit(f"proposal {proposal_id} ended {proposal['status']}")
            time.sleep(0.002)
        client_side.append(time.perf_counter() - started)
        server_side.append((proposal["executed_at"] - proposal["created_at"]).total_seconds())
    return {
        "samples": samples,
        "server_p50_ms": round(percentile(server_side, 0.50) * 1000, 1),
        "server_p99_ms": round(percentile(server_side, 0.99) * 1000, 1),
        "client_p50_ms": round(percentile(client_side, 0.50) * 1000, 1),
        "client_p99_ms": round(percentile(client_side, 0.99) * 1000, 1),
        "client_mean_ms": round(statistics.mean(client_side) * 1000, 1),
    }


def purge_queue() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).delete(QUEUE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--latency-samples", type=int, default=200)
    args = parser.parse_args()

    (REPO / "bench" / "results").mkdir(exist_ok=True)
    create_database(DATABASE_URL)
    manage("migrate", "--run-syncdb", "-v0")
    key = json.loads(manage("seed_demo", "--json"))["agents"]["optimizer"]

    # Served as production serves the platform (the Procfile's web: uvicorn workers under
    # gunicorn), the baseline endpoint beside the API in the same processes.
    web = start(
        [sys.executable, "-m", "gunicorn", "bench.asgi:application",
         "--worker-class", "hitlproject.webserver.WebWorker", "--bind", f"127.0.0.1:{PORT}",
         "--workers", str(args.web_workers), "--log-level", "warning"],
        "gunicorn.log",
    )  # fmt: skip
    try:
        wait_for_http("/healthz")
        warmup = bid_bodies(200)
        load("/bench/insert/", warmup, {}, args.concurrency)
        load("/api/v1/proposals/", warmup, {"Authorization": f"Bearer {key}"}, args.concurrency)
        bodies = bid_bodies(args.requests)
        baseline = load("/bench/insert/", bodies, {}, args.concurrency)
        api = load(
            "/api/v1/proposals/", bodies, {"Authorization": f"Bearer {key}"}, args.concurrency
        )
        purge_queue()

        worker = start(
            [sys.executable, "-m", "celery", "-A", "hitlproject", "worker", "--queues", QUEUE,
             "--concurrency", "2", "--loglevel", "warning", "--without-gossip", "--without-mingle"],
            "worker.log",
        )  # fmt: skip
        try:
            time.sleep(3)
            latency = submit_to_executed(key, args.latency_samples)
        finally:
            stop(worker)
    finally:
        stop(web)
        purge_queue()

    results = {
        "setup": {
            "database": "postgresql",
            "broker": "redis",
            "web_workers": args.web_workers,
            "concurrency": args.concurrency,
            "cores": os.cpu_count(),
        },
        "submit_throughput": {"baseline_bare_insert": baseline, "api_submit": api},
        "submit_to_executed_auto_approved": latency,
    }
    (REPO / "bench" / "results" / "agent_api.json").write_text(json.dumps(results, indent=2))
    print(report(results, args))


def report(results: dict, args: argparse.Namespace) -> str:
    baseline = results["submit_throughput"]["baseline_bare_insert"]
    api = results["submit_throughput"]["api_submit"]
    latency = results["submit_to_executed_auto_approved"]
    ratio = api["requests_per_second"] / baseline["requests_per_second"]
    rows = [("bare Django insert (baseline)", baseline), ("POST /api/v1/proposals/", api)]
    return "\n".join(
        [
            f"Submission over HTTP: {args.requests} requests, {args.concurrency} concurrent, "
            f"{args.web_workers} gunicorn workers, {os.cpu_count()} cores",
            f"  {'':30} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}",
            *(
                f"  {label:30} {r['requests_per_second']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8}"
                for label, r in rows
            ),
            f"  API throughput is {ratio:.2f} of the baseline's",
            f"Submit to executed, auto-approved bid adjustment, {latency['samples']} samples:",
            f"  server, created_at to executed_at: p50 {latency['server_p50_ms']} ms, "
            f"p99 {latency['server_p99_ms']} ms",
            f"  client, POST sent to seen executed: p50 {latency['client_p50_ms']} ms, "
            f"p99 {latency['client_p99_ms']} ms",
        ]
    )


if __name__ == "__main__":
    main()
