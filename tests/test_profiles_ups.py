"""Vendor UPS profiles against real device walks (served by snmpsim on loopback).

Each recording is polled through the real collector, the way the daemon does. The values
asserted are what a maintenance engineer reads off the UPS panel or the inspection sheet:
battery state, charge, runtime, mains/battery/bypass, per-phase voltages and loads, and the
identity strings.
"""

from __future__ import annotations

import pytest

from tests.conftest import info, value, values

UPS_PROFILES = {
    "deltaups": "delta-ups",
    "eaton-mgeups": "mge-ups",
    "netagent2": "megatec-netagent",
    "liebert": "liebert-gp",
    "sinetica": "sinetica-ups",
    "huaweiups": "huawei-ups",
}


def by_line(result, metric: str) -> dict[str, float]:
    """{line label: value} of a per-line metric (fails on a duplicate line)."""
    found: dict[str, float] = {}
    for reading in result.readings:
        if reading.metric == metric:
            line = reading.labels["line"]
            assert line not in found, f"{metric}: line {line} read twice"
            found[line] = reading.value
    return found


# -- detection and clean polls ----------------------------------------------------------------


@pytest.mark.parametrize("recording,profile", sorted(UPS_PROFILES.items()))
def test_auto_detection_picks_the_vendor_profile(recording_poller, recording, profile):
    result = recording_poller.poll(recording, profile=None)
    assert result.up, result.detail
    assert result.profile == profile
    assert result.problems == []


@pytest.mark.parametrize("recording,profile", sorted(UPS_PROFILES.items()))
def test_engines_and_snmp_versions_read_the_same(recording_poller, recording, profile):
    def strip(result):
        assert result.up, result.detail
        assert result.problems == []
        return sorted((r.metric, tuple(sorted(r.labels.items())), r.value)
                      for r in result.readings if r.metric != "device_uptime_seconds")

    reference = strip(recording_poller.poll(recording, profile))
    assert strip(recording_poller.poll(recording, profile, engine="ezsnmp")) == reference
    assert strip(recording_poller.poll(recording, profile, engine="builtin")) == reference
    assert strip(recording_poller.poll(recording, profile, version="1")) == reference


def test_new_metrics_are_described(profiles):
    """Metrics outside the shared vocabulary carry their own help text, one type each."""
    for name in ("ups_on_bypass", "ups_output_overload", "ups_battery_fault", "ups_test_result",
                 "ups_system_state", "ups_input_current_amperes", "pdu_status",
                 "pdu_input_volts", "pdu_input_current_amperes", "pdu_input_power_watts",
                 "pdu_input_load_ratio", "pdu_branch_current_amperes", "pdu_branch_load_ratio"):
        spec = profiles.catalogue[name]
        assert spec.type == "gauge" and spec.help, name
    for profile in UPS_PROFILES.values():
        model = profiles.profiles[profile].model
        assert model.kinds == ["ups"] and "system" in model.include, profile


# -- Delta (Minuteman OEM): UPS-MIB plus DeltaUPS-MIB identity ----------------------------------


def test_delta_battery_and_mains(recording_poller):
    result = recording_poller.poll("deltaups", "delta-ups")
    assert value(result, "ups_battery_status") == 2  # normal
    assert value(result, "ups_battery_charge_ratio") == 1.0
    assert value(result, "ups_battery_runtime_seconds") == 1320  # 22 min
    assert value(result, "ups_battery_volts") == 41.2
    assert value(result, "ups_battery_temperature_celsius") == 23
    assert value(result, "ups_on_battery") == 0
    assert value(result, "ups_output_source") == 3  # normal
    assert by_line(result, "ups_output_load_ratio") == {"1": 0.79}
    assert by_line(result, "ups_input_volts") == {"1": 121}
    # upsBatteryCurrent is a NULL in the walk: no reading, and no problem either
    assert values(result, "ups_battery_current_amperes") == {}


def test_delta_identity_from_the_delta_mib(recording_poller):
    labels = info(recording_poller.poll("deltaups", "delta-ups"))
    assert labels["vendor"] == "Minuteman"        # dupsIdentManufacturer
    assert labels["model"] == "E1500RTXL2U"       # dupsIdentModel (UPS-MIB has none)
    assert labels["firmware"] == "03"             # dupsIdentUPSSoftwareVersion


# -- MGE Galaxy 7000 (MG-SNMP-UPS-MIB), three phases -----------------------------------------------


