"""agent/openapi.yaml against the agent that serves it: every /api/v1 route `make_app`
registers is documented (and nothing else), and schemathesis' generated requests (valid and
invalid, per role) against one running in-process agent get the documented answers."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from agent.auth import FailureLimiter, add_user
from agent.config import load_config
from agent.daemon import Agent
from agent.http import AUTH_KEY, make_app
from agent.tickets_api import openapi
from tests import peers

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("engineer", "technician", "owner", "viewer")
INVENTORY = """\
sites:
  - {id: dh, name: 东湖社区}
devices:
  - {id: cam-1, kind: fixed_camera, site: dh, address: 127.0.0.1, snmp: false}
  - {id: ups-1, kind: ups, site: dh, address: 127.0.0.1, snmp: false}
earthing_points:
  - {id: ep-room, site: dh, kind: machine_room, name: 机房联合接地}
"""
AGENT = """\
agent: {{id: branch-dh}}
listen: 127.0.0.1:{port}
state_dir: state
reachability: {{enabled: false}}
rules: {{files: ['{root}/config/rules/grounding.yaml'], interval: 1h}}
inspections: {{schedules: {{monthly: {{period: month, due_after: 20d, checklist:
  [{{id: cabinet_tidy, zh: 机柜整洁, en: Cabinet tidy}}]}}}}}}
