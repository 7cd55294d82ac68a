"""Generating the snmpsim data directory for an inventory.

For every device of the inventory (each on its own loopback address and port):
`data/<community>/1.3.6.1.6.1.1.<i>.snmprec`, i being the device's place in the endpoint list
that snmpsim is started with (agent/demo/responder.py picks the file by that transport id).
The model label picks the template (agent/demo/models.py); the topology (uplink, powered_by)
gives switches their busy ports, PoE loads and traffic; the scenario adds the timeline.
"""

from __future__ import annotations

import ipaddress
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.demo import models
from agent.demo.models import Link, Sim, UpsState
from agent.demo.scenario import Plan, Scenario
from agent.demo.snmprec import Records, write_snapshots
from agent.inventory import Device, Inventory

UDP_DOMAIN = "1.3.6.1.6.1.1"
"""snmpsim's transport id of its i-th UDP/IPv4 endpoint is UDP_DOMAIN.<i> (offset 0)."""

VIDEO = {"ptz_camera": (600_000, 760_000), "fixed_camera": (420_000, 560_000)}  # bytes/s
LIVE_VIEW = 1_800_000          # what a community sends to the centre (a few live streams)
SMALL = 1_500.0                # UPS cards, monitors


@dataclass
class Generated:
    data_dir: Path
    endpoints: list[tuple[str, int]]       # in snmpsim's endpoint order
    devices: list[str]                     # device ids, same order
    profiles: dict[str, str]               # device id -> profile that should read it
    plan: Plan
    files: int = 0
    notes: list[str] = field(default_factory=list)


class DemoError(Exception):
    """A problem that stops the demo, phrased for the user."""


def _camera_watts(device: Device, model: str, rng: random.Random) -> float:
    if device.kind == "ptz_camera":
        return rng.uniform(22, 27) if model.startswith("AXIS") else rng.uniform(10, 16)
    return rng.uniform(4, 7)


def build_sims(inventory: Inventory, plan: Plan) -> dict[str, Sim]:
    devices = inventory.devices
    sims: dict[str, Sim] = {}
    for d in devices.values():
        model = d.labels.get("model") or models.DEFAULT_MODEL.get(d.kind, "")
        sims[d.id] = Sim(d.id, d.kind, d.name or d.id, d.address, model,
                         random.Random(f"{d.id}/{model}"))
    # cameras: video out, PoE draw
    for d in devices.values():
        sim = sims[d.id]
        if d.kind in VIDEO:
            sim.own_tx = sim.rng.uniform(*VIDEO[d.kind])
            sim.own_rx = 15_000.0
            sim.poe_watts = _camera_watts(d, sim.model, sim.rng)
        elif d.kind in ("ups", "spd_monitor", "env_monitor"):
            sim.own_rx = sim.own_tx = SMALL
    below = downstream(inventory)
    video_below = {sw: sum(sims[x].own_tx for x in ids if devices[x].kind in VIDEO)
                   for sw, ids in below.items()}
    site_video: dict[str, float] = {}
    for d in devices.values():
        if d.kind in VIDEO:
            site_video[d.site] = site_video.get(d.site, 0.0) + sims[d.id].own_tx
    nvr_under = {sw for sw, ids in below.items() if any(devices[x].kind == "nvr" for x in ids)}
    for d in devices.values():
        if d.kind == "nvr":
            sims[d.id].own_rx = site_video.get(d.site, 0.0)
            sims[d.id].own_tx = LIVE_VIEW / 2
    # links on switches, seen from the switch
    for d in devices.values():
        if d.uplink is None:
            continue
        sw = sims.get(d.uplink.switch)
        if sw is None:
            continue
        peer = sims[d.id]
        if d.kind == "switch":
            up = video_below.get(d.id, 0.0)
            rx = LIVE_VIEW if (d.id in nvr_under or not up) else up
            link = Link(d.id, d.kind, rx=rx, tx=30_000.0)
        elif d.kind == "nvr":
            link = Link(d.id, d.kind, rx=peer.own_tx, tx=peer.own_rx)
        else:
            link = Link(d.id, d.kind, rx=peer.own_tx, tx=peer.own_rx)
        if d.powered_by and d.powered_by.switch == sw.id and \
                str(d.powered_by.port) == str(d.uplink.port):
            link.poe_watts = peer.poe_watts
        link.down = plan.link_down.get(d.id)
        sw.links[d.uplink.port] = link
    # each switch's own uplink port, and the core's link to the city network
    for d in devices.values():
        if d.kind != "switch":
            continue
        sim = sims[d.id]
        if d.uplink is not None:
            up = video_below.get(d.id, 0.0)
            tx = LIVE_VIEW if (d.id in nvr_under or not up) else up
            port = _own_uplink_port(sim)
            if port is not None and port not in sim.links:
                sim.links[port] = Link(d.uplink.switch, "switch", rx=30_000.0, tx=tx)
        elif sim.model.startswith("H3C"):
            communities = len({x.site for x in devices.values() if x.site != d.site})
            sim.links.setdefault("XGE1/0/25",
                                 Link(None, "city", rx=200_000.0,
                                      tx=LIVE_VIEW * max(1, communities)))
    # a bad connector somewhere: growing input errors on one camera port
    for sim in sims.values():
        if sim.model.startswith("GS1920") and sim.id.endswith("by-1") and 7 in sim.links:
            sim.links[7].errors = 0.05
    for device_id, trip in plan.trips.items():
        if device_id in sims:
            sims[device_id].trip = trip
    return sims


