"""`shipyard demo`: the whole story on one machine in under a minute, with real repos, processes and load."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.agent.daemon import stop_agent
from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.project import Project
from shipyard.engine import deployer
from shipyard.ipc import free_port


def demo_cmd(
    keep: Annotated[bool, typer.Option("--keep", help="Leave the workspace and its processes running.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary at the end.")] = False,
    directory: Annotated[Path | None, typer.Option("--dir", help="Workspace directory (default: a temp dir).")]
    = None,
    rps: Annotated[int, typer.Option("--rps", help="Steady load during the rolling deploy.")] = 200,
) -> None:
    """Deploy v1, roll out v2 under load, watch a broken v3 roll back by itself, print the history."""
    # Imported here, not at the top: aiohttp and the workspace builder would slow every other command.
    from shipyard.demo.load import LoadRunner
    from shipyard.demo.workspace import commit_version, create_workspace
    from shipyard.store import deployments as dq

    root = directory.resolve() if directory else Path(tempfile.mkdtemp(prefix="shipyard-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    say = (lambda msg: None) if as_json else (lambda msg: render.console.print(f"[bold cyan]▸[/] {msg}"))
    started = time.monotonic()
    api_port, web_port = free_port(), free_port()
    ws = create_workspace(root, api_port=api_port, web_port=web_port)
    project = Project.load(ws.root / "shipyard.yaml")
    summary: dict[str, Any] = {"workspace": str(ws.root), "api": f"http://127.0.0.1:{api_port}",
                               "web": f"http://127.0.0.1:{web_port}", "deployments": []}
    try:
        say(f"workspace {ws.root}: repos api and web with bare origins; starting the agent")
        project.agent()       # starts it; each step below opens its own client on its own event loop

        def deploy(service: str, title: str, ref: str | None = None) -> deployer.Outcome:
            progress = render.DeployProgress(title, quiet=as_json)

            async def go() -> deployer.Outcome:
                async with project.agent(start=False) as agent:
                    return await deployer.deploy(project.environment(service, "stg", agent, listener=progress), ref)

            t0 = time.monotonic()
            with progress:
                outcome = run(go())
            summary["deployments"].append({"id": outcome.deployment_id, "service": service,
                                           "state": str(outcome.state), "revision": outcome.revision,
                                           "reason": outcome.reason, "seconds": round(time.monotonic() - t0, 2)})
            return outcome

        say("deploy v1 of api (3 instances behind the built-in router) and of the static site")
        deploy("api", "deploy api v1 → stg")
        deploy("web", "deploy web v1 → stg")

        sha2 = commit_version(ws, "api", "2.0.0")
        say(f"deploy v2 ({sha2[:8]}) with the rolling strategy under {rps} req/s of steady load")
        load = LoadRunner(f"http://127.0.0.1:{api_port}/version", rps)
        load.start()
        v2 = deploy("api", "deploy api v2 → stg (rolling, under load)")
        result = load.stop()
        summary["load"] = {"offered_rps": rps, "requests_total": result.total, "requests_failed": result.failed}
        say(f"v2 {v2.state}: {result.total} requests during the deploy, [bold]{result.failed} failed[/]")

        sha3 = commit_version(ws, "api", "3.0.0", health_fail=True)
        say(f"deploy v3 ({sha3[:8]}) whose health check fails: watch the automatic rollback")
        load = LoadRunner(f"http://127.0.0.1:{api_port}/version", rps)
        load.start()
        v3 = deploy("api", "deploy api v3 → stg (broken)")
        result = load.stop()
        summary["failing_release"] = {"state": str(v3.state), "reason": v3.reason,
                                      "requests_total": result.total, "requests_failed": result.failed}
        say(f"v3 {v3.state}: {v3.reason}; {result.failed} of {result.total} requests failed meanwhile")

        with project.store.session() as s:
            rows = dq.list_deployments(s, limit=10)
            history = [(d.id, f"{d.service}/{d.env}", d.state, d.revision[:8], d.reason or "") for d in rows]
        summary["seconds"] = round(time.monotonic() - started, 2)
        summary["ok"] = (v2.state == "succeeded" and v3.state == "rolled_back"
                         and summary["load"]["requests_failed"] == 0)
        if as_json:
            render.print_json(summary)
        else:
            render.table("history", ["id", "service/env", "state", "revision", "reason"],
                         [(a, b, render.styled(c), d, e) for a, b, c, d, e in history])
            say(f"done in {summary['seconds']:.1f}s" + (f"; left running in {ws.root}" if keep else ""))
    finally:
        if not keep:
            stop_agent(project.agent_dir, stop_instances=True)
            project.close()
            if directory is None:
                shutil.rmtree(root, ignore_errors=True)
    if not summary.get("ok"):
        raise typer.Exit(1)
