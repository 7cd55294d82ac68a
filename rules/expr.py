"""Rule expressions: CEL (Common Expression Language), compiled once, evaluated per device.

Why CEL: it is a specified, non-Turing-complete language built for exactly this (policy and
alert conditions in Kubernetes, Envoy, Google Cloud IAM); expressions cannot loop, call out
or touch anything but the values given to them, so an engineer's YAML can never run code
in the agent. Its expressions are pure, which lets the engine reuse a result when a rule's
inputs have not changed. The Rust implementation (`common-expression-language`, cel-rust
bindings) evaluates a compiled program in about a microsecond; simpleeval (Python's own
syntax, AST walking in Python) was measured at 2 us and asteval slower, and neither has a
specification engineers can read.

What an expression sees (docs/rules.md says the same for engineers):
- a metric name (`ups_battery_charge_ratio`): the device's reading, a number; for info
  metrics (`device_info`) a map of its labels (`device_info.firmware`).
- `rate(m)`, `increase(m)`: per second / total increase of counter `m` since the previous
  poll; no value on the first poll or after a counter reset (never negative).
- `absent(m)`: true when the device has no fresh reading of `m`. `age(m)`: its age, seconds.
- `event("name")`: 1 while an event (trap, ONVIF event) of that name is raised, 0 cleared.
- `up`, and per collector `snmp_up`, `onvif_up`, `rtsp_up`, `reach_up`: 1 or 0;
  `snmp_reason` ... `reach_reason`: why the latest poll failed ('' when up);
  `snmp_failures` ...: failed polls in a row.
- `series`: labels of the series being evaluated (`series.interface`); `device`: id, kind,
  site, name, address and inventory labels; `port_devices`, `port_switches`: how many devices
  (switches) hang off the port of the series; the group's `vars`.
- aggregates: `total`, `matched`, `no_data`, `ratio`, `group`.

Missing data is never a silent false: when a metric the expression reads has no fresh
reading, the result is "no data" (the fault keeps its state) unless the expression asks
`absent(m)` itself, in which case `m` is null there.
Numbers are all decimals: `x + 1` means `x + 1.0` (CEL does not mix int and double).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import cel

MACROS = ("rate", "increase", "absent", "age")
"""Functions over a metric name, expanded to a variable before CEL sees them."""

COLLECTORS = ("snmp", "onvif", "rtsp", "reach")
BUILTINS = frozenset(
    {"up", "series", "device", "port_devices", "port_switches"}
    | {f"{c}_{what}" for c in COLLECTORS for what in ("up", "reason", "failures")})
AGGREGATE_VARS = frozenset({"total", "matched", "no_data", "ratio", "group"})
CEL_FUNCTIONS = frozenset({
    "_&&_", "_||_", "!_", "-_", "_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_", "_+_", "_-_",
    "_*_", "_/_", "_%_", "_?_:_", "_[_]", "@in", "@not_strictly_false", "size", "int",
    "double", "string", "contains", "startsWith", "endsWith", "matches", "has", "exists",
    "all", "exists_one", "map", "filter", "min", "max", "abs", "lowerAscii", "upperAscii",
    "type", "dyn", "in", "@it", "@ac", "@result"})
"""CEL's standard operators and functions an expression may use; anything else is an error
at `vigil check` ("unknown function")."""

_TOKEN = re.compile(
    r"""(?P<string>[rR]?("""
    r'''"""(?:\\.|[^\\])*?"""|'''
    r"""'''(?:\\.|[^\\])*?'''|"""
    r'''"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))'''
    r"""|(?P<macro>\b(?P<fn>rate|increase|absent|age)\s*\(\s*(?P<arg>[A-Za-z_][A-Za-z0-9_]*)\s*\))"""
    r"""|(?P<event>\bevent\s*\(\s*(?P<q>["'])(?P<ev>[A-Za-z0-9_.:-]+)(?P=q)\s*\))"""
    r"""|(?P<number>(?<![\w.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[uU]?(?![\w.]))"""
    r"""|(?P<other>[\s\S])""", re.VERBOSE)


_BOUND = re.compile(r"\.\s*(?:exists_one|exists|all|filter|map)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)"
                    r"\s*,")


class ExprError(ValueError):
    """An expression that cannot be compiled or that uses an unknown name."""


@dataclass(frozen=True)
class Ref:
    """One input of an expression: a metric read a certain way."""

    var: str  # the CEL variable name after expansion
    metric: str  # the metric name ('' for builtins and vars)
    how: str  # 'value', 'rate', 'increase', 'absent', 'age', 'event', 'builtin', 'const'


def expand(source: str) -> tuple[str, dict[str, Ref]]:
    """The CEL text with macros turned into variables and integer literals into doubles,
    and the macro variables it introduced."""
    out: list[str] = []
    refs: dict[str, Ref] = {}
    for m in _TOKEN.finditer(source):
        if m.group("macro"):
            fn, arg = m.group("fn"), m.group("arg")
            var = f"{fn}__{arg}"
            refs[var] = Ref(var, arg, fn)
            out.append(var)
        elif m.group("event"):
            name = m.group("ev")
            var = "event__" + re.sub(r"[^A-Za-z0-9_]", "_", name)
            refs[var] = Ref(var, name, "event")
            out.append(var)
        elif m.group("number"):
            text = m.group("number")
            if text[-1] in "uU" or "." in text or "e" in text or "E" in text:
                out.append(text)
            else:
                prev = "".join(out).rstrip()[-1:]
                out.append(text if prev == "[" else text + ".0")
        else:
            out.append(m.group(0))
    return "".join(out), refs


@dataclass(frozen=True)
class Expression:
    """A compiled expression and what it reads."""

    source: str
    program: Any  # cel.Program
    refs: tuple[Ref, ...]

    @cached_property
    def absent(self) -> frozenset[str]:
        """Metrics the expression asks `absent()` of: read as null there, not as no data."""
        return frozenset(r.metric for r in self.refs if r.how == "absent")

    @property
    def metrics(self) -> set[str]:
        return {r.metric for r in self.refs if r.how in ("value", "rate", "increase",
                                                         "absent", "age")}

    def run(self, variables: dict[str, Any]) -> Any:
        return self.program.execute(variables)


def compile_expr(source: str, metrics: set[str], consts: set[str],
                 extra: frozenset[str] = frozenset()) -> Expression:
    """Compile `source`; every variable must be a known metric, builtin, group var or one of
    `extra` (aggregate variables). Raises ExprError naming what is wrong."""
    text, macros = expand(source)
    try:
        program = cel.compile(text)
    except ValueError as exc:
        raise ExprError(_syntax_message(str(exc), source)) from None
    unknown_fn = sorted(f for f in program.functions() if f not in CEL_FUNCTIONS)
    if unknown_fn:
        raise ExprError(f"unknown function {', '.join(unknown_fn)}() (functions: rate, increase, "
                        f"absent, age, event and CEL's standard ones)")
    bound = set(_BOUND.findall(text))  # loop variables of exists/all/filter/map
    refs: list[Ref] = []
    for var in program.variables():
        if var in bound:
            continue
        if var in macros:
            ref = macros[var]
            if ref.how != "event" and ref.metric not in metrics:
                raise ExprError(_unknown_metric(ref.metric, metrics))
            refs.append(ref)
        elif var in BUILTINS or var in extra:
            refs.append(Ref(var, "", "builtin"))
        elif var in consts:
            refs.append(Ref(var, "", "const"))
        elif var in metrics:
            refs.append(Ref(var, var, "value"))
        else:
            raise ExprError(_unknown_metric(var, metrics | BUILTINS | consts | extra))
    refs.sort(key=lambda r: (_position(text, r.var), r.var))  # `value` is the first one read
    return Expression(source, program, tuple(refs))


def _position(text: str, var: str) -> int:
    m = re.search(rf"\b{re.escape(var)}\b", text)
    return m.start() if m else len(text)


def _unknown_metric(name: str, known: set[str] | frozenset[str]) -> str:
    import difflib

    hint = ""
    if name.startswith("vigil_") and name[6:] in known:
        hint = f" (write it without the prefix: '{name[6:]}')"
    else:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        if close:
            hint = f" (did you mean '{close[0]}'?)"
    return f"unknown metric or variable '{name}'{hint}"


def _syntax_message(message: str, source: str) -> str:
    """cel-rust's parse error, reduced to the position and the expected tokens."""
    first = message.splitlines()
    detail = next((ln for ln in first if "Syntax error" in ln or "ERROR" in ln), first[0])
    detail = re.sub(r"^.*?ERROR: <input>:", "at ", detail).strip()
    return f"syntax error {detail} in `{source}`"
