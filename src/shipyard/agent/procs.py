"""Facts about processes read from /proc, and the few syscalls the supervisor needs around them.

A pid alone is not an identity: after the agent restarts, a recorded pid may have been reused by an
unrelated process. The start time in /proc/<pid>/stat (clock ticks since boot) is fixed for a process's
life, so (pid, start time) is. Zombies count as dead here: an orphaned app whose new parent does not
reap it stays a zombie forever on some hosts, and it neither serves nor holds its port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the agent uses."""

    state: str       # R S D Z T X ...
    pgrp: int
    start_time: int  # clock ticks after boot

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X", "x")


def read_stat(pid: int) -> ProcStat | None:
    """Parse /proc/<pid>/stat; None when the process is gone (or /proc is unavailable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2:].split()
    try:
        return ProcStat(state=fields[0], pgrp=int(fields[2]), start_time=int(fields[19]))
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    st = read_stat(pid)
    return st.start_time if st else None


def is_running(pid: int, started: int | None = None) -> bool:
    """True when `pid` is a live (non-zombie) process and, if given, was started at `started`."""
    st = read_stat(pid)
    if st is None or not st.alive:
        return False
    return started is None or st.start_time == started


def find_instance(instance_id: str) -> tuple[int, int] | None:
    """(pid, start time) of the live session leader started as `instance_id` (SHIPYARD_INSTANCE in its
    environment), if any. For an agent that died after starting an app but before recording its pid:
    the app is found by what the agent gave it, not by a pid. Scans /proc: restore only."""
    needle = f"SHIPYARD_INSTANCE={instance_id}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
        except OSError:
            continue
        st = read_stat(pid)
        if st is not None and st.alive and st.pgrp == pid:
            return pid, st.start_time
    return None


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group. Scans /proc: only used while stopping, never on a hot path."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st is not None and st.pgrp == pgid and st.alive:
                members.append(int(name))
    return members


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send `sig` to a whole process group; False when nothing was there to receive it."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        # The group may hold only a foreign process now; fall back to the leader pid alone.
        with contextlib.suppress(OSError):
            os.kill(pgid, sig)
            return True
        return False


async def finish_group(pgid: int, deadline: float, kill_grace: float = 10.0) -> bool:
    """Wait (until `deadline`) for the rest of a process group, then SIGKILL what is left.

    The leader can exit before its children (`sh -c 'app & wait'`); they belong to the instance too.
    There is no pidfd for a group, so this one waits by polling, bounded by the stop budget.
    """
    loop = asyncio.get_running_loop()
    while group_members(pgid):
        if loop.time() >= deadline:
            signal_group(pgid, signal.SIGKILL)
            end = loop.time() + kill_grace
            while group_members(pgid) and loop.time() < end:
                await asyncio.sleep(0.02)
            return True
        await asyncio.sleep(0.02)
    return False


def open_pidfd(pid: int) -> int | None:
    """A pidfd for `pid` (readable once it exits, child or not); None where the kernel has none."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise
    except OSError:
        return None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on the port (SO_REUSEADDR, so TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False
