"""Where a submission's time goes: cProfile of the agent API in process, on PostgreSQL + Redis.

1. Single submissions: POST /api/v1/proposals/ (with an Idempotency-Key) through Django's
   test client (middleware, authentication, throttle, DRF, the service; no web server), each a
   small bid change on a campaign of its own, which the policy approves; then the worker's
   part for them (the tasks the submissions queued, and those those queued: evaluation,
   execution), run in process from the Redis queue as a worker would run them. Beside them,
   the same bodies to `bin/bench api`'s baseline, a plain DRF create with a history record.
2. One 1,000-item batch: POST /api/v1/proposals/batch/, then the worker's part for it.

For each, unprofiled: the wall time per proposal, the statements per proposal, and the CPU time
spent here and in the database server's process serving this connection (read from /proc: the
local PostgreSQL), which together bound what two cores can serve; then the top entries of the
profile by cumulative and by own time, per proposal. The profiles are written to
bench/results/profile-*.prof (open with ``python -m pstats`` or snakeviz), the report to
bench/results/profile.txt and profile.json.

Run with ``bin/bench profile``, before and after a change to the submission path. Its database
(BENCH_DATABASE_URL's name + ``_profile``) is made anew at each run.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import json
import os
import pstats
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    bench_database,
    create_database,
    make_campaigns,
    temporary_data_dir,
)
from hitlproject.long_lived import keep_for_life, load_views  # noqa: E402

DATABASE_URL = bench_database("profile")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = f"bench-profile-{uuid.uuid4().hex[:8]}"
os.environ.update(
    DJANGO_SETTINGS_MODULE="bench.settings",  # the platform's, and the DRF baseline's endpoint
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=REDIS_URL,
    HITL_CELERY_QUEUE=QUEUE,
    HITL_API_THROTTLE_RATE="100000000/min",
    # Each execution alone, as a single submission's is when nothing else waits: the worker
    # part runs a measure's tasks only after all its submissions, which would otherwise be
    # taken along by the first.
    HITL_EXECUTION_TAKES_ALONG="0",
    HITL_LOG_LEVEL="WARNING",
    HITL_DATA_DIR=temporary_data_dir("hitl-bench-profile-"),
)
RESULTS = REPO / "bench" / "results"
TOP = 10
# Frames that only pass the call on (the benchmark's own, the test client, Django's handler,
# the middleware, Celery's retry wrapper): left out of the cumulative table, where they would
# fill the top with the same total. Their own time stays in the other table.
PROJECT = ("approvals/", "policies/", "audit/", "ledger/", "feedback/", "access/", "hitlproject/")
WRAPPERS = (
    "bench/",
    "django/test/",
    "django/core/handlers/",
    "django/utils/deprecation.py",
    "middleware.py",
    "django/views/decorators/",
    "django/views/generic/base.py",
    "asgiref/",
    "celery/app/autoretry.py",
    "celery/app/task.py",
    "contextlib.py",
    "<built-in method builtins.exec>",
)
CAMPAIGNS = 4000


def setup() -> tuple[str, list[str]]:
    import django

    create_database(DATABASE_URL, fresh=True)
    django.setup()
    from io import StringIO

    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("migrate", run_syncdb=True, verbosity=0)  # the baseline's tables
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    key = json.loads(out.getvalue())["agents"]["optimizer"]
    return key, make_campaigns(CAMPAIGNS)


def proposal(campaign: str) -> dict:
    return {
        "action_type": "bid_adjustment",
        "account": "demo",
        "payload": {"campaign": campaign, "new_bid": "1.05"},
        "rationale": "Benchmark: CPC below target for five days.",
        "supporting_data": {"cpc": [1.1, 1.05, 1.02, 0.98, 0.97]},
        "confidence": 0.9,
    }


class Agent:
    """The agent's side, through Django's test client."""

    def __init__(self, key: str) -> None:
        from django.test import Client

        self.client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {key}")
        self.sent = 0

    def post(self, path: str, body, expect: int):
        self.sent += 1
        response = self.client.post(
            path,
            json.dumps(body),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=f"profile-{self.sent}",
        )
        if response.status_code != expect:
            raise SystemExit(f"{path}: HTTP {response.status_code} {response.content[:300]!r}")
        return response


def run_worker_part() -> int:
    """Run, in process, the tasks waiting in the queue, and those they queue, as a worker
    would; returns how many ran."""
    import redis

    from hitlproject.celery import app

    # Every app's tasks, as a worker imports them when it starts (executions are sent by name:
    # nothing in the request's path imports the executors' tasks).
    app.loader.import_default_modules()
    client = redis.Redis.from_url(REDIS_URL)
    ran = 0
    while (raw := client.rpop(QUEUE)) is not None:
        message = json.loads(raw)
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, kwargs, _ = json.loads(body)
        app.tasks[message["headers"]["task"]].run(*args, **kwargs)
        ran += 1
    return ran


def purge_queues() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for name in (QUEUE, f"{QUEUE}.webhooks", f"{QUEUE}.callbacks"):
        client.delete(name)


def database_cpu_seconds() -> float | None:
    """CPU time the database server's process for this connection has used, read from
    /proc (the bench's PostgreSQL runs on this machine); None where it cannot be read."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime, the 14th and 15th fields of the whole line, in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(call) -> tuple[float, dict]:
    """Wall ms of ``call()``, unprofiled; the statements and commits it sent; and the CPU ms
    it took in this process and in the database server's process serving it."""
    from collections import deque

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    connection.queries_log = deque(maxlen=10_000_000)  # Django keeps 9,000 by default
    database_before = database_cpu_seconds()
    with CaptureQueriesContext(connection) as captured:
        cpu_started, started = time.process_time(), time.perf_counter()
        call()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    database_after = database_cpu_seconds()
    sent = [query["sql"] for query in captured.captured_queries]
    commits = sent.count("COMMIT")
    statements = sum(sql not in ("BEGIN", "COMMIT", "ROLLBACK") for sql in sent)
    database_ms = (
        None
        if database_before is None or database_after is None
        else round((database_after - database_before) * 1000, 1)
    )
    return elapsed * 1000, {
        "statements": statements,
        "commits": commits,
        "cpu_ms": round(cpu * 1000, 1),
        "database_cpu_ms": database_ms,
    }


def top_entries(profile: cProfile.Profile, per: int) -> dict:
    """The top entries by cumulative and by own time, in ms per proposal."""
    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, function), (_, calls, own, cumulative, _) in stats.stats.items():
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({function})",
                "calls_per_proposal": round(calls / per, 2),
                "own_ms": round(own * 1000 / per, 3),
                "cumulative_ms": round(cumulative * 1000 / per, 3),
            }
        )
    total = sum(row["own_ms"] for row in rows)
    return {
        "profiled_ms_per_proposal": round(total, 2),
        "by_cumulative": sorted(
            (row for row in rows if not any(w in row["function"] for w in WRAPPERS)),
            key=lambda r: -r["cumulative_ms"],
        )[:TOP],
        "by_own": sorted(rows, key=lambda r: -r["own_ms"])[:TOP],
        "project_by_cumulative": sorted(
            (
                row
                for row in rows
                if row["function"].startswith(PROJECT)
                and not any(w in row["function"] for w in WRAPPERS)
            ),
            key=lambda r: -r["cumulative_ms"],
        )[:TOP],
    }


