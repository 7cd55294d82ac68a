"""Words every report shares, Chinese (default) and English: levels, cause categories,
ticket states, timeline events, units. A report adds its own headings on top of these."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

LANGS = ("zh", "en")

COMMON: dict[str, dict[str, Any]] = {
    "zh": {
        "level": {1: "一级", 2: "二级", 3: "三级", 4: "四级"},
        "level_meaning": {1: "系统瘫痪", 2: "严重影响业务", 3: "部分设备故障",
                          4: "咨询/配置类"},
        "cause": {"operator_error": "人为操作失误", "connector_cable": "接头/线缆质量",
                  "front_end_hardware": "前端设备硬件", "power_ups": "供电/UPS",
                  "network": "网络", "lightning_surge": "雷击/浪涌",
                  "software_config": "软件/配置", "environment": "环境",
                  "unknown": "原因不明"},
        "state": {"open": "待响应", "acknowledged": "已响应", "diagnosed": "已诊断",
                  "repairing": "维修中", "resolved": "已修复", "confirmed": "已确认",
                  "closed": "已关闭"},
        "event": {"opened": "故障发生、开单", "notified": "已通知", "escalated": "超时升级",
                  "acknowledged": "响应", "diagnosed": "诊断", "repair_started": "开始维修",
                  "resolved": "维修完成", "fault_resolved": "设备恢复正常",
                  "confirmed": "业主确认", "closed": "关闭", "reopened": "重新打开",
                  "comment": "备注", "ups_test": "UPS 电池测试"},
        "breach": {"response": "响应超时", "repair": "修复超时"},
        "message": {"opened": "新故障", "escalated": "升级", "resolved": "已恢复"},
        "system": "系统",
        "none": "无",
        "yes": "是",
        "no": "否",
        "generated": "生成时间",
        "page": "第 {page} 页",
        "sep": "、",
        "time_zone": "时区",
        "units": {"d": "天", "h": "小时", "m": "分", "s": "秒"},
    },
    "en": {
        "level": {1: "Level 1", 2: "Level 2", 3: "Level 3", 4: "Level 4"},
        "level_meaning": {1: "system paralysed", 2: "business seriously affected",
                          3: "some devices faulty", 4: "information or configuration"},
        "cause": {"operator_error": "operator error", "connector_cable":
                  "connector/cable quality", "front_end_hardware": "front-end hardware",
                  "power_ups": "power/UPS", "network": "network",
                  "lightning_surge": "lightning/surge", "software_config": "software/config",
                  "environment": "environment", "unknown": "unknown"},
        "state": {"open": "open", "acknowledged": "acknowledged", "diagnosed": "diagnosed",
                  "repairing": "repairing", "resolved": "resolved", "confirmed": "confirmed",
                  "closed": "closed"},
        "event": {"opened": "fault fired, ticket opened", "notified": "notified",
                  "escalated": "escalated", "acknowledged": "acknowledged",
                  "diagnosed": "diagnosed", "repair_started": "repair started",
                  "resolved": "repair recorded", "fault_resolved": "device healthy again",
                  "confirmed": "owner confirmed", "closed": "closed", "reopened": "reopened",
                  "comment": "comment", "ups_test": "UPS battery test"},
        "breach": {"response": "response limit missed", "repair": "repair limit missed"},
        "message": {"opened": "new fault", "escalated": "escalation", "resolved": "recovered"},
        "system": "system",
        "none": "none",
        "yes": "yes",
        "no": "no",
        "generated": "Generated",
        "page": "page {page}",
        "sep": ", ",
        "time_zone": "time zone",
        "units": {"d": " d ", "h": " h ", "m": " min ", "s": " s"},
    },
}


def when(t: datetime | None, tz: tzinfo | None, seconds: bool = False) -> str:
    """A time as people read it on paper: local to the report's zone, to the minute."""
    if t is None:
        return "-"
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def cell(value: Any, tz: tzinfo | None, lang: str) -> str:
    """Any value of a table cell as text: times local, numbers without noise."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return COMMON[lang]["yes" if value else "no"]
    if isinstance(value, datetime):
        return when(value, tz)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def duration(value: timedelta | float | None, lang: str) -> str:
    """`1 h 25 min` / `1小时25分`: days, hours and minutes (seconds only under a minute)."""
    if value is None:
        return "-"
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    units = COMMON[lang]["units"]
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{units[unit]}")
            seconds %= size
    if not parts:
        parts.append(f"{seconds}{units['s']}")
    return sign + "".join(parts).strip()


def actor(name: str, lang: str) -> str:
    """`agent:branch-dh` (the agent's own doing) reads as `系统（branch-dh）`."""
    if name.startswith("agent:"):
        ident = name.removeprefix("agent:")
        system = COMMON[lang]["system"]
        return f"{system}（{ident}）" if lang == "zh" else f"{system} ({ident})"
    return name


def named(name: str, ident: str, lang: str) -> str:
    """`东湖社区（dh）`: the human name with the id, or the id alone."""
    if not ident:
        return "-"
    if not name or name == ident:
        return ident
    return f"{name}（{ident}）" if lang == "zh" else f"{name} ({ident})"
