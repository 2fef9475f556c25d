"""`shipyard hosts list|trust|check|exec`: the fleet under `hosts:`, reached over SSH (shipyard.ssh).

`trust` is the only way a host key enters known_hosts: it shows the presented key's fingerprint and
records it after a confirmation, or when it matches `--fingerprint`; without a terminal and without
`--fingerprint` it refuses, since trusting whatever answers is what strict host keys exist to prevent.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.project import Project
from shipyard.config.durations import parse_duration
from shipyard.errors import HostKeyChanged, HostKeyError, UsageError
from shipyard.ssh import KnownHosts, RunResult, fetch_host_key, fingerprint, hosts_from_config
from shipyard.ssh.checks import HostCheck, check_host

app = typer.Typer(help="The hosts shipyard deploys to over SSH: list, trust, check, exec.", no_args_is_help=True)
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _known_hosts(project: Project) -> KnownHosts:
    return KnownHosts((project.root / project.config.ssh.known_hosts).resolve())


@app.command("list")
def list_cmd(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Every host: address, user, labels and whether its key is in known_hosts (no connection made)."""
    project = Project.load(config)
    known = _known_hosts(project)
    rows: list[dict[str, Any]] = [
        {"name": h.name, "address": h.address, "port": h.port, "user": h.user, "labels": dict(h.labels),
         "trusted": bool(known.keys_for(h.address, h.port))} for h in hosts_from_config(project.config).values()]
    if as_json:
        render.print_json({"hosts": rows})
    elif not rows:
        render.info("no hosts (add them under `hosts:` in shipyard.yaml)")
    else:
        render.table("hosts", ["name", "address", "user", "labels", "trusted"],
                     [(r["name"], f"{r['address']}:{r['port']}", r["user"],
                       ",".join(f"{k}={v}" for k, v in r["labels"].items()), "yes" if r["trusted"] else "no")
                      for r in rows])


@app.command("trust")
def trust_cmd(
    name: Annotated[str, typer.Argument(help="Host name (under `hosts:`).")],
    expected: Annotated[str | None, typer.Option(
        "--fingerprint", help="Record the key only if its fingerprint is this (SHA256:...), as shown by "
                              "`ssh-keygen -lf` on the host.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a different key recorded for the host "
                                                            "(after a reinstall).")] = False,
    config: ConfigOpt = None,
) -> None:
    """Fetch NAME's host key, show its fingerprint and record it in known_hosts."""
    project = Project.load(config)
    project.config.host(name)
    host = hosts_from_config(project.config)[name]
    known = _known_hosts(project)
    key = run(fetch_host_key(host, project.config.ssh.connect_timeout))
    shown = fingerprint(key)
    recorded = known.keys_for(host.address, host.port)
    if any(k.public_data == key.public_data for k in recorded):
        render.info(f"{host.where}: key {shown} is already trusted")
        return
    if expected is not None and expected.strip() != shown:
        raise HostKeyError(f"{host.where}: presents {shown}, not {expected.strip()}: nothing recorded",
                           name, shown)
    if recorded and not replace:
        old = ", ".join(fingerprint(k) for k in recorded)
        raise HostKeyChanged(f"{host.where}: HOST KEY CHANGED: it presents {shown}, known_hosts has {old}; "
                             f"rerun with --replace if the host was reinstalled", name, shown)
    if expected is None:
        if not sys.stdin.isatty():
            raise UsageError(f"{host.where} presents {key.get_algorithm()} key {shown}; check it on the host "
                             f"(`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`) and run "
                             f"`shipyard hosts trust {name} --fingerprint {shown}` (no terminal to confirm on)")
        render.info(f"{host.where} presents {key.get_algorithm()} key {shown}")
        if not typer.confirm("is that the host's key? record it in known_hosts", default=False):
            raise typer.Abort()
    known.record(host.address, host.port, key, replace=replace)
    render.info(f"{host.where}: trusted {shown} ({known.path})")


def _names(project: Project, names: list[str] | None) -> list[str]:
    for name in names or []:
        project.config.host(name)
    chosen = list(dict.fromkeys(names)) if names else list(project.config.hosts)
    if not chosen:
        raise UsageError("no hosts (add them under `hosts:` in shipyard.yaml)")
    return chosen


