"""Grounding: earthing points in the inventory, measurements recorded over the real API on
loopback and with `vigil grounding`, sheet imports (good, and every kind of bad: nothing
stored), faults through the rules engine (clock injected), metrics, the SPD/grounding
summary for reports. SQLite and PostgreSQL via `db_url`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openpyxl import Workbook
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent import yamlfile
from agent.auth import Authenticator, FailureLimiter, Users, add_user
from agent.grounding import GroundingStore
from agent.grounding_api import add_grounding_routes
from agent.grounding_stage import GroundingStage, Subjects
from agent.inventory import Inventory, load_inventory
from agent.lightning import lightning_report, spd_summary
from agent.settings import Rules as RulesSettings
from agent.state import State
from agent.yamlfile import ConfigErrors
from collectors.reading import PollResult, Reading
from collectors.snmp.profile import load_profiles
from rules.engine import Engine
from rules.load import known_from, load_rules

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_790_000_000.0  # 2026-09-21
TZ = timezone(timedelta(hours=8))  # the sheets' and the CLI's local time: China
DAY = 86400.0
ROLES = ("engineer", "technician", "owner", "viewer")

INVENTORY = """\
sites:
  - {id: dh, name: 东湖社区}
  - {id: room, name: 分局机房}
devices:
  - {id: cam-dh-01, kind: ptz_camera, site: dh, address: 127.0.0.1, snmp: false}
  - {id: spd-room, kind: spd_monitor, site: room, address: 127.0.0.1, snmp: false}
  - {id: env-dh, kind: env_monitor, site: dh, address: 127.0.0.1, snmp: false}
earthing_points:
  - {id: ep-room, site: room, kind: machine_room, name: 分局机房联合接地}
  - {id: ep-pole-01, site: dh, kind: pole, device: cam-dh-01, name: 东湖路口立杆}
  - {id: ep-cab-01, site: dh, kind: cabinet, limit_ohm: 5, measure_every: 90d}
