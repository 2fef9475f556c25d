"""The approval gate of an environment, the approver groups it names, and the signed links in messages.

An entry of `approvers` names a group (a key of the top-level `approvers:`) or, when no group has that
name, one person. A person is who the API token's name or the local actor says (docs/approvals.md): the
names are matched as written, so `alice` the token and `alice` the group member are one person.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from shipyard.config.base import StrictModel
from shipyard.config.durations import Duration
from shipyard.domain.approvals import Policy

_PERSON = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")


def check_person(value: str) -> str:
    """A person or group name as tokens and actors are spelt (letters, digits, `_ . @ + -`, up to 128)."""
    if not _PERSON.fullmatch(value):
        raise ValueError(f"invalid approver {value[:80]!r}: letters, digits, '_', '.', '@', '+' and '-' (up to "
                         "128), starting with a letter or digit")
    return value


Person = Annotated[str, AfterValidator(check_person)]


class Approvals(StrictModel):
    """Sign-offs a deploy (or a promotion's deploy) into this environment waits for, holding no lease."""

    required: int = Field(default=1, ge=1, le=50, description="How many distinct approvers must approve.")
    approvers: list[Person] = Field(default_factory=list,
                                    description="Who may approve: group names (top-level `approvers`) or "
                                                "people; empty: anyone but, unless allowed, the requester.")
    wait: Duration = Field(default=0.0, ge=0, le=30 * 86400,
                           description="After the last needed approval, wait this long before deploying "
                                       "(a reject in that time still cancels).")
    branches: list[str] = Field(default_factory=list,
                                description="Only revisions on these branches (glob patterns like "
                                            "`release/*`) may be deployed; empty: any revision.")
    timeout: Duration = Field(default=86400.0, gt=0, le=90 * 86400,
                              description="A request not approved this long after it was made is cancelled.")
    self_approval: bool = Field(default=False, description="Whether the requester's own approval counts.")


class ApprovalLinks(StrictModel):
    """Approve/reject links in `approval.requested` messages: signed, single-use, expiring."""

    secret: str = Field(min_length=1, description="HMAC key the links are signed with, usually "
                                                  "`${secret:SHIPYARD_LINK_SECRET}` (at least 32 characters).")
    url: str | None = Field(default=None, description="Base URL of `shipyard serve` as people reach it "
                                                      "(default `notifications.dashboard_url`).")
    expires: Duration = Field(default=86400.0, gt=0, le=30 * 86400,
                              description="A link stops working this long after it was sent (or when its "
                                          "request times out, if sooner).")


def expand(approvers: list[str], groups: dict[str, list[str]]) -> list[str] | None:
    """The people an env's `approvers` list names (groups expanded, sorted); None for anyone."""
    if not approvers:
        return None
    people: set[str] = set()
    for entry in approvers:
        people |= set(groups[entry]) if entry in groups else {entry}
    return sorted(people)


def approval_problems(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Gates that can never open: fewer people than `required` (a misspelt group counts as one person)."""
    groups = data.get("approvers") or {}
    out: list[tuple[tuple[str | int, ...], str]] = []
    for name, env in (data.get("environments") or {}).items():
        gate = (env or {}).get("approvals") if isinstance(env, dict) else None
        if not isinstance(gate, dict) or not gate.get("approvers"):
            continue
        people = expand(list(gate["approvers"]), groups) or []
        required = int(gate.get("required", 1))
        if required > len(people):
            out.append((("environments", name, "approvals", "required"),
                        f"{required} approvals required but only {len(people)} "
                        f"{'person' if len(people) == 1 else 'people'} can approve "
                        f"({', '.join(people)}); an entry that is no group under `approvers:` is one person"))
    return out


def policy_for(gate: Approvals | None, groups: dict[str, list[str]]) -> Policy | None:
    """What the engine snapshots into each request: the people named (groups expanded) and the rules."""
    if gate is None:
        return None
    people = expand(list(gate.approvers), groups)
    return Policy(required=gate.required, approvers=tuple(people) if people is not None else None,
                  wait=float(gate.wait), timeout=float(gate.timeout), self_approval=gate.self_approval,
                  branches=tuple(gate.branches))
