"""Vigil rules as Prometheus alerting rules (`vigil export prometheus-rules`).

Why: a monitoring centre's Prometheus scrapes many agents and alerts on its own; exporting the
same rules keeps one set of thresholds and levels instead of two drifting copies. Rules that
cannot be translated are skipped with a warning; `promql:` on the rule gives their PromQL.

Supported subset of the CEL text (after `rules.expr.expand`):
- numbers, and the group's `vars` that are numbers (inlined);
- a metric name -> `vigil_<name>` (counter names already end in `_total`);
- `up` -> `vigil_device_up`; `snmp_up`, `onvif_up`, `rtsp_up`, `reach_up` ->
  `vigil_collector_up{collector="snmp"}` ...; `event("x")` -> `vigil_event{event="x"}`;
- `rate(m)`, `increase(m)` -> `rate(vigil_m[5m])`, `increase(vigil_m[5m])` (see RANGE);
- `absent(m)` -> the selected devices' `vigil_device_up` `unless on(device)` any `vigil_m`;
- `+ - * /`, unary minus, parentheses, comparisons (PromQL filters: `vigil_x > 0.5` keeps
  the series where it holds, as Vigil fires per series), `!` over a comparison (the operator
  inverted), `&&` -> `and`, `||` -> `or`.
Anything else (ternaries, strings, `in`, `%`, member access such as `series.x` or info maps,
function calls, `age(m)`, `*_reason`, `*_failures`, `device`, `port_devices`) is
Untranslatable.

Two series are matched on `device` (`and on(device)`, `or on(device)`, and for arithmetic
and comparisons `on(device) group_left`, so the right operand must have one series per
device), unless both read the same metrics or rows of one table (ROW_FAMILIES): then on all
their labels, plain `and`.

The selector becomes matchers on every vector selector (`kind=~"ups|switch"`, `site="dh"`);
inventory `labels` exist only on `vigil_device_inventory_info`, so the expression is
filtered with `and on(device) vigil_device_inventory_info{k="v"}`.

Aggregates count devices on `vigil_device_inventory_info` (one series per device, and it
carries every inventory label, so `by` may be `site` or any inventory label):
`matched` = `count by (site) (inventory and on(device) (member))`, zero-filled from `total`
= `count by (site) (inventory)`, `ratio` = matched / total; `no_data` and `group` are
Untranslatable. `levels` become one alerting rule per level (`when` holds, no earlier one
does) plus the plain level for the rest, each with the label `level`.

Not exported: `clear` (hysteresis; the alert resolves when `expr` stops holding, with a
warning) and `topology` (Alertmanager's inhibit rules do that job). Annotations keep the
text; `{{ value }}`, `{{ device.id }}`, `{{ device.site }}`, `{{ device.kind }}`,
`{{ labels.x }}`, `{{ series.x }}` and (aggregates) `{{ group }}` become Prometheus's
`{{ $value }}` and `{{ $labels.x }}`; any other template tag is removed, its text kept.
`keep_firing_for` needs Prometheus >= 2.42 (promtool 2.42.0 accepts it).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from rules.expr import AGGREGATE_VARS, BUILTINS, COLLECTORS, Ref, expand
from rules.model import NAME, Group, Rule, Selector, Text

RANGE = "5m"
"""Range of rate() and increase(). Vigil's are over one poll (60 s by default); a range
function needs two samples or more, and 5m holds several polls at any scrape interval up to
1m. So `increase(m)` counts over 5 minutes, not one poll: `> 0` keeps its meaning, larger
thresholds do not (give such rules `promql:`)."""

ROW_FAMILIES = ("interface_", "nvr_disk_", "pdu_branch_")
"""Metrics that are rows of one table with the same index labels in every profile
(ifindex and interface, disk and volume, ...): two of them are matched row by row."""

INVENTORY = "vigil_device_inventory_info"
COLLECTOR_UP = {f"{c}_up": c for c in COLLECTORS}
COMPARISONS = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
OR, AND, CMP, ADD, MUL, UNARY, ATOM = range(1, 8)
"""PromQL binding strengths (CEL orders the same operators the same way)."""


class Untranslatable(ValueError):
    """An expression outside the subset this module translates."""


# ---------------------------------------------------------------------------------------
# Parsing the CEL subset


@dataclass(frozen=True)
class _Num:
    value: float


@dataclass(frozen=True)
class _Name:
    name: str


@dataclass(frozen=True)
class _Unary:
    op: str
    operand: _Node


@dataclass(frozen=True)
class _Binary:
    op: str
    left: _Node
    right: _Node


_Node = _Num | _Name | _Unary | _Binary
_TOKEN = re.compile(r"\s*(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[uU]?|[A-Za-z_]\w*|&&|\|\||[=!<>]=|\S)")
_LEVELS = [("||",), ("&&",), tuple(COMPARISONS), ("+", "-"), ("*", "/")]
_UNSUPPORTED = {"?": "a ternary `?:`", "%": "`%`", "in": "`in`", ".": "member access `.`",
                "[": "a list or index `[]`", "(": "a function call", "{": "a map", '"': "a string",
                "'": "a string"}


class _Parser:
    """Recursive descent over the tokens, one method per precedence level."""

    def __init__(self, text: str):
        self.tokens = _TOKEN.findall(text)
        self.pos = 0

    def parse(self) -> _Node:
        node = self.binary(0)
        if self.pos < len(self.tokens):
            raise self.unsupported(self.tokens[self.pos])
        return node

    def peek(self) -> str:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ""

    def unsupported(self, token: str) -> Untranslatable:
        what = _UNSUPPORTED.get(token)
        return Untranslatable(f"{what} is not supported" if what else f"unexpected '{token}'")

    def binary(self, level: int) -> _Node:
        if level == len(_LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while self.peek() in _LEVELS[level]:
            op = self.tokens[self.pos]
            self.pos += 1
            node = _Binary(op, node, self.binary(level + 1))
        return node

    def unary(self) -> _Node:
        token = self.peek()
        if token in ("!", "-"):
            self.pos += 1
            return _Unary(token, self.unary())
        node = self.primary()
        if self.peek() in (".", "[", "("):
            raise self.unsupported(self.peek())
        return node

    def primary(self) -> _Node:
        token = self.peek()
        self.pos += 1
        if token[:1].isdigit():
            if token[-1] in "uU":
                raise Untranslatable(f"unsigned number '{token}' is not supported")
            return _Num(float(token))
        if token == "(":
            node = self.binary(0)
            if self.peek() != ")":
                raise self.unsupported(self.peek() or "end of expression")
            self.pos += 1
            return node
        if token[:1].isalpha() or token[:1] == "_":
            return _Name(token)
        raise self.unsupported(token or "end of expression")


# ---------------------------------------------------------------------------------------
# Translation


@dataclass(frozen=True)
class _Q:
    """A translated sub-expression."""

    text: str
    prec: int  # binding strength of its outermost operator
    series: bool  # an instant vector, else a scalar
    cond: bool  # a condition (comparison, and/or), not a value
    rows: frozenset[str]  # what its series are rows of, to choose the vector matching


def _wrap(q: _Q, prec: int, right: bool = False) -> str:
    return f"({q.text})" if q.prec < prec or (right and q.prec == prec) else q.text


def _same_rows(a: frozenset[str], b: frozenset[str]) -> bool:
    if a == b:
        return True
    names = a | b
    return any(all(n.startswith(family) for n in names) for family in ROW_FAMILIES)


def _setop(left: _Q, op: str, right: _Q, key: str) -> _Q:
    """`left op right` for op in and, or, unless."""
    if not (left.cond and right.cond):
        raise Untranslatable(f"`{op}` over a value that is not a condition")
    prec = OR if op == "or" else AND
    match = "" if _same_rows(left.rows, right.rows) else f" on({key})"
    rows = left.rows | right.rows if op == "or" else left.rows
    return _Q(f"{_wrap(left, prec)} {op}{match} {_wrap(right, prec, True)}", prec, True, True,
              rows)


def _number(value: float) -> str:
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def _re_escape(value: str) -> str:
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", value)


def _select_matchers(select: Selector) -> list[str]:
    out = []
    for label, values in (("kind", select.kinds), ("site", select.sites),
                          ("device", select.devices)):
        if len(values) == 1:
            out.append(f"{label}={json.dumps(values[0], ensure_ascii=False)}")
        elif values:
            pattern = "|".join(_re_escape(v) for v in values)
            out.append(f"{label}=~{json.dumps(pattern, ensure_ascii=False)}")
    return out


def _label_matchers(labels: dict[str, str]) -> list[str]:
    for key in labels:
        if not NAME.match(key):
            raise Untranslatable(f"selector label '{key}' is not a Prometheus label name")
    return [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels.items()]


def _vector(metric: str, matchers: list[str]) -> str:
    return f"{metric}{{{','.join(matchers)}}}" if matchers else metric


class _Context:
    """What names mean in one rule's expressions."""

    def __init__(self, rule: Rule, group_vars: dict[str, Any]):
        self.rule = rule
        self.vars = group_vars
        self.matchers = _select_matchers(rule.select)
        self.key = "device"  # the label two series are matched on
        self.env: dict[str, _Q] = {}  # an aggregate's total, matched, ratio
        self.aggregated = False  # translating an aggregate's expression: no metrics
        self.refs: dict[str, Ref] = {}

    def condition(self, source: str) -> _Q:
        text, self.refs = expand(source)
        q = self.translate(_Parser(text).parse())
        if not q.cond:
            raise Untranslatable(f"`{source}` is not a condition")
        return q

    def translate(self, node: _Node) -> _Q:
        if isinstance(node, _Num):
            return _Q(_number(node.value), ATOM, False, False, frozenset())
        if isinstance(node, _Name):
            return self.name(node.name)
        if isinstance(node, _Unary):
            if node.op == "!":
                return self.translate(_negate(node.operand))
            q = self.value(node.operand)
            return _Q(f"-{_wrap(q, UNARY)}", UNARY, q.series, False, q.rows)
        if node.op in ("&&", "||"):
            op = "and" if node.op == "&&" else "or"
            return _setop(self.translate(node.left), op, self.translate(node.right), self.key)
        left, right = self.value(node.left), self.value(node.right)
        prec = CMP if node.op in COMPARISONS else ADD if node.op in "+-" else MUL
        if prec == CMP and not (left.series or right.series):
            raise Untranslatable("a comparison of two numbers")
        match = ""
        if left.series and right.series and not _same_rows(left.rows, right.rows):
            match = f" on({self.key}) group_left"
        text = f"{_wrap(left, prec)} {node.op}{match} {_wrap(right, prec, True)}"
        return _Q(text, prec, left.series or right.series, prec == CMP,
                  left.rows if left.series else right.rows)

    def value(self, node: _Node) -> _Q:
        q = self.translate(node)
        if q.cond:
            raise Untranslatable("a condition used as a number")
        return q

    def name(self, name: str) -> _Q:
        if name in self.env:
            return self.env[name]
        if name in self.vars:
            value = self.vars[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise Untranslatable(f"group variable '{name}' is not a number")
            return _Q(_number(float(value)), ATOM, False, False, frozenset())
        if self.aggregated:
            raise Untranslatable(f"an aggregate's expression reads `{name}`; only total, "
                                 f"matched, ratio and numbers are translated")
        ref = self.refs.get(name)
        if name == "up":
            return self.series("vigil_device_up", "device_up")
        if name in COLLECTOR_UP:
            collector = COLLECTOR_UP[name]
            return self.series("vigil_collector_up", f"collector_up:{collector}",
                               f'collector="{collector}"')
        if ref is not None and ref.how in ("rate", "increase"):
            q = self.series("vigil_" + ref.metric, ref.metric)
            return _Q(f"{ref.how}({q.text}[{RANGE}])", ATOM, True, False, q.rows)
        if ref is not None and ref.how == "event":
            return self.series("vigil_event", f"event:{ref.metric}",
                               f"event={json.dumps(ref.metric, ensure_ascii=False)}")
        if ref is not None and ref.how == "absent":
            up = self.series("vigil_device_up", "device_up")
            text = f"({up.text} unless on(device) {self.series('vigil_' + ref.metric, '').text})"
            return _Q(text, ATOM, True, True, up.rows)
        if ref is not None:  # age(m)
            raise Untranslatable(f"`{ref.how}({ref.metric})` has no Prometheus equivalent")
        if name in BUILTINS | AGGREGATE_VARS | {"true", "false", "null"}:
            raise Untranslatable(f"`{name}` has no Prometheus equivalent")
        return self.series("vigil_" + name, name)

    def series(self, metric: str, rows: str, *extra: str) -> _Q:
        return _Q(_vector(metric, [*extra, *self.matchers]), ATOM, True, False,
                  frozenset({rows}))


def _negate(node: _Node) -> _Node:
    if isinstance(node, _Binary) and node.op in COMPARISONS:
        return _Binary(COMPARISONS[node.op], node.left, node.right)
    if isinstance(node, _Unary) and node.op == "!":
        return node.operand
    raise Untranslatable("`!` is translated only over a comparison")


def _aggregate_env(ctx: _Context) -> None:
    """Turn ctx into the aggregate expression's: total, matched and ratio per group."""
    aggregate = ctx.rule.aggregate
    assert aggregate is not None
    by = aggregate.by
    if not NAME.match(by):
        raise Untranslatable(f"aggregate `by: {by}` is not a Prometheus label name")
    matchers = ctx.matchers + _label_matchers(ctx.rule.select.labels)
    if by != "site":
        matchers.append(f'{by}!=""')
    member = ctx.condition(aggregate.member)
    inventory = _vector(INVENTORY, matchers)
    total = f"count by ({by}) ({inventory})"
    matched = (f"(count by ({by}) ({inventory} and on(device) {_wrap(member, AND, True)}) "
               f"or {total} * 0)")
    group = frozenset({"@group"})
    ctx.key = by
    ctx.aggregated = True
    ctx.env = {"total": _Q(total, ATOM, True, False, group),
               "matched": _Q(matched, ATOM, True, False, group),
               "ratio": _Q(f"{matched} / {total}", MUL, True, False, group)}


def _main(rule: Rule, group_vars: dict[str, Any]) -> tuple[_Context, _Q]:
    ctx = _Context(rule, group_vars)
    if rule.aggregate is not None:
        _aggregate_env(ctx)
        q = ctx.condition(rule.expr)
        if rule.aggregate.min_members > 1:
            total = ctx.env["total"]
            enough = _Q(f"{total.text} >= {rule.aggregate.min_members}", CMP, True, True,
                        total.rows)
            q = _setop(q, "and", enough, ctx.key)
        return ctx, q
    q = ctx.condition(rule.expr)
    if rule.select.labels:
        inventory = _vector(INVENTORY, _label_matchers(rule.select.labels))
        q = _setop(q, "and", _Q(inventory, ATOM, True, True, frozenset({"@inventory"})),
                   "device")
    return ctx, q


def rule_to_promql(rule: Rule, group_vars: dict[str, Any]) -> str:
    """The PromQL of the rule's expression (`promql:` as is when given), before any split
    by `levels`. Raises Untranslatable(reason) outside the supported subset."""
    if rule.promql:
        return rule.promql
    return _main(rule, group_vars)[1].text


def _level_exprs(rule: Rule, group_vars: dict[str, Any]) -> list[tuple[int, str]]:
    """(level, PromQL) per exported alerting rule: one per `levels` entry, where its `when`
    holds and no earlier one does, then the plain level for the rest."""
    if rule.promql or not rule.levels:
        return [(rule.level, rule_to_promql(rule, group_vars))]
    ctx, main = _main(rule, group_vars)
    whens = [ctx.condition(entry.when) for entry in rule.levels]

    def unless_earlier(q: _Q, earlier: list[_Q]) -> str:
        if not earlier:
            return q.text
        either = functools.reduce(lambda a, b: _setop(a, "or", b, ctx.key), earlier)
        return _setop(q, "unless", either, ctx.key).text

    out = [(entry.level, unless_earlier(_setop(main, "and", when, ctx.key), whens[:i]))
           for i, (entry, when) in enumerate(zip(rule.levels, whens, strict=True))]
    return [*out, (rule.level, unless_earlier(main, whens))]


# ---------------------------------------------------------------------------------------
# The rule file


_TAG = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_LABEL_REF = re.compile(r"(?:labels|series)\.([A-Za-z_]\w*)")


def _annotation(text: str, group_label: str) -> str:
    """Jinja2 text as a Prometheus template: the plain references converted, other tags
    removed."""
    plain = {"value": "$value", "device.id": "$labels.device", "device.site": "$labels.site",
             "device.kind": "$labels.kind"}
    if group_label:
        plain["group"] = f"$labels.{group_label}"

    def convert(m: re.Match[str]) -> str:
        inner = m.group(1) or ""
        label = _LABEL_REF.fullmatch(inner)
        target = plain.get(inner) or (f"$labels.{label.group(1)}" if label else "")
        return "{{ " + target + " }}" if target else ""

    return re.sub(r"(?<=\S) {2,}", " ", _TAG.sub(convert, text))


def _duration(seconds: float) -> str:
    """Prometheus duration: 30s, 5m, 1h30m, 500ms."""
    ms = round(seconds * 1000)
    out = ""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000),
                       ("ms", 1)):
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return out or "0s"


