"""UPS and power: every UPS of the chosen sites, its source, battery, load and mains."""

from __future__ import annotations

from agent.dashboards.panels import (
    OK_WHEN_ZERO,
    Board,
    Column,
    Text,
    model,
    query,
    series_panel,
    site_variable,
    stat_panel,
    steps,
    table_panel,
    up_down,
    value_map,
)

UID = "vigil-power"
S = 'site=~"$site"'
CHARGE = steps((None, "red"), (0.2, "orange"), (0.5, "green"))


def output_source(tr: Text) -> list[model.ValueMapping]:
    """UPS-MIB upsOutputSource codes."""
    return value_map({1: (tr("其他", "other"), "orange"), 2: (tr("无输出", "none"), "red"),
                      3: (tr("市电", "mains"), "green"), 4: (tr("旁路", "bypass"), "orange"),
                      5: (tr("电池", "battery"), "red"), 6: (tr("升压", "booster"), "orange"),
                      7: (tr("降压", "reducer"), "orange")})


def battery_status(tr: Text) -> list[model.ValueMapping]:
    """UPS-MIB upsBatteryStatus codes."""
    return value_map({1: (tr("未知", "unknown"), "orange"), 2: (tr("正常", "normal"), "green"),
                      3: (tr("电量低", "low"), "orange"), 4: (tr("耗尽", "depleted"), "red")})


def test_result(tr: Text) -> list[model.ValueMapping]:
    """UPS-MIB upsTestResultsSummary codes."""
    return value_map({1: (tr("通过", "passed"), "green"), 2: (tr("警告", "warning"), "orange"),
                      3: (tr("失败", "error"), "red"), 4: (tr("中止", "aborted"), "orange"),
                      5: (tr("进行中", "in progress"), "blue"),
                      6: (tr("未做", "none"), "text")})


def build(tr: Text) -> Board:
    b = Board(UID, tr("Vigil UPS 与供电", "Vigil UPS and power"),
              tr("所选站点的 UPS：市电、电池、负载、自检。",
                 "The UPS units of the chosen sites: mains, battery, load, self-test."), tr,
              variables=[site_variable(tr, multi=True)])
    b.row(tr("概况", "Summary"))
    b.add(stat_panel(tr("UPS 台数", "UPS units"), "",
                     [query(f"count(vigil_ups_on_battery{{{S}}})", instant=True)]), 4, 4)
    b.add(stat_panel(tr("电池供电", "On battery"), tr("市电中断、由电池供电的 UPS。",
                                                   "UPS units on battery (mains lost)."),
                     [query(f"sum(vigil_ups_on_battery{{{S}}})", instant=True)],
                     thresholds=OK_WHEN_ZERO), 4, 4)
    b.add(stat_panel(tr("旁路供电", "On bypass"), tr("负载经旁路供电、不受逆变器保护的 UPS。",
                                                  "UPS units feeding the load through the "
                                                  "bypass, unprotected."),
                     [query(f"sum(vigil_ups_on_bypass{{{S}}}) or vector(0)", instant=True)],
                     thresholds=OK_WHEN_ZERO), 4, 4)
    b.add(stat_panel(tr("需更换电池", "Battery to replace"), "",
                     [query(f"sum(vigil_ups_battery_replace_needed{{{S}}}) or vector(0)",
                            instant=True)], thresholds=OK_WHEN_ZERO), 4, 4)
    b.add(stat_panel(tr("最低电量", "Lowest charge"), "",
                     [query(f"min(vigil_ups_battery_charge_ratio{{{S}}})", instant=True)],
                     unit="percentunit", thresholds=CHARGE), 4, 4)
    b.add(stat_panel(tr("最短后备时间", "Shortest runtime"),
                     tr("按当前负载估算电池还能供电的最短时间。",
                        "Shortest time a battery can still carry its present load."),
                     [query(f"min(vigil_ups_battery_runtime_seconds{{{S}}})", instant=True)],
                     unit="s", thresholds=steps((None, "red"), (600, "orange"),
                                                (1800, "green"))), 4, 4)

    b.row(tr("每台 UPS", "Every UPS"))
    by = "site, device"
    b.add(table_panel(tr, "UPS",
                      tr("每台 UPS 一行：输出来源（市电/电池/旁路）、电池状态、电量、后备时间、"
                         "负载、输入电压、电池温度、告警数和最近一次自检结果。",
                         "One line per UPS: output source, battery status, charge, runtime, "
                         "load, input voltage, battery temperature, alarms, last self-test."),
                      [Column(tr("在线", "Up"),
                              f'max by ({by}) (vigil_device_up{{{S}, kind="ups"}})',
                              mappings=up_down(tr), colour=True),
                       Column(tr("输出", "Output"),
                              f"max by ({by}) (vigil_ups_output_source{{{S}}})",
                              mappings=output_source(tr), colour=True),
                       Column(tr("电池", "Battery"),
                              f"max by ({by}) (vigil_ups_battery_status{{{S}}})",
                              mappings=battery_status(tr), colour=True),
                       Column(tr("电量", "Charge"),
                              f"min by ({by}) (vigil_ups_battery_charge_ratio{{{S}}})",
                              unit="percentunit", thresholds=CHARGE, colour=True),
                       Column(tr("后备时间", "Runtime"),
                              f"min by ({by}) (vigil_ups_battery_runtime_seconds{{{S}}})",
                              unit="s"),
                       Column(tr("负载", "Load"),
                              f"max by ({by}) (vigil_ups_output_load_ratio{{{S}}})",
                              unit="percentunit"),
                       Column(tr("输入电压", "Input"),
                              f"min by ({by}) (vigil_ups_input_volts{{{S}}})", unit="volt"),
                       Column(tr("电池温度", "Battery temp."),
                              f"max by ({by}) (vigil_ups_battery_temperature_celsius{{{S}}})",
                              unit="celsius"),
                       Column(tr("告警", "Alarms"), f"max by ({by}) (vigil_ups_alarms{{{S}}})",
                              thresholds=OK_WHEN_ZERO, colour=True),
                       Column(tr("自检", "Self-test"),
                              f"max by ({by}) (vigil_ups_test_result{{{S}}})",
                              mappings=test_result(tr))],
                      name_by="device"), 24, 9)

    b.row(tr("趋势", "Trends"))
    b.add(series_panel(tr("电池电量", "Battery charge"), "",
                       [query(f"vigil_ups_battery_charge_ratio{{{S}}}", "{{device}}")],
                       unit="percentunit"), 12, 8)
    b.add(series_panel(tr("后备时间", "Battery runtime"), "",
                       [query(f"vigil_ups_battery_runtime_seconds{{{S}}}", "{{device}}")],
                       unit="s"), 12, 8)
    b.add(series_panel(tr("输入电压", "Input voltage"),
                       tr("市电输入电压（每相）：跌到 0 即停电。",
                          "Mains input voltage per phase: 0 is a power cut."),
                       [query(f"vigil_ups_input_volts{{{S}}}", "{{device}} L{{line}}")],
                       unit="volt"), 12, 8)
    b.add(series_panel(tr("负载率", "Output load"), "",
                       [query(f"max by (device) (vigil_ups_output_load_ratio{{{S}}})",
                              "{{device}}")], unit="percentunit",
                       thresholds=steps((None, "green"), (0.8, "red"))), 12, 8)
    return b
