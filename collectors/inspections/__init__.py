"""Inspection schedules as readings: whether each scheduled inspection (site and kind) is
overdue. The "collector" is the agent's own inspection store (agent/inspections.py); the
agent's inspection stage (agent/inspection_subjects.py) calls `readings` for each scheduled
site and kind, and the result goes into the state the rules read, as a poll result of
collector `inspections`.
"""

from __future__ import annotations

from collectors.reading import PollResult, Reading

COLLECTOR = "inspections"


def readings(subject: str, overdue: bool, due: float, now: float) -> PollResult:
    """The subject's readings at `now`: overdue 1/0, the due time (the oldest overdue
    inspection's, else this period's) and how long it has been overdue (0 when not)."""
    late = max(0.0, now - due) if overdue else 0.0
    out = [Reading(subject, "inspection_overdue", {}, 1.0 if overdue else 0.0, now),
           Reading(subject, "inspection_due_timestamp_seconds", {}, float(due), now),
           Reading(subject, "inspection_overdue_seconds", {}, late, now)]
    return PollResult(subject, now, 0.0, True, readings=out, collector=COLLECTOR)
