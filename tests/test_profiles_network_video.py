"""Vendor profiles for switches, cameras and NVRs, against real device walks.

Each recording is served by snmpsim on loopback and polled through the real collector, first
with auto-detection (the profile a fresh inventory entry would get), then by name. The values
asserted are the ones a maintenance engineer reads: PoE budget and per-port power, interface
counts, sensor readings in base units, and each camera's and recorder's model and firmware.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import info, value, values

PROFILE_OF = {
    "XMG1915-10EP": "zyxel-switch",
    "jetstream": "tplink-jetstream",
    "comware_1": "h3c-comware",
    "advantech_eki-7712g-4fp": "advantech-eki",
    "arista_eos": "arista-eos",
    "hikvision-cam": "hikvision-camera",
    "axiscam": "axis-camera",
    "vivotek": "vivotek-camera",
    "hikvision-nvr": "hikvision-nvr",
    "dahua-nvr": "dahua-nvr",
}


@pytest.fixture(scope="module")
def polled(recording_poller):
    """Each recording polled once with its profile named (the common case in an inventory)."""
    cache: dict[str, object] = {}

    def get(recording: str):
        if recording not in cache:
            cache[recording] = recording_poller.poll(recording, PROFILE_OF[recording])
        return cache[recording]

    return get


# --- detection and cleanliness -------------------------------------------------------------

@pytest.mark.parametrize("recording,profile", sorted(PROFILE_OF.items()))
def test_auto_detection_picks_the_vendor_profile(recording_poller, recording, profile):
    result = recording_poller.poll(recording, profile=None)
    assert result.up, f"{recording}: {result.reason} {result.detail}"
    assert result.profile == profile
    assert result.problems == []


@pytest.mark.parametrize("recording", sorted(PROFILE_OF))
def test_no_problems_reported(polled, recording):
    # "N/A" strings, NUL-padded "N/A", -1000000000 sensor rows and absent optional tables are
    # all "no reading": none of them may show up as a problem.
    result = polled(recording)
    assert result.up, f"{recording}: {result.reason} {result.detail}"
    assert result.problems == []


@pytest.mark.parametrize("recording", ["advantech_eki-7712g-4fp", "hikvision-cam", "XMG1915-10EP"])
def test_both_engines_read_the_vendor_quirks_alike(recording_poller, recording):
    # string numbers with NUL padding, a walk without a system group, a value holding '|'
    strip = lambda r: sorted((x.metric, tuple(sorted(x.labels.items())), x.value)  # noqa: E731
                             for x in r.readings)
    a = recording_poller.poll(recording, PROFILE_OF[recording], engine="pysnmp")
    assert a.up
    for engine in ("builtin", "ezsnmp"):
        b = recording_poller.poll(recording, PROFILE_OF[recording], engine=engine)
        assert b.up and strip(a) == strip(b), engine


# --- switches -------------------------------------------------------------------------------

def test_zyxel_poe_budget_and_consumption(polled):
    result = polled("XMG1915-10EP")
    assert value(result, "poe_budget_watts", group="1") == 130
    assert value(result, "poe_consumption_watts", group="1") == 11


def test_zyxel_identity_and_load(polled):
    result = polled("XMG1915-10EP")
    labels = info(result)
    assert labels["vendor"] == "Zyxel"
    assert labels["model"] == "XMG1915-10EP"
    assert labels["firmware"] == "V4.80(ACGP.3)"       # recorded as "V4.80(ACGP.3) | 11/26/2024"
    assert labels["serial"] == "S232L47003319"
    assert value(result, "cpu_usage_ratio") == 0.07       # sysMgmtCPU5SecUsage fallback
    assert value(result, "memory_usage_ratio") == 0.22


def test_zyxel_interfaces_without_ifindex_column(polled):
    status = values(polled("XMG1915-10EP"), "interface_oper_status")
    assert len(status) == 14
    names = {dict(labels)["interface"] for labels in status}
    assert {f"swp{n:02d}" for n in range(10)} <= names
    assert value(polled("XMG1915-10EP"), "interface_oper_status", ifindex="2") == 1


def test_jetstream_interfaces_up_and_down(polled):
    result = polled("jetstream")
    status = values(result, "interface_oper_status")
    assert len(status) == 55
    assert sum(1 for v in status.values() if v == 1) == 26
    assert sum(1 for v in status.values() if v == 2) == 29
    assert value(result, "interface_oper_status",
                 interface="gigabitEthernet 1/0/1 : copper") in (1, 2)


def test_jetstream_cpu_load(polled):
    result = polled("jetstream")
    assert value(result, "cpu_usage_ratio", unit="1") == 0.9
    assert info(result)["vendor"] == "TP-Link"


def test_comware_identity_from_sysdescr(polled):
    labels = info(polled("comware_1"))
    assert labels["vendor"] == "H3C"
    assert labels["firmware"] == "3.10, Release 2211P06"


def test_comware_model_line_of_newer_sysdescr(profiles):
    # Comware 7 puts the model on the second line of sysDescr; this walk has no such line, so
    # the profile's own regexes are checked against the documented layout.
    text = ("H3C Comware Platform Software, Software Version 7.1.045, Release 2311P06\r\n"
            "H3C S5130S-28S-LI\r\n"
            "Copyright (c) 2004-2017 New H3C Technologies Co., Ltd. All rights reserved.")
    specs = {name: spec for metric in profiles.profiles["h3c-comware"].model.metrics
             if metric.type == "info" for name, spec in metric.labels.items()
             if getattr(spec, "regex", None)}

    def apply(label: str) -> str | None:
        match = re.search(specs[label].regex, text)
        return match.group(1) if match else None

    assert apply("model") == "S5130S-28S-LI"
    assert apply("firmware") == "7.1.045, Release 2311P06"
    assert apply("vendor") is None                     # H3C, not HPE: the constant stays


def test_advantech_identity(polled):
    labels = info(polled("advantech_eki-7712g-4fp"))
    assert (labels["vendor"], labels["model"], labels["firmware"]) == \
        ("Advantech", "EKI-7712G-4FP", "1.02.03")


def test_advantech_per_port_poe(polled):
    result = polled("advantech_eki-7712g-4fp")
    assert value(result, "poe_port_volts", port="6") == 47.177
    assert value(result, "poe_port_volts", port="5") == 46.855
    assert value(result, "poe_port_power_watts", port="4") == 8.9
    assert value(result, "poe_port_power_watts", port="7") == 5.6
    assert value(result, "poe_port_current_amperes", port="4") == 0.199
    assert value(result, "poe_port_power_watts", port="3", interface="GigabitEthernet3") == 6.4
    # ports 1, 2 and 8 deliver no power: 0.000 W, and "N/A" (one NUL-terminated) for
    # current and voltage, which is no reading rather than a zero or an error
    for port in ("1", "2", "8"):
        assert value(result, "poe_port_power_watts", port=port) == 0
    assert {dict(k)["port"] for k in values(result, "poe_port_volts")} == {"3", "4", "5", "6", "7"}
    assert {dict(k)["port"] for k in values(result, "poe_port_current_amperes")} == \
        {"3", "4", "5", "6", "7"}


def test_advantech_sfp_diagnostics(polled):
    result = polled("advantech_eki-7712g-4fp")
    assert value(result, "sensor_celsius", interface="GE9", sensor="SFP temperature") == 55.0
    assert value(result, "sensor_volts_dc", interface="GE10") == 3.279
    assert value(result, "sensor_amperes", interface="GE9") == pytest.approx(0.022548)
    assert value(result, "sensor_dbm", interface="GE9", sensor="SFP TX power") == -5.331
    assert value(result, "sensor_dbm", interface="GE10", sensor="SFP RX power") == -6.58
    # GE11 and GE12 hold no module ("N/A"): no readings for them
    assert not [r for r in result.readings if r.labels.get("interface") in ("GE11", "GE12")]


def test_arista_sensor_conversions(polled):
    result = polled("arista_eos")
    assert value(result, "sensor_celsius", sensor="Cpu temp sensor") == pytest.approx(53.3)
    # board rails are typed voltsAC by the device: kept as it says
    assert value(result, "sensor_volts_ac",
                 sensor="CpucardPwrCon Rail1 12V standby") == pytest.approx(11.98)
    assert value(result, "sensor_volts_dc",
                 sensor="DOM Voltage Sensor for Ethernet1") == pytest.approx(3.31)
    # optical power: watts, scale milli, precision 4: 6322 is 0.6322 mW
    assert value(result, "sensor_watts",
                 sensor="DOM TX Power Sensor for Ethernet1") == pytest.approx(0.0006322)


def test_arista_no_reading_rows_skipped(polled):
    result = polled("arista_eos")
    assert len(values(result, "sensor_watts")) == 64 - 29
    assert not [r for r in result.readings if r.metric == "sensor_watts"
                and r.labels["sensor"] == "DOM RX Power Sensor for Ethernet2"]
    assert len(values(result, "sensor_status")) == 211
    assert all(v == 1 for v in values(result, "sensor_status").values())
    assert len(values(result, "sensor_celsius")) == 44


def test_arista_thresholds(polled):
    result = polled("arista_eos")
    cpu = {dict(k)["level"]: v for k, v in values(result, "sensor_threshold_celsius").items()
           if dict(k)["sensor"] == "Cpu temp sensor"}
    assert cpu == {"high_warning": pytest.approx(90.0), "high_critical": pytest.approx(95.0)}
    assert value(result, "sensor_threshold_watts", sensor="DOM TX Power Sensor for Ethernet1",
                 level="high_critical") == pytest.approx(0.0022387)


def test_arista_identity(polled):
    labels = info(polled("arista_eos"))
    assert (labels["vendor"], labels["model"], labels["firmware"]) == \
        ("Arista", "DCS-7050TX-128", "4.15.3F")


# --- cameras -------------------------------------------------------------------------------

def test_hikvision_camera(polled):
    result = polled("hikvision-cam")
    labels = info(result)
    assert (labels["vendor"], labels["model"], labels["firmware"]) == \
        ("Hikvision", "DS-2CD2185FWD-I", "V5.5.3 build 171025")
    assert value(result, "cpu_usage_ratio") == 0.15              # "15 PERCENT"
    assert value(result, "memory_usage_ratio") == 0.83           # "83 PERCENT"
    assert value(result, "memory_total_bytes") == 512 * 1024 * 1024   # "512 MB"
    assert value(result, "storage_size_bytes", storage="local") == 0  # "0.0 GB": no card


def test_axis_camera(polled):
    labels = info(polled("axiscam"))
    assert (labels["vendor"], labels["model"], labels["firmware"]) == \
        ("Axis", "P5534-E", "5.40.9.2")


def test_vivotek_camera(polled):
    result = polled("vivotek")
    assert info(result)["vendor"] == "VIVOTEK"
    assert info(result)["sys_descr"] == "Mega-Pixel Network Camera"
    assert {dict(k)["interface"] for k in values(result, "interface_oper_status")} == \
        {"lo0", "eth0"}
    assert value(result, "device_uptime_seconds") > 0


# --- recorders ------------------------------------------------------------------------------

def test_hikvision_nvr(polled):
    result = polled("hikvision-nvr")
    assert info(result)["vendor"] == "Hikvision"
    assert info(result)["serial"] == "0820160719AARR624053979WCVU"
    assert value(result, "memory_total_bytes") == 169 * 1024 * 1024
    assert value(result, "memory_usage_ratio") == 0.05
    # the disk row is written as "1.0": labelled disk 1; sizes in MB
    assert value(result, "nvr_disk_capacity_bytes", disk="1") == 3815447 * 1024 * 1024
    assert value(result, "nvr_disk_free_bytes", disk="1") == 2715648 * 1024 * 1024


def test_dahua_nvr(polled):
    result = polled("dahua-nvr")
    labels = info(result)
    assert (labels["vendor"], labels["model"], labels["firmware"], labels["serial"]) == \
        ("Dahua", "DH-NVR4108HS-8P-4KS2", "3.212.0000.1", "2M00D2APAZTL62J")
    assert value(result, "cpu_usage_ratio") == 0.06
    assert value(result, "device_healthy") == 1
    assert value(result, "interface_oper_status", interface="eth0") == 1