"""


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def write_site(work: Path, port: int) -> Path:
    (work / "inventory.yaml").write_text(INVENTORY, encoding="utf-8")
    (work / "credentials.yaml").write_text("credentials: {}\n")
    (work / "credentials.yaml").chmod(0o600)
    (work / "agent.yaml").write_text(AGENT.format(port=port, root=ROOT), encoding="utf-8")
    return work / "agent.yaml"


@dataclass
class Running:
    agent: Agent
    base: str
    tokens: dict[str, str]


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """One agent with a ticket, a grounding measurement, a manual UPS test and an
    inspection, so that generated requests reach real objects."""
    port = peers.free_port(socket.SOCK_STREAM)
    config = write_site(tmp_path, port)
    tokens = {role: add_user(tmp_path / "tokens.yaml", f"{role}-1", role) for role in ROLES}
    clock = Clock(datetime.now(UTC).timestamp())
    agent = Agent(load_config(config), clock)
    await agent.start()
    try:
        for _ in range(400):
            if agent.grounding.ready and agent.tickets.ready and agent.ups_tests.ready:
                break
            await asyncio.sleep(0.05)
        # schemathesis tries wrong tokens on purpose: let it, without 429s
        agent.runner.app[AUTH_KEY].limiter = FailureLimiter(burst=1_000_000)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {tokens['technician']}"}
        now = datetime.now(UTC)
        async with aiohttp.ClientSession(headers=headers) as http:
            async def post(path: str, body: dict) -> None:
                async with http.post(base + path, json=body) as r:
                    assert r.status in (200, 201), (path, await r.text())

            await post("/api/v1/grounding/ep-room/measurements",
                       {"ohm": 6.5, "instrument": "UT522", "weather": "晴"})
            await post("/api/v1/ups/ups-1/tests/manual", {
                "kind": "deep", "started_at": (now - timedelta(hours=2)).isoformat(),
                "ended_at": (now - timedelta(hours=1)).isoformat(), "result": "pass"})
            await post("/api/v1/inspections", {"site": "dh", "kind": "monthly",
                                               "period": now.strftime("%Y-%m")})
        await agent.rules.cycle()  # GroundingResistanceHigh: a fault and its ticket
        yield Running(agent, base, tokens)
    finally:
        await agent.stop()


# -- the spec and the routes ------------------------------------------------------------------

def documented() -> set[tuple[str, str]]:
    spec = openapi()
    return {(path, method) for path, ops in spec["paths"].items() for method in ops
            if method in ("get", "post", "put", "patch", "delete")}


async def test_every_api_route_is_in_the_spec(tmp_path: Path) -> None:
    """The app the daemon serves (make_app), not a list kept by hand: a route added to any
    module without its documentation fails here."""
    agent = Agent(load_config(write_site(tmp_path, peers.free_port(socket.SOCK_STREAM))))
    app = make_app(agent)
    routes = {(r.resource.canonical, r.method.lower()) for r in app.router.routes()
              if r.resource is not None and r.resource.canonical.startswith("/api/v1/")
              and r.method != "HEAD"}
    assert openapi()["openapi"].startswith("3.1")
    assert len(routes) >= 39
    assert routes - documented() == set(), "registered but not documented"
    assert documented() - routes == set(), "documented but not registered"


CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent))


async def test_schemathesis(running: Running, tmp_path: Path) -> None:
    """Generated requests (valid and invalid) for every operation, with each role's token,
    against the running agent: no 5xx, status codes, content types and bodies as
    documented, invalid input rejected, auth not ignored."""
    if SCHEMATHESIS is None:
        peers.missing("schemathesis is not installed")
    for role in ROLES:
        proc = await asyncio.create_subprocess_exec(
            SCHEMATHESIS, "--config-file", str(CONFIG), "run",
            f"{running.base}/api/v1/openapi.json", "--url", running.base,
            "-H", f"Authorization: Bearer {running.tokens[role]}",
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                        "response_schema_conformance,negative_data_rejection,ignored_auth",
            "--phases", "examples,coverage,fuzzing", "--max-examples", "5", "--seed", "1",
            "--workers", "1", "--no-color", "--generation-database", "none",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
        assert proc.returncode == 0, (role, out.decode()[-8000:])


# -- what the generated requests found ---------------------------------------------------------

async def test_found_by_schemathesis(running: Running) -> None:
    """Each was a 500 or an invalid request accepted (and some of them stored)."""
    engineer = {"Authorization": f"Bearer {running.tokens['engineer']}"}
    base = running.base
    async with aiohttp.ClientSession(headers=engineer) as http:
        async def call(method: str, path: str, **kwargs: object) -> tuple[int, object]:
            async with http.request(method, base + path, **kwargs) as r:
                return r.status, (await r.json() if r.content_type == "application/json"
                                  else await r.read())

        # a control character in a note (ESC from a terminal) made the XLSX report a 500
        [ticket] = (await call("GET", "/api/v1/tickets"))[1]
        assert (await call("POST", f"/api/v1/tickets/{ticket['id']}/comments",
                           json={"text": "tried \x1b[1m again\x0b"}))[0] == 200
        status, body = await call("GET", f"/api/v1/reports/tickets/{ticket['id']}"
                                         "?format=xlsx")
        assert status == 200 and body[:2] == b"PK"
        # ... and so it did in an inspection's sheet
        [inspection] = (await call("GET", "/api/v1/inspections"))[1]
        status, _ = await call("POST", f"/api/v1/inspections/{inspection['id']}/results",
                               json={"results": [{"item": "cabinet_tidy", "status": "issue",
                                                  "note": "门锁\x1b坏"}]})
        assert status == 200
        status, body = await call("GET", f"/api/v1/inspections/{inspection['id']}/sheet.xlsx")
        assert status == 200 and body[:2] == b"PK"
        # a result without a status was skipped silently (200, the others recorded)
        for entry in ({"item": "lens_cleaning"}, {"item": "lens_cleaning", "note": 5}):
            status, body = await call("POST", f"/api/v1/inspections/{inspection['id']}/"
                                              "results", json={"results": [
                                                  {"item": "cabinet_tidy", "status": "ok"},
                                                  entry]})
            assert status == 400 and body["problems"], entry

        # a resistance of 5e-324 Ω was stored, and the next one's change ratio was infinite
        # (the trend's JSON held `Infinity`)
        status, body = await call("POST", "/api/v1/grounding/ep-room/measurements",
                                  json={"ohm": 5e-324, "instrument": "UT522", "weather": "晴"})
        assert status == 400 and body["problems"][0]["field"] == "ohm"
        assert len((await call("GET", "/api/v1/grounding/ep-room"))[1]["trend"]) == 1

        # filters no fault can match were answered with an empty list
        for query in ("/api/v1/faults?state=AAA", "/api/v1/faults?level=9",
                      "/api/v1/faults?lvl=1", "/api/v1/faults/history?limit=-1",
                      "/api/v1/faults/history?state=open"):
            status, body = await call("GET", query)
            assert status == 400 and body["error"], query

        # a silence with an unknown field, a non-text owner or a boolean time was made
        good = {"matchers": ['device="cam-1"'], "duration": "1h", "owner": "li",
                "reason": "换电池"}
        for bad in ({**good, "comment": "x"}, {**good, "owner": 5},
                    {**good, "starts_at": True}, {**good, "duration": None, "ends_at": 1e300}):
            status, body = await call("POST", "/api/v1/silences", json=bad)
            assert status == 400 and body["error"], bad
        assert (await call("GET", "/api/v1/silences"))[1] == []
