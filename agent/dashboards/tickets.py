"""Tickets and SLA: the backlog the agents count, escalations, and how fast tickets are
acknowledged and repaired against the contract's limits (config/escalation.yaml)."""

from __future__ import annotations

from agent.dashboards.panels import (
    OK_WHEN_ONE,
    OK_WHEN_ZERO,
    Board,
    Text,
    query,
    series_panel,
    site_variable,
    stat_panel,
    steps,
    up_down,
)

UID = "vigil-tickets"
S = 'site=~"$site"'
ACK = "vigil_ticket_time_to_acknowledge_seconds"
REPAIR = "vigil_ticket_time_to_repair_seconds"
# The shipped escalation policy's limits per level, in seconds (config/escalation.yaml;
# level 4 counts working days, which a histogram bucket cannot express).
RESPOND = {1: 900, 2: 1800, 3: 7200}
REPAIR_LIMIT = {1: 14400, 2: 28800, 3: 86400}
MET = steps((None, "red"), (0.9, "orange"), (0.98, "green"))


def within(histogram: str, limits: dict[int, int]) -> str:
    """Per level: the share of the time range's tickets handled within the level's limit
    (the limits are bucket bounds of the histogram, agent/ticket_metrics.py BUCKETS, which
    the client library writes as floats: le="900.0")."""
    return " or ".join(
        f'(sum by (level) (increase({histogram}_bucket{{level="{lv}", le="{limit:.1f}"}}'
        f"[$__range])) / sum by (level) (increase({histogram}_count{{level=\"{lv}\"}}"
        f"[$__range])))" for lv, limit in limits.items())


def quantile(q: float, histogram: str) -> str:
    return (f"histogram_quantile({q}, sum by (le, level) "
            f"(increase({histogram}_bucket[$__range])))")


def build(tr: Text) -> Board:
    b = Board(UID, tr("Vigil 工单与 SLA", "Vigil tickets and SLA"),
              tr("未关闭工单、超时升级，以及响应和修复用时是否满足合同时限。",
                 "Open tickets, escalations, and whether response and repair times meet "
                 "the contract's limits."), tr, variables=[site_variable(tr, multi=True)])
    b.row(tr("工单", "Tickets"))
    b.add(stat_panel(tr("未关闭工单", "Open tickets"), "",
                     [query(f"sum(vigil_tickets{{{S}}}) or vector(0)", instant=True)]), 4, 4)
    b.add(stat_panel(tr("按等级", "By level"), tr("未关闭工单按当前等级。",
                                               "Open tickets by their present level."),
                     [query(f"sum by (level) (vigil_tickets{{{S}}})",
                            tr("{{level}} 级", "level {{level}}"), instant=True)]), 6, 4)
    b.add(stat_panel(tr("按状态", "By state"),
                     tr("open 待响应、acknowledged 已响应、in_progress 处理中、resolved 待确认…",
                        "open, acknowledged, in_progress, resolved (awaiting confirmation), "
                        "..."),
                     [query(f"sum by (state) (vigil_tickets{{{S}}})", "{{state}}",
                            instant=True)]), 6, 4)
    b.add(stat_panel(tr("超时升级（所选时段）", "Escalations (time range)"),
                     tr("响应（response）或修复（repair）超时而升级的次数；各 Agent 合计，"
                        "不分站点。", "Escalations for a missed response or repair limit; "
                        "all agents, not per site."),
                     [query("sum by (breach) (increase(vigil_ticket_escalations_total"
                            "[$__range]))", "{{breach}}", instant=True)],
                     thresholds=OK_WHEN_ZERO, decimals=0), 5, 4)
    b.add(stat_panel(tr("工单库", "Ticket store"), "",
                     [query("min(vigil_ticket_store_up)", instant=True)],
                     thresholds=OK_WHEN_ONE, mappings=up_down(tr)), 3, 4)
    b.add(series_panel(tr("工单积压", "Backlog"), tr("未关闭工单数随时间变化，按等级。",
                                                 "Open tickets over time, by level."),
                       [query(f"sum by (level) (vigil_tickets{{{S}}})",
                              tr("{{level}} 级", "level {{level}}"))]), 12, 8)
    b.add(series_panel(tr("超时升级", "Escalations"), "",
                       [query("sum by (breach, to_level) (increase("
                              "vigil_ticket_escalations_total[$__rate_interval]))",
                              tr("{{breach}} → {{to_level}} 级", "{{breach}} → {{to_level}}"))],
                       bars=True), 12, 8)

    b.row(tr("SLA：响应与修复用时", "SLA: response and repair times"))
    note = tr("（按随附 escalation.yaml 的时限：1 级 15 分钟/4 小时，2 级 30 分钟/8 小时，"
              "3 级 2 小时/24 小时；4 级按工作日计，不在此列。只统计经 Agent API 办理的工单。）",
              " (the shipped escalation.yaml's limits: level 1 15 min / 4 h, level 2 30 min "
              "/ 8 h, level 3 2 h / 24 h; level 4 counts working days and is left out. Only "
              "tickets handled through an agent's API count.)")
    b.add(stat_panel(tr("按时响应率", "Responded in time"),
                     tr("所选时段内在时限内响应的工单比例。", "Share of the time range's "
                        "tickets acknowledged within their limit.") + note,
                     [query(within(ACK, RESPOND), tr("{{level}} 级", "level {{level}}"),
                            instant=True)], unit="percentunit", thresholds=MET), 12, 4)
    b.add(stat_panel(tr("按时修复率", "Repaired in time"),
                     tr("所选时段内在时限内修复的工单比例。", "Share of the time range's "
                        "tickets repaired within their limit.") + note,
                     [query(within(REPAIR, REPAIR_LIMIT), tr("{{level}} 级", "level {{level}}"),
                            instant=True)], unit="percentunit", thresholds=MET), 12, 4)
    b.add(series_panel(tr("响应用时（90% 分位）", "Time to acknowledge (90th percentile)"),
                       tr("从开单（或重开）到响应的用时。", "Opening (or reopening) to "
                          "acknowledgement."),
                       [query(quantile(0.9, ACK), tr("{{level}} 级", "level {{level}}"))],
                       unit="s"), 12, 8)
    b.add(series_panel(tr("修复用时（90% 分位）", "Time to repair (90th percentile)"),
                       tr("从开单（或重开）到记录修复的用时。", "Opening (or reopening) to the "
                          "repair being recorded."),
                       [query(quantile(0.9, REPAIR), tr("{{level}} 级", "level {{level}}"))],
                       unit="s"), 12, 8)
    return b
