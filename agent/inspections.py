"""Periodic inspections (巡检): one per (site, kind, period), with a sheet pre-filled from
telemetry, the technician's on-site results, the owner's sign-off, and a timeline.

States: open -> submitted (the technician) -> signed (the owner's staff), and back to open
when the owner rejects it (with a reason). The sheet is pre-filled when the inspection is
created (by the daemon as each period starts, or on demand) and can be refreshed until it is
submitted. Results are recorded while it is open, all or nothing: a request (or an imported
sheet) with one bad row stores nothing and lists every problem.

The store lives in the ticket store's database and goes through its transactions
(`TicketStore._in_transaction`: on SQLite one writer queue for tickets and inspections).
Overdue: an inspection still open (not submitted) after its due time; exported per site
and kind as `vigil_inspection_overdue` (see docs/inspections.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agent.inspection_models import (
    INSPECTION_STATES,
    Inspection,
    InspectionEvent,
    InspectionResult,
)
from agent.inspection_prefill import SectionProvider, prefill
from agent.inspection_schedule import Due, Inspections, due_inspections, planned
from agent.state import State
from agent.tickets.store import InvalidInput, TicketError, TicketStore, _jsonable

log = logging.getLogger("vigil.inspections")

STATUS_ALIASES = {"ok": "ok", "issue": "issue", "na": "na", "正常": "ok", "异常": "issue",
                  "有问题": "issue", "不适用": "na", "n/a": "na"}
MAX_NOTE = 2000
TRANSITIONS = {"submit": ("open", "submitted"), "sign": ("submitted", "signed"),
               "reject": ("submitted", "open")}


class InspectionNotFound(TicketError):
    def __init__(self, inspection_id: int) -> None:
        super().__init__(f"no inspection {inspection_id}")


class IllegalState(TicketError):
    def __init__(self, inspection: Inspection, action: str, needs: str) -> None:
        self.current = inspection.state
        super().__init__(f"inspection {inspection.id} is '{inspection.state}': cannot "
                         f"{action} (that needs state {needs})")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a row of results: where (row, column) and what."""

    row: int | str
    column: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.message}"


