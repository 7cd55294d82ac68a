"""The rules engine on a simulated clock: loading errors, fault life, missing data, counters,
flapping, topology roots, silences, inhibition, restarts and reloads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent.inventory import Inventory, load_inventory
from agent.settings import Rules as RulesSettings
from agent.state import State
from agent.yamlfile import ConfigErrors, Document
from collectors.reading import PollResult, Reading
from collectors.snmp.profile import load_profiles
from rules.engine import Engine
from rules.faults import Fault
from rules.load import RuleSet, known_from, load_rules
from rules.silences import new_silence

T0 = 1_800_000_000.0
PROFILES = load_profiles()
KNOWN = known_from(PROFILES.catalogue, PROFILES)


def inventory(*devices: dict, sites: tuple[str, ...] = ("dh",)) -> Inventory:
    raw = [{"address": "127.0.0.1", "snmp": False, **d} for d in devices]
    doc = Document(Path("inventory.yaml"), {"sites": [{"id": s} for s in sites],
                                            "devices": raw}, {})
    return load_inventory([doc], None, None)


def ruleset(tmp_path: Path, text: str, inv: Inventory | None = None) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_rules([path], KNOWN, inv)


def errors(tmp_path: Path, text: str, inv: Inventory | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        ruleset(tmp_path, text, inv)
    return [str(e) for e in info.value.errors]


class Site:
    """An inventory, a state and an engine, driven by hand."""

    def __init__(self, tmp_path: Path, rules: str, *devices: dict, **settings):
        self.inv = inventory(*devices)
        self.state = State()
        self.state.sync(self.inv)
        self.engine = Engine(ruleset(tmp_path, rules, self.inv), RulesSettings(**settings))
        self.engine.sync(self.inv, T0)

    def poll(self, t: float, device: str, up: bool = True, collector: str = "snmp",
             **values: float | dict) -> None:
        readings = []
        for metric, value in values.items():
            if isinstance(value, dict):  # {labels-tuple: value}
                for labels, v in value.items():
                    readings.append(Reading(device, metric, dict(labels), v, T0 + t))
            else:
                readings.append(Reading(device, metric, {}, float(value), T0 + t))
        self.state.update(PollResult(device, T0 + t, 0.1, up, None if up else "timeout",
                                     readings=readings if up else [], collector=collector))

    def run(self, t: float):
        return self.engine.evaluate(self.state, T0 + t, lambda d, c: 30.0)

    def faults(self, rule: str | None = None):
        return {f.subject + ("" if not f.series else str(sorted(f.series.items()))):
                (f.state, f.level, f.suppressed)
                for f in self.engine.active.values() if rule is None or f.rule == rule}


UPS_RULES = """
groups:
  - name: ups
    rules:
      - name: UpsOnBattery
        select: {kinds: [ups]}
        expr: ups_on_battery == 1
        for: 30s
        level: 2
        summary: {zh: "UPS {{ device.id }} 电池供电", en: "UPS {{ device.id }} on battery"}
