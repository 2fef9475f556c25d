"""The tables, as typed SQLAlchemy 2 ORM classes.

The migration in `migrations/versions/` must produce exactly this schema; a test compares the two with
Alembic's autogenerate, so a change here without a new migration fails the suite instead of a user's upgrade.

States are stored as plain strings (not database enums) so that adding a state is a code change, not a
migration; the rules that guard them live in `shipyard.domain`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names: Alembic can only alter or drop what it can name, on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY; elsewhere ids are 64-bit.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the backend keeps.

    SQLite has no time zone type (it stores text and hands back naive values) and PostgreSQL returns
    `timestamptz` in the session's zone; both are normalized here so callers can compare and subtract
    without caring which database they talk to. A naive datetime is refused: guessing its zone is how
    lease expiry goes wrong by hours.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to the store; use an aware UTC time")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # Stored as fixed-width text without an offset: string comparison then orders correctly.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[dict[str, Any]]: JSON()}


class Deployment(Base):
    """One run (a deploy or a rollback) of one service in one environment; the audit record of it."""

    __tablename__ = "deployments"
    __table_args__ = (
        Index("ix_deployments_service_env_created_at", "service", "env", "created_at"),
        Index("ix_deployments_state", "state"),
        # for reports (migration 0004): a period over every service, time to restore, later rollbacks
        Index("ix_deployments_created_at", "created_at"),
        Index("ix_deployments_finished_at", "finished_at"),
        Index("ix_deployments_rollback_of", "rollback_of"),
        # what serves each (service, env): its newest succeeded run by end time (migration 0010)
        Index("ix_deployments_service_env_state_finished_at", "service", "env", "state", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    service: Mapped[str] = mapped_column(String(128))
    env: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    revision: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(255))
    previous_revision: Mapped[str | None] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(255))
    owner: Mapped[str | None] = mapped_column(String(255))
    plan: Mapped[list[dict[str, Any]]]
    # What the engine must know to resume or roll back after its process died (old/new instance ids,
    # routed addresses); see shipyard.engine.runstate.RunContext.
    context: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    rollback_of: Mapped[str | None] = mapped_column(String(128))

    def __repr__(self) -> str:
        return f"<Deployment {self.id} {self.service}/{self.env} {self.state}>"


class StepRecord(Base):
    """One executed step of a deployment's plan; written at start and at end so a crash shows where."""

    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("deployment_id", "phase", "idx"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("deployments.id", ondelete="CASCADE"))
    phase: Mapped[str] = mapped_column(String(16))
    idx: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    detail: Mapped[dict[str, Any] | None]
    output: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<StepRecord {self.deployment_id} {self.phase}#{self.idx} {self.kind} {self.state}>"


