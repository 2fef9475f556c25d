"""`shipyard status`: per service and env, what serves, how healthy, who holds the lease, who waits.

With the agent down it still shows what it can (the store's records, and the routers' table: they run
apart from the agent, so what is served is known), says that the agent is down, and exits 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.project import Project
from shipyard.cli.remote import remote
from shipyard.errors import (
    AgentError,
    AgentUnavailableError,
    RouterError,
    ShipyardError,
    TargetError,
    UnknownEnvironmentError,
)
from shipyard.health.probes import probe
from shipyard.proxy import RouterClient
from shipyard.store import deployments as dq
from shipyard.store import leases as lq
from shipyard.store import queue as qq

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]


AGENT_DOWN = "the agent is not running: `shipyard agent start` starts it and recovers interrupted deploys"


async def gather_status(project: Project, services: list[str], envs: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    agent: Any = project.agent(start=False)
    try:
        await agent.status()
    except AgentUnavailableError:
        await agent.aclose()
        agent = None
    routers = await _routed(project) if agent is None else {}
    closer = agent or project.agent(start=False)    # holds the SSH sessions of fleet rows until the end
    try:
        for service in services:
            for env in envs:
                kind = getattr(project.settings(service, env).target, "type", "local")
                if kind == "ssh":
                    out.append(await _fleet_row(project, closer, service, env))
                    continue
                if kind == "ecs":
                    out.append(await _reported_row(project, closer, service, env))
                    continue
                row = await _one(project, agent, service, env)
                if agent is None:
                    _from_router(row, routers.get((service, env)))
                out.append(row)
    finally:
        await closer.aclose()
    return out


async def _fleet_row(project: Project, agent: Any, service: str, env: str) -> dict[str, Any]:
    """A service on hosts: each host's agent over SSH (an unreachable host is named, the rest still shows),
    and the router's view of every instance."""
    row = await _one(project, None, service, env)
    s = project.settings(service, env)
    target = project.ssh_target(s, agent)
    target.watch(lambda hosts, reachable: True, lambda host, why, carry_on: None)
    insts = await target.instances()
    row["agent"] = True               # this row does not need the local agent
    row["hosts"] = {h.name: {"reachable": h.name not in target.lost, "error": target.lost.get(h.name),
                             "instances": sum(1 for i in insts if i.labels.get("host") == h.name)}
                    for h in target.all_hosts}
    records = [{"id": i.id, "revision": i.revision, "address": i.address, "state": i.state,
                "restarts": i.restarts, "host": i.labels.get("host")} for i in insts]
    await _fill_instances(project, s, agent, row, records)
    return row


async def _reported_row(project: Project, agent: Any, service: str, env: str) -> dict[str, Any]:
    """A service whose platform runs and health-checks it (ECS): its revisions as the target lists them,
    their health as the platform reports it (never a probe of a target group ARN), the listener's weights."""
    from shipyard.plugins import build_target
    from shipyard.targets.base import ReportingTarget

    row = await _one(project, None, service, env)
    s = project.settings(service, env)
    target = build_target(s.target, project.build_context(s, agent))
    assert isinstance(target, ReportingTarget)
    row["agent"] = True               # this row does not need the local agent
    try:
        insts = await target.instances()
    except ShipyardError as exc:      # AWS unreachable or refusing: the history part of the row still shows
        row["target_error"] = str(exc)
        return row
    records = [{"id": i.id, "revision": i.revision, "address": i.address, "state": i.state,
                "restarts": i.restarts, "expires_at": float(w) if (w := i.labels.get("warm_until")) else None}
               for i in insts]
    await _fill_instances(project, s, agent, row, records, reported=target.instance_health)
    return row


async def _routed(project: Project) -> dict[tuple[str, str], dict[str, Any]]:
    """The routers' table, readable while the agent is down (their processes do not depend on it)."""
    try:
        async with RouterClient(project.agent_dir, timeout=5.0, retry_budget=0) as client:
            return {(r["service"], r["env"]): r for r in await client.list_routers()}
    except AgentError:
        return {}


