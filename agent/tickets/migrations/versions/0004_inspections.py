"""periodic inspections: inspections, their results and their append-only timeline

Revision ID: 0004_inspections
Revises: 0003_upstest
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agent.tickets.models import UtcDateTime

revision = "0004_inspections"
down_revision = "0003_upstest"
branch_labels = None
depends_on = None

APPEND_ONLY = {
    "sqlite": [
        "CREATE TRIGGER inspection_events_no_update BEFORE UPDATE ON inspection_events "
        "BEGIN SELECT RAISE(ABORT, 'inspection_events is append-only'); END",
        "CREATE TRIGGER inspection_events_no_delete BEFORE DELETE ON inspection_events "
        "BEGIN SELECT RAISE(ABORT, 'inspection_events is append-only'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION inspection_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'inspection_events is append-only'; END $$",
        "CREATE TRIGGER inspection_events_append_only BEFORE UPDATE OR DELETE ON "
        "inspection_events FOR EACH ROW EXECUTE FUNCTION inspection_events_append_only()",
    ],
}


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("period_start", UtcDateTime, nullable=False),
        sa.Column("period_end", UtcDateTime, nullable=False),
        sa.Column("due_at", UtcDateTime, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("sheet", sa.JSON, nullable=False),
        sa.Column("prefilled_at", UtcDateTime, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("submitted_at", UtcDateTime, nullable=True),
        sa.Column("signed_at", UtcDateTime, nullable=True),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("site", "kind", "period", name="uq_inspections_site_kind_period"),
        sa.CheckConstraint("state IN ('open', 'submitted', 'signed')",
                           name="ck_inspections_state"),
    )
    op.create_index("ix_inspections_state_due", "inspections", ["state", "due_at"])
    op.create_table(
        "inspection_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("inspection_id", sa.Integer, sa.ForeignKey("inspections.id"),
                  nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("inspection_id", "item", "device",
                            name="uq_inspection_results_row"),
        sa.CheckConstraint("status IN ('ok', 'issue', 'na')",
                           name="ck_inspection_results_status"),
    )
    op.create_table(
        "inspection_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("inspection_id", sa.Integer, sa.ForeignKey("inspections.id"),
                  nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_inspection_events_inspection_id", "inspection_events",
                    ["inspection_id", "id"])
    for statement in APPEND_ONLY.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER inspection_events_append_only ON inspection_events")
        op.execute("DROP FUNCTION inspection_events_append_only()")
    op.drop_table("inspection_events")
    op.drop_table("inspection_results")
    op.drop_table("inspections")
