"""GitOps: the deploys a moved branch triggered, the webhook deliveries received, the last tips handled.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Written by hand to match `shipyard.store.models.GitTrigger`, `GitDelivery` and `GitTip`. The unique
(service, env, sha) is what keeps two daemons, or a webhook and the poller, from deploying one commit
twice; the deliveries' primary key is what refuses a replayed webhook.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "git_triggers",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("delivery", sa.String(255), nullable=True),
        sa.Column("repo", sa.String(128), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("pusher", sa.String(255), nullable=True),
        sa.Column("deployment_id", sa.String(128), nullable=True),
        sa.Column("refused", sa.Text(), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_git_triggers"),
        sa.UniqueConstraint("service", "env", "sha", name="uq_git_triggers_service_env_sha"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_git_triggers_created_at", "git_triggers", ["created_at"])
    op.create_table(
        "git_deliveries",
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("delivery", sa.String(255), nullable=False),
        _ts("received_at"),
        sa.PrimaryKeyConstraint("source", "delivery", name="pk_git_deliveries"),
    )
    op.create_table(
        "git_tips",
        sa.Column("repo", sa.String(128), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("sha", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        _ts("seen_at"),
        sa.PrimaryKeyConstraint("repo", "branch", name="pk_git_tips"),
    )


def downgrade() -> None:
    op.drop_table("git_tips")
    op.drop_table("git_deliveries")
    op.drop_index("ix_git_triggers_created_at", table_name="git_triggers")
    op.drop_table("git_triggers")
