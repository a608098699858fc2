"""Benchmarks of the review console with a million proposals on PostgreSQL.

1. Server time of the review queue, a proposal's detail page and the dashboard (the admin home
   page), against a stock admin list of a small table in the same run; 20 requests each,
   in process through Django's test client, logged in as the operator.
2. Server time of finding things at that size: the queue sorted by each sortable column, every
   status at once, and searches that match one proposal, a hundred, a tenth of them and all of
   them (10,000 creative batches are added once, 1 in 100 with a banned word, each with an
   external ref), with the plan PostgreSQL chose for each search: the indexes it read.
3. Bulk approval of 1,000 proposals through the admin (the confirmed bulk action: a decision,
   feedback and a transition each, with their history, and an execution task sent for each),
   against 1,000 other proposals approved one at a time by the single-decision service, as an
   operator clicking "Approve" on each detail page would.

Run with ``bin/bench console``, after ``bin/bench policy`` has generated the proposals.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from io import StringIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hitl_bench")
QUEUE = "bench-console"
SEARCH_AGENT = "bench-copywriter"
CREATIVES = 10_000
BANNED = "The body of creative 1 uses the banned term “guaranteed”: “«Guaranteed» results…”"
ALWAYS_REVIEWED = "Policy “Creatives” sends every creative batch to a human."
os.environ.update(
    DJANGO_SETTINGS_MODULE="hitlproject.settings",
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
    HITL_CELERY_QUEUE=QUEUE,
    HITL_LOG_LEVEL="WARNING",
)
sys.path.insert(0, str(REPO))

REQUESTS = 20
BULK = 1000


def timed_get(client, url: str) -> dict:
    client.get(url)  # warm
    samples = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 1),
        "p90_ms": round(samples[int(0.9 * len(samples))] * 1000, 1),
    }


def main() -> None:
    import django

    django.setup()
    import redis
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from approvals.models import Decision, Proposal, ProposalStatus
    from approvals.services.decisions import proposal_approve

    call_command("migrate", verbosity=0)
    _seed(call_command)
    total = Proposal.objects.count()
    if total < 1_000_000:
        raise SystemExit(f"{total:,} proposals: run `bin/bench policy` first to generate them.")
    client = Client(HTTP_HOST="127.0.0.1")
    operator = get_user_model().objects.get(username="operator")
    # As the tests do: the login lockout (django-axes) refuses a login without a request.
    client.force_login(operator)
    sample = Proposal.objects.filter(status=ProposalStatus.PENDING_REVIEW).order_by("-pk").first()
    pages = {
        "baseline: stock admin list of accounts": timed_get(client, "/admin/ledger/account/"),
        "review queue": timed_get(client, "/admin/approvals/proposal/"),
        "proposal detail": timed_get(client, f"/admin/approvals/proposal/{sample.pk}/change/"),
        "dashboard (admin home)": timed_get(client, "/admin/"),
    }
    finding, plans = finding_things(client)

    waiting = list(
        Proposal.objects.filter(status=ProposalStatus.PENDING_REVIEW, decisions__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)[: 2 * BULK]
    )
    direct, through_admin = waiting[:BULK], waiting[BULK:]
    started = time.perf_counter()
    for proposal_id in direct:
        proposal_approve(proposal_id=proposal_id, reviewer=operator)
    service_seconds = time.perf_counter() - started

    started = time.perf_counter()
    confirmed = {"action": "approve_selected", "confirm": "yes", "note": ""}
    response = client.post(
        "/admin/approvals/proposal/", {**confirmed, "_selected_action": through_admin}
    )
    admin_seconds = time.perf_counter() - started
    assert response.status_code == 302, response.status_code
    approved = Proposal.objects.filter(pk__in=through_admin, status=ProposalStatus.APPROVED).count()
    assert approved == BULK, approved
    history_rows = Proposal.history.filter(id__in=through_admin, status="approved").count()
    assert (
        history_rows == BULK and Decision.objects.filter(proposal__in=through_admin).count() == BULK
    )
    redis.Redis.from_url(os.environ["REDIS_URL"]).delete(QUEUE)

    results = {
        "proposals": total,
        "pages": pages,
        "finding": finding,
        "search_plans": plans,
        "bulk_approve": {
            "proposals": BULK,
            "baseline_service_seconds": round(service_seconds, 2),
            "admin_bulk_action_seconds": round(admin_seconds, 2),
        },
    }
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "console.json").write_text(json.dumps(results, indent=2))
    print(
        f"Review console with {total:,} proposals on PostgreSQL, server time, {REQUESTS} requests:"
    )
    for label, figures in pages.items():
        print(f"  {label:<40} p50 {figures['p50_ms']:>6} ms   p90 {figures['p90_ms']:>6} ms")
    print("Finding things, the same way:")
    for label, figures in finding.items():
        print(f"  {label:<52} p50 {figures['p50_ms']:>6} ms   p90 {figures['p90_ms']:>6} ms")
        if label in plans:
            print(f"  {'':<52} reads {plans[label]}")
    print(f"Approving {BULK:,} proposals, decisions, feedback and history included:")
    print(f"  one at a time, the service (baseline)    {service_seconds:6.2f} s")
    print(f"  the admin's confirmed bulk action         {admin_seconds:6.2f} s")


def ensure_searchable() -> None:
    """``CREATIVES`` creative batches by an agent of their own on the policy bench's account,
    made in SQL once: one creative each, one in a hundred promising "guaranteed" results (which
    the guardrails flag), each with an external ref, a fifth of them waiting for review."""
    from django.db import connection

    from approvals.models import Agent, AgentKind, Proposal
    from ledger.models import Account

    account = Account.objects.get(external_id="bench-sim")
    agent, _ = Agent.objects.get_or_create(
        name=SEARCH_AGENT, defaults={"kind": AgentKind.PRODUCTION}
    )
    if Proposal.objects.filter(agent=agent).exists():
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO approvals_proposal (
                agent_id, account_id, action_type, payload, rationale, supporting_data, confidence,
                external_ref, summary, magnitude, magnitude_label, target_snapshot, effects,
                status, risk, verdict_outcome, verdict_reasons, guardrail_findings,
                required_approvals, review_round, created_at, updated_at, evaluated_at,
                waiting_since
            )
            SELECT %(agent)s, %(account)s, 'creative_deployment',
                   jsonb_build_object('campaign', 'campaign-' || (1 + n %% 20), 'creatives',
                       jsonb_build_array(jsonb_build_object(
                           'headline', (ARRAY['Spring sale', 'New arrivals', 'Last chance',
                                              'Members save more'])[1 + n %% 4],
                           'body', CASE WHEN n %% 100 = 0 THEN 'Guaranteed results in a week.'
                                        ELSE 'Find what you need, fast.' END,
                           'call_to_action', 'Shop now'))),
                   'Refreshed copy for the season.', '{}'::jsonb, 0.7, 'bench-ref-' || n,
                   'deploy 1 creative to campaign-' || (1 + n %% 20), 1, 'A batch of 1 creative',
                   '{}'::jsonb, '{}'::jsonb,
                   CASE WHEN n %% 5 = 0 THEN 'pending_review' ELSE 'executed' END,
                   CASE WHEN n %% 100 = 0 THEN 60 ELSE 50 END, 'review',
                   CASE WHEN n %% 100 = 0 THEN %(flagged_reasons)s::jsonb
                        ELSE %(clean_reasons)s::jsonb END,
                   CASE WHEN n %% 100 = 0 THEN %(findings)s::jsonb ELSE '{}'::jsonb END,
                   1, 1, at, at, at, CASE WHEN n %% 5 = 0 THEN at END
            FROM (
                SELECT n, now() - interval '30 days' + n * interval '259 seconds' AS at
                FROM generate_series(1, %(count)s) AS n
            ) AS generated
            """,
            {
                "agent": agent.pk,
                "account": account.pk,
                "count": CREATIVES,
                "flagged_reasons": json.dumps([BANNED]),
                "clean_reasons": json.dumps([ALWAYS_REVIEWED]),
                "findings": json.dumps({"block": [], "review": [BANNED]}),
            },
        )
        cursor.execute("ANALYZE approvals_proposal")


