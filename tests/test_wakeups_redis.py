"""A web process's wake-ups subscription (Redis pub/sub) that goes silent without a word (a
NAT or load balancer forgetting an idle connection) is found out and renewed: wake-ups sent
afterwards still reach the process's waiting requests."""

import asyncio
import contextlib
import os

import pytest
import redis

from hitlproject.wakeups import Dispatcher, RedisWakeups

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis")


class BlackHole:
    """A TCP proxy to Redis whose connections can be made to swallow everything, both ways,
    without closing (new connections pass as before)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.silenced: set[int] = set()
        self.connections = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def silence_all(self) -> None:
        self.silenced.update(range(self.connections))

    async def _serve(self, reader, writer) -> None:
        number = self.connections
        self.connections += 1
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)

        async def pipe(source, sink) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    if number not in self.silenced:
                        sink.write(data)
                        await sink.drain()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


def test_a_silently_dropped_subscription_is_renewed_and_wake_ups_arrive_again():
    real = redis.Redis.from_url(os.environ["REDIS_URL"])
    kwargs = real.connection_pool.connection_kwargs
    database = kwargs.get("db", 0)

    async def scenario() -> tuple[bool, bool]:
        proxy = BlackHole(kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379))
        port = await proxy.start()
        through_proxy = RedisWakeups(f"redis://127.0.0.1:{port}/{database}", heartbeat=0.2)
        direct = RedisWakeups(os.environ["REDIS_URL"])
        dispatcher, ready = Dispatcher(), asyncio.Event()
        listener = asyncio.create_task(through_proxy.listen(dispatcher, ready))
        await ready.wait()
        assert dispatcher.connected

        proxy.silence_all()  # the subscription's connection now goes nowhere
        position = dispatcher.position
        # The process learns it may have missed wake-ups (its waits re-read) ...
        noticed = await dispatcher.wait("proposal:1", position, timeout=30)
        # ... and, subscribed anew, hears the next ones.
        heard = False
        for _ in range(150):
            position = dispatcher.position
            await asyncio.to_thread(direct.send, ["proposal:2"])
            if await dispatcher.wait("proposal:2", position, timeout=0.2):
                heard = dispatcher._recent[-1][1] == "proposal:2"
                if heard:
                    break
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        proxy.server.close()
        return noticed, heard

    noticed, heard = asyncio.run(scenario())

    assert noticed, "the silent subscription was never found out"
    assert heard, "no wake-up reached the process after its subscription went silent"
