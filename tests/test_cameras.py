"""Cameras end to end through the daemon: ONVIF, RTSP picture checks, reachability, events.

Real peers on loopback: the ONVIF camera simulator (its own process), the GStreamer RTSP
server (its own process), net-snmp's snmptrap, and `vigil run` itself. What a user sees is
read from /metrics and /evidence, as Prometheus and the web UI would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests import peers
from tests.rtsp_peer import rtsp_server
from tests.test_daemon import Daemon

USER, PASSWORD = "admin", "cam-pass-1"


def tcp_port() -> int:
    return peers.free_port(socket.SOCK_STREAM)


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    """Three cameras (good, frozen stream, clock 3 h off with a PTZ error), a UPS sending
    traps, served by real simulators; the agent running against them."""
    work = tmp_path_factory.mktemp("cameras")
    with rtsp_server(work, [{"port": 0, "user": USER, "password": PASSWORD,
                             "mounts": [{"path": "/good", "kind": "good"},
                                        {"path": "/frozen", "kind": "frozen"}]}],
                     {"width": 320, "height": 240, "fps": 10}) as endpoints:
        rtsp = f"rtsp://127.0.0.1:{endpoints[0]['port']}"
        ports = {name: tcp_port() for name in ("cam-good", "cam-frozen", "cam-clock")}
        control = tcp_port()
        cameras = [
            {"name": "cam-good", "port": ports["cam-good"], "vendor": "hikvision",
             "stream_uri": f"{rtsp}/good"},
            {"name": "cam-frozen", "port": ports["cam-frozen"], "vendor": "dahua",
             "stream_uri": f"{rtsp}/frozen"},
            {"name": "cam-clock", "port": ports["cam-clock"], "vendor": "axis", "ptz": True,
             "ptz_error": "motor stalled", "clock_offset": 10800, "ntp": False,
             "stream_uri": f"{rtsp}/good"},
        ]
        (work / "cameras.json").write_text(json.dumps(
            {"defaults": {"username": USER, "password": PASSWORD}, "cameras": cameras}))
        args = [sys.executable, "-m", "agent.demo.onvif", "--config", str(work / "cameras.json"),
                "--control", f"127.0.0.1:{control}"]
        with peers.child(args, work / "onvif.log"):
            peers.wait_http(f"http://127.0.0.1:{control}/cameras")
            yield work, ports, control


@pytest.fixture(scope="module")
def agent(district):
    work, ports, control = district
    trap_port = peers.free_port()
    (work / "credentials.yaml").write_text(
        f"credentials:\n  cams:\n    username: {USER}\n    password: {PASSWORD}\n"
        f"  traps:\n    version: 2c\n    community: public\n")
    (work / "credentials.yaml").chmod(0o600)
    cams = "".join(
        f"  - {{id: {name}, kind: fixed_camera, site: lab, address: 127.0.0.1, "
        f"onvif: {{port: {port}, ptz: {str(name == 'cam-clock').lower()}}}, "
        f"reachability: {{tcp_ports: [{port}]}}}}\n"
        for name, port in ports.items())
    (work / "inventory.yaml").write_text(
        "sites:\n  - {id: lab}\n"
        "defaults:\n  kinds:\n    fixed_camera:\n      snmp: false\n"
        "      onvif: {credentials: cams}\n      rtsp: {}\n"
        "devices:\n"
        "  - {id: ups-t, kind: ups, site: lab, address: 127.0.0.1, snmp: false}\n" + cams)
    listen = f"127.0.0.1:{tcp_port()}"
    (work / "agent.yaml").write_text(
        f"agent: {{id: cams}}\nlisten: {listen}\nstate_dir: {work / 'state'}\n"
        f"onvif: {{interval: 2s, timeout: 3s}}\n"
        f"rtsp: {{cameras_per_minute: 60, min_interval: 4s, decode_seconds: 2.5s, "
        f"timeout: 5s}}\n"
        f"reachability: {{interval: 2s}}\n"
        f"traps: {{enabled: true, listen: '127.0.0.1:{trap_port}', credentials: [traps]}}\n")
    daemon = Daemon(work / "agent.yaml")
    try:
        peers.wait_http(daemon.url + "/-/ready")
        daemon.wait_for(lambda: daemon.sample("vigil_video_analysed_frames",
                                              device="cam-frozen"), timeout=60,
                        what="the frozen camera's stream to be checked")
        yield daemon, trap_port, control
    finally:
        daemon.stop()


def test_onvif_identity_clock_and_ptz(agent):
    daemon = agent[0]
    offset = daemon.sample("vigil_onvif_clock_offset_seconds", device="cam-clock")
    assert offset is not None and abs(offset - 10800) < 5
    assert abs(daemon.sample("vigil_onvif_clock_offset_seconds", device="cam-good")) < 5
    assert daemon.sample("vigil_onvif_clock_ntp", device="cam-clock") == 0
    assert daemon.sample("vigil_onvif_ptz_error", device="cam-clock") == 1
    info = [line for line in daemon.metrics().splitlines()
            if line.startswith("vigil_device_info{") and 'device="cam-good"' in line]
    assert len(info) == 1 and 'vendor="Hikvision"' in info[0] and 'model="' in info[0]


def test_stream_checks_find_the_frozen_picture_only(agent):
    daemon = agent[0]
    daemon.wait_for(lambda: daemon.sample("vigil_video_analysed_frames", device="cam-good"),
                    timeout=30, what="the good camera's stream")
    assert daemon.sample("vigil_video_frozen", device="cam-frozen") == 1
    assert daemon.sample("vigil_video_frozen", device="cam-good") == 0
    assert daemon.sample("vigil_collector_up", device="cam-good", collector="rtsp") == 1
    assert daemon.sample("vigil_rtsp_frames_per_second", device="cam-good") > 5


def test_evidence_of_the_frozen_picture_is_kept_and_served(agent):
    daemon = agent[0]
    with urllib.request.urlopen(daemon.url + "/evidence/cam-frozen", timeout=5) as response:
        files = json.load(response)
    assert files and files[-1]["name"].endswith("-rtsp-frozen.jpg")
    with urllib.request.urlopen(daemon.url + files[-1]["url"], timeout=5) as response:
        assert response.read(3) == b"\xff\xd8\xff"  # a JPEG
    stored = Path(daemon.config.parent / "state" / "evidence" / "cam-frozen")
    assert any(p.name == files[-1]["name"] for p in stored.iterdir())
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(daemon.url + "/evidence/cam-frozen/..%2fx.jpg", timeout=5)


def test_reachability_tells_host_from_service(agent):
    daemon = agent[0]
    assert daemon.sample("vigil_collector_up", device="cam-good", collector="reach") == 1
    assert daemon.sample("vigil_reach_tcp_up", device="cam-good") == 1


def test_snmp_trap_becomes_an_event_at_once(agent):
    daemon, trap_port, _ = agent
    sent = time.time()
    run = subprocess.run([peers.program("snmptrap"), "-m", "", "-v2c", "-c", "public",
                          f"127.0.0.1:{trap_port}", "", "1.3.6.1.2.1.33.2.0.1",
                          "1.3.6.1.2.1.33.1.2.2.0", "i", "5"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    daemon.wait_for(lambda: daemon.sample("vigil_event", device="ups-t",
                                          event="ups_on_battery") == 1,
                    timeout=5, what="the on-battery trap")
    assert time.time() - sent < 3
    assert daemon.sample("vigil_events_total", device="ups-t", event="ups_on_battery") >= 1


def test_onvif_event_becomes_an_event(agent):
    daemon, _, control = agent
    request = urllib.request.Request(
        f"http://127.0.0.1:{control}/cameras/cam-good/event",
        data=json.dumps({"kind": "tampering", "state": True}).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).read()
    daemon.wait_for(lambda: daemon.sample("vigil_event", device="cam-good",
                                          event="tampering") == 1,
                    timeout=15, what="the tampering event")


def test_promtool_accepts_the_camera_metrics(agent):
    check = subprocess.run([peers.program("promtool"), "check", "metrics"],
                           input=agent[0].metrics(), text=True, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_vigil_poll_shows_every_collector(agent):
    daemon = agent[0]
    env = {**os.environ}
    run = subprocess.run([sys.executable, "-m", "agent.cli", "poll", "-c", str(daemon.config),
                          "cam-clock", "--evidence-dir", str(daemon.config.parent / "cli-ev")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert "[onvif] up: yes" in run.stdout and "[rtsp] up: yes" in run.stdout, \
        run.stdout + run.stderr
    assert "[reach] up: yes" in run.stdout
    assert "onvif_clock_offset_seconds" in run.stdout