def finding_things(client) -> tuple[dict, dict]:
    """The sorted queue, every status, and searches: server times, and each search's plan."""
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    from approvals.models import Proposal
    from approvals.search import proposals_matching

    ensure_searchable()
    queue = RequestFactory().get("/admin/approvals/proposal/")
    queue.user = get_user_model().objects.get(username="operator")
    columns = ["action_checkbox", *admin.site._registry[Proposal].get_list_display(queue)]

    def sorted_by(name: str, descending: bool = False) -> str:
        return f"/admin/approvals/proposal/?o={'-' if descending else ''}{columns.index(name)}"

    searches = {
        "search: one proposal (its external ref)": "bench-ref-4242",
        "search: a word of 100 creatives (guaranteed)": "guaranteed",
        "search: a campaign (a tenth of all)": "campaign-7",
        "search: an agent's name (every proposal of it)": "bench-sim-optimizer",
    }
    pages = {
        "queue by age, youngest first": sorted_by("age"),
        "queue by age, oldest first": sorted_by("age", descending=True),
        "queue by magnitude, largest first": sorted_by("magnitude_display", descending=True),
        "queue by approvals, most first": sorted_by("approvals_display", descending=True),
        "every status, newest first": "/admin/approvals/proposal/?status=all",
        **{label: f"/admin/approvals/proposal/?q={term}" for label, term in searches.items()},
        "search the queue only: a campaign": (
            "/admin/approvals/proposal/?status=pending_review&q=campaign-7"
        ),
    }
    timings = {label: timed_get(client, url) for label, url in pages.items()}
    plans = {}
    for label, term in searches.items():
        page = proposals_matching(Proposal.objects.all(), term).order_by("-created_at", "-pk")
        plan = page[:51].explain()
        plans[label] = ", ".join(dict.fromkeys(INDEX_READ.findall(plan))) or "the table"
    return timings, plans


INDEX_READ = re.compile(r"Index (?:Only )?Scan (?:Backward )?(?:using|on) (\w+)")


def _seed(call_command) -> str:
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return out.getvalue()


if __name__ == "__main__":
    main()
