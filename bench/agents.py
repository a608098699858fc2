"""Benchmarks of agents waiting for decisions (long poll, ``?wait=``), on PostgreSQL and Redis,
as it runs in production: gunicorn with the Procfile's uvicorn workers, bin/worker beside it,
every agent an asyncio client of bench/loadgen.py's kind (one kept-alive connection each).

1. Decision to waiting agent informed: proposals wait for a person (a +25% bid change each, on
   a campaign of its own); an operator (this process, through the services the console calls)
   approves them one after another, 0.1 s apart, 20 agents of each kind waiting at a time
   (``--waiting-at-once``), alternating between proposals an agent long-polls
   (``?wait=60&status=pending_review``) and proposals an agent polls once a second (the
   baseline, the closest peer's design), both in the same run. Latency: from the approve call
   to the agent holding the answer that says approved. Goal: p50 < 100 ms, p99 < 300 ms over
   200 decisions.
2. Others' latency while many agents wait: another agent's submissions (small bid changes,
   executed by the worker) from a few clients, p50 and p99, with no agent waiting and with 500
   agents (each an agent of its own, on its own proposal) long-polling at once, alternately, in
   rounds. Goal: within 20% of the run with none
   waiting. The web processes' threads, memory and PostgreSQL connections are read while they
   wait.

Run with ``bin/bench agents``. Its database (BENCH_DATABASE_URL's name + ``_agents``) is made
anew at each run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
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
    manage,
    memory_of,
    percentile,
    processes_with_env,
    start_process,
    stop_process_group,
    temporary_data_dir,
    wait_for_http,
)
from bench.loadgen import Connection, LoadResult  # noqa: E402

DATABASE_URL = bench_database("agents")
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
    HITL_DATA_DIR=temporary_data_dir("hitl-bench-agents-"),
    HITL_BENCH_RUN=QUEUE,  # marks every process this run starts
)

# On campaigns bid at 1.00 (bench.common.make_campaigns):
BIG_MOVE = "1.25"  # +25%: over the demo policy's 15%, waits for a person
SMALL_MOVE = "1.05"  # +5%: approved by the policy, executed by the worker


def make_agents(count: int) -> list[str]:
    """``count`` agents on the demo account: their API keys."""
    from approvals.models import AgentKind
    from approvals.services.agents import agent_create
    from audit.actors import Actor
    from ledger.models import Account

    account = Account.objects.get(external_id="demo")
    return [
        agent_create(
            name=f"waiter-{i:04d}",
            kind=AgentKind.OPTIMIZATION,
            accounts=[account],
            owner=None,
            callback_url="",
            actor=Actor.system("bench"),
        )[1]
        for i in range(count)
    ]


def proposal(campaign: str, new_bid: str) -> dict:
    return {
        "action_type": "bid_adjustment",
        "account": "demo",
        "payload": {"campaign": campaign, "new_bid": new_bid},
        "rationale": "Benchmark: CPC below target for five days.",
        "confidence": 0.9,
    }


def headers(key: str) -> dict:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def submit_pending(key: str, campaigns: list[str]) -> list[int]:
    """Proposals that wait for a person, one per campaign (one batch request)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
    body = json.dumps([proposal(campaign, BIG_MOVE) for campaign in campaigns])
    connection.request("POST", "/api/v1/proposals/batch/", body, headers(key))
    response = connection.getresponse()
    results = json.loads(response.read())
    connection.close()
    ids = [item["proposal"]["id"] for item in results if item["status"] == 201]
    statuses = {item["proposal"]["status"] for item in results if item["status"] == 201}
    if len(ids) != len(campaigns) or statuses != {"pending_review"}:
        raise SystemExit(f"pending proposals not made: {results[:2]}")
    return ids


def status_of(body: bytes) -> str:
    return json.loads(body)["status"]


# --- 1. decision to waiting agent informed -------------------------------------------------


