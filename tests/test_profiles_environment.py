"""Environment / SPD monitor profiles against real device walks (served by snmpsim on loopback).

hwg-poseidon: HW group Poseidon 4002 (6 dry-contact inputs, 2 relays, 8 temperature/humidity
sensors); apc-netbotz: APC NetBotz Rack Monitor 250 (3 fire-alarm dry contacts, 18 wireless
temperature/humidity sensors, a relay and an outlet); akcp-sensorprobe: AKCP sensorProbe2+,
whose walk holds only sysDescr and sysObjectID (detection and identity only).
"""

from __future__ import annotations

import pytest

from tests import peers
from tests.conftest import Poller, info, value, values

POSEIDON_INPUTS = [f"Binary {n}" for n in range(1, 7)]
POSEIDON_TEMPERATURES = {"T.Network": 24.9, "T.C4c": 31.1, "T.Ambiente": 25.7,
                         "T.Servidores": 23.6}
POSEIDON_HUMIDITIES = {"H.Servidores": 0.303, "H.Network": 0.296, "H.Ambiente": 0.287,
                       "H.C4c": 0.206}
NETBOTZ_CONTACTS = {("1", "Fire Alarm", "Hall 1"), ("2", "Fault Fire Alarm", "Hall 1"),
                    ("3", "Plant Rm Fire Alarm", "Hall 1 Plant Rm")}


def names(result, metric: str, label: str) -> set[str]:
    return {r.labels[label] for r in result.readings if r.metric == metric}


@pytest.fixture(scope="module")
def poseidon(recording_poller):
    return recording_poller.poll("hwg-poseidon", profile=None)


@pytest.fixture(scope="module")
def netbotz(recording_poller):
    return recording_poller.poll("apc_netbotz", profile=None)


@pytest.fixture(scope="module")
def akcp(recording_poller):
    return recording_poller.poll("akcp_sp2plus", profile=None)


# --- auto-detection and a clean poll -------------------------------------------------------

@pytest.mark.parametrize("fixture, profile", [("poseidon", "hwg-poseidon"),
                                              ("netbotz", "apc-netbotz"),
                                              ("akcp", "akcp-sensorprobe")])
def test_detection_picks_the_vendor_profile(request, fixture, profile):
    result = request.getfixturevalue(fixture)
    assert result.up, result.detail
    assert result.profile == profile
    assert result.problems == []


# --- HW group Poseidon 4002 ----------------------------------------------------------------

def test_poseidon_identity(poseidon):
    labels = info(poseidon)
    assert labels["vendor"] == "HW group"
    assert labels["model"] == "Poseidon 4002"
    assert labels["firmware"] == "2.0.15"


def test_poseidon_inputs_by_name(poseidon):
    # six dry-contact inputs, all open (off), none in alarm; their alarms are not set up on
    # the device (inpAlarmSetup inactive), which the alarm_enabled label makes visible
    assert names(poseidon, "contact_state", "contact") == set(POSEIDON_INPUTS)
    for n, name in enumerate(POSEIDON_INPUTS, start=1):
        assert value(poseidon, "contact_state", contact=name, index=str(n)) == 0
        assert value(poseidon, "contact_alarm", contact=name, index=str(n)) == 0
        assert value(poseidon, "contact_alarm", contact=name, alarm_enabled="no") == 0


def test_poseidon_state_names(poseidon):
    texts = {r.text for r in poseidon.readings if r.metric == "contact_state"}
    assert texts == {"off"}
    texts = {r.text for r in poseidon.readings if r.metric == "contact_alarm"}
    assert texts == {"normal"}


def test_poseidon_without_input_counters_exports_no_pulses(poseidon):
    # inpCounter (.1.1.6) is newer than this firmware: absent, skipped quietly
    assert values(poseidon, "input_pulses_total") == {}


