"""Standard-MIB profiles against real device walks (served by snmpsim on loopback)."""

from __future__ import annotations

import pytest

from tests.conftest import info, value, values


def test_deltaups_battery_through_ups_mib(recording_poller):
    result = recording_poller.poll("deltaups")
    assert result.up, result.detail
    assert value(result, "ups_battery_status") == 2  # normal
    assert value(result, "ups_battery_charge_ratio") == 1.0
    assert value(result, "ups_battery_runtime_seconds") == 1320  # 22 minutes
    assert value(result, "ups_battery_volts") == 41.2
    assert value(result, "ups_battery_temperature_celsius") == 23
    assert value(result, "ups_on_battery") == 0
    assert value(result, "ups_output_load_ratio", line="1") == 0.79
    assert value(result, "ups_input_frequency_hertz", line="1") == 59.9


def test_deltaups_manufacturer_without_instance_suffix(recording_poller):
    # upsIdentManufacturer is recorded at ...33.1.1.1 with no .0: read with the bare-OID fallback
    assert info(recording_poller.poll("deltaups"))["vendor"] == "Minuteman"


def test_deltaups_nul_padded_interface_names(recording_poller):
    result = recording_poller.poll("deltaups")
    names = {labels[1][1] for labels in values(result, "interface_oper_status")}
    assert "eth0" in names and all("\x00" not in n for n in names)


@pytest.mark.parametrize("engine", ["builtin", "ezsnmp"])
def test_every_engine_reads_the_same(recording_poller, engine):
    a = recording_poller.poll("deltaups", engine="pysnmp")
    b = recording_poller.poll("deltaups", engine=engine)
    strip = lambda r: sorted((x.metric, tuple(sorted(x.labels.items())), x.value)  # noqa: E731
                             for x in r.readings)
    assert strip(a) == strip(b)


def test_snmp_v1_walks_with_getnext(recording_poller):
    result = recording_poller.poll("deltaups", version="1")
    assert result.up, result.detail
    assert value(result, "ups_battery_runtime_seconds") == 1320
    assert len(values(result, "interface_oper_status")) == 5


def test_eaton_table_rows_with_an_extra_trailing_zero(recording_poller):
    # MGE/Eaton writes UPS-MIB rows as ...33.1.4.4.1.5.1.0 (index '1.0'): read as line 1,
    # the Gauge32 type (the MIB says INTEGER) read as a number, nothing reported as a problem
    result = recording_poller.poll("eaton-mgeups", profile="ups-mib")
    assert result.up, result.detail
    assert value(result, "ups_output_load_ratio", line="1") == 0.08
    assert value(result, "ups_input_volts", line="1") == 2353
    assert result.problems == []
