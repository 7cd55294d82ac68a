"""Fault statistics over a known history: 18 tickets on two sites from September to
November 2026, driven through the real TicketStore (SQLite and PostgreSQL) with an injected
clock, escalated the way the ticket runner does. Every figure below is worked out by hand
from the scenario table, not copied from the code's output."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from agent.auth import Authenticator, FailureLimiter, Users, add_user
from agent.escalation import TicketTimes, builtin_policy, due_escalations
from agent.inventory import Device, Inventory, Site
from agent.statistics import (
    StatisticsInputError,
    business_seconds,
    compute,
    percentile,
)
from agent.statistics_api import add_statistics_routes
from agent.ticketing import _escalation, _escalation_data
from agent.tickets.store import TicketStore

ROOT = Path(__file__).resolve().parents[1]
TZ = ZoneInfo("Asia/Shanghai")
POLICY = builtin_policy()  # L1 15m/4h, L2 30m/8h, L3 2h/24h (24x7); L4 1wd/5wd office 08:30-17:30
H, M = 3600.0, 60.0


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def device(id_: str, kind: str, site: str, **labels: str) -> Device:
    return Device(id=id_, kind=kind, site=site, address="127.0.0.1", labels=labels)


INVENTORY = Inventory(
    sites={"dh": Site(id="dh", name="东湖"), "xs": Site(id="xs", name="西山")},
    devices={d.id: d for d in [
        device("cam-1", "ptz_camera", "dh", vendor="hik", model="X1", batch="B1"),
        device("cam-2", "ptz_camera", "dh", vendor="hik", model="X2", batch="B1"),
        device("cam-3", "fixed_camera", "xs", vendor="hik", model="X3", batch="B2"),
        device("cam-4", "fixed_camera", "xs", vendor="dahua", model="X4", batch="B3"),
        device("ups-1", "ups", "dh"),
        device("spd-1", "spd_monitor", "xs"),
        device("sw-1", "switch", "dh"),
    ]},
    placed={})


@dataclass
class Fault:
    key: str
    site: str
    device: str
    level: int
    rule: str = ""
    subject: str = ""
    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    fired_at: float | None = None

    def __post_init__(self) -> None:
        self.rule = self.rule or self.key.split(":")[0]
        self.subject = self.subject or self.device or self.site


def life(no: int, key: str, site: str, dev: str, level: int, opened: str,
         ack: float | None = None, resolve: float | None = None, cause: str | None = None
         ) -> list[tuple[datetime, int, str, Any]]:
    """A ticket's steps: opened at `opened` (local), acknowledged (and diagnosed, repair
    started) `ack` seconds later, resolved with `cause` `resolve` seconds after opening,
    confirmed 30 min and closed 60 min after that."""
    t0 = local(opened)
    steps: list[tuple[datetime, int, str, Any]] = [(t0, no, "open", Fault(key, site, dev, level))]
    if ack is not None:
        steps.append((t0 + timedelta(seconds=ack), no, "ack", None))
    if resolve is not None:
        done = t0 + timedelta(seconds=resolve)
        steps += [(done, no, "resolve", cause), (done + timedelta(minutes=30), no, "confirm", None),
                  (done + timedelta(minutes=60), no, "close", None)]
    return steps


# no. key                       site device   L  opened (Asia/Shanghai)  ack      resolve  cause
SCENARIO = [
    *life(16, "CameraOffline:cam-1", "dh", "cam-1", 3, "2026-09-20 10:00", 30 * M, 2 * H,
          "connector_cable"),
    *life(17, "CameraBlur:cam-2", "dh", "cam-2", 3, "2026-09-29 10:00", 30 * M, 72 * H,
          "environment"),  # opened in Sep, closed Oct 2: Oct's causes only; 3 Sep breaches
    *life(5, "SpdFailed:spd-1", "xs", "spd-1", 2, "2026-10-01 00:30", 10 * M, 2 * H,
          "lightning_surge"),  # Sep 30 16:30 UTC: October in the site's time zone
    *life(6, "CameraOffline:cam-3", "xs", "cam-3", 3, "2026-10-03 15:00", 40 * M, 6 * H,
          "lightning_surge"),
    *life(1, "CameraOffline:cam-1", "dh", "cam-1", 3, "2026-10-05 10:00", 30 * M, 5 * H,
          "connector_cable"),  # closed 16:00, the fault returns 20:00: reopened (below)
    (local("2026-10-05 20:00"), 1, "open", Fault("CameraOffline:cam-1", "dh", "cam-1", 3)),
    (local("2026-10-05 21:00"), 1, "ack", None),
    (local("2026-10-05 23:00"), 1, "resolve", "connector_cable"),
    (local("2026-10-05 23:30"), 1, "confirm", None),
    (local("2026-10-06 00:00"), 1, "close", None),
    *life(8, "UpsOnBattery:ups-1", "dh", "ups-1", 2, "2026-10-08 02:00", 40 * M, 3 * H,
          "power_ups"),  # response breach 02:30 -> L1
    *life(9, "SwitchDown:sw-1", "dh", "sw-1", 1, "2026-10-09 11:00", 5 * M, 2 * H, "network"),
    *life(2, "CameraVideoLoss:cam-1", "dh", "cam-1", 3, "2026-10-12 09:00", 20 * M, 30 * H,
          "connector_cable"),  # repair breach at 24 h -> L2
    *life(3, "CameraOffline:cam-2", "dh", "cam-2", 3, "2026-10-13 09:00", 90 * M, 4 * H,
          "connector_cable"),
    *life(4, "CameraOffline:cam-4", "xs", "cam-4", 3, "2026-10-14 09:00", 150 * M, 6 * H,
          "connector_cable"),  # response breach 11:00 -> L2; acked at L2's deadline: met
    *life(10, "CameraOffline:cam-gone", "dh", "cam-gone", 3, "2026-10-15 10:00", 60 * M,
          10 * H, "unknown"),  # not in the inventory
    *life(12, "ClockDrift:cam-2", "dh", "cam-2", 4, "2026-10-16 10:00", 1 * H, 5 * H,
          "operator_error"),  # Friday
    *life(13, "ConfigMismatch:cam-4", "xs", "cam-4", 4, "2026-10-16 17:00",
          (3 * 24 + 16) * H, (4 * 24 - 2) * H, "operator_error"),  # acked Tue 09:00: late
    *life(7, "CameraPtz:cam-3", "xs", "cam-3", 3, "2026-10-20 08:00", 100 * M, 20 * H,
          "lightning_surge"),
    *life(11, "SiteClockDrift:dh", "dh", "", 4, "2026-10-22 16:00", (17 * H + 30 * M),
          (3 * 24 + 18) * H, "operator_error"),  # Thu 16:00, acked Fri 09:30, fixed Mon 10:00
    *life(14, "CameraFrozen:cam-4", "xs", "cam-4", 3, "2026-10-28 09:00"),  # never handled
    *life(15, "FirmwareOld:sw-1", "dh", "sw-1", 4, "2026-10-31 10:00"),  # Sat: still in time
    *life(18, "CameraOffline:cam-1", "dh", "cam-1", 3, "2026-11-01 10:00"),
]
NOW = local("2026-11-02 10:00")  # Monday


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def escalate_due(store: TicketStore, now: datetime) -> None:
    """What the ticket runner's check does for escalations (agent/ticketing.py)."""
    from agent.tickets.store import TicketFilter

    page = await store.list(TicketFilter(not_closed=True, limit=1000))
    events = await store.cycle_events_of([t.id for t in page])
    for ticket in page:
        if ticket.state in ("resolved", "confirmed"):
            continue
        fired = [e for e in (_escalation(ev) for ev in events[ticket.id]) if e is not None]
        level = fired[0].from_level if fired else ticket.level
        times = TicketTimes(ticket.cycle_started_at, ticket.acknowledged_at,
                            ticket.resolved_at)
        for esc in due_escalations(times, level, POLICY, now, fired):
            await store.escalate(ticket.id, store.actor, esc.to_level, _escalation_data(esc))


