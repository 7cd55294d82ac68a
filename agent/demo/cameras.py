"""The demo's cameras over ONVIF and RTSP: what each simulated camera answers, which ones are
faulty and how, and the camera events of the timeline.

Every inventory device with an `onvif:` block becomes a camera of the ONVIF simulator
(agent/demo/onvif.py, one process) on its own loopback address and ONVIF port, with the
vendor style of its `model` label; every device with an `rtsp:` block gets an RTSP endpoint of
the GStreamer server (agent/demo/rtsp_server.py, one process) on its address and port 8554,
serving the stream its ONVIF GetStreamUri names, behind digest authentication. Both use the
camera login of config/demo/credentials.yaml, whose password comes from the environment
(VIGIL_DEMO_CAMERA_PASSWORD, set by `vigil demo` when unset).

Faulty cameras (each from the start unless a time is given; a camera missing from the
inventory is left out and said so) - one of each kind of camera fault:

    ptz-dh-03  clock 3 h ahead, time set by hand (NTP lost)  vigil_onvif_clock_offset_seconds
                                                             ~10800, vigil_onvif_clock_ntp 0
    fix-xs-01  frozen picture (the encoder hung)             vigil_video_frozen 1
    ptz-ny-07  black picture (video loss)                    vigil_video_dark 1
    fix-by-02  out of focus                                  vigil_video_blurred 1
    ptz-ny-12  colour cast (white balance failed)            vigil_video_color_cast 1
    ptz-hp-04  covered by a board; ONVIF tampering at 2:00   vigil_video_occluded 1, and
                                                             vigil_event{event="tampering"} 1
    fix-cq-01  stream set up but no picture (signal loss)    rtsp down, reason no_frames
    ptz-gm-06  PTZ motor error                               vigil_onvif_ptz_error 1
    fix-gm-01  stream password changed on the camera         rtsp down, reason auth
    ptz-by-09  ONVIF service hangs at 3:30, back at 6:40     onvif down, reason timeout;
                 the stream and the TCP port stay up: "service down", not "host down"

("rtsp down, reason R": vigil_collector_up{collector="rtsp"} 0 and
vigil_device_down_reason{collector="rtsp",reason="R"} 1.)

The timeline's silent devices (scenario.py: ptz-cq-05, the cabinet behind sw-xh-3) stop
answering ONVIF too. Their RTSP endpoints keep serving, and ICMP on loopback always answers:
a loopback demo cannot take a host off the network (the tests do that in a namespace).
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.demo.scenario import Action, Event, Plan

PASSWORD_ENV = "VIGIL_DEMO_CAMERA_PASSWORD"
DEFAULT_PASSWORD = "vigil-demo-cam"
USERNAME = "admin"
RTSP_PORT = 8554
STREAM = {"width": 352, "height": 288, "fps": 10, "bitrate": 384}   # CIF, a sub-stream


@dataclass(frozen=True)
class CameraFault:
    """One faulty camera: its ONVIF settings, its picture, its stream password."""

    device: str
    role: str                      # the name tests and demo.json use
    text: str                      # what the terminal says
    onvif: dict[str, Any] = field(default_factory=dict)   # CameraConfig fields
    picture: str = "good"          # a kind of agent/demo/rtsp_server.py
    stream_password: str | None = None    # differs from the login: 401 to the agent
    at: float | None = None        # a timeline event instead of from the start (unscaled s)
    until: float | None = None
    action: dict[str, Any] | None = None  # control API call at `at` (and undone at `until`)


FAULTS: tuple[CameraFault, ...] = (
    CameraFault("ptz-dh-03", "camera_clock", "clock 3 h ahead, set by hand (NTP lost)",
                onvif={"clock_offset": 10800.0, "ntp": False}),
    CameraFault("fix-xs-01", "camera_frozen", "picture frozen (encoder hung)", picture="frozen"),
    CameraFault("ptz-ny-07", "camera_black", "black picture (video loss)", picture="black"),
    CameraFault("fix-by-02", "camera_blurred", "out of focus", picture="blurred"),
    CameraFault("ptz-ny-12", "camera_color_cast", "green colour cast (white balance failed)",
                picture="color_cast"),
    CameraFault("ptz-hp-04", "camera_occluded", "lens covered by a board: tampering event",
                picture="occluded", at=120.0,
                action={"action": "event", "kind": "tampering", "state": True}),
    CameraFault("fix-cq-01", "camera_no_frames", "stream set up but no picture (signal loss)",
                picture="no_frames"),
    CameraFault("ptz-gm-06", "camera_ptz_error", "PTZ motor error",
                onvif={"ptz_error": "PTZ motor overcurrent"}),
    CameraFault("fix-gm-01", "camera_rtsp_auth", "stream password changed on the camera",
                stream_password="changed-by-someone"),
    CameraFault("ptz-by-09", "camera_onvif_hang", "ONVIF service hangs (stream still up)",
                at=210.0, until=400.0,
                action={"action": "fault", "operation": "*", "mode": "silent"}),
)


def password() -> str:
    return os.environ.setdefault(PASSWORD_ENV, DEFAULT_PASSWORD)


def vendor_of(model: str) -> tuple[str, str | None]:
    """(simulator vendor style, manufacturer override) from a model label."""
    upper = model.upper()
    if upper.startswith("AXIS"):
        return "axis", None
    if upper.startswith(("DS-", "IDS-")):
        return "hikvision", None
    if upper.startswith(("DH-", "DHI-", "IPC-")):
        return "dahua", None
    if upper.startswith(("IB", "FD", "IP9", "SD9")):
        return "dahua", "VIVOTEK"    # the simulator has no Vivotek style: Dahua's quirks
    return "hikvision", None


def cameras(inventory: Any) -> list[Any]:
    """Inventory devices the simulators serve: those with an ONVIF block."""
    return [d for d in inventory.devices.values() if d.onvif is not None and d.enabled]


def faults_in(inventory: Any) -> tuple[list[CameraFault], list[str]]:
    """The faults whose camera is in the inventory, and notes on those left out."""
    present = {d.id for d in cameras(inventory)}
    kept = [f for f in FAULTS if f.device in present]
    notes = [f"{f.text}: no camera '{f.device}'" for f in FAULTS if f.device not in present]
    return kept, notes


def _uri_path(vendor: str) -> str:
    """The main stream's path, in the vendor's usual shape."""
    return {"hikvision": "/Streaming/Channels/101",
            "dahua": "/cam/realmonitor/channel1/main",
            "axis": "/axis-media/media.amp"}[vendor]


def onvif_config(inventory: Any) -> dict[str, Any]:
    """cameras.json of the ONVIF simulator."""
    faults = {f.device: f for f in faults_in(inventory)[0]}
    out = []
    for index, device in enumerate(cameras(inventory), start=1):
        model = device.labels.get("model", "")
        vendor, manufacturer = vendor_of(model)
        entry: dict[str, Any] = {
            "name": device.id, "address": device.address, "port": device.onvif.port,
            "vendor": vendor, "username": USERNAME, "password": password(),
            "ptz": device.kind == "ptz_camera", "index": index,
            "stream_uri": f"rtsp://{{host}}:{RTSP_PORT}{_uri_path(vendor)}"}
        if model:
            entry["model"] = model
        if manufacturer:
            entry["manufacturer"] = manufacturer
        fault = faults.get(device.id)
        if fault:
            entry.update(fault.onvif)
        out.append(entry)
    return {"cameras": out}


def rtsp_config(inventory: Any) -> dict[str, Any]:
    """The RTSP server's configuration: one endpoint per camera with an `rtsp:` block."""
    faults = {f.device: f for f in faults_in(inventory)[0]}
    endpoints = []
    for device in cameras(inventory):
        if device.rtsp is None:
            continue
        vendor, _ = vendor_of(device.labels.get("model", ""))
        fault = faults.get(device.id)
        endpoints.append({
            "address": device.address, "port": RTSP_PORT, "user": USERNAME,
            "password": (fault.stream_password if fault and fault.stream_password
                         else password()),
            "auth": "digest",
            "mounts": [{"path": _uri_path(vendor),
                        "kind": fault.picture if fault else "good"}]})
    return {"defaults": dict(STREAM), "endpoints": endpoints}


