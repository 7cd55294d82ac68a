"""The ticket stage: faults open tickets, breaches escalate once, tiers are notified.

Real SQLite files and a real PostgreSQL (each runner test runs on both), a real aiohttp
webhook receiver on loopback; the clock is injected, so "two hours later" takes no time.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.config import Config, load_config
from agent.escalation import builtin_policy, load_policy
from agent.notify import MemoryDeadLetters, Notifier
from agent.ticket_metrics import TicketMetrics
from agent.ticketing import TicketRunner
from agent.tickets.store import TicketFilter, TicketStore
from rules.faults import Fault
from tests.test_config import GOOD, errors_of, write_site

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC).timestamp()  # a Monday, 10:00 in Shanghai
HOUR = 3600.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Receiver:
    """A webhook receiver on loopback: every JSON body posted, by path."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict]] = {}
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.setdefault(request.path, []).append(await request.json())
        return web.Response(text="ok")

    def on(self, path: str) -> list[dict]:
        return self.bodies.get(path, [])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{name}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield rec
    finally:
        await runner.cleanup()


POLICY = """\
tiers:
  - {name: technician, channels: [hook-tech]}
  - {name: team_lead, channels: [hook-lead]}
  - {name: contractor_manager, channels: [hook-mgr]}
  - {name: owner}
levels:
  1: {respond: 15m, repair: 4h}
  2: {respond: 30m, repair: 8h}
  3: {respond: 2h, repair: 24h}
  4: {respond: 4h, repair: 48h}
"""


def site_config(tmp: Path, port: int, url: str, storm_window: str = "0",
                agent_id: str = "test") -> Config:
    hooks = "\n".join(f"    - {{name: hook-{n}, type: webhook, url: 'http://127.0.0.1:{port}/"
                      f"{n}', storm_window: {storm_window}, attempts: 1}}"
                      for n in ("tech", "lead", "mgr"))
    path = write_site(tmp, GOOD, agent=f"agent: {{id: {agent_id}}}\nstate_dir: state\n"
                                       f"rules: {{files: []}}\ntickets: {{url: '{url}'}}\n"
                                       f"notifications:\n  channels:\n{hooks}\n")
    (tmp / "escalation.yaml").write_text(POLICY)
    return load_config(path)


@pytest.fixture
def config(tmp_path: Path, receiver: Receiver, db_url: str) -> Config:
    """A site whose tickets live in SQLite, then (second run) in PostgreSQL."""
    return site_config(tmp_path, receiver.port, db_url)


def make_runner(config: Config, clock: Clock, busy_timeout: float = 30.0,
                registry: CollectorRegistry | None = None) -> TicketRunner:
    settings = config.settings
    store = TicketStore(settings.tickets.url, settings.agent.id, clock,
                        reopen_window=settings.tickets.reopen_window,
                        busy_timeout=busy_timeout)
    notifier = Notifier(list(settings.notifications.channels), clock=clock,
                        dead_letters=MemoryDeadLetters(), registry=registry)
    return TicketRunner(config, store, notifier, clock,
                        TicketMetrics(registry) if registry is not None else None)


@pytest.fixture
async def started(config: Config) -> AsyncIterator[tuple[TicketRunner, Clock]]:
    clock = Clock()
    runner = make_runner(config, clock)
    assert await runner.open_store()
    try:
        yield runner, clock
    finally:
        await runner.close()


def fault(key: str = "CameraOffline:cam-1", level: int = 3, state: str = "firing",
          fired_at: float = T0) -> Fault:
    return Fault(key=key, rule="CameraOffline", group="cameras", subject="cam-1",
                 device="cam-1", site="room", kind="ptz_camera", series={}, labels={},
                 level=level, state=state, pending_since=fired_at - 60, last_seen=fired_at,
                 fired_at=fired_at,
                 texts={"summary": {"zh": "摄像机离线", "en": "camera offline"}})


async def kinds(runner: TicketRunner, ticket_id: int) -> list[str]:
    return [e.kind for e in await runner.store.timeline(ticket_id)]


