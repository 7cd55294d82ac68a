"""Scheduled inspections as rule subjects: "overdue inspections are themselves level-4
faults" (the service contract), so each scheduled site and kind is a subject of kind
`inspection` with id `KIND@SITE` (e.g. `monthly@dh`), and `InspectionOverdue` in
config/rules/inspections.yaml is an ordinary rule fault with a key, a ticket and escalation.

The data path is the one of the earthing points (agent/grounding_stage.py): the inspection
runner's overdue rows (agent/inspections.py) become poll results (collector `inspections`)
in a state of its own, which the rules read beside the devices' (Subjects). The readings are
published again after every rules cycle (their time moves with the clock, so they never go
stale) and at once when an inspection is created, submitted, signed or rejected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.state import DeviceState, State
from collectors.inspections import readings

INSPECTION_KIND = "inspection"
"""The subject kind the rules select scheduled inspections by."""

Row = tuple[str, str, int, float]
"""(site, kind, overdue 1/0, due unix time): InspectionService.overdue's rows."""


def subject_id(site: str, kind: str) -> str:
    """`monthly@dh`: '@' is in neither a site id nor a schedule name, nor in a device id."""
    return f"{kind}@{site}"


def inspection_subjects(inventory: Any, inspections: Any) -> dict[str, Any]:
    """One subject per site and schedule that inspects it: a Device of kind `inspection`
    (not validated: never polled). Its name is the schedule's Chinese title; its labels carry
    the site's, the kind, the English title and the calendar's time zone (for the texts)."""
    from agent.inventory import Device

    out: dict[str, Any] = {}
    for kind, schedule in inspections.schedules.items():
        for site in sorted(inventory.sites.values(), key=lambda s: s.id):
            if schedule.sites and site.id not in schedule.sites:
                continue
            sid = subject_id(site.id, kind)
            out[sid] = Device.model_construct(
                id=sid, kind=INSPECTION_KIND, site=site.id, name=schedule.title_zh or kind,
                address="", snmp=False, enabled=True,
                labels={**site.labels, "inspection_kind": kind,
                        "title_en": schedule.title_en or kind,
                        "timezone": inspections.timezone})
    return out


def add_inspection_subjects(inventory: Any, inspections: Any) -> None:
    """Make the scheduled inspections subjects of the rules, beside devices and earthing
    points (after the inventory and the `inspections:` settings are both loaded)."""
    inventory.subjects.update(inspection_subjects(inventory, inspections))


class InspectionReadings:
    """The state the rules read for the inspection subjects. `rows()` gives the runner's
    latest overdue rows; `clock` is the agent's."""

    def __init__(self, rows: Callable[[], list[Row]], clock: Callable[[], float] = time.time
                 ) -> None:
        self.rows, self.clock = rows, clock
        self.state = State()

    def sync(self, inventory: Any) -> None:
        """Follow a (re)loaded configuration: one DeviceState per inspection subject."""
        wanted = {k: v for k, v in inventory.subjects.items() if v.kind == INSPECTION_KIND}
        for key in list(self.state.devices):
            if key not in wanted:
                del self.state.devices[key]
        for key, device in wanted.items():
            known = self.state.devices.get(key)
            if known is None:
                self.state.devices[key] = DeviceState(device)
            else:
                known.device = device

    def publish(self) -> None:
        """The rows' readings at the clock's time (a new result replaces the old one)."""
        now = self.clock()
        for site, kind, overdue, due in self.rows():
            sid = subject_id(site, kind)
            if sid in self.state.devices:
                self.state.update(readings(sid, bool(overdue), due, now))

    async def on_cycle(self, *_: Any) -> None:
        self.publish()
