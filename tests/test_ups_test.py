"""UPS battery tests: started by SNMP SET on a simulated UPS that accepts it (snmpsim with the
variation module tests/snmpsim_variations/upstest.py, on loopback), followed to the end with
an injected clock, stored with its curve (SQLite and PostgreSQL); refusals say why and store
no test; manual records with bad input are refused."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.config import Config, load_config
from agent.plans import snmp_job
from agent.state import State
from agent.ups_test import Follow, Refused, UpsTests, UpsTestStore
from collectors.reading import PollResult, Reading
from collectors.snmp.collector import SnmpCollector
from collectors.snmp.engine import make_engine
from tests import peers

T0 = 1_780_000_000.0
ROOT = Path(__file__).resolve().parents[1]
VARIATIONS = Path(__file__).with_name("snmpsim_variations")
ROLES = {"1.3.6.1.2.1.33.1.7.1.0": "6:upstest|id", "1.3.6.1.2.1.33.1.7.2.0": "2:upstest|lock",
         "1.3.6.1.2.1.33.1.7.3.0": "2:upstest|summary",
         "1.3.6.1.2.1.33.1.7.4.0": "4:upstest|detail",
         "1.3.6.1.2.1.33.1.2.3.0": "2:upstest|runtime",
         "1.3.6.1.2.1.33.1.2.4.0": "2:upstest|charge",
         "1.3.6.1.2.1.33.1.2.5.0": "2:upstest|volts",
         "1.3.6.1.2.1.33.1.4.1.0": "2:upstest|source"}


def _ups_recording(source: Path, roles: dict[str, str]) -> str:
    """The recorded Delta UPS with the test group and the curve OIDs served by `upstest`."""
    lines = [ln for ln in source.read_text(encoding="latin-1").splitlines()
             if ln.split("|", 1)[0] not in roles]
    lines += [f"{oid}|{role}" for oid, role in roles.items()]
    return "\n".join(sorted(lines, key=lambda ln: [int(p) for p in ln.split("|")[0].split(".")]))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """One snmpsim: ups-a (site s1, accepts the test), ups-lock (site s2, its upsTestId is
    not writable), ups-lb (site s3, a Liebert without test support)."""
    work = tmp_path_factory.mktemp("ups-sim")
    data = work / "data"
    data.mkdir()
    rec = peers.recordings()
    delta = rec / "deltaups.snmprec"
    for name in ("ups-a", "ups-a2", "ups-v3"):
        (data / f"{name}.snmprec").write_text(_ups_recording(delta, ROLES), encoding="latin-1")
    (data / "ups-lock.snmprec").write_text(
        _ups_recording(delta, {**ROLES, "1.3.6.1.2.1.33.1.7.1.0": "6:upstest|locked"}),
        encoding="latin-1")
    shutil.copy(rec / "liebert.snmprec", data / "ups-lb.snmprec")
    v3 = ["--v3-user=tech", "--v3-auth-key=auctoritas", "--v3-auth-proto=SHA",
          "--v3-priv-key=privatus", "--v3-priv-proto=AES"]  # v3 context = data file name
    with peers.snmpsim(data, work, extra_args=[f"--variation-modules-dir={VARIATIONS}", *v3]
                       ) as port:
        yield port


def _config(tmp_path: Path, port: int) -> Config:
    names = ["ups-a", "ups-a2", "ups-lock", "ups-lb"]
    creds = "credentials:\n" + "".join(f"  {n}: {{version: 2c, community: {n}}}\n" for n in names)
    creds += ("  ups-v3: {version: 3, username: tech, auth_protocol: SHA, auth_password: "
              "auctoritas, priv_protocol: AES, priv_password: privatus, context: ups-v3}\n")
    (tmp_path / "credentials.yaml").write_text(creds)
    (tmp_path / "credentials.yaml").chmod(0o600)
    (tmp_path / "inventory.yaml").write_text(
        "sites:\n  - {id: s1, name: 一号站}\n  - {id: s2, name: 二号站}\n"
        "  - {id: s3, name: 三号站}\n  - {id: s4, name: 四号站}\n"
        "devices:\n"
        f"  - {{id: ups-a, kind: ups, site: s1, address: 127.0.0.1, port: {port}, "
        f"credentials: ups-a, profile: delta-ups}}\n"
        f"  - {{id: ups-a2, kind: ups, site: s1, address: 127.0.0.1, port: {port}, "
        f"credentials: ups-a2, profile: delta-ups}}\n"
        f"  - {{id: ups-lock, kind: ups, site: s2, address: 127.0.0.1, port: {port}, "
        f"credentials: ups-lock, profile: delta-ups}}\n"
        f"  - {{id: ups-lb, kind: ups, site: s3, address: 127.0.0.1, port: {port}, "
        f"credentials: ups-lb, profile: liebert-gp}}\n"
        f"  - {{id: ups-v3, kind: ups, site: s4, address: 127.0.0.1, port: {port}, "
        f"credentials: ups-v3, profile: delta-ups}}\n"
        f"  - {{id: sw-1, kind: switch, site: s1, address: 127.0.0.1, port: {port}, "
        f"credentials: ups-a}}\n")
    (tmp_path / "agent.yaml").write_text(
        "agent: {id: test}\nstate_dir: state\nsnmp: {timeout: 1s, retries: 1}\n"
        "rules: {files: []}\n")
    return load_config(tmp_path / "agent.yaml")


class World:
    """Config, state polled from the simulator, the service with a clock moved by its sleep."""

    def __init__(self, config: Config, url: str):
        self.config = config
        self.now = T0
        self.state = State()
        self.state.sync(config.inventory)
        self.store = UpsTestStore(url, "test", clock=lambda: self.now)
        self.tests = UpsTests(lambda: config, self.state, self.store,
                              Follow(interval=5.0, start_grace=30.0, max_duration=600.0),
                              clock=lambda: self.now, sleep=self.sleep)

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


    def on_battery(self, device: str) -> None:
        self.state.update(PollResult(device, self.now, 0.0, True, profile="delta-ups",
                                     readings=[Reading(device, "ups_on_battery", {}, 1.0,
                                                       self.now)]))


async def _poll(config: Config) -> list[PollResult]:
    """Every UPS polled once, the daemon's way: the readings the checks look at."""
    engine = make_engine("pysnmp")
    collector = SnmpCollector(engine, config.profiles)
    results = []
    try:
        for device in config.inventory.devices.values():
            if device.kind == "ups":
                result = await collector.poll(snmp_job(config, device))
                assert result.up, (device.id, result.reason, result.detail)
                results.append(result)
    finally:
        await engine.close()
    return results


