"""tickets and their timeline

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agent.tickets.models import CAUSES, NOT_CLOSED, STATES, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


APPEND_ONLY = {
    "sqlite": [
        "CREATE TRIGGER ticket_events_no_update BEFORE UPDATE ON ticket_events "
        "BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END",
        "CREATE TRIGGER ticket_events_no_delete BEFORE DELETE ON ticket_events "
        "BEGIN SELECT RAISE(ABORT, 'ticket_events is append-only'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION ticket_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'ticket_events is append-only'; END $$",
        "CREATE TRIGGER ticket_events_append_only BEFORE UPDATE OR DELETE ON ticket_events "
        "FOR EACH ROW EXECUTE FUNCTION ticket_events_append_only()",
    ],
}


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fault_key", sa.String(512), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("original_level", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("title_zh", sa.Text, nullable=False),
        sa.Column("title_en", sa.Text, nullable=False),
        sa.Column("opened_at", UtcDateTime, nullable=False),
        sa.Column("reopened_at", UtcDateTime, nullable=True),
        sa.Column("acknowledged_at", UtcDateTime, nullable=True),
        sa.Column("diagnosed_at", UtcDateTime, nullable=True),
        sa.Column("repair_started_at", UtcDateTime, nullable=True),
        sa.Column("resolved_at", UtcDateTime, nullable=True),
        sa.Column("confirmed_at", UtcDateTime, nullable=True),
        sa.Column("closed_at", UtcDateTime, nullable=True),
        sa.Column("cause_category", sa.String(32), nullable=True),
        sa.Column("reopen_count", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.CheckConstraint(_in("state", STATES), name="ck_tickets_state"),
        sa.CheckConstraint(f"cause_category IS NULL OR {_in('cause_category', CAUSES)}",
                           name="ck_tickets_cause_category"),
        sa.CheckConstraint("level BETWEEN 1 AND 4 AND original_level BETWEEN 1 AND 4",
                           name="ck_tickets_level"),
    )
    op.create_index("uq_tickets_fault_key_not_closed", "tickets", ["fault_key"], unique=True,
                    sqlite_where=sa.text(NOT_CLOSED), postgresql_where=sa.text(NOT_CLOSED))
    op.create_index("ix_tickets_fault_key_closed_at", "tickets", ["fault_key", "closed_at"])
    op.create_index("ix_tickets_state_level", "tickets", ["state", "level"])
    op.create_index("ix_tickets_site", "tickets", ["site"])
    op.create_table(
        "ticket_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_ticket_events_ticket_id", "ticket_events", ["ticket_id", "id"])
    for statement in APPEND_ONLY.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER ticket_events_append_only ON ticket_events")
        op.execute("DROP FUNCTION ticket_events_append_only()")
    op.drop_table("ticket_events")
    op.drop_table("tickets")
