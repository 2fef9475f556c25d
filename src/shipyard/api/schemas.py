"""What the API answers, apart from the tables (a column added to the store is not published by accident)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class DeploymentOut(_Out):
    id: str
    service: str
    env: str
    kind: str = Field(description="deploy or rollback")
    state: str
    revision: str
    ref: str
    previous_revision: str | None
    strategy: str
    actor: str
    reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rollback_of: str | None


class DeploymentPage(BaseModel):
    items: list[DeploymentOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


class StepOut(_Out):
    phase: str
    idx: int
    kind: str
    description: str
    state: str
    started_at: datetime | None
    ended_at: datetime | None
    detail: dict[str, Any] | None
    output: str | None = Field(description="Hook and command output (secrets already masked).")
    error: str | None


class EventOut(_Out):
    id: int
    at: datetime
    kind: str
    message: str
    data: dict[str, Any] | None


class ChecklistItemOut(BaseModel):
    """One checklist item of a deployment (docs/approvals.md, Checklists): the dashboard renders these."""

    phase: Literal["pre", "post"]
    name: str
    kind: Literal["manual", "command", "http", "metric"]
    status: Literal["pending", "passed", "failed", "confirmed", "skipped"] = Field(
        description="skipped: its turn never came (the deploy stopped before it).")
    by: str | None = Field(description="Who confirmed it (a manual item), or `shipyard` (an automated one).")
    at: str | None = Field(description="When it was confirmed or its check ended (ISO 8601, UTC).")
    detail: str | None = Field(description="The check's result (output tail, HTTP status, alarm values) or "
                                           "the confirmer's comment.")
    on_fail: str | None = Field(description="block (pre items), rollback or notify (automated post items); "
                                            "null for a manual post item.")


class DeploymentDetail(DeploymentOut):
    steps: list[StepOut]
    checklist: list[ChecklistItemOut] = Field(default_factory=list,
                                              description="Pre items, then post items, in config order.")
    events: list[EventOut]


class Problem(BaseModel):
    """Every error answer: what went wrong, in one line."""

    error: str


class PromotionRepoOut(_Out):
    repo: str
    branch: str | None
    source_sha: str | None
    old_sha: str | None
    new_sha: str | None
    tag: str | None
    result: str
    detail: str | None


class PromotionOut(_Out):
    id: str
    kind: str = Field(description="promote, hotfix or rollback (of every repo to a tag)")
    source_env: str | None
    target_env: str
    stamp: str
    rollback_to: str | None
    actor: str
    message: str
    state: str
    detail: str | None
    created_at: datetime
    finished_at: datetime | None


class PromotionDetail(PromotionOut):
    repos: list[PromotionRepoOut]


class GitTriggerOut(_Out):
    service: str
    env: str
    sha: str
    source: str = Field(description="poll, github, gitlab or promote (a promotion's own auto-deploy)")
    delivery: str | None = Field(description="The webhook's delivery id.")
    repo: str
    branch: str
    pusher: str | None
    deployment_id: str | None = Field(description="The deployment it queued (null: see `refused`).")
    refused: str | None = Field(description="Why no deployment was queued (a frozen env, missing secrets).")
    created_at: datetime
