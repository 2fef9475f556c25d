"""Promotions across repos, their per-repo results, and environment freezes.

Revision ID: 0002
Revises: 0001
Create Date: 2024-11-29

Written by hand to match `shipyard.store.models` (Promotion, PromotionRepo, EnvFreeze).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "promotions",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source_env", sa.String(128), nullable=True),
        sa.Column("target_env", sa.String(128), nullable=False),
        sa.Column("stamp", sa.String(32), nullable=False),
        sa.Column("rollback_to", sa.String(255), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_promotions"),
    )
    op.create_index("ix_promotions_target_env_created_at", "promotions", ["target_env", "created_at"])

    op.create_table(
        "promotion_repos",
        sa.Column("promotion_id", sa.String(128), nullable=False),
        sa.Column("repo", sa.String(128), nullable=False),
        sa.Column("branch", sa.String(255), nullable=True),
        sa.Column("source_sha", sa.String(64), nullable=True),
        sa.Column("old_sha", sa.String(64), nullable=True),
        sa.Column("new_sha", sa.String(64), nullable=True),
        sa.Column("tag", sa.String(255), nullable=True),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("updates", sa.JSON(), nullable=False),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(["promotion_id"], ["promotions.id"], ondelete="CASCADE",
                                name="fk_promotion_repos_promotion_id_promotions"),
        sa.PrimaryKeyConstraint("promotion_id", "repo", name="pk_promotion_repos"),
    )

    op.create_table(
        "env_freezes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("promotion_id", sa.String(128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("frozen_by", sa.String(255), nullable=False),
        _ts("frozen_at"),
        sa.Column("lifted_by", sa.String(255), nullable=True),
        _ts("lifted_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_env_freezes"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_env_freezes_env_lifted_at", "env_freezes", ["env", "lifted_at"])


def downgrade() -> None:
    op.drop_table("env_freezes")
    op.drop_table("promotion_repos")
    op.drop_table("promotions")