async def test_firing_fault_opens_one_ticket_and_tells_the_first_tier(started, receiver):
    runner, _ = started
    f = fault()
    await runner.on_cycle([f], [f])
    for _ in range(5):  # later cycles: the fault is still firing, nothing changed
        await runner.on_cycle([], [f])
    runner.ticketed.clear()  # as after a restart: the store is asked, nothing new opened
    await runner.on_cycle([], [f])
    tickets = await runner.store.list()
    assert len(tickets) == 1 and tickets[0].level == 3 and tickets[0].fault_key == f.key
    await runner.flush()
    [body] = receiver.on("/tech")
    [message] = body["messages"]
    assert (message["kind"], message["key"], message["ticket"], message["level"]) == \
        ("opened", f.key, str(tickets[0].id), 3)
    assert message["site_name"] == "机房" and message["what_zh"] == "摄像机离线"
    assert message["deadline"].startswith("2026-03-02T04:00:00")  # respond within 2 h
    assert receiver.on("/lead") == []
    assert await kinds(runner, tickets[0].id) == ["opened", "notified"]
    await runner.check()  # the outbox knows it was sent: not sent again
    await runner.flush()
    assert len(receiver.on("/tech")) == 1


async def test_caused_fault_opens_nothing_until_it_stands_alone(started, receiver):
    runner, _ = started
    f = fault()
    f.caused_by = "SwitchDown:sw-1"
    await runner.on_cycle([f], [f])
    silenced = fault("CameraOffline:cam-2")
    silenced.silenced_by = "maintenance window"
    await runner.on_cycle([silenced], [f, silenced])
    assert await runner.store.list() == []
    f.caused_by = None  # the root fault resolved, this one still fires
    await runner.on_cycle([], [f, silenced])
    [ticket] = await runner.store.list()
    assert ticket.fault_key == f.key


async def test_resolution_is_recorded_but_does_not_close(started):
    runner, clock = started
    f = fault()
    await runner.on_cycle([f], [f])
    clock.t += 600
    f.state, f.resolved_at = "resolved", clock.t
    await runner.on_cycle([f], [])
    [ticket] = await runner.store.list()
    assert ticket.state == "open"
    assert "fault_resolved" in await kinds(runner, ticket.id)


async def test_breach_escalates_once_and_a_restart_does_not_repeat_it(config, receiver):
    clock = Clock()
    runner = make_runner(config, clock)
    assert await runner.open_store()
    f = fault()
    await runner.on_cycle([f], [f])
    await runner.tick()  # the check at start: nothing due yet
    clock.t = T0 + 2 * HOUR + 1  # past level 3's response limit
    assert await runner.check() == 1
    await runner.flush()
    [ticket] = await runner.store.list()
    assert ticket.level == 2
    [body] = receiver.on("/lead")
    [message] = body["messages"]
    assert (message["kind"], message["level"]) == ("escalated", 2)
    # level 2's 30 min respond limit counts from the breach (T0 + 2 h)
    assert message["deadline"].startswith("2026-03-02T04:30:00")
    for _ in range(3):
        assert await runner.check() == 0
        await runner.flush()
    assert len(receiver.on("/lead")) == 1
    await runner.close()

    clock.t += 60  # a new agent process on the same SQLite file
    again = make_runner(config, clock)
    assert await again.open_store()
    await again.on_cycle([], [f])
    assert await again.check() == 0
    await again.flush()
    assert len(receiver.on("/lead")) == 1 and receiver.on("/mgr") == []
    [ticket] = await again.store.list()
    assert ticket.level == 2
    events = [e.kind for e in await again.store.timeline(ticket.id)]
    assert events.count("escalated") == 1 and events.count("notified") == 2
    # the next breach (level 2 respond: 30 min from the first breach) goes to the next tier
    clock.t = T0 + 2.5 * HOUR + 1
    assert await again.check() == 1
    await again.flush()
    assert len(receiver.on("/mgr")) == 1 and len(receiver.on("/lead")) == 1
    await again.close()


async def test_crash_between_escalation_and_notification_resends_it(config, receiver):
    clock = Clock()
    runner = make_runner(config, clock)
    assert await runner.open_store()
    f = fault()
    await runner.on_cycle([f], [f])
    await runner.flush()
    clock.t = T0 + 2 * HOUR + 1
    assert await runner.check() == 1  # recorded, message submitted but never flushed
    await runner.store.dispose()  # killed here: the notifier's buffer is lost

    again = make_runner(config, clock)
    assert await again.open_store()
    assert await again.check() == 0  # not escalated twice ...
    await again.flush()
    assert len(receiver.on("/lead")) == 1  # ... and the tier still hears of it, once
    [ticket] = await again.store.list()
    assert ticket.level == 2
    await again.close()


