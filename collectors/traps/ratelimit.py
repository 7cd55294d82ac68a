"""A token bucket per trap source address, checked before any decoding.

Why: a device in a loop (a flapping port, a firmware bug) or a hostile sender can send tens
of thousands of traps a second; each costs decoding, maybe v3 crypto, and an event. The
bucket lets `burst` traps through at once and then `rate` per second from each address; the
rest are dropped at the cost of a dict lookup and counted (`rate_limited`). Other sources
are not affected. Spoofed addresses each get their own bucket, so the table is bounded:
past `max_sources` the full (idle) buckets are forgotten, and if that frees nothing the
table starts afresh (a flood of made-up sources costs bounded memory).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SourceLimiter:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 max_sources: int = 10000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.clock, self.max_sources = rate, burst, clock, max_sources
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, at)

    def allow(self, source: str) -> bool:
        """Spend one token of `source`; False when it has none left (drop the datagram)."""
        now = self.clock()
        tokens, at = self._buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if source not in self._buckets and len(self._buckets) >= self.max_sources:
            self._prune(now)
        if tokens < 1:
            self._buckets[source] = (tokens, now)
            return False
        self._buckets[source] = (tokens - 1, now)
        return True

    def _prune(self, now: float) -> None:
        self._buckets = {s: (t, at) for s, (t, at) in self._buckets.items()
                         if t + (now - at) * self.rate < self.burst}
        if len(self._buckets) >= self.max_sources:
            self._buckets.clear()
