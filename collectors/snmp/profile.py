"""Device profiles: what to poll on a device model and how each OID becomes a metric.

A profile is data (YAML), in the shape of snmp_exporter's modules: scalars to GET, table
columns to walk, index labels, lookups that turn an index into a readable label, enum maps,
scales and regex extracts. Adding a device model means writing a profile, never Python.
This module loads and validates profiles and compiles each into a PollPlan: the OIDs to fetch
and the per-metric recipes the collector applies to the answers.

Profile file keys are documented on the models below and in docs/profiles.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from agent.validation import load_valid
from agent.yamlfile import ConfigError, ConfigErrors, Document
from collectors.traps.mapping import TrapDef
from collectors.vocabulary import MetricSpec, VocabularyEntry, load_vocabulary

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "profiles"

_OID = re.compile(r"^\.?[0-2](\.\d+)+$")
_METRIC = re.compile(r"^[a-z][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
RESERVED_LABELS = frozenset({"device", "site", "kind", "agent", "job", "instance", "reason"})


def _oid(value: Any) -> str:
    text = str(value).strip()
    if not _OID.match(text):
        raise ValueError(f"'{value}' is not a numeric OID (e.g. 1.3.6.1.2.1.33.1.2.1)")
    return text.lstrip(".")


Oid = Annotated[str, BeforeValidator(_oid)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _enum_keys(value: Any) -> Any:
    """YAML enum maps may use int or str keys; store them as int where they look like ints."""
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        text = str(key)
        out[int(text) if re.fullmatch(r"-?\d+", text) else text] = item
    return out


EnumMap = Annotated[dict[int | str, str], BeforeValidator(_enum_keys)]
ValueMap = Annotated[dict[int | str, float], BeforeValidator(_enum_keys)]


class Source(_Model):
    """One OID a value may come from; a list of sources is tried in order per row."""

    oid: Oid = Field(..., description="Numeric OID of the scalar (without `.0`) or column.")
    scale: float = Field(1.0, description="Multiply this source's value by this factor.")


def _sources(value: Any) -> Any:
    if isinstance(value, (str, int, float)):
        return [{"oid": str(value)}]
    if isinstance(value, list):
        return [{"oid": str(v)} if isinstance(v, (str, int, float)) else v for v in value]
    return value


Sources = Annotated[list[Source], BeforeValidator(_sources)]


class Index(_Model):
    """One component of a table row's index, turned into a label."""

    label: str = Field(..., pattern=r"^[a-z_][a-z0-9_]*$", description="Label name.")
    type: Literal["int", "string", "ipv4", "mac", "rest"] = Field(
        "int", description="`int`: one sub-identifier; `string`: length-prefixed octets; "
                           "`ipv4`: four; `mac`: six, shown as aa:bb:..; `rest`: everything left, "
                           "as dotted numbers.")


class Lookup(_Model):
    """A label whose value is read from another column of the same row (e.g. ifName)."""

    label: str = Field(..., pattern=r"^[a-z_][a-z0-9_]*$", description="Label name.")
    oid: Sources = Field(..., description="Column OID, or a list tried in order per row "
                                          "(e.g. ifName, then ifDescr).")
    enum: EnumMap | None = Field(None, description="Map numeric values to names.")
    format: Literal["text", "hex", "mac"] = Field("text", description="How octets are shown.")


class Factor(_Model):
    """A per-row multiplier read from another column of the same row. With neither `power10`
    nor `map`, the value is multiplied by that column's value (e.g. hrStorageAllocationUnits)."""

    oid: Oid = Field(..., description="Column OID in the same table.")
    power10: int = Field(0, description="Multiply by 10^(power10 x value), e.g. -1 for a "
                                        "'precision' column that counts decimal places.")
    map: ValueMap | None = Field(None, description="Multiply by map[value] (e.g. a scale "
                                                   "column: {8: 0.001, 9: 1, default: 1}).")

    @model_validator(mode="after")
    def _one_mode(self) -> Factor:
        if self.power10 and self.map is not None:
            raise ValueError("give 'power10' or 'map', not both")
        return self


