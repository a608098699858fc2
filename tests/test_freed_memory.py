"""Memory a burst of work freed goes back to the system (hitlproject.freed_memory): after
an agent's burst of requests, the embedded default's processes do not stay at the burst's
high-water mark. Each case runs in a process of its own, whose heap it can read and shape."""

import subprocess
import sys
import textwrap

import pytest

from hitlproject.freed_memory import FreedMemory
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    not FreedMemory().supported, reason="the C library is not glibc: nothing to trim"
)

# 150 MiB in blocks of 64 KiB (under glibc's mmap threshold: they come from the heap), each
# followed by a small block kept, so that freeing the big ones leaves holes between blocks in
# use, which glibc's own trimming (the top of the heap only) cannot give back.
BURST = """
import time
from pathlib import Path

from hitlproject import freed_memory

def resident_mib():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

kept = []

def burst_freed():
    # Resident MiB at the height of the burst; the burst is freed on return.
    burst = []
    for _ in range(2400):
        burst.append(bytearray(64 * 1024))
        kept.append(bytearray(600))
    return resident_mib()
"""


def run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", BURST + textwrap.dedent(script)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_thread_gives_a_bursts_memory_back_within_seconds():
    out = run("""
        freed_memory.CHECK_SECONDS = 0.1
        freed_memory.keep_giving_back()
        during = burst_freed()
        after_free = resident_mib()
        deadline = time.monotonic() + 10
        while resident_mib() > after_free - 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        print(round(during), round(after_free), round(resident_mib()))
    """)
    during, after_free, settled = map(int, out.split())
    assert after_free > during - 20  # freed, but still held by the process
    assert settled < after_free - 100  # given back: of 150 MiB freed, more than 100


def test_a_trim_comes_only_after_new_memory_was_freed():
    out = run("""
        burst_freed()
        freed = freed_memory.FreedMemory()  # made after the burst was freed: nothing new
        first = freed.give_back_if_grown()
        burst = [bytearray(64 * 1024) for _ in range(400)]  # the holes used again
        kept.extend(bytearray(600) for _ in range(400))
        freed.give_back_if_grown()  # nothing freed since: no trim
        before = resident_mib()
        del burst
        second = freed.give_back_if_grown()
        third = freed.give_back_if_grown()
        print(first, second, third, round(before - resident_mib()))
    """)
    first, second, third, given_back = out.split()
    assert first == "False"
    # Memory reused after the least free was seen, then freed again, is trimmed again.
    assert second == "True" and int(given_back) > 15
    assert third == "False"
