"""Loading rule files: validate, compile every expression, check it against what exists.

Every mistake is reported with file, line, rule and key, all of them in one pass, as
`vigil check` prints them: a syntax error, an unknown function, a metric no collector or
profile produces, a label the metric does not carry, a type error (found by running the
expression once on sample values), a level out of range, a selector that matches no device.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError
from pydantic import Field

from agent.inventory import Device, Inventory
from agent.validation import load_valid, validate
from agent.yamlfile import ConfigError, ConfigErrors, Document
from collectors.vocabulary import MetricSpec
from rules.annotate import compile_text
from rules.expr import AGGREGATE_VARS, ExprError, Expression, compile_expr
from rules.model import Group, InhibitRule, Rule, RuleFile, Selector
from rules.silences import Matcher, parse_matcher


class _RawGroup(Group):
    rules: list[dict[str, Any]] = Field(..., description="The rules.")  # type: ignore[assignment]


class _RawFile(RuleFile):
    """A rule file whose rules are validated one at a time, each with its own errors."""

    groups: list[_RawGroup] = Field(default_factory=list)  # type: ignore[assignment]


@dataclass
class CompiledRule:
    """A rule ready to run: its expressions compiled, its selector resolved."""

    rule: Rule
    group: str
    file: Path
    line: int
    expr: Expression
    clear: Expression | None
    levels: list[tuple[Expression, int]]
    member: Expression | None
    consts: dict[str, Any]
    templates: dict[str, Any]  # 'summary'/'description' -> {lang: jinja2 Template}
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.rule.name  # read in every evaluation: an attribute, not a property

    @cached_property
    def inputs(self) -> frozenset[str]:
        """What the rule's expressions read, as engine._changes names it."""
        out: set[str] = set()
        for e in (self.expr, self.clear, self.member, *(w for w, _ in self.levels)):
            if e is None:
                continue
            for r in e.refs:
                if r.metric and r.how != "event":
                    out.add(r.metric)
                elif r.how == "event":
                    out.add("events")
                elif r.var == "up":
                    out.add("up")
                elif r.var.endswith("_up"):
                    out.add("collector_up")
                elif r.var.endswith("_reason"):
                    out.add("reasons")
                elif r.var.endswith("_failures"):
                    out.add("failures")
        return frozenset(out)

    @cached_property
    def steady(self) -> bool:
        """Its results follow from the readings' values alone: no rates (they change with
        every poll) nor ages. Such a rule is not run again while its inputs are unchanged."""
        return not any(r.how in ("rate", "increase", "age")
                       for e in (self.expr, self.member) if e is not None for r in e.refs)

    @cached_property
    def timed(self) -> bool:
        """Does a result change with time alone (`age()`), not only with new readings?"""
        return any(r.how == "age" for e in (self.expr, self.member) if e is not None
                   for r in e.refs)

    def selects(self, device: Device) -> bool:
        return selects(self.rule.select, device)


@dataclass
class Inhibition:
    source: list[Matcher]
    target: list[Matcher]
    equal: list[str]


@dataclass
class RuleSet:
    rules: list[CompiledRule] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)  # as written, for exports
    inhibitions: list[Inhibition] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def get(self, name: str) -> CompiledRule | None:
        return next((r for r in self.rules if r.name == name), None)


@dataclass
class Known:
    """What rule expressions may refer to: metric types and the labels each metric carries
    (None where the labels are not declared, e.g. collector metrics set in code)."""

    metrics: dict[str, MetricSpec]
    labels: dict[str, set[str] | None]


def known_from(catalogue: dict[str, MetricSpec], profiles: Any) -> Known:
    """Metrics from the catalogue; labels from the SNMP profiles' metric definitions."""
    labels: dict[str, set[str] | None] = {name: None for name in catalogue}
    for profile in profiles.profiles.values():
        for metric in profile.model.metrics:
            names = {i.label for i in metric.indexes} | {lk.label for lk in metric.lookups} \
                | set(metric.labels)
            if "{" in metric.name:  # sensor_{unit}: every catalogue name it can become
                prefix = metric.name.split("{", 1)[0]
                targets = [n for n in catalogue if n.startswith(prefix)]
            else:
                targets = [metric.name]
            for target in targets:
                known = labels.get(target)
                labels[target] = names | (known or set())
    return Known(dict(catalogue), labels)


