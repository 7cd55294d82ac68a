"""Prometheus exposition of the state: a custom collector that builds families at scrape time.

Nothing here keeps numbers of its own (prometheus_client's "custom collector" pattern): each
scrape reads the state as it is. Device series carry `device`, `site`, `kind`; a device that is
down exports only its device-level series (`vigil_device_up` 0, the reason, last success), never
stale values dressed as fresh ones. The agent's own counters (polls, errors by reason, lag)
are ordinary prometheus_client metrics in the same registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from agent.state import DeviceState, State
from collectors.vocabulary import MetricSpec

PREFIX = "vigil_"


def _family(spec: MetricSpec) -> Metric:
    if spec.type == "counter":
        return Metric(PREFIX + spec.name[: -len("_total")], spec.help, "counter")
    if spec.type == "info":
        return Metric(PREFIX + spec.name[: -len("_info")], spec.help, "info")
    return Metric(PREFIX + spec.name, spec.help, "gauge")


class StateCollector(Collector):
    """Exports the state. `catalogue` returns the current metric specs (they change on reload)."""

    def __init__(self, state: State, catalogue: Callable[[], dict[str, MetricSpec]]):
        self.state = state
        self.catalogue = catalogue

    def collect(self) -> Iterator[Metric]:
        catalogue = self.catalogue()
        up = Metric("vigil_device_up", "1 if the device answered its last poll, 0 if not "
                                       "(see vigil_device_down_reason).", "gauge")
        reason = Metric("vigil_device_down_reason", "Why the last poll failed: timeout, refused, "
                                                    "unreachable, auth, protocol, no_data, error.",
                        "gauge")
        duration = Metric("vigil_device_poll_duration_seconds", "Wall time of the last poll.",
                          "gauge")
        success = Metric("vigil_device_last_success_timestamp_seconds",
                         "Unix time of the last successful poll.", "gauge")
        problems = Metric("vigil_device_poll_problems", "Values the last poll could not read "
                                                        "(see `vigil poll DEVICE`).", "gauge")
        inventory = Metric("vigil_device_inventory", "Inventory and topology of each device "
                                                     "(labels), value 1.", "info")
        families: dict[str, Metric] = {}
        for entry in list(self.state.devices.values()):
            device = entry.device
            base = {"device": device.id, "site": device.site, "kind": device.kind}
            inventory.add_sample("vigil_device_inventory_info", self._inventory_labels(entry), 1)
            last = entry.last
            if last is None:
                continue
            up.add_sample("vigil_device_up", base, 1.0 if last.up else 0.0)
            duration.add_sample("vigil_device_poll_duration_seconds", base, last.duration)
            problems.add_sample("vigil_device_poll_problems", base, len(last.problems))
            if entry.last_good is not None:
                success.add_sample("vigil_device_last_success_timestamp_seconds", base,
                                   entry.last_good.timestamp)
            if not last.up:
                reason.add_sample("vigil_device_down_reason",
                                  {**base, "reason": last.reason or "error"}, 1)
                continue
            for reading in last.readings:
                spec = catalogue.get(reading.metric)
                if spec is None:  # 'up' and anything exported above
                    continue
                family = families.get(spec.name)
                if family is None:
                    family = families[spec.name] = _family(spec)
                suffix = "_total" if spec.type == "counter" else ""
                family.add_sample(family.name + suffix if suffix else PREFIX + spec.name,
                                  {**base, **reading.labels}, reading.value)
        yield from (up, reason, duration, success, problems, inventory)
        yield from families.values()

    def _inventory_labels(self, entry: DeviceState) -> dict[str, str]:
        device = entry.device
        labels = {"device": device.id, "site": device.site, "kind": device.kind,
                  "site_name": self.state.site_names.get(device.site, ""),
                  "name": device.name, "address": device.address,
                  "profile": (entry.last.profile if entry.last and entry.last.profile
                              else device.profile or ""),
                  "uplink_switch": device.uplink.switch if device.uplink else "",
                  "uplink_port": str(device.uplink.port) if device.uplink else "",
                  "powered_by": "", "powered_by_port": ""}
        if device.powered_by is not None:
            labels["powered_by"] = device.powered_by.ups or device.powered_by.switch or ""
            if device.powered_by.port is not None:
                labels["powered_by_port"] = str(device.powered_by.port)
        for key, value in device.labels.items():
            labels.setdefault(key, value)
        return labels


class AgentMetrics:
    """The agent's own health: what a Prometheus user expects of any exporter."""

    def __init__(self, registry: CollectorRegistry):
        self.polls = Counter("vigil_polls", "Device polls done.", ["kind"], registry=registry)
        self.failures = Counter("vigil_poll_failures", "Device polls that failed, by reason.",
                                ["kind", "reason"], registry=registry)
        self.skipped = Counter("vigil_polls_skipped", "Polls not started because the device's "
                                                      "previous poll was still running.",
                               registry=registry)
        self.lag = Histogram("vigil_poll_lag_seconds", "Delay from a poll's scheduled time to "
                                                       "its start (queueing for a poll slot).",
                             buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                             registry=registry)
        self.in_flight = Gauge("vigil_polls_in_flight", "Polls running now.", registry=registry)
        self.requests = Counter("vigil_snmp_requests", "SNMP requests sent.", registry=registry)
        self.varbinds = Counter("vigil_snmp_varbinds", "SNMP varbinds received.",
                                registry=registry)
        self.reload_ok = Gauge("vigil_config_last_reload_successful",
                               "1 if the last configuration (re)load succeeded.",
                               registry=registry)
        self.reload_time = Gauge("vigil_config_last_reload_success_timestamp_seconds",
                                 "Unix time of the last successful configuration load.",
                                 registry=registry)
        self.info = Info("vigil_agent", "The agent: id, version, SNMP engine.",
                         registry=registry)
