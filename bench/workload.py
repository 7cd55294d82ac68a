"""The work of one device poll, derived from a Vigil profile, for every contender.

Vigil polls with the profile itself. The same OIDs are given to the others:
- snmp_exporter: a module (0.21 format: version/auth/timeout/retries inside the module) that
  GETs the profile's scalars as `oid.0` and walks the profile's columns, with one metric per
  OID, the same index labels and the same lookups (e.g. ifName as the interface label);
- snmpbulkget: one GETBULK per device, the scalars as non-repeaters (GETNEXT of the bare OID
  gives `oid.0`) and the columns as repeaters, with enough repetitions to reach the end of
  every column in that one request.
"""

from __future__ import annotations

import re

import yaml

from collectors.snmp.profile import InfoLabel, PollPlan

TIMEOUT = 2.0
RETRIES = 1
MAX_REPETITIONS = 25


def _name(prefix: str, oid: str) -> str:
    return f"{prefix}_{oid.replace('.', '_')}"


def exporter_module(plan: PollPlan, community: str, module: str = "vigil_bench") -> dict:
    """snmp.yml (0.21) with one module for the plan's OIDs."""
    strings: set[str] = set()
    for compiled in plan.metrics:
        if compiled.definition.type == "info":
            for label in compiled.definition.labels.values():
                if isinstance(label, InfoLabel) and label.oid:
                    strings.update(s.oid for s in label.oid)
    metrics: list[dict] = []
    for oid in plan.scalars:
        metrics.append({"name": _name("s", oid), "oid": oid,
                        "type": "DisplayString" if oid in strings else "gauge"})
    seen: set[str] = set()
    for compiled in plan.metrics:
        definition = compiled.definition
        if compiled.scalar or definition.type == "info" or not compiled.sources:
            continue
        oid = compiled.sources[0].oid
        if oid in seen:
            continue
        seen.add(oid)
        indexes = [{"labelname": index.label,
                    "type": "gauge" if index.type == "int" else "DisplayString"}
                   for index in definition.indexes]
        lookups = [{"labels": [index.label for index in definition.indexes],
                    "labelname": lookup.label, "oid": lookup.oid[0].oid,
                    "type": "gauge" if lookup.enum else "DisplayString"}
                   for lookup in definition.lookups]
        entry = {"name": _name("c", oid), "oid": oid,
                 "type": "counter" if definition.type == "counter" else "gauge",
                 "indexes": indexes}
        if lookups:
            entry["lookups"] = lookups
        metrics.append(entry)
    body = {
        "walk": list(plan.columns),
        "get": [f"{oid}.0" for oid in plan.scalars],
        "metrics": metrics,
        "version": 2,
        "max_repetitions": MAX_REPETITIONS,
        "retries": RETRIES,
        "timeout": f"{TIMEOUT:g}s",
        "auth": {"community": community},
    }
    return {module: body}


def exporter_yaml(plan: PollPlan, community: str, module: str = "vigil_bench") -> str:
    return yaml.safe_dump(exporter_module(plan, community, module), sort_keys=False)


def bulkget_args(plan: PollPlan, community: str, rows: int) -> tuple[list[str], list[str]]:
    """snmpbulkget arguments before the target, and the OIDs after it (see module doc)."""
    repetitions = max(1, rows + 1)
    return (["-v2c", "-c", community, "-m", "", "-On", "-t", f"{TIMEOUT:g}", "-r", str(RETRIES),
             f"-Cn{len(plan.scalars)}", f"-Cr{repetitions}"],
            [*plan.scalars, *plan.columns])


def describe(plan: PollPlan) -> str:
    if_cols = sum(1 for c in plan.columns if re.match(r"^1\.3\.6\.1\.2\.1\.(2\.2|31\.1\.1)\.", c))
    return (f"{len(plan.scalars)} scalars (GET oid.0), {len(plan.columns)} table columns walked "
            f"({if_cols} IF-MIB ifTable/ifXTable, {len(plan.columns) - if_cols} other)")
