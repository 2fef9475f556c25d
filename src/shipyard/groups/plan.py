"""Pure planning of a release group: which member goes when, and on an abort what is undone in what order.

Invariants (the executor, engine.groups, relies on them):
- a wave starts only after every member of the wave before it succeeded;
- on an abort, members that succeeded are rolled back in reverse wave order (the last wave first: the
  services that depend on the earlier ones go back before what they depend on), and within a wave in
  reverse place order;
- a member that never started is never started once the group aborts (it ends `cancelled`);
- a member whose deployment is still unfinished (it was running when the abort came, or its process
  died) is finished by rolling it back first, before any succeeded member is flipped back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

# queued: recorded, waiting for its members' leases; in_progress: waves running; aborting: undoing members;
# succeeded: every member succeeded; rolled_back: aborted and every member that moved is back;
# failed: aborted and some member could not be put back (the record says which); cancelled: refused or
# died before anything started.
GROUP_STATES: Final = frozenset({"queued", "in_progress", "aborting", "succeeded", "rolled_back", "failed",
                                 "cancelled"})
GROUP_UNFINISHED: Final = frozenset({"queued", "in_progress", "aborting"})
# pending: not started; running: its deployment exists and runs; succeeded; failed (its own deployment
# failed before it changed anything); rolled_back (by its own deployment or by the abort); unchanged (the
# abort found nothing to undo: it already served that revision, or it had no previous one); rollback_failed
# (the abort could not put it back: the record of its rollback says why); cancelled (never started).
MEMBER_STATES: Final = frozenset({"pending", "running", "succeeded", "failed", "rolled_back", "unchanged",
                                  "rollback_failed", "cancelled"})


@dataclass(frozen=True)
class Member:
    service: str
    wave: int           # 0-based
    position: int       # place in its wave, 0-based
    ref: str            # what was asked for (a tag, a branch, a sha)
    revision: str = ""  # the sha it resolved to (filled in by the executor before anything is recorded)


@dataclass(frozen=True)
class GroupPlan:
    name: str
    env: str
    members: tuple[Member, ...]

    @property
    def waves(self) -> list[list[Member]]:
        count = max((m.wave for m in self.members), default=-1) + 1
        return [[m for m in self.members if m.wave == n] for n in range(count)]

    def services(self) -> list[str]:
        """Every member, sorted by name: the fixed order the group takes the members' leases in, so two
        groups (or a group and a plain deploy) never wait for each other in a circle."""
        return sorted(m.service for m in self.members)


def parse_revs(items: Sequence[str] | None, services: Sequence[str]) -> dict[str, str]:
    """`--rev` values: `SERVICE=REF` for one member, or a bare `REF` for every member (a shared tag).
    A later value for the same member wins; an unknown member is a ValueError naming the known ones."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, ref = item.partition("=")
        if not sep:
            out.update({s: item.strip() for s in services})
            continue
        name, ref = name.strip(), ref.strip()
        if name not in services:
            raise ValueError(f"--rev {item}: {name!r} is not a member of the group ({', '.join(services)})")
        if not ref:
            raise ValueError(f"--rev {item}: no revision after '='")
        out[name] = ref
    if any(not ref for ref in out.values()):
        raise ValueError("--rev: an empty revision")
    return out


def plan_release(name: str, env: str, waves: Sequence[Sequence[str]], revs: Mapping[str, str],
                 default_ref: Mapping[str, str]) -> GroupPlan:
    """Every member with its wave and the ref it goes to (`revs`, else its env branch from `default_ref`)."""
    members = tuple(Member(service=svc, wave=w, position=p, ref=revs.get(svc) or default_ref[svc])
                    for w, wave in enumerate(waves) for p, svc in enumerate(wave))
    return GroupPlan(name=name, env=env, members=members)


@dataclass(frozen=True)
class AbortPlan:
    finish: tuple[str, ...]       # unfinished deployments to roll back first (they may hold traffic splits)
    flip_back: tuple[str, ...]    # succeeded members, in the order to roll them back
    cancel: tuple[str, ...]       # never started: recorded cancelled, never started


def abort_plan(plan: GroupPlan, states: Mapping[str, str]) -> AbortPlan:
    """What an abort does with each member, given member states (`pending`, `running`, `succeeded`, ...)."""
    back = sorted(plan.members, key=lambda m: (-m.wave, -m.position))
    return AbortPlan(finish=tuple(m.service for m in back if states.get(m.service) == "running"),
                     flip_back=tuple(m.service for m in back if states.get(m.service) == "succeeded"),
                     cancel=tuple(m.service for m in plan.members if states.get(m.service, "pending") == "pending"))


def group_outcome(states: Mapping[str, str]) -> str:
    """The group's end state after an abort: rolled_back when every member is back (or never moved)."""
    stuck = [s for s, st in states.items() if st in ("running", "succeeded", "rollback_failed")]
    return "failed" if stuck else "rolled_back"
