"""Benchmarks of the policy engine and the what-if simulation, on PostgreSQL.

1. Evaluation rate in process: ``engine.evaluate`` with 50 policies in force, against 1 policy
   in force in the same run; and the live verdict with its database reads (rules, guardrails,
   recent moves, the agent's record), as the evaluate task runs it.
2. Simulation over 1,000,000 recorded proposals: seconds and peak memory, against a baseline
   that only streams the same rows from the database; and over 100,000 of them, to show that
   memory does not grow with the history.

Run with ``bin/bench policy``; ``bin/bench policy --engine-only`` measures the in-process
evaluation rate alone, in seconds, without the database. Generating the million proposals
(once; they are kept in the bench database) takes about a minute.
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
# Its small moves, auto-executed, on an account of their own (see ``ensure_history``).
AUTO_ACCOUNT = "bench-sim-auto"
AUTO_CEILING = Decimal("0.10")
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
    from policies.engine import Facts, Move, format_magnitude

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
                magnitude_label=f"{format_magnitude(magnitude, 'ratio')} of the budget",
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


def deciding_rule(agent, accounts):
    """The live policy that routes the bench agent's reallocations on both bench accounts,
    refused unless the generated history is one it would have routed (``ensure_history``)."""
    from policies import engine
    from policies.services import rules_in_force

    rules = rules_in_force(action_type="budget_reallocation")
    deciding = {
        engine.matching_rule(
            engine.Scope(
                action_type="budget_reallocation",
                account_id=account.pk,
                channel=account.channel,
                agent_id=agent.pk,
                agent_kind=agent.kind,
            ),
            rules,
        )
        for account in accounts
    }
    rule = deciding.pop() if len(deciding) == 1 else None

    def at_least(limit, value) -> bool:
        return limit is None or limit >= value

    if not (
        rule is not None
        and rule.auto_execute_max_magnitude == AUTO_CEILING
        and not rule.always_review
        and at_least(rule.auto_execute_max_amount, 100)
        and at_least(rule.more_approvals_above_magnitude, AUTO_CEILING)
        and at_least(rule.more_approvals_above_amount, 100)
        and at_least(rule.block_above_magnitude, Decimal("0.30"))
        and at_least(rule.block_above_amount, 300)
        and at_least(rule.cumulative_max_magnitude, Decimal("0.2223"))
    ):
        raise SystemExit(
            "The generated history assumes one policy routes the bench's budget reallocations: "
            "a 10% auto-execute ceiling, none lower on amounts, no hard ceiling below 30%, no "
            f"cumulative ceiling below 22.23% (as seed_demo makes it); found {rule}."
        )
    return rule


def ensure_history(count: int) -> None:
    """``count`` recorded budget reallocations by one agent, spread over 30 days, made in SQL,
    with the history the platform writes for each: its submission, its routing (the verdict,
    the deciding policy's version, the facts it was decided on) and, once decided, its end
    (executed, or rejected by a person). The simulation replays that history.

    Made so that the engine, replaying it under the policy that routes it (a 10% auto-execute
    ceiling and a 25% cumulative one per 24 h), gives every recorded verdict:

    - Proposals come in pairs: a move of a share of one campaign's budget to another, then the
      same amount moved back, both routed alike and with the same end. A pair's effects cancel
      exactly, so on any target the approved moves of a window compound to at most one pair
      left half-counted at the window's far edge (its move back, at most 1/0.9) and the
      candidate's own (at most 1.1): 22.2%, under the 25% cumulative ceiling.
    - The small pairs (1% to 10%, auto-executed) are on an account of their own,
      ``AUTO_ACCOUNT``, each pair decided within its own slot of time; the large ones (12% to
      30% one way; back, over 10.7%: above the auto-execute ceiling whatever the moves) go to
      review, on ``SIM_ACCOUNT``: 60% approved and executed five minutes later, 25% rejected,
      15% still pending (the queue the console bench reads). Their moves, which no cumulative
      ceiling would have let through unreviewed, so never count against the small ones.
    """
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from approvals.models import Agent, AgentKind, Proposal
    from ledger.models import Account, Campaign, Channel
    from policies.models import Policy

    accounts = []
    for external_id, name in [(SIM_ACCOUNT, "Simulation bench"), (AUTO_ACCOUNT, "Small moves")]:
        account, _ = Account.objects.get_or_create(
            external_id=external_id,
            defaults={"name": name, "channel": Channel.GOOGLE_ADS, "currency": "USD"},
        )
        for number in range(1, 21):
            Campaign.objects.get_or_create(
                account=account,
                external_id=f"campaign-{number}",
                defaults={"name": f"Campaign {number}", "daily_budget": 1000, "bid": 2},
            )
        accounts.append(account)
    agent, _ = Agent.objects.get_or_create(
        name=SIM_AGENT, defaults={"kind": AgentKind.OPTIMIZATION}
    )
    have = Proposal.objects.filter(agent=agent).count()
    with_history = Proposal.history.filter(agent_id=agent.pk, history_type="+").count()
    if have >= count and with_history == have:
        return
    if have:
        raise SystemExit(
            f"The bench database holds {have:,} generated proposals ({with_history:,} with their "
            f"history), not the {count:,} asked for: drop it ({DATABASE_URL}) and run again."
        )
    rule = deciding_rule(agent, accounts)
    operator = get_user_model().objects.filter(username="operator").first()
    print(f"Generating {count:,} recorded proposals and their history…", flush=True)
    started = time.perf_counter()
    params = {
        "agent": agent.pk,
        "agent_name": agent.name,
        "review_account": accounts[0].pk,
        "auto_account": accounts[1].pk,
        "policy": rule.policy_id,
        "version": rule.version,
        "policy_name": Policy.objects.get(pk=rule.policy_id).name,
        "operator": operator.pk if operator else None,
        "count": count,
        "pairs": (count + 1) // 2,
        "days": DAYS,
        "spacing": DAYS * 86400 / count,
    }
    with connection.cursor() as cursor:
        # The deciding policy's version was in force before the history it decided: the bench
        # database's policies are made (by seed_demo) just now, so its record is dated back.
        cursor.execute(
            "UPDATE policies_historicalpolicy SET history_date = %(before)s"
            " WHERE history_id = %(version)s AND history_date > %(before)s",
            {**params, "before": timezone.now() - timedelta(days=DAYS + 1)},
        )
        cursor.execute("SELECT setseed(0.7)")
        cursor.execute(PROPOSALS_SQL, params)
        cursor.execute(HISTORY_SQL, params)
        # What autovacuum does to tables this size in production soon after: statistics, and
        # the visibility map without which no count can be answered from an index alone.
        cursor.execute("VACUUM ANALYZE approvals_proposal")
        cursor.execute("VACUUM ANALYZE approvals_historicalproposal")
    print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)


# One row per proposal, as it is now. Times in units of the spacing ``s`` between two
# proposals: submitted at 0, assessed at 0.10 s, routed (and approved, if auto) at 0.11 s, the
# routing recorded at 0.12 s, executed 0.1 s after its approval; a reviewed one is decided five
# minutes after its submission. A pair's two moves are 1 s apart, the next pair's 2 s later.
# It all ends ten minutes before now: no record is dated in the future.
PROPOSALS_SQL = """
INSERT INTO approvals_proposal (
    agent_id, account_id, action_type, payload, rationale, supporting_data, confidence,
    external_ref, summary, magnitude, magnitude_label, amount, target_snapshot, effects, status,
    risk, verdict_outcome, verdict_policy_id, verdict_policy_version, verdict_reasons,
    guardrail_findings, required_approvals, review_round, created_at, updated_at, evaluated_at,
    decided_at, executed_at
)
WITH pairs AS MATERIALIZED (
    SELECT k, random() < 0.31 AS auto, random() AS fate, random() AS size
    FROM generate_series(0, %(pairs)s - 1) AS k
), members AS (
    SELECT 2 * k + m AS n, m, auto,
           CASE WHEN auto THEN 'executed'
                WHEN fate < 0.6 THEN 'executed'
                WHEN fate < 0.85 THEN 'rejected'
                ELSE 'pending_review' END AS status,
           -- cents of a 1,000.00 budget: 1%% to 10%% auto, 12%% to 30%% reviewed
           (CASE WHEN auto THEN 1000 + round(size * 9000)
                 ELSE 12000 + round(size * 18000) END)::bigint AS cents,
           'campaign-' || (1 + k %% 20) AS one,
           'campaign-' || (1 + (k + 1 + (k / 20) %% 19) %% 20) AS other
    FROM pairs CROSS JOIN generate_series(0, 1) AS m
), moves AS (
    SELECT n, auto, status, cents,
           CASE m WHEN 0 THEN one ELSE other END AS src,
           CASE m WHEN 0 THEN other ELSE one END AS dst,
           CASE m WHEN 0 THEN 100000 ELSE 100000 + cents END::bigint AS src_before,
           CASE m WHEN 0 THEN 100000 ELSE 100000 - cents END::bigint AS dst_before,
           now() - %(days)s * interval '1 day' - interval '10 minutes'
               + n * %(spacing)s * interval '1 second' AS at
    FROM members
    WHERE n < %(count)s
), figures AS (
    SELECT *, (cents / 100.0)::numeric(14, 2)::text AS money,
           round(100.0 * cents / src_before, 1)::text || '%%' AS percent,
           gcd(src_before - cents, src_before) AS src_gcd,
           gcd(dst_before + cents, dst_before) AS dst_gcd,
           CASE WHEN auto THEN at + 0.11 * %(spacing)s * interval '1 second'
                WHEN status <> 'pending_review' THEN at + interval '5 minutes' END AS decided
    FROM moves
)
SELECT %(agent)s, CASE WHEN auto THEN %(auto_account)s ELSE %(review_account)s END,
       'budget_reallocation',
       jsonb_build_object('from_campaign', src, 'to_campaign', dst, 'amount', money),
       'bench', '{}'::jsonb, 0.8, '',
       'move ' || money || ' USD/day from ' || src || ' to ' || dst || ' (' || percent || ')',
       round(cents::numeric / src_before, 6),
       percent || ' of ' || src || '''s daily budget',
       money::numeric,
       jsonb_build_object(
           src, jsonb_build_object('daily_budget', (src_before / 100.0)::numeric(14, 2)::text),
           dst, jsonb_build_object('daily_budget', (dst_before / 100.0)::numeric(14, 2)::text)),
       jsonb_build_object(
           src || '''s daily budget',
           (src_before - cents) / src_gcd || '/' || src_before / src_gcd,
           dst || '''s daily budget',
           (dst_before + cents) / dst_gcd || '/' || dst_before / dst_gcd),
       status, CASE WHEN auto THEN 30 ELSE 60 END,
       CASE WHEN auto THEN 'auto_approve' ELSE 'review' END, %(policy)s, %(version)s,
       jsonb_build_array(
           percent || ' of ' || src || '''s daily budget '
           || CASE WHEN auto THEN 'is within' ELSE 'exceeds' END
           || ' the 10.0%% auto-execute ceiling of policy “' || %(policy_name)s || '”.'),
       '{"block": [], "review": []}'::jsonb, 1, CASE WHEN auto THEN 0 ELSE 1 END,
       at,
       CASE WHEN status = 'executed' THEN decided + 0.11 * %(spacing)s * interval '1 second'
            WHEN status = 'rejected' THEN decided + 0.01 * %(spacing)s * interval '1 second'
            ELSE at + 0.12 * %(spacing)s * interval '1 second' END,
       at + 0.10 * %(spacing)s * interval '1 second',
       decided,
       CASE WHEN status = 'executed' THEN decided + 0.1 * %(spacing)s * interval '1 second' END
