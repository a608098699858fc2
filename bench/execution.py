"""Benchmarks of the ledger executor, on PostgreSQL and Redis, as it runs in production.

1. Statements per execution: the SQL one ``approvals.execute_proposal`` task sends to carry
   out an approved bid adjustment in the ledger (BEGIN and COMMIT included), counted with
   Django's CaptureQueriesContext, in process.
2. A batch's executions: approved bid adjustments on as many campaigns, their executions
   enqueued together after one commit (as a batch submission sends its auto-approved items),
   executed by a real Celery worker (``--concurrency 2``); the time from the transaction that
   sends them to every one seen executed.

Run with ``bin/bench execute``. The worker runs on the same 2-core machine as the script.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hitl_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = f"bench-{uuid.uuid4().hex[:8]}"

os.environ.update(
    DJANGO_SETTINGS_MODULE="bench.settings",
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=REDIS_URL,
    HITL_CELERY_QUEUE=QUEUE,
    HITL_LOG_LEVEL="WARNING",
    # The stall sweep stays out of the measurement: nothing here is beat's to resend.
    HITL_STALL_AFTER_SECONDS="3600",
)
sys.path.insert(0, str(REPO))

from bench.common import create_database, percentile  # noqa: E402


def manage(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout


def approved_bid_raises(count: int, run: str) -> list[int]:
    """``count`` approved 5% bid raises, each on a campaign of its own (made for this run),
    with no task sent for them yet."""
    from decimal import Decimal

    from django.db import transaction

    from approvals.models import Agent, Proposal, ProposalStatus
    from approvals.services.lifecycle import proposals_transition
    from approvals.services.proposals import Submission, proposals_submit
    from audit.actors import Actor
    from ledger.models import Account, Campaign

    demo = Account.objects.get(external_id="demo")
    Campaign.objects.bulk_create(
        Campaign(account=demo, external_id=f"{run}-{n}", name=f"Bench {run} {n}",
                 daily_budget=Decimal("100.00"), bid=Decimal("1.00"))
        for n in range(count)
    )  # fmt: skip
    submissions = [
        Submission(
            account="demo",
            action_type="bid_adjustment",
            payload={"campaign": f"{run}-{n}", "new_bid": "1.05"},
            rationale="Benchmark: CPC below target for five days.",
            confidence=0.9,
        )
        for n in range(count)
    ]
    proposals = proposals_submit(agent=Agent.objects.get(name="optimizer"), submissions=submissions)
    ids = [proposal.pk for proposal in proposals]
    # Approved as the policy engine approves a 5% raise (the evaluation is not measured here).
    with transaction.atomic():
        waiting = list(
            Proposal.objects.select_for_update()
            .filter(pk__in=ids, status=ProposalStatus.SUBMITTED)
            .order_by("pk")
        )
        proposals_transition(
            proposals=waiting,
            to_status=ProposalStatus.APPROVED,
            actor=Actor.system("policy-engine"),
            reason="Benchmark: within the auto-execute ceiling.",
        )
    purge_queue()  # what those commits sent: the measurement sends its own
    assert Proposal.objects.filter(pk__in=ids, status=ProposalStatus.APPROVED).count() == count
    return ids


def enqueue_executions(ids: list[int]) -> None:
    """Send the proposals' executions after one commit, as a batch submission does."""
    from django.db import transaction

    from approvals import tasks
    from approvals.services import lifecycle

    with transaction.atomic():
        if hasattr(lifecycle, "enqueue_executions_after_commit"):
            lifecycle.enqueue_executions_after_commit(ids)
        elif hasattr(tasks, "enqueue_executions_after_commit"):  # before it moved there
            tasks.enqueue_executions_after_commit(ids)
        else:  # before it existed: a message each
            tasks.enqueue_after_commit(tasks.execute_proposal, *ids)


def executed_count(ids: list[int]) -> int:
    from approvals.models import Proposal, ProposalStatus

    return Proposal.objects.filter(pk__in=ids, status=ProposalStatus.EXECUTED).count()


def wait_executed(ids: list[int], timeout: float = 300) -> None:
    """Until every proposal is executed, polled every 10 ms."""
    started = time.perf_counter()
    while executed_count(ids) < len(ids):
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"{executed_count(ids)} of {len(ids)} executed after {timeout}s")
        time.sleep(0.01)


def statements_per_execution(run: str) -> dict:
    """The statements of one execute task, run in process, for an approved bid raise."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from approvals.models import Proposal

    try:
        from executors.tasks import execute_proposal
    except ImportError:  # before the runner moved into the executors app
        from approvals.tasks import execute_proposal

    (proposal_id,) = approved_bid_raises(1, run)
    with CaptureQueriesContext(connection) as captured:
        execute_proposal(proposal_id)  # the task's body, here
    assert Proposal.objects.get(pk=proposal_id).status == "executed"
    return {
        "statements": len(captured.captured_queries),
        "sql": [query["sql"][:120] for query in captured.captured_queries],
    }


def batch_timing(worker_log: str, size: int, rounds: int, run: str) -> dict:
    """Enqueue-to-all-executed for ``rounds`` batches of ``size``, on a fresh worker."""
    worker = start_worker(worker_log)
    try:
        warm = approved_bid_raises(4, f"{run}-warm")
        enqueue_executions(warm)
        wait_executed(warm, timeout=60)
        samples = []
        for number in range(rounds):
            ids = approved_bid_raises(size, f"{run}-{number}")
            started = time.perf_counter()
            enqueue_executions(ids)
            wait_executed(ids)
            samples.append(time.perf_counter() - started)
    finally:
        stop(worker)
    return {
        "size": size,
        "rounds": rounds,
        "all_executed_s": [round(sample, 2) for sample in samples],
    }


def start_worker(log_name: str) -> subprocess.Popen:
    with open(REPO / "bench" / "results" / log_name, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "hitlproject", "worker", "--queues", QUEUE,
             "--concurrency", "2", "--loglevel", "warning", "--without-gossip", "--without-mingle"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def purge_queue() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).delete(QUEUE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--chunk", type=int, default=None, help="executions to a message (default: the platform's)"
    )
    args = parser.parse_args()

    (REPO / "bench" / "results").mkdir(exist_ok=True)
    create_database(DATABASE_URL)
    manage("migrate", "--run-syncdb", "-v0")
    manage("seed_demo", "--json")

    import django

    django.setup()
    run = uuid.uuid4().hex[:6]
    if args.chunk:
        from approvals import tasks
        from approvals.services import lifecycle

        # Where it is read: the lifecycle now, approvals.tasks before.
        (lifecycle if hasattr(lifecycle, "EXECUTION_CHUNK") else tasks).EXECUTION_CHUNK = args.chunk
    try:
        statements = statements_per_execution(f"{run}-count")
        batch = batch_timing("execution-worker.log", args.batch, args.rounds, run)
    finally:
        purge_queue()
    results = {"statements_per_execution": statements, "batch": batch}
    (REPO / "bench" / "results" / "execution.json").write_text(json.dumps(results, indent=2))
    print(
        "\n".join(
            [
                f"One execute task, approved bid adjustment: {statements['statements']} SQL "
                "statements (BEGIN and COMMIT included)",
                f"A batch of {batch['size']} approved bid adjustments on as many campaigns, "
                "executions enqueued after one commit, a worker of concurrency 2:",
                "  from the commit that sends them to every one seen executed (s): "
                f"{batch['all_executed_s']}, median {percentile(batch['all_executed_s'], 0.5)}",
            ]
        )
    )


if __name__ == "__main__":
    main()
