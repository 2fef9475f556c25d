"""Pushing a repo's ref updates in one `git push --atomic`, putting them back, and the local refs after.

Branch and tag of one repo go in one atomic push, so a remote never has the tag without the branch (a
pipeline triggered by the tag would deploy something the branch does not show) or the other way round.
Compensation is the same push reversed, each ref leased to the value we pushed: if someone pushed on top
of our merge meanwhile, their work is not thrown away; the report says that repo could not be put back.

The argv builders are pure (tested as data); `push`/`compensate` are the only functions that run them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shipyard.fleet.build import RefUpdate
from shipyard.fleet.git import Git
from shipyard.fleet.inventory import REMOTE, LocalState, RepoSpec, local_state


def push_argv(updates: Sequence[RefUpdate], remote: str = REMOTE) -> list[str]:
    """`git push --atomic --porcelain origin ...` for `updates` (leases first, then refspecs)."""
    argv = ["push", "--atomic", "--porcelain", remote]
    for u in updates:
        if u.lease:
            argv.append(f"--force-with-lease={u.ref}:{u.old or ''}")
    for u in updates:
        argv.append(f"{u.new}:{u.ref}" if u.new else f":{u.ref}")
    return argv


def reverse(updates: Sequence[RefUpdate]) -> list[RefUpdate]:
    """The updates that put the remote back: every ref leased to what we pushed, back to what it was."""
    return [RefUpdate(u.ref, u.new, u.old, lease=True) for u in updates]


def parse_porcelain(stdout: str) -> dict[str, tuple[str, str]]:
    """ref -> (flag, summary) from `git push --porcelain` (flag `!` rejected, `=` up to date, ...)."""
    out: dict[str, tuple[str, str]] = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1 and ":" in parts[1]:
            out[parts[1].rsplit(":", 1)[1]] = (parts[0], parts[2])
    return out


@dataclass(frozen=True)
class PushResult:
    ok: bool
    detail: str
    rejected: bool = False          # the remote refused (someone pushed meanwhile), not a transport error


async def push(git: Git, updates: Sequence[RefUpdate]) -> PushResult:
    """One atomic push; on failure the detail names the refused ref and git's reason."""
    res = await git.network(*push_argv(updates), check=False)
    if res.ok:
        return PushResult(True, "pushed")
    refs = parse_porcelain(res.stdout)
    reasons = [f"{ref.removeprefix('refs/heads/').removeprefix('refs/tags/')} {summary}"
               for ref, (flag, summary) in refs.items() if flag == "!" and "atomic push failed" not in summary]
    if reasons:
        return PushResult(False, "; ".join(reasons), rejected=True)
    return PushResult(False, res.last_error_line())


async def compensate(git: Git, updates: Sequence[RefUpdate]) -> PushResult:
    """Put back what `updates` pushed (leased: only if the remote still has exactly our values)."""
    result = await push(git, reverse(updates))
    if result.ok:
        return PushResult(True, "put back")
    return result


async def update_local_refs(spec: RepoSpec, updates: Sequence[RefUpdate], state: LocalState | None = None
                            ) -> list[str]:
    """After a successful push, bring the user's local refs along where that is safe; say what was left.

    - a new tag: created locally (unless a local tag of that name exists);
    - a branch not checked out anywhere whose local tip is an ancestor of the new tip: moved (compare and
      swap against the tip we read, so a concurrent local change wins);
    - the checked-out branch of a clean working tree, fast-forwardable: `git merge --ff-only`, like a pull;
    - anything else (diverged, dirty, checked out in another worktree, no such local branch) is left alone.
    Remote-tracking refs were already moved by the push itself. `state` is the working tree as the
    readiness check saw it (read again when not given).
    """
    if spec.managed:
        return []
    git = spec.git
    state = state or await local_state(spec)
    wanted = [u for u in updates if u.new is not None]
    listing = await git.out("for-each-ref", "--format=%(refname) %(objectname)", *(u.ref for u in wanted))
    local = dict(line.split(" ", 1) for line in listing.splitlines())
    other_worktrees = await _branches_in_other_worktrees(spec)
    notes: list[str] = []
    transaction: list[str] = []
    for u in wanted:
        current = local.get(u.ref)
        if u.ref.startswith("refs/tags/"):
            if current is None:
                transaction.append(f"create {u.ref} {u.new}")
            continue
        branch = u.ref.removeprefix("refs/heads/")
        if current is None or current == u.new:
            continue
        if branch in other_worktrees:
            notes.append(f"local {branch} left as is (checked out in another worktree)")
        elif not (current == u.old and not u.lease) and not await _is_ancestor(git, current, u.new or ""):
            notes.append(f"local {branch} left as is (it has commits the remote does not)")
        elif branch == state.branch:
            if state.changed:
                notes.append(f"local {branch} left as is (checked out with uncommitted changes)")
                continue
            res = await git.run("merge", "--ff-only", "--quiet", u.new or "", check=False)
            if not res.ok:
                notes.append(f"local {branch} left as is ({res.last_error_line()})")
        else:
            transaction.append(f"update {u.ref} {u.new} {current}")
    if transaction:
        res = await git.run("update-ref", "--stdin", stdin="\n".join(transaction) + "\n", check=False)
        if not res.ok:
            notes.append(f"local refs not updated ({res.last_error_line()})")
    return notes


async def _is_ancestor(git: Git, older: str, newer: str) -> bool:
    return (await git.run("merge-base", "--is-ancestor", older, newer, check=False)).returncode == 0


async def _branches_in_other_worktrees(spec: RepoSpec) -> set[str]:
    """Branches checked out in linked worktrees (none, without asking git, when there are none)."""
    dot_git = spec.path / ".git"
    if dot_git.is_dir() and not (dot_git / "worktrees").is_dir():
        return set()
    res = await spec.git.run("worktree", "list", "--porcelain", check=False)
    blocks = res.stdout.strip().split("\n\n")[1:]          # the first block is the main worktree
    return {line.removeprefix("branch refs/heads/") for block in blocks for line in block.splitlines()
            if line.startswith("branch refs/heads/")}
