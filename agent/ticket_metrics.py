"""Tickets as Prometheus series: the backlog, escalations and the contract's response times.

- `vigil_tickets{site,level,state}`: tickets of this agent that are not closed. Counted by the
  ticket runner at each escalation check (every `tickets.escalation_interval`) and served from
  that count, so a scrape never waits on the database; with a store shared by several agents
  each exports its own tickets (sum them in the centre).
- `vigil_ticket_escalations_total{breach,to_level}`: escalations this agent recorded.
- `vigil_ticket_time_to_acknowledge_seconds{level}` and `..._time_to_repair_seconds{level}`:
  from the start of the ticket's cycle (opening or reopening) to its acknowledgement, and to
  the repair being recorded (`resolved`), observed when the change is made through this
  agent (its API); `level` is the ticket's level at that moment.
- `vigil_ticket_store_up`: 1 while the store is open and the last check could read it.
Notification deliveries, failures, dead letters and storms are counted by the notifier
(agent/notify/notifier.py: `vigil_notifications_*`, `vigil_notification_failures_total`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.tickets.models import Ticket

# Seconds: 5 min .. 5 days, around the contract limits (15 min, 30 min, 2 h, 4 h, 8 h, 24 h,
# 1 and 5 working days).
BUCKETS = (300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 432000, 864000)


class TicketMetrics(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.counts: list[tuple[str, int, str, int]] = []
        self.store_up = 0
        self.escalations = Counter(
            "vigil_ticket_escalations", "Escalations recorded by this agent (breach: response "
            "or repair limit missed; to_level: the ticket's new level).",
            ["breach", "to_level"], registry=registry)
        self.to_acknowledge = Histogram(
            "vigil_ticket_time_to_acknowledge_seconds", "From a ticket's opening (or "
            "reopening) to its acknowledgement.", ["level"], buckets=BUCKETS,
            registry=registry)
        self.to_repair = Histogram(
            "vigil_ticket_time_to_repair_seconds", "From a ticket's opening (or reopening) to "
            "the repair being recorded.", ["level"], buckets=BUCKETS, registry=registry)
        for level in "1234":    # exported at 0 from the start: increase() sees the first one
            self.to_acknowledge.labels(level)
            self.to_repair.labels(level)
        registry.register(self)

    def changed(self, ticket: Ticket, action: str) -> None:
        """A store listener: observe the response and repair times as they happen."""
        histogram = {"acknowledge": self.to_acknowledge, "resolve": self.to_repair}.get(action)
        stamp = {"acknowledge": ticket.acknowledged_at, "resolve": ticket.resolved_at}.get(action)
        if histogram is None or stamp is None:
            return
        elapsed = (stamp - ticket.cycle_started_at).total_seconds()
        histogram.labels(str(ticket.level)).observe(max(0.0, elapsed))

    def collect(self) -> Iterator[Metric]:
        tickets = GaugeMetricFamily("vigil_tickets", "Tickets of this agent that are not "
                                    "closed, by site, level and state.",
                                    labels=["site", "level", "state"])
        for site, level, state, count in self.counts:
            tickets.add_metric([site, str(level), state], count)
        yield tickets
        yield GaugeMetricFamily("vigil_ticket_store_up", "1 if the ticket store is open and "
                                "its last read succeeded.", value=self.store_up)

    def describe(self) -> Iterator[Metric]:
        return iter(())

