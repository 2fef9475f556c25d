"""agent.pid as a lock: the running agent holds an flock on it for its whole life (see shipyard.ipc).

So "is an agent running here?" is answered by the lock, and the pid inside is only used to signal or
wait for that agent.
"""

from __future__ import annotations

from shipyard.agent.paths import AgentPaths
from shipyard.errors import AgentError
from shipyard.ipc import LockHeld, acquire_pidfile, pidfile_holder, release_pidfile
from shipyard.ipc import read_pid as _read_pid


def acquire(paths: AgentPaths) -> int:
    """Take the agent lock and write our pid; AgentError when another agent already holds it."""
    try:
        return acquire_pidfile(paths.pid)
    except LockHeld as held:
        raise AgentError(f"another agent (pid {held.pid or '?'}) is already running for {paths.state_dir}") \
            from None


def release(paths: AgentPaths, fd: int) -> None:
    release_pidfile(paths.pid, fd)


def read_pid(paths: AgentPaths) -> int | None:
    return _read_pid(paths.pid)


def holder(paths: AgentPaths) -> int | None:
    """The pid of the live agent holding the lock (0 if it has not written it yet), else None."""
    return pidfile_holder(paths.pid)