class Event(Base):
    """An append-only audit line (`deploy.started`, `step.failed`, ...); notifications are routed on `kind`."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_service_env_at", "service", "env", "at"),
        Index("ix_events_deployment_id", "deployment_id"),
        {"sqlite_autoincrement": True},  # ids never reused, so readers can tail by id
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    deployment_id: Mapped[str | None] = mapped_column(
        String(128), ForeignKey("deployments.id", ondelete="SET NULL"))
    service: Mapped[str] = mapped_column(String(128))
    env: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None]

    def __repr__(self) -> str:
        return f"<Event {self.id} {self.kind} {self.service}/{self.env}>"


class Lease(Base):
    """Who may run on (service, env) right now; one row per pair, taken by insert or by a guarded update."""

    __tablename__ = "leases"

    service: Mapped[str] = mapped_column(String(128), primary_key=True)
    env: Mapped[str] = mapped_column(String(128), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    expires_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<Lease {self.service}/{self.env} {self.deployment_id} by {self.owner}>"


class QueueEntry(Base):
    """A run waiting for the (service, env) lease; the id gives FIFO order."""

    __tablename__ = "queue"
    __table_args__ = (
        Index("ix_queue_service_env_id", "service", "env", "id"),
        UniqueConstraint("deployment_id"),
        {"sqlite_autoincrement": True},  # a late arrival must never reuse a smaller id and jump the line
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    service: Mapped[str] = mapped_column(String(128))
    env: Mapped[str] = mapped_column(String(128))
    deployment_id: Mapped[str] = mapped_column(String(128))
    owner: Mapped[str] = mapped_column(String(255))
    enqueued_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<QueueEntry {self.id} {self.service}/{self.env} {self.deployment_id}>"


class Promotion(Base):
    """One multi-repo operation (promote, hotfix sync, tag rollback): who, what, and how it ended.

    Written before the first push (state `planned`, with every repo's planned new sha), so a crash at any
    point leaves a record that says which repos may have moved and lets `promote --resume` finish it.
    """

    __tablename__ = "promotions"
    __table_args__ = (Index("ix_promotions_target_env_created_at", "target_env", "created_at"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    source_env: Mapped[str | None] = mapped_column(String(128))
    target_env: Mapped[str] = mapped_column(String(128))
    stamp: Mapped[str] = mapped_column(String(32))
    rollback_to: Mapped[str | None] = mapped_column(String(255))
    actor: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<Promotion {self.id} {self.kind} {self.source_env}->{self.target_env} {self.state}>"


class PromotionRepo(Base):
    """One repo's part in a promotion: the refs it moves (old -> new) and what became of them."""

    __tablename__ = "promotion_repos"

    promotion_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("promotions.id", ondelete="CASCADE"), primary_key=True)
    repo: Mapped[str] = mapped_column(String(128), primary_key=True)
    branch: Mapped[str | None] = mapped_column(String(255))
    source_sha: Mapped[str | None] = mapped_column(String(64))
    old_sha: Mapped[str | None] = mapped_column(String(64))
    new_sha: Mapped[str | None] = mapped_column(String(64))
    tag: Mapped[str | None] = mapped_column(String(255))
    result: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    updates: Mapped[list[dict[str, Any]]]
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<PromotionRepo {self.promotion_id} {self.repo} {self.result}>"


class EnvFreeze(Base):
    """An environment frozen against promotion (by a rollback), until `shipyard unfreeze` lifts it.

    Lifted freezes are kept (lifted_at/lifted_by set) as the audit of who allowed promotions again.
    """

    __tablename__ = "env_freezes"
    __table_args__ = (Index("ix_env_freezes_env_lifted_at", "env", "lifted_at"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    env: Mapped[str] = mapped_column(String(128))
    promotion_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    frozen_by: Mapped[str] = mapped_column(String(255))
    frozen_at: Mapped[datetime]
    lifted_by: Mapped[str | None] = mapped_column(String(255))
    lifted_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<EnvFreeze {self.env} by {self.promotion_id} lifted={self.lifted_at is not None}>"


class OutboxEntry(Base):
    """One notification to deliver: an event routed to one channel, written in the event's transaction.

    The worker claims due rows, sends, and records the outcome; `idempotency_key` travels with the message
    so a receiver can drop the duplicate that at-least-once delivery may produce after a crash.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_outbox_event_id", "event_id"),        # retention deletes events (migration 0008)
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("events.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(128))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<OutboxEntry {self.id} {self.channel} {self.state} attempts={self.attempts}>"


class ApiToken(Base):
    """A token of the HTTP API. Only the sha256 of its secret is kept (the secret is random, 256 bits: a
    fast hash is enough, nothing to brute-force); the token is shown once, when it is made."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_name", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)      # the public part of the token
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(255))                    # comma-separated, sorted
    envs: Mapped[str | None] = mapped_column(Text)                      # comma-separated; None: every env
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<ApiToken {self.name} {self.scopes} revoked={self.revoked_at is not None}>"


class DaemonLease(Base):
    """Which `shipyard serve` runs one piece of background work (the outbox worker, a watcher) now.

    Several daemons on one PostgreSQL split the work this way: each piece is taken by one, renewed while it
    runs, and taken over by another once it expires (its holder was killed or cut off)."""

    __tablename__ = "daemon_leases"

    work: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    acquired_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    expires_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<DaemonLease {self.work} {self.owner} until {self.expires_at}>"


class GitTrigger(Base):
    """A deploy GitOps queued (or had refused) because a branch moved: at most one per (service, env, sha),
    so two daemons, or a webhook racing the poller, never deploy one commit twice (insert first, deploy
    only if the insert won)."""

    __tablename__ = "git_triggers"
    __table_args__ = (UniqueConstraint("service", "env", "sha"), Index("ix_git_triggers_created_at", "created_at"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    service: Mapped[str] = mapped_column(String(128))
    env: Mapped[str] = mapped_column(String(128))
    sha: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))                     # poll | github | gitlab
    delivery: Mapped[str | None] = mapped_column(String(255))           # the webhook's delivery id
    repo: Mapped[str] = mapped_column(String(128))
    branch: Mapped[str] = mapped_column(String(255))
    pusher: Mapped[str | None] = mapped_column(String(255))
    deployment_id: Mapped[str | None] = mapped_column(String(128))
    refused: Mapped[str | None] = mapped_column(Text)                   # why no deployment was queued
    created_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<GitTrigger {self.service}/{self.env} {self.sha[:7]} {self.source} -> {self.deployment_id}>"


