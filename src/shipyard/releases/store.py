"""Release directories on disk: releases/<service>/<sha>/, built once, the last N kept."""

from __future__ import annotations

import asyncio
import fcntl
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from shipyard.engine.commands import CommandResult, run_command
from shipyard.errors import ReleaseError
from shipyard.releases.git import GitSource, export_tree

MARKER = ".shipyard-release.json"


class ReleaseStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, service: str, sha: str) -> Path:
        return self.root / service / sha

    def is_ready(self, service: str, sha: str) -> bool:
        marker = self.path(service, sha) / MARKER
        return marker.exists() and json.loads(marker.read_text()).get("built", False)

    async def prepare(self, source: GitSource, service: str, sha: str, *, build: str | None,
                      env: dict[str, str], timeout: float,
                      redact: Callable[[str], str] | None = None) -> tuple[Path, CommandResult | None]:
        """Export and build a revision once; a failed build leaves nothing behind, so a retry builds anew.

        `redact` masks secret values in the build log before it is written (the build sees the secrets).
        """
        redact = redact or (lambda text: text)
        dest = self.path(service, sha)
        dest.parent.mkdir(parents=True, exist_ok=True)
        async with self._lock(service, sha):
            if self.is_ready(service, sha):
                return dest, None
            if dest.exists():             # a half-made release from a crash: start over
                shutil.rmtree(dest)
            await export_tree(source, sha, dest)
            result = None
            if build:
                result = await run_command(build, cwd=dest, env=env, timeout=timeout)
                (dest / ".shipyard-build.log").write_text(redact(result.output))
                if not result.ok:
                    shutil.rmtree(dest, ignore_errors=True)
                    why = "timed out" if result.timed_out else f"exited {result.returncode}"
                    raise ReleaseError(f"build of {service} {sha[:8]} {why}: {redact(result.tail(3))}")
            (dest / MARKER).write_text(json.dumps({"sha": sha, "built": True, "at": time.time()}))
            return dest, result

    def prune(self, service: str, keep: int, protect: set[str]) -> list[str]:
        """Remove all but the `keep` newest releases of a service, never one in `protect` (in use)."""
        base = self.root / service
        if not base.is_dir():
            return []
        dirs = sorted((d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")),
                      key=lambda d: d.stat().st_mtime, reverse=True)
        removed = []
        for d in dirs[keep:]:
            if d.name not in protect:
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d.name)
        return removed

    @asynccontextmanager
    async def _lock(self, service: str, sha: str) -> AsyncIterator[None]:
        """One builder per release across processes (two envs may deploy the same sha at once)."""
        lock = self.root / service / f".{sha}.lock"
        with open(lock, "w") as fh:
            await asyncio.to_thread(fcntl.flock, fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
