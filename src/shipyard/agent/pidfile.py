"""agent.pid as a lock: the running agent holds an flock on it for its whole life.

A pid written in a file can outlive its process and be reused by another; an flock cannot: the kernel
drops it when the holder dies, however it dies. So "is an agent running here?" is answered by the lock,
and the pid inside is only used to signal or wait for that agent.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from shipyard.agent.paths import AgentPaths
from shipyard.errors import AgentError


def acquire(paths: AgentPaths) -> int:
    """Take the agent lock and write our pid; AgentError when another agent already holds it."""
    fd = os.open(paths.pid, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        other = read_pid(paths)
        raise AgentError(f"another agent (pid {other or '?'}) is already running for {paths.state_dir}") \
            from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def release(paths: AgentPaths, fd: int) -> None:
    """Remove the pid file while still holding the lock, so no reader sees our pid after we exit."""
    with contextlib.suppress(FileNotFoundError):
        paths.pid.unlink()
    os.close(fd)


def read_pid(paths: AgentPaths) -> int | None:
    try:
        text = paths.pid.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def holder(paths: AgentPaths) -> int | None:
    """The pid of the live agent holding the lock (0 if it has not written it yet), else None."""
    try:
        fd = os.open(paths.pid, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):    # no state dir (or a file in its place): no agent
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_pid(paths) or 0
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