def _annotations(rule: Rule) -> dict[str, str]:
    group_label = rule.aggregate.by if rule.aggregate is not None else ""
    out = {}
    for key, text in (("summary", rule.summary), ("description", rule.description)):
        if isinstance(text, Text):
            out[key] = _annotation(text.zh, group_label)
            if text.en:
                out[f"{key}_en"] = _annotation(text.en, group_label)
    return out


def _alert(rule: Rule, level: int, expr: str) -> dict[str, Any]:
    alert: dict[str, Any] = {"alert": rule.name, "expr": expr}
    if rule.for_:
        alert["for"] = _duration(rule.for_)
    if rule.keep_firing_for:
        alert["keep_firing_for"] = _duration(rule.keep_firing_for)
    alert["labels"] = {"level": str(level), **rule.labels}
    annotations = _annotations(rule)
    if annotations:
        alert["annotations"] = annotations
    return alert


def export_prometheus_rules(groups: list[Group]) -> tuple[dict[str, Any], list[str]]:
    """The Prometheus rule file (as data, for YAML) and warnings: rules skipped as not
    translatable, and what a translated rule lost."""
    out = []
    warnings = []
    for group in groups:
        alerts = []
        for rule in group.rules:
            where = f"{group.name}/{rule.name}"
            try:
                exprs = _level_exprs(rule, group.vars)
            except Untranslatable as exc:
                warnings.append(f"{where}: not translatable: {exc}; add `promql:` to the rule")
                continue
            if rule.clear and not rule.promql:
                warnings.append(f"{where}: `clear` is not exported: the alert resolves as soon "
                                f"as `expr` stops holding")
            if rule.levels and rule.promql:
                warnings.append(f"{where}: `levels` do not apply to `promql:`; exported at "
                                f"level {rule.level}")
            alerts.extend(_alert(rule, level, expr) for level, expr in exprs)
        if alerts:
            out.append({"name": group.name, "rules": alerts})
    return {"groups": out}, warnings
