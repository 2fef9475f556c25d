"""`shipyard status`: per service and env, what serves, how healthy, who holds the lease, who waits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.project import Project
from shipyard.errors import AgentUnavailableError
from shipyard.health.probes import probe
from shipyard.routers.builtin import BuiltinRouter
from shipyard.store import deployments as dq
from shipyard.store import leases as lq
from shipyard.store import queue as qq

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]


async def gather_status(project: Project, services: list[str], envs: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        agent = project.agent(start=False)
        await agent.status()
    except AgentUnavailableError:
        agent = None
    for service in services:
        for env in envs:
            out.append(await _one(project, agent, service, env))
    if agent is not None:
        await agent.aclose()
    return out


async def _one(project: Project, agent: Any, service: str, env: str) -> dict[str, Any]:
    s = project.settings(service, env)
    with project.store.session() as ses:
        last = dq.list_deployments(ses, service=service, env=env, limit=1)
        lease = lq.get_lease(ses, service, env)
        queue = qq.list_queue(ses, service, env)
        row: dict[str, Any] = {
            "service": service, "env": env, "listen": s.listen,
            "last_deployment": ({"id": last[0].id, "state": last[0].state, "revision": last[0].revision}
                                if last else None),
            "lease": ({"deployment": lease.deployment_id, "owner": lease.owner,
                       "age_seconds": round((datetime.now(UTC) - lease.acquired_at).total_seconds(), 1)}
                      if lease else None),
            "queue": [{"deployment": q.deployment_id, "owner": q.owner, "position": q.position,
                       "age_seconds": round(q.age.total_seconds(), 1)} for q in queue],
            "instances": [], "revision": None, "agent": agent is not None}
    if agent is None:
        return row
    instances = await agent.list_instances(service=service, env=env)
    stats = await BuiltinRouter(agent.router, service, env, s.listen).stats()
    weights = {b["address"]: int(b["weight"]) for b in stats.get("backends", [])}
    total = sum(weights.values()) or 1
    live = [i for i in instances if i.get("state") not in ("stopped", "exited")]
    probes = await asyncio.gather(*(probe(s.health, i["address"]) for i in live))
    for inst, result in zip(live, probes, strict=True):
        row["instances"].append({
            "id": inst["id"], "revision": inst["revision"], "address": inst["address"], "state": inst["state"],
            "restarts": inst.get("restarts", 0), "health": "healthy" if result.ok else "unhealthy",
            "health_detail": result.detail, "traffic_percent": round(100 * weights.get(inst["address"], 0) / total, 1),
            "warm_until": inst.get("expires_at")})
    serving = {i["revision"] for i in row["instances"] if i["traffic_percent"] > 0}
    row["revision"] = serving.pop() if len(serving) == 1 else (sorted(serving) or None)
    return row


def status_cmd(
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    service: Annotated[str | None, typer.Option("--service", "-s", help="Only this service.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Revision, instances, health, traffic share and deploy queue per service and environment."""
    project = Project.load(config)
    services = [service] if service else list(project.config.services)
    envs = [env] if env else list(project.config.environments)
    for name in services:
        project.settings(name, envs[0])          # unknown names fail here with a clear message
    rows = run(gather_status(project, services, envs))
    if as_json:
        render.print_json({"status": rows})
        return
    for r in rows:
        if not r["instances"] and not r["last_deployment"] and not r["lease"]:
            continue
        rev = r["revision"] if isinstance(r["revision"], str) else ",".join(r["revision"] or []) or "-"
        shown = rev[:8] if isinstance(r["revision"], str) else rev
        title = f"{r['service']}/{r['env']}  serving {shown}  on {r['listen']}"
        if r["lease"]:
            title += f"  [deploying: {r['lease']['deployment']}, {r['lease']['age_seconds']:.0f}s]"
        render.table(title, ["instance", "revision", "address", "state", "health", "traffic", "restarts", "warm until"],
                     [(i["id"], i["revision"][:8], i["address"], render.styled(i["state"]),
                       render.styled(i["health"]), f"{i['traffic_percent']:g}%", i["restarts"],
                       datetime.fromtimestamp(i["warm_until"], UTC).strftime("%H:%M:%S") if i["warm_until"] else "-")
                      for i in r["instances"]])
        for q in r["queue"]:
            render.console.print(f"  queued #{q['position'] if q['position'] is not None else '?'}: "
                                 f"{q['deployment']} by {q['owner']} ({q['age_seconds']:.0f}s)", markup=False)
    if not any(r["instances"] or r["last_deployment"] for r in rows):
        render.info("nothing deployed yet: try `shipyard deploy <service> --env <env>`")
    if rows and not rows[0]["agent"]:
        render.info("(the agent is not running: `shipyard agent start`)")
