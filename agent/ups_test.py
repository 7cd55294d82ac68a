"""UPS battery (discharge) tests: start one over SNMP and follow it, or record a manual one;
keep each test's curve and result; feed the discharge-time trend to the rules.

Start: the checks come first and refuse with a reason (`Refused.reason`) before anything is
written to the device: not a UPS, its profile has no `battery_test`, no fresh readings, the
site is on battery (any UPS of the site reads `ups_on_battery` 1), another test runs in the
same site (one at a time per site: a second discharging UPS would leave the room with less
backup than the contract assumes), the UPS itself reports a test in progress, or the agent
refuses the SET. A refusal stores no test, only an audit entry. Then the test is followed
every `follow_interval` until the UPS reports a result; every sample (charge, voltage,
runtime, output source, result code) is kept as the curve.

Trend: per UPS and test kind (quick/deep; manual tests say which they were), the latest
test's discharge time against the one before; the drop is exported as readings of the
collector `ups_test` (`ups_discharge_drop_ratio`, ...) that the rules engine and /metrics
see like any poll result. The readings come from the store, never from the collectors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from agent.config import Config
from agent.plans import snmp_job
from agent.state import State
from agent.tickets.migrations import upgrade_to_head
from agent.tickets.models import Ticket, TicketEvent
from agent.tickets.store import UNREACHABLE, _sqlite_setup, unreachable_reason
from agent.ups_test_models import KINDS, UpsTest, UpsTestEvent
from collectors.reading import PollResult, Reading
from collectors.snmp.profile import BatteryTest, CompiledMetric
from collectors.snmp.set import SetError, SnmpWriter, present

log = logging.getLogger("vigil.ups_test")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

SUMMARY = {1: "pass", 2: "warning", 3: "error", 4: "aborted", 5: "in_progress", 6: "aborted"}
IN_PROGRESS = 5
TREND_RESULTS = ("pass", "warning", "error")
"""Results whose discharge time counts in the trend (an aborted test says nothing)."""
CURVE = {"ups_battery_charge_ratio": "charge", "ups_battery_volts": "volts",
         "ups_battery_runtime_seconds": "runtime", "ups_on_battery": "on_battery"}
COLLECTOR = "ups_test"

REFUSALS_ZH = {
    "not_ups": "该设备不是 UPS",
    "no_test_support": "该 UPS 不支持远程电池测试",
    "no_snmp": "该设备没有 SNMP 凭据，无法远程启动测试",
    "no_readings": "没有该 UPS 的最新读数，无法确认供电状态",
    "on_battery": "站点正在由电池供电，不能进行放电测试",
    "busy": "该站点已有一个 UPS 测试在进行",
    "set_refused": "UPS 拒绝了启动测试的 SNMP 写操作",
    "unreachable": "UPS 无响应",
}


class Refused(Exception):
    """A test not started (or a manual record not accepted), with its reason code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message_zh = REFUSALS_ZH.get(reason, "")


