"""The Grafana dashboards (agent/dashboards): the shipped JSON is what the generator makes, it
is valid for the SDK's dashboard model, and every panel query returns series from a real
Prometheus that scraped a running demo (three sites of config/demo, with an earthing point
measured and a ticket escalated, acknowledged and repaired), so no panel is empty by a typo."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from agent.auth import add_user
from agent.cli import main
from agent.dashboards import DASHBOARDS, render
from agent.dashboards.panels import DATASOURCE_VARIABLE, GRID_COLUMNS, targets
from agent.demo import cameras
from tests import peers

SHIPPED = peers.ROOT / "config" / "centre" / "grafana" / "dashboards"
DEMO = peers.ROOT / "config" / "demo"
SITES = ("room", "dh", "cq")          # the machine room, a site with an SPD trip, a camera drop
# Template values tried for each query: a panel passes when one of them gives series (a UPS
# panel of the device dashboard has data for the UPS, a video one for a camera).
LOCKED_CAMERA = "fix-gm-01"
CHOICES = [("dh", "ptz-dh-03"), ("dh", "spd-dh"), ("room", "ups-room"), ("room", "env-room"),
           ("cq", "sw-cq-1"), ("cq", "ptz-cq-05"), ("cq", LOCKED_CAMERA)]
# Series no demo device exports, with why a query naming them still proves itself: the
# panel falls back (`or`) to the generic series the demo's monitors do export.
ABSENT_IN_DEMO = {
    "vigil_spd_status": "dedicated SPD monitor profiles; the demo's Poseidon monitors report "
                        "SPD contacts (vigil_contact_alarm), the `or` branch",
    "vigil_spd_strikes_total": "as vigil_spd_status: the demo counts strikes on counter "
                               "inputs (vigil_input_pulses_total)",
    "vigil_spd_leakage_current_amperes": "as vigil_spd_status: the demo's leakage is a "
                                         "current sensor (vigil_sensor_amperes)",
    "vigil_ups_on_bypass": "no simulated UPS model reports bypass; `or vector(0)`",
}
ESCALATION = """\
calendars: {}
tiers:
  - {name: technician, channels: []}
  - {name: team_lead, channels: []}
levels:
  1: {respond: 3s, repair: 1h}
  2: {respond: 3s, repair: 1h}
  3: {respond: 3s, repair: 1h}
  4: {respond: 3s, repair: 1h}
