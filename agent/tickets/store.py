"""The ticket store: async, on SQLAlchemy 2 (SQLite + aiosqlite embedded, PostgreSQL + psycopg
for a centre whose agents share one store).

Every change is one transaction that updates the ticket and appends one event to its
timeline (who, when, what). Opening is idempotent and converges under concurrency: the
database's partial unique index allows one not-closed ticket per fault key, an opener that
loses the race gets an IntegrityError, rolls back and finds the winner's ticket.

Lifecycle: open -> acknowledged -> diagnosed -> repairing -> resolved -> confirmed -> closed,
and `reopen` from resolved, confirmed or closed. A fault that resolves by itself closes
nothing: `fault_resolved()` only records it on the timeline; the repair must be recorded
(`resolve`, with its cause category) and the owner must confirm it.

SQLite: WAL, a busy timeout, and every writing transaction starts with BEGIN IMMEDIATE, so
writers queue on the database's write lock instead of failing on a read-to-write upgrade;
reads go through a second engine whose transactions begin deferred (in WAL a reader sees a
snapshot and never waits for the writer).
PostgreSQL: a transition locks its ticket row (SELECT ... FOR UPDATE).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from agent.tickets.migrations import upgrade_to_head
from agent.tickets.models import CAUSES, STATES, Ticket, TicketEvent

log = logging.getLogger("vigil.tickets")

Clock = Callable[[], float]
"""Seconds since the epoch, like time.time (injected: tests move time without sleeping)."""

# action -> (states it may start from, state it leads to, timestamp column it sets)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str, str | None]] = {
    "acknowledge": (("open",), "acknowledged", "acknowledged_at"),
    "diagnose": (("acknowledged",), "diagnosed", "diagnosed_at"),
    "start_repair": (("diagnosed",), "repairing", "repair_started_at"),
    "resolve": (("repairing",), "resolved", "resolved_at"),
    "confirm": (("resolved",), "confirmed", "confirmed_at"),
    "close": (("confirmed",), "closed", "closed_at"),
    "reopen": (("resolved", "confirmed", "closed"), "open", "reopened_at"),
}
EVENT_KIND = {"acknowledge": "acknowledged", "diagnose": "diagnosed",
              "start_repair": "repair_started", "resolve": "resolved", "confirm": "confirmed",
              "close": "closed", "reopen": "reopened"}
CYCLE_COLUMNS = ("acknowledged_at", "diagnosed_at", "repair_started_at", "resolved_at",
                 "confirmed_at", "closed_at")
OPEN_ATTEMPTS = 20
OPEN_BATCH = 500  # faults opened in one transaction during a storm


class TicketError(Exception):
    """Base of the store's errors (the API maps them to 4xx)."""


class TicketNotFound(TicketError):
    def __init__(self, ticket_id: int) -> None:
        super().__init__(f"no ticket {ticket_id}")
        self.ticket_id = ticket_id


class IllegalTransition(TicketError):
    def __init__(self, ticket_id: int, action: str, current: str) -> None:
        self.ticket_id, self.action, self.current = ticket_id, action, current
        self.allowed = allowed_actions(current)
        sources = TRANSITIONS[action][0] if action in TRANSITIONS else STATES[:-1]
        needs = ", ".join(sources)
        super().__init__(
            f"ticket {ticket_id} is '{current}': cannot {action} (that needs state {needs}); "
            f"allowed from '{current}': {', '.join(self.allowed) or 'nothing'}")


class InvalidInput(TicketError):
    pass


class AlreadyEscalated(TicketError):
    """This breach (its seq) is already recorded: another agent, or an earlier run, did it."""

    def __init__(self, ticket_id: int, seq: int) -> None:
        super().__init__(f"ticket {ticket_id}: escalation {seq} is already recorded")
        self.ticket_id, self.seq = ticket_id, seq


def allowed_actions(state: str) -> list[str]:
    return [action for action, (sources, _, _) in TRANSITIONS.items() if state in sources]


