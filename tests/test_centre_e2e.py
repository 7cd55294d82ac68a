"""Several branch agents, one centre, on loopback (issue 8): three `vigil run` agents on
127.0.0.2, .3 and .4, each with its own branch inventory, sharing one PostgreSQL ticket store,
scraped by one Prometheus running config/centre/prometheus.yml (targets written by `vigil
export prometheus-targets`, the centre's recording rules), posting to one Alertmanager running
config/centre/alertmanager.yml.

Branch 2's link to PostgreSQL goes through a TCP relay the test cuts and restores. With the link
cut, branch 2's access switch dies (its snmpsim stopped): the agent keeps polling and keeps the
fault; the centre's Prometheus shows the site's cameras offline through the recording rules;
Alertmanager gets the one root alert (the cameras are carried on it); once the link is back,
exactly one ticket is opened, and when the switch returns the ticket records the recovery once.
Any agent's API (and web UI) lists every branch's tickets.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.auth import add_user
from tests import peers
from tests.conftest import new_database
from tests.test_daemon import Daemon

ROOT = Path(__file__).resolve().parent.parent
VIGIL = [sys.executable, "-m", "agent.cli"]
CAMERAS = 3


class Link:
    """A TCP relay on 127.0.0.1 to `target`: cut() drops it (listener and every connection,
    as a broken WAN link would), restore() brings it back on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = peers.free_port(socket.SOCK_STREAM)
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        assert self.listener is not None
        try:   # wakes the accept() of the relay's thread: close() alone would not stop it
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.listener = None
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _get(url: str, token: str | None = None) -> object:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def _branch(work: Path, agent_id: str, address: str, site: tuple[str, str], devices: str,
            credentials: list[str], db_url: str, am: str, rules: str) -> Path:
    work.mkdir()
    (work / "credentials.yaml").write_text("credentials:\n" + "".join(
        f"  {c}:\n    version: 2c\n    community: {c}\n" for c in credentials))
    (work / "credentials.yaml").chmod(0o600)
    (work / "inventory.yaml").write_text(
        f"sites:\n  - {{id: {site[0]}, name: {site[1]}}}\ndevices:\n{devices}")
    port = peers.free_port(socket.SOCK_STREAM)
    (work / "agent.yaml").write_text(
        f"agent: {{id: {agent_id}}}\nlisten: {address}:{port}\nstate_dir: state\n"
        f"schedule: {{default_interval: 2s}}\nsnmp: {{timeout: 500ms, retries: 1}}\n"
        f"rules: {{files: ['{rules}'], interval: 1s}}\n"
        f"alertmanager: {{urls: ['{am}'], resend_interval: 5s}}\n"
        f"tickets: {{url: '{db_url}', escalation: '{ROOT}/config/escalation.yaml', "
        f"escalation_interval: 1s}}\n"
        f"notifications:\n  channels:\n" + "".join(
            f"    - {{name: {c}, type: webhook, url: 'http://127.0.0.1:9/{c}'}}\n"
            for c in ("wecom-maintenance", "email-team-lead", "dingtalk-contractor",
                      "email-contractor-manager", "email-owner")))
    return work / "agent.yaml"


