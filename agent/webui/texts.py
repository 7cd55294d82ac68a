"""The web UI's words, Chinese (default) and English. Levels, cause categories, ticket states,
timeline events and device kinds are the reports' own (agent/reports), so a page and the
paper report name things alike; only the UI's buttons, headings and messages are here."""

from __future__ import annotations

from typing import Any

from agent.reports.labels import COMMON, LANGS

UI: dict[str, dict[str, Any]] = {
    "zh": {
        "app": "Vigil 设备运维",
        "nav": {"tickets": "我的工单", "confirm": "待确认维修", "inspections": "巡检签收",
                "reports": "报表", "inventory": "设备清单", "rules": "规则状态"},
        "role": {"engineer": "工程师", "technician": "维修技术员", "owner": "业主单位",
                 "viewer": "只读"},
        "logout": "退出",
        "login": "登录", "token": "访问令牌", "token_hint":
            "令牌由机房工程师用 vigil tokens add 生成，只显示一次；请向工程师索取。",
        "bad_token": "令牌无效，请检查后重新输入。",
        "too_many": "登录失败次数过多，请 {s} 秒后再试。",
        "login_expired": "登录页已过期，请重新输入令牌。",
        "site": "站点", "state": "状态", "all": "全部", "filter": "筛选",
        "no_tickets": "没有符合条件的未关闭工单。",
        "level": "级别", "what": "故障", "device": "设备", "opened": "开单", "branch": "分局",
        "open_tickets": "未关闭工单 {n} 张",
        "scene": "现场记录摘要", "scene_at": "采集时间", "no_scene": "无现场记录。",
        "timeline": "处置记录", "actions": "处理", "report": "报告",
        "act": {"acknowledge": "响应（已接单）", "diagnosis": "记录诊断",
                "repair/start": "开始维修", "resolve": "记录维修并完成",
                "confirm": "确认修复", "reopen": "重新打开", "close": "关闭工单",
                "comments": "添加备注", "submit": "提交巡检", "sign": "签收",
                "reject": "退回"},
        "field": {"note": "备注（可选）", "diagnosis": "诊断结论", "plan": "维修方案（可选）",
                  "cause_category": "故障原因", "repair": "维修内容（做了什么）",
                  "parts_replaced": "更换部件（每行一个，可空）", "reason": "原因",
                  "text": "备注"},
        "choose": "请选择",
        "done": "已保存：{what}",
        "awaiting_confirm": "以下工单已由维修人员记录维修，等待业主确认（或退回重新打开）。",
        "no_confirm": "没有等待确认的维修。",
        "repair_by": "维修人员", "parts": "更换部件", "cause": "故障原因",
        "repair_text": "维修内容", "details": "详情",
        "insp_intro": "已提交的巡检等待业主签收；未提交的仍在进行中。",
        "insp_state": {"open": "进行中", "submitted": "待签收", "signed": "已签收"},
        "kind": "类型", "period": "周期", "due": "截止", "no_inspections": "没有巡检记录。",
        "results": "已填写 {n} 项",
        "sheet": "巡检表",
        "ticket_reports": "工单报告", "monthly": "月度报告", "month": "月份",
        "format": "格式", "lang": "语言", "make": "生成",
        "monthly_hint": "月报包含故障统计、巡检、UPS 放电测试、接地电阻与未结事项。",
        "inv_intro": "设备在线状态来自本代理最近一次采集。",
        "devices": "设备", "name": "名称", "address": "地址", "up": "在线", "down": "离线",
        "unknown": "未采集", "total": "合计",
        "rules_intro": "已加载的规则与当前活动故障。",
        "by_level": "活动故障（按级别）", "rule": "规则", "faults": "活动故障",
        "selected": "适用设备", "active_faults": "活动故障列表", "since": "开始",
        "no_faults": "当前没有活动故障。", "fault_state": {"pending": "待定", "firing": "告警中"},
        "error": "出错了", "back": "返回",
        "forbidden": "无权执行此操作：{role}角色不能{what}。",
        "csrf": "表单已失效（安全校验未通过），请返回、刷新页面后重试。",
        "not_found": "找不到：{what}",
        "refused": "操作未完成：{why}",
        "unavailable": "工单库暂不可用，请稍后再试。",
        "lang_switch": "EN",
    },
    "en": {
        "app": "Vigil maintenance",
        "nav": {"tickets": "My tickets", "confirm": "Repairs to confirm",
                "inspections": "Inspections", "reports": "Reports",
                "inventory": "Inventory", "rules": "Rule status"},
        "role": {"engineer": "engineer", "technician": "technician", "owner": "owner",
                 "viewer": "viewer"},
        "logout": "Log out",
        "login": "Log in", "token": "API token", "token_hint":
            "The machine-room engineer makes tokens with `vigil tokens add`; it is shown once. "
            "Ask your engineer for yours.",
        "bad_token": "Unknown token: check it and try again.",
        "too_many": "Too many failed logins: try again in {s} s.",
        "login_expired": "The login page had expired: enter your token again.",
        "site": "Site", "state": "State", "all": "all", "filter": "Filter",
        "no_tickets": "No open tickets match.",
        "level": "Level", "what": "Fault", "device": "Device", "opened": "Opened",
        "branch": "branch",
        "open_tickets": "{n} open ticket(s)",
        "scene": "Scene record", "scene_at": "Collected at", "no_scene": "No scene record.",
        "timeline": "Handling log", "actions": "Actions", "report": "Report",
        "act": {"acknowledge": "Acknowledge", "diagnosis": "Record diagnosis",
                "repair/start": "Start repair", "resolve": "Record repair and resolve",
                "confirm": "Confirm repair", "reopen": "Reopen", "close": "Close ticket",
                "comments": "Add comment", "submit": "Submit inspection", "sign": "Sign off",
                "reject": "Reject"},
        "field": {"note": "Note (optional)", "diagnosis": "Diagnosis",
                  "plan": "Maintenance plan (optional)", "cause_category": "Cause",
                  "repair": "What was done", "parts_replaced":
                  "Parts replaced (one per line, may be empty)", "reason": "Reason",
                  "text": "Comment"},
        "choose": "choose",
        "done": "Saved: {what}",
        "awaiting_confirm": "Repairs recorded by the technicians, awaiting the owner's "
                            "confirmation (or reopening).",
        "no_confirm": "No repairs await confirmation.",
        "repair_by": "Technician", "parts": "Parts replaced", "cause": "Cause",
        "repair_text": "Repair", "details": "Details",
        "insp_intro": "Submitted inspections await the owner's sign-off; open ones are "
                      "still being filled in.",
        "insp_state": {"open": "open", "submitted": "awaiting sign-off", "signed": "signed"},
        "kind": "Kind", "period": "Period", "due": "Due", "no_inspections": "No inspections.",
        "results": "{n} item(s) filled in",
        "sheet": "Sheet",
        "ticket_reports": "Ticket reports", "monthly": "Monthly report", "month": "Month",
        "format": "Format", "lang": "Language", "make": "Make report",
        "monthly_hint": "Fault statistics, inspections, UPS discharge tests, grounding and "
                        "open items of one site and month.",
        "inv_intro": "Up/down as of this agent's latest polls.",
        "devices": "Devices", "name": "Name", "address": "Address", "up": "up",
        "down": "down", "unknown": "not polled yet", "total": "total",
        "rules_intro": "Loaded rules and the faults active now.",
        "by_level": "Active faults by level", "rule": "Rule", "faults": "Active faults",
        "selected": "Devices", "active_faults": "Active faults", "since": "Since",
        "no_faults": "No active faults.", "fault_state": {"pending": "pending",
                                                           "firing": "firing"},
        "error": "Error", "back": "Back",
        "forbidden": "Not allowed: the {role} role may not {what}.",
        "csrf": "The form had expired (security check failed): go back, reload the page "
                "and try again.",
        "not_found": "Not found: {what}",
        "refused": "Not done: {why}",
        "unavailable": "The ticket store is not available; try again later.",
        "lang_switch": "中文",
    },
}


def words(lang: str) -> dict[str, Any]:
    """Everything a page may say in `lang`: the UI's words, the reports' shared words
    (`c`), the ticket report's headings (`r`) and device kinds (`kinds`)."""
    # imported here: the report module brings matplotlib, which the agent loads on the
    # first page or report, not at start
    from agent.reports.ticket import KIND
    from agent.reports.ticket import LABELS as REPORT

    lang = lang if lang in LANGS else "zh"
    return {**UI[lang], "c": COMMON[lang], "r": REPORT[lang], "kinds": KIND[lang]}
