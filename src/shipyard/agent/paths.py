"""Where an agent keeps its files, shared by the agent process and every client of it.

Both sides must agree on these names without talking to each other first (the client has to find a
socket before it can ask anything), so they live in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# sun_path is 108 bytes on Linux including the trailing NUL; keep a margin.
_MAX_SUN_PATH = 100


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


class SocketName:
    """A connectable/bindable name for a unix socket whose real path may exceed sun_path.

    Projects can live deep in a home directory; rather than fail there, a long path is reached through
    `/proc/self/fd/<dirfd>/agent.sock`, which the kernel resolves to the same inode. The dir fd must stay
    open while the name is used, so this object owns it until `close()`.
    """

    def __init__(self, path: Path) -> None:
        self._dirfd: int | None = None
        if len(os.fsencode(str(path))) <= _MAX_SUN_PATH:
            self.name = str(path)
        else:
            try:
                self._dirfd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
            except OSError:
                self.name = str(path)  # no dir, so no agent: connecting fails with the usual error
            else:
                self.name = f"/proc/self/fd/{self._dirfd}/{path.name}"

    def close(self) -> None:
        if self._dirfd is not None:
            os.close(self._dirfd)
            self._dirfd = None
