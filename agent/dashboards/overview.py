"""District overview: every site's state at a glance, for the monitoring centre's wall."""

from __future__ import annotations

from agent.dashboards.panels import (
    CAMERA,
    OK_WHEN_ONE,
    OK_WHEN_ZERO,
    Board,
    Column,
    Text,
    gauge_bars,
    query,
    series_panel,
    stat_panel,
    steps,
    table_panel,
    up_down,
    value_map,
)

UID = "vigil-overview"
ONLINE_RATE = steps((None, "red"), (0.9, "orange"), (0.98, "green"))


def build(tr: Text) -> Board:
    b = Board(UID, tr("Vigil 全区总览", "Vigil district overview"),
              tr("每个站点的摄像机在线、故障、UPS、上联和工单，一屏看全。",
                 "Every site's cameras, faults, UPS, uplink and tickets on one screen."), tr)
    cams = f"vigil_device_up{{{CAMERA}}}"
    b.row(tr("全区", "District"))
    b.add(stat_panel(tr("摄像机 在线/总数", "Cameras up / total"),
                     tr("在线（最近一次轮询有应答）的摄像机数和清单中的摄像机总数。",
                        "Cameras that answered their last poll, and all cameras listed."),
                     [query(f"sum({cams})", tr("在线", "up"), instant=True),
                      query(f"count({cams})", tr("总数", "total"), instant=True)]), 4, 4)
    b.add(stat_panel(tr("摄像机在线率", "Camera online rate"),
                     tr("在线摄像机占总数的比例；低于 98% 黄色，低于 90% 红色。",
                        "Share of cameras up; amber below 98 %, red below 90 %."),
                     [query(f"sum({cams}) / count({cams})", instant=True)],
                     unit="percentunit", thresholds=ONLINE_RATE, decimals=1), 4, 4)
    b.add(stat_panel(tr("离线设备", "Devices down"),
                     tr("最近一次轮询无应答的设备（所有类型）。", "Devices of every kind that did "
                        "not answer their last poll."),
                     [query("count(vigil_device_up == 0) or vector(0)", instant=True)],
                     thresholds=OK_WHEN_ZERO), 4, 4)
    b.add(stat_panel(tr("故障（按等级）", "Faults by level"),
                     tr("正在告警的故障数，1 级最严重（整个系统瘫痪）到 4 级（信息）。",
                        "Firing faults by level: 1 is the worst (system down), 4 information."),
                     [query('sum by (level) (vigil_faults{state="firing"})',
                            tr("{{level}} 级", "level {{level}}"), instant=True)],
                     thresholds=OK_WHEN_ZERO), 6, 4)
    b.add(stat_panel(tr("UPS 电池供电", "UPS on battery"),
                     tr("市电中断、由电池供电的 UPS 台数。", "UPS units feeding the load from the "
                        "battery (mains lost)."),
                     [query("sum(vigil_ups_on_battery)", instant=True)],
                     thresholds=OK_WHEN_ZERO), 3, 4)
    b.add(stat_panel(tr("未关闭工单", "Open tickets"),
                     tr("各分局 Agent 上报的未关闭工单之和。", "Tickets not closed, summed over "
                        "the branch agents."),
                     [query("sum(vigil_tickets) or vector(0)", instant=True)]), 3, 4)
    b.add(stat_panel(tr("超时升级（所选时段）", "Escalations (time range)"),
                     tr("所选时段内因响应或修复超时而升级的工单次数。", "Tickets escalated in the "
                        "time range because a response or repair limit was missed."),
                     [query("sum by (breach) (increase(vigil_ticket_escalations_total"
                            "[$__range]))", tr("{{breach}}", "{{breach}}"), instant=True)],
                     thresholds=OK_WHEN_ZERO, decimals=0), 6, 4)
    b.add(stat_panel(tr("工单库", "Ticket store"),
                     tr("各 Agent 能否读写工单库：故障时工单无法开出或升级。", "Whether every "
                        "agent can read its ticket store: without it no ticket opens or "
                        "escalates."),
                     [query("min(vigil_ticket_store_up)", instant=True)],
                     thresholds=OK_WHEN_ONE, mappings=up_down(tr)), 4, 4)
    b.add(gauge_bars(tr("离线原因", "Why devices are down"),
                     tr("离线设备按原因分：timeout 超时、refused 拒绝、unreachable 不可达、"
                        "auth 认证失败等。", "Devices down by reason: timeout, refused, "
                        "unreachable, auth, ..."),
                     [query("count by (reason) (vigil_device_down_reason == 1)", "{{reason}}",
                            instant=True)], thresholds=OK_WHEN_ZERO), 7, 4)
    b.add(gauge_bars(tr("故障（按站点和等级）", "Faults by site and level"),
                     tr("各站点正在告警的故障数。", "Firing faults per site and level."),
                     [query("count by (site, level) (vigil_fault_active)",
                            tr("{{site}} {{level}} 级", "{{site}} level {{level}}"),
                            instant=True)], thresholds=OK_WHEN_ZERO), 7, 4)

    b.row(tr("各站点状态", "Sites"))
    battery = value_map({0: (tr("市电", "mains"), "green"), 1: (tr("电池", "battery"), "red")})
    b.add(table_panel(tr, tr("站点一览", "Every site"),
                      tr("每个站点一行：点击站点进入站点详情。上联交换机为该站点所有交换机"
                         "是否都在线；UPS 为是否有 UPS 在用电池供电。",
                         "One line per site; click a site for its detail. Uplink: all the "
                         "site's switches answer; UPS: one of them is on battery."),
                      [Column(tr("摄像机在线", "Cameras up"), f"sum by (site) ({cams})"),
                       Column(tr("摄像机总数", "Cameras"), f"count by (site) ({cams})"),
                       Column(tr("在线率", "Online rate"),
                              f"sum by (site) ({cams}) / count by (site) ({cams})",
                              unit="percentunit", thresholds=ONLINE_RATE, colour=True),
                       Column(tr("离线设备", "Devices down"),
                              "sum by (site) (1 - vigil_device_up)",
                              thresholds=OK_WHEN_ZERO, colour=True),
                       Column(tr("故障", "Faults"), "count by (site) (vigil_fault_active)",
                              thresholds=OK_WHEN_ZERO, colour=True),
                       Column(tr("UPS", "UPS"), "max by (site) (vigil_ups_on_battery)",
                              mappings=battery, colour=True),
                       Column(tr("上联交换机", "Uplink"),
                              'min by (site) (vigil_device_up{kind="switch"})',
                              mappings=up_down(tr), colour=True),
                       Column(tr("未关闭工单", "Open tickets"), "sum by (site) (vigil_tickets)")],
                      name_by="site",
                      links={tr("站点", "Site"): "/d/vigil-site/?var-site=${__value.raw}"}),
          24, 10)

    b.row(tr("趋势与当前故障", "Trends and faults now"))
    b.add(series_panel(tr("摄像机在线率（按站点）", "Camera online rate by site"),
                       tr("每个站点在线摄像机的比例。", "Share of each site's cameras up."),
                       [query(f"sum by (site) ({cams}) / count by (site) ({cams})",
                              "{{site}}")], unit="percentunit"), 12, 8)
    b.add(series_panel(tr("故障数（按等级）", "Faults by level"),
                       tr("正在告警的故障数随时间变化。", "Firing faults over time."),
                       [query('sum by (level) (vigil_faults{state="firing"})',
                              tr("{{level}} 级", "level {{level}}"))]), 12, 8)
    b.add(table_panel(tr, tr("当前故障", "Faults now"),
                      tr("正在告警并开出工单的故障（根因故障引起的、已屏蔽和已抑制的不在此列），"
                         "以及开始时间。", "Firing faults that open tickets (not those caused by "
                         "a root fault, silenced or inhibited), and since when."),
                      [Column(tr("开始时间", "Since"),
                              "max by (site, device, kind, alertname, level) "
                              "(vigil_fault_since_timestamp_seconds) * 1000",
                              unit="dateTimeAsLocal")]), 24, 8)
    return b
