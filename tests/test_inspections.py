"""Periodic inspections: schedules (pure, over a year), the sheet pre-filled from a small
site's readings and tickets, the whole flow over the real HTTP API on 127.0.0.1 (SQLite and
PostgreSQL), XLSX/CSV export and import, bad sheets refused with nothing stored, overdue
metrics. The clock is injected: nothing sleeps."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner
from openpyxl import Workbook, load_workbook
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError
from sqlalchemy import text

from agent.auth import Authenticator, FailureLimiter, Users, add_user
from agent.cli import main as cli_main
from agent.config import load_config
from agent.daemon import Agent
from agent.inspection_prefill import SECTIONS
from agent.inspection_schedule import Inspections, due_inspections
from agent.inspections import InspectionMetrics, InspectionRunner, InspectionService, Row
from agent.inspections_api import add_inspection_routes
from agent.inventory import Device, Inventory, Site
from agent.state import State
from agent.tickets.store import TicketStore
from collectors.reading import PollResult, Reading
from tests import peers

SH = ZoneInfo("Asia/Shanghai")
ROLES = ("engineer", "technician", "owner", "viewer")
ROOT = Path(__file__).resolve().parents[1]


def at(*args: int) -> datetime:
    """A Shanghai wall-clock time, as aware UTC."""
    return datetime(*args, tzinfo=SH).astimezone(UTC)


# -- schedules --------------------------------------------------------------------------------

def test_schedules_over_a_year() -> None:
    settings = Inspections()
    seen: dict[tuple[str, str, str], Any] = {}
    moment = at(2027, 1, 1)
    while moment < at(2028, 1, 1):
        for due in due_inspections(settings, ["dh", "ny"], moment):
            seen.setdefault((due.site, due.kind, due.period), due)
        moment += timedelta(hours=7)
    kinds = [k for _, k, _ in seen]
    assert (kinds.count("monthly"), kinds.count("quarterly"), kinds.count("half_yearly")) == \
        (24, 8, 4)
    assert sorted(p for s, k, p in seen if s == "dh" and k == "quarterly") == \
        ["2027-Q1", "2027-Q2", "2027-Q3", "2027-Q4"]
    feb = seen[("dh", "monthly", "2027-02")]
    assert (feb.start, feb.end, feb.due) == (at(2027, 2, 1), at(2027, 3, 1), at(2027, 2, 26))
    q4 = seen[("ny", "quarterly", "2027-Q4")]
    assert (q4.start, q4.due) == (at(2027, 10, 1), at(2028, 1, 1))  # default: period's end
    h2 = seen[("dh", "half_yearly", "2027-H2")]
    assert h2.start == datetime(2027, 6, 30, 16, tzinfo=UTC) and h2.due == at(2028, 1, 1)
    # 23:59 on 31 March in Shanghai is 15:59 UTC: still March's period
    assert due_inspections(settings, ["dh"], at(2027, 3, 31, 23, 59))[0].period == "2027-03"


def test_schedule_sites_and_config_errors() -> None:
    settings = Inspections(schedules={"monthly": {"period": "month", "sites": ["dh"],
                                                  "checklist": []}})
    assert [(d.site, d.kind) for d in due_inspections(settings, ["dh", "ny"], at(2027, 5, 3))] \
        == [("dh", "monthly")]
    with pytest.raises(ValidationError, match="due_after must be within"):
        Inspections(schedules={"monthly": {"period": "month", "due_after": "40d"}})
    with pytest.raises(ValidationError, match="unknown time zone"):
        Inspections(timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="unique"):
        Inspections(schedules={"m": {"period": "month", "checklist": [
            {"id": "a", "zh": "甲", "en": "a"}, {"id": "a", "zh": "乙", "en": "b"}]}})


# -- a small site -----------------------------------------------------------------------------

def small_site() -> State:
    sites = {"dh": Site(id="dh", name="东湖社区"), "ny": Site(id="ny", name="南苑社区")}
    devices = {d.id: d for d in [
        Device(id="cam-1", kind="ptz_camera", site="dh", name="路口球机", address="127.0.0.2"),
        Device(id="cam-2", kind="fixed_camera", site="dh", address="127.0.0.3",
               labels={"firmware": "V5.5.0"}),
        Device(id="ups-1", kind="ups", site="dh", name="机房UPS", address="127.0.0.4"),
        Device(id="spd-1", kind="spd_monitor", site="dh", address="127.0.0.5"),
        Device(id="cam-ny", kind="fixed_camera", site="ny", address="127.0.0.6"),
    ]}
    state = State()
    state.sync(Inventory(sites, devices, {}))
    t = at(2027, 5, 10).timestamp()

    def poll(device: str, up: bool = True, collector: str = "snmp", **values: Any) -> None:
        readings = [Reading(device, m, {}, v, t) for m, v in values.items()]
        state.update(PollResult(device, t, 0.1, up, None if up else "timeout",
                                readings=readings, collector=collector))

    state.update(PollResult("cam-1", t, 0.1, True, collector="onvif", readings=[
        Reading("cam-1", "device_info", {"firmware": "V5.7.12 build 230818", "model": "X"},
                1.0, t)]))
    poll("cam-2", up=False, collector="onvif")
    poll("ups-1", ups_on_battery=1.0, ups_battery_charge_ratio=0.8,
         ups_battery_runtime_seconds=1800.0)
    state.update(PollResult("spd-1", t, 0.1, True, readings=[
        Reading("spd-1", "spd_status", {"module": "1"}, 1.0, t),
        Reading("spd-1", "spd_status", {"module": "2"}, 0.0, t),
        Reading("spd-1", "spd_strikes_total", {"module": "1"}, 3.0, t),
        Reading("spd-1", "spd_strikes_total", {"module": "2"}, 4.0, t)]))
    return state


@dataclass
class Fault:
    key: str
    device: str
    rule: str = "CameraUnreachable"
    site: str = "dh"
    subject: str = ""
    level: int = 3
    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    fired_at: float | None = None


class Clock:
    def __init__(self, when: datetime) -> None:
        self.t = when.timestamp()

    def __call__(self) -> float:
        return self.t

    def set(self, when: datetime) -> None:
        self.t = when.timestamp()


@pytest.fixture
async def site(db_url: str):
    clock = Clock(at(2027, 4, 20))
    store = TicketStore(db_url, "branch-dh", clock)
    await store.start()
    state = small_site()
    # before May: a camera ticket closed in April (not in May's sheet), a UPS one still open
    old, _ = await store.open_for_fault(Fault("CameraUnreachable:cam-1", "cam-1"))
    for step in ("acknowledge", "diagnose", "start_repair"):
        await getattr(store, step)(old.id, "tech", *(["d"] if step == "diagnose" else []))
    await store.resolve(old.id, "tech", "connector_cable", "re-crimped")
    await store.confirm(old.id, "owner")
    await store.close(old.id, "owner")
    carried, _ = await store.open_for_fault(Fault("UpsOnBattery:ups-1", "ups-1",
                                                  rule="UpsOnBattery", level=2))
    clock.set(at(2027, 5, 6))  # in May: the camera again (after the reopen window), a site one
    store.reopen_window = 0
    again, _ = await store.open_for_fault(Fault("CameraUnreachable:cam-1", "cam-1"))
    for step in ("acknowledge", "diagnose", "start_repair"):
        await getattr(store, step)(again.id, "tech", *(["d"] if step == "diagnose" else []))
    await store.resolve(again.id, "tech", "front_end_hardware", "replaced the board")
    site_wide, _ = await store.open_for_fault(Fault("SiteCamerasDown:dh", "",
                                                    rule="SiteCamerasDown", level=2))
    await store.open_for_fault(Fault("CameraUnreachable:cam-ny", "cam-ny", site="ny"))
    clock.set(at(2027, 5, 10))
    settings = Inspections()
    service = InspectionService(store, lambda: settings, lambda: state, providers={})
    ids = {"old": old.id, "carried": carried.id, "again": again.id, "site": site_wide.id}
    try:
        yield service, clock, ids
    finally:
        await store.dispose()


async def test_prefill_of_a_small_site(site) -> None:
    service, _clock, ids = site
    inspection, created = await service.create("dh", "monthly", "2027-05", "eng-1")
    assert created
    sheet = (await service.get(inspection.id))["sheet"]
    assert (sheet["site_name"], sheet["period"], sheet["title"]["zh"]) == \
        ("东湖社区", "2027-05", "月度巡检")
    assert sheet["due_at"] == at(2027, 5, 26).isoformat()
    devices = {d["id"]: d for d in sheet["devices"]}
    assert sorted(devices) == ["cam-1", "cam-2", "spd-1", "ups-1"]  # not the other site's
    cam1, cam2, ups, spd = (devices[k] for k in ("cam-1", "cam-2", "ups-1", "spd-1"))
    assert (cam1["kind"], cam1["name"], cam1["firmware"], cam1["up"]) == \
        ("ptz_camera", "路口球机", "V5.7.12 build 230818", True)
    assert cam1["tickets"] == {"count": 1, "open": [ids["again"]],
                               "causes": {"front_end_hardware": 1},
                               "rules": ["CameraUnreachable"]}  # April's closed one is not in
    assert (cam2["firmware"], cam2["up"], cam2["down_reasons"]) == ("V5.5.0", False, ["timeout"])
    assert ups["ups"] == {"on_battery": 1.0, "charge_ratio": 0.8, "runtime_seconds": 1800.0}
    assert ups["tickets"]["open"] == [ids["carried"]]  # opened in April, still open in May
    assert spd["spd"] == {"status": 0.0, "strikes": 7.0}
    assert "ups" not in cam1 and "spd" not in cam1
    assert sheet["site_tickets"]["open"] == [ids["site"]]
    assert list(sheet["sections"]) == list(SECTIONS)
    assert all(not s["available"] and s["note"]["en"] == "not available"
               for s in sheet["sections"].values())
    rows = {(r["item"], r["device"]) for r in sheet["checklist"]}
    assert ("lens_cleaning", "cam-1") in rows and ("lens_cleaning", "cam-2") in rows
    assert ("lens_cleaning", "ups-1") not in rows and ("cabinet_tidy", "") in rows
    assert len(rows) == 2 + 4  # two cameras' lenses, four site items
    half = (await service.get((await service.create("dh", "half_yearly", "2027-H1", "e"))[0].id))
    assert {r["device"] for r in half["sheet"]["checklist"]
            if r["item"] == "device_comprehensive_test"} == set(devices)


async def test_providers_fill_their_sections(site) -> None:
    service, _clock, _ids = site

    async def availability(site: str, start: datetime, end: datetime) -> dict[str, Any]:
        return {"columns": ["device", "ratio"], "rows": [["cam-1", 0.99]], "site": site,
                "days": (end - start).days}

    def broken(site: str, start: datetime, end: datetime) -> dict[str, Any]:
        raise RuntimeError("history down")

    service.providers = {"availability": availability, "grounding": broken}
    inspection, _ = await service.create("dh", "quarterly", "2027-Q2", "eng-1")
    sections = (await service.get(inspection.id))["sheet"]["sections"]
    assert sections["availability"]["available"] and sections["availability"]["days"] == 91
    assert sections["grounding"]["available"] is False
    assert "history down" in sections["grounding"]["error"]
    assert sections["ups_discharge_test"]["note"]["zh"] == "暂无数据"


async def test_created_once_per_period(site) -> None:
    service, clock, _ids = site
    first = await asyncio.gather(service.ensure_due(), service.ensure_due())
    assert sorted((i.site, i.kind, i.period) for i in first[0] + first[1]) == [
        ("dh", "half_yearly", "2027-H1"), ("dh", "monthly", "2027-05"),
        ("dh", "quarterly", "2027-Q2"), ("ny", "half_yearly", "2027-H1"),
        ("ny", "monthly", "2027-05"), ("ny", "quarterly", "2027-Q2")]
    assert await service.ensure_due() == []
    _, created = await service.create("dh", "monthly", "2027-05", "tech")
    assert not created
    clock.set(at(2027, 6, 1, 0, 5))
    assert [(i.site, i.period) for i in await service.ensure_due()] == \
        [("dh", "2027-06"), ("ny", "2027-06")]
    assert len(await service.list()) == 8 and len(await service.list(site="ny")) == 4


# -- over HTTP --------------------------------------------------------------------------------

@dataclass
class Api:
    base: str
    service: InspectionService
    tokens: dict[str, str]
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, role: str = "technician", body: Any = None,
                   data: bytes | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"}
        async with self.http.request(method, self.base + "/api/v1/inspections" + path,
                                     json=body, data=data, headers=headers) as r:
            raw = await r.read()
            if r.content_type == "application/json":
                return r.status, json.loads(raw)
            return r.status, raw

    async def stored(self, inspection_id: int) -> tuple[Any, ...]:
        got = await self.service.get(inspection_id)
        return got["state"], got["results"], len(got["timeline"])


@pytest.fixture
async def api(site, tmp_path: Path):
    service, _clock, _ids = site
    tokens_file = tmp_path / "tokens.yaml"
    tokens = {role: add_user(tokens_file, f"{role}-1", role) for role in ROLES}
    app = web.Application()
    add_inspection_routes(app, lambda: service, Authenticator(Users.from_file(tokens_file),
                                                              FailureLimiter(burst=1000)))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession() as http:
        try:
            yield Api(f"http://{host}:{port}", service, tokens, http)
        finally:
            await runner.cleanup()


async def fill_all(api: Api, inspection_id: int) -> None:
    _, got = await api.call("GET", f"/{inspection_id}")
    results = [{"item": r["item"], "device": r["device"], "status": "ok"}
               for r in got["sheet"]["checklist"]]
    results[0] = {**results[0], "status": "issue", "note": "镜头有污渍，已清洁"}
    status, answer = await api.call("POST", f"/{inspection_id}/results", body={
        "results": results})
    assert status == 200 and answer["recorded"] == len(results), answer


async def test_flow_over_http(api: Api) -> None:
    status, created = await api.call("POST", "", body={"site": "dh", "kind": "monthly",
                                                       "period": "2027-05"})
    assert status == 201 and created["state"] == "open"
    iid = created["id"]
    status, again = await api.call("POST", "", body={"site": "dh", "kind": "monthly",
                                                     "period": "2027-05"})
    assert (status, again["id"], again["created"]) == (200, iid, False)
    status, listed = await api.call("GET", "?site=dh&kind=monthly&state=open", role="viewer")
    assert status == 200 and [i["id"] for i in listed] == [iid]

    status, err = await api.call("POST", f"/{iid}/submit", body={})
    assert status == 400 and len(err["problems"]) == 6  # nothing recorded yet
    assert (await api.call("POST", f"/{iid}/refresh"))[0] == 200
    await fill_all(api, iid)
    assert (await api.call("POST", f"/{iid}/sign", role="owner"))[0] == 409  # not submitted
    assert (await api.call("POST", f"/{iid}/submit", body={"note": "done"}))[0] == 200
    assert (await api.call("POST", f"/{iid}/refresh"))[0] == 409  # frozen once submitted

    status, err = await api.call("POST", f"/{iid}/sign")
    assert status == 403 and "owner" in err["error"]  # a technician never signs
    assert (await api.call("POST", f"/{iid}/reject", role="owner", body={}))[0] == 400
    status, back = await api.call("POST", f"/{iid}/reject", role="owner",
                                  body={"reason": "照片缺失，请补充"})
    assert status == 200 and back["state"] == "open"
    assert (await api.call("POST", f"/{iid}/submit", body={}))[0] == 200
    status, signed = await api.call("POST", f"/{iid}/sign", role="owner", body={"note": "同意"})
    assert status == 200 and signed["state"] == "signed"

    status, got = await api.call("GET", f"/{iid}", role="viewer")
    kinds = [(e["kind"], e["actor"]) for e in got["timeline"]]
    assert kinds == [("created", "technician-1"), ("refreshed", "technician-1"),
                     ("recorded", "technician-1"), ("submitted", "technician-1"),
                     ("rejected", "owner-1"), ("submitted", "technician-1"),
                     ("signed", "owner-1")]
    assert got["timeline"][4]["data"]["reason"] == "照片缺失，请补充"
    assert got["timeline"][2]["data"]["issues"] == ["lens_cleaning/cam-2"]  # by kind, id
    assert (await api.call("POST", f"/{iid}/results", body={"results": [
        {"item": "cabinet_tidy", "status": "ok"}]}))[0] == 409  # signed: closed to changes
    assert (await api.call("GET", "/999"))[0] == 404
    assert (await api.call("POST", "", body={"site": "xx", "kind": "monthly",
                                             "period": "2027-05"}))[0] == 400
    status, err = await api.call("POST", "", body={"site": "dh", "kind": "monthly",
                                                   "period": "2027-13"})
    assert status == 400 and "2026-10" in err["error"]
    assert (await api.call("POST", "", role="viewer", body={}))[0] == 403


async def test_timeline_is_append_only(api: Api) -> None:
    await api.service.create("dh", "monthly", "2027-05", "tech")
    with pytest.raises(Exception, match="append-only"):
        async with api.service.tickets.engine.begin() as conn:
            await conn.execute(text("UPDATE inspection_events SET actor = 'x'"))


async def test_xlsx_export_fill_import(api: Api) -> None:
    inspection, _ = await api.service.create("dh", "monthly", "2027-05", "tech")
    iid = inspection.id
    status, data = await api.call("GET", f"/{iid}/sheet.xlsx", role="viewer")
    assert status == 200 and data[:2] == b"PK"
    book = load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["checklist", "devices", "info"]
    ws = book["checklist"]
    header = [c.value for c in ws[1]]
    assert header[0].startswith("item") and header[3].startswith("status")
    assert {ws.cell(r, 1).value for r in range(2, ws.max_row + 1)} >= {"lens_cleaning"}
    assert [c.value for c in book["devices"]["A"]][1:] == ["cam-2", "cam-1", "spd-1", "ups-1"]
    for r in range(2, ws.max_row + 1):
        ws.cell(r, 4).value = "正常"
    ws.cell(2, 4).value, ws.cell(2, 5).value = "异常", "护罩破损"
    out = io.BytesIO()
    book.save(out)
    status, answer = await api.call("POST", f"/{iid}/sheet", data=out.getvalue())
    assert (status, answer) == (200, {"recorded": 6})
    _, results, _ = await api.stored(iid)
    assert sorted({r["status"] for r in results}) == ["issue", "ok"]
    status, csv_data = await api.call("GET", f"/{iid}/sheet.csv?lang=en")
    assert csv_data.decode("utf-8-sig").splitlines()[1].endswith("issue,护罩破损")
    assert (await api.call("POST", f"/{iid}/submit", body={}))[0] == 200


def csv_sheet(*rows: str, header: str = "item,device,description,status,note") -> bytes:
    return "\n".join([header, *rows]).encode("utf-8-sig")


BAD_SHEETS = {
    "missing column": (csv_sheet("cabinet_tidy,,x,ok", header="item,device,description,status"),
                       [(1, "note", "missing column 'note'")]),
    "extra column": (csv_sheet("cabinet_tidy,,x,ok,,", header="item,device,description,status,"
                                                                "note,photo"),
                     [(1, "F (photo)", "unknown column 'photo'")]),
    "unknown item and device, bad status": (
        csv_sheet("cabinet_tidy,,x,ok,", "paint_job,,x,ok,", "lens_cleaning,cam-9,x,ok,",
                  "pole_box_rust,,x,fine,", "lens_cleaning,,x,ok,",
                  "connectors_cables,,x,issue,"),
        [(3, "A (item)", "unknown item 'paint_job'"),
         (4, "B (device)", "no device 'cam-9'"),
         (5, "D (status)", "status 'fine'"),
         (6, "B (device)", "is per device"),
         (7, "E (note)", "an issue needs a note")]),
    "values outside the columns": (csv_sheet("cabinet_tidy,,x,ok,,extra", "pole_box_rust,,x,ok,",
                                             "connectors_cables,,x,ok,,,more"),
                                   [(2, "F (?)", "outside the columns"),
                                    (4, "G (?)", "outside the columns")]),
    "a row twice": (csv_sheet("cabinet_tidy,,x,ok,", "cabinet_tidy,,x,na,"),
                    [(3, "A (item)", "given twice (also row 2)")]),
}


@pytest.mark.parametrize("case", sorted(BAD_SHEETS))
async def test_bad_sheets_are_refused_whole(api: Api, case: str) -> None:
    inspection, _ = await api.service.create("dh", "monthly", "2027-05", "tech")
    await api.service.record(inspection.id, "tech", [Row(1, "cabinet_tidy", "", "na")])
    before = await api.stored(inspection.id)
    data, expected = BAD_SHEETS[case]
    status, err = await api.call("POST", f"/{inspection.id}/sheet", data=data)
    assert status == 400, err
    assert "nothing was stored" in err["error"]
    got = [(p["row"], p["column"], p["message"]) for p in err["problems"]]
    assert len(got) == len(expected), got
    for (row, column, message), (want_row, want_col, want_msg) in zip(got, expected,
                                                                      strict=True):
        assert (row, column) == (want_row, want_col) and want_msg in message, got
    assert await api.stored(inspection.id) == before  # the good rows were not stored either
    # the XLSX route refuses the same way: a workbook without the checklist sheet
    book, out = Workbook(), io.BytesIO()
    book.active.title = "Sheet1"
    book.save(out)
    status, err = await api.call("POST", f"/{inspection.id}/sheet", data=out.getvalue())
    assert status == 400 and "no sheet named 'checklist'" in err["error"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # a client: one store will do
async def test_cli(api: Api, tmp_path: Path) -> None:
    """`vigil inspections` in-process (on a thread: it blocks on urllib) against the API."""
    inspection, _ = await api.service.create("dh", "monthly", "2027-05", "tech")

    async def vigil(*args: str, role: str = "technician") -> tuple[int, str, str]:
        result = await asyncio.to_thread(
            CliRunner().invoke, cli_main, ["inspections", "--url", api.base, *args],
            env={"VIGIL_TOKEN": api.tokens[role]})
        return result.exit_code, result.stdout, result.stderr

    code, out, _ = await vigil("list")
    assert code == 0 and "待巡检" in out and "2027-05" in out
    code, out, _ = await vigil("refresh", str(inspection.id))
    assert code == 0 and "open" in out
    sheet = tmp_path / "sheet.csv"
    assert (await vigil("export", str(inspection.id), "-o", str(sheet)))[0] == 0
    lines = sheet.read_text(encoding="utf-8-sig").splitlines()
    filled = [line.removesuffix(",,") + ",正常," for line in lines[1:]]
    sheet.write_text("\n".join([lines[0], *filled]), encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text(lines[0] + "\nnope,,x,ok,\n", encoding="utf-8")
    code, _, err = await vigil("import", str(inspection.id), str(bad))
    assert code == 1 and "row 2, column A (item): unknown item 'nope'" in err
    code, out, err = await vigil("import", str(inspection.id), str(sheet))
    assert code == 0 and "6 result(s)" in out, err
    assert (await vigil("record", str(inspection.id), "--item", "cabinet_tidy", "--status",
                        "issue", "--note", "线缆杂乱"))[0] == 0
    assert (await vigil("submit", str(inspection.id)))[0] == 0
    code, _, err = await vigil("sign", str(inspection.id))
    assert code == 1 and "403" in err
    code, out, _ = await vigil("sign", str(inspection.id), role="owner")
    assert code == 0 and "signed" in out
    code, out, _ = await vigil("show", str(inspection.id))
    assert code == 0 and "线缆杂乱" in out and "暂无数据" in out and "signed" in out


# -- overdue ----------------------------------------------------------------------------------

async def test_overdue_metric(site) -> None:
    service, clock, _ids = site
    registry = CollectorRegistry()
    metrics = InspectionMetrics(registry)
    runner = InspectionRunner(service, service.settings, lambda: True, metrics, clock)

    def series() -> dict[str, float]:
        out = {}
        for line in generate_latest(registry).decode().splitlines():
            if line.startswith("vigil_inspection") and 'site="dh"' in line:
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    await runner.tick()  # 10 May: created, due 26 May
    assert series()['vigil_inspection_overdue{kind="monthly",site="dh"}'] == 0
    due = series()['vigil_inspection_due_timestamp_seconds{kind="monthly",site="dh"}']
    assert due == at(2027, 5, 26).timestamp()
    clock.set(at(2027, 5, 26, 0, 1))
    await runner.tick()
    assert series()['vigil_inspection_overdue{kind="monthly",site="dh"}'] == 1
    assert series()['vigil_inspection_overdue{kind="quarterly",site="dh"}'] == 0
    clock.set(at(2027, 6, 2))  # June started: May's visit is still missing
    await runner.tick()
    assert series()['vigil_inspection_overdue{kind="monthly",site="dh"}'] == 1
    assert series()['vigil_inspection_due_timestamp_seconds{kind="monthly",site="dh"}'] == due
    [may] = [i for i in await service.list(site="dh", kind="monthly") if i.period == "2027-05"]
    sheet = (await service.get(may.id))["sheet"]
    await service.record(may.id, "tech", [Row(n, r["item"], r["device"], "ok")
                                          for n, r in enumerate(sheet["checklist"])])
    await service.submit(may.id, "tech")
    await runner.tick()
    assert series()['vigil_inspection_overdue{kind="monthly",site="dh"}'] == 0
    assert series()['vigil_inspection_due_timestamp_seconds{kind="monthly",site="dh"}'] == \
        at(2027, 6, 26).timestamp()


# -- in the daemon ----------------------------------------------------------------------------

async def test_in_the_running_agent(tmp_path: Path) -> None:
    """The daemon's wiring: the runner creates this period's inspections in the agent's
    ticket store, /metrics shows them, the API is served on the agent's port."""
    (tmp_path / "credentials.yaml").write_text("credentials: {}\n")
    (tmp_path / "credentials.yaml").chmod(0o600)
    (tmp_path / "inventory.yaml").write_text(
        "sites:\n  - {id: dh, name: 东湖社区}\ndevices:\n"
        "  - {id: cam-1, kind: fixed_camera, site: dh, address: 127.0.0.1, snmp: false,"
        " reachability: {enabled: false}}\n")
    port = peers.free_port(socket.SOCK_STREAM)
    (tmp_path / "agent.yaml").write_text(
        f"agent: {{id: branch-dh}}\nlisten: 127.0.0.1:{port}\nstate_dir: state\n"
        "rules: {files: []}\nreachability: {enabled: false}\n"
        "inspections: {schedules: {monthly: {period: month, due_after: 1d, checklist: "
        "[{id: cabinet_tidy, zh: 机柜整洁, en: Cabinet tidy}]}}}\n")
    tokens = tmp_path / "tokens.yaml"
    viewer = add_user(tokens, "viewer-1", "viewer")
    clock = Clock(datetime.now(UTC))
    agent = Agent(load_config(tmp_path / "agent.yaml"), clock)
    await agent.start()
    try:
        for _ in range(200):
            if agent.tickets.ready:
                break
            await asyncio.sleep(0.05)
        assert agent.inspections is not None
        await agent.inspections.tick()
        clock.t += 40 * 86400  # a month and more later: last month's visit is overdue
        await agent.inspections.tick()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                metrics = await r.text()
            async with http.get(f"http://127.0.0.1:{port}/api/v1/inspections?site=dh",
                                headers={"Authorization": f"Bearer {viewer}"}) as r:
                listed = await r.json()
        assert 'vigil_inspection_overdue{kind="monthly",site="dh"} 1.0' in metrics
        assert len(listed) == 2 and {i["state"] for i in listed} == {"open"}
    finally:
        await agent.stop()
