"""The rules engine (rules/engine.py) on a synthetic district: CPU per evaluation cycle, a
fault storm behind a dead core switch, recovery, memory. Run: `bench/run --suite rules`
(about 10 minutes with 10,000 devices; shorter: `--devices 2000`).

The district (--devices, --sites): two core switches in a hub site, each the uplink of half
the sites; per site one UPS, one SPD monitor, one environment monitor and enough 48-port
access switches (44 camera ports with PoE, ports 45-47 for the UPS and monitors, port 48 the
uplink to its core, all powered by the site's UPS) for the rest: cameras, every 5th a PTZ
camera powered by the UPS, the others by their switch port. Each poll gives new PollResult
objects with the readings each collector produces (snmp: IF-MIB per port with counters that
grow, POWER-ETHERNET, UPS-MIB, SPD and sensor probes; onvif: clock, identity, services,
profiles, PTZ; rtsp: stream, decode and the picture diagnosis; reach: ICMP and TCP), gauges
with fresh noise, and a few per cent of devices faulty (clock drift, dark or frozen picture,
packet loss, a dead camera, errors on a port, a UPS on battery, a hot room...).

Rules: the shipped rule files (config/rules/*.yaml, whatever is there at run time) or --rules
GLOB; `--rule-set reference` uses instead a reference set written here (the shape of a full
CCTV rule set: switch/port/PoE roots with topology cuts, UPS, SPD, environment, camera and
picture rules, a site aggregate, an inhibition), `both` adds it to the shipped files (rules
whose names the shipped files already use are left out).

Cycles (one per `rules.interval`, the engine's own CPU: CycleStats.seconds = process CPU of
evaluate(); wall apart, and the part of it spent in garbage collections; medians after
warm-up cycles):
  full     every device has new poll results (the worst case: all polls at once)
  steady   no new results since the last cycle, only time passes
  typical  1/6 of the devices have new results (60 s polls, 10 s cycle)
  storm    the first core switch and everything behind it (about half the district) down in
           one cycle, as the polls see it (up=0, reason timeout, no readings); then polls on
           their 60-s schedule, cycles every interval across the longest `for:` plus a
           poll interval: when does the root fault (a rule with `topology.cuts` selecting
           the core switch) fire with every new fault caused by it, and was a cut-off
           device's fault ever firing unsuppressed (it must not be)?
  recovery the switch and every device behind it answer again: cycles until every fault of
           the storm is resolved
Baseline (same run, same state): a plain Python loop that reads the readings of each device
with new results into a dict and compares one threshold per (rule, series) the engine
evaluates: the least any engine must do. Ratios engine/baseline. Memory: peak RSS of the
process (VmHWM) with RSS after each build step, and the engine's own size (tracemalloc over
a fresh engine's sync and two cycles: what is still held by memory allocated in rules/).
When the full cycle misses --target-ms (or with --profile), one full cycle is run under
cProfile and the top functions by cumulative time are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import glob
import json
import logging
import math
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.fleet import proc_status_kb, say
from bench.scheduled import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
POLL_INTERVAL = 60.0
CAMERA_PORTS = 44  # ports 1..44 of an access switch feed cameras (PoE)
SWITCH_PORTS = 48
UPLINK_PORT = 48
COLLECTORS_OF = {"switch": ("snmp",), "ups": ("snmp",), "spd_monitor": ("snmp",),
                 "env_monitor": ("snmp",), "ptz_camera": ("onvif", "rtsp", "reach"),
                 "fixed_camera": ("onvif", "rtsp", "reach")}
CAMERA_KINDS = ("ptz_camera", "fixed_camera")

# --- the reference rule set (used with --rule-set reference/both) -------------------------

REFERENCE_RULES = """
groups:
  - name: bench-network
    rules:
      - name: SwitchUnreachable
        select: {kinds: [switch]}
        expr: up == 0
        for: 30s
        level: 2
        topology: {cuts: [uplink, power], symptom: true}
      - name: PortDown
        select: {kinds: [switch]}
        expr: interface_admin_status == 1 && interface_oper_status == 2 && port_devices > 0
        for: 30s
        level: 3
        topology: {cuts: [uplink], symptom: true}
      - name: PortErrors
        select: {kinds: [switch]}
        expr: rate(interface_received_errors_total) + rate(interface_sent_errors_total) > 1
        for: 2m
        level: 4
      - name: PortSaturated
        select: {kinds: [switch]}
        expr: >-
          interface_speed_bytes_per_second > 0 &&
          rate(interface_received_bytes_total) > 0.9 * interface_speed_bytes_per_second
        for: 5m
        level: 4
      - name: PoeBudgetHigh
        select: {kinds: [switch]}
        expr: poe_consumption_watts > 0.9 * poe_budget_watts
        for: 5m
        level: 3
      - name: PoePortFault
        select: {kinds: [switch]}
        expr: >-
          poe_port_admin_enabled == 1 && port_devices > 0 &&
          (poe_port_detection_status == 4 || poe_port_detection_status == 6)
        for: 30s
        level: 3
        topology: {cuts: [power], symptom: true}
  - name: bench-power
    rules:
      - name: UpsUnreachable
        select: {kinds: [ups]}
        expr: up == 0
        for: 1m
        level: 3
        topology: {symptom: true}
      - name: UpsOutputOff
        select: {kinds: [ups]}
        expr: ups_output_source == 2
        level: 1
        topology: {cuts: [power]}
      - name: UpsOnMains
        select: {kinds: [ups]}
        expr: ups_on_battery == 1
        for: 30s
        level: 2
      - name: UpsOverload
        select: {kinds: [ups]}
        expr: ups_output_overload == 1 || ups_output_load_ratio > 0.9
        for: 1m
        level: 2
      - name: UpsBatteryReplace
        select: {kinds: [ups]}
        expr: ups_battery_replace_needed == 1
        level: 3
  - name: bench-environment
    rules:
      - name: MonitorUnreachable
        select: {kinds: [spd_monitor, env_monitor]}
        expr: up == 0
        for: 1m
        level: 3
        topology: {symptom: true}
      - name: SpdDegraded
        select: {kinds: [spd_monitor]}
        expr: spd_status == 0
        level: 2
      - name: SpdLeakage
        select: {kinds: [spd_monitor]}
        expr: spd_leakage_current_amperes > 0.0035
        for: 5m
        level: 3
      - name: LightningStrike
        select: {kinds: [spd_monitor]}
        expr: increase(spd_strikes_total) > 0
        keep_firing_for: 10m
        level: 4
      - name: RoomHot
        select: {kinds: [env_monitor]}
        expr: sensor_celsius > 35
        clear: sensor_celsius < 32
        for: 2m
        level: 2
        levels:
          - {when: sensor_celsius > 45, level: 1}
      - name: RoomHumid
        select: {kinds: [env_monitor]}
        expr: sensor_humidity_ratio > 0.85
        for: 10m
        level: 3
      - name: ContactAlarm
        select: {kinds: [env_monitor]}
        expr: contact_alarm == 1
        level: 2
  - name: bench-cameras
    vars:
      approved_firmware: ["V5.7.3 build 220112", "V5.7.12 build 230818", "11.11.73",
                          "10.12.182"]
    rules:
      - name: CameraUnreachable
        select: {kinds: [ptz_camera, fixed_camera]}
        expr: up == 0
        for: 1m
        level: 3
        topology: {symptom: true}
      - name: StreamDown
        select: {kinds: [ptz_camera, fixed_camera]}
        expr: rtsp_up == 0 && reach_up == 1
        for: 2m
        level: 3
        topology: {symptom: true}
      - name: CameraPacketLoss
        select: {kinds: [ptz_camera, fixed_camera]}
        expr: reach_icmp_loss_ratio > 0.2
        for: 5m
        level: 4
        topology: {symptom: true}
      - name: ClockDrift
        select: {kinds: [ptz_camera, fixed_camera]}
        expr: onvif_clock_offset_seconds > 5 || onvif_clock_offset_seconds < -5
        for: 10m
        level: 4
      - name: FirmwareNotApproved
        select: {kinds: [ptz_camera, fixed_camera]}
        expr: "!(device_info.firmware in approved_firmware)"
        level: 4
      - name: PtzFault
        select: {kinds: [ptz_camera]}
        expr: onvif_ptz_error == 1
        for: 2m
        level: 3
      - name: PictureDark
        select: {kinds: [ptz_camera, fixed_camera]}
        expr: video_dark == 1
        for: 10m
        level: 3
      - name: PictureFrozen
        select: {kinds: [ptz_camera, fixed_camera]}
        expr: video_frozen == 1
        for: 5m
        level: 2
      - name: LensOccluded
        select: {kinds: [ptz_camera, fixed_camera]}
        expr: video_occluded == 1
        for: 5m
        level: 2
      - name: PictureBlurred
        select: {kinds: [ptz_camera, fixed_camera]}
        expr: video_blurred == 1
        for: 30m
        level: 3
      - name: LowFrameRate
        select: {kinds: [ptz_camera, fixed_camera]}
        expr: rtsp_frames_per_second < 10
        for: 10m
        level: 4
      - name: SiteCamerasDown
        select: {kinds: [ptz_camera, fixed_camera]}
        aggregate: {by: site, member: up == 0, min_members: 10}
        expr: ratio > 0.3
        for: 1m
        level: 1
        topology: {symptom: true}