def test_poseidon_relays(poseidon):
    assert value(poseidon, "relay_state", relay="BinOut 1") == 0
    assert value(poseidon, "relay_state", relay="BinOut 2") == 0
    assert len(values(poseidon, "relay_state")) == 2


def test_poseidon_temperatures_in_celsius(poseidon):
    for sensor, celsius in POSEIDON_TEMPERATURES.items():
        assert value(poseidon, "sensor_celsius", sensor=sensor) == pytest.approx(celsius)
    assert names(poseidon, "sensor_celsius", "sensor") == set(POSEIDON_TEMPERATURES)
    assert value(poseidon, "sensor_celsius", sensor="T.Network", unit_text="C") == 24.9


def test_poseidon_humidity_as_ratio(poseidon):
    for sensor, ratio in POSEIDON_HUMIDITIES.items():
        assert value(poseidon, "sensor_humidity_ratio", sensor=sensor) == pytest.approx(ratio)
    assert names(poseidon, "sensor_humidity_ratio", "sensor") == set(POSEIDON_HUMIDITIES)


def test_poseidon_sensor_units_never_mixed(poseidon):
    # each of the 8 sensors lands in exactly one unit metric, none in sensor_value
    assert values(poseidon, "sensor_value") == {}
    assert not names(poseidon, "sensor_celsius", "sensor") & names(
        poseidon, "sensor_humidity_ratio", "sensor")


def test_poseidon_sensor_status(poseidon):
    statuses = values(poseidon, "sensor_status")
    assert len(statuses) == 8
    assert set(statuses.values()) == {1}  # sensState normal
    assert value(poseidon, "sensor_status", sensor="H.Servidores") == 1


# --- APC NetBotz Rack Monitor 250 ----------------------------------------------------------

def test_netbotz_identity(netbotz):
    labels = info(netbotz)
    assert labels["vendor"] == "APC"
    assert labels["model"] == "NBRK0250A"
    assert labels["firmware"] == "2.3.2.1"
    assert labels["serial"] == "QA2413270516"


def test_netbotz_dry_contacts(netbotz):
    # three fire-alarm inputs on module 0, open (their normal state), no alarm, alarms enabled
    found = {(r.labels["number"], r.labels["contact"], r.labels["location"])
             for r in netbotz.readings if r.metric == "contact_state"}
    assert found == NETBOTZ_CONTACTS
    for number, contact, location in NETBOTZ_CONTACTS:
        assert value(netbotz, "contact_state", contact=contact, module="0",
                     number=number, location=location) == 0  # open
        assert value(netbotz, "contact_alarm", contact=contact, alarm_enabled="yes") == 0
    assert {r.text for r in netbotz.readings if r.metric == "contact_state"} == {"open"}


def test_netbotz_relay_and_outlet(netbotz):
    assert value(netbotz, "relay_state", relay="Relay", output="relay") == 0    # open
    assert value(netbotz, "relay_state", relay="Outlet", output="outlet") == 0  # off
    assert len(values(netbotz, "relay_state")) == 2


def test_netbotz_wireless_temperatures(netbotz):
    assert value(netbotz, "sensor_celsius", sensor="THUM-01-A3-F") == 23.8
    assert value(netbotz, "sensor_celsius", sensor="TEMP-13-B12-R",
                 location="Rack-B12-R") == 31.0
    assert value(netbotz, "sensor_celsius", sensor="TEMP-17-UPS-R") == 21.3
    # 17 probes read; the range extender (no probe, -2147483647) gives no temperature
    assert len(values(netbotz, "sensor_celsius")) == 17
    assert "Hall1-Wireless-Ext" not in names(netbotz, "sensor_celsius", "sensor")


