"""Deployment states and the rules for moving between them (declarative, as in Prefect's orchestration rules)."""

from __future__ import annotations

import enum
from datetime import datetime

from shipyard.errors import InvalidTransition


class DeployState(enum.StrEnum):
    QUEUED = "queued"
    AWAITING_APPROVAL = "awaiting_approval"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


class StepState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


TERMINAL = frozenset({DeployState.SUCCEEDED, DeployState.FAILED, DeployState.ROLLED_BACK,
                      DeployState.CANCELLED})

# Each state lists where it may go. `failed` is terminal when nothing could be rolled back (for example a
# build failure before any instance started); a failure after traffic moved goes through rolling_back.
# A succeeded deployment may be rolled back later (`shipyard rollback` flips traffic to the warm previous set).
ALLOWED: dict[DeployState, frozenset[DeployState]] = {
    # queued -> failed: an automated pre-deploy checklist item failed (before the gate and the lease).
    DeployState.QUEUED: frozenset({DeployState.AWAITING_APPROVAL, DeployState.IN_PROGRESS,
                                   DeployState.CANCELLED, DeployState.FAILED}),
    DeployState.AWAITING_APPROVAL: frozenset({DeployState.IN_PROGRESS, DeployState.CANCELLED}),
    DeployState.IN_PROGRESS: frozenset({DeployState.SUCCEEDED, DeployState.FAILED,
                                        DeployState.ROLLING_BACK, DeployState.CANCELLED}),
    DeployState.ROLLING_BACK: frozenset({DeployState.ROLLED_BACK, DeployState.FAILED}),
    DeployState.SUCCEEDED: frozenset({DeployState.ROLLING_BACK}),
    DeployState.FAILED: frozenset(),
    DeployState.ROLLED_BACK: frozenset(),
    DeployState.CANCELLED: frozenset(),
}


def check_transition(current: DeployState | str, target: DeployState | str) -> DeployState:
    """Return the target state, or raise InvalidTransition: a forbidden move is a bug, never ignored."""
    cur, tgt = DeployState(current), DeployState(target)
    if tgt not in ALLOWED[cur]:
        raise InvalidTransition(f"deployment may not go from {cur} to {tgt}")
    return tgt


def new_deployment_id(now: datetime, sha: str) -> str:
    """`deploy-YYYYMMDD-HHMMSS-<sha8>`: sortable by time, and names the revision at a glance."""
    return f"deploy-{now:%Y%m%d-%H%M%S}-{sha[:8]}"