def _short(filename: str) -> str:
    for prefix in (str(REPO) + "/", "site-packages/"):
        if prefix in filename:
            return filename.split(prefix, 1)[1]
    return filename.rsplit("/", 1)[-1] if "/" in filename else filename


def profiled(name: str, call, per: int) -> dict:
    profile = cProfile.Profile()
    profile.enable()
    call()
    profile.disable()
    profile.dump_stats(RESULTS / f"profile-{name}.prof")
    return top_entries(profile, per)


def per(counts: dict, proposals: int) -> dict:
    return {
        name: None if value is None else round(value / proposals, 2)
        for name, value in counts.items()
    }


def single_submissions(agent: Agent, campaigns: list[str], count: int) -> dict:
    take = iter(campaigns)

    def submit(n: int) -> None:
        for _ in range(n):
            agent.post("/api/v1/proposals/", proposal(next(take)), 201)

    def baseline(n: int) -> None:
        # The same bodies to `bin/bench api`'s plain DRF create with a history record.
        for _ in range(n):
            agent.post("/bench/drf/", proposal(next(take)), 201)

    submit(20)  # warm-up: imports, caches, connections
    run_worker_part()
    baseline(20)

    baseline_ms, baseline_queries = timed(lambda: baseline(count))
    request_ms, request_queries = timed(lambda: submit(count))
    worker_ms, worker_queries = timed(run_worker_part)

    request = profiled("single-request", lambda: submit(count), count)
    worker = profiled("single-worker", run_worker_part, count)
    return {
        "proposals": count,
        "drf_baseline": {"wall_ms_per_proposal": round(baseline_ms / count, 2),
                         **per(baseline_queries, count)},
        "request": {"wall_ms_per_proposal": round(request_ms / count, 2),
                    **per(request_queries, count), **request},
        "worker": {"wall_ms_per_proposal": round(worker_ms / count, 2),
                   **per(worker_queries, count), **worker},
    }  # fmt: skip


