"""The ticket stage of the daemon: faults -> tickets -> escalations -> notifications.

After every rules cycle (`on_cycle`, called by RulesRunner) each fault that fires and opens
something of its own (not caused by a root fault, silenced or inhibited) gets its ticket
(`TicketStore.open_for_fault`, idempotent); a new ticket is announced ('opened') to the first
tier of its level. A fault that resolves is recorded on its ticket's timeline (the ticket
stays open until the repair is recorded and confirmed). A fault that was suppressed and no
longer is, while still firing, gets its ticket then.

On a timer (`tickets.escalation_interval`, and once at start) every ticket that is not closed
is checked against the escalation policy from its stored times and the escalations recorded
on its timeline (agent/escalation.py `due_escalations`).

Crash ordering. An escalation is recorded in the store FIRST (`escalate`, one transaction,
identified by its breach number `seq`: the store refuses a seq already recorded, also to a
second agent sharing the store), and only then is the tier notified. Notifications go through
an outbox kept on the timeline: once the notifier has delivered (or dead-lettered) a message,
a `notified` event is appended. Each check re-sends what has an `opened`/`escalated` event but
no `notified` one. So a crash between recording and notifying repeats (at most) a
notification, never skips or doubles an escalation, and no notification is lost; receivers
deduplicate on the fault key.
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
from agent.tickets.models import Ticket, TicketEvent
from agent.tickets.store import AlreadyEscalated, TicketFilter, TicketStore
from rules.faults import Fault

log = logging.getLogger("vigil.ticketing")

PAGE = 500
TICK = 1.0  # seconds between notifier flushes


@dataclass
class _Outgoing:
    """A submitted message waiting to be delivered before it is marked `notified`."""

    ticket_id: int
    kind: str
    seq: int
    channels: list[str]
    due: float  # the notifier has sent it once a flush started at or after this time


class TicketRunner:
    def __init__(self, config: Config, store: TicketStore, notifier: Notifier,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self.config = config
        self.policy: Policy = config.escalation or builtin_policy()
        self.ready = False  # the store is open (migrated)
        self.ticketed: set[str] = set()  # fault keys known to have a ticket that is not closed
        self._outgoing: dict[tuple[int, str, int], _Outgoing] = {}
        self._task: asyncio.Task | None = None
        self._last_check: float | None = None
        self._last_attempt: float | None = None
        self._failing = False

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
            return False
        if self._failing:
            log.info("ticket store open")
        self._failing = False
        self.ready = True
        if not any(tier.channels for tier in self.policy.tiers):
            log.warning("no escalation tier has a notification channel: tickets open and "
                        "escalate, nobody is notified")
        return True

    # -- faults -> tickets ----------------------------------------------------------------

    async def on_cycle(self, changed: Iterable[Fault], active: Iterable[Fault]) -> None:
        """After a rules cycle: open tickets of firing, unsuppressed faults; record
        resolutions. Faults whose store call failed are tried again next cycle."""
        if not self.ready:
            return
        changed = list(changed)
        for fault in changed:
            if fault.state == "resolved":
                self.ticketed.discard(fault.key)
                try:
                    await self.store.fault_resolved(fault.key, fault.resolved_at)
                except Exception:
                    log.exception("cannot record the resolution of %s", fault.key)
        fired_now = {f.key for f in changed if f.state == "firing"}
        for fault in active:
            if fault.state != "firing" or fault.suppressed is not None \
                    or fault.key in self.ticketed:
                continue
            try:
                if fault.key not in fired_now:  # at start, or no longer suppressed
                    existing = await self.store.find_open(fault.key)
                    if existing is not None:
                        self.ticketed.add(fault.key)
                        continue
                ticket, created = await self.store.open_for_fault(fault)
            except Exception:
                log.exception("cannot open a ticket for %s (tried again next cycle)",
                              fault.key)
                continue
            self.ticketed.add(fault.key)
            if created:
                log.info("ticket %d opened for %s (level %d)", ticket.id, fault.key,
                         ticket.level)
                since = _at(fault.fired_at) if fault.fired_at else ticket.opened_at
                self._send_opened(ticket, since)

    # -- escalation -----------------------------------------------------------------------

    async def check(self) -> int:
        """Escalate every ticket past a limit and re-send unconfirmed notifications.
        Returns the number of escalations recorded."""
        if not self.ready:
            return 0
        now = _at(self.clock())
        done, offset = 0, 0
        while True:
            page = await self.store.list(TicketFilter(not_closed=True, limit=PAGE,
                                                      offset=offset))
            for ticket in page:
                try:
                    done += await self._check_ticket(ticket, now)
                except Exception:
                    log.exception("escalation check of ticket %d failed", ticket.id)
            if len(page) < PAGE:
                return done
            offset += PAGE

    async def _check_ticket(self, ticket: Ticket, now: datetime) -> int:
        events = await self.store.cycle_events(ticket.id)
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
                fired.append(esc)
                done += 1
        notified = {(e.data.get("kind"), e.data.get("seq", 0)) for e in events
                    if e.kind == "notified"}
        opened = next((e for e in events if e.kind == "opened"), None)
        if opened is not None and ("opened", 0) not in notified:
            fired_at = opened.data.get("fired_at")
            self._send_opened(ticket, datetime.fromisoformat(fired_at) if fired_at
                              else ticket.opened_at, level=opened.data.get("level"))
        for esc in fired:
            if ("escalated", esc.seq) not in notified:
                self._send_escalated(ticket, esc)
        return done

    # -- notifications (outbox) -----------------------------------------------------------

    def _send_opened(self, ticket: Ticket, since: datetime, level: int | None = None) -> None:
        level = int(level or ticket.original_level)
        if level not in self.policy.levels:
            return
        tier = self.policy.tiers[self.policy.first_tier(level)]
        limits = self.policy.limits(level)
        due = deadline(ticket.cycle_started_at, limits.respond, self.policy.calendar_of(level))
        self._submit(ticket, "opened", 0, tier.channels, level, since, due)

    def _send_escalated(self, ticket: Ticket, esc: Escalation) -> None:
        try:
            tier = self.policy.tier(esc.tier)
        except KeyError:  # renamed since: the last tier
            tier = self.policy.tiers[-1]
        limits = self.policy.limits(esc.to_level)
        limit = limits.respond if ticket.acknowledged_at is None else limits.repair
        due = deadline(esc.at, limit, self.policy.calendar_of(esc.to_level))
        self._submit(ticket, "escalated", esc.seq, tier.channels, esc.to_level,
                     ticket.opened_at, due)

    def _submit(self, ticket: Ticket, kind: str, seq: int, channels: list[str], level: int,
                since: datetime, due: datetime) -> None:
        key = (ticket.id, kind, seq)
        channels = [c for c in channels if c in self.notifier.channels]
        if not channels or key in self._outgoing:
            return
        inventory = self.config.inventory
        site = inventory.sites.get(ticket.site)
        device = inventory.devices.get(ticket.device)
        settings = self.config.settings
        base = settings.tickets.link_base or f"http://{settings.listen}/api/v1"
        message = Message(
            kind=kind, key=ticket.fault_key, ticket=str(ticket.id), site=ticket.site,
            site_name=site.name if site else "", device=ticket.device,
            device_name=device.name if device else "", level=level,
            what_zh=ticket.title_zh or ticket.title_en, what_en=ticket.title_en,
            since=since, deadline=due, link=f"{base}/tickets/{ticket.id}", at=self.clock())
        self.notifier.submit(message, channels)
        window = max(self.notifier.channels[c].storm_window for c in channels)
        self._outgoing[key] = _Outgoing(ticket.id, kind, seq, channels, self.clock() + window)

    async def flush(self, force: bool = False) -> None:
        """Send what is due; mark what was delivered (or dead-lettered) as `notified`."""
        started = self.clock()
        await self.notifier.flush(force)
        for key, out in list(self._outgoing.items()):
            if not force and out.due > started:
                continue
            try:
                await self.store.record(out.ticket_id, "notified",
                                        {"kind": out.kind, "seq": out.seq,
                                         "channels": out.channels})
            except Exception:
                log.exception("cannot record the notification of ticket %d", out.ticket_id)
                continue
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
            except Exception:  # the loop must survive a bug or a database outage
                log.exception("ticket processing failed")
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