def test_netbotz_wireless_humidity(netbotz):
    assert value(netbotz, "sensor_humidity_ratio", sensor="THUM-01-A3-F") == pytest.approx(0.45)
    assert value(netbotz, "sensor_humidity_ratio", sensor="THUM-09-D6-F") == pytest.approx(0.50)
    # only the ten THUM (temperature + humidity) probes; TEMP-only probes report -1
    assert names(netbotz, "sensor_humidity_ratio", "sensor") == {
        f"THUM-{n:02d}-{pos}-F" for n, pos in
        enumerate(["A3", "A6", "A11", "B6", "B12", "C3", "C7", "C12", "D6", "D11"], start=1)}


def test_netbotz_wireless_battery_and_link(netbotz):
    assert value(netbotz, "sensor_volts_dc", sensor="THUM-01-A3-F", part="battery") == 2.8
    assert value(netbotz, "sensor_volts_dc", sensor="TEMP-11-A8-R", part="battery") == 2.9
    statuses = values(netbotz, "sensor_status")
    assert len(statuses) == 18
    assert set(statuses.values()) == {2}  # all active (commsOK)


def test_netbotz_reports_in_celsius(netbotz):
    assert value(netbotz, "sensor_temperature_unit") == 1


def test_netbotz_keeps_its_interfaces(netbotz):
    assert values(netbotz, "interface_oper_status")


def test_netbotz_both_engines_read_the_same(recording_poller):
    a = recording_poller.poll("apc_netbotz", profile="apc-netbotz", engine="pysnmp")
    strip = lambda r: sorted((x.metric, tuple(sorted(x.labels.items())), x.value)  # noqa: E731
                             for x in r.readings if x.metric != "device_uptime_seconds")
    for engine in ("builtin", "ezsnmp"):
        b = recording_poller.poll("apc_netbotz", profile="apc-netbotz", engine=engine)
        assert strip(a) == strip(b), engine


# --- AKCP sensorProbe2+ ----------------------------------------------------------------------

def test_akcp_identity(akcp):
    labels = info(akcp)
    assert labels["vendor"] == "AKCP"
    assert labels["model"] == "SP2+"
    assert labels["firmware"] == "1.0.4080"


def test_akcp_sensor_tables_absent_from_walk_are_quiet(akcp):
    # the walk has no sensor table: nothing invented, nothing reported as a problem
    metrics = {r.metric for r in akcp.readings}
    assert metrics <= {"up", "device_info", "device_uptime_seconds"}
    assert akcp.problems == []


# --- the SPD-monitor layout recommended for the demo site (docs/machine-room-sensors.md) ---
# Synthetic data written here (not a device walk): a Poseidon-structured SPD monitor with two
# SPDs (status contact, strike-counter input, leakage sensor each), a door and a water contact,
# room temperature/humidity, and one sensor left in Fahrenheit. It covers what the real
# Poseidon walk lacks: inpCounter, a milliampere sensor, alarms set up and raised.

P = "1.3.6.1.4.1.21796.3.3"
SPD_MONITOR = {
    "1.3.6.1.2.1.1.1.0": ("4", "Poseidon 4002 SNMP Supervisor v2.0.15 (SPD monitor)"),
    "1.3.6.1.2.1.1.2.0": ("6", P),
    "1.3.6.1.2.1.1.3.0": ("67", "123456"),
    **{f"{P}.1.1.2.{i}": ("2", v) for i, v in enumerate("100011", start=1)},       # inpValue
    **{f"{P}.1.1.3.{i}": ("4", n) for i, n in enumerate(
        ["SPD1 AC-IN", "SPD1-CNT AC-IN", "SPD2 POE-SW", "SPD2-CNT POE-SW", "DOOR1", "WATER1"],
        start=1)},                                                                  # inpName
    **{f"{P}.1.1.4.{i}": ("2", v) for i, v in enumerate("101011", start=1)},       # inpAlarmSetup
    **{f"{P}.1.1.5.{i}": ("2", v) for i, v in enumerate("001000", start=1)},       # inpAlarmState
    **{f"{P}.1.1.6.{i}": ("2", v) for i, v in enumerate(
        ["0", "17", "2", "3", "40", "0"], start=1)},                                # inpCounter
    f"{P}.2.1.2.1": ("2", "1"), f"{P}.2.1.3.1": ("4", "Siren"),                    # outputs
    **{f"{P}.3.1.2.{j}": ("4", n) for j, n in enumerate(
        ["SPD1-LEAK", "SPD2-LEAK", "TEMP1", "RH1", "TEMP2 door"], start=1)},       # sensName
    **{f"{P}.3.1.4.{j}": ("2", v) for j, v in enumerate("13111", start=1)},        # sensState
    **{f"{P}.3.1.6.{j}": ("2", v) for j, v in enumerate(
        ["8", "15", "249", "303", "770"], start=1)},                                # sensValue
    **{f"{P}.3.1.9.{j}": ("2", v) for j, v in enumerate(
        ["5", "5", "0", "3", "1"], start=1)},                                       # sensUnit
    **{f"{P}.3.1.10.{j}": ("4", u) for j, u in enumerate(
        ["mA", "mA", "C", "%RH", "F"], start=1)},                                   # sensUnitString
}


