"""rules/promql.py: Vigil rules as Prometheus alerting rules. Unit tests of the translation,
then the exported file checked by the real promtool, and promtool unit tests proving that
two translated rules fire when the Vigil rules would."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from agent import yamlfile
from agent.validation import validate
from rules.model import Group, Rule, RuleFile
from rules.promql import Untranslatable, export_prometheus_rules, rule_to_promql

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


def groups_of(text: str) -> list[Group]:
    """Rule groups from rule-file YAML, loaded the way `vigil check` loads them."""
    doc = yamlfile.load("rules.yaml", text=textwrap.dedent(text))
    return validate(RuleFile, doc).groups


def rule_of(body: str) -> Rule:
    """One rule from its YAML mapping (without name and level, unless given)."""
    text = "groups:\n- name: g\n  rules:\n  - " + textwrap.indent(
        textwrap.dedent(body).strip(), "    ").lstrip()
    return groups_of(text)[0].rules[0]


def promql(expr: str, select: str = "{}", group_vars: dict | None = None) -> str:
    rule = rule_of(f"name: R\nlevel: 2\nselect: {select}\nexpr: {expr!r}")
    return rule_to_promql(rule, group_vars or {})


# ---------------------------------------------------------------------------------------
# Expressions


def test_a_comparison_keeps_the_series_and_gets_the_selector():
    assert promql("ups_on_battery == 1", "{kinds: [ups], sites: [dh, b.c], devices: [ups-1]}") \
        == r'vigil_ups_on_battery{kind="ups",site=~"dh|b\\.c",device="ups-1"} == 1'
    assert promql("ups_battery_charge_ratio < 0.2", "{kinds: [ups, switch]}") \
        == 'vigil_ups_battery_charge_ratio{kind=~"ups|switch"} < 0.2'


@pytest.mark.parametrize(("expr", "expected"), [
    ("ups_on_battery == 1 && ups_battery_charge_ratio < 0.5",
     "vigil_ups_on_battery == 1 and on(device) vigil_ups_battery_charge_ratio < 0.5"),
    ("up == 0 || snmp_up == 0",
     'vigil_device_up == 0 or on(device) vigil_collector_up{collector="snmp"} == 0'),
    ("sensor_celsius > 35 && sensor_celsius < 80",
     "vigil_sensor_celsius > 35 and vigil_sensor_celsius < 80"),
    ("interface_admin_status == 1 && interface_oper_status == 2",
     "vigil_interface_admin_status == 1 and vigil_interface_oper_status == 2"),
    ("(up == 0 || reach_up == 0) && ups_on_battery == 1",
     '(vigil_device_up == 0 or on(device) vigil_collector_up{collector="reach"} == 0) '
     "and on(device) vigil_ups_on_battery == 1"),
    ("up == 0 || reach_up == 0 && ups_on_battery == 1",
     'vigil_device_up == 0 or on(device) vigil_collector_up{collector="reach"} == 0 '
     "and on(device) vigil_ups_on_battery == 1"),
])
def test_and_or_match_on_device_unless_both_read_the_same_rows(expr, expected):
    assert promql(expr) == expected


@pytest.mark.parametrize(("expr", "expected"), [
    ("ups_output_power_watts / ups_rating_va > 0.8",
     "vigil_ups_output_power_watts / on(device) group_left vigil_ups_rating_va > 0.8"),
    ("storage_used_bytes / storage_size_bytes * 100 >= 90",
     "vigil_storage_used_bytes / on(device) group_left vigil_storage_size_bytes * 100 >= 90"),
    ("(sensor_celsius - 32) * 5 / 9 > 40", "(vigil_sensor_celsius - 32) * 5 / 9 > 40"),
    ("sensor_celsius - (ups_battery_temperature_celsius - 2) > 10",
     "vigil_sensor_celsius - on(device) group_left (vigil_ups_battery_temperature_celsius - 2)"
     " > 10"),
    ("0.5 < cpu_usage_ratio", "0.5 < vigil_cpu_usage_ratio"),
    ("-onvif_clock_offset_seconds > 5", "-vigil_onvif_clock_offset_seconds > 5"),
    ("onvif_clock_offset_seconds < -5.5", "vigil_onvif_clock_offset_seconds < -5.5"),
    ("cpu_usage_ratio > 1e-3", "vigil_cpu_usage_ratio > 0.001"),
])
def test_arithmetic_between_series_and_scalars(expr, expected):
    assert promql(expr) == expected


@pytest.mark.parametrize(("expr", "expected"), [
    ("!(cpu_usage_ratio > 0.5)", "vigil_cpu_usage_ratio <= 0.5"),
    ("!(up == 1)", "vigil_device_up != 1"),
    ("!!(up < 1)", "vigil_device_up < 1"),
    ("!(ups_seconds_on_battery >= 60) && ups_on_battery == 1",
     "vigil_ups_seconds_on_battery < 60 and on(device) vigil_ups_on_battery == 1"),
])
def test_not_over_a_comparison_inverts_the_operator(expr, expected):
    assert promql(expr) == expected


@pytest.mark.parametrize(("expr", "expected"), [
    ("rate(interface_received_errors_total) > 0.1",
     'rate(vigil_interface_received_errors_total{kind="switch"}[5m]) > 0.1'),
    ("increase(spd_strikes_total) > 0",
     'increase(vigil_spd_strikes_total{kind="switch"}[5m]) > 0'),
    ('event("ups.on-battery") == 1',
     'vigil_event{event="ups.on-battery",kind="switch"} == 1'),
    ("onvif_up == 0", 'vigil_collector_up{collector="onvif",kind="switch"} == 0'),
    ("absent(cpu_usage_ratio) && up == 1",
     '(vigil_device_up{kind="switch"} unless on(device) vigil_cpu_usage_ratio{kind="switch"})'
     ' and vigil_device_up{kind="switch"} == 1'),
])
def test_builtins_and_macros(expr, expected):
    assert promql(expr, "{kinds: [switch]}") == expected


def test_numeric_group_vars_are_inlined():
    assert promql("sensor_celsius > hot", group_vars={"hot": 35}) == "vigil_sensor_celsius > 35"
    assert promql("sensor_celsius > hot * 1.5", group_vars={"hot": 20.0}) \
        == "vigil_sensor_celsius > 20 * 1.5"


@pytest.mark.parametrize(("expr", "reason"), [
    ("up == 0 ? true : false", "ternary"),
    ("snmp_reason == 'timeout'", "string"),
    ('device_info.firmware == "V5"', "member access"),
    ("series.interface == 'Gi0/1' && up == 0", "member access"),
    ("age(cpu_usage_ratio) > 300", r"`age\(cpu_usage_ratio\)`"),
    ("size(approved) > 0", "function call"),
    ("snmp_failures > 3", "snmp_failures"),
    ("port_devices > 0 && up == 0", "port_devices"),
    ("up in [0.0]", "`in`"),
    ("ups_alarms % 2 == 1", "`%`"),
    ("1 > 0", "two numbers"),
    ("approved == 1", "not a number"),
    ("!(up == 0 && snmp_up == 0)", "only over a comparison"),
    ("up", "not a condition"),
    ("(up == 0) + 1 > 0", "condition used as a number"),
    ("(up == 0", "unexpected"),
])
def test_untranslatable_expressions_say_why(expr, reason):
    with pytest.raises(Untranslatable, match=reason):
        promql(expr, group_vars={"approved": ["V5"]})


def test_inventory_labels_filter_through_the_inventory_series():
    assert promql("up == 0", "{kinds: [switch], labels: {role: core, floor: '3'}}") \
        == 'vigil_device_up{kind="switch"} == 0 and on(device) ' \
           'vigil_device_inventory_info{role="core",floor="3"}'


def test_promql_given_is_used_as_is():
    rule = rule_of("""
        name: R
        level: 2
        expr: series.interface == 'x'
        promql: 'vigil_x{interface="x"} > 0'
    """)
    assert rule_to_promql(rule, {}) == 'vigil_x{interface="x"} > 0'


# ---------------------------------------------------------------------------------------
# Aggregates and levels


CAMERAS = 'kind=~"fixed_camera|ptz_camera"'


def test_aggregate_by_site_counts_devices_of_the_inventory():
    rule = rule_of("""
        name: SiteCamerasDown
        level: 1
        select: {kinds: [fixed_camera, ptz_camera]}
        aggregate: {member: up == 0}
        expr: ratio > 0.5
    """)
    inventory = f"vigil_device_inventory_info{{{CAMERAS}}}"
    total = f"count by (site) ({inventory})"
    matched = (f"(count by (site) ({inventory} and on(device) vigil_device_up{{{CAMERAS}}} == 0)"
               f" or {total} * 0)")
    assert rule_to_promql(rule, {}) == f"{matched} / {total} > 0.5"


def test_aggregate_by_label_with_min_members_and_inventory_labels():
    rule = rule_of("""
        name: ZoneDark
        level: 2
        select: {kinds: [fixed_camera], labels: {owner: city}}
        aggregate: {by: zone, member: reach_up == 0 || rtsp_up == 0, min_members: 4}
        expr: matched >= 3
    """)
    inventory = 'vigil_device_inventory_info{kind="fixed_camera",owner="city",zone!=""}'
    member = ('(vigil_collector_up{collector="reach",kind="fixed_camera"} == 0 or on(device) '
              'vigil_collector_up{collector="rtsp",kind="fixed_camera"} == 0)')
    total = f"count by (zone) ({inventory})"
    assert rule_to_promql(rule, {}) == (
        f"(count by (zone) ({inventory} and on(device) {member}) or {total} * 0) >= 3 "
        f"and {total} >= 4")


@pytest.mark.parametrize(("aggregate", "expr", "reason"), [
    ("{member: up == 0}", "no_data > 0", "no_data"),
    ("{member: up == 0}", "ratio > 0.5 && cpu_usage_ratio > 0.9", "only total, matched"),
    ("{member: 'series.x == 1'}", "matched > 0", "member access"),
    ("{by: 'my-zone', member: up == 0}", "matched > 0", "not a Prometheus label name"),
])
def test_untranslatable_aggregates(aggregate, expr, reason):
    rule = rule_of(f"name: R\nlevel: 2\naggregate: {aggregate}\nexpr: {expr!r}")
    with pytest.raises(Untranslatable, match=reason):
        rule_to_promql(rule, {})


def test_levels_split_into_one_rule_per_level():
    groups = groups_of("""
        groups:
        - name: power
          rules:
          - name: UpsOnBattery
            select: {kinds: [ups]}
            expr: ups_on_battery == 1
            level: 3
            levels:
            - {when: ups_battery_charge_ratio < 0.2, level: 1}
            - {when: ups_battery_runtime_seconds < 600, level: 2}
    """)
    data, warnings = export_prometheus_rules(groups)
    assert warnings == []
    on = 'vigil_ups_on_battery{kind="ups"} == 1'
    low = 'vigil_ups_battery_charge_ratio{kind="ups"} < 0.2'
    short = 'vigil_ups_battery_runtime_seconds{kind="ups"} < 600'
    assert [(r["labels"]["level"], r["expr"]) for r in data["groups"][0]["rules"]] == [
        ("1", f"{on} and on(device) {low}"),
        ("2", f"{on} and on(device) {short} unless on(device) {low}"),
        ("3", f"{on} unless on(device) ({low} or on(device) {short})"),
    ]


def test_aggregate_levels_match_on_the_group():
    rule_file = """
        groups:
        - name: video
          rules:
          - name: CamerasDown
            select: {kinds: [fixed_camera]}
            aggregate: {member: up == 0}
            expr: matched > 0
            level: 3
            levels: [{when: ratio > 0.5, level: 1}]
    """
    data, _ = export_prometheus_rules(groups_of(rule_file))
    inventory = 'vigil_device_inventory_info{kind="fixed_camera"}'
    total = f"count by (site) ({inventory})"
    matched = (f'(count by (site) ({inventory} and on(device) '
               f'vigil_device_up{{kind="fixed_camera"}} == 0) or {total} * 0)')
    assert [r["expr"] for r in data["groups"][0]["rules"]] == [
        f"{matched} > 0 and {matched} / {total} > 0.5",
        f"{matched} > 0 unless {matched} / {total} > 0.5"]


# ---------------------------------------------------------------------------------------
# The exported file


RULE_FILE = """
groups:
- name: power
  vars: {low_charge: 0.2, models: [a, b]}
  rules:
  - name: UpsOnBattery
    select: {kinds: [ups]}
    expr: ups_on_battery == 1
    level: 2
    levels: [{when: ups_battery_charge_ratio < low_charge, level: 1}]
    for: 1m
    keep_firing_for: 1m
    labels: {cause: power}
    summary:
      zh: "UPS {{ device.id }} 电池供电"
      en: "UPS {{ device.id }} on battery"
    description:
      zh: "{% if value > 1 %}多台{% endif %}电量 {{ value | round(2) }} 请检查市电"
  - name: UpsModel
    expr: device_info.model in models
    level: 4
  - name: UpsTooHot
    select: {kinds: [ups]}
    expr: ups_battery_temperature_celsius > 40
    clear: ups_battery_temperature_celsius < 35
    level: 3
  - name: UpsOverload
    select: {kinds: [ups], devices: [ups-1, ups-2]}
    expr: -(ups_output_power_watts / ups_rating_va) < -0.8 || increase(ups_alarms) > 0
    level: 2
  - name: UpsSilent
    expr: >-
      absent(ups_battery_charge_ratio) && up == 1
      || event("ups.on-battery") == 1 && !(ups_seconds_on_battery < 60)
    level: 2
