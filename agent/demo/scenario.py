"""The demo's timeline: what happens when, and how each event is simulated.

Times are seconds after the demo starts (snmpsim's start), multiplied by the timeline scale
(`vigil demo --timeline-scale 0.25` plays the 8 minutes in 2). Every event is data in the
generated .snmprec files, played by snmpsim itself (agent/demo/snmprec.py says how), or an
Action the demo performs at its time (a trap sent, an ONVIF simulator control call):

- 1:00  东湖社区 mains fail in a thunderstorm: UPS ups-dh on battery, its charge falling.
        (multiplex: 30 s snapshots of the UPS-MIB battery/input/output/alarm groups; and the
        UPS sends upsTrapOnBattery to the agent's trap receiver from its own address)
- 1:30  长青社区 camera ptz-cq-05 stops answering; its switch port goes down.
        (delay: a drop window on every record; numeric pulse on the switch's ifOperStatus;
        the ONVIF simulator's `silent` fault)
- 2:30  lightning strike at 东湖社区: SPD1 trips, strike counter +1, leakage current up, for
        good. (numeric steps at that unix time on the Poseidon-style SPD monitor)
- 4:00  东湖社区 mains back: ups-dh on mains, recharging (full at 8:00). (multiplex;
        upsTrapAlarmEntryRemoved of upsAlarmOnBattery)
- 4:15  ptz-cq-05 answers again.
- 4:45  新华社区: road works cut the fibre to street cabinet 3: its switch sw-xh-3 and the 8
        cameras behind it are unreachable; the fibre port on sw-xh-1 goes down.
        (delay; numeric pulse)
- 7:30  the fibre is spliced: the cabinet is back.
- 8:00  end: everything is back except the tripped SPD (a module to replace).

A device silent for more than 30 s fails at least two consecutive polls (15 s apart; a poll
fails after 2 x 2 s), so the agent shows it down for at least 26 s: longer than Prometheus'
15 s scrape interval. The silences last 165 s (33 s at --timeline-scale 0.2).

The cameras' own faults and events (ONVIF, RTSP, picture) are in cameras.py. An event whose
devices are not in the inventory is left out (and said so).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.demo.models import UpsState

SLOT = 30.0          # seconds per UPS snapshot (unscaled)
UPS_ON_BATTERY = "1.3.6.1.2.1.33.2.1"            # UPS-MIB upsTrapOnBattery
UPS_ALARM_REMOVED = "1.3.6.1.2.1.33.2.4"         # upsTrapAlarmEntryRemoved
UPS_ALARM_DESCR = "1.3.6.1.2.1.33.1.6.2.1.2"     # upsAlarmDescr
UPS_ALARM_ON_BATTERY = "1.3.6.1.2.1.33.1.6.3.2"  # upsAlarmOnBattery
END = 480.0


@dataclass(frozen=True)
class Event:
    at: float          # seconds after the start, unscaled
    text: str


@dataclass(frozen=True)
class Action:
    """Something the demo does at a time (unscaled seconds): `onvif`, a call of the ONVIF
    simulator's control API ({"action": ..., ...}); `trap`, an SNMPv2c trap sent from the
    device's address ({"oid": trap OID, "varbinds": [[oid, "oid"|"int"|"str", value]]})."""

    at: float
    kind: str
    device: str
    args: dict


@dataclass
class Plan:
    """What the generator applies, per device (times are unix seconds)."""

    t0: float
    scale: float
    silent: dict[str, tuple[float, float]] = field(default_factory=dict)
    link_down: dict[str, tuple[float, float]] = field(default_factory=dict)  # by peer device
    ups: dict[str, tuple[list[UpsState], float]] = field(default_factory=dict)  # states, period
    trips: dict[str, tuple[float, int]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)   # role -> device id, for tests/output

    def at(self, offset: float) -> float:
        return self.t0 + offset * self.scale

    def silence_onvif(self, devices: dict[str, object], ids: list[str],
                      window: tuple[float, float]) -> None:
        """Those of `ids` with an ONVIF service stop answering it for the window too."""
        for device in ids:
            if getattr(devices.get(device), "onvif", None) is not None:
                fault = {"action": "fault", "operation": "*"}
                self.actions.append(Action(window[0], "onvif", device, {**fault, "mode": "silent"}))
                self.actions.append(Action(window[1], "onvif", device, {**fault, "mode": None}))


