"""Prometheus exposition of the state: the devices' part of /metrics (StatePage), the agent's
own metrics.

Nothing here keeps numbers of its own: each scrape reads the state as it is (a device's
rendered lines are reused only while it holds the very results they were made from). Device
series carry `device`, `site`, `kind`; each collector's
latest result is exported as it is: a failed poll gives its reason and only what that poll
measured itself, never stale values of an earlier poll dressed as fresh ones. Events pushed by
devices are exported with how often and when they came. The agent's own counters (polls,
errors by reason, lag) are ordinary prometheus_client metrics in the agent's registry,
rendered after the state's page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.state import DeviceState, State
from collectors.reading import PollResult, Reading
from collectors.vocabulary import MetricSpec

PREFIX = "vigil_"
PRIMARY = ("snmp", "onvif", "rtsp", "reach")
"""vigil_device_up follows the first of these collectors that watches the device: its
management protocol. vigil_collector_up tells each one apart (e.g. reach up, snmp down:
the host is there but its agent is not)."""


def _profile(entry: DeviceState) -> str:
    snmp = entry.results.get("snmp")
    return (snmp.profile if snmp is not None and snmp.profile else None) \
        or entry.device.profile or ""


class _Families:
    """The metric families of one scrape."""

    def __init__(self) -> None:
        self.up = Metric("vigil_device_up", "1 if the device answered the latest poll of its "
                                            "management protocol (SNMP, else ONVIF, RTSP, "
                                            "reachability), else 0.", "gauge")
        self.collector_up = Metric("vigil_collector_up", "1 if the device answered this "
                                                         "collector's latest poll.", "gauge")
        self.reason = Metric("vigil_device_down_reason",
                             "Why a collector's latest poll failed (label reason: timeout, "
                             "refused, unreachable, auth, protocol, no_data, fault, "
                             "unsupported, no_frames, host_down, error).", "gauge")
        self.duration = Metric("vigil_device_poll_duration_seconds",
                               "Wall time of the collector's latest poll.", "gauge")
        self.success = Metric("vigil_device_last_success_timestamp_seconds",
                              "Unix time of the collector's latest successful poll.", "gauge")
        self.problems = Metric("vigil_device_poll_problems", "Values the latest poll could not "
                                                             "read (see `vigil poll DEVICE`).",
                               "gauge")
        self.inventory = Metric("vigil_device_inventory", "Inventory and topology of each "
                                                          "device (labels), value 1.", "info")
        self.event = Metric("vigil_event", "Latest value of an event the device pushed (SNMP "
                                           "trap, ONVIF event): 1 raised, 0 cleared.", "gauge")
        self.events = Metric("vigil_events", "Events of this kind received since the agent "
                                             "started.", "counter")
        self.event_time = Metric("vigil_event_last_timestamp_seconds",
                                 "Unix time of the latest event of this kind.", "gauge")
        self.readings: dict[str, Metric] = {}

    def add(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        family = self.readings.get(spec.name)
        if family is None:
            family = self.readings[spec.name] = _family(spec)
        if spec.type == "counter":
            family.add_sample(family.name + "_total", labels, value)
        else:
            family.add_sample(PREFIX + spec.name, labels, value)

    def all(self) -> Iterator[Metric]:
        yield from (self.up, self.collector_up, self.reason, self.duration, self.success,
                    self.problems, self.inventory, self.event, self.events, self.event_time)
        yield from self.readings.values()


def _family(spec: MetricSpec) -> Metric:
    if spec.type == "counter":
        return Metric(PREFIX + spec.name[: -len("_total")], spec.help, "counter")
    if spec.type == "info":
        return Metric(PREFIX + spec.name[: -len("_info")], spec.help, "info")
    return Metric(PREFIX + spec.name, spec.help, "gauge")


class StatePage:
    """The state's part of /metrics, rendered per device when its results come in.

    Why not a prometheus_client custom collector building every family at each scrape: at
    10,000 devices that is ~790,000 samples and 7 s of CPU per scrape (bench/run --suite
    scrape), past any scrape timeout. A device's lines only change when one of its results
    or events is replaced (the state never edits them in place), so each device's lines are
    rendered by prometheus_client itself (same escaping and number format) when a poll
    result arrives (`observe`, a State observer), and a scrape only splices them per family
    (the text format wants each family's lines together). A rendered block is kept with the
    objects it was made from and used only while the device still holds those very objects;
    anything else (an event, a reload that changed the metric catalogue) is re-rendered by
    the scrape itself.

    No lock: the observer (event loop) and scrapes (worker threads) only ever replace whole
    entries of the two dicts; a block lost to a race is rendered again."""

    def __init__(self, state: State, catalogue: Callable[[], dict[str, MetricSpec]],
                 extra: Callable[[], list[Reading]] = list):
        self.state = state
        self.catalogue = catalogue
        self.extra = extra  # readings made at scrape time (e.g. event subscription states)
        self._blocks: dict[str, _Block] = {}
        self._headers: dict[str, bytes] = {}  # family -> its HELP and TYPE lines, in order
        self._catalogue: dict[str, MetricSpec] | None = None
        self._generation = 0  # of the catalogue's content; blocks of an older one are stale

    def observe(self, result: PollResult, entry: DeviceState) -> None:
        self._block(entry)

    def render(self) -> bytes:
        lines: dict[str, list[bytes]] = {}
        devices = list(self.state.devices.items())
        for _, entry in devices:
            for name, chunk in self._block(entry).lines.items():
                lines.setdefault(name, []).append(chunk)
        for gone in set(self._blocks) - {device_id for device_id, _ in devices}:
            self._blocks.pop(gone, None)  # removed from the inventory
        f = _Families()
        _add_extra(f, self.state, self._current_catalogue(), self.extra())
        for name, chunk in self._split(f).items():
            lines.setdefault(name, []).append(chunk)
        out = []
        for name, header in list(self._headers.items()):  # after the blocks: all are there
            out.append(header)
            out.extend(lines.get(name, ()))
        return b"".join(out)

    def _block(self, entry: DeviceState) -> _Block:
        catalogue = self._current_catalogue()
        made_of = _made_of(entry, self.state.site_names, self._generation)
        block = self._blocks.get(entry.device.id)
        if block is None or not block.holds(made_of):
            f = _Families()
            _add_device(f, entry, catalogue, self.state.site_names)
            block = self._blocks[entry.device.id] = _Block(made_of, self._split(f))
        return block

    def _current_catalogue(self) -> dict[str, MetricSpec]:
        catalogue = self.catalogue()
        if catalogue is not self._catalogue:
            changed = catalogue != self._catalogue
            self._catalogue = catalogue
            if changed:  # a reload that changed help texts or families: all rendered again
                self._generation += 1
                self._headers = {}
                self._split(_Families())  # the fixed families first, even when empty
        return catalogue

    def _split(self, families: _Families) -> dict[str, bytes]:
        """Render with prometheus_client, then cut into each family's sample lines; a family
        seen for the first time has its header kept (appended to the page's order)."""
        text = generate_latest(_Once(families.all()))
        out: dict[str, bytes] = {}
        for chunk in text.split(b"# HELP ")[1:]:
            name = chunk[:chunk.index(b" ")].decode()
            help_line, type_line, samples = chunk.split(b"\n", 2)
            if name not in self._headers:
                self._headers[name] = b"# HELP " + help_line + b"\n" + type_line + b"\n"
            if samples:
                out[name] = samples
        return out


class _Once(Collector):
    def __init__(self, families: Iterator[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return self.families


class _Block:
    """One device's rendered lines and the objects they were rendered from."""

    __slots__ = ("lines", "made_of")

    def __init__(self, made_of: tuple, lines: dict[str, bytes]) -> None:
        self.made_of, self.lines = made_of, lines

    def holds(self, made_of: tuple) -> bool:
        return len(made_of) == len(self.made_of) and all(
            a is b or (type(a) in (int, str) and a == b)
            for a, b in zip(made_of, self.made_of, strict=True))


def _made_of(entry: DeviceState, site_names: dict[str, str], generation: int) -> tuple:
    """What a device's lines depend on: compared by identity (the catalogue's generation and
    the site name by value)."""
    return (generation, entry.device, site_names.get(entry.device.site, ""),
            *entry.results.values(), None, *entry.good.values(), None, *entry.events.values())


def _add_device(f: _Families, entry: DeviceState, catalogue: dict[str, MetricSpec],
                site_names: dict[str, str]) -> None:
    device = entry.device
    base = {"device": device.id, "site": device.site, "kind": device.kind}
    f.inventory.add_sample("vigil_device_inventory_info", _inventory_labels(entry, site_names),
                           1)
    results = list(entry.results.values())
    primary = next((entry.results[c] for c in PRIMARY if c in entry.results), None)
    if primary is not None:
        f.up.add_sample("vigil_device_up", base, 1.0 if primary.up else 0.0)
    info: dict[str, dict[str, str]] = {}
    for result in results:
        labels = {**base, "collector": result.collector}
        f.collector_up.add_sample("vigil_collector_up", labels, 1.0 if result.up else 0.0)
        f.duration.add_sample("vigil_device_poll_duration_seconds", labels, result.duration)
        f.problems.add_sample("vigil_device_poll_problems", labels, len(result.problems))
        good = entry.good.get(result.collector)
        if good is not None:
            f.success.add_sample("vigil_device_last_success_timestamp_seconds", labels,
                                 good.timestamp)
        if not result.up:
            f.reason.add_sample("vigil_device_down_reason",
                                {**labels, "reason": result.reason or "error"}, 1)
        # a failed poll keeps only what it measured itself (e.g. an RTSP stream that was set
        # up but sent no frame: its DESCRIBE and video_signal_lost), never values of an
        # earlier poll
        for reading in result.readings:
            spec = catalogue.get(reading.metric)
            if spec is None:  # 'up' and anything exported above
                continue
            if spec.name == "device_info":  # one identity, whoever told it
                merged = info.setdefault(spec.name, {})
                for key, value in reading.labels.items():
                    if value or key not in merged:
                        merged[key] = value
                continue
            f.add(spec, {**base, **reading.labels}, reading.value)
    for name, labels in info.items():
        f.add(catalogue[name], {**base, **labels}, 1.0)
    for event in list(entry.events.values()):
        labels = {**base, **event.reading.labels}
        f.event.add_sample("vigil_event", labels, event.reading.value)
        f.events.add_sample("vigil_events_total", labels, event.count)
        f.event_time.add_sample("vigil_event_last_timestamp_seconds", labels,
                                event.reading.timestamp)


def _add_extra(f: _Families, state: State, catalogue: dict[str, MetricSpec],
               readings: list[Reading]) -> None:
    for reading in readings:
        entry = state.devices.get(reading.device)
        spec = catalogue.get(reading.metric)
        if entry is not None and spec is not None:
            device = entry.device
            f.add(spec, {"device": device.id, "site": device.site, "kind": device.kind,
                         **reading.labels}, reading.value)


def _inventory_labels(entry: DeviceState, site_names: dict[str, str]) -> dict[str, str]:
    device = entry.device
    labels = {"device": device.id, "site": device.site, "kind": device.kind,
              "site_name": site_names.get(device.site, ""),
              "name": device.name, "address": device.address,
              "profile": _profile(entry),
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
        self.polls = Counter("vigil_polls", "Device polls done.", ["kind", "collector"],
                             registry=registry)
        self.failures = Counter("vigil_poll_failures", "Device polls that failed, by reason.",
                                ["kind", "collector", "reason"], registry=registry)
        self.skipped = Counter("vigil_polls_skipped", "Polls not started because the device's "
                                                      "previous poll was still running.",
                               registry=registry)
        self.missed = Counter("vigil_polls_missed", "Polls not run at all: the agent was busy "
                                                    "past their time and misfire grace.",
                              registry=registry)
        self.clock_jumps = Counter("vigil_clock_jumps", "Wall-clock jumps of 5 s or more seen "
                                                        "against the monotonic clock.",
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


class TrapCounters(Collector):
    """The trap receiver's counters, read at scrape time."""

    def __init__(self, counters: Callable[[], dict[str, int]]):
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "vigil_snmp_traps", "SNMP trap datagrams by outcome: received, delivered, "
                                "unknown_source, undecodable, rejected, unmapped, "
                                "rate_limited.",
            labels=["outcome"])
        for outcome, count in self.counters().items():
            if outcome != "engine_ids_learnt":
                family.add_metric([outcome], count)
        yield family