async def decisions_to_agents(key: str, campaigns: list[str], args) -> dict:
    from django.contrib.auth import get_user_model

    from approvals.services.decisions import proposal_approve

    count = args.decisions
    ids = submit_pending(key, campaigns[: 2 * count])
    long_polled, polled = ids[0::2], ids[1::2]
    decided_at: dict[int, float] = {}
    informed_at: dict[int, float] = {}
    errors: list[str] = []
    done = asyncio.Event()

    async def long_polling_agent(proposal_id: int) -> None:
        connection = Connection("127.0.0.1", PORT, timeout=90)
        path = f"/api/v1/proposals/{proposal_id}/?wait=60&status=pending_review"
        try:
            while True:
                status, body = await connection.request("GET", path, b"", headers(key))
                if status != 200:
                    errors.append(f"HTTP {status}: {body[:200]!r}")
                    return
                if status_of(body) != "pending_review":
                    informed_at[proposal_id] = time.perf_counter()
                    return
        finally:
            await connection.close()

    async def polling_agent(proposal_id: int) -> None:
        connection = Connection("127.0.0.1", PORT, timeout=90)
        path = f"/api/v1/proposals/{proposal_id}/"
        await asyncio.sleep(random.random())  # agents poll out of step with one another
        try:
            while not done.is_set():
                started = time.perf_counter()
                status, body = await connection.request("GET", path, b"", headers(key))
                if status != 200:
                    errors.append(f"HTTP {status}: {body[:200]!r}")
                    return
                if status_of(body) != "pending_review":
                    informed_at[proposal_id] = time.perf_counter()
                    return
                await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))
        finally:
            await connection.close()

    def operator_decides(chunk: list[int]) -> None:
        time.sleep(2)  # every agent of the chunk waiting (or polling)
        for proposal_id in chunk:
            decided_at[proposal_id] = time.perf_counter()
            proposal_approve(proposal_id=proposal_id, reviewer=operator)
            time.sleep(args.decision_interval)

    operator = await asyncio.to_thread(get_user_model().objects.get, username="operator")
    # As a person decides: a few agents wait at a time (--waiting-at-once of each kind), not
    # every agent of the run at once (200 agents polling every second would be a load test of
    # the polling, and decisions queued behind it would measure the queue).
    window = args.waiting_at_once
    for start in range(0, count, window):
        chunk_long, chunk_polled = (
            long_polled[start : start + window],
            polled[start : start + window],
        )
        done.clear()
        agents = [asyncio.create_task(long_polling_agent(p)) for p in chunk_long]
        agents += [asyncio.create_task(polling_agent(p)) for p in chunk_polled]
        chunk = [p for pair in zip(chunk_long, chunk_polled, strict=True) for p in pair]
        await asyncio.to_thread(operator_decides, chunk)
        await asyncio.wait(agents, timeout=10)
        done.set()
        await asyncio.gather(*agents, return_exceptions=True)

    def latencies(group: list[int]) -> dict:
        samples = [informed_at[p] - decided_at[p] for p in group if p in informed_at]
        return {
            "decisions": len(group),
            "informed": len(samples),
            "p50_ms": round(percentile(samples, 0.50) * 1000, 1) if samples else None,
            "p99_ms": round(percentile(samples, 0.99) * 1000, 1) if samples else None,
            "max_ms": round(max(samples) * 1000, 1) if samples else None,
        }

    return {
        "long_poll": latencies(long_polled),
        "polling_every_second": latencies(polled),
        "errors": errors[:3],
        "error_count": len(errors),
    }


# --- 2. others' latency while many agents wait ---------------------------------------------


async def submissions(key: str, campaigns: list[str], clients: int) -> dict:
    result = LoadResult()
    bodies = iter(json.dumps(proposal(campaign, SMALL_MOVE)).encode() for campaign in campaigns)
    started = time.perf_counter()

    async def client() -> None:
        connection = Connection("127.0.0.1", PORT, timeout=60)
        try:
            for body in bodies:
                result.sent += 1
                sent = time.perf_counter()
                try:
                    status, answer = await connection.request(
                        "POST", "/api/v1/proposals/", body, headers(key)
                    )
                except (TimeoutError, OSError, asyncio.IncompleteReadError) as error:
                    result.error(f"{type(error).__name__}: {error}")
                    await connection.close()
                    continue
                result.latencies.append(time.perf_counter() - sent)
                if status != 201:
                    result.error(f"HTTP {status}: {answer[:200]!r}")
        finally:
            await connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    result.wall = time.perf_counter() - started
    return result.summary()


