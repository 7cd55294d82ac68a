"""grounding-resistance measurements

Revision ID: 0002_grounding
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from agent.tickets.models import UtcDateTime

revision = "0002_grounding"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grounding_measurements",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("point", sa.String(128), nullable=False),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("ohm", sa.Float, nullable=False),
        sa.Column("measured_at", UtcDateTime, nullable=False),
        sa.Column("instrument", sa.String(128), nullable=False),
        sa.Column("technician", sa.String(128), nullable=False),
        sa.Column("weather", sa.String(64), nullable=False),
        sa.Column("soil", sa.String(64), nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("recorded_by", sa.String(128), nullable=False),
        sa.Column("recorded_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("point", "measured_at", name="uq_grounding_point_measured_at"),
        sa.CheckConstraint("ohm > 0 AND ohm <= 1000", name="ck_grounding_ohm"),
    )
    op.create_index("ix_grounding_site_measured_at", "grounding_measurements",
                    ["site", "measured_at"])


def downgrade() -> None:
    op.drop_index("ix_grounding_site_measured_at", "grounding_measurements")
    op.drop_table("grounding_measurements")