"""


# -- the JSON ------------------------------------------------------------------------------

def test_the_shipped_dashboards_are_what_the_generator_makes():
    rendered = render("zh")
    shipped = {p.name: p.read_text(encoding="utf-8") for p in SHIPPED.glob("*.json")}
    assert set(shipped) == set(DASHBOARDS)
    for name, text in rendered.items():
        assert shipped[name] == text, (f"{name} differs from the generator: run `vigil export "
                                       f"grafana-dashboards -o {SHIPPED.relative_to(peers.ROOT)}`")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_dashboard_is_valid_for_the_sdk_model(lang):
    uids = set()
    for name, text in render(lang).items():
        data = json.loads(text)
        # the SDK's own model reads it back to the same JSON
        again = json.loads(json.dumps(model.Dashboard.from_json(data), cls=JSONEncoder))
        assert again == data, name
        assert data["schemaVersion"] >= 36 and data["uid"] and data["title"]
        uids.add(data["uid"])
        assert data["templating"]["list"][0]["name"] == DATASOURCE_VARIABLE
        ids = [p["id"] for p in data["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        cells: set[tuple[int, int]] = set()
        for panel in data["panels"]:
            g = panel["gridPos"]
            assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= GRID_COLUMNS, (name, panel)
            area = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                    for y in range(g["y"], g["y"] + g["h"])}
            assert not area & cells, f"{name}: panel '{panel['title']}' overlaps another"
            cells |= area
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == f"${{{DATASOURCE_VARIABLE}}}"
                assert panel["title"] and panel["targets"], (name, panel["title"])
        for _panel, target in targets(data):
            assert target["datasource"]["uid"] and target["refId"] and target["expr"]
        if lang == "en":     # no Chinese left in the English titles
            titles = [data["title"], *(p["title"] for p in data["panels"])]
            assert not any(re.search(r"[\u4e00-\u9fff]", t) for t in titles), titles
    assert len(uids) == len(DASHBOARDS)


def test_export_command_writes_the_dashboards(tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["export", "grafana-dashboards", "-o", str(tmp_path),
                               "--lang", "en"])
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(DASHBOARDS)
    assert json.loads((tmp_path / "vigil-overview.json").read_text())["title"] == \
        "Vigil district overview"
    bad = runner.invoke(main, ["export", "grafana-dashboards", "-o", str(tmp_path),
                               "--lang", "fr"])
    assert bad.exit_code == 2 and "'fr' is not one of 'zh', 'en'" in bad.output


def test_the_provisioning_files_point_at_the_dashboards():
    provider = yaml.safe_load((peers.ROOT / "config" / "centre" / "grafana" / "provisioning"
                               / "dashboards" / "vigil.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    sources = yaml.safe_load((peers.ROOT / "config" / "centre" / "grafana" / "provisioning"
                              / "datasources" / "vigil.yaml").read_text())
    source = sources["datasources"][0]
    assert source["type"] == "prometheus" and source["uid"] == "vigil-prometheus"


# -- every query against a Prometheus that scraped the demo --------------------------------

def _udp_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def _config_dir(work: Path) -> tuple[Path, dict[str, str]]:
    """config/demo cut to SITES, with earthing points, API tokens and an escalation policy
    whose response limits are seconds (so a ticket escalates while the test runs)."""
    inventory = yaml.safe_load((DEMO / "inventory.yaml").read_text(encoding="utf-8"))
    inventory["sites"] = [s for s in inventory["sites"] if s["id"] in SITES]
    inventory["devices"] = [d for d in inventory["devices"] if d["site"] in SITES]
    # and the camera whose stream password was changed: down (rtsp, auth) all along
    locked = next(d for d in yaml.safe_load((DEMO / "inventory.yaml").read_text(
        encoding="utf-8"))["devices"] if d["id"] == LOCKED_CAMERA)
    inventory["devices"].append({**{k: v for k, v in locked.items()
                                    if k not in ("uplink", "powered_by")}, "site": "cq"})
    inventory["earthing_points"] = [
        {"id": "ep-room", "site": "room", "kind": "machine_room", "name": "分局机房联合接地"},
        {"id": "ep-pole-dh-01", "site": "dh", "kind": "pole", "device": "ptz-dh-01"}]
    config = work / "config"
    config.mkdir(parents=True)
    (config / "inventory.yaml").write_text(yaml.safe_dump(inventory, allow_unicode=True),
                                           encoding="utf-8")
    (config / "credentials.yaml").write_text((DEMO / "credentials.yaml").read_text())
    (config / "escalation.yaml").write_text(ESCALATION)
    tokens = {"engineer": add_user(config / "tokens.yaml", "engineer-1", "engineer")}
    agent = yaml.safe_load((DEMO / "agent.yaml").read_text(encoding="utf-8"))
    agent["rules"]["files"] = [str(peers.ROOT / "config" / "rules" / "*.yaml")]
    agent["tickets"] = {"escalation": str(config / "escalation.yaml"),
                        "tokens": str(config / "tokens.yaml"), "escalation_interval": "1s"}
    (config / "agent.yaml").write_text(yaml.safe_dump(agent, allow_unicode=True),
                                       encoding="utf-8")
    return config, tokens


def _call(url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        url, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _call_when_ready(url: str, token: str, body: dict[str, Any], deadline: float) -> Any:
    """_call, again while the agent answers 503 (its stores still opening after start)."""
    while True:
        try:
            return _call(url, token, body)
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.time() > deadline:
                raise
        time.sleep(1)


def _series(prom: str, expr: str, start: float | None = None) -> int:
    """How many series `expr` gives: instant, or over [start, now] like a graph panel."""
    params = {"query": expr}
    path = "query"
    if start is not None:      # steps ending now, like Grafana's
        end = time.time()
        start = end - 15 * math.ceil((end - start) / 15)
        path, params = "query_range", {**params, "start": start, "end": end, "step": 15}
    try:
        with urllib.request.urlopen(f"{prom}/api/v1/{path}?" + urllib.parse.urlencode(params),
                                    timeout=10) as response:
            return len(json.load(response)["data"]["result"])
    except urllib.error.HTTPError as exc:
        pytest.fail(f"Prometheus refused {expr!r}: {exc.read().decode()}")


def _wait(what: str, check, deadline: float, proc: subprocess.Popen, log: Path) -> None:
    while not check():
        assert proc.poll() is None, log.read_text()
        assert time.time() < deadline, f"{what} did not happen: " + log.read_text()[-2000:]
        time.sleep(1)


def _substituted(expr: str, site: str, device: str) -> str:
    return (expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
            .replace("$site", site).replace("$device", device))


@pytest.fixture(scope="module")
def demo_site():
    """The demo's addresses, for this module alone (another worker may run a demo too)."""
    with peers.demo_site():
        yield


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_site):
    """The demo on loopback with Prometheus; yields (Prometheus URL, start time)."""
    peers.program("prometheus", "/usr/bin")
    work = tmp_path_factory.mktemp("dashboards")
    config, tokens = _config_dir(work)
    from agent.config import load_config
    from agent.demo.generate import check_addresses
    os.environ.setdefault("VIGIL_DEMO_COMMUNITY", "vigil-demo")
    os.environ.setdefault(cameras.PASSWORD_ENV, cameras.DEFAULT_PASSWORD)
    busy = [f"{a}:{p}" for a, p in check_addresses(load_config(config / "agent.yaml").inventory)
            if not _udp_free(a, p)]
    if busy:
        peers.missing(f"UDP {busy[0]} is in use (is a demo running?)")
    agent_port, prom_port = peers.free_port(socket.SOCK_STREAM), peers.free_port(socket.SOCK_STREAM)
    args = [sys.executable, "-m", "agent.cli", "demo", "--workdir", str(work / "demo"),
            "--config-dir", str(config), "--listen", f"127.0.0.1:{agent_port}",
            "--prometheus-port", str(prom_port), "--trap-port", str(peers.free_port()),
            "--timeline-scale", "0.1", "--duration", "240"]
    log = work / "demo.out"
    started = time.time()
    with peers.child(args, log, dict(os.environ)) as proc:
        state_file = work / "demo" / "demo.json"
        _wait("the demo's start", state_file.exists, started + 90, proc, log)
        state = json.loads(state_file.read_text())
        agent, prom = state["agent"], state["prometheus"]
        token = tokens["engineer"]
        _call_when_ready(f"{agent}/api/v1/grounding/ep-room/measurements", token,
                         {"ohm": 3.2, "instrument": "UT522 #A1234", "weather": "晴"},
                         started + 90)
        # the SPD trip (15 s) opens a ticket; its 3 s response limit escalates it ...
        _wait("an escalation in Prometheus", lambda: _series(
            prom, "vigil_ticket_escalations_total") > 0, started + 120, proc, log)
        # ... then it is acknowledged and repaired through the API (the SLA histograms)
        ticket = _call(f"{agent}/api/v1/tickets?state=open", token)[0]
        for action, body in (("acknowledge", {"note": "到场"}),
                             ("diagnosis", {"diagnosis": "雷击致 SPD1 脱扣"}), ("repair/start", {}),
                             ("resolve", {"cause_category": "lightning_surge",
                                          "repair": "更换 SPD 模块"})):
            _call(f"{agent}/api/v1/tickets/{ticket['id']}/{action}", token, body)
        _wait("the SLA histograms and the measurement in Prometheus", lambda: _series(
            prom, "vigil_ticket_time_to_repair_seconds_count > 0") > 0 and _series(
            prom, "vigil_grounding_resistance_ohms") > 0, started + 150, proc, log)
        yield prom, started
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_every_panel_query_returns_series_from_the_demo(demo, name):
    prom, started = demo
    data = json.loads(render("en")[name])
    checked, empty = 0, []
    for panel, target in targets(data):
        ranged = target.get("range", False)
        found = [_series(prom, _substituted(target["expr"], site, device),
                         started if ranged else None) for site, device in CHOICES]
        if not any(found):
            empty.append(f"{panel['title']} [{target['refId']}]: {target['expr']}")
        for metric in set(re.findall(r"\b(vigil_[a-z0-9_]+)\b(?![(\w])", target["expr"])):
            if metric not in ABSENT_IN_DEMO and _series(prom, f"group({metric})") == 0:
                empty.append(f"{panel['title']} [{target['refId']}]: no series {metric}")
        checked += 1
    assert checked and not empty, "\n".join(empty)
