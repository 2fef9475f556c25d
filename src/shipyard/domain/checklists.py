"""Checklist items of a deployment, pure: what each is, and how its recorded status reads to people.

A deployment snapshots its environment's items when it is recorded (engine.checklists); each row then
only moves forward: pending -> passed | failed (automated, run once) or pending -> confirmed (manual, by
one person). An item that never got its turn (the deploy stopped before it) stays pending in the store
and reads `skipped` once the deployment has ended; a manual post item of a succeeded deployment stays
pending, since people may still confirm it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PRE, POST = "pre", "post"
MANUAL = "manual"
PENDING, PASSED, FAILED, CONFIRMED, SKIPPED = "pending", "passed", "failed", "confirmed", "skipped"
DETAIL_MAX = 2000       # stored detail (a command's output tail, an HTTP answer) is cut to this


@dataclass(frozen=True)
class Item:
    phase: str                  # pre | post
    name: str
    kind: str                   # manual | command | http | metric
    spec: dict[str, Any]        # config.checklists.item_spec: what to run or confirm
    on_fail: str | None         # post automated: rollback | notify; pre: block; manual post: None

    @property
    def manual(self) -> bool:
        return self.kind == MANUAL

    @property
    def seconds(self) -> float:
        """How long running it may take at most (a metric item watches for its whole duration)."""
        if self.kind == "metric":
            return float(self.spec["metric"]["for"]) + 30.0
        if self.kind == "http":
            return float(self.spec["http"]["timeout"]) + 5.0
        return float(self.spec.get("timeout", 300.0)) + 5.0


def shown_status(status: str, phase: str, kind: str, deployment_state: str, terminal: bool) -> str:
    """The status people see: a pending item whose turn can no longer come reads `skipped`."""
    if status != PENDING or not terminal:
        return status
    if phase == POST and kind == MANUAL and deployment_state == "succeeded":
        return PENDING
    return SKIPPED


def clip(text: str | None, limit: int = DETAIL_MAX) -> str | None:
    """Keep the end of long output (where the error usually is), saying how much was cut."""
    if text is None or len(text) <= limit:
        return text
    return f"[{len(text) - limit} characters cut] " + text[-limit:]