@pytest.fixture(scope="module")
def site(sim, tmp_path_factory) -> tuple[Config, list[PollResult]]:
    config = _config(tmp_path_factory.mktemp("ups-config"), sim)
    return config, asyncio.run(_poll(config))


@pytest.fixture
async def world(site, db_url):
    config, polled = site
    w = World(config, db_url)
    for result in polled:
        w.state.update(result)
    await w.store.start()
    try:
        yield w
    finally:
        await w.tests.close()


async def test_started_by_snmp_set_and_followed_to_the_end(world):
    test = await world.tests.start("ups-a", "quick", "li.tech")
    assert test.state == "running"
    done = await world.tests.wait(test.id)
    assert (done.state, done.result, done.result_code) == ("done", "pass", 1)
    assert done.detail == "battery test passed"
    assert done.discharge_seconds == 20.0  # 4 steps of the simulated test, 5 s apart
    stored = await world.store.get(test.id)
    curve = stored.samples
    assert [s["code"] for s in curve] == [5, 5, 5, 1]
    assert [s["charge"] for s in curve] == [0.95, 0.9, 0.85, 0.8]  # falls during the test
    assert [s["volts"] for s in curve] == [53.7, 52.9, 52.1, 51.3]
    assert [s["on_battery"] for s in curve] == [1, 1, 1, 0]
    assert [s["t"] for s in curve] == [5.0, 10.0, 15.0, 20.0]
    events = await world.store.events(test_id=test.id)
    assert [(e.kind, e.actor) for e in events] == [("started", "li.tech"), ("finished", "vigil")]
    assert events[1].data["result"] == "pass"


