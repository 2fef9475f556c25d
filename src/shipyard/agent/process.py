"""The agent process's life: lock, restore, serve the admin API, wait for a shutdown, stop or let go.

Startup order matters: take the pid lock (one agent per state dir), restore instances from state.json,
and only then open the socket, so a client that gets an answer sees the adopted world, not an empty
one that is still loading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from aiohttp import web

from shipyard.adminweb import serve_unix
from shipyard.agent import pidfile
from shipyard.agent.paths import AgentPaths
from shipyard.agent.runtime import Agent
from shipyard.agent.server import make_app, make_metrics_app
from shipyard.agent.spec import Backoff
from shipyard.ipc import bind_unix

log = logging.getLogger("shipyard.agent.runtime")


async def serve(state_dir: Path, metrics_listen: str | None = None, *, backoff: Backoff | None = None,
                retention: float | None = None, keep_stopped: int | None = None) -> None:
    """Run the agent until SIGTERM/SIGINT or POST /v1/shutdown (stopping instances), or SIGHUP (leaving
    them running for the next agent: what the keeper sends for `shipyard agent restart`)."""
    paths = AgentPaths(state_dir.resolve())
    paths.ensure_dirs()
    lock_fd = pidfile.acquire(paths)
    runners: list[web.AppRunner] = []
    try:
        agent = Agent(paths.state_dir, backoff=backoff, retention=retention, keep_stopped=keep_stopped)
        await agent.restore()
        runner, _ = await serve_unix(make_app(agent), bind_unix(paths.sock))
        runners.append(runner)
        if metrics_listen:
            host, _, port = metrics_listen.rpartition(":")
            mrunner = web.AppRunner(make_metrics_app(agent), access_log=None, handle_signals=False)
            await mrunner.setup()
            runners.append(mrunner)
            await web.TCPSite(mrunner, host.strip("[]") or "127.0.0.1", int(port)).start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.request_shutdown, True)
        loop.add_signal_handler(signal.SIGHUP, agent.request_shutdown, False)
        pruner = asyncio.create_task(agent.prune_forever())
        log.info("agent %s ready on %s (%d instances)", os.getpid(), paths.sock, len(agent.supervisor.records()))
        await agent.wait_shutdown()
        pruner.cancel()
        log.info("shutting down (stop_instances=%s)", agent.stop_instances)
        await agent.close()
    finally:
        for r in reversed(runners):
            await r.cleanup()
        with contextlib.suppress(FileNotFoundError):
            paths.sock.unlink()
        pidfile.release(paths, lock_fd)
        log.info("agent %s exited", os.getpid())
