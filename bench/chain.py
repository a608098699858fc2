"""Verifying the audit chain, as an auditor asks for it on the chain's page, with a history of
50,000 proposals on PostgreSQL (and 5,000 on the embedded SQLite default).

The history is made by the platform's own services, in process: campaigns (one a proposal,
with their history), then the optimizer's proposals submitted in batches of 1,000
(``proposals_submit``: two in three a 5% bid change the policy approves, one in three a 30%
one sent to a person); of those, half approved and a quarter rejected by the operator in bulk
(``proposals_approve``, ``proposals_reject``), a quarter left waiting; every approved one
executed (``proposals_execute``, 100 at a time, as a worker takes them along). So each
proposal has the history records, decisions, feedback, notifications, executions and campaign
records the platform writes for it. Then the chain is sealed by its own code (``chain_seal``).

Measured: ``chain_verify`` end to end (what the worker runs for the page), three times, with
this code and with the code of ``--against`` (a git revision, by default the one before
verification was made faster), each in a process of its own over the same database,
interleaved; then one profiled run of each, top entries by own and by cumulative time. Both
must find the chain whole, and then both must name the same breaks after a record is
altered, one deleted and a live row changed past its history.

Run with ``bin/bench chain [--proposals 50000] [--sqlite 5000] [--against REV]``. Its
PostgreSQL database (BENCH_DATABASE_URL's name + ``_chain``) is kept between runs and made
anew only when it does not hold the history asked for (``--fresh`` to force it); the SQLite one
is made in a temporary directory at each run.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# A measure of the code ``--against`` names runs this script with that code's tree first.
sys.path.insert(0, os.environ.get("HITL_BENCH_TREE", str(REPO)))

from bench.common import bench_database, create_database, temporary_data_dir  # noqa: E402

DATABASE_URL = bench_database("chain")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
RESULTS = REPO / "bench" / "results"
# The code before verification was made faster (h197): the baseline.
BEFORE = "64caaef"
BATCH = 1000
# The approved proposals one execution takes at most: a worker's task, with those it takes
# along (``HITL_EXECUTION_TAKES_ALONG``, 99).
TAKEN_ALONG = 100
ROUNDS = 3
TOP = 12


def environment(database_url: str | None, data_dir: str, queue: str) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hitlproject.settings",
        "REDIS_URL": REDIS_URL,
        "HITL_CELERY_QUEUE": queue,
        "HITL_LOG_LEVEL": "WARNING",
        "HITL_DATA_DIR": data_dir,
        "HITL_API_THROTTLE_RATE": "100000000/min",
    }
    if database_url is None:  # the embedded default: SQLite in HITL_DATA_DIR
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
    else:
        env["DATABASE_URL"] = database_url
    return env


# --- Making the history ---------------------------------------------------------------------


def build(count: int) -> dict:
    """The history of ``count`` proposals, made by the platform's services, then sealed. Needs
    Django set up on an empty, migrated database."""
    from io import StringIO

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from approvals.models import Agent, Proposal, ProposalStatus
    from approvals.services.decisions import proposals_approve, proposals_reject
    from approvals.services.proposals import Submission, proposals_submit
    from audit.chain import chain_seal
    from bench.common import make_campaigns
    from executors.runner import proposals_execute

    call_command("seed_demo", "--json", stdout=StringIO())
    started = time.perf_counter()
    campaigns = make_campaigns(count)
    optimizer = Agent.objects.get(name="optimizer")
    operator = get_user_model().objects.get(username="operator")
    reviewed = []
    for start in range(0, count, BATCH):
        submissions = [
            Submission(
                account="demo",
                action_type="bid_adjustment",
                payload={"campaign": campaign, "new_bid": "1.30" if n % 3 == 2 else "1.05"},
                rationale="Benchmark: CPC below target for five days.",
                supporting_data={"cpc": [1.1, 1.05, 1.02, 0.98, 0.97]},
                confidence=0.9,
            )
            for n, campaign in enumerate(campaigns[start : start + BATCH], start)
        ]
        made = proposals_submit(agent=optimizer, submissions=submissions)
        reviewed += [p.pk for p in made if p.status == ProposalStatus.PENDING_REVIEW]
        purge(os.environ["HITL_CELERY_QUEUE"])
        print(f"\r  submitted {start + len(made):,}", end="", flush=True)
    print()
    half, quarter = len(reviewed) // 2, len(reviewed) // 4
    for start in range(0, half, BATCH):
        proposals_approve(
            proposal_ids=reviewed[start : min(half, start + BATCH)], reviewer=operator
        )
    for start in range(half, half + quarter, BATCH):
        proposals_reject(
            proposal_ids=reviewed[start : min(half + quarter, start + BATCH)],
            reviewer=operator,
            reason_code="too_aggressive",
        )
    purge(os.environ["HITL_CELERY_QUEUE"])
    approved = list(
        Proposal.objects.filter(status=ProposalStatus.APPROVED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for start in range(0, len(approved), TAKEN_ALONG):
        proposals_execute(proposal_ids=approved[start : start + TAKEN_ALONG])
        if start % BATCH == 0:
            print(f"\r  executed {start:,} of {len(approved):,}", end="", flush=True)
    print()
    purge(os.environ["HITL_CELERY_QUEUE"])
    made_in = time.perf_counter() - started
    started = time.perf_counter()
    sealed = chain_seal()
    return {
        "made_s": round(made_in, 1),
        "sealed": sealed,
        "seal_s": round(time.perf_counter() - started, 1),
    }


def purge(queue: str) -> None:
    """The tasks the services queued (the history is made in process): dropped."""
    from django.conf import settings

    if not settings.CELERY_BROKER_URL.startswith("redis"):
        return
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for name in (queue, f"{queue}.webhooks", f"{queue}.callbacks"):
        client.delete(name)


def census() -> dict:
    """How many records the chain seals, by table, and how many proposals."""
    from approvals.models import Proposal
    from audit.chain import chained_models
    from audit.models import ChainLink

    records = {m._meta.label_lower: m.objects.count() for m in chained_models()}
    return {
        "proposals": Proposal.objects.count(),
        "links": ChainLink.objects.count(),
        "records": {table: n for table, n in records.items() if n},
    }


# --- Measuring, in a process of its own ---------------------------------------------------------


def measure(profile: bool) -> dict:
    """One verification, timed (and profiled), what it found."""
    import django

    django.setup()
    from audit.chain import chain_verify

    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    found = chain_verify()
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    out = {
        "seconds": round(elapsed, 2),
        "links": found.links,
        "holds": found.holds,
        "breaks_found": found.breaks_found,
        "breaks": [str(b) for b in found.breaks],
        "live_rows": found.live_rows,
        "head": found.head,
    }
    if profiler:
        out["profile"] = top_entries(profiler)
    return out


def top_entries(profiler: cProfile.Profile) -> dict:
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, function), (_, calls, own, cumulative, _) in stats.stats.items():
        short = filename.split("site-packages/", 1)[-1]
        for prefix in ("/audit/", "/hitlproject/"):
            if prefix in filename:
                short = prefix.strip("/") + "/" + filename.rsplit(prefix, 1)[1]
        rows.append(
            {
                "function": f"{short}:{line}({function})",
                "calls": calls,
                "own_s": round(own, 3),
                "cumulative_s": round(cumulative, 3),
            }
        )
    return {
        "by_own": sorted(rows, key=lambda r: -r["own_s"])[:TOP],
        "by_cumulative": sorted(rows, key=lambda r: -r["cumulative_s"])[:TOP],
    }


def clone_database(source: str, copy: str) -> None:
    """``copy``, made anew from ``source`` (PostgreSQL's CREATE DATABASE … TEMPLATE)."""
    import psycopg

    name, template = copy.rsplit("/", 1)[1], source.rsplit("/", 1)[1]
    with psycopg.connect(source.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def tree_of(revision: str) -> str:
    """The project's code at ``revision``, exported to a temporary directory."""
    folder = tempfile.mkdtemp(prefix="hitl-bench-chain-")
    archive = subprocess.run(
        ["git", "archive", revision], cwd=REPO, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def run(tree: Path, env: dict, profile: bool = False) -> dict:
    """``measure`` with the code in ``tree``, in a process of its own."""
    command = [sys.executable, str(REPO / "bench" / "chain.py"), "--measure"]
    if profile:
        command.append("--profile")
    completed = subprocess.run(
        command,
        cwd=tree,
        env={**env, "PYTHONPATH": str(tree), "HITL_BENCH_TREE": str(tree)},
        capture_output=True,
        text=True,
    )
    if completed.returncode:
        raise SystemExit(f"verification in {tree} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def tamper() -> list[str]:
    """A sealed record altered, another deleted, a live row changed past its history: what
    each verification must name."""
    from django.db import connection

    from approvals.models import Decision, Proposal

    proposal = Proposal.history.order_by("history_id")[100]
    decision = Decision.history.order_by("history_id").first()
    live = Proposal.objects.order_by("pk")[200]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE approvals_historicalproposal SET rationale = 'Nothing to see here.' "
            "WHERE history_id = %s",
            [proposal.history_id],
        )
        cursor.execute(
            "DELETE FROM approvals_historicaldecision WHERE history_id = %s",
            [decision.history_id],
        )
        cursor.execute("UPDATE approvals_proposal SET confidence = 0.1 WHERE id = %s", [live.pk])
    return [
        f"proposal record {proposal.history_id} altered",
        f"decision record {decision.history_id} deleted",
        f"proposal #{live.pk}'s live row changed",
    ]


def compare(label: str, env: dict, before: Path, after: Path, rounds: int) -> dict:
    timings: dict[str, list[float]] = {"before": [], "after": []}
    found = {}
    for _ in range(rounds):
        for name, tree in (("before", before), ("after", after)):
            result = run(tree, env)
            timings[name].append(result["seconds"])
            found[name] = result
    profiles = {
        name: run(tree, env, profile=True) for name, tree in (("before", before), ("after", after))
    }
    same = {
        k: found["before"][k] == found["after"][k]
        for k in ("links", "holds", "breaks", "head", "live_rows")
    }
    report = {
        "label": label,
        "before_s": timings["before"],
        "after_s": timings["after"],
        "median_before_s": statistics.median(timings["before"]),
        "median_after_s": statistics.median(timings["after"]),
        "links": found["after"]["links"],
        "live_rows": found["after"]["live_rows"],
        "holds": found["after"]["holds"],
        "same_findings": same,
        "profile_before": profiles["before"]["profile"],
        "profile_after": profiles["after"]["profile"],
    }
    speedup = report["median_before_s"] / max(report["median_after_s"], 1e-9)
    print(
        f"{label}: {report['links']:,} links, {report['live_rows']:,} live rows; verification "
        f"before {report['median_before_s']:.2f} s, after {report['median_after_s']:.2f} s "
        f"(median of {rounds}; {speedup:.1f}×); same findings: {all(same.values())}",
        flush=True,
    )
    if not all(same.values()):
        raise SystemExit(f"the two verifications disagree: {same}")
    return report


def tampered_compare(label: str, env: dict, before: Path, after: Path) -> dict:
    results = {name: run(tree, env) for name, tree in (("before", before), ("after", after))}
    if results["before"]["breaks"] != results["after"]["breaks"]:
        raise SystemExit(
            f"{label}: the breaks named differ:\n{results['before']['breaks']}\n"
            f"{results['after']['breaks']}"
        )
    print(
        f"{label}, tampered: both name the same {results['after']['breaks_found']} breaks, "
        f"before {results['before']['seconds']:.2f} s, after {results['after']['seconds']:.2f} s",
        flush=True,
    )
    return {
        "breaks": results["after"]["breaks"],
        "before_s": results["before"]["seconds"],
        "after_s": results["after"]["seconds"],
    }


def print_profile(name: str, profile: dict) -> None:
    print(f"  {name}, by own time:")
    for row in profile["by_own"][:8]:
        print(f"    {row['own_s']:8.3f} s own  {row['calls']:>9,} calls  {row['function']}")


def prepared(label: str, env: dict, count: int, fresh: bool) -> dict:
    """The database of ``env`` holding the history of ``count`` proposals, sealed."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "chain.py"), "--build", str(count)]
        + (["--fresh"] if fresh else []),
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        text=True,
        stdout=subprocess.PIPE,
    )
    if result.returncode:
        raise SystemExit(f"{label}: making the history failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def build_here(count: int, fresh: bool) -> None:
    import django

    database_url = os.environ.get("DATABASE_URL")
    if database_url:
        create_database(database_url, fresh=fresh)
    django.setup()
    from django.core.management import call_command

    from approvals.models import Proposal
    from audit.models import ChainLink

    call_command("migrate", verbosity=0)
    made = {}
    if Proposal.objects.count() != count or not ChainLink.objects.exists():
        if Proposal.objects.exists():
            raise SystemExit(
                f"The bench database holds {Proposal.objects.count():,} proposals, not "
                f"{count:,}: run with --fresh."
            )
        print(f"Making the history of {count:,} proposals…", file=sys.stderr, flush=True)
        sys.stdout, real = sys.stderr, sys.stdout
        try:
            made = build(count)
        finally:
            sys.stdout = real
    print(json.dumps({**made, **census()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=50_000)
    parser.add_argument("--sqlite", type=int, default=5_000, help="0: no SQLite run")
    parser.add_argument("--against", default=BEFORE, help="the git revision to compare with")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--fresh", action="store_true", help="make the PostgreSQL history anew")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--build", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        print(json.dumps(measure(arguments.profile)))
        return
    if arguments.build is not None:
        build_here(arguments.build, arguments.fresh)
        return

    RESULTS.mkdir(exist_ok=True)
    before, after = Path(tree_of(arguments.against)), REPO
    report = {"against": arguments.against, "runs": []}
    setups = []
    if arguments.proposals:  # 0: no PostgreSQL run
        setups.append(("PostgreSQL", DATABASE_URL, arguments.proposals, arguments.fresh))
    if arguments.sqlite:
        setups.append(("SQLite (embedded default)", None, arguments.sqlite, True))
    for label, database_url, count, fresh in setups:
        data_dir = temporary_data_dir("hitl-bench-chain-")
        env = environment(database_url, data_dir, f"bench-chain-{uuid.uuid4().hex[:8]}")
        made = prepared(label, env, count, fresh)
        print(
            f"{label}: {made['proposals']:,} proposals, {made['links']:,} records sealed",
            flush=True,
        )
        run_report = {"made": made, **compare(label, env, before, after, arguments.rounds)}
        print_profile("before", run_report["profile_before"])
        print_profile("after", run_report["profile_after"])
        # Tampered with in a copy (PostgreSQL: a database made from it; SQLite: made anew at
        # each run anyway), so that the next run finds the history as it was made.
        if database_url is not None:
            copy = f"{database_url}_tampered"
            clone_database(database_url, copy)
            env = {**env, "DATABASE_URL": copy}
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import django; django.setup(); from bench.chain import tamper; tamper()",
            ],
            cwd=REPO,
            env={**env, "PYTHONPATH": str(REPO)},
            check=True,
        )
        run_report["tampered"] = tampered_compare(label, env, before, after)
        report["runs"].append(run_report)
    (RESULTS / "chain.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
