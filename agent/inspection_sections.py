"""The inspection sheet's sections that other stages own, for one agent: availability in
the period (readings history), each UPS's last discharge test (UPS tests) and the grounding
resistance of each earthing point (grounding). agent/inspection_prefill.py shows them under
the titles of its SECTIONS; a provider that raises (its store not open yet) shows as "not
available" there.

Each provider reads its stage through a callable, so a reload or a stage opened later is
seen at the next sheet; a stage that is absent (history disabled) leaves its section out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent.grounding import status
from agent.history_query import HistoryQuery
from agent.inspection_prefill import Section, SectionProvider

Clock = Callable[[], float]


def section_providers(inventory: Callable[[], Any], clock: Clock, *,
                      history: Callable[[], Any] | None = None,
                      ups_tests: Callable[[], Any] | None = None,
                      grounding: Callable[[], Any] | None = None
                      ) -> dict[str, SectionProvider]:
    """The providers of the stages given: `history()` a HistoryRunner, `ups_tests()` the
    UpsTests service, `grounding()` the GroundingStage (each may give None: not open)."""
    out: dict[str, SectionProvider] = {}

    if history is not None:
        async def availability(site: str, start: datetime, end: datetime) -> Section:
            runner = _open(history(), "the readings history")
            end = min(end, datetime.fromtimestamp(clock(), UTC))  # not the period's future
            devices = sorted((d for d in inventory().devices.values() if d.site == site),
                             key=lambda d: (d.kind, d.id))
            seconds = {} if end <= start else await HistoryQuery(
                runner.store.engine, runner.options.timezone).availability(
                start, end, devices=[d.id for d in devices])
            rows = []
            for d in devices:
                a = seconds.get(d.id)
                up, down = (a.up, a.down) if a else (0.0, 0.0)
                unknown = a.unknown if a else 0.0
                rows.append([d.id, d.kind, round(up), round(down), round(unknown),
                             round(up / (up + down), 4) if up + down else None])
            return {"columns": ["device", "kind", "up_seconds", "down_seconds",
                                "unknown_seconds", "availability"], "rows": rows}

        out["availability"] = availability

    if ups_tests is not None:
        async def ups_discharge_test(site: str, start: datetime, end: datetime) -> Section:
            service = _open(ups_tests(), "the UPS tests")
            rows = []
            for device in sorted(d.id for d in inventory().devices.values()
                                 if d.site == site and d.kind == "ups"):
                done = [t for t in await service.store.tests(device)
                        if t.started_at < end and t.ended_at is not None]
                last = done[-1] if done else None
                rows.append([device, None, None, None, None, None] if last is None else
                            [device, last.result, last.started_at.isoformat(),
                             last.discharge_seconds, last.kind, last.method])
            return {"columns": ["device", "result", "started_at", "discharge_seconds", "kind",
                                "method"], "rows": rows}

        out["ups_discharge_test"] = ups_discharge_test

    if grounding is not None:
        def grounding_section(site: str, start: datetime, end: datetime) -> Section:
            stage = _open(grounding(), "the grounding records")
            now = clock()
            rows = []
            for point in sorted((p for p in stage.points.values() if p.site == site),
                                key=lambda p: p.id):
                s = status(point, stage.latest.get(point.id), now)
                latest = s["latest"] or {}
                rows.append([point.id, point.name, s["limit_ohm"], latest.get("ohm"),
                             latest.get("measured_at"), s["over_limit"], s["overdue"]])
            return {"columns": ["point", "name", "limit_ohm", "ohm", "measured_at",
                                "over_limit", "overdue"], "rows": rows}

        out["grounding"] = grounding_section
    return out


def _open(stage: Any, what: str) -> Any:
    if stage is None or not getattr(stage, "ready", True):
        raise RuntimeError(f"{what} not open yet")
    return stage
