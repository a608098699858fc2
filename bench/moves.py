"""What evaluating a proposal costs as the account's recent moves grow, on PostgreSQL.

A busy account has made many moves within its policy's cumulative window (24 hours for the
demo policy), spread over many campaigns. This benchmark gives the demo account 100, 1,000,
10,000 and then 100,000 approved-and-executed bid moves within the window, ten on each of
its campaigns (10 to 10,000 campaigns), and at each size times, in process:

- ``proposal_dry_run``: the verdict on a small bid change, with every read it makes;
- the submission as the API makes it (``proposal_submit``), then, if it left the proposal
  ``submitted`` (today: the worker evaluates it afterwards), the worker's evaluation
  (``proposal_evaluate``), then the execution (``proposal_execute``) of the approved change.

Each sample is a small bid change (+5%) on a campaign that already has its ten moves, so the
ceiling has to be checked and the change is approved. Samples run inside a transaction rolled
back afterwards, so every sample meets the same state (their Redis publishes, sent on commit,
are left out). Before timing, the generated moves are checked to be seen by the evaluation:
a +14% change, which alone would be approved, must go to a human on a campaign whose ten moves
of 1% take it over the 25% ceiling.

The moves are generated through the public model (``Proposal.objects.bulk_create``); a narrow
moves table, if the platform has one when this runs, is filled from them too (see
``fill_moves_tables``). Goal (issue 12): the cost flat from 100 to 100,000 moves.

Run with ``bin/bench moves``. Its database (BENCH_DATABASE_URL's name + ``_moves``) is made
anew at each run; generating the 100,000 moves takes a minute or so.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import bench_database, create_database, temporary_data_dir  # noqa: E402

DATABASE_URL = bench_database("moves")
QUEUE = f"bench-moves-{uuid.uuid4().hex[:8]}"
os.environ.update(
    DJANGO_SETTINGS_MODULE="hitlproject.settings",
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
    HITL_CELERY_QUEUE=QUEUE,
    HITL_LOG_LEVEL="WARNING",
    HITL_DATA_DIR=temporary_data_dir("hitl-bench-moves-"),
)
RESULTS = REPO / "bench" / "results"

MOVE = Fraction(101, 100)  # each generated move: +1% on a campaign's bid
BID = Decimal("1.00")


class Rollback(Exception):
    pass


def setup() -> None:
    import django

    create_database(DATABASE_URL, fresh=True)
    django.setup()
    from io import StringIO

    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("seed_demo", "--json", stdout=StringIO())


def add_moves(count: int, per_campaign: int, first_campaign: int) -> list[str]:
    """``count`` executed +1% bid moves on the demo account, ``per_campaign`` on each of new
    campaigns, decided at random times within the last 23 hours. Returns the campaigns."""
    from django.db import connection
    from django.utils import timezone

    from approvals.action_types.base import target_name
    from approvals.models import Agent, Proposal, ProposalStatus, VerdictOutcome
    from audit.actors import Actor
    from audit.history import create_with_history
    from ledger.models import Account, Campaign
    from policies.engine import factor_text
    from policies.models import Policy

    account = Account.objects.get(external_id="demo")
    agent = Agent.objects.get(name="optimizer")
    policy = Policy.objects.get(action_type="bid_adjustment", is_active=True, is_draft=False)
    names = [f"moved-{first_campaign + i:06d}" for i in range(count // per_campaign)]
    campaigns = [
        Campaign(account=account, external_id=name, name=name, daily_budget="100.00", bid=BID)
        for name in names
    ]
    for start in range(0, len(campaigns), 5000):
        create_with_history(Campaign, campaigns[start : start + 5000], actor=Actor.system("bench"))
    by_name = {campaign.external_id: campaign for campaign in campaigns}

    generator = random.Random(count)
    now = timezone.now()
    new_bid = f"{BID * Decimal('1.01'):.2f}"
    for start in range(0, count, 5000):
        proposals = []
        for i in range(start, min(count, start + 5000)):
            name = names[i // per_campaign]
            at = now - timedelta(seconds=generator.uniform(60, 23 * 3600))
            proposals.append(
                Proposal(
                    agent=agent,
                    account=account,
                    action_type="bid_adjustment",
                    payload={"campaign": name, "new_bid": new_bid},
                    rationale="Benchmark: an earlier move.",
                    confidence=0.9,
                    summary=f"Raise {name}'s bid from {BID} to {new_bid}",
                    magnitude=Decimal("0.01"),
                    magnitude_label="1.0% of the bid",
                    target_snapshot={name: {"bid": str(BID)}},
                    effects={target_name(name, "bid"): factor_text(MOVE)},
                    status=ProposalStatus.EXECUTED,
                    risk=5,
                    verdict_outcome=VerdictOutcome.AUTO_APPROVE,
                    verdict_policy=policy,
                    verdict_reasons=["Benchmark move."],
                    created_at=at - timedelta(seconds=1),
                    evaluated_at=at,
                    decided_at=at,
                    approved_at=at,
                    executed_at=at + timedelta(seconds=1),
                )
            )
        Proposal.objects.bulk_create(proposals)
        fill_moves_tables(proposals, by_name)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would have, on a real busy account
    return names


def fill_moves_tables(proposals: list, campaigns: dict) -> None:
    """The moves that count against cumulative ceilings, for the generated proposals (made
    with ``bulk_create``, past the lifecycle), kept as the lifecycle keeps them."""
    from approvals.services.lifecycle import counted_moves_update

    counted_moves_update((proposal, None) for proposal in proposals)


def check_moves_seen(agent, moved_campaign: str, fresh_campaign: str) -> None:
    """A +14% change is approved on a campaign with no moves and sent to a human on one whose
    ten 1% moves take it over the 25% ceiling: the evaluation sees the generated moves."""
    from approvals.models import VerdictOutcome
    from approvals.services.proposals import proposal_dry_run

    new_bid = f"{BID * Decimal('1.14'):.2f}"
    outcomes = {}
    for campaign in (moved_campaign, fresh_campaign):
        _, verdict = proposal_dry_run(
            agent=agent,
            account_external_id="demo",
            action_type="bid_adjustment",
            payload={"campaign": campaign, "new_bid": new_bid},
        )
        outcomes[campaign] = verdict.outcome
    if outcomes != {
        moved_campaign: VerdictOutcome.REVIEW,
        fresh_campaign: VerdictOutcome.AUTO_APPROVE,
    }:
        raise SystemExit(
            f"The evaluation does not see the generated moves as expected ({outcomes}): "
            "bench/moves.py's generator must write them where the evaluation reads them."
        )


def sample(agent, campaign: str, *, count_queries: bool = False) -> dict:
    """One auto-approved bid change on ``campaign``: dry run, submission, evaluation (if the
    submission left one to do), execution; ms each (and, if asked, the queries each made), in
    a transaction rolled back."""
    from contextlib import nullcontext

    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from approvals.models import Proposal, ProposalStatus
    from approvals.services import proposals as services
    from executors.runner import proposal_execute

    payload = {"campaign": campaign, "new_bid": f"{BID * Decimal('1.05'):.2f}"}
    timings, queries = {"evaluate": 0.0}, {"evaluate": 0}

    def timed(step: str, call):
        capture = CaptureQueriesContext(connection) if count_queries else nullcontext([])
        with capture as captured:
            started = time.perf_counter()
            result = call()
            timings[step] = time.perf_counter() - started
        queries[step] = len(captured)
        return result

    try:
        with transaction.atomic():
            timed(
                "dry_run",
                lambda: services.proposal_dry_run(
                    agent=agent,
                    account_external_id="demo",
                    action_type="bid_adjustment",
                    payload=payload,
                ),
            )
            proposal = timed(
                "submit",
                lambda: services.proposal_submit(
                    agent=agent,
                    submission=services.Submission(
                        account="demo",
                        action_type="bid_adjustment",
                        payload=payload,
                        rationale="Benchmark sample.",
                        confidence=0.9,
                    ),
                ),
            )
            status = Proposal.objects.filter(pk=proposal.pk).values_list("status", flat=True)[0]
            if status == ProposalStatus.SUBMITTED:  # evaluated by the worker, after the answer
                status = timed(
                    "evaluate", lambda: services.proposal_evaluate(proposal_id=proposal.pk)
                ).status
            if status != ProposalStatus.APPROVED:
                raise SystemExit(f"the sample on {campaign} was {status}, not approved")
            executed = timed("execute", lambda: proposal_execute(proposal_id=proposal.pk))
            if executed.status != ProposalStatus.EXECUTED:
                raise SystemExit(f"the sample on {campaign} ended {executed.status}")
            raise Rollback
    except Rollback:
        pass
    return {"ms": {k: v * 1000 for k, v in timings.items()}, "queries": queries}


def measure(agent, campaigns: list[str], samples: int) -> dict:
    for campaign in campaigns[:10]:  # warm-up
        sample(agent, campaign)
    runs = [sample(agent, campaigns[i % len(campaigns)]) for i in range(samples)]
    queries = sample(agent, campaigns[0], count_queries=True)["queries"]
    figures = {}
    for step in ("dry_run", "submit", "evaluate", "execute"):
        values = sorted(run["ms"][step] for run in runs)
        figures[step] = {
            "median_ms": round(statistics.median(values), 2),
            "p90_ms": round(values[int(0.9 * len(values))], 2),
            "queries": queries[step],
        }
    evaluation = sorted(run["ms"]["submit"] + run["ms"]["evaluate"] for run in runs)
    figures["submit_and_evaluate"] = {
        "median_ms": round(statistics.median(evaluation), 2),
        "p90_ms": round(evaluation[int(0.9 * len(evaluation))], 2),
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--per-campaign", type=int, default=10)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    RESULTS.mkdir(exist_ok=True)
    setup()
    from approvals.models import Agent
    from ledger.models import Account, Campaign

    agent = Agent.objects.get(name="optimizer")
    Campaign.objects.create(
        account=Account.objects.get(external_id="demo"),
        external_id="never-moved",
        name="Never moved",
        daily_budget="100.00",
        bid=BID,
    )
    results, have, moved = [], 0, []
    try:
        for size in sizes:
            started = time.perf_counter()
            moved += add_moves(size - have, args.per_campaign, first_campaign=len(moved))
            generated = time.perf_counter() - started
            have = size
            if args.per_campaign >= 10:  # enough to take a +14% change over the ceiling
                check_moves_seen(agent, moved[-1], "never-moved")
            # Sample on campaigns spread over all those moved so far.
            step = max(1, len(moved) // args.samples)
            figures = measure(agent, moved[::step], args.samples)
            results.append(
                {"moves": size, "campaigns": len(moved), "generated_in_s": round(generated, 1),
                 **figures}
            )  # fmt: skip
            print(line(results[-1]), flush=True)
    finally:
        purge_queues()
    (RESULTS / "moves.json").write_text(
        json.dumps({"samples": args.samples, "per_campaign": args.per_campaign, "sizes": results},
                   indent=2)
    )  # fmt: skip
    print(report(results))


def purge_queues() -> None:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    for name in (QUEUE, f"{QUEUE}.webhooks", f"{QUEUE}.callbacks"):
        client.delete(name)


def line(result: dict) -> str:
    return f"  {result['moves']:>7,} moves on {result['campaigns']:>6,} campaigns: " + ", ".join(
        f"{step} {result[step]['median_ms']} ms"
        for step in ("dry_run", "submit", "evaluate", "execute", "submit_and_evaluate")
    )


def report(results: list[dict]) -> str:
    header = (
        f"  {'recent moves':>12} {'dry run':>16} {'submit':>16} {'evaluate':>16} "
        f"{'execute':>16} {'submit+evaluate':>16}"
    )
    lines = [
        "Cost per proposal as the account's recent moves grow (median / p90 ms, queries), "
        "in process on PostgreSQL:",
        header,
    ]
    for r in results:
        cells = [
            f"{r[step]['median_ms']}/{r[step]['p90_ms']} ({r[step]['queries']}q)"
            for step in ("dry_run", "submit", "evaluate", "execute")
        ]
        both = r["submit_and_evaluate"]
        cells.append(f"{both['median_ms']}/{both['p90_ms']}")
        lines.append(f"  {r['moves']:>12,} " + " ".join(f"{c:>16}" for c in cells))
    first, last = results[0], results[-1]
    for step in ("dry_run", "submit_and_evaluate"):
        ratio = last[step]["median_ms"] / max(first[step]["median_ms"], 0.001)
        lines.append(
            f"  {step}: {ratio:.2f}x from {first['moves']:,} to {last['moves']:,} moves "
            "(goal: flat)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