"""


def load(tmp_path: Path, text: str = INVENTORY) -> Inventory:
    path = tmp_path / "inventory.yaml"
    path.write_text(text, encoding="utf-8")
    return load_inventory([yamlfile.load(path)], None, None)


def inventory_errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load(tmp_path, text)
    return [str(e) for e in info.value.errors]


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- the inventory ------------------------------------------------------------------------

def test_points_defaults_and_subjects(tmp_path: Path) -> None:
    inv = load(tmp_path)
    room, pole, cab = (inv.earthing_points[k] for k in ("ep-room", "ep-pole-01", "ep-cab-01"))
    assert (room.limit, pole.limit, cab.limit) == (4.0, 10.0, 5.0)
    assert room.measure_every == 182 * DAY and cab.measure_every == 90 * DAY
    assert set(inv.devices) == {"cam-dh-01", "spd-room", "env-dh"}  # points are no devices
    assert inv.subjects["ep-pole-01"].kind == "earthing_point"
    assert inv.subjects["ep-pole-01"].labels["earthing_kind"] == "pole"


def test_inventory_errors_name_file_and_line(tmp_path: Path) -> None:
    text = INVENTORY + "\n".join([
        "  - {id: ep-room, site: room, kind: machine_room}",
        "  - {id: ep-x, site: nowhere, kind: pole}",
        "  - {id: cam-dh-01, site: dh, kind: pole}",
        "  - {id: ep-y, site: dh, kind: pole, device: cam-zz}",
        "  - {id: ep-z, site: dh, kind: roof}",
        "  - {id: ep-w, site: dh, kind: pole, limit_ohm: -1}",
        "  - {id: ep-v, site: dh, kind: pole, measure_every: soon}",
        "  - {id: ep-u, site: dh, kind: pole, labels: {site: x}}", ""])
    file = tmp_path / "inventory.yaml"
    errors = inventory_errors(tmp_path, text)
    expected = [
        (12, "duplicate earthing point id 'ep-room' (first at"),
        (13, "site 'nowhere' is not in the inventory"),
        (14, "'cam-dh-01' is already a device's id"),
        (15, "device 'cam-zz' is not in the inventory"),
        (16, "'roof' is not allowed"),
        (17, "greater than 0"),
        (18, "is not a duration"),
        (19, "label name 'site' is reserved"),
    ]
    for line, message in expected:
        assert any(e.startswith(f"{file}:{line} ") and message in e for e in errors), \
            (line, message, errors)
    assert len(errors) == len(expected), errors


def test_an_earthing_point_is_not_a_device_kind(tmp_path: Path) -> None:
    text = INVENTORY.replace("kind: env_monitor", "kind: earthing_point")
    [error] = inventory_errors(tmp_path, text)
    assert error.startswith(f"{tmp_path / 'inventory.yaml'}:7 devices[2].kind: "
                            "'earthing_point' is not allowed")


# -- the API on loopback, SQLite and PostgreSQL ---------------------------------------------

class Api:
    def __init__(self, base: str, stage: GroundingStage, tokens: dict[str, str],
                 http: aiohttp.ClientSession, clock: Clock) -> None:
        self.base, self.stage, self.tokens, self.http, self.clock = \
            base, stage, tokens, http, clock

    async def call(self, method: str, path: str, role: str | None = "technician",
                   body: Any = None, data: bytes | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        async with self.http.request(method, self.base + path, json=body, data=data,
                                     headers=headers) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None)

    async def stored(self) -> int:
        return len(await self.stage.store.history())

    async def cli(self, *args: str, role: str = "technician") -> tuple[int, str, str]:
        """`vigil grounding ...`, in a worker thread (it calls this loop's server)."""
        from click.testing import CliRunner

        from agent.cli import main

        runner = CliRunner()
        result = await asyncio.to_thread(
            runner.invoke, main, ["grounding", "--url", self.base, *args],
            env={"VIGIL_TOKEN": self.tokens[role]})
        return result.exit_code, result.stdout, result.stderr


async def serve_api(tmp_path: Path, url: str, clock: Clock):
    tokens_file = tmp_path / "tokens.yaml"
    tokens = {role: add_user(tokens_file, f"{role}-1", role) for role in ROLES}
    stage = GroundingStage(load(tmp_path), url, clock, tz=TZ)
    await stage.store.start()
    await stage.load()
    stage.ready = True
    app = web.Application()
    add_grounding_routes(app, lambda: stage, Authenticator(Users.from_file(tokens_file),
                                                           FailureLimiter(burst=1000)))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, stage, tokens, f"http://{host}:{port}"


@pytest.fixture
async def api(tmp_path: Path, db_url: str):
    clock = Clock()
    runner, stage, tokens, base = await serve_api(tmp_path, db_url, clock)
    async with aiohttp.ClientSession() as http:
        try:
            yield Api(base, stage, tokens, http, clock)
        finally:
            await runner.cleanup()
            await stage.close()


@pytest.fixture
async def sqlite_api(tmp_path: Path):
    clock = Clock()
    runner, stage, tokens, base = await serve_api(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'tickets.db'}", clock)
    async with aiohttp.ClientSession() as http:
        try:
            yield Api(base, stage, tokens, http, clock)
        finally:
            await runner.cleanup()
            await stage.close()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, TZ).isoformat()


