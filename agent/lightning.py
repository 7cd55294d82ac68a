"""Lightning protection for the reports (防雷与接地): per site and period, each SPD's state,
strikes and leakage current, and each earthing point's measurements and trend.

SPD figures come from the state's latest readings (now), in both shapes the rules know
(config/rules/spd.yaml): SPD monitors reporting natively (spd_status, spd_strikes_total,
spd_leakage_current_amperes), and environment monitors wired to SPDs whose contact, input
or sensor name says so (`SPD1 ...`, `SPD1-CNT ...`, `SPD1-LEAK ...`). The strikes in the
period need the counter at the period's start: `counter_at(device, since)` gives it when a
readings history is there (a report plugs it in); without it the increase is None and only
the total is known. Grounding comes from the recorded measurements (agent/grounding.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from agent.earthing import EarthingPoint
from agent.grounding import GroundingStore, status, trend
from agent.inventory import Inventory
from agent.state import State

CounterAt = Callable[[str, datetime], float | None]
_CONTACT = re.compile(r"^SPD[0-9]+( .*)?$")
_COUNTER = re.compile(r"^SPD[0-9]+-CNT( .*)?$")
_LEAK = re.compile(r"^SPD[0-9]+-LEAK( .*)?$")


def spd_summary(state: State, inventory: Inventory, site: str | None = None,
                since: datetime | None = None, counter_at: CounterAt | None = None
                ) -> list[dict[str, Any]]:
    """One entry per device that reports SPDs: status (`ok`, `tripped`, or `unknown` with no
    reading), strikes_total, strikes_increase since `since` (None without counter_at),
    leakage_max_amperes (None when it reads no leakage)."""
    out = []
    for device in sorted(inventory.devices.values(), key=lambda d: (d.site, d.id)):
        if device.kind not in ("spd_monitor", "env_monitor") or \
                (site is not None and device.site != site):
            continue
        entry = state.devices.get(device.id)
        readings = [r for res in (entry.good.values() if entry else ()) for r in res.readings]
        statuses: list[float] = []
        tripped: list[str] = []
        strikes: list[float] = []
        leakage: list[float] = []
        for r in readings:
            if r.metric == "spd_status":
                statuses.append(r.value)
                if r.value == 0:
                    tripped.append(r.labels.get("module") or r.labels.get("index") or "spd")
            elif r.metric == "contact_alarm" and _CONTACT.match(r.labels.get("contact", "")):
                statuses.append(0.0 if r.value else 1.0)
                if r.value:
                    tripped.append(r.labels["contact"])
            elif r.metric == "spd_strikes_total" or (
                    r.metric == "input_pulses_total"
                    and _COUNTER.match(r.labels.get("input", ""))):
                strikes.append(r.value)
            elif r.metric == "spd_leakage_current_amperes" or (
                    r.metric == "sensor_amperes" and _LEAK.match(r.labels.get("sensor", ""))):
                leakage.append(r.value)
        if device.kind == "env_monitor" and not (statuses or strikes or leakage):
            continue  # an environment monitor with no SPD wired to it
        total = sum(strikes) if strikes else None
        increase = None
        if total is not None and counter_at is not None and since is not None:
            before = counter_at(device.id, since)
            if before is not None and total >= before:  # a reset counter tells nothing
                increase = total - before
        out.append({"device": device.id, "site": device.site, "name": device.name,
                    "kind": device.kind, "up": entry.up if entry else None,
                    "status": "unknown" if not statuses else
                    ("tripped" if min(statuses) == 0 else "ok"),
                    "tripped": tripped, "strikes_total": total, "strikes_increase": increase,
                    "leakage_max_amperes": max(leakage) if leakage else None})
    return out


async def grounding_summary(store: GroundingStore, points: dict[str, EarthingPoint],
                            now: float, site: str | None = None,
                            since: datetime | None = None, until: datetime | None = None
                            ) -> list[dict[str, Any]]:
    """One entry per earthing point: its status now (latest value, limit, over limit,
    overdue), the measurements taken in [since, until) and the trend of all of them."""
    latest = await store.latest()
    rows = await store.history(site=site)
    by_point: dict[str, list[Any]] = {}
    for row in rows:
        by_point.setdefault(row.point, []).append(row)
    out = []
    for point in sorted(points.values(), key=lambda p: (p.site, p.id)):
        if site is not None and point.site != site:
            continue
        series = trend(by_point.get(point.id, []), point.limit)
        period = [t for t in series if (since is None or t.measured_at >= since)
                  and (until is None or t.measured_at < until)]
        out.append({**status(point, latest.get(point.id), now),
                    "in_period": [t.to_dict() for t in period],
                    "trend": [t.to_dict() for t in series]})
    return out


async def lightning_report(state: State, inventory: Inventory, store: GroundingStore,
                           now: float, site: str | None = None, since: datetime | None = None,
                           until: datetime | None = None,
                           counter_at: CounterAt | None = None) -> dict[str, Any]:
    """What a monthly report or an inspection sheet shows of lightning protection."""
    return {"spd": spd_summary(state, inventory, site, since, counter_at),
            "grounding": await grounding_summary(store, inventory.earthing_points, now, site,
                                                 since, until)}
