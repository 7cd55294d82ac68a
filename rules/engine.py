"""The rules engine: each cycle, every rule on every device it selects, faults updated.

One cycle: (1) a view of each device's fresh readings (rebuilt only when its poll results
changed; counters turned into rates there), (2) every rule on every selected device and
series, results reused while a rule's inputs are unchanged (CEL is pure), (3) each result
moves its fault: pending -> firing after `for`, resolved when false (after `keep_firing_for`,
or when `clear` holds), nothing on "no data", one flapping fault for a bouncing device,
(4) topology: symptom faults behind a root fault are caused by it, (5) silences and
inhibition. Time is an argument, never read here, so tests and `vigil test rules` drive it.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.inventory import Inventory
from agent.settings import Rules as RulesSettings
from agent.state import DeviceState, State
from collectors.reading import PollResult
from rules.annotate import render
from rules.expr import COLLECTORS, Expression
from rules.faults import Fault, ResolvedFaults, fault_from_dict, fault_key
from rules.load import CompiledRule, RuleSet
from rules.silences import Silence, matches_all, silence_from_dict
from rules.topology import Topology

log = logging.getLogger("vigil.rules")

PRIMARY = ("snmp", "onvif", "rtsp", "reach")  # as the exporter's vigil_device_up
NO_DATA = None
MEMO_LIMIT = 4096
"""Results kept per expression, keyed by its inputs (devices in the same state share one).
Inputs that change every poll (uptime, counters) make a new key each time: the memo is
emptied when full. At 65,536 the soak's 5,000 devices grew the agent by ~100 MiB before the
first emptying; status-like inputs need far fewer."""
UPSTREAM_WAIT = 120.0
"""A symptom fault waits at most this long past its `for:` for the devices it depends on to
be polled since it began, so a dead switch found a poll later still takes its cameras."""


@dataclass(slots=True)
class Sample:
    labels: dict[str, str]
    value: Any  # float, or a dict of labels for info metrics
    ts: float
    rate: float | None = None
    increase: float | None = None


@dataclass
class View:
    """One device's fresh readings, as expressions read them."""

    key: tuple
    metrics: dict[str, list[Sample]]
    index: dict[str, tuple[tuple[str, ...], dict[tuple, Sample]]]
    up: float | None
    collector_up: dict[str, float]
    reasons: dict[str, str]
    failures: dict[str, float]
    events: dict[str, float]
    device: dict[str, str]
    results: dict[str, PollResult]
    source: tuple  # identity of every result (fresh or not), event and the device
    until: float  # when the first fresh result goes stale
    changed: set[str] | None = None  # inputs that changed value since the previous view

    def sample(self, metric: str, unit: dict[str, str]) -> Sample | None:
        samples = self.metrics.get(metric)
        if not samples:
            return None
        if not unit or (len(samples) == 1 and not samples[0].labels):
            return samples[0]
        found = self.index.get(metric)
        if found is None:  # built on first use: most metrics are never matched by series
            keys = tuple(sorted(samples[0].labels))
            found = self.index[metric] = (keys, {tuple([s.labels.get(k, "") for k in keys]): s
                                                 for s in samples})
        keys, index = found
        if all(k in unit for k in keys):
            return index.get(tuple([unit[k] for k in keys]))
        for s in samples:  # partial overlap: shared labels must agree
            if all(unit.get(k, v) == v for k, v in s.labels.items()):
                return s
        return None


@dataclass
class _Instance:
    """What the engine remembers about one (rule, subject, series) between cycles."""

    last: bool | None = None
    changes: deque = field(default_factory=deque)
    fault: Fault | None = None
    below_since: float | None = None  # false since (for keep_firing_for)


@dataclass
class CycleStats:
    seconds: float = 0.0
    evaluations: int = 0
    reused: int = 0
    no_data: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


