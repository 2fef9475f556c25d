"""`shipyard watch`: keep evaluating alarms after deploys, in a terminal; `shipyard serve` runs the same
watch for every service and env as its `alarms` work (`alarm_work`).

Within a service's `deploy.auto_rollback_window` of its last deployment, an alarm in ALARM rolls it
back; later, it only notifies (the `alarm.alarm` event goes through the notification routes).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.notify import drain_quietly
from shipyard.cli.project import Project
from shipyard.daemon import Work
from shipyard.engine.watcher import Watched, Watcher
from shipyard.errors import UsageError

if TYPE_CHECKING:
    from shipyard.agent.client import AgentClient

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]


def watch_cmd(
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="Environment(s) to watch (default: all).")]
    = None,
    service: Annotated[list[str] | None, typer.Option("--service", "-s", help="Service(s) to watch (default: "
                                                                               "all with alarms).")] = None,
    interval: Annotated[float | None, typer.Option("--interval", help="Seconds between evaluations "
                                                                      "(default: a quarter of the shortest "
                                                                      "alarm period).")] = None,
    duration: Annotated[float | None, typer.Option("--for", help="Stop after this many seconds "
                                                                 "(default: until Ctrl-C).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Evaluate alarms on what serves now; roll back within auto_rollback_window, otherwise notify."""
    project = Project.load(config)
    pairs = watched_pairs(project, env, service)
    if not pairs:
        raise UsageError("nothing to watch: no service has `deploy.alarms` in the chosen environments")

    async def go() -> Watcher:
        async with project.agent() as agent:
            watcher = Watcher(targets(project, agent, pairs))
            render.info(f"watching {', '.join(f'{s}/{e}' for s, e in pairs)}")
            until = time.monotonic() + duration if duration else None
            try:
                await watcher.run(interval=interval, until=until)
            finally:
                await drain_quietly(project)
            return watcher

    watcher = run(go())
    for a in watcher.actions:
        render.info(f"{a.service}/{a.env}: alarm {a.alarm} → {a.action} ({a.detail})")


def watched_pairs(project: Project, envs: list[str] | None = None,
                  services: list[str] | None = None) -> list[tuple[str, str]]:
    """(service, env) of every chosen pair whose service has alarms there (all of them by default)."""
    cfg = project.config
    return [(sv, ev) for sv in services or list(cfg.services) for ev in envs or list(cfg.environments)
            if project.settings(sv, ev).alarms]


def targets(project: Project, agent: AgentClient, pairs: list[tuple[str, str]],
            actor: str | None = None) -> list[Watched]:
    """What the Watcher follows for `pairs`; its rollbacks are recorded with `actor` (default: whoever runs
    this command)."""
    found = []
    for sv, ev in pairs:
        e = project.environment(sv, ev, agent)
        if actor:
            e.actor = actor
        found.append(Watcher.watched(e, float(project.config.service_for(sv, ev).deploy.auto_rollback_window)))
    return found


def alarm_work(project: Project) -> Work | None:
    """The daemon's alarm monitor: `shipyard watch` over every service and env with alarms, until told to
    stop; None when no service has alarms. Its rollbacks are the daemon's (actor `alarm-monitor`)."""
    pairs = watched_pairs(project)
    if not pairs:
        return None

    async def monitor(stop: asyncio.Event) -> None:
        await asyncio.to_thread(project.ensure_agent)
        async with project.agent(start=False) as agent:
            await Watcher(targets(project, agent, pairs, actor="alarm-monitor")).run(stopped=stop)

    return Work("alarms", monitor)
