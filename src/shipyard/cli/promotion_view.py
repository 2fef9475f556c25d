"""How promotions are shown: `shipyard history --promotions` and `shipyard show <promotion id>`.

Kept apart from promote.py so those read commands do not load the fleet, the engine and the notification
channels that promoting needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.cli import render
from shipyard.store import promotions as pq

if TYPE_CHECKING:
    from shipyard.cli.project import Project


def promotion_dict(row: Any, repos: list[Any]) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "source_env": row.source_env, "target_env": row.target_env,
            "state": row.state, "actor": row.actor, "message": row.message, "stamp": row.stamp,
            "rollback_to": row.rollback_to, "detail": row.detail, "created_at": row.created_at,
            "finished_at": row.finished_at,
            "repos": [{"repo": r.repo, "branch": r.branch, "old_sha": r.old_sha, "new_sha": r.new_sha, "tag": r.tag,
                       "result": r.result, "detail": r.detail} for r in repos]}


PROMOTION_KEYS = ("id", "kind", "source_env", "target_env", "state", "actor", "message", "stamp", "rollback_to",
                  "detail", "created_at", "finished_at")
REPO_KEYS = ("repo", "branch", "old_sha", "new_sha", "tag", "result", "detail")


def promotion_from_api(shown: dict[str, Any]) -> dict[str, Any]:
    """GET /api/v1/promotions/{id} as `promotion_dict` makes it locally (same keys, same order)."""
    return {**{k: shown[k] for k in PROMOTION_KEYS},
            "repos": [{k: r[k] for k in REPO_KEYS} for r in shown["repos"]]}


def promotions_table(project: Project, limit: int, as_json: bool, env: str | None = None) -> None:
    """`shipyard history --promotions`: recorded promotions, hotfix syncs and rollbacks, newest first."""
    with project.store.session(readonly=True) as s:
        rows = [promotion_dict(p, pq.promotion_repos(s, p.id)) for p in pq.list_promotions(s, env=env, limit=limit)]
    render_promotions(rows, as_json)


def render_promotions(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        render.print_json({"promotions": rows})
        return

    def counts(repos: list[dict[str, Any]]) -> str:
        found: dict[str, int] = {}
        for r in repos:
            found[r["result"]] = found.get(r["result"], 0) + 1
        return ", ".join(f"{n} {k}" for k, n in found.items())

    render.table(None, ["id", "kind", "envs", "state", "repos", "actor", "when", "message"],
                 [(r["id"], r["kind"], f"{r['source_env'] or ''} → {r['target_env']}".strip(),
                   render.styled(r["state"]), counts(r["repos"]), r["actor"], render.ago(r["created_at"]),
                   r["message"] or r["rollback_to"] or "") for r in rows])
