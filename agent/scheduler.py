"""When each device is polled by each collector: APScheduler 3 jobs, one per plan.

- interval per plan (agent/plans.py: per device or kind for SNMP, per protocol otherwise);
- first polls spread over one interval by a hash of the plan's key, so a thousand devices
  are not polled in the same millisecond, and the spread is the same after every restart;
- at most one poll of a plan at a time (`max_instances=1`; a skipped run is counted, and so
  is a run missed because the agent was busy past its grace time; both are logged as one
  summary line a minute, not a line each: an overloaded agent skips thousands);
- at most `max_concurrent_polls` polls in flight per collector (so stream probes queued for
  a decode slot never starve SNMP polls of theirs); each poll has a deadline shorter than
  its interval, so a dead or slow device holds a slot only for its own timeout;
- a reload re-plans only what changed; the rest keep their rhythm.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent.config import Config
from agent.exporter import AgentMetrics
from agent.plans import Plan, plans
from agent.state import State
from collectors.reading import PollResult

log = logging.getLogger("vigil.scheduler")
JOB_RETRY = 5.0  # seconds between looks at a plan that has nothing to poll yet
SUMMARY_EVERY = 60.0  # seconds between the log lines that sum up skipped and missed polls


class _CancelledAtStop(logging.Filter):
    """APScheduler's executor logs "Error running job" with a CancelledError for a poll task
    cancelled by the agent's stop before it began; a stop is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