"""


# -- loading: every mistake with file, line, rule and key ------------------------------------

def test_errors_name_file_line_rule_and_key(tmp_path):
    text = """\
    groups:
      - name: g
        rules:
          - name: Syntax
            expr: ups_on_battery ==
            level: 2
          - name: UnknownFunction
            expr: frobnicate(ups_on_battery) > 1
            level: 2
          - name: UnknownMetric
            expr: ups_on_batery == 1
            level: 2
          - name: TypeError
            expr: ups_on_battery > 'yes'
            level: 2
          - name: NotBoolean
            expr: ups_on_battery + 1
            level: 2
          - name: LevelOutOfRange
            expr: ups_on_battery == 1
            level: 5
          - name: Prefixed
            expr: vigil_ups_on_battery == 1
            level: 2
          - name: BadLabel
            expr: device_info.firmwar == 'x'
            level: 4
    """
    got = errors(tmp_path, text)
    file = tmp_path / "rules.yaml"
    assert got[0].startswith(f"{file}:5 groups[0].rules[0].expr: rule Syntax: syntax error")
    assert got[1] == (f"{file}:8 groups[0].rules[1].expr: rule UnknownFunction: unknown "
                      f"function frobnicate() (functions: rate, increase, absent, age, event "
                      f"and CEL's standard ones)")
    assert got[2] == (f"{file}:11 groups[0].rules[2].expr: rule UnknownMetric: unknown metric "
                      f"or variable 'ups_on_batery' (did you mean 'ups_on_battery'?)")
    assert got[3].startswith(f"{file}:14 groups[0].rules[3].expr: rule TypeError: type error")
    assert got[4].startswith(f"{file}:17 groups[0].rules[4].expr: rule NotBoolean: "
                             f"`ups_on_battery + 1` must be true or false")
    assert got[5] == f"{file}:21 groups[0].rules[5].level: Input should be less than or equal to 4"
    assert "write it without the prefix: 'ups_on_battery'" in got[6]
    assert f"{file}:26 groups[0].rules[7].expr: rule BadLabel: device_info has no label " \
           f"'firmwar'" in got[7]
    assert len(got) == 8


def test_selector_that_matches_nothing_and_duplicate_names(tmp_path):
    inv = inventory({"id": "ups-1", "kind": "ups", "site": "dh"})
    got = errors(tmp_path, """\
    groups:
      - name: g
        rules:
          - name: A
            select: {sites: [dx]}
            expr: ups_on_battery == 1
            level: 2
          - name: A
            expr: ups_on_battery == 1
            level: 2
          - name: B
            select: {kinds: [switch], labels: {role: core}}
            expr: up == 0
            level: 1
    """, inv)
    assert "groups[0].rules[0].select.sites[0]: rule A: site 'dx' is not in the inventory " \
           "(did you mean 'dh'?)" in got[0]
    assert "rule A: the name is already used at" in got[2]
    assert got[-1].endswith("rule B: the selector matches no device of the inventory")


def test_inhibit_rule_matchers_are_checked(tmp_path):
    got = errors(tmp_path, """\
    inhibit_rules:
      - source_matchers: ['alertname="SiteDown"']
        target_matchers: ['level=~"(3"']
        equal: [site]
    """)
    assert "inhibit_rules[0].target_matchers[0]: 'level=~\"(3\"': bad regular expression" \
        in got[0]


# -- fault life -------------------------------------------------------------------------

def test_pending_then_firing_with_scene_record_then_resolved(tmp_path):
    site = Site(tmp_path, UPS_RULES, {"id": "ups-1", "kind": "ups", "site": "dh"})
    site.poll(0, "ups-1", ups_on_battery=1, ups_battery_charge_ratio=0.9)
    site.run(0)
    assert site.faults() == {"ups-1": ("pending", 2, None)}
    site.run(20)
    assert site.faults() == {"ups-1": ("pending", 2, None)}
    site.run(30)
    fault = site.engine.active["UpsOnBattery:ups-1"]
    assert fault.state == "firing" and fault.fired_at == T0 + 30
    assert fault.texts["summary"] == {"zh": "UPS ups-1 电池供电", "en": "UPS ups-1 on battery"}
    assert fault.evidence["inputs"] == {"ups_on_battery": 1.0}
    assert ["ups_battery_charge_ratio", {}, 0.9] in fault.evidence["readings"]
    site.poll(40, "ups-1", ups_on_battery=0)
    site.run(40)
    assert site.faults() == {}
    assert site.engine.history[0].key == "UpsOnBattery:ups-1"
    assert [h["event"] for h in site.engine.history[0].history] == \
        ["pending", "firing", "resolved"]


def test_missing_data_keeps_the_fault_and_says_so(tmp_path):
    """The UPS stops answering while on battery: the fault stays firing (no silent false),
    marked as without data; it resolves only on a reading that says so."""
    site = Site(tmp_path, UPS_RULES, {"id": "ups-1", "kind": "ups", "site": "dh"})
    site.poll(0, "ups-1", ups_on_battery=1)
    site.run(0)
    site.run(30)
    site.poll(40, "ups-1", up=False)
    stats = site.run(40)
    fault = site.engine.active["UpsOnBattery:ups-1"]
    assert fault.state == "firing" and fault.no_data_since == T0 + 40
    assert stats.no_data == {"UpsOnBattery": 1}
    site.run(500)  # long after: still firing, still no data
    assert site.faults() == {"ups-1": ("firing", 2, None)}
    site.poll(510, "ups-1", ups_on_battery=0)
    site.run(510)
    assert site.faults() == {}


def test_stale_readings_count_as_missing(tmp_path):
    site = Site(tmp_path, UPS_RULES, {"id": "ups-1", "kind": "ups", "site": "dh"})
    site.poll(0, "ups-1", ups_on_battery=0)
    assert site.run(0).no_data == {}
    assert site.run(89).no_data == {}  # 3 x the 30-s interval
    assert site.run(91).no_data == {"UpsOnBattery": 1}


def test_absent_is_explicit(tmp_path):
    rules = """
    groups:
      - name: g
        rules:
          - name: NoBatteryReading
            select: {kinds: [ups]}
            expr: absent(ups_battery_charge_ratio) && up == 1
            level: 4
    """
    site = Site(tmp_path, rules, {"id": "ups-1", "kind": "ups", "site": "dh"})
    site.poll(0, "ups-1", ups_on_battery=0)
    site.run(0)
    assert site.faults() == {"ups-1": ("firing", 4, None)}
    site.poll(10, "ups-1", ups_on_battery=0, ups_battery_charge_ratio=1)
    site.run(10)
    assert site.faults() == {}


@pytest.mark.faults
def test_counter_reset_never_gives_a_negative_rate_or_a_fault(tmp_path):
    rules = """
    groups:
      - name: g
        rules:
          - name: Strike
            select: {kinds: [spd_monitor]}
            expr: increase(spd_strikes_total) > 0
            level: 3
          - name: NoStrikeRate
            select: {kinds: [spd_monitor]}
            expr: rate(spd_strikes_total) < 0
            level: 3
    """
    site = Site(tmp_path, rules, {"id": "spd-1", "kind": "spd_monitor", "site": "dh"})
    for t, count in ((0, 7), (30, 7), (60, 0), (90, 0), (120, 1)):
        site.poll(t, "spd-1", spd_strikes_total=count)
        stats = site.run(t)
        faults = site.faults()
        if t == 0:
            assert stats.no_data == {"Strike": 1, "NoStrikeRate": 1}  # one sample: no rate
        elif t == 60:  # the monitor rebooted: counter 7 -> 0
            assert faults == {} and stats.no_data == {"Strike": 1, "NoStrikeRate": 1}
        elif t == 120:
            assert faults == {"spd-1": ("firing", 3, None)}
        else:
            assert faults == {}


def test_keep_firing_for_and_hysteresis(tmp_path):
    rules = """
    groups:
      - name: g
        rules:
          - name: Hot
            select: {kinds: [env_monitor]}
            expr: sensor_celsius > 35
            clear: sensor_celsius < 32
            level: 3
          - name: HotKept
            select: {kinds: [env_monitor]}
            expr: sensor_celsius > 35
            keep_firing_for: 1m
            level: 3
    """
    site = Site(tmp_path, rules, {"id": "env-1", "kind": "env_monitor", "site": "dh"})
    for t, temp, hot, kept in ((0, 36, True, True), (10, 34, True, True),
                               (40, 33, True, True), (70, 33, True, False),
                               (80, 31, False, False)):
        site.poll(t, "env-1", sensor_celsius={(("sensor", "room"),): temp})
        site.run(t)
        assert (bool(site.faults("Hot")), bool(site.faults("HotKept"))) == (hot, kept), t


def test_level_depends_on_the_value_and_only_rises(tmp_path):
    rules = """
    groups:
      - name: g
        rules:
          - name: BatteryLow
            select: {kinds: [ups]}
            expr: ups_battery_charge_ratio < 0.5
            level: 3
            levels: [{when: ups_battery_charge_ratio < 0.2, level: 2}]
    """
    site = Site(tmp_path, rules, {"id": "ups-1", "kind": "ups", "site": "dh"})
    for t, charge, level in ((0, 0.4, 3), (10, 0.15, 2), (20, 0.3, 2)):
        site.poll(t, "ups-1", ups_battery_charge_ratio=charge)
        site.run(t)
        assert site.faults() == {"ups-1": ("firing", level, None)}


def test_flapping_device_gives_one_fault(tmp_path):
    rules = """
    groups:
      - name: g
        rules:
          - name: CameraDown
            select: {kinds: [ptz_camera]}
            expr: up == 0
            for: 2m
            level: 3
    """
    site = Site(tmp_path, rules, {"id": "cam-1", "kind": "ptz_camera", "site": "dh"},
                flap_threshold=6)
    seen = set()
    for i in range(40):  # down 30 s, up 30 s: never down for 2 min, yet never well
        site.poll(i * 30, "cam-1", up=bool(i % 2), collector="onvif")
        site.run(i * 30)
        seen |= {(f.key, f.fired_at) for f in site.engine.active.values()
                 if f.state == "firing"}
    assert len(seen) == 1
    fault = site.engine.active["CameraDown:cam-1"]
    assert fault.flapping and fault.state == "firing"
    for i in range(40, 140):  # stable again: the flapping fault ends once it calmed down
        site.poll(i * 30, "cam-1", up=True, collector="onvif")
        site.run(i * 30)
    assert site.faults() == {}
    assert site.engine.history[0].flapping


# -- topology ---------------------------------------------------------------------------

TOPOLOGY_RULES = """
groups:
  - name: g
    rules:
      - name: SwitchDown
        select: {kinds: [switch]}
        expr: up == 0
        level: 2
        topology: {cuts: [uplink, power], symptom: true}
      - name: PortDown
        select: {kinds: [switch]}
        expr: interface_oper_status != 1 && port_devices > 0
        level: 3
        topology: {cuts: [uplink]}
      - name: CameraDown
        select: {kinds: [ptz_camera]}
        expr: up == 0
        for: 1m
        level: 3
        topology: {symptom: true}
      - name: SiteCamerasDown
        select: {kinds: [ptz_camera]}
        aggregate: {by: site, member: up == 0}
        expr: ratio > 0.5
        level: 1
        topology: {symptom: true}
