"""The owner's monthly report on SQLite and PostgreSQL: a simulated site's October 2026 (clock
injected, no sleeping) written through the real stores, and the exact figures in the report;
the PDF read back with poppler (pdftotext, pdffonts, page 1 to PNG kept in VIGIL_ARTIFACTS,
default build/test-artifacts/reports/), the XLSX with openpyxl; the API on a real aiohttp
server on 127.0.0.1 (errors on both stores), and `vigil report monthly` asking the real agent
(`vigil run`, started once) on the SQLite store.

The site 东湖社区 (dh), all times local (Asia/Shanghai):

* cameras: cam-1 always online; cam-2 offline 02:00-04:00 every day; cam-3 offline 10-16
  October. ups-1 always up. History: hourly buckets, every day of October rolled up.
* tickets (built-in policy: level 3 respond 2 h / repair 24 h, level 2 30 min / 8 h):
  T1 cam-3 L3 10-10 00:00, acknowledged +30 min, repaired +6 h, front-end hardware, closed;
  T2 cam-2 L3 10-12 02:00, acknowledged +3 h (late, escalated), repaired +10 h, connector,
  closed; T3 ups-1 L2 10-20 12:00, acknowledged +20 min, repaired +2 h, power/UPS, closed;
  T4 cam-2 L3 10-25 08:00, acknowledged +1 h, never repaired (open at the month's end).
* UPS ups-1: deep test 15 Aug 30 min, deep test 15 Oct 27 min (10 % shorter), quick test
  16 Oct that failed.
* earthing: ep-room (machine room, ≤ 4 Ω) 3.2 Ω in April, 4.6 Ω on 12 Oct (over its limit);
  ep-pole (≤ 10 Ω) 8.0 Ω on 1 March only (due again 30 Aug: overdue).
* inspections: October's monthly visit done, submitted and signed by the owner (one issue);
  September's left open (overdue); the quarterly Q4 open, not yet due.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import openpyxl
import pytest
from aiohttp import web
from PIL import Image

from agent.auth import Authenticator, FailureLimiter, Users, add_user
from agent.earthing import EarthingPoint
from agent.escalation import builtin_policy
from agent.grounding import GroundingStore, Measurement
from agent.history_store import Batch, HistoryStore
from agent.inspection_schedule import Inspections
from agent.inspections import InspectionService, Row
from agent.inventory import Device, Inventory, Site
from agent.reports.api import MonthlySources, add_report_routes
from agent.reports.charts import cjk_font
from agent.reports.monthly import MonthlyReport, load_monthly_report
from agent.reports.render import ReportRenderer
from agent.state import State
from agent.statistics import StatisticsInputError
from agent.tickets.store import TicketStore
from agent.ups_test import UpsTestStore
from collectors.reading import PollResult, Reading
from tests import peers
from tests.conftest import new_database
from tests.test_daemon import Daemon

ZONE = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("VIGIL_ARTIFACTS", ROOT / "build" / "test-artifacts")) / "reports"
NOW = datetime(2026, 11, 3, 10, 0, tzinfo=ZONE)
CAMERAS = {"cam-1": "fixed_camera", "cam-2": "ptz_camera", "cam-3": "fixed_camera"}
TITLES = {"monthly": ("月度巡检", "Monthly visit"), "quarterly": ("季度巡检", "Quarterly")}


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZONE)


class Clock:
    def __init__(self) -> None:
        self.at = local(2026, 3, 1, 9)

    def __call__(self) -> float:
        return self.at.timestamp()


@dataclass
class Fault:
    key: str
    device: str
    level: int
    rule: str = "CameraOffline"
    site: str = "dh"
    texts: dict[str, dict[str, str]] = field(default_factory=lambda: {
        "summary": {"zh": "设备离线", "en": "device offline"}})
    evidence: dict[str, Any] = field(default_factory=dict)
    fired_at: float | None = None

    @property
    def subject(self) -> str:
        return self.device


def inventory() -> Inventory:
    sites = {"dh": Site(id="dh", name="东湖社区"), "xs": Site(id="xs", name="西山派出所")}
    devices = {d: Device(id=d, kind=k, site="dh", address="127.0.0.1")
               for d, k in {**CAMERAS, "ups-1": "ups", "spd-1": "spd_monitor"}.items()}
    devices["cam-9"] = Device(id="cam-9", kind="fixed_camera", site="xs", address="127.0.0.2")
    points = {"ep-room": EarthingPoint(id="ep-room", site="dh", name="机房联合接地",
                                       kind="machine_room"),
              "ep-pole": EarthingPoint(id="ep-pole", site="dh", name="路口立杆", kind="pole")}
    return Inventory(sites=sites, devices=devices, placed={}, earthing_points=points)


def down(device: str, hour: datetime) -> bool:
    if device == "cam-2":
        return 2 <= hour.hour < 4
    if device == "cam-3":
        return local(2026, 10, 10) <= hour < local(2026, 10, 17)
    return False


async def write_history(url: str, clock: Clock) -> None:
    store = HistoryStore(url, "branch-dh")
    await store.start()
    try:
        rows = []
        start = local(2026, 10, 1)
        for h in range(31 * 24):
            hour = start + timedelta(hours=h)
            for device, kind in {**CAMERAS, "ups-1": "ups"}.items():
                off = down(device, hour)
                rows.append({"device": device, "collector": "device",
                             "start": hour.astimezone(UTC), "seconds": 3600, "site": "dh",
                             "kind": kind, "up_seconds": 0.0 if off else 3600.0,
                             "down_seconds": 3600.0 if off else 0.0, "unknown_seconds": 0.0})
        await store.write(Batch(availability=rows))
        for d in range(31):
            clock.at = local(2026, 10, 2) + timedelta(days=d, minutes=1)
            await store.rollup((start + timedelta(days=d)).date(), ZONE,
                               [*CAMERAS, "ups-1"], clock.at.astimezone(UTC))
    finally:
        await store.dispose()


async def ticket(store: TicketStore, clock: Clock, fault: Fault, opened: datetime,
                 ack: timedelta, repaired: timedelta | None, cause: str = "",
                 escalate: bool = False) -> int:
    clock.at = opened
    t, _ = await store.open_for_fault(fault)
    if escalate:
        clock.at = opened + timedelta(hours=2, minutes=1)
        await store.escalate(t.id, store.actor, fault.level - 1,
                             {"seq": 1, "breach": "response", "tier": "team_lead",
                              "limit": "2h"})
    clock.at = opened + ack
    await store.acknowledge(t.id, "zhang.wei")
    await store.diagnose(t.id, "zhang.wei", "现场检查")
    await store.start_repair(t.id, "zhang.wei")
    if repaired is not None:
        clock.at = opened + repaired
        await store.resolve(t.id, "zhang.wei", cause, "更换")
        clock.at += timedelta(hours=20)
        await store.confirm(t.id, "li.owner", "验收合格")
        await store.close(t.id, "li.owner")
    return t.id


async def simulate(url: str) -> None:
    clock = Clock()
    inv = inventory()
    grounding = GroundingStore(url, clock)
    await grounding.start()  # migrates the whole database
    try:
        for point, at, ohm in (("ep-pole", local(2026, 3, 1, 10), 8.0),
                               ("ep-room", local(2026, 4, 10, 10), 3.2),
                               ("ep-room", local(2026, 10, 12, 10), 4.6)):
            clock.at = at + timedelta(hours=1)
            await grounding.record([Measurement(point, ohm, at, "UT521", "wang.li", "晴")],
                                   inv.earthing_points, "wang.li", "api")
    finally:
        await grounding.dispose()
    ups = UpsTestStore(url, "branch-dh", clock, migrate=False)
    try:
        for kind, at, minutes, result in (("deep", local(2026, 8, 15, 9), 30, "pass"),
                                          ("deep", local(2026, 10, 15, 9), 27, "pass"),
                                          ("quick", local(2026, 10, 16, 9), 5, "error")):
            clock.at = at + timedelta(hours=1)
            await ups.record_manual("dh", "ups-1", kind, "wang.li", at,
                                    at + timedelta(minutes=minutes), minutes * 60.0, result, "")
    finally:
        await ups.dispose()
    await write_history(url, clock)
    async with TicketStore(url, "branch-dh", clock, migrate=False) as store:
        await ticket(store, clock, Fault("CameraOffline:cam-3", "cam-3", 3),
                     local(2026, 10, 10), timedelta(minutes=30), timedelta(hours=6),
                     "front_end_hardware")
        await ticket(store, clock, Fault("CameraOffline:cam-2", "cam-2", 3),
                     local(2026, 10, 12, 2), timedelta(hours=3), timedelta(hours=10),
                     "connector_cable", escalate=True)
        await ticket(store, clock, Fault("UpsOnBattery:ups-1", "ups-1", 2, "UpsOnBattery"),
                     local(2026, 10, 20, 12), timedelta(minutes=20), timedelta(hours=2),
                     "power_ups")
        await ticket(store, clock, Fault("PtzStuck:cam-2", "cam-2", 3, "PtzStuck"),
                     local(2026, 10, 25, 8), timedelta(hours=1), None)
        state = State()
        state.sync(inv)
        settings = Inspections()
        service = InspectionService(store, lambda: settings, lambda: state, providers={})
        clock.at = local(2026, 9, 2)
        await service.create("dh", "monthly", "2026-09", "agent")  # never done: overdue
        clock.at = local(2026, 10, 1, 0, 5)
        october, _ = await service.create("dh", "monthly", "2026-10", "agent")
        await service.create("dh", "quarterly", "2026-Q4", "agent")
        clock.at = local(2026, 10, 20, 15)
        sheet = (await service.get(october.id))["sheet"]
        rows = [Row(i, r["item"], r["device"], "ok") for i, r in enumerate(sheet["checklist"])]
        rows[0] = Row(0, rows[0].item, rows[0].device, "issue", "机柜门锁锈蚀")
        await service.record(october.id, "wang.li", rows)
        await service.submit(october.id, "wang.li")
        clock.at = local(2026, 10, 22, 10)
        await service.sign(october.id, "li.owner")


def spd_state(inv: Inventory) -> State:
    state = State()
    state.sync(inv)
    t = NOW.timestamp()
    state.update(PollResult("spd-1", t, 0.1, True, collector="snmp", readings=[
        Reading("spd-1", "spd_status", {"module": "1"}, 1.0, t),
        Reading("spd-1", "spd_strikes_total", {}, 5.0, t)]))
    return state


async def load(url: str, **kwargs: Any) -> MonthlyReport:
    inv = inventory()
    async with TicketStore(url, "branch-dh", lambda: NOW.timestamp(), migrate=False) as store:
        return await load_monthly_report(store, builtin_policy(), inv, "2026-10",
                                         timezone="Asia/Shanghai", state=spd_state(inv),
                                         inspection_titles=TITLES, **kwargs)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def month(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> dict[str, Any]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('monthly') / 'tickets.db'}"
    else:
        url = new_database(request.getfixturevalue("postgres_server"))
    asyncio.run(simulate(url))
    report = asyncio.run(load(url, site="dh"))
    return {"url": url, "backend": request.param, "report": report,
            "renderer": ReportRenderer()}


# -- the figures ------------------------------------------------------------------------------

def test_exact_figures(month: dict[str, Any]) -> None:
    r: MonthlyReport = month["report"]
    s = r.stats
    assert (r.period.label, r.site, s.opened, s.closed) == ("2026-10", "dh", 4, 3)
    assert r.period.start == local(2026, 10, 1) and r.period.end == local(2026, 11, 1)
    assert {x.key: x.count for x in s.by_cause if x.count} == {
        "front_end_hardware": 1, "connector_cable": 1, "power_ups": 1}
    level3 = next(t for t in s.times if t.level == 3)
    assert (level3.tickets, level3.respond.within, level3.respond.missed) == (3, 2, 1)
    assert level3.respond.durations.mean == 90 * 60 and level3.respond.durations.p90 == 180 * 60
    assert (level3.repair.within, level3.repair.missed) == (2, 1)  # T4 overdue
    assert r.mean_time("respond") == 72.5 * 60  # (30 + 180 + 60 + 20) / 4 minutes
    assert r.mean_time("repair") == 360 * 60  # (360 + 600 + 120) / 3 minutes
    assert s.breaches.escalations == 1
    assert [(d.device, d.failures) for d in s.repeat_failures] == [("cam-2", 2)]
    october = dict(r.level_trend)["2026-10"]
    assert october == {2: 1, 3: 3} and len(r.level_trend) == 12
    assert r.level_trend[0][0] == "2025-11"
    [rates] = r.rates
    assert rates.online.cameras == 3
    assert (rates.online.up, rates.online.down) == (2002 * 3600, 230 * 3600)
    assert rates.online.rate == pytest.approx(2002 / 2232)
    assert (rates.good.counted, rates.good.good) == (124, 109)
    assert r.open_tickets.by_level == {3: 1}
    assert [(i["period"], i["kind"], i["state"], i["overdue"]) for i in r.inspections] == [
        ("2026-09", "monthly", "open", True), ("2026-10", "monthly", "signed", False),
        ("2026-Q4", "quarterly", "open", False)]
    signed = next(i for i in r.inspections if i["state"] == "signed")
    assert signed["signed_by"] == "li.owner" and signed["issues"] == 1
    assert [(x["kind"], x["result"], x["discharge_seconds"], x["drop_ratio"])
            for x in r.ups_tests] == [("deep", "pass", 1620.0, 0.1),
                                      ("quick", "error", 300.0, None)]
    assert [e["discharge_seconds"] for e in r.ups_trend["ups-1"]] == [1800.0, 1620.0, 300.0]
    points = {p.point: p for p in r.grounding}
    room, pole = points["ep-room"], points["ep-pole"]
    assert (room.latest.ohm, room.over_limit, room.overdue, len(room.in_month)) == \
        (4.6, True, False, 1)
    assert (pole.latest.ohm, pole.over_limit, pole.overdue, pole.in_month) == \
        (8.0, False, True, [])
    assert [x["status"] for x in r.spd] == ["ok"] and r.spd[0]["strikes_total"] == 5.0
    kinds = [what for what, _, _ in r.open_items("en")]
    assert kinds == ["Ticket not closed", "Inspection overdue", "Earthing point",
                     "Earthing point", "UPS test failed"]


async def test_all_sites_and_bad_input(month: dict[str, Any]) -> None:
    everything = await load(month["url"])
    assert [x.site for x in everything.rates] == ["dh", "xs"]
    assert everything.rates[1].online.rate is None  # cam-9 has no history: no figure
    assert everything.stats.opened == 4
    for kwargs, words in (({"site": "nowhere"}, "unknown site 'nowhere'"),
                          ({"site": " "}, "site: give a site id")):
        with pytest.raises(StatisticsInputError, match=words):
            await load(month["url"], **kwargs)
    inv = inventory()
    async with TicketStore(month["url"], "x", lambda: NOW.timestamp(), migrate=False) as store:
        for bad, words in (("2026-13", "month '2026-13'"), ("2026-12", "in the future"),
                           ("Oct", "month 'Oct'")):
            with pytest.raises(StatisticsInputError, match=words):
                await load_monthly_report(store, builtin_policy(), inv, bad)


# -- HTML, PDF, XLSX -----------------------------------------------------------------------

def test_html_and_english(month: dict[str, Any]) -> None:
    html = month["renderer"].render(month["report"], "html").body.decode()
    for fact in ("运维月报", "东湖社区（dh）", "2026-10", "89.70%", "87.90%", "360.0", "72.5",
                 "接头/线缆质量", "前端设备硬件", "cam-2", "ep-room", "4.6", "已签认",
                 "li.owner", "逾期", "UPS 测试未通过", "月末未关闭工单 1 单", "失败"):
        assert fact in html, fact
    assert html.count("data:image/svg+xml;base64,") == 5  # causes, trend, online, UPS, earth
    english = month["renderer"].render(month["report"], "html", "en").body.decode()
    for fact in ("Monthly Maintenance Report", "Camera online rate", "89.70%",
                 "Inspection overdue", "signed off"):
        assert fact in english, fact
    assert "运维月报" not in english


def test_no_data_charts_are_left_out(month: dict[str, Any]) -> None:
    r: MonthlyReport = month["report"]
    empty = MonthlyReport(**{**r.__dict__, "rates": [], "ups_trend": {}, "grounding": [],
                             "level_trend": [(m, {}) for m, _ in r.level_trend]})
    charts = empty.charts("zh")
    assert charts["online"] is None and charts["ups"] is None and charts["grounding"] is None
    html = month["renderer"].render(empty, "html").body.decode()
    assert "各站点摄像机在线率（%） — 无数据" in html and "接地电阻趋势 — 无数据" in html


def test_long_tables_are_capped_in_the_pdf(month: dict[str, Any]) -> None:
    """70 UPS tests: the 60 most notable (failed first) in the HTML/PDF, all in the XLSX."""
    r: MonthlyReport = month["report"]
    ok, failed = r.ups_tests
    many = MonthlyReport(**{**r.__dict__, "ups_tests": [
        {**ok, "id": 100 + i, "device": f"ups-{i:02d}"} for i in range(69)] + [failed]})
    html = month["renderer"].render(many, "html").body.decode()
    assert "另有 10 行未列出，见 XLSX。" in html and ">ups-1<" in html  # the failed one
    book = openpyxl.load_workbook(io.BytesIO(month["renderer"].render(many, "xlsx").body))
    assert book["UPS测试"].max_row == 71


def test_pdf(month: dict[str, Any]) -> None:
    pdftotext, pdftoppm = peers.program("pdftotext"), peers.program("pdftoppm")
    pdffonts = peers.program("pdffonts")
    if cjk_font() is None:
        peers.missing("no CJK font (apt-get install fonts-wqy-microhei)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = month["renderer"].render(month["report"], "pdf")
    assert out.filename == "运维月报-dh-2026-10.pdf"
    pdf = ARTIFACTS / f"monthly-{month['backend']}.pdf"
    pdf.write_bytes(out.body)
    text = subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    for fact in ("运维月报", "东湖社区", "2026-10", "89.70%", "87.90%", "360.0", "72.5",
                 "月末未关闭工单 1 单", "ep-room", "业主单位"):
        assert fact in text, fact
    fonts = subprocess.run([pdffonts, str(pdf)], capture_output=True, text=True,
                           check=True).stdout
    assert "WenQuanYi" in fonts or "CJK" in fonts, fonts
    subprocess.run([pdftoppm, "-r", "70", "-f", "1", "-l", "2", "-png", str(pdf),
                    str(ARTIFACTS / f"monthly-{month['backend']}-page")], check=True)
    png = sorted(ARTIFACTS.glob(f"monthly-{month['backend']}-page*.png"))[0]
    grey = Image.open(png).convert("L")
    assert grey.size[0] < grey.size[1]
    assert sum(grey.histogram()[:128]) > 0.01 * grey.size[0] * grey.size[1]


def test_xlsx_holds_numbers(month: dict[str, Any]) -> None:
    body = month["renderer"].render(month["report"], "xlsx").body
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert book.sheetnames[:3] == ["概况", "故障原因", "设备类型"]
    assert {"在线率与完好率", "巡检", "UPS测试", "接地点", "遗留问题"} <= set(book.sheetnames)
    summary = {row[0]: row[1] for row in book["概况"].iter_rows(min_row=2, values_only=True)}
    assert summary["本月新增故障（工单）"] == 4 and summary["平均修复时间（分钟）"] == 360.0
    assert summary["摄像机在线率"] == pytest.approx(2002 / 2232)
    assert book["概况"]["B6"].number_format == "0.00%"
    [rates] = list(book["在线率与完好率"].iter_rows(min_row=2, values_only=True))
    assert rates[0] == "dh" and rates[2] == 3 and rates[3] == 2002.0 and rates[8] == 109
    ups = list(book["UPS测试"].iter_rows(min_row=2, values_only=True))
    assert [(u[7], u[9]) for u in ups] == [(27.0, 0.1), (5.0, None)]
    assert isinstance(ups[0][5], datetime)
    earth = {row[0]: row for row in book["接地点"].iter_rows(min_row=2, values_only=True)}
    assert earth["ep-room"][4:6] == (4.0, 4.6) and earth["ep-room"][8] is True


# -- API and CLI ----------------------------------------------------------------------------

@pytest.fixture
async def server(month: dict[str, Any], tmp_path: Path):
    tokens_file = tmp_path / "tokens.yaml"
    token = add_user(tokens_file, "viewer-1", "viewer")
    store = TicketStore(month["url"], "branch-dh", lambda: NOW.timestamp(), migrate=False)
    await store.start()
    inv = inventory()
    app = web.Application()
    add_report_routes(app, lambda: store, Authenticator(Users.from_file(tokens_file),
                                                        FailureLimiter(burst=1000)),
                      monthly=lambda: MonthlySources(store, builtin_policy(), inv,
                                                     "Asia/Shanghai", spd_state(inv), TITLES))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", token
    finally:
        await runner.cleanup()
        await store.dispose()


async def cli(*args: str, token: str, cwd: Path) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIGIL_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "report", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_api(server: tuple[str, str]) -> None:
    base, token = server
    url = f"{base}/api/v1/reports/monthly"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.get(url, params={"site": "dh", "month": "2026-10", "lang": "en",
                                         "format": "xlsx"}) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Disposition"].startswith(
                'attachment; filename="monthly-report-dh-2026-10.xlsx"')
            book = openpyxl.load_workbook(io.BytesIO(await r.read()))
            assert book.sheetnames[0] == "Summary"
        for params, words in (
                ({"month": "2026-13"}, "month '2026-13'"),
                ({"month": "2027-01"}, "month 2027-01 is in the future"),
                ({}, "month: required"),
                ({"month": "2026-10", "site": "nowhere"}, "unknown site 'nowhere'"),
                ({"month": "2026-10", "format": "doc"}, "format: one of html, pdf, xlsx"),
                ({"month": "2026-10", "size": "a3"}, "unknown parameter(s) ['size']"),
                ({"month": ["2026-10", "2026-09"]}, "month: give it once")):
            async with http.get(url, params=params) as r:
                assert r.status == 400 and words in (await r.json())["error"], params
    async with aiohttp.ClientSession() as http, http.get(url, params={"month": "2026-10"}) as r:
        assert r.status == 401


def test_the_route_is_in_the_spec() -> None:
    from agent.reports.api import MONTHLY_PARAMS
    from agent.tickets_api import openapi

    operation = openapi()["paths"]["/api/v1/reports/monthly"]["get"]
    assert {p["name"] for p in operation["parameters"]} == MONTHLY_PARAMS
    assert {"200", "400", "401", "503"} <= set(operation["responses"])


INVENTORY_YAML = """\
sites:
  - {id: dh, name: 东湖社区}
  - {id: xs, name: 西山派出所}