async def test_record_list_trend_over_http(api: Api) -> None:
    values = [(T0 - 400 * DAY, 2.8, "晴"), (T0 - 200 * DAY, 3.2, "阴"), (T0 - DAY, 4.8, "晴")]
    for at, ohm, weather in values:
        status, saved = await api.call("POST", "/api/v1/grounding/ep-room/measurements",
                                       body={"ohm": ohm, "measured_at": iso(at),
                                             "instrument": "UT522 #A1234",
                                             "weather": weather, "soil": "干燥"})
        assert status == 201, saved
        assert saved["technician"] == "technician-1" and saved["recorded_by"] == "technician-1"
    assert saved["status"]["over_limit"] is True and saved["status"]["overdue"] is False

    status, points = await api.call("GET", "/api/v1/grounding", "viewer")
    assert status == 200
    by_id = {p["point"]: p for p in points}
    assert list(by_id) == ["ep-cab-01", "ep-pole-01", "ep-room"]  # by site, then id
    assert by_id["ep-room"]["latest"]["ohm"] == 4.8 and by_id["ep-room"]["limit_ohm"] == 4.0
    assert by_id["ep-pole-01"]["latest"] is None and by_id["ep-pole-01"]["overdue"] is True
    status, dh = await api.call("GET", "/api/v1/grounding?site=dh", "viewer")
    assert [p["point"] for p in dh] == ["ep-cab-01", "ep-pole-01"]

    status, shown = await api.call("GET", "/api/v1/grounding/ep-room", "owner")
    assert status == 200
    assert [(t["ohm"], t["change_ohm"], t["over_limit"]) for t in shown["trend"]] == \
        [(2.8, None, False), (3.2, 0.4, False), (4.8, 1.6, True)]
    assert shown["trend"][2]["change_ratio"] == pytest.approx(0.5)
    assert shown["trend"][1]["weather"] == "阴"
    assert shown["due"] == datetime.fromtimestamp(T0 - DAY + 182 * DAY, UTC).isoformat()

    # the readings the rules see follow at once
    readings = {r.metric: r.value for r in
                api.stage.state.devices["ep-room"].results["grounding"].readings}
    assert readings["grounding_resistance_ohms"] == 4.8
    assert readings["grounding_measurement_age_seconds"] == pytest.approx(DAY)


@pytest.mark.parametrize("body, field, message", [
    ({"ohm": -1.0}, "ohm", "must be above 0"),
    ({"ohm": 0}, "ohm", "must be above 0"),
    ({"ohm": 1200}, "ohm", "not a plausible earth resistance"),
    ({"ohm": "3.2"}, "ohm", "a number of ohms"),
    ({"ohm": 3.2, "measured_at": iso(T0 + DAY)}, "measured_at", "in the future"),
    ({"ohm": 3.2, "instrument": ""}, "instrument", "required"),
])
async def test_bad_measurement_refused_nothing_stored(sqlite_api: Api, body: dict, field: str,
                                                      message: str) -> None:
    full = {"instrument": "UT522", "weather": "晴", **body}
    status, answer = await sqlite_api.call("POST", "/api/v1/grounding/ep-room/measurements",
                                           body=full)
    assert status == 400, answer
    assert any(p["field"] == field and message in p["message"] for p in answer["problems"]), \
        answer
    assert await sqlite_api.stored() == 0


async def test_api_guards(api: Api) -> None:
    body = {"ohm": 3.0, "instrument": "UT522", "weather": "晴"}
    path = "/api/v1/grounding/ep-room/measurements"
    assert (await api.call("POST", path, None, body=body))[0] == 401
    for role in ("viewer", "owner"):
        assert (await api.call("POST", path, role, body=body))[0] == 403
    status, answer = await api.call("POST", "/api/v1/grounding/ep-nowhere/measurements",
                                           body=body)
    assert status == 404 and "ep-nowhere" in answer["error"]
    status, answer = await api.call("POST", path, body={**body, "colour": "red"})
    assert status == 400 and "colour" in answer["error"]
    # the same point and time twice: refused the second time
    at = {"measured_at": iso(T0 - 3600)}
    assert (await api.call("POST", path, "engineer", body={**body, **at}))[0] == 201
    status, answer = await api.call("POST", path, body={**body, **at})
    assert status == 400 and "already recorded" in answer["problems"][0]["message"]
    assert await api.stored() == 1


# -- sheets ---------------------------------------------------------------------------------

HEADER = ["point", "measured_at", "ohm", "instrument", "technician", "weather"]
GOOD = [["ep-room", "2026-09-01 09:30", "3.1", "UT522 #A1234", "张工", "晴"],
        ["ep-pole-01", "2026-09-01 10:15", "7.4", "UT522 #A1234", "张工", "晴"],
        ["ep-cab-01", "2026/09/02 14:00", "4.2", "ETCR2000 #88", "李工", "多云"]]


