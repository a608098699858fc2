"""Benchmarks of the policy engine and the what-if simulation, on PostgreSQL.

1. Evaluation rate in process: ``engine.evaluate`` with 50 policies in force, against 1 policy
   in force in the same run; and the live verdict with its database reads (rules, guardrails,
   recent moves, the agent's record), as the evaluate task runs it.
2. Simulation over 1,000,000 recorded proposals: seconds and peak memory, against a baseline
   that only streams the same rows from the database; and over 100,000 of them, to show that
   memory does not grow with the history.

Run with ``bin/bench policy``. Generating the million proposals (once; they are kept in the
bench database) takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hitl_bench")
os.environ.update(
    DJANGO_SETTINGS_MODULE="hitlproject.settings",
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
    HITL_LOG_LEVEL="WARNING",
)
sys.path.insert(0, str(REPO))

SIM_ACCOUNT = "bench-sim"
SIM_AGENT = "bench-sim-optimizer"
DAYS = 30


def setup_django() -> None:
    import django

    from bench.common import create_database

    create_database(DATABASE_URL)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- 1. evaluation rate -------------------------------------------------------------------


def fifty_rules():
    from policies.engine import Rule

    kinds = ["research", "analysis", "production", "optimization"]
    channels = ["google_ads", "meta", "linkedin", "tiktok"]
    rules, next_id = [], 1
    for action_type in ["bid_adjustment", "budget_change", "budget_reallocation",
                        "creative_deployment", "strategy_change"]:  # fmt: skip
        scopes = [{}] + [{"account_id": a} for a in range(1, 4)] + [{"agent_id": 7}]
        scopes += [{"agent_kind": k} for k in kinds[:2]] + [{"channel": c} for c in channels[:3]]
        for scope in scopes:  # 10 scopes x 5 types = 50 policies
            rules.append(
                Rule(
                    policy_id=next_id,
                    name=f"policy {next_id}",
                    action_type=action_type,
                    auto_execute_max_magnitude=Decimal("0.10") + Decimal(next_id % 5) / 100,
                    auto_execute_max_amount=Decimal("1000"),
                    block_above_magnitude=Decimal("0.80"),
                    cumulative_max_magnitude=Decimal("0.25"),
                    more_approvals_above_magnitude=Decimal("0.40"),
                    **scope,
                )
            )
            next_id += 1
    return rules


def sample_facts(count: int):
    from policies.engine import Facts, Move

    generator = random.Random(7)
    now = __import__("datetime").datetime(2026, 11, 21, tzinfo=__import__("datetime").UTC)
    facts = []
    for _ in range(count):
        magnitude = Decimal(generator.randint(1, 60)) / 100
        target = f"campaign-{generator.randint(1, 20)}'s daily budget"
        facts.append(
            Facts(
                action_type="budget_reallocation",
                action_label="budget reallocation",
                magnitude=magnitude,
                magnitude_unit="ratio",
                magnitude_label=f"{magnitude * 100:.1f}% of the budget",
                risk_weight=25,
                account_id=generator.randint(1, 5),
                channel=generator.choice(["google_ads", "meta"]),
                agent_id=generator.randint(1, 10),
                agent_kind="optimization",
                amount=magnitude * 1000,
                currency="USD",
                effects={target: 1 - magnitude},
                recent_moves=[
                    Move(target=target, factor=Decimal("0.95"), at=now - timedelta(hours=h))
                    for h in range(generator.randint(0, 4))
                ],
                now=now,
            )
        )
    return facts


def evaluation_rate(evaluations: int) -> dict:
    from policies.engine import evaluate

    rules = fifty_rules()
    facts = sample_facts(1000)
    results = {}
    for label, rule_set in [("1 policy", rules[20:21]), ("50 policies", rules)]:
        started = time.perf_counter()
        for i in range(evaluations):
            evaluate(facts[i % len(facts)], rule_set)
        results[label] = round(evaluations / (time.perf_counter() - started))
    return results


def dry_run_rate(count: int) -> float:
    """The dry run: an action assessed against the ledger and given its verdict, with every
    read the evaluate task makes (rules and versions, guardrails, recent moves, the record)."""
    from io import StringIO

    from django.core.management import call_command

    from approvals.models import Agent
    from approvals.services.proposals import proposal_dry_run

    call_command("seed_demo", "--json", stdout=StringIO())
    agent = Agent.objects.get(name="optimizer")
    payload = {"from_campaign": "brand-search", "to_campaign": "generic-search", "amount": "80"}
    started = time.perf_counter()
    for _ in range(count):
        proposal_dry_run(
            agent=agent,
            account_external_id="demo",
            action_type="budget_reallocation",
            payload=payload,
        )
    return round(count / (time.perf_counter() - started))


# --- 2. simulation --------------------------------------------------------------------------


def ensure_history(count: int) -> None:
    """``count`` recorded proposals on the bench account, spread over 30 days, made in SQL."""
    from django.db import connection

    from approvals.models import Agent, AgentKind, Proposal
    from ledger.models import Account, Campaign, Channel
    from policies.models import Policy

    account, _ = Account.objects.get_or_create(
        external_id=SIM_ACCOUNT,
        defaults={"name": "Simulation bench", "channel": Channel.GOOGLE_ADS, "currency": "USD"},
    )
    for number in range(1, 21):
        Campaign.objects.get_or_create(
            account=account,
            external_id=f"campaign-{number}",
            defaults={"name": f"Campaign {number}", "daily_budget": 1000, "bid": 2},
        )
    agent, _ = Agent.objects.get_or_create(
        name=SIM_AGENT, defaults={"kind": AgentKind.OPTIMIZATION}
    )
    have = Proposal.objects.filter(account=account).count()
    if have >= count:
        return
    policy_id = (
        Policy.objects.filter(action_type="budget_reallocation")
        .values_list("pk", flat=True)
        .first()
    )
    print(f"Generating {count - have:,} recorded proposals…", flush=True)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO approvals_proposal (
                agent_id, account_id, action_type, payload, rationale, supporting_data, confidence,
                external_ref, summary, magnitude, magnitude_label, amount, target_snapshot,
                effects, status, risk, verdict_outcome, verdict_policy_id, verdict_reasons,
                guardrail_findings, required_approvals, review_round, created_at, updated_at,
                evaluated_at, decided_at
            )
            SELECT %(agent)s, %(account)s, 'budget_reallocation',
                   jsonb_build_object('from_campaign', 'campaign-' || src, 'to_campaign',
                                      'campaign-' || dst, 'amount', (share * 1000)::text),
                   'bench', '{}'::jsonb, 0.8, '', 'bench move', share, 'a share of the budget',
                   share * 1000, '{}'::jsonb,
                   jsonb_build_object('campaign-' || src || '''s daily budget', (1 - share)::text,
                                      'campaign-' || dst || '''s daily budget', (1 + share)::text),
                   CASE WHEN share <= 0.10 THEN 'executed'
                        WHEN r < 0.6 THEN 'executed' WHEN r < 0.85 THEN 'rejected'
                        ELSE 'pending_review' END,
                   50,
                   CASE WHEN share <= 0.10 THEN 'auto_approve' ELSE 'review' END,
                   %(policy)s, '[]'::jsonb, '{}'::jsonb, 1, 1, at, at, at,
                   CASE WHEN share <= 0.10 OR r < 0.85 THEN at + interval '5 minutes' END
            FROM (
                SELECT n,
                       1 + (n %% 20) AS src,
                       1 + ((n + 1 + (n / 20) %% 19) %% 20) AS dst,
                       round((0.01 + random() * 0.29)::numeric, 4) AS share,
                       random() AS r,
                       now() - interval '%(days)s days'
                           + (n * interval '1 second' * %(spacing)s) AS at
                FROM generate_series(%(start)s, %(end)s - 1) AS n
            ) AS generated
            """,
            {
                "agent": agent.pk,
                "account": account.pk,
                "policy": policy_id,
                "days": DAYS,
                "spacing": DAYS * 86400 / count,
                "start": have,
                "end": count,
            },
        )
        # What autovacuum does to a table this size in production soon after: statistics, and
        # the visibility map without which no count can be answered from an index alone.
        cursor.execute("VACUUM ANALYZE approvals_proposal")
    print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)


