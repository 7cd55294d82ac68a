"""Turning fetched SNMP values into Readings, as a profile's PollPlan says.

Everything device-specific is in the plan (from the profile YAML); this module is the one
generic interpreter: index labels, lookups, enum names, value maps, scales, per-row factors,
regex extracts, name placeholders, info metrics. A value that cannot be read becomes a
problem text naming the metric and OID; the rest of the poll goes on.
"""

from __future__ import annotations

import re
from typing import Any

from collectors.reading import Reading
from collectors.snmp import values
from collectors.snmp.engine import EXCEPTIONS, NUMERIC
from collectors.snmp.fetch import Fetched, Value
from collectors.snmp.profile import (
    CompiledMetric,
    Index,
    InfoLabel,
    Lookup,
    PollPlan,
    divisor_of,
)

MAX_PROBLEMS = 50
"""Problems kept per poll; a badly broken device should not flood the log or the state."""


def parse_index(index: str, specs: list[Index]) -> tuple[dict[str, str] | None, str | None]:
    """Split a row index into labels; returns (labels, problem)."""
    if len(specs) == 1 and specs[0].type == "int" and "." not in index:
        return {specs[0].label: index}, None  # the common case, fast
    parts = index.split(".")
    labels: dict[str, str] = {}
    pos = 0
    try:
        for spec in specs:
            if spec.type == "int":
                labels[spec.label] = parts[pos]
                pos += 1
            elif spec.type == "ipv4":
                labels[spec.label] = ".".join(parts[pos:pos + 4])
                pos += 4
            elif spec.type == "mac":
                labels[spec.label] = ":".join(f"{int(x):02x}" for x in parts[pos:pos + 6])
                pos += 6
            elif spec.type == "string":
                length = int(parts[pos])
                raw = bytes(int(x) for x in parts[pos + 1:pos + 1 + length])
                labels[spec.label] = values.text("octets", raw) or ""
                pos += 1 + length
            else:  # rest
                labels[spec.label] = ".".join(parts[pos:])
                pos = len(parts)
    except (ValueError, IndexError):
        return None, f"index '{index}' does not fit {[s.type for s in specs]}"
    if pos > len(parts):
        return None, f"index '{index}' is too short for {[s.type for s in specs]}"
    extra = parts[pos:]
    if extra and any(x != "0" for x in extra):
        return None, f"index '{index}' has unexpected extra parts {'.'.join(extra)}"
    return labels, None  # a trailing '.0' (seen on Eaton/MGE UPS-MIB rows) is tolerated