"""


def network() -> list[dict]:
    devices = [{"id": "core", "kind": "switch", "site": "dh"},
               {"id": "sw-1", "kind": "switch", "site": "dh",
                "uplink": {"switch": "core", "port": 1}}]
    devices += [{"id": f"cam-{i}", "kind": "ptz_camera", "site": "dh",
                 "uplink": {"switch": "sw-1", "port": i}} for i in range(1, 9)]
    return devices


def test_dead_switch_is_one_root_fault_with_its_cameras_as_evidence(tmp_path):
    site = Site(tmp_path, TOPOLOGY_RULES, *network())
    for device in ["core", "sw-1"] + [f"cam-{i}" for i in range(1, 9)]:
        site.poll(0, device, collector="snmp" if "cam" not in device else "onvif")
    site.run(0)
    # the core switch dies; its access switch and cameras stop answering in the next polls
    site.poll(30, "core", up=False)
    site.run(30)
    for t in (40, 50, 60):
        for i in range(1, 9):
            site.poll(t, f"cam-{i}", up=False, collector="onvif")
        site.poll(t, "sw-1", up=False)
        site.run(t)
    for t in range(70, 200, 10):
        site.run(t)
    unsuppressed = {k: v for k, v in site.faults().items() if v[2] is None}
    assert unsuppressed == {"core": ("firing", 1, None)}  # level 1: most of the site is dark
    root = site.engine.active["SwitchDown:core"]
    assert sorted(root.caused) == sorted(["SwitchDown:sw-1", "SiteCamerasDown:dh"]
                                         + [f"CameraDown:cam-{i}" for i in range(1, 9)])
    assert site.engine.active["CameraDown:cam-3"].caused_by == "SwitchDown:core"
    # recovery: everything answers again, everything resolves
    for device in ["core", "sw-1"] + [f"cam-{i}" for i in range(1, 9)]:
        site.poll(200, device, collector="snmp" if "cam" not in device else "onvif")
    site.run(200)
    assert site.faults() == {}


def test_port_down_takes_only_the_camera_behind_that_port(tmp_path):
    site = Site(tmp_path, TOPOLOGY_RULES, *network())
    ports = {(("ifindex", str(i)), ("interface", f"ge{i}")): 1.0 for i in range(1, 9)}
    site.poll(0, "sw-1", interface_oper_status=ports)
    site.poll(0, "core")
    for i in range(1, 9):
        site.poll(0, f"cam-{i}", collector="onvif")
    site.run(0)
    ports[(("ifindex", "3"), ("interface", "ge3"))] = 2.0
    site.poll(30, "sw-1", interface_oper_status=ports)
    site.poll(30, "core")
    site.poll(30, "cam-3", up=False, collector="onvif")
    site.poll(30, "cam-4", up=False, collector="onvif")  # its own fault, not the port's
    for t in range(30, 150, 10):
        site.run(t)
    faults = site.faults()
    assert faults["sw-1[('ifindex', '3'), ('interface', 'ge3')]"] == ("firing", 3, None)
    assert faults["cam-3"] == ("firing", 3, "caused")
    assert faults["cam-4"] == ("firing", 3, None)


def test_camera_waits_for_its_switch_to_be_polled(tmp_path):
    """The camera's `for:` has passed but its switch was last polled before the camera went
    down: the camera fault waits, so the switch's fault (found a poll later) takes it."""
    site = Site(tmp_path, TOPOLOGY_RULES, *network())
    site.poll(0, "core")
    site.poll(0, "sw-1")
    site.poll(10, "cam-1", up=False, collector="onvif")
    for t in range(10, 80, 10):
        site.run(t)
    assert site.faults("CameraDown") == {"cam-1": ("pending", 3, None)}
    site.poll(80, "sw-1", up=False)
    site.poll(80, "core")
    site.run(80)
    assert site.faults("CameraDown") == {"cam-1": ("firing", 3, "caused")}
    assert site.faults("SwitchDown") == {"sw-1": ("firing", 2, None)}