class Engine:
    def __init__(self, rules: RuleSet, settings: RulesSettings):
        self.rules = rules
        self.settings = settings
        self.topology = Topology({})
        self.inventory: Inventory | None = None
        self.selected: dict[str, list[str]] = {}
        self.instances: dict[tuple, _Instance] = {}
        self.active: dict[str, Fault] = {}
        self.history = ResolvedFaults(settings.history)
        self.silences: dict[str, Silence] = {}
        self.views: dict[str, View] = {}
        self.counters: dict[tuple, tuple[float, float, float, float]] = {}
        self.memo: dict[int, dict[tuple, Any]] = {}
        self.changed: list[Fault] = []  # faults whose public status changed this cycle
        self.resolved_json: list[bytes] = []   # the faults resolved this cycle, as JSON
        self.dirty = False  # something to save
        self.stats = CycleStats()
        self._rate_metrics = self._counter_refs()
        self._error_logged: set[str] = set()
        self._clock = 0.0
        self._group_members: dict[str, list[str]] = {}  # aggregate fault -> matched devices
        self._last: dict[str, tuple] = {}  # device -> (view, entries, no-data counts, hot)
        self._no_data: dict[str, int] = {}  # rule -> devices (series) without data, all told
        self._members: dict[tuple[str, str], tuple] = {}  # (rule, device) -> (view, outcome)
        self.by_device: dict[str, list[CompiledRule]] = {}
        self._timed = False

    # -- configuration -------------------------------------------------------------------

    def adopt(self, rules: RuleSet, settings: RulesSettings, now: float) -> None:
        """New rule files: faults of rules that stay keep their state; the others resolve."""
        names = {r.name for r in rules.rules}
        for _key, fault in list(self.active.items()):
            if fault.rule not in names:
                self._resolve(fault, now, "rule removed")
        self.instances = {k: v for k, v in self.instances.items() if k[0] in names}
        self.rules, self.settings = rules, settings
        self.history.resize(settings.history)
        self.memo.clear()
        self._last.clear()
        self._no_data.clear()
        self._members.clear()
        self.views.clear()  # they hold only the metrics the old rules read
        self._rate_metrics = self._counter_refs()
        if self.inventory is not None:
            self.sync(self.inventory, now)

    def sync(self, inventory: Inventory, now: float) -> None:
        """Follow the inventory: topology, which devices each rule selects, removed devices."""
        self.inventory = inventory
        self.topology = Topology(inventory.devices)
        enabled = [d for d in inventory.subjects.values() if d.enabled]
        self.selected = {r.name: [d.id for d in enabled if r.selects(d)]
                         for r in self.rules.rules}
        self.by_device = {}
        for rule in self.rules.rules:
            if rule.member is None:
                for device_id in self.selected[rule.name]:
                    self.by_device.setdefault(device_id, []).append(rule)
        self._timed = any(r.timed for r in self.rules.rules if r.member is None)
        for fault in list(self.active.values()):
            if fault.device and fault.device not in inventory.subjects:
                self._resolve(fault, now, "device removed from the inventory")
        self.views = {k: v for k, v in self.views.items() if k in inventory.subjects}
        self.counters = {k: v for k, v in self.counters.items() if k[0] in inventory.subjects}
        self._last.clear()
        self._no_data.clear()
        self._members.clear()

    def _counter_refs(self) -> set[str]:
        self._wanted = {ref.metric for r in self.rules.rules for e in _exprs(r)
                        for ref in e.refs if ref.metric and ref.how != "event"}
        return {ref.metric for r in self.rules.rules for e in _exprs(r) for ref in e.refs
                if ref.how in ("rate", "increase")}

    # -- one cycle -----------------------------------------------------------------------

    def evaluate(self, state: State, now: float,
                 interval: Callable[[str, str], float | None]) -> CycleStats:
        """Run every rule once at time `now`. `interval(device, collector)` gives the poll
        interval, for staleness.

        A rule is only run again on a device whose readings changed (a new View); otherwise
        its previous results stand and only the faults they hold move on in time. The cyclic
        garbage collector is paused meanwhile: a cycle makes many short-lived acyclic objects
        and collecting them mid-cycle cost a quarter of its time."""
        started = time.process_time()
        self.changed = []
        self.resolved_json = []
        self._clock = now
        self.stats = CycleStats()
        views: dict[str, View | None] = {}
        collecting = gc.isenabled()
        gc.disable()
        try:
            def view(device_id: str) -> View | None:
                if device_id not in views:
                    entry = state.devices.get(device_id)
                    views[device_id] = None if entry is None else self._view(entry, now,
                                                                             interval)
                return views[device_id]

            judged: set[str] = set()  # devices whose rules ran again this cycle
            totals = self._no_data
            instances = self.instances
            for device_id, rules in self.by_device.items():
                v = view(device_id)
                if v is None:
                    continue
                known = self._last.get(device_id)
                if known is None or known[0] is not v or self._timed:
                    entries, no_data = self._judge(rules, device_id, v, known)
                    if known is not None:
                        for rule_name, count in known[2].items():
                            totals[rule_name] -= count
                    for rule_name, count in no_data.items():
                        totals[rule_name] = totals.get(rule_name, 0) + count
                    # only these can move a fault; the rest are false with no fault to end
                    hot = [e for e in entries if e[3] is True or e[1] in instances]
                    known = self._last[device_id] = (v, entries, no_data, hot)
                    judged.add(device_id)
                for rule, ikey, unit, result, inputs in known[3]:
                    self._step(rule, ikey, device_id, v, unit, result, inputs, now, state)
            self.stats.no_data = {k: n for k, n in totals.items() if n}
            for rule in self.rules.rules:
                if rule.member is not None:
                    self._aggregate(rule, view, now)
            self._expire_unseen(judged, now)
            self._topology(now, state)
            self._suppress(now)
        finally:
            if collecting:
                gc.enable()
        self.stats.seconds = time.process_time() - started
        if self.changed:
            self.dirty = True
        return self.stats

    def _judge(self, rules: list[CompiledRule], device_id: str, v: View,
               before: tuple | None) -> tuple[list[tuple], dict[str, int]]:
        """Every (non-aggregate) rule on each series of the device: (rule, instance key,
        series, result, inputs) entries, and how many had no data per rule. A rule none of
        whose inputs changed value since the device's previous view keeps its entries."""
        out: list[tuple] = []
        no_data: dict[str, int] = {}
        old: dict[str, list[tuple]] = {}
        if before is not None and v.changed is not None:
            for entry in before[1]:
                old.setdefault(entry[0].name, []).append(entry)
        for rule in rules:
            kept = old.get(rule.name)
            if kept is not None and rule.steady and not (rule.inputs & v.changed):
                entries = kept
            else:
                entries = []
                for unit in self._units(rule.expr, v):
                    result, inputs = self._run(rule, rule.expr, v, unit, {})
                    entries.append((rule, (rule.name, device_id,
                                           tuple(sorted(unit.items())) if unit else ()),
                                    unit, result, inputs))
            for entry in entries:
                if entry[3] is NO_DATA:
                    no_data[rule.name] = no_data.get(rule.name, 0) + 1
            out.extend(entries)
        return out, no_data

    def clock_jumped(self, jump: float) -> None:
        """The wall clock stepped by `jump` s: what is being timed (`for:`, `keep_firing_for`,
        no data, the previous sample of a rate) moves with it, so durations count elapsed
        time; firing times already recorded stay as they were."""
        for fault in self.active.values():
            if fault.state == "pending":
                fault.pending_since += jump
            if fault.no_data_since is not None:
                fault.no_data_since += jump
        for inst in self.instances.values():
            if inst.below_since is not None:
                inst.below_since += jump
        self.counters = {key: (pv, pts + jump if pts else pts, v, ts + jump)
                         for key, (pv, pts, v, ts) in self.counters.items()}
        self._clock += jump
        self.views.clear()      # their freshness limits were in the old time

    # -- device views --------------------------------------------------------------------

    def _view(self, entry: DeviceState, now: float,
              interval: Callable[[str, str], float | None]) -> View:
        device = entry.device
        known = self.views.get(device.id)
        source = (tuple(map(id, entry.results.values())), tuple(map(id, entry.events.values())),
                  id(device))
        if known is not None and known.source == source and now < known.until:
            return known  # the same results, none gone stale since
        fresh: dict[str, PollResult] = {}
        until = float("inf")
        for collector, result in entry.results.items():
            limit = result.timestamp + (interval(device.id, collector) or 60.0) \
                * self.settings.stale_after
            if now <= limit:
                fresh[collector] = result
                until = min(until, limit)
        key = (tuple((c, id(r)) for c, r in fresh.items()),
               tuple(id(e) for e in entry.events.values()), id(device))
        if known is not None and known.key == key:
            known.source, known.until = source, until
            return known
        metrics: dict[str, list[Sample]] = {}
        info: dict[str, dict[str, str]] = {}
        wanted, rated = self._wanted, self._rate_metrics
        for result in fresh.values():
            for reading in result.readings:
                name = reading.metric
                if name not in wanted:  # no rule reads it
                    continue
                if name.endswith("_info"):
                    merged = info.setdefault(name, {})
                    for k, v in reading.labels.items():
                        if v or k not in merged:
                            merged[k] = v
                    continue
                sample = Sample(reading.labels, reading.value, reading.timestamp)
                if name in rated:
                    self._rate(device.id, name, sample)
                found = metrics.get(name)
                if found is None:
                    metrics[name] = [sample]
                else:
                    found.append(sample)
        for name, labels in info.items():
            metrics[name] = [Sample({}, labels, now)]
        index: dict[str, tuple[tuple[str, ...], dict[tuple, Sample]]] = {}
        primary = next((fresh[c] for c in PRIMARY if c in fresh), None)
        events: dict[str, float] = {}
        for ev in entry.events.values():
            name = ev.reading.labels.get("event", "")
            events[name] = max(events.get(name, 0.0), ev.reading.value)
        v = View(key, metrics, index,
                 None if primary is None else (1.0 if primary.up else 0.0),
                 {c: 1.0 if r.up else 0.0 for c, r in fresh.items()},
                 {c: "" if r.up else (r.reason or "error") for c, r in fresh.items()},
                 {c: float(entry.failures.get(c, 0)) for c in fresh},
                 events,
                 {"id": device.id, "kind": device.kind, "site": device.site,
                  "name": device.name, "address": device.address, **device.labels},
                 fresh, source, until)
        if known is not None:
            v.changed = _changes(known, v)
        self.views[device.id] = v
        return v

    def _rate(self, device: str, metric: str, sample: Sample) -> None:
        """Rate and increase since the previous sample; none on the first, none after a
        counter reset (a reboot must never read as a negative rate or a false fault)."""
        ckey = (device, metric, tuple(sorted(sample.labels.items())))
        known = self.counters.get(ckey)
        if known is not None and known[3] == sample.ts:
            prev_v, prev_ts = known[0], known[1]
        elif known is not None:
            prev_v, prev_ts = known[2], known[3]
            self.counters[ckey] = (prev_v, prev_ts, sample.value, sample.ts)
        else:
            self.counters[ckey] = (float("nan"), 0.0, sample.value, sample.ts)
            return
        if prev_ts and sample.ts > prev_ts and sample.value >= prev_v:
            sample.increase = sample.value - prev_v
            sample.rate = sample.increase / (sample.ts - prev_ts)

    # -- evaluation ----------------------------------------------------------------------

    def _units(self, expr: Expression, v: View) -> list[dict[str, str]]:
        """The series to evaluate on: those of the most-labelled metric the expression reads
        (one evaluation for device-level readings)."""
        best: list[Sample] | None = None
        for ref in expr.refs:
            if not ref.metric or ref.how == "event":
                continue
            samples = v.metrics.get(ref.metric)
            if samples and samples[0].labels and not isinstance(samples[0].value, dict) \
                    and (best is None or len(samples[0].labels) > len(best[0].labels)):
                best = samples
        return [s.labels for s in best] if best else [{}]

    def _run(self, rule: CompiledRule, expr: Expression, v: View, unit: dict[str, str],
             extra: dict[str, Any]) -> tuple[bool | None, dict[str, Any]]:
        """(True/False, or None for no data; the inputs it saw)."""
        variables: dict[str, Any] = {}
        absent = expr.absent
        metrics = v.metrics
        for ref in expr.refs:
            how = ref.how
            if how == "value":
                if unit:
                    s = v.sample(ref.metric, unit)
                else:  # a device-level evaluation: the first (only) sample
                    found = metrics.get(ref.metric)
                    s = found[0] if found else None
                if s is None:
                    if ref.metric not in absent:
                        return NO_DATA, variables
                    variables[ref.var] = None
                else:
                    variables[ref.var] = s.value
            elif how in ("rate", "increase"):
                s = v.sample(ref.metric, unit)
                value = None if s is None else (s.rate if how == "rate" else s.increase)
                if value is None:
                    return NO_DATA, variables
                variables[ref.var] = value
            elif how == "absent":
                variables[ref.var] = v.sample(ref.metric, unit) is None
            elif how == "age":
                s = v.sample(ref.metric, unit)
                if s is None:
                    return NO_DATA, variables
                variables[ref.var] = max(0.0, self._clock - s.ts)
            elif how == "event":
                variables[ref.var] = v.events.get(ref.metric, 0.0)
            elif how == "const":
                variables[ref.var] = rule.consts[ref.var]
            else:
                value = self._builtin(ref.var, v, unit, extra)
                if value is None:
                    return NO_DATA, variables
                variables[ref.var] = value
        self.stats.evaluations += 1
        memo = self.memo.get(id(expr))
        if memo is None:
            memo = self.memo[id(expr)] = {}
        consts = rule.consts
        memo_key: tuple | None = tuple([value if type(value) is float else
                                        _hashable(value, consts)
                                        for value in variables.values()])
        try:
            if memo_key in memo:
                self.stats.reused += 1
                return memo[memo_key], variables
        except TypeError:  # a value no key can stand for: run it
            memo_key = None
        try:
            result = expr.run(variables)
        except KeyError:  # a label this device did not send
            result = NO_DATA
        except Exception as exc:  # noqa: BLE001 - a rule error must not stop the others
            self.stats.errors[rule.name] = self.stats.errors.get(rule.name, 0) + 1
            if rule.name not in self._error_logged:
                self._error_logged.add(rule.name)
                log.error("rule %s on %s: %s", rule.name, v.device["id"], exc)
            return NO_DATA, variables
        if not isinstance(result, bool):
            result = NO_DATA
        if memo_key is not None:
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            memo[memo_key] = result
        return result, variables

    def _builtin(self, name: str, v: View, unit: dict[str, str], extra: dict[str, Any]) -> Any:
        if name in extra:
            return extra[name]
        if name == "up":
            return v.up
        if name == "series":
            return unit
        if name == "device":
            return v.device
        if name in ("port_devices", "port_switches"):
            children = self.topology.port_devices(v.device["id"], unit)
            if name == "port_switches":
                children = [c for c in children if self.topology.kinds.get(c) == "switch"]
            return float(len(children))
        collector, _, what = name.partition("_")
        if collector in COLLECTORS:
            if what == "up":
                return v.collector_up.get(collector)
            if what == "reason":
                return v.reasons.get(collector)
            if what == "failures":
                return v.failures.get(collector)
        return None

    def _level(self, rule: CompiledRule, v: View | None, unit: dict[str, str],
               extra: dict[str, Any]) -> int:
        for when, level in rule.levels:
            if v is None:
                result = _run_plain(when, {**rule.consts, **extra})
            else:
                result, _ = self._run(rule, when, v, unit, extra)
            if result is True:
                return level
        return rule.rule.level

    # -- aggregates ----------------------------------------------------------------------

    def _aggregate(self, rule: CompiledRule, view: Callable[[str], View | None], now: float
                   ) -> None:
        assert rule.member is not None and rule.rule.aggregate is not None
        by = rule.rule.aggregate.by
        groups: dict[str, list[tuple[str, bool | None]]] = {}
        for device_id in self.selected.get(rule.name, ()):
            v = view(device_id)
            if v is None:
                continue
            group = v.device.get("site" if by == "site" else by)
            if not group:
                continue
            pair = (rule.name, device_id)
            known = self._members.get(pair)
            if known is not None and known[0] is not v and rule.steady \
                    and v.changed is not None and not (rule.inputs & v.changed):
                known = self._members[pair] = (v, known[1])  # its inputs did not change
            if known is None or known[0] is not v or rule.timed:
                outcome: bool | None = NO_DATA
                for unit in self._units(rule.member, v):
                    result, _ = self._run(rule, rule.member, v, unit, {})
                    if result is True:
                        outcome = True
                        break
                    if result is False:
                        outcome = False
                known = self._members[pair] = (v, outcome)
            groups.setdefault(group, []).append((device_id, known[1]))
        for group, members in groups.items():
            if len(members) < rule.rule.aggregate.min_members:
                continue
            matched = [d for d, o in members if o is True]
            no_data = sum(1 for _, o in members if o is None)
            extra = {"total": float(len(members)), "matched": float(len(matched)),
                     "no_data": float(no_data), "ratio": len(matched) / len(members),
                     "group": group}
            result = _run_plain(rule.expr, {**rule.consts, **extra})
            if no_data:  # could the members without data change the verdict? then no data
                worst = {**extra, "matched": float(len(matched) + no_data),
                         "ratio": (len(matched) + no_data) / len(members)}
                if _run_plain(rule.expr, {**rule.consts, **worst}) != result:
                    result = NO_DATA
            self.stats.evaluations += 1
            ikey = (rule.name, group, ())
            inputs = {**extra, "members": matched}
            self._step(rule, ikey, "", None, {}, result, inputs, now, None, group=group)
            if result:
                self._group_members[fault_key(rule.name, group, {})] = matched

    # -- fault life ----------------------------------------------------------------------

    def _step(self, rule: CompiledRule, ikey: tuple, device_id: str, v: View | None,
              unit: dict[str, str], result: bool | None, inputs: dict[str, Any], now: float,
              state: State | None, group: str = "") -> None:
        inst = self.instances.get(ikey)
        if result is NO_DATA:
            if inst is not None and inst.fault is not None \
                    and inst.fault.no_data_since is None:
                inst.fault.no_data_since = now
                inst.fault.event(now, "no_data")
            return
        if inst is None:
            if not result:
                return
            inst = self.instances[ikey] = _Instance()
        if inst.last is not None and inst.last != result:
            inst.changes.append(now)
        inst.last = result
        window = self.settings.flap_window
        while inst.changes and inst.changes[0] < now - window:
            inst.changes.popleft()
        flapping = len(inst.changes) >= self.settings.flap_threshold
        fault = inst.fault
        if fault is not None and fault.no_data_since is not None:
            fault.no_data_since = None
            fault.event(now, "data_back")
        r = rule.rule
        if result:
            inst.below_since = None
            if fault is None or fault.state == "resolved":
                fault = inst.fault = self._open(rule, ikey, device_id, v, unit, inputs, now,
                                                group)
            fault.last_seen = now
            fault.value = _first_number(inputs)
            level = self._level(rule, v, unit, inputs if v is None else {})
            if level < fault.level:
                fault.event(now, "level", old=fault.level, new=level)
                fault.level = level
                self._render(rule, fault, v, inputs)
                self.changed.append(fault)
            due = flapping or now - fault.pending_since >= (r.for_ or 0.0)
            if fault.state == "pending" and due and (
                    flapping or self._upstream_ready(rule, fault, now, state)):
                self._fire(rule, fault, v, inputs, now)
        else:
            if fault is None:
                if not flapping:
                    self._forget(ikey, inst)
                return
            if fault.state == "pending":
                if flapping:
                    self._fire(rule, fault, v, inputs, now)
                else:
                    inst.fault = None
                    self.active.pop(fault.key, None)
                    self._forget(ikey, inst)
                return
            if inst.below_since is None:
                inst.below_since = now
            if flapping:
                return
            if rule.clear is not None and v is not None:
                cleared, _ = self._run(rule, rule.clear, v, unit, {})
                if cleared is not True:
                    return
            if r.keep_firing_for and now - inst.below_since < r.keep_firing_for:
                return
            self._resolve(fault, now, "flapping over" if fault.flapping else "recovered")
            inst.fault = None
            self._forget(ikey, inst)
            return
        if fault is not None and flapping and not fault.flapping:
            fault.flapping = True
            fault.event(now, "flapping", changes=len(inst.changes))
            self.changed.append(fault)
        elif fault is not None and fault.flapping and not flapping:
            fault.flapping = False
            fault.event(now, "calm")

    def _forget(self, ikey: tuple, inst: _Instance) -> None:
        if not inst.changes and inst.fault is None:
            self.instances.pop(ikey, None)

    def _open(self, rule: CompiledRule, ikey: tuple, device_id: str, v: View | None,
              unit: dict[str, str], inputs: dict[str, Any], now: float, group: str) -> Fault:
        subject = device_id or group
        device = self.inventory.subjects.get(device_id) if self.inventory else None
        site = device.site if device else (group if rule.rule.aggregate and
                                           rule.rule.aggregate.by == "site" else "")
        fault = Fault(key=fault_key(rule.name, subject, unit), rule=rule.name, group=rule.group,
                      subject=subject, device=device_id, site=site,
                      kind=device.kind if device else "", series=dict(unit),
                      labels=dict(rule.rule.labels), level=rule.rule.level, state="pending",
                      pending_since=now, last_seen=now, value=_first_number(inputs))
        fault.level = self._level(rule, v, unit, inputs if v is None else {})
        fault.event(now, "pending", level=fault.level)
        self.active[fault.key] = fault
        self._render(rule, fault, v, inputs)
        self.changed.append(fault)
        return fault

    def _fire(self, rule: CompiledRule, fault: Fault, v: View | None, inputs: dict[str, Any],
              now: float) -> None:
        fault.state = "firing"
        fault.fired_at = now
        fault.evidence = self._scene(v, inputs, now)
        self._render(rule, fault, v, inputs)
        fault.event(now, "firing", level=fault.level, value=fault.value)
        self.changed.append(fault)

    def _resolve(self, fault: Fault, now: float, why: str) -> None:
        fault.state = "resolved"
        fault.resolved_at = now
        fault.event(now, "resolved", why=why)
        self.active.pop(fault.key, None)
        self._group_members.pop(fault.key, None)
        if fault.fired_at is not None:
            self.resolved_json.append(self.history.add(fault))
        self.changed.append(fault)

    def _expire_unseen(self, judged: set[str], now: float) -> None:
        """Faults whose series vanished from a device that was judged again (a port
        removed); instances that only kept a flapping history that has run out."""
        for ikey, inst in list(self.instances.items()):
            fault = inst.fault
            if fault is None:
                if not inst.changes or inst.changes[-1] < now - self.settings.flap_window:
                    del self.instances[ikey]
                continue
            if not ikey[2] or ikey[1] not in judged or any(
                    entry[1] == ikey for entry in self._last[ikey[1]][1]):
                continue
            view = self.views.get(fault.device)
            rule = self.rules.get(fault.rule)
            if view is not None and rule is not None and any(
                    view.metrics.get(m) for m in rule.expr.metrics):
                self._resolve(fault, now, "series gone")  # the device reports others
                del self.instances[ikey]

    def _upstream_ready(self, rule: CompiledRule, fault: Fault, now: float,
                        state: State | None) -> bool:
        """A symptom fires only once every device it depends on has been polled since the
        symptom began (or after UPSTREAM_WAIT): the root, if any, is known by then."""
        if not rule.rule.topology.symptom or not fault.device or state is None \
                or fault.caused_by:
            return True
        if now - fault.pending_since >= (rule.rule.for_ or 0.0) + UPSTREAM_WAIT:
            return True
        for parent in self.topology.ancestors(fault.device):
            entry = state.devices.get(parent)
            if entry is None or not entry.results:
                continue
            latest = max(entry.results.values(), key=lambda r: r.timestamp)
            if latest.up and latest.timestamp < fault.pending_since:
                return False  # seen well only before this began: wait for its next poll
        return True

    def _scene(self, v: View | None, inputs: dict[str, Any], now: float) -> dict[str, Any]:
        """The scene record: what the rule saw, each collector's state, every reading."""
        scene: dict[str, Any] = {"at": now, "inputs": _plain(inputs)}
        if v is not None:
            scene["collectors"] = {c: {"up": r.up, "reason": r.reason, "detail": r.detail,
                                       "at": r.timestamp} for c, r in v.results.items()}
            scene["readings"] = [
                [r.metric, r.labels, r.value] for res in v.results.values()
                for r in res.readings[:400]]
        return scene

    def _render(self, rule: CompiledRule, fault: Fault, v: View | None,
                inputs: dict[str, Any]) -> None:
        if not rule.templates:
            return
        site_name = ""
        if self.inventory is not None and fault.site in self.inventory.sites:
            site_name = self.inventory.sites[fault.site].name
        context = {"value": fault.value, "values": _plain(inputs), "level": fault.level,
                   "device": v.device if v is not None else {"id": fault.subject},
                   "site": {"id": fault.site, "name": site_name or fault.site},
                   "series": fault.series, "group": fault.subject, **_plain(inputs)}
        fault.texts = render(rule.templates, context)

    # -- topology, silences, inhibition ---------------------------------------------------

    def _topology(self, now: float, state: State) -> None:
        rules = {r.name: r.rule for r in self.rules.rules}
        # a definite root (UPS output off) leads a root that may be a symptom (switch
        # unreachable), then the earlier, then by name
        roots = sorted((f for f in self.active.values()
                        if f.device and rules[f.rule].topology.cuts),
                       key=lambda f: (rules[f.rule].topology.symptom, f.pending_since, f.key))

        def answers(device: str) -> bool:
            v = self.views.get(device)
            return v is not None and v.up == 1.0

        behind = {r.key: self.topology.behind(r.device, rules[r.rule].topology.cuts, r.series,
                                              answers) for r in roots}
        order = {r.key: i for i, r in enumerate(roots)}
        # a root behind another root is that one's symptom, unless they cut each other off
        # (a UPS feeding the switch its card hangs off): then the one first in order leads
        tops = list(roots)
        for r in roots:
            if not rules[r.rule].topology.symptom:
                continue
            for t in tops:
                if t is not r and r.device in behind[t.key] and (
                        t.device not in behind[r.key] or order[t.key] < order[r.key]):
                    tops.remove(r)
                    break
        # device -> the top root that cuts it off; of several, the most upstream (a camera
        # behind a dead port of a switch behind the dead core switch: the core switch)
        top: dict[str, str] = {}
        depth = {t.key: len(self.topology.ancestors(t.device)) for t in tops}
        for t in sorted(tops, key=lambda t: (depth[t.key], order[t.key])):
            for d in behind[t.key]:
                top.setdefault(d, t.key)
        for root in roots:
            root.caused = {}
        for fault in list(self.active.values()):
            rule = rules[fault.rule]
            root_key = None
            if rule.topology.symptom:
                if fault.device:
                    root_key = top.get(fault.device)
                else:
                    members = self._group_members.get(fault.key, [])
                    owners = {top.get(m) for m in members}
                    if members and len(owners) == 1 and None not in owners:
                        root_key = owners.pop()
            if root_key == fault.key:
                root_key = None
            if root_key != fault.caused_by:
                if root_key is None:
                    fault.event(now, "root_resolved", root=fault.caused_by)
                    if fault.state == "firing":  # it must hold its `for:` again on its own
                        fault.state, fault.pending_since, fault.fired_at = "pending", now, None
                else:
                    fault.event(now, "caused_by", root=root_key)
                fault.caused_by = root_key
                self.changed.append(fault)
            if root_key is not None:
                root = self.active[root_key]
                root.caused[fault.key] = {"rule": fault.rule, "device": fault.device,
                                          "level": fault.level, "state": fault.state,
                                          "since": fault.pending_since}
                if fault.state == "firing" and fault.level < root.level:  # its impact
                    root.event(now, "level", old=root.level, new=fault.level, by=fault.key)
                    root.level = fault.level
                    self.changed.append(root)

    def _suppress(self, now: float) -> None:
        live = [s for s in self.silences.values() if s.active(now)]
        labels_of = {key: f.alert_labels() for key, f in self.active.items()}
        for key, fault in self.active.items():
            labels = labels_of[key]
            silence = next((s.id for s in live if matches_all(s.parsed, labels)), None)
            if silence != fault.silenced_by:
                fault.event(now, "silenced" if silence else "unsilenced", silence=silence)
                fault.silenced_by = silence
                self.changed.append(fault)
        # per inhibition rule: the firing sources, by their values of the `equal` labels
        sources: list[tuple[Any, dict[tuple, list[str]]]] = []
        for inh in self.rules.inhibitions:
            index: dict[tuple, list[str]] = {}
            for key, f in self.active.items():
                if f.state == "firing" and not f.caused_by and not f.silenced_by \
                        and matches_all(inh.source, labels_of[key]):
                    index.setdefault(tuple([labels_of[key].get(k, "") for k in inh.equal]),
                                     []).append(key)
            if index:
                sources.append((inh, index))
        for key, fault in self.active.items():
            labels = labels_of[key]
            by = None
            for inh, index in sources:
                if not matches_all(inh.target, labels):
                    continue
                found = index.get(tuple([labels.get(k, "") for k in inh.equal]), ())
                by = next((k for k in found if k != key), None)
                if by:
                    break
            if by != fault.inhibited_by:
                fault.event(now, "inhibited" if by else "uninhibited", by=by)
                fault.inhibited_by = by
                self.changed.append(fault)
        for sid, silence in list(self.silences.items()):
            if silence.ends_at < now - 86400:  # expired a day ago: out of the list
                del self.silences[sid]
                self.dirty = True

    # -- silences and persistence ----------------------------------------------------------

    def add_silence(self, silence: Silence) -> None:
        self.silences[silence.id] = silence
        self.dirty = True

    def expire_silence(self, silence_id: str, now: float) -> bool:
        silence = self.silences.get(silence_id)
        if silence is None:
            return False
        silence.ends_at = min(silence.ends_at, now)
        self.dirty = True
        return True

    def snapshot(self) -> dict[str, Any]:
        """Active faults and silences: what a restart needs (saved after every cycle that
        changed something). Resolved faults are kept apart, appended once each
        (agent/alerting.py, faults-history.jsonl): serialising the whole history every cycle
        cost the soak run's agent a growing share of a core."""
        return {"version": 1,
                "active": [f.to_dict() for f in self.active.values()],
                "silences": [s.to_dict() for s in self.silences.values()]}

    def restore_history(self, raws: list[dict[str, Any]]) -> None:
        """Resolved faults from before a restart, oldest first."""
        bad = 0
        for raw in raws:
            try:
                fault_from_dict(raw)     # the fields a Fault needs, or it is skipped
            except TypeError:
                bad += 1
                continue
            self.history.add_raw(raw)
        if bad:
            log.warning("%d resolved fault(s) in the saved history lack fields: skipped", bad)

    def restore(self, data: dict[str, Any]) -> None:
        """Faults and silences from before a restart: a firing fault goes on firing (same key,
        same start), it is not opened a second time."""
        names = {r.name for r in self.rules.rules}
        for raw in data.get("active", []):
            fault = fault_from_dict(raw)
            if fault.rule not in names:
                continue
            self.active[fault.key] = fault
            series = tuple(sorted(fault.series.items()))
            self.instances[(fault.rule, fault.subject, series)] = _Instance(last=True,
                                                                            fault=fault)
        for raw in data.get("silences", []):
            silence = silence_from_dict(raw)
            self.silences[silence.id] = silence


