"""Reading from git which commits a deploy carried, with their committer times (the effectful half of lead time).

For a deploy of `revision` the commits are `git rev-list revision --not <excluded>`, where the excluded
revisions are what served before it (its previous_revision) and what earlier deploys of the same
service/env had already carried; with nothing to exclude (the first deploy of a service/env) only the head
commit counts. Excluded revisions the repository does not have are dropped first (`cat-file --batch-check`),
so a history that mentions a since-rewritten sha still reads. Revisions are passed on stdin (`--stdin`),
never as arguments, and must look like object names: a stored revision can never become a git option.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from shipyard.errors import GitError
from shipyard.fleet.git import Git
from shipyard.reports.leadtime import Commit

_SHA = re.compile(r"[0-9a-fA-F]{4,64}")
CONCURRENCY = 8


class CommitReader(Protocol):
    async def commits(self, service: str, revision: str, exclude: Sequence[str]) -> tuple[Commit, ...] | None:
        """The commits `revision` brings beyond `exclude`, or None when they cannot be read."""
        ...


def parse_rev_list(text: str) -> tuple[Commit, ...]:
    """`git rev-list --timestamp` output ("<unix time> <sha>" per line) as Commits."""
    out: list[Commit] = []
    for line in text.splitlines():
        stamp, _, sha = line.strip().partition(" ")
        if stamp.isdigit() and sha:
            out.append(Commit(sha, datetime.fromtimestamp(int(stamp), UTC)))
    return tuple(out)


@dataclass
class GitCommitReader:
    """Reads commits from each service's repository (`repos`: service name -> git directory)."""

    repos: Mapping[str, Path]
    _limit: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONCURRENCY))

    async def commits(self, service: str, revision: str, exclude: Sequence[str]) -> tuple[Commit, ...] | None:
        path = self.repos.get(service)
        if path is None or not _SHA.fullmatch(revision):
            return None
        git = Git(path, service)
        wanted = [r for r in dict.fromkeys(exclude) if _SHA.fullmatch(r)]
        async with self._limit:
            try:
                present = await _present(git, [revision, *wanted])
                if revision not in present:
                    return None
                kept = [r for r in wanted if r in present]
                if kept:
                    lines = "\n".join([revision, *(f"^{r}" for r in kept)]) + "\n"
                    res = await git.run("rev-list", "--timestamp", "--stdin", stdin=lines)
                else:
                    res = await git.run("rev-list", "--timestamp", "--max-count=1", "--stdin", stdin=revision + "\n")
            except GitError:
                return None
        return parse_rev_list(res.stdout)


async def _present(git: Git, names: list[str]) -> set[str]:
    """Which of `names` are commits in this repository (one `cat-file --batch-check` for all)."""
    res = await git.run("cat-file", "--batch-check=%(objectname) %(objecttype)", stdin="\n".join(names) + "\n")
    found: set[str] = set()
    for asked, line in zip(names, res.stdout.splitlines(), strict=False):
        parts = line.split()
        if len(parts) == 2 and parts[1] == "commit":
            found.add(asked)
    return found


def repo_dir(url: str | None, path: Path | None, mirror: Path) -> Path | None:
    """Where a service's commits can be read without touching the network: shipyard's own mirror of a
    repo with a `url` (what deploys resolved revisions from), else its local clone; None if neither exists."""
    if url:
        return mirror if (mirror / "HEAD").exists() else None
    if path is not None and ((path / ".git").exists() or (path / "HEAD").exists()):
        return path
    return None
