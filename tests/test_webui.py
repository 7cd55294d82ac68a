"""The web UI (agent/webui) in headless Chromium (Debian's, driven by Playwright) against a
real agent on loopback: a SQLite ticket store, a tokens file with one user per role, two
cameras whose reachability the agent checks (one answers, one does not).

A technician records a repair and resolves it; the owner confirms it; the ticket report
opened from the UI shows both; a technician has no confirm button and a forged confirm is
refused; a viewer changes nothing; a phone screen needs no horizontal scroll; English works.
Screenshots of the main pages go to $VIGIL_ARTIFACTS (default build/test-artifacts/webui/).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from agent.auth import Users, add_user, remove_user
from agent.config import load_config
from agent.daemon import Agent
from agent.inspections import Row
from agent.webui.sessions import Sessions
from tests import peers

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
ROLES = ("engineer", "technician", "owner", "viewer")

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Fault:
    """What the ticket store reads of a firing fault (the path the rules stage takes)."""

    key: str
    device: str
    rule: str = "CameraOffline"
    site: str = "dh"
    subject: str = ""
    level: int = 3
    texts: dict[str, dict[str, str]] = field(default_factory=lambda: {
        "summary": {"zh": "摄像机离线", "en": "Camera offline"}})
    evidence: dict[str, Any] = field(default_factory=lambda: {
        "inputs": {"up": 0}, "readings": [["vigil_device_up", {"collector": "reach"}, 0]]})
    fired_at: float | None = None


@dataclass
class Site:
    base: str
    agent: Agent
    tokens: dict[str, str]
    tickets: list[int]
    shots: Path


def artifacts() -> Path:
    path = Path(os.environ.get("VIGIL_ARTIFACTS") or ROOT / "build" / "test-artifacts" / "webui")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    work = tmp_path_factory.mktemp("webui")
    port, silent = peers.free_port(socket.SOCK_STREAM), peers.free_port(socket.SOCK_DGRAM)
    (work / "credentials.yaml").write_text(
        "credentials:\n  cam:\n    version: 2c\n    community: public\n")
    (work / "credentials.yaml").chmod(0o600)
    (work / "inventory.yaml").write_text(
        "sites:\n  - {id: dh, name: 东湖社区}\n  - {id: gx, name: 光谷派出所}\ndevices:\n"
        "  - {id: cam-1, name: 东湖路口球机, kind: ptz_camera, site: dh, address: 127.0.0.1,"
        f" snmp: false, reachability: {{tcp_ports: [{port}]}}}}\n"
        "  - {id: cam-2, name: 东湖北门枪机, kind: fixed_camera, site: dh, address: 127.0.0.1,"
        f" port: {silent}, credentials: cam, reachability: {{enabled: false}}}}\n"
        "  - {id: cam-3, name: 光谷广场枪机, kind: fixed_camera, site: gx, address: 127.0.0.1,"
        " snmp: false, reachability: {enabled: false}}\n")
    (work / "agent.yaml").write_text(
        f"agent: {{id: branch-dh}}\nlisten: 127.0.0.1:{port}\nstate_dir: state\n"
        f"rules: {{files: ['{ROOT}/config/rules/*.yaml']}}\n"
        "reachability: {icmp: false, interval: 1s, timeout: 300ms}\n"
        "schedule: {default_interval: 1s}\nsnmp: {timeout: 300ms, retries: 0}\n"
        "inspections: {schedules: {monthly: {period: month, due_after: 20d, title_zh: 月度巡检,"
        " title_en: Monthly visit, checklist: [{id: cabinet_tidy, zh: 机柜整洁, "
        "en: Cabinet tidy}]}}}\n")
    tokens = {role: add_user(work / "tokens.yaml", f"{role}.li", role) for role in ROLES}
    agent = Agent(load_config(work / "agent.yaml"))
    await agent.start()
    try:
        await until(lambda: agent.tickets.ready and all(
            agent.state.devices[d].up is not None for d in ("cam-1", "cam-2")), "agent ready")
        store = agent.tickets.store
        opened = [(await store.open_for_fault(Fault(f"CameraOffline:{d}", d, site=s,
                                                     subject=d)))[0].id
                  for d, s in (("cam-2", "dh"), ("cam-3", "gx"))]
        service = agent.inspections.service
        month = store.now().strftime("%Y-%m")
        inspection, _ = await service.create("dh", "monthly", month, "technician.li")
        sheet = (await service.get(inspection.id))["sheet"]
        await service.record(inspection.id, "technician.li",
                             [Row(str(n), r["item"], r["device"], "ok")
                              for n, r in enumerate(sheet["checklist"])])
        await service.submit(inspection.id, "technician.li")
        yield Site(f"http://127.0.0.1:{port}", agent, tokens, opened, artifacts())
    finally:
        await agent.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        peers.missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        peers.missing("the Python package playwright is not installed (pip install -e '.[test]')")
    async with async_playwright() as p:
        # launch() starts the browser on a fresh temporary profile (user-data-dir) each time
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def until(predicate: Any, what: str, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def login(browser: Any, site: Site, role: str, viewport: dict[str, int] = DESKTOP,
                shot: str = "") -> Any:
    context = await browser.new_context(viewport=viewport, locale="zh-CN")
    page = await context.new_page()
    await page.goto(site.base + "/")
    assert page.url.startswith(site.base + "/ui/login")
    if shot:
        await page.screenshot(path=site.shots / shot, full_page=True)
    await page.fill("#token", site.tokens[role])
    async with page.expect_navigation():
        await page.click("form[action='/ui/login'] button")
    assert "/ui/login" not in page.url, await page.content()
    return page


async def submit(page: Any, action: str, **fields: str) -> None:
    form = page.locator(f"form[data-action='{action}']")
    await form.locator("xpath=..").evaluate("d => d.open = true")  # the <details> around it
    for name, value in fields.items():
        target = form.locator(f"[name='{name}']")
        if await target.evaluate("e => e.tagName") == "SELECT":
            await target.select_option(value)
        else:
            await target.fill(value)
    async with page.expect_navigation():
        await form.locator("button[type=submit]").click()


async def snapshot(site: Site, ticket_id: int) -> tuple[str, int]:
    store = site.agent.tickets.store
    return (await store.get(ticket_id)).state, len(await store.timeline(ticket_id))


async def no_horizontal_scroll(page: Any) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url}: {width} px wide on a 390 px screen"


# -- the story: a technician's repair, the owner's confirmation, the report -----------------

async def test_technician_repairs_owner_confirms_report_shows_it(browser, site) -> None:
    ticket = site.tickets[0]
    tech = await login(browser, site, "technician", shot="login-desktop.png")
    assert tech.url.endswith("/ui/tickets")
    assert await tech.locator("nav.menu a.active").inner_text() == "我的工单"
    assert await tech.locator("#tickets li").count() == 2
    # filter by site: the other site's ticket goes
    await tech.select_option("select[name=site]", "gx")
    async with tech.expect_navigation():
        await tech.click("form.filters button")
    assert await tech.locator("#tickets li").count() == 1
    assert "光谷派出所" in await tech.locator("#tickets").inner_text()
    await tech.goto(site.base + "/ui/tickets")
    await tech.screenshot(path=site.shots / "my-tickets-desktop.png", full_page=True)

    await tech.click(f"a[href='/ui/tickets/{ticket}']")
    await tech.wait_for_load_state()
    body = await tech.inner_text("main")
    assert "摄像机离线" in body and "东湖北门枪机" in body and "vigil_device_up" in body
    assert await tech.locator("form[data-action='confirm']").count() == 0
    await submit(tech, "acknowledge", note="已接单，30分钟到场")
    await submit(tech, "diagnosis", diagnosis="尾纤接头氧化，光功率过低", plan="更换接头")
    await submit(tech, "repair/start")
    await tech.screenshot(path=site.shots / "ticket-detail-desktop.png", full_page=True)
    # a blank repair is refused by the API's own check, nothing stored
    before = await snapshot(site, ticket)
    response = await tech.request.post(f"{site.base}/ui/tickets/{ticket}", form={
        "csrf": await tech.locator("input[name=csrf]").first.input_value(),
        "action": "resolve", "cause_category": "connector_cable", "repair": " "})
    assert response.status == 400 and "repair is required" in await response.text()
    assert await snapshot(site, ticket) == before
    await submit(tech, "resolve", cause_category="connector_cable",
                 repair="重做光纤接头并清洁", parts_replaced="SC 光纤接头 ×2\n尾纤 1 m")
    assert "已保存：记录维修并完成" in await tech.inner_text(".flash")
    assert "已修复" in await tech.inner_text("main")
    assert await snapshot(site, ticket) == ("resolved", 5)

    # the technician sees no confirm button, and a forged confirm with a good CSRF token is
    # refused 403 and changes nothing
    assert await tech.locator("form[data-action='confirm']").count() == 0
    csrf = await tech.locator("input[name=csrf]").first.input_value()
    response = await tech.request.post(f"{site.base}/ui/tickets/{ticket}",
                                       form={"csrf": csrf, "action": "confirm"})
    assert response.status == 403 and "不能确认修复" in await response.text()
    assert await snapshot(site, ticket) == ("resolved", 5)
    # a POST without the CSRF token is refused too
    response = await tech.request.post(f"{site.base}/ui/tickets/{site.tickets[1]}",
                                       form={"action": "acknowledge"})
    assert response.status == 403 and "安全校验" in await response.text()
    assert (await snapshot(site, site.tickets[1]))[0] == "open"

    # what people type is text, never markup
    await submit(tech, "comments", text="<script>alert(1)</script> 已通知业主")
    assert "<script>alert(1)</script> 已通知业主" in await tech.inner_text("#timeline")
    assert await tech.locator("#timeline script").count() == 0

    # the owner confirms it
    owner = await login(browser, site, "owner")
    assert owner.url.endswith("/ui/confirm")
    card = owner.locator(f"#confirm-{ticket}")
    text = await card.inner_text()
    assert "重做光纤接头并清洁" in text and "SC 光纤接头 ×2" in text and "接头/线缆质量" in text
    await owner.screenshot(path=site.shots / "owner-confirm-desktop.png", full_page=True)
    await submit(owner, "confirm", note="现场查看，图像恢复，验收合格")
    assert owner.url.endswith("/ui/confirm?done=confirm")
    assert await owner.locator(f"#confirm-{ticket}").count() == 0
    assert (await snapshot(site, ticket))[0] == "confirmed"

    # the report, opened from the UI with the session (no bearer header)
    await owner.goto(f"{site.base}/ui/tickets/{ticket}")
    async with owner.expect_navigation():
        await owner.click("#report-html")
    report = await owner.inner_text("body")
    assert "故障诊断与维修报告" in report
    for words in ("重做光纤接头并清洁", "SC 光纤接头 ×2", "接头/线缆质量", "owner.li",
                  "现场查看，图像恢复，验收合格"):
        assert words in report, words
    await owner.screenshot(path=site.shots / "ticket-report-desktop.png", full_page=True)

    # the owner signs the submitted inspection off
    await owner.goto(site.base + "/ui/inspections")
    assert "待签收" in await owner.inner_text("#inspections")
    await owner.screenshot(path=site.shots / "inspections-desktop.png", full_page=True)
    await submit(owner, "sign", note="巡检记录完整")
    assert "已签收" in await owner.inner_text("#inspections")
    [signed] = await site.agent.inspections.service.list(site="dh")
    assert signed.state == "signed"
    await tech.context.close()
    await owner.context.close()


async def test_viewer_changes_nothing(browser, site) -> None:
    ticket = site.tickets[1]
    viewer = await login(browser, site, "viewer")
    await viewer.goto(f"{site.base}/ui/tickets/{ticket}")
    assert await viewer.locator("form[data-action]").count() == 0
    before = await snapshot(site, ticket)
    csrf = await viewer.locator("input[name=csrf]").first.input_value()
    for action in ("acknowledge", "comments", "close"):
        response = await viewer.request.post(f"{site.base}/ui/tickets/{ticket}",
                                             form={"csrf": csrf, "action": action,
                                                   "text": "x", "note": "x"})
        assert response.status == 403, action
    inspection = (await site.agent.inspections.service.list(site="dh"))[0].id
    response = await viewer.request.post(f"{site.base}/ui/inspections/{inspection}",
                                         form={"csrf": csrf, "action": "reject",
                                               "reason": "x"})
    assert response.status == 403
    assert await snapshot(site, ticket) == before
    # reading is allowed, as in the API: the report link opens with the session cookie;
    # the API never takes that cookie for a change (bearer token only)
    response = await viewer.request.get(f"{site.base}/api/v1/reports/tickets/{ticket}")
    assert response.status == 200
    response = await viewer.request.post(f"{site.base}/api/v1/tickets/{ticket}/comments",
                                         data={"text": "x"})
    assert response.status == 401
    # the session is a cookie the page cannot read, never sent by other sites
    [cookie] = [c for c in await viewer.context.cookies() if c["name"] == "vigil_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # logout ends the session on the server
    async with viewer.expect_navigation():
        await viewer.click("form.logout button")
    assert viewer.url.endswith("/ui/login")
    await viewer.goto(f"{site.base}/ui/tickets")
    assert "/ui/login" in viewer.url
    response = await viewer.request.post(f"{site.base}/ui/tickets/{ticket}",
                                         form={"csrf": csrf, "action": "comments",
                                               "text": "x"})
    assert response.status == 403 and await snapshot(site, ticket) == before
    await viewer.context.close()


async def test_engineer_inventory_and_rules(browser, site) -> None:
    engineer = await login(browser, site, "engineer")
    await engineer.goto(site.base + "/ui/inventory")
    dh = await engineer.inner_text("#site-dh")
    assert "东湖路口球机" in dh and "在线" in dh and "离线" in dh and "球机" in dh
    assert "在线 1" in dh and "离线 1" in dh
    await engineer.screenshot(path=site.shots / "inventory-desktop.png", full_page=True)
    await engineer.goto(site.base + "/ui/rules")
    rules = await engineer.inner_text("#rules")
    assert len(site.agent.config.rules.rules) > 5
    assert site.agent.config.rules.rules[0].name in rules
    assert await engineer.locator("#by-level li").count() == 4
    await engineer.screenshot(path=site.shots / "rules-desktop.png", full_page=True)
    await engineer.context.close()


async def test_phone_screen_and_english(browser, site) -> None:
    pages = {"technician": ("tickets", f"tickets/{site.tickets[1]}", "inspections", "reports"),
             "owner": ("confirm",), "engineer": ("inventory", "rules")}
    names = {"tickets": "my-tickets", f"tickets/{site.tickets[1]}": "ticket-detail"}
    for role, paths in pages.items():
        page = await login(browser, site, role, PHONE,
                           shot="login-phone.png" if role == "technician" else "")
        await no_horizontal_scroll(page)
        for path in paths:
            await page.goto(f"{site.base}/ui/{path}")
            await no_horizontal_scroll(page)
            name = names.get(path, "owner-confirm" if path == "confirm" else path)
            await page.screenshot(path=site.shots / f"{name}-phone.png", full_page=True)
        # buttons and menu entries are big enough to tap
        for box in [await e.bounding_box() for e in
                    await page.locator("nav.menu a, #lang-switch").all()]:
            assert box and box["height"] >= 44
        if role == "technician":
            # English, remembered in a cookie on the next pages
            async with page.expect_navigation():
                await page.click("#lang-switch")
            assert page.url.endswith("/ui/reports")  # back where the switch was pressed
            assert "Monthly report" in await page.inner_text("main")
            await page.goto(f"{site.base}/ui/tickets")
            assert await page.locator("nav.menu a.active").inner_text() == "My tickets"
            assert "Camera offline" in await page.inner_text("#tickets")
            await no_horizontal_scroll(page)
            await page.screenshot(path=site.shots / "my-tickets-phone-en.png", full_page=True)
            async with page.expect_navigation():
                await page.click("#lang-switch")
            assert await page.locator("nav.menu a.active").inner_text() == "我的工单"
        await page.context.close()


async def test_wrong_token_and_rate_limit(site) -> None:
    """Wrong tokens get the login page again with the reason; past the API's limit of failed
    authentications, 429 with Retry-After (from 127.0.0.2: its own bucket)."""
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector,
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(site.base + "/ui/login") as r:
            form = await r.text()
        csrf = form.split('name="login_csrf" value="')[1].split('"')[0]
        statuses = []
        for _ in range(11):
            async with http.post(site.base + "/ui/login", data={
                    "login_csrf": csrf, "token": "vgl_wrong", "next": ""},
                    allow_redirects=False) as r:
                statuses.append(r.status)
                text, retry = await r.text(), r.headers.get("Retry-After")
        assert statuses == [401] * 10 + [429]
        assert "失败次数过多" in text and retry and int(retry) >= 1
        # the API answers that address the same way now
        async with http.get(site.base + "/api/v1/tickets",
                            headers={"Authorization": f"Bearer {site.tokens['viewer']}"}) as r:
            assert r.status == 429
        # a login form posted without its own CSRF cookie value is refused
        async with http.post(site.base + "/ui/login", data={"token": site.tokens["owner"]},
                             allow_redirects=False) as r:
            assert r.status == 400 and "vigil_session" not in r.cookies


async def test_sessions_end_when_idle_or_when_the_token_goes(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    add_user(tokens, "a.tech", "technician")
    add_user(tokens, "b.tech", "technician")
    users, now = Users.from_file(tokens), [0.0]
    sessions = Sessions(users, clock=lambda: now[0], idle=100)
    a, b = (sessions.create(u) for u in users.users)
    assert a.id != b.id and a.csrf != b.csrf and len(a.id) >= 43
    now[0] = 99
    assert sessions.get(a.id) is a and sessions.get(b.id) is b
    now[0] = 150  # a was seen at 99, b too: both still in
    assert sessions.get(a.id) is a
    now[0] = 251  # b idle for 152 s
    assert sessions.get(b.id) is None and sessions.get(a.id) is None  # a: 101 s since 150
    c = sessions.create(users.users[0])
    remove_user(tokens, "a.tech")  # the token is revoked: its session ends at once
    os.utime(tokens, (1, 1))  # a new mtime even within the file system's time resolution
    assert sessions.get(c.id) is None and len(sessions) == 0
    assert not c.csrf_ok("") and c.csrf_ok(c.csrf)