def load_rules(paths: list[Path], known: Known, inventory: Inventory | None,
               overrides: dict[str, Any] | None = None) -> RuleSet:
    """Load rule files; raise ConfigErrors listing every problem. `overrides` replace the
    group vars of the same name (agent.yaml `rules.vars`)."""
    errors: list[ConfigError] = []
    out = RuleSet(files=list(paths))
    where: dict[str, str] = {}
    for path in paths:
        loaded = load_valid(_RawFile, path, errors)
        if loaded is None:
            continue
        doc, model = loaded
        for gi, raw_group in enumerate(model.groups):
            rules: list[Rule] = []
            for ri, raw in enumerate(raw_group.rules):  # one by one: every rule's errors
                try:
                    rules.append(validate(Rule, doc, raw, prefix=("groups", gi, "rules", ri)))
                except ConfigErrors as exc:
                    errors.extend(exc.errors)
                    rules.append(None)  # type: ignore[arg-type]  # keeps the indexes
            group = Group(name=raw_group.name,
                          vars={k: (overrides or {}).get(k, v) for k, v in raw_group.vars.items()},
                          rules=[r for r in rules if r is not None])
            out.groups.append(group)
            for ri, rule in enumerate(rules):
                if rule is None:
                    continue
                at = ("groups", gi, "rules", ri)
                if rule.name in where:
                    errors.append(doc.error((*at, "name"), f"rule {rule.name}: the name is "
                                                           f"already used at {where[rule.name]}"))
                    continue
                where[rule.name] = f"{doc.file}:{doc.line(at)}"
                try:
                    out.rules.append(_compile(doc, at, group, rule, known, inventory))
                except ConfigErrors as exc:
                    errors.extend(exc.errors)
        for ii, inhibit in enumerate(model.inhibit_rules):
            try:
                out.inhibitions.append(_inhibition(doc, ("inhibit_rules", ii), inhibit))
            except ConfigErrors as exc:
                errors.extend(exc.errors)
    if errors:
        raise ConfigErrors(sorted(errors, key=lambda e: (str(e.file), e.line or 0)))
    return out


def _inhibition(doc: Document, at: tuple, inhibit: InhibitRule) -> Inhibition:
    errors = []
    parsed: dict[str, list[Matcher]] = {"source_matchers": [], "target_matchers": []}
    for key in parsed:
        for i, text in enumerate(getattr(inhibit, key)):
            try:
                parsed[key].append(parse_matcher(text))
            except ValueError as exc:
                errors.append(doc.error((*at, key, i), str(exc)))
    if errors:
        raise ConfigErrors(errors)
    return Inhibition(parsed["source_matchers"], parsed["target_matchers"], inhibit.equal)


