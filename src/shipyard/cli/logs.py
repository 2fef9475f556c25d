"""`shipyard logs SERVICE --env E [--instance I] [-f] [--lines N] [--json]`: what the instances print.

The agent keeps one log file per instance (its records name it: `log_path`). This prints the last
lines of each instance of SERVICE in E and, with -f, what they print next: across rotation and
truncation of the files (targets/logfile.py) and including the instances a deploy starts meanwhile.
With several instances each line starts with the instance's id. Every line passes the invocation's
Redactor like all other output, with the service's secrets registered first. Ctrl-C or SIGTERM ends
a follow cleanly (exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.log_select import Printer, select_instances
from shipyard.cli.project import Project
from shipyard.errors import AgentError, ShipyardError
from shipyard.targets.logfile import LogFile

POLL = 0.2          # seconds between reads of the files while following
RESCAN = 1.0        # seconds between looks for instances started meanwhile


Lister = Callable[[], Awaitable[list[dict[str, Any]]]]


async def _follow(list_records: Lister, files: dict[str, LogFile], seen: set[str], pinned: bool, out: Printer,
                  stop: asyncio.Event, where: str) -> None:
    loop = asyncio.get_running_loop()
    next_scan = loop.time() + RESCAN
    agent_lost = False
    while not stop.is_set():
        now = loop.time()
        for iid, log in files.items():
            out(iid, log.read(now, render.pending))
            for what in log.pop_notes():
                render.note(f"({iid}: log {what}; " + ("reading it again from its start)" if what == "truncated"
                                                       else "reading the new file, and the old one while it grows)"))
        if not pinned and now >= next_scan:
            next_scan = now + RESCAN
            try:
                records = await list_records()
            except AgentError as exc:       # the agent restarting: the files are still there to read
                if not agent_lost:
                    render.note(f"(cannot list new instances of {where}: {exc}; still following the others)")
                agent_lost, records = True, []
            else:
                agent_lost = False
            for rec in select_instances(records, None, where):
                if rec["id"] not in seen:       # started after we began: everything it wrote is new
                    seen.add(rec["id"])
                    files[rec["id"]] = LogFile(rec["log_path"])
                    render.note(f"({rec['id']} started)")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL)
    for iid, log in files.items():
        out(iid, log.read(loop.time(), render.pending) + log.finish())


async def show_logs(project: Project, service: str, env: str, instance: str | None, follow: bool, lines: int,
                    as_json: bool) -> None:
    where = f"{service} in {env}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if follow:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    if getattr(project.settings(service, env).target, "type", "local") == "ssh":
        from shipyard.cli.fleet_logs import show_fleet_logs

        await show_fleet_logs(project, service, env, instance, follow, lines, as_json, stop)
        return
    async with project.agent(start=False) as agent:
        def list_records() -> Awaitable[list[dict[str, Any]]]:
            return agent.list_instances(service=service, env=env)

        records = await list_records()
        chosen = select_instances(records, instance, where)
        if not chosen and not follow:
            raise ShipyardError(f"no instances of {where} (see `shipyard status`; `shipyard history` for "
                                "past deployments)")
        if not chosen:
            render.note(f"(no instances of {where} yet; waiting for some)")
        out = Printer(as_json, prefixed=instance is None and (follow or len(chosen) > 1))
        files = {rec["id"]: LogFile(rec["log_path"]) for rec in chosen}
        for iid, log in files.items():
            out(iid, log.tail(lines, now=loop.time(), keep_partial=follow))
            if not follow:
                log.close()
        if follow:
            await _follow(list_records, files, {r["id"] for r in records}, instance is not None, out, stop, where)


def logs_cmd(
    service: Annotated[str, typer.Argument(help="Service whose instances' output to print.")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")],
    instance: Annotated[str | None, typer.Option("--instance", "-i", help="Only this instance (its id, or the "
                                                 "unique start of one; stopped ones too).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing what they write, and the new "
                                         "instances a deploy starts, until Ctrl-C.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many of the last lines of each "
                                       "instance to print first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line: {instance, line}.")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")] = None,
) -> None:
    """Print (and with -f follow) the output of SERVICE's instances in ENV, secrets masked."""
    project = Project.load(config)
    project.settings(service, env)                        # unknown names: one line, exit 2
    project.secrets.resolve(service, env, strict=False)   # so that the service's secrets are masked below
    try:
        run(show_logs(project, service, env, instance, follow, lines, as_json))
    except BrokenPipeError:
        # The reader went away (`| head`): that ends a log stream, it is not an error. Point stdout at
        # /dev/null so the interpreter's last flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
