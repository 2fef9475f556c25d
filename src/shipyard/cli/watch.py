"""`shipyard watch`: keep evaluating alarms after deploys (until the daemon does it).

Within a service's `deploy.auto_rollback_window` of its last deployment, an alarm in ALARM rolls it
back; later, it only notifies (the `alarm.alarm` event goes through the notification routes).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.notify import drain_quietly
from shipyard.cli.project import Project
from shipyard.engine.watcher import Watcher
from shipyard.errors import UsageError

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
    cfg = project.config
    envs = env or list(cfg.environments)
    services = service or list(cfg.services)
    pairs = [(sv, ev) for sv in services for ev in envs if project.settings(sv, ev).alarms]
    if not pairs:
        raise UsageError("nothing to watch: no service has `deploy.alarms` in the chosen environments")

    async def go() -> Watcher:
        async with project.agent() as agent:
            targets = []
            for sv, ev in pairs:
                e = project.environment(sv, ev, agent)
                dep = cfg.service_for(sv, ev).deploy if hasattr(cfg, "service_for") else cfg.services[sv].deploy
                targets.append(Watcher.watched(e, float(dep.auto_rollback_window)))
            watcher = Watcher(targets)
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
