"""The demo district: 8 community sites and the branch machine room, as the service contract
describes them (152 PTZ and 20 fixed cameras, an NVR per community, PoE access switches, a
core switch, UPS units, SPD monitors and an environment monitor).

This module is the plan; `python -m agent.demo.site > config/demo/inventory.yaml` writes the
inventory from it. The committed inventory.yaml is what `vigil demo` and the agent read: edit
that file freely, the simulation follows it (a device's `model` label picks its simulated
model; devices without one get a default model for their kind).

Addressing: every device has its own loopback address 127.0.<site number>.<host>, UDP port
1161 (no root needed); cameras also answer ONVIF on TCP 8080 and RTSP on TCP 8554 there.
Host numbers: .1 UPS, .2 SPD monitor, .3 NVR, .11-.13 access switches,
.101 upwards PTZ cameras, .151 upwards fixed cameras; in the machine room (site number 9)
.1 core switch, .2 UPS, .3 SPD monitor, .4 environment monitor.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

PORT = 1161
ONVIF_PORT = 8080
CAMERA_LOGIN = "demo-camera"
ROOM = 9


@dataclass(frozen=True)
class Community:
    number: int
    id: str
    name: str
    phase: int          # procurement phase: 1 (2019) Hikvision/Zyxel/Delta, 2 (2022) mixed
    ptz: int
    fixed: int
    roads: tuple[str, ...]
    places: tuple[str, ...]


COMMUNITIES = (
    Community(1, "dh", "东湖社区", 1, 20, 3,
              ("东湖路", "建设路", "湖滨路", "文化街", "学府路", "青年路"),
              ("东湖公园南门", "东湖小学", "农贸市场", "社区服务中心", "公交首末站")),
    Community(2, "xs", "西山社区", 1, 19, 3,
              ("西山路", "解放路", "枫林路", "红旗街", "山前路", "人民路"),
              ("西山广场", "西山中学", "社区医院", "菜市场", "停车场")),
    Community(3, "ny", "南苑社区", 1, 19, 3,
              ("南苑路", "长江路", "迎宾大道", "花园街", "南环路", "幸福路"),
              ("南苑幼儿园", "南苑小区北门", "体育公园", "地铁口", "超市")),
    Community(4, "by", "北苑社区", 1, 19, 3,
              ("北苑路", "黄河路", "工业大道", "朝阳街", "北环路", "团结路"),
              ("北苑小学", "老年活动中心", "商业街", "加油站", "医院急诊")),
    Community(5, "cq", "长青社区", 2, 19, 2,
              ("长青路", "松柏路", "环城西路", "育才街", "林荫路", "新村路"),
              ("长青公园", "社区卫生站", "快递驿站", "桥头")),
    Community(6, "xh", "新华社区", 2, 19, 2,
              ("新华路", "中山路", "胜利街", "光华路", "滨河路", "建国路"),
              ("新华书店", "滨河广场", "中心小学", "派出所门口")),
    Community(7, "hp", "和平社区", 2, 19, 2,
              ("和平路", "友谊路", "振兴街", "民主路", "东风路", "春晖路"),
              ("和平广场", "社区警务室", "农贸市场", "公交站")),
    Community(8, "gm", "光明社区", 2, 18, 2,
              ("光明路", "未来路", "科技大道", "创新街", "星光路", "明德路"),
              ("光明中学", "科技园南门", "夜市", "河道闸口")),
)

# Models of each phase. A device's `model` label selects its data template (agent/demo/models.py).
PTZ_MODELS = {1: ("DS-2DE4425IW-DE",), 2: ("AXIS Q6075-E", "DS-2DE7432IW-AE")}
FIXED_MODELS = {1: ("DS-2CD2T47G2-L",), 2: ("IB9387-EHT-A", "AXIS P3265-LVE")}
NVR_MODEL = {1: "DS-7732NI-K4", 2: "DHI-NVR4432-4KS2"}
SWITCH_MODEL = {1: "GS1920-24HP", 2: "EKI-7712G-4FP"}
UPS_MODEL = {1: "Delta N-3K", 2: "KSTAR YDC9106H"}
SPD_MODEL = "Poseidon2 3266"
CORE_MODEL = "H3C S5130S-28S-EI"
ROOM_UPS_MODEL = "MGE Galaxy 5500 40kVA"
ROOM_SPD_MODEL = "Poseidon 4002"
ENV_MODEL = "NetBotz NBRK0250A"

# Core switch ports facing each community and the room's devices.
CORE_PORT = "GE1/0/{}"               # the ifName, as the `interface` label shows it
CORE_ROOM_PORTS = {"ups-room": 21, "spd-room": 22, "env-room": 23}


@dataclass
class Device:
    id: str
    kind: str
    site: str
    name: str
    address: str
    model: str
    uplink: tuple[str, int | str] | None = None
    powered_by: tuple[str, int | str | None] | None = None  # (ups, None) or (switch, port)
    profile: str | None = None
    comment: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    role: str = ""  # inventory label `role` (core, machine_room): raises the rules' levels


def _camera_names(c: Community, count: int, suffix: str, start: int = 0) -> list[str]:
    """Chinese location names: crossings of the community's roads, then its landmarks."""
    names: list[str] = []
    roads = c.roads
    pairs = [(a, b) for i, a in enumerate(roads) for b in roads[i + 1:]]
    spots = [f"{a}与{b}交叉口" for a, b in pairs] + [f"{p}" for p in c.places]
    for extra in ("东侧", "西侧"):
        spots += [f"{r}{extra}" for r in roads]
    spots = spots[start:] + spots[:start]
    for i in range(count):
        names.append(f"{spots[i % len(spots)]}{suffix}")
    return names


