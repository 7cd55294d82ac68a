"""Grounding measurements as readings: a technician's earth-resistance tester is the
"collector". The agent's grounding stage (agent/grounding.py) calls `readings` with the
latest recorded measurement of each earthing point; the result goes into the state the rules
read, as a poll result of collector `grounding`.
"""

from __future__ import annotations

from collectors.reading import PollResult, Reading

COLLECTOR = "grounding"


def readings(point: str, limit_ohm: float, measure_every: float,
             latest: tuple[float, float] | None, now: float) -> PollResult:
    """The point's readings at `now`: its limit and measuring interval always; the latest
    value (ohms, measured at unix time), its time and its age when it was ever measured.
    The value's reading carries the measurement's own time."""
    out = [Reading(point, "grounding_limit_ohms", {}, float(limit_ohm), now),
           Reading(point, "grounding_measure_every_seconds", {}, float(measure_every), now)]
    if latest is not None:
        ohm, at = latest
        out += [Reading(point, "grounding_resistance_ohms", {}, float(ohm), at),
                Reading(point, "grounding_last_measured_timestamp_seconds", {}, at, at),
                Reading(point, "grounding_measurement_age_seconds", {}, max(0.0, now - at),
                        now)]
    return PollResult(point, now, 0.0, True, readings=out, collector=COLLECTOR)
