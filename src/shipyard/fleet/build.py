"""Turn a repo's plan into git objects, away from the user's working tree and index.

Merges are computed with `git merge-tree --write-tree` (the merged tree and the conflicting paths, with
no worktree), the --no-ff merge commit is made with `git commit-tree` and the tag object with `git mktag`.
All of that only adds unreferenced objects to the repo's object store: no branch, tag, index or file the
user sees changes until the push succeeded, so a conflict in one repo of eight costs nothing to undo.

Commit and tag dates are the promotion's single timestamp; identities are the user's own git identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shipyard.errors import GitError
from shipyard.fleet.git import Git
from shipyard.fleet.plan import Merge, RepoPlan, Restore, Tag
from shipyard.fleet.tags import tag_name


@dataclass(frozen=True)
class RefUpdate:
    """One ref a push changes: `old` None means it must not exist yet, `new` None deletes it.

    `lease`: push with --force-with-lease expecting `old` (only for a non-fast-forward the user asked for,
    and for compensation). Without it git itself refuses anything but a fast-forward or a new ref.
    """

    ref: str
    old: str | None
    new: str | None
    lease: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "old": self.old, "new": self.new, "lease": self.lease}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefUpdate:
        return cls(data["ref"], data.get("old"), data.get("new"), bool(data.get("lease")))

    @property
    def short(self) -> str:
        return self.ref.removeprefix("refs/heads/").removeprefix("refs/tags/")


@dataclass
class Built:
    """A repo's plan as objects: the ref updates to push, or the conflicts that stop the whole promotion."""

    repo: str
    updates: list[RefUpdate] = field(default_factory=list)
    tips: dict[str, str] = field(default_factory=dict)        # branch -> its new sha
    tag: str | None = None
    tag_sha: str | None = None
    conflicts: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def git_date(when: datetime) -> str:
    """git's internal date format (`<epoch> <+hhmm>`), accepted by GIT_*_DATE and tag headers."""
    return f"{int(when.timestamp())} {when.strftime('%z') or '+0000'}"


async def _is_ancestor(git: Git, older: str, newer: str) -> bool:
    res = await git.run("merge-base", "--is-ancestor", older, newer, check=False)
    if res.returncode not in (0, 1):
        raise GitError(git.describe_failure(res))
    return res.returncode == 0


async def merge_tree(git: Git, ours: str, theirs: str) -> tuple[str | None, list[str], str | None]:
    """(merged tree, conflicting paths, other problem) of merging `theirs` into `ours`, without a worktree."""
    res = await git.run("merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs,
                        check=False)
    fields = [f for f in res.stdout.split("\0") if f]
    if res.returncode == 0 and fields:
        return fields[0], [], None
    if res.returncode == 1 and fields:
        return None, sorted(set(fields[1:])), None
    return None, [], res.last_error_line()


async def build(git: Git, plan: RepoPlan, tips: dict[str, str], when: datetime, env: str,
                ident: str | None = None) -> Built:
    """Objects for every step of `plan`, starting from the remote `tips`; conflicts stop at the first.
    `ident` is the committer identity (`git var`) if already known."""
    built = Built(plan.repo)
    state = dict(tips)
    date = git_date(when)
    dated = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    forced: set[str] = set()
    for step in plan.steps:
        if isinstance(step, Merge):
            ours, theirs = state[step.branch], step.source_sha or state[step.source]
            if not step.no_ff:                          # hotfix back-merge: nothing, or a fast-forward
                if await _is_ancestor(git, theirs, ours):
                    continue
                if await _is_ancestor(git, ours, theirs):
                    state[step.branch] = theirs
                    continue
            tree, conflicts, problem = await merge_tree(git, ours, theirs)
            if tree is None:
                built.conflicts = conflicts
                built.problem = (f"merging {step.source} into {step.branch} conflicts in {', '.join(conflicts)}"
                                 if conflicts else f"cannot merge {step.source} into {step.branch}: {problem}")
                return built
            res = await git.run("commit-tree", tree, "-p", ours, "-p", theirs, "-m", step.message, env=dated)
            state[step.branch] = res.stdout.strip()
        elif isinstance(step, Restore):
            if step.force:
                state[step.branch] = step.commit
                forced.add(step.branch)
            else:
                tree = await git.out("rev-parse", "--verify", f"{step.commit}^{{tree}}")
                res = await git.run("commit-tree", tree, "-p", state[step.branch], "-m", step.message, env=dated)
                state[step.branch] = res.stdout.strip()
        elif isinstance(step, Tag):
            target = state[step.branch]
            name = tag_name(step.name, "", env, sha=target) if "{sha}" in step.name else step.name
            built.tag, built.tag_sha = name, await make_tag(git, name, target, step.message, date, ident)
    for branch in plan.branches:
        if state[branch] != tips[branch]:
            built.updates.append(RefUpdate(f"refs/heads/{branch}", tips[branch], state[branch],
                                           lease=branch in forced))
        built.tips[branch] = state[branch]
    if built.tag and built.tag_sha:
        built.updates.append(RefUpdate(f"refs/tags/{built.tag}", None, built.tag_sha))
    return built


async def make_tag(git: Git, name: str, commit: str, message: str, date: str, ident: str | None = None) -> str:
    """An annotated tag object (no ref yet) by the user's identity, dated `date`."""
    ident = ident or await git.out("var", "GIT_COMMITTER_IDENT")
    who = ident.rsplit(" ", 2)[0]
    body = f"object {commit}\ntype commit\ntag {name}\ntagger {who} {date}\n\n{message.rstrip()}\n"
    return (await git.run("mktag", stdin=body)).stdout.strip()
