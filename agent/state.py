"""The agent's state: the latest result of every collector for every device, and its events.

One owner for the data (the scheduler and the event receivers write, everyone else reads).
The exporter, the CLI and later the rules engine read it; none keeps a copy. A device removed
from the inventory is dropped here, and so disappears from /metrics with no clean-up anywhere
else. Results are replaced, never edited in place, so a reader on another thread (the /metrics
renderer) always sees whole results.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.inventory import Device, Inventory
from collectors.reading import PollResult, Reading

log = logging.getLogger("vigil.state")


@dataclass
class EventState:
    """The latest reading of one event of one device, and how often it came."""

    reading: Reading
    count: int


@dataclass
class DeviceState:
    device: Device
    results: dict[str, PollResult] = field(default_factory=dict)  # collector -> latest
    good: dict[str, PollResult] = field(default_factory=dict)  # collector -> latest success
    failures: dict[str, int] = field(default_factory=dict)  # collector -> failures in a row
    events: dict[tuple[tuple[str, str], ...], EventState] = field(default_factory=dict)

    @property
    def up(self) -> bool | None:
        """Whether the device answered its latest poll of any collector; None before any."""
        if not self.results:
            return None
        return any(r.up for r in self.results.values())


class State:
    def __init__(self) -> None:
        self.devices: dict[str, DeviceState] = {}
        self.site_names: dict[str, str] = {}
        self.observers: list[Callable[[PollResult, DeviceState], None]] = []
        """Called with every poll result once it is in (the history stage)."""

    def sync(self, inventory: Inventory) -> None:
        """Follow a (re)loaded inventory, keeping what is known about devices that stay."""
        for device_id in list(self.devices):
            if device_id not in inventory.devices:
                del self.devices[device_id]
        for device_id, device in inventory.devices.items():
            known = self.devices.get(device_id)
            if known is None:
                self.devices[device_id] = DeviceState(device)
            else:
                known.device = device
        self.site_names = {site.id: site.name for site in inventory.sites.values()}

    def forget(self, device_id: str, collector: str) -> None:
        """A collector no longer watches this device (its config changed)."""
        entry = self.devices.get(device_id)
        if entry is not None:
            entry.results.pop(collector, None)
            entry.good.pop(collector, None)
            entry.failures.pop(collector, None)

    def update(self, result: PollResult) -> None:
        entry = self.devices.get(result.device)
        if entry is None:  # removed from the inventory while its poll was in flight
            return
        before = entry.results.get(result.collector)
        entry.results[result.collector] = result
        if result.up:
            entry.good[result.collector] = result
            entry.failures[result.collector] = 0
            if before is not None and not before.up:
                log.info("%s %s: up again", result.device, result.collector)
        else:
            entry.failures[result.collector] = entry.failures.get(result.collector, 0) + 1
            if before is None or before.up or before.reason != result.reason:
                log.warning("%s %s: down (%s: %s)", result.device, result.collector,
                            result.reason, result.detail)
        for observer in self.observers:
            observer(result, entry)

    def record_event(self, reading: Reading) -> bool:
        """Keep an event reading (the EventSink of trap and ONVIF event receivers).
        False if the device is not in the inventory."""
        entry = self.devices.get(reading.device)
        if entry is None:
            return False
        key = tuple(sorted(reading.labels.items()))
        known = entry.events.get(key)
        entry.events[key] = EventState(reading, (known.count if known else 0) + 1)
        return True
