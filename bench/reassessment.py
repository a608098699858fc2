"""What parked reallocations cost the change that lands on their campaign, on PostgreSQL.

A campaign with many reallocations waiting for a person (``pending_review``) has its budget
changed by a small auto-approved move (+2%). Executing it re-assesses every waiting
reallocation on that campaign (SPEC: a proposal that moves an amount keeps its meaning and is
re-assessed against the new state), in the executor's transaction, which holds the
campaign's lock; a waiting budget change on the same campaign made against the old value is
superseded too, which writes feedback (and so takes the feedback writers' lock until the
transaction ends). Meanwhile an operator rejects an unrelated proposal on another campaign:
its feedback waits for that lock.

Measured, in process (two threads, two connections):
- the execution of the +2% change (``proposal_execute``): the time its transaction, and so
  the campaign's lock, is held;
- the unrelated rejection (``proposal_reject``), started 0.2 s into the execution.

Then checked: every parked reallocation reads the new figures; the superseded one's agent
was told. Run with ``bin/bench reassess [--parked 1000] [--profile]``; its database
(BENCH_DATABASE_URL's name + ``_reassess``) is made anew at each run.

``--scale 50,300,1000`` measures instead how that cost grows with the number waiting: for each
count, the reallocations waiting on the campaign are brought up to it and a +1% budget change
on it is executed ``--repeat`` times (the median kept), in process, its statements counted
(``CaptureQueriesContext``): with the waiting reallocations alike (one agent's batch of the
same move) and, in a database of its own, each of a different amount (``--varied``: nothing
the re-assessment works out once can serve two of them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import bench_database, create_database, temporary_data_dir  # noqa: E402

DATABASE_URL = bench_database("reassess")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = f"bench-{uuid.uuid4().hex[:8]}"

os.environ.update(
    DJANGO_SETTINGS_MODULE="bench.settings",
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=REDIS_URL,
    HITL_CELERY_QUEUE=QUEUE,
    HITL_LOG_LEVEL="WARNING",
    HITL_DATA_DIR=temporary_data_dir("hitl-bench-reassess-"),
)


def submit(agent, bodies: list[dict]):
    from approvals.services.proposals import Submission, proposals_submit

    return proposals_submit(agent=agent, submissions=[Submission(**body) for body in bodies])


def body(action_type: str, payload: dict) -> dict:
    return {
        "account": "demo",
        "action_type": action_type,
        "payload": payload,
        "rationale": "Benchmark.",
        "confidence": 0.8,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parked", type=int, default=1000)
    parser.add_argument(
        "--profile", action="store_true", help="profile the execution alone, top entries"
    )
    parser.add_argument(
        "--scale",
        help="comma-separated counts of waiting reallocations: statements and ms per execution",
    )
    parser.add_argument("--repeat", type=int, default=3, help="executions per count (--scale)")
    parser.add_argument(
        "--varied", action="store_true", help="with --scale: each waiting one a different amount"
    )
    arguments = parser.parse_args()
    if arguments.scale:
        scale([int(count) for count in arguments.scale.split(",")], arguments)
        return

    create_database(DATABASE_URL, fresh=True)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("seed_demo", verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115

    from approvals.models import Agent, Proposal, ProposalStatus
    from approvals.services.decisions import proposal_reject
    from executors.runner import proposal_execute
    from feedback.models import Feedback

    optimizer = Agent.objects.get(name="optimizer")
    (outdated,) = submit(
        optimizer, [body("budget_change", {"campaign": "brand-search", "new_daily_budget": "1250"})]
    )
    parked = submit(
        optimizer,
        [
            body(
                "budget_reallocation",
                {"from_campaign": "brand-search", "to_campaign": "generic-search", "amount": "280"},
            )
        ]
        * arguments.parked,
    )
    (unrelated,) = submit(
        optimizer, [body("bid_adjustment", {"campaign": "display-retarget", "new_bid": "1.20"})]
    )
    (small,) = submit(
        optimizer, [body("budget_change", {"campaign": "brand-search", "new_daily_budget": "1020"})]
    )
    statuses = {p.status for p in [outdated, *parked, unrelated]}
    assert statuses == {ProposalStatus.PENDING_REVIEW}, statuses
    assert small.status == ProposalStatus.APPROVED, small.status
    operator = get_user_model().objects.get(username="operator")

    if arguments.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(proposal_execute, proposal_id=small.pk)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        return

    timings: dict[str, float] = {}

    def timed(name: str, work) -> None:
        from django.db import connection

        started = time.perf_counter()
        try:
            work()
        finally:
            timings[name] = time.perf_counter() - started
            connection.close()

    execution = threading.Thread(
        target=timed,
        args=("execute +2% budget change", lambda: proposal_execute(proposal_id=small.pk)),
    )
    rejection = threading.Thread(
        target=timed,
        args=(
            "unrelated rejection, meanwhile",
            lambda: proposal_reject(
                proposal_id=unrelated.pk, reviewer=operator, reason_code="too_aggressive"
            ),
        ),
    )
    execution.start()
    time.sleep(0.2)
    rejection.start()
    execution.join()
    rejection.join()

    assert Proposal.objects.get(pk=small.pk).status == ProposalStatus.EXECUTED
    assert Proposal.objects.get(pk=outdated.pk).status == ProposalStatus.SUPERSEDED
    assert Feedback.objects.filter(proposal=outdated, kind="superseded").exists()
    assert Feedback.objects.filter(proposal=unrelated, kind="rejected").exists()
    reread = Proposal.objects.filter(pk__in=[p.pk for p in parked])
    assert {p.status for p in reread} == {ProposalStatus.PENDING_REVIEW}
    assert {p.target_snapshot["brand-search"]["daily_budget"] for p in reread} == {"1020.00"}
    print(json.dumps({"parked": arguments.parked, **{k: round(v, 3) for k, v in timings.items()}}))

    import redis

    redis.Redis.from_url(REDIS_URL).delete(QUEUE)


def scale(counts: list[int], arguments) -> None:
    """Statements and milliseconds of one execution landing on a campaign as the
    reallocations waiting on it grow (see the module's docstring)."""
    create_database(DATABASE_URL, fresh=True)
    import statistics
    from decimal import Decimal

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", verbosity=0)
    call_command("seed_demo", verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115

    from approvals.models import Agent, Proposal, ProposalStatus
    from executors.runner import proposal_execute
    from ledger.models import Campaign

    # Executed here, in process: the worker is not sent them.
    transaction.on_commit = lambda func, using=None, robust=False: None
    optimizer = Agent.objects.get(name="optimizer")
    waiting = Proposal.objects.filter(
        status=ProposalStatus.PENDING_REVIEW, action_type="budget_reallocation"
    )
    made = 0
    results = []
    for count in counts:
        while made < count:
            batch = min(500, count - made)
            amounts = (
                [f"{200 + (made + i) / 100:.2f}" for i in range(batch)]
                if arguments.varied
                else ["280"] * batch
            )
            reallocations = [
                {"from_campaign": "brand-search", "to_campaign": "generic-search", "amount": a}
                for a in amounts
            ]
            submit(optimizer, [body("budget_reallocation", p) for p in reallocations])
            made += batch
        assert waiting.count() == count, (waiting.count(), count)
        samples = []
        for _ in range(arguments.repeat):
            budget = Campaign.objects.get(external_id="brand-search").daily_budget
            raised = (budget * Decimal("1.01")).quantize(Decimal("0.01"))
            raise_it = {"campaign": "brand-search", "new_daily_budget": str(raised)}
            (change,) = submit(optimizer, [body("budget_change", raise_it)])
            assert change.status == ProposalStatus.APPROVED, change.verdict_reasons
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                proposal_execute(proposal_id=change.pk)
                elapsed = time.perf_counter() - started
            assert Proposal.objects.get(pk=change.pk).status == ProposalStatus.EXECUTED
            samples.append((elapsed * 1000, len(queries.captured_queries)))
        assert waiting.count() == count
        ms = statistics.median(sample[0] for sample in samples)
        statements = sorted(sample[1] for sample in samples)
        results.append({"waiting": count, "statements": statements, "ms": round(ms)})
        print(json.dumps({"varied": arguments.varied, **results[-1]}), flush=True)
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    name = "reassess-scale-varied.json" if arguments.varied else "reassess-scale.json"
    (REPO / "bench" / "results" / name).write_text(json.dumps(results, indent=2))
    import redis

    redis.Redis.from_url(REDIS_URL).delete(QUEUE, f"{QUEUE}.webhooks", f"{QUEUE}.callbacks")


if __name__ == "__main__":
    main()