# -- silences, inhibition ---------------------------------------------------------------

def test_silence_opens_nothing_until_it_ends(tmp_path):
    site = Site(tmp_path, UPS_RULES, {"id": "ups-1", "kind": "ups", "site": "dh"})
    site.engine.add_silence(new_silence(['device="ups-1"'], T0 + 600, "张工", "更换电池",
                                        now=T0))
    site.poll(0, "ups-1", ups_on_battery=1)
    site.run(0)
    site.run(60)
    assert site.faults() == {"ups-1": ("firing", 2, "silenced")}
    site.run(601)
    assert site.faults() == {"ups-1": ("firing", 2, None)}


def test_silence_needs_owner_reason_end_and_a_positive_matcher():
    with pytest.raises(ValueError, match="owner"):
        new_silence(['device="a"'], T0 + 60, " ", "x", now=T0)
    with pytest.raises(ValueError, match="reason"):
        new_silence(['device="a"'], T0 + 60, "a", "", now=T0)
    with pytest.raises(ValueError, match="past"):
        new_silence(['device="a"'], T0 - 1, "a", "b", starts_at=T0 - 10, now=T0)
    with pytest.raises(ValueError, match="positively"):
        new_silence(['device!="a"'], T0 + 60, "a", "b", now=T0)


def test_inhibition_like_alertmanager(tmp_path):
    rules = TOPOLOGY_RULES + """
inhibit_rules:
  - source_matchers: ['alertname="SiteCamerasDown"']
    target_matchers: ['alertname="CameraDown"']
    equal: [site]
"""
    devices = [{"id": f"cam-{i}", "kind": "ptz_camera", "site": "dh"} for i in range(1, 4)]
    site = Site(tmp_path, rules, *devices)
    for t in (0, 30, 60, 90):
        for i in (1, 2):
            site.poll(t, f"cam-{i}", up=False, collector="onvif")
        site.poll(t, "cam-3", collector="onvif")
        site.run(t)
    assert site.faults() == {"dh": ("firing", 1, None), "cam-1": ("firing", 3, "inhibited"),
                             "cam-2": ("firing", 3, "inhibited")}