def web_processes() -> list[int]:
    return [
        pid
        for pid in processes_with_env(MARKER)
        if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def threads_of(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                total += int(line.split()[1])
    return total


def database_connections() -> int:
    import psycopg

    name = DATABASE_URL.rsplit("/", 1)[1]
    with psycopg.connect(DATABASE_URL.rsplit("/", 1)[0] + "/postgres") as connection:
        return connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]
        ).fetchone()[0]


def web_state() -> dict:
    pids = web_processes()
    return {
        "threads": threads_of(pids),
        "database_connections": database_connections(),
        **memory_of(pids),
    }


async def others_while_agents_wait(
    submitter: str, waiters: list[str], campaigns: list[str], args
) -> dict:
    """Each waiting agent (an agent of its own, as a platform's agents are) long-polls its own
    proposal."""
    waiting_on = [
        (submit_pending(waiter, [campaign])[0], waiter)
        for waiter, campaign in zip(waiters, campaigns[: args.waiting], strict=True)
    ]
    spare = iter(campaigns[args.waiting :])
    stop = asyncio.Event()
    answered = {"waits_answered": 0, "refused": 0, "errors": 0}

    async def waiting_agent(proposal_id: int, waiter: str, ready: asyncio.Event) -> None:
        connection = Connection("127.0.0.1", PORT, timeout=90)
        path = f"/api/v1/proposals/{proposal_id}/?wait=60"
        try:
            while not stop.is_set():
                request = asyncio.create_task(connection.request("GET", path, b"", headers(waiter)))
                ready.set()
                status, _ = await request
                answered["waits_answered"] += 1
                if status != 200:  # 503 busy while 500 first reads arrive: as a client does
                    answered["refused"] += 1
                    await asyncio.sleep(1)  # the Retry-After the API gives
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            answered["errors"] += 1
        finally:
            await connection.close()

    def take(count: int) -> list[str]:
        return [next(spare) for _ in range(count)]

    await submissions(submitter, take(200), args.clients)  # warm-up
    rounds = []
    for _ in range(args.rounds):
        idle = web_state()
        alone = await submissions(submitter, take(args.submissions), args.clients)
        readies = [asyncio.Event() for _ in waiting_on]
        stop.clear()
        waiters = [
            asyncio.create_task(waiting_agent(p, waiter, ready))
            for (p, waiter), ready in zip(waiting_on, readies, strict=True)
        ]
        await asyncio.gather(*(ready.wait() for ready in readies))
        # Every wait received, read once and waiting: until then a request's first read queues
        # for the long polls' readers, holding the thread its middleware ran in.
        sent = time.perf_counter()
        await asyncio.sleep(2)  # the requests arriving
        while (
            time.perf_counter() - sent < 30 and threads_of(web_processes()) > idle["threads"] + 10
        ):
            await asyncio.sleep(0.5)
        settled = round(time.perf_counter() - sent, 1)
        await asyncio.sleep(1)
        waiting = web_state()
        with_waiters = await submissions(submitter, take(args.submissions), args.clients)
        stop.set()
        for task in waiters:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        await asyncio.sleep(1)
        rounds.append(
            {
                "none_waiting": alone,
                f"{args.waiting}_waiting": with_waiters,
                "web_idle": idle,
                "web_while_waiting": waiting,
                "waits_settled_seconds": settled,
            }
        )
    return {"waiting": args.waiting, "clients": args.clients, "rounds": rounds, **answered}


