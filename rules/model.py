"""Rule files: what an engineer writes, validated with file and line for every mistake.

The shape follows Prometheus rule files (groups of rules with `for`, `keep_firing_for`,
labels, annotations), so engineers who know those read these at once. What a CCTV network
needs on top: a selector (which devices a rule watches), a contract level (1-4) that may
depend on the value, aggregates over a site or label group, and the topology role of a rule
(does its fault cut off what hangs behind the device, or is it a symptom such a cut explains).

Every key is documented here with `Field(description=...)`; docs/rules.md is generated from
these descriptions.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.settings import Duration, Strict, SubjectKind

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LANGUAGES = ("zh", "en")


class Selector(Strict):
    """Which devices a rule watches. Every key given must match (empty: every device)."""

    kinds: list[SubjectKind] = Field(default_factory=list,
                                     description="Device kinds, e.g. `[ups]`; "
                                                 "`earthing_point` for earthing points.")
    sites: list[str] = Field(default_factory=list, description="Site ids.")
    devices: list[str] = Field(default_factory=list, description="Device ids.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Inventory labels the device must carry with exactly these values.")


class LevelWhen(Strict):
    """A level that applies while its condition holds (the first that holds wins)."""

    when: str = Field(..., description="Expression; e.g. `ups_battery_charge_ratio < 0.2`.")
    level: int = Field(..., ge=1, le=4, description="Contract level 1 (worst) to 4.")


class Text(Strict):
    """A text in Chinese and English. Jinja2 template over the fault's values."""

    zh: str = Field(..., description="Chinese text (the default language).")
    en: str = Field("", description="English text (falls back to the Chinese one).")


class Topology(Strict):
    """The rule's role when devices depend on each other (inventory `uplink`/`powered_by`)."""

    cuts: list[Literal["uplink", "power"]] = Field(
        default_factory=list,
        description="This fault cuts off the devices behind this one: `uplink` (devices whose "
                    "uplink is this switch, or this port when the fault is about one port), "
                    "`power` (devices powered by this UPS, or this PoE port). Transitively.")
    symptom: bool = Field(
        False, description="A cut upstream explains this fault (device unreachable, stream "
                           "down): while one holds, this fault is kept as evidence on the root "
                           "fault and opens nothing of its own.")


class Aggregate(Strict):
    """Turns a rule into one over groups of devices: the expression sees `total`, `matched`,
    `no_data` and `ratio` (matched / total) of the selected devices in each group."""

    by: str = Field("site", description="`site`, or the name of an inventory label to group by.")
    member: str = Field(..., description="Expression per device: does this member count as "
                                         "matched (e.g. `up == 0.0`)?")
    min_members: int = Field(1, ge=1, description="Groups with fewer selected devices are "
                                                  "not evaluated.")


class Rule(Strict):
    name: str = Field(..., description="Rule name (CamelCase, the `alertname`), unique across "
                                       "all rule files.")
    select: Selector = Field(default_factory=Selector, description="Devices the rule watches.")
    expr: str = Field(..., description="CEL expression over the device's readings: true "
                                       "means faulty. See docs/rules.md for the variables.")
    level: int = Field(..., ge=1, le=4, description="Contract level when no `levels` entry "
                                                    "holds: 1 paralysed ... 4 information.")
    levels: list[LevelWhen] = Field(default_factory=list,
                                    description="Levels that depend on the value.")
    for_: Duration | None = Field(None, alias="for",
                                  description="How long the expression must hold before the "
                                              "fault fires (pending until then).")
    keep_firing_for: Duration | None = Field(
        None, description="Keep firing this long after the expression stopped holding.")
    clear: str | None = Field(
        None, description="Hysteresis: once firing, the fault resolves only when this "
                          "expression holds (e.g. fire above 35 °C, clear below 32 °C).")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels added to the fault "
                                                                     "(e.g. `cause: power`).")
    summary: Text | None = Field(None, description="One line: what is wrong.")
    description: Text | None = Field(None, description="Details and what to do.")
    topology: Topology = Field(default_factory=Topology, description="Role in the topology.")
    aggregate: Aggregate | None = Field(None, description="Evaluate over groups of devices.")
    promql: str | None = Field(None, description="PromQL for `vigil export prometheus-rules` "
                                                 "when the expression cannot be translated.")

    model_config = Strict.model_config | {"populate_by_name": True}

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"'{value}' must match [A-Za-z_][A-Za-z0-9_]*")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not NAME.match(key):
                raise ValueError(f"label name '{key}' must match [A-Za-z_][A-Za-z0-9_]*")
        return value

    @model_validator(mode="after")
    def _aggregate_has_no_topology_cut(self) -> Rule:
        if self.aggregate is not None and self.topology.cuts:
            raise ValueError("an aggregate rule is about a group, it cannot cut devices off "
                             "(`topology.cuts`)")
        return self


class Group(Strict):
    name: str = Field(..., description="Group name (for messages and metrics).")
    vars: dict[str, Any] = Field(
        default_factory=dict,
        description="Constants the group's expressions may use, e.g. an approved firmware "
                    "list `{approved_firmware: {'DS-2DE4425IW-DE': ['V5.6.0']}}`.")
    rules: list[Rule] = Field(..., description="The rules.")

    @field_validator("vars")
    @classmethod
    def _var_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not NAME.match(str(key)):
                raise ValueError(f"variable name '{key}' must match [A-Za-z_][A-Za-z0-9_]*")
        return value


class InhibitRule(Strict):
    """Alertmanager's inhibition: while a fault matching `source_matchers` fires, faults
    matching `target_matchers` with the same values of the `equal` labels are inhibited."""

    source_matchers: list[str] = Field(..., description="Matchers like `alertname=\"SiteDown\"`"
                                                        ", `level=~\"1|2\"`.")
    target_matchers: list[str] = Field(..., description="Matchers of the faults to inhibit.")
    equal: list[str] = Field(default_factory=list, description="Labels that must be equal "
                                                               "(e.g. `[site]`).")


class RuleFile(Strict):
    """Top level of a rule file."""

    groups: list[Group] = Field(default_factory=list, description="Rule groups.")
    inhibit_rules: list[InhibitRule] = Field(default_factory=list,
                                             description="Inhibition rules.")
