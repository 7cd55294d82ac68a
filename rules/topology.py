"""The network's dependency graph, from the inventory's `uplink` and `powered_by`, and root
causes: which fault explains which others.

A switch that dies takes every camera behind it off the network; a UPS whose output is off
takes off what it feeds. Faults of rules marked `topology.cuts` are roots: every device
behind them (transitively: a camera behind an access switch behind the dead core switch)
is cut off, and the faults of rules marked `topology.symptom` on a cut device are *caused
by* the root. Only the topmost root opens anything; it carries the others as evidence.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agent.inventory import Device

PORT_LABELS_INDEX = ("ifindex", "port")  # a port written as a number in the inventory
PORT_LABELS_NAME = ("interface", "port")  # ... or as a name


def port_matches(port: int | str | None, series: dict[str, str]) -> bool:
    """Does the inventory's port (ifIndex or name) name the port of this series? A fault
    about the whole device (no port labels) covers every port."""
    if port is None:
        return True
    keys = PORT_LABELS_INDEX if isinstance(port, int) else PORT_LABELS_NAME
    present = [k for k in ("ifindex", "interface", "port") if k in series]
    if not present:
        return True
    return any(series.get(k) == str(port) for k in keys)


@dataclass(frozen=True)
class Edge:
    child: str
    via: str  # 'uplink' or 'power'
    port: int | str | None


class Topology:
    def __init__(self, devices: dict[str, Device]):
        self.children: dict[str, list[Edge]] = {}
        self.parents: dict[str, list[str]] = {}
        for device in devices.values():
            if device.uplink is not None:
                self._edge(device.uplink.switch, Edge(device.id, "uplink", device.uplink.port))
            feed = device.powered_by
            if feed is not None:
                self._edge(feed.ups or feed.switch or "", Edge(device.id, "power", feed.port))
        self.kinds = {d.id: d.kind for d in devices.values()}
        # (switch, port label, value) -> devices on that port: how a series names a port
        self.ports: dict[tuple[str, str, str], list[str]] = {}
        for parent, edges in self.children.items():
            for e in edges:
                if e.port is None:
                    continue
                keys = PORT_LABELS_INDEX if isinstance(e.port, int) else PORT_LABELS_NAME
                for key in keys:
                    here = self.ports.setdefault((parent, key, str(e.port)), [])
                    if e.child not in here:
                        here.append(e.child)

    def _edge(self, parent: str, edge: Edge) -> None:
        self.children.setdefault(parent, []).append(edge)
        self.parents.setdefault(edge.child, []).append(parent)

    def ancestors(self, device: str) -> list[str]:
        """Every device this one depends on, nearest first."""
        seen: dict[str, None] = {}
        queue = deque(self.parents.get(device, ()))
        while queue:
            parent = queue.popleft()
            if parent in seen:
                continue
            seen[parent] = None
            queue.extend(self.parents.get(parent, ()))
        return list(seen)

    def port_devices(self, switch: str, series: dict[str, str]) -> list[str]:
        """Devices hanging off (or fed by) this port of this switch."""
        out: list[str] = []
        for key in ("ifindex", "interface", "port"):
            value = series.get(key)
            if value is not None:
                for child in self.ports.get((switch, key, value), ()):
                    if child not in out:
                        out.append(child)
        return out

    def behind(self, device: str, cuts: Iterable[str], series: dict[str, str],
               answers: Callable[[str], bool]) -> set[str]:
        """Devices cut off when `device` fails in the ways `cuts` names (for the port of
        `series`, if it is about one port), then everything behind those, whatever the way.
        A device that `answers` is not cut off, nor is what hangs behind it through it (a
        UPS that stopped answering has not taken down the switch that still does)."""
        cuts = set(cuts)
        first = [e.child for e in self.children.get(device, ())
                 if e.via in cuts and port_matches(e.port, series)]
        out: set[str] = set()
        queue = deque(first)
        while queue:
            child = queue.popleft()
            if child in out or child == device or answers(child):
                continue
            out.add(child)
            queue.extend(e.child for e in self.children.get(child, ()))
        return out
