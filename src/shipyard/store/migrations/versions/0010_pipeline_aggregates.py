"""Daily aggregates keep each day's pipeline times (their histogram, max, count over the KPI, slowest runs).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

Written by hand to match `shipyard.store.models.DailyAggregate.pipeline`. Days folded before this revision
have no pipeline figures yet: each one that still has its raw rows is marked changed (`fold_dirty`), so
reports read it raw until the next fold recomputes it with them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("daily_aggregates", sa.Column("pipeline", sa.JSON(), nullable=True))
    bind = op.get_bind()
    meta = sa.MetaData()
    aggregates = sa.Table("daily_aggregates", meta, sa.Column("day", sa.DateTime(timezone=True)))
    horizon = sa.Table("history_horizon", meta, sa.Column("pruned_before", sa.DateTime(timezone=True)))
    dirty = sa.Table("fold_dirty", meta, sa.Column("day", sa.DateTime(timezone=True)),
                     sa.Column("marked_at", sa.DateTime(timezone=True)))
    pruned = bind.execute(sa.select(sa.func.max(horizon.c.pruned_before))).scalar()
    days = sa.select(aggregates.c.day).distinct()
    if pruned is not None:
        days = days.where(aggregates.c.day >= pruned)
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":       # stored as UTC text without an offset, as UTCDateTime does
        now = now.replace(tzinfo=None)
    marks = [{"day": day, "marked_at": now} for day in bind.execute(days).scalars()]
    if marks:
        bind.execute(dirty.insert(), marks)


def downgrade() -> None:
    op.drop_column("daily_aggregates", "pipeline")