def _from_router(row: dict[str, Any], router: dict[str, Any] | None) -> None:
    """Without the agent, what serves is what the router routes to (instances themselves are unknown)."""
    if router is None:
        return
    serving = sorted({b["revision"] for b in router["backends"] if b.get("weight", 0) > 0})
    row["revision"] = serving[0] if len(serving) == 1 else (serving or None)
    row["routed"] = [{"instance": b.get("instance", ""), "address": b["address"], "revision": b.get("revision", ""),
                      "weight": b.get("weight", 0)} for b in router["backends"]]


async def _one(project: Project, agent: Any, service: str, env: str) -> dict[str, Any]:
    s = project.settings(service, env)
    with project.store.session() as ses:
        last = dq.list_deployments(ses, service=service, env=env, limit=1)
        good = dq.last_succeeded(ses, service, env)
        lease = lq.get_lease(ses, service, env)
        queue = qq.list_queue(ses, service, env)
        row: dict[str, Any] = {
            "service": service, "env": env, "listen": s.listen,
            "last_deployment": ({"id": last[0].id, "state": last[0].state, "revision": last[0].revision}
                                if last else None),
            "serving_deployment": {"id": good.id, "revision": good.revision} if good else None,
            "lease": ({"deployment": lease.deployment_id, "owner": lease.owner,
                       "age_seconds": round((datetime.now(UTC) - lease.acquired_at).total_seconds(), 1)}
                      if lease else None),
            "queue": [{"deployment": q.deployment_id, "owner": q.owner, "position": q.position,
                       "age_seconds": round(q.age.total_seconds(), 1)} for q in queue],
            "instances": [], "revision": None, "agent": agent is not None}
    if getattr(type(s.target), "ACTIVATES_RELEASES", False):
        # A static or command target has no instances: what is live is its last successful activation.
        row.update(revision=good.revision if good else None, agent=True)
        return row
    if agent is None:
        return row
    await _fill_instances(project, s, agent, row, await agent.list_instances(service=service, env=env))
    return row


async def _fill_instances(project: Project, s: Any, agent: Any, row: dict[str, Any],
                          instances: list[dict[str, Any]],
                          reported: Callable[[str], Awaitable[str | None]] | None = None) -> None:
    """Health (probed, or as the platform reports it) and the router's traffic share of each instance."""
    try:
        stats = await project.router(s, agent).stats()
    except (RouterError, TargetError) as exc:   # HAProxy down, AWS refusing: the rest of the row still shows
        stats, row["router_error"] = {"backends": []}, str(exc)
    row["listen"] = stats.get("listen") or s.listen      # the address the router picked when listen is unset
    # A router of processes lists backends; a load balancer's listener lists target weights.
    weights = {b["address"]: int(b["weight"]) for b in stats.get("backends", [])} or \
        {str(a): int(w) for a, w in (stats.get("weights") or {}).items()}
    total = sum(weights.values()) or 1
    live = [i for i in instances if i.get("state") not in ("stopped", "exited")]

    async def health(address: str) -> tuple[bool, str]:
        if reported is None:
            result = await probe(s.health, address)
            return result.ok, result.detail
        try:
            why = await reported(address)
        except ShipyardError as exc:
            why = str(exc)
        return why is None, why or "healthy (as the platform reports it)"

    checks = await asyncio.gather(*(health(i["address"]) for i in live))
    for inst, (ok, detail) in zip(live, checks, strict=True):
        row["instances"].append({
            "id": inst["id"], "revision": inst["revision"], "address": inst["address"], "state": inst["state"],
            "restarts": inst.get("restarts", 0), "health": "healthy" if ok else "unhealthy",
            "health_detail": detail, "traffic_percent": round(100 * weights.get(inst["address"], 0) / total, 1),
            "warm_until": inst.get("expires_at"), **({"host": inst["host"]} if inst.get("host") else {})})
    serving = {i["revision"] for i in row["instances"] if i["traffic_percent"] > 0}
    row["revision"] = serving.pop() if len(serving) == 1 else (sorted(serving) or None)