class InfoLabel(_Model):
    """One label of an info metric: a constant `value`, or read from a scalar `oid`."""

    oid: Sources | None = Field(None, description="Scalar OID(s), first present wins.")
    value: str | None = Field(None, description="A constant value.")
    regex: str | None = Field(None, description="Regex applied to the text; the first group "
                                                "(or the whole match) becomes the label value.")

    @model_validator(mode="after")
    def _one(self) -> InfoLabel:
        if (self.oid is None) == (self.value is None):
            raise ValueError("give exactly one of 'oid' or 'value'")
        if self.regex:
            re.compile(self.regex)
        return self


def _info_labels(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ({"value": v} if isinstance(v, str) and not _OID.match(v) else
                    {"oid": v} if isinstance(v, str) else v) for k, v in value.items()}
    return value


class MetricDef(_Model):
    """How one OID (scalar or table column) becomes one metric."""

    name: str = Field(..., description="Metric name without the `vigil_` prefix, in base units "
                                       "(`_seconds`, `_volts`, `_ratio`, counters end in "
                                       "`_total`). May contain `{label}` placeholders filled "
                                       "from an enum lookup, e.g. `sensor_{unit}`.")
    oid: Sources | None = Field(None, description="Scalar OID (without `.0`) or table column; "
                                                  "a list is tried in order per row.")
    type: Literal["gauge", "counter", "info"] = Field(
        "gauge", description="`gauge`, `counter` (name ends in `_total`) or `info` (labels "
                             "from `labels`, value 1).")
    help: str | None = Field(None, description="Help text; defaults to the vocabulary's.")
    indexes: list[Index] = Field(default_factory=list,
                                 description="Index labels; empty means a scalar (GET oid.0).")
    lookups: list[Lookup] = Field(default_factory=list,
                                  description="Labels read from other columns of the row.")
    labels: Annotated[dict[str, InfoLabel | str], BeforeValidator(_info_labels)] = Field(
        default_factory=dict,
        description="Constant labels (`phase: L1`); for `info` metrics, labels read from "
                    "scalar OIDs (`model: {oid: ..., regex: ...}`).")
    enum: EnumMap | None = Field(None, description="Names of the numeric values (for display "
                                                   "and rules); the exported value stays the "
                                                   "number.")
    map: ValueMap | None = Field(None, description="Replace values before scaling, e.g. "
                                                   "`{5: 1, default: 0}` for 'on battery'.")
    scale: float = Field(1.0, description="Multiply the value (after `map`).")
    offset: float = Field(0.0, description="Add after scaling.")
    regex: str | None = Field(None, description="For string values: regex whose first group "
                                                "is the number (e.g. `^([-0-9.]+)`).")
    invalid: list[float] = Field(default_factory=list,
                                 description="Raw values meaning 'no reading' (skipped).")
    factors: list[Factor] = Field(default_factory=list, description="Per-row multipliers.")
    skip_missing: bool = Field(True, description="A row or scalar that is absent is skipped "
                                                 "quietly (most MIBs are partly implemented).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _METRIC.match(_PLACEHOLDER.sub("x", value)):
            raise ValueError(f"'{value}' is not a metric name ([a-z][a-z0-9_]*)")
        return value

    @model_validator(mode="after")
    def _shape(self) -> MetricDef:
        if self.type == "info":
            if self.oid is not None:
                raise ValueError("an info metric takes its values from 'labels', not 'oid'")
            if not self.labels:
                raise ValueError("an info metric needs 'labels'")
        elif self.oid is None:
            raise ValueError("'oid' is required")
        else:
            for label, spec in self.labels.items():
                if not isinstance(spec, InfoLabel) or spec.value is None:
                    raise ValueError(f"label '{label}': only info metrics read labels from OIDs; "
                                     f"use a lookup for a table column")
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter '{self.name}' must end in _total")
        if self.type != "counter" and self.name.endswith("_total"):
            raise ValueError(f"only counters may end in _total ('{self.name}' is a {self.type})")
        if self.regex:
            re.compile(self.regex)
        used = ({i.label for i in self.indexes} | {lk.label for lk in self.lookups}
                | set(self.labels))
        if used & RESERVED_LABELS:
            raise ValueError(f"label names {sorted(used & RESERVED_LABELS)} are reserved for the "
                             f"agent (device, site, kind, ...): choose another")
        placeholders = set(_PLACEHOLDER.findall(self.name))
        enum_lookups = {lk.label for lk in self.lookups if lk.enum}
        if placeholders - enum_lookups:
            missing = ", ".join(sorted(placeholders - enum_lookups))
            raise ValueError(f"name placeholders need a lookup with an enum: {missing}")
        return self


class Match(_Model):
    """How a device is recognised when the inventory gives no profile."""

    sys_object_id: list[Oid] = Field(default_factory=list,
                                     description="sysObjectID prefixes; the longest match wins.")
    sys_descr: list[str] = Field(default_factory=list,
                                 description="Regexes searched in sysDescr (case-insensitive).")
    oid_present: list[Oid] = Field(
        default_factory=list,
        description="OIDs whose presence identifies the device (for devices without a "
                    "system group, e.g. some cameras).")

    @field_validator("sys_descr")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        for item in value:
            re.compile(item)
        return value


class BatteryTest(_Model):
    """How to start and follow a UPS battery test over SNMP (see docs/ups-test.md). UPS-MIB
    (RFC 1628) declares it in ups-mib.yaml; a vendor profile may declare its own."""

    start: Oid = Field(..., description="Scalar OID (without `.0`) written to start a test, "
                                        "e.g. upsTestId 1.3.6.1.2.1.33.1.7.1.")
    type: Literal["oid", "integer"] = Field("oid", description="SNMP type of the value "
                                                                "written to `start`.")
    modes: dict[Literal["quick", "deep"], str] = Field(
        ..., min_length=1, description="Value written per test kind: `quick` (a short battery "
                                       "test), `deep` (a discharge to low battery).")
    spin_lock: Oid | None = Field(None, description="TestAndIncr spin lock read before and "
                                                    "written with the start (upsTestSpinLock).")
    result: Oid = Field(..., description="Scalar OID of the test result summary.")
    result_map: Annotated[dict[int | str, int], BeforeValidator(_enum_keys)] = Field(
        default_factory=dict,
        description="Vendor result codes onto UPS-MIB's (1 pass, 2 warning, 3 error, "
                    "4 aborted, 5 in progress, 6 none); empty: the codes are UPS-MIB's.")
    detail: Oid | None = Field(None, description="Scalar OID of the result detail text.")


class ProfileFile(_Model):
    """Top level of a profile file (`<name>.yaml`)."""

    name: str = Field(..., description="Profile name; must equal the file name without .yaml.")
    description: str = Field("", description="What devices this profile is for.")
    kinds: list[str] = Field(default_factory=list, description="Device kinds it suits.")
    include: list[str] = Field(default_factory=list,
                               description="Other profiles whose metrics are polled too.")
    match: Match = Field(default_factory=Match, description="Auto-detection rules.")
    priority: int = Field(0, description="Breaks ties between matching profiles (higher wins).")
    metrics: list[MetricDef] = Field(default_factory=list, description="The metrics.")
    battery_test: BatteryTest | None = Field(
        None, description="The UPS battery test this device can run (docs/ups-test.md).")
    traps: list[TrapDef] = Field(
        default_factory=list,
        description="SNMP traps these devices send and the events they become (see "
                    "docs/events-and-reachability.md).")


# ---------------------------------------------------------------------------------------
# Compiled form


@dataclass
class CompiledMetric:
    """A MetricDef with everything the collector needs per row precomputed once."""

    definition: MetricDef
    profile: str
    scalar: bool
    sources: list[Source]
    names: dict[str, str]  # placeholder value -> expanded name ({'': name} without one)
    placeholder: str | None
    pattern: re.Pattern[str] | None
    invalid: frozenset[float]
    constant_labels: dict[str, str]
    label_key: str  # equal for metrics whose rows get the same labels
    divisor: float  # scale 0.1 is applied as / 10, so 599 reads 59.9, not 59.900000000000006


def _compile_metric(metric: MetricDef, profile: str) -> CompiledMetric:
    constants = {k: v.value for k, v in metric.labels.items()
                 if isinstance(v, InfoLabel) and v.value is not None and metric.type != "info"}
    placeholders = _PLACEHOLDER.findall(metric.name)
    return CompiledMetric(
        definition=metric, profile=profile, scalar=not metric.indexes,
        sources=list(metric.oid or []), names=_expanded_names(metric),
        placeholder=placeholders[0] if placeholders else None,
        pattern=re.compile(metric.regex) if metric.regex else None,
        invalid=frozenset(metric.invalid), constant_labels=constants,
        label_key=repr((metric.indexes, metric.lookups, sorted(constants.items()))),
        divisor=divisor_of(metric.scale))


def divisor_of(scale: float) -> float:
    """10 for a scale of 0.1 (and so on), else 0: dividing keeps decimal values exact."""
    if 0 < scale < 1:
        inverse = 1 / scale
        if abs(inverse - round(inverse)) < 1e-9:
            return float(round(inverse))
    return 0.0


@dataclass
class PollPlan:
    """Everything one poll of one profile needs: scalars to GET, columns to walk, metrics."""

    profile: str
    scalars: list[str]  # base OIDs; fetched as oid.0 with a fallback to the bare OID
    columns: list[str]  # column OIDs walked
    fallback_columns: dict[str, list[str]]  # column -> alternatives, walked for missing rows
    row_groups: list[tuple[str, ...]]  # first-choice columns read together for one metric
    metrics: list[CompiledMetric]


@dataclass
class Profile:
    name: str
    file: Path
    doc: Document
    model: ProfileFile
    plan: PollPlan | None = None


@dataclass
class ProfileSet:
    """All loaded profiles, the metric catalogue, and each profile's compiled plan."""

    profiles: dict[str, Profile]
    catalogue: dict[str, MetricSpec]

    def plan(self, name: str) -> PollPlan:
        plan = self.profiles[name].plan
        assert plan is not None
        return plan

    def names(self) -> set[str]:
        return set(self.profiles)

    def battery_test(self, name: str) -> BatteryTest | None:
        """The battery test of profile `name`: its own, else the last included one's."""
        found = None
        for part in _included(self.profiles[name], self.profiles):
            found = part.model.battery_test or found
        return found


def load_profiles(extra_dirs: list[Path] = ()) -> ProfileSet:
    """Load built-in profiles, then extra directories (same name replaces), and compile."""
    vocabulary = load_vocabulary()
    errors: list[ConfigError] = []
    profiles: dict[str, Profile] = {}
    for directory in [BUILTIN_DIR, *extra_dirs]:
        if not directory.is_dir():
            errors.append(ConfigError(directory, None, "", "profile directory does not exist"))
            continue
        for file in sorted(directory.glob("*.yaml")):
            loaded = load_valid(ProfileFile, file, errors)
            if loaded is None:
                continue
            doc, model = loaded
            if model.name != file.stem:
                errors.append(doc.error(("name",), f"profile name '{model.name}' must match "
                                                   f"the file name '{file.stem}'"))
                continue
            profiles[model.name] = Profile(model.name, file, doc, model)
    catalogue: dict[str, MetricSpec] = {}
    owner: dict[str, str] = {}
    helps = {name: entry.help for name, entry in vocabulary.items()}
    for profile in profiles.values():  # a help text given once serves every profile
        for metric in profile.model.metrics:
            for name in _expanded_names(metric).values():
                if metric.help:
                    helps.setdefault(name, metric.help)
    for profile in profiles.values():
        errors.extend(_check_includes(profile, profiles))
        for i, metric in enumerate(profile.model.metrics):
            for name in _expanded_names(metric).values():
                errors.extend(_catalogue_add(catalogue, owner, vocabulary, helps, profile, i,
                                             metric, name))
    for name, entry in vocabulary.items():  # what other collectors produce, too
        catalogue.setdefault(name, MetricSpec(name, entry.type, entry.help))
    if not errors:
        for profile in profiles.values():
            profile.plan = _compile(profile, profiles)
    if errors:
        raise ConfigErrors(errors)
    return ProfileSet(profiles, catalogue)


def _expanded_names(metric: MetricDef) -> dict[str, str]:
    """Metric names a definition can produce: {'': name} or one per enum value of the lookup."""
    placeholders = _PLACEHOLDER.findall(metric.name)
    if not placeholders:
        return {"": metric.name}
    lookup = next(lk for lk in metric.lookups if lk.label == placeholders[0])
    assert lookup.enum is not None
    return {str(v): metric.name.replace("{" + lookup.label + "}", v)
            for v in lookup.enum.values()}


def _catalogue_add(catalogue: dict[str, MetricSpec], owner: dict[str, str],
                   vocabulary: dict[str, VocabularyEntry], helps: dict[str, str],
                   profile: Profile, index: int, metric: MetricDef,
                   name: str) -> list[ConfigError]:
    where = ("metrics", index, "name")
    known = vocabulary.get(name)
    if known is not None and known.type != metric.type:
        return [profile.doc.error(where, f"'{name}' is a {known.type} in the metric vocabulary "
                                         f"(collectors/snmp/metrics.yaml), not a {metric.type}")]
    help_text = helps.get(name)
    if help_text is None:
        return [profile.doc.error(where, f"'{name}' is not in the metric vocabulary: give it "
                                         f"a 'help' text")]
    spec = MetricSpec(name, metric.type, help_text)
    first = catalogue.get(name)
    if first is None:
        catalogue[name] = spec
        owner[name] = profile.name
    elif first.type != spec.type:
        return [profile.doc.error(where, f"'{name}' is a {spec.type} here but a {first.type} "
                                         f"in profile '{owner[name]}'")]
    return []


def _check_includes(profile: Profile, profiles: dict[str, Profile]) -> list[ConfigError]:
    errors = []
    for i, name in enumerate(profile.model.include):
        if name not in profiles:
            errors.append(profile.doc.error(("include", i), f"unknown profile '{name}'"))
    seen: set[str] = set()

    def visit(name: str, chain: list[str]) -> None:
        if name in chain:
            errors.append(profile.doc.error(("include",), "include cycle: "
                                                          + " -> ".join([*chain, name])))
            return
        if name in seen or name not in profiles:
            return
        seen.add(name)
        for sub in profiles[name].model.include:
            visit(sub, [*chain, name])

    visit(profile.name, [])
    return errors


def _included(profile: Profile, profiles: dict[str, Profile]) -> list[Profile]:
    """The profile and everything it includes, each once, includes first."""
    order: list[Profile] = []
    seen: set[str] = set()

    def visit(p: Profile) -> None:
        if p.name in seen:
            return
        seen.add(p.name)
        for sub in p.model.include:
            visit(profiles[sub])
        order.append(p)

    visit(profile)
    return order


def _compile(profile: Profile, profiles: dict[str, Profile]) -> PollPlan:
    scalars: list[str] = []
    columns: list[str] = []
    fallbacks: dict[str, list[str]] = {}
    groups: list[tuple[str, ...]] = []
    metrics: list[CompiledMetric] = []

    def want_scalar(oid: str) -> None:
        if oid not in scalars:
            scalars.append(oid)

    def want_column(sources: list[Source]) -> None:
        first = sources[0].oid
        if first not in columns:
            columns.append(first)
        alternatives = [s.oid for s in sources[1:]]
        if alternatives:
            known = fallbacks.setdefault(first, [])
            known.extend(a for a in alternatives if a not in known)

    for part in _included(profile, profiles):
        for metric in part.model.metrics:
            scalar = not metric.indexes
            if metric.type == "info":
                for label in metric.labels.values():
                    if isinstance(label, InfoLabel) and label.oid:
                        for source in label.oid:
                            want_scalar(source.oid)
            elif scalar:
                for source in metric.oid or []:
                    want_scalar(source.oid)
            else:
                want_column(metric.oid or [])
                for lookup in metric.lookups:
                    want_column(lookup.oid)
                for factor in metric.factors:
                    want_column([Source(oid=factor.oid)])
                group = tuple(dict.fromkeys([metric.oid[0].oid if metric.oid else ""]
                                            + [lk.oid[0].oid for lk in metric.lookups]))
                if group not in groups:
                    groups.append(group)
            metrics.append(_compile_metric(metric, part.name))
    return PollPlan(profile.name, scalars, columns, fallbacks, groups, metrics)
