"""An index for "what serves (service, env)": its newest succeeded run by end time.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

Written by hand to match `shipyard.store.models.Deployment`. `store.deployments.succeeded_history` (the
serving deployment of every cell of `shipyard status`, GET /api/v1/status and the dashboard's overview;
where a rollback goes) asks for the pair's succeeded runs by `finished_at`. Without this index the planner
walks `ix_deployments_state`, i.e. every succeeded run of every pair (about 80% of the history), per cell:
0.8 s for the 15 cells of a 100 k-run history, 8 s at 1 M. With it, a few index entries per cell.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deployments_service_env_state_finished_at", "deployments",
                    ["service", "env", "state", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_deployments_service_env_state_finished_at", table_name="deployments")