def test_mge_battery(recording_poller):
    result = recording_poller.poll("eaton-mgeups", "mge-ups")
    assert value(result, "ups_battery_status") == 2  # upsmgBatteryLowBattery = no
    assert value(result, "ups_battery_charge_ratio") == 1.0
    assert value(result, "ups_battery_runtime_seconds") == 7260  # seconds in this MIB
    assert value(result, "ups_battery_volts") == 600.0
    assert value(result, "ups_battery_temperature_celsius") == 17
    assert value(result, "ups_battery_fault") == 0
    assert value(result, "ups_battery_replace_needed") == 0


def test_mge_on_mains_not_on_bypass(recording_poller):
    result = recording_poller.poll("eaton-mgeups", "mge-ups")
    assert value(result, "ups_on_battery") == 0
    assert value(result, "ups_on_bypass") == 0
    assert value(result, "ups_output_overload") == 0


def test_mge_per_phase_values(recording_poller):
    result = recording_poller.poll("eaton-mgeups", "mge-ups")
    assert by_line(result, "ups_input_volts") == {"1": 408.0, "2": 409.0, "3": 408.0}
    assert by_line(result, "ups_input_frequency_hertz") == {"1": 50.0, "2": 50.0, "3": 50.0}
    assert by_line(result, "ups_input_current_amperes") == {"1": 37.0, "2": 35.0, "3": 37.0}
    assert by_line(result, "ups_output_volts") == {"1": 400.0, "2": 399.0, "3": 399.0}
    assert by_line(result, "ups_output_current_amperes") == {"1": 39.0, "2": 26.0, "3": 33.0}
    assert by_line(result, "ups_output_load_ratio") == {"1": 0.10, "2": 0.07, "3": 0.09}
    assert value(result, "ups_output_frequency_hertz") == 49.0


def test_mge_ignores_the_misscaled_ups_mib_rows(recording_poller):
    # The card's few UPS-MIB rows (upsInputVoltage.1.0 = 2353, in 0.1 V against RFC 1628)
    # must not surface as a 2353 V line next to the MGE table's.
    result = recording_poller.poll("eaton-mgeups", "mge-ups")
    volts = list(by_line(result, "ups_input_volts").values()) + \
        list(by_line(result, "ups_output_volts").values())
    assert all(200 < v < 500 for v in volts)


def test_mge_identity(recording_poller):
    labels = info(recording_poller.poll("eaton-mgeups", "mge-ups"))
    assert labels["vendor"] == "MGE"
    assert labels["model"] == "Galaxy 7000"
    assert labels["firmware"] == "GDET: BQ-7-AR / DIGIT: EJ-7-AR"
    assert labels["serial"] == "0123456789"


# -- Megatec NetAgent II on an INVT three-phase UPS (XPPC-MIB) -------------------------------------


def test_netagent_battery(recording_poller):
    result = recording_poller.poll("netagent2", "megatec-netagent")
    assert value(result, "ups_battery_status") == 2
    assert value(result, "ups_battery_charge_ratio") == 1.0
    assert value(result, "ups_battery_temperature_celsius") == 25.0  # 0.1 C in the PPC MIB
    assert value(result, "ups_battery_volts") == 269.0  # UPS-MIB upsBatteryVoltage, 0.1 V


def test_netagent_output_on_buck_not_battery(recording_poller):
    result = recording_poller.poll("netagent2", "megatec-netagent")
    reading = next(r for r in result.readings if r.metric == "ups_output_source")
    assert (reading.value, reading.text) == (7, "onBuck")  # UPS-MIB reducer(7)
    assert value(result, "ups_on_battery") == 0


def test_netagent_three_phase_values(recording_poller):
    result = recording_poller.poll("netagent2", "megatec-netagent")
    assert by_line(result, "ups_input_volts") == {"1": 236.0, "2": 236.7, "3": 237.9}
    assert by_line(result, "ups_output_volts") == {"1": 231.2, "2": 231.3, "3": 231.2}
    assert by_line(result, "ups_output_load_ratio") == {"1": 0.235, "2": 0.327, "3": 0.327}
    assert by_line(result, "ups_bypass_volts") == {"1": 234.6, "2": 236.2, "3": 236.4}
    assert by_line(result, "ups_input_frequency_hertz") == {"1": 49.9}
    assert value(result, "ups_output_frequency_hertz") == 49.9


def test_netagent_probe_not_fitted_gives_no_contact_reading(recording_poller):
    # upsEnvWater / upsEnvSmoke answer 0 (not in the MIB's normal/abnormal): no probe
    result = recording_poller.poll("netagent2", "megatec-netagent")
    assert values(result, "contact_alarm") == {}


def test_netagent_identity(recording_poller):
    labels = info(recording_poller.poll("netagent2", "megatec-netagent"))
    assert labels["vendor"] == "INVT CO., LTD"
    assert labels["agent_firmware"] == "2.48.DP520.WEST"
    assert labels["sys_object_id"] == "1.3.6.1.4.1.935"  # leading dot of the walk dropped


