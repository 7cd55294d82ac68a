"""Trap mappings: which SNMP notification becomes which event reading.

A mapping is data (YAML), in the `traps:` section of a device profile or of
collectors/traps/standard.yaml (SNMPv2-MIB/IF-MIB generic traps and RFC 1628 UPS-MIB):

```yaml
traps:
  - oid: 1.3.6.1.6.3.1.1.5.3          # linkDown (snmpTrapOID.0)
    name: linkDown
    event: link_down                   # event reading: vigil_event{event="link_down"}
    value: 1                           # 1 raised / happened, 0 cleared
    labels:
      if_index:                        # the first source found wins
        varbind:
          - 1.3.6.1.2.1.2.2.1.1        # ifIndex: its value
          - {oid: 1.3.6.1.2.1.2.2.1.8, part: index}   # else ifOperStatus.N: the N
      if_name:
        varbind: [1.3.6.1.2.1.31.1.1.1.1, 1.3.6.1.2.1.2.2.1.2]    # ifName, else ifDescr
  - oid: 1.3.6.1.6.3.1.1.5.4          # linkUp clears the same event (same labels)
    event: link_down
    value: 0
    labels: ...
```

A varbind source names an OID *prefix*: the trap's first variable binding whose OID is the
prefix or lies under it is used (`ifName` matches `ifName.3`). An SNMPv1 trap is matched in
its SNMPv2 form (RFC 3584): generic traps as the SNMPv2 OIDs above, enterprise-specific ones
as `enterprise.0.specific`; a mapping written as `enterprise.specific` (how RFC 1628 numbers
the UPS-MIB traps) matches both forms. Several mappings may share an OID (one trap, several
events; `when` picks among them).

Profiles' mappings are loaded with the standard ones; a profile that maps an OID the
standard file maps replaces the standard entries for that OID. Two profiles mapping one OID
differently is an error (trap OIDs are global: a trap carries no profile).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from agent import yamlfile
from agent.validation import validate
from agent.yamlfile import ConfigError, ConfigErrors, Document
from collectors.reading import Reading, event

STANDARD_FILE = Path(__file__).resolve().parent / "standard.yaml"

_OID = re.compile(r"^\.?[0-2](\.\d+)+$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
RESERVED_LABELS = frozenset({"device", "site", "kind", "agent", "job", "instance", "reason",
                             "event", "source"})


def _oid(value: Any) -> str:
    text = str(value).strip()
    if not _OID.match(text):
        raise ValueError(f"'{value}' is not a numeric OID (e.g. 1.3.6.1.2.1.33.2.1)")
    return text.lstrip(".")


Oid = Annotated[str, BeforeValidator(_oid)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _keys_as_text(value: Any) -> Any:
    """Enum/map keys may be ints or OIDs in YAML; compare them as text."""
    if not isinstance(value, dict):
        return value
    return {str(k).strip().lstrip(".") if _OID.match(str(k).strip()) else str(k): v
            for k, v in value.items()}


TextMap = Annotated[dict[str, str], BeforeValidator(_keys_as_text)]
NumberMap = Annotated[dict[str, float], BeforeValidator(_keys_as_text)]


class VarbindRef(_Model):
    """One variable binding a value may come from."""

    oid: Oid = Field(..., description="OID prefix: the first varbind at or under it is used.")
    part: Literal["value", "index"] = Field(
        "value", description="`value`: the varbind's value; `index`: what follows the prefix "
                             "in the varbind's OID, as dotted numbers (e.g. the 3 of "
                             "ifOperStatus.3).")


def _refs(value: Any) -> Any:
    if isinstance(value, (str, int, float)):
        return [{"oid": str(value)}]
    if isinstance(value, list):
        return [{"oid": str(v)} if isinstance(v, (str, int, float)) else v for v in value]
    return value


VarbindRefs = Annotated[list[VarbindRef], BeforeValidator(_refs)]


class FromVarbind(_Model):
    """A text read from the trap's varbinds: a label, the event's text, or a `when` test."""

    varbind: VarbindRefs = Field(..., description="OID prefix, or a list tried in order "
                                                  "(`{oid, part}` entries or plain OIDs).")
    enum: TextMap | None = Field(None, description="Replace the text by a name (keys: numbers "
                                                   "or OIDs as the varbind shows them); "
                                                   "unlisted values stay as they are.")
    format: Literal["text", "hex", "mac"] = Field(
        "text", description="How an OCTET STRING is shown: `text` (UTF-8 when printable, else "
                            "hex), `hex` (0a1b2c) or `mac` (0a:1b:2c:...).")
    default: str = Field("", description="Used when no source varbind is in the trap.")


def _label(value: Any) -> Any:
    return {"constant": value} if isinstance(value, (str, int, float)) else value


class Constant(_Model):
    constant: str = Field(..., description="A constant label value.")


class ValueFrom(_Model):
    """The event's value read from a varbind, e.g. a status that is 1 for on and 2 for off."""

    varbind: VarbindRefs = Field(..., description="OID prefix(es) of the varbind.")
    map: NumberMap = Field(..., description="Varbind value -> event value; the key `default` "
                                            "is used for unlisted values (else the trap gives "
                                            "no event).")