def serve_and_poll(tmp_path_factory, profiles, name: str, records: dict):
    """Serve `records` ({oid: (snmprec type, value)}) with snmpsim and poll them once."""
    work = tmp_path_factory.mktemp(name)
    data = work / "data"
    data.mkdir()
    key = lambda oid: tuple(int(x) for x in oid.split("."))  # noqa: E731
    (data / f"{name}.snmprec").write_text("".join(
        f"{oid}|{typ}|{val}\n" for oid, (typ, val) in sorted(records.items(),
                                                              key=lambda kv: key(kv[0]))))
    with peers.snmpsim(data, work) as port:
        return Poller(port, profiles).poll(name, profile=None)


@pytest.fixture(scope="module")
def spd_monitor(tmp_path_factory, profiles):
    return serve_and_poll(tmp_path_factory, profiles, "spd-monitor", SPD_MONITOR)


def test_spd_monitor_is_a_poseidon(spd_monitor):
    assert spd_monitor.up, spd_monitor.detail
    assert spd_monitor.profile == "hwg-poseidon"
    assert spd_monitor.problems == []


def test_spd_status_contacts(spd_monitor):
    assert value(spd_monitor, "contact_alarm", contact="SPD1 AC-IN", alarm_enabled="yes") == 0
    assert value(spd_monitor, "contact_alarm", contact="SPD2 POE-SW", alarm_enabled="yes") == 1
    assert value(spd_monitor, "contact_state", contact="SPD2 POE-SW") == 0  # NC contact opened
    assert value(spd_monitor, "contact_alarm", contact="SPD1-CNT AC-IN", alarm_enabled="no") == 0


def test_spd_strike_counters(spd_monitor):
    pulses = values(spd_monitor, "input_pulses_total")
    assert len(pulses) == 6  # every input counts; rules pick the -CNT ones by name
    assert value(spd_monitor, "input_pulses_total", input="SPD1-CNT AC-IN", index="2") == 17
    assert value(spd_monitor, "input_pulses_total", input="SPD2-CNT POE-SW") == 3


def test_spd_leakage_current_in_amperes(spd_monitor):
    assert value(spd_monitor, "sensor_amperes", sensor="SPD1-LEAK") == pytest.approx(0.0008)
    assert value(spd_monitor, "sensor_amperes", sensor="SPD2-LEAK",
                 unit_text="mA") == pytest.approx(0.0015)
    assert value(spd_monitor, "sensor_status", sensor="SPD2-LEAK") == 3  # alarm


def test_spd_monitor_room_climate_and_relay(spd_monitor):
    assert value(spd_monitor, "sensor_celsius", sensor="TEMP1") == 24.9
    assert value(spd_monitor, "sensor_humidity_ratio", sensor="RH1") == pytest.approx(0.303)
    assert value(spd_monitor, "relay_state", relay="Siren") == 1