# -- Liebert (LIEBERT-GP MIBs only; this card manages an MPH rack PDU) --------------------------


def test_liebert_identity(recording_poller):
    labels = info(recording_poller.poll("liebert", "liebert-gp"))
    assert labels["vendor"] == "Liebert"
    assert labels["model"] == "GXT2-3000RT120"
    assert labels["firmware"] == "0-3-2-3"
    assert labels["serial"] == "DM2013JUN240015"


def test_liebert_pdu_input_and_branches(recording_poller):
    result = recording_poller.poll("liebert", "liebert-gp")
    assert value(result, "pdu_status", pdu="1") == 16  # normalWithAlarm
    assert value(result, "pdu_input_volts", line="1") == 119.6
    assert value(result, "pdu_input_current_amperes", line="1") == 20.45
    assert value(result, "pdu_input_power_watts", source="1") == 2411
    assert value(result, "pdu_input_load_ratio", line="1") == 0.682
    branches = {labels[1][1]: v for labels, v in
                values(result, "pdu_branch_current_amperes").items()}
    assert branches == {"Branch 1": 14.28, "Branch 2": 1.96, "Branch 3": 4.19}
    assert value(result, "pdu_branch_load_ratio", name="Branch 1") == 0.714


def test_liebert_probes(recording_poller):
    result = recording_poller.poll("liebert", "liebert-gp")
    assert value(result, "sensor_celsius", index="2") == 17.5
    assert value(result, "sensor_celsius", index="3") == 20.1
    assert value(result, "sensor_humidity_ratio", index="1") == 0.142
    assert value(result, "sensor_humidity_ratio", index="4") == 0.172


def test_liebert_without_ups_data_reads_no_ups_values(recording_poller):
    result = recording_poller.poll("liebert", "liebert-gp")
    assert not [r for r in result.readings if r.metric.startswith("ups_")]


# -- Sinetica UPSController: UPS-MIB re-rooted under enterprises.13891.101 -----------------------


def test_sinetica_battery(recording_poller):
    result = recording_poller.poll("sinetica", "sinetica-ups")
    assert value(result, "ups_battery_status") == 2
    assert value(result, "ups_seconds_on_battery") == 0
    assert value(result, "ups_battery_runtime_seconds") == 0  # the card reports 0 min
    assert value(result, "ups_battery_charge_ratio") == 1.0
    assert value(result, "ups_battery_volts") == 409.9


def test_sinetica_input_output_bypass(recording_poller):
    result = recording_poller.poll("sinetica", "sinetica-ups")
    assert by_line(result, "ups_input_volts") == {"1": 206, "2": 206, "3": 206}
    # frequency is measured on line 1 only; the 0 of lines 2 and 3 is no reading
    assert by_line(result, "ups_input_frequency_hertz") == {"1": 60.0}
    assert by_line(result, "ups_input_current_amperes") == {"1": 177, "2": 176, "3": 174}
    assert value(result, "ups_output_source") == 3  # normal
    assert value(result, "ups_on_battery") == 0
    assert value(result, "ups_on_bypass") == 0
    assert value(result, "ups_output_frequency_hertz") == 60.0
    assert by_line(result, "ups_output_volts") == {"1": 208, "2": 208, "3": 209}
    assert by_line(result, "ups_output_load_ratio") == {"1": 0.39, "2": 0.0, "3": 0.0}
    assert by_line(result, "ups_output_current_amperes") == {"1": 178.0, "2": 154.0,
                                                             "3": 163.0}


def test_sinetica_alarms_test_and_rating(recording_poller):
    result = recording_poller.poll("sinetica", "sinetica-ups")
    assert value(result, "ups_alarms") == 0
    reading = next(r for r in result.readings if r.metric == "ups_test_result")
    assert (reading.value, reading.text) == (6, "noTestsInitiated")
    assert value(result, "ups_rating_va") == 150000


def test_sinetica_identity(recording_poller):
    labels = info(recording_poller.poll("sinetica", "sinetica-ups"))
    assert labels["vendor"] == "Sinetica"          # from sysDescr: the ident strings are empty
    assert labels["agent_firmware"] == "6.04.03"   # upsIdentAgentSoftwareVersion
    assert labels["model"] == ""


# -- Huawei GSE200M card: UPS-MIB, recognised by sysDescr ------------------------------------------


def test_huawei_identity(recording_poller):
    result = recording_poller.poll("huaweiups", "huawei-ups")
    assert result.up and result.problems == []
    labels = info(result)
    assert labels["vendor"] == "HUAWEI"
    assert labels["sys_descr"] == "Linux GSE200M"