inhibit_rules:
  - source_matchers: ['alertname="SiteCamerasDown"']
    target_matchers: ['alertname=~"CameraUnreachable|StreamDown"']
    equal: [site]
"""

# --- the district ----------------------------------------------------------------------


@dataclass
class Plan:
    """One device: what it is, where, and the readings of each collector (slots)."""

    id: str
    kind: str
    site: str
    index: int  # position in the district: device i is polled at cycles i % 6 (typical)
    slots: dict[str, list[list]]  # collector -> [[metric, labels, base, mode, spread, value]]
    down: bool = False  # a dead device (never answers)
    stream_down: bool = False  # camera whose RTSP fails while the rest answers
    last: dict[str, float] = field(default_factory=dict)  # collector -> last poll time


CONST, NOISE, COUNTER = 0, 1, 2


@dataclass
class District:
    inventory_raw: dict
    plans: list[Plan]
    cores: list[str]
    behind_first_core: set[str]
    faulty: dict[str, int]  # kind of injected fault -> devices


def _slot(metric: str, labels: dict[str, str], base: float, mode: int = CONST,
          spread: float = 0.0) -> list:
    return [metric, labels, base, mode, spread, base]


def _switch_slots(ports: int, poe_ports: int, used: set[int], uplinks: set[int],
                  rng: random.Random, faulty: dict[str, int], down_ports: set[int] = frozenset(),
                  poe_faults: set[int] = frozenset(), poe_off: set[int] = frozenset()
                  ) -> list[list]:
    out = [_slot("device_info", {"sys_object_id": "1.3.6.1.4.1.890.1.15",
                                 "sys_descr": "GS2220-50HP V4.80"}, 1.0),
           _slot("device_uptime_seconds", {}, 8e6, COUNTER, 1.0),
           _slot("cpu_usage_ratio", {}, 0.15, NOISE, 0.5),
           _slot("memory_usage_ratio", {}, 0.4, NOISE, 0.05)]
    for i in range(1, ports + 1):
        labels = {"ifindex": str(i), "interface": f"GigabitEthernet1/0/{i}"}
        live = i in used or i in uplinks
        errors = 0.0
        if live and rng.random() < 0.01:
            errors = 5.0  # a bad cable: errors per second
            faulty["port errors"] = faulty.get("port errors", 0) + 1
        oper = 1.0 if live and i not in down_ports else 2.0
        speed = 1.25e9 if i in uplinks else 1.25e7 if live else 1.25e8
        traffic = (3e6 * len(used) / 10 if i in uplinks else 5e5) if live else 0.0
        out += [_slot("interface_oper_status", labels, oper),
                _slot("interface_admin_status", labels, 1.0),
                _slot("interface_speed_bytes_per_second", labels, speed),
                _slot("interface_received_bytes_total", labels, traffic, COUNTER, 0.3),
                _slot("interface_sent_bytes_total", labels, traffic / 20, COUNTER, 0.3),
                _slot("interface_received_errors_total", labels, errors, COUNTER, 0.5),
                _slot("interface_sent_errors_total", labels, 0.0, COUNTER),
                _slot("interface_received_discards_total", labels, 0.01 if live else 0.0,
                      COUNTER, 1.0),
                _slot("interface_sent_discards_total", labels, 0.0, COUNTER)]
    if poe_ports:
        group = {"group": "1"}
        out += [_slot("poe_budget_watts", group, 740.0),
                _slot("poe_consumption_watts", group, 6.5 * len(used), NOISE, 0.1),
                _slot("poe_oper_status", group, 1.0)]
        for p in range(1, poe_ports + 1):
            labels = {"group": "1", "port": str(p)}
            # PoE off on the ports of locally powered devices (else "searching" for ever)
            status = 1.0 if p in poe_off else 4.0 if p in poe_faults else \
                3.0 if p in used else 2.0
            out += [_slot("poe_port_admin_enabled", labels, 0.0 if p in poe_off else 1.0),
                    _slot("poe_port_detection_status", labels, status),
                    _slot("poe_port_power_watts", labels, 6.5 if p in used else 0.0, NOISE,
                          0.2)]
    return out


def _ups_slots(on_battery: bool, replace: bool) -> list[list]:
    line = {"line": "1"}
    return [_slot("device_info", {"sys_object_id": "1.3.6.1.4.1.935", "sys_descr": "UPS"}, 1.0),
            _slot("ups_battery_status", {}, 2.0),
            _slot("ups_seconds_on_battery", {}, 240.0 if on_battery else 0.0),
            _slot("ups_battery_runtime_seconds", {}, 900.0 if on_battery else 3600.0, NOISE,
                  0.05),
            _slot("ups_battery_charge_ratio", {}, 0.7 if on_battery else 1.0),
            _slot("ups_battery_volts", {}, 54.2, NOISE, 0.01),
            _slot("ups_battery_temperature_celsius", {}, 27.0, NOISE, 0.05),
            _slot("ups_input_volts", line, 0.0 if on_battery else 228.0, NOISE, 0.02),
            _slot("ups_input_frequency_hertz", line, 0.0 if on_battery else 50.0),
            _slot("ups_output_source", {}, 5.0 if on_battery else 3.0),
            _slot("ups_on_battery", {}, 1.0 if on_battery else 0.0),
            _slot("ups_on_bypass", {}, 0.0),
            _slot("ups_output_volts", line, 230.0, NOISE, 0.01),
            _slot("ups_output_frequency_hertz", {}, 50.0),
            _slot("ups_output_current_amperes", line, 9.0, NOISE, 0.1),
            _slot("ups_output_power_watts", line, 2000.0, NOISE, 0.1),
            _slot("ups_output_load_ratio", line, 0.55, NOISE, 0.1),
            _slot("ups_output_overload", {}, 0.0),
            _slot("ups_alarms", {}, 1.0 if on_battery else 0.0),
            _slot("ups_battery_replace_needed", {}, 1.0 if replace else 0.0),
            _slot("ups_battery_fault", {}, 0.0),
            _slot("ups_test_result", {}, 1.0),
            _slot("ups_rating_va", {}, 6000.0)]


def _spd_slots(degraded: bool, leaking: bool) -> list[list]:
    return [_slot("device_uptime_seconds", {}, 3e6, COUNTER, 1.0),
            _slot("spd_status", {}, 0.0 if degraded else 1.0),
            _slot("spd_strikes_total", {}, 0.0, COUNTER),
            _slot("spd_leakage_current_amperes", {}, 0.005 if leaking else 0.0008, NOISE, 0.1)]


def _env_slots(hot: bool, door_open: bool, spd_wired: bool) -> list[list]:
    out = [_slot("device_uptime_seconds", {}, 3e6, COUNTER, 1.0)]
    if spd_wired:  # a probe wired to the SPD: status contact, strike counter, leakage
        out += [_slot("contact_alarm", {"index": "8", "contact": "SPD1 main"}, 0.0),
                _slot("input_pulses_total", {"index": "8", "input": "SPD1-CNT main"}, 0.0,
                      COUNTER),
                _slot("sensor_amperes", {"index": "9", "sensor": "SPD1-LEAK main"}, 0.0007,
                      NOISE, 0.1)]
    for i, (sensor, base) in enumerate((("room", 38.0 if hot else 24.0), ("rack", 29.0)), 1):
        labels = {"index": str(i), "sensor": sensor}
        out += [_slot("sensor_celsius", labels, base, NOISE, 0.03),
                _slot("sensor_status", labels, 1.0)]
    out.append(_slot("sensor_humidity_ratio", {"index": "3", "sensor": "room"}, 0.45, NOISE,
                     0.05))
    for i, contact in enumerate(("door", "smoke", "water"), 4):
        alarm = 1.0 if door_open and contact == "door" else 0.0
        out += [_slot("contact_alarm", {"index": str(i), "contact": contact}, alarm),
                _slot("contact_state", {"index": str(i), "contact": contact}, alarm)]
    return out


FIXED_MODELS = (("Hikvision", "DS-2CD2T47G2-L", "V5.7.3 build 220112"),
                ("Hikvision", "DS-2CD2143G2-IS", "V5.7.3 build 220112"),
                ("Axis", "P3265-LVE", "11.11.73"))
PTZ_MODELS = (("Hikvision", "DS-2DE4425IW-DE", "V5.7.12 build 230818"),
              ("Axis", "AXIS Q6075-E", "10.12.182"))


def _camera_slots(i: int, ptz: bool, rng: random.Random, faulty: dict[str, int]
                  ) -> dict[str, list[list]]:
    def hit(name: str, p: float) -> bool:
        if rng.random() < p:
            faulty[name] = faulty.get(name, 0) + 1
            return True
        return False

    models = PTZ_MODELS if ptz else FIXED_MODELS
    vendor, model, firmware = models[i % len(models)]
    if hit("firmware not approved", 0.005):
        firmware = "V5.5.0 build 180327"
    offset = 42.0 if hit("clock drift", 0.01) else 0.3
    onvif = [_slot("onvif_clock_ntp", {}, 1.0),
             _slot("onvif_round_trip_seconds", {}, 0.012, NOISE, 0.5),
             _slot("onvif_clock_offset_seconds", {}, offset, NOISE, 0.5),
             _slot("device_info", {"vendor": vendor, "model": model, "firmware": firmware,
                                   "serial": f"SN{i:09d}", "hardware": "88"}, 1.0)]
    for service in ("device", "media", "media2", "ptz", "events", "imaging", "analytics"):
        onvif.append(_slot("onvif_service_available", {"service": service},
                           0.0 if service == "ptz" and not ptz else 1.0))
    onvif.append(_slot("onvif_profiles", {}, 2.0))
    for token, (w, h) in (("Profile_1", ("2688", "1520")), ("Profile_2", ("640", "360"))):
        onvif.append(_slot("onvif_stream_info", {
            "profile": token, "encoding": "H264", "width": w, "height": h,
            "uri": f"rtsp://10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}/Streaming/"
                   f"Channels/{101 if token == 'Profile_1' else 102}"}, 1.0))
    onvif.append(_slot("onvif_operation_ok", {"operation": "stream_uri"}, 1.0))
    if ptz:
        onvif += [_slot("onvif_ptz_available", {}, 1.0),
                  _slot("onvif_ptz_moving", {"axis": "pan_tilt"}, 0.0),
                  _slot("onvif_ptz_moving", {"axis": "zoom"}, 0.0),
                  _slot("onvif_ptz_error", {}, 1.0 if hit("PTZ error", 0.02) else 0.0),
                  _slot("onvif_ptz_presets", {}, 8.0),
                  _slot("onvif_operation_ok", {"operation": "ptz_status"}, 1.0),
                  _slot("onvif_operation_ok", {"operation": "ptz_presets"}, 1.0)]
    onvif.append(_slot("onvif_events_subscribed", {}, 1.0))
    fps = 6.0 if hit("low frame rate", 0.005) else 25.0
    dark, frozen = hit("dark picture", 0.01), hit("frozen picture", 0.003)
    occluded, blurred = hit("occluded lens", 0.003), hit("blurred picture", 0.005)
    rtsp = [_slot("rtsp_describe_seconds", {}, 0.02, NOISE, 0.5),
            _slot("rtsp_stream_info", {"codec": "h264", "width": "2688", "height": "1520"}, 1.0),
            _slot("video_signal_lost", {}, 0.0),
            _slot("rtsp_first_frame_seconds", {}, 0.3, NOISE, 0.5),
            _slot("rtsp_frames_per_second", {}, fps, NOISE, 0.04),
            _slot("rtsp_bitrate_bytes_per_second", {}, 5e5, NOISE, 0.3),
            _slot("rtsp_keyframe_interval_seconds", {}, 2.0),
            _slot("rtsp_decoded_frames", {}, 50.0),
            _slot("rtsp_decode_errors", {}, 0.0),
            _slot("video_brightness_ratio", {}, 0.04 if dark else 0.45, NOISE, 0.1),
            _slot("video_contrast_ratio", {}, 0.6, NOISE, 0.1),
            _slot("video_sharpness", {}, 0.02 if blurred else 0.3, NOISE, 0.1),
            _slot("video_motion_ratio", {}, 0.0 if frozen else 0.05, NOISE, 0.5),
            _slot("video_color_cast_factor", {}, 0.6, NOISE, 0.1),
            _slot("video_chroma_offset", {}, 3.0, NOISE, 0.2),
            _slot("video_uniform_area_ratio", {}, 0.85 if occluded else 0.1, NOISE, 0.1),
            _slot("video_analysed_frames", {}, 3.0)]
    for name, flag in (("dark", dark), ("overexposed", False), ("low_contrast", False),
                       ("blurred", blurred), ("color_cast", False), ("occluded", occluded),
                       ("frozen", frozen)):
        rtsp.append(_slot(f"video_{name}", {}, 1.0 if flag else 0.0))
    loss = 0.4 if hit("packet loss", 0.01) else 0.0
    reach = [_slot("reach_icmp_available", {}, 1.0),
             _slot("reach_icmp_up", {}, 1.0),
             _slot("reach_icmp_loss_ratio", {}, loss),
             _slot("reach_icmp_rtt_seconds", {}, 0.0015, NOISE, 0.5)]
    for port in ("80", "554"):
        reach += [_slot("reach_tcp_up", {"port": port}, 1.0),
                  _slot("reach_tcp_connect_seconds", {"port": port}, 0.001, NOISE, 0.5)]
    return {"onvif": onvif, "rtsp": rtsp, "reach": reach}


def build_district(devices: int, sites: int, seed: int) -> District:
    rng = random.Random(seed)
    sites = max(1, min(sites, devices // 8))
    faulty: dict[str, int] = {}
    site_ids = [f"site-{k:02d}" for k in range(sites)]
    raw_sites = [{"id": "hub", "name": "district hub"}] + [
        {"id": s, "name": f"district site {k}"} for k, s in enumerate(site_ids)]
    cores = ["core-1", "core-2"] if sites > 1 else ["core-1"]
    raw: list[dict] = []
    plans: list[Plan] = []
    address = iter(f"10.{n // 62500}.{n // 250 % 250}.{n % 250 + 1}" for n in range(10**7))
    per_site = [(devices - len(cores)) // sites + (1 if k < (devices - len(cores)) % sites else 0)
                for k in range(sites)]
    core_port = {c: 0 for c in cores}
    behind: set[str] = set()
    site_switches: list[tuple[str, list[str]]] = []
    for k, site in enumerate(site_ids):
        core = cores[0] if k < (sites + 1) // 2 else cores[-1]
        n = per_site[k]
        switches = 1
        while (n - 3 - switches) > switches * CAMERA_PORTS:
            switches += 1
        cameras = max(0, n - 3 - switches)
        ups = f"{site}-ups"
        names = [f"{site}-sw{j + 1}" for j in range(switches)]
        site_switches.append((core, names))
        port_faults: dict[tuple[str, int], str] = {}  # (switch, port) -> 'down' or 'poe'
        for j, sw in enumerate(names):
            core_port[core] += 1
            used = set(range(1, min(CAMERA_PORTS, cameras - j * CAMERA_PORTS) + 1)) \
                if cameras > j * CAMERA_PORTS else set()
            for port in sorted(used):  # a camera port down or its PoE faulty: camera dead
                draw = rng.random()
                if draw < 0.002:
                    port_faults[(sw, port)] = "down"
                    faulty["camera port down"] = faulty.get("camera port down", 0) + 1
                elif draw < 0.004:
                    port_faults[(sw, port)] = "poe"
                    faulty["PoE port fault"] = faulty.get("PoE port fault", 0) + 1
            if j == 0:
                used |= {45, 46, 47}
            raw.append({"id": sw, "kind": "switch", "site": site, "address": next(address),
                        "uplink": {"switch": core, "port": core_port[core]},
                        "powered_by": {"ups": ups}, "labels": {"role": "access"}})
            plans.append(Plan(sw, "switch", site, len(plans), {"snmp": _switch_slots(
                SWITCH_PORTS, CAMERA_PORTS, used, {UPLINK_PORT}, rng, faulty,
                {p for (s, p), what in port_faults.items() if s == sw and what == "down"},
                {p for (s, p), what in port_faults.items() if s == sw and what == "poe"},
                {c % CAMERA_PORTS + 1 for c in range(j * CAMERA_PORTS, min(
                    cameras, (j + 1) * CAMERA_PORTS)) if c % 5 == 0})}))
        on_battery = k == 1
        replace = k == 2
        raw.append({"id": ups, "kind": "ups", "site": site, "address": next(address),
                    "uplink": {"switch": names[0], "port": 45}})
        plans.append(Plan(ups, "ups", site, len(plans), {"snmp": _ups_slots(on_battery,
                                                                           replace)}))
        spd = f"{site}-spd"
        raw.append({"id": spd, "kind": "spd_monitor", "site": site, "address": next(address),
                    "uplink": {"switch": names[0], "port": 46}, "powered_by": {"ups": ups}})
        plans.append(Plan(spd, "spd_monitor", site, len(plans),
                          {"snmp": _spd_slots(k == 3, k == 4)}))
        env = f"{site}-env"
        raw.append({"id": env, "kind": "env_monitor", "site": site, "address": next(address),
                    "uplink": {"switch": names[0], "port": 47}, "powered_by": {"ups": ups}})
        plans.append(Plan(env, "env_monitor", site, len(plans),
                          {"snmp": _env_slots(k == 5, k == 6, k % 2 == 1)}))
        for c in range(cameras):
            sw, port = names[c // CAMERA_PORTS], c % CAMERA_PORTS + 1
            ptz = c % 5 == 0
            cam = f"{site}-cam{c + 1:04d}"
            kind = "ptz_camera" if ptz else "fixed_camera"
            raw.append({"id": cam, "kind": kind, "site": site, "address": next(address),
                        "snmp": False, "uplink": {"switch": sw, "port": port},
                        "powered_by": {"ups": ups} if ptz else {"switch": sw, "port": port}})
            plan = Plan(cam, kind, site, len(plans), _camera_slots(len(plans), ptz, rng,
                                                                    faulty))
            cut = port_faults.get((sw, port))
            if cut == "down" or (cut == "poe" and not ptz):
                plan.down = True  # behind its port: counted above
            elif rng.random() < 0.005:
                plan.down = True
                faulty["camera dead"] = faulty.get("camera dead", 0) + 1
            elif rng.random() < 0.005:
                plan.stream_down = True
                faulty["stream down"] = faulty.get("stream down", 0) + 1
            plans.append(plan)
        if core == cores[0]:
            behind.update(names, [ups, spd, env],
                          (d["id"] for d in raw if d["site"] == site and d["kind"] in CAMERA_KINDS))
    for core in cores:
        served = core_port[core]
        raw.append({"id": core, "kind": "switch", "site": "hub", "address": next(address),
                    "labels": {"role": "core"}})
        plans.append(Plan(core, "switch", "hub", len(plans), {"snmp": _switch_slots(
            max(SWITCH_PORTS, served + 4), 0, set(range(1, served + 1)),
            set(range(served + 1, served + 3)), rng, faulty)}))
    inventory = {"sites": raw_sites, "defaults": {"credentials": "bench"}, "devices": raw}
    return District(inventory, plans, cores, behind, faulty)


def load_inventory(district: District):
    from agent.inventory import load_inventory as load
    from agent.yamlfile import Document

    return load([Document(Path("bench-district.yaml"), district.inventory_raw, {})], None, None)


# --- polls -------------------------------------------------------------------------------


class Poller:
    """Makes the PollResults of each device's poll, as the collectors would, into a State."""

    def __init__(self, state, seed: int):
        from collectors.reading import PollResult, Reading

        self.state = state
        self.PollResult, self.Reading = PollResult, Reading
        self.random = random.Random(seed).random
        self.readings = 0

    def poll(self, plan: Plan, ts: float, up: bool = True) -> None:
        Reading, rnd = self.Reading, self.random
        for collector, slots in plan.slots.items():
            ok = up and not plan.down and not (plan.stream_down and collector == "rtsp")
            if not ok:
                result = self.PollResult(plan.id, ts, 2.0, False, "timeout",
                                         "no answer within the timeout and retries",
                                         collector=collector)
                result.readings = [Reading(plan.id, "up", {}, 0.0, ts, "timeout")]
                self.state.update(result)
                plan.last[collector] = ts
                continue
            dt = ts - plan.last.get(collector, ts - POLL_INTERVAL)
            readings = []
            for slot in slots:
                mode = slot[3]
                if mode == CONST:
                    value = slot[2]
                elif mode == NOISE:
                    value = slot[2] * (1.0 + slot[4] * (rnd() - 0.5))
                else:
                    value = slot[5] = slot[5] + slot[2] * dt * (1.0 + slot[4] * (rnd() - 0.5))
                readings.append(Reading(plan.id, slot[0], dict(slot[1]), value, ts))
            readings.append(Reading(plan.id, "up", {}, 1.0, ts))
            self.readings += len(readings)
            self.state.update(self.PollResult(plan.id, ts, 0.05, True, collector=collector,
                                              readings=readings))
            plan.last[collector] = ts


