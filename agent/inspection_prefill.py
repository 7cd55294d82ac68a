"""What the agent already knows, written onto an inspection sheet before the technician goes.

Per device of the site: kind, name, firmware, whether it answers now, the tickets of the
period (count, the ones still open, causes), UPS state, SPD state and strikes; per site the
tickets that are not about one device (site aggregates). Sections that other stages own
(availability from the readings history, the UPS discharge test, grounding resistance) come
from the agent's providers (agent/inspection_sections.py), given to the InspectionService. A
section whose provider is missing or fails is shown as "not available", never left out
silently.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from agent.inspection_schedule import ChecklistItem, Due, InspectionSchedule
from agent.state import DeviceState, State
from agent.tickets.models import Ticket
from agent.tickets.store import UNREACHABLE, TicketFilter, TicketStore, unreachable_reason

log = logging.getLogger("vigil.inspections")

Section = dict[str, Any]
"""A JSON-able mapping shown on the sheet; by convention `{"columns": [...], "rows": [[...]]}`
plus anything the provider finds useful. `available: False` marks a missing section."""
SectionProvider = Callable[[str, datetime, datetime], Section | Awaitable[Section]]
"""(site, period_start, period_end) -> the section: plain or async."""

SECTIONS: dict[str, dict[str, str]] = {
    "availability": {"zh": "设备在线率（本周期）", "en": "Availability in the period"},
    "ups_discharge_test": {"zh": "UPS 最近一次放电测试", "en": "Last UPS discharge test"},
    "grounding": {"zh": "接地电阻（各接地点）", "en": "Grounding resistance per earthing point"},
}
"""The sections every sheet shows, in order, with their titles."""
NOT_AVAILABLE = {"zh": "暂无数据", "en": "not available"}
TICKET_LIMIT = 100_000


def checklist_rows(schedule: InspectionSchedule, devices: list[dict[str, Any]]
                   ) -> list[dict[str, str]]:
    """The rows the technician fills: one per site item, one per device for device items."""
    rows: list[dict[str, str]] = []
    for item in schedule.checklist:
        for device in _targets(item, devices):
            rows.append({"item": item.id, "device": device, "zh": item.zh, "en": item.en})
    return rows


def _targets(item: ChecklistItem, devices: list[dict[str, Any]]) -> list[str]:
    if item.per == "site":
        return [""]
    return [d["id"] for d in devices if not item.kinds or d["kind"] in item.kinds]


def device_readings(entry: DeviceState) -> dict[str, Any]:
    """Firmware, up/down, UPS and SPD state of one device from its latest good readings."""
    values: dict[str, list[float]] = {}
    firmware = entry.device.labels.get("firmware", "")
    for result in entry.good.values():
        for reading in result.readings:
            if reading.metric == "device_info" and reading.labels.get("firmware"):
                firmware = reading.labels["firmware"]
            values.setdefault(reading.metric, []).append(reading.value)
    out: dict[str, Any] = {"firmware": firmware or None, "up": entry.up,
                           "down_reasons": sorted({r.reason for r in entry.results.values()
                                                   if not r.up and r.reason})}
    if entry.device.kind == "ups":
        out["ups"] = {"on_battery": _first(values, "ups_on_battery"),
                      "charge_ratio": _first(values, "ups_battery_charge_ratio"),
                      "runtime_seconds": _first(values, "ups_battery_runtime_seconds")}
    if "spd_status" in values or "spd_strikes_total" in values:
        statuses = values.get("spd_status", [])
        out["spd"] = {"status": min(statuses) if statuses else None,  # any module degraded
                      "strikes": sum(values["spd_strikes_total"])
                      if "spd_strikes_total" in values else None}
    return out


def _first(values: dict[str, list[float]], metric: str) -> float | None:
    found = values.get(metric)
    return found[0] if found else None


def _tickets(tickets: list[Ticket]) -> dict[str, Any]:
    causes = Counter(t.cause_category for t in tickets if t.cause_category)
    return {"count": len(tickets),
            "open": [t.id for t in tickets if t.state != "closed"],
            "causes": dict(sorted(causes.items())),
            "rules": sorted({t.rule for t in tickets})}


async def period_tickets(store: TicketStore, site: str, start: datetime, end: datetime
                         ) -> list[Ticket]:
    """The site's tickets of the period: opened in it, or opened before and still open."""
    opened = await store.list(TicketFilter(site=site, opened_since=start, opened_before=end,
                                           limit=TICKET_LIMIT))
    carried = await store.list(TicketFilter(site=site, opened_before=start, not_closed=True,
                                            limit=TICKET_LIMIT))
    return sorted({t.id: t for t in opened + carried}.values(), key=lambda t: t.id)


async def sections(site: str, start: datetime, end: datetime,
                   providers: dict[str, SectionProvider]) -> dict[str, Section]:
    out: dict[str, Section] = {}
    for name, title in SECTIONS.items():
        provider = providers.get(name)
        if provider is None:
            out[name] = {"title": title, "available": False, "note": NOT_AVAILABLE}
            continue
        try:
            section = provider(site, start, end)
            if inspect.isawaitable(section):
                section = await section
            out[name] = {"title": title, "available": True, **dict(section)}
        except UNREACHABLE as exc:  # the store busy or out of reach: said, not a bug
            log.warning("inspection section %s of %s not filled: the store is busy or out of "
                        "reach (%s)", name, site, unreachable_reason(exc))
            out[name] = {"title": title, "available": False, "note": NOT_AVAILABLE,
                         "error": unreachable_reason(exc)}
        except Exception as exc:  # another module's bug must not stop the sheet
            log.exception("inspection section %s of %s failed", name, site)
            out[name] = {"title": title, "available": False, "note": NOT_AVAILABLE,
                         "error": f"{type(exc).__name__}: {exc}"}
    return out


async def prefill(due: Due, schedule: InspectionSchedule, state: State, store: TicketStore,
                  providers: dict[str, SectionProvider] | None = None) -> dict[str, Any]:
    """The sheet of inspection `due`, from the state's latest readings and the ticket store."""
    entries = sorted((e for e in state.devices.values() if e.device.site == due.site),
                     key=lambda e: (e.device.kind, e.device.id))
    tickets = await period_tickets(store, due.site, due.start, due.end)
    by_device: dict[str, list[Ticket]] = {}
    for ticket in tickets:
        by_device.setdefault(ticket.device, []).append(ticket)
    devices = [{"id": e.device.id, "kind": e.device.kind, "name": e.device.name,
                **device_readings(e), "tickets": _tickets(by_device.get(e.device.id, []))}
               for e in entries]
    known = {d["id"] for d in devices}
    others = [t for t in tickets if t.device not in known]  # site aggregates, removed devices
    return {
        "site": due.site, "site_name": state.site_names.get(due.site, ""), "kind": due.kind,
        "title": {"zh": schedule.title_zh or due.kind, "en": schedule.title_en or due.kind},
        "period": due.period, "period_start": due.start.isoformat(),
        "period_end": due.end.isoformat(), "due_at": due.due.isoformat(),
        "devices": devices, "site_tickets": _tickets(others),
        "sections": await sections(due.site, due.start, due.end, providers or {}),
        "checklist": checklist_rows(schedule, devices),
    }