FROM figures
ORDER BY n
"""

# Each proposal's history, as the platform writes it: submitted by the agent ('+'), routed by
# the policy engine, and, once decided, its end: executed (by the executor) or rejected (by a
# person); the record of its end is the proposal as it is now. Written in the order it happened.
HISTORY_SQL = """
INSERT INTO approvals_historicalproposal (
    id, agent_id, account_id, action_type, payload, rationale, supporting_data, confidence,
    external_ref, summary, magnitude, magnitude_label, amount, target_snapshot, effects, status,
    risk, verdict_outcome, verdict_policy_id, verdict_policy_version, verdict_reasons,
    guardrail_findings, required_approvals, review_round, created_at, updated_at, evaluated_at,
    review_expires_at, decided_at, executed_at, history_date,
    history_change_reason, history_type, history_user_id, history_actor_kind, history_actor,
    history_agent_id
)
SELECT id, agent_id, account_id, action_type, payload, rationale, supporting_data, confidence,
       external_ref, summary, magnitude, magnitude_label, amount, target_snapshot, effects,
       CASE stage WHEN 1 THEN 'submitted'
                  WHEN 2 THEN CASE WHEN verdict_outcome = 'auto_approve' THEN 'approved'
                                   ELSE 'pending_review' END
                  ELSE status END,
       CASE WHEN stage > 1 THEN risk END,
       CASE WHEN stage > 1 THEN verdict_outcome ELSE '' END,
       CASE WHEN stage > 1 THEN verdict_policy_id END,
       CASE WHEN stage > 1 THEN verdict_policy_version END,
       CASE WHEN stage > 1 THEN verdict_reasons ELSE '[]'::jsonb END,
       CASE WHEN stage > 1 THEN guardrail_findings ELSE '{}'::jsonb END,
       required_approvals,
       CASE WHEN stage > 1 THEN review_round ELSE 0 END,
       created_at, changed_at,
       CASE WHEN stage > 1 THEN evaluated_at END,
       review_expires_at,
       CASE WHEN stage = 3 OR (stage = 2 AND verdict_outcome = 'auto_approve')
            THEN decided_at END,
       CASE WHEN stage = 3 THEN executed_at END,
       changed_at,
       CASE stage WHEN 1 THEN 'submitted'
                  WHEN 2 THEN verdict_reasons ->> 0
                  ELSE CASE WHEN status = 'executed' THEN 'executing → executed'
                            ELSE 'rejected by operator: Too aggressive' END END,
       CASE stage WHEN 1 THEN '+' ELSE '~' END,
       CASE WHEN stage = 3 AND status = 'rejected' THEN %(operator)s::integer END,
       CASE stage WHEN 1 THEN 'agent'
                  WHEN 2 THEN 'system'
                  ELSE CASE WHEN status = 'rejected' THEN 'user' ELSE 'system' END END,
       CASE stage WHEN 1 THEN %(agent_name)s
                  WHEN 2 THEN 'policy-engine'
                  ELSE CASE WHEN status = 'rejected' THEN 'operator' ELSE 'executor' END END,
       CASE WHEN stage = 1 THEN agent_id END