# -- restarts and reloads ---------------------------------------------------------------

def test_restart_keeps_faults_and_does_not_fire_them_again(tmp_path):
    site = Site(tmp_path, UPS_RULES, {"id": "ups-1", "kind": "ups", "site": "dh"})
    site.poll(0, "ups-1", ups_on_battery=1)
    site.run(0)
    site.run(30)
    snapshot = site.engine.snapshot()
    again = Site(tmp_path, UPS_RULES, {"id": "ups-1", "kind": "ups", "site": "dh"})
    again.engine.restore(snapshot)
    again.run(100)  # nothing polled yet after the restart: no data, the fault stays
    fault = again.engine.active["UpsOnBattery:ups-1"]
    assert fault.state == "firing" and fault.fired_at == T0 + 30
    again.poll(110, "ups-1", ups_on_battery=1)
    again.run(110)
    assert again.engine.changed == []  # nothing new to tell anyone
    assert again.engine.active["UpsOnBattery:ups-1"].fired_at == T0 + 30


def test_reload_keeps_faults_of_rules_that_stay(tmp_path):
    site = Site(tmp_path, UPS_RULES, {"id": "ups-1", "kind": "ups", "site": "dh"})
    site.poll(0, "ups-1", ups_on_battery=1, ups_battery_charge_ratio=0.1)
    site.run(0)
    site.run(30)
    more = UPS_RULES + """
      - name: BatteryLow
        select: {kinds: [ups]}
        expr: ups_battery_charge_ratio < 0.5
        level: 3
"""
    site.engine.adopt(ruleset(tmp_path, more, site.inv), RulesSettings(), T0 + 40)
    site.run(40)
    assert site.faults("UpsOnBattery") == {"ups-1": ("firing", 2, None)}
    assert site.engine.active["UpsOnBattery:ups-1"].fired_at == T0 + 30
    assert site.engine.active["BatteryLow:ups-1"].state == "firing"
    site.engine.adopt(ruleset(tmp_path, more.replace("UpsOnBattery", "OnBattery"), site.inv),
                      RulesSettings(), T0 + 50)
    assert "UpsOnBattery:ups-1" not in site.engine.active
    assert site.engine.history[0].history[-1]["why"] == "rule removed"


