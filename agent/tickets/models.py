"""The ticket store's tables (SQLAlchemy 2 declarative).

A fault key has at most one ticket that is not closed, across every agent sharing the
database: the partial unique index `uq_tickets_fault_key_not_closed` (`WHERE state !=
'closed'`, which SQLite and PostgreSQL both support) enforces it in the database itself, so
two agents racing to open a ticket for one fault can never both succeed. Times are stored as
UTC (`timestamptz` on PostgreSQL) and always read back timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

STATES = ("open", "acknowledged", "diagnosed", "repairing", "resolved", "confirmed", "closed")
CAUSES = ("operator_error", "connector_cable", "front_end_hardware", "power_ups", "network",
          "lightning_surge", "software_config", "environment", "unknown")
NOT_CLOSED = "state != 'closed'"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (naive text) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the ticket store keeps UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("uq_tickets_fault_key_not_closed", "fault_key", unique=True,
              sqlite_where=text(NOT_CLOSED), postgresql_where=text(NOT_CLOSED)),
        Index("ix_tickets_fault_key_closed_at", "fault_key", "closed_at"),
        Index("ix_tickets_state_level", "state", "level"),
        Index("ix_tickets_site", "site"),
        CheckConstraint(_in("state", STATES), name="ck_tickets_state"),
        CheckConstraint(f"cause_category IS NULL OR {_in('cause_category', CAUSES)}",
                        name="ck_tickets_cause_category"),
        CheckConstraint("level BETWEEN 1 AND 4 AND original_level BETWEEN 1 AND 4",
                        name="ck_tickets_level"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fault_key: Mapped[str] = mapped_column(String(512))
    agent_id: Mapped[str] = mapped_column(String(64))  # the agent that opened it
    site: Mapped[str] = mapped_column(String(128), default="")
    device: Mapped[str] = mapped_column(String(128), default="")  # '' for aggregates
    rule: Mapped[str] = mapped_column(String(128))
    level: Mapped[int] = mapped_column(Integer)  # current (escalation raises it: 3 -> 2)
    original_level: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="open")
    title_zh: Mapped[str] = mapped_column(Text, default="")
    title_en: Mapped[str] = mapped_column(Text, default="")
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reopened_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    diagnosed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    repair_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    cause_category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    @property
    def cycle_started_at(self) -> datetime:
        """Start of the current cycle (the latest reopen, else the opening): the response
        and repair time limits count from here."""
        return self.reopened_at or self.opened_at

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for column in self.__table__.columns:
            value = getattr(self, column.key)
            out[column.key] = value.isoformat() if isinstance(value, datetime) else value
        return out

    def __repr__(self) -> str:
        return (f"Ticket(id={self.id}, fault_key={self.fault_key!r}, state={self.state!r}, "
                f"level={self.level})")


class TicketEvent(Base):
    """One entry of a ticket's timeline: who did what, when. Append-only (the database
    refuses UPDATE and DELETE on this table: see the first migration)."""

    __tablename__ = "ticket_events"
    __table_args__ = (Index("ix_ticket_events_ticket_id", "ticket_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ticket_id": self.ticket_id, "at": self.at.isoformat(),
                "actor": self.actor, "kind": self.kind, "data": self.data}