FROM (
    SELECT proposal.*, stage,
           CASE stage WHEN 1 THEN created_at
                      WHEN 2 THEN created_at + 0.12 * %(spacing)s * interval '1 second'
                      ELSE updated_at END AS changed_at
    FROM approvals_proposal AS proposal CROSS JOIN generate_series(1, 3) AS stage
    WHERE agent_id = %(agent)s AND (stage < 3 OR status <> 'pending_review')
) AS records
ORDER BY changed_at, id
"""


def child(mode: str, limit: int) -> dict:
    """One measured run, in a process of its own so that its peak memory is its own."""
    from django.utils import timezone

    from approvals.models import Proposal
    from approvals.simulation import _COLUMNS, CHUNK, draft_rule_set, simulate

    history = Proposal.objects.filter(agent__name=SIM_AGENT).order_by("created_at")
    since = history.values_list("created_at", flat=True).first()
    # The period that holds ``limit`` proposals, read as two rows rather than ``limit`` of them.
    until = history.values_list("created_at", flat=True)[limit : limit + 1].first()
    until = until or timezone.now()
    started = time.perf_counter()
    if mode == "stream":
        # The history records the simulation reads, as it reads them, and nothing done.
        relevant = Proposal.objects.filter(
            created_at__lt=until, updated_at__gte=since - timedelta(days=1)
        )
        stream = (
            Proposal.history.filter(id__in=relevant.values("pk"), history_date__lt=until)
            .order_by("history_id")
            .values_list(*_COLUMNS)
            .iterator(chunk_size=CHUNK)
        )
        rows = sum(1 for _ in stream)
        changed = None
    else:  # today's rules as a fixed set, as with drafts; or each routing's deciding rules
        rules = draft_rule_set([])[0] if mode == "simulate" else None
        report = simulate(rules=rules, since=since, until=until)
        rows, changed = report.proposals, report.changed
    return {
        "rows": rows,
        "changed": changed,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def measured(mode: str, limit: int) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--limit", str(limit)],
        check=True, capture_output=True, text=True, cwd=REPO,
    ).stdout  # fmt: skip
    return json.loads(output.strip().splitlines()[-1])


def print_rates(evaluations: int, rates: dict) -> None:
    print(f"Policy engine, in process, {evaluations:,} evaluations:")
    for label, rate in rates.items():
        print(f"  {label:<12} {rate:>10,} evaluations/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=1_000_000)
    parser.add_argument("--evaluations", type=int, default=200_000)
    parser.add_argument("--child", choices=["stream", "simulate", "replay"])
    parser.add_argument("--limit", type=int)
    parser.add_argument(
        "--engine-only",
        action="store_true",
        help="only the in-process evaluation rate (no database, seconds instead of minutes)",
    )
    args = parser.parse_args()
    if args.engine_only:
        print_rates(args.evaluations, evaluation_rate(args.evaluations))
        return
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

    print_rates(args.evaluations, rates)
    print(f"  dry run (assessment and verdict, with their database reads): {live:,}/s")
    print("Simulation over recorded proposals on PostgreSQL:")
    for label, key in [
        (f"stream {args.proposals:,}'s history (baseline)", "stream_all"),
        (f"simulate {args.proposals:,}", "simulate_all"),
        (f"simulate {small:,}", "simulate_tenth"),
    ]:
        run = runs[key]
        changed = "" if run["changed"] is None else f"   {run['changed']:,} routings changed"
        print(f"  {label:<36} {run['seconds']:>6} s   peak {run['peak_rss_mb']:>4} MB{changed}")


if __name__ == "__main__":
    main()
