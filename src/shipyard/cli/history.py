"""`shipyard history` and `shipyard show`: what was deployed, when, by whom, and how it went."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from shipyard.cli import render
from shipyard.cli.analysis_view import show_analysis
from shipyard.cli.checklist_view import show_items
from shipyard.cli.group_view import groups_table, render_group, render_groups, show_group
from shipyard.cli.project import Project
from shipyard.cli.promotion_view import promotion_dict, promotion_from_api, promotions_table, render_promotions
from shipyard.cli.remote import remote
from shipyard.cli.scan_view import show_findings
from shipyard.errors import UsageError
from shipyard.store import checklists as cq
from shipyard.store import deployments as dq
from shipyard.store import events as eq
from shipyard.store import lookup
from shipyard.store import promotions as pq
from shipyard.store import steps as sq
from shipyard.store.models import Deployment

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]
OUTPUT_TAIL = 15        # lines of hook output `show` prints without --output (it says how many it left out)


def deployment_dict(d: Deployment) -> dict[str, Any]:
    return {"id": d.id, "service": d.service, "env": d.env, "kind": d.kind, "state": d.state,
            "revision": d.revision, "ref": d.ref, "previous_revision": d.previous_revision,
            "strategy": d.strategy, "actor": d.actor, "reason": d.reason, "created_at": d.created_at,
            "started_at": d.started_at, "finished_at": d.finished_at, "rollback_of": d.rollback_of}


def history_cmd(
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    service: Annotated[str | None, typer.Option("--service", "-s", help="Only this service.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many, newest first.")] = 20,
    promotions: Annotated[bool, typer.Option("--promotions",
                                             help="List promotions, hotfix syncs and tag rollbacks instead.")] = False,
    releases: Annotated[bool, typer.Option("--releases", help="List release group runs instead (with each "
                                                              "member's state).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """List deployments (or, with --promotions, promotions; with --releases, release groups), newest first."""
    server = remote()
    if server is not None:
        try:
            if releases:
                render_groups(server.get("/api/v1/releases", env=env, limit=min(limit, 500))["releases"], as_json)
                return
            if promotions:
                listed = server.get("/api/v1/promotions", env=env, limit=min(limit, 500))
                render_promotions([promotion_from_api(server.get(f"/api/v1/promotions/{quote(p['id'], safe='')}"))
                                   for p in listed], as_json)
                return
            page = server.get("/api/v1/deployments", service=service, env=env, limit=min(limit, 500))
        finally:
            server.close()
        deployments_table(page["items"], as_json)
        return
    project = Project.load(config)
    if releases:
        groups_table(project, limit, as_json, env=env)
        return
    if promotions:
        promotions_table(project, limit, as_json, env=env)
        return
    with project.store.session() as s:
        rows = [deployment_dict(d) for d in dq.list_deployments(s, service=service, env=env, limit=limit)]
    deployments_table(rows, as_json)


def deployments_table(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        render.print_json({"deployments": rows})
        return
    render.table(None, ["id", "service/env", "kind", "state", "revision", "strategy", "actor", "when", "took",
                        "reason"],
                 [(r["id"], f"{r['service']}/{r['env']}", r["kind"], render.styled(r["state"]),
                   render.short_sha(r["revision"]), r["strategy"], r["actor"], render.ago(r["created_at"]),
                   render.duration(r["started_at"], r["finished_at"]), r["reason"] or "") for r in rows])


def resolve_id(project: Project, prefix: str) -> tuple[str, str]:
    """(kind, id) of the one deployment or promotion `prefix` names; a one-line UsageError otherwise."""
    if not prefix.strip():
        raise UsageError("give a deployment or promotion id (or the start of one); see `shipyard history`")
    with project.store.session(readonly=True) as s:
        match = lookup.find_by_prefix(s, prefix)
    if match.found:
        return match.found
    if not match.candidates:
        raise UsageError(f"no deployment, promotion or release {prefix!r} (see `shipyard history`, "
                         "`shipyard history --promotions` and `shipyard history --releases`)")
    more = f" and {match.more} more" if match.more else ""
    raise UsageError(f"{prefix!r} is ambiguous: it starts {', '.join(i for _, i in match.candidates)}{more}; "
                     "give more of the id")


def show_cmd(
    record_id: Annotated[str, typer.Argument(
        metavar="ID", help="A deployment, promotion or release group id, or enough of its start to be unique "
                           "(deploy-20261122-031502-a1b2c3d4, promote-20261122-0315, release-20261122).")],
    output: Annotated[bool, typer.Option("--output", help="Print full hook and build output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Steps, events and hook output of one deployment, the repos of one promotion, or the members of one
    release group run."""
    server = remote()
    if server is not None and record_id.strip().startswith("release-"):
        try:
            render_group(server.get(f"/api/v1/releases/{quote(record_id.strip(), safe='')}")["release"], as_json)
        finally:
            server.close()
        return
    if server is not None:
        shown = server.get(f"/api/v1/deployments/{quote(record_id.strip(), safe='')}")
        steps, events, items = shown.pop("steps"), shown.pop("events"), shown.pop("checklist", [])
        render_deployment(shown, steps, events, output, as_json, items)
        return
    project = Project.load(config)
    kind, found = resolve_id(project, record_id)
    if kind == lookup.PROMOTION:
        show_promotion(project, found, as_json)
    elif kind == lookup.RELEASE:
        show_group(project, found, as_json)
    else:
        show_deployment(project, found, output, as_json)