- name: video
  rules:
  - name: SiteCamerasDown
    select: {kinds: [fixed_camera, ptz_camera]}
    aggregate: {member: up == 0, min_members: 2}
    expr: ratio > 0.5
    level: 1
    summary:
      zh: "{{ group }} 过半摄像机离线 ({{ value }})"
      en: "{{ labels.site }}: over half the cameras are down ({{ value }})"
  - name: StreamDown
    select: {kinds: [fixed_camera], sites: [dh, b.c]}
    expr: rtsp_up == 0 && reach_up == 1
    for: 2h30m
    level: 2
  - name: PortErrors
    select: {kinds: [switch], labels: {role: core}}
    expr: rate(interface_received_errors_total) / rate(interface_received_bytes_total) > 0.01
    level: 3
  - name: Handwritten
    expr: series.interface == "x"
    promql: 'vigil_interface_oper_status{interface="x"} == 2'
    level: 3
    levels: [{when: up == 0, level: 2}]
- name: skipped
  rules:
  - name: Ternary
    expr: "up == 0 ? true : false"
    level: 2
"""


def test_export_builds_the_rule_file_and_warns_instead_of_failing():
    data, warnings = export_prometheus_rules(groups_of(RULE_FILE))
    assert [g["name"] for g in data["groups"]] == ["power", "video"]
    power = data["groups"][0]["rules"]
    assert [r["alert"] for r in power] == ["UpsOnBattery", "UpsOnBattery", "UpsTooHot",
                                      "UpsOverload", "UpsSilent"]
    assert power[0] == {
        "alert": "UpsOnBattery",
        "expr": 'vigil_ups_on_battery{kind="ups"} == 1 and on(device) '
                'vigil_ups_battery_charge_ratio{kind="ups"} < 0.2',
        "for": "1m", "keep_firing_for": "1m",
        "labels": {"level": "1", "cause": "power"},
        "annotations": {"summary": "UPS {{ $labels.device }} 电池供电",
                        "summary_en": "UPS {{ $labels.device }} on battery",
                        "description": "多台电量 请检查市电"}}
    video = data["groups"][1]["rules"]
    assert video[0]["annotations"] == {
        "summary": "{{ $labels.site }} 过半摄像机离线 ({{ $value }})",
        "summary_en": "{{ $labels.site }}: over half the cameras are down ({{ $value }})"}
    assert video[1]["for"] == "2h30m"
    assert video[3] == {"alert": "Handwritten",
                        "expr": 'vigil_interface_oper_status{interface="x"} == 2',
                        "labels": {"level": "3"}}
    assert warnings == [
        "power/UpsModel: not translatable: member access `.` is not supported; "
        "add `promql:` to the rule",
        "power/UpsTooHot: `clear` is not exported: the alert resolves as soon as `expr` stops "
        "holding",
        "video/Handwritten: `levels` do not apply to `promql:`; exported at level 3",
        "skipped/Ternary: not translatable: a ternary `?:` is not supported; "
        "add `promql:` to the rule",
    ]


@pytest.mark.parametrize(("duration", "expected"), [
    ("30s", "30s"), ("5m", "5m"), ("90s", "1m30s"), ("1h", "1h"), ("1.5s", "1s500ms"),
    ("36h", "1d12h"),
])
def test_durations_are_rendered_the_prometheus_way(duration, expected):
    rule = rule_of(f"name: R\nlevel: 2\nexpr: up == 0\nfor: {duration}")
    data, _ = export_prometheus_rules([Group(name="g", rules=[rule])])
    assert data["groups"][0]["rules"][0]["for"] == expected


def write_rules(directory: Path, text: str) -> Path:
    data, _ = export_prometheus_rules(groups_of(text))
    path = directory / "vigil.rules.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


@needs_promtool
def test_promtool_accepts_the_exported_file(tmp_path):
    path = write_rules(tmp_path, RULE_FILE)
    result = run_promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


PROMTOOL_TESTS = """
rule_files: [vigil.rules.yml]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  # ups-1 goes on battery at 2m, its charge falls below 0.2 at 5m, mains are back at 7m
  - series: 'vigil_ups_on_battery{device="ups-1",site="dh",kind="ups"}'
    values: '0 0 1 1 1 1 1 0 0 0'
  - series: 'vigil_ups_battery_charge_ratio{device="ups-1",site="dh",kind="ups"}'
    values: '1 1 0.9 0.5 0.3 0.15 0.1 0.1 0.1 0.1'
  - series: 'vigil_ups_on_battery{device="ups-2",site="dh",kind="ups"}'
    values: '0x9'
  - series: 'vigil_ups_battery_charge_ratio{device="ups-2",site="dh",kind="ups"}'
    values: '0.1x9'
  alert_rule_test:
  - {eval_time: 2m, alertname: UpsOnBattery, exp_alerts: []}  # pending: for 1m
  - eval_time: 4m
    alertname: UpsOnBattery
    exp_alerts:
    - exp_labels: {level: "2", cause: power, device: ups-1, site: dh, kind: ups}
      exp_annotations: {summary: "UPS ups-1 电池供电", summary_en: "UPS ups-1 on battery",
                        description: "多台电量 请检查市电"}
  - eval_time: 6m
    alertname: UpsOnBattery
    exp_alerts:
    - exp_labels: {level: "1", cause: power, device: ups-1, site: dh, kind: ups}
      exp_annotations: {summary: "UPS ups-1 电池供电", summary_en: "UPS ups-1 on battery",
                        description: "多台电量 请检查市电"}
  - eval_time: 7m  # on mains again: kept firing for 1m
    alertname: UpsOnBattery
    exp_alerts:
    - exp_labels: {level: "1", cause: power, device: ups-1, site: dh, kind: ups}
      exp_annotations: {summary: "UPS ups-1 电池供电", summary_en: "UPS ups-1 on battery",
                        description: "多台电量 请检查市电"}
  - {eval_time: 8m, alertname: UpsOnBattery, exp_alerts: []}