devices:
  - {id: cam-1, kind: fixed_camera, site: dh, address: 127.0.0.1, snmp: false,
     enabled: false}
  - {id: cam-2, kind: ptz_camera, site: dh, address: 127.0.0.1, snmp: false,
     enabled: false}
  - {id: cam-3, kind: fixed_camera, site: dh, address: 127.0.0.1, snmp: false,
     enabled: false}
  - {id: ups-1, kind: ups, site: dh, address: 127.0.0.1, snmp: false,
     enabled: false}
  - {id: spd-1, kind: spd_monitor, site: dh, address: 127.0.0.1, snmp: false,
     enabled: false}
  - {id: cam-9, kind: fixed_camera, site: xs, address: 127.0.0.2, snmp: false,
     enabled: false}
earthing_points:
  - {id: ep-room, site: dh, name: 机房联合接地, kind: machine_room}
  - {id: ep-pole, site: dh, name: 路口立杆, kind: pole}
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory):
    """The real agent (`vigil run`) on a store holding the simulated month, once."""
    work = tmp_path_factory.mktemp("agent")
    db = work / "tickets.db"
    asyncio.run(simulate(f"sqlite+aiosqlite:///{db}"))
    (work / "inventory.yaml").write_text(INVENTORY_YAML)
    (work / "credentials.yaml").write_text("credentials: {}\n")
    (work / "credentials.yaml").chmod(0o600)
    port = peers.free_port(socket.SOCK_STREAM)
    (work / "agent.yaml").write_text(
        f"agent: {{id: branch-dh}}\nlisten: 127.0.0.1:{port}\nstate_dir: state\n"
        f"tickets: {{url: 'sqlite+aiosqlite:///{db}'}}\n")
    token = add_user(work / "tokens.yaml", "owner-1", "owner")
    daemon = Daemon(work / "agent.yaml")
    try:
        daemon.wait_for(lambda: urllib.request.urlopen(daemon.url + "/-/ready",
                                                       timeout=2).status == 200,
                        what="the agent to be ready")
        yield work, token
    finally:
        daemon.stop()


