"""Tables of the UPS battery (discharge) tests, in the ticket store's database.

One row per test (run over SNMP or recorded by hand) with its charge/voltage curve, and an
append-only audit trail: every start, refusal, result and manual record, who and when. A
refusal has no test row (nothing was started): its audit entry names the device only.
At most one test runs per site (partial unique index), so two agents sharing a PostgreSQL
store cannot start two at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from agent.tickets.models import Base, UtcDateTime

METHODS = ("snmp", "manual")
KINDS = ("quick", "deep")
TEST_STATES = ("running", "done")
RESULTS = ("pass", "warning", "error", "aborted", "timeout", "lost")
RUNNING = "state = 'running'"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class UpsTest(Base):
    __tablename__ = "ups_tests"
    __table_args__ = (
        CheckConstraint(_in("method", METHODS), name="ck_ups_tests_method"),
        CheckConstraint(_in("kind", KINDS), name="ck_ups_tests_kind"),
        CheckConstraint(_in("state", TEST_STATES), name="ck_ups_tests_state"),
        CheckConstraint(f"result IS NULL OR {_in('result', RESULTS)}",
                        name="ck_ups_tests_result"),
        Index("ix_ups_tests_device", "device", "started_at"),
        Index("ux_ups_tests_running_site", "site", unique=True,
              sqlite_where=text(RUNNING), postgresql_where=text(RUNNING)),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(128))
    device: Mapped[str] = mapped_column(String(128))
    method: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    result: Mapped[str | None] = mapped_column(String(16), nullable=True)
    result_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    discharge_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    actor: Mapped[str] = mapped_column(String(128))
    notes: Mapped[str] = mapped_column(Text, default="")
    samples: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

    def to_dict(self, curve: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for column in self.__table__.columns:
            if column.key == "samples" and not curve:
                continue
            value = getattr(self, column.key)
            out[column.key] = value.isoformat() if isinstance(value, datetime) else value
        return out


class UpsTestEvent(Base):
    """One audit entry: a start, refusal, result or manual record (who, when, what)."""

    __tablename__ = "ups_test_events"
    __table_args__ = (Index("ix_ups_test_events_device", "device", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    test_id: Mapped[int | None] = mapped_column(ForeignKey("ups_tests.id"), nullable=True)
    device: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "test_id": self.test_id, "device": self.device,
                "at": self.at.isoformat(), "actor": self.actor, "kind": self.kind,
                "data": self.data}