def plan() -> tuple[list[tuple[str, str]], list[Device]]:
    """(sites, devices) of the demo district, in inventory order."""
    sites = [(c.id, c.name) for c in COMMUNITIES] + [("room", "分局机房")]
    devices: list[Device] = []
    room_net = f"127.0.{ROOM}"
    devices.append(Device("sw-core", "switch", "room", "分局机房核心交换机", f"{room_net}.1",
                          CORE_MODEL, powered_by=("ups-room", None), profile="h3c-comware",
                          comment="core devices name their profile: no surprise after a "
                                  "replacement", role="core"))
    devices.append(Device("ups-room", "ups", "room", "分局机房UPS（40kVA）", f"{room_net}.2",
                          ROOM_UPS_MODEL, uplink=("sw-core", CORE_PORT.format(21)),
                          profile="mge-ups", role="machine_room"))
    devices.append(Device("spd-room", "spd_monitor", "room", "分局机房防雷监测", f"{room_net}.3",
                          ROOM_SPD_MODEL, uplink=("sw-core", CORE_PORT.format(22)),
                          powered_by=("ups-room", None)))
    devices.append(Device("env-room", "env_monitor", "room", "分局机房动环监测", f"{room_net}.4",
                          ENV_MODEL, uplink=("sw-core", CORE_PORT.format(23)),
                          powered_by=("ups-room", None)))
    for c in COMMUNITIES:
        devices.extend(_community(c))
    return sites, devices


def _community(c: Community) -> list[Device]:
    net = f"127.0.{c.number}"
    out: list[Device] = []
    ups = f"ups-{c.id}"
    cameras: list[Device] = []
    ptz_names = _camera_names(c, c.ptz, "球机")
    fixed_names = _camera_names(c, c.fixed, "枪机", start=len(c.roads) * 2 + 3)
    for i in range(c.ptz):
        models = PTZ_MODELS[c.phase]
        cameras.append(Device(f"ptz-{c.id}-{i + 1:02d}", "ptz_camera", c.id, ptz_names[i],
                              f"{net}.{101 + i}", models[i % len(models)]))
    for i in range(c.fixed):
        models = FIXED_MODELS[c.phase]
        cameras.append(Device(f"fix-{c.id}-{i + 1:02d}", "fixed_camera", c.id, fixed_names[i],
                              f"{net}.{151 + i}", models[i % len(models)]))
    out.append(Device(ups, "ups", c.id, f"{c.name}UPS", f"{net}.1", UPS_MODEL[c.phase]))
    if c.phase == 1:
        # one 24-port PoE switch in the community's cabinet: cameras on 1-23, NVR 25, UPS 26,
        # SPD monitor 27, fibre uplink to the core on 28
        sw = f"sw-{c.id}-1"
        out.append(Device(sw, "switch", c.id, f"{c.name}汇聚PoE交换机", f"{net}.11",
                          SWITCH_MODEL[1], uplink=("sw-core", CORE_PORT.format(c.number)),
                          powered_by=(ups, None)))
        for port, cam in enumerate(cameras, start=1):
            cam.uplink = (sw, port)
            cam.powered_by = (sw, port)
        nvr_at, ups_at, spd_at = (sw, 25), (sw, 26), (sw, 27)
    else:
        # three 8-port industrial PoE switches in street cabinets: switch 1 in the community
        # centre (5 cameras, NVR 6, UPS 7, SPD 8, fibre to the core on 9), switches 2 and 3
        # chained to it on its SFP ports 10 and 11
        switches = [f"sw-{c.id}-{n}" for n in (1, 2, 3)]
        cabinet = ("中心机柜", "2号路口机箱", "3号路口机箱")
        for n, sw in enumerate(switches):
            uplink = ("sw-core", CORE_PORT.format(c.number)) if n == 0 else (switches[0], 9 + n)
            out.append(Device(sw, "switch", c.id, f"{c.name}{cabinet[n]}PoE交换机",
                              f"{net}.{11 + n}", SWITCH_MODEL[2], uplink=uplink,
                              powered_by=(ups, None)))
        slots = [(switches[0], p) for p in range(1, 6)] + \
                [(switches[1], p) for p in range(1, 9)] + [(switches[2], p) for p in range(1, 9)]
        for cam, at in zip(cameras, slots, strict=False):
            cam.uplink = at
            cam.powered_by = at
        nvr_at, ups_at, spd_at = (switches[0], 6), (switches[0], 7), (switches[0], 8)
    out[0].uplink = ups_at
    out.append(Device(f"nvr-{c.id}", "nvr", c.id, f"{c.name}NVR", f"{net}.3", NVR_MODEL[c.phase],
                      uplink=nvr_at, powered_by=(ups, None)))
    out.append(Device(f"spd-{c.id}", "spd_monitor", c.id, f"{c.name}防雷监测", f"{net}.2",
                      SPD_MODEL, uplink=spd_at, powered_by=(ups, None)))
    return out + cameras