class FaultLike(Protocol):
    """What the store reads of a rules.faults.Fault (the store does not import rules)."""

    key: str
    rule: str
    site: str
    device: str
    subject: str
    level: int
    texts: dict[str, dict[str, str]]
    evidence: dict[str, Any]
    fired_at: float | None


@dataclass(frozen=True)
class Opened:
    """What `open_for_faults` did for one fault: `created` a ticket, `reopened` one (the fault
    came back), or found the `existing` one."""

    ticket: Ticket
    outcome: str


UNREACHABLE = (OperationalError, InterfaceError, OSError, TimeoutError)
"""Errors that mean the database is out of reach (server or link down), not a bug: callers
say them once per outage, without a traceback."""


def unreachable_reason(exc: BaseException) -> str:
    """The driver's own first line (e.g. 'connection refused'), without SQLAlchemy's text."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


@dataclass(frozen=True)
class TicketFilter:
    """`list()` filters; None means any. `state` and `level` accept one value or several."""

    state: str | Sequence[str] | None = None
    not_closed: bool = False
    level: int | Sequence[int] | None = None
    site: str | None = None
    device: str | None = None
    rule: str | None = None
    fault_key: str | None = None
    agent_id: str | None = None
    opened_since: datetime | None = None
    opened_before: datetime | None = None
    limit: int = 100
    offset: int = 0


def _many(value: Any) -> list[Any]:
    return [value] if isinstance(value, str | int) else list(value)


def _title(fault: FaultLike, lang: str) -> str:
    summary = (fault.texts or {}).get("summary", {})
    return summary.get(lang) or summary.get("en") or summary.get("zh") or \
        f"{fault.rule}: {fault.subject}"


class TicketStore:
    """Tickets of `agent_id` (and of every agent sharing the database).

    `url`: `sqlite+aiosqlite:///PATH` (embedded default) or `postgresql+psycopg://...`.
    `reopen_window`: seconds after a ticket closed during which the same fault returning
    reopens it instead of opening a new one. Call `await start()` (runs the migrations
    unless `migrate=False`) and `await close()`, or use `async with`.
    """

    def __init__(self, url: str, agent_id: str, clock: Clock = time.time, *,
                 reopen_window: float = 24 * 3600.0, busy_timeout: float = 30.0,
                 migrate: bool = True) -> None:
        if not agent_id:
            raise InvalidInput("agent_id is required")
        self.url = make_url(url)
        self.agent_id = agent_id
        self.clock = clock
        self.reopen_window = float(reopen_window)
        self.migrate = migrate
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.engine: AsyncEngine = create_async_engine(self.url)
        self._reader_engine = self.engine
        if self.sqlite:  # readers begin deferred: in WAL they never wait for the writer
            self._reader_engine = create_async_engine(self.url)
            _sqlite_setup(self.engine, busy_timeout, "BEGIN IMMEDIATE")
            _sqlite_setup(self._reader_engine, busy_timeout, "BEGIN")
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._readers = async_sessionmaker(self._reader_engine, expire_on_commit=False)
        self._turn: contextlib.AbstractAsyncContextManager[Any] = \
            asyncio.Lock() if self.sqlite else contextlib.nullcontext()
        self.listeners: list[Callable[[Ticket, str], Any]] = []
        """Called with (ticket, action) after a lifecycle change is committed (metrics)."""

    async def start(self) -> None:
        if self.migrate:
            revision = await asyncio.to_thread(upgrade_to_head, self.url)
            log.info("ticket store at schema revision %s", revision)

    async def dispose(self) -> None:
        """Close the database connections."""
        await self.engine.dispose()
        if self._reader_engine is not self.engine:
            await self._reader_engine.dispose()

    async def __aenter__(self) -> TicketStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.dispose()

    # -- time -------------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    @property
    def actor(self) -> str:
        """The actor name of this agent's own changes."""
        return f"agent:{self.agent_id}"

    # -- reading ----------------------------------------------------------------------------

    async def get(self, ticket_id: int) -> Ticket:
        async with self._readers() as session:
            ticket = await session.get(Ticket, ticket_id)
        if ticket is None:
            raise TicketNotFound(ticket_id)
        return ticket

    async def find_open(self, fault_key: str) -> Ticket | None:
        """The ticket of `fault_key` that is not closed, if any."""
        async with self._readers() as session:
            return await session.scalar(select(Ticket).where(
                Ticket.fault_key == fault_key, Ticket.state != "closed"))

    async def open_keys(self, fault_keys: Sequence[str]) -> set[str]:
        """Those of `fault_keys` that have a ticket that is not closed."""
        async with self._readers() as session:
            return set(await session.scalars(select(Ticket.fault_key).where(
                Ticket.fault_key.in_(list(fault_keys)), Ticket.state != "closed")))

    async def list(self, filters: TicketFilter | None = None) -> list[Ticket]:
        f = filters or TicketFilter()
        query = select(Ticket)
        if f.state is not None:
            states = _many(f.state)
            unknown = set(states) - set(STATES)
            if unknown:
                raise InvalidInput(f"unknown state(s) {sorted(unknown)}; known: {STATES}")
            query = query.where(Ticket.state.in_(states))
        if f.not_closed:
            query = query.where(Ticket.state != "closed")
        if f.level is not None:
            query = query.where(Ticket.level.in_(_many(f.level)))
        for column, value in ((Ticket.site, f.site), (Ticket.device, f.device),
                              (Ticket.rule, f.rule), (Ticket.fault_key, f.fault_key),
                              (Ticket.agent_id, f.agent_id)):
            if value is not None:
                query = query.where(column == value)
        if f.opened_since is not None:
            query = query.where(Ticket.opened_at >= f.opened_since)
        if f.opened_before is not None:
            query = query.where(Ticket.opened_at < f.opened_before)
        query = query.order_by(Ticket.id).limit(max(0, f.limit)).offset(max(0, f.offset))
        async with self._readers() as session:
            return list((await session.scalars(query)).all())

    async def timeline(self, ticket_id: int) -> list[TicketEvent]:
        async with self._readers() as session:
            if await session.get(Ticket, ticket_id) is None:
                raise TicketNotFound(ticket_id)
            rows = await session.scalars(select(TicketEvent).where(
                TicketEvent.ticket_id == ticket_id).order_by(TicketEvent.id))
            return list(rows.all())

    # -- opening ----------------------------------------------------------------------------

    async def open_for_fault(self, fault: FaultLike) -> tuple[Ticket, bool]:
        """The ticket for a firing fault: (ticket, created). Idempotent: a ticket that is not
        closed is returned as is, or reopened when its repair was recorded (resolved or
        confirmed: the fault is back). Else a ticket of the same key closed within
        `reopen_window` is reopened; else a new one is opened (created = True)."""
        [opened] = await self.open_for_faults([fault])
        return opened.ticket, opened.outcome == "created"

    async def open_for_faults(self, faults: Sequence[FaultLike]) -> list[Opened]:
        """`open_for_fault` for many faults (a storm), in order: one transaction per
        `OPEN_BATCH` faults. A batch the database refuses (another agent sharing the store
        opened one of its tickets meanwhile) is retried, fault by fault."""
        for fault in faults:
            if not 1 <= int(fault.level) <= 4:
                raise InvalidInput(f"fault {fault.key}: level {fault.level} is not 1-4")
        unique = list({f.key: f for f in faults}.values())
        done: dict[str, Opened] = {}
        for start in range(0, len(unique), OPEN_BATCH):
            batch = unique[start:start + OPEN_BATCH]
            try:
                opened = await self._in_transaction(lambda s, b=batch: self._open_many(s, b))
            except IntegrityError:
                opened = [await self._open_one(f) for f in batch]
            done.update((o.ticket.fault_key, o) for o in opened)
        return [done[f.key] for f in faults]

    async def _open_one(self, fault: FaultLike) -> Opened:
        for _ in range(OPEN_ATTEMPTS):
            try:
                [opened] = await self._in_transaction(lambda s: self._open_many(s, [fault]))
            except IntegrityError:  # another agent opened or reopened it first: look again
                continue
            return opened
        raise TicketError(f"could not open a ticket for {fault.key} after {OPEN_ATTEMPTS} "
                          "attempts (the database kept refusing)")

    async def _open_many(self, session: AsyncSession, faults: Sequence[FaultLike]
                         ) -> list[Opened]:
        now = self.now()
        by_key = {f.key: f for f in faults}
        found: dict[str, Opened] = {}
        for ticket in await session.scalars(self._locking(select(Ticket).where(
                Ticket.fault_key.in_(by_key), Ticket.state != "closed"))):
            outcome = "existing"
            if ticket.state in ("resolved", "confirmed"):
                self._apply(session, ticket, "reopen", self.actor, now,
                            {"reason": "fault_returned", "level": by_key[ticket.fault_key].level})
                outcome = "reopened"
            found[ticket.fault_key] = Opened(ticket, outcome)
        rest = [k for k in by_key if k not in found]
        if rest:
            # A concurrent reopener waits on the row lock (PostgreSQL; SQLite serialises the
            # whole transaction), then no longer finds it closed and tries to insert, which
            # the unique index refuses: the batch is retried and finds this ticket open.
            cutoff = now - timedelta(seconds=self.reopen_window)
            for ticket in await session.scalars(self._locking(select(Ticket).where(
                    Ticket.fault_key.in_(rest), Ticket.state == "closed",
                    Ticket.closed_at >= cutoff).order_by(Ticket.closed_at.desc()))):
                if ticket.fault_key in found:  # an older closed ticket of the same key
                    continue
                self._apply(session, ticket, "reopen", self.actor, now,
                            {"reason": "fault_returned",
                             "level": by_key[ticket.fault_key].level,
                             "closed_at": ticket.closed_at.isoformat() if ticket.closed_at
                             else None})
                found[ticket.fault_key] = Opened(ticket, "reopened")
        new = [Ticket(fault_key=f.key, agent_id=self.agent_id, site=f.site or "",
                      device=f.device or "", rule=f.rule, level=int(f.level),
                      original_level=int(f.level), state="open", title_zh=_title(f, "zh"),
                      title_en=_title(f, "en"), opened_at=now, updated_at=now,
                      reopen_count=0)
               for key, f in by_key.items() if key not in found]
        if new:
            session.add_all(new)
            await session.flush()  # the unique index speaks here
            for ticket in new:
                fault = by_key[ticket.fault_key]
                fired = fault.fired_at
                self._event(session, ticket, self.actor, "opened", now, {
                    "fault_key": fault.key, "level": int(fault.level),
                    "fired_at": datetime.fromtimestamp(fired, UTC).isoformat() if fired
                    else None, "evidence": fault.evidence or {}})
                found[ticket.fault_key] = Opened(ticket, "created")
        return [found[k] for k in by_key]

    async def fault_resolved(self, fault_key: str, at: float | None = None) -> Ticket | None:
        """The fault is no longer firing: recorded on its open ticket's timeline, nothing
        else (the repair still has to be recorded and confirmed). None if it has none."""
        [resolved] = await self.faults_resolved({fault_key: at})
        return resolved[0] if resolved else None

    async def faults_resolved(self, resolutions: dict[str, float | None]
                              ) -> list[tuple[Ticket, TicketEvent] | None]:
        """`fault_resolved` for many faults (key -> when) in one transaction: for each, its
        ticket and the `fault_resolved` event, or None if it has no ticket that is not
        closed. A resolution already recorded (same ticket, same time: an agent that crashed
        after recording it tries again) gives the event recorded then, not a second one."""
        async def run(session: AsyncSession) -> list[tuple[Ticket, TicketEvent] | None]:
            tickets = {t.fault_key: t for t in await session.scalars(self._locking(
                select(Ticket).where(Ticket.fault_key.in_(resolutions),
                                     Ticket.state != "closed")))}
            recorded = {(e.ticket_id, e.data.get("resolved_at")): e
                        for e in await session.scalars(select(TicketEvent).where(
                            TicketEvent.ticket_id.in_([t.id for t in tickets.values()]),
                            TicketEvent.kind == "fault_resolved"))}
            now, out = self.now(), []
            for key, at in resolutions.items():
                ticket = tickets.get(key)
                if ticket is None:
                    out.append(None)
                    continue
                data = {"resolved_at": datetime.fromtimestamp(at, UTC).isoformat()} \
                    if at else {}
                again = recorded.get((ticket.id, data.get("resolved_at"))) if at else None
                out.append((ticket, again or self._event(session, ticket, self.actor,
                                                         "fault_resolved", now, data)))
            await session.flush()  # the events' ids
            return out

        return await self._in_transaction(run)

    # -- lifecycle --------------------------------------------------------------------------

    async def acknowledge(self, ticket_id: int, actor: str, note: str = "") -> Ticket:
        return await self._transition(ticket_id, "acknowledge", actor, {"note": note})

    async def diagnose(self, ticket_id: int, actor: str, diagnosis: str,
                       plan: str = "") -> Ticket:
        """Record the diagnosis (and the maintenance plan, if already known)."""
        _required(diagnosis=diagnosis)
        return await self._transition(ticket_id, "diagnose", actor,
                                      {"diagnosis": diagnosis, "plan": plan})

    async def start_repair(self, ticket_id: int, actor: str, plan: str = "") -> Ticket:
        return await self._transition(ticket_id, "start_repair", actor, {"plan": plan})

    async def resolve(self, ticket_id: int, actor: str, cause_category: str, repair: str,
                      parts_replaced: Sequence[str] = ()) -> Ticket:
        """Record the repair: its cause category, what was done, the parts replaced."""
        if cause_category not in CAUSES:
            raise InvalidInput(f"unknown cause category {cause_category!r}; known: "
                               f"{', '.join(CAUSES)}")
        _required(repair=repair)
        return await self._transition(
            ticket_id, "resolve", actor,
            {"cause_category": cause_category, "repair": repair,
             "parts_replaced": list(parts_replaced)},
            cause_category=cause_category)

    async def confirm(self, ticket_id: int, actor: str, note: str = "") -> Ticket:
        """The owner's acceptance of the repair (the API allows it to the owner role only)."""
        return await self._transition(ticket_id, "confirm", actor, {"note": note})

    async def close(self, ticket_id: int, actor: str, note: str = "") -> Ticket:
        return await self._transition(ticket_id, "close", actor, {"note": note})

    async def reopen(self, ticket_id: int, actor: str, reason: str) -> Ticket:
        _required(reason=reason)
        return await self._transition(ticket_id, "reopen", actor, {"reason": reason})

    async def comment(self, ticket_id: int, actor: str, text: str) -> Ticket:
        _required(text=text)
        _required(actor=actor)

        async def run(session: AsyncSession) -> Ticket:
            ticket = await self._load(session, ticket_id)
            self._event(session, ticket, actor, "comment", self.now(), {"text": text})
            return ticket

        return await self._in_transaction(run)

    async def escalate(self, ticket_id: int, actor: str, level: int,
                       data: dict[str, Any] | None = None) -> Ticket:
        """Raise the ticket's level (1 is the most urgent). Refused unless `level` is more
        urgent than the current one, so one breach can never escalate twice.

        With a breach number (`data["seq"]`, agent/escalation.py's Escalation.seq) the
        breach identifies the escalation instead: the level may stay (a breach at level 1
        still escalates to the next tier), and a seq already recorded in the ticket's current
        cycle (since its latest reopening) is refused with AlreadyEscalated, also when two
        agents sharing the store race for it."""
        _required(actor=actor)
        seq = (data or {}).get("seq")

        async def run(session: AsyncSession) -> Ticket:
            ticket = await self._load(session, ticket_id)
            if ticket.state == "closed":
                raise IllegalTransition(ticket_id, "escalate", ticket.state)
            if seq is not None:
                if any(e.data.get("seq") == seq
                       for e in await self._cycle_events(session, ticket_id, "escalated")):
                    raise AlreadyEscalated(ticket_id, seq)
                if not 1 <= level <= ticket.level:
                    raise InvalidInput(f"ticket {ticket_id} is level {ticket.level}: "
                                       f"cannot escalate to {level}")
            elif not 1 <= level < ticket.level:
                raise InvalidInput(f"ticket {ticket_id} is level {ticket.level}: "
                                   f"cannot escalate to {level}")
            now = self.now()
            previous, ticket.level, ticket.updated_at = ticket.level, level, now
            self._event(session, ticket, actor, "escalated", now,
                        {"from_level": previous, "to_level": level, **(data or {})})
            return ticket

        return await self._in_transaction(run)

    async def record(self, ticket_id: int, kind: str, data: dict[str, Any]) -> None:
        """Append an event of this agent's own (e.g. `notified`: who was told what) to the
        timeline; the ticket itself does not change."""
        await self.record_many([(ticket_id, kind, data)])

    async def record_many(self, entries: Sequence[tuple[int, str, dict[str, Any]]]) -> None:
        """`record` for many (ticket id, kind, data) in one transaction."""
        for _, kind, _ in entries:
            _required(kind=kind)

        async def run(session: AsyncSession) -> None:
            ids = {ticket_id for ticket_id, _, _ in entries}
            known = set(await session.scalars(select(Ticket.id).where(Ticket.id.in_(ids))))
            if ids - known:
                raise TicketNotFound(min(ids - known))
            now = self.now()
            session.add_all(TicketEvent(ticket_id=ticket_id, at=now, actor=self.actor,
                                        kind=kind, data=_jsonable(data))
                            for ticket_id, kind, data in entries)

        await self._in_transaction(run)

    async def cycle_events(self, ticket_id: int) -> list[TicketEvent]:
        """The timeline of the ticket's current cycle: the events after its latest reopening
        (all of them if it never reopened)."""
        async with self._readers() as session:
            return await self._cycle_events(session, ticket_id)

    async def cycle_events_of(self, ticket_ids: Sequence[int]) -> dict[int, list[TicketEvent]]:
        """`cycle_events` of many tickets, in two queries."""
        ids = list(ticket_ids)
        out: dict[int, list[TicketEvent]] = {i: [] for i in ids}
        if not ids:
            return out
        async with self._readers() as session:
            reopened = dict((await session.execute(
                select(TicketEvent.ticket_id, func.max(TicketEvent.id)).where(
                    TicketEvent.ticket_id.in_(ids), TicketEvent.kind == "reopened")
                .group_by(TicketEvent.ticket_id))).all())
            for ev in await session.scalars(select(TicketEvent).where(
                    TicketEvent.ticket_id.in_(ids)).order_by(TicketEvent.id)):
                if ev.id > reopened.get(ev.ticket_id, 0):
                    out[ev.ticket_id].append(ev)
        return out

    async def _cycle_events(self, session: AsyncSession, ticket_id: int,
                            kind: str | None = None) -> list[TicketEvent]:
        reopened = await session.scalar(select(func.max(TicketEvent.id)).where(
            TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "reopened"))
        query = select(TicketEvent).where(TicketEvent.ticket_id == ticket_id,
                                          TicketEvent.id > (reopened or 0))
        if kind is not None:
            query = query.where(TicketEvent.kind == kind)
        return list((await session.scalars(query.order_by(TicketEvent.id))).all())

    # -- machinery --------------------------------------------------------------------------

    async def _transition(self, ticket_id: int, action: str, actor: str,
                          data: dict[str, Any], **columns: Any) -> Ticket:
        _required(actor=actor)

        async def run(session: AsyncSession) -> Ticket:
            ticket = await self._load(session, ticket_id)
            for key, value in columns.items():
                setattr(ticket, key, value)
            self._apply(session, ticket, action, actor, self.now(), data)
            return ticket

        ticket = await self._in_transaction(run)
        for listener in self.listeners:
            try:
                listener(ticket, action)
            except Exception:  # a metrics bug must not fail a committed change
                log.exception("ticket listener failed")
        return ticket

    def _apply(self, session: AsyncSession, ticket: Ticket, action: str, actor: str,
               now: datetime, data: dict[str, Any]) -> None:
        sources, target, stamp = TRANSITIONS[action]
        if ticket.state not in sources:
            raise IllegalTransition(ticket.id, action, ticket.state)
        previous = ticket.state
        if action == "reopen":
            for column in CYCLE_COLUMNS:
                setattr(ticket, column, None)
            ticket.cause_category = None
            ticket.reopen_count += 1
        ticket.state = target
        if stamp:
            setattr(ticket, stamp, now)
        ticket.updated_at = now
        self._event(session, ticket, actor, EVENT_KIND[action], now,
                    {"from": previous, "to": target, **data})

    def _event(self, session: AsyncSession, ticket: Ticket, actor: str, kind: str,
               now: datetime, data: dict[str, Any]) -> TicketEvent:
        event = TicketEvent(ticket_id=ticket.id, at=now, actor=actor, kind=kind,
                            data=_jsonable(data))
        session.add(event)
        return event

    async def _load(self, session: AsyncSession, ticket_id: int) -> Ticket:
        ticket = await session.scalar(self._locking(select(Ticket).where(
            Ticket.id == ticket_id)))
        if ticket is None:
            raise TicketNotFound(ticket_id)
        return ticket

    def _locking(self, query: Any) -> Any:
        return query if self.sqlite else query.with_for_update()

    async def _in_transaction(self, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        """Run `work` in one transaction; SQLite 'database is locked' past the busy timeout
        is retried a few times (IntegrityError and the store's own errors are not). On
        SQLite this process's writers take turns (FIFO) before asking for the database's
        lock, instead of all polling SQLite's busy handler, whose sleeps make the tail."""
        for attempt in range(3):
            try:
                async with self._turn, self._sessions() as session, session.begin():
                    return await work(session)
            except OperationalError as exc:
                if not self.sqlite or "locked" not in str(exc) or attempt == 2:
                    raise
                log.warning("ticket store busy (%s), retrying", exc)
        raise AssertionError("unreachable")

    async def open_counts(self, agent_id: str | None = None
                          ) -> list[tuple[str, int, str, int]]:
        """(site, level, state, count) of the tickets that are not closed, of one agent's
        (None: of all agents sharing the store)."""
        query = select(Ticket.site, Ticket.level, Ticket.state, func.count(Ticket.id)).where(
            Ticket.state != "closed").group_by(Ticket.site, Ticket.level, Ticket.state)
        if agent_id is not None:
            query = query.where(Ticket.agent_id == agent_id)
        async with self._readers() as session:
            return [tuple(row) for row in (await session.execute(query)).all()]

    async def count(self, filters: TicketFilter | None = None) -> int:
        """Number of tickets matching the state/site filters (for metrics)."""
        f = filters or TicketFilter()
        query = select(func.count(Ticket.id))
        if f.state is not None:
            query = query.where(Ticket.state.in_(_many(f.state)))
        if f.not_closed:
            query = query.where(Ticket.state != "closed")
        if f.fault_key is not None:
            query = query.where(Ticket.fault_key == f.fault_key)
        async with self._readers() as session:
            return int(await session.scalar(query) or 0)


def _required(**values: str) -> None:
    for name, value in values.items():
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"{name} is required")


def _jsonable(value: Any) -> Any:
    """JSON-safe copy (the evidence may hold datetimes or tuples)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _sqlite_setup(engine: AsyncEngine, busy_timeout: float, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # transactions are begun explicitly below
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql(begin)
