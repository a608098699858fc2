"""What a process makes once and its threads share, the rate limit's Redis client and the
wake-ups' transport, is made once even when the process's first requests ask for it at once:
with two made, the one replaced is collected and its connection pool closed under the thread
still using it (a web process's first requests got 500: "I/O operation on closed file")."""

import contextlib
import os
import threading
import time

import pytest
import redis

from hitlproject import wakeups, windows

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis")


def at_once(count: int, work) -> list:
    """``work()`` in ``count`` threads released together: each result, or what it raised."""
    start = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = work()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture
def clients_made(monkeypatch) -> tuple[list, list]:
    """How many Redis clients were made, and which connection pools closed, from now on (the
    clients themselves are not kept: one replaced is collected, as in a process). Making a client
    waits (up to a second) for a second thread to be making one too, as the first requests of
    a process arriving together do."""
    made, closed = [], []
    both_making = threading.Barrier(2)
    from_url, close = redis.Redis.from_url, redis.ConnectionPool.close

    def making(url, **options):
        with contextlib.suppress(threading.BrokenBarrierError):  # one making it, the other waiting
            both_making.wait(timeout=1)
        client = from_url(url, **options)
        made.append(len(made) + 1)
        return client

    def closing(pool) -> None:
        closed.append(pool)
        close(pool)

    monkeypatch.setattr(redis.Redis, "from_url", making)
    monkeypatch.setattr(redis.ConnectionPool, "close", closing)
    return made, closed


@pytest.fixture
def fresh_process():
    """As in a process that has made nothing yet; afterwards, a client of the real kind."""
    windows.redis_client.cache_clear()
    wakeups.transport.cache_clear()
    yield
    windows.redis_client.cache_clear()
    wakeups.transport.cache_clear()


@pytest.mark.usefixtures("fresh_process")
def test_the_first_requests_of_a_process_count_their_hits_on_one_redis_client(
    clients_made, settings
):
    made, closed = clients_made
    name = f"first-requests-{os.getpid()}-{time.monotonic_ns()}"

    hits = at_once(2, lambda: windows.window_hit(name=name, period=60, now=time.time()))

    assert closed == []  # no pool closed under a request
    assert len(made) == 1
    assert sorted(hit.count for hit in hits) == [1, 2]
    windows.window_counts_clear(name=name)


@pytest.mark.usefixtures("fresh_process")
def test_the_first_wake_ups_of_a_process_share_one_transport(clients_made, settings):
    made, closed = clients_made

    transports = at_once(2, wakeups.transport)

    assert closed == []
    assert transports[0] is transports[1]
    assert len(made) == 1
