"""The files the keeper and the router processes keep in an agent state dir (a project's `.shipyard/agent/`).

They live beside the agent's own files (agent.sock, state.json) because they serve the same host and
project, but they belong to other processes: the agent never writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProxyPaths:
    state_dir: Path

    @property
    def keeper_sock(self) -> Path:
        """The keeper's control socket (status, stop, restart, agent start/stop)."""
        return self.state_dir / "keeper.sock"

    @property
    def keeper_pid(self) -> Path:
        return self.state_dir / "keeper.pid"

    @property
    def keeper_lock(self) -> Path:
        """Serialises starters, so two CLIs racing to start a keeper start exactly one."""
        return self.state_dir / "keeper.lock"

    @property
    def keeper_log(self) -> Path:
        return self.state_dir / "keeper.log"

    @property
    def router_sock(self) -> Path:
        """The routers' admin API: bound by the keeper, served by whichever router generation is active."""
        return self.state_dir / "router.sock"

    @property
    def router_log(self) -> Path:
        return self.state_dir / "router.log"

    @property
    def handoff(self) -> Path:
        """Where an active router whose keeper died waits for the next keeper to adopt it."""
        return self.state_dir / "router-handoff.sock"

    @property
    def table(self) -> Path:
        """The routing table, rewritten atomically before a change is acknowledged."""
        return self.state_dir / "routes.json"

    @property
    def agent_pid(self) -> Path:
        """The agent's flock-held pid file: read (never written) to adopt a running agent."""
        return self.state_dir / "agent.pid"

    @property
    def agent_log(self) -> Path:
        return self.state_dir / "agent.log"

    @property
    def legacy_state(self) -> Path:
        """The agent's state.json, where routers were kept before they had their own process."""
        return self.state_dir / "state.json"

    def ensure_dir(self) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
