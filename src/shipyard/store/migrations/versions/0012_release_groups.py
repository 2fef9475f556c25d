"""Release groups: one row per release of a group, one per member (its wave, revision and deployments).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

Written by hand to match `shipyard.store.models.ReleaseGroupRun` and `ReleaseGroupMember`. The members'
deployment ids are plain columns, not foreign keys: retention may delete old deployments while the
release's record of what happened stays readable.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "release_groups",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("promotion_id", sa.String(128), nullable=True),
        _ts("created_at"),
        _ts("started_at", True),
        _ts("finished_at", True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_release_groups"),
    )
    op.create_index("ix_release_groups_env_created_at", "release_groups", ["env", "created_at"])
    op.create_index("ix_release_groups_state", "release_groups", ["state"])
    op.create_table(
        "release_group_members",
        sa.Column("group_id", sa.String(128), nullable=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("revision", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("deployment_id", sa.String(128), nullable=True),
        sa.Column("rollback_id", sa.String(128), nullable=True),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(["group_id"], ["release_groups.id"], ondelete="CASCADE",
                                name="fk_release_group_members_group_id_release_groups"),
        sa.PrimaryKeyConstraint("group_id", "service", name="pk_release_group_members"),
    )
    op.create_index("ix_release_group_members_deployment_id", "release_group_members", ["deployment_id"])


def downgrade() -> None:
    op.drop_index("ix_release_group_members_deployment_id", table_name="release_group_members")
    op.drop_table("release_group_members")
    op.drop_index("ix_release_groups_state", table_name="release_groups")
    op.drop_index("ix_release_groups_env_created_at", table_name="release_groups")
    op.drop_table("release_groups")
