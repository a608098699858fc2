"""Wake-ups: "something happened to this proposal / this agent's feedback", sent after commit
by whoever wrote it (a web request, a Celery task) to every web process, where requests that
long-poll (``?wait=``) are waiting for it (hitlproject.longpoll).

A wake-up carries no data, only topics (``proposal:12``, ``feedback:3``): a waiting request
re-reads what it waits on, so a wake-up sent twice, or for a change that turns out not to
matter, costs a read and nothing else.

How a wake-up travels:

- Redis pub/sub, when ``REDIS_URL`` is set (production, CI): one channel; every web process
  subscribes once and hands each message to the requests waiting on its topics. A
  subscription that drops wakes every waiting request of that process (they re-read), since
  messages sent meanwhile are lost; one that goes silent is found out by a PING
  (``RedisWakeups.heartbeat``), and waiting requests re-read every ``RedisWakeups.backstop``
  seconds all the same.
- On the embedded default (one machine; no Redis), a Unix datagram socket per web process, in
  a folder beside the database: a writer sends a datagram to each socket it finds there (and
  removes those nobody listens on any more). A datagram that cannot be sent at once (the
  listener's queue full) is dropped rather than keep a decision waiting, so waiting requests
  also re-read every ``LocalWakeups.backstop`` seconds.

Sending never holds up the writer's answer for long, and never fails it: after commit, a
short timeout, errors logged.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import logging
import os
import socket
import stat
import tempfile
import uuid
from collections import deque
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from django.conf import settings

from hitlproject.once import made_once
from hitlproject.queueing import after_commit

logger = logging.getLogger(__name__)

# A message carries at most this many bytes of topics (a batch's wake-ups are split).
MESSAGE_BYTES = 8000
# How many recent topics a process remembers, to tell a request that registers late whether
# its topic came by since it read (more than this many since: it re-reads).
REMEMBERED = 8192


def proposal_topic(proposal_id: int) -> str:
    return f"proposal:{proposal_id}"


def feedback_topic(agent_id: int) -> str:
    return f"feedback:{agent_id}"


def wake_after_commit(topics: Iterable[str]) -> None:
    """Wake the requests waiting on ``topics`` once the surrounding transaction commits
    (at once outside one); nothing is sent if it rolls back."""
    topics = sorted(set(topics))
    if topics:
        after_commit(_send, topics)


def _send(topics: list[str]) -> None:
    try:
        transport().send(topics)
    except Exception as error:  # a wake-up lost is a late answer, never a failed write
        logger.warning("Wake-up not sent (%s: %s); waiting requests re-read later.",
                       type(error).__name__, error)  # fmt: skip


def _messages(topics: list[str]) -> Iterable[bytes]:
    message: list[str] = []
    size = 0
    for topic in topics:
        if message and size + len(topic) + 1 > MESSAGE_BYTES:
            yield " ".join(message).encode()
            message, size = [], 0
        message.append(topic)
        size += len(topic) + 1
    if message:
        yield " ".join(message).encode()


@made_once
def transport() -> RedisWakeups | LocalWakeups | NoWakeups:
    """This process's wake-ups, made by one thread (``made_once``: a second one, made by a
    thread racing the first, would close its Redis pool under that thread once replaced)."""
    if settings.REDIS_URL:
        return RedisWakeups(settings.REDIS_URL)
    folder = wakeup_folder()
    return LocalWakeups(folder) if folder is not None else NoWakeups()


def wakeup_folder() -> Path | None:
    """Where the embedded default's web processes listen: beside the database, unless that
    path is too long for a Unix socket's name (about 100 bytes), then a folder of the
    temporary directory named after it and after this user. Only a folder of this user's that
    nobody else may enter is used: one made beforehand by someone else (the name can be
    guessed) would let them read or block wake-ups; then there is none (``None``), logged,
    and waiting requests re-read every few seconds instead."""
    folder = Path(settings.DATA_DIR) / "wakeups"
    if len(str(folder)) > 60:
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
        folder = Path(tempfile.gettempdir()) / f"hitl-wakeups-{os.getuid()}-{digest}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = os.lstat(folder)
    except OSError as error:
        logger.warning("Wake-ups folder %s not usable (%s); waiting requests re-read instead.",
                       folder, error)  # fmt: skip
        return None
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
        logger.warning("Wake-ups folder %s is not a folder of this user's; not used: waiting "
                       "requests re-read instead.", folder)  # fmt: skip
        return None
    if stat.S_IMODE(found.st_mode) & 0o077:
        logger.warning("Wake-ups folder %s may be entered by others (mode %o); not used: "
                       "waiting requests re-read instead.", folder,
                       stat.S_IMODE(found.st_mode))  # fmt: skip
        return None
    return folder


class Dispatcher:
    """A web process's waiting requests, by topic, on its event loop; fed by the transport's
    listener. Positions count the topics received, so a request can take one before it reads
    and ask afterwards whether its topic came by since (``wait``)."""

    def __init__(self) -> None:
        self.position = 0
        self.connected = False
        self.stopping = False
        self._recent: deque[tuple[int, str]] = deque(maxlen=REMEMBERED)
        self._waiting: dict[str, set[asyncio.Future]] = {}

    def deliver(self, topics: Iterable[str]) -> None:
        for topic in topics:
            self.position += 1
            self._recent.append((self.position, topic))
            for waiter in self._waiting.pop(topic, ()):
                if not waiter.done():
                    waiter.set_result(None)

    def deliver_to_everyone(self) -> None:
        """Wake-ups may have been lost: every waiting request re-reads."""
        self.position += 1
        self._recent.append((self.position, "*"))
        waiting, self._waiting = self._waiting, {}
        for waiters in waiting.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def stop_waiting(self) -> None:
        """The server is stopping: every waiting request answers now, as things are (it
        re-reads), and none waits from now on, rather than hold the stop for up to a minute
        and then be cut off without an answer."""
        self.stopping = True
        self.deliver_to_everyone()

    def _came_since(self, topic: str, position: int) -> bool:
        if self.position == position:
            return False
        if not self._recent or self._recent[0][0] > position + 1:
            return True  # forgotten: assume it did
        for seen, recent_topic in reversed(self._recent):
            if seen <= position:
                return False
            if recent_topic in (topic, "*"):
                return True
        return False

    async def wait(self, topic: str, position: int, timeout: float) -> bool:
        """Until ``topic`` comes (True at once if it came since ``position``), or ``timeout``
        seconds (False)."""
        if self.stopping or self._came_since(topic, position):
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(topic, set()).add(waiter)
        try:
            done, _ = await asyncio.wait({waiter}, timeout=timeout)
            return bool(done)
        finally:
            waiters = self._waiting.get(topic)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiting[topic]

    async def pause(self, seconds: float) -> None:
        """``seconds``, or less if the server stops meanwhile (for a request that re-reads
        on its own, with no wake-ups to be had)."""
        await self.wait("", self.position, seconds)  # no topic is "": only a stop ends it

    def waiting(self) -> int:
        return sum(len(waiters) for waiters in self._waiting.values())


class RedisWakeups:
    """Redis pub/sub. Channels are shared by a server's databases, so the channel is named
    after the database number (the tests and benchmarks of several checkouts share a server).

    A subscription can die without a word (a NAT or load balancer forgetting an idle
    connection): the listener PINGs when it has heard nothing for ``heartbeat`` seconds and
    takes the connection for lost (waking everyone, reconnecting) when nothing, not even the
    PONG, comes within two more; TCP keepalive too. And waiting requests re-read every
    ``backstop`` seconds all the same, so that no wait depends on one connection alone."""

    # Whether a change is heard of (a wait timing out heard of none since it read).
    hears_changes = True
    backstop: float | None = 30.0

    def __init__(self, url: str, heartbeat: float | None = None) -> None:
        import redis

        self.url = url
        self.heartbeat = heartbeat or settings.WAKEUPS_HEARTBEAT_SECONDS
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        database = self.client.connection_pool.connection_kwargs.get("db", 0)
        self.channel = f"hitl:{database}:wakeups"

    def send(self, topics: list[str]) -> None:
        for message in _messages(topics):
            self.client.publish(self.channel, message)

    async def listen(self, dispatcher: Dispatcher, ready: asyncio.Event) -> None:
        import redis.asyncio

        pause = 0.1
        loop = asyncio.get_running_loop()
        while True:
            client = redis.asyncio.Redis.from_url(
                self.url,
                socket_connect_timeout=2,
                socket_timeout=self.heartbeat * 3,
                socket_keepalive=True,
            )
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    heard = pinged = loop.time()
                    while True:
                        message = await pubsub.get_message(timeout=self.heartbeat)
                        now = loop.time()
                        if message is None:
                            if now - heard > self.heartbeat * 3:
                                raise ConnectionError(
                                    f"nothing heard for {now - heard:.1f} s, not even a PONG"
                                )
                            if now - pinged >= self.heartbeat:
                                pinged = now
                                await asyncio.wait_for(pubsub.ping(), self.heartbeat)
                            continue
                        heard = now
                        if message["type"] == "subscribe":
                            dispatcher.connected = True
                            ready.set()
                        elif message["type"] == "message":
                            dispatcher.deliver(message["data"].decode().split())
                            pause = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning("Wake-ups' subscription lost (%s: %s); reconnecting.",
                               type(error).__name__, error)  # fmt: skip
            finally:
                dispatcher.connected = False
                dispatcher.deliver_to_everyone()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), 2)
            ready.set()  # waiting requests fall back to re-reading while it reconnects
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5)


class LocalWakeups:
    """A Unix datagram socket per web process, in ``folder``."""

    # Whether a change is heard of (a wait timing out heard of none since it read).
    hears_changes = True
    backstop: float | None = 5.0

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sender.setblocking(False)

    def send(self, topics: list[str]) -> None:
        messages = list(_messages(topics))
        for path in self.folder.glob("*.sock"):
            for message in messages:
                try:
                    self.sender.sendto(message, str(path))
                except (ConnectionRefusedError, FileNotFoundError):
                    with contextlib.suppress(OSError):
                        path.unlink()  # its process is gone
                    break
                except BlockingIOError:
                    logger.info("Wake-up dropped: %s is not reading; it re-reads later.", path)
                    break
                except OSError as error:
                    # Not a listener (a folder, a socket of another kind, not ours): the
                    # others after it still get theirs.
                    logger.warning("Wake-up not sent to %s (%s: %s).", path,
                                   type(error).__name__, error)  # fmt: skip
                    break

    async def listen(self, dispatcher: Dispatcher, ready: asyncio.Event) -> None:
        path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(str(path))
        receiver.setblocking(False)
        with contextlib.suppress(OSError):
            receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        atexit.register(partial(_unlink, path))
        loop = asyncio.get_running_loop()

        def read() -> None:
            while True:
                try:
                    message = receiver.recv(65536)
                except BlockingIOError:
                    return
                dispatcher.deliver(message.decode().split())

        loop.add_reader(receiver.fileno(), read)
        dispatcher.connected = True
        ready.set()
        try:
            await asyncio.Event().wait()  # until the loop ends
        finally:
            loop.remove_reader(receiver.fileno())
            receiver.close()
            _unlink(path)


class NoWakeups:
    """No way to hear of changes (no usable wake-ups folder): waiting requests re-read every
    ``backstop`` seconds."""

    # Whether a change is heard of (a wait timing out heard of none since it read).
    hears_changes = False
    backstop: float | None = 5.0

    def send(self, topics: list[str]) -> None:
        pass

    async def listen(self, dispatcher: Dispatcher, ready: asyncio.Event) -> None:
        dispatcher.connected = True  # waits time out every backstop seconds and re-read
        ready.set()
        await asyncio.Event().wait()


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


_listening: dict[asyncio.AbstractEventLoop, tuple[Dispatcher, asyncio.Event, asyncio.Task]] = {}


def stop_waiting() -> None:
    """The web server running this event loop is stopping: its waiting requests answer now
    (``Dispatcher.stop_waiting``). Called on the loop."""
    found = _listening.get(asyncio.get_running_loop())
    if found is not None:
        found[0].stop_waiting()


async def dispatcher() -> Dispatcher:
    """This event loop's dispatcher, its listener started on first use and subscribed (or
    given up on for now, ``connected`` False) before it is returned: a request that takes a
    position afterwards misses no wake-up sent after it."""
    loop = asyncio.get_running_loop()
    if loop not in _listening:
        for stale in [other for other in _listening if other.is_closed()]:
            del _listening[stale]
        found, ready = Dispatcher(), asyncio.Event()
        task = loop.create_task(transport().listen(found, ready))
        _listening[loop] = (found, ready, task)
    found, ready, _ = _listening[loop]
    if not ready.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), timeout=2)
    return found
