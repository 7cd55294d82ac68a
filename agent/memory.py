"""Giving the C allocator's free memory back to the system, on a timer.

Why: in the soak run (docs/reliability.md) the agent's live Python objects stayed flat
(tracemalloc: -0.3 MiB between minutes 10 and 25) while its RSS rose about 140 MiB an hour.
The rest was memory already freed but kept by glibc malloc: the main heap and one arena per
thread that allocated keep their peak size, and `malloc_stats` counted 200 of 581 MB free
inside them. `malloc_trim(0)` returns the free pages of every arena. (The biggest peaks, the
25-MB /metrics pages, are now rendered on one thread: agent/http.py.) Elsewhere than glibc
(musl), nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger("vigil.memory")


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


MALLOC_TRIM = _malloc_trim()
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """The process's RSS (/proc/self/statm), 0 where there is none."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def trim() -> tuple[int, float]:
    """Return free memory to the system now: (bytes the RSS fell by, seconds it took)."""
    if MALLOC_TRIM is None:
        return 0, 0.0
    before, started = resident_bytes(), time.perf_counter()
    MALLOC_TRIM(0)
    return max(0, before - resident_bytes()), time.perf_counter() - started


class Trimmer:
    """Calls `trim` every `interval` seconds on the event loop (0: never); counts what it
    gave back."""

    def __init__(self, interval: float, on_trim: Callable[[int, float], None] | None = None):
        self.interval = interval
        self.on_trim = on_trim
        self._task: asyncio.Task | None = None
        self._started = False

    def start(self) -> None:
        self._started = True
        if MALLOC_TRIM is None:
            log.debug("no malloc_trim in this C library: free memory is not trimmed")
            return
        if self.interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def adopt(self, interval: float) -> None:
        """A reloaded configuration: the new interval counts from the next trim; 0 stops."""
        self.interval = interval
        if interval <= 0 and self._task is not None:
            self._task.cancel()
            self._task = None
        elif interval > 0 and self._task is None and self._started:
            self.start()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            released, seconds = trim()
            log.debug("malloc_trim gave back %.1f MiB in %.3f s", released / 2**20, seconds)
            if self.on_trim is not None:
                self.on_trim(released, seconds)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