# --- baseline ----------------------------------------------------------------------------


def _first_metric(rule) -> str:
    expr = rule.member if rule.member is not None else rule.expr
    for ref in expr.refs:
        if ref.how in ("value", "rate", "increase", "age", "absent") and ref.metric:
            return ref.metric
    return "up"


def baseline_plan(engine) -> dict[str, list[str]]:
    """Device -> the metric each rule that selects it reads first (one threshold each)."""
    out: dict[str, list[str]] = {}
    for rule in engine.rules.rules:
        metric = _first_metric(rule)
        for device in engine.selected.get(rule.name, ()):
            out.setdefault(device, []).append(metric)
    return out


def baseline(state, devices: list[str], plan: dict[str, list[str]],
             threshold: float = 0.5) -> tuple[float, int]:
    """(CPU seconds, comparisons) of the plain loop over these devices."""
    started = time.process_time()
    compared = 0
    hits = 0
    for device_id in devices:
        entry = state.devices[device_id]
        values: dict[str, list[float]] = {}
        for result in entry.results.values():
            for reading in result.readings:
                known = values.get(reading.metric)
                if known is None:
                    values[reading.metric] = [reading.value]
                else:
                    known.append(reading.value)
        for metric in plan.get(device_id, ()):
            for value in values.get(metric, ()):
                compared += 1
                if value > threshold:
                    hits += 1
    return time.process_time() - started, compared