- interval: 1m
  input_series:
  # site dh: four cameras, three down from 2m (one at 1m); an NVR down is not a camera.
  # site wh: two cameras, one down (ratio 0.5, not above). site xx: one camera, down, but
  # fewer than min_members.
  - {series: 'vigil_device_inventory_info{device="c1",site="dh",kind="fixed_camera",name="a"}',
     values: '1x4'}
  - {series: 'vigil_device_inventory_info{device="c2",site="dh",kind="fixed_camera",name="b"}',
     values: '1x4'}
  - {series: 'vigil_device_inventory_info{device="c3",site="dh",kind="ptz_camera",name="c"}',
     values: '1x4'}
  - {series: 'vigil_device_inventory_info{device="c4",site="dh",kind="ptz_camera",name="d"}',
     values: '1x4'}
  - {series: 'vigil_device_inventory_info{device="n1",site="dh",kind="nvr",name="e"}',
     values: '1x4'}
  - {series: 'vigil_device_inventory_info{device="w1",site="wh",kind="fixed_camera",name="f"}',
     values: '1x4'}
  - {series: 'vigil_device_inventory_info{device="w2",site="wh",kind="fixed_camera",name="g"}',
     values: '1x4'}
  - {series: 'vigil_device_inventory_info{device="x1",site="xx",kind="fixed_camera",name="h"}',
     values: '1x4'}
  - {series: 'vigil_device_up{device="c1",site="dh",kind="fixed_camera"}', values: '1 0 0 0 0'}
  - {series: 'vigil_device_up{device="c2",site="dh",kind="fixed_camera"}', values: '1 1 0 0 0'}
  - {series: 'vigil_device_up{device="c3",site="dh",kind="ptz_camera"}', values: '1 1 0 0 0'}
  - {series: 'vigil_device_up{device="c4",site="dh",kind="ptz_camera"}', values: '1x4'}
  - {series: 'vigil_device_up{device="n1",site="dh",kind="nvr"}', values: '0x4'}
  - {series: 'vigil_device_up{device="w1",site="wh",kind="fixed_camera"}', values: '0x4'}
  - {series: 'vigil_device_up{device="w2",site="wh",kind="fixed_camera"}', values: '1x4'}
  - {series: 'vigil_device_up{device="x1",site="xx",kind="fixed_camera"}', values: '0x4'}
  alert_rule_test:
  - {eval_time: 1m, alertname: SiteCamerasDown, exp_alerts: []}
  - eval_time: 3m
    alertname: SiteCamerasDown
    exp_alerts:
    - exp_labels: {level: "1", site: dh}
      exp_annotations: {summary: "dh 过半摄像机离线 (0.75)",
                        summary_en: "dh: over half the cameras are down (0.75)"}
"""


@needs_promtool
def test_promtool_unit_tests_fire_as_the_vigil_rules_would(tmp_path):
    write_rules(tmp_path, RULE_FILE)
    (tmp_path / "tests.yml").write_text(PROMTOOL_TESTS, encoding="utf-8")
    result = run_promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
