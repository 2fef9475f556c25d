"""Builds on a build host (`services.<name>.build_host`): the exported tree goes to the host over the shared
SSH connection, `build` runs there, and the built tree comes back into the controller's release directory,
from which it ships to every host as any release does. All of it is one SSH session:

    controller -> host (stdin):  the build's variables, then the tree as tar.gz
    host: checks the archive's sha256, unpacks it into a fresh <release_dir>/builds/<service>/<key>.<token>,
          runs `build` there under coreutils `timeout`, its output into a log beside the directory
    host -> controller: the log's tail (stderr); `build N` (stdout); when N is 0, the built tree's sha256 and
          the tree as tar.gz
    the host removes the build directory, archives and log on exit, whatever happened

The script is constant text; paths, the key and the command are its "$1"..., and the variables (secrets
among them) travel on stdin, never in an argv on either side: one a line, `NAME \\ooo\\ooo...` with every
byte of the value an octal escape that the host's `printf` turns back into the byte. No value is ever
shell text there, and a value may hold any byte but NUL (newlines included). The host needs sh, tar,
gzip, coreutils (sha256sum, timeout) and what `build` uses; no shipyard runtime (`hosts setup` is not
needed for a build host).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import re
import secrets
import shutil
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from shipyard.engine.commands import OUTPUT_CAP, CommandResult
from shipyard.errors import ReleaseError, SshError

if TYPE_CHECKING:           # asyncssh is loaded only by a command that connects (the engine imports this)
    from shipyard.ssh import SshPool

TRANSFER_ALLOWANCE = 120.0   # the session may take this much longer than the build: both transfers, unpacking
CLEANUP_TIMEOUT = 15.0
UPLOAD_DAMAGED = 3           # the script's exit status when the tree it got is not the one sent
TIMED_OUT = (124, 137)       # coreutils timeout: TERM worked / it took the KILL
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# $1 builds dir, $2 the build dir's name, $3 the tree's sha256, $4 the time limit in seconds, $5 `build`.
# Reads the variables (up to an empty line), then the archive (to EOF) from stdin. `timeout` signals the
# build's whole process group, and KILLs it 5 s after a TERM it ignores.
_BUILD = r'''set -eu
root=$1; dir=$1/$2; sum=$3; limit=$4; cmd=$5
trap 'cd / && rm -rf -- "$dir" "$dir.in" "$dir.out" "$dir.log"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
while IFS= read -r line && [ -n "$line" ]; do
  value=$(printf "${line#* }_")
  export "${line%% *}=${value%_}"
done
mkdir -p "$root"
mkdir -m 700 "$dir"
cat > "$dir.in"
if ! echo "$sum  $dir.in" | sha256sum -c --status; then exit 3; fi
tar -xzf "$dir.in" -C "$dir"
rm -f "$dir.in"
cd "$dir"
status=0
SHIPYARD_RELEASE_DIR=$dir timeout -k 5 "$limit" sh -c "$cmd" < /dev/null > "$dir.log" 2>&1 || status=$?
tail -c 262144 "$dir.log" >&2
echo "build $status"
[ "$status" -eq 0 ] || exit 0
tar -czf "$dir.out" .
out=$(sha256sum < "$dir.out")
echo "${out%% *}"
cat "$dir.out"
'''
_CLEANUP = r'''dir=$1; rm -rf -- "$dir" "$dir.in" "$dir.out" "$dir.log"'''


@dataclass(frozen=True)
class BuildHost:
    """`services.<name>.build_host` resolved: the host's name under `hosts:` and what identifies the machine
    (login and address), which the release key includes: another machine builds another release."""

    name: str
    machine: str


def remote_build_dir(release_dir: str, service: str, key: str, token: str) -> str:
    """<host release_dir>/builds/<service>/<key>.<token>: fresh for every build, never shared."""
    return str(PurePosixPath(release_dir) / "builds" / service / f"{key}.{token}")


def build_argv(build_dir: str, digest: str, timeout: float, command: str) -> list[str]:
    """The one remote command of a build (its stdin: `env_block`, then the tree's archive)."""
    path = PurePosixPath(build_dir)
    return ["sh", "-c", _BUILD, "sh", str(path.parent), path.name, digest, f"{timeout:g}", command]


def cleanup_argv(build_dir: str) -> list[str]:
    return ["sh", "-c", _CLEANUP, "sh", build_dir]


def env_block(env: Mapping[str, str]) -> bytes:
    """The variables as the build script reads them: `NAME \\ooo...` a line, then an empty line."""
    lines = []
    for name, value in env.items():
        if not _NAME.fullmatch(name):
            raise ReleaseError(f"cannot pass variable {name!r} to a build host: not a variable name")
        data = value.encode()
        if b"\0" in data:
            raise ReleaseError(f"cannot pass variable {name} to a build host: its value holds a NUL byte")
        lines.append(f"{name} " + "".join(f"\\{byte:03o}" for byte in data) + "\n")
    return ("".join(lines) + "\n").encode()


def parse_output(stdout: bytes) -> tuple[int, bytes | None]:
    """(the build's exit status, the built tree's archive when it is 0) from the script's stdout; a tree
    whose sha256 is not the one the host computed is refused (damaged on the way back)."""
    head, _, rest = stdout.partition(b"\n")
    words = head.split()
    if len(words) != 2 or words[0] != b"build" or not words[1].lstrip(b"-").isdigit():
        raise ReleaseError("the build host's answer is not a build result")
    status = int(words[1])
    if status != 0:
        return status, None
    digest, _, archive = rest.partition(b"\n")
    if hashlib.sha256(archive).hexdigest().encode() != digest.strip():
        raise ReleaseError("the built tree arrived damaged (sha256 differs from the build host's); refused")
    return 0, archive


def unpack(archive: bytes, dest: Path) -> None:
    """Replace `dest` with the tree in `archive` (unpacked beside it, then renamed into place)."""
    tmp = dest.with_name(f".{dest.name}.built{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ReleaseError(f"cannot unpack the built tree: {exc}") from None
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


async def build_on_host(pool: SshPool, host: str, release: Path, *, service: str, label: str, command: str,
                        env: Mapping[str, str], timeout: float,
                        redact: Callable[[str], str]) -> CommandResult:
    """Build the exported tree `release` on `host` and put the built tree in its place. Returns the build's
    result (output redacted) when it succeeded; ReleaseError (redacted) otherwise, and then nothing of this
    build is left on the host (the script cleans up; a session that broke is followed by a cleanup)."""
    from shipyard.hosts.ship import pack

    started = time.monotonic()
    spec = pool.host(host)
    remote = remote_build_dir(spec.release_dir, service, release.name, secrets.token_hex(4))
    data, digest = await asyncio.to_thread(pack, release)
    what = f"build of {label} on {host}"
    finished = False
    try:
        res = await pool.run(host, build_argv(remote, digest, timeout, command),
                             stdin=env_block(env) + data,      # the script sets SHIPYARD_RELEASE_DIR
                             timeout=timeout + TRANSFER_ALLOWANCE)
        finished = True
    except SshError as exc:
        raise ReleaseError(redact(f"{what}: {exc}")) from None
    finally:
        if not finished:
            with contextlib.suppress(SshError):
                await pool.run(host, cleanup_argv(remote), timeout=CLEANUP_TIMEOUT)
    output = redact(res.err[-OUTPUT_CAP:])
    if res.exit_status == UPLOAD_DAMAGED and not res.stdout:
        raise ReleaseError(f"{what}: the tree arrived damaged on the host (sha256 differs); nothing was built")
    if not res.ok:
        why = (output.strip().splitlines() or [f"exit {res.exit_status}"])[-1]
        raise ReleaseError(f"{what}: the build script failed: {why}")
    status, archive = parse_output(res.stdout)
    seconds = time.monotonic() - started
    if status != 0:
        tail = " | ".join(output.strip().splitlines()[-3:])
        why = (f"timed out after {timeout:g}s" if status in TIMED_OUT and seconds >= timeout
               else f"exited {status}")
        raise ReleaseError(f"{what} {why}: {tail}")
    assert archive is not None
    await asyncio.to_thread(unpack, archive, release)
    return CommandResult(0, output, seconds, False)


__all__ = ["BuildHost", "build_argv", "build_on_host", "cleanup_argv", "env_block", "parse_output",
           "remote_build_dir", "unpack"]