class NotFound(Exception):
    pass


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class UpsTestStore:
    """Tests and their audit trail in the ticket database (`url` as TicketStore's)."""

    def __init__(self, url: str, agent_id: str, clock: Clock = time.time,
                 migrate: bool = True) -> None:
        self.url, self.agent_id, self.clock, self.migrate = url, agent_id, clock, migrate
        self.engine = create_async_engine(url)
        if self.engine.url.get_backend_name() == "sqlite":
            _sqlite_setup(self.engine, 30.0, "BEGIN IMMEDIATE")
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def start(self) -> None:
        if self.migrate:
            await asyncio.to_thread(upgrade_to_head, self.url)

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def _write(self, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        async with self._sessions() as session, session.begin():
            return await work(session)

    async def _event(self, session: AsyncSession, device: str, actor: str, kind: str,
                     data: dict[str, Any], test_id: int | None = None) -> None:
        """On the UPS's audit trail, and on the timeline of each of its tickets not closed:
        whoever works a ticket sees every SNMP SET (and refusal) on the device under repair."""
        at = _at(self.clock())
        session.add(UpsTestEvent(test_id=test_id, device=device, at=at, actor=actor, kind=kind,
                                 data=data))
        tickets = await session.scalars(select(Ticket.id).where(
            Ticket.agent_id == self.agent_id, Ticket.device == device,
            Ticket.state != "closed"))
        text = _timeline_text(kind, test_id, data)
        for ticket_id in tickets:
            session.add(TicketEvent(ticket_id=ticket_id, at=at, actor=actor, kind="ups_test",
                                    data={"event": kind, "test": test_id, "text": text}))

    async def audit(self, device: str, actor: str, kind: str, data: dict[str, Any],
                    test_id: int | None = None) -> None:
        async def run(session: AsyncSession) -> None:
            await self._event(session, device, actor, kind, data, test_id)
        await self._write(run)

    async def claim(self, site: str, device: str, kind: str, actor: str) -> UpsTest:
        """A running SNMP test row: the site's one slot. IntegrityError: the site is busy."""
        async def run(session: AsyncSession) -> UpsTest:
            test = UpsTest(agent_id=self.agent_id, site=site, device=device, method="snmp",
                           kind=kind, state="running", detail="", notes="",
                           started_at=_at(self.clock()), actor=actor, samples=[])
            session.add(test)
            await session.flush()
            return test
        return await self._write(run)

    async def release(self, test_id: int) -> None:
        """Forget a claim whose start was refused: nothing was started, nothing is kept."""
        async def run(session: AsyncSession) -> None:
            await session.execute(delete(UpsTest).where(UpsTest.id == test_id))
        await self._write(run)

    async def started(self, test: UpsTest, data: dict[str, Any]) -> None:
        await self.audit(test.device, test.actor, "started", data, test.id)

    async def add_sample(self, test_id: int, samples: list[dict[str, Any]]) -> None:
        async def run(session: AsyncSession) -> None:
            await session.execute(update(UpsTest).where(UpsTest.id == test_id)
                                  .values(samples=list(samples)))
        await self._write(run)

    async def finish(self, test: UpsTest, result: str, code: int | None, detail: str,
                     ended: float, samples: list[dict[str, Any]]) -> UpsTest:
        async def run(session: AsyncSession) -> UpsTest:
            row = await session.get(UpsTest, test.id, with_for_update=True)
            assert row is not None
            row.state, row.result, row.result_code, row.detail = "done", result, code, detail
            row.ended_at = _at(ended)
            row.discharge_seconds = round(ended - row.started_at.timestamp(), 3)
            row.samples = list(samples)
            await self._event(session, row.device, "vigil", "finished",
                        {"result": result, "code": code, "detail": detail,
                         "discharge_seconds": row.discharge_seconds}, row.id)
            return row
        return await self._write(run)

    async def record_manual(self, site: str, device: str, kind: str, actor: str,
                            started: datetime, ended: datetime, discharge: float, result: str,
                            notes: str) -> UpsTest:
        async def run(session: AsyncSession) -> UpsTest:
            test = UpsTest(agent_id=self.agent_id, site=site, device=device, method="manual",
                           kind=kind, state="done", result=result, detail="", notes=notes,
                           started_at=started, ended_at=ended, discharge_seconds=discharge,
                           actor=actor, samples=[])
            session.add(test)
            await session.flush()
            await self._event(session, device, actor, "recorded",
                        {"result": result, "discharge_seconds": discharge, "kind": kind}, test.id)
            return test
        return await self._write(run)

    async def running(self, site: str | None = None) -> list[UpsTest]:
        query = select(UpsTest).where(UpsTest.state == "running")
        if site is not None:
            query = query.where(UpsTest.site == site)
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())

    async def get(self, test_id: int) -> UpsTest:
        async with self._sessions() as session:
            test = await session.get(UpsTest, test_id)
        if test is None:
            raise NotFound(f"no UPS test {test_id}")
        return test

    async def tests(self, device: str | None = None) -> list[UpsTest]:
        query = select(UpsTest).order_by(UpsTest.started_at, UpsTest.id)
        if device is not None:
            query = query.where(UpsTest.device == device)
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())

    async def events(self, *, device: str | None = None, test_id: int | None = None
                     ) -> list[UpsTestEvent]:
        query = select(UpsTestEvent).order_by(UpsTestEvent.id)
        if device is not None:
            query = query.where(UpsTestEvent.device == device)
        if test_id is not None:
            query = query.where(UpsTestEvent.test_id == test_id)
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())


