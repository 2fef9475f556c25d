"""`shipyard agent start|stop|restart|status|install`: the host's keeper, routers and agent.

The keeper holds the routers' sockets and runs the router processes and the agent (see docs/agent.md);
the CLI starts it when needed. `start` also recovers interrupted deploys before it returns, so it never
leaves a half-moved traffic split serving.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.agent.daemon import agent_status, restart_agent, stop_agent
from shipyard.agent.systemd import Unit, systemd_running
from shipyard.cli import render
from shipyard.cli.project import Project
from shipyard.errors import UsageError
from shipyard.proxy import keeper_status

app = typer.Typer(help="Manage the host agent, its routers and their keeper (the CLI starts them when needed).",
                  no_args_is_help=True)
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("start")
def start(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Start the agent (and its keeper and routers) if needed, then recover interrupted deploys."""
    from shipyard.cli.deploy import recover_dead_runs  # the engine: of the agent commands only `start` needs it

    project = Project.load(config)
    recovered = recover_dead_runs(project, quiet=True)      # starts the agent first (while the store opens)
    st = agent_status(project.agent_dir) or {}
    if as_json:
        render.print_json({"pid": st.get("pid"), "socket": str(project.agent_dir / "agent.sock"),
                           "recovered": recovered})
        return
    render.info(f"agent running (pid {st.get('pid')}) at {project.agent_dir / 'agent.sock'}")
    for r in recovered:
        render.info(f"recovered {r['id']} ({r['service']}/{r['env']}): {r['state']}"
                    + (f" - {r['reason']}" if r["reason"] else ""))


@app.command("stop")
def stop(
    leave_running: Annotated[bool, typer.Option(
        "--leave-running", help="Stop only the agent: instances and routers keep serving, and it is not "
                                "restarted until `shipyard agent start`.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Stop everything of this project on this host: instances, routers (traffic stops), agent, keeper."""
    project = Project.load(config)
    if stop_agent(project.agent_dir, stop_instances=not leave_running):
        render.info("agent stopped; instances and routers keep serving" if leave_running
                    else "agent stopped, with its instances, routers and keeper")
    else:
        render.info("agent was not running")


@app.command("restart")
def restart(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Replace the router processes, the agent and the keeper with ones running the installed code (e.g.
    after an upgrade of shipyard): no request fails, instances keep running."""
    project = Project.load(config)
    project.ensure_agent()
    answer = restart_agent(project.agent_dir, router_workers=project.config.agent.workers_arg())
    st = agent_status(project.agent_dir) or {}
    if as_json:
        render.print_json({"routers": answer.get("routers"), "agent_pid": st.get("pid"),
                           "keeper_pid": answer.get("keeper_pid")})
        return
    routers = answer.get("routers") or {}
    render.info(f"routers handed over to generation {routers.get('generation')} (pid {routers.get('new')}); "
                f"agent restarted (pid {st.get('pid')}); keeper re-executed (pid {answer.get('keeper_pid')})")


def _describe(project: Project) -> dict[str, Any]:
    st = agent_status(project.agent_dir)
    keeper = keeper_status(project.agent_dir)
    return {"running": st is not None, **(st or {}),
            "keeper": ({"pid": keeper["pid"], "agent": keeper["agent"], "routers": keeper["routers"],
                        "listeners": keeper["listeners"]} if keeper else None)}


@app.command("status")
def status(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Whether the agent runs, what it supervises, and the keeper and router processes."""
    project = Project.load(config)
    st = _describe(project)
    if as_json:
        render.print_json(st)
        if not st["running"]:
            raise typer.Exit(1)
        return
    keeper = st["keeper"]
    if keeper is not None:
        procs = ", ".join(f"{r['state']} router pid {r['pid']}" for r in keeper["routers"]) or "no router"
        render.info(f"keeper pid {keeper['pid']}: {procs}; agent {keeper['agent']['state']} "
                    f"(restarted {keeper['agent']['restarts']} times after crashes)")
    if not st["running"]:
        render.info("agent not running")
        raise typer.Exit(1)
    render.info(f"agent pid {st.get('pid')}, {len(st.get('instances', []))} instances, "
                f"{len(st.get('routers', []))} routers")
    render.table(None, ["instance", "state", "address", "pid", "restarts"],
                 [(i["id"], render.styled(i["state"]), i["address"], i.get("pid") or "-", i.get("restarts", 0))
                  for i in st.get("instances", [])])


@app.command("install")
def install(
    system: Annotated[bool, typer.Option("--system", help="A system unit (as this user) instead of a user unit.")]
    = False,
    print_only: Annotated[bool, typer.Option("--print", help="Print the unit instead of writing it.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Write a systemd unit that runs the keeper, so routers and agent come back after a reboot."""
    project = Project.load(config)
    unit = Unit(project=project.config.project, root=project.root, state_dir=project.agent_dir.resolve(),
                config=project.config_path, system=system, user=_user() if system else None,
                router_workers=project.config.agent.workers_arg())
    if print_only:
        render.reveal(unit.text())
        return
    path = unit.path(Path.home())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(unit.text())
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}"
                         + (" (a system unit needs root; or use --print)" if system else "")) from exc
    render.info(f"wrote {path}")
    if not systemd_running():
        render.info("systemd does not run on this machine: the keeper is started by shipyard commands here")
        return
    render.info("to run it under systemd (stop the keeper started by shipyard first, with `shipyard agent "
                "stop`):")
    for command in unit.commands():
        render.info(f"  {command}")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
