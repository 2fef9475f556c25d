"""`shipyard hosts setup`: shipyard's runtime into a venv on each host, then the host's keeper and agent.

Per host, in order: Python checked against the controller's (the runtime is built from its packages);
the runtime archive sent over the SSH connection unless that exact archive is installed (sha256 marker),
checked by hash on the host before anything is unpacked, unpacked into a fresh venv that replaces the old
one by rename; then the keeper started (a systemd unit where systemd runs), or restarted onto a new runtime
(instances keep running: the agent re-adopts them).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

from shipyard.errors import ShipyardError, TargetError
from shipyard.hosts.runtime import PYTHON_PROBE, Runtime, check_python
from shipyard.ssh import SshPool

# $1 root, $2 sha256. Prints `have` when that runtime is installed, else `send` and reads the archive from
# stdin (SshPool.run(offer=): one session either way). Exit 3: it is not what was sent.
_INSTALL = r'''set -eu
root=$1; sum=$2; new="$root/.venv-new-$$"; have=
read -r have 2>/dev/null < "$root/venv/.shipyard-sha256" || true
if [ "$have" = "$sum" ]; then echo have; exit 0; fi
echo send
mkdir -p "$root"; chmod 700 "$root"
cat > "$new.tgz"
if ! echo "$sum  $new.tgz" | sha256sum -c --status; then rm -f "$new.tgz"; exit 3; fi
python3 -m venv --without-pip "$new"
site=$("$new/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
tar -xzf "$new.tgz" -C "$site"
rm -f "$new.tgz"
"$new/bin/python" -m compileall -q -j 0 "$site" >/dev/null 2>&1 || true
echo "$sum" > "$new/.shipyard-sha256"
rm -rf "$root/venv.old"
if [ -d "$root/venv" ]; then mv "$root/venv" "$root/venv.old"; fi
mv "$new" "$root/venv"
'''
HOSTCTL_TIMEOUT = 90.0


@dataclass(frozen=True)
class SetupResult:
    host: str
    installed: bool              # a new runtime was sent (False: that archive was there already)
    version: str
    agent_pid: int | None
    systemd: bool
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hostctl_argv(root: str, action: str) -> list[str]:
    return [str(PurePosixPath(root) / "venv" / "bin" / "python"), "-m", "shipyard.hosts.hostctl", action,
            "--root", root]


async def hostctl(pool: SshPool, host: str, action: str) -> dict[str, Any]:
    """Run hostctl on the host; its JSON answer, or TargetError with its reason."""
    root = pool.host(host).release_dir
    res = await pool.run(host, hostctl_argv(root, action), timeout=HOSTCTL_TIMEOUT)
    lines = res.out.strip().splitlines()
    try:
        answer: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except ValueError:
        answer = {}
    if not res.ok or "error" in answer:
        why = answer.get("error") or (res.err.strip().splitlines() or [f"exit {res.exit_status}"])[-1]
        raise TargetError(f"{host}: cannot start the agent: {why}")
    return answer


async def setup_host(pool: SshPool, host: str, runtime: Runtime) -> SetupResult:
    started = time.monotonic()
    root = pool.host(host).release_dir
    probe = await pool.run(host, ["python3", "-c", PYTHON_PROBE], timeout=30)
    check_python(host, probe.out if probe.ok else "")
    res = await pool.run(host, ["sh", "-c", _INSTALL, "sh", root, runtime.sha256], offer=runtime.path.read_bytes(),
                         timeout=600)
    if res.exit_status == 3:
        raise TargetError(f"{host}: the runtime archive arrived damaged (sha256 differs); nothing installed")
    if not res.ok:
        raise TargetError(f"{host}: cannot install the runtime under {root}: "
                          f"{(res.err.strip().splitlines() or [f'exit {res.exit_status}'])[-1]}")
    installed = not res.out.startswith("have")
    answer = await hostctl(pool, host, "restart" if installed else "ensure")
    status = answer.get("status") or {}
    return SetupResult(host, installed, str(status.get("version") or runtime.version), status.get("pid"),
                       bool(status.get("systemd")), round(time.monotonic() - started, 2))


async def setup_hosts(pool: SshPool, hosts: list[str], runtime: Runtime) -> dict[str, SetupResult | ShipyardError]:
    async def one(host: str) -> SetupResult | ShipyardError:
        try:
            return await setup_host(pool, host, runtime)
        except ShipyardError as exc:
            return exc
    results = await pool.each(hosts, one)
    return {h: r for h, r in results.items()}
