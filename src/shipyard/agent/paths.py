"""Where an agent keeps its files, shared by the agent process and every client of it.

Both sides must agree on these names without talking to each other first (the client has to find a
socket before it can ask anything), so they live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shipyard.ipc import SocketName

__all__ = ["AgentPaths", "SocketName"]


@dataclass(frozen=True)
class AgentPaths:
    """The files of one agent's state dir (a project's `.shipyard/agent/`)."""

    state_dir: Path

    @property
    def sock(self) -> Path:
        return self.state_dir / "agent.sock"

    @property
    def pid(self) -> Path:
        return self.state_dir / "agent.pid"

    @property
    def lock(self) -> Path:
        return self.state_dir / "agent.lock"

    @property
    def log(self) -> Path:
        return self.state_dir / "agent.log"

    @property
    def state(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def ensure_dirs(self) -> None:
        """Create the state dir private to the user: it holds app environments (secrets) and the socket."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.logs.mkdir(mode=0o700, exist_ok=True)