# --- The run -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=200, help="Of each kind (measure 1).")
    parser.add_argument(
        "--decision-interval", type=float, default=0.1, help="Seconds between decisions."
    )
    parser.add_argument(
        "--waiting-at-once", type=int, default=20, help="Agents of each kind waiting at a time."
    )
    parser.add_argument("--waiting", type=int, default=500, help="Agents waiting (measure 2).")
    parser.add_argument("--submissions", type=int, default=1000, help="Per run (measure 2).")
    parser.add_argument("--clients", type=int, default=8, help="Submitting (measure 2).")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--web-workers", type=int, default=2)
    args = parser.parse_args()

    RESULTS.mkdir(exist_ok=True)
    create_database(DATABASE_URL, fresh=True)
    manage("migrate", "-v0")
    manage("migrate", "--run-syncdb", "-v0")
    key = json.loads(manage("seed_demo", "--json"))["agents"]["optimizer"]

    import django

    django.setup()
    campaigns = make_campaigns(
        2 * args.decisions + args.waiting + 200 + 2 * args.submissions * args.rounds
    )

    web = start_process(
        [sys.executable, "-m", "gunicorn", "bench.asgi:application",
         "--worker-class", "hitlproject.webserver.WebWorker", "--bind", f"127.0.0.1:{PORT}",
         "--workers", str(args.web_workers), "--timeout", "60", "--log-level", "warning"],
        RESULTS / "gunicorn-agents.log", cwd=REPO,
    )  # fmt: skip
    worker = start_process([str(REPO / "bin" / "worker")], RESULTS / "worker-agents.log", cwd=REPO)
    try:
        wait_for_http(PORT, "/healthz", process=web)
        time.sleep(3)  # the worker connecting to Redis
        first = campaigns[: 2 * args.decisions]
        informed = asyncio.run(decisions_to_agents(key, first, args))
        others = asyncio.run(
            others_while_agents_wait(
                key, make_agents(args.waiting), campaigns[2 * args.decisions :], args
            )
        )
    finally:
        stop_process_group(web)
        stop_process_group(worker)
        stop_process_group(web, MARKER)
        purge_queues()

    results = {
        "setup": {
            "database": "postgresql",
            "broker": "redis",
            "web_workers": args.web_workers,
            "worker": "bin/worker",
            "cores": os.cpu_count(),
        },
        "decision_to_agent": informed,
        "others_while_agents_wait": others,
    }
    (RESULTS / "agents.json").write_text(json.dumps(results, indent=2))
    print(report(results, args))


def purge_queues() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for name in (QUEUE, f"{QUEUE}.webhooks", f"{QUEUE}.callbacks"):
        client.delete(name)


def report(results: dict, args: argparse.Namespace) -> str:
    informed = results["decision_to_agent"]
    lines = [
        f"Decision to waiting agent informed, {args.decisions} decisions of each kind, "
        f"{args.web_workers} gunicorn workers and bin/worker, {os.cpu_count()} cores "
        "(goal: long poll p50 < 100 ms, p99 < 300 ms):",
        f"  {'':28} {'informed':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}",
    ]
    for name, label in (
        ("long_poll", "long poll (?wait=60)"),
        ("polling_every_second", "polling once a second"),
    ):
        r = informed[name]
        lines.append(
            f"  {label:28} {r['informed']:>4}/{r['decisions']:<4} {r['p50_ms']:>8} "
            f"{r['p99_ms']:>8} {r['max_ms']:>8}"
        )
    if informed["error_count"]:
        lines.append(f"  errors: {informed['error_count']} {informed['errors']}")
    others = results["others_while_agents_wait"]
    waiting = f"{others['waiting']}_waiting"
    lines += [
        f"Another agent's submissions ({args.submissions} a run, {others['clients']} clients) "
        f"with none and with {others['waiting']} agents long-polling (goal: within 20%):",
        f"  {'':28} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}",
    ]
    for number, round_ in enumerate(others["rounds"], 1):
        for name, label in (("none_waiting", "none waiting"), (waiting, f"{waiting} agents")):
            r = round_[name]
            lines.append(
                f"  round {number}: {label:19} {r['creates_per_second']:>8} {r['p50_ms']:>8} "
                f"{r['p99_ms']:>8} {r['errors']:>7}"
            )
        alone, crowded = round_["none_waiting"], round_[waiting]
        lines.append(
            f"  round {number}: p50 {crowded['p50_ms'] / alone['p50_ms']:.2f}x, "
            f"p99 {crowded['p99_ms'] / alone['p99_ms']:.2f}x the run with none waiting"
        )
        idle, busy = round_["web_idle"], round_["web_while_waiting"]
        lines.append(
            f"  web processes idle / with {others['waiting']} waiting: threads {idle['threads']}"
            f" / {busy['threads']}, RSS {idle['rss_mib']} / {busy['rss_mib']} MiB, database "
            f"connections {idle['database_connections']} / {busy['database_connections']} "
            f"(the {others['waiting']} waits read and waiting {round_['waits_settled_seconds']} s "
            "after they were sent)"
        )
    lines.append(
        f"  waits answered: {others['waits_answered']}, of them refused (503, retried after "
        f"1 s): {others['refused']}; connection errors: {others['errors']}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