async def test_acknowledging_in_time_prevents_the_response_breach(started, receiver):
    runner, clock = started
    f = fault()
    await runner.on_cycle([f], [f])
    [ticket] = await runner.store.list()
    clock.t = T0 + HOUR
    await runner.store.acknowledge(ticket.id, "tech:wang")
    clock.t = T0 + 2 * HOUR + 1
    assert await runner.check() == 0
    await runner.flush()
    assert receiver.on("/lead") == []
    assert (await runner.store.get(ticket.id)).level == 3
    clock.t = T0 + 24 * HOUR + 1  # the repair limit still runs
    assert await runner.check() == 1


async def test_store_that_cannot_open_leaves_faults_alone(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    path = write_site(tmp_path, GOOD, agent=f"agent: {{id: test}}\nstate_dir: state\n"
                                            f"rules: {{files: []}}\ntickets:\n"
                                            f"  url: sqlite+aiosqlite:///{blocker}/t.db\n")
    config = load_config(path)
    clock = Clock()
    runner = make_runner(config, clock)
    assert not await runner.open_store()
    assert "cannot open the ticket store" in caplog.text
    f = fault()
    await runner.on_cycle([f], [f])  # nothing happens, nothing raises
    await runner.tick()  # retried only after escalation_interval
    assert not runner.ready
    await runner.close()


def test_defaults_without_tickets_config(tmp_path):
    config = load_config(write_site(tmp_path, GOOD, agent="agent: {id: test}\n"
                                                          "state_dir: state\n"))
    tickets = config.settings.tickets
    assert tickets.enabled and tickets.escalation_interval == 30
    assert tickets.url == f"sqlite+aiosqlite:///{tmp_path / 'state' / 'tickets.db'}"
    assert config.escalation == builtin_policy()
    off = load_config(write_site(tmp_path, GOOD, agent="agent: {id: test}\n"
                                                       "tickets: {enabled: false}\n"))
    assert off.escalation is None


def test_builtin_policy_has_the_shipped_limits():
    shipped, builtin = load_policy(REPO / "config" / "escalation.yaml"), builtin_policy()
    assert shipped.levels == builtin.levels and shipped.calendars == builtin.calendars
    assert [t.name for t in shipped.tiers] == [t.name for t in builtin.tiers]


def test_tier_channels_must_be_defined(tmp_path):
    path = write_site(tmp_path, GOOD, agent="agent: {id: test}\nnotifications:\n  channels:\n"
                                            "    - {name: hook-tech, type: webhook, "
                                            "url: 'http://127.0.0.1:1/'}\n")
    (tmp_path / "escalation.yaml").write_text(POLICY)
    errors = errors_of(path)
    assert any("escalation.yaml:3 tiers[1].channels[0]: unknown channel 'hook-lead'" in e
               for e in errors), errors
    assert not any("unknown channel 'hook-tech'" in e for e in errors)


def test_missing_named_policy_and_duplicate_channels(tmp_path):
    path = write_site(tmp_path, GOOD, agent=textwrap.dedent("""\
        agent: {id: test}
        tickets: {escalation: policy/contract.yaml}
        notifications:
          channels:
            - {name: a, type: webhook, url: 'http://127.0.0.1:1/'}
            - {name: a, type: webhook, url: 'http://127.0.0.1:2/'}
        """))
    errors = errors_of(path)
    assert any("notifications.channels: " in e and "defined twice: a" in e for e in errors), \
        errors
    (tmp_path / "agent.yaml").write_text(
        "agent: {id: test}\ntickets: {escalation: policy/contract.yaml}\n")
    errors = errors_of(path)
    assert any("agent.yaml:2 tickets.escalation: file" in e and "does not exist" in e
               for e in errors), errors


def test_example_config_defines_every_channel_of_the_shipped_policy():
    policy = yaml.safe_load((REPO / "config" / "escalation.yaml").read_text())
    agent = yaml.safe_load((REPO / "config" / "agent.yaml").read_text())
    defined = {c["name"] for c in agent["notifications"]["channels"]}
    assert {c for t in policy["tiers"] for c in t["channels"]} <= defined


async def test_storm_opens_every_ticket_and_sends_one_message_per_channel(
        tmp_path, receiver, db_url):
    config = site_config(tmp_path, receiver.port, db_url, storm_window="2s")
    clock = Clock()
    runner = make_runner(config, clock)
    assert await runner.open_store()
    storm = [fault(f"CameraOffline:cam-{i}") for i in range(1000)]
    await runner.on_cycle(storm, storm)
    tickets = await runner.store.list(TicketFilter(limit=2000))
    assert sorted(t.fault_key for t in tickets) == sorted(f.key for f in storm)
    await runner.flush()
    assert receiver.on("/tech") == []  # held for the storm window
    clock.t += 2
    await runner.flush()
    [body] = receiver.on("/tech")
    assert (body["kind"], body["count"]) == ("storm", 1000)
    assert "1000" in body["subject"]
    events = await runner.store.cycle_events_of([t.id for t in tickets])
    assert all([e.kind for e in evs] == ["opened", "notified"] for evs in events.values())
    await runner.on_cycle([], storm)  # the next cycle: nothing new
    assert await runner.store.count() == 1000
    await runner.close()


async def test_resolution_and_return_are_announced_once(started, receiver):
    runner, clock = started
    f = fault()
    await runner.on_cycle([f], [f])
    await runner.flush()
    [ticket] = await runner.store.list()
    clock.t += 600
    f.state, f.resolved_at = "resolved", clock.t
    await runner.on_cycle([f], [])
    await runner.flush()
    opened, resolved = [b["messages"][0] for b in receiver.on("/tech")]
    assert (opened["kind"], opened["seq"]) == ("opened", 0)
    assert resolved["kind"] == "resolved" and resolved["key"] == f.key
    resolved_event = next(e for e in await runner.store.timeline(ticket.id)
                      if e.kind == "fault_resolved")
    assert resolved["seq"] == resolved_event.id
    store = runner.store
    for step in (lambda: store.acknowledge(ticket.id, "tech:wang"),
                 lambda: store.diagnose(ticket.id, "tech:wang", "PoE port dead"),
                 lambda: store.start_repair(ticket.id, "tech:wang"),
                 lambda: store.resolve(ticket.id, "tech:wang", "network", "moved to port 9")):
        await step()
    clock.t += 3600  # the repair did not hold: the fault fires again
    again = fault(fired_at=clock.t)
    await runner.on_cycle([again], [again])
    await runner.flush()
    reopened = receiver.on("/tech")[2]["messages"][0]
    assert (reopened["kind"], reopened["seq"], reopened["ticket"]) == \
        ("opened", 1, str(ticket.id))
    assert (await store.get(ticket.id)).state == "open"
    for _ in range(2):  # the outbox knows all three were sent
        await runner.check()
        await runner.flush()
    assert len(receiver.on("/tech")) == 3


async def test_resolution_waits_while_the_store_is_locked(tmp_path, receiver, caplog):
    """SQLite held by another writer past the busy timeout: the resolution is kept and
    recorded (and announced) once the store can be written again."""
    db = tmp_path / "tickets.db"
    config = site_config(tmp_path, receiver.port, f"sqlite+aiosqlite:///{db}")
    clock = Clock()
    runner = make_runner(config, clock, busy_timeout=0.2)
    assert await runner.open_store()
    f = fault()
    await runner.on_cycle([f], [f])
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process writing, for a long time
    try:
        clock.t += 60
        f.state, f.resolved_at = "resolved", clock.t
        await runner.on_cycle([f], [])
        assert "cannot record 1 fault resolutions yet" in caplog.text
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    [ticket] = await runner.store.list()
    assert "fault_resolved" not in await kinds(runner, ticket.id)
    await runner.check()
    await runner.flush()
    assert "fault_resolved" in await kinds(runner, ticket.id)
    assert [b["messages"][0]["kind"] for b in receiver.on("/tech")] == ["opened", "resolved"]
    await runner.close()


async def test_a_resolution_waiting_for_the_store_survives_a_restart(tmp_path, receiver):
    """The agent stops (or crashes) while a resolution waits for the store: the next start
    records it, once, and announces it."""
    db = tmp_path / "tickets.db"
    config = site_config(tmp_path, receiver.port, f"sqlite+aiosqlite:///{db}")
    clock = Clock()
    first = make_runner(config, clock, busy_timeout=0.2)
    assert await first.open_store()
    f = fault()
    await first.on_cycle([f], [f])
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        clock.t += 60
        f.state, f.resolved_at = "resolved", clock.t
        await first.on_cycle([f], [])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await first.store.dispose()           # gone, without recording it (a crash)
    pending = Path(config.settings.state_dir) / "tickets-pending.json"
    assert json.loads(pending.read_text()) == {f.key: clock.t}
    second = make_runner(config, clock)
    assert await second.open_store()
    await second.on_cycle([], [])
    [ticket] = await second.store.list()
    assert (await kinds(second, ticket.id)).count("fault_resolved") == 1
    assert not pending.exists()
    # recorded, then the agent died before forgetting it: the store does not record it twice
    again = await second.store.faults_resolved({f.key: f.resolved_at})
    assert again[0] is not None and again[0][1].kind == "fault_resolved"
    assert (await kinds(second, ticket.id)).count("fault_resolved") == 1
    await second.check()
    await second.flush()                  # the opening the first never sent, and the end
    assert sorted(b["messages"][0]["kind"] for b in receiver.on("/tech")) == \
        ["opened", "resolved"]
    await second.close()


async def test_metrics_of_backlog_escalations_and_response_times(config, receiver):
    registry = CollectorRegistry()
    clock = Clock()
    runner = make_runner(config, clock, registry=registry)
    assert await runner.open_store()
    value = registry.get_sample_value
    assert value("vigil_ticket_store_up") == 1
    faults = [fault(f"CameraOffline:cam-{i}") for i in range(3)]
    await runner.on_cycle(faults, faults)
    await runner.check()
    assert value("vigil_tickets", {"site": "room", "level": "3", "state": "open"}) == 3
    [first, second, _] = await runner.store.list()
    clock.t = T0 + 600
    await runner.store.acknowledge(first.id, "tech:wang")
    await runner.store.acknowledge(second.id, "tech:li")
    assert value("vigil_ticket_time_to_acknowledge_seconds_count", {"level": "3"}) == 2
    assert value("vigil_ticket_time_to_acknowledge_seconds_sum", {"level": "3"}) == 1200
    assert value("vigil_ticket_time_to_acknowledge_seconds_bucket",
                 {"level": "3", "le": "900.0"}) == 2
    clock.t = T0 + 2 * HOUR + 1  # the third missed level 3's 2 h response limit
    assert await runner.check() == 1
    await runner.flush()
    assert value("vigil_ticket_escalations_total", {"breach": "response", "to_level": "2"}) == 1
    assert value("vigil_tickets", {"site": "room", "level": "3", "state": "acknowledged"}) == 2
    assert value("vigil_tickets", {"site": "room", "level": "2", "state": "open"}) == 1
    assert value("vigil_notifications_sent_total", {"channel": "hook-lead"}) == 1
    store = runner.store
    await store.diagnose(first.id, "tech:wang", "lens fogged")
    await store.start_repair(first.id, "tech:wang")
    clock.t = T0 + 3 * HOUR
    await store.resolve(first.id, "tech:wang", "environment", "heater replaced", ["heater"])
    assert value("vigil_ticket_time_to_repair_seconds_sum", {"level": "3"}) == 3 * HOUR
    await runner.close()


async def test_two_agents_sharing_one_store_open_one_ticket_per_fault(
        tmp_path, receiver, db_url):
    """Two branch agents see the same faults at the same time (one device watched twice):
    one ticket each, one opening message each, one escalation each."""
    clock = Clock()
    runners = []
    for name in ("branch-a", "branch-b"):
        (tmp_path / name).mkdir()
        runners.append(make_runner(site_config(tmp_path / name, receiver.port, db_url,
                                               storm_window="1s", agent_id=name), clock))
    for runner in runners:
        assert await runner.open_store()
    storm = [fault(f"CameraOffline:cam-{i}") for i in range(50)]
    await asyncio.gather(*(r.on_cycle(storm, storm) for r in runners))
    tickets = await runners[0].store.list(TicketFilter(limit=100))
    assert sorted(t.fault_key for t in tickets) == sorted(f.key for f in storm)
    clock.t += 1
    await asyncio.gather(*(r.flush() for r in runners))
    clock.t = T0 + 2 * HOUR + 1
    for _ in range(2):
        await asyncio.gather(*(r.check() for r in runners))
        clock.t += 1
        await asyncio.gather(*(r.flush() for r in runners))
    opened = [m["key"] for b in receiver.on("/tech") for m in b["messages"]]
    escalated = [m["key"] for b in receiver.on("/lead") for m in b["messages"]]
    assert sorted(opened) == sorted(escalated) == sorted(f.key for f in storm)
    for ticket in await runners[0].store.list(TicketFilter(limit=100)):
        events = [e.kind for e in await runners[0].store.timeline(ticket.id)]
        assert events.count("opened") == 1 and events.count("escalated") == 1, events
    for runner in runners:
        await runner.close()