def test_loop_variables_of_cel_macros(tmp_path):
    rules = """
    groups:
      - name: g
        vars: {approved: {M1: ["V5.7"]}}
        rules:
          - name: Firmware
            select: {kinds: [ptz_camera]}
            expr: '!approved["M1"].exists(v, device_info.firmware.startsWith(v))'
            level: 4
    """
    site = Site(tmp_path, rules, {"id": "cam-1", "kind": "ptz_camera", "site": "dh"})
    site.state.update(PollResult("cam-1", T0, 0.1, True, collector="onvif", readings=[
        Reading("cam-1", "device_info", {"model": "M1", "firmware": "V5.8.1"}, 1, T0)]))
    site.run(0)
    assert site.faults() == {"cam-1": ("firing", 4, None)}


POWER_RULES = """
groups:
  - name: g
    rules:
      - name: UpsDown
        select: {kinds: [ups]}
        expr: up == 0
        level: 3
        topology: {cuts: [power], symptom: true}
      - name: UpsOutputOff
        select: {kinds: [ups]}
        expr: ups_output_source == 2
        level: 2
        topology: {cuts: [power]}
      - name: SwitchDown
        select: {kinds: [switch]}
        expr: up == 0
        level: 1
        topology: {cuts: [uplink, power], symptom: true}
      - name: CameraDown
        select: {kinds: [ptz_camera]}
        expr: up == 0
        level: 3
        topology: {symptom: true}
"""
ROOM = [{"id": "ups-room", "kind": "ups", "site": "dh", "uplink": {"switch": "sw", "port": 1}},
        {"id": "sw", "kind": "switch", "site": "dh", "powered_by": {"ups": "ups-room"}},
        {"id": "ups-2", "kind": "ups", "site": "dh", "uplink": {"switch": "sw", "port": 2}},
        {"id": "cam", "kind": "ptz_camera", "site": "dh", "uplink": {"switch": "sw", "port": 3}}]


