"""The daemon as a user runs it: `vigil run`, scraped by a real Prometheus, reloaded, stopped.

Every device of ../shared/recordings/snmp is served by snmpsim and polled by the real agent.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests import peers

VIGIL = [sys.executable, "-m", "agent.cli"]
KINDS = {"deltaups": "ups", "eaton-mgeups": "ups", "netagent2": "ups", "huaweiups": "ups",
         "liebert": "ups", "sinetica": "ups", "hikvision-cam": "fixed_camera",
         "axiscam": "ptz_camera", "vivotek": "fixed_camera", "hikvision-nvr": "nvr",
         "dahua-nvr": "nvr", "XMG1915-10EP": "switch", "jetstream": "switch",
         "comware_1": "switch", "advantech_eki-7712g-4fp": "switch", "arista_eos": "switch",
         "hwg-poseidon": "env_monitor", "apc_netbotz": "env_monitor",
         "akcp_sp2plus": "env_monitor"}


def device_id(recording: str) -> str:
    return recording.lower().replace("_", "-")


def write_config(work: Path, sim_port: int, recordings: list[str], interval: str = "2s",
                 extra_devices: str = "") -> Path:
    creds = "credentials:\n" + "".join(
        f"  {r}:\n    version: 2c\n    community: {r}\n" for r in recordings)
    (work / "credentials.yaml").write_text(creds)
    (work / "credentials.yaml").chmod(0o600)
    devices = "".join(
        f"  - {{id: {device_id(r)}, kind: {KINDS[r]}, site: lab, address: 127.0.0.1, "
        f"port: {sim_port}, credentials: {r}}}\n" for r in recordings)
    (work / "inventory.yaml").write_text("sites:\n  - {id: lab, name: 实验室}\ndevices:\n"
                                         + devices + extra_devices)
    port = peers.free_port(socket.SOCK_STREAM)
    (work / "agent.yaml").write_text(
        f"agent: {{id: test}}\nlisten: 127.0.0.1:{port}\nstate_dir: state\n"
        f"schedule: {{default_interval: {interval}}}\nsnmp: {{timeout: 1s, retries: 1}}\n")
    return work / "agent.yaml"


class Daemon:
    def __init__(self, config: Path, env: dict[str, str] | None = None,
                 wrap: list[str] | None = None):
        """`wrap`: a command the agent is run under (it must exec it, keeping the PID)."""
        self.config = config
        text = config.read_text()
        self.url = "http://" + re.search(r"listen: (\S+)", text).group(1)
        self.log = config.parent / "vigil.log"
        self.out = open(self.log, "w")  # noqa: SIM115 - open for the daemon's whole life
        self.proc = subprocess.Popen([*(wrap or []), *VIGIL, "run", "-c", str(config)],
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})},
                                     cwd=Path(__file__).resolve().parent.parent)

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as response:
            return response.read().decode()

    def sample(self, name: str, **labels: str) -> float | None:
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith((name + "{", name + " ")):
                got = line[len(name):].split(" ")[0]
                if all(f'{k}="{v}"' in got for k, v in labels.items()) or not want:
                    return float(line.rsplit(" ", 1)[1])
        return None

    def wait_for(self, predicate, timeout: float = 30, what: str = "condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"vigil exited {self.proc.returncode}: "
                                     + self.log.read_text()[-2000:])
            try:
                result = predicate()
            except OSError:
                result = None
            if result:
                return result
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; log:\n"
                             + self.log.read_text()[-2000:])

    def stop(self) -> int:
        peers.stop(self.proc)
        self.out.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def all_recordings_daemon(recordings_sim, tmp_path_factory):
    work = tmp_path_factory.mktemp("daemon")
    recordings = sorted(p.stem for p in peers.recordings().glob("*.snmprec"))
    daemon = Daemon(write_config(work, recordings_sim, recordings, interval="4s"))
    try:
        peers.wait_http(daemon.url + "/-/ready")
        daemon.wait_for(lambda: daemon.metrics().count("\nvigil_device_up{") == len(recordings),
                        what="every device polled once")
        yield daemon, recordings
    finally:
        daemon.stop()


def test_every_recording_is_polled_and_exported(all_recordings_daemon):
    daemon, recordings = all_recordings_daemon
    for recording in recordings:
        up = daemon.sample("vigil_device_up", device=device_id(recording))
        assert up == 1, f"{recording} is down: " + str(
            [line for line in daemon.metrics().splitlines()
             if "down_reason" in line and device_id(recording) in line])
    assert daemon.sample("vigil_ups_battery_runtime_seconds", device="deltaups") == 1320


def test_prometheus_scrapes_the_agent(all_recordings_daemon, tmp_path):
    daemon, recordings = all_recordings_daemon
    with peers.prometheus(tmp_path, [daemon.url.removeprefix("http://")]) as url:
        def scraped():
            query = 'vigil_ups_battery_runtime_seconds{device="deltaups"}'
            return peers.prometheus_query(url, query)
        result = daemon.wait_for(scraped, timeout=30, what="Prometheus to scrape the agent")
        assert float(result[0]["value"][1]) == 1320
        assert result[0]["metric"]["site"] == "lab" and result[0]["metric"]["kind"] == "ups"
        up = peers.prometheus_query(url, "count(vigil_device_up == 1)")
        assert int(float(up[0]["value"][1])) == len(recordings)
        charge = peers.prometheus_query(url, 'vigil_ups_battery_charge_ratio{device="deltaups"}')
        assert float(charge[0]["value"][1]) == 1.0


def test_promtool_accepts_the_metrics(all_recordings_daemon):
    daemon, _ = all_recordings_daemon
    promtool = peers.program("promtool")
    check = subprocess.run([promtool, "check", "metrics"], input=daemon.metrics(), text=True,
                           capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_health_and_readiness(all_recordings_daemon):
    daemon, _ = all_recordings_daemon
    for path in ("/-/healthy", "/-/ready"):
        with urllib.request.urlopen(daemon.url + path, timeout=5) as response:
            assert response.status == 200


def test_agent_metrics_present(all_recordings_daemon):
    text = all_recordings_daemon[0].metrics()
    for name in ("vigil_polls_total", "vigil_poll_lag_seconds_bucket", "vigil_polls_in_flight",
                 "vigil_memory_trimmed_bytes_total",
                 "vigil_config_last_reload_successful 1.0", "vigil_agent_info",
                 "vigil_device_poll_duration_seconds", "process_resident_memory_bytes"):
        assert name in text, name
    assert "_created" not in text


@pytest.fixture
def small_daemon(recordings_sim, tmp_path):
    config = write_config(tmp_path, recordings_sim, ["deltaups", "jetstream"], interval="1s")
    daemon = Daemon(config)
    peers.wait_http(daemon.url + "/-/ready")
    daemon.wait_for(lambda: daemon.sample("vigil_device_up", device="jetstream") == 1,
                    what="first polls")
    yield daemon
    daemon.stop()


def test_sighup_adopts_a_valid_config_without_losing_state(small_daemon, recordings_sim):
    daemon = small_daemon
    before = daemon.wait_for(lambda: daemon.sample(
        "vigil_device_last_success_timestamp_seconds", device="deltaups", collector="snmp"),
        what="a first good poll of deltaups")
    write_config(daemon.config.parent, recordings_sim, ["deltaups", "hwg-poseidon"],
                 interval="1s")
    # keep the listen port: write_config picked a new one
    text = daemon.config.read_text()
    daemon.config.write_text(re.sub(r"listen: \S+", "listen: " + daemon.url[7:], text))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for(lambda: daemon.sample("vigil_device_up", device="hwg-poseidon") == 1,
                    what="the added device")
    assert daemon.sample("vigil_device_up", device="jetstream") is None  # removed
    after = daemon.sample("vigil_device_last_success_timestamp_seconds", device="deltaups",
                          collector="snmp")
    assert after is not None and after >= before  # kept, not reset
    assert daemon.sample("vigil_config_last_reload_successful") == 1


def test_sighup_refuses_an_invalid_config_and_keeps_polling(small_daemon):
    daemon = small_daemon
    inventory = daemon.config.parent / "inventory.yaml"
    inventory.write_text(inventory.read_text().replace("kind: switch", "kind: swtich"))
    polls = daemon.sample("vigil_polls_total", kind="switch", collector="snmp")
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for(lambda: daemon.sample("vigil_config_last_reload_successful") == 0,
                    what="the failed reload")
    log = daemon.log.read_text()
    assert "inventory.yaml:5 devices[1].kind: 'swtich' is not allowed" in log
    assert "the running configuration stays in force" in log
    daemon.wait_for(lambda: daemon.sample("vigil_polls_total", kind="switch",
                                          collector="snmp") > polls,
                    what="polling to go on")
    assert daemon.proc.poll() is None


def test_sigterm_stops_within_seconds(small_daemon):
    started = time.time()
    small_daemon.proc.send_signal(signal.SIGTERM)
    assert small_daemon.proc.wait(10) == 0
    assert time.time() - started < 5


def test_readiness_is_notified_to_systemd(recordings_sim, tmp_path):
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(20)
    daemon = Daemon(write_config(tmp_path, recordings_sim, ["deltaups"]),
                    env={"NOTIFY_SOCKET": str(notify)})
    try:
        message = sock.recv(4096).decode()
        assert message.startswith("READY=1") and "polling 1 devices" in message
        daemon.proc.send_signal(signal.SIGTERM)
        assert sock.recv(4096).decode() == "STOPPING=1"
        assert daemon.proc.wait(10) == 0
    finally:
        daemon.stop()
        sock.close()


def test_refuses_to_start_on_a_bad_config(tmp_path, recordings_sim):
    config = write_config(tmp_path, recordings_sim, ["deltaups"])
    (tmp_path / "inventory.yaml").write_text("devices:\n  - {id: x, kind: ups}\n")
    run = subprocess.run([*VIGIL, "run", "-c", str(config)], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 2
    assert "inventory.yaml:2 devices[0].site: required key is missing" in run.stderr
    assert "not starting" in run.stderr


def test_check_command(tmp_path, recordings_sim):
    config = write_config(tmp_path, recordings_sim, ["deltaups", "jetstream"])
    ok = subprocess.run([*VIGIL, "check", "-c", str(config)], capture_output=True, text=True)
    assert ok.returncode == 0 and "2 devices in 1 sites" in ok.stdout
    (tmp_path / "inventory.yaml").write_text(
        (tmp_path / "inventory.yaml").read_text().replace("address: 127.0.0.1", "address: 10.0.0",
                                                          1))
    bad = subprocess.run([*VIGIL, "check", "-c", str(config)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "inventory.yaml:4 devices[0].address: '10.0.0' is not a valid IP address" in bad.stderr


def test_poll_command_prints_a_table(tmp_path, recordings_sim):
    config = write_config(tmp_path, recordings_sim, ["deltaups"])
    run = subprocess.run([*VIGIL, "poll", "-c", str(config), "deltaups"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "up: yes" in run.stdout
    assert re.search(r"ups_battery_runtime_seconds\s+-\s+1320", run.stdout)
    assert re.search(r"ups_battery_status\s+-\s+2 \(normal\)", run.stdout)
    missing = subprocess.run([*VIGIL, "poll", "-c", str(config), "nope"], capture_output=True,
                             text=True)
    assert missing.returncode == 2 and "no device 'nope'" in missing.stderr


@pytest.mark.faults
def test_sigterm_during_polls_logs_no_traceback(recordings_sim, tmp_path):
    from tests.test_scheduler import dead_devices, silent_ports

    sockets = silent_ports(4)  # their polls are in flight (waiting) when SIGTERM comes
    config = write_config(tmp_path, recordings_sim, ["deltaups"], interval="10s",
                          extra_devices=dead_devices(sockets))
    daemon = Daemon(config)
    try:
        peers.wait_http(daemon.url + "/-/ready")
        daemon.wait_for(lambda: daemon.sample("vigil_polls_in_flight") >= 1, what="polls")
        started = time.time()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(10) == 0
        assert time.time() - started < 5
    finally:
        daemon.stop()
        for sock in sockets:
            sock.close()
    log = daemon.log.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_tracing_writes_a_memory_snapshot_on_sigusr2(recordings_sim, tmp_path):
    """VIGIL_TRACEMALLOC=1 (the soak's --tracemalloc): each SIGUSR2 writes a snapshot of the
    agent's live allocations to the state directory, one tracemalloc reads and that names
    the agent's own source lines; the agent goes on polling."""
    import tracemalloc

    daemon = Daemon(write_config(tmp_path, recordings_sim, ["deltaups"], interval="1s"),
                    env={"VIGIL_TRACEMALLOC": "1"})
    try:
        peers.wait_http(daemon.url + "/-/ready")
        daemon.wait_for(lambda: daemon.sample("vigil_device_up", device="deltaups") == 1,
                        what="a first poll")
        daemon.proc.send_signal(signal.SIGUSR2)
        [path] = daemon.wait_for(lambda: list(tmp_path.glob("state/memory-*.tracemalloc")),
                                 what="the snapshot")
        snapshot = tracemalloc.Snapshot.load(str(path))
        files = {stat.traceback[0].filename for stat in snapshot.statistics("filename")}
        assert any(f.endswith("agent/state.py") for f in files), sorted(files)[:20]
        polls = daemon.sample("vigil_polls_total", collector="snmp")
        daemon.wait_for(lambda: daemon.sample("vigil_polls_total", collector="snmp") > polls,
                        what="polling to go on")
        assert "tracing memory allocations" in daemon.log.read_text()
    finally:
        assert daemon.stop() == 0


def test_a_bad_tracing_setting_is_said_and_ignored(recordings_sim, tmp_path):
    daemon = Daemon(write_config(tmp_path, recordings_sim, ["deltaups"]),
                    env={"VIGIL_TRACEMALLOC": "yes"})
    try:
        peers.wait_http(daemon.url + "/-/ready")
        assert "VIGIL_TRACEMALLOC='yes': a number of frames (1 or more) expected; " \
               "not tracing" in daemon.log.read_text()
    finally:
        assert daemon.stop() == 0
