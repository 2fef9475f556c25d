"""The approval gate's rules, pure: who may decide, what the decisions so far add up to, and when the
deploy may go.

A request snapshots its policy when it is made (people, count, wait, deadline), so a config edited while it
waits, or a daemon with another config, judges it the same way. The wait runs after the last needed
approval (GitHub environments' wait timer, as issue 11 asks), and a reject at any time before the deploy
starts cancels it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

APPROVE, REJECT = "approve", "reject"


@dataclass(frozen=True)
class Policy:
    required: int
    approvers: tuple[str, ...] | None       # the people who may approve; None: anyone
    wait: float                             # seconds after the last needed approval
    timeout: float                          # seconds after the request before it expires
    self_approval: bool
    branches: tuple[str, ...] = ()          # glob patterns; empty: any revision

    def to_dict(self) -> dict[str, object]:
        return {"required": self.required, "approvers": list(self.approvers) if self.approvers is not None else None,
                "wait": self.wait, "timeout": self.timeout, "self_approval": self.self_approval,
                "branches": list(self.branches)}


@dataclass(frozen=True)
class Decision:
    approver: str
    decision: str                           # approve | reject
    at: datetime
    comment: str = ""


class Verdict(enum.StrEnum):
    PENDING = "pending"         # fewer distinct approvals than required
    WAITING = "waiting"         # approved; the wait timer runs
    READY = "ready"             # approved and waited: it may take its turn for the lease
    REJECTED = "rejected"
    EXPIRED = "expired"         # not approved before the deadline


def refusal(policy: Policy, requester: str, approver: str) -> str | None:
    """Why `approver` may not decide on `requester`'s request (None: they may). A reject is held to the
    same rule as an approval: only the people who can open the gate can shut it."""
    if policy.approvers is not None and approver not in policy.approvers:
        return f"{approver} is not an approver here (approvers: {', '.join(policy.approvers)})"
    if approver == requester and not policy.self_approval:
        return f"{approver} requested this deploy and may not approve it (self_approval is off)"
    return None


def approvals_that_count(policy: Policy, requester: str, decisions: list[Decision]) -> list[str]:
    """The distinct people whose approval counts, in the order they first approved."""
    seen: list[str] = []
    for d in sorted(decisions, key=lambda d: d.at):
        if d.decision == APPROVE and d.approver not in seen and refusal(policy, requester, d.approver) is None:
            seen.append(d.approver)
    return seen


def granted_at(policy: Policy, requester: str, decisions: list[Decision]) -> datetime | None:
    """When the `required`-th distinct approval landed (the wait timer starts there), or None."""
    counted, when = [], None
    for d in sorted(decisions, key=lambda d: d.at):
        if d.decision == APPROVE and d.approver not in counted and refusal(policy, requester, d.approver) is None:
            counted.append(d.approver)
            if len(counted) == policy.required:
                when = d.at
                break
    return when


def verdict(policy: Policy, requester: str, decisions: list[Decision], requested_at: datetime,
            now: datetime, pending: int = 0) -> tuple[Verdict, datetime | None]:
    """The state of the gate now, and the moment it next changes by itself (the wait's end or the deadline).

    `pending` counts the manual checklist items not confirmed yet: the gate stays shut while any is left
    (and expires at the deadline like missing approvals). A policy requiring no approvals is a gate of
    checklist items only: granted when it is opened."""
    if any(d.decision == REJECT for d in decisions):
        return Verdict.REJECTED, None
    granted = requested_at if policy.required == 0 else granted_at(policy, requester, decisions)
    if granted is None or pending:
        deadline = requested_at + timedelta(seconds=policy.timeout)
        return (Verdict.EXPIRED, None) if now >= deadline else (Verdict.PENDING, deadline)
    ready = granted + timedelta(seconds=policy.wait)
    return (Verdict.READY, None) if now >= ready else (Verdict.WAITING, ready)
