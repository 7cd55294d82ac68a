"""The history stage of the daemon: readings -> bucket and daily summaries -> the store.

Every poll result the state receives is also handed to the Recorder (State.observers), which
keeps, in memory, the open buckets (`history.interval`, aligned to the wall clock):

- per device, metric and labels: min, max, sum and count of the readings of the bucket
  (every gauge of the vocabulary that `history.metrics` selects);
- per device and collector, and per device (`collector` "device": its management protocol
  as `vigil_device_up` follows it): the seconds it was up and down. An answer (up or down)
  holds until the next one, but at most `rules.stale_after` poll intervals; time after that,
  and time the agent did not run, is unknown. Unknown seconds are never counted, always
  derived: a bucket's unknown seconds are its width minus its up and down seconds.

Shortly after each bucket ends (GRACE) the finished buckets are written in one transaction
(an idempotent upsert: agent/history_store.py); a write that fails is kept and tried again
at the next bucket (at most MAX_PENDING buckets are kept). After the last bucket of a local
day (`history.timezone`) is written, the day is rolled up into the daily tables; a day the
agent missed (it was stopped at midnight) is rolled up at the next start. Retention runs
at the first write and then once a local day.

Restarts. A stop writes the bucket in progress as far as it got; the next start reads that
bucket back and goes on from it, so the bucket is neither lost nor counted twice. A crash
loses the bucket in progress (at most one interval, then counted as unknown) and nothing
that was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.exc import SQLAlchemyError

from agent.exporter import PRIMARY
from agent.history_models import DEVICE_COLLECTOR
from agent.history_store import Batch, HistoryStore, local_day
from agent.settings import History, Settings
from agent.state import DeviceState
from collectors.reading import PollResult
from collectors.vocabulary import MetricSpec

log = logging.getLogger("vigil.history")

Clock = Callable[[], float]
GRACE = 15.0  # seconds after a bucket's end before it is written (polls still finishing)
MAX_PENDING = 288  # buckets kept while the store cannot be written (a day of 5m buckets)


def labels_key(labels: dict[str, str]) -> str:
    """Canonical text of a label set: the `labels` column."""
    return json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(slots=True)
class Summary:
    min: float
    max: float
    sum: float
    count: int

    def add(self, value: float) -> None:
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.sum += value
        self.count += 1

    def merge(self, other: Summary) -> None:
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.sum += other.sum
        self.count += other.count


@dataclass(slots=True)
class Presence:
    """Where a device's (or collector's) availability was last accounted, and its state."""

    site: str
    kind: str
    since: float  # seconds up to here are accounted
    up: bool | None = None
    until: float = 0.0  # the latest answer holds until here (then it is stale: unknown)


@dataclass(slots=True)
class Seconds:
    site: str
    kind: str
    up: float = 0.0
    down: float = 0.0


class Recorder:
    """The open buckets, in memory. `wanted(metric)` says which metrics are recorded ("up":
    availability); buckets before `open_from` are written (closed)."""

    def __init__(self, interval: int, wanted: Callable[[str], bool], started: float) -> None:
        self.interval = interval
        self.wanted = wanted
        self.open_from = self.bucket(started)
        self.readings: dict[int, dict[tuple[str, str, str], Summary]] = {}
        self.seconds: dict[int, dict[tuple[str, str], Seconds]] = {}
        self.presence: dict[tuple[str, str], Presence] = {}
        self.late = 0  # readings of a closed bucket, counted in the oldest open one

    def bucket(self, seconds: float) -> int:
        return int(seconds // self.interval) * self.interval

    def observe(self, result: PollResult, site: str, kind: str, primary: bool,
                horizon: float) -> None:
        """One poll result; `primary`: its collector is the device's management protocol;
        `horizon`: seconds its answer holds (then it is stale)."""
        if self.wanted("up"):
            self.answer(result.device, result.collector, site, kind, result.timestamp,
                        result.up, horizon)
            if primary:
                self.answer(result.device, DEVICE_COLLECTOR, site, kind, result.timestamp,
                            result.up, horizon)
        for reading in result.readings:
            if reading.metric == "up" or not self.wanted(reading.metric) \
                    or not math.isfinite(reading.value):
                continue
            start = self.bucket(reading.timestamp or result.timestamp)
            if start < self.open_from:
                self.late += 1
                start = self.open_from
            key = (reading.device, reading.metric, labels_key(reading.labels))
            bucket = self.readings.setdefault(start, {})
            summary = bucket.get(key)
            if summary is None:
                bucket[key] = Summary(reading.value, reading.value, reading.value, 1)
            else:
                summary.add(reading.value)

    def answer(self, device: str, collector: str, site: str, kind: str, at: float, up: bool,
               horizon: float) -> None:
        key = (device, collector)
        presence = self.presence.get(key)
        if presence is None:  # nothing is known before its first answer
            presence = self.presence[key] = Presence(site, kind, max(at, self.open_from))
        presence.site, presence.kind = site, kind
        at = max(at, presence.since)
        self._account(key, presence, at)
        presence.up, presence.until = up, at + horizon

    def _account(self, key: tuple[str, str], presence: Presence, to: float) -> None:
        """Count [since, to) as up or down while the latest answer holds; the rest is
        unknown. Every bucket crossed gets its row, even with nothing known."""
        known_end = min(to, presence.until) if presence.up is not None else presence.since
        at = presence.since
        while at < to:
            start = self.bucket(at)
            end = min(start + self.interval, to)
            cells = self.seconds.setdefault(start, {})
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = Seconds(presence.site, presence.kind)
            known = min(end, known_end) - at
            if known > 0:
                if presence.up:
                    cell.up += known
                else:
                    cell.down += known
            at = end
        presence.since = max(presence.since, to)

    def keep_only(self, devices: set[str]) -> None:
        """Forget devices removed from the inventory (their time is unknown from now on)."""
        for key in [k for k in self.presence if k[0] not in devices]:
            del self.presence[key]

    def take(self, boundary: float, partial: bool = False) -> Batch:
        """Rows of every bucket that ended by `boundary` (a bucket edge); with `partial`
        (at a stop, `boundary` is now) also of the bucket in progress, as far as it got."""
        for key, presence in self.presence.items():
            self._account(key, presence, boundary)
        batch = Batch()
        starts = sorted(set(self.readings) | set(self.seconds))
        for start in starts:
            if start + self.interval > boundary and not (partial and start < boundary):
                continue
            at = utc(start)
            for (device, metric, labels), s in self.readings.pop(start, {}).items():
                batch.readings.append({"device": device, "metric": metric, "labels": labels,
                                       "start": at, "seconds": self.interval, "min": s.min,
                                       "max": s.max, "sum": s.sum, "count": s.count})
            for (device, collector), c in self.seconds.pop(start, {}).items():
                batch.availability.append({
                    "device": device, "collector": collector, "start": at,
                    "seconds": self.interval, "site": c.site, "kind": c.kind,
                    "up_seconds": c.up, "down_seconds": c.down,
                    "unknown_seconds": self.interval - c.up - c.down})
        if not partial:
            self.open_from = max(self.open_from, self.bucket(boundary))
        return batch

    def merge(self, stored: Batch) -> None:
        """Go on from rows a stop wrote part-way through a bucket (their unknown seconds are
        derived again when the bucket is written)."""
        for row in stored.readings:
            start = int(row["start"].timestamp())
            key = (row["device"], row["metric"], row["labels"])
            summary = Summary(row["min"], row["max"], row["sum"], row["count"])
            bucket = self.readings.setdefault(start, {})
            if key in bucket:
                bucket[key].merge(summary)
            else:
                bucket[key] = summary
        for row in stored.availability:
            start = int(row["start"].timestamp())
            cells = self.seconds.setdefault(start, {})
            cell = cells.setdefault((row["device"], row["collector"]),
                                    Seconds(row["site"], row["kind"]))
            cell.up += row["up_seconds"]
            cell.down += row["down_seconds"]


def metric_filter(patterns: list[str], catalogue: dict[str, MetricSpec]) -> Callable[[str], bool]:
    """Which metrics `history.metrics` selects: gauges of the catalogue, and `up`."""
    cache: dict[str, bool] = {}

    def wanted(metric: str) -> bool:
        known = cache.get(metric)
        if known is None:
            spec = catalogue.get(metric)
            recordable = metric == "up" or (spec is not None and spec.type == "gauge")
            known = cache[metric] = recordable and any(
                fnmatch.fnmatchcase(metric, p) for p in patterns)
        return known

    return wanted


class HistoryRunner:
    """The stage: feeds the Recorder from the state, writes buckets on a timer.

    `poll_interval(device, collector)`: the poll interval (for staleness), None if unknown;
    `devices()`: ids of the devices in the inventory (the ones this agent rolls up)."""

    def __init__(self, settings: Settings, store: HistoryStore,
                 catalogue: Callable[[], dict[str, MetricSpec]],
                 poll_interval: Callable[[str, str], float | None],
                 devices: Callable[[], Iterable[str]], clock: Clock = time.time) -> None:
        self.store = store
        self.catalogue = catalogue
        self.poll_interval = poll_interval
        self.devices = devices
        self.clock = clock
        self.settings = settings
        self.options: History = settings.history
        self.zone = ZoneInfo(self.options.timezone)
        self.recorder = Recorder(int(self.options.interval), self._wanted(), clock())
        self.pending: list[Batch] = []
        self.ready = False
        self.rolled_through: date | None = None
        self.last_prune: date | None = None  # local day of the latest retention run
        self._task: asyncio.Task | None = None
        self._failing = False

    def _wanted(self) -> Callable[[str], bool]:
        catalogue = self.catalogue()
        gauges = [name for name, spec in catalogue.items() if spec.type == "gauge"] + ["up"]
        for pattern in self.options.metrics:
            if not fnmatch.filter(gauges, pattern):
                log.warning("history.metrics: '%s' matches no gauge of the vocabulary (nor "
                            "`up`): nothing is recorded for it", pattern)
        return metric_filter(self.options.metrics, catalogue)

    def adopt(self, settings: Settings) -> None:
        """A reloaded configuration: metrics, retention and staleness apply at once; the
        interval and the timezone at the next restart."""
        new = settings.history
        if (new.interval, new.timezone) != (self.options.interval, self.options.timezone):
            log.warning("history.interval/timezone changed: restart the agent to apply it")
        self.settings = settings
        self.options = new.model_copy(update={"interval": self.options.interval,
                                              "timezone": self.options.timezone})
        self.recorder.wanted = self._wanted()
        self.recorder.keep_only(set(self.devices()))

    # -- input -----------------------------------------------------------------------------

    def observe(self, result: PollResult, entry: DeviceState) -> None:
        """State observer: one poll result of a device (never raises into the poller)."""
        try:
            primary = next((c for c in PRIMARY if c in entry.results), None)
            interval = self.poll_interval(result.device, result.collector) \
                or self.settings.schedule.default_interval
            self.recorder.observe(result, entry.device.site, entry.device.kind,
                                  primary == result.collector,
                                  interval * self.settings.rules.stale_after)
        except Exception:
            log.exception("history: cannot record a result of %s", result.device)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> bool:
        """Migrate, find where the roll-ups stopped, and take back a bucket a stop wrote
        part-way. False (logged) while the store cannot be opened."""
        try:
            if self.store.sqlite and self.store.url.database:
                Path(self.store.url.database).parent.mkdir(parents=True, exist_ok=True)
            await self.store.start()
            self.rolled_through = await self.store.rolled_through()
            now = self.clock()
            current = self.recorder.bucket(now)
            if self.rolled_through is None:  # first start: nothing older to roll up
                self.rolled_through = local_day(utc(now), self.zone) - timedelta(days=1)
            stored = await self.store.load_bucket(utc(current), set(self.devices()))
        except Exception as exc:  # noqa: BLE001  # any driver error: retried
            if not self._failing:
                log.error("history: cannot open the store %s: %s (retried)",
                          self.store.url.render_as_string(hide_password=True), exc)
            self._failing = True
            return False
        self.recorder.merge(stored)
        self.ready, self._failing = True, False
        return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while not self.ready:
            if await self.open():
                break
            await asyncio.sleep(self.options.interval)
        while True:
            try:
                await self.tick()
            except Exception:  # the loop must survive a bug in one tick
                log.exception("history: writing the buckets failed")
            now = self.clock()
            edge = self.recorder.bucket(now) + self.options.interval
            await asyncio.sleep(max(1.0, edge + GRACE - now))

    async def tick(self) -> None:
        """Write the buckets that ended at least GRACE ago, roll up finished days, prune."""
        now = self.clock()
        boundary = self.recorder.bucket(now - GRACE)
        if boundary > self.recorder.open_from:
            self._queue(self.recorder.take(boundary))
        if not self.ready or not await self._write_pending():
            return
        try:
            await self._roll_up(boundary, now)
            if self.last_prune != local_day(utc(now), self.zone):
                await self.prune(now)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:  # the store went away
            if not self._failing:
                log.error("history: cannot roll up or prune (%s); tried again at the next "
                          "bucket", exc)
            self._failing = True

    async def close(self) -> None:
        """Stop: write what is finished and the bucket in progress as far as it got."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.ready:
            self._queue(self.recorder.take(self.clock(), partial=True))
            if not await self._write_pending():
                log.error("history: %d buckets could not be written before the stop",
                          len(self.pending))
        await self.store.dispose()

    # -- writing ---------------------------------------------------------------------------

    def _queue(self, batch: Batch) -> None:
        if not len(batch):
            return
        self.pending.append(batch)
        if len(self.pending) > MAX_PENDING:
            dropped = self.pending.pop(0)
            log.error("history: the store could not be written for %d buckets; dropped the "
                      "oldest (%d rows)", MAX_PENDING, len(dropped))

    async def _write_pending(self) -> bool:
        while self.pending:
            batch = self.pending[0]
            started = time.perf_counter()
            try:
                await self.store.write(batch)
            except Exception as exc:  # noqa: BLE001  # kept and tried again next bucket
                if not self._failing:
                    log.error("history: cannot write %d rows (%s); kept and tried again",
                              len(batch), exc)
                self._failing = True
                return False
            self._failing = False
            self.pending.pop(0)
            log.debug("history: wrote %d rows in %.3fs", len(batch),
                      time.perf_counter() - started)
            self._late_days(batch)
        return True

    def _late_days(self, batch: Batch) -> None:
        """A bucket written after its day was rolled up: roll the day up again."""
        if self.rolled_through is None:
            return
        days = {local_day(start, self.zone) for start in batch.starts()}
        late = [d for d in days if d <= self.rolled_through]
        if late:
            self.rolled_through = min(late) - timedelta(days=1)

    async def _roll_up(self, boundary: float, now: float) -> None:
        """Roll up every day after `rolled_through` that ended by `boundary`."""
        if self.rolled_through is None:
            return
        last = local_day(utc(boundary), self.zone) - timedelta(days=1)
        oldest = local_day(utc(now - self.options.retention_5m), self.zone)
        day = max(self.rolled_through + timedelta(days=1), oldest)
        devices = list(self.devices())
        while day <= last:
            await self.store.rollup(day, self.zone, devices, utc(now))
            log.info("history: rolled up %s", day.isoformat())
            self.rolled_through = day
            day += timedelta(days=1)

    async def prune(self, now: float) -> dict[str, int]:
        """Delete rows past their retention (see HistoryStore.prune)."""
        deleted = await self.store.prune(
            utc(now - self.options.retention_5m),
            local_day(utc(now - self.options.retention_daily), self.zone))
        self.last_prune = local_day(utc(now), self.zone)
        if any(deleted.values()):
            log.info("history: retention deleted %s",
                     ", ".join(f"{n} {t}" for t, n in deleted.items() if n))
        return deleted


def history_runner(settings: Settings, catalogue: Callable[[], dict[str, MetricSpec]],
                   poll_interval: Callable[[str, str], float | None],
                   devices: Callable[[], Iterable[str]], clock: Clock = time.time
                   ) -> HistoryRunner | None:
    """The history stage, or None when `history.enabled` is false."""
    if not settings.history.enabled:
        return None
    store = HistoryStore(settings.tickets.url, settings.agent.id)
    return HistoryRunner(settings, store, catalogue, poll_interval, devices, clock)

