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
from prometheus_client.utils import floatToGoString

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


class _Fixed:
    """A family every device page has, whatever the catalogue says."""

    def __init__(self, name: str, documentation: str, kind: str = "gauge") -> None:
        # the sample (and header) name: prometheus_client's munging of counters and infos
        self.sample = name + {"counter": "_total", "info": "_info"}.get(kind, "")
        self.documentation, self.kind = documentation, kind


class _Families:
    """The sample lines of one device (or of a scrape's extra readings), per family, in the
    text format. Written directly, not through prometheus_client Metric objects and
    generate_latest: those cost a quarter of the event loop's time with 5,000 devices polled
    a minute (the soak, docs/reliability.md). The lines are the ones generate_latest writes
    (sorted labels, its escaping, floatToGoString; tests/test_exposition.py compares the
    two); the headers still come from prometheus_client (`_header`)."""

    up = _Fixed("vigil_device_up", "1 if the device answered the latest poll of its "
                                   "management protocol (SNMP, else ONVIF, RTSP, "
                                   "reachability), else 0.")
    collector_up = _Fixed("vigil_collector_up", "1 if the device answered this collector's "
                                                "latest poll.")
    reason = _Fixed("vigil_device_down_reason",
                    "Why a collector's latest poll failed (label reason: timeout, refused, "
                    "unreachable, auth, protocol, no_data, fault, unsupported, no_frames, "
                    "host_down, error).")
    duration = _Fixed("vigil_device_poll_duration_seconds",
                      "Wall time of the collector's latest poll.")
    success = _Fixed("vigil_device_last_success_timestamp_seconds",
                     "Unix time of the collector's latest successful poll.")
    problems = _Fixed("vigil_device_poll_problems", "Values the latest poll could not read "
                                                    "(see `vigil poll DEVICE`).")
    inventory = _Fixed("vigil_device_inventory", "Inventory and topology of each device "
                                                 "(labels), value 1.", "info")
    event = _Fixed("vigil_event", "Latest value of an event the device pushed (SNMP trap, "
                                  "ONVIF event): 1 raised, 0 cleared.")
    events = _Fixed("vigil_events", "Events of this kind received since the agent started.",
                    "counter")
    event_time = _Fixed("vigil_event_last_timestamp_seconds",
                        "Unix time of the latest event of this kind.")
    FIXED = (up, collector_up, reason, duration, success, problems, inventory, event, events,
             event_time)

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}          # sample name -> its lines
        self.kinds: dict[str, tuple[str, str]] = {}    # sample name -> (help, type)

    def fixed(self, family: _Fixed, labels: dict[str, str], value: float) -> None:
        self._line(family.sample, family.documentation, family.kind, labels, value)

    def add(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        kind = spec.type if spec.type in ("counter", "info") else "gauge"
        self._line(PREFIX + spec.name, spec.help, kind, labels, value)

    def _line(self, name: str, documentation: str, kind: str, labels: dict[str, str],
              value: float) -> None:
        lines = self.lines.get(name)
        if lines is None:
            lines = self.lines[name] = []
            self.kinds[name] = (documentation, kind)
        pairs = ",".join(f'{key}="{_escape(text)}"' for key, text in sorted(labels.items()))
        lines.append(f"{name}{{{pairs}}} {floatToGoString(value)}\n" if pairs
                     else f"{name} {floatToGoString(value)}\n")


def _escape(value: str) -> str:
    """A label value escaped as generate_latest does it."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _header(name: str, documentation: str, kind: str) -> bytes:
    """HELP and TYPE lines of the family whose samples are called `name`, written by
    prometheus_client itself (its escaping of help texts, its naming of types)."""
    family = name.removesuffix({"counter": "_total", "info": "_info"}.get(kind, "\0"))
    return generate_latest(_Once(iter([Metric(family, documentation, kind)])))


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
                self._headers = {family.sample: _header(family.sample, family.documentation,
                                                        family.kind)
                                 for family in _Families.FIXED}  # first, even when empty
        return catalogue

    def _split(self, families: _Families) -> dict[str, bytes]:
        """Each family's sample lines; a family seen for the first time has its header kept
        (appended to the page's order)."""
        out: dict[str, bytes] = {}
        for name, lines in families.lines.items():
            if name not in self._headers:
                self._headers[name] = _header(name, *families.kinds[name])
            out[name] = "".join(lines).encode()
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
    f.fixed(f.inventory, _inventory_labels(entry, site_names), 1)
    results = list(entry.results.values())
    primary = next((entry.results[c] for c in PRIMARY if c in entry.results), None)
    if primary is not None:
        f.fixed(f.up, base, 1.0 if primary.up else 0.0)
    info: dict[str, dict[str, str]] = {}
    for result in results:
        labels = {**base, "collector": result.collector}
        f.fixed(f.collector_up, labels, 1.0 if result.up else 0.0)
        f.fixed(f.duration, labels, result.duration)
        f.fixed(f.problems, labels, len(result.problems))
        good = entry.good.get(result.collector)
        if good is not None:
            f.fixed(f.success, labels,
                                 good.timestamp)
        if not result.up:
            f.fixed(f.reason, {**labels, "reason": result.reason or "error"}, 1)
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
        f.fixed(f.event, labels, event.reading.value)
        f.fixed(f.events, labels, event.count)
        f.fixed(f.event_time, labels,
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
                                                       "its start (queueing for a poll slot), "
                                                       "per collector.", ["collector"],
                             buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                             registry=registry)
        self.in_flight = Gauge("vigil_polls_in_flight", "Polls running now.", registry=registry)
        self.trimmed = Counter("vigil_memory_trimmed_bytes", "Resident memory given back to "
                                                            "the system by returning the C "
                                                            "allocator's free pages "
                                                            "(memory_trim_interval).",
                               registry=registry)
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
