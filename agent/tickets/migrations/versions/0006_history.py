"""readings history: bucket and daily summaries, availability seconds

Revision ID: 0006_history
Revises: 0005_statistics
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agent.tickets.models import UtcDateTime

revision = "0006_history"
down_revision = "0005_statistics"
branch_labels = None
depends_on = None


def _summary() -> list[sa.Column]:
    return [sa.Column("min", sa.Float, nullable=False),
            sa.Column("max", sa.Float, nullable=False),
            sa.Column("sum", sa.Float, nullable=False),
            sa.Column("count", sa.Integer, nullable=False)]


def _availability() -> list[sa.Column]:
    return [sa.Column("site", sa.String(128), nullable=False),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("up_seconds", sa.Float, nullable=False),
            sa.Column("down_seconds", sa.Float, nullable=False),
            sa.Column("unknown_seconds", sa.Float, nullable=False)]


def upgrade() -> None:
    op.create_table(
        "history_series",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.UniqueConstraint("device", "metric", "labels", name="uq_history_series"))
    op.create_table(
        "history_readings",
        sa.Column("series", sa.Integer, primary_key=True),
        sa.Column("start", UtcDateTime, primary_key=True),
        sa.Column("seconds", sa.Integer, nullable=False),
        *_summary())
    op.create_index("ix_history_readings_start", "history_readings", ["start"])
    op.create_table(
        "history_readings_daily",
        sa.Column("series", sa.Integer, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        *_summary())
    op.create_index("ix_history_readings_daily_day", "history_readings_daily", ["day"])
    op.create_table(
        "history_availability",
        sa.Column("device", sa.String(128), primary_key=True),
        sa.Column("collector", sa.String(32), primary_key=True),
        sa.Column("start", UtcDateTime, primary_key=True),
        sa.Column("seconds", sa.Integer, nullable=False),
        *_availability())
    op.create_index("ix_history_availability_start", "history_availability", ["start"])
    op.create_index("ix_history_availability_site_start", "history_availability",
                    ["site", "start"])
    op.create_table(
        "history_availability_daily",
        sa.Column("device", sa.String(128), primary_key=True),
        sa.Column("collector", sa.String(32), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        *_availability())
    op.create_index("ix_history_availability_daily_day", "history_availability_daily", ["day"])
    op.create_index("ix_history_availability_daily_site_day", "history_availability_daily",
                    ["site", "day"])
    op.create_table(
        "history_days",
        sa.Column("agent", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("rolled_at", UtcDateTime, nullable=False))


def downgrade() -> None:
    for table in ("history_days", "history_availability_daily", "history_availability",
                  "history_readings_daily", "history_readings", "history_series"):
        op.drop_table(table)
