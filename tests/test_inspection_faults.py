"""Overdue inspections are level-4 faults (config/rules/inspections.yaml) in the running
agent: an inspection open past its due time (clock injected) fires InspectionOverdue on its
subject `KIND@SITE`, opens a level-4 ticket, and clears once the technician submits it; the
sheet the agent made is pre-filled with availability, the last UPS discharge test and the
grounding measurements."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

from agent.auth import add_user
from agent.config import load_config
from agent.daemon import Agent
from tests import peers

ROOT = Path(__file__).resolve().parents[1]
ZONE = ZoneInfo("Asia/Shanghai")
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
rules: {{files: ['{root}/config/rules/inspections.yaml'], interval: 1h}}
inspections:
  schedules:
    monthly: {{period: month, due_after: 1d, title_zh: 月度巡检, title_en: Monthly visit,
              checklist: [{{id: cabinet_tidy, zh: 机柜整洁, en: Cabinet tidy}}]}}
"""


class Clock:
    def __init__(self, when: datetime) -> None:
        self.t = when.timestamp()

    def __call__(self) -> float:
        return self.t


def next_month(now: datetime) -> datetime:
    """The first of next month, local midnight: ahead of the wall clock, so the readings
    the rules read (stamped by the injected clock) are never stale."""
    first = now.astimezone(ZONE).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


async def test_an_overdue_inspection_is_a_level_4_fault_until_submitted(tmp_path: Path
                                                                        ) -> None:
    port = peers.free_port(socket.SOCK_STREAM)
    (tmp_path / "inventory.yaml").write_text(INVENTORY, encoding="utf-8")
    (tmp_path / "credentials.yaml").write_text("credentials: {}\n")
    (tmp_path / "credentials.yaml").chmod(0o600)
    (tmp_path / "agent.yaml").write_text(AGENT.format(port=port, root=ROOT), encoding="utf-8")
    token = add_user(tmp_path / "tokens.yaml", "li.tech", "technician")
    start = next_month(datetime.now(ZONE))
    clock = Clock(start + timedelta(hours=9))  # the 1st, 09:00: due on the 2nd, 00:00
    agent = Agent(load_config(tmp_path / "agent.yaml"), clock)
    await agent.start()
    base = f"http://127.0.0.1:{port}/api/v1"
    key = "InspectionOverdue:monthly@dh"
    try:
        for _ in range(400):
            if agent.tickets.ready and agent.grounding.ready and agent.ups_tests.ready:
                break
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {token}"}) as http:
            async def post(path: str, body: dict) -> dict:
                async with http.post(base + path, json=body) as r:
                    assert r.status in (200, 201), (path, await r.text())
                    return await r.json()

            # what the sheet's sections read: a measurement and a manual discharge test
            await post("/grounding/ep-room/measurements", {
                "ohm": 2.5, "instrument": "UT522", "weather": "晴",
                "measured_at": (start - timedelta(days=3)).isoformat()})
            await post("/ups/ups-1/tests/manual", {
                "kind": "deep", "started_at": (start - timedelta(days=2)).isoformat(),
                "ended_at": (start - timedelta(days=2, minutes=-40)).isoformat(),
                "result": "pass"})

            await agent.inspections.tick()  # this month's inspection is created
            await agent.rules.cycle()
            assert key not in agent.rules.engine.active
            [inspection] = await agent.inspections.service.list(site="dh")
            assert inspection.due_at == start + timedelta(days=1)

            clock.t = (start + timedelta(days=2, hours=10)).timestamp()
            await agent.inspections.tick()
            await agent.rules.cycle()
            fault = agent.rules.engine.active[key]
            assert (fault.level, fault.state, fault.site) == (4, "firing", "dh")
            due = (start + timedelta(days=1)).strftime("%Y-%m-%d")
            summary = fault.texts["summary"]
            assert summary["zh"] == f"东湖社区 月度巡检逾期未完成（应于 {due} 前提交）"
            assert summary["en"] == f"东湖社区: Monthly visit overdue (due {due})"
            [ticket] = [t for t in await agent.tickets.store.list() if t.fault_key == key]
            assert (ticket.level, ticket.site, ticket.device) == (4, "dh", "monthly@dh")

            # the sheet the agent made is pre-filled by the per-agent section providers
            async with http.get(f"{base}/inspections/{inspection.id}") as r:
                sheet = (await r.json())["sheet"]
            sections = sheet["sections"]
            assert all(s["available"] for s in sections.values()), sections
            [ups] = sections["ups_discharge_test"]["rows"]
            assert ups[:2] == ["ups-1", "pass"] and ups[3] == 2400
            [point] = sections["grounding"]["rows"]
            assert point[0] == "ep-room" and point[3] == 2.5
            devices = {row[0] for row in sections["availability"]["rows"]}
            assert devices == {"cam-1", "ups-1"}

            # submitted: the fault clears at once (no wait for the next hourly check)
            await post(f"/inspections/{inspection.id}/results",
                       {"results": [{"item": "cabinet_tidy", "status": "ok"}]})
            await post(f"/inspections/{inspection.id}/submit", {})
            await agent.rules.cycle()
            assert key not in agent.rules.engine.active
            assert agent.rules.engine.history[0].key == key
    finally:
        await agent.stop()