def show_deployment(project: Project, deployment_id: str, output: bool, as_json: bool) -> None:
    with project.store.session(readonly=True) as s:
        d = dq.get_deployment(s, deployment_id)
        if d is None:
            raise UsageError(f"no deployment {deployment_id!r} (see `shipyard history`)")
        dep = deployment_dict(d)
        steps: list[dict[str, Any]] = [
            {"phase": r.phase, "idx": r.idx, "kind": r.kind, "description": r.description, "state": r.state,
             "started_at": r.started_at, "ended_at": r.ended_at, "error": r.error, "output": r.output,
             "detail": r.detail} for r in sq.list_steps(s, deployment_id)]
        events: list[dict[str, Any]] = [{"at": e.at, "kind": e.kind, "message": e.message, "data": e.data}
                                        for e in eq.list_events(s, deployment_id=deployment_id, limit=None,
                                                                newest_first=False)]
        items = cq.view(s, deployment_id, d.state)
    render_deployment(dep, steps, events, output, as_json, items)


def render_deployment(dep: dict[str, Any], steps: list[dict[str, Any]], events: list[dict[str, Any]],
                      output: bool, as_json: bool, checklist: list[dict[str, Any]] | None = None) -> None:
    if as_json:
        render.print_json({"deployment": dep, "steps": steps, "events": events, "checklist": checklist or []})
        return
    render.console.print(f"[bold]{dep['id']}[/]  {dep['service']}/{dep['env']}  {dep['kind']}  "
                         f"[{render.STATE_STYLE.get(dep['state'], '')}]{dep['state']}[/]")
    render.info(f"revision {dep['revision']} ({dep['ref']}), previous {dep['previous_revision'] or '-'}, "
                f"strategy {dep['strategy']}, by {dep['actor']}, took "
                f"{render.duration(dep['started_at'], dep['finished_at'])}")
    if dep["reason"]:
        render.info(f"reason: {dep['reason']}")
    render.table("steps", ["phase", "#", "step", "state", "took", "error"],
                 [(st["phase"], st["idx"] + 1, st["description"], render.styled(st["state"]),
                   render.duration(st["started_at"], st["ended_at"]), st["error"] or "") for st in steps])
    show_items(checklist or [])
    show_analysis(steps)
    show_findings(steps)
    render.table("events", ["at", "event", "message"],
                 [(ev["at"].strftime("%H:%M:%S.%f")[:-3], ev["kind"], ev["message"] or "") for ev in events])
    for st in steps:
        if st["output"] and (output or st["kind"] in ("hook", "migrate", "stage", "scan") or st["state"] == "failed"):
            lines = st["output"].splitlines()
            render.console.print(f"[bold]── output of {st['description']} ──[/]")
            if not output and len(lines) > OUTPUT_TAIL:
                render.info(f"({len(lines) - OUTPUT_TAIL} earlier lines; all of it: "
                            f"shipyard show {dep['id']} --output)")
                lines = lines[-OUTPUT_TAIL:]
            render.info("\n".join(lines))


def show_promotion(project: Project, promotion_id: str, as_json: bool) -> None:
    with project.store.session(readonly=True) as s:
        row = pq.get_promotion(s, promotion_id)
        if row is None:
            raise UsageError(f"no promotion {promotion_id!r} (see `shipyard history --promotions`)")
        p = promotion_dict(row, pq.promotion_repos(s, promotion_id))
    if as_json:
        render.print_json({"promotion": p})
        return
    envs = f"{p['source_env']} → {p['target_env']}" if p["source_env"] else p["target_env"]
    render.console.print(f"[bold]{p['id']}[/]  {p['kind']} {envs}  "
                         f"[{render.STATE_STYLE.get(p['state'], '')}]{p['state']}[/]")
    render.info(f"by {p['actor']}, stamp {p['stamp']}, took {render.duration(p['created_at'], p['finished_at'])}"
                + (f", back to {p['rollback_to']}" if p["rollback_to"] else ""))
    for label in ("message", "detail"):
        if p[label]:
            render.info(f"{label}: {p[label]}")
    render.table("repos", ["repo", "result", "branch", "old → new", "tag", "detail"],
                 [(r["repo"], render.styled(r["result"]), r["branch"] or "-",
                   f"{render.short_sha(r['old_sha'])} → {render.short_sha(r['new_sha'])}", r["tag"] or "-",
                   r["detail"] or "") for r in p["repos"]])