# --- the run -----------------------------------------------------------------------------


@dataclass
class Cycle:
    cpu: float
    wall: float
    evaluations: int
    reused: int
    base_cpu: float = 0.0
    compared: int = 0
    gc: float = 0.0  # wall seconds of garbage collections during evaluate()


def rule_files(args: argparse.Namespace, work: Path) -> tuple[list[Path], str]:
    shipped = sorted(Path(p) for pattern in args.rules for p in glob.glob(
        str(pattern if Path(pattern).is_absolute() else ROOT / pattern)))
    if args.rule_set == "shipped":
        return shipped, f"{len(shipped)} file(s) {', '.join(args.rules)}"
    reference = yaml.safe_load(REFERENCE_RULES)
    note = "the bench's reference set"
    if args.rule_set == "both":
        taken = set()
        for path in shipped:
            for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
                taken.update(r.get("name") for r in group.get("rules", []))
        for group in reference["groups"]:
            group["rules"] = [r for r in group["rules"] if r["name"] not in taken]
        reference["groups"] = [g for g in reference["groups"] if g["rules"]]
        note = f"{len(shipped)} shipped file(s) + the reference set (names not shipped)"
    path = work / "reference-rules.yaml"
    path.write_text(yaml.safe_dump(reference, sort_keys=False, allow_unicode=True))
    return ([*shipped, path] if args.rule_set == "both" else [path]), note