@dataclass(frozen=True)
class Scenario:
    outage_ups: str = "ups-dh"
    outage: tuple[float, float, float] = (60.0, 240.0, 480.0)    # fail, back, full again
    camera: str = "ptz-cq-05"
    camera_window: tuple[float, float] = (90.0, 255.0)
    spd: str = "spd-dh"
    spd_number: int = 1
    strike: float = 150.0
    cabinet: str = "sw-xh-3"
    cabinet_window: tuple[float, float] = (285.0, 450.0)

    def plan(self, t0: float, scale: float, devices: dict[str, object],
             downstream: dict[str, list[str]]) -> Plan:
        """`devices`: id -> inventory device; `downstream`: switch id -> devices below it."""
        p = Plan(t0=t0, scale=scale)
        name = {k: getattr(d, "name", k) for k, d in devices.items()}
        if self.outage_ups in devices:
            fail, back, full = self.outage
            p.ups[self.outage_ups] = (ups_states(fail, back, full), SLOT * scale)
            p.roles["ups_on_battery"] = self.outage_ups
            p.events.append(Event(fail, f"{name[self.outage_ups]} ({self.outage_ups}): mains "
                                        f"lost, on battery, charge falling"))
            p.events.append(Event(back, f"{name[self.outage_ups]} ({self.outage_ups}): mains "
                                        f"back, recharging"))
            p.actions.append(Action(fail, "trap", self.outage_ups, {"oid": UPS_ON_BATTERY}))
            p.actions.append(Action(back, "trap", self.outage_ups, {
                "oid": UPS_ALARM_REMOVED,
                "varbinds": [[UPS_ALARM_DESCR + ".1", "oid", UPS_ALARM_ON_BATTERY]]}))
        else:
            p.skipped.append(f"UPS outage: no device '{self.outage_ups}'")
        if self.camera in devices:
            window = (p.at(self.camera_window[0]), p.at(self.camera_window[1]))
            p.silent[self.camera] = window
            p.link_down[self.camera] = window
            p.silence_onvif(devices, [self.camera], self.camera_window)
            p.roles["camera_down"] = self.camera
            p.events.append(Event(self.camera_window[0], f"{name[self.camera]} ({self.camera}): "
                                                         f"stops answering (timeout)"))
            p.events.append(Event(self.camera_window[1], f"{self.camera}: answers again"))
        else:
            p.skipped.append(f"camera drop: no device '{self.camera}'")
        if self.spd in devices:
            p.trips[self.spd] = (p.at(self.strike), self.spd_number)
            p.roles["spd_tripped"] = self.spd
            p.events.append(Event(self.strike, f"{name[self.spd]} ({self.spd}): lightning "
                                               f"strike, SPD{self.spd_number} tripped, strike "
                                               f"counter +1"))
        else:
            p.skipped.append(f"lightning strike: no device '{self.spd}'")
        if self.cabinet in devices:
            window = (p.at(self.cabinet_window[0]), p.at(self.cabinet_window[1]))
            below = downstream.get(self.cabinet, [])
            for device in [self.cabinet, *below]:
                p.silent[device] = window
            p.silence_onvif(devices, below, self.cabinet_window)
            p.link_down[self.cabinet] = window
            p.roles["cabinet_down"] = self.cabinet
            p.events.append(Event(self.cabinet_window[0],
                                  f"{name[self.cabinet]} ({self.cabinet}): fibre cut, the "
                                  f"switch and {len(below)} devices behind it unreachable"))
            p.events.append(Event(self.cabinet_window[1], f"{self.cabinet}: fibre spliced, "
                                                          f"the cabinet is back"))
        else:
            p.skipped.append(f"fibre cut: no device '{self.cabinet}'")
        p.events.append(Event(END, "timeline done: all back except the tripped SPD"))
        p.events.sort(key=lambda e: e.at)
        p.actions.sort(key=lambda a: a.at)
        return p


def ups_states(fail: float, back: float, full: float) -> list[UpsState]:
    """One state per SLOT from the start to `full`: mains, battery (charge and runtime
    falling), recharging, full. The state at each slot's middle."""
    states = []
    low = 52.0
    for k in range(int(full // SLOT)):
        t = (k + 0.5) * SLOT
        if t < fail:
            states.append(UpsState())
        elif t < back:
            done = (t - fail) / (back - fail)
            charge = 100 - (100 - low) * done
            states.append(UpsState(on_battery=True, charge=charge, runtime_min=38 * charge / 100,
                                   seconds_on_battery=int(t - fail), input_volts=0,
                                   battery_volts=50.4 - 3.2 * done, load=36, alarms=1))
        else:
            done = min(1.0, (t - back) / (full - back))
            charge = low + (100 - low) * done
            states.append(UpsState(charge=charge, runtime_min=38 * charge / 100,
                                   battery_volts=55.2, load=36))
    # the last snapshot stays for good; several copies make its slot wide enough that a
    # poll lands in it during snmpsim's first pass through the snapshots (multiplex only
    # moves forward, and after one pass its slot counter starts again from 0)
    states.extend(UpsState() for _ in range(4))
    return states


def describe(plan: Plan) -> list[str]:
    """The timeline as lines for the terminal: offset, wall-clock time, what happens."""
    import time as _time

    lines = []
    for e in plan.events:
        when = plan.at(e.at)
        minutes, seconds = divmod(round(e.at * plan.scale), 60)
        clock = _time.strftime("%H:%M:%S", _time.localtime(when))
        lines.append(f"  +{minutes}:{seconds:02d}  {clock}  {e.text}")
    for note in plan.skipped:
        lines.append(f"  (left out: {note})")
    return lines