def child(mode: str, limit: int) -> dict:
    """One measured run, in a process of its own so that its peak memory is its own."""
    from django.utils import timezone

    from approvals.models import Proposal
    from policies.simulation import draft_rule_set, simulate

    history = Proposal.objects.filter(account__external_id=SIM_ACCOUNT).order_by("created_at")
    since = history.values_list("created_at", flat=True).first()
    # The period that holds ``limit`` proposals, read as two rows rather than ``limit`` of them.
    until = history.values_list("created_at", flat=True)[limit : limit + 1].first()
    until = until or timezone.now()
    started = time.perf_counter()
    if mode == "stream":
        stream = (
            Proposal.objects.filter(created_at__gte=since, created_at__lt=until)
            .order_by("created_at", "id")
            .values_list("id", "magnitude", "amount", "effects", "guardrail_findings", "status")
            .iterator(chunk_size=5000)
        )
        rows = sum(1 for _ in stream)
    else:
        rules, _ = draft_rule_set([])
        rows = simulate(rules=rules, since=since, until=until).proposals
    return {
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def measured(mode: str, limit: int) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--limit", str(limit)],
        check=True, capture_output=True, text=True, cwd=REPO,
    ).stdout  # fmt: skip
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=1_000_000)
    parser.add_argument("--evaluations", type=int, default=200_000)
    parser.add_argument("--child", choices=["stream", "simulate"])
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    setup_django()
    if args.child:
        print(json.dumps(child(args.child, args.limit)))
        return

    rates = evaluation_rate(args.evaluations)
    live = dry_run_rate(2000)
    ensure_history(args.proposals)
    small = max(args.proposals // 10, 1)
    runs = {
        "stream_all": measured("stream", args.proposals),
        "simulate_all": measured("simulate", args.proposals),
        "simulate_tenth": measured("simulate", small),
    }
    results = {"evaluations_per_second": rates, "dry_runs_per_second": live, **runs}
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "policy_engine.json").write_text(json.dumps(results, indent=2))

    print(f"Policy engine, in process, {args.evaluations:,} evaluations:")
    for label, rate in rates.items():
        print(f"  {label:<12} {rate:>10,} evaluations/s")
    print(f"  dry run (assessment and verdict, with their database reads): {live:,}/s")
    print("Simulation over recorded proposals on PostgreSQL:")
    for label, key in [
        (f"stream {args.proposals:,} rows only (baseline)", "stream_all"),
        (f"simulate {args.proposals:,}", "simulate_all"),
        (f"simulate {small:,}", "simulate_tenth"),
    ]:
        run = runs[key]
        print(f"  {label:<36} {run['seconds']:>6} s   peak {run['peak_rss_mb']:>4} MB")


if __name__ == "__main__":
    main()
