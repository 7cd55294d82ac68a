"""The ticket stage of the daemon: faults -> tickets -> escalations -> notifications.

After every rules cycle (`on_cycle`, called by RulesRunner) each fault that fires and opens
something of its own (not caused by a root fault, silenced or inhibited) gets its ticket
(`TicketStore.open_for_faults`, idempotent, one transaction for a whole storm); a new or
reopened ticket is announced ('opened') to the first tier of its level. A fault that
resolves is recorded on its ticket's timeline and announced ('resolved'; the ticket stays
open until the repair is recorded and confirmed); while the store cannot be written,
resolutions wait in memory and are recorded when it can. A fault that was suppressed and no
longer is, while still firing, gets its ticket then.

On a timer (`tickets.escalation_interval`, and once at start) every ticket of this agent
(opened by it: with a store shared by several branch agents, each escalates and notifies its
own branch's tickets, through its own channels) that is not closed is checked against the
escalation policy from its stored times and the escalations recorded
on its timeline (agent/escalation.py `due_escalations`).

Crash ordering. An escalation is recorded in the store FIRST (`escalate`, one transaction,
identified by its breach number `seq`: the store refuses a seq already recorded, also to a
second agent sharing the store), and only then is the tier notified. Notifications go through
an outbox kept on the timeline: once the notifier has delivered (or dead-lettered) a message,
a `notified` event is appended, naming (kind, seq): seq is the breach number of an
escalation, the reopen count of an opening, the event id of a resolution; messages carry
it. Each check re-sends what has an `opened`/`reopened`/`escalated`/`fault_resolved` event
but no `notified` one. So a crash between recording and notifying repeats (at most) a
notification, never skips or doubles an escalation, and no notification is lost; receivers
deduplicate on (key, kind, seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.escalation import (
    Escalation,
    Policy,
    TicketTimes,
    builtin_policy,
    deadline,
    due_escalations,
)
from agent.notify import Message, Notifier
from agent.ticket_metrics import TicketMetrics
from agent.tickets.models import Ticket, TicketEvent
from agent.tickets.store import (
    UNREACHABLE,
    AlreadyEscalated,
    TicketFilter,
    TicketStore,
    unreachable_reason,
)
from rules.faults import Fault, load_json, save_json

log = logging.getLogger("vigil.ticketing")

PAGE = 500
TICK = 1.0  # seconds between notifier flushes
STORM_LOG = 20  # more tickets than this in one cycle: one log line, not one per ticket


@dataclass
class _Outgoing:
    """A submitted message waiting to be delivered before it is marked `notified`."""

    ticket_id: int
    kind: str
    seq: int
    channels: list[str]
    waiting: set[str]  # channels whose delivery is not over yet


PENDING_FILE = "tickets-pending.json"


def _load_pending(path: Path) -> dict[str, float | None]:
    data = load_json(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        log.error("%s: not a map of fault key to resolution time; ignored", path)
        return {}
    if data:
        log.info("%d fault resolutions from before the restart wait for the ticket store",
                 len(data))
    return {str(k): (float(v) if isinstance(v, int | float) else None)
            for k, v in data.items()}


class TicketRunner:
    def __init__(self, config: Config, store: TicketStore, notifier: Notifier,
                 clock: Callable[[], float] = time.time,
                 metrics: TicketMetrics | None = None) -> None:
        self.store = store
        self.metrics = metrics
        notifier.on_done = self._delivered
        if metrics is not None:
            store.listeners.append(metrics.changed)
        self.notifier = notifier
        self.clock = clock
        self.config = config
        self.policy: Policy = config.escalation or builtin_policy()
        self.ready = False  # the store is open (migrated)
        self.ticketed: set[str] = set()  # fault keys known to have a ticket that is not closed
        # resolutions not yet recorded (the store unreachable), kept in state_dir so that a
        # restart during an outage loses none
        self._pending = Path(config.settings.state_dir) / PENDING_FILE
        self._resolved: dict[str, float | None] = _load_pending(self._pending)
        self._outgoing: dict[tuple[int, str, int], _Outgoing] = {}
        self._task: asyncio.Task | None = None
        self._last_check: float | None = None
        self._last_attempt: float | None = None
        self._failing = False
        self._down: set[str] = set()  # operations that failed for want of the database

    # -- configuration --------------------------------------------------------------------

    def adopt(self, config: Config) -> None:
        """A reloaded configuration: new policy, interval and links; the store's URL and the
        channels apply at the next restart."""
        old = self.config.settings
        new = config.settings
        if new.tickets.url != old.tickets.url:
            log.warning("tickets.url changed: restart the agent to apply it")
        if new.notifications != old.notifications:
            log.warning("notification channels changed: restart the agent to apply them")
        self.config = config
        self.policy = config.escalation or builtin_policy()

    # -- store ----------------------------------------------------------------------------

    async def open_store(self) -> bool:
        """Migrate and open the store; on failure log why and return False (retried)."""
        self._last_attempt = self.clock()
        try:
            if self.store.sqlite and self.store.url.database:
                Path(self.store.url.database).parent.mkdir(parents=True, exist_ok=True)
            await self.store.start()
        except Exception as exc:  # noqa: BLE001  # any driver error: keep polling, retry
            if not self._failing:
                log.error("cannot open the ticket store %s: %s; faults are still graded, "
                          "tickets wait until it opens (retried every %gs)",
                          self.store.url.render_as_string(hide_password=True), exc,
                          self.config.settings.tickets.escalation_interval)
            self._failing = True
            if self.metrics is not None:
                self.metrics.store_up = 0
            return False
        if self._failing:
            log.info("ticket store open")
        self._failing = False
        self.ready = True
        if self.metrics is not None:
            self.metrics.store_up = 1
        if not any(tier.channels for tier in self.policy.tiers):
            log.warning("no escalation tier has a notification channel: tickets open and "
                        "escalate, nobody is notified")
        return True

    def clock_jumped(self, jump: float) -> None:
        """The wall clock stepped (agent/clock.py): the escalation check keeps its interval
        (a step back would otherwise stop it for the step's length). Time limits stay on the
        wall clock: they are the contract's."""
        if self._last_check is not None:
            self._last_check += jump
        if self._last_attempt is not None:
            self._last_attempt += jump
        self.notifier.clock_jumped(jump)

    def _failed(self, what: str, exc: BaseException, operation: str = "tick") -> None:
        """A store operation failed. The database out of reach (a link or server down, its
        disk full) is said once per outage, without a traceback, and the store reported down;
        anything else is a bug and logged in full."""
        if not isinstance(exc, UNREACHABLE):
            log.error("%s", what, exc_info=exc)
            return
        if not self._down:
            log.error("ticket store unreachable (%s): %s; faults are still graded, tickets "
                      "wait and are retried", unreachable_reason(exc), what)
        self._down.add(operation)
        if self.metrics is not None:
            self.metrics.store_up = 0

    def _reached(self, operation: str = "tick") -> None:
        """`operation` worked again; the outage is over when every operation that failed has
        (reads working while writes fail, as on a full disk, is still an outage)."""
        if operation not in self._down:
            return
        self._down.discard(operation)
        if not self._down:
            log.info("ticket store reachable again: what waited is being written")
            if self.metrics is not None:
                self.metrics.store_up = 1

    # -- faults -> tickets ----------------------------------------------------------------

    async def on_cycle(self, changed: Iterable[Fault], active: Iterable[Fault]) -> None:
        """After a rules cycle: record resolutions; open tickets of firing, unsuppressed
        faults. What the store refused is tried again next cycle."""
        if not self.ready:
            return
        changed = list(changed)
        resolved = [f for f in changed if f.state == "resolved"]
        for fault in resolved:
            self.ticketed.discard(fault.key)
            self._resolved[fault.key] = fault.resolved_at
        if resolved:
            self._save_pending()
        await self._record_resolutions()
        fired_now = {f.key for f in changed if f.state == "firing"}
        wanted = [f for f in active if f.state == "firing" and f.suppressed is None
                  and f.key not in self.ticketed]
        if not wanted:
            return
        try:
            returning = [f.key for f in wanted if f.key not in fired_now]
            if returning:  # at start, or no longer suppressed: its ticket may exist
                existing = await self.store.open_keys(returning)
                self.ticketed |= existing
                wanted = [f for f in wanted if f.key not in existing]
            opened = await self.store.open_for_faults(wanted)
        except Exception as exc:  # noqa: BLE001  # tried again next cycle
            self._failed(f"cannot open tickets for {len(wanted)} faults (tried again next "
                         f"cycle)", exc, "open")
            return
        self._reached("open")
        new = 0
        for fault, result in zip(wanted, opened, strict=True):
            self.ticketed.add(fault.key)
            ticket = result.ticket
            if result.outcome == "existing":
                continue
            new += 1
            if len(opened) <= STORM_LOG:
                log.info("ticket %d %s for %s (level %d)", ticket.id, result.outcome,
                         fault.key, ticket.level)
            since = _at(fault.fired_at) if fault.fired_at else ticket.cycle_started_at
            self._send_opened(ticket, since, ticket.level)
        if len(opened) > STORM_LOG:
            log.info("%d tickets opened or reopened for %d faults", new, len(opened))

    async def _record_resolutions(self) -> None:
        if not self._resolved:
            return
        pending = dict(self._resolved)
        try:
            results = await self.store.faults_resolved(pending)
        except Exception as exc:  # noqa: BLE001  # kept, recorded when the store is back
            self._failed(f"cannot record {len(pending)} fault resolutions yet (kept until the "
                         f"ticket store can be written)", exc, "resolve")
            return
        self._reached("resolve")
        for key, result in zip(pending, results, strict=True):
            self._resolved.pop(key, None)
            if result is not None:
                ticket, event = result
                self._send_resolved(ticket, event)
        self._save_pending()

    def _save_pending(self) -> None:
        """Write the resolutions still to record (a crash right after recording them keeps
        them here: the store records a resolution once, see TicketStore.faults_resolved)."""
        try:
            if self._resolved:
                save_json(self._pending, self._resolved)
            else:
                self._pending.unlink(missing_ok=True)
        except OSError as exc:
            log.error("cannot keep %d pending fault resolutions in %s: %s", len(self._resolved),
                      self._pending, exc)

    # -- escalation -----------------------------------------------------------------------

    async def check(self) -> int:
        """Escalate every ticket past a limit and re-send unconfirmed notifications.
        Returns the number of escalations recorded."""
        if not self.ready:
            return 0
        now = _at(self.clock())
        done, offset = 0, 0
        try:
            await self._record_resolutions()
            while True:
                page = await self.store.list(TicketFilter(
                    not_closed=True, agent_id=self.store.agent_id, limit=PAGE, offset=offset))
                events = await self.store.cycle_events_of([t.id for t in page])
                for ticket in page:
                    try:
                        done += await self._check_ticket(ticket, events[ticket.id], now)
                    except UNREACHABLE:
                        raise                   # the whole check waits for the store
                    except Exception as exc:  # noqa: BLE001  # a bug: the others go on
                        self._failed(f"escalation check of ticket {ticket.id} failed", exc)
                if len(page) < PAGE:
                    break
                offset += PAGE
            if self.metrics is not None:
                self.metrics.counts = await self.store.open_counts(self.store.agent_id)
        except Exception:
            if self.metrics is not None:
                self.metrics.store_up = 0
            raise
        return done

    async def _check_ticket(self, ticket: Ticket, events: list[TicketEvent],
                            now: datetime) -> int:
        fired = [e for e in (_escalation(ev) for ev in events) if e is not None]
        done = 0
        if ticket.state not in ("resolved", "confirmed"):
            times = TicketTimes(ticket.cycle_started_at, ticket.acknowledged_at,
                                ticket.resolved_at)
            level = fired[0].from_level if fired else ticket.level
            for esc in due_escalations(times, level, self.policy, now, fired):
                try:  # recorded FIRST: a crash after this repeats a message, never a breach
                    ticket = await self.store.escalate(ticket.id, self.store.actor,
                                                       esc.to_level, _escalation_data(esc))
                except AlreadyEscalated:  # another agent sharing the store was first
                    break
                log.warning("ticket %d escalated (%s limit %s missed): level %d -> %d, "
                            "notifying %s", ticket.id, esc.breach, esc.limit,
                            esc.from_level, esc.to_level, esc.tier)
                if self.metrics is not None:
                    self.metrics.escalations.labels(esc.breach, str(esc.to_level)).inc()
                fired.append(esc)
                done += 1
        notified = {(e.data.get("kind"), e.data.get("seq", 0)) for e in events
                    if e.kind == "notified"}
        if ("opened", ticket.reopen_count) not in notified:
            opened = next((e for e in events if e.kind == "opened"), None)
            fired_at = opened.data.get("fired_at") if opened is not None else None
            level = opened.data.get("level") if opened is not None else None
            since = datetime.fromisoformat(fired_at) if fired_at else ticket.cycle_started_at
            self._send_opened(ticket, since, int(level or ticket.level))
        for esc in fired:
            if ("escalated", esc.seq) not in notified:
                self._send_escalated(ticket, esc)
        for event in events:
            if event.kind == "fault_resolved" and ("resolved", event.id) not in notified:
                self._send_resolved(ticket, event)
        return done

    # -- notifications (outbox) -----------------------------------------------------------

    def _send_opened(self, ticket: Ticket, since: datetime, level: int) -> None:
        """'opened' (seq: the reopen count) to the first tier of the level it opened at."""
        if level not in self.policy.levels:
            return
        tier = self.policy.tiers[self.policy.first_tier(level)]
        limits = self.policy.limits(level)
        due = deadline(ticket.cycle_started_at, limits.respond, self.policy.calendar_of(level))
        self._submit(ticket, "opened", ticket.reopen_count, tier.channels, level, since, due)

    def _send_escalated(self, ticket: Ticket, esc: Escalation) -> None:
        try:
            tier = self.policy.tier(esc.tier)
        except KeyError:  # renamed since: the last tier
            tier = self.policy.tiers[-1]
        limits = self.policy.limits(esc.to_level)
        limit = limits.respond if ticket.acknowledged_at is None else limits.repair
        due = deadline(esc.at, limit, self.policy.calendar_of(esc.to_level))
        self._submit(ticket, "escalated", esc.seq, tier.channels, esc.to_level,
                     ticket.cycle_started_at, due)

    def _send_resolved(self, ticket: Ticket, event: TicketEvent) -> None:
        """'resolved' (seq: the event's id) to the first tier of the ticket's level: the
        device is healthy again, the repair is still to be recorded."""
        if ticket.level not in self.policy.levels:
            return
        tier = self.policy.tiers[self.policy.first_tier(ticket.level)]
        limits = self.policy.limits(ticket.level)
        due = deadline(ticket.cycle_started_at, limits.repair,
                       self.policy.calendar_of(ticket.level))
        self._submit(ticket, "resolved", event.id, tier.channels, ticket.level,
                     ticket.cycle_started_at, due)

    def _submit(self, ticket: Ticket, kind: str, seq: int, channels: list[str], level: int,
                since: datetime, due: datetime) -> None:
        key = (ticket.id, kind, seq)
        channels = [c for c in channels if c in self.notifier.channels]
        if not channels or key in self._outgoing:
            return
        inventory = self.config.inventory
        site = inventory.sites.get(ticket.site)
        device = inventory.subjects.get(ticket.device)  # devices and earthing points
        settings = self.config.settings
        base = settings.tickets.link_base or f"http://{settings.listen}/api/v1"
        message = Message(
            kind=kind, key=ticket.fault_key, seq=seq, ticket=str(ticket.id), site=ticket.site,
            site_name=site.name if site else "", device=ticket.device,
            device_name=device.name if device else "", level=level,
            what_zh=ticket.title_zh or ticket.title_en, what_en=ticket.title_en,
            since=since, deadline=due, link=f"{base}/tickets/{ticket.id}", at=self.clock())
        self._outgoing[key] = _Outgoing(ticket.id, kind, seq, channels, set(channels))
        self.notifier.submit(message, channels)

    def _delivered(self, message: Message, channel: str) -> None:
        """The notifier is done with `message` on `channel` (delivered or dead-lettered).
        Messages without a ticket (relayed from Alertmanager) have no outbox mark."""
        if not message.ticket.isdigit():
            return
        out = self._outgoing.get((int(message.ticket), message.kind, message.seq))
        if out is not None:
            out.waiting.discard(channel)

    async def flush(self, force: bool = False) -> None:
        """Send what is due (everything if `force`); mark each message whose deliveries are
        all over as `notified`, in one transaction."""
        await self.notifier.flush(force)
        sent = {key: out for key, out in self._outgoing.items() if not out.waiting}
        if not sent:
            return
        try:
            await self.store.record_many([
                (out.ticket_id, "notified", {"kind": out.kind, "seq": out.seq,
                                             "channels": out.channels})
                for out in sent.values()])
        except Exception as exc:  # noqa: BLE001  # sent again after the next check
            self._failed(f"cannot record {len(sent)} notifications as sent (sent again: at "
                         f"least once)", exc, "notified")
            return
        self._reached("notified")
        for key in sent:
            del self._outgoing[key]

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def tick(self) -> None:
        """One turn of the timer: open the store if it is not, check escalations when due,
        flush notifications."""
        now = self.clock()
        interval = self.config.settings.tickets.escalation_interval
        if not self.ready and (self._last_attempt is None
                               or now - self._last_attempt >= interval):
            await self.open_store()
        if self.ready and (self._last_check is None or now - self._last_check >= interval):
            self._last_check = now
            await self.check()
        await self.flush()

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001  # survive a bug or a database outage
                self._failed("ticket processing failed", exc)
            else:
                if self.ready:
                    self._reached()
            await asyncio.sleep(TICK)

    async def close(self, grace: float = 5.0) -> None:
        """Stop the timer, send what is pending (for at most `grace` seconds: what is left is
        sent again after the restart), close the store."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.ready:
            try:
                await asyncio.wait_for(self.flush(force=True), grace)
            except TimeoutError:
                log.warning("pending notifications not all sent at stop; sent again at start")
            except Exception:
                log.exception("flushing notifications at stop failed")
        await self.notifier.close()
        await self.store.dispose()


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _escalation_data(esc: Escalation) -> dict[str, Any]:
    return {"seq": esc.seq, "breach": esc.breach, "at": esc.at.isoformat(), "tier": esc.tier,
            "limit": esc.limit}


def _escalation(event: TicketEvent) -> Escalation | None:
    """An escalation recorded by the ticket runner (with a seq), back from the timeline."""
    d = event.data
    if event.kind != "escalated" or "seq" not in d:
        return None
    return Escalation(seq=int(d["seq"]), breach=d["breach"], at=datetime.fromisoformat(d["at"]),
                      from_level=int(d["from_level"]), to_level=int(d["to_level"]),
                      tier=d["tier"], limit=d["limit"])
