"""How release group runs are shown: `history --releases`, `show release-...` (text and --json)."""

from __future__ import annotations

from typing import Any

from shipyard.cli import render
from shipyard.cli.project import Project
from shipyard.errors import UsageError
from shipyard.store import groups as gq


def members_table(members: list[dict[str, Any]]) -> None:
    render.table("members", ["wave", "service", "state", "revision", "deployment", "rollback", "reason"],
                 [(m["wave"], m["service"], render.styled(m["state"]), render.short_sha(m["revision"]),
                   m["deployment_id"] or "-", m["rollback_id"] or "-", m["reason"] or "") for m in members])


def groups_table(project: Project, limit: int, as_json: bool, *, env: str | None) -> None:
    with project.store.session(readonly=True) as s:
        rows = [gq.group_dict(g, gq.members(s, g.id)) for g in gq.list_groups(s, env=env, limit=limit)]
    render_groups(rows, as_json)


def render_groups(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        render.print_json({"releases": rows})
        return
    render.table(None, ["id", "group", "env", "state", "members", "actor", "when", "took", "reason"],
                 [(r["id"], r["name"], r["env"], render.styled(r["state"]),
                   ", ".join(f"{m['service']}:{m['state']}" for m in r["members"]), r["actor"],
                   render.ago(r["created_at"]), render.duration(r["started_at"], r["finished_at"]),
                   r["reason"] or "") for r in rows])


def show_group(project: Project, group_id: str, as_json: bool) -> None:
    with project.store.session(readonly=True) as s:
        row = gq.get_group(s, group_id)
        if row is None:
            raise UsageError(f"no release {group_id!r} (see `shipyard history --releases`)")
        g = gq.group_dict(row, gq.members(s, group_id))
    render_group(g, as_json)


def render_group(g: dict[str, Any], as_json: bool) -> None:
    if as_json:
        render.print_json({"release": g})
        return
    render.console.print(f"[bold]{g['id']}[/]  release {g['name']} → {g['env']}  "
                         f"[{render.STATE_STYLE.get(g['state'], '')}]{g['state']}[/]")
    render.info(f"by {g['actor']}, took {render.duration(g['started_at'], g['finished_at'])}"
                + (f", after promotion {g['promotion_id']}" if g["promotion_id"] else ""))
    if g["reason"]:
        render.info(f"reason: {g['reason']}")
    members_table(g["members"])