class When(_Model):
    """Apply the mapping only when a varbind has one of the given values."""

    varbind: VarbindRefs = Field(..., description="OID prefix(es) of the varbind tested.")
    equals: Annotated[list[str], BeforeValidator(
        lambda v: [str(x).strip().lstrip(".") if _OID.match(str(x).strip()) else str(x)
                   for x in (v if isinstance(v, list) else [v])])] = Field(
        ..., description="Values (numbers, text or OIDs) that select this mapping.")


class TrapDef(_Model):
    """How one notification (trap or inform) becomes one event reading."""

    oid: Oid = Field(..., description="The notification's OID (snmpTrapOID.0). SNMPv1 traps "
                                      "are matched as `enterprise.0.specific` or, for the "
                                      "generic ones, as their SNMPv2 OIDs (RFC 3584).")
    name: str = Field("", description="The notification's MIB name, for the log and docs "
                                      "(e.g. upsTrapOnBattery).")
    description: str = Field("", description="What the trap means.")
    event: str = Field(..., description="Event name ([a-z][a-z0-9_]*), exported as "
                                        "vigil_event{event=...}. A trap and the one that "
                                        "clears it use the same name (linkDown 1, linkUp 0).")
    value: float = Field(1.0, description="Event value: 1 the condition holds or happened, "
                                          "0 it cleared.")
    value_from: ValueFrom | None = Field(None, description="Read the value from a varbind "
                                                           "instead of `value`.")
    labels: dict[str, Annotated[Constant | FromVarbind, BeforeValidator(_label)]] = Field(
        default_factory=dict,
        description="Labels of the event: a constant (`phase: L1`) or read from the trap's "
                    "varbinds (`if_index: {varbind: 1.3.6.1.2.1.2.2.1.1}`). A raise and its "
                    "clear must produce the same labels.")
    text: FromVarbind | None = Field(None, description="The reading's text (e.g. an alarm "
                                                       "description), from a varbind.")
    when: When | None = Field(None, description="Only when a varbind has one of these values.")

    @field_validator("event")
    @classmethod
    def _event(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"'{value}' is not an event name ([a-z][a-z0-9_]*)")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"'{name}' is not a label name ([a-z][a-z0-9_]*)")
            if name in RESERVED_LABELS:
                raise ValueError(f"label '{name}' is reserved for the agent "
                                 f"({', '.join(sorted(RESERVED_LABELS))}): choose another")
        return value

    @model_validator(mode="after")
    def _one_value(self) -> TrapDef:
        if self.value_from is not None and "value" in self.model_fields_set:
            raise ValueError("give 'value' or 'value_from', not both")
        return self


class TrapsFile(_Model):
    """A trap mapping file (collectors/traps/standard.yaml): the `traps:` section alone."""

    description: str = Field("", description="What the mappings are for.")
    traps: list[TrapDef] = Field(default_factory=list, description="The mappings.")