def _timeline_text(kind: str, test_id: int | None, data: dict[str, Any]) -> str:
    """One line for a ticket's timeline (the report shows it as the event's details)."""
    if kind == "started":
        return (f"UPS test {test_id} ({data.get('kind')}) started: SNMP SET "
                f"{data.get('profile_oid')} = {data.get('value')}")
    if kind == "refused":
        return f"UPS test refused ({data.get('reason')}): {data.get('detail')}"
    if kind == "finished":
        return (f"UPS test {test_id}: {data.get('result')} after "
                f"{data.get('discharge_seconds')} s ({data.get('detail')})")
    return f"UPS test {test_id}: {kind}"


def trend(tests: list[UpsTest]) -> list[dict[str, Any]]:
    """Per finished test with a discharge time, in order: its change against the previous
    test of the same kind (`drop_ratio` > 0: shorter)."""
    out: list[dict[str, Any]] = []
    last: dict[str, float] = {}
    for test in tests:
        if test.state != "done" or test.result not in TREND_RESULTS \
                or test.discharge_seconds is None:
            continue
        before = last.get(test.kind)
        drop = None
        if before:
            drop = round(max(0.0, 1 - test.discharge_seconds / before), 4)
        out.append({"id": test.id, "kind": test.kind, "method": test.method,
                    "started_at": test.started_at.isoformat(), "result": test.result,
                    "discharge_seconds": test.discharge_seconds,
                    "previous_seconds": before, "drop_ratio": drop})
        last[test.kind] = test.discharge_seconds
    return out


def trend_readings(device: str, tests: list[UpsTest], now: float) -> list[Reading]:
    """The rules' view of the trend: per test kind, the latest discharge time, the one before
    and the drop between them."""
    latest: dict[str, dict[str, Any]] = {}
    for entry in trend(tests):
        latest[entry["kind"]] = entry
    out: list[Reading] = []
    for kind, entry in latest.items():
        labels = {"test": kind}
        out.append(Reading(device, "ups_discharge_seconds", labels,
                           entry["discharge_seconds"], now))
        ended = datetime.fromisoformat(entry["started_at"]).timestamp() \
            + entry["discharge_seconds"]
        out.append(Reading(device, "ups_discharge_test_timestamp_seconds", labels, ended, now))
        if entry["previous_seconds"] is not None:
            out.append(Reading(device, "ups_discharge_previous_seconds", labels,
                               entry["previous_seconds"], now))
            out.append(Reading(device, "ups_discharge_drop_ratio", labels,
                               entry["drop_ratio"], now))
    return out


@dataclass(frozen=True)
class Follow:
    """How a test is followed (agent.yaml `ups_tests`)."""

    interval: float = 5.0
    start_grace: float = 60.0
    max_duration: float = 4 * 3600.0


def _scalar_value(metric: CompiledMetric, varbind: tuple[str, str, Any] | None) -> float | None:
    """A curve value read the way the profile reads it (map, then scale)."""
    if not present(varbind) or not isinstance(varbind[2], int):  # type: ignore[index]
        return None
    raw = varbind[2]  # type: ignore[index]
    definition = metric.definition
    value = float(raw)
    if definition.map:
        value = float(definition.map.get(raw, definition.map.get("default", raw)))
    return round(value * definition.scale + definition.offset, 4)