@pytest.fixture
def centre(tmp_path: Path, postgres_server: str):
    recordings = peers.recordings()
    power, access = tmp_path / "power", tmp_path / "access"
    for d in (power, access, tmp_path / "p", tmp_path / "a", tmp_path / "am"):
        d.mkdir()
    for name in ("ups-dh", "ups-ny"):
        shutil.copy(recordings / "deltaups.snmprec", power / f"{name}.snmprec")
    shutil.copy(recordings / "jetstream.snmprec", access / "sw-xs.snmprec")
    for i in range(1, CAMERAS + 1):
        shutil.copy(recordings / "hikvision-cam.snmprec", access / f"cam-xs-{i}.snmprec")
    db_url = new_database(postgres_server)
    pg_host, pg_port = re.search(r"@([\d.]+):(\d+)/", db_url).groups()
    link = Link((pg_host, int(pg_port)))
    rules = peers.fast_rules(tmp_path)   # the centre's plumbing, not the rules' timing
    access_port = peers.free_port()
    ctx: dict = {"link": link, "access": (access, tmp_path / "a", access_port)}
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: link.listener is not None and link.cut())
        am = ctx["am"] = stack.enter_context(peers.alertmanager(tmp_path / "am"))
        power_port = stack.enter_context(peers.snmpsim(power, tmp_path / "p"))
        ctx["sim"] = peers.snmpsim(access, tmp_path / "a", [f"127.0.0.1:{access_port}"])
        ctx["sim"].__enter__()
        stack.callback(lambda: ctx["sim"] is not None and ctx["sim"].__exit__(None, None, None))
        def ups(name: str, site: str) -> str:
            return (f"  - {{id: {name}, kind: ups, site: {site}, address: 127.0.0.1, "
                    f"port: {power_port}, credentials: {name}}}\n")
        cams = "".join(
            f"  - {{id: cam-xs-{i}, kind: fixed_camera, site: xs, address: 127.0.0.1, "
            f"port: {access_port}, credentials: cam-xs-{i}, uplink: {{switch: sw-xs, "
            f"port: {i}}}}}\n" for i in range(1, CAMERAS + 1))
        branch2_url = db_url.replace(f"{pg_host}:{pg_port}", f"127.0.0.1:{link.port}")
        configs = [
            _branch(tmp_path / "b1", "branch-1", "127.0.0.2", ("dh", "东湖社区"),
                    ups("ups-dh", "dh"), ["ups-dh"], db_url, am, rules),
            _branch(tmp_path / "b2", "branch-2", "127.0.0.3", ("xs", "西山社区"),
                    f"  - {{id: sw-xs, kind: switch, site: xs, address: 127.0.0.1, port: "
                    f"{access_port}, credentials: sw-xs}}\n" + cams,
                    ["sw-xs", *(f"cam-xs-{i}" for i in range(1, CAMERAS + 1))],
                    branch2_url, am, rules),
            _branch(tmp_path / "b3", "branch-3", "127.0.0.4", ("ny", "南苑社区"),
                    ups("ups-ny", "ny"), ["ups-ny"], db_url, am, rules)]
        # the centre's staff read every branch's tickets from any agent, as viewers
        ctx["tokens"] = [add_user(c.parent / "tokens.yaml", "centre.view", "viewer")
                         for c in configs]
        ctx["daemons"] = []
        for config in configs:
            daemon = Daemon(config)
            stack.callback(daemon.stop)
            ctx["daemons"].append(daemon)
        for daemon in ctx["daemons"]:
            peers.wait_http(daemon.url + "/-/ready", timeout=60)
        ctx["prom"] = stack.enter_context(_centre_prometheus(tmp_path, configs, am))
        yield ctx


