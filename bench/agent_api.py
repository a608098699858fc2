"""Benchmarks of the agent API, on PostgreSQL and Redis, as it runs in production.

Served by gunicorn with the Procfile's uvicorn workers, the Procfile's worker (bin/worker)
running beside it; every request from the same asyncio load generator (bench/loadgen.py).

1. Single submissions: POST /api/v1/proposals/ (with an Idempotency-Key, as an agent retrying
   safely sends it) against two baselines served by the same processes in the same run, with
   the same bodies: a bare Django view that parses the JSON and inserts one row, and a plain
   DRF create endpoint (generic view, model serializer) whose model keeps its history with
   django-simple-history. Each proposal is a small bid change on a campaign of its own, so
   the policy approves it and the worker executes it. The evaluation backlog when the load
   ends (proposals still ``submitted``) and how long it takes to drain are reported too.
   Goal (issue 12): at 8 clients, at least 2x the DRF baseline, p99 under 100 ms.
2. Submit to executed, an auto-approved bid adjustment, one at a time: the API call, the
   evaluation and the execution through Redis and the worker. Goal: p50 < 50 ms, p99 < 150 ms.
3. Batches: 1,000-item batches to POST /api/v1/proposals/batch/ from a few concurrent
   clients, each item a small bid change on a campaign of its own (1,000s of campaigns on the
   demo account, each within the 25% cumulative ceiling): proposals accepted per second, how
   many were evaluated (no longer ``submitted``) when the answers came, when every one was,
   and how long after the last answer every auto-approved item was executed.
   Goal: 10,000 proposals/s accepted and evaluated, executed within 2 s of the answer.

Run with ``bin/bench api``. Its database (BENCH_DATABASE_URL's name + ``_api``) is made anew at
each run. The load generator runs on the same machine as the servers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    bench_database,
    create_database,
    free_port,
    make_campaigns,
    percentile,
    start_process,
    stop_process_group,
    temporary_data_dir,
    wait_for_http,
)
from bench.loadgen import post_load  # noqa: E402

DATABASE_URL = bench_database("api")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = f"bench-{uuid.uuid4().hex[:8]}"
PORT = int(os.environ.get("BENCH_PORT", "0")) or free_port()
MARKER = f"HITL_BENCH_RUN={QUEUE}"
RESULTS = REPO / "bench" / "results"

os.environ.update(
    DJANGO_SETTINGS_MODULE="bench.settings",
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=REDIS_URL,
    HITL_CELERY_QUEUE=QUEUE,
    HITL_API_THROTTLE_RATE="100000000/min",
    HITL_LOG_LEVEL="WARNING",
    CELERY_LOG_LEVEL="warning",
    HITL_DATA_DIR=temporary_data_dir("hitl-bench-api-"),
    HITL_BENCH_RUN=QUEUE,  # marks every process this run starts
)

CAMPAIGN_BID = "1.00"
SMALL_MOVE = "1.05"  # +5%: under the demo policy's 15% auto-approval limit and 25% ceiling


def manage(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout


class Campaigns:
    """Campaigns of the demo account made for the benchmark, handed out one per proposal."""

    def __init__(self, count: int) -> None:
        self.names = make_campaigns(count, bid=CAMPAIGN_BID)
        self.next = 0

    def take(self, count: int) -> list[str]:
        if self.next + count > len(self.names):
            raise SystemExit("the benchmark made too few campaigns for its measures")
        taken = self.names[self.next : self.next + count]
        self.next += count
        return taken


def proposal(campaign: str, ref: str) -> dict:
    return {
        "action_type": "bid_adjustment",
        "account": "demo",
        "payload": {"campaign": campaign, "new_bid": SMALL_MOVE},
        "rationale": "Benchmark: CPC below target for five days.",
        "supporting_data": {"cpc": [1.1, 1.05, 1.02, 0.98, 0.97]},
        "confidence": 0.9,
        "external_ref": ref,
    }


def agent_headers(key: str, idempotency_key: str | None) -> dict:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def counts_by_status(ids_from: int) -> dict[str, int]:
    from django.db.models import Count

    from approvals.models import Proposal

    return dict(
        Proposal.objects.filter(pk__gt=ids_from)
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )


def last_proposal_id() -> int:
    from approvals.models import Proposal

    return Proposal.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def wait_until(condition, timeout: float) -> float | None:
    """Seconds until ``condition()`` held, or None after ``timeout``. Polled every 20 ms at
    first, then less often (at most every 250 ms), so that a long wait does not load the
    database it waits on."""
    started = time.perf_counter()
    while not condition():
        elapsed = time.perf_counter() - started
        if elapsed > timeout:
            return None
        time.sleep(min(0.25, 0.02 + elapsed / 100))
    return time.perf_counter() - started


# --- 1. single submissions -----------------------------------------------------------------


def single_submissions(key: str, campaigns: Campaigns, args) -> dict:
    json_headers = {"Content-Type": "application/json"}

    def bodies(tag: str, count: int) -> list[dict]:
        return [proposal(c, f"{tag}-{i}") for i, c in enumerate(campaigns.take(count))]

    def api(tag: str, items: list[dict]) -> dict:
        before = last_proposal_id()
        use_key = not args.no_idempotency_key
        result = post_load(
            port=PORT,
            path="/api/v1/proposals/",
            bodies=[json.dumps(item).encode() for item in items],
            headers=[
                agent_headers(key, f"{tag}-{i}" if use_key else None) for i in range(len(items))
            ],
            clients=args.concurrency,
        )
        result["backlog_at_end"] = counts_by_status(before).get("submitted", 0)
        result["backlog_drained_seconds"] = wait_until(
            lambda: not counts_by_status(before).get("submitted"), args.drain_timeout
        )
        # Executions too, before the next measure.
        wait_until(
            lambda: not {"approved", "executing"} & set(counts_by_status(before)),
            args.drain_timeout,
        )
        return result

    def baseline(path: str, items: list[dict]) -> dict:
        return post_load(
            port=PORT,
            path=path,
            bodies=[json.dumps(item).encode() for item in items],
            headers=json_headers,
            clients=args.concurrency,
        )

    warm = bodies("warm", 100)
    baseline("/bench/insert/", warm)
    baseline("/bench/drf/", warm)
    api("warm", warm)
    rounds = []
    for round_ in range(args.rounds):
        items = bodies(f"r{round_}", args.requests)
        rounds.append(
            {
                "bare_insert": baseline("/bench/insert/", items),
                "drf_create_with_history": baseline("/bench/drf/", items),
                "api_submit": api(f"r{round_}", items),
            }
        )
    return {"rounds": rounds}


# --- 2. submit to executed -----------------------------------------------------------------


def submit_to_executed(key: str, campaigns: Campaigns, samples: int) -> dict:
    import http.client

    from approvals.models import Proposal

    server_side, client_side = [], []
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    for i, campaign in enumerate(campaigns.take(samples)):
        body = json.dumps(proposal(campaign, f"latency-{i}"))
        started = time.perf_counter()
        connection.request("POST", "/api/v1/proposals/", body, agent_headers(key, f"latency-{i}"))
        response = connection.getresponse()
        answer = json.loads(response.read())
        if response.status != 201:
            raise SystemExit(f"latency sample refused: HTTP {response.status} {answer}")
        proposal_id = answer["id"]
        while True:
            row = (
                Proposal.objects.filter(pk=proposal_id)
                .values("status", "created_at", "executed_at")
                .get()
            )
            if row["status"] == "executed":
                break
            if row["status"] not in ("submitted", "approved", "executing"):
                raise SystemExit(f"proposal {proposal_id} ended {row['status']}")
            time.sleep(0.002)
        client_side.append(time.perf_counter() - started)
        server_side.append((row["executed_at"] - row["created_at"]).total_seconds())
    connection.close()
    return {
        "samples": samples,
        "server_p50_ms": round(percentile(server_side, 0.50) * 1000, 1),
        "server_p99_ms": round(percentile(server_side, 0.99) * 1000, 1),
        "client_p50_ms": round(percentile(client_side, 0.50) * 1000, 1),
        "client_p99_ms": round(percentile(client_side, 0.99) * 1000, 1),
        "client_mean_ms": round(statistics.mean(client_side) * 1000, 1),
    }


# --- 3. batches ----------------------------------------------------------------------------


def batches(key: str, campaigns: Campaigns, args) -> dict:
    size, count = args.batch_size, args.batches
    bodies, headers = [], []
    for b in range(count):
        items = [proposal(c, f"batch-{b}-{i}") for i, c in enumerate(campaigns.take(size))]
        bodies.append(json.dumps(items).encode())
        headers.append(agent_headers(key, f"batch-{b}"))
    before = last_proposal_id()
    started = time.perf_counter()
    load = post_load(
        port=PORT,
        path="/api/v1/proposals/batch/",
        bodies=bodies,
        headers=headers,
        clients=args.batch_clients,
        timeout=600,
        ok_statuses=(200,),
    )
    answered = time.perf_counter()
    at_answer = counts_by_status(before)

    def evaluated() -> bool:
        return not counts_by_status(before).get("submitted")

    def executed() -> bool:
        return not {"submitted", "approved", "executing"} & set(counts_by_status(before))

    all_evaluated = wait_until(evaluated, args.drain_timeout)
    all_executed = wait_until(executed, args.drain_timeout)
    at_end = counts_by_status(before)
    created = sum(at_answer.values())
    evaluated_after = None if all_evaluated is None else answered - started + all_evaluated
    return {
        "batch_size": size,
        "batches": count,
        "clients": args.batch_clients,
        "requests": load,
        "proposals_created": created,
        "accepted_per_second": round(created / (answered - started), 1),
        "evaluated_when_answered": created - at_answer.get("submitted", 0),
        "all_evaluated_seconds_from_start": round(evaluated_after, 2)
        if evaluated_after is not None
        else None,
        "accepted_and_evaluated_per_second": round(created / evaluated_after, 1)
        if evaluated_after
        else None,
        "all_auto_approved_executed_seconds_after_answer": None
        if all_executed is None or all_evaluated is None
        else round(all_evaluated + all_executed, 2),
        "by_status_when_answered": at_answer,
        "by_status_at_end": at_end,
    }


# --- The run -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="Per single-submission measure.")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-clients", type=int, default=3)
    parser.add_argument("--drain-timeout", type=float, default=600)
    parser.add_argument("--no-idempotency-key", action="store_true")
    args = parser.parse_args()

    RESULTS.mkdir(exist_ok=True)
    create_database(DATABASE_URL, fresh=True)
    manage("migrate", "-v0")
    manage("migrate", "--run-syncdb", "-v0")  # the baselines' tables (the history's refers to auth)
    key = json.loads(manage("seed_demo", "--json"))["agents"]["optimizer"]

    import django

    django.setup()
    campaigns = Campaigns(
        100 + args.requests * args.rounds + args.latency_samples + args.batch_size * args.batches
    )

    # The Procfile's web (uvicorn workers under gunicorn, the baselines beside the API in the
    # same processes) and its worker.
    web = start_process(
        [sys.executable, "-m", "gunicorn", "bench.asgi:application",
         "--worker-class", "hitlproject.webserver.WebWorker", "--bind", f"127.0.0.1:{PORT}",
         "--workers", str(args.web_workers), "--log-level", "warning"],
        RESULTS / "gunicorn.log", cwd=REPO,
    )  # fmt: skip
    worker = start_process([str(REPO / "bin" / "worker")], RESULTS / "worker.log", cwd=REPO)
    try:
        wait_for_http(PORT, "/healthz", process=web)
        time.sleep(3)  # the worker connecting to Redis
        single = single_submissions(key, campaigns, args)
        latency = submit_to_executed(key, campaigns, args.latency_samples)
        batch = batches(key, campaigns, args)
    finally:
        stop_process_group(web)
        stop_process_group(worker)
        stop_process_group(web, MARKER)  # anything either left behind
        purge_queues()

    results = {
        "setup": {
            "database": "postgresql",
            "broker": "redis",
            "web_workers": args.web_workers,
            "worker": "bin/worker",
            "concurrency": args.concurrency,
            "idempotency_key": not args.no_idempotency_key,
            "cores": os.cpu_count(),
        },
        "single_submissions": single,
        "submit_to_executed_auto_approved": latency,
        "batches": batch,
    }
    (RESULTS / "agent_api.json").write_text(json.dumps(results, indent=2))
    print(report(results, args))


def purge_queues() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for name in (QUEUE, f"{QUEUE}.webhooks", f"{QUEUE}.callbacks"):
        client.delete(name)


def report(results: dict, args: argparse.Namespace) -> str:
    lines = [
        f"Single submissions over HTTP: {args.requests} requests, {args.concurrency} clients, "
        f"{args.web_workers} gunicorn workers and bin/worker, {os.cpu_count()} cores",
        f"  {'':34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}",
    ]
    labels = {
        "bare_insert": "bare Django insert (baseline)",
        "drf_create_with_history": "DRF create + history (baseline)",
        "api_submit": "POST /api/v1/proposals/",
    }
    for number, round_ in enumerate(results["single_submissions"]["rounds"], 1):
        if args.rounds > 1:
            lines.append(f"  round {number}")
        for name, label in labels.items():
            r = round_[name]
            lines.append(
                f"  {label:34} {r['creates_per_second']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} "
                f"{r['errors']:>7}"
            )
        api = round_["api_submit"]
        drf = round_["drf_create_with_history"]["creates_per_second"]
        bare = round_["bare_insert"]["creates_per_second"]
        lines.append(
            f"  API: {api['creates_per_second'] / drf:.2f}x the DRF baseline (goal >= 2), "
            f"{api['creates_per_second'] / bare:.2f}x the "
            f"bare insert; p99 {api['p99_ms']} ms (goal < 100)"
        )
        lines.append(
            f"  evaluation backlog when the load ended: {api['backlog_at_end']} proposals still "
            f"submitted, drained in {_seconds(api['backlog_drained_seconds'])}"
        )
    latency = results["submit_to_executed_auto_approved"]
    lines += [
        f"Submit to executed, auto-approved bid adjustment, {latency['samples']} samples "
        "(goal p50 < 50 ms, p99 < 150 ms):",
        f"  server, created_at to executed_at: p50 {latency['server_p50_ms']} ms, "
        f"p99 {latency['server_p99_ms']} ms",
        f"  client, POST sent to seen executed: p50 {latency['client_p50_ms']} ms, "
        f"p99 {latency['client_p99_ms']} ms",
    ]
    b = results["batches"]
    lines += [
        f"Batches: {b['batches']} of {b['batch_size']} items from {b['clients']} clients "
        "(goal 10,000 proposals/s accepted and evaluated, executed within 2 s of the answer):",
        f"  requests: p50 {b['requests']['p50_ms']} ms, max {b['requests']['max_ms']} ms, "
        f"errors {b['requests']['errors']}",
        f"  accepted: {b['accepted_per_second']} proposals/s; evaluated when answered: "
        f"{b['evaluated_when_answered']} of {b['proposals_created']}",
        f"  every item evaluated {_seconds(b['all_evaluated_seconds_from_start'])} after the "
        f"first request: {b['accepted_and_evaluated_per_second']} proposals/s accepted and "
        "evaluated",
        f"  every auto-approved item executed "
        f"{_seconds(b['all_auto_approved_executed_seconds_after_answer'])} after the last answer",
        f"  by status at the end: {b['by_status_at_end']}",
    ]
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "not within the timeout" if value is None else f"{value:.2f} s"


if __name__ == "__main__":
    main()
