"""A ticket's whole life in the running agent, on real peers on loopback, with the shipped
rules and the shipped escalation policy (config/escalation.yaml):

a recorded Delta UPS (served by snmpsim) is on battery -> UpsOnBattery fires at level 2 ->
the agent opens a level-2 ticket and tells the technician tier on its WeCom robot (a local
HTTP server standing in for qyapi.weixin.qq.com via `api_base`) -> the ticket clock is moved
past level 2's 30-min response limit (injected clock: nothing sleeps) -> the ticket escalates
once, to level 1, and the team lead hears of it on WeCom and by e-mail (a real aiosmtpd
server) -> acknowledging over the API stops the response timer -> diagnosis, repair and the
owner's confirmation (refused to a technician) close it; the timeline holds every step.
Runs against SQLite and against a real PostgreSQL, side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import socket
import time
from collections.abc import AsyncIterator, Iterator
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.auth import add_user
from agent.config import load_config
from agent.daemon import Agent
from tests import peers
from tests.conftest import new_database
from tests.test_rules_daemon import _ups_on_battery_at

ROOT = Path(__file__).resolve().parent.parent
MINUTE = 60.0


class OffsetClock:
    """Wall time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class WeComRobot:
    """The WeCom group-robot API on loopback: records each message's text by robot key."""

    def __init__(self) -> None:
        self.texts: dict[str, list[str]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.texts.setdefault(request.query["key"], []).append(body["text"]["content"])
        return web.json_response({"errcode": 0, "errmsg": "ok"})


@contextlib.asynccontextmanager
async def robot() -> AsyncIterator[tuple[WeComRobot, str]]:
    wecom = WeComRobot()
    app = web.Application()
    app.router.add_post("/cgi-bin/webhook/send", wecom.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield wecom, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Mailbox:
    """aiosmtpd handler keeping every message delivered."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content,
                                                      policy=default_policy))
        return "250 OK"


@contextlib.contextmanager
def smtp() -> Iterator[tuple[Mailbox, int]]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=peers.free_port(socket.SOCK_STREAM))
    controller.start()
    try:
        yield box, controller.port
    finally:
        controller.stop()


@pytest.fixture
def ups_sim(tmp_path: Path) -> Any:
    data = tmp_path / "sim"
    data.mkdir()
    (data / "ups-1.snmprec").write_text(
        _ups_on_battery_at(peers.recordings() / "deltaups.snmprec", time.time() - 5),
        encoding="latin-1")
    with peers.snmpsim(data, tmp_path) as port:
        yield port


def site(work: Path, sim_port: int, smtp_port: int, robot_base: str, db_url: str) -> Path:
    (work / "credentials.yaml").write_text(
        "credentials:\n  ups-1:\n    version: 2c\n    community: ups-1\n")
    (work / "credentials.yaml").chmod(0o600)
    (work / "inventory.yaml").write_text(
        "sites:\n  - {id: room-1, name: 东湖分局机房}\ndevices:\n"
        f"  - {{id: ups-1, name: 机房UPS, kind: ups, site: room-1, address: 127.0.0.1, "
        f"port: {sim_port}, credentials: ups-1}}\n")
    http = peers.free_port(socket.SOCK_STREAM)
    mail = (f"host: 127.0.0.1, port: {smtp_port}, security: none, "
            f"from: vigil@example.org, storm_window: 1s")
    (work / "agent.yaml").write_text(f"""\
agent: {{id: branch-e2e}}
listen: 127.0.0.1:{http}
state_dir: state
schedule: {{default_interval: 2s}}
snmp: {{timeout: 500ms, retries: 1}}
rules: {{files: ['{peers.fast_rules(work)}'], interval: 1s}}
tickets:
  url: '{db_url}'
  escalation: '{ROOT}/config/escalation.yaml'
  escalation_interval: 1s
notifications:
  channels:
    - {{name: wecom-maintenance, type: wecom, key: maint-key, api_base: '{robot_base}',
       storm_window: 1s}}
    - {{name: email-team-lead, type: email, {mail}, to: [lead@example.org]}}
    - {{name: dingtalk-contractor, type: dingtalk, access_token: t, api_base: '{robot_base}',
       storm_window: 1s}}
    - {{name: email-contractor-manager, type: email, {mail}, to: [manager@example.org]}}
    - {{name: email-owner, type: email, {mail}, to: [owner@example.org]}}
""")
    return work / "agent.yaml"


async def until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await predicate()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_ups_on_battery_ticket_escalates_once_and_closes_with_the_owner(
        tmp_path, postgres_server, ups_sim):
    """The same story on SQLite and on PostgreSQL, told side by side (half the wall time:
    most of it waiting for the fault; the shipped rules with `for:` shortened to 3 s: their
    timing is test_rules_daemon.py's)."""
    stories = []
    for name, url in (("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'sqlite' / 'tickets.db'}"),
                      ("postgresql", new_database(postgres_server))):
        (tmp_path / name).mkdir()
        stories.append(ticket_story(tmp_path / name, url, ups_sim))
    await asyncio.gather(*stories)


async def ticket_story(work: Path, db_url: str, ups_port: int) -> None:
    async with robot() as (wecom, robot_base):
        with smtp() as (mailbox, smtp_port):
            await _story(work, db_url, ups_port, wecom, robot_base, mailbox, smtp_port)


async def _story(tmp_path: Path, db_url: str, ups_sim: int, wecom: WeComRobot,
                 robot_base: str, mailbox: Mailbox, smtp_port: int) -> None:
    config_path = site(tmp_path, ups_sim, smtp_port, robot_base, db_url)
    tokens = tmp_path / "tokens.yaml"
    tech, owner = add_user(tokens, "wang.tech", "technician"), add_user(tokens, "li.owner",
                                                                         "owner")
    clock = OffsetClock()
    agent = Agent(load_config(config_path), clock)
    await agent.start()
    base = f"http://{agent.config.settings.listen}/api/v1"
    session = aiohttp.ClientSession()

    async def call(method: str, path: str, token: str = tech, **body: Any) -> tuple[int, Any]:
        async with session.request(method, base + path, json=body if method == "POST"
                                   else None, headers={"Authorization": f"Bearer {token}"}
                                   ) as response:
            return response.status, await response.json()

    async def ticket() -> dict | None:
        status, tickets = await call("GET", "/tickets?rule=UpsOnBattery")
        return tickets[0] if status == 200 and tickets else None

    try:
        # 1. on battery: one level-2 ticket, the technician tier told on WeCom
        opened = await until(ticket, 90, "a ticket for UpsOnBattery")
        assert (opened["level"], opened["state"], opened["device"], opened["site"]) == \
            (2, "open", "ups-1", "room-1")
        texts = await until(lambda: _ready(wecom.texts.get("maint-key")), 10, "WeCom message")
        assert "【二级】" in texts[0] and "东湖分局机房" in texts[0] and "机房UPS" in texts[0]
        assert f"/tickets/{opened['id']}" in texts[0] and "处理时限" in texts[0]
        assert mailbox.messages == []  # the team lead hears nothing yet

        # 2. 31 minutes later, not acknowledged: escalated once, to level 1; the team lead
        # tier (WeCom and e-mail) is told
        clock.offset += 31 * MINUTE
        await until(lambda: _ready(mailbox.messages), 15, "the escalation e-mail")
        escalated = await ticket()
        assert escalated["level"] == 1
        mail = mailbox.messages[0]
        assert mail["To"] == "lead@example.org" and "升级" in mail["Subject"]
        assert "已升级为1级" in mail.get_content()
        await until(lambda: _ready(wecom.texts["maint-key"][1:]), 10, "escalation on WeCom")

        # 3. acknowledged within level 1's 15 min: no further escalation however long the
        # repair takes (within its 4 h)
        clock.offset += 5 * MINUTE
        status, acked = await call("POST", f"/tickets/{opened['id']}/acknowledge",
                                   note="已到现场")
        assert status == 200 and acked["state"] == "acknowledged"
        clock.offset += 60 * MINUTE
        await asyncio.sleep(2.5)  # two escalation checks at the new time
        assert (await ticket())["level"] == 1
        assert len(mailbox.messages) == 1

        # 4. diagnosis, repair, the owner's confirmation (not a technician's), close
        tid = opened["id"]
        assert (await call("POST", f"/tickets/{tid}/diagnosis", diagnosis="市电中断，电池供电",
                           plan="联系供电所恢复市电"))[0] == 200
        assert (await call("POST", f"/tickets/{tid}/repair/start"))[0] == 200
        assert (await call("POST", f"/tickets/{tid}/resolve", cause_category="power_ups",
                           repair="市电恢复，更换老化电池组", parts_replaced=["电池组 12V 100Ah"]
                           ))[0] == 200
        status, refused = await call("POST", f"/tickets/{tid}/confirm")
        assert status == 403 and "owner" in refused["error"]
        assert (await call("POST", f"/tickets/{tid}/confirm", owner, note="验收合格"))[0] == 200
        status, closed = await call("POST", f"/tickets/{tid}/close", owner)
        assert status == 200 and closed["state"] == "closed"

        _, full = await call("GET", f"/tickets/{tid}")
        steps = [(e["kind"], e["actor"]) for e in full["timeline"]]
        assert [k for k, _ in steps if k != "notified"] == [
            "opened", "escalated", "acknowledged", "diagnosed", "repair_started",
            "resolved", "confirmed", "closed"]
        assert ("acknowledged", "wang.tech") in steps and ("confirmed", "li.owner") in steps
        assert [k for k, _ in steps].count("notified") == 2
        escalation = next(e for e in full["timeline"] if e["kind"] == "escalated")["data"]
        assert (escalation["from_level"], escalation["to_level"], escalation["breach"],
                escalation["tier"]) == (2, 1, "response", "team_lead")
        resolved = next(e for e in full["timeline"] if e["kind"] == "resolved")["data"]
        assert resolved["parts_replaced"] == ["电池组 12V 100Ah"]
        metrics = agent.registry.get_sample_value
        assert metrics("vigil_ticket_escalations_total",
                       {"breach": "response", "to_level": "1"}) == 1
        assert metrics("vigil_ticket_time_to_acknowledge_seconds_count", {"level": "1"}) == 1
        assert metrics("vigil_notifications_sent_total", {"channel": "email-team-lead"}) == 1

        # 5. the diagnosis and maintenance report, served by the agent (agent/reports)
        async with session.get(f"{base}/reports/tickets/{tid}", headers={
                "Authorization": f"Bearer {owner}"}) as response:
            report = await response.text()
        assert response.status == 200, report
        for fact in ("东湖分局机房", "机房UPS", "市电恢复，更换老化电池组", "验收合格", "二级"):
            assert fact in report, fact
    finally:
        await session.close()
        await agent.stop()


async def _ready(value: Any) -> Any:
    return value