def test_a_root_does_not_claim_what_hangs_behind_an_answering_device(tmp_path):
    site = Site(tmp_path, POWER_RULES, *ROOM)
    site.poll(0, "sw")
    site.poll(0, "cam", collector="onvif")
    site.poll(0, "ups-room", up=False)
    site.poll(0, "ups-2", up=False)  # its own card died; the switch between still answers
    site.run(0)
    assert site.faults("UpsDown") == {"ups-room": ("firing", 3, None),
                                      "ups-2": ("firing", 3, None)}


def test_ups_output_off_leads_the_switch_it_feeds_and_takes_the_level(tmp_path):
    """The machine-room UPS feeds the core switch its own card hangs off: both go at once.
    The definite root (output off) leads; the switch's level-1 impact raises it."""
    site = Site(tmp_path, POWER_RULES, *ROOM)
    site.poll(0, "ups-room", ups_output_source=2)
    site.poll(0, "sw", up=False)
    site.poll(0, "cam", up=False, collector="onvif")
    site.run(0)
    root = site.engine.active["UpsOutputOff:ups-room"]
    assert root.suppressed is None and root.level == 1
    assert sorted(root.caused) == ["CameraDown:cam", "SwitchDown:sw"]
    assert site.engine.active["CameraDown:cam"].caused_by == "UpsOutputOff:ups-room"


def test_a_clock_step_back_does_not_hold_a_pending_fault(tmp_path):
    """The wall clock steps back an hour while a fault waits out its `for: 30s`
    (agent/clock.py tells the engine): it fires after 30 s of elapsed time, not an hour and
    30 s."""
    site = Site(tmp_path, UPS_RULES, {"id": "ups-1", "kind": "ups", "site": "dh"})
    site.poll(0, "ups-1", ups_on_battery=1)
    site.run(0)
    site.poll(10, "ups-1", ups_on_battery=1)
    site.run(10)
    site.engine.clock_jumped(-3600.0)
    site.poll(20 - 3600, "ups-1", ups_on_battery=1)
    site.run(20 - 3600)
    assert site.faults() == {"ups-1": ("pending", 2, None)}
    site.poll(30 - 3600, "ups-1", ups_on_battery=1)
    site.run(30 - 3600)
    assert site.faults() == {"ups-1": ("firing", 2, None)}


def test_the_history_file_keeps_the_newest_and_skips_a_torn_line(tmp_path):
    """faults-history.jsonl: appended once per resolved fault, compacted to the newest
    `keep` when it has grown to twice that; a line torn by a crash mid-append is skipped."""
    from rules.faults import HistoryFile

    path = tmp_path / "faults-history.jsonl"
    history = HistoryFile(path, keep=3)
    history.append([b'{"key":"a"}', b'{"key":"b"}'])
    with path.open("a") as fh:
        fh.write('{"key": "torn')                    # a crash in the middle of a line
    again = HistoryFile(path, keep=3)
    assert [r["key"] for r in again.load()] == ["a", "b"]
    again.append([b'{"key":"c"}', b'{"key":"d"}', b'{"key":"e"}'])   # 6 lines: compacted
    assert [r["key"] for r in HistoryFile(path, keep=3).load()] == ["c", "d", "e"]
    assert len(path.read_text().splitlines()) == 3


