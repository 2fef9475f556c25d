"""Approvals: each gated deployment's request (its policy snapshot, deadline, holder) and every decision.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

Written by hand to match `shipyard.store.models.ApprovalRequest` and `ApprovalDecision`. Both cascade with
their deployment (retention deletes them with it); the decisions' unique nonce is what makes a signed
link single-use.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("deployment_id", sa.String(128), nullable=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        _ts("requested_at"),
        _ts("expires_at"),
        _ts("granted_at", True),
        sa.Column("holder", sa.String(255), nullable=True),
        _ts("holder_beat_at", True),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE",
                                name="fk_approval_requests_deployment_id_deployments"),
        sa.PrimaryKeyConstraint("deployment_id", name="pk_approval_requests"),
    )
    op.create_index("ix_approval_requests_service_env", "approval_requests", ["service", "env"])
    op.create_table(
        "approvals",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(128), nullable=False),
        sa.Column("approver", sa.String(255), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=True),
        _ts("at"),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE",
                                name="fk_approvals_deployment_id_deployments"),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
        sa.UniqueConstraint("nonce", name="uq_approvals_nonce"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_approvals_deployment_id", "approvals", ["deployment_id"])


def downgrade() -> None:
    op.drop_index("ix_approvals_deployment_id", table_name="approvals")
    op.drop_table("approvals")
    op.drop_index("ix_approval_requests_service_env", table_name="approval_requests")
    op.drop_table("approval_requests")