@contextlib.contextmanager
def _centre_prometheus(work: Path, configs: list[Path], am: str) -> Iterator[str]:
    """config/centre as shipped, at a 1-s rhythm, its targets from the branches' configs."""
    centre = work / "centre"
    shutil.copytree(ROOT / "config" / "centre", centre)
    (centre / "targets" / "demo.json").unlink()
    out = subprocess.run([*VIGIL, "export", "prometheus-targets", *map(str, configs), "-o",
                          str(centre / "targets" / "branches.json")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    port = peers.free_port(socket.SOCK_STREAM)
    text = (centre / "prometheus.yml").read_text()
    text = text.replace("scrape_interval: 30s", "scrape_interval: 1s") \
        .replace("scrape_timeout: 20s", "scrape_timeout: 1s") \
        .replace("evaluation_interval: 30s", "evaluation_interval: 1s") \
        .replace('"127.0.0.1:9093"', f'"{am.removeprefix("http://")}"') \
        .replace('"127.0.0.1:9090"', f'"127.0.0.1:{port}"')
    (centre / "prometheus.yml").write_text(text)
    binary = peers.program("prometheus")
    args = [binary, f"--config.file={centre / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    url = f"http://127.0.0.1:{port}"
    with peers.child(args, work / "prometheus.log"):
        peers.wait_http(f"{url}/-/ready", timeout=60)
        yield url


def _value(prom: str, expr: str) -> float | None:
    result = peers.prometheus_query(prom, expr)
    return float(result[0]["value"][1]) if result else None


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_switch_failure_in_branch_2_with_its_store_link_cut(centre: dict) -> None:
    b1, b2, b3 = centre["daemons"]
    prom, am, link = centre["prom"], centre["am"], centre["link"]
    token = centre["tokens"][0]
    _wait(lambda: _value(prom, 'count(up{job="vigil"} == 1)') == 3, 60,
          "the centre scraping three branches")
    _wait(lambda: _value(prom, 'site:vigil_cameras_online:count{site="xs"}') == CAMERAS, 60,
          "branch 2's cameras online in the recording rules")
    assert _value(prom, 'site:vigil_camera_online:ratio{site="xs"}') == 1
    assert {r["metric"]["branch"] for r in peers.prometheus_query(
        prom, 'count by (branch) (vigil_device_up)')} == {"branch-1", "branch-2", "branch-3"}

    link.cut()                                           # branch 2 loses the centre's store
    centre["sim"].__exit__(None, None, None)             # ... and its access switch dies
    centre["sim"] = None
    root = "SwitchUnreachable:sw-xs"
    fault = b2.wait_for(lambda: next((f for f in _get(f"{b2.url}/api/v1/faults")
                                      if f["key"] == root and f["state"] == "firing"), None),
                        timeout=60, what="the switch's root fault in branch 2")
    assert fault["level"] == 2 and fault["caused"] == CAMERAS
    # the centre sees it through the recording rules, and branch 2 is still scraped
    _wait(lambda: _value(prom, 'site:vigil_cameras_online:count{site="xs"}') == 0, 30,
          "the site's cameras offline at the centre")
    _wait(lambda: _value(prom, 'site_level:vigil_faults_active:count{site="xs",level="2"}')
          == 1, 30, "one level-2 fault of the site at the centre")
    assert _value(prom, 'up{job="vigil",branch="branch-2"}') == 1
    # Alertmanager: the root alert only, its cameras carried on it
    def unreachable() -> list[dict]:   # (the cameras' firmware is not approved: level 4)
        return [a for a in _get(f"{am}/api/v2/alerts") if a["labels"].get("site") == "xs"
                and a["labels"]["alertname"].endswith("Unreachable")]

    alerts = _wait(unreachable, 30, "the root alert in Alertmanager")
    assert [a["labels"]["alertname"] for a in alerts] == ["SwitchUnreachable"]
    assert alerts[0]["labels"]["switch"] == "sw-xs" and alerts[0]["labels"]["agent"] == \
        "branch-2"
    # no ticket while the store is out of reach; the fault waits in branch 2
    time.sleep(3)
    tickets = f"{b1.url}/api/v1/tickets?agent=branch-2&rule=SwitchUnreachable"
    assert _get(tickets, token) == []
    assert b2.sample("vigil_ticket_store_up") == 0

    link.restore()                                       # the link returns
    opened = _wait(lambda: _get(tickets, token), 60, "branch 2's ticket in the shared store")
    assert [(t["fault_key"], t["level"], t["agent_id"]) for t in opened] == \
        [(root, 2, "branch-2")]
    # the switch returns: the fault resolves, recorded once on the one ticket
    data, work, port = centre["access"]
    centre["sim"] = peers.snmpsim(data, work, [f"127.0.0.1:{port}"])
    centre["sim"].__enter__()
    ticket_id = opened[0]["id"]

    def recovered() -> dict | None:
        shown = _get(f"{b1.url}/api/v1/tickets/{ticket_id}", token)
        return shown if any(e["kind"] == "fault_resolved" for e in shown["timeline"]) \
            else None

    shown = _wait(recovered, 60, "the recovery on the ticket")
    time.sleep(3)                                        # another few checks: nothing again
    shown = _get(f"{b1.url}/api/v1/tickets/{ticket_id}", token)
    kinds = [e["kind"] for e in shown["timeline"]]
    assert kinds.count("opened") == 1 and kinds.count("fault_resolved") == 1, kinds
    every = [t["fault_key"] for t in _get(f"{b3.url}/api/v1/tickets?limit=1000",
                                          centre["tokens"][2])]
    assert every.count(root) == 1                        # one ticket in the whole district
    assert not any(k.startswith(("CameraUnreachable", "SwitchUnreachable:sw-dh"))
                   for k in every)
    page = _ui_tickets(b1.url, token)                    # ... and in branch 1's web UI
    assert f"#{ticket_id}" in page and "分局 branch-2" in page


def _ui_tickets(base: str, token: str) -> str:
    """The web UI's ticket list, logged in with `token` as a browser would (cookies)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base}/ui/login", timeout=10) as response:
        csrf = re.search(r'name="login_csrf" value="([^"]+)"', response.read().decode())[1]
    form = urllib.parse.urlencode({"token": token, "login_csrf": csrf, "next": "/ui/tickets"})
    with opener.open(f"{base}/ui/login", data=form.encode(), timeout=10) as response:
        return response.read().decode()

