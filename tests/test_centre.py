"""The monitoring centre's configuration shipped in config/centre/, checked by the tools that
will read it (promtool, amtool, a real Alertmanager), and `vigil export prometheus-targets`.

- prometheus.yml with file_sd targets written by the command is valid (promtool check config);
- the recording rules and the centre's alerts pass their unit tests (promtool test rules);
- the shipped alerting rules are what `vigil export prometheus-rules` gives today (no drift);
- alertmanager.yml is valid and routes by level and site as its comments say (amtool);
- in a real Alertmanager with that file, a dead switch's alert inhibits the alerts of the
  cameras behind it (labels `switch`/`ups` the agent adds), not those of other switches.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from agent.alerting import alert, topology_labels
from agent.config import load_config
from rules.faults import Fault
from tests import peers

ROOT = Path(__file__).resolve().parent.parent
CENTRE = ROOT / "config" / "centre"
VIGIL = [sys.executable, "-m", "agent.cli"]


def _agent_yaml(path: Path, agent_id: str, listen: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"agent: {{id: {agent_id}}}\nlisten: \"{listen}\"\n")
    return path


def _export_targets(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*VIGIL, "export", "prometheus-targets", *args],
                          capture_output=True, text=True)


def test_targets_from_branch_configs(tmp_path: Path) -> None:
    one = _agent_yaml(tmp_path / "b1" / "agent.yaml", "branch-dh", "127.0.0.2:9830")
    two = _agent_yaml(tmp_path / "b2" / "agent.yaml", "branch-xs", "[::1]:9830")
    out = tmp_path / "targets" / "branches.json"
    out.parent.mkdir()
    run = _export_targets(str(one), str(two), "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert json.loads(out.read_text()) == [
        {"targets": ["127.0.0.2:9830"], "labels": {"branch": "branch-dh"}},
        {"targets": ["[::1]:9830"], "labels": {"branch": "branch-xs"}}]
    # no secrets needed: the configs name credential files that are not there
    wild = _agent_yaml(tmp_path / "b3" / "agent.yaml", "branch-ny", "0.0.0.0:9830")
    refused = _export_targets(str(wild))
    assert refused.returncode == 1
    assert f"{wild}: listen: 0.0.0.0:9830 listens on every address" in refused.stderr
    given = _export_targets(str(wild), "--address", "127.0.0.4:9830")
    assert json.loads(given.stdout)[0]["targets"] == ["127.0.0.4:9830"]
    same = _agent_yaml(tmp_path / "b4" / "agent.yaml", "branch-dh", "127.0.0.5:9830")
    dup = _export_targets(str(one), str(same))
    assert dup.returncode == 1 and "agent.id 'branch-dh' is also the id of" in dup.stderr
    count = _export_targets(str(one), str(two), "--address", "127.0.0.9:1")
    assert count.returncode == 2 and "1 --address for 2 config(s)" in count.stderr
    bad = tmp_path / "b5" / "agent.yaml"
    bad.parent.mkdir()
    bad.write_text("agent: {id: x}\nlisten: nowhere\n")
    broken = _export_targets(str(bad))
    assert broken.returncode == 1 and f"{bad}:2" in broken.stderr and "listen" in broken.stderr


def test_prometheus_config_and_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = peers.program("promtool")
    centre = tmp_path / "centre"
    shutil.copytree(CENTRE, centre)
    one = _agent_yaml(tmp_path / "b1" / "agent.yaml", "branch-dh", "127.0.0.2:9830")
    assert _export_targets(str(one), "-o", str(centre / "targets" / "branches.json")) \
        .returncode == 0
    check = subprocess.run([promtool, "check", "config", str(centre / "prometheus.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "WARNING" not in check.stdout + check.stderr   # the target files were found
    rules = sorted((centre / "rules").glob("vigil-*.yml"))
    rules = [r for r in rules if not r.name.endswith(".test.yml")]
    assert {r.name for r in rules} == {"vigil-recording.yml", "vigil-centre.yml",
                                       "vigil-alerts.yml"}
    check = subprocess.run([promtool, "check", "rules", *map(str, rules)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([promtool, "test", "rules", "vigil-recording.test.yml"],
                          capture_output=True, text=True, cwd=centre / "rules")
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The recording-rule test is not vacuous: a wrong expected online rate fails it."""
    promtool = peers.program("promtool")
    rules = tmp_path / "rules"
    shutil.copytree(CENTRE / "rules", rules)
    test = rules / "vigil-recording.test.yml"
    test.write_text(test.read_text().replace("value: 0.75", "value: 0.7"))
    unit = subprocess.run([promtool, "test", "rules", test.name], capture_output=True,
                          text=True, cwd=rules)
    assert unit.returncode == 1 and "site:vigil_camera_online:ratio" in unit.stdout + unit.stderr