async def build(url: str) -> tuple[TicketStore, dict[int, int]]:
    clock = Clock()
    store = TicketStore(url, "branch-dh", clock)
    await store.start()
    ids: dict[int, int] = {}
    for at, no, action, arg in sorted(SCENARIO, key=lambda s: s[0]):
        clock.t = at.timestamp()
        await escalate_due(store, at)
        if action == "open":
            ticket, _ = await store.open_for_fault(arg)
            ids[no] = ticket.id
        elif action == "ack":
            await store.acknowledge(ids[no], "tech")
            await store.diagnose(ids[no], "tech", "checked")
            await store.start_repair(ids[no], "tech")
        elif action == "resolve":
            await store.resolve(ids[no], "tech", arg, "fixed")
        else:
            await getattr(store, action)(ids[no], "owner")
    clock.t = NOW.timestamp()
    await escalate_due(store, NOW)
    return store, ids


@pytest.fixture
async def history(db_url: str):
    store, ids = await build(db_url)
    try:
        yield store, ids
    finally:
        await store.dispose()


def shares(rows: list[Any]) -> dict[str, tuple[int, float | None]]:
    return {r.key: (r.count, r.share) for r in rows}


async def test_known_history(history: tuple[TicketStore, dict[int, int]]) -> None:
    """October in full, then one site, other periods and bad input (one build per backend)."""
    store, _ = history
    s = await compute(store, POLICY, INVENTORY, month="2026-10", months=3)
    assert s.period.start == datetime(2026, 9, 30, 16, tzinfo=UTC)
    assert s.period.end == datetime(2026, 10, 31, 16, tzinfo=UTC)
    assert s.period.timezone == "Asia/Shanghai" and not s.partial
    assert (s.opened, s.closed) == (15, 14)

    # causes: the 14 tickets closed in October (no. 17 opened in September among them)
    assert shares(s.by_cause) == {
        "operator_error": (3, 3 / 14), "connector_cable": (4, 4 / 14),
        "front_end_hardware": (0, 0.0), "power_ups": (1, 1 / 14), "network": (1, 1 / 14),
        "lightning_surge": (3, 3 / 14), "software_config": (0, 0.0),
        "environment": (1, 1 / 14), "unknown": (1, 1 / 14)}
    assert list(shares(s.by_cause)) == ["operator_error", "connector_cable",
                                        "front_end_hardware", "power_ups", "network",
                                        "lightning_surge", "software_config", "environment",
                                        "unknown"]
    assert s.causes_by_site == {
        "dh": {"connector_cable": 3, "power_ups": 1, "network": 1, "unknown": 1,
               "operator_error": 2, "environment": 1},
        "xs": {"connector_cable": 1, "lightning_surge": 3, "operator_error": 1}}
    assert s.causes_by_kind["unknown"] == {"unknown": 1}
    assert s.causes_by_kind["aggregate"] == {"operator_error": 1}

    # the 15 tickets opened in October
    assert [(r.key, r.count) for r in s.by_kind] == [
        ("fixed_camera", 5), ("ptz_camera", 4), ("switch", 2), ("aggregate", 1),
        ("spd_monitor", 1), ("unknown", 1), ("ups", 1)]
    assert shares(s.by_site) == {"dh": (9, 9 / 15), "xs": (6, 6 / 15)}
    assert [(r.key, r.count) for r in s.by_original_level] == [
        ("1", 1), ("2", 2), ("3", 8), ("4", 4)]
    assert [(r.key, r.count) for r in s.by_final_level] == [
        ("1", 4), ("2", 3), ("3", 5), ("4", 3)]

    # times per original level, against its limits
    t = {x.level: x for x in s.times}
    r1, p1 = t[1].respond, t[1].repair
    assert (r1.within, r1.missed, r1.pending, r1.share_within) == (1, 0, 0, 1.0)
    assert (r1.durations.mean, p1.durations.mean) == (5 * M, 2 * H)
    r2, p2 = t[2].respond, t[2].repair
    assert (r2.within, r2.missed, r2.share_within) == (1, 1, 0.5)
    assert (r2.durations.mean, r2.durations.median, r2.durations.p90) == (25 * M, 25 * M, 40 * M)
    assert (p2.within, p2.durations.mean, p2.durations.p90) == (2, 2.5 * H, 3 * H)
    r3, p3 = t[3].respond, t[3].repair
    assert (r3.limit, r3.limit_seconds) == ("2h", 2 * H)
    assert (r3.within, r3.missed, r3.pending, r3.share_within) == (6, 2, 0, 0.75)
    assert r3.durations.count == 7  # no. 14 was never acknowledged: missed, no duration
    assert r3.durations.mean == pytest.approx(31200 / 7)
    assert (r3.durations.median, r3.durations.p90) == (1 * H, 150 * M)
    assert (p3.within, p3.missed, p3.share_within) == (6, 2, 0.75)
    assert p3.durations.mean == pytest.approx(284400 / 7)
    assert (p3.durations.median, p3.durations.p90) == (6 * H, 30 * H)
    r4, p4 = t[4].respond, t[4].repair  # business hours of the office calendar
    assert (t[4].calendar, r4.limit, r4.limit_seconds) == ("office", "1 working day", 9 * H)
    assert (r4.within, r4.missed, r4.pending) == (2, 1, 1)  # no. 15 is still in time
    assert r4.share_within == pytest.approx(2 / 3)
    assert (r4.durations.mean, r4.durations.median, r4.durations.p90) == (4.5 * H, 2.5 * H,
                                                                         10 * H)
    assert (p4.within, p4.missed, p4.pending, p4.share_within) == (3, 0, 1, 1.0)
    assert (p4.durations.mean, p4.durations.median, p4.durations.p90) == (11 * H, 12 * H,
                                                                         16 * H)

    # breaches of October's tickets (no. 17's three are September's)
    b = s.breaches
    assert (b.escalations, b.escalated_tickets) == (9, 5)
    assert b.by_kind == {"response": 8, "repair": 1, "other": 0}
    assert b.by_level == {1: 1, 2: 3, 3: 4, 4: 1}

    # repeat failures: no. 1 was reopened once, so cam-1 failed 3 times with 2 tickets
    assert [(d.device, d.tickets, d.reopens, d.failures) for d in s.repeat_failures] == [
        ("cam-4", 3, 0, 3), ("cam-1", 2, 1, 3), ("cam-2", 2, 0, 2), ("cam-3", 2, 0, 2),
        ("sw-1", 2, 0, 2)]
    cam4 = s.repeat_failures[0]
    assert (cam4.kind, cam4.site, cam4.causes, cam4.open) == (
        "fixed_camera", "xs", {"connector_cable": 1, "operator_error": 1}, 1)

    assert [(m.month, m.opened, m.closed) for m in s.trend] == [
        ("2026-08", 0, 0), ("2026-09", 2, 1), ("2026-10", 15, 14)]
    assert s.trend[1].by_cause == {"connector_cable": 1}
    assert s.trend[2].by_cause == {c: n for c, (n, _) in shares(s.by_cause).items() if n}

    # recommendations: which fire, on which figure; power/UPS (1 of 14), model=X1 (2 of 4
    # connector faults) and level 2's 50 % (only 2 responses) do not
    assert [(r.code, r.subject, r.figure) for r in s.recommendations] == [
        ("training", "", 3 / 14),
        ("procurement", "batch=B1", 0.75),
        ("procurement", "vendor=hik", 0.75),
        ("lightning_inspection", "xs", 1.0),
        ("replace_device", "cam-4", 3),
        ("replace_device", "cam-1", 3),
        ("staffing", "level 3", 0.75),
        ("repair_capacity", "level 3", 0.75),
        ("staffing", "level 4", pytest.approx(2 / 3)),
    ]
    training = s.recommendations[0]
    assert "操作失误占已关闭工单的 21%" in training.text_zh
    assert "Operator error is 21% of the closed tickets" in training.text_en
    level4 = s.recommendations[-1].text_zh
    assert "4 级故障响应及时率 67%（2/3，时限 1 个工作日，阈值 90%）" in level4

    d = s.to_dict()
    json.dumps(d)
    assert d["by_cause"][0] == {"key": "operator_error", "count": 3, "share": 0.2143}
    assert d["period"]["start"] == "2026-09-30T16:00:00+00:00"
    assert d["breaches"]["by_level"] == {"1": 1, "2": 3, "3": 4, "4": 1}

    s = await compute(store, POLICY, INVENTORY, month="2026-10", site="xs")
    assert (s.opened, s.closed) == (6, 5)
    assert shares(s.by_cause)["lightning_surge"] == (3, 0.6)
    assert [(r.code, r.subject) for r in s.recommendations] == [
        ("lightning_inspection", "xs"), ("replace_device", "cam-4"),
        ("staffing", "level 3"), ("repair_capacity", "level 3")]  # xs L3: 2 and 3 of 4

    november = await compute(store, POLICY, INVENTORY, month="2026-11")
    assert november.partial and (november.opened, november.closed) == (1, 0)
    assert [m.month for m in november.trend] == ["2026-06", "2026-07", "2026-08", "2026-09",
                                                 "2026-10", "2026-11"]
    days = await compute(store, POLICY, INVENTORY, start="2026-10-01", end="2026-10-05")
    assert days.opened == 3  # no. 5, 6, 1
    assert days.period.label == "2026-10-01..2026-10-05"

    for kwargs, message in [
            ({"month": "2026-13"}, "month '2026-13': use YYYY-MM"),
            ({"month": "2026-12"}, "month 2026-12 is in the future (now it is 2026-11-02)"),
            ({"month": "Oct"}, "use YYYY-MM"),
            ({"month": "2026-10", "site": "nowhere"}, "unknown site 'nowhere'"),
            ({}, "give either month"),
            ({"start": "2026-10-01"}, "start and end go together"),
            ({"start": "2026-10-05", "end": "2026-10-01"}, "is before start"),
            ({"start": "2026-12-01", "end": "2026-12-02"}, "in the future"),
            ({"month": "2026-10", "months": 0}, "months 0")]:
        with pytest.raises(StatisticsInputError, match=message.replace("(", r"\(")
                           .replace(")", r"\)")):
            await compute(store, POLICY, INVENTORY, **kwargs)


