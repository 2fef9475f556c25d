"""`shipyard agent start|stop|status`: the host agent that supervises instances and serves routers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shipyard.agent.daemon import agent_status, ensure_agent, stop_agent
from shipyard.cli import render
from shipyard.cli.project import Project

app = typer.Typer(help="Manage the host agent (the CLI starts it when needed).", no_args_is_help=True)
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]


@app.command("start")
def start(config: ConfigOpt = None) -> None:
    """Start the agent for this project if it is not running."""
    project = Project.load(config)
    ensure_agent(project.agent_dir)
    st = agent_status(project.agent_dir) or {}
    render.info(f"agent running (pid {st.get('pid')}) at {project.agent_dir / 'agent.sock'}")


@app.command("stop")
def stop(
    leave_running: Annotated[bool, typer.Option("--leave-running",
                                                help="Leave app instances running for the next agent to adopt.")]
    = False,
    config: ConfigOpt = None,
) -> None:
    """Stop the agent (and, unless --leave-running, every instance it supervises)."""
    project = Project.load(config)
    if stop_agent(project.agent_dir, stop_instances=not leave_running):
        render.info("agent stopped")
    else:
        render.info("agent was not running")


@app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
           config: ConfigOpt = None) -> None:
    """Whether the agent runs, and what it supervises."""
    project = Project.load(config)
    st = agent_status(project.agent_dir)
    if as_json:
        render.print_json({"running": st is not None, **(st or {})})
        return
    if st is None:
        render.info("agent not running")
        raise typer.Exit(1)
    render.info(f"agent pid {st.get('pid')}, {len(st.get('instances', []))} instances, "
                f"{len(st.get('routers', []))} routers")
    render.table(None, ["instance", "state", "address", "pid", "restarts"],
                 [(i["id"], render.styled(i["state"]), i["address"], i.get("pid") or "-", i.get("restarts", 0))
                  for i in st.get("instances", [])])