def csv_bytes(rows: list[list[Any]], encoding: str = "utf-8-sig") -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode(encoding)


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def test_import_good_sheets(api: Api) -> None:
    status, answer = await api.call("POST", "/api/v1/grounding/import?filename=a.csv",
                                    data=csv_bytes([HEADER, *GOOD]))
    assert status == 201 and answer["stored"] == 3, answer
    rows = {r.point: r for r in await api.stage.store.history()}
    assert rows["ep-room"].measured_at == datetime(2026, 9, 1, 1, 30, tzinfo=UTC)  # +08:00
    assert rows["ep-cab-01"].technician == "李工" and rows["ep-cab-01"].source == "import"
    # XLSX, Chinese headers, real datetimes and numbers in the cells, a later campaign
    zh = ["接地点", "测量时间", "接地电阻(Ω)", "仪表", "测量人", "天气", "备注"]
    later = [["ep-room", datetime(2026, 9, 15, 9, 0), 3.4, "UT522", "王工", "阴", "雨后两天"]]
    status, answer = await api.call("POST", "/api/v1/grounding/import?dry_run=true",
                                    data=xlsx_bytes([zh, *later]))
    assert status == 200 and answer == {"checked": 1, "stored": 0}
    assert await api.stored() == 3
    status, answer = await api.call("POST", "/api/v1/grounding/import", "engineer",
                                    data=xlsx_bytes([zh, *later]))
    assert status == 201 and answer["points"] == ["ep-room"]
    assert api.stage.latest["ep-room"].ohm == 3.4 and api.stage.latest["ep-room"].notes == \
        "雨后两天"


def _future() -> str:
    return datetime.fromtimestamp(T0 + 2 * DAY, TZ).strftime("%Y-%m-%d %H:%M")


BAD_SHEETS = {
    "missing column": ([HEADER[:5], *[r[:5] for r in GOOD]],
                       [("row 1", "weather", "required column is missing")]),
    "extra column": ([[*HEADER, "colour"], *[[*r, "red"] for r in GOOD]],
                     [("row 1", "column G", "unknown column 'colour'")]),
    "unknown point": ([HEADER, GOOD[0], ["ep-nowhere", *GOOD[1][1:]]],
                      [("row 3", "point", "unknown earthing point 'ep-nowhere'")]),
    "out of range": ([HEADER, [*GOOD[0][:2], "-2", *GOOD[0][3:]],
                      [*GOOD[1][:2], "0", *GOOD[1][3:]], [*GOOD[2][:2], "1500", *GOOD[2][3:]]],
                     [("row 2", "ohm", "must be above 0"), ("row 3", "ohm", "must be above 0"),
                      ("row 4", "ohm", "not a plausible")]),
    "future date": ([HEADER, GOOD[0], [GOOD[1][0], _future(), *GOOD[1][2:]]],
                    [("row 3", "measured_at", "in the future")]),
    "unreadable cells": ([HEADER, [GOOD[0][0], "yesterday", "3,2", *GOOD[0][3:]],
                          [*GOOD[1][:5], ""]],
                         [("row 2", "measured_at", "'yesterday' is not a time"),
                          ("row 2", "ohm", "'3,2' is not a number"),
                          ("row 3", "weather", "required")]),
    "same point twice": ([HEADER, GOOD[0], GOOD[0]],
                         [("row 3", "measured_at", "the same point and time as row 2")]),
}


@pytest.mark.parametrize("kind", sorted(BAD_SHEETS))
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
async def test_bad_sheet_refused_whole(sqlite_api: Api, kind: str, fmt: str) -> None:
    rows, expected = BAD_SHEETS[kind]
    data = csv_bytes(rows) if fmt == "csv" else xlsx_bytes(rows)
    status, answer = await sqlite_api.call("POST", "/api/v1/grounding/import", data=data)
    assert status == 400, answer
    got = [(p["where"], p["field"], p["message"]) for p in answer["problems"]]
    assert len(got) == len(expected), got
    for (where, field, message), (w, f, m) in zip(expected, got, strict=True):
        assert (where, field) == (w, f) and message in m, got
    assert await sqlite_api.stored() == 0