def test_business_seconds_and_percentile() -> None:
    office = POLICY.calendar_of(4)
    # Fri 17:00 -> Tue 09:00: 0.5 h + Mon 9 h + 0.5 h
    assert business_seconds(local("2026-10-16 17:00"), local("2026-10-20 09:00"),
                            office) == 10 * H
    assert business_seconds(local("2026-10-17 10:00"), local("2026-10-18 10:00"), office) == 0
    assert business_seconds(local("2026-10-17 10:00"), local("2026-10-18 10:00"), None) == 24 * H
    assert percentile([5, 1, 4, 2, 3, 6, 7, 8, 9, 10], 0.9) == 9
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 0.9) == 10
    assert percentile([7], 0.9) == 7


# -- the API and the CLI, once ----------------------------------------------------------------

@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_api_and_cli(history: tuple[TicketStore, dict[int, int]],
                           tmp_path: Path) -> None:
    store, _ = history
    tokens_file = tmp_path / "tokens.yaml"
    token = add_user(tokens_file, "viewer-1", "viewer")
    source = SimpleNamespace(store=store, policy=POLICY,
                             config=SimpleNamespace(inventory=INVENTORY))
    available: dict[str, Any] = {"source": source}
    app = web.Application()
    add_statistics_routes(app, lambda: available["source"],
                          Authenticator(Users.from_file(tokens_file),
                                        FailureLimiter(burst=1000)))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = "http://{}:{}".format(*runner.addresses[0][:2])
    auth = {"Authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession() as http:
            async def get(query: str, headers: dict[str, str] = auth) -> tuple[int, Any]:
                async with http.get(f"{base}/api/v1/statistics?{query}",
                                    headers=headers) as r:
                    return r.status, await r.json()

            status, body = await get("month=2026-10&months=3")
            assert status == 200, body
            assert (body["opened"], body["closed"]) == (15, 14)
            assert body["recommendations"][0]["code"] == "training"
            for query, message in [
                    ("month=2026-13", "month '2026-13': use YYYY-MM"),
                    ("month=2026-12", "month 2026-12 is in the future"),
                    ("month=2026-10&site=nowhere", "unknown site 'nowhere'"),
                    ("month=2026-10&months=x", "months: an integer 1-36"),
                    ("month=2026-10&colour=red", "unknown parameter(s) ['colour']"),
                    ("month=2026-10&month=2026-09", "give each parameter once")]:
                status, body = await get(query)
                assert (status, message in body["error"]) == (400, True), (query, body)
            status, body = await get("month=2026-10", {})
            assert status == 401
            available["source"] = None
            status, body = await get("month=2026-10")
            assert status == 503
            available["source"] = source

        env = {**os.environ, "PYTHONPATH": str(ROOT), "VIGIL_TOKEN": token}

        async def cli(*args: str) -> tuple[int, str, str]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent.cli", "stats", "--url", base, *args, env=env,
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode or 0, out.decode(), err.decode()

        code, out, err = await cli("--month", "2026-10", "--lang", "en", "--months", "3")
        assert code == 0, err
        assert "Fault statistics 2026-10  site: all sites  (Asia/Shanghai)" in out
        assert "connector/cable     4      28.6%" in out
        assert "cam-1   PTZ camera" in out
        assert "- Device cam-4 failed 3 times in the period" in out
        code, out, err = await cli("--month", "2026-10", "--site", "xs")
        assert code == 0, err
        assert "故障统计 2026-10  站点: xs" in out and "雷击/浪涌" in out
        code, out, err = await cli("--month", "2026-13")
        assert code == 1 and "error (400): month '2026-13': use YYYY-MM" in err
    finally:
        await runner.cleanup()
