"""The Agent: what the admin API acts on (supervisor + state file); process.py runs it.

Routers are not in this process (shipyard.proxy runs them, watched by the
keeper), so the agent can crash, restart or be upgraded while traffic flows; it only reads their
status and metrics, to show one host in one place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import shipyard
from shipyard.agent.paths import AgentPaths
from shipyard.agent.spec import Backoff
from shipyard.agent.state import AgentState, StateFile
from shipyard.agent.supervisor import Supervisor
from shipyard.errors import AgentError
from shipyard.proxy import ProxyPaths, RouterClient

PRUNE_EVERY = 60.0      # seconds between passes that forget ended instances when nothing else changes

log = logging.getLogger(__name__)


class Agent:
    """Everything the admin API acts on; persists itself after every change."""

    def __init__(self, state_dir: Path, *, backoff: Backoff | None = None, retention: float | None = None,
                 keep_stopped: int | None = None) -> None:
        self.paths = AgentPaths(state_dir)
        self.state_file = StateFile(self.paths.state)
        limits: dict[str, Any] = {k: v for k, v in (("retention", retention), ("keep_stopped", keep_stopped))
                                  if v is not None}
        self.supervisor = Supervisor(self.paths.logs, on_change=self.save, backoff=backoff, **limits)
        self.started_at = time.time()
        self.stop_instances = True
        self._shutdown = asyncio.Event()
        self._loading = True          # while restoring, a save would drop what is not loaded yet
        self._legacy_routers: list[dict[str, Any]] = []

    def save(self) -> None:
        if self._loading:
            return
        # Routers of a version that ran them in here stay in state.json until the router processes
        # have taken them over into their own table (proxy/table.py reads them once from here).
        legacy = self._legacy_routers if not ProxyPaths(self.paths.state_dir).table.exists() else []
        state = AgentState(instances=self.supervisor.records(), legacy_routers=legacy)
        try:
            self.state_file.save(state)
        except OSError:
            log.exception("cannot write %s", self.state_file.path)

    async def restore(self) -> None:
        state = self.state_file.load()
        self._legacy_routers = state.legacy_routers
        try:
            self.supervisor.restore(state.instances)
        finally:
            self._loading = False
        self.save()

    async def routers(self, timeout: float = 1.0) -> list[dict[str, Any]] | None:
        """The routing table as the router processes serve it; None when none answers quickly."""
        try:
            async with RouterClient(self.paths.state_dir, timeout=timeout, retry_budget=0) as client:
                return await client.list_routers()
        except AgentError:
            return None

    async def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(), "version": shipyard.__version__, "started_at": self.started_at,
            "state_dir": str(self.paths.state_dir), "shutting_down": self.shutting_down,
            "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "instances": [r.public() for r in self.supervisor.records()],
            "routers": await self.routers() or [],
        }

    async def metrics(self) -> str:
        """Router series (from the router processes) plus agent gauges: one scrape target per host."""
        try:
            async with RouterClient(self.paths.state_dir, timeout=2.0, retry_budget=0) as client:
                routers = await client.metrics()
        except AgentError:
            routers = ""
        return routers + ("\n" if routers and not routers.endswith("\n") else "") + agent_metrics(self)

    async def prune_forever(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            if self.supervisor.prune():
                self.save()

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
        """Stop the apps, or let go of them for the next agent to adopt."""
        if self.stop_instances:
            log.info("stopping all instances")
            await self.supervisor.stop_all()
        else:
            log.info("leaving instances running for the next agent")
            self.supervisor.detach()
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
