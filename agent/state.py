"""The agent's state: the latest poll of every device in the inventory.

One owner for the data (the scheduler writes, everyone else reads). The exporter, the CLI and
later the rules engine read it; none keeps a copy. A device removed from the inventory is
dropped here, and so disappears from /metrics with no clean-up anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.inventory import Device, Inventory
from collectors.reading import PollResult


@dataclass
class DeviceState:
    device: Device
    last: PollResult | None = None  # the latest poll, failed or not
    last_good: PollResult | None = None  # the latest successful poll
    consecutive_failures: int = 0

    @property
    def up(self) -> bool | None:
        return None if self.last is None else self.last.up


class State:
    def __init__(self) -> None:
        self.devices: dict[str, DeviceState] = {}
        self.site_names: dict[str, str] = {}

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

    def update(self, result: PollResult) -> None:
        entry = self.devices.get(result.device)
        if entry is None:  # removed from the inventory while its poll was in flight
            return
        entry.last = result
        if result.up:
            entry.last_good = result
            entry.consecutive_failures = 0
        else:
            entry.consecutive_failures += 1