class Translator:
    """Applies one plan to one poll's fetched values."""

    def __init__(self, plan: PollPlan, fetched: Fetched, device: str, timestamp: float):
        self.plan = plan
        self.fetched = fetched
        self.device = device
        self.timestamp = timestamp
        self.readings: list[Reading] = []
        self.problems = fetched.problems
        self._info: dict[str, dict[str, str]] = {}
        self._row_labels: dict[tuple[Any, ...], dict[str, dict[str, str]]] = {}

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def run(self) -> list[Reading]:
        for metric in self.plan.metrics:
            if metric.definition.type == "info":
                self._info_metric(metric)
            elif metric.scalar:
                self._scalar(metric)
            else:
                self._table(metric)
        for name, labels in self._info.items():
            if any(labels.values()):
                self.readings.append(Reading(self.device, name, labels, 1.0, self.timestamp))
        return self.readings

    # -- values ---------------------------------------------------------------------------

    def _value(self, metric: CompiledMetric, where: str, value: Value, scale: float,
               factor: tuple[float, float] = (1.0, 1.0)) -> tuple[float, str | None] | None:
        d = metric.definition
        code, raw = value
        if code in EXCEPTIONS:
            return None
        number, problem = values.number(code, raw, metric.pattern)
        if number is None:
            if problem:
                self.problem(f"{d.name} {where}: {problem}")
            return None
        if number in metric.invalid:
            return None
        text = None
        if d.enum is not None:
            key = int(number) if number.is_integer() else number
            text = d.enum.get(key, f"unknown({key})")
        if d.map is not None:
            key = int(number) if number.is_integer() else number
            mapped = d.map.get(key, d.map.get("default"))
            if mapped is not None:
                number = mapped
        multiplier, divisor = factor
        if metric.divisor:
            divisor *= metric.divisor
        else:
            multiplier *= d.scale
        # one division at the end: 552 / 1000 reads 0.552, not 552 / 10 / 100 = 0.5519999...
        return number * scale * multiplier / divisor + d.offset, text

    def _scalar(self, metric: CompiledMetric) -> None:
        scalars = self.fetched.scalars
        for source in metric.sources:
            value = scalars.get(source.oid)
            if value is None:
                continue
            result = self._value(metric, source.oid, value, source.scale)
            if result is not None:
                labels = dict(metric.constant_labels)
                self.readings.append(Reading(self.device, metric.definition.name, labels,
                                             result[0], self.timestamp, result[1]))
            return

    # -- tables ---------------------------------------------------------------------------

    def _table(self, metric: CompiledMetric) -> None:
        d = metric.definition
        columns = self.fetched.columns
        rows: dict[str, tuple[Value, float]] = {}
        for source in metric.sources:
            for index, value in columns.get(source.oid, {}).items():
                if index not in rows and value[0] not in EXCEPTIONS:
                    rows[index] = (value, source.scale)
        if not rows:
            return
        labels_by_index = self._labels_for(metric, rows)
        first_oid = metric.sources[0].oid
        expand = len(metric.names) > 1
        placeholder = metric.placeholder
        for index, (value, scale) in rows.items():
            labels = labels_by_index.get(index)
            if labels is None:
                continue
            factor = self._factor(metric, index)
            if factor is None:
                continue
            result = self._value(metric, f"{first_oid}.{index}", value, scale, factor)
            if result is None:
                continue
            name = d.name
            if expand:
                key = labels.get(placeholder, "")
                name = metric.names.get(key)
                if name is None:
                    self.problem(f"{d.name} {first_oid}.{index}: {placeholder} '{key}' has no "
                                 f"metric name in the profile")
                    continue
                labels = {k: v for k, v in labels.items() if k != placeholder}
            self.readings.append(Reading(self.device, name, labels, result[0], self.timestamp,
                                         result[1]))

    def _labels_for(self, metric: CompiledMetric,
                    rows: dict[str, Any]) -> dict[str, dict[str, str]]:
        """Index and lookup labels per row, shared by metrics of the same table shape."""
        d = metric.definition
        key = (metric.label_key, tuple(rows))
        cached = self._row_labels.get(key)
        if cached is not None:
            return cached
        out: dict[str, dict[str, str]] = {}
        columns = self.fetched.columns
        for index in rows:
            labels, problem = parse_index(index, d.indexes)
            if labels is None:
                self.problem(f"{d.name} {metric.sources[0].oid}.{index}: {problem}")
                continue
            for lookup in d.lookups:
                labels[lookup.label] = _lookup(lookup, columns, index)
            labels.update(metric.constant_labels)
            out[index] = labels
        self._row_labels[key] = out
        return out

    def _factor(self, metric: CompiledMetric, index: str) -> tuple[float, float] | None:
        """(multiplier, divisor) from the row's factor columns; dividing by 10 rather than
        multiplying by 0.1 keeps 533 at precision 1 reading 53.3, not 53.300000000000004."""
        multiplier, divisor = 1.0, 1.0
        for f in metric.definition.factors:
            value = self.fetched.columns.get(f.oid, {}).get(index)
            if value is None or value[0] not in NUMERIC:
                self.problem(f"{metric.definition.name}: factor column {f.oid}.{index} missing")
                return None
            raw = value[1]
            if f.power10:
                exponent = f.power10 * raw
                if exponent >= 0:
                    multiplier *= 10.0 ** exponent
                else:
                    divisor *= 10.0 ** -exponent
            elif f.map is not None:
                factor = f.map.get(raw, f.map.get("default"))
                if factor is None:
                    self.problem(f"{metric.definition.name}: factor {f.oid}.{index} value {raw} "
                                 f"not in its map")
                    return None
                inverse = divisor_of(factor)
                if inverse:
                    divisor *= inverse
                else:
                    multiplier *= factor
            else:
                multiplier *= raw
        return multiplier, divisor

    # -- info -----------------------------------------------------------------------------

    def _info_metric(self, metric: CompiledMetric) -> None:
        merged = self._info.setdefault(metric.definition.name, {})
        for label, spec in metric.definition.labels.items():
            if isinstance(spec, str):
                value: str | None = spec
            elif spec.value is not None:
                value = spec.value
            else:
                value = self._info_value(spec)
            if value:
                merged[label] = value
            else:
                merged.setdefault(label, "")

    def _info_value(self, spec: InfoLabel) -> str | None:
        for source in spec.oid or []:
            value = self.fetched.scalars.get(source.oid)
            if value is None:
                continue
            text = values.text(*value)
            if not text:
                continue  # absent or empty: try the next source
            if spec.regex:
                match = re.search(spec.regex, text)  # re caches the compiled pattern
                if not match:
                    continue
                text = match.group(1) if match.groups() else match.group(0)
            if text.strip():
                return text.strip()
        return None


def _lookup(lookup: Lookup, columns: dict[str, dict[str, Value]], index: str) -> str:
    for source in lookup.oid:
        value = columns.get(source.oid, {}).get(index)
        if value is None or value[0] in EXCEPTIONS:
            continue
        code, raw = value
        if lookup.enum is not None and code in NUMERIC:
            return lookup.enum.get(raw, str(raw))
        text = values.text(code, raw, lookup.format)
        if text:
            return text  # an empty string falls through to the next source
    return ""
