"""Reports: a ticket lived through its whole life in a real store (SQLite file, injected
clock), its diagnosis and maintenance report rendered as HTML, PDF (read back with
poppler's pdftotext, a page rendered to PNG with pdftoppm and kept in the test's tmp dir)
and XLSX (opened with openpyxl); the API on a real aiohttp server on 127.0.0.1 and
`vigil report` once each."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import aiohttp
import openpyxl
import pytest
from aiohttp import web
from PIL import Image

from agent.auth import Authenticator, FailureLimiter, Users, add_user
from agent.escalation import builtin_policy
from agent.reports.api import add_report_routes
from agent.reports.charts import bar_chart, cjk_font, line_chart
from agent.reports.render import ReportRenderer
from agent.reports.ticket import TicketReport, load_ticket_report
from agent.tickets.store import TicketStore
from tests import peers

T0 = 1_780_000_000.0  # 2026-05-29 04:26:40 in Shanghai
TZ = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parents[1]
INVENTORY = SimpleNamespace(
    sites={"dh": SimpleNamespace(name="东湖社区")},
    devices={"ups-1": SimpleNamespace(name="机房UPS", kind="ups")})
DIAGNOSIS = "市电输入断路器跳闸 <script>alert(1)</script>"


@dataclass
class Fault:
    key: str = "UpsOnBattery:ups-1"
    rule: str = "UpsOnBattery"
    site: str = "dh"
    device: str = "ups-1"
    subject: str = "ups-1"
    level: int = 3
    texts: dict[str, dict[str, str]] = field(default_factory=lambda: {
        "summary": {"zh": "UPS 电池供电", "en": "UPS on battery"}})
    evidence: dict[str, Any] = field(default_factory=lambda: {
        "at": T0 - 5, "inputs": {"on_battery": True, "input_voltage": 0.0},
        "collectors": {"snmp": {"up": 1, "reason": "", "detail": "", "at": T0 - 5}},
        "readings": [["vigil_ups_input_voltage_volts", {"line": "1"}, 0.0],
                     ["vigil_ups_battery_charge_ratio", {}, 0.93],
                     ["vigil_ups_battery_runtime_seconds", {}, 1260]]})
    fired_at: float | None = T0 - 30


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def whole_life(store: TicketStore, clock: Clock) -> int:
    """Open -> escalated (response limit of level 3, 2 h, missed) -> acknowledged ->
    diagnosed -> repairing -> the device recovers -> repair recorded -> confirmed -> closed."""
    ticket, _ = await store.open_for_fault(Fault())
    await store.record(ticket.id, "notified", {"kind": "opened", "seq": 0,
                                               "channels": ["wecom-tech"]})
    clock.now += 2 * 3600 + 60
    await store.escalate(ticket.id, store.actor, 2, {
        "seq": 1, "breach": "response", "at": "2026-05-29T06:26:40+08:00",
        "tier": "team_lead", "limit": "2h"})
    await store.record(ticket.id, "notified", {"kind": "escalated", "seq": 1,
                                               "channels": ["wecom-lead", "mail"]})
    clock.now += 600  # 06:37:40
    await store.acknowledge(ticket.id, "zhang.wei", "已到场")
    clock.now += 900
    await store.diagnose(ticket.id, "zhang.wei", DIAGNOSIS, "复位断路器，更换浪涌保护模块")
    await store.start_repair(ticket.id, "zhang.wei")  # 06:52:40
    clock.now += 2700
    await store.fault_resolved(Fault().key, clock.now - 120)  # healthy since 07:35:40
    clock.now += 300
    await store.resolve(ticket.id, "zhang.wei", "power_ups", "复位断路器，更换浪涌保护模块",
                        ["浪涌保护模块 SPD-40"])  # 07:42:40: 50 min of repair
    clock.now += 86400
    await store.confirm(ticket.id, "li.owner", "验收合格")
    await store.close(ticket.id, "li.owner")
    return ticket.id


async def _build(db: Path) -> tuple[TicketReport, ...]:
    clock = Clock()
    async with TicketStore(f"sqlite+aiosqlite:///{db}", "branch-dh", clock) as store:
        ticket_id = await whole_life(store, clock)
        fresh, _ = await store.open_for_fault(Fault(key="CameraDown:cam-9", rule="CameraDown",
                                                    device="cam-9", level=3, evidence={}))
        back = Fault(key="SpdDegraded:spd-1", rule="SpdDegraded", device="spd-1", level=3)
        returned, _ = await store.open_for_fault(back)
        await store.acknowledge(returned.id, "zhang.wei")
        await store.diagnose(returned.id, "zhang.wei", "防雷模块老化")
        await store.start_repair(returned.id, "zhang.wei")
        await store.resolve(returned.id, "zhang.wei", "lightning_surge", "更换防雷模块")
        clock.now += 600
        await store.open_for_fault(back)  # the fault is back: the ticket reopens
        clock.now += 3 * 3600  # the response limits have passed, nobody acknowledged
        reports = [await load_ticket_report(store, i, policy=builtin_policy(),
                                            inventory=INVENTORY, tz=TZ)
                   for i in (ticket_id, fresh.id, returned.id)]
    return tuple(reports)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    db = tmp_path_factory.mktemp("reports") / "tickets.db"
    done, open_one, reopened = asyncio.run(_build(db))
    return {"db": db, "done": done, "open": open_one, "reopened": reopened,
            "renderer": ReportRenderer(), "pdf": {}}


def _pdf(built: dict[str, Any], lang: str = "zh") -> bytes:
    if lang not in built["pdf"]:  # one rendering per language for the whole module
        built["pdf"][lang] = built["renderer"].render(built["done"], "pdf", lang).body
    return built["pdf"][lang]


def local(hhmm: str, day: int = 29) -> str:
    return f"2026-05-{day:02d} {hhmm}"


# -- HTML -----------------------------------------------------------------------------------

def test_html_holds_the_facts(built: dict[str, Any]) -> None:
    out = built["renderer"].render(built["done"], "html")
    assert out.content_type == "text/html; charset=utf-8"
    html = out.body.decode()
    for fact in ("故障诊断与维修报告", "东湖社区（dh）", "机房UPS（ups-1）", "UPS 电池供电",
                 "三级（部分设备故障）", "二级（严重影响业务）", "供电/UPS",
                 "复位断路器，更换浪涌保护模块", "浪涌保护模块 SPD-40", "zhang.wei", "li.owner",
                 "验收合格", "vigil_ups_battery_charge_ratio", "0.93", "1260",
                 "超时升级 1 次", "三级 → 二级", "响应超时", "team_lead", "wecom-lead、mail",
                 "系统（branch-dh）", "已关闭"):
        assert fact in html, fact
    assert f"开单时间</th><td>{local('04:26')}" in html
    assert f"响应时间</th><td>{local('06:37')}" in html
    assert f"设备自 {local('07:35')} 起运行正常" in html
    assert "维修用时</th><td>50分" in html  # repair_started 06:52:40 -> resolved 07:42:40
    # response: 2 h 11 min against 2 h (breached); repair: 3 h 16 min against 24 h (met)
    assert "2小时11分" in html and "3小时16分" in html
    assert html.count('class="bad">超时</td>') == 1 and 'class="ok">达标</td>' in html
    assert "data:image/svg+xml;base64," in html  # the time-vs-limit chart
    assert "<script>" not in html and "&lt;script&gt;" in html  # people's text is data


def test_english(built: dict[str, Any]) -> None:
    html = built["renderer"].render(built["done"], "html", "en").body.decode()
    for heading in ("Fault Diagnosis and Maintenance Report", "2. Scene record",
                    "3. Level and emergency handling log", "7. Test after repair",
                    "8. Owner&#39;s confirmation", "Level 3 (some devices faulty)",
                    "power/UPS", "Device healthy since 2026-05-29 07:35",
                    "system (branch-dh)", "escalated 1 time(s)"):
        assert heading in html, heading
    assert "故障诊断与维修报告" not in html
    assert 'lang="en"' in html


def test_a_ticket_still_open(built: dict[str, Any]) -> None:
    html = built["renderer"].render(built["open"], "html").body.decode()
    for fact in ("尚未诊断", "尚未记录维修", "设备尚未确认恢复", "业主尚未确认", "无现场记录",
                 'class="bad">已超时</td>', 'class="muted">进行中</td>'):
        assert fact in html, fact
    assert "data:image/svg+xml" not in html  # nothing measured yet: no chart


def test_a_reopened_ticket(built: dict[str, Any]) -> None:
    """Diagnosis, repair and limits are those of the current cycle; the log keeps all."""
    html = built["renderer"].render(built["reopened"], "html").body.decode()
    assert "本工单曾重新打开 1 次" in html and "故障复发" in html
    assert "防雷模块老化" in html and "更换防雷模块" in html  # in the log
    assert "尚未诊断" in html and "尚未记录维修" in html  # the current cycle
    assert 'class="bad">已超时</td>' in html


def test_bad_format_and_language(built: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="format 'doc'"):
        built["renderer"].render(built["done"], "doc")
    with pytest.raises(ValueError, match="lang 'fr'"):
        built["renderer"].render(built["done"], "html", "fr")


# -- PDF ------------------------------------------------------------------------------------

def _cjk_font_installed() -> None:
    if cjk_font() is None:
        peers.missing("no CJK font (apt-get install fonts-wqy-microhei)")


def test_pdf_text_fonts_and_page(built: dict[str, Any], tmp_path: Path) -> None:
    pdftotext, pdftoppm = peers.program("pdftotext"), peers.program("pdftoppm")
    pdffonts = peers.program("pdffonts")
    _cjk_font_installed()
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(_pdf(built))
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    for fact in ("故障诊断与维修报告", "东湖社区", "ups-1", "机房UPS", "供电/UPS",
                 "浪涌保护模块 SPD-40", local("04:26"), local("06:37"), local("07:42"),
                 "验收合格", "维修单位签字", "业主单位签字"):
        assert fact in text, fact
    fonts = subprocess.run([pdffonts, str(pdf)], capture_output=True, text=True,
                           check=True).stdout
    assert "WenQuanYi" in fonts or "CJK" in fonts, fonts  # glyphs, not boxes
    subprocess.run([pdftoppm, "-r", "60", "-f", "1", "-l", "1", "-png", str(pdf),
                    str(tmp_path / "page")], check=True)
    [png] = tmp_path.glob("page*.png")  # kept: the test artefact to look at
    grey = Image.open(png).convert("L")
    dark = sum(grey.histogram()[:128])
    assert grey.size[0] < grey.size[1]  # A4 portrait
    assert dark > 0.01 * grey.size[0] * grey.size[1], "page 1 is (nearly) blank"


def test_pdf_english(built: dict[str, Any], tmp_path: Path) -> None:
    pdftotext = peers.program("pdftotext")
    pdf = tmp_path / "report-en.pdf"
    pdf.write_bytes(_pdf(built, "en"))
    text = subprocess.run([pdftotext, str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "Fault Diagnosis and Maintenance Report" in text and "东湖社区" in text


# -- XLSX -----------------------------------------------------------------------------------

def test_xlsx_holds_numbers(built: dict[str, Any]) -> None:
    out = built["renderer"].render(built["done"], "xlsx")
    assert out.content_type.endswith("spreadsheetml.sheet")
    book = openpyxl.load_workbook(io.BytesIO(out.body))
    assert book.sheetnames == ["工单信息", "现场记录", "处置记录", "时限考核", "诊断与维修"]
    for ws in book:
        assert ws.freeze_panes == "A2" and ws["A1"].font.bold
        assert ws.column_dimensions["B"].width >= 8
    assert book["工单信息"].column_dimensions["B"].width > 20  # the longest text
    header = {row[0]: row[1] for row in book["工单信息"].iter_rows(min_row=2, values_only=True)}
    assert header["工单编号"] == built["done"].ticket.id and header["站点"] == "东湖社区（dh）"
    assert header["开单时间"] == datetime(2026, 5, 29, 4, 26, 40)  # local time, a real date
    scene = {row[1]: row[3] for row in book["现场记录"].iter_rows(min_row=2, values_only=True)}
    assert scene["vigil_ups_battery_charge_ratio"] == 0.93
    assert scene["vigil_ups_battery_runtime_seconds"] == 1260
    assert scene["on_battery"] is True
    limits = list(book["时限考核"].iter_rows(min_row=2, values_only=True))
    assert limits[0][:3] == ("响应", "2小时", 120.0) and limits[0][6] == 131.0
    assert limits[0][7] == "超时" and limits[1][7] == "达标"
    assert limits[1][2] == 1440.0 and limits[1][6] == 196.0
    assert isinstance(limits[0][4], datetime)
    repair = {row[0]: row[1] for row in book["诊断与维修"].iter_rows(min_row=2,
                                                                    values_only=True)}
    assert repair["维修用时 (用时（分钟）)"] == 50.0 and repair["确认人"] == "li.owner"
    log = list(book["处置记录"].iter_rows(min_row=2, values_only=True))
    assert [r[2] for r in log][:3] == ["故障发生、开单", "已通知", "超时升级"]


def test_xlsx_english_sheets(built: dict[str, Any]) -> None:
    body = built["renderer"].render(built["done"], "xlsx", "en").body
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert book.sheetnames == ["Ticket", "Scene record", "Handling log", "Time limits",
                               "Diagnosis and repair"]


# -- charts ---------------------------------------------------------------------------------

def test_charts() -> None:
    _cjk_font_installed()
    bars = bar_chart(["人为操作失误", "供电/UPS", "网络"], {"故障数": [3, 5, 2]},
                     title="按原因统计", fmt="png")
    image = Image.open(io.BytesIO(bars.data))
    assert bars.mime == "image/png" and image.size[0] > 300
    assert image.convert("L").getextrema()[0] < 100  # bars were drawn
    days = [datetime(2026, m, 1, tzinfo=UTC) for m in range(1, 7)]
    line = line_chart({"放电时间": [(d, 30 - i) for i, d in enumerate(days)]},
                      title="UPS 放电时间趋势", unit="分钟", limit=26, limit_label="下限", tz=TZ)
    assert line.mime == "image/svg+xml" and line.data.startswith(b"<?xml")
    assert line.data_uri.startswith("data:image/svg+xml;base64,")
    assert line_chart({"x": [(d, 1.0) for d in days]}, tz=TZ).data == \
        line_chart({"x": [(d, 1.0) for d in days]}, tz=TZ).data  # reproducible


# -- API and CLI ----------------------------------------------------------------------------

@pytest.fixture
async def server(built: dict[str, Any], tmp_path: Path):
    tokens_file = tmp_path / "tokens.yaml"
    tokens = {role: add_user(tokens_file, f"{role}-1", role) for role in ("viewer", "owner")}
    store = TicketStore(f"sqlite+aiosqlite:///{built['db']}", "branch-dh", lambda: T0 + 2e5)
    await store.start()
    app = web.Application()
    add_report_routes(app, lambda: store, Authenticator(Users.from_file(tokens_file),
                                                        FailureLimiter(burst=1000)),
                      policy=builtin_policy, inventory=lambda: INVENTORY, tz=TZ)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", tokens
    finally:
        await runner.cleanup()
        await store.dispose()


async def test_api(server: tuple[str, dict[str, str]], built: dict[str, Any]) -> None:
    base, tokens = server
    ticket_id = built["done"].ticket.id
    url = f"{base}/api/v1/reports/tickets/{ticket_id}"
    auth = {"Authorization": f"Bearer {tokens['viewer']}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.get(url, params={"format": "pdf"}) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"] == "application/pdf"
            disposition = r.headers["Content-Disposition"]
            assert disposition == (
                f"inline; filename=\"fault-report-{ticket_id}.pdf\"; "
                f"filename*=UTF-8''{quote(f'故障诊断与维修报告-{ticket_id}.pdf')}")
            assert (await r.read()).startswith(b"%PDF-")
        async with http.get(url, params={"lang": "en"}) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
            assert "Fault Diagnosis and Maintenance Report" in await r.text()
        async with http.get(url, params={"format": "xlsx"}) as r:
            assert r.headers["Content-Disposition"].startswith("attachment;")
        for params, status, words in (
                ({"format": "doc"}, 400, "format: one of html, pdf, xlsx"),
                ({"lang": "fr"}, 400, "lang: one of zh, en"),
                ({"format": ["pdf", "html"]}, 400, "format"),
                ({"size": "a3"}, 400, "unknown parameter(s) ['size']")):
            async with http.get(url, params=params) as r:
                assert r.status == status and words in (await r.json())["error"]
        async with http.get(f"{base}/api/v1/reports/tickets/999") as r:
            assert r.status == 404 and (await r.json())["error"] == "no ticket 999"
        async with http.get(f"{base}/api/v1/reports/tickets/abc") as r:
            assert r.status == 400
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        assert r.status == 401


async def cli(*args: str, token: str, cwd: Path) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIGIL_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "report", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli(server: tuple[str, dict[str, str]], built: dict[str, Any],
                   tmp_path: Path) -> None:
    base, tokens = server
    ticket_id = built["done"].ticket.id
    code, out, err = await cli("--url", base, "ticket", str(ticket_id), "--format", "xlsx",
                               token=tokens["owner"], cwd=tmp_path)
    assert code == 0, err
    written = tmp_path / f"故障诊断与维修报告-{ticket_id}.xlsx"  # the server's name
    assert out.startswith(written.name)
    assert openpyxl.load_workbook(written).sheetnames[0] == "工单信息"
    code, _, err = await cli("--url", base, "ticket", "999", "-o", str(tmp_path / "x.pdf"),
                             token=tokens["owner"], cwd=tmp_path)
    assert code == 1 and "error (404): no ticket 999" in err
    assert not (tmp_path / "x.pdf").exists()
