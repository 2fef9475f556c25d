"""Checklists: each deployment's checklist items (snapshot of the item, who confirmed it, each result).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03

Written by hand to match `shipyard.store.models.ChecklistResult`. Rows cascade with their deployment
(retention deletes them with it); (deployment_id, name) is unique, so an item is confirmed once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "checklist_items",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(128), nullable=False),
        sa.Column("phase", sa.String(8), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("on_fail", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("by", sa.String(255), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE",
                                name="fk_checklist_items_deployment_id_deployments"),
        sa.PrimaryKeyConstraint("id", name="pk_checklist_items"),
        sa.UniqueConstraint("deployment_id", "name", name="uq_checklist_items_deployment_id_name"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("checklist_items")
