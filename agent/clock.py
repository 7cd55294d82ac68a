"""Wall-clock jumps: an NTP step, a wrong hardware clock corrected at boot, `date -s` by hand.

Seen against the monotonic clock, which never jumps. Why it matters: APScheduler 3 plans each
job's next run in wall-clock time and then sleeps on the monotonic clock, so after a step
back of an hour it would not poll anything for an hour, even once the clock is put right
(tests/test_clock_jump.py shows it with libfaketime); the rules engine measures `for:`,
`keep_firing_for` and rates in wall time, so a step back would hold pending faults and a step
forward fire them early. On a jump every stage told here keeps its durations in elapsed
(monotonic) time: the scheduler moves each job by the jump, keeping its place in the
interval, and the engine moves what it is timing. Timestamps already recorded (readings,
faults that fired, tickets, their time limits) are not rewritten: they are what the clock
said then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger("vigil.clock")
CHECK_EVERY = 2.0
"""Seconds between looks at the two clocks."""
JUMP = 5.0
"""A wall clock that moved this many seconds more or less than the monotonic one jumped
(NTP slews small errors and never steps less than 0.128 s; 5 s ignores a busy loop)."""


class ClockWatch:
    def __init__(self, listeners: list[Callable[[float], None]], counter=None,
                 wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.listeners = listeners
        self.counter = counter   # vigil_clock_jumps_total
        self.wall = wall
        self.monotonic = monotonic
        self.offset = wall() - monotonic()

    def check(self) -> float | None:
        """The jump since the last check (seconds, negative: back), told to every listener;
        None when the clocks agree."""
        offset = self.wall() - self.monotonic()
        jump, self.offset = offset - self.offset, offset
        if abs(jump) < JUMP:
            return None
        log.warning("the wall clock jumped %s by %.0f s (an NTP step, a corrected hardware "
                    "clock or a manual change): polls keep their rhythm, rule durations "
                    "count elapsed time", "back" if jump < 0 else "forward", abs(jump))
        if self.counter is not None:
            self.counter.inc()
        for listener in self.listeners:
            try:
                listener(jump)
            except Exception:   # one stage's bug must not keep the others from adjusting
                log.exception("adjusting to the clock jump failed in %r", listener)
        return jump

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            self.check()