def batch(agent: Agent, campaigns: list[str], size: int) -> dict:
    take = iter(campaigns)

    def send(n: int) -> None:
        items = [proposal(next(take)) for _ in range(n)]
        agent.post("/api/v1/proposals/batch/", items, 200)

    send(100)  # warm-up
    run_worker_part()

    request_ms, request_queries = timed(lambda: send(size))
    worker_ms, worker_queries = timed(run_worker_part)

    request = profiled("batch-request", lambda: send(size), size)
    worker = profiled("batch-worker", run_worker_part, size)
    return {
        "items": size,
        "request": {"wall_ms": round(request_ms, 1), **request_queries, **request},
        "worker": {"wall_ms": round(worker_ms, 1), **worker_queries, **worker},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    single_needs, batch_needs = 40 + 3 * args.submissions, 100 + 2 * args.batch_size
    if single_needs + batch_needs > CAMPAIGNS:
        raise SystemExit(f"{CAMPAIGNS:,} campaigns are made: fewer submissions or a smaller batch")
    key, campaigns = setup()
    # As a serving process does before its first request (hitlproject.long_lived): what is
    # loaded is left out of later collections, which would otherwise walk it during a batch.
    load_views()
    keep_for_life()
    agent = Agent(key)
    try:
        single = single_submissions(agent, campaigns[:single_needs], args.submissions)
        batched = batch(agent, campaigns[single_needs:], args.batch_size)
    finally:
        purge_queues()
    results = {"single_submission": single, "batch": batched}
    (RESULTS / "profile.json").write_text(json.dumps(results, indent=2))
    text = report(results)
    (RESULTS / "profile.txt").write_text(text + "\n")
    print(text)


def _table(title: str, entries: dict) -> list[str]:
    lines = [
        f"  {title}: {entries['profiled_ms_per_proposal']} ms per proposal under the profiler",
        f"    {'by cumulative time':<74} {'calls':>7} {'cum ms':>8} {'own ms':>8}",
    ]
    for row in entries["by_cumulative"]:
        lines.append(
            f"    {row['function'][:74]:<74} {row['calls_per_proposal']:>7} "
            f"{row['cumulative_ms']:>8} {row['own_ms']:>8}"
        )
    for title, key in (("by own time", "by_own"), ("the project's code", "project_by_cumulative")):
        lines.append(f"    {title:<74} {'calls':>7} {'cum ms':>8} {'own ms':>8}")
        for row in entries[key]:
            lines.append(
                f"    {row['function'][:74]:<74} {row['calls_per_proposal']:>7} "
                f"{row['cumulative_ms']:>8} {row['own_ms']:>8}"
            )
    return lines


def _cpu(measure: dict) -> str:
    database = measure["database_cpu_ms"]
    return f"CPU {measure['cpu_ms']} ms here and " + (
        "the database server's unread"
        if database is None
        else f"{database} ms in the database server"
    )


def report(results: dict) -> str:
    single, batched = results["single_submission"], results["batch"]
    lines = [
        f"One submission (mean of {single['proposals']}), in process on PostgreSQL + Redis:",
        f"  request: {single['request']['wall_ms_per_proposal']} ms, "
        f"{single['request']['statements']} statements, {single['request']['commits']} commits, "
        f"{_cpu(single['request'])}",
        f"  baseline, a plain DRF create with a history record: "
        f"{single['drf_baseline']['wall_ms_per_proposal']} ms, "
        f"{single['drf_baseline']['statements']} statements, "
        f"{single['drf_baseline']['commits']} commits, {_cpu(single['drf_baseline'])}",
        f"  worker (evaluate, execute): {single['worker']['wall_ms_per_proposal']} ms, "
        f"{single['worker']['statements']} statements, {single['worker']['commits']} commits, "
        f"{_cpu(single['worker'])}",
        *_table("request", single["request"]),
        *_table("worker", single["worker"]),
        f"A {batched['items']}-item batch:",
        f"  request: {batched['request']['wall_ms']} ms "
        f"({batched['items'] / batched['request']['wall_ms'] * 1000:.0f} items/s), "
        f"{batched['request']['statements']} statements, {batched['request']['commits']} "
        f"commits, {_cpu(batched['request'])}",
        f"  worker: {batched['worker']['wall_ms']} ms, {batched['worker']['statements']} "
        f"statements, {batched['worker']['commits']} commits, {_cpu(batched['worker'])}",
        *_table("request, per item", batched["request"]),
        *_table("worker, per item", batched["worker"]),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
