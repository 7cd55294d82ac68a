"""The tickets HTTP API and `vigil tickets`: a real aiohttp server on 127.0.0.1 over a real
TicketStore (temp SQLite file), a tokens file with one user per role."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.auth import (
    Authenticator,
    FailureLimiter,
    TokensFileError,
    Users,
    add_user,
    read_users,
    remove_user,
)
from agent.tickets.store import TicketStore
from agent.tickets_api import add_ticket_routes, openapi

T0 = 1_780_000_000.0
ROLES = ("engineer", "technician", "owner", "viewer")
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class FakeFault:
    """What open_for_fault reads of a fault."""

    key: str = "UpsOnBattery:ups-1"
    rule: str = "UpsOnBattery"
    site: str = "dh"
    device: str = "ups-1"
    subject: str = "ups-1"
    level: int = 2
    texts: dict[str, dict[str, str]] = field(default_factory=lambda: {
        "summary": {"zh": "UPS 电池供电", "en": "UPS on battery"}})
    evidence: dict[str, Any] = field(default_factory=lambda: {"input_voltage": 0})
    fired_at: float | None = T0 - 30


@dataclass
class Api:
    base: str
    store: TicketStore
    tokens: dict[str, str]
    tokens_file: Path
    http: aiohttp.ClientSession
    state: dict[str, Any] = field(default_factory=dict)

    async def call(self, method: str, path: str, role: str | None = None,
                   body: Any = None, data: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        h = dict(headers or {})
        if role:
            h["Authorization"] = f"Bearer {self.tokens[role]}"
        async with self.http.request(method, self.base + path, json=body, data=data,
                                     headers=h) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None)

    async def snapshot(self, ticket_id: int) -> tuple[dict, int]:
        ticket = await self.store.get(ticket_id)
        return ticket.to_dict(), len(await self.store.timeline(ticket_id))

    async def cli(self, *args: str, token_role: str | None = None,
                  url: str | None = None) -> tuple[int, str, str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("VIGIL_TOKEN", None)
        if token_role:
            env["VIGIL_TOKEN"] = self.tokens[token_role]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "tickets", "--url", url or self.base, *args,
            env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), err.decode()


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def api(tmp_path: Path):
    tokens_file = tmp_path / "tokens.yaml"
    tokens = {role: add_user(tokens_file, f"{role}-1", role) for role in ROLES}
    store = TicketStore(f"sqlite+aiosqlite:///{tmp_path / 'tickets.db'}", "branch-dh",
                        lambda: T0)
    await store.start()
    available = {"store": store}
    app = web.Application()
    add_ticket_routes(app, lambda: available["store"],
                      Authenticator(Users.from_file(tokens_file), FailureLimiter(burst=1000)))
    runner, base = await serve(app)
    async with aiohttp.ClientSession() as http:
        a = Api(base, store, tokens, tokens_file, http, available)
        try:
            yield a
        finally:
            await runner.cleanup()
            await store.dispose()


async def open_ticket(api: Api, key: str = "UpsOnBattery:ups-1") -> int:
    ticket, created = await api.store.open_for_fault(FakeFault(key=key))
    assert created
    return ticket.id


# -- the lifecycle over HTTP ------------------------------------------------------------------

async def test_lifecycle_over_http(api: Api) -> None:
    tid = await open_ticket(api)
    status, items = await api.call("GET", "/api/v1/tickets?state=open", "viewer")
    assert status == 200 and [t["id"] for t in items] == [tid]
    assert items[0]["title_zh"] == "UPS 电池供电" and items[0]["allowed_actions"] == ["acknowledge"]

    steps = [("acknowledge", "technician", {"note": "到场"}, "acknowledged"),
             ("diagnosis", "technician", {"diagnosis": "电池老化", "plan": "更换电池组"},
              "diagnosed"),
             ("repair/start", "engineer", {}, "repairing"),
             ("resolve", "technician", {"cause_category": "power_ups", "repair": "换电池",
                                        "parts_replaced": ["12V 100Ah 电池 x4"]}, "resolved"),
             ("confirm", "owner", {"note": "验收合格"}, "confirmed"),
             ("close", "owner", None, "closed")]
    for suffix, role, body, state in steps:
        status, ticket = await api.call("POST", f"/api/v1/tickets/{tid}/{suffix}", role, body)
        assert status == 200, (suffix, ticket)
        assert ticket["state"] == state

    status, ticket = await api.call("POST", f"/api/v1/tickets/{tid}/comments", "engineer",
                                    {"text": "归档"})
    assert status == 200
    status, shown = await api.call("GET", f"/api/v1/tickets/{tid}", "viewer")
    assert status == 200 and shown["cause_category"] == "power_ups"
    kinds = [(e["kind"], e["actor"]) for e in shown["timeline"]]
    assert kinds == [("opened", "agent:branch-dh"), ("acknowledged", "technician-1"),
                     ("diagnosed", "technician-1"), ("repair_started", "engineer-1"),
                     ("resolved", "technician-1"), ("confirmed", "owner-1"),
                     ("closed", "owner-1"), ("comment", "engineer-1")]
    resolved = shown["timeline"][4]["data"]
    assert resolved["parts_replaced"] == ["12V 100Ah 电池 x4"]

    status, ticket = await api.call("POST", f"/api/v1/tickets/{tid}/reopen", "owner",
                                    {"reason": "又断电了"})
    assert status == 200 and ticket["state"] == "open" and ticket["reopen_count"] == 1

    # filters
    status, items = await api.call("GET", "/api/v1/tickets?level=2&site=dh&device=ups-1"
                                          "&rule=UpsOnBattery&not_closed=true", "viewer")
    assert status == 200 and [t["id"] for t in items] == [tid]
    status, items = await api.call("GET", "/api/v1/tickets?level=1,3", "viewer")
    assert status == 200 and items == []
    status, items = await api.call("GET", "/api/v1/tickets?limit=1&offset=1", "viewer")
    assert status == 200 and items == []


# -- errors change nothing --------------------------------------------------------------------

async def test_errors_change_nothing(api: Api) -> None:
    tid = await open_ticket(api)
    before = await api.snapshot(tid)
    ack = f"/api/v1/tickets/{tid}/acknowledge"
    cases: list[tuple[int, str, str, dict[str, Any]]] = [
        # status, path, role (None: no token), request kwargs
        (401, ack, None, {}),
        (401, ack, None, {"headers": {"Authorization": "Bearer vgl_not-a-token"}}),
        (401, ack, None, {"headers": {"Authorization": "Basic abc"}}),
        (403, ack, "viewer", {}),
        (403, ack, "owner", {}),
        (404, "/api/v1/tickets/999/acknowledge", "technician", {}),
        (404, f"/api/v1/tickets/{2**70}/acknowledge", "technician", {}),
        (400, "/api/v1/tickets/abc/acknowledge", "technician", {}),
        (400, ack, "technician", {"data": b"{not json",
                                  "headers": {"Content-Type": "application/json"}}),
        (400, ack, "technician", {"body": ["a list"]}),
        (400, ack, "technician", {"body": {"note": "x", "extra": 1}}),
        (400, ack, "technician", {"body": {"note": 5}}),
        (413, ack, "technician", {"data": b'{"note": "' + b"x" * 70_000 + b'"}',
                                  "headers": {"Content-Type": "application/json"}}),
        (409, f"/api/v1/tickets/{tid}/confirm", "owner", {}),
        (409, f"/api/v1/tickets/{tid}/diagnosis", "technician", {"body": {"diagnosis": "x"}}),
        (400, f"/api/v1/tickets/{tid}/diagnosis", "technician", {"body": {"plan": "x"}}),
        (400, f"/api/v1/tickets/{tid}/diagnosis", "technician", {"body": {"diagnosis": " "}}),
        (400, f"/api/v1/tickets/{tid}/reopen", "owner", {"body": {}}),
        (400, f"/api/v1/tickets/{tid}/comments", "engineer", {"body": {"text": ""}}),
        (400, f"/api/v1/tickets/{tid}/resolve", "technician",
         {"body": {"cause_category": "gremlins", "repair": "x"}}),
        (400, f"/api/v1/tickets/{tid}/resolve", "technician",
         {"body": {"cause_category": "network", "repair": "x", "parts_replaced": "cable"}}),
    ]
    for status, path, role, kwargs in cases:
        got, body = await api.call("POST", path, role, **kwargs)
        assert got == status, (status, path, role, kwargs, body)
        assert isinstance(body, dict) and body["error"], body
        assert await api.snapshot(tid) == before, (status, path, role)

    got, body = await api.call("POST", f"/api/v1/tickets/{tid}/confirm", "owner")
    assert got == 409 and body["current"] == "open" and body["allowed"] == ["acknowledge"]
    got, body = await api.call("POST", ack, None)
    assert "token" in body["error"]

    for query in ("state=bogus", "level=5", "level=x", "limit=0", "limit=abc", "offset=-1",
                  "not_closed=maybe", "stat=open", "site=a&site=b", "state=", "level="):
        got, body = await api.call("GET", f"/api/v1/tickets?{query}", "viewer")
        assert got == 400 and body["error"], query
    got, body = await api.call("GET", "/api/v1/tickets", None)
    assert got == 401
    got, body = await api.call("GET", "/api/v1/tickets/999", "viewer")
    assert got == 404 and body == {"error": "no ticket 999"}

    # the store unavailable: 503, for reads and writes alike
    api.state["store"] = None
    for method, path in (("GET", "/api/v1/tickets"), ("POST", ack)):
        got, body = await api.call(method, path, "technician")
        assert got == 503 and "not available" in body["error"]
    api.state["store"] = api.store
    assert await api.snapshot(tid) == before


async def test_only_the_owner_confirms(api: Api) -> None:
    tid = await open_ticket(api)
    for suffix, body in (("acknowledge", {}), ("diagnosis", {"diagnosis": "线缆松动"}),
                         ("repair/start", {}),
                         ("resolve", {"cause_category": "connector_cable",
                                      "repair": "重做水晶头"})):
        assert (await api.call("POST", f"/api/v1/tickets/{tid}/{suffix}", "technician",
                               body))[0] == 200
    before = await api.snapshot(tid)
    for role in ("technician", "engineer", "viewer"):
        status, body = await api.call("POST", f"/api/v1/tickets/{tid}/confirm", role)
        assert status == 403 and "owner" in body["error"]
        assert await api.snapshot(tid) == before
    status, body = await api.call("POST", f"/api/v1/tickets/{tid}/confirm", "owner")
    assert status == 200 and body["state"] == "confirmed"


async def test_failed_auth_is_rate_limited(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.yaml"
    token = add_user(tokens_file, "tech", "technician")
    now = [0.0]
    limiter = FailureLimiter(burst=3, interval=10.0, clock=lambda: now[0])
    app = web.Application()
    add_ticket_routes(app, lambda: None, Authenticator(Users.from_file(tokens_file), limiter))
    runner, base = await serve(app)
    try:
        async with aiohttp.ClientSession() as http:
            async def get(tok: str) -> int:
                async with http.get(f"{base}/api/v1/tickets",
                                    headers={"Authorization": f"Bearer {tok}"}) as r:
                    return r.status
            assert [await get("wrong") for _ in range(4)] == [401, 401, 401, 429]
            assert await get(token) == 429  # even a good token waits: nothing is checked
            now[0] += 10.0
            assert await get(token) == 503  # authenticated (the store is absent)
            assert await get("wrong") == 401
            assert await get("wrong") == 429
    finally:
        await runner.cleanup()


# -- tokens file ------------------------------------------------------------------------------

async def test_tokens_file_holds_no_clear_token(api: Api) -> None:
    text = api.tokens_file.read_text()
    for token in api.tokens.values():
        assert token not in text
        assert len(token) > 40
    users = read_users(api.tokens_file)
    assert sorted(u.role for u in users) == sorted(ROLES)
    assert stat.S_IMODE(api.tokens_file.stat().st_mode) == 0o600
    with pytest.raises(TokensFileError):
        add_user(api.tokens_file, "owner-1", "owner")
    # a user removed: its token stops working at once (the file is re-read)
    assert remove_user(api.tokens_file, "viewer-1")
    assert (await api.call("GET", "/api/v1/tickets", "viewer"))[0] == 401
    assert (await api.call("GET", "/api/v1/tickets", "engineer"))[0] == 200


def test_tokens_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from agent.cli import main

    path = tmp_path / "t.yaml"
    result = CliRunner().invoke(main, ["tokens", "add", "li.na", "--role", "owner",
                                       "--file", str(path)])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("vgl_") and token not in path.read_text()
    assert Users.from_file(path).authenticate(token).role == "owner"
    listed = CliRunner().invoke(main, ["tokens", "list", "--file", str(path)])
    assert "li.na" in listed.stdout and token not in listed.stdout
    bad = CliRunner().invoke(main, ["tokens", "add", "x", "--role", "king", "--file", str(path)])
    assert bad.exit_code == 2


def test_tokens_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("users:\n  - {name: a, role: owner, token: vgl_clear}\n")
    with pytest.raises(TokensFileError, match="never stored"):
        read_users(path)
    path.write_text("users:\n  - {name: a, role: boss, token_sha256: " + "0" * 64 + "}\n")
    with pytest.raises(TokensFileError, match="role"):
        read_users(path)


# -- the CLI on the same API ------------------------------------------------------------------

async def test_cli_lifecycle(api: Api) -> None:
    tid = str(await open_ticket(api))
    code, out, err = await api.cli("list", token_role="viewer")
    assert code == 0, err
    assert "UPS 电池供电" in out and "待响应" in out and "ups-1" in out

    steps = [(("ack", tid, "--note", "收到"), "technician"),
             (("diagnose", tid, "--diagnosis", "电池老化", "--plan", "更换"), "technician"),
             (("repair", tid), "technician"),
             (("resolve", tid, "--cause", "power_ups", "--repair", "换电池",
               "--part", "电池A", "--part", "电池B"), "technician")]
    for args, role in steps:
        code, out, err = await api.cli(*args, token_role=role)
        assert code == 0, (args, err)

    # the technician cannot confirm: exit 1 with the API's reason, nothing changed
    before = await api.snapshot(int(tid))
    code, out, err = await api.cli("confirm", tid, token_role="technician")
    assert code == 1 and "403" in err and "owner" in err
    assert await api.snapshot(int(tid)) == before
    # no token at all
    code, out, err = await api.cli("confirm", tid)
    assert code == 1 and "401" in err and "VIGIL_TOKEN" in err
    # an illegal transition: the reason names the state
    code, out, err = await api.cli("close", tid, token_role="owner")
    assert code == 1 and "409" in err and "resolved" in err
    assert await api.snapshot(int(tid)) == before

    code, out, err = await api.cli("confirm", tid, token_role="owner")
    assert code == 0 and "confirmed" in out, err
    code, out, err = await api.cli("comment", tid, "业主已验收", token_role="owner")
    assert code == 0, err
    code, out, err = await api.cli("close", tid, "--note", "归档", token_role="engineer")
    assert code == 0 and "closed" in out, err

    code, out, err = await api.cli("show", tid, token_role="viewer")
    assert code == 0, err
    for text in ("已关闭", "technician-1", "owner-1", "电池A, 电池B", "业主已验收", "power_ups"):
        assert text in out, (text, out)
    code, out, err = await api.cli("list", token_role="viewer")
    assert code == 0 and out.strip() == "no tickets"
    code, out, err = await api.cli("list", "--all", "--json", token_role="viewer")
    assert code == 0 and json.loads(out)[0]["state"] == "closed"
    code, out, err = await api.cli("reopen", tid, "--reason", "复发", token_role="technician")
    assert code == 0 and "open" in out

    code, out, err = await api.cli("show", "999", token_role="viewer")
    assert code == 1 and "no ticket 999" in err


async def test_cli_agent_unreachable(api: Api) -> None:
    code, _, err = await api.cli("list", token_role="viewer", url="http://127.0.0.1:9")
    assert code == 2 and "cannot reach the agent" in err


# -- the spec (every route, and schemathesis against the running agent: tests/test_openapi.py)

async def test_spec_is_served(api: Api) -> None:
    status, spec = await api.call("GET", "/api/v1/openapi.json")
    assert status == 200 and spec == openapi()