def test_shipped_alerting_rules_are_the_current_export(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VIGIL_V3_AUTH", "VIGIL_V3_PRIV", "VIGIL_COMMUNITY"):
        monkeypatch.setenv(name, "x")
    out = tmp_path / "vigil-alerts.yml"
    run = subprocess.run([*VIGIL, "export", "prometheus-rules", "-c", "config/agent.yaml",
                          "-o", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert out.read_text() == (CENTRE / "rules" / "vigil-alerts.yml").read_text(), \
        "config/centre/rules/vigil-alerts.yml is stale: regenerate it (docs/centre.md)"
    names = {r["alert"] for g in yaml.safe_load(out.read_text())["groups"] for r in g["rules"]}
    assert {"SwitchUnreachable", "UpsUnreachable", "UpsOnBattery", "CameraUnreachable"} <= names


@pytest.mark.parametrize(("labels", "receiver"), [
    ({"level": "1", "site": "dh"}, "duty-urgent"),
    ({"level": "2", "site": "dh"}, "duty-urgent"),
    ({"level": "2", "site": "room"}, "machine-room"),
    ({"level": "3", "site": "dh"}, "duty-screen"),
    ({"level": "4", "site": "xs"}, "maintenance-backlog"),
    ({"site": "dh"}, "duty-screen"),
])
def test_alertmanager_routes_by_level_and_site(labels: dict[str, str], receiver: str) -> None:
    amtool = peers.program("amtool")
    config = CENTRE / "alertmanager.yml"
    check = subprocess.run([amtool, "check-config", str(config)], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    route = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}",
                            *(f"{k}={v}" for k, v in labels.items())],
                           capture_output=True, text=True)
    assert route.returncode == 0, route.stdout + route.stderr
    assert route.stdout.split() == [receiver]


def _fault(rule: str, device: str, site: str, kind: str, level: int, now: float) -> Fault:
    return Fault(key=f"{rule}:{device}", rule=rule, group="g", subject=device, device=device,
                 site=site, kind=kind, series={}, labels={}, level=level, state="firing",
                 pending_since=now - 120, last_seen=now, fired_at=now - 60)


def test_a_dead_switch_inhibits_its_cameras_in_alertmanager(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped alertmanager.yml in a real Alertmanager, alerts built as the agent builds
    them from the demo inventory: sw-dh-1's SwitchUnreachable inhibits the cameras behind
    sw-dh-1 (equal `switch`); a camera of another switch, and the switch itself, stay active;
    a dead UPS inhibits the switch it feeds."""
    monkeypatch.setenv("VIGIL_DEMO_COMMUNITY", "x")
    monkeypatch.setenv("VIGIL_DEMO_CAMERA_PASSWORD", "y")
    devices = load_config(ROOT / "config" / "demo" / "agent.yaml").inventory.devices
    behind = sorted(d.id for d in devices.values()
                    if d.uplink and d.uplink.switch == "sw-dh-1" and d.kind == "ptz_camera")
    other = next(d.id for d in devices.values()
                 if d.uplink and d.uplink.switch == "sw-ny-1" and d.kind == "ptz_camera")
    assert len(behind) >= 2
    assert topology_labels(devices["sw-dh-1"]) == {"switch": "sw-dh-1", "ups": "ups-dh"}
    assert topology_labels(devices[behind[0]]) == {"switch": "sw-dh-1"}
    now = time.time()
    faults = [_fault("SwitchUnreachable", "sw-dh-1", "dh", "switch", 2, now),
              *(_fault("CameraUnreachable", c, "dh", "ptz_camera", 3, now) for c in behind),
              _fault("CameraUnreachable", other, "ny", "ptz_camera", 3, now),
              _fault("UpsUnreachable", "ups-xs", "xs", "ups", 3, now),
              _fault("SwitchUnreachable", "sw-xs-1", "xs", "switch", 2, now)]
    alerts = [alert(f, now, 60, "demo-branch", "http://127.0.0.1:9830",
                    topology_labels(devices[f.device])) for f in faults]
    port = peers.free_port(socket.SOCK_STREAM)
    binary = peers.program("prometheus-alertmanager")
    url = f"http://127.0.0.1:{port}"
    args = [binary, f"--config.file={CENTRE / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address="]
    with peers.child(args, tmp_path / "alertmanager.log"):
        peers.wait_http(f"{url}/-/ready", timeout=30)
        states = asyncio.run(_post_and_list(url, alerts, expect=len(faults)))
    inhibited = {d for d, s in states.items() if s["state"] == "suppressed"}
    assert inhibited == {*behind, "sw-xs-1"}, json.dumps(states, indent=1)
    assert states[behind[0]]["inhibitedBy"] and states["sw-dh-1"]["state"] == "active"
    assert states[other]["state"] == "active"


async def _post_and_list(url: str, alerts: list[dict], expect: int) -> dict[str, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/api/v2/alerts", json=alerts) as response:
            assert response.status == 200, await response.text()
        deadline = time.monotonic() + 10
        while True:
            async with session.get(f"{url}/api/v2/alerts") as response:
                listed = await response.json()
            states = {a["labels"]["device"]: a["status"] for a in listed}
            settled = len(states) == expect and all(
                s["state"] == "active" or s["inhibitedBy"] for s in states.values())
            # inhibition is computed per query; wait until every source alert is in
            if (settled and any(s["inhibitedBy"] for s in states.values())) \
                    or time.monotonic() > deadline:
                return states
            await asyncio.sleep(0.1)


OTHER_TIERS = ("email-team-lead", "dingtalk-contractor", "email-contractor-manager",
               "email-owner")   # config/escalation.yaml's other channels (not used here)


def _relay_site(work: Path, robot_base: str) -> Path:
    """An agent with no devices, a SQLite ticket store and the WeCom robot channel."""
    (work / "credentials.yaml").write_text("credentials: {}\n")
    (work / "credentials.yaml").chmod(0o600)
    (work / "inventory.yaml").write_text("sites:\n  - {id: dh, name: 东湖社区}\ndevices: []\n")
    http = peers.free_port(socket.SOCK_STREAM)
    (work / "agent.yaml").write_text(f"""\
agent: {{id: branch-relay}}
listen: 127.0.0.1:{http}
state_dir: state
rules: {{files: []}}
tickets:
  url: 'sqlite+aiosqlite:///{work / "tickets.db"}'
  escalation: '{ROOT}/config/escalation.yaml'
notifications:
  channels:
    - {{name: wecom-maintenance, type: wecom, key: duty-key, api_base: '{robot_base}',
       storm_window: 0s}}
""" + "".join(f"    - {{name: {n}, type: wecom, key: {n}, api_base: '{robot_base}'}}\n"
              for n in OTHER_TIERS))
    return work / "agent.yaml"


async def test_alertmanager_reaches_wecom_through_the_agent(tmp_path: Path) -> None:
    """The shipped alertmanager.yml's level-1/2 receiver, in a real Alertmanager, posts to a
    Vigil agent's /api/v1/alertmanager/webhook, and the agent's WeCom channel delivers it to
    the (loopback) robot; bad calls of the webhook are refused and send nothing."""
    from agent.auth import add_user
    from agent.daemon import Agent
    from tests.test_tickets_e2e import robot, until

    binary = peers.program("prometheus-alertmanager")
    async with robot() as (wecom, robot_base):
        config_path = _relay_site(tmp_path, robot_base)
        engineer = add_user(tmp_path / "tokens.yaml", "zhang.eng", "engineer")
        viewer = add_user(tmp_path / "tokens.yaml", "guest", "viewer")
        agent = Agent(load_config(config_path))
        await agent.start()
        listen = agent.config.settings.listen
        token_file = tmp_path / "vigil-token"
        token_file.write_text(engineer)
        am_config = (CENTRE / "alertmanager.yml").read_text() \
            .replace("127.0.0.1:9830", listen) \
            .replace("/etc/alertmanager/vigil-token", str(token_file))
        (tmp_path / "alertmanager.yml").write_text(am_config)
        port = peers.free_port(socket.SOCK_STREAM)
        url = f"http://127.0.0.1:{port}"
        args = [binary, f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
        hook = f"http://{listen}/api/v1/alertmanager/webhook"
        try:
            async with aiohttp.ClientSession() as session:
                async def post(body: object, token: str | None = engineer,
                               query: str = "?channel=wecom-maintenance") -> tuple[int, dict]:
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    async with session.post(hook + query, json=body, headers=headers) as r:
                        return r.status, await r.json()

                good = {"version": "4", "alerts": [{
                    "status": "firing", "labels": {"alertname": "X", "level": "2"},
                    "annotations": {"summary": "测试"}, "startsAt": "2026-11-25T00:00:00Z"}]}
                assert (await post(good, token=None))[0] == 401
                assert (await post(good, token=viewer))[0] == 403
                status, body = await post(good, query="?channel=nope")
                assert status == 400 and "unknown nope; known: dingtalk-contractor" in body["error"]
                status, body = await post(good, query="")
                assert status == 400 and "channel" in body["error"]
                status, body = await post({"version": "4", "alerts": [{"status": "on fire"}]})
                assert status == 400 and body["error"].startswith(
                    "not an Alertmanager webhook payload: alerts.0.status")
                assert wecom.texts == {}              # nothing refused was sent

                with peers.child(args, tmp_path / "alertmanager.log"):
                    peers.wait_http(f"{url}/-/ready", timeout=30)
                    fired = [{"labels": {"alertname": "SwitchUnreachable", "level": "1",
                                         "site": "dh", "device": "sw-core",
                                         "fault_key": "SwitchUnreachable:sw-core"},
                              "annotations": {"summary": "核心交换机 sw-core 离线",
                                              "summary_en": "Core switch sw-core down"},
                              "startsAt": "2026-11-25T08:00:00Z",
                              "generatorURL": "http://127.0.0.1:9830/api/v1/faults/x"}]
                    async with session.post(f"{url}/api/v2/alerts", json=fired) as response:
                        assert response.status == 200
                    texts = await until(lambda: _texts(wecom, "duty-key"), 30,
                                        "the alert on the WeCom robot")
        finally:
            await agent.stop()
    assert any("核心交换机 sw-core 离线" in t and "一级" in t for t in texts), texts


async def _texts(wecom: Any, key: str) -> list[str] | None:
    return wecom.texts.get(key)