def _exprs(rule: CompiledRule) -> list[Expression]:
    out = [rule.expr, *(w for w, _ in rule.levels)]
    if rule.clear is not None:
        out.append(rule.clear)
    if rule.member is not None:
        out.append(rule.member)
    return out


BUILTIN_INPUTS = ("up", "collector_up", "reasons", "failures", "events")


def _changes(old: View, new: View) -> set[str]:
    """What a rule may read that differs between two views of a device: metric names, and
    the builtins by group (`up`, `collector_up`, `reasons`, `failures`, `events`)."""
    out = {name for name in BUILTIN_INPUTS if getattr(old, name) != getattr(new, name)}
    for name in old.metrics.keys() | new.metrics.keys():
        a, b = old.metrics.get(name), new.metrics.get(name)
        if a is None or b is None or len(a) != len(b) or any(
                x.value != y.value or x.labels != y.labels for x, y in zip(a, b, strict=True)):
            out.add(name)
    return out


def _hashable(value: Any, consts: dict[str, Any]) -> Any:
    """A memo key for one input: label maps (info metrics, series, device) by their items,
    group constants by identity (they are fixed for the rule set's life)."""
    if isinstance(value, dict):
        if any(value is c for c in consts.values()):
            return ("const", id(value))
        return tuple(sorted(value.items()))
    if isinstance(value, list):
        return ("const", id(value))
    return value


def _run_plain(expr: Expression, variables: dict[str, Any]) -> bool | None:
    try:
        result = expr.run({r.var: variables[r.var] for r in expr.refs})
    except Exception:  # noqa: BLE001
        return NO_DATA
    return result if isinstance(result, bool) else NO_DATA


def _first_number(inputs: dict[str, Any]) -> float | None:
    for value in inputs.values():
        if isinstance(value, float) and not isinstance(value, bool):
            return value
    return None


def _plain(inputs: dict[str, Any]) -> dict[str, Any]:
    """Inputs as JSON can hold them (rate__x stays rate__x: the engineer wrote rate(x))."""
    return {k: v for k, v in inputs.items() if isinstance(v, (int, float, str, bool, list, dict))
            or v is None}