async def test_snmpv3_credentials_start_a_test_too(world):
    test = await world.tests.start("ups-v3", "deep", "li.tech")
    done = await world.tests.wait(test.id)
    assert (done.kind, done.result, done.discharge_seconds) == ("deep", "pass", 20.0)


async def test_trend_drop_against_the_last_test_reaches_the_state(world):
    start = datetime.fromtimestamp(T0 - 86400 * 90, UTC)
    await world.tests.record_manual("ups-a", "wang.tech", "quick", start,
                                    start + timedelta(seconds=40), 40.0, "pass", "季度放电测试")
    test = await world.tests.start("ups-a", "quick", "li.tech")
    await world.tests.wait(test.id)
    result = world.state.devices["ups-a"].results["ups_test"]
    readings = {r.metric: r.value for r in result.readings}
    assert readings["ups_discharge_seconds"] == 20.0
    assert readings["ups_discharge_previous_seconds"] == 40.0
    assert readings["ups_discharge_drop_ratio"] == 0.5


async def test_refused_when_the_site_is_on_battery(world):
    world.on_battery("ups-a2")  # the other UPS of site s1
    with pytest.raises(Refused) as refused:
        await world.tests.start("ups-a", "quick", "li.tech")
    assert refused.value.reason == "on_battery" and "ups-a2" in str(refused.value)
    assert await world.store.tests() == []
    events = await world.store.events(device="ups-a")
    assert [(e.kind, e.actor, e.data["reason"]) for e in events] == \
        [("refused", "li.tech", "on_battery")]


async def test_refused_while_another_test_of_the_site_runs(world):
    first = await world.tests.start("ups-a", "quick", "li.tech")
    with pytest.raises(Refused) as refused:
        await world.tests.start("ups-a2", "quick", "li.tech")
    assert refused.value.reason == "busy" and f"test {first.id}" in str(refused.value)
    await world.tests.wait(first.id)
    assert [t.device for t in await world.store.tests()] == ["ups-a"]


async def test_refused_without_test_support_or_not_a_ups(world):
    for device, reason in (("ups-lb", "no_test_support"), ("sw-1", "not_ups")):
        with pytest.raises(Refused) as refused:
            await world.tests.start(device, "quick", "li.tech")
        assert refused.value.reason == reason, str(refused.value)
    assert await world.store.tests() == []


async def test_refused_when_the_agent_refuses_the_set(world):
    with pytest.raises(Refused) as refused:
        await world.tests.start("ups-lock", "quick", "li.tech")
    assert refused.value.reason == "set_refused"
    assert "notWritable" in str(refused.value)
    assert await world.store.tests() == []
    assert (await world.store.events(device="ups-lock"))[0].data["reason"] == "set_refused"


@pytest.mark.parametrize("change, message", [
    ({"ended": -1}, "ended_at must be after started_at"),
    ({"discharge": -5.0}, "discharge_seconds must be positive"),
    ({"start_offset": 86400 * 2}, "is in the future"),
    ({"result": "great"}, "result: one of"),
])
async def test_manual_record_with_bad_input_is_refused(world, change, message):
    start = datetime.fromtimestamp(T0 - 3600 + change.get("start_offset", 0), UTC)
    ended = start + timedelta(seconds=600 if "ended" not in change else -60)
    with pytest.raises(ValueError, match=message):
        await world.tests.record_manual("ups-a", "wang.tech", "deep", start, ended,
                                        change.get("discharge", 600.0),
                                        change.get("result", "pass"))
    assert await world.store.tests() == []


