"""Exactly once, whatever crashes: hundreds of approved proposals executed by real Celery
workers that are killed (SIGKILL, the whole process group) again and again while they work,
with the Redis broker killed and restarted once, losing every message it held. When the dust
settles, every proposal executed once: one execution each, each campaign changed once.

It needs PostgreSQL and a ``redis-server`` binary (CI has both); the broker is a Redis server
of its own, so that restarting it disturbs nothing else.
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import transaction

from approvals.models import Execution, Proposal
from approvals.services.proposals import proposal_evaluate
from ledger.models import Account, Campaign
from tests.conftest import REPO, bid_adjustment, database_url, wait_until
from tests.factories import submitted

PROPOSALS = 300
KILLS = 12  # the broker is killed and restarted at the sixth
STEP = 20  # proposals done between two kills

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        "postgresql" not in settings.DATABASES["default"]["ENGINE"]
        or not shutil.which("redis-server"),
        reason="needs PostgreSQL and redis-server",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """A Redis server of the test's own, without persistence: killing it loses its queue."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log, self.process = port, log, None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port)
        try:
            wait_until(lambda: _pings(client), timeout=20)
        except AssertionError:  # its port taken meanwhile, say: not the system under test
            raise RuntimeError(f"redis-server did not start:\n{self.log.read_text()}") from None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


class Processes:
    """Celery workers and beat on the test database and the test's broker."""

    def __init__(self, env: dict, logs: Path) -> None:
        self.env, self.logs, self.workers, self.beat = env, logs, [], None

    def _start(self, *args: str, name: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "hitlproject", *args],
            cwd=REPO,
            env=self.env,
            stdout=(self.logs / f"{name}.log").open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, pool children included
        )

    def start_worker(self, number: int) -> None:
        self.workers.append(
            self._start(
                "worker", "--loglevel", "info", "--concurrency", "2",
                "--queues", self.env["HITL_CELERY_QUEUE"], "--hostname", f"fault{number}@%h",
                "--without-gossip", "--without-mingle", name=f"worker{number}",
            )
        )  # fmt: skip

    def start_beat(self) -> None:
        self.beat = self._start("beat", "--loglevel", "info", name="beat")

    def kill_a_worker(self, number: int) -> None:
        victim = self.workers.pop(random.randrange(len(self.workers)))
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        self.start_worker(number)

    def stop(self) -> None:
        for process in [*self.workers, self.beat]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_every_approved_proposal_executes_exactly_once_through_crashes(
    demo_world, tmp_path, monkeypatch
):
    demo = Account.objects.get(external_id="demo")
    Campaign.objects.bulk_create(
        Campaign(account=demo, external_id=f"c-{n}", name=f"C {n}",
                 daily_budget=Decimal("100.00"), bid=Decimal("1.00"))
        for n in range(PROPOSALS)
    )  # fmt: skip
    # 5% raises, within the ceiling: approved at once. Their tasks are lost on the way (the
    # broker they went to is not this one): the sweeper must find every one of them.
    with monkeypatch.context() as patch:
        patch.setattr(transaction, "on_commit", lambda func, using=None, robust=False: None)
        ids = [
            proposal_evaluate(proposal_id=submitted(bid_adjustment("1.05", f"c-{n}")).pk).pk
            for n in range(PROPOSALS)
        ]
    assert Proposal.objects.filter(pk__in=ids, status="approved").count() == PROPOSALS

    port = free_port()
    broker = Broker(port, tmp_path / "redis.log")
    broker.start()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "HITL_CELERY_QUEUE": "fault",
        "HITL_DATA_DIR": str(tmp_path),
        "HITL_STALL_AFTER_SECONDS": "3",
        "HITL_STALL_SWEEP_SECONDS": "2",
        # A few to a transaction, as under load, so that the crashes come mid-work.
        "HITL_EXECUTION_TAKES_ALONG": "3",
        "HITL_LOG_LEVEL": "INFO",
    }
    processes = Processes(env, tmp_path)
    executed = Proposal.objects.filter(pk__in=ids, status="executed")
    try:
        for number in range(2):
            processes.start_worker(number)
        processes.start_beat()
        # A crash each time another few proposals are done, so that every one comes while
        # the work is under way, however fast the machine.
        done_at_each_kill = []
        for kill in range(KILLS):
            target = (kill + 1) * STEP
            wait_until(lambda t=target: executed.count() >= t, timeout=120, interval=0.05)
            done_at_each_kill.append(executed.count())
            processes.kill_a_worker(2 + kill)
            if kill == KILLS // 2:
                broker.kill()
                time.sleep(1)
                broker.start()
        wait_until(lambda: executed.count() == PROPOSALS, timeout=240, interval=1)
    except AssertionError:
        logs = "\n".join(p.name for p in tmp_path.iterdir())
        raise AssertionError(
            f"{executed.count()} of {PROPOSALS} executed; logs in {tmp_path}: {logs}"
        ) from None
    finally:
        processes.stop()
        broker.kill()

    # The crashes came while the work was under way, not after it.
    assert done_at_each_kill[-1] < PROPOSALS, done_at_each_kill
    assert Execution.objects.filter(proposal__in=ids).count() == PROPOSALS
    assert Execution.objects.filter(proposal__in=ids, status="succeeded").count() == PROPOSALS
    bids = Campaign.objects.filter(external_id__startswith="c-").values_list("bid", flat=True)
    assert set(bids) == {Decimal("1.05")}
    changed_by_executor = Campaign.history.filter(
        external_id__startswith="c-", history_actor="executor"
    )
    assert changed_by_executor.count() == PROPOSALS  # each campaign changed once, not twice
