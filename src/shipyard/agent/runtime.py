"""The agent process: one Agent object (supervisor + routers + state file) served on a unix socket.

Startup order matters: take the pid lock (one agent per state dir), restore instances and routers from
state.json, and only then open the socket, so a client that gets an answer sees the adopted world, not
an empty one that is still loading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from aiohttp import web

import shipyard
from shipyard.agent import pidfile
from shipyard.agent.paths import AgentPaths, SocketName
from shipyard.agent.routing import RouterRegistry
from shipyard.agent.spec import Backoff
from shipyard.agent.state import AgentState, StateFile
from shipyard.agent.supervisor import Supervisor
from shipyard.proxy import render_prometheus

log = logging.getLogger(__name__)


class Agent:
    """Everything the admin API acts on; persists itself after every change."""

    def __init__(self, state_dir: Path, *, backoff: Backoff | None = None) -> None:
        self.paths = AgentPaths(state_dir)
        self.state_file = StateFile(self.paths.state)
        self.supervisor = Supervisor(self.paths.logs, on_change=self.save, backoff=backoff)
        self.routers = RouterRegistry(on_change=self.save)
        self.started_at = time.time()
        self.stop_instances = True
        self._shutdown = asyncio.Event()
        self._loading = True          # while restoring, a save would drop what is not loaded yet
        self._keep_routers = True

    def save(self) -> None:
        if self._loading:
            return
        state = AgentState(instances=self.supervisor.records(),
                           routers=self.routers.records() if self._keep_routers else [])
        try:
            self.state_file.save(state)
        except OSError:
            log.exception("cannot write %s", self.state_file.path)

    async def restore(self) -> None:
        state = self.state_file.load()
        try:
            self.supervisor.restore(state.instances)
            await self.routers.restore(state.routers)
        finally:
            self._loading = False
        self.save()

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(), "version": shipyard.__version__, "started_at": self.started_at,
            "state_dir": str(self.paths.state_dir), "shutting_down": self.shutting_down,
            "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "instances": [r.public() for r in self.supervisor.records()],
            "routers": [r.public() for r in self.routers.records()],
        }

    def metrics(self) -> str:
        """Router series plus agent gauges, in one exposition so one scrape target covers a host."""
        routers = render_prometheus(self.routers.servers())
        return routers + ("\n" if routers and not routers.endswith("\n") else "") + agent_metrics(self)

    def request_shutdown(self, stop_instances: bool = True) -> None:
        if not self._shutdown.is_set():
            self.stop_instances = stop_instances
            self._shutdown.set()

    @property
    def shutting_down(self) -> bool:
        return self._shutdown.is_set()

    async def wait_shutdown(self) -> None:
        await self._shutdown.wait()

    async def close(self) -> None:
        """Stop (or let go of) the apps and close the routers.

        A full stop forgets the routers too (their backends are gone); a detaching stop keeps them so
        the next agent serves the same addresses to the apps it adopts.
        """
        if self.stop_instances:
            log.info("stopping all instances")
            await self.supervisor.stop_all()
            self._keep_routers = False
        else:
            log.info("leaving instances running for the next agent")
            self.supervisor.detach()
        await self.routers.close_all()
        self.save()


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def agent_metrics(agent: Agent) -> str:
    counts: dict[tuple[str, str, str], int] = {}
    restarts: list[str] = []
    for r in agent.supervisor.records():
        key = (r.service, r.env, r.state)
        counts[key] = counts.get(key, 0) + 1
        restarts.append(f'shipyard_agent_instance_restarts_total{{service="{_esc(r.service)}",'
                        f'env="{_esc(r.env)}",revision="{_esc(r.revision)}",instance="{_esc(r.id)}"}} '
                        f"{r.restarts}")
    lines = [
        "# HELP shipyard_agent_up The host agent answers.", "# TYPE shipyard_agent_up gauge",
        "shipyard_agent_up 1",
        "# HELP shipyard_agent_start_time_seconds When the agent process started (unix time).",
        "# TYPE shipyard_agent_start_time_seconds gauge",
        f"shipyard_agent_start_time_seconds {agent.started_at:.3f}",
        "# HELP shipyard_agent_instances Supervised instances by service, env and state.",
        "# TYPE shipyard_agent_instances gauge",
    ]
    lines += [f'shipyard_agent_instances{{service="{_esc(s)}",env="{_esc(e)}",state="{st}"}} {n}'
              for (s, e, st), n in sorted(counts.items())]
    lines += ["# HELP shipyard_agent_instance_restarts_total Restarts after unexpected exits, per instance.",
              "# TYPE shipyard_agent_instance_restarts_total counter", *restarts]
    return "\n".join(lines) + "\n"


def bind_unix(path: Path) -> socket.socket:
    """Bind the admin socket with mode 0600 from the first moment (umask), not chmod'ed after."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()               # we hold the pid lock, so any socket here is a dead agent's
    name = SocketName(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(name.name)
    finally:
        os.umask(old)
        name.close()
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(state_dir: Path, metrics_listen: str | None = None, *, backoff: Backoff | None = None) -> None:
    """Run the agent until SIGTERM/SIGINT or POST /v1/shutdown."""
    from shipyard.agent.server import make_app, make_metrics_app

    paths = AgentPaths(state_dir.resolve())
    paths.ensure_dirs()
    lock_fd = pidfile.acquire(paths)
    runners: list[web.AppRunner] = []
    try:
        agent = Agent(paths.state_dir, backoff=backoff)
        await agent.restore()
        runner = web.AppRunner(make_app(agent), access_log=None, handle_signals=False)
        await runner.setup()
        runners.append(runner)
        await web.SockSite(runner, bind_unix(paths.sock)).start()
        if metrics_listen:
            host, _, port = metrics_listen.rpartition(":")
            mrunner = web.AppRunner(make_metrics_app(agent), access_log=None, handle_signals=False)
            await mrunner.setup()
            runners.append(mrunner)
            await web.TCPSite(mrunner, host.strip("[]") or "127.0.0.1", int(port)).start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.request_shutdown, True)
        log.info("agent %s ready on %s (%d instances, %d routers)", os.getpid(), paths.sock,
                 len(agent.supervisor.records()), len(agent.routers.servers()))
        await agent.wait_shutdown()
        log.info("shutting down (stop_instances=%s)", agent.stop_instances)
        await agent.close()
    finally:
        for r in reversed(runners):
            await r.cleanup()
        with contextlib.suppress(FileNotFoundError):
            paths.sock.unlink()
        pidfile.release(paths, lock_fd)
        log.info("agent %s exited", os.getpid())
