"""Daemon leases: which `shipyard serve` runs each piece of background work.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Written by hand to match `shipyard.store.models.DaemonLease`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daemon_leases",
        sa.Column("work", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("work", name="pk_daemon_leases"),
    )


def downgrade() -> None:
    op.drop_table("daemon_leases")