def endpoints(inventory: Any) -> list[tuple[str, int]]:
    """TCP (address, port) pairs the two simulators listen on."""
    out = []
    for device in cameras(inventory):
        out.append((device.address, device.onvif.port))
        if device.rtsp is not None:
            out.append((device.address, RTSP_PORT))
    return out


def add_to_plan(plan: Plan, inventory: Any) -> None:
    """The camera faults' roles, timeline events and control actions; notes for those left
    out. Static faults are listed at 0:00."""
    kept, notes = faults_in(inventory)
    plan.skipped.extend(notes)
    for fault in kept:
        plan.roles[fault.role] = fault.device
        name = inventory.devices[fault.device].name
        plan.events.append(Event(fault.at or 0.0, f"{name} ({fault.device}): {fault.text}"))
        if fault.action is not None and fault.at is not None:
            plan.actions.append(Action(fault.at, "onvif", fault.device, dict(fault.action)))
            if fault.until is not None:   # a fault mode is cleared by null, an event by false
                undo = {**fault.action, **({"mode": None} if "mode" in fault.action
                                           else {"state": False})}
                plan.actions.append(Action(fault.until, "onvif", fault.device, undo))
                plan.events.append(Event(fault.until, f"{fault.device}: answers ONVIF again"))
    plan.events.sort(key=lambda e: e.at)
    plan.actions.sort(key=lambda a: a.at)


def control(base: str, action: Action) -> None:
    """Apply one ONVIF action through the simulator's control API."""
    body = dict(action.args)
    verb = body.pop("action")
    request = urllib.request.Request(
        f"{base}/cameras/{action.device}/{verb}", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


def write_configs(inventory: Any, workdir: Path) -> tuple[Path, Path]:
    """cameras.json (ONVIF) and rtsp.json in the work directory. The RTSP file holds the demo
    password: readable by its owner only."""
    onvif_path, rtsp_path = workdir / "onvif-cameras.json", workdir / "rtsp-cameras.json"
    for path, doc in ((onvif_path, onvif_config(inventory)), (rtsp_path, rtsp_config(inventory))):
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, ensure_ascii=False, indent=1)
    return onvif_path, rtsp_path