@app.command("check")
def check_cmd(
    names: Annotated[list[str] | None, typer.Argument(help="Hosts to check (default: all).")] = None,
    min_free: Annotated[int, typer.Option("--min-free-mb", help="Free space the release dir's filesystem "
                                                                "needs, in MiB.")] = 1024,
    max_skew: Annotated[str, typer.Option("--max-skew", help="Largest clock difference allowed.")] = "2s",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Per host: reachable, key trusted, login works, free disk, clock skew, shipyard version. Exit 1 if any fails."""
    project = Project.load(config)
    chosen = _names(project, names)
    try:
        skew = parse_duration(max_skew)
    except ValueError as exc:
        raise UsageError(f"--max-skew: {exc}") from None
    pool = project.ssh_pool()

    async def checks() -> dict[str, Any]:
        async with pool:
            return await pool.each(chosen, lambda n: check_host(pool, n, min_free=min_free * 2**20, max_skew=skew))

    results: list[HostCheck] = list(run(checks()).values())
    if as_json:
        render.print_json({"ok": all(r.ok for r in results), "hosts": [r.as_dict() for r in results]})
    else:
        render.table("hosts", ["host", "reachable", "key", "login", "free", "skew", "shipyard", "agent"],
                     [(r.host, _yes(r.reachable), _yes(r.key_trusted), _yes(r.auth_ok),
                       "-" if r.free_bytes is None else f"{r.free_bytes / 2**30:.1f} GiB",
                       "-" if r.clock_skew_seconds is None else f"{r.clock_skew_seconds:+.3f}s",
                       r.shipyard_version or "-", _yes(r.agent_running)) for r in results])
        for r in results:
            for problem in r.problems:
                render.note(problem)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def build_only_hosts(config: Any) -> set[str]:
    """Hosts that some service builds on and no ssh target or router uses: `hosts setup` leaves them be."""
    builders: set[str] = set()
    used: set[str] = set()
    for svc in config.services.values():
        if getattr(svc, "build_host", None):
            builders.add(svc.build_host)
        used.update(getattr(svc.deploy.target, "hosts", None) or [])
        if router_host := getattr(svc.deploy.router, "host", None):
            used.add(router_host)
    return builders - used


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("ok" if value else "FAIL")


@app.command("setup")
def setup_cmd(
    names: Annotated[list[str] | None, typer.Argument(help="Hosts to set up (default: all).")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Install shipyard's runtime in a venv under each host's release_dir and start its agent (a systemd
    unit where systemd runs). Idempotent; exit 1 if any host failed."""
    from shipyard.hosts.runtime import build_runtime
    from shipyard.hosts.setup import SetupResult, setup_hosts

    project = Project.load(config)
    chosen = _names(project, names)
    if not names:               # a build host runs no agent: it needs sh and tar, not shipyard's runtime
        builders = build_only_hosts(project.config)
        chosen = [n for n in chosen if n not in builders]
        for name in sorted(builders):
            render.note(f"{name}: a build host only (no target or router runs there): not set up")
        if not chosen:
            raise UsageError("no hosts to set up: every host is a build host only")
    runtime = build_runtime(project.state_dir / "runtime")
    pool = project.ssh_pool()

    async def setup() -> dict[str, Any]:
        async with pool:
            return await setup_hosts(pool, chosen, runtime)

    results = run(setup())
    failed = {n: r for n, r in results.items() if not isinstance(r, SetupResult)}
    if as_json:
        render.print_json({"ok": not failed, "runtime": {"sha256": runtime.sha256, "bytes": runtime.size,
                                                        "python": runtime.python},
                           "hosts": [r.as_dict() if isinstance(r, SetupResult) else {"host": n, "error": str(r)}
                                     for n, r in results.items()]})
    else:
        render.table(f"hosts setup (runtime sha256 {runtime.sha256}, {runtime.size / 2**20:.1f} MiB)",
                     ["host", "runtime", "agent", "pid", "started by", "took"],
                     [(n, "installed" if r.installed else "up to date", f"shipyard {r.version}", r.agent_pid or "-",
                       "systemd" if r.systemd else "keeper", f"{r.seconds:.1f}s")
                      for n, r in results.items() if isinstance(r, SetupResult)])
        for name, err in failed.items():
            render.error(f"{name}: {err}" if not str(err).startswith(name) else str(err))
    if failed:
        raise typer.Exit(1)


@app.command("exec")
def exec_cmd(
    words: Annotated[list[str], typer.Argument(help="NAME -- CMD ARGS... (or --all -- CMD ARGS...).")],
    all_hosts: Annotated[bool, typer.Option("--all", help="Run on every host.")] = False,
    timeout: Annotated[str, typer.Option("--timeout", help="Limit per host.")] = "60s",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Run CMD ARGS (an argv, quoted for the remote shell by shipyard) on NAME or on --all hosts."""
    project = Project.load(config)
    if all_hosts:
        chosen, argv = _names(project, None), list(words)
    else:
        if len(words) < 2:
            raise UsageError("give a host and a command: `shipyard hosts exec NAME -- CMD ARGS...` (or --all)")
        chosen, argv = _names(project, words[0].split(",")), list(words[1:])
    if not argv:
        raise UsageError("no command: `shipyard hosts exec NAME -- CMD ARGS...`")
    try:
        limit = parse_duration(timeout)
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from None
    _register_service_secrets(project)
    pool = project.ssh_pool()

    async def execute() -> dict[str, Any]:
        async with pool:
            return await pool.each(chosen, lambda n: pool.run(n, argv, timeout=limit))

    results = run(execute())
    if len(results) == 1 and not isinstance(only := next(iter(results.values())), RunResult):
        raise only          # one host that could not be used: its error is the one line
    failed = [n for n, r in results.items() if not (isinstance(r, RunResult) and r.ok)]
    if as_json:
        render.print_json({"ok": not failed, "hosts": [_exec_json(n, r) for n, r in results.items()]})
    else:
        _print_exec(results)
    if failed:
        raise typer.Exit(1)


def _register_service_secrets(project: Project) -> None:
    """Every service's secrets in every environment are masked in what hosts print (they run them all)."""
    for service in project.config.services:
        for env in project.config.environments:
            project.secrets.resolve(service, env, strict=False)


def _exec_json(name: str, result: Any) -> dict[str, Any]:
    if isinstance(result, RunResult):
        return {"host": name, "exit_status": result.exit_status, "stdout": result.out, "stderr": result.err}
    return {"host": name, "exit_status": None, "error": str(result)}


def _print_exec(results: dict[str, Any]) -> None:
    width = max(len(n) for n in results)
    for name, result in results.items():
        prefix = f"{name:<{width}} | "
        if not isinstance(result, RunResult):
            sys.stderr.write(render.redact(f"{prefix}error: {result}") + "\n")
            continue
        render.plain_lines(prefix + line for line in result.out.splitlines())
        sys.stderr.write("".join(render.redact(prefix + line) + "\n" for line in result.err.splitlines()))
        if not result.ok:
            sys.stderr.write(f"{prefix}exit status {result.exit_status}\n")
    sys.stderr.flush()

