"""Promotions left unfinished (a partial push kept with --keep-partial, or a run that died mid-way): they
block new promotions between the same environments until resumed or abandoned.

A second promotion dev → stg on top of a partial one would build its merges from a stg that is half the
old plan and half not, and `promote --resume` of the first would then push stale commits over it. So the
new one is refused, naming the unfinished one and both ways out: `promote --resume ID` finishes it,
`promote --abandon ID` records that it will not be finished (the repos it pushed stay pushed; the record
says which). An unfinished tag rollback of an environment blocks promotions and rollbacks into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shipyard.errors import UnfinishedPromotion, UsageError
from shipyard.notify.outbox import record_event
from shipyard.store import Store
from shipyard.store import promotions as pq

UNFINISHED = tuple(sorted(pq.UNFINISHED))


def _blocks(row: Any, kind: str, source_env: str | None) -> bool:
    """An unfinished tag rollback of the env blocks everything into it; a promotion or hotfix blocks the
    same kind between the same envs (a rollback stays possible: it is how a bad promotion is undone)."""
    if row.kind == "rollback":
        return True
    return row.kind == kind and row.source_env == source_env


def check_no_unfinished(store: Store, kind: str, source_env: str | None, target_env: str) -> None:
    """Raise UnfinishedPromotion when an unfinished promotion stands in the way of this one."""
    with store.session(readonly=True) as s:
        found = [(row.id, row.kind, row.source_env, row.state, _pushed(pq.promotion_repos(s, row.id)))
                 for row in pq.unfinished_promotions(s, target_env=target_env) if _blocks(row, kind, source_env)]
    if not found:
        return
    plan_id, what, source, state, pushed = found[0]
    envs = f"{source} → {target_env}" if source else target_env
    detail = f"{len(pushed)} repo(s) already pushed: {', '.join(pushed)}" if pushed else "nothing pushed yet"
    raise UnfinishedPromotion(
        f"{plan_id} ({what} {envs}) is {state} ({detail}): finish it with `shipyard promote --resume {plan_id}` "
        f"or give it up with `shipyard promote --abandon {plan_id}` before a new one")


def _pushed(repos: list[Any]) -> list[str]:
    return [r.repo for r in repos if r.result in ("pushed", "compensation_failed")]


@dataclass
class Abandoned:
    id: str
    kind: str
    previous_state: str
    pushed: list[str] = field(default_factory=list)        # repos that stay where the promotion put them
    not_pushed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "previous_state": self.previous_state, "state": "abandoned",
                "pushed": self.pushed, "not_pushed": self.not_pushed}


def abandon(store: Store, plan_id: str, *, actor: str, reason: str = "", notifications: Any = None) -> Abandoned:
    """Record that an unfinished promotion will not be finished (no git ref changes): state `abandoned`,
    with who, why and which repos stay pushed, and a `promotion.abandoned` event in the same transaction."""
    with store.session() as s:
        row = pq.get_promotion(s, plan_id)
        if row is None:
            raise UsageError(f"no promotion {plan_id!r} (see `shipyard history --promotions`)")
        if row.state not in pq.UNFINISHED:
            raise UsageError(f"promotion {plan_id} is {row.state}; only an unfinished one (planned, pushed or "
                             "partial) can be abandoned")
        repos = pq.promotion_repos(s, plan_id)
        out = Abandoned(plan_id, row.kind, row.state, _pushed(repos),
                        [r.repo for r in repos if r.result not in ("pushed", "compensation_failed", "skipped")])
        why = f": {reason}" if reason else ""
        stays = f"; stay pushed: {', '.join(out.pushed)}" if out.pushed else "; nothing was pushed"
        pq.set_promotion_state(s, plan_id, "abandoned", detail=f"abandoned by {actor}{why}{stays}")
        record_event(s, notifications, "promotion.abandoned", service="*", env=row.target_env,
                     message=f"{row.kind} {row.source_env or ''}→{row.target_env} {plan_id} abandoned by {actor}"
                             f"{why}{stays}",
                     data={"promotion": plan_id, "kind": row.kind, "actor": actor, "reason": reason,
                           "pushed": out.pushed, "not_pushed": out.not_pushed, "previous_state": out.previous_state})
    return out
