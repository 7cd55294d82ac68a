"""Grounding-resistance measurements (接地电阻测量记录): recorded, checked, kept, trended.

A technician measures an earthing point of the inventory (agent/earthing.py) with an
earth-resistance tester and records the value with the instrument, who measured and the
weather (wet soil reads lower: a value is only comparable with the same season's). The
records live in the ticket database (SQLite, or the centre's PostgreSQL), table
`grounding_measurements`; one point has at most one record per instant.

Every batch (one measurement from the API or CLI, or a whole imported sheet) is checked as a
whole before anything is written: one bad value refuses the batch, with every error listed.
The latest measurement of each point becomes readings the rules judge (agent/grounding_stage.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    tuple_,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from agent.earthing import EarthingPoint
from agent.tickets.migrations import upgrade_to_head
from agent.tickets.models import Base, UtcDateTime
from agent.tickets.store import _sqlite_setup

MAX_OHM = 1000.0
MIN_OHM = 0.001  # below any earth tester's resolution (and the trend's ratio stays finite)
"""Above this no earth-resistance reading is plausible: a slip of the pen (kΩ, a missing
decimal point) or an open test lead."""
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = 300.0
"""Seconds a measurement may lie ahead of the agent's clock (a technician's phone clock)."""
TEXT_LIMITS = {"instrument": 128, "technician": 128, "weather": 64, "soil": 64, "notes": 2000}


class GroundingMeasurement(Base):
    __tablename__ = "grounding_measurements"
    __table_args__ = (
        UniqueConstraint("point", "measured_at", name="uq_grounding_point_measured_at"),
        Index("ix_grounding_site_measured_at", "site", "measured_at"),
        CheckConstraint("ohm > 0 AND ohm <= 1000", name="ck_grounding_ohm"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    point: Mapped[str] = mapped_column(String(128))
    site: Mapped[str] = mapped_column(String(128))
    ohm: Mapped[float] = mapped_column(Float)
    measured_at: Mapped[datetime] = mapped_column(UtcDateTime)
    instrument: Mapped[str] = mapped_column(String(128))
    technician: Mapped[str] = mapped_column(String(128))
    weather: Mapped[str] = mapped_column(String(64))
    soil: Mapped[str] = mapped_column(String(64), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16))  # api, import
    recorded_by: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "point": self.point, "site": self.site, "ohm": self.ohm,
                "measured_at": self.measured_at.isoformat(), "instrument": self.instrument,
                "technician": self.technician, "weather": self.weather, "soil": self.soil,
                "notes": self.notes, "source": self.source, "recorded_by": self.recorded_by,
                "recorded_at": self.recorded_at.isoformat()}


@dataclass
class Measurement:
    """One measurement as given (API body, CLI, a sheet row), before it is stored.
    `where` says where it came from, for error messages ('row 4')."""

    point: str
    ohm: Any
    measured_at: datetime | None
    instrument: str
    technician: str
    weather: str
    soil: str = ""
    notes: str = ""
    where: str = ""


@dataclass
class Problem:
    """One thing wrong with a batch: where (row), which field (column), what."""

    field: str
    message: str
    where: str = ""

    def __str__(self) -> str:
        at = f"{self.where}, " if self.where else ""
        return f"{at}{self.field}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "field": self.field, "message": self.message}


class Refused(Exception):
    """The batch was refused as a whole; nothing was stored."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def check(batch: Sequence[Measurement], points: dict[str, EarthingPoint], now: float
          ) -> list[Problem]:
    """Every problem of the batch: unknown point, value out of range (≤ 0, < 0.001 or
    > 1000 Ω), time missing, before 2000 or in the future, text fields missing or too long,
    the same point and time twice."""
    out: list[Problem] = []
    seen: dict[tuple[str, datetime], str] = {}
    for m in batch:
        def bad(name: str, message: str, m: Measurement = m) -> None:
            out.append(Problem(name, message, m.where))

        if not m.point:
            bad("point", "required")
        elif m.point not in points:
            bad("point", f"unknown earthing point '{m.point}' (known: "
                         f"{', '.join(sorted(points)) or 'none in the inventory'})")
        ohm = m.ohm
        if isinstance(ohm, bool) or not isinstance(ohm, int | float):
            bad("ohm", f"a number of ohms (got {ohm!r})")
        elif ohm != ohm or ohm <= 0:
            bad("ohm", f"{ohm} Ω: must be above 0 (a reading of 0 is a shorted test lead)")
        elif ohm < MIN_OHM:
            bad("ohm", f"{ohm} Ω: below {MIN_OHM:g} Ω, which no earth tester resolves")
        elif ohm > MAX_OHM:
            bad("ohm", f"{ohm} Ω: above {MAX_OHM:g} Ω is not a plausible earth resistance "
                       f"(kΩ typed for Ω? a lead not connected?)")
        at = m.measured_at
        if at is None:
            bad("measured_at", "required")
        elif at.tzinfo is None:
            bad("measured_at", "a time with its UTC offset, e.g. 2026-10-12T09:30:00+08:00")
        elif at < EARLIEST:
            bad("measured_at", f"{at.isoformat()} is before 2000")
        elif at.timestamp() > now + FUTURE_SLACK:
            bad("measured_at", f"{at.isoformat()} is in the future (now "
                               f"{datetime.fromtimestamp(now, UTC).isoformat()})")
        else:
            key = (m.point, at.astimezone(UTC))
            if key in seen:
                bad("measured_at", f"the same point and time as {seen[key] or 'another'}")
            seen.setdefault(key, m.where)
        for name, limit in TEXT_LIMITS.items():
            value = getattr(m, name)
            if not isinstance(value, str):
                bad(name, "text")
            elif name in ("instrument", "technician", "weather") and not value.strip():
                bad(name, "required")
            elif len(value) > limit:
                bad(name, f"at most {limit} characters")
            elif "\x00" in value:
                bad(name, "NUL characters are not allowed")
    return out


