"""The readings history on SQLite and PostgreSQL: a month of a simulated site (clock injected,
no sleeping) and the exact figures the reports read from it.

The site: cameras cam-1 (always online), cam-2 (offline 02:00-04:00 every day), cam-3 (offline
the whole week of 10-16 October) polled over ONVIF every 5 minutes, and a UPS polled over
SNMP every minute whose reading is the local hour (daily min 0, max 23, avg 11.5). On
5 October at 08:03 the agent is stopped and started again at once (mid-bucket); on 20
October at 12:03 it crashes and comes back at 13:00.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from agent.history import HistoryRunner, Recorder, metric_filter
from agent.history_models import AvailabilityBucket, ReadingBucket, ReadingDay, Series
from agent.history_query import CAMERA_KINDS, HistoryQuery
from agent.history_store import Batch, HistoryStore
from agent.inventory import Device
from agent.settings import Settings
from agent.state import DeviceState, State
from agent.tickets.store import TicketStore
from collectors.reading import PollResult, Reading
from collectors.vocabulary import MetricSpec, load_vocabulary
from rules.faults import Fault
from tests import peers
from tests.conftest import new_database
from tests.test_daemon import Daemon, write_config

ZONE = ZoneInfo("Asia/Shanghai")
DAY = 86400
START = datetime(2026, 10, 1, tzinfo=ZONE)
END = datetime(2026, 11, 3, 0, 5, tzinfo=ZONE)
RESTART = datetime(2026, 10, 5, 8, 3, tzinfo=ZONE)
CRASH = datetime(2026, 10, 20, 12, 3, tzinfo=ZONE)
BACK = datetime(2026, 10, 20, 13, 0, tzinfo=ZONE)
CAMERAS = {"cam-1": "fixed_camera", "cam-2": "ptz_camera", "cam-3": "fixed_camera"}
INTERVALS = {"onvif": 300, "snmp": 60}
CATALOGUE = {name: MetricSpec(name, e.type, e.help) for name, e in load_vocabulary().items()}


class Clock:
    def __init__(self, at: datetime) -> None:
        self.t = at.timestamp()

    def __call__(self) -> float:
        return self.t


def settings(db_url: str, **history: object) -> Settings:
    return Settings(agent={"id": "branch-dh"}, tickets={"url": db_url},
                    history={"metrics": ["onvif_round_trip_seconds", "ups_*", "up"],
                             # pinned (the default is 7d): the figures below count 14 days
                             "retention_5m": "14d", **history})


def camera_down(device: str, at: datetime) -> bool:
    local = at.astimezone(ZONE)
    if device == "cam-2":
        return 2 <= local.hour < 4
    if device == "cam-3":
        return datetime(2026, 10, 10, tzinfo=ZONE) <= local < datetime(2026, 10, 17,
                                                                       tzinfo=ZONE)
    return False


def results(t: float) -> list[PollResult]:
    """The polls due at `t`."""
    at = datetime.fromtimestamp(t, UTC)
    out = []
    if t % INTERVALS["onvif"] == 0:
        for device in CAMERAS:
            up = not camera_down(device, at)
            readings = [Reading(device, "onvif_round_trip_seconds", {}, 0.05, t)] if up else []
            out.append(PollResult(device, t, 0.1, up, None if up else "timeout",
                                  readings=readings, collector="onvif"))
    hour = float(at.astimezone(ZONE).hour)
    out.append(PollResult("ups-1", t, 0.1, True, collector="snmp", readings=[
        Reading("ups-1", "ups_battery_volts", {}, hour, t),
        Reading("ups-1", "ups_input_volts", {"line": "1"}, 220.0, t),
        Reading("ups-1", "interface_received_bytes_total", {"ifIndex": "1"}, 1e6, t)]))
    return out


def site_state() -> State:
    state = State()
    for device, kind in {**CAMERAS, "ups-1": "ups"}.items():
        state.devices[device] = DeviceState(Device(id=device, kind=kind, site="dh",
                                                   address="127.0.0.1"))
    return state


def runner_for(db_url: str, state: State, clock: Clock, **history: object) -> HistoryRunner:
    options = settings(db_url, **history)
    store = HistoryStore(db_url, "branch-dh")
    runner = HistoryRunner(options, store, lambda: CATALOGUE,
                           lambda device, collector: INTERVALS[collector],
                           lambda: list(state.devices), clock)
    state.observers[:] = [runner.observe]
    return runner


async def simulate(db_url: str) -> Clock:
    """Run the site from START to END through the runner (ticks every 6 hours)."""
    logging.getLogger("vigil.state").setLevel(logging.ERROR)  # a month of "cam-2 down"
    clock = Clock(START)
    state = site_state()
    runner = runner_for(db_url, state, clock)
    assert await runner.open()
    t = clock.t
    while t < END.timestamp():
        clock.t = t
        if t == RESTART.timestamp():  # a clean stop and an immediate start
            await runner.close()
            runner = runner_for(db_url, state, clock)
            assert await runner.open()
        if t == CRASH.timestamp():  # gone without a word: nothing more is written
            await runner.store.dispose()
            state.observers.clear()
        if t == BACK.timestamp():
            runner = runner_for(db_url, state, clock)
            assert await runner.open()
        if t % (6 * 3600) == 4 * 3600 + 60:  # at 00:01, 06:01, 12:01, 18:01 local
            await runner.tick()
        for result in results(t):
            state.update(result)
        t += 60
    clock.t = END.timestamp()
    await runner.tick()
    await runner.close()
    return clock


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def simulated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The simulated month, once per backend (the tests below only read it)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('history') / 'tickets.db'}"
    else:
        url = new_database(request.getfixturevalue("postgres_server"))
    clock = asyncio.run(simulate(url))
    return url, clock


@pytest.fixture
async def history(simulated):
    url, clock = simulated
    query = HistoryQuery(url, "Asia/Shanghai")
    yield url, query, clock
    await query.dispose()


OCT = (datetime(2026, 10, 1, tzinfo=ZONE), datetime(2026, 11, 1, tzinfo=ZONE))
MONTH = 31 * DAY


async def test_availability_seconds_of_the_month(history) -> None:
    _, query, _ = history
    seconds = await query.availability(*OCT, site="dh")
    lost = 3600 + 120  # the crash hour; after the restart, cameras unknown until their poll
    expected = {
        "cam-1": (MONTH - lost, 0),
        "cam-2": (MONTH - lost - 31 * 7200, 31 * 7200),
        "cam-3": (MONTH - lost - 7 * DAY, 7 * DAY),
        "ups-1": (MONTH - 3600, 0),  # polled every minute: the restart lost nothing
    }
    got = {d: (a.up, a.down) for d, a in seconds.items()}
    assert got == expected
    assert seconds["cam-1"].unknown == lost
    assert seconds["ups-1"].unknown == 3600
    snmp = await query.availability(*OCT, devices=["ups-1", "cam-1"], collector="snmp")
    assert (snmp["ups-1"].up, snmp["ups-1"].down) == (MONTH - 3600, 0)
    assert (snmp["cam-1"].up, snmp["cam-1"].unknown) == (0, MONTH)  # no SNMP on cameras


async def test_online_rate_per_site_and_month(history) -> None:
    _, query, _ = history
    rate = await query.online_rate("dh", *OCT, kinds=CAMERA_KINDS)
    lost = 3600 + 120
    up = 3 * (MONTH - lost) - 31 * 7200 - 7 * DAY
    down = 31 * 7200 + 7 * DAY
    assert (rate.up, rate.down, rate.unknown, rate.cameras) == (up, down, 3 * lost, 3)
    assert rate.rate == up / (up + down)
    assert rate.rate_of_period == up / (3 * MONTH)
    assert round(rate.rate, 4) == 0.8968
    # a period read partly from buckets (2 Nov, not yet beyond retention) and partly daily
    tail = await query.online_rate("dh", datetime(2026, 11, 1, 12, tzinfo=ZONE),
                                   datetime(2026, 11, 3, tzinfo=ZONE))
    assert (tail.up, tail.down, tail.unknown) == (3 * 36 * 3600 - 7200, 7200, 0)
    empty = await query.online_rate("nowhere", *OCT)
    assert (empty.cameras, empty.rate) == (0, None)


async def test_daily_min_avg_max(history) -> None:
    _, query, _ = history
    days = await query.series("ups-1", "ups_battery_volts", *OCT, resolution="day")
    assert len(days) == 31
    normal = days[0]
    assert normal.start == datetime(2026, 10, 1, tzinfo=ZONE)
    assert (normal.min, normal.max, normal.avg, normal.count) == (0, 23, 11.5, 1440)
    restart = days[4]  # 5 October: stopped and started at 08:03, nothing lost or doubled
    assert (restart.min, restart.max, restart.avg, restart.count) == (0, 23, 11.5, 1440)
    crash = days[19]  # 20 October: 12:00-13:00 lost
    assert (crash.min, crash.max, crash.count) == (0, 23, 1380)
    assert crash.avg == (11.5 * 1440 - 12 * 60) / 1380
    lines = await query.series("ups-1", "ups_input_volts", *OCT, resolution="day",
                               labels={"line": "1"})
    assert len(lines) == 31 and lines[0].labels == {"line": "1"} and lines[0].avg == 220
    assert await query.series("ups-1", "interface_received_bytes_total", *OCT,
                              resolution="day") == []  # counters are not recorded


async def test_buckets_of_the_restart_and_the_crash(history) -> None:
    _, query, _ = history
    at = datetime(2026, 10, 5, 8, 0, tzinfo=ZONE)
    points = await query.series("ups-1", "ups_battery_volts", at, at + timedelta(minutes=10))
    # buckets are gone past retention_5m (14 days before 3 Nov)
    assert points == []
    recent = datetime(2026, 11, 2, 8, 0, tzinfo=ZONE)
    points = await query.series("ups-1", "ups_battery_volts", recent,
                                recent + timedelta(hours=1))
    assert [p.start for p in points] == [recent + timedelta(minutes=5 * i) for i in range(12)]
    assert all((p.min, p.max, p.count) == (8, 8, 5) for p in points)


async def test_retention_keeps_exactly_the_window(history) -> None:
    db_url, _, clock = history
    engine = create_async_engine(db_url)
    cutoff = datetime.fromtimestamp(clock.t - 14 * DAY, UTC)
    async with engine.connect() as conn:
        oldest = await conn.scalar(select(func.min(ReadingBucket.start)))
        buckets = await conn.scalar(select(func.count()).select_from(AvailabilityBucket)
                                    .where(AvailabilityBucket.collector == "device",
                                           AvailabilityBucket.device == "ups-1"))
        daily = await conn.scalar(select(func.count()).select_from(ReadingDay)
                                  .join(Series, Series.id == ReadingDay.series)
                                  .where(Series.metric == "ups_battery_volts"))
    await engine.dispose()
    # the last prune ran at the final tick (3 Nov 00:05): rows from 20 Oct 00:05 on remain
    assert oldest == cutoff
    # 20 Oct 00:05 .. 3 Nov 00:00, less the 12 buckets of the crash hour (nobody ran)
    assert buckets == 14 * 288 - 12
    assert daily == 33  # 1 Oct .. 2 Nov: daily rows stay two years


async def test_good_order_rate(simulated) -> None:
    db_url, _ = simulated
    tickets_clock = Clock(datetime(2026, 10, 10, 0, 10, tzinfo=ZONE))
    async with TicketStore(db_url, "branch-dh", tickets_clock) as tickets:
        async def ticket(device: str, level: int, opened: datetime, resolved: datetime | None
                         ) -> None:
            tickets_clock.t = opened.timestamp()
            ticket, _ = await tickets.open_for_fault(_fault(device, level))
            if resolved is None:
                return
            tickets_clock.t = resolved.timestamp()
            await tickets.acknowledge(ticket.id, "tech")
            await tickets.diagnose(ticket.id, "tech", "camera dead")
            await tickets.start_repair(ticket.id, "tech")
            await tickets.resolve(ticket.id, "tech", "front_end_hardware", "replaced")

        await ticket("cam-3", 3, datetime(2026, 10, 10, 0, 10, tzinfo=ZONE),
                     datetime(2026, 10, 17, tzinfo=ZONE))
        await ticket("cam-1", 4, datetime(2026, 10, 1, tzinfo=ZONE), None)  # level 4: no
        await ticket("cam-1", 2, datetime(2026, 10, 25, 9, tzinfo=ZONE),
                     datetime(2026, 10, 25, 11, tzinfo=ZONE))
    query = HistoryQuery(db_url)
    try:
        cameras = await query.good_order_rate("dh", *OCT, kinds=CAMERA_KINDS)
        assert (cameras.counted, cameras.good) == (93, 85)
        assert cameras.not_good == {"cam-3": 7, "cam-1": 1}
        everything = await query.good_order_rate("dh", *OCT, sample=time(3, 0))
        # sampled at 03:00 cam-1's level-2 ticket (09:00-11:00) is not open; cam-2, down
        # at 03:00 but online 22 h of 24, and the UPS are in good order every day
        assert (everything.counted, everything.good) == (124, 117)
        assert everything.not_good == {"cam-3": 7}
    finally:
        await query.dispose()


def _fault(device: str, level: int) -> Fault:
    return Fault(key=f"Offline{level}:{device}", rule=f"Offline{level}", group="device",
                 subject=device, device=device, site="dh", kind="fixed_camera", series={},
                 labels={}, level=level, state="firing", pending_since=None, last_seen=0.0,
                 fired_at=None, texts={}, evidence={})


async def test_rewriting_and_rolling_up_again_changes_nothing(db_url: str) -> None:
    store = HistoryStore(db_url, "branch-dh")
    await store.start()
    at = datetime(2026, 10, 1, 0, 0, tzinfo=ZONE).astimezone(UTC)
    batch = Batch(
        readings=[{"device": "ups-1", "metric": "ups_battery_volts", "labels": "{}",
                   "start": at + timedelta(minutes=5 * i), "seconds": 300, "min": i,
                   "max": i + 1, "sum": 2 * i + 1, "count": 2} for i in range(288)],
        availability=[{"device": "ups-1", "collector": "device", "start": at,
                       "seconds": 300, "site": "dh", "kind": "ups", "up_seconds": 200.0,
                       "down_seconds": 50.0, "unknown_seconds": 50.0}])
    query = HistoryQuery(store.engine)
    day = datetime(2026, 10, 1, tzinfo=ZONE)
    try:
        for _ in range(2):  # a retry, a restart: the same rows again
            await store.write(batch)
            await store.rollup(day.date(), ZONE, ["ups-1"], at)
            [point] = await query.series("ups-1", "ups_battery_volts", day,
                                         day + timedelta(days=1), resolution="day")
            assert (point.min, point.max, point.sum, point.count) == (0, 288, 288 ** 2, 576)
            seconds = await query.availability(day, day + timedelta(days=1),
                                               devices=["ups-1"])
            assert (seconds["ups-1"].up, seconds["ups-1"].down) == (200, 50)
    finally:
        await store.dispose()


async def test_prune_deletes_in_batches_exactly_before_the_cutoffs(db_url: str) -> None:
    store = HistoryStore(db_url, "branch-dh")
    await store.start()
    at = datetime(2026, 10, 1, tzinfo=UTC)
    await store.write(Batch(readings=[
        {"device": f"d{n}", "metric": "ups_battery_volts", "labels": "{}",
         "start": at + timedelta(minutes=5 * i), "seconds": 300, "min": 1, "max": 1,
         "sum": 1, "count": 1} for i in range(10) for n in range(5)]))
    for d in range(4):
        await store.rollup((at + timedelta(days=d)).date(), ZONE, [f"d{n}" for n in range(5)],
                           at)
    try:
        deleted = await store.prune(at + timedelta(minutes=35), (at + timedelta(days=1)).date(),
                                    batch=7)
        assert deleted["history_readings"] == 35  # buckets 00:00 .. 00:30, 5 devices
        assert deleted["history_days"] == 1
        async with store.engine.connect() as conn:
            left = (await conn.execute(select(func.min(ReadingBucket.start),
                                              func.count()))).one()
        assert left == (at + timedelta(minutes=35), 15)
    finally:
        await store.dispose()


def test_recorder_counts_stale_answers_as_unknown() -> None:
    recorder = Recorder(300, metric_filter(["*"], CATALOGUE), started=0)
    recorder.answer("cam", "onvif", "dh", "fixed_camera", 10, True, horizon=180)
    recorder.answer("cam", "onvif", "dh", "fixed_camera", 400, False, horizon=180)
    batch = recorder.take(900)
    rows = {(r["start"].timestamp(), r["up_seconds"], r["down_seconds"], r["unknown_seconds"])
            for r in batch.availability}
    # up 10..190 then stale; down 400..580 then stale; nothing known before 10
    assert rows == {(0, 180, 0, 120), (300, 0, 180, 120), (600, 0, 0, 300)}


def test_settings_refuse_bad_history_keys() -> None:
    with pytest.raises(ValidationError, match="divides"):
        Settings(agent={"id": "a"}, history={"interval": "7m"})
    with pytest.raises(ValidationError, match="unknown timezone 'Mars/Olympus'"):
        Settings(agent={"id": "a"}, history={"timezone": "Mars/Olympus"})
    assert Settings(agent={"id": "a"}).history.interval == 300


async def test_the_daemon_records_and_a_stop_writes_the_bucket_in_progress(recordings_sim,
                                                                           tmp_path) -> None:
    """The real agent (`vigil run`) polls a recorded UPS; SIGTERM writes the bucket so far."""
    config = write_config(tmp_path, recordings_sim, ["deltaups"])
    with config.open("a") as f:
        f.write("history: {interval: 1m}\n")  # the state is in tmp_path/state
    started = datetime.now(UTC)
    daemon = Daemon(config)
    try:
        peers.wait_http(daemon.url + "/-/ready")
        daemon.wait_for(lambda: daemon.sample("vigil_device_up", device="deltaups") == 1,
                        what="the first poll")
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(15) == 0
    finally:
        daemon.stop()
    assert "ERROR" not in daemon.log.read_text()
    query = HistoryQuery(f"sqlite+aiosqlite:///{tmp_path / 'state' / 'tickets.db'}")
    try:
        period = (started - timedelta(minutes=2), datetime.now(UTC) + timedelta(minutes=2))
        seconds = await query.availability(*period, devices=["deltaups"])
        assert seconds["deltaups"].up > 0 and seconds["deltaups"].down == 0
        points = await query.series("deltaups", "ups_battery_runtime_seconds", *period)
        assert points and all(p.min == p.max == 1320 for p in points)
    finally:
        await query.dispose()


async def test_a_metric_pattern_that_matches_nothing_is_logged(tmp_path, caplog) -> None:
    runner = runner_for(f"sqlite+aiosqlite:///{tmp_path / 't.db'}", site_state(),
                        Clock(START), metrics=["ups_*", "up", "upz_*"])
    assert "history.metrics: 'upz_*' matches no gauge" in caplog.text
    assert "'ups_*'" not in caplog.text
    await runner.store.dispose()
