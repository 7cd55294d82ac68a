"""The grounding stage of the daemon: recorded measurements -> readings the rules judge, and
Prometheus series.

The data path stays the one of every other reading: the latest measurement of each earthing
point becomes a poll result (collector `grounding`, collectors/grounding) in a state of its
own, one subject per point. The rules engine reads that state beside the devices' (Subjects),
so `GroundingResistanceHigh` and `GroundingMeasurementOverdue` are ordinary rule faults with
tickets and escalation. The readings are refreshed every REFRESH seconds (the age of the
latest measurement moves with the clock; another agent sharing a centre's database may have
recorded one) and at once after a measurement is recorded here.

A state of its own, not the devices' one: the scheduler, the device series on /metrics
(vigil_device_*) and the HTTP device routes see devices only; an earthing point is never
polled and has no address.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, tzinfo
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from agent.earthing import EarthingPoint, sync_points
from agent.grounding import GroundingMeasurement, GroundingStore
from agent.inventory import Inventory
from agent.state import DeviceState, State
from collectors.grounding import readings

log = logging.getLogger("vigil.grounding")
REFRESH = 30.0
"""Seconds between two refreshes of the readings: well inside the rules' staleness limit
(`rules.stale_after` x 60 s for a subject without a poll plan)."""


class Subjects:
    """The devices' state and the earthing points' state, read as one by the rules engine
    (it only looks subjects up in `.devices`). A plain dict of the same DeviceState objects
    (a ChainMap lookup cost 12 ms per cycle on 10,000 devices); `sync()` it whenever either
    state follows a new inventory."""

    def __init__(self, *states: State) -> None:
        self.states = states
        self.devices: dict[str, DeviceState] = {}
        self.sync()

    def sync(self) -> None:
        self.devices = {k: v for s in self.states for k, v in s.devices.items()}


class GroundingStage:
    def __init__(self, inventory: Inventory, url: str, clock: Callable[[], float] = time.time,
                 tz: tzinfo | None = None, store: GroundingStore | None = None) -> None:
        self.clock = clock
        self.tz = tz or datetime.now().astimezone().tzinfo
        self.store = store or GroundingStore(url, clock)
        self.state = State()
        self.inventory = inventory
        self.latest: dict[str, GroundingMeasurement] = {}
        self.ready = False
        self._task: asyncio.Task | None = None
        sync_points(self.state, inventory)
        self.refresh()

    @property
    def points(self) -> dict[str, EarthingPoint]:
        return self.inventory.earthing_points

    def adopt(self, inventory: Inventory) -> None:
        """A reloaded inventory: points added, changed (limit, interval) or removed."""
        self.inventory = inventory
        sync_points(self.state, inventory)
        self.refresh()

    def refresh(self) -> None:
        """Readings of every point at the clock's time (a new result replaces the old one)."""
        now = self.clock()
        for point in self.points.values():
            m = self.latest.get(point.id)
            latest = None if m is None else (m.ohm, m.measured_at.timestamp())
            self.state.update(readings(point.id, point.limit, point.measure_every, latest, now))

    async def load(self) -> None:
        """Read the latest measurements from the database, then refresh."""
        self.latest = await self.store.latest()
        self.refresh()

    async def recorded(self, rows: Sequence[GroundingMeasurement]) -> None:
        """Measurements were just stored: judge them at the next rules cycle."""
        for row in rows:
            known = self.latest.get(row.point)
            if known is None or row.measured_at >= known.measured_at:
                self.latest[row.point] = row
        self.refresh()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self.ready:
            try:
                await self.store.start()
                await self.load()
                self.ready = True
            except (OSError, SQLAlchemyError) as exc:  # the database may come later
                log.error("grounding records unavailable (%s); retrying in %gs", exc, REFRESH)
                await asyncio.sleep(REFRESH)
        while True:
            await asyncio.sleep(REFRESH)
            try:
                await self.load()
            except (OSError, SQLAlchemyError) as exc:
                log.warning("grounding records not re-read (%s); readings kept", exc)
                self.refresh()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.store.dispose()

    def collector(self) -> Collector:
        return GroundingMetrics(self)


class GroundingMetrics(Collector):
    """vigil_grounding_* per earthing point (labels point, site), built at scrape time."""

    def __init__(self, stage: GroundingStage) -> None:
        self.stage = stage

    def collect(self) -> Iterator[Metric]:
        labels = ["point", "site"]
        value = GaugeMetricFamily("vigil_grounding_resistance_ohms", "Grounding resistance "
                                  "of the earthing point at its latest measurement.",
                                  labels=labels)
        limit = GaugeMetricFamily("vigil_grounding_limit_ohms", "Highest acceptable "
                                  "grounding resistance of the earthing point.", labels=labels)
        every = GaugeMetricFamily("vigil_grounding_measure_every_seconds", "Longest time "
                                  "allowed between two measurements of the earthing point.",
                                  labels=labels)
        when = GaugeMetricFamily("vigil_grounding_last_measured_timestamp_seconds",
                                 "Unix time of the earthing point's latest measurement.",
                                 labels=labels)
        latest = dict(self.stage.latest)
        for point in list(self.stage.points.values()):
            key = [point.id, point.site]
            limit.add_metric(key, point.limit)
            every.add_metric(key, point.measure_every)
            m = latest.get(point.id)
            if m is not None:
                value.add_metric(key, m.ohm)
                when.add_metric(key, m.measured_at.timestamp())
        yield from (value, limit, every, when)


def point_summaries(stage: GroundingStage, site: str | None = None) -> list[dict[str, Any]]:
    """Every point's status (for lists and reports), sorted by site and id."""
    from agent.grounding import status

    now = stage.clock()
    return [status(p, stage.latest.get(p.id), now)
            for p in sorted(stage.points.values(), key=lambda p: (p.site, p.id))
            if site is None or p.site == site]