async def test_not_a_sheet(sqlite_api: Api) -> None:
    status, answer = await sqlite_api.call("POST", "/api/v1/grounding/import",
                                           data=b"PK\x03\x04 not really a zip")
    assert status == 400 and "XLSX" in answer["error"]
    status, answer = await sqlite_api.call("POST", "/api/v1/grounding/import",
                                           data=csv_bytes([HEADER]))
    assert status == 400 and "no measurement" in answer["error"]
    assert await sqlite_api.stored() == 0


# -- the CLI ---------------------------------------------------------------------------------

async def test_cli_record_import_list_show(sqlite_api: Api, tmp_path: Path) -> None:
    sqlite_api.clock.t = datetime.now(UTC).timestamp()  # the CLI's --at is the wall's local
    code, out, err = await sqlite_api.cli("record", "ep-pole-01", "--ohm", "12.5",
                                          "--instrument", "UT522 #A1234", "--weather", "晴",
                                          "--at", "2026-03-01 10:00", "--soil", "潮湿")
    assert code == 0, err
    assert "12.5 Ω at 2026-03-01 10:00, limit 10 Ω: 超过限值" in out
    row = (await sqlite_api.stage.store.history(point="ep-pole-01"))[0]
    assert row.measured_at == datetime(2026, 3, 1, 10, 0).astimezone() and row.soil == "潮湿"

    sheet = tmp_path / "campaign.csv"
    sheet.write_bytes(csv_bytes([HEADER, *GOOD], "gb18030"))  # as Excel saves it in China
    code, out, err = await sqlite_api.cli("import", str(sheet))
    assert code == 0 and "3 measurement(s) stored for 3 earthing point(s)" in out, err

    bad = tmp_path / "bad.csv"
    bad.write_bytes(csv_bytes([HEADER, [*GOOD[0][:2], "-1", *GOOD[0][3:]]]))
    code, out, err = await sqlite_api.cli("import", str(bad))
    assert code == 1 and "row 2, ohm: -1.0 Ω: must be above 0" in err
    assert await sqlite_api.stored() == 4

    code, out, err = await sqlite_api.cli("list", "--site", "dh", role="viewer")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["POINT", "SITE", "KIND"]
    assert "ep-pole-01" in lines[2] and "7.4" in lines[2]

    code, out, err = await sqlite_api.cli("show", "ep-pole-01", role="viewer")
    assert code == 0, err
    assert "2026-03-01 10:00  12.5" in out and "-5.1 (-41%)" in out


# -- faults through the rules engine ------------------------------------------------------

async def test_faults_through_the_rules_engine(tmp_path: Path) -> None:
    """An above-limit value fires GroundingResistanceHigh (3); a point never measured and one
    whose measurement got older than measure_every fire GroundingMeasurementOverdue (4)."""
    clock = Clock()
    inv = load(tmp_path)
    profiles = load_profiles()
    rules = load_rules([ROOT / "config/rules/grounding.yaml"],
                       known_from(profiles.catalogue, profiles), inv)
    stage = GroundingStage(inv, f"sqlite+aiosqlite:///{tmp_path / 'tickets.db'}", clock,
                           tz=TZ)
    await stage.store.start()
    devices = State()
    devices.sync(inv)
    engine = Engine(rules, RulesSettings())
    engine.sync(inv, clock())
    subjects = Subjects(devices, stage.state)

    def cycle() -> dict[str, tuple[str, int]]:
        stage.refresh()
        engine.evaluate(subjects, clock(), lambda d, c: None)  # type: ignore[arg-type]
        return {k: (f.state, f.level) for k, f in engine.active.items()}

    try:
        from agent.grounding import Measurement

        def measured(point: str, ohm: float, at: float) -> Measurement:
            return Measurement(point, ohm, datetime.fromtimestamp(at, UTC), "UT522", "张工", "晴")

        rows = await stage.store.record([measured("ep-room", 5.6, T0 - 10 * DAY),
                                         measured("ep-cab-01", 4.0, T0 - 10 * DAY)],
                                        inv.earthing_points, "technician-1", "api")
        await stage.recorded(rows)
        faults = cycle()
        assert faults == {"GroundingResistanceHigh:ep-room": ("firing", 3),
                          "GroundingMeasurementOverdue:ep-pole-01": ("firing", 4)}
        fault = engine.active["GroundingResistanceHigh:ep-room"]
        assert fault.site == "room" and fault.kind == "earthing_point"
        assert "接地电阻 5.60 Ω，超过限值 4.0 Ω" in fault.texts["summary"]["zh"]

        # a good measurement clears it
        clock.t += 3600
        rows = await stage.store.record([measured("ep-room", 3.1, clock.t - 60)],
                                        inv.earthing_points, "technician-1", "api")
        await stage.recorded(rows)
        assert "GroundingResistanceHigh:ep-room" not in cycle()

        # 81 days later the cabinet (measured 10 days before T0, every 90 days) is overdue
        clock.t = T0 + 81 * DAY
        faults = cycle()
        assert faults["GroundingMeasurementOverdue:ep-cab-01"] == ("firing", 4)
        assert "GroundingMeasurementOverdue:ep-room" not in faults  # every 182 days
        clock.t = T0 + 183 * DAY
        assert "GroundingMeasurementOverdue:ep-room" in cycle()
    finally:
        await stage.close()