async def status_rows(project: Project, service: str | None, envs: list[str]) -> dict[str, Any]:
    """What `shipyard status --json` prints (and GET /api/v1/status answers): a row per service and env of
    `envs`, and whether the agent answered. Unknown names: UsageError before anything is asked."""
    services = [service] if service else list(project.config.services)
    known = project.config.environments
    for env in envs:
        if env not in known:
            raise UnknownEnvironmentError(f"unknown environment {env!r} (known: {', '.join(known)})")
    for name in services:
        for env in envs:
            project.settings(name, env)          # unknown names fail here with a clear message
    rows = await gather_status(project, services, envs) if services and envs else []
    return {"status": rows, "agent": not rows or rows[0]["agent"]}


def status_cmd(
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    service: Annotated[str | None, typer.Option("--service", "-s", help="Only this service.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Revision, instances, health, traffic share and deploy queue per service and environment."""
    server = remote()
    if server is not None:
        try:
            shown = server.get("/api/v1/status", service=service, env=env)
        finally:
            server.close()
    else:
        project = Project.load(config)
        shown = run(status_rows(project, service, [env] if env else list(project.config.environments)))
    render_status(shown, as_json)


def render_status(answer: dict[str, Any], as_json: bool) -> None:
    """The status display (or its JSON) of `status_rows`' answer, local or from the API; exit 1 with the
    agent down."""
    rows, agent_up = answer["status"], answer["agent"]
    if as_json:
        render.print_json({"status": rows, "agent": agent_up})
        if not agent_up:
            raise typer.Exit(1)
        return
    for r in rows:
        if not r["instances"] and not r["last_deployment"] and not r["lease"] and not r.get("routed"):
            continue
        rev = r["revision"] if isinstance(r["revision"], str) else ",".join(r["revision"] or []) or "-"
        shown = rev[:8] if isinstance(r["revision"], str) else rev
        title = f"{r['service']}/{r['env']}  serving {shown}  on {r['listen']}"
        if r["lease"]:
            title += f"  [deploying: {r['lease']['deployment']}, {r['lease']['age_seconds']:.0f}s]"
        on_hosts = "hosts" in r
        render.table(title, [*(["host"] if on_hosts else []), "instance", "revision", "address", "state", "health",
                             "traffic", "restarts", "warm until"],
                     [(*([i.get("host", "-")] if on_hosts else []), i["id"], i["revision"][:8], i["address"],
                       render.styled(i["state"]), render.styled(i["health"]), f"{i['traffic_percent']:g}%",
                       i["restarts"],
                       datetime.fromtimestamp(i["warm_until"], UTC).strftime("%H:%M:%S") if i["warm_until"] else "-")
                      for i in r["instances"]])
        for name, h in r.get("hosts", {}).items():
            if not h["reachable"]:
                render.error(f"{r['service']}/{r['env']}: host {name} unreachable: {h['error']}")
        if r.get("routed"):
            render.table(None, ["routed to (agent down)", "revision", "address", "weight"],
                         [(b["instance"] or "-", b["revision"][:8], b["address"], b["weight"]) for b in r["routed"]])
        for q in r["queue"]:
            render.console.print(f"  queued #{q['position'] if q['position'] is not None else '?'}: "
                                 f"{q['deployment']} by {q['owner']} ({q['age_seconds']:.0f}s)", markup=False)
    if not any(r["instances"] or r["last_deployment"] for r in rows):
        render.info("nothing deployed yet: try `shipyard deploy <service> --env <env>`")
    if not agent_up:
        render.error(AGENT_DOWN)
        raise typer.Exit(1)
