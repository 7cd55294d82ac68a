"""One SNMP poll of one device: open a session, pick the profile, fetch, translate.

The collector is generic and knows no vendor: the profile says what to fetch and how to read
it. Every failure ends as a PollResult with `up` False and one of the documented reasons;
nothing a device does can raise out of `poll`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from collectors.reading import PollResult, Reading
from collectors.snmp.detect import SYS_OBJECT_ID, Detection, detect
from collectors.snmp.engine import Engine, PduError, SnmpError, Target
from collectors.snmp.fetch import Fetcher, FetchLimits
from collectors.snmp.profile import PollPlan, ProfileSet
from collectors.snmp.translate import Translator

log = logging.getLogger("vigil.snmp")


@dataclass(frozen=True)
class SnmpJob:
    """What the scheduler asks for: which device, how to reach it, with which profile."""

    device: str
    target: Target
    profile: str | None  # None: detect from sysObjectID / sysDescr
    limits: FetchLimits
    deadline: float  # seconds for the whole poll


class SnmpCollector:
    def __init__(self, engine: Engine, profiles: ProfileSet):
        self.engine = engine
        self.profiles = profiles
        self.detected: dict[str, Detection] = {}

    def forget(self, device: str) -> None:
        """Drop a cached detection (the device was edited in the inventory, or replaced)."""
        self.detected.pop(device, None)

    async def poll(self, job: SnmpJob) -> PollResult:
        started = time.time()
        clock = time.perf_counter()
        result = PollResult(device=job.device, timestamp=started, duration=0.0, up=False)
        fetcher: Fetcher | None = None
        try:
            async with asyncio.timeout(job.deadline):
                session = await self.engine.open(job.target)
                try:
                    fetcher = Fetcher(session, job.limits)
                    await self._run(job, fetcher, result)
                finally:
                    await session.close()
        except SnmpError as exc:
            result.reason, result.detail = exc.reason, exc.detail
        except PduError as exc:
            result.reason, result.detail = "protocol", f"agent answered {exc}"
        except TimeoutError:
            done = fetcher.out.requests if fetcher else 0
            result.reason = "timeout"
            result.detail = f"poll exceeded its deadline of {job.deadline:g}s after {done} requests"
        except Exception as exc:  # a bug in Vigil, not in the device: keep polling the rest
            log.exception("poll of %s failed", job.device)
            result.reason, result.detail = "error", f"{type(exc).__name__}: {exc}"
        if fetcher is not None:
            result.requests = fetcher.out.requests
            result.varbinds = fetcher.out.varbinds
        if not result.up:
            result.readings = []
        result.readings.append(Reading(job.device, "up", {}, 1.0 if result.up else 0.0, started,
                                       result.reason))
        result.duration = time.perf_counter() - clock
        return result

    async def _run(self, job: SnmpJob, fetcher: Fetcher, result: PollResult) -> None:
        profile = job.profile
        if profile is None:
            detection = self.detected.get(job.device)
            if detection is None:
                detection = await detect(fetcher, self.profiles)
                log.info("%s: profile %s (%s)", job.device, detection.profile, detection.evidence)
                self.detected[job.device] = detection
            profile = detection.profile
        plan = self.profiles.plan(profile)
        result.profile = profile
        await fetcher.scalars([oid for oid in plan.scalars if oid not in fetcher.out.scalars])
        await fetcher.columns(plan.columns)
        fallbacks = _fallbacks_needed(plan, fetcher.out.columns)
        if fallbacks:
            await fetcher.columns(fallbacks)
        self._check_identity(job, fetcher)
        readings = Translator(plan, fetcher.out, job.device, result.timestamp).run()
        result.problems = fetcher.out.problems
        if not fetcher.out.scalars and not any(fetcher.out.columns.values()):
            result.reason = "no_data"
            result.detail = (f"the device answered but has none of profile '{profile}''s OIDs "
                             f"(noSuchObject): wrong profile, or a restricted SNMP view")
            return
        result.readings = readings
        result.up = True

    def _check_identity(self, job: SnmpJob, fetcher: Fetcher) -> None:
        """A different sysObjectID under the same address means the device was replaced."""
        detection = self.detected.get(job.device)
        seen = fetcher.out.scalars.get(SYS_OBJECT_ID)
        if job.profile is None and detection and seen:
            now = str(seen[1]).lstrip(".")
            if now != detection.sys_object_id:
                fetcher.out.problems.append(
                    f"sysObjectID changed from {detection.sys_object_id or 'none'} to {now}: "
                    f"profile will be detected again at the next poll")
                self.forget(job.device)


def _fallbacks_needed(plan: PollPlan, columns: dict[str, dict[str, object]]) -> list[str]:
    """Alternative columns to walk: for a first-choice column (ifName, ifHCInOctets) that lacks
    rows its sibling columns have, walk the alternatives (ifDescr, ifInOctets) too."""
    needed: list[str] = []
    for group in plan.row_groups:
        rows: set[str] = set()
        for column in group:
            rows.update(columns.get(column, {}))
        for column in group:
            alternatives = plan.fallback_columns.get(column)
            filled = _filled(columns.get(column, {}))
            if alternatives and (not filled or not rows.issubset(filled)):
                needed.extend(a for a in alternatives if a not in columns and a not in needed)
    return needed


def _filled(column: dict[str, tuple[str, object]]) -> set[str]:
    """Rows with a value: an empty string (an ifName of '') counts as missing."""
    return {index for index, (_code, raw) in column.items() if raw not in (b"", None)}