def run(args: argparse.Namespace) -> dict:
    from agent.settings import Rules as RulesSettings
    from agent.state import State
    from collectors.snmp.profile import load_profiles
    from rules.engine import Engine
    from rules.load import known_from, load_rules

    out: dict = {"devices": args.devices}
    rss = {"start": proc_status_kb(os.getpid(), "VmRSS") / 1024}
    t0 = time.perf_counter()
    district = build_district(args.devices, args.sites, args.seed)
    inventory = load_inventory(district)
    rss["inventory"] = proc_status_kb(os.getpid(), "VmRSS") / 1024
    kinds: dict[str, int] = {}
    for plan in district.plans:
        kinds[plan.kind] = kinds.get(plan.kind, 0) + 1
    say(f"  district: {len(district.plans)} devices "
        f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) in "
        f"{len(inventory.sites) - 1} sites + hub, inventory loaded in "
        f"{time.perf_counter() - t0:.1f}s")
    say(f"  injected faults: {', '.join(f'{n} {k}' for k, n in sorted(district.faulty.items()))}"
        ", 1 UPS on battery, 1 UPS battery to replace, 1 SPD degraded, 1 leaking, 1 hot room, "
        "1 door open")
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-rules-"))
    files, note = rule_files(args, work)
    profiles = load_profiles()
    ruleset = load_rules(files, known_from(profiles.catalogue, profiles), inventory)
    settings = RulesSettings()
    step = settings.interval
    say(f"  rules: {len(ruleset.rules)} from {note}; interval {step:g}s, polls every "
        f"{POLL_INTERVAL:g}s")
    out["rules"] = [r.name for r in ruleset.rules]
    out["rule_files"] = [str(f) for f in files]
    if not ruleset.rules:
        say("  no rules: nothing to measure")
        return out

    state = State()
    state.sync(inventory)
    engine = Engine(ruleset, settings)
    now = 1_767_225_600.0
    engine.sync(inventory, now)
    poller = Poller(state, args.seed)
    interval = lambda device, collector: POLL_INTERVAL  # noqa: E731
    plan_of = baseline_plan(engine)
    ids = [p.id for p in district.plans]
    by_id = {p.id: p for p in district.plans}
    coverage(ruleset, engine, district, out)

    def cycle(polled: list[Plan], *, down: set[str] = frozenset(), base: bool = True) -> Cycle:
        nonlocal now
        now += step
        for plan in polled:
            poller.poll(plan, now, plan.id not in down)
        g0 = GC_CLOCK.seconds
        w0 = time.perf_counter()
        stats = engine.evaluate(state, now, interval)
        wall = time.perf_counter() - w0
        c = Cycle(stats.seconds, wall, stats.evaluations, stats.reused,
                  gc=GC_CLOCK.seconds - g0)
        if base:
            c.base_cpu, c.compared = baseline(state, [p.id for p in polled] or ids, plan_of)
        return c

    # first poll of everything, then warm-up: rates need two samples
    first = cycle(district.plans)
    rss["state+first cycle"] = proc_status_kb(os.getpid(), "VmRSS") / 1024
    say(f"  first cycle (every view built, no rates yet): {first.cpu * 1000:.0f} ms CPU, "
        f"{first.evaluations} evaluations; {poller.readings} readings per full poll")
    out["readings_per_full_poll"] = poller.readings
    out["first_cycle_ms"] = first.cpu * 1000
    for _ in range(args.warmup):
        cycle(district.plans, base=False)

    results: dict[str, list[Cycle]] = {}
    say(f"  full: {args.cycles} cycles, every device new results ...")
    results["full"] = [cycle(district.plans) for _ in range(args.cycles)]
    say(f"  steady: {args.cycles} cycles, no new results ...")
    results["steady"] = [cycle([]) for _ in range(args.cycles)]
    say(f"  typical: {max(args.cycles, 6)} cycles, 1/6 of the devices new results ...")
    results["typical"] = [cycle([p for p in district.plans if p.index % 6 == k % 6])
                          for k in range(max(args.cycles, 6))]
    out["cycles"] = {name: summarise(cs) for name, cs in results.items()}
    rss["after cycles"] = proc_status_kb(os.getpid(), "VmRSS") / 1024

    # the storm: the first core switch and everything behind it
    storm_out = storm(args, engine, state, district, by_id, cycle, lambda: now, step)
    out["storm"] = storm_out
    rss["after storm"] = proc_status_kb(os.getpid(), "VmRSS") / 1024

    out["rss_mb"] = rss
    out["peak_rss_mb"] = proc_status_kb(os.getpid(), "VmHWM") / 1024
    out["engine"] = engine_size(ruleset, settings, inventory, state, district, poller, now,
                                step, interval)
    full_ms = out["cycles"]["full"]["cpu_ms"]
    if args.profile or full_ms > args.target_ms:
        out["profile"] = profile_cycle(engine, state, district, poller, now + step, interval,
                                       args.top)
    with contextlib.suppress(OSError):
        for f in work.iterdir():
            f.unlink()
        work.rmdir()
    return out


