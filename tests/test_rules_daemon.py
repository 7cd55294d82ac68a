"""The rules engine in the running agent, with the shipped rule set, on real peers:

- a recorded Delta UPS (../shared/recordings/snmp/deltaups.snmprec, served by snmpsim) goes on
  battery at a set time: UpsOnBattery fires at level 2 within one poll plus its `for:`;
- the simulated switch of a community is killed (its snmpsim process stopped, while the UPS
  test waits, so the two waits overlap): one root
  fault for the switch, its cameras kept on it as evidence and opening nothing; back up, all
  resolve;
- a real Alertmanager receives the firing faults (and only the ones that open something);
- `vigil faults` and `vigil silence` on the API; a bad rule file is refused on reload and
  the old rules keep running.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agent.auth import add_user
from agent.demo.snmprec import INTEGER, Records
from tests import peers
from tests.test_daemon import Daemon

ROOT = Path(__file__).resolve().parent.parent
VIGIL = [sys.executable, "-m", "agent.cli"]
OUTPUT_SOURCE = "1.3.6.1.2.1.33.1.4.1.0"  # upsOutputSource: 3 normal, 5 battery
CAMERAS = 4


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _ups_on_battery_at(source: Path, at: float) -> str:
    """The recorded UPS, its upsOutputSource stepping from normal to battery at `at`."""
    step = Records()
    step.step(OUTPUT_SOURCE, INTEGER, before=3, after=5, at=at)
    lines = [line for line in source.read_text(encoding="latin-1").splitlines(keepends=True)
             if not line.startswith(OUTPUT_SOURCE + "|")]
    return "".join(sorted([*lines, step.render()], key=lambda ln: [
        int(p) for p in ln.split("|", 1)[0].split(".")]))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("rules-daemon")
    recordings = peers.recordings()
    power, access = work / "power", work / "access"
    for d in (power, access, work / "p", work / "a"):
        d.mkdir()
    on_battery_at = time.time() + 12    # after the agent's first polls
    (power / "ups-1.snmprec").write_text(
        _ups_on_battery_at(recordings / "deltaups.snmprec", on_battery_at), encoding="latin-1")
    shutil.copy(recordings / "jetstream.snmprec", access / "sw-1.snmprec")
    for i in range(1, CAMERAS + 1):
        shutil.copy(recordings / "hikvision-cam.snmprec", access / f"cam-{i}.snmprec")
    access_port = peers.free_port()
    with peers.alertmanager(work) as am, peers.snmpsim(power, work / "p") as power_port:
        sim = peers.snmpsim(access, work / "a", [f"127.0.0.1:{access_port}"])
        sim.__enter__()
        creds = "credentials:\n" + "".join(
            f"  {c}:\n    version: 2c\n    community: {c}\n"
            for c in ["ups-1", "sw-1"] + [f"cam-{i}" for i in range(1, CAMERAS + 1)])
        (work / "credentials.yaml").write_text(creds)
        (work / "credentials.yaml").chmod(0o600)
        cams = "".join(
            f"  - {{id: cam-{i}, kind: fixed_camera, site: lab, address: 127.0.0.1, port: "
            f"{access_port}, credentials: cam-{i}, uplink: {{switch: sw-1, port: {i}}}}}\n"
            for i in range(1, CAMERAS + 1))
        (work / "inventory.yaml").write_text(
            "sites:\n  - {id: lab, name: 实验室}\ndevices:\n"
            f"  - {{id: ups-1, kind: ups, site: lab, address: 127.0.0.1, port: {power_port}, "
            f"credentials: ups-1}}\n"
            f"  - {{id: sw-1, kind: switch, site: lab, address: 127.0.0.1, port: "
            f"{access_port}, credentials: sw-1, powered_by: {{ups: ups-1}}}}\n" + cams)
        port = peers.free_port(socket.SOCK_STREAM)
        token = add_user(work / "tokens.yaml", "zhang.eng", "engineer")
        viewer = add_user(work / "tokens.yaml", "guest", "viewer")
        (work / "agent.yaml").write_text(
            f"agent: {{id: test}}\nlisten: 127.0.0.1:{port}\nstate_dir: state\n"
            f"schedule: {{default_interval: 3s}}\nsnmp: {{timeout: 500ms, retries: 1}}\n"
            f"rules: {{files: ['{ROOT}/config/rules/*.yaml'], interval: 1s}}\n"
            f"alertmanager: {{urls: ['{am}'], resend_interval: 5s}}\n")
        ctx = {"daemon": Daemon(work / "agent.yaml"), "am": am, "work": work,
               "on_battery_at": on_battery_at, "sim": sim, "access_port": access_port,
               "token": token, "viewer": viewer}
        try:
            daemon = ctx["daemon"]
            peers.wait_http(daemon.url + "/-/ready")
            # The access site goes dark while the UPS test waits for its `for:`, so the two
            # minute-long waits overlap: the switch and everything behind it, once seen up.
            daemon.wait_for(lambda: all(daemon.sample("vigil_device_up", device=d) == 1
                                        for d in ["sw-1", "cam-1", "cam-4"]),
                            what="access site up")
            sim.__exit__(None, None, None)
            ctx["sim"] = None
            yield ctx
        finally:
            ctx["daemon"].stop()
            if ctx["sim"] is not None:
                ctx["sim"].__exit__(None, None, None)


def faults(daemon: Daemon, **query: str) -> dict[str, dict]:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return {f["key"]: f for f in _get(f"{daemon.url}/api/v1/faults?{q}")}


def am_alerts(am: str) -> dict[str, dict]:
    return {a["labels"]["fault_key"]: a for a in _get(f"{am}/api/v2/alerts")}


def test_ups_on_battery_is_a_level_2_fault_within_a_poll_plus_for(site):
    daemon = site["daemon"]
    fault = daemon.wait_for(
        lambda: next((f for f in faults(daemon).values()
                      if f["rule"] == "UpsOnBattery" and f["state"] == "firing"), None),
        timeout=90, what="UpsOnBattery firing")
    delay = fault["fired_at"] - site["on_battery_at"]
    assert fault["level"] == 2 and fault["device"] == "ups-1" and not fault["suppressed"]
    # one 3-s poll, the 30-s `for:`, one 1-s evaluation, and a second of snmpsim's step
    assert 30 <= delay <= 30 + 3 + 1 + 2, delay
    assert fault["texts"]["summary"]["zh"]
    full = _get(f"{daemon.url}/api/v1/faults/UpsOnBattery:ups-1")
    assert full["evidence"]["inputs"] == {"ups_on_battery": 1.0}
    assert full["evidence"]["collectors"]["snmp"]["up"] is True
    assert daemon.sample("vigil_fault_active", alertname="UpsOnBattery", level="2",
                         device="ups-1", site="lab") == 1
    alert = daemon.wait_for(lambda: am_alerts(site["am"]).get("UpsOnBattery:ups-1"),
                            timeout=20, what="the alert in Alertmanager")
    assert alert["labels"]["level"] == "2" and alert["labels"]["site"] == "lab"
    assert alert["labels"]["agent"] == "test"


def test_dead_switch_is_one_root_fault_and_recovery_resolves_all(site):
    daemon, am = site["daemon"], site["am"]
    assert site["sim"] is None       # the site fixture took the switch's snmpsim down
    root = daemon.wait_for(
        lambda: (f := faults(daemon).get("SwitchUnreachable:sw-1")) and f["state"] == "firing"
        and f["caused"] >= CAMERAS and f, timeout=120, what="the switch's root fault")
    assert not root["suppressed"]
    everything = faults(daemon)
    cameras = {k: f for k, f in everything.items() if f["rule"] == "CameraUnreachable"}
    assert len(cameras) == CAMERAS  # kept, as evidence on the root
    assert all(f["caused_by"] == "SwitchUnreachable:sw-1" for f in cameras.values())
    opened = faults(daemon, suppressed="exclude")
    assert not any(f["rule"] == "CameraUnreachable" for f in opened.values())
    alerts = daemon.wait_for(lambda: (a := am_alerts(am)) and "SwitchUnreachable:sw-1" in a
                             and a, timeout=20, what="the root fault in Alertmanager")
    assert not any(k.startswith("CameraUnreachable") for k in alerts)
    out = subprocess.run([*VIGIL, "faults", "--url", daemon.url, "--lang", "en"],
                         capture_output=True, text=True, check=True).stdout
    assert "SwitchUnreachable" in out and f"(+{root['caused']} caused)" in out
    assert "CameraUnreachable" not in out
    shown = subprocess.run([*VIGIL, "faults", "--url", daemon.url, "SwitchUnreachable:sw-1"],
                           capture_output=True, text=True, check=True).stdout
    assert f"carries {root['caused']} fault(s) behind it" in shown and "scene record" in shown
    # the switch comes back: every fault of the access site resolves
    site["sim"] = peers.snmpsim(site["work"] / "access", site["work"] / "a",
                                [f"127.0.0.1:{site['access_port']}"])
    site["sim"].__enter__()
    daemon.wait_for(lambda: not any(k.startswith(("SwitchUnreachable", "CameraUnreachable"))
                                    for k in faults(daemon)), timeout=60,
                    what="the access site's faults resolved")
    history = {f["key"] for f in _get(f"{daemon.url}/api/v1/faults/history")}
    assert "SwitchUnreachable:sw-1" in history


def test_silence_from_the_command_line(site):
    daemon = site["daemon"]
    add = [*VIGIL, "silence", "add", "--url", daemon.url, 'device="ups-1"', "--duration",
           "10m", "--owner", "张工", "--reason", "更换电池"]
    for token, refusal in ((None, "(401)"), (site["viewer"], "(403)")):
        env = {k: v for k, v in os.environ.items() if k != "VIGIL_TOKEN"}
        refused = subprocess.run([*add, *(["--token", token] if token else [])],
                                 capture_output=True, text=True, env=env)
        assert refused.returncode == 1 and refusal in refused.stderr, refused.stderr
    assert _get(f"{daemon.url}/api/v1/silences") == []
    out = subprocess.run([*add, "--token", site["token"]], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    daemon.wait_for(lambda: faults(daemon).get("UpsOnBattery:ups-1", {}).get("suppressed")
                    == "silenced", timeout=20, what="the UPS fault silenced")
    listed = subprocess.run([*VIGIL, "silence", "list", "--url", daemon.url],
                            capture_output=True, text=True, check=True).stdout
    assert "张工" in listed and "更换电池" in listed
    silence_id = listed.splitlines()[1].split()[0]
    bad = subprocess.run([*VIGIL, "silence", "add", "--url", daemon.url, 'device="ups-1"',
                          "--duration", "1h", "--owner", "", "--reason", "x"],
                         capture_output=True, text=True, env={**os.environ,
                                                              "VIGIL_TOKEN": site["token"]})
    assert bad.returncode == 1 and "owner" in bad.stderr
    subprocess.run([*VIGIL, "silence", "expire", "--url", daemon.url, "--token", site["token"],
                    silence_id], check=True, capture_output=True)
    daemon.wait_for(lambda: not faults(daemon).get("UpsOnBattery:ups-1", {}).get(
        "suppressed"), timeout=20, what="the silence over")


def test_a_bad_rule_file_is_refused_and_the_old_rules_keep_running(site):
    daemon, work = site["daemon"], site["work"]
    before = len(_get(f"{daemon.url}/api/v1/rules"))
    text = (work / "agent.yaml").read_text()
    (work / "extra.yaml").write_text("groups:\n  - name: x\n    rules:\n      - name: Broken\n"
                                     "        expr: ups_on_battery ==\n        level: 2\n")
    (work / "agent.yaml").write_text(text.replace(
        f"files: ['{ROOT}/config/rules/*.yaml']",
        f"files: ['{ROOT}/config/rules/*.yaml', extra.yaml]"))
    try:
        request = urllib.request.Request(daemon.url + "/-/reload", method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        body = info.value.read().decode()
        assert info.value.code == 400
        assert f"{work / 'extra.yaml'}:5 groups[0].rules[0].expr: rule Broken: syntax error" \
            in body
        assert len(_get(f"{daemon.url}/api/v1/rules")) == before
        assert "UpsOnBattery:ups-1" in faults(daemon)
    finally:
        (work / "agent.yaml").write_text(text)


def test_faults_survive_a_restart(site):
    daemon = site["daemon"]
    fired = faults(daemon)["UpsOnBattery:ups-1"]["fired_at"]
    resolved = [(f["key"], f["resolved_at"]) for f in
                _get(f"{daemon.url}/api/v1/faults/history")]
    daemon.stop()
    again = Daemon(daemon.config)
    site["daemon"] = again
    peers.wait_http(again.url + "/-/ready")
    assert faults(again)["UpsOnBattery:ups-1"]["fired_at"] == fired
    # the resolved faults too (faults-history.jsonl), newest first as before
    assert [(f["key"], f["resolved_at"]) for f in
            _get(f"{again.url}/api/v1/faults/history")] == resolved
