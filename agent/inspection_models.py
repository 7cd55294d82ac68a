"""The inspections' tables, in the ticket store's database (declared on its Base).

One inspection per (site, kind, period): the unique constraint makes creation idempotent,
also when the daemon's timer and a technician's request race, or several agents share a
PostgreSQL store. The sheet pre-filled from telemetry is a JSON document on the inspection
(replaced by a refresh until it is submitted); the technician's results are rows of their own
(one per checklist item and device); the timeline is append-only like the tickets' (the
database refuses UPDATE and DELETE: see migration 0002_inspections).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from agent.tickets.models import Base, UtcDateTime

INSPECTION_STATES = ("open", "submitted", "signed")
RESULT_STATUSES = ("ok", "issue", "na")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class Inspection(Base):
    __tablename__ = "inspections"
    __table_args__ = (
        UniqueConstraint("site", "kind", "period", name="uq_inspections_site_kind_period"),
        Index("ix_inspections_state_due", "state", "due_at"),
        CheckConstraint("state IN ('open', 'submitted', 'signed')", name="ck_inspections_state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(16))  # '2026-10', '2026-Q4', '2026-H2'
    period_start: Mapped[datetime] = mapped_column(UtcDateTime)
    period_end: Mapped[datetime] = mapped_column(UtcDateTime)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16), default="open")
    agent_id: Mapped[str] = mapped_column(String(64))
    sheet: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prefilled_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    signed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    def summary(self) -> dict[str, Any]:
        """Everything but the sheet (lists stay small)."""
        return {c.key: _iso(getattr(self, c.key)) for c in self.__table__.columns
                if c.key != "sheet"}


class InspectionResult(Base):
    """The technician's verdict on one checklist item (of one device, or '' for the site)."""

    __tablename__ = "inspection_results"
    __table_args__ = (
        UniqueConstraint("inspection_id", "item", "device", name="uq_inspection_results_row"),
        CheckConstraint("status IN ('ok', 'issue', 'na')", name="ck_inspection_results_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id"))
    item: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(8))
    note: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UtcDateTime)

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item, "device": self.device, "status": self.status,
                "note": self.note, "actor": self.actor, "at": self.at.isoformat()}


class InspectionEvent(Base):
    """One entry of an inspection's timeline: who did what, when. Append-only."""

    __tablename__ = "inspection_events"
    __table_args__ = (Index("ix_inspection_events_inspection_id", "inspection_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "actor": self.actor,
                "kind": self.kind, "data": self.data}
