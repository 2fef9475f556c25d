"""Daily aggregates of closed days (folded ahead, and kept for pruned ones), the horizon before which reports
read them, and the marks of folded days changed since.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-02

Written by hand to match `shipyard.store.models.DailyAggregate`, `HistoryHorizon` and the outbox's new
index by event.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_aggregates",
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False)
          for name in ("total", "succeeded", "failed", "rolled_back", "cancelled", "reached", "change_failed",
                       "restored", "unrestored")),
        sa.Column("dur_sum", sa.Float(), nullable=False),
        sa.Column("dur_n", sa.Integer(), nullable=False),
        sa.Column("dur_hist", sa.JSON(), nullable=False),
        sa.Column("restore_hist", sa.JSON(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("folded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "service", "env", "kind", name="pk_daily_aggregates"),
    )
    op.create_table(
        "history_horizon",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("pruned_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("folded_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_history_horizon"),
    )
    op.create_table(
        "fold_dirty",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fold_dirty"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_fold_dirty_day", "fold_dirty", ["day"])
    # deleting pruned events sets outbox.event_id to NULL: without an index every deleted event scans the outbox
    op.create_index("ix_outbox_event_id", "outbox", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_event_id", table_name="outbox")
    op.drop_index("ix_fold_dirty_day", table_name="fold_dirty")
    op.drop_table("fold_dirty")
    op.drop_table("history_horizon")
    op.drop_table("daily_aggregates")
