"""Earthing points (接地点) of the inventory: where the grounding resistance is measured.

An earthing point is not polled: a technician measures it with an earth-resistance tester
and records the value (agent/grounding.py). For the rules engine it is a subject like a
device, of kind `earthing_point`, so grounding faults are ordinary rule faults with a key,
a level and a ticket (`GroundingResistanceHigh:ep-room`). The pseudo-device made here is
only ever seen by the rules (and their state); the scheduler, the exporter's device series
and the event receivers never see it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from agent.configbase import Duration, Strict

EarthingKind = Literal["machine_room", "pole", "cabinet", "tower", "other"]
EARTHING_KIND = "earthing_point"
"""The device kind the rules select earthing points by."""

LIMIT_OHM: dict[str, float] = {"machine_room": 4.0, "pole": 10.0, "cabinet": 10.0,
                               "tower": 10.0, "other": 10.0}
"""Default limit per kind: a machine room's combined (joint) earthing ≤ 4 Ω; a front-end
pole, outdoor cabinet or tower ≤ 10 Ω (GB 50343, GA/T 1127 practice). Set `limit_ohm` on
a point where the project's contract says otherwise (e.g. 1 Ω for a combined earthing)."""

MEASURE_EVERY = 182 * 86400.0
"""Default interval between measurements: half a year (before the thunder season, and once
after it). A point not measured for longer is overdue."""


class EarthingPoint(Strict):
    """One earthing point (under `earthing_points:` in an inventory file)."""

    id: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                    description="Unique id across devices and earthing points, e.g. "
                                "`ep-dh-room`.")
    site: str = Field(..., description="Id of the site (from `sites`).")
    name: str = Field("", description="Human name, e.g. `东湖社区机房联合接地`.")
    kind: EarthingKind = Field(
        ..., description="machine_room (combined earthing of a machine room, limit 4 Ω), "
                         "pole, cabinet, tower or other (limit 10 Ω).")
    limit_ohm: float | None = Field(
        None, gt=0, le=1000,
        description="Highest acceptable resistance in ohms (default by kind: 4 for "
                    "machine_room, 10 for the others).")
    measure_every: Duration = Field(
        MEASURE_EVERY, description="Longest time between two measurements before the point "
                                   "is overdue (default 182d: twice a year, once before the "
                                   "thunder season).")
    device: str | None = Field(None, description="Id of the device it protects (optional), "
                                                 "e.g. the pole's camera or the SPD monitor.")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="Extra labels, as a device's (rules may select "
                                               "by them).")

    @field_validator("labels", mode="before")
    @classmethod
    def _label_names(cls, value: Any) -> Any:
        from agent.inventory import _labels  # the devices' rules for label names

        return _labels(value) if isinstance(value, dict) else value

    @property
    def limit(self) -> float:
        """The limit in ohms: its own, else its kind's."""
        return float(self.limit_ohm if self.limit_ohm is not None else LIMIT_OHM[self.kind])


def subject(point: EarthingPoint, site_labels: dict[str, str]) -> Any:
    """The point as a rule subject: a Device of kind `earthing_point` (not validated: it
    has no address and is never polled)."""
    from agent.inventory import Device

    return Device.model_construct(
        id=point.id, kind=EARTHING_KIND, site=point.site, name=point.name, address="",
        labels={**site_labels, **point.labels, "earthing_kind": point.kind},
        snmp=False, enabled=True)


def sync_points(state: Any, inventory: Any) -> None:
    """Keep one DeviceState per earthing point in `state` (a State of its own, or a test's),
    following a (re)loaded inventory; readings of points that stay are kept."""
    from agent.state import DeviceState

    wanted = {k: v for k, v in inventory.subjects.items() if v.kind == EARTHING_KIND}
    for key in list(state.devices):
        if key not in wanted and key not in inventory.devices:
            del state.devices[key]
    for key, device in wanted.items():
        known = state.devices.get(key)
        if known is None:
            state.devices[key] = DeviceState(device)
        else:
            known.device = device