def _floats(value: Any) -> Any:
    """YAML integers as doubles: CEL does not mix int and double in arithmetic."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return value


def _compile(doc: Document, at: tuple, group: Group, rule: Rule, known: Known,
             inventory: Inventory | None) -> CompiledRule:
    errors: list[ConfigError] = []
    consts = _floats(group.vars)
    metric_names = set(known.metrics)
    extra = AGGREGATE_VARS if rule.aggregate is not None else frozenset()

    def err(key: tuple, message: str) -> None:
        errors.append(doc.error(at + key, f"rule {rule.name}: {message}"))

    def one(key: tuple, source: str, aggregate_vars: frozenset[str]) -> Expression | None:
        try:
            expr = compile_expr(source, metric_names, set(consts), aggregate_vars)
        except ExprError as exc:
            err(key, str(exc))
            return None
        problem = _type_check(expr, known, consts, inventory)
        if problem:
            err(key, problem)
            return None
        return expr

    if rule.aggregate is not None:
        member = one(("aggregate", "member"), rule.aggregate.member, frozenset())
        expr = one(("expr",), rule.expr, extra)
    else:
        member = None
        expr = one(("expr",), rule.expr, frozenset())
    clear = one(("clear",), rule.clear, extra) if rule.clear else None
    levels = []
    for i, entry in enumerate(rule.levels):
        when = one(("levels", i, "when"), entry.when, extra)
        if when is not None:
            levels.append((when, entry.level))
    templates: dict[str, Any] = {}
    for key in ("summary", "description"):
        text = getattr(rule, key)
        if text is None:
            continue
        templates[key] = {}
        for lang in ("zh", "en"):
            source = getattr(text, lang) or text.zh
            try:
                templates[key][lang] = compile_text(source)
            except TemplateSyntaxError as exc:
                err((key, lang), f"template error line {exc.lineno}: {exc.message}")
    if inventory is not None:
        _check_selector(rule, inventory, err)
    if errors:
        raise ConfigErrors(errors)
    assert expr is not None
    return CompiledRule(rule, group.name, doc.file, doc.line(at), expr, clear, levels, member,
                        consts, templates)


def _check_selector(rule: Rule, inventory: Inventory, err: Any) -> None:
    s = rule.select
    for i, site in enumerate(s.sites):
        if site not in inventory.sites:
            err(("select", "sites", i), f"site '{site}' is not in the inventory"
                + _hint(site, inventory.sites))
    for i, device in enumerate(s.devices):
        if device not in inventory.subjects:
            err(("select", "devices", i), f"device '{device}' is not in the inventory"
                + _hint(device, inventory.subjects))
    if s.sites or s.devices or s.labels:
        devices = inventory.subjects.values()
        if not any(selects(s, d) for d in devices):
            err(("select",), "the selector matches no device of the inventory")


def selects(s: Selector, device: Device) -> bool:
    return ((not s.kinds or device.kind in s.kinds) and (not s.sites or device.site in s.sites)
            and (not s.devices or device.id in s.devices)
            and all(device.labels.get(k) == v for k, v in s.labels.items()))


def _hint(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_check(expr: Expression, known: Known, consts: dict[str, Any],
                inventory: Inventory | None) -> str | None:
    """Run the expression once on sample values: type errors, unknown labels, non-boolean
    results show here rather than at 3 a.m. on a live fault."""
    series_labels: set[str] = set()
    variables: dict[str, Any] = {}
    for ref in expr.refs:
        if ref.how == "value":
            spec = known.metrics[ref.metric]
            labels = known.labels.get(ref.metric)
            if labels:
                series_labels |= labels
            variables[ref.var] = {k: "" for k in labels or ()} if spec.type == "info" else 1.0
        elif ref.how == "absent":
            variables[ref.var] = False
        elif ref.how in ("rate", "increase", "age", "event"):
            variables[ref.var] = 1.0
        elif ref.how == "const":
            variables[ref.var] = consts[ref.var]
    label_names = {k for d in (inventory.devices.values() if inventory else ()) for k in d.labels}
    samples = {"up": 1.0, "port_devices": 1.0, "port_switches": 0.0, "total": 10.0,
               "matched": 1.0, "no_data": 0.0, "ratio": 0.1, "group": "",
               "device": {k: "" for k in ("id", "kind", "site", "name", "address",
                                          *label_names)},
               "series": {k: "" for k in series_labels}}
    for ref in expr.refs:
        if ref.how == "builtin":
            if ref.var.endswith("_reason"):
                variables[ref.var] = ""
            else:
                variables[ref.var] = samples.get(ref.var, 1.0)
    try:
        result = expr.run(variables)
    except KeyError as exc:
        key = str(exc).strip("'\"")
        owner = next((r.metric for r in expr.refs if r.how == "value"
                      and known.metrics[r.metric].type == "info"
                      and known.labels.get(r.metric) is not None), None)
        if "series" in variables and key not in variables["series"] and series_labels:
            return (f"no label '{key}' on the series of this rule (labels: "
                    f"{', '.join(sorted(series_labels))})")
        if owner is not None:
            return (f"{owner} has no label '{key}' (labels: "
                    f"{', '.join(sorted(known.labels[owner] or ()))})")
        if "device" in variables:
            return f"devices have no attribute or label '{key}'"
        return None  # labels not declared anywhere: checked at run time
    except (TypeError, ValueError, RuntimeError) as exc:
        return f"type error in `{expr.source}`: {str(exc).split('. ')[0]}"
    except ZeroDivisionError:
        return None
    if not isinstance(result, bool):
        return f"`{expr.source}` must be true or false, it gives a {type(result).__name__}"
    return None