async def test_api_roles_refusals_and_curve(world, tmp_path):
    """The HTTP API on 127.0.0.1: a technician starts a test, a viewer may not, a refusal is a
    409 with its reason, the test shows its curve; the CLI lists the trend."""
    import subprocess
    import sys

    import aiohttp
    from aiohttp import web

    from agent.auth import Authenticator, Users, add_user
    from agent.ups_test_api import add_ups_test_routes

    tokens = tmp_path / "tokens.yaml"
    tech, viewer = add_user(tokens, "li.tech", "technician"), add_user(tokens, "guest", "viewer")
    world.tests.ready = True
    app = web.Application()
    add_ups_test_routes(app, lambda: world.tests, Authenticator(Users.from_file(tokens)))
    runner = web.AppRunner(app)
    await runner.setup()
    port = peers.free_port(__import__("socket").SOCK_STREAM)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}/api/v1/ups"
    try:
        async with aiohttp.ClientSession() as http:
            def auth(token: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {token}"}

            async with http.post(f"{base}/ups-a/tests", json={"kind": "quick"},
                                 headers=auth(viewer)) as r:
                assert r.status == 403
            async with http.post(f"{base}/ups-lb/tests", json={}, headers=auth(tech)) as r:
                body = await r.json()
                assert (r.status, body["reason"]) == (409, "no_test_support")
                assert body["error_zh"] == "该 UPS 不支持远程电池测试"
            async with http.post(f"{base}/ups-a/tests/manual", headers=auth(tech), json={
                    "kind": "quick", "started_at": "2026-05-01T10:00:00+08:00",
                    "ended_at": "2026-05-01T09:00:00+08:00", "result": "pass"}) as r:
                assert r.status == 400
                assert "ended_at must be after started_at" in (await r.json())["error"]
            async with http.post(f"{base}/ups-a/tests", json={"kind": "quick"},
                                 headers=auth(tech)) as r:
                assert r.status == 202, await r.text()
                test_id = (await r.json())["id"]
            await world.tests.wait(test_id)
            async with http.get(f"{base}/tests/{test_id}", headers=auth(viewer)) as r:
                found = await r.json()
                assert found["result"] == "pass" and len(found["samples"]) == 4
                assert [e["kind"] for e in found["timeline"]] == ["started", "finished"]
            async with http.get(f"{base}/ups-a/tests", headers=auth(viewer)) as r:
                listing = await r.json()
                assert [t["discharge_seconds"] for t in listing["trend"]] == [20.0]
                assert [e["kind"] for e in listing["audit"]] == ["started", "finished"]
        cli = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "agent.cli", "ups", "--url",
                             f"http://127.0.0.1:{port}", "--token", viewer, "test", "show",
                             str(test_id)], capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert "通过" in cli.stdout and "0.8" in cli.stdout
    finally:
        await runner.cleanup()


