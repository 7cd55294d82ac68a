"""`vigil test rules FILE...`: rule unit tests in YAML, in the manner of `promtool test rules`.

A test file names rule files, a small inventory (sites and devices with their topology), and
tests: input series per device and metric over time (promtool's notation: `0 0 1x10`, `_`
for no poll, `stale`), and the faults expected of a rule at given times. The real engine
runs on a simulated clock: each series step is one poll of every device, and rules are
evaluated every `evaluation_interval`, so hours of a fault's life take milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from agent import yamlfile
from agent.earthing import sync_points
from agent.inspection_schedule import Inspections
from agent.inspection_subjects import add_inspection_subjects
from agent.inventory import Inventory, load_inventory
from agent.settings import Duration, Strict
from agent.settings import Rules as RulesSettings
from agent.state import DeviceState, State
from agent.validation import validate
from agent.yamlfile import ConfigErrors, Document
from collectors.reading import PollResult, Reading, event
from rules.engine import Engine
from rules.load import RuleSet, known_from, load_rules
from rules.series import STALE, expand_series
from rules.silences import new_silence

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: series time 0
COLLECTOR_OF = (("onvif_", "onvif"), ("rtsp_", "rtsp"), ("video_", "rtsp"), ("reach_", "reach"),
                ("grounding_", "grounding"),
                ("inspection_", "inspections"))


class InputSeries(Strict):
    device: str = Field(..., description="Device id (from `devices`).")
    metric: str | None = Field(None, description="Metric name; `up` for whether the device "
                                                 "answered the collector's poll.")
    event: str | None = Field(None, description="An event name instead of a metric.")
    labels: dict[str, str] = Field(default_factory=dict, description="Series labels.")
    collector: str | None = Field(None, description="snmp (default), onvif, rtsp or reach; "
                                                    "guessed from the metric name.")
    reason: str = Field("timeout", description="For `up`: why a failed poll failed "
                                               "(timeout, refused, auth, no_frames, ...); a "
                                               "failed poll keeps the other series' readings "
                                               "of its step only for no_frames.")
    values: str = Field(..., description="promtool notation, one value per `interval`.")


class ExpectedFault(Strict):
    device: str | None = Field(None, description="Device id (device rules).")
    group: str | None = Field(None, description="Group value (aggregate rules), e.g. a site.")
    series: dict[str, str] = Field(default_factory=dict, description="Series labels.")
    state: str = Field("firing", description="pending or firing.")
    level: int | None = Field(None, ge=1, le=4, description="Expected level.")
    caused_by: str | None = Field(None, description="Root fault key, e.g. "
                                                    "`SwitchUnreachable:sw-1`.")
    suppressed: str | None = Field(None, description="caused, inhibited or silenced; leave "
                                                     "out to expect an unsuppressed fault.")
    flapping: bool | None = Field(None, description="Expect a flapping fault.")
    caused: int | None = Field(None, description="How many faults a root carries.")


class FaultEval(Strict):
    at: Duration | int = Field(..., description="Time since the start, e.g. `5m`.")
    rule: str = Field(..., description="The rule whose faults are compared.")
    faults: list[ExpectedFault] = Field(default_factory=list, description="Exactly these "
                                                                          "faults (pending and "
                                                                          "firing).")


class TestSilence(Strict):
    matchers: list[str] = Field(..., description="Matchers, e.g. `device=\"cam-1\"`.")
    start: Duration | int = Field(0, description="Start, time since the test's start.")
    end: Duration = Field(..., description="End, time since the test's start.")
    owner: str = Field("test", description="Who does the planned work.")
    reason: str = Field("test", description="What the work is.")


class RuleTest(Strict):
    name: str = Field(..., description="What the test shows.")
    interval: Duration = Field(60.0, description="Series step (one poll of every device).")
    input_series: list[InputSeries] = Field(default_factory=list, description="Inputs.")
    silences: list[TestSilence] = Field(default_factory=list, description="Maintenance "
                                                                          "windows.")
    fault_eval: list[FaultEval] = Field(..., description="Expectations.")


class TestFile(Strict):
    rule_files: list[str] = Field(..., description="Rule files, relative to this file.")
    evaluation_interval: Duration = Field(10.0, description="Rule evaluation interval.")
    flap_window: Duration = Field(1800.0, description="As agent.yaml `rules.flap_window`.")
    flap_threshold: int = Field(6, description="As agent.yaml `rules.flap_threshold`.")
    sites: list[dict[str, Any]] = Field(default_factory=list, description="As in the "
                                                                          "inventory.")
    devices: list[dict[str, Any]] = Field(..., description="As in the inventory (address "
                                                           "optional).")
    earthing_points: list[dict[str, Any]] = Field(
        default_factory=list, description="As in the inventory; input series name them "
                                          "as `device`.")
    inspections: dict[str, Any] | None = Field(
        None, description="As agent.yaml `inspections:`; each scheduled site and kind is a "
                          "subject named `KIND@SITE` (e.g. `monthly@dh`) in input series.")
    tests: list[RuleTest] = Field(..., description="The tests.")


@dataclass
class Outcome:
    name: str
    failures: list[str] = field(default_factory=list)


def run_file(path: Path, catalogue: dict, profiles: Any) -> list[Outcome]:
    """Run every test of one file. ConfigError(s) for a malformed file or rule file."""
    doc = yamlfile.load(path)
    spec = validate(TestFile, doc)
    inventory = _inventory(doc, spec)
    rule_paths = [(path.parent / f) for f in spec.rule_files]
    rules = load_rules(rule_paths, known_from(catalogue, profiles), inventory)
    settings = RulesSettings(interval=spec.evaluation_interval, flap_window=spec.flap_window,
                             flap_threshold=spec.flap_threshold)
    out = []
    for i, test in enumerate(spec.tests):
        out.append(_run_test(doc, i, test, inventory, rules, settings))
    return out


def _inventory(doc: Document, spec: TestFile) -> Inventory:
    devices = []
    for raw in spec.devices:
        filled = {"address": "127.0.0.1", "snmp": False, **raw}
        devices.append(filled)
    sites = spec.sites or [{"id": s} for s in sorted({str(d.get("site")) for d in
                                                       [*devices, *spec.earthing_points]})]
    sub = Document(doc.file, {"sites": sites, "devices": devices,
                              "earthing_points": spec.earthing_points}, doc.lines)
    inventory = load_inventory([sub], None, None)
    if spec.inspections is not None:
        add_inspection_subjects(inventory, validate(Inspections, doc, spec.inspections,
                                                    prefix=("inspections",)))
    return inventory


def _collector(series: InputSeries) -> str:
    if series.collector:
        return series.collector
    for prefix, collector in COLLECTOR_OF:
        if series.metric and series.metric.startswith(prefix):
            return collector
    return "snmp"


def _run_test(doc: Document, index: int, test: RuleTest, inventory: Inventory, rules: RuleSet,
              settings: RulesSettings) -> Outcome:
    outcome = Outcome(test.name)
    at = ("tests", index)
    expanded: list[tuple[InputSeries, list]] = []
    for si, series in enumerate(test.input_series):
        if series.device not in inventory.subjects:
            raise ConfigErrors([doc.error((*at, "input_series", si, "device"),
                                          f"device '{series.device}' is not in `devices`")])
        if (series.metric is None) == (series.event is None):
            raise ConfigErrors([doc.error((*at, "input_series", si),
                                          "give `metric` or `event`")])
        try:
            expanded.append((series, expand_series(series.values)))
        except ValueError as exc:
            raise ConfigErrors([doc.error((*at, "input_series", si, "values"),
                                          str(exc))]) from None
    state = State()
    state.sync(inventory)
    sync_points(state, inventory)
    for key, subject in inventory.subjects.items():  # the scheduled inspections
        state.devices.setdefault(key, DeviceState(subject))
    engine = Engine(rules, settings)
    engine.sync(inventory, EPOCH)
    for silence in test.silences:
        engine.add_silence(new_silence(silence.matchers, EPOCH + silence.end, silence.owner,
                                       silence.reason, EPOCH + float(silence.start), now=EPOCH))
    checks = sorted(test.fault_eval, key=lambda e: float(e.at))
    end = max((float(e.at) for e in checks), default=0.0)
    steps = int(end // test.interval) + 1
    evals = int(end // settings.interval) + 1
    step_done = -1
    for k in range(evals + 1):
        t = k * settings.interval
        while step_done + 1 < steps and (step_done + 1) * test.interval <= t + 1e-9:
            step_done += 1
            _poll(state, expanded, step_done, EPOCH + step_done * test.interval)
        engine.evaluate(state, EPOCH + t, lambda d, c: test.interval)
        for check in checks:
            if abs(float(check.at) - t) < settings.interval / 2 and \
                    float(check.at) <= t + 1e-9:
                outcome.failures.extend(_compare(engine, check, t))
        checks = [c for c in checks if float(c.at) > t + 1e-9]
    for check in checks:
        outcome.failures.append(f"at {_fmt(float(check.at))}: never evaluated")
    return outcome


def _poll(state: State, expanded: list[tuple[InputSeries, list]], step: int, ts: float) -> None:
    """One poll of every device: the series' values at this step become PollResults."""
    results: dict[tuple[str, str], PollResult] = {}
    for series, values in expanded:
        if step >= len(values):
            continue
        value = values[step]
        if value is None or value is STALE:
            continue
        if series.event is not None:
            state.record_event(event(series.device, series.event, "trap", float(value), ts,
                                     **series.labels))
            continue
        collector = _collector(series)
        result = results.get((series.device, collector))
        if result is None:
            result = results[(series.device, collector)] = PollResult(
                series.device, ts, 0.1, True, collector=collector)
        if series.metric == "up":
            if not value:
                result.up, result.reason = False, series.reason  # type: ignore[assignment]
            continue
        metric = str(series.metric)
        result.readings.append(Reading(series.device, metric, dict(series.labels),
                                       float(value), ts))
    for result in results.values():
        if not result.up and result.reason != "no_frames":  # a failed poll measured nothing,
            result.readings = []  # except a stream set up that sent no frame
        state.update(result)
    # a STALE marker drops the collector's result: its readings are gone
    for series, values in expanded:
        if step < len(values) and values[step] is STALE and series.event is None:
            state.forget(series.device, _collector(series))


