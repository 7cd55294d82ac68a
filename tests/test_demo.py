"""The demo district (`vigil demo`): its configuration, the devices it generates, the snmpsim
mechanisms its timeline relies on, and the whole demo end to end with a real Prometheus."""

from __future__ import annotations

import asyncio
import glob
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from agent.config import load_config
from agent.demo import cameras
from agent.demo import centre as demo_centre
from agent.demo.generate import check_addresses, downstream, generate
from agent.demo.scenario import Scenario
from agent.demo.snmprec import Records, write_snapshots
from agent.demo.traps import encode_trap
from collectors.snmp.collector import SnmpCollector
from collectors.snmp.engine import SnmpAuth, SnmpError, Target, make_engine
from collectors.snmp.profile import load_profiles
from tests import peers

DEMO = peers.ROOT / "config" / "demo"
COMMUNITY = "vigil-demo"
CHECK = [sys.executable, "-m", "agent.cli", "check", "-c", str(DEMO / "agent.yaml")]
SITE_NUMBER = {"dh": 1, "xs": 2, "ny": 3, "by": 4, "cq": 5, "xh": 6, "hp": 7, "gm": 8, "room": 9}


@pytest.fixture
def community(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("VIGIL_DEMO_COMMUNITY", COMMUNITY)
    monkeypatch.setenv(cameras.PASSWORD_ENV, cameras.DEFAULT_PASSWORD)
    return COMMUNITY


@pytest.fixture
def demo_config(community):
    return load_config(DEMO / "agent.yaml")


@pytest.fixture
def demo_site():
    """The demo's addresses, for this test alone (another worker may run a demo too)."""
    with peers.demo_site():
        yield


# -- the configuration -------------------------------------------------------------------------

def test_vigil_check_accepts_the_demo_config():
    env = {**os.environ, "VIGIL_DEMO_COMMUNITY": COMMUNITY,
           cameras.PASSWORD_ENV: cameras.DEFAULT_PASSWORD}
    out = subprocess.run(CHECK, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "216 devices in 9 sites" in out.stdout
    assert "20 fixed_camera" in out.stdout and "152 ptz_camera" in out.stdout
    # no warning (e.g. the stream probes fit their decode slots) but the credential audit's:
    # the simulated devices speak v2c
    warnings = [line for line in out.stdout.splitlines() if "warning" in line]
    assert warnings and all("credentials.yaml" in w and "SNMP v2c" in w for w in warnings), \
        warnings


def test_the_committed_credentials_hold_no_secret():
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIGIL_DEMO_COMMUNITY", cameras.PASSWORD_ENV)}
    out = subprocess.run(CHECK, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1
    assert "VIGIL_DEMO_COMMUNITY is not set" in out.stderr
    assert f"{cameras.PASSWORD_ENV} is not set" in out.stderr


def test_the_district_is_the_one_of_the_contract(demo_config):
    inventory = demo_config.inventory
    devices = inventory.devices.values()
    kinds: dict[str, int] = {}
    for d in devices:
        kinds[d.kind] = kinds.get(d.kind, 0) + 1
    assert kinds["ptz_camera"] == 152 and kinds["fixed_camera"] == 20
    assert kinds["nvr"] == 8 and kinds["ups"] == 9 and kinds["spd_monitor"] == 9
    assert kinds["env_monitor"] == 1
    communities = [s for s in inventory.sites if s != "room"]
    assert len(communities) == 8 and "room" in inventory.sites
    assert all(not s.name.isascii() for s in inventory.sites.values())   # Chinese names
    for site in communities:
        of = [d for d in devices if d.site == site]
        assert sum(d.kind == "nvr" for d in of) == 1
        assert sum(d.kind == "ups" for d in of) == 1
        assert sum(d.kind == "spd_monitor" for d in of) == 1
        assert sum(d.kind in ("ptz_camera", "fixed_camera") for d in of) >= 20
    for d in devices:
        assert not d.name.isascii(), d.id
        address = ipaddress.ip_address(d.address)
        assert address.is_loopback and d.address.split(".")[2] == str(SITE_NUMBER[d.site]), d.id
        assert d.port == 1161
    feeds: set[tuple[str, str]] = set()
    for d in devices:
        if d.kind in ("ptz_camera", "fixed_camera"):
            assert d.uplink and d.powered_by and d.powered_by.switch == d.uplink.switch
            assert str(d.powered_by.port) == str(d.uplink.port)
            switch = inventory.devices[d.uplink.switch]
            assert switch.site == d.site
            feed = (switch.id, str(d.uplink.port))
            assert feed not in feeds, f"{d.id}: PoE port {feed} used twice"
            feeds.add(feed)
        elif d.kind in ("switch", "nvr", "spd_monitor", "env_monitor"):
            assert d.powered_by and d.powered_by.ups, d.id
    core = [d for d in devices if d.kind == "switch" and d.site == "room"]
    assert len(core) == 1 and core[0].uplink is None
    for d in devices:            # every access switch reaches the core through uplinks
        if d.kind == "switch" and d.site != "room":
            hops, at = 0, d
            while at.uplink is not None and hops < 5:
                at, hops = inventory.devices[at.uplink.switch], hops + 1
            assert at.id == core[0].id, d.id
    undeclared = sum(d.profile is None for d in devices)
    assert undeclared >= 0.9 * len(inventory.devices)       # auto-detection is exercised


def test_every_camera_answers_onvif_and_rtsp_and_each_fault_is_there_once(demo_config):
    """The simulators' configurations follow the inventory: every camera on its own address,
    ONVIF 8080 and RTSP 8554 with the demo login; each kind of camera fault on one camera."""
    inventory = demo_config.inventory
    onvif = cameras.onvif_config(inventory)["cameras"]
    rtsp = cameras.rtsp_config(inventory)["endpoints"]
    ids = [d.id for d in inventory.devices.values() if d.kind.endswith("_camera")]
    assert [c["name"] for c in onvif] == ids and len(rtsp) == 172
    assert {(c["address"], c["port"]) for c in onvif} == \
        {(inventory.devices[i].address, 8080) for i in ids}
    assert {(e["address"], e["port"]) for e in rtsp} == \
        {(inventory.devices[i].address, 8554) for i in ids}
    by_id = {c["name"]: c for c in onvif}
    assert {c["vendor"] for c in onvif} == {"hikvision", "axis", "dahua"}
    assert by_id["ptz-dh-01"]["model"] == inventory.devices["ptz-dh-01"].labels["model"]
    assert all(c["ptz"] == (inventory.devices[c["name"]].kind == "ptz_camera") for c in onvif)
    faults, notes = cameras.faults_in(inventory)
    assert not notes and len({f.device for f in faults}) == len(faults) == 10
    pictures = [e["mounts"][0]["kind"] for e in rtsp]
    for kind in ("frozen", "black", "blurred", "color_cast", "occluded", "no_frames"):
        assert pictures.count(kind) == 1, kind
    assert pictures.count("good") == 172 - 6
    wrong = [e for e in rtsp if e["password"] != cameras.DEFAULT_PASSWORD]
    assert [e["address"] for e in wrong] == [inventory.devices["fix-gm-01"].address]
    clock = by_id["ptz-dh-03"]
    assert clock["clock_offset"] == 10800 and clock["ntp"] is False
    assert by_id["ptz-gm-06"]["ptz_error"]
    # the URI ONVIF gives is one the RTSP server serves
    for c in onvif[:3]:
        path = c["stream_uri"].split("8554", 1)[1]
        endpoint = next(e for e in rtsp if e["address"] == c["address"])
        assert endpoint["mounts"][0]["path"] == path


def test_timeline_actions_switch_onvif_faults_and_send_traps(demo_config):
    """The timeline silences the dropped cameras' ONVIF service for exactly their window,
    hangs one camera's ONVIF service, covers one, and the UPS traps on mains lost and back."""
    inventory = demo_config.inventory
    plan = Scenario().plan(1000.0, 1.0, dict(inventory.devices), downstream(inventory))
    cameras.add_to_plan(plan, inventory)
    assert [a.at for a in plan.actions] == sorted(a.at for a in plan.actions)
    silenced = [(a.device, a.at, a.args["mode"]) for a in plan.actions
                if a.kind == "onvif" and a.args.get("action") == "fault"]
    assert ("ptz-cq-05", 90.0, "silent") in silenced and ("ptz-cq-05", 255.0, None) in silenced
    cabinet = [d.id for d in inventory.devices.values()
               if d.uplink and d.uplink.switch == "sw-xh-3"]
    assert all((d, 285.0, "silent") in silenced and (d, 450.0, None) in silenced
               for d in cabinet)
    assert ("ptz-by-09", 210.0, "silent") in silenced
    assert ("ptz-by-09", 400.0, None) in silenced
    events = [a for a in plan.actions if a.args.get("action") == "event"]
    assert [(a.device, a.args["kind"], a.args["state"]) for a in events] == \
        [("ptz-hp-04", "tampering", True)]
    traps = [(a.device, a.at, a.args["oid"]) for a in plan.actions if a.kind == "trap"]
    assert traps == [("ups-dh", 60.0, "1.3.6.1.2.1.33.2.1"),
                     ("ups-dh", 240.0, "1.3.6.1.2.1.33.2.4")]
    # the trap is a well-formed SNMPv2c message (decoded by pysnmp's own API)
    from pyasn1.codec.ber import decoder
    from pysnmp.proto import api
    v2c = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    message, _ = decoder.decode(encode_trap("c", "1.3.6.1.2.1.33.2.4", [
        ["1.3.6.1.2.1.33.1.6.2.1.2.1", "oid", "1.3.6.1.2.1.33.1.6.3.2"]], 12.5),
        asn1Spec=v2c.Message())
    binds = [(str(o), v.prettyPrint()) for o, v in
             v2c.apiTrapPDU.get_varbinds(v2c.apiMessage.get_pdu(message))]
    assert binds == [("1.3.6.1.2.1.1.3.0", "1250"), ("1.3.6.1.6.3.1.1.4.1.0", "1.3.6.1.2.1.33.2.4"),
                     ("1.3.6.1.2.1.33.1.6.2.1.2.1", "1.3.6.1.2.1.33.1.6.3.2")]


# -- the generated devices ---------------------------------------------------------------------

@contextmanager
def responder(data_dir: Path, work: Path, endpoints: list[tuple[str, int]], community: str):
    """agent/demo/responder.py (snmpsim with per-endpoint data) on the given endpoints."""
    busy = [f"{a}:{p}" for a, p in endpoints if not _udp_free(a, p)]
    if busy:
        peers.missing(f"UDP {busy[0]} is in use (is a demo running?)")
    args = [sys.executable, "-m", "agent.demo.responder", f"--data-dir={data_dir}",
            f"--cache-dir={work / 'snmpsim-cache'}", "--logging-method=null",
            *(f"--agent-udpv4-endpoint={a}:{p}" for a, p in endpoints)]
    env = {**os.environ, "SNMPSIM_ALLOW_ROOT": "true"}
    with peers.child(args, work / "responder.log", env) as proc:
        deadline = time.time() + 60
        while not _answers(endpoints[0], community):
            assert proc.poll() is None, (work / "responder.log").read_text()
            assert time.time() < deadline, "snmpsim did not answer"
            time.sleep(0.3)
        yield proc


def _udp_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def _get(endpoint: tuple[str, int], community: str, oids: list[str], timeout: float = 1.0):
    async def run():
        engine = make_engine("pysnmp")
        try:
            session = await engine.open(Target(endpoint[0], endpoint[1],
                                               SnmpAuth("2c", community=community), timeout, 0))
            try:
                return await session.get(oids)
            finally:
                await session.close()
        finally:
            await engine.close()
    return asyncio.run(run())


def _answers(endpoint: tuple[str, int], community: str) -> bool:
    try:
        _get(endpoint, community, ["1.3.6.1.2.1.1.2.0"], timeout=0.5)
        return True
    except SnmpError:
        return False


def test_every_device_is_generated_and_read_by_its_profile(demo_config, demo_site, community,
                                                           tmp_path):
    inventory = demo_config.inventory
    generated = generate(inventory, tmp_path, community, t0=time.time() + 3600)  # no event yet
    assert generated.devices == list(inventory.devices)
    files = sorted((generated.data_dir / community).glob("*.snmprec"))
    assert len(files) == len(inventory.devices) == len(generated.endpoints)
    assert {p for p in generated.profiles.values()} >= {
        "hikvision-camera", "axis-camera", "vivotek-camera", "hikvision-nvr", "dahua-nvr",
        "zyxel-switch", "advantech-eki", "h3c-comware", "delta-ups", "megatec-netagent",
        "mge-ups", "hwg-poseidon", "apc-netbotz"}
    for file in files:                      # none of the recordings' values: own data only
        assert "<private>" not in file.read_text(encoding="latin-1")
    with responder(generated.data_dir, tmp_path, generated.endpoints, community):
        async def poll_all():
            engine = make_engine("pysnmp")
            collector = SnmpCollector(engine, load_profiles())
            from agent.plans import snmp_job
            limit = asyncio.Semaphore(32)

            async def one(device):
                async with limit:
                    return device, await collector.poll(snmp_job(demo_config, device))
            try:
                return await asyncio.gather(*(one(d) for d in inventory.devices.values()))
            finally:
                await engine.close()

        results = asyncio.run(poll_all())
    wrong = [(d.id, r.up, r.reason, r.profile, generated.profiles[d.id], r.problems[:2])
             for d, r in results
             if not r.up or r.profile != generated.profiles[d.id] or r.problems]
    assert not wrong, wrong
    readings = {d.id: {x.metric for x in r.readings} for d, r in results}
    assert "ups_on_battery" in readings["ups-dh"] and "poe_consumption_watts" in readings["sw-dh-1"]
    assert "contact_alarm" in readings["spd-dh"] and "input_pulses_total" in readings["spd-dh"]
    assert "nvr_disk_capacity_bytes" in readings["nvr-dh"]


# -- the snmpsim mechanisms the timeline relies on (snmpsim 1.2.2 as installed) ----------------

def test_snmpsim_plays_the_timeline_mechanisms(tmp_path):
    """Per-endpoint data files, numeric steps, pulses and counters, delay drop windows and
    multiplex snapshots, each checked against snmpsim itself."""
    ports = [peers.free_port(), peers.free_port()]
    endpoints = [("127.0.0.1", ports[0]), ("127.0.0.1", ports[1])]
    now = time.time()
    step_at, pulse = now + 4, (now + 4, now + 7)
    silent = (int(now + 4), int(now + 6))
    data = tmp_path / "data"
    (data / "c").mkdir(parents=True)
    (data / "c.snmprec").write_text("1.3.6.1.2.1.1.5.0|4|fallback\n")
    a = Records()
    a.string("1.3.6.1.2.1.1.5.0", "device-a")
    a.step("1.3.6.1.4.1.99999.1.0", "2", 1, 0, step_at)
    a.pulse("1.3.6.1.4.1.99999.2.0", "2", 1, 2, *pulse)
    a.growing("1.3.6.1.4.1.99999.3.0", "70", 1000, 1_000_000)
    snapshots = [f"1.3.6.1.4.1.99999.4.1.0|2|{k}\n" for k in range(6)]
    write_snapshots(tmp_path / "snap", snapshots)
    assert sorted(int(f.split(".")[0]) for f in os.listdir(tmp_path / "snap")) == list(range(6))
    assert [int(f.split(".")[0]) for f in os.listdir(tmp_path / "snap")] == list(range(6))
    a.multiplex("1.3.6.1.4.1.99999.4", tmp_path / "snap", 1.5)
    (data / "c" / "1.3.6.1.6.1.1.0.snmprec").write_text(a.render(), encoding="latin-1")
    b = Records()
    b.string("1.3.6.1.2.1.1.5.0", "device-b")
    b.integer("1.3.6.1.2.1.1.7.0", 72)
    (data / "c" / "1.3.6.1.6.1.1.1.snmprec").write_text(b.render(silent=silent))
    oids = [f"1.3.6.1.4.1.99999.{i}.0" for i in (1, 2, 3)] + ["1.3.6.1.4.1.99999.4.1.0"]
    seen: list[tuple[float, list]] = []
    dropped: list[float] = []
    with responder(data, tmp_path, endpoints, "c"):
        assert _get(endpoints[0], "c", ["1.3.6.1.2.1.1.5.0"])[0][2] == b"device-a"
        assert _get(endpoints[1], "c", ["1.3.6.1.2.1.1.5.0"])[0][2] == b"device-b"
        while time.time() < now + 11:
            t = time.time()
            seen.append((t, [raw for _oid, _code, raw in _get(endpoints[0], "c", oids)]))
            try:
                _get(endpoints[1], "c", ["1.3.6.1.2.1.1.7.0"], timeout=0.4)
            except SnmpError as exc:
                assert exc.reason == "timeout"
                dropped.append(t)
            time.sleep(0.25)
    for t, (step, pulsed, _counter, _snapshot) in seen:
        margin = 0.3
        if t < step_at - margin:
            assert step == 1
        elif t > step_at + 1 + margin:
            assert step == 0
        if pulse[0] + margin < t < pulse[1] - margin:
            assert pulsed == 2
        elif t < pulse[0] - margin or t > pulse[1] + margin:
            assert pulsed == 1
    counters = [values[2] for _t, values in seen]
    assert counters == sorted(counters) and counters[-1] > counters[0] + 5_000_000
    snaps = [values[3] for _t, values in seen]
    assert snaps == sorted(snaps) and snaps[0] <= 1 and snaps[-1] == 5     # in order, then stays
    assert dropped and all(silent[0] - 0.5 <= t <= silent[1] + 1.5 for t in dropped)
    assert any(t < silent[0] for t, _v in seen) and any(t > silent[1] + 1.5 for t, _v in seen)


# -- the demo end to end -----------------------------------------------------------------------

def _query(url: str, expr: str) -> list[dict]:
    return peers.prometheus_query(url, expr)


def _value(url: str, expr: str) -> float | None:
    result = _query(url, expr)
    return float(result[0]["value"][1]) if result else None


def test_vigil_demo_end_to_end(demo_config, demo_site, tmp_path):
    """`vigil demo` with Prometheus, the timeline played 5x faster: every device is scraped,
    the scripted events show in Prometheus, every camera fault is seen on its camera and on
    no healthy one, and SIGINT leaves no process behind."""
    peers.program("prometheus", "/usr/bin")
    busy = [f"{a}:{p}" for a, p in check_addresses(demo_config.inventory) if not _udp_free(a, p)]
    if busy:
        peers.missing(f"UDP {busy[0]} is in use (is a demo running?)")
    agent_port, prom_port = peers.free_port(socket.SOCK_STREAM), peers.free_port(socket.SOCK_STREAM)
    work = tmp_path / "demo"
    scale = 0.2     # UPS on battery 12-48 s, camera 18-51 s, SPD 30 s, cabinet 57-90 s
    trap_port = peers.free_port()
    args = [sys.executable, "-m", "agent.cli", "demo", "--workdir", str(work),
            "--listen", f"127.0.0.1:{agent_port}", "--prometheus-port", str(prom_port),
            "--trap-port", str(trap_port), "--timeline-scale", str(scale)]
    env = {k: v for k, v in os.environ.items()        # the demo sets them
           if k not in ("VIGIL_DEMO_COMMUNITY", cameras.PASSWORD_ENV)}
    log = tmp_path / "demo.out"
    started = time.time()
    with peers.child(args, log, env) as proc:
        state_file = work / "demo.json"
        while not state_file.exists():
            assert proc.poll() is None, log.read_text()
            assert time.time() - started < 90, "the demo did not come up: " + log.read_text()
            time.sleep(0.5)
        state = json.loads(state_file.read_text())
        url, t0, roles = state["prometheus"], state["t0"], state["roles"]
        pids = list(state["pids"].values())
        assert set(state["pids"]) == {"snmpsim", "onvif", "rtsp", "agent", "prometheus"}
        assert state["devices"] == len(demo_config.inventory.devices)
        ready = time.time() - started

        def wait_until(offset: float) -> None:
            while time.time() < t0 + offset:
                assert proc.poll() is None, log.read_text()
                time.sleep(1)

        # every inventory device gets a vigil_device_up series (first polls spread over 15 s)
        ids: set[str] = set()
        while ids != set(demo_config.inventory.devices):
            assert time.time() < t0 + 55, sorted(set(demo_config.inventory.devices) - ids)[:10]
            time.sleep(2)
            ids = {r["metric"]["device"] for r in _query(url, "vigil_device_up")}
        assert _value(url, "count(vigil_device_up == 1)") >= len(ids) - 1   # (the camera)
        # the cabinet is back at 90 s: + a poll and a scrape, the whole timeline has played
        wait_until(90 + 32)
        ups, camera, spd = roles["ups_on_battery"], roles["camera_down"], roles["spd_tripped"]
        cabinet = roles["cabinet_down"]
        span = "[150s]"
        assert _value(url, f'max_over_time(vigil_ups_on_battery{{device="{ups}"}}{span})') == 1
        assert _value(url, f'min_over_time(vigil_ups_battery_charge_ratio{{device="{ups}"}}'
                           f'{span})') < 0.9
        assert _value(url, f'vigil_ups_on_battery{{device="{ups}"}}') == 0        # mains back
        assert _value(url, f'min_over_time(vigil_device_up{{device="{camera}"}}{span})') == 0
        assert _value(url, f'max_over_time(vigil_device_down_reason{{device="{camera}",'
                           f'reason="timeout"}}{span})') == 1
        assert _value(url, f'vigil_contact_alarm{{device="{spd}",contact=~"SPD1( .*)?"}}') == 1
        # ... and the shipped rules made a fault of it, level 3, opened on its own
        assert _value(url, f'vigil_fault_active{{alertname="SpdContactTripped",'
                           f'device="{spd}",level="3"}}') == 1
        assert _value(url, f'increase(vigil_input_pulses_total{{device="{spd}",'
                           f'input=~"SPD1-CNT( .*)?"}}{span})') >= 0.9
        behind = [d.id for d in demo_config.inventory.devices.values()
                  if d.uplink and d.uplink.switch == cabinet]
        assert len(behind) == 8
        silent = "|".join([cabinet, *behind])
        assert _value(url, f'count(min_over_time(vigil_device_up{{device=~"{silent}"}}{span})'
                           f' == 0)') == 9                   # the switch and all behind it
        assert _value(url, 'sum(increase(vigil_interface_received_bytes_total{device="sw-core"}'
                           '[1m]))') > 1e6                                        # traffic
        assert _value(url, "count(vigil_device_up == 1)") >= len(ids) - 1      # all back
        _cameras_as_scripted(url, state["agent"], roles, span, t0 + 175)
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail("the demo did not stop within 30 s of SIGINT")
    assert code == 0, log.read_text()
    for pid in pids:
        assert not _alive(pid), f"pid {pid} still runs after the demo stopped"
    assert time.time() - started < 210, f"took {time.time() - started:.0f}s (ready in {ready:.0f}s)"


def _cameras_as_scripted(url: str, agent: str, roles: dict[str, str], span: str,
                         deadline: float) -> None:
    """Each camera fault of agent/demo/cameras.py, seen on its camera and no healthy one.
    Each stream is first probed at a fixed point of its 115-s interval, so a picture fault
    may show only after the timeline: wait for it, up to `deadline`."""
    faulty = {roles[r] for r in roles if r.startswith("camera_") and r != "camera_down"}
    assert len(faulty) == 10, roles
    probed = _value(url, "count(vigil_rtsp_describe_seconds)")
    assert probed >= 130, f"only {probed} of 172 streams probed"  # spread over 115 s

    def devices(expr: str, expected: str | None = None) -> set[str]:
        while True:
            found = {r["metric"]["device"] for r in _query(url, expr)}
            if expected is None or expected in found or time.time() > deadline:
                return found
            time.sleep(3)

    clock = roles["camera_clock"]
    assert 10740 < _value(url, f'vigil_onvif_clock_offset_seconds{{device="{clock}"}}') < 10860
    assert _value(url, f'vigil_onvif_clock_ntp{{device="{clock}"}}') == 0
    assert devices("abs(vigil_onvif_clock_offset_seconds) > 60") == {clock}
    for role, metric in (("camera_frozen", "frozen"), ("camera_black", "dark"),
                         ("camera_blurred", "blurred"), ("camera_color_cast", "color_cast"),
                         ("camera_occluded", "occluded"), ("camera_no_frames", "signal_lost")):
        found = devices(f"max_over_time(vigil_video_{metric}{span}) == 1", roles[role])
        assert roles[role] in found and not found - faulty, (metric, found)
    assert devices("vigil_onvif_ptz_error == 1") == {roles["camera_ptz_error"]}
    for reason, role in (("auth", "camera_rtsp_auth"), ("no_frames", "camera_no_frames")):
        assert devices(f'vigil_device_down_reason{{collector="rtsp",reason="{reason}"}} == 1',
                       roles[role]) == {roles[role]}
    # the hung ONVIF service: down for a while, its stream and TCP port up all along
    hung = roles["camera_onvif_hang"]
    assert _value(url, f'max_over_time(vigil_device_down_reason{{device="{hung}",'
                       f'collector="onvif",reason="timeout"}}{span})') == 1
    assert _value(url, f'min_over_time(vigil_reach_tcp_up{{device="{hung}",port="8080"}}'
                       f'{span})') == 1
    assert _value(url, f'min_over_time(vigil_reach_icmp_up{{device="{hung}"}}{span})') in (1, None)
    assert _value(url, f'vigil_collector_up{{device="{hung}",collector="onvif"}}') == 1  # back
    # pushed events: the covered camera's tampering, the UPS's trap
    assert devices('vigil_event{event="tampering"} == 1') == {roles["camera_occluded"]}
    ups = roles["ups_on_battery"]
    assert _value(url, f'max_over_time(vigil_event{{device="{ups}",event="ups_on_battery",'
                       f'source="trap"}}{span})') == 1
    assert _value(url, f'vigil_event{{device="{ups}",event="ups_on_battery"}}') == 0
    # the frame that showed the frozen picture is evidence, served by the agent
    frozen = roles["camera_frozen"]
    with urllib.request.urlopen(f"{agent}/evidence/{frozen}", timeout=10) as response:
        files = json.load(response)
    assert files and files[0]["name"].endswith(".jpg")
    with urllib.request.urlopen(agent + files[0]["url"], timeout=10) as response:
        assert response.read(3) == b"\xff\xd8\xff"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a recycled PID is not ours: ours ran from this interpreter or Prometheus
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"agent" in cmdline or b"prometheus" in cmdline


def test_centre_branches_split_the_district_into_valid_inventories(demo_config, tmp_path):
    """Three branch configs that `vigil check` accepts: every device in exactly one branch, the
    machine room with the first, references across branches left out and listed."""
    settings = yaml.safe_load((DEMO / "agent.yaml").read_text())
    settings.update(credentials=str(DEMO / "credentials.yaml"),
                    rules={**settings["rules"], "files": [str(DEMO.parent / "rules/*.yaml")]})
    plans = demo_centre.write_branches(DEMO / "inventory.yaml", settings, tmp_path, port=9840,
                                       trap_port=None, alertmanager_url="http://127.0.0.1:9093",
                                       tickets_url="sqlite+aiosqlite:////tmp/t.db")
    assert [p.sites for p in plans] == [["room", "dh", "xs"], ["ny", "by", "cq"],
                                        ["xh", "hp", "gm"]]
    configs = [load_config(p.config) for p in plans]
    owned = [d for c in configs for d in c.inventory.devices]
    assert sorted(owned) == sorted(demo_config.inventory.devices)
    assert [c.settings.agent.id for c in configs] == ["branch-1", "branch-2", "branch-3"]
    assert [c.settings.listen for c in configs] == [
        "127.0.0.2:9840", "127.0.0.3:9840", "127.0.0.4:9840"]
    assert configs[1].inventory.devices["sw-ny-1"].uplink is None            # sw-core's
    assert "sw-ny-1.uplink (sw-core)" in (plans[1].dir / "inventory.yaml").read_text()
    assert configs[0].inventory.devices["sw-dh-1"].uplink.switch == "sw-core"   # same branch
    assert len({c.settings.tickets.url for c in configs}) == 1


def test_vigil_demo_centre_end_to_end(demo_config, demo_site, tmp_path):
    """`vigil demo --centre`: three branch agents on 127.0.0.2-4 scraped by the centre's
    Prometheus (its recording rules over every camera site), one shared ticket store (a branch
    lists another branch's tickets), one Alertmanager that the agents post to; SIGINT leaves
    no process behind, the PostgreSQL cluster included."""
    peers.program("prometheus", "/usr/bin")
    peers.program("prometheus-alertmanager", "/usr/bin")
    busy = [f"{a}:{p}" for a, p in check_addresses(demo_config.inventory) if not _udp_free(a, p)]
    if busy:
        peers.missing(f"UDP {busy[0]} is in use (is a demo running?)")
    agent_port, prom_port, am_port = (peers.free_port(socket.SOCK_STREAM) for _ in range(3))
    work = tmp_path / "centre"
    args = [sys.executable, "-m", "agent.cli", "demo", "--centre", "--workdir", str(work),
            "--listen", f"127.0.0.1:{agent_port}", "--prometheus-port", str(prom_port),
            "--alertmanager-port", str(am_port), "--trap-port", str(peers.free_port()),
            "--timeline-scale", "0.2"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIGIL_DEMO_COMMUNITY", cameras.PASSWORD_ENV)}
    log = tmp_path / "demo.out"
    started = time.time()
    with peers.child(args, log, env) as proc:
        state_file = work / "demo.json"
        while not state_file.exists():
            assert proc.poll() is None, log.read_text()
            assert time.time() - started < 60, "the demo did not come up: " + log.read_text()
            time.sleep(0.5)
        state = json.loads(state_file.read_text())
        assert set(state["pids"]) >= {"snmpsim", "onvif", "branch-1", "branch-2", "branch-3",
                                      "prometheus", "alertmanager"}
        commands = {pid: _cmdline(pid) for pid in state["pids"].values()}
        if glob.glob("/usr/lib/postgresql/*/bin/initdb"):
            assert state["tickets_url"].startswith("postgresql+psycopg://"), state
            assert "postgres" in state["pids"]
        url, branches = state["prometheus"], state["branches"]
        assert {b["url"].split(":")[1] for b in branches.values()} == {
            "//127.0.0.2", "//127.0.0.3", "//127.0.0.4"}
        tokens = _tokens(Path(state["tokens"]))
        camera_sites = {d.site for d in demo_config.inventory.devices.values()
                        if d.kind.endswith("camera")}
        with urllib.request.urlopen(f"{state['alertmanager']}/-/ready", timeout=5) as response:
            assert response.status == 200

        def shared_tickets() -> set[str]:
            """Agents whose tickets branch-2 lists: its own and other branches'."""
            request = urllib.request.Request(
                f"{branches['branch-2']['url']}/api/v1/tickets",
                headers={"Authorization": f"Bearer {tokens['branch-2']['viewer']}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return {t["agent_id"] for t in json.load(response)}
            except urllib.error.HTTPError as exc:
                if exc.code == 503:     # the store is still being opened (migrations)
                    return set()
                raise

        def posted() -> set[str]:
            """Agents whose faults Alertmanager holds."""
            with urllib.request.urlopen(f"{state['alertmanager']}/api/v2/alerts",
                                        timeout=5) as response:
                return {a["labels"].get("agent", "") for a in json.load(response)}

        checks = {
            "3 branches scraped": lambda: _value(url, 'count(up{job="vigil"} == 1)') == 3,
            "every camera site recorded": lambda: {
                r["metric"]["site"] for r in _query(url, "site:vigil_cameras:count")
            } == camera_sites,
            "every agent's ticket store up": lambda: _value(
                url, "count(vigil_ticket_store_up == 1)") == 3,
            "another branch's tickets listed": lambda: shared_tickets() - {"branch-2"},
            "faults posted to Alertmanager": lambda: posted() & set(branches),
        }
        while checks:
            assert proc.poll() is None, log.read_text()
            assert time.time() - started < 80, f"not seen: {sorted(checks)}"
            checks = {name: check for name, check in checks.items() if not check()}
            time.sleep(2)
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail("the demo did not stop within 30 s of SIGINT")
    assert code == 0, log.read_text()
    for pid, command in commands.items():
        assert _cmdline(pid) != command, f"{command} (pid {pid}) still runs"
    if state["postgres_dir"]:
        assert not (Path(state["postgres_dir"]) / "data" / "postmaster.pid").exists()
    assert time.time() - started < 90, f"took {time.time() - started:.0f}s"


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def _tokens(path: Path) -> dict[str, dict[str, str]]:
    """tokens.txt of the demo: `BRANCH ROLE TOKEN URL` lines."""
    out: dict[str, dict[str, str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            branch, role, token = line.split()[:3]
            out.setdefault(branch, {})[role] = token
    return out


def test_an_extra_inventory_with_a_mistake_stops_the_demo_naming_file_and_line(tmp_path):
    """`vigil demo --extra-inventory` (what bench/soak.py uses): the file is checked with the
    rest before anything starts; a mistake is listed with its file and line, exit 1."""
    extra = tmp_path / "fleet.yaml"
    extra.write_text("sites:\n  - {id: soak-00}\ndevices:\n"
                     "  - {id: fl-00000, kind: switch, site: nowhere, address: 127.77.0.1}\n")
    done = subprocess.run([sys.executable, "-m", "agent.cli", "demo", "--workdir",
                           str(tmp_path / "demo"), "--extra-inventory", str(extra),
                           "--no-prometheus"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the extra inventory has problems" in done.stdout
    assert f"{extra}:4" in done.stdout and "nowhere" in done.stdout, done.stdout
    assert not (tmp_path / "demo" / "data").exists()       # nothing generated, nothing run