# -- metrics and the report summary ---------------------------------------------------------

async def test_metrics_and_lightning_summary(tmp_path: Path) -> None:
    clock = Clock()
    inv = load(tmp_path)
    stage = GroundingStage(inv, f"sqlite+aiosqlite:///{tmp_path / 'tickets.db'}", clock,
                           tz=TZ)
    await stage.store.start()
    try:
        from agent.grounding import Measurement

        rows = await stage.store.record(
            [Measurement("ep-room", 3.2, datetime.fromtimestamp(T0 - 40 * DAY, UTC), "UT522",
                         "张工", "晴"),
             Measurement("ep-room", 3.6, datetime.fromtimestamp(T0 - 5 * DAY, UTC), "UT522",
                         "张工", "阴")], inv.earthing_points, "engineer-1", "import")
        await stage.recorded(rows)
        registry = CollectorRegistry()
        registry.register(stage.collector())
        text = generate_latest(registry).decode()
        assert 'vigil_grounding_resistance_ohms{point="ep-room",site="room"} 3.6' in text
        assert 'vigil_grounding_limit_ohms{point="ep-pole-01",site="dh"} 10.0' in text
        [when] = [s for f in text_string_to_metric_families(text) for s in f.samples
                  if s.name == "vigil_grounding_last_measured_timestamp_seconds"]
        assert when.labels == {"point": "ep-room", "site": "room"} and \
            when.value == T0 - 5 * DAY

        state = State()
        state.sync(inv)
        t = T0 - 60
        state.update(PollResult("spd-room", t, 0.1, True, readings=[
            Reading("spd-room", "spd_status", {}, 1.0, t),
            Reading("spd-room", "spd_strikes_total", {}, 12.0, t),
            Reading("spd-room", "spd_leakage_current_amperes", {}, 0.0004, t)]))
        state.update(PollResult("env-dh", t, 0.1, True, readings=[
            Reading("env-dh", "contact_alarm", {"contact": "SPD1 AC-IN"}, 1.0, t),
            Reading("env-dh", "contact_alarm", {"contact": "DOOR1 cabinet"}, 1.0, t),
            Reading("env-dh", "input_pulses_total", {"input": "SPD1-CNT AC-IN"}, 5.0, t),
            Reading("env-dh", "sensor_amperes", {"sensor": "SPD1-LEAK"}, 0.0021, t),
            Reading("env-dh", "sensor_amperes", {"sensor": "PUMP1-I"}, 2.0, t)]))
        month = datetime(2026, 9, 1, tzinfo=UTC)
        spd = spd_summary(state, inv, since=month,
                          counter_at=lambda device, at: {"spd-room": 9.0}.get(device))
        assert [(s["device"], s["status"], s["strikes_total"], s["strikes_increase"],
                 s["leakage_max_amperes"]) for s in spd] == [
            ("env-dh", "tripped", 5.0, None, 0.0021),
            ("spd-room", "ok", 12.0, 3.0, 0.0004)]
        report = await lightning_report(state, inv, stage.store, clock(), site="room",
                                        since=month, until=month + timedelta(days=30))
        [room] = report["grounding"]
        assert room["point"] == "ep-room" and [t["ohm"] for t in room["in_period"]] == [3.6]
        assert [t["ohm"] for t in room["trend"]] == [3.2, 3.6]
        assert [s["device"] for s in report["spd"]] == ["spd-room"]
    finally:
        await stage.close()


