"""Who holds a lease or a queue place, and whether that process still lives.

An owner is `host:pid:starttime`. The pid alone is not enough: pids are reused, so a lease left by a crashed
run could look alive because an unrelated process got the same pid. The start time (clock ticks since boot,
field 22 of /proc/<pid>/stat) tells the two apart. Another host's processes cannot be inspected, so there
only the lease expiry counts.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    start: str  # "0" when the platform has no /proc: then only the pid is checked


_cache: dict[int, str] = {}


def current_owner() -> str:
    """The owner string of this process (recomputed after fork, since the pid changes)."""
    pid = os.getpid()
    if pid not in _cache:
        _cache.clear()
        _cache[pid] = f"{socket.gethostname()}:{pid}:{process_start_time(pid) or '0'}"
    return _cache[pid]


def parse_owner(owner: str) -> Owner | None:
    """Split an owner string; None when it is not one of ours (then it is never judged dead)."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return Owner(host=parts[0], pid=int(parts[1]), start=parts[2])


def owner_is_dead(owner: str) -> bool:
    """True only when we can prove it: same host and the process is gone, a zombie or a different one."""
    parsed = parse_owner(owner)
    if parsed is None or parsed.host != socket.gethostname():
        return False
    if parsed.pid <= 0:
        return True
    try:
        os.kill(parsed.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, belongs to another user
    stat = _read_stat(parsed.pid)
    if stat is None:
        return False  # no /proc: the pid exists, so assume alive
    state, start = stat
    if state in {"Z", "X"}:
        return True  # exited, not yet reaped by its parent
    return parsed.start != "0" and start != parsed.start


def process_start_time(pid: int) -> str | None:
    """The start time of `pid` in clock ticks since boot, or None without /proc."""
    stat = _read_stat(pid)
    return stat[1] if stat else None


def _read_stat(pid: int) -> tuple[str, str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            raw = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rfind(")") + 2:].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]  # field 3 (state) and field 22 (starttime)