def coverage(ruleset, engine, district: District, out: dict) -> None:
    """Metrics a rule reads that the synthetic devices it selects never produce."""
    produced: dict[str, set[str]] = {}
    for plan in district.plans:
        kind = produced.setdefault(plan.kind, set())
        for slots in plan.slots.values():
            kind.update(s[0] for s in slots)
    missing: dict[str, list[str]] = {}
    from rules.engine import _exprs

    for rule in ruleset.rules:
        selected = set(engine.selected.get(rule.name, ()))
        kinds = {p.kind for p in district.plans if p.id in selected}
        for expr in _exprs(rule):
            for ref in expr.refs:
                if ref.how in ("value", "rate", "increase", "age") and ref.metric and \
                        not any(ref.metric in produced.get(k, ()) for k in kinds):
                    missing.setdefault(rule.name, []).append(ref.metric)
        if not selected:
            missing.setdefault(rule.name, []).append("(selects no device)")
    out["not_covered"] = missing
    if missing:
        say("  NOTE rules reading metrics the district does not produce (always no data): "
            + "; ".join(f"{r}: {', '.join(sorted(set(m)))}" for r, m in missing.items()))


class _GcClock:
    """Wall time spent in the interpreter's garbage collections (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start


GC_CLOCK = _GcClock()


def summarise(cycles: list[Cycle]) -> dict:
    cpu = statistics.median(c.cpu for c in cycles)
    base = statistics.median(c.base_cpu for c in cycles)
    evaluations = statistics.median(c.evaluations for c in cycles)
    reused = sum(c.reused for c in cycles) / max(1, sum(c.evaluations for c in cycles))
    return {"cpu_ms": cpu * 1000, "cpu_ms_max": max(c.cpu for c in cycles) * 1000,
            "wall_ms": statistics.median(c.wall for c in cycles) * 1000,
            "gc_ms": statistics.median(c.gc for c in cycles) * 1000,
            "evaluations": evaluations, "reuse": reused, "baseline_ms": base * 1000,
            "baseline_compared": statistics.median(c.compared for c in cycles),
            "ratio": cpu / base if base > 0 else float("nan"), "cycles": len(cycles)}


def storm(args, engine, state, district: District, by_id: dict[str, Plan], cycle, clock,
          step: float) -> dict:
    core = district.cores[0]
    cut_rules = [r for r in engine.rules.rules if r.rule.topology.cuts
                 and core in engine.selected.get(r.name, ())]
    try:  # every device behind it, whether or not it answers
        behind = engine.topology.behind(core, ["uplink", "power"], {}, lambda _device: False)
    except TypeError:  # the older signature, without `answers`
        behind = engine.topology.behind(core, ["uplink", "power"], {})
    out: dict = {"core": core, "behind": len(behind),
                 "cut_rules": [r.name for r in cut_rules]}
    if behind != district.behind_first_core:
        say(f"  WARNING topology: {len(behind)} devices behind {core}, the district says "
            f"{len(district.behind_first_core)}")
    if not cut_rules:
        say(f"  storm: SKIPPED: no rule with topology.cuts selects the core switch {core} "
            f"(cut rules: {[r.name for r in engine.rules.rules if r.rule.topology.cuts]})")
        out["skipped"] = "no rule with topology.cuts selects the core switch"
        return out
    # rules that can hold on a device that answers nothing: they read no reading (only
    # up/..._up/..._reason/..._failures, absent(), events, vars), and the cut rules
    blind = [r for r in engine.rules.rules if r.rule.topology.cuts or all(
        ref.how in ("builtin", "const", "absent", "event")
        for ref in (r.member or r.expr).refs)]
    max_for = max((r.rule.for_ or 0.0) for r in blind)
    max_keep = max((r.rule.keep_firing_for or 0.0) for r in engine.rules.rules)
    horizon = args.storm_seconds or max_for + POLL_INTERVAL + 2 * step
    cycles = math.ceil(horizon / step)
    down = behind | {core}
    say(f"  storm: {core} and the {len(behind)} devices behind it down; {cycles} cycles "
        f"({cycles * step:g}s simulated: longest for: {max_for:g}s of the "
        f"{len(blind)} rules that can hold without readings, + a poll interval + 2 cycles); "
        f"root rule(s) {', '.join(r.name for r in cut_rules)}")
    out["horizon_rules"] = [r.name for r in blind]
    names = {r.name for r in cut_rules}
    symptom_rules = {r.name for r in engine.rules.rules if r.rule.topology.symptom}
    before = set(engine.active)
    visible_before = sum(1 for f in engine.active.values()
                         if f.state == "firing" and not f.suppressed)
    out["unsuppressed_firing_before"] = visible_before
    onset = cycle([by_id[i] for i in down] + [p for p in district.plans
                                              if p.id not in down and p.index % 6 == 0],
                  down=down)
    t_onset = clock() - step
    trace: list[dict] = []
    history = [onset]
    root_key = None
    done_at = cameras_at = None
    kinds = {p.id: p.kind for p in district.plans}
    leaked: dict[str, int] = {}  # cut-off device's faults seen firing unsuppressed
    k = 1
    for n in range(cycles + 1):
        c = onset if n == 0 else cycle(
            [p for p in district.plans if p.index % 6 == k % 6], down=down, base=False)
        if n:
            history.append(c)
            k += 1
        new = [f for f in engine.active.values() if f.key not in before]
        if root_key is None:
            root = next((f for f in new if f.device == core and f.rule in names), None)
            root_key = root.key if root else None
        root = engine.active.get(root_key) if root_key else None
        visible = [f for f in new if f.state == "firing" and not f.suppressed
                   and f.key != root_key]
        for f in visible:
            if f.device in behind or (not f.device and behind & set(_members(f))):
                leaked[f.rule] = leaked.get(f.rule, 0) + 1
        uncaused = [f for f in new if f.key != root_key and f.caused_by != root_key]
        cameras = [f for f in uncaused if kinds.get(f.device) in CAMERA_KINDS]
        row = {"cycle": n, "t": clock() - t_onset, "cpu_ms": c.cpu * 1000,
               "wall_ms": c.wall * 1000, "root": root.state if root else None,
               "new_faults": len(new), "caused": len(root.caused) if root else 0,
               "uncaused_new": len(uncaused), "uncaused_cameras": len(cameras),
               "visible_new": len(visible)}
        trace.append(row)
        if root is not None and root.state == "firing":
            if done_at is None and not uncaused:
                done_at = n
            if cameras_at is None and not cameras:
                cameras_at = n
    unexplained = []  # new faults the root does not carry at the end, and why
    for f in engine.active.values():
        if f.key in before or f.key == root_key or f.caused_by == root_key:
            continue
        members = _members(f)
        roots: dict[str, int] = {}
        for g in engine.active.values():
            if g.device in members and g.rule in symptom_rules:
                roots[str(g.caused_by)] = roots.get(str(g.caused_by), 0) + 1
        unexplained.append({"fault": f.key, "state": f.state, "caused_by": f.caused_by,
                            "suppressed": f.suppressed, "members": len(members),
                            "members_roots": roots})
    def spent(upto: int | None) -> tuple[float | None, float | None]:
        if upto is None:
            return None, None
        return (sum(h.cpu for h in history[:upto + 1]) * 1000,
                sum(h.wall for h in history[:upto + 1]) * 1000)

    last = trace[-1]
    final_visible = [f for f in engine.active.values() if f.state == "firing" and not
                     f.suppressed]
    out.update({
        "cycles": cycles, "onset_cpu_ms": onset.cpu * 1000, "onset_wall_ms": onset.wall * 1000,
        "onset_evaluations": onset.evaluations, "max_cpu_ms": max(h.cpu for h in history) * 1000,
        "median_cpu_ms": statistics.median(h.cpu for h in history) * 1000,
        "root": root_key, "root_fired_cycle": next((r["cycle"] for r in trace
                                                     if r["root"] == "firing"), None),
        "all_caused_cycle": done_at, "cameras_caused_cycle": cameras_at,
        "unexplained": unexplained,
        "ms_to_all_caused": spent(done_at), "ms_to_cameras_caused": spent(cameras_at),
        "caused_at_end": last["caused"], "new_faults_at_end": last["new_faults"],
        "uncaused_new_at_end": last["uncaused_new"],
        "unsuppressed_firing_at_end": len(final_visible),
        "unsuppressed_new_at_end": sum(1 for f in final_visible if f.key not in before),
        "leaked": leaked, "max_visible_new": max(r["visible_new"] for r in trace),
        "trace": trace if args.trace else [r for r in trace if r["cycle"] < 3 or
                                            r["cycle"] % 6 == 0 or r["cycle"] == cycles]})
    if root_key is not None:
        r = engine.active.get(root_key)
        if r is not None:
            by_rule: dict[str, int] = {}
            for v in r.caused.values():
                by_rule[v["rule"]] = by_rule.get(v["rule"], 0) + 1
            out["caused_by_rule"] = by_rule
    # recovery: everything answers again in one cycle, then the usual schedule
    storm_keys = {f.key for f in engine.active.values() if f.key not in before}
    limit = math.ceil((max_keep + max_for + POLL_INTERVAL + 3 * step) / step)
    rec = [cycle([by_id[i] for i in down] + [p for p in district.plans if p.id not in down
                                             and p.index % 6 == k % 6], base=False)]
    k += 1
    resolved_at = None
    for n in range(limit + 1):
        if n:
            rec.append(cycle([p for p in district.plans if p.index % 6 == k % 6], base=False))
            k += 1
        if not storm_keys & set(engine.active):
            resolved_at = n
            break
    out["recovery"] = {"storm_faults": len(storm_keys),
                       "cycles": None if resolved_at is None else resolved_at + 1,
                       "sim_seconds": None if resolved_at is None else resolved_at * step,
                       "first_cpu_ms": rec[0].cpu * 1000, "first_wall_ms": rec[0].wall * 1000,
                       "cpu_ms_total": sum(c.cpu for c in rec) * 1000,
                       "left": sorted(storm_keys & set(engine.active))[:10],
                       "left_count": len(storm_keys & set(engine.active)),
                       "unsuppressed_firing_after": sum(
                           1 for f in engine.active.values()
                           if f.state == "firing" and not f.suppressed)}
    return out


def _members(fault) -> list[str]:
    """The member devices an aggregate fault names (its evidence), [] for a device fault."""
    if fault.device:
        return []
    inputs = (fault.evidence or {}).get("inputs", {})
    return list(inputs.get("members", ()))


def engine_size(ruleset, settings, inventory, state, district: District, poller: Poller,
                now: float, step: float, interval) -> dict:
    """Memory held by a fresh engine after sync and two full cycles, by allocation site."""
    from rules.engine import Engine

    for plan in district.plans:  # results the engine has not seen, counters one poll ahead
        poller.poll(plan, now + step)
    tracemalloc.start(1)
    engine = Engine(ruleset, settings)
    engine.sync(inventory, now + step)
    engine.evaluate(state, now + step, interval)
    for plan in district.plans:
        poller.poll(plan, now + 2 * step)
    engine.evaluate(state, now + 2 * step, interval)
    snapshot = tracemalloc.take_snapshot()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rules_dir = str(ROOT / "rules")
    held = sum(s.size for s in snapshot.statistics("filename")
               if s.traceback[0].filename.startswith(rules_dir))
    top = [(f"{Path(s.traceback[0].filename).name}:{s.traceback[0].lineno}", s.size)
           for s in snapshot.statistics("lineno")
           if s.traceback[0].filename.startswith(rules_dir)][:5]
    return {"held_mb": held / 2**20, "traced_peak_mb": peak / 2**20, "views": len(engine.views),
            "counters": len(engine.counters), "instances": len(engine.instances),
            "memo_entries": sum(len(m) for m in engine.memo.values()),
            "top": [(where, size / 2**20) for where, size in top]}


def profile_cycle(engine, state, district: District, poller: Poller, now: float, interval,
                  top: int) -> list[dict]:
    """One full cycle (every device new results) under cProfile: the top functions."""
    for plan in district.plans:
        poller.poll(plan, now)
    profiler = cProfile.Profile()
    profiler.enable()
    engine.evaluate(state, now, interval)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():
        rows.append({"function": f"{_short(file)}:{line} {name}", "calls": calls,
                     "cum_ms": cumtime * 1000, "own_ms": tottime * 1000})
    rows.sort(key=lambda r: -r["cum_ms"])
    return rows[:top]


def _short(file: str) -> str:
    try:
        return str(Path(file).resolve().relative_to(ROOT))
    except ValueError:
        return Path(file).name if file != "~" else "~"


# --- the report --------------------------------------------------------------------------


def report(out: dict, args: argparse.Namespace, argv: list[str]) -> None:
    say("\n================ results ================")
    say(f"command: bench/run --suite rules {' '.join(argv)}".rstrip())
    say(f"{out['devices']} devices, {len(out.get('rules', []))} rules, "
        f"{out.get('readings_per_full_poll', 0)} readings per full poll; CPU = process CPU "
        f"of evaluate() (CycleStats.seconds), median of the cycles; GC = wall time of the "
        f"garbage collections inside evaluate(); baseline = the plain loop over the devices "
        f"with new results (steady: over every device)")
    if "cycles" not in out:
        return
    say("")
    say(f"{'cycle':<9}{'CPU ms':>9}{'max':>8}{'wall ms':>9}{'GC ms':>7}{'evals':>9}{'reuse':>7}"
        f"{'base ms':>9}{'compared':>10}{'ratio':>8}")
    for name, c in out["cycles"].items():
        say(f"{name:<9}{c['cpu_ms']:>9.1f}{c['cpu_ms_max']:>8.1f}{c['wall_ms']:>9.1f}"
            f"{c['gc_ms']:>7.0f}"
            f"{c['evaluations']:>9.0f}{c['reuse']:>7.0%}{c['baseline_ms']:>9.1f}"
            f"{c['baseline_compared']:>10.0f}{c['ratio']:>7.1f}x")
    full = out["cycles"]["full"]["cpu_ms"]
    say(f"first cycle (no views, no rates yet): {out['first_cycle_ms']:.0f} ms")
    say(f"target: full cycle under {args.target_ms:g} ms on one core -> "
        f"{'MET' if full < args.target_ms else 'NOT met'} ({full:.0f} ms)")
    s = out.get("storm", {})
    say("")
    if s.get("skipped"):
        say(f"storm: skipped ({s['skipped']})")
    elif s:
        say(f"storm: {s['core']} down with {s['behind']} devices behind it; root rule(s) "
            f"{', '.join(s['cut_rules'])}; {s['cycles']} cycles")
        say(f"  onset cycle {s['onset_cpu_ms']:.0f} ms CPU / {s['onset_wall_ms']:.0f} ms wall "
            f"({s['onset_evaluations']} evaluations); storm cycles median "
            f"{s['median_cpu_ms']:.0f} ms, max {s['max_cpu_ms']:.0f} ms")
        if s["root"] is None:
            say("  root: NO fault of a cut rule opened on the core switch")
        else:
            def when(cycle: int | None, spent: tuple) -> str:
                if cycle is None:
                    return "NEVER within the storm"
                return (f"cycle {cycle}, {cycle * args.step:g}s after the onset; evaluate() "
                        f"from the onset call on: {spent[0]:.0f} ms CPU, {spent[1]:.0f} ms wall")

            say(f"  root {s['root']} firing at cycle {s['root_fired_cycle']}")
            say(f"  root firing with every new camera fault caused by it: "
                f"{when(s['cameras_caused_cycle'], s['ms_to_cameras_caused'])}")
            say(f"  ... with every new fault (any kind, site aggregates too) caused by it: "
                f"{when(s['all_caused_cycle'], s['ms_to_all_caused'])}")
            caused = ", ".join(f"{n} {r}" for r, n in sorted(s.get("caused_by_rule", {}).items()))
            say(f"  at the end: {s['new_faults_at_end']} new faults; the root carries "
                f"{s['caused_at_end']} ({caused}); {s['uncaused_new_at_end']} new faults not "
                f"caused by it")
            say(f"  unsuppressed firing faults: {s['unsuppressed_new_at_end']} new (the root "
                f"included) vs {s['caused_at_end']} caused; {s['unsuppressed_firing_before']} "
                f"before the storm, {s['unsuppressed_firing_at_end']} at its end (the rest: "
                f"background faults whose for: ran out meanwhile)")
            say("  storm ever visible as unsuppressed firing faults of cut-off devices: "
                + ("NO" if not s["leaked"] else
                   "YES: " + ", ".join(f"{r} ({n} fault-cycles)" for r, n in s["leaked"].items())))
            for u in s["unexplained"][:8]:
                roots = ", ".join(f"{n} by {r}" for r, n in u["members_roots"].items())
                say(f"    not caused: {u['fault']} {u['state']}, suppressed={u['suppressed']}"
                    + (f"; its {u['members']} members' faults are caused {roots}"
                       if u["members"] else f", caused_by={u['caused_by']}"))
        say(f"  {'cycle':>5}{'t s':>6}{'CPU ms':>8}{'wall ms':>9}  {'root':<8}{'new':>6}"
            f"{'caused':>8}{'uncaused':>9}{'(cams)':>7}{'visible':>8}")
        for r in s["trace"]:
            say(f"  {r['cycle']:>5}{r['t']:>6.0f}{r['cpu_ms']:>8.0f}{r['wall_ms']:>9.0f}  "
                f"{r['root']!s:<8}{r['new_faults']:>6}{r['caused']:>8}{r['uncaused_new']:>9}"
                f"{r['uncaused_cameras']:>7}{r['visible_new']:>8}")
        rec = s["recovery"]
        say(f"recovery: {rec['storm_faults']} storm faults; all resolved in "
            f"{rec['cycles']} cycle(s)"
            + (f" ({rec['sim_seconds']:g}s after the devices answered)" if rec["cycles"] else
               f" NEVER ({rec['left_count']} left: {', '.join(rec['left'])})")
            + f"; first cycle {rec['first_cpu_ms']:.0f} ms CPU; unsuppressed firing after: "
              f"{rec['unsuppressed_firing_after']}")
    e = out["engine"]
    say("")
    rss = ", ".join(f"{k} {v:.0f}" for k, v in out["rss_mb"].items())
    say(f"memory: peak RSS {out['peak_rss_mb']:.0f} MB (RSS MB: {rss})")
    say(f"  engine (tracemalloc, fresh engine after 2 full cycles, held by rules/): "
        f"{e['held_mb']:.0f} MB; {e['views']} views, {e['counters']} counter series, "
        f"{e['instances']} instances, {e['memo_entries']} memo entries; traced peak "
        f"{e['traced_peak_mb']:.0f} MB; biggest: "
        + ", ".join(f"{w} {m:.0f} MB" for w, m in e["top"]))
    if out.get("profile"):
        say("")
        say(f"cProfile of one full cycle (top {len(out['profile'])} by cumulative time; "
            f"profiling overhead included):")
        say(f"  {'cum ms':>8}{'own ms':>8}{'calls':>10}  function")
        for r in out["profile"]:
            say(f"  {r['cum_ms']:>8.1f}{r['own_ms']:>8.1f}{r['calls']:>10}  {r['function']}")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run --suite rules", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--devices", type=int, default=10000, help="devices in the district")
    parser.add_argument("--sites", type=int, default=20, help="sites (half behind each core)")
    parser.add_argument("--cycles", type=int, default=10, help="measured cycles per case")
    parser.add_argument("--warmup", type=int, default=2,
                        help="full cycles after the first, before measuring")
    parser.add_argument("--rules", nargs="+", default=["config/rules/*.yaml"],
                        help="rule file globs (relative to the repository)")
    parser.add_argument("--rule-set", choices=("shipped", "reference", "both"),
                        default="shipped",
                        help="shipped: the --rules files; reference: the bench's own full "
                             "set; both: shipped + reference rules of other names")
    parser.add_argument("--storm-seconds", type=float, default=0.0,
                        help="simulated seconds of storm (0: the longest for: of the rules "
                             "that can hold on a silent device, + a poll interval + 2 cycles)")
    parser.add_argument("--target-ms", type=float, default=200.0,
                        help="full-cycle target; missed: a cProfile of one full cycle")
    parser.add_argument("--profile", action="store_true", help="always profile a full cycle")
    parser.add_argument("--top", type=int, default=25, help="profile rows")
    parser.add_argument("--trace", action="store_true", help="print every storm cycle")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args(argv)
    if args.devices < 20:
        parser.error("--devices: at least 20")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    from agent.settings import Rules as RulesSettings

    args.step = RulesSettings().interval
    logging.getLogger("vigil.state").setLevel(logging.ERROR)  # a warning per device down
    started = time.time()
    c0 = cpu_seconds()
    say(f"Vigil rules engine benchmark: python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    out = run(args)
    report(out, args, argv)
    say(f"\ntotal time {time.time() - started:.0f}s, {cpu_seconds() - c0:.0f} CPU s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