class _CountedNotLogged(logging.Filter):
    """APScheduler warns once per skipped run ("maximum number of running instances reached")
    and per missed run ("was missed by"); the scheduler counts them and logs a summary."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return "maximum number of running instances" not in text and "was missed by" not in text


class Collector(Protocol):
    async def poll(self, job: Any) -> PollResult: ...


class PollScheduler:
    def __init__(self, state: State, metrics: AgentMetrics,
                 on_result: Callable[[PollResult], Any] | None = None):
        self.state = state
        self.metrics = metrics
        self.on_result = on_result
        self.collectors: dict[str, Collector] = {}
        self.plans: dict[str, Plan] = {}
        self.starts: dict[str, float] = {}
        self.limit = 64
        self.semaphores: dict[str, asyncio.Semaphore] = {}  # per collector
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.scheduler.add_listener(self._not_run, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self.not_run = {"skipped": 0, "missed": 0}   # since the last summary line
        self.summarised = 0.0
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        executor_log = logging.getLogger("apscheduler.executors.default")
        for logger, kind in ((executor_log, _CancelledAtStop),
                             (executor_log, _CountedNotLogged),
                             (logging.getLogger("apscheduler.scheduler"), _CountedNotLogged)):
            if not any(isinstance(f, kind) for f in logger.filters):
                logger.addFilter(kind())

    def _not_run(self, event: JobExecutionEvent) -> None:
        skipped = event.code == EVENT_JOB_MAX_INSTANCES
        (self.metrics.skipped if skipped else self.metrics.missed).inc()
        self.not_run["skipped" if skipped else "missed"] += 1
        now = time.monotonic()
        if now - self.summarised >= SUMMARY_EVERY:
            log.warning("%d poll(s) skipped (the device's previous poll still ran) and %d "
                        "missed (the agent was busy past their time) since the last such line: "
                        "the agent is overloaded or devices are slow (vigil_polls_skipped_total, "
                        "vigil_polls_missed_total)", self.not_run["skipped"],
                        self.not_run["missed"])
            self.not_run = {"skipped": 0, "missed": 0}
            self.summarised = now

    def apply(self, config: Config, collectors: dict[str, Collector]) -> list[Plan]:
        """Adopt a (re)loaded config: add, re-plan or remove jobs as plans changed.
        Returns the plans that are new or changed (their collectors may drop cached state)."""
        self.collectors = collectors
        limit = config.settings.schedule.max_concurrent_polls
        if limit != self.limit:  # polls in flight finish under the old limit
            self.semaphores = {}
            self.limit = limit
        now = time.time()
        wanted = {plan.key: plan for plan in plans(config, self.state)}
        for key in list(self.plans):
            if key not in wanted:
                gone = self.plans.pop(key)
                self.starts.pop(key, None)
                self.state.forget(gone.device, gone.collector)
                if self.scheduler.get_job(key):
                    self.scheduler.remove_job(key)
        changed = []
        for key, plan in wanted.items():
            old = self.plans.get(key)
            if old is not None and old.signature == plan.signature \
                    and old.interval == plan.interval:
                self.plans[key] = plan  # same job; the new plan reads the new state
                continue
            changed.append(plan)
            offset = 0.0
            if config.settings.schedule.spread_start:
                offset = (zlib.crc32(key.encode()) / 2**32) * plan.interval
            self.schedule(plan, now + offset)
        return changed

    def schedule(self, plan: Plan, start: float) -> None:
        """Poll `plan` every interval from `start` (a unix time), replacing its job if any."""
        self.plans[plan.key] = plan
        self.starts[plan.key] = start
        self.scheduler.add_job(
            self._run, IntervalTrigger(seconds=plan.interval,
                                       start_date=datetime.fromtimestamp(start, UTC)),
            id=plan.key, args=[plan.key], replace_existing=True, max_instances=1,
            coalesce=True, misfire_grace_time=max(1, int(plan.interval)))

    def clock_jumped(self, jump: float) -> None:
        """The wall clock stepped by `jump` s (agent/clock.py): every job moves with it, keeping
        its place in its interval (APScheduler alone would sleep through a step back)."""
        for key, plan in list(self.plans.items()):
            self.schedule(plan, self.starts[key] + jump)

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def _run(self, key: str) -> None:
        plan = self.plans.get(key)
        if plan is None:
            return
        start = self.starts[key]
        runs = max(0, int((time.time() - start) // plan.interval))
        scheduled = start + runs * plan.interval
        try:
            # nothing to poll yet (e.g. the stream URI ONVIF has not told): look again every
            # few seconds for half an interval, rather than wait a whole one
            waited_until = time.monotonic() + plan.interval / 2
            while plan.make_job() is None:
                if time.monotonic() >= waited_until:
                    return
                await asyncio.sleep(min(JOB_RETRY, plan.interval / 4))
                plan = self.plans.get(key)
                if plan is None:
                    return
                scheduled = time.time()  # late for want of a job, not for want of a slot
            semaphore = self.semaphores.get(plan.collector)
            if semaphore is None:
                semaphore = self.semaphores[plan.collector] = asyncio.Semaphore(self.limit)
            async with semaphore:
                self.metrics.lag.labels(plan.collector).observe(
                    max(0.0, time.time() - scheduled))
                await self.poll(plan.device, plan.collector)
        except asyncio.CancelledError:
            return  # the agent is stopping: a poll cut short is not an error to log

    async def poll(self, device_id: str, collector: str = "snmp") -> PollResult | None:
        """Poll one device with one collector now, and record the result in the state."""
        plan = self.plans.get(f"{device_id}/{collector}")
        if plan is None:
            return None
        entry = self.state.devices.get(device_id)
        kind = entry.device.kind if entry else "unknown"
        try:
            job = plan.make_job()
        except ValueError as exc:  # e.g. a stream URI the camera gave that cannot be used
            job = None
            result = PollResult(device_id, time.time(), 0.0, False, "protocol", str(exc),
                                collector=collector)
        else:
            if job is None:
                return None
            self.metrics.in_flight.inc()
            try:
                result = await self.collectors[collector].poll(job)
            finally:
                self.metrics.in_flight.dec()
        self.state.update(result)
        if self.on_result is not None:
            self.on_result(result)
        self.metrics.polls.labels(kind, collector).inc()
        self.metrics.requests.inc(result.requests)
        self.metrics.varbinds.inc(result.varbinds)
        if not result.up:
            self.metrics.failures.labels(kind, collector, result.reason or "error").inc()
            log.debug("%s %s down: %s: %s", device_id, collector, result.reason, result.detail)
        return result

    def next_runs(self) -> dict[str, float]:
        """Next planned run per plan key (for the CLI and tests)."""
        out = {}
        for job in self.scheduler.get_jobs():
            if job.next_run_time is not None:
                out[job.id] = job.next_run_time.timestamp()
        return out
