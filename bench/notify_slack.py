"""A Slack button press → the proposal approved, on PostgreSQL and Redis, as it runs in
production: gunicorn with the Procfile's uvicorn workers answering Slack's signed requests,
a local Slack-compatible Web API (tests/slack_fake.py) answering the platform's users.info.

Proposals wait for a person (a +25% bid change each, on a campaign of its own); the operator
presses Approve on each in turn, as Slack posts it: a signed ``block_actions`` request to
``/integrations/slack/interactivity/``. Latency: from sending the press to Slack's answer
(200), by which time the approval is committed (the press decides in the request). Each
proposal is then checked decided (approved, then executed by bin/worker beside it).
Goal: p50 < 200 ms (Slack wants an answer within 3 s).

Run with ``python bench/notify_slack.py [--presses 50]``, or call ``press_to_approved`` from
another benchmark with a web server and a Slack of its own. Its database (BENCH_DATABASE_URL's
name + ``_notify_slack``) is made anew at each run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
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
    percentile,
    start_process,
    stop_process_group,
    temporary_data_dir,
    wait_for_http,
)
from tests import slack_fake  # noqa: E402

DATABASE_URL = bench_database("notify_slack")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = f"bench-{uuid.uuid4().hex[:8]}"
RESULTS = REPO / "bench" / "results"
OPERATOR_ON_SLACK = "U0OPERATOR"  # operator@example.com on the local Slack
BIG_MOVE = "1.25"  # +25% on a bid of 1.00: over the demo policy's 15%, waits for a person


def press_to_approved(*, base_url: str, proposal_ids: list[int], slack_user_id: str) -> dict:
    """Press Approve on each proposal as ``slack_user_id``, one after another, over one
    kept-alive connection to ``base_url`` (the platform, whose SLACK_SIGNING_SECRET is
    tests/slack_fake.py's). Returns the latencies' p50, p99, mean and max in milliseconds and
    the answers that were not 200."""
    host, port = base_url.removeprefix("http://").rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    latencies, refused = [], []
    for proposal_id in proposal_ids:
        body, headers = slack_fake.press(
            user_id=slack_user_id, action_id="approve", value=str(proposal_id)
        )
        started = time.perf_counter()
        connection.request("POST", "/integrations/slack/interactivity/", body, headers)
        response = connection.getresponse()
        answer = response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            refused.append({"proposal": proposal_id, "status": response.status, "body": answer})
    connection.close()
    return {
        "presses": len(latencies),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "mean_ms": round(sum(latencies) / len(latencies), 1),
        "max_ms": round(max(latencies), 1),
        "refused": refused,
    }


def _manage(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout


def _waiting_proposals(count: int) -> list[int]:
    """``count`` proposals of the optimizer that wait for a person, each on a campaign of its
    own (so that no cap or ceiling of one counts the others)."""
    from approvals.models import Agent
    from approvals.services.proposals import Submission, proposals_submit
    from audit.actors import Actor
    from audit.history import create_with_history
    from ledger.models import Account, Campaign

    account = Account.objects.get(external_id="demo")
    campaigns = [
        Campaign(
            account=account,
            external_id=f"slack-bench-{i:04d}",
            name=f"Benchmark campaign {i}",
            daily_budget="100.00",
            bid="1.00",
        )
        for i in range(count)
    ]
    create_with_history(Campaign, campaigns, actor=Actor.system("bench"))
    agent = Agent.objects.get(name="optimizer")
    proposals = proposals_submit(
        agent=agent,
        submissions=[
            Submission(
                account="demo",
                action_type="bid_adjustment",
                payload={"campaign": campaign.external_id, "new_bid": BIG_MOVE},
                rationale="Benchmark: CPC below target for five days.",
                confidence=0.9,
            )
            for campaign in campaigns
        ],
    )
    ids = []
    for proposal in proposals:
        if getattr(proposal, "status", None) != "pending_review":
            raise SystemExit(f"a proposal does not wait for a person: {proposal}")
        ids.append(proposal.pk)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=50)
    parser.add_argument("--warm-up", type=int, default=5, help="Presses not counted.")
    parser.add_argument("--web-workers", type=int, default=2)
    args = parser.parse_args()

    slack = slack_fake.SlackServer()
    port = free_port()
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        HITL_CELERY_QUEUE=QUEUE,
        HITL_LOG_LEVEL="WARNING",
        HITL_DATA_DIR=temporary_data_dir("hitl-bench-slack-"),
        SLACK_API_URL=slack.url,
        SLACK_BOT_TOKEN=slack_fake.TOKEN,
        SLACK_SIGNING_SECRET=slack_fake.SIGNING_SECRET,
        HITL_BENCH_RUN=QUEUE,  # marks every process this run starts
    )
    RESULTS.mkdir(exist_ok=True)
    create_database(DATABASE_URL, fresh=True)
    _manage("migrate", "-v0")
    _manage("migrate", "--run-syncdb", "-v0")  # the baselines' tables
    _manage("seed_demo", "--json")

    import django

    django.setup()
    from approvals.models import Proposal

    proposal_ids = _waiting_proposals(args.warm_up + args.presses)
    web = start_process(
        [sys.executable, "-m", "gunicorn", "bench.asgi:application",
         "--worker-class", "hitlproject.webserver.WebWorker", "--bind", f"127.0.0.1:{port}",
         "--workers", str(args.web_workers), "--timeout", "60", "--log-level", "warning"],
        RESULTS / "gunicorn-notify-slack.log", cwd=REPO,
    )  # fmt: skip
    # The worker executes what is approved, as in production: approvals that never ran would
    # pile up ahead of each new one and cost it more than they do.
    worker = start_process(
        [str(REPO / "bin" / "worker")], RESULTS / "worker-notify-slack.log", cwd=REPO
    )
    try:
        wait_for_http(port, "/healthz", process=web)
        time.sleep(3)  # the worker connecting to Redis
        base_url = f"http://127.0.0.1:{port}"
        press_to_approved(
            base_url=base_url,
            proposal_ids=proposal_ids[: args.warm_up],
            slack_user_id=OPERATOR_ON_SLACK,
        )
        measured = press_to_approved(
            base_url=base_url,
            proposal_ids=proposal_ids[args.warm_up :],
            slack_user_id=OPERATOR_ON_SLACK,
        )
    finally:
        stop_process_group(web)
        stop_process_group(worker, f"HITL_BENCH_RUN={QUEUE}")
        slack.close()
        _purge_queues()

    approved = Proposal.objects.filter(
        pk__in=proposal_ids[args.warm_up :], decided_at__isnull=False
    ).count()
    measured |= {"approved": approved, "web_workers": args.web_workers, "cores": os.cpu_count()}
    (RESULTS / "notify_slack.json").write_text(json.dumps(measured, indent=2, default=str))
    print(
        f"Slack button press → proposal approved, {measured['presses']} presses, "
        f"{args.web_workers} gunicorn workers, {os.cpu_count()} cores (goal: p50 < 200 ms):\n"
        f"  p50 {measured['p50_ms']} ms, p99 {measured['p99_ms']} ms, "
        f"mean {measured['mean_ms']} ms, max {measured['max_ms']} ms; "
        f"{approved} of {measured['presses']} approved, {len(measured['refused'])} refused"
    )
    if approved != measured["presses"]:
        raise SystemExit(f"not every press approved its proposal: {measured['refused'][:3]}")


def _purge_queues() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for name in (QUEUE, f"{QUEUE}.webhooks", f"{QUEUE}.callbacks"):
        client.delete(name)


if __name__ == "__main__":
    main()