def _compare(engine: Engine, check: FaultEval, t: float) -> list[str]:
    got = [f for f in engine.active.values() if f.rule == check.rule]
    failures = []
    wanted = list(check.faults)
    unmatched = list(got)
    for exp in wanted:
        hit = next((f for f in unmatched if _same(f, exp)), None)
        if hit is None:
            failures.append(f"at {_fmt(t)}: {check.rule}: expected {_describe_exp(exp)}; got "
                            f"{_describe(got)}")
        else:
            unmatched.remove(hit)
    for extra in unmatched:
        failures.append(f"at {_fmt(t)}: {check.rule}: unexpected {_describe([extra])}")
    return failures


def _same(f: Any, exp: ExpectedFault) -> bool:
    subject = exp.device if exp.device is not None else exp.group
    return (f.subject == subject and f.series == exp.series and f.state == exp.state
            and (exp.level is None or f.level == exp.level)
            and (exp.caused_by is None or f.caused_by == exp.caused_by)
            and (f.suppressed == exp.suppressed or (exp.suppressed is None
                                                    and exp.caused_by is not None))
            and (exp.flapping is None or f.flapping == exp.flapping)
            and (exp.caused is None or len(f.caused) == exp.caused))


def _describe_exp(exp: ExpectedFault) -> str:
    return ", ".join(f"{k}={v}" for k, v in exp.model_dump(exclude_none=True).items()
                     if v != {})


def _describe(faults: list) -> str:
    if not faults:
        return "none"
    return "; ".join(f"{f.subject}{f.series or ''} {f.state} level={f.level}"
                     + (f" suppressed={f.suppressed}" if f.suppressed else "")
                     + (f" caused_by={f.caused_by}" if f.caused_by else "")
                     + (" flapping" if f.flapping else "")
                     + (f" caused={len(f.caused)}" if f.caused else "") for f in faults)


def _fmt(seconds: float) -> str:
    if seconds % 60 == 0 and seconds:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s" if math.isfinite(seconds) else str(seconds)
