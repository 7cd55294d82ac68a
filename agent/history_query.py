"""Reading the history for reports: series, availability seconds, online rate, good-order rate.

A period [start, end) is read from the daily tables for every whole local day that has been
rolled up, and from the bucket tables for the rest (a bucket counts when its start is in the
period, so the edges are rounded to buckets). Unknown seconds are always derived: the
period's length minus the up and down seconds, so time the agent did not run, or before a
device's first answer, is unknown.

Definitions (docs/history.md says why):

- Online rate (在线率) of a site: the cameras' online seconds divided by their known
  seconds (online + offline) in the period, from each camera's device-level availability
  (its management protocol, as `vigil_device_up`). `rate_of_period` divides by the whole
  period instead (unknown time counted as offline), for assessments that want that.
- Good-order rate (完好率): the share of device-days in good order. A device is in good
  order on a local day when it was online for most of the day's known time (up > down) and
  no ticket of level 1-3 (its original level) on it was open at the day's sample time (local
  10:00 by default). Days on which a device's state is wholly unknown are not counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent.history import labels_key
from agent.history_models import (
    DEVICE_COLLECTOR,
    AvailabilityBucket,
    AvailabilityDay,
    ReadingBucket,
    ReadingDay,
    RolledDay,
    Series,
)
from agent.history_store import day_range, local_day
from agent.tickets.models import Ticket, TicketEvent

CAMERA_KINDS = ("ptz_camera", "fixed_camera")
RESOLUTIONS = ("bucket", "day")


@dataclass(frozen=True)
class Point:
    """One summary of a series: a bucket or a local day beginning at `start`."""

    start: datetime
    labels: dict[str, str]
    min: float
    max: float
    sum: float
    count: int

    @property
    def avg(self) -> float:
        return self.sum / self.count if self.count else float("nan")


@dataclass
class Availability:
    up: float = 0.0
    down: float = 0.0
    total: float = 0.0  # the period's length (per device)

    @property
    def unknown(self) -> float:
        return self.total - self.up - self.down

    def add(self, other: Availability) -> None:
        self.up += other.up
        self.down += other.down
        self.total += other.total


@dataclass(frozen=True)
class OnlineRate:
    up: float
    down: float
    unknown: float
    cameras: int

    @property
    def rate(self) -> float | None:
        """Online share of the known time (None when nothing is known)."""
        known = self.up + self.down
        return self.up / known if known else None

    @property
    def rate_of_period(self) -> float | None:
        """Online share of the whole period (unknown time counts as not online)."""
        total = self.up + self.down + self.unknown
        return self.up / total if total else None


@dataclass(frozen=True)
class GoodOrder:
    counted: int  # device-days whose state is known
    good: int
    not_good: dict[str, int] = field(default_factory=dict)  # device -> days not in good order

    @property
    def rate(self) -> float | None:
        return self.good / self.counted if self.counted else None


Segment = tuple[str, Any, Any]  # ("day", first, after_last) or ("bucket", start, end)


class HistoryQuery:
    """Reads the history tables at `url` (or through an engine already open)."""

    def __init__(self, url: str | AsyncEngine, timezone: str = "Asia/Shanghai") -> None:
        self.engine = url if isinstance(url, AsyncEngine) else \
            create_async_engine(make_url(url))
        self.zone = ZoneInfo(timezone)

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def _segments(self, start: datetime, end: datetime) -> list[Segment]:
        """Split [start, end) into runs of rolled-up whole local days and bucket ranges."""
        _check_period(start, end)
        first = local_day(start, self.zone)
        if day_range(first, self.zone)[0] < start:
            first += timedelta(days=1)
        last = local_day(end, self.zone)  # days before it may be whole
        async with self.engine.connect() as conn:
            rolled = set((await conn.scalars(select(RolledDay.day).distinct().where(
                RolledDay.day >= first, RolledDay.day < last))).all())
        out: list[Segment] = []
        at = start
        day = first
        while day < last:
            if day not in rolled:
                day += timedelta(days=1)
                continue
            run_start = day
            while day < last and day in rolled:
                day += timedelta(days=1)
            d0, d1 = day_range(run_start, self.zone)[0], day_range(day, self.zone)[0]
            if at < d0:
                out.append(("bucket", at, d0))
            out.append(("day", run_start, day))
            at = d1
        if at < end:
            out.append(("bucket", at, end))
        return out

    async def series(self, device: str, metric: str, start: datetime, end: datetime,
                     resolution: str = "bucket", labels: dict[str, str] | None = None
                     ) -> list[Point]:
        """Summaries of one metric of one device (every label set, or only `labels`), by
        bucket (kept `history.retention_5m`) or by local day, oldest first."""
        _check_period(start, end)
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, "
                             f"not {resolution!r}")
        table = ReadingBucket if resolution == "bucket" else ReadingDay
        when = table.start if table is ReadingBucket else table.day
        query = select(when.label("at"), Series.labels, table.min, table.max, table.sum,
                       table.count) \
            .join(Series, Series.id == table.series) \
            .where(Series.device == device, Series.metric == metric)
        if table is ReadingBucket:
            query = query.where(when >= start, when < end)
        else:
            query = query.where(when >= local_day(start, self.zone),
                                when < local_day(end, self.zone))
        if labels is not None:
            query = query.where(Series.labels == labels_key(labels))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(when, Series.labels))).all()
        out = []
        for row in rows:
            at = row.at if table is ReadingBucket else day_range(row.at, self.zone)[0]
            out.append(Point(at, json.loads(row.labels), row.min, row.max, row.sum, row.count))
        return out

    async def availability(self, start: datetime, end: datetime, *,
                           devices: Sequence[str] | None = None, site: str | None = None,
                           kinds: Iterable[str] | None = None,
                           collector: str = DEVICE_COLLECTOR) -> dict[str, Availability]:
        """Up, down and unknown seconds per device in [start, end): of `devices`, or of every
        device of `site` (optionally of these `kinds`); `collector` "device" is the device's
        own state, or name one (snmp, onvif, rtsp, reach)."""
        if devices is None and site is None:
            raise ValueError("name the devices or the site")
        total = (end - start).total_seconds()
        kinds = tuple(kinds) if kinds is not None else None
        out: dict[str, Availability] = {}
        async with self.engine.connect() as conn:
            for segment, a, b in await self._segments(start, end):
                table = AvailabilityDay if segment == "day" else AvailabilityBucket
                when = table.day if segment == "day" else table.start
                query = select(table.device, func.sum(table.up_seconds),
                               func.sum(table.down_seconds)) \
                    .where(table.collector == collector, when >= a, when < b) \
                    .group_by(table.device)
                if devices is not None:
                    query = query.where(table.device.in_(list(devices)))
                if site is not None:
                    query = query.where(table.site == site)
                if kinds is not None:
                    query = query.where(table.kind.in_(kinds))
                for device, up, down in await conn.execute(query):
                    entry = out.setdefault(device, Availability(total=total))
                    entry.up += up or 0.0
                    entry.down += down or 0.0
        for device in devices or ():
            out.setdefault(device, Availability(total=total))
        return out

    async def online_rate(self, site: str, start: datetime, end: datetime,
                          kinds: Iterable[str] = CAMERA_KINDS) -> OnlineRate:
        """在线率 of a site's cameras in [start, end) (see the module's docstring)."""
        return (await self.online_rates([site], start, end, kinds))[site]

    async def online_rates(self, sites: Sequence[str], start: datetime, end: datetime,
                           kinds: Iterable[str] = CAMERA_KINDS) -> dict[str, OnlineRate]:
        """在线率 of several sites at once: one query per segment, grouped by site and
        device (a monthly report of 40 sites asks once, not 40 times)."""
        total = (end - start).total_seconds()
        kinds = tuple(kinds)
        up: dict[str, float] = dict.fromkeys(sites, 0.0)
        down: dict[str, float] = dict.fromkeys(sites, 0.0)
        seen: dict[str, set[str]] = {site: set() for site in sites}
        async with self.engine.connect() as conn:
            for segment, a, b in await self._segments(start, end):
                table = AvailabilityDay if segment == "day" else AvailabilityBucket
                when = table.day if segment == "day" else table.start
                query = select(table.site, table.device, func.sum(table.up_seconds),
                               func.sum(table.down_seconds)) \
                    .where(table.collector == DEVICE_COLLECTOR, when >= a, when < b,
                           table.site.in_(list(sites)), table.kind.in_(kinds)) \
                    .group_by(table.site, table.device)
                for site, device, u, d in await conn.execute(query):
                    seen[site].add(device)
                    up[site] += u or 0.0
                    down[site] += d or 0.0
        return {site: OnlineRate(up[site], down[site],
                                 len(seen[site]) * total - up[site] - down[site],
                                 len(seen[site])) for site in sites}

    async def good_order_rate(self, site: str, start: datetime, end: datetime,
                              kinds: Iterable[str] | None = None,
                              sample: time = time(10, 0)) -> GoodOrder:
        """完好率 of a site's devices over the local days in [start, end) (see the module's
        docstring). Reads the daily availability (kept `history.retention_daily`) and the
        tickets' timelines."""
        return (await self.good_order_rates([site], start, end, kinds, sample))[site]

    async def good_order_rates(self, sites: Sequence[str], start: datetime, end: datetime,
                               kinds: Iterable[str] | None = None,
                               sample: time = time(10, 0)) -> dict[str, GoodOrder]:
        """完好率 of several sites at once. The database counts the device-days and those
        down most of the day; only the days of devices with a ticket open in the period
        (level 1-3) are read, to look at the ticket's times."""
        _check_period(start, end)
        first, last = local_day(start, self.zone), local_day(end, self.zone)
        t = AvailabilityDay
        where = [t.collector == DEVICE_COLLECTOR, t.day >= first, t.day < last,
                 t.site.in_(list(sites)), t.up_seconds + t.down_seconds > 0]
        if kinds is not None:
            where.append(t.kind.in_(tuple(kinds)))
        counted = dict.fromkeys(sites, 0)
        not_good: dict[str, dict[str, int]] = {site: {} for site in sites}
        async with self.engine.connect() as conn:
            devices: dict[str, set[str]] = {}
            for site, device, n, down in await conn.execute(
                    select(t.site, t.device, func.count(), func.sum(
                        case((t.up_seconds > t.down_seconds, 0), else_=1)))
                    .where(*where).group_by(t.site, t.device)):
                counted[site] += n
                devices.setdefault(device, set()).add(site)
                if down:
                    not_good[site][device] = int(down)
            spans = await _ticket_spans(conn, sites, day_range(first, self.zone)[0],
                                        day_range(last, self.zone)[0])
            ticketed = sorted(set(spans) & set(devices))
            for i in range(0, len(ticketed), 500):
                for site, device, day in await conn.execute(
                        select(t.site, t.device, t.day).where(
                            *where, t.up_seconds > t.down_seconds,
                            t.device.in_(ticketed[i:i + 500]))):
                    at = datetime.combine(day, sample, self.zone).astimezone(UTC)
                    if any(a <= at < (b or _FOREVER) for a, b in spans[device]):
                        not_good[site][device] = not_good[site].get(device, 0) + 1
        return {site: GoodOrder(counted[site], counted[site] - sum(not_good[site].values()),
                                not_good[site]) for site in sites}


