"""Benchmark of reaching the people who decide, on PostgreSQL and Redis, as it runs in
production: gunicorn with the Procfile's uvicorn workers and bin/worker beside it, a real SMTP
server (aiosmtpd) and a Slack-compatible HTTP server in this process.

1. Proposal routed to a human → told: proposals that wait for a person (a +25% bid change each,
   on a campaign of its own) are submitted one at a time, ``--interval`` apart, by an agent;
   the operator is on the demo's route and chose email and Slack. Latency: from the
   submission's answer (which says ``pending_review``) to the SMTP server accepting the email,
   and to the Slack server receiving ``chat.postMessage``. Goal: p50 < 1 s, p99 < 3 s over 200
   proposals.
2. Slack button press → proposal approved: a signed ``block_actions`` press on Approve, as
   Slack sends it, for proposals waiting; latency from sending the press to its answer (the
   decision is made in the request), with the proposal checked approved afterwards. Goal: p50
   < 200 ms.

Run with ``bin/bench notify``. Its database (BENCH_DATABASE_URL's name + ``_notify``) is made
anew at each run.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    bench_database,
    create_database,
    free_port,
    make_campaigns,
    manage,
    percentile,
    start_process,
    stop_process_group,
    temporary_data_dir,
    wait_for_http,
)

DATABASE_URL = bench_database("notify")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = f"bench-{uuid.uuid4().hex[:8]}"
PORT = int(os.environ.get("BENCH_PORT", "0")) or free_port()
SMTP_PORT = free_port()
SLACK_PORT = free_port()
SIGNING_SECRET = "bench-signing-secret"
MARKER = f"HITL_BENCH_RUN={QUEUE}"
RESULTS = REPO / "bench" / "results"
OPERATOR_SLACK_ID = "U0OPERATOR"

os.environ.update(
    DJANGO_SETTINGS_MODULE="bench.settings",
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=REDIS_URL,
    HITL_CELERY_QUEUE=QUEUE,
    HITL_API_THROTTLE_RATE="100000000/min",
    HITL_LOG_LEVEL="WARNING",
    CELERY_LOG_LEVEL="warning",
    HITL_DATA_DIR=temporary_data_dir("hitl-bench-notify-"),
    HITL_BENCH_RUN=QUEUE,
    EMAIL_HOST="127.0.0.1",
    EMAIL_PORT=str(SMTP_PORT),
    SLACK_API_URL=f"http://127.0.0.1:{SLACK_PORT}/api/",
    SLACK_BOT_TOKEN="xoxb-bench",
    SLACK_SIGNING_SECRET=SIGNING_SECRET,
    HITL_OUTBOUND_ALLOW_PRIVATE="1",
)

SUBJECT_ID = re.compile(r"#(\d+)")


class Arrivals:
    """When each proposal's message reached a server, by proposal id."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.lock = threading.Lock()

    def saw(self, text: str) -> None:
        match = SUBJECT_ID.search(text)
        if match:
            with self.lock:
                self.at.setdefault(int(match.group(1)), time.perf_counter())


def start_smtp(arrivals: Arrivals):
    import email
    import email.policy

    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            arrivals.saw(message["Subject"] or "")
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    return controller


