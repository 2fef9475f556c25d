"""Find revisions and export trees through the git command line (argv lists, never a shell).

When a repo has a `url`, shipyard keeps its own bare mirror under .shipyard/mirrors/ and fetches into it,
so deploys never touch the user's working tree and always see what is on the remote. A repo with only a
`path` is read directly (its local branches).
"""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from shipyard.domain.types import Revision
from shipyard.errors import ReleaseError, RevisionNotFoundError
from shipyard.secrets.scrub import GIT, scrubbed

GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/true", "LC_ALL": "C"}


async def git(*args: str, cwd: Path | None = None, check: bool = True, stdin: bytes | None = None) -> bytes:
    env = scrubbed(allow=GIT, extra=GIT_ENV)
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=str(cwd) if cwd else None, env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin)
    if check and proc.returncode != 0:
        msg = err.decode("utf-8", "replace").strip().splitlines()
        raise ReleaseError(f"git {args[0]} failed: {msg[-1] if msg else 'exit ' + str(proc.returncode)}")
    return out


@dataclass(frozen=True)
class GitSource:
    """Where a service's code comes from: a remote url (mirrored) and/or a local clone path."""

    name: str
    url: str | None
    path: Path | None
    mirrors_dir: Path

    @property
    def mirror(self) -> Path:
        return self.mirrors_dir / f"{self.name}.git"

    async def repo(self, *, fetch: bool = True) -> Path:
        """The git dir to read from; with a url the mirror is created or fetched first."""
        if not self.url:
            if self.path is None or (not (self.path / ".git").exists() and not (self.path / "HEAD").exists()):
                raise ReleaseError(f"repo {self.name}: {self.path} is not a git repository")
            return self.path
        if not (self.mirror / "HEAD").exists():
            self.mirrors_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.mirror.with_suffix(f".tmp{os.getpid()}")
            await git("clone", "--mirror", "--quiet", self.url, str(tmp))
            os.replace(tmp, self.mirror)
        elif fetch:
            await git("fetch", "--prune", "--quiet", "origin", cwd=self.mirror)
        return self.mirror


async def resolve_revision(source: GitSource, ref: str, *, fetch: bool = True) -> Revision:
    """Turn a branch, tag or (short) sha into a commit; unknown refs are a usage error naming the ref."""
    repo = await source.repo(fetch=fetch)
    candidates = [ref] if source.url else [ref, f"origin/{ref}"]
    for cand in candidates:
        out = await git("rev-parse", "--verify", "--quiet", f"{cand}^{{commit}}", cwd=repo, check=False)
        sha = out.decode().strip()
        if sha:
            subject, _, author = (await git("log", "-1", "--format=%s%x1f%an", sha, cwd=repo)).decode().strip() \
                .partition("\x1f")
            return Revision(sha=sha, ref=ref, subject=subject, author=author)
    raise RevisionNotFoundError(f"revision {ref!r} not found in repo {source.name}")


async def export_tree(source: GitSource, sha: str, dest: Path) -> None:
    """Write the commit's tree into `dest` (which must not exist) via `git archive`, atomically."""
    repo = await source.repo(fetch=False)
    data = await git("archive", "--format=tar", sha, cwd=repo)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    tmp.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp, filter="data")
    os.replace(tmp, dest)
