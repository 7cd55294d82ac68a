"""indexes for the fault statistics: tickets by opening and by closing time

The statistics select a period's tickets by `opened_at` and by `closed_at` (agent/statistics.py);
without these indexes every report scans the whole table (50,000 tickets: see
docs/statistics.md).

Revision ID: 0005_statistics
Revises: 0004_inspections
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0005_statistics"
down_revision = "0004_inspections"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tickets_opened_at", "tickets", ["opened_at"])
    # with the state first: `state = 'closed' AND closed_at` in range is one index range (a
    # closed_at-only index loses to ix_tickets_state_level in SQLite's planner)
    op.create_index("ix_tickets_state_closed_at", "tickets", ["state", "closed_at"])


def downgrade() -> None:
    op.drop_index("ix_tickets_state_closed_at", "tickets")
    op.drop_index("ix_tickets_opened_at", "tickets")