@dataclass
class TrendPoint:
    """One measurement in a point's trend: the change against the one before it."""

    measured_at: datetime
    ohm: float
    change_ohm: float | None
    change_ratio: float | None
    over_limit: bool
    record: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"measured_at": self.measured_at.isoformat(), "ohm": self.ohm,
                "change_ohm": self.change_ohm, "change_ratio": self.change_ratio,
                "over_limit": self.over_limit, **{k: v for k, v in self.record.items()
                                                  if k not in ("measured_at", "ohm")}}


def trend(rows: Sequence[GroundingMeasurement], limit: float) -> list[TrendPoint]:
    """Values over time, oldest first, each with its change against the previous one."""
    out: list[TrendPoint] = []
    previous: float | None = None
    for row in sorted(rows, key=lambda r: r.measured_at):
        change = None if previous is None else round(row.ohm - previous, 6)
        ratio = None if previous is None else round((row.ohm - previous) / previous, 6)
        out.append(TrendPoint(row.measured_at, row.ohm, change, ratio, row.ohm > limit,
                              row.to_dict()))
        previous = row.ohm
    return out


class GroundingStore:
    """The measurements, in the ticket database (`tickets.url`). `clock` is time.time or a
    test's. `start()` runs the migrations (all of them: the ticket store's too)."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time,
                 busy_timeout: float = 30.0, migrate: bool = True) -> None:
        self.url = make_url(url)
        self.clock = clock
        self.migrate = migrate
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.engine: AsyncEngine = create_async_engine(self.url)
        if self.sqlite:
            _sqlite_setup(self.engine, busy_timeout, "BEGIN IMMEDIATE")
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._turn: contextlib.AbstractAsyncContextManager[Any] = \
            asyncio.Lock() if self.sqlite else contextlib.nullcontext()

    async def start(self) -> None:
        if self.sqlite and self.url.database:
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        if self.migrate:
            await asyncio.to_thread(upgrade_to_head, self.url)

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def record(self, batch: Sequence[Measurement], points: dict[str, EarthingPoint],
                     actor: str, source: str) -> list[GroundingMeasurement]:
        """Store the whole batch in one transaction, or nothing: Refused lists every
        problem (including measurements already recorded for that point and time)."""
        now = self.clock()
        problems = check(batch, points, now)
        if problems:
            raise Refused(problems)
        stamp = datetime.fromtimestamp(now, UTC)
        rows = [GroundingMeasurement(
            point=m.point, site=points[m.point].site, ohm=float(m.ohm),
            measured_at=m.measured_at.astimezone(UTC),  # type: ignore[union-attr]
            instrument=m.instrument.strip(), technician=m.technician.strip(),
            weather=m.weather.strip(), soil=m.soil.strip(), notes=m.notes.strip(),
            source=source, recorded_by=actor, recorded_at=stamp) for m in batch]
        async with self._turn, self._sessions() as session, session.begin():
            keys = [(r.point, r.measured_at) for r in rows]
            known = set()
            for start in range(0, len(keys), 200):
                part = keys[start:start + 200]
                found = await session.execute(select(
                    GroundingMeasurement.point, GroundingMeasurement.measured_at).where(
                    tuple_(GroundingMeasurement.point,
                           GroundingMeasurement.measured_at).in_(part)))
                known |= {(p, at) for p, at in found}
            dupes = [Problem("measured_at", f"{r.point} at {r.measured_at.isoformat()} is "
                                            f"already recorded", m.where)
                     for r, m in zip(rows, batch, strict=True)
                     if (r.point, r.measured_at) in known]
            if dupes:
                raise Refused(dupes)
            session.add_all(rows)
        return rows

    async def history(self, point: str | None = None, site: str | None = None,
                      since: datetime | None = None, until: datetime | None = None
                      ) -> list[GroundingMeasurement]:
        """Measurements, oldest first (filters: point, site, measured in [since, until))."""
        query = select(GroundingMeasurement)
        if point is not None:
            query = query.where(GroundingMeasurement.point == point)
        if site is not None:
            query = query.where(GroundingMeasurement.site == site)
        if since is not None:
            query = query.where(GroundingMeasurement.measured_at >= since)
        if until is not None:
            query = query.where(GroundingMeasurement.measured_at < until)
        query = query.order_by(GroundingMeasurement.measured_at, GroundingMeasurement.id)
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())

    async def latest(self) -> dict[str, GroundingMeasurement]:
        """The latest measurement of every point that has one."""
        newest = select(GroundingMeasurement.point,
                        func.max(GroundingMeasurement.measured_at).label("at")
                        ).group_by(GroundingMeasurement.point).subquery()
        query = select(GroundingMeasurement).join(
            newest, (GroundingMeasurement.point == newest.c.point)
            & (GroundingMeasurement.measured_at == newest.c.at))
        async with self._sessions() as session:
            return {r.point: r for r in (await session.scalars(query)).all()}


def status(point: EarthingPoint, latest: GroundingMeasurement | None, now: float
           ) -> dict[str, Any]:
    """A point's summary: limit, latest value, due date, and whether it is over its limit
    or overdue (what the rules will say too, for lists and reports)."""
    due = None if latest is None else latest.measured_at.timestamp() + point.measure_every
    return {"point": point.id, "site": point.site, "name": point.name, "kind": point.kind,
            "device": point.device, "limit_ohm": point.limit,
            "measure_every_days": round(point.measure_every / 86400, 1),
            "latest": None if latest is None else latest.to_dict(),
            "due": None if due is None else datetime.fromtimestamp(due, UTC).isoformat(),
            "over_limit": latest is not None and latest.ohm > point.limit,
            "overdue": due is None or now > due}