class SheetRefused(InvalidInput):
    """Results refused as a whole; `problems` lists every one."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(f"refused: {len(self.problems)} problem(s), nothing was stored: "
                         + "; ".join(map(str, self.problems[:5]))
                         + (" ..." if len(self.problems) > 5 else ""))


@dataclass(frozen=True)
class Row:
    """One result as given, with where it came from (for the problems)."""

    where: int | str
    item: Any
    device: Any
    status: Any
    note: Any = ""
    columns: tuple[str, str, str, str] = ("item", "device", "status", "note")


def check_rows(rows: Sequence[Row], checklist: list[dict[str, str]]
               ) -> list[tuple[str, str, str, str]]:
    """(item, device, status, note) of every filled row, or SheetRefused with every problem.
    A row with neither status nor note is not filled and skipped."""
    items = {r["item"] for r in checklist}
    valid = {(r["item"], r["device"]) for r in checklist}
    problems: list[Problem] = []
    seen: dict[tuple[str, str], int | str] = {}
    out: list[tuple[str, str, str, str]] = []
    for row in rows:
        c_item, c_device, c_status, c_note = row.columns
        item, device = _text(row.item), _text(row.device)
        status, note = _text(row.status), _text(row.note)
        if not status and not note:
            continue
        bad = len(problems)
        if item is None or device is None or status is None or note is None:
            problems.append(Problem(row.where, c_item, "item, device, status and note must "
                                                       "be text"))
            continue
        if item not in items:
            problems.append(Problem(row.where, c_item, f"unknown item {item!r}"))
        elif (item, device) not in valid:
            devices = sorted(d for i, d in valid if i == item)
            problems.append(Problem(row.where, c_device,
                                    f"item {item!r} has no device {device!r}" if device else
                                    f"item {item!r} is per device: give one of "
                                    f"{', '.join(devices[:10]) or 'none'}"))
        canonical = STATUS_ALIASES.get(status.lower())
        if canonical is None:
            problems.append(Problem(row.where, c_status,
                                    f"status {status!r}: one of ok, issue, na "
                                    "(正常, 异常, 不适用)" if status else
                                    "status is missing (a note alone is not a result)"))
        if len(note) > MAX_NOTE or "\x00" in note:
            problems.append(Problem(row.where, c_note, f"note: at most {MAX_NOTE} characters, "
                                                       "no NUL"))
        if canonical == "issue" and not note.strip():
            problems.append(Problem(row.where, c_note, "an issue needs a note (what is wrong)"))
        key = (item, device)
        if key in seen:
            problems.append(Problem(row.where, c_item, f"{item}/{device or 'site'} is given "
                                                       f"twice (also row {seen[key]})"))
        seen[key] = row.where
        if len(problems) == bad:
            out.append((item, device, canonical or "", note))
    if problems:
        raise SheetRefused(problems)
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, datetime):  # a date typed into a note: Excel made it a date cell
        return value.isoformat(sep=" ")
    return None


class InspectionService:
    """Inspections over the ticket store's database. `state` gives the agent's readings and
    inventory (for the prefill), `settings` the current `inspections:` section."""

    def __init__(self, tickets: TicketStore, settings: Callable[[], Inspections],
                 state: Callable[[], State],
                 providers: dict[str, SectionProvider] | None = None) -> None:
        self.tickets = tickets
        self.settings = settings
        self.state = state
        self.providers = providers
        self.changed: list[Callable[[], Awaitable[None]]] = []
        """Called after an inspection is created or changes state (the overdue check)."""

    def now(self) -> datetime:
        return self.tickets.now()

    # -- reading ----------------------------------------------------------------------------

    async def list(self, site: str | None = None, kind: str | None = None,
                   state: str | None = None, limit: int = 1000) -> list[Inspection]:
        if state is not None and state not in INSPECTION_STATES:
            raise InvalidInput(f"state {state!r}: one of {', '.join(INSPECTION_STATES)}")
        query = select(Inspection)
        for column, value in ((Inspection.site, site), (Inspection.kind, kind),
                              (Inspection.state, state)):
            if value is not None:
                query = query.where(column == value)
        query = query.order_by(Inspection.period_start.desc(), Inspection.site,
                               Inspection.kind).limit(limit)
        async with self.tickets._readers() as session:
            return list((await session.scalars(query)).all())

    async def get(self, inspection_id: int) -> dict[str, Any]:
        """The inspection with its sheet, results and timeline."""
        async with self.tickets._readers() as session:
            inspection = await session.get(Inspection, inspection_id)
            if inspection is None:
                raise InspectionNotFound(inspection_id)
            results = await session.scalars(select(InspectionResult).where(
                InspectionResult.inspection_id == inspection_id).order_by(InspectionResult.id))
            events = await session.scalars(select(InspectionEvent).where(
                InspectionEvent.inspection_id == inspection_id).order_by(InspectionEvent.id))
            return {**inspection.summary(), "sheet": inspection.sheet,
                    "results": [r.to_dict() for r in results],
                    "timeline": [e.to_dict() for e in events]}

    # -- creating ---------------------------------------------------------------------------

    async def create(self, site: str, kind: str, period: str, actor: str
                     ) -> tuple[Inspection, bool]:
        """The inspection of (site, kind, period), created with its prefilled sheet unless it
        exists: (inspection, created)."""
        settings = self.settings()
        if site not in self.state().site_names:
            raise InvalidInput(f"site {site!r} is not in the inventory")
        try:
            due = planned(settings, kind, site, period)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        schedule = settings.schedules[kind]
        if schedule.sites and site not in schedule.sites:
            raise InvalidInput(f"site {site!r} is not inspected by {kind!r} (its sites: "
                               f"{', '.join(schedule.sites)})")
        return await self._create(due, actor)

    async def ensure_due(self, at: datetime | None = None) -> list[Inspection]:
        """Create the inspections of the periods holding `at` (default now) that do not exist
        yet; returns the ones created. Idempotent (the daemon calls it on a timer)."""
        settings = self.settings()
        wanted = due_inspections(settings, sorted(self.state().site_names), at or self.now())
        async with self.tickets._readers() as session:
            have = set((await session.execute(select(
                Inspection.site, Inspection.kind, Inspection.period))).all())
        created = []
        for due in wanted:
            if (due.site, due.kind, due.period) in have:
                continue
            inspection, new = await self._create(due, self.tickets.actor)
            if new:
                created.append(inspection)
        if created:
            log.info("inspections created: %s", ", ".join(
                f"{i.site}/{i.kind}/{i.period}" for i in created))
        return created

    async def _create(self, due: Due, actor: str) -> tuple[Inspection, bool]:
        sheet = await self._prefill(due)

        async def run(session: AsyncSession) -> Inspection:
            now = self.now()
            inspection = Inspection(
                site=due.site, kind=due.kind, period=due.period, period_start=due.start,
                period_end=due.end, due_at=due.due, state="open",
                agent_id=self.tickets.agent_id, sheet=sheet, prefilled_at=now,
                created_at=now, updated_at=now)
            session.add(inspection)
            await session.flush()
            self._event(session, inspection, actor, "created", now,
                        {"devices": len(sheet["devices"]), "rows": len(sheet["checklist"])})
            return inspection

        try:
            created = await self.tickets._in_transaction(run)
        except IntegrityError:  # created meanwhile (the timer, another agent): that one
            async with self.tickets._readers() as session:
                found = await session.scalar(select(Inspection).where(
                    Inspection.site == due.site, Inspection.kind == due.kind,
                    Inspection.period == due.period))
            if found is None:
                raise
            return found, False
        await self._changed()
        return created, True

    async def _prefill(self, due: Due) -> dict[str, Any]:
        schedule = self.settings().schedules.get(due.kind)
        if schedule is None:
            raise InvalidInput(f"kind {due.kind!r} is no longer in inspections.schedules")
        return _jsonable(await prefill(due, schedule, self.state(), self.tickets,
                                       self.providers))

    async def refresh(self, inspection_id: int, actor: str) -> Inspection:
        """Pre-fill the sheet again from today's telemetry (open inspections only)."""
        async with self.tickets._readers() as session:
            current = await session.get(Inspection, inspection_id)
        if current is None:
            raise InspectionNotFound(inspection_id)
        sheet = await self._prefill(Due(current.site, current.kind, current.period,
                                        current.period_start, current.period_end,
                                        current.due_at))

        async def run(session: AsyncSession) -> Inspection:
            inspection = await self._load(session, inspection_id)
            if inspection.state != "open":
                raise IllegalState(inspection, "refresh", "open")
            now = self.now()
            inspection.sheet, inspection.prefilled_at, inspection.updated_at = sheet, now, now
            self._event(session, inspection, actor, "refreshed", now,
                        {"devices": len(sheet["devices"]), "rows": len(sheet["checklist"])})
            return inspection

        return await self.tickets._in_transaction(run)

    # -- results and lifecycle --------------------------------------------------------------

    async def record(self, inspection_id: int, actor: str, rows: Sequence[Row],
                     source: str = "api") -> int:
        """Store the technician's results (all or nothing); returns how many rows."""
        async def run(session: AsyncSession) -> int:
            inspection = await self._load(session, inspection_id)
            if inspection.state != "open":
                raise IllegalState(inspection, "record results", "open")
            clean = check_rows(rows, inspection.sheet.get("checklist", []))
            if not clean:
                raise SheetRefused([Problem("-", "status", "no result given (every status "
                                                           "is empty)")])
            now = self.now()
            existing = {(r.item, r.device): r for r in await session.scalars(select(
                InspectionResult).where(InspectionResult.inspection_id == inspection_id))}
            for item, device, status, note in clean:
                found = existing.get((item, device))
                if found is None:
                    session.add(InspectionResult(inspection_id=inspection_id, item=item,
                                                 device=device, status=status, note=note,
                                                 actor=actor, at=now))
                else:
                    found.status, found.note, found.actor, found.at = status, note, actor, now
            inspection.updated_at = now
            self._event(session, inspection, actor, "recorded", now, {
                "source": source, "rows": len(clean),
                "issues": [f"{i}/{d}" if d else i for i, d, s, _ in clean if s == "issue"]})
            return len(clean)

        return await self.tickets._in_transaction(run)

    async def submit(self, inspection_id: int, actor: str, note: str = "") -> Inspection:
        """The technician's submission: every checklist row must have a result."""
        async def check(session: AsyncSession, inspection: Inspection) -> None:
            done = set((await session.execute(select(
                InspectionResult.item, InspectionResult.device).where(
                InspectionResult.inspection_id == inspection.id))).all())
            missing = [r for r in inspection.sheet.get("checklist", [])
                       if (r["item"], r["device"]) not in done]
            if missing:
                raise SheetRefused([Problem("-", "status", f"{r['item']}/"
                                                          f"{r['device'] or 'site'}: no result")
                                    for r in missing])

        return await self._transition(inspection_id, "submit", actor, {"note": note}, check)

    async def sign(self, inspection_id: int, actor: str, note: str = "") -> Inspection:
        """The owner's sign-off (the API allows it to the owner role only)."""
        return await self._transition(inspection_id, "sign", actor, {"note": note})

    async def reject(self, inspection_id: int, actor: str, reason: str) -> Inspection:
        """The owner sends it back to the technician (open again), saying why."""
        if not reason.strip():
            raise InvalidInput("reason is required")
        return await self._transition(inspection_id, "reject", actor, {"reason": reason})

    async def _transition(self, inspection_id: int, action: str, actor: str,
                          data: dict[str, Any], check: Any = None) -> Inspection:
        source, target = TRANSITIONS[action]

        async def run(session: AsyncSession) -> Inspection:
            inspection = await self._load(session, inspection_id)
            if inspection.state != source:
                raise IllegalState(inspection, action, source)
            if check is not None:
                await check(session, inspection)
            now = self.now()
            inspection.state, inspection.updated_at = target, now
            if action == "submit":
                inspection.submitted_at = now
            elif action == "sign":
                inspection.signed_at = now
            else:
                inspection.submitted_at = None
            self._event(session, inspection, actor, {"submit": "submitted", "sign": "signed",
                                                     "reject": "rejected"}[action], now,
                        {"from": source, "to": target, **data})
            return inspection

        changed = await self.tickets._in_transaction(run)
        await self._changed()
        return changed

    async def _changed(self) -> None:
        for hook in self.changed:
            await hook()

    # -- overdue ----------------------------------------------------------------------------

    async def overdue(self, at: datetime | None = None) -> list[tuple[str, str, int, float]]:
        """(site, kind, overdue 1/0, due timestamp) of every site and kind scheduled now."""
        now = at or self.now()
        scheduled = due_inspections(self.settings(), sorted(self.state().site_names), now)
        async with self.tickets._readers() as session:
            open_ones = list(await session.scalars(select(Inspection).where(
                Inspection.state == "open")))
        return overdue_rows(scheduled, open_ones, now)

    # -- machinery --------------------------------------------------------------------------

    @staticmethod
    def _event(session: AsyncSession, inspection: Inspection, actor: str, kind: str,
               now: datetime, data: dict[str, Any]) -> None:
        session.add(InspectionEvent(inspection_id=inspection.id, at=now, actor=actor,
                                    kind=kind, data=_jsonable(data)))

    async def _load(self, session: AsyncSession, inspection_id: int) -> Inspection:
        inspection = await session.scalar(self.tickets._locking(select(Inspection).where(
            Inspection.id == inspection_id)))
        if inspection is None:
            raise InspectionNotFound(inspection_id)
        return inspection