async def test_daemon_runs_a_test_and_exports_the_trend(site, tmp_path):
    """The agent in-process (`vigil run`'s Agent): a manual test is recorded, its API starts a
    test on the simulated UPS and follows it on the real clock; /metrics then carries the
    discharge time, and the shipped rule sees the drop against the manual test."""
    import socket

    import aiohttp

    from agent.auth import add_user
    from agent.daemon import Agent

    config, _ = site
    source = config.path.parent
    for name in ("credentials.yaml", "inventory.yaml"):
        shutil.copy(source / name, tmp_path / name)
    port = peers.free_port(socket.SOCK_STREAM)
    (tmp_path / "agent.yaml").write_text(
        f"agent: {{id: test}}\nlisten: 127.0.0.1:{port}\nstate_dir: state\n"
        "snmp: {timeout: 1s, retries: 1}\n"
        f"rules: {{files: ['{ROOT}/config/rules/ups.yaml'], interval: 200ms}}\n"
        "schedule: {default_interval: 2s, spread_start: false}\n"
        "ups_tests: {follow_interval: 200ms}\n")
    (tmp_path / "state").mkdir()
    token = add_user(tmp_path / "tokens.yaml", "li.tech", "technician")
    agent = Agent(load_config(tmp_path / "agent.yaml"))
    await agent.start()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession() as http:
            async def until(check, what: str) -> None:
                for _ in range(600):  # 60 s: a loaded CI machine
                    if await check():
                        return
                    await asyncio.sleep(0.1)
                raise AssertionError(f"timed out waiting for {what}")

            async def polled() -> bool:
                entry = agent.state.devices["ups-a"].results.get("snmp")
                return bool(agent.ups_tests and agent.ups_tests.ready and entry and entry.up)

            await until(polled, "the first poll and the test store")
            day_ago = datetime.now(UTC) - timedelta(days=1)
            async with http.post(f"{base}/api/v1/ups/ups-a/tests/manual", headers=headers, json={
                    "kind": "quick", "started_at": day_ago.isoformat(), "result": "pass",
                    "ended_at": (day_ago + timedelta(seconds=40)).isoformat()}) as r:
                assert r.status == 201, await r.text()
            async with http.post(f"{base}/api/v1/ups/ups-a/tests", json={"kind": "quick"},
                                 headers=headers) as r:
                assert r.status == 202, await r.text()
                test_id = (await r.json())["id"]

            async def finished() -> bool:
                async with http.get(f"{base}/api/v1/ups/tests/{test_id}", headers=headers) as r:
                    return (await r.json())["state"] == "done"

            await until(finished, "the test's result")
            async with http.get(f"{base}/metrics") as r:
                metrics = await r.text()
            assert 'vigil_ups_discharge_seconds{device="ups-a"' in metrics
            assert 'vigil_ups_discharge_previous_seconds{device="ups-a"' in metrics

            async def fault() -> bool:
                return any(f.rule == "UpsDischargeTimeDropped" and f.device == "ups-a"
                           and f.state == "firing" for f in agent.rules.engine.active.values())

            await until(fault, "the UpsDischargeTimeDropped fault")
    finally:
        await agent.stop()


async def test_a_test_left_running_by_a_stopped_agent_ends_as_lost(world):
    left = await world.store.claim("s1", "ups-a", "quick", "li.tech")
    await world.tests.open()
    found = await world.store.get(left.id)
    assert (found.state, found.result) == ("done", "lost")
    assert world.tests.ready


async def test_every_set_and_refusal_is_on_the_timeline_of_the_ups_open_ticket(world, db_url):
    """A UPS with a ticket being worked: the test started by SNMP SET, a second start refused
    (busy) and the end are each on that ticket's timeline, with who did it; a closed ticket and
    another device's ticket get nothing."""
    from agent.tickets.store import TicketStore
    from tests.test_ticketing import fault

    tickets = TicketStore(db_url, world.store.agent_id)
    await tickets.start()
    try:
        ups_fault = fault("UpsBatteryLow:ups-a")
        ups_fault.device, ups_fault.kind = "ups-a", "ups"
        [mine, other] = await tickets.open_for_faults([ups_fault, fault("CameraOffline:cam-1")])
        test = await world.tests.start("ups-a", "quick", "li.tech")
        with pytest.raises(Refused):
            await world.tests.start("ups-a", "quick", "wang.tech")
        await world.tests.wait(test.id)
        timeline = [e for e in await tickets.timeline(mine.ticket.id) if e.kind == "ups_test"]
        assert [(e.data["event"], e.actor) for e in timeline] == \
            [("started", "li.tech"), ("refused", "wang.tech"), ("finished", "vigil")]
        assert timeline[0].data["test"] == test.id
        assert "SNMP SET" in timeline[0].data["text"] and "busy" in timeline[1].data["text"]
        assert "pass" in timeline[2].data["text"]
        assert not [e for e in await tickets.timeline(other.ticket.id) if e.kind == "ups_test"]
    finally:
        await tickets.dispose()
