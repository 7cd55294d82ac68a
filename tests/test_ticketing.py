"""The ticket stage: faults open tickets, breaches escalate once, tiers are notified.

Real SQLite files and a real aiohttp webhook receiver on loopback; the clock is injected, so
"two hours later" takes no time. PostgreSQL coverage of the store is in test_ticket_store.py.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from agent.config import Config, load_config
from agent.escalation import builtin_policy, load_policy
from agent.notify import MemoryDeadLetters, Notifier
from agent.ticketing import TicketRunner
from agent.tickets.store import TicketStore
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


def site_config(tmp: Path, port: int) -> Config:
    hooks = "\n".join(f"    - {{name: hook-{n}, type: webhook, url: 'http://127.0.0.1:{port}/"
                      f"{n}', storm_window: 0, attempts: 1}}" for n in ("tech", "lead", "mgr"))
    path = write_site(tmp, GOOD, agent=f"agent: {{id: test}}\nstate_dir: state\n"
                                       f"rules: {{files: []}}\nnotifications:\n"
                                       f"  channels:\n{hooks}\n")
    (tmp / "escalation.yaml").write_text(POLICY)
    return load_config(path)


@pytest.fixture
def config(tmp_path: Path, receiver: Receiver) -> Config:
    return site_config(tmp_path, receiver.port)


def make_runner(config: Config, clock: Clock) -> TicketRunner:
    settings = config.settings
    store = TicketStore(settings.tickets.url, settings.agent.id, clock,
                        reopen_window=settings.tickets.reopen_window)
    notifier = Notifier(list(settings.notifications.channels), clock=clock,
                        dead_letters=MemoryDeadLetters())
    return TicketRunner(config, store, notifier, clock)


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