def test_store_refuses_naive_and_old_times(tmp_path: Path) -> None:
    from agent.grounding import Measurement, check

    inv = load(tmp_path)
    problems = check([Measurement("ep-room", 3.0, datetime(2026, 1, 1), "UT", "张", "晴"),
                      Measurement("ep-room", 3.0, datetime(1999, 1, 1, tzinfo=UTC), "UT", "张",
                                  "晴")], inv.earthing_points, T0)
    assert [p.message.split(",")[0] for p in problems] == \
        ["a time with its UTC offset", "1999-01-01T00:00:00+00:00 is before 2000"]
    assert GroundingStore  # the store class is what the daemon opens


# -- the running agent: API, rules, tickets and /metrics wired together ----------------------

async def test_agent_wiring(tmp_path: Path) -> None:
    """The daemon's own wiring: a measurement recorded over its API becomes a rule fault
    (and its ticket) and a Prometheus series; no device series for the point."""
    from agent.config import load_config
    from agent.daemon import Agent
    from tests.peers import free_port

    clock = Clock(datetime.now(UTC).timestamp())
    port = free_port(socket.SOCK_STREAM)
    token = add_user(tmp_path / "tokens.yaml", "zhang", "technician")
    (tmp_path / "inventory.yaml").write_text(INVENTORY, encoding="utf-8")
    (tmp_path / "credentials.yaml").write_text("credentials: {}\n")
    (tmp_path / "credentials.yaml").chmod(0o600)
    (tmp_path / "agent.yaml").write_text(
        f"agent: {{id: test}}\nlisten: 127.0.0.1:{port}\nstate_dir: state\n"
        f"reachability: {{enabled: false}}\n"
        f"rules: {{files: ['{ROOT}/config/rules/grounding.yaml'], interval: 1h}}\n")
    agent = Agent(load_config(tmp_path / "agent.yaml"), clock)
    await agent.start()
    try:
        for _ in range(200):
            if agent.grounding.ready and agent.tickets is not None and agent.tickets.ready:
                break
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/api/v1/grounding/ep-room/measurements",
                                 json={"ohm": 6.5, "instrument": "UT522", "weather": "晴"},
                                 headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 201, await r.text()
            await agent.rules.cycle()
            active = agent.rules.engine.active
            assert active["GroundingResistanceHigh:ep-room"].level == 3
            assert active["GroundingMeasurementOverdue:ep-pole-01"].level == 4
            tickets = {t.fault_key: t for t in await agent.tickets.store.list()}
            assert tickets["GroundingResistanceHigh:ep-room"].site == "room"
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
        assert 'vigil_grounding_resistance_ohms{point="ep-room",site="room"} 6.5' in text
        assert 'vigil_fault_active{alertname="GroundingResistanceHigh"' in text
        assert not [line for line in text.splitlines() if line.startswith("vigil_device")
                    and "ep-room" in line]  # a point is no device
        # a reload adds a point (overdue at once) and removes one (its faults resolve)
        (tmp_path / "inventory.yaml").write_text(
            INVENTORY.replace("ep-pole-01", "ep-pole-02"), encoding="utf-8")
        assert await agent.reload() == []
        await agent.rules.cycle()
        active = agent.rules.engine.active
        assert "GroundingMeasurementOverdue:ep-pole-02" in active
        assert "GroundingMeasurementOverdue:ep-pole-01" not in active
        assert "GroundingResistanceHigh:ep-room" in active
    finally:
        await agent.stop()