def _own_uplink_port(sim: Sim) -> int | str | None:
    """The port a switch uses towards its parent (by model)."""
    if sim.model.startswith(("GS", "XGS", "XMG")):
        return 28
    if sim.model.startswith("EKI-"):
        return 9
    return None


def downstream(inventory: Inventory) -> dict[str, list[str]]:
    """switch id -> every device below it (by uplink), recursively."""
    children: dict[str, list[str]] = {}
    for d in inventory.devices.values():
        if d.uplink is not None:
            children.setdefault(d.uplink.switch, []).append(d.id)
    out: dict[str, list[str]] = {}

    def walk(sw: str, seen: set[str]) -> list[str]:
        found = []
        for child in children.get(sw, []):
            if child in seen:
                continue
            seen.add(child)
            found.append(child)
            found.extend(walk(child, seen))
        return found

    for d in inventory.devices.values():
        if d.kind == "switch":
            out[d.id] = walk(d.id, {d.id})
    return out


def check_addresses(inventory: Inventory) -> list[tuple[str, int]]:
    """The endpoints, in inventory order; only loopback addresses, each used once."""
    seen: dict[tuple[str, int], str] = {}
    out = []
    for d in inventory.devices.values():
        try:
            address = ipaddress.ip_address(d.address)
        except ValueError:
            raise DemoError(f"{d.id}: address '{d.address}' is not an IP address; the demo "
                            f"simulates devices on 127.0.0.0/8 addresses only") from None
        if address.version != 4 or not address.is_loopback:
            raise DemoError(f"{d.id}: address {d.address} is not in 127.0.0.0/8; the demo "
                            f"only ever listens on loopback addresses")
        endpoint = (str(address), int(d.port or 161))
        if endpoint in seen:
            raise DemoError(f"{d.id}: {endpoint[0]}:{endpoint[1]} is also {seen[endpoint]}'s "
                            f"address; every simulated device needs its own")
        seen[endpoint] = d.id
        out.append(endpoint)
    return out


def generate(inventory: Inventory, workdir: Path, community: str, t0: float,
             scale: float = 1.0, scenario: Scenario | None = None,
             progress: Callable[[int, int], None] | None = None) -> Generated:
    """Write workdir/data (and workdir/variation for snapshots); return what was written."""
    if not community or any(ch in community for ch in "/\\\0") or community.startswith("."):
        raise DemoError(f"community {community!r} cannot name a data directory")
    endpoints = check_addresses(inventory)
    data = workdir / "data"
    variation = workdir / "variation"
    for old in (data, variation):
        if old.exists():
            shutil.rmtree(old)
    (data / community).mkdir(parents=True)
    (data / f"{community}.snmprec").write_text(
        "1.3.6.1.2.1.1.1.0|4|vigil demo: no simulated device at this address\n")
    scenario = scenario or Scenario()
    plan = scenario.plan(t0, scale, dict(inventory.devices), downstream(inventory))
    sims = build_sims(inventory, plan)
    out = Generated(data, endpoints, list(inventory.devices), {}, plan)
    total = len(inventory.devices)
    for i, d in enumerate(inventory.devices.values()):
        sim = sims[d.id]
        try:
            template, profile = models.lookup(sim.model)
        except KeyError:
            raise DemoError(f"{d.id}: no simulated model matches its model label "
                            f"'{sim.model}' (known: see agent/demo/models.py CATALOGUE)") from None
        out.profiles[d.id] = profile
        if isinstance(template, str):
            records = _ups_records(models.UPS_TEMPLATES[template], sim, plan, variation)
        else:
            records = template(sim)
        silent = plan.silent.get(d.id)
        text = records.render(silent=(int(silent[0]), int(silent[1])) if silent else None)
        path = data / community / f"{UDP_DOMAIN}.{i}.snmprec"
        path.write_text(text, encoding="latin-1")
        out.files += 1
        if progress:
            progress(i + 1, total)
    return out


def _ups_records(template: models.UpsTemplate, sim: Sim, plan: Plan,
                 variation: Path) -> Records:
    steady = UpsState(load=sim.rng.uniform(25, 45), input_volts=sim.rng.uniform(218, 226),
                      runtime_min=sim.rng.uniform(30, 45))
    timeline = plan.ups.get(sim.id)
    if timeline is None:
        return template.build(sim, steady, True)
    states, period = timeline
    seed = sim.rng.getstate()
    main = template.build(sim, steady, True).without(list(template.dynamic))
    snapshots = []
    for state in states:
        sim.rng.setstate(seed)          # same serials and builds in every snapshot
        snapshots.append(template.build(sim, state, False).only(list(template.dynamic))
                         .render())
    directory = variation / sim.id
    write_snapshots(directory, snapshots)
    for prefix in template.dynamic:
        main.multiplex(prefix, directory, period)
    return main
