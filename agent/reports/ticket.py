"""The diagnosis and maintenance report of one ticket (故障诊断与维修报告).

What the service contract asks for a fault, from the ticket's own timeline: the scene record
(the readings at the moment the fault fired, kept on the `opened` event), the level and the
emergency handling log (every notification, escalation, acknowledgement: who and when),
the diagnosis and maintenance plan, the repair record (what, parts, time taken), the test
after the repair (the device itself reporting the fault gone) and the owner's confirmation,
with a signature block, and the time taken against the escalation policy's limits.

A reopened ticket is reported for its current cycle (since the latest reopening); the log
still shows the whole history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from agent.escalation import Limit, Policy, deadline
from agent.reports.charts import bar_chart
from agent.reports.labels import COMMON, actor, duration, named, when
from agent.reports.workbook import Sheet
from agent.tickets.models import Ticket, TicketEvent
from agent.tickets.store import TicketStore

LABELS: dict[str, dict[str, Any]] = {
    "zh": {
        "title": "故障诊断与维修报告",
        "ticket_no": "工单",
        "s_header": "一、工单信息",
        "s_scene": "二、现场记录",
        "s_log": "三、故障级别与应急处置记录",
        "s_limits": "四、响应与修复时限",
        "s_diagnosis": "五、故障诊断与维修方案",
        "s_repair": "六、维修记录",
        "s_test": "七、修复后测试",
        "s_confirm": "八、业主确认",
        "id": "工单编号", "what": "故障", "site": "站点", "device": "设备", "kind": "设备类型",
        "rule": "规则", "fault_key": "故障键", "original_level": "原始级别",
        "level": "当前级别", "state": "状态", "opened_at": "开单时间",
        "fired_at": "故障发生时间", "acknowledged_at": "响应时间", "diagnosed_at": "诊断时间",
        "repair_started_at": "开始维修", "resolved_at": "维修完成", "confirmed_at": "业主确认",
        "closed_at": "关闭时间", "cause": "故障原因", "reopen_count": "重新打开次数",
        "cycle_note": "本工单曾重新打开 {n} 次；以下诊断、维修与确认为 {since} 起的本轮处置，"
                      "处置记录含全部历史。",
        "scene_at": "采集时间", "inputs": "规则输入", "collectors": "采集状态",
        "readings": "读数", "name": "名称", "value": "数值", "metric": "指标",
        "labels": "标签", "collector": "采集器", "up": "状态", "reason": "原因",
        "detail": "详情", "up_ok": "正常", "up_down": "异常", "no_scene": "无现场记录。",
        "time": "时间", "who": "人员", "event": "事项", "details": "说明",
        "escalations": "超时升级 {n} 次",
        "measure": "考核项", "limit": "时限", "start": "起算", "deadline": "截止",
        "done": "完成", "taken": "用时", "result": "结果",
        "response": "响应", "repair": "修复", "limit_minutes": "时限（分钟）",
        "taken_minutes": "用时（分钟）",
        "met": "达标", "breached": "超时", "pending": "进行中", "overdue": "已超时",
        "limit_level": "按{level}时限考核（升级策略）。", "no_policy": "未配置时限。",
        "chart_title": "用时与时限（小时）", "chart_taken": "用时", "chart_limit": "时限",
        "hours": "小时",
        "diagnosis": "诊断结论", "plan": "维修方案", "by": "记录人", "at": "时间",
        "not_diagnosed": "尚未诊断。",
        "repair_text": "维修内容", "parts": "更换部件", "repair_time": "维修用时",
        "repairer": "维修人员", "not_repaired": "尚未记录维修。",
        "healthy_since": "设备自 {since} 起运行正常（设备上报故障消除）。",
        "healthy_before": "故障于 {since} 消除，早于开始维修；此后未再发生。",
        "not_confirmed_device": "设备尚未确认恢复。",
        "confirmed_by": "确认人", "note": "意见", "not_confirmed": "业主尚未确认。",
        "closed_by": "关闭人",
        "sign_repair": "维修单位签字", "sign_owner": "业主单位签字", "sign_date": "日期",
        "item": "项目", "content": "内容",
        "sheet_header": "工单信息", "sheet_scene": "现场记录", "sheet_log": "处置记录",
        "sheet_limits": "时限考核", "sheet_repair": "诊断与维修",
        "fault_returned": "故障复发",
    },
    "en": {
        "title": "Fault Diagnosis and Maintenance Report",
        "ticket_no": "Ticket",
        "s_header": "1. Ticket",
        "s_scene": "2. Scene record",
        "s_log": "3. Level and emergency handling log",
        "s_limits": "4. Response and repair time limits",
        "s_diagnosis": "5. Diagnosis and maintenance plan",
        "s_repair": "6. Repair record",
        "s_test": "7. Test after repair",
        "s_confirm": "8. Owner's confirmation",
        "id": "Ticket no.", "what": "Fault", "site": "Site", "device": "Device",
        "kind": "Device kind", "rule": "Rule", "fault_key": "Fault key",
        "original_level": "Original level", "level": "Current level", "state": "State",
        "opened_at": "Opened", "fired_at": "Fault fired", "acknowledged_at": "Acknowledged",
        "diagnosed_at": "Diagnosed", "repair_started_at": "Repair started",
        "resolved_at": "Repair recorded", "confirmed_at": "Owner confirmed",
        "closed_at": "Closed", "cause": "Cause", "reopen_count": "Times reopened",
        "cycle_note": "This ticket was reopened {n} time(s); diagnosis, repair and "
                      "confirmation below are those of the current cycle since {since}; the "
                      "log holds the whole history.",
        "scene_at": "Collected at", "inputs": "Rule inputs", "collectors": "Collectors",
        "readings": "Readings", "name": "Name", "value": "Value", "metric": "Metric",
        "labels": "Labels", "collector": "Collector", "up": "State", "reason": "Reason",
        "detail": "Detail", "up_ok": "up", "up_down": "down",
        "no_scene": "No scene record.",
        "time": "Time", "who": "Who", "event": "Event", "details": "Details",
        "escalations": "escalated {n} time(s)",
        "measure": "Measure", "limit": "Limit", "start": "From", "deadline": "Deadline",
        "done": "Done", "taken": "Taken", "result": "Result",
        "response": "Response", "repair": "Repair", "limit_minutes": "Limit (minutes)",
        "taken_minutes": "Taken (minutes)",
        "met": "met", "breached": "breached", "pending": "pending", "overdue": "overdue",
        "limit_level": "Limits of {level} (escalation policy).",
        "no_policy": "No time limits configured.",
        "chart_title": "Time taken vs limit (hours)", "chart_taken": "taken",
        "chart_limit": "limit", "hours": "hours",
        "diagnosis": "Diagnosis", "plan": "Maintenance plan", "by": "Recorded by",
        "at": "At", "not_diagnosed": "Not diagnosed yet.",
        "repair_text": "Repair", "parts": "Parts replaced", "repair_time": "Time taken",
        "repairer": "Technician", "not_repaired": "No repair recorded yet.",
        "healthy_since": "Device healthy since {since} (the device reports the fault gone).",
        "healthy_before": "The fault cleared at {since}, before the repair started, and has "
                          "not come back.",
        "not_confirmed_device": "Not yet confirmed by the device.",
        "confirmed_by": "Confirmed by", "note": "Note", "not_confirmed":
        "Not yet confirmed by the owner.",
        "closed_by": "Closed by",
        "sign_repair": "Contractor's signature", "sign_owner": "Owner's signature",
        "sign_date": "Date",
        "item": "Item", "content": "Content",
        "sheet_header": "Ticket", "sheet_scene": "Scene record", "sheet_log": "Handling log",
        "sheet_limits": "Time limits", "sheet_repair": "Diagnosis and repair",
        "fault_returned": "the fault came back",
    },
}
KIND = {"zh": {"ptz_camera": "球机", "fixed_camera": "枪机", "nvr": "硬盘录像机",
               "ups": "UPS", "switch": "交换机", "spd_monitor": "防雷监测器",
               "env_monitor": "环境监测器"},
        "en": {"ptz_camera": "PTZ camera", "fixed_camera": "fixed camera", "nvr": "NVR",
               "ups": "UPS", "switch": "switch", "spd_monitor": "SPD monitor",
               "env_monitor": "environment monitor"}}
SCENE_KEYS = {"at", "inputs", "collectors", "readings"}


@dataclass(frozen=True)
class TimeLimit:
    """One of the contract's limits applied to this ticket's cycle."""

    measure: str  # response | repair
    limit: Limit
    start: datetime
    deadline: datetime
    done_at: datetime | None

    @property
    def taken(self) -> timedelta | None:
        return None if self.done_at is None else self.done_at - self.start

    def limit_text(self, lang: str) -> str:
        days = self.limit.working_days
        if days is None:
            return duration(self.limit.seconds, lang)
        return f"{days} 个工作日" if lang == "zh" else \
            f"{days} working day{'s' if days != 1 else ''}"

    def result(self, now: datetime) -> str:
        if self.done_at is not None:
            return "met" if self.done_at <= self.deadline else "breached"
        return "overdue" if now > self.deadline else "pending"


@dataclass
class TicketReport:
    """The facts of the report (from the store, the inventory and the policy); rendering
    is agent/reports/render.py's."""

    ticket: Ticket
    events: list[TicketEvent]
    generated_at: datetime
    policy: Policy | None = None
    site_name: str = ""
    device_name: str = ""
    device_kind: str = ""
    tz: tzinfo | None = None
    template: str = "ticket.html.j2"
    cycle: list[TicketEvent] = field(init=False)

    def __post_init__(self) -> None:
        reopened = [i for i, e in enumerate(self.events) if e.kind == "reopened"]
        self.cycle = self.events[reopened[-1] + 1:] if reopened else list(self.events)

    # -- facts ------------------------------------------------------------------------------

    def _last(self, kind: str) -> TicketEvent | None:
        return next((e for e in reversed(self.cycle) if e.kind == kind), None)

    @property
    def opened(self) -> TicketEvent | None:
        return next((e for e in self.events if e.kind == "opened"), None)

    @property
    def fired_at(self) -> datetime | None:
        return _time((self.opened.data if self.opened else {}).get("fired_at"))

    def scene(self) -> dict[str, Any] | None:
        """The scene record kept when the fault fired: rule inputs, collectors' state,
        readings (tolerant of what older agents stored)."""
        evidence = (self.opened.data if self.opened else {}).get("evidence")
        if not isinstance(evidence, dict) or not evidence:
            return None
        inputs = evidence.get("inputs")
        inputs = dict(inputs) if isinstance(inputs, dict) else {}
        inputs.update((k, v) for k, v in evidence.items() if k not in SCENE_KEYS)
        collectors = []
        for name, c in sorted((evidence.get("collectors") or {}).items()):
            if isinstance(c, dict):
                collectors.append({"name": name, "up": c.get("up"), "reason":
                                   c.get("reason") or "", "detail": c.get("detail") or "",
                                   "at": _time(c.get("at"))})
        readings = []
        for r in evidence.get("readings") or []:
            if isinstance(r, list | tuple) and len(r) == 3:
                metric, labels, value = r
                text = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) \
                    if isinstance(labels, dict) else str(labels or "")
                readings.append((str(metric), text, _scalar(value)))
        return {"at": _time(evidence.get("at")),
                "inputs": [(k, _scalar(v)) for k, v in sorted(inputs.items())],
                "collectors": collectors, "readings": readings}

    def limits(self) -> list[TimeLimit]:
        """Response and repair time against the limits of the ticket's original level."""
        level = self.ticket.original_level
        if self.policy is None or level not in self.policy.levels:
            return []
        limits, calendar = self.policy.limits(level), self.policy.calendar_of(level)
        start = self.ticket.cycle_started_at
        return [TimeLimit("response", limits.respond, start,
                          deadline(start, limits.respond, calendar), self.ticket.acknowledged_at),
                TimeLimit("repair", limits.repair, start,
                          deadline(start, limits.repair, calendar), self.ticket.resolved_at)]

    def diagnosis(self) -> dict[str, Any] | None:
        diagnosed, started = self._last("diagnosed"), self._last("repair_started")
        if diagnosed is None:
            return None
        plans = [diagnosed.data.get("plan") or ""]
        if started is not None and (started.data.get("plan") or "") not in plans:
            plans.append(started.data["plan"])
        return {"text": diagnosed.data.get("diagnosis", ""), "plan": "\n".join(p for p in plans
                                                                                if p),
                "by": diagnosed.actor, "at": diagnosed.at}

    def repair(self) -> dict[str, Any] | None:
        resolved, started = self._last("resolved"), self._last("repair_started")
        if resolved is None:
            return None
        return {"text": resolved.data.get("repair", ""),
                "parts": list(resolved.data.get("parts_replaced") or []),
                "cause": resolved.data.get("cause_category"), "by": resolved.actor,
                "at": resolved.at, "started": started.at if started else None,
                "taken": resolved.at - started.at if started else None}

    def test_after_repair(self) -> dict[str, Any] | None:
        """The device's own word: when the fault last stopped firing in this cycle."""
        event = self._last("fault_resolved")
        if event is None:
            return None
        since = _time(event.data.get("resolved_at")) or event.at
        started = self.ticket.repair_started_at
        return {"since": since, "before_repair": started is not None and since < started}

    def confirmation(self) -> dict[str, Any]:
        confirmed, closed = self._last("confirmed"), self._last("closed")
        return {"by": confirmed.actor if confirmed else None,
                "at": confirmed.at if confirmed else None,
                "note": confirmed.data.get("note", "") if confirmed else "",
                "closed_by": closed.actor if closed else None,
                "closed_at": closed.at if closed else None}

    # -- words ------------------------------------------------------------------------------

    def filename(self, lang: str) -> str:
        return f"{LABELS[lang]['title']}-{self.ticket.id}" if lang == "zh" \
            else f"fault-report-{self.ticket.id}"

    def _level(self, level: int, lang: str) -> str:
        c = COMMON[lang]
        name, meaning = c["level"].get(level, str(level)), c["level_meaning"].get(level, "")
        return f"{name}（{meaning}）" if lang == "zh" else f"{name} ({meaning})"

    def header(self, lang: str) -> list[tuple[str, Any]]:
        t, c, k = LABELS[lang], COMMON[lang], self.ticket
        kind = KIND[lang].get(self.device_kind, self.device_kind)
        rows: list[tuple[str, Any]] = [
            (t["id"], k.id),
            (t["what"], (k.title_zh if lang == "zh" else k.title_en) or k.title_en),
            (t["site"], named(self.site_name, k.site, lang)),
            (t["device"], named(self.device_name, k.device, lang)),
            (t["kind"], kind or "-"), (t["rule"], k.rule), (t["fault_key"], k.fault_key),
            (t["original_level"], self._level(k.original_level, lang)),
            (t["level"], self._level(k.level, lang)),
            (t["state"], c["state"].get(k.state, k.state)),
            (t["fired_at"], self.fired_at), (t["opened_at"], k.opened_at),
            (t["acknowledged_at"], k.acknowledged_at), (t["diagnosed_at"], k.diagnosed_at),
            (t["repair_started_at"], k.repair_started_at), (t["resolved_at"], k.resolved_at),
            (t["confirmed_at"], k.confirmed_at), (t["closed_at"], k.closed_at),
            (t["cause"], c["cause"].get(k.cause_category, k.cause_category)
             if k.cause_category else None),
        ]
        if k.reopen_count:
            rows.append((t["reopen_count"], k.reopen_count))
        return rows

    def log(self, lang: str) -> list[dict[str, Any]]:
        """Every event of the timeline, in order: when, who, what, details."""
        c = COMMON[lang]
        return [{"at": e.at, "who": actor(e.actor, lang),
                 "what": c["event"].get(e.kind, e.kind), "details": self._details(e, lang)}
                for e in self.events]

    def _details(self, e: TicketEvent, lang: str) -> str:
        t, c, d = LABELS[lang], COMMON[lang], e.data or {}
        sep = "；" if lang == "zh" else "; "
        if e.kind == "opened":
            return self._level(int(d.get("level") or self.ticket.original_level), lang)
        if e.kind == "escalated":
            parts = [f"{c['level'].get(d.get('from_level'), '?')} → "
                     f"{c['level'].get(d.get('to_level'), '?')}"]
            if d.get("breach"):
                parts.append(f"{c['breach'].get(d['breach'], d['breach'])}"
                             + (f" ({d['limit']})" if d.get("limit") else ""))
            if d.get("tier"):
                parts.append(("通知 " if lang == "zh" else "notify ") + str(d["tier"]))
            return sep.join(parts)
        if e.kind == "notified":
            what = c["message"].get(d.get("kind"), d.get("kind", ""))
            return f"{what} → {c['sep'].join(d.get('channels') or [])}"
        if e.kind == "resolved":
            cause = c["cause"].get(d.get("cause_category"), d.get("cause_category", ""))
            return sep.join(p for p in (cause, d.get("repair", "")) if p)
        if e.kind == "fault_resolved":
            return when(_time(d.get("resolved_at")) or e.at, self.tz)
        if e.kind == "reopened":
            reason = d.get("reason", "")
            return t["fault_returned"] if reason == "fault_returned" else reason
        for key in ("diagnosis", "plan", "note", "text", "reason"):
            if d.get(key):
                return str(d[key])
        return ""

    # -- Report protocol --------------------------------------------------------------------

    def context(self, lang: str) -> dict[str, Any]:
        t = LABELS[lang]
        limits = self.limits()
        escalations = sum(1 for e in self.cycle if e.kind == "escalated")
        return {
            "t": t, "title": t["title"], "k": self.ticket, "header": self.header(lang),
            "cycle_note": t["cycle_note"].format(
                n=self.ticket.reopen_count, since=when(self.ticket.reopened_at, self.tz))
            if self.ticket.reopen_count else "",
            "site_label": named(self.site_name, self.ticket.site, lang),
            "scene": self.scene(), "log": self.log(lang),
            "escalations": t["escalations"].format(n=escalations) if escalations else "",
            "limits": limits, "now": self.generated_at,
            "limit_level": t["limit_level"].format(
                level=COMMON[lang]["level"][self.ticket.original_level]),
            "chart": self._chart(limits, lang),
            "diagnosis": self.diagnosis(), "repair": self.repair(),
            "test": self.test_after_repair(), "confirmation": self.confirmation(),
            "actor": lambda name: actor(name, lang) if name else "",
            "generated_at": self.generated_at, "tz_name": _tz_name(self.tz),
        }

    def _chart(self, limits: list[TimeLimit], lang: str) -> str | None:
        if not any(lim.taken is not None for lim in limits):
            return None
        t = LABELS[lang]
        hours = [(lim.taken.total_seconds() if lim.taken else 0.0) / 3600 for lim in limits]
        allowed = [(lim.deadline - lim.start).total_seconds() / 3600 for lim in limits]
        return bar_chart([t[lim.measure] for lim in limits],
                         {t["chart_taken"]: hours, t["chart_limit"]: allowed},
                         title=t["chart_title"], unit=t["hours"], size=(5.0, 2.2)).data_uri

    def sheets(self, lang: str) -> list[Sheet]:
        t, c = LABELS[lang], COMMON[lang]
        sheets = [Sheet(t["sheet_header"], [t["item"], t["content"]], list(self.header(lang)))]
        scene = self.scene() or {"inputs": [], "readings": []}
        rows: list[list[Any]] = [[t["inputs"], name, "", value]
                                 for name, value in scene["inputs"]]
        rows += [[t["readings"], metric, labels, value]
                 for metric, labels, value in scene["readings"]]
        sheets.append(Sheet(t["sheet_scene"], ["", t["metric"], t["labels"], t["value"]], rows))
        sheets.append(Sheet(t["sheet_log"], [t["time"], t["who"], t["event"], t["details"]],
                            [[e["at"], e["who"], e["what"], e["details"]]
                             for e in self.log(lang)]))
        sheets.append(Sheet(
            t["sheet_limits"], [t["measure"], t["limit"], t["limit_minutes"], t["start"],
                                t["deadline"], t["done"], t["taken_minutes"], t["result"]],
            [[t[lim.measure], lim.limit_text(lang), _minutes(lim.deadline - lim.start), lim.start,
              lim.deadline, lim.done_at, _minutes(lim.taken),
              t[lim.result(self.generated_at)]] for lim in self.limits()],
            formats={2: "0.0", 6: "0.0"}))
        diagnosis, repair = self.diagnosis() or {}, self.repair() or {}
        test, confirm = self.test_after_repair(), self.confirmation()
        test_text = t["not_confirmed_device"] if test is None else (
            t["healthy_before" if test["before_repair"] else "healthy_since"]
            .format(since=when(test["since"], self.tz)))
        sheets.append(Sheet(t["sheet_repair"], [t["item"], t["content"]], [
            [t["diagnosis"], diagnosis.get("text")], [t["plan"], diagnosis.get("plan")],
            [t["by"], actor(diagnosis["by"], lang) if diagnosis else None],
            [t["repair_text"], repair.get("text")],
            [t["cause"], c["cause"].get(repair.get("cause"), repair.get("cause"))],
            [t["parts"], c["sep"].join(repair.get("parts", [])) or None],
            [t["repair_started_at"], repair.get("started")], [t["resolved_at"], repair.get("at")],
            [f"{t['repair_time']} ({t['taken_minutes']})", _minutes(repair.get("taken"))],
            [t["repairer"], actor(repair["by"], lang) if repair else None],
            [t["s_test"], test_text],
            [t["confirmed_by"], confirm["by"]], [t["confirmed_at"], confirm["at"]],
            [t["note"], confirm["note"] or None]], formats={1: "0.0"}))
        return sheets


async def load_ticket_report(store: TicketStore, ticket_id: int, *,
                             policy: Policy | None = None, inventory: Any = None,
                             tz: tzinfo | None = None) -> TicketReport:
    """The report's facts: the ticket and its whole timeline from the store, human names
    from the inventory (`sites`/`devices` mappings; optional), the limits from `policy`.
    Raises TicketNotFound."""
    ticket = await store.get(ticket_id)
    events = await store.timeline(ticket_id)
    site = getattr(inventory, "sites", {}).get(ticket.site) if inventory else None
    device = getattr(inventory, "devices", {}).get(ticket.device) if inventory else None
    return TicketReport(ticket=ticket, events=events, generated_at=store.now(), policy=policy,
                        site_name=getattr(site, "name", "") or "",
                        device_name=getattr(device, "name", "") or "",
                        device_kind=getattr(device, "kind", "") or "", tz=tz)


def _time(value: Any) -> datetime | None:
    """A stored time (ISO text or epoch seconds) as an aware datetime."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _minutes(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds() / 60, 1)


def _tz_name(tz: tzinfo | None) -> str:
    now = datetime.now(tz) if tz else datetime.now().astimezone()
    return str(getattr(tz, "key", None) or now.tzname() or "")