class GitDelivery(Base):
    """A webhook delivery already received (GitHub's X-GitHub-Delivery, GitLab's X-Gitlab-Event-UUID): the
    same one again is a replay, refused even when its sha would be new."""

    __tablename__ = "git_deliveries"

    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    delivery: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[datetime]


class GitTip(Base):
    """The last tip GitOps handled per (repo, branch): a restarted or another daemon does not redo it, and
    the first poll of a branch records its tip as the baseline instead of deploying it."""

    __tablename__ = "git_tips"

    repo: Mapped[str] = mapped_column(String(128), primary_key=True)
    branch: Mapped[str] = mapped_column(String(255), primary_key=True)
    sha: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    seen_at: Mapped[datetime]


class DailyAggregate(Base):
    """What stats and DORA need of one UTC day's runs of one (service, env, kind), once the runs are pruned.

    Written by `shipyard.store.retention` (recomputing a day replaces its rows) from the raw rows before they
    are deleted; `shipyard.reports` reads these for the days before `HistoryHorizon.pruned_before` and the
    raw rows after it. Histograms are `shipyard.reports.histogram`'s: {bucket: count} in JSON."""

    __tablename__ = "daily_aggregates"

    day: Mapped[datetime] = mapped_column(primary_key=True)           # midnight UTC; runs by created_at
    service: Mapped[str] = mapped_column(String(128), primary_key=True)
    env: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    total: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)                       # state failed
    rolled_back: Mapped[int] = mapped_column(Integer)                  # state rolled_back
    cancelled: Mapped[int] = mapped_column(Integer)
    reached: Mapped[int] = mapped_column(Integer)                      # DORA: reached the env
    change_failed: Mapped[int] = mapped_column(Integer)                # DORA: a change failure
    restored: Mapped[int] = mapped_column(Integer)
    unrestored: Mapped[int] = mapped_column(Integer)
    dur_sum: Mapped[float] = mapped_column(Float)
    dur_n: Mapped[int] = mapped_column(Integer)
    dur_hist: Mapped[dict[str, Any]]
    restore_hist: Mapped[dict[str, Any]]
    steps: Mapped[dict[str, Any]]                                      # step kind -> [failures, timed, seconds]
    # pipeline time per deployment (`reports.pipeline`): {"n", "hist", "max", "over_kpi", "slowest": [[id, s]]};
    # None on days folded before revision 0010 and pruned since (nothing left to fold them from)
    pipeline: Mapped[dict[str, Any] | None]
    folded_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<DailyAggregate {self.day:%Y-%m-%d} {self.service}/{self.env} {self.kind} {self.total}>"


class HistoryHorizon(Base):
    """One row (id 1): where reports stop reading daily aggregates and start reading raw runs.

    `pruned_before`: runs created before it are gone (retention); moved forward only after those days are
    folded and before their rows are deleted, so a prune stopped at any point leaves every day either read
    from complete aggregates or from complete raw rows. `folded_before`: every closed day before it has
    complete aggregates (`shipyard.store.folding`), raw rows still there; a day changed since its fold is
    marked in `fold_dirty` and read raw until it is folded again. None: not yet."""

    __tablename__ = "history_horizon"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pruned_before: Mapped[datetime | None]
    folded_before: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<HistoryHorizon pruned {self.pruned_before} folded {self.folded_before}>"


