"""Fetching a poll plan's OIDs from one device: scalar GETs and multi-column table walks.

Written once against the engine interface, so both engines walk the same way:
- scalars are fetched as `oid.0`; those the device lacks are asked again as the bare OID
  (some agents, e.g. a Delta UPS card, register scalars without the `.0` instance);
- table columns are walked together: one GETBULK carries every unfinished column, with
  max-repetitions lowered so columns x repetitions stays within max_varbinds_per_request
  (snmpsim, for one, answers at most 64 varbinds); v1 walks with GETNEXT;
- v1 noSuchName, tooBig, responses that stop short or do not increase are handled here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collectors.snmp.engine import END_OF_MIB, EXCEPTIONS, NO_SUCH_NAME, TOO_BIG, PduError, Session

MAX_ROWS_PER_COLUMN = 20000
"""A column longer than this is cut (and reported): a guard against agents that loop."""

Value = tuple[str, Any]
"""(type code, raw value) of one varbind."""


@dataclass(frozen=True)
class FetchLimits:
    max_repetitions: int
    max_oids_per_request: int
    max_varbinds_per_request: int
    bulk: bool  # False for SNMP v1


@dataclass
class Fetched:
    scalars: dict[str, Value] = field(default_factory=dict)
    columns: dict[str, dict[str, Value]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    requests: int = 0
    varbinds: int = 0


def _oid_tuple(oid: str) -> tuple[int, ...]:
    return tuple(int(x) for x in oid.split("."))


class Fetcher:
    def __init__(self, session: Session, limits: FetchLimits):
        self.session = session
        self.limits = limits
        self.out = Fetched()

    async def _get(self, oids: list[str]) -> list[tuple[str, str, Any]]:
        """GET that survives v1 noSuchName by dropping the named varbind and asking again."""
        oids = list(oids)
        while oids:
            self.out.requests += 1
            try:
                varbinds = await self.session.get(oids)
            except PduError as exc:
                if exc.status == NO_SUCH_NAME and 1 <= exc.index <= len(oids):
                    del oids[exc.index - 1]
                    continue
                if exc.status == NO_SUCH_NAME and len(oids) > 1:
                    out = []  # the agent did not say which: ask one at a time
                    for oid in oids:
                        out.extend(await self._get([oid]))
                    return out
                if exc.status == NO_SUCH_NAME:
                    return []
                raise
            self.out.varbinds += len(varbinds)
            return varbinds
        return []

    async def scalars(self, oids: list[str]) -> None:
        wanted = {f"{oid}.0": oid for oid in oids}
        missing: list[str] = []
        step = self.limits.max_oids_per_request
        names = list(wanted)
        for start in range(0, len(names), step):
            chunk = names[start:start + step]
            seen = set()
            for oid, code, raw in await self._get(chunk):
                base = wanted.get(oid)
                if base is None:
                    continue
                seen.add(oid)
                if code in EXCEPTIONS:
                    missing.append(base)
                else:
                    self.out.scalars[base] = (code, raw)
            missing.extend(wanted[o] for o in chunk if o not in seen)
        bare = set(missing)
        for start in range(0, len(missing), step):
            for oid, code, raw in await self._get(missing[start:start + step]):
                if oid in bare and code not in EXCEPTIONS:
                    self.out.scalars[oid] = (code, raw)

    async def columns(self, roots: list[str]) -> None:
        """Walk every root (a table column or subtree) into out.columns[root][index]."""
        results = {root: self.out.columns.setdefault(root, {}) for root in roots}
        cursor = {root: root for root in roots}
        prefix = {root: root + "." for root in roots}
        active = list(dict.fromkeys(roots))
        while active:
            cap = (self.limits.max_varbinds_per_request if self.limits.bulk
                   else self.limits.max_oids_per_request)
            batch = active[:cap]
            varbinds = await self._step([cursor[r] for r in batch], len(batch))
            finished: set[str] = set()
            advanced: set[str] = set()
            width = len(batch)
            if not varbinds:
                self.out.problems.append(f"empty response while walking {batch[0]}")
                finished.update(batch)
            for i, (oid, code, raw) in enumerate(varbinds):
                root = batch[i % width]
                if root in finished:
                    continue
                if code == END_OF_MIB or not oid.startswith(prefix[root]):
                    finished.add(root)
                    continue
                if root not in advanced and _oid_tuple(oid) <= _oid_tuple(cursor[root]):
                    self.out.problems.append(f"{root}: agent returned {oid}, not after "
                                             f"{cursor[root]} (walk stopped)")
                    finished.add(root)
                    continue
                results[root][oid[len(root) + 1:]] = (code, raw)
                cursor[root] = oid
                advanced.add(root)
            covered = batch[:len(varbinds)]
            for root in covered:
                if root not in advanced:
                    finished.add(root)
                elif len(results[root]) >= MAX_ROWS_PER_COLUMN:
                    self.out.problems.append(f"{root}: more than {MAX_ROWS_PER_COLUMN} rows, cut")
                    finished.add(root)
            active = [r for r in active if r not in finished]

    async def _step(self, oids: list[str], width: int) -> list[tuple[str, str, Any]]:
        """One GETBULK (v2c/v3) or GETNEXT (v1) request for the walk."""
        limits = self.limits
        if not limits.bulk:
            return await self.get_next(oids)
        repetitions = max(1, min(limits.max_repetitions, limits.max_varbinds_per_request // width))
        while True:
            self.out.requests += 1
            try:
                varbinds = await self.session.get_bulk(oids, repetitions)
            except PduError as exc:
                if exc.status == TOO_BIG and repetitions > 1:
                    repetitions //= 2
                    continue
                raise
            self.out.varbinds += len(varbinds)
            return varbinds

    async def get_next(self, oids: list[str]) -> list[tuple[str, str, Any]]:
        """GETNEXT; a v1 agent signals the end of its MIB with noSuchName on that varbind."""
        out: list[tuple[str, str, Any] | None] = [None] * len(oids)
        pending = list(range(len(oids)))
        while pending:
            self.out.requests += 1
            try:
                varbinds = await self.session.get_next([oids[i] for i in pending])
            except PduError as exc:
                if exc.status == NO_SUCH_NAME and 1 <= exc.index <= len(pending):
                    gone = pending.pop(exc.index - 1)
                    out[gone] = (oids[gone], END_OF_MIB, None)
                    continue
                raise
            self.out.varbinds += len(varbinds)
            for slot, varbind in zip(pending, varbinds, strict=False):
                out[slot] = varbind
            break
        return [vb if vb is not None else (oids[i], END_OF_MIB, None) for i, vb in enumerate(out)]