async def test_the_running_agent_serves_it(agent: tuple[Path, str], tmp_path: Path) -> None:
    """`vigil report monthly` asks the agent named in agent.yaml (its `listen`)."""
    work, token = agent
    config = str(work / "agent.yaml")
    code, _, err = await cli("-c", config, "monthly", "--site", "dh", "--month", "2026-10",
                               token=token, cwd=tmp_path)
    assert code == 0, err
    pdf = tmp_path / "运维月报-dh-2026-10.pdf"
    text = subprocess.run([peers.program("pdftotext"), "-layout", str(pdf), "-"],
                          capture_output=True, text=True, check=True).stdout
    for fact in ("运维月报", "东湖社区（dh）", "89.70%", "87.90%", "360.0", "月度巡检",
                 "机房联合接地", "spd-1"):
        assert fact in text, fact
    code, _, err = await cli("-c", config, "monthly", "--month", "2026-10", "--format",
                               "xlsx", "--lang", "en", token=token, cwd=tmp_path)
    assert code == 0, err
    book = openpyxl.load_workbook(tmp_path / "monthly-report-all-sites-2026-10.xlsx")
    rates = {row[0]: row for row in book["Online and good-order"].iter_rows(
        min_row=2, values_only=True)}
    assert rates["dh"][6] == pytest.approx(2002 / 2232) and rates["xs"][6] is None
    code, _, err = await cli("-c", config, "monthly", "--month", "2026-1", token=token,
                             cwd=tmp_path)
    assert code == 1 and "error (400): month '2026-1'" in err
