"""Memory a burst of work freed, given back to the system (the embedded default's processes).

glibc's malloc keeps what a process frees for the process to use again. After a burst of
requests (32 agents at once, say) the web process held about 25 MiB free that way, scattered
between blocks still in use, so no new request needed it and no other program could have it:
resident memory stayed at the burst's high-water mark. ``malloc_trim(0)`` hands every whole
free page back to the kernel (madvise), wherever it lies in the heap; glibc's own trimming only
ever gives back the top of the heap.

A daemon thread in each process looks every few seconds at how much the allocator holds free
(``mallinfo2``, a walk of its free lists: microseconds) and trims when that has grown by
``TRIM_AFTER_FREED`` from the least it held since the last trim (a trimmed page used again and
freed again is resident again), so a steady process is not trimmed and a burst is trimmed
within seconds of freeing its memory. A trim takes 0.5-5 ms and holds the allocator's
locks meanwhile, so it is not done on every check. Python's own small objects live in its
arenas, which it returns itself when they empty; this is for the rest (larger objects, SQLite's
page caches, what the C libraries allocate).

Where the C library is not glibc (macOS, musl), there is nothing to trim and no thread starts.
"""

from __future__ import annotations

import ctypes
import threading
import time

CHECK_SECONDS = 5
TRIM_AFTER_FREED = 8 << 20  # bytes freed since the last trim


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _glibc():
    """glibc's malloc_trim and mallinfo2 (2.33 and later), or None."""
    try:
        libc = ctypes.CDLL("libc.so.6")  # glibc's soname; elsewhere, OSError
        trim, info = libc.malloc_trim, libc.mallinfo2
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    info.argtypes, info.restype = [], _MallInfo2
    return trim, info


class FreedMemory:
    """How much the allocator holds free, and the trim that gives it back."""

    def __init__(self) -> None:
        found = _glibc()
        self.supported = found is not None
        self._trim, self._info = found if found else (None, None)
        self.least_free = self.free_bytes() if self.supported else 0  # since the last trim

    def free_bytes(self) -> int:
        """Bytes in the allocator's free chunks: freed by the process, not yet given back."""
        return self._info().fordblks

    def give_back_if_grown(self) -> bool:
        """Trim when the free memory grew by ``TRIM_AFTER_FREED`` from its least since the
        last trim."""
        free = self.free_bytes()
        self.least_free = min(self.least_free, free)
        if free - self.least_free < TRIM_AFTER_FREED:
            return False
        self._trim(0)
        # Still counted as free after a trim: the pages given back, and the free parts of
        # pages partly in use. Memory reused and freed again grows it from here.
        self.least_free = self.free_bytes()
        return True


def keep_giving_back() -> None:
    """Start the thread that gives freed memory back, in this process (a forked child starts
    its own: threads do not cross a fork)."""
    freed = FreedMemory()
    if not freed.supported:
        return

    def watch() -> None:
        while True:
            time.sleep(CHECK_SECONDS)
            freed.give_back_if_grown()

    threading.Thread(target=watch, name="freed-memory", daemon=True).start()
