"""Data templates of the simulated device models, one per model family.

Each template lays its data out the way the real device's SNMP agent does (the OIDs, types,
string formats and quirks of the walks in ../shared/recordings/snmp and of the vendors' MIBs,
so the vendor profiles detect and read them); every value is made up here, varied per device
from a seed (serial numbers, firmware builds, temperatures, loads, uptimes, traffic).

A template is a function `template(sim) -> Records`; UPS templates also take the UPS state
(on battery or not, charge, ...) and say which subtrees depend on it, so a UPS can be served
as a series of snapshots while its mains fail and come back (agent/demo/scenario.py).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.demo.snmprec import (
    COUNTER32,
    COUNTER64,
    GAUGE32,
    INTEGER,
    TIMETICKS,
    Records,
)

SYS = "1.3.6.1.2.1.1"
IF = "1.3.6.1.2.1.2"
IFX = "1.3.6.1.2.1.31.1.1.1"
UPS = "1.3.6.1.2.1.33.1"
Window = tuple[float, float]


# ---------------------------------------------------------------------------------------------
# What a template knows about its device

@dataclass
class Link:
    """One switch port and what is plugged into it."""

    peer: str | None = None          # device id
    peer_kind: str | None = None
    rx: float = 0.0                  # bytes/s the switch receives on the port
    tx: float = 0.0                  # bytes/s it sends
    poe_watts: float = 0.0           # drawn by a PoE-powered peer
    down: Window | None = None       # unix-time window when the link is down
    errors: float = 0.0              # inbound errors per second (a bad connector)


@dataclass
class UpsState:
    on_battery: bool = False
    charge: float = 100.0            # %
    runtime_min: float = 40.0
    seconds_on_battery: int = 0
    load: float = 35.0               # %
    input_volts: float = 221.0
    battery_volts: float = 54.6
    alarms: int = 0

    @property
    def battery_status(self) -> int:  # UPS-MIB: 2 normal, 3 low
        return 3 if self.charge < 25 else 2


@dataclass
class Sim:
    """One simulated device: its inventory entry, model, random source and surroundings."""

    id: str
    kind: str
    name: str
    address: str
    model: str
    rng: random.Random
    links: dict[int | str, Link] = field(default_factory=dict)   # switches: port -> link
    own_rx: float = 20_000.0         # bytes/s into the device's own network port
    own_tx: float = 20_000.0
    poe_watts: float = 0.0           # what this (camera) draws from its PoE port
    trip: tuple[float, int] | None = None    # SPD monitor: (unix time, SPD number) of a strike

    def pick(self, *options):
        return self.rng.choice(options)

    def serial(self, prefix: str, digits: int = 9, alphabet: str = "0123456789") -> str:
        return prefix + "".join(self.rng.choice(alphabet) for _ in range(digits))

    def mac(self, oui: str) -> bytes:
        return bytes.fromhex(oui) + bytes(self.rng.randrange(256) for _ in range(3))

    def uptime_ticks(self) -> int:
        return self.rng.randrange(3, 400) * 8_640_000 + self.rng.randrange(8_640_000)


# ---------------------------------------------------------------------------------------------
# Shared groups: system, IF-MIB, ENTITY-MIB names

def system(r: Records, sim: Sim, descr: str, object_id: str,
           fields: str = "descr objectid uptime contact name location services") -> None:
    """The system group; `fields` leaves out what an agent does not have."""
    if "descr" in fields:
        r.string(f"{SYS}.1.0", descr)
    if "objectid" in fields:
        r.object_id(f"{SYS}.2.0", object_id)
    if "uptime" in fields:
        r.growing(f"{SYS}.3.0", TIMETICKS, sim.uptime_ticks(), 100)
    if "contact" in fields:
        r.string(f"{SYS}.4.0", "运维中心 值班电话 0571-8800 1100")
    if "name" in fields:
        r.string(f"{SYS}.5.0", sim.id)
    if "location" in fields:
        r.string(f"{SYS}.6.0", sim.name)
    if "services" in fields:
        r.integer(f"{SYS}.7.0", 72)


@dataclass
class Iface:
    index: int
    descr: str
    name: str | None = None
    alias: str = ""
    type: int = 6                    # ethernetCsmacd; 24 softwareLoopback, 136 l3ipvlan
    mtu: int = 1500
    mbps: int = 1000
    mac: bytes = b""
    admin: int = 1
    oper: int = 1
    rx: float = 0.0                  # bytes/s received
    tx: float = 0.0
    down: Window | None = None       # oper status 2 in this window (a pulse)
    errors: float = 0.0


def interfaces(r: Records, sim: Sim, ifaces: list[Iface], *, if_index: bool = True,
               speed: bool = True, octets: bool = True, ifx: bool = True,
               nul_padded_descr: int = 0) -> None:
    """IF-MIB ifTable (+ ifXTable). The flags leave out the columns some agents lack."""
    r.integer(f"{IF}.1.0", len(ifaces))
    t = f"{IF}.2.1"
    for f in ifaces:
        i = f.index
        up = f.oper == 1
        if if_index:
            r.integer(f"{t}.1.{i}", i)
        if nul_padded_descr:
            r.octets(f"{t}.2.{i}", f.descr.encode().ljust(nul_padded_descr, b"\0"))
        else:
            r.string(f"{t}.2.{i}", f.descr)
        r.integer(f"{t}.3.{i}", f.type)
        r.integer(f"{t}.4.{i}", f.mtu)
        if speed:
            r.gauge(f"{t}.5.{i}", min(f.mbps * 1_000_000, 2**32 - 1) if up else 0)
        r.octets(f"{t}.6.{i}", f.mac)
        r.integer(f"{t}.7.{i}", f.admin)
        if f.down and up:
            r.pulse(f"{t}.8.{i}", INTEGER, 1, 2, *f.down)
        else:
            r.integer(f"{t}.8.{i}", f.oper)
        r.ticks(f"{t}.9.{i}", sim.rng.randrange(0, 50_000) if up else 0)
        rx_pkts, tx_pkts = f.rx / 1100, f.tx / 1100
        if octets:
            _counter(r, f"{t}.10.{i}", COUNTER32, sim, f.rx)
            _counter(r, f"{t}.11.{i}", COUNTER32, sim, rx_pkts)
            _counter(r, f"{t}.16.{i}", COUNTER32, sim, f.tx)
            _counter(r, f"{t}.17.{i}", COUNTER32, sim, tx_pkts)
        if octets or not if_index:  # (agents without ifIndex still have these)
            r.counter32(f"{t}.13.{i}", 0)
            if f.errors:
                r.growing(f"{t}.14.{i}", COUNTER32, sim.rng.randrange(100, 3000), f.errors)
            else:
                r.counter32(f"{t}.14.{i}", 0)
            r.counter32(f"{t}.19.{i}", 0)
            r.counter32(f"{t}.20.{i}", 0)
    if not ifx:
        return
    for f in ifaces:
        i = f.index
        up = f.oper == 1
        r.string(f"{IFX}.1.{i}", f.name or f.descr)
        for col in (2, 3, 4, 5):
            _counter(r, f"{IFX}.{col}.{i}", COUNTER32, sim, (f.rx + f.tx) / 2e6)
        _counter(r, f"{IFX}.6.{i}", COUNTER64, sim, f.rx)
        _counter(r, f"{IFX}.7.{i}", COUNTER64, sim, f.rx / 1100)
        _counter(r, f"{IFX}.10.{i}", COUNTER64, sim, f.tx)
        _counter(r, f"{IFX}.11.{i}", COUNTER64, sim, f.tx / 1100)
        for col in (8, 9, 12, 13):
            _counter(r, f"{IFX}.{col}.{i}", COUNTER64, sim, (f.rx + f.tx) / 2e6)
        r.integer(f"{IFX}.14.{i}", 1)
        r.gauge(f"{IFX}.15.{i}", f.mbps if up else 0)
        r.integer(f"{IFX}.16.{i}", 2)
        r.integer(f"{IFX}.17.{i}", 1 if f.type == 6 else 2)
        r.string(f"{IFX}.18.{i}", f.alias)
        r.ticks(f"{IFX}.19.{i}", 0)


def _counter(r: Records, oid: str, tag: str, sim: Sim, rate: float) -> None:
    if rate <= 0:
        (r.counter64 if tag == COUNTER64 else r.counter32)(oid, 0)
        return
    days = sim.rng.uniform(1, 60)
    r.growing(oid, tag, int(rate * 86400 * days), round(rate * sim.rng.uniform(0.9, 1.1), 3))


def host_interfaces(sim: Sim, oui: str, eth: str = "eth0", mbps: int = 100,
                    loopback: bool = True) -> list[Iface]:
    out = []
    if loopback:
        out.append(Iface(1, "lo", type=24, mtu=65536, mbps=10, rx=300.0, tx=300.0))
    out.append(Iface(len(out) + 1, eth, mbps=mbps, mac=sim.mac(oui), rx=sim.own_rx,
                     tx=sim.own_tx))
    return out


def switch_ports(sim: Sim, names: Callable[[int], str], count: int, mbps: Callable[[int], int],
                 oui: str, alias: Callable[[int], str] = lambda i: "") -> list[Iface]:
    """Front ports 1..count; a port is up when something is plugged in (sim.links)."""
    base = sim.mac(oui)
    out = []
    for i in range(1, count + 1):
        link = _link_for(sim, i, names(i))
        peer = link.peer if link else None
        text = alias(i) or (f"to {peer}" if peer else "")
        out.append(Iface(i, names(i), alias=text, mbps=mbps(i),
                         mac=base[:5] + bytes([(base[5] + i) % 256]),
                         oper=1 if link else 2, rx=link.rx if link else 0.0,
                         tx=link.tx if link else 0.0, down=link.down if link else None,
                         errors=link.errors if link else 0.0))
    return out


def _link_for(sim: Sim, number: int, name: str) -> Link | None:
    return sim.links.get(number) or sim.links.get(name)


# ---------------------------------------------------------------------------------------------
# Cameras

HIK = "1.3.6.1.4.1.39165.1"


def hikvision_camera(sim: Sim) -> Records:
    """HIK-DEVICE-MIB strings. Fixed cameras (DS-2CD) answer that subtree only, with no system
    group at all, like the recorded DS-2CD2185FWD-I; the PTZ domes also have MIB-II."""
    r = Records()
    ptz = sim.model.startswith("DS-2DE")
    if ptz:
        system(r, sim, f"Hikvision {sim.model}", "1.3.6.1.4.1.39165.1.1")
        interfaces(r, sim, host_interfaces(sim, "c056e3"))
    r.string(f"{HIK}.1.0", sim.model)
    r.string(f"{HIK}.2.0", sim.pick("0x0", "0x1", "0x2"))
    build = sim.pick("220112", "220519", "221018", "230306")
    version = sim.pick("V5.7.3", "V5.7.12", "V5.7.15") if not ptz else sim.pick("V5.8.0",
                                                                                  "V5.8.4")
    r.string(f"{HIK}.3.0", f"{version} build {build}")
    r.string(f"{HIK}.7.0", f"{sim.rng.randrange(8, 35)} PERCENT")
    card = sim.rng.random() < 0.5
    r.string(f"{HIK}.8.0", f"{sim.pick(59.5, 119.1, 238.3):.1f} GB" if card else "0.0 GB")
    r.string(f"{HIK}.9.0", f"{sim.rng.randrange(40, 99) if card else 0} PERCENT")
    r.string(f"{HIK}.10.0", f"{sim.pick(512, 1024)} MB")
    r.string(f"{HIK}.11.0", f"{sim.rng.randrange(55, 88)} PERCENT")
    r.string(f"{HIK}.21.0", sim.pick("H.265", "H.264"))
    r.string(f"{HIK}.22.0", "MJPEG")
    return r


AXIS = "1.3.6.1.4.1.368.4.1"


def axis_camera(sim: Sim) -> Records:
    """sysDescr '; AXIS <model>; <type>; <firmware>; <date>; <hw id>; 1;', AXIS-VIDEO-MIB."""
    r = Records()
    ptz = sim.kind == "ptz_camera" or "Q60" in sim.model
    kind = "PTZ Dome Network Camera" if ptz else "Fixed Dome Network Camera"
    firmware = sim.pick("10.12.182", "10.12.199", "11.0.89")
    date = sim.pick("Feb 14 2023 09:32", "Apr 27 2023 15:08", "Oct 09 2023 11:51")
    descr = f"; {sim.model}; {kind}; {firmware}; {date}; {sim.pick('2D0.1', '2F1.2')}; 1;"
    system(r, sim, descr, "1.3.6.1.4.1.368.4")
    interfaces(r, sim, host_interfaces(sim, "accc8e", mbps=1000 if ptz else 100))
    sensors = [(1, 1)] + ([(2, 1)] if ptz else [])
    for kind_no, sensor in sensors:
        i = f"{kind_no}.{sensor}"
        r.integer(f"{AXIS}.3.1.3.{i}", 1)
        r.wobble(f"{AXIS}.3.1.4.{i}", INTEGER, sim.rng.uniform(34, 46), 4,
                 sim.rng.uniform(300, 900))
    r.integer(f"{AXIS}.4.1.2.1", 1)
    r.string(f"{AXIS}.6.1.2.1", "Casing")
    r.integer(f"{AXIS}.6.1.3.1", 1)
    r.string(f"{AXIS}.8.1.2.1", "SD_DISK")
    r.integer(f"{AXIS}.8.1.3.1", 1)
    return r


def vivotek_camera(sim: Sim) -> Records:
    """A plain MIB-II agent: 'Mega-Pixel Network Camera', enterprises.23465, ifTable."""
    r = Records()
    system(r, sim, "Mega-Pixel Network Camera", "1.3.6.1.4.1.23465")
    interfaces(r, sim, host_interfaces(sim, "0002d1"), ifx=False)
    r.octets("1.3.6.1.6.3.10.2.1.1.0", bytes.fromhex("80005ba901") + bytes(
        int(x) for x in sim.address.split(".")))
    r.integer("1.3.6.1.6.3.10.2.1.3.0", sim.rng.randrange(100_000, 9_000_000))
    return r


# ---------------------------------------------------------------------------------------------
# Recorders

HIKNVR = "1.3.6.1.4.1.50001.1"


def hikvision_nvr(sim: Sim) -> Records:
    """HIKVISION-MIB (enterprises.50001), disk rows written '<disk>.0', plus HIK-DEVICE-MIB
    identity and MIB-II."""
    r = Records()
    system(r, sim, "Hikvision company products", "1.3.6.1.4.1.50001")
    interfaces(r, sim, host_interfaces(sim, "bc5e33", mbps=1000))
    r.string(f"{HIK}.1.0", sim.model)
    r.string(f"{HIK}.3.0", f"V4.{sim.pick(62, 71, 74)}.{sim.rng.randrange(100, 300)} build "
                           f"{sim.pick('220408', '221122', '230510')}")
    r.string(f"{HIK}.7.0", f"{sim.rng.randrange(12, 40)} PERCENT")
    r.ip(f"{HIKNVR}.1.0", sim.address)
    r.integer(f"{HIKNVR}.2.0", 8000)
    r.string(f"{HIKNVR}.3.0", f"{sim.model[3:]}{sim.serial('20', 10)}CCRR{sim.serial('', 9)}WCVU")
    r.integer(f"{HIKNVR}.100.0", 2)
    r.integer(f"{HIKNVR}.101.0", 200)
    r.integer(f"{HIKNVR}.102.0", 1)
    r.integer(f"{HIKNVR}.200.0", 4)
    r.integer(f"{HIKNVR}.201.0", 1600)
    r.integer(f"{HIKNVR}.220.0", 4096)
    r.wobble(f"{HIKNVR}.221.0", INTEGER, sim.rng.uniform(35, 55), 6, sim.rng.uniform(400, 900))
    r.integer(f"{HIKNVR}.230.0", 0)
    disks = 4
    r.integer(f"{HIKNVR}.240.0", disks)
    for d in range(1, disks + 1):
        capacity = 7_630_885            # MB: an 8 TB drive
        free = sim.rng.randrange(0, 300_000)  # recording loops: nearly full
        r.string(f"{HIKNVR}.241.1.2.{d}.0", f"HDD{d}")
        r.integer(f"{HIKNVR}.241.1.3.{d}.0", 0)
        r.integer(f"{HIKNVR}.241.1.4.{d}.0", free)
        r.integer(f"{HIKNVR}.241.1.5.{d}.0", capacity)
    return r


DAHUA = "1.3.6.1.4.1.1004849.2.1"
HR = "1.3.6.1.2.1.25"


def dahua_nvr(sim: Sim) -> Records:
    """sysDescr = model, enterprises.1004849 (DAHUA-SNMP-MIB), IF-MIB, HOST-RESOURCES disks."""
    r = Records()
    system(r, sim, sim.model, "1.3.6.1.4.1.1004849.3.2.10")
    ifaces = host_interfaces(sim, "3cef8c", mbps=1000)
    ifaces.append(Iface(3, "eth1", mbps=1000, mac=sim.mac("3cef8c"), oper=2))
    interfaces(r, sim, ifaces)
    r.string(f"{DAHUA}.1.1.0", f"4.001.0000000.{sim.rng.randrange(1, 9)}.R")
    r.string(f"{DAHUA}.1.2.0", "1.00")
    r.integer(f"{DAHUA}.2.1.0", 32)
    r.string(f"{DAHUA}.2.4.0", sim.serial("8L0", 12, "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"))
    r.string(f"{DAHUA}.2.5.0", "V4.001.0000000.1")
    r.string(f"{DAHUA}.2.6.0", sim.model)
    r.string(f"{DAHUA}.2.7.0", "NVR")
    r.integer(f"{DAHUA}.2.8.0", 1)
    r.string(f"{DAHUA}.2.9.0", sim.id)
    r.wobble(f"{DAHUA}.3.0", INTEGER, sim.rng.uniform(18, 30), 8, sim.rng.uniform(200, 600))
    # HOST-RESOURCES hrStorageTable: RAM and the recording disks (allocation unit 1 MB)
    rows = [(1, "1.3.6.1.2.1.25.2.1.2", "Physical memory", 1024, 4096, 2300)]
    for d in range(1, 5):
        rows.append((1 + d, "1.3.6.1.2.1.25.2.1.4", f"HDD{d}", 1_048_576, 7_630_885,
                     7_630_885 - sim.rng.randrange(0, 250_000)))
    for index, kind, descr, unit, size, used in rows:
        r.integer(f"{HR}.2.3.1.1.{index}", index)
        r.object_id(f"{HR}.2.3.1.2.{index}", kind)
        r.string(f"{HR}.2.3.1.3.{index}", descr)
        r.integer(f"{HR}.2.3.1.4.{index}", unit)
        r.integer(f"{HR}.2.3.1.5.{index}", size)
        r.integer(f"{HR}.2.3.1.6.{index}", used)
    return r


# ---------------------------------------------------------------------------------------------
# Switches

ZYXEL = "1.3.6.1.4.1.890.1.15.3"
PETH = "1.3.6.1.2.1.105.1"


def _poe_budget(sim: Sim) -> float:
    return sum(link.poe_watts for link in sim.links.values())


def zyxel_switch(sim: Sim) -> Records:
    """Like the recorded XMG1915-10EP: sysDescr = model, no sysUpTime, an ifTable without the
    ifIndex, speed and octet columns (ifXTable has them), POWER-ETHERNET-MIB, ZYXEL-ES-COMMON
    with a '|' inside the firmware string."""
    r = Records()
    system(r, sim, sim.model, "1.3.6.1.4.1.890.1.15", "descr objectid contact location")
    ports = 28
    ifaces = switch_ports(sim, lambda i: f"swp{i - 1:02d}", ports,
                          lambda i: 1000, "bcf2af",
                          alias=lambda i: f"Port{i}")
    for f in ifaces:  # ifName as the device writes it; ifAlias carries "PortN"
        f.name = f.descr
    interfaces(r, sim, ifaces, if_index=False, speed=False, octets=False)
    budget = 375
    used = _poe_budget(sim)
    r.gauge(f"{PETH}.3.1.1.2.1", budget)
    r.integer(f"{PETH}.3.1.1.3.1", 1)
    r.wobble(f"{PETH}.3.1.1.4.1", GAUGE32, used, max(1.0, used * 0.04), sim.rng.uniform(200, 500))
    for port in range(1, 25):
        link = sim.links.get(port)
        r.integer(f"{PETH}.1.1.3.1.{port}", 1)
        if link and link.poe_watts:
            if link.down:
                r.pulse(f"{PETH}.1.1.6.1.{port}", INTEGER, 3, 2, *link.down)
            else:
                r.integer(f"{PETH}.1.1.6.1.{port}", 3)
        else:
            r.integer(f"{PETH}.1.1.6.1.{port}", 2)
    r.string(f"{ZYXEL}.1.6.0", f"V4.{sim.pick('70(ABMH.7)', '80(ABMH.3)')} | "
                               f"{sim.pick('05/12/2023', '11/26/2024')}")
    r.string(f"{ZYXEL}.1.11.0", sim.model)
    r.string(f"{ZYXEL}.1.12.0", sim.serial("S2", 11, "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"))
    r.wobble(f"{ZYXEL}.2.5.0", INTEGER, sim.rng.uniform(30, 45), 3, sim.rng.uniform(300, 900))
    r.wobble(f"{ZYXEL}.2.7.0", INTEGER, sim.rng.uniform(8, 20), 6, sim.rng.uniform(60, 240))
    return r


ADV = "1.3.6.1.4.1.10297"
PRONEER = "1.3.6.1.4.1.10297.202.7000"


def advantech_eki(sim: Sim) -> Records:
    """Like the recorded EKI-7712G-4FP: sysDescr 'Switch', no sysUpTime, ifTable without
    ifIndex/speed/octets (ifXTable has them), LAG rows 1000-1007 notPresent, vendor values all
    strings ('47.177', 'N/A' - one column with 'N/A' NUL-terminated)."""
    r = Records()
    system(r, sim, "Switch", "1.3.6.1.4.1.10297.202.7000", "descr objectid contact location")
    ifaces = switch_ports(sim, lambda i: f"gi{i}", 12, lambda i: 1000, "0013c2")
    for f in ifaces:
        f.name = f.descr
    ifaces += [Iface(1000 + k, f"lag{k + 1}", type=161, oper=6, mbps=0) for k in range(8)]
    interfaces(r, sim, ifaces, if_index=False, speed=False, octets=False)
    r.string(f"{ADV}.100.1.1.0", sim.model)
    r.string(f"{ADV}.100.1.4.0", sim.pick("1.02.03", "1.02.05", "1.03.01"))
    # SFP DOM of GE9-GE12: modules fitted where a fibre is plugged in
    for sfp in range(1, 5):
        port = 8 + sfp
        fitted = port in sim.links
        r.string(f"{PRONEER}.2.5.1.1.1.{sfp}", f"GE{port}")
        col = f"{PRONEER}.2.5.2.1"
        if fitted:
            r.string(f"{col}.2.{sfp}", f"{sim.rng.uniform(38, 56):.3f}")
            r.string(f"{col}.3.{sfp}", f"{sim.rng.uniform(3.25, 3.34):.3f}")
            r.string(f"{col}.4.{sfp}", f"{sim.rng.uniform(18, 26):.3f}")
            r.string(f"{col}.5.{sfp}", f"{sim.rng.uniform(-6.5, -4.8):.3f}")
            r.string(f"{col}.6.{sfp}", f"{sim.rng.uniform(-9.5, -6.0):.3f}")
        else:
            for c in (2, 3, 4, 5, 6):
                r.string(f"{col}.{c}.{sfp}", "N/A")
    poe = f"{PRONEER}.7.3"
    used = _poe_budget(sim)
    r.string(f"{poe}.1.2.0", "240")
    r.string(f"{poe}.1.3.0", f"{used:.1f}")
    for port in range(1, 9):
        link = sim.links.get(port)
        r.integer(f"{poe}.2.1.2.{port}", 1)
        if link and link.poe_watts:
            watts = link.poe_watts * sim.rng.uniform(0.95, 1.05)
            volts = sim.rng.uniform(46.8, 47.3)
            r.string(f"{poe}.3.1.2.{port}", f"{watts / volts * 1000:.0f}")
            r.string(f"{poe}.3.1.3.{port}", f"{volts:.3f}")
            r.string(f"{poe}.3.1.4.{port}", f"{watts:.3f}")
            r.string(f"{poe}.3.1.5.{port}", f"{sim.rng.uniform(44, 52):.3f}")
        else:
            r.octets(f"{poe}.3.1.2.{port}", b"N/A\0")
            r.string(f"{poe}.3.1.3.{port}", "N/A")
            r.string(f"{poe}.3.1.4.{port}", "0.000")
            r.string(f"{poe}.3.1.5.{port}", f"{sim.rng.uniform(40, 46):.3f}")
    return r


ENT = "1.3.6.1.2.1.47.1.1.1.1"
HH3C = "1.3.6.1.4.1.25506.2.6.1.1.1.1"


def h3c_switch(sim: Sim) -> Records:
    """Comware 7: sysDescr with the release and the model on its own line, full IF-MIB with
    GigabitEthernet/Ten-GigabitEthernet names, ENTITY-MIB names, HH3C-ENTITY-EXT load and
    temperature."""
    r = Records()
    model = sim.model.split()[-1]
    release = sim.pick("6328P03", "6357")
    descr = (f"H3C Comware Platform Software, Software Version 7.1.070, Release {release}\r\n"
             f"H3C {model}\r\nCopyright (c) 2004-2023 New H3C Technologies Co., Ltd. "
             f"All rights reserved.")
    system(r, sim, descr, "1.3.6.1.4.1.25506.1.1764")

    def name(i: int) -> str:      # ifName; inventory ports name these
        return f"GE1/0/{i}" if i <= 24 else f"XGE1/0/{i}"

    ifaces = switch_ports(sim, name, 28, lambda i: 1000 if i <= 24 else 10000, "70ba4f")
    for f in ifaces:
        f.name = f.descr
        f.descr = (f"GigabitEthernet1/0/{f.index}" if f.index <= 24
                   else f"Ten-GigabitEthernet1/0/{f.index}")
    ifaces += [Iface(29, "NULL0", type=1, mtu=1500, mbps=0, oper=1),
               Iface(30, "InLoopBack0", type=24, mtu=1536, mbps=0, oper=1),
               Iface(31, "Vlan-interface1", type=136, mbps=1000, mac=sim.mac("70ba4f"),
                     rx=40_000, tx=40_000),
               Iface(32, "Vlan-interface100", type=136, mbps=1000, mac=sim.mac("70ba4f"),
                     rx=60_000, tx=90_000)]
    interfaces(r, sim, ifaces)
    entities = [(1, "Chassis 1", 3), (2, "Board 1", 9), (3, "Fan 1", 7), (4, "Fan 2", 7),
                (5, "Power 1", 6), (6, "Power 2", 6)]
    for index, text, klass in entities:
        r.string(f"{ENT}.2.{index}", f"{model} {text}")
        r.integer(f"{ENT}.5.{index}", klass)
        r.string(f"{ENT}.7.{index}", text)
        board = text.startswith("Board")
        if board:
            r.wobble(f"{HH3C}.6.{index}", INTEGER, sim.rng.uniform(10, 18), 5,
                     sim.rng.uniform(120, 300))
            r.integer(f"{HH3C}.8.{index}", sim.rng.randrange(38, 52))
            r.wobble(f"{HH3C}.12.{index}", INTEGER, sim.rng.uniform(38, 44), 2,
                     sim.rng.uniform(600, 1200))
        else:
            r.integer(f"{HH3C}.6.{index}", 0)
            r.integer(f"{HH3C}.8.{index}", 0)
            r.integer(f"{HH3C}.12.{index}", 65535)
    return r


# ---------------------------------------------------------------------------------------------
# UPS units: (sim, state, live) -> records; `live` adds drifting readings (not in snapshots)

@dataclass(frozen=True)
class UpsTemplate:
    build: Callable[[Sim, UpsState, bool], Records]
    dynamic: tuple[str, ...]   # subtrees whose content depends on the state
    rating_va: int


def _ups_mib_measurements(r: Records, s: UpsState, rating_va: int, live: bool,
                          sim: Sim) -> None:
    """UPS-MIB battery, input, output and alarm groups (Delta card style)."""
    r.integer(f"{UPS}.2.1.0", s.battery_status)
    r.integer(f"{UPS}.2.2.0", s.seconds_on_battery)
    r.integer(f"{UPS}.2.3.0", round(s.runtime_min))
    r.integer(f"{UPS}.2.4.0", round(s.charge))
    r.integer(f"{UPS}.2.5.0", round(s.battery_volts * 10))
    r.null(f"{UPS}.2.6.0")                               # battery current: NULL, as recorded
    r.integer(f"{UPS}.2.7.0", 27 if s.on_battery else 25)
    r.integer(f"{UPS}.3.1.0", 0)
    r.integer(f"{UPS}.3.2.0", 1)
    r.integer(f"{UPS}.3.3.1.2.1", 0 if s.on_battery else 500)
    if live and not s.on_battery:
        r.wobble(f"{UPS}.3.3.1.3.1", INTEGER, s.input_volts, 3, sim.rng.uniform(200, 700))
    else:
        r.integer(f"{UPS}.3.3.1.3.1", 0 if s.on_battery else round(s.input_volts))
    r.integer(f"{UPS}.4.1.0", 5 if s.on_battery else 3)
    r.integer(f"{UPS}.4.2.0", 500)
    r.integer(f"{UPS}.4.3.0", 1)
    watts = rating_va * 0.9 * s.load / 100
    r.integer(f"{UPS}.4.4.1.2.1", 220)
    r.integer(f"{UPS}.4.4.1.3.1", round(watts / 220 * 10))
    if live:
        r.wobble(f"{UPS}.4.4.1.4.1", INTEGER, watts, watts * 0.05, sim.rng.uniform(100, 400))
        r.wobble(f"{UPS}.4.4.1.5.1", INTEGER, s.load, 2, sim.rng.uniform(100, 400))
    else:
        r.integer(f"{UPS}.4.4.1.4.1", round(watts))
        r.integer(f"{UPS}.4.4.1.5.1", round(s.load))
    r.integer(f"{UPS}.6.1.0", s.alarms)
    if s.on_battery:
        r.object_id(f"{UPS}.6.2.1.2.1", "1.3.6.1.2.1.33.1.6.3.2")   # upsAlarmOnBattery
        r.ticks(f"{UPS}.6.2.1.3.1", 0)


def delta_ups(sim: Sim, s: UpsState, live: bool) -> Records:
    """The Delta card of the recording: 'UPS SNMP Agent', enterprises.2254.2.4, UPS-MIB with
    upsIdentManufacturer at ...33.1.1.1 without '.0', NULL values, NUL-padded ifDescr."""
    r = Records()
    system(r, sim, "UPS SNMP Agent", "1.3.6.1.4.1.2254.2.4")
    interfaces(r, sim, host_interfaces(sim, "00307c", loopback=True), nul_padded_descr=16,
               ifx=False)
    model = sim.model.split()[-1]
    r.string(f"{UPS}.1.1", "Delta")                       # no .0 instance, as recorded
    r.string(f"{UPS}.1.2.0", model)
    r.string(f"{UPS}.1.3.0", sim.pick("03", "04"))
    r.string(f"{UPS}.1.4.0", sim.pick("01.12.08", "01.12.11"))
    r.string(f"{UPS}.1.5.0", sim.id)
    _ups_mib_measurements(r, s, 3000, live, sim)
    r.null(f"{UPS}.5.1.0")
    r.integer(f"{UPS}.9.1.0", 220)
    r.integer(f"{UPS}.9.2.0", 500)
    r.integer(f"{UPS}.9.3.0", 220)
    r.integer(f"{UPS}.9.4.0", 500)
    r.integer(f"{UPS}.9.5.0", 3000)
    r.integer(f"{UPS}.9.6.0", 2700)
    d = "1.3.6.1.4.1.2254.2.4"
    r.string(f"{d}.1.1.0", "Delta")
    r.string(f"{d}.1.2.0", model)
    r.string(f"{d}.1.3.0", sim.pick("03", "04"))
    r.string(f"{d}.1.4.0", sim.pick("01.12.08", "01.12.11"))
    r.integer(f"{d}.7.1.0", 0)
    r.integer(f"{d}.8.2.0", 1)
    r.integer(f"{d}.9.12.0", 0)
    r.integer(f"{d}.9.22.0", 0)
    return r


XPPC = "1.3.6.1.4.1.935.1.1.1"


def netagent_ups(sim: Sim, s: UpsState, live: bool) -> Records:
    """A Megatec NET Agent II card: sysObjectID written with a leading dot, a few UPS-MIB
    objects, the measurements in XPPC-MIB (0.1 V, 0.1 Hz, 0.1 C; seconds)."""
    r = Records()
    system(r, sim, "NET Agent II", ".1.3.6.1.4.1.935")
    interfaces(r, sim, host_interfaces(sim, "0003ea"), ifx=False)
    brand, model = sim.model.split(maxsplit=1)
    r.string(f"{UPS}.1.1.0", f"{brand} ELECTRIC CO., LTD")
    r.string(f"{UPS}.1.4.0", f"2.{sim.rng.randrange(40, 49)}.DP520.WEST")
    r.integer(f"{UPS}.2.5.0", round(s.battery_volts * 10))
    r.integer(f"{UPS}.3.2.0", 1)
    r.integer(f"{UPS}.4.3.0", 1)
    r.string(f"{XPPC}.1.1.1.0", model)
    r.string(f"{XPPC}.1.2.1.0", sim.pick("V1.20", "V1.31"))
    r.string(f"{XPPC}.1.2.3.0", sim.serial("KS", 12))
    r.string(f"{XPPC}.1.2.4.0", "3.1.NA2")
    r.integer(f"{XPPC}.2.1.1.0", s.battery_status)
    r.integer(f"{XPPC}.2.1.2.0", s.seconds_on_battery)
    r.integer(f"{XPPC}.2.2.1.0", round(s.charge))
    r.integer(f"{XPPC}.2.2.2.0", round(s.battery_volts * 10))
    r.integer(f"{XPPC}.2.2.3.0", 265 if s.on_battery else 252)
    r.integer(f"{XPPC}.2.2.4.0", round(s.runtime_min * 60))
    r.integer(f"{XPPC}.2.2.5.0", 1)
    if live and not s.on_battery:
        r.wobble(f"{XPPC}.3.2.1.0", INTEGER, s.input_volts * 10, 25, sim.rng.uniform(200, 600))
    else:
        r.integer(f"{XPPC}.3.2.1.0", 0 if s.on_battery else round(s.input_volts * 10))
    r.integer(f"{XPPC}.3.2.4.0", 0 if s.on_battery else 500)
    r.integer(f"{XPPC}.4.1.1.0", 3 if s.on_battery else 2)
    r.integer(f"{XPPC}.4.2.1.0", 2200)
    r.integer(f"{XPPC}.4.2.2.0", 500)
    if live:
        r.wobble(f"{XPPC}.4.2.3.0", INTEGER, s.load, 3, sim.rng.uniform(100, 400))
    else:
        r.integer(f"{XPPC}.4.2.3.0", round(s.load))
    r.integer(f"{XPPC}.9.1.3.0", 0)    # no environment probe fitted (reads 0)
    r.integer(f"{XPPC}.9.1.4.0", 0)
    return r


MGE = "1.3.6.1.4.1.705.1"


def mge_ups(sim: Sim, s: UpsState, live: bool) -> Records:
    """An MGE Galaxy three-phase UPS: MG-SNMP-UPS-MIB (0.1 V, 0.1 Hz, 0.1 A, %), a few UPS-MIB
    rows with an extra '.0' as Gauge32 in 0.1 V, as the recorded Galaxy 7000 writes them."""
    r = Records()
    family, kva = "Galaxy 5500", 40
    m = re.search(r"(\d+)\s*kVA", sim.model)
    if m:
        kva = int(m.group(1))
    system(r, sim, f"MGE {family} UPS {kva} kVA", "1.3.6.1.4.1.705.1.2")
    interfaces(r, sim, host_interfaces(sim, "0006b4"), ifx=False)
    r.gauge(f"{UPS}.3.3.1.3.1.0", 2300)
    r.gauge(f"{UPS}.4.4.1.2.1.0", 2300)
    r.gauge(f"{UPS}.4.4.1.5.1.0", round(s.load))
    r.integer(f"{UPS}.4.1.0", 5 if s.on_battery else 3)
    r.integer(f"{UPS}.6.1.0", s.alarms)
    r.string(f"{MGE}.1.1.0", family)
    r.string(f"{MGE}.1.2.0", str(kva * 1000))
    r.string(f"{MGE}.1.4.0",
             f"GDET: {sim.pick('CK', 'CM')}-5-AR / DIGIT: {sim.pick('DF', 'DH')}-5-AR")
    r.string(f"{MGE}.1.7.0", sim.serial("57", 8))
    r.integer(f"{MGE}.5.1.0", round(s.runtime_min * 60))
    r.integer(f"{MGE}.5.2.0", round(s.charge))
    r.integer(f"{MGE}.5.5.0", 4320)
    r.integer(f"{MGE}.5.6.0", 0)
    if live:
        r.wobble(f"{MGE}.5.7.0", INTEGER, 23, 1.5, sim.rng.uniform(900, 1800))
    else:
        r.integer(f"{MGE}.5.7.0", 23)
    for col in (9, 11, 14, 15, 16):
        r.integer(f"{MGE}.5.{col}.0", 2)
    r.integer(f"{MGE}.6.1.0", 3)
    for phase in (1, 2, 3):
        if live:
            r.wobble(f"{MGE}.6.2.1.2.{phase}.0", INTEGER, 3990 + 10 * phase, 25,
                     sim.rng.uniform(200, 600))
        else:
            r.integer(f"{MGE}.6.2.1.2.{phase}.0", 4000)
        r.integer(f"{MGE}.6.2.1.3.{phase}.0", 500)
        r.integer(f"{MGE}.6.2.1.6.{phase}.0", 180 + 10 * phase)
    r.integer(f"{MGE}.6.3.0", 2)
    r.integer(f"{MGE}.6.4.0", 1)
    r.integer(f"{MGE}.7.1.0", 3)
    load = [s.load + d for d in (2, -3, 1)]
    for phase in (1, 2, 3):
        r.integer(f"{MGE}.7.2.1.2.{phase}.0", 2300)
        r.integer(f"{MGE}.7.2.1.3.{phase}.0", 500)
        if live:
            r.wobble(f"{MGE}.7.2.1.4.{phase}.0", INTEGER, load[phase - 1], 2,
                     sim.rng.uniform(120, 500))
        else:
            r.integer(f"{MGE}.7.2.1.4.{phase}.0", round(load[phase - 1]))
        r.integer(f"{MGE}.7.2.1.5.{phase}.0",
                  round(kva * 1000 / 3 * load[phase - 1] / 100 / 230 * 10))
    r.integer(f"{MGE}.7.3.0", 1 if s.on_battery else 2)
    for col in (4, 7, 9, 10, 11):
        r.integer(f"{MGE}.7.{col}.0", 2)
    return r


UPS_TEMPLATES = {
    "delta": UpsTemplate(delta_ups, (f"{UPS}.2", f"{UPS}.3", f"{UPS}.4", f"{UPS}.6"), 3000),
    "netagent": UpsTemplate(netagent_ups, (f"{XPPC}.2", f"{XPPC}.3", f"{XPPC}.4"), 6000),
    "mge": UpsTemplate(mge_ups, (f"{MGE}.5", f"{MGE}.6", f"{MGE}.7", f"{UPS}.4", f"{UPS}.6"),
                       40000),
}


# ---------------------------------------------------------------------------------------------
# Lightning protection and environment monitors

POSEIDON = "1.3.6.1.4.1.21796.3.3"


def poseidon_spd(sim: Sim) -> Records:
    """An SPD monitor with the Poseidon structure (docs/machine-room-sensors.md): per SPD a
    status contact (1 healthy/closed, 0 tripped, alarm when off) and a strike-counter input,
    a leakage-current sensor (mA x 10) per SPD; door and water contacts; temperature and
    humidity. A strike (sim.trip) trips the SPD's contact, counts one pulse and raises its
    leakage current, for good (a tripped SPD module must be replaced)."""
    r = Records()
    room = sim.kind == "spd_monitor" and sim.model.startswith("Poseidon 4002")
    descr = ("Poseidon 4002 SNMP Supervisor v2.0.15" if room
             else f"{sim.model} SNMP Supervisor v1.4.{sim.rng.randrange(2, 9)}")
    system(r, sim, descr, "1.3.6.1.4.1.21796.3.3")
    spds = (["AC-IN", "UPS-OUT", "NET"] if room else ["AC-IN", "POE-SW"])
    inputs: list[tuple[str, str, int | None]] = []   # (name, role, spd number)
    for n, where in enumerate(spds, start=1):
        inputs.append((f"SPD{n} {where}", "status", n))
        inputs.append((f"SPD{n}-CNT {where}", "counter", n))
    if not room:
        inputs += [("DOOR1 cabinet", "door", None), ("WATER1", "water", None)]
    trip_at, trip_spd = sim.trip if sim.trip else (None, None)
    for i, (name, role, n) in enumerate(inputs, start=1):
        tripping = trip_at is not None and n == trip_spd
        r.integer(f"{POSEIDON}.1.1.1.{i}", i)
        if role == "status":
            if tripping:
                r.step(f"{POSEIDON}.1.1.2.{i}", INTEGER, 1, 0, trip_at)
                r.step(f"{POSEIDON}.1.1.5.{i}", INTEGER, 0, 1, trip_at)
            else:
                r.integer(f"{POSEIDON}.1.1.2.{i}", 1)
                r.integer(f"{POSEIDON}.1.1.5.{i}", 0)
        else:
            r.integer(f"{POSEIDON}.1.1.2.{i}", 1 if role == "door" else 0)
            r.integer(f"{POSEIDON}.1.1.5.{i}", 0)
        r.string(f"{POSEIDON}.1.1.3.{i}", name)
        r.integer(f"{POSEIDON}.1.1.4.{i}", {"status": 1, "door": 1, "water": 2}.get(role, 0))
        if role == "counter":
            count = sim.rng.randrange(0, 12)
            if tripping:
                r.step(f"{POSEIDON}.1.1.6.{i}", INTEGER, count, count + 1, trip_at)
            else:
                r.integer(f"{POSEIDON}.1.1.6.{i}", count)
        else:
            r.integer(f"{POSEIDON}.1.1.6.{i}", 0)
    r.integer(f"{POSEIDON}.2.1.1.1", 1)
    r.integer(f"{POSEIDON}.2.1.2.1", 0)
    r.string(f"{POSEIDON}.2.1.3.1", "SIREN1")
    sensors: list[tuple[str, int, str, float, float]] = []   # name, unit, text, value, spread
    for n in range(1, len(spds) + 1):
        sensors.append((f"SPD{n}-LEAK", 5, "mA", sim.rng.uniform(0.1, 0.5), 0.05))
    sensors.append(("TEMP1", 0, "C", sim.rng.uniform(22, 27) if room else
                    sim.rng.uniform(26, 34), 1.0))
    sensors.append(("RH1", 3, "%RH", sim.rng.uniform(40, 60), 3.0))
    for j, (name, unit, text, value, spread) in enumerate(sensors, start=1):
        tripping = trip_at is not None and name == f"SPD{trip_spd}-LEAK"
        r.integer(f"{POSEIDON}.3.1.1.{j}", j)
        r.string(f"{POSEIDON}.3.1.2.{j}", name)
        if tripping:
            after = sim.rng.uniform(1.6, 2.4)
            r.step(f"{POSEIDON}.3.1.4.{j}", INTEGER, 1, 3, trip_at)
            r.string(f"{POSEIDON}.3.1.5.{j}", f"{value:.1f} {text}")
            r.step(f"{POSEIDON}.3.1.6.{j}", INTEGER, round(value * 10), round(after * 10),
                   trip_at)
        else:
            r.integer(f"{POSEIDON}.3.1.4.{j}", 1)
            r.string(f"{POSEIDON}.3.1.5.{j}", f"{value:.1f} {text}")
            r.wobble(f"{POSEIDON}.3.1.6.{j}", INTEGER, value * 10, spread * 10,
                     sim.rng.uniform(300, 1200))
        r.integer(f"{POSEIDON}.3.1.9.{j}", unit)
        r.string(f"{POSEIDON}.3.1.10.{j}", text)
    if trip_at is not None:
        r.step(f"{POSEIDON}.50.1.0", GAUGE32, 0, 1, trip_at)
    else:
        r.gauge(f"{POSEIDON}.50.1.0", 0)
    r.string(f"{POSEIDON}.70.1.0", ":".join(f"{b:02X}" for b in sim.mac("000a59")))
    r.integer(f"{POSEIDON}.99.1.1.0", 0)     # unitType: Celsius
    return r


EMS = "1.3.6.1.4.1.318.1.1.10"


def netbotz_env(sim: Sim) -> Records:
    """A NetBotz 250 rack monitor (PowerNet-MIB): door, smoke, water and fire-panel contacts,
    wired temperature/humidity sensors, wireless rack temperature sensors, relay and outlet."""
    r = Records()
    model = sim.model.split()[-1]
    descr = (f"APC Web/SNMP Management Card (MB:v4.2.9 PF:v2.3.2.1 PN:apc_hw05_aos_232.bin "
             f"AF1:v2.3.2.1 AN1:apc_hw05_nb250_232.bin MN:{model} HR:05 "
             f"SN: {sim.serial('ZA', 10)} MD:03/14/2022)")
    system(r, sim, descr, "1.3.6.1.4.1.318.1.3.8.5")
    interfaces(r, sim, host_interfaces(sim, "28299a"), ifx=False)
    r.integer(f"{EMS}.3.2.1.1.1.1", 1)
    r.string(f"{EMS}.3.2.1.1.2.1", "Relay")
    r.integer(f"{EMS}.3.2.1.1.3.1", 2)
    r.integer(f"{EMS}.3.3.1.1.1.1", 1)
    r.string(f"{EMS}.3.3.1.1.2.1", "Outlet")
    r.integer(f"{EMS}.3.3.1.1.3.1", 1)
    r.integer(f"{EMS}.4.2.1.0", 1)                       # Celsius
    wired = [("TEMP1 机柜A进风", 21.5, 45), ("TEMP2 机柜B出风", 29.0, 38)]
    for n, (name, temp, rh) in enumerate(wired, start=1):
        i = f"0.{n}"
        r.integer(f"{EMS}.4.2.3.1.1.{i}", 0)
        r.integer(f"{EMS}.4.2.3.1.2.{i}", n)
        r.string(f"{EMS}.4.2.3.1.3.{i}", name)
        r.string(f"{EMS}.4.2.3.1.4.{i}", "分局机房")
        r.wobble(f"{EMS}.4.2.3.1.5.{i}", INTEGER, temp, 1, sim.rng.uniform(600, 1200))
        r.wobble(f"{EMS}.4.2.3.1.6.{i}", INTEGER, rh, 3, sim.rng.uniform(900, 1800))
        r.integer(f"{EMS}.4.2.3.1.7.{i}", 2)
        r.integer(f"{EMS}.4.2.3.1.8.{i}", 1)
        r.wobble(f"{EMS}.4.2.3.1.9.{i}", INTEGER, temp * 10, 10, sim.rng.uniform(600, 1200))
    contacts = [("DOOR1 机房门", 1, 2), ("SMOKE1", 1, 2), ("WATER1 地板", 1, 2),
                ("FIRE1 消防主机", 1, 2)]
    for n, (name, state, alarm_gen) in enumerate(contacts, start=1):
        i = f"0.{n}"
        for col, value in ((1, 0), (2, n)):
            r.integer(f"{EMS}.4.3.2.1.{col}.{i}", value)
        r.string(f"{EMS}.4.3.2.1.3.{i}", name)
        r.string(f"{EMS}.4.3.2.1.4.{i}", "分局机房")
        r.integer(f"{EMS}.4.3.2.1.5.{i}", state)
        r.integer(f"{EMS}.4.3.2.1.7.{i}", 1)
        r.integer(f"{EMS}.4.3.2.1.8.{i}", 2)
        r.integer(f"{EMS}.4.3.4.1.1.{i}", 0)
        r.integer(f"{EMS}.4.3.4.1.2.{i}", n)
        r.string(f"{EMS}.4.3.4.1.3.{i}", name)
        r.string(f"{EMS}.4.3.4.1.4.{i}", "分局机房")
        r.integer(f"{EMS}.4.3.4.1.5.{i}", 2)
        r.integer(f"{EMS}.4.3.4.1.6.{i}", alarm_gen)
        r.integer(f"{EMS}.4.3.4.1.7.{i}", 1)
        r.integer(f"{EMS}.4.3.4.1.8.{i}", 3)
        r.string(f"{EMS}.4.3.4.1.20.{i}", "")
    wireless = [("TEMP3 机柜C", 24.0), ("TEMP4 机柜D", 26.5), ("TEMP5 UPS间", 23.0)]
    for n, (name, temp) in enumerate(wireless, start=1):
        w = f"{EMS}.5.1.1.1"
        r.integer(f"{w}.1.{n}", n)
        r.octets(f"{w}.2.{n}", sim.serial("", 16, "0123456789abcdef").encode())
        r.string(f"{w}.3.{n}", name)
        r.wobble(f"{w}.5.{n}", INTEGER, temp * 10, 8, sim.rng.uniform(600, 1200))
        r.integer(f"{w}.8.{n}", -1)
        r.integer(f"{w}.11.{n}", 1)
        r.integer(f"{w}.16.{n}", sim.rng.randrange(29, 33))
        r.integer(f"{w}.19.{n}", sim.rng.randrange(60, 95))
        r.string(f"{w}.22.{n}", "分局机房")
    return r


# ---------------------------------------------------------------------------------------------
# The catalogue: model label -> template

Template = Callable[[Sim], Records]

DEFAULT_MODEL = {
    "ptz_camera": "DS-2DE4425IW-DE", "fixed_camera": "DS-2CD2T47G2-L", "nvr": "DS-7732NI-K4",
    "switch": "GS1920-24HP", "ups": "Delta N-3K", "spd_monitor": "Poseidon2 3266",
    "env_monitor": "NetBotz NBRK0250A",
}

# (pattern on the model label, template, the profile that should read it)
CATALOGUE: list[tuple[str, Template | str, str]] = [
    (r"^DS-2(CD|DE)", hikvision_camera, "hikvision-camera"),
    (r"^AXIS ", axis_camera, "axis-camera"),
    (r"^(IB|FD|IP|MD|SD)\d", vivotek_camera, "vivotek-camera"),
    (r"^DS-(7|8|9)\d", hikvision_nvr, "hikvision-nvr"),
    (r"^DH[I]?-NVR", dahua_nvr, "dahua-nvr"),
    (r"^(GS|XGS|XMG|XS)\d", zyxel_switch, "zyxel-switch"),
    (r"^EKI-", advantech_eki, "advantech-eki"),
    (r"^H3C ", h3c_switch, "h3c-comware"),
    (r"^Delta ", "delta", "delta-ups"),
    (r"^(KSTAR|INVT|EAST) ", "netagent", "megatec-netagent"),
    (r"^MGE ", "mge", "mge-ups"),
    (r"^Poseidon", poseidon_spd, "hwg-poseidon"),
    (r"^NetBotz ", netbotz_env, "apc-netbotz"),
]


def lookup(model: str) -> tuple[Template | str, str]:
    """The template (a function, or the name of a UPS template) and expected profile."""
    for pattern, template, profile in CATALOGUE:
        if re.search(pattern, model):
            return template, profile
    raise KeyError(model)
