"""Writing the readings history: bulk upserts of finished buckets, daily roll-ups, retention.

The history lives in the ticket store's database (same URL, same migrations) through an
engine of its own. Every write is an upsert on the table's natural key, so writing a bucket
twice (a retry after a failed commit, a restart) replaces it instead of adding to it. One
bucket of every device is one transaction: it is stored whole or not at all.

SQLite: the ticket store's PRAGMAs and BEGIN IMMEDIATE (agent/tickets/store.py), so a
history write queues behind a ticket write instead of failing; retention deletes go in
small batches, each its own transaction, so the write lock is never held for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, delete, func, literal, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from agent.history_models import (
    AvailabilityBucket,
    AvailabilityDay,
    ReadingBucket,
    ReadingDay,
    RolledDay,
    Series,
)
from agent.tickets.migrations import upgrade_to_head
from agent.tickets.store import _sqlite_setup

log = logging.getLogger("vigil.history")

PRUNE_BATCH = 5000  # rows deleted per transaction
DEVICE_CHUNK = 100  # devices per roll-up transaction (bounds its write lock, the IN list)


@dataclass
class Batch:
    """Rows of finished (or, at a stop, partial) buckets, ready to upsert."""

    readings: list[dict[str, Any]] = field(default_factory=list)
    availability: list[dict[str, Any]] = field(default_factory=list)

    def starts(self) -> set[datetime]:
        return {r["start"] for r in self.readings} | {r["start"] for r in self.availability}

    def __len__(self) -> int:
        return len(self.readings) + len(self.availability)


def day_range(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants where a local calendar day begins and ends (23 or 25 h on DST days)."""
    start = datetime.combine(day, time(0), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return start, end


def local_day(at: datetime, zone: ZoneInfo) -> date:
    return at.astimezone(zone).date()


class HistoryStore:
    """The history tables of the store at `url` (`sqlite+aiosqlite:///...` or
    `postgresql+psycopg://...`), written by agent `agent_id`."""

    def __init__(self, url: str, agent_id: str, *, busy_timeout: float = 30.0,
                 migrate: bool = True) -> None:
        self.url = make_url(url)
        self.agent_id = agent_id
        self.migrate = migrate
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = create_async_engine(self.url)
        if self.sqlite:
            _sqlite_setup(self.engine, busy_timeout, "BEGIN IMMEDIATE")
        self._dialect_insert = sqlite.insert if self.sqlite else postgresql.insert
        self._series: dict[tuple[str, str, str], int] = {}  # (device, metric, labels) -> id

    async def start(self) -> None:
        if self.migrate:
            await asyncio.to_thread(upgrade_to_head, self.url)

    async def dispose(self) -> None:
        await self.engine.dispose()

    # -- buckets ---------------------------------------------------------------------------

    def _upsert(self, table: Table, key: Sequence[str]) -> Any:
        statement = self._dialect_insert(table)
        columns = [c.name for c in table.columns if c.name not in key]
        return statement.on_conflict_do_update(
            index_elements=list(key), set_={c: statement.excluded[c] for c in columns})

    async def write(self, batch: Batch) -> None:
        """Upsert one batch in one transaction (replaces rows already there)."""
        try:
            async with self.engine.begin() as conn:
                readings = await self._with_series(conn, batch.readings)
                for table, key, rows in (
                        (ReadingBucket.__table__, ("series", "start"), readings),
                        (AvailabilityBucket.__table__, ("device", "collector", "start"),
                         batch.availability)):
                    if not rows:
                        continue
                    if self.sqlite:
                        await conn.execute(self._upsert(table, key), rows)
                    else:
                        await _copy_upsert(conn, table, key, rows)
        except BaseException:
            self._series.clear()  # ids made in the rolled-back transaction do not exist
            raise

    async def _with_series(self, conn: AsyncConnection, rows: list[dict[str, Any]]
                           ) -> list[dict[str, Any]]:
        """The rows with their series' id instead of (device, metric, labels); series not
        seen yet are created (ON CONFLICT DO NOTHING: another agent may be creating it)."""
        keys = {(r["device"], r["metric"], r["labels"]) for r in rows}
        missing = [k for k in keys if k not in self._series]
        if missing:
            series = Series.__table__
            statement = self._dialect_insert(series).on_conflict_do_nothing(
                index_elements=["device", "metric", "labels"])
            await conn.execute(statement, [{"device": d, "metric": m, "labels": labels}
                                           for d, m, labels in missing])
            devices = sorted({k[0] for k in missing})
            for i in range(0, len(devices), DEVICE_CHUNK):
                found = await conn.execute(
                    select(series.c.id, series.c.device, series.c.metric, series.c.labels)
                    .where(series.c.device.in_(devices[i:i + DEVICE_CHUNK])))
                for id_, device, metric, labels in found:
                    self._series[(device, metric, labels)] = id_
        return [{"series": self._series[(r["device"], r["metric"], r["labels"])],
                 "start": r["start"], "seconds": r["seconds"], "min": r["min"],
                 "max": r["max"], "sum": r["sum"], "count": r["count"]} for r in rows]

    async def load_bucket(self, start: datetime, devices: set[str]) -> Batch:
        """The rows of one bucket for these devices (a stop wrote them part-way through it:
        the restarted agent goes on from them)."""
        out = Batch()
        r, s = ReadingBucket.__table__.c, Series.__table__.c
        a = AvailabilityBucket.__table__
        async with self.engine.connect() as conn:
            found = await conn.execute(
                select(s.device, s.metric, s.labels, r.start, r.min, r.max, r.sum, r.count)
                .join_from(ReadingBucket.__table__, Series.__table__, r.series == s.id)
                .where(r.start == start))
            out.readings.extend(dict(row._mapping) for row in found if row.device in devices)
            found = await conn.execute(select(a).where(a.c.start == start))
            out.availability.extend(dict(row._mapping) for row in found
                                    if row.device in devices)
        return out

    # -- days ------------------------------------------------------------------------------

    async def rolled_through(self) -> date | None:
        """The latest local day this agent has rolled up."""
        async with self.engine.connect() as conn:
            return await conn.scalar(select(func.max(_days.c.day))
                                     .where(_days.c.agent == self.agent_id))

    async def rollup(self, day: date, zone: ZoneInfo, devices: Iterable[str],
                     now: datetime) -> None:
        """Write the daily rows of `day` from its bucket rows, for this agent's devices (a
        transaction per DEVICE_CHUNK devices), then mark the day rolled up. Idempotent:
        rolling up a day again replaces its rows (a crash part-way: the next start does)."""
        start, end = day_range(day, zone)
        day_seconds = (end - start).total_seconds()
        names = sorted(set(devices))
        readings, availability = ReadingBucket.__table__, AvailabilityBucket.__table__
        for i in range(0, len(names), DEVICE_CHUNK):
            chunk = names[i:i + DEVICE_CHUNK]
            async with self.engine.begin() as conn:  # one per chunk: short write locks
                r, series = readings.c, Series.__table__.c
                owned = select(series.id).where(series.device.in_(chunk))
                summary = select(r.series, literal(day).label("day"), func.min(r.min),
                                 func.max(r.max), func.sum(r.sum), func.sum(r.count)) \
                    .where(r.start >= start, r.start < end, r.series.in_(owned)) \
                    .group_by(r.series)
                await conn.execute(self._upsert(ReadingDay.__table__, ("series", "day"))
                                   .from_select(["series", "day", "min", "max", "sum",
                                                 "count"], summary))
                a = availability.c
                up, down = func.sum(a.up_seconds), func.sum(a.down_seconds)
                seconds = select(a.device, a.collector, literal(day).label("day"),
                                 func.max(a.site), func.max(a.kind), up, down,
                                 literal(day_seconds) - up - down) \
                    .where(a.start >= start, a.start < end, a.device.in_(chunk)) \
                    .group_by(a.device, a.collector)
                await conn.execute(self._upsert(AvailabilityDay.__table__,
                                                ("device", "collector", "day"))
                                   .from_select(["device", "collector", "day", "site", "kind",
                                                 "up_seconds", "down_seconds",
                                                 "unknown_seconds"], seconds))
        async with self.engine.begin() as conn:  # marked once every chunk is written
            await conn.execute(self._upsert(_days, ("agent", "day")),
                               [{"agent": self.agent_id, "day": day, "rolled_at": now}])

    # -- retention -------------------------------------------------------------------------

    async def prune(self, bucket_cutoff: datetime, day_cutoff: date,
                    batch: int = PRUNE_BATCH) -> dict[str, int]:
        """Delete bucket rows starting before `bucket_cutoff` and daily rows of days before
        `day_cutoff`, `batch` rows per transaction. Returns rows deleted per table."""
        out: dict[str, int] = {}
        for model, column, cutoff in ((ReadingBucket, "start", bucket_cutoff),
                                      (AvailabilityBucket, "start", bucket_cutoff),
                                      (ReadingDay, "day", day_cutoff),
                                      (AvailabilityDay, "day", day_cutoff),
                                      (RolledDay, "day", day_cutoff)):
            table = model.__table__
            out[table.name] = await self._delete_before(table, table.c[column], cutoff, batch)
        return out

    async def _delete_before(self, table: Table, column: Any, cutoff: Any, batch: int) -> int:
        row_id = literal_column("rowid" if self.sqlite else "ctid")
        doomed = select(row_id).select_from(table).where(column < cutoff).limit(batch) \
            .scalar_subquery()
        total = 0
        while True:
            async with self.engine.begin() as conn:
                deleted = (await conn.execute(delete(table).where(row_id.in_(doomed)))).rowcount
            total += deleted
            if deleted < batch:
                return total
            await asyncio.sleep(0)  # let the ticket store's writers in between batches


async def _copy_upsert(conn: AsyncConnection, table: Table, key: Sequence[str],
                       rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: COPY the rows into a temporary table, then one INSERT ... ON CONFLICT
    from it: 2-5x the rows/s of an executemany (docs/history.md)."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    columns = [c.name for c in table.columns]
    names = ", ".join(columns)
    scratch = f"scratch_{table.name}"
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    async with driver.cursor() as cursor:
        await cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {scratch} (LIKE {table.name}) "
                             "ON COMMIT DELETE ROWS")
        async with cursor.copy(f"COPY {scratch} ({names}) FROM STDIN") as copy:
            for i in range(0, len(rows), 10000):
                await copy.write("".join("\t".join(_copy_text(row[c]) for c in columns) + "\n"
                                         for row in rows[i:i + 10000]).encode())
        await cursor.execute(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {scratch} "
                             f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")


def _copy_text(value: Any) -> str:
    """One field of COPY's text format."""
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n") \
            .replace("\r", "\\r")
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)


_days = RolledDay.__table__
