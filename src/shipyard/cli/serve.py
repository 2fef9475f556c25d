"""`shipyard serve`: the HTTP API (and, as they land, the daemons) in one process, stopped cleanly by
SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli import render
from shipyard.cli.project import Project
from shipyard.errors import UsageError

SHUTDOWN_GRACE = 120.0       # seconds a stopping server waits for deploys it runs (then `recover` finishes them)
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r}: give HOST:PORT, e.g. 127.0.0.1:8700")
    return host.strip("[]") or "127.0.0.1", int(port)


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, except that a SIGTERM or SIGINT ends it with exit 0 once it has shut down
        gracefully (uvicorn itself raises the signal again afterwards, so the process dies of it)."""

        drain: Any = None         # async (timeout) -> None: runs in progress, awaited on shutdown

        async def shutdown(self, sockets: Any = None) -> None:
            await super().shutdown(sockets)
            if self.drain is not None:
                await self.drain(SHUTDOWN_GRACE)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def _gitops(project: Project, runner: Any) -> Any:
    """The GitOps watcher and webhooks, when some auto_deploy env deploys a repo's service (else None)."""
    from shipyard.daemon.gitops import watches
    from shipyard.daemon.gitops_watch import GitOps, resolve_secrets

    serve = project.config.serve
    if not watches(project.config):
        return None
    secrets = resolve_secrets(serve.webhooks, project.secrets.fill)
    for source, why in secrets.missing.items():
        render.info(f"{source} webhooks refused: {why}")
    return GitOps(project.config, project.root, project.store, runner, interval=serve.gitops_interval,
                  secrets=secrets, say=render.info)


def _approvals(project: Project) -> Any:
    """What the approval routes need: the routes of decisions' events, and the links' secret (resolved)."""
    from shipyard.api.routes.approvals import ApprovalSettings

    links = project.config.approval_links
    secret = project.secrets.fill(links.secret, "approval_links.secret") if links is not None else None
    return ApprovalSettings(notifications=project.config.notifications, link_secret=secret)


def serve_cmd(
    listen: Annotated[str | None, typer.Option("--listen", help="HOST:PORT the API listens on (default: "
                                               "serve.listen, 127.0.0.1:8700).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the HTTP API and run the background work this daemon holds (the notification outbox, the alarm
    monitor, the GitOps watcher, approvals)."""
    import uvicorn

    from shipyard.api import ApiSettings, create_app
    from shipyard.cli.api_runner import ProjectRunner
    from shipyard.cli.notify import make_worker
    from shipyard.cli.watch import alarm_work
    from shipyard.daemon import Daemon, Work

    project = Project.load(config)
    host, port = parse_listen(listen or project.config.serve.listen)
    runner = ProjectRunner(project)
    works = [Work("outbox", make_worker(project).run_forever)] if project.config.serve.outbox else []
    works += [w for w in [alarm_work(project) if project.config.serve.alarms else None] if w is not None]
    gitops = _gitops(project, runner)
    if gitops is not None:
        works.append(Work("gitops", gitops.run))
    from shipyard.daemon.retention import aggregates_work, retention_work

    if project.config.serve.aggregates:
        works.append(Work("aggregates", aggregates_work(project.store, say=render.info)))
    if project.config.retention is not None:
        works.append(Work("retention", retention_work(project.store, project.config.retention, say=render.info)))
    # Manual checklist items wait in the approval gate: its work takes over and expires them too.
    if any(e.approvals is not None or e.checklists is not None for e in project.config.environments.values()):
        from shipyard.daemon.approvals import approvals_work

        works.append(Work("approvals", approvals_work(project.store, runner.resume, say=render.info,
                                                      notifications=project.config.notifications)))
    daemon = Daemon(project.store, works, ttl=project.config.serve.lease_ttl, say=render.info)
    from shipyard.cli.report import commit_reader

    services = sorted(project.config.services)
    app = create_app(ApiSettings(store=project.store, project=project.config.project, runner=runner,
                                 daemon=daemon, gitops=gitops, approvals=_approvals(project),
                                 commits=lambda service, env: commit_reader(
                                     project, [service] if service else services, env)))
    # The socket is bound here, not by uvicorn, so that "address in use" is our one line, not its log.
    try:
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                    reuse_port=False)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    # Accepted connections inherit it: without it a response written as head then body waits for the
    # client's delayed ACK (~40 ms a request on Linux).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    render.info(f"shipyard API of {project.config.project} on http://{host}:{port} (state {project.store.url}; "
                f"daemon {daemon.owner})")
    server = _server_class()(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                            server_header=False))
    server.drain = runner.drain

    async def main() -> None:
        stop = asyncio.Event()
        background = asyncio.create_task(daemon.run(stop))
        try:
            await server.serve(sockets=[sock])
        finally:
            stop.set()
            await background

    with sock:
        asyncio.run(main())
    render.info("stopped")
