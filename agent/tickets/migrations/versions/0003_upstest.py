"""UPS battery tests and their audit trail

Revision ID: 0003_upstest
Revises: 0002_grounding
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agent.tickets.models import UtcDateTime
from agent.ups_test_models import KINDS, METHODS, RESULTS, RUNNING, TEST_STATES, _in

revision = "0003_upstest"
down_revision = "0002_grounding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ups_tests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("result", sa.String(16), nullable=True),
        sa.Column("result_code", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("ended_at", UtcDateTime, nullable=True),
        sa.Column("discharge_seconds", sa.Float, nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("samples", sa.JSON, nullable=False),
        sa.CheckConstraint(_in("method", METHODS), name="ck_ups_tests_method"),
        sa.CheckConstraint(_in("kind", KINDS), name="ck_ups_tests_kind"),
        sa.CheckConstraint(_in("state", TEST_STATES), name="ck_ups_tests_state"),
        sa.CheckConstraint(f"result IS NULL OR {_in('result', RESULTS)}",
                           name="ck_ups_tests_result"),
    )
    op.create_index("ix_ups_tests_device", "ups_tests", ["device", "started_at"])
    op.create_index("ux_ups_tests_running_site", "ups_tests", ["site"], unique=True,
                    sqlite_where=sa.text(RUNNING), postgresql_where=sa.text(RUNNING))
    op.create_table(
        "ups_test_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("test_id", sa.Integer, sa.ForeignKey("ups_tests.id"), nullable=True),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_ups_test_events_device", "ups_test_events", ["device", "id"])


def downgrade() -> None:
    op.drop_table("ups_test_events")
    op.drop_table("ups_tests")
