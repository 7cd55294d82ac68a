"""Fault injection (issue 9): the network misbehaving in ways a branch sees over the years, on
real peers. Marked `faults`: `pytest -m faults` runs them alone.

- A device replaced under the same address by another model: the poll that sees the new
  sysObjectID says so, the next one detects the new profile and reads it; nothing of the old
  model is exported for it after that.
- The PostgreSQL ticket store stopped and started again under a running agent while a fault
  fires: polling and grading go on, the store is reported down, the ticket opens once when
  the database is back.
- The disk under the SQLite store (and the rest of state_dir) full: the same, and the
  ticket already stored is still there when space is freed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from collectors.reading import PollResult
from collectors.snmp.collector import SnmpCollector, SnmpJob
from collectors.snmp.engine import SnmpAuth, Target, make_engine
from collectors.snmp.fetch import FetchLimits
from tests import peers

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.faults


def test_a_device_replaced_by_another_model_is_detected_again(tmp_path: Path, profiles
                                                              ) -> None:
    data = tmp_path / "data"
    data.mkdir()
    recordings = peers.recordings()
    shutil.copy(recordings / "deltaups.snmprec", data / "dev.snmprec")
    port = peers.free_port()

    async def polls(count: int) -> list[PollResult]:
        engine = make_engine("pysnmp")
        collector = SnmpCollector(engine, profiles)
        job = SnmpJob("dev", Target("127.0.0.1", port, SnmpAuth("2c", community="dev"), 1.0,
                                    1), None, FetchLimits(25, 32, 60, True), 20.0)
        out = []
        try:
            for _ in range(count):
                out.append(await collector.poll(job))
                if len(out) == 1:             # the UPS is swapped for a switch, same address
                    await asyncio.to_thread(swap)
        finally:
            await engine.close()
        return out

    sims: list = []

    def serve() -> None:
        sims.append(peers.snmpsim(data, tmp_path, [f"127.0.0.1:{port}"]))
        sims[-1].__enter__()

    def swap() -> None:
        sims[-1].__exit__(None, None, None)
        shutil.copy(recordings / "jetstream.snmprec", data / "dev.snmprec")
        shutil.rmtree(tmp_path / "snmpsim-cache", ignore_errors=True)
        serve()

    serve()
    try:
        ups, changed, switch = asyncio.run(polls(3))
    finally:
        sims[-1].__exit__(None, None, None)
    metrics = [{r.metric for r in result.readings} for result in (ups, changed, switch)]
    assert ups.up and "ups_on_battery" in metrics[0]
    assert any("sysObjectID changed" in p for p in changed.problems), changed.problems
    assert switch.up and switch.profile != ups.profile
    assert "interface_oper_status" in metrics[2] and "ups_on_battery" not in metrics[2]


def test_the_ticket_store_stopped_and_restarted_under_the_agent(tmp_path: Path) -> None:
    """PostgreSQL goes away while a UPS goes on battery: the agent keeps polling and grading,
    says the store is down (vigil_ticket_store_up 0), and when the database is back opens the
    one ticket by itself; nothing is lost or doubled."""
    from tests.test_daemon import Daemon
    from tests.test_rules_daemon import _ups_on_battery_at

    server = peers.Postgres(tmp_path)
    try:
        server.start()
        data = tmp_path / "sim"
        data.mkdir()
        (data / "ups-1.snmprec").write_text(
            _ups_on_battery_at(peers.recordings() / "deltaups.snmprec", time.time() + 8),
            encoding="latin-1")
        with peers.snmpsim(data, tmp_path) as sim_port:
            config = _agent(tmp_path, sim_port, server.url)
            daemon = Daemon(config)
            try:
                peers.wait_http(daemon.url + "/-/ready", timeout=60)
                daemon.wait_for(lambda: daemon.sample("vigil_ticket_store_up") == 1, 30,
                                "the store open")
                server.stop()                            # the database goes away
                fault = daemon.wait_for(lambda: _firing(daemon, "UpsOnBattery:ups-1"), 60,
                                        "UpsOnBattery firing with the store down")
                assert fault["level"] == 2
                daemon.wait_for(lambda: daemon.sample("vigil_ticket_store_up") == 0, 30,
                                "the store reported down")
                polls = daemon.sample("vigil_polls_total")
                daemon.wait_for(lambda: daemon.sample("vigil_polls_total") > polls, 20,
                                "polls going on")
                server.start()                           # ... and comes back, same port
                daemon.wait_for(lambda: daemon.sample("vigil_ticket_store_up") == 1, 60,
                                "the store back")
                tickets = daemon.wait_for(lambda: _tickets(daemon, config), 30,
                                          "the ticket opened after the outage")
                time.sleep(2)                            # a few more checks: still one
                tickets = _tickets(daemon, config)
                assert [t["fault_key"] for t in tickets] == ["UpsOnBattery:ups-1"]
                assert "Traceback" not in daemon.log.read_text()
            finally:
                daemon.stop()
    finally:
        server.remove()


def test_the_disk_under_the_sqlite_store_fills_up_and_is_freed(tmp_path: Path) -> None:
    """state_dir (the SQLite ticket store, faults.json) on a 4 MiB tmpfs in the agent's own
    mount namespace. ups-1 goes on battery: ticket stored. The disk is filled to the last
    byte; ups-2 goes on battery: the agent keeps polling and grading and says the store is
    down. Space freed: ups-2's ticket opens once, ups-1's is still there."""
    from tests.test_daemon import Daemon
    from tests.test_rules_daemon import _ups_on_battery_at

    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            peers.missing(f"{tool} (util-linux) is not installed")
    probe = subprocess.run(["unshare", "--mount", "--", "mount", "-t", "tmpfs", "-o", "size=1m",
                            "vigil-probe", str(tmp_path)], capture_output=True, text=True)
    if probe.returncode != 0:
        peers.missing(f"a tmpfs cannot be mounted in a mount namespace here "
                      f"({probe.stderr.strip()}); the test needs root or CAP_SYS_ADMIN")
    state = tmp_path / "state"
    state.mkdir()
    wrap = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount -t tmpfs -o size=4m vigil-disk-full "$0" && exec "$@"', str(state)]
    data = tmp_path / "sim"
    data.mkdir()
    recording = peers.recordings() / "deltaups.snmprec"
    (data / "ups-1.snmprec").write_text(_ups_on_battery_at(recording, time.time() - 60),
                                        encoding="latin-1")   # on battery from the start
    ups_2_fails = time.time() + 22                       # after the disk is full
    (data / "ups-2.snmprec").write_text(_ups_on_battery_at(recording, ups_2_fails),
                                        encoding="latin-1")
    with peers.snmpsim(data, tmp_path) as sim_port:
        config = _agent(tmp_path, sim_port, "sqlite+aiosqlite:///tickets.db", ("ups-1", "ups-2"))
        daemon = Daemon(config, wrap=wrap)

        def in_agent_namespace(script: str) -> subprocess.CompletedProcess:
            return subprocess.run(["nsenter", "--target", str(daemon.proc.pid), "--mount", "--",
                                   "sh", "-c", script], capture_output=True, text=True)

        try:
            peers.wait_http(daemon.url + "/-/ready", timeout=60)
            daemon.wait_for(lambda: [t["fault_key"] for t in _tickets(daemon, config)] ==
                            ["UpsOnBattery:ups-1"], 60, "ups-1's ticket")
            filled = in_agent_namespace(f"cat /dev/zero > {state}/filler; df -k {state}")
            assert "No space left" in filled.stderr, filled
            assert " 100% " in filled.stdout, filled.stdout
            assert time.time() < ups_2_fails - 5, "too slow: filled after ups-2 failed"
            daemon.wait_for(lambda: _firing(daemon, "UpsOnBattery:ups-2"), 60,
                            "UpsOnBattery:ups-2 firing on a full disk")
            daemon.wait_for(lambda: daemon.sample("vigil_ticket_store_up") == 0, 30,
                            "the store reported down")
            polls = daemon.sample("vigil_polls_total")
            daemon.wait_for(lambda: daemon.sample("vigil_polls_total") > polls, 20,
                            "polls going on")
            assert in_agent_namespace(f"rm {state}/filler").returncode == 0
            daemon.wait_for(lambda: daemon.sample("vigil_ticket_store_up") == 1, 60,
                            "the store back")
            daemon.wait_for(lambda: len(_tickets(daemon, config)) == 2, 30,
                            "ups-2's ticket after the disk was freed")
            time.sleep(2)                                # a few more checks: still two
            keys = sorted(t["fault_key"] for t in _tickets(daemon, config))
            assert keys == ["UpsOnBattery:ups-1", "UpsOnBattery:ups-2"]
            log = daemon.log.read_text()
            assert "Traceback" not in log, log[-3000:]
        finally:
            daemon.stop()


def _agent(work: Path, sim_port: int, db_url: str, devices: tuple[str, ...] = ("ups-1",)
           ) -> Path:
    from agent.auth import add_user

    (work / "credentials.yaml").write_text("credentials:\n" + "".join(
        f"  {d}:\n    version: 2c\n    community: {d}\n" for d in devices))
    (work / "credentials.yaml").chmod(0o600)
    (work / "inventory.yaml").write_text(
        "sites:\n  - {id: room, name: 机房}\ndevices:\n" + "".join(
            f"  - {{id: {d}, kind: ups, site: room, address: 127.0.0.1, port: {sim_port}, "
            f"credentials: {d}}}\n" for d in devices))
    (work / "viewer.token").write_text(add_user(work / "tokens.yaml", "view", "viewer"))
    port = peers.free_port(socket.SOCK_STREAM)
    (work / "agent.yaml").write_text(
        f"agent: {{id: fi}}\nlisten: 127.0.0.1:{port}\nstate_dir: state\n"
        f"schedule: {{default_interval: 2s}}\nsnmp: {{timeout: 500ms, retries: 1}}\n"
        f"rules: {{files: ['{peers.fast_rules(work)}'], interval: 1s}}\n"
        f"tickets: {{url: '{db_url}', escalation: '{ROOT}/config/escalation.yaml', "
        f"escalation_interval: 1s}}\n"
        "notifications:\n  channels:\n" + "".join(
            f"    - {{name: {c}, type: webhook, url: 'http://127.0.0.1:9/{c}'}}\n"
            for c in ("wecom-maintenance", "email-team-lead", "dingtalk-contractor",
                      "email-contractor-manager", "email-owner")))
    return work / "agent.yaml"


def _firing(daemon, key: str) -> dict | None:
    return next((f for f in _json(f"{daemon.url}/api/v1/faults")
                 if f["key"] == key and f["state"] == "firing"), None)


def _tickets(daemon, config: Path) -> list[dict]:
    return _json(f"{daemon.url}/api/v1/tickets", (config.parent / "viewer.token").read_text())


def _json(url: str, token: str | None = None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)
