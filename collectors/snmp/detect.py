"""Choosing a profile for a device the inventory gives none: sysObjectID, sysDescr, probes.

Order of evidence, strongest first: the longest matching sysObjectID prefix, then a sysDescr
regex, then the presence of an identifying OID (for devices without a system group, such as
some Hikvision cameras, or a UPS that only says it speaks UPS-MIB). Profile `priority` breaks
ties. Nothing matching gives the `generic` profile (system group and interfaces).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from collectors.snmp import values
from collectors.snmp.engine import EXCEPTIONS
from collectors.snmp.fetch import Fetcher
from collectors.snmp.profile import ProfileSet

SYS_DESCR = "1.3.6.1.2.1.1.1"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2"
FALLBACK = "generic"


@dataclass(frozen=True)
class Detection:
    profile: str
    sys_object_id: str
    evidence: str


async def detect(fetcher: Fetcher, profiles: ProfileSet) -> Detection:
    await fetcher.scalars([SYS_OBJECT_ID, SYS_DESCR])
    found = fetcher.out.scalars
    oid_value = found.get(SYS_OBJECT_ID)
    sys_object_id = str(oid_value[1]).lstrip(".") if oid_value else ""
    descr_value = found.get(SYS_DESCR)
    sys_descr = (values.text(*descr_value) or "") if descr_value else ""

    best: tuple[int, str, str] | None = None
    for name, profile in profiles.profiles.items():
        match = profile.model.match
        score, evidence = 0, ""
        for prefix in match.sys_object_id:
            if sys_object_id == prefix or sys_object_id.startswith(prefix + "."):
                candidate = 3000 + prefix.count(".")
                if candidate > score:
                    score, evidence = candidate, f"sysObjectID {sys_object_id} under {prefix}"
        if not score and sys_descr:
            for pattern in match.sys_descr:
                if re.search(pattern, sys_descr, re.IGNORECASE):
                    score, evidence = 2000, f"sysDescr matches /{pattern}/"
                    break
        if score:
            score += profile.model.priority
            if best is None or score > best[0]:
                best = (score, name, evidence)
    if best is None:
        best = await _probe(fetcher, profiles)
    if best is None:
        return Detection(FALLBACK, sys_object_id, "no profile matched")
    return Detection(best[1], sys_object_id, best[2])


async def _probe(fetcher: Fetcher, profiles: ProfileSet) -> tuple[int, str, str] | None:
    """GETNEXT each identifying OID once; a profile matches if one of its OIDs exists."""
    wanted = sorted({oid for p in profiles.profiles.values() for oid in p.model.match.oid_present})
    if not wanted:
        return None
    present: set[str] = set()
    step = fetcher.limits.max_oids_per_request
    for start in range(0, len(wanted), step):
        chunk = wanted[start:start + step]
        for asked, (oid, code, _raw) in zip(chunk, await fetcher.get_next(chunk), strict=False):
            if code not in EXCEPTIONS and (oid == asked or oid.startswith(asked + ".")):
                present.add(asked)
    best: tuple[int, str, str] | None = None
    for name, profile in profiles.profiles.items():
        hits = [oid for oid in profile.model.match.oid_present if oid in present]
        if hits:
            score = 1000 + profile.model.priority
            if best is None or score > best[0]:
                best = (score, name, f"OID {hits[0]} present")
    return best
