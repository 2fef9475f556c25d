"""Releases shipped to hosts: the release built once on the controller, packed once (tar.gz, sha256),
uploaded to every host in parallel, checked by hash there, unpacked beside its final place and renamed
into it (an instance never sees half a release), and the last `keep` kept per service on each host.

Every remote step is a constant `sh -c` script reading its values from "$1"...: nothing of a path or a
name is pasted into shell text (see shipyard.ssh.remote).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shipyard.errors import ShipyardError, TargetError
from shipyard.ssh import SshPool

UPLOAD_TIMEOUT = 300.0
MARKER = ".shipyard-sha256"

# Builtins where they do (every exec is CPU a busy host pays once per release).
# $1 release dir, $2 sha256. Prints `have` when that release is there already, else `send` and reads the
# archive from stdin (SshPool.run(offer=): one session either way). Exit 3: the upload is not what was sent.
_INSTALL = r'''set -eu
dest=$1; sum=$2; have=
read -r have 2>/dev/null < "$dest/.shipyard-sha256" || true
if [ "$have" = "$sum" ]; then echo have; exit 0; fi
echo send
tmp="${dest%/*}/.incoming-$$"
mkdir -p "$tmp"
cat > "$tmp.tgz"
if ! echo "$sum  $tmp.tgz" | sha256sum -c --status; then rm -rf "$tmp" "$tmp.tgz"; exit 3; fi
tar -xzf "$tmp.tgz" -C "$tmp"
echo "$sum" > "$tmp/.shipyard-sha256"
rm -rf "$tmp.tgz" "$dest"
mv "$tmp" "$dest"
'''
# $1 service dir, $2 how many to keep, then names never to remove (in use, or just shipped). Run after
# _INSTALL in the same session.
_PRUNE = r'''dir=$1; keep=$2; shift 2
cd "$dir" 2>/dev/null || exit 0
n=0
for name in $(ls -1t); do
  case "$name" in .incoming-*) continue;; esac
  n=$((n + 1))
  [ "$n" -le "$keep" ] && continue
  for used in "$@"; do [ "$name" = "$used" ] && continue 2; done
  rm -rf -- "$name"
done
'''


@dataclass(frozen=True)
class ShipResult:
    remote_dir: str
    seconds: float
    bytes: int
    skipped: bool


def pack(release: Path) -> tuple[bytes, str]:
    """The release as one gzip'd tar (paths relative to it) and its sha256. The same tree always packs to
    the same bytes (gzip's header time fixed, members in sorted order), so a host that has it is not sent
    it again (a rollback re-ships the previous release)."""
    with tempfile.TemporaryFile() as f:
        with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=6, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w") as tar:
            for item in sorted(release.iterdir()):
                tar.add(str(item), arcname=item.name)
        f.seek(0)
        data = f.read()
    return data, hashlib.sha256(data).hexdigest()


def install_argv(dest: str, digest: str, keep: int, keepers: set[str]) -> list[str]:
    """The one remote command of a ship (for SshPool.run(offer=archive)): install the archive of sha256
    `digest` at `dest` unless it is there, then keep the newest `keep` releases beside it and `keepers`."""
    # $1 $2 for the install, the rest for the prune.
    script = f"( {_INSTALL} ) || exit $?\nshift 2\n{_PRUNE}"
    return ["sh", "-c", script, "sh", dest, digest, str(PurePosixPath(dest).parent), str(keep), *sorted(keepers)]


def release_path(root: str, service: str, name: str) -> str:
    return str(PurePosixPath(root) / "releases" / service / name)


async def ship_release(pool: SshPool, hosts: Sequence[str], release: Path, service: str, name: str, keep: int,
                       *, in_use: set[str] | None = None) -> dict[str, ShipResult]:
    """Ship `release` to every host (those that have it are skipped); TargetError naming the hosts that
    could not take it, after the others finished."""
    data, digest = await asyncio.to_thread(pack, release)

    async def one(host: str) -> ShipResult | ShipyardError:
        try:
            return await _ship_one(host)
        except ShipyardError as exc:
            return exc

    async def _ship_one(host: str) -> ShipResult:
        started = time.monotonic()
        dest = release_path(pool.host(host).release_dir, service, name)
        res = await pool.run(host, install_argv(dest, digest, keep, {name, *(in_use or set())}), offer=data,
                             timeout=UPLOAD_TIMEOUT)
        if res.exit_status == 3:
            raise TargetError(f"{host}: the release archive arrived damaged (sha256 differs); nothing "
                              "was unpacked")
        if not res.ok:
            why = (res.err.strip().splitlines() or [f"exit {res.exit_status}"])[-1]
            raise TargetError(f"{host}: cannot unpack the release into {dest}: {why}")
        skipped = res.out.startswith("have")
        return ShipResult(dest, round(time.monotonic() - started, 3), 0 if skipped else len(data), skipped)

    results = await pool.each(hosts, one)
    failed = {h: r for h, r in results.items() if isinstance(r, ShipyardError)}
    done: dict[str, ShipResult] = {h: r for h, r in results.items() if isinstance(r, ShipResult)}
    if failed:
        raise TargetError("cannot ship the release to " + "; ".join(str(e) for e in failed.values()))
    return done


__all__ = ["ShipResult", "ShipyardError", "install_argv", "pack", "release_path", "ship_release"]