def test_fahrenheit_is_never_exported_as_celsius(spd_monitor):
    assert "TEMP2 door" not in names(spd_monitor, "sensor_celsius", "sensor")
    assert value(spd_monitor, "sensor_value", sensor="TEMP2 door", unit_text="F") == 77.0


# --- AKCP sensorProbe+ tables, as SPAGENT-MIB defines them ---------------------------------
# The SP2+ walk has no sensor table, so this synthetic probe (rows written here from the MIB
# definitions, index "1".."3") checks the mapping: contacts vs outputs split by status code,
# sensorError kept out of contact_alarm, 4-20 mA value with its unit.

A = "1.3.6.1.4.1.3854.3.5"
SENSORPROBE_PLUS = {
    "1.3.6.1.2.1.1.1.0": ("4", "SP2+ 1.0.4080 Jan 19 2018 13:04:45"),
    "1.3.6.1.2.1.1.2.0": ("6", "1.3.6.1.4.1.3854"),
    f"{A}.2.1.2.1": ("4", "TEMP1 room"), f"{A}.2.1.4.1": ("2", "24"),     # temperatureTable
    f"{A}.2.1.5.1": ("4", "C"), f"{A}.2.1.6.1": ("2", "2"),
    f"{A}.3.1.2.1": ("4", "RH1 room"), f"{A}.3.1.4.1": ("2", "41"),       # humidityTable
    f"{A}.3.1.6.1": ("2", "2"),
    f"{A}.4.1.2.1": ("4", "SPD1 AC-IN"), f"{A}.4.1.6.1": ("2", "4"),      # drycontactTable
    f"{A}.4.1.2.2": ("4", "DOOR1"), f"{A}.4.1.6.2": ("2", "2"),
    f"{A}.4.1.2.3": ("4", "Siren out"), f"{A}.4.1.6.3": ("2", "9"),
    f"{A}.5.1.2.1": ("4", "SPD1-LEAK"), f"{A}.5.1.4.1": ("2", "3"),       # current4to20mATable
    f"{A}.5.1.5.1": ("4", "mA"), f"{A}.5.1.6.1": ("2", "2"),
    f"{A}.9.1.2.1": ("4", "WATER1"), f"{A}.9.1.6.1": ("2", "7"),          # waterTable
    f"{A}.12.1.2.1": ("4", "Relay1"), f"{A}.12.1.6.1": ("2", "8"),        # relayTable
}


@pytest.fixture(scope="module")
def sensorprobe_plus(tmp_path_factory, profiles):
    return serve_and_poll(tmp_path_factory, profiles, "sensorprobe-plus", SENSORPROBE_PLUS)


def test_sensorprobe_plus_mapping(sensorprobe_plus):
    r = sensorprobe_plus
    assert r.profile == "akcp-sensorprobe" and r.problems == []
    assert value(r, "sensor_celsius", sensor="TEMP1 room", unit_text="C") == 24
    assert value(r, "sensor_humidity_ratio", sensor="RH1 room") == pytest.approx(0.41)
    assert value(r, "sensor_value", sensor="SPD1-LEAK", unit_text="mA") == 3
    # dry-contact inputs: critical -> 1, normal -> 0; the output row is a relay, not a contact
    assert value(r, "contact_alarm", contact="SPD1 AC-IN") == 1
    assert value(r, "contact_alarm", contact="DOOR1") == 0
    assert names(r, "contact_alarm", "contact") == {"SPD1 AC-IN", "DOOR1"}
    assert value(r, "relay_state", relay="Siren out") == 1     # outputHigh
    assert value(r, "relay_state", relay="Relay1") == 1        # relayOn
    # a water sensor in sensorError is no alarm, but its status shows the fault
    assert value(r, "sensor_status", sensor="WATER1") == 7
    assert values(r, "contact_state") == {}
