"""Indexes for reports: deployments by creation and end time, and by the run they roll back.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Written by hand to match `shipyard.store.models.Deployment`. Stats and DORA over all services read a
period by `created_at` (the existing index leads with service and env), time to restore walks runs by
`finished_at`, and "was this deploy rolled back later?" asks for `rollback_of`; without these each is a
scan of the whole history.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deployments_created_at", "deployments", ["created_at"])
    op.create_index("ix_deployments_finished_at", "deployments", ["finished_at"])
    op.create_index("ix_deployments_rollback_of", "deployments", ["rollback_of"])


def downgrade() -> None:
    op.drop_index("ix_deployments_rollback_of", table_name="deployments")
    op.drop_index("ix_deployments_finished_at", table_name="deployments")
    op.drop_index("ix_deployments_created_at", table_name="deployments")
