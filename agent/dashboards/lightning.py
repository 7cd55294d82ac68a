"""Lightning protection and grounding: SPD state, strikes, leakage, and the earthing points'
measured resistance against their limits (docs/grounding.md)."""

from __future__ import annotations

from agent.dashboards.panels import (
    OK_WHEN_ZERO,
    Board,
    Column,
    Text,
    query,
    series_panel,
    site_variable,
    stat_panel,
    steps,
    table_panel,
    value_map,
)
from agent.dashboards.site import spd_leakage, spd_state, spd_strikes

UID = "vigil-lightning"
S = 'site=~"$site"'
DAY = 86400


def build(tr: Text) -> Board:
    b = Board(UID, tr("Vigil 防雷与接地", "Vigil lightning protection and grounding"),
              tr("防雷器（SPD）状态、雷击计数、泄漏电流；接地电阻的测量值、限值和复测期限。",
                 "Surge protectors' state, strike counts and leakage; the earthing points' "
                 "measured resistance, limits and due dates."), tr,
              variables=[site_variable(tr, multi=True)])
    b.row(tr("防雷器（SPD）", "Surge protectors (SPD)"))
    b.add(stat_panel(tr("脱扣的 SPD", "SPDs tripped"),
                     tr("已脱扣（或劣化）、不再起保护作用的防雷模块数：需尽快更换。",
                        "Surge protector modules tripped or degraded: no protection left "
                        "until replaced."),
                     [query(f"count(({spd_state(S, 'site, device')}) == 0) or vector(0)",
                            instant=True)], thresholds=OK_WHEN_ZERO), 6, 4)
    b.add(stat_panel(tr("雷击（所选时段）", "Strikes (time range)"),
                     tr("所选时段内 SPD 计数器记录的浪涌（雷击）次数。",
                        "Surges (lightning strikes) counted in the time range."),
                     [query(f"sum({spd_strikes(S, 'site', '$__range')})", instant=True)],
                     decimals=0), 6, 4)
    b.add(stat_panel(tr("最大泄漏电流", "Highest leakage"),
                     tr("SPD 对地泄漏电流的最大值：持续升高说明压敏元件老化。",
                        "Highest leakage current to earth: a steady rise means ageing "
                        "varistors."),
                     [query(f"max({spd_leakage(S, 'site, device')})", instant=True)],
                     unit="amp"), 6, 4)
    b.add(stat_panel(tr("接地电阻超限/逾期", "Earthing over limit / overdue"),
                     tr("接地电阻超过限值的接地点数，和超过复测周期未测的接地点数。",
                        "Earthing points above their limit, and points whose measurement is "
                        "overdue."),
                     [query(f"count(vigil_grounding_resistance_ohms{{{S}}} > "
                            f"vigil_grounding_limit_ohms{{{S}}}) or vector(0)",
                            tr("超限", "over limit"), instant=True),
                      query(f"count(time() - vigil_grounding_last_measured_timestamp_seconds"
                            f"{{{S}}} > vigil_grounding_measure_every_seconds{{{S}}}) "
                            f"or vector(0)", tr("逾期", "overdue"), instant=True)],
                     thresholds=OK_WHEN_ZERO), 6, 4)
    by = "site, device"
    b.add(table_panel(tr, tr("SPD 一览", "Every SPD monitor"),
                      tr("每台防雷监测设备：状态、24 小时和 30 天雷击次数、泄漏电流。",
                         "Each SPD monitor: state, strikes in 24 h and 30 days, leakage."),
                      [Column(tr("状态", "State"), spd_state(S, by),
                              mappings=value_map({1: (tr("正常", "healthy"), "green"),
                                                  0: (tr("脱扣", "tripped"), "red")}),
                              colour=True),
                       Column(tr("24h 雷击", "Strikes 24 h"), spd_strikes(S, by, "24h"),
                              thresholds=OK_WHEN_ZERO, colour=True),
                       Column(tr("30 天雷击", "Strikes 30 d"), spd_strikes(S, by, "30d")),
                       Column(tr("泄漏电流", "Leakage"), spd_leakage(S, by), unit="amp")],
                      name_by="device"), 24, 8)
    b.add(series_panel(tr("雷击次数（按站点）", "Strikes by site"), "",
                       [query(spd_strikes(S, "site", "$__rate_interval"), "{{site}}")],
                       bars=True), 12, 8)
    b.add(series_panel(tr("泄漏电流", "Leakage current"), "",
                       [query(spd_leakage(S, "site, device"), "{{device}}")], unit="amp"),
          12, 8)

    b.row(tr("接地", "Earthing"))
    pt = "site, point"
    b.add(table_panel(tr, tr("接地点", "Earthing points"),
                      tr("每个接地点最近一次测得的接地电阻、限值（机房 4 Ω，其他 10 Ω，或清单中"
                         "的 limit_ohm）、测量时间和距下次复测的天数（负数即逾期）。",
                         "Each earthing point's latest measured resistance, its limit (4 Ω "
                         "machine room, 10 Ω otherwise, or the inventory's limit_ohm), when it "
                         "was measured and the days until the next measurement (negative: "
                         "overdue)."),
                      [Column(tr("接地电阻", "Resistance"),
                              f"max by ({pt}) (vigil_grounding_resistance_ohms{{{S}}})",
                              unit="ohm"),
                       Column(tr("限值", "Limit"),
                              f"max by ({pt}) (vigil_grounding_limit_ohms{{{S}}})", unit="ohm"),
                       Column(tr("超限", "Over limit"),
                              f"max by ({pt}) (vigil_grounding_resistance_ohms{{{S}}}) > bool "
                              f"max by ({pt}) (vigil_grounding_limit_ohms{{{S}}})",
                              thresholds=OK_WHEN_ZERO, colour=True),
                       Column(tr("测量时间", "Measured"),
                              f"max by ({pt}) (vigil_grounding_last_measured_timestamp_seconds"
                              f"{{{S}}}) * 1000", unit="dateTimeAsLocalNoDateIfToday"),
                       Column(tr("距复测（天）", "Days to next"),
                              f"(max by ({pt}) (vigil_grounding_last_measured_timestamp_seconds"
                              f"{{{S}}} + vigil_grounding_measure_every_seconds{{{S}}}) "
                              f"- time()) / {DAY}",
                              thresholds=steps((None, "red"), (0, "orange"), (30, "green")),
                              colour=True)]), 24, 8)
    b.add(series_panel(tr("接地电阻", "Grounding resistance"),
                       tr("每次记录的测量值（阶梯线）与限值。",
                          "The recorded measurements (steps) and the limits."),
                       [query(f"vigil_grounding_resistance_ohms{{{S}}}", "{{point}}"),
                        query(f"vigil_grounding_limit_ohms{{{S}}}",
                              tr("{{point}} 限值", "{{point}} limit"))], unit="ohm"), 24, 8)
    return b
