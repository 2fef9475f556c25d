"""Initial schema: deployments, steps, events, leases, queue.

Revision ID: 0001
Revises:
Create Date: 2024-11-22

Written by hand to match `shipyard.store.models`; the store tests compare the two with autogenerate.
Types are spelled out here (not imported from models) so that later model changes cannot rewrite history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("revision", sa.String(64), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("previous_revision", sa.String(64), nullable=True),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=True),
        _ts("created_at"),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        _ts("updated_at"),
        sa.Column("rollback_of", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
    )
    op.create_index("ix_deployments_service_env_created_at", "deployments", ["service", "env", "created_at"])
    op.create_index("ix_deployments_state", "deployments", ["state"])

    op.create_table(
        "steps",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(128), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        _ts("started_at", nullable=True),
        _ts("ended_at", nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE",
                                name="fk_steps_deployment_id_deployments"),
        sa.PrimaryKeyConstraint("id", name="pk_steps"),
        sa.UniqueConstraint("deployment_id", "phase", "idx", name="uq_steps_deployment_id_phase_idx"),
    )

    op.create_table(
        "events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        _ts("at"),
        sa.Column("deployment_id", sa.String(128), nullable=True),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="SET NULL",
                                name="fk_events_deployment_id_deployments"),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_service_env_at", "events", ["service", "env", "at"])
    op.create_index("ix_events_deployment_id", "events", ["deployment_id"])

    op.create_table(
        "leases",
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("deployment_id", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        _ts("acquired_at"),
        _ts("heartbeat_at"),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("service", "env", name="pk_leases"),
    )

    op.create_table(
        "queue",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("env", sa.String(128), nullable=False),
        sa.Column("deployment_id", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        _ts("enqueued_at"),
        _ts("heartbeat_at"),
        sa.PrimaryKeyConstraint("id", name="pk_queue"),
        sa.UniqueConstraint("deployment_id", name="uq_queue_deployment_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_queue_service_env_id", "queue", ["service", "env", "id"])


def downgrade() -> None:
    op.drop_table("queue")
    op.drop_table("leases")
    op.drop_table("events")
    op.drop_table("steps")
    op.drop_table("deployments")