class UpsTests:
    """Starts, follows and records tests; publishes the trend readings into the state."""

    def __init__(self, config: Callable[[], Config], state: State, store: UpsTestStore,
                 follow: Follow = Follow(), clock: Clock = time.time,
                 sleep: Sleep = asyncio.sleep,
                 writer: Callable[[Any], SnmpWriter] = SnmpWriter) -> None:
        self.config, self.state, self.store = config, state, store
        self.follow_settings, self.clock, self.sleep, self.writer = follow, clock, sleep, writer
        self.tasks: dict[int, asyncio.Task[UpsTest]] = {}
        self.published: dict[str, list[Reading]] = {}
        self.ready = False

    # -- start -------------------------------------------------------------------------

    def _profile(self, device_id: str) -> str | None:
        entry = self.state.devices.get(device_id)
        if entry is None:
            return None
        snmp = entry.results.get("snmp")
        return entry.device.profile or (snmp.profile if snmp is not None else None)

    def _latest(self, device_id: str, metric: str) -> float | None:
        entry = self.state.devices.get(device_id)
        result = entry.results.get("snmp") if entry is not None else None
        if result is None or not result.up:
            return None
        return next((r.value for r in result.readings if r.metric == metric), None)

    def support(self, device_id: str) -> tuple[BatteryTest, dict[str, CompiledMetric]]:
        """The device's battery test and its curve metrics, or Refused/NotFound."""
        config = self.config()
        device = config.inventory.devices.get(device_id)
        if device is None:
            raise NotFound(f"no device '{device_id}' in the inventory")
        if device.kind != "ups":
            raise Refused("not_ups", f"{device_id} is a {device.kind}, not a UPS")
        if device.credentials is None or device.port is None:
            raise Refused("no_snmp", f"{device_id} has no SNMP credentials in the inventory")
        profile = self._profile(device_id)
        if profile is None or profile not in config.profiles.profiles:
            raise Refused("no_readings", f"{device_id} has no profile yet (not polled): set "
                                         f"`profile` in the inventory or wait for a poll")
        test = config.profiles.battery_test(profile)
        if test is None:
            raise Refused("no_test_support", f"{device_id}: profile '{profile}' declares no "
                                             f"battery_test (see docs/ups-test.md)")
        curve = {m.names[""]: m for m in config.profiles.plan(profile).metrics
                 if m.scalar and m.names.get("") in CURVE and m.sources}
        return test, curve

    def _power_check(self, device_id: str) -> None:
        config = self.config()
        site = config.inventory.devices[device_id].site
        if self._latest(device_id, "ups_on_battery") is None \
                and self._latest(device_id, "ups_output_source") is None:
            raise Refused("no_readings", f"{device_id}: its latest poll gave no output source, "
                                         f"so mains power cannot be confirmed")
        for other in config.inventory.devices.values():
            if other.site == site and other.kind == "ups" \
                    and self._latest(other.id, "ups_on_battery") == 1:
                raise Refused("on_battery", f"site {site} is on battery ({other.id} reads "
                                            f"ups_on_battery 1): no test now")

    async def start(self, device_id: str, kind: str, actor: str) -> UpsTest:
        """Start a test; returns the running test (followed in the background)."""
        if kind not in KINDS:
            raise ValueError(f"kind: one of {', '.join(KINDS)}, not {kind!r}")
        try:
            return await self._start(device_id, kind, actor)
        except Refused as exc:
            log.warning("UPS test of %s refused (%s): %s", device_id, exc.reason, exc)
            await self.store.audit(device_id, actor, "refused",
                                   {"reason": exc.reason, "detail": str(exc), "kind": kind})
            raise

    async def _start(self, device_id: str, kind: str, actor: str) -> UpsTest:
        test_def, curve = self.support(device_id)
        if kind not in test_def.modes:
            raise Refused("no_test_support", f"{device_id} has no '{kind}' test (it has: "
                                             f"{', '.join(test_def.modes)})")
        self._power_check(device_id)
        config = self.config()
        device = config.inventory.devices[device_id]
        busy = await self.store.running(device.site)
        if busy:
            raise Refused("busy", f"test {busy[0].id} of {busy[0].device} is running in site "
                                  f"{device.site}")
        try:
            test = await self.store.claim(device.site, device_id, kind, actor)
        except IntegrityError:
            raise Refused("busy", f"another test started in site {device.site} just now") \
                from None
        writer = self.writer(snmp_job(config, device).target)
        try:
            await self._set(writer, device_id, test_def, kind)
        except BaseException:
            writer.close()
            await self.store.release(test.id)
            raise
        await self.store.started(test, {"kind": kind, "profile_oid": test_def.start,
                                        "value": test_def.modes[kind]})
        log.info("UPS test %d (%s) of %s started by %s", test.id, kind, device_id, actor)
        self.tasks[test.id] = asyncio.get_running_loop().create_task(
            self._follow(test, writer, test_def, curve))
        return test

    async def _set(self, writer: SnmpWriter, device_id: str, test_def: BatteryTest,
                   kind: str) -> None:
        oids = [test_def.result + ".0"] + ([test_def.spin_lock + ".0"]
                                           if test_def.spin_lock else [])
        try:
            answer = await writer.get(oids)
        except SetError as exc:
            raise Refused("unreachable", f"{device_id}: {exc.detail}") from None
        summary = answer.get(oids[0])
        if not present(summary):
            raise Refused("no_test_support", f"{device_id} does not answer the test result "
                                             f"OID {oids[0]}: no remote test on this UPS")
        if _code(test_def, summary[2]) == IN_PROGRESS:  # type: ignore[index]
            raise Refused("busy", f"{device_id} reports a test in progress already")
        values: dict[str, tuple[str, Any]] = {}
        if test_def.spin_lock:
            lock = answer.get(oids[1])
            if present(lock):
                values[oids[1]] = ("integer", lock[2])  # type: ignore[index]
        values[test_def.start + ".0"] = (test_def.type, test_def.modes[kind])
        try:
            await writer.set(values)
        except SetError as exc:
            raise Refused("set_refused" if exc.reason != "timeout" else "unreachable",
                          f"{device_id}: {exc.detail} ({exc.reason})") from None

    # -- follow ------------------------------------------------------------------------

    async def _follow(self, test: UpsTest, writer: SnmpWriter, test_def: BatteryTest,
                      curve: dict[str, CompiledMetric]) -> UpsTest:
        settings = self.follow_settings
        started = test.started_at.timestamp()
        oids = {"summary": test_def.result + ".0"}
        if test_def.detail:
            oids["detail"] = test_def.detail + ".0"
        for name, metric in curve.items():
            oids[CURVE[name]] = metric.sources[0].oid + ".0"
        samples: list[dict[str, Any]] = []
        seen_running = False
        try:
            while True:
                await self.sleep(settings.interval)
                now = self.clock()
                elapsed = now - started
                try:
                    answer = await writer.get(list(oids.values()))
                except SetError as exc:
                    log.warning("UPS test %d: %s", test.id, exc)
                    if elapsed > settings.max_duration:
                        return await self._end(test, "lost", None, str(exc), now, samples)
                    continue
                values = {key: answer.get(oid) for key, oid in oids.items()}
                summary = values["summary"]
                code = _code(test_def, summary[2]) if present(summary) else None  # type: ignore[index]
                sample: dict[str, Any] = {"t": round(elapsed, 3), "code": code}
                for name, metric in curve.items():
                    sample[CURVE[name]] = _scalar_value(metric, values[CURVE[name]])
                samples.append(sample)
                if code == IN_PROGRESS:
                    seen_running = True
                elif code is not None and (seen_running or elapsed >= settings.start_grace):
                    detail = values.get("detail")
                    text = detail[2].decode("utf-8", "replace") \
                        if present(detail) and isinstance(detail[2], bytes) else ""  # type: ignore[index]
                    return await self._end(test, SUMMARY.get(code, "error"), code, text, now,
                                           samples)
                if elapsed > settings.max_duration:
                    return await self._end(test, "timeout", code, "no result within "
                                           f"{settings.max_duration:g}s", now, samples)
                await self.store.add_sample(test.id, samples)
        finally:
            writer.close()
            self.tasks.pop(test.id, None)

    async def _end(self, test: UpsTest, result: str, code: int | None, detail: str,
                   now: float, samples: list[dict[str, Any]]) -> UpsTest:
        done = await self.store.finish(test, result, code, detail, now, samples)
        log.info("UPS test %d of %s: %s after %.0fs", test.id, test.device, result,
                 done.discharge_seconds or 0)
        await self.refresh(test.device)
        return done

    async def open(self) -> None:
        """Migrate the store, close tests an earlier run left running, publish the trend."""
        await self.store.start()
        await self.lost_on_restart()
        await self.refresh()
        self.ready = True

    async def open_retrying(self, store_ready: Callable[[], bool] = lambda: True,
                            pause: float = 30.0) -> None:
        """`open` once `store_ready()` (the ticket store has migrated the shared database),
        retried while the database cannot be reached (the agent keeps polling)."""
        while not self.ready:
            if not store_ready():
                await asyncio.sleep(1.0)
                continue
            try:
                await self.open()
            except UNREACHABLE as exc:  # the store is down: tests wait, polling goes on
                log.error("UPS test store not available (%s); retrying in %gs",
                          unreachable_reason(exc), pause)
                await asyncio.sleep(pause)

    async def wait(self, test_id: int) -> UpsTest:
        """The finished test (tests and the CLI's --wait)."""
        task = self.tasks.get(test_id)
        return await task if task is not None else await self.store.get(test_id)

    async def lost_on_restart(self) -> None:
        """Tests left running by an earlier process are over as far as we know: 'lost'."""
        for test in await self.store.running():
            await self.store.finish(test, "lost", None, "the agent stopped while following it",
                                    self.clock(), test.samples or [])

    # -- manual ------------------------------------------------------------------------

    async def record_manual(self, device_id: str, actor: str, kind: str, started: datetime,
                            ended: datetime, discharge: float | None, result: str,
                            notes: str = "") -> UpsTest:
        device = self.config().inventory.devices.get(device_id)
        if device is None:
            raise NotFound(f"no device '{device_id}' in the inventory")
        if device.kind != "ups":
            raise Refused("not_ups", f"{device_id} is a {device.kind}, not a UPS")
        problems = manual_problems(kind, started, ended, discharge, result, self.clock())
        if problems:
            raise ValueError("; ".join(problems))
        seconds = discharge if discharge is not None else (ended - started).total_seconds()
        test = await self.store.record_manual(device.site, device_id, kind, actor, started,
                                              ended, float(seconds), result, notes)
        await self.refresh(device_id)
        return test

    # -- readings for the rules --------------------------------------------------------

    async def refresh(self, device_id: str | None = None) -> None:
        """Recompute the trend readings of one UPS (None: all) from the store."""
        tests = await self.store.tests(device_id)
        by_device: dict[str, list[UpsTest]] = {}
        for test in tests:
            by_device.setdefault(test.device, []).append(test)
        if device_id is None:
            self.published = {}
        now = self.clock()
        for device, items in by_device.items():
            self.published[device] = trend_readings(device, items, now)
        self.publish()

    def publish(self) -> None:
        """Put the trend readings into the state as a fresh `ups_test` result (called after
        each rules cycle, so they never go stale while nothing changes)."""
        now = self.clock()
        for device, readings in self.published.items():
            if readings and device in self.state.devices:
                self.state.update(PollResult(device, now, 0.0, True, readings=readings,
                                             collector=COLLECTOR))

    async def on_cycle(self, *_: Any) -> None:
        self.publish()

    async def close(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.store.dispose()


def _code(test_def: BatteryTest, raw: Any) -> int | None:
    if not isinstance(raw, int):
        return None
    if test_def.result_map:
        mapped = test_def.result_map.get(raw, test_def.result_map.get("default"))
        return int(mapped) if mapped is not None else None
    return raw


MANUAL_RESULTS = ("pass", "warning", "error")


def manual_problems(kind: str, started: datetime, ended: datetime, discharge: float | None,
                    result: str, now: float) -> list[str]:
    """What is wrong with a manual record (empty: fine)."""
    problems = []
    if kind not in KINDS:
        problems.append(f"kind: one of {', '.join(KINDS)}")
    if result not in MANUAL_RESULTS:
        problems.append(f"result: one of {', '.join(MANUAL_RESULTS)}")
    for name, value in (("started_at", started), ("ended_at", ended)):
        if value.tzinfo is None:
            problems.append(f"{name}: give a time zone (e.g. +08:00)")
        elif value.timestamp() > now + 60:
            problems.append(f"{name}: {value.isoformat()} is in the future")
    if started.tzinfo is not None and ended.tzinfo is not None and ended <= started:
        problems.append("ended_at must be after started_at")
    if discharge is not None:
        if discharge <= 0:
            problems.append("discharge_seconds must be positive")
        elif started.tzinfo is not None and ended.tzinfo is not None \
                and discharge > (ended - started).total_seconds() + 1:
            problems.append("discharge_seconds is longer than the test (ended - started)")
    return problems
