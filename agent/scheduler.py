"""When each device is polled: APScheduler 3 jobs, one per device.

- interval per device, else per kind, else the default (agent.yaml `schedule`);
- first polls spread over one interval by a hash of the device id, so a thousand devices are
  not polled in the same millisecond, and the spread is the same after every restart;
- at most one poll of a device at a time (`max_instances=1`; a skipped run is counted);
- at most `max_concurrent_polls` polls in flight; each poll has a deadline shorter than its
  interval, so a dead or slow device holds a slot only for its own timeout;
- a reload re-plans only the devices whose settings changed; the rest keep their rhythm.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from agent.config import Config
from agent.exporter import AgentMetrics
from agent.inventory import Device
from agent.state import State
from collectors.reading import PollResult
from collectors.snmp.collector import SnmpCollector, SnmpJob
from collectors.snmp.engine import Target
from collectors.snmp.fetch import FetchLimits

log = logging.getLogger("vigil.scheduler")


def job_for(config: Config, device: Device) -> SnmpJob:
    """Everything the collector needs to poll `device` under `config`."""
    options = config.snmp_options(device)
    assert device.credentials is not None and device.port is not None  # checked at load
    auth = config.credentials[device.credentials]
    assert options.timeout is not None and options.retries is not None
    target = Target(device.address, device.port, auth, options.timeout, options.retries)
    limits = FetchLimits(
        max_repetitions=options.max_repetitions or 25,
        max_oids_per_request=options.max_oids_per_request or 32,
        max_varbinds_per_request=options.max_varbinds_per_request or 60,
        bulk=auth.version != "1")
    deadline = config.interval(device) * config.settings.schedule.poll_deadline_ratio
    return SnmpJob(device.id, target, device.profile, limits, deadline)


@dataclass(frozen=True)
class _Plan:
    """A device's schedule; a job is re-planned only when this changes."""

    interval: float
    start: float  # unix time of the first run
    job: SnmpJob


class PollScheduler:
    def __init__(self, state: State, metrics: AgentMetrics, collector: SnmpCollector):
        self.state = state
        self.metrics = metrics
        self.collector = collector
        self.config: Config | None = None
        self.plans: dict[str, _Plan] = {}
        self.semaphore = asyncio.Semaphore(64)
        self.limit = 64
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        logging.getLogger("apscheduler").setLevel(logging.WARNING)

    def _skipped(self, event: JobExecutionEvent) -> None:
        self.metrics.skipped.inc()

    def apply(self, config: Config, collector: SnmpCollector) -> None:
        """Adopt a (re)loaded config: add, re-plan or remove jobs as devices changed."""
        self.config = config
        self.collector = collector
        limit = config.settings.schedule.max_concurrent_polls
        if limit != self.limit:  # polls in flight finish under the old limit
            self.semaphore = asyncio.Semaphore(limit)
            self.limit = limit
        now = time.time()
        wanted = {d.id: d for d in config.inventory.devices.values() if d.enabled}
        for device_id in list(self.plans):
            if device_id not in wanted:
                self.plans.pop(device_id)
                self.collector.forget(device_id)
                if self.scheduler.get_job(device_id):
                    self.scheduler.remove_job(device_id)
        for device_id, device in wanted.items():
            job = job_for(config, device)
            interval = config.interval(device)
            old = self.plans.get(device_id)
            if old is not None and old.job == job and old.interval == interval:
                continue
            if old is not None and old.job.profile != job.profile:
                self.collector.forget(device_id)
            offset = 0.0
            if config.settings.schedule.spread_start:
                offset = (zlib.crc32(device_id.encode()) / 2**32) * interval
            plan = _Plan(interval, now + offset, job)
            self.plans[device_id] = plan
            self.scheduler.add_job(
                self._run, IntervalTrigger(seconds=interval, start_date=datetime.fromtimestamp(
                    plan.start, UTC)),
                id=device_id, args=[device_id], replace_existing=True, max_instances=1,
                coalesce=True, misfire_grace_time=max(1, int(interval)))

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _scheduled_time(self, plan: _Plan, now: float) -> float:
        runs = max(0, int((now - plan.start) // plan.interval))
        return plan.start + runs * plan.interval

    async def _run(self, device_id: str) -> None:
        plan = self.plans.get(device_id)
        if plan is None:
            return
        scheduled = self._scheduled_time(plan, time.time())
        try:
            async with self.semaphore:
                self.metrics.lag.observe(max(0.0, time.time() - scheduled))
                await self.poll(device_id)
        except asyncio.CancelledError:
            return  # the agent is stopping: a poll cut short is not an error to log

    async def poll(self, device_id: str) -> PollResult | None:
        """Poll one device now with its current plan, and record the result in the state."""
        plan = self.plans.get(device_id)
        if plan is None:
            return None
        entry = self.state.devices.get(device_id)
        kind = entry.device.kind if entry else "unknown"
        self.metrics.in_flight.inc()
        try:
            result = await self.collector.poll(plan.job)
        finally:
            self.metrics.in_flight.dec()
        self.state.update(result)
        self.metrics.polls.labels(kind).inc()
        self.metrics.requests.inc(result.requests)
        self.metrics.varbinds.inc(result.varbinds)
        if not result.up:
            self.metrics.failures.labels(kind, result.reason or "error").inc()
            log.debug("%s down: %s: %s", device_id, result.reason, result.detail)
        return result

    def next_runs(self) -> dict[str, float]:
        """Next planned run per device (for the CLI and tests)."""
        out = {}
        for job in self.scheduler.get_jobs():
            if job.next_run_time is not None:
                out[job.id] = job.next_run_time.timestamp()
        return out

