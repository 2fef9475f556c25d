"""`shipyard history` and `shipyard show`: what was deployed, when, by whom, and how it went."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli import render
from shipyard.cli.analysis_view import show_analysis
from shipyard.cli.project import Project
from shipyard.errors import UsageError
from shipyard.store import deployments as dq
from shipyard.store import events as eq
from shipyard.store import steps as sq
from shipyard.store.models import Deployment

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]


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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """List deployments (or, with --promotions, promotions), newest first."""
    project = Project.load(config)
    if promotions:
        from shipyard.cli.promote import promotions_table
        promotions_table(project, limit, as_json, env=env)
        return
    with project.store.session() as s:
        rows = [deployment_dict(d) for d in dq.list_deployments(s, service=service, env=env, limit=limit)]
    if as_json:
        render.print_json({"deployments": rows})
        return
    render.table(None, ["id", "service/env", "kind", "state", "revision", "strategy", "actor", "when", "took",
                        "reason"],
                 [(r["id"], f"{r['service']}/{r['env']}", r["kind"], render.styled(r["state"]), r["revision"][:8],
                   r["strategy"], r["actor"], render.ago(r["created_at"]),
                   render.duration(r["started_at"], r["finished_at"]), (r["reason"] or "")[:60]) for r in rows])


def show_cmd(
    deployment_id: Annotated[str, typer.Argument(help="A deployment id (deploy-20261122-031502-a1b2c3d4).")],
    output: Annotated[bool, typer.Option("--output", help="Print full hook and build output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Steps, events and hook output of one deployment."""
    project = Project.load(config)
    with project.store.session() as s:
        d = dq.get_deployment(s, deployment_id)
        if d is None:
            raise UsageError(f"no deployment {deployment_id!r} (see `shipyard history`)")
        dep = deployment_dict(d)
        steps: list[dict[str, Any]] = [
            {"phase": r.phase, "idx": r.idx, "kind": r.kind, "description": r.description, "state": r.state,
                  "started_at": r.started_at, "ended_at": r.ended_at, "error": r.error, "output": r.output,
                  "detail": r.detail} for r in sq.list_steps(s, deployment_id)]
        events: list[dict[str, Any]] = [{"at": e.at, "kind": e.kind, "message": e.message, "data": e.data}
                  for e in eq.list_events(s, deployment_id=deployment_id, limit=None, newest_first=False)]
    if as_json:
        render.print_json({"deployment": dep, "steps": steps, "events": events})
        return
    render.console.print(f"[bold]{dep['id']}[/]  {dep['service']}/{dep['env']}  {dep['kind']}  "
                         f"[{render.STATE_STYLE.get(dep['state'], '')}]{dep['state']}[/]")
    render.console.print(f"revision {dep['revision']} ({dep['ref']}), previous {dep['previous_revision'] or '-'}, "
                         f"strategy {dep['strategy']}, by {dep['actor']}, took "
                         f"{render.duration(dep['started_at'], dep['finished_at'])}", markup=False)
    if dep["reason"]:
        render.console.print(f"reason: {dep['reason']}", markup=False)
    render.table("steps", ["phase", "#", "step", "state", "took", "error"],
                 [(st["phase"], st["idx"] + 1, st["description"], render.styled(st["state"]),
                   render.duration(st["started_at"], st["ended_at"]), (st["error"] or "")[:80]) for st in steps])
    show_analysis(steps)
    render.table("events", ["at", "event", "message"],
                 [(ev["at"].strftime("%H:%M:%S.%f")[:-3], ev["kind"], (ev["message"] or "")[:100]) for ev in events])
    for st in steps:
        if st["output"] and (output or st["kind"] in ("hook", "migrate") or st["state"] == "failed"):
            text = st["output"] if output else "\n".join(st["output"].splitlines()[-15:])
            render.console.print(f"[bold]── output of {st['description']} ──[/]")
            render.console.print(text, markup=False)
