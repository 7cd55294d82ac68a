"""Faults as Prometheus series, built at scrape time from the engine's faults.

`vigil_fault_active` (firing faults that open something: not caused by a root, silenced or
inhibited) and `vigil_alerts` (Prometheus' ALERTS: pending and firing) carry the rule as
`alertname`, the level, the device, site and kind and the series' own labels, so a centre's
Grafana or Alertmanager reads them like any alert. Suppressed faults are counted apart,
with why and by what.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from rules.faults import Fault


def _labels(fault: Fault) -> dict[str, str]:
    labels = {**fault.labels, **fault.series, "alertname": fault.rule,
              "level": str(fault.level), "device": fault.device, "site": fault.site,
              "kind": fault.kind}
    if not fault.device:
        labels["group"] = fault.subject
    return labels


class FaultCollector(Collector):
    def __init__(self, faults: Callable[[], list[Fault]]):
        self.faults = faults

    def collect(self) -> Iterator[Metric]:
        active = Metric("vigil_fault_active", "1 for each firing fault that opens a ticket "
                                              "(not caused by a root fault, silenced or "
                                              "inhibited).", "gauge")
        alerts = Metric("vigil_alerts", "Pending and firing faults (label alertstate), as "
                                        "Prometheus' ALERTS.", "gauge")
        since = Metric("vigil_fault_since_timestamp_seconds", "When the fault fired (pending "
                                                              "ones: since when pending).",
                       "gauge")
        suppressed = Metric("vigil_fault_suppressed", "Faults that open nothing of their own "
                                                      "(label reason: caused, silenced, "
                                                      "inhibited; by: the root fault, silence "
                                                      "or inhibiting fault).", "gauge")
        counts = Metric("vigil_faults", "Faults by level and state (firing, pending, caused, "
                                        "silenced, inhibited, flapping).", "gauge")
        caused = Metric("vigil_fault_caused", "Faults a root fault carries as evidence.",
                        "gauge")
        tally: dict[tuple[str, str], int] = {}
        for level in "1234":
            for state in ("firing", "pending", "caused", "silenced", "inhibited", "flapping"):
                tally[(level, state)] = 0
        for fault in self.faults():
            labels = _labels(fault)
            level = str(fault.level)
            why = fault.suppressed
            if why is not None:
                by = fault.caused_by or fault.silenced_by or fault.inhibited_by or ""
                suppressed.add_sample("vigil_fault_suppressed",
                                      {**labels, "reason": why, "by": by}, 1)
                tally[(level, why)] += 1
                continue
            tally[(level, fault.state)] += 1
            if fault.flapping:
                tally[(level, "flapping")] += 1
            alerts.add_sample("vigil_alerts", {**labels, "alertstate": fault.state}, 1)
            if fault.state == "firing":
                active.add_sample("vigil_fault_active", labels, 1)
                since.add_sample("vigil_fault_since_timestamp_seconds", labels,
                                 fault.fired_at or fault.pending_since)
                if fault.caused:
                    caused.add_sample("vigil_fault_caused", labels, len(fault.caused))
        for (level, state), n in tally.items():
            counts.add_sample("vigil_faults", {"level": level, "state": state}, n)
        yield from (active, alerts, since, suppressed, counts, caused)
