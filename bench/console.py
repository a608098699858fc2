"""Benchmarks of the review console with a million proposals on PostgreSQL.

1. Server time of the review queue, a proposal's detail page and the dashboard (the admin home
   page), against a stock admin list of a small table in the same run; 20 requests each,
   in process through Django's test client, logged in as the operator.
2. Bulk approval of 1,000 proposals through the admin (the confirmed bulk action: a decision,
   feedback and a transition each, with their history, and an execution task sent for each),
   against 1,000 other proposals approved one at a time by the single-decision service, as an
   operator clicking "Approve" on each detail page would.

Run with ``bin/bench console``, after ``bin/bench policy`` has generated the proposals.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from io import StringIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hitl_bench")
QUEUE = "bench-console"
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
    users = json.loads(_seed(call_command))["users"]
    total = Proposal.objects.count()
    if total < 1_000_000:
        raise SystemExit(f"{total:,} proposals: run `bin/bench policy` first to generate them.")
    client = Client(HTTP_HOST="127.0.0.1")
    assert client.login(**users["operator"])
    sample = Proposal.objects.filter(status=ProposalStatus.PENDING_REVIEW).order_by("-pk").first()
    pages = {
        "baseline: stock admin list of accounts": timed_get(client, "/admin/ledger/account/"),
        "review queue": timed_get(client, "/admin/approvals/proposal/"),
        "proposal detail": timed_get(client, f"/admin/approvals/proposal/{sample.pk}/change/"),
        "dashboard (admin home)": timed_get(client, "/admin/"),
    }

    operator = get_user_model().objects.get(username="operator")
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
    print(f"Approving {BULK:,} proposals, decisions, feedback and history included:")
    print(f"  one at a time, the service (baseline)    {service_seconds:6.2f} s")
    print(f"  the admin's confirmed bulk action         {admin_seconds:6.2f} s")


def _seed(call_command) -> str:
    out = StringIO()
    call_command("seed_demo", "--json", stdout=out)
    return out.getvalue()


if __name__ == "__main__":
    main()