def overdue_rows(scheduled: list[Due], open_ones: list[Inspection], now: datetime
                 ) -> list[tuple[str, str, int, float]]:
    """Per scheduled (site, kind): overdue when an inspection of it is open past its due
    time (this period's or an earlier one's); the due timestamp is that of the oldest such
    inspection, else of this period's."""
    late: dict[tuple[str, str], datetime] = {}
    for inspection in open_ones:
        key = (inspection.site, inspection.kind)
        if inspection.due_at <= now and (key not in late or inspection.due_at < late[key]):
            late[key] = inspection.due_at
    out = []
    for due in scheduled:
        key = (due.site, due.kind)
        when = late.get(key, due.due)
        out.append((due.site, due.kind, int(key in late), when.timestamp()))
    return out


class InspectionMetrics(Collector):
    """`vigil_inspection_overdue{site,kind}` and `vigil_inspection_due_timestamp_seconds`,
    served from the runner's last check (a scrape never waits on the database)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.rows: list[tuple[str, str, int, float]] = []
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterator[Metric]:
        overdue = GaugeMetricFamily(
            "vigil_inspection_overdue", "1 when an inspection of this site and kind is still "
            "open (not submitted) after its due time.", labels=["site", "kind"])
        due = GaugeMetricFamily(
            "vigil_inspection_due_timestamp_seconds", "When the inspection of this site and "
            "kind is (or was) due: the oldest overdue one's, else this period's.",
            labels=["site", "kind"])
        for site, kind, late, when in self.rows:
            overdue.add_metric([site, kind], late)
            due.add_metric([site, kind], when)
        yield overdue
        yield due

    def describe(self) -> Iterator[Metric]:
        return iter(())


class InspectionRunner:
    """The daemon's timer: create the inspections of started periods, refresh the metrics.
    Waits for the ticket store to be open (`ready()`), and lets the first polls come in
    before the first prefill (`first_check` seconds after start)."""

    def __init__(self, service: InspectionService, settings: Callable[[], Inspections],
                 ready: Callable[[], bool], metrics: InspectionMetrics,
                 clock: Callable[[], float] = time.time, first_check: float = 120.0) -> None:
        self.service, self.settings, self.ready = service, settings, ready
        self.metrics, self.clock = metrics, clock
        self.first_check = first_check
        self.listeners: list[Callable[[], None]] = []
        """Called with new overdue rows in `metrics.rows` (the rules' readings)."""
        self._task: asyncio.Task | None = None
        service.changed.append(self.check_overdue)

    async def tick(self) -> None:
        if not self.ready():
            return
        if self.settings().enabled:
            await self.service.ensure_due(datetime.fromtimestamp(self.clock(), UTC))
        await self.check_overdue()

    async def check_overdue(self) -> None:
        """Which scheduled inspections are overdue now: the metrics and the readings."""
        self.metrics.rows = await self.service.overdue(datetime.fromtimestamp(self.clock(),
                                                                              UTC))
        for listener in self.listeners:
            listener()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_check)
        while True:
            try:
                await self.tick()
            except Exception:  # the loop must survive a bug or a database outage
                log.exception("inspection check failed")
            await asyncio.sleep(self.settings().check_interval if self.ready() else 10.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