def start_slack(arrivals: Arrivals) -> ThreadingHTTPServer:
    """Slack's Web API as the platform uses it: users.lookupByEmail, users.info,
    chat.postMessage, chat.update, chat.postEphemeral."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if "json" in (self.headers.get("Content-Type") or ""):
                fields = json.loads(body or "{}")
            else:
                fields = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
            method = self.path.rsplit("/", 1)[-1]
            answer: dict = {"ok": True}
            if method == "users.lookupByEmail":
                answer["user"] = {"id": OPERATOR_SLACK_ID}
            elif method == "users.info":
                answer["user"] = {
                    "id": fields.get("user"),
                    "profile": {"email": "operator@example.com"},
                }
            elif method == "chat.postMessage":
                arrivals.saw(fields.get("text", ""))
                answer.update(channel="D0OPERATOR", ts=f"{time.time():.6f}")
            elif method in ("chat.update", "chat.postEphemeral"):
                answer.update(channel=fields.get("channel", ""), ts=fields.get("ts", ""))
            payload = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", SLACK_PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def submit(connection: http.client.HTTPConnection, key: str, campaign: str) -> dict:
    body = json.dumps(
        {
            "action_type": "bid_adjustment",
            "account": "demo",
            "payload": {"campaign": campaign, "new_bid": "1.25"},
            "rationale": "Benchmark: CPC below target for five days.",
            "confidence": 0.9,
        }
    )
    connection.request(
        "POST",
        "/api/v1/proposals/",
        body,
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    answer = json.loads(response.read())
    if response.status != 201 or answer.get("status") != "pending_review":
        raise SystemExit(f"the proposal was not routed to a person: {response.status} {answer}")
    return answer


def signed_press(proposal_id: int, *, now: float) -> tuple[bytes, dict]:
    payload = {
        "type": "block_actions",
        "user": {"id": OPERATOR_SLACK_ID, "username": "operator"},
        "api_app_id": "A0BENCH",
        "team": {"id": "T0BENCH"},
        "channel": {"id": "D0OPERATOR"},
        "container": {"type": "message", "channel_id": "D0OPERATOR", "message_ts": "1.0"},
        "trigger_id": "1.2.3",
        "actions": [
            {
                "type": "button",
                "action_id": "approve",
                "block_id": f"proposal-{proposal_id}",
                "value": str(proposal_id),
                "action_ts": f"{now:.6f}",
            }
        ],
    }
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(now))
    base = b"v0:" + timestamp.encode() + b":" + body
    signature = "v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }


def summary(samples: list[float]) -> dict:
    if not samples:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "count": len(samples),
        "p50_ms": round(percentile(samples, 0.5) * 1000, 1),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 1),
        "max_ms": round(max(samples) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.1, help="Seconds between them.")
    parser.add_argument("--presses", type=int, default=100)
    parser.add_argument("--web-workers", type=int, default=2)
    args = parser.parse_args()

    RESULTS.mkdir(exist_ok=True)
    create_database(DATABASE_URL, fresh=True)
    manage("migrate", "-v0")
    key = json.loads(manage("seed_demo", "--json"))["agents"]["optimizer"]

    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from approvals.models import Proposal
    from notifications.models import ReachedBy

    operator = get_user_model().objects.get(username="operator")
    ReachedBy.objects.update_or_create(user=operator, defaults={"email": True, "slack": True})
    campaigns = make_campaigns(args.proposals + args.presses)

    mail, slack = Arrivals(), Arrivals()
    smtp = start_smtp(mail)
    slack_server = start_slack(slack)
    web = start_process(
        [sys.executable, "-m", "gunicorn", "bench.asgi:application",
         "--worker-class", "hitlproject.webserver.WebWorker", "--bind", f"127.0.0.1:{PORT}",
         "--workers", str(args.web_workers), "--timeout", "60", "--log-level", "warning"],
        RESULTS / "gunicorn-notify.log", cwd=REPO,
    )  # fmt: skip
    worker = start_process([str(REPO / "bin" / "worker")], RESULTS / "worker-notify.log", cwd=REPO)
    try:
        wait_for_http(PORT, "/healthz", process=web)
        time.sleep(3)  # the worker connecting to Redis
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        answered: dict[int, float] = {}
        for campaign in campaigns[: args.proposals]:
            proposal = submit(connection, key, campaign)
            answered[proposal["id"]] = time.perf_counter()
            time.sleep(args.interval)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            answered.keys() <= mail.at.keys() and answered.keys() <= slack.at.keys()
        ):
            time.sleep(0.2)
        to_email = [mail.at[i] - t for i, t in answered.items() if i in mail.at]
        to_slack = [slack.at[i] - t for i, t in answered.items() if i in slack.at]

        connection.close()  # idle while the messages went out: the server may have closed it
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        waiting = [submit(connection, key, c)["id"] for c in campaigns[args.proposals :]]
        presses, refused = [], []
        for proposal_id in waiting:
            body, headers = signed_press(proposal_id, now=time.time())
            started = time.perf_counter()
            connection.request("POST", "/integrations/slack/interactivity/", body, headers)
            response = connection.getresponse()
            response.read()
            presses.append(time.perf_counter() - started)
            if response.status != 200:
                refused.append(response.status)
        approved = Proposal.objects.filter(pk__in=waiting).exclude(status="pending_review").count()
        connection.close()
    finally:
        stop_process_group(web)
        stop_process_group(worker, MARKER)
        smtp.stop()
        slack_server.shutdown()

    results = {
        "setup": {"web_workers": args.web_workers, "cores": os.cpu_count()},
        "routed_to_email_accepted": summary(to_email) | {"missing": len(answered) - len(to_email)},
        "routed_to_slack_posted": summary(to_slack) | {"missing": len(answered) - len(to_slack)},
        "press_to_approved": summary(presses) | {"approved": approved, "refused": len(refused)},
    }
    (RESULTS / "notify.json").write_text(json.dumps(results, indent=2))
    print(
        f"Proposal routed to a person → told, {args.proposals} proposals "
        f"(goal: p50 < 1 s, p99 < 3 s):"
    )
    for name in ("routed_to_email_accepted", "routed_to_slack_posted"):
        r = results[name]
        print(f"  {name}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, missing {r['missing']}")
    r = results["press_to_approved"]
    print(
        f"Slack button press → approved, {args.presses} presses (goal: p50 < 200 ms): "
        f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms; {r['approved']} approved, "
        f"{r['refused']} refused"
    )


if __name__ == "__main__":
    main()
