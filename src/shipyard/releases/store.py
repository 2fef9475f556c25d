"""Release directories on disk: releases/<service>/<sha>-<key>/, each built once, the last N kept.

A release is keyed by every input of its build: the revision, the build command and every variable the
build sees (the service's env and secrets, SHIPYARD_ENV, PATH, ...). Two deploys with the same inputs share
one build; anything that differs (another environment's variables, a changed build command, a changed
secret) gets a build of its own. In practice each environment gets its own release, because SHIPYARD_ENV
differs: a bundle built for dev with dev's API URL is never served in stg.

The key is an HMAC (with a random key kept in releases/.key, 0600) of those inputs, so a directory name
tells nothing about the values, secrets included; the marker file lists variable names, never values.

A service with a `build_host` is built there (shipyard.releases.remote) over the invocation's SSH pool; the
build host is one more input of the key (a release of a config without one keeps its key).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.engine.commands import CommandResult, run_command
from shipyard.errors import ReleaseError, SshError
from shipyard.releases.git import GitSource, export_tree
from shipyard.releases.remote import BuildHost, build_on_host

if TYPE_CHECKING:
    from shipyard.ssh import SshPool

MARKER = ".shipyard-release.json"
KEY_FILE = ".key"
KEY_LENGTH = 16          # hex characters of the HMAC in a directory name (64 bits: no accidental clash)


class ReleaseStore:
    def __init__(self, root: Path, *, ssh_pool: Callable[[], SshPool] | None = None) -> None:
        self.root = root
        self.ssh_pool = ssh_pool        # the invocation's shared pool, asked for only by a build on a host
        self._secret: bytes | None = None

    def key(self, sha: str, *, build: str | None, env: Mapping[str, str],
            build_host: BuildHost | None = None) -> str:
        """The directory name of the release of `sha` built by `build` with exactly `env` (on `build_host`)."""
        fields: dict[str, object] = {"sha": sha, "build": build or "", "env": sorted(env.items())}
        if build_host is not None:      # only then: releases built on the controller keep their keys
            fields["build_host"] = build_host.machine
        inputs = json.dumps(fields, separators=(",", ":"))
        digest = hmac.new(self._key_secret(), inputs.encode(), hashlib.sha256).hexdigest()
        return f"{sha}-{digest[:KEY_LENGTH]}"

    def path(self, service: str, sha: str, *, build: str | None, env: Mapping[str, str],
             build_host: BuildHost | None = None) -> Path:
        return self.root / service / self.key(sha, build=build, env=env, build_host=build_host)

    def is_ready(self, release: Path) -> bool:
        marker = release / MARKER
        try:
            return bool(json.loads(marker.read_text()).get("built", False))
        except (OSError, ValueError):
            return False

    async def prepare(self, source: GitSource, service: str, sha: str, *, build: str | None,
                      env: Mapping[str, str], timeout: float,
                      redact: Callable[[str], str] | None = None,
                      build_host: BuildHost | None = None) -> tuple[Path, CommandResult | None]:
        """Export and build a revision once per set of inputs (see the module docstring); a failed build
        leaves nothing behind, so a retry builds anew. The build also gets SHIPYARD_RELEASE_DIR (its own
        directory, which follows from the inputs and is not one of them; on a build host the directory
        it runs in there).

        `redact` masks secret values in the build log before it is written (the build sees the secrets).
        With `build_host` the build runs on that host (which must answer before anything else is done).
        """
        redact = redact or (lambda text: text)
        dest = self.path(service, sha, build=build, env=env, build_host=build_host)
        dest.parent.mkdir(parents=True, exist_ok=True)
        async with self._lock(dest):
            if self.is_ready(dest):
                return dest, None
            pool = await self._build_pool(build_host) if build and build_host else None
            if dest.exists():             # a half-made release from a crash: start over
                shutil.rmtree(dest)
            await export_tree(source, sha, dest)
            result = None
            if pool is not None and build and build_host:
                try:
                    result = await build_on_host(pool, build_host.name, dest, service=service,
                                                 label=f"{service} {sha[:8]}", command=build, env=env,
                                                 timeout=timeout, redact=redact)
                except BaseException:
                    shutil.rmtree(dest, ignore_errors=True)
                    raise
                (dest / ".shipyard-build.log").write_text(result.output)
            elif build:
                result = await run_command(build, cwd=dest, env={**env, "SHIPYARD_RELEASE_DIR": str(dest)},
                                           timeout=timeout)
                (dest / ".shipyard-build.log").write_text(redact(result.output))
                if not result.ok:
                    shutil.rmtree(dest, ignore_errors=True)
                    why = "timed out" if result.timed_out else f"exited {result.returncode}"
                    raise ReleaseError(f"build of {service} {sha[:8]} {why}: {redact(result.tail(3))}")
            (dest / MARKER).write_text(json.dumps({"sha": sha, "key": dest.name, "built": True, "at": time.time(),
                                                   "variables": sorted(env)}))
            return dest, result

    async def _build_pool(self, build_host: BuildHost) -> SshPool:
        """The SSH pool, connected to the build host: one that does not answer is refused by name first."""
        if self.ssh_pool is None:
            raise ReleaseError(f"build_host {build_host.name}: this release store has no SSH connections")
        pool = self.ssh_pool()
        try:
            await pool.connection(build_host.name)
        except SshError as exc:
            raise ReleaseError(f"build host {build_host.name} is unreachable: {exc}") from None
        return pool

    def prune(self, service: str, keep: int, protect: set[str]) -> list[str]:
        """Remove all but the `keep` newest releases of a service, never one of a revision in `protect`."""
        base = self.root / service
        if not base.is_dir():
            return []
        dirs = sorted((d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")),
                      key=lambda d: d.stat().st_mtime, reverse=True)
        removed = []
        for d in dirs[keep:]:
            if d.name.partition("-")[0] not in protect:
                shutil.rmtree(d, ignore_errors=True)
                with contextlib.suppress(OSError):
                    (base / f".{d.name}.lock").unlink()
                removed.append(d.name)
        return removed

    def _key_secret(self) -> bytes:
        """The HMAC key: made once per release store (0600), shared by every process that uses it.

        Written to a temporary file and hard-linked into place, so a concurrent reader sees all of it or
        none, and the first writer wins."""
        if self._secret is None:
            path = self.root / KEY_FILE
            self.root.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                tmp = path.with_name(f"{KEY_FILE}.{os.getpid()}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32))
                try:
                    with contextlib.suppress(FileExistsError):
                        os.link(tmp, path)
                finally:
                    tmp.unlink()
            text = path.read_text().strip()
            try:
                self._secret = bytes.fromhex(text)
            except ValueError:
                self._secret = None
            if self._secret is None or len(self._secret) != 32:
                raise ReleaseError(f"{path} is not a release key (64 hex characters); delete it to make a new one "
                                   "(every release is then built again)")
        return self._secret

    @asynccontextmanager
    async def _lock(self, release: Path) -> AsyncIterator[None]:
        """One builder per release across processes (two deploys may need the same release at once)."""
        lock = release.with_name(f".{release.name}.lock")
        with open(lock, "w") as fh:
            await asyncio.to_thread(fcntl.flock, fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