def _scalar(value: object) -> str:
    text = str(value)
    if isinstance(value, int) or (text and all(ch.isalnum() or ch in "-_./" for ch in text)
                                  and not text[0].isdigit() and ":" not in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def inventory_yaml() -> str:
    sites, devices = plan()
    counts: dict[str, int] = {}
    for d in devices:
        counts[d.kind] = counts.get(d.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    lines = [
        "# The demo district (vigil demo): 8 community sites and the branch machine room.",
        f"# {len(devices)} devices: {summary}.",
        "# Generated by `python -m agent.demo.site > config/demo/inventory.yaml`; edit freely:",
        "# `vigil demo` simulates whatever this file lists. The `model` label picks the simulated",
        "# device model (agent/demo/models.py); most devices leave `profile` out, so the agent",
        "# detects it from sysObjectID / sysDescr like it would on a real network.",
        "# Every device is on its own loopback address 127.0.<site>.<host>, UDP port 1161.",
        f"# Cameras also answer ONVIF on TCP {ONVIF_PORT} (the agent reads their stream URI there)",
        "# and RTSP on TCP 8554 (agent/demo/cameras.py says which ones are faulty, and how).",
        "",
        "sites:",
    ]
    for site_id, name in sites:
        lines.append(f"  - {{id: {site_id}, name: {name}}}")
    camera = (f"{{onvif: {{credentials: {CAMERA_LOGIN}, port: {ONVIF_PORT}}}, rtsp: {{}}}}")
    lines += ["", "defaults:", "  credentials: demo", f"  port: {PORT}", "  kinds:",
              "    # every camera: ONVIF health, its stream probed (the URI it gives over ONVIF)",
              f"    ptz_camera: {camera}", f"    fixed_camera: {camera}", "", "devices:"]
    current = None
    for d in devices:
        if d.site != current:
            current = d.site
            title = dict(sites)[d.site]
            lines += ["", f"  # --- {title} ({d.site}) " + "-" * max(0, 60 - len(title) * 2)]
        lines.append(f"  - id: {d.id}")
        if d.comment:
            lines.insert(len(lines) - 1, f"  # {d.comment}")
        lines.append(f"    kind: {d.kind}")
        lines.append(f"    site: {d.site}")
        lines.append(f"    name: {d.name}")
        lines.append(f"    address: {d.address}")
        if d.profile:
            lines.append(f"    profile: {d.profile}")
        role = f", role: {d.role}" if d.role else ""
        lines.append(f"    labels: {{model: {_scalar(d.model)}{role}}}")
        if d.uplink:
            lines.append(f"    uplink: {{switch: {d.uplink[0]}, port: {_scalar(d.uplink[1])}}}")
        if d.powered_by:
            source, port = d.powered_by
            if port is None:
                lines.append(f"    powered_by: {{ups: {source}}}")
            else:
                lines.append(f"    powered_by: {{switch: {source}, port: {_scalar(port)}}}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(inventory_yaml())
