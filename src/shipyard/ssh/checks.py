"""`shipyard hosts check`: what a host must offer before shipyard deploys to it, checked over one connection.

Each check is a remote argv (constant scripts take their values as "$1", never pasted into shell text).
A failed connection tells which step failed (reachable, host key, login) from the SshError's kind.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from shipyard.errors import HostKeyError, SshAuthFailed, SshError, SshRefused, SshTimeout, SshUnreachable
from shipyard.ssh.pool import SshPool

CHECK_TIMEOUT = 15.0
# The release dir may not exist yet: report the filesystem it will be made on (its nearest existing parent).
DF_SCRIPT = 'd=$1; while [ ! -e "$d" ]; do d=$(dirname -- "$d"); done; df -Pk -- "$d"'
# The runtime `shipyard hosts setup` installed, and whether its agent answers (one JSON line from hostctl).
VERSION_SCRIPT = ('[ -x "$1/venv/bin/python" ] || exit 127; '
                  '"$1/venv/bin/python" -c "import importlib.metadata as m; print(m.version(\'shipyard\'))" && '
                  '"$1/venv/bin/python" -m shipyard.hosts.hostctl status --root "$1"')


@dataclass
class HostCheck:
    host: str
    reachable: bool = False
    key_trusted: bool | None = None
    auth_ok: bool | None = None
    free_bytes: int | None = None
    clock_skew_seconds: float | None = None
    shipyard_version: str | None = None
    agent_running: bool | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _connect_failure(check: HostCheck, exc: SshError) -> None:
    unreachable = isinstance(exc, SshRefused | SshTimeout | SshUnreachable)
    check.reachable = not unreachable
    if not unreachable:
        check.key_trusted = not isinstance(exc, HostKeyError)
        check.auth_ok = False if isinstance(exc, SshAuthFailed) else None
    check.problems.append(str(exc))


async def check_host(pool: SshPool, name: str, *, min_free: int, max_skew: float) -> HostCheck:
    """Every check of one host; a failure is a problem in the result, never raised (but for bugs)."""
    check = HostCheck(name)
    try:
        await pool.connection(name)
    except SshError as exc:
        _connect_failure(check, exc)
        return check
    check.reachable = check.key_trusted = check.auth_ok = True
    try:
        await _disk(pool, name, check, min_free)
        await _clock(pool, name, check, max_skew)
        version = await pool.run(name, ["sh", "-c", VERSION_SCRIPT, "sh", pool.host(name).release_dir],
                                 timeout=CHECK_TIMEOUT)
        lines = version.out.strip().splitlines()
        if version.ok and lines:
            check.shipyard_version = lines[0].strip()
            check.agent_running = '"status": {' in lines[-1]
            if not check.agent_running:
                check.problems.append(f"{name}: the shipyard agent does not answer (`shipyard hosts setup "
                                      f"{name}` starts it)")
        # Not installed yet is not a problem: `hosts check` comes before `hosts setup`.
    except SshError as exc:
        check.problems.append(str(exc))
    return check


async def _disk(pool: SshPool, name: str, check: HostCheck, min_free: int) -> None:
    release_dir = pool.host(name).release_dir
    res = await pool.run(name, ["sh", "-c", DF_SCRIPT, "sh", release_dir], timeout=CHECK_TIMEOUT)
    try:
        check.free_bytes = int(res.out.strip().splitlines()[-1].split()[3]) * 1024
    except (IndexError, ValueError):
        check.problems.append(f"{name}: cannot read the free space of {release_dir}: "
                              f"{(res.err or res.out).strip()[:200] or f'df exited {res.exit_status}'}")
        return
    if check.free_bytes < min_free:
        check.problems.append(f"{name}: {check.free_bytes // 2**20} MiB free on {release_dir}'s filesystem, "
                              f"less than {min_free // 2**20} MiB")


async def _clock(pool: SshPool, name: str, check: HostCheck, max_skew: float) -> None:
    before = time.time()
    res = await pool.run(name, ["date", "+%s.%N"], timeout=CHECK_TIMEOUT)
    after = time.time()
    try:
        remote = float(res.out.strip())
    except ValueError:
        check.problems.append(f"{name}: cannot read the host's clock: {res.out.strip()[:80]!r}")
        return
    # The host read its clock somewhere within the round trip: compare with its middle.
    check.clock_skew_seconds = round(remote - (before + after) / 2, 3)
    if abs(check.clock_skew_seconds) > max_skew + (after - before) / 2:
        check.problems.append(f"{name}: clock is {check.clock_skew_seconds:+.3f}s off the controller's "
                              f"(more than {max_skew:g}s)")