_FOREVER = datetime.max.replace(tzinfo=UTC)


async def _ticket_spans(conn: Any, sites: Sequence[str], since: datetime, before: datetime
                        ) -> dict[str, list[tuple[datetime, datetime | None]]]:
    """When each ticket of original level 1-3 of these sites was open (from opened or
    reopened to resolved, by its timeline), per device: the tickets opened before `before`
    and not resolved for good before `since` (a resolved ticket's `resolved_at` is its
    latest resolution, so one resolved earlier was never open in [since, before))."""
    query = select(Ticket.device, TicketEvent.ticket_id, TicketEvent.kind, TicketEvent.at) \
        .join(Ticket, Ticket.id == TicketEvent.ticket_id) \
        .where(Ticket.site.in_(list(sites)), Ticket.device != "", Ticket.original_level <= 3,
               Ticket.opened_at < before,
               or_(Ticket.state.not_in(("resolved", "confirmed", "closed")),
                   Ticket.resolved_at >= since),
               TicketEvent.kind.in_(("opened", "reopened", "resolved"))) \
        .order_by(TicketEvent.ticket_id, TicketEvent.id)
    out: dict[str, list[tuple[datetime, datetime | None]]] = {}
    since_of: dict[int, datetime] = {}
    owner: dict[int, str] = {}
    for device, ticket_id, kind, at in await conn.execute(query):
        owner[ticket_id] = device
        if kind in ("opened", "reopened"):
            since_of.setdefault(ticket_id, at)
        elif ticket_id in since_of:
            out.setdefault(device, []).append((since_of.pop(ticket_id), at))
    for ticket_id, at in since_of.items():
        out.setdefault(owner[ticket_id], []).append((at, None))
    return out


def _check_period(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes")
    if end <= start:
        raise ValueError(f"the period is empty: end {end.isoformat()} is not after start "
                         f"{start.isoformat()}")