class _TrapsSection(BaseModel):
    """Only the `traps:` key of a profile file (the other keys are the profile loader's)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    traps: list[TrapDef] = Field(default_factory=list, description="The mappings.")


# ---------------------------------------------------------------------------------------
# Applying mappings to a received notification

Varbinds = Sequence[tuple[str, str, bytes | None]]
"""A notification's variable bindings: (dotted OID, value as text, the octets of an OCTET
STRING value or None)."""


def _find(refs: Sequence[VarbindRef], varbinds: Varbinds) -> tuple[str, bytes | None] | None:
    for ref in refs:
        prefix = ref.oid
        for oid, text, octets in varbinds:
            if oid == prefix:
                return (text, octets) if ref.part == "value" else ("", None)
            if oid.startswith(prefix) and oid[len(prefix)] == ".":
                return (text, octets) if ref.part == "value" else (oid[len(prefix) + 1:], None)
    return None


def _read(source: FromVarbind, varbinds: Varbinds) -> str:
    found = _find(source.varbind, varbinds)
    if found is None:
        return source.default
    text, octets = found
    if octets is not None and source.format != "text":
        text = octets.hex(":" if source.format == "mac" else "")
    if source.enum:
        return source.enum.get(text, text)
    return text


@dataclass(frozen=True)
class Match:
    """A mapping and where it was defined (for the log and for conflicts)."""

    definition: TrapDef
    origin: str  # "standard" or the profile name


class TrapMappings:
    """All mappings by notification OID; turns a notification into event readings."""

    def __init__(self, by_oid: dict[str, list[Match]]):
        self.by_oid = by_oid

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_oid.values())

    def lookup(self, trap_oid: str) -> list[Match]:
        found = self.by_oid.get(trap_oid)
        if found is None:  # RFC 3584: v1 enterprise.0.specific vs a v2 OID enterprise.specific
            head, _, last = trap_oid.rpartition(".")
            if head.endswith(".0"):
                found = self.by_oid.get(f"{head[:-2]}.{last}")
        return found or []

    def events(self, device: str, trap_oid: str, varbinds: Varbinds, timestamp: float
               ) -> list[Reading] | None:
        """The event readings of one notification; None if no mapping knows its OID."""
        matches = self.lookup(trap_oid)
        if not matches:
            return None
        out = []
        for match in matches:
            trap = match.definition
            if trap.when is not None:
                seen = _find(trap.when.varbind, varbinds)
                if seen is None or seen[0] not in trap.when.equals:
                    continue
            value = trap.value
            if trap.value_from is not None:
                raw = _find(trap.value_from.varbind, varbinds)
                mapped = trap.value_from.map.get(raw[0]) if raw is not None else None
                if mapped is None:
                    mapped = trap.value_from.map.get("default")
                if mapped is None:
                    continue
                value = mapped
            labels = {name: (spec.constant if isinstance(spec, Constant)
                             else _read(spec, varbinds))
                      for name, spec in trap.labels.items()}
            if trap.text is not None:
                text = _read(trap.text, varbinds) or None
            else:
                text = trap.name or None
            out.append(event(device, trap.event, "trap", value, timestamp, text, **labels))
        return out


# ---------------------------------------------------------------------------------------
# Loading


def load_mappings(profiles: Any = None, *, standard: bool = True,
                  files: Iterable[Path] = ()) -> TrapMappings:
    """The standard mappings, then each profile's `traps:` section.

    `profiles`: a collectors.snmp.profile.ProfileSet (its profiles' documents are read), or
    an iterable of profile file paths, or None. `files`: more files with a `traps:` key.
    Raises agent.yamlfile.ConfigErrors naming file and line of every mistake."""
    errors: list[ConfigError] = []
    sources: list[tuple[str, Document, list[TrapDef]]] = []
    if standard:
        doc = yamlfile.load(STANDARD_FILE)
        try:
            sources.append(("standard", doc, validate(TrapsFile, doc).traps))
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    for name, doc, model in _profile_documents(profiles, files, errors):
        try:
            if model is not None:
                defs = model
            else:
                data = doc.data if isinstance(doc.data, dict) else {}
                defs = validate(_TrapsSection, doc, {"traps": data.get("traps") or []}).traps
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            continue
        if defs:
            sources.append((name, doc, defs))
    by_oid: dict[str, list[Match]] = {}
    owner: dict[str, tuple[str, Document]] = {}
    for name, doc, defs in sources:
        grouped: dict[str, tuple[list[Match], int]] = {}
        for i, trap in enumerate(defs):
            grouped.setdefault(trap.oid, ([], i))[0].append(Match(trap, name))
        for oid, (matches, index) in grouped.items():
            first = owner.get(oid)
            if first is None or first[0] == "standard":
                by_oid[oid] = matches
                owner[oid] = (name, doc)
            elif [m.definition for m in by_oid[oid]] != [m.definition for m in matches]:
                errors.append(doc.error(("traps", index, "oid"),
                                        f"trap {oid} is mapped differently in profile "
                                        f"'{first[0]}' ({first[1].file}): a trap carries no "
                                        f"profile, so give it one mapping"))
    if errors:
        raise ConfigErrors(errors)
    return TrapMappings(by_oid)


def _profile_documents(profiles: Any, files: Iterable[Path], errors: list[ConfigError]
                       ) -> list[tuple[str, Document, list[TrapDef] | None]]:
    out: list[tuple[str, Document, list[TrapDef] | None]] = []
    if profiles is not None and hasattr(profiles, "profiles"):  # a ProfileSet
        for profile in profiles.profiles.values():
            known = getattr(profile.model, "traps", None)  # once ProfileFile has the key
            out.append((profile.name, profile.doc, list(known) if known is not None else None))
        paths: list[Path] = []
    else:
        paths = [Path(p) for p in (profiles or [])]
    for path in [*paths, *files]:
        try:
            doc = yamlfile.load(path)
        except ConfigError as exc:
            errors.append(exc)
            continue
        name = doc.data.get("name", path.stem) if isinstance(doc.data, dict) else path.stem
        out.append((str(name), doc, None))
    return out