class FoldDirty(Base):
    """A folded day whose runs changed after its fold (a run of it finished late, was rolled back, or a
    failure of it was restored): reports read it raw until the next fold replaces its aggregates. The id
    orders marks, so a fold removes only the marks it has seen."""

    __tablename__ = "fold_dirty"
    __table_args__ = (Index("ix_fold_dirty_day", "day"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[datetime]
    marked_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<FoldDirty {self.day:%Y-%m-%d}>"


class ApprovalRequest(Base):
    """The approval gate of one deployment: the policy as it was when asked (so a later config edit or
    another daemon judges it alike), when it opened, and which process waits to run it (`holder`, which
    heart-beats; a dead or silent holder's run is taken over, so a crash loses no approval)."""

    __tablename__ = "approval_requests"
    __table_args__ = (Index("ix_approval_requests_service_env", "service", "env"),)

    deployment_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    service: Mapped[str] = mapped_column(String(128))
    env: Mapped[str] = mapped_column(String(128))
    requested_by: Mapped[str] = mapped_column(String(255))
    policy: Mapped[dict[str, Any]]                                      # domain.approvals.Policy.to_dict()
    requested_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    granted_at: Mapped[datetime | None]                                 # the required-th approval: the wait starts
    holder: Mapped[str | None] = mapped_column(String(255))
    holder_beat_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<ApprovalRequest {self.deployment_id} by {self.requested_by} holder={self.holder}>"


class ApprovalDecision(Base):
    """One person's approve or reject of a deployment: who, what, when, why, and through what (cli, api,
    link). A signed link's nonce is kept here: unique, so a link is used once."""

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_deployment_id", "deployment_id"), UniqueConstraint("nonce"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("deployments.id", ondelete="CASCADE"))
    approver: Mapped[str] = mapped_column(String(255))
    decision: Mapped[str] = mapped_column(String(16))                   # approve | reject
    comment: Mapped[str] = mapped_column(Text)
    via: Mapped[str] = mapped_column(String(16))                        # cli | api | link | dashboard
    nonce: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<ApprovalDecision {self.deployment_id} {self.approver} {self.decision}>"


class ReleaseGroupRun(Base):
    """One release of a group (`releases:` in shipyard.yaml): several services' deployments in waves with one
    abort. Written before the first lease is taken, so a crash at any point leaves a record that `shipyard
    recover` finishes or rolls back as a whole (engine.groups)."""

    __tablename__ = "release_groups"
    __table_args__ = (Index("ix_release_groups_env_created_at", "env", "created_at"),
                      Index("ix_release_groups_state", "state"))

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    env: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(32))       # groups.plan.GROUP_STATES
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(255))
    owner: Mapped[str | None] = mapped_column(String(255))
    promotion_id: Mapped[str | None] = mapped_column(String(128))   # `promote --release`: the promotion it follows
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<ReleaseGroupRun {self.id} {self.name}/{self.env} {self.state}>"


class ReleaseGroupMember(Base):
    """One service's part in a release group run: its wave, the revision it goes to, and the deployment
    (and, after an abort, the rollback) that did it. The deployments are ordinary rows of `deployments`."""

    __tablename__ = "release_group_members"
    __table_args__ = (Index("ix_release_group_members_deployment_id", "deployment_id"),)

    group_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("release_groups.id", ondelete="CASCADE"), primary_key=True)
    service: Mapped[str] = mapped_column(String(128), primary_key=True)
    wave: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    ref: Mapped[str] = mapped_column(String(255))
    revision: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))       # groups.plan.MEMBER_STATES
    reason: Mapped[str | None] = mapped_column(Text)
    deployment_id: Mapped[str | None] = mapped_column(String(128))
    rollback_id: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<ReleaseGroupMember {self.group_id} {self.service} {self.state}>"


class ChecklistResult(Base):
    """One checklist item of a deployment: the item as snapshot when the deployment was recorded (`spec`),
    and what became of it: who confirmed it and when, or an automated check's status, detail (its output's
    tail, cut) and duration."""

    __tablename__ = "checklist_items"
    __table_args__ = (UniqueConstraint("deployment_id", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("deployments.id", ondelete="CASCADE"))
    phase: Mapped[str] = mapped_column(String(8))                      # pre | post
    position: Mapped[int]
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))                      # manual | command | http | metric
    spec: Mapped[dict[str, Any]]                                       # config.checklists.item_spec
    on_fail: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))                    # pending | passed | failed | confirmed
    by: Mapped[str | None] = mapped_column(String(255))
    at: Mapped[datetime | None]
    detail: Mapped[str | None] = mapped_column(Text)
    seconds: Mapped[float | None] = mapped_column(Float)

    def __repr__(self) -> str:
        return f"<ChecklistResult {self.deployment_id} {self.phase}:{self.name} {self.status}>"