def _resolved(n: int, site: str = "dh", level: int = 3) -> Fault:
    """An unreachable switch's fault as the engine resolves it: texts, a scene record with
    each collector's state and readings, its event history."""
    f = Fault(key=f"SwitchUnreachable:sw-{n}", rule="SwitchUnreachable", group="network",
              subject=f"sw-{n}", device=f"sw-{n}", site=site, kind="access_switch",
              series={}, labels={"team": "network"}, level=level, state="resolved",
              pending_since=T0 + n, last_seen=T0 + n + 90, fired_at=T0 + n + 60,
              resolved_at=T0 + n + 300,
              texts={"summary": {"zh": f"交换机 sw-{n} 不可达", "en": f"switch sw-{n} down"}})
    f.evidence = {"at": T0 + n, "inputs": {"up": 0.0},
                  "collectors": {c: {"up": False, "reason": "timeout", "detail": "no answer",
                                     "at": T0 + n} for c in ("snmp", "icmp")},
                  "readings": [["if_oper_status", {"ifName": f"ge0/{p}"}, 1.0]
                               for p in range(8)]}
    for what in ("pending", "firing", "resolved"):
        f.event(T0 + n, what, level=level)
    return f


def test_resolved_faults_are_kept_compact_newest_first_and_read_back_whole():
    """The in-memory history of resolved faults (API, CLI): bounded, newest first, filtered
    before decoding, every field read back as it was; and 5,000 of them cost a fraction of
    what 5,000 Fault objects do (the soak's agent grew while they filled the bound)."""
    import tracemalloc

    from rules.faults import ResolvedFaults

    history = ResolvedFaults(keep=3)
    faults = [_resolved(1), _resolved(2, site="xc", level=1), _resolved(3), _resolved(4)]
    for f in faults:
        history.add(f)
    assert len(history) == 3 and history.keep == 3
    assert [f.key for f in history] == [f"SwitchUnreachable:sw-{n}" for n in (4, 3, 2)]
    assert history[0].to_dict() == faults[3].to_dict()
    assert [f.key for f in history.matching(site="xc")] == ["SwitchUnreachable:sw-2"]
    assert [f.key for f in history.matching(level="3", rule="SwitchUnreachable")] == \
        ["SwitchUnreachable:sw-4", "SwitchUnreachable:sw-3"]
    assert list(history.matching(device="sw-1")) == []    # beyond the bound
    assert history.find("SwitchUnreachable:sw-3").evidence == faults[2].evidence
    assert history.find("SwitchUnreachable:sw-1") is None
    history.resize(2)
    assert [f.key for f in history] == ["SwitchUnreachable:sw-4", "SwitchUnreachable:sw-3"]

    def size(build) -> int:
        tracemalloc.start()
        try:
            kept = build()
            used = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert kept
        return used

    def compact():
        h = ResolvedFaults(keep=5000)
        for n in range(5000):
            h.add(_resolved(n))
        return h

    as_faults = size(lambda: [_resolved(n) for n in range(5000)])
    as_compact = size(compact)
    assert as_compact < 0.4 * as_faults, (as_compact, as_faults)


def test_an_old_faults_json_history_moves_to_the_history_file(tmp_path):
    """faults.json written before faults-history.jsonl existed holds the history (newest
    first): at start it is moved over, in the same order, and restored."""
    import json

    from prometheus_client import CollectorRegistry

    from agent.alerting import RulesRunner
    from agent.config import load_config
    from tests.test_daemon import write_config
    from tests.test_ticketing import fault

    config = load_config(write_config(tmp_path, 9, ["deltaups"]))
    state_dir = Path(config.settings.state_dir)
    state_dir.mkdir(parents=True)
    newer, older = fault("CameraOffline:cam-2"), fault("CameraOffline:cam-1")
    for f, at in ((newer, T0 + 200), (older, T0 + 100)):
        f.state, f.resolved_at = "resolved", at
    (state_dir / "faults.json").write_text(json.dumps(
        {"version": 1, "active": [], "silences": [],
         "history": [newer.to_dict(), older.to_dict()]}))
    runner = RulesRunner(config, State(), CollectorRegistry(), lambda d, c: 60.0)
    assert [f.key for f in runner.engine.history] == ["CameraOffline:cam-2",
                                                      "CameraOffline:cam-1"]
    lines = (state_dir / "faults-history.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["CameraOffline:cam-1",
                                                           "CameraOffline:cam-2"]
